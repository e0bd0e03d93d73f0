//! HTTP/1.1 client framing, sans-IO, shared by the HTTP players (HTTP-FLV
//! and HLS): the GET request, the response head (on httparse, bounded), and
//! the body's framing (Content-Length, chunked, or until close).
//!
//! Defined by: RFC 9112 (HTTP/1.1) 4 (status line), 6.3 (message body
//! length), 7.1 (chunked transfer coding), 9.3 (persistence); RFC 9110
//! 6.4.1 (responses without content: HEAD, 1xx, 204, 304).
//!
//! No socket and no clock: the driver reads bytes, calls
//! [`parse_response_head`] until it is `Complete`, then feeds the bytes
//! after the head to a [`BodyDecoder`], which hands back the body's data as
//! slices of the input (no copy) until [`BodyDecoder::is_done`].

use std::fmt;

/// Bytes of status line plus headers a response may have; a longer head is
/// [`Parse::Invalid`]. This bounds what a player buffers before a body
/// starts.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Header lines a response may have (32 bytes of stack each while parsing).
pub const RESPONSE_HEADERS_MAX: usize = 32;
/// Bytes of one chunk-size line, extensions included (RFC 9112 7.1.1).
pub const CHUNK_LINE_BYTES_MAX: usize = 1024;
/// Bytes of the trailer section after the last chunk (RFC 9112 7.1.2).
pub const TRAILER_BYTES_MAX: usize = 8 * 1024;

/// The outcome of parsing a response head (three outcomes: need more
/// bytes is not an error).
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A whole head and the bytes it used, blank line included.
    Complete { value: T, consumed: usize },
    /// More bytes are needed.
    Incomplete,
    /// Malformed, or over a bound; `what` says which.
    Invalid { what: String },
}

/// How the body of a response ends (RFC 9112 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A response's status line and the headers a player needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase, for error messages.
    pub reason: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub framing: Framing,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
    pub content_type: Option<String>,
}

impl ResponseHead {
    /// `404 Not Found`.
    pub fn status_line(&self) -> String {
        format!("{} {}", self.status, self.reason)
    }
}

/// Appends a GET request for `target` (path and query) on `authority`
/// (`host[:port]`, the Host header) to `out`. The connection is kept
/// alive (the HTTP/1.1 default).
pub fn write_get(out: &mut Vec<u8>, authority: &str, target: &str) {
    for piece in [
        "GET ",
        target,
        " HTTP/1.1\r\nHost: ",
        authority,
        concat!(
            "\r\nUser-Agent: shardcast-bench/",
            env!("CARGO_PKG_VERSION"),
            "\r\nAccept: */*\r\n\r\n"
        ),
    ] {
        out.extend_from_slice(piece.as_bytes());
    }
}

/// An `http://<ip>[:<port>]/<path>` URL, as a hook is configured. The host
/// must be an IP address (or `localhost`): a name would need a DNS lookup,
/// which a caller without a resolver of its own would do blocking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Where to connect.
    pub addr: std::net::SocketAddr,
    /// The Host header: the URL's host and port as written.
    pub authority: String,
    /// Path and query, `/` when the URL has none.
    pub target: String,
}

impl HttpUrl {
    /// Parses `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| "must start with http://".to_string())?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) =
            match authority.strip_prefix('[') {
                Some(inner) => {
                    let (h, after) = inner
                        .split_once(']')
                        .ok_or_else(|| "no ] after an IPv6 host".to_string())?;
                    match after {
                        "" => (h, None),
                        _ => (
                            h,
                            Some(after.strip_prefix(':').ok_or_else(|| {
                                format!("{after:?} after the IPv6 host is no :port")
                            })?),
                        ),
                    }
                }
                None => match authority.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (authority, None),
                },
            };
        let port: u16 = match port {
            None => 80,
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p:?} is not a number 0..=65535"))?,
        };
        let ip: std::net::IpAddr = if host.eq_ignore_ascii_case("localhost") {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            host.parse().map_err(|_| {
                format!("host {host:?} is not an IP address (names are not looked up)")
            })?
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path has spaces or control characters".into());
        }
        Ok(HttpUrl {
            addr: std::net::SocketAddr::new(ip, port),
            authority: authority.to_string(),
            target,
        })
    }
}

/// Appends a POST of `body` (of `content_type`) to `target` on `authority`
/// to `out`, asking the server to close the connection after its answer.
pub fn write_post(
    out: &mut Vec<u8>,
    authority: &str,
    target: &str,
    content_type: &str,
    body: &[u8],
) {
    let length = body.len().to_string();
    for piece in [
        "POST ",
        target,
        " HTTP/1.1\r\nHost: ",
        authority,
        concat!(
            "\r\nUser-Agent: shardcast/",
            env!("CARGO_PKG_VERSION"),
            "\r\nConnection: close\r\nContent-Type: "
        ),
        content_type,
        "\r\nContent-Length: ",
        &length,
        "\r\n\r\n",
    ] {
        out.extend_from_slice(piece.as_bytes());
    }
    out.extend_from_slice(body);
}

/// Parses a response head from the start of `buf`. `head_request`: the
/// request was HEAD, so the response has no body whatever it says.
pub fn parse_response_head(buf: &[u8], head_request: bool) -> Parse<ResponseHead> {
    let mut storage = [httparse::EMPTY_HEADER; RESPONSE_HEADERS_MAX];
    let mut resp = httparse::Response::new(&mut storage);
    let consumed = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= RESPONSE_HEAD_BYTES_MAX => {
            return Parse::Invalid {
                what: format!("response head longer than {RESPONSE_HEAD_BYTES_MAX} bytes"),
            }
        }
        Ok(httparse::Status::Partial) => return Parse::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid {
                what: format!("more than {RESPONSE_HEADERS_MAX} response headers"),
            }
        }
        Err(e) => {
            return Parse::Invalid {
                what: format!("malformed response head: {e}"),
            }
        }
    };
    if consumed > RESPONSE_HEAD_BYTES_MAX {
        return Parse::Invalid {
            what: format!("response head longer than {RESPONSE_HEAD_BYTES_MAX} bytes"),
        };
    }
    let status = resp.code.unwrap_or(0);
    let minor_version = resp.version.unwrap_or(0);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut content_type = None;
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let Ok(n) = value.parse::<u64>() else {
                return Parse::Invalid {
                    what: format!("bad Content-Length '{value}'"),
                };
            };
            if content_length.is_some_and(|m| m != n) {
                return Parse::Invalid {
                    what: "conflicting Content-Length headers".into(),
                };
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a final `chunked` frames the body (RFC 9112 6.3 item 4).
            for coding in value.split(',').map(str::trim) {
                chunked = coding.eq_ignore_ascii_case("chunked");
                other_coding |= !chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive_token |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        }
    }
    let framing = if head_request || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::UntilClose
    } else {
        content_length.map_or(Framing::UntilClose, Framing::Length)
    };
    let persistent = if minor_version >= 1 {
        !close
    } else {
        keep_alive_token && !close
    };
    Parse::Complete {
        value: ResponseHead {
            status,
            reason: resp.reason.unwrap_or("").to_string(),
            minor_version,
            framing,
            keep_alive: persistent && framing != Framing::UntilClose,
            content_type,
        },
        consumed,
    }
}

/// A body that does not follow its framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError {
    /// Offset in the body's bytes (framing included) where it went wrong.
    pub pos: u64,
    pub what: &'static str,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {} of the body", self.what, self.pos)
    }
}

impl std::error::Error for BodyError {}

/// Where a [`BodyDecoder`] is, named for what it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyState {
    /// `remaining` bytes of a Content-Length body.
    Length {
        remaining: u64,
    },
    /// A chunk-size line: `size` so far, `digits` read, `line` bytes read,
    /// in the extensions after `;`.
    ChunkSize {
        size: u64,
        digits: usize,
        line: usize,
        extension: bool,
    },
    /// `remaining` bytes of chunk data.
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after chunk data (`cr`: the CR was read).
    ChunkDataEnd {
        cr: bool,
    },
    /// Trailer lines after the last chunk: `line` bytes of the current one,
    /// `total` bytes of the section.
    Trailer {
        line: usize,
        total: usize,
    },
    /// Everything until the connection closes.
    UntilClose,
    Done,
}

/// Undoes a body's framing, incrementally: feed it whatever bytes arrive.
///
/// ```text
/// Length:  data ─▶ Done
/// Chunked: ChunkSize ─▶ ChunkData ─▶ ChunkDataEnd ─▶ ChunkSize … size 0 ─▶ Trailer ─▶ Done
/// ```
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    state: BodyState,
    /// Body bytes consumed so far, framing included (for error offsets).
    pos: u64,
}

const CHUNK_SIZE_START: BodyState = BodyState::ChunkSize {
    size: 0,
    digits: 0,
    line: 0,
    extension: false,
};

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length { remaining: n },
            Framing::Chunked => CHUNK_SIZE_START,
            Framing::UntilClose => BodyState::UntilClose,
        };
        BodyDecoder { state, pos: 0 }
    }

    /// The body is complete; bytes after it belong to the next response.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Decodes from the start of `input`: returns how many bytes it
    /// consumed and the body data among them (a slice of `input`, maybe
    /// empty). It stops after one data slice, at the end of the body, or
    /// when `input` is used up; call it again with the rest.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, &'a [u8]), BodyError> {
        let mut at = 0;
        while at < input.len() {
            let err = |what| BodyError {
                pos: self.pos + at as u64,
                what,
            };
            let b = input[at];
            match &mut self.state {
                BodyState::Done => break,
                BodyState::UntilClose => {
                    self.pos += input.len() as u64;
                    return Ok((input.len(), &input[at..]));
                }
                BodyState::Length { remaining } | BodyState::ChunkData { remaining } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = match self.state {
                            BodyState::Length { .. } => BodyState::Done,
                            _ => BodyState::ChunkDataEnd { cr: false },
                        };
                    }
                    let data = &input[at..at + n];
                    self.pos += (at + n) as u64;
                    return Ok((at + n, data));
                }
                BodyState::ChunkSize {
                    size,
                    digits,
                    line,
                    extension,
                } => {
                    *line += 1;
                    if *line > CHUNK_LINE_BYTES_MAX {
                        return Err(err("chunk-size line too long"));
                    }
                    match b {
                        b'\n' if *digits == 0 => return Err(err("chunk size without digits")),
                        b'\n' if *size == 0 => {
                            self.state = BodyState::Trailer { line: 0, total: 0 }
                        }
                        b'\n' => {
                            self.state = BodyState::ChunkData { remaining: *size };
                        }
                        b'\r' => {}
                        _ if *extension => {}
                        b';' | b' ' | b'\t' => *extension = true,
                        _ => {
                            let digit = (b as char)
                                .to_digit(16)
                                .ok_or_else(|| err("chunk size is not hexadecimal"))?;
                            *size = size
                                .checked_mul(16)
                                .map(|s| s + u64::from(digit))
                                .ok_or_else(|| err("chunk size overflows"))?;
                            *digits += 1;
                        }
                    }
                }
                BodyState::ChunkDataEnd { cr } => match b {
                    b'\r' if !*cr => *cr = true,
                    b'\n' => self.state = CHUNK_SIZE_START,
                    _ => return Err(err("no CRLF after chunk data")),
                },
                BodyState::Trailer { line, total } => {
                    *total += 1;
                    if *total > TRAILER_BYTES_MAX {
                        return Err(err("trailer section too long"));
                    }
                    match b {
                        b'\n' if *line == 0 => self.state = BodyState::Done,
                        b'\n' => *line = 0,
                        // A CR before the LF does not make a line non-empty.
                        b'\r' if *line == 0 => {}
                        _ => *line += 1,
                    }
                }
            }
            at += 1;
        }
        self.pos += at as u64;
        Ok((at, &[]))
    }

    /// The connection closed: Ok if that ends the body (a body framed by
    /// the close, or one already complete).
    pub fn close(&mut self) -> Result<(), BodyError> {
        match self.state {
            BodyState::UntilClose | BodyState::Done => {
                self.state = BodyState::Done;
                Ok(())
            }
            _ => Err(BodyError {
                pos: self.pos,
                what: "connection closed inside the body",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_urls_are_ip_addresses_with_a_path() {
        let u = HttpUrl::parse("http://127.0.0.1:9000/hooks/play?x=1").unwrap();
        assert_eq!(u.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            (u.authority.as_str(), u.target.as_str()),
            ("127.0.0.1:9000", "/hooks/play?x=1")
        );
        let u = HttpUrl::parse("http://[::1]/").unwrap();
        assert_eq!(u.addr, "[::1]:80".parse().unwrap());
        let u = HttpUrl::parse("http://localhost:8").unwrap();
        assert_eq!((u.addr.port(), u.target.as_str()), (8, "/"));
        for (bad, why) in [
            ("https://127.0.0.1/", "http://"),
            ("http://example.com/", "not an IP address"),
            ("http://127.0.0.1:99999/", "port"),
            ("http://127.0.0.1/a b", "spaces"),
            ("http://[::1/", "]"),
        ] {
            let e = HttpUrl::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_post_has_its_length_and_asks_to_close() {
        let mut out = Vec::new();
        write_post(&mut out, "h:1", "/p", "application/json", b"{}");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("POST /p HTTP/1.1\r\nHost: h:1\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(
            text.ends_with("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
            "{text}"
        );
    }

    fn head(text: &str) -> ResponseHead {
        match parse_response_head(text.as_bytes(), false) {
            Parse::Complete { value, consumed } => {
                assert_eq!(consumed, text.len());
                value
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writes_a_keep_alive_get() {
        let mut out = Vec::new();
        write_get(&mut out, "127.0.0.1:8079", "/live/x.m3u8?_HLS_msn=3");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "GET /live/x.m3u8?_HLS_msn=3 HTTP/1.1\r\nHost: 127.0.0.1:8079\r\nUser-Agent: \
             shardcast-bench/"
        ));
        assert!(text.ends_with("\r\nAccept: */*\r\n\r\n"));
    }

    #[test]
    fn heads_give_status_framing_and_persistence() {
        let h = head(
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: 376\r\n\
             Connection: keep-alive\r\n\r\n",
        );
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(376));
        assert!(h.keep_alive);
        assert_eq!(h.content_type.as_deref(), Some("video/mp2t"));
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless asked");
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(h.framing, Framing::UntilClose);
        assert!(!h.keep_alive);
        let h = head("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.status_line(), "404 Not Found");
        let h = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.framing, Framing::Empty);
        match parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true) {
            Parse::Complete { value, .. } => assert_eq!(value.framing, Framing::Empty),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heads_are_incomplete_or_invalid_with_a_reason() {
        let full = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                parse_response_head(&full.as_bytes()[..cut], false),
                Parse::Incomplete,
                "cut at {cut}"
            );
        }
        let invalid = |text: &[u8]| match parse_response_head(text, false) {
            Parse::Invalid { what } => what,
            other => panic!("{other:?}"),
        };
        assert!(invalid(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").contains("x"));
        assert!(
            invalid(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
                .contains("conflicting")
        );
        assert!(invalid(b"SIP/2.0 200 OK\r\n\r\n").contains("malformed"));
        let mut long = b"HTTP/1.1 200 OK\r\nX-Padding: ".to_vec();
        long.resize(RESPONSE_HEAD_BYTES_MAX, b'a');
        let many: String = (0..=RESPONSE_HEADERS_MAX)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert!(invalid(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).contains("more than"));
        assert!(invalid(&long).contains("longer than"));
    }

    /// Decodes `input` fed in pieces of `step` bytes; returns the data and
    /// the bytes left after the body.
    fn decode_all(framing: Framing, input: &[u8], step: usize) -> (Vec<u8>, usize) {
        let mut d = BodyDecoder::new(framing);
        let mut data = Vec::new();
        let mut at = 0;
        while at < input.len() && !d.is_done() {
            let end = (at + step).min(input.len());
            let mut piece = &input[at..end];
            while !piece.is_empty() && !d.is_done() {
                let (used, got) = d.decode(piece).unwrap();
                data.extend_from_slice(got);
                at += used;
                piece = &piece[used..];
            }
            if !piece.is_empty() {
                break;
            }
        }
        assert!(d.is_done(), "not done after {at} bytes");
        (data, input.len() - at)
    }

    #[test]
    fn chunked_bodies_decode_at_every_split() {
        let body =
            b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..=body.len() {
            let (data, left) = decode_all(Framing::Chunked, body, step);
            assert_eq!(data, b"Wikipedia in \r\n\r\nchunks.", "step {step}");
            assert_eq!(left, 4);
        }
        let (data, left) = decode_all(Framing::Length(3), b"abcdef", 2);
        assert_eq!((data.as_slice(), left), (&b"abc"[..], 3));
        assert!(BodyDecoder::new(Framing::Empty).is_done());
    }

    #[test]
    fn bad_chunks_name_the_offset() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        assert_eq!(
            d.decode(b"2\r\nabX"),
            Ok((5, &b"ab"[..])),
            "the data comes out first"
        );
        assert_eq!(
            d.decode(b"X"),
            Err(BodyError {
                pos: 5,
                what: "no CRLF after chunk data"
            })
        );
        let mut d = BodyDecoder::new(Framing::Chunked);
        let e = d.decode(b"1g\r\n").unwrap_err();
        assert_eq!((e.pos, e.what), (1, "chunk size is not hexadecimal"));
        let mut d = BodyDecoder::new(Framing::Chunked);
        let e = d.decode(&[b'1'; 20]).unwrap_err();
        assert_eq!(e.what, "chunk size overflows");
        let mut d = BodyDecoder::new(Framing::Chunked);
        let e = d.decode(&[b' '; CHUNK_LINE_BYTES_MAX + 1]).unwrap_err();
        assert_eq!(e.what, "chunk-size line too long");
        let mut d = BodyDecoder::new(Framing::Length(4));
        let _ = d.decode(b"ab").unwrap();
        assert_eq!(d.close().unwrap_err().pos, 2);
        let mut d = BodyDecoder::new(Framing::UntilClose);
        assert_eq!(d.decode(b"xyz"), Ok((3, &b"xyz"[..])));
        assert!(d.close().is_ok() && d.is_done());
    }
}
