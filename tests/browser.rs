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
//! Artefacts: the server log, play.mjs's stdout/stderr and a copy of its
//! JSON under `target/tmp/logs/<test>/`; a screenshot of the page at
//! `target/tmp/browser-<proto>.png` and the JSON at
//! `target/tmp/browser-<proto>.json`.

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

/// Starts a server and a publisher of `live/test`, then plays `path` with
/// `proto` ("hls" or "flv") in Chromium through the `/` page. Panics with
/// play.mjs's reasons if it reports a failure.
fn play_in_chromium(proto: &str, path: &str) -> Played {
    require_browser_env();
    let server = Server::builder().shards(2).start();
    let _publisher = publish_and_wait(&server, "ffmpeg-publish");

    let page = format!("http://127.0.0.1:{}/", server.port);
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{proto}.png"));
    let stdout_path = artefact_dir().join("play.stdout");
    let stdout = std::fs::File::create(&stdout_path).expect("create play.stdout");
    let mut node = Proc::spawn(
        "play.mjs",
        Command::new("node")
            .arg(package_root().join("tests/browser/play.mjs"))
            .args([page.as_str(), proto, path])
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
                "play.mjs did not finish within {NODE_DEADLINE:?}; ended it by PID\n{}",
                node.stderr_tail(40)
            );
        }
    };

    let out = std::fs::read_to_string(&stdout_path).expect("read play.stdout");
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{'));
    let json: serde_json::Value = match line.map(serde_json::from_str) {
        Some(Ok(v)) => v,
        other => panic!(
            "play.mjs printed no JSON result (exit {status:?}, parse: {other:?}); stdout:\n{out}\n{}",
            node.stderr_tail(40)
        ),
    };
    let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
    let _ = std::fs::write(artefact_dir().join("play.json"), &pretty);
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{proto}.json")),
        &pretty,
    );
    let failures = json.get("failures").cloned().unwrap_or_default();
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
