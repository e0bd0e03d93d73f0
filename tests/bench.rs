//! The load generator against the real server: `shardcast-bench` (the
//! binary under test too) runs small fan-outs of RTMP and HTTP-FLV players
//! (and RTMPS players, with a test CA) against `shardcast --shards 2` and
//! its `--json` report is checked.
//!
//! Each test starts its own server on a free port; the bench is bounded by
//! its own `--duration` and, should it hang, ended by PID at a deadline.
//! Artefacts (server log, bench stderr and JSON) are kept under
//! `target/tmp/logs/<test>/`.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::test_ca::TestCa;
use common::*;
use serde_json::Value;

/// Longest a bench run of a few seconds may take before it is killed.
const BENCH_DEADLINE: Duration = Duration::from_secs(60);

/// The load generator's binary. It is its own crate (`loadgen/`), built by
/// `cargo build --workspace` into the same target directory as the server,
/// whose path cargo gives this test.
fn bench_exe() -> std::path::PathBuf {
    let exe =
        std::path::Path::new(env!("CARGO_BIN_EXE_shardcast")).with_file_name("shardcast-bench");
    assert!(
        exe.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace, as scripts/test.sh does)",
        exe.display()
    );
    exe
}

/// Runs `shardcast-bench ARGS --json` and returns its report.
fn bench(name: &str, args: &[&str]) -> Value {
    let out_path = artefact_dir().join(format!("{name}.json"));
    let out = File::create(&out_path).expect("create bench output");
    let mut cmd = Command::new(bench_exe());
    cmd.args(args).arg("--json").stdout(Stdio::from(out));
    let mut p = Proc::spawn(name, &mut cmd);
    let status = p.wait_timeout(BENCH_DEADLINE);
    if status.is_none() {
        p.kill();
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "shardcast-bench {args:?} exited with {status:?}\n{}\nstdout: {text}",
        p.stderr_tail(30)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "bench output is not JSON ({e}): {text}\n{}",
            p.stderr_tail(30)
        )
    })
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v:#}"))
}

/// Runs a fan-out of 20 players of `url` for 5 s with the server's PID and
/// checks that everyone connects and gets at least 90% of the published
/// bitrate, time to first frame and latency are measured, no frame is
/// lost, and the server's CPU is sampled. Returns the report and the
/// failure context.
fn fanout_20_all_ok(name: &str, server: &Server, url: &str) -> (Value, String) {
    let pid = server.pid.to_string();
    let r = bench(
        name,
        &[
            "fanout",
            "--url",
            url,
            "--players",
            "20",
            "--duration",
            "5",
            "--server-pid",
            &pid,
        ],
    );
    let ctx = format!("report: {r:#}\n{}", server.log_tail(40));
    assert_eq!(num(&r, "/players/requested"), 20.0, "{ctx}");
    assert_eq!(num(&r, "/players/connected"), 20.0, "{ctx}");
    assert_eq!(num(&r, "/players/failed"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/dropped"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/ok"), 20.0, "{ctx}");
    assert_eq!(num(&r, "/players/skipped_frames"), 0.0, "{ctx}");
    assert_eq!(r["reference_source"], "publisher", "{ctx}");
    // 2500k video + 128k audio by default.
    let reference = num(&r, "/reference_media_bps");
    assert!(
        (2_400_000.0..2_900_000.0).contains(&reference),
        "reference {reference} bit/s; {ctx}"
    );
    assert!(num(&r, "/delivered_gbps") > 0.0, "{ctx}");
    for hist in ["ttff_ms", "first_keyframe_ms"] {
        assert_eq!(num(&r, &format!("/{hist}/count")), 20.0, "{hist}: {ctx}");
        let p50 = num(&r, &format!("/{hist}/p50"));
        assert!(p50 > 0.0 && p50 < 1000.0, "{hist} p50 {p50} ms; {ctx}");
    }
    // About 30 live frames per second per player carry a send stamp.
    assert!(num(&r, "/latency_ms/count") > 20.0 * 30.0 * 2.0, "{ctx}");
    let lat = num(&r, "/latency_ms/p50");
    assert!(lat > 0.0 && lat < 1000.0, "latency p50 {lat} ms; {ctx}");
    assert!(num(&r, "/latency_ms/p99") >= lat, "{ctx}");
    assert!(num(&r, "/server/cpu_s_window") > 0.0, "{ctx}");
    assert!(num(&r, "/server/rss_mb_end") > 0.0, "{ctx}");
    assert!(r["aborted"].is_null(), "{ctx}");
    (r, ctx)
}

#[test]
fn fanout_20_players_all_ok_with_ttff_and_latency() {
    let server = Server::start();
    let url = server.url("live/bench");
    let (r, ctx) = fanout_20_all_ok("fanout", &server, &url);
    assert_eq!(r["publish_url"], url.as_str(), "{ctx}");
    // Every player's connection was logged as a play on the server.
    let plays = server.find_logs(|l| is_event(l, "play"));
    assert!(plays.len() >= 20, "{} play lines; {ctx}", plays.len());
}

/// The same fan-out with HTTP-FLV players: the publisher goes, by default,
/// to rtmp:// on the same port, and the server saw 20 HTTP-FLV plays.
#[test]
fn fanout_20_http_flv_players_all_ok_with_ttff_and_latency() {
    let server = Server::start();
    let url = server.http_url("live/x.flv");
    let (r, ctx) = fanout_20_all_ok("fanout-http-flv", &server, &url);
    assert_eq!(r["publish_url"], server.url("live/x").as_str(), "{ctx}");
    let plays = server.find_logs(|l| is_event(l, "play") && kv(l, "protocol") == Some("http-flv"));
    assert_eq!(plays.len(), 20, "HTTP-FLV play lines; {ctx}");
}

/// Plays `url` with 10 players (50/s) for 5 s and checks that all connect,
/// get the stream at the best player's rate and see a keyframe. Returns
/// the report and the failure context.
fn play_10_all_ok(name: &str, server: &Server, url: &str) -> (Value, String) {
    let r = bench(
        name,
        &[
            "play",
            url,
            "--players",
            "10",
            "--ramp",
            "50/s",
            "--duration",
            "5",
        ],
    );
    let ctx = format!("report: {r:#}\n{}", server.log_tail(40));
    assert_eq!(num(&r, "/players/connected"), 10.0, "{ctx}");
    assert_eq!(num(&r, "/players/ok"), 10.0, "{ctx}");
    assert_eq!(r["reference_source"], "best player", "{ctx}");
    assert_eq!(num(&r, "/first_keyframe_ms/count"), 10.0, "{ctx}");
    (r, ctx)
}

/// `play` of HTTP-FLV against the bench's own `publish` in another process:
/// every player gets the stream, and the stamps (same host, same clock)
/// give latencies.
#[test]
fn play_http_flv_against_a_bench_publisher() {
    let server = Server::start();
    let mut cmd = Command::new(bench_exe());
    cmd.args(["publish", &server.url("live/p"), "--duration", "30"]);
    let _publisher = Proc::spawn("bench-publisher", &mut cmd);
    server.wait_for_publish(
        &format!("{DEFAULT_VHOST}/live/p"),
        1,
        Duration::from_secs(15),
    );
    let (r, ctx) = play_10_all_ok("play-http-flv", &server, &server.http_url("live/p.flv"));
    assert_eq!(num(&r, "/players/skipped_frames"), 0.0, "{ctx}");
    assert!(num(&r, "/latency_ms/count") > 10.0 * 30.0, "{ctx}");
    assert!(r["publish_url"].is_null(), "{ctx}");
}

/// `play` against a stream published by ffmpeg (real x264 and AAC, no
/// bench stamps): players connect, get media at the best player's rate,
/// and no latency is claimed for frames without a stamp.
#[test]
fn play_mode_against_an_ffmpeg_publisher() {
    let server = Server::start();
    let _publisher = publish_and_wait(&server, "ffmpeg-publisher");
    let (r, ctx) = play_10_all_ok("play", &server, &server.url("live/test"));
    assert_eq!(num(&r, "/latency_ms/count"), 0.0, "{ctx}");
    assert!(r["server"].is_null(), "{ctx}");
}

/// `play` of rtmps:// (`--cacert` on a test CA) against a TLS server and
/// an ffmpeg publisher: every player completes the TLS handshake, gets the
/// stream at the best player's rate and sees keyframes; the server logged
/// their rtmps:// tcUrl. With another CA's certificate as --cacert every
/// player fails on the server's certificate: the players did speak TLS
/// (the server would serve plain RTMP on the port too).
#[test]
fn play_rtmps_with_cacert_against_an_ffmpeg_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("srv", &["localhost"]);
    let server = Server::builder()
        .config(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ))
        .start();
    let _publisher = publish_and_wait(&server, "ffmpeg-publisher");
    let url = format!("rtmps://127.0.0.1:{}/live/test", server.port);
    // 5 players for 4 s, trusting `cacert`.
    let play = |name: &str, cacert: &std::path::Path| {
        let cacert = cacert.to_str().unwrap();
        bench(
            name,
            &[
                "play",
                &url,
                "--cacert",
                cacert,
                "--players",
                "5",
                "--duration",
                "4",
            ],
        )
    };
    let r = play("play-rtmps", &ca.pem());
    let ctx = format!("report: {r:#}\n{}", server.log_tail(40));
    assert_eq!(num(&r, "/players/connected"), 5.0, "{ctx}");
    assert_eq!(num(&r, "/players/failed"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/dropped"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/ok"), 5.0, "{ctx}");
    assert_eq!(r["reference_source"], "best player", "{ctx}");
    assert!(
        num(&r, "/players/video_frames_received") > 5.0 * 30.0,
        "{ctx}"
    );
    assert_eq!(num(&r, "/first_keyframe_ms/count"), 5.0, "{ctx}");
    assert_eq!(num(&r, "/ttff_ms/count"), 5.0, "{ctx}");
    // ffmpeg's frames carry no bench stamp: no latency is claimed.
    assert_eq!(num(&r, "/latency_ms/count"), 0.0, "{ctx}");
    assert!(
        r["errors"].as_object().is_some_and(|e| e.is_empty()),
        "{ctx}"
    );
    // RTMP play lines (HTTP-FLV ones name their protocol).
    let key = format!("{DEFAULT_VHOST}/live/test");
    let plays = server.find_logs(|l| {
        is_event(l, "play") && kv(l, "key") == Some(key.as_str()) && kv(l, "protocol").is_none()
    });
    assert!(plays.len() >= 5, "{} RTMP play lines; {ctx}", plays.len());
    let tc_url = format!("rtmps://127.0.0.1:{}/live", server.port);
    let connects =
        server.find_logs(|l| is_event(l, "connect") && kv(l, "tc_url") == Some(tc_url.as_str()));
    assert_eq!(connects.len(), 5, "connects with tcUrl {tc_url}; {ctx}");

    let other = TestCa::new(dir.path(), "other");
    let r = play("play-rtmps-other-ca", &other.pem());
    let ctx = format!("report: {r:#}\n{}", server.log_tail(20));
    assert_eq!(num(&r, "/players/failed"), 5.0, "{ctx}");
    let errors = r["errors"].as_object().expect("errors");
    assert!(
        !errors.is_empty() && errors.keys().all(|e| e.contains("certificate")),
        "{ctx}"
    );
}

/// URLs the bench cannot play are refused at once (exit 2), before any
/// connection: an https:// or rtmps:// URL with no way to verify the
/// server (neither `--cacert` nor `--insecure`), and an http:// URL that
/// is neither .flv nor .m3u8.
#[test]
fn unverifiable_tls_and_unknown_urls_are_refused() {
    for (args, says) in [
        (
            &["play", "https://127.0.0.1:1/live/x.flv", "--players", "1"][..],
            "--cacert",
        ),
        (
            &[
                "fanout",
                "--url",
                "https://127.0.0.1:1/live/x.flv",
                "--players",
                "1",
            ],
            "--cacert",
        ),
        (
            &["play", "rtmps://127.0.0.1:1/live/x", "--players", "1"],
            "--cacert",
        ),
        (
            &[
                "fanout",
                "--url",
                "rtmps://127.0.0.1:1/live/x",
                "--players",
                "1",
            ],
            "--cacert",
        ),
        (
            &["play", "http://127.0.0.1:1/live/x", "--players", "1"],
            ".flv",
        ),
        (&["publish", "http://127.0.0.1:1/live/x.flv"], "rtmp://"),
    ] {
        let out = Command::new(bench_exe())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run shardcast-bench");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Latency p50 a low-latency HLS player must stay under, in ms: with the
/// server's default 500 ms parts a frame waits at most a part for its part
/// to close, then one blocking reload and one GET.
const LL_HLS_LATENCY_P50_MAX_MS: f64 = 3000.0;

/// Paths under `prefix` the server logged GET requests for (debug log).
fn get_paths(server: &Server, prefix: &str) -> Vec<String> {
    server
        .logs()
        .iter()
        .filter_map(|l| l.rsplit_once(" GET ").map(|(_, p)| p.trim()))
        .filter(|p| p.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// `fanout --url http://…/live/x.m3u8`: LL-HLS players (blocking reloads,
/// one GET per part) against the real server for 10 s. Every player
/// connects and gets the stream's bitrate, frames carry their stamps
/// through the TS segmenter, and latency stays low.
#[test]
fn fanout_ll_hls_players_fetch_parts_with_low_latency() {
    let server = Server::start();
    let url = server.http_url("live/hls.m3u8");
    let pid = server.pid.to_string();
    let players = 6.0;
    let r = bench(
        "fanout-hls",
        &[
            "fanout",
            "--url",
            &url,
            "--players",
            "6",
            "--duration",
            "10",
            "--server-pid",
            &pid,
        ],
    );
    let ctx = format!("report: {r:#}\n{}", server.log_tail(40));
    assert_eq!(num(&r, "/players/connected"), players, "{ctx}");
    assert_eq!(num(&r, "/players/failed"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/dropped"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/ok"), players, "{ctx}");
    assert_eq!(num(&r, "/players/stalls"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/skipped_frames"), 0.0, "{ctx}");
    assert_eq!(r["rcvlowat"], 0, "{ctx}");
    // 30 fps for about 9 s per player, less the start-up.
    assert!(
        num(&r, "/players/video_frames_received") > players * 30.0 * 6.0,
        "{ctx}"
    );
    for hist in ["ttff_ms", "first_keyframe_ms"] {
        assert_eq!(num(&r, &format!("/{hist}/count")), players, "{hist}: {ctx}");
        let p50 = num(&r, &format!("/{hist}/p50"));
        assert!(p50 > 0.0 && p50 < 3000.0, "{hist} p50 {p50} ms; {ctx}");
    }
    assert!(num(&r, "/latency_ms/count") > players * 30.0 * 5.0, "{ctx}");
    let lat = num(&r, "/latency_ms/p50");
    assert!(
        lat > 0.0 && lat < LL_HLS_LATENCY_P50_MAX_MS,
        "latency p50 {lat} ms; {ctx}"
    );
    assert!(num(&r, "/server/cpu_s_window") > 0.0, "{ctx}");
    assert!(r["aborted"].is_null(), "{ctx}");
    // The players fetched parts (`/live/hls/M.P.ts`), not whole segments.
    let parts = get_paths(&server, "/live/hls/")
        .iter()
        .filter(|p| p.matches('.').count() == 2)
        .count();
    assert!(parts as f64 > players * 10.0, "{parts} part GETs; {ctx}");
}

/// `--hls-plain`: the same players as plain HLS players (whole segments,
/// playlist polling) against the same low-latency playlist: they play
/// without stalls or gaps, a few seconds behind.
#[test]
fn fanout_plain_hls_players_fetch_segments() {
    let server = Server::start();
    let url = server.http_url("live/plain.m3u8");
    let r = bench(
        "fanout-hls-plain",
        &[
            "fanout",
            "--url",
            &url,
            "--players",
            "3",
            "--duration",
            "12",
            "--hls-plain",
        ],
    );
    let ctx = format!("report: {r:#}\n{}", server.log_tail(40));
    assert_eq!(num(&r, "/players/connected"), 3.0, "{ctx}");
    assert_eq!(num(&r, "/players/failed"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/dropped"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/stalls"), 0.0, "{ctx}");
    assert_eq!(num(&r, "/players/skipped_frames"), 0.0, "{ctx}");
    assert!(
        num(&r, "/players/video_frames_received") > 3.0 * 30.0 * 6.0,
        "{ctx}"
    );
    let lat = num(&r, "/latency_ms/p50");
    assert!(lat > 500.0 && lat < 8000.0, "latency p50 {lat} ms; {ctx}");
    // Whole segments only (`/live/plain/M.ts`).
    let gets = get_paths(&server, "/live/plain/");
    assert!(!gets.is_empty(), "{ctx}");
    assert!(
        gets.iter().all(|p| p.matches('.').count() == 1),
        "a part was fetched: {gets:?}"
    );
}
