//! The HTTP/1 request head parser under small and default limits, and the
//! router on the path it returns. A complete head consumes no more than
//! the input, and a prefix of a complete head is never Invalid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::http::{parse_request, route, HttpLimits, Parse};

fuzz_target!(|data: &[u8]| {
    for limits in [
        HttpLimits::default(),
        HttpLimits {
            header_bytes_max: 256,
            headers_max: 4,
        },
    ] {
        match parse_request(data, &limits) {
            Parse::Complete { request, consumed } => {
                assert!(consumed <= data.len());
                let _ = route(&request.path);
                let _ = request.param("vhost");
                let _ = request.flag("only-audio");
                // Every prefix of the head is Incomplete.
                let cut = consumed / 2;
                assert!(
                    matches!(parse_request(&data[..cut], &limits), Parse::Incomplete),
                    "a prefix of a complete head"
                );
            }
            Parse::Incomplete | Parse::Invalid { .. } => {}
        }
    }
});
