//! H.264/AVC decoder configuration: the AVCDecoderConfigurationRecord an
//! RTMP sequence header carries, and the picture size from its SPS.
//!
//! Defined by: ISO/IEC 14496-15 5.2.4.1 (AVCDecoderConfigurationRecord),
//! ISO/IEC 14496-10 7.3.2.1.1 (seq_parameter_set_data) and 7.4.2.1.1 (the
//! derivation of the frame size and cropping).

use bytes::Bytes;

use super::bits::{check_max, unescape_rbsp, BitReader, ByteReader};
use super::MediaError;

/// The decoder configuration of an AVC stream, as a TS muxer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// AVCProfileIndication (profile_idc), e.g. 66 baseline, 77 main, 100 high.
    pub profile: u8,
    /// profile_compatibility (the SPS constraint_set flags).
    pub compat: u8,
    /// AVCLevelIndication (level_idc), e.g. 31 for level 3.1.
    pub level: u8,
    /// Bytes in each NALU length prefix of a coded frame: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Sequence parameter set NAL units, header byte included.
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units, header byte included.
    pub pps: Vec<Bytes>,
    /// Display width in pixels from the first SPS (after cropping); None
    /// without an SPS or when the SPS could not be parsed.
    pub width: Option<u32>,
    /// Display height in pixels from the first SPS (after cropping).
    pub height: Option<u32>,
}

/// Parses an AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1), the body
/// of a legacy AVC sequence header or an enhanced `avc1` SequenceStart.
///
/// The record's SPS and PPS are copied out (records are small and parsed
/// once per stream). A malformed SPS does not fail the record: the SPS/PPS
/// bytes are still what a decoder needs, so width and height are then None.
/// The optional high-profile extension (chroma format, bit depths, SPS
/// extensions) that some encoders append is not needed and not read.
pub fn parse_avc_config(record: &[u8]) -> Result<AvcConfig, MediaError> {
    let mut r = ByteReader::new(record);
    let version = r.u8("configurationVersion")?;
    if version != 1 {
        return Err(MediaError::Invalid {
            what: "AVCDecoderConfigurationRecord configurationVersion",
            value: u64::from(version),
            offset: 0,
        });
    }
    let profile = r.u8("AVCProfileIndication")?;
    let compat = r.u8("profile_compatibility")?;
    let level = r.u8("AVCLevelIndication")?;
    let length_size_offset = r.pos();
    let length_size_minus_one = r.u8("lengthSizeMinusOne")? & 0x03;
    // 14496-15 allows 0, 1 and 3 (1, 2 and 4 bytes).
    if length_size_minus_one == 2 {
        return Err(MediaError::Invalid {
            what: "lengthSizeMinusOne",
            value: 2,
            offset: length_size_offset,
        });
    }
    let sps_count = r.u8("numOfSequenceParameterSets")? & 0x1f;
    let mut sps = Vec::with_capacity(usize::from(sps_count));
    for _ in 0..sps_count {
        let len = usize::from(r.u16("sequenceParameterSetLength")?);
        sps.push(Bytes::copy_from_slice(
            r.take(len, "sequenceParameterSetNALUnit")?,
        ));
    }
    let pps_count = r.u8("numOfPictureParameterSets")?;
    let mut pps = Vec::with_capacity(usize::from(pps_count));
    for _ in 0..pps_count {
        let len = usize::from(r.u16("pictureParameterSetLength")?);
        pps.push(Bytes::copy_from_slice(
            r.take(len, "pictureParameterSetNALUnit")?,
        ));
    }
    let size = sps
        .first()
        .and_then(|nal| parse_sps(nal).ok())
        .map(|s| (s.width, s.height));
    Ok(AvcConfig {
        profile,
        compat,
        level,
        nalu_length_size: length_size_minus_one + 1,
        sps,
        pps,
        width: size.map(|(w, _)| w),
        height: size.map(|(_, h)| h),
    })
}

/// What shardcast reads from an H.264 sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and reserved bits, as one byte.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub seq_parameter_set_id: u32,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    /// False for interlaced (field or MBAFF) coding.
    pub frame_mbs_only: bool,
    /// Display width in pixels, after frame cropping.
    pub width: u32,
    /// Display height in pixels, after frame cropping.
    pub height: u32,
}

/// NAL unit type of a sequence parameter set (ISO 14496-10 Table 7-1).
const NAL_TYPE_SPS: u8 = 7;

/// Profiles whose SPS carries chroma format, bit depths and scaling lists
/// (ISO 14496-10 7.3.2.1.1, the `if( profile_idc == 100 || ...)` list).
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Upper bounds from 7.4.2.1.1, checked so later arithmetic cannot overflow.
const CHROMA_FORMAT_IDC_MAX: u32 = 3;
const BIT_DEPTH_MINUS8_MAX: u32 = 6;
const LOG2_MAX_MINUS4_MAX: u32 = 12;
const POC_CYCLE_LEN_MAX: u32 = 255;
/// No level allows more than 139264 macroblocks per frame (level 6.2), so
/// 16384 macroblocks per side leaves room for any real stream.
const PIC_SIZE_IN_MBS_MAX: u32 = 16384;
/// delta_scale is "in the range of -128 to +127, inclusive" (7.4.2.1.1.1).
const DELTA_SCALE_RANGE: std::ops::RangeInclusive<i32> = -128..=127;

/// Parses an SPS NAL unit (header byte included, emulation prevention
/// bytes still in place) far enough to know the picture size.
pub fn parse_sps(nal: &[u8]) -> Result<Sps, MediaError> {
    let header = *nal.first().ok_or(MediaError::Truncated {
        what: "SPS NAL header",
        need: 1,
        have: 0,
    })?;
    if header & 0x1f != NAL_TYPE_SPS {
        return Err(MediaError::Invalid {
            what: "SPS nal_unit_type",
            value: u64::from(header & 0x1f),
            offset: 0,
        });
    }
    let rbsp = unescape_rbsp(nal.get(1..).unwrap_or_default());
    parse_sps_rbsp(&rbsp)
}

/// Skips one scaling_list() (ISO 14496-10 7.3.2.1.1.1). Only the Exp-Golomb
/// codes matter for the size; the list values themselves are not kept.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), MediaError> {
    let mut last_scale: i32 = 8;
    let mut next_scale: i32 = 8;
    for _ in 0..size {
        if next_scale != 0 {
            let at = r.byte_pos();
            let delta = r.se("delta_scale")?;
            if !DELTA_SCALE_RANGE.contains(&delta) {
                return Err(MediaError::Invalid {
                    what: "delta_scale",
                    value: u64::from(delta.unsigned_abs()),
                    offset: at,
                });
            }
            next_scale = (last_scale + delta).rem_euclid(256);
        }
        if next_scale != 0 {
            last_scale = next_scale;
        }
    }
    Ok(())
}

/// seq_parameter_set_data() up to frame cropping (7.3.2.1.1).
fn parse_sps_rbsp(rbsp: &[u8]) -> Result<Sps, MediaError> {
    let mut r = BitReader::new(rbsp);
    let profile_idc = r.bits(8, "profile_idc")? as u8;
    let constraint_flags = r.bits(8, "constraint_set flags")? as u8;
    let level_idc = r.bits(8, "level_idc")? as u8;
    let seq_parameter_set_id = r.ue("seq_parameter_set_id")?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;

    if HIGH_PROFILES.contains(&profile_idc) {
        let at = r.byte_pos();
        chroma_format_idc = check_max(
            "chroma_format_idc",
            r.ue("chroma_format_idc")?,
            CHROMA_FORMAT_IDC_MAX,
            at,
        )?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag("separate_colour_plane_flag")?;
        }
        let at = r.byte_pos();
        bit_depth_luma = 8 + check_max(
            "bit_depth_luma_minus8",
            r.ue("bit_depth_luma_minus8")?,
            BIT_DEPTH_MINUS8_MAX,
            at,
        )?;
        let at = r.byte_pos();
        bit_depth_chroma = 8 + check_max(
            "bit_depth_chroma_minus8",
            r.ue("bit_depth_chroma_minus8")?,
            BIT_DEPTH_MINUS8_MAX,
            at,
        )?;
        r.flag("qpprime_y_zero_transform_bypass_flag")?;
        if r.flag("seq_scaling_matrix_present_flag")? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag("seq_scaling_list_present_flag")? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    let at = r.byte_pos();
    check_max(
        "log2_max_frame_num_minus4",
        r.ue("log2_max_frame_num_minus4")?,
        LOG2_MAX_MINUS4_MAX,
        at,
    )?;
    let at = r.byte_pos();
    match r.ue("pic_order_cnt_type")? {
        0 => {
            let at = r.byte_pos();
            check_max(
                "log2_max_pic_order_cnt_lsb_minus4",
                r.ue("log2_max_pic_order_cnt_lsb_minus4")?,
                LOG2_MAX_MINUS4_MAX,
                at,
            )?;
        }
        1 => {
            r.flag("delta_pic_order_always_zero_flag")?;
            r.se("offset_for_non_ref_pic")?;
            r.se("offset_for_top_to_bottom_field")?;
            let at = r.byte_pos();
            let cycle = check_max(
                "num_ref_frames_in_pic_order_cnt_cycle",
                r.ue("num_ref_frames_in_pic_order_cnt_cycle")?,
                POC_CYCLE_LEN_MAX,
                at,
            )?;
            for _ in 0..cycle {
                r.se("offset_for_ref_frame")?;
            }
        }
        2 => {}
        other => {
            return Err(MediaError::Invalid {
                what: "pic_order_cnt_type",
                value: u64::from(other),
                offset: at,
            })
        }
    }
    r.ue("max_num_ref_frames")?;
    r.flag("gaps_in_frame_num_value_allowed_flag")?;
    let at = r.byte_pos();
    let width_mbs = check_max(
        "pic_width_in_mbs_minus1",
        r.ue("pic_width_in_mbs_minus1")?,
        PIC_SIZE_IN_MBS_MAX - 1,
        at,
    )? + 1;
    let at = r.byte_pos();
    let height_map_units = check_max(
        "pic_height_in_map_units_minus1",
        r.ue("pic_height_in_map_units_minus1")?,
        PIC_SIZE_IN_MBS_MAX - 1,
        at,
    )? + 1;
    let frame_mbs_only = r.flag("frame_mbs_only_flag")?;
    if !frame_mbs_only {
        r.flag("mb_adaptive_frame_field_flag")?;
    }
    r.flag("direct_8x8_inference_flag")?;
    let crop_at = r.byte_pos();
    let (crop_left, crop_right, crop_top, crop_bottom) = if r.flag("frame_cropping_flag")? {
        (
            r.ue("frame_crop_left_offset")?,
            r.ue("frame_crop_right_offset")?,
            r.ue("frame_crop_top_offset")?,
            r.ue("frame_crop_bottom_offset")?,
        )
    } else {
        (0, 0, 0, 0)
    };

    // 7.4.2.1.1: FrameHeightInMbs = (2 - frame_mbs_only_flag) *
    // PicHeightInMapUnits; crop units follow ChromaArrayType (Table 6-1).
    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y): (u64, u64) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let full_width = u64::from(width_mbs) * 16;
    let full_height = field_factor * u64::from(height_map_units) * 16;
    let crop_x = crop_unit_x * (u64::from(crop_left) + u64::from(crop_right));
    let crop_y = crop_unit_y * (u64::from(crop_top) + u64::from(crop_bottom));
    if crop_x >= full_width {
        return Err(MediaError::Invalid {
            what: "frame_crop_left_offset + frame_crop_right_offset",
            value: crop_x,
            offset: crop_at,
        });
    }
    if crop_y >= full_height {
        return Err(MediaError::Invalid {
            what: "frame_crop_top_offset + frame_crop_bottom_offset",
            value: crop_y,
            offset: crop_at,
        });
    }
    Ok(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        seq_parameter_set_id,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        frame_mbs_only,
        // Both fit in u32: at most 16384 * 16 * 2 before cropping.
        width: (full_width - crop_x) as u32,
        height: (full_height - crop_y) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS NAL units written by x264 (ffmpeg testsrc2, libx264, annex B
    /// output), checked against ffprobe's reported size.
    /// 1280x720 High profile level 3.1; no cropping; has 00 00 03 escapes.
    const SPS_720P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    /// 1920x1080 High profile level 4.0: 1088 coded lines cropped by 8.
    const SPS_1080P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// 640x360 Constrained Baseline level 3.0: 368 coded lines cropped by 8.
    const SPS_360P_BASELINE: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2e, 0x48,
    ];
    /// 720x576 interlaced (frame_mbs_only_flag = 0), High level 3.0.
    const SPS_576I_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xb4, 0x24, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x19, 0x0f, 0x8a, 0x14, 0xcb,
    ];
    /// 1366x766 High 4:4:4 Predictive: chroma_format_idc 3, crop unit 1.
    const SPS_444_ODD: &[u8] = &[
        0x67, 0xf4, 0x00, 0x20, 0x91, 0x9b, 0x28, 0x0a, 0xc0, 0xc3, 0xc5, 0xde, 0x02, 0x20, 0x00,
        0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x06, 0x41, 0xe3, 0x06, 0x32, 0xc0,
    ];
    /// 1366x766 High 4:2:2: chroma_format_idc 2, crop unit 2x1.
    const SPS_422_ODD: &[u8] = &[
        0x67, 0x7a, 0x00, 0x20, 0xbc, 0xd9, 0x40, 0x56, 0x06, 0x1e, 0x6b, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xc8, 0x3c, 0x60, 0xc6, 0x58,
    ];
    const PPS_HIGH: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn record(sps: &[u8], pps: &[u8]) -> Vec<u8> {
        let at = |i: usize| sps.get(i).copied().unwrap_or_default();
        let mut out = vec![0x01, at(1), at(2), at(3), 0xff, 0xe1];
        out.extend((sps.len() as u16).to_be_bytes());
        out.extend(sps);
        out.push(0x01);
        out.extend((pps.len() as u16).to_be_bytes());
        out.extend(pps);
        out
    }

    #[test]
    fn sps_720p_high() {
        let sps = parse_sps(SPS_720P_HIGH).unwrap();
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!((sps.profile_idc, sps.level_idc), (100, 31));
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (8, 8));
        assert!(sps.frame_mbs_only);
    }

    #[test]
    fn sps_1080p_cropped() {
        let sps = parse_sps(SPS_1080P_HIGH).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.level_idc, 40);
    }

    #[test]
    fn sps_other_layouts() {
        let s = parse_sps(SPS_360P_BASELINE).unwrap();
        assert_eq!((s.width, s.height, s.profile_idc), (640, 360, 66));
        let s = parse_sps(SPS_576I_HIGH).unwrap();
        assert_eq!((s.width, s.height), (720, 576));
        assert!(!s.frame_mbs_only);
        let s = parse_sps(SPS_444_ODD).unwrap();
        assert_eq!((s.width, s.height, s.chroma_format_idc), (1366, 766, 3));
        let s = parse_sps(SPS_422_ODD).unwrap();
        assert_eq!((s.width, s.height, s.chroma_format_idc), (1366, 766, 2));
    }

    /// Writes bits MSB first, for SPSs no encoder at hand produces.
    struct BitWriter {
        out: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn new() -> Self {
            BitWriter {
                out: Vec::new(),
                bits: 0,
            }
        }
        fn bit(&mut self, b: bool) {
            if self.bits.is_multiple_of(8) {
                self.out.push(0);
            }
            if b {
                let last = self.out.last_mut().unwrap();
                *last |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
        fn u(&mut self, n: u32, v: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let code = u64::from(v) + 1;
            let len = 64 - code.leading_zeros();
            for _ in 1..len {
                self.bit(false);
            }
            for i in (0..len).rev() {
                self.bit((code >> i) & 1 == 1);
            }
        }
        fn se(&mut self, v: i32) {
            self.ue(if v > 0 {
                2 * v as u32 - 1
            } else {
                (-2 * v) as u32
            });
        }
        /// rbsp_trailing_bits, then emulation prevention, then the header.
        fn into_nal(mut self) -> Vec<u8> {
            self.bit(true);
            while !self.bits.is_multiple_of(8) {
                self.bit(false);
            }
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for b in self.out {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    /// A High 4:4:4 SPS with every scaling list present (some falling back
    /// to the default matrix, some explicit), POC type 1 with a cycle, and
    /// asymmetric cropping: every branch of the syntax before the size.
    #[test]
    fn sps_scaling_lists_poc_type_1_and_cropping() {
        let mut w = BitWriter::new();
        w.u(8, 244); // profile_idc: High 4:4:4 Predictive
        w.u(8, 0);
        w.u(8, 41);
        w.ue(0); // seq_parameter_set_id
        w.ue(3); // chroma_format_idc
        w.u(1, 0); // separate_colour_plane_flag
        w.ue(2); // bit_depth_luma_minus8
        w.ue(2); // bit_depth_chroma_minus8
        w.u(1, 0); // qpprime_y_zero_transform_bypass_flag
        w.u(1, 1); // seq_scaling_matrix_present_flag
        for i in 0..12 {
            w.u(1, 1); // seq_scaling_list_present_flag[i]
            let size = if i < 6 { 16 } else { 64 };
            if i % 2 == 0 {
                // delta -8 makes nextScale 0 at j = 0: use the default list.
                w.se(-8);
            } else {
                // A ramp 8, 9, 10, ..., then hold: nextScale never 0.
                for j in 0..size {
                    w.se(if j < 20 { 1 } else { 0 });
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1); // pic_order_cnt_type
        w.u(1, 0); // delta_pic_order_always_zero_flag
        w.se(-2); // offset_for_non_ref_pic
        w.se(1); // offset_for_top_to_bottom_field
        w.ue(3); // num_ref_frames_in_pic_order_cnt_cycle
        w.se(4);
        w.se(-4);
        w.se(0);
        w.ue(4); // max_num_ref_frames
        w.u(1, 0); // gaps_in_frame_num_value_allowed_flag
        w.ue(119); // pic_width_in_mbs_minus1: 1920
        w.ue(67); // pic_height_in_map_units_minus1: 1088
        w.u(1, 1); // frame_mbs_only_flag
        w.u(1, 1); // direct_8x8_inference_flag
        w.u(1, 1); // frame_cropping_flag
        w.ue(2); // left
        w.ue(6); // right
        w.ue(0); // top
        w.ue(8); // bottom
        w.u(1, 0); // vui_parameters_present_flag
        let nal = w.into_nal();
        let sps = parse_sps(&nal).unwrap();
        // 4:4:4 crop unit is one pixel each way.
        assert_eq!((sps.width, sps.height), (1920 - 8, 1088 - 8));
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
        // Cropping beyond the picture is refused.
        let mut w = BitWriter::new();
        w.u(24, 0x42_00_1e);
        for v in [0, 0, 0, 1, 0] {
            w.ue(v); // id, log2_max_frame_num, poc type 0, poc lsb, refs
        }
        w.u(1, 0); // gaps
        w.ue(0); // width 16
        w.ue(0); // height 16
        w.u(1, 1);
        w.u(1, 1);
        w.u(1, 1);
        for v in [4, 4, 0, 0] {
            w.ue(v);
        }
        assert!(matches!(
            parse_sps(&w.into_nal()),
            Err(MediaError::Invalid {
                what: "frame_crop_left_offset + frame_crop_right_offset",
                value: 16,
                ..
            })
        ));
    }

    #[test]
    fn sps_errors() {
        assert!(matches!(parse_sps(&[]), Err(MediaError::Truncated { .. })));
        assert!(matches!(
            parse_sps(&[0x68, 0xeb]),
            Err(MediaError::Invalid {
                what: "SPS nal_unit_type",
                value: 8,
                ..
            })
        ));
        // Every prefix that ends before frame cropping fails; none panics.
        for end in 1..SPS_720P_HIGH.len() {
            let r = parse_sps(&SPS_720P_HIGH[..end]);
            if end < 10 {
                assert!(
                    matches!(r, Err(MediaError::Truncated { .. })),
                    "prefix of {end} bytes: {r:?}"
                );
            }
        }
    }

    /// delta_scale is -128..=127; a huge one (found by the codec_config
    /// fuzz target, which overflowed `last_scale + delta`) is refused.
    #[test]
    fn sps_delta_scale_out_of_range() {
        for (delta, ok) in [(127, true), (-128, true), (128, false), (i32::MAX, false)] {
            let mut w = BitWriter::new();
            w.u(8, 100); // profile_idc: High
            w.u(8, 0);
            w.u(8, 31);
            w.ue(0); // seq_parameter_set_id
            w.ue(1); // chroma_format_idc
            w.ue(0); // bit_depth_luma_minus8
            w.ue(0); // bit_depth_chroma_minus8
            w.u(1, 0); // qpprime_y_zero_transform_bypass_flag
            w.u(1, 1); // seq_scaling_matrix_present_flag
            w.u(1, 1); // seq_scaling_list_present_flag[0]
            w.se(delta);
            for _ in 1..16 {
                w.se(0);
            }
            for _ in 1..8 {
                w.u(1, 0); // seq_scaling_list_present_flag[1..]
            }
            for v in [0, 2, 1] {
                w.ue(v); // log2_max_frame_num_minus4, poc type 2, refs
            }
            w.u(1, 0); // gaps_in_frame_num_value_allowed_flag
            w.ue(0); // width 16
            w.ue(0); // height 16
            w.u(1, 1); // frame_mbs_only_flag
            w.u(1, 1); // direct_8x8_inference_flag
            w.u(1, 0); // frame_cropping_flag
            w.u(1, 0); // vui_parameters_present_flag
            let r = parse_sps(&w.into_nal());
            if ok {
                assert_eq!(
                    r.map(|s| (s.width, s.height)),
                    Ok((16, 16)),
                    "delta {delta}"
                );
            } else {
                assert!(
                    matches!(
                        r,
                        Err(MediaError::Invalid {
                            what: "delta_scale",
                            ..
                        })
                    ),
                    "delta {delta}: {r:?}"
                );
            }
        }
        // The fuzzer's input itself: an SPS in an AVC record, then parsed.
        let crash = [
            0x67, 0x64, 0x00, 0x4b, 0xbf, 0xfd, 0x87, 0x6d, 0xc7, 0xff, 0x2a, 0x0f, 0x00, 0x00,
            0x00, 0x00, 0xff, 0xff, 0xff, 0xe0, 0xff, 0xff, 0xe1, 0x27, 0x64, 0xff, 0x1f, 0x27,
            0x60, 0xc6,
        ];
        assert!(parse_sps(&crash).is_err());
    }

    #[test]
    fn avc_record_720p() {
        let rec = record(SPS_720P_HIGH, PPS_HIGH);
        let c = parse_avc_config(&rec).unwrap();
        assert_eq!((c.profile, c.compat, c.level), (100, 0, 31));
        assert_eq!(c.nalu_length_size, 4);
        assert_eq!(c.sps, vec![Bytes::from_static(SPS_720P_HIGH)]);
        assert_eq!(c.pps, vec![Bytes::from_static(PPS_HIGH)]);
        assert_eq!((c.width, c.height), (Some(1280), Some(720)));
    }

    #[test]
    fn avc_record_1080p_with_extension() {
        // High-profile records may end with chroma/bit-depth bytes and an
        // SPS-extension count; they are ignored.
        let mut rec = record(SPS_1080P_HIGH, PPS_HIGH);
        rec.extend([0xfd, 0xf8, 0xf8, 0x00]);
        let c = parse_avc_config(&rec).unwrap();
        assert_eq!((c.width, c.height), (Some(1920), Some(1080)));
    }

    #[test]
    fn avc_record_edge_cases() {
        // No parameter sets at all: valid record, unknown size.
        let c = parse_avc_config(&[0x01, 0x42, 0xc0, 0x1e, 0xfd, 0xe0, 0x00]).unwrap();
        assert_eq!(c.nalu_length_size, 2);
        assert!(c.sps.is_empty() && c.pps.is_empty());
        assert_eq!((c.width, c.height), (None, None));
        // An SPS that does not parse keeps the record usable.
        let c = parse_avc_config(&record(&[0x67, 0x64], PPS_HIGH)).unwrap();
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.width, None);
        // Version must be 1; lengthSizeMinusOne 2 is not allowed.
        assert!(matches!(
            parse_avc_config(&[0x00, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            Err(MediaError::Invalid {
                value: 0,
                offset: 0,
                ..
            })
        ));
        assert!(matches!(
            parse_avc_config(&[0x01, 0x64, 0, 0x1f, 0xfe, 0xe0, 0]),
            Err(MediaError::Invalid {
                what: "lengthSizeMinusOne",
                ..
            })
        ));
        // An SPS length past the end of the record.
        assert_eq!(
            parse_avc_config(&[0x01, 0x64, 0, 0x1f, 0xff, 0xe1, 0x00, 0x09, 0x67]).unwrap_err(),
            MediaError::Truncated {
                what: "sequenceParameterSetNALUnit",
                need: 17,
                have: 9
            }
        );
    }

    #[test]
    fn avc_record_every_prefix_fails_cleanly() {
        let rec = record(SPS_1080P_HIGH, PPS_HIGH);
        for end in 0..rec.len() {
            assert!(parse_avc_config(&rec[..end]).is_err(), "prefix {end}");
        }
        let mut state: u32 = 7;
        for _ in 0..5000 {
            let mut noise = rec.clone();
            for _ in 0..3 {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let i = (state >> 16) as usize % noise.len();
                noise[i] ^= (state >> 8) as u8;
            }
            let _ = parse_avc_config(&noise);
            let _ = parse_sps(noise.get(8..).unwrap_or_default());
        }
    }
}
