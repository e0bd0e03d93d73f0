//! MPEG-2 transport stream muxing for HLS, and a checking demuxer (sans-IO).
//!
//! Defined by: ISO/IEC 13818-1 (Systems): transport packets (2.4.3), PES
//! packets (2.4.3.6), PSI (2.4.4), the system clock (2.4.2, 2.7). HLS
//! segments and LL-HLS parts are sequences of 188-byte packets; each
//! starts with a PAT and a PMT ([`TsMuxer::write_psi`]) so it can be
//! decoded alone.
//!
//! ```text
//! packet = 0x47 | TEI PUSI prio PID(13) | scrambling(2) AFC(2) CC(4)
//!          | [adaptation field: length, flags, PCR(6), stuffing 0xFF...]
//!          | payload (PES bytes or pointer_field + section)
//! ```
//!
//! - [`types`]: [`Ts90k`] (the 90 kHz clock and its 33-bit wrap), [`Pid`],
//!   [`ContinuityCounter`], [`Pcr`].
//! - [`TsMuxer`]: frames in, packets out.
//! - [`check_packets`]: sync, continuity, CRC, PES header checks, and a
//!   [`TsSummary`] of what it saw.
//!
//! Nothing here panics on input bytes: frames from a publisher and streams
//! given to the checker are read with bounds-checked access only.

mod check;
mod codec;
mod crc;
mod mux;
mod packet;
pub mod psi;
pub mod types;

use std::fmt;

use crate::media::{AudioCodec, FrameKind, MediaError, VideoCodec};

pub use check::{check_packets, PesInfo, TsSummary};
pub use crc::crc32_mpeg2;
pub use mux::{TsMuxer, AUDIO_PES_PAYLOAD_MAX, PCR_INTERVAL_90K, STREAM_ID_AUDIO, STREAM_ID_VIDEO};
pub use packet::{PACKET_LEN, SYNC_BYTE};
pub use psi::{
    EsInfo, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265, STREAM_TYPE_MPEG1_AUDIO,
};
pub use types::{
    ContinuityCounter, Pcr, Pid, Ts90k, PID_AUDIO, PID_NULL, PID_PAT, PID_PMT, PID_VIDEO,
};

/// A codec, video or audio, as named in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Video(VideoCodec),
    Audio(AudioCodec),
}

impl Codec {
    /// The PMT stream_type that carries this codec, or None when MPEG-TS
    /// has no mapping for it here (AV1, VP9, Opus, ...: the muxer refuses
    /// their frames with [`TsError::Unsupported`]).
    pub fn stream_type(self) -> Option<u8> {
        match self {
            Codec::Video(VideoCodec::Avc) => Some(STREAM_TYPE_H264),
            Codec::Video(VideoCodec::Hevc) => Some(STREAM_TYPE_H265),
            Codec::Audio(AudioCodec::Aac) => Some(STREAM_TYPE_AAC_ADTS),
            Codec::Audio(AudioCodec::Mp3) => Some(STREAM_TYPE_MPEG1_AUDIO),
            _ => None,
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Video(c) => write!(f, "video codec {c}"),
            Codec::Audio(c) => write!(f, "audio codec {c}"),
        }
    }
}

/// Why a frame could not be muxed, or a stream did not pass
/// [`check_packets`].
///
/// Muxing errors are the publisher's: its stream holds something TS cannot
/// carry or that does not follow its codec's spec. None is fatal to the
/// muxer; the caller skips the frame (and may log the first of a kind).
/// Checking errors are the checked stream's and name the byte offset of
/// the packet at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsError {
    // --- muxing ---
    /// The codec has no mapping to MPEG-TS here (AV1, VP9, Opus, ...); the
    /// caller leaves that stream out of TS outputs.
    Unsupported { codec: Codec },
    /// The frame's tag header or codec configuration record is malformed.
    Media(MediaError),
    /// A coded frame arrived before the sequence header its codec needs
    /// (AVC/HEVC decoder configuration, AAC AudioSpecificConfig).
    MissingConfig { kind: FrameKind },
    /// A NAL unit length prefix at byte `offset` of the codec data says
    /// `length` bytes, but only `available` follow it.
    NalLengthOverrun {
        offset: usize,
        length: usize,
        available: usize,
    },
    /// The AAC configuration cannot be carried in ADTS headers: object
    /// types above 4 (the profile field has 2 bits) or a sampling rate
    /// outside the index table.
    AacConfig { object_type: u8, sample_rate: u32 },
    /// A raw AAC frame of `len` bytes does not fit the 13-bit ADTS
    /// frame_length (8191 bytes with the 7-byte header).
    AacFrameTooLong { len: usize },
    /// An audio PES payload of `len` bytes exceeds
    /// [`AUDIO_PES_PAYLOAD_MAX`].
    PesTooLong { len: usize },

    // --- checking ---
    /// The input is not a whole number of 188-byte packets.
    Length { len: usize },
    /// The packet at `offset` does not start with 0x47.
    Sync { offset: usize },
    /// The continuity_counter of the packet at `offset` skips values.
    ContinuityGap {
        offset: usize,
        pid: Pid,
        expected: u8,
        found: u8,
    },
    /// A PSI section that ends in the packet at `offset` fails its CRC_32.
    Crc { offset: usize, pid: Pid },
    /// A field of the packet at `offset` (header, adaptation field, section
    /// or PES header) is out of range.
    Malformed {
        offset: usize,
        pid: Pid,
        what: &'static str,
    },
}

impl From<MediaError> for TsError {
    fn from(e: MediaError) -> Self {
        TsError::Media(e)
    }
}

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TsError::Unsupported { codec } => write!(f, "{codec} cannot be muxed into MPEG-TS"),
            TsError::Media(e) => write!(f, "{e}"),
            TsError::MissingConfig { kind } => {
                write!(f, "{kind} frame before its sequence header")
            }
            TsError::NalLengthOverrun {
                offset,
                length,
                available,
            } => write!(
                f,
                "NAL unit length {length} at byte {offset} runs past the frame \
                 ({available} bytes left)"
            ),
            TsError::AacConfig {
                object_type,
                sample_rate,
            } => write!(
                f,
                "AAC object type {object_type} at {sample_rate} Hz cannot be carried in ADTS"
            ),
            TsError::AacFrameTooLong { len } => {
                write!(f, "AAC frame of {len} bytes is too long for ADTS")
            }
            TsError::PesTooLong { len } => write!(
                f,
                "audio PES payload of {len} bytes exceeds {AUDIO_PES_PAYLOAD_MAX}"
            ),
            TsError::Length { len } => {
                write!(f, "{len} bytes is not a whole number of 188-byte packets")
            }
            TsError::Sync { offset } => write!(f, "no sync byte 0x47 at byte {offset}"),
            TsError::ContinuityGap {
                offset,
                pid,
                expected,
                found,
            } => write!(
                f,
                "continuity counter on PID {pid} at byte {offset}: expected {expected}, \
                 found {found}"
            ),
            TsError::Crc { offset, pid } => {
                write!(
                    f,
                    "PSI section on PID {pid} fails its CRC_32 (packet at byte {offset})"
                )
            }
            TsError::Malformed { offset, pid, what } => {
                write!(
                    f,
                    "invalid {what} on PID {pid} in the packet at byte {offset}"
                )
            }
        }
    }
}

impl std::error::Error for TsError {}

#[cfg(test)]
mod tests;
