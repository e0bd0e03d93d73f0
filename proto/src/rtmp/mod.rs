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
    use super::amf::{encode_amf0, Amf0Value};
    use super::chunk::{ChunkDecoder, Message};
    use crate::media::Frame;
    use bytes::Bytes;

    /// The server session's settings in tests: default limits, 4096-byte
    /// chunks out, the usual 2.5 MB window.
    pub(crate) fn server_config() -> super::session::SessionConfig {
        super::session::SessionConfig {
            chunk: super::chunk::ChunkLimits::default(),
            amf: super::amf::AmfLimits::default(),
            chunk_size_out: 4096,
            window_ack_size: 2_500_000,
        }
    }

    /// AVC sequence header: key + AVC, packet type 0, a tiny record.
    pub(crate) fn video_seq() -> Frame {
        let body = [
            0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00,
            0x1f, 0x01, 0x00, 0x02, 0x68, 0xee,
        ];
        Frame::parse_video(0, Bytes::copy_from_slice(&body)).unwrap()
    }

    /// An AVC NALU frame of `len` filler bytes.
    pub(crate) fn video_frame(ts: u32, key: bool, len: usize) -> Frame {
        let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
        body.extend(std::iter::repeat_n(0xAB, len));
        Frame::parse_video(ts, Bytes::from(body)).unwrap()
    }

    /// An AAC raw frame.
    pub(crate) fn audio_frame(ts: u32) -> Frame {
        Frame::parse_audio(
            ts,
            Bytes::from_static(&[0xAF, 0x01, 0x21, 0x10, 0x04, 0x60]),
        )
        .unwrap()
    }

    /// A publisher's start: sequence header, keyframe, audio and inter
    /// frames, the last with an extended (above 24-bit) timestamp.
    pub(crate) fn sample_frames() -> [Frame; 6] {
        [
            video_seq(),
            video_frame(0, true, 9000),
            audio_frame(23),
            video_frame(33, false, 100),
            audio_frame(46),
            video_frame(0x0100_0000, false, 5000),
        ]
    }

    /// The AMF0 body `["onMetaData", {width}]`.
    pub(crate) fn on_metadata(width: f64) -> Vec<u8> {
        let mut meta = Vec::new();
        encode_amf0(&Amf0Value::String("onMetaData".into()), &mut meta);
        encode_amf0(
            &Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(width))]),
            &mut meta,
        );
        meta
    }

    /// Decodes `bytes` with `dec` as a peer would; they must end on a
    /// message boundary.
    pub(crate) fn decode_with(dec: &mut ChunkDecoder, bytes: &[u8]) -> Vec<Message> {
        let mut buf = bytes::BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut buf).expect("valid chunk stream") {
            out.push(m);
        }
        assert!(buf.is_empty(), "a partial chunk left over");
        out
    }

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
