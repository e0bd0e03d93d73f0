//! HLS playlist rendering: every playlist request (and every answered
//! blocking reload) renders the window's playlist on the shard that
//! accepted it.
//!
//! Run with `cargo bench --bench hls`.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::hls::{Container, HlsConfig, HlsWindow, Segmenter};
use proto::ts::TsMuxer;

/// Segment `msn` is `{BASE}{msn}.ts`, as the server names the main
/// rendition of stream `stream`.
const BASE: &str = "stream/";
/// Wall clock of the first frame, ms since the Unix epoch.
const START_UNIX_MS: u64 = 1_767_225_600_000;
/// How far into its GOP the stream is: the open segment has two finished
/// parts and a third in progress.
const OPEN_SEGMENT_MS: u32 = 1_200;

/// A window that has seen enough of the synthetic stream to be full: its
/// `window_size` segments listed, the retired ones kept, and a segment in
/// progress. Built by the real segmenter and TS muxer, so part durations
/// fall on frame boundaries as in production.
fn full_window(config: HlsConfig) -> HlsWindow {
    let gops = config.window_size as u32 + 4;
    let end_ms = (gops - 1) * common::GOP_MS + OPEN_SEGMENT_MS;
    let mut segmenter = Segmenter::new(config, Box::new(TsMuxer::new(true, true)));
    let mut window = HlsWindow::new(config, Container::Ts);
    let headers = [common::avc_sequence_header(), common::aac_sequence_header()];
    let frames = common::gops(gops);
    let stream = headers
        .iter()
        .chain(frames.iter().take_while(|f| f.timestamp < end_ms));
    for frame in stream {
        for event in segmenter.push(frame, START_UNIX_MS + u64::from(frame.timestamp)) {
            window.apply(&event);
        }
    }
    window
}

fn playlist_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("hls/render");
    let cases = [
        ("ll_window6", 6, false),
        ("ll_window12", 12, false),
        ("ll_window12_skip", 12, true),
    ];
    for (name, window_size, skip) in cases {
        let window = full_window(HlsConfig {
            window_size,
            ..HlsConfig::default()
        });
        let playlist = window.render(BASE, skip);
        assert!(playlist.contains("#EXT-X-PART:"), "{playlist}");
        assert_eq!(skip, playlist.contains("#EXT-X-SKIP:"), "{playlist}");
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: playlist.len() as u64,
        });
        group.bench_function(name, |b| {
            b.iter(|| black_box(&window).render(black_box(BASE), skip))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = playlist_render
}
criterion_main!(benches);
