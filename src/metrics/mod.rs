//! Per-shard measurement: counters, gauges and hdrhistograms that only
//! their shard touches, and the snapshots a stats request gathers from every
//! shard and merges.
//!
//! A shard is one thread (one glommio executor), so each shard's
//! [`ShardMetrics`] lives in a thread-local that the shard also holds an
//! `Rc` of ([`local`]). The data path records with plain `Cell` adds and a
//! `RefCell` histogram record: no atomics, no locks, nothing shared. Taking
//! stats never blocks the data path: the shard answers a
//! `ShardMsg::Stats` between two tasks by cloning its numbers
//! ([`ShardMetrics::snapshot`]); the asking shard merges the clones
//! ([`Totals::merge`]).
//!
//! Must not depend on glommio, sockets, `stream/` or `server/`.

pub mod json;
pub mod prometheus;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram tells apart (fan-out, event-loop stall);
/// larger values are recorded as this. 60 s in µs.
pub const LATENCY_US_MAX: u64 = 60_000_000;
/// Largest write size a histogram tells apart; larger writes are recorded
/// as this. A `sendmsg` carries at most `IOV_BATCH` buffers, far less.
pub const WRITE_BYTES_MAX: u64 = 64 << 20;
/// Significant decimal digits the histograms keep: 2 = values within 1%,
/// exact below 256. About 20 KB per histogram, cloned per stats request.
pub const HISTOGRAM_SIGFIG: u8 = 2;
/// How far back the bandwidth figures look.
pub const BANDWIDTH_WINDOW: Duration = Duration::from_secs(5);
/// Byte-count samples kept for the bandwidth figures: one per housekeeping
/// tick (250 ms) over [`BANDWIDTH_WINDOW`], plus the one it starts from.
pub const BANDWIDTH_SAMPLES: usize = 21;

/// Why a connection or a request was refused (`shardcast_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` reached: closed at accept.
    MaxConnections,
    /// `max_connections_per_ip` reached for the peer: closed at accept.
    MaxConnectionsPerIp,
    /// An IP rule (`[access]`) refused a publish or play.
    Access,
    /// A publish or play without a valid signature (`[auth]`).
    Auth,
    /// The admin surface refused the peer (`[api]`).
    Admin,
    /// A TLS handshake failed or missed `tls.handshake_timeout_s`.
    TlsHandshake,
    /// A hook (`hooks.on_publish`, `hooks.on_play`) refused a publish or
    /// play, by its answer or by failing with `hooks.on_error = "deny"`.
    Hook,
    /// A hook request not sent because `hooks.inflight_max` were in flight
    /// on the shard (a decision then goes by `hooks.on_error`).
    HookInflight,
    /// A pull not started: the shard runs its share of `edge.pulls_max`.
    PullsMax,
}

/// Number of [`Refused`] reasons.
pub const REFUSALS: usize = 9;

impl Refused {
    /// Every reason, in index order.
    pub const ALL: [Refused; REFUSALS] = [
        Refused::MaxConnections,
        Refused::MaxConnectionsPerIp,
        Refused::Access,
        Refused::Auth,
        Refused::Admin,
        Refused::TlsHandshake,
        Refused::Hook,
        Refused::HookInflight,
        Refused::PullsMax,
    ];

    /// Position in per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::MaxConnectionsPerIp => "max_connections_per_ip",
            Refused::Access => "access",
            Refused::Auth => "auth",
            Refused::Admin => "admin",
            Refused::TlsHandshake => "tls_handshake",
            Refused::Hook => "hook",
            Refused::HookInflight => "hook_inflight_max",
            Refused::PullsMax => "edge_pulls_max",
        }
    }
}

/// What a connection serves, for the connection counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// An RTMP publisher.
    RtmpPublish,
    /// An RTMP player.
    RtmpPlay,
    /// An HTTP-FLV player.
    HttpFlv,
    /// HLS or LL-HLS requests (playlists, segments, parts).
    Hls,
    /// Everything else: API, metrics, pages, player libraries, and
    /// connections that have not said yet what they are.
    Other,
}

/// Number of [`Protocol`]s, the length of per-protocol arrays.
pub const PROTOCOLS: usize = 5;

impl Protocol {
    /// Every protocol, in index order.
    pub const ALL: [Protocol; PROTOCOLS] = [
        Protocol::RtmpPublish,
        Protocol::RtmpPlay,
        Protocol::HttpFlv,
        Protocol::Hls,
        Protocol::Other,
    ];

    /// Position in per-protocol arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `protocol` label value (also the JSON key).
    pub fn label(self) -> &'static str {
        match self {
            Protocol::RtmpPublish => "rtmp_publish",
            Protocol::RtmpPlay => "rtmp_play",
            Protocol::HttpFlv => "http_flv",
            Protocol::Hls => "hls",
            Protocol::Other => "other",
        }
    }
}

/// A histogram with the exact sum of what it recorded (hdrhistogram keeps
/// only bucket counts; Prometheus wants `_sum`).
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Bucket counts.
    pub hist: Histogram<u64>,
    /// Sum of the recorded values (before clamping to the histogram's max).
    pub sum: u64,
}

impl Recorded {
    /// An empty histogram of values in `1..=max` (0 is recorded too).
    pub fn new(max: u64) -> Self {
        let hist = Histogram::new_with_bounds(1, max, HISTOGRAM_SIGFIG)
            .expect("histogram bounds are constants: 1 < max, sigfig <= 5");
        Self { hist, sum: 0 }
    }

    /// Records one value; values past the maximum count as the maximum.
    pub fn record(&mut self, value: u64) {
        self.hist.saturating_record(value);
        self.sum = self.sum.saturating_add(value);
    }

    /// Adds another shard's histogram to this one.
    pub fn merge(&mut self, other: &Recorded) {
        // Same bounds on both sides (constants), so addition cannot fail;
        // were it to, the merged figures would only miss that shard.
        if let Err(e) = self.hist.add(&other.hist) {
            log::warn!("histogram merge failed: {e:?}");
        }
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Samples at or below each bound in `bounds` (ascending), cumulative
    /// as Prometheus buckets are. A sample counts by its bucket's highest
    /// equivalent value, so bounds below 256 are exact.
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = vec![0u64; bounds.len()];
        for v in self.hist.iter_recorded() {
            let value = v.value_iterated_to();
            let first = bounds.partition_point(|&b| b < value);
            if let Some(slot) = out.get_mut(first) {
                *slot += v.count_at_value();
            }
        }
        let mut running = 0;
        for slot in &mut out {
            running += *slot;
            *slot = running;
        }
        out
    }

    /// p50, p90, p99, p99.9 and max.
    pub fn percentiles(&self) -> Percentiles {
        let h = &self.hist;
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Summary of one histogram, in its unit (µs or bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// Monotonic counters of one shard (or, merged, of all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes handed to the kernel for sockets.
    pub bytes_out: u64,
    /// Frames ingested from publishers (on the owner).
    pub frames_in: u64,
    /// Frames queued to players.
    pub frames_out: u64,
    /// Frames slow players skipped (queue over `player_queue_bytes_max`).
    pub frames_skipped: u64,
    /// Publishers this shard handed to their owner.
    pub handoffs_sent: u64,
    /// Publishers handed to this shard.
    pub handoffs_received: u64,
    /// Stream events sent to replica shards.
    pub replica_events_sent: u64,
    /// Stream events received as a replica.
    pub replica_events_received: u64,
    /// Stream events not sent because a replica's channel was full (the
    /// replica is resynchronised at the next keyframe).
    pub replica_events_dropped: u64,
}

impl Counters {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &Counters) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.frames_in += o.frames_in;
        self.frames_out += o.frames_out;
        self.frames_skipped += o.frames_skipped;
        self.handoffs_sent += o.handoffs_sent;
        self.handoffs_received += o.handoffs_received;
        self.replica_events_sent += o.replica_events_sent;
        self.replica_events_received += o.replica_events_received;
        self.replica_events_dropped += o.replica_events_dropped;
    }
}

/// The live counters of one shard. Only its shard touches it.
#[derive(Debug)]
pub struct ShardMetrics {
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    frames_in: Cell<u64>,
    frames_out: Cell<u64>,
    frames_skipped: Cell<u64>,
    handoffs_sent: Cell<u64>,
    handoffs_received: Cell<u64>,
    replica_events_sent: Cell<u64>,
    replica_events_received: Cell<u64>,
    replica_events_dropped: Cell<u64>,
    conns_open: [Cell<u64>; PROTOCOLS],
    conns_total: [Cell<u64>; PROTOCOLS],
    refused: [Cell<u64>; REFUSALS],
    /// µs from a frame's ingest on its owner to its last byte handed to the
    /// kernel for a player (on any shard).
    fanout_us: RefCell<Recorded>,
    /// µs the housekeeping tick fired late.
    stall_us: RefCell<Recorded>,
    /// Bytes per write to a player's socket.
    write_bytes: RefCell<Recorded>,
    /// (time, bytes in, bytes out) at each tick, newest last.
    bandwidth: RefCell<VecDeque<(Instant, u64, u64)>>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

impl ShardMetrics {
    /// All zero.
    pub fn new() -> Self {
        Self {
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            frames_in: Cell::new(0),
            frames_out: Cell::new(0),
            frames_skipped: Cell::new(0),
            handoffs_sent: Cell::new(0),
            handoffs_received: Cell::new(0),
            replica_events_sent: Cell::new(0),
            replica_events_received: Cell::new(0),
            replica_events_dropped: Cell::new(0),
            conns_open: Default::default(),
            conns_total: Default::default(),
            refused: Default::default(),
            fanout_us: RefCell::new(Recorded::new(LATENCY_US_MAX)),
            stall_us: RefCell::new(Recorded::new(LATENCY_US_MAX)),
            write_bytes: RefCell::new(Recorded::new(WRITE_BYTES_MAX)),
            bandwidth: RefCell::new(VecDeque::with_capacity(BANDWIDTH_SAMPLES)),
        }
    }

    pub fn bytes_in(&self, n: u64) {
        add(&self.bytes_in, n);
    }

    /// Bytes written by anything but a player's queue (handshakes, HTTP
    /// responses); see [`ShardMetrics::player_write`] for the queue.
    pub fn bytes_out(&self, n: u64) {
        add(&self.bytes_out, n);
    }

    /// One write of `n` bytes to a player's socket.
    pub fn player_write(&self, n: u64) {
        add(&self.bytes_out, n);
        self.write_bytes.borrow_mut().record(n);
    }

    /// A frame whose ingest was at `ingest` has left for a player at `now`.
    pub fn delivered(&self, ingest: Instant, now: Instant) {
        let us = now.saturating_duration_since(ingest).as_micros();
        self.fanout_us
            .borrow_mut()
            .record(u64::try_from(us).unwrap_or(u64::MAX));
    }

    pub fn frame_in(&self) {
        add(&self.frames_in, 1);
    }

    pub fn frame_out(&self) {
        add(&self.frames_out, 1);
    }

    pub fn frame_skipped(&self) {
        add(&self.frames_skipped, 1);
    }

    /// Counts one refusal.
    pub fn refused(&self, why: Refused) {
        add(&self.refused[why.index()], 1);
    }

    pub fn handoff_sent(&self) {
        add(&self.handoffs_sent, 1);
    }

    pub fn handoff_received(&self) {
        add(&self.handoffs_received, 1);
    }

    pub fn replica_event_sent(&self) {
        add(&self.replica_events_sent, 1);
    }

    pub fn replica_event_received(&self) {
        add(&self.replica_events_received, 1);
    }

    pub fn replica_event_dropped(&self) {
        add(&self.replica_events_dropped, 1);
    }

    /// The housekeeping tick meant for `due` ran at `now`.
    pub fn tick(&self, due: Instant, now: Instant) {
        let late = now.saturating_duration_since(due).as_micros();
        self.stall_us
            .borrow_mut()
            .record(u64::try_from(late).unwrap_or(u64::MAX));
        let mut ring = self.bandwidth.borrow_mut();
        if ring.len() == BANDWIDTH_SAMPLES {
            ring.pop_front();
        }
        ring.push_back((now, self.bytes_in.get(), self.bytes_out.get()));
    }

    /// Bits per second in and out over the samples of the last
    /// [`BANDWIDTH_WINDOW`] (zero until two ticks have passed).
    pub fn bandwidth_bps(&self) -> (u64, u64) {
        let ring = self.bandwidth.borrow();
        let (Some(&(t0, in0, out0)), Some(&(t1, in1, out1))) = (ring.front(), ring.back()) else {
            return (0, 0);
        };
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return (0, 0);
        }
        let bps = |a: u64, b: u64| (b.wrapping_sub(a) as f64 * 8.0 / secs) as u64;
        (bps(in0, in1), bps(out0, out1))
    }

    fn counters(&self) -> Counters {
        Counters {
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            frames_in: self.frames_in.get(),
            frames_out: self.frames_out.get(),
            frames_skipped: self.frames_skipped.get(),
            handoffs_sent: self.handoffs_sent.get(),
            handoffs_received: self.handoffs_received.get(),
            replica_events_sent: self.replica_events_sent.get(),
            replica_events_received: self.replica_events_received.get(),
            replica_events_dropped: self.replica_events_dropped.get(),
        }
    }

    /// A copy of everything, for a stats request. `gauges` are what the
    /// shard's stream table holds right now.
    pub fn snapshot(&self, shard: usize, gauges: Gauges) -> ShardStats {
        let (bps_in, bps_out) = self.bandwidth_bps();
        ShardStats {
            shard,
            counters: self.counters(),
            conns_open: self.conns_open.each_ref().map(Cell::get),
            conns_total: self.conns_total.each_ref().map(Cell::get),
            refused: self.refused.each_ref().map(Cell::get),
            gauges,
            cpu_seconds: thread_cpu_seconds(),
            bandwidth_in_bps: bps_in,
            bandwidth_out_bps: bps_out,
            fanout_us: self.fanout_us.borrow().clone(),
            stall_us: self.stall_us.borrow().clone(),
            write_bytes: self.write_bytes.borrow().clone(),
        }
    }
}

thread_local! {
    /// This thread's shard metrics: a shard is one thread.
    static LOCAL: Rc<ShardMetrics> = Rc::new(ShardMetrics::new());
}

/// The metrics of the shard running on this thread.
pub fn local() -> Rc<ShardMetrics> {
    LOCAL.with(Rc::clone)
}

/// Runs `f` on this thread's shard metrics (the cheap way from code that
/// holds no `Shard`, such as a player's queue).
pub fn with<T>(f: impl FnOnce(&ShardMetrics) -> T) -> T {
    LOCAL.with(|m| f(m))
}

/// CPU seconds this thread has used (user + system), or 0 if the clock is
/// unavailable.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// One connection in its shard's counts, by protocol: counted open while
/// alive, and once in the totals of each protocol it is classified as (or
/// of [`Protocol::Other`] if it never was).
#[derive(Debug)]
pub struct ConnCount {
    metrics: Rc<ShardMetrics>,
    protocol: Cell<Protocol>,
    /// Counted in a total already.
    classified: Cell<bool>,
    /// Left for another shard, which counts it (a publisher handoff).
    moved: Cell<bool>,
}

impl ConnCount {
    /// A new connection, as [`Protocol::Other`] until it says more.
    pub fn open(metrics: Rc<ShardMetrics>) -> Self {
        add(&metrics.conns_open[Protocol::Other.index()], 1);
        Self {
            metrics,
            protocol: Cell::new(Protocol::Other),
            classified: Cell::new(false),
            moved: Cell::new(false),
        }
    }

    /// The connection now serves `p` (an HTTP connection may change with
    /// each request; each change is counted in the new protocol's total).
    pub fn classify(&self, p: Protocol) {
        let was = self.protocol.get();
        if self.classified.get() && p == was {
            return;
        }
        let m = &self.metrics;
        let open = &m.conns_open[was.index()];
        open.set(open.get().saturating_sub(1));
        add(&m.conns_open[p.index()], 1);
        add(&m.conns_total[p.index()], 1);
        self.protocol.set(p);
        self.classified.set(true);
    }

    /// What the connection serves now.
    pub fn protocol(&self) -> Protocol {
        self.protocol.get()
    }

    /// The connection moves to another shard, which counts it from now on.
    pub fn moved(&self) {
        self.moved.set(true);
    }
}

impl Drop for ConnCount {
    fn drop(&mut self) {
        let m = &self.metrics;
        let i = self.protocol.get().index();
        m.conns_open[i].set(m.conns_open[i].get().saturating_sub(1));
        if !self.classified.get() && !self.moved.get() {
            add(&m.conns_total[i], 1);
        }
    }
}

/// What a shard's stream table holds at a stats request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Gauges {
    /// Streams this shard owns (with or without a live publisher).
    pub streams_owned: u64,
    /// Owned streams with a live publisher.
    pub streams_live: u64,
    /// Replicas of other shards' streams.
    pub replicas: u64,
    /// Players attached on this shard (RTMP and HTTP-FLV).
    pub players: u64,
}

impl Gauges {
    fn add(&mut self, o: &Gauges) {
        self.streams_owned += o.streams_owned;
        self.streams_live += o.streams_live;
        self.replicas += o.replicas;
        self.players += o.players;
    }
}

/// One shard's numbers at a stats request.
#[derive(Clone, Debug)]
pub struct ShardStats {
    /// The shard's index.
    pub shard: usize,
    pub counters: Counters,
    /// Open connections by [`Protocol::index`].
    pub conns_open: [u64; PROTOCOLS],
    /// Connections ever counted, by [`Protocol::index`].
    pub conns_total: [u64; PROTOCOLS],
    /// Refusals, by [`Refused::index`].
    pub refused: [u64; REFUSALS],
    pub gauges: Gauges,
    /// CPU time of the shard's thread.
    pub cpu_seconds: f64,
    /// Bits per second read over the last [`BANDWIDTH_WINDOW`].
    pub bandwidth_in_bps: u64,
    /// Bits per second written over the last [`BANDWIDTH_WINDOW`].
    pub bandwidth_out_bps: u64,
    /// Fan-out latency, µs.
    pub fanout_us: Recorded,
    /// Event-loop stall, µs.
    pub stall_us: Recorded,
    /// Bytes per write to a player.
    pub write_bytes: Recorded,
}

/// Every shard's numbers, and their sum.
#[derive(Clone, Debug)]
pub struct Totals {
    /// Each shard, by index.
    pub shards: Vec<ShardStats>,
    /// All shards merged: counters and gauges added, histograms added.
    pub all: ShardStats,
}

impl Totals {
    /// Merges the shards' replies (in any order).
    pub fn merge(mut shards: Vec<ShardStats>) -> Totals {
        shards.sort_by_key(|s| s.shard);
        let mut all = ShardStats {
            shard: 0,
            counters: Counters::default(),
            conns_open: [0; PROTOCOLS],
            conns_total: [0; PROTOCOLS],
            refused: [0; REFUSALS],
            gauges: Gauges::default(),
            cpu_seconds: 0.0,
            bandwidth_in_bps: 0,
            bandwidth_out_bps: 0,
            fanout_us: Recorded::new(LATENCY_US_MAX),
            stall_us: Recorded::new(LATENCY_US_MAX),
            write_bytes: Recorded::new(WRITE_BYTES_MAX),
        };
        for s in &shards {
            all.counters.add(&s.counters);
            for i in 0..PROTOCOLS {
                all.conns_open[i] += s.conns_open[i];
                all.conns_total[i] += s.conns_total[i];
            }
            for i in 0..REFUSALS {
                all.refused[i] += s.refused[i];
            }
            all.gauges.add(&s.gauges);
            all.cpu_seconds += s.cpu_seconds;
            all.bandwidth_in_bps += s.bandwidth_in_bps;
            all.bandwidth_out_bps += s.bandwidth_out_bps;
            all.fanout_us.merge(&s.fanout_us);
            all.stall_us.merge(&s.stall_us);
            all.write_bytes.merge(&s.write_bytes);
        }
        Totals { shards, all }
    }
}

/// Process facts for `shardcast_build_info` and the start time.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    /// `CARGO_PKG_VERSION`.
    pub version: &'static str,
    /// When the process started.
    pub start_time: SystemTime,
}

static STARTED: std::sync::OnceLock<(std::time::Instant, SystemTime)> = std::sync::OnceLock::new();

/// When the process started, on the monotonic clock (for uptime) and the
/// wall clock: the first call of this function (the server makes it at
/// startup). The one start time of the API and of /metrics.
pub fn started() -> (std::time::Instant, SystemTime) {
    *STARTED.get_or_init(|| (std::time::Instant::now(), SystemTime::now()))
}

/// When the process started, on the wall clock ([`started`]).
pub fn start_time() -> SystemTime {
    started().1
}

impl ProcessInfo {
    /// This process.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            start_time: start_time(),
        }
    }
}
