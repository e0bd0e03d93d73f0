//! The RTMP handshake, sans-IO: bytes go in, bytes to send come out.
//!
//! Defined by: RTMP spec 1.0, section 5.2 (C0/S0, C1/S1, C2/S2), plus the
//! "digest" handshake that Flash Player 9+ and Flash Media Server use and
//! that FFmpeg and most encoders still send.
//!
//! ```text
//!   client                                   server
//!     | --- C0 (version 3) + C1 (1536 B) ----> |  ExpectC0C1
//!     | <-- S0 + S1 + S2 (one write) --------- |
//!     | --- C2 (1536 B, not checked) --------> |  ExpectC2
//!     |                                        |  Done
//! ```
//!
//! A C1 is 1536 bytes: time (4), version (4), then 1528 bytes that are
//! random in the plain handshake. In the digest handshake the 1528 bytes hold
//! two 764-byte blocks, a "key" block and a "digest" block, in either order:
//! scheme 0 puts the digest block first (at byte 8), scheme 1 puts it second
//! (at byte 772). A digest block starts with four bytes whose sum modulo 728
//! gives the position of a 32-byte HMAC-SHA256 digest inside the block; the
//! digest covers the other 1504 bytes of the packet. The server proves it
//! knows the keys by answering with an S1 digest of its own and an S2 whose
//! last 32 bytes are keyed by the client's digest.
//!
//! Nothing here reads a clock or a random source: the caller passes a seed
//! and our time, so a test can replay a handshake byte for byte.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only version this server speaks (C0/S0 byte); 6 would be RTMPE.
pub const RTMP_VERSION: u8 = 3;

/// Length of an HMAC-SHA256 digest.
const DIGEST_LEN: usize = 32;
/// The bytes an S2/C2 digest covers: all but the trailing digest.
const SIGNED_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;
/// Size of the key block and the digest block.
const BLOCK_LEN: usize = 764;
/// Digest positions inside a block are taken modulo this (764 - 4 - 32).
const DIGEST_OFFSET_MODULO: usize = BLOCK_LEN - 4 - DIGEST_LEN;

/// The 30-byte public part of the Flash Player key signs C1; the whole
/// 62-byte key signs C2. Protocol constants of the digest handshake.
const GENUINE_FP_KEY: [u8; 62] = *b"Genuine Adobe Flash Player 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\
\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const GENUINE_FP_KEY_PUBLIC_LEN: usize = 30;

/// The 36-byte public part of the Flash Media Server key signs S1; the whole
/// 68-byte key signs S2.
const GENUINE_FMS_KEY: [u8; 68] = *b"Genuine Adobe Flash Media Server 001\
\xF0\xEE\xC2\x4A\x80\x68\xBE\xE8\x2E\x00\xD0\xD1\x02\x9E\x7E\x57\x6E\xEC\x5D\x2D\
\x29\x80\x6F\xAB\x93\xB8\xE6\x36\xCF\xEB\x31\xAE";
const GENUINE_FMS_KEY_PUBLIC_LEN: usize = 36;

/// Version bytes we put in a digest S1 (any non-zero value marks a digest
/// handshake; FFmpeg checks that byte 1 is at least 3).
const SERVER_VERSION: [u8; 4] = [4, 5, 0, 1];
/// Version bytes we put in a digest C1 (a Flash Player style version).
const CLIENT_VERSION: [u8; 4] = [10, 0, 45, 2];

// The furthest digest, scheme 1's with the largest offset, ends inside the packet,
// so the fixed-size indexing in `digest_pos` and `packet_digest` cannot fail.
const _: () =
    assert!(8 + BLOCK_LEN + 4 + (DIGEST_OFFSET_MODULO - 1) + DIGEST_LEN <= HANDSHAKE_SIZE);
const _: () = assert!(GENUINE_FP_KEY_PUBLIC_LEN <= GENUINE_FP_KEY.len());
const _: () = assert!(GENUINE_FMS_KEY_PUBLIC_LEN <= GENUINE_FMS_KEY.len());

type Packet = [u8; HANDSHAKE_SIZE];

/// Why a handshake failed. Every failure is the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Byte 0 (C0 or S0) was not 3. A peer sending random bytes or another
    /// protocol (TLS, HTTP) usually ends here.
    BadVersion { version: u8 },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadVersion { version } => write!(
                f,
                "RTMP handshake byte 0 (C0/S0 version) is {version} (0x{version:02x}), \
                 expected {RTMP_VERSION}"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Where the digest block sits in a digest-handshake packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// Digest block first; its offset comes from bytes 8..12.
    Scheme0,
    /// Key block first; the digest offset comes from bytes 772..776.
    Scheme1,
}

/// Which handshake the peer spoke, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Spec 5.2: the reply echoes the peer's packet.
    Plain,
    /// Flash Player 9+ / FMS: HMAC-SHA256 digests at the given scheme.
    Digest(DigestScheme),
}

/// Which C1 a [`ClientHandshake`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// Version bytes zero, random body.
    Plain,
    /// A digest C1 at the given scheme.
    Digest(DigestScheme),
}

/// Server side of the handshake.
///
/// States are named for what they wait for: `ExpectC0C1` (S0S1S2 is queued
/// as soon as it is complete), `ExpectC2`, `Done`.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    rng: XorShift,
    epoch_ms: u32,
    transmit: Option<Vec<u8>>,
    kind: Option<HandshakeKind>,
}

#[derive(Debug)]
enum ServerState {
    /// C0 and C1 collected so far (at most 1 + 1536 bytes).
    ExpectC0C1 {
        received: Vec<u8>,
    },
    /// How many bytes of C2 arrived; their content is not checked.
    ExpectC2 {
        received: usize,
    },
    Done,
    Failed(HandshakeError),
}

impl ServerHandshake {
    /// `random` seeds the random bytes of S1 and S2; `epoch_ms` is the time
    /// field of S1.
    pub fn new(random: u64, epoch_ms: u32) -> Self {
        ServerHandshake {
            state: ServerState::ExpectC0C1 {
                received: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            },
            rng: XorShift::new(random),
            epoch_ms,
            transmit: None,
            kind: None,
        }
    }

    /// Consumes bytes from the front of `input` and returns how many. Bytes
    /// after C2 are left alone: they belong to the chunk stream. A partial
    /// packet is kept, so this never needs more than it is given.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match &mut self.state {
                ServerState::ExpectC0C1 { received } => {
                    if received.is_empty() {
                        let Some(&version) = rest.first() else {
                            return Ok(consumed);
                        };
                        if version != RTMP_VERSION {
                            return Err(self.fail(HandshakeError::BadVersion { version }));
                        }
                    }
                    consumed += take_into(received, 1 + HANDSHAKE_SIZE, rest);
                    if received.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    let c1 = packet_after_version(received);
                    self.transmit = Some(self.reply_to(&c1));
                    self.state = ServerState::ExpectC2 { received: 0 };
                }
                ServerState::ExpectC2 { received } => {
                    let take = rest.len().min(HANDSHAKE_SIZE - *received);
                    *received += take;
                    consumed += take;
                    if *received == HANDSHAKE_SIZE {
                        self.state = ServerState::Done;
                    }
                    return Ok(consumed);
                }
                ServerState::Done => return Ok(consumed),
                ServerState::Failed(e) => return Err(e.clone()),
            }
        }
    }

    /// S0+S1+S2 in one buffer, once C0C1 has arrived.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    /// True once C2 arrived; the bytes after it are chunk stream.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Which handshake the client spoke, once C1 arrived.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        self.state = ServerState::Failed(e.clone());
        e
    }

    /// Builds S0+S1+S2 for `c1`: a digest reply if C1 carries a valid
    /// Flash Player digest, else the plain reply (S2 echoes C1).
    fn reply_to(&mut self, c1: &Packet) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1[0..4].copy_from_slice(&self.epoch_ms.to_be_bytes());
        self.rng.fill(&mut s1[8..]);
        let found = [DigestScheme::Scheme0, DigestScheme::Scheme1]
            .into_iter()
            .find_map(|scheme| {
                let digest =
                    valid_digest(c1, scheme, &GENUINE_FP_KEY[..GENUINE_FP_KEY_PUBLIC_LEN])?;
                Some((scheme, digest))
            });
        match found {
            Some((scheme, c1_digest)) => {
                self.kind = Some(HandshakeKind::Digest(scheme));
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                sign_packet(
                    &mut s1,
                    scheme,
                    &GENUINE_FMS_KEY[..GENUINE_FMS_KEY_PUBLIC_LEN],
                );
                out.extend_from_slice(&s1);
                let mut s2 = [0u8; HANDSHAKE_SIZE];
                self.rng.fill(&mut s2[..SIGNED_LEN]);
                sign_response(&mut s2, &GENUINE_FMS_KEY, &c1_digest);
                out.extend_from_slice(&s2);
            }
            None => {
                self.kind = Some(HandshakeKind::Plain);
                out.extend_from_slice(&s1);
                out.extend_from_slice(c1);
            }
        }
        out
    }
}

/// Client side, for the edge puller and the load generator: `new` queues
/// C0C1; `handle_input` takes S0S1S2, after S1 `poll_transmit` gives C2, and
/// after S2 `is_done` is true.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    rng: XorShift,
    mode: ClientMode,
    c1_digest: Option<[u8; DIGEST_LEN]>,
    transmit: Option<Vec<u8>>,
    kind: Option<HandshakeKind>,
}

#[derive(Debug)]
enum ClientState {
    /// S0 and S1 collected so far (at most 1 + 1536 bytes).
    ExpectS0S1 {
        received: Vec<u8>,
    },
    /// How many bytes of S2 arrived; their content is not checked.
    ExpectS2 {
        received: usize,
    },
    Done,
    Failed(HandshakeError),
}

impl ClientHandshake {
    /// A client sending a digest C1 at scheme 0, as FFmpeg does.
    pub fn new(random: u64, epoch_ms: u32) -> Self {
        Self::with_mode(random, epoch_ms, ClientMode::Digest(DigestScheme::Scheme0))
    }

    /// A client sending the C1 `mode` asks for.
    pub fn with_mode(random: u64, epoch_ms: u32, mode: ClientMode) -> Self {
        let mut rng = XorShift::new(random);
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[0..4].copy_from_slice(&epoch_ms.to_be_bytes());
        rng.fill(&mut c1[8..]);
        let c1_digest = match mode {
            ClientMode::Plain => None,
            ClientMode::Digest(scheme) => {
                c1[4..8].copy_from_slice(&CLIENT_VERSION);
                Some(sign_packet(
                    &mut c1,
                    scheme,
                    &GENUINE_FP_KEY[..GENUINE_FP_KEY_PUBLIC_LEN],
                ))
            }
        };
        let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        c0c1.push(RTMP_VERSION);
        c0c1.extend_from_slice(&c1);
        ClientHandshake {
            state: ClientState::ExpectS0S1 {
                received: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            },
            rng,
            mode,
            c1_digest,
            transmit: Some(c0c1),
            kind: None,
        }
    }

    /// Consumes bytes from the front of `input` and returns how many; bytes
    /// after S2 are left alone.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match &mut self.state {
                ClientState::ExpectS0S1 { received } => {
                    if received.is_empty() {
                        let Some(&version) = rest.first() else {
                            return Ok(consumed);
                        };
                        if version != RTMP_VERSION {
                            let e = HandshakeError::BadVersion { version };
                            self.state = ClientState::Failed(e.clone());
                            return Err(e);
                        }
                    }
                    consumed += take_into(received, 1 + HANDSHAKE_SIZE, rest);
                    if received.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(consumed);
                    }
                    let s1 = packet_after_version(received);
                    let c2 = self.reply_to(&s1);
                    // C2 goes out after C0C1 even if the driver never polled.
                    match &mut self.transmit {
                        Some(pending) => pending.extend_from_slice(&c2),
                        None => self.transmit = Some(c2),
                    }
                    self.state = ClientState::ExpectS2 { received: 0 };
                }
                ClientState::ExpectS2 { received } => {
                    let take = rest.len().min(HANDSHAKE_SIZE - *received);
                    *received += take;
                    consumed += take;
                    if *received == HANDSHAKE_SIZE {
                        self.state = ClientState::Done;
                    }
                    return Ok(consumed);
                }
                ClientState::Done => return Ok(consumed),
                ClientState::Failed(e) => return Err(e.clone()),
            }
        }
    }

    /// C0C1 at first, then C2 once S1 has arrived.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.take()
    }

    /// True once S2 arrived; the bytes after it are chunk stream.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Which handshake the server answered with, once S1 arrived.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// C2: signed with the server's S1 digest if we sent a digest C1 and
    /// S1 carries a valid FMS digest, else an echo of S1.
    fn reply_to(&mut self, s1: &Packet) -> Vec<u8> {
        let server_digest = match self.mode {
            ClientMode::Plain => None,
            ClientMode::Digest(ours) => {
                let other = match ours {
                    DigestScheme::Scheme0 => DigestScheme::Scheme1,
                    DigestScheme::Scheme1 => DigestScheme::Scheme0,
                };
                // A server answers at our scheme; some answer at the other.
                [ours, other].into_iter().find_map(|scheme| {
                    let key = &GENUINE_FMS_KEY[..GENUINE_FMS_KEY_PUBLIC_LEN];
                    Some((scheme, valid_digest(s1, scheme, key)?))
                })
            }
        };
        match server_digest {
            Some((scheme, s1_digest)) if self.c1_digest.is_some() => {
                self.kind = Some(HandshakeKind::Digest(scheme));
                let mut c2 = [0u8; HANDSHAKE_SIZE];
                self.rng.fill(&mut c2[..SIGNED_LEN]);
                sign_response(&mut c2, &GENUINE_FP_KEY, &s1_digest);
                c2.to_vec()
            }
            _ => {
                self.kind = Some(HandshakeKind::Plain);
                s1.to_vec()
            }
        }
    }
}

/// Appends to `buf` as much of `input` as fits below `cap` bytes; returns
/// how many bytes it took.
fn take_into(buf: &mut Vec<u8>, cap: usize, input: &[u8]) -> usize {
    let take = input.len().min(cap.saturating_sub(buf.len()));
    buf.extend_from_slice(input.get(..take).unwrap_or_default());
    take
}

/// The 1536-byte packet after the version byte of a complete C0C1/S0S1.
fn packet_after_version(received: &[u8]) -> Packet {
    let mut packet = [0u8; HANDSHAKE_SIZE];
    if let Some(body) = received.get(1..1 + HANDSHAKE_SIZE) {
        packet.copy_from_slice(body);
    }
    packet
}

/// Position of the 32-byte digest in `packet` under `scheme`.
fn digest_pos(packet: &Packet, scheme: DigestScheme) -> usize {
    let block = match scheme {
        DigestScheme::Scheme0 => 8,
        DigestScheme::Scheme1 => 8 + BLOCK_LEN,
    };
    let sum: usize = packet[block..block + 4]
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    block + 4 + sum % DIGEST_OFFSET_MODULO
}

/// HMAC-SHA256 with `key` of `parts` concatenated.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The digest `packet` should carry at `pos`: over all its other bytes.
fn packet_digest(packet: &Packet, pos: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_sha256(key, &[&packet[..pos], &packet[pos + DIGEST_LEN..]])
}

/// The digest of `packet` under `scheme` if it is valid for `key`.
fn valid_digest(packet: &Packet, scheme: DigestScheme, key: &[u8]) -> Option<[u8; DIGEST_LEN]> {
    let pos = digest_pos(packet, scheme);
    let expected = packet_digest(packet, pos, key);
    let carried = &packet[pos..pos + DIGEST_LEN];
    (carried == expected).then_some(expected)
}

/// Writes the digest of `packet` under `scheme` into it and returns it.
fn sign_packet(packet: &mut Packet, scheme: DigestScheme, key: &[u8]) -> [u8; DIGEST_LEN] {
    let pos = digest_pos(packet, scheme);
    let digest = packet_digest(packet, pos, key);
    packet[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// Writes the S2/C2 signature: the last 32 bytes are
/// HMAC(HMAC(`long_key`, `peer_digest`), first 1504 bytes).
fn sign_response(packet: &mut Packet, long_key: &[u8], peer_digest: &[u8; DIGEST_LEN]) {
    let key = hmac_sha256(long_key, &[peer_digest]);
    let signature = hmac_sha256(&key, &[&packet[..SIGNED_LEN]]);
    packet[SIGNED_LEN..].copy_from_slice(&signature);
}

/// xorshift64*: enough to make S1 unpredictable-looking from a caller's seed.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C1 a digest client would send, built here from the spec's layout.
    fn digest_c1(scheme: DigestScheme, seed: u64) -> Packet {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        XorShift::new(seed).fill(&mut c1);
        c1[0..4].copy_from_slice(&[0, 0, 0, 0]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let block = match scheme {
            DigestScheme::Scheme0 => 8,
            DigestScheme::Scheme1 => 772,
        };
        let sum: usize = c1[block..block + 4].iter().map(|&b| b as usize).sum();
        let pos = block + 4 + sum % 728;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Genuine Adobe Flash Player 001")
            .expect("any key length");
        mac.update(&c1[..pos]);
        mac.update(&c1[pos + 32..]);
        let digest = mac.finalize().into_bytes();
        c1[pos..pos + 32].copy_from_slice(&digest);
        c1
    }

    fn c0c1(c1: &Packet) -> Vec<u8> {
        let mut v = vec![3u8];
        v.extend_from_slice(c1);
        v
    }

    /// C0C1 as FFmpeg 5.1 sends it when publishing (`ffmpeg ... -f flv
    /// rtmp://...`), captured off the wire. FFmpeg checks the S1 digest and
    /// the S2 signature of our reply, and accepted them live.
    const FFMPEG_5_1_C0C1: &str = concat!(
        "030000000009007c02f778551eceab8e1e362f07c5868a70b266d40220e5086118a22e3697d5fc2b6329c22e",
        "e7c7c9b0b5b345dfa8398fea3bc879208a1068425aa1174cb57258cfebe24da42ec4ff9da19c7b406f18c95b",
        "fdd04ee48b6f833214a47b8bf68eb05254e25ae9a9a8b496c5496f6e9cd7c68cb6bcc84169e67f3e372ffe18",
        "6da8513862c5afdeb5a1218a860baccdd869b253dbab8a0efb59a48c442099875e55b74fd07a1b69af303e09",
        "9873cb77e2d9e2c4741eb1f506a7f0b2962af91f5051c890a320994f4c8b36a01fa9c0f15f4b7cf7b6c3817d",
        "a60918611d3b02ff7cc94038937537d3382e416bd57577834df9caf748352150ce92d0dbb40e871fc364e18b",
        "7e3569e39876c1ae0cb79ff6d7ab32f9f011869c8da4191ef46d3c1bc6b72d83812f2243d1752a412632d66a",
        "2075f5d302f45cdf2b98b802b79805dc4837d84eded1cc42cba7eec3137bf86dd0b2d7f624d521a3ff655bcf",
        "0df4101341d230e94651628e45a7abf8183101ce981e5e86a6faec5c79aa7ec7181ea459ed966e0c932a6f9e",
        "4bf554ab7b1c905cde054ed40d2fb89bbfc65752e58cfde4f2a04dc3ad1e5ef4fc64d57b071c14146a451f6a",
        "043156d2880f5957d78dfd3ff2b880f624ac70f27094f37734eaf1924f66ac3d648ae232930544a4420b65ee",
        "d4696f7f50fe05fc948516650bfb9b65f953d848e3456965d0d76b627a84e35e9ddabd8b43f0fadaee458cdf",
        "59ebd773922e0ae507d5e64092e90ec67ed8439e8f221c753a9f9216f1cb85b5107bc7cc7c4fb2c3eed1afc7",
        "09b192f50de69c1ffca5650efb523b5fab5997cac4b7ef5af2bf5973e6293bae1fc1da499be5515077de4ddb",
        "3f7fbcd741711c62b7d803b8d054cf578182714d1c445bd692ba1b839a09e7266fc85daa8fad433dabbd206c",
        "de1ea571770c6bfa7956c266ee8435eb01caa6f583c0d83c33eefcf3f97db917bdb299f8a89fb8860ab1cd64",
        "4c1e82cce1323a9eb79d25f5dc570b70b40bb20061743353d0536ecdabd82f2277756228cb54fe6932c4c9bd",
        "130d2bfc700bf5d85da6946e96f82e0afd8e9c20cfeabf9a6a189bb17bbef539d1d9e73ee966fcb5d6bdbf98",
        "444de865be1605e34087b34cdf04e3aff55bd4137c522d2e3c7bf2634db326b22a474db7f8a0952ab3510de5",
        "55396c18a378a8390b73bff7772fb2760fa5786a3b0459c45a1d1b0dff4cbbb65da0ed34f32116c3c2cc2b95",
        "825111bcfbb246c1505aa00c970d06d76cc950ce368b220db20487cba02bb1fc54b36567b42913d6b885062c",
        "d7795601d31a4a8e6d56467fa5c52162676fd526122513c3e47f2e6d9d6a19c4f8795431a94ced039221d27a",
        "c68a7a770e9305252271459b71d05505c4977b70e96851208bacdcdf7e682b3848840880f1fec2a32fb14068",
        "62bc83cad89adf729f3ba6ffd3fe808e8403e7c6a0f6dcda3211898f6f16505b078cc78b80db600ded2f200f",
        "25ff5dcb31d32cbe2056b8bdc31091631abbd2ac28d61fe32480ec5035bbf35f173393f0d59a21d2300b2db4",
        "b59eaa63ffe0f93d65dc028516905f22a9c7dff387c4eb78c6300e7ebbb2a6663cfbe5a9977caf5764ba3f0a",
        "ba57db4e6051e0aec6e05b1bdaa649a97875edbc40bcc4214bb7fef72730d4368acbd3e10ab4c7642a1c53f9",
        "3ca26db9c766555be26fdff0e2a721425b95762b0b776fd3e3eb17313d53129c9f34003c99a5196a8c6aacb6",
        "d64b51dd98b27c5b59a70bd941a1ba0300fb744cfc499d997e6d93392d28a767d116dfbc2cb9eb40540d11eb",
        "304ad9322386fdc597d55d3d1c67bc54df35479afb19ea2cd204dd331efb49c1e172f6bb89fbf58207dcae6c",
        "12f8a7598bef1e872c0c35f22b4c29df10f9bb1add3aeb887ab5fb38c036b88346f761c42f295dfe0b437dfb",
        "4f30a71276ab7d409ce424963f9ebb4f1f47e52b18786f279b5a87226f66981dd6d0ad11f49af31055ff6971",
        "0fda3457c4b7852db2e3936d0778bf879f1734ad3a24ffb1ae9584760b9cb0452a53ba0962ffe2f605af5283",
        "0bd211a5488894cc0b052255048711cd198510a9e943bf8b839198455fbd41073005d303990b88d9b63656d4",
        "3cfec8ed83748f4b0f0fc5120216794b22a054e5bc58abd8c41096070884393453ce509694afbeabe0",
    );

    use crate::rtmp::test_util::hex as from_hex;

    #[test]
    fn ffmpeg_c1_is_digest_scheme0() {
        let c0c1 = from_hex(FFMPEG_5_1_C0C1);
        assert_eq!(c0c1.len(), 1537);
        let mut server = ServerHandshake::new(1, 2);
        assert_eq!(server.handle_input(&c0c1), Ok(1537));
        assert_eq!(
            server.kind(),
            Some(HandshakeKind::Digest(DigestScheme::Scheme0))
        );
        let out = server.poll_transmit().expect("reply");
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1.copy_from_slice(&c0c1[1..]);
        let pos = digest_pos(&c1, DigestScheme::Scheme0);
        let key = hmac_sha256(&GENUINE_FMS_KEY, &[&c1[pos..pos + 32]]);
        let s2 = &out[1 + HANDSHAKE_SIZE..];
        assert_eq!(&s2[SIGNED_LEN..], &hmac_sha256(&key, &[&s2[..SIGNED_LEN]]));
    }

    #[test]
    fn plain_c1_gets_s2_echo() {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[0..4].copy_from_slice(&[0, 0, 0x12, 0x34]);
        for (i, b) in c1[8..].iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        let mut server = ServerHandshake::new(42, 1000);
        let input = c0c1(&c1);
        assert_eq!(server.handle_input(&input), Ok(1537));
        let out = server.poll_transmit().expect("S0S1S2 after C0C1");
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1..5], &1000u32.to_be_bytes());
        assert_eq!(&out[5..9], &[0, 0, 0, 0]);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c1[..]);
        assert_eq!(server.kind(), Some(HandshakeKind::Plain));
        assert!(!server.is_done());
        assert!(server.poll_transmit().is_none());
        // C2 of garbage is fine; bytes after it are not ours.
        let mut c2 = vec![0xAB; HANDSHAKE_SIZE];
        c2.extend_from_slice(&[0x03, 0x00]);
        assert_eq!(server.handle_input(&c2), Ok(HANDSHAKE_SIZE));
        assert!(server.is_done());
        assert_eq!(server.handle_input(&[1, 2, 3]), Ok(0));
    }

    #[test]
    fn all_zero_c1_is_plain() {
        let mut server = ServerHandshake::new(0, 0);
        assert_eq!(server.handle_input(&c0c1(&[0u8; HANDSHAKE_SIZE])), Ok(1537));
        let out = server.poll_transmit().expect("reply");
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &[0u8; HANDSHAKE_SIZE][..]);
        // S1 is random even from seed 0.
        assert!(out[9..1 + HANDSHAKE_SIZE].iter().any(|&b| b != 0));
    }

    fn check_digest_reply(scheme: DigestScheme) {
        let c1 = digest_c1(scheme, 7);
        let mut server = ServerHandshake::new(99, 5);
        assert_eq!(server.handle_input(&c0c1(&c1)), Ok(1537));
        assert_eq!(server.kind(), Some(HandshakeKind::Digest(scheme)));
        let out = server.poll_transmit().expect("reply");
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&out[1..1 + HANDSHAKE_SIZE]);
        let s2 = &out[1 + HANDSHAKE_SIZE..];
        assert_ne!(&s1[4..8], &[0, 0, 0, 0]);

        // S1's digest, at the same scheme, validates with the 36-byte FMS key.
        let block = if scheme == DigestScheme::Scheme0 {
            8
        } else {
            772
        };
        let sum: usize = s1[block..block + 4].iter().map(|&b| b as usize).sum();
        let pos = block + 4 + sum % 728;
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"Genuine Adobe Flash Media Server 001")
                .expect("any key length");
        mac.update(&s1[..pos]);
        mac.update(&s1[pos + 32..]);
        assert_eq!(&mac.finalize().into_bytes()[..], &s1[pos..pos + 32]);

        // S2's last 32 bytes: HMAC(HMAC(68-byte FMS key, C1 digest), S2[..1504]).
        let c1_pos = {
            let sum: usize = c1[block..block + 4].iter().map(|&b| b as usize).sum();
            block + 4 + sum % 728
        };
        let key = hmac_sha256(&GENUINE_FMS_KEY, &[&c1[c1_pos..c1_pos + 32]]);
        let expected = hmac_sha256(&key, &[&s2[..1504]]);
        assert_eq!(&s2[1504..], &expected);
        assert_ne!(s2, &c1[..]);
    }

    #[test]
    fn digest_c1_scheme0_gets_digest_reply() {
        check_digest_reply(DigestScheme::Scheme0);
    }

    #[test]
    fn digest_c1_scheme1_gets_digest_reply() {
        check_digest_reply(DigestScheme::Scheme1);
    }

    #[test]
    fn corrupted_digest_falls_back_to_plain() {
        let mut c1 = digest_c1(DigestScheme::Scheme0, 3);
        c1[1000] ^= 1;
        let mut server = ServerHandshake::new(1, 1);
        assert_eq!(server.handle_input(&c0c1(&c1)), Ok(1537));
        let out = server.poll_transmit().expect("reply");
        assert_eq!(server.kind(), Some(HandshakeKind::Plain));
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c1[..]);
    }

    fn round_trip(mode: ClientMode, expected: HandshakeKind) {
        let mut client = ClientHandshake::with_mode(11, 100, mode);
        let mut server = ServerHandshake::new(22, 200);
        let c0c1 = client.poll_transmit().expect("C0C1");
        assert_eq!(c0c1.len(), 1537);
        assert_eq!(server.handle_input(&c0c1), Ok(1537));
        let mut s0s1s2 = server.poll_transmit().expect("S0S1S2");
        s0s1s2.extend_from_slice(b"chunk");
        assert_eq!(client.handle_input(&s0s1s2), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert!(client.is_done());
        assert_eq!(client.kind(), Some(expected));
        assert_eq!(server.kind(), Some(expected));
        let c2 = client.poll_transmit().expect("C2");
        assert_eq!(c2.len(), HANDSHAKE_SIZE);
        if expected == HandshakeKind::Plain {
            assert_eq!(&c2[..], &s0s1s2[1..1 + HANDSHAKE_SIZE]);
        }
        assert_eq!(server.handle_input(&c2), Ok(HANDSHAKE_SIZE));
        assert!(server.is_done());
    }

    #[test]
    fn client_server_round_trips() {
        round_trip(ClientMode::Plain, HandshakeKind::Plain);
        for scheme in [DigestScheme::Scheme0, DigestScheme::Scheme1] {
            round_trip(ClientMode::Digest(scheme), HandshakeKind::Digest(scheme));
        }
        let client = ClientHandshake::new(1, 2);
        assert_eq!(client.mode, ClientMode::Digest(DigestScheme::Scheme0));
    }

    #[test]
    fn digest_client_c2_signs_server_digest() {
        let mut client = ClientHandshake::new(5, 6);
        let mut server = ServerHandshake::new(7, 8);
        let _ = server.handle_input(&client.poll_transmit().expect("C0C1"));
        let s = server.poll_transmit().expect("S0S1S2");
        let _ = client.handle_input(&s);
        let c2 = client.poll_transmit().expect("C2");
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&s[1..1 + HANDSHAKE_SIZE]);
        let pos = digest_pos(&s1, DigestScheme::Scheme0);
        let key = hmac_sha256(&GENUINE_FP_KEY, &[&s1[pos..pos + 32]]);
        assert_eq!(&c2[SIGNED_LEN..], &hmac_sha256(&key, &[&c2[..SIGNED_LEN]]));
    }

    #[test]
    fn digest_client_with_plain_server_echoes_s1() {
        let mut client = ClientHandshake::new(5, 6);
        let _ = client.poll_transmit();
        let mut s = vec![3u8];
        s.extend((0..2 * HANDSHAKE_SIZE).map(|i| (i % 256) as u8));
        assert_eq!(client.handle_input(&s), Ok(s.len()));
        assert_eq!(client.kind(), Some(HandshakeKind::Plain));
        assert_eq!(
            client.poll_transmit().expect("C2"),
            &s[1..1 + HANDSHAKE_SIZE]
        );
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut client = ClientHandshake::new(31, 32);
        let mut server = ServerHandshake::new(33, 34);
        let c0c1 = client.poll_transmit().expect("C0C1");
        for (i, b) in c0c1.iter().enumerate() {
            assert!(
                server.poll_transmit().is_none(),
                "reply before C1 complete at {i}"
            );
            assert_eq!(server.handle_input(std::slice::from_ref(b)), Ok(1));
        }
        let s = server.poll_transmit().expect("S0S1S2");
        for (i, b) in s.iter().enumerate() {
            assert!(!client.is_done(), "done early at {i}");
            assert_eq!(client.handle_input(std::slice::from_ref(b)), Ok(1));
            assert_eq!(client.handle_input(&[]), Ok(0));
        }
        assert!(client.is_done());
        let c2 = client.poll_transmit().expect("C2");
        for b in &c2 {
            assert!(!server.is_done());
            assert_eq!(server.handle_input(std::slice::from_ref(b)), Ok(1));
        }
        assert!(server.is_done());
        assert_eq!(
            server.kind(),
            Some(HandshakeKind::Digest(DigestScheme::Scheme0))
        );
    }

    #[test]
    fn c0c1_and_c2_together_in_one_read() {
        let mut server = ServerHandshake::new(1, 2);
        let mut input = c0c1(&[0u8; HANDSHAKE_SIZE]);
        input.extend_from_slice(&[0u8; HANDSHAKE_SIZE]);
        input.push(0x02);
        assert_eq!(server.handle_input(&input), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert!(server.is_done());
        assert!(server.poll_transmit().is_some());
    }

    #[test]
    fn bad_version_is_rejected_at_once() {
        for version in [0u8, 6, b'G', 0x16] {
            let mut server = ServerHandshake::new(1, 2);
            let e = server.handle_input(&[version]).expect_err("bad version");
            assert_eq!(e, HandshakeError::BadVersion { version });
            assert!(e.to_string().contains("byte 0"), "{e}");
            // The failure sticks.
            assert_eq!(server.handle_input(&[3]), Err(e));
            assert!(server.poll_transmit().is_none());
        }
        let mut client = ClientHandshake::new(1, 2);
        assert_eq!(
            client.handle_input(&[6, 0, 0]),
            Err(HandshakeError::BadVersion { version: 6 })
        );
    }

    #[test]
    fn garbage_gets_a_clear_error() {
        let mut rng = XorShift::new(0xDEAD_BEEF);
        let mut garbage = vec![0u8; 4000];
        rng.fill(&mut garbage);
        garbage[0] = 0xC7;
        let mut server = ServerHandshake::new(1, 2);
        assert_eq!(
            server.handle_input(&garbage),
            Err(HandshakeError::BadVersion { version: 0xC7 })
        );
        // An HTTP request on the RTMP port.
        let mut server = ServerHandshake::new(1, 2);
        let e = server
            .handle_input(b"GET / HTTP/1.1\r\n")
            .expect_err("http");
        assert_eq!(e, HandshakeError::BadVersion { version: b'G' });
        // Garbage that happens to start with 3 is a plain handshake.
        garbage[0] = 3;
        let mut server = ServerHandshake::new(1, 2);
        assert_eq!(server.handle_input(&garbage), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert_eq!(server.kind(), Some(HandshakeKind::Plain));
    }

    #[test]
    fn fp_and_fms_keys_are_the_protocol_constants() {
        assert_eq!(&GENUINE_FP_KEY[..30], b"Genuine Adobe Flash Player 001");
        assert_eq!(
            &GENUINE_FMS_KEY[..36],
            b"Genuine Adobe Flash Media Server 001"
        );
        assert_eq!(GENUINE_FP_KEY[30..], GENUINE_FMS_KEY[36..]);
        assert_eq!(&GENUINE_FMS_KEY[36..40], &[0xF0, 0xEE, 0xC2, 0x4A]);
        assert_eq!(&GENUINE_FMS_KEY[64..], &[0xCF, 0xEB, 0x31, 0xAE]);
    }
}
