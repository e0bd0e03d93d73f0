//! One shard of the server: its listener, its streams (owned and replicas),
//! and the messages it exchanges with the other shards.
//!
//! Ownership (DESIGN.md): the owner of a key (`shards::shard_for`) holds the
//! publisher, the canonical GOP cache and the list of subscribed shards. A
//! publisher accepted elsewhere is handed to the owner with its socket and
//! session state. A player stays on the shard that accepted it and is fed by
//! that shard's replica, which the owner feeds with one message per event.

mod accept;
pub mod api;
mod decide;
mod http_conn;
mod player;
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

use crate::config::{Config, Republish};
use crate::error::Refusal;
use crate::net::io::{flush_or_wake, DirectWriter};
use crate::net::{Conns, Registered, Transport};
use crate::stream::{
    GopLimits, IngestMeter, Notify, Player, Rendition, Signal, StreamCore, StreamEvent, StreamKey,
};
use proto::hls::{HlsEvent, HlsWindow, Segmenter};
use proto::rtmp::amf::AmfLimits;
use proto::rtmp::chunk::ChunkLimits;
use proto::rtmp::session::{ServerSession, SessionConfig, StreamRequest};
use proto::ts::TsMuxer;

pub use crate::net::ConnSlot;
pub use decide::{Action, Ask, DECISION_TIMEOUT};

/// How long a replica with no players stays subscribed, so a player that
/// reconnects at once finds the stream warm.
pub const REPLICA_LINGER: Duration = Duration::from_secs(5);
/// Period of each shard's housekeeping (idle connections, expired waits,
/// replica linger, skip reports, shutdown).
pub const TICK: Duration = Duration::from_millis(250);
/// Messages each shard-to-shard channel holds. At 30 fps video plus ~43 fps
/// audio this is about 14 s of one stream: a replica is only this far behind
/// if its shard is stuck, and then it is resynchronised at a keyframe.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Added to the last timestamp a player saw when a new publisher starts, so
/// timestamps never go backwards across a republish.
pub const REPUBLISH_GAP_MS: u32 = 100;
/// The largest player-library file `/assets/` serves (hls.js is ~0.5 MB).
pub const ASSET_BYTES_MAX: u64 = 8 << 20;
/// How long a gather across shards (e.g. the stream list) waits for replies.
pub const GATHER_TIMEOUT: Duration = Duration::from_millis(500);
/// How long shutdown waits for connections to say goodbye.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Typed messages between shards.
pub enum ShardMsg {
    /// A publisher whose stream this shard owns.
    Publisher(Box<MovedConnection<PublisherHandoff>>),
    /// The sending shard wants this stream's events (it has players).
    Subscribe(StreamKey),
    /// The sending shard no longer wants this stream's events.
    Unsubscribe(StreamKey),
    /// From the owner: one event of a stream the receiver subscribed to,
    /// and when the owner took it in (fan-out latency counts from then).
    Event(StreamKey, StreamEvent, Instant),
    /// To the owner: a player on the sender wants this HLS rendition cut.
    WantRendition(StreamKey, Rendition),
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
}

// A handed-off publisher crosses threads.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<PublisherHandoff>();
};

/// Shards that have bound their listener (the last one logs `listening`).
static SHARDS_LISTENING: AtomicUsize = AtomicUsize::new(0);

/// Maps timestamps of successive publishers onto one increasing timeline.
#[derive(Debug, Default)]
struct Rebase {
    offset: u32,
    last_out: Option<u32>,
    pending: bool,
}

impl Rebase {
    fn new_publisher(&mut self) {
        self.pending = true;
    }

    fn map(&mut self, ts: u32) -> u32 {
        if self.pending {
            self.pending = false;
            self.offset = match self.last_out {
                Some(last) => last.wrapping_add(REPUBLISH_GAP_MS).wrapping_sub(ts),
                None => 0,
            };
        }
        let out = ts.wrapping_add(self.offset);
        self.last_out = Some(out);
        out
    }
}

/// The live publisher of an owned stream.
struct PublisherSlot {
    id: u64,
    close: Rc<Signal>,
    /// Its connection's client id (the API's).
    conn_id: u64,
    peer: SocketAddr,
    /// Bitrate and frame rate in, and when the publish started.
    meter: IngestMeter,
}

/// A shard subscribed to an owned stream.
struct ReplicaLink {
    shard: usize,
    /// A message to it was dropped: resend the whole state at a keyframe.
    lagging: bool,
}

enum Role {
    Owner {
        publisher: Option<PublisherSlot>,
        replicas: Vec<ReplicaLink>,
        rebase: Rebase,
        /// HLS segmenters by [`Rendition::index`]; the main one runs for
        /// every publish, the others from the first request for them.
        segmenters: [Option<Box<Segmenter>>; 3],
        /// Renditions someone asked for.
        hls_wanted: [bool; 3],
        /// With no publisher, players or replicas, the entry (and its HLS
        /// numbering) is kept until then: `publisher_grace_s` after an
        /// unpublish, [`REPLICA_LINGER`] after a request that follows it.
        keep_until: Instant,
    },
    Replica {
        empty_since: Option<Instant>,
        /// Renditions already asked of the owner.
        hls_asked: [bool; 3],
    },
}

struct Entry {
    core: StreamCore,
    role: Role,
}

impl Entry {
    /// An owned entry nobody needs any more: no publisher, players or
    /// replicas, and past its `keep_until`.
    fn owned_and_idle(&self, now: Instant) -> bool {
        match &self.role {
            Role::Owner {
                publisher: None,
                replicas,
                keep_until,
                ..
            } => self.core.players.is_empty() && replicas.is_empty() && now >= *keep_until,
            _ => false,
        }
    }
}

/// One shard's state. Only this shard touches it.
pub struct Shard {
    ctx: ShardCtx<ShardMsg>,
    config: Arc<Config>,
    streams: RefCell<HashMap<StreamKey, Entry>>,
    /// Open connections on this shard (ids, idle checks, shutdown, the API).
    conns: Rc<Conns>,
    /// Players whose connection the fan-out may write to directly, by
    /// player id (see `player::DirectWrites`).
    direct: RefCell<HashMap<u64, DirectWriter>>,
    stopping: Signal,
    /// Player library files served at `/assets/`, read on first use.
    assets: RefCell<HashMap<String, Bytes>>,
    /// HLS requests served per stream this shard has an entry for (HLS
    /// players hold no connection: the API counts them by requests).
    hls_requests: RefCell<HashMap<StreamKey, u64>>,
    /// This shard's counters and histograms (also reachable as
    /// `metrics::with` from code that holds no `Shard`: a shard is a thread).
    metrics: Rc<crate::metrics::ShardMetrics>,
}

impl Shard {
    fn new(ctx: ShardCtx<ShardMsg>, config: Arc<Config>) -> Self {
        Self {
            conns: Rc::new(Conns::new(ctx.id(), crate::config::SHARDS_MAX)),
            ctx,
            config,
            streams: RefCell::new(HashMap::new()),
            direct: RefCell::new(HashMap::new()),
            stopping: Signal::default(),
            assets: RefCell::new(HashMap::new()),
            hls_requests: RefCell::new(HashMap::new()),
            metrics: crate::metrics::local(),
        }
    }

    /// This shard's index.
    pub fn id(&self) -> usize {
        self.ctx.id()
    }

    fn next_id(&self) -> u64 {
        self.conns.next_id()
    }

    fn session_config(&self) -> SessionConfig {
        let r = &self.config.rtmp;
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

    fn gop_limits(&self) -> GopLimits {
        let s = &self.config.stream;
        GopLimits {
            enabled: s.gop_cache,
            bytes_max: s.gop_cache_bytes_max,
            frames_max: s.gop_cache_frames_max,
        }
    }

    fn grace_deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(self.config.stream.publisher_grace_s)
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
        let known = |h: &&str| self.config.vhosts.iter().any(|v| v.eq_ignore_ascii_case(h));
        let vhost = vhost_param
            .filter(known)
            .or(host.filter(known))
            .unwrap_or(&self.config.default_vhost);
        Arc::from(format!("{vhost}/{app}/{name}"))
    }

    /// Makes sure this shard follows `key`: on a non-owner shard a replica
    /// exists (subscribed to the owner) and its linger clock restarts, so a
    /// caller polling this (a waiting request, an HLS player reloading its
    /// playlist) keeps the replica alive. Returns false on the owner when
    /// the stream is unknown.
    fn follow(self: &Rc<Self>, key: &StreamKey) -> bool {
        let mut streams = self.streams.borrow_mut();
        if self.is_owner(key) {
            return match streams.get_mut(key) {
                Some(Entry {
                    role: Role::Owner { keep_until, .. },
                    ..
                }) => {
                    *keep_until = (*keep_until).max(Instant::now() + REPLICA_LINGER);
                    true
                }
                _ => false,
            };
        }
        let entry = streams.entry(key.clone()).or_insert_with(|| {
            self.subscribe(key, true);
            Entry {
                core: self.new_core(key),
                role: Role::Replica {
                    empty_since: Some(Instant::now()),
                    hls_asked: [false; 3],
                },
            }
        });
        if let Role::Replica {
            empty_since: Some(t),
            ..
        } = &mut entry.role
        {
            *t = Instant::now();
        }
        true
    }

    /// Is the stream live, as this shard sees it? (See [`Shard::follow`].)
    pub fn watch_live(self: &Rc<Self>, key: &StreamKey) -> bool {
        self.follow(key) && self.streams.borrow().get(key).is_some_and(|e| e.core.live)
    }

    /// Follows `key` for HLS rendition `r`, asking the owner to cut that
    /// rendition if nobody did yet. Returns the stream's change notifier
    /// and whether the rendition's window has anything to serve.
    pub fn watch_hls(self: &Rc<Self>, key: &StreamKey, r: Rendition) -> Option<(Rc<Notify>, bool)> {
        if !self.follow(key) {
            return None;
        }
        if self.is_owner(key) {
            if r != Rendition::Main {
                self.want_rendition(key, r);
            }
        } else {
            let mut ask = false;
            if let Some(Entry {
                role: Role::Replica { hls_asked, .. },
                ..
            }) = self.streams.borrow_mut().get_mut(key)
            {
                ask = r != Rendition::Main && !hls_asked[r.index()];
                hls_asked[r.index()] = true;
            }
            if ask {
                let owner = self.ctx.owner_of(key.as_bytes());
                let shard = self.clone();
                let msg = ShardMsg::WantRendition(key.clone(), r);
                glommio::spawn_local(async move {
                    if let Err(e) = shard.ctx.send(owner, msg).await {
                        log::warn!("rendition request to shard {owner} failed: {e}");
                    }
                })
                .detach();
            }
        }
        let streams = self.streams.borrow();
        let core = &streams.get(key)?.core;
        let ready = core.hls(r).is_some_and(|w| !w.is_empty());
        Some((core.changed.clone(), ready))
    }

    /// The change notifier of this shard's copy of `key`, if it has one.
    pub fn stream_changed(&self, key: &StreamKey) -> Option<Rc<Notify>> {
        self.streams
            .borrow()
            .get(key)
            .map(|e| e.core.changed.clone())
    }

    /// Runs `f` on this shard's HLS window of `key`/`r`, if there is one.
    pub fn with_hls<T>(
        &self,
        key: &StreamKey,
        r: Rendition,
        f: impl FnOnce(&HlsWindow) -> T,
    ) -> Option<T> {
        self.streams.borrow().get(key)?.core.hls(r).map(f)
    }

    /// A file of an installed player library (`http.assets_dir`), read once
    /// per shard and kept. None if absent or over [`ASSET_BYTES_MAX`].
    pub fn asset(&self, package: &str, path: &str) -> Option<Bytes> {
        let rel = format!("{package}/{path}");
        if let Some(b) = self.assets.borrow().get(&rel) {
            return Some(b.clone());
        }
        let full = std::path::Path::new(&self.config.http.assets_dir).join(&rel);
        let meta = std::fs::metadata(&full).ok()?;
        if !meta.is_file() || meta.len() > ASSET_BYTES_MAX {
            return None;
        }
        let bytes = Bytes::from(std::fs::read(&full).ok()?);
        self.assets.borrow_mut().insert(rel, bytes.clone());
        Some(bytes)
    }

    /// Live streams this shard owns.
    fn owned_live_keys(&self) -> Vec<StreamKey> {
        self.streams
            .borrow()
            .iter()
            .filter(|(_, e)| matches!(e.role, Role::Owner { .. }) && e.core.live)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every live stream, gathered from all shards by message.
    pub async fn all_live_keys(self: &Rc<Self>) -> Vec<StreamKey> {
        let mut keys = self.owned_live_keys();
        for mut more in self.gather("stream list", ShardMsg::ListLive).await {
            keys.append(&mut more);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    fn new_core(&self, key: &StreamKey) -> StreamCore {
        StreamCore::new(
            key.clone(),
            self.gop_limits(),
            self.config.rtmp.chunk_size_out,
            self.config.hls.to_hls_config(),
            crate::stream::Coalesce {
                audio: Duration::from_millis(self.config.stream.audio_coalesce_ms),
                write: Duration::from_millis(self.config.stream.write_coalesce_ms),
            },
        )
    }

    fn new_entry_owner(&self, key: &StreamKey) -> Entry {
        Entry {
            core: self.new_core(key),
            role: Role::Owner {
                publisher: None,
                replicas: Vec::new(),
                rebase: Rebase::default(),
                segmenters: [None, None, None],
                hls_wanted: [true, false, false],
                keep_until: Instant::now() + REPLICA_LINGER,
            },
        }
    }

    fn is_owner(&self, key: &StreamKey) -> bool {
        self.ctx.owner_of(key.as_bytes()) == self.ctx.id()
    }

    /// Decides a publish on the owner. Returns the publisher id, or the
    /// reason it is refused.
    fn start_publish(&self, key: &StreamKey, conn: &Registered) -> Result<u64, Refusal> {
        let id = self.next_id();
        let mut streams = self.streams.borrow_mut();
        let entry = streams
            .entry(key.clone())
            .or_insert_with(|| self.new_entry_owner(key));
        let Role::Owner {
            publisher,
            rebase,
            segmenters,
            hls_wanted,
            ..
        } = &mut entry.role
        else {
            log::error!(
                "shard {} holds {key} as a replica but was asked to publish it",
                self.id()
            );
            return Err(Refusal::server(format!(
                "internal: shard {} holds {key} as a replica",
                self.id()
            )));
        };
        if let Some(old) = publisher.take() {
            if self.config.stream.republish == Republish::Reject {
                *publisher = Some(old);
                return Err(Refusal::stream(format!("{key} is already being published")));
            }
            log::info!("republish key={key} replacing publisher id={}", old.id);
            old.close.raise();
        }
        *publisher = Some(PublisherSlot {
            id,
            close: conn.state.close.clone(),
            conn_id: conn.id,
            peer: conn.state.peer,
            meter: IngestMeter::new(Instant::now()),
        });
        rebase.new_publisher();
        for r in Rendition::ALL {
            if !hls_wanted[r.index()] {
                continue;
            }
            match &mut segmenters[r.index()] {
                Some(seg) => seg.discontinuity(),
                slot => *slot = Some(self.new_segmenter(r)),
            }
        }
        drop(streams);
        self.owner_event(key, StreamEvent::Published);
        Ok(id)
    }

    /// A frame or metadata from publisher `id` (ignored if it was replaced).
    fn publish_event(&self, key: &StreamKey, id: u64, event: StreamEvent) {
        let event = {
            let mut streams = self.streams.borrow_mut();
            let Some(Entry {
                role:
                    Role::Owner {
                        publisher: Some(p),
                        rebase,
                        ..
                    },
                ..
            }) = streams.get_mut(key)
            else {
                return;
            };
            if p.id != id {
                return;
            }
            match event {
                StreamEvent::Frame(mut f) => {
                    f.timestamp = rebase.map(f.timestamp);
                    p.meter.record(Instant::now(), &f);
                    StreamEvent::Frame(f)
                }
                other => other,
            }
        };
        let frame = match &event {
            StreamEvent::Frame(f) => {
                self.metrics.frame_in();
                Some(f.clone())
            }
            _ => None,
        };
        self.owner_event(key, event);
        if let Some(frame) = frame {
            let now = crate::stream::unix_ms();
            self.run_segmenters(key, |r, seg| {
                if r.wants(&frame) {
                    seg.push(&frame, now)
                } else {
                    Vec::new()
                }
            });
        }
    }

    /// Runs `f` on each HLS segmenter of an owned stream and ships the
    /// events it returns (applied here, sent to replicas).
    fn run_segmenters(
        &self,
        key: &StreamKey,
        mut f: impl FnMut(Rendition, &mut Segmenter) -> Vec<HlsEvent>,
    ) {
        let mut events = Vec::new();
        {
            let mut streams = self.streams.borrow_mut();
            let Some(Entry {
                role: Role::Owner { segmenters, .. },
                ..
            }) = streams.get_mut(key)
            else {
                return;
            };
            for r in Rendition::ALL {
                if let Some(seg) = &mut segmenters[r.index()] {
                    events.extend(f(r, seg).into_iter().map(|e| (r, e)));
                }
            }
        }
        for (r, e) in events {
            self.owner_event(key, StreamEvent::Hls(r, e));
        }
    }

    fn new_segmenter(&self, r: Rendition) -> Box<Segmenter> {
        let (video, audio) = r.ts_streams();
        Box::new(Segmenter::new(
            self.config.hls.to_hls_config(),
            Box::new(TsMuxer::new(video, audio)),
        ))
    }

    /// Someone wants rendition `r` of an owned stream: start its segmenter
    /// (it begins at the next keyframe).
    fn want_rendition(&self, key: &StreamKey, r: Rendition) {
        let mut streams = self.streams.borrow_mut();
        let Some(Entry {
            core,
            role:
                Role::Owner {
                    segmenters,
                    hls_wanted,
                    ..
                },
        }) = streams.get_mut(key)
        else {
            return;
        };
        hls_wanted[r.index()] = true;
        if core.live && segmenters[r.index()].is_none() {
            let mut seg = self.new_segmenter(r);
            // A segmenter started mid-stream has missed the codec configs.
            let now = crate::stream::unix_ms();
            for f in [&core.video_seq, &core.audio_seq].into_iter().flatten() {
                if r.wants(f) {
                    let events = seg.push(f, now);
                    debug_assert!(events.is_empty(), "configs cut nothing");
                }
            }
            segmenters[r.index()] = Some(seg);
        }
    }

    /// Publisher `id` left (if it is still the current one).
    fn end_publish(&self, key: &StreamKey, id: u64) {
        {
            let mut streams = self.streams.borrow_mut();
            let Some(Entry {
                role:
                    Role::Owner {
                        publisher,
                        keep_until,
                        ..
                    },
                ..
            }) = streams.get_mut(key)
            else {
                return;
            };
            if publisher.as_ref().map(|p| p.id) != Some(id) {
                return;
            }
            *publisher = None;
            *keep_until = Instant::now() + self.config.stream.publisher_grace();
        }
        self.run_segmenters(key, |_, seg| seg.flush());
        self.owner_event(key, StreamEvent::Unpublished);
        self.maybe_drop_owned(key);
    }

    /// Applies an event to the owned stream and forwards it to replicas.
    fn owner_event(&self, key: &StreamKey, event: StreamEvent) {
        let grace = self.grace_deadline();
        let mut streams = self.streams.borrow_mut();
        let Some(entry) = streams.get_mut(key) else {
            return;
        };
        let ingest = Instant::now();
        entry.core.apply_ingested(&event, grace, ingest);
        self.deliver(&mut entry.core);
        let Role::Owner { replicas, .. } = &mut entry.role else {
            return;
        };
        if replicas.is_empty() {
            return;
        }
        let resync_point = match &event {
            StreamEvent::Frame(f) => f.is_video() && f.keyframe,
            _ => false,
        };
        let mut snapshot = None;
        for r in replicas.iter_mut() {
            let msg = if r.lagging {
                if !resync_point {
                    continue;
                }
                let snap = snapshot.get_or_insert_with(|| entry.core.snapshot());
                StreamEvent::Snapshot(Box::new(snap.clone()))
            } else {
                event.clone()
            };
            match self
                .ctx
                .try_send(r.shard, ShardMsg::Event(key.clone(), msg, ingest))
            {
                Ok(()) => {
                    r.lagging = false;
                    self.metrics.replica_event_sent();
                }
                Err(SendError::Full) => {
                    self.metrics.replica_event_dropped();
                    if !r.lagging {
                        log::warn!(
                            "replica lagging key={key} shard={} (channel of {CHANNEL_CAPACITY} full); resync at next keyframe",
                            r.shard
                        );
                    }
                    r.lagging = true;
                }
                Err(e) => log::debug!("replica shard={} unreachable: {e}", r.shard),
            }
        }
    }

    fn maybe_drop_owned(&self, key: &StreamKey) {
        let mut streams = self.streams.borrow_mut();
        if streams
            .get(key)
            .is_some_and(|e| e.owned_and_idle(Instant::now()))
        {
            streams.remove(key);
        }
    }

    /// Adds a player to this shard's copy of the stream (owned or replica).
    /// Returns the number of cached frames its start burst holds.
    fn attach_player(self: &Rc<Self>, key: &StreamKey, player: Rc<Player>) -> usize {
        let grace = self.grace_deadline();
        let mut streams = self.streams.borrow_mut();
        let entry = if self.is_owner(key) {
            streams
                .entry(key.clone())
                .or_insert_with(|| self.new_entry_owner(key))
        } else {
            streams.entry(key.clone()).or_insert_with(|| {
                self.subscribe(key, true);
                Entry {
                    core: self.new_core(key),
                    role: Role::Replica {
                        empty_since: None,
                        hls_asked: [false; 3],
                    },
                }
            })
        };
        if let Role::Replica { empty_since, .. } = &mut entry.role {
            *empty_since = None;
        }
        let cached = entry.core.add_player(player, grace);
        self.deliver(&mut entry.core);
        cached
    }

    /// Gets the bytes of the players the last event left ready moving:
    /// written at once to those whose writer is parked and whose connection
    /// is registered for direct writes, the other writers woken.
    fn deliver(&self, core: &mut StreamCore) {
        let direct = self.direct.borrow();
        let now = Instant::now();
        for p in core.drain_ready() {
            flush_or_wake(&mut p.queue.borrow_mut(), direct.get(&p.id), now);
        }
    }

    fn detach_player(&self, key: &StreamKey, player_id: u64) {
        {
            let mut streams = self.streams.borrow_mut();
            let Some(entry) = streams.get_mut(key) else {
                return;
            };
            entry.core.remove_player(player_id);
            if let Role::Replica { empty_since, .. } = &mut entry.role {
                if entry.core.players.is_empty() {
                    *empty_since = Some(Instant::now());
                }
            }
        }
        self.maybe_drop_owned(key);
    }

    /// Asks the owner for a stream's events (or stops asking). Sent with a
    /// waiting send: subscriptions must not be lost to a full channel.
    fn subscribe(self: &Rc<Self>, key: &StreamKey, on: bool) {
        let owner = self.ctx.owner_of(key.as_bytes());
        let msg = if on {
            ShardMsg::Subscribe(key.clone())
        } else {
            ShardMsg::Unsubscribe(key.clone())
        };
        let shard = self.clone();
        glommio::spawn_local(async move {
            if let Err(e) = shard.ctx.send(owner, msg).await {
                log::warn!("subscription message to shard {owner} failed: {e}");
            }
        })
        .detach();
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
            ShardMsg::Subscribe(key) => {
                let mut streams = self.streams.borrow_mut();
                let entry = streams
                    .entry(key.clone())
                    .or_insert_with(|| self.new_entry_owner(&key));
                let snapshot = entry.core.snapshot();
                if let Role::Owner { replicas, .. } = &mut entry.role {
                    replicas.retain(|r| r.shard != from);
                    let lagging = self
                        .ctx
                        .try_send(
                            from,
                            ShardMsg::Event(
                                key.clone(),
                                StreamEvent::Snapshot(Box::new(snapshot)),
                                Instant::now(),
                            ),
                        )
                        .is_err();
                    if lagging {
                        self.metrics.replica_event_dropped();
                    } else {
                        self.metrics.replica_event_sent();
                    }
                    replicas.push(ReplicaLink {
                        shard: from,
                        lagging,
                    });
                }
            }
            ShardMsg::Unsubscribe(key) => {
                if let Some(Entry {
                    role: Role::Owner { replicas, .. },
                    ..
                }) = self.streams.borrow_mut().get_mut(&key)
                {
                    replicas.retain(|r| r.shard != from);
                }
                self.maybe_drop_owned(&key);
            }
            ShardMsg::WantRendition(key, r) => self.want_rendition(&key, r),
            ShardMsg::Stats(reply) => {
                let _ = reply.try_send(self.stats_snapshot());
            }
            ShardMsg::ListLive(reply) => {
                let _ = reply.try_send(self.owned_live_keys());
            }
            ShardMsg::Api(msg) => api::on_message(self, msg),
            ShardMsg::Event(key, event, ingest) => {
                self.metrics.replica_event_received();
                let grace = self.grace_deadline();
                if let Some(entry) = self.streams.borrow_mut().get_mut(&key) {
                    if matches!(entry.role, Role::Replica { .. }) {
                        entry.core.apply_ingested(&event, grace, ingest);
                        self.deliver(&mut entry.core);
                    }
                }
            }
        }
    }

    /// Housekeeping, every [`TICK`].
    fn tick(self: &Rc<Self>) {
        let now = Instant::now();
        let mut unsubscribe = Vec::new();
        {
            let mut streams = self.streams.borrow_mut();
            streams.retain(|key, entry| {
                if entry.owned_and_idle(now) {
                    return false;
                }
                entry.core.expire_waiting(now);
                for p in &entry.core.players {
                    report_skips(key, p);
                }
                if let Role::Replica {
                    empty_since: Some(t),
                    ..
                } = entry.role
                {
                    if now.duration_since(t) >= REPLICA_LINGER {
                        unsubscribe.push(key.clone());
                        return false;
                    }
                }
                true
            });
            // HLS request counts go with their streams' entries.
            self.hls_requests
                .borrow_mut()
                .retain(|k, _| streams.contains_key(k));
        }
        for key in unsubscribe {
            self.subscribe(&key, false);
        }
        if let Some(idle) = self.config.idle_timeout() {
            self.conns.for_each(|_, c| {
                if now.duration_since(c.last_active.get()) >= idle {
                    log::info!("idle timeout peer={} after {}s", c.peer, idle.as_secs());
                    c.close.raise();
                }
            });
        }
    }
}

/// Logs, at most once per tick, how many frames a slow player has skipped.
fn report_skips(key: &StreamKey, p: &Player) {
    let skipped = p.queue.borrow().skipped();
    if skipped > p.skips_reported.get() {
        p.skips_reported.set(skipped);
        log::warn!(
            "player skipped frames key={key} peer={} skipped_frames={skipped} queued_bytes={}",
            p.peer,
            p.queue.borrow().len_bytes()
        );
    }
}

/// Runs one shard until shutdown: binds the listener, serves the inbox,
/// accepts connections and keeps house.
pub async fn shard_main(ctx: ShardCtx<ShardMsg>, config: Arc<Config>) {
    crate::metrics::started();
    let shard = Rc::new(Shard::new(ctx, config.clone()));
    let inbox_shard = shard.clone();
    shards::serve_inbox(move |from, msg: ShardMsg| inbox_shard.on_message(from, msg));

    let addr = format!("{}:{}", config.listen, config.port);
    let listener = match glommio::net::TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("shard {}: cannot listen on {addr}: {e}", shard.id());
            shards::request_stop();
            return;
        }
    };
    // Bound before `listening` is logged, so the API port answers by then.
    let Ok(internal) = api::bind_internal(&shard) else {
        shards::request_stop();
        return;
    };
    if SHARDS_LISTENING.fetch_add(1, Ordering::SeqCst) + 1 == shard.ctx.count() {
        log::info!("listening addr={addr} shards={}", shard.ctx.count());
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

    accept::accept_loop(shard.clone(), listener, false).await;
    if let Some(internal) = internal {
        internal.await;
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
