//! RTMP: sans-IO handshake, chunk stream, AMF and command session.

pub mod amf;
pub mod chunk;
pub mod client;
pub mod conn;
pub mod handshake;
pub mod message;
pub mod session;
pub mod wire;

/// Helpers shared by the protocol unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// Hex digits (whitespace ignored) to bytes, for byte-vector fixtures.
    pub(crate) fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text
            .bytes()
            .filter(|byte| !byte.is_ascii_whitespace())
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        digits
            .chunks(2)
            .map(|pair| {
                u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16)
                    .expect("hex digit")
            })
            .collect()
    }
}
