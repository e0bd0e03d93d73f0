//! Container muxing hot paths: FLV tags around shared payloads (HTTP-FLV
//! fan-out), and MPEG-TS and fragmented MP4 for HLS.
//!
//! Run with `cargo bench --bench media`.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::flv::frame_tag;
use proto::hls::{Fmp4Muxer, SegmentMuxer};
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

/// Top-level boxes of `data` as (type, size); panics on a size that does
/// not fit, so the bench measures only well-formed output.
fn top_level_boxes(data: &[u8]) -> Vec<([u8; 4], usize)> {
    let mut boxes = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "box at {at} of size {size}"
        );
        boxes.push((data[at + 4..at + 8].try_into().unwrap(), size));
        at += size;
    }
    boxes
}

/// The same GOP as `ts/mux` into CMAF fragments: one `moof` + `mdat` per
/// segment (the whole GOP), or per LL-HLS part of 500 ms (15 video
/// frames), the shape the segmenter asks for with parts on.
fn fmp4_mux(c: &mut Criterion) {
    let frames = common::gops(1);
    let mut muxer = Fmp4Muxer::new();
    let mut out = Vec::new();
    for header in [common::avc_sequence_header(), common::aac_sequence_header()] {
        assert!(
            !muxer.write_frame(&header, &mut out),
            "a header is no sample"
        );
    }
    assert!(
        muxer.take_init().is_some(),
        "both tracks make an init segment"
    );
    let mut group = c.benchmark_group("fmp4/mux");
    group.throughput(Throughput::ElementsAndBytes {
        elements: frames.len() as u64,
        bytes: common::payload_bytes(&frames),
    });
    for (name, video_frames_per_fragment) in [("segment", usize::MAX), ("parts_500ms", 15)] {
        let mut mux_gop = |out: &mut Vec<u8>| {
            out.clear();
            let mut video_in_fragment = 0;
            for frame in black_box(&frames) {
                if frame.is_video() && video_in_fragment == video_frames_per_fragment {
                    muxer.end_chunk(out);
                    video_in_fragment = 0;
                }
                muxer.learn(frame);
                assert!(muxer.write_frame(frame, out), "a coded frame is written");
                video_in_fragment += usize::from(frame.is_video());
            }
            muxer.end_chunk(out);
            out.len()
        };
        mux_gop(&mut out);
        let boxes = top_level_boxes(&out);
        let video_frames = frames.iter().filter(|f| f.is_video()).count();
        let fragments = video_frames.div_ceil(video_frames_per_fragment);
        assert_eq!(boxes.len(), 2 * fragments, "moof + mdat per fragment");
        assert!(boxes
            .chunks(2)
            .all(|b| &b[0].0 == b"moof" && &b[1].0 == b"mdat"));
        group.bench_function(format!("h264_aac_gop_2.5mbps_{name}"), |b| {
            b.iter(|| mux_gop(&mut out))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = flv_mux, ts_mux, fmp4_mux
}
criterion_main!(benches);
