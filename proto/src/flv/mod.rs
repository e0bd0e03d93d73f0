//! FLV muxing for HTTP-FLV, and a small FLV demuxer for tests and the load
//! generator (sans-IO).
//!
//! An RTMP audio, video or data message body is exactly an FLV tag body, so
//! muxing a [`Frame`] is framing only: an 11-byte tag header before the
//! shared payload and a 4-byte PreviousTagSize after it. [`tag_parts`]
//! returns those two pieces as separate `Bytes` so a writer can send
//! header, payload and trailer in one vectored write without copying the
//! payload, which every player of a stream shares.
//!
//! Defined by: Adobe Flash Video File Format Specification v10.1, annex E
//! (E.2 The FLV header, E.3 The FLV file body, E.4.1 FLV tags).
//!
//! Layout of a stream:
//!
//! ```text
//! header (9) | PreviousTagSize0 = 0 (4) | tag 1 | size of tag 1 (4) | tag 2 | ...
//! tag = TagType (1) | DataSize (3) | Timestamp (3) | TimestampExtended (1)
//!       | StreamID = 0 (3) | body (DataSize)
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::{Frame, FrameKind, MediaError};

/// TagType of an audio tag (FLV E.4.1).
pub const TAG_TYPE_AUDIO: u8 = 8;
/// TagType of a video tag.
pub const TAG_TYPE_VIDEO: u8 = 9;
/// TagType of a script data tag (AMF0 `onMetaData` and the like).
pub const TAG_TYPE_SCRIPT: u8 = 18;

/// Bytes in the FLV file header of version 1 (its DataOffset).
pub const FILE_HEADER_LEN: usize = 9;
/// Bytes in a tag header, before the body.
pub const TAG_HEADER_LEN: usize = 11;
/// Bytes in the PreviousTagSize field after each tag (and after the header).
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;

/// The largest tag body, in bytes: what the 24-bit DataSize field can hold
/// (16 MiB less one byte). An RTMP message length is a 24-bit field too, so
/// every [`Frame`] payload fits; the demuxer refuses a larger announcement
/// (which the field cannot express anyway if this bound stays at its
/// maximum) with [`Parse::Invalid`]. The demuxer never allocates: a tag it
/// returns is a slice of the caller's buffer, which must hold the whole tag,
/// so this also bounds the buffer a reader needs.
pub const TAG_BODY_LEN_MAX: usize = 0xFF_FFFF;

/// FLV header TypeFlags bits (E.2).
const FLAG_AUDIO: u8 = 0x04;
const FLAG_VIDEO: u8 = 0x01;
/// The Filter bit of a tag header: the body is encrypted (E.4.1).
const TAG_FILTER: u8 = 0x20;
/// The five TagType bits of the first tag header byte.
const TAG_TYPE_MASK: u8 = 0x1f;

/// The FLV file header (9 bytes) followed by PreviousTagSize0 (4 bytes, 0),
/// with the TypeFlagsAudio and TypeFlagsVideo bits set as given.
pub fn file_header(has_audio: bool, has_video: bool) -> Bytes {
    let mut flags = 0;
    if has_audio {
        flags |= FLAG_AUDIO;
    }
    if has_video {
        flags |= FLAG_VIDEO;
    }
    let mut b = BytesMut::with_capacity(FILE_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN);
    b.put_slice(b"FLV");
    b.put_u8(1); // version
    b.put_u8(flags);
    b.put_u32(FILE_HEADER_LEN as u32); // DataOffset
    b.put_u32(0); // PreviousTagSize0
    b.freeze()
}

/// The tag header (11 bytes) and PreviousTagSize trailer (4 bytes) of a tag
/// of `tag_type` whose body is `body_len` bytes, at `timestamp` ms (its low
/// 24 bits in Timestamp, its high 8 bits in TimestampExtended).
///
/// The two share one 15-byte allocation. Send the body between them.
/// `body_len` must not exceed [`TAG_BODY_LEN_MAX`]; every frame and data
/// message satisfies that (their RTMP length field has 24 bits). A larger
/// length is a bug in the caller: debug builds assert, release builds write
/// the low 24 bits.
pub fn tag_parts(tag_type: u8, timestamp: u32, body_len: usize) -> (Bytes, Bytes) {
    debug_assert!(
        body_len <= TAG_BODY_LEN_MAX,
        "FLV tag body of {body_len} bytes"
    );
    let data_size = (body_len & TAG_BODY_LEN_MAX) as u32;
    let mut b = BytesMut::with_capacity(TAG_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN);
    b.put_u8(tag_type & TAG_TYPE_MASK);
    put_u24(&mut b, data_size);
    put_u24(&mut b, timestamp & 0xFF_FFFF);
    b.put_u8((timestamp >> 24) as u8);
    put_u24(&mut b, 0); // StreamID
    b.put_u32(data_size + TAG_HEADER_LEN as u32);
    let all = b.freeze();
    (all.slice(..TAG_HEADER_LEN), all.slice(TAG_HEADER_LEN..))
}

fn put_u24(b: &mut BytesMut, v: u32) {
    b.put_slice(&v.to_be_bytes()[1..]);
}

/// The TagType that carries a frame of this kind.
pub fn tag_type_of(kind: FrameKind) -> u8 {
    match kind {
        FrameKind::Audio => TAG_TYPE_AUDIO,
        FrameKind::Video => TAG_TYPE_VIDEO,
        FrameKind::Data => TAG_TYPE_SCRIPT,
    }
}

/// Appends a frame's tag to `out` as three parts: header, the frame's own
/// payload (shared, not copied) and the PreviousTagSize trailer.
pub fn frame_tag(frame: &Frame, out: &mut Vec<Bytes>) {
    let (header, trailer) = tag_parts(
        tag_type_of(frame.kind),
        frame.timestamp,
        frame.payload.len(),
    );
    out.push(header);
    out.push(frame.payload.clone());
    out.push(trailer);
}

/// Appends an `onMetaData` script tag at timestamp 0 to `out`; `body` is
/// the AMF0 encoding of `["onMetaData", {...}]` (an RTMP data message body
/// without the `@setDataFrame` wrapper).
pub fn script_tag(body: &Bytes, out: &mut Vec<Bytes>) {
    let (header, trailer) = tag_parts(TAG_TYPE_SCRIPT, 0, body.len());
    out.push(header);
    out.push(body.clone());
    out.push(trailer);
}

/// The outcome of parsing from a buffer that may hold only part of the
/// input: "need more bytes" is [`Parse::Incomplete`], never an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// `value` was parsed from the first `consumed` bytes.
    Complete { value: T, consumed: usize },
    /// The buffer ends before the item does; call again with more bytes.
    Incomplete,
    /// The byte at offset `pos` is not what the spec allows; `what` names
    /// the field.
    Invalid { pos: usize, what: &'static str },
}

/// One FLV tag as read back by [`parse_tag`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The 5-bit TagType: [`TAG_TYPE_AUDIO`], [`TAG_TYPE_VIDEO`],
    /// [`TAG_TYPE_SCRIPT`], or any other value, kept as read.
    pub tag_type: u8,
    /// Timestamp in ms, TimestampExtended included.
    pub timestamp: u32,
    /// The tag body, a slice of the parsed buffer.
    pub body: Bytes,
}

impl Tag {
    /// Classifies the tag as a [`Frame`]: audio and video tags through the
    /// media parsers, script tags as data frames. Tags of other types are
    /// [`MediaError::Invalid`].
    pub fn to_frame(&self) -> Result<Frame, MediaError> {
        match self.tag_type {
            TAG_TYPE_AUDIO => Frame::parse_audio(self.timestamp, self.body.clone()),
            TAG_TYPE_VIDEO => Frame::parse_video(self.timestamp, self.body.clone()),
            TAG_TYPE_SCRIPT => Ok(Frame::data(self.timestamp, self.body.clone())),
            other => Err(MediaError::Invalid {
                what: "FLV TagType",
                value: u64::from(other),
                offset: 0,
            }),
        }
    }
}

/// Reads a big-endian integer of `N` bytes at `at`, if the buffer has them.
fn be<const N: usize>(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(N)?)?;
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Parses the FLV header and PreviousTagSize0 at the start of `buf`.
/// Returns (has audio, has video) from its TypeFlags; `consumed` is 13, so
/// the next byte starts the first tag.
pub fn parse_file_header(buf: &[u8]) -> Parse<(bool, bool)> {
    // Check each byte as soon as it is present, so garbage is refused early
    // rather than waited on.
    for (i, &want) in b"FLV".iter().enumerate() {
        match buf.get(i) {
            None => return Parse::Incomplete,
            Some(&b) if b != want => {
                return Parse::Invalid {
                    pos: i,
                    what: "FLV signature",
                }
            }
            Some(_) => {}
        }
    }
    match buf.get(3) {
        None => return Parse::Incomplete,
        Some(&1) => {}
        Some(_) => {
            return Parse::Invalid {
                pos: 3,
                what: "FLV version (1)",
            }
        }
    }
    let Some(&flags) = buf.get(4) else {
        return Parse::Incomplete;
    };
    let Some(data_offset) = be::<4>(buf, 5) else {
        return Parse::Incomplete;
    };
    // Version 1 headers are exactly 9 bytes (E.2, DataOffset).
    if data_offset as usize != FILE_HEADER_LEN {
        return Parse::Invalid {
            pos: 5,
            what: "FLV DataOffset (9)",
        };
    }
    let Some(previous) = be::<4>(buf, FILE_HEADER_LEN) else {
        return Parse::Incomplete;
    };
    if previous != 0 {
        return Parse::Invalid {
            pos: FILE_HEADER_LEN,
            what: "PreviousTagSize0 (0)",
        };
    }
    Parse::Complete {
        value: (flags & FLAG_AUDIO != 0, flags & FLAG_VIDEO != 0),
        consumed: FILE_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN,
    }
}

/// Parses one tag and the PreviousTagSize that follows it from the start of
/// `buf`. The body shares `buf`'s memory. `consumed` covers the trailer, so
/// the next byte starts the next tag.
///
/// Refused: an encrypted tag (Filter bit), a DataSize above
/// [`TAG_BODY_LEN_MAX`], a StreamID other than 0, and a PreviousTagSize that
/// is not 11 + DataSize (a sign the reader lost the tag boundaries).
pub fn parse_tag(buf: &Bytes) -> Parse<Tag> {
    let Some(&first) = buf.first() else {
        return Parse::Incomplete;
    };
    if first & TAG_FILTER != 0 {
        return Parse::Invalid {
            pos: 0,
            what: "FLV tag Filter (encrypted tags are not supported)",
        };
    }
    let Some(data_size) = be::<3>(buf, 1) else {
        return Parse::Incomplete;
    };
    let body_len = data_size as usize;
    if body_len > TAG_BODY_LEN_MAX {
        return Parse::Invalid {
            pos: 1,
            what: "FLV DataSize (above TAG_BODY_LEN_MAX)",
        };
    }
    let (Some(ts_low), Some(&ts_high), Some(stream_id)) =
        (be::<3>(buf, 4), buf.get(7), be::<3>(buf, 8))
    else {
        return Parse::Incomplete;
    };
    if stream_id != 0 {
        return Parse::Invalid {
            pos: 8,
            what: "FLV StreamID (0)",
        };
    }
    let body_end = TAG_HEADER_LEN + body_len;
    let Some(previous) = be::<4>(buf, body_end) else {
        return Parse::Incomplete;
    };
    if previous as usize != body_end {
        return Parse::Invalid {
            pos: body_end,
            what: "PreviousTagSize (11 + DataSize)",
        };
    }
    Parse::Complete {
        value: Tag {
            tag_type: first & TAG_TYPE_MASK,
            timestamp: (u32::from(ts_high) << 24) | ts_low,
            body: buf.slice(TAG_HEADER_LEN..body_end),
        },
        consumed: body_end + PREVIOUS_TAG_SIZE_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concat(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    #[test]
    fn file_header_bytes() {
        assert_eq!(
            file_header(true, true).as_ref(),
            &[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
        );
        assert_eq!(file_header(true, false)[4], 0x04);
        assert_eq!(file_header(false, true)[4], 0x01);
        assert_eq!(file_header(false, false)[4], 0x00);
    }

    #[test]
    fn tag_parts_bytes() {
        // Video, 0x123 bytes, timestamp 0x0A0B0C0D: the low 24 bits first,
        // then the high byte as TimestampExtended.
        let (h, t) = tag_parts(TAG_TYPE_VIDEO, 0x0A0B_0C0D, 0x123);
        assert_eq!(
            h.as_ref(),
            &[0x09, 0x00, 0x01, 0x23, 0x0B, 0x0C, 0x0D, 0x0A, 0, 0, 0]
        );
        assert_eq!(t.as_ref(), &[0, 0, 0x01, 0x2E]);
        let (h, t) = tag_parts(TAG_TYPE_SCRIPT, 0, 0);
        assert_eq!(h.as_ref(), &[18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.as_ref(), &[0, 0, 0, 11]);
        let (h, t) = tag_parts(TAG_TYPE_AUDIO, 0xFFFF_FFFF, TAG_BODY_LEN_MAX);
        assert_eq!(
            h.as_ref(),
            &[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]
        );
        assert_eq!(t.as_ref(), &[0x01, 0x00, 0x00, 0x0A]);
    }

    #[test]
    fn frame_tag_shares_the_payload() {
        let payload = Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10, 0x04]);
        let frame = Frame::parse_audio(40, payload.clone()).unwrap();
        let mut out = Vec::new();
        frame_tag(&frame, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].as_ptr(), payload.as_ptr(), "payload not copied");
        assert_eq!(
            concat(&out),
            [
                &[8, 0, 0, 5, 0, 0, 40, 0, 0, 0, 0][..],
                &payload[..],
                &[0, 0, 0, 16][..]
            ]
            .concat()
        );
        let meta = Bytes::from_static(b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09");
        let mut out = Vec::new();
        script_tag(&meta, &mut out);
        let bytes = Bytes::from(concat(&out));
        let Parse::Complete { value, consumed } = parse_tag(&bytes) else {
            panic!("script tag does not parse");
        };
        assert_eq!(consumed, bytes.len());
        assert_eq!(value.tag_type, TAG_TYPE_SCRIPT);
        assert_eq!(value.body, meta);
        assert_eq!(value.to_frame().unwrap().kind, FrameKind::Data);
    }

    /// A stream of a header and three tags, as a player would receive it.
    fn sample_stream() -> (Vec<u8>, Vec<Frame>) {
        let frames = vec![
            Frame::parse_video(
                0,
                Bytes::from_static(&[
                    0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67,
                    0x64, 0x00, 0x1f, 0x01, 0x00, 0x02, 0x68, 0xeb,
                ]),
            )
            .unwrap(),
            Frame::parse_audio(23, Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10])).unwrap(),
            Frame::parse_video(
                0x0100_0000 + 33,
                Bytes::from_static(&[0x17, 0x01, 0, 0, 0x50, 0, 0, 0, 2, 0x65, 0x88]),
            )
            .unwrap(),
        ];
        let mut parts = vec![file_header(true, true)];
        for f in &frames {
            frame_tag(f, &mut parts);
        }
        (concat(&parts), frames)
    }

    #[test]
    fn round_trip() {
        let (stream, frames) = sample_stream();
        let buf = Bytes::from(stream);
        let Parse::Complete { value, consumed } = parse_file_header(&buf) else {
            panic!("header");
        };
        assert_eq!(value, (true, true));
        let mut pos = consumed;
        for f in &frames {
            let Parse::Complete { value, consumed } = parse_tag(&buf.slice(pos..)) else {
                panic!("tag at {pos}");
            };
            assert_eq!(value.tag_type, tag_type_of(f.kind));
            assert_eq!(value.timestamp, f.timestamp);
            assert_eq!(value.body, f.payload);
            let back = value.to_frame().unwrap();
            assert_eq!(
                (back.kind, back.keyframe, back.sequence_header),
                (f.kind, f.keyframe, f.sequence_header)
            );
            pos += consumed;
        }
        assert_eq!(pos, buf.len());
        assert_eq!(parse_tag(&buf.slice(pos..)), Parse::Incomplete);
    }

    /// Every prefix of a valid stream is Incomplete, never Invalid, both for
    /// the header and for each tag.
    #[test]
    fn every_split_point_is_incomplete() {
        let (stream, _) = sample_stream();
        let header_len = FILE_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN;
        for end in 0..header_len {
            assert_eq!(
                parse_file_header(&stream[..end]),
                Parse::Incomplete,
                "{end}"
            );
        }
        let mut pos = header_len;
        while pos < stream.len() {
            let full = Bytes::copy_from_slice(&stream[pos..]);
            let Parse::Complete { consumed, .. } = parse_tag(&full) else {
                panic!("tag at {pos}");
            };
            for end in 0..consumed {
                assert_eq!(
                    parse_tag(&full.slice(..end)),
                    Parse::Incomplete,
                    "{pos}+{end}"
                );
            }
            pos += consumed;
        }
    }

    #[test]
    fn invalid_headers() {
        assert_eq!(
            parse_file_header(b"FLX"),
            Parse::Invalid {
                pos: 2,
                what: "FLV signature"
            }
        );
        assert_eq!(
            parse_file_header(b"GET / HTTP/1.1"),
            Parse::Invalid {
                pos: 0,
                what: "FLV signature"
            }
        );
        assert!(matches!(
            parse_file_header(&[b'F', b'L', b'V', 2]),
            Parse::Invalid { pos: 3, .. }
        ));
        assert!(matches!(
            parse_file_header(&[b'F', b'L', b'V', 1, 5, 0, 0, 0, 10]),
            Parse::Invalid { pos: 5, .. }
        ));
        assert!(matches!(
            parse_file_header(&[b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 1]),
            Parse::Invalid { pos: 9, .. }
        ));
    }

    #[test]
    fn invalid_tags() {
        let (h, t) = tag_parts(TAG_TYPE_AUDIO, 7, 2);
        let good = [&h[..], &[0xaf, 0x01], &t[..]].concat();
        assert!(matches!(
            parse_tag(&Bytes::from(good.clone())),
            Parse::Complete { consumed: 17, .. }
        ));
        // Encrypted.
        let mut bad = good.clone();
        bad[0] |= 0x20;
        assert!(matches!(
            parse_tag(&Bytes::from(bad)),
            Parse::Invalid { pos: 0, .. }
        ));
        // StreamID not 0.
        let mut bad = good.clone();
        bad[10] = 1;
        assert!(matches!(
            parse_tag(&Bytes::from(bad)),
            Parse::Invalid { pos: 8, .. }
        ));
        // PreviousTagSize does not match.
        let mut bad = good.clone();
        bad[16] = 14;
        assert_eq!(
            parse_tag(&Bytes::from(bad)),
            Parse::Invalid {
                pos: 13,
                what: "PreviousTagSize (11 + DataSize)"
            }
        );
        // An unknown tag type is kept, not refused; to_frame refuses it.
        let (h, t) = tag_parts(15, 0, 0);
        let Parse::Complete { value, .. } = parse_tag(&Bytes::from([&h[..], &t[..]].concat()))
        else {
            panic!("unknown type");
        };
        assert_eq!(value.tag_type, 15);
        assert!(value.to_frame().is_err());
    }

    /// A largest-size announcement waits for its bytes; it is not an error.
    #[test]
    fn large_announced_body_is_incomplete() {
        let (h, _) = tag_parts(TAG_TYPE_VIDEO, 0, TAG_BODY_LEN_MAX);
        assert_eq!(parse_tag(&h), Parse::Incomplete);
    }
}
