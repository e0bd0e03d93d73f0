//! Bounds-checked readers for network bytes: a byte cursor for tag headers
//! and records, and a bit cursor with Exp-Golomb codes for H.264 and AAC
//! syntax. Every read either returns a value or a [`MediaError::Truncated`]
//! naming the field; nothing here indexes unchecked.

use super::MediaError;

/// A cursor over bytes, reading big-endian fields.
pub(crate) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf, pos: 0 }
    }

    /// Offset of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MediaError> {
        let end = self.pos.checked_add(n).ok_or(MediaError::Truncated {
            what,
            need: usize::MAX,
            have: self.buf.len(),
        })?;
        let out = self.buf.get(self.pos..end).ok_or(MediaError::Truncated {
            what,
            need: end,
            have: self.buf.len(),
        })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, MediaError> {
        let b = self.take(1, what)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, MediaError> {
        Ok(self.be(2, what)? as u16)
    }

    pub(crate) fn u24(&mut self, what: &'static str) -> Result<u32, MediaError> {
        Ok(self.be(3, what)? as u32)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, MediaError> {
        Ok(self.be(4, what)? as u32)
    }

    /// A signed 24-bit big-endian integer (FLV SI24), sign-extended.
    pub(crate) fn i24(&mut self, what: &'static str) -> Result<i32, MediaError> {
        let raw = self.u24(what)?;
        // Shift the sign bit (bit 23) into bit 31, then shift back
        // arithmetically.
        Ok(((raw << 8) as i32) >> 8)
    }

    fn be(&mut self, n: usize, what: &'static str) -> Result<u64, MediaError> {
        let bytes = self.take(n, what)?;
        Ok(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }
}

/// A cursor over bits, most significant bit first (ISO 14496-10 7.2, ISO
/// 14496-3 1.5).
pub(crate) struct BitReader<'a> {
    buf: &'a [u8],
    /// Position in bits from the start of `buf`.
    bit: usize,
}

/// The longest Exp-Golomb prefix accepted: 31 leading zeros code values up to
/// 2^32 - 2, the largest any H.264 syntax element uses (7.2, ue(v)).
const EXP_GOLOMB_ZEROS_MAX: u32 = 31;

impl<'a> BitReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, bit: 0 }
    }

    /// Byte offset of the next bit, for error reports.
    pub(crate) fn byte_pos(&self) -> usize {
        self.bit / 8
    }

    pub(crate) fn bit(&mut self, what: &'static str) -> Result<bool, MediaError> {
        let byte = self
            .buf
            .get(self.bit / 8)
            .copied()
            .ok_or(MediaError::Truncated {
                what,
                need: self.bit / 8 + 1,
                have: self.buf.len(),
            })?;
        let set = (byte >> (7 - (self.bit % 8))) & 1 == 1;
        self.bit += 1;
        Ok(set)
    }

    pub(crate) fn flag(&mut self, what: &'static str) -> Result<bool, MediaError> {
        self.bit(what)
    }

    /// `n` bits (at most 32) as an unsigned integer: u(n).
    pub(crate) fn bits(&mut self, n: u32, what: &'static str) -> Result<u32, MediaError> {
        debug_assert!(n <= 32, "bits() reads at most 32 bits");
        let end_bit = self.bit + n as usize;
        if end_bit > self.buf.len() * 8 {
            return Err(MediaError::Truncated {
                what,
                need: end_bit.div_ceil(8),
                have: self.buf.len(),
            });
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit(what)?);
        }
        Ok(v as u32)
    }

    /// An unsigned Exp-Golomb code: ue(v) (ISO 14496-10 9.1).
    pub(crate) fn ue(&mut self, what: &'static str) -> Result<u32, MediaError> {
        let offset = self.byte_pos();
        let mut zeros = 0u32;
        while !self.bit(what)? {
            zeros += 1;
            if zeros > EXP_GOLOMB_ZEROS_MAX {
                return Err(MediaError::Invalid {
                    what,
                    value: u64::from(zeros),
                    offset,
                });
            }
        }
        let suffix = u64::from(self.bits(zeros, what)?);
        // zeros <= 31, so (1 << zeros) - 1 + suffix <= 2^32 - 2.
        Ok(((1u64 << zeros) - 1 + suffix) as u32)
    }

    /// A signed Exp-Golomb code: se(v) (ISO 14496-10 9.1.1).
    pub(crate) fn se(&mut self, what: &'static str) -> Result<i32, MediaError> {
        let k = i64::from(self.ue(what)?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4
        // bits: 1010 0110 0100 0010 1000 0000
        let buf = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&buf);
        assert_eq!(r.ue("a"), Ok(0));
        assert_eq!(r.ue("a"), Ok(1));
        assert_eq!(r.ue("a"), Ok(2));
        assert_eq!(r.ue("a"), Ok(3));
        assert_eq!(r.ue("a"), Ok(4));
        // se: codeNum 1 -> 1, 2 -> -1, 3 -> 2, 4 -> -2
        let mut r = BitReader::new(&buf);
        assert_eq!(r.se("a"), Ok(0));
        assert_eq!(r.se("a"), Ok(1));
        assert_eq!(r.se("a"), Ok(-1));
        assert_eq!(r.se("a"), Ok(2));
        assert_eq!(r.se("a"), Ok(-2));
    }

    #[test]
    fn exp_golomb_limits() {
        // 32 zeros then a one: longer than any valid code.
        let buf = [0, 0, 0, 0, 0x80, 0, 0, 0, 0];
        assert!(matches!(
            BitReader::new(&buf).ue("x"),
            Err(MediaError::Invalid { what: "x", .. })
        ));
        // 31 zeros, a one, 31 ones: the largest value, 2^32 - 2.
        let buf = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
        assert_eq!(BitReader::new(&buf).ue("x"), Ok(u32::MAX - 1));
        // Runs out of bits inside the prefix and inside the suffix.
        assert!(matches!(
            BitReader::new(&[0, 0]).ue("x"),
            Err(MediaError::Truncated { what: "x", .. })
        ));
        assert!(matches!(
            BitReader::new(&[0x01]).ue("x"),
            Err(MediaError::Truncated { what: "x", .. })
        ));
    }

    #[test]
    fn byte_reader_fields() {
        let buf = [0x12, 0x34, 0x56, 0xff, 0xff, 0xfe, 0x00];
        let mut r = ByteReader::new(&buf);
        assert_eq!(r.u24("a"), Ok(0x123456));
        assert_eq!(r.i24("b"), Ok(-2));
        assert_eq!(
            r.u16("c"),
            Err(MediaError::Truncated {
                what: "c",
                need: 8,
                have: 7
            })
        );
        assert_eq!(r.u8("d"), Ok(0));
        assert_eq!(r.remaining(), 0);
    }
}
