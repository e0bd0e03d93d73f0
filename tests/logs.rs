//! `[log]`: a log file (`log.file`, `--log-file`) that SIGUSR1 reopens by
//! name, as logrotate's postrotate does; `log.format = "json"`; the HTTP
//! access log (`log.access`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Proc};

/// Start-up of one shard, writing its `listening` line.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// A line reaching the file after the request or signal that causes it.
const LINE_DEADLINE: Duration = Duration::from_secs(10);

/// A running server whose log goes to a file.
struct Node {
    proc: Proc,
    port: u16,
    dir: tempfile::TempDir,
}

fn start(name: &str, toml: &str, args: &[&str]) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let toml = toml.replace("{dir}", dir.path().to_str().unwrap());
    let config = dir.path().join("shardcast.toml");
    std::fs::write(&config, toml).unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1", "--port", &port.to_string(), "--shards", "1"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    Node {
        proc: Proc::spawn(name, &mut cmd),
        port,
        dir,
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The first line of `path` that `pred` accepts, within `deadline`.
fn wait_line(path: &Path, deadline: Duration, pred: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + deadline;
    loop {
        if let Some(l) = lines(path).into_iter().find(|l| pred(l)) {
            return l;
        }
        assert!(
            Instant::now() < end,
            "no such line in {} within {deadline:?}; it holds:\n{}",
            path.display(),
            lines(path).join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// curl GET with `agent` as its User-Agent; the HTTP status.
fn get(port: u16, target: &str, agent: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", "-A", agent])
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
}

#[test]
fn a_json_log_file_with_access_lines_is_reopened_on_sigusr1() {
    let node = start(
        "logs-json",
        "[log]\nlevel = \"info\"\nfile = \"{dir}/shardcast.log\"\nformat = \"json\"\naccess = true\n",
        &[],
    );
    let dir = node.dir.path().to_path_buf();
    let log = dir.join("shardcast.log");
    wait_line(&log, START_DEADLINE, |l| l.contains("listening"));
    for l in lines(&log) {
        let v = json(&l);
        for key in ["ts", "level", "target", "msg"] {
            assert!(v[key].is_string(), "{key} missing: {l}");
        }
    }

    assert_eq!(get(node.port, "/api/v1/server?token=hunter2", "logs-test/1"), "200");
    let access = wait_line(&log, LINE_DEADLINE, |l| l.contains("logs-test/1"));
    let v = json(&access);
    assert_eq!(v["target"], "access", "{access}");
    let msg = v["msg"].as_str().unwrap();
    assert!(msg.starts_with("127.0.0.1:"), "{msg}");
    assert!(msg.contains("\"GET /api/v1/server?token=-\" 200 "), "{msg}");
    assert!(!access.contains("hunter2"), "a token reached the log: {access}");
    assert_eq!(get(node.port, "/nope", "logs-test/404"), "404");
    wait_line(&log, LINE_DEADLINE, |l| {
        l.contains("logs-test/404") && l.contains("/nope\\\" 404 ")
    });

    // logrotate's move, then its postrotate signal.
    let rotated: PathBuf = dir.join("shardcast.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    node.proc.signal(libc::SIGUSR1);
    wait_line(&log, LINE_DEADLINE, |l| l.contains("log reopened (SIGUSR1)"));
    assert_eq!(get(node.port, "/api/v1/server", "logs-test/2"), "200");
    wait_line(&log, LINE_DEADLINE, |l| l.contains("logs-test/2"));
    assert!(
        !lines(&rotated).iter().any(|l| l.contains("logs-test/2")),
        "a line after the reopen went to the rotated file"
    );
    assert!(lines(&rotated).iter().any(|l| l.contains("logs-test/1")));
    let stderr = std::fs::read_to_string(&node.proc.stderr_path).unwrap();
    assert!(stderr.is_empty(), "the log went to stderr too:\n{stderr}");
}

#[test]
fn log_file_flag_writes_text_and_no_access_lines_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("text.log");
    let node = start("logs-text", "", &["--log-file", log.to_str().unwrap()]);
    let listening = wait_line(&log, START_DEADLINE, |l| l.contains("listening"));
    assert!(listening.starts_with('[') && listening.contains(" INFO "), "{listening}");
    assert_eq!(get(node.port, "/api/v1/server", "logs-test/quiet"), "200");
    // The request's own line (a debug line) is filtered; an access line
    // would be info. Give it the time an access line takes.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !lines(&log).iter().any(|l| l.contains("logs-test/quiet")),
        "an access line without log.access"
    );
}

#[test]
fn a_log_file_that_cannot_be_opened_is_refused_by_name() {
    for args in [
        vec!["--check", "--log-file", "/nonexistent/dir/s.log"],
        vec!["--log-file", "/nonexistent/dir/s.log"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
        cmd.args(["--port", &free_port().to_string()])
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null());
        let mut p = Proc::spawn("logs-unopenable", &mut cmd);
        let status = p.wait_timeout(START_DEADLINE).expect("still running");
        assert_eq!(status.code(), Some(2), "{args:?}");
        let stderr = std::fs::read_to_string(&p.stderr_path).unwrap();
        assert!(
            stderr.contains("log.file: cannot open /nonexistent/dir/s.log"),
            "{args:?}: {stderr}"
        );
    }
}
