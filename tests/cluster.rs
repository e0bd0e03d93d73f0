//! The origin cluster on a real Redis (issue 12): Debian's `redis-server`
//! on a free port of 127.0.0.1, shardcast nodes on 127.0.N.2, .3, … (N one per test) each
//! `--shards 2`, ffmpeg publishing, ffprobe and this crate's HTTP-FLV
//! reader playing. Every process is stopped by its PID; every wait has a
//! deadline.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http_client::BgFlvPlayer;
use common::*;
use serde_json::Value;

/// A Redis on `port`, nothing saved; ready when it answers PING.
fn redis(port: u16) -> Proc {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null());
    let mut p = Proc::spawn(&format!("redis-{port}"), &mut cmd);
    let up = wait_for(Duration::from_secs(5), || {
        (cli(port, &["PING"]) == "PONG").then_some(())
    });
    assert!(
        up.is_some(),
        "redis-server did not answer on {port}: {}",
        p.stderr_tail(10)
    );
    assert!(p.is_running());
    p
}

/// `redis-cli -p port args…`, its output trimmed ("" if it failed).
fn cli(port: u16, args: &[&str]) -> String {
    Command::new("timeout")
        .args(["5", "redis-cli", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn registry_key(name: &str) -> String {
    format!("shardcast:stream:{}", live_key(name))
}

/// A node on `ip` in the cluster of the Redis on `redis_port`, with more
/// configuration in `top`.
fn node(ip: &str, redis_port: u16, top: &str) -> Server {
    let toml = format!("{top}\n[cluster]\nredis = \"redis://127.0.0.1:{redis_port}\"\n");
    Server::builder()
        .listen(ip)
        .log("info")
        .config(&toml)
        .start()
}

/// The registry's announcement of `name`, parsed, once it names `addr`.
fn announced_by(redis_port: u16, name: &str, addr: SocketAddr, timeout: Duration) -> Option<Value> {
    wait_for(timeout, || {
        let v: Value =
            serde_json::from_str(&cli(redis_port, &["GET", &registry_key(name)])).ok()?;
        (v["addr"] == addr.to_string().as_str()).then_some(v)
    })
}

/// A player on origin A gets a stream published on origin B: B announces
/// it in Redis (with a TTL it refreshes), A looks it up and pulls it from
/// B; B withdraws it at unpublish.
#[test]
fn a_player_on_one_origin_gets_a_stream_published_on_another() {
    let rport = free_port();
    let _redis = redis(rport);
    let a = node("127.0.20.2", rport, "");
    let b = node("127.0.20.3", rport, "");
    let mut publisher = publish_live(&b, "test");
    let v = announced_by(rport, "test", b.addr(), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("B did not announce the stream\n{}", b.log_tail(20)));
    assert_eq!(v["node"], b.addr().to_string().as_str(), "{v}");
    let ttl: i64 = cli(rport, &["PTTL", &registry_key("test")])
        .parse()
        .unwrap_or(-3);
    assert!(
        (1..=10_000).contains(&ttl),
        "the announcement's TTL: {ttl} ms"
    );
    // Past a TTL the key is still there: refreshed.
    std::thread::sleep(Duration::from_secs(4));
    let ttl: i64 = cli(rport, &["PTTL", &registry_key("test")])
        .parse()
        .unwrap_or(-3);
    assert!(ttl > 5_000, "not refreshed: TTL {ttl} ms after 4 s");

    let probe = ffprobe(
        "ffprobe-origin-a",
        &a.http_url("live/test.flv"),
        Some(3.0),
        Duration::from_secs(30),
    );
    check_h264_aac(&probe, 2.0)
        .unwrap_or_else(|e| panic!("the stream through origin A: {e}\n{}", a.log_tail(30)));
    let (_, server) = api_at(&a, "/api/v1/server");
    assert_eq!(server["registry"]["up"], true, "{server}");
    assert_eq!(server["node_id"], a.addr().to_string().as_str(), "{server}");
    assert!(
        !a.find_logs(|l| l.contains("pull playing")
            && kv(l, "origin") == Some(b.addr().to_string().as_str()))
            .is_empty(),
        "A did not pull from B\n{}",
        a.log_tail(30)
    );

    publisher.kill();
    let gone = wait_for(Duration::from_secs(10), || {
        cli(rport, &["EXISTS", &registry_key("test")])
            .eq("0")
            .then_some(())
    });
    assert!(
        gone.is_some(),
        "the key outlived the unpublish\n{}",
        b.log_tail(20)
    );
}

/// Origin A, which has the stream, is SIGKILLed and its publisher moves
/// to origin B. B finds A's announcement, A does not answer, B takes the
/// key over at once (not a TTL later) and says so on the events channel;
/// an edge that knows only A finds B through the registry, and its
/// HTTP-FLV player gets media again within 3 s of the republish on the
/// same connection.
#[test]
fn a_stream_moved_to_another_origin_is_followed_within_3_s() {
    let rport = free_port();
    let _redis = redis(rport);
    let a = node("127.0.21.2", rport, "");
    let b = node("127.0.21.3", rport, "");
    let e = node(
        "127.0.21.4",
        rport,
        &format!("mode = \"edge\"\n[edge]\norigins = [\"{}\"]", a.addr()),
    );
    let (b_addr, name) = (b.addr(), "moved");
    let f = measure_failover(a, &b, &e, name);
    let v = announced_by(rport, name, b_addr, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("B does not hold the key\n{}", b.log_tail(20)));
    assert_eq!(v["node"], b_addr.to_string().as_str(), "{v}");
    assert!(
        !b.find_logs(|l| l.contains("taken over") && l.contains("does not answer"))
            .is_empty(),
        "B did not take the dead origin's key over\n{}",
        b.log_tail(20)
    );
    assert!(
        !e.find_logs(|l| l.contains("announced at") && l.contains(&b_addr.to_string()))
            .is_empty(),
        "the edge did not hear of the move\n{}",
        e.log_tail(30)
    );
    assert!(
        f.after_republish <= Duration::from_secs(3),
        "media came back {:?} after the republish\n{}",
        f.after_republish,
        e.log_tail(30)
    );
}

/// Redis stops during play: players keep playing, a new play on the edge
/// falls back to its static list, the origin logs the outage once; Redis
/// back, the announcements return.
#[test]
fn a_redis_outage_costs_lookups_not_streams() {
    let rport = free_port();
    let mut redis_proc = redis(rport);
    let o = node("127.0.22.2", rport, "");
    let e = node(
        "127.0.22.3",
        rport,
        &format!("mode = \"edge\"\n[edge]\norigins = [\"{}\"]", o.addr()),
    );
    let _p1 = publish_live(&o, "one");
    announced_by(rport, "one", o.addr(), Duration::from_secs(5)).expect("announced");
    let player = BgFlvPlayer::start_at(e.addr(), "/live/one.flv", false).expect("connect");
    assert!(
        player.wait_until(Duration::from_secs(15), |t| t
            .iter()
            .filter(|t| t.is_video())
            .count()
            >= 30),
        "the edge player did not start\n{}",
        e.log_tail(30)
    );

    signal(redis_proc.pid, libc::SIGKILL);
    redis_proc.wait_timeout(Duration::from_secs(5));
    let before = player.snapshot().iter().filter(|t| t.is_video()).count();
    // A new stream while Redis is down: the edge's lookup fails over to
    // its static list.
    let _p2 = publish_live(&o, "two");
    let probe = ffprobe(
        "ffprobe-edge-redis-down",
        &e.http_url("live/two.flv"),
        Some(2.0),
        Duration::from_secs(30),
    );
    assert!(
        !packets_of(&probe, "video").is_empty(),
        "a new play on the edge with Redis down: {}\n{}",
        probe.stderr,
        e.log_tail(30)
    );
    std::thread::sleep(Duration::from_secs(3));
    let after = player.snapshot().iter().filter(|t| t.is_video()).count();
    assert!(
        after >= before + 60 && !player.is_finished(),
        "the player stalled with Redis down: {before} -> {after} video tags"
    );
    let (_, server) = api_at(&o, "/api/v1/server");
    assert_eq!(server["registry"]["up"], false, "{server}");
    let outage = o.find_logs(|l| l.contains("unreachable"));
    assert_eq!(outage.len(), 1, "the outage is logged once: {outage:?}");

    // Redis back on the same port: both streams are announced again.
    let _redis_again = redis(rport);
    for name in ["one", "two"] {
        announced_by(rport, name, o.addr(), Duration::from_secs(15)).unwrap_or_else(|| {
            panic!(
                "{name} not announced again after Redis came back\n{}",
                o.log_tail(30)
            )
        });
    }
    assert!(!o.find_logs(|l| l.contains("reachable again")).is_empty());
    player.stop();
}
