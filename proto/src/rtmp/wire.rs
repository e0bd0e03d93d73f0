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
use super::chunk::{chunk_message_shared, EncodeError};
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

/// The chunk stream and message type a frame of `kind` goes out with.
pub fn frame_ids(kind: FrameKind) -> (u32, u8) {
    match kind {
        FrameKind::Audio => (CSID_AUDIO, msg_type::AUDIO),
        FrameKind::Video => (CSID_VIDEO, msg_type::VIDEO),
        FrameKind::Data => (CSID_DATA, msg_type::DATA_AMF0),
    }
}

/// Appends one audio/video/data frame, chunked, to `out`. A payload over
/// the 24-bit length field is refused, with nothing appended.
pub fn media_message(
    frame: &Frame,
    stream_id: u32,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    let (csid, type_id) = frame_ids(frame.kind);
    chunk_message_shared(
        csid,
        frame.timestamp,
        type_id,
        stream_id,
        &frame.payload,
        chunk_size,
        out,
    )
}

/// Appends an `onMetaData` data message (AMF0 body) to `out`. A body over
/// the 24-bit length field is refused, with nothing appended; the sessions
/// refuse such metadata on input, so a body they raised always fits.
pub fn metadata_message(
    body: &Bytes,
    stream_id: u32,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    chunk_message_shared(
        CSID_DATA,
        0,
        msg_type::DATA_AMF0,
        stream_id,
        body,
        chunk_size,
        out,
    )
}

/// `{level, code, description}`, the info object of `onStatus` and of
/// `_result`/`_error` replies.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
}

/// The AMF0 body of `onStatus(0, null, {level, code, description})`.
pub fn status_body(level: &str, code: &str, description: &str) -> Vec<u8> {
    let cmd = Command {
        name: "onStatus".into(),
        transaction_id: 0.0,
        object: Amf0Value::Null,
        args: vec![status_object(level, code, description)],
    };
    let mut body = Vec::with_capacity(128);
    encode_command(&cmd, &mut body);
    body
}

/// Appends an `onStatus` command on `stream_id` to `out`. Refused, with
/// nothing appended, only if the strings pass the 24-bit length field.
pub fn status_message(
    stream_id: u32,
    level: &str,
    code: &str,
    description: &str,
    chunk_size: u32,
    out: &mut Vec<Bytes>,
) -> Result<(), EncodeError> {
    let body = Bytes::from(status_body(level, code, description));
    chunk_message_shared(
        CSID_DATA,
        0,
        msg_type::COMMAND_AMF0,
        stream_id,
        &body,
        chunk_size,
        out,
    )
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

/// `onMetaData` properties that describe video; dropped for audio-only plays.
const VIDEO_KEYS: &[&str] = &[
    "videocodecid",
    "width",
    "height",
    "framerate",
    "videoframerate",
    "videodatarate",
];
/// `onMetaData` properties that describe audio; dropped for video-only plays.
const AUDIO_KEYS: &[&str] = &[
    "audiocodecid",
    "audiosamplerate",
    "audiosamplesize",
    "audiodatarate",
    "audiochannels",
    "stereo",
];

/// The metadata body a player that receives only some media should get:
/// players (ffmpeg's FLV demuxer among them) take `videocodecid` as a
/// promise of video and wait for it. Returns the body unchanged when both
/// kinds are wanted or it cannot be decoded.
pub fn filter_metadata(body: &Bytes, audio: bool, video: bool) -> Bytes {
    if audio && video {
        return body.clone();
    }
    let Ok(mut values) = super::amf::decode_amf0(body, &super::amf::AmfLimits::default()) else {
        return body.clone();
    };
    let drop_key =
        |k: &str| (!video && VIDEO_KEYS.contains(&k)) || (!audio && AUDIO_KEYS.contains(&k));
    for v in values.iter_mut() {
        if let Amf0Value::Object(props) | Amf0Value::EcmaArray(props) = v {
            props.retain(|(k, _)| !drop_key(k));
        }
    }
    let mut out = Vec::with_capacity(body.len());
    for v in &values {
        encode_amf0(v, &mut out);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filter_drops_the_other_kind() {
        let values = [
            Amf0Value::String("@setDataFrame".into()),
            Amf0Value::String("onMetaData".into()),
            Amf0Value::EcmaArray(vec![
                ("width".into(), Amf0Value::Number(1280.0)),
                ("videocodecid".into(), Amf0Value::Number(7.0)),
                ("audiocodecid".into(), Amf0Value::Number(10.0)),
                ("duration".into(), Amf0Value::Number(0.0)),
            ]),
        ];
        let body = metadata_body(&values).expect("onMetaData");
        let audio_only = filter_metadata(&body, true, false);
        let decoded = super::super::amf::decode_amf0(&audio_only, &Default::default()).unwrap();
        assert_eq!(decoded[0].as_str(), Some("onMetaData"));
        assert!(decoded[1].get("videocodecid").is_none());
        assert!(decoded[1].get("width").is_none());
        assert!(decoded[1].get("audiocodecid").is_some());
        assert!(decoded[1].get("duration").is_some());
        let video_only = filter_metadata(&body, false, true);
        let decoded = super::super::amf::decode_amf0(&video_only, &Default::default()).unwrap();
        assert!(decoded[1].get("audiocodecid").is_none());
        assert!(decoded[1].get("videocodecid").is_some());
        assert_eq!(filter_metadata(&body, true, true), body);
    }
}
