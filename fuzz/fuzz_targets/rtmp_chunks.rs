//! The chunk stream decoder, differentially: the input decoded in one
//! piece and the same input split in two at a point taken from its first
//! two bytes must give the same messages, the same error (if any) and the
//! same bytes left over.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use proto::rtmp::chunk::{ChunkDecoder, ChunkError, ChunkLimits, Message};

/// Small limits, so that the bounds themselves are reached by the fuzzer.
fn limits() -> ChunkLimits {
    ChunkLimits {
        chunk_size_max: 4096,
        message_len_max: 64 * 1024,
        chunk_streams_max: 8,
        partial_bytes_max: 128 * 1024,
    }
}

type Outcome = (Vec<Message>, Option<ChunkError>, usize);

fn decode(pieces: &[&[u8]], limits: ChunkLimits) -> Outcome {
    let mut dec = ChunkDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut msgs = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => return (msgs, Some(e), 0),
            }
        }
    }
    (msgs, None, buf.len())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (head, input) = data.split_at(2);
    let split = usize::from(u16::from_be_bytes([head[0], head[1]])) % (input.len() + 1);
    for limits in [limits(), ChunkLimits::default()] {
        let whole = decode(&[input], limits);
        let halves = decode(&[&input[..split], &input[split..]], limits);
        assert_eq!(whole, halves, "split at {split}");
    }
});
