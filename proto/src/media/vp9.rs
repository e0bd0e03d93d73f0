//! VP9 decoder configuration: the VPCodecConfigurationRecord (`vpcC`) an
//! E-RTMP `vp09` SequenceStart carries, the picture size from a keyframe's
//! uncompressed header (vpcC has none), and the RFC 6381 CODECS string.
//!
//! Defined by: VP Codec ISO Media File Format Binding v1.0 (2017) "VP
//! Codec Configuration Box" and "Codecs Parameter String"; VP9 Bitstream &
//! Decoding Process Specification v0.6 6.2 (uncompressed_header),
//! 6.2.1 (frame_sync_code), 6.2.2 (color_config), 6.2.3 (frame_size).

use bytes::Bytes;

use super::bits::{BitReader, ByteReader};
use super::MediaError;

/// The FullBox version and flags of `vpcC` (version 1, flags 0), which
/// ffmpeg's FLV muxer puts in front of the record it sends.
const FULL_BOX_HEADER: [u8; 4] = [1, 0, 0, 0];
/// profile, level, the packed byte, three colour bytes,
/// codecInitializationDataSize.
const RECORD_FIXED_LEN: usize = 8;

/// The decoder configuration of a VP9 stream (`vpcC`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vp9Config {
    /// True when the record started with the FullBox version and flags
    /// (`01 00 00 00`), as ffmpeg sends it.
    pub full_box_header: bool,
    pub profile: u8,
    /// Ten times the level (10 is level 1, 41 level 4.1).
    pub level: u8,
    pub bit_depth: u8,
    /// 0 4:2:0 vertical, 1 4:2:0 colocated, 2 4:2:2, 3 4:4:4.
    pub chroma_subsampling: u8,
    pub video_full_range: bool,
    pub colour_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
    pub codec_initialization_data: Bytes,
    /// The record without the FullBox header: what goes in a `vpcC` box
    /// after the version and flags its writer puts there.
    pub payload: Bytes,
}

/// Parses a VPCodecConfigurationRecord, with or without the 4-byte FullBox
/// version and flags in front. The record's length tells which: with
/// them it is 12 bytes plus codecInitializationDataSize.
pub fn parse_vp9_config(record: &[u8]) -> Result<Vp9Config, MediaError> {
    let init_size_at = |start: usize| {
        record
            .get(start + RECORD_FIXED_LEN - 2..start + RECORD_FIXED_LEN)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let full_box_header = record.starts_with(&FULL_BOX_HEADER)
        && init_size_at(FULL_BOX_HEADER.len())
            .is_some_and(|n| record.len() == FULL_BOX_HEADER.len() + RECORD_FIXED_LEN + n);
    let body = if full_box_header {
        record.get(FULL_BOX_HEADER.len()..).unwrap_or_default()
    } else {
        record
    };
    let mut r = ByteReader::new(body);
    let profile = r.u8("profile")?;
    let level = r.u8("level")?;
    let packed_at = r.pos();
    let packed = r.u8("bitDepth, chromaSubsampling, videoFullRangeFlag")?;
    let bit_depth = packed >> 4;
    if !matches!(bit_depth, 8 | 10 | 12) {
        return Err(MediaError::Invalid {
            what: "vpcC bitDepth (8, 10 or 12)",
            value: u64::from(bit_depth),
            offset: packed_at,
        });
    }
    let colour_primaries = r.u8("colourPrimaries")?;
    let transfer_characteristics = r.u8("transferCharacteristics")?;
    let matrix_coefficients = r.u8("matrixCoefficients")?;
    let init_len = usize::from(r.u16("codecInitializationDataSize")?);
    let init = r.take(init_len, "codecInitializationData")?;
    Ok(Vp9Config {
        full_box_header,
        profile,
        level,
        bit_depth,
        chroma_subsampling: (packed >> 1) & 0x07,
        video_full_range: packed & 1 == 1,
        colour_primaries,
        transfer_characteristics,
        matrix_coefficients,
        codec_initialization_data: Bytes::copy_from_slice(init),
        payload: Bytes::copy_from_slice(body.get(..r.pos()).unwrap_or_default()),
    })
}

impl Vp9Config {
    /// The codecs parameter in its short form, `vp09.PP.LL.DD`: two-digit
    /// profile, level and bit depth, e.g. `vp09.00.10.08`. The optional
    /// colour fields may be left out when they are the defaults.
    pub fn codecs(&self) -> String {
        format!(
            "vp09.{:02}.{:02}.{:02}",
            self.profile, self.level, self.bit_depth
        )
    }

    /// The level as written: `1`, `4.1`.
    pub fn level_name(&self) -> String {
        match self.level % 10 {
            0 => (self.level / 10).to_string(),
            minor => format!("{}.{minor}", self.level / 10),
        }
    }
}

/// What a VP9 keyframe's uncompressed header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vp9Keyframe {
    pub profile: u8,
    pub bit_depth: u8,
    pub width: u32,
    pub height: u32,
}

/// frame_sync_code (6.2.1).
const FRAME_SYNC_CODE: u32 = 0x49_83_42;
/// color_space CS_RGB (7.2.2).
const CS_RGB: u32 = 7;

/// The profile and size of a keyframe from its uncompressed header (6.2);
/// `Ok(None)` for a frame that is not a keyframe (an inter frame or
/// show_existing_frame). A superframe's first frame is at its start, so a
/// whole FLV message body can be passed.
pub fn vp9_keyframe_size(frame: &[u8]) -> Result<Option<Vp9Keyframe>, MediaError> {
    let mut r = BitReader::new(frame);
    let marker = r.bits(2, "frame_marker")?;
    if marker != 2 {
        return Err(MediaError::Invalid {
            what: "frame_marker (2)",
            value: u64::from(marker),
            offset: 0,
        });
    }
    let low = r.bits(1, "profile_low_bit")?;
    let high = r.bits(1, "profile_high_bit")?;
    let profile = (high << 1 | low) as u8;
    if profile == 3 {
        r.skip(1, "reserved_zero")?;
    }
    if r.flag("show_existing_frame")? {
        return Ok(None);
    }
    // frame_type 0 is KEY_FRAME.
    if r.flag("frame_type")? {
        return Ok(None);
    }
    r.skip(2, "show_frame, error_resilient_mode")?;
    let at = r.byte_pos();
    let sync = r.bits(24, "frame_sync_code")?;
    if sync != FRAME_SYNC_CODE {
        return Err(MediaError::Invalid {
            what: "frame_sync_code (0x498342)",
            value: u64::from(sync),
            offset: at,
        });
    }
    let bit_depth = if profile >= 2 {
        if r.flag("ten_or_twelve_bit")? {
            12
        } else {
            10
        }
    } else {
        8
    };
    let color_space = r.bits(3, "color_space")?;
    let odd_profile = profile == 1 || profile == 3;
    if color_space != CS_RGB {
        r.skip(1, "color_range")?;
        if odd_profile {
            r.skip(3, "subsampling_x, subsampling_y, reserved_zero")?;
        }
    } else if odd_profile {
        r.skip(1, "reserved_zero")?;
    }
    let width = r.bits(16, "frame_width_minus_1")? + 1;
    let height = r.bits(16, "frame_height_minus_1")? + 1;
    Ok(Some(Vp9Keyframe {
        profile,
        bit_depth,
        width,
        height,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, data};

    /// ffmpeg's record: `01 00 00 00` (FullBox version 1, flags 0), then
    /// profile 0, level 20 (2.0), 8-bit 4:2:0 colocated, colours
    /// unspecified (2). ffmpeg reports "vp9 (Profile 0), yuv420p, 320x240".
    #[test]
    fn libvpx_profile_0() {
        let c = parse_vp9_config(&data(&vectors::video(0, vectors::VP9_SEQ))).unwrap();
        assert!(c.full_box_header);
        assert_eq!((c.profile, c.level, c.bit_depth), (0, 20, 8));
        assert_eq!((c.chroma_subsampling, c.video_full_range), (1, false));
        assert_eq!(
            (
                c.colour_primaries,
                c.transfer_characteristics,
                c.matrix_coefficients
            ),
            (2, 2, 2)
        );
        assert!(c.codec_initialization_data.is_empty());
        assert_eq!(c.payload.len(), 8);
        assert_eq!(c.codecs(), "vp09.00.20.08");
        assert_eq!(c.level_name(), "2");
        let key = vp9_keyframe_size(&data(&vectors::video(0, vectors::VP9_KEY))).unwrap();
        assert_eq!(
            key,
            Some(Vp9Keyframe {
                profile: 0,
                bit_depth: 8,
                width: 320,
                height: 240
            })
        );
        // The same record without the FullBox header reads the same.
        let plain = parse_vp9_config(&c.payload).unwrap();
        assert!(!plain.full_box_header);
        assert_eq!(plain.payload, c.payload);
        assert_eq!(plain.codecs(), c.codecs());
    }

    /// Profile 2, 10-bit, 352x288: the keyframe's ten_or_twelve_bit.
    #[test]
    fn libvpx_profile_2_ten_bit() {
        let c = parse_vp9_config(&data(&vectors::video(0, vectors::VP9_10_SEQ))).unwrap();
        assert_eq!(c.codecs(), "vp09.02.20.10");
        let key = vp9_keyframe_size(&data(&vectors::video(0, vectors::VP9_10_KEY)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (key.profile, key.bit_depth, key.width, key.height),
            (2, 10, 352, 288)
        );
    }

    #[test]
    fn errors_inter_frames_and_prefixes() {
        // An inter frame: frame_type 1.
        assert_eq!(vp9_keyframe_size(&[0x86, 0x00]), Ok(None));
        // show_existing_frame.
        assert_eq!(vp9_keyframe_size(&[0x88]), Ok(None));
        assert!(matches!(
            vp9_keyframe_size(&[0x42]),
            Err(MediaError::Invalid {
                what: "frame_marker (2)",
                ..
            })
        ));
        assert!(matches!(
            vp9_keyframe_size(&[0x82, 0x49, 0x83, 0x43, 0, 0, 0, 0, 0]),
            Err(MediaError::Invalid { offset: 1, .. })
        ));
        let key = data(&vectors::video(0, vectors::VP9_KEY));
        for end in 0..9 {
            assert!(vp9_keyframe_size(&key[..end]).is_err(), "{end}");
        }
        let record = data(&vectors::video(0, vectors::VP9_SEQ));
        for end in 0..record.len() {
            let _ = parse_vp9_config(&record[..end]);
        }
        let mut bad = record.clone();
        bad[6] = 0x92;
        assert!(matches!(
            parse_vp9_config(&bad),
            Err(MediaError::Invalid { offset: 2, .. })
        ));
    }
}
