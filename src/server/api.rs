//! The JSON API (issue 6): the server, its streams and its clients, and
//! dropping a publisher or one connection.
//!
//! Every shard knows only its own part of a stream: the owner knows the
//! publisher, the codecs, the GOP cache and the replica shards; every shard
//! (the owner included) knows its own players. A request is answered by the
//! shard that accepted it, which asks every other shard by message
//! ([`ApiMsg`]), waits at most [`GATHER_TIMEOUT`] for the answers and merges
//! them per stream. The answers are plain values built from the shard's
//! state in one synchronous step: taking them never waits on the data path.
//!
//! Client ids are unique across shards: [`Shard::next_id`] puts the shard
//! index in the low bits (`id % SHARDS_MAX`), so a `DELETE` goes straight to
//! the shard that holds the connection.
//!
//! Errors are `{"error": "..."}` with a message naming what was wrong.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Shard, ShardMsg, GATHER_TIMEOUT};
use crate::config::SHARDS_MAX;
use crate::net::{ConnState, ConnWhat, Registered};
use crate::stream::meter::RATE_WINDOW;
use crate::stream::table::{Entry, PublisherSlot, Role, Source, StreamTable};
use crate::stream::{IngestMeter, PlayerFormat, StreamCore, StreamKey};
use proto::http::{ApiRoute, Request, Response, Route};
use proto::media::{Frame, VideoCodec};

/// When the process started: (monotonic, Unix ms), from
/// [`crate::metrics::started`], the one start time /metrics reports too.
fn started() -> (Instant, u64) {
    let (t0, wall) = crate::metrics::started();
    let unix_ms = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (t0, unix_ms)
}

/// A request of the API to one shard; the reply goes back on the channel.
pub enum ApiMsg {
    /// That shard's part of every stream it holds (or of one).
    Streams {
        key: Option<StreamKey>,
        reply: flume::Sender<ShardStreams>,
    },
    /// That shard's open connections.
    Clients(flume::Sender<Vec<ClientView>>),
    /// That shard's placement.
    Info(flume::Sender<ShardInfo>),
    /// Close the publisher of an owned stream; replies with it, or None.
    DropPublisher {
        key: StreamKey,
        reply: flume::Sender<Option<PublisherView>>,
    },
    /// Close one connection; replies with it, or None.
    DropClient {
        id: u64,
        reply: flume::Sender<Option<ClientView>>,
    },
}

/// Answers an [`ApiMsg`] from another shard. Replies are sent without
/// waiting; each channel has room for its answers.
pub(super) fn on_message(shard: &Rc<Shard>, msg: ApiMsg) {
    match msg {
        ApiMsg::Streams { key, reply } => {
            let _ = reply.try_send(local_streams(shard, key.as_ref()));
        }
        ApiMsg::Clients(reply) => {
            let _ = reply.try_send(local_clients(shard));
        }
        ApiMsg::Info(reply) => {
            let _ = reply.try_send(ShardInfo {
                shard: shard.id(),
                pinned_cpu: shard.ctx.pinned_core(),
            });
        }
        ApiMsg::DropPublisher { key, reply } => {
            let _ = reply.try_send(drop_publisher(shard, &key));
        }
        ApiMsg::DropClient { id, reply } => {
            let _ = reply.try_send(drop_client(shard, id));
        }
    }
}

/// Where one shard runs.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    shard: usize,
    pinned_cpu: Option<usize>,
}

/// One shard's part of the streams it holds.
#[derive(Debug)]
pub struct ShardStreams {
    shard: usize,
    parts: Vec<StreamPart>,
}

/// One shard's part of one stream.
#[derive(Debug)]
pub struct StreamPart {
    key: StreamKey,
    /// Present on the owner only.
    owner: Option<OwnerPart>,
    players: Vec<PlayerView>,
    hls_requests: u64,
}

/// What only the owner of a stream knows.
#[derive(Debug)]
struct OwnerPart {
    publisher: Option<PublisherView>,
    pull: Option<PullView>,
    uptime_s: f64,
    published_unix_ms: u64,
    bitrate_in_bps: u64,
    video: Option<VideoView>,
    audio: Option<AudioView>,
    gop_frames: usize,
    gop_bytes: usize,
    replica_shards: Vec<usize>,
}

/// The publisher of a stream.
#[derive(Clone, Debug, Serialize)]
pub struct PublisherView {
    /// Client id (for `DELETE /api/v1/clients/{id}`); 0 for a pull.
    id: u64,
    /// `publisher` (a client publishes here) or `pull` (an edge's pull).
    source: &'static str,
    /// The client's address, or the origin pulled from.
    peer: String,
    protocol: &'static str,
    shard: usize,
    /// Media payload bytes received.
    bytes_in: u64,
    frames_in: u64,
}

/// An edge's pull of a stream.
#[derive(Clone, Debug, Serialize)]
struct PullView {
    /// The origin of the current or last attempt.
    origin: Option<String>,
    /// `connecting`, `playing` or `retrying`.
    state: &'static str,
    /// Attempts failed since media last flowed.
    failures: u32,
}

/// One player of a stream.
#[derive(Clone, Debug, Serialize)]
struct PlayerView {
    /// Client id (for `DELETE /api/v1/clients/{id}`).
    id: u64,
    peer: String,
    /// `rtmp` or `http-flv`.
    protocol: &'static str,
    shard: usize,
    bytes_out: u64,
    queued_bytes: usize,
    skipped_frames: u64,
}

#[derive(Clone, Debug, Serialize)]
struct VideoView {
    /// `h264`, `hevc`, `av1`, `vp9`, or the raw code.
    codec: String,
    width: Option<u32>,
    height: Option<u32>,
    /// Measured from the DTS of the last [`RATE_WINDOW`].
    fps: Option<f64>,
    /// As the codec's spec names them: `High`, `Main 10`; `3.1`, `2.0`.
    profile: Option<String>,
    level: Option<String>,
    bit_depth: Option<u8>,
    /// The RFC 6381 CODECS value: `avc1.64001f`, `hvc1.1.6.L93.B0`,
    /// `av01.0.08M.08`, `vp09.00.10.08`.
    codecs: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
struct AudioView {
    /// `aac`, `mp3`, `opus`, or the raw code.
    codec: String,
    sample_rate: Option<u32>,
    channels: Option<u8>,
    /// The RFC 6381 CODECS value: `mp4a.40.2`, `opus`, `mp4a.40.34`.
    codecs: Option<String>,
}

/// A live stream as the API shows it: every shard's parts merged. A
/// stream with a pull but no publisher yet (its pull connects or retries)
/// is listed too, with `publisher` null and `pull` saying why.
#[derive(Debug, Serialize)]
struct StreamView {
    key: String,
    vhost: String,
    app: String,
    stream: String,
    uptime_s: f64,
    published_at: String,
    published_unix: u64,
    /// Null while a pull has no media yet.
    publisher: Option<PublisherView>,
    /// Edge mode or a cluster: the pull that feeds the stream.
    pull: Option<PullView>,
    video: Option<VideoView>,
    audio: Option<AudioView>,
    /// Media payload bits per second over the last `bitrate_window_s`.
    bitrate_in_bps: u64,
    bitrate_window_s: u64,
    players: PlayerCounts,
    /// HLS players hold no connection: they are counted by requests.
    hls: HlsRequests,
    /// Bytes written to the players attached now.
    bytes_out: u64,
    gop_cache: GopView,
    owner_shard: usize,
    replica_shards: Vec<usize>,
    player_list: Vec<PlayerView>,
    urls: Urls,
}

#[derive(Debug, Default, Serialize)]
struct PlayerCounts {
    total: usize,
    rtmp: usize,
    http_flv: usize,
}

#[derive(Debug, Serialize)]
struct HlsRequests {
    /// Playlist, segment and part requests served while the shards
    /// followed the stream.
    requests: u64,
}

#[derive(Debug, Serialize)]
struct GopView {
    frames: usize,
    bytes: usize,
}

#[derive(Debug, Serialize)]
struct Urls {
    rtmp: String,
    flv: String,
    hls: String,
}

/// One open connection.
#[derive(Clone, Debug, Serialize)]
pub struct ClientView {
    /// Unique across shards (for `DELETE /api/v1/clients/{id}`).
    id: u64,
    shard: usize,
    peer: String,
    /// `connecting`, `http`, `publisher` or `player`.
    kind: &'static str,
    /// `rtmp`, `http` or `http-flv`, once known.
    protocol: Option<&'static str>,
    key: Option<String>,
    /// Accepted on `internal_port`.
    internal: bool,
    uptime_s: f64,
    idle_s: f64,
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn video_codec_name(c: VideoCodec) -> String {
    match c {
        VideoCodec::Avc => "h264".into(),
        other => other.to_string(),
    }
}

/// The video track of a stream whose video sequence header is `seq`, as
/// [`StreamCore::video_params`] reads it.
fn video_view(seq: &Frame, core: &StreamCore, fps: Option<f64>) -> VideoView {
    let p = core.video_params();
    VideoView {
        codec: seq
            .video_codec
            .map(video_codec_name)
            .unwrap_or_else(|| "unknown".into()),
        width: p.as_ref().and_then(|p| p.width),
        height: p.as_ref().and_then(|p| p.height),
        fps,
        bit_depth: p.as_ref().and_then(|p| p.bit_depth),
        profile: p.as_ref().map(|p| p.profile.clone()),
        level: p.as_ref().map(|p| p.level.clone()),
        codecs: p.map(|p| p.codecs),
    }
}

/// The audio track, from its sequence header or, for MP3, which has none,
/// from a cached frame ([`StreamCore::audio_params`]); None without audio
/// known.
fn audio_view(core: &StreamCore) -> Option<AudioView> {
    let params = core.audio_params();
    let codec = core
        .audio_seq
        .as_ref()
        .and_then(|f| f.audio_codec)
        .or(params.as_ref().map(|p| p.codec));
    if core.audio_seq.is_none() && params.is_none() {
        return None;
    }
    Some(AudioView {
        codec: codec
            .map(|c| c.to_string())
            .unwrap_or_else(|| "unknown".into()),
        sample_rate: params.as_ref().map(|p| p.sample_rate),
        channels: params.as_ref().map(|p| p.channels),
        codecs: params.map(|p| p.codecs),
    })
}

fn local_streams(shard: &Shard, only: Option<&StreamKey>) -> ShardStreams {
    let now = Instant::now();
    let table = shard.table.borrow();
    let parts = table
        .iter()
        .filter(|(k, _)| only.is_none_or(|o| o == *k))
        .map(|(key, e)| stream_part(shard, &table, key, e, now))
        .collect();
    ShardStreams {
        shard: shard.id(),
        parts,
    }
}

fn stream_part(
    shard: &Shard,
    table: &StreamTable,
    key: &StreamKey,
    e: &Entry,
    now: Instant,
) -> StreamPart {
    let owner = match &e.role {
        Role::Owner {
            publisher,
            replicas,
            pull,
            ..
        } => {
            let meter = publisher.as_ref().map(|p| &p.meter);
            let fps = meter.and_then(IngestMeter::fps);
            Some(OwnerPart {
                publisher: publisher.as_ref().map(|p| publisher_view(shard, p)),
                pull: pull.as_ref().map(|p| PullView {
                    origin: p.origin.map(|o| o.to_string()),
                    state: p.state.name(),
                    failures: p.failures,
                }),
                uptime_s: meter.map_or(0.0, |m| round_ms(now.saturating_duration_since(m.started))),
                published_unix_ms: meter.map_or(0, |m| m.started_unix_ms),
                bitrate_in_bps: meter.map_or(0, |m| m.bitrate_bps(now)),
                video: e
                    .core
                    .video_seq
                    .as_ref()
                    .map(|f| video_view(f, &e.core, fps)),
                audio: audio_view(&e.core),
                gop_frames: e.core.gop.len(),
                gop_bytes: e.core.gop.bytes(),
                replica_shards: replicas.iter().map(|r| r.shard).collect(),
            })
        }
        Role::Replica { .. } => None,
    };
    let players = e
        .core
        .players
        .iter()
        .map(|p| {
            let q = p.queue.borrow();
            PlayerView {
                id: p.id,
                peer: p.peer.to_string(),
                protocol: match p.format {
                    PlayerFormat::Rtmp { .. } => "rtmp",
                    PlayerFormat::Flv { .. } => "http-flv",
                },
                shard: shard.id(),
                bytes_out: q.written(),
                queued_bytes: q.len_bytes(),
                skipped_frames: q.skipped(),
            }
        })
        .collect();
    StreamPart {
        key: key.clone(),
        owner,
        players,
        hls_requests: table.hls_requests(key),
    }
}

/// Merges every shard's parts into the live streams, by key.
fn merge(shards: Vec<ShardStreams>, default_vhost: &str) -> Vec<StreamView> {
    type Merged = (Option<(usize, OwnerPart)>, Vec<PlayerView>, u64);
    let mut by_key: BTreeMap<StreamKey, Merged> = BTreeMap::new();
    for s in shards {
        for part in s.parts {
            let slot = by_key.entry(part.key).or_default();
            if let Some(o) = part.owner {
                slot.0 = Some((s.shard, o));
            }
            slot.1.extend(part.players);
            slot.2 += part.hls_requests;
        }
    }
    by_key
        .into_iter()
        .filter_map(|(key, (owner, mut players, hls_requests))| {
            let (owner_shard, o) = owner?;
            let publisher = o.publisher;
            if publisher.is_none() && o.pull.is_none() {
                return None;
            }
            let mut it = key.splitn(3, '/');
            let (vhost, app, name) = (it.next()?, it.next()?, it.next()?);
            players.sort_by_key(|p| p.id);
            let mut counts = PlayerCounts {
                total: players.len(),
                ..PlayerCounts::default()
            };
            for p in &players {
                match p.protocol {
                    "rtmp" => counts.rtmp += 1,
                    _ => counts.http_flv += 1,
                }
            }
            let q = if vhost == default_vhost {
                String::new()
            } else {
                format!("?vhost={vhost}")
            };
            Some(StreamView {
                key: key.to_string(),
                vhost: vhost.into(),
                app: app.into(),
                stream: name.into(),
                uptime_s: o.uptime_s,
                published_at: match o.published_unix_ms {
                    0 => String::new(),
                    ms => rfc3339(ms),
                },
                published_unix: o.published_unix_ms / 1000,
                publisher,
                pull: o.pull,
                video: o.video,
                audio: o.audio,
                bitrate_in_bps: o.bitrate_in_bps,
                bitrate_window_s: RATE_WINDOW.as_secs(),
                players: counts,
                hls: HlsRequests {
                    requests: hls_requests,
                },
                bytes_out: players.iter().map(|p| p.bytes_out).sum(),
                gop_cache: GopView {
                    frames: o.gop_frames,
                    bytes: o.gop_bytes,
                },
                owner_shard,
                replica_shards: o.replica_shards,
                player_list: players,
                urls: Urls {
                    rtmp: format!("/{app}/{name}{q}"),
                    flv: format!("/{app}/{name}.flv{q}"),
                    hls: format!("/{app}/{name}.m3u8{q}"),
                },
            })
        })
        .collect()
}

fn client_view(shard: &Shard, id: u64, c: &ConnState, now: Instant) -> ClientView {
    let (kind, protocol, key) = match &*c.what.borrow() {
        ConnWhat::Sniffing => ("connecting", None, None),
        ConnWhat::Rtmp => ("connecting", Some("rtmp"), None),
        ConnWhat::Http => ("http", Some("http"), None),
        ConnWhat::Publisher(k) => ("publisher", Some("rtmp"), Some(k.to_string())),
        ConnWhat::Player(k, p) => ("player", Some(*p), Some(k.to_string())),
    };
    ClientView {
        id,
        shard: shard.id(),
        peer: c.peer.to_string(),
        kind,
        protocol,
        key,
        internal: c.internal,
        uptime_s: round_ms(now.saturating_duration_since(c.accepted)),
        idle_s: round_ms(now.saturating_duration_since(c.last_active.get())),
    }
}

fn local_clients(shard: &Shard) -> Vec<ClientView> {
    let now = Instant::now();
    let mut out = Vec::with_capacity(shard.conns.len());
    shard
        .conns
        .for_each(|id, c| out.push(client_view(shard, id, c, now)));
    out
}

fn drop_publisher(shard: &Shard, key: &StreamKey) -> Option<PublisherView> {
    let table = shard.table.borrow();
    let p = table.publisher(key)?;
    let view = publisher_view(shard, p);
    log::info!(
        "api: dropping publisher key={key} peer={} client={}",
        view.peer,
        view.id
    );
    p.close.raise();
    Some(view)
}

fn publisher_view(shard: &Shard, p: &PublisherSlot) -> PublisherView {
    let (id, source, peer, protocol) = match &p.source {
        Source::Client {
            conn_id,
            peer,
            protocol,
        } => (*conn_id, "publisher", peer, *protocol),
        Source::Pull { origin } => (0, "pull", origin, "rtmp"),
    };
    PublisherView {
        id,
        source,
        peer: peer.to_string(),
        protocol,
        shard: shard.id(),
        bytes_in: p.meter.bytes,
        frames_in: p.meter.frames,
    }
}

fn drop_client(shard: &Shard, id: u64) -> Option<ClientView> {
    let c = shard.conns.get(id)?;
    log::info!("api: dropping client={id} peer={}", c.peer);
    c.close.raise();
    Some(client_view(shard, id, &c, Instant::now()))
}

/// Asks every other shard (`ask` builds each request around the reply
/// channel) and collects what answers within [`GATHER_TIMEOUT`]. `local` is
/// this shard's own answer. Returns the answers and how many shards gave
/// one (this one included).
async fn gather<T: Send + 'static>(
    shard: &Rc<Shard>,
    local: T,
    ask: impl Fn(flume::Sender<T>) -> ApiMsg,
) -> (Vec<T>, usize) {
    let mut answers = vec![local];
    answers.extend(shard.gather("api", |tx| ShardMsg::Api(ask(tx))).await);
    let n = answers.len();
    (answers, n)
}

/// Asks shard `to` one thing and waits at most [`GATHER_TIMEOUT`].
async fn ask_one<T: Send + 'static>(
    shard: &Rc<Shard>,
    to: usize,
    ask: impl FnOnce(flume::Sender<T>) -> ApiMsg,
) -> Result<T, String> {
    let (tx, rx) = flume::bounded(1);
    let work = async {
        shard
            .ctx
            .post_control(to, ShardMsg::Api(ask(tx)))
            .map_err(|e| format!("request to shard {to} failed: {e}"))?;
        rx.recv_async()
            .await
            .map_err(|_| format!("shard {to} dropped the request"))
    };
    let timeout = async {
        glommio::timer::sleep(GATHER_TIMEOUT).await;
        Err(format!(
            "shard {to} did not answer within {} ms (GATHER_TIMEOUT)",
            GATHER_TIMEOUT.as_millis()
        ))
    };
    futures_lite::future::or(work, timeout).await
}

/// `{"error": message}`.
fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default()
}

fn json<T: Serialize>(value: &T) -> (u16, Vec<u8>) {
    match serde_json::to_vec(value) {
        Ok(body) => (200, body),
        Err(e) => (500, error_body(&format!("cannot encode the answer: {e}"))),
    }
}

/// May this request reach the admin surface? The local host (127.0.0.1 and
/// ::1: other 127/8 addresses are peers of their own, as containers and
/// tests use them), peers in `api.allow`, and requests bearing `api.token`
/// (compared in constant time) may.
fn admin_allowed(shard: &Shard, reg: &Registered, req: &Request) -> Result<(), String> {
    let ip = crate::access::canonical(reg.state.peer.ip());
    let local: [std::net::IpAddr; 2] = [
        std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::Ipv6Addr::LOCALHOST.into(),
    ];
    if local.contains(&ip) || shard.live().api_allow.contains(ip) {
        return Ok(());
    }
    let token = &shard.config().api.token;
    match &req.bearer {
        Some(t) if !token.is_empty() && crate::access::constant_time_eq(t.as_bytes(), token.as_bytes()) => {
            Ok(())
        }
        Some(_) => Err(format!("{} needs a valid api.token: the bearer token does not match", req.path)),
        None => Err(format!(
            "{} answers only loopback peers, api.allow and Authorization: Bearer <api.token>; {ip} is none",
            req.path
        )),
    }
}

/// A JSON answer to `req`.
fn reply(req: &Request, status: u16, body: Vec<u8>) -> Response {
    Response::new(status, "application/json", body, req.keep_alive)
}

/// Answers the request if it is the API's, or if the port it came on may
/// not serve it (`internal_port`); None lets the caller route it.
pub(super) async fn handle(
    shard: &Rc<Shard>,
    reg: &Registered,
    req: &Request,
    route: &Route,
) -> Option<Response> {
    let internal_port = shard.config().internal_port;
    if reg.state.internal && !route.is_api() {
        let msg = format!(
            "{} is not served on the internal port {internal_port}, which serves only the API \
             (/api/..., /status, /metrics, /dashboard)",
            req.path
        );
        return Some(reply(req, 404, error_body(&msg)));
    }
    if internal_port != 0 && !reg.state.internal && route.is_api() {
        let msg = format!(
            "{} is served only on the internal port (internal_port)",
            req.path
        );
        return Some(reply(req, 404, error_body(&msg)));
    }
    // The admin surface: every API route but the stream list the page at
    // `/` reads.
    if route.is_api() && *route != Route::ApiStreams {
        if let Err(why) = admin_allowed(shard, reg, req) {
            log::warn!("peer={} error=admin surface refused: {why}", reg.state.peer);
            shard.metrics.refused(crate::metrics::Refused::Admin);
            return Some(reply(req, 403, error_body(&why)));
        }
    }
    let Route::Api(api) = route else {
        return None;
    };
    let allow = match api {
        ApiRoute::Stream { .. } | ApiRoute::Client { .. } => "GET, HEAD, DELETE, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    };
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        "DELETE" if allow.contains("DELETE") => {}
        "OPTIONS" => {
            return Some(Response::empty(
                204,
                vec![
                    format!("Access-Control-Allow-Methods: {allow}"),
                    "Access-Control-Allow-Headers: *".into(),
                    "Access-Control-Max-Age: 86400".into(),
                ],
                req.keep_alive,
            ));
        }
        other => {
            let msg = format!("method {other} is not allowed on {}; use {allow}", req.path);
            return Some(reply(req, 405, error_body(&msg)).with_header(format!("Allow: {allow}")));
        }
    }
    let delete = req.method == "DELETE";
    let (status, body) = match api {
        ApiRoute::Server => server_json(shard).await,
        ApiRoute::Streams => streams_json(shard).await,
        ApiRoute::Stream {
            vhost,
            app,
            stream: name,
        } => {
            let key: StreamKey = match vhost {
                Some(v) => Arc::from(format!("{v}/{app}/{name}")),
                None => shard.key_for(req.param("vhost"), None, app, name),
            };
            if delete {
                delete_stream(shard, &key).await
            } else {
                stream_json(shard, &key).await
            }
        }
        ApiRoute::Clients => clients_json(shard, None).await,
        ApiRoute::Client { id } => match id.parse::<u64>() {
            Err(_) => (
                400,
                error_body(&format!(
                    "client id {id:?} is not a number (ids are listed by GET /api/v1/clients)"
                )),
            ),
            Ok(id) if delete => delete_client(shard, id).await,
            Ok(id) => clients_json(shard, Some(id)).await,
        },
    };
    Some(reply(req, status, body))
}

#[derive(Serialize)]
struct ServerView {
    version: &'static str,
    started_at: String,
    started_unix: u64,
    uptime_s: f64,
    shards: usize,
    shards_answered: usize,
    pin_cores: bool,
    /// By shard: the CPU it is pinned to (null: not pinned, or no answer).
    pinned_cpus: Vec<Option<usize>>,
    /// `origin` or `edge`.
    mode: &'static str,
    /// This node in a cluster (`cluster.node_id`).
    node_id: String,
    /// The cluster's registry: null without `[cluster] redis`.
    registry: Option<serde_json::Value>,
    config: ConfigSummary,
}

#[derive(Serialize)]
struct ConfigSummary {
    /// 1 at start, +1 per applied reload (SIGHUP), and when it was loaded.
    generation: u64,
    loaded_at: String,
    loaded_unix_ms: u64,
    listen: String,
    port: u16,
    /// null when the API is served on the main port.
    internal_port: Option<u16>,
    default_vhost: String,
    vhosts: Vec<String>,
    max_connections: usize,
    idle_timeout_s: i64,
    limits: LimitsSummary,
    hls: HlsSummary,
}

#[derive(Serialize)]
struct LimitsSummary {
    player_queue_bytes_max: usize,
    gop_cache: bool,
    gop_cache_bytes_max: usize,
    gop_cache_frames_max: usize,
    publisher_grace_s: u64,
    rtmp_message_len_max: u32,
    rtmp_chunk_size_in_max: u32,
    http_header_bytes_max: usize,
    http_headers_max: usize,
}

#[derive(Serialize)]
struct HlsSummary {
    enabled: bool,
    low_latency: bool,
    segment_duration_ms: u32,
    part_duration_ms: u32,
    window_size: usize,
}

async fn server_json(shard: &Rc<Shard>) -> (u16, Vec<u8>) {
    let local = ShardInfo {
        shard: shard.id(),
        pinned_cpu: shard.ctx.pinned_core(),
    };
    let (infos, answered) = gather(shard, local, ApiMsg::Info).await;
    let mut pinned_cpus = vec![None; shard.ctx.count()];
    for i in infos {
        if let Some(slot) = pinned_cpus.get_mut(i.shard) {
            *slot = i.pinned_cpu;
        }
    }
    let (t0, t0_unix_ms) = started();
    let live = shard.live();
    let c = &live.config;
    json(&ServerView {
        version: env!("CARGO_PKG_VERSION"),
        started_at: rfc3339(t0_unix_ms),
        started_unix: t0_unix_ms / 1000,
        uptime_s: round_ms(t0.elapsed()),
        shards: shard.ctx.count(),
        shards_answered: answered,
        pin_cores: c.pin_cores,
        pinned_cpus,
        mode: if shard.is_edge() { "edge" } else { "origin" },
        node_id: c.node_id(),
        registry: shard.registry.as_ref().map(|r| r.view()),
        config: ConfigSummary {
            generation: live.generation,
            loaded_at: rfc3339(live.loaded_unix_ms),
            loaded_unix_ms: live.loaded_unix_ms,
            listen: c.listen.clone(),
            port: c.port,
            internal_port: (c.internal_port != 0).then_some(c.internal_port),
            default_vhost: c.default_vhost.clone(),
            vhosts: c.vhosts.clone(),
            max_connections: c.max_connections,
            idle_timeout_s: c.idle_timeout_s,
            limits: LimitsSummary {
                player_queue_bytes_max: c.stream.player_queue_bytes_max,
                gop_cache: c.stream.gop_cache,
                gop_cache_bytes_max: c.stream.gop_cache_bytes_max,
                gop_cache_frames_max: c.stream.gop_cache_frames_max,
                publisher_grace_s: c.stream.publisher_grace_s,
                rtmp_message_len_max: c.rtmp.message_len_max,
                rtmp_chunk_size_in_max: c.rtmp.chunk_size_in_max,
                http_header_bytes_max: c.http.header_bytes_max,
                http_headers_max: c.http.headers_max,
            },
            hls: HlsSummary {
                enabled: true,
                low_latency: c.hls.low_latency,
                segment_duration_ms: c.hls.segment_duration_ms,
                part_duration_ms: c.hls.part_duration_ms,
                window_size: c.hls.window_size,
            },
        },
    })
}

async fn gather_streams(shard: &Rc<Shard>, key: Option<&StreamKey>) -> (Vec<StreamView>, usize) {
    let local = local_streams(shard, key);
    let (parts, answered) = gather(shard, local, |reply| ApiMsg::Streams {
        key: key.cloned(),
        reply,
    })
    .await;
    (merge(parts, &shard.config().default_vhost), answered)
}

async fn streams_json(shard: &Rc<Shard>) -> (u16, Vec<u8>) {
    let (streams, answered) = gather_streams(shard, None).await;
    json(&serde_json::json!({
        "streams": streams,
        "shards": shard.ctx.count(),
        "shards_answered": answered,
    }))
}

async fn stream_json(shard: &Rc<Shard>, key: &StreamKey) -> (u16, Vec<u8>) {
    let (streams, answered) = gather_streams(shard, Some(key)).await;
    match streams.into_iter().next() {
        Some(s) => {
            #[derive(Serialize)]
            struct Detail {
                #[serde(flatten)]
                stream: StreamView,
                shards: usize,
                shards_answered: usize,
            }
            json(&Detail {
                stream: s,
                shards: shard.ctx.count(),
                shards_answered: answered,
            })
        }
        None => (404, error_body(&format!("stream {key} is not published"))),
    }
}

async fn delete_stream(shard: &Rc<Shard>, key: &StreamKey) -> (u16, Vec<u8>) {
    let owner = shard.ctx.owner_of(key.as_bytes());
    let dropped = if owner == shard.id() {
        Ok(drop_publisher(shard, key))
    } else {
        ask_one(shard, owner, |reply| ApiMsg::DropPublisher {
            key: key.clone(),
            reply,
        })
        .await
    };
    match dropped {
        Ok(Some(p)) => json(&serde_json::json!({
            "dropped": "publisher",
            "key": key.as_ref(),
            "publisher": p,
        })),
        Ok(None) => (404, error_body(&format!("stream {key} is not published"))),
        Err(e) => (503, error_body(&e)),
    }
}

async fn clients_json(shard: &Rc<Shard>, only: Option<u64>) -> (u16, Vec<u8>) {
    let (lists, answered) = gather(shard, local_clients(shard), ApiMsg::Clients).await;
    let mut clients: Vec<ClientView> = lists.into_iter().flatten().collect();
    clients.sort_by_key(|c| c.id);
    match only {
        None => json(&serde_json::json!({
            "clients": clients,
            "shards": shard.ctx.count(),
            "shards_answered": answered,
        })),
        Some(id) => match clients.into_iter().find(|c| c.id == id) {
            Some(c) => json(&c),
            None => (
                404,
                error_body(&format!("no open connection has client id {id}")),
            ),
        },
    }
}

async fn delete_client(shard: &Rc<Shard>, id: u64) -> (u16, Vec<u8>) {
    let on = (id % SHARDS_MAX as u64) as usize;
    if on >= shard.ctx.count() {
        return (
            404,
            error_body(&format!(
                "no client {id}: it would be on shard {on}, and there are {} shards",
                shard.ctx.count()
            )),
        );
    }
    let dropped = if on == shard.id() {
        Ok(drop_client(shard, id))
    } else {
        ask_one(shard, on, |reply| ApiMsg::DropClient { id, reply }).await
    };
    match dropped {
        Ok(Some(c)) => json(&serde_json::json!({ "dropped": "client", "client": c })),
        Ok(None) => (
            404,
            error_body(&format!(
                "no open connection has client id {id} (shard {on})"
            )),
        ),
        Err(e) => (503, error_body(&e)),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC) of a Unix time in ms.
fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// (year, month, day) of a count of days since 1970-01-01, in the
/// proleptic Gregorian calendar (H. Hinnant, "chrono-Compatible Low-Level
/// Date Algorithms", days_from_civil's inverse), for days >= 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(4_107_542_399_000), "2100-02-28T23:59:59.000Z");
    }
}
