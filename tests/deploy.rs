//! What an operator deploys with: `shardcast --check --config FILE` on
//! every example configuration of the repository, and on broken ones.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{artefact_dir, Proc};

/// `--check` reads files and binds nothing: this is ample.
const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// Runs `shardcast --check` with `args`: its exit code, stdout and stderr.
fn check(name: &str, args: &[&str]) -> (i32, String, String) {
    let out_path = artefact_dir().join(format!("{name}.stdout"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast"));
    cmd.arg("--check")
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::from(File::create(&out_path).unwrap()));
    let mut p = Proc::spawn(name, &mut cmd);
    let status = p.wait_timeout(CHECK_DEADLINE).unwrap_or_else(|| {
        panic!("shardcast --check {args:?} still running after {CHECK_DEADLINE:?}")
    });
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (
        status.code().expect("exited, not killed"),
        read(&out_path),
        read(&p.stderr_path),
    )
}

/// Every `.toml` of the repository an operator may start from.
fn example_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = vec![root.join("shardcast.toml")];
    let mut dirs = vec![root.join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_configuration_is_valid() {
    let configs = example_configs();
    assert!(configs.len() >= 4, "examples found: {configs:?}");
    for (i, path) in configs.iter().enumerate() {
        let shown = path.display().to_string();
        let (code, out, err) = check(&format!("check-{i}"), &["--config", &shown]);
        assert_eq!(code, 0, "--check --config {shown}: {err}");
        assert!(
            out.contains(&format!("config {shown}: valid")),
            "{shown}: {out}"
        );
        println!("{}", out.trim());
    }
}

#[test]
fn a_broken_configuration_is_refused_with_its_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[hls]\nsegment_duration_ms = 5\n",
            "hls.segment_duration_ms",
        ),
        ("[hls]\nsegmnt = 5\n", "unknown field `segmnt`"),
        ("port = \"eighty\"\n", "port"),
        (
            "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
            "/nonexistent/cert.pem",
        ),
    ];
    for (i, (text, named)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let shown = path.display().to_string();
        let (code, out, err) = check(&format!("bad-{i}"), &["--config", &shown]);
        assert_eq!(code, 2, "--check of {text:?} exited {code}: {out}{err}");
        assert!(
            err.contains(named),
            "--check of {text:?} does not name {named:?}: {err}"
        );
        assert!(!out.contains("valid"), "{text:?}: {out}");
        println!("{}", err.trim());
    }
}

/// deploy/systemd/shardcast.service: what the issue asks of it is there,
/// and `systemd-analyze verify` (where this machine has it) finds nothing
/// to say, not even an unknown key, which it only warns about. The copy
/// verified points its commands at the binary under test, since verify
/// requires them to exist.
#[test]
fn the_systemd_unit_verifies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/systemd/shardcast.service")).unwrap();
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for wanted in [
        "User=shardcast",
        "LimitNOFILE=1048576",
        "LimitMEMLOCK=infinity",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(directives.contains(&wanted), "the unit lacks {wanted}");
    }
    // A system call filter could refuse io_uring_setup: every shard would stop.
    assert!(
        !directives
            .iter()
            .any(|d| d.starts_with("SystemCallFilter=")),
        "the unit filters system calls"
    );
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("systemd-analyze").is_file())
    });
    if !on_path {
        println!("no systemd-analyze here: only the directives were checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shardcast.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/shardcast", env!("CARGO_BIN_EXE_shardcast")),
    )
    .unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").arg(&path).stdout(Stdio::null());
    let mut p = Proc::spawn("systemd-analyze", &mut cmd);
    let status = p
        .wait_timeout(CHECK_DEADLINE)
        .unwrap_or_else(|| panic!("systemd-analyze verify still running after {CHECK_DEADLINE:?}"));
    let said = std::fs::read_to_string(&p.stderr_path).unwrap_or_default();
    assert!(status.success(), "systemd-analyze verify: {status}: {said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify says: {said}"
    );
}

/// Many machines and containers give a process 64 KiB of locked memory,
/// below the 512 KiB glommio requires: the server raises its soft limit to
/// the hard one and starts (it exited at once before, with
/// `MemLockLimit(65536/524288)`).
#[test]
fn the_server_starts_under_a_64_kib_memlock_soft_limit() {
    let port = common::free_port();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "ulimit -S -l 64 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_shardcast"))
        .args([
            "--listen",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--shards",
            "2",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null());
    let mut server = Proc::spawn("memlock-64k", &mut cmd);
    let answered = common::wait_for(CHECK_DEADLINE, || {
        let status = server.wait_timeout(Duration::ZERO);
        assert!(
            status.is_none(),
            "the server exited ({status:?}): {}",
            std::fs::read_to_string(&server.stderr_path).unwrap_or_default()
        );
        common::http_client::get(port, "/api/v1/server", Duration::from_secs(2))
            .ok()
            .filter(|r| r.head.status == 200)
    });
    let log = std::fs::read_to_string(&server.stderr_path).unwrap_or_default();
    assert!(
        answered.is_some(),
        "no answer on {port} within {CHECK_DEADLINE:?}: {log}"
    );
    assert!(log.contains("RLIMIT_MEMLOCK raised from 65536"), "{log}");
    server.kill();
}
