//! `GET /metrics`: every shard's numbers in the Prometheus text exposition
//! format 0.0.4, one series per shard (label `shard`, and `protocol` for
//! connections). Histograms are real Prometheus histograms (cumulative
//! `_bucket{le=..}` up to `+Inf`, `_sum`, `_count`) built from the
//! hdrhistograms at the fixed bounds below.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::{ProcessInfo, Protocol, Recorded, Refused, ShardStats};

/// The response's Content-Type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds of the latency histograms, in seconds.
pub const LATENCY_BOUNDS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Bucket bounds of the write-size histogram, in bytes.
pub const WRITE_BOUNDS_BYTES: [u64; 10] = [
    128, 512, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
];

/// Every metric family name this module writes (for the dashboard test).
pub const FAMILIES: &[&str] = &[
    "shardcast_build_info",
    "shardcast_start_time_seconds",
    "shardcast_shards",
    "shardcast_connections_open",
    "shardcast_connections_total",
    "shardcast_refused_total",
    "shardcast_received_bytes_total",
    "shardcast_sent_bytes_total",
    "shardcast_frames_ingested_total",
    "shardcast_frames_queued_total",
    "shardcast_frames_skipped_total",
    "shardcast_publisher_handoffs_total",
    "shardcast_replica_events_total",
    "shardcast_replica_events_dropped_total",
    "shardcast_cpu_seconds_total",
    "shardcast_streams_owned",
    "shardcast_streams_live",
    "shardcast_replicas",
    "shardcast_players",
    "shardcast_fanout_latency_seconds",
    "shardcast_event_loop_stall_seconds",
    "shardcast_write_size_bytes",
];

/// A family with one series per shard: name, type, help, and its value.
type PerShard = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardStats) -> u64,
);
/// A counter with a `direction` label: name, help, and (sent, received).
type Directed = (&'static str, &'static str, fn(&ShardStats) -> (u64, u64));

/// One series per shard and label value, `name{shard="k",key="label"} v`,
/// where `value(shard, i)` is the value of `labels[i]`.
fn labelled(
    o: &mut String,
    name: &str,
    key: &str,
    labels: &[&str],
    shards: &[ShardStats],
    value: fn(&ShardStats, usize) -> u64,
) {
    for s in shards {
        for (i, label) in labels.iter().enumerate() {
            let _ = writeln!(
                o,
                "{name}{{shard=\"{}\",{key}=\"{label}\"}} {}",
                s.shard,
                value(s, i)
            );
        }
    }
}

/// The text of `/metrics` for `shards` (one entry per shard).
pub fn render(info: &ProcessInfo, shards: &[ShardStats]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let o = &mut out;
    family(
        o,
        "shardcast_build_info",
        "gauge",
        "Always 1; labels name the running build.",
    );
    let _ = writeln!(o, "shardcast_build_info{{version=\"{}\"}} 1", info.version);
    family(
        o,
        "shardcast_start_time_seconds",
        "gauge",
        "When the process started, in seconds since the Unix epoch.",
    );
    let start = info
        .start_time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(o, "shardcast_start_time_seconds {start:.3}");
    family(
        o,
        "shardcast_shards",
        "gauge",
        "Shards (executors, one per core) running.",
    );
    let _ = writeln!(o, "shardcast_shards {}", shards.len());

    family(
        o,
        "shardcast_connections_open",
        "gauge",
        "Open connections by what they serve; other = API, pages and not yet classified.",
    );
    labelled(
        o,
        "shardcast_connections_open",
        "protocol",
        &Protocol::ALL.map(Protocol::label),
        shards,
        |s, i| s.conns_open[i],
    );
    family(
        o,
        "shardcast_connections_total",
        "counter",
        "Connections by what they served (an HTTP connection counts once per protocol it served).",
    );
    labelled(
        o,
        "shardcast_connections_total",
        "protocol",
        &Protocol::ALL.map(Protocol::label),
        shards,
        |s, i| s.conns_total[i],
    );

    family(
        o,
        "shardcast_refused_total",
        "counter",
        "Connections and requests refused, by reason (max_connections and max_connections_per_ip at accept; access, auth, admin and hook by rule; hook_inflight_max: hook requests not sent past hooks.inflight_max).",
    );
    labelled(
        o,
        "shardcast_refused_total",
        "reason",
        &Refused::ALL.map(Refused::label),
        shards,
        |s, i| s.refused[i],
    );

    let per_shard: [PerShard; 10] = [
        (
            "shardcast_received_bytes_total",
            "counter",
            "Bytes read from sockets.",
            |s| s.counters.bytes_in,
        ),
        (
            "shardcast_sent_bytes_total",
            "counter",
            "Bytes handed to the kernel for sockets.",
            |s| s.counters.bytes_out,
        ),
        (
            "shardcast_frames_ingested_total",
            "counter",
            "Frames ingested from publishers on their owner shard.",
            |s| s.counters.frames_in,
        ),
        (
            "shardcast_frames_queued_total",
            "counter",
            "Frames queued to players.",
            |s| s.counters.frames_out,
        ),
        (
            "shardcast_frames_skipped_total",
            "counter",
            "Frames slow players skipped (their queue was over player_queue_bytes_max).",
            |s| s.counters.frames_skipped,
        ),
        (
            "shardcast_replica_events_dropped_total",
            "counter",
            "Stream events not sent to a replica shard whose channel was full.",
            |s| s.counters.replica_events_dropped,
        ),
        (
            "shardcast_streams_owned",
            "gauge",
            "Streams the shard owns (publisher, GOP cache, HLS segmenter).",
            |s| s.gauges.streams_owned,
        ),
        (
            "shardcast_streams_live",
            "gauge",
            "Owned streams with a live publisher.",
            |s| s.gauges.streams_live,
        ),
        (
            "shardcast_replicas",
            "gauge",
            "Replicas the shard keeps of other shards' streams.",
            |s| s.gauges.replicas,
        ),
        (
            "shardcast_players",
            "gauge",
            "RTMP and HTTP-FLV players attached on the shard.",
            |s| s.gauges.players,
        ),
    ];
    for (name, kind, help, get) in per_shard {
        family(o, name, kind, help);
        for s in shards {
            let _ = writeln!(o, "{name}{{shard=\"{}\"}} {}", s.shard, get(s));
        }
    }
    let directed: [Directed; 2] = [
        (
            "shardcast_publisher_handoffs_total",
            "Publishers handed to the shard that owns their stream, by direction.",
            |s| (s.counters.handoffs_sent, s.counters.handoffs_received),
        ),
        (
            "shardcast_replica_events_total",
            "Stream events between an owner shard and its replicas, by direction.",
            |s| {
                (
                    s.counters.replica_events_sent,
                    s.counters.replica_events_received,
                )
            },
        ),
    ];
    for (name, help, get) in directed {
        family(o, name, "counter", help);
        for s in shards {
            let (sent, received) = get(s);
            for (direction, n) in [("sent", sent), ("received", received)] {
                let _ = writeln!(
                    o,
                    "{name}{{shard=\"{}\",direction=\"{direction}\"}} {n}",
                    s.shard
                );
            }
        }
    }
    family(
        o,
        "shardcast_cpu_seconds_total",
        "counter",
        "CPU time (user and system) of the shard's thread.",
    );
    for s in shards {
        let _ = writeln!(
            o,
            "shardcast_cpu_seconds_total{{shard=\"{}\"}} {:.6}",
            s.shard, s.cpu_seconds
        );
    }

    let latency_us = LATENCY_BOUNDS_S.map(|b| (b * 1e6).round() as u64);
    family(
        o,
        "shardcast_fanout_latency_seconds",
        "histogram",
        "From a frame's ingest on its owner to its bytes handed to the kernel for a player.",
    );
    for s in shards {
        histogram(
            o,
            "shardcast_fanout_latency_seconds",
            s.shard,
            &s.fanout_us,
            &latency_us,
            &LATENCY_BOUNDS_S.map(fmt_f64),
            1e6,
        );
    }
    family(
        o,
        "shardcast_event_loop_stall_seconds",
        "histogram",
        "How late the shard's 250 ms housekeeping timer fired.",
    );
    for s in shards {
        histogram(
            o,
            "shardcast_event_loop_stall_seconds",
            s.shard,
            &s.stall_us,
            &latency_us,
            &LATENCY_BOUNDS_S.map(fmt_f64),
            1e6,
        );
    }
    family(
        o,
        "shardcast_write_size_bytes",
        "histogram",
        "Bytes per write (one sendmsg) to a player's socket.",
    );
    for s in shards {
        histogram(
            o,
            "shardcast_write_size_bytes",
            s.shard,
            &s.write_bytes,
            &WRITE_BOUNDS_BYTES,
            &WRITE_BOUNDS_BYTES.map(|b| b.to_string()),
            1.0,
        );
    }
    out
}

fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// `le` values as Prometheus clients print them (`0.0001`, `1`, `2.5`).
fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

/// One histogram series: `bounds` in the histogram's unit, `labels` their
/// printed form, `per_unit` how many histogram units make one exposed unit
/// (1e6 µs in a second).
fn histogram(
    o: &mut String,
    name: &str,
    shard: usize,
    h: &Recorded,
    bounds: &[u64],
    labels: &[String],
    per_unit: f64,
) {
    for (count, le) in h.cumulative(bounds).iter().zip(labels) {
        let _ = writeln!(o, "{name}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {count}");
    }
    let _ = writeln!(
        o,
        "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {}",
        h.count()
    );
    let _ = writeln!(
        o,
        "{name}_sum{{shard=\"{shard}\"}} {}",
        h.sum as f64 / per_unit
    );
    let _ = writeln!(o, "{name}_count{{shard=\"{shard}\"}} {}", h.count());
}
