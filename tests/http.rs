//! Integration tests of HTTP on the one port and of HTTP-FLV: the real
//! `shardcast` binary on a free port with `--shards 2`, ffmpeg publishing
//! over RTMP, and players that are either ffprobe or the raw-socket client
//! in `common::http_client` (so a test sees status lines, headers, chunk
//! framing and FLV tags byte for byte).
//!
//! Each test starts its own server; every wait has a deadline and every
//! process is ended by PID. Server logs and tool output are kept in
//! `target/tmp/logs/<test>/`.

mod common;

use std::time::{Duration, Instant};

use common::http_client::{
    self, describe_flv, flv_max_video_gap, flv_video_frames_between, BgFlvPlayer, ChunkDecoder,
    FlvDemux, FlvTag, HttpConn,
};
use common::*;

fn key() -> String {
    format!("{DEFAULT_VHOST}/live/test")
}

/// ffprobe reads `http://…/live/test.flv` and gets H.264 + AAC at the
/// published rates (30 fps, 43 AAC frames/s, within 10%) with strictly
/// increasing DTS over at least 5 s of stream time.
#[test]
fn ffprobe_reads_http_flv_h264_aac_at_full_rate() {
    let server = Server::start();
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let url = server.http_url("live/test.flv");
    let probe = ffprobe("ffprobe-http-flv", &url, Some(6.0), Duration::from_secs(30));
    let s = check_h264_aac(&probe, 5.0).unwrap_or_else(|e| panic!("{e}\n{}", server.log_tail(40)));
    println!(
        "ffprobe over HTTP-FLV: {} video frames ({:.2} fps), {} AAC frames ({:.2}/s) over {:.2} s of stream, {:.2} s wall",
        s.video_frames,
        s.fps,
        s.audio_frames,
        s.audio_frames_per_s,
        s.video_span_s,
        probe.wall.as_secs_f64()
    );
    assert!(s.video_frames >= 120 && s.audio_frames >= 150, "{s:?}");
    let play = server
        .wait_for_log(Duration::from_secs(5), |l| {
            is_event(l, "play") && kv(l, "protocol") == Some("http-flv")
        })
        .unwrap_or_else(|| {
            panic!(
                "no `play ... protocol=http-flv` line\n{}",
                server.log_tail(40)
            )
        });
    assert_eq!(kv(&play, "key"), Some(key().as_str()), "{play}");
}

/// Checks the start of an HTTP-FLV body: onMetaData first, then both
/// sequence headers before any coded frame, and the first coded video
/// frame is a keyframe. Returns the index of that keyframe.
fn check_flv_start(tags: &[FlvTag], who: &str) -> usize {
    let listing = || describe_flv(tags, 12);
    assert!(
        tags.first().is_some_and(FlvTag::is_on_metadata),
        "{who}: first tag is not onMetaData:\n{}",
        listing()
    );
    let first_coded = tags
        .iter()
        .position(|t| t.is_coded_video() || t.is_coded_audio())
        .unwrap_or_else(|| panic!("{who}: no coded frame:\n{}", listing()));
    let avc = tags.iter().position(FlvTag::is_avc_sequence_header);
    let aac = tags.iter().position(FlvTag::is_aac_sequence_header);
    assert!(
        avc.is_some_and(|i| i < first_coded) && aac.is_some_and(|i| i < first_coded),
        "{who}: AVC ({avc:?}) and AAC ({aac:?}) sequence headers must both come before the first coded frame (#{first_coded}):\n{}",
        listing()
    );
    assert!(
        tags[1..first_coded]
            .iter()
            .all(|t| t.is_avc_sequence_header() || t.is_aac_sequence_header()),
        "{who}: between onMetaData and the first frame there is more than the sequence headers:\n{}",
        listing()
    );
    let first_video = tags
        .iter()
        .position(FlvTag::is_coded_video)
        .unwrap_or_else(|| panic!("{who}: no coded video:\n{}", listing()));
    assert!(
        tags[first_video].is_keyframe(),
        "{who}: the first coded video frame is not a keyframe:\n{}",
        listing()
    );
    first_video
}

/// Per kind, the first timestamp that goes backwards.
fn timestamp_regression(tags: &[FlvTag]) -> Option<String> {
    for (name, pick) in [
        ("video", FlvTag::is_coded_video as fn(&FlvTag) -> bool),
        ("audio", FlvTag::is_coded_audio),
    ] {
        let mut prev: Option<u32> = None;
        for (i, t) in tags.iter().enumerate().filter(|(_, t)| pick(t)) {
            if prev.is_some_and(|p| t.timestamp < p) {
                return Some(format!(
                    "{name} timestamp goes back at tag #{i}: {:?} then {}",
                    prev, t.timestamp
                ));
            }
            prev = Some(t.timestamp);
        }
    }
    None
}

/// HTTP/1.0 gets a close-delimited FLV body (no Transfer-Encoding, no
/// Content-Length, `Connection: close`), HTTP/1.1 a chunked one decoded here
/// chunk by chunk. Both bodies parse as FLV and start with onMetaData, the
/// sequence headers and a keyframe (the GOP cache). When the publisher
/// leaves and `publisher_grace_s` passes, the 1.0 body ends with the close
/// and the 1.1 body with the last chunk. Prints the time from the request
/// to the first keyframe tag.
#[test]
fn http10_flv_is_close_delimited_and_http11_is_chunked() {
    let server = Server::with_config("[stream]\npublisher_grace_s = 1\n");
    let mut publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    // Let the GOP cache fill, so the players' first keyframe comes from it.
    std::thread::sleep(Duration::from_millis(1500));

    // HTTP/1.1, decoded by hand on the test thread for a precise clock.
    let mut c = HttpConn::connect(server.port).unwrap();
    c.send(b"GET /live/test.flv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let sent = c.sent_at;
    let head = c
        .read_head(Instant::now() + Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("HTTP/1.1 FLV head: {e}\n{}", server.log_tail(30)));
    let head_after = sent.elapsed();
    assert_eq!(head.status, 200, "{}", head.raw);
    assert_eq!(head.version, "HTTP/1.1", "{}", head.raw);
    assert_eq!(
        head.header("content-type"),
        Some("video/x-flv"),
        "{}",
        head.raw
    );
    assert!(
        head.is_chunked(),
        "HTTP/1.1 FLV is not chunked:\n{}",
        head.raw
    );
    assert!(
        head.content_length().is_none(),
        "chunked response with Content-Length:\n{}",
        head.raw
    );
    assert_eq!(
        head.header("access-control-allow-origin"),
        Some("*"),
        "{}",
        head.raw
    );
    let mut chunks = ChunkDecoder::default();
    let mut demux = FlvDemux::default();
    let mut pending = Vec::new();
    let mut tags11: Vec<FlvTag> = Vec::new();
    let mut first_key_after = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tags11.iter().filter(|t| t.is_coded_video()).count() < 60 {
        let bytes = c.read_some(deadline).unwrap_or_else(|e| {
            panic!(
                "HTTP/1.1 FLV body: {e}; got:\n{}",
                describe_flv(&tags11, 20)
            )
        });
        assert!(!bytes.is_empty(), "HTTP/1.1 FLV body closed early");
        let at = Instant::now();
        pending.extend_from_slice(&bytes);
        let mut body = Vec::new();
        let used = chunks
            .feed(&pending, &mut body)
            .unwrap_or_else(|e| panic!("chunked coding: {e}"));
        pending.drain(..used);
        let new = demux
            .feed(&body, at)
            .unwrap_or_else(|e| panic!("HTTP/1.1 FLV body: {e}"));
        if first_key_after.is_none() {
            if let Some(k) = new.iter().find(|t| t.is_keyframe()) {
                first_key_after = Some(k.at - sent);
            }
        }
        tags11.extend(new);
    }
    assert_eq!(
        demux.header.map(|h| (h.0, h.1)),
        Some((true, true)),
        "HTTP/1.1 FLV header flags"
    );
    let k11 = check_flv_start(&tags11, "HTTP/1.1 FLV");
    if let Some(r) = timestamp_regression(&tags11) {
        panic!("HTTP/1.1 FLV: {r}");
    }
    let first_key_after = first_key_after.unwrap();
    println!(
        "HTTP/1.1 FLV: head after {:.2} ms, first video keyframe tag (#{k11}) {:.2} ms after the request; {} chunks so far",
        head_after.as_secs_f64() * 1e3,
        first_key_after.as_secs_f64() * 1e3,
        chunks.chunks
    );

    // Time to first keyframe, over fresh connections landing on either
    // shard: the owner serves its own GOP cache, the other shard its replica.
    let owner = kv(&server.wait_for_publish(&key(), 1, Duration::ZERO), "shard")
        .unwrap_or("?")
        .to_string();
    let mut ttfk: Vec<(f64, String)> = Vec::new();
    for _ in 0..8 {
        let (after, port) = time_to_first_keyframe(server.port);
        let shard = server
            .wait_for_play(port, Duration::from_secs(2))
            .and_then(|l| kv(&l, "shard").map(str::to_string))
            .unwrap_or_else(|| "?".into());
        ttfk.push((after.as_secs_f64() * 1e3, shard));
    }
    println!(
        "HTTP/1.1 FLV request -> first keyframe tag, 8 fresh connections (ms, shard; owner is shard {owner}): {}",
        ttfk.iter()
            .map(|(ms, sh)| format!("{ms:.2} (shard {sh})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (ms, _) in &ttfk {
        // With the GOP cache the keyframe is already there; without it a
        // player would wait up to a GOP (2 s).
        assert!(
            *ms < 500.0,
            "first keyframe {ms:.1} ms after the request: {ttfk:?}"
        );
    }

    // HTTP/1.0 on a player thread.
    let p10 = BgFlvPlayer::start(server.port, "/live/test.flv", true).unwrap();
    assert!(
        p10.wait_until(Duration::from_secs(10), |t| {
            t.iter().filter(|t| t.is_coded_video()).count() >= 60
        }),
        "HTTP/1.0 FLV player got {} tags in 10 s (head {:?})\n{}",
        p10.tag_count(),
        p10.head().map(|h| h.raw),
        server.log_tail(30)
    );
    let h10 = p10.head().unwrap();
    assert_eq!(h10.status, 200, "{}", h10.raw);
    assert_eq!(
        h10.header("content-type"),
        Some("video/x-flv"),
        "{}",
        h10.raw
    );
    assert!(
        h10.header("transfer-encoding").is_none(),
        "HTTP/1.0 response has Transfer-Encoding:\n{}",
        h10.raw
    );
    assert!(
        h10.content_length().is_none(),
        "HTTP/1.0 live body has a Content-Length:\n{}",
        h10.raw
    );
    assert!(
        h10.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        "HTTP/1.0 FLV without `Connection: close`:\n{}",
        h10.raw
    );
    let tags10 = p10.snapshot();
    let k10 = check_flv_start(&tags10, "HTTP/1.0 FLV");
    println!(
        "HTTP/1.0 FLV: first video keyframe tag (#{k10}) {:.2} ms after the request",
        (tags10[k10].at - p10.sent_at).as_secs_f64() * 1e3
    );

    // The publisher leaves; after publisher_grace_s the server ends both
    // bodies: the close for 1.0, the last chunk (then the close) for 1.1.
    publisher.signal(libc::SIGINT);
    assert!(
        publisher.wait_timeout(Duration::from_secs(5)).is_some(),
        "publisher did not stop"
    );
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut rest = Vec::new();
    loop {
        match c.read_some(deadline) {
            Ok(b) if b.is_empty() => break,
            Ok(b) => rest.extend_from_slice(&b),
            Err(e) => panic!(
                "HTTP/1.1 FLV body did not end within 8 s of the publisher leaving: {e}\n{}",
                server.log_tail(30)
            ),
        }
    }
    pending.extend_from_slice(&rest);
    let mut body = Vec::new();
    let used = chunks
        .feed(&pending, &mut body)
        .unwrap_or_else(|e| panic!("chunked coding at the end: {e}"));
    assert!(
        chunks.is_done() && used == pending.len(),
        "HTTP/1.1 FLV body closed without a last chunk (or with bytes after it): {} bytes left, tail {:?}",
        pending.len() - used,
        String::from_utf8_lossy(&pending[pending.len().saturating_sub(16)..])
    );
    demux
        .feed(&body, Instant::now())
        .unwrap_or_else(|e| panic!("HTTP/1.1 FLV tail: {e}"));
    assert!(
        p10.wait_finished(Duration::from_secs(8)),
        "HTTP/1.0 FLV body did not end with the close within 8 s of the publisher leaving"
    );
    let played = p10.stop();
    assert_eq!(
        played.end,
        Ok("eof"),
        "HTTP/1.0 FLV body did not end cleanly"
    );
    if let Some(r) = timestamp_regression(&played.tags) {
        panic!("HTTP/1.0 FLV: {r}");
    }
}

/// Requests the FLV stream on a fresh connection and reads until the first
/// video keyframe tag; returns the time from the request's last byte to
/// that tag's last byte, and the local port.
fn time_to_first_keyframe(port: u16) -> (Duration, u16) {
    let mut c = HttpConn::connect(port).unwrap();
    c.send(b"GET /live/test.flv HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let head = c.read_head(deadline).unwrap();
    assert_eq!(head.status, 200, "{}", head.raw);
    let (mut chunks, mut demux, mut pending) =
        (ChunkDecoder::default(), FlvDemux::default(), Vec::new());
    loop {
        let bytes = c.read_some(deadline).unwrap();
        assert!(!bytes.is_empty(), "FLV body closed before a keyframe");
        let at = Instant::now();
        pending.extend_from_slice(&bytes);
        let mut body = Vec::new();
        let used = chunks.feed(&pending, &mut body).unwrap();
        pending.drain(..used);
        if demux
            .feed(&body, at)
            .unwrap()
            .iter()
            .any(FlvTag::is_keyframe)
        {
            return (at - c.sent_at, c.local_port);
        }
    }
}

/// `?only-audio=1` sets the FLV header's TypeFlags to audio only (0x04) and
/// sends no video tags; `?only-video=1` sets 0x01 and sends no audio tags.
/// The kept kind still flows at its rate.
#[test]
fn only_audio_and_only_video_flv() {
    let server = Server::start();
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let audio = BgFlvPlayer::start(server.port, "/live/test.flv?only-audio=1", false).unwrap();
    let video = BgFlvPlayer::start(server.port, "/live/test.flv?only-video=1", false).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let a = audio.stop();
    let v = video.stop();
    for (name, p, flags) in [("only-audio", &a, 0x04u8), ("only-video", &v, 0x01)] {
        assert!(
            matches!(p.end, Ok("stopped")),
            "{name} player ended: {:?}",
            p.end
        );
        let head = p.head.as_ref().unwrap();
        assert_eq!(head.status, 200, "{name}: {}", head.raw);
        let header = p.header.unwrap_or_else(|| panic!("{name}: no FLV header"));
        assert_eq!(
            header.2, flags,
            "{name}: FLV TypeFlags 0x{:02x}, expected 0x{flags:02x}",
            header.2
        );
        assert!(
            p.tags.first().is_some_and(FlvTag::is_on_metadata),
            "{name}: first tag is not onMetaData:\n{}",
            describe_flv(&p.tags, 8)
        );
    }
    let count =
        |p: &http_client::FlvPlayed, f: fn(&FlvTag) -> bool| p.tags.iter().filter(|t| f(t)).count();
    let (a_audio, a_video) = (
        count(&a, FlvTag::is_coded_audio),
        count(&a, FlvTag::is_video),
    );
    let (v_video, v_audio) = (
        count(&v, FlvTag::is_coded_video),
        count(&v, FlvTag::is_audio),
    );
    println!(
        "only-audio: {a_audio} audio frames, {a_video} video tags; only-video: {v_video} video frames, {v_audio} audio tags (3 s)"
    );
    assert_eq!(
        a_video,
        0,
        "only-audio player got video tags:\n{}",
        describe_flv(&a.tags, 12)
    );
    assert_eq!(
        v_audio,
        0,
        "only-video player got audio tags:\n{}",
        describe_flv(&v.tags, 12)
    );
    assert!(
        a.tags.iter().any(FlvTag::is_aac_sequence_header),
        "only-audio: no AAC sequence header"
    );
    assert!(
        v.tags.iter().any(FlvTag::is_avc_sequence_header),
        "only-video: no AVC sequence header"
    );
    // 3 s of live media at least (the GOP cache adds up to 2 s more).
    assert!(a_audio >= 110, "only-audio: {a_audio} audio frames in 3 s");
    assert!(v_video >= 80, "only-video: {v_video} video frames in 3 s");
    let first_video = v.tags.iter().find(|t| t.is_coded_video()).unwrap();
    assert!(
        first_video.is_keyframe(),
        "only-video: first frame is not a keyframe"
    );
}

/// With `http.stream_wait_s = 2`: a request for a stream nobody publishes
/// is answered 404 after about 2 s; a request made before the publisher
/// connects (the server has logged it) is answered 200 with media once the
/// publisher arrives.
#[test]
fn unpublished_stream_waits_then_404_or_plays_when_published() {
    let server = Server::with_config("[http]\nstream_wait_s = 2\n");

    let t = Instant::now();
    let r = http_client::get(server.port, "/live/nobody.flv", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("request for an unpublished stream: {e}"));
    let waited = t.elapsed();
    println!(
        "unpublished stream: {} after {:.2} s",
        r.head.status,
        waited.as_secs_f64()
    );
    assert_eq!(r.head.status, 404, "{}", r.head.raw);
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "404 came after {waited:?}, expected about stream_wait_s = 2 s"
    );

    let before = server.log_len();
    let player = BgFlvPlayer::start(server.port, "/live/test.flv", false).unwrap();
    let path_logged = server.wait_for_log_from(before, Duration::from_secs(2), |l| {
        l.contains("GET /live/test.flv")
    });
    assert!(
        path_logged.is_some(),
        "the server did not log the request\n{}",
        server.log_tail(20)
    );
    assert!(
        player.head().is_none(),
        "the server answered before there was a publisher: {:?}",
        player.head().map(|h| h.raw)
    );
    let publisher = ffmpeg_publish("publisher", &server.url("live/test"), &PublishOpts::small());
    let publish_line = server.wait_for_publish(&key(), 1, Duration::from_secs(10));
    let got = player.wait_until(Duration::from_secs(8), |t| {
        t.iter().any(|t| t.is_keyframe())
    });
    let head = player.head();
    let played = player.stop();
    drop(publisher);
    assert!(
        got,
        "the waiting request got no keyframe (head {:?}, end {:?})\npublish: {publish_line}\n{}",
        head.map(|h| h.raw),
        played.end,
        server.log_tail(30)
    );
    let head = head.unwrap();
    assert_eq!(head.status, 200, "{}", head.raw);
    let k = check_flv_start(&played.tags, "waiting request");
    println!(
        "request made before the publisher: first keyframe {:.2} s after the request, {} tags",
        (played.tags[k].at - played.sent_at).as_secs_f64(),
        played.tags.len()
    );
}

/// Sends `raw` on a fresh connection and reads one response.
fn raw_exchange(port: u16, raw: &[u8], head_request: bool) -> http_client::Response {
    let mut c = HttpConn::connect(port).unwrap();
    // The server may answer and close before reading all of an oversized
    // request; what it answered is what counts.
    let _ = c.send(raw);
    c.read_response(head_request, Instant::now() + Duration::from_secs(5))
        .unwrap_or_else(|e| {
            panic!(
                "no response to {:?}: {e}",
                String::from_utf8_lossy(&raw[..raw.len().min(60)])
            )
        })
}

/// The HTTP server's manners, over raw TCP, while an HTTP-FLV player runs:
/// keep-alive (sequential and pipelined), HEAD, OPTIONS preflight, 405 with
/// Allow, 404, 431 for a 10 KiB header and for 100 header lines, 400 for a
/// garbage request line; CORS on every response; and after each bad request
/// the FLV player is still receiving.
#[test]
fn http_server_manners_and_bad_requests_do_not_disturb_a_player() {
    let server = Server::start();
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let player = BgFlvPlayer::start(server.port, "/live/test.flv", false).unwrap();
    assert!(
        player.wait_until(Duration::from_secs(10), |t| t
            .iter()
            .any(|t| t.is_keyframe())),
        "FLV player got no keyframe\n{}",
        server.log_tail(30)
    );
    let still_receiving = |after: &str| {
        let n = player.tag_count();
        assert!(
            player.wait_until(Duration::from_secs(2), |t| t.len() > n + 10),
            "after {after}, the FLV player stopped receiving ({n} tags)\n{}",
            server.log_tail(30)
        );
    };
    let cors = |r: &http_client::Response, what: &str| {
        assert_eq!(
            r.head.header("access-control-allow-origin"),
            Some("*"),
            "{what}: no `Access-Control-Allow-Origin: *`:\n{}",
            r.head.raw
        );
    };
    let deadline = || Instant::now() + Duration::from_secs(5);

    // Two requests, one after the other, on one keep-alive connection.
    let mut c = HttpConn::connect(server.port).unwrap();
    c.send_request("GET", "/", &[]).unwrap();
    let r1 = c.read_response(false, deadline()).unwrap();
    assert_eq!(r1.head.status, 200, "{}", r1.head.raw);
    assert!(
        r1.head
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{}",
        r1.head.raw
    );
    cors(&r1, "GET /");
    c.send_request("GET", "/api/streams", &[]).unwrap();
    let r2 = c.read_response(false, deadline()).unwrap();
    assert_eq!(
        r2.head.status, 200,
        "second request on the connection: {}",
        r2.head.raw
    );
    assert!(r2.text().contains("live"), "/api/streams: {}", r2.text());
    // Two pipelined in one write: both answered, in order.
    c.send(b"GET /api/streams HTTP/1.1\r\nHost: a\r\n\r\nGET /no/such/path/here HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let p1 = c.read_response(false, deadline()).unwrap();
    let p2 = c.read_response(false, deadline()).unwrap();
    assert_eq!(
        (p1.head.status, p2.head.status),
        (200, 404),
        "pipelined:\n{}\n{}",
        p1.head.raw,
        p2.head.raw
    );

    // HEAD: the head of GET / with its Content-Length, and no body: the next
    // bytes on the connection are the next response's status line.
    c.send_request("HEAD", "/", &[]).unwrap();
    let h = c.read_response(true, deadline()).unwrap();
    assert_eq!(h.head.status, 200, "{}", h.head.raw);
    assert_eq!(
        h.head.content_length(),
        Some(r1.body.len()),
        "HEAD / Content-Length differs from GET /'s body:\n{}",
        h.head.raw
    );
    c.send_request("GET", "/api/streams", &[]).unwrap();
    let after_head = c.read_response(false, deadline()).unwrap_or_else(|e| {
        panic!("after HEAD, the next response is garbled (a body was sent?): {e}")
    });
    assert_eq!(after_head.head.status, 200, "{}", after_head.head.raw);

    // OPTIONS preflight.
    c.send_request(
        "OPTIONS",
        "/live/test.flv",
        &[
            "Origin: http://player.example",
            "Access-Control-Request-Method: GET",
        ],
    )
    .unwrap();
    let o = c.read_response(false, deadline()).unwrap();
    assert_eq!(o.head.status, 204, "{}", o.head.raw);
    cors(&o, "OPTIONS");
    let methods = o
        .head
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(
        methods.contains("GET") && methods.contains("OPTIONS"),
        "preflight Access-Control-Allow-Methods {methods:?}:\n{}",
        o.head.raw
    );

    // 405 with Allow (the connection survives it).
    c.send(b"POST /live/test.flv HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let m = c.read_response(false, deadline()).unwrap();
    assert_eq!(m.head.status, 405, "{}", m.head.raw);
    cors(&m, "405");
    let allow = m.head.header("allow").unwrap_or_default();
    assert!(
        allow.contains("GET"),
        "405 without `Allow: GET, ...`:\n{}",
        m.head.raw
    );

    // 404 for an unknown path.
    c.send_request("GET", "/a/b/c/d.txt", &[]).unwrap();
    let nf = c.read_response(false, deadline()).unwrap();
    assert_eq!(nf.head.status, 404, "{}", nf.head.raw);
    cors(&nf, "404");
    drop(c);
    still_receiving("the keep-alive requests");

    // 431: a 10 KiB header line (header_bytes_max = 8192).
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10 * 1024)
    );
    let r = raw_exchange(server.port, big.as_bytes(), false);
    println!("10 KiB header: {} {:?}", r.head.status, r.text().trim());
    assert_eq!(r.head.status, 431, "{}\n{}", r.head.raw, r.text());
    cors(&r, "431");
    still_receiving("a 10 KiB header");

    // 431: 100 header lines (headers_max = 64).
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw_exchange(server.port, many.as_bytes(), false);
    println!("100 header lines: {} {:?}", r.head.status, r.text().trim());
    assert_eq!(r.head.status, 431, "{}\n{}", r.head.raw, r.text());
    still_receiving("100 header lines");

    // 400: a request line that is not HTTP.
    let r = raw_exchange(server.port, b"THIS IS NOT HTTP\r\n\r\n", false);
    println!(
        "garbage request line: {} {:?}",
        r.head.status,
        r.text().trim()
    );
    assert_eq!(r.head.status, 400, "{}\n{}", r.head.raw, r.text());
    still_receiving("a garbage request line");

    let played = player.stop();
    assert!(
        matches!(played.end, Ok("stopped")),
        "FLV player ended: {:?}",
        played.end
    );
    let warns = server.find_logs(|l| l.contains("bad HTTP request"));
    println!("server's bad-request lines:\n{}", warns.join("\n"));
    let panics = server.find_logs(|l| l.contains("panicked"));
    assert!(
        panics.is_empty(),
        "the server logged panics:\n{}",
        panics.join("\n")
    );
}

/// A slow HTTP-FLV reader (4 KiB receive buffer, reads the head, then
/// nothing) does not stall another HTTP-FLV player beside it (30 fps by
/// wall clock) and its skipped frames are logged (`skipped_frames=N`,
/// N > 0, naming its peer).
#[test]
fn slow_http_flv_reader_does_not_stall_others_and_skips_are_logged() {
    // 2 MiB is about 4 s of this 4 Mbit/s stream (see the RTMP test).
    let server = Server::with_config("[stream]\nplayer_queue_bytes_max = 2097152\n");
    let _publisher = publish_and_wait_opts(
        &server,
        "publisher",
        &PublishOpts {
            video_bitrate: Some("4M".into()),
            ..Default::default()
        },
    );

    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut slow = HttpConn::from_stream(sock.into()).unwrap();
    slow.send(b"GET /live/test.flv HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let head = slow
        .read_head(Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(head.status, 200, "{}", head.raw);
    let slow_port = slow.local_port;
    // From here on it never reads.

    std::thread::sleep(Duration::from_secs(2));
    let watcher = BgFlvPlayer::start(server.port, "/live/test.flv", false).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let t1 = Instant::now();
    let played = watcher.stop();
    let n = flv_video_frames_between(&played.tags, t0, t1);
    let fps = n as f64 / (t1 - t0).as_secs_f64();
    let gap = flv_max_video_gap(&played.tags, t0, t1);
    println!(
        "HTTP-FLV watcher beside the slow reader: {fps:.1} fps by wall clock, longest gap {gap:?}"
    );
    assert!(
        matches!(played.end, Ok("stopped")),
        "watcher ended: {:?}",
        played.end
    );
    assert!(
        fps >= 25.0,
        "watcher got {fps:.1} fps by wall clock beside a slow HTTP-FLV reader (want >= 25)"
    );
    assert!(
        gap < Duration::from_millis(1000),
        "watcher's video stalled for {gap:?}"
    );
    if let Some(r) = timestamp_regression(&played.tags) {
        panic!("watcher: {r}");
    }

    let peer = format!("127.0.0.1:{slow_port}");
    let play = server
        .wait_for_play(slow_port, Duration::from_secs(1))
        .unwrap_or_else(|| panic!("no play line for the slow reader {peer}"));
    assert_eq!(kv(&play, "protocol"), Some("http-flv"), "{play}");
    let counted = |l: &str| {
        kv(l, "peer") == Some(peer.as_str())
            && kv(l, "skipped_frames")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    };
    let mut line = server.wait_for_log(Duration::from_secs(10), counted);
    if line.is_none() {
        drop(slow);
        line = server.wait_for_log(Duration::from_secs(10), counted);
    }
    let lines_for_peer = server.find_logs(|l| kv(l, "peer") == Some(peer.as_str()));
    println!("slow reader's log lines: {lines_for_peer:#?}");
    assert!(
        line.is_some(),
        "no log line with peer={peer} and skipped_frames=N>0; lines naming the slow reader:\n{}",
        lines_for_peer.join("\n")
    );
}

/// Slowloris: a client that trickles a request head one byte every 200 ms
/// is closed `http.header_timeout_s` after the head's first byte, although
/// every byte arrives well within any per-byte wait; a keep-alive
/// connection that idles longer than that between requests (but within
/// `http.keepalive_timeout_s`) is still served.
#[test]
fn a_trickled_request_head_is_closed_by_header_timeout_s() {
    let server = Server::with_config("[http]\nheader_timeout_s = 2\nkeepalive_timeout_s = 30\n");
    let mut slow = HttpConn::connect(server.port).unwrap();
    let started = Instant::now();
    slow.send(b"GET / HTTP/1.1\r\n").unwrap();
    let mut closed_after = None;
    for i in 0..60 {
        std::thread::sleep(Duration::from_millis(200));
        let line = format!("X-Slow-{i}: 1\r\n");
        if slow.send(line.as_bytes()).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        if let Ok(b) = slow.read_some(Instant::now() + Duration::from_millis(1)) {
            if b.is_empty() && slow.at_eof() {
                closed_after = Some(started.elapsed());
                break;
            }
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        panic!(
            "a head trickled for 12 s was never closed\n{}",
            server.log_tail(20)
        )
    });
    assert!(
        closed_after >= Duration::from_millis(1800) && closed_after < Duration::from_secs(8),
        "closed after {closed_after:?}, want about header_timeout_s = 2 s"
    );
    assert!(
        server
            .wait_for_log(Duration::from_secs(5), |l| l
                .contains("http.header_timeout_s"))
            .is_some(),
        "no log line names http.header_timeout_s\n{}",
        server.log_tail(20)
    );

    // Idle between requests is not a head being trickled.
    let mut c = HttpConn::connect(server.port).unwrap();
    c.send_request("GET", "/api/streams", &[]).unwrap();
    let r = c
        .read_response(false, Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(r.head.status, 200);
    std::thread::sleep(Duration::from_secs(3));
    c.send_request("GET", "/api/streams", &[]).unwrap();
    let r = c
        .read_response(false, Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(r.head.status, 200, "after 3 s idle: {}", r.head.raw);
}
