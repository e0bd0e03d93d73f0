//! H.265/HEVC decoder configuration: the HEVCDecoderConfigurationRecord an
//! E-RTMP `hvc1` SequenceStart (or a legacy CodecID 12 sequence header)
//! carries, the picture size from its SPS, and the RFC 6381 CODECS string.
//!
//! Defined by: ISO/IEC 14496-15 8.3.3.1 (HEVCDecoderConfigurationRecord)
//! and Annex E.3 (the `hvc1` codecs parameter), ISO/IEC 23008-2 7.3.1.2
//! (nal_unit_header), 7.3.2.2.1 (seq_parameter_set_rbsp), 7.3.3
//! (profile_tier_level) and Table 6-1 (SubWidthC, SubHeightC).

use bytes::Bytes;

use super::bits::{check_max, unescape_rbsp, BitReader, ByteReader};
use super::MediaError;

/// The decoder configuration of an HEVC stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcConfig {
    /// general_profile_space: 0, or 1..=3 for profiles other specs define.
    pub profile_space: u8,
    /// general_tier_flag: the High tier.
    pub tier_high: bool,
    /// general_profile_idc: 1 Main, 2 Main 10, 3 Main Still Picture, 4
    /// Range Extensions, ...
    pub profile_idc: u8,
    /// general_profile_compatibility_flags, flag 0 in the top bit.
    pub profile_compatibility: u32,
    /// general_constraint_indicator_flags: 48 bits, progressive_source in
    /// the top bit.
    pub constraint_flags: u64,
    /// general_level_idc: 30 times the level (93 is level 3.1).
    pub level_idc: u8,
    /// chroma_format_idc: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format: u8,
    pub bit_depth_luma: u8,
    pub bit_depth_chroma: u8,
    /// Bytes in each NAL unit length prefix of a coded frame: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Parameter set NAL units (header bytes included), in record order.
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
    /// Display size from the first SPS (after the conformance window);
    /// None without an SPS or when it could not be parsed.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The fixed part of the record before numOfArrays (8.3.3.1.2).
const FIXED_LEN: usize = 22;
/// NAL unit types of the parameter sets (23008-2 Table 7-1).
const NAL_VPS: u8 = 32;
const NAL_SPS: u8 = 33;
const NAL_PPS: u8 = 34;

/// Parses an HEVCDecoderConfigurationRecord (ISO 14496-15 8.3.3.1.2).
///
/// Arrays of other NAL unit types (x265 puts a prefix SEI with its
/// version string here) are walked past and not kept. A malformed SPS does
/// not fail the record: its bytes are still what a decoder needs, so width
/// and height are then None.
pub fn parse_hevc_config(record: &[u8]) -> Result<HevcConfig, MediaError> {
    let mut r = ByteReader::new(record);
    let version = r.u8("configurationVersion")?;
    if version != 1 {
        return Err(MediaError::Invalid {
            what: "HEVCDecoderConfigurationRecord configurationVersion",
            value: u64::from(version),
            offset: 0,
        });
    }
    let b = r.u8("general_profile_idc")?;
    let profile_compatibility = r.u32("general_profile_compatibility_flags")?;
    let constraint_flags = (u64::from(r.u16("general_constraint_indicator_flags")?) << 32)
        | u64::from(r.u32("general_constraint_indicator_flags")?);
    let level_idc = r.u8("general_level_idc")?;
    r.u16("min_spatial_segmentation_idc")?;
    r.u8("parallelismType")?;
    let chroma_format = r.u8("chromaFormat")? & 0x03;
    let bit_depth_luma = (r.u8("bitDepthLumaMinus8")? & 0x07) + 8;
    let bit_depth_chroma = (r.u8("bitDepthChromaMinus8")? & 0x07) + 8;
    r.u16("avgFrameRate")?;
    let length_at = r.pos();
    let length_size_minus_one = r.u8("lengthSizeMinusOne")? & 0x03;
    // 14496-15 allows 0, 1 and 3 (1, 2 and 4 bytes).
    if length_size_minus_one == 2 {
        return Err(MediaError::Invalid {
            what: "lengthSizeMinusOne",
            value: 2,
            offset: length_at,
        });
    }
    debug_assert_eq!(r.pos(), FIXED_LEN);
    let arrays = r.u8("numOfArrays")?;
    let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..arrays {
        let nal_type = r.u8("NAL_unit_type")? & 0x3f;
        let count = r.u16("numNalus")?;
        for _ in 0..count {
            let len = usize::from(r.u16("nalUnitLength")?);
            let nal = r.take(len, "nalUnit")?;
            let list = match nal_type {
                NAL_VPS => &mut vps,
                NAL_SPS => &mut sps,
                NAL_PPS => &mut pps,
                _ => continue,
            };
            list.push(Bytes::copy_from_slice(nal));
        }
    }
    let size = sps
        .first()
        .and_then(|nal| parse_hevc_sps(nal).ok())
        .map(|s| (s.width, s.height));
    Ok(HevcConfig {
        profile_space: b >> 6,
        tier_high: b & 0x20 != 0,
        profile_idc: b & 0x1f,
        profile_compatibility,
        constraint_flags,
        level_idc,
        chroma_format,
        bit_depth_luma,
        bit_depth_chroma,
        nalu_length_size: length_size_minus_one + 1,
        vps,
        sps,
        pps,
        width: size.map(|(w, _)| w),
        height: size.map(|(_, h)| h),
    })
}

impl HevcConfig {
    /// The codecs parameter (ISO 14496-15 E.3): `hvc1.`, the profile space
    /// as a letter (none for 0, A, B, C), general_profile_idc; the
    /// compatibility flags bit-reversed, in hex; `L` or `H` (the tier) and
    /// general_level_idc; then each constraint byte in hex, trailing zero
    /// bytes left out. Main 3.1 progressive is `hvc1.1.6.L93.B0`.
    pub fn codecs(&self) -> String {
        let space = match self.profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let mut out = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.profile_idc,
            self.profile_compatibility.reverse_bits(),
            if self.tier_high { 'H' } else { 'L' },
            self.level_idc
        );
        let bytes = &self.constraint_flags.to_be_bytes()[2..];
        let kept = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        for b in &bytes[..kept] {
            out.push_str(&format!(".{b:X}"));
        }
        out
    }

    /// The profile's name (23008-2 Annex A), or its number.
    pub fn profile_name(&self) -> String {
        match self.profile_idc {
            1 => "Main".into(),
            2 => "Main 10".into(),
            3 => "Main Still Picture".into(),
            4 => "Range Extensions".into(),
            5 => "High Throughput".into(),
            9 => "Screen Content Coding".into(),
            other => other.to_string(),
        }
    }

    /// The level as written (`3.1` for level_idc 93), with the tier for
    /// High (`5.1 High`).
    pub fn level_name(&self) -> String {
        let level = format!("{}.{}", self.level_idc / 30, (self.level_idc % 30) / 3);
        let level = level
            .strip_suffix(".0")
            .map_or(level.clone(), str::to_string);
        if self.tier_high {
            format!("{level} High")
        } else {
            level
        }
    }
}

/// What shardcast reads from an H.265 sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HevcSps {
    pub max_sub_layers: u8,
    pub profile_idc: u8,
    pub level_idc: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    /// Display width in pixels: pic_width_in_luma_samples less the
    /// conformance window.
    pub width: u32,
    /// Display height in pixels, likewise.
    pub height: u32,
}

/// The largest picture side any level allows: sqrt(MaxLumaPs * 8) for
/// level 6.2 (23008-2 A.4.1, Table A.8), rounded up.
const PIC_SIDE_MAX: u32 = 16_888;
const CHROMA_FORMAT_IDC_MAX: u32 = 3;
/// bit_depth_luma_minus8 and _chroma_minus8 are "in the range of 0 to 8".
const BIT_DEPTH_MINUS8_MAX: u32 = 8;
/// Bits of one sub-layer's profile fields in profile_tier_level (7.3.3):
/// profile space, tier, profile_idc, 32 compatibility flags, 48 flags.
const SUB_LAYER_PROFILE_BITS: usize = 2 + 1 + 5 + 32 + 48;

/// Parses an SPS NAL unit (the 2-byte header included, emulation
/// prevention bytes still in place) far enough to know the picture size.
pub fn parse_hevc_sps(nal: &[u8]) -> Result<HevcSps, MediaError> {
    let header = nal.get(..2).ok_or(MediaError::Truncated {
        what: "SPS nal_unit_header",
        need: 2,
        have: nal.len(),
    })?;
    let nal_type = (header[0] >> 1) & 0x3f;
    if nal_type != NAL_SPS {
        return Err(MediaError::Invalid {
            what: "SPS nal_unit_type",
            value: u64::from(nal_type),
            offset: 0,
        });
    }
    let rbsp = unescape_rbsp(nal.get(2..).unwrap_or_default());
    let mut r = BitReader::new(&rbsp);
    r.bits(4, "sps_video_parameter_set_id")?;
    let sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")? as usize;
    r.flag("sps_temporal_id_nesting_flag")?;
    // profile_tier_level(1, sps_max_sub_layers_minus1).
    r.bits(3, "general_profile_space and tier")?;
    let profile_idc = r.bits(5, "general_profile_idc")? as u8;
    r.skip(32 + 48, "general profile flags")?;
    let level_idc = r.bits(8, "general_level_idc")? as u8;
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(sub_layers_minus1) {
        *p = (
            r.flag("sub_layer_profile_present_flag")?,
            r.flag("sub_layer_level_present_flag")?,
        );
    }
    if sub_layers_minus1 > 0 {
        r.skip(2 * (8 - sub_layers_minus1), "reserved_zero_2bits")?;
    }
    for &(profile, level) in present.iter().take(sub_layers_minus1) {
        if profile {
            r.skip(SUB_LAYER_PROFILE_BITS, "sub_layer profile")?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    r.ue("sps_seq_parameter_set_id")?;
    let at = r.byte_pos();
    let chroma_format_idc = check_max(
        "chroma_format_idc",
        r.ue("chroma_format_idc")?,
        CHROMA_FORMAT_IDC_MAX,
        at,
    )?;
    let separate_colour_plane = chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
    let at = r.byte_pos();
    let width = check_max(
        "pic_width_in_luma_samples",
        r.ue("pic_width_in_luma_samples")?,
        PIC_SIDE_MAX,
        at,
    )?;
    let at = r.byte_pos();
    let height = check_max(
        "pic_height_in_luma_samples",
        r.ue("pic_height_in_luma_samples")?,
        PIC_SIDE_MAX,
        at,
    )?;
    let window_at = r.byte_pos();
    let (left, right, top, bottom) = if r.flag("conformance_window_flag")? {
        (
            r.ue("conf_win_left_offset")?,
            r.ue("conf_win_right_offset")?,
            r.ue("conf_win_top_offset")?,
            r.ue("conf_win_bottom_offset")?,
        )
    } else {
        (0, 0, 0, 0)
    };
    let at = r.byte_pos();
    let bit_depth_luma = 8 + check_max(
        "bit_depth_luma_minus8",
        r.ue("bit_depth_luma_minus8")?,
        BIT_DEPTH_MINUS8_MAX,
        at,
    )?;
    let at = r.byte_pos();
    let bit_depth_chroma = 8 + check_max(
        "bit_depth_chroma_minus8",
        r.ue("bit_depth_chroma_minus8")?,
        BIT_DEPTH_MINUS8_MAX,
        at,
    )?;
    // Table 6-1: ChromaArrayType 0 (monochrome or separate planes) and
    // 4:4:4 crop in luma samples; 4:2:0 in pairs both ways, 4:2:2 across.
    let (sub_width, sub_height): (u64, u64) = match (separate_colour_plane, chroma_format_idc) {
        (false, 1) => (2, 2),
        (false, 2) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = sub_width * (u64::from(left) + u64::from(right));
    let crop_y = sub_height * (u64::from(top) + u64::from(bottom));
    if crop_x >= u64::from(width) {
        return Err(MediaError::Invalid {
            what: "conf_win_left_offset + conf_win_right_offset",
            value: crop_x,
            offset: window_at,
        });
    }
    if crop_y >= u64::from(height) {
        return Err(MediaError::Invalid {
            what: "conf_win_top_offset + conf_win_bottom_offset",
            value: crop_y,
            offset: window_at,
        });
    }
    Ok(HevcSps {
        max_sub_layers: sub_layers_minus1 as u8 + 1,
        profile_idc,
        level_idc,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        // Below the width and height, which are at most PIC_SIDE_MAX.
        width: width - crop_x as u32,
        height: height - crop_y as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, data};

    fn config(body: &str) -> HevcConfig {
        parse_hevc_config(&data(&vectors::video(0, body))).unwrap()
    }

    /// libx265 Main, 320x240, level 2 (level_idc 60), progressive
    /// (constraint byte 0x90: progressive_source and frame_only). ffmpeg
    /// reports "hevc (Main), yuv420p, 320x240". Compatibility flags
    /// 0x60000000 (flags 1 and 2) reversed are 6.
    #[test]
    fn x265_main_320x240() {
        let c = config(vectors::HEVC_SEQ);
        assert_eq!((c.profile_space, c.tier_high, c.profile_idc), (0, false, 1));
        assert_eq!(c.profile_compatibility, 0x6000_0000);
        assert_eq!(c.constraint_flags, 0x9000_0000_0000);
        assert_eq!(c.level_idc, 60);
        assert_eq!(
            (c.chroma_format, c.bit_depth_luma, c.bit_depth_chroma),
            (1, 8, 8)
        );
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!((c.vps.len(), c.sps.len(), c.pps.len()), (1, 1, 1));
        assert_eq!(c.vps[0][..2], [0x40, 0x01]);
        assert_eq!(c.pps[0].len(), 6);
        assert_eq!((c.width, c.height), (Some(320), Some(240)));
        assert_eq!(c.codecs(), "hvc1.1.6.L60.90");
        assert_eq!(
            (c.profile_name().as_str(), c.level_name().as_str()),
            ("Main", "2")
        );
    }

    /// libx265 Main 10 at 318x238: the SPS codes 320x240 and a
    /// conformance window of one chroma sample (two luma) right and
    /// bottom. ffmpeg reports "hevc (Main 10), yuv420p10le, 318x238".
    #[test]
    fn x265_main10_conformance_window() {
        let c = config(vectors::HEVC10_SEQ);
        assert_eq!(c.profile_idc, 2);
        assert_eq!((c.bit_depth_luma, c.bit_depth_chroma), (10, 10));
        assert_eq!((c.width, c.height), (Some(318), Some(238)));
        assert_eq!(c.codecs(), "hvc1.2.4.L60.90");
        let sps = parse_hevc_sps(&c.sps[0]).unwrap();
        assert_eq!((sps.bit_depth_luma, sps.chroma_format_idc), (10, 1));
    }

    /// x265 with three temporal layers: profile_tier_level has sub-layer
    /// flags and the reserved bits that pad them to eight.
    #[test]
    fn x265_sub_layers() {
        let c = config(vectors::HEVC_TEMPORAL_SEQ);
        let sps = parse_hevc_sps(&c.sps[0]).unwrap();
        assert_eq!(sps.max_sub_layers, 3);
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!((sps.profile_idc, sps.level_idc), (1, 60));
    }

    #[test]
    fn codecs_string_forms() {
        let mut c = config(vectors::HEVC_SEQ);
        // ISO 14496-15 E.3's examples.
        c.level_idc = 93;
        c.constraint_flags = 0xb000_0000_0000;
        assert_eq!(c.codecs(), "hvc1.1.6.L93.B0");
        c.profile_space = 1;
        c.tier_high = true;
        c.profile_idc = 4;
        c.profile_compatibility = 0x0000_0008;
        c.level_idc = 120;
        c.constraint_flags = 0;
        assert_eq!(c.codecs(), "hvc1.A4.10000000.H120");
        c.constraint_flags = 0x0100_0000_0001;
        assert!(c.codecs().ends_with("H120.1.0.0.0.0.1"));
        assert_eq!(c.level_name(), "4 High");
    }

    /// What the TS muxer relies on: the parameter sets by type, other
    /// arrays left out, every prefix refused.
    #[test]
    fn record_arrays_and_prefixes() {
        let mut record = vec![
            1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc,
        ];
        record.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0, 0, 0x0f]); // length size 4
        record.push(4); // numOfArrays
        record.extend_from_slice(&[0xa0, 0, 1, 0, 2, 0x40, 0x01]); // VPS
        record.extend_from_slice(&[0xa1, 0, 1, 0, 3, 0x42, 0x01, 0x01]); // SPS
        record.extend_from_slice(&[0xa2, 0, 1, 0, 2, 0x44, 0x01]); // PPS
        record.extend_from_slice(&[0x27, 0, 1, 0, 2, 0x4e, 0x01]); // prefix SEI
        let c = parse_hevc_config(&record).unwrap();
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!(c.vps, vec![Bytes::from_static(&[0x40, 0x01])]);
        assert_eq!(c.sps, vec![Bytes::from_static(&[0x42, 0x01, 0x01])]);
        assert_eq!(c.pps, vec![Bytes::from_static(&[0x44, 0x01])]);
        assert_eq!((c.width, c.height), (None, None), "the SPS is cut short");
        for end in 0..record.len() {
            assert!(parse_hevc_config(&record[..end]).is_err(), "{end}");
        }
        let mut v0 = record.clone();
        v0[0] = 0;
        assert!(matches!(
            parse_hevc_config(&v0),
            Err(MediaError::Invalid { offset: 0, .. })
        ));
        let mut three = record.clone();
        three[21] = 0xfe;
        assert!(matches!(
            parse_hevc_config(&three),
            Err(MediaError::Invalid {
                what: "lengthSizeMinusOne",
                ..
            })
        ));
    }

    #[test]
    fn sps_errors_never_panic() {
        let c = config(vectors::HEVC10_SEQ);
        let sps = &c.sps[0];
        assert!(matches!(
            parse_hevc_sps(&c.pps[0]),
            Err(MediaError::Invalid {
                what: "SPS nal_unit_type",
                value: 34,
                ..
            })
        ));
        for end in 0..sps.len() {
            let _ = parse_hevc_sps(&sps[..end]);
        }
        for i in 0..sps.len() {
            for bit in 0..8 {
                let mut flipped = sps.to_vec();
                flipped[i] ^= 1 << bit;
                let _ = parse_hevc_sps(&flipped);
            }
        }
        assert!(parse_hevc_sps(&sps[..10]).is_err());
    }
}
