//! AMF3 decoding: one value (with its reference tables), and commands and
//! data messages of types 17 and 15 (a format selector byte, then AMF0
//! values that may switch to AMF3). Re-encoding a decoded value is stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rtmp::amf::{decode_amf3_one, encode_amf3, parse_command, parse_data, AmfLimits};

fuzz_target!(|data: &[u8]| {
    let limits = AmfLimits::default();
    let _ = parse_command(data, true, &limits);
    let _ = parse_data(data, true, &limits);
    if let Ok((value, end)) = decode_amf3_one(data, 0, &limits) {
        assert!(end <= data.len());
        let mut once = Vec::new();
        encode_amf3(&value, &mut once);
        let (again, used) = decode_amf3_one(&once, 0, &limits).expect("our own encoding decodes");
        assert_eq!(used, once.len());
        let mut twice = Vec::new();
        encode_amf3(&again, &mut twice);
        assert_eq!(twice, once, "re-encoding is stable");
    }
});
