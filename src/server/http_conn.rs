//! The HTTP session driver: the keep-alive request loop (request bodies
//! are read past and discarded, under `http.body_bytes_max`), CORS
//! preflight, pages, HLS, and HTTP-FLV players served from this shard's
//! copy of the stream. Handlers return [`Response`] values; only
//! [`run`] writes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::decide::{Action, Ask};
use super::player::{drive_player, log_close};
use super::Shard;
use super::WAIT_REFRESH;
use crate::error::{ConnError, Deadline};
use crate::metrics::Protocol;
use crate::net::io::{read_some, write_all, READ_BUF_LEN};
use crate::net::{ConnSlot, ConnWhat, Registered, Transport};
use crate::stream::{Media, MediaFilter, Notify, Player, PlayerFormat, Rendition, StreamKey};
use proto::hls::Readiness;
use proto::hls::{Availability, Container};
use proto::http::HlsFile;
use proto::http::{self, BodyDecoder, HttpLimits, Parse, Request, Response, ResponseHead, Route};

/// How long a segment or part request waits for the shard's copy of the
/// stream's HLS window when it has none yet (the owner's snapshot is on
/// its way: milliseconds, unless the owner is stuck).
const REPLICA_SYNC_WAIT: Duration = Duration::from_secs(1);
/// How long a cache may keep the answer to a blocking playlist reload.
const BLOCKING_RELOAD_MAX_AGE_S: u64 = 6;
/// Blocking timeout before a window knows its target duration (3 × 2 s).
const BLOCKING_TIMEOUT_DEFAULT_MS: u64 = 6_000;
/// A body up to this long is written in one write with its head.
const BODY_INLINE_MAX: usize = 16 * 1024;

/// What a handler decided.
enum Answer {
    /// Write this response; then read the next request if both sides keep
    /// the connection alive.
    Reply(Response),
    /// Stream FLV on this connection (it takes the connection over).
    Flv(Request, StreamKey),
}

/// Serves HTTP requests on `conn`, starting with the bytes already read.
pub async fn run(
    shard: Rc<Shard>,
    mut conn: Transport,
    first: Vec<u8>,
    mut slot: ConnSlot,
    reg: Registered,
) {
    let peer = reg.state.peer;
    let limits = HttpLimits {
        header_bytes_max: shard.config().http.header_bytes_max,
        headers_max: shard.config().http.headers_max,
    };
    let mut buf = BytesMut::from(&first[..]);
    drop(first);
    let mut read_buf = vec![0u8; READ_BUF_LEN];
    // Between requests a connection may idle `http.keepalive_timeout_s`;
    // once a request's first byte is in, its whole head (and body) must
    // arrive within `http.header_timeout_s`, however slowly it trickles
    // (a deadline for the whole head, not per byte: slowloris).
    let idle = || {
        Deadline::after(
            Duration::from_secs(shard.config().http.keepalive_timeout_s),
            "http.keepalive_timeout_s",
            "the next HTTP request",
        )
    };
    let head = || {
        Deadline::after(
            Duration::from_secs(shard.config().http.header_timeout_s),
            "http.header_timeout_s",
            "the rest of an HTTP request head",
        )
    };
    let mut head_started = !buf.is_empty();
    let mut deadline = if head_started { head() } else { idle() };
    let flv = loop {
        let request = match http::parse_request(&buf, &limits) {
            Parse::Incomplete => {
                if !head_started && !buf.is_empty() {
                    head_started = true;
                    deadline = head();
                }
                match read_more(
                    &mut conn,
                    &mut buf,
                    &mut read_buf,
                    &mut slot,
                    &reg,
                    deadline,
                )
                .await
                {
                    Ok(true) => continue,
                    Ok(false) => break None,
                    Err(
                        e @ ConnError::Deadline {
                            bound: "http.header_timeout_s",
                            ..
                        },
                    ) => {
                        log::info!("peer={peer} closed: {e} ({} bytes of it)", buf.len());
                        break None;
                    }
                    Err(e) => {
                        log::debug!("peer={peer} http: {e}");
                        break None;
                    }
                }
            }
            Parse::Invalid { status, what } => {
                log::warn!("peer={peer} error=bad HTTP request: {what}");
                let reply = Response::text(status, format!("{what}\n"), false);
                let _ = write_response(&mut conn, &mut slot, 1, false, &reply).await;
                break None;
            }
            Parse::Complete { request, consumed } => {
                buf.advance(consumed);
                request
            }
        };
        log::debug!("http peer={peer} {} {}", request.method, request.path);
        if let Err(refused) = skip_body(
            &mut conn,
            &mut buf,
            &mut read_buf,
            &mut slot,
            &reg,
            &request,
            shard.config().http.body_bytes_max,
            deadline,
        )
        .await
        {
            if let Some(reply) = refused {
                log::warn!(
                    "peer={peer} error=bad HTTP request body: {}",
                    reply_text(&reply)
                );
                let _ = write_response(&mut conn, &mut slot, request.minor_version, false, &reply)
                    .await;
            }
            break None;
        }
        let (v, head_only) = (request.minor_version, request.method == "HEAD");
        let access = crate::logging::access().then(|| Access::of(&request));
        // Boxed: a streaming FLV player keeps none of a request's state.
        match Box::pin(handle(&shard, &reg, request)).await {
            Answer::Reply(reply) => {
                let keep = reply.head.keep_alive;
                let written = write_response(&mut conn, &mut slot, v, head_only, &reply).await;
                if let Some(access) = access {
                    let body = if head_only { 0 } else { reply.body.len() };
                    access.log(peer, reply.head.status, body as u64);
                }
                if written.is_err() || !keep {
                    break None;
                }
                head_started = !buf.is_empty();
                deadline = if head_started { head() } else { idle() };
            }
            Answer::Flv(request, key) => break Some((request, key)),
        }
    };
    // A streaming player keeps none of the request buffers.
    drop((buf, read_buf));
    if let Some((request, key)) = flv {
        // A task of its own, and this one ends: a task keeps the memory of
        // its largest state (here the request loop's) while it lives.
        glommio::spawn_local(serve_flv(shard, conn, slot, reg, request, key)).detach();
        return;
    }
    log_close(peer, None, &slot, None);
}

/// Reads more bytes into `buf`; false when the connection closed.
async fn read_more(
    conn: &mut Transport,
    buf: &mut BytesMut,
    read_buf: &mut [u8],
    slot: &mut ConnSlot,
    reg: &Registered,
    deadline: Deadline,
) -> Result<bool, ConnError> {
    match read_some(conn, read_buf, &reg.state.close, Some(deadline)).await? {
        Some(n) => {
            slot.bytes_in += n as u64;
            reg.state.last_active.set(Instant::now());
            buf.extend_from_slice(&read_buf[..n]);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Reads past the request's body, discarding it, so that the next request
/// of a keep-alive connection starts where it should. Err(Some(reply)):
/// answer that and close; Err(None): the connection is gone.
#[allow(clippy::too_many_arguments)]
async fn skip_body(
    conn: &mut Transport,
    buf: &mut BytesMut,
    read_buf: &mut [u8],
    slot: &mut ConnSlot,
    reg: &Registered,
    req: &Request,
    body_bytes_max: u64,
    deadline: Deadline,
) -> Result<(), Option<Response>> {
    let too_long = || {
        Some(Response::text(
            413,
            format!("request body over {body_bytes_max} bytes (http.body_bytes_max)\n"),
            false,
        ))
    };
    if let http::Framing::Length(n) = req.body {
        if n > body_bytes_max {
            return Err(too_long());
        }
    }
    let mut body = BodyDecoder::new(req.body);
    let mut seen = 0u64;
    while !body.is_done() {
        if !buf.is_empty() {
            let (used, data) = body.decode(buf).map_err(|e| {
                Some(Response::text(
                    400,
                    format!("bad request body: {e}\n"),
                    false,
                ))
            })?;
            seen += data.len() as u64;
            buf.advance(used);
            if seen > body_bytes_max {
                return Err(too_long());
            }
            continue;
        }
        match read_more(conn, buf, read_buf, slot, reg, deadline).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(None),
        }
    }
    Ok(())
}

/// The first line of a plain-text reply, for the log.
fn reply_text(reply: &Response) -> String {
    String::from_utf8_lossy(&reply.body).trim_end().to_string()
}

/// Writes `reply` (without its body for HEAD).
async fn write_response(
    conn: &mut Transport,
    slot: &mut ConnSlot,
    minor_version: u8,
    head_only: bool,
    reply: &Response,
) -> std::io::Result<()> {
    let mut out = reply.head.render(minor_version);
    if head_only || reply.body.is_empty() {
        return write_all(conn, &out, slot).await;
    }
    if reply.body.len() <= BODY_INLINE_MAX {
        out.extend_from_slice(&reply.body);
        return write_all(conn, &out, slot).await;
    }
    write_all(conn, &out, slot).await?;
    write_all(conn, &reply.body, slot).await
}

/// Answers one request, or says that the connection becomes a player.
async fn handle(shard: &Rc<Shard>, reg: &Registered, req: Request) -> Answer {
    let keep = req.keep_alive;
    let route = http::route(&req.path);
    // The JSON API, and which port may serve what (`internal_port`).
    if let Some(reply) = super::api::handle(shard, reg, &req, &route).await {
        return Answer::Reply(reply);
    }
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            return Answer::Reply(Response::empty(
                204,
                vec![
                    "Access-Control-Allow-Methods: GET, HEAD, OPTIONS".into(),
                    "Access-Control-Allow-Headers: *".into(),
                    "Access-Control-Max-Age: 86400".into(),
                ],
                keep,
            ))
        }
        other => {
            return Answer::Reply(
                Response::text(
                    405,
                    format!("method {other} is not allowed; use GET or HEAD\n"),
                    keep,
                )
                .with_header("Allow: GET, HEAD, OPTIONS".into()),
            )
        }
    }
    let reply = match route {
        Route::Index => Response::new(200, "text/html; charset=utf-8", crate::pages::PAGE, keep),
        Route::Dashboard => Response::new(
            200,
            "text/html; charset=utf-8",
            crate::pages::DASHBOARD,
            keep,
        ),
        route @ (Route::Metrics | Route::ApiStats | Route::ApiShards) => {
            let (kind, body) = super::stats::answer(shard, &route)
                .await
                .unwrap_or_default();
            Response::new(200, kind, body, keep)
        }
        Route::ApiStreams => {
            Response::new(200, "application/json", streams_json(shard).await, keep)
        }
        Route::Asset { package, path } => match shard.asset(&package, &path) {
            Some(bytes) => Response::new(200, content_type_of(&path), bytes, keep),
            None => Response::text(
                404,
                format!(
                    "{package}/{path} is not installed: run `npm ci` in the shardcast directory \
                     (http.assets_dir = {:?})\n",
                    shard.config().http.assets_dir
                ),
                keep,
            ),
        },
        // API routes were answered by `api::handle` above.
        Route::NotFound | Route::Api(_) => {
            Response::text(404, format!("no such path: {}\n", req.path), keep)
        }
        Route::Playlist { app, stream: name } => {
            let key = shard.key_for(req.param("vhost"), req.host.as_deref(), &app, &name);
            if let Err(r) = decide_play(shard, reg, &req, &key, Protocol::Hls).await {
                return Answer::Reply(r);
            }
            let container = match req.param("container").map(|c| (c, Container::from_name(c))) {
                None => None,
                Some((_, Some(c))) => Some(c),
                Some((c, None)) => {
                    return Answer::Reply(Response::text(
                        400,
                        format!("container={c}: give ts or fmp4\n"),
                        keep,
                    ))
                }
            };
            let filter = MediaFilter::from_query(&req.query);
            let (status, body) = playlist(shard, &req, &key, filter, container, &name, reg).await;
            if status == 200 {
                Response::new(200, "application/vnd.apple.mpegurl", body, keep)
                    .with_header(playlist_cache_control(&req))
            } else {
                Response::text(status, body, keep)
            }
        }
        Route::Media {
            app,
            stream: name,
            rendition,
            container,
            file,
        } => {
            let key = shard.key_for(req.param("vhost"), req.host.as_deref(), &app, &name);
            if let Err(r) = decide_play(shard, reg, &req, &key, Protocol::Hls).await {
                return Answer::Reply(r);
            }
            let r = rendition_at(&rendition, container);
            match media(shard, &key, r, file, reg).await {
                Ok(bytes) => Response::new(200, container.content_type(), bytes, keep)
                    .with_header(media_cache_control(shard)),
                Err((status, what)) => Response::text(status, what, keep),
            }
        }
        Route::Flv { app, stream: name } => {
            let key = shard.key_for(req.param("vhost"), req.host.as_deref(), &app, &name);
            if let Err(r) = decide_play(shard, reg, &req, &key, Protocol::HttpFlv).await {
                return Answer::Reply(r);
            }
            if !shard
                .wait_live(&key, shard.stream_wait(), &reg.state.close)
                .await
            {
                return Answer::Reply(Response::text(
                    404,
                    format!("stream {key} is not published\n"),
                    keep,
                ));
            }
            if req.method == "HEAD" {
                let head = ResponseHead {
                    status: 200,
                    content_type: Some("video/x-flv"),
                    content_length: None,
                    chunked: req.minor_version == 1,
                    keep_alive: false,
                    extra: vec![],
                };
                return Answer::Reply(Response {
                    head,
                    body: Bytes::new(),
                });
            }
            return Answer::Flv(req, key);
        }
    };
    Answer::Reply(reply)
}

/// A live playlist changes with every part: a plain reload must not be
/// served from a cache. A blocking reload (`_HLS_msn`) names the part it
/// waits for, and any answer to it stays a correct answer, so a cache may
/// keep it for a few target durations (every player of that part then
/// gets it from the cache).
fn playlist_cache_control(req: &Request) -> String {
    if req.param("_HLS_msn").is_some() {
        format!("Cache-Control: public, max-age={BLOCKING_RELOAD_MAX_AGE_S}")
    } else {
        "Cache-Control: no-cache".to_string()
    }
}

/// A segment or part never changes under its URI while its numbering
/// lives, and the numbering outlives the stream's last publisher by
/// `stream.publisher_grace_s` (a later publish may start again from 0):
/// that is how long a cache may keep it.
fn media_cache_control(shard: &Shard) -> String {
    format!(
        "Cache-Control: public, max-age={}, immutable",
        shard.config().stream.publisher_grace_s
    )
}

/// Asks for the play decision of an HTTP request (before its response's
/// first byte); Err is the refusal's response.
async fn decide_play(
    shard: &Rc<Shard>,
    reg: &Registered,
    req: &Request,
    key: &StreamKey,
    protocol: Protocol,
) -> Result<(), Response> {
    let ask = Ask {
        action: Action::Play,
        key,
        protocol,
        peer: reg.state.peer,
        query: &req.query,
        client_id: reg.id,
        tc_url: None,
    };
    shard.decide(&ask).await.map_err(|refusal| {
        log::warn!(
            "refused action=play key={key} peer={} protocol={protocol:?} blame={:?} reason={refusal}",
            reg.state.peer,
            refusal.blame
        );
        Response::text(
            refusal.http_status(),
            format!("{refusal}\n"),
            req.keep_alive,
        )
    })
}

/// Answers a playlist request for `key` in `container` (when the request
/// names none, [`crate::stream::StreamTable::container_of`]'s choice,
/// known once this shard has the stream's sequence headers): waits for
/// the stream's first segment (up to `http.stream_wait_s`), then applies
/// the LL-HLS delivery directives (RFC 8216bis 6.2.5): `_HLS_msn`/
/// `_HLS_part` block until that part exists, `_HLS_skip=YES` asks for a
/// delta update. `?multivariant=1` answers the multivariant playlist
/// instead ([`multivariant`]).
async fn playlist(
    shard: &Rc<Shard>,
    req: &Request,
    key: &StreamKey,
    filter: MediaFilter,
    container: Option<Container>,
    name: &str,
    reg: &Registered,
) -> (u16, String) {
    reg.count.classify(Protocol::Hls);
    let msn = req.param("_HLS_msn").map(str::parse::<u64>);
    let part = req.param("_HLS_part").map(str::parse::<u32>);
    let (msn, part) = match (msn, part) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return (400, "_HLS_msn and _HLS_part must be numbers\n".into())
        }
        (None, Some(_)) => return (400, "_HLS_part without _HLS_msn\n".into()),
        (m, p) => (m.and_then(Result::ok), p.and_then(Result::ok)),
    };
    let skip = matches!(req.param("_HLS_skip"), Some("YES" | "v2"));
    let waited_from = Instant::now();
    let chosen = || container.unwrap_or_else(|| shard.table.borrow().container_of(key));
    let mut r = Rendition::for_filter(filter, chosen());
    let mut notify = wait_hls(shard, key, r, shard.stream_wait(), reg).await;
    if notify.is_some() && chosen() != r.container {
        // The sequence headers arrived with the window: the stream has a
        // track TS cannot carry.
        r = Rendition::for_filter(filter, chosen());
        notify = wait_hls(shard, key, r, shard.stream_wait(), reg).await;
    }
    let Some(notify) = notify else {
        return (
            404,
            format!("stream {key} has no HLS segments (not published?)\n"),
        );
    };
    if r.container == Container::Ts {
        let tracks: Vec<_> = shard.table.borrow().ts_tracks(key, r.media).collect();
        if !tracks.is_empty() && tracks.iter().all(|(_, carried)| !carried) {
            let names: Vec<String> = tracks.iter().map(|(c, _)| c.to_string()).collect();
            return (
                404,
                format!(
                    "stream {key}: MPEG-TS has no mapping for its {}; ask for ?container=fmp4\n",
                    names.join(" and ")
                ),
            );
        }
    }
    // A rendition that started on this request (fMP4, audio or video
    // only) has only the parts of its first segment for up to a GOP; a
    // playlist with no whole segment is an empty one to hls.js (its
    // levelEmptyError), so the first answer waits for one, within the
    // same stream_wait. Past that the parts alone are the answer.
    let deadline = waited_from + shard.stream_wait();
    loop {
        let seen = notify.generation();
        let listed = shard.with_hls(key, r, |w| w.lists_a_segment() || w.is_ended());
        if listed != Some(false) || Instant::now() >= deadline || reg.state.close.is_raised() {
            break;
        }
        follow_until_change(shard, key, r, &notify, seen, deadline).await;
    }
    if let Some(msn) = msn {
        let (timeout, deadline) = blocking_deadline(shard, key, r);
        loop {
            let seen = notify.generation();
            match shard.with_hls(key, r, |w| w.readiness(msn, part)) {
                Some(Readiness::Ready) => break,
                Some(Readiness::Reject) => {
                    return (
                        400,
                        format!("_HLS_msn={msn} is too far ahead of the stream\n"),
                    )
                }
                Some(Readiness::Wait) => {}
                None => {
                    return (
                        503,
                        format!("stream {key} has no HLS window any more (no publisher)\n"),
                    )
                }
            }
            if Instant::now() >= deadline || reg.state.close.is_raised() {
                return (
                    503,
                    format!("_HLS_msn={msn} did not arrive within {timeout} ms\n"),
                );
            }
            follow_until_change(shard, key, r, &notify, seen, deadline).await;
        }
    }
    let base = format!("{name}/{}", r.path_prefix());
    // Segment and part requests must reach the same stream: when `?vhost=`
    // chose its vhost, their URIs carry it (a Host header is sent again).
    // They carry the playlist request's signature too, so one signed URL
    // serves a whole HLS session, checked locally per request.
    // With `auth.play = "hook"` they carry the playlist's whole query
    // (less the LL-HLS directives): an HLS session is known by it, so the
    // hook is asked once per session (`hooks::HlsSessions`).
    let mut carried: Vec<(&str, &str)> = Vec::with_capacity(3);
    if shard.config().auth.play == crate::config::AuthMode::Hook {
        carried = super::hooks::session_query(&req.query);
    } else if let Some(v) = req.param("vhost") {
        if key
            .strip_prefix(v)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            carried.push(("vhost", v));
        }
    }
    if shard.config().auth.play != crate::config::AuthMode::Hook {
        for p in [proto::sign::EXPIRES, proto::sign::SIGN] {
            if let Some(v) = req.param(p) {
                carried.push((p, v));
            }
        }
    }
    if req.param("multivariant").is_some_and(|v| v != "0") {
        carried.insert(0, ("container", r.container.name()));
        let uri = format!("{name}.m3u8{}", proto::query::carry(&carried));
        return match multivariant(shard, key, r, uri) {
            Some(text) => (200, text),
            None => (404, format!("stream {key} is gone\n")),
        };
    }
    let query = proto::query::carry(&carried);
    let uris = proto::hls::UriForm {
        prefix: &base,
        query: &query,
    };
    match shard.with_hls(key, r, |w| w.render(uris, skip)) {
        Some(text) => {
            shard.count_hls_request(key);
            (200, text)
        }
        None => (404, format!("stream {key} is gone\n")),
    }
}

/// The multivariant playlist of `key` (`?multivariant=1`): one variant,
/// the media playlist `uri` of rendition `r`, with the CODECS of its
/// tracks, the picture's RESOLUTION, the FRAME-RATE of the GOP cache's
/// timestamps and the window's bit rates. A track the rendition filters
/// out, or a codec it cannot carry (MPEG-TS: AV1, VP9, Opus), is not
/// named.
fn multivariant(shard: &Shard, key: &StreamKey, r: Rendition, uri: String) -> Option<String> {
    let (peak, average) = shard.with_hls(key, r, |w| w.bit_rates())?.unwrap_or((0, 0));
    let table = shard.table.borrow();
    let core = &table.get(key)?.core;
    let in_container =
        |c: proto::ts::Codec| r.container == Container::Fmp4 || c.stream_type().is_some();
    let video = core
        .video_params()
        .filter(|v| r.media != Media::AudioOnly && in_container(proto::ts::Codec::Video(v.codec)));
    let audio = core
        .audio_params()
        .filter(|a| r.media != Media::VideoOnly && in_container(proto::ts::Codec::Audio(a.codec)));
    let variant = proto::hls::Variant {
        uri,
        bandwidth: peak,
        average_bandwidth: Some(average),
        codecs: video
            .iter()
            .map(|v| v.codecs.clone())
            .chain(audio.iter().map(|a| a.codecs.clone()))
            .collect(),
        resolution: video.as_ref().and_then(|v| Some((v.width?, v.height?))),
        frame_rate: video.as_ref().and_then(|_| core.video_frame_rate()),
    };
    Some(proto::hls::render_multivariant(&[variant]))
}

/// The rendition a media URI's folder (`""`, `"audio"`, `"video"`) and
/// container name.
fn rendition_at(folder: &str, container: Container) -> Rendition {
    let filter = MediaFilter {
        audio: folder != "video",
        video: folder != "audio",
    };
    Rendition::for_filter(filter, container)
}

/// A segment, part or init segment, as the shard's window answers for it
/// ([`Availability`]): here, still to come (held until it arrives, up to
/// the blocking timeout of three target durations, RFC 8216bis 6.2.5.2 and
/// 6.2.6: LL-HLS players request the hinted part early, and a playlist
/// from a shard further ahead may name a part this shard's copy has not
/// applied yet), or never (404 at once). Both containers, TS and fMP4,
/// take this one path.
async fn media(
    shard: &Rc<Shard>,
    key: &StreamKey,
    r: Rendition,
    file: HlsFile,
    reg: &Registered,
) -> Result<Bytes, (u16, String)> {
    reg.count.classify(Protocol::Hls);
    // A shard with no copy of the stream yet (the request is its first)
    // subscribes now and gets the owner's window a moment later: wait for
    // it rather than answer 404 for a segment that exists.
    let Some(notify) = wait_hls(shard, key, r, REPLICA_SYNC_WAIT, reg).await else {
        return Err((404, format!("stream {key} is not published\n")));
    };
    let (_, deadline) = blocking_deadline(shard, key, r);
    loop {
        let seen = notify.generation();
        let found = shard
            .with_hls(key, r, |w| match file {
                HlsFile::Media { msn, part } => w.media(msn, part),
                HlsFile::Init(id) => w.init_segment(id),
            })
            .unwrap_or(Availability::Gone);
        let waited_out = Instant::now() >= deadline || reg.state.close.is_raised();
        match found {
            Availability::Here(bytes) => {
                shard.count_hls_request(key);
                return Ok(bytes);
            }
            Availability::Coming if !waited_out => {}
            Availability::Coming | Availability::Gone => {
                let what = match file {
                    HlsFile::Media { msn, part: Some(p) } => format!("part {msn}.{p}"),
                    HlsFile::Media { msn, part: None } => format!("segment {msn}"),
                    HlsFile::Init(id) => format!("init segment {id}"),
                };
                let why = if matches!(found, Availability::Gone) {
                    "is not available"
                } else {
                    "did not arrive in time"
                };
                return Err((404, format!("{what} of {key} ({r}) {why}\n")));
            }
        }
        follow_until_change(shard, key, r, &notify, seen, deadline).await;
    }
}

/// Sleeps until the stream's HLS state changes past generation `seen`, or
/// WAIT_REFRESH or `deadline` passes, then follows the stream again: a
/// held request wakes on any change and follows at least every
/// WAIT_REFRESH (a replica, or the owner's entry, would otherwise be
/// dropped under a request held on a stream with no publisher).
async fn follow_until_change(
    shard: &Rc<Shard>,
    key: &StreamKey,
    r: Rendition,
    notify: &Notify,
    seen: u64,
    deadline: Instant,
) {
    let nap = deadline
        .saturating_duration_since(Instant::now())
        .min(WAIT_REFRESH);
    let _ = futures_lite::future::or(notify.changed(seen), glommio::timer::sleep(nap)).await;
    shard.watch_hls(key, r);
}

/// How long a blocking request on `key`/`r` may wait (3 target durations,
/// RFC 8216bis 6.2.5.2), in ms, and until when.
fn blocking_deadline(shard: &Shard, key: &StreamKey, r: Rendition) -> (u64, Instant) {
    let timeout = shard
        .with_hls(key, r, |w| w.blocking_timeout_ms())
        .unwrap_or(BLOCKING_TIMEOUT_DEFAULT_MS);
    (timeout, Instant::now() + Duration::from_millis(timeout))
}

/// Waits up to `wait` for the rendition's window to have a segment or part.
async fn wait_hls(
    shard: &Rc<Shard>,
    key: &StreamKey,
    r: Rendition,
    wait: Duration,
    reg: &Registered,
) -> Option<Rc<Notify>> {
    let deadline = Instant::now() + wait;
    loop {
        let watched = shard.watch_hls(key, r);
        if let Some((notify, true)) = watched {
            return Some(notify);
        }
        if Instant::now() >= deadline || reg.state.close.is_raised() {
            return None;
        }
        match watched {
            Some((notify, _)) => {
                let seen = notify.generation();
                let nap = deadline
                    .saturating_duration_since(Instant::now())
                    .min(WAIT_REFRESH);
                let _ = futures_lite::future::or(notify.changed(seen), glommio::timer::sleep(nap))
                    .await;
            }
            None => glommio::timer::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// `{"streams":[...]}` for `/api/streams`.
async fn streams_json(shard: &Rc<Shard>) -> Vec<u8> {
    let keys = shard.all_live_keys().await;
    let streams: Vec<serde_json::Value> = keys
        .iter()
        .filter_map(|key| {
            let mut it = key.splitn(3, '/');
            let (vhost, app, name) = (it.next()?, it.next()?, it.next()?);
            let q = if vhost == shard.config().default_vhost {
                String::new()
            } else {
                format!("?vhost={vhost}")
            };
            Some(serde_json::json!({
                "key": key.as_ref(),
                "vhost": vhost,
                "app": app,
                "stream": name,
                "flv": format!("/{app}/{name}.flv{q}"),
                "hls": format!("/{app}/{name}.m3u8{q}"),
                "rtmp_path": format!("/{app}/{name}"),
            }))
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).unwrap_or_default()
}

/// Content-Type by file extension, for `/assets/`.
fn content_type_of(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js" | "mjs") => "application/javascript; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    }
}

/// Streams FLV to an HTTP player until the stream or the connection ends.
async fn serve_flv(
    shard: Rc<Shard>,
    conn: Transport,
    slot: ConnSlot,
    reg: Registered,
    req: Request,
    key: StreamKey,
) {
    let peer = reg.state.peer;
    let client_id = reg.id;
    let chunked = req.minor_version == 1;
    let filter = MediaFilter::from_query(&req.query);
    // The player's id is its client id, so the API can name it.
    let player = Rc::new(Player::new(
        reg.id,
        peer,
        PlayerFormat::Flv { chunked },
        filter,
        shard.config().stream.player_queue_bytes_max,
    ));
    let head = ResponseHead {
        status: 200,
        content_type: Some("video/x-flv"),
        content_length: None,
        chunked,
        keep_alive: false,
        extra: vec![],
    };
    {
        let mut q = player.queue.borrow_mut();
        q.push_control(&[Bytes::from(head.render(req.minor_version))]);
        let header = proto::flv::file_header(filter.audio, filter.video);
        if chunked {
            let mut framed = BytesMut::with_capacity(header.len() + 8);
            framed.extend_from_slice(http::chunk_size_line(header.len()).as_bytes());
            framed.extend_from_slice(&header);
            framed.extend_from_slice(b"\r\n");
            q.push_control(&[framed.freeze()]);
        } else {
            q.push_control(&[header]);
        }
    }
    let access = crate::logging::access().then(|| Access::of(&req));
    reg.set_what(ConnWhat::Player(key.clone(), "http-flv"));
    reg.count.classify(Protocol::HttpFlv);
    let cached = shard.attach_player(&key, player.clone());
    log::info!(
        "play key={key} peer={peer} shard={} protocol=http-flv gop_frames={cached} audio={} video={}",
        shard.id(),
        filter.audio,
        filter.video
    );
    let bytes = drive_player(
        &shard,
        conn,
        &key,
        player,
        slot,
        reg,
        // A streaming response reads nothing more of the request; what a
        // client sends now is ignored (the connection closes when it does).
        |_, _| Ok(None),
        |queue| {
            if chunked {
                queue.push_control(&[Bytes::from_static(http::LAST_CHUNK)]);
            }
        },
    )
    .await;
    if let Some(access) = access {
        access.log(peer, 200, bytes);
    }
    shard.hooks.notify_end(&Ask {
        action: Action::Play,
        key: &key,
        protocol: Protocol::HttpFlv,
        peer,
        query: &req.query,
        client_id,
        tc_url: None,
    });
}

/// Query parameters whose values the access log does not write: they are
/// credentials (signed URLs, tokens).
const ACCESS_REDACTED: [&str; 3] = ["sign", "token", "secret"];

/// What `log.access` writes of a request, taken before it is answered.
struct Access {
    started: Instant,
    method: String,
    target: String,
    user_agent: String,
}

impl Access {
    fn of(req: &Request) -> Self {
        let mut target = req.path.clone();
        for (i, (k, v)) in req.query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(k);
            target.push('=');
            target.push_str(if ACCESS_REDACTED.contains(&k.as_str()) { "-" } else { v });
        }
        Access {
            started: Instant::now(),
            method: req.method.clone(),
            target,
            user_agent: req.user_agent.clone().unwrap_or_default(),
        }
    }

    /// One line: peer, request, status, body bytes sent (for HTTP-FLV, every
    /// byte of the response), milliseconds until written, User-Agent.
    fn log(self, peer: std::net::SocketAddr, status: u16, bytes: u64) {
        log::info!(
            target: crate::logging::ACCESS_TARGET,
            "{peer} \"{} {}\" {status} {bytes} {}ms {:?}",
            self.method,
            self.target,
            self.started.elapsed().as_millis(),
            self.user_agent
        );
    }
}
