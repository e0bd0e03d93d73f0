//! Edge mode (issue 12): origins and edges as separate `shardcast`
//! processes, each `--shards 2` on its own loopback address (127.0.N.2,
//! .3, …, with N one per test, so no test's pull can take a port another
//! test probed as free), ffmpeg publishing to an origin, and real players
//! on the edge: ffprobe over RTMP and HTTP-FLV, ffmpeg's HLS demuxer, and this crate's
//! HTTP-FLV reader. What a user checks: media arrives with the right
//! codecs, one pull per stream per edge, the pull lives `keep_pulling_s`
//! after its last player, a dead origin costs a connect attempt.
//!
//! Every process is stopped by its PID when its guard drops; every wait
//! has a deadline. Logs are kept in `target/tmp/logs/<test>/`.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client::{self, BgFlvPlayer};
use common::*;
use serde_json::Value;
use shardcast::config::OriginChoice;
use shardcast::edge::origin_order;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// An origin on `ip`.
fn origin(ip: &str, toml: &str) -> Server {
    Server::builder()
        .listen(ip)
        .log("info")
        .config(toml)
        .start()
}

/// An edge on `ip` pulling from `origins`; `top` holds top-level keys,
/// `edge` more `[edge]` keys.
fn edge(ip: &str, origins: &[SocketAddr], top: &str, edge: &str) -> Server {
    let list: Vec<String> = origins.iter().map(|o| format!("\"{o}\"")).collect();
    let toml = format!(
        "mode = \"edge\"\n{top}\n[edge]\norigins = [{}]\n{edge}\n",
        list.join(", ")
    );
    Server::builder()
        .listen(ip)
        .log("info")
        .config(&toml)
        .start()
}

/// The API's view of stream `name` on `server`, if it is live there.
fn stream_view(server: &Server, name: &str) -> Option<Value> {
    let (status, v) = api_at(server, &format!("/api/v1/streams/{}", live_key(name)));
    (status == 200).then_some(v)
}

/// The players of `v` (a stream view) as (peer address, shard).
fn player_list(v: &Value) -> Vec<(String, u64)> {
    v["player_list"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|p| {
                    (
                        p["peer"].as_str().unwrap_or("").to_string(),
                        p["shard"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ip_of(peer: &str) -> &str {
    peer.rsplit_once(':').map_or(peer, |(ip, _)| ip)
}

/// A stream name `prefix<n>` whose first origin by the edge's hash is
/// `want` (an index into `origins`).
fn name_hashed_to(origins: &[SocketAddr], prefix: &str, want: usize) -> String {
    (0..1000)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| origin_order(origins, &live_key(n), OriginChoice::Hash, 0)[0] == want)
        .expect("some name hashes to each origin")
}

/// An edge player of each protocol gets a stream published on either of
/// two origins. Each stream is published on the origin the hash does *not*
/// pick first, so every pull finds the origin without the stream first
/// (it answers StreamNotFound at once) and moves to the other.
#[test]
fn edge_players_of_every_protocol_get_streams_from_either_origin() {
    let a = origin("127.0.2.2", "");
    let b = origin("127.0.2.3", "");
    let origins = [a.addr(), b.addr()];
    let rtmp_name = name_hashed_to(&origins, "r", 1);
    let flv_name = name_hashed_to(&origins, "f", 0);
    let hls_name = name_hashed_to(&origins, "h", 1);
    let _p1 = publish_live(&a, &rtmp_name);
    let _p2 = publish_live(&b, &flv_name);
    let _p3 = publish_live(&a, &hls_name);
    let e = edge("127.0.2.4", &origins, "", "pull_wait_ms = 10000");

    let probe = ffprobe(
        "ffprobe-edge-rtmp",
        &e.url(&format!("live/{rtmp_name}")),
        Some(4.0),
        Duration::from_secs(30),
    );
    let s = check_h264_aac(&probe, 3.0)
        .unwrap_or_else(|err| panic!("RTMP from the edge: {err}\n{}", e.log_tail(40)));
    println!("edge RTMP: {s:?}");

    let probe = ffprobe(
        "ffprobe-edge-flv",
        &e.http_url(&format!("live/{flv_name}.flv")),
        Some(4.0),
        Duration::from_secs(30),
    );
    let s = check_h264_aac(&probe, 3.0)
        .unwrap_or_else(|err| panic!("HTTP-FLV from the edge: {err}\n{}", e.log_tail(40)));
    println!("edge HTTP-FLV: {s:?}");

    // HLS: the playlist request itself starts the pull. ffmpeg's demuxer
    // needs a whole segment (it ignores LL-HLS parts), so the playlist is
    // polled until it lists one, as a player reloading it would.
    let playlist = format!("/live/{hls_name}.m3u8");
    playlist_with_segment("edge playlist", Duration::from_secs(15), || {
        http_client::request_at(e.addr(), "GET", &playlist, &[], REQUEST_TIMEOUT)
            .expect("GET the playlist on the edge")
    });
    let capture = artefact_dir().join("edge-hls.ts");
    let _ = std::fs::remove_file(&capture);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-i", &e.http_url(&format!("live/{hls_name}.m3u8"))])
        .args(["-map", "0", "-t", "6", "-c", "copy", "-f", "mpegts", "-y"])
        .arg(&capture)
        .stdout(Stdio::null());
    let mut ff = Proc::spawn("ffmpeg-edge-hls", &mut cmd);
    let st = ff.wait_timeout(Duration::from_secs(40));
    if st.is_none() {
        ff.kill();
    }
    let stderr = std::fs::read_to_string(&ff.stderr_path).unwrap_or_default();
    assert!(
        st.is_some_and(|s| s.success()) && stderr.trim().is_empty(),
        "ffmpeg -v error reading HLS from the edge: exit {st:?}\n{stderr}\n{}",
        e.log_tail(40)
    );
    let probe = ffprobe(
        "ffprobe-edge-hls-capture",
        capture.to_str().unwrap(),
        None,
        Duration::from_secs(30),
    );
    let s = check_h264_aac(&probe, 4.5)
        .unwrap_or_else(|err| panic!("HLS from the edge: {err}\n{}", e.log_tail(40)));
    println!("edge HLS: {s:?}");

    // Each pull met the origin without the stream first, then played from
    // the one with it.
    for (name, without, with) in [
        (&rtmp_name, &b, &a),
        (&flv_name, &a, &b),
        (&hls_name, &b, &a),
    ] {
        let k = live_key(name);
        let failed = e.find_logs(|l| {
            l.contains("pull failed")
                && kv(l, "key") == Some(k.as_str())
                && kv(l, "origin") == Some(without.addr().to_string().as_str())
        });
        assert!(
            failed.iter().any(|l| l.contains("StreamNotFound")),
            "{k}: no StreamNotFound from {} (the hash's first pick): {failed:?}",
            without.addr()
        );
        let playing = e.find_logs(|l| {
            l.contains("pull playing")
                && kv(l, "key") == Some(k.as_str())
                && kv(l, "origin") == Some(with.addr().to_string().as_str())
        });
        assert_eq!(
            playing.len(),
            1,
            "{k}: pulled from {}: {playing:?}",
            with.addr()
        );
    }
}

/// Ten HTTP-FLV players on an edge, spread over both its shards, make
/// exactly one pull: the origin's API shows one player, from the edge's
/// address, and the edge's stream shows the pull as its source.
#[test]
fn ten_players_on_an_edge_make_one_pull() {
    let o = origin("127.0.3.2", "");
    let _p = publish_live(&o, "test");
    let e = edge("127.0.3.3", &[o.addr()], "", "");
    let players: Vec<BgFlvPlayer> = (0..10)
        .map(|_| BgFlvPlayer::start_at(e.addr(), "/live/test.flv", false).expect("connect"))
        .collect();
    let all_play = wait_for(Duration::from_secs(20), || {
        players
            .iter()
            .all(|p| p.snapshot().iter().filter(|t| t.is_video()).count() >= 30)
            .then_some(())
    });
    assert!(
        all_play.is_some(),
        "not every edge player got 30 video tags within 20 s: {:?}\n{}",
        players
            .iter()
            .map(|p| p.snapshot().iter().filter(|t| t.is_video()).count())
            .collect::<Vec<_>>(),
        e.log_tail(40)
    );

    let ev = stream_view(&e, "test").expect("the edge lists the stream");
    let edge_players = player_list(&ev);
    assert_eq!(edge_players.len(), 10, "{ev}");
    let shards: BTreeSet<u64> = edge_players.iter().map(|p| p.1).collect();
    assert_eq!(
        shards,
        BTreeSet::from([0, 1]),
        "players on both shards: {ev}"
    );
    assert_eq!(ev["publisher"]["source"], "pull", "{ev}");
    assert_eq!(
        ev["publisher"]["peer"],
        o.addr().to_string().as_str(),
        "{ev}"
    );
    assert_eq!(ev["pull"]["state"], "playing", "{ev}");

    let ov = stream_view(&o, "test").expect("the origin lists the stream");
    let origin_players = player_list(&ov);
    assert_eq!(origin_players.len(), 1, "one pull at the origin: {ov}");
    assert_eq!(
        ip_of(&origin_players[0].0),
        "127.0.3.3",
        "from the edge's address: {ov}"
    );
    let pulls =
        o.find_logs(|l| is_event(l, "play") && kv(l, "key") == Some(live_key("test").as_str()));
    assert_eq!(pulls.len(), 1, "one play at the origin: {pulls:?}");
    for p in players {
        p.stop();
    }
}

/// `keep_pulling_s` holds the pull after the last player leaves, then
/// drops it: the origin's player goes.
#[test]
fn keep_pulling_holds_then_drops_the_pull() {
    let o = origin("127.0.4.2", "");
    let _p = publish_live(&o, "test");
    let e = edge("127.0.4.3", &[o.addr()], "", "keep_pulling_s = 3");
    let probe = ffprobe(
        "ffprobe-edge",
        &e.url("live/test"),
        Some(2.0),
        Duration::from_secs(20),
    );
    assert!(
        !packets_of(&probe, "video").is_empty(),
        "no video from the edge: {}\n{}",
        probe.stderr,
        e.log_tail(30)
    );
    let left = Instant::now();
    // Within keep_pulling_s the origin still serves the edge.
    std::thread::sleep(Duration::from_millis(1500));
    let ov = stream_view(&o, "test").expect("live on the origin");
    assert_eq!(player_list(&ov).len(), 1, "the pull is held: {ov}");
    // Then it stops (the RTMP player may have been on a replica shard,
    // which lingers REPLICA_LINGER, 5 s, before the owner stops counting).
    let gone = wait_for(Duration::from_secs(15), || {
        let v = stream_view(&o, "test")?;
        player_list(&v).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "the origin still serves the edge {:.1} s after its last player left\n{}",
        left.elapsed().as_secs_f64(),
        e.log_tail(30)
    );
    let held = left.elapsed();
    println!(
        "pull dropped {:.1} s after the last player left",
        held.as_secs_f64()
    );
    // The server counts from when it saw the player close, a little
    // before this test saw ffprobe exit.
    assert!(
        held >= Duration::from_millis(2900),
        "dropped before keep_pulling_s: {held:?}"
    );
    assert_eq!(
        e.find_logs(|l| l.contains("pull stop") && kv(l, "key") == Some(live_key("test").as_str()))
            .len(),
        1,
        "{}",
        e.log_tail(30)
    );
}

/// A tree: an edge whose origin is an edge carries the stream.
#[test]
fn a_tree_of_two_edges_carries_a_stream() {
    let o = origin("127.0.5.2", "");
    let _p = publish_live(&o, "test");
    let e1 = edge("127.0.5.3", &[o.addr()], "", "");
    let e2 = edge("127.0.5.4", &[e1.addr()], "", "pull_wait_ms = 10000");
    let probe = ffprobe(
        "ffprobe-edge-of-edge",
        &e2.http_url("live/test.flv"),
        Some(4.0),
        Duration::from_secs(30),
    );
    let s = check_h264_aac(&probe, 3.0).unwrap_or_else(|err| {
        panic!(
            "HTTP-FLV through two edges: {err}\n{}\n{}",
            e1.log_tail(20),
            e2.log_tail(20)
        )
    });
    println!("through two edges: {s:?}");
    let v1 = stream_view(&e1, "test").expect("the middle edge pulls");
    assert_eq!(
        player_list(&v1).len(),
        1,
        "one pull from the outer edge: {v1}"
    );
    assert_eq!(ip_of(&player_list(&v1)[0].0), "127.0.5.4", "{v1}");
}

/// An origin list whose first entry is dead plays from the second: a
/// refused connect costs one attempt, well within `connect_timeout_ms`.
#[test]
fn a_dead_first_origin_plays_from_the_second() {
    let o = origin("127.0.6.2", "");
    let _p = publish_live(&o, "test");
    // Nothing listens there: the connect is refused.
    let dead: SocketAddr = format!("127.0.0.9:{}", free_port()).parse().unwrap();
    let e = edge(
        "127.0.6.3",
        &[dead, o.addr()],
        "",
        "lb = \"round_robin\"\nconnect_timeout_ms = 1000",
    );
    let asked = Instant::now();
    let player = BgFlvPlayer::start_at(e.addr(), "/live/test.flv", false).expect("connect");
    let first = wait_for(Duration::from_secs(10), || {
        player
            .snapshot()
            .iter()
            .find(|t| t.is_video())
            .map(|t| t.at.saturating_duration_since(asked))
    });
    let played = player.stop();
    let first = first.unwrap_or_else(|| {
        panic!(
            "no video from the edge within 10 s: {:?}\n{}",
            played.end,
            e.log_tail(30)
        )
    });
    println!(
        "first video tag {} ms after the request (dead origin first)",
        first.as_millis()
    );
    // connect_timeout_ms plus a margin for the GOP burst and the hops.
    assert!(first < Duration::from_millis(1000 + 2000), "took {first:?}");
    let failed = e.find_logs(|l| {
        l.contains("pull failed") && kv(l, "origin") == Some(dead.to_string().as_str())
    });
    assert_eq!(
        failed.len(),
        1,
        "one attempt on the dead origin: {failed:?}"
    );
}

/// An origin with `auth.play = "signed"` admits an edge that shares its
/// secret (the edge signs its pulls) and refuses an unsigned player.
#[test]
fn a_signed_origin_admits_an_edge_with_the_secret() {
    let secret = "secret = \"edge-and-origin\"";
    let o = origin(
        "127.0.7.2",
        &format!("[auth]\n{secret}\nplay = \"signed\"\n"),
    );
    let _p = publish_live(&o, "test");
    let e = edge("127.0.7.3", &[o.addr()], &format!("[auth]\n{secret}"), "");
    let probe = ffprobe(
        "ffprobe-signed-edge",
        &e.http_url("live/test.flv"),
        Some(3.0),
        Duration::from_secs(30),
    );
    check_h264_aac(&probe, 2.0)
        .unwrap_or_else(|err| panic!("through a signed origin: {err}\n{}", e.log_tail(30)));
    let direct = http_client::request_at(o.addr(), "GET", "/live/test.flv", &[], REQUEST_TIMEOUT)
        .expect("GET on the origin");
    assert_eq!(direct.head.status, 401, "an unsigned player at the origin");
}

/// A stream published to an edge reaches the origin (`edge.push_publishes`),
/// published from the edge's address, while the edge's own players play
/// the local publish without a pull.
#[test]
fn an_edge_publish_reaches_the_origin() {
    let o = origin("127.0.8.2", "");
    let e = edge("127.0.8.3", &[o.addr()], "", "");
    let _p = publish_live(&e, "test");
    let ov = wait_for(Duration::from_secs(10), || stream_view(&o, "test")).unwrap_or_else(|| {
        panic!(
            "the origin did not get the edge's publish within 10 s\n{}",
            e.log_tail(30)
        )
    });
    let peer = ov["publisher"]["peer"].as_str().unwrap_or("");
    assert_eq!(ip_of(peer), "127.0.8.3", "published from the edge: {ov}");
    let probe = ffprobe(
        "ffprobe-origin-of-push",
        &o.http_url("live/test.flv"),
        Some(3.0),
        Duration::from_secs(30),
    );
    check_h264_aac(&probe, 2.0)
        .unwrap_or_else(|err| panic!("the pushed stream at the origin: {err}\n{}", e.log_tail(30)));
    let probe = ffprobe(
        "ffprobe-edge-local",
        &e.url("live/test"),
        Some(2.0),
        Duration::from_secs(20),
    );
    assert!(!packets_of(&probe, "video").is_empty(), "{}", probe.stderr);
    assert!(
        e.find_logs(|l| l.contains("pull start")).is_empty(),
        "the edge pulled a stream it has: {}",
        e.log_tail(30)
    );
}

/// `edge.pulls_max`: players asking for names nobody publishes start at
/// most that many pulls (each shard its share); the others are refused,
/// counted, and answered 404 after `pull_wait_ms`.
#[test]
fn pulls_are_bounded_by_pulls_max() {
    let o = origin("127.0.11.2", "");
    // Two shards: one pull each. Nothing publishes: the pulls retry.
    let e = edge(
        "127.0.11.3",
        &[o.addr()],
        "",
        "pulls_max = 2\npull_wait_ms = 500",
    );
    let names = ["n1", "n2", "n3", "n4", "n5"];
    for n in names {
        let r = http_client::request_at(
            e.addr(),
            "GET",
            &format!("/live/{n}.flv"),
            &[],
            REQUEST_TIMEOUT,
        )
        .expect("GET a stream nobody publishes");
        assert_eq!(r.head.status, 404, "{n}: {}", r.head.raw);
    }
    let started = e.find_logs(|l| l.contains("pull start")).len();
    let refused = refused_total(e.addr(), "edge_pulls_max");
    assert!(
        (1..=2).contains(&started),
        "{started} pulls with pulls_max = 2\n{}",
        e.log_tail(30)
    );
    assert!(
        refused >= (names.len() - started) as u64,
        "{refused} refusals for {} names and {started} pulls\n{}",
        names.len(),
        e.log_tail(30)
    );
}

/// The origin with the stream is SIGKILLed and its publisher moves to the
/// other origin: an HTTP-FLV player on the edge gets media again within
/// 3 s of the republish, on the same connection.
#[test]
fn an_edge_player_follows_its_publisher_to_another_origin() {
    let f = failover("127.0.9.2", "127.0.9.3", "127.0.9.4");
    assert!(
        f.after_republish <= Duration::from_secs(3),
        "media came back {:?} after the republish",
        f.after_republish
    );
}

/// The failover figure (not a test: `cargo test --release --test edge --
/// --ignored --nocapture failover_gap`): 10 trials of the test above, the
/// gap from the last video frame before the kill to the first after, at an
/// edge player; p50 and max.
#[test]
#[ignore]
fn failover_gap_over_10_trials() {
    let mut gaps = Vec::new();
    let mut after = Vec::new();
    for i in 0..10u8 {
        let f = failover(
            &format!("127.0.1.{}", 2 + 3 * i),
            &format!("127.0.1.{}", 3 + 3 * i),
            &format!("127.0.1.{}", 4 + 3 * i),
        );
        gaps.push(f.gap);
        after.push(f.after_republish);
    }
    gaps.sort();
    after.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "failover over {} trials: gap p50 {} ms, max {} ms; after the republish p50 {} ms, max {} ms; gaps {:?}",
        gaps.len(),
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() - 1]),
        ms(after[after.len() / 2]),
        ms(after[after.len() - 1]),
        gaps.iter().map(|g| g.as_millis()).collect::<Vec<_>>()
    );
}

/// Origin A (with the stream) and B, an edge on `e` listing both:
/// [`measure_failover`].
fn failover(a: &str, b: &str, e: &str) -> Failover {
    let a = origin(a, "");
    let b = origin(b, "");
    let origins = [a.addr(), b.addr()];
    // A stream the hash pulls from A first.
    let name = name_hashed_to(&origins, "m", 0);
    let e = edge(e, &origins, "", "");
    measure_failover(a, &b, &e, &name)
}

/// HLS players on an edge through an origin's death: the playlist never
/// answers 404 while the pull retries, and after the publisher moved to
/// the other origin it goes on with an EXT-X-DISCONTINUITY.
#[test]
fn edge_hls_survives_an_origin_failover_with_a_discontinuity() {
    let mut a = origin("127.0.10.2", "");
    let b = origin("127.0.10.3", "");
    let origins = [a.addr(), b.addr()];
    let name = name_hashed_to(&origins, "h", 0);
    let mut first_publisher = publish_live(&a, &name);
    let e = edge("127.0.10.4", &origins, "", "pull_wait_ms = 10000");
    let playlist = format!("/live/{name}.m3u8");
    let get = || {
        http_client::request_at(e.addr(), "GET", &playlist, &[], REQUEST_TIMEOUT)
            .expect("GET the edge's playlist")
    };
    playlist_with_segment("edge playlist", Duration::from_secs(15), get);

    signal(a.pid, libc::SIGKILL);
    assert!(
        a.wait_exit(Duration::from_secs(5)).is_some(),
        "origin A did not die"
    );
    first_publisher.kill();
    // While nothing publishes, reloads keep answering.
    let away_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < away_until {
        let r = get();
        assert_eq!(
            r.head.status,
            200,
            "a reload while the pull retries: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The API lists the stream with its pull retrying and no publisher.
    let v = stream_view(&e, &name).expect("the edge lists the stream while its pull retries");
    assert!(v["publisher"].is_null(), "{v}");
    assert_eq!(v["pull"]["state"], "retrying", "{v}");
    assert!(v["pull"]["failures"].as_u64() >= Some(1), "{v}");
    let _second_publisher = publish_live(&b, &name);
    let after = wait_for(Duration::from_secs(15), || {
        let r = get();
        assert_eq!(
            r.head.status,
            200,
            "a reload after the republish: {}",
            r.text()
        );
        let text = r.text();
        // A segment after the discontinuity: the new publisher's media.
        text.split_once("#EXT-X-DISCONTINUITY")
            .is_some_and(|(_, rest)| rest.contains("#EXTINF"))
            .then_some(text)
    });
    assert!(
        after.is_some(),
        "no segment after an EXT-X-DISCONTINUITY within 15 s of the republish\n{}\n{}",
        get().text(),
        e.log_tail(30)
    );
}
