//! Message types, protocol control messages, user control events and
//! aggregate messages.
//!
//! Defined by: RTMP spec 1.0, section 5.4 (protocol control messages, types
//! 1 to 3 and 5 to 6), 6.2 and 7.1.7 (user control messages, type 4) and
//! 7.1.6 (aggregate messages, type 22).

use std::fmt;

use bytes::Bytes;

use super::chunk::{ChunkEncoder, EncodeError, Message, CHUNK_SIZE_SPEC_MAX};

/// Message type ids (spec 5.4 and 7.1).
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream, message stream and timestamp of control messages
/// (spec 5.4 and 6.2).
const CONTROL_CSID: u32 = 2;
const CONTROL_STREAM_ID: u32 = 0;

/// User control event types (spec 7.1.7).
mod event {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// A user control event (spec 7.1.7). Unknown events, such as the
/// non-standard buffer empty/ready (31/32) some servers send, are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// The stream with this id became functional.
    StreamBegin(u32),
    /// Playback of the stream with this id is over.
    StreamEof(u32),
    /// No more data on the stream with this id for now.
    StreamDry(u32),
    /// The client's buffer length for a stream.
    SetBufferLength {
        stream_id: u32,
        buffer_ms: u32,
    },
    /// The stream with this id is recorded.
    StreamIsRecorded(u32),
    /// The server's ping, carrying its timestamp.
    PingRequest(u32),
    /// The answer to a ping, echoing its timestamp.
    PingResponse(u32),
    Unknown {
        event: u16,
        data: Bytes,
    },
}

/// A protocol control message (types 1, 2, 3, 5, 6) or user control
/// message (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// New chunk size of the sender; the top bit is ignored when parsing.
    SetChunkSize(u32),
    /// Drop the partial message on this chunk stream id.
    Abort(u32),
    /// Bytes received so far (sequence number).
    Acknowledgement(u32),
    /// Send an acknowledgement every this many bytes.
    WindowAckSize(u32),
    /// Limit the peer's output window; limit type 0 hard, 1 soft, 2 dynamic.
    SetPeerBandwidth {
        size: u32,
        limit_type: u8,
    },
    UserControl(UserControl),
}

/// A control message whose payload could not be read. Always the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The type id is not a control message type (1 to 6).
    NotControl { type_id: u8 },
    /// The payload is shorter than the type (and user control event) needs.
    TooShort {
        type_id: u8,
        event: Option<u16>,
        len: usize,
        need: usize,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotControl { type_id } => {
                write!(
                    f,
                    "message type {type_id} is not a control message (1 to 6)"
                )
            }
            ControlError::TooShort {
                type_id,
                event: None,
                len,
                need,
            } => write!(
                f,
                "control message type {type_id} has {len} payload bytes, needs {need}"
            ),
            ControlError::TooShort {
                type_id,
                event: Some(event),
                len,
                need,
            } => write!(
                f,
                "user control message (type {type_id}) event {event} has {len} payload \
                 bytes, needs {need}"
            ),
        }
    }
}

impl std::error::Error for ControlError {}

/// Reads a control message of type `type_id`. Bytes past the fields the
/// type defines are ignored.
pub fn parse_control(type_id: u8, payload: &[u8]) -> Result<ControlMessage, ControlError> {
    let too_short = |event, need| ControlError::TooShort {
        type_id,
        event,
        len: payload.len(),
        need,
    };
    let u32_at = |at: usize, event| read_u32(payload, at).ok_or_else(|| too_short(event, at + 4));
    let msg = match type_id {
        msg_type::SET_CHUNK_SIZE => {
            ControlMessage::SetChunkSize(u32_at(0, None)? & CHUNK_SIZE_SPEC_MAX)
        }
        msg_type::ABORT => ControlMessage::Abort(u32_at(0, None)?),
        msg_type::ACK => ControlMessage::Acknowledgement(u32_at(0, None)?),
        msg_type::WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(u32_at(0, None)?),
        msg_type::SET_PEER_BANDWIDTH => {
            let size = u32_at(0, None)?;
            let limit_type = *payload.get(4).ok_or_else(|| too_short(None, 5))?;
            ControlMessage::SetPeerBandwidth { size, limit_type }
        }
        msg_type::USER_CONTROL => {
            let Some(&[e0, e1]) = payload.get(..2) else {
                return Err(too_short(None, 2));
            };
            let ev = u16::from_be_bytes([e0, e1]);
            let value = || u32_at(2, Some(ev));
            let uc = match ev {
                event::STREAM_BEGIN => UserControl::StreamBegin(value()?),
                event::STREAM_EOF => UserControl::StreamEof(value()?),
                event::STREAM_DRY => UserControl::StreamDry(value()?),
                event::SET_BUFFER_LENGTH => UserControl::SetBufferLength {
                    stream_id: value()?,
                    buffer_ms: u32_at(6, Some(ev))?,
                },
                event::STREAM_IS_RECORDED => UserControl::StreamIsRecorded(value()?),
                event::PING_REQUEST => UserControl::PingRequest(value()?),
                event::PING_RESPONSE => UserControl::PingResponse(value()?),
                _ => UserControl::Unknown {
                    event: ev,
                    data: Bytes::copy_from_slice(payload.get(2..).unwrap_or_default()),
                },
            };
            ControlMessage::UserControl(uc)
        }
        _ => return Err(ControlError::NotControl { type_id }),
    };
    Ok(msg)
}

impl ControlMessage {
    /// The message type id this control message is sent as.
    pub fn type_id(&self) -> u8 {
        match self {
            ControlMessage::SetChunkSize(_) => msg_type::SET_CHUNK_SIZE,
            ControlMessage::Abort(_) => msg_type::ABORT,
            ControlMessage::Acknowledgement(_) => msg_type::ACK,
            ControlMessage::WindowAckSize(_) => msg_type::WINDOW_ACK_SIZE,
            ControlMessage::SetPeerBandwidth { .. } => msg_type::SET_PEER_BANDWIDTH,
            ControlMessage::UserControl(_) => msg_type::USER_CONTROL,
        }
    }

    /// Appends the payload (without chunk headers) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        match self {
            ControlMessage::SetChunkSize(v)
            | ControlMessage::Abort(v)
            | ControlMessage::Acknowledgement(v)
            | ControlMessage::WindowAckSize(v) => out.extend_from_slice(&v.to_be_bytes()),
            ControlMessage::SetPeerBandwidth { size, limit_type } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.push(*limit_type);
            }
            ControlMessage::UserControl(uc) => {
                let (ev, a, b) = match uc {
                    UserControl::StreamBegin(v) => (event::STREAM_BEGIN, *v, None),
                    UserControl::StreamEof(v) => (event::STREAM_EOF, *v, None),
                    UserControl::StreamDry(v) => (event::STREAM_DRY, *v, None),
                    UserControl::SetBufferLength {
                        stream_id,
                        buffer_ms,
                    } => (event::SET_BUFFER_LENGTH, *stream_id, Some(*buffer_ms)),
                    UserControl::StreamIsRecorded(v) => (event::STREAM_IS_RECORDED, *v, None),
                    UserControl::PingRequest(v) => (event::PING_REQUEST, *v, None),
                    UserControl::PingResponse(v) => (event::PING_RESPONSE, *v, None),
                    UserControl::Unknown { event, data } => {
                        out.extend_from_slice(&event.to_be_bytes());
                        out.extend_from_slice(data);
                        return;
                    }
                };
                out.extend_from_slice(&ev.to_be_bytes());
                out.extend_from_slice(&a.to_be_bytes());
                if let Some(b) = b {
                    out.extend_from_slice(&b.to_be_bytes());
                }
            }
        }
    }
}

/// Appends `msg` as a full chunked message on chunk stream 2, message
/// stream 0, timestamp 0. A Set Chunk Size is applied to `enc` right after
/// it is written, so it and the following messages use the new size in the
/// order the peer reads them.
///
/// Only a user control event of unknown type carries a payload the caller
/// chooses, so only that one can be refused for its length.
///
/// Panics on a Set Chunk Size of 0 or above 0x7FFFFFFF (a local bug).
pub fn write_control(
    enc: &mut ChunkEncoder,
    msg: &ControlMessage,
    out: &mut bytes::BytesMut,
) -> Result<(), EncodeError> {
    let mut payload = Vec::with_capacity(10);
    msg.encode_payload(&mut payload);
    enc.write(
        CONTROL_CSID,
        0,
        msg.type_id(),
        CONTROL_STREAM_ID,
        &payload,
        out,
    )?;
    if let ControlMessage::SetChunkSize(size) = msg {
        enc.set_chunk_size(*size);
    }
    Ok(())
}

/// An aggregate message that could not be split. Always the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateError {
    /// The message is not type 22.
    NotAggregate { type_id: u8 },
    /// A sub-message at `offset` (in the aggregate's payload) needs `need`
    /// bytes from there for its `what`, but only `have` remain.
    Truncated {
        offset: usize,
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A sub-message at `offset` is itself an aggregate.
    Nested { offset: usize },
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateError::NotAggregate { type_id } => {
                write!(f, "message type {type_id} is not an aggregate (22)")
            }
            AggregateError::Truncated {
                offset,
                what,
                need,
                have,
            } => write!(
                f,
                "aggregate sub-message at payload offset {offset}: {what} needs {need} bytes, \
                 {have} remain"
            ),
            AggregateError::Nested { offset } => write!(
                f,
                "aggregate sub-message at payload offset {offset} is itself an aggregate"
            ),
        }
    }
}

impl std::error::Error for AggregateError {}

/// FLV-style tag header of an aggregate sub-message.
const SUB_HEADER_LEN: usize = 11;
/// The back pointer after each sub-message body.
const BACK_POINTER_LEN: usize = 4;

/// Splits an aggregate message (spec 7.1.6) into its sub-messages.
///
/// Each sub-message is an 11-byte header (type, 24-bit length, 24-bit
/// timestamp, 8-bit timestamp extension, 24-bit stream id), the body and a
/// 4-byte back pointer. Timestamps are rebased so the first sub-message has
/// the aggregate's timestamp; sub-messages take the aggregate's chunk stream
/// and message stream ids. Bodies are zero-copy slices of the payload. The
/// back pointer's value is not checked, and the last one may be missing.
pub fn split_aggregate(msg: &Message) -> Result<Vec<Message>, AggregateError> {
    if msg.type_id != msg_type::AGGREGATE {
        return Err(AggregateError::NotAggregate {
            type_id: msg.type_id,
        });
    }
    let payload = &msg.payload;
    let mut out = Vec::new();
    let mut first_ts = None;
    let mut offset = 0;
    while offset < payload.len() {
        let have = payload.len() - offset;
        let truncated = |what, need| AggregateError::Truncated {
            offset,
            what,
            need,
            have,
        };
        let Some(&[type_id, l0, l1, l2, t0, t1, t2, t3, ..]) =
            payload.get(offset..offset + SUB_HEADER_LEN)
        else {
            return Err(truncated("header", SUB_HEADER_LEN));
        };
        if type_id == msg_type::AGGREGATE {
            return Err(AggregateError::Nested { offset });
        }
        let len = u32::from_be_bytes([0, l0, l1, l2]) as usize;
        let sub_ts = u32::from_be_bytes([t3, t0, t1, t2]);
        let body_start = offset + SUB_HEADER_LEN;
        if payload.len() < body_start + len {
            return Err(truncated("body", SUB_HEADER_LEN + len));
        }
        let first = *first_ts.get_or_insert(sub_ts);
        out.push(Message {
            csid: msg.csid,
            timestamp: msg.timestamp.wrapping_add(sub_ts.wrapping_sub(first)),
            type_id,
            stream_id: msg.stream_id,
            payload: payload.slice(body_start..body_start + len),
        });
        let end = body_start + len;
        let tail = payload.len() - end;
        if tail > 0 && tail < BACK_POINTER_LEN {
            return Err(truncated(
                "back pointer",
                SUB_HEADER_LEN + len + BACK_POINTER_LEN,
            ));
        }
        offset = end + BACK_POINTER_LEN.min(tail);
    }
    Ok(out)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::chunk::{ChunkDecoder, ChunkLimits};
    use bytes::BytesMut;

    #[test]
    fn parse_protocol_control_messages() {
        let cases: [(u8, &[u8], ControlMessage); 6] = [
            (
                1,
                &[0x00, 0x00, 0x10, 0x00],
                ControlMessage::SetChunkSize(4096),
            ),
            (
                1,
                &[0x80, 0x00, 0x10, 0x00],
                ControlMessage::SetChunkSize(4096),
            ),
            (2, &[0x00, 0x00, 0x00, 0x06], ControlMessage::Abort(6)),
            (
                3,
                &[0x00, 0x26, 0x25, 0xA0],
                ControlMessage::Acknowledgement(2_500_000),
            ),
            (
                5,
                &[0x00, 0x4C, 0x4B, 0x40],
                ControlMessage::WindowAckSize(5_000_000),
            ),
            (
                6,
                &[0x00, 0x4C, 0x4B, 0x40, 0x02],
                ControlMessage::SetPeerBandwidth {
                    size: 5_000_000,
                    limit_type: 2,
                },
            ),
        ];
        for (type_id, payload, expected) in cases {
            assert_eq!(parse_control(type_id, payload), Ok(expected));
        }
    }

    #[test]
    fn parse_user_control_events() {
        let cases: [(&[u8], UserControl); 8] = [
            (&[0, 0, 0, 0, 0, 1], UserControl::StreamBegin(1)),
            (&[0, 1, 0, 0, 0, 1], UserControl::StreamEof(1)),
            (&[0, 2, 0, 0, 0, 1], UserControl::StreamDry(1)),
            (
                &[0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8],
                UserControl::SetBufferLength {
                    stream_id: 1,
                    buffer_ms: 3000,
                },
            ),
            (&[0, 4, 0, 0, 0, 1], UserControl::StreamIsRecorded(1)),
            (
                &[0, 6, 0x12, 0x34, 0x56, 0x78],
                UserControl::PingRequest(0x1234_5678),
            ),
            (
                &[0, 7, 0x12, 0x34, 0x56, 0x78],
                UserControl::PingResponse(0x1234_5678),
            ),
            (
                &[0, 31, 0, 0, 0, 1],
                UserControl::Unknown {
                    event: 31,
                    data: Bytes::from_static(&[0, 0, 0, 1]),
                },
            ),
        ];
        for (payload, expected) in cases {
            let parsed = parse_control(4, payload);
            assert_eq!(parsed, Ok(ControlMessage::UserControl(expected.clone())));
            // And back to the same bytes.
            let mut out = Vec::new();
            ControlMessage::UserControl(expected).encode_payload(&mut out);
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn short_and_unknown_control_messages_are_named() {
        let e = parse_control(5, &[0, 0]).expect_err("short");
        assert_eq!(
            e,
            ControlError::TooShort {
                type_id: 5,
                event: None,
                len: 2,
                need: 4
            }
        );
        assert!(
            e.to_string()
                .contains("type 5 has 2 payload bytes, needs 4"),
            "{e}"
        );
        assert_eq!(
            parse_control(6, &[0, 0, 0, 1]),
            Err(ControlError::TooShort {
                type_id: 6,
                event: None,
                len: 4,
                need: 5
            })
        );
        assert_eq!(
            parse_control(4, &[0]),
            Err(ControlError::TooShort {
                type_id: 4,
                event: None,
                len: 1,
                need: 2
            })
        );
        let e = parse_control(4, &[0, 3, 0, 0, 0, 1, 0]).expect_err("short");
        assert_eq!(
            e,
            ControlError::TooShort {
                type_id: 4,
                event: Some(3),
                len: 7,
                need: 10
            }
        );
        assert!(e.to_string().contains("event 3"), "{e}");
        assert_eq!(
            parse_control(9, &[]),
            Err(ControlError::NotControl { type_id: 9 })
        );
    }

    #[test]
    fn write_control_byte_vectors() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        write_control(
            &mut enc,
            &ControlMessage::WindowAckSize(2_500_000),
            &mut out,
        )
        .unwrap();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x02, 0, 0, 0, 0, 0, 4, 0x05, 0, 0, 0, 0, 0x00, 0x26, 0x25, 0xA0,
        ];
        assert_eq!(&out[..], expected);
        out.clear();
        let ping = ControlMessage::UserControl(UserControl::PingRequest(7));
        write_control(&mut enc, &ping, &mut out).unwrap();
        // fmt 1 on csid 2: delta 0, length 6, type 4.
        assert_eq!(&out[..], &[0x42, 0, 0, 0, 0, 0, 6, 0x04, 0, 6, 0, 0, 0, 7]);
    }

    #[test]
    fn write_control_round_trips_and_applies_chunk_size() {
        let msgs = [
            ControlMessage::SetChunkSize(4096),
            ControlMessage::WindowAckSize(2_500_000),
            ControlMessage::SetPeerBandwidth {
                size: 2_500_000,
                limit_type: 2,
            },
            ControlMessage::UserControl(UserControl::StreamBegin(1)),
            ControlMessage::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                buffer_ms: 100,
            }),
            ControlMessage::Acknowledgement(123),
            ControlMessage::Abort(5),
        ];
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        for m in &msgs {
            write_control(&mut enc, m, &mut out).unwrap();
        }
        assert_eq!(enc.chunk_size(), 4096);
        // A message longer than 128 now goes out in one chunk, and the
        // decoder, having read the Set Chunk Size first, agrees.
        enc.write(6, 0, msg_type::VIDEO, 1, &[9; 3000], &mut out)
            .unwrap();
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut got = Vec::new();
        while let Some(m) = dec.decode(&mut out).expect("valid") {
            got.push(m);
        }
        assert_eq!(got.len(), msgs.len() + 1);
        for (m, expected) in got.iter().zip(&msgs) {
            assert_eq!((m.csid, m.stream_id, m.timestamp), (2, 0, 0));
            assert_eq!(parse_control(m.type_id, &m.payload).as_ref(), Ok(expected));
        }
        assert_eq!(got.last().map(|m| m.payload.len()), Some(3000));
    }

    fn sub(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let len = body.len() as u32;
        let mut v = vec![type_id];
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&(11 + len).to_be_bytes());
        v
    }

    fn aggregate(payload: Vec<u8>) -> Message {
        Message {
            csid: 6,
            timestamp: 5000,
            type_id: msg_type::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn aggregate_split_rebases_timestamps() {
        let mut payload = sub(9, 0x0100_0010, &[1, 2, 3]);
        payload.extend(sub(8, 0x0100_0030, &[4]));
        payload.extend(sub(9, 0x0100_0050, &[]));
        let agg = aggregate(payload);
        let got = split_aggregate(&agg).expect("valid");
        let view: Vec<_> = got
            .iter()
            .map(|m| {
                (
                    m.csid,
                    m.timestamp,
                    m.type_id,
                    m.stream_id,
                    m.payload.to_vec(),
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                (6, 5000, 9, 1, vec![1, 2, 3]),
                (6, 5032, 8, 1, vec![4]),
                (6, 5064, 9, 1, vec![]),
            ]
        );
        // Bodies point into the aggregate's payload.
        assert_eq!(got[0].payload.as_ptr(), agg.payload[11..].as_ptr());
    }

    #[test]
    fn aggregate_without_last_back_pointer() {
        let mut payload = sub(9, 10, &[1, 2]);
        payload.extend(sub(9, 20, &[3]));
        payload.truncate(payload.len() - 4);
        let got = split_aggregate(&aggregate(payload)).expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].timestamp, 5010);
    }

    #[test]
    fn bad_aggregates_are_named() {
        let mut payload = sub(9, 0, &[1, 2, 3]);
        payload.extend(sub(9, 0, &[1, 2, 3, 4]));
        let cut = payload.len() - 6;
        let e = split_aggregate(&aggregate(payload[..cut].to_vec())).expect_err("truncated");
        assert_eq!(
            e,
            AggregateError::Truncated {
                offset: 18,
                what: "body",
                need: 15,
                have: 13
            }
        );
        assert!(e.to_string().contains("offset 18"), "{e}");
        let e = split_aggregate(&aggregate(payload[..25].to_vec())).expect_err("truncated");
        assert!(matches!(
            e,
            AggregateError::Truncated {
                offset: 18,
                what: "header",
                ..
            }
        ));
        let e = split_aggregate(&aggregate(payload[..16].to_vec())).expect_err("truncated");
        assert!(matches!(
            e,
            AggregateError::Truncated {
                offset: 0,
                what: "back pointer",
                ..
            }
        ));
        let nested = sub(22, 0, &[]);
        assert_eq!(
            split_aggregate(&aggregate(nested)),
            Err(AggregateError::Nested { offset: 0 })
        );
        let mut not = aggregate(Vec::new());
        not.type_id = 9;
        assert_eq!(
            split_aggregate(&not),
            Err(AggregateError::NotAggregate { type_id: 9 })
        );
        assert_eq!(split_aggregate(&aggregate(Vec::new())), Ok(Vec::new()));
    }
}
