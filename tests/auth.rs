//! Signed URLs (issue 11), against the real binary with `--shards 2`:
//! `auth.publish = "signed"` admits only a publisher whose stream key
//! carries a valid signature (and a refused one never becomes the stream's
//! publisher); `auth.play = "signed"` refuses RTMP, HTTP-FLV and HLS
//! players without one (401), or with an expired, tampered, wrong-action or
//! wrong-stream one (403), before any media byte; HLS segment URIs carry
//! the playlist's signature. Signatures come from `shardcast sign`, the
//! command operators use, and from an independent HMAC in the unit tests.
//!
//! Every process is stopped by PID; every wait has a deadline.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::http_client;
use common::rtmp_client::RtmpClient;
use common::*;

const SECRET: &str = "s3cret-for-tests";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn key() -> String {
    format!("{DEFAULT_VHOST}/live/test")
}

/// `shardcast sign ...`: the query it prints.
fn sign_cmd(action: &str, stream: &str, ttl: u64) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .args(["sign", "--secret", SECRET, "--action", action])
        .args(["--stream", stream, "--ttl", &ttl.to_string()])
        .output()
        .expect("run shardcast sign");
    assert!(out.status.success(), "shardcast sign failed: {out:?}");
    let q = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        q.starts_with("expires=") && q.contains("&sign="),
        "shardcast sign printed {q:?}"
    );
    q
}

/// A signature made here, for cases `shardcast sign` does not make
/// (expired ones).
fn sign_at(action: &str, key: &str, expires: u64) -> String {
    proto::sign::signed_query(SECRET.as_bytes(), action, key, expires)
}

/// Publishes `name` with the test client and returns the onStatus codes
/// and descriptions it got, up to the first that is not `Publish.Start`.
fn publish_statuses(port: u16, name: &str) -> Vec<(String, String)> {
    let mut c = RtmpClient::connect(port, "live").expect("publisher connects");
    c.start_publish(name).expect("publish sent");
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut got = Vec::new();
    while let Ok(Some((code, m))) = c.wait_status(deadline) {
        let desc = m.status_description().unwrap_or_default();
        let start = code == "NetStream.Publish.Start";
        got.push((code, desc));
        if !start {
            break;
        }
    }
    got
}

/// Plays `live/<name>` with the test client: the onStatus codes and
/// descriptions, and how many media messages arrived within `for_s`.
fn play_statuses(port: u16, name: &str, for_s: u64) -> (Vec<(String, String)>, usize) {
    let mut c = RtmpClient::connect(port, "live").expect("player connects");
    let sid = c.create_stream().expect("createStream");
    c.play(sid, name).expect("play sent");
    c.statuses_and_media(Instant::now() + Duration::from_secs(for_s))
}

fn stream_is_live(port: u16) -> bool {
    let r = http_client::get(port, &format!("/api/v1/streams/{}", key()), REQUEST_TIMEOUT)
        .expect("API answers");
    r.head.status == 200
}

#[test]
fn a_signed_publish_admits_only_a_valid_signature() {
    let server = Server::with_config(&format!(
        "[auth]\npublish = \"signed\"\nsecret = \"{SECRET}\"\n"
    ));
    let port = server.port;
    let future = now_s() + 600;
    let refused: [(&str, String, &str); 5] = [
        ("no signature", "test".into(), "no signature"),
        (
            "tampered",
            format!("test?expires={future}&sign={}", "0".repeat(64)),
            "does not match",
        ),
        (
            "a play signature",
            format!("test?{}", sign_at("play", &key(), future)),
            "does not match",
        ),
        (
            "another stream's",
            format!("test?{}", sign_cmd("publish", "live/other", 600)),
            "does not match",
        ),
        (
            "expired",
            format!("test?{}", sign_at("publish", &key(), now_s() - 120)),
            "expired",
        ),
    ];
    for (what, name, why) in &refused {
        let got = publish_statuses(port, name);
        assert!(
            got.iter()
                .any(|(c, d)| c == "NetStream.Publish.Denied" && d.contains(why)),
            "{what}: got {got:?}, expected NetStream.Publish.Denied naming {why:?}\n{}",
            server.log_tail(20)
        );
        assert!(
            !got.iter().any(|(c, _)| c == "NetStream.Publish.Start"),
            "{what}: the publisher was accepted: {got:?}"
        );
        assert!(!stream_is_live(port), "{what}: the stream went live");
    }
    assert!(
        server.find_logs(|l| is_event(l, "publish")).is_empty(),
        "a refused publisher became the stream's publisher:\n{}",
        server.log_tail(30)
    );

    // The signature `shardcast sign` prints, on an ffmpeg stream key.
    let q = sign_cmd("publish", "live/test", 600);
    let _publisher = publish_and_wait_at(
        &server,
        "publisher",
        &format!("live/test?{q}"),
        &key(),
        &PublishOpts::small(),
    );
    let probe = ffprobe(
        "player",
        &server.url("live/test"),
        Some(2.0),
        Duration::from_secs(20),
    );
    check_h264_aac(&probe, 1.0).unwrap_or_else(|e| panic!("play after a signed publish: {e}"));
}

#[test]
fn signed_play_refuses_rtmp_flv_and_hls_players_without_a_valid_signature() {
    let server = Server::with_config(&format!(
        "[auth]\nplay = \"signed\"\nsecret = \"{SECRET}\"\n"
    ));
    let port = server.port;
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let good = sign_cmd("play", "live/test", 600);
    let future = now_s() + 600;

    // HTTP-FLV: 401 without a credential, 403 with a bad one, each naming why.
    let flv = |q: &str| {
        let target = if q.is_empty() {
            "/live/test.flv".to_string()
        } else {
            format!("/live/test.flv?{q}")
        };
        http_client::get(port, &target, REQUEST_TIMEOUT).expect("HTTP answers")
    };
    let tampered = {
        // The last hex digit flipped.
        let mut s = good.clone();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let cases: [(&str, String, u16, &str); 5] = [
        ("no signature", String::new(), 401, "no signature"),
        (
            "expired",
            sign_at("play", &key(), now_s() - 120),
            403,
            "expired",
        ),
        (
            "a publish signature",
            sign_at("publish", &key(), future),
            403,
            "does not match",
        ),
        (
            "another stream's",
            sign_cmd("play", "live/other", 600),
            403,
            "does not match",
        ),
        ("tampered", tampered, 403, "does not match"),
    ];
    for (what, q, status, why) in &cases {
        let r = flv(q);
        assert_eq!(
            r.head.status,
            *status,
            "HTTP-FLV {what}: {}\n{}",
            r.head.raw,
            r.text()
        );
        assert!(r.text().contains(why), "HTTP-FLV {what}: {}", r.text());
        assert_ne!(r.head.header("content-type"), Some("video/x-flv"), "{what}");
    }
    let probe = ffprobe(
        "flv-player",
        &server.http_url(&format!("live/test.flv?{good}")),
        Some(2.0),
        Duration::from_secs(20),
    );
    check_h264_aac(&probe, 1.0).unwrap_or_else(|e| panic!("signed HTTP-FLV play: {e}"));

    // RTMP: refused with an onStatus error and no media; admitted when signed.
    let (statuses, media) = play_statuses(port, "test", 3);
    assert!(
        statuses
            .iter()
            .any(|(c, d)| c == "NetStream.Play.Failed" && d.contains("no signature")),
        "RTMP play without a signature got {statuses:?}"
    );
    assert!(
        !statuses.iter().any(|(c, _)| c == "NetStream.Play.Start"),
        "{statuses:?}"
    );
    assert_eq!(media, 0, "a refused RTMP player got media");
    let probe = ffprobe(
        "rtmp-player",
        &server.url(&format!("live/test?{good}")),
        Some(2.0),
        Duration::from_secs(20),
    );
    check_h264_aac(&probe, 1.0).unwrap_or_else(|e| panic!("signed RTMP play: {e}"));

    // HLS: the playlist's segment URIs carry its signature, and a segment
    // is served with it and refused without it.
    let r = http_client::get(port, "/live/test.m3u8", REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 401, "unsigned playlist: {}", r.text());
    let (playlist, segment) =
        playlist_with_segment("signed playlist", Duration::from_secs(20), || {
            http_client::get(port, &format!("/live/test.m3u8?{good}"), REQUEST_TIMEOUT).unwrap()
        });
    assert!(
        segment.ends_with(&format!("?{good}")),
        "segment URI {segment:?} does not carry the playlist's signature"
    );
    assert!(
        playlist.contains(&format!(".ts?{good}\"")),
        "part URIs do not carry the signature:\n{playlist}"
    );
    let r = http_client::get(port, &format!("/live/{segment}"), REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 200, "signed segment: {}", r.head.raw);
    assert_eq!(r.head.header("content-type"), Some("video/mp2t"));
    assert!(r.body.len() > 188 && r.body[0] == 0x47, "not MPEG-TS");
    let bare = segment.split('?').next().unwrap();
    let r = http_client::get(port, &format!("/live/{bare}"), REQUEST_TIMEOUT).unwrap();
    assert_eq!(r.head.status, 401, "unsigned segment: {}", r.head.raw);
}
