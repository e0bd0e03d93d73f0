//! Integration tests of the JSON API (issue 6): the real `shardcast` binary
//! on free ports with `--shards 2`, ffmpeg publishing over RTMP, and real
//! players: ffmpeg and rtmpdump processes (stopped by PID) and the test
//! clients of `common::rtmp_client` and `common::http_client`, which see
//! every status message and FLV tag.
//!
//! Every wait has a deadline; every process is ended by PID when its guard
//! drops. Server logs and tool output are kept in `target/tmp/logs/<test>/`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client::{self, BgFlvPlayer};
use common::rtmp_client::{self, BgPlayer};
use common::*;
use serde_json::Value;

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long players and publishers get to appear in the API.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How soon a player that left must be gone from the counts (issue 6).
const LEAVE_BOUND: Duration = Duration::from_secs(1);

fn key() -> String {
    format!("{DEFAULT_VHOST}/live/test")
}

fn detail_path() -> String {
    format!("/api/v1/streams/{}", key())
}

/// `method target` on 127.0.0.1:`port`; the status and the JSON body.
fn api(port: u16, method: &str, target: &str) -> (u16, Value) {
    let r = http_client::request(port, method, target, &[], REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {target} on port {port}: {e}"));
    let ct = r.head.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "{method} {target}: Content-Type {ct:?}, expected JSON\n{}{}",
        r.head.raw,
        r.text()
    );
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{method} {target}: body is not JSON ({e}): {}", r.text()));
    (r.head.status, v)
}

/// Asserts an error answer: `status` and `{"error": "..."}` mentioning
/// every one of `names`.
fn assert_error(port: u16, method: &str, target: &str, status: u16, names: &[&str]) {
    let (got, v) = api(port, method, target);
    assert_eq!(got, status, "{method} {target}: {v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {target}: no \"error\" string in {v}"));
    for n in names {
        assert!(
            msg.contains(n),
            "{method} {target}: error {msg:?} does not name {n:?}"
        );
    }
}

/// Polls `f` every 20 ms until it returns Some, or panics naming `what`
/// (and the last value seen) at the deadline.
fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!("{what} not within {timeout:?}; last seen: {last}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stream's detail once `pred` holds for it.
fn stream_when(server: &Server, port: u16, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll(SETTLE_TIMEOUT, what, || {
        let (status, v) = api(port, "GET", &detail_path());
        if status == 200 && pred(&v) {
            Ok(v)
        } else {
            Err(format!("{status} {v}\n{}", server.log_tail(20)))
        }
    })
}

fn counts(v: &Value) -> (u64, u64, u64) {
    let p = &v["players"];
    (
        p["rtmp"].as_u64().unwrap_or(u64::MAX),
        p["http_flv"].as_u64().unwrap_or(u64::MAX),
        p["total"].as_u64().unwrap_or(u64::MAX),
    )
}

/// The entry of `player_list` whose peer is 127.0.0.1:`port`.
fn player_by_port(v: &Value, port: u16) -> Option<Value> {
    let peer = format!("127.0.0.1:{port}");
    v["player_list"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == peer.as_str())
        .cloned()
}

/// ffmpeg reading `url` and throwing the media away (`-c copy -f null`).
fn ffmpeg_player(name: &str, url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .args(["-rw_timeout", "10000000", "-i", url])
        .args(["-map", "0", "-c", "copy", "-f", "null", "-"])
        .stdout(Stdio::null());
    Proc::spawn(name, &mut cmd)
}

/// rtmpdump (librtmp) playing `url` live into /dev/null.
fn rtmpdump_player(name: &str, url: &str) -> Proc {
    let mut cmd = Command::new("rtmpdump");
    cmd.args([
        "--live",
        "--timeout",
        "10",
        "--rtmp",
        url,
        "-o",
        "/dev/null",
    ])
    .stdout(Stdio::null());
    Proc::spawn(name, &mut cmd)
}

/// 1 publisher, 3 RTMP players (the test client, ffmpeg, rtmpdump) and 2
/// HTTP-FLV players (the test client, ffmpeg): the API reports exactly
/// those, with the publisher, codecs, picture size, frame rate, bitrate,
/// GOP cache and shards; a player that leaves is gone from the counts
/// within a second; `DELETE /api/v1/clients/{id}` closes that one player.
#[test]
fn api_reports_what_the_test_set_up_and_follows_players_leaving() {
    let server = Server::start();
    let port = server.port;
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let publish_line = server.wait_for_publish(&key(), 1, Duration::from_secs(5));

    let rtmp_test = BgPlayer::start(port, "live", "test").expect("RTMP test player");
    let mut rtmp_ffmpeg = ffmpeg_player("ffmpeg-rtmp", &server.url("live/test"));
    let mut rtmp_dump = rtmpdump_player("rtmpdump", &server.url("live/test"));
    let flv_test = BgFlvPlayer::start(port, "/live/test.flv", false).expect("HTTP-FLV player");
    let _flv_ffmpeg = ffmpeg_player("ffmpeg-flv", &server.http_url("live/test.flv"));

    let v = stream_when(&server, port, "3 RTMP + 2 HTTP-FLV players", |v| {
        counts(v) == (3, 2, 5)
            && v["player_list"]
                .as_array()
                .is_some_and(|l| l.iter().all(|p| p["bytes_out"].as_u64() > Some(0)))
    });
    for p in [&mut rtmp_ffmpeg, &mut rtmp_dump] {
        assert!(
            p.is_running(),
            "{} ended early\n{}",
            p.name,
            p.stderr_tail(10)
        );
    }

    // The publisher, as the server logged it.
    assert_eq!(v["key"], key().as_str());
    assert_eq!(v["publisher"]["protocol"], "rtmp", "{v}");
    assert_eq!(
        v["publisher"]["peer"].as_str(),
        kv(&publish_line, "peer"),
        "{v}\n{publish_line}"
    );
    let owner = v["owner_shard"].as_u64().expect("owner_shard");
    assert_eq!(
        Some(owner.to_string().as_str()),
        kv(&publish_line, "shard"),
        "{publish_line}"
    );
    assert!(v["publisher"]["bytes_in"].as_u64() > Some(0), "{v}");

    // Codecs and picture from the sequence headers; rates measured.
    let v = stream_when(&server, port, "a measured frame rate and bitrate", |v| {
        v["video"]["fps"].as_f64().is_some_and(|f| f > 25.0)
            && v["bitrate_in_bps"].as_u64() > Some(100_000)
    });
    assert_eq!(v["video"]["codec"], "h264", "{v}");
    assert_eq!(v["video"]["width"], 640, "{v}");
    assert_eq!(v["video"]["height"], 360, "{v}");
    let fps = v["video"]["fps"].as_f64().unwrap();
    assert!((27.0..=33.0).contains(&fps), "fps {fps}: {v}");
    assert_eq!(v["audio"]["codec"], "aac", "{v}");
    assert_eq!(v["audio"]["sample_rate"], 44100, "{v}");
    // The CODECS strings come from the records: an avc1 with its
    // profile, compatibility and level bytes, AAC with its object type.
    let codecs = v["video"]["codecs"].as_str().unwrap_or_default();
    assert!(codecs.starts_with("avc1.") && codecs.len() == 11, "{v}");
    assert!(
        v["video"]["profile"].is_string() && v["video"]["level"].is_string(),
        "{v}"
    );
    assert_eq!(v["audio"]["codecs"], "mp4a.40.2", "{v}");
    let bitrate = v["bitrate_in_bps"].as_u64().unwrap_or(0);
    assert!(bitrate > 100_000, "bitrate_in_bps {bitrate}: {v}");
    assert!(v["gop_cache"]["frames"].as_u64() > Some(0), "{v}");
    assert!(v["gop_cache"]["bytes"].as_u64() > Some(0), "{v}");
    assert!(v["uptime_s"].as_f64() > Some(0.0), "{v}");
    assert!(
        v["published_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    let sum: u64 = v["player_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bytes_out"].as_u64().unwrap())
        .sum();
    assert_eq!(v["bytes_out"].as_u64(), Some(sum), "{v}");

    // Every shard with players but the owner is a replica.
    let v = stream_when(&server, port, "replica shards listed", |v| {
        let replicas: Vec<u64> = v["replica_shards"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        v["player_list"].as_array().is_some_and(|l| {
            l.iter()
                .filter_map(|p| p["shard"].as_u64())
                .all(|s| s == owner || replicas.contains(&s))
        })
    });

    // The list agrees with the detail, and the old short forms answer.
    let (status, list) = api(port, "GET", "/api/v1/streams");
    assert_eq!(status, 200, "{list}");
    let streams = list["streams"].as_array().expect("streams array");
    assert_eq!(streams.len(), 1, "{list}");
    assert_eq!(counts(&streams[0]), (3, 2, 5), "{list}");
    assert_eq!(list["shards_answered"], 2, "{list}");
    let (status, short) = api(port, "GET", "/api/stream/live/test");
    assert_eq!(status, 200, "{short}");
    assert_eq!(short["key"], key().as_str());
    let (status, old) = api(port, "GET", "/api/streams");
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["streams"][0]["flv"], "/live/test.flv", "{old}");

    // Players and the publisher are in the client list under their ids.
    let (_, clients) = api(port, "GET", "/api/v1/clients");
    let listed = clients["clients"].as_array().expect("clients array");
    for p in v["player_list"].as_array().unwrap() {
        let c = listed
            .iter()
            .find(|c| c["id"] == p["id"])
            .unwrap_or_else(|| panic!("player {p} not in {clients}"));
        assert_eq!(c["kind"], "player", "{c}");
        assert_eq!(c["protocol"], p["protocol"], "{c}");
        assert_eq!(c["key"], key().as_str(), "{c}");
    }
    let publisher = listed
        .iter()
        .find(|c| c["id"] == v["publisher"]["id"])
        .unwrap_or_else(|| panic!("publisher not in {clients}"));
    assert_eq!(publisher["kind"], "publisher", "{publisher}");
    let mine = player_by_port(&v, rtmp_test.local_port).expect("the RTMP test player");
    assert_eq!(mine["protocol"], "rtmp", "{mine}");

    // A player leaves: rtmpdump is killed by PID.
    rtmp_dump.kill();
    let t0 = Instant::now();
    let v = stream_when(&server, port, "2 RTMP players after rtmpdump left", |v| {
        counts(v) == (2, 2, 4)
    });
    assert!(
        t0.elapsed() <= LEAVE_BOUND,
        "the RTMP count dropped {:?} after rtmpdump was killed, bound {LEAVE_BOUND:?}",
        t0.elapsed()
    );

    // DELETE one client: the HTTP-FLV test player.
    let id = player_by_port(&v, flv_test.local_port).expect("the HTTP-FLV test player")["id"]
        .as_u64()
        .expect("numeric id");
    let (status, dropped) = api(port, "DELETE", &format!("/api/v1/clients/{id}"));
    assert_eq!(status, 200, "{dropped}");
    assert_eq!(dropped["client"]["id"], id, "{dropped}");
    let t0 = Instant::now();
    assert!(
        flv_test.wait_finished(Duration::from_secs(5)),
        "the dropped HTTP-FLV player's connection stayed open"
    );
    stream_when(&server, port, "1 HTTP-FLV player after the DELETE", |v| {
        counts(v) == (2, 1, 3)
    });
    assert!(t0.elapsed() <= Duration::from_secs(5));
    assert_error(
        port,
        "DELETE",
        &format!("/api/v1/clients/{id}"),
        404,
        &[&id.to_string()],
    );
    // The other players play on.
    assert!(rtmp_ffmpeg.is_running(), "{}", rtmp_ffmpeg.stderr_tail(10));
    assert!(!rtmp_test.is_finished(), "the RTMP test player was closed");
}

/// `DELETE` of a stream drops its publisher: RTMP players get
/// NetStream.Play.UnpublishNotify, HTTP-FLV players end after
/// `publisher_grace_s`, the publisher's ffmpeg exits, and the stream is
/// gone from the API.
#[test]
fn delete_stream_drops_the_publisher_and_players_see_the_unpublish() {
    let server = Server::with_config("[stream]\npublisher_grace_s = 1\n");
    let port = server.port;
    let mut publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let rtmp = BgPlayer::start(port, "live", "test").expect("RTMP test player");
    let flv = BgFlvPlayer::start(port, "/live/test.flv", false).expect("HTTP-FLV player");
    stream_when(&server, port, "2 players", |v| counts(v) == (1, 1, 2));
    assert!(
        rtmp.wait_until(SETTLE_TIMEOUT, |m| m.iter().any(|m| m.is_keyframe())),
        "no keyframe reached the RTMP player"
    );

    let (status, v) = api(port, "DELETE", &detail_path());
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dropped"], "publisher", "{v}");
    assert_eq!(v["key"], key().as_str(), "{v}");

    assert!(
        rtmp.wait_until(Duration::from_secs(5), |m| m
            .iter()
            .any(
                |m| m.status_code().as_deref() == Some("NetStream.Play.UnpublishNotify")
            )),
        "no NetStream.Play.UnpublishNotify within 5 s\n{}",
        rtmp_client::describe_all(&rtmp.snapshot(), 40)
    );
    poll(
        Duration::from_secs(2),
        "the stream gone from the list",
        || {
            let (_, list) = api(port, "GET", "/api/v1/streams");
            match list["streams"].as_array() {
                Some(a) if a.is_empty() => Ok(()),
                _ => Err(list.to_string()),
            }
        },
    );
    assert_error(port, "GET", &detail_path(), 404, &[&key()]);
    assert_error(
        port,
        "DELETE",
        &detail_path(),
        404,
        &[&key(), "not published"],
    );
    assert!(
        publisher.wait_timeout(Duration::from_secs(10)).is_some(),
        "the dropped publisher's ffmpeg kept running\n{}",
        publisher.stderr_tail(10)
    );
    assert!(
        flv.wait_finished(Duration::from_secs(10)),
        "the HTTP-FLV player was not ended after publisher_grace_s"
    );
}

/// Errors are JSON naming what was wrong; `/status` and `/api/v1/server`
/// describe the server.
#[test]
fn errors_are_json_and_the_server_describes_itself() {
    let server = Server::start();
    let port = server.port;
    let nope = format!("{DEFAULT_VHOST}/live/nope");
    assert_error(
        port,
        "GET",
        &format!("/api/v1/streams/{nope}"),
        404,
        &[&nope],
    );
    assert_error(port, "GET", "/api/stream/live/nope", 404, &[&nope]);
    assert_error(
        port,
        "DELETE",
        &format!("/api/v1/streams/{nope}"),
        404,
        &[&nope],
    );
    assert_error(port, "DELETE", "/api/v1/clients/abc", 400, &["abc"]);
    assert_error(port, "DELETE", "/api/v1/clients/999999", 404, &["999999"]);
    // An id of shard 1 that does not exist: asked of that shard.
    let on_shard_1 = 1024 * 4000 + 1;
    assert_error(
        port,
        "DELETE",
        &format!("/api/v1/clients/{on_shard_1}"),
        404,
        &[&on_shard_1.to_string()],
    );
    assert_error(
        port,
        "GET",
        &format!("/api/v1/clients/{on_shard_1}"),
        404,
        &[&on_shard_1.to_string()],
    );
    assert_error(port, "POST", "/api/v1/streams", 405, &["POST", "GET"]);

    for path in ["/status", "/api/v1/server"] {
        let (status, v) = api(port, "GET", path);
        assert_eq!(status, 200, "{path}: {v}");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
        assert_eq!(v["shards"], 2, "{v}");
        assert_eq!(v["shards_answered"], 2, "{v}");
        assert_eq!(v["pin_cores"], false, "{v}");
        assert_eq!(v["pinned_cpus"], serde_json::json!([null, null]), "{v}");
        assert!(
            v["started_at"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{v}"
        );
        assert!(v["started_unix"].as_u64() > Some(1_600_000_000), "{v}");
        assert!(v["uptime_s"].as_f64() >= Some(0.0), "{v}");
        assert_eq!(v["config"]["port"], port, "{v}");
        assert_eq!(v["config"]["listen"], "127.0.0.1", "{v}");
        assert_eq!(v["config"]["internal_port"], Value::Null, "{v}");
        assert_eq!(v["config"]["hls"]["low_latency"], true, "{v}");
        assert!(v["config"]["limits"]["player_queue_bytes_max"].as_u64() > Some(0));
    }
    // The asking connection is a client too.
    let (status, v) = api(port, "GET", "/api/v1/clients");
    assert_eq!(status, 200, "{v}");
    assert!(
        v["clients"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["kind"] == "http")),
        "{v}"
    );
}

/// With `internal_port` set, the API answers there and 404s on the main
/// port, which still plays HTTP-FLV; the internal port serves nothing else.
#[test]
fn internal_port_serves_only_the_api() {
    let internal = free_port();
    let server = Server::with_config(&format!("internal_port = {internal}\n"));
    let port = server.port;
    assert_ne!(port, internal, "free_port gave the same port twice");
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());

    let (status, v) = api(internal, "GET", "/api/v1/streams");
    assert_eq!(status, 200, "{v}");
    let (status, v) = api(internal, "GET", "/status");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["config"]["internal_port"], internal, "{v}");
    // Every API route, the metrics ones included, follows the rule.
    for path in [
        "/api/v1/streams",
        "/status",
        "/api/streams",
        "/api/v1/clients",
        "/metrics",
        "/api/v1/stats",
        "/api/v1/shards",
    ] {
        assert_error(port, "GET", path, 404, &[path, "internal"]);
    }
    let metrics = http_client::get(internal, "/metrics", REQUEST_TIMEOUT).expect("GET /metrics");
    assert_eq!(metrics.head.status, 200, "{}", metrics.text());
    assert!(metrics.text().contains("shardcast_"), "{}", metrics.text());
    assert_error(internal, "GET", "/live/test.flv", 404, &["/live/test.flv"]);
    assert_error(internal, "GET", "/", 404, &["internal"]);

    let flv = BgFlvPlayer::start(port, "/live/test.flv", false).expect("HTTP-FLV player");
    assert!(
        flv.wait_until(SETTLE_TIMEOUT, |t| t.iter().any(|t| t.is_keyframe())),
        "no keyframe over HTTP-FLV on the main port\n{}",
        server.log_tail(30)
    );
    let v = stream_when(&server, internal, "the HTTP-FLV player", |v| {
        counts(v) == (0, 1, 1)
    });
    assert_eq!(v["video"]["codec"], "h264", "{v}");

    // HLS players hold no connection: they are counted by requests.
    let playlist = http_client::get(port, "/live/test.m3u8", Duration::from_secs(15))
        .expect("playlist request");
    assert_eq!(playlist.head.status, 200, "{}", playlist.text());
    stream_when(&server, internal, "the HLS request counted", |v| {
        v["hls"]["requests"].as_u64() >= Some(1)
    });

    // RTMP on the internal port is refused.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", internal)).expect("connect");
    sock.write_all(&[3u8; 1537]).expect("write C0C1");
    assert!(
        rtmp_client::wait_closed(&mut sock, Instant::now() + Duration::from_secs(5)),
        "RTMP on the internal port was not closed"
    );
}

/// With `--pin-cores`, `/api/v1/server` names each shard's CPU.
#[test]
fn server_reports_pinned_cpus() {
    let server = Server::builder().arg("--pin-cores").start();
    let (status, v) = api(server.port, "GET", "/api/v1/server");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["pin_cores"], true, "{v}");
    let cpus: Vec<u64> = v["pinned_cpus"]
        .as_array()
        .expect("pinned_cpus array")
        .iter()
        .map(|c| {
            c.as_u64()
                .unwrap_or_else(|| panic!("a shard is not pinned: {v}"))
        })
        .collect();
    assert_eq!(cpus.len(), 2, "{v}");
    let online = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    if online >= 2 {
        assert_ne!(cpus[0], cpus[1], "two shards on one CPU: {v}");
    }
}

/// A request body is read past, not taken for the next request: a DELETE
/// with a body (Content-Length or chunked) on a keep-alive connection is
/// answered, and so is the request after it; a body over
/// `http.body_bytes_max` is answered 413 and the connection closed.
#[test]
fn request_bodies_are_read_past_on_keep_alive_connections() {
    let server = Server::with_config("[http]\nbody_bytes_max = 1000\n");
    let deadline = || Instant::now() + REQUEST_TIMEOUT;
    let mut c = http_client::HttpConn::connect(server.port).unwrap();
    let nope = format!("/api/v1/streams/{DEFAULT_VHOST}/live/nope");

    // Content-Length, the body sent in a second write.
    c.send(
        format!(
            "DELETE {nope} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 17\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"{\"reason\":\"test\"}").unwrap();
    let r = c.read_response(false, deadline()).unwrap();
    assert_eq!(r.head.status, 404, "{}", r.head.raw);
    assert!(r.text().contains("nope"), "{}", r.text());

    // Chunked, with the next request pipelined behind it.
    c.send(
        format!(
            "DELETE {nope} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
             GET /api/v1/server HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let r = c.read_response(false, deadline()).unwrap();
    assert_eq!(r.head.status, 404, "{}", r.head.raw);
    let r = c.read_response(false, deadline()).unwrap();
    assert_eq!(r.head.status, 200, "{}\n{}", r.head.raw, r.text());
    let v: Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["shards"], 2, "{v}");

    // Over the bound: 413 naming it, then the server closes.
    c.send(format!("DELETE {nope} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").as_bytes())
        .unwrap();
    let r = c.read_response(false, deadline()).unwrap();
    assert_eq!(r.head.status, 413, "{}", r.head.raw);
    assert!(r.text().contains("http.body_bytes_max"), "{}", r.text());
    let rest = c.read_to_end(deadline()).unwrap();
    assert!(
        rest.is_empty() && c.at_eof(),
        "connection left open: {rest:?}"
    );
}
