//! HTTP/1.x on the one port, sans-IO: request parsing (on httparse) with
//! named bounds, routing of our URLs, and response heads.
//!
//! The driver (`server::http_conn`) reads bytes, calls [`parse_request`],
//! and writes what [`ResponseHead`] renders followed by the body.

pub mod client;

pub use client::{BodyDecoder, Framing};

use std::fmt::Write as _;

/// Bounds on one request head.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Bytes of request line plus headers; more is answered 431. This is the
    /// read buffer a connection may hold before a request is complete.
    pub header_bytes_max: usize,
    /// Header lines; more is answered 431. Each costs 32 bytes of stack
    /// while parsing.
    pub headers_max: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_bytes_max: 8 * 1024,
            headers_max: 64,
        }
    }
}

/// The most headers any configuration may allow (the parser's stack array).
pub const HEADERS_MAX_LIMIT: usize = 128;

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// Query parameters, percent-decoded.
    pub query: Vec<(String, String)>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// The Host header without its port, lowercased.
    pub host: Option<String>,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// How the request's body is framed: the driver reads past it (and
    /// discards it) before the next request of a keep-alive connection.
    pub body: Framing,
    /// The token of an `Authorization: Bearer <token>` header.
    pub bearer: Option<String>,
    /// The User-Agent header, for the access log.
    pub user_agent: Option<String>,
}

impl Request {
    /// The last value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        crate::query::param(&self.query, key)
    }

    /// True when the parameter is present and `1`/`true`/`yes`/empty.
    pub fn flag(&self, key: &str) -> bool {
        crate::query::flag(&self.query, key)
    }
}

/// The outcome of parsing a request head.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// A whole head: the request and the bytes it used.
    Complete {
        /// The request.
        request: Request,
        /// Bytes of the head, including the blank line.
        consumed: usize,
    },
    /// More bytes are needed.
    Incomplete,
    /// The head is malformed or over a bound: answer `status` and close.
    Invalid {
        /// 400 or 431.
        status: u16,
        /// What was wrong, for the response body and the log.
        what: String,
    },
}

/// Parses one request head from the front of `buf`.
pub fn parse_request(buf: &[u8], limits: &HttpLimits) -> Parse {
    let headers_max = limits.headers_max.min(HEADERS_MAX_LIMIT);
    let mut storage = [httparse::EMPTY_HEADER; HEADERS_MAX_LIMIT];
    let mut req = httparse::Request::new(&mut storage[..headers_max]);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Invalid {
                status: 431,
                what: format!("more than {headers_max} header lines (http.headers_max)"),
            }
        }
        Err(e) => {
            return Parse::Invalid {
                status: 400,
                what: format!("malformed request head: {e}"),
            }
        }
    };
    let consumed = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if buf.len() > limits.header_bytes_max {
                return Parse::Invalid {
                    status: 431,
                    what: format!(
                        "request head over {} bytes (http.header_bytes_max)",
                        limits.header_bytes_max
                    ),
                };
            }
            return Parse::Incomplete;
        }
    };
    if consumed > limits.header_bytes_max {
        return Parse::Invalid {
            status: 431,
            what: format!(
                "request head of {consumed} bytes is over {} (http.header_bytes_max)",
                limits.header_bytes_max
            ),
        };
    }
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Parse::Invalid {
            status: 400,
            what: "incomplete request line".into(),
        };
    };
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let Some(path) = percent_decode(raw_path) else {
        return Parse::Invalid {
            status: 400,
            what: "bad percent-encoding in the path".into(),
        };
    };
    let query = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((percent_decode(k)?, percent_decode(&v.replace('+', " "))?))
        })
        .collect();
    let mut host = None;
    let mut connection = None;
    let mut content_length: Option<u64> = None;
    let mut bearer = None;
    let mut user_agent = None;
    let mut transfer_encoding: Option<String> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            let v = String::from_utf8_lossy(h.value);
            host = host_without_port(v.trim());
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection = Some(String::from_utf8_lossy(h.value).to_ascii_lowercase());
        } else if h.name.eq_ignore_ascii_case("authorization") {
            let v = String::from_utf8_lossy(h.value);
            let v = v.trim();
            if let Some((scheme, token)) = v.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    bearer = Some(token.trim().to_string());
                }
            }
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(String::from_utf8_lossy(h.value).trim().to_string());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = String::from_utf8_lossy(h.value);
            let n = match v.trim().parse::<u64>() {
                Ok(n) if content_length.is_none_or(|m| m == n) => n,
                Ok(_) => {
                    return Parse::Invalid {
                        status: 400,
                        what: "conflicting Content-Length headers".into(),
                    }
                }
                Err(_) => {
                    return Parse::Invalid {
                        status: 400,
                        what: format!("bad Content-Length {:?}", v.trim()),
                    }
                }
            };
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            transfer_encoding = Some(match transfer_encoding {
                Some(t) => format!("{t}, {}", v.trim()),
                None => v.trim().to_string(),
            });
        }
    }
    // RFC 9112 6.3: a Transfer-Encoding whose final coding is chunked
    // frames the body (and overrides Content-Length); any other is an
    // unknown length, which a server must refuse.
    let body = match transfer_encoding {
        Some(t) if t.rsplit(',').next().map(str::trim) == Some("chunked") => Framing::Chunked,
        Some(t) => {
            return Parse::Invalid {
                status: 400,
                what: format!("Transfer-Encoding {t:?} does not end in chunked"),
            }
        }
        None => match content_length {
            Some(n) if n > 0 => Framing::Length(n),
            _ => Framing::Empty,
        },
    };
    let keep_alive = match (minor_version, connection.as_deref()) {
        (_, Some(c)) if c.contains("close") => false,
        (0, Some(c)) => c.contains("keep-alive"),
        (0, None) => false,
        _ => true,
    };
    Parse::Complete {
        request: Request {
            method: method.to_string(),
            path,
            query,
            minor_version,
            host,
            keep_alive,
            body,
            bearer,
            user_agent,
        },
        consumed,
    }
}

fn host_without_port(v: &str) -> Option<String> {
    let host = match v.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => v.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Decodes `%XX` escapes; None if an escape is malformed or the result is
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly (from_str_radix alone would take "+1").
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: the page listing live streams, with players.
    Index,
    /// `/api/streams`: the live streams as JSON.
    ApiStreams,
    /// The JSON API of `server::api` (`/api/v1/...`, `/status`,
    /// `/api/stream/...`).
    Api(ApiRoute),
    /// `/metrics`: every shard's metrics, Prometheus text format 0.0.4.
    Metrics,
    /// `/api/v1/stats` (or `/api/stats`): connections, bandwidth, totals.
    ApiStats,
    /// `/api/v1/shards`: per shard gauges, CPU time and percentiles.
    ApiShards,
    /// `/dashboard`: live charts of the JSON API, for a person.
    Dashboard,
    /// `/assets/{package}/{path}`: a file of an installed player library.
    Asset {
        /// npm package name, one of [`ASSET_PACKAGES`].
        package: String,
        /// Path inside the package, checked to stay inside it.
        path: String,
    },
    /// `/{app}/{stream}.flv`: HTTP-FLV.
    Flv {
        /// Application.
        app: String,
        /// Stream name.
        stream: String,
    },
    /// `/{app}/{stream}.m3u8`: the (LL-)HLS playlist.
    Playlist {
        /// Application.
        app: String,
        /// Stream name.
        stream: String,
    },
    /// `/{app}/{stream}/[audio/|video/]{file}`: a segment, part or init
    /// segment of an HLS rendition.
    Media {
        /// Application.
        app: String,
        /// Stream name.
        stream: String,
        /// `""`, `"audio"` or `"video"`.
        rendition: String,
        /// `.ts` or `.m4s` (an init segment is fMP4).
        container: crate::hls::Container,
        file: HlsFile,
    },
    /// Anything else.
    NotFound,
}

/// Which file of an HLS rendition a media URI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HlsFile {
    /// `{msn}.{ext}`, or `{msn}.{part}.{ext}` for an LL-HLS part.
    Media { msn: u64, part: Option<u32> },
    /// `init-{id}.mp4`: an fMP4 init segment (EXT-X-MAP).
    Init(u32),
}

impl Route {
    /// Part of the monitoring API: served on `internal_port` only when one
    /// is set (the main port then answers 404), else on the main port.
    /// Every API, metrics or dashboard route is listed here, so the rule
    /// lives in one place.
    ///
    /// The dashboard's charting library goes with the dashboard, so the
    /// page works on whichever port serves it.
    pub fn is_api(&self) -> bool {
        match self {
            Route::ApiStreams
            | Route::Api(_)
            | Route::Metrics
            | Route::ApiStats
            | Route::ApiShards
            | Route::Dashboard => true,
            Route::Asset { package, .. } => package == DASHBOARD_PACKAGE,
            _ => false,
        }
    }
}

/// A route of the JSON API (`server::api`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRoute {
    /// `/api/v1/server` and `/status`: version, uptime, shards, config.
    Server,
    /// `/api/v1/streams`: every live stream.
    Streams,
    /// `/api/v1/streams/{vhost}/{app}/{stream}`, or `/api/stream/{app}/{stream}`
    /// (vhost None: `?vhost=` or the default vhost).
    Stream {
        /// The vhost named in the path, if any.
        vhost: Option<String>,
        /// Application.
        app: String,
        /// Stream name.
        stream: String,
    },
    /// `/api/v1/clients`: every open connection.
    Clients,
    /// `/api/v1/clients/{id}`, the id as written (checked by the handler,
    /// so a bad one gets a JSON error naming it).
    Client {
        /// The client id.
        id: String,
    },
}

fn api_route(path: &str) -> Option<ApiRoute> {
    if path == "/status" || path == "/api/v1/server" {
        return Some(ApiRoute::Server);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let named = |p: &[&&str]| p.iter().all(|s| !s.is_empty());
    match parts.as_slice() {
        ["api", "v1", "streams"] => Some(ApiRoute::Streams),
        ["api", "v1", "streams", vhost, app, stream] if named(&[vhost, app, stream]) => {
            Some(ApiRoute::Stream {
                vhost: Some(vhost.to_string()),
                app: app.to_string(),
                stream: stream.to_string(),
            })
        }
        ["api", "stream", app, stream] if named(&[app, stream]) => Some(ApiRoute::Stream {
            vhost: None,
            app: app.to_string(),
            stream: stream.to_string(),
        }),
        ["api", "v1", "clients"] => Some(ApiRoute::Clients),
        ["api", "v1", "clients", id] if !id.is_empty() => {
            Some(ApiRoute::Client { id: id.to_string() })
        }
        _ => None,
    }
}

/// The npm package that draws the dashboard's charts.
pub const DASHBOARD_PACKAGE: &str = "uplot";

/// The npm packages `/assets/` serves: the player libraries and the
/// dashboard's charting library.
pub const ASSET_PACKAGES: &[&str] = &["hls.js", "mpegts.js", "shaka-player", DASHBOARD_PACKAGE];

/// Maps a decoded path to a route.
pub fn route(path: &str) -> Route {
    if path == "/" || path == "/index.html" {
        return Route::Index;
    }
    if path == "/api/streams" {
        return Route::ApiStreams;
    }
    match path {
        "/metrics" => return Route::Metrics,
        "/api/v1/stats" | "/api/stats" => return Route::ApiStats,
        "/api/v1/shards" => return Route::ApiShards,
        "/dashboard" | "/dashboard/" => return Route::Dashboard,
        _ => {}
    }
    if let Some(api) = api_route(path) {
        return Route::Api(api);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["assets", package, rest @ ..] = parts.as_slice() {
        let safe = !rest.is_empty()
            && rest
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\'));
        if ASSET_PACKAGES.contains(package) && safe {
            return Route::Asset {
                package: package.to_string(),
                path: rest.join("/"),
            };
        }
        return Route::NotFound;
    }
    let named = |app: &str, stream: &str| !app.is_empty() && !stream.is_empty();
    match parts.as_slice() {
        [app, file] => {
            if let Some(stream) = file.strip_suffix(".flv").filter(|s| named(app, s)) {
                return Route::Flv {
                    app: app.to_string(),
                    stream: stream.to_string(),
                };
            }
            if let Some(stream) = file.strip_suffix(".m3u8").filter(|s| named(app, s)) {
                return Route::Playlist {
                    app: app.to_string(),
                    stream: stream.to_string(),
                };
            }
            Route::NotFound
        }
        [app, stream, file] if named(app, stream) => media_route(app, stream, "", file),
        [app, stream, r @ ("audio" | "video"), file] if named(app, stream) => {
            media_route(app, stream, r, file)
        }
        _ => Route::NotFound,
    }
}

fn media_route(app: &str, stream: &str, rendition: &str, file: &str) -> Route {
    use crate::hls::Container;
    if let Some(id) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
        .and_then(|id| id.parse().ok())
    {
        return Route::Media {
            app: app.to_string(),
            stream: stream.to_string(),
            rendition: rendition.to_string(),
            container: Container::Fmp4,
            file: HlsFile::Init(id),
        };
    }
    let Some((name, container)) = Container::ALL.into_iter().find_map(|c| {
        file.strip_suffix(c.extension())
            .and_then(|f| f.strip_suffix('.'))
            .map(|name| (name, c))
    }) else {
        return Route::NotFound;
    };
    let (msn, part) = match name.split_once('.') {
        Some((m, p)) => (m.parse().ok(), p.parse().ok().map(Some)),
        None => (name.parse().ok(), Some(None)),
    };
    match (msn, part) {
        (Some(msn), Some(part)) => Route::Media {
            app: app.to_string(),
            stream: stream.to_string(),
            rendition: rendition.to_string(),
            container,
            file: HlsFile::Media { msn, part },
        },
        _ => Route::NotFound,
    }
}

/// A whole response, as a handler builds it and a driver writes it.
#[derive(Clone, Debug)]
pub struct Response {
    /// The head.
    pub head: ResponseHead,
    /// The body (its length is the head's Content-Length); a response to
    /// HEAD is written without it.
    pub body: bytes::Bytes,
}

impl Response {
    /// A response with a body of known length.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<bytes::Bytes>,
        keep_alive: bool,
    ) -> Self {
        let body = body.into();
        Self {
            head: ResponseHead::new(status, Some(content_type), body.len(), keep_alive),
            body,
        }
    }

    /// A plain-text response: one line saying what happened.
    pub fn text(status: u16, message: impl Into<String>, keep_alive: bool) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            message.into().into_bytes(),
            keep_alive,
        )
    }

    /// A response without a body (e.g. 204), with `extra` header lines.
    pub fn empty(status: u16, extra: Vec<String>, keep_alive: bool) -> Self {
        let mut head = ResponseHead::new(status, None, 0, keep_alive);
        head.extra = extra;
        Self {
            head,
            body: bytes::Bytes::new(),
        }
    }

    /// Adds a header line (without CRLF).
    pub fn with_header(mut self, line: String) -> Self {
        self.head.extra.push(line);
        self
    }
}

/// A response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Content-Type, if any.
    pub content_type: Option<&'static str>,
    /// Content-Length; None for a streamed body.
    pub content_length: Option<usize>,
    /// Streamed body with chunked transfer coding (HTTP/1.1 only).
    pub chunked: bool,
    /// Keep the connection for another request.
    pub keep_alive: bool,
    /// More header lines, each without CRLF.
    pub extra: Vec<String>,
}

impl ResponseHead {
    /// A status with a known-length body.
    pub fn new(
        status: u16,
        content_type: Option<&'static str>,
        len: usize,
        keep_alive: bool,
    ) -> Self {
        Self {
            status,
            content_type,
            content_length: Some(len),
            chunked: false,
            keep_alive,
            extra: Vec::new(),
        }
    }

    /// The head as bytes. Every response carries the CORS header, so a web
    /// player on another origin works.
    pub fn render(&self, minor_version: u8) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "HTTP/1.{minor_version} {} {}\r\nServer: shardcast\r\nAccess-Control-Allow-Origin: *\r\n",
            self.status,
            reason(self.status)
        );
        if let Some(t) = self.content_type {
            let _ = write!(s, "Content-Type: {t}\r\n");
        }
        if let Some(n) = self.content_length {
            let _ = write!(s, "Content-Length: {n}\r\n");
        } else if self.chunked {
            s.push_str("Transfer-Encoding: chunked\r\n");
        }
        if self.content_length.is_none() {
            s.push_str("Cache-Control: no-cache\r\n");
        }
        s.push_str(if self.keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        for line in &self.extra {
            s.push_str(line);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// The reason phrase of the statuses we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The chunk-size line of chunked transfer coding for a chunk of `len` bytes.
pub fn chunk_size_line(len: usize) -> String {
    format!("{len:x}\r\n")
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {

    #[test]
    fn a_percent_escape_is_two_hex_digits_exactly() {
        assert_eq!(super::percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(
            super::percent_decode("%+1"),
            None,
            "a sign is not a hex digit"
        );
        assert_eq!(super::percent_decode("%-1"), None);
        assert_eq!(super::percent_decode("%2"), None);
    }
    use super::*;

    fn parse(s: &str) -> Parse {
        parse_request(s.as_bytes(), &HttpLimits::default())
    }

    fn body_of(head: &str) -> Result<Framing, (u16, String)> {
        match parse(&format!("DELETE /api/v1/clients/1 HTTP/1.1\r\n{head}\r\n")) {
            Parse::Complete { request, .. } => Ok(request.body),
            Parse::Invalid { status, what } => Err((status, what)),
            Parse::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn request_bodies_are_framed_by_rfc_9112() {
        assert_eq!(body_of(""), Ok(Framing::Empty));
        assert_eq!(body_of("Content-Length: 0\r\n"), Ok(Framing::Empty));
        assert_eq!(body_of("Content-Length: 17\r\n"), Ok(Framing::Length(17)));
        assert_eq!(
            body_of("Content-Length: 17\r\nContent-Length: 17\r\n"),
            Ok(Framing::Length(17))
        );
        assert_eq!(
            body_of("Transfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n"),
            Ok(Framing::Chunked),
            "chunked overrides Content-Length"
        );
        let (status, what) = body_of("Content-Length: 3\r\nContent-Length: 4\r\n").unwrap_err();
        assert_eq!(status, 400);
        assert!(what.contains("conflicting Content-Length"), "{what}");
        let (status, what) = body_of("Content-Length: -1\r\n").unwrap_err();
        assert_eq!(status, 400);
        assert!(what.contains("bad Content-Length"), "{what}");
        let (status, what) = body_of("Transfer-Encoding: gzip\r\n").unwrap_err();
        assert_eq!(status, 400);
        assert!(what.contains("does not end in chunked"), "{what}");
    }

    #[test]
    fn parses_a_flv_request_with_query_and_host() {
        let Parse::Complete { request, consumed } =
            parse("GET /live/te%20st.flv?only-audio=1&vhost=v HTTP/1.1\r\nHost: Example.COM:8079\r\n\r\nrest")
        else {
            panic!("complete");
        };
        assert_eq!(consumed, 79);
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/live/te st.flv");
        assert!(request.flag("only-audio"));
        assert_eq!(request.param("vhost"), Some("v"));
        assert_eq!(request.host.as_deref(), Some("example.com"));
        assert!(request.keep_alive);
        assert_eq!(
            route(&request.path),
            Route::Flv {
                app: "live".into(),
                stream: "te st".into()
            }
        );
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let Parse::Complete { request, .. } = parse("GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!request.keep_alive);
        let Parse::Complete { request, .. } =
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(request.keep_alive);
        let Parse::Complete { request, .. } = parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!request.keep_alive);
    }

    #[test]
    fn incomplete_then_too_large() {
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: a\r\n"), Parse::Incomplete);
        let big = format!("GET / HTTP/1.1\r\nX-A: {}\r\n", "a".repeat(9000));
        let Parse::Invalid { status, what } = parse(&big) else {
            panic!()
        };
        assert_eq!(status, 431);
        assert!(what.contains("header_bytes_max"), "{what}");
    }

    #[test]
    fn too_many_headers_is_431_and_garbage_is_400() {
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..70 {
            s.push_str(&format!("X-{i}: v\r\n"));
        }
        s.push_str("\r\n");
        assert!(matches!(parse(&s), Parse::Invalid { status: 431, .. }));
        assert!(matches!(
            parse("GET / HTTP/9.9\r\n\r\n"),
            Parse::Invalid { status: 400, .. }
        ));
        assert!(matches!(
            parse("GET /%zz HTTP/1.1\r\n\r\n"),
            Parse::Invalid { status: 400, .. }
        ));
    }

    #[test]
    fn hls_and_asset_routes() {
        assert_eq!(
            route("/live/test.m3u8"),
            Route::Playlist {
                app: "live".into(),
                stream: "test".into()
            }
        );
        assert_eq!(
            route("/live/test/12.ts"),
            Route::Media {
                app: "live".into(),
                stream: "test".into(),
                rendition: String::new(),
                container: crate::hls::Container::Ts,
                file: HlsFile::Media {
                    msn: 12,
                    part: None
                },
            }
        );
        assert_eq!(
            route("/live/test/audio/12.3.ts"),
            Route::Media {
                app: "live".into(),
                stream: "test".into(),
                rendition: "audio".into(),
                container: crate::hls::Container::Ts,
                file: HlsFile::Media {
                    msn: 12,
                    part: Some(3)
                },
            }
        );
        assert_eq!(
            route("/live/test/video/12.3.m4s"),
            Route::Media {
                app: "live".into(),
                stream: "test".into(),
                rendition: "video".into(),
                container: crate::hls::Container::Fmp4,
                file: HlsFile::Media {
                    msn: 12,
                    part: Some(3)
                },
            }
        );
        assert_eq!(
            route("/live/test/init-4.mp4"),
            Route::Media {
                app: "live".into(),
                stream: "test".into(),
                rendition: String::new(),
                container: crate::hls::Container::Fmp4,
                file: HlsFile::Init(4),
            }
        );
        assert_eq!(route("/live/test/init-x.mp4"), Route::NotFound);
        assert_eq!(route("/live/test/12.mp4"), Route::NotFound);
        assert_eq!(route("/live/test/x.ts"), Route::NotFound);
        assert_eq!(route("/live/test/12.x.ts"), Route::NotFound);
        assert_eq!(
            route("/assets/hls.js/dist/hls.min.js"),
            Route::Asset {
                package: "hls.js".into(),
                path: "dist/hls.min.js".into()
            }
        );
        assert_eq!(route("/assets/hls.js/../../etc/passwd"), Route::NotFound);
        assert_eq!(route("/assets/left-pad/index.js"), Route::NotFound);
        assert_eq!(route("/api/streams"), Route::ApiStreams);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/api/v1/stats"), Route::ApiStats);
        assert_eq!(route("/api/stats"), Route::ApiStats);
        assert_eq!(route("/api/v1/shards"), Route::ApiShards);
        assert!(route("/metrics").is_api() && route("/api/v1/shards").is_api());
        assert_eq!(route("/dashboard"), Route::Dashboard);
        assert!(route("/dashboard").is_api());
        assert!(route("/assets/uplot/dist/uPlot.iife.min.js").is_api());
        assert!(!route("/assets/hls.js/dist/hls.min.js").is_api());
    }

    #[test]
    fn api_routes() {
        assert_eq!(route("/status"), Route::Api(ApiRoute::Server));
        assert_eq!(route("/api/v1/server"), Route::Api(ApiRoute::Server));
        assert_eq!(route("/api/v1/streams"), Route::Api(ApiRoute::Streams));
        assert_eq!(
            route("/api/v1/streams/v/live/test"),
            Route::Api(ApiRoute::Stream {
                vhost: Some("v".into()),
                app: "live".into(),
                stream: "test".into()
            })
        );
        assert_eq!(
            route("/api/stream/live/test"),
            Route::Api(ApiRoute::Stream {
                vhost: None,
                app: "live".into(),
                stream: "test".into()
            })
        );
        assert_eq!(route("/api/v1/clients"), Route::Api(ApiRoute::Clients));
        assert_eq!(
            route("/api/v1/clients/513"),
            Route::Api(ApiRoute::Client { id: "513".into() })
        );
        assert_eq!(route("/api/v1/streams/v/live/"), Route::NotFound);
        assert_eq!(route("/api/v1/clients/"), Route::NotFound);
        assert!(route("/api/streams").is_api() && route("/status").is_api());
        assert!(!route("/live/test.flv").is_api() && !route("/").is_api());
    }

    #[test]
    fn routes() {
        assert_eq!(route("/"), Route::Index);
        assert_eq!(route("/live/.flv"), Route::NotFound);
        assert_eq!(route("/a/b/c.flv"), Route::NotFound);
        assert_eq!(route("/live/x.mp4"), Route::NotFound);
    }

    #[test]
    fn renders_heads() {
        let mut h = ResponseHead::new(404, Some("text/plain"), 5, true);
        h.extra.push("Allow: GET".into());
        let s = String::from_utf8(h.render(1)).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 404 Not Found\r\nServer: shardcast\r\nAccess-Control-Allow-Origin: *\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\nAllow: GET\r\n\r\n"
        );
        let streamed = ResponseHead {
            status: 200,
            content_type: Some("video/x-flv"),
            content_length: None,
            chunked: true,
            keep_alive: false,
            extra: vec![],
        };
        let s = String::from_utf8(streamed.render(1)).unwrap();
        assert!(s.contains("Transfer-Encoding: chunked\r\n"));
        assert!(s.contains("Cache-Control: no-cache\r\n"));
        assert_eq!(chunk_size_line(255), "ff\r\n");
    }
}
