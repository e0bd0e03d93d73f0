//! Session drivers: the only code that reads and writes RTMP sockets.
//!
//! A connection starts on the shard that accepted it and runs the session
//! until it asks to publish or play. A player stays there. A publisher whose
//! stream another shard owns is handed to that shard.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use shards::MovedConnection;

use super::{writer, PublisherHandoff, Shard, ShardMsg};
use crate::metrics::{ConnCount, Protocol};
use crate::stream::{MediaFilter, Player, PlayerFormat, Signal, StreamEvent, StreamKey};
use proto::rtmp::conn::Blame;
use proto::rtmp::session::{Output, ServerSession, SessionError, SessionEvent, StreamRequest};

/// Bytes read from a socket at once.
pub const READ_BUF_LEN: usize = 16 * 1024;
/// Bytes a player's reader reads at once. Players send little (acks,
/// pings, commands), and this buffer lives as long as the player, so it is
/// small: it is most of the per-player memory besides the shared media.
pub const PLAYER_READ_BUF_LEN: usize = 1024;
/// How long a write may wait for the peer to make room before the
/// connection is dropped (publishers and the pre-play phase; players have
/// bounded queues instead).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing player gets to receive its last messages.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection as its shard sees it, for idle checks, shutdown and the
/// API's client list.
pub struct ConnState {
    /// Remote address.
    pub peer: SocketAddr,
    /// When it was accepted (or handed to this shard).
    pub accepted: Instant,
    /// Accepted on `internal_port`, which serves only the API.
    pub internal: bool,
    /// What it turned out to be so far.
    pub what: RefCell<ConnWhat>,
    /// Raised to make the connection close.
    pub close: Rc<Signal>,
    /// Last time bytes moved either way (shared with a player's queue,
    /// which writes from the fan-out too).
    pub last_active: Rc<Cell<Instant>>,
}

/// What a connection is, as far as its driver knows.
#[derive(Clone, Debug, Default)]
pub enum ConnWhat {
    /// Its first bytes have not arrived yet.
    #[default]
    Sniffing,
    /// RTMP, before publish or play.
    Rtmp,
    /// HTTP requests (API, HLS, pages).
    Http,
    /// The publisher of a stream.
    Publisher(StreamKey),
    /// A player of a stream, by protocol (`rtmp`, `http-flv`).
    Player(StreamKey, &'static str),
}

/// One open connection under `max_connections`, with its counters. It is
/// `Send`, travels with a handed-off publisher, and releases the slot when
/// dropped.
pub struct ConnSlot {
    /// When the connection was accepted.
    pub accepted: Instant,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        super::release_connection();
    }
}

/// Keeps a connection in its shard's registry while alive.
pub(super) struct Registered {
    shard: Rc<Shard>,
    /// The client id (the API's), unique across shards.
    pub(super) id: u64,
    pub(super) state: Rc<ConnState>,
    /// The connection in the shard's connection counts, by protocol.
    pub(super) count: ConnCount,
}

impl Registered {
    fn new(shard: &Rc<Shard>, peer: SocketAddr, internal: bool) -> Self {
        let id = shard.next_id();
        let state = Rc::new(ConnState {
            peer,
            accepted: Instant::now(),
            internal,
            what: RefCell::new(ConnWhat::Sniffing),
            close: Rc::new(Signal::default()),
            last_active: Rc::new(Cell::new(Instant::now())),
        });
        shard.conns.borrow_mut().insert(id, state.clone());
        if shard.stopping.is_raised() {
            state.close.raise();
        }
        Self {
            shard: shard.clone(),
            id,
            state,
            count: ConnCount::open(shard.metrics.clone()),
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shard.conns.borrow_mut().remove(&self.id);
    }
}

/// What a connection turned out to be.
enum Intent {
    Publish(StreamRequest),
    Play(StreamRequest),
}

/// Entry point for every accepted socket; `internal`: accepted on
/// `internal_port` (HTTP only).
pub async fn run_accepted(shard: Rc<Shard>, mut stream: TcpStream, internal: bool) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    if !super::try_reserve_connection(shard.config.max_connections) {
        log::warn!(
            "refused peer={peer}: max_connections={} reached",
            shard.config.max_connections
        );
        return;
    }
    let mut slot = ConnSlot {
        accepted: Instant::now(),
        bytes_in: 0,
        bytes_out: 0,
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reg = Registered::new(&shard, peer, internal);
    log::debug!("accept peer={peer} shard={}", shard.id());

    // Sniff the protocol from the first bytes (DESIGN.md: one port).
    let mut first = vec![0u8; READ_BUF_LEN];
    let deadline = Instant::now() + shard.config.rtmp.handshake_timeout();
    let n = match read_some(&mut stream, &mut first, &reg.state.close, Some(deadline)).await {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => {
            log::info!("peer={peer} error={e}");
            return;
        }
    };
    // Keep only what was read: this buffer lives as long as the connection.
    first.truncate(n);
    first.shrink_to_fit();
    slot.bytes_in += n as u64;
    match first[0] {
        b'A'..=b'Z' => {
            *reg.state.what.borrow_mut() = ConnWhat::Http;
            super::http_conn::run(shard, stream, first, slot, reg).await;
            return;
        }
        proto::rtmp::handshake::RTMP_VERSION if !internal => {
            *reg.state.what.borrow_mut() = ConnWhat::Rtmp;
        }
        other if internal => {
            log::warn!(
                "peer={peer} error=first byte 0x{other:02x} on internal_port {}, which serves \
                 only the HTTP API",
                shard.config.internal_port
            );
            log_close(peer, None, &slot, None);
            return;
        }
        other => {
            log::warn!(
                "peer={peer} error=unrecognised protocol: first byte 0x{other:02x} is neither \
                 RTMP (0x03) nor an HTTP method"
            );
            log_close(peer, None, &slot, None);
            return;
        }
    }

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ reg.id.rotate_left(32);
    let mut session = ServerSession::new(shard.session_config(), seed, 0);
    let intent = match async {
        session.handle_input(&first)?;
        until_publish_or_play(&shard, &mut stream, &mut session, &mut slot, &reg, deadline).await
    }
    .await
    {
        Ok(Some(intent)) => intent,
        Ok(None) => {
            log_close(peer, None, &slot, None);
            return;
        }
        Err(e) => {
            log::warn!("peer={peer} blame={} error={e}", blame(&*e));
            log_close(peer, None, &slot, None);
            return;
        }
    };
    match intent {
        Intent::Play(req) => run_player(shard, stream, session, req, slot, reg).await,
        Intent::Publish(req) => {
            let key = shard.stream_key(&req);
            let owner = shard.ctx.owner_of(key.as_bytes());
            if owner == shard.id() {
                run_publisher(shard, stream, session, req, key, slot, reg).await;
                return;
            }
            if let Some(b) = session.take_transmit() {
                if write_all(&mut stream, &b, &mut slot).await.is_err() {
                    return;
                }
            }
            reg.count.moved();
            shard.metrics.handoff_sent();
            drop(reg);
            log::debug!(
                "handoff key={key} peer={peer} from={} to={owner}",
                shard.id()
            );
            let handoff = PublisherHandoff {
                session,
                request: req,
                key: key.clone(),
                peer,
                slot,
            };
            match MovedConnection::detach(stream, handoff) {
                Ok(moved) => {
                    if let Err(e) = shard
                        .ctx
                        .send(owner, ShardMsg::Publisher(Box::new(moved)))
                        .await
                    {
                        log::error!("handoff key={key} peer={peer} to shard {owner} failed: {e}");
                    }
                }
                Err(e) => log::error!("handoff key={key} peer={peer}: dup failed: {e}"),
            }
        }
    }
}

/// A publisher that another shard accepted and handed to us, the owner.
pub async fn run_handed_off_publisher(shard: Rc<Shard>, stream: TcpStream, h: PublisherHandoff) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reg = Registered::new(&shard, h.peer, false);
    run_publisher(shard, stream, h.session, h.request, h.key, h.slot, reg).await;
}

/// Who caused a connection's error, for its log line: a session error says
/// (the client, or our own message not fitting); I/O errors and timeouts
/// are the peer's or the network's, `peer` as well.
fn blame(e: &(dyn std::error::Error + 'static)) -> &'static str {
    match e.downcast_ref::<SessionError>().map(SessionError::blame) {
        Some(Blame::Local) => "local",
        _ => "peer",
    }
}

/// Reads one chunk of input, or None when the connection should close
/// (peer closed, close signal raised, or the deadline passed).
pub(super) async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    close: &Signal,
    deadline: Option<Instant>,
) -> std::io::Result<Option<usize>> {
    let read = async { Some(stream.read(buf).await) };
    let closed = async {
        close.wait().await;
        None
    };
    let timeout = async {
        match deadline {
            Some(d) => glommio::timer::sleep(d.saturating_duration_since(Instant::now())).await,
            None => std::future::pending::<()>().await,
        }
        Some(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "handshake_timeout_s passed before publish or play",
        )))
    };
    match futures_lite::future::or(read, futures_lite::future::or(closed, timeout)).await {
        None => Ok(None),
        Some(Ok(0)) => Ok(None),
        Some(Ok(n)) => {
            crate::metrics::with(|m| m.bytes_in(n as u64));
            Ok(Some(n))
        }
        Some(Err(e)) => Err(e),
    }
}

pub(super) async fn write_all(
    stream: &mut TcpStream,
    bytes: &[u8],
    slot: &mut ConnSlot,
) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    slot.bytes_out += bytes.len() as u64;
    crate::metrics::with(|m| m.bytes_out(bytes.len() as u64));
    Ok(())
}

/// Runs the session through handshake, connect and createStream until the
/// client publishes or plays.
async fn until_publish_or_play(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    session: &mut ServerSession,
    slot: &mut ConnSlot,
    reg: &Registered,
    deadline: Instant,
) -> Result<Option<Intent>, Box<dyn std::error::Error>> {
    let mut buf = vec![0u8; READ_BUF_LEN];
    loop {
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(b) => write_all(stream, &b, slot).await?,
                Output::Event(SessionEvent::Connected { app, tc_url }) => log::info!(
                    "connect peer={} app={app} tc_url={} shard={}",
                    reg.state.peer,
                    tc_url.as_deref().unwrap_or("-"),
                    shard.id()
                ),
                Output::Event(SessionEvent::PublishRequested(r)) => {
                    return Ok(Some(Intent::Publish(r)))
                }
                Output::Event(SessionEvent::PlayRequested(r)) => return Ok(Some(Intent::Play(r))),
                Output::Event(_) => {}
            }
        }
        let Some(n) = read_some(stream, &mut buf, &reg.state.close, Some(deadline)).await? else {
            return Ok(None);
        };
        slot.bytes_in += n as u64;
        reg.state.last_active.set(Instant::now());
        session.handle_input(&buf[..n])?;
    }
}

async fn run_publisher(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    mut session: ServerSession,
    req: StreamRequest,
    key: StreamKey,
    mut slot: ConnSlot,
    reg: Registered,
) {
    let peer = reg.state.peer;
    let id = match shard.start_publish(&key, &reg) {
        Ok(id) => id,
        Err(reason) => {
            log::warn!("publish refused key={key} peer={peer} reason={reason}");
            session.reject_publish("NetStream.Publish.BadName", &reason);
            if let Some(b) = session.take_transmit() {
                let _ = write_all(&mut stream, &b, &mut slot).await;
            }
            log_close(peer, Some(&key), &slot, None);
            return;
        }
    };
    session.accept_publish();
    reg.count.classify(Protocol::RtmpPublish);
    *reg.state.what.borrow_mut() = ConnWhat::Publisher(key.clone());
    log::info!(
        "publish key={key} peer={peer} shard={} stream_id={}",
        shard.id(),
        req.stream_id
    );
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut bad_media = 0u64;
    let result: Result<(), Box<dyn std::error::Error>> = async {
        loop {
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Transmit(b) => write_all(&mut stream, &b, &mut slot).await?,
                    Output::Event(SessionEvent::Media(f)) => {
                        shard.publish_event(&key, id, StreamEvent::Frame(f))
                    }
                    Output::Event(SessionEvent::Metadata(m)) => {
                        shard.publish_event(&key, id, StreamEvent::Metadata(m))
                    }
                    Output::Event(SessionEvent::Unpublished) => return Ok(()),
                    Output::Event(SessionEvent::BadMedia(e)) => {
                        bad_media += 1;
                        if bad_media.is_power_of_two() {
                            log::warn!(
                                "bad media key={key} peer={peer} count={bad_media} error={e}"
                            );
                        }
                    }
                    Output::Event(_) => {}
                }
            }
            let Some(n) = read_some(&mut stream, &mut buf, &reg.state.close, None).await? else {
                return Ok(());
            };
            slot.bytes_in += n as u64;
            reg.state.last_active.set(Instant::now());
            session.handle_input(&buf[..n])?;
        }
    }
    .await;
    shard.end_publish(&key, id);
    if let Err(e) = result {
        log::warn!("peer={peer} key={key} blame={} error={e}", blame(&*e));
    } else if shards::stop_requested() {
        session.send_status(
            "status",
            "NetStream.Unpublish.Success",
            "Server shutting down.",
        );
        if let Some(b) = session.take_transmit() {
            let _ = futures_lite::future::or(
                async {
                    let _ = write_all(&mut stream, &b, &mut slot).await;
                },
                glommio::timer::sleep(GOODBYE_TIMEOUT),
            )
            .await;
        }
    }
    log_close(peer, Some(&key), &slot, None);
}

async fn run_player(
    shard: Rc<Shard>,
    stream: TcpStream,
    mut session: ServerSession,
    req: StreamRequest,
    slot: ConnSlot,
    reg: Registered,
) {
    let peer = reg.state.peer;
    let key = shard.stream_key(&req);
    let asked = MediaFilter::from_query(&req.query);
    let mut only = asked;
    // The player's id is its client id, so the API can name it.
    let player = Rc::new(Player::new(
        reg.id,
        peer,
        PlayerFormat::Rtmp {
            stream_id: req.stream_id,
        },
        only,
        shard.config.stream.player_queue_bytes_max,
    ));
    session.accept_play();
    if let Some(b) = session.take_transmit() {
        player.queue.borrow_mut().push_control(&[b]);
    }
    session.release_buffers();
    *reg.state.what.borrow_mut() = ConnWhat::Player(key.clone(), "rtmp");
    reg.count.classify(Protocol::RtmpPlay);
    let cached = shard.attach_player(&key, player.clone());
    log::info!(
        "play key={key} peer={peer} shard={} stream_id={} gop_frames={cached} audio={} video={}",
        shard.id(),
        req.stream_id,
        only.audio,
        only.video
    );

    let conn_closed = reg.state.close.clone();
    let session = std::cell::RefCell::new(session);
    let filter_player = player.clone();
    drive_player(
        &shard,
        stream,
        &key,
        player,
        slot,
        reg,
        |bytes, queue| {
            let mut session = session.borrow_mut();
            session.handle_input(bytes)?;
            while let Some(out) = session.poll_output() {
                match out {
                    Output::Transmit(b) => queue.push_control(&[b]),
                    Output::Event(SessionEvent::PlayStopped) => return Ok(Some("play stopped")),
                    Output::Event(SessionEvent::ReceiveMedia { audio, video }) => {
                        only.audio = audio.unwrap_or(only.audio) && asked.audio;
                        only.video = video.unwrap_or(only.video) && asked.video;
                        filter_player.filter.set(only);
                    }
                    Output::Event(_) => {}
                }
            }
            Ok(None)
        },
        |queue| {
            let mut session = session.borrow_mut();
            session.end_play(if shards::stop_requested() {
                "Server shutting down."
            } else if conn_closed.is_raised() {
                "Closed by the server."
            } else {
                "No publisher within publisher_grace_s."
            });
            if let Some(b) = session.take_transmit() {
                queue.push_control(&[b]);
            }
        },
    )
    .await;
}

/// Input handler of a player connection: takes bytes read, may queue
/// replies; returns Some(reason) to end the play.
pub(super) type InputResult = Result<Option<&'static str>, Box<dyn std::error::Error>>;

/// Serves a player attached to a stream until it, the stream or the shard
/// ends: the writer drains its queue with vectored writes, the reader feeds
/// `on_input`, and at a stream end `goodbye` may queue last words (which get
/// [`GOODBYE_TIMEOUT`] to leave).
#[allow(clippy::too_many_arguments)]
pub(super) async fn drive_player(
    shard: &Rc<Shard>,
    stream: TcpStream,
    key: &StreamKey,
    player: Rc<Player>,
    mut slot: ConnSlot,
    reg: Registered,
    mut on_input: impl FnMut(&[u8], &mut crate::stream::OutQueue) -> InputResult,
    goodbye: impl FnOnce(&mut crate::stream::OutQueue),
) {
    let peer = reg.state.peer;
    let fd = stream.as_raw_fd();
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    // Declared after the socket's halves, so dropped (detaching the fd from
    // the queue) before the socket closes, however this future ends.
    let direct = DirectWrites::attach(&player, fd, &reg.state.last_active);
    let mut bytes_in = 0u64;
    let reader = async {
        let mut buf = vec![0u8; PLAYER_READ_BUF_LEN];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, Box<dyn std::error::Error>>("peer closed");
            }
            bytes_in += n as u64;
            shard.metrics.bytes_in(n as u64);
            reg.state.last_active.set(Instant::now());
            if let Some(reason) = on_input(&buf[..n], &mut player.queue.borrow_mut())? {
                return Ok(reason);
            }
        }
    };
    let writer = async {
        writer::drain(fd, &mut wr, &player.queue, &reg.state.last_active).await?;
        Ok("writer done")
    };
    let closed = async {
        futures_lite::future::or(player.close.wait(), reg.state.close.wait()).await;
        Ok("stream ended")
    };
    let outcome = futures_lite::future::or(closed, futures_lite::future::or(reader, writer)).await;
    let reason = match &outcome {
        Ok(r) => r.to_string(),
        Err(e) => e.to_string(),
    };
    // From here on only this task writes: the goodbye must not interleave
    // with frames written from the fan-out.
    drop(direct);
    if matches!(outcome, Ok("stream ended")) {
        goodbye(&mut player.queue.borrow_mut());
        let _ = futures_lite::future::or(
            async {
                let _ = writer::flush(fd, &mut wr, &player.queue).await;
            },
            glommio::timer::sleep(GOODBYE_TIMEOUT),
        )
        .await;
    }
    shard.detach_player(key, player.id);
    slot.bytes_in += bytes_in;
    slot.bytes_out += player.queue.borrow().written();
    log::debug!("player peer={peer} ended: {reason}");
    let skipped = player.queue.borrow().skipped();
    log_close(peer, Some(key), &slot, Some(skipped));
    drop(reg);
}

/// While alive, the fan-out may write to the player's socket itself
/// ([`crate::stream::OutQueue::flush_or_wake`]).
struct DirectWrites<'a> {
    player: &'a Player,
}

impl<'a> DirectWrites<'a> {
    fn attach(player: &'a Player, fd: RawFd, last_active: &Rc<Cell<Instant>>) -> Self {
        player
            .queue
            .borrow_mut()
            .attach_socket(fd, last_active.clone());
        DirectWrites { player }
    }
}

impl Drop for DirectWrites<'_> {
    fn drop(&mut self) {
        self.player.queue.borrow_mut().detach_socket();
    }
}

pub(super) fn log_close(
    peer: SocketAddr,
    key: Option<&StreamKey>,
    slot: &ConnSlot,
    skipped: Option<u64>,
) {
    let key = key.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
    let skipped = skipped
        .map(|s| format!(" skipped_frames={s}"))
        .unwrap_or_default();
    log::info!(
        "close peer={peer} key={key} bytes_in={} bytes_out={} duration_ms={}{skipped}",
        slot.bytes_in,
        slot.bytes_out,
        slot.accepted.elapsed().as_millis()
    );
}
