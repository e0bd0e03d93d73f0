//! HTTP hooks (issue 11), against the real binary and a small HTTP server
//! started here that records every POST and answers by the request it is
//! told of: a query `deny=1` is answered 403, `deny=slow` 403 with a body
//! that never ends, `hang=1` never, anything else 200. Players are the test's RTMP client, an HTTP-FLV reader and
//! plain HTTP GETs for HLS; the publisher is ffmpeg.
//!
//! Every process is stopped by PID; every wait has a deadline.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::http_client::{self, BgFlvPlayer};
use common::rtmp_client::RtmpClient;
use common::*;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a hook that never answers holds its connection at most.
const HANG_MAX: Duration = Duration::from_secs(20);
/// How long the test waits for a notification to arrive.
const NOTIFY_WAIT: Duration = Duration::from_secs(10);
/// The server's `HLS_SESSION_TTL`: an HLS session unused this long ends.
const HLS_SESSION_TTL: Duration = Duration::from_secs(30);

/// One POST the hook server got.
#[derive(Clone, Debug)]
struct Call {
    path: String,
    body: serde_json::Value,
}

/// The test's hook server: a std listener on 127.0.0.1:0, one thread per
/// connection.
struct HookServer {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HookServer {
    fn start() -> HookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hook server");
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (calls2, stop2) = (calls.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (calls, stop) = (calls2.clone(), stop2.clone());
                std::thread::spawn(move || answer(conn, &calls, &stop));
            }
        });
        HookServer {
            port,
            calls,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn calls(&self, path: &str) -> Vec<serde_json::Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path == path)
            .map(|c| c.body.clone())
            .collect()
    }

    /// Waits up to `timeout` for a call to `path` that `pred` accepts.
    fn wait_call(
        &self,
        path: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.calls(path).into_iter().find(|c| pred(c)) {
                return Some(c);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads one POST (head and Content-Length body), records it, answers.
fn answer(mut conn: TcpStream, calls: &Mutex<Vec<Call>>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body_start) = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&buf[..i]).to_string(), i + 4);
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < body_start + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body: serde_json::Value =
        serde_json::from_slice(&buf[body_start..body_start + length]).unwrap_or_default();
    let query = body["query"].clone();
    calls.lock().unwrap().push(Call { path, body });
    if query["hang"] == "1" {
        let until = Instant::now() + HANG_MAX;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    if query["deny"] == "slow" {
        // A refusal whose body never finishes.
        let _ = conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\nslow");
        let until = Instant::now() + HANG_MAX;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    let reply: &[u8] = if query["deny"] == "1" {
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 14\r\nConnection: close\r\n\r\nbad token here"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    };
    let _ = conn.write_all(reply);
}

/// `[auth]` and `[hooks]` with every hook on the test server.
fn config(hooks: &HookServer, auth: &str, extra: &str) -> String {
    format!(
        "[auth]\n{auth}\n[hooks]\non_publish = \"{}\"\non_play = \"{}\"\n\
         on_unpublish = \"{}\"\non_stop = \"{}\"\n{extra}\n",
        hooks.url("/publish"),
        hooks.url("/play"),
        hooks.url("/unpublish"),
        hooks.url("/stop"),
    )
}

/// The server with `auth` and every hook on `hooks`, and a publisher of
/// `live/test`.
fn serving(hooks: &HookServer, auth: &str, extra: &str) -> (Server, Proc) {
    let server = Server::with_config(&config(hooks, auth, extra));
    let publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    (server, publisher)
}

/// Waits until `flv` got `n` video tags.
fn wait_video(flv: &BgFlvPlayer, n: usize, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while flv.snapshot().iter().filter(|t| t.is_video()).count() < n {
        assert!(
            Instant::now() < deadline,
            "the FLV player got fewer than {n} video tags in 10 s\n{}",
            server.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Plays `live/<name>` with the test client for `for_s`: onStatus codes
/// and descriptions, and media messages.
fn rtmp_play(port: u16, name: &str, for_s: f64) -> (Vec<(String, String)>, usize) {
    let mut c = RtmpClient::connect(port, "live").expect("player connects");
    let sid = c.create_stream().expect("createStream");
    c.play(sid, name).expect("play sent");
    c.statuses_and_media(Instant::now() + Duration::from_secs_f64(for_s))
}

#[test]
fn a_2xx_admits_and_the_hooks_are_told_every_start_and_end() {
    let hooks = HookServer::start();
    let server = Server::with_config(&config(&hooks, "publish = \"hook\"\nplay = \"hook\"", ""));
    let port = server.port;
    let key = format!("{DEFAULT_VHOST}/live/test");
    let mut publisher = publish_and_wait_at(
        &server,
        "publisher",
        "live/test?token=abc",
        &key,
        &PublishOpts::small(),
    );
    let p = hooks.calls("/publish");
    assert_eq!(p.len(), 1, "on_publish calls: {p:?}");
    let p = &p[0];
    assert_eq!(p["action"], "publish", "{p}");
    assert_eq!(p["vhost"], DEFAULT_VHOST, "{p}");
    assert_eq!(
        (&p["app"], &p["stream"]),
        (&"live".into(), &"test".into()),
        "{p}"
    );
    assert_eq!(p["query"], serde_json::json!({"token": "abc"}), "{p}");
    assert_eq!(p["ip"], "127.0.0.1", "{p}");
    assert_eq!(p["protocol"], "rtmp", "{p}");
    assert!(p["client_id"].is_u64(), "{p}");
    let tc_url = p["tc_url"].as_str().unwrap_or_default();
    assert!(
        tc_url.starts_with("rtmp://127.0.0.1:") && tc_url.contains("/live"),
        "tc_url {tc_url:?} in {p}"
    );

    // An RTMP player, admitted: it gets media; its end is told to on_stop.
    let (statuses, media) = rtmp_play(port, "test?viewer=1", 3.0);
    assert!(
        statuses.iter().any(|(c, _)| c == "NetStream.Play.Start"),
        "{statuses:?}\n{}",
        server.log_tail(20)
    );
    assert!(
        media > 10,
        "an admitted RTMP player got {media} media messages"
    );
    let play = hooks
        .wait_call("/play", REQUEST_TIMEOUT, |b| b["query"]["viewer"] == "1")
        .expect("on_play was asked for the RTMP player");
    assert_eq!(
        (&play["action"], &play["protocol"]),
        (&"play".into(), &"rtmp".into())
    );
    let stop = hooks
        .wait_call("/stop", NOTIFY_WAIT, |b| b["query"]["viewer"] == "1")
        .unwrap_or_else(|| panic!("no on_stop for the RTMP player\n{}", server.log_tail(20)));
    assert_eq!(
        (&stop["action"], &stop["protocol"], &stop["client_id"]),
        (&"stop".into(), &"rtmp".into(), &play["client_id"])
    );

    // An HTTP-FLV player: no tc_url; on_stop when it leaves.
    let flv = BgFlvPlayer::start(port, "/live/test.flv?viewer=2", false).unwrap();
    wait_video(&flv, 10, &server);
    let play = hooks
        .wait_call("/play", REQUEST_TIMEOUT, |b| b["query"]["viewer"] == "2")
        .expect("on_play was asked for the FLV player");
    assert_eq!(play["protocol"], "http_flv", "{play}");
    assert!(play["tc_url"].is_null(), "{play}");
    flv.stop();
    let stop = hooks
        .wait_call("/stop", NOTIFY_WAIT, |b| b["query"]["viewer"] == "2")
        .unwrap_or_else(|| panic!("no on_stop for the FLV player\n{}", server.log_tail(20)));
    assert_eq!(stop["protocol"], "http_flv", "{stop}");

    // The publisher leaves: on_unpublish.
    publisher.kill();
    let gone = hooks
        .wait_call("/unpublish", NOTIFY_WAIT, |_| true)
        .unwrap_or_else(|| panic!("no on_unpublish\n{}", server.log_tail(20)));
    assert_eq!(
        (&gone["action"], &gone["query"], &gone["protocol"]),
        (
            &"unpublish".into(),
            &serde_json::json!({"token": "abc"}),
            &"rtmp".into()
        )
    );
    assert_eq!(
        gone["client_id"], p["client_id"],
        "on_unpublish names another client than on_publish"
    );
}

#[test]
fn a_refusing_hook_refuses_before_any_media() {
    let hooks = HookServer::start();
    let (server, _publisher) = serving(&hooks, "play = \"hook\"", "timeout_ms = 1500");
    let port = server.port;

    let (statuses, media) = rtmp_play(port, "test?deny=1", 3.0);
    assert!(
        statuses.iter().any(|(c, d)| c == "NetStream.Play.Failed"
            && d.contains("on_play hook")
            && d.contains("403")
            && d.contains("bad token here")),
        "a refused RTMP play got {statuses:?}"
    );
    assert!(
        !statuses.iter().any(|(c, _)| c == "NetStream.Play.Start"),
        "{statuses:?}"
    );
    assert_eq!(media, 0, "a refused RTMP player got media");

    let r = http_client::get(port, "/live/test.flv?deny=1", REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 403, "{}", r.head.raw);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    assert_eq!(r.text().trim().lines().count(), 1, "one line: {}", r.text());
    assert_ne!(r.head.header("content-type"), Some("video/x-flv"));
    assert!(
        !r.body.starts_with(b"FLV"),
        "a refused FLV player got FLV bytes"
    );

    let r = http_client::get(port, "/live/test.m3u8?deny=1", REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 403, "HLS: {}", r.head.raw);
    assert!(!r.text().contains("#EXTM3U"), "{}", r.text());

    // A 403 whose body the deadline cuts short is still the hook's
    // refusal (403), not a hook error (503).
    let r = http_client::get(port, "/live/test.flv?deny=slow", REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 403, "{}", r.head.raw);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    assert_eq!(hooks.calls("/play").len(), 4, "{:?}", hooks.calls("/play"));
    assert!(
        hooks.calls("/stop").is_empty(),
        "a refused player is no admitted one"
    );
}

#[test]
fn a_hook_that_never_answers_refuses_after_timeout_ms_while_the_shard_keeps_serving() {
    let hooks = HookServer::start();
    let server = Server::builder()
        .shards(1)
        .config(&config(&hooks, "play = \"hook\"", "timeout_ms = 2500"))
        .start();
    let port = server.port;
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let flv = BgFlvPlayer::start(port, "/live/test.flv", false).unwrap();
    wait_video(&flv, 30, &server);

    let videos = || flv.snapshot().iter().filter(|t| t.is_video()).count();
    let before = videos();
    let asked = Instant::now();
    let waiting = spawn(move || {
        let mut c = RtmpClient::connect(port, "live").expect("player connects");
        let sid = c.create_stream().expect("createStream");
        c.play(sid, "test?hang=1").expect("play sent");
        let status = c.wait_status(Instant::now() + Duration::from_secs(10));
        (status.ok().flatten(), Instant::now())
    });
    let waited = waiting.join().unwrap();
    let (Some((code, m)), at) = waited else {
        panic!("no onStatus within 10 s\n{}", server.log_tail(20));
    };
    let took = at.duration_since(asked);
    let during = videos() - before;
    let desc = m.status_description().unwrap_or_default();
    assert_eq!(code, "NetStream.Failed", "{desc}");
    assert!(desc.contains("hooks.timeout_ms"), "{desc}");
    assert!(
        took >= Duration::from_millis(2400) && took < Duration::from_millis(4500),
        "refused after {took:?}, hooks.timeout_ms is 2500"
    );
    // 30 fps: the other player kept its frame rate through the wait.
    let fps = during as f64 / took.as_secs_f64();
    assert!(
        fps > 24.0,
        "the other player got {during} video frames in {took:?} ({fps:.1}/s)"
    );
    let line = server
        .wait_for_log(REQUEST_TIMEOUT, |l| {
            l.contains("hook on_play") && l.contains("no answer")
        })
        .unwrap_or_else(|| panic!("no log line\n{}", server.log_tail(20)));
    assert!(line.contains(&hooks.url("/play")), "{line}");
    assert!(!flv.is_finished(), "the other player was dropped");
}

#[test]
fn a_hook_that_is_down_refuses_with_a_clear_log_line() {
    let down = free_port();
    let url = format!("http://127.0.0.1:{down}/down");
    let server = Server::with_config(&format!(
        "[auth]\nplay = \"hook\"\n[hooks]\non_play = \"{url}\"\n"
    ));
    let port = server.port;
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let r = http_client::get(port, "/live/test.flv", REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 503, "{}", r.head.raw);
    assert!(
        r.text().contains("on_play hook failed: connect failed"),
        "{}",
        r.text()
    );
    assert!(!r.body.starts_with(b"FLV"));
    let line = server
        .wait_for_log(REQUEST_TIMEOUT, |l| {
            l.contains(&format!("hook on_play {url}: connect failed"))
        })
        .unwrap_or_else(|| panic!("no clear log line\n{}", server.log_tail(20)));
    assert!(line.to_lowercase().contains("refused"), "{line}");

    // With on_error = "allow", the same failure admits.
    let server = Server::with_config(&format!(
        "[auth]\nplay = \"hook\"\n[hooks]\non_play = \"{url}\"\non_error = \"allow\"\n"
    ));
    let _publisher = publish_and_wait_opts(&server, "publisher2", &PublishOpts::small());
    let flv = BgFlvPlayer::start(server.port, "/live/test.flv", false).unwrap();
    wait_video(&flv, 5, &server);
}

#[test]
fn hls_asks_the_hook_once_per_session() {
    let hooks = HookServer::start();
    let (server, _publisher) = serving(&hooks, "play = \"hook\"", "");
    let port = server.port;

    // One HTTP connection, as a player keeps: playlist until it lists a
    // segment, then a segment, a part and two reloads.
    let mut conn = http_client::HttpConn::connect(port).unwrap();
    let mut get = |target: &str| {
        conn.send_request("GET", target, &[]).unwrap();
        conn.read_response(false, Instant::now() + Duration::from_secs(10))
            .unwrap()
    };
    let (playlist, segment) = playlist_with_segment("HLS session", Duration::from_secs(20), || {
        get("/live/test.m3u8?token=abc")
    });
    assert!(
        segment.ends_with("?token=abc"),
        "{segment} does not carry the session's query"
    );
    let part = playlist
        .lines()
        .find_map(|l| {
            let l = l.strip_prefix("#EXT-X-PART:")?;
            let uri = l.split("URI=\"").nth(1)?;
            Some(uri.split('"').next()?.to_string())
        })
        .unwrap_or_else(|| panic!("no part in\n{playlist}"));
    for target in [format!("/live/{segment}"), format!("/live/{part}")] {
        let r = get(&target);
        assert_eq!(r.head.status, 200, "{target}: {}", r.head.raw);
        assert_eq!(r.body.first(), Some(&0x47), "{target} is not MPEG-TS");
    }
    for _ in 0..2 {
        assert_eq!(get("/live/test.m3u8?token=abc").head.status, 200);
    }
    let plays = hooks.calls("/play");
    assert_eq!(plays.len(), 1, "on_play calls for one session: {plays:?}");
    assert_eq!(
        (&plays[0]["protocol"], &plays[0]["query"]),
        (&"hls".into(), &serde_json::json!({"token": "abc"}))
    );

    // Another session (another query) is asked, and refused by its hook.
    let r = get("/live/test.m3u8?token=abc&deny=1");
    assert_eq!(r.head.status, 403, "{}", r.head.raw);
    assert_eq!(hooks.calls("/play").len(), 2);
    // A segment of a session never admitted is asked too.
    let bare = segment.split('?').next().unwrap();
    let r = get(&format!("/live/{bare}?deny=1"));
    assert_eq!(r.head.status, 403, "{}", r.head.raw);
    assert_eq!(hooks.calls("/play").len(), 3);

    // Unused for HLS_SESSION_TTL (30 s), the admitted session ends: on_stop.
    let stop = hooks
        .wait_call("/stop", HLS_SESSION_TTL + Duration::from_secs(10), |b| {
            b["protocol"] == "hls"
        })
        .unwrap_or_else(|| panic!("no on_stop for the HLS session\n{}", server.log_tail(20)));
    assert_eq!(
        (&stop["action"], &stop["query"], &stop["client_id"]),
        (
            &"stop".into(),
            &serde_json::json!({"token": "abc"}),
            &plays[0]["client_id"]
        )
    );
    assert_eq!(
        hooks.calls("/stop").len(),
        1,
        "refused sessions are not stopped"
    );
}
