//! The HTTP session driver: keep-alive request loop, CORS preflight, and
//! HTTP-FLV players served from this shard's copy of the stream.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use glommio::net::TcpStream;

use super::conn::{
    drive_player, log_close, read_some, write_all, ConnSlot, Registered, READ_BUF_LEN,
};
use super::Shard;
use crate::http::{self, HttpLimits, Parse, Request, ResponseHead, Route};
use crate::stream::{MediaFilter, Player, PlayerFormat};

/// How often a request waiting for a publisher checks again.
const STREAM_WAIT_POLL: Duration = Duration::from_millis(20);

/// What to do after answering a request.
enum Next {
    /// Read the next request on this connection.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Stream FLV on this connection (it takes the connection over).
    Flv(Request, crate::stream::StreamKey),
}

/// Serves HTTP requests on `stream`, starting with the bytes already read.
pub async fn run(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    first: Vec<u8>,
    mut slot: ConnSlot,
    reg: Registered,
) {
    let peer = reg.state.peer;
    let limits = HttpLimits {
        header_bytes_max: shard.config.http.header_bytes_max,
        headers_max: shard.config.http.headers_max,
    };
    let mut buf = BytesMut::from(&first[..]);
    let mut read_buf = vec![0u8; READ_BUF_LEN];
    loop {
        match http::parse_request(&buf, &limits) {
            Parse::Incomplete => {
                let deadline = Instant::now() + shard.config.rtmp.handshake_timeout();
                match read_some(&mut stream, &mut read_buf, &reg.state.close, Some(deadline)).await
                {
                    Ok(Some(n)) => {
                        slot.bytes_in += n as u64;
                        reg.state.last_active.set(Instant::now());
                        buf.extend_from_slice(&read_buf[..n]);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::debug!("peer={peer} http read: {e}");
                        break;
                    }
                }
            }
            Parse::Invalid { status, what } => {
                log::warn!("peer={peer} error=bad HTTP request: {what}");
                let _ = respond(&mut stream, &mut slot, 1, status, &what, false, false).await;
                break;
            }
            Parse::Complete { request, consumed } => {
                buf.advance(consumed);
                log::debug!("http peer={peer} {} {}", request.method, request.path);
                match handle(&shard, &mut stream, &mut slot, &reg, request).await {
                    Next::KeepAlive => continue,
                    Next::Close => break,
                    Next::Flv(request, key) => {
                        serve_flv(shard, stream, slot, reg, request, key).await;
                        return;
                    }
                }
            }
        }
    }
    log_close(peer, None, &slot, None);
}

/// Answers one request, or says that the connection becomes a player.
async fn handle(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    slot: &mut ConnSlot,
    reg: &Registered,
    req: Request,
) -> Next {
    let keep = req.keep_alive;
    let v = req.minor_version;
    let head_only = req.method == "HEAD";
    match req.method.as_str() {
        "GET" | "HEAD" => {}
        "OPTIONS" => {
            let mut h = ResponseHead::new(204, None, 0, keep);
            h.extra
                .push("Access-Control-Allow-Methods: GET, HEAD, OPTIONS".into());
            h.extra.push("Access-Control-Allow-Headers: *".into());
            h.extra.push("Access-Control-Max-Age: 86400".into());
            return finish(write_all(stream, &h.render(v), slot).await, keep);
        }
        other => {
            let body = format!("method {other} is not allowed; use GET or HEAD\n");
            let mut h = ResponseHead::new(405, Some("text/plain"), body.len(), keep);
            h.extra.push("Allow: GET, HEAD, OPTIONS".into());
            let mut out = h.render(v);
            out.extend_from_slice(body.as_bytes());
            return finish(write_all(stream, &out, slot).await, keep);
        }
    }
    match http::route(&req.path) {
        Route::Index => {
            let body = index_page(shard);
            let r = respond_body(
                stream,
                slot,
                v,
                200,
                "text/html; charset=utf-8",
                &body,
                keep,
                head_only,
            )
            .await;
            finish(r, keep)
        }
        Route::NotFound => {
            let body = format!("no such path: {}\n", req.path);
            finish(
                respond(stream, slot, v, 404, &body, keep, head_only).await,
                keep,
            )
        }
        Route::Flv { app, stream: name } => {
            let key = shard.key_for(req.param("vhost"), req.host.as_deref(), &app, &name);
            let wait = Duration::from_secs(shard.config.http.stream_wait_s);
            if !wait_live(shard, &key, wait, reg).await {
                let body = format!("stream {key} is not published\n");
                return finish(
                    respond(stream, slot, v, 404, &body, keep, head_only).await,
                    keep,
                );
            }
            if head_only {
                let h = ResponseHead {
                    status: 200,
                    content_type: Some("video/x-flv"),
                    content_length: None,
                    chunked: v == 1,
                    keep_alive: false,
                    extra: vec![],
                };
                let _ = write_all(stream, &h.render(v), slot).await;
                return Next::Close;
            }
            Next::Flv(req, key)
        }
    }
}

fn finish(r: std::io::Result<()>, keep: bool) -> Next {
    match r {
        Ok(()) if keep => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// Waits up to `wait` for the stream to be live on this shard.
async fn wait_live(
    shard: &Rc<Shard>,
    key: &crate::stream::StreamKey,
    wait: Duration,
    reg: &Registered,
) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if shard.watch_live(key) {
            return true;
        }
        if Instant::now() >= deadline || reg.state.close.is_raised() {
            return false;
        }
        glommio::timer::sleep(STREAM_WAIT_POLL).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    stream: &mut TcpStream,
    slot: &mut ConnSlot,
    v: u8,
    status: u16,
    body: &str,
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    respond_body(
        stream,
        slot,
        v,
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        keep,
        head_only,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn respond_body(
    stream: &mut TcpStream,
    slot: &mut ConnSlot,
    v: u8,
    status: u16,
    content_type: &'static str,
    body: &[u8],
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = ResponseHead::new(status, Some(content_type), body.len(), keep).render(v);
    if !head_only {
        out.extend_from_slice(body);
    }
    write_all(stream, &out, slot).await
}

/// Streams FLV to an HTTP player until the stream or the connection ends.
pub async fn serve_flv(
    shard: Rc<Shard>,
    stream: TcpStream,
    slot: ConnSlot,
    reg: Registered,
    req: Request,
    key: crate::stream::StreamKey,
) {
    let peer = reg.state.peer;
    let chunked = req.minor_version == 1;
    let filter = MediaFilter {
        audio: !req.flag("only-video"),
        video: !req.flag("only-audio"),
    };
    let player = Rc::new(Player::new(
        shard.next_id(),
        peer,
        PlayerFormat::Flv { chunked },
        filter,
        shard.config.stream.player_queue_bytes_max,
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
        let header = crate::flv::file_header(filter.audio, filter.video);
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
    let cached = shard.attach_player(&key, player.clone());
    log::info!(
        "play key={key} peer={peer} shard={} protocol=http-flv gop_frames={cached} audio={} video={}",
        shard.id(),
        filter.audio,
        filter.video
    );
    drive_player(
        &shard,
        stream,
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
}

/// The page at `/`.
fn index_page(shard: &Shard) -> Vec<u8> {
    let mut rows = String::new();
    for key in shard.live_keys() {
        let Some((_, rest)) = key.split_once('/') else {
            continue;
        };
        rows.push_str(&format!(
            "<li><code>{rest}</code>: <a href=\"/{rest}.flv\">HTTP-FLV</a>, <code>rtmp://HOST:{}/{rest}</code></li>\n",
            shard.config.port
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>No live streams seen by this shard yet.</li>\n");
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>shardcast</title></head>\n\
         <body><h1>shardcast</h1>\n<ul>\n{rows}</ul>\n</body></html>\n"
    )
    .into_bytes()
}
