//! Byte vectors of a small real stream, shared by the muxers' tests: AVC
//! (baseline 3.0, 4-byte lengths, one SPS, one PPS), AAC LC 44.1 kHz
//! stereo, an IDR and a non-IDR slice, a raw AAC frame.

use bytes::Bytes;

use crate::media::Frame;

pub const AVC_SEQ: &[u8] = &[
    0x17, 0x00, 0, 0, 0, 1, 0x42, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x42, 0x00, 0x1e, 0x01,
    0x00, 0x02, 0x68, 0xce,
];
pub const AAC_SEQ: &[u8] = &[0xaf, 0x00, 0x12, 0x10];
pub const IDR: &[u8] = &[0x17, 0x01, 0, 0, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84];
pub const SLICE: &[u8] = &[0x27, 0x01, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x9a, 0x02];
pub const AAC: &[u8] = &[0xaf, 0x01, 0x21, 0x10, 0x04, 0x60];

pub fn video(ts: u32, body: &'static [u8]) -> Frame {
    Frame::parse_video(ts, Bytes::from_static(body)).expect("valid test vector")
}

pub fn audio(ts: u32, body: &'static [u8]) -> Frame {
    Frame::parse_audio(ts, Bytes::from_static(body)).expect("valid test vector")
}
