//! MPEG audio (MP3 and its Layer I and II cousins) frame headers. FLV's
//! MP3 has no sequence header: a stream's parameters come from the header
//! of its first coded frame.
//!
//! Defined by: ISO/IEC 11172-3 2.4.1.3 and 2.4.2.3 (header, bitrate and
//! sampling frequency tables), ISO/IEC 13818-3 2.4.2.3 (the lower
//! sampling frequencies of MPEG-2), and the widespread MPEG-2.5 extension
//! (version bits 00: a quarter of the MPEG-1 rates).

use super::MediaError;

/// Which MPEG audio standard a frame follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpegVersion {
    Mpeg1,
    Mpeg2,
    /// The unofficial MPEG-2.5.
    Mpeg25,
}

/// An MPEG audio frame header (4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mp3Header {
    pub version: MpegVersion,
    /// 1, 2 or 3.
    pub layer: u8,
    /// kbit/s; None for the "free format" index 0.
    pub bitrate_kbps: Option<u32>,
    pub sample_rate: u32,
    /// 1 for single channel mode, else 2.
    pub channels: u8,
    pub samples_per_frame: u32,
    /// Bytes in the frame, header included; None for free format.
    pub frame_len: Option<u32>,
}

/// Bits of the 11-bit frame sync.
const SYNC: u16 = 0xffe0;
/// Bitrates in kbit/s by index 1..=14 (11172-3 Table 2.4.2.3 and 13818-3).
const BITRATES_V1: [[u32; 14]; 3] = [
    [
        32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
];
const BITRATES_V2_LAYER1: [u32; 14] = [
    32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
];
const BITRATES_V2_LAYER23: [u32; 14] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
const SAMPLE_RATES_V1: [u32; 3] = [44_100, 48_000, 32_000];
/// Bitrate index 15 is forbidden.
const BITRATE_INDEX_BAD: u8 = 15;
/// Channel mode 3 is single channel.
const CHANNEL_MODE_MONO: u8 = 3;

/// Parses the header at the start of an MPEG audio frame.
pub fn parse_mp3_header(frame: &[u8]) -> Result<Mp3Header, MediaError> {
    let h: [u8; 4] =
        frame
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(MediaError::Truncated {
                what: "MPEG audio frame header",
                need: 4,
                have: frame.len(),
            })?;
    let invalid = |what, value: u8, offset| MediaError::Invalid {
        what,
        value: u64::from(value),
        offset,
    };
    if u16::from_be_bytes([h[0], h[1]]) & SYNC != SYNC {
        return Err(MediaError::Invalid {
            what: "MPEG audio frame sync",
            value: u64::from(u16::from_be_bytes([h[0], h[1]])),
            offset: 0,
        });
    }
    let version = match (h[1] >> 3) & 0x03 {
        0 => MpegVersion::Mpeg25,
        2 => MpegVersion::Mpeg2,
        3 => MpegVersion::Mpeg1,
        other => return Err(invalid("MPEG audio version ID (reserved)", other, 1)),
    };
    let layer = match (h[1] >> 1) & 0x03 {
        1 => 3,
        2 => 2,
        3 => 1,
        other => return Err(invalid("MPEG audio layer (reserved)", other, 1)),
    };
    let bitrate_index = h[2] >> 4;
    let rate_index = (h[2] >> 2) & 0x03;
    let padding = u32::from((h[2] >> 1) & 1);
    if bitrate_index == BITRATE_INDEX_BAD {
        return Err(invalid("MPEG audio bitrate_index", bitrate_index, 2));
    }
    let base = *SAMPLE_RATES_V1.get(usize::from(rate_index)).ok_or(invalid(
        "MPEG audio sampling_frequency (reserved)",
        rate_index,
        2,
    ))?;
    let sample_rate = match version {
        MpegVersion::Mpeg1 => base,
        MpegVersion::Mpeg2 => base / 2,
        MpegVersion::Mpeg25 => base / 4,
    };
    let table: &[u32; 14] = match (version, layer) {
        (MpegVersion::Mpeg1, l) => &BITRATES_V1[usize::from(l - 1)],
        (_, 1) => &BITRATES_V2_LAYER1,
        _ => &BITRATES_V2_LAYER23,
    };
    let bitrate_kbps = bitrate_index
        .checked_sub(1)
        .and_then(|i| table.get(usize::from(i)))
        .copied();
    let samples_per_frame = match (layer, version) {
        (1, _) => 384,
        (2, _) | (3, MpegVersion::Mpeg1) => 1152,
        _ => 576,
    };
    // A Layer I frame counts 4-byte slots; the others bytes.
    let frame_len = bitrate_kbps.map(|kbps| {
        let bits = u64::from(kbps) * 1000 * u64::from(samples_per_frame);
        if layer == 1 {
            ((bits / 32 / u64::from(sample_rate)) as u32 + padding) * 4
        } else {
            (bits / 8 / u64::from(sample_rate)) as u32 + padding
        }
    });
    Ok(Mp3Header {
        version,
        layer,
        bitrate_kbps,
        sample_rate,
        channels: if h[3] >> 6 == CHANNEL_MODE_MONO { 1 } else { 2 },
        samples_per_frame,
        frame_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, data};

    /// libmp3lame 44.1 kHz stereo 128 kb/s (ffmpeg: "mp3, 44100 Hz,
    /// stereo, 128 kb/s"): 1152 samples, 144 * 128000 / 44100 = 417 bytes
    /// (ffmpeg's first tag is 418 bytes: the tag header byte and the frame).
    #[test]
    fn lame_44100_stereo() {
        let h = parse_mp3_header(&data(&vectors::audio(0, vectors::MP3_44100_FRAME))).unwrap();
        assert_eq!(h.version, MpegVersion::Mpeg1);
        assert_eq!(
            (h.layer, h.bitrate_kbps, h.sample_rate),
            (3, Some(128), 44_100)
        );
        assert_eq!((h.channels, h.samples_per_frame), (2, 1152));
        assert_eq!(h.frame_len, Some(417));
    }

    /// MPEG-2 Layer III at 22.05 kHz mono 32 kb/s: 576 samples, 72 *
    /// 32000 / 22050 = 104 bytes, and ffmpeg's tags are 105 bytes.
    #[test]
    fn lame_22050_mono() {
        let h = parse_mp3_header(&data(&vectors::audio(0, vectors::MP3_22050_FRAME))).unwrap();
        assert_eq!(h.version, MpegVersion::Mpeg2);
        assert_eq!(
            (h.sample_rate, h.channels, h.samples_per_frame),
            (22_050, 1, 576)
        );
        assert_eq!((h.bitrate_kbps, h.frame_len), (Some(32), Some(104)));
    }

    #[test]
    fn other_layers_and_errors() {
        // MPEG-1 Layer II 48 kHz 192 kb/s: 144 * 192000 / 48000 = 576.
        let l2 = parse_mp3_header(&[0xff, 0xfd, 0xa4, 0x00]).unwrap();
        assert_eq!(
            (l2.layer, l2.sample_rate, l2.frame_len),
            (2, 48_000, Some(576))
        );
        // MPEG-1 Layer I 32 kHz 32 kb/s, padded: (12 * 32000 / 32000 + 1) * 4.
        let l1 = parse_mp3_header(&[0xff, 0xff, 0x1a, 0xc0]).unwrap();
        assert_eq!(
            (l1.layer, l1.samples_per_frame, l1.frame_len),
            (1, 384, Some(52))
        );
        assert_eq!(l1.channels, 1);
        // MPEG-2.5 at 11.025 kHz, free format.
        let free = parse_mp3_header(&[0xff, 0xe3, 0x00, 0x00]).unwrap();
        assert_eq!(
            (free.version, free.sample_rate),
            (MpegVersion::Mpeg25, 11_025)
        );
        assert_eq!((free.bitrate_kbps, free.frame_len), (None, None));
        for (bytes, what) in [
            ([0xff, 0x0b, 0x90, 0x00], "MPEG audio frame sync"),
            ([0xff, 0xeb, 0x90, 0x00], "MPEG audio version ID (reserved)"),
            ([0xff, 0xf9, 0x90, 0x00], "MPEG audio layer (reserved)"),
            ([0xff, 0xfb, 0xf0, 0x00], "MPEG audio bitrate_index"),
            (
                [0xff, 0xfb, 0x9c, 0x00],
                "MPEG audio sampling_frequency (reserved)",
            ),
        ] {
            assert!(
                matches!(parse_mp3_header(&bytes), Err(MediaError::Invalid { what: w, .. }) if w == what),
                "{what}"
            );
        }
        assert!(matches!(
            parse_mp3_header(&[0xff, 0xfb]),
            Err(MediaError::Truncated { need: 4, .. })
        ));
    }
}
