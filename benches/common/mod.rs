//! What the micro-benchmarks share: a short Criterion configuration and a
//! synthetic live stream, built once outside the timed loops.
//!
//! The stream is what a typical OBS publisher sends: H.264 at 30 fps with a
//! 2 s GOP and AAC-LC at 44.1 kHz, 2.5 Mbit/s together (2.372 Mbit/s video,
//! 128 kbit/s audio). A keyframe is six times an inter frame; sizes vary by
//! up to ±20% and the bytes are pseudo-random, from a fixed seed, so every
//! run measures the same input.

// Each bench file uses part of this module.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use proto::media::Frame;

/// Short runs, so that `cargo bench` finishes in a few minutes on 2 cores.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

pub const VIDEO_FPS: u32 = 30;
pub const GOP_MS: u32 = 2_000;
const VIDEO_BITS_PER_S: u64 = 2_372_000;
const AUDIO_BITS_PER_S: u64 = 128_000;
/// AAC frames hold 1024 samples.
const AUDIO_SAMPLE_RATE: u64 = 44_100;
/// A keyframe is this many times the mean inter frame.
const KEYFRAME_RATIO: u64 = 6;
/// Two B-frames of reordering delay.
const COMPOSITION_OFFSET_MS: i32 = 67;

/// xorshift64: deterministic filler and size jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `mean` ± 20%.
    fn jitter(&mut self, mean: u64) -> usize {
        let spread = mean * 2 / 5 + 1;
        (mean - mean / 5 + self.next() % spread) as usize
    }

    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        out.extend((0..len).map(|_| self.next() as u8));
    }
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1) with one SPS
/// and one PPS, High profile level 3.1, as an FLV video body.
pub fn avc_sequence_header() -> Frame {
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    let mut body = vec![0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1];
    body.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    body.extend_from_slice(SPS);
    body.push(0x01);
    body.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    body.extend_from_slice(PPS);
    Frame::parse_video(0, Bytes::from(body)).expect("AVC sequence header")
}

/// AAC sequence header: AudioSpecificConfig LC, 44.1 kHz, stereo.
pub fn aac_sequence_header() -> Frame {
    Frame::parse_audio(0, Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10])).expect("AAC header")
}

fn video_frame(rng: &mut Rng, ts: u32, key: bool, nal_len: usize) -> Frame {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01];
    body.extend_from_slice(&COMPOSITION_OFFSET_MS.to_be_bytes()[1..]);
    body.extend_from_slice(&(nal_len as u32).to_be_bytes());
    body.push(if key { 0x65 } else { 0x41 }); // IDR / non-IDR slice
    rng.fill(&mut body, nal_len - 1);
    Frame::parse_video(ts, Bytes::from(body)).expect("AVC frame")
}

fn audio_frame(rng: &mut Rng, ts: u32, len: usize) -> Frame {
    let mut body = vec![0xaf, 0x01];
    rng.fill(&mut body, len);
    Frame::parse_audio(ts, Bytes::from(body)).expect("AAC frame")
}

/// `gops` GOPs of coded frames from timestamp 0, audio and video
/// interleaved in timestamp order (no sequence headers).
pub fn gops(gops: u32) -> Vec<Frame> {
    let frames_per_gop = u64::from(VIDEO_FPS * GOP_MS / 1_000);
    let gop_bytes = VIDEO_BITS_PER_S / 8 * u64::from(GOP_MS) / 1_000;
    let inter_mean = gop_bytes / (frames_per_gop - 1 + KEYFRAME_RATIO);
    let audio_mean = AUDIO_BITS_PER_S / 8 * 1024 / AUDIO_SAMPLE_RATE;
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut frames = Vec::new();
    let mut audio_index = 0u64;
    let video_count = u64::from(gops) * frames_per_gop;
    for n in 0..video_count {
        let ts = (n * 1_000 / u64::from(VIDEO_FPS)) as u32;
        loop {
            let audio_ts = (audio_index * 1024 * 1_000 / AUDIO_SAMPLE_RATE) as u32;
            if audio_ts > ts {
                break;
            }
            let len = rng.jitter(audio_mean);
            frames.push(audio_frame(&mut rng, audio_ts, len));
            audio_index += 1;
        }
        let key = n % frames_per_gop == 0;
        let len = rng.jitter(if key {
            inter_mean * KEYFRAME_RATIO
        } else {
            inter_mean
        });
        frames.push(video_frame(&mut rng, ts, key, len));
    }
    frames
}

/// The payload bytes of `frames` (the RTMP message and FLV tag bodies).
pub fn payload_bytes(frames: &[Frame]) -> u64 {
    frames.iter().map(|f| f.payload.len() as u64).sum()
}
