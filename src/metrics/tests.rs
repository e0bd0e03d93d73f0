use std::rc::Rc;
use std::time::{Duration, Instant};

use super::prometheus::{self, LATENCY_BOUNDS_S};
use super::*;

/// A deterministic spread of latencies in µs (xorshift, with a long tail).
fn samples(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 100 {
                0 => 100_000 + x % 2_000_000,
                1..=9 => 1_000 + x % 50_000,
                _ => x % 1_000,
            }
        })
        .collect()
}

fn recorded(values: &[u64]) -> Recorded {
    let mut r = Recorded::new(LATENCY_US_MAX);
    for &v in values {
        r.record(v);
    }
    r
}

#[test]
fn merging_two_shards_gives_the_percentiles_of_all_samples() {
    let a = samples(1, 10_000);
    let b = samples(2, 3_000);
    let mut merged = recorded(&a);
    merged.merge(&recorded(&b));
    let all: Vec<u64> = a.iter().chain(&b).copied().collect();
    let one = recorded(&all);
    assert_eq!(merged.percentiles(), one.percentiles());
    assert_eq!(merged.count(), 13_000);
    assert_eq!(merged.sum, all.iter().sum::<u64>());
    for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(
            merged.hist.value_at_quantile(q),
            one.hist.value_at_quantile(q),
            "quantile {q}"
        );
    }
}

#[test]
fn totals_merge_shards_in_any_order() {
    let s = |shard: usize, lat: &[u64]| {
        let m = ShardMetrics::new();
        m.bytes_in(100 * (shard as u64 + 1));
        m.player_write(10);
        m.frame_skipped();
        let now = Instant::now();
        for &us in lat {
            m.delivered(now - Duration::from_micros(us), now);
        }
        m.snapshot(
            shard,
            Gauges {
                players: 2,
                ..Gauges::default()
            },
        )
    };
    let t = Totals::merge(vec![s(1, &[5, 6]), s(0, &[7])]);
    assert_eq!(t.shards.iter().map(|s| s.shard).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(t.all.counters.bytes_in, 300);
    assert_eq!(t.all.counters.bytes_out, 20);
    assert_eq!(t.all.counters.frames_skipped, 2);
    assert_eq!(t.all.gauges.players, 4);
    assert_eq!(t.all.fanout_us.count(), 3);
    assert_eq!(t.all.write_bytes.count(), 2);
}

#[test]
fn buckets_are_cumulative_and_exact_below_256() {
    let r = recorded(&[0, 100, 100, 101, 250, 1_000_000, LATENCY_US_MAX * 2]);
    assert_eq!(r.cumulative(&[99, 100, 250, 255]), [1, 3, 5, 5]);
    let us = LATENCY_BOUNDS_S.map(|b| (b * 1e6).round() as u64);
    let c = r.cumulative(&us);
    assert!(c.windows(2).all(|w| w[0] <= w[1]), "{c:?}");
    assert_eq!(*c.last().unwrap(), 6, "1 s is under 2.5 s; 120 s is not");
}

#[test]
fn connections_are_counted_once_by_protocol() {
    let m = Rc::new(ShardMetrics::new());
    let open = |m: &ShardMetrics| m.snapshot(0, Gauges::default()).conns_open;
    let total = |m: &ShardMetrics| m.snapshot(0, Gauges::default()).conns_total;
    let other = Protocol::Other.index();
    let play = Protocol::RtmpPlay.index();
    let hls = Protocol::Hls.index();

    let c = ConnCount::open(m.clone());
    assert_eq!(open(&m)[other], 1);
    c.classify(Protocol::RtmpPlay);
    c.classify(Protocol::RtmpPlay);
    assert_eq!(
        (open(&m)[other], open(&m)[play], total(&m)[play]),
        (0, 1, 1)
    );
    drop(c);
    assert_eq!(
        (open(&m)[play], total(&m)[play], total(&m)[other]),
        (0, 1, 0)
    );

    // Never classified: counted as other when it closes.
    drop(ConnCount::open(m.clone()));
    assert_eq!(total(&m)[other], 1);

    // A keep-alive HTTP connection: API request, then HLS.
    let c = ConnCount::open(m.clone());
    c.classify(Protocol::Other);
    c.classify(Protocol::Hls);
    assert_eq!((open(&m)[hls], total(&m)[hls], total(&m)[other]), (1, 1, 2));
    drop(c);

    // Handed to another shard: that shard counts it.
    let c = ConnCount::open(m.clone());
    c.moved();
    drop(c);
    assert_eq!(total(&m).iter().sum::<u64>(), 4);
    assert_eq!(open(&m).iter().sum::<u64>(), 0);
}

#[test]
fn bandwidth_is_bits_per_second_over_the_ring() {
    let m = ShardMetrics::new();
    let t0 = Instant::now();
    m.tick(t0, t0);
    assert_eq!(m.bandwidth_bps(), (0, 0));
    m.bytes_in(1000);
    m.bytes_out(500);
    m.tick(t0, t0 + Duration::from_secs(2));
    assert_eq!(m.bandwidth_bps(), (4000, 2000));
    for i in 0..BANDWIDTH_SAMPLES as u64 * 2 {
        m.tick(t0, t0 + Duration::from_secs(3 + i));
    }
    assert_eq!(m.bandwidth_bps(), (0, 0), "old bytes left the window");
    assert!(m.bandwidth.borrow().len() <= BANDWIDTH_SAMPLES);
}

#[test]
fn stall_is_how_late_the_tick_ran() {
    let m = ShardMetrics::new();
    let due = Instant::now();
    m.tick(due, due + Duration::from_micros(1500));
    m.tick(due, due);
    let p = m.stall_us.borrow().percentiles();
    assert_eq!((p.count, p.max / 100), (2, 15));
}

/// Every line of the exposition is a comment of a known family or a
/// sample of it; histograms end with `+Inf`, `_sum` and `_count`.
#[test]
fn exposition_is_well_formed() {
    let m = ShardMetrics::new();
    let now = Instant::now();
    m.delivered(now - Duration::from_millis(3), now);
    m.player_write(3000);
    let shards = vec![
        m.snapshot(0, Gauges::default()),
        ShardMetrics::new().snapshot(1, Gauges::default()),
    ];
    let text = prometheus::render(&ProcessInfo::current(), &shards);
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                prometheus::FAMILIES.contains(&name),
                "{name} not in FAMILIES"
            );
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.iter().any(|t| t == f))
            })
            .unwrap_or(name);
        assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert_eq!(typed.len(), prometheus::FAMILIES.len());
    assert!(text.contains(
        "shardcast_fanout_latency_seconds_bucket{shard=\"0\",le=\"0.0025\"} 0\n\
         shardcast_fanout_latency_seconds_bucket{shard=\"0\",le=\"0.005\"} 1\n"
    ));
    assert!(text.contains("shardcast_fanout_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 1\n"));
    assert!(text.contains("shardcast_fanout_latency_seconds_sum{shard=\"0\"} 0.003\n"));
    assert!(text.contains("shardcast_write_size_bytes_count{shard=\"0\"} 1\n"));
    assert!(text.contains("shardcast_connections_open{shard=\"1\",protocol=\"rtmp_play\"} 0\n"));
}

/// Prints what recording costs on the data path (run with `--ignored` in a
/// release build): a fan-out latency sample, and a write through the
/// thread-local as a player's queue does it.
#[test]
#[ignore = "a measurement, not a check"]
fn recording_cost() {
    const N: u32 = 1_000_000;
    let m = ShardMetrics::new();
    let t0 = Instant::now();
    let start = Instant::now();
    for i in 0..N {
        m.delivered(t0, t0 + Duration::from_micros(u64::from(i % 5000)));
    }
    let per_sample = start.elapsed() / N;
    let start = Instant::now();
    for i in 0..N {
        with(|m| m.player_write(u64::from(i % 65536)));
    }
    let per_write = start.elapsed() / N;
    let snapshot = Instant::now();
    let s = m.snapshot(0, Gauges::default());
    let snapshot = snapshot.elapsed();
    let render = Instant::now();
    let text = prometheus::render(&ProcessInfo::current(), &[s.clone(), s]);
    let render = render.elapsed();
    println!(
        "fan-out sample {per_sample:?}, player write {per_write:?}, snapshot {snapshot:?}, \
         render of 2 shards {render:?} ({} bytes)",
        text.len()
    );
}
