//! The server's RTMP handshake (plain and digest C0C1, then C2), fed in
//! two pieces at a split point taken from the input: whatever it accepts,
//! it must consume no more than it was given and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rtmp::handshake::ServerHandshake;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let split = usize::from(split) * input.len() / 256;
    let mut hs = ServerHandshake::new(7, 0);
    let mut buf = Vec::new();
    for piece in [&input[..split], &input[split..]] {
        buf.extend_from_slice(piece);
        match hs.handle_input(&buf) {
            Ok(used) => {
                assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
                buf.drain(..used);
            }
            Err(_) => return,
        }
        while hs.poll_transmit().is_some() {}
        if hs.is_done() {
            let _ = hs.kind();
            return;
        }
    }
});
