//! The FLV demuxer (HTTP-FLV as a player or an edge reads it): the file
//! header, then tags, each classified as a `Frame`.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto::flv::{parse_file_header, parse_tag, Parse};

fuzz_target!(|data: &[u8]| {
    let mut buf = Bytes::copy_from_slice(data);
    match parse_file_header(&buf) {
        Parse::Complete { consumed, .. } => {
            assert!(consumed <= buf.len());
            let _ = buf.split_to(consumed);
        }
        // Tags alone, as after a header read in an earlier piece.
        Parse::Incomplete | Parse::Invalid { .. } => {}
    }
    loop {
        match parse_tag(&buf) {
            Parse::Complete { value, consumed } => {
                assert!(consumed > 0 && consumed <= buf.len());
                if let Ok(frame) = value.to_frame() {
                    let _ = frame.codec_data();
                }
                let _ = buf.split_to(consumed);
            }
            Parse::Incomplete => return,
            Parse::Invalid { pos, .. } => {
                assert!(pos <= buf.len());
                return;
            }
        }
    }
});
