//! Bounds-checked readers for network bytes: a byte cursor for tag headers
//! and records (with AV1's leb128), a bit cursor with Exp-Golomb codes for
//! H.264, H.265, AAC, AV1 and VP9 syntax, and the removal of emulation
//! prevention bytes shared by H.264 and H.265. Every read either returns a
//! value or a [`MediaError::Truncated`] naming the field; nothing here
//! indexes unchecked.

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

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    /// An unsigned little-endian base-128 integer: leb128() (AV1 spec
    /// 4.10.5). At most [`LEB128_BYTES_MAX`] bytes; the value must fit in
    /// 32 bits, as the spec requires of every leb128 it uses.
    pub(crate) fn leb128(&mut self, what: &'static str) -> Result<u32, MediaError> {
        let offset = self.pos;
        let mut value: u64 = 0;
        for i in 0..LEB128_BYTES_MAX {
            let byte = self.u8(what)?;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| MediaError::Invalid {
                    what,
                    value,
                    offset,
                });
            }
        }
        Err(MediaError::Invalid {
            what,
            value,
            offset,
        })
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

/// The most bytes of a leb128 (AV1 spec 4.10.5: "i < 8").
pub(crate) const LEB128_BYTES_MAX: usize = 8;

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

    /// Skips `n` bits of fields nobody needs, failing like a read would.
    pub(crate) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), MediaError> {
        let end_bit = self.bit.saturating_add(n);
        if end_bit > self.buf.len() * 8 {
            return Err(MediaError::Truncated {
                what,
                need: end_bit.div_ceil(8),
                have: self.buf.len(),
            });
        }
        self.bit = end_bit;
        Ok(())
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

/// Removes emulation prevention bytes: every 0x03 that follows two zero
/// bytes (ISO 14496-10 7.4.1 and ISO 23008-2 7.4.2,
/// emulation_prevention_three_byte).
pub(crate) fn unescape_rbsp(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0usize;
    for &b in ebsp {
        if zeros >= 2 && b == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// `value` if it is at most `max`, else [`MediaError::Invalid`] naming it:
/// the bound that keeps later arithmetic from overflowing.
pub(crate) fn check_max(
    what: &'static str,
    value: u32,
    max: u32,
    offset: usize,
) -> Result<u32, MediaError> {
    if value > max {
        return Err(MediaError::Invalid {
            what,
            value: u64::from(value),
            offset,
        });
    }
    Ok(value)
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

    #[test]
    fn leb128_values_and_limits() {
        // 0x05; 0x80 0x01 = 128; the AV1 spec's maximum 2^32 - 1.
        let mut r = ByteReader::new(&[0x05, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(r.leb128("a"), Ok(5));
        assert_eq!(r.leb128("a"), Ok(128));
        assert_eq!(r.leb128("a"), Ok(u32::MAX));
        // 2^32 does not fit; nine continuation bytes are too many.
        assert!(matches!(
            ByteReader::new(&[0x80, 0x80, 0x80, 0x80, 0x10]).leb128("b"),
            Err(MediaError::Invalid { what: "b", .. })
        ));
        assert!(matches!(
            ByteReader::new(&[0x80; 9]).leb128("c"),
            Err(MediaError::Invalid { what: "c", .. })
        ));
        assert!(matches!(
            ByteReader::new(&[0x80]).leb128("d"),
            Err(MediaError::Truncated { what: "d", .. })
        ));
    }

    #[test]
    fn bit_skip_and_unescape() {
        let mut r = BitReader::new(&[0b1010_0000, 0xff]);
        r.skip(2, "x").unwrap();
        assert_eq!(r.bits(2, "y"), Ok(0b10));
        assert!(r.skip(13, "z").is_err());
        assert_eq!(r.bits(12, "w"), Ok(0x0ff));
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }
}
