//! Integration tests of the RTMP origin: the real `shardcast` binary on a
//! free port with `--shards 2`, driven by real clients (ffmpeg, ffprobe,
//! rtmpdump) and by the test RTMP client in `common::rtmp_client` where a
//! test must see individual messages or send malformed ones.
//!
//! Each test starts its own server, so they run in parallel. Every wait has
//! a deadline and every process is ended by PID. Server logs and tool
//! output are kept in `target/tmp/logs/<test>/`.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::rtmp_client::{
    self, describe_all, first_timestamp_regression, max_video_gap, msg_type, user_control,
    video_frames_between, Amf, BgPlayer, Message, RtmpClient, XorShift,
};
use common::*;

fn key() -> String {
    format!("{DEFAULT_VHOST}/live/test")
}

fn has_status(msgs: &[Message], code: &str) -> bool {
    msgs.iter()
        .any(|m| m.status_code().as_deref() == Some(code))
}

fn index_of_status(msgs: &[Message], code: &str) -> Option<usize> {
    msgs.iter()
        .position(|m| m.status_code().as_deref() == Some(code))
}

/// Connects a test-client player, plays `name`, and collects messages for
/// `dur` (or until the connection closes).
fn collect_player(
    port: u16,
    name: &str,
    dur: Duration,
) -> (Vec<Message>, Instant, Option<std::io::Error>) {
    let (mut c, _sid) =
        RtmpClient::player(port, "live", name).expect("test player connects and plays");
    let play_sent = Instant::now();
    let deadline = play_sent + dur;
    let mut msgs = Vec::new();
    loop {
        match c.recv(deadline) {
            Ok(Some(m)) => msgs.push(m),
            Ok(None) => return (msgs, play_sent, None),
            Err(e) => return (msgs, play_sent, Some(e)),
        }
    }
}

/// Three independent players at once: ffprobe reading RTMP directly,
/// ffmpeg recording with `-c copy`, and rtmpdump (librtmp) recording; each
/// must get H.264 + AAC at 30 fps / 43 AAC frames per second with strictly
/// increasing DTS over at least 5 s.
#[test]
fn three_clients_ffprobe_ffmpeg_rtmpdump_receive_h264_aac_at_full_rate() {
    let server = Server::start();
    let _publisher = publish_and_wait(&server, "publisher");
    let url = server.url("live/test");

    let u = url.clone();
    let probe =
        common::spawn(move || ffprobe("ffprobe-rtmp", &u, Some(6.0), Duration::from_secs(30)));
    let u = url.clone();
    let ffmpeg =
        common::spawn(move || ffmpeg_record("ffmpeg-copy", &u, 6.0, Duration::from_secs(30)));
    let u = url.clone();
    let rtmpdump = common::spawn(move || rtmpdump_record("rtmpdump", &u, 7.5));

    let probe = probe.join().unwrap();
    let (ffmpeg_file, ffmpeg_proc) = ffmpeg.join().unwrap();
    let (dump_file, dump_proc) = rtmpdump.join().unwrap();

    let mut failures = Vec::new();
    match check_h264_aac(&probe, 5.0) {
        Ok(s) => println!(
            "ffprobe over RTMP: {s:?}, wall {:.2} s",
            probe.wall.as_secs_f64()
        ),
        Err(e) => failures.push(e),
    }
    let ffmpeg_probe = ffprobe(
        "ffprobe-ffmpeg-file",
        ffmpeg_file.to_str().unwrap(),
        None,
        Duration::from_secs(30),
    );
    match check_h264_aac(&ffmpeg_probe, 5.0) {
        Ok(s) => println!("ffmpeg -c copy: {s:?}"),
        Err(e) => failures.push(format!("{e}\n{}", ffmpeg_proc.stderr_tail(20))),
    }
    let dump_probe = ffprobe(
        "ffprobe-rtmpdump-file",
        dump_file.to_str().unwrap(),
        None,
        Duration::from_secs(30),
    );
    match check_h264_aac(&dump_probe, 5.0) {
        Ok(s) => println!("rtmpdump: {s:?}"),
        Err(e) => failures.push(format!("{e}\n{}", dump_proc.stderr_tail(20))),
    }
    assert!(
        failures.is_empty(),
        "players failed:\n{}",
        failures.join("\n\n")
    );
}

/// Connects test-client players of `live/test` until the server's `play`
/// lines show both shards (at most `max` players), and asserts both were
/// seen. Returns each player with its shard.
fn players_on_both_shards(server: &Server, max: usize) -> Vec<(BgPlayer, usize)> {
    let mut players = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..max {
        let (p, shard) = player_and_shard(server);
        seen.insert(shard);
        players.push((p, shard));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "all {} players landed on shard(s) {seen:?}; expected both shards",
        players.len()
    );
    players
}

/// Connects a test-client player of `live/test` and returns it with the
/// shard that accepted it (from its `play ... shard=K` line).
fn player_and_shard(server: &Server) -> (BgPlayer, usize) {
    let p = BgPlayer::start(server.port, "live", "test").expect("player connects");
    let line = server
        .wait_for_play(p.local_port, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "no `play key=... peer=127.0.0.1:{}` line\n{}",
                p.local_port,
                server.log_tail(60)
            )
        });
    assert_eq!(kv(&line, "key"), Some(key().as_str()), "play line: {line}");
    let shard: usize = kv(&line, "shard")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("play line without shard=K: {line}"));
    assert!(
        shard < server.shards,
        "shard {shard} out of range for --shards {}: {line}",
        server.shards
    );
    (p, shard)
}

/// Players are accepted by both shards (the kernel spreads SO_REUSEPORT
/// accepts; the `play ... shard=K` log line says where each landed), and
/// players on both shards receive the stream.
#[test]
fn players_land_on_both_shards_and_all_receive_media() {
    let server = Server::start();
    let _publisher = publish_and_wait(&server, "publisher");
    let (players, shard_of): (Vec<BgPlayer>, Vec<usize>) =
        players_on_both_shards(&server, 16).into_iter().unzip();
    // Every player, on either shard, gets a keyframe and then live video.
    std::thread::sleep(Duration::from_secs(3));
    let mut failures = Vec::new();
    for (p, shard) in players.into_iter().zip(shard_of) {
        let port = p.local_port;
        let (msgs, end) = p.stop();
        let video = msgs.iter().filter(|m| m.is_coded_video()).count();
        let key = msgs.iter().any(|m| m.is_keyframe());
        println!("player :{port} on shard {shard}: {video} video frames, keyframe {key}");
        if end.is_err() || !key || video < 60 {
            failures.push(format!(
                "player :{port} on shard {shard}: {video} video frames in >= 3 s, keyframe {key}, end {end:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `?only-audio=1` gets no video at all (not even a sequence header), and
/// `?only-video=1` no audio, both by the test client's message count and by
/// ffprobe's packet listing.
#[test]
fn only_audio_gets_no_video_and_only_video_gets_no_audio() {
    let server = Server::start();
    let _publisher = publish_and_wait(&server, "publisher");

    let port = server.port;
    let audio_client =
        common::spawn(move || collect_player(port, "test?only-audio=1", Duration::from_secs(4)));
    let video_client =
        common::spawn(move || collect_player(port, "test?only-video=1", Duration::from_secs(4)));
    let u = server.url("live/test?only-audio=1");
    let audio_probe = common::spawn(move || {
        ffprobe("ffprobe-only-audio", &u, Some(4.0), Duration::from_secs(30))
    });
    let u = server.url("live/test?only-video=1");
    let video_probe = common::spawn(move || {
        ffprobe("ffprobe-only-video", &u, Some(4.0), Duration::from_secs(30))
    });

    let mut failures = Vec::new();
    // A player told (by onMetaData) that a track exists waits for it:
    // ffmpeg's RTMP client sets the FLV header's audio/video flags from
    // `audiocodecid` / `videocodecid`, and its FLV demuxer then probes for
    // the missing track for up to 90 s.
    let advertises = |msgs: &[Message], field: &str| {
        msgs.iter()
            .filter(|m| m.data_name().as_deref() == Some("onMetaData"))
            .any(|m| {
                m.amf()
                    .unwrap_or_default()
                    .iter()
                    .any(|v| v.get(field).is_some())
            })
    };
    let (msgs, _, err) = audio_client.join().unwrap();
    if advertises(&msgs, "videocodecid") {
        failures.push(
            "only-audio client: onMetaData still advertises video (videocodecid)".to_string(),
        );
    }
    let (v, a) = (
        msgs.iter().filter(|m| m.is_video()).count(),
        msgs.iter().filter(|m| m.is_coded_audio()).count(),
    );
    println!("only-audio test client: {v} video, {a} audio messages");
    if v != 0 || a < 120 || err.is_some() {
        failures.push(format!(
            "only-audio client: {v} video messages (want 0), {a} audio frames in 4 s (want >= 120), error {err:?}"
        ));
    }
    let (msgs, _, err) = video_client.join().unwrap();
    if advertises(&msgs, "audiocodecid") {
        failures.push(
            "only-video client: onMetaData still advertises audio (audiocodecid)".to_string(),
        );
    }
    let (v, a) = (
        msgs.iter().filter(|m| m.is_coded_video()).count(),
        msgs.iter().filter(|m| m.is_audio()).count(),
    );
    println!("only-video test client: {v} video, {a} audio messages");
    if a != 0 || v < 90 || err.is_some() {
        failures.push(format!(
            "only-video client: {a} audio messages (want 0), {v} video frames in 4 s (want >= 90), error {err:?}"
        ));
    }
    let p = audio_probe.join().unwrap();
    let (v, a) = (packets_of(&p, "video").len(), packets_of(&p, "audio").len());
    println!("only-audio ffprobe: {v} video, {a} audio packets");
    if v != 0 || a < 150 {
        failures.push(format!(
            "only-audio ffprobe: {v} video packets (want 0), {a} audio (want >= 150){}\n{}",
            if p.timed_out {
                "; ffprobe did not finish within 30 s"
            } else {
                ""
            },
            p.stderr
        ));
    }
    let p = video_probe.join().unwrap();
    let (v, a) = (packets_of(&p, "video").len(), packets_of(&p, "audio").len());
    println!("only-video ffprobe: {v} video, {a} audio packets");
    if a != 0 || v < 100 {
        failures.push(format!(
            "only-video ffprobe: {a} audio packets (want 0), {v} video (want >= 100){}\n{}",
            if p.timed_out {
                "; ffprobe did not finish within 30 s"
            } else {
                ""
            },
            p.stderr
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A player that asks before anyone publishes waits, and gets the stream
/// when the publisher arrives (the test client, and ffprobe).
#[test]
fn player_joining_before_publish_gets_media() {
    let server = Server::start();
    let player = BgPlayer::start(server.port, "live", "test").expect("player connects");
    let u = server.url("live/test");
    let probe =
        common::spawn(move || ffprobe("ffprobe-early", &u, Some(5.0), Duration::from_secs(40)));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !player.is_finished(),
        "the early player was disconnected before any publish\n{}",
        server.log_tail(40)
    );

    let publish_start = Instant::now();
    let _publisher = publish_and_wait(&server, "publisher");
    let got_key = player.wait_until(Duration::from_secs(10), |m| {
        m.iter().any(|m| m.is_keyframe())
    });
    let first_key = player
        .snapshot()
        .iter()
        .find(|m| m.is_keyframe())
        .map(|m| m.at.duration_since(publish_start));
    println!("early player's first keyframe {first_key:?} after starting the publisher");
    assert!(
        got_key,
        "early player got no keyframe within 10 s of the publish:\n{}",
        describe_all(&player.snapshot(), 40)
    );
    std::thread::sleep(Duration::from_secs(3));
    let (msgs, end) = player.stop();
    let video = msgs.iter().filter(|m| m.is_coded_video()).count();
    assert!(end.is_ok(), "early player's connection failed: {end:?}");
    assert!(
        video >= 90,
        "early player got only {video} video frames in >= 3 s"
    );

    let p = probe.join().unwrap();
    let summary = check_h264_aac(&p, 4.0);
    assert!(
        summary.is_ok(),
        "ffprobe started before the publish: {}",
        summary.unwrap_err()
    );
}

/// Under the default `republish = "replace"`, a second publisher of a live
/// key takes over: the first is disconnected, the player stays connected
/// and keeps receiving video through the switch.
#[test]
fn second_publisher_takes_over_without_dropping_players() {
    let server = Server::start();
    let mut first = publish_and_wait(&server, "publisher-1");
    let player = BgPlayer::start(server.port, "live", "test").expect("player connects");
    assert!(
        player.wait_until(Duration::from_secs(10), |m| m
            .iter()
            .filter(|m| m.is_coded_video())
            .count()
            >= 30),
        "player got no video from the first publisher"
    );

    let _second = ffmpeg_publish(
        "publisher-2",
        &server.url("live/test"),
        &PublishOpts::default(),
    );
    server.wait_for_publish(&key(), 2, Duration::from_secs(15));
    let switch = Instant::now();
    let first_exit = first.wait_timeout(Duration::from_secs(10));
    assert!(
        first_exit.is_some(),
        "the replaced publisher is still connected 10 s after the takeover\n{}",
        server.log_tail(40)
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !player.is_finished(),
        "the player was disconnected by the takeover\n{}",
        server.log_tail(40)
    );
    let now = Instant::now();
    let (msgs, end) = player.stop();
    assert!(end.is_ok(), "player's connection failed: {end:?}");
    let after = video_frames_between(&msgs, switch, now);
    let gap = max_video_gap(&msgs, switch, now);
    println!(
        "after the takeover: {after} video frames in {:.1} s, longest gap {gap:?}, first publisher exit {first_exit:?}",
        (now - switch).as_secs_f64()
    );
    if let Some(r) = first_timestamp_regression(&msgs) {
        println!("note: across the takeover, {r}");
    }
    assert!(
        after >= 90,
        "player got only {after} video frames in the 4 s after the takeover"
    );
    assert!(
        gap < Duration::from_secs(2),
        "player's video stalled for {gap:?} after the takeover"
    );
}

/// Under `republish = "reject"`, a second publisher gets onStatus
/// `NetStream.Publish.BadName` (test client) / fails (ffmpeg), while the
/// first publisher and its player go on.
#[test]
fn second_publisher_is_refused_under_republish_reject() {
    let server = Server::with_config("[stream]\nrepublish = \"reject\"\n");
    let mut first = publish_and_wait(&server, "publisher-1");
    let player = BgPlayer::start(server.port, "live", "test").expect("player connects");
    assert!(
        player.wait_until(Duration::from_secs(10), |m| m
            .iter()
            .any(|m| m.is_keyframe())),
        "player got no keyframe"
    );

    let mut c = RtmpClient::connect(server.port, "live").expect("second publisher connects");
    c.start_publish("test")
        .expect("second publisher sends publish");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut codes = Vec::new();
    loop {
        match c.wait_status(deadline) {
            Ok(Some((code, _))) => {
                let done =
                    code != "NetStream.Publish.Start" && code.starts_with("NetStream.Publish.");
                codes.push(code);
                if done {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                codes.push(format!("<connection ended: {e}>"));
                break;
            }
        }
    }
    println!("second publisher (test client) got: {codes:?}");
    assert!(
        codes.iter().any(|c| c == "NetStream.Publish.BadName"),
        "second publisher got {codes:?}, expected NetStream.Publish.BadName\n{}",
        server.log_tail(40)
    );
    assert!(
        !codes.iter().any(|c| c == "NetStream.Publish.Start"),
        "second publisher was accepted: {codes:?}"
    );
    drop(c);

    let mut second = ffmpeg_publish(
        "publisher-2-ffmpeg",
        &server.url("live/test"),
        &PublishOpts {
            duration_s: Some(20.0),
            ..Default::default()
        },
    );
    let st = second.wait_timeout(Duration::from_secs(15));
    println!("second ffmpeg publisher exit: {st:?}");
    assert!(
        matches!(st, Some(s) if !s.success()),
        "second ffmpeg publisher was not refused (exit {st:?})\n{}",
        second.stderr_tail(10)
    );
    assert!(
        first.is_running(),
        "the first publisher was disconnected\n{}",
        first.stderr_tail(10)
    );
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (msgs, end) = player.stop();
    assert!(end.is_ok(), "player's connection failed: {end:?}");
    let n = video_frames_between(&msgs, t, t + Duration::from_secs(2));
    assert!(
        n >= 45,
        "player got only {n} video frames in 2 s after the refused publishes"
    );
}

/// The publisher drops (killed, so the server just sees the socket close);
/// the player gets `NetStream.Play.UnpublishNotify` and stays; a new
/// publisher brings `NetStream.Play.PublishNotify`, a sequence header, a
/// keyframe and live video, with no timestamp going backwards.
#[test]
fn publisher_drop_and_return_resumes_waiting_player() {
    let server = Server::with_config("[stream]\npublisher_grace_s = 30\n");
    let mut first = publish_and_wait(&server, "publisher-1");
    let player = BgPlayer::start(server.port, "live", "test").expect("player connects");
    // Run long enough that the first publisher's timestamps are well ahead
    // of where the second one starts (0).
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        player
            .snapshot()
            .iter()
            .filter(|m| m.is_coded_video())
            .count()
            >= 60,
        "player got little video from the first publisher:\n{}",
        describe_all(&player.snapshot(), 30)
    );

    first.kill();
    assert!(
        player.wait_until(Duration::from_secs(10), |m| has_status(m, "NetStream.Play.UnpublishNotify")),
        "no NetStream.Play.UnpublishNotify within 10 s of the publisher dropping; last messages:\n{}",
        describe_all(&player.snapshot().iter().rev().take(20).rev().cloned().collect::<Vec<_>>(), 20)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !player.is_finished(),
        "the player was disconnected while waiting for the publisher\n{}",
        server.log_tail(40)
    );

    let _second = publish_and_wait_nth(&server, "publisher-2", 2);
    assert!(
        player.wait_until(Duration::from_secs(15), |m| {
            index_of_status(m, "NetStream.Play.PublishNotify")
                .is_some_and(|i| m[i..].iter().filter(|m| m.is_coded_video()).count() >= 60)
        }),
        "no NetStream.Play.PublishNotify followed by 60 video frames within 15 s of the return; messages after the drop:\n{}",
        {
            let s = player.snapshot();
            let i = index_of_status(&s, "NetStream.Play.UnpublishNotify").unwrap_or(0);
            describe_all(&s[i..], 40)
        }
    );
    let (msgs, end) = player.stop();
    assert!(end.is_ok(), "player's connection failed: {end:?}");
    let un = index_of_status(&msgs, "NetStream.Play.UnpublishNotify").unwrap();
    let re = index_of_status(&msgs, "NetStream.Play.PublishNotify").unwrap();
    assert!(
        un < re,
        "PublishNotify (#{re}) came before UnpublishNotify (#{un})"
    );
    let after = &msgs[re..];
    let seq = after.iter().position(|m| m.is_avc_sequence_header());
    let first_coded = after.iter().position(|m| m.is_coded_video()).unwrap();
    assert!(
        seq.is_some_and(|s| s < first_coded),
        "after PublishNotify no AVC sequence header before the first video frame:\n{}",
        describe_all(after, 20)
    );
    assert!(
        after[first_coded].is_keyframe(),
        "the first video frame after PublishNotify is not a keyframe:\n{}",
        describe_all(after, 20)
    );
    let last_before = msgs[..un]
        .iter()
        .filter(|m| m.is_video())
        .map(|m| m.timestamp)
        .max()
        .unwrap_or(0);
    println!(
        "last video ts before the drop {last_before} ms; first after the return {} ms",
        after[first_coded].timestamp
    );
    if let Some(r) = first_timestamp_regression(&msgs) {
        panic!("timestamps went backwards for the player across the publisher's return: {r}");
    }
}

/// Like [`publish_and_wait`], but for the `n`th publish of the key.
fn publish_and_wait_nth(server: &Server, name: &str, n: usize) -> Proc {
    let p = ffmpeg_publish(name, &server.url("live/test"), &PublishOpts::default());
    server.wait_for_publish(&key(), n, Duration::from_secs(15));
    p
}

/// With the GOP cache (default), a new player's first video message after
/// `NetStream.Play.Start` is the AVC sequence header and the next is a
/// keyframe, which arrives at once (from the cache, not the next GOP);
/// onMetaData and the AAC sequence header come before media too. Three
/// players joining at different points of the 2 s GOP all see this; the
/// time from Play.Start to the first keyframe is printed.
#[test]
fn first_video_after_play_start_is_sequence_header_then_cached_keyframe() {
    let server = Server::start();
    let _publisher = publish_and_wait(&server, "publisher");
    std::thread::sleep(Duration::from_millis(2500));
    let mut failures = Vec::new();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(700));
        }
        let (msgs, play_sent, err) =
            collect_player(server.port, "test", Duration::from_millis(1500));
        let Some(start) = index_of_status(&msgs, "NetStream.Play.Start") else {
            failures.push(format!(
                "player {i}: no NetStream.Play.Start (error {err:?}):\n{}",
                describe_all(&msgs, 30)
            ));
            continue;
        };
        let after = &msgs[start..];
        let first_video = after.iter().position(|m| m.is_video());
        let first_coded = after.iter().position(|m| m.is_coded_video());
        let (Some(fv), Some(fc)) = (first_video, first_coded) else {
            failures.push(format!(
                "player {i}: no video after Play.Start:\n{}",
                describe_all(after, 30)
            ));
            continue;
        };
        let t_start = msgs[start].at;
        let t_key = after[fc].at;
        let ms = t_key.duration_since(t_start).as_secs_f64() * 1000.0;
        let ms_play = t_key.duration_since(play_sent).as_secs_f64() * 1000.0;
        println!(
            "player {i}: Play.Start -> first keyframe {ms:.3} ms (play command -> keyframe {ms_play:.3} ms)"
        );
        let mut errs = Vec::new();
        if !after[fv].is_avc_sequence_header() {
            errs.push(format!(
                "first video after Play.Start is `{}`, not the AVC sequence header",
                after[fv].describe()
            ));
        }
        if !after[fc].is_keyframe() {
            errs.push(format!(
                "first coded video after Play.Start is `{}`, not a keyframe",
                after[fc].describe()
            ));
        }
        if !after[..fv]
            .iter()
            .any(|m| m.data_name().as_deref() == Some("onMetaData"))
        {
            errs.push("no onMetaData before the first video".into());
        }
        let first_aac = after.iter().position(|m| m.is_coded_audio());
        let aac_seq = after.iter().position(|m| m.is_aac_sequence_header());
        if !matches!((aac_seq, first_aac), (Some(s), Some(a)) if s < a) {
            errs.push(format!("AAC sequence header (#{aac_seq:?}) not before the first AAC frame (#{first_aac:?})"));
        }
        if ms > 500.0 {
            errs.push(format!(
                "first keyframe {ms:.1} ms after Play.Start: not served from the GOP cache"
            ));
        }
        if !errs.is_empty() {
            failures.push(format!(
                "player {i}: {}\n{}",
                errs.join("; "),
                describe_all(after, 20)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With `gop_cache = false`, the player's first video frame is a keyframe
/// (after the sequence header), and it is the *next* live keyframe: frames
/// after it arrive at the live pace, not as a burst from a cache.
#[test]
fn without_gop_cache_first_video_is_next_live_keyframe() {
    let server = Server::with_config("[stream]\ngop_cache = false\n");
    let _publisher = publish_and_wait(&server, "publisher");
    std::thread::sleep(Duration::from_millis(2500));
    let mut failures = Vec::new();
    for i in 0..2 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(900));
        }
        let (msgs, _, err) = collect_player(server.port, "test", Duration::from_millis(3500));
        let start = index_of_status(&msgs, "NetStream.Play.Start").unwrap_or(0);
        let after = &msgs[start..];
        let coded: Vec<&Message> = after.iter().filter(|m| m.is_coded_video()).collect();
        if coded.len() < 12 {
            failures.push(format!(
                "player {i}: only {} video frames in 3.5 s (error {err:?}):\n{}",
                coded.len(),
                describe_all(after, 30)
            ));
            continue;
        }
        let first = coded[0];
        let t = first.at.duration_since(after[0].at).as_secs_f64() * 1000.0;
        println!("player {i}: Play.Start -> first keyframe {t:.1} ms (no GOP cache)");
        let mut errs = Vec::new();
        if !first.is_keyframe() {
            errs.push(format!(
                "first video frame is `{}`, not a keyframe",
                first.describe()
            ));
        }
        let seq = after.iter().position(|m| m.is_avc_sequence_header());
        let fc = after.iter().position(|m| m.is_coded_video()).unwrap();
        if seq.is_none_or(|s| s >= fc) {
            errs.push("no AVC sequence header before the first keyframe".into());
        }
        // Ten frames at 30 fps take 300 ms live; a cached burst takes ~0.
        let burst = coded[10].at.duration_since(first.at);
        if burst < Duration::from_millis(200) {
            errs.push(format!(
                "the first 11 frames arrived within {burst:?}: a burst from a cache, not live"
            ));
        }
        if !errs.is_empty() {
            failures.push(format!(
                "player {i}: {}\n{}",
                errs.join("; "),
                describe_all(after, 20)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A player that stops reading after `play` (tiny receive buffer) does not
/// slow the publisher or other players: a concurrent ffprobe gets the full
/// rate and a test-client player gets 30 fps by wall clock. The stuck
/// player's drops are counted: a log line names its peer with
/// `skipped_frames=N`, N > 0.
#[test]
fn player_that_never_reads_does_not_stall_others_and_drops_are_counted() {
    // 2 MiB is about 4 s of this 4 Mbit/s stream: room for a GOP burst and a
    // healthy player's hiccups (a bound below one GOP makes *every* player
    // skip at join), yet a stuck player fills it within seconds.
    let server = Server::with_config("[stream]\nplayer_queue_bytes_max = 2097152\n");
    let _publisher = {
        let p = ffmpeg_publish(
            "publisher",
            &server.url("live/test"),
            &PublishOpts {
                video_bitrate: Some("4M".into()),
                ..Default::default()
            },
        );
        server.wait_for_publish(&key(), 1, Duration::from_secs(15));
        p
    };

    // The stuck player: a 4 KiB receive buffer set before connecting, so the
    // kernel cannot absorb the stream for it.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], server.port).into();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut stuck = RtmpClient::from_stream(sock.into(), server.port).unwrap();
    stuck.handshake().expect("stuck player handshake");
    stuck.connect_app("live").expect("stuck player connect");
    let sid = stuck.create_stream().expect("stuck player createStream");
    stuck.play(sid, "test").expect("stuck player play");
    let stuck_port = stuck.local_port();
    // From here on it never reads.

    std::thread::sleep(Duration::from_secs(2));
    let watcher = BgPlayer::start(server.port, "live", "test").expect("watcher connects");
    let u = server.url("live/test");
    let probe = common::spawn(move || {
        ffprobe(
            "ffprobe-beside-stuck",
            &u,
            Some(6.0),
            Duration::from_secs(30),
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let t1 = Instant::now();
    let p = probe.join().unwrap();
    let (msgs, end) = watcher.stop();

    let n = video_frames_between(&msgs, t0, t1);
    let fps = n as f64 / (t1 - t0).as_secs_f64();
    let gap = max_video_gap(&msgs, t0, t1);
    println!("watcher beside the stuck player: {fps:.1} fps by wall clock, longest gap {gap:?}");
    assert!(end.is_ok(), "watcher's connection failed: {end:?}");
    assert!(
        fps >= 25.0,
        "watcher got {fps:.1} fps by wall clock beside a stuck player (want >= 25)"
    );
    assert!(
        gap < Duration::from_millis(1000),
        "watcher's video stalled for {gap:?}"
    );
    match check_h264_aac(&p, 5.0) {
        Ok(s) => println!(
            "ffprobe beside the stuck player: {s:?}, wall {:.2} s",
            p.wall.as_secs_f64()
        ),
        Err(e) => panic!("ffprobe beside a stuck player: {e}"),
    }
    assert!(
        p.wall < Duration::from_secs(12),
        "ffprobe took {:.1} s of wall time for 6 s of stream beside a stuck player",
        p.wall.as_secs_f64()
    );

    let peer = format!("127.0.0.1:{stuck_port}");
    let counted = |l: &str| {
        kv(l, "peer") == Some(peer.as_str())
            && kv(l, "skipped_frames")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    };
    let mut line = server.wait_for_log(Duration::from_secs(15), counted);
    if line.is_none() {
        // The summary may only come at close.
        drop(stuck);
        line = server.wait_for_log(Duration::from_secs(10), counted);
    }
    let lines_for_peer = server.find_logs(|l| kv(l, "peer") == Some(peer.as_str()));
    println!("stuck player's log lines: {lines_for_peer:#?}");
    assert!(
        line.is_some(),
        "no log line with peer={peer} and skipped_frames=N>0; lines naming the stuck player:\n{}",
        lines_for_peer.join("\n")
    );
}

type GarbageFn = fn(&mut RtmpClient, &mut XorShift) -> std::io::Result<()>;

/// The bad inputs of the issue, each a function that sends it on a fresh
/// TCP connection. Sizes assume the limits in [`GARBAGE_CONFIG`].
fn garbage_cases() -> Vec<(&'static str, GarbageFn)> {
    vec![
        ("random bytes instead of a handshake", |c, rng| {
            let mut b = vec![0u8; 1 + 1536 + 4096];
            rng.fill(&mut b);
            b[0] = 0xFF; // not version 3 (nor 6, RTMPE)
            c.write_raw(&b)
        }),
        ("Set Chunk Size 0", |c, _| {
            c.handshake()?;
            c.write_raw(&rtmp_client::encode_chunks(
                2,
                0,
                msg_type::SET_CHUNK_SIZE,
                0,
                &0u32.to_be_bytes(),
                128,
            ))
        }),
        ("Set Chunk Size over chunk_size_in_max", |c, _| {
            c.handshake()?;
            c.write_raw(&rtmp_client::encode_chunks(
                2,
                0,
                msg_type::SET_CHUNK_SIZE,
                0,
                &0x7FFF_FFFFu32.to_be_bytes(),
                128,
            ))
        }),
        ("message length over message_len_max", |c, rng| {
            c.handshake()?;
            let mut body = vec![0u8; 128];
            rng.fill(&mut body);
            c.write_raw(&rtmp_client::encode_chunks_with_len(
                3,
                0,
                msg_type::COMMAND_AMF0,
                0,
                0xFF_FFFF,
                &body,
                128,
            ))
        }),
        ("chunk stream id flood", |c, _| {
            c.handshake()?;
            // 5000 chunk streams, each with a message left half-sent.
            let mut out = Vec::new();
            for csid in 320..5320u32 {
                out.extend(rtmp_client::encode_chunks_with_len(
                    csid,
                    0,
                    msg_type::AUDIO,
                    1,
                    200,
                    &[0xAF; 128],
                    128,
                ));
            }
            c.write_raw(&out)
        }),
        ("AMF0 nesting bomb", |c, _| {
            c.handshake()?;
            // connect, 1, then 100 000 objects nested in one another.
            let mut p = rtmp_client::command_payload("connect", 1.0, &[]);
            p.push(0x03);
            for _ in 0..100_000 {
                p.extend_from_slice(&[0x00, 0x01, b'a', 0x03]);
            }
            c.write_raw(&rtmp_client::encode_chunks(
                3,
                0,
                msg_type::COMMAND_AMF0,
                0,
                &p,
                128,
            ))
        }),
        ("play before connect", |c, _| {
            c.handshake()?;
            let p = rtmp_client::command_payload(
                "play",
                0.0,
                &[Amf::Null, Amf::str("test"), Amf::Number(-2.0)],
            );
            c.write_raw(&rtmp_client::encode_chunks(
                8,
                0,
                msg_type::COMMAND_AMF0,
                1,
                &p,
                128,
            ))
        }),
    ]
}

/// Limits for the garbage test, set explicitly so the malformed sizes above
/// are over them whatever the defaults become.
const GARBAGE_CONFIG: &str = "[rtmp]\nmessage_len_max = 1048576\nchunk_size_in_max = 65536\n\
chunk_streams_max = 64\namf_depth_max = 32\nhandshake_timeout_s = 5\n";

/// Clients sending garbage are each disconnected with a warn/error log
/// line naming their peer, while running players on both shards keep
/// receiving at the live rate and the server stays up. Cases: random bytes
/// instead of a handshake; after a valid handshake, Set Chunk Size 0, Set
/// Chunk Size over `chunk_size_in_max`, a message length over
/// `message_len_max`, a chunk stream id flood, an AMF0 nesting bomb, and a
/// play before connect. Each case is checked once; then two threads repeat
/// all of them for 3 s while the players' frame rate is measured.
#[test]
fn garbage_clients_are_disconnected_with_logged_error_while_players_keep_receiving() {
    let mut server = Server::with_config(GARBAGE_CONFIG);
    let _publisher = publish_and_wait(&server, "publisher");
    let players = players_on_both_shards(&server, 16);
    for (p, shard) in &players {
        assert!(
            p.wait_until(Duration::from_secs(10), |m| m
                .iter()
                .any(|m| m.is_keyframe())),
            "player on shard {shard} got no keyframe"
        );
    }

    // Phase 1: each case once, checked.
    let mut rng = XorShift(0x5EED_0000_0000_0001);
    let mut failures = Vec::new();
    for (what, send) in garbage_cases() {
        let mut c = RtmpClient::tcp(server.port).expect("garbage client connects");
        let peer = format!("127.0.0.1:{}", c.local_port());
        let from = server.log_len();
        // A write may fail because the server already hung up: fine.
        let sent = send(&mut c, &mut rng);
        let closed = c.wait_closed(Instant::now() + Duration::from_secs(8));
        let logged = server.wait_for_log_from(from, Duration::from_secs(3), |l| {
            is_warn_or_error(l) && l.contains(&peer)
        });
        println!("{what}: peer {peer}, send {sent:?}, closed {closed}, log {logged:?}");
        if !closed {
            failures.push(format!(
                "{what}: the server did not close the connection within 8 s"
            ));
        }
        if logged.is_none() {
            let lines = server.find_logs(|l| l.contains(&peer));
            failures.push(format!(
                "{what}: no warn/error log line naming peer={peer}; lines naming it:\n  {}",
                lines.join("\n  ")
            ));
        }
    }

    // Phase 2: garbage from two threads for 3 s, players measured meanwhile.
    let t0 = Instant::now();
    let port = server.port;
    let floods: Vec<_> = (0..2u64)
        .map(|k| {
            common::spawn(move || {
                let mut rng = XorShift(0xF100D + k);
                let (mut sent, mut not_closed) = (0usize, Vec::new());
                while t0.elapsed() < Duration::from_secs(3) {
                    for (what, send) in garbage_cases() {
                        let Ok(mut c) = RtmpClient::tcp(port) else {
                            not_closed.push(format!("{what}: connect failed"));
                            continue;
                        };
                        let _ = send(&mut c, &mut rng);
                        sent += 1;
                        if !c.wait_closed(Instant::now() + Duration::from_secs(8)) {
                            not_closed.push(what.to_string());
                        }
                    }
                }
                (sent, not_closed)
            })
        })
        .collect();
    let mut sent = 0;
    for f in floods {
        let (n, not_closed) = f.join().unwrap();
        sent += n;
        for what in not_closed {
            failures.push(format!("flood: {what}: not closed within 8 s"));
        }
    }
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.is_running(),
        "the server process died\n{}",
        server.log_tail(60)
    );
    let secs = (t1 - t0).as_secs_f64();
    println!("{sent} garbage connections in {secs:.1} s");
    for (p, shard) in players {
        assert!(
            !p.is_finished(),
            "the player on shard {shard} was disconnected\n{}",
            server.log_tail(60)
        );
        let (msgs, end) = p.stop();
        assert!(
            end.is_ok(),
            "player on shard {shard}: connection failed: {end:?}"
        );
        let n = video_frames_between(&msgs, t0, t1);
        let gap = max_video_gap(&msgs, t0, t1);
        println!("player on shard {shard} during the flood: {n} video frames, longest gap {gap:?}");
        if gap >= Duration::from_millis(1000) || (n as f64) < secs * 25.0 {
            failures.push(format!(
                "player on shard {shard}: {n} video frames in {secs:.1} s of garbage (want >= 25 fps), \
                 longest gap {gap:?} (want < 1 s)"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SIGTERM with a publisher and a player connected: the process exits with
/// status 0 within 5 s, and the player is told the stream ended
/// (UnpublishNotify, Play.Stop or StreamEOF) before its connection closes.
#[test]
fn sigterm_exits_zero_within_5s_with_publisher_and_player_connected() {
    let mut server = Server::start();
    let mut publisher = publish_and_wait(&server, "publisher");
    let player = BgPlayer::start(server.port, "live", "test").expect("player connects");
    assert!(
        player.wait_until(Duration::from_secs(10), |m| m
            .iter()
            .any(|m| m.is_keyframe())),
        "player got no keyframe"
    );
    let t0 = Instant::now();
    server.sigterm();
    let st = server.wait_exit(Duration::from_secs(5));
    let took = t0.elapsed();
    println!("exit {st:?} after {took:?}");
    assert!(
        st.is_some(),
        "still running 5 s after SIGTERM\n{}",
        server.log_tail(60)
    );
    assert!(
        st.unwrap().success(),
        "exit status {st:?} after SIGTERM\n{}",
        server.log_tail(60)
    );

    // The server is gone, so the player's connection must end promptly.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !player.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = player.is_finished();
    let (msgs, _end) = player.stop();
    let told = msgs.iter().filter(|m| m.at >= t0).find(|m| {
        matches!(
            m.status_code().as_deref(),
            Some("NetStream.Play.UnpublishNotify") | Some("NetStream.Play.Stop")
        ) || m.user_control_event() == Some(user_control::STREAM_EOF)
    });
    println!("player told: {:?}", told.map(|m| m.describe()));
    assert!(
        finished,
        "the player's connection is still open after the server exited"
    );
    assert!(
        told.is_some(),
        "the player was not told the stream ended; its last messages:\n{}",
        describe_all(
            &msgs
                .iter()
                .rev()
                .take(10)
                .rev()
                .cloned()
                .collect::<Vec<_>>(),
            10
        )
    );
    let _ = publisher.wait_timeout(Duration::from_secs(5));
    assert!(
        !publisher.is_running(),
        "the publisher is still running after the server exited"
    );
}

/// `?vhost=NAME` on play puts the player in vhost NAME when NAME is a
/// configured vhost; an unknown NAME, or none, means `__defaultVhost__`.
#[test]
fn vhost_query_parameter_overrides_default_vhost() {
    let server = Server::with_config("vhosts = [\"example.com\"]\n");
    let cases = [
        (
            "test?vhost=example.com",
            "example.com/live/test".to_string(),
        ),
        ("test?vhost=unknown.example.org", key()),
        ("test", key()),
    ];
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for (name, want) in cases {
        let (c, _) = RtmpClient::player(server.port, "live", name).expect("player connects");
        let line = server.wait_for_play(c.local_port(), Duration::from_secs(5));
        let got = line.as_deref().and_then(|l| kv(l, "key"));
        if got != Some(want.as_str()) {
            failures.push(format!(
                "play {name}: key {got:?}, want {want} (line {line:?})"
            ));
        }
        clients.push(c);
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        server.log_tail(30)
    );
}

/// Connects test-client players of `live/test` until one is accepted by
/// `shard` (at most `tries`), stopping the others.
fn player_on_shard(server: &Server, shard: usize, tries: usize) -> BgPlayer {
    for _ in 0..tries {
        let (p, on) = player_and_shard(server);
        if on == shard {
            return p;
        }
        let _ = p.stop();
    }
    panic!("none of {tries} players landed on shard {shard}");
}

fn coded_video(msgs: &[Message]) -> usize {
    msgs.iter().filter(|m| m.is_coded_video()).count()
}

/// A replica's last player leaves; right after the replica's shard
/// unsubscribes (`REPLICA_LINGER` later) a new player there makes it
/// subscribe again, while the stream is live. The owner must take the
/// Unsubscribe before the Subscribe (both go on the ordered control lane),
/// and the new player must keep getting live video after its start burst:
/// a replica the owner dropped would get its snapshot and then nothing.
/// Twice, so the second round starts from a resubscribed replica.
///
/// This drives the sequence through the real binary; it cannot make the
/// shards' control channel full from outside, which the shards crate's
/// tests do (`subscribe_after_unsubscribe_arrives_while_media_lane_is_full`).
#[test]
fn replica_resubscribed_right_after_unsubscribe_keeps_its_player_fed() {
    const LINGER: Duration = Duration::from_secs(5); // server::REPLICA_LINGER
    let server = Server::start();
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let line = server.wait_for_publish(&key(), 1, Duration::from_secs(10));
    let owner: usize = kv(&line, "shard")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("publish line without shard=K: {line}"));
    let replica = 1 - owner;
    let (key, replica_s) = (key(), replica.to_string());
    let mut player = player_on_shard(&server, replica, 32);
    for round in 1..=2 {
        assert!(
            player.wait_until(Duration::from_secs(10), |m| coded_video(m) > 0),
            "round {round}: the replica's player got no video\n{}",
            server.log_tail(60)
        );
        let from = server.log_len();
        let _ = player.stop();
        let unsubscribed = server.wait_for_log_from(from, LINGER + Duration::from_secs(5), |l| {
            l.contains("subscription ")
                && has_kvs(
                    l,
                    &[("key", &key), ("subscribe", "false"), ("shard", &replica_s)],
                )
        });
        assert!(
            unsubscribed.is_some(),
            "round {round}: shard {replica} did not unsubscribe within {LINGER:?} + 5 s\n{}",
            server.log_tail(60)
        );
        // At once: the new replica's Subscribe follows the Unsubscribe.
        player = player_on_shard(&server, replica, 32);
        assert!(
            player.wait_until(Duration::from_secs(10), |m| coded_video(m) > 0),
            "round {round}: the resubscribed replica's player got no video\n{}",
            server.log_tail(60)
        );
        // Past the start burst (at most one 2 s GOP), live video at 30 fps.
        std::thread::sleep(Duration::from_millis(500));
        let burst = coded_video(&player.snapshot());
        let live = player.wait_until(Duration::from_secs(5), |m| coded_video(m) >= burst + 45);
        assert!(
            live,
            "round {round}: after its start burst of {burst} video frames the player got {} \
             more in 5 s (want 45)\n{}",
            coded_video(&player.snapshot()) - burst,
            server.log_tail(60)
        );
        let owner_saw: Vec<String> = server.logs()[from..]
            .iter()
            .filter(|l| {
                (l.contains("replica subscribed ") || l.contains("replica unsubscribed "))
                    && has_kvs(l, &[("key", &key), ("shard", &replica_s)])
            })
            .cloned()
            .collect();
        let order: Vec<bool> = owner_saw
            .iter()
            .map(|l| l.contains("replica subscribed "))
            .collect();
        assert_eq!(
            order,
            [false, true],
            "round {round}: the owner took, in order (true: subscribe): {owner_saw:#?}"
        );
    }
    let _ = player.stop();
}
