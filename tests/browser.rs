//! Browser conformance: headless Chromium opens the `/` page of the real
//! binary (`--shards 2`) while ffmpeg publishes 1280x720 30 fps H.264 + AAC,
//! and plays the stream with hls.js in low-latency mode and with mpegts.js
//! over HTTP-FLV.
//!
//! The browser is driven by `tests/browser/play.mjs` (playwright-core, with
//! Debian's `/usr/bin/chromium`; no browser download). It clicks the page's
//! play button, samples `window.shardcast.stats()` for 8 s and prints one
//! JSON object; this test checks it: both player libraries loaded, the video
//! is 1280 wide, and currentTime advanced by at least 3 s. hls.js's live
//! latency is reported, not asserted (the aim is under 2 s).
//!
//! The server finds the player libraries in `node_modules` relative to its
//! working directory, which is the package root (cargo runs integration
//! tests there). `scripts/test.sh` installs Chromium and runs `npm ci`; when
//! either is missing these tests fail and say how to install them.
//!
//! `/dashboard` is checked the same way by `tests/browser/dashboard.mjs`,
//! with two ffmpeg players reading HTTP-FLV: after a few of the page's
//! refreshes it must show bandwidth out above zero and 2 players for the
//! stream, and uPlot must have drawn its charts.
//!
//! Artefacts: the server log, the script's stdout/stderr and a copy of its
//! JSON under `target/tmp/logs/<test>/`; a screenshot of the page at
//! `target/tmp/browser-<proto>.png` (`browser-dashboard.png`) and the JSON
//! beside it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// How long one play.mjs run may take before it is ended by PID. The script
/// itself gives up after 75 s; a normal run takes about 12 s.
const NODE_DEADLINE: Duration = Duration::from_secs(100);

/// Seconds currentTime must advance over the sampling (play.mjs checks it
/// too; this is the Rust side's own assertion on the JSON).
const ADVANCE_MIN_S: f64 = 3.0;

/// The published width (see [`ffmpeg_publish`]).
const WIDTH: u64 = 1280;

const INSTALL_HINT: &str = "scripts/test.sh installs them on a fresh machine; by hand: \
     `sudo apt-get install chromium` and `npm ci` in the shardcast directory";

fn package_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails (never skips) when Chromium, node or the npm packages are missing.
fn require_browser_env() {
    let chromium = chromium_path();
    assert!(
        chromium.is_file(),
        "Chromium is not installed at {} (the browser tests need Debian's `chromium` package): \
         {INSTALL_HINT}",
        chromium.display()
    );
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(node, Ok(st) if st.success()),
        "`node` is not on PATH (the browser tests run tests/browser/play.mjs with it): {node:?}"
    );
    // The server resolves its default assets_dir, "node_modules", against its
    // working directory, which it inherits from this test.
    let cwd = std::env::current_dir().expect("current dir");
    for file in [
        "node_modules/hls.js/dist/hls.min.js",
        "node_modules/mpegts.js/dist/mpegts.js",
        "node_modules/uplot/dist/uPlot.iife.min.js",
        "node_modules/playwright-core/package.json",
    ] {
        assert!(
            cwd.join(file).is_file(),
            "{file} is missing under {} (the server serves the player libraries from \
             node_modules in its working directory): {INSTALL_HINT}",
            cwd.display()
        );
    }
}

/// What play.mjs printed, parsed.
struct Played {
    json: serde_json::Value,
}

impl Played {
    fn f64(&self, key: &str) -> Option<f64> {
        self.json.get(key).and_then(|v| v.as_f64())
    }

    fn u64(&self, key: &str) -> Option<u64> {
        self.json.get(key).and_then(|v| v.as_u64())
    }

    fn latency(&self, which: &str) -> Option<f64> {
        self.json
            .get("hls_latency_s")
            .and_then(|l| l.get(which))
            .and_then(|v| v.as_f64())
    }
}

/// Runs `tests/browser/{script}` with node and `args` (plus a screenshot
/// path, `target/tmp/{artefact}.png`), ending it by PID past
/// [`NODE_DEADLINE`]; returns its exit status and the JSON it printed last
/// (also kept as `target/tmp/{artefact}.json` and in the artefact dir).
fn run_node(
    script: &str,
    args: &[&str],
    artefact: &str,
) -> (std::process::ExitStatus, serde_json::Value, Proc) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let screenshot = tmp.join(format!("{artefact}.png"));
    let stdout_path = artefact_dir().join(format!("{script}.stdout"));
    let stdout = std::fs::File::create(&stdout_path).expect("create node stdout");
    let mut node = Proc::spawn(
        script,
        Command::new("node")
            .arg(package_root().join("tests/browser").join(script))
            .args(args)
            .arg(&screenshot)
            .current_dir(package_root())
            .env("CHROMIUM", chromium_path())
            .stdout(Stdio::from(stdout)),
    );
    let status = match node.wait_timeout(NODE_DEADLINE) {
        Some(st) => st,
        None => {
            // SIGTERM lets playwright close Chromium before node exits.
            node.signal(libc::SIGTERM);
            if node.wait_timeout(Duration::from_secs(5)).is_none() {
                node.kill();
            }
            panic!(
                "{script} did not finish within {NODE_DEADLINE:?}; ended it by PID\n{}",
                node.stderr_tail(40)
            );
        }
    };
    let out = std::fs::read_to_string(&stdout_path).expect("read node stdout");
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let json: serde_json::Value = match line.map(serde_json::from_str) {
        Some(Ok(v)) => v,
        other => panic!(
            "{script} printed no JSON result (exit {status:?}, parse: {other:?}); stdout:\n{out}\n{}",
            node.stderr_tail(40)
        ),
    };
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    let _ = std::fs::write(artefact_dir().join(format!("{script}.json")), &pretty);
    let _ = std::fs::write(tmp.join(format!("{artefact}.json")), &pretty);
    (status, json, node)
}

/// Starts a server and a publisher of `live/test`, then plays `path` with
/// `proto` ("hls" or "flv") in Chromium through the `/` page. Panics with
/// play.mjs's reasons if it reports a failure.
fn play_in_chromium(proto: &str, path: &str) -> Played {
    play_in_chromium_over(proto, path, None)
}

/// As [`play_in_chromium`]; with `tls` (a certificate and its key), the
/// server serves TLS too and the page is loaded over `https://`.
fn play_in_chromium_over(proto: &str, path: &str, tls: Option<(&Path, &Path)>) -> Played {
    require_browser_env();
    let mut builder = Server::builder().shards(2);
    if let Some((cert, key)) = tls {
        builder = builder.config(&format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    let server = builder.start();
    let _publisher = publish_and_wait(&server, "ffmpeg-publish");

    let scheme = if tls.is_some() { "https" } else { "http" };
    let page = format!("{scheme}://127.0.0.1:{}/", server.port);
    let (status, json, node) = run_node(
        "play.mjs",
        &[page.as_str(), proto, path],
        &format!("browser-{proto}"),
    );
    let failures = json.get("failures").cloned().unwrap_or_default();
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    assert!(
        status.success() && json.get("ok") == Some(&serde_json::Value::Bool(true)),
        "play.mjs failed (exit {status:?}): {failures}\nresult: {pretty}\n{}",
        node.stderr_tail(40)
    );
    Played { json }
}

/// The checks both protocols share, on play.mjs's JSON.
fn assert_played(p: &Played, proto: &str) {
    let libs = &p.json["libsLoaded"];
    assert_eq!(
        (libs["hls"].as_bool(), libs["mpegts"].as_bool()),
        (Some(true), Some(true)),
        "the page did not load both player libraries: {libs}"
    );
    assert_eq!(
        p.json["kind"].as_str(),
        Some(proto),
        "the page plays the wrong kind"
    );
    assert_eq!(
        p.u64("video_width"),
        Some(WIDTH),
        "videoWidth in Chromium ({proto})"
    );
    let advanced = p.f64("advanced_s").unwrap_or(0.0);
    assert!(
        advanced >= ADVANCE_MIN_S,
        "currentTime advanced {advanced} s over {:?} s of sampling ({proto}); want >= {ADVANCE_MIN_S}",
        p.f64("wall_s")
    );
}

#[test]
fn hls_js_plays_ll_hls_in_chromium() {
    let p = play_in_chromium("hls", "/live/test.m3u8");
    assert_played(&p, "hls");
    let (median, last) = (p.latency("median"), p.latency("last"));
    assert!(
        median.is_some_and(f64::is_finite) && last.is_some_and(f64::is_finite),
        "hls.js reported no latency: {}",
        p.json["hls_latency_s"]
    );
    // A figure for the note, not a timed assertion (aim: < 2 s).
    println!(
        "hls.js latency (LL-HLS, 0.5 s parts, 2 s GOP): median {:.3} s, last {:.3} s over {} samples; \
         first frame {} ms after play; currentTime advanced {} s in {} s",
        median.unwrap_or(f64::NAN),
        last.unwrap_or(f64::NAN),
        p.json["hls_latency_s"]["n"],
        p.json["first_frame_ms"],
        p.json["advanced_s"],
        p.json["wall_s"],
    );
}

#[test]
fn hls_js_plays_ll_hls_from_an_https_page_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::test_ca::TestCa::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("srv", &["localhost"]);
    let p = play_in_chromium_over("hls", "/live/test.m3u8", Some((&cert, &key)));
    assert_played(&p, "hls");
    assert!(
        p.json["page"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "the page was not loaded over HTTPS: {}",
        p.json["page"]
    );
    println!(
        "hls.js over HTTPS (LL-HLS): median latency {:.3} s; first frame {} ms after play",
        p.latency("median").unwrap_or(f64::NAN),
        p.json["first_frame_ms"],
    );
}

#[test]
fn mpegts_js_plays_http_flv_in_chromium() {
    let p = play_in_chromium("flv", "/live/test.flv");
    assert_played(&p, "flv");
    println!(
        "mpegts.js (HTTP-FLV): first frame {} ms after play; buffered ahead median {} s; \
         currentTime advanced {} s in {} s",
        p.json["first_frame_ms"],
        p.json["buffered_ahead_median_s"],
        p.json["advanced_s"],
        p.json["wall_s"],
    );
}

/// An ffmpeg player reading HTTP-FLV and discarding it, until killed by PID
/// (its guard's drop).
fn flv_player(name: &str, url: &str) -> Proc {
    Proc::spawn(
        name,
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
            .args(["-rw_timeout", "10000000", "-i", url])
            .args(["-map", "0", "-c", "copy", "-f", "null", "-"])
            .stdout(Stdio::null()),
    )
}

/// How many players the dashboard test starts.
const DASHBOARD_PLAYERS: u64 = 2;

#[test]
fn dashboard_shows_bandwidth_and_players_in_chromium() {
    require_browser_env();
    let server = Server::builder().shards(2).start();
    let _publisher = publish_and_wait_opts(&server, "ffmpeg-publish", &PublishOpts::small());
    let url = server.http_url("live/test.flv");
    let mut players: Vec<Proc> = (0..DASHBOARD_PLAYERS)
        .map(|i| flv_player(&format!("ffmpeg-play-{i}"), &url))
        .collect();

    let page = format!("http://127.0.0.1:{}/dashboard", server.port);
    let stream = format!("{DEFAULT_VHOST}/live/test");
    let want = DASHBOARD_PLAYERS.to_string();
    let (status, json, node) = run_node(
        "dashboard.mjs",
        &[page.as_str(), stream.as_str(), want.as_str()],
        "browser-dashboard",
    );
    for p in &mut players {
        assert!(
            p.is_running(),
            "player {} exited early\n{}",
            p.name,
            p.stderr_tail(20)
        );
        p.kill();
    }
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    let ctx = format!(
        "dashboard.mjs exit {status:?}; result: {pretty}\n{}",
        node.stderr_tail(20)
    );
    assert_eq!(
        json["lib_loaded"].as_bool(),
        Some(true),
        "uPlot did not load: {ctx}"
    );
    assert!(
        json["refreshes"].as_u64().unwrap_or(0) >= 3,
        "the page refreshed fewer than 3 times: {ctx}"
    );
    assert!(
        json["out_bps"].as_f64().unwrap_or(0.0) > 0.0,
        "the page shows no bandwidth out: {ctx}"
    );
    assert_eq!(
        json["players"].as_u64(),
        Some(DASHBOARD_PLAYERS),
        "players shown for {stream}: {ctx}"
    );
    assert_eq!(json["shards"].as_u64(), Some(2), "shard rows: {ctx}");
    // Four charts (bandwidth, connections, players, latency), each with
    // its canvas.
    assert_eq!(
        json["charts"].as_u64(),
        Some(4),
        "uPlot charts drawn: {ctx}"
    );
    assert!(
        json["chart_canvases"].as_u64().unwrap_or(0) >= 4,
        "chart canvases: {ctx}"
    );
    assert!(status.success(), "dashboard.mjs failed: {ctx}");
    println!(
        "dashboard: out {} bit/s, {} players, after {} refreshes ({} ms)",
        json["out_bps"], json["players"], json["refreshes"], json["waited_ms"]
    );
}
