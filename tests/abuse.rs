//! Abuse limits under load (issue 11), against the real binary: 2000 idle
//! connections and 300 slowloris clients (one byte of a request head every
//! second) while 50 HTTP-FLV players play. Every player keeps its frame
//! rate; the idle ones are closed by `rtmp.handshake_timeout_s` and the
//! slow ones by `http.header_timeout_s`, each by its own deadline; the
//! server's RSS comes back near where it was before the attack. And 6000
//! hostile RTMP sessions (random bytes, mutated publish captures, partial
//! messages on 60 chunk streams) cost only their own connections, and RSS
//! comes back near its baseline after them.
//!
//! Every process is stopped by PID; every wait has a deadline.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http_client::{flv_max_video_gap, flv_video_frames_between, BgFlvPlayer};
use common::*;

const PLAYERS: usize = 50;
const IDLE: usize = 2000;
const SLOWLORIS: usize = 300;
/// `rtmp.handshake_timeout_s` and `http.header_timeout_s` in this test.
const HANDSHAKE_S: u64 = 4;
const HEADER_S: u64 = 3;
/// How far past its deadline a connection may be closed (a loaded
/// 2-core machine; the deadline itself is exact).
const SLACK: Duration = Duration::from_secs(3);

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Whether the server closed `s` (non-blocking peek: EOF or an error).
fn closed(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nonblocking(true).unwrap();
    s
}

/// Waits until every socket is closed or `until`; returns when each closed
/// (None: still open at `until`).
fn wait_closed(
    socks: &[TcpStream],
    until: Instant,
    mut tick: impl FnMut(),
) -> Vec<Option<Instant>> {
    let mut at: Vec<Option<Instant>> = vec![None; socks.len()];
    while Instant::now() < until && at.iter().any(Option::is_none) {
        for (i, s) in socks.iter().enumerate() {
            if at[i].is_none() && closed(s) {
                at[i] = Some(Instant::now());
            }
        }
        tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    at
}

#[test]
fn idle_and_slowloris_clients_are_cut_by_their_deadlines_while_players_play_on() {
    let server = Server::builder()
        .config(&format!(
            "[rtmp]\nhandshake_timeout_s = {HANDSHAKE_S}\n[http]\nheader_timeout_s = {HEADER_S}\n"
        ))
        .log("info")
        .start();
    let _publisher = publish_and_wait_opts(&server, "pub", &PublishOpts::small());
    let players: Vec<BgFlvPlayer> = (0..PLAYERS)
        .map(|_| BgFlvPlayer::start(server.port, "/live/test.flv", false).expect("player"))
        .collect();
    for (i, p) in players.iter().enumerate() {
        assert!(
            p.wait_until(Duration::from_secs(10), |t| t
                .iter()
                .any(|t| t.is_keyframe())),
            "player {i} got no keyframe"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kib(server.pid);

    // The attack: idle sockets that never send, and slowloris clients
    // that send one byte of a request head each second.
    let attack = Instant::now();
    let idle: Vec<TcpStream> = (0..IDLE).map(|_| connect(server.port)).collect();
    let slow: Vec<TcpStream> = (0..SLOWLORIS).map(|_| connect(server.port)).collect();
    let head = b"GET /live/test.flv HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut sent = 0usize;
    let mut next_byte = Instant::now();
    let mut rss_peak = 0u64;
    let mut drip = |slow: &[TcpStream]| {
        rss_peak = rss_peak.max(rss_kib(server.pid));
        if Instant::now() < next_byte {
            return;
        }
        next_byte += Duration::from_secs(1);
        let b = head[sent % head.len()];
        sent += 1;
        for s in slow {
            let _ = (&*s).write(&[b]);
        }
    };
    let slow_closed = wait_closed(
        &slow,
        attack + Duration::from_secs(HEADER_S) + SLACK + Duration::from_secs(2),
        || drip(&slow),
    );
    let idle_closed = wait_closed(
        &idle,
        attack + Duration::from_secs(HANDSHAKE_S) + SLACK + Duration::from_secs(2),
        || drip(&slow),
    );
    let attack_end = Instant::now();

    let open_slow = slow_closed.iter().filter(|c| c.is_none()).count();
    let open_idle = idle_closed.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open_slow, 0,
        "slowloris clients still open after http.header_timeout_s"
    );
    assert_eq!(
        open_idle, 0,
        "idle clients still open after rtmp.handshake_timeout_s"
    );
    // Each by its own deadline, not earlier: the slow ones sent bytes all
    // along, and were still cut at HEADER_S from their first byte.
    let earliest_slow = slow_closed
        .iter()
        .flatten()
        .min()
        .unwrap()
        .duration_since(attack);
    let latest_slow = slow_closed
        .iter()
        .flatten()
        .max()
        .unwrap()
        .duration_since(attack);
    assert!(
        earliest_slow >= Duration::from_secs(HEADER_S) - Duration::from_millis(200)
            && latest_slow <= Duration::from_secs(HEADER_S + 1) + SLACK,
        "slowloris closed between {earliest_slow:?} and {latest_slow:?}; want ~{HEADER_S} s"
    );
    let earliest_idle = idle_closed
        .iter()
        .flatten()
        .min()
        .unwrap()
        .duration_since(attack);
    assert!(
        earliest_idle >= Duration::from_secs(HANDSHAKE_S) - Duration::from_millis(200),
        "idle clients closed at {earliest_idle:?}, before rtmp.handshake_timeout_s"
    );
    let mut junk = [0u8; 64];
    for s in &slow {
        // A slowloris client got nothing but the close (no media).
        let n = (&*s).read(&mut junk).unwrap_or(0);
        assert_eq!(n, 0, "a slowloris client was answered");
    }
    drop(idle);
    drop(slow);

    // Every player kept its frame rate through the attack (30 fps source).
    let window = attack_end.duration_since(attack).as_secs_f64();
    for (i, p) in players.iter().enumerate() {
        let tags = p.snapshot();
        let frames = flv_video_frames_between(&tags, attack, attack_end);
        let gap = flv_max_video_gap(&tags, attack, attack_end);
        assert!(
            frames as f64 >= 0.8 * 30.0 * window,
            "player {i} got {frames} video frames in {window:.1} s of attack"
        );
        assert!(
            gap < Duration::from_millis(1000),
            "player {i} stalled for {gap:?}"
        );
    }

    // Memory comes back: RSS a few seconds after the attack against before.
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = rss_kib(server.pid);
    println!(
        "abuse: RSS before {} MiB, peak {} MiB during {IDLE} idle + {SLOWLORIS} slowloris, \
         after {} MiB; {PLAYERS} players kept their frame rate over {window:.1} s",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "RSS {rss_after} KiB after the attack, {rss_before} KiB before (peak {rss_peak} KiB)"
    );
    for p in players {
        p.stop();
    }
}

/// Hostile RTMP sessions in all (a third of each kind below), and how many
/// are open at once.
const HOSTILE: usize = 6000;
const HOSTILE_AT_ONCE: usize = 300;
/// Chunk streams a reassembly-flood session opens, each announcing an
/// 8 MiB video message and sending 64 KiB of it.
const FLOOD_STREAMS: u32 = 60;
const FLOOD_ANNOUNCED: u32 = 8 * 1024 * 1024;
const FLOOD_SENT: usize = 64 * 1024;
/// `stream.publisher_grace_s` here: the streams the mutated publishes
/// created are kept that long after their publisher left (30 s by default).
const GRACE_S: u64 = 3;

/// The bytes of a publish as OBS sends it (chunk size, connect,
/// createStream, publish, then a video message), for mutation.
fn publish_capture(n: usize) -> Vec<u8> {
    use common::rtmp_client::{command_payload, encode_chunks, Amf};
    let mut out = encode_chunks(2, 0, 1, 0, &4096u32.to_be_bytes(), 128);
    let connect = command_payload(
        "connect",
        1.0,
        &[Amf::obj(&[
            ("app", Amf::str("live")),
            ("type", Amf::str("nonprivate")),
            ("tcUrl", Amf::str("rtmp://127.0.0.1/live")),
        ])],
    );
    out.extend(encode_chunks(3, 0, 20, 0, &connect, 4096));
    let create = command_payload("createStream", 2.0, &[Amf::Null]);
    out.extend(encode_chunks(3, 0, 20, 0, &create, 4096));
    let publish = command_payload(
        "publish",
        3.0,
        &[
            Amf::Null,
            Amf::str(&format!("hostile{n}")),
            Amf::str("live"),
        ],
    );
    out.extend(encode_chunks(8, 0, 20, 1, &publish, 4096));
    let mut video = vec![0x17, 0x01, 0, 0, 0];
    video.resize(20_000, 0x5a);
    out.extend(encode_chunks(6, 40, 9, 1, &video, 4096));
    out
}

/// One hostile session's bytes after the TCP connect; `handshake` says
/// whether a valid handshake comes first.
fn hostile_bytes(n: usize, rng: &mut common::rtmp_client::XorShift) -> (bool, Vec<u8>) {
    use common::rtmp_client::encode_chunks_with_len;
    match n % 3 {
        // Random bytes after a valid version byte.
        0 => {
            let mut b = vec![0u8; 1 + 1536 + 8192];
            rng.fill(&mut b);
            b[0] = 3;
            (false, b)
        }
        // A publish capture with a few bytes changed.
        1 => {
            let mut b = publish_capture(n);
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = (rng.next_u64() % b.len() as u64) as usize;
                b[i] ^= (rng.next_u64() % 255 + 1) as u8;
            }
            (true, b)
        }
        // Partial messages on many chunk streams, none ever completed.
        _ => {
            let mut b = encode_chunks_with_len(2, 0, 1, 0, 4, &65536u32.to_be_bytes(), 128);
            let body = vec![0x27u8; FLOOD_SENT];
            for csid in 3..3 + FLOOD_STREAMS {
                b.extend(encode_chunks_with_len(
                    csid,
                    0,
                    9,
                    1,
                    FLOOD_ANNOUNCED,
                    &body,
                    65536,
                ));
            }
            (true, b)
        }
    }
}

/// Opens one hostile session and sends its bytes (the server may cut it
/// at any point: write errors end it). Returns the socket, still open.
/// Every session must reach the server: a refused connect fails the test.
fn hostile_session(port: u16, n: usize, rng: &mut common::rtmp_client::XorShift) -> TcpStream {
    let (shake, bytes) = hostile_bytes(n, rng);
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("hostile session {n}: connect: {e}"));
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if shake && common::rtmp_client::handshake(&mut s).is_err() {
        return s;
    }
    let _ = s.write_all(&bytes);
    s
}

/// 6000 hostile RTMP sessions (random bytes, mutated publish captures,
/// 60 chunk streams × 8 MiB partial messages), 300 at a time, while a
/// stream plays: each costs only its own connection, and the server's RSS
/// comes back near its baseline after the run.
#[test]
fn hostile_rtmp_sessions_cost_their_connection_and_memory_comes_back() {
    let mut server = Server::builder()
        .config(&format!("[stream]\npublisher_grace_s = {GRACE_S}\n"))
        .log("info")
        .start();
    let _publisher = publish_and_wait_opts(&server, "pub", &PublishOpts::small());
    let player = BgFlvPlayer::start(server.port, "/live/test.flv", false).expect("player");
    assert!(
        player.wait_until(Duration::from_secs(10), |t| t
            .iter()
            .any(|t| t.is_keyframe())),
        "the player got no keyframe"
    );
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = rss_kib(server.pid);

    let attack = Instant::now();
    let mut rss_peak = 0u64;
    let threads = 6;
    for round in 0..HOSTILE / HOSTILE_AT_ONCE {
        let port = server.port;
        let open: Vec<TcpStream> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut rng = common::rtmp_client::XorShift(
                            0x2545_F491_4F6C_DD1D ^ ((round * threads + t) as u64 + 1),
                        );
                        (0..HOSTILE_AT_ONCE / threads)
                            .map(|i| {
                                let n =
                                    round * HOSTILE_AT_ONCE + t * (HOSTILE_AT_ONCE / threads) + i;
                                hostile_session(port, n, &mut rng)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("hostile client thread"))
                .collect()
        });
        rss_peak = rss_peak.max(rss_kib(server.pid));
        drop(open);
    }
    let attack_end = Instant::now();
    assert!(
        server.is_running(),
        "the server died under hostile RTMP input"
    );

    // The stream went on for its player.
    let window = attack_end.duration_since(attack).as_secs_f64();
    let tags = player.snapshot();
    let frames = flv_video_frames_between(&tags, attack, attack_end);
    let gap = flv_max_video_gap(&tags, attack, attack_end);
    assert!(
        frames as f64 >= 0.8 * 30.0 * window,
        "the player got {frames} video frames in {window:.1} s of hostile input"
    );
    assert!(
        gap < Duration::from_millis(1000),
        "the player stalled for {gap:?}"
    );

    // Memory comes back once the hostile streams' grace is over (the shard
    // trims after 256 connections or streams ended, at most every 5 s, and
    // once more for the tail of a burst): RSS within 16 MiB of before once
    // the grace and two trim intervals are over (waiting for 4 MiB, to
    // print where it settles).
    let until = Instant::now() + Duration::from_secs(GRACE_S + 10);
    let mut rss_after = rss_kib(server.pid);
    while rss_after > rss_before + 4 * 1024 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        rss_after = rss_kib(server.pid);
    }
    println!(
        "abuse: RSS before {} MiB, peak {} MiB during {HOSTILE} hostile RTMP sessions \
         ({HOSTILE_AT_ONCE} at once, {window:.1} s), after {} MiB",
        rss_before / 1024,
        rss_peak / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "RSS {rss_after} KiB after the hostile sessions, {rss_before} KiB before (peak {rss_peak} KiB)"
    );
    player.stop();
}
