//! Thread-per-core like the server: one glommio executor per thread, each
//! running its share of the players (player i on thread i mod threads) and
//! nothing shared on the data path. Threads report progress through a few
//! atomics flushed every [`TICK`], and hand their records and histograms
//! back once, at the end.
//!
//! The timeline of a run, from the moment players may start (`start`: in a
//! fanout, right after the publisher's first keyframe):
//!
//! ```text
//!  start ──ramp (players / rate)──▶ ramp end ──SETTLE──▶ window start ──▶ end = start + duration
//! ```
//!
//! Rates and the OK verdict use only what arrived inside the window, after
//! every player started and its GOP-cache burst arrived.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};

use crate::hls::{self, HlsTarget};
use crate::http::{self, HttpFlvTarget};
use crate::net::START_TIMEOUT;
use crate::procstat::{self, ProcSample};
use crate::rtmp::{self, PublishPlan, RtmpTarget};
use crate::stats::{
    ErrorCounts, Hists, PlayerRecord, PlayerState, PlayerSummary, PublisherRecord, Window,
};
use crate::sweep::Sweeper;

/// glommio's preemption slice: how long a busy executor runs tasks before
/// it polls for I/O and timers again. glommio's default (100 ms) would make
/// the lag timer and the publisher's pacing that late under load.
pub const PREEMPT: Duration = Duration::from_millis(5);
/// Period of each thread's lag-measuring timer and progress flush.
pub const TICK: Duration = Duration::from_millis(100);
/// Between the end of the ramp and the start of the window.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Players start this long after the publisher sent its first keyframe.
pub const PLAYERS_AFTER_FIRST_KEYFRAME: Duration = Duration::from_millis(100);
/// The main thread's polling period (progress sampling, server samples).
const POLL: Duration = Duration::from_millis(50);
/// After the planned end, threads get this long before the process exits
/// anyway: every run stops by itself.
pub const EXIT_GRACE: Duration = Duration::from_secs(15);

/// Wall clock, µs since the Unix epoch: the clock of the frame stamps.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What players connect to, chosen by the play URL's scheme and extension
/// (`main.rs`, `player_target`): one variant a protocol, each documented
/// below, plain or over TLS (`rtmps://`, `https://`: the target's
/// [`crate::tls::TlsClient`], `--cacert` or `--insecure`). Each variant
/// has a driver of the shape `play(target, rec, ctx) -> Result<(), String>`
/// that connects only to the target's address, marks the player playing
/// with [`player_started`] and feeds the same [`PlayerRecord`];
/// [`run_player`] does the rest.
#[derive(Clone, Debug)]
pub enum Target {
    /// `rtmp://host:port/app/stream` or `rtmps://…` ([`rtmp::play`]).
    Rtmp(RtmpTarget),
    /// `http://host:port/app/stream.flv[?query]` or `https://…`: HTTP-FLV
    /// ([`http::play`]).
    HttpFlv(HttpFlvTarget),
    /// `http://…/app/stream.m3u8` or `https://…`: HLS or LL-HLS
    /// ([`hls::play`]).
    Hls(HlsTarget),
}

/// Runs one player until the run ends (its thread stops polling it) or its
/// connection fails, and records how it ended.
pub async fn run_player(
    target: Rc<Target>,
    rec: Rc<RefCell<PlayerRecord>>,
    ctx: Rc<ThreadCtx>,
    salt: u64,
) {
    {
        let mut r = rec.borrow_mut();
        r.connect_started = Some(Instant::now());
        r.state = PlayerState::Starting;
    }
    let result = match &*target {
        Target::Rtmp(t) => rtmp::play(t, &rec, &ctx, salt).await,
        Target::HttpFlv(t) => http::play(t, &rec, &ctx).await,
        Target::Hls(t) => hls::play(t, &rec, &ctx).await,
    };
    let what = match result {
        Ok(()) => "server closed the connection".to_string(),
        Err(e) => e,
    };
    ctx.errors.borrow_mut().add(&what);
    let mut r = rec.borrow_mut();
    if r.state == PlayerState::Playing {
        r.state = PlayerState::Dropped;
        ctx.progress().dropped.fetch_add(1, Ordering::Relaxed);
    } else {
        r.state = PlayerState::Failed;
        ctx.progress().failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A player's start-up (connect to the start of media) against
/// [`START_TIMEOUT`]; `what` names what never came. Only the start-up races
/// a timer: polling one on every read afterwards would cost a timer
/// re-insertion per read.
pub async fn start_within<T>(
    what: &str,
    start: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    futures_lite::future::or(start, async {
        glommio::timer::sleep(START_TIMEOUT).await;
        Err(format!("no {what} within {START_TIMEOUT:?}"))
    })
    .await
}

/// Marks a player as playing: media may flow from now on.
pub fn player_started(rec: &RefCell<PlayerRecord>, ctx: &ThreadCtx) {
    let mut r = rec.borrow_mut();
    r.state = PlayerState::Playing;
    r.play_started_wall_us = wall_us();
    ctx.progress().connected.fetch_add(1, Ordering::Relaxed);
}

/// Everything a run does, fixed before it starts.
#[derive(Debug)]
pub struct Plan {
    /// `publish`, `play` or `fanout`.
    pub mode: &'static str,
    /// Players' target; None for a publish-only run.
    pub target: Option<Target>,
    /// The in-process publisher, if any (runs on thread 0).
    pub publish: Option<PublishPlan>,
    pub players: usize,
    pub ramp_per_s: f64,
    pub duration: Duration,
    /// Player threads; a publisher runs on one more executor of its own.
    pub threads: usize,
    /// SO_RCVLOWAT of players' sockets once playing; 0 or 1 = off.
    pub rcvlowat: u32,
    pub pin_cores: bool,
}

/// When things happen in a run.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    pub start: Instant,
    pub ramp_end: Instant,
    pub window: Window,
    pub end: Instant,
}

impl Plan {
    /// How long starting every player takes.
    pub fn ramp_time(&self) -> Duration {
        if self.players == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(self.players as f64 / self.ramp_per_s)
        }
    }

    /// When player `i` starts, after the timeline's start.
    pub fn player_offset(&self, i: usize) -> Duration {
        Duration::from_secs_f64(i as f64 / self.ramp_per_s)
    }

    pub fn timeline(&self, start: Instant) -> Timeline {
        let end = start + self.duration;
        let ramp_end = start + self.ramp_time();
        let window_start = if self.players == 0 {
            start
        } else {
            (ramp_end + SETTLE).min(end)
        };
        Timeline {
            start,
            ramp_end,
            window: Window {
                start: window_start,
                end,
            },
            end,
        }
    }
}

/// Progress of one thread, read by the main thread for the progress line.
#[derive(Default)]
pub struct ThreadProgress {
    pub started: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    /// Bytes players read (flushed every tick).
    pub socket_bytes: AtomicU64,
    /// Bytes the publisher wrote.
    pub publisher_bytes: AtomicU64,
}

/// The little that threads share: when players start, whether the run was
/// aborted, and progress counters.
pub struct Shared {
    pub epoch: Instant,
    /// ns after `epoch` + 1; 0 while unknown.
    players_start: AtomicU64,
    aborted: AtomicBool,
    abort_reason: Mutex<Option<String>>,
    pub progress: Vec<ThreadProgress>,
    pub finished: AtomicUsize,
}

impl Shared {
    pub fn new(threads: usize) -> Self {
        Shared {
            epoch: Instant::now(),
            players_start: AtomicU64::new(0),
            aborted: AtomicBool::new(false),
            abort_reason: Mutex::new(None),
            progress: (0..threads).map(|_| ThreadProgress::default()).collect(),
            finished: AtomicUsize::new(0),
        }
    }

    pub fn set_players_start(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        self.players_start.store(ns, Ordering::Release);
    }

    pub fn players_start(&self) -> Option<Instant> {
        match self.players_start.load(Ordering::Acquire) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns - 1)),
        }
    }

    /// Stops the run early; the first reason wins.
    pub fn abort(&self, reason: String) {
        if let Ok(mut r) = self.abort_reason.lock() {
            r.get_or_insert(reason);
        }
        self.aborted.store(true, Ordering::Release);
    }

    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    pub fn abort_reason(&self) -> Option<String> {
        self.abort_reason.lock().ok().and_then(|r| r.clone())
    }
}

/// One thread's context, shared by its tasks (`Rc`, never leaves the
/// thread).
pub struct ThreadCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub plan: Arc<Plan>,
    pub hists: RefCell<Hists>,
    pub errors: RefCell<ErrorCounts>,
    /// Bytes read since the last flush to `progress().socket_bytes`.
    bytes: Cell<u64>,
    timeline: Cell<Option<Timeline>>,
    /// Where players wait for media ([`crate::sweep`]).
    pub sweeper: Rc<Sweeper>,
}

impl ThreadCtx {
    pub fn progress(&self) -> &ThreadProgress {
        &self.shared.progress[self.id]
    }

    /// `n` bytes a player read from its socket just now.
    pub fn on_read(&self, rec: &RefCell<PlayerRecord>, n: usize, window: &Window) {
        rec.borrow_mut().on_socket_bytes(n, Instant::now(), window);
        self.bytes.set(self.bytes.get() + n as u64);
    }

    /// The run's timeline, once the players' start is known.
    pub fn timeline(&self) -> Option<Timeline> {
        if let Some(t) = self.timeline.get() {
            return Some(t);
        }
        let t = self.plan.timeline(self.shared.players_start()?);
        self.timeline.set(Some(t));
        Some(t)
    }

    /// The window, or an empty one while the timeline is unknown.
    pub fn window(&self) -> Window {
        self.timeline().map(|t| t.window).unwrap_or(Window {
            start: self.shared.epoch,
            end: self.shared.epoch,
        })
    }

    /// Fixes when players start (the publisher calls this) and returns the
    /// timeline.
    pub fn start_players(&self, at: Instant) -> Timeline {
        self.shared.set_players_start(at);
        let t = self.plan.timeline(at);
        self.timeline.set(Some(t));
        t
    }

    fn flush_bytes(&self) {
        let n = self.bytes.replace(0);
        self.progress().socket_bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a thread hands back at the end.
pub struct ThreadResult {
    pub players: Vec<PlayerSummary>,
    pub hists: Hists,
    pub errors: ErrorCounts,
    pub publisher: Option<PublisherRecord>,
}

async fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        glommio::timer::sleep(t - now).await;
    }
}

/// Measures how late a periodic timer fires (the thread's own event-loop
/// lag) and flushes progress counters, every [`TICK`].
async fn ticker(ctx: Rc<ThreadCtx>) {
    let mut next = Instant::now() + TICK;
    loop {
        sleep_until(next).await;
        let now = Instant::now();
        ctx.hists
            .borrow_mut()
            .record_timer_lag(now.saturating_duration_since(next));
        ctx.flush_bytes();
        next += TICK;
        if next < now {
            next = now + TICK;
        }
    }
}

/// What one executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Its share of the players (player i on thread i mod threads).
    Players,
    /// The in-process publisher, alone, so player load cannot delay its
    /// pacing.
    Publisher,
}

async fn thread_main(id: usize, role: Role, plan: Arc<Plan>, shared: Arc<Shared>) -> ThreadResult {
    let sweeper = Rc::new(Sweeper::new().unwrap_or_else(|e| {
        eprintln!("shardcast-bench: thread {id}: epoll_create1: {e}");
        std::process::exit(2)
    }));
    let ctx = Rc::new(ThreadCtx {
        id,
        shared: shared.clone(),
        plan: plan.clone(),
        hists: RefCell::new(Hists::default()),
        errors: RefCell::new(ErrorCounts::default()),
        bytes: Cell::new(0),
        timeline: Cell::new(None),
        sweeper,
    });
    glommio::spawn_local(ticker(ctx.clone())).detach();
    if role == Role::Players {
        glommio::spawn_local(ctx.sweeper.clone().run()).detach();
    }
    let publisher = match (&plan.publish, role) {
        (Some(p), Role::Publisher) => {
            let rec = Rc::new(RefCell::new(PublisherRecord::default()));
            glommio::spawn_local(rtmp::run_publisher(
                Rc::new(p.clone()),
                rec.clone(),
                ctx.clone(),
            ))
            .detach();
            Some(rec)
        }
        _ => None,
    };
    let mut records = Vec::new();
    let timeline = loop {
        if shared.aborted() {
            break None;
        }
        if let Some(t) = ctx.timeline() {
            break Some(t);
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    };
    if let Some(tl) = timeline {
        // One shared copy of the target per thread, whatever its protocol.
        let target = match (&plan.target, role) {
            (Some(t), Role::Players) => Some(Rc::new(t.clone())),
            _ => None,
        };
        if let Some(target) = target {
            for i in (id..plan.players).step_by(plan.threads) {
                sleep_until(tl.start + plan.player_offset(i)).await;
                if shared.aborted() || Instant::now() >= tl.end {
                    break;
                }
                let rec = Rc::new(RefCell::new(PlayerRecord::default()));
                records.push(rec.clone());
                ctx.progress().started.fetch_add(1, Ordering::Relaxed);
                glommio::spawn_local(run_player(target.clone(), rec, ctx.clone(), i as u64))
                    .detach();
            }
        }
        // Sleep to the end, waking early if the run is aborted.
        while !shared.aborted() && Instant::now() < tl.end {
            sleep_until(tl.end.min(Instant::now() + TICK)).await;
        }
    }
    ctx.flush_bytes();
    // Unstarted players count too: they were asked for.
    let end = timeline.map(|t| t.end).unwrap_or_else(Instant::now);
    let mut players: Vec<PlayerSummary> = records
        .iter()
        .map(|r| {
            let mut r = r.borrow_mut();
            r.finish(end);
            PlayerSummary::from(&*r)
        })
        .collect();
    let mine = match role {
        Role::Players => (id..plan.players).step_by(plan.threads).count(),
        Role::Publisher => 0,
    };
    players.resize(mine, PlayerSummary::from(&PlayerRecord::default()));
    // Returning ends this executor; its remaining tasks (the players) are
    // dropped, which closes their sockets.
    let hists = std::mem::take(&mut *ctx.hists.borrow_mut());
    let errors = ctx.errors.borrow().clone();
    let publisher = publisher.map(|p| p.borrow().clone());
    ThreadResult {
        players,
        hists,
        errors,
        publisher,
    }
}

/// Samples taken by the main thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Samples {
    pub server_at_start: Option<ProcSample>,
    pub server_at_window_start: Option<ProcSample>,
    pub server_at_window_end: Option<ProcSample>,
    pub self_cpu_at_window_start: Option<f64>,
    pub self_cpu_at_window_end: Option<f64>,
}

/// The outcome of a run.
pub struct RunResult {
    pub threads: Vec<ThreadResult>,
    pub timeline: Option<Timeline>,
    pub abort: Option<String>,
    pub samples: Samples,
    pub self_cpu_total_s: f64,
    pub wall: Duration,
}

/// Runs the plan on `plan.threads` player executors (and the publisher's
/// own), printing a progress line to
/// stderr every second, and sampling `server_pid` at the start and at both
/// ends of the window.
pub fn run(plan: Arc<Plan>, server_pid: Option<u32>) -> std::io::Result<RunResult> {
    let shared = Arc::new(Shared::new(plan.threads + 1));
    let cpu_at_start = procstat::self_cpu_s();
    let mut samples = Samples {
        server_at_start: server_pid.and_then(|p| procstat::sample(p).ok()),
        ..Samples::default()
    };
    if plan.publish.is_none() {
        shared.set_players_start(Instant::now());
    }
    let cpus: Vec<usize> = if plan.pin_cores {
        // glommio's set has no order; thread k goes on the k-th CPU.
        let mut cpus: Vec<usize> = glommio::CpuSet::online()
            .map_err(|e| std::io::Error::other(format!("listing online CPUs: {e}")))?
            .into_iter()
            .map(|l| l.cpu)
            .collect();
        cpus.sort_unstable();
        cpus.dedup();
        cpus
    } else {
        Vec::new()
    };
    // Player threads 0..threads, then the publisher's own executor.
    let mut roles: Vec<Role> = (0..plan.threads).map(|_| Role::Players).collect();
    if plan.publish.is_some() {
        roles.push(Role::Publisher);
    }
    let mut handles = Vec::with_capacity(roles.len());
    for (id, &role) in roles.iter().enumerate() {
        let placement = match cpus.get(id % cpus.len().max(1)) {
            Some(&cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let (plan, shared) = (plan.clone(), shared.clone());
        let name = match role {
            Role::Players => format!("bench-{id}"),
            Role::Publisher => "bench-pub".to_string(),
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&name)
            .preempt_timer(PREEMPT)
            .spawn(move || async move {
                let r = thread_main(id, role, plan, shared.clone()).await;
                shared.finished.fetch_add(1, Ordering::Release);
                r
            })
            .map_err(|e| std::io::Error::other(format!("starting thread {id}: {e}")))?;
        handles.push(handle);
    }

    let started = Instant::now();
    // The longest a publisher may take to go live, then the run itself.
    let deadline = started + START_TIMEOUT + plan.duration + EXIT_GRACE;
    let mut next_print = started + Duration::from_secs(1);
    let mut last_bytes = 0u64;
    let mut last_print = started;
    loop {
        std::thread::sleep(POLL);
        let now = Instant::now();
        let done = shared.finished.load(Ordering::Acquire) == roles.len();
        if let Some(tl) = shared.players_start().map(|s| plan.timeline(s)) {
            if samples.self_cpu_at_window_start.is_none() && now >= tl.window.start {
                samples.self_cpu_at_window_start = Some(procstat::self_cpu_s());
                samples.server_at_window_start = server_pid.and_then(|p| procstat::sample(p).ok());
            }
            if samples.self_cpu_at_window_end.is_none() && (now >= tl.window.end || done) {
                samples.self_cpu_at_window_end = Some(procstat::self_cpu_s());
                samples.server_at_window_end = server_pid.and_then(|p| procstat::sample(p).ok());
            }
        }
        if done {
            break;
        }
        if now >= next_print {
            let bytes = print_progress(&plan, &shared, now, last_bytes, last_print);
            last_bytes = bytes;
            last_print = now;
            next_print += Duration::from_secs(1);
        }
        if now >= deadline {
            eprintln!(
                "shardcast-bench: threads did not stop within {EXIT_GRACE:?} of the planned \
                 end; exiting"
            );
            std::process::exit(3);
        }
    }
    let mut threads = Vec::with_capacity(handles.len());
    for (id, h) in handles.into_iter().enumerate() {
        threads.push(
            h.join()
                .map_err(|e| std::io::Error::other(format!("thread {id}: {e}")))?,
        );
    }
    Ok(RunResult {
        threads,
        timeline: shared.players_start().map(|s| plan.timeline(s)),
        abort: shared.abort_reason(),
        samples,
        self_cpu_total_s: procstat::self_cpu_s() - cpu_at_start,
        wall: started.elapsed(),
    })
}

/// Prints one progress line; returns the byte count it was based on.
fn print_progress(
    plan: &Plan,
    shared: &Shared,
    now: Instant,
    last_bytes: u64,
    last_print: Instant,
) -> u64 {
    let sum = |f: fn(&ThreadProgress) -> &AtomicU64| -> u64 {
        shared
            .progress
            .iter()
            .map(|p| f(p).load(Ordering::Relaxed))
            .sum()
    };
    let secs = now.saturating_duration_since(shared.epoch).as_secs_f64();
    let dt = now
        .saturating_duration_since(last_print)
        .as_secs_f64()
        .max(1e-3);
    let phase = match shared.players_start().map(|s| plan.timeline(s)) {
        None => "waiting for the publisher".to_string(),
        Some(tl) if now < tl.ramp_end => format!("ramp {:.0}/s", plan.ramp_per_s),
        Some(tl) if now < tl.window.start => "settling".to_string(),
        Some(tl) => format!(
            "window {:.0}/{:.0} s",
            now.saturating_duration_since(tl.window.start).as_secs_f64(),
            tl.window.secs()
        ),
    };
    if plan.players == 0 {
        let tx = sum(|p| &p.publisher_bytes);
        eprintln!(
            "[{secs:6.1}s] publishing, tx {:.2} Mbit/s, {phase}",
            (tx - last_bytes) as f64 * 8.0 / dt / 1e6
        );
        return tx;
    }
    let bytes = sum(|p| &p.socket_bytes);
    eprintln!(
        "[{secs:6.1}s] players {}/{} started, {} connected, {} failed, {} dropped, \
         rx {:.3} Gbit/s, {phase}",
        sum(|p| &p.started),
        plan.players,
        sum(|p| &p.connected),
        sum(|p| &p.failed),
        sum(|p| &p.dropped),
        (bytes.saturating_sub(last_bytes)) as f64 * 8.0 / dt / 1e9,
    );
    bytes
}
