//! Program-specific information: the Program Association Table and the
//! Program Map Table of shardcast's one program, written and read.
//!
//! Defined by: ISO/IEC 13818-1 2.4.4.3 (program_association_section, Table
//! 2-30), 2.4.4.8 (TS_program_map_section, Table 2-33), Table 2-34 (stream
//! types).

use super::crc::crc32_mpeg2;
use super::types::Pid;

/// table_id of a PAT section.
pub const TABLE_ID_PAT: u8 = 0x00;
/// table_id of a PMT section.
pub const TABLE_ID_PMT: u8 = 0x02;

/// stream_type of ISO/IEC 11172-3 (MPEG-1) audio: MP3.
pub const STREAM_TYPE_MPEG1_AUDIO: u8 = 0x03;
/// stream_type of ISO/IEC 13818-3 (MPEG-2) audio.
pub const STREAM_TYPE_MPEG2_AUDIO: u8 = 0x04;
/// stream_type of ISO/IEC 13818-7 audio with ADTS transport syntax: AAC.
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// stream_type of H.264 / AVC video.
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// stream_type of H.265 / HEVC video.
pub const STREAM_TYPE_H265: u8 = 0x24;

/// shardcast's transport_stream_id and program_number.
const TRANSPORT_STREAM_ID: u16 = 1;
pub(crate) const PROGRAM_NUMBER: u16 = 1;

/// The largest section_length of a PAT or PMT (the two high bits of the
/// 12-bit field are 0), so a section is at most 1024 bytes.
pub const SECTION_LEN_MAX: usize = 1021;

/// Bytes before section_length's count starts: table_id and the two bytes
/// holding section_length.
const SECTION_PREFIX_LEN: usize = 3;
const CRC_LEN: usize = 4;

/// One elementary stream of a PMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EsInfo {
    pub stream_type: u8,
    pub pid: Pid,
}

/// Starts a long-form section (section_syntax_indicator = 1): table_id,
/// section_length (patched by [`finish_section`]), the 16-bit id
/// (transport_stream_id or program_number), version and current_next_indicator,
/// section_number 0, last_section_number 0.
fn start_section(out: &mut Vec<u8>, table_id: u8, id: u16, version: u8) -> usize {
    let start = out.len();
    out.push(table_id);
    // section_syntax_indicator 1, '0', reserved '11', length patched later.
    out.extend_from_slice(&[0xb0, 0x00]);
    out.extend_from_slice(&id.to_be_bytes());
    // reserved '11', version_number (5 bits), current_next_indicator 1.
    out.push(0xc0 | ((version & 0x1f) << 1) | 1);
    out.extend_from_slice(&[0x00, 0x00]);
    start
}

/// Patches section_length and appends the CRC_32 over the whole section.
fn finish_section(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start - SECTION_PREFIX_LEN + CRC_LEN;
    debug_assert!(len <= SECTION_LEN_MAX);
    if let Some(field) = out.get_mut(start + 1..start + 3) {
        field[0] = 0xb0 | ((len >> 8) as u8 & 0x0f);
        field[1] = len as u8;
    }
    let crc = crc32_mpeg2(out.get(start..).unwrap_or_default());
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Appends the PAT section listing program 1 with its PMT on `pmt_pid`.
pub fn write_pat(out: &mut Vec<u8>, pmt_pid: Pid) {
    let start = start_section(out, TABLE_ID_PAT, TRANSPORT_STREAM_ID, 0);
    out.extend_from_slice(&PROGRAM_NUMBER.to_be_bytes());
    out.extend_from_slice(&(0xe000 | pmt_pid.value()).to_be_bytes());
    finish_section(out, start);
}

/// Appends the PMT section of program 1: version `version` (5 bits), the
/// PCR on `pcr_pid`, no descriptors, and `streams` in order.
pub fn write_pmt(out: &mut Vec<u8>, version: u8, pcr_pid: Pid, streams: &[EsInfo]) {
    let start = start_section(out, TABLE_ID_PMT, PROGRAM_NUMBER, version);
    out.extend_from_slice(&(0xe000 | pcr_pid.value()).to_be_bytes());
    // reserved '1111', program_info_length 0.
    out.extend_from_slice(&[0xf0, 0x00]);
    for es in streams {
        out.push(es.stream_type);
        out.extend_from_slice(&(0xe000 | es.pid.value()).to_be_bytes());
        out.extend_from_slice(&[0xf0, 0x00]); // ES_info_length 0
    }
    finish_section(out, start);
}

/// A section read back: where the fields of interest are, with the CRC
/// already checked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Section {
    /// (program_number, PMT PID) pairs; program 0 (the network PID) is left
    /// out.
    Pat { programs: Vec<(u16, Pid)> },
    Pmt {
        program_number: u16,
        version: u8,
        pcr_pid: Pid,
        streams: Vec<EsInfo>,
    },
    /// A table this reader does not interpret (e.g. an SDT).
    Other { table_id: u8 },
}

/// Why a section could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SectionError {
    /// The CRC_32 over the section is not 0.
    Crc,
    /// The field at this byte offset of the section is out of range.
    Malformed { offset: usize, what: &'static str },
}

fn bad(offset: usize, what: &'static str) -> SectionError {
    SectionError::Malformed { offset, what }
}

fn u16_at(s: &[u8], at: usize) -> Option<u16> {
    let b = s.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The total length of the section starting `s` (3 + section_length), once
/// its first three bytes are present.
pub(crate) fn section_total_len(s: &[u8]) -> Option<usize> {
    Some(SECTION_PREFIX_LEN + usize::from(u16_at(s, 1)? & 0x0fff))
}

/// Parses one complete section (exactly [`section_total_len`] bytes),
/// checking its CRC_32 when it has the long form.
pub(crate) fn parse_section(s: &[u8]) -> Result<Section, SectionError> {
    let table_id = *s.first().ok_or(bad(0, "table_id"))?;
    let flags = *s.get(1).ok_or(bad(1, "section_syntax_indicator"))?;
    if table_id != TABLE_ID_PAT && table_id != TABLE_ID_PMT {
        return Ok(Section::Other { table_id });
    }
    if flags & 0x80 == 0 {
        return Err(bad(1, "section_syntax_indicator (1 for PAT and PMT)"));
    }
    let total = section_total_len(s).ok_or(bad(1, "section_length"))?;
    if total - SECTION_PREFIX_LEN > SECTION_LEN_MAX {
        return Err(bad(1, "section_length (at most 1021)"));
    }
    // 5 bytes of header after section_length, then the CRC.
    if total < SECTION_PREFIX_LEN + 5 + CRC_LEN || s.len() != total {
        return Err(bad(1, "section_length"));
    }
    if crc32_mpeg2(s) != 0 {
        return Err(SectionError::Crc);
    }
    let body = s.get(8..total - CRC_LEN).ok_or(bad(8, "section body"))?;
    if table_id == TABLE_ID_PAT {
        if !body.len().is_multiple_of(4) {
            return Err(bad(8, "PAT program loop (4 bytes per program)"));
        }
        let programs = body
            .chunks_exact(4)
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    Pid::from_bits(u16::from_be_bytes([p[2], p[3]])),
                )
            })
            .filter(|(program, _)| *program != 0)
            .collect();
        return Ok(Section::Pat { programs });
    }
    let program_number = u16_at(s, 3).ok_or(bad(3, "program_number"))?;
    let version = (s.get(5).copied().unwrap_or_default() >> 1) & 0x1f;
    let pcr_pid = Pid::from_bits(u16_at(body, 0).ok_or(bad(8, "PCR_PID"))?);
    let info_len = usize::from(u16_at(body, 2).ok_or(bad(10, "program_info_length"))? & 0x0fff);
    let mut at = 4 + info_len;
    if at > body.len() {
        return Err(bad(10, "program_info_length"));
    }
    let mut streams = Vec::new();
    while at < body.len() {
        let stream_type = *body.get(at).ok_or(bad(8 + at, "stream_type"))?;
        let pid = u16_at(body, at + 1).ok_or(bad(8 + at + 1, "elementary_PID"))?;
        let es_info = u16_at(body, at + 3).ok_or(bad(8 + at + 3, "ES_info_length"))?;
        at += 5 + usize::from(es_info & 0x0fff);
        if at > body.len() {
            return Err(bad(8 + at, "ES_info_length"));
        }
        streams.push(EsInfo {
            stream_type,
            pid: Pid::from_bits(pid),
        });
    }
    Ok(Section::Pmt {
        program_number,
        version,
        pcr_pid,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::types::{PID_AUDIO, PID_PMT, PID_VIDEO};

    /// The PAT for program 1 with its PMT on PID 0x1000, field by field from
    /// Table 2-30; its CRC_32 0x2AB104B2 was worked out with the Annex A
    /// register by hand and cross-checked with a separate bitwise CRC.
    #[test]
    fn pat_bytes_and_crc() {
        let mut pat = Vec::new();
        write_pat(&mut pat, PID_PMT);
        assert_eq!(
            pat,
            [
                0x00, // table_id
                0xB0, 0x0D, // syntax 1, '0', '11', section_length 13
                0x00, 0x01, // transport_stream_id
                0xC1, // '11', version 0, current_next 1
                0x00, 0x00, // section_number, last_section_number
                0x00, 0x01, // program_number 1
                0xF0, 0x00, // '111', program_map_PID 0x1000
                0x2A, 0xB1, 0x04, 0xB2, // CRC_32
            ]
        );
        assert_eq!(
            parse_section(&pat),
            Ok(Section::Pat {
                programs: vec![(1, PID_PMT)]
            })
        );
    }

    #[test]
    fn pmt_bytes() {
        let streams = [
            EsInfo {
                stream_type: STREAM_TYPE_H264,
                pid: PID_VIDEO,
            },
            EsInfo {
                stream_type: STREAM_TYPE_AAC_ADTS,
                pid: PID_AUDIO,
            },
        ];
        let mut pmt = Vec::new();
        write_pmt(&mut pmt, 3, PID_VIDEO, &streams);
        let crc = crc32_mpeg2(&pmt[..pmt.len() - 4]);
        assert_eq!(
            &pmt[..pmt.len() - 4],
            &[
                0x02, 0xB0, 0x17, // table_id, section_length 23
                0x00, 0x01, // program_number
                0xC7, // '11', version 3, current_next 1
                0x00, 0x00, // section numbers
                0xE1, 0x00, // PCR_PID 0x100
                0xF0, 0x00, // program_info_length 0
                0x1B, 0xE1, 0x00, 0xF0, 0x00, // H.264 on 0x100
                0x0F, 0xE1, 0x01, 0xF0, 0x00, // AAC on 0x101
            ][..]
        );
        assert_eq!(&pmt[pmt.len() - 4..], &crc.to_be_bytes());
        assert_eq!(
            parse_section(&pmt),
            Ok(Section::Pmt {
                program_number: 1,
                version: 3,
                pcr_pid: PID_VIDEO,
                streams: streams.to_vec()
            })
        );
        // Any flipped bit breaks the CRC.
        for i in 0..pmt.len() {
            let mut bad = pmt.clone();
            bad[i] ^= 0x10;
            assert!(
                !matches!(parse_section(&bad), Ok(Section::Pmt { .. })),
                "byte {i}"
            );
        }
    }
}
