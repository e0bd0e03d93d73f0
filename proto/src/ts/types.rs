//! Typed wire values of MPEG-TS: the 90 kHz clock, PIDs and continuity
//! counters, and the bit layouts of PCR and PES timestamps.
//!
//! Defined by: ISO/IEC 13818-1 2.4.3.2 (PID, continuity_counter), 2.4.3.5
//! (program_clock_reference), 2.4.3.7 (PTS and DTS fields).

use std::fmt;

/// A time on the 90 kHz system clock base, as PTS, DTS and the PCR base
/// carry it: 33 bits, wrapping.
///
/// This is the only place that converts milliseconds to 90 kHz ticks and
/// the only place that wraps. The RTMP millisecond clock wraps at 2^32 ms,
/// and 2^32 ms × 90 = 45 × 2^33 ticks, a whole number of 33-bit periods, so
/// converting the wrapped 32-bit millisecond value gives the same tick value
/// as converting the unwrapped one: a stream stays continuous across both
/// wraps.
///
/// `Ord` compares the wrapped values; use [`Ts90k::ticks_since`] to measure
/// forward distance across a wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ts90k(u64);

impl Ts90k {
    /// Ticks per second.
    pub const HZ: u64 = 90_000;
    /// Ticks per millisecond.
    pub const TICKS_PER_MS: u64 = 90;
    /// Timestamps have 33 bits.
    pub const BITS: u32 = 33;
    /// All 33 bits set: the largest value.
    pub const MASK: u64 = (1 << Self::BITS) - 1;

    /// `ms` milliseconds as 90 kHz ticks, wrapped to 33 bits.
    pub fn from_ms(ms: u64) -> Self {
        // 2^33 divides 2^64, so wrapping in u64 first does not change the
        // 33-bit result.
        Ts90k(ms.wrapping_mul(Self::TICKS_PER_MS) & Self::MASK)
    }

    /// A tick count, wrapped to 33 bits.
    pub fn from_ticks(ticks: u64) -> Self {
        Ts90k(ticks & Self::MASK)
    }

    /// The tick count, always below 2^33.
    pub fn value(self) -> u64 {
        self.0
    }

    /// Ticks from `earlier` forward to `self`, modulo 2^33: correct across
    /// one wrap; a time before `earlier` gives a value near 2^33.
    pub fn ticks_since(self, earlier: Ts90k) -> u64 {
        self.0.wrapping_sub(earlier.0) & Self::MASK
    }

    /// The 5-byte PES form (2.4.3.7): a 4-bit prefix, then the 33 bits in
    /// groups of 3, 15 and 15, each followed by a marker bit of 1.
    pub(crate) fn pes_bytes(self, prefix: u8) -> [u8; 5] {
        let t = self.0;
        [
            (prefix << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
            (t >> 22) as u8,
            (((t >> 15) as u8 & 0x7f) << 1) | 1,
            (t >> 7) as u8,
            ((t as u8 & 0x7f) << 1) | 1,
        ]
    }

    /// Reads the 5-byte PES form, checking the prefix and the three marker
    /// bits. None if any is wrong.
    pub(crate) fn from_pes_bytes(b: [u8; 5], prefix: u8) -> Option<Ts90k> {
        let [b0, b1, b2, b3, b4] = b;
        if b0 >> 4 != prefix || b0 & 1 == 0 || b2 & 1 == 0 || b4 & 1 == 0 {
            return None;
        }
        let t = (u64::from((b0 >> 1) & 0x07) << 30)
            | (u64::from(b1) << 22)
            | (u64::from(b2 >> 1) << 15)
            | (u64::from(b3) << 7)
            | u64::from(b4 >> 1);
        Some(Ts90k(t))
    }
}

impl fmt::Display for Ts90k {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// PES timestamp prefixes (2.4.3.7): PTS alone, PTS before a DTS, DTS.
pub(crate) const PREFIX_PTS_ONLY: u8 = 0b0010;
pub(crate) const PREFIX_PTS_WITH_DTS: u8 = 0b0011;
pub(crate) const PREFIX_DTS: u8 = 0b0001;

/// A program clock reference: a 33-bit base at 90 kHz and a 9-bit
/// extension at 27 MHz (0..300). Defined by: 13818-1 2.4.3.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pcr {
    pub base: Ts90k,
    /// 0..=299.
    pub extension: u16,
}

impl Pcr {
    /// Bytes of the PCR field in an adaptation field.
    pub const LEN: usize = 6;

    /// A PCR at a 90 kHz time (extension 0).
    pub fn at(base: Ts90k) -> Pcr {
        Pcr { base, extension: 0 }
    }

    /// program_clock_reference_base (33), reserved (6, all ones),
    /// program_clock_reference_extension (9).
    pub(crate) fn to_bytes(self) -> [u8; 6] {
        let b = self.base.value();
        let e = self.extension & 0x1ff;
        [
            (b >> 25) as u8,
            (b >> 17) as u8,
            (b >> 9) as u8,
            (b >> 1) as u8,
            (((b & 1) as u8) << 7) | 0x7e | (e >> 8) as u8,
            e as u8,
        ]
    }

    pub(crate) fn from_bytes(p: [u8; 6]) -> Pcr {
        let base = (u64::from(p[0]) << 25)
            | (u64::from(p[1]) << 17)
            | (u64::from(p[2]) << 9)
            | (u64::from(p[3]) << 1)
            | u64::from(p[4] >> 7);
        Pcr {
            base: Ts90k(base),
            extension: (u16::from(p[4] & 1) << 8) | u16::from(p[5]),
        }
    }
}

/// A packet identifier: 13 bits. Defined by: 13818-1 2.4.3.3, Table 2-3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(u16);

impl Pid {
    /// The largest PID (the null packet PID).
    pub const MAX: u16 = 0x1fff;

    /// A PID, if `raw` fits in 13 bits.
    pub const fn new(raw: u16) -> Option<Pid> {
        if raw <= Self::MAX {
            Some(Pid(raw))
        } else {
            None
        }
    }

    /// The low 13 bits of `raw`, as read from a packet header.
    pub(crate) const fn from_bits(raw: u16) -> Pid {
        Pid(raw & Self::MAX)
    }

    pub const fn value(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// The Program Association Table's PID.
pub const PID_PAT: Pid = Pid(0x0000);
/// Null packets.
pub const PID_NULL: Pid = Pid(0x1fff);
/// The PMT of shardcast's one program.
pub const PID_PMT: Pid = Pid(0x1000);
/// shardcast's video elementary stream.
pub const PID_VIDEO: Pid = Pid(0x0100);
/// shardcast's audio elementary stream.
pub const PID_AUDIO: Pid = Pid(0x0101);

/// A 4-bit continuity counter: one per PID, incremented on every packet of
/// that PID that carries payload, wrapping from 15 to 0. Defined by:
/// 13818-1 2.4.3.3 (continuity_counter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContinuityCounter(u8);

impl ContinuityCounter {
    /// Counters have 4 bits.
    pub const MODULUS: u8 = 16;

    pub const fn new(value: u8) -> Self {
        ContinuityCounter(value % Self::MODULUS)
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    /// The value after this one.
    pub const fn successor(self) -> Self {
        ContinuityCounter((self.0 + 1) % Self::MODULUS)
    }

    /// Returns the value for the next packet with payload and advances.
    pub fn take(&mut self) -> u8 {
        let v = self.0;
        *self = self.successor();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_to_90k_and_wrap() {
        assert_eq!(Ts90k::from_ms(0).value(), 0);
        assert_eq!(Ts90k::from_ms(1000).value(), 90_000);
        // 2^33 ticks = 95443.7176 s: 95_443_718 ms is just past the wrap.
        assert_eq!(
            Ts90k::from_ms(95_443_718).value(),
            95_443_718 * 90 - (1 << 33)
        );
        // The RTMP 32-bit ms wrap lands on a 33-bit tick wrap.
        assert_eq!(Ts90k::from_ms(1 << 32).value(), 0);
        assert_eq!(
            Ts90k::from_ms(u64::from(u32::MAX)).value(),
            Ts90k::MASK + 1 - 90
        );
        assert_eq!(
            Ts90k::from_ms(5).ticks_since(Ts90k::from_ms(u64::from(u32::MAX))),
            6 * 90
        );
        assert_eq!(Ts90k::from_ticks(Ts90k::MASK + 2).value(), 1);
    }

    /// PTS/DTS fields, worked out bit by bit from 2.4.3.7.
    #[test]
    fn pes_timestamp_bytes() {
        // 0: prefix and the three marker bits only.
        assert_eq!(
            Ts90k::from_ticks(0).pes_bytes(PREFIX_PTS_ONLY),
            [0x21, 0x00, 0x01, 0x00, 0x01]
        );
        // 90000 = 0x15F90: bits 32..30 = 0, 29..15 = 0x0002, 14..0 = 0x5F90.
        assert_eq!(
            Ts90k::from_ms(1000).pes_bytes(PREFIX_PTS_WITH_DTS),
            [0x31, 0x00, 0x05, 0xBF, 0x21]
        );
        assert_eq!(
            Ts90k::from_ms(1000).pes_bytes(PREFIX_DTS),
            [0x11, 0x00, 0x05, 0xBF, 0x21]
        );
        // All 33 bits set.
        assert_eq!(
            Ts90k::from_ticks(Ts90k::MASK).pes_bytes(PREFIX_PTS_ONLY),
            [0x2F, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        // 2^32 + 1: only bit 32 and bit 0.
        assert_eq!(
            Ts90k::from_ticks((1 << 32) + 1).pes_bytes(PREFIX_DTS),
            [0x19, 0x00, 0x01, 0x00, 0x03]
        );
        // Past the wrap: 2^33 + 0x12345 ticks is 0x12345 = bits 29..15 = 2,
        // 14..0 = 0x2345.
        let wrapped = Ts90k::from_ticks((1 << 33) + 0x12345);
        assert_eq!(wrapped.value(), 0x12345);
        assert_eq!(
            wrapped.pes_bytes(PREFIX_PTS_ONLY),
            [0x21, 0x00, 0x05, 0x46, 0x8B]
        );
        for t in [0, 1, 90_000, 0x1_2345_6789, Ts90k::MASK] {
            let ts = Ts90k::from_ticks(t);
            assert_eq!(
                Ts90k::from_pes_bytes(ts.pes_bytes(PREFIX_DTS), PREFIX_DTS),
                Some(ts)
            );
        }
        // A wrong prefix or a cleared marker bit is refused.
        let b = Ts90k::from_ms(1000).pes_bytes(PREFIX_DTS);
        assert_eq!(Ts90k::from_pes_bytes(b, PREFIX_PTS_ONLY), None);
        assert_eq!(
            Ts90k::from_pes_bytes([b[0], b[1], b[2] & !1, b[3], b[4]], PREFIX_DTS),
            None
        );
    }

    /// PCR fields, worked out bit by bit from 2.4.3.5.
    #[test]
    fn pcr_bytes() {
        // Base 0, extension 0: only the six reserved bits.
        assert_eq!(
            Pcr::at(Ts90k::from_ticks(0)).to_bytes(),
            [0, 0, 0, 0, 0x7E, 0]
        );
        // Base 90000 = 0x15F90: base >> 1 = 0xAFC8 in bytes 2..3, bit 0 = 0.
        assert_eq!(
            Pcr::at(Ts90k::from_ms(1000)).to_bytes(),
            [0x00, 0x00, 0xAF, 0xC8, 0x7E, 0x00]
        );
        // Base all ones, extension 299 = 0x12B.
        let p = Pcr {
            base: Ts90k::from_ticks(Ts90k::MASK),
            extension: 299,
        };
        assert_eq!(p.to_bytes(), [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x2B]);
        assert_eq!(Pcr::from_bytes(p.to_bytes()), p);
        // Past the 33-bit wrap: 2^33 + 3 ticks is base 3.
        let w = Pcr::at(Ts90k::from_ticks((1 << 33) + 3));
        assert_eq!(w.to_bytes(), [0, 0, 0, 0x01, 0xFE, 0x00]);
        assert_eq!(Pcr::from_bytes(w.to_bytes()).base.value(), 3);
    }

    #[test]
    fn pid_and_counter() {
        assert_eq!(Pid::new(0x1fff), Some(PID_NULL));
        assert_eq!(Pid::new(0x2000), None);
        assert_eq!(PID_PMT.to_string(), "0x1000");
        let mut cc = ContinuityCounter::new(14);
        assert_eq!([cc.take(), cc.take(), cc.take()], [14, 15, 0]);
        assert_eq!(ContinuityCounter::new(17).value(), 1);
    }
}
