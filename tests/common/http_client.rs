//! A small blocking HTTP/1.x client for the integration tests, over a raw
//! `TcpStream`, so a test sees the exact bytes: the status line, every
//! header, chunk framing and where the body ends.
//!
//! The chunked decoder is written from RFC 9112 section 7.1, not on top of
//! the server's code. FLV bodies are split into tags by
//! `proto::flv::{parse_file_header, parse_tag}` (the library parser the
//! tests are asked to use); the tag classification below reads the tag
//! bytes from the FLV spec (E.4.2, E.4.3) directly.
//!
//! Every read takes a deadline, so a silent server fails a test instead of
//! hanging it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto::flv;

/// A response head as received.
#[derive(Clone, Debug)]
pub struct Head {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    pub status: u16,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The head's text, for failure messages.
    pub raw: String,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True if a `Transfer-Encoding` header names `chunked`.
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
}

/// A whole response.
#[derive(Clone, Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
    /// From the request's last byte written to the head's arrival.
    pub head_after: Duration,
    /// From the request's last byte written to the body's end.
    pub done_after: Duration,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

/// One client connection: a socket and the bytes read but not yet used.
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    pub local_port: u16,
    /// When the last request's bytes were written.
    pub sent_at: Instant,
}

impl HttpConn {
    /// Connects to 127.0.0.1:`port` (5 s timeout).
    pub fn connect(port: u16) -> io::Result<HttpConn> {
        HttpConn::connect_addr(([127, 0, 0, 1], port).into())
    }

    /// Connects to `addr` (5 s timeout).
    pub fn connect_addr(addr: SocketAddr) -> io::Result<HttpConn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        HttpConn::from_stream(s)
    }

    pub fn from_stream(stream: TcpStream) -> io::Result<HttpConn> {
        stream.set_nodelay(true)?;
        let local_port = stream.local_addr()?.port();
        Ok(HttpConn {
            stream,
            buf: Vec::new(),
            eof: false,
            local_port,
            sent_at: Instant::now(),
        })
    }

    /// Writes `raw` as is.
    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream
            .set_write_timeout(Some(Duration::from_secs(5)))?;
        self.stream.write_all(raw)?;
        self.sent_at = Instant::now();
        Ok(())
    }

    /// Sends `METHOD target HTTP/1.1` with a Host header and `extra` header
    /// lines (each without CRLF).
    pub fn send_request(&mut self, method: &str, target: &str, extra: &[&str]) -> io::Result<()> {
        let mut s = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for h in extra {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        self.send(s.as_bytes())
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out("reading"));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut tmp = [0u8; 64 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(timed_out("reading"))
            }
            Err(e) => Err(e),
        }
    }

    /// True once the peer closed and every byte was used.
    pub fn at_eof(&self) -> bool {
        self.eof && self.buf.is_empty()
    }

    /// Reads a response head.
    pub fn read_head(&mut self, deadline: Instant) -> io::Result<Head> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw = String::from_utf8_lossy(&self.buf[..end + 4]).into_owned();
                self.buf.drain(..end + 4);
                return parse_head(&raw);
            }
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a whole response head; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads exactly `n` body bytes.
    pub fn read_exact(&mut self, n: usize, deadline: Instant) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("closed after {} of {n} body bytes", self.buf.len()),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Takes whatever has arrived (reading once if nothing is buffered);
    /// an empty Vec at EOF.
    pub fn read_some(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        if self.buf.is_empty() {
            self.fill(deadline)?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads until the peer closes.
    pub fn read_to_end(&mut self, deadline: Instant) -> io::Result<Vec<u8>> {
        while self.fill(deadline)? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// Reads one response: the head, then a body delimited by
    /// Content-Length, chunked coding, or the close (none for HEAD, 204 and
    /// 304).
    pub fn read_response(&mut self, head_request: bool, deadline: Instant) -> io::Result<Response> {
        let head = self.read_head(deadline)?;
        let head_after = self.sent_at.elapsed();
        let body = if head_request || head.status == 204 || head.status == 304 {
            Vec::new()
        } else if head.is_chunked() {
            let mut dec = ChunkDecoder::default();
            let mut out = Vec::new();
            loop {
                let input = std::mem::take(&mut self.buf);
                let used = dec.feed(&input, &mut out).map_err(io::Error::other)?;
                self.buf.extend_from_slice(&input[used..]);
                if dec.is_done() {
                    break;
                }
                if self.fill(deadline)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed inside a chunked body",
                    ));
                }
            }
            out
        } else if let Some(n) = head.content_length() {
            self.read_exact(n, deadline)?
        } else {
            self.read_to_end(deadline)?
        };
        Ok(Response {
            head,
            body,
            head_after,
            done_after: self.sent_at.elapsed(),
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: &str) -> io::Result<Head> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {raw:?}"));
    let mut lines = raw.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    if version != "HTTP/1.0" && version != "HTTP/1.1" {
        return Err(bad("status line does not start with HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad("header line without ':'"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Head {
        version,
        status,
        headers,
        raw: raw.to_string(),
    })
}

/// Sends one request on a fresh connection (`Connection: close`) and reads
/// the response.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    extra: &[&str],
    timeout: Duration,
) -> io::Result<Response> {
    request_at(
        ([127, 0, 0, 1], port).into(),
        method,
        target,
        extra,
        timeout,
    )
}

/// [`request`] to a server at `addr`.
pub fn request_at(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &[&str],
    timeout: Duration,
) -> io::Result<Response> {
    let mut c = HttpConn::connect_addr(addr)?;
    let mut headers = vec!["Connection: close"];
    headers.extend_from_slice(extra);
    c.send_request(method, target, &headers)?;
    c.read_response(method == "HEAD", Instant::now() + timeout)
}

/// `GET target` on a fresh connection.
pub fn get(port: u16, target: &str, timeout: Duration) -> io::Result<Response> {
    request(port, "GET", target, &[], timeout)
}

/// Decodes chunked transfer coding (RFC 9112 7.1) incrementally: chunk-size
/// line (extensions ignored), data, CRLF, ..., last chunk, trailer, CRLF.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    state: ChunkState,
    /// Chunks decoded so far (the last chunk not counted).
    pub chunks: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

impl ChunkDecoder {
    /// Decodes from `input` into `out`; returns the bytes used (the rest is
    /// an incomplete line, to be given again with more bytes).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                ChunkState::Done => return Ok(at),
                ChunkState::Size => {
                    let Some(eol) = find(rest, b"\r\n") else {
                        if rest.len() > 1024 {
                            return Err(format!(
                                "chunk-size line longer than 1 KiB: {:?}",
                                String::from_utf8_lossy(&rest[..64])
                            ));
                        }
                        return Ok(at);
                    };
                    let line = std::str::from_utf8(&rest[..eol])
                        .map_err(|_| "chunk-size line is not ASCII".to_string())?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk-size line {line:?}"))?;
                    at += eol + 2;
                    self.state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        self.chunks += 1;
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    at += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(format!(
                            "chunk data not followed by CRLF but {:?}",
                            &rest[..2]
                        ));
                    }
                    at += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(eol) = find(rest, b"\r\n") else {
                        return Ok(at);
                    };
                    at += eol + 2;
                    if eol == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }

    /// The last chunk and the trailer's end were read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// FLV TagType values (FLV spec E.4.1).
pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// One FLV tag as a test saw it: the start of its body is kept, the rest
/// only counted.
#[derive(Clone, Debug)]
pub struct FlvTag {
    pub tag_type: u8,
    pub timestamp: u32,
    /// When its last byte arrived.
    pub at: Instant,
    pub body_len: usize,
    /// The first 64 bytes of the body.
    pub body_head: Vec<u8>,
}

impl FlvTag {
    pub fn is_video(&self) -> bool {
        self.tag_type == TAG_VIDEO
    }
    pub fn is_audio(&self) -> bool {
        self.tag_type == TAG_AUDIO
    }
    pub fn is_script(&self) -> bool {
        self.tag_type == TAG_SCRIPT
    }
    /// An AVC video tag (CodecID 7) with AVCPacketType 0.
    pub fn is_avc_sequence_header(&self) -> bool {
        self.is_video()
            && self.body_head.first().is_some_and(|b| b & 0x0f == 7)
            && self.body_head.get(1) == Some(&0)
    }
    /// An AAC audio tag (SoundFormat 10) with AACPacketType 0.
    pub fn is_aac_sequence_header(&self) -> bool {
        self.is_audio()
            && self.body_head.first().is_some_and(|b| b >> 4 == 10)
            && self.body_head.get(1) == Some(&0)
    }
    /// A video tag carrying a coded picture (not a sequence header or end
    /// of sequence).
    pub fn is_coded_video(&self) -> bool {
        self.is_video()
            && match self.body_head.first() {
                Some(b) if b & 0x0f == 7 => self.body_head.get(1) == Some(&1),
                Some(_) => true,
                None => false,
            }
    }
    /// A coded picture with FrameType 1 (keyframe).
    pub fn is_keyframe(&self) -> bool {
        self.is_coded_video() && self.body_head.first().is_some_and(|b| b >> 4 == 1)
    }
    /// An audio tag with a coded frame (not the AAC sequence header).
    pub fn is_coded_audio(&self) -> bool {
        self.is_audio() && !self.is_aac_sequence_header() && !self.body_head.is_empty()
    }
    /// A script tag whose first AMF0 value is the string `onMetaData`.
    pub fn is_on_metadata(&self) -> bool {
        let b = &self.body_head;
        self.is_script()
            && b.first() == Some(&2)
            && b.get(1..3) == Some(&[0, 10])
            && b.get(3..13) == Some(b"onMetaData")
    }
    pub fn describe(&self) -> String {
        let kind = if self.is_on_metadata() {
            "onMetaData".to_string()
        } else if self.is_script() {
            "script".to_string()
        } else if self.is_avc_sequence_header() {
            "AVC sequence header".to_string()
        } else if self.is_aac_sequence_header() {
            "AAC sequence header".to_string()
        } else if self.is_keyframe() {
            "video keyframe".to_string()
        } else if self.is_coded_video() {
            "video inter frame".to_string()
        } else if self.is_audio() {
            "audio".to_string()
        } else {
            format!("tag type {}", self.tag_type)
        };
        format!("{kind} ts={} len={}", self.timestamp, self.body_len)
    }
}

/// Splits an FLV byte stream into tags as bytes arrive.
#[derive(Debug, Default)]
pub struct FlvDemux {
    buf: BytesMut,
    /// The header's (has audio, has video) and its TypeFlags byte.
    pub header: Option<(bool, bool, u8)>,
    pub bytes: usize,
}

/// Bytes of an FLV tag header, and of the PreviousTagSize after each tag.
const TAG_HEADER_LEN: usize = 11;
const PREVIOUS_TAG_SIZE_LEN: usize = 4;

impl FlvDemux {
    /// Takes `input`, returns the tags it completed (stamped `at`).
    pub fn feed(&mut self, input: &[u8], at: Instant) -> Result<Vec<FlvTag>, String> {
        self.bytes += input.len();
        self.buf.extend_from_slice(input);
        let mut tags = Vec::new();
        if self.header.is_none() {
            match flv::parse_file_header(&self.buf) {
                flv::Parse::Complete {
                    value: (a, v),
                    consumed,
                } => {
                    let flags = self.buf[4];
                    self.header = Some((a, v, flags));
                    let _ = self.buf.split_to(consumed);
                }
                flv::Parse::Incomplete => return Ok(tags),
                flv::Parse::Invalid { pos, what } => {
                    return Err(format!(
                        "FLV header invalid at byte {pos} ({what}): {:02x?}",
                        &self.buf[..self.buf.len().min(16)]
                    ))
                }
            }
        }
        loop {
            // DataSize (UI24 at byte 1) gives the whole tag's length; split it
            // off and let the library parser check it.
            if self.buf.len() < TAG_HEADER_LEN {
                return Ok(tags);
            }
            let data_size = (usize::from(self.buf[1]) << 16)
                | (usize::from(self.buf[2]) << 8)
                | usize::from(self.buf[3]);
            let total = TAG_HEADER_LEN + data_size + PREVIOUS_TAG_SIZE_LEN;
            if self.buf.len() < total {
                return Ok(tags);
            }
            let tag_bytes: Bytes = self.buf.split_to(total).freeze();
            match flv::parse_tag(&tag_bytes) {
                flv::Parse::Complete { value, consumed } if consumed == total => {
                    tags.push(FlvTag {
                        tag_type: value.tag_type,
                        timestamp: value.timestamp,
                        at,
                        body_len: value.body.len(),
                        body_head: value.body[..value.body.len().min(64)].to_vec(),
                    })
                }
                other => {
                    return Err(format!(
                        "FLV tag at stream byte {} does not parse: {other:?}",
                        self.bytes - self.buf.len() - total
                    ))
                }
            }
        }
    }
}

/// How an HTTP-FLV player reads its response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    CloseDelimited,
}

/// An HTTP-FLV player on a thread: `GET target` (HTTP/1.1, or HTTP/1.0
/// if `http10`), the head, then FLV tags with their arrival times.
pub struct BgFlvPlayer {
    stop: Arc<AtomicBool>,
    tags: Arc<Mutex<Vec<FlvTag>>>,
    head: Arc<Mutex<Option<Head>>>,
    header: Arc<Mutex<Option<(bool, bool, u8)>>>,
    handle: Option<JoinHandle<Result<&'static str, String>>>,
    pub local_port: u16,
    pub sent_at: Instant,
}

/// What a finished [`BgFlvPlayer`] got.
#[derive(Debug)]
pub struct FlvPlayed {
    pub head: Option<Head>,
    pub header: Option<(bool, bool, u8)>,
    pub tags: Vec<FlvTag>,
    /// `Ok("stopped")` if we stopped it, `Ok("eof")` /
    /// `Ok("last chunk")` if the server ended the body, else the error.
    pub end: Result<&'static str, String>,
    pub sent_at: Instant,
}

impl BgFlvPlayer {
    pub fn start(port: u16, target: &str, http10: bool) -> io::Result<BgFlvPlayer> {
        BgFlvPlayer::start_at(([127, 0, 0, 1], port).into(), target, http10)
    }

    /// [`BgFlvPlayer::start`] against a server at `addr`.
    pub fn start_at(addr: SocketAddr, target: &str, http10: bool) -> io::Result<BgFlvPlayer> {
        let mut c = HttpConn::connect_addr(addr)?;
        let req = if http10 {
            format!("GET {target} HTTP/1.0\r\n\r\n")
        } else {
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        };
        c.send(req.as_bytes())?;
        let sent_at = c.sent_at;
        let local_port = c.local_port;
        let stop = Arc::new(AtomicBool::new(false));
        let tags = Arc::new(Mutex::new(Vec::new()));
        let head = Arc::new(Mutex::new(None));
        let header = Arc::new(Mutex::new(None));
        let (stop2, tags2, head2, header2) =
            (stop.clone(), tags.clone(), head.clone(), header.clone());
        let handle = std::thread::Builder::new()
            .name(format!("flv-player-{local_port}"))
            .spawn(move || -> Result<&'static str, String> {
                let h = loop {
                    match c.read_head(Instant::now() + Duration::from_millis(100)) {
                        Ok(h) => break h,
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            if stop2.load(Ordering::Relaxed) {
                                return Err("stopped before a response head".into());
                            }
                        }
                        Err(e) => return Err(format!("reading the head: {e}")),
                    }
                };
                let framing = if h.is_chunked() {
                    Framing::Chunked
                } else {
                    Framing::CloseDelimited
                };
                let status = h.status;
                *head2.lock().unwrap() = Some(h);
                if status != 200 {
                    return Err(format!("status {status}"));
                }
                let mut chunks = ChunkDecoder::default();
                let mut demux = FlvDemux::default();
                let mut pending = Vec::new();
                while !stop2.load(Ordering::Relaxed) {
                    let bytes = match c.read_some(Instant::now() + Duration::from_millis(100)) {
                        Ok(b) => b,
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                        Err(e) => return Err(format!("read: {e}")),
                    };
                    let at = Instant::now();
                    if bytes.is_empty() {
                        return if framing == Framing::Chunked {
                            Err("connection closed without the last chunk".into())
                        } else {
                            Ok("eof")
                        };
                    }
                    let body = match framing {
                        Framing::CloseDelimited => bytes,
                        Framing::Chunked => {
                            pending.extend_from_slice(&bytes);
                            let mut out = Vec::new();
                            let used = chunks.feed(&pending, &mut out)?;
                            pending.drain(..used);
                            out
                        }
                    };
                    let new = demux.feed(&body, at)?;
                    if header2.lock().unwrap().is_none() {
                        *header2.lock().unwrap() = demux.header;
                    }
                    tags2.lock().unwrap().extend(new);
                    if chunks.is_done() {
                        return Ok("last chunk");
                    }
                }
                Ok("stopped")
            })?;
        Ok(BgFlvPlayer {
            stop,
            tags,
            head,
            header,
            handle: Some(handle),
            local_port,
            sent_at,
        })
    }

    pub fn snapshot(&self) -> Vec<FlvTag> {
        self.tags.lock().unwrap().clone()
    }

    pub fn tag_count(&self) -> usize {
        self.tags.lock().unwrap().len()
    }

    pub fn head(&self) -> Option<Head> {
        self.head.lock().unwrap().clone()
    }

    /// True once the reading thread ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits until `pred` holds for the tags so far, or the deadline.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&[FlvTag]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.tags.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the reader to end by itself.
    pub fn wait_finished(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops reading and returns everything received.
    pub fn stop(mut self) -> FlvPlayed {
        self.stop.store(true, Ordering::Relaxed);
        let end = match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err("player thread panicked".into())),
            None => Err("no thread".into()),
        };
        FlvPlayed {
            head: self.head(),
            header: *self.header.lock().unwrap(),
            tags: self.snapshot(),
            end,
            sent_at: self.sent_at,
        }
    }
}

impl Drop for BgFlvPlayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Coded video tags that arrived in [from, to).
pub fn flv_video_frames_between(tags: &[FlvTag], from: Instant, to: Instant) -> usize {
    tags.iter()
        .filter(|t| t.is_coded_video() && t.at >= from && t.at < to)
        .count()
}

/// The longest wall-clock gap between coded video tags arriving in
/// [from, to), the window's edges included.
pub fn flv_max_video_gap(tags: &[FlvTag], from: Instant, to: Instant) -> Duration {
    let mut prev = from;
    let mut gap = Duration::ZERO;
    for t in tags
        .iter()
        .filter(|t| t.is_coded_video() && t.at >= from && t.at < to)
    {
        gap = gap.max(t.at - prev);
        prev = t.at;
    }
    gap.max(to.saturating_duration_since(prev))
}

/// A summary of the first tags, for failure messages.
pub fn describe_flv(tags: &[FlvTag], n: usize) -> String {
    tags.iter()
        .take(n)
        .enumerate()
        .map(|(i, t)| format!("  #{i}: {}", t.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}
