//! CRC-32/MPEG-2, the CRC_32 of PSI sections.
//!
//! Defined by: ISO/IEC 13818-1 Annex A: generator polynomial 0x04C11DB7,
//! register preset to all ones, bits fed most significant first, no final
//! inversion. Because nothing is reflected or inverted, running the CRC over
//! a section including its own CRC_32 field gives 0, which is how a decoder
//! checks it.

/// The generator polynomial of Annex A.
const POLY: u32 = 0x04C1_1DB7;

/// One entry per byte value: the register change for shifting that byte in.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ POLY
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC_32 of `data`.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| {
        // The index is a u8, so it is always within the 256-entry table.
        (crc << 8) ^ TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The usual CRC catalogue check: the ASCII digits 1 to 9.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_mpeg2(&[]), 0xFFFF_FFFF);
    }

    #[test]
    fn section_with_its_crc_gives_zero() {
        let mut s = b"123456789".to_vec();
        s.extend_from_slice(&crc32_mpeg2(b"123456789").to_be_bytes());
        assert_eq!(crc32_mpeg2(&s), 0);
    }
}
