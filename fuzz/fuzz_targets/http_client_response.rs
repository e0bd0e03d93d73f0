//! The HTTP client's response head parser and its `BodyDecoder`
//! (Content-Length, chunked, until close), differentially: the body decoded
//! from one piece and from two pieces split at a point taken from the input
//! must give the same body bytes, the same end and the same error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::http::client::{parse_response_head, BodyDecoder, BodyError, Framing, Parse};

/// Body bytes, whether the body ended (and where), and the error if any.
type Outcome = (Vec<u8>, Option<usize>, Option<BodyError>);

fn decode(framing: Framing, pieces: &[&[u8]]) -> Outcome {
    let mut dec = BodyDecoder::new(framing);
    let mut body = Vec::new();
    let mut fed = 0;
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() && !dec.is_done() {
            match dec.decode(&piece[at..]) {
                Ok((used, data)) => {
                    assert!(used <= piece.len() - at);
                    body.extend_from_slice(data);
                    if used == 0 {
                        break;
                    }
                    at += used;
                }
                Err(e) => return (body, None, Some(e)),
            }
        }
        if dec.is_done() {
            return (body, Some(fed + at), None);
        }
        fed += piece.len();
    }
    match dec.close() {
        Ok(()) => (body, None, None),
        Err(e) => (body, None, Some(e)),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sel, input) = data.split_at(2);
    let head_request = sel[0] & 1 != 0;
    let (framing, rest) = match parse_response_head(input, head_request) {
        Parse::Complete { value, consumed } => {
            assert!(consumed <= input.len());
            let _ = value.status_line();
            (value.framing, &input[consumed..])
        }
        Parse::Incomplete => return,
        // A malformed head: decode the bytes as a chunked body anyway.
        Parse::Invalid { .. } => (Framing::Chunked, input),
    };
    let split = usize::from(sel[1]) * rest.len() / 255;
    let whole = decode(framing, &[rest]);
    let halves = decode(framing, &[&rest[..split], &rest[split..]]);
    assert_eq!(whole, halves, "split at {split}");
});
