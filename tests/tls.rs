//! TLS on the one port (issue 11), against the real binary with real
//! clients: curl (`--cacert` on a CA this test makes with openssl) for the
//! API, HTTP-FLV and HLS over HTTPS; Debian's ffmpeg publishing and ffprobe
//! playing `rtmps://`; plain and TLS on the same port at once; a second
//! certificate chosen by SNI; a SIGHUP certificate swap seen by a new
//! connection while an old player keeps playing; the TLS-only `tls.port`;
//! the handshake deadline.
//!
//! Every process is stopped by PID; every wait has a deadline.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::test_ca::TestCa;
use common::*;

const CURL_MAX_S: &str = "10";

/// What one curl run got.
struct Curl {
    /// curl's exit code (0 = fine; 60 = the certificate did not verify).
    exit: i32,
    /// The HTTP status, 0 when there was none.
    status: u16,
    body: Vec<u8>,
    stderr: String,
}

/// `curl -sS` with `args`, bounded by `--max-time`; the status comes from
/// `-w`, the body from a file.
fn curl(name: &str, args: &[&str]) -> Curl {
    let body_path = artefact_dir().join(format!("{name}.body"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", CURL_MAX_S, "-o"])
        .arg(&body_path)
        .args(["-w", "%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        body: std::fs::read(&body_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn https(server: &Server, path: &str) -> String {
    format!("https://127.0.0.1:{}/{path}", server.port)
}

fn tls_config(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
        cert.display(),
        key.display()
    )
}

/// The streams ffprobe sees in `file`, by codec name.
fn codecs_of(name: &str, file: &Path) -> Vec<String> {
    let p = ffprobe(name, file.to_str().unwrap(), None, Duration::from_secs(20));
    p.streams
        .iter()
        .filter_map(|s| s.get("codec_name").cloned())
        .collect()
}

#[test]
fn https_serves_the_api_flv_and_hls_beside_plain_http_on_one_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("srv", &["localhost"]);
    let server = Server::with_config(&tls_config(&cert, &key, ""));
    let cacert = ca.pem();
    let cacert = cacert.to_str().unwrap();
    let _publisher = publish_and_wait_opts(&server, "pub", &PublishOpts::small());

    // The API and /metrics over HTTPS, and over plain HTTP at the same time.
    let api = curl(
        "api-https",
        &["--cacert", cacert, &https(&server, "api/v1/server")],
    );
    assert_eq!(
        (api.exit, api.status),
        (0, 200),
        "HTTPS API: {}",
        api.stderr
    );
    let v: serde_json::Value = serde_json::from_slice(&api.body).expect("API JSON over HTTPS");
    assert_eq!(v["config"]["port"], server.port, "{v}");
    let plain = curl("api-plain", &[&server.http_url("api/v1/server")]);
    assert_eq!(
        (plain.exit, plain.status),
        (0, 200),
        "plain API: {}",
        plain.stderr
    );
    let metrics = curl(
        "metrics-https",
        &["--cacert", cacert, &https(&server, "metrics")],
    );
    assert_eq!(metrics.status, 200, "{}", metrics.stderr);
    assert!(String::from_utf8_lossy(&metrics.body).contains("shardcast_"));

    // HTTP-FLV over HTTPS: a file ffprobe reads as H.264 + AAC.
    let flv_path = artefact_dir().join("https.flv");
    let _ = std::fs::remove_file(&flv_path);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "4", "--cacert", cacert, "-o"])
        .arg(&flv_path)
        .arg(https(&server, "live/test.flv"))
        .stdin(Stdio::null())
        .output()
        .expect("curl HTTPS-FLV");
    // 28 = curl stopped it at --max-time, as intended for a live stream.
    assert_eq!(
        out.status.code(),
        Some(28),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flv_len = std::fs::metadata(&flv_path).map(|m| m.len()).unwrap_or(0);
    assert!(flv_len > 50_000, "HTTPS-FLV gave {flv_len} bytes in 4 s");
    let probe = ffprobe(
        "https-flv-probe",
        flv_path.to_str().unwrap(),
        None,
        Duration::from_secs(20),
    );
    let summary = check_h264_aac(&probe, 2.0).unwrap_or_else(|e| panic!("HTTPS-FLV: {e}"));
    assert!(summary.video_frames >= 60, "{summary:?}");

    // HLS over HTTPS: the playlist and one of its segments.
    let deadline = Instant::now() + Duration::from_secs(15);
    let segment = loop {
        let pl = curl(
            "hls-playlist",
            &["--cacert", cacert, &https(&server, "live/test.m3u8")],
        );
        let text = String::from_utf8_lossy(&pl.body).into_owned();
        if pl.status == 200 {
            if let Some(uri) = text
                .lines()
                .find(|l| !l.starts_with('#') && l.contains(".ts"))
            {
                break uri.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no segment in the HTTPS playlist: {text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let seg_url = if segment.starts_with('/') {
        https(&server, segment.trim_start_matches('/'))
    } else {
        https(&server, &format!("live/{segment}"))
    };
    let seg = curl("hls-segment", &["--cacert", cacert, &seg_url]);
    assert_eq!(seg.status, 200, "segment {seg_url}: {}", seg.stderr);
    let seg_path = artefact_dir().join("https-segment.ts");
    std::fs::write(&seg_path, &seg.body).unwrap();
    let codecs = codecs_of("https-segment-probe", &seg_path);
    assert!(
        codecs.contains(&"h264".to_string()),
        "segment codecs {codecs:?}"
    );
    assert!(
        server
            .find_logs(|l| l.contains("TLS") && is_warn_or_error(l))
            .is_empty(),
        "TLS warnings: {:?}",
        server.find_logs(|l| l.contains("TLS") && is_warn_or_error(l))
    );
}

#[test]
fn rtmps_publish_and_play_with_ffmpeg_beside_plain_rtmp() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("srv", &["localhost"]);
    let server = Server::with_config(&tls_config(&cert, &key, ""));
    // ffmpeg publishes over RTMPS; with two shards the publisher may be
    // handed to its stream's owner, TLS session and all.
    let url = format!("rtmps://127.0.0.1:{}/live/test", server.port);
    let mut publisher = ffmpeg_publish("rtmps-pub", &url, &PublishOpts::small());
    let key_name = format!("{DEFAULT_VHOST}/live/test");
    let published = server.wait_for_log(Duration::from_secs(15), |l| {
        is_event(l, "publish") && kv(l, "key") == Some(key_name.as_str())
    });
    assert!(
        published.is_some(),
        "no publish over RTMPS\n{}\n{}",
        publisher.stderr_tail(20),
        server.log_tail(40)
    );
    let secure = ffprobe("rtmps-play", &url, Some(3.0), Duration::from_secs(20));
    let s = check_h264_aac(&secure, 2.0)
        .unwrap_or_else(|e| panic!("RTMPS play: {e}\n{}", secure.stderr));
    assert!(s.video_frames >= 45, "{s:?}");
    let plain = ffprobe(
        "rtmp-play",
        &server.url("live/test"),
        Some(3.0),
        Duration::from_secs(20),
    );
    check_h264_aac(&plain, 2.0)
        .unwrap_or_else(|e| panic!("plain RTMP play of an RTMPS publish: {e}"));
    assert!(publisher.is_running(), "{}", publisher.stderr_tail(20));
}

#[test]
fn a_second_certificate_is_chosen_by_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let other_ca = TestCa::new(dir.path(), "other");
    let (cert, key) = ca.leaf("default", &["localhost"]);
    let (cert2, key2) = other_ca.leaf("second", &["second.test"]);
    let extra = format!(
        "[[tls.certs]]\nnames = [\"second.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert2.display(),
        key2.display()
    );
    let server = Server::builder()
        .config(&tls_config(&cert, &key, &extra))
        .shards(1)
        .start();
    let resolve = format!("second.test:{}:127.0.0.1", server.port);
    let second_url = format!("https://second.test:{}/api/v1/server", server.port);
    let by_sni = curl(
        "sni-second",
        &[
            "--resolve",
            &resolve,
            "--cacert",
            other_ca.pem().to_str().unwrap(),
            &second_url,
        ],
    );
    assert_eq!(
        (by_sni.exit, by_sni.status),
        (0, 200),
        "second.test: {}",
        by_sni.stderr
    );
    // The default CA does not vouch for what second.test is served.
    let wrong = curl(
        "sni-second-wrong-ca",
        &[
            "--resolve",
            &resolve,
            "--cacert",
            ca.pem().to_str().unwrap(),
            &second_url,
        ],
    );
    assert_eq!(
        wrong.exit, 60,
        "second.test verified with the default CA: {}",
        wrong.stderr
    );
    let default_url = format!("https://localhost:{}/api/v1/server", server.port);
    let default = curl(
        "sni-default",
        &["--cacert", ca.pem().to_str().unwrap(), &default_url],
    );
    assert_eq!(
        (default.exit, default.status),
        (0, 200),
        "localhost: {}",
        default.stderr
    );
}

#[test]
fn sighup_swaps_the_certificate_for_new_connections_while_old_players_play_on() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = TestCa::new(dir.path(), "old");
    let new_ca = TestCa::new(dir.path(), "new");
    let (old_cert, old_key) = old_ca.leaf("old-leaf", &["localhost"]);
    let (new_cert, new_key) = new_ca.leaf("new-leaf", &["localhost"]);
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&old_cert, &cert).unwrap();
    std::fs::copy(&old_key, &key).unwrap();
    let server = Server::with_config(&tls_config(&cert, &key, ""));
    let _publisher = publish_and_wait_opts(&server, "pub", &PublishOpts::small());

    // An HTTPS-FLV player on the old certificate, playing for 12 s.
    let flv_path = artefact_dir().join("sighup-old-player.flv");
    let _ = std::fs::remove_file(&flv_path);
    let mut old_player = Proc::spawn(
        "sighup-old-player",
        Command::new("curl")
            .args(["-sS", "--max-time", "12", "--cacert"])
            .arg(old_ca.pem())
            .arg("-o")
            .arg(&flv_path)
            .arg(https(&server, "live/test.flv"))
            .stdout(Stdio::null()),
    );
    let size = || std::fs::metadata(&flv_path).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while size() < 20_000 {
        assert!(
            Instant::now() < deadline,
            "the old player got {} bytes",
            size()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let from = server.log_len();
    signal(server.pid, libc::SIGHUP);
    let reloaded = server.wait_for_log_from(from, Duration::from_secs(5), |l| {
        l.contains("reload (SIGHUP): tls:")
    });
    assert!(
        reloaded.is_some(),
        "no reload line\n{}",
        server.log_tail(20)
    );
    let before = size();
    let api = https(&server, "api/v1/server");
    let fresh = curl(
        "sighup-new",
        &["--cacert", new_ca.pem().to_str().unwrap(), &api],
    );
    assert_eq!(
        (fresh.exit, fresh.status),
        (0, 200),
        "new certificate: {}",
        fresh.stderr
    );
    let stale = curl(
        "sighup-stale",
        &["--cacert", old_ca.pem().to_str().unwrap(), &api],
    );
    assert_eq!(
        stale.exit, 60,
        "a new connection still got the old certificate"
    );

    // A broken file keeps the certificate in use, and the log says why.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let from = server.log_len();
    signal(server.pid, libc::SIGHUP);
    let kept = server.wait_for_log_from(from, Duration::from_secs(5), |l| {
        l.contains("keeping the running configuration") && l.contains("live.pem")
    });
    assert!(
        kept.is_some(),
        "no error line for a bad file\n{}",
        server.log_tail(20)
    );
    let still = curl(
        "sighup-kept",
        &["--cacert", new_ca.pem().to_str().unwrap(), &api],
    );
    assert_eq!(
        (still.exit, still.status),
        (0, 200),
        "after a failed reload: {}",
        still.stderr
    );

    // The old player played on through both reloads, to its own end.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        size() > before + 20_000,
        "the old player stalled: {before} -> {}",
        size()
    );
    let status = old_player.wait_timeout(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(28),
        "{}",
        old_player.stderr_tail(5)
    );
}

#[test]
fn tls_port_serves_only_tls_and_a_stalled_handshake_is_cut_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("srv", &["localhost"]);
    let tls_port = free_port();
    let extra = format!("port = {tls_port}\nhandshake_timeout_s = 1\n");
    let server = Server::with_config(&tls_config(&cert, &key, &extra));
    let cacert = ca.pem();
    let on_tls_port = format!("https://127.0.0.1:{tls_port}/api/v1/server");
    let ok = curl(
        "tls-port",
        &["--cacert", cacert.to_str().unwrap(), &on_tls_port],
    );
    assert_eq!((ok.exit, ok.status), (0, 200), "tls.port: {}", ok.stderr);
    let plain = curl(
        "tls-port-plain",
        &[&format!("http://127.0.0.1:{tls_port}/api/v1/server")],
    );
    assert_ne!(plain.status, 200, "plain HTTP answered on tls.port");
    assert!(
        server
            .wait_for_log(Duration::from_secs(3), |l| l.contains("a plain connection"))
            .is_some(),
        "{}",
        server.log_tail(10)
    );

    // A client that starts a TLS record and stops: closed after
    // tls.handshake_timeout_s (1 s), long before the 10 s RTMP deadline.
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    s.write_all(&[0x16, 0x03]).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert_eq!(n, 0, "the server sent bytes to a half handshake");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(
        server
            .wait_for_log(Duration::from_secs(3), |l| l
                .contains("tls.handshake_timeout_s passed"))
            .is_some(),
        "{}",
        server.log_tail(10)
    );
    let metrics = curl("tls-metrics", &[&server.http_url("metrics")]);
    let text = String::from_utf8_lossy(&metrics.body);
    let refused: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("shardcast_refused_total") && l.contains("reason=\"tls_handshake\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        refused >= 1.0,
        "tls_handshake refusals not counted:\n{text}"
    );
}
