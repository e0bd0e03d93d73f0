//! One shard of the server: its listener, its stream table, its
//! connections, and the messages it exchanges with the other shards.
//!
//! The stream table (`stream::table`) is pure: the shard feeds it events
//! and carries out the [`Actions`] it returns ([`Shard::with_table`]):
//! signals raised, bytes written to the players that have them ready (the
//! direct write, through this shard's direct-write table), and messages
//! sent to other shards. A publisher accepted elsewhere is handed to the
//! owner with its socket and session state; a player stays on the shard
//! that accepted it and is fed by that shard's replica.

mod accept;
pub mod api;
mod decide;
mod hooks;
mod http_conn;
mod player;
mod pull;
mod push;
mod rtmp_conn;
mod stats;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shards::{MovedConnection, SendError, ShardCtx};

use crate::config::Config;
use crate::error::Refusal;
use crate::net::io::{flush_or_wake, DirectWriter};
use crate::net::{Carried, Conns, Registered, TlsAcceptor, Transport};
use crate::stream::table::{
    Actions, Lane, PeerMsg, PublisherSlot, Source, StreamTable, TableConfig,
};
use crate::stream::{
    Coalesce, GopLimits, IngestMeter, Notify, Player, Rendition, Signal, StreamEvent, StreamKey,
};
use accept::Port;
use proto::hls::HlsWindow;
use proto::rtmp::amf::AmfLimits;
use proto::rtmp::chunk::ChunkLimits;
use proto::rtmp::session::{ServerSession, SessionConfig, StreamRequest};

pub use crate::net::ConnSlot;
pub use decide::{Action, Ask, DECISION_TIMEOUT};

/// Period of each shard's housekeeping (idle connections, expired waits,
/// replica linger, skip reports, shutdown).
pub const TICK: Duration = Duration::from_millis(250);
/// Messages each shard-to-shard media channel (`PeerMsg::Event`) holds. At
/// 30 fps video plus ~43 fps audio this is about 14 s of one stream: a
/// replica is only this far behind if its shard is stuck, and then it is
/// resynchronised at a keyframe.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Messages each shard-to-shard control channel (every other `ShardMsg`)
/// holds; more wait, in order, in the sender's outbox.
pub const CONTROL_CHANNEL_CAPACITY: usize = 256;
/// Control messages one shard may have waiting for another beyond that
/// channel; posting more fails (logged): the receiving shard is stuck.
pub const CONTROL_BACKLOG_MAX: usize = 16384;
/// The largest player-library file `/assets/` serves (hls.js is ~0.5 MB).
pub const ASSET_BYTES_MAX: u64 = 8 << 20;
/// How long a gather across shards (e.g. the stream list) waits for replies.
pub const GATHER_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a waiting request re-asserts its interest in the stream (it
/// also wakes at once on any change of the stream).
pub const WAIT_REFRESH: Duration = Duration::from_secs(1);
/// How long shutdown waits for connections to say goodbye.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Typed messages between shards.
pub enum ShardMsg {
    /// A publisher whose stream this shard owns.
    Publisher(Box<MovedConnection<Carried<PublisherHandoff>>>),
    /// One stream table's message to another's.
    Peer(PeerMsg),
    /// Reply with the live streams the receiver owns.
    ListLive(flume::Sender<Vec<StreamKey>>),
    /// Reply with a snapshot of the receiver's metrics (`server::stats`).
    Stats(flume::Sender<crate::metrics::ShardStats>),
    /// A request of the JSON API (a gather, or a drop) and its reply channel.
    Api(api::ApiMsg),
}

/// What travels with a publisher's socket to the owner shard.
pub struct PublisherHandoff {
    /// The session, with any events it has not delivered yet.
    pub session: ServerSession,
    /// The publish request being answered.
    pub request: StreamRequest,
    /// The resolved key.
    pub key: StreamKey,
    /// Remote address.
    pub peer: SocketAddr,
    /// When the connection was accepted, and its counters so far.
    pub slot: ConnSlot,
    /// The client id `hooks.on_publish` was told (the accepting shard's;
    /// the owner gives the connection an id of its own for the API), so
    /// `hooks.on_unpublish` names the same client.
    pub hook_client_id: u64,
}

// A handed-off publisher crosses threads.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<PublisherHandoff>();
};

/// Shards that have bound their listener (the last one logs `listening`).
static SHARDS_LISTENING: AtomicUsize = AtomicUsize::new(0);

/// The stream table's settings from `config` (`clustered`: an origin of
/// a cluster on Redis).
fn table_config(ctx: &ShardCtx<ShardMsg>, config: &Config, clustered: bool) -> TableConfig {
    let s = &config.stream;
    TableConfig {
        shard: ctx.id(),
        shards: ctx.count(),
        owner_of: shards::shard_for,
        gop: GopLimits {
            enabled: s.gop_cache,
            bytes_max: s.gop_cache_bytes_max,
            frames_max: s.gop_cache_frames_max,
        },
        chunk_size: config.rtmp.chunk_size_out,
        hls: config.hls.to_hls_config(),
        coalesce: Coalesce {
            audio: Duration::from_millis(s.audio_coalesce_ms),
            write: Duration::from_millis(s.write_coalesce_ms),
        },
        republish: s.republish,
        publisher_grace: s.publisher_grace(),
        // Edges pull what is asked for; origins of a cluster pull what
        // another origin has.
        keep_pulling: (config.mode == crate::config::Mode::Edge || clustered)
            .then(|| Duration::from_secs(config.edge.keep_pulling_s)),
        pulls_max: config.edge.pulls_max.div_ceil(ctx.count()),
        containers: config.hls.containers(),
    }
}

/// What a reload replaces: the configuration, and what is parsed from it
/// once per generation.
pub(crate) struct Live {
    pub(crate) config: Arc<Config>,
    /// Its `crate::reload` generation (0: none was installed) and load time.
    pub(crate) generation: u64,
    pub(crate) loaded_unix_ms: u64,
    /// The IP rules of publishes and plays (`[access]`).
    pub(crate) access_publish: crate::access::Rule,
    pub(crate) access_play: crate::access::Rule,
    /// Peers besides loopback admitted to the admin surface (`api.allow`).
    pub(crate) api_allow: crate::access::Cidrs,
}

impl Live {
    fn new(config: Arc<Config>, generation: u64, loaded_unix_ms: u64) -> Self {
        Live {
            generation,
            loaded_unix_ms,
            access_publish: config.access_rule(true),
            access_play: config.access_rule(false),
            api_allow: crate::access::Cidrs::parse(&config.api.allow).unwrap_or_default(),
            config,
        }
    }
}

/// One shard's state. Only this shard touches it.
pub struct Shard {
    ctx: ShardCtx<ShardMsg>,
    /// The configuration and what is parsed from it; a reload (SIGHUP)
    /// replaces it when this shard next accepts (see `crate::reload`).
    live: RefCell<Rc<Live>>,
    /// The streams this shard holds, owned and replicas.
    table: RefCell<StreamTable>,
    /// Open connections on this shard (ids, idle checks, shutdown, the API).
    conns: Rc<Conns>,
    /// Players whose connection the fan-out may write to directly, by
    /// player id (see `player::DirectWrites`).
    direct: RefCell<HashMap<u64, DirectWriter>>,
    stopping: Signal,
    /// Player library files served at `/assets/`, read on first use.
    assets: RefCell<HashMap<String, Bytes>>,
    /// This shard's counters and histograms (also reachable as
    /// `metrics::with` from code that holds no `Shard`: a shard is a thread).
    metrics: Rc<crate::metrics::ShardMetrics>,
    /// The certificates, shared by every shard; None without `[tls]`.
    tls: Option<Arc<TlsAcceptor>>,
    /// Gives freed memory back to the kernel after many connections end.
    trim: RefCell<crate::net::registry::Trim>,
    /// The HTTP hooks (`[hooks]`), their requests in flight and the HLS
    /// sessions they admitted.
    hooks: Rc<hooks::Hooks>,
    /// Edge mode, or an origin of a cluster: the origins and retry
    /// policy of this shard's pulls.
    edge: Option<pull::Edge>,
    /// The cluster's registry (`[cluster] redis`).
    registry: Option<crate::cluster::Registry>,
}

impl Shard {
    fn new(
        ctx: ShardCtx<ShardMsg>,
        config: Arc<Config>,
        tls: Option<Arc<TlsAcceptor>>,
        registry: Option<crate::cluster::Registry>,
    ) -> Self {
        let table = StreamTable::new(table_config(&ctx, &config, registry.is_some()));
        Self {
            conns: Rc::new(Conns::new(ctx.id(), crate::config::SHARDS_MAX)),
            table: RefCell::new(table),
            hooks: Rc::new(hooks::Hooks::new(&config.hooks)),
            edge: pull::Edge::new(&config, registry.is_some()),
            registry,
            ctx,
            live: RefCell::new(Rc::new(match crate::reload::current() {
                Some(l) => Live::new(config, l.generation, l.loaded_unix_ms),
                None => Live::new(config, 0, crate::stream::unix_ms()),
            })),
            tls,
            trim: RefCell::new(crate::net::registry::Trim::default()),
            direct: RefCell::new(HashMap::new()),
            stopping: Signal::default(),
            assets: RefCell::new(HashMap::new()),
            metrics: crate::metrics::local(),
        }
    }

    /// The configuration in use (see [`Live`]).
    pub fn config(&self) -> Arc<Config> {
        self.live.borrow().config.clone()
    }

    pub(crate) fn live(&self) -> Rc<Live> {
        self.live.borrow().clone()
    }

    /// Takes the configuration of a reload, if one was installed since
    /// this shard last looked: new connections and streams use it, open
    /// ones keep theirs.
    pub(crate) fn refresh(&self) {
        if crate::reload::generation() == self.live.borrow().generation {
            return;
        }
        let Some(loaded) = crate::reload::current() else {
            return;
        };
        let config = loaded.config.clone();
        self.hooks.reconfigure(&config.hooks);
        self.table
            .borrow_mut()
            .reconfigure(table_config(&self.ctx, &config, self.registry.is_some()));
        *self.live.borrow_mut() = Rc::new(Live::new(
            config,
            loaded.generation,
            loaded.loaded_unix_ms,
        ));
        log::debug!(
            "shard {}: configuration generation {} in use",
            self.id(),
            loaded.generation
        );
    }

    /// This shard's index.
    pub fn id(&self) -> usize {
        self.ctx.id()
    }

    fn session_config(&self) -> SessionConfig {
        let r = &self.config().rtmp;
        SessionConfig {
            chunk: ChunkLimits {
                chunk_size_max: r.chunk_size_in_max,
                message_len_max: r.message_len_max,
                chunk_streams_max: r.chunk_streams_max,
                // Two maximal messages in reassembly at once, as the
                // decoder's default: a keyframe and its audio fit.
                partial_bytes_max: 2 * u64::from(r.message_len_max),
            },
            amf: AmfLimits {
                depth_max: r.amf_depth_max,
                ..AmfLimits::default()
            },
            chunk_size_out: r.chunk_size_out,
            window_ack_size: r.window_ack_size,
        }
    }

    /// `vhost/app/stream` for an RTMP request (see [`Shard::key_for`]).
    pub fn stream_key(&self, req: &StreamRequest) -> StreamKey {
        self.key_for(
            req.param("vhost"),
            req.tc_url_host.as_deref(),
            &req.app,
            &req.name,
        )
    }

    /// `vhost/app/stream`: the vhost from `?vhost=`, else the host the client
    /// used (tcUrl or Host header), when it is one of the configured vhosts;
    /// else the default vhost.
    pub fn key_for(
        &self,
        vhost_param: Option<&str>,
        host: Option<&str>,
        app: &str,
        name: &str,
    ) -> StreamKey {
        let config = self.config();
        let known = |h: &&str| config.vhosts.iter().any(|v| v.eq_ignore_ascii_case(h));
        let vhost = vhost_param
            .filter(known)
            .or(host.filter(known))
            .unwrap_or(&config.default_vhost);
        Arc::from(format!("{vhost}/{app}/{name}"))
    }

    /// Runs `f` on the stream table and carries out what it asks:
    /// raises signals, writes to the players with bytes ready (directly to
    /// those whose writer is parked), sends messages to other shards.
    fn with_table<T>(self: &Rc<Self>, f: impl FnOnce(&mut StreamTable) -> T) -> T {
        let (out, mut actions) = {
            let mut table = self.table.borrow_mut();
            let out = f(&mut table);
            (out, table.take_actions())
        };
        if !actions.is_empty() {
            self.execute(&mut actions);
        }
        self.table.borrow_mut().recycle(actions);
        out
    }

    fn execute(self: &Rc<Self>, actions: &mut Actions) {
        for s in actions.raise.drain(..) {
            s.raise();
        }
        for (key, stop) in actions.pull.drain(..) {
            glommio::spawn_local(pull::run(self.clone(), key, stop)).detach();
        }
        for _ in 0..std::mem::take(&mut actions.pulls_refused) {
            self.metrics.refused(crate::metrics::Refused::PullsMax);
        }
        {
            let direct = self.direct.borrow();
            let now = Instant::now();
            for p in actions.ready.drain(..) {
                flush_or_wake(&mut p.queue.borrow_mut(), direct.get(&p.id), now);
            }
        }
        for (to, msg) in actions.send.drain(..) {
            match &msg {
                PeerMsg::Subscribe(key) | PeerMsg::Unsubscribe(key) => log::debug!(
                    "subscription key={key} subscribe={} shard={} owner={to}",
                    matches!(msg, PeerMsg::Subscribe(_)),
                    self.id()
                ),
                _ => {}
            }
            match msg.lane() {
                Lane::Media => self.send_media(to, msg),
                Lane::Control => self.send_control(to, ShardMsg::Peer(msg)),
            }
        }
    }

    /// Sends a media event without waiting; a full lane makes the replica
    /// lag (resynchronised at its next keyframe).
    fn send_media(&self, to: usize, msg: PeerMsg) {
        let key = msg.key().clone();
        match self.ctx.try_send_media(to, ShardMsg::Peer(msg)) {
            Ok(()) => self.metrics.replica_event_sent(),
            Err(SendError::Full) => {
                self.metrics.replica_event_dropped();
                if self.table.borrow_mut().media_lost(&key, to) {
                    log::warn!(
                        "replica lagging key={key} shard={to} (channel of {CHANNEL_CAPACITY} full); resync at next keyframe"
                    );
                }
            }
            Err(e) => log::debug!("replica shard={to} unreachable: {e}"),
        }
    }

    /// Posts a control message: never lost to a full channel, delivered
    /// in posting order (an unsubscribe never overtakes a later subscribe).
    fn send_control(&self, to: usize, msg: ShardMsg) {
        if let Err(e) = self.ctx.post_control(to, msg) {
            log::warn!("control message to shard {to} failed: {e}");
        }
    }

    /// Is the stream live, as this shard sees it? (Follows it.)
    pub fn watch_live(self: &Rc<Self>, key: &StreamKey) -> bool {
        self.with_table(|t| t.watch_live(key, Instant::now()))
    }

    /// How long a player waits for a stream that is not live yet:
    /// `edge.pull_wait_ms` on an edge (its pull is starting), else
    /// `http.stream_wait_s`.
    pub fn stream_wait(&self) -> Duration {
        if self.is_edge() {
            self.config().edge.pull_wait()
        } else {
            Duration::from_secs(self.config().http.stream_wait_s)
        }
    }

    /// `mode = "edge"`.
    pub fn is_edge(&self) -> bool {
        self.config().mode == crate::config::Mode::Edge
    }

    /// How long an RTMP play waits for the stream to be live before its
    /// answer, if at all: an edge waits for its pull (`edge.pull_wait_ms`);
    /// an origin answers an edge's pull (query `edge=`) within
    /// [`pull::PULL_PROBE_WAIT`]; other plays start at once and wait for a
    /// publisher as players.
    pub fn rtmp_play_wait(&self, query: &[(String, String)]) -> Option<Duration> {
        if self.is_edge() {
            Some(self.config().edge.pull_wait())
        } else if proto::query::param(query, pull::EDGE_PARAM).is_some() {
            Some(pull::PULL_PROBE_WAIT)
        } else {
            None
        }
    }

    /// Waits up to `wait` for `key` to be live on this shard, waking as
    /// soon as its state changes; false if it is not by then or `close`
    /// was raised.
    pub async fn wait_live(
        self: &Rc<Self>,
        key: &StreamKey,
        wait: Duration,
        close: &Signal,
    ) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.watch_live(key) {
                return true;
            }
            // Read right after the check, with no await between: no change
            // can slip in unnoticed.
            let seen = self.stream_changed(key).map(|n| (n.generation(), n));
            if Instant::now() >= deadline || close.is_raised() {
                return false;
            }
            let nap = deadline
                .saturating_duration_since(Instant::now())
                .min(WAIT_REFRESH);
            match seen {
                Some((generation, notify)) => {
                    let _ = futures_lite::future::or(
                        notify.changed(generation),
                        glommio::timer::sleep(nap),
                    )
                    .await;
                }
                None => glommio::timer::sleep(nap.min(Duration::from_millis(20))).await,
            }
        }
    }

    /// Follows `key` for HLS rendition `r` (see `StreamTable::watch_hls`).
    pub fn watch_hls(self: &Rc<Self>, key: &StreamKey, r: Rendition) -> Option<(Rc<Notify>, bool)> {
        self.with_table(|t| t.watch_hls(key, r, Instant::now(), crate::stream::unix_ms()))
    }

    /// The change notifier of this shard's copy of `key`, if it has one.
    pub fn stream_changed(&self, key: &StreamKey) -> Option<Rc<Notify>> {
        self.table.borrow().changed(key)
    }

    /// Runs `f` on this shard's HLS window of `key`/`r`, if there is one.
    pub fn with_hls<T>(
        &self,
        key: &StreamKey,
        r: Rendition,
        f: impl FnOnce(&HlsWindow) -> T,
    ) -> Option<T> {
        self.table.borrow().hls(key, r).map(f)
    }

    /// Counts one HLS request served for `key`.
    pub fn count_hls_request(&self, key: &StreamKey) {
        self.table.borrow_mut().count_hls_request(key);
    }

    /// A file of an installed player library (`http.assets_dir`), read once
    /// per shard and kept. None if absent or over [`ASSET_BYTES_MAX`].
    pub fn asset(&self, package: &str, path: &str) -> Option<Bytes> {
        let rel = format!("{package}/{path}");
        if let Some(b) = self.assets.borrow().get(&rel) {
            return Some(b.clone());
        }
        let full = std::path::Path::new(&self.config().http.assets_dir).join(&rel);
        let meta = std::fs::metadata(&full).ok()?;
        if !meta.is_file() || meta.len() > ASSET_BYTES_MAX {
            return None;
        }
        let bytes = Bytes::from(std::fs::read(&full).ok()?);
        self.assets.borrow_mut().insert(rel, bytes.clone());
        Some(bytes)
    }

    /// Every live stream, gathered from all shards by message.
    pub async fn all_live_keys(self: &Rc<Self>) -> Vec<StreamKey> {
        let mut keys = self.table.borrow().owned_live_keys();
        for mut more in self.gather("stream list", ShardMsg::ListLive).await {
            keys.append(&mut more);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Decides a publish on the owner. Returns the publisher id, or why it
    /// is refused.
    fn start_publish(self: &Rc<Self>, key: &StreamKey, conn: &Registered) -> Result<u64, Refusal> {
        let id = self.conns.next_id();
        let now = Instant::now();
        let publisher = PublisherSlot {
            id,
            close: conn.state.close.clone(),
            source: Source::Client {
                conn_id: conn.id,
                peer: conn.state.peer,
                protocol: "rtmp",
            },
            meter: IngestMeter::new(now),
        };
        self.with_table(|t| t.start_publish(key, publisher, now))
            .inspect_err(|r| {
                if r.blame == crate::error::Blame::Server {
                    log::error!("publish of {key} on shard {}: {r}", self.id());
                }
            })?;
        // An origin tells the cluster (an edge's origin does, for its push).
        if let Some(r) = self.registry.as_ref().filter(|_| !self.is_edge()) {
            r.announce(key, crate::stream::unix_ms());
        }
        Ok(id)
    }

    /// A frame or metadata from publisher `id` (ignored if it was replaced).
    fn publish_event(self: &Rc<Self>, key: &StreamKey, id: u64, event: StreamEvent) {
        let frame = matches!(event, StreamEvent::Frame(_));
        let taken = self.with_table(|t| {
            t.publish_event(key, id, event, Instant::now(), crate::stream::unix_ms())
        });
        if taken && frame {
            self.metrics.frame_in();
        }
    }

    /// Publisher `id` left (if it is still the current one).
    fn end_publish(self: &Rc<Self>, key: &StreamKey, id: u64) {
        self.with_table(|t| t.end_publish(key, id, Instant::now()));
        // Withdrawn once nobody publishes it here (a replaced publisher's
        // end leaves its successor's announcement alone; the registry only
        // withdraws what this node announced).
        if let Some(r) = &self.registry {
            if self.table.borrow().publisher(key).is_none() {
                r.withdraw(key);
            }
        }
    }

    /// Adds a player to this shard's copy of the stream (owned or replica).
    /// Returns the number of cached frames its start burst holds.
    fn attach_player(self: &Rc<Self>, key: &StreamKey, player: Rc<Player>) -> usize {
        self.with_table(|t| t.attach_player(key, player, Instant::now()))
    }

    fn detach_player(self: &Rc<Self>, key: &StreamKey, player_id: u64) {
        self.with_table(|t| t.detach_player(key, player_id, Instant::now()));
    }

    fn on_message(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Publisher(moved) => {
                self.metrics.handoff_received();
                let shard = self.clone();
                glommio::spawn_local(async move {
                    let (conn, handoff) = Transport::attach(*moved);
                    rtmp_conn::run_handed_off_publisher(shard, conn, handoff).await;
                })
                .detach();
            }
            ShardMsg::Peer(msg) => {
                match &msg {
                    PeerMsg::Event(..) => self.metrics.replica_event_received(),
                    PeerMsg::Subscribe(key) => {
                        log::debug!("replica subscribed key={key} shard={from}")
                    }
                    PeerMsg::Unsubscribe(key) => {
                        log::debug!("replica unsubscribed key={key} shard={from}")
                    }
                    PeerMsg::WantRendition(..) => {}
                }
                self.with_table(|t| t.on_peer(from, msg, Instant::now(), crate::stream::unix_ms()));
            }
            ShardMsg::Stats(reply) => {
                let _ = reply.try_send(self.stats_snapshot());
            }
            ShardMsg::ListLive(reply) => {
                let _ = reply.try_send(self.table.borrow().owned_live_keys());
            }
            ShardMsg::Api(msg) => api::on_message(self, msg),
        }
    }

    /// Housekeeping, every [`TICK`].
    fn tick(self: &Rc<Self>) {
        self.refresh();
        let now = Instant::now();
        self.with_table(|t| t.tick(now));
        let ended = self.conns.closed() + self.table.borrow().removed();
        self.trim.borrow_mut().tick(ended, now);
        self.hooks.expire_sessions(now);
        if let Some(idle) = self.config().idle_timeout() {
            self.conns.for_each(|_, c| {
                if now.duration_since(c.last_active.get()) >= idle {
                    log::info!("idle timeout peer={} after {}s", c.peer, idle.as_secs());
                    c.close.raise();
                }
            });
        }
    }
}

/// Runs one shard until shutdown: binds the listeners, serves the inbox,
/// accepts connections and keeps house. `tls`: the certificates, when
/// `[tls]` is configured (loaded once for every shard).
pub async fn shard_main(
    ctx: ShardCtx<ShardMsg>,
    config: Arc<Config>,
    tls: Option<Arc<TlsAcceptor>>,
    registry: Option<crate::cluster::Registry>,
) {
    crate::metrics::started();
    let shard = Rc::new(Shard::new(ctx, config.clone(), tls, registry));
    let inbox_shard = shard.clone();
    shards::serve_inbox(move |from, _lane, msg: ShardMsg| inbox_shard.on_message(from, msg));

    let addr = format!("{}:{}", config.listen, config.port);
    let listener = match glommio::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("shard {}: cannot listen on {addr}: {e}", shard.id());
            shards::request_stop();
            return;
        }
    };
    // Bound before `listening` is logged, so these ports answer by then.
    let Ok(internal) = accept::bind_extra(&shard, Port::Internal) else {
        shards::request_stop();
        return;
    };
    let Ok(tls_only) = accept::bind_extra(&shard, Port::TlsOnly) else {
        shards::request_stop();
        return;
    };
    if SHARDS_LISTENING.fetch_add(1, Ordering::SeqCst) + 1 == shard.ctx.count() {
        log::info!("listening addr={addr} shards={}", shard.ctx.count());
    }

    if let Some(moves) = shard.registry.as_ref().and_then(|r| r.moves(shard.id())) {
        glommio::spawn_local(pull::follow_moves(shard.clone(), moves)).detach();
    }
    let ticker = {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                let due = Instant::now() + TICK;
                glommio::timer::sleep(TICK).await;
                // How late the timer fired: the event-loop stall.
                shard.metrics.tick(due, Instant::now());
                if shards::stop_requested() {
                    shard.stopping.raise();
                    return;
                }
                shard.tick();
            }
        })
    };

    accept::accept_loop(shard.clone(), listener, Port::Main).await;
    for task in [internal, tls_only].into_iter().flatten() {
        task.await;
    }
    ticker.await;
    // Tell every connection to say goodbye, then give them a moment.
    shard.conns.for_each(|_, c| c.close.raise());
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !shard.conns.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    log::debug!("shard {} stopped", shard.id());
}
