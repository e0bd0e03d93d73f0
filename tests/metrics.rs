//! Integration tests of the metrics routes: the real `shardcast` binary
//! (`--shards 2`) with a real ffmpeg publisher and ffmpeg players (RTMP and
//! HTTP-FLV). `/metrics` must pass `promtool check metrics` (Debian's
//! `prometheus` package) and agree with `/api/v1/stats`; the Grafana
//! dashboard in `deploy/grafana/` may only query metrics `/metrics` exposes.
//!
//! Every wait has a deadline; every process is ended by its PID when its
//! guard drops. Artefacts go to `target/tmp/logs/<test>/`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client;
use common::*;
use serde_json::Value;

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the counts may take to show what the test set up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

fn get(server: &Server, target: &str) -> http_client::Response {
    let r = http_client::get(server.port, target, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("GET {target}: {e}\n{}", server.log_tail(30)));
    assert_eq!(r.head.status, 200, "GET {target}: {}", r.head.raw);
    r
}

fn get_json(server: &Server, target: &str) -> Value {
    let r = get(server, target);
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("GET {target}: not JSON ({e}): {}", r.text()))
}

/// One sample line of the exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of a text exposition (comments skipped). Label
/// values here never hold commas, quotes or braces.
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("value of {l}")),
            }
        })
        .collect()
}

/// Sum over shards of `name`, for samples whose labels include `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Starts an endless ffmpeg player of `url` that decodes nothing (`-c copy`
/// to the null muxer).
fn ffmpeg_player(name: &str, url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning"])
        .args(["-i", url, "-c", "copy", "-f", "null", "-"])
        .stdout(Stdio::null());
    Proc::spawn(name, &mut cmd)
}

/// Runs `promtool check metrics` on `text`; returns its output on failure.
fn promtool_check(text: &str) -> Result<(), String> {
    let path = artefact_dir().join("metrics.txt");
    std::fs::write(&path, text).expect("write metrics.txt");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("spawn promtool: {e}; install Debian's `prometheus` (see scripts/test.sh)")
        });
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for promtool") {
            break st;
        }
        if Instant::now() > deadline {
            signal(pid, libc::SIGKILL);
            let _ = child.wait();
            return Err("promtool did not finish within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed ({status}) on {}:\n{said}",
            path.display()
        ))
    }
}

/// One publisher, one RTMP and one HTTP-FLV player: `/api/v1/stats` counts
/// them by protocol, `/metrics` passes promtool and says the same, bytes
/// out grow, and every histogram has samples once media flows.
#[test]
fn metrics_pass_promtool_and_agree_with_the_api() {
    let server = Server::start();
    let _publisher = publish_and_wait_opts(&server, "publisher", &PublishOpts::small());
    let _rtmp = ffmpeg_player("player-rtmp", &server.url("live/test"));
    let mut flv = ffmpeg_player("player-flv", &server.http_url("live/test.flv"));

    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (stats, shards) = loop {
        let stats = get_json(&server, "/api/v1/stats");
        let shards = get_json(&server, "/api/v1/shards");
        let c = &stats["connections"];
        let settled = c["rtmp_publish"] == 1
            && c["rtmp_play"] == 1
            && c["http_flv"] == 1
            && stats["players"] == 2
            && stats["bandwidth"]["out_bps"].as_u64().unwrap_or(0) > 0
            && shards["all"]["fanout_latency_us"]["count"]
                .as_u64()
                .unwrap_or(0)
                > 0;
        if settled {
            break (stats, shards);
        }
        assert!(
            Instant::now() < deadline,
            "counts did not settle within {SETTLE_TIMEOUT:?}: {stats}\n{shards}\n{}",
            server.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("stats: {stats}");
    assert_eq!(stats["shards"], 2, "{stats}");
    assert_eq!(stats["streams_live"], 1, "{stats}");
    assert_eq!(
        shards["shards"].as_array().map(Vec::len),
        Some(2),
        "{shards}"
    );
    let all = &shards["all"];
    for h in [
        "fanout_latency_us",
        "event_loop_stall_us",
        "write_size_bytes",
    ] {
        let p = &all[h];
        assert!(p["count"].as_u64().unwrap_or(0) > 0, "{h}: {p}");
        let (p50, p99, max) = (&p["p50"], &p["p99"], &p["max"]);
        assert!(
            p50.as_u64() <= p99.as_u64() && p99.as_u64() <= max.as_u64(),
            "{h}: {p}"
        );
        println!("{h}: {p}");
    }
    assert!(
        stats["totals"]["frames_in"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );

    let r = get(&server, "/metrics");
    assert_eq!(
        r.head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8"),
        "{}",
        r.head.raw
    );
    let text = r.text();
    promtool_check(&text).unwrap_or_else(|e| panic!("{e}"));
    let m = parse_exposition(&text);
    let stats = get_json(&server, "/api/v1/stats");

    // No connection but our own requests (protocol other) came or went
    // between the two reads, so every other count is the same.
    for p in ["rtmp_publish", "rtmp_play", "http_flv", "hls"] {
        let open = sum(&m, "shardcast_connections_open", &[("protocol", p)]);
        let total = sum(&m, "shardcast_connections_total", &[("protocol", p)]);
        assert_eq!(open, stats["connections"][p].as_f64().unwrap(), "open {p}");
        assert_eq!(
            total,
            stats["connections_total"][p].as_f64().unwrap(),
            "total {p}"
        );
    }
    assert_eq!(sum(&m, "shardcast_players", &[]), 2.0);
    assert_eq!(sum(&m, "shardcast_streams_live", &[]), 1.0);
    assert_eq!(sum(&m, "shardcast_shards", &[]), 2.0);
    // Counters only grow: the API, read later, has at least as much.
    for (metric, api) in [
        ("shardcast_sent_bytes_total", "bytes_out"),
        ("shardcast_received_bytes_total", "bytes_in"),
        ("shardcast_frames_ingested_total", "frames_in"),
        ("shardcast_frames_queued_total", "frames_out"),
    ] {
        let exposed = sum(&m, metric, &[]);
        let later = stats["totals"][api].as_f64().unwrap();
        assert!(
            exposed > 0.0 && exposed <= later,
            "{metric} {exposed} vs API {api} {later}"
        );
    }
    for h in [
        "shardcast_fanout_latency_seconds",
        "shardcast_event_loop_stall_seconds",
        "shardcast_write_size_bytes",
    ] {
        let count = sum(&m, &format!("{h}_count"), &[]);
        let inf = sum(&m, &format!("{h}_bucket"), &[("le", "+Inf")]);
        assert!(
            count > 0.0 && count == inf,
            "{h}: count {count}, +Inf {inf}"
        );
    }
    let sent = sum(&m, "shardcast_sent_bytes_total", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let again = parse_exposition(&get(&server, "/metrics").text());
    let sent_again = sum(&again, "shardcast_sent_bytes_total", &[]);
    assert!(
        sent_again > sent,
        "bytes out did not grow: {sent} then {sent_again}"
    );
    if let Some(line) = server
        .find_logs(|l| l.contains("stats route=Metrics"))
        .last()
    {
        println!("{line}");
    }

    // An HLS request counts as an HLS connection.
    let playlist = get(&server, "/live/test.m3u8");
    assert!(
        playlist.text().starts_with("#EXTM3U"),
        "{}",
        playlist.text()
    );
    let stats = get_json(&server, "/api/v1/stats");
    assert!(
        stats["connections_total"]["hls"].as_u64() >= Some(1),
        "{stats}"
    );

    // The HTTP-FLV player leaves: its count drops, the others stay.
    flv.kill();
    let left = Instant::now();
    loop {
        let stats = get_json(&server, "/api/v1/stats");
        let c = &stats["connections"];
        if c["http_flv"] == 0 && stats["players"] == 1 {
            assert_eq!(
                (&c["rtmp_play"], &c["rtmp_publish"]),
                (&1.into(), &1.into())
            );
            println!("player gone from the counts after {:?}", left.elapsed());
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(5),
            "the killed HTTP-FLV player is still counted: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every `shardcast_*` name in the Grafana dashboard's queries is a series
/// that a running server's `/metrics` exposes.
#[test]
fn dashboard_queries_only_exposed_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/shardcast.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let dash: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 6, "too few queries in {path}: {exprs:?}");

    let server = Server::start();
    let exposed: BTreeSet<String> = parse_exposition(&get(&server, "/metrics").text())
        .into_iter()
        .map(|s| s.name)
        .collect();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "query names no shardcast metric: {expr}");
        for name in names {
            assert!(
                exposed.contains(&name),
                "dashboard query uses {name}, which /metrics does not expose: {expr}"
            );
        }
    }
}

/// Every `"expr"` string in a Grafana dashboard.
fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// The `shardcast_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("shardcast_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}
