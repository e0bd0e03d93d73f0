//! One shard's stream table, pure: it takes events (a publish starts, a
//! frame is ingested, a player attaches or leaves, a message arrives from
//! another shard, the clock ticks) and returns what must happen as values
//! in [`Actions`]: messages for shard k, players with bytes ready, signals
//! to raise. It holds no socket, spawns nothing and reads no clock: every
//! call is given `now`. The server (`server::Shard`) carries the actions
//! out; tests drive an owner, replicas and their players with no sockets.
//!
//! Ownership (DESIGN.md): the owner of a key holds the publisher, the
//! canonical GOP cache, the HLS segmenters, the republish policy and the
//! timestamp rebase, and the list of subscribed shards. Every other shard
//! that has players holds a replica, fed by the owner's [`PeerMsg::Event`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::sink::Sink;
use super::{
    Coalesce, Containers, GopLimits, IngestMeter, Media, Notify, Player, Rendition, Signal,
    StreamCore, StreamEvent, StreamKey,
};
use crate::config::Republish;
use crate::error::Refusal;
use proto::hls::{Container, Fmp4Muxer, HlsConfig, HlsEvent, HlsWindow, SegmentMuxer, Segmenter};
use proto::ts::TsMuxer;

/// How long a replica with no players stays subscribed, so a player that
/// reconnects at once finds the stream warm.
pub const REPLICA_LINGER: Duration = Duration::from_secs(5);
/// Added to the last timestamp a player saw when a new publisher starts, so
/// timestamps never go backwards across a republish.
pub const REPUBLISH_GAP_MS: u32 = 100;

/// What a table needs to know about its shard and the configuration.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// This shard's index.
    pub shard: usize,
    /// Number of shards.
    pub shards: usize,
    /// The owner of a key among `shards` (`shards::shard_for` in the
    /// server).
    pub owner_of: fn(&[u8], usize) -> usize,
    /// GOP cache bounds.
    pub gop: GopLimits,
    /// Outgoing RTMP chunk size.
    pub chunk_size: u32,
    /// HLS cutting and window settings.
    pub hls: HlsConfig,
    /// Write coalescing.
    pub coalesce: Coalesce,
    /// What a second publisher of a live stream gets.
    pub republish: Republish,
    /// How long players wait for a publisher that left.
    pub publisher_grace: Duration,
    /// Edge mode: demand for a stream nobody publishes here starts an
    /// upstream pull on its owner ([`Actions::pull`]), which is stopped
    /// after this long without players, replicas or requests
    /// (`edge.keep_pulling_s`). None: an origin, which never pulls.
    pub keep_pulling: Option<Duration>,
    /// The container each stream's HLS is cut in from its publish.
    pub containers: Containers,
    /// Pulls this shard runs at once, at most (its share of
    /// `edge.pulls_max`).
    pub pulls_max: usize,
}

/// Which lane of the shard pair a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Ordered, never dropped: subscriptions and rendition requests.
    Control,
    /// Media events: sent without waiting; a full lane makes the replica
    /// lag, and it is resynchronised at the next keyframe.
    Media,
}

/// A message from one shard's table to another's.
#[derive(Clone, Debug)]
pub enum PeerMsg {
    /// The sender has players of the stream: send it the stream's events.
    Subscribe(StreamKey),
    /// The sender no longer follows the stream.
    Unsubscribe(StreamKey),
    /// From the owner: one event of a stream the receiver subscribed to,
    /// and when the owner took it in (fan-out latency counts from then).
    Event(StreamKey, StreamEvent, Instant),
    /// To the owner: a player on the sender wants this HLS rendition cut.
    WantRendition(StreamKey, Rendition),
}

impl PeerMsg {
    /// The lane it must travel on.
    pub fn lane(&self) -> Lane {
        match self {
            PeerMsg::Event(..) => Lane::Media,
            _ => Lane::Control,
        }
    }

    /// The stream it is about.
    pub fn key(&self) -> &StreamKey {
        match self {
            PeerMsg::Subscribe(k)
            | PeerMsg::Unsubscribe(k)
            | PeerMsg::Event(k, ..)
            | PeerMsg::WantRendition(k, _) => k,
        }
    }
}

/// What the table asks its shard to do after a call, in order: raise the
/// signals, write to the ready players, send the messages.
#[derive(Debug, Default)]
pub struct Actions {
    /// Messages for other shards: (shard, message).
    pub send: Vec<(usize, PeerMsg)>,
    /// Players with bytes ready to write.
    pub ready: Vec<Rc<Player>>,
    /// Signals to raise (a replaced publisher's close, a pull's stop).
    pub raise: Vec<Rc<Signal>>,
    /// Upstream pulls to start (edge mode): the stream and the signal that
    /// stops the pull.
    pub pull: Vec<(StreamKey, Rc<Signal>)>,
    /// Pulls not started: this shard runs `TableConfig::pulls_max`.
    pub pulls_refused: u64,
}

impl Actions {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.send.is_empty()
            && self.ready.is_empty()
            && self.raise.is_empty()
            && self.pull.is_empty()
            && self.pulls_refused == 0
    }
}

/// Maps timestamps of successive publishers onto one increasing timeline.
#[derive(Debug, Default)]
pub struct Rebase {
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

/// Where a stream's media comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A client publishing on a connection (RTMP today).
    Client {
        /// Its connection's client id (the API's).
        conn_id: u64,
        /// Where it publishes from.
        peer: SocketAddr,
        /// The protocol it publishes with, as the API names it.
        protocol: &'static str,
    },
    /// An edge's pull from an origin.
    Pull {
        /// The origin it plays from.
        origin: SocketAddr,
    },
}

/// What an edge's pull of a stream is doing, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullState {
    /// Connecting to an origin, or waiting for its first media.
    Connecting,
    /// Media flows.
    Playing,
    /// The last attempt failed; the next one is scheduled.
    Retrying,
}

impl PullState {
    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            PullState::Connecting => "connecting",
            PullState::Playing => "playing",
            PullState::Retrying => "retrying",
        }
    }
}

/// An edge's pull as the stream's owner tracks it (one per stream per
/// node: only the owner shard pulls).
#[derive(Debug)]
pub struct PullSlot {
    /// Raised to stop the pull (no demand for `keep_pulling`).
    pub stop: Rc<Signal>,
    /// The last time something wanted the stream.
    last_demand: Instant,
    /// The origin of the current or last attempt.
    pub origin: Option<SocketAddr>,
    /// What it is doing.
    pub state: PullState,
    /// Attempts that failed since media last flowed.
    pub failures: u32,
}

/// The live publisher of an owned stream: a source with its own close
/// signal (a client session, or an edge's upstream pull).
#[derive(Debug)]
pub struct PublisherSlot {
    /// Unique per publish.
    pub id: u64,
    /// Raised to make the publisher stop (a replace, the API).
    pub close: Rc<Signal>,
    /// What publishes.
    pub source: Source,
    /// Bitrate and frame rate in, and when the publish started.
    pub meter: IngestMeter,
}

/// A shard subscribed to an owned stream.
#[derive(Debug)]
pub struct ReplicaLink {
    /// The subscribed shard.
    pub shard: usize,
    /// A message to it was dropped: resend the whole state at a keyframe.
    pub lagging: bool,
}

/// What this shard is for a stream. (One per stream, not on a hot path:
/// the owner's larger variant is not boxed.)
#[allow(clippy::large_enum_variant)]
pub enum Role {
    /// The stream's owner.
    Owner {
        /// The live publisher.
        publisher: Option<PublisherSlot>,
        /// Shards subscribed to the stream.
        replicas: Vec<ReplicaLink>,
        /// Timestamps across republishes.
        rebase: Rebase,
        /// HLS segmenters by [`Rendition::index`]; the main one runs for
        /// every publish, the others from the first request for them.
        segmenters: [Option<Box<Segmenter>>; Rendition::COUNT],
        /// Renditions someone asked for.
        hls_wanted: [bool; Rendition::COUNT],
        /// With no publisher, players or replicas, the entry (and its HLS
        /// numbering) is kept until then: `publisher_grace_s` after an
        /// unpublish, [`REPLICA_LINGER`] after a request that follows it.
        keep_until: Instant,
        /// Edge mode: the upstream pull that feeds the stream, if one runs.
        pull: Option<PullSlot>,
    },
    /// A copy fed by the owner.
    Replica {
        /// Since when it has had no players (it unsubscribes after
        /// [`REPLICA_LINGER`]).
        empty_since: Option<Instant>,
        /// Renditions already asked of the owner.
        hls_asked: [bool; Rendition::COUNT],
    },
}

/// One stream as this shard holds it.
pub struct Entry {
    /// Players, GOP cache, HLS windows and fan-out.
    pub core: StreamCore,
    /// Owner or replica.
    pub role: Role,
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
                pull: None,
                ..
            } => !self.core.has_subscribers() && replicas.is_empty() && now >= *keep_until,
            _ => false,
        }
    }
}

/// Capacity a table's maps keep however few streams they hold.
const MAP_CAPACITY_KEPT: usize = 64;

/// Gives back most of a map's capacity once it holds under a quarter of
/// it: a map never shrinks by itself, and after a burst of streams (2000
/// publishers that left) an entry slot of about 1.2 KiB each would stay
/// allocated for good.
fn shrink_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > MAP_CAPACITY_KEPT && map.len() * 4 < map.capacity() {
        map.shrink_to((map.len() * 2).max(MAP_CAPACITY_KEPT));
    }
}

/// One shard's streams.
pub struct StreamTable {
    cfg: TableConfig,
    entries: HashMap<StreamKey, Entry>,
    /// HLS requests served per stream this shard has an entry for (HLS
    /// players hold no connection: the API counts them by requests).
    hls_requests: HashMap<StreamKey, u64>,
    /// Entries removed, ever (their memory is freed: see `net::registry::Trim`).
    removed: u64,
    /// Owned entries with a pull (at most `TableConfig::pulls_max`).
    pulls: usize,
    /// A refusal at `pulls_max` was logged since a pull last ended (one
    /// line per time the limit is reached, not one per play).
    pulls_full_logged: bool,
    out: Actions,
}

impl StreamTable {
    /// An empty table.
    /// A reload's settings: streams created from now on use them; those
    /// that exist keep theirs.
    pub fn reconfigure(&mut self, cfg: TableConfig) {
        self.cfg = cfg;
    }

    pub fn new(cfg: TableConfig) -> Self {
        Self {
            cfg,
            entries: HashMap::new(),
            hls_requests: HashMap::new(),
            removed: 0,
            pulls: 0,
            pulls_full_logged: false,
            out: Actions::default(),
        }
    }

    /// The actions the calls since the last take asked for. Give the
    /// emptied value back with [`StreamTable::recycle`] to keep its buffers.
    pub fn take_actions(&mut self) -> Actions {
        std::mem::take(&mut self.out)
    }

    /// Returns an emptied [`Actions`] for reuse.
    pub fn recycle(&mut self, mut done: Actions) {
        if self.out.is_empty() {
            done.send.clear();
            done.ready.clear();
            done.raise.clear();
            self.out = done;
        }
    }

    /// The container a playlist request that names none gets: the one
    /// configured for `key`, except that a stream with a track MPEG-TS
    /// cannot carry (AV1, VP9, Opus) is served in fMP4, where every track
    /// is (`?container=ts` still asks for TS, with the tracks it carries).
    pub fn container_of(&self, key: &StreamKey) -> Container {
        let configured = self.cfg.containers.of(key);
        let ts_leaves_one_out = self
            .ts_tracks(key, Media::Both)
            .any(|(_, carried)| !carried);
        if configured == Container::Ts && ts_leaves_one_out {
            Container::Fmp4
        } else {
            configured
        }
    }

    /// `key`'s tracks in `media`, as this shard knows them (from their
    /// sequence headers, MP3 from a frame), each with whether MPEG-TS
    /// carries it.
    pub fn ts_tracks(
        &self,
        key: &StreamKey,
        media: Media,
    ) -> impl Iterator<Item = (proto::ts::Codec, bool)> {
        let core = self.entries.get(key).map(|e| &e.core);
        let video = core
            .and_then(|c| c.video_seq.as_ref()?.video_codec)
            .filter(|_| media != Media::AudioOnly)
            .map(proto::ts::Codec::Video);
        let audio = core
            .and_then(StreamCore::audio_codec)
            .filter(|_| media != Media::VideoOnly)
            .map(proto::ts::Codec::Audio);
        [video, audio]
            .into_iter()
            .flatten()
            .map(|codec| (codec, codec.stream_type().is_some()))
    }

    /// The owner shard of `key`.
    pub fn owner_of(&self, key: &StreamKey) -> usize {
        (self.cfg.owner_of)(key.as_bytes(), self.cfg.shards)
    }

    /// Is this shard the owner of `key`?
    pub fn is_owner(&self, key: &StreamKey) -> bool {
        self.owner_of(key) == self.cfg.shard
    }

    /// The entry of `key`, if this shard has one.
    pub fn get(&self, key: &StreamKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Every entry this shard holds.
    pub fn iter(&self) -> impl Iterator<Item = (&StreamKey, &Entry)> {
        self.entries.iter()
    }

    /// The publisher of an owned stream.
    pub fn publisher(&self, key: &StreamKey) -> Option<&PublisherSlot> {
        match self.entries.get(key) {
            Some(Entry {
                role: Role::Owner { publisher, .. },
                ..
            }) => publisher.as_ref(),
            _ => None,
        }
    }

    /// Live streams this shard owns.
    pub fn owned_live_keys(&self) -> Vec<StreamKey> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.role, Role::Owner { .. }) && e.core.live)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The change notifier of this shard's copy of `key`, if it has one.
    pub fn changed(&self, key: &StreamKey) -> Option<Rc<Notify>> {
        self.entries.get(key).map(|e| e.core.changed.clone())
    }

    /// This shard's HLS window of `key`/`r`, if there is one.
    pub fn hls(&self, key: &StreamKey, r: Rendition) -> Option<&HlsWindow> {
        self.entries.get(key)?.core.hls(r)
    }

    /// Counts one HLS request (playlist, segment or part) served for `key`.
    /// Only streams this shard has an entry for are counted, so the counts
    /// are bounded by the table (and go with its entries).
    pub fn count_hls_request(&mut self, key: &StreamKey) {
        if self.entries.contains_key(key) {
            *self.hls_requests.entry(key.clone()).or_default() += 1;
        }
    }

    /// HLS requests served for `key` on this shard.
    /// Number of stream entries removed since the table was made.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    pub fn hls_requests(&self, key: &StreamKey) -> u64 {
        self.hls_requests.get(key).copied().unwrap_or(0)
    }

    fn new_core(&self, key: &StreamKey) -> StreamCore {
        StreamCore::new(
            key.clone(),
            self.cfg.gop,
            self.cfg.chunk_size,
            self.cfg.hls,
            self.cfg.coalesce,
        )
    }

    fn new_owned(&self, key: &StreamKey, now: Instant) -> Entry {
        Entry {
            core: self.new_core(key),
            role: Role::Owner {
                publisher: None,
                replicas: Vec::new(),
                rebase: Rebase::default(),
                segmenters: Default::default(),
                hls_wanted: {
                    let mut wanted = [false; Rendition::COUNT];
                    wanted[self.cfg.containers.main(key).index()] = true;
                    wanted
                },
                keep_until: now + REPLICA_LINGER,
                pull: None,
            },
        }
    }

    /// The entry of `key`, created if missing: owned on the owner; on any
    /// other shard a replica, subscribed to the owner (`empty_since`: when
    /// it starts lingering if nobody attaches).
    fn entry(&mut self, key: &StreamKey, now: Instant, empty_since: Option<Instant>) -> &mut Entry {
        if !self.entries.contains_key(key) {
            let entry = if self.is_owner(key) {
                self.new_owned(key, now)
            } else {
                let owner = self.owner_of(key);
                self.out.send.push((owner, PeerMsg::Subscribe(key.clone())));
                Entry {
                    core: self.new_core(key),
                    role: Role::Replica {
                        empty_since,
                        hls_asked: [false; Rendition::COUNT],
                    },
                }
            };
            self.entries.insert(key.clone(), entry);
        }
        self.entries.get_mut(key).expect("inserted above")
    }

    /// Makes sure this shard follows `key`: on a non-owner shard a replica
    /// exists (subscribed to the owner) and its linger clock restarts, so a
    /// caller polling this (a waiting request, an HLS player reloading its
    /// playlist) keeps the replica alive. On the owner it pushes back the
    /// entry's `keep_until`; false when the owner does not know the stream.
    pub fn follow(&mut self, key: &StreamKey, now: Instant) -> bool {
        if self.is_owner(key) {
            // An edge pulls what is asked for (and so knows every key).
            self.demand(key, now);
            return match self.entries.get_mut(key) {
                Some(Entry {
                    role: Role::Owner { keep_until, .. },
                    ..
                }) => {
                    *keep_until = (*keep_until).max(now + REPLICA_LINGER);
                    true
                }
                _ => false,
            };
        }
        if let Role::Replica {
            empty_since: Some(t),
            ..
        } = &mut self.entry(key, now, Some(now)).role
        {
            *t = now;
        }
        true
    }

    /// Is the stream live, as this shard sees it? (Follows it.)
    pub fn watch_live(&mut self, key: &StreamKey, now: Instant) -> bool {
        self.follow(key, now) && self.entries.get(key).is_some_and(|e| e.core.live)
    }

    /// Follows `key` for HLS rendition `r`, asking the owner to cut that
    /// rendition if nobody did yet. Returns the stream's change notifier
    /// and whether the rendition's window has anything to serve.
    pub fn watch_hls(
        &mut self,
        key: &StreamKey,
        r: Rendition,
        now: Instant,
        unix_ms: u64,
    ) -> Option<(Rc<Notify>, bool)> {
        if !self.follow(key, now) {
            return None;
        }
        let main = self.cfg.containers.main(key);
        if self.is_owner(key) {
            if r != main {
                self.want_rendition(key, r, now, unix_ms);
            }
        } else {
            let owner = self.owner_of(key);
            if let Some(Entry {
                role: Role::Replica { hls_asked, .. },
                ..
            }) = self.entries.get_mut(key)
            {
                if r != main && !hls_asked[r.index()] {
                    hls_asked[r.index()] = true;
                    self.out
                        .send
                        .push((owner, PeerMsg::WantRendition(key.clone(), r)));
                }
            }
        }
        let core = &self.entries.get(key)?.core;
        let ready = core.hls(r).is_some_and(|w| !w.is_empty());
        Some((core.changed.clone(), ready))
    }

    /// Decides a publish on the owner: `id` becomes the stream's publisher
    /// (replacing or refused by the republish policy).
    pub fn start_publish(
        &mut self,
        key: &StreamKey,
        publisher: PublisherSlot,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !self.is_owner(key) {
            return Err(Refusal::server(format!(
                "internal: shard {} is not the owner of {key}",
                self.cfg.shard
            )));
        }
        let (republish, hls) = (self.cfg.republish, self.cfg.hls);
        let entry = self.entry(key, now, None);
        let Role::Owner {
            publisher: slot,
            rebase,
            segmenters,
            hls_wanted,
            ..
        } = &mut entry.role
        else {
            return Err(Refusal::server(format!(
                "internal: {key} is held as a replica on its owner"
            )));
        };
        let mut replaced = None;
        if matches!(publisher.source, Source::Pull { .. }) && slot.is_some() {
            return Err(Refusal::stream(format!(
                "{key} is published here by a client: not pulled"
            )));
        }
        if let Some(old) = slot.take() {
            // A client always takes over from a pull: it is the stream's
            // source here now.
            let pulled = matches!(old.source, Source::Pull { .. });
            if republish == Republish::Reject && !pulled {
                *slot = Some(old);
                return Err(Refusal::stream(format!("{key} is already being published")));
            }
            log::info!("republish key={key} replacing publisher id={}", old.id);
            replaced = Some(old.close);
        }
        *slot = Some(publisher);
        rebase.new_publisher();
        for r in Rendition::ALL {
            if !hls_wanted[r.index()] {
                continue;
            }
            match &mut segmenters[r.index()] {
                Some(seg) => seg.discontinuity(),
                empty => *empty = Some(new_segmenter(hls, r)),
            }
        }
        self.out.raise.extend(replaced);
        self.owner_event(key, StreamEvent::Published, now);
        Ok(())
    }

    /// A frame or metadata from publisher `id` (ignored if it was
    /// replaced): rebased, metered, fanned out, sent to replicas and cut
    /// into HLS. Returns whether it was taken.
    pub fn publish_event(
        &mut self,
        key: &StreamKey,
        id: u64,
        event: StreamEvent,
        now: Instant,
        unix_ms: u64,
    ) -> bool {
        let Some(Entry {
            role:
                Role::Owner {
                    publisher: Some(p),
                    rebase,
                    ..
                },
            ..
        }) = self.entries.get_mut(key)
        else {
            return false;
        };
        if p.id != id {
            return false;
        }
        let event = match event {
            StreamEvent::Frame(mut f) => {
                f.timestamp = rebase.map(f.timestamp);
                p.meter.record(now, &f);
                StreamEvent::Frame(f)
            }
            other => other,
        };
        let frame = match &event {
            StreamEvent::Frame(f) => Some(f.clone()),
            _ => None,
        };
        self.owner_event(key, event, now);
        if let Some(frame) = frame {
            self.run_segmenters(key, now, |r, seg| {
                if r.wants(&frame) {
                    seg.push(&frame, unix_ms)
                } else {
                    Vec::new()
                }
            });
        }
        true
    }

    /// Publisher `id` left (if it is still the current one).
    pub fn end_publish(&mut self, key: &StreamKey, id: u64, now: Instant) {
        let grace = self.cfg.publisher_grace;
        let Some(Entry {
            role:
                Role::Owner {
                    publisher,
                    keep_until,
                    ..
                },
            ..
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        if publisher.as_ref().map(|p| p.id) != Some(id) {
            return;
        }
        *publisher = None;
        *keep_until = now + grace;
        self.run_segmenters(key, now, |_, seg| seg.flush());
        self.owner_event(key, StreamEvent::Unpublished, now);
        self.maybe_drop_owned(key, now);
    }

    /// Runs `f` on each HLS segmenter of an owned stream and ships the
    /// events it returns (applied here, sent to replicas).
    fn run_segmenters(
        &mut self,
        key: &StreamKey,
        now: Instant,
        mut f: impl FnMut(Rendition, &mut Segmenter) -> Vec<HlsEvent>,
    ) {
        let mut events = Vec::new();
        let Some(Entry {
            role: Role::Owner { segmenters, .. },
            ..
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        for r in Rendition::ALL {
            if let Some(seg) = &mut segmenters[r.index()] {
                events.extend(f(r, seg).into_iter().map(|e| (r, e)));
                if let Some(why) = seg.take_refusal() {
                    log::warn!("HLS of {key} ({r:?}): {why}");
                }
            }
        }
        for (r, e) in events {
            self.owner_event(key, StreamEvent::Hls(r, e), now);
        }
    }

    /// Someone wants rendition `r` of an owned stream: start its segmenter
    /// (it begins at the next keyframe; an fMP4 one hands out its init
    /// segment from the codec configs at once).
    fn want_rendition(&mut self, key: &StreamKey, r: Rendition, now: Instant, unix_ms: u64) {
        let hls = self.cfg.hls;
        let Some(Entry {
            core,
            role:
                Role::Owner {
                    segmenters,
                    hls_wanted,
                    ..
                },
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        hls_wanted[r.index()] = true;
        let mut events = Vec::new();
        if core.live && segmenters[r.index()].is_none() {
            let mut seg = new_segmenter(hls, r);
            // A segmenter started mid-stream has missed the codec configs.
            for f in [&core.video_seq, &core.audio_seq].into_iter().flatten() {
                if r.wants(f) {
                    events.extend(seg.push(f, unix_ms));
                }
            }
            segmenters[r.index()] = Some(seg);
        }
        for e in events {
            self.owner_event(key, StreamEvent::Hls(r, e), now);
        }
    }

    /// Applies an event to the owned stream, fans it out to this shard's
    /// players and sends it to the replicas (a lagging replica gets a
    /// snapshot at the next keyframe instead).
    fn owner_event(&mut self, key: &StreamKey, event: StreamEvent, now: Instant) {
        let grace = now + self.cfg.publisher_grace;
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.core.apply_at(&event, grace, now, now);
        self.out.ready.extend(entry.core.drain_ready());
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
                // Sent optimistically: a failed send marks it lagging again
                // (`StreamTable::media_lost`).
                r.lagging = false;
                let snap = snapshot.get_or_insert_with(|| entry.core.snapshot());
                StreamEvent::Snapshot(Box::new(snap.clone()))
            } else {
                event.clone()
            };
            self.out
                .send
                .push((r.shard, PeerMsg::Event(key.clone(), msg, now)));
        }
    }

    /// A media message for `to` about `key` was not delivered (its lane was
    /// full): `to` is resynchronised at the next keyframe. Returns true when
    /// this starts a lag (worth one log line).
    pub fn media_lost(&mut self, key: &StreamKey, to: usize) -> bool {
        let Some(Entry {
            role: Role::Owner { replicas, .. },
            ..
        }) = self.entries.get_mut(key)
        else {
            return false;
        };
        match replicas.iter_mut().find(|r| r.shard == to) {
            Some(r) if !r.lagging => {
                r.lagging = true;
                true
            }
            _ => false,
        }
    }

    /// Something wants `key` (a player, a sink, a replica, a request). On
    /// an edge's owner shard, with no publisher here and no pull running,
    /// this starts the stream's one pull ([`Actions::pull`]); with a pull
    /// running, it pushes back the pull's stop.
    fn demand(&mut self, key: &StreamKey, now: Instant) {
        if self.cfg.keep_pulling.is_none() || !self.is_owner(key) {
            return;
        }
        let (running, max) = (self.pulls, self.cfg.pulls_max);
        let Role::Owner {
            publisher, pull, ..
        } = &mut self.entry(key, now, None).role
        else {
            return;
        };
        match pull {
            Some(p) => p.last_demand = now,
            // A client publishes here: nothing to pull.
            None if publisher.is_some() => {}
            None if running >= max => {
                self.out.pulls_refused += 1;
                if !std::mem::replace(&mut self.pulls_full_logged, true) {
                    log::warn!(
                        "no pull of {key}: shard {} runs {running} pulls, its share of edge.pulls_max; plays of streams not pulled yet are refused until one ends (counted in shardcast_refused_total, edge_pulls_max)",
                        self.cfg.shard
                    );
                } else {
                    log::debug!("no pull of {key}: edge.pulls_max");
                }
            }
            None => {
                let stop = Rc::new(Signal::default());
                *pull = Some(PullSlot {
                    stop: stop.clone(),
                    last_demand: now,
                    origin: None,
                    state: PullState::Connecting,
                    failures: 0,
                });
                self.pulls += 1;
                self.out.pull.push((key.clone(), stop));
            }
        }
    }

    /// The pull of `key` is at `origin`, doing `state`, with `failures`
    /// failed attempts since media last flowed (for the API).
    pub fn set_pull_state(
        &mut self,
        key: &StreamKey,
        origin: SocketAddr,
        state: PullState,
        failures: u32,
    ) {
        if let Some(Entry {
            role: Role::Owner { pull: Some(p), .. },
            ..
        }) = self.entries.get_mut(key)
        {
            p.origin = Some(origin);
            p.state = state;
            p.failures = failures;
        }
    }

    /// The pull of `key`, if one runs on this shard.
    pub fn pull(&self, key: &StreamKey) -> Option<&PullSlot> {
        match self.entries.get(key) {
            Some(Entry {
                role: Role::Owner { pull, .. },
                ..
            }) => pull.as_ref(),
            _ => None,
        }
    }

    /// The pull of `key` ended: stopped (no demand, or a client publishes
    /// here now) or, `gave_up`, failing for `edge.retry_max_ms`, when every
    /// player of the stream on every shard is told the stream ended. If
    /// the stream is wanted again already, a new pull starts.
    pub fn pull_ended(&mut self, key: &StreamKey, gave_up: bool, now: Instant) {
        let Some(Entry {
            core,
            role: Role::Owner { pull, replicas, .. },
        }) = self.entries.get_mut(key)
        else {
            return;
        };
        if pull.take().is_some() {
            self.pulls -= 1;
            self.pulls_full_logged = false;
        }
        let wanted = core.has_subscribers() || !replicas.is_empty();
        if gave_up {
            self.owner_event(key, StreamEvent::Ended, now);
        } else if wanted {
            self.demand(key, now);
        }
        self.maybe_drop_owned(key, now);
    }

    fn maybe_drop_owned(&mut self, key: &StreamKey, now: Instant) {
        if self.entries.get(key).is_some_and(|e| e.owned_and_idle(now)) {
            self.entries.remove(key);
            self.removed += 1;
        }
    }

    /// Adds a player to this shard's copy of the stream (owned or
    /// replica). Returns the number of cached frames its start burst holds.
    pub fn attach_player(&mut self, key: &StreamKey, player: Rc<Player>, now: Instant) -> usize {
        let grace = now + self.cfg.publisher_grace;
        self.entry(key, now, None);
        self.demand(key, now);
        let entry = self.entries.get_mut(key).expect("created above");
        if let Role::Replica { empty_since, .. } = &mut entry.role {
            *empty_since = None;
        }
        let cached = entry.core.add_player(player, grace);
        self.out.ready.extend(entry.core.drain_ready());
        cached
    }

    /// Removes a player.
    pub fn detach_player(&mut self, key: &StreamKey, player_id: u64, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.core.remove_player(player_id);
        self.maybe_unfollow(key, now);
    }

    /// Adds a sink (a recorder, an upstream push) to this shard's copy of
    /// the stream: it gets the start (metadata, codec configs, GOP) and
    /// then every frame, in order.
    pub fn attach_sink(&mut self, key: &StreamKey, sink: Rc<Sink>, now: Instant) {
        self.entry(key, now, None);
        self.demand(key, now);
        let entry = self.entries.get_mut(key).expect("created above");
        if let Role::Replica { empty_since, .. } = &mut entry.role {
            *empty_since = None;
        }
        entry.core.add_sink(sink);
    }

    /// Removes a sink.
    pub fn detach_sink(&mut self, key: &StreamKey, sink_id: u64, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        entry.core.remove_sink(sink_id);
        self.maybe_unfollow(key, now);
    }

    /// After a subscriber left: a replica with none starts lingering, an
    /// idle owned entry goes.
    fn maybe_unfollow(&mut self, key: &StreamKey, now: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            match &mut entry.role {
                Role::Replica { empty_since, .. } => {
                    if !entry.core.has_subscribers() {
                        *empty_since = Some(now);
                    }
                }
                Role::Owner { pull, .. } => left_now(pull, now),
            }
        }
        self.maybe_drop_owned(key, now);
    }

    /// A message from shard `from`.
    pub fn on_peer(&mut self, from: usize, msg: PeerMsg, now: Instant, unix_ms: u64) {
        match msg {
            PeerMsg::Subscribe(key) => {
                if !self.is_owner(&key) {
                    log::warn!(
                        "shard {} got a subscription to {key} from shard {from} but is not its owner",
                        self.cfg.shard
                    );
                    return;
                }
                self.demand(&key, now);
                let entry = self.entry(&key, now, None);
                let snapshot = entry.core.snapshot();
                if let Role::Owner { replicas, .. } = &mut entry.role {
                    replicas.retain(|r| r.shard != from);
                    replicas.push(ReplicaLink {
                        shard: from,
                        lagging: false,
                    });
                }
                self.out.send.push((
                    from,
                    PeerMsg::Event(key, StreamEvent::Snapshot(Box::new(snapshot)), now),
                ));
            }
            PeerMsg::Unsubscribe(key) => {
                if let Some(Entry {
                    role: Role::Owner { replicas, .. },
                    ..
                }) = self.entries.get_mut(&key)
                {
                    replicas.retain(|r| r.shard != from);
                }
                if let Some(Entry {
                    role: Role::Owner { pull, .. },
                    ..
                }) = self.entries.get_mut(&key)
                {
                    left_now(pull, now);
                }
                self.maybe_drop_owned(&key, now);
            }
            PeerMsg::WantRendition(key, r) => self.want_rendition(&key, r, now, unix_ms),
            PeerMsg::Event(key, event, ingest) => {
                let grace = now + self.cfg.publisher_grace;
                if let Some(entry) = self.entries.get_mut(&key) {
                    if matches!(entry.role, Role::Replica { .. }) {
                        entry.core.apply_at(&event, grace, ingest, now);
                        self.out.ready.extend(entry.core.drain_ready());
                    }
                }
            }
        }
    }

    /// Housekeeping: drops idle owned entries, closes players whose wait
    /// for a publisher ran out, unsubscribes replicas that lingered
    /// [`REPLICA_LINGER`] without players, and logs new skips.
    pub fn tick(&mut self, now: Instant) {
        let mut unsubscribe = Vec::new();
        let before = self.entries.len();
        let keep_pulling = self.cfg.keep_pulling.unwrap_or_default();
        let out = &mut self.out;
        self.entries.retain(|key, entry| {
            if entry.owned_and_idle(now) {
                return false;
            }
            if let Role::Owner {
                pull: Some(p),
                replicas,
                ..
            } = &mut entry.role
            {
                if entry.core.has_subscribers() || !replicas.is_empty() {
                    p.last_demand = now;
                } else if now.saturating_duration_since(p.last_demand) >= keep_pulling
                    && !p.stop.is_raised()
                {
                    log::info!(
                        "pull unwanted key={key} for {}s (edge.keep_pulling_s): stopping it",
                        keep_pulling.as_secs()
                    );
                    out.raise.push(p.stop.clone());
                }
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
                if now.saturating_duration_since(t) >= REPLICA_LINGER {
                    unsubscribe.push(key.clone());
                    return false;
                }
            }
            true
        });
        self.removed += (before - self.entries.len()) as u64;
        // HLS request counts go with their streams' entries.
        let entries = &self.entries;
        self.hls_requests.retain(|k, _| entries.contains_key(k));
        shrink_sparse(&mut self.entries);
        shrink_sparse(&mut self.hls_requests);
        for key in unsubscribe {
            let owner = self.owner_of(&key);
            self.out.send.push((owner, PeerMsg::Unsubscribe(key)));
        }
    }
}

/// A segmenter for rendition `r`.
fn new_segmenter(hls: HlsConfig, r: Rendition) -> Box<Segmenter> {
    let muxer: Box<dyn SegmentMuxer> = match r.container {
        Container::Ts => {
            let (video, audio) = r.ts_streams();
            Box::new(TsMuxer::new(video, audio))
        }
        Container::Fmp4 => Box::new(Fmp4Muxer::new()),
    };
    Box::new(Segmenter::new(hls, muxer))
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

/// A subscriber of a pulled stream left at `now`: `edge.keep_pulling_s`
/// counts from here, not from the last tick that saw it.
fn left_now(pull: &mut Option<PullSlot>, now: Instant) {
    if let Some(p) = pull {
        p.last_demand = now;
    }
}

#[cfg(test)]
mod tests;
