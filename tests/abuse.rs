//! Abuse limits under load (issue 11), against the real binary: 2000 idle
//! connections and 300 slowloris clients (one byte of a request head every
//! second) while 50 HTTP-FLV players play. Every player keeps its frame
//! rate; the idle ones are closed by `rtmp.handshake_timeout_s` and the
//! slow ones by `http.header_timeout_s`, each by its own deadline; the
//! server's RSS comes back near where it was before the attack.
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
