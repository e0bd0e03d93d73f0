//! Media frames and codec configuration, parsed once on ingest (sans-IO).
//!
//! An RTMP audio or video message body is exactly an FLV tag body. shardcast
//! keeps that body untouched (it is what RTMP and HTTP-FLV players receive)
//! and parses only enough of it to know what it is: which codec, whether it
//! is a keyframe or a sequence header, and its composition time. The codec
//! configuration records (AVC, HEVC, AV1, VP9, AAC, Opus) are parsed on
//! demand by the muxers and the API that need them.
//!
//! Nothing here touches sockets, clocks or shards; every parser takes bytes
//! and returns a value or a [`MediaError`] naming what was wrong. Parsers
//! never panic and never index network bytes unchecked.
//!
//! - [`frame`]: [`Frame`] and the FLV audio/video tag header parsers
//!   (legacy FLV and Enhanced RTMP).
//! - [`avc`]: AVCDecoderConfigurationRecord and H.264 SPS.
//! - [`hevc`]: HEVCDecoderConfigurationRecord, H.265 SPS, `hvc1` CODECS.
//! - [`av1`]: AV1CodecConfigurationRecord, OBUs, the sequence header.
//! - [`vp9`]: VPCodecConfigurationRecord, a keyframe's picture size.
//! - [`aac`]: AAC AudioSpecificConfig.
//! - [`opus`]: the OpusHead and the `dOps` payload made from it.
//! - [`mp3`]: MPEG audio frame headers (MP3 has no sequence header).
//! - [`params`]: what a stream is, for every codec above: size,
//!   profile, level, rate, channels and the RFC 6381 CODECS string.

pub mod aac;
pub mod av1;
pub mod avc;
mod bits;
pub mod frame;
pub mod hevc;
pub mod mp3;
pub mod opus;
pub mod params;
#[cfg(test)]
pub(crate) mod vectors;
pub mod vp9;

use std::fmt;

pub use aac::{parse_aac_config, AacConfig};
pub use av1::{
    find_sequence_header, parse_av1_config, parse_av1_sequence_header, Av1Config, Av1SequenceHeader,
};
pub use avc::{parse_avc_config, parse_sps, AvcConfig, Sps};
pub use frame::{
    fourcc, AudioCodec, AudioPacket, AudioTagHeader, Frame, FrameKind, VideoCodec, VideoFrameType,
    VideoPacket, VideoTagHeader,
};
pub use hevc::{parse_hevc_config, parse_hevc_sps, HevcConfig, HevcSps};
pub use mp3::{parse_mp3_header, Mp3Header, MpegVersion};
pub use opus::{parse_opus_head, OpusHead, OPUS_SAMPLE_RATE};
pub use params::{
    audio_params, fill_size_from_keyframe, keyframe_size, mp3_frame_params, video_params,
    AudioParams, VideoParams,
};
pub use vp9::{parse_vp9_config, vp9_keyframe_size, Vp9Config, Vp9Keyframe};

/// Why a media message or codec record could not be parsed.
///
/// Every variant is the peer's fault (a publisher or an upstream sent bytes
/// that do not follow the spec); the caller decides whether that drops one
/// frame or the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// The message body has no bytes at all. For audio this is the legacy
    /// "silence" message (E-RTMP v2, AudioPacketType notes); callers may
    /// forward it as-is instead of treating it as an error.
    Empty { kind: FrameKind },
    /// A field runs past the end of the input: `what` needed `need` bytes in
    /// total, the input has `have`.
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value the spec reserves or forbids.
    Invalid {
        what: &'static str,
        value: u64,
        /// Byte offset of the field in the input it was parsed from (for
        /// bit-level syntax such as an SPS: in the unescaped RBSP).
        offset: usize,
    },
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::Empty { kind } => write!(f, "empty {kind} message"),
            MediaError::Truncated { what, need, have } => write!(
                f,
                "truncated {what}: needs {need} bytes, only {have} present"
            ),
            MediaError::Invalid {
                what,
                value,
                offset,
            } => write!(f, "invalid {what}: value {value} at byte {offset}"),
        }
    }
}

impl std::error::Error for MediaError {}
