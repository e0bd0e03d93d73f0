//! AMF0 decoding (values, commands, data messages). A decoded sequence is
//! encoded again; decoding that must give back the same encoding (the
//! encoder's output is a fixed point), so decoding loses nothing it keeps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rtmp::amf::{
    decode_amf0, decode_amf0_one, encode_amf0, parse_command, parse_data, AmfLimits,
};

fn encode_all(values: &[proto::rtmp::amf::Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode_amf0(v, &mut out);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let limits = AmfLimits::default();
    let _ = parse_command(data, false, &limits);
    let _ = parse_data(data, false, &limits);
    let _ = decode_amf0_one(data, 0, &limits);
    if let Ok(values) = decode_amf0(data, &limits) {
        let once = encode_all(&values);
        let again = decode_amf0(&once, &limits).expect("our own encoding decodes");
        assert_eq!(encode_all(&again), once, "re-encoding is stable");
    }
});
