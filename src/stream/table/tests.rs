//! An owner table and two replica tables (shards 0, 1 and 2 of 3) driven
//! through a small in-test mesh: no sockets, no clock. The mesh carries out
//! each call's [`Actions`] the way `server::Shard::execute` does: signals
//! raised, ready players written to (here: drained and decoded), then each
//! message posted, media with a per-pair lane capacity (a full lane drops
//! the message and tells the sender, `media_lost`), control in order.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proto::rtmp::chunk::{ChunkDecoder, ChunkLimits};
use proto::rtmp::message::msg_type;

use super::*;
use crate::error::Blame;
use crate::stream::queue::tests::CountWakes;
use crate::stream::tests::{audio, video};
use crate::stream::{MediaFilter, PlayerFormat};
use proto::media::Frame;

const SHARDS: usize = 3;
const OWNER: usize = 0;
const GRACE: Duration = Duration::from_secs(10);
/// Messages a media lane holds in flight unless a test says otherwise.
const LANE: usize = 64;
/// What a player's queue may hold unless a test says otherwise.
const QUEUE: usize = 1 << 20;
const MS: Duration = Duration::from_millis(1);

fn key() -> StreamKey {
    "default/live/t".into()
}

/// Every key is owned by shard 0.
fn owner_is_0(_: &[u8], _: usize) -> usize {
    OWNER
}

/// An AVC sequence header: a decoder configuration record with one
/// (stand-in) SPS and PPS.
fn video_seq(ts: u32) -> StreamEvent {
    let body = [
        0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68,
        0xeb,
    ];
    StreamEvent::Frame(Frame::parse_video(ts, Bytes::copy_from_slice(&body)).unwrap())
}

/// An AAC sequence header (LC, 44.1 kHz, stereo).
fn audio_seq(ts: u32) -> StreamEvent {
    let body = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]);
    StreamEvent::Frame(Frame::parse_audio(ts, body).unwrap())
}

/// The start of a publish: both codec configs, then a keyframe at `ts`.
fn start_of_stream(ts: u32) -> [StreamEvent; 3] {
    [video_seq(ts), audio_seq(ts), video(ts, true)]
}

/// What a player received, decoded from the bytes written to it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    VideoConfig(u32),
    AudioConfig(u32),
    Key(u32),
    Inter(u32),
    Audio(u32),
    Status(String),
    Other(u8),
}
use Seen::*;

impl Seen {
    fn decode(type_id: u8, ts: u32, payload: Bytes) -> Seen {
        match type_id {
            msg_type::VIDEO => match Frame::parse_video(ts, payload).unwrap() {
                f if f.sequence_header => VideoConfig(ts),
                f if f.keyframe => Key(ts),
                _ => Inter(ts),
            },
            msg_type::AUDIO => match Frame::parse_audio(ts, payload).unwrap() {
                f if f.sequence_header => AudioConfig(ts),
                _ => Audio(ts),
            },
            msg_type::COMMAND_AMF0 => Status(status_code(&payload)),
            other => Other(other),
        }
    }

    fn is_frame(&self) -> bool {
        matches!(self, Key(_) | Inter(_) | Audio(_))
    }

    fn is_media(&self) -> bool {
        self.is_frame() || matches!(self, VideoConfig(_) | AudioConfig(_))
    }
}

/// The `code` of an `onStatus` body (AMF0: the key, a string marker, a
/// 16-bit length, the text).
fn status_code(body: &[u8]) -> String {
    let at = body
        .windows(5)
        .position(|w| w == b"code\x02")
        .expect("onStatus has a code")
        + 5;
    let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
    String::from_utf8(body[at + 2..at + 2 + len].to_vec()).unwrap()
}

const PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
const UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";

/// An RTMP player and its writer: parked on its queue until the table
/// reports it ready or its queue wakes it; then everything queued is
/// "written" and decoded. A stalled writer writes nothing.
struct Viewer {
    player: Rc<Player>,
    shard: usize,
    wakes: Arc<CountWakes>,
    wakes_seen: Cell<usize>,
    stalled: Cell<bool>,
    decoder: RefCell<(ChunkDecoder, BytesMut)>,
    seen: RefCell<Vec<Seen>>,
}

impl Viewer {
    /// Writes what is queued, decodes it and parks the writer again.
    fn write(&self) {
        if self.stalled.get() {
            return;
        }
        let mut q = self.player.queue.borrow_mut();
        let (decoder, buf) = &mut *self.decoder.borrow_mut();
        while let Some(front) = q.front().cloned() {
            buf.extend_from_slice(&front);
            q.advance(front.len());
        }
        while let Some(m) = decoder.decode(buf).expect("valid RTMP chunks") {
            let seen = Seen::decode(m.type_id, m.timestamp, m.payload);
            self.seen.borrow_mut().push(seen);
        }
        self.wakes.park(&mut q);
        self.wakes_seen.set(self.wakes.get());
    }

    fn woken(&self) -> bool {
        self.wakes.get() != self.wakes_seen.get()
    }

    fn stall(&self) {
        self.stalled.set(true);
    }

    fn unstall(&self) {
        self.stalled.set(false);
        self.write();
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.borrow().clone()
    }

    /// Audio and video, codec configs included.
    fn media(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_media).collect()
    }

    /// Audio and video frames, without codec configs.
    fn frames(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(Seen::is_frame).collect()
    }

    fn skipped(&self) -> u64 {
        self.player.queue.borrow().skipped()
    }
}

/// Three tables and what travels between them.
struct Mesh {
    t0: Instant,
    now: Instant,
    tables: Vec<StreamTable>,
    /// Messages posted and not yet delivered: (from, to, message), in
    /// posting order.
    wire: VecDeque<(usize, usize, PeerMsg)>,
    /// Media messages each lane (from, to) holds in flight.
    lane_capacity: [[usize; SHARDS]; SHARDS],
    /// Media messages dropped on a full lane (from, to).
    dropped: [[usize; SHARDS]; SHARDS],
    /// Media messages delivered (from, to).
    delivered: [[usize; SHARDS]; SHARDS],
    /// Control messages posted: (from, to, message), in order.
    control: Vec<(usize, usize, PeerMsg)>,
    /// Signals the tables asked to raise.
    raised: Vec<Rc<Signal>>,
    /// Pulls the tables asked to start: (shard, key, stop).
    pulls: Vec<(usize, StreamKey, Rc<Signal>)>,
    /// Pulls the tables refused (`TableConfig::pulls_max`).
    pulls_refused: u64,
    viewers: Vec<Rc<Viewer>>,
    next_id: u64,
}

impl Mesh {
    fn new(republish: Republish) -> Self {
        Self::with_pulls(republish, None)
    }

    /// An edge's tables: demand starts pulls, stopped after `keep`.
    fn edge(keep: Duration) -> Self {
        Self::with_pulls(Republish::Replace, Some(keep))
    }

    fn with_pulls(republish: Republish, keep_pulling: Option<Duration>) -> Self {
        let tables = (0..SHARDS)
            .map(|shard| {
                StreamTable::new(TableConfig {
                    shard,
                    shards: SHARDS,
                    owner_of: owner_is_0,
                    gop: GopLimits {
                        enabled: true,
                        bytes_max: 1 << 20,
                        frames_max: 1000,
                    },
                    // The decoder's initial chunk size: no Set Chunk Size
                    // needs to be read.
                    chunk_size: 128,
                    hls: HlsConfig::default(),
                    coalesce: Coalesce::default(),
                    republish,
                    publisher_grace: GRACE,
                    keep_pulling,
                    pulls_max: PULLS_MAX,
                    containers: Default::default(),
                })
            })
            .collect();
        let t0 = Instant::now();
        Mesh {
            t0,
            now: t0,
            tables,
            wire: VecDeque::new(),
            lane_capacity: [[LANE; SHARDS]; SHARDS],
            dropped: Default::default(),
            delivered: Default::default(),
            control: Vec::new(),
            raised: Vec::new(),
            pulls: Vec::new(),
            pulls_refused: 0,
            viewers: Vec::new(),
            next_id: 1,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn unix_ms(&self) -> u64 {
        1_700_000_000_000 + (self.now - self.t0).as_millis() as u64
    }

    /// Runs `f` on shard `shard`'s table and carries out its actions,
    /// leaving the messages it posts in flight.
    fn call<T>(&mut self, shard: usize, f: impl FnOnce(&mut StreamTable, Instant) -> T) -> T {
        let out = f(&mut self.tables[shard], self.now);
        self.execute(shard);
        out
    }

    /// [`Mesh::call`], then delivers everything in flight.
    fn step<T>(&mut self, shard: usize, f: impl FnOnce(&mut StreamTable, Instant) -> T) -> T {
        let out = self.call(shard, f);
        self.deliver();
        out
    }

    /// Delivers the messages in flight, in order, and whatever they cause.
    fn deliver(&mut self) {
        while let Some((from, to, msg)) = self.wire.pop_front() {
            if msg.lane() == Lane::Media {
                self.delivered[from][to] += 1;
            }
            let unix_ms = self.unix_ms();
            self.call(to, |t, now| t.on_peer(from, msg, now, unix_ms));
        }
    }

    fn execute(&mut self, shard: usize) {
        let actions = self.tables[shard].take_actions();
        for s in actions.raise {
            s.raise();
            self.raised.push(s);
        }
        for (key, stop) in actions.pull {
            self.pulls.push((shard, key, stop));
        }
        self.pulls_refused += actions.pulls_refused;
        for p in &actions.ready {
            self.viewer(p.id).write();
        }
        for v in &self.viewers {
            if v.woken() {
                v.write();
            }
        }
        for (to, msg) in actions.send {
            match msg.lane() {
                Lane::Media => {
                    let in_flight = self
                        .wire
                        .iter()
                        .filter(|(f, t, m)| (*f, *t) == (shard, to) && m.lane() == Lane::Media)
                        .count();
                    if in_flight >= self.lane_capacity[shard][to] {
                        self.dropped[shard][to] += 1;
                        self.tables[shard].media_lost(msg.key(), to);
                    } else {
                        self.wire.push_back((shard, to, msg));
                    }
                }
                Lane::Control => {
                    self.control.push((shard, to, msg.clone()));
                    self.wire.push_back((shard, to, msg));
                }
            }
        }
    }

    fn viewer(&self, id: u64) -> &Rc<Viewer> {
        self.viewers
            .iter()
            .find(|v| v.player.id == id)
            .expect("a player of the mesh")
    }

    /// A new RTMP player on `shard`, attached and delivered.
    fn attach(&mut self, shard: usize, queue_bytes_max: usize) -> Rc<Viewer> {
        let v = self.new_viewer(shard, queue_bytes_max);
        let player = v.player.clone();
        self.step(shard, |t, now| t.attach_player(&key(), player, now));
        v
    }

    fn new_viewer(&mut self, shard: usize, queue_bytes_max: usize) -> Rc<Viewer> {
        let id = self.next_id;
        self.next_id += 1;
        let player = Rc::new(Player::new(
            id,
            "127.0.0.1:2".parse().unwrap(),
            PlayerFormat::Rtmp { stream_id: 1 },
            MediaFilter::ALL,
            queue_bytes_max,
        ));
        let v = Rc::new(Viewer {
            player,
            shard,
            wakes: Arc::default(),
            wakes_seen: Cell::new(0),
            stalled: Cell::new(false),
            decoder: RefCell::new((ChunkDecoder::new(ChunkLimits::default()), BytesMut::new())),
            seen: RefCell::new(Vec::new()),
        });
        v.write();
        self.viewers.push(v.clone());
        v
    }

    fn detach(&mut self, v: &Viewer) {
        self.step(v.shard, |t, now| t.detach_player(&key(), v.player.id, now));
    }

    /// Publisher `id` asks the owner to publish; returns its close signal.
    fn publish(&mut self, id: u64) -> Result<Rc<Signal>, Refusal> {
        self.publish_from(
            id,
            Source::Client {
                conn_id: id,
                peer: "127.0.0.1:1".parse().unwrap(),
                protocol: "rtmp",
            },
        )
    }

    /// A pull's publish (`id`) from an origin.
    fn publish_pull(&mut self, id: u64) -> Result<Rc<Signal>, Refusal> {
        self.publish_from(
            id,
            Source::Pull {
                origin: "127.0.0.2:1935".parse().unwrap(),
            },
        )
    }

    fn publish_from(&mut self, id: u64, source: Source) -> Result<Rc<Signal>, Refusal> {
        let close = Rc::new(Signal::default());
        let slot = PublisherSlot {
            id,
            close: close.clone(),
            source,
            meter: IngestMeter::new(self.now),
        };
        self.step(OWNER, |t, now| t.start_publish(&key(), slot, now))
            .map(|()| close)
    }

    /// Publisher `id` sends `events`; returns whether each was taken.
    fn send(&mut self, id: u64, events: impl IntoIterator<Item = StreamEvent>) -> Vec<bool> {
        let mut taken = Vec::new();
        for ev in events {
            let unix_ms = self.unix_ms();
            taken.push(self.step(OWNER, |t, now| {
                t.publish_event(&key(), id, ev, now, unix_ms)
            }));
        }
        taken
    }

    /// [`Mesh::send`] by the current publisher: every event is taken.
    fn feed(&mut self, id: u64, events: impl IntoIterator<Item = StreamEvent>) {
        let taken = self.send(id, events);
        assert!(taken.iter().all(|&t| t), "the publisher's events are taken");
    }

    fn unpublish(&mut self, id: u64) {
        self.step(OWNER, |t, now| t.end_publish(&key(), id, now));
    }

    fn tick_all(&mut self) {
        for shard in 0..SHARDS {
            self.step(shard, |t, now| t.tick(now));
        }
    }

    /// The owner's links to its replicas: (shard, lagging).
    fn replicas(&self) -> Vec<(usize, bool)> {
        match &self.tables[OWNER].get(&key()).expect("owned entry").role {
            Role::Owner { replicas, .. } => replicas.iter().map(|r| (r.shard, r.lagging)).collect(),
            Role::Replica { .. } => panic!("the owner holds a replica"),
        }
    }

    /// Control messages posted from `from`, by kind.
    fn control_from(&self, from: usize) -> Vec<&'static str> {
        self.control
            .iter()
            .filter(|(f, _, _)| *f == from)
            .map(|(_, _, m)| match m {
                PeerMsg::Subscribe(_) => "subscribe",
                PeerMsg::Unsubscribe(_) => "unsubscribe",
                PeerMsg::WantRendition(..) => "want-rendition",
                PeerMsg::Event(..) => "event",
            })
            .collect()
    }
}

/// Asserts timestamps never go backwards.
fn assert_monotonic(seen: &[Seen]) {
    let ts: Vec<u32> = seen
        .iter()
        .filter_map(|s| match s {
            VideoConfig(t) | AudioConfig(t) | Key(t) | Inter(t) | Audio(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "backwards: {ts:?}");
}

#[test]
fn fan_out_reaches_players_on_the_owner_and_both_replicas_in_order() {
    let mut mesh = Mesh::new(Republish::Replace);
    let early_owner = mesh.attach(OWNER, QUEUE);
    let early_replica = mesh.attach(1, QUEUE);
    mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.feed(1, [audio(20), video(33, false), audio(43)]);
    // Late joiners, mid-GOP: their start is the GOP cache.
    let late_owner = mesh.attach(OWNER, QUEUE);
    let late_replica = mesh.attach(2, QUEUE);
    mesh.feed(1, [video(66, false), video(100, true), audio(110)]);

    let expected = vec![
        VideoConfig(0),
        AudioConfig(0),
        Key(0),
        Audio(20),
        Inter(33),
        Audio(43),
        Inter(66),
        Key(100),
        Audio(110),
    ];
    for (name, v) in [
        ("early owner", &early_owner),
        ("early replica 1", &early_replica),
        ("late owner", &late_owner),
        ("late replica 2", &late_replica),
    ] {
        assert_eq!(v.media(), expected, "{name}");
    }
    assert_eq!(mesh.replicas(), vec![(1, false), (2, false)]);
    assert_eq!(mesh.dropped, [[0; SHARDS]; SHARDS]);
}

#[test]
fn republish_replaces_notifies_every_shard_and_rebases_timestamps() {
    let mut mesh = Mesh::new(Republish::Replace);
    let viewers: Vec<_> = (0..SHARDS).map(|s| mesh.attach(s, QUEUE)).collect();
    let first = mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.feed(1, [audio(20), video(33, false)]);
    assert!(mesh.raised.is_empty());

    let second = mesh.publish(2).unwrap();
    assert!(first.is_raised(), "the replaced publisher is closed");
    assert!(!second.is_raised());
    assert_eq!(mesh.raised.len(), 1);
    assert!(Rc::ptr_eq(&mesh.raised[0], &first));
    assert_eq!(mesh.tables[OWNER].publisher(&key()).unwrap().id, 2);
    assert_eq!(
        mesh.send(1, [video(66, false)]),
        [false],
        "the replaced publisher's frames are ignored"
    );
    // The new publisher's clock starts anywhere: its first frame goes out
    // REPUBLISH_GAP_MS after the last one players saw.
    mesh.feed(2, start_of_stream(5000));
    mesh.feed(2, [video(5033, false)]);

    let next = 33 + REPUBLISH_GAP_MS;
    let expected = vec![
        Status(PUBLISH_NOTIFY.into()),
        VideoConfig(0),
        AudioConfig(0),
        Key(0),
        Audio(20),
        Inter(33),
        Status(PUBLISH_NOTIFY.into()),
        VideoConfig(next),
        AudioConfig(next),
        Key(next),
        Inter(next + 33),
    ];
    for v in &viewers {
        assert_eq!(v.seen(), expected, "player on shard {}", v.shard);
        assert_monotonic(&v.seen());
    }
}

#[test]
fn republish_reject_refuses_the_second_publisher() {
    let mut mesh = Mesh::new(Republish::Reject);
    let v = mesh.attach(1, QUEUE);
    let first = mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));

    let refusal = mesh.publish(2).unwrap_err();
    assert_eq!(refusal.blame, Blame::Stream);
    assert!(!first.is_raised());
    assert!(mesh.raised.is_empty());
    assert_eq!(mesh.tables[OWNER].publisher(&key()).unwrap().id, 1);
    assert_eq!(mesh.send(2, [video(33, false)]), [false]);
    mesh.feed(1, [video(33, false)]);
    assert_eq!(
        v.seen(),
        vec![
            Status(PUBLISH_NOTIFY.into()),
            VideoConfig(0),
            AudioConfig(0),
            Key(0),
            Inter(33)
        ],
        "one publish, no second notify"
    );
}

#[test]
fn a_replica_behind_a_full_lane_resyncs_at_the_next_keyframe() {
    let mut mesh = Mesh::new(Republish::Replace);
    let steady = mesh.attach(1, QUEUE);
    let lagging = mesh.attach(2, QUEUE);
    mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.feed(1, [video(33, false)]);
    let before = lagging.seen();

    mesh.lane_capacity[OWNER][2] = 0;
    mesh.feed(1, [video(66, false), video(100, false)]);
    assert_eq!(
        mesh.dropped[OWNER][2], 1,
        "one event is lost; the lagging replica is sent nothing more"
    );
    assert_eq!(mesh.replicas(), vec![(1, false), (2, true)]);
    assert_eq!(
        lagging.seen(),
        before,
        "nothing reaches the lagging replica"
    );

    // The lane has room again, but an inter frame is no place to resync.
    mesh.lane_capacity[OWNER][2] = LANE;
    let delivered = mesh.delivered[OWNER][2];
    mesh.feed(1, [video(133, false)]);
    assert_eq!(mesh.delivered[OWNER][2], delivered, "nothing sent to it");
    assert_eq!(lagging.seen(), before);

    mesh.feed(1, [video(166, true), video(200, false)]);
    assert_eq!(mesh.replicas(), vec![(1, false), (2, false)]);
    assert_eq!(
        lagging.frames(),
        vec![Key(0), Inter(33), Key(166), Inter(200)],
        "resumes at the keyframe"
    );
    let resumed = &lagging.seen()[before.len()..];
    assert_eq!(
        resumed.iter().find(|s| s.is_frame()),
        Some(&Key(166)),
        "only codec configs come before the keyframe: {resumed:?}"
    );
    assert_monotonic(&lagging.seen());

    assert_eq!(mesh.dropped[OWNER][1], 0);
    assert_eq!(
        steady.frames(),
        vec![
            Key(0),
            Inter(33),
            Inter(66),
            Inter(100),
            Inter(133),
            Key(166),
            Inter(200)
        ],
        "the other replica is undisturbed"
    );
}

#[test]
fn a_slow_player_skips_to_the_next_keyframe() {
    // An RTMP video message here is 23 bytes: two fit, a third does not.
    let mut mesh = Mesh::new(Republish::Replace);
    let fast = mesh.attach(1, QUEUE);
    let slow = mesh.attach(1, 50);
    mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    slow.stall();

    let mut skipped = Vec::new();
    for ev in [
        video(33, false),
        video(66, false),
        video(100, false),
        audio(110),
        video(133, false),
    ] {
        mesh.feed(1, [ev]);
        skipped.push(slow.skipped());
    }
    assert_eq!(skipped, [0, 0, 1, 2, 3], "skips counted as they happen");
    mesh.step(1, |t, now| t.tick(now));
    assert_eq!(slow.player.skips_reported.get(), 3, "the tick reports them");

    slow.unstall();
    mesh.feed(1, [video(166, false)]);
    assert_eq!(slow.skipped(), 4, "still skipping until a keyframe");
    mesh.feed(1, [video(200, true), video(233, false)]);
    assert_eq!(slow.skipped(), 4, "resumed");
    assert_eq!(
        slow.frames(),
        vec![Key(0), Inter(33), Inter(66), Key(200), Inter(233)]
    );
    assert_eq!(fast.skipped(), 0);
    assert_eq!(
        fast.frames(),
        vec![
            Key(0),
            Inter(33),
            Inter(66),
            Inter(100),
            Audio(110),
            Inter(133),
            Inter(166),
            Key(200),
            Inter(233)
        ]
    );
}

/// A publish with a player on each shard, then an unpublish.
fn unpublished_with_players() -> (Mesh, Vec<Rc<Viewer>>) {
    let mut mesh = Mesh::new(Republish::Replace);
    let viewers: Vec<_> = (0..SHARDS).map(|s| mesh.attach(s, QUEUE)).collect();
    mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.unpublish(1);
    for v in &viewers {
        assert_eq!(
            v.seen().last(),
            Some(&Status(UNPUBLISH_NOTIFY.into())),
            "player on shard {}",
            v.shard
        );
    }
    (mesh, viewers)
}

fn closed(viewers: &[Rc<Viewer>]) -> Vec<bool> {
    viewers.iter().map(|v| v.player.close.is_raised()).collect()
}

#[test]
fn players_are_closed_when_the_grace_runs_out() {
    let (mut mesh, viewers) = unpublished_with_players();
    mesh.advance(GRACE - MS);
    mesh.tick_all();
    assert_eq!(closed(&viewers), [false; SHARDS], "still within the grace");
    mesh.advance(MS);
    mesh.tick_all();
    assert_eq!(closed(&viewers), [true; SHARDS], "the grace ran out");
}

#[test]
fn a_republish_within_the_grace_keeps_the_players() {
    let (mut mesh, viewers) = unpublished_with_players();
    mesh.advance(GRACE / 2);
    mesh.publish(2).unwrap();
    mesh.feed(2, start_of_stream(0));
    mesh.advance(GRACE);
    mesh.tick_all();
    assert_eq!(closed(&viewers), [false; SHARDS]);
    let next = REPUBLISH_GAP_MS;
    for v in &viewers {
        assert_eq!(
            v.seen()[4..],
            [
                Status(UNPUBLISH_NOTIFY.into()),
                Status(PUBLISH_NOTIFY.into()),
                VideoConfig(next),
                AudioConfig(next),
                Key(next)
            ],
            "player on shard {}",
            v.shard
        );
    }
}

#[test]
fn a_replica_lingers_then_unsubscribes_before_it_subscribes_again() {
    let mut mesh = Mesh::new(Republish::Replace);
    let first = mesh.attach(1, QUEUE);
    mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.detach(&first);

    mesh.advance(REPLICA_LINGER - MS);
    mesh.tick_all();
    assert_eq!(mesh.control_from(1), ["subscribe"], "still lingering");
    let delivered = mesh.delivered[OWNER][1];
    mesh.feed(1, [video(33, false)]);
    assert_eq!(
        mesh.delivered[OWNER][1],
        delivered + 1,
        "a lingering replica is fed"
    );

    mesh.advance(MS);
    mesh.call(1, |t, now| t.tick(now));
    let again = mesh.new_viewer(1, QUEUE);
    let player = again.player.clone();
    mesh.call(1, |t, now| t.attach_player(&key(), player, now));
    assert_eq!(
        mesh.control_from(1),
        ["subscribe", "unsubscribe", "subscribe"]
    );
    mesh.deliver();
    assert_eq!(mesh.replicas(), vec![(1, false)]);

    mesh.feed(1, [video(66, false)]);
    assert_eq!(
        again.media(),
        vec![VideoConfig(0), AudioConfig(0), Key(0), Inter(33), Inter(66)],
        "the replica is fed again"
    );
    assert_eq!(first.frames(), [Key(0)], "the detached player got no more");
}

const KEEP: Duration = Duration::from_secs(10);
/// Pulls a shard of the test mesh runs at once.
const PULLS_MAX: usize = 2;

#[test]
fn a_shard_runs_at_most_pulls_max_pulls() {
    let mut mesh = Mesh::edge(KEEP);
    let keys: Vec<StreamKey> = ["a", "b", "c"]
        .iter()
        .map(|n| format!("default/live/{n}").into())
        .collect();
    for k in &keys {
        mesh.step(OWNER, |t, now| t.follow(k, now));
    }
    assert_eq!(mesh.pulls.len(), PULLS_MAX, "two pulls run");
    assert_eq!(mesh.pulls_refused, 1, "the third is refused");
    // Asking again is refused again, and counted.
    mesh.step(OWNER, |t, now| t.follow(&keys[2], now));
    assert_eq!(mesh.pulls_refused, 2);
    // A pull ends: the next demand gets one.
    mesh.step(OWNER, |t, now| t.pull_ended(&keys[0], true, now));
    mesh.step(OWNER, |t, now| t.follow(&keys[2], now));
    assert_eq!(mesh.pulls.len(), 3);
    assert_eq!(mesh.pulls[2].1, keys[2]);
    assert_eq!(mesh.pulls_refused, 2);
}

#[test]
fn an_edge_starts_one_pull_for_players_on_every_shard() {
    let mut mesh = Mesh::edge(KEEP);
    let viewers: Vec<_> = [1, 2, 0, 1]
        .iter()
        .map(|&s| mesh.attach(s, QUEUE))
        .collect();
    assert_eq!(
        mesh.pulls.len(),
        1,
        "one pull, however many players and shards"
    );
    assert_eq!(mesh.pulls[0].0, OWNER, "on the owner");
    assert_eq!(mesh.pulls[0].1, key());
    // The pull publishes like a client: every player gets the stream.
    mesh.publish_pull(7).unwrap();
    mesh.feed(7, start_of_stream(0));
    for v in &viewers {
        assert_eq!(
            v.media(),
            [VideoConfig(0), AudioConfig(0), Key(0)],
            "shard {}",
            v.shard
        );
    }
    // An HLS request (a follow) on the owner makes no second pull.
    mesh.step(OWNER, |t, now| t.follow(&key(), now));
    assert_eq!(mesh.pulls.len(), 1);
}

#[test]
fn an_origin_never_pulls() {
    let mut mesh = Mesh::new(Republish::Replace);
    mesh.attach(1, QUEUE);
    mesh.attach(0, QUEUE);
    mesh.step(OWNER, |t, now| t.follow(&key(), now));
    assert!(mesh.pulls.is_empty());
}

#[test]
fn a_follow_alone_starts_the_pull_and_holds_it_for_keep_pulling() {
    let mut mesh = Mesh::edge(KEEP);
    // An HLS request on a replica shard: it subscribes, the owner pulls.
    mesh.step(2, |t, now| t.follow(&key(), now));
    assert_eq!(mesh.pulls.len(), 1);
    let stop = mesh.pulls[0].2.clone();
    // The replica lingers REPLICA_LINGER after its last request, then
    // unsubscribes; the pull goes on keep_pulling after that.
    mesh.advance(REPLICA_LINGER);
    mesh.tick_all();
    assert!(mesh.replicas().is_empty(), "the replica unsubscribed");
    mesh.advance(KEEP - MS);
    mesh.tick_all();
    assert!(!stop.is_raised(), "within keep_pulling");
    mesh.advance(MS);
    mesh.tick_all();
    assert!(stop.is_raised(), "keep_pulling passed without demand");
    mesh.step(OWNER, |t, now| t.pull_ended(&key(), false, now));
    mesh.tick_all();
    assert!(
        mesh.tables[OWNER].get(&key()).is_none(),
        "the idle entry went"
    );
}

#[test]
fn a_player_within_keep_pulling_keeps_the_pull() {
    let mut mesh = Mesh::edge(KEEP);
    let v = mesh.attach(OWNER, QUEUE);
    let stop = mesh.pulls[0].2.clone();
    mesh.detach(&v);
    mesh.advance(KEEP / 2);
    mesh.tick_all();
    // The player reloads: same pull, and its demand counts from now.
    mesh.attach(OWNER, QUEUE);
    mesh.advance(KEEP * 2);
    mesh.tick_all();
    assert!(!stop.is_raised());
    assert_eq!(mesh.pulls.len(), 1);
}

#[test]
fn keep_pulling_counts_from_when_the_last_player_left() {
    let mut mesh = Mesh::edge(KEEP);
    let v = mesh.attach(OWNER, QUEUE);
    let stop = mesh.pulls[0].2.clone();
    mesh.advance(KEEP);
    mesh.tick_all();
    // The player leaves between ticks, long after the last one.
    mesh.advance(KEEP / 2);
    mesh.detach(&v);
    mesh.advance(KEEP - MS);
    mesh.tick_all();
    assert!(!stop.is_raised(), "held keep_pulling from the detach");
    mesh.advance(MS);
    mesh.tick_all();
    assert!(stop.is_raised());
}

#[test]
fn players_stay_through_retries_and_end_when_the_pull_gives_up() {
    let mut mesh = Mesh::edge(KEEP);
    let viewers: Vec<_> = (0..SHARDS).map(|s| mesh.attach(s, QUEUE)).collect();
    mesh.publish_pull(7).unwrap();
    mesh.feed(7, start_of_stream(0));
    // The upstream failed: the pull's publish ends while it retries.
    mesh.unpublish(7);
    mesh.advance(GRACE / 2);
    mesh.tick_all();
    assert_eq!(
        closed(&viewers),
        [false; SHARDS],
        "players wait through retries"
    );
    // A retry reached an origin: the players go on.
    mesh.publish_pull(8).unwrap();
    mesh.feed(8, start_of_stream(0));
    for v in &viewers {
        assert!(
            v.seen().contains(&Status(PUBLISH_NOTIFY.into())),
            "shard {}",
            v.shard
        );
    }
    mesh.unpublish(8);
    mesh.step(OWNER, |t, now| t.pull_ended(&key(), true, now));
    mesh.tick_all();
    assert_eq!(
        closed(&viewers),
        [true; SHARDS],
        "told the stream ended, on every shard"
    );
    assert_eq!(mesh.pulls.len(), 1, "no new pull after giving up");
}

#[test]
fn a_pull_that_ended_while_wanted_starts_again() {
    let mut mesh = Mesh::edge(KEEP);
    mesh.attach(1, QUEUE);
    assert_eq!(mesh.pulls.len(), 1);
    mesh.step(OWNER, |t, now| t.pull_ended(&key(), false, now));
    assert_eq!(mesh.pulls.len(), 2, "a replica still wants the stream");
}

#[test]
fn a_pull_never_replaces_a_client_and_a_client_publish_is_not_pulled() {
    let mut mesh = Mesh::edge(KEEP);
    let client = mesh.publish(1).unwrap();
    mesh.feed(1, start_of_stream(0));
    mesh.attach(1, QUEUE);
    mesh.attach(OWNER, QUEUE);
    assert!(mesh.pulls.is_empty(), "a client publishes here");
    let refused = mesh.publish_pull(7).unwrap_err();
    assert_eq!(refused.blame, Blame::Stream);
    assert!(!client.is_raised());
}
