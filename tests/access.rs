//! IP rules and the admin surface (issue 11), against the real binary with
//! `--shards 2`. Clients connect from distinct loopback addresses
//! (127.0.0.2, .3, .4) bound with socket2, so each is a peer of its own.
//!
//! Every process is stopped by PID; every wait has a deadline.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http_client::{self, HttpConn};
use common::rtmp_client::RtmpClient;
use common::*;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to the server from source address `from`.
fn connect_from(from: &str, port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&src.into())
        .expect("bind a loopback source address");
    let dst: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    sock.connect_timeout(&dst.into(), REQUEST_TIMEOUT)
        .expect("connect");
    sock.into()
}

/// `GET target` from `from`, with extra header lines.
fn get_from(from: &str, port: u16, target: &str, extra: &[&str]) -> http_client::Response {
    let mut c = HttpConn::from_stream(connect_from(from, port)).unwrap();
    let mut headers = vec!["Connection: close"];
    headers.extend_from_slice(extra);
    c.send_request("GET", target, &headers).unwrap();
    c.read_response(false, Instant::now() + REQUEST_TIMEOUT)
        .expect("a response")
}

/// The first onStatus code and description after a publish or play of
/// `live/test` from `from`, and the media messages seen within 2 s.
fn rtmp_from(from: &str, port: u16, publish: bool) -> (Vec<(String, String)>, usize) {
    let mut c = RtmpClient::from_stream(connect_from(from, port), port).unwrap();
    c.handshake().unwrap();
    c.connect_app("live").unwrap();
    if publish {
        c.start_publish("test").unwrap();
    } else {
        let sid = c.create_stream().unwrap();
        c.play(sid, "test").unwrap();
    }
    c.statuses_and_media(Instant::now() + Duration::from_secs(2))
}

#[test]
fn ip_rules_decide_who_publishes_and_plays() {
    let server = Server::with_config(
        "[access]\nallow_publish = [\"127.0.0.1/32\"]\ndeny_play = [\"127.0.0.3\"]\n",
    );
    let port = server.port;

    // A publisher from 127.0.0.2 is not in allow_publish.
    let (statuses, _) = rtmp_from("127.0.0.2", port, true);
    assert!(
        statuses.iter().any(|(c, d)| c == "NetStream.Publish.Denied"
            && d.contains("127.0.0.2")
            && d.contains("access.allow_publish")),
        "publisher from 127.0.0.2 got {statuses:?}"
    );
    assert!(
        server.find_logs(|l| is_event(l, "publish")).is_empty(),
        "a refused publisher became the publisher\n{}",
        server.log_tail(20)
    );

    // ffmpeg from 127.0.0.1 publishes.
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());

    // 127.0.0.3 may not play, by RTMP or HTTP-FLV; 127.0.0.2 may.
    let (statuses, media) = rtmp_from("127.0.0.3", port, false);
    assert!(
        statuses
            .iter()
            .any(|(c, d)| c == "NetStream.Play.Failed" && d.contains("access.deny_play")),
        "RTMP player from 127.0.0.3 got {statuses:?}"
    );
    assert_eq!(media, 0, "a denied RTMP player got media");
    let r = get_from("127.0.0.3", port, "/live/test.flv", &[]);
    assert_eq!(r.head.status, 403, "{}", r.head.raw);
    assert!(r.text().contains("access.deny_play"), "{}", r.text());
    let r = get_from("127.0.0.3", port, "/live/test.m3u8", &[]);
    assert_eq!(r.head.status, 403, "HLS from a denied peer: {}", r.head.raw);

    let (statuses, media) = rtmp_from("127.0.0.2", port, false);
    assert!(
        statuses.iter().any(|(c, _)| c == "NetStream.Play.Start"),
        "RTMP player from 127.0.0.2 got {statuses:?}"
    );
    assert!(
        media > 10,
        "the allowed RTMP player got {media} media messages in 2 s"
    );
}

#[test]
fn the_admin_surface_answers_loopback_allowed_peers_and_the_token() {
    let server = Server::with_config("[api]\nallow = [\"127.0.0.4/32\"]\ntoken = \"t0ken\"\n");
    let port = server.port;
    for path in [
        "/api/v1/server",
        "/api/v1/streams",
        "/metrics",
        "/dashboard",
        "/status",
    ] {
        let r = get_from("127.0.0.2", port, path, &[]);
        assert_eq!(r.head.status, 403, "{path} from 127.0.0.2: {}", r.head.raw);
        assert!(r.text().contains("api.token"), "{path}: {}", r.text());
        let r = get_from("127.0.0.2", port, path, &["Authorization: Bearer wrong"]);
        assert_eq!(r.head.status, 403, "{path} with a wrong token");
        let r = get_from("127.0.0.2", port, path, &["Authorization: Bearer t0ken"]);
        assert_eq!(r.head.status, 200, "{path} with the token: {}", r.head.raw);
        let r = get_from("127.0.0.4", port, path, &[]);
        assert_eq!(r.head.status, 200, "{path} from api.allow: {}", r.head.raw);
        let r = get_from("127.0.0.1", port, path, &[]);
        assert_eq!(r.head.status, 200, "{path} from loopback: {}", r.head.raw);
    }
    // The page and the stream list it reads stay public.
    for path in ["/", "/api/streams"] {
        let r = get_from("127.0.0.2", port, path, &[]);
        assert_eq!(r.head.status, 200, "{path} from 127.0.0.2: {}", r.head.raw);
    }
}

fn refused(port: u16, reason: &str) -> u64 {
    refused_total(([127, 0, 0, 1], port).into(), reason)
}

/// `max_connections_per_ip`: past the limit a peer's connection is closed
/// at accept and counted; its open connections and other peers are not
/// touched. IP-rule and signature refusals are counted by reason too.
#[test]
fn connections_per_ip_are_limited_and_refusals_counted() {
    let server =
        Server::with_config("max_connections_per_ip = 2\n[access]\ndeny_play = [\"127.0.0.3\"]\n");
    let port = server.port;
    let held: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", port)).collect();
    // Both are registered before the third arrives.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while server
        .find_logs(|l| l.contains("accept peer=127.0.0.2:"))
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the two connections were not accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut third = connect_from("127.0.0.2", port);
    third.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let mut buf = [0u8; 16];
    use std::io::Read;
    let n = third.read(&mut buf);
    // Closed by the server: end of stream or a reset, not a read timeout.
    let closed = match &n {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    assert!(
        closed,
        "the third connection from 127.0.0.2 was not closed: {n:?}"
    );
    assert!(
        server
            .wait_for_log(REQUEST_TIMEOUT, |l| l.contains("refused peer=127.0.0.2:")
                && l.contains("max_connections_per_ip=2"))
            .is_some(),
        "no log line for the refused connection\n{}",
        server.log_tail(20)
    );
    // The held connections still work, and another peer is unaffected.
    let mut c = HttpConn::from_stream(held.into_iter().next().unwrap()).unwrap();
    c.send_request("GET", "/api/streams", &["Connection: close"])
        .unwrap();
    let r = c
        .read_response(false, Instant::now() + REQUEST_TIMEOUT)
        .unwrap();
    assert_eq!(r.head.status, 200, "a held connection: {}", r.head.raw);
    assert_eq!(
        get_from("127.0.0.4", port, "/api/streams", &[]).head.status,
        200
    );
    assert_eq!(refused(port, "max_connections_per_ip"), 1);

    // A denied player and the admin surface from another peer are counted.
    assert_eq!(
        get_from("127.0.0.3", port, "/live/test.flv", &[])
            .head
            .status,
        403
    );
    assert_eq!(
        get_from("127.0.0.4", port, "/metrics", &[]).head.status,
        403
    );
    assert_eq!(refused(port, "access"), 1);
    assert_eq!(refused(port, "admin"), 1);
    assert_eq!(refused(port, "auth"), 0);
}
