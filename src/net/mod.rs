//! Everything between a socket and a session driver: the one
//! [`Transport`] (plain TCP or TLS), protocol sniffing on the one
//! port, reads and writes with named deadlines, the vectored drain of a
//! player's queue, and the registry of open connections. Nothing here knows
//! the shard, its streams or any session: the drivers in `server/` use it.

pub mod dial;
pub mod io;
pub mod registry;
pub mod tls;
pub mod transport;

pub use registry::{ConnSlot, ConnState, ConnWhat, Conns, Registered};
pub use tls::TlsAcceptor;
pub use transport::{Carried, DirectHandle, Transport};

/// What the first byte of a connection says it is (DESIGN.md: one port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    /// RTMP: the C0 version byte, 0x03.
    Rtmp,
    /// HTTP/1: an uppercase method letter.
    Http,
    /// A TLS record (0x16): a ClientHello when `[tls]` is configured.
    Tls,
    /// Nothing we serve.
    Unknown(u8),
}

impl Sniffed {
    /// Classifies a connection by its first byte.
    pub fn from_first_byte(b: u8) -> Self {
        match b {
            proto::rtmp::handshake::RTMP_VERSION => Sniffed::Rtmp,
            b'A'..=b'Z' => Sniffed::Http,
            0x16 => Sniffed::Tls,
            other => Sniffed::Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sniffed;

    #[test]
    fn the_first_byte_names_the_protocol() {
        assert_eq!(Sniffed::from_first_byte(0x03), Sniffed::Rtmp);
        for b in b"GHPODC" {
            assert_eq!(Sniffed::from_first_byte(*b), Sniffed::Http);
        }
        assert_eq!(Sniffed::from_first_byte(0x16), Sniffed::Tls);
        assert_eq!(Sniffed::from_first_byte(b'g'), Sniffed::Unknown(b'g'));
        assert_eq!(Sniffed::from_first_byte(0), Sniffed::Unknown(0));
        // The sniff reads one byte, so every input is one of these 256
        // (which is why it has no fuzz target): 26 HTTP, one RTMP, one TLS.
        let all: Vec<Sniffed> = (0..=255u8).map(Sniffed::from_first_byte).collect();
        let count = |want: Sniffed| all.iter().filter(|s| **s == want).count();
        assert_eq!(count(Sniffed::Http), 26);
        assert_eq!((count(Sniffed::Rtmp), count(Sniffed::Tls)), (1, 1));
        assert!(all
            .iter()
            .enumerate()
            .all(|(b, s)| !matches!(s, Sniffed::Unknown(u) if usize::from(*u) != b)));
    }
}
