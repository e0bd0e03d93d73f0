//! A small blocking RTMP client for the integration tests.
//!
//! It is written from the specifications (Adobe RTMP 1.0 for the handshake
//! and the chunk stream, Adobe AMF0 for commands), deliberately *not* on top
//! of `proto::rtmp`: a client built from the server's own codec would
//! share its mistakes (an extended timestamp misread on both sides passes).
//! It is also the tool that builds malformed input, which a correct encoder
//! refuses to produce.
//!
//! Everything blocks on a `std::net::TcpStream` with read timeouts, and every
//! wait takes a deadline, so a silent server fails a test instead of hanging
//! it.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// RTMP message type ids (RTMP 1.0, sections 5.4 and 7.1).
pub mod msg_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACK: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
}

/// User Control event types (RTMP 1.0, section 7.1.7).
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// An AMF0 value (AMF0 specification, section 2).
#[derive(Clone, Debug, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    String(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Amf)>),
    StrictArray(Vec<Amf>),
    Date(f64),
}

impl Amf {
    pub fn str(s: &str) -> Amf {
        Amf::String(s.to_string())
    }

    pub fn obj(pairs: &[(&str, Amf)]) -> Amf {
        Amf::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    /// The value of `key` in an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(pairs) | Amf::EcmaArray(pairs) => {
                pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf::Number(n) => Some(*n),
            _ => None,
        }
    }
}

fn put_utf8(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends the AMF0 encoding of `v` to `out`.
pub fn amf_encode(v: &Amf, out: &mut Vec<u8>) {
    match v {
        Amf::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => {
            out.push(0x01);
            out.push(*b as u8);
        }
        Amf::String(s) if s.len() <= 0xFFFF => {
            out.push(0x02);
            put_utf8(out, s);
        }
        Amf::String(s) => {
            out.push(0x0C);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Amf::Object(pairs) => {
            out.push(0x03);
            for (k, v) in pairs {
                put_utf8(out, k);
                amf_encode(v, out);
            }
            out.extend_from_slice(&[0x00, 0x00, 0x09]);
        }
        Amf::Null => out.push(0x05),
        Amf::Undefined => out.push(0x06),
        Amf::EcmaArray(pairs) => {
            out.push(0x08);
            out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
            for (k, v) in pairs {
                put_utf8(out, k);
                amf_encode(v, out);
            }
            out.extend_from_slice(&[0x00, 0x00, 0x09]);
        }
        Amf::StrictArray(items) => {
            out.push(0x0A);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                amf_encode(v, out);
            }
        }
        Amf::Date(ms) => {
            out.push(0x0B);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&0i16.to_be_bytes());
        }
    }
}

/// Depth bound of the test client's own decoder; it only reads what the
/// server sends, which is shallow.
const AMF_DEPTH_MAX: usize = 64;

struct AmfReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> AmfReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!("AMF0 truncated at byte {}", self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn utf8(&mut self, len: usize) -> Result<String, String> {
        let b = self.take(len)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    }

    fn pairs(&mut self, depth: usize) -> Result<Vec<(String, Amf)>, String> {
        let mut pairs = Vec::new();
        loop {
            let klen = self.u16()? as usize;
            if klen == 0 && self.buf.get(self.pos) == Some(&0x09) {
                self.pos += 1;
                return Ok(pairs);
            }
            let k = self.utf8(klen)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf, String> {
        if depth > AMF_DEPTH_MAX {
            return Err("AMF0 nested too deep".into());
        }
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00 => Amf::Number(self.f64()?),
            0x01 => Amf::Bool(self.take(1)?[0] != 0),
            0x02 => {
                let n = self.u16()? as usize;
                Amf::String(self.utf8(n)?)
            }
            0x03 => Amf::Object(self.pairs(depth)?),
            0x05 => Amf::Null,
            0x06 => Amf::Undefined,
            0x08 => {
                let _count = self.u32()?;
                Amf::EcmaArray(self.pairs(depth)?)
            }
            0x0A => {
                let n = self.u32()? as usize;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Amf::StrictArray(items)
            }
            0x0B => {
                let ms = self.f64()?;
                self.take(2)?;
                Amf::Date(ms)
            }
            0x0C | 0x0F => {
                let n = self.u32()? as usize;
                Amf::String(self.utf8(n)?)
            }
            m => return Err(format!("AMF0 marker {m:#04x} at byte {}", self.pos - 1)),
        })
    }
}

/// Decodes every AMF0 value in `buf`.
pub fn amf_decode_all(buf: &[u8]) -> Result<Vec<Amf>, String> {
    let mut r = AmfReader { buf, pos: 0 };
    let mut out = Vec::new();
    while r.pos < buf.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

/// One whole RTMP message as the client received it.
#[derive(Clone, Debug)]
pub struct Message {
    /// When the last byte of the message was parsed.
    pub at: Instant,
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    pub timestamp: u32,
    /// The payload; the background player keeps only its first bytes of
    /// audio and video (see `len` for the real size).
    pub payload: Vec<u8>,
    pub len: usize,
}

impl Message {
    pub fn is_video(&self) -> bool {
        self.type_id == msg_type::VIDEO
    }

    pub fn is_audio(&self) -> bool {
        self.type_id == msg_type::AUDIO
    }

    /// FLV VIDEODATA with codec id 7 (AVC) and AVCPacketType 0.
    pub fn is_avc_sequence_header(&self) -> bool {
        self.is_video()
            && self.payload.len() >= 2
            && self.payload[0] & 0x0F == 7
            && self.payload[1] == 0
    }

    /// A coded video frame: not a sequence header, not an end-of-sequence,
    /// not a video info/command frame (frame type 5).
    pub fn is_coded_video(&self) -> bool {
        self.is_video()
            && !self.payload.is_empty()
            && self.payload[0] >> 4 != 5
            && !(self.payload[0] & 0x0F == 7 && self.payload.get(1).copied() != Some(1))
    }

    /// A coded keyframe (FLV frame type 1).
    pub fn is_keyframe(&self) -> bool {
        self.is_coded_video() && self.payload[0] >> 4 == 1
    }

    /// FLV AUDIODATA with sound format 10 (AAC) and AACPacketType 0.
    pub fn is_aac_sequence_header(&self) -> bool {
        self.is_audio()
            && self.payload.len() >= 2
            && self.payload[0] >> 4 == 10
            && self.payload[1] == 0
    }

    /// An AAC raw frame (AACPacketType 1) or any non-AAC audio frame.
    pub fn is_coded_audio(&self) -> bool {
        self.is_audio()
            && !self.payload.is_empty()
            && !(self.payload[0] >> 4 == 10 && self.payload.get(1).copied() != Some(1))
    }

    /// The AMF0 values of a command (type 20, or type 17 whose AMF3 wrapper
    /// starts with a 0 format byte) or data message (type 18).
    pub fn amf(&self) -> Option<Vec<Amf>> {
        match self.type_id {
            msg_type::COMMAND_AMF0 | msg_type::DATA_AMF0 => amf_decode_all(&self.payload).ok(),
            msg_type::COMMAND_AMF3 | msg_type::DATA_AMF3 => {
                amf_decode_all(self.payload.get(1..)?).ok()
            }
            _ => None,
        }
    }

    /// The command name of a command message.
    pub fn command_name(&self) -> Option<String> {
        if !matches!(
            self.type_id,
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3
        ) {
            return None;
        }
        self.amf()?.first()?.as_str().map(str::to_string)
    }

    /// The `code` of an `onStatus` command (e.g. `NetStream.Play.Start`).
    pub fn status_code(&self) -> Option<String> {
        if self.command_name()? != "onStatus" {
            return None;
        }
        let values = self.amf()?;
        values
            .iter()
            .skip(1)
            .find_map(|v| v.get("code").and_then(Amf::as_str).map(str::to_string))
    }

    /// The `description` of an `onStatus`.
    pub fn status_description(&self) -> Option<String> {
        if self.command_name()? != "onStatus" {
            return None;
        }
        self.amf()?.iter().skip(1).find_map(|v| {
            v.get("description")
                .and_then(Amf::as_str)
                .map(str::to_string)
        })
    }

    /// The handler name of a data message (`onMetaData`, `|RtmpSampleAccess`).
    /// `@setDataFrame` wrappers are looked through.
    pub fn data_name(&self) -> Option<String> {
        if !matches!(self.type_id, msg_type::DATA_AMF0 | msg_type::DATA_AMF3) {
            return None;
        }
        let values = self.amf()?;
        let first = values.first()?.as_str()?;
        if first == "@setDataFrame" {
            return values.get(1)?.as_str().map(str::to_string);
        }
        Some(first.to_string())
    }

    /// The event type of a User Control message.
    pub fn user_control_event(&self) -> Option<u16> {
        if self.type_id != msg_type::USER_CONTROL || self.payload.len() < 2 {
            return None;
        }
        Some(u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn describe(&self) -> String {
        let what = if let Some(code) = self.status_code() {
            format!("onStatus {code}")
        } else if let Some(name) = self.command_name() {
            format!("command {name}")
        } else if let Some(name) = self.data_name() {
            format!("data {name}")
        } else if self.is_avc_sequence_header() {
            "video avc-seq-header".into()
        } else if self.is_keyframe() {
            "video keyframe".into()
        } else if self.is_video() {
            "video".into()
        } else if self.is_aac_sequence_header() {
            "audio aac-seq-header".into()
        } else if self.is_audio() {
            "audio".into()
        } else if let Some(ev) = self.user_control_event() {
            format!("user-control {ev}")
        } else {
            format!("type {}", self.type_id)
        };
        format!(
            "{what} ts={} sid={} len={}",
            self.timestamp, self.stream_id, self.len
        )
    }
}

/// Builds the chunks of one message: a type 0 header, then type 3
/// continuation headers every `chunk_size` bytes, with the extended
/// timestamp repeated on continuations as RTMP 1.0 section 5.3.1.3 requires.
pub fn encode_chunks(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    encode_chunks_with_len(
        csid,
        timestamp,
        type_id,
        stream_id,
        payload.len() as u32,
        payload,
        chunk_size,
    )
}

/// Like [`encode_chunks`] but declares `declared_len` in the header, which
/// may differ from the payload actually sent (for malformed input).
pub fn encode_chunks_with_len(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    declared_len: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    assert!(chunk_size > 0);
    let mut out = Vec::with_capacity(payload.len() + 32);
    let ext = timestamp >= 0xFF_FFFF;
    basic_header(&mut out, 0, csid);
    let ts_field = if ext { 0xFF_FFFF } else { timestamp };
    out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
    out.extend_from_slice(&declared_len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if ext {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    let mut first = true;
    for chunk in payload.chunks(chunk_size) {
        if !first {
            basic_header(&mut out, 3, csid);
            if ext {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
        }
        first = false;
        out.extend_from_slice(chunk);
    }
    out
}

/// The basic header (RTMP 1.0 section 5.3.1.1): one, two or three bytes.
pub fn basic_header(out: &mut Vec<u8>, fmt: u8, csid: u32) {
    assert!((2..=65599).contains(&csid));
    if csid < 64 {
        out.push(fmt << 6 | csid as u8);
    } else if csid < 320 {
        out.push(fmt << 6);
        out.push((csid - 64) as u8);
    } else {
        out.push(fmt << 6 | 1);
        let v = csid - 64;
        out.push((v & 0xFF) as u8);
        out.push((v >> 8) as u8);
    }
}

/// Encodes a command message payload: name, transaction id, then arguments.
pub fn command_payload(name: &str, txn: f64, args: &[Amf]) -> Vec<u8> {
    let mut p = Vec::new();
    amf_encode(&Amf::str(name), &mut p);
    amf_encode(&Amf::Number(txn), &mut p);
    for a in args {
        amf_encode(a, &mut p);
    }
    p
}

#[derive(Clone, Default)]
struct ChunkStreamState {
    seen: bool,
    timestamp: u32,
    ts_delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    ext_ts: bool,
    partial: Vec<u8>,
}

/// A tiny xorshift generator: the tests need unpredictable-looking bytes,
/// not cryptographic ones, and a seed makes failures repeatable.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

/// Performs the plain (version 3, non-digest) client handshake, RTMP 1.0
/// section 5.2: C0+C1, read S0+S1, send C2 (an echo of S1), read S2.
pub fn handshake(sock: &mut TcpStream) -> io::Result<()> {
    let mut c0c1 = vec![0u8; 1 + 1536];
    c0c1[0] = 3;
    // C1: time (4 bytes), zero (4 bytes), random (1528 bytes).
    XorShift(0x9E37_79B9_7F4A_7C15).fill(&mut c0c1[9..]);
    sock.write_all(&c0c1)?;
    let mut s0s1 = vec![0u8; 1 + 1536];
    sock.read_exact(&mut s0s1)?;
    if s0s1[0] != 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("S0 version {} (expected 3)", s0s1[0]),
        ));
    }
    sock.write_all(&s0s1[1..])?;
    let mut s2 = vec![0u8; 1536];
    sock.read_exact(&mut s2)?;
    Ok(())
}

/// A blocking RTMP client connection.
pub struct RtmpClient {
    sock: TcpStream,
    rbuf: Vec<u8>,
    in_chunk_size: usize,
    out_chunk_size: usize,
    streams: HashMap<u32, ChunkStreamState>,
    bytes_in: u64,
    bytes_acked: u64,
    ack_window: u64,
    next_txn: f64,
    pending: VecDeque<Message>,
    /// Keep only this many bytes of audio/video payloads (None: keep all).
    pub media_payload_keep: Option<usize>,
    pub port: u16,
    pub app: String,
}

/// The default deadline for one request/response step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

impl RtmpClient {
    /// Opens a TCP connection to 127.0.0.1:`port` (no handshake yet).
    pub fn tcp(port: u16) -> io::Result<RtmpClient> {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Self::from_stream(sock, port)
    }

    /// Wraps an already connected socket (e.g. one with a tiny receive
    /// buffer, built with socket2).
    pub fn from_stream(sock: TcpStream, port: u16) -> io::Result<RtmpClient> {
        sock.set_nodelay(true)?;
        sock.set_read_timeout(Some(STEP_TIMEOUT))?;
        sock.set_write_timeout(Some(STEP_TIMEOUT))?;
        Ok(RtmpClient {
            sock,
            rbuf: Vec::with_capacity(64 * 1024),
            in_chunk_size: 128,
            out_chunk_size: 128,
            streams: HashMap::new(),
            bytes_in: 0,
            bytes_acked: 0,
            ack_window: 2_500_000,
            next_txn: 2.0,
            pending: VecDeque::new(),
            media_payload_keep: None,
            port,
            app: String::new(),
        })
    }

    /// TCP connect, handshake, `connect` to `app`. Returns after `_result`.
    pub fn connect(port: u16, app: &str) -> io::Result<RtmpClient> {
        let mut c = Self::tcp(port)?;
        handshake(&mut c.sock)?;
        c.connect_app(app)?;
        Ok(c)
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn socket(&self) -> &TcpStream {
        &self.sock
    }

    pub fn handshake(&mut self) -> io::Result<()> {
        handshake(&mut self.sock)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// Sends one message, chunked at our outgoing chunk size.
    pub fn send_message(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let bytes = encode_chunks(
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
            self.out_chunk_size,
        );
        self.sock.write_all(&bytes)
    }

    pub fn set_chunk_size(&mut self, size: u32) -> io::Result<()> {
        self.send_message(2, 0, msg_type::SET_CHUNK_SIZE, 0, &size.to_be_bytes())?;
        self.out_chunk_size = size as usize;
        Ok(())
    }

    pub fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        args: &[Amf],
    ) -> io::Result<()> {
        let csid = if stream_id == 0 { 3 } else { 8 };
        let payload = command_payload(name, txn, args);
        self.send_message(csid, 0, msg_type::COMMAND_AMF0, stream_id, &payload)
    }

    fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    /// Sends `connect` for `app` (after raising our chunk size, as FMLE and
    /// OBS do) and waits for its `_result`.
    pub fn connect_app(&mut self, app: &str) -> io::Result<()> {
        self.set_chunk_size(4096)?;
        self.app = app.to_string();
        let tc_url = format!("rtmp://127.0.0.1:{}/{}", self.port, app);
        let obj = Amf::obj(&[
            ("app", Amf::str(app)),
            ("type", Amf::str("nonprivate")),
            (
                "flashVer",
                Amf::str("FMLE/3.0 (compatible; shardcast-tests)"),
            ),
            ("tcUrl", Amf::str(&tc_url)),
            ("fpad", Amf::Bool(false)),
            ("capabilities", Amf::Number(15.0)),
            ("audioCodecs", Amf::Number(3575.0)),
            ("videoCodecs", Amf::Number(252.0)),
            ("videoFunction", Amf::Number(1.0)),
            ("objectEncoding", Amf::Number(0.0)),
        ]);
        self.send_command(0, "connect", 1.0, &[obj])?;
        self.wait_result(1.0, Instant::now() + STEP_TIMEOUT)?;
        Ok(())
    }

    /// Waits for `_result` or `_error` of transaction `txn`; other messages
    /// are kept for later `recv` calls.
    pub fn wait_result(&mut self, txn: f64, deadline: Instant) -> io::Result<Vec<Amf>> {
        let mut kept = Vec::new();
        let result = loop {
            let Some(m) = self.recv_wire(deadline)? else {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no _result for transaction {txn}"),
                ));
            };
            let name = m.command_name();
            if matches!(name.as_deref(), Some("_result") | Some("_error")) {
                let values = m.amf().unwrap_or_default();
                if values.get(1).and_then(Amf::as_f64) == Some(txn) {
                    if name.as_deref() == Some("_error") {
                        break Err(io::Error::other(format!(
                            "_error for transaction {txn}: {values:?}"
                        )));
                    }
                    break Ok(values);
                }
            }
            kept.push(m);
        };
        for m in kept.into_iter().rev() {
            self.pending.push_front(m);
        }
        result
    }

    /// `createStream`; returns the message stream id.
    pub fn create_stream(&mut self) -> io::Result<u32> {
        let txn = self.txn();
        self.send_command(0, "createStream", txn, &[Amf::Null])?;
        let values = self.wait_result(txn, Instant::now() + STEP_TIMEOUT)?;
        values
            .get(3)
            .and_then(Amf::as_f64)
            .map(|n| n as u32)
            .ok_or_else(|| {
                io::Error::other(format!(
                    "createStream _result without a stream id: {values:?}"
                ))
            })
    }

    /// `play` of `name` (may carry `?only-audio=1` and the like) on
    /// `stream_id`, preceded by SetBufferLength as Flash players do. Does not
    /// wait for any reply.
    pub fn play(&mut self, stream_id: u32, name: &str) -> io::Result<()> {
        let mut ev = Vec::new();
        ev.extend_from_slice(&user_control::SET_BUFFER_LENGTH.to_be_bytes());
        ev.extend_from_slice(&stream_id.to_be_bytes());
        ev.extend_from_slice(&1000u32.to_be_bytes());
        self.send_message(2, 0, msg_type::USER_CONTROL, 0, &ev)?;
        // start = -2: live if there is one, else recorded (RTMP 1.0, 7.2.2.1).
        self.send_command(
            stream_id,
            "play",
            0.0,
            &[Amf::Null, Amf::str(name), Amf::Number(-2.0)],
        )
    }

    /// connect, createStream, play. Returns the client and the stream id.
    pub fn player(port: u16, app: &str, name: &str) -> io::Result<(RtmpClient, u32)> {
        let mut c = Self::connect(port, app)?;
        let sid = c.create_stream()?;
        c.play(sid, name)?;
        Ok((c, sid))
    }

    /// The OBS/FMLE publish sequence up to `publish`: releaseStream,
    /// FCPublish, createStream, publish. Does not wait for onStatus.
    pub fn start_publish(&mut self, name: &str) -> io::Result<u32> {
        let t = self.txn();
        self.send_command(0, "releaseStream", t, &[Amf::Null, Amf::str(name)])?;
        let t = self.txn();
        self.send_command(0, "FCPublish", t, &[Amf::Null, Amf::str(name)])?;
        let sid = self.create_stream()?;
        self.send_command(
            sid,
            "publish",
            0.0,
            &[Amf::Null, Amf::str(name), Amf::str("live")],
        )?;
        Ok(sid)
    }

    /// Everything that arrives until `deadline` or the close: the
    /// `onStatus` (code, description) pairs, and how many audio and video
    /// messages came.
    pub fn statuses_and_media(&mut self, deadline: Instant) -> (Vec<(String, String)>, usize) {
        let (mut statuses, mut media) = (Vec::new(), 0);
        while let Ok(Some(m)) = self.recv(deadline) {
            if let Some(code) = m.status_code() {
                statuses.push((code, m.status_description().unwrap_or_default()));
            } else if m.is_video() || m.is_audio() {
                media += 1;
            }
        }
        (statuses, media)
    }

    /// Waits for an `onStatus`; returns its code.
    pub fn wait_status(&mut self, deadline: Instant) -> io::Result<Option<(String, Message)>> {
        while let Some(m) = self.recv(deadline)? {
            if let Some(code) = m.status_code() {
                return Ok(Some((code, m)));
            }
        }
        Ok(None)
    }

    /// Receives the next message (including protocol control messages,
    /// after acting on them). `Ok(None)` when the deadline passes;
    /// `Err(UnexpectedEof)` when the server closed the connection.
    pub fn recv(&mut self, deadline: Instant) -> io::Result<Option<Message>> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        self.recv_wire(deadline)
    }

    fn recv_wire(&mut self, deadline: Instant) -> io::Result<Option<Message>> {
        loop {
            if let Some(m) = self.parse_one()? {
                self.on_message(&m)?;
                return Ok(Some(m));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wait = (deadline - now)
                .min(Duration::from_millis(250))
                .max(Duration::from_millis(1));
            self.sock.set_read_timeout(Some(wait))?;
            let mut tmp = [0u8; 64 * 1024];
            match self.sock.read(&mut tmp) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    ))
                }
                Ok(n) => {
                    self.rbuf.extend_from_slice(&tmp[..n]);
                    self.bytes_in += n as u64;
                    if self.bytes_in - self.bytes_acked >= self.ack_window {
                        self.bytes_acked = self.bytes_in;
                        let seq = (self.bytes_in & 0xFFFF_FFFF) as u32;
                        self.send_message(2, 0, msg_type::ACK, 0, &seq.to_be_bytes())?;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Acts on protocol control messages the way a well-behaved client
    /// does.
    fn on_message(&mut self, m: &Message) -> io::Result<()> {
        match m.type_id {
            msg_type::SET_CHUNK_SIZE if m.payload.len() >= 4 => {
                let size =
                    u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]])
                        & 0x7FFF_FFFF;
                if size == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "server set chunk size 0",
                    ));
                }
                self.in_chunk_size = size as usize;
            }
            msg_type::WINDOW_ACK_SIZE if m.payload.len() >= 4 => {
                let w =
                    u32::from_be_bytes([m.payload[0], m.payload[1], m.payload[2], m.payload[3]]);
                self.ack_window = u64::from(w.max(1));
            }
            msg_type::USER_CONTROL
                if m.user_control_event() == Some(user_control::PING_REQUEST) =>
            {
                let mut p = Vec::new();
                p.extend_from_slice(&user_control::PING_RESPONSE.to_be_bytes());
                p.extend_from_slice(m.payload.get(2..6).unwrap_or(&[0, 0, 0, 0]));
                self.send_message(2, 0, msg_type::USER_CONTROL, 0, &p)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Parses one whole message out of the read buffer, consuming only
    /// complete chunks.
    fn parse_one(&mut self) -> io::Result<Option<Message>> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        loop {
            let buf = &self.rbuf[..];
            if buf.is_empty() {
                return Ok(None);
            }
            let fmt = buf[0] >> 6;
            let (csid, mut pos) = match buf[0] & 0x3F {
                0 => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    (64 + u32::from(buf[1]), 2)
                }
                1 => {
                    if buf.len() < 3 {
                        return Ok(None);
                    }
                    (64 + u32::from(buf[1]) + 256 * u32::from(buf[2]), 3)
                }
                c => (u32::from(c), 1),
            };
            let hlen = [11usize, 7, 3, 0][fmt as usize];
            if buf.len() < pos + hlen {
                return Ok(None);
            }
            let h = &buf[pos..pos + hlen];
            pos += hlen;
            let u24 = |b: &[u8]| u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            let mut st = self.streams.get(&csid).cloned().unwrap_or_default();
            if fmt != 0 && !st.seen {
                return Err(bad(format!(
                    "server sent fmt {fmt} on chunk stream {csid} with no prior fmt 0"
                )));
            }
            let starts_message = st.partial.is_empty();
            if fmt != 3 && !starts_message {
                return Err(bad(format!(
                    "server sent a fmt {fmt} header on chunk stream {csid} in the middle of a message"
                )));
            }
            let ts_field = if fmt < 3 { u24(&h[0..3]) } else { 0 };
            let ext = if fmt < 3 {
                ts_field == 0xFF_FFFF
            } else {
                st.ext_ts
            };
            let ext_value = if ext {
                if buf.len() < pos + 4 {
                    return Ok(None);
                }
                let v = u32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
                pos += 4;
                v
            } else {
                0
            };
            let ts_value = if ext { ext_value } else { ts_field };
            match fmt {
                0 => {
                    st.timestamp = ts_value;
                    st.ts_delta = ts_value;
                    st.length = u24(&h[3..6]);
                    st.type_id = h[6];
                    st.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
                }
                1 => {
                    st.ts_delta = ts_value;
                    st.timestamp = st.timestamp.wrapping_add(ts_value);
                    st.length = u24(&h[3..6]);
                    st.type_id = h[6];
                }
                2 => {
                    st.ts_delta = ts_value;
                    st.timestamp = st.timestamp.wrapping_add(ts_value);
                }
                _ => {
                    if starts_message {
                        st.timestamp = st.timestamp.wrapping_add(st.ts_delta);
                    }
                }
            }
            st.seen = true;
            st.ext_ts = ext;
            let want = (st.length as usize - st.partial.len()).min(self.in_chunk_size);
            if buf.len() < pos + want {
                return Ok(None);
            }
            st.partial.extend_from_slice(&buf[pos..pos + want]);
            pos += want;
            self.rbuf.drain(..pos);
            if st.partial.len() == st.length as usize {
                let mut payload = std::mem::take(&mut st.partial);
                let len = payload.len();
                if let Some(keep) = self.media_payload_keep {
                    if matches!(st.type_id, msg_type::AUDIO | msg_type::VIDEO) {
                        payload.truncate(keep);
                    }
                }
                let m = Message {
                    at: Instant::now(),
                    csid,
                    type_id: st.type_id,
                    stream_id: st.stream_id,
                    timestamp: st.timestamp,
                    payload,
                    len,
                };
                self.streams.insert(csid, st);
                return Ok(Some(m));
            }
            self.streams.insert(csid, st);
        }
    }

    /// Reads until the server closes the connection (`Ok(true)`) or the
    /// deadline passes (`Ok(false)`), discarding what arrives. A reset
    /// counts as closed.
    pub fn wait_closed(&mut self, deadline: Instant) -> bool {
        wait_closed(&mut self.sock, deadline)
    }
}

/// Reads and discards until EOF or reset (`true`) or the deadline (`false`).
pub fn wait_closed(sock: &mut TcpStream, deadline: Instant) -> bool {
    let mut tmp = [0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wait = (deadline - now)
            .min(Duration::from_millis(250))
            .max(Duration::from_millis(1));
        if sock.set_read_timeout(Some(wait)).is_err() {
            return true;
        }
        match sock.read(&mut tmp) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
}

/// A test-client player reading on its own thread, recording every message
/// with its arrival time (audio/video payloads cut to their first bytes).
pub struct BgPlayer {
    stop: Arc<AtomicBool>,
    msgs: Arc<Mutex<Vec<Message>>>,
    handle: Option<JoinHandle<io::Result<()>>>,
    pub local_port: u16,
    pub play_sent_at: Instant,
}

impl BgPlayer {
    /// connect, createStream, play `name` on `app`, then read on a thread.
    pub fn start(port: u16, app: &str, name: &str) -> io::Result<BgPlayer> {
        let (mut c, _sid) = RtmpClient::player(port, app, name)?;
        let play_sent_at = Instant::now();
        c.media_payload_keep = Some(16);
        let local_port = c.local_port();
        let stop = Arc::new(AtomicBool::new(false));
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let (stop2, msgs2) = (stop.clone(), msgs.clone());
        let handle = std::thread::Builder::new()
            .name(format!("bgplayer-{local_port}"))
            .spawn(move || -> io::Result<()> {
                while !stop2.load(Ordering::Relaxed) {
                    if let Some(m) = c.recv(Instant::now() + Duration::from_millis(100))? {
                        msgs2.lock().unwrap().push(m);
                    }
                }
                Ok(())
            })?;
        Ok(BgPlayer {
            stop,
            msgs,
            handle: Some(handle),
            local_port,
            play_sent_at,
        })
    }

    pub fn snapshot(&self) -> Vec<Message> {
        self.msgs.lock().unwrap().clone()
    }

    /// True once the reading thread ended (connection closed or error).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits until `pred` holds for the messages so far, or the deadline.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.msgs.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops reading; returns everything received and how the reader ended
    /// (`Ok` if we stopped it, the error if the connection failed first).
    pub fn stop(mut self) -> (Vec<Message>, io::Result<()>) {
        self.stop.store(true, Ordering::Relaxed);
        let end = match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("player thread panicked"))),
            None => Ok(()),
        };
        (self.snapshot(), end)
    }
}

impl Drop for BgPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Counts coded video frames that arrived in `[from, to)`.
pub fn video_frames_between(msgs: &[Message], from: Instant, to: Instant) -> usize {
    msgs.iter()
        .filter(|m| m.is_coded_video() && m.at >= from && m.at < to)
        .count()
}

/// The longest gap between consecutive coded video arrivals in `[from, to)`,
/// counting the edges of the window.
pub fn max_video_gap(msgs: &[Message], from: Instant, to: Instant) -> Duration {
    let mut prev = from;
    let mut worst = Duration::ZERO;
    for m in msgs
        .iter()
        .filter(|m| m.is_coded_video() && m.at >= from && m.at < to)
    {
        worst = worst.max(m.at - prev);
        prev = m.at;
    }
    worst.max(to.saturating_duration_since(prev))
}

/// Checks that audio and video timestamps never go backwards; returns the
/// first offence.
pub fn first_timestamp_regression(msgs: &[Message]) -> Option<String> {
    let mut last: [Option<(u32, usize)>; 2] = [None, None];
    for (i, m) in msgs.iter().enumerate() {
        let k = match m.type_id {
            msg_type::AUDIO => 0,
            msg_type::VIDEO => 1,
            _ => continue,
        };
        if let Some((prev, pi)) = last[k] {
            if m.timestamp < prev {
                return Some(format!(
                    "{} timestamp went backwards from {prev} ms (message #{pi}) to {} ms (message #{i}: {})",
                    if k == 0 { "audio" } else { "video" },
                    m.timestamp,
                    m.describe()
                ));
            }
        }
        last[k] = Some((m.timestamp, i));
    }
    None
}

/// A one-line-per-message listing, for failure messages.
pub fn describe_all(msgs: &[Message], max: usize) -> String {
    let t0 = msgs.first().map(|m| m.at);
    let mut s = String::new();
    for (i, m) in msgs.iter().take(max).enumerate() {
        let dt = t0
            .map(|t| m.at.duration_since(t).as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        s.push_str(&format!("  #{i} +{dt:.1}ms {}\n", m.describe()));
    }
    if msgs.len() > max {
        s.push_str(&format!("  ... {} more\n", msgs.len() - max));
    }
    s
}
