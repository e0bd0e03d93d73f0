//! The synthetic stream: H.264 + AAC in FLV tag bodies, made without an
//! encoder, sized to a bitrate, and stamped so players can measure latency
//! and count missing frames. Pure: no socket, no clock (the caller passes
//! the send time).
//!
//! # Video frame layout
//!
//! Every coded video frame is a legacy AVC NALU message (FLV v10.1 E.4.3.1)
//! holding two NAL units in 4-byte length form:
//!
//! ```text
//! offset  size  value
//!  0       1    0x17 keyframe / 0x27 inter frame (frame type | codec id 7)
//!  1       1    0x01 AVCPacketType: NALU
//!  2       3    composition time 0
//!  5       4    NAL length = 44
//!  9       1    0x06 NAL header: SEI (H.264 7.3.2.3)
//! 10       1    0x05 payloadType: user_data_unregistered (H.264 D.1.6)
//! 11       1    0x28 payloadSize: 40
//! 12      16    MARKER_UUID
//! 28       8    frame sequence number: u32 as 8 lowercase hex digits
//! 36      16    send time: µs since the Unix epoch (CLOCK_REALTIME) as
//!               16 lowercase hex digits
//! 52       1    0x80 rbsp_trailing_bits
//! 53       4    NAL length of the filler (only if the frame is larger)
//! 57       1    0x0C NAL header: filler data (H.264 7.3.2.7)
//! 58       …    0xFF filler bytes, the last one 0x80
//! ```
//!
//! The stamp is ASCII hex, not binary, so it never holds the `00 00 0x`
//! patterns that H.264 emulation prevention would have to escape: the SEI
//! stays valid and the stamp stays at a fixed offset ([`read_stamp`] reads
//! it there). The realtime clock is used so a `play` in another process on
//! the same host can measure latency against a separate `publish`.
//!
//! The frames carry no picture (a decoder shows nothing), but the sequence
//! header holds a real 1280x720 High-profile SPS/PPS from x264, so servers
//! and muxers that parse it see a plausible stream.
//!
//! # Audio
//!
//! AAC LC, 44.1 kHz stereo: a 2-byte AudioSpecificConfig sequence header,
//! then every 1024 samples a silent raw AAC frame (from FFmpeg's encoder)
//! padded with zeros to the audio bitrate.

use bytes::Bytes;
use proto::media::Frame;
use proto::rtmp::amf::{encode_amf0, Amf0Value};

/// SPS of a 1280x720 High profile level 3.1 stream, as x264 wrote it
/// (`ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30 -c:v libx264
/// -preset veryfast -profile:v high -level 3.1 -f h264`).
pub const SPS_1280X720: [u8; 24] = [
    0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02, 0x80, 0x2d, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00,
    0x80, 0x00, 0x00, 0x1e, 0x47, 0x8c, 0x19, 0x50,
];
/// The PPS x264 wrote with [`SPS_1280X720`].
pub const PPS: [u8; 4] = [0x68, 0xef, 0x0f, 0xcb];
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;

/// Marks our SEI among others (no zero bytes, see the module doc).
pub const MARKER_UUID: [u8; 16] = *b"shardcast-bench1";

/// AAC sampling rate and samples per frame.
pub const AUDIO_RATE: u32 = 44_100;
pub const AUDIO_SAMPLES_PER_FRAME: u32 = 1024;
/// AudioSpecificConfig: AAC LC (2), 44.1 kHz (index 4), 2 channels.
const AAC_CONFIG: [u8; 2] = [0x12, 0x10];
/// One silent AAC LC stereo frame (a CPE of zeros, then ID_END), as FFmpeg's
/// AAC encoder writes for digital silence.
const AAC_SILENCE: [u8; 6] = [0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c];
/// FLV AudioTagHeader for AAC, 44 kHz, 16-bit, stereo (E.4.2.1).
const AUDIO_TAG: u8 = 0xAF;

/// A keyframe weighs this many inter frames, roughly as in real streams.
pub const KEYFRAME_WEIGHT: u64 = 4;

/// Offsets in a video tag body (see the module doc).
const SEI_AT: usize = 9;
const STAMP_SEQ_AT: usize = 28;
const STAMP_TIME_AT: usize = 36;
const SEI_END: usize = 53;
/// How many bytes of a video tag body [`read_stamp`] needs: a player keeps
/// no more of a frame than this.
pub const STAMP_PREFIX_LEN: usize = SEI_END - 1;
/// A frame with a filler NAL needs at least its length and header and one
/// trailing byte.
const FILLER_OVERHEAD: usize = 4 + 1 + 1;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct SynthConfig {
    /// Video bits per second (FLV tag bodies, headers included).
    pub video_bps: u64,
    pub fps: f64,
    /// Seconds between keyframes.
    pub gop_s: f64,
    pub audio: bool,
    /// Audio bits per second (FLV tag bodies).
    pub audio_bps: u64,
}

impl SynthConfig {
    /// Frames per GOP, at least 1.
    pub fn gop_frames(&self) -> u64 {
        ((self.gop_s * self.fps).round() as u64).max(1)
    }

    /// (keyframe bytes, inter frame bytes) so a GOP averages `video_bps`.
    pub fn video_frame_sizes(&self) -> (usize, usize) {
        let n = self.gop_frames();
        let gop_bytes = self.video_bps as f64 / 8.0 * (n as f64 / self.fps);
        let inter = (gop_bytes / (KEYFRAME_WEIGHT + n - 1) as f64) as usize;
        let inter = inter.max(SEI_END);
        let key = if n == 1 {
            (gop_bytes as usize).max(SEI_END)
        } else {
            inter * KEYFRAME_WEIGHT as usize
        };
        (key, inter)
    }

    /// Bytes of one audio tag body.
    pub fn audio_frame_size(&self) -> usize {
        let per_s = f64::from(AUDIO_RATE) / f64::from(AUDIO_SAMPLES_PER_FRAME);
        let size = (self.audio_bps as f64 / 8.0 / per_s) as usize;
        size.max(2 + AAC_SILENCE.len())
    }
}

/// The send stamp of one video frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Video frame sequence number, from 0.
    pub seq: u32,
    /// When the publisher made it: µs since the Unix epoch.
    pub sent_us: u64,
}

/// Makes the frames of the synthetic stream in order.
pub struct Synth {
    config: SynthConfig,
    key_size: usize,
    inter_size: usize,
    audio_size: usize,
    video_n: u64,
}

impl Synth {
    pub fn new(config: SynthConfig) -> Self {
        let (key_size, inter_size) = config.video_frame_sizes();
        Synth {
            config,
            key_size,
            inter_size,
            audio_size: config.audio_frame_size(),
            video_n: 0,
        }
    }

    /// `["onMetaData", {...}]` in AMF0, as players receive it.
    pub fn metadata_body(&self) -> Vec<u8> {
        let n = |v: f64| Amf0Value::Number(v);
        let mut props = vec![
            ("duration".into(), n(0.0)),
            ("width".into(), n(f64::from(WIDTH))),
            ("height".into(), n(f64::from(HEIGHT))),
            (
                "videodatarate".into(),
                n(self.config.video_bps as f64 / 1000.0),
            ),
            ("framerate".into(), n(self.config.fps)),
            ("videocodecid".into(), n(7.0)),
        ];
        if self.config.audio {
            props.extend([
                (
                    "audiodatarate".into(),
                    n(self.config.audio_bps as f64 / 1000.0),
                ),
                ("audiosamplerate".into(), n(f64::from(AUDIO_RATE))),
                ("audiosamplesize".into(), n(16.0)),
                ("stereo".into(), Amf0Value::Boolean(true)),
                ("audiocodecid".into(), n(10.0)),
            ]);
        }
        props.push((
            "encoder".into(),
            Amf0Value::String(concat!("shardcast-bench ", env!("CARGO_PKG_VERSION")).into()),
        ));
        let mut body = Vec::with_capacity(512);
        encode_amf0(&Amf0Value::String("onMetaData".into()), &mut body);
        encode_amf0(&Amf0Value::EcmaArray(props), &mut body);
        body
    }

    /// The AVC sequence header (an AVCDecoderConfigurationRecord).
    pub fn video_sequence_header(&self) -> Frame {
        let mut b = vec![0x17, 0x00, 0, 0, 0];
        b.extend_from_slice(&[
            0x01,
            SPS_1280X720[1],
            SPS_1280X720[2],
            SPS_1280X720[3],
            0xFF, // 4-byte NAL lengths
            0xE1, // one SPS
        ]);
        b.extend_from_slice(&(SPS_1280X720.len() as u16).to_be_bytes());
        b.extend_from_slice(&SPS_1280X720);
        b.push(0x01); // one PPS
        b.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
        b.extend_from_slice(&PPS);
        Frame::parse_video(0, Bytes::from(b)).expect("the built-in sequence header parses")
    }

    /// The AAC sequence header.
    pub fn audio_sequence_header(&self) -> Frame {
        let b = vec![AUDIO_TAG, 0x00, AAC_CONFIG[0], AAC_CONFIG[1]];
        Frame::parse_audio(0, Bytes::from(b)).expect("the built-in sequence header parses")
    }

    /// The next video frame, at RTMP time `ts_ms`, stamped with `sent_us`.
    /// Every GOP starts with a keyframe.
    pub fn next_video(&mut self, ts_ms: u32, sent_us: u64) -> Frame {
        let key = self.video_n.is_multiple_of(self.config.gop_frames());
        let seq = self.video_n as u32;
        self.video_n += 1;
        let size = if key { self.key_size } else { self.inter_size };
        let body = video_body(key, Stamp { seq, sent_us }, size);
        Frame::parse_video(ts_ms, Bytes::from(body)).expect("generated video parses")
    }

    /// An audio frame at RTMP time `ts_ms`.
    pub fn audio_frame(&self, ts_ms: u32) -> Frame {
        let mut b = Vec::with_capacity(self.audio_size);
        b.extend_from_slice(&[AUDIO_TAG, 0x01]);
        b.extend_from_slice(&AAC_SILENCE);
        b.resize(self.audio_size, 0);
        Frame::parse_audio(ts_ms, Bytes::from(b)).expect("generated audio parses")
    }
}

/// A video tag body of `size` bytes (at least [`SEI_END`]) with `stamp`.
fn video_body(key: bool, stamp: Stamp, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(size.max(SEI_END));
    b.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
    b.extend_from_slice(&((SEI_END - SEI_AT) as u32).to_be_bytes());
    b.extend_from_slice(&[0x06, 0x05, 40]);
    b.extend_from_slice(&MARKER_UUID);
    b.extend_from_slice(format!("{:08x}{:016x}", stamp.seq, stamp.sent_us).as_bytes());
    b.push(0x80);
    debug_assert_eq!(b.len(), SEI_END);
    if size >= SEI_END + FILLER_OVERHEAD {
        let nal_len = size - SEI_END - 4;
        b.extend_from_slice(&(nal_len as u32).to_be_bytes());
        b.push(0x0C);
        b.resize(size - 1, 0xFF);
        b.push(0x80);
    }
    b
}

/// The stamp of a video tag body made by [`Synth`], or None if it has none
/// (another publisher's stream, a sequence header).
pub fn read_stamp(body: &[u8]) -> Option<Stamp> {
    if body.get(SEI_AT..SEI_AT + 3) != Some(&[0x06, 0x05, 40]) {
        return None;
    }
    if body.get(SEI_AT + 3..STAMP_SEQ_AT)? != MARKER_UUID {
        return None;
    }
    let seq = hex_u64(body.get(STAMP_SEQ_AT..STAMP_TIME_AT)?)?;
    let sent_us = hex_u64(body.get(STAMP_TIME_AT..STAMP_PREFIX_LEN)?)?;
    Some(Stamp {
        seq: u32::try_from(seq).ok()?,
        sent_us,
    })
}

fn hex_u64(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::media::{parse_aac_config, parse_avc_config};

    fn config() -> SynthConfig {
        SynthConfig {
            video_bps: 2_500_000,
            fps: 30.0,
            gop_s: 2.0,
            audio: true,
            audio_bps: 128_000,
        }
    }

    #[test]
    fn sequence_headers_parse_as_1280x720_aac_lc() {
        let s = Synth::new(config());
        let v = s.video_sequence_header();
        assert!(v.sequence_header && v.is_video());
        let avc = parse_avc_config(&v.codec_data().unwrap()).unwrap();
        assert_eq!((avc.width, avc.height), (Some(WIDTH), Some(HEIGHT)));
        assert_eq!((avc.profile, avc.level, avc.nalu_length_size), (100, 31, 4));
        let a = s.audio_sequence_header();
        assert!(a.sequence_header && a.is_audio());
        let aac = parse_aac_config(&a.codec_data().unwrap()).unwrap();
        assert_eq!(
            (aac.object_type, aac.sample_rate, aac.channels),
            (2, 44_100, 2)
        );
    }

    #[test]
    fn a_gop_averages_the_bitrate_and_starts_with_a_keyframe() {
        let mut s = Synth::new(config());
        let frames: Vec<Frame> = (0..120).map(|i| s.next_video(i * 33, 7)).collect();
        let keys: Vec<usize> = (0..120).filter(|&i| frames[i].keyframe).collect();
        assert_eq!(keys, [0, 60]);
        let bytes: usize = frames[..60].iter().map(|f| f.payload.len()).sum();
        let bps = bytes as f64 * 8.0 / 2.0;
        assert!((bps / 2_500_000.0 - 1.0).abs() < 0.01, "{bps} bit/s");
        // Audio: 43.07 frames/s of 371 bytes ≈ 128 kbit/s.
        let a = s.audio_frame(0);
        let abps = a.payload.len() as f64 * 8.0 * 44_100.0 / 1024.0;
        assert!((abps / 128_000.0 - 1.0).abs() < 0.01, "{abps} bit/s");
    }

    #[test]
    fn stamps_round_trip_at_their_offsets() {
        let mut s = Synth::new(config());
        let _ = s.next_video(0, 1);
        let f = s.next_video(33, 0x0001_7F00_1234_5678);
        let stamp = read_stamp(&f.payload).unwrap();
        assert_eq!(
            stamp,
            Stamp {
                seq: 1,
                sent_us: 0x0001_7F00_1234_5678
            }
        );
        assert_eq!(&f.payload[28..36], b"00000001");
        // The NAL lengths cover the body exactly.
        let mut at = 5;
        let mut nal_types = Vec::new();
        while at < f.payload.len() {
            let len = u32::from_be_bytes(f.payload[at..at + 4].try_into().unwrap()) as usize;
            nal_types.push(f.payload[at + 4] & 0x1F);
            at += 4 + len;
        }
        assert_eq!(at, f.payload.len());
        assert_eq!(nal_types, [6, 12]);
        // No 00 00 0x anywhere in the SEI: no emulation prevention needed.
        assert!(!f.payload[9..53].windows(2).any(|w| w == [0, 0]));
        assert_eq!(read_stamp(&s.video_sequence_header().payload), None);
    }

    #[test]
    fn tiny_frames_keep_the_stamp() {
        let mut s = Synth::new(SynthConfig {
            video_bps: 1000,
            ..config()
        });
        let key = s.next_video(0, 4);
        assert_eq!(read_stamp(&key.payload).map(|s| s.sent_us), Some(4));
        let f = s.next_video(100, 5);
        assert_eq!(f.payload.len(), SEI_END);
        assert_eq!(read_stamp(&f.payload).map(|s| s.sent_us), Some(5));
    }
}
