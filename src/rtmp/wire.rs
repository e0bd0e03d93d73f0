//! Messages every player of a stream shares: media, metadata and status,
//! chunked statelessly (fmt 0) so one serialisation serves many sockets.
//!
//! Chunk stream ids are split between the two writers of a connection: the
//! session's own [`ChunkEncoder`](super::chunk::ChunkEncoder), which may
//! compress headers, uses only [`CSID_CONTROL`] and [`CSID_COMMAND`]; the
//! shared messages here use the others, always with fmt 0 headers, so the
//! encoder's compression state is never invalidated behind its back.

use bytes::Bytes;

use super::amf::{encode_amf0, encode_command, Amf0Value, Command};
use super::chunk::chunk_message_shared;
use super::message::msg_type;
use crate::media::{Frame, FrameKind};

/// Protocol control messages (the spec's fixed chunk stream 2).
pub const CSID_CONTROL: u32 = 2;
/// Session commands and replies (`_result`, connect-time `onStatus`).
pub const CSID_COMMAND: u32 = 3;
/// Audio messages.
pub const CSID_AUDIO: u32 = 4;
/// Data messages (`onMetaData`) and stream status sent during play.
pub const CSID_DATA: u32 = 5;
/// Video messages.
pub const CSID_VIDEO: u32 = 6;

/// Appends one audio/video/data frame, chunked, to `out`.
pub fn media_message(frame: &Frame, stream_id: u32, chunk_size: u32, out: &mut Vec<Bytes>) {
    let (csid, type_id) = match frame.kind {
        FrameKind::Audio => (CSID_AUDIO, msg_type::AUDIO),
        FrameKind::Video => (CSID_VIDEO, msg_type::VIDEO),
        FrameKind::Data => (CSID_DATA, msg_type::DATA_AMF0),
    };
    chunk_message_shared(
        csid,
        frame.timestamp,
        type_id,
        stream_id,
        &frame.payload,
        chunk_size,
        out,
    );
}

/// Appends an `onMetaData` data message (AMF0 body) to `out`.
pub fn metadata_message(body: &Bytes, stream_id: u32, chunk_size: u32, out: &mut Vec<Bytes>) {
    chunk_message_shared(
        CSID_DATA,
        0,
        msg_type::DATA_AMF0,
        stream_id,
        body,
        chunk_size,
        out,
    );
}

/// The AMF0 body of `onStatus(0, null, {level, code, description})`.
pub fn status_body(level: &str, code: &str, description: &str) -> Vec<u8> {
    let cmd = Command {
        name: "onStatus".into(),
        transaction_id: 0.0,
        object: Amf0Value::Null,
        args: vec![Amf0Value::Object(vec![
            ("level".into(), Amf0Value::String(level.into())),
            ("code".into(), Amf0Value::String(code.into())),
            ("description".into(), Amf0Value::String(description.into())),
        ])],
    };
    let mut body = Vec::with_capacity(128);
    encode_command(&cmd, &mut body);
    body
}

/// Appends an `onStatus` command on `stream_id` to `out`.
pub fn status_message(
    stream_id: u32,
    level: &str,
    code: &str,
    description: &str,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) {
    let body = Bytes::from(status_body(level, code, description));
    chunk_message_shared(
        CSID_DATA,
        0,
        msg_type::COMMAND_AMF0,
        stream_id,
        &body,
        chunk_size,
        out,
    );
}

/// The AMF0 body players expect for metadata: `["onMetaData", props]`, from
/// what a publisher sent (`["@setDataFrame", "onMetaData", props]` or
/// `["onMetaData", props]`). None for other data messages.
pub fn metadata_body(values: &[Amf0Value]) -> Option<Bytes> {
    let rest = match values.first().and_then(Amf0Value::as_str) {
        Some("@setDataFrame") => values.get(1..)?,
        _ => values,
    };
    if rest.first().and_then(Amf0Value::as_str) != Some("onMetaData") {
        return None;
    }
    let mut body = Vec::with_capacity(256);
    for v in rest {
        encode_amf0(v, &mut body);
    }
    Some(Bytes::from(body))
}
