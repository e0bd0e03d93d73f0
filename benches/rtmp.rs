//! RTMP hot paths: chunk parsing of what a publisher sends, chunking (the
//! session's header-compressing encoder and the fmt 0 shared serialisation
//! the fan-out does once per frame), and AMF0 decoding of `connect` and
//! `onMetaData`.
//!
//! Run with `cargo bench --bench rtmp`.

mod common;

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::media::{Frame, FrameKind};
use proto::rtmp::amf::{
    encode_command, encode_data, parse_command, parse_data, Amf0Value, AmfLimits, Command,
};
use proto::rtmp::chunk::{ChunkDecoder, ChunkEncoder, ChunkLimits};
use proto::rtmp::message::{msg_type, write_control, ControlMessage};
use proto::rtmp::wire::{media_message, CSID_AUDIO, CSID_VIDEO};

/// Bytes handed to the decoder per read, as the server's read buffer
/// (`server::conn::READ_BUF_LEN`).
const READ_LEN: usize = 16 * 1024;
/// The message stream id a publisher's media arrives on.
const STREAM_ID: u32 = 1;
/// Publishers: OBS and ffmpeg send with 4096; 128 is the protocol's
/// initial size.
const CHUNK_SIZES_IN: [u32; 2] = [4096, 128];
/// Fan-out: the server's default `rtmp.chunk_size_out` (60000, one chunk
/// for most frames), then the publishers' sizes for comparison.
const CHUNK_SIZES_OUT: [u32; 3] = [60_000, 4096, 128];

fn csid_and_type(frame: &Frame) -> (u32, u8) {
    match frame.kind {
        FrameKind::Audio => (CSID_AUDIO, msg_type::AUDIO),
        _ => (CSID_VIDEO, msg_type::VIDEO),
    }
}

/// `frames` chunked as a publisher sends them: a Set Chunk Size (unless
/// 128), then each message with compressed headers.
fn publisher_bytes(frames: &[Frame], chunk_size: u32) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut out = BytesMut::new();
    if chunk_size != encoder.chunk_size() {
        write_control(
            &mut encoder,
            &ControlMessage::SetChunkSize(chunk_size),
            &mut out,
        )
        .expect("Set Chunk Size fits");
    }
    encode_frames(&mut encoder, frames, &mut out);
    out.to_vec()
}

/// Appends `frames` as media messages through `encoder`.
fn encode_frames(encoder: &mut ChunkEncoder, frames: &[Frame], out: &mut BytesMut) {
    for frame in frames {
        let (csid, type_id) = csid_and_type(frame);
        encoder
            .write(
                csid,
                frame.timestamp,
                type_id,
                STREAM_ID,
                &frame.payload,
                out,
            )
            .expect("synthetic frames fit the 24-bit length field");
    }
}

/// Decodes `input` in server-sized reads; returns the number of messages.
fn decode_all(input: &[u8]) -> u64 {
    let mut decoder = ChunkDecoder::new(ChunkLimits::default());
    let mut buf = BytesMut::with_capacity(2 * READ_LEN);
    let mut messages = 0;
    for read in input.chunks(READ_LEN) {
        buf.extend_from_slice(read);
        while let Some(message) = decoder.decode(&mut buf).expect("valid chunk stream") {
            black_box(&message);
            messages += 1;
        }
    }
    assert!(buf.is_empty(), "input ends on a message boundary");
    messages
}

fn chunk_parse(c: &mut Criterion) {
    let frames = common::gops(1);
    let mut group = c.benchmark_group("rtmp/chunk_parse");
    for chunk_size in CHUNK_SIZES_IN {
        let input = publisher_bytes(&frames, chunk_size);
        let messages = decode_all(&input);
        group.throughput(Throughput::ElementsAndBytes {
            elements: messages,
            bytes: input.len() as u64,
        });
        group.bench_function(format!("gop_2.5mbps_chunk{chunk_size}"), |b| {
            b.iter(|| decode_all(black_box(&input)))
        });
    }
    group.finish();
}

fn chunk_encode(c: &mut Criterion) {
    let frames = common::gops(1);
    let payload = common::payload_bytes(&frames);
    let throughput = Throughput::ElementsAndBytes {
        elements: frames.len() as u64,
        bytes: payload,
    };
    // The session's encoder, as a publisher (or the load generator) uses
    // it: one copy of every payload into `out`, headers compressed.
    let mut group = c.benchmark_group("rtmp/chunk_encode");
    group.throughput(throughput.clone());
    let mut out = BytesMut::with_capacity(2 * payload as usize);
    for chunk_size in CHUNK_SIZES_IN {
        group.bench_function(format!("encoder_gop_chunk{chunk_size}"), |b| {
            b.iter(|| {
                out.clear();
                let mut encoder = ChunkEncoder::new();
                encoder.set_chunk_size(chunk_size);
                encode_frames(&mut encoder, black_box(&frames), &mut out);
                out.len()
            })
        });
    }
    group.finish();
    // The fan-out's fmt 0 serialisation: a header `Bytes` plus payload
    // slices, once per frame per shard, shared by every player.
    let mut group = c.benchmark_group("rtmp/fanout_chunk");
    group.throughput(throughput);
    let mut parts: Vec<Bytes> = Vec::new();
    for chunk_size in CHUNK_SIZES_OUT {
        group.bench_function(format!("shared_fmt0_gop_chunk{chunk_size}"), |b| {
            b.iter(|| {
                parts.clear();
                for frame in black_box(&frames) {
                    media_message(frame, STREAM_ID, chunk_size, &mut parts)
                        .expect("synthetic frames fit the 24-bit length field");
                }
                parts.len()
            })
        });
    }
    group.finish();
}

fn string(s: &str) -> Amf0Value {
    Amf0Value::String(s.to_owned())
}

fn props(entries: &[(&str, Amf0Value)]) -> Vec<(String, Amf0Value)> {
    entries
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect()
}

/// The `connect` OBS 30 sends to publish (enhanced RTMP `fourCcList`).
fn obs_connect() -> Vec<u8> {
    let fourccs = ["av01", "vp09", "hvc1"].map(string).to_vec();
    let command = Command {
        name: "connect".into(),
        transaction_id: 1.0,
        object: Amf0Value::Object(props(&[
            ("app", string("live")),
            ("type", string("nonprivate")),
            ("flashVer", string("FMLE/3.0 (compatible; FMSc/1.0)")),
            ("swfUrl", string("rtmp://ingest.example.com/live")),
            ("tcUrl", string("rtmp://ingest.example.com/live")),
            ("fourCcList", Amf0Value::StrictArray(fourccs)),
        ])),
        args: vec![],
    };
    let mut body = Vec::new();
    encode_command(&command, &mut body);
    body
}

/// The `@setDataFrame onMetaData` OBS 30 sends for 1080p30 H.264 + AAC.
fn obs_metadata() -> Vec<u8> {
    let n = Amf0Value::Number;
    let flag = Amf0Value::Boolean;
    let values = [
        string("@setDataFrame"),
        string("onMetaData"),
        Amf0Value::EcmaArray(props(&[
            ("duration", n(0.0)),
            ("fileSize", n(0.0)),
            ("width", n(1920.0)),
            ("height", n(1080.0)),
            ("videocodecid", n(7.0)),
            ("videodatarate", n(2500.0)),
            ("framerate", n(30.0)),
            ("audiocodecid", n(10.0)),
            ("audiodatarate", n(160.0)),
            ("audiosamplerate", n(48000.0)),
            ("audiosamplesize", n(16.0)),
            ("audiochannels", n(2.0)),
            ("stereo", flag(true)),
            ("2.1", flag(false)),
            ("3.1", flag(false)),
            ("4.0", flag(false)),
            ("4.1", flag(false)),
            ("5.1", flag(false)),
            ("7.1", flag(false)),
            (
                "encoder",
                string("obs-output module (libobs version 30.2.3)"),
            ),
        ])),
    ];
    let mut body = Vec::new();
    encode_data(&values, &mut body);
    body
}

fn amf0_decode(c: &mut Criterion) {
    let limits = AmfLimits::default();
    let connect = obs_connect();
    let metadata = obs_metadata();
    let mut group = c.benchmark_group("rtmp/amf0_decode");
    group.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: connect.len() as u64,
    });
    group.bench_function("connect_obs", |b| {
        b.iter(|| parse_command(black_box(&connect), false, &limits).expect("connect"))
    });
    group.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: metadata.len() as u64,
    });
    group.bench_function("onmetadata_obs", |b| {
        b.iter(|| parse_data(black_box(&metadata), false, &limits).expect("onMetaData"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = chunk_parse, chunk_encode, amf0_decode
}
criterion_main!(benches);
