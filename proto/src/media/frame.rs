//! [`Frame`]: one media message of a stream, and the FLV tag header parsers
//! that classify it.
//!
//! Defined by: FLV v10.1 annex E.4.2.1 (AUDIODATA) and E.4.3.1 (VIDEODATA),
//! Enhanced RTMP v2 (ExAudioTagHeader, ExVideoTagHeader, multitrack, ModEx).

use std::fmt;

use bytes::Bytes;

use super::bits::ByteReader;
use super::MediaError;

/// What an RTMP media message carries (RTMP message types 8, 9 and 18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Audio,
    Video,
    /// An AMF0 data message such as `onMetaData`.
    Data,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Audio => "audio",
            FrameKind::Video => "video",
            FrameKind::Data => "data",
        })
    }
}

/// A FourCC as E-RTMP puts it on the wire: four ASCII bytes, big-endian.
pub const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*code)
}

/// Writes a FourCC as `'avc1'` when it is printable ASCII, else as a number.
fn fmt_raw_code(raw: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let b = raw.to_be_bytes();
    if raw > 0xff && b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        let s: String = b.iter().map(|&c| char::from(c)).collect();
        write!(f, "'{s}'")
    } else {
        write!(f, "{raw}")
    }
}

/// A video codec, from a legacy FLV CodecID or an E-RTMP video FourCC.
///
/// Defined by: FLV v10.1 E.4.3.1 CodecID (7 = AVC; 12 = HEVC is the
/// widespread pre-E-RTMP extension), E-RTMP v2 VideoFourCc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Avc,
    Hevc,
    Av1,
    Vp9,
    /// Any other codec: `raw` is the legacy CodecID (0..=15) or, in an
    /// enhanced header, the FourCC (e.g. `fourcc(b"vp08")`).
    Other {
        raw: u32,
    },
}

impl VideoCodec {
    /// The legacy FLV CodecID for AVC.
    pub const LEGACY_AVC: u8 = 7;
    /// The legacy (pre-E-RTMP) CodecID many servers use for HEVC.
    pub const LEGACY_HEVC: u8 = 12;

    /// From a legacy FLV CodecID (the low nibble of the first byte).
    pub fn from_legacy_id(id: u8) -> VideoCodec {
        match id {
            Self::LEGACY_AVC => VideoCodec::Avc,
            Self::LEGACY_HEVC => VideoCodec::Hevc,
            other => VideoCodec::Other {
                raw: u32::from(other),
            },
        }
    }

    /// From an E-RTMP VideoFourCc.
    pub fn from_fourcc(code: u32) -> VideoCodec {
        const AVC1: u32 = fourcc(b"avc1");
        const HVC1: u32 = fourcc(b"hvc1");
        const AV01: u32 = fourcc(b"av01");
        const VP09: u32 = fourcc(b"vp09");
        match code {
            AVC1 => VideoCodec::Avc,
            HVC1 => VideoCodec::Hevc,
            AV01 => VideoCodec::Av1,
            VP09 => VideoCodec::Vp9,
            raw => VideoCodec::Other { raw },
        }
    }

    /// True for the codecs whose coded frames carry an SI24 composition time
    /// (E-RTMP v2 ExVideoTagBody: avc1, hvc1, vvc1).
    fn has_composition_time(self) -> bool {
        matches!(self, VideoCodec::Avc | VideoCodec::Hevc)
            || self
                == VideoCodec::Other {
                    raw: fourcc(b"vvc1"),
                }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoCodec::Avc => f.write_str("avc"),
            VideoCodec::Hevc => f.write_str("hevc"),
            VideoCodec::Av1 => f.write_str("av1"),
            VideoCodec::Vp9 => f.write_str("vp9"),
            VideoCodec::Other { raw } => fmt_raw_code(*raw, f),
        }
    }
}

/// An audio codec, from a legacy FLV SoundFormat or an E-RTMP audio FourCC.
///
/// Defined by: FLV v10.1 E.4.2.1 SoundFormat, E-RTMP v2 AudioFourCc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioCodec {
    Aac,
    /// MP3, including the legacy "MP3 8 kHz" SoundFormat 14.
    Mp3,
    Opus,
    /// Any other codec: `raw` is the legacy SoundFormat (0..=15) or, in an
    /// enhanced header, the FourCC (e.g. `fourcc(b"fLaC")`).
    Other {
        raw: u32,
    },
}

impl AudioCodec {
    /// From a legacy FLV SoundFormat (the high nibble of the first byte).
    pub fn from_sound_format(format: u8) -> AudioCodec {
        match format {
            10 => AudioCodec::Aac,
            2 | 14 => AudioCodec::Mp3,
            other => AudioCodec::Other {
                raw: u32::from(other),
            },
        }
    }

    /// From an E-RTMP AudioFourCc.
    pub fn from_fourcc(code: u32) -> AudioCodec {
        const MP4A: u32 = fourcc(b"mp4a");
        const MP3: u32 = fourcc(b".mp3");
        const OPUS: u32 = fourcc(b"Opus");
        match code {
            MP4A => AudioCodec::Aac,
            MP3 => AudioCodec::Mp3,
            OPUS => AudioCodec::Opus,
            raw => AudioCodec::Other { raw },
        }
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioCodec::Aac => f.write_str("aac"),
            AudioCodec::Mp3 => f.write_str("mp3"),
            AudioCodec::Opus => f.write_str("opus"),
            AudioCodec::Other { raw } => fmt_raw_code(*raw, f),
        }
    }
}

/// Video frame type: bits 4-7 of a legacy header, bits 4-6 of an enhanced
/// one. Defined by: FLV v10.1 E.4.3.1 FrameType, E-RTMP v2 VideoFrameType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFrameType {
    /// A seekable frame.
    Key,
    /// A non-seekable frame.
    Inter,
    /// A disposable inter frame (H.263 only).
    DisposableInter,
    /// A key frame made by a server (FMS seeking); seekable.
    GeneratedKey,
    /// A video info/command frame: no picture, one command byte.
    Command,
    /// 0 and, in a legacy header, 6..=15.
    Reserved { raw: u8 },
}

impl VideoFrameType {
    fn from_raw(raw: u8) -> VideoFrameType {
        match raw {
            1 => VideoFrameType::Key,
            2 => VideoFrameType::Inter,
            3 => VideoFrameType::DisposableInter,
            4 => VideoFrameType::GeneratedKey,
            5 => VideoFrameType::Command,
            raw => VideoFrameType::Reserved { raw },
        }
    }

    /// Key and generated key frames are both places a decoder can start.
    fn is_key(self) -> bool {
        matches!(self, VideoFrameType::Key | VideoFrameType::GeneratedKey)
    }
}

/// What a video message carries, with legacy AVCPacketType and E-RTMP
/// VideoPacketType folded into one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoPacket {
    /// Decoder configuration: legacy AVC/HEVC sequence header (packet type
    /// 0) or enhanced SequenceStart.
    SequenceStart,
    /// Enhanced MPEG2TSSequenceStart (an AV1 video descriptor); like
    /// [`VideoPacket::SequenceStart`] it starts a sequence.
    Mpeg2TsSequenceStart,
    /// Coded pictures: legacy AVC NALU (1) or any legacy non-AVC body,
    /// enhanced CodedFrames / CodedFramesX.
    CodedFrames,
    /// End of sequence: legacy AVC packet type 2 or enhanced SequenceEnd.
    SequenceEnd,
    /// Enhanced Metadata: an AMF-encoded body (e.g. `colorInfo`).
    Metadata,
    /// A command frame (frame type 5): the value is the command byte
    /// (0 = start of client-side seeking, 1 = end).
    Command(u8),
}

/// The parsed header of a video message (an FLV VIDEODATA body).
///
/// Defined by: FLV v10.1 E.4.3.1 VideoTagHeader, E-RTMP v2 ExVideoTagHeader
/// and ExVideoTagBody (first track only for multitrack messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoTagHeader {
    /// True when bit 7 (IsExHeader) is set: an E-RTMP header.
    pub enhanced: bool,
    pub frame_type: VideoFrameType,
    pub packet: VideoPacket,
    /// None for enhanced command frames, which carry no FourCC.
    pub codec: Option<VideoCodec>,
    /// CompositionTime (PTS - DTS) in ms; 0 where the header has none.
    pub composition_offset: i32,
    /// True for an E-RTMP multitrack message; the other fields then describe
    /// its first track.
    pub multitrack: bool,
    /// Byte range of the codec data (configuration record, length-prefixed
    /// NALUs, OBUs, ...) of the (first) track within the message body.
    pub body_start: usize,
    pub body_end: usize,
}

// E-RTMP v2 VideoPacketType values.
const VPT_SEQUENCE_START: u8 = 0;
const VPT_CODED_FRAMES: u8 = 1;
const VPT_SEQUENCE_END: u8 = 2;
const VPT_CODED_FRAMES_X: u8 = 3;
const VPT_METADATA: u8 = 4;
const VPT_MPEG2TS_SEQUENCE_START: u8 = 5;
const VPT_MULTITRACK: u8 = 6;
const VPT_MOD_EX: u8 = 7;

// E-RTMP v2 AudioPacketType values.
const APT_SEQUENCE_START: u8 = 0;
const APT_CODED_FRAMES: u8 = 1;
const APT_SEQUENCE_END: u8 = 2;
const APT_MULTICHANNEL_CONFIG: u8 = 4;
const APT_MULTITRACK: u8 = 5;
const APT_MOD_EX: u8 = 7;

// E-RTMP v2 AvMultitrackType values.
const MULTITRACK_ONE_TRACK: u8 = 0;
const MULTITRACK_MANY_TRACKS: u8 = 1;
const MULTITRACK_MANY_TRACKS_MANY_CODECS: u8 = 2;

/// Skips E-RTMP ModEx blocks (PacketType 7) and returns the packet type that
/// follows them with the offset of the byte holding it. Each block is at
/// least two bytes, so the loop ends with the input. Defined by: E-RTMP v2,
/// "Process each ModEx data packet".
fn skip_mod_ex(
    r: &mut ByteReader<'_>,
    mut packet_type: u8,
    mod_ex: u8,
) -> Result<(u8, usize), MediaError> {
    let mut offset = 0;
    while packet_type == mod_ex {
        let mut size = usize::from(r.u8("ModEx data size")?) + 1;
        if size == 256 {
            size = usize::from(r.u16("ModEx data size (16-bit)")?) + 1;
        }
        // The only defined ModEx type, TimestampOffsetNano, adjusts
        // presentation by under a millisecond; RTMP timestamps stay as sent.
        r.take(size, "ModEx data")?;
        offset = r.pos();
        packet_type = r.u8("ModEx type and packet type")? & 0x0f;
    }
    Ok((packet_type, offset))
}

/// Reads what precedes the first track's data in a multitrack message:
/// its FourCC (ManyTracksManyCodecs only), trackId and, unless there is one
/// track, sizeOfTrack. Returns (FourCC if read, end of the track's data).
fn first_track(
    r: &mut ByteReader<'_>,
    multitrack_type: u8,
) -> Result<(Option<u32>, usize), MediaError> {
    let code = if multitrack_type == MULTITRACK_MANY_TRACKS_MANY_CODECS {
        Some(r.u32("track FourCC")?)
    } else {
        None
    };
    r.u8("trackId")?;
    let end = if multitrack_type == MULTITRACK_ONE_TRACK {
        r.len()
    } else {
        let size = r.u24("sizeOfTrack")? as usize;
        let end = r.pos() + size;
        if end > r.len() {
            return Err(MediaError::Truncated {
                what: "multitrack track data",
                need: end,
                have: r.len(),
            });
        }
        end
    };
    Ok((code, end))
}

fn check_multitrack_type(raw: u8, offset: usize) -> Result<(), MediaError> {
    match raw {
        MULTITRACK_ONE_TRACK | MULTITRACK_MANY_TRACKS | MULTITRACK_MANY_TRACKS_MANY_CODECS => {
            Ok(())
        }
        _ => Err(MediaError::Invalid {
            what: "AvMultitrackType (reserved)",
            value: u64::from(raw),
            offset,
        }),
    }
}

impl VideoTagHeader {
    /// Parses the header at the start of a video message body.
    pub fn parse(body: &[u8]) -> Result<VideoTagHeader, MediaError> {
        let mut r = ByteReader::new(body);
        let first = match r.u8("video tag header") {
            Ok(b) => b,
            Err(_) => {
                return Err(MediaError::Empty {
                    kind: FrameKind::Video,
                })
            }
        };
        if first & 0x80 == 0 {
            Self::parse_legacy(first, r)
        } else {
            Self::parse_enhanced(first, r)
        }
    }

    /// FLV v10.1 E.4.3.1: FrameType UB[4], CodecID UB[4]; for AVC (and
    /// legacy HEVC, which copies AVC's layout) AVCPacketType UI8 and
    /// CompositionTime SI24.
    fn parse_legacy(first: u8, mut r: ByteReader<'_>) -> Result<VideoTagHeader, MediaError> {
        let frame_type = VideoFrameType::from_raw(first >> 4);
        let codec_id = first & 0x0f;
        let codec = VideoCodec::from_legacy_id(codec_id);
        let mut header = VideoTagHeader {
            enhanced: false,
            frame_type,
            packet: VideoPacket::CodedFrames,
            codec: Some(codec),
            composition_offset: 0,
            multitrack: false,
            body_start: 1,
            body_end: r.len(),
        };
        if frame_type == VideoFrameType::Command {
            header.packet = VideoPacket::Command(r.u8("VideoCommand")?);
            header.body_start = r.pos();
            return Ok(header);
        }
        if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
            let packet_offset = r.pos();
            let packet_type = r.u8("AVCPacketType")?;
            let composition = r.i24("CompositionTime")?;
            header.packet = match packet_type {
                0 => VideoPacket::SequenceStart,
                1 => VideoPacket::CodedFrames,
                2 => VideoPacket::SequenceEnd,
                other => {
                    return Err(MediaError::Invalid {
                        what: "AVCPacketType",
                        value: u64::from(other),
                        offset: packet_offset,
                    })
                }
            };
            // The spec sets CompositionTime to 0 outside NALU packets.
            if header.packet == VideoPacket::CodedFrames {
                header.composition_offset = composition;
            }
            header.body_start = r.pos();
        }
        Ok(header)
    }

    /// E-RTMP v2 ExVideoTagHeader: IsExHeader UB[1], FrameType UB[3],
    /// PacketType UB[4], ModEx blocks, then a command byte, a multitrack
    /// header or a FourCC; then the ExVideoTagBody of the first track.
    fn parse_enhanced(first: u8, mut r: ByteReader<'_>) -> Result<VideoTagHeader, MediaError> {
        let frame_type = VideoFrameType::from_raw((first >> 4) & 0x07);
        let mut header = VideoTagHeader {
            enhanced: true,
            frame_type,
            packet: VideoPacket::CodedFrames,
            codec: None,
            composition_offset: 0,
            multitrack: false,
            body_start: 0,
            body_end: r.len(),
        };
        let (mut packet_type, mut packet_offset) = skip_mod_ex(&mut r, first & 0x0f, VPT_MOD_EX)?;

        if packet_type != VPT_METADATA && frame_type == VideoFrameType::Command {
            header.packet = VideoPacket::Command(r.u8("VideoCommand")?);
            header.body_start = r.pos();
            return Ok(header);
        }

        let code = if packet_type == VPT_MULTITRACK {
            header.multitrack = true;
            let offset = r.pos();
            let b = r.u8("multitrack type and packet type")?;
            let multitrack_type = b >> 4;
            check_multitrack_type(multitrack_type, offset)?;
            packet_type = b & 0x0f;
            packet_offset = offset;
            if packet_type == VPT_MULTITRACK || packet_type == VPT_MOD_EX {
                return Err(MediaError::Invalid {
                    what: "VideoPacketType inside a multitrack message",
                    value: u64::from(packet_type),
                    offset,
                });
            }
            let shared = if multitrack_type != MULTITRACK_MANY_TRACKS_MANY_CODECS {
                Some(r.u32("video FourCC")?)
            } else {
                None
            };
            let (own, end) = first_track(&mut r, multitrack_type)?;
            header.body_end = end;
            own.or(shared).unwrap_or_default()
        } else {
            r.u32("video FourCC")?
        };
        let codec = VideoCodec::from_fourcc(code);
        header.codec = Some(codec);

        header.packet = match packet_type {
            VPT_SEQUENCE_START => VideoPacket::SequenceStart,
            VPT_CODED_FRAMES => {
                if codec.has_composition_time() {
                    header.composition_offset = r.i24("CompositionTime")?;
                }
                VideoPacket::CodedFrames
            }
            VPT_CODED_FRAMES_X => VideoPacket::CodedFrames,
            VPT_SEQUENCE_END => VideoPacket::SequenceEnd,
            VPT_METADATA => VideoPacket::Metadata,
            VPT_MPEG2TS_SEQUENCE_START => VideoPacket::Mpeg2TsSequenceStart,
            other => {
                return Err(MediaError::Invalid {
                    what: "VideoPacketType (reserved)",
                    value: u64::from(other),
                    offset: packet_offset,
                })
            }
        };
        header.body_start = r.pos();
        if header.body_start > header.body_end {
            return Err(MediaError::Truncated {
                what: "multitrack track data",
                need: header.body_start,
                have: header.body_end,
            });
        }
        Ok(header)
    }

    /// A picture a decoder can start from: a key frame's coded data.
    pub fn is_keyframe(&self) -> bool {
        self.frame_type.is_key() && self.packet == VideoPacket::CodedFrames
    }

    /// Decoder configuration that players need before any picture.
    pub fn is_sequence_header(&self) -> bool {
        matches!(
            self.packet,
            VideoPacket::SequenceStart | VideoPacket::Mpeg2TsSequenceStart
        )
    }
}

/// What an audio message carries, with legacy AACPacketType and E-RTMP
/// AudioPacketType folded into one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioPacket {
    /// Decoder configuration: AAC sequence header (AudioSpecificConfig) or
    /// enhanced SequenceStart.
    SequenceStart,
    /// Coded audio: AAC raw, any legacy non-AAC body, enhanced CodedFrames.
    CodedFrames,
    /// Enhanced SequenceEnd.
    SequenceEnd,
    /// Enhanced MultichannelConfig (channel order and mapping).
    MultichannelConfig,
}

/// The parsed header of an audio message (an FLV AUDIODATA body).
///
/// Defined by: FLV v10.1 E.4.2.1 AudioTagHeader, E-RTMP v2 ExAudioTagHeader
/// and ExAudioTagBody (first track only for multitrack messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioTagHeader {
    /// True when SoundFormat is 9 (ExHeader): an E-RTMP header.
    pub enhanced: bool,
    pub codec: AudioCodec,
    pub packet: AudioPacket,
    /// Legacy SoundRate, SoundSize and SoundType bits (the low nibble of the
    /// first byte); 0 in an enhanced header.
    pub legacy_flags: u8,
    /// True for an E-RTMP multitrack message; the other fields then describe
    /// its first track.
    pub multitrack: bool,
    /// Byte range of the codec data (AudioSpecificConfig, raw AAC, MP3
    /// frames, ...) of the (first) track within the message body.
    pub body_start: usize,
    pub body_end: usize,
}

/// Legacy SoundFormat 9 switches the header to E-RTMP FourCC mode.
const SOUND_FORMAT_EX_HEADER: u8 = 9;

impl AudioTagHeader {
    /// Parses the header at the start of an audio message body.
    pub fn parse(body: &[u8]) -> Result<AudioTagHeader, MediaError> {
        let mut r = ByteReader::new(body);
        let first = match r.u8("audio tag header") {
            Ok(b) => b,
            Err(_) => {
                return Err(MediaError::Empty {
                    kind: FrameKind::Audio,
                })
            }
        };
        let format = first >> 4;
        if format == SOUND_FORMAT_EX_HEADER {
            return Self::parse_enhanced(first, r);
        }
        let codec = AudioCodec::from_sound_format(format);
        let mut header = AudioTagHeader {
            enhanced: false,
            codec,
            packet: AudioPacket::CodedFrames,
            legacy_flags: first & 0x0f,
            multitrack: false,
            body_start: 1,
            body_end: r.len(),
        };
        if codec == AudioCodec::Aac {
            let offset = r.pos();
            header.packet = match r.u8("AACPacketType")? {
                0 => AudioPacket::SequenceStart,
                1 => AudioPacket::CodedFrames,
                other => {
                    return Err(MediaError::Invalid {
                        what: "AACPacketType",
                        value: u64::from(other),
                        offset,
                    })
                }
            };
            header.body_start = r.pos();
        }
        Ok(header)
    }

    /// E-RTMP v2 ExAudioTagHeader: SoundFormat 9 UB[4], AudioPacketType
    /// UB[4], ModEx blocks, a multitrack header or a FourCC; then the
    /// ExAudioTagBody of the first track.
    fn parse_enhanced(first: u8, mut r: ByteReader<'_>) -> Result<AudioTagHeader, MediaError> {
        let mut header = AudioTagHeader {
            enhanced: true,
            codec: AudioCodec::Other { raw: 0 },
            packet: AudioPacket::CodedFrames,
            legacy_flags: 0,
            multitrack: false,
            body_start: 0,
            body_end: r.len(),
        };
        let (mut packet_type, mut packet_offset) = skip_mod_ex(&mut r, first & 0x0f, APT_MOD_EX)?;
        let code = if packet_type == APT_MULTITRACK {
            header.multitrack = true;
            let offset = r.pos();
            let b = r.u8("multitrack type and packet type")?;
            let multitrack_type = b >> 4;
            check_multitrack_type(multitrack_type, offset)?;
            packet_type = b & 0x0f;
            packet_offset = offset;
            if packet_type == APT_MULTITRACK || packet_type == APT_MOD_EX {
                return Err(MediaError::Invalid {
                    what: "AudioPacketType inside a multitrack message",
                    value: u64::from(packet_type),
                    offset,
                });
            }
            let shared = if multitrack_type != MULTITRACK_MANY_TRACKS_MANY_CODECS {
                Some(r.u32("audio FourCC")?)
            } else {
                None
            };
            let (own, end) = first_track(&mut r, multitrack_type)?;
            header.body_end = end;
            own.or(shared).unwrap_or_default()
        } else {
            r.u32("audio FourCC")?
        };
        header.codec = AudioCodec::from_fourcc(code);
        header.packet = match packet_type {
            APT_SEQUENCE_START => AudioPacket::SequenceStart,
            APT_CODED_FRAMES => AudioPacket::CodedFrames,
            APT_SEQUENCE_END => AudioPacket::SequenceEnd,
            APT_MULTICHANNEL_CONFIG => AudioPacket::MultichannelConfig,
            other => {
                return Err(MediaError::Invalid {
                    what: "AudioPacketType (reserved)",
                    value: u64::from(other),
                    offset: packet_offset,
                })
            }
        };
        header.body_start = r.pos();
        Ok(header)
    }
}

/// One media message of a stream, parsed once on ingest and shared by every
/// player (clone = refcount).
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: FrameKind,
    /// RTMP timestamp in ms (the DTS), wrapping at 2^32.
    pub timestamp: u32,
    /// PTS - DTS in ms (AVC/HEVC CompositionTime); 0 otherwise.
    pub composition_offset: i32,
    /// Video: a key frame's coded pictures (frame type 1 or 4, not a
    /// sequence header, not a command). Audio and data: false.
    pub keyframe: bool,
    /// Decoder configuration: AVC/HEVC decoder configuration record,
    /// enhanced SequenceStart, AAC AudioSpecificConfig.
    pub sequence_header: bool,
    pub video_codec: Option<VideoCodec>,
    pub audio_codec: Option<AudioCodec>,
    /// The untouched RTMP message body, which is also the FLV tag body.
    pub payload: Bytes,
}

impl Frame {
    /// Classifies a video message body.
    pub fn parse_video(timestamp: u32, payload: Bytes) -> Result<Frame, MediaError> {
        let h = VideoTagHeader::parse(&payload)?;
        Ok(Frame {
            kind: FrameKind::Video,
            timestamp,
            composition_offset: h.composition_offset,
            keyframe: h.is_keyframe(),
            sequence_header: h.is_sequence_header(),
            video_codec: h.codec,
            audio_codec: None,
            payload,
        })
    }

    /// Classifies an audio message body. An empty body (the legacy silence
    /// message) is [`MediaError::Empty`].
    pub fn parse_audio(timestamp: u32, payload: Bytes) -> Result<Frame, MediaError> {
        let h = AudioTagHeader::parse(&payload)?;
        Ok(Frame {
            kind: FrameKind::Audio,
            timestamp,
            composition_offset: 0,
            keyframe: false,
            sequence_header: h.packet == AudioPacket::SequenceStart,
            video_codec: None,
            audio_codec: Some(h.codec),
            payload,
        })
    }

    /// An AMF0 data message (e.g. `onMetaData`) as a frame.
    pub fn data(timestamp: u32, payload: Bytes) -> Frame {
        Frame {
            kind: FrameKind::Data,
            timestamp,
            composition_offset: 0,
            keyframe: false,
            sequence_header: false,
            video_codec: None,
            audio_codec: None,
            payload,
        }
    }

    pub fn is_video(&self) -> bool {
        self.kind == FrameKind::Video
    }

    pub fn is_audio(&self) -> bool {
        self.kind == FrameKind::Audio
    }

    /// A point where a player may start: a video keyframe that isn't a
    /// sequence header.
    pub fn is_start_point(&self) -> bool {
        self.is_video() && self.keyframe && !self.sequence_header
    }

    /// The presentation time in ms: timestamp + composition offset, with the
    /// same 2^32 wrap as RTMP timestamps.
    pub fn pts(&self) -> u32 {
        self.timestamp.wrapping_add_signed(self.composition_offset)
    }

    /// The codec data after the tag header, sharing the payload's memory:
    /// the decoder configuration record of a sequence header (pass it to
    /// [`super::parse_avc_config`] or [`super::parse_aac_config`]), the
    /// length-prefixed NALUs or raw audio of a coded frame. For multitrack
    /// messages, the first track's data. For data frames, the whole payload.
    pub fn codec_data(&self) -> Result<Bytes, MediaError> {
        let (start, end) = match self.kind {
            FrameKind::Video => {
                let h = VideoTagHeader::parse(&self.payload)?;
                (h.body_start, h.body_end)
            }
            FrameKind::Audio => {
                let h = AudioTagHeader::parse(&self.payload)?;
                (h.body_start, h.body_end)
            }
            FrameKind::Data => (0, self.payload.len()),
        };
        if start > end || end > self.payload.len() {
            return Err(MediaError::Truncated {
                what: "codec data",
                need: end.max(start),
                have: self.payload.len(),
            });
        }
        Ok(self.payload.slice(start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(body: &[u8]) -> Result<Frame, MediaError> {
        Frame::parse_video(1000, Bytes::copy_from_slice(body))
    }

    fn audio(body: &[u8]) -> Result<Frame, MediaError> {
        Frame::parse_audio(1000, Bytes::copy_from_slice(body))
    }

    /// Legacy AVC sequence header: key frame (1), AVC (7), packet type 0,
    /// composition 0, then an AVCDecoderConfigurationRecord.
    const LEGACY_AVC_SEQ: &[u8] = &[
        0x17, 0x00, 0x00, 0x00, 0x00, // header
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
        0x68, 0xeb,
    ];

    #[test]
    fn legacy_avc_sequence_header() {
        let f = video(LEGACY_AVC_SEQ).unwrap();
        assert_eq!(f.kind, FrameKind::Video);
        assert!(f.is_video() && !f.is_audio());
        assert!(f.sequence_header);
        assert!(!f.keyframe, "a sequence header is not a keyframe");
        assert!(!f.is_start_point());
        assert_eq!(f.video_codec, Some(VideoCodec::Avc));
        assert_eq!(f.audio_codec, None);
        assert_eq!(f.composition_offset, 0);
        assert_eq!(f.timestamp, 1000);
        assert_eq!(f.payload.as_ref(), LEGACY_AVC_SEQ, "payload untouched");
        assert_eq!(f.codec_data().unwrap().as_ref(), &LEGACY_AVC_SEQ[5..]);
    }

    #[test]
    fn legacy_avc_keyframe() {
        // Key frame, NALU packet, composition 0x000050 = 80 ms, one IDR NALU
        // with a 4-byte length prefix.
        let body = [
            0x17, 0x01, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x02, 0x65, 0x88,
        ];
        let f = video(&body).unwrap();
        assert!(f.keyframe);
        assert!(!f.sequence_header);
        assert!(f.is_start_point());
        assert_eq!(f.composition_offset, 80);
        assert_eq!(f.pts(), 1080);
        assert_eq!(f.codec_data().unwrap().as_ref(), &body[5..]);
    }

    #[test]
    fn legacy_avc_inter_frame_negative_composition() {
        // Inter frame (2), AVC, NALU, composition 0xFFFFD8 = -40 ms.
        let body = [
            0x27, 0x01, 0xff, 0xff, 0xd8, 0x00, 0x00, 0x00, 0x02, 0x41, 0x9a,
        ];
        let f = video(&body).unwrap();
        assert!(!f.keyframe);
        assert!(!f.sequence_header);
        assert!(!f.is_start_point());
        assert_eq!(f.composition_offset, -40);
        assert_eq!(f.pts(), 960);
        // PTS wraps like the RTMP timestamp does.
        let early = Frame::parse_video(10, Bytes::copy_from_slice(&body)).unwrap();
        assert_eq!(early.pts(), u32::MAX - 29);
        // The most negative SI24.
        let min = [0x27, 0x01, 0x80, 0x00, 0x00];
        assert_eq!(video(&min).unwrap().composition_offset, -(1 << 23));
    }

    #[test]
    fn legacy_avc_end_of_sequence_and_bad_packet_type() {
        let f = video(&[0x17, 0x02, 0x00, 0x00, 0x00]).unwrap();
        assert!(!f.keyframe && !f.sequence_header);
        assert_eq!(
            video(&[0x17, 0x03, 0x00, 0x00, 0x00]).unwrap_err(),
            MediaError::Invalid {
                what: "AVCPacketType",
                value: 3,
                offset: 1
            }
        );
    }

    #[test]
    fn legacy_hevc_id_12() {
        let seq = video(&[0x1c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01]).unwrap();
        assert_eq!(seq.video_codec, Some(VideoCodec::Hevc));
        assert!(seq.sequence_header && !seq.keyframe);
        let key = video(&[0x1c, 0x01, 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x01, 0x26]).unwrap();
        assert_eq!(key.video_codec, Some(VideoCodec::Hevc));
        assert!(key.keyframe && !key.sequence_header);
        assert_eq!(key.composition_offset, 0x21);
        let inter = video(&[0x2c, 0x01, 0xff, 0xff, 0xff, 0x00]).unwrap();
        assert!(!inter.keyframe);
        assert_eq!(inter.composition_offset, -1);
    }

    #[test]
    fn legacy_other_codecs_and_frame_types() {
        // Sorenson H.263 key frame: no AVC packet header.
        let f = video(&[0x12, 0x00, 0x00, 0x84]).unwrap();
        assert_eq!(f.video_codec, Some(VideoCodec::Other { raw: 2 }));
        assert!(f.keyframe && !f.sequence_header);
        assert_eq!(f.codec_data().unwrap().as_ref(), &[0x00, 0x00, 0x84]);
        // Disposable inter frame (3) and a generated key frame (4).
        assert!(!video(&[0x32, 0x00]).unwrap().keyframe);
        assert!(
            video(&[0x47, 0x01, 0x00, 0x00, 0x00, 0x00])
                .unwrap()
                .keyframe
        );
        // Reserved frame type 0 passes through as a non-keyframe.
        let h = VideoTagHeader::parse(&[0x07, 0x01, 0, 0, 0]).unwrap();
        assert_eq!(h.frame_type, VideoFrameType::Reserved { raw: 0 });
        assert!(!h.is_keyframe());
    }

    #[test]
    fn legacy_command_frame() {
        // Command frame (5), AVC, command 0 (start of seek): neither key nor
        // sequence header, even though the byte after it looks like one.
        let f = video(&[0x57, 0x00]).unwrap();
        assert!(!f.keyframe && !f.sequence_header);
        assert_eq!(f.video_codec, Some(VideoCodec::Avc));
        let h = VideoTagHeader::parse(&[0x57, 0x01]).unwrap();
        assert_eq!(h.packet, VideoPacket::Command(1));
        assert!(matches!(
            video(&[0x57]),
            Err(MediaError::Truncated {
                what: "VideoCommand",
                ..
            })
        ));
    }

    #[test]
    fn enhanced_hvc1_sequence_start() {
        // IsExHeader | key (1) << 4 | SequenceStart (0), 'hvc1', then an
        // HEVCDecoderConfigurationRecord (abbreviated).
        let body = [0x90, b'h', b'v', b'c', b'1', 0x01, 0x01, 0x60];
        let f = video(&body).unwrap();
        assert_eq!(f.video_codec, Some(VideoCodec::Hevc));
        assert!(f.sequence_header && !f.keyframe);
        assert_eq!(f.composition_offset, 0);
        let h = VideoTagHeader::parse(&body).unwrap();
        assert!(h.enhanced && !h.multitrack);
        assert_eq!(h.packet, VideoPacket::SequenceStart);
        assert_eq!(f.codec_data().unwrap().as_ref(), &body[5..]);
    }

    #[test]
    fn enhanced_hvc1_coded_frames() {
        // CodedFrames (1) carries SI24 composition time for hvc1.
        let body = [
            0x91, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xec, 0, 0, 0, 1, 0x26,
        ];
        let f = video(&body).unwrap();
        assert!(f.keyframe && !f.sequence_header);
        assert_eq!(f.composition_offset, -20);
        assert_eq!(f.codec_data().unwrap().as_ref(), &body[8..]);
        // CodedFramesX (3): no composition time, data right after the FourCC.
        let body = [0xa3, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x02];
        let f = video(&body).unwrap();
        assert!(!f.keyframe && !f.sequence_header);
        assert_eq!(f.composition_offset, 0);
        assert_eq!(f.codec_data().unwrap().as_ref(), &body[5..]);
        let key_x = video(&[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x26]).unwrap();
        assert!(key_x.keyframe && key_x.is_start_point());
    }

    #[test]
    fn enhanced_av01_vp09_and_avc1() {
        let seq = video(&[0x90, b'a', b'v', b'0', b'1', 0x81, 0x08, 0x0c, 0x00]).unwrap();
        assert_eq!(seq.video_codec, Some(VideoCodec::Av1));
        assert!(seq.sequence_header);
        // AV1 CodedFrames has no composition time: the OBUs start at byte 5.
        let body = [0x91, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x0a];
        let key = video(&body).unwrap();
        assert!(key.keyframe);
        assert_eq!(key.composition_offset, 0);
        assert_eq!(key.codec_data().unwrap().as_ref(), &body[5..]);
        let ts_seq = VideoTagHeader::parse(&[0x95, b'a', b'v', b'0', b'1', 0x80]).unwrap();
        assert_eq!(ts_seq.packet, VideoPacket::Mpeg2TsSequenceStart);
        assert!(ts_seq.is_sequence_header());
        let vp9 = video(&[0xa1, b'v', b'p', b'0', b'9', 0x86]).unwrap();
        assert_eq!(vp9.video_codec, Some(VideoCodec::Vp9));
        assert!(!vp9.keyframe);
        let avc = video(&[
            0x91, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x28, 0, 0, 0, 1, 0x65,
        ])
        .unwrap();
        assert_eq!(avc.video_codec, Some(VideoCodec::Avc));
        assert_eq!(avc.composition_offset, 40);
        // Unknown FourCC: kept, not refused.
        let vp8 = video(&[0x91, b'v', b'p', b'0', b'8', 0x00]).unwrap();
        assert_eq!(
            vp8.video_codec,
            Some(VideoCodec::Other {
                raw: fourcc(b"vp08")
            })
        );
        assert_eq!(vp8.video_codec.unwrap().to_string(), "'vp08'");
    }

    #[test]
    fn enhanced_sequence_end_metadata_command() {
        let end = video(&[0x92, b'a', b'v', b'0', b'1']).unwrap();
        assert!(!end.keyframe && !end.sequence_header);
        // Metadata (4): frame type is ignored, even "key".
        let meta = video(&[0x94, b'h', b'v', b'c', b'1', 0x02, 0x00, 0x09]).unwrap();
        assert!(!meta.keyframe && !meta.sequence_header);
        // Command frame (5): a command byte, no FourCC.
        let cmd = VideoTagHeader::parse(&[0xd0, 0x01]).unwrap();
        assert_eq!(cmd.packet, VideoPacket::Command(1));
        assert_eq!(cmd.codec, None);
        let f = video(&[0xd1, 0x00]).unwrap();
        assert!(!f.keyframe && !f.sequence_header && f.video_codec.is_none());
        // Command frame type with a Metadata packet is metadata.
        let h = VideoTagHeader::parse(&[0xd4, b'a', b'v', b'0', b'1']).unwrap();
        assert_eq!(h.packet, VideoPacket::Metadata);
    }

    #[test]
    fn enhanced_mod_ex_and_reserved() {
        // ModEx (7): size-1 = 2 (3 bytes of TimestampOffsetNano), then
        // ModExType 0 | PacketType CodedFramesX (3), then the FourCC.
        let body = [
            0x97, 0x02, 0x00, 0x01, 0x00, 0x03, b'h', b'v', b'c', b'1', 0x26,
        ];
        let h = VideoTagHeader::parse(&body).unwrap();
        assert_eq!(h.packet, VideoPacket::CodedFrames);
        assert_eq!(h.codec, Some(VideoCodec::Hevc));
        assert_eq!(h.body_start, 10);
        assert!(h.is_keyframe());
        // A 16-bit ModEx size: 0xff means "read UI16 + 1".
        let mut long = vec![0x97, 0xff, 0x01, 0x2b];
        long.extend(std::iter::repeat_n(0u8, 300));
        long.extend([0x00, b'a', b'v', b'0', b'1', 0x0a]);
        let h = VideoTagHeader::parse(&long).unwrap();
        assert!(h.is_sequence_header());
        assert_eq!(h.codec, Some(VideoCodec::Av1));
        // Reserved packet type 9 is refused, not guessed at.
        assert!(matches!(
            video(&[0x99, b'a', b'v', b'0', b'1']),
            Err(MediaError::Invalid {
                what: "VideoPacketType (reserved)",
                value: 9,
                ..
            })
        ));
    }

    #[test]
    fn enhanced_multitrack() {
        // Multitrack (6): OneTrack (0) | CodedFrames (1), 'avc1', trackId 0,
        // composition 10 ms, data.
        let one = [
            0x96, 0x01, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x0a, 0xaa,
        ];
        let f = video(&one).unwrap();
        assert_eq!(f.video_codec, Some(VideoCodec::Avc));
        assert!(f.keyframe);
        assert_eq!(f.composition_offset, 10);
        assert_eq!(f.codec_data().unwrap().as_ref(), &[0xaa]);
        // ManyTracksManyCodecs (2) | SequenceStart (0): per track FourCC,
        // trackId, UI24 size; the first track is 'hvc1' with 2 bytes.
        let many = [
            0x96, 0x20, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x02, 0x01, 0x02, b'a', b'v',
            b'0', b'1', 0x01, 0x00, 0x00, 0x01, 0x81,
        ];
        let h = VideoTagHeader::parse(&many).unwrap();
        assert!(h.multitrack && h.is_sequence_header());
        assert_eq!(h.codec, Some(VideoCodec::Hevc));
        assert_eq!((h.body_start, h.body_end), (10, 12));
        // ManyTracks (1): shared FourCC, then trackId and a size that runs
        // past the message.
        let short = [
            0x96, 0x13, b'a', b'v', b'0', b'1', 0x00, 0x00, 0x00, 0x09, 0x00,
        ];
        assert!(matches!(
            video(&short),
            Err(MediaError::Truncated {
                what: "multitrack track data",
                ..
            })
        ));
        // Nested multitrack and reserved multitrack types are refused.
        assert!(matches!(
            video(&[0x96, 0x06, b'a', b'v', b'c', b'1']),
            Err(MediaError::Invalid { .. })
        ));
        assert!(matches!(
            video(&[0x96, 0x31, b'a', b'v', b'c', b'1']),
            Err(MediaError::Invalid { .. })
        ));
    }

    #[test]
    fn aac_sequence_header_and_raw() {
        // AAC (10), 44 kHz, 16-bit, stereo = 0xAF; packet type 0; ASC for
        // AAC-LC 44.1 kHz stereo.
        let seq = audio(&[0xaf, 0x00, 0x12, 0x10]).unwrap();
        assert_eq!(seq.kind, FrameKind::Audio);
        assert!(seq.is_audio() && !seq.is_video());
        assert_eq!(seq.audio_codec, Some(AudioCodec::Aac));
        assert_eq!(seq.video_codec, None);
        assert!(seq.sequence_header && !seq.keyframe && !seq.is_start_point());
        assert_eq!(seq.codec_data().unwrap().as_ref(), &[0x12, 0x10]);
        let raw = audio(&[0xaf, 0x01, 0x21, 0x10, 0x04]).unwrap();
        assert!(!raw.sequence_header && !raw.keyframe);
        assert_eq!(raw.composition_offset, 0);
        let h = AudioTagHeader::parse(&[0xaf, 0x01]).unwrap();
        assert_eq!(h.legacy_flags, 0x0f);
        assert!(matches!(
            audio(&[0xaf]),
            Err(MediaError::Truncated {
                what: "AACPacketType",
                need: 2,
                have: 1
            })
        ));
        assert!(matches!(
            audio(&[0xaf, 0x02]),
            Err(MediaError::Invalid {
                what: "AACPacketType",
                ..
            })
        ));
    }

    #[test]
    fn mp3_and_other_legacy_audio() {
        // MP3 (2), 44 kHz, 16-bit, stereo = 0x2F, then an MPEG audio frame.
        let f = audio(&[0x2f, 0xff, 0xfb, 0x90, 0x64]).unwrap();
        assert_eq!(f.audio_codec, Some(AudioCodec::Mp3));
        assert!(!f.sequence_header && !f.keyframe);
        assert_eq!(f.codec_data().unwrap().as_ref(), &[0xff, 0xfb, 0x90, 0x64]);
        assert_eq!(
            audio(&[0xe2, 0xff]).unwrap().audio_codec,
            Some(AudioCodec::Mp3)
        );
        // Speex (11) and G.711 A-law (7) are kept as raw formats.
        assert_eq!(
            audio(&[0xb2, 0x00]).unwrap().audio_codec,
            Some(AudioCodec::Other { raw: 11 })
        );
        assert_eq!(AudioCodec::Other { raw: 7 }.to_string(), "7");
    }

    #[test]
    fn enhanced_audio() {
        // ExHeader (9) | SequenceStart (0), 'Opus', OpusHead.
        let seq = audio(&[0x90, b'O', b'p', b'u', b's', b'O', b'p', b'u', b's']).unwrap();
        assert_eq!(seq.audio_codec, Some(AudioCodec::Opus));
        assert!(seq.sequence_header);
        // CodedFrames (1) with 'mp4a' is raw AAC.
        let aac = audio(&[0x91, b'm', b'p', b'4', b'a', 0x21]).unwrap();
        assert_eq!(aac.audio_codec, Some(AudioCodec::Aac));
        assert!(!aac.sequence_header);
        assert_eq!(aac.codec_data().unwrap().as_ref(), &[0x21]);
        let mp3 = audio(&[0x91, b'.', b'm', b'p', b'3', 0xff]).unwrap();
        assert_eq!(mp3.audio_codec, Some(AudioCodec::Mp3));
        let flac = audio(&[0x90, b'f', b'L', b'a', b'C']).unwrap();
        assert_eq!(
            flac.audio_codec,
            Some(AudioCodec::Other {
                raw: fourcc(b"fLaC")
            })
        );
        // Multitrack (5): OneTrack | SequenceStart, 'mp4a', trackId, ASC.
        let mt =
            AudioTagHeader::parse(&[0x95, 0x00, b'm', b'p', b'4', b'a', 0x00, 0x12, 0x10]).unwrap();
        assert!(mt.multitrack);
        assert_eq!(mt.packet, AudioPacket::SequenceStart);
        assert_eq!((mt.body_start, mt.body_end), (7, 9));
        // ModEx (7) then CodedFrames.
        let modex =
            AudioTagHeader::parse(&[0x97, 0x02, 0, 0, 1, 0x01, b'O', b'p', b'u', b's', 0xfc])
                .unwrap();
        assert_eq!(modex.packet, AudioPacket::CodedFrames);
        assert_eq!(modex.codec, AudioCodec::Opus);
        // Reserved AudioPacketType 3.
        assert!(matches!(
            audio(&[0x93, b'O', b'p', b'u', b's']),
            Err(MediaError::Invalid { value: 3, .. })
        ));
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(
            video(&[]).unwrap_err(),
            MediaError::Empty {
                kind: FrameKind::Video
            }
        );
        assert_eq!(
            audio(&[]).unwrap_err(),
            MediaError::Empty {
                kind: FrameKind::Audio
            }
        );
        assert_eq!(audio(&[]).unwrap_err().to_string(), "empty audio message");
    }

    #[test]
    fn truncated_bodies() {
        assert_eq!(
            video(&[0x17, 0x01, 0x00]).unwrap_err(),
            MediaError::Truncated {
                what: "CompositionTime",
                need: 5,
                have: 3
            }
        );
        assert_eq!(
            video(&[0x17]).unwrap_err().to_string(),
            "truncated AVCPacketType: needs 2 bytes, only 1 present"
        );
        assert!(matches!(
            video(&[0x90, b'h', b'v']),
            Err(MediaError::Truncated {
                what: "video FourCC",
                need: 5,
                have: 3
            })
        ));
        assert!(matches!(
            video(&[0x91, b'h', b'v', b'c', b'1', 0x00]),
            Err(MediaError::Truncated {
                what: "CompositionTime",
                ..
            })
        ));
        assert!(matches!(
            video(&[0x97, 0x05, 0x00]),
            Err(MediaError::Truncated {
                what: "ModEx data",
                ..
            })
        ));
        assert!(matches!(
            audio(&[0x90, b'm', b'p']),
            Err(MediaError::Truncated {
                what: "audio FourCC",
                ..
            })
        ));
    }

    #[test]
    fn data_frame() {
        let f = Frame::data(5, Bytes::from_static(b"\x02\x00\x0aonMetaData"));
        assert_eq!(f.kind, FrameKind::Data);
        assert!(!f.is_audio() && !f.is_video() && !f.keyframe && !f.sequence_header);
        assert_eq!(f.codec_data().unwrap(), f.payload);
    }

    /// Every prefix of every vector, and pseudo-random bodies, either parse
    /// or fail with an error; none panics.
    #[test]
    fn no_panic_on_any_prefix_or_noise() {
        let vectors: &[&[u8]] = &[
            LEGACY_AVC_SEQ,
            &[
                0x96, 0x20, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x02, 0x01, 0x02,
            ],
            &[0x97, 0xff, 0x01, 0x2b, 0x00],
            &[
                0x95, 0x10, b'm', b'p', b'4', b'a', 0x00, 0x00, 0x00, 0x02, 0x12, 0x10,
            ],
            &[
                0x97, 0x02, 0, 0, 1, 0x05, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
        ];
        for v in vectors {
            for end in 0..=v.len() {
                let b = Bytes::copy_from_slice(&v[..end]);
                if let Ok(f) = Frame::parse_video(0, b.clone()) {
                    let _ = f.codec_data();
                }
                if let Ok(f) = Frame::parse_audio(0, b) {
                    let _ = f.codec_data();
                }
            }
        }
        let mut state: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut body = Vec::new();
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let len = (state >> 24) % 24;
            for _ in 0..len {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                body.push((state >> 24) as u8);
            }
            let b = Bytes::from(body);
            if let Ok(f) = Frame::parse_video(0, b.clone()) {
                let _ = f.codec_data();
            }
            if let Ok(f) = Frame::parse_audio(0, b) {
                let _ = f.codec_data();
            }
        }
    }
}
