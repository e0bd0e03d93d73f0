//! Streams on one shard: the GOP cache, the players and their bounded
//! queues, and the fan-out of each frame to them.
//!
//! The same [`StreamCore`] serves both roles of DESIGN.md: on the owner shard
//! it is fed by the publisher, on every other shard (a replica) it is fed by
//! the owner's [`StreamEvent`]s. Everything here is single-shard state: it is
//! `!Send` on purpose (players are `Rc`), and only the shard that created it
//! touches it.

pub mod meter;
pub mod queue;
pub mod sink;
pub mod table;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use meter::IngestMeter;
use proto::media::params::{self, AudioParams, VideoParams};
use proto::media::{AudioCodec, Frame, FrameKind};
use proto::rtmp::wire;
pub use queue::{Notify, OutQueue, Signal, IOV_BATCH};

/// Milliseconds since the Unix epoch (HLS PROGRAM-DATE-TIME, publish times).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

use proto::hls::{Container, HlsConfig, HlsEvent, HlsWindow};

/// Which media an HLS rendition carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Media {
    /// Audio and video.
    Both,
    /// Audio only (`?only-audio=1`).
    AudioOnly,
    /// Video only (`?only-video=1`).
    VideoOnly,
}

/// An HLS rendition of a stream: which media, in which container. The
/// owner runs a segmenter per rendition asked for, each shard a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rendition {
    pub media: Media,
    pub container: Container,
}

impl Rendition {
    /// How many there are: the length of per-rendition arrays.
    pub const COUNT: usize = 6;
    /// Every rendition, in index order.
    pub const ALL: [Rendition; Self::COUNT] = {
        use Container::{Fmp4, Ts};
        use Media::{AudioOnly, Both, VideoOnly};
        const fn r(media: Media, container: Container) -> Rendition {
            Rendition { media, container }
        }
        [
            r(Both, Ts),
            r(Both, Fmp4),
            r(AudioOnly, Ts),
            r(AudioOnly, Fmp4),
            r(VideoOnly, Ts),
            r(VideoOnly, Fmp4),
        ]
    };

    /// Audio and video in `container`.
    pub const fn main(container: Container) -> Self {
        Rendition {
            media: Media::Both,
            container,
        }
    }

    /// Position in per-rendition arrays.
    pub fn index(self) -> usize {
        self.media as usize * 2 + self.container as usize
    }

    /// The rendition a request's filter and container ask for.
    pub fn for_filter(filter: MediaFilter, container: Container) -> Self {
        let media = match (filter.audio, filter.video) {
            (true, false) => Media::AudioOnly,
            (false, true) => Media::VideoOnly,
            _ => Media::Both,
        };
        Rendition { media, container }
    }

    /// The path element under the stream's folder (`""`, `"audio/"`, `"video/"`).
    pub fn path_prefix(self) -> &'static str {
        match self.media {
            Media::Both => "",
            Media::AudioOnly => "audio/",
            Media::VideoOnly => "video/",
        }
    }

    /// Whether the rendition's muxer gets this frame.
    pub fn wants(self, frame: &Frame) -> bool {
        match self.media {
            Media::Both => true,
            Media::AudioOnly => frame.kind == FrameKind::Audio,
            Media::VideoOnly => frame.kind == FrameKind::Video,
        }
    }

    /// (video, audio) streams its MPEG-TS program may list.
    pub fn ts_streams(self) -> (bool, bool) {
        match self.media {
            Media::Both => (true, true),
            Media::AudioOnly => (false, true),
            Media::VideoOnly => (true, false),
        }
    }
}

/// Which container a stream's HLS is cut in before anyone asks
/// (`hls.container`, per app `[hls.apps.<app>] container`); the other is
/// cut from the first request for it (`?container=`).
#[derive(Clone, Debug, Default)]
pub struct Containers {
    pub default: Container,
    /// By application name.
    pub apps: std::collections::HashMap<String, Container>,
}

impl Containers {
    /// The container of `key` (`vhost/app/stream`).
    pub fn of(&self, key: &str) -> Container {
        key.split('/')
            .nth(1)
            .and_then(|app| self.apps.get(app))
            .copied()
            .unwrap_or(self.default)
    }

    /// The rendition every publish of `key` is cut in.
    pub fn main(&self, key: &str) -> Rendition {
        Rendition::main(self.of(key))
    }
}

impl std::fmt::Display for Rendition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let media = match self.media {
            Media::Both => "main",
            Media::AudioOnly => "audio",
            Media::VideoOnly => "video",
        };
        write!(f, "{media}.{}", self.container.name())
    }
}

/// `vhost/app/stream`, shared cheaply between shards.
pub type StreamKey = Arc<str>;

/// What the owner of a stream tells each replica, in order.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// A publisher started (or took over).
    Published,
    /// The publisher left; players wait `publisher_grace_s` for another.
    Unpublished,
    /// No publisher will come (an edge's pull gave up): players end now.
    Ended,
    /// `onMetaData`: an AMF0 body `["onMetaData", {..}]`.
    Metadata(Bytes),
    /// One audio or video message.
    Frame(Frame),
    /// The whole state a new or resynchronising replica starts from.
    Snapshot(Box<Snapshot>),
    /// A finished HLS part or segment, cut on the owner.
    Hls(Rendition, HlsEvent),
}

/// The state a player needs to start: metadata, codec configs, the GOP.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// A publisher is live.
    pub live: bool,
    /// Last `onMetaData` body.
    pub metadata: Option<Bytes>,
    /// Last video sequence header.
    pub video_seq: Option<Frame>,
    /// Last audio sequence header.
    pub audio_seq: Option<Frame>,
    /// The GOP cache: frames from the last keyframe on (empty if none).
    pub gop: Vec<Frame>,
    /// The HLS windows the owner has.
    pub hls: Vec<(Rendition, HlsWindow)>,
}

/// How long frames may wait in players' queues so that one write carries
/// several (`stream.audio_coalesce_ms`, `stream.write_coalesce_ms`); zero =
/// not at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coalesce {
    /// Audio of a stream with video, for the next video frame.
    pub audio: Duration,
    /// Any frame but a keyframe, for later frames (merged writes).
    pub write: Duration,
}

/// Bounds of a GOP cache.
#[derive(Clone, Copy, Debug)]
pub struct GopLimits {
    /// Off: players start at the next keyframe.
    pub enabled: bool,
    /// Payload bytes the cache may hold (the memory it may pin per stream,
    /// per shard, since replicas hold a copy of the references).
    pub bytes_max: usize,
    /// Frames the cache may hold.
    pub frames_max: usize,
}

/// The frames since the last keyframe, so a new player starts at once.
///
/// A stream whose GOP outgrows a bound (or that never sends a keyframe) gets
/// an empty cache until its next keyframe: memory stays bounded.
#[derive(Debug)]
pub struct GopCache {
    limits: GopLimits,
    frames: VecDeque<Frame>,
    bytes: usize,
    /// The current GOP outgrew a bound; cache nothing until the next keyframe.
    overflowed: bool,
}

impl GopCache {
    /// An empty cache.
    pub fn new(limits: GopLimits) -> Self {
        Self {
            limits,
            frames: VecDeque::new(),
            bytes: 0,
            overflowed: false,
        }
    }

    /// Records `frame`. Sequence headers are kept by [`StreamCore`], not here.
    pub fn push(&mut self, frame: &Frame) {
        if !self.limits.enabled || frame.sequence_header || frame.kind == FrameKind::Data {
            return;
        }
        if frame.kind == FrameKind::Video && frame.keyframe {
            self.clear();
        } else if self.frames.is_empty() || self.overflowed {
            return;
        }
        let len = frame.payload.len();
        if self.bytes + len > self.limits.bytes_max || self.frames.len() >= self.limits.frames_max {
            self.clear();
            self.overflowed = true;
            return;
        }
        self.bytes += len;
        self.frames.push_back(frame.clone());
    }

    /// Forgets everything (a new publisher, or an overflow).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.overflowed = false;
    }

    /// The cached frames, oldest first (a keyframe first, if any).
    pub fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter()
    }

    /// Number of cached frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes cached.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// How a player wants its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerFormat {
    /// RTMP, on the message stream id its `play` came on.
    Rtmp { stream_id: u32 },
    /// HTTP-FLV tags, in chunked transfer coding (HTTP/1.1) or raw (1.0).
    Flv { chunked: bool },
}

impl PlayerFormat {
    /// Appends the wire form of one frame (its payload shared, not copied).
    fn frame(self, frame: &Frame, chunk_size: u32, out: &mut Vec<Bytes>) {
        match self {
            PlayerFormat::Rtmp { stream_id } => {
                // A frame is a message the chunk decoder took, so it fits the
                // 24-bit length field; one that does not is left out.
                if let Err(e) = wire::media_message(frame, stream_id, chunk_size, out) {
                    log::error!("fan-out: frame left out: {e}");
                }
            }
            PlayerFormat::Flv { chunked } => {
                let start = out.len();
                proto::flv::frame_tag(frame, out);
                if chunked {
                    http_chunk(&mut out[start..]);
                }
            }
        }
    }

    /// Appends the wire form of an `onMetaData` body.
    fn metadata(self, body: &Bytes, chunk_size: u32, out: &mut Vec<Bytes>) {
        match self {
            PlayerFormat::Rtmp { stream_id } => {
                // The session refuses metadata over message_len_max, which
                // the config keeps within the 24-bit length field.
                if let Err(e) = wire::metadata_message(body, stream_id, chunk_size, out) {
                    log::error!("fan-out: onMetaData left out: {e}");
                }
            }
            PlayerFormat::Flv { chunked } => {
                let start = out.len();
                proto::flv::script_tag(body, out);
                if chunked {
                    http_chunk(&mut out[start..]);
                }
            }
        }
    }
}

/// Frames `parts` (header, payload, trailer) as one HTTP chunk by folding
/// the chunk-size line into the first part and CRLF into the last, so the
/// shared payload stays untouched.
fn http_chunk(parts: &mut [Bytes]) {
    let len: usize = parts.iter().map(Bytes::len).sum();
    let (Some(first), Some(_)) = (parts.first(), parts.last()) else {
        return;
    };
    let mut head = bytes::BytesMut::with_capacity(first.len() + 10);
    head.extend_from_slice(proto::http::chunk_size_line(len).as_bytes());
    head.extend_from_slice(first);
    parts[0] = head.freeze();
    let last = parts.len() - 1;
    let mut tail = bytes::BytesMut::with_capacity(parts[last].len() + 2);
    tail.extend_from_slice(&parts[last]);
    tail.extend_from_slice(b"\r\n");
    parts[last] = tail.freeze();
}

/// Which media a player receives (`?only-audio=1`, `receiveVideo false`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaFilter {
    /// Audio frames are sent.
    pub audio: bool,
    /// Video frames are sent.
    pub video: bool,
}

impl MediaFilter {
    /// Everything.
    pub const ALL: MediaFilter = MediaFilter {
        audio: true,
        video: true,
    };

    /// What a play's query asks for (`?only-audio=1` / `?only-video=1`).
    pub fn from_query(query: &[(String, String)]) -> Self {
        let (audio, video) = proto::query::media_wanted(query);
        MediaFilter { audio, video }
    }

    fn wants(&self, frame: &Frame) -> bool {
        match frame.kind {
            FrameKind::Audio => self.audio,
            FrameKind::Video => self.video,
            FrameKind::Data => true,
        }
    }
}

/// One player of a stream on this shard: its queue (drained by its
/// connection's writer task) and what it asked for.
#[derive(Debug)]
pub struct Player {
    /// Unique on this shard.
    pub id: u64,
    /// Remote address, for logs.
    pub peer: SocketAddr,
    /// Wire format.
    pub format: PlayerFormat,
    /// Media selection; the session may change it (receiveAudio/Video).
    pub filter: Cell<MediaFilter>,
    /// Bytes waiting to be written to this player.
    pub queue: RefCell<OutQueue>,
    /// Raised when the stream ends for this player (grace expired, shutdown).
    pub close: Signal,
    /// Skipped frames already reported in the log.
    pub skips_reported: Cell<u64>,
    /// When this player gives up waiting for a publisher.
    wait_deadline: Cell<Option<Instant>>,
}

impl Player {
    /// A player whose queue holds at most `queue_bytes_max` bytes of media.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        format: PlayerFormat,
        filter: MediaFilter,
        queue_bytes_max: usize,
    ) -> Self {
        Self {
            id,
            peer,
            format,
            filter: Cell::new(filter),
            queue: RefCell::new(OutQueue::new(queue_bytes_max)),
            close: Signal::default(),
            skips_reported: Cell::new(0),
            wait_deadline: Cell::new(None),
        }
    }

    fn send_status(&self, code: &str, description: &str, chunk_size: u32) {
        let PlayerFormat::Rtmp { stream_id } = self.format else {
            return;
        };
        let mut parts = Vec::with_capacity(2);
        // Our own code and description: a few dozen bytes.
        if let Err(e) = wire::status_message(
            stream_id,
            "status",
            code,
            description,
            chunk_size,
            &mut parts,
        ) {
            log::error!("player {}: {code} not sent: {e}", self.id);
            return;
        }
        self.queue.borrow_mut().push_control(&parts);
    }
}

/// Serialises each frame once per distinct output form among a stream's
/// players, and shares the result (DESIGN.md "zero-copy fan-out").
struct WireCache<'a> {
    frame: &'a Frame,
    chunk_size: u32,
    /// (format, parts); one entry per output format in use, since every
    /// RTMP client's first `createStream` gets stream id 1.
    forms: Vec<(PlayerFormat, Vec<Bytes>)>,
}

impl<'a> WireCache<'a> {
    fn new(frame: &'a Frame, chunk_size: u32) -> Self {
        Self {
            frame,
            chunk_size,
            forms: Vec::new(),
        }
    }

    fn get(&mut self, format: PlayerFormat) -> &[Bytes] {
        let idx = match self.forms.iter().position(|(f, _)| *f == format) {
            Some(i) => i,
            None => {
                let mut parts = Vec::with_capacity(3);
                format.frame(self.frame, self.chunk_size, &mut parts);
                self.forms.push((format, parts));
                self.forms.len() - 1
            }
        };
        &self.forms[idx].1
    }
}

/// A stream's `onMetaData`, with the variants for players that receive
/// only audio or only video.
#[derive(Clone, Debug)]
pub struct Metadata {
    /// As the publisher sent it (`["onMetaData", {..}]`).
    pub body: Bytes,
    audio_only: Bytes,
    video_only: Bytes,
}

impl Metadata {
    /// Builds the variants once per `onMetaData`.
    pub fn new(body: Bytes) -> Self {
        Self {
            audio_only: wire::filter_metadata(&body, true, false),
            video_only: wire::filter_metadata(&body, false, true),
            body,
        }
    }

    /// The body a player with `filter` gets.
    pub fn for_filter(&self, filter: MediaFilter) -> &Bytes {
        match (filter.audio, filter.video) {
            (true, false) => &self.audio_only,
            (false, true) => &self.video_only,
            _ => &self.body,
        }
    }
}

/// What one shard holds of one stream, as owner or as replica.
pub struct StreamCore {
    /// The stream's key.
    pub key: StreamKey,
    /// A publisher is live.
    pub live: bool,
    /// Last `onMetaData`.
    pub metadata: Option<Metadata>,
    /// Last video sequence header.
    pub video_seq: Option<Frame>,
    /// Last audio sequence header.
    pub audio_seq: Option<Frame>,
    /// Frames from the last keyframe on.
    pub gop: GopCache,
    /// The stream has carried video since its publish: until then audio
    /// frames are start points for players.
    pub has_video: bool,
    /// Players on this shard.
    pub players: Vec<Rc<Player>>,
    /// Sinks on this shard (recorders, pushes): every frame, in order.
    pub sinks: Vec<Rc<sink::Sink>>,
    /// Outgoing RTMP chunk size (what players were told at connect).
    chunk_size: u32,
    /// Frames received, for logs.
    pub frames_in: u64,
    /// HLS windows by [`Rendition::index`], created by the first event.
    hls: [Option<HlsWindow>; Rendition::COUNT],
    hls_config: HlsConfig,
    /// Raised whenever the stream goes live or not, or an HLS window
    /// changes: waiting requests (blocking playlist reloads, part requests,
    /// requests for a stream not yet published) wait on it.
    pub changed: Rc<Notify>,
    /// When the last two media frames were applied on this shard: a part is
    /// cut when the frame after its last one arrives, so the older one
    /// dates the part's last frame (for the part-availability log).
    frame_times: [Option<Instant>; 2],
    /// How long frames may wait in players' queues for later ones.
    coalesce: Coalesce,
    /// Since when frames have been held in players' queues.
    held_since: Option<Instant>,
    /// Players with bytes ready since the last [`StreamCore::drain_ready`].
    ready: Vec<Rc<Player>>,
}

impl StreamCore {
    /// The video track's parameters: its sequence header's, with the
    /// picture size read from the GOP's keyframe where the record has
    /// none (VP9; AV1 without a sequence header in its record).
    pub fn video_params(&self) -> Option<VideoParams> {
        let mut p = params::video_params(self.video_seq.as_ref()?).ok()??;
        if let Some(key) = self.gop.frames().find(|f| f.is_video() && f.keyframe) {
            params::fill_size_from_keyframe(&mut p, key);
        }
        Some(p)
    }

    /// The audio track's parameters: its sequence header's, or an MP3
    /// frame's (MP3 has no sequence header).
    pub fn audio_params(&self) -> Option<AudioParams> {
        match &self.audio_seq {
            Some(seq) => params::audio_params(seq).ok(),
            None => params::mp3_frame_params(self.mp3_frame()?).ok(),
        }
    }

    /// The audio track's codec: its sequence header's, or MP3 from a frame.
    pub fn audio_codec(&self) -> Option<AudioCodec> {
        match &self.audio_seq {
            Some(seq) => seq.audio_codec,
            None => self.mp3_frame().map(|_| AudioCodec::Mp3),
        }
    }

    /// An MP3 frame of the GOP cache (MP3 has no sequence header).
    fn mp3_frame(&self) -> Option<&Frame> {
        self.gop
            .frames()
            .find(|f| f.is_audio() && f.audio_codec == Some(AudioCodec::Mp3))
    }

    /// Video frames per second over the GOP cache's timestamps (decode
    /// order), to three decimals; None with fewer than two frames.
    pub fn video_frame_rate(&self) -> Option<f64> {
        let mut times = self
            .gop
            .frames()
            .filter(|f| f.is_video() && !f.sequence_header)
            .map(|f| f.timestamp);
        let first = times.next()?;
        let (n, last) = times.fold((0u32, first), |(n, _), t| (n + 1, t));
        let span = last.wrapping_sub(first);
        if n == 0 || span == 0 {
            return None;
        }
        Some((f64::from(n) * 1e6 / f64::from(span)).round() / 1e3)
    }

    /// An empty, not-live stream.
    pub fn new(
        key: StreamKey,
        gop: GopLimits,
        chunk_size: u32,
        hls_config: HlsConfig,
        coalesce: Coalesce,
    ) -> Self {
        Self {
            key,
            live: false,
            metadata: None,
            video_seq: None,
            audio_seq: None,
            gop: GopCache::new(gop),
            has_video: false,
            players: Vec::new(),
            sinks: Vec::new(),
            chunk_size,
            frames_in: 0,
            hls: Default::default(),
            hls_config,
            changed: Rc::new(Notify::default()),
            frame_times: [None, None],
            coalesce,
            held_since: None,
            ready: Vec::new(),
        }
    }

    /// The HLS window of a rendition, if the owner has started one.
    pub fn hls(&self, r: Rendition) -> Option<&HlsWindow> {
        self.hls[r.index()].as_ref()
    }

    /// The state a replica or a player starts from.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            live: self.live,
            metadata: self.metadata.as_ref().map(|m| m.body.clone()),
            video_seq: self.video_seq.clone(),
            audio_seq: self.audio_seq.clone(),
            gop: self.gop.frames().cloned().collect(),
            hls: Rendition::ALL
                .iter()
                .filter_map(|r| self.hls[r.index()].clone().map(|w| (*r, w)))
                .collect(),
        }
    }

    /// Applies one event and fans it out to this shard's players.
    /// `grace_deadline` is when players give up if the event unpublishes.
    /// A frame counts as ingested now (see [`StreamCore::apply_ingested`]).
    pub fn apply(&mut self, event: &StreamEvent, grace_deadline: Instant) {
        let now = Instant::now();
        self.apply_at(event, grace_deadline, now, now);
    }

    /// [`StreamCore::apply`] at `now`, for an event its owner took in at
    /// `ingest`: the fan-out latency of its frame is counted from then.
    pub fn apply_at(
        &mut self,
        event: &StreamEvent,
        grace_deadline: Instant,
        ingest: Instant,
        now: Instant,
    ) {
        match event {
            StreamEvent::Published => {
                self.to_sinks(sink::SinkItem::Published);
                self.changed.notify();
                self.live = true;
                self.metadata = None;
                self.video_seq = None;
                self.audio_seq = None;
                self.has_video = false;
                self.gop.clear();
                for p in &self.players {
                    p.wait_deadline.set(None);
                    p.send_status(
                        "NetStream.Play.PublishNotify",
                        &format!("{} is now published.", self.key),
                        self.chunk_size,
                    );
                    p.queue.borrow_mut().restart();
                }
            }
            StreamEvent::Unpublished => {
                self.to_sinks(sink::SinkItem::Unpublished);
                self.changed.notify();
                self.live = false;
                self.gop.clear();
                for p in &self.players {
                    p.wait_deadline.set(Some(grace_deadline));
                    p.send_status(
                        "NetStream.Play.UnpublishNotify",
                        &format!("{} is now unpublished.", self.key),
                        self.chunk_size,
                    );
                }
            }
            StreamEvent::Ended => {
                self.changed.notify();
                self.live = false;
                for p in &self.players {
                    p.wait_deadline.set(Some(now));
                }
                self.expire_waiting(now);
            }
            StreamEvent::Metadata(body) => {
                self.to_sinks(sink::SinkItem::Metadata(body.clone()));
                let meta = Metadata::new(body.clone());
                let mut parts = Vec::with_capacity(3);
                for p in &self.players {
                    parts.clear();
                    let body = meta.for_filter(p.filter.get());
                    p.format.metadata(body, self.chunk_size, &mut parts);
                    p.queue.borrow_mut().push_control(&parts);
                }
                self.metadata = Some(meta);
            }
            StreamEvent::Frame(frame) => self.on_frame(frame, ingest, now),
            StreamEvent::Hls(r, ev) => {
                if let (HlsEvent::Part { msn, part, .. }, Some(last)) = (ev, self.frame_times[0]) {
                    log::debug!(
                        "hls part ready key={} rendition={r} msn={msn} part={part} since_last_frame_us={}",
                        self.key,
                        now.saturating_duration_since(last).as_micros()
                    );
                }
                let config = self.hls_config;
                self.hls[r.index()]
                    .get_or_insert_with(|| HlsWindow::new(config, r.container))
                    .apply(ev);
                self.changed.notify();
            }
            StreamEvent::Snapshot(snap) => {
                let was_live = self.live;
                self.live = snap.live;
                self.metadata = snap.metadata.clone().map(Metadata::new);
                self.video_seq = snap.video_seq.clone();
                self.audio_seq = snap.audio_seq.clone();
                self.has_video = snap.video_seq.is_some() || snap.gop.iter().any(|f| f.is_video());
                self.gop.clear();
                for f in &snap.gop {
                    self.gop.push(f);
                }
                for (r, w) in &snap.hls {
                    self.hls[r.index()] = Some(w.clone());
                }
                self.changed.notify();
                // Players that joined before the snapshot start now, as if
                // they had just arrived. On a live replica the snapshot is a
                // resync after lost events: its players missed frames, so
                // they start over from its GOP too (a keyframe) instead of
                // going on with the inter frames that follow it.
                let players = std::mem::take(&mut self.players);
                for p in &players {
                    if self.live {
                        if !was_live {
                            p.wait_deadline.set(None);
                        }
                        self.start_player(p);
                    } else {
                        p.wait_deadline.set(Some(grace_deadline));
                    }
                }
                self.players = players;
                // Sinks too: a resync's GOP starts at the keyframe they missed.
                if self.live {
                    for s in &self.sinks {
                        if !was_live {
                            s.push(sink::SinkItem::Published);
                        }
                        self.start_sink(s);
                    }
                }
            }
        }
    }

    fn on_frame(&mut self, frame: &Frame, ingest: Instant, now: Instant) {
        self.frames_in += 1;
        self.frame_times = [self.frame_times[1], Some(now)];
        if frame.is_video() {
            self.has_video = true;
        }
        // Frames may wait in players' queues so that one write carries
        // several: audio of a stream with video for the next video frame
        // (`audio_coalesce`), any frame but a keyframe for `write_coalesce`
        // (merged writes). The wait is counted from the oldest held frame.
        let held_for = self.held_since.map(|t| now.saturating_duration_since(t));
        let within = |limit: Duration| !limit.is_zero() && held_for.is_none_or(|a| a < limit);
        let hold_all = !frame.keyframe && within(self.coalesce.write);
        let hold_video_players =
            hold_all || (frame.is_audio() && self.has_video && within(self.coalesce.audio));
        if hold_video_players {
            self.held_since.get_or_insert(now);
        } else {
            self.held_since = None;
        }
        if frame.sequence_header {
            if frame.is_video() {
                self.video_seq = Some(frame.clone());
            } else {
                self.audio_seq = Some(frame.clone());
            }
        }
        self.gop.push(frame);
        self.to_sinks(sink::SinkItem::Frame(frame.clone()));
        let mut wire = WireCache::new(frame, self.chunk_size);
        for p in &self.players {
            let filter = p.filter.get();
            // A player that gets no video waits for none.
            let hold = if filter.video {
                hold_video_players
            } else {
                hold_all
            };
            let mut q = p.queue.borrow_mut();
            if filter.wants(frame) {
                let parts = wire.get(p.format);
                if frame.sequence_header {
                    q.push_control(parts);
                } else if q.push_media(parts, is_start_point(frame, filter, self.has_video)) {
                    q.mark_ingest(ingest);
                }
            }
            // Also when the frame is not for this player: what it holds
            // leaves with everyone else's.
            if !hold && !q.is_empty() {
                self.ready.push(p.clone());
            }
        }
    }

    /// Adds a player and queues its start: metadata, codec configs and the
    /// GOP (or, without a GOP, it starts at the next keyframe). Returns the
    /// number of cached frames queued.
    pub fn add_player(&mut self, player: Rc<Player>, grace_deadline: Instant) -> usize {
        let queued = if self.live {
            self.start_player(&player)
        } else {
            player.wait_deadline.set(Some(grace_deadline));
            0
        };
        self.players.push(player);
        queued
    }

    fn start_player(&mut self, player: &Rc<Player>) -> usize {
        let format = player.format;
        let filter = player.filter.get();
        let mut q = player.queue.borrow_mut();
        q.restart();
        let mut parts = Vec::with_capacity(2);
        if let Some(meta) = &self.metadata {
            format.metadata(meta.for_filter(filter), self.chunk_size, &mut parts);
            q.push_control(&parts);
        }
        // Codec configs go out stamped with the time of the first cached
        // frame, so a player joining mid-stream sees no jump from 0.
        let start_ts = self.gop.frames().next().map(|f| f.timestamp);
        for seq in [&self.video_seq, &self.audio_seq].into_iter().flatten() {
            if filter.wants(seq) {
                parts.clear();
                let mut seq = seq.clone();
                seq.timestamp = start_ts.unwrap_or(seq.timestamp);
                format.frame(&seq, self.chunk_size, &mut parts);
                q.push_control(&parts);
            }
        }
        let mut queued = 0;
        for f in self.gop.frames() {
            if !filter.wants(f) {
                continue;
            }
            parts.clear();
            format.frame(f, self.chunk_size, &mut parts);
            if q.push_media(&parts, is_start_point(f, filter, self.has_video)) {
                queued += 1;
            }
        }
        if !q.is_empty() {
            self.ready.push(player.clone());
        }
        queued
    }

    /// The players with bytes ready to write since the last call: the
    /// caller writes to those whose writer is parked itself (the direct
    /// write) and wakes the others' writers.
    pub fn drain_ready(&mut self) -> std::vec::Drain<'_, Rc<Player>> {
        self.ready.drain(..)
    }

    /// Adds a sink and queues its start: metadata, codec configs and the
    /// GOP, if the stream is live.
    pub fn add_sink(&mut self, sink: Rc<sink::Sink>) {
        if self.live {
            self.start_sink(&sink);
        }
        self.sinks.push(sink);
    }

    fn start_sink(&self, sink: &sink::Sink) {
        if let Some(meta) = &self.metadata {
            sink.push(sink::SinkItem::Metadata(meta.body.clone()));
        }
        for f in [&self.video_seq, &self.audio_seq].into_iter().flatten() {
            sink.push(sink::SinkItem::Frame(f.clone()));
        }
        for f in self.gop.frames() {
            sink.push(sink::SinkItem::Frame(f.clone()));
        }
    }

    /// Removes a sink; true if it was there.
    pub fn remove_sink(&mut self, id: u64) -> bool {
        let before = self.sinks.len();
        self.sinks.retain(|s| s.id != id);
        before != self.sinks.len()
    }

    /// True when players or sinks follow the stream on this shard.
    pub fn has_subscribers(&self) -> bool {
        !self.players.is_empty() || !self.sinks.is_empty()
    }

    fn to_sinks(&self, item: sink::SinkItem) {
        for s in &self.sinks {
            s.push(item.clone());
        }
    }

    /// Removes a player; true if it was there.
    pub fn remove_player(&mut self, id: u64) -> bool {
        let before = self.players.len();
        self.players.retain(|p| p.id != id);
        before != self.players.len()
    }

    /// Closes the players whose wait for a publisher has run out.
    pub fn expire_waiting(&mut self, now: Instant) {
        for p in &self.players {
            if p.wait_deadline.get().is_some_and(|d| d <= now) {
                p.close.raise();
            }
        }
    }
}

/// May a player start (or resume after skipping) at this frame? A video
/// keyframe; or any audio frame when the player gets no video or the stream
/// has none (audio-only streams have no keyframes).
fn is_start_point(frame: &Frame, filter: MediaFilter, stream_has_video: bool) -> bool {
    match frame.kind {
        FrameKind::Video => frame.keyframe,
        FrameKind::Audio => !filter.video || !stream_has_video,
        FrameKind::Data => false,
    }
}

#[cfg(test)]
mod tests {
    use super::queue::tests::CountWakes;
    use super::*;
    use std::sync::Arc;

    /// A player whose writer is parked on its empty queue.
    struct Parked {
        player: Rc<Player>,
        wakes: Arc<CountWakes>,
    }

    impl Parked {
        fn new(id: u64, filter: MediaFilter) -> Self {
            let peer = "127.0.0.1:1".parse().unwrap();
            let player = Rc::new(Player::new(
                id,
                peer,
                PlayerFormat::Flv { chunked: false },
                filter,
                1 << 20,
            ));
            Parked {
                player,
                wakes: Arc::default(),
            }
        }

        /// Writes everything queued and parks the writer again.
        fn drain_and_park(&self) {
            let mut q = self.player.queue.borrow_mut();
            let n = q.len_bytes();
            q.advance(n);
            self.wakes.park(&mut q);
        }

        fn wakes(&self) -> usize {
            self.wakes.get()
        }

        fn queued(&self) -> usize {
            self.player.queue.borrow().len_bytes()
        }
    }

    /// Applies `ev` and does what the server does for the players with
    /// bytes ready when no socket is attached: wakes their writers.
    fn apply(core: &mut StreamCore, ev: &StreamEvent, deadline: Instant) {
        core.apply(ev, deadline);
        for p in core.drain_ready() {
            p.queue.borrow_mut().wake();
        }
    }

    /// Adds a player, as [`apply`] does events.
    fn add(core: &mut StreamCore, player: &Rc<Player>, deadline: Instant) {
        core.add_player(player.clone(), deadline);
        for p in core.drain_ready() {
            p.queue.borrow_mut().wake();
        }
    }

    pub(super) fn video(ts: u32, key: bool) -> StreamEvent {
        let head = if key { 0x17 } else { 0x27 };
        let body = Bytes::from(vec![head, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88]);
        StreamEvent::Frame(Frame::parse_video(ts, body).unwrap())
    }

    pub(super) fn audio(ts: u32) -> StreamEvent {
        let body = Bytes::from(vec![0xAF, 1, 0x21, 0x10, 0x04]);
        StreamEvent::Frame(Frame::parse_audio(ts, body).unwrap())
    }

    fn core(audio: Duration) -> StreamCore {
        core_with(Coalesce {
            audio,
            write: Duration::ZERO,
        })
    }

    fn core_with(coalesce: Coalesce) -> StreamCore {
        let gop = GopLimits {
            enabled: true,
            bytes_max: 1 << 20,
            frames_max: 100,
        };
        let mut core = StreamCore::new(
            "default/live/x".into(),
            gop,
            4096,
            HlsConfig::default(),
            coalesce,
        );
        apply(&mut core, &StreamEvent::Published, Instant::now());
        core
    }

    const AUDIO_ONLY: MediaFilter = MediaFilter {
        audio: true,
        video: false,
    };
    const VIDEO_ONLY: MediaFilter = MediaFilter {
        audio: false,
        video: true,
    };

    #[test]
    fn audio_waits_for_the_next_video_frame() {
        let mut core = core(Duration::from_secs(10));
        let deadline = Instant::now();
        let both = Parked::new(1, MediaFilter::ALL);
        let audio_only = Parked::new(2, AUDIO_ONLY);
        let video_only = Parked::new(3, VIDEO_ONLY);
        for p in [&both, &audio_only, &video_only] {
            add(&mut core, &p.player, deadline);
            p.drain_and_park();
        }
        apply(&mut core, &video(0, true), deadline);
        assert_eq!((both.wakes(), video_only.wakes()), (1, 1));
        both.drain_and_park();
        video_only.drain_and_park();

        apply(&mut core, &audio(10), deadline);
        apply(&mut core, &audio(20), deadline);
        assert_eq!(both.wakes(), 1, "audio is held for the next video frame");
        assert!(both.queued() > 0, "held audio is queued");
        assert_eq!(
            audio_only.wakes(),
            1,
            "an audio-only player waits for nothing"
        );

        apply(&mut core, &video(33, false), deadline);
        assert_eq!(both.wakes(), 2, "the video frame takes the audio along");
        assert_eq!(video_only.wakes(), 2);
    }

    #[test]
    fn held_audio_leaves_after_audio_coalesce() {
        let coalesce = Duration::from_millis(5);
        let mut core = core(coalesce);
        let deadline = Instant::now();
        let p = Parked::new(1, MediaFilter::ALL);
        add(&mut core, &p.player, deadline);
        apply(&mut core, &video(0, true), deadline);
        p.drain_and_park();
        apply(&mut core, &audio(10), deadline);
        assert_eq!(p.wakes(), 0);
        std::thread::sleep(coalesce * 2);
        apply(&mut core, &audio(20), deadline);
        assert_eq!(p.wakes(), 1, "audio held past audio_coalesce goes out");
    }

    #[test]
    fn merged_writes_hold_all_but_keyframes() {
        let coalesce = Duration::from_millis(20);
        let mut core = core_with(Coalesce {
            audio: Duration::ZERO,
            write: coalesce,
        });
        let deadline = Instant::now();
        let both = Parked::new(1, MediaFilter::ALL);
        let audio_only = Parked::new(2, AUDIO_ONLY);
        for p in [&both, &audio_only] {
            add(&mut core, &p.player, deadline);
            p.drain_and_park();
        }
        apply(&mut core, &video(0, true), deadline);
        assert_eq!(both.wakes(), 1, "a keyframe never waits");
        both.drain_and_park();
        apply(&mut core, &audio(10), deadline);
        apply(&mut core, &video(33, false), deadline);
        apply(&mut core, &audio(40), deadline);
        assert_eq!(both.wakes(), 1, "held together");
        assert_eq!(audio_only.wakes(), 0, "audio-only players merge too");
        std::thread::sleep(coalesce * 2);
        apply(&mut core, &video(66, false), deadline);
        assert_eq!(
            (both.wakes(), audio_only.wakes()),
            (2, 1),
            "past the bound everyone's held frames leave, video or not"
        );
    }

    #[test]
    fn zero_coalesce_writes_audio_at_once() {
        let mut core = core(Duration::ZERO);
        let deadline = Instant::now();
        let p = Parked::new(1, MediaFilter::ALL);
        add(&mut core, &p.player, deadline);
        apply(&mut core, &video(0, true), deadline);
        p.drain_and_park();
        apply(&mut core, &audio(10), deadline);
        assert_eq!(p.wakes(), 1);
    }

    #[test]
    fn a_player_skipping_video_still_gets_its_held_audio() {
        let mut core = core(Duration::from_secs(10));
        let deadline = Instant::now();
        let p = Parked::new(1, MediaFilter::ALL);
        add(&mut core, &p.player, deadline);
        apply(&mut core, &video(0, true), deadline);
        p.drain_and_park();
        apply(&mut core, &audio(10), deadline);
        // The player has not started over: a restart makes it wait for a
        // keyframe, so the next inter frame is not queued for it.
        p.player.queue.borrow_mut().restart();
        apply(&mut core, &video(33, false), deadline);
        assert_eq!(p.wakes(), 1, "the held audio is written anyway");
    }

    #[test]
    fn sinks_get_the_start_and_then_every_frame_in_order() {
        use super::sink::{FullPolicy, Sink, SinkItem};
        let mut core = core(Duration::from_secs(10));
        let deadline = Instant::now();
        let early = Rc::new(Sink::new(1, "record", FullPolicy::SkipToKeyframe, 1 << 20));
        core.add_sink(early.clone());
        let seq = Frame::parse_video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]))
            .unwrap();
        apply(&mut core, &StreamEvent::Frame(seq), deadline);
        apply(&mut core, &video(0, true), deadline);
        apply(&mut core, &audio(10), deadline);
        apply(&mut core, &video(33, false), deadline);
        let late = Rc::new(Sink::new(2, "push", FullPolicy::Close, 1 << 20));
        core.add_sink(late.clone());
        apply(&mut core, &video(66, false), deadline);
        apply(&mut core, &StreamEvent::Unpublished, deadline);
        let got = |s: &Sink| {
            let mut q = s.queue.borrow_mut();
            std::iter::from_fn(|| q.pop())
                .map(|i| match i {
                    SinkItem::Frame(f) if f.sequence_header => "seq".to_string(),
                    SinkItem::Frame(f) => {
                        format!("{}{}", if f.is_video() { "v" } else { "a" }, f.timestamp)
                    }
                    SinkItem::Metadata(_) => "meta".into(),
                    SinkItem::Published => "published".into(),
                    SinkItem::Unpublished => "unpublished".into(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            got(&early),
            ["seq", "v0", "a10", "v33", "v66", "unpublished"]
        );
        assert_eq!(
            got(&late),
            ["seq", "v0", "a10", "v33", "v66", "unpublished"],
            "a late sink starts with the codec config and the GOP"
        );
        assert!(core.remove_sink(1) && !core.remove_sink(1));
        assert!(core.has_subscribers(), "the late sink is still there");
    }
}
