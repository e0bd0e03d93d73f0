//! A minimal MPEG-TS demuxer that checks a stream rather than decoding it:
//! for unit tests, the micro-benchmarks (benches/media.rs) and checks of the muxer's output.

use std::collections::{BTreeMap, HashMap};

use super::packet::{AFC_ADAPTATION, AFC_BOTH, AF_DISCONTINUITY, AF_PCR, AF_RANDOM_ACCESS, PUSI};
use super::packet::{PACKET_LEN, SYNC_BYTE};
use super::psi::{
    parse_section, section_total_len, EsInfo, Section, SectionError, SECTION_LEN_MAX,
};
use super::types::{Pcr, Pid, Ts90k, PID_NULL, PID_PAT};
use super::types::{PREFIX_DTS, PREFIX_PTS_ONLY, PREFIX_PTS_WITH_DTS};
use super::TsError;

/// One PES packet as [`check_packets`] saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PesInfo {
    pub pid: Pid,
    pub stream_id: u8,
    pub pts: Option<Ts90k>,
    pub dts: Option<Ts90k>,
    /// random_access_indicator of its first packet.
    pub random_access: bool,
    /// Bytes of the PES packet (header included) carried by the packets.
    pub len: usize,
    /// Byte offset of its first transport packet in the input.
    pub offset: usize,
}

/// What [`check_packets`] found in a stream that passed its checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TsSummary {
    /// Transport packets in the input.
    pub packets: usize,
    pub packets_per_pid: BTreeMap<Pid, usize>,
    /// PAT and PMT sections read (each passed its CRC_32).
    pub pat_count: usize,
    pub pmt_count: usize,
    /// PMT PIDs of the last PAT.
    pub pmt_pids: Vec<Pid>,
    /// PCR_PID of the last PMT.
    pub pcr_pid: Option<Pid>,
    /// Elementary streams of the last PMT.
    pub streams: Vec<EsInfo>,
    /// Every PES packet on a PID a PMT listed, in stream order.
    pub pes: Vec<PesInfo>,
    /// Every PCR, with its PID, in stream order.
    pub pcrs: Vec<(Pid, Pcr)>,
}

impl TsSummary {
    /// The stream_type values of the last PMT.
    pub fn stream_types(&self) -> Vec<u8> {
        self.streams.iter().map(|s| s.stream_type).collect()
    }

    /// The PES packets of one PID.
    pub fn pes_on(&self, pid: Pid) -> impl Iterator<Item = &PesInfo> {
        self.pes.iter().filter(move |p| p.pid == pid)
    }
}

/// stream_id values whose PES packets have no optional header (2.4.3.7):
/// program_stream_map, padding_stream, private_stream_2, ECM, EMM,
/// program_stream_directory, DSMCC_stream, H.222.1 type E.
fn has_optional_header(stream_id: u8) -> bool {
    !matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    )
}

/// A PES packet whose payload is still arriving.
struct OpenPes {
    index: usize,
    /// 6 + PES_packet_length, or None for an unbounded video PES.
    declared: Option<usize>,
}

struct Checker {
    summary: TsSummary,
    /// Last continuity_counter per PID, from packets with payload.
    counters: HashMap<Pid, u8>,
    /// Section bytes collected per PSI PID, while a section is open.
    sections: HashMap<Pid, Vec<u8>>,
    open_pes: HashMap<Pid, OpenPes>,
}

fn malformed(offset: usize, pid: Pid, what: &'static str) -> TsError {
    TsError::Malformed { offset, pid, what }
}

impl Checker {
    fn packet(&mut self, offset: usize, p: &[u8]) -> Result<(), TsError> {
        let [sync, b1, b2, b3] = match p.get(..4) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => {
                return Err(TsError::Length {
                    len: offset + p.len(),
                })
            }
        };
        if sync != SYNC_BYTE {
            return Err(TsError::Sync { offset });
        }
        let pid = Pid::from_bits(u16::from_be_bytes([b1, b2]));
        if b1 & 0x80 != 0 {
            return Err(malformed(offset, pid, "transport_error_indicator set"));
        }
        if b3 >> 6 != 0 {
            return Err(malformed(
                offset,
                pid,
                "transport_scrambling_control (scrambled)",
            ));
        }
        let afc = (b3 >> 4) & 0x03;
        let cc = b3 & 0x0f;
        if afc == 0 {
            return Err(malformed(
                offset,
                pid,
                "adaptation_field_control 00 (reserved)",
            ));
        }
        self.summary.packets += 1;
        *self.summary.packets_per_pid.entry(pid).or_default() += 1;

        let mut payload_at = 4;
        let mut discontinuity = false;
        let mut random_access = false;
        if afc & AFC_ADAPTATION != 0 {
            let len = usize::from(*p.get(4).unwrap_or(&0));
            let ok = if afc == AFC_BOTH {
                len <= 182
            } else {
                len == 183
            };
            if !ok {
                return Err(malformed(offset, pid, "adaptation_field_length"));
            }
            if len > 0 {
                let flags = p.get(5).copied().unwrap_or_default();
                discontinuity = flags & AF_DISCONTINUITY != 0;
                random_access = flags & AF_RANDOM_ACCESS != 0;
                if flags & AF_PCR != 0 {
                    let pcr = p
                        .get(6..12)
                        .filter(|_| len >= 7)
                        .and_then(|b| <[u8; 6]>::try_from(b).ok())
                        .ok_or(malformed(offset, pid, "PCR (adaptation field too short)"))?;
                    self.summary.pcrs.push((pid, Pcr::from_bytes(pcr)));
                }
            }
            payload_at = 5 + len;
        }
        if afc == AFC_ADAPTATION {
            return Ok(());
        }

        if pid != PID_NULL {
            if let Some(&last) = self.counters.get(&pid) {
                let expected = (last + 1) & 0x0f;
                if cc != expected && !discontinuity {
                    return Err(TsError::ContinuityGap {
                        offset,
                        pid,
                        expected,
                        found: cc,
                    });
                }
            }
            self.counters.insert(pid, cc);
        }

        let payload = p.get(payload_at..).unwrap_or_default();
        let start = b1 & PUSI != 0;
        if pid == PID_PAT || self.summary.pmt_pids.contains(&pid) {
            self.section_payload(offset, pid, start, payload)
        } else if self.summary.streams.iter().any(|s| s.pid == pid) {
            self.pes_payload(offset, pid, start, random_access, payload)
        } else {
            Ok(())
        }
    }

    fn section_payload(
        &mut self,
        offset: usize,
        pid: Pid,
        start: bool,
        payload: &[u8],
    ) -> Result<(), TsError> {
        if start {
            let pointer = usize::from(*payload.first().unwrap_or(&0));
            let rest = payload.get(1..).unwrap_or_default();
            let (tail, head) =
                rest.split_at_checked(pointer)
                    .ok_or(malformed(offset, pid, "pointer_field"))?;
            if let Some(open) = self.sections.get_mut(&pid) {
                open.extend_from_slice(tail);
                self.complete_sections(offset, pid)?;
                if self.sections.contains_key(&pid) {
                    return Err(malformed(offset, pid, "section cut short by a new one"));
                }
            }
            self.sections.insert(pid, head.to_vec());
        } else if let Some(open) = self.sections.get_mut(&pid) {
            open.extend_from_slice(payload);
        }
        self.complete_sections(offset, pid)
    }

    /// Parses every complete section collected on `pid`; closes the
    /// collection at stuffing (table_id 0xFF) or when it is used up.
    fn complete_sections(&mut self, offset: usize, pid: Pid) -> Result<(), TsError> {
        loop {
            let Some(open) = self.sections.get_mut(&pid) else {
                return Ok(());
            };
            match open.first() {
                None | Some(0xff) => {
                    self.sections.remove(&pid);
                    return Ok(());
                }
                Some(_) => {}
            }
            let Some(total) = section_total_len(open) else {
                return Ok(());
            };
            if total > SECTION_LEN_MAX + 3 {
                return Err(malformed(offset, pid, "section_length (at most 1021)"));
            }
            if open.len() < total {
                return Ok(());
            }
            let rest = open.split_off(total);
            let section = std::mem::replace(open, rest);
            match parse_section(&section) {
                Ok(Section::Pat { programs }) => {
                    self.summary.pat_count += 1;
                    self.summary.pmt_pids = programs.into_iter().map(|(_, p)| p).collect();
                }
                Ok(Section::Pmt {
                    pcr_pid, streams, ..
                }) => {
                    self.summary.pmt_count += 1;
                    self.summary.pcr_pid = Some(pcr_pid);
                    self.summary.streams = streams;
                }
                Ok(Section::Other { .. }) => {}
                Err(SectionError::Crc) => return Err(TsError::Crc { offset, pid }),
                Err(SectionError::Malformed { what, .. }) => {
                    return Err(malformed(offset, pid, what))
                }
            }
        }
    }

    fn pes_payload(
        &mut self,
        offset: usize,
        pid: Pid,
        start: bool,
        random_access: bool,
        payload: &[u8],
    ) -> Result<(), TsError> {
        if !start {
            let Some(open) = self.open_pes.get(&pid) else {
                return Err(malformed(offset, pid, "PES data before any PES start"));
            };
            if let Some(pes) = self.summary.pes.get_mut(open.index) {
                pes.len += payload.len();
            }
            return Ok(());
        }
        self.close_pes(pid)?;
        let bad = |what| malformed(offset, pid, what);
        let Some(&[p0, p1, p2, stream_id, len_hi, len_lo]) = payload.get(..6) else {
            return Err(bad("PES header (6 bytes)"));
        };
        if [p0, p1, p2] != [0, 0, 1] {
            return Err(bad("packet_start_code_prefix"));
        }
        let packet_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let (mut pts, mut dts) = (None, None);
        if has_optional_header(stream_id) {
            let Some(&[marker, flags, header_len]) = payload.get(6..9) else {
                return Err(bad("PES header flags"));
            };
            if marker >> 6 != 0b10 {
                return Err(bad("PES header '10' marker"));
            }
            let pts_dts = flags >> 6;
            let header_len = usize::from(header_len);
            let fields = payload
                .get(9..9 + header_len)
                .ok_or(bad("PES header continues past its first packet"))?;
            let ts_at = |at: usize, prefix| {
                fields
                    .get(at..at + 5)
                    .and_then(|b| <[u8; 5]>::try_from(b).ok())
                    .and_then(|b| Ts90k::from_pes_bytes(b, prefix))
            };
            match pts_dts {
                0b10 => pts = Some(ts_at(0, PREFIX_PTS_ONLY).ok_or(bad("PTS"))?),
                0b11 => {
                    pts = Some(ts_at(0, PREFIX_PTS_WITH_DTS).ok_or(bad("PTS"))?);
                    dts = Some(ts_at(5, PREFIX_DTS).ok_or(bad("DTS"))?);
                }
                0b01 => return Err(bad("PTS_DTS_flags 01 (forbidden)")),
                _ => {}
            }
        }
        self.summary.pes.push(PesInfo {
            pid,
            stream_id,
            pts,
            dts,
            random_access,
            len: payload.len(),
            offset,
        });
        self.open_pes.insert(
            pid,
            OpenPes {
                index: self.summary.pes.len() - 1,
                declared: (packet_len != 0).then_some(6 + packet_len),
            },
        );
        Ok(())
    }

    /// Ends the open PES on `pid`, checking its PES_packet_length.
    fn close_pes(&mut self, pid: Pid) -> Result<(), TsError> {
        let Some(open) = self.open_pes.remove(&pid) else {
            return Ok(());
        };
        if let (Some(declared), Some(pes)) = (open.declared, self.summary.pes.get(open.index)) {
            if declared != pes.len {
                return Err(malformed(
                    pes.offset,
                    pid,
                    "PES_packet_length does not match the bytes carried",
                ));
            }
        }
        Ok(())
    }
}

/// Checks a transport stream and summarises it:
///
/// - the length is a whole number of 188-byte packets, each starting with
///   the sync byte 0x47, none with transport_error_indicator or scrambling;
/// - per PID (except null packets) the continuity_counter of each packet
///   with payload is one more than the last, modulo 16, unless the packet
///   sets discontinuity_indicator. A repeated counter (a duplicate packet,
///   which 2.4.3.3 allows) is reported as a gap too: shardcast never sends
///   duplicates;
/// - adaptation field lengths are in range;
/// - PAT and PMT sections (on PID 0 and the PMT PIDs of the PAT) pass their
///   CRC_32;
/// - every PES on a PID the PMT lists starts with a valid header whose
///   PTS/DTS fields have the right prefixes and marker bits, and a non-zero
///   PES_packet_length equals the bytes carried.
///
/// The checker does not reassemble a PES header split across packets (the
/// muxer never writes one) and reports it.
pub fn check_packets(buf: &[u8]) -> Result<TsSummary, TsError> {
    if !buf.len().is_multiple_of(PACKET_LEN) {
        return Err(TsError::Length { len: buf.len() });
    }
    let mut checker = Checker {
        summary: TsSummary::default(),
        counters: HashMap::new(),
        sections: HashMap::new(),
        open_pes: HashMap::new(),
    };
    for (i, p) in buf.chunks_exact(PACKET_LEN).enumerate() {
        checker.packet(i * PACKET_LEN, p)?;
    }
    let open: Vec<Pid> = checker.open_pes.keys().copied().collect();
    for pid in open {
        checker.close_pes(pid)?;
    }
    Ok(checker.summary)
}
