//! AV1 decoder configuration: the AV1CodecConfigurationRecord (`av1C`) an
//! E-RTMP `av01` SequenceStart carries, the OBUs around it, the sequence
//! header OBU and the RFC 6381 CODECS string.
//!
//! Defined by: AV1 Codec ISO Media File Format Binding v1.2.0 2.3
//! (AV1CodecConfigurationRecord) and "Codecs Parameter String"; AV1
//! Bitstream & Decoding Process Specification 4.10.3 (uvlc), 4.10.5
//! (leb128), 5.3 (OBU header), 5.5 (sequence header OBU) and Annex A.3
//! (levels).

use bytes::Bytes;

use super::bits::{BitReader, ByteReader};
use super::MediaError;

/// The fixed four bytes of `av1C` before configOBUs.
const RECORD_FIXED_LEN: usize = 4;
/// marker (1) and version (1): the record's first byte.
const MARKER_VERSION_1: u8 = 0x81;
/// obu_type of a sequence header OBU (5.3.1, Table "OBU types").
pub const OBU_SEQUENCE_HEADER: u8 = 1;

/// The decoder configuration of an AV1 stream (`av1C`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Av1Config {
    /// 0 Main, 1 High, 2 Professional.
    pub seq_profile: u8,
    /// seq_level_idx of operating point 0: 0 is level 2.0, 31 "max".
    pub seq_level_idx_0: u8,
    /// seq_tier of operating point 0: the High tier.
    pub seq_tier_0: bool,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub chroma_subsampling_x: bool,
    pub chroma_subsampling_y: bool,
    pub chroma_sample_position: u8,
    /// configOBUs: zero or more OBUs, normally the sequence header.
    pub config_obus: Bytes,
    /// The sequence header in configOBUs, if there is one and it parses.
    pub sequence_header: Option<Av1SequenceHeader>,
}

/// Parses an AV1CodecConfigurationRecord.
///
/// An empty record is `Ok(None)`: libaom (through ffmpeg) sends an empty
/// `av01` SequenceStart before the real one, and that means "no
/// configuration yet", not a broken stream.
pub fn parse_av1_config(record: &[u8]) -> Result<Option<Av1Config>, MediaError> {
    if record.is_empty() {
        return Ok(None);
    }
    let mut r = ByteReader::new(record);
    let first = r.u8("av1C marker and version")?;
    if first != MARKER_VERSION_1 {
        return Err(MediaError::Invalid {
            what: "av1C marker and version (0x81)",
            value: u64::from(first),
            offset: 0,
        });
    }
    let b1 = r.u8("seq_profile and seq_level_idx_0")?;
    let b2 = r.u8("seq_tier_0 and color flags")?;
    r.u8("initial_presentation_delay")?;
    debug_assert_eq!(r.pos(), RECORD_FIXED_LEN);
    let config_obus = Bytes::copy_from_slice(r.rest());
    let sequence_header = find_sequence_header(&config_obus)
        .ok()
        .flatten()
        .and_then(|obu| parse_av1_sequence_header(obu).ok());
    Ok(Some(Av1Config {
        seq_profile: b1 >> 5,
        seq_level_idx_0: b1 & 0x1f,
        seq_tier_0: b2 & 0x80 != 0,
        high_bitdepth: b2 & 0x40 != 0,
        twelve_bit: b2 & 0x20 != 0,
        monochrome: b2 & 0x10 != 0,
        chroma_subsampling_x: b2 & 0x08 != 0,
        chroma_subsampling_y: b2 & 0x04 != 0,
        chroma_sample_position: b2 & 0x03,
        config_obus,
        sequence_header,
    }))
}

impl Av1Config {
    /// BitDepth (5.5.2): 12 with twelve_bit, 10 with high_bitdepth, else 8.
    pub fn bit_depth(&self) -> u8 {
        match (self.high_bitdepth, self.twelve_bit) {
            (true, true) => 12,
            (true, false) => 10,
            _ => 8,
        }
    }

    /// The codecs parameter in its short form, `av01.P.LLT.DD`: profile,
    /// two-digit level index, tier `M` or `H`, two-digit bit depth, e.g.
    /// `av01.0.08M.08`. The optional fields after it (monochrome,
    /// subsampling, colour) may be left out, the binding says, when they
    /// are the defaults; players need only these.
    pub fn codecs(&self) -> String {
        format!(
            "av01.{}.{:02}{}.{:02}",
            self.seq_profile,
            self.seq_level_idx_0,
            if self.seq_tier_0 { 'H' } else { 'M' },
            self.bit_depth()
        )
    }
}

/// The profile's name (AV1 spec Annex A.2).
pub fn profile_name(seq_profile: u8) -> String {
    match seq_profile {
        0 => "Main".into(),
        1 => "High".into(),
        2 => "Professional".into(),
        other => other.to_string(),
    }
}

/// The level of a seq_level_idx (Annex A.3): X.Y with X = 2 + idx / 4 and
/// Y = idx % 4; 31 is "max" (no level constraints).
pub fn level_name(seq_level_idx: u8) -> String {
    if seq_level_idx == 31 {
        return "max".into();
    }
    format!("{}.{}", 2 + seq_level_idx / 4, seq_level_idx % 4)
}

/// One OBU: its type and its payload (5.3.1 open_bitstream_unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    pub obu_type: u8,
    pub payload: &'a [u8],
}

/// Reads the OBU at the start of `data`; returns it and the bytes after
/// it. Without obu_has_size_field the OBU runs to the end of `data`.
fn next_obu(data: &[u8]) -> Result<(Obu<'_>, &[u8]), MediaError> {
    let mut r = ByteReader::new(data);
    let header = r.u8("obu_header")?;
    if header & 0x80 != 0 {
        return Err(MediaError::Invalid {
            what: "obu_forbidden_bit",
            value: 1,
            offset: 0,
        });
    }
    let obu_type = (header >> 3) & 0x0f;
    if header & 0x04 != 0 {
        r.u8("obu_extension_header")?;
    }
    let payload = if header & 0x02 != 0 {
        let size = r.leb128("obu_size")? as usize;
        r.take(size, "OBU payload")?
    } else {
        r.rest()
    };
    let rest = data.get(r.pos()..).unwrap_or_default();
    Ok((Obu { obu_type, payload }, rest))
}

/// Every OBU of `data` (a temporal unit, or configOBUs), in order; an OBU
/// that does not fit ends the walk with an error.
pub fn obus(data: &[u8]) -> impl Iterator<Item = Result<Obu<'_>, MediaError>> {
    let mut rest = data;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match next_obu(rest) {
            Ok((obu, after)) => {
                rest = after;
                Some(Ok(obu))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// The payload of the first sequence header OBU in `data`, if any. The
/// walk stops there, so what follows it (a frame) need not be whole.
pub fn find_sequence_header(data: &[u8]) -> Result<Option<&[u8]>, MediaError> {
    for obu in obus(data) {
        let obu = obu?;
        if obu.obu_type == OBU_SEQUENCE_HEADER {
            return Ok(Some(obu.payload));
        }
    }
    Ok(None)
}

/// What shardcast reads from a sequence header OBU (5.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Av1SequenceHeader {
    pub seq_profile: u8,
    pub still_picture: bool,
    pub reduced_still_picture_header: bool,
    /// timing_info(): (num_units_in_display_tick, time_scale).
    pub timing_info: Option<(u32, u32)>,
    /// operating_points_cnt_minus_1 + 1.
    pub operating_points: u8,
    pub seq_level_idx_0: u8,
    pub seq_tier_0: bool,
    /// max_frame_width_minus_1 + 1.
    pub max_frame_width: u32,
    /// max_frame_height_minus_1 + 1.
    pub max_frame_height: u32,
    /// BitDepth from color_config(): 8, 10 or 12.
    pub bit_depth: u8,
    pub monochrome: bool,
}

/// uvlc() (4.10.3): leading zeros, then that many bits; 32 or more zeros
/// mean 2^32 - 1.
fn uvlc(r: &mut BitReader<'_>, what: &'static str) -> Result<u32, MediaError> {
    let mut zeros = 0u32;
    while !r.bit(what)? {
        zeros += 1;
        if zeros >= 32 {
            return Ok(u32::MAX);
        }
    }
    let value = u64::from(r.bits(zeros, what)?);
    Ok((value + (1u64 << zeros) - 1).min(u64::from(u32::MAX)) as u32)
}

/// Parses a sequence header OBU's payload (5.5.1) through color_config's
/// bit depth and monochrome flag.
pub fn parse_av1_sequence_header(payload: &[u8]) -> Result<Av1SequenceHeader, MediaError> {
    let mut r = BitReader::new(payload);
    let at = r.byte_pos();
    let seq_profile = r.bits(3, "seq_profile")? as u8;
    if seq_profile > 2 {
        return Err(MediaError::Invalid {
            what: "seq_profile (0, 1 or 2)",
            value: u64::from(seq_profile),
            offset: at,
        });
    }
    let still_picture = r.flag("still_picture")?;
    let reduced = r.flag("reduced_still_picture_header")?;
    let mut timing_info = None;
    let operating_points;
    let seq_level_idx_0;
    let mut seq_tier_0 = false;
    if reduced {
        operating_points = 1;
        seq_level_idx_0 = r.bits(5, "seq_level_idx[0]")? as u8;
    } else {
        let mut decoder_model_info_present = false;
        let mut buffer_delay_length = 0;
        if r.flag("timing_info_present_flag")? {
            let ticks = r.bits(32, "num_units_in_display_tick")?;
            let scale = r.bits(32, "time_scale")?;
            if r.flag("equal_picture_interval")? {
                uvlc(&mut r, "num_ticks_per_picture_minus_1")?;
            }
            timing_info = Some((ticks, scale));
            decoder_model_info_present = r.flag("decoder_model_info_present_flag")?;
            if decoder_model_info_present {
                buffer_delay_length = r.bits(5, "buffer_delay_length_minus_1")? as usize + 1;
                r.skip(32 + 5 + 5, "decoder_model_info")?;
            }
        }
        let initial_display_delay_present = r.flag("initial_display_delay_present_flag")?;
        let count = r.bits(5, "operating_points_cnt_minus_1")? as u8 + 1;
        operating_points = count;
        let mut first = None;
        for _ in 0..count {
            r.skip(12, "operating_point_idc")?;
            let level = r.bits(5, "seq_level_idx")? as u8;
            let tier = level > 7 && r.flag("seq_tier")?;
            first.get_or_insert((level, tier));
            if decoder_model_info_present && r.flag("decoder_model_present_for_this_op")? {
                r.skip(2 * buffer_delay_length + 1, "operating_parameters_info")?;
            }
            if initial_display_delay_present
                && r.flag("initial_display_delay_present_for_this_op")?
            {
                r.skip(4, "initial_display_delay_minus_1")?;
            }
        }
        let (level, tier) = first.unwrap_or_default();
        seq_level_idx_0 = level;
        seq_tier_0 = tier;
    }
    let width_bits = r.bits(4, "frame_width_bits_minus_1")? + 1;
    let height_bits = r.bits(4, "frame_height_bits_minus_1")? + 1;
    let max_frame_width = r.bits(width_bits, "max_frame_width_minus_1")? + 1;
    let max_frame_height = r.bits(height_bits, "max_frame_height_minus_1")? + 1;
    let frame_id_numbers_present = !reduced && r.flag("frame_id_numbers_present_flag")?;
    if frame_id_numbers_present {
        r.skip(4 + 3, "frame id lengths")?;
    }
    r.skip(
        3,
        "use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter",
    )?;
    if !reduced {
        r.skip(4, "compound, warped motion and dual filter flags")?;
        let order_hint = r.flag("enable_order_hint")?;
        if order_hint {
            r.skip(2, "enable_jnt_comp, enable_ref_frame_mvs")?;
        }
        // SELECT_SCREEN_CONTENT_TOOLS (2) unless a flag forces 0 or 1.
        let force_screen_content = if r.flag("seq_choose_screen_content_tools")? {
            2
        } else {
            u8::from(r.flag("seq_force_screen_content_tools")?)
        };
        if force_screen_content > 0 && !r.flag("seq_choose_integer_mv")? {
            r.skip(1, "seq_force_integer_mv")?;
        }
        if order_hint {
            r.skip(3, "order_hint_bits_minus_1")?;
        }
    }
    r.skip(3, "enable_superres, enable_cdef, enable_restoration")?;
    // color_config() (5.5.2).
    let high_bitdepth = r.flag("high_bitdepth")?;
    let bit_depth = if seq_profile == 2 && high_bitdepth {
        if r.flag("twelve_bit")? {
            12
        } else {
            10
        }
    } else if high_bitdepth {
        10
    } else {
        8
    };
    let monochrome = seq_profile != 1 && r.flag("mono_chrome")?;
    Ok(Av1SequenceHeader {
        seq_profile,
        still_picture,
        reduced_still_picture_header: reduced,
        timing_info,
        operating_points,
        seq_level_idx_0,
        seq_tier_0,
        max_frame_width,
        max_frame_height,
        bit_depth,
        monochrome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, data};

    fn config(body: &str) -> Option<Av1Config> {
        parse_av1_config(&data(&vectors::video(0, body))).unwrap()
    }

    /// libsvtav1 320x240 8-bit 4:2:0: level index 0 (level 2.0), Main
    /// tier. ffmpeg 9's HLS muxer writes CODECS="av01.0.00M.08" for the
    /// same stream.
    #[test]
    fn svt_av1_320x240() {
        let c = config(vectors::AV1_SVT_SEQ).unwrap();
        assert_eq!(
            (c.seq_profile, c.seq_level_idx_0, c.seq_tier_0),
            (0, 0, false)
        );
        assert_eq!((c.high_bitdepth, c.monochrome), (false, false));
        assert!(c.chroma_subsampling_x && c.chroma_subsampling_y);
        assert_eq!(c.codecs(), "av01.0.00M.08");
        let s = c.sequence_header.unwrap();
        assert_eq!((s.max_frame_width, s.max_frame_height), (320, 240));
        assert_eq!((s.bit_depth, s.operating_points), (8, 1));
        assert!(!s.reduced_still_picture_header && !s.still_picture);
        assert_eq!(s.timing_info, None);
        assert_eq!(
            (level_name(0), profile_name(0)),
            ("2.0".into(), "Main".into())
        );
    }

    /// libaom: first an empty record (no configuration yet), then one
    /// whose sequence header says 320x240.
    #[test]
    fn aom_empty_then_real() {
        assert_eq!(config(vectors::AV1_AOM_EMPTY_SEQ), None);
        let c = config(vectors::AV1_AOM_SEQ).unwrap();
        assert_eq!(c.codecs(), "av01.0.00M.08");
        let s = c.sequence_header.unwrap();
        assert_eq!((s.max_frame_width, s.max_frame_height), (320, 240));
    }

    /// libsvtav1 426x240 10-bit: high_bitdepth in both the record and
    /// the sequence header.
    #[test]
    fn svt_av1_10_bit() {
        let c = config(vectors::AV1_10_SEQ).unwrap();
        assert_eq!(c.bit_depth(), 10);
        assert_eq!(c.codecs(), "av01.0.00M.10");
        let s = c.sequence_header.unwrap();
        assert_eq!(
            (s.max_frame_width, s.max_frame_height, s.bit_depth),
            (426, 240, 10)
        );
    }

    /// A keyframe's temporal unit: a temporal delimiter (type 2), then
    /// the sequence header; the frame after it is cut short and never read.
    #[test]
    fn sequence_header_in_a_keyframe() {
        let key = data(&vectors::video(0, vectors::AV1_SVT_KEY));
        let all: Vec<_> = obus(&key).collect();
        assert_eq!(
            all[0],
            Ok(Obu {
                obu_type: 2,
                payload: &[]
            })
        );
        assert_eq!(all[1].as_ref().unwrap().obu_type, OBU_SEQUENCE_HEADER);
        assert!(all.last().unwrap().is_err(), "the cut frame OBU");
        let seq = find_sequence_header(&key).unwrap().unwrap();
        let s = parse_av1_sequence_header(seq).unwrap();
        assert_eq!((s.max_frame_width, s.max_frame_height), (320, 240));
        // No sequence header: a temporal delimiter alone.
        assert_eq!(find_sequence_header(&[0x12, 0x00]), Ok(None));
    }

    #[test]
    fn errors_and_no_panics() {
        assert!(matches!(
            parse_av1_config(&[0x80, 0, 0, 0]),
            Err(MediaError::Invalid { offset: 0, .. })
        ));
        assert!(matches!(
            parse_av1_config(&[0x81, 0]),
            Err(MediaError::Truncated { .. })
        ));
        assert!(matches!(
            next_obu(&[0x8a, 0]),
            Err(MediaError::Invalid {
                what: "obu_forbidden_bit",
                ..
            })
        ));
        let record = data(&vectors::video(0, vectors::AV1_SVT_SEQ));
        for end in 0..record.len() {
            let _ = parse_av1_config(&record[..end]);
        }
        let seq = find_sequence_header(&record[4..])
            .unwrap()
            .unwrap()
            .to_vec();
        // Parsing stops after mono_chrome, in the tenth byte.
        for end in 0..9 {
            assert!(parse_av1_sequence_header(&seq[..end]).is_err(), "{end}");
        }
        for i in 0..seq.len() {
            for bit in 0..8 {
                let mut flipped = seq.clone();
                flipped[i] ^= 1 << bit;
                let _ = parse_av1_sequence_header(&flipped);
            }
        }
        // A reduced still picture header: profile 0, still, reduced,
        // level 1, a 4-bit width of 16 and a 3-bit height of 8, 8-bit.
        let still = [0x18, 0x4c, 0xbf, 0x80, 0x00];
        let s = parse_av1_sequence_header(&still).unwrap();
        assert!(s.still_picture && s.reduced_still_picture_header);
        assert_eq!(
            (s.seq_level_idx_0, s.max_frame_width, s.max_frame_height),
            (1, 16, 8)
        );
    }
}
