//! Edge mode: the one upstream pull of a stream per node. The stream's
//! owner shard runs it (the table asks for it, `Actions::pull`, on the
//! first demand from any shard and any protocol); it plays the stream from
//! an origin over RTMP with `proto::rtmp::client` and feeds what arrives to
//! the table as a local publisher would (`Source::Pull`), so the GOP
//! cache, replicas and HLS work unchanged. Which origin and when to retry
//! is `crate::edge`'s; the table stops the pull after `edge.keep_pulling_s`
//! without demand.
//!
//! The pull asks the origin not to wait for a stream it does not have
//! (query `edge=<node>`): an origin answers `NetStream.Play.StreamNotFound`
//! at once, so the pull moves to the next origin. It carries a `play`
//! signature of `auth.secret` when one is set, so an origin with
//! `auth.play = "signed"` admits edges that share the secret.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use proto::rtmp::client::{
    ClientConfig, ClientError, ClientEvent, ClientLimits, ClientSession, Output, StreamMode,
};

use super::Shard;
use crate::cluster::{Lookup, Moved};
use crate::config::{Config, Mode, OriginChoice};
use crate::edge::{origin_order, Attempts, RetryPolicy, Step};
use crate::error::{ConnError, Deadline};
use crate::net::dial::dial;
use crate::net::io::{read_some, READ_BUF_LEN};
use crate::stream::table::{PublisherSlot, PullState, Source};
use crate::stream::{IngestMeter, Signal, StreamEvent, StreamKey};

/// The query parameter that marks a play as an edge's pull; its value is
/// the edge's node id. A node that does not have the stream answers it
/// within [`PULL_PROBE_WAIT`] (an origin) or `edge.pull_wait_ms` (an edge,
/// which pulls it first: a tree).
pub const EDGE_PARAM: &str = "edge";
/// How long an origin looks for a stream an edge asks for before it
/// answers `StreamNotFound`: enough for a shard that had no copy of the
/// stream to get its owner's snapshot.
pub const PULL_PROBE_WAIT: Duration = Duration::from_millis(500);
/// An upstream that sends nothing for this long has failed (a live stream
/// sends several messages a second; the origin's own pings are more
/// frequent than this).
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the signature of a pull is valid (`auth.secret`): a pull is
/// signed anew at every attempt, so it need only outlive the play.
pub const PULL_SIGNATURE_TTL_S: u64 = 60;
/// The buffer length a pull announces to its origin (ms).
pub const UPSTREAM_BUFFER_MS: u32 = 1000;

/// An edge's origins and policy, shared by the pulls of one shard.
pub struct Edge {
    /// `edge.origins`, resolved at startup.
    pub(super) origins: Vec<SocketAddr>,
    pub(super) choice: OriginChoice,
    pub(super) policy: RetryPolicy,
    pub(super) connect_timeout: Duration,
    /// The address pulls connect from (`listen`, unless unspecified).
    pub(super) local: Option<IpAddr>,
    /// This node as origins' logs name it.
    pub(super) node_id: String,
    /// The next round-robin start.
    turn: Cell<usize>,
    /// The pulls running on this shard, by key: where the registry says
    /// their stream went.
    follows: RefCell<HashMap<String, Rc<Follow>>>,
}

/// Where a pull plays from, and where the registry announced its stream
/// since (`cluster::Moved`): the pull follows at once.
#[derive(Default)]
pub(super) struct Follow {
    /// The origin the pull plays from or is trying (None between
    /// attempts: an announcement of the origin that just failed is
    /// followed).
    at: Cell<Option<SocketAddr>>,
    /// An origin announced since, not yet followed.
    to: Cell<Option<SocketAddr>>,
    /// Raised when `to` is set; replaced when it is taken.
    wake: RefCell<Rc<Signal>>,
}

impl Follow {
    /// The stream was announced at `addr`.
    fn moved(&self, addr: SocketAddr) {
        if self.at.get() != Some(addr) {
            self.to.set(Some(addr));
            self.wake.borrow().raise();
        }
    }

    /// The origin to follow to, once.
    fn take(&self) -> Option<SocketAddr> {
        let to = self.to.take();
        if to.is_some() {
            *self.wake.borrow_mut() = Rc::new(Signal::default());
        }
        to
    }

    fn pending(&self) -> bool {
        self.to.get().is_some()
    }

    /// Raised at the next announcement (or already, with one pending).
    fn signal(&self) -> Rc<Signal> {
        self.wake.borrow().clone()
    }
}

/// Hands the registry's announcements to this shard's pulls, until the
/// registry's events thread ends.
pub async fn follow_moves(shard: Rc<Shard>, moves: flume::Receiver<Moved>) {
    while let Ok(m) = moves.recv_async().await {
        let Some(edge) = shard.edge.as_ref() else {
            return;
        };
        let follow = edge.follows.borrow().get(&m.key).cloned();
        if let Some(f) = follow {
            log::info!(
                "pull key={} announced at addr={} node={}: following it",
                m.key,
                m.addr,
                m.node
            );
            f.moved(m.addr);
        }
    }
}

impl Edge {
    /// The pulls' setting of `config`: an edge's, or an origin's in a
    /// `cluster` (no static origins: the registry names them); None on a
    /// lone origin. The origins were checked when the configuration was
    /// loaded.
    pub fn new(config: &Config, cluster: bool) -> Option<Edge> {
        if config.mode != Mode::Edge && !cluster {
            return None;
        }
        let e = &config.edge;
        let origins = match e.origin_addrs() {
            Ok(o) => o,
            Err(why) => {
                log::error!("edge.origins: {why}");
                Vec::new()
            }
        };
        let local = config
            .listen
            .parse::<IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified());
        Some(Edge {
            origins,
            choice: e.lb,
            policy: RetryPolicy::from_config(e),
            connect_timeout: Duration::from_millis(e.connect_timeout_ms),
            local,
            node_id: format!("{}:{}", config.listen, config.port),
            turn: Cell::new(0),
            follows: RefCell::new(HashMap::new()),
        })
    }
}

/// How one attempt ended, when it did not fail.
enum Ended {
    /// The table stopped the pull (no demand).
    Stopped,
    /// A client publishes the stream here now, or the API dropped it.
    Replaced,
    /// The registry announced the stream at another origin.
    Moved,
}

/// Runs the pull of `key` until `stop` is raised or the retry policy gives
/// up; then tells the table.
pub async fn run(shard: Rc<Shard>, key: StreamKey, stop: Rc<Signal>) {
    let Some(edge) = shard.edge.as_ref() else {
        return;
    };
    let turn = edge.turn.get();
    edge.turn.set(turn.wrapping_add(1));
    let order = origin_order(&edge.origins, &key, edge.choice, turn);
    let mut attempts = Attempts::new(edge.policy, order, edge.origins.len());
    // The static list, and origins the registry named since.
    let mut origins = edge.origins.clone();
    let mut failures = 0u32;
    let mut played = false;
    let mut last_origin = None;
    let follow = Rc::new(Follow::default());
    edge.follows
        .borrow_mut()
        .insert(key.to_string(), follow.clone());
    log::info!("pull start key={key} shard={}", shard.id());
    let gave_up = loop {
        if stop.is_raised() {
            break false;
        }
        let step = match follow.take() {
            Some(to) => {
                let i = index_of(&mut origins, to, &mut attempts);
                attempts.follow(i, Instant::now())
            }
            None => {
                let preferred = match &shard.registry {
                    Some(r) => match r.lookup(&key).await {
                        Lookup::Found { node, addr } if node != r.node_id => {
                            Some(index_of(&mut origins, addr, &mut attempts))
                        }
                        _ => None,
                    },
                    None => None,
                };
                attempts.next_with(Instant::now(), preferred)
            }
        };
        match step {
            Step::GiveUp => break true,
            Step::WaitUntil(at) => {
                if let Some(o) = last_origin {
                    shard.with_table(|t| t.set_pull_state(&key, o, PullState::Retrying, failures));
                }
                let moved = follow.signal();
                futures_lite::future::or(sleep_until(at, &stop), moved.wait()).await;
            }
            Step::Try(i) => {
                let origin = origins[i];
                last_origin = Some(origin);
                follow.at.set(Some(origin));
                shard.with_table(|t| {
                    t.set_pull_state(&key, origin, PullState::Connecting, failures)
                });
                let ended = attempt(&shard, edge, &key, origin, &stop, &follow, &mut played).await;
                follow.at.set(None);
                if std::mem::take(&mut played) {
                    // Media flowed: a failure now starts a new run.
                    attempts.succeeded();
                    failures = 0;
                }
                match ended {
                    Ok(Ended::Stopped) => break false,
                    Ok(Ended::Replaced) => break false,
                    Ok(Ended::Moved) => {
                        log::info!("pull key={key} leaves {origin}: the stream moved");
                    }
                    Err(why) => {
                        failures += 1;
                        attempts.failed(i, Instant::now());
                        let failing = attempts
                            .failing_for(Instant::now())
                            .unwrap_or_default()
                            .as_millis();
                        log::warn!(
                            "pull failed key={key} origin={origin} failures={failures} failing_ms={failing} error={why}"
                        );
                    }
                }
            }
        }
    };
    // On an origin, players of a stream nobody has wait for a publisher
    // here as they always do; on an edge there is no other source.
    let ends_players = gave_up && shard.is_edge();
    if ends_players {
        log::warn!(
            "pull gave up key={key} after {failures} failed attempts (edge.retry_max_ms): its players are told the stream ended"
        );
    } else if gave_up {
        log::info!("pull gave up key={key}: no other node announces it");
    } else {
        log::info!("pull stop key={key}");
    }
    edge.follows.borrow_mut().remove(&*key);
    shard.with_table(|t| t.pull_ended(&key, ends_players, Instant::now()));
}

/// `addr`'s index in `origins`, added (there and to `attempts`) if new.
fn index_of(origins: &mut Vec<SocketAddr>, addr: SocketAddr, attempts: &mut Attempts) -> usize {
    origins.iter().position(|o| *o == addr).unwrap_or_else(|| {
        origins.push(addr);
        attempts.add_origin()
    })
}

/// Sleeps until `at`, or until `stop` is raised.
pub(super) async fn sleep_until(at: Instant, stop: &Signal) {
    futures_lite::future::or(
        glommio::timer::sleep(at.saturating_duration_since(Instant::now())),
        stop.wait(),
    )
    .await;
}

/// `vhost/app/stream` in its parts.
pub(super) fn key_parts(key: &str) -> Result<(&str, &str, &str), String> {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(vhost), Some(app), Some(stream)) => Ok((vhost, app, stream)),
        _ => Err(format!("{key} is not vhost/app/stream")),
    }
}

/// The upstream request's stream name: the key's stream with the edge's
/// query (`edge=`, the vhost when not the default, a signature of
/// `action` when `auth.secret` is set).
pub(super) fn upstream_name(config: &Config, key: &str, action: &str, node: &str) -> String {
    let Ok((vhost, _, stream)) = key_parts(key) else {
        return key.to_string();
    };
    let mut params: Vec<(&str, String)> = vec![(EDGE_PARAM, node.to_string())];
    if vhost != config.default_vhost {
        params.push(("vhost", vhost.to_string()));
    }
    let mut name = format!("{stream}?");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            name.push('&');
        }
        name.push_str(&format!("{k}={v}"));
    }
    if !config.auth.secret.is_empty() {
        let expires = crate::stream::unix_ms() / 1000 + PULL_SIGNATURE_TTL_S;
        name.push('&');
        name.push_str(&proto::sign::signed_query(
            config.auth.secret.as_bytes(),
            action,
            key,
            expires,
        ));
    }
    name
}

/// Connects to `origin` for `mode` (a pull plays, a push publishes) of
/// `key`, the handshake's first bytes sent: the connection and the
/// session that goes on over it.
pub(super) async fn connect(
    shard: &Shard,
    edge: &Edge,
    key: &StreamKey,
    origin: SocketAddr,
    mode: StreamMode,
) -> Result<(TcpStream, ClientSession), String> {
    let (_, app, _) = key_parts(key)?;
    let config = shard.config();
    let action = match mode {
        StreamMode::Play => "play",
        StreamMode::Publish => "publish",
    };
    let client = ClientConfig {
        tc_url: format!("rtmp://{origin}/{app}"),
        app: app.to_string(),
        stream: upstream_name(&config, key, action, &edge.node_id),
        mode,
        chunk_size_out: config.rtmp.chunk_size_out,
        buffer_ms: UPSTREAM_BUFFER_MS,
        limits: ClientLimits {
            chunk: shard.session_config().chunk,
            amf: Default::default(),
        },
    };
    let seed = crate::stream::unix_ms() ^ (shard.conns.next_id() << 20);
    let mut session = ClientSession::new(client, seed, 0);
    let c0c1 = session.take_transmit().unwrap_or_default();
    let conn = dial(edge.local, origin, &c0c1, edge.connect_timeout)
        .await
        .map_err(|e| e.to_string())?;
    Ok((conn, session))
}

/// Writes bytes of the session to the upstream, counting them.
pub(super) async fn send(
    conn: &mut TcpStream,
    bytes: &[u8],
    origin: SocketAddr,
) -> Result<(), String> {
    conn.write_all(bytes)
        .await
        .map_err(|e| format!("write to {origin}: {e}"))?;
    crate::metrics::with(|m| m.bytes_out(bytes.len() as u64));
    Ok(())
}

/// One connection to `origin`: plays the stream and publishes what comes
/// into the table until the upstream fails (Err, with why), the pull is
/// stopped or the stream moved. `played`: media came.
async fn attempt(
    shard: &Rc<Shard>,
    edge: &Edge,
    key: &StreamKey,
    origin: SocketAddr,
    stop: &Rc<Signal>,
    follow: &Follow,
    played: &mut bool,
) -> Result<Ended, String> {
    let (mut conn, mut session) = connect(shard, edge, key, origin, StreamMode::Play).await?;
    log::debug!("pull connected key={key} origin={origin}");

    // Our publish into the table: starts with the first media, ends when
    // the origin unpublishes or the attempt ends.
    let mut publishing: Option<(u64, Rc<Signal>)> = None;
    let mut buf = vec![0u8; READ_BUF_LEN];
    let result: Result<Ended, String> = async {
        loop {
            while let Some(out) = session.poll_output() {
                let event = match out {
                    Output::Transmit(b) => {
                        send(&mut conn, &b, origin).await?;
                        continue;
                    }
                    Output::Event(e) => e,
                };
                let publish = match event {
                    ClientEvent::Media(f) => Some(StreamEvent::Frame(f)),
                    ClientEvent::Metadata(m) => Some(StreamEvent::Metadata(m)),
                    ClientEvent::Refused(s) => {
                        return Err(format!(
                            "{origin} refused the play: {} {}",
                            s.code, s.description
                        ))
                    }
                    ClientEvent::Status(s) if s.code == "NetStream.Play.UnpublishNotify" => {
                        if let Some((id, _)) = publishing.take() {
                            shard.end_publish(key, id);
                        }
                        None
                    }
                    ClientEvent::StreamEof => return Err(format!("{origin} ended the stream")),
                    ClientEvent::BadMedia(e) => {
                        log::debug!("pull bad media key={key} origin={origin} error={e}");
                        None
                    }
                    _ => None,
                };
                let Some(event) = publish else { continue };
                let id = match &publishing {
                    Some((id, _)) => *id,
                    None => {
                        let Some((id, close)) = start(shard, key, origin) else {
                            return Ok(Ended::Replaced);
                        };
                        *played = true;
                        shard.with_table(|t| t.set_pull_state(key, origin, PullState::Playing, 0));
                        publishing = Some((id, close));
                        id
                    }
                };
                shard.publish_event(key, id, event);
            }
            if stop.is_raised() {
                return Ok(Ended::Stopped);
            }
            if publishing.as_ref().is_some_and(|(_, c)| c.is_raised()) {
                return Ok(Ended::Replaced);
            }
            if follow.pending() {
                return Ok(Ended::Moved);
            }
            let deadline = Deadline::after(
                UPSTREAM_IDLE_TIMEOUT,
                "UPSTREAM_IDLE_TIMEOUT",
                "media from the origin",
            );
            // The read ends early when the pull is stopped, its publish
            // replaced or its stream moved.
            let close = publishing.as_ref().map_or(stop.clone(), |(_, c)| c.clone());
            let moved = follow.signal();
            let read = futures_lite::future::or(
                read_some(&mut conn, &mut buf, &close, Some(deadline)),
                async {
                    futures_lite::future::or(stop.wait(), moved.wait()).await;
                    Ok(None)
                },
            )
            .await;
            let n = match read {
                Ok(Some(n)) => n,
                Ok(None) if stop.is_raised() => return Ok(Ended::Stopped),
                Ok(None) if close.is_raised() => return Ok(Ended::Replaced),
                Ok(None) if follow.pending() => return Ok(Ended::Moved),
                Ok(None) => return Err(format!("{origin} closed the connection")),
                Err(ConnError::Deadline { bound, .. }) => {
                    return Err(format!("nothing from {origin} within {bound}"))
                }
                Err(e) => return Err(format!("read from {origin}: {e}")),
            };
            session
                .handle_input(&buf[..n])
                .map_err(|e: ClientError| format!("from {origin}: {e}"))?;
        }
    }
    .await;
    if let Some((id, _)) = publishing {
        shard.end_publish(key, id);
    }
    result
}

/// Makes the pull the stream's publisher; None when a client publishes
/// the stream here (a pull never replaces a client).
fn start(shard: &Rc<Shard>, key: &StreamKey, origin: SocketAddr) -> Option<(u64, Rc<Signal>)> {
    let id = shard.conns.next_id();
    let now = Instant::now();
    let close = Rc::new(Signal::default());
    let publisher = PublisherSlot {
        id,
        close: close.clone(),
        source: Source::Pull { origin },
        meter: IngestMeter::new(now),
    };
    if let Err(r) = shard.with_table(|t| t.start_publish(key, publisher, now)) {
        log::info!("pull of {key} not published: {r}");
        return None;
    }
    log::info!(
        "pull playing key={key} origin={origin} shard={}",
        shard.id()
    );
    Some((id, close))
}
