//! SIGHUP: the config file is read again while serving. What may change
//! live does, for new connections; what needs a restart keeps its running
//! value and is named; a broken file changes nothing; no player is dropped.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client::get;
use common::{artefact_dir, publish_and_wait, Proc, Server};

/// A reload's log line after the signal.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);
/// One HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn generation(server: &Server) -> u64 {
    let r = get(server.port, "/api/v1/server", REQUEST_TIMEOUT).expect("GET /api/v1/server");
    let v: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON");
    assert!(v["config"]["loaded_at"].is_string(), "{v}");
    v["config"]["generation"].as_u64().expect("config.generation")
}

/// Bytes an HTTP-FLV player (curl) has received so far.
fn received(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Waits until the player's file grows past `from`.
fn wait_growth(path: &std::path::Path, from: u64, what: &str) {
    let end = Instant::now() + RELOAD_DEADLINE;
    while received(path) <= from {
        assert!(Instant::now() < end, "the player received nothing more {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A reload (`[access] deny_play`) refuses new players and keeps the one
/// playing; `port` is named as needing a restart; a broken file keeps the
/// running configuration.
#[test]
fn a_reload_changes_new_connections_and_drops_no_player() {
    let server = Server::builder().config("[http]\nstream_wait_s = 2\n").start();
    let config = server.config_path.clone().unwrap();
    assert_eq!(generation(&server), 1);
    let _publisher = publish_and_wait(&server, "publisher");

    let flv = artefact_dir().join("playing.flv");
    let _ = std::fs::remove_file(&flv);
    let mut curl = Command::new("curl");
    curl.args(["-s", "-N", "-m", "60", "-o"])
        .arg(&flv)
        .arg(server.http_url("live/test.flv"))
        .stdout(Stdio::null());
    let mut player = Proc::spawn("curl-player", &mut curl);
    // Past the FLV header and the sequence headers: frames flow.
    wait_growth(&flv, 4096, "before the reload");

    let other_port = common::free_port();
    std::fs::write(
        &config,
        format!(
            "internal_port = {other_port}\n[http]\nstream_wait_s = 2\n\
             [access]\ndeny_play = [\"127.0.0.0/8\"]\n"
        ),
    )
    .unwrap();
    let from = server.log_len();
    common::signal(server.pid, libc::SIGHUP);
    let loaded = server
        .wait_for_log_from(from, RELOAD_DEADLINE, |l| {
            l.contains("configuration generation 2 loaded")
        })
        .unwrap_or_else(|| panic!("no reload line; log:\n{}", server.log_tail(30)));
    assert!(loaded.contains("changed: access"), "{loaded}");
    assert!(
        server
            .find_logs(|l| l.contains("restart needed for internal_port"))
            .len()
            == 1,
        "internal_port is not named as needing a restart; log:\n{}",
        server.log_tail(30)
    );
    // The port did not move; the API tells the new generation.
    assert_eq!(generation(&server), 2);
    // A new player is refused by the new rule...
    let refused = get(server.port, "/live/test.flv", REQUEST_TIMEOUT).expect("GET");
    assert_eq!(refused.head.status, 403, "{}", refused.text());
    // ...while the one that was playing goes on.
    let before = received(&flv);
    wait_growth(&flv, before, "after the reload");
    assert!(player.is_running(), "the player was dropped by the reload");

    // A file that does not parse keeps what is running.
    std::fs::write(&config, "port = \"eighty\"\n").unwrap();
    let from = server.log_len();
    common::signal(server.pid, libc::SIGHUP);
    let kept = server
        .wait_for_log_from(from, RELOAD_DEADLINE, |l| l.contains("reload (SIGHUP)"))
        .unwrap();
    assert!(
        kept.contains("keeping the running configuration") && kept.contains("port"),
        "{kept}"
    );
    assert_eq!(generation(&server), 2);
    let still = get(server.port, "/live/test.flv", REQUEST_TIMEOUT).expect("GET");
    assert_eq!(still.head.status, 403, "the deny rule was lost: {}", still.text());

    // Lifting the rule admits players again; the access log turns on.
    std::fs::write(&config, "[http]\nstream_wait_s = 2\n[log]\naccess = true\n").unwrap();
    let from = server.log_len();
    common::signal(server.pid, libc::SIGHUP);
    server
        .wait_for_log_from(from, RELOAD_DEADLINE, |l| {
            l.contains("configuration generation 3 loaded")
        })
        .unwrap_or_else(|| panic!("no third reload; log:\n{}", server.log_tail(30)));
    let probe = common::ffprobe(
        "reload-probe",
        &server.http_url("live/test.flv"),
        Some(2.0),
        Duration::from_secs(20),
    );
    assert!(
        !common::packets_of(&probe, "video").is_empty(),
        "no video for a player after the rule was lifted"
    );
    server
        .wait_for_log_from(from, RELOAD_DEADLINE, |l| {
            l.contains(" access] ") && l.contains("\"GET /live/test.flv\" 200 ")
        })
        .unwrap_or_else(|| panic!("no access line after log.access was turned on"));
    let before = received(&flv);
    wait_growth(&flv, before, "after three reloads");
    player.kill();
}
