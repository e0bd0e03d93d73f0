//! Transport packets: the 4-byte header, the adaptation field (PCR, random
//! access, stuffing), and cutting a PES packet or a PSI section into
//! 188-byte packets.
//!
//! Defined by: ISO/IEC 13818-1 2.4.3.2 (transport_packet, Table 2-2),
//! 2.4.3.4 (adaptation_field, Table 2-6), 2.4.4.2 (pointer_field).

use super::types::{ContinuityCounter, Pcr, Pid};

/// Bytes in a transport packet.
pub const PACKET_LEN: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// Bytes in the packet header.
pub(crate) const HEADER_LEN: usize = 4;
/// Bytes after the header: adaptation field plus payload.
pub(crate) const BODY_LEN: usize = PACKET_LEN - HEADER_LEN;

/// adaptation_field_control values (Table 2-5).
pub(crate) const AFC_PAYLOAD: u8 = 0b01;
pub(crate) const AFC_ADAPTATION: u8 = 0b10;
pub(crate) const AFC_BOTH: u8 = 0b11;

/// Adaptation field flag bits (Table 2-6, the byte after
/// adaptation_field_length).
pub(crate) const AF_DISCONTINUITY: u8 = 0x80;
pub(crate) const AF_RANDOM_ACCESS: u8 = 0x40;
pub(crate) const AF_PCR: u8 = 0x10;

/// The bit of the second header byte that marks the start of a PES packet
/// or of a section (payload_unit_start_indicator).
pub(crate) const PUSI: u8 = 0x40;

/// What the adaptation field of a PES's first packet carries.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FirstPacket {
    /// random_access_indicator: the PES starts a video keyframe.
    pub random_access: bool,
    pub pcr: Option<Pcr>,
}

impl FirstPacket {
    /// Bytes its adaptation field needs before any stuffing, length byte
    /// included; 0 when it needs none.
    fn adaptation_len(self) -> usize {
        if !self.random_access && self.pcr.is_none() {
            return 0;
        }
        2 + if self.pcr.is_some() { Pcr::LEN } else { 0 }
    }

    fn flags(self) -> u8 {
        let mut f = 0;
        if self.random_access {
            f |= AF_RANDOM_ACCESS;
        }
        if self.pcr.is_some() {
            f |= AF_PCR;
        }
        f
    }
}

fn write_header(out: &mut Vec<u8>, pid: Pid, start: bool, afc: u8, cc: u8) {
    let pid = pid.value();
    out.extend_from_slice(&[
        SYNC_BYTE,
        if start { PUSI } else { 0 } | (pid >> 8) as u8,
        pid as u8,
        (afc << 4) | (cc & 0x0f),
    ]);
}

/// Writes one adaptation field of exactly `total` bytes (length byte
/// included, `total` ≥ 1): flags, then the PCR if any, then 0xFF stuffing.
/// `total` = 1 is the one-byte field (length 0) used to stuff one byte.
fn write_adaptation(out: &mut Vec<u8>, total: usize, flags: u8, pcr: Option<Pcr>) {
    debug_assert!((1..=BODY_LEN).contains(&total));
    out.push((total - 1) as u8);
    if total == 1 {
        return;
    }
    let start = out.len();
    out.push(flags);
    if let Some(pcr) = pcr {
        out.extend_from_slice(&pcr.to_bytes());
    }
    let used = out.len() - start + 1;
    out.resize(out.len() + total.saturating_sub(used), 0xff);
}

/// Cuts one PES packet into transport packets on `pid`, the first with
/// payload_unit_start_indicator and `first`'s adaptation field, the last
/// padded to 188 bytes with adaptation-field stuffing. Every packet carries
/// payload, so each takes the next continuity counter value.
pub(crate) fn write_pes_packets(
    out: &mut Vec<u8>,
    pid: Pid,
    cc: &mut ContinuityCounter,
    first: FirstPacket,
    pes: &[u8],
) {
    out.reserve((pes.len() / BODY_LEN + 2) * PACKET_LEN);
    let mut rest = pes;
    let mut is_first = true;
    while !rest.is_empty() || is_first {
        let (needed, flags, pcr) = if is_first {
            (first.adaptation_len(), first.flags(), first.pcr)
        } else {
            (0, 0, None)
        };
        let take = rest.len().min(BODY_LEN - needed);
        let adaptation = BODY_LEN - take;
        let afc = if adaptation > 0 {
            AFC_BOTH
        } else {
            AFC_PAYLOAD
        };
        write_header(out, pid, is_first, afc, cc.take());
        if adaptation > 0 {
            write_adaptation(out, adaptation, flags, pcr);
        }
        let (now, later) = rest.split_at(take);
        out.extend_from_slice(now);
        rest = later;
        is_first = false;
    }
}

/// Writes one section in one packet: pointer_field 0, the section, then
/// 0xFF filler (2.4.4: stuffing after the last section of a packet).
pub(crate) fn write_section_packet(
    out: &mut Vec<u8>,
    pid: Pid,
    cc: &mut ContinuityCounter,
    section: &[u8],
) {
    debug_assert!(section.len() < BODY_LEN);
    write_header(out, pid, true, AFC_PAYLOAD, cc.take());
    let start = out.len();
    out.push(0); // pointer_field
    out.extend_from_slice(section.get(..BODY_LEN - 1).unwrap_or(section));
    out.resize(start + BODY_LEN, 0xff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::types::{Ts90k, PID_VIDEO};

    fn packets(out: &[u8]) -> Vec<&[u8]> {
        assert_eq!(out.len() % PACKET_LEN, 0);
        out.chunks(PACKET_LEN).collect()
    }

    /// Payload sizes around every boundary: the stuffing always makes whole
    /// packets and the payload comes back in order.
    #[test]
    fn stuffing_at_every_length() {
        for first in [
            FirstPacket::default(),
            FirstPacket {
                random_access: true,
                pcr: None,
            },
            FirstPacket {
                random_access: true,
                pcr: Some(Pcr::at(Ts90k::from_ms(1000))),
            },
        ] {
            for len in 1..=3 * BODY_LEN + 2 {
                let pes: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut out = Vec::new();
                let mut cc = ContinuityCounter::new(15);
                write_pes_packets(&mut out, PID_VIDEO, &mut cc, first, &pes);
                let mut back = Vec::new();
                for (n, p) in packets(&out).iter().enumerate() {
                    assert_eq!(p[0], SYNC_BYTE);
                    assert_eq!(p[1] & PUSI != 0, n == 0);
                    assert_eq!(p[3] & 0x0f, ((15 + n) % 16) as u8);
                    let afc = p[3] >> 4;
                    let payload_at = if afc == AFC_BOTH {
                        HEADER_LEN + 1 + usize::from(p[4])
                    } else {
                        assert_eq!(afc, AFC_PAYLOAD);
                        HEADER_LEN
                    };
                    back.extend_from_slice(&p[payload_at..]);
                }
                assert_eq!(back, pes, "len {len}");
            }
        }
    }

    #[test]
    fn first_packet_adaptation_field() {
        let mut out = Vec::new();
        let mut cc = ContinuityCounter::new(0);
        let first = FirstPacket {
            random_access: true,
            pcr: Some(Pcr::at(Ts90k::from_ms(1000))),
        };
        write_pes_packets(&mut out, PID_VIDEO, &mut cc, first, &[0xAB; 400]);
        assert_eq!(
            &out[..12],
            &[
                0x47, 0x41, 0x00, 0x30, // PUSI, PID 0x100, AF + payload, CC 0
                0x07, 0x50, // length 7, RAI + PCR
                0x00, 0x00, 0xAF, 0xC8, 0x7E, 0x00, // PCR base 90000
            ]
        );
        assert_eq!(out[12], 0xAB);
        // 400 = 176 + 184 + 40: the last packet has 144 bytes of adaptation.
        assert_eq!(out.len(), 3 * PACKET_LEN);
        assert_eq!(&out[188..192], &[0x47, 0x01, 0x00, 0x11]);
        let last = &out[376..];
        assert_eq!(&last[..6], &[0x47, 0x01, 0x00, 0x32, 143, 0x00]);
        assert!(last[6..148].iter().all(|&b| b == 0xff));
        assert!(last[148..].iter().all(|&b| b == 0xAB));
    }

    /// 183 bytes of payload leave one byte: the one-byte adaptation field.
    #[test]
    fn one_byte_of_stuffing() {
        let mut out = Vec::new();
        let mut cc = ContinuityCounter::new(0);
        write_pes_packets(
            &mut out,
            PID_VIDEO,
            &mut cc,
            FirstPacket::default(),
            &[1; 183],
        );
        assert_eq!(&out[..5], &[0x47, 0x41, 0x00, 0x30, 0x00]);
        assert_eq!(out.len(), PACKET_LEN);
        // 182 leave two: length 1 and an empty flags byte.
        let mut out = Vec::new();
        write_pes_packets(
            &mut out,
            PID_VIDEO,
            &mut cc,
            FirstPacket::default(),
            &[1; 182],
        );
        assert_eq!(&out[..6], &[0x47, 0x41, 0x00, 0x31, 0x01, 0x00]);
    }
}
