//! The server session after a valid handshake: a real client's C0C1 and C2
//! come first, then the input is fed in pieces (their size taken from the
//! first byte). Publish and play requests are accepted, so the fuzzer
//! reaches the publishing and playing states; refusals are covered by
//! the unit tests.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rtmp::amf::AmfLimits;
use proto::rtmp::chunk::ChunkLimits;
use proto::rtmp::conn::Output;
use proto::rtmp::handshake::ClientHandshake;
use proto::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

fn config() -> SessionConfig {
    SessionConfig {
        chunk: ChunkLimits {
            chunk_size_max: 4096,
            message_len_max: 64 * 1024,
            chunk_streams_max: 8,
            partial_bytes_max: 128 * 1024,
        },
        amf: AmfLimits::default(),
        chunk_size_out: 4096,
        window_ack_size: 2_500_000,
    }
}

/// Drains the session; returns the bytes it sent. Decisions are accepted.
fn drain(session: &mut ServerSession) -> Vec<u8> {
    let mut sent = Vec::new();
    let mut accept_publish = false;
    let mut accept_play = false;
    while let Some(out) = session.poll_output() {
        match out {
            Output::Transmit(b) => sent.extend_from_slice(&b),
            Output::Event(SessionEvent::PublishRequested(_)) => accept_publish = true,
            Output::Event(SessionEvent::PlayRequested(_)) => accept_play = true,
            Output::Event(_) => {}
        }
    }
    if accept_publish {
        session.accept_publish();
    }
    if accept_play {
        session.accept_play();
    }
    if accept_publish || accept_play {
        sent.extend(drain(session));
    }
    sent
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, input)) = data.split_first() else {
        return;
    };
    let mut session = ServerSession::new(config(), 1, 0);
    let mut client = ClientHandshake::new(2, 0);
    let c0c1 = client.poll_transmit().expect("C0C1");
    session.handle_input(&c0c1).expect("a valid C0C1");
    let s012 = drain(&mut session);
    let used = client.handle_input(&s012).expect("our own S0S1S2");
    assert_eq!(used, s012.len());
    let c2 = client.poll_transmit().expect("C2");
    session.handle_input(&c2).expect("a valid C2");
    assert!(session.handshake_done());
    drain(&mut session);

    let piece = 1usize << (shape & 0x0f).min(12);
    for bytes in input.chunks(piece) {
        if session.handle_input(bytes).is_err() {
            return;
        }
        drain(&mut session);
    }
    if shape & 0x80 != 0 {
        session.end_play("fuzz");
        drain(&mut session);
    }
});
