//! Writes the seed corpora, `fuzz/seeds/<target>/`, from the project's own
//! test fixtures (the byte-vector constants of proto's unit tests, read
//! from their source) and from messages proto's encoders produce. Every
//! seed starts with the selector bytes its target reads first.
//!
//! Run from `fuzz/`: `cargo run --release --example seeds`; the output is
//! committed, so CI does not run this.

use std::fs;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use proto::flv;
use proto::media::Frame;
use proto::rtmp::amf::{encode_amf0, encode_amf3, encode_command, Amf0Value, Amf3Value, Command};
use proto::rtmp::chunk::ChunkEncoder;
use proto::rtmp::handshake::{ClientHandshake, ClientMode, DigestScheme, ServerHandshake};
use proto::rtmp::message::{msg_type, write_control, ControlMessage};
use proto::ts::TsMuxer;

const AMF_RS: &str = include_str!("../../proto/src/rtmp/amf.rs");
const CHUNK_RS: &str = include_str!("../../proto/src/rtmp/chunk.rs");
const HANDSHAKE_RS: &str = include_str!("../../proto/src/rtmp/handshake.rs");
const AVC_RS: &str = include_str!("../../proto/src/media/avc.rs");
const FRAME_RS: &str = include_str!("../../proto/src/media/frame.rs");

/// The bytes of test constant `name` in `source`: either hex digits in
/// string literals (`"0c 00 01"`, or `concat!` of several) or a byte array
/// of `0x..` literals.
fn fixture(source: &str, name: &str) -> Vec<u8> {
    let start = source
        .find(&format!("const {name}:"))
        .unwrap_or_else(|| panic!("fixture {name} not found"));
    let body = &source[start..];
    let body = &body[body.find('=').unwrap() + 1..body.find(';').unwrap()];
    if body.contains('"') {
        let digits: String = body
            .split('"')
            .skip(1)
            .step_by(2)
            .flat_map(|lit| lit.chars().filter(|c| c.is_ascii_hexdigit()))
            .collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    } else {
        body.split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
            .filter_map(|t| t.strip_prefix("0x"))
            .map(|t| u8::from_str_radix(t, 16).unwrap())
            .collect()
    }
}

struct Seeds {
    root: &'static Path,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, parts: &[&[u8]]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), parts.concat()).unwrap();
    }
}

fn command(name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut body = Vec::new();
    encode_command(
        &Command {
            name: name.into(),
            transaction_id: txn,
            object,
            args,
        },
        &mut body,
    );
    body
}

fn s(text: &str) -> Amf0Value {
    Amf0Value::String(text.into())
}

fn connect(app: &str) -> Vec<u8> {
    command(
        "connect",
        1.0,
        Amf0Value::Object(vec![
            ("app".into(), s(app)),
            ("type".into(), s("nonprivate")),
            ("tcUrl".into(), s(&format!("rtmp://127.0.0.1:1935/{app}"))),
        ]),
        vec![],
    )
}

fn avc_seq() -> Vec<u8> {
    fixture(FRAME_RS, "LEGACY_AVC_SEQ")
}

fn avc_frame(key: bool, len: usize) -> Vec<u8> {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0];
    body.extend_from_slice(&(len as u32 + 1).to_be_bytes());
    body.push(if key { 0x65 } else { 0x41 });
    body.resize(9 + 1 + len, 0xab);
    body
}

const AAC_SEQ: &[u8] = &[0xaf, 0x00, 0x12, 0x10];
const AAC_RAW: &[u8] = &[0xaf, 0x01, 0x21, 0x10, 0x04, 0x60];

/// The hvcC of proto's TS tests: 4-byte lengths, one VPS, SPS and PPS.
fn hevc_record() -> Vec<u8> {
    let mut r = vec![
        1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc,
    ];
    r.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    r.extend_from_slice(&[0xa0, 0, 1, 0, 3, 0x40, 0x01, 0x0c]);
    r.extend_from_slice(&[0xa1, 0, 1, 0, 3, 0x42, 0x01, 0x01]);
    r.extend_from_slice(&[0xa2, 0, 1, 0, 3, 0x44, 0x01, 0xc1]);
    r
}

/// A publisher's chunk stream after the handshake, as OBS and ffmpeg
/// send it: connect, releaseStream, FCPublish, createStream, publish,
/// Set Chunk Size, metadata, then media.
fn publisher_stream() -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut out = BytesMut::new();
    let cmd = |enc: &mut ChunkEncoder, out: &mut BytesMut, body: &[u8], sid: u32| {
        enc.write(3, 0, msg_type::COMMAND_AMF0, sid, body, out)
            .unwrap();
    };
    cmd(&mut enc, &mut out, &connect("live"), 0);
    cmd(
        &mut enc,
        &mut out,
        &command("releaseStream", 2.0, Amf0Value::Null, vec![s("test")]),
        0,
    );
    cmd(
        &mut enc,
        &mut out,
        &command("FCPublish", 3.0, Amf0Value::Null, vec![s("test")]),
        0,
    );
    cmd(
        &mut enc,
        &mut out,
        &command("createStream", 4.0, Amf0Value::Null, vec![]),
        0,
    );
    cmd(
        &mut enc,
        &mut out,
        &command(
            "publish",
            5.0,
            Amf0Value::Null,
            vec![s("test?k=v"), s("live")],
        ),
        1,
    );
    write_control(&mut enc, &ControlMessage::SetChunkSize(4096), &mut out).unwrap();
    enc.set_chunk_size(4096);
    let meta = fixture(AMF_RS, "OBS_SET_DATA_FRAME");
    enc.write(4, 0, msg_type::DATA_AMF0, 1, &meta, &mut out)
        .unwrap();
    enc.write(6, 0, msg_type::VIDEO, 1, &avc_seq(), &mut out)
        .unwrap();
    enc.write(4, 0, msg_type::AUDIO, 1, AAC_SEQ, &mut out)
        .unwrap();
    enc.write(6, 0, msg_type::VIDEO, 1, &avc_frame(true, 9000), &mut out)
        .unwrap();
    enc.write(4, 23, msg_type::AUDIO, 1, AAC_RAW, &mut out)
        .unwrap();
    enc.write(6, 33, msg_type::VIDEO, 1, &avc_frame(false, 100), &mut out)
        .unwrap();
    // An aggregate of one audio message (FLV tag + back pointer).
    let mut agg = vec![
        0x08, 0x00, 0x00, 0x06, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00,
    ];
    agg.extend_from_slice(&AAC_RAW[..]);
    agg.extend_from_slice(&17u32.to_be_bytes());
    enc.write(4, 100, msg_type::AGGREGATE, 1, &agg, &mut out)
        .unwrap();
    // An extended timestamp, and chunk stream ids of the 2- and 3-byte forms.
    enc.write(
        6,
        0x0100_0000,
        msg_type::VIDEO,
        1,
        &avc_frame(false, 50),
        &mut out,
    )
    .unwrap();
    enc.write(70, 0x0100_0021, msg_type::AUDIO, 1, AAC_RAW, &mut out)
        .unwrap();
    enc.write(400, 0x0100_0042, msg_type::AUDIO, 1, AAC_RAW, &mut out)
        .unwrap();
    write_control(&mut enc, &ControlMessage::Abort(6), &mut out).unwrap();
    cmd(
        &mut enc,
        &mut out,
        &command("FCUnpublish", 6.0, Amf0Value::Null, vec![s("test")]),
        1,
    );
    cmd(
        &mut enc,
        &mut out,
        &command(
            "deleteStream",
            7.0,
            Amf0Value::Null,
            vec![Amf0Value::Number(1.0)],
        ),
        0,
    );
    out.to_vec()
}

/// A player's chunk stream after the handshake.
fn player_stream() -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut out = BytesMut::new();
    for (body, sid) in [
        (connect("live?vhost=a.example.com"), 0),
        (command("createStream", 2.0, Amf0Value::Null, vec![]), 0),
        (
            command(
                "play",
                3.0,
                Amf0Value::Null,
                vec![s("test?only-audio=1"), Amf0Value::Number(-2.0)],
            ),
            1,
        ),
        (
            command(
                "receiveVideo",
                0.0,
                Amf0Value::Null,
                vec![Amf0Value::Boolean(false)],
            ),
            1,
        ),
        (command("closeStream", 0.0, Amf0Value::Null, vec![]), 1),
    ] {
        enc.write(3, 0, msg_type::COMMAND_AMF0, sid, &body, &mut out)
            .unwrap();
    }
    write_control(
        &mut enc,
        &ControlMessage::WindowAckSize(2_500_000),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

fn amf0_values() -> Vec<Amf0Value> {
    vec![
        Amf0Value::Number(1.5),
        Amf0Value::Boolean(true),
        s("héllo"),
        Amf0Value::Object(vec![
            ("a".into(), Amf0Value::Null),
            ("b".into(), Amf0Value::Undefined),
        ]),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))]),
        Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), s("x")]),
        Amf0Value::Date {
            millis: 1.7e12,
            tz_min: 0,
        },
        Amf0Value::LongString("long".into()),
        Amf0Value::XmlDocument("<a/>".into()),
        Amf0Value::TypedObject {
            class: "C".into(),
            props: vec![("p".into(), Amf0Value::Boolean(false))],
        },
        Amf0Value::Unsupported,
        Amf0Value::Amf3(amf3_values().swap_remove(9)),
    ]
}

fn amf3_values() -> Vec<Amf3Value> {
    let obj = Amf3Value::Object {
        class: String::new(),
        props: vec![(
            "code".into(),
            Amf3Value::String("NetStream.Play.Start".into()),
        )],
    };
    vec![
        Amf3Value::Undefined,
        Amf3Value::Null,
        Amf3Value::False,
        Amf3Value::True,
        Amf3Value::Integer(-268_435_456),
        Amf3Value::Double(0.25),
        Amf3Value::String("abc".into()),
        Amf3Value::XmlDocument("<a/>".into()),
        Amf3Value::Date(1.7e12),
        Amf3Value::Array {
            assoc: vec![("k".into(), Amf3Value::Integer(1))],
            dense: vec![
                Amf3Value::String("abc".into()),
                Amf3Value::String("abc".into()),
            ],
        },
        Amf3Value::Xml("<b/>".into()),
        Amf3Value::ByteArray(vec![1, 2, 3]),
        Amf3Value::Array {
            assoc: vec![],
            dense: vec![obj.clone(), obj],
        },
    ]
}

fn main() {
    let seeds = Seeds {
        root: Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/seeds")),
    };
    let _ = fs::remove_dir_all(seeds.root);

    // rtmp_handshake: [split] C0C1 C2. The server in the target is
    // ServerHandshake::new(7, 0), so its S1 is known here.
    let ffmpeg_c0c1 = fixture(HANDSHAKE_RS, "FFMPEG_5_1_C0C1");
    let mut server = ServerHandshake::new(7, 0);
    server.handle_input(&ffmpeg_c0c1).unwrap();
    let s012 = server.poll_transmit().unwrap();
    seeds.put(
        "rtmp_handshake",
        "ffmpeg_5_1_echo",
        &[&[0x80], &ffmpeg_c0c1, &s012[1..1537]],
    );
    for (name, mode) in [
        ("plain", ClientMode::Plain),
        ("digest_0", ClientMode::Digest(DigestScheme::Scheme0)),
        ("digest_1", ClientMode::Digest(DigestScheme::Scheme1)),
    ] {
        let mut client = ClientHandshake::with_mode(3, 0, mode);
        let c0c1 = client.poll_transmit().unwrap();
        let mut server = ServerHandshake::new(7, 0);
        server.handle_input(&c0c1).unwrap();
        let s012 = server.poll_transmit().unwrap();
        client.handle_input(&s012).unwrap();
        let c2 = client.poll_transmit().unwrap();
        seeds.put("rtmp_handshake", name, &[&[0x40], &c0c1, &c2]);
    }

    // rtmp_chunks: [split u16] chunk stream.
    let ffmpeg_publish = fixture(CHUNK_RS, "FFMPEG_5_1_PUBLISH");
    seeds.put(
        "rtmp_chunks",
        "ffmpeg_5_1_publish",
        &[&[0x01, 0x00], &ffmpeg_publish],
    );
    seeds.put(
        "rtmp_chunks",
        "publisher",
        &[&[0x03, 0x21], &publisher_stream()],
    );
    seeds.put("rtmp_chunks", "player", &[&[0x00, 0x40], &player_stream()]);

    // rtmp_session: [piece size, end_play] chunk stream after the handshake.
    seeds.put("rtmp_session", "publisher", &[&[0x0c], &publisher_stream()]);
    seeds.put(
        "rtmp_session",
        "publisher_bytewise",
        &[&[0x00], &publisher_stream()],
    );
    seeds.put("rtmp_session", "player", &[&[0x87], &player_stream()]);

    // amf0 and amf3 (the latter's command bodies start with the AMF3
    // format selector byte, 0).
    let ffmpeg_connect = fixture(AMF_RS, "FFMPEG_CONNECT");
    let obs_meta = fixture(AMF_RS, "OBS_SET_DATA_FRAME");
    seeds.put("amf0", "ffmpeg_connect", &[&ffmpeg_connect]);
    seeds.put("amf0", "obs_set_data_frame", &[&obs_meta]);
    let mut all = Vec::new();
    for v in amf0_values() {
        encode_amf0(&v, &mut all);
    }
    seeds.put("amf0", "every_type", &[&all]);
    seeds.put("amf3", "ffmpeg_connect_type17", &[&[0x00], &ffmpeg_connect]);
    for (i, v) in amf3_values().into_iter().enumerate() {
        let mut one = Vec::new();
        encode_amf3(&v, &mut one);
        seeds.put("amf3", &format!("value_{i:02}"), &[&one]);
    }
    let mut switched = command("onStatus", 0.0, Amf0Value::Null, vec![]);
    encode_amf0(
        &Amf0Value::Amf3(amf3_values().swap_remove(12)),
        &mut switched,
    );
    seeds.put("amf3", "onstatus_avmplus", &[&[0x00], &switched]);

    // media_frame: [0: video, 1: audio] body.
    let hevc_seq = [&[0x1c, 0x00, 0, 0, 0][..], &hevc_record()].concat();
    let enhanced: [&[u8]; 5] = [
        &[0x90, b'h', b'v', b'c', b'1', 0x01, 0x01, 0x60],
        &[
            0x91, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xec, 0, 0, 0, 1, 0x26,
        ],
        &[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 1, 0x26],
        &[0x90, b'a', b'v', b'0', b'1', 0x81, 0x08, 0x0c, 0x00],
        &[0x95, b'a', b'v', b'0', b'1', 0x80],
    ];
    seeds.put("media_frame", "avc_seq", &[&[0], &avc_seq()]);
    seeds.put("media_frame", "avc_key", &[&[0], &avc_frame(true, 20)]);
    seeds.put("media_frame", "hevc_legacy_seq", &[&[0], &hevc_seq]);
    for (i, body) in enhanced.iter().enumerate() {
        seeds.put("media_frame", &format!("enhanced_{i}"), &[&[0], body]);
    }
    seeds.put("media_frame", "aac_seq", &[&[1], AAC_SEQ]);
    seeds.put("media_frame", "aac_raw", &[&[1], AAC_RAW]);
    seeds.put("media_frame", "mp3", &[&[1], &[0x2f, 0xff, 0xfb, 0x90]]);
    seeds.put(
        "media_frame",
        "enhanced_audio_opus",
        &[&[1], &[0x90, b'O', b'p', b'u', b's', 1, 2]],
    );

    // flv_tags: an HTTP-FLV body as the server writes it.
    let frames = [
        Frame::parse_video(0, Bytes::from(avc_seq())).unwrap(),
        Frame::parse_audio(0, Bytes::from_static(AAC_SEQ)).unwrap(),
        Frame::parse_video(0, Bytes::from(avc_frame(true, 300))).unwrap(),
        Frame::parse_audio(23, Bytes::from_static(AAC_RAW)).unwrap(),
        Frame::parse_video(0x0100_0000, Bytes::from(avc_frame(false, 30))).unwrap(),
    ];
    let mut parts = vec![flv::file_header(true, true)];
    flv::script_tag(&Bytes::from(obs_meta.clone()), &mut parts);
    for f in &frames {
        flv::frame_tag(f, &mut parts);
    }
    seeds.put("flv_tags", "http_flv_body", &[&parts.concat()]);

    // codec_config: [selector] record.
    let avc_record = &avc_seq()[5..];
    seeds.put("codec_config", "avc_record", &[&[0], avc_record]);
    for name in [
        "SPS_720P_HIGH",
        "SPS_1080P_HIGH",
        "SPS_360P_BASELINE",
        "SPS_576I_HIGH",
        "SPS_444_ODD",
        "SPS_422_ODD",
    ] {
        seeds.put(
            "codec_config",
            &name.to_lowercase(),
            &[&[1], &fixture(AVC_RS, name)],
        );
    }
    seeds.put(
        "codec_config",
        "aac_lc_44100_stereo",
        &[&[2], &AAC_SEQ[2..]],
    );
    seeds.put(
        "codec_config",
        "aac_he_v2",
        &[&[2], &[0xeb, 0x09, 0x88, 0x00]],
    );
    seeds.put("codec_config", "hevc_record_muxed", &[&[3], &hevc_record()]);
    seeds.put("codec_config", "avc_record_muxed", &[&[4], avc_record]);
    seeds.put("codec_config", "aac_muxed", &[&[5], &AAC_SEQ[2..]]);

    // http_request: heads as players, ffmpeg and the API send them.
    for (name, head) in [
        ("get_flv", "GET /live/test.flv?only-audio=1 HTTP/1.1\r\nHost: Example.com:8079\r\nUser-Agent: Lavf/59.27.100\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n"),
        ("get_playlist_http10", "GET /live/test/index.m3u8?_HLS_msn=9&_HLS_part=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        ("post_chunked", "POST /api/v1/streams HTTP/1.1\r\nHost: [::1]:8079\r\nTransfer-Encoding: gzip, chunked\r\nAuthorization: Bearer s3cret\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        ("delete_length", "DELETE /api/v1/clients/12%2034 HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"),
    ] {
        seeds.put("http_request", name, &[head.as_bytes()]);
    }

    // http_client_response: [HEAD flag, split] head, body.
    for (name, resp) in [
        ("length", "HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nContent-Length: 5\r\n\r\nhello"),
        ("chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"),
        ("until_close", "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nFLV\x01\x05"),
        ("not_found", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ] {
        seeds.put("http_client_response", name, &[&[0, 0x80], resp.as_bytes()]);
    }
    seeds.put(
        "http_client_response",
        "head",
        &[&[1, 0x10], b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"],
    );

    // hls_playlist: playlists as the server renders them.
    let ll = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
              #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
              #EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:7\n\
              #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z\n#EXTINF:2.000,\nx/7.ts\n\
              #EXT-X-PART:DURATION=0.500,URI=\"x/8.0.ts\",INDEPENDENT=YES\n\
              #EXT-X-PART:DURATION=0.533,URI=\"x/8.1.ts\"\n#EXTINF:1.033,\nx/8.ts\n\
              #EXT-X-PART:DURATION=0.500,URI=\"x/9.0.ts\",INDEPENDENT=YES\n\
              #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"x/9.1.ts\"\n";
    let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n\
                 #EXTINF:4.000,title\nhttp://h/a.ts\n#EXTINF:3.5,\n/b.ts\n#EXT-X-ENDLIST\n";
    let delta = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
                 #EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:2.0,\nx/13.ts\n";
    seeds.put("hls_playlist", "low_latency", &[ll.as_bytes()]);
    seeds.put("hls_playlist", "plain", &[plain.as_bytes()]);
    seeds.put("hls_playlist", "delta", &[delta.as_bytes()]);

    // ts_reader: [split] a segment from proto's TS muxer (AVC + AAC, and HEVC).
    let mut muxer = TsMuxer::new(true, true);
    let mut ts = Vec::new();
    muxer.write_psi(&mut ts);
    for f in &frames {
        muxer.write_frame(f, &mut ts).unwrap();
    }
    seeds.put("ts_reader", "avc_aac", &[&[0x61], &ts]);
    let mut muxer = TsMuxer::new(true, false);
    let mut ts = Vec::new();
    muxer.write_psi(&mut ts);
    muxer
        .write_frame(
            &Frame::parse_video(0, Bytes::from(hevc_seq)).unwrap(),
            &mut ts,
        )
        .unwrap();
    let key = [0x1c, 0x01, 0, 0, 0, 0, 0, 0, 3, 0x26, 0x01, 0xaf];
    muxer
        .write_frame(
            &Frame::parse_video(0, Bytes::copy_from_slice(&key)).unwrap(),
            &mut ts,
        )
        .unwrap();
    seeds.put("ts_reader", "hevc", &[&[0xf0], &ts]);
    println!("seeds written to {}", seeds.root.display());
}
