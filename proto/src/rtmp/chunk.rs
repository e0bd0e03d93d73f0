//! The RTMP chunk stream, sans-IO: a decoder that reassembles messages and
//! an encoder that chunks them.
//!
//! Defined by: RTMP spec 1.0, section 5.3 (chunking) and 5.4.1/5.4.2 (Set
//! Chunk Size and Abort, which change how the stream itself is read).
//!
//! A chunk is a basic header (1 to 3 bytes: fmt and chunk stream id), a
//! message header whose size depends on fmt, an optional extended timestamp
//! and at most one chunk size of payload:
//!
//! ```text
//! fmt 0: 11 bytes  timestamp(3) length(3) type(1) stream id(4, little endian)
//! fmt 1:  7 bytes  timestamp delta(3) length(3) type(1)
//! fmt 2:  3 bytes  timestamp delta(3)
//! fmt 3:  0 bytes  everything from the previous header on this chunk stream
//! ```
//!
//! A timestamp field of 0xFFFFFF means the real value follows as a 4-byte
//! extended timestamp, which the spec repeats on every fmt 3 chunk of the
//! message.
//!
//! Two points where senders differ:
//!
//! - A fmt 3 chunk that starts a new message adds the previous header's
//!   timestamp field as a delta, even when that header was fmt 0 (whose
//!   field is absolute); spec 5.3.1.2.4 says so, and FFmpeg, librtmp and
//!   the common servers read it that way. Our encoder never sends fmt 3
//!   right after fmt 0, so decoders that read it otherwise still agree.
//! - The extended timestamp on fmt 3 chunks: FFmpeg and FMLE repeat it, as
//!   the spec says; librtmp (rtmpdump, and OBS before 2024) does not, as an
//!   older text of the spec said. The decoder peeks: if the four bytes after
//!   a fmt 3 basic header equal the remembered extended timestamp they are
//!   taken as the repeat, otherwise as payload. A message from a
//!   non-repeating sender whose chunk happens to begin with exactly those
//!   four bytes is misread; no reading of the bytes avoids that.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The chunk size both directions use until a Set Chunk Size (spec 5.4.1).
pub const INITIAL_CHUNK_SIZE: u32 = 128;
/// A timestamp field with this value means an extended timestamp follows.
const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// The largest message the 24-bit message length field of a chunk header
/// can carry (spec 5.3.1.2): 16 777 215 bytes. No limit on messages in or
/// out may exceed it.
pub const MESSAGE_LEN_FIELD_MAX: u32 = 0xFF_FFFF;
/// The largest chunk stream id a 3-byte basic header can carry.
pub const CSID_MAX: u32 = 65599;
/// The smallest chunk stream id (0 and 1 only mark longer basic headers).
pub const CSID_MIN: u32 = 2;
/// The largest chunk size the spec allows (31 bits).
pub const CHUNK_SIZE_SPEC_MAX: u32 = 0x7FFF_FFFF;
/// A basic header (3) + fmt 0 header (11) + extended timestamp (4).
const CHUNK_HEADER_LEN_MAX: usize = 18;
/// A multi-chunk message's buffer starts at most this large and grows as its
/// chunks arrive, so a header alone cannot make us allocate its length.
const REASSEMBLY_RESERVE_MAX: usize = 64 * 1024;

const DEFAULT_CHUNK_SIZE_MAX: u32 = 65536;
const DEFAULT_MESSAGE_LEN_MAX: u32 = 8 * 1024 * 1024;
const DEFAULT_CHUNK_STREAMS_MAX: usize = 64;
/// Two maximal messages at once (e.g. a keyframe and its audio), no more.
const DEFAULT_PARTIAL_BYTES_MAX: u64 = 2 * DEFAULT_MESSAGE_LEN_MAX as u64;

const _: () = assert!(INITIAL_CHUNK_SIZE <= DEFAULT_CHUNK_SIZE_MAX);
const _: () = assert!(DEFAULT_CHUNK_SIZE_MAX <= CHUNK_SIZE_SPEC_MAX);
const _: () = assert!(DEFAULT_MESSAGE_LEN_MAX <= MESSAGE_LEN_FIELD_MAX);
const _: () = assert!(DEFAULT_CHUNK_STREAMS_MAX >= 1);

/// Bounds on what a peer can make the decoder hold.
///
/// Worst case for one connection, with the defaults: the caller's input
/// buffer holds at most one unconsumed chunk (chunk_size_max + 18 bytes =
/// 64 KiB), plus one reassembly buffer per chunk stream (64 × 8 MiB = 512
/// MiB, reached only if the peer really sends that many bytes: a buffer
/// starts at most 64 KiB large, 4 MiB for all 64 streams, and grows as
/// chunks arrive), plus about 100 bytes of header state per chunk stream.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Largest chunk size the peer may set. The input buffer must hold one
    /// whole chunk before it is consumed: chunk_size_max + 18 bytes.
    pub chunk_size_max: u32,
    /// Largest message the peer may announce, checked at the header before
    /// any allocation. One partial message per chunk stream is buffered: at
    /// most message_len_max bytes each (plus growth slack, under 2×).
    pub message_len_max: u32,
    /// Largest number of chunk stream ids with state; each holds a header
    /// (about 100 bytes) and possibly one partial message.
    pub chunk_streams_max: usize,
    /// Largest total of the announced lengths of all messages being
    /// reassembled at once, across chunk streams. Without it a peer could
    /// hold `chunk_streams_max × message_len_max` (512 MiB by default) per
    /// connection; with it, reassembly memory is under 2 × this.
    pub partial_bytes_max: u64,
}

impl ChunkLimits {
    /// These limits with messages and their reassembly bounded by at most
    /// `message_len_max` and `partial_bytes_max`.
    pub fn capped(self, message_len_max: u32, partial_bytes_max: u64) -> Self {
        ChunkLimits {
            message_len_max: self.message_len_max.min(message_len_max),
            partial_bytes_max: self.partial_bytes_max.min(partial_bytes_max),
            ..self
        }
    }
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            chunk_size_max: DEFAULT_CHUNK_SIZE_MAX,
            message_len_max: DEFAULT_MESSAGE_LEN_MAX,
            chunk_streams_max: DEFAULT_CHUNK_STREAMS_MAX,
            partial_bytes_max: DEFAULT_PARTIAL_BYTES_MAX,
        }
    }
}

/// What was wrong with the chunk stream. `pos` is the offset, counted from
/// the first byte ever given to the decoder, of the chunk where it was
/// found. Every error is the peer's; the connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// Set Chunk Size with value 0 (spec 5.4.1 requires at least 1).
    ChunkSizeZero { pos: u64 },
    /// Set Chunk Size above `ChunkLimits::chunk_size_max`.
    ChunkSizeTooLarge { size: u32, max: u32, pos: u64 },
    /// A header announced a message above `ChunkLimits::message_len_max`.
    MessageTooLong {
        len: u32,
        max: u32,
        csid: u32,
        pos: u64,
    },
    /// A new chunk stream id beyond `ChunkLimits::chunk_streams_max`.
    TooManyChunkStreams { max: usize, csid: u32, pos: u64 },
    /// fmt 1, 2 or 3 on a chunk stream that never had a fmt 0 header.
    NoPreviousHeader { csid: u32, fmt: u8, pos: u64 },
    /// fmt 0, 1 or 2 while a message on that chunk stream is incomplete
    /// (continuations must be fmt 3).
    HeaderMidMessage {
        csid: u32,
        fmt: u8,
        received: u32,
        len: u32,
        pos: u64,
    },
    /// Set Chunk Size or Abort whose payload is shorter than 4 bytes.
    ControlTooShort { type_id: u8, len: usize, pos: u64 },
    /// Starting this message would make the messages being reassembled at
    /// once announce more than `ChunkLimits::partial_bytes_max` bytes.
    TooManyPartialBytes {
        pending: u64,
        len: u32,
        max: u64,
        csid: u32,
        pos: u64,
    },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::ChunkSizeZero { pos } => {
                write!(
                    f,
                    "Set Chunk Size to 0 in chunk at byte {pos} (minimum is 1)"
                )
            }
            ChunkError::ChunkSizeTooLarge { size, max, pos } => write!(
                f,
                "Set Chunk Size to {size} in chunk at byte {pos} exceeds chunk_size_max {max}"
            ),
            ChunkError::MessageTooLong {
                len,
                max,
                csid,
                pos,
            } => write!(
                f,
                "message of {len} bytes on chunk stream {csid} (header at byte {pos}) \
                 exceeds message_len_max {max}"
            ),
            ChunkError::TooManyChunkStreams { max, csid, pos } => write!(
                f,
                "chunk stream id flood: chunk stream {csid} at byte {pos} would exceed \
                 chunk_streams_max {max}"
            ),
            ChunkError::NoPreviousHeader { csid, fmt, pos } => write!(
                f,
                "fmt {fmt} chunk at byte {pos} on chunk stream {csid}, which has no \
                 previous header to inherit from"
            ),
            ChunkError::HeaderMidMessage {
                csid,
                fmt,
                received,
                len,
                pos,
            } => write!(
                f,
                "fmt {fmt} chunk at byte {pos} on chunk stream {csid} while its message has \
                 {received} of {len} bytes (continuations must be fmt 3)"
            ),
            ChunkError::ControlTooShort { type_id, len, pos } => write!(
                f,
                "control message type {type_id} ending in chunk at byte {pos} has {len} \
                 payload bytes, needs 4"
            ),
            ChunkError::TooManyPartialBytes {
                pending,
                len,
                max,
                csid,
                pos,
            } => write!(
                f,
                "message of {len} bytes on chunk stream {csid} (header at byte {pos}) would \
                 make {} bytes of messages in reassembly, over partial_bytes_max {max}",
                pending + u64::from(*len)
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

/// One reassembled message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Chunk stream it arrived on.
    pub csid: u32,
    /// Absolute, in ms; deltas accumulate with u32 wrapping (spec 5.3.1.3).
    pub timestamp: u32,
    /// Message type id, see `message::msg_type`.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    pub payload: Bytes,
}

/// Decoder state of one chunk stream id.
#[derive(Debug)]
struct InStream {
    csid: u32,
    /// Timestamp of the current (or last) message.
    timestamp: u32,
    /// The last timestamp field (absolute after fmt 0, delta after 1/2);
    /// a fmt 3 chunk starting a message adds it.
    ts_field: u32,
    /// Whether that field was sent as an extended timestamp.
    extended: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload bytes still missing from the current message; 0 between
    /// messages.
    remaining: u32,
    /// Payload received so far of a multi-chunk message.
    partial: BytesMut,
}

/// What `parse_chunk` found: enough to consume one whole chunk.
#[derive(Debug)]
struct ChunkHead {
    csid: u32,
    /// Index into `streams`, or None for a new chunk stream (fmt 0 only).
    slot: Option<usize>,
    /// Bytes before the payload: basic + message header + extended ts.
    header_len: usize,
    payload_len: usize,
    /// Set when this chunk starts a message.
    start: Option<MessageStart>,
}

#[derive(Debug)]
struct MessageStart {
    timestamp: u32,
    ts_field: u32,
    extended: bool,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Reassembles messages from the chunk stream a peer sends.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: u32,
    /// At most `limits.chunk_streams_max` entries; a scan beats hashing at
    /// this size.
    streams: Vec<InStream>,
    /// Offset of the next unconsumed byte since the first input.
    pos: u64,
}

impl ChunkDecoder {
    /// A decoder whose incoming chunk size is 128 until the peer sets it.
    /// The limits bound what the peer may ask for; a `chunk_size_max` below
    /// 128 does not change the initial size, it only refuses larger ones.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: Vec::new(),
            pos: 0,
        }
    }

    /// Changes the limits from the next chunk on. A message already being
    /// reassembled keeps going; new headers are checked under the new ones.
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    /// The chunk size the peer currently sends with.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Offset of the next byte to decode, counted from the first input.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Parses as much of `buf` as forms complete chunks, consuming them,
    /// and returns the next complete message if one finished. Call
    /// repeatedly until `Ok(None)`. Incomplete input is `Ok(None)`, never an
    /// error; a partial chunk stays in `buf`.
    ///
    /// Set Chunk Size and Abort take effect here, as soon as they complete,
    /// and are still returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ChunkError> {
        loop {
            let Some(head) = self.parse_chunk(buf)? else {
                return Ok(None);
            };
            let chunk_pos = self.pos;
            if let Some(msg) = self.consume_chunk(head, buf) {
                self.apply_control(&msg, chunk_pos)?;
                return Ok(Some(msg));
            }
        }
    }

    fn find(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Reads one chunk's headers from `buf` without changing anything.
    /// `Ok(None)` if the whole chunk is not there yet.
    fn parse_chunk(&self, buf: &[u8]) -> Result<Option<ChunkHead>, ChunkError> {
        let pos = self.pos;
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut at) = match b0 & 0x3F {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (buf.get(1), buf.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let slot = self.find(csid);
        let prev = slot.and_then(|i| self.streams.get(i));
        let prev = match (prev, fmt) {
            (None, 0) => {
                if self.streams.len() >= self.limits.chunk_streams_max {
                    return Err(ChunkError::TooManyChunkStreams {
                        max: self.limits.chunk_streams_max,
                        csid,
                        pos,
                    });
                }
                None
            }
            (None, _) => return Err(ChunkError::NoPreviousHeader { csid, fmt, pos }),
            (Some(p), 3) => Some(p),
            (Some(p), _) if p.remaining > 0 => {
                return Err(ChunkError::HeaderMidMessage {
                    csid,
                    fmt,
                    received: p.len - p.remaining,
                    len: p.len,
                    pos,
                })
            }
            (Some(p), _) => Some(p),
        };

        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        let Some(header) = buf.get(at..at + header_len) else {
            return Ok(None);
        };
        at += header_len;
        let (mut ts_field, len, type_id, stream_id) = match (fmt, header, prev) {
            (0, &[t0, t1, t2, l0, l1, l2, ty, s0, s1, s2, s3], _) => (
                be24(t0, t1, t2),
                be24(l0, l1, l2),
                ty,
                u32::from_le_bytes([s0, s1, s2, s3]),
            ),
            (1, &[t0, t1, t2, l0, l1, l2, ty], Some(p)) => {
                (be24(t0, t1, t2), be24(l0, l1, l2), ty, p.stream_id)
            }
            (2, &[t0, t1, t2], Some(p)) => (be24(t0, t1, t2), p.len, p.type_id, p.stream_id),
            (_, _, Some(p)) => (p.ts_field, p.len, p.type_id, p.stream_id),
            // fmt 1/2/3 without `prev` returned above.
            (_, _, None) => return Err(ChunkError::NoPreviousHeader { csid, fmt, pos }),
        };

        let mut extended = false;
        if fmt < 3 {
            if ts_field == EXTENDED_TIMESTAMP {
                let Some(ext) = read_u32_be(buf, at) else {
                    return Ok(None);
                };
                at += 4;
                ts_field = ext;
                extended = true;
            }
        } else if let Some(p) = prev.filter(|p| p.extended) {
            // Spec senders repeat the extended timestamp here; some do not
            // (see the module doc). Decide as soon as the bytes differ.
            let expected = p.ts_field.to_be_bytes();
            let have = buf.get(at..).unwrap_or_default();
            let n = have.len().min(4);
            if have.get(..n) == expected.get(..n) {
                if n < 4 {
                    return Ok(None);
                }
                at += 4;
            }
            extended = true;
        }

        let continuing = prev.filter(|p| fmt == 3 && p.remaining > 0);
        let (remaining, start) = match continuing {
            Some(p) => (p.remaining, None),
            None => {
                if len > self.limits.message_len_max {
                    return Err(ChunkError::MessageTooLong {
                        len,
                        max: self.limits.message_len_max,
                        csid,
                        pos,
                    });
                }
                if len > self.chunk_size {
                    // A multi-chunk message: it will be reassembled.
                    let pending: u64 = self
                        .streams
                        .iter()
                        .filter(|s| s.remaining > 0 && s.csid != csid)
                        .map(|s| u64::from(s.len))
                        .sum();
                    if pending + u64::from(len) > self.limits.partial_bytes_max {
                        return Err(ChunkError::TooManyPartialBytes {
                            pending,
                            len,
                            max: self.limits.partial_bytes_max,
                            csid,
                            pos,
                        });
                    }
                }
                let timestamp = match prev {
                    Some(p) if fmt != 0 => p.timestamp.wrapping_add(ts_field),
                    _ => ts_field,
                };
                let start = MessageStart {
                    timestamp,
                    ts_field,
                    extended,
                    len,
                    type_id,
                    stream_id,
                };
                (len, Some(start))
            }
        };
        let payload_len = remaining.min(self.chunk_size) as usize;
        if buf.len() < at + payload_len {
            return Ok(None);
        }
        Ok(Some(ChunkHead {
            csid,
            slot,
            header_len: at,
            payload_len,
            start,
        }))
    }

    /// Consumes the chunk `head` describes from `buf`; returns the message
    /// it completes, if any.
    fn consume_chunk(&mut self, head: ChunkHead, buf: &mut BytesMut) -> Option<Message> {
        self.pos += (head.header_len + head.payload_len) as u64;
        buf.advance(head.header_len);
        let slot = match head.slot {
            Some(i) => i,
            None => {
                self.streams.push(InStream {
                    csid: head.csid,
                    timestamp: 0,
                    ts_field: 0,
                    extended: false,
                    len: 0,
                    type_id: 0,
                    stream_id: 0,
                    remaining: 0,
                    partial: BytesMut::new(),
                });
                self.streams.len() - 1
            }
        };
        let stream = self.streams.get_mut(slot)?;
        let payload = match head.start {
            Some(start) => {
                stream.timestamp = start.timestamp;
                stream.ts_field = start.ts_field;
                stream.extended = start.extended;
                stream.len = start.len;
                stream.type_id = start.type_id;
                stream.stream_id = start.stream_id;
                if head.payload_len == start.len as usize {
                    // Single-chunk message: hand out the input bytes as they are.
                    stream.remaining = 0;
                    Some(buf.split_to(head.payload_len).freeze())
                } else {
                    stream.remaining = start.len;
                    stream.partial =
                        BytesMut::with_capacity((start.len as usize).min(REASSEMBLY_RESERVE_MAX));
                    None
                }
            }
            None => None,
        };
        let payload = match payload {
            Some(p) => p,
            None => {
                stream
                    .partial
                    .extend_from_slice(buf.get(..head.payload_len)?);
                buf.advance(head.payload_len);
                stream.remaining -= head.payload_len as u32;
                if stream.remaining > 0 {
                    return None;
                }
                std::mem::take(&mut stream.partial).freeze()
            }
        };
        Some(Message {
            csid: stream.csid,
            timestamp: stream.timestamp,
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            payload,
        })
    }

    /// Applies Set Chunk Size (type 1) and Abort (type 2) to the decoder.
    /// `pos` is where the chunk completing `msg` started.
    fn apply_control(&mut self, msg: &Message, pos: u64) -> Result<(), ChunkError> {
        const SET_CHUNK_SIZE: u8 = 1;
        const ABORT: u8 = 2;
        if msg.type_id != SET_CHUNK_SIZE && msg.type_id != ABORT {
            return Ok(());
        }
        let Some(value) = read_u32_be(&msg.payload, 0) else {
            return Err(ChunkError::ControlTooShort {
                type_id: msg.type_id,
                len: msg.payload.len(),
                pos,
            });
        };
        if msg.type_id == SET_CHUNK_SIZE {
            // Spec 5.4.1: the top bit must be zero; read past it.
            let size = value & CHUNK_SIZE_SPEC_MAX;
            if size == 0 {
                return Err(ChunkError::ChunkSizeZero { pos });
            }
            if size > self.limits.chunk_size_max {
                return Err(ChunkError::ChunkSizeTooLarge {
                    size,
                    max: self.limits.chunk_size_max,
                    pos,
                });
            }
            self.chunk_size = size;
        } else if let Some(stream) = self.streams.iter_mut().find(|s| s.csid == value) {
            stream.remaining = 0;
            stream.partial = BytesMut::new();
        }
        Ok(())
    }
}

fn be24(a: u8, b: u8, c: u8) -> u32 {
    u32::from_be_bytes([0, a, b, c])
}

fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Appends a basic header: 1 byte for csid 2..=63, 2 for 64..=319, 3 above.
fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    assert!(
        (CSID_MIN..=CSID_MAX).contains(&csid),
        "chunk stream id {csid} outside {CSID_MIN}..={CSID_MAX}"
    );
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => out.put_slice(&[fmt, (csid - 64) as u8]),
        _ => {
            let rest = csid - 64;
            out.put_slice(&[fmt | 1, rest as u8, (rest >> 8) as u8]);
        }
    }
}

fn put_u24(out: &mut impl BufMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

/// Puts a timestamp field: the value, or 0xFFFFFF if it needs the
/// extended field.
fn put_ts_field(out: &mut impl BufMut, ts: u32) {
    put_u24(out, ts.min(EXTENDED_TIMESTAMP));
}

fn put_extended(out: &mut impl BufMut, ts: u32) {
    if ts >= EXTENDED_TIMESTAMP {
        out.put_u32(ts);
    }
}

/// A message the encoder cannot chunk. Unlike [`ChunkError`] it concerns
/// what we send; which side is to blame depends on where the payload came
/// from (an echo of the peer's input, or our own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The payload does not fit the 24-bit message length field
    /// ([`MESSAGE_LEN_FIELD_MAX`]).
    MessageTooLong {
        /// Payload length in bytes.
        len: usize,
        /// [`MESSAGE_LEN_FIELD_MAX`].
        max: u32,
        /// Chunk stream it was to go out on.
        csid: u32,
        /// Its message type id.
        type_id: u8,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::MessageTooLong {
                len,
                max,
                csid,
                type_id,
            } => write!(
                f,
                "outgoing message type {type_id} on chunk stream {csid} has {len} bytes, over \
                 the 24-bit message length field (MESSAGE_LEN_FIELD_MAX {max})"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The payload's length as the 24-bit length field, or the error naming it.
fn payload_len_u32(payload: &[u8], csid: u32, type_id: u8) -> Result<u32, EncodeError> {
    match u32::try_from(payload.len()) {
        Ok(len) if len <= MESSAGE_LEN_FIELD_MAX => Ok(len),
        _ => Err(EncodeError::MessageTooLong {
            len: payload.len(),
            max: MESSAGE_LEN_FIELD_MAX,
            csid,
            type_id,
        }),
    }
}

/// Encoder state of one outgoing chunk stream id.
#[derive(Debug)]
struct OutStream {
    csid: u32,
    timestamp: u32,
    /// The delta a fmt 3 new message would repeat; None after fmt 0, whose
    /// absolute field some decoders do not reuse as a delta.
    delta: Option<u32>,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Chunks the messages a connection sends, compressing headers per chunk
/// stream id (fmt 1/2/3) where the previous message allows.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: Vec<OutStream>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder with the outgoing chunk size at 128.
    pub fn new() -> Self {
        ChunkEncoder {
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: Vec::new(),
        }
    }

    /// Uses `size` for the following messages. Send the Set Chunk Size
    /// message first (`message::write_control` does both in order).
    ///
    /// Panics if `size` is 0 or above 0x7FFFFFFF.
    pub fn set_chunk_size(&mut self, size: u32) {
        assert!(
            (1..=CHUNK_SIZE_SPEC_MAX).contains(&size),
            "chunk size {size} outside 1..={CHUNK_SIZE_SPEC_MAX}"
        );
        self.chunk_size = size;
    }

    /// The outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Appends the message, chunked, to `out`. A payload over the 24-bit
    /// length field is refused with nothing written and the encoder's state
    /// unchanged.
    ///
    /// Panics if `csid` is outside 2..=65599: the chunk stream ids are the
    /// caller's constants, so that is a bug of the caller.
    pub fn write(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let len = payload_len_u32(payload, csid, type_id)?;
        let slot = self.streams.iter().position(|s| s.csid == csid);
        let (fmt, ts_field) = match slot.and_then(|i| self.streams.get(i)) {
            // fmt 0 on first use, on a stream id change and when time goes
            // backwards (a wrapped delta is legal but decoders mishandle it).
            None => (0, timestamp),
            Some(p) if p.stream_id != stream_id || timestamp < p.timestamp => (0, timestamp),
            Some(p) => {
                let delta = timestamp - p.timestamp;
                let fmt = if p.len != len || p.type_id != type_id {
                    1
                } else if p.delta != Some(delta) {
                    2
                } else {
                    3
                };
                (fmt, delta)
            }
        };
        let chunk_size = self.chunk_size as usize;
        let chunks = payload.len().div_ceil(chunk_size).max(1);
        out.reserve(CHUNK_HEADER_LEN_MAX + payload.len() + (chunks - 1) * 7);
        put_basic_header(out, fmt, csid);
        if fmt <= 2 {
            put_ts_field(out, ts_field);
        }
        if fmt <= 1 {
            put_u24(out, len);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        put_extended(out, ts_field);
        for (i, chunk) in payload.chunks(chunk_size).enumerate() {
            if i > 0 {
                put_basic_header(out, 3, csid);
                put_extended(out, ts_field);
            }
            out.put_slice(chunk);
        }
        let state = OutStream {
            csid,
            timestamp,
            delta: (fmt != 0).then_some(ts_field),
            len,
            type_id,
            stream_id,
        };
        match slot.and_then(|i| self.streams.get_mut(i)) {
            Some(prev) => *prev = state,
            None => self.streams.push(state),
        }
        Ok(())
    }
}

/// Stateless fmt 0 chunking for fan-out: pushes a header `Bytes`, then the
/// payload as zero-copy slices with one shared fmt 3 header (repeating the
/// extended timestamp when `timestamp` >= 0xFFFFFF) between them. Many
/// players can share the pieces. A payload over the 24-bit length field is
/// refused with nothing pushed.
///
/// Panics if `chunk_size` is 0 or `csid` is outside 2..=65599: those are
/// the caller's constants, so bugs of the caller.
pub fn chunk_message_shared(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &Bytes,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    assert!(chunk_size > 0, "chunk size 0");
    let len = payload_len_u32(payload, csid, type_id)?;
    let mut header = BytesMut::with_capacity(CHUNK_HEADER_LEN_MAX);
    put_basic_header(&mut header, 0, csid);
    put_ts_field(&mut header, timestamp);
    put_u24(&mut header, len);
    header.put_u8(type_id);
    header.put_u32_le(stream_id);
    put_extended(&mut header, timestamp);
    out.push(header.freeze());
    let chunk_size = chunk_size as usize;
    let mut continuation = None;
    let mut start = 0;
    while start < payload.len() {
        if start > 0 {
            let header = continuation.get_or_insert_with(|| {
                let mut h = BytesMut::with_capacity(7);
                put_basic_header(&mut h, 3, csid);
                put_extended(&mut h, timestamp);
                h.freeze()
            });
            out.push(header.clone());
        }
        let end = payload.len().min(start.saturating_add(chunk_size));
        out.push(payload.slice(start..end));
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers; the seed comes from
    /// `SHARDCAST_SEED` when set, so a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn from_env() -> Self {
            let seed = std::env::var("SHARDCAST_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5EED_CAFE_F00D_u64);
            eprintln!("SHARDCAST_SEED={seed}");
            Rng(seed | 1)
        }

        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    fn decode_fresh(bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        decode_all(&mut ChunkDecoder::new(ChunkLimits::default()), bytes)
    }

    fn msg(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn fmt0_header() {
        let bytes = [
            0x03, // fmt 0, csid 3
            0x00, 0x03, 0xE8, // timestamp 1000
            0x00, 0x00, 0x04, // length 4
            0x14, // type 20 (AMF0 command)
            0x01, 0x00, 0x00, 0x00, // stream id 1, little endian
            0xDE, 0xAD, 0xBE, 0xEF,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(3, 1000, 20, 1, &[0xDE, 0xAD, 0xBE, 0xEF])]);
    }

    #[test]
    fn fmt1_fmt2_fmt3_headers_inherit() {
        let bytes = [
            // fmt 0, csid 4: ts 100, len 2, audio, stream 1
            0x04, 0x00, 0x00, 0x64, 0x00, 0x00, 0x02, 0x08, 0x01, 0x00, 0x00, 0x00, 0xA1, 0xA2,
            // fmt 1, csid 4: delta 20, len 3, video (stream id inherited)
            0x44, 0x00, 0x00, 0x14, 0x00, 0x00, 0x03, 0x09, 0xB1, 0xB2, 0xB3,
            // fmt 2, csid 4: delta 33 (length and type inherited)
            0x84, 0x00, 0x00, 0x21, 0xC1, 0xC2, 0xC3,
            // fmt 3, csid 4: a new message repeating delta 33
            0xC4, 0xD1, 0xD2, 0xD3,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(
            got,
            vec![
                msg(4, 100, 8, 1, &[0xA1, 0xA2]),
                msg(4, 120, 9, 1, &[0xB1, 0xB2, 0xB3]),
                msg(4, 153, 9, 1, &[0xC1, 0xC2, 0xC3]),
                msg(4, 186, 9, 1, &[0xD1, 0xD2, 0xD3]),
            ]
        );
    }

    #[test]
    fn fmt3_after_fmt0_reuses_the_timestamp_field() {
        let bytes = [
            0x05, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01, 0x12, 0x00, 0x00, 0x00, 0x00, 0x01, //
            0xC5, 0x02,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(5, 10, 18, 0, &[1]), msg(5, 20, 18, 0, &[2])]);
    }

    /// A 300-byte message at chunk size 128: 128 + fmt 3 + 128 + fmt 3 + 44.
    fn split_message_bytes() -> (Vec<u8>, Vec<u8>) {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut bytes = vec![
            0x06, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2C, 0x09, 0x01, 0x00, 0x00, 0x00,
        ];
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[128..256]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[256..]);
        (bytes, payload)
    }

    #[test]
    fn message_split_across_chunks_at_128() {
        let (bytes, payload) = split_message_bytes();
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(6, 0, 9, 1, &payload)]);
    }

    #[test]
    fn chunk_size_change_mid_stream() {
        let mut bytes = vec![
            // Set Chunk Size 200 on csid 2; top bit set, to be ignored.
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, //
            0x80, 0x00, 0x00, 0xC8,
        ];
        // A 300-byte message now takes two chunks: 200 + 100.
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 3) as u8).collect();
        bytes.extend_from_slice(&[0x06, 0, 0, 5, 0x00, 0x01, 0x2C, 0x09, 1, 0, 0, 0]);
        bytes.extend_from_slice(&payload[..200]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[200..]);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let got = decode_all(&mut dec, &bytes).expect("valid");
        assert_eq!(dec.chunk_size(), 200);
        assert_eq!(
            got,
            vec![
                msg(2, 0, 1, 0, &[0x80, 0, 0, 0xC8]),
                msg(6, 5, 9, 1, &payload)
            ]
        );
        assert_eq!(dec.position(), bytes.len() as u64);
    }

    /// A 200-byte message with timestamp 0x01020304 at chunk size 128.
    fn extended_message_bytes(repeat_on_fmt3: bool) -> (Vec<u8>, Vec<u8>) {
        let payload: Vec<u8> = (0..200u32).map(|i| (i * 5 + 1) as u8).collect();
        let mut bytes = vec![
            0x07, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0xC8, 0x09, 0x01, 0x00, 0x00, 0x00, //
            0x01, 0x02, 0x03, 0x04,
        ];
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC7);
        if repeat_on_fmt3 {
            bytes.extend_from_slice(&[0x01, 0x02, 0x03, 0x04]);
        }
        bytes.extend_from_slice(&payload[128..]);
        (bytes, payload)
    }

    #[test]
    fn extended_timestamp_on_fmt0_and_repeated_on_fmt3() {
        let (bytes, payload) = extended_message_bytes(true);
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(7, 0x0102_0304, 9, 1, &payload)]);
    }

    #[test]
    fn extended_timestamp_not_repeated_on_fmt3() {
        let (bytes, payload) = extended_message_bytes(false);
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(7, 0x0102_0304, 9, 1, &payload)]);
    }

    #[test]
    fn extended_timestamp_not_repeated_with_short_tail() {
        // The last chunk has 2 payload bytes and nothing follows yet: the
        // first byte already differs from the extended timestamp.
        let mut bytes = vec![
            0x07, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x82, 0x09, 0x01, 0x00, 0x00, 0x00, //
            0x01, 0x02, 0x03, 0x04,
        ];
        bytes.extend_from_slice(&[0x55; 128]);
        bytes.extend_from_slice(&[0xC7, 0x66, 0x77]);
        let got = decode_fresh(&bytes).expect("valid");
        let mut payload = vec![0x55; 128];
        payload.extend_from_slice(&[0x66, 0x77]);
        assert_eq!(got, vec![msg(7, 0x0102_0304, 9, 1, &payload)]);
    }

    #[test]
    fn extended_delta_on_fmt3_new_message() {
        let bytes = [
            // fmt 0 ts 10, 1 byte
            0x08, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 0x11,
            // fmt 2 delta 0x01000000 (extended)
            0x88, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00, 0x22,
            // fmt 3 new message, extended delta repeated
            0xC8, 0x01, 0x00, 0x00, 0x00, 0x33, //
            // fmt 3 new message, extended delta not repeated
            0xC8, 0x44,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(
            got,
            vec![
                msg(8, 10, 8, 1, &[0x11]),
                msg(8, 0x0100_000A, 8, 1, &[0x22]),
                msg(8, 0x0200_000A, 8, 1, &[0x33]),
                msg(8, 0x0300_000A, 8, 1, &[0x44]),
            ]
        );
    }

    #[test]
    fn timestamps_wrap_at_32_bits() {
        let bytes = [
            0x04, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, //
            0xFF, 0xFF, 0xFF, 0xF0, //
            0x84, 0x00, 0x00, 0x20,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got[1].timestamp, 0x10);
    }

    #[test]
    fn two_and_three_byte_basic_headers() {
        let bytes = [
            // 2-byte basic header: csid 64 + 0x10 = 80
            0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0xAA,
            // 3-byte basic header: csid 64 + 0x34 + 0x12 * 256 = 4724
            0x01, 0x34, 0x12, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00,
            0xBB, // 3-byte form of the largest csid 65599, fmt 3 after a fmt 0
            0x01, 0xFF, 0xFF, 0x00, 0x00, 0x03, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00,
            0xCC, 0xC1, 0xFF, 0xFF, 0xDD,
        ];
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(
            got,
            vec![
                msg(80, 1, 8, 0, &[0xAA]),
                msg(4724, 2, 8, 0, &[0xBB]),
                msg(65599, 3, 8, 0, &[0xCC]),
                msg(65599, 6, 8, 0, &[0xDD]),
            ]
        );
    }

    #[test]
    fn interleaved_chunk_streams() {
        let audio: Vec<u8> = (0..150u32).map(|i| i as u8).collect();
        let video: Vec<u8> = (0..140u32).map(|i| 255 - i as u8).collect();
        let mut bytes = vec![0x04, 0, 0, 1, 0x00, 0x00, 150, 0x08, 1, 0, 0, 0];
        bytes.extend_from_slice(&audio[..128]);
        bytes.extend_from_slice(&[0x06, 0, 0, 2, 0x00, 0x00, 140, 0x09, 1, 0, 0, 0]);
        bytes.extend_from_slice(&video[..128]);
        bytes.push(0xC4);
        bytes.extend_from_slice(&audio[128..]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&video[128..]);
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(got, vec![msg(4, 1, 8, 1, &audio), msg(6, 2, 9, 1, &video)]);
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let mut bytes = vec![0x06, 0, 0, 0, 0x00, 0x00, 200, 0x09, 1, 0, 0, 0];
        bytes.extend_from_slice(&payload[..128]);
        // Abort csid 6.
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x02, 0, 0, 0, 0, 0, 0, 0, 6]);
        // A fmt 3 on csid 6 now starts a fresh 200-byte message.
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[..128]);
        bytes.push(0xC6);
        bytes.extend_from_slice(&payload[128..]);
        let got = decode_fresh(&bytes).expect("valid");
        assert_eq!(
            got,
            vec![msg(2, 0, 2, 0, &[0, 0, 0, 6]), msg(6, 0, 9, 1, &payload)]
        );
    }

    #[test]
    fn zero_length_message() {
        let bytes = [0x04, 0, 0, 9, 0, 0, 0, 0x08, 1, 0, 0, 0];
        assert_eq!(
            decode_fresh(&bytes).expect("valid"),
            vec![msg(4, 9, 8, 1, &[])]
        );
    }

    #[test]
    fn single_chunk_message_is_not_copied() {
        let bytes = [0x04, 0, 0, 9, 0, 0, 3, 0x08, 1, 0, 0, 0, 7, 8, 9, 0x04];
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let m = dec.decode(&mut buf).expect("valid").expect("message");
        assert_eq!(m.payload.as_ptr() as usize, start + 12);
        assert_eq!(&buf[..], &[0x04]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &[0x04], "a partial chunk stays in the buffer");
    }

    #[test]
    fn parse_at_every_split_point() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&split_message_bytes().0);
        stream.extend_from_slice(&extended_message_bytes(true).0);
        stream.extend_from_slice(&extended_message_bytes(false).0);
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.write(9, 5, 8, 1, &[1, 2, 3], &mut out).unwrap();
        enc.write(9, 10, 8, 1, &[4, 5, 6], &mut out).unwrap();
        enc.write(9, 15, 8, 1, &[7, 8, 9], &mut out).unwrap();
        enc.write(300, 0xFFFF_FF00, 9, 1, &[0x5A; 400], &mut out)
            .unwrap();
        enc.write(2, 0, 1, 0, &[0, 0, 0, 64], &mut out).unwrap();
        enc.set_chunk_size(64);
        enc.write(70_000 - 5000, 0x0100_0000, 9, 1, &[0xA5; 200], &mut out)
            .unwrap();
        enc.write(9, 20, 8, 1, &[0; 100], &mut out).unwrap();
        stream.extend_from_slice(&out);
        let expected = decode_fresh(&stream).expect("valid");
        assert_eq!(expected.len(), 10, "{expected:?}");
        for i in 0..=stream.len() {
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            let mut buf = BytesMut::from(&stream[..i]);
            let mut got = Vec::new();
            while let Some(m) = dec.decode(&mut buf).expect("valid") {
                got.push(m);
            }
            buf.extend_from_slice(&stream[i..]);
            while let Some(m) = dec.decode(&mut buf).expect("valid") {
                got.push(m);
            }
            assert_eq!(got, expected, "split at {i}");
            assert!(buf.is_empty(), "split at {i}");
        }
    }

    /// The first chunks FFmpeg 5.1 sends after the handshake when
    /// publishing, captured off the wire: connect (140 bytes, two chunks at
    /// 128), Set Chunk Size 4096, releaseStream, FCPublish, createStream,
    /// publish and a 200-byte @setDataFrame in one chunk.
    const FFMPEG_5_1_PUBLISH: &str = concat!(
        "0300000000008c1400000000020007636f6e6e656374003ff00000000000000300036170700200046c697665",
        "00047479706502000a6e6f6e707269766174650008666c617368566572020024464d4c452f332e302028636f",
        "6d70617469626c653b204c61766635392e32372e313030290005746355726c02001b72746d703a2f2f313237",
        "2e302e302e313a31c3393335322f6c6976650000090200000000000401000000000000100043000000000020",
        "1402000d72656c6561736553747265616d004000000000000000050200036361704300000000001c14020009",
        "46435075626c69736800400800000000000005020003636170430000000000191402000c6372656174655374",
        "7265616d004010000000000000050800000000002114010000000200077075626c6973680040140000000000",
        "00050200036361700200046c697665040000000000c8120100000002000d40736574446174614672616d6502",
        "000a6f6e4d65746144617461080000000800086475726174696f6e003ff00000000000000005776964746800",
        "4064000000000000000668656967687400405e000000000000000d766964656f646174617261746500000000",
        "000000000000096672616d6572617465004024000000000000000c766964656f636f646563696400401c0000",
        "000000000007656e636f64657202000d4c61766635392e32372e313030000866696c6573697a650000000000",
        "00000000000009",
    );

    use crate::rtmp::test_util::hex as from_hex;

    #[test]
    fn partial_messages_are_bounded_across_chunk_streams() {
        // Chunk size 128 (the initial one): three 100 000-byte messages
        // started on three chunk streams, with partial_bytes_max 250 000.
        let limits = ChunkLimits {
            partial_bytes_max: 250_000,
            ..ChunkLimits::default()
        };
        let mut dec = ChunkDecoder::new(limits);
        let mut bytes = BytesMut::new();
        for csid in [4u8, 5, 6] {
            // fmt 0 header: csid, ts 0, length 100000 (0x0186A0), type 9, stream 1.
            bytes.extend_from_slice(&[csid, 0, 0, 0, 0x01, 0x86, 0xA0, 9, 1, 0, 0, 0]);
            bytes.extend_from_slice(&[0u8; 128]);
        }
        // One call parses every whole chunk it has: the first two messages
        // start, the third is refused.
        let err = dec
            .decode(&mut bytes)
            .expect_err("the third message must be refused");
        assert!(
            matches!(
                err,
                ChunkError::TooManyPartialBytes {
                    pending: 200_000,
                    len: 100_000,
                    max: 250_000,
                    csid: 6,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("partial_bytes_max"), "{err}");
    }

    #[test]
    fn ffmpeg_publish_capture() {
        let bytes = from_hex(FFMPEG_5_1_PUBLISH);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let got = decode_all(&mut dec, &bytes).expect("valid");
        let view: Vec<_> = got
            .iter()
            .map(|m| (m.csid, m.timestamp, m.type_id, m.stream_id, m.payload.len()))
            .collect();
        assert_eq!(
            view,
            vec![
                (3, 0, 20, 0, 140),
                (2, 0, 1, 0, 4),
                (3, 0, 20, 0, 32),
                (3, 0, 20, 0, 28),
                (3, 0, 20, 0, 25),
                (8, 0, 20, 1, 33),
                (4, 0, 18, 1, 200),
            ]
        );
        assert_eq!(&got[0].payload[..10], b"\x02\x00\x07connect");
        assert_eq!(&got[5].payload[..10], b"\x02\x00\x07publish");
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(dec.position(), bytes.len() as u64);
        for i in 0..=bytes.len() {
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            let mut first = decode_all(&mut dec, &bytes[..i]).expect("valid");
            let mut buf = BytesMut::from(&bytes[dec.position() as usize..]);
            while let Some(m) = dec.decode(&mut buf).expect("valid") {
                first.push(m);
            }
            assert_eq!(first, got, "split at {i}");
        }
    }

    #[test]
    fn bad_chunk_size_zero() {
        let bytes = [0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0x80, 0, 0, 0];
        assert_eq!(
            decode_fresh(&bytes),
            Err(ChunkError::ChunkSizeZero { pos: 0 })
        );
    }

    #[test]
    fn bad_chunk_size_over_max() {
        let mut bytes = vec![0x04, 0, 0, 0, 0, 0, 1, 0x08, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 0x01, 0, 0, 0, 0, 0, 1, 0, 1]);
        let e = decode_fresh(&bytes).expect_err("too large");
        assert_eq!(
            e,
            ChunkError::ChunkSizeTooLarge {
                size: 65537,
                max: 65536,
                pos: 13
            }
        );
        assert!(e.to_string().contains("chunk_size_max 65536"), "{e}");
    }

    #[test]
    fn bad_control_too_short() {
        let bytes = [0x02, 0, 0, 0, 0, 0, 2, 0x01, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            decode_fresh(&bytes),
            Err(ChunkError::ControlTooShort {
                type_id: 1,
                len: 2,
                pos: 0
            })
        );
    }

    #[test]
    fn bad_message_length_over_max() {
        // 8 MiB + 1 announced; the error comes before the payload arrives.
        let bytes = [0x04, 0, 0, 0, 0x80, 0x00, 0x01, 0x09, 1, 0, 0, 0];
        let e = decode_fresh(&bytes).expect_err("too long");
        assert_eq!(
            e,
            ChunkError::MessageTooLong {
                len: 0x80_0001,
                max: 0x80_0000,
                csid: 4,
                pos: 0
            }
        );
        assert!(e.to_string().contains("message_len_max"), "{e}");
        // A fmt 1 header is checked too.
        let bytes = [
            0x04, 0, 0, 0, 0, 0, 0, 0x09, 1, 0, 0, 0, //
            0x44, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0x09,
        ];
        assert!(matches!(
            decode_fresh(&bytes),
            Err(ChunkError::MessageTooLong { pos: 12, .. })
        ));
    }

    #[test]
    fn bad_csid_flood() {
        let limits = ChunkLimits {
            chunk_streams_max: 4,
            ..ChunkLimits::default()
        };
        let mut bytes = Vec::new();
        for csid in 3..=7u8 {
            bytes.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 1, 0x08, 0, 0, 0, 0, 0]);
        }
        let e = decode_all(&mut ChunkDecoder::new(limits), &bytes).expect_err("flood");
        assert_eq!(
            e,
            ChunkError::TooManyChunkStreams {
                max: 4,
                csid: 7,
                pos: 52
            }
        );
        assert!(e.to_string().contains("chunk stream id flood"), "{e}");
        // Reusing known ids is fine.
        let mut dec = ChunkDecoder::new(limits);
        let again: Vec<u8> = bytes[..52].iter().chain(&bytes[..52]).copied().collect();
        assert_eq!(decode_all(&mut dec, &again).expect("valid").len(), 8);
    }

    #[test]
    fn bad_fmt123_without_previous_header() {
        for (fmt, bytes) in [
            (1u8, vec![0x44, 0, 0, 0, 0, 0, 1, 0x08, 0]),
            (2, vec![0x84, 0, 0, 0, 0]),
            (3, vec![0xC4, 0]),
        ] {
            assert_eq!(
                decode_fresh(&bytes),
                Err(ChunkError::NoPreviousHeader {
                    csid: 4,
                    fmt,
                    pos: 0
                })
            );
        }
    }

    #[test]
    fn bad_new_header_mid_message() {
        let mut bytes = vec![0x04, 0, 0, 0, 0, 0, 200, 0x08, 0, 0, 0, 0];
        bytes.extend_from_slice(&[0; 128]);
        bytes.extend_from_slice(&[0x84, 0, 0, 1]);
        let e = decode_fresh(&bytes).expect_err("mid message");
        assert_eq!(
            e,
            ChunkError::HeaderMidMessage {
                csid: 4,
                fmt: 2,
                received: 128,
                len: 200,
                pos: 140
            }
        );
    }

    #[test]
    fn encoder_uses_compressed_headers() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.write(4, 100, 8, 1, &[1, 2], &mut out).unwrap();
        enc.write(4, 120, 8, 1, &[3, 4], &mut out).unwrap(); // fmt 2, delta 20
        enc.write(4, 140, 8, 1, &[5, 6], &mut out).unwrap(); // fmt 3, same delta
        enc.write(4, 150, 9, 1, &[7], &mut out).unwrap(); // fmt 1
        enc.write(4, 150, 9, 2, &[8], &mut out).unwrap(); // fmt 0, new stream id
        #[rustfmt::skip]
        let expected = [
            0x04, 0, 0, 100, 0, 0, 2, 8, 1, 0, 0, 0, 1, 2,
            0x84, 0, 0, 20, 3, 4,
            0xC4, 5, 6,
            0x44, 0, 0, 10, 0, 0, 1, 9, 7,
            0x04, 0, 0, 150, 0, 0, 1, 9, 2, 0, 0, 0, 8,
        ];
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(
            decode_fresh(&out).expect("valid"),
            vec![
                msg(4, 100, 8, 1, &[1, 2]),
                msg(4, 120, 8, 1, &[3, 4]),
                msg(4, 140, 8, 1, &[5, 6]),
                msg(4, 150, 9, 1, &[7]),
                msg(4, 150, 9, 2, &[8]),
            ]
        );
    }

    #[test]
    fn encoder_refuses_a_payload_over_24_bits() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        enc.write(4, 100, 8, 1, &[1, 2], &mut out).unwrap();
        let before = out.clone();
        let big = vec![0u8; MESSAGE_LEN_FIELD_MAX as usize + 1];
        let err = enc.write(4, 120, 8, 1, &big, &mut out).unwrap_err();
        assert_eq!(
            err,
            EncodeError::MessageTooLong {
                len: 16_777_216,
                max: 16_777_215,
                csid: 4,
                type_id: 8
            }
        );
        assert!(
            err.to_string().contains("MESSAGE_LEN_FIELD_MAX 16777215"),
            "{err}"
        );
        assert_eq!(out, before, "nothing written");
        // The refused message left the header state alone: the next one is
        // still fmt 2 against the first (delta 20).
        enc.write(4, 120, 8, 1, &[3, 4], &mut out).unwrap();
        assert_eq!(&out[before.len()..], &[0x84, 0, 0, 20, 3, 4]);
        let mut pieces = Vec::new();
        let err = chunk_message_shared(6, 0, 9, 1, &Bytes::from(big), 4096, &mut pieces);
        assert!(matches!(
            err,
            Err(EncodeError::MessageTooLong {
                len: 16_777_216,
                csid: 6,
                type_id: 9,
                ..
            })
        ));
        assert!(pieces.is_empty());
    }

    #[test]
    fn encoder_carries_the_largest_24_bit_payload() {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(0x80_0000);
        let payload = vec![0x5Au8; MESSAGE_LEN_FIELD_MAX as usize];
        let mut out = BytesMut::new();
        enc.write(6, 0, 9, 1, &payload, &mut out).unwrap();
        // fmt 0 on csid 6, timestamp 0, length 0xFFFFFF, type 9, stream 1.
        assert_eq!(
            &out[..12],
            &[0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]
        );
        // Two chunks: 0x800000 bytes, a fmt 3 header, the rest.
        assert_eq!(out.len(), 12 + payload.len() + 1);
        assert_eq!(out[12 + 0x80_0000], 0xC6);
    }

    #[test]
    fn encoder_decoder_round_trip_random() {
        let mut rng = Rng::from_env();
        for round in 0..40 {
            let mut enc = ChunkEncoder::new();
            let mut dec = ChunkDecoder::new(ChunkLimits::default());
            let mut wire = BytesMut::new();
            let mut expected = Vec::new();
            let mut clocks = [0u32; 4];
            for _ in 0..30 {
                if rng.below(8) == 0 {
                    let size = 1 + rng.below(70_000).min(65_535) as u32;
                    enc.write(2, 0, 1, 0, &size.to_be_bytes(), &mut wire)
                        .unwrap();
                    enc.set_chunk_size(size);
                    expected.push(msg(2, 0, 1, 0, &size.to_be_bytes()));
                    continue;
                }
                let lane = rng.below(4) as usize;
                let csid = [3, 4, 100, 5000][lane];
                let len = match rng.below(4) {
                    0 => rng.below(4),
                    1 => rng.below(300),
                    _ => rng.below(20_000),
                } as usize;
                clocks[lane] = match rng.below(6) {
                    0 => clocks[lane],
                    1 => 0xFFFF_F000_u32.wrapping_add(rng.below(0x2000) as u32),
                    2 => clocks[lane].wrapping_sub(5),
                    _ => clocks[lane].wrapping_add(rng.below(50) as u32),
                };
                let type_id = [8, 9, 18][rng.below(3) as usize];
                let stream_id = 1 + rng.below(2) as u32;
                let payload = rng.bytes(len);
                enc.write(csid, clocks[lane], type_id, stream_id, &payload, &mut wire)
                    .unwrap();
                expected.push(msg(csid, clocks[lane], type_id, stream_id, &payload));
            }
            // Feed in random pieces.
            let mut got = Vec::new();
            let mut buf = BytesMut::new();
            while !wire.is_empty() {
                let n = (1 + rng.below(5000) as usize).min(wire.len());
                buf.extend_from_slice(&wire.split_to(n));
                while let Some(m) = dec.decode(&mut buf).expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got, expected, "round {round}");
        }
    }

    #[test]
    fn shared_chunking_matches_encoder_fmt0() {
        let mut rng = Rng::from_env();
        for (timestamp, len, chunk_size, csid) in [
            (0u32, 0usize, 128u32, 4u32),
            (40, 128, 128, 6),
            (40, 129, 128, 6),
            (0xFF_FFFE, 1000, 128, 70),
            (0xFF_FFFF, 1000, 300, 320),
            (0x1234_5678, 5000, 4096, 65599),
            (7, 100_000, 60_000, 5),
        ] {
            let payload = Bytes::from(rng.bytes(len));
            let mut pieces = Vec::new();
            chunk_message_shared(csid, timestamp, 9, 1, &payload, chunk_size, &mut pieces).unwrap();
            let shared: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
            let mut enc = ChunkEncoder::new();
            enc.set_chunk_size(chunk_size);
            let mut out = BytesMut::new();
            enc.write(csid, timestamp, 9, 1, &payload, &mut out)
                .unwrap();
            assert_eq!(
                shared,
                &out[..],
                "ts {timestamp} len {len} chunk {chunk_size}"
            );
            let limits = ChunkLimits::default();
            let mut dec = ChunkDecoder::new(limits);
            let mut wire = BytesMut::new();
            let size = chunk_size.to_be_bytes();
            ChunkEncoder::new()
                .write(2, 0, 1, 0, &size, &mut wire)
                .unwrap();
            wire.extend_from_slice(&shared);
            let got = decode_all(&mut dec, &wire).expect("valid");
            assert_eq!(got.get(1), Some(&msg(csid, timestamp, 9, 1, &payload)));
            // Payload pieces are slices of the one payload, not copies.
            if len > 0 {
                assert_eq!(pieces[1].as_ptr(), payload.as_ptr());
            }
        }
    }
}
