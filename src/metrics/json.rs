//! `GET /api/v1/stats` (also `/api/stats`) and `GET /api/v1/shards`: the
//! gathered numbers as JSON.

use serde::Serialize;

use super::{
    Counters, Percentiles, Protocol, Recorded, ShardStats, Totals, BANDWIDTH_WINDOW, PROTOCOLS,
};

/// Connections by protocol, and their sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ByProtocol {
    pub rtmp_publish: u64,
    pub rtmp_play: u64,
    pub http_flv: u64,
    pub hls: u64,
    pub other: u64,
    pub total: u64,
}

impl ByProtocol {
    /// From a per-protocol array ([`Protocol::index`] order).
    pub fn new(counts: &[u64; PROTOCOLS]) -> Self {
        let at = |p: Protocol| counts[p.index()];
        ByProtocol {
            rtmp_publish: at(Protocol::RtmpPublish),
            rtmp_play: at(Protocol::RtmpPlay),
            http_flv: at(Protocol::HttpFlv),
            hls: at(Protocol::Hls),
            other: at(Protocol::Other),
            total: counts.iter().sum(),
        }
    }
}

/// Bits per second over the last few seconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bandwidth {
    pub in_bps: u64,
    pub out_bps: u64,
    /// The window the rates are measured over.
    pub window_s: u64,
}

impl Bandwidth {
    fn of(s: &ShardStats) -> Self {
        Bandwidth {
            in_bps: s.bandwidth_in_bps,
            out_bps: s.bandwidth_out_bps,
            window_s: BANDWIDTH_WINDOW.as_secs(),
        }
    }
}

/// `/api/v1/stats`.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Shards answering.
    pub shards: usize,
    /// Open connections by protocol.
    pub connections: ByProtocol,
    /// Connections so far by protocol.
    pub connections_total: ByProtocol,
    pub bandwidth: Bandwidth,
    /// Streams owned (each stream has one owner), live, and players.
    pub streams: u64,
    pub streams_live: u64,
    pub players: u64,
    /// Counters summed over shards.
    pub totals: Counters,
}

/// Histogram summaries of one shard (or of all).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Histograms {
    pub fanout_latency_us: Percentiles,
    pub event_loop_stall_us: Percentiles,
    pub write_size_bytes: Percentiles,
}

impl Histograms {
    fn of(s: &ShardStats) -> Self {
        let p = Recorded::percentiles;
        Histograms {
            fanout_latency_us: p(&s.fanout_us),
            event_loop_stall_us: p(&s.stall_us),
            write_size_bytes: p(&s.write_bytes),
        }
    }
}

/// One entry of `/api/v1/shards`.
#[derive(Clone, Debug, Serialize)]
pub struct Shard {
    pub shard: usize,
    pub streams_owned: u64,
    pub streams_live: u64,
    pub replicas: u64,
    pub players: u64,
    pub connections: ByProtocol,
    pub cpu_seconds: f64,
    pub bandwidth: Bandwidth,
    pub counters: Counters,
    pub histograms: Histograms,
}

/// `/api/v1/shards`: each shard, and all of them merged.
#[derive(Clone, Debug, Serialize)]
pub struct Shards {
    pub shards: Vec<Shard>,
    /// Percentiles of the merged histograms.
    pub all: Histograms,
}

/// The body of `/api/v1/stats`.
pub fn stats(t: &Totals) -> Stats {
    let a = &t.all;
    Stats {
        shards: t.shards.len(),
        connections: ByProtocol::new(&a.conns_open),
        connections_total: ByProtocol::new(&a.conns_total),
        bandwidth: Bandwidth::of(a),
        streams: a.gauges.streams_owned,
        streams_live: a.gauges.streams_live,
        players: a.gauges.players,
        totals: a.counters,
    }
}

/// The body of `/api/v1/shards`.
pub fn shards(t: &Totals) -> Shards {
    Shards {
        shards: t
            .shards
            .iter()
            .map(|s| Shard {
                shard: s.shard,
                streams_owned: s.gauges.streams_owned,
                streams_live: s.gauges.streams_live,
                replicas: s.gauges.replicas,
                players: s.gauges.players,
                connections: ByProtocol::new(&s.conns_open),
                cpu_seconds: s.cpu_seconds,
                bandwidth: Bandwidth::of(s),
                counters: s.counters,
                histograms: Histograms::of(s),
            })
            .collect(),
        all: Histograms::of(&t.all),
    }
}
