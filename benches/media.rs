//! Container muxing hot paths: FLV tags around shared payloads (HTTP-FLV
//! fan-out) and MPEG-TS for HLS.
//!
//! Run with `cargo bench --bench media`.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::flv::frame_tag;
use proto::media::Frame;
use proto::ts::{check_packets, TsMuxer};

fn flv_mux(c: &mut Criterion) {
    let frames = common::gops(1);
    let mut group = c.benchmark_group("flv/mux");
    for (name, kind) in [
        ("audio", Frame::is_audio as fn(&Frame) -> bool),
        ("video", Frame::is_video),
    ] {
        let selected: Vec<Frame> = frames.iter().filter(|f| kind(f)).cloned().collect();
        group.throughput(Throughput::ElementsAndBytes {
            elements: selected.len() as u64,
            bytes: common::payload_bytes(&selected),
        });
        // Header and trailer are built per frame; the payload is shared.
        let mut parts: Vec<Bytes> = Vec::with_capacity(3 * selected.len());
        group.bench_function(format!("{name}_tags_gop"), |b| {
            b.iter(|| {
                parts.clear();
                for frame in black_box(&selected) {
                    frame_tag(frame, &mut parts);
                }
                parts.len()
            })
        });
    }
    group.finish();
}

fn ts_mux(c: &mut Criterion) {
    let frames = common::gops(1);
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    for header in [common::avc_sequence_header(), common::aac_sequence_header()] {
        muxer
            .write_frame(&header, &mut out)
            .expect("sequence header");
    }
    out.clear();
    // One segment's worth: PSI, then every frame of the GOP as one PES
    // each, into a buffer whose capacity is kept between iterations.
    let mut mux_gop = |out: &mut Vec<u8>| {
        out.clear();
        muxer.force_pcr();
        muxer.write_psi(out);
        for frame in black_box(&frames) {
            let written = muxer.write_frame(frame, out).expect("muxable frame");
            assert!(written, "a coded frame is written");
        }
        out.len()
    };
    mux_gop(&mut out);
    let summary = check_packets(&out).expect("valid TS");
    assert_eq!(summary.pes.len(), frames.len());
    let mut group = c.benchmark_group("ts/mux");
    group.throughput(Throughput::ElementsAndBytes {
        elements: frames.len() as u64,
        bytes: common::payload_bytes(&frames),
    });
    group.bench_function("h264_aac_gop_2.5mbps", |b| b.iter(|| mux_gop(&mut out)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = flv_mux, ts_mux
}
criterion_main!(benches);
