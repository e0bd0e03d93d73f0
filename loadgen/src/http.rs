//! HTTP-FLV players: one `GET /app/stream.flv` on a glommio socket, the
//! response's framing undone by [`http1`], and an FLV tag reader
//! ([`FlvReader`]) that keeps only what the stats need.
//!
//! Kept as cheap as the RTMP player: one read buffer ([`READ_BUF_LEN`]),
//! body data handed on as slices of it, and of each tag only its header
//! and the first [`PREFIX_LEN`] bytes of its body (the FLV header flags and
//! the synthetic publisher's stamp); the rest of a body is skipped by
//! count, never copied.
//!
//! ```text
//! connect, GET ─▶ response head ─200─▶ playing: body framing ─▶ FLV tags ─▶ PlayerRecord
//!                      └─other─▶ error "HTTP 404 Not Found"
//! ```

use std::cell::RefCell;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use proto::flv::{
    parse_file_header, Parse, FILE_HEADER_LEN, PREVIOUS_TAG_SIZE_LEN, TAG_HEADER_LEN,
    TAG_TYPE_AUDIO, TAG_TYPE_VIDEO,
};
use proto::media::{AudioPacket, AudioTagHeader, VideoTagHeader};

use crate::net::{media_socket, READ_BUF_LEN};
use crate::runtime::{player_started, start_within, wall_us, ThreadCtx};
use crate::stats::{Media, PlayerRecord, Window};
use crate::synth::STAMP_PREFIX_LEN;
use crate::tls::{PlayerStream, TlsClient};
use proto::http::client::{self as http1, BodyDecoder, Framing};

/// An `http://host[:port]/path[?query]` or `https://…` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// https://: TLS.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the request's Host header.
    pub authority: String,
    /// The request target: path and query, starting with `/`.
    pub target: String,
}

/// The port of an http:// URL that names none.
const DEFAULT_PORT: u16 = 80;
/// The port of an https:// URL that names none.
const DEFAULT_TLS_PORT: u16 = 443;

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(format!("{url}: not an http:// or https:// URL")),
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let (host, port) = match authority.rsplit_once(':') {
            // A colon inside brackets belongs to an IPv6 address.
            Some((h, p)) if !p.contains(']') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("{url}: bad port '{p}'"))?;
                (h, port)
            }
            _ if tls => (authority, DEFAULT_TLS_PORT),
            _ => (authority, DEFAULT_PORT),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        Ok(HttpUrl {
            tls,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            target,
        })
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// `rtmp://host:port/app/stream` for `http://host:port/app/stream.ext`:
    /// where shardcast, which serves RTMP and HTTP on one port, takes the
    /// publish of what this URL plays.
    pub fn rtmp_publish_url(&self) -> String {
        let path = self.path();
        let name_start = path.rfind('/').map_or(0, |i| i + 1);
        let path = match path[name_start..].rfind('.') {
            Some(dot) => &path[..name_start + dot],
            None => path,
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("rtmp://{host}:{}{path}", self.port)
    }
}

/// Where HTTP-FLV players connect, and the request they send.
#[derive(Clone, Debug)]
pub struct HttpFlvTarget {
    pub addr: SocketAddr,
    /// `GET <target> HTTP/1.1` with Host and Accept, as a player such as
    /// mpegts.js or ffmpeg sends it (keep-alive, the HTTP/1.1 default).
    request: Vec<u8>,
    /// For https://.
    tls: Option<TlsClient>,
}

impl HttpFlvTarget {
    pub fn new(addr: SocketAddr, url: HttpUrl, tls: Option<TlsClient>) -> Self {
        let mut request = Vec::new();
        http1::write_get(&mut request, &url.authority, &url.target);
        HttpFlvTarget { addr, request, tls }
    }
}

/// Plays until the response ends: Ok when the server ends it or closes
/// the connection, Err naming what went wrong otherwise.
/// [`runtime::run_player`](crate::runtime::run_player) records the outcome.
pub async fn play(
    target: &HttpFlvTarget,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
) -> Result<(), String> {
    let started = start_within("HTTP response", start_play(target, rec, ctx)).await?;
    read_media(started, rec, ctx).await
}

/// A response head too long for the read buffer is refused by the head
/// parser before the buffer fills.
const _: () = assert!(http1::RESPONSE_HEAD_BYTES_MAX < READ_BUF_LEN);

/// A player whose response head said 200: the socket, the read buffer and
/// where in it the body starts.
struct Started {
    stream: PlayerStream,
    buf: Vec<u8>,
    body: std::ops::Range<usize>,
    framing: Framing,
}

/// Connects, sends the request and reads the response head.
async fn start_play(
    target: &HttpFlvTarget,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
) -> Result<Started, String> {
    let mut stream = PlayerStream::connect(target.addr, target.tls.as_ref()).await?;
    stream
        .write_all(&target.request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = vec![0u8; READ_BUF_LEN];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection before the response head".into());
        }
        ctx.on_read(rec, n, &ctx.window());
        filled += n;
        match http1::parse_response_head(&buf[..filled], false) {
            http1::Parse::Complete { value, consumed } => {
                if value.status != 200 {
                    return Err(format!("HTTP {}", value.status_line()));
                }
                player_started(rec, ctx);
                return Ok(Started {
                    stream,
                    buf,
                    body: consumed..filled,
                    framing: value.framing,
                });
            }
            http1::Parse::Incomplete => {}
            http1::Parse::Invalid { what } => return Err(format!("HTTP: {what}")),
        }
    }
}

/// Reads the body until it ends.
async fn read_media(
    started: Started,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
) -> Result<(), String> {
    let Started {
        mut stream,
        mut buf,
        body: mut got,
        framing,
    } = started;
    let window = ctx.window();
    // Dropped before the stream: the socket leaves the set before it closes.
    let media = media_socket(stream.tcp(), ctx)?;
    let mut body = BodyDecoder::new(framing);
    let mut flv = FlvReader::default();
    loop {
        feed(&buf[got], &mut body, &mut flv, rec, ctx, &window)?;
        if body.is_done() {
            return Ok(());
        }
        let n = stream
            .read_swept(&ctx.sweeper, &media, &mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return body.close().map_err(|e| format!("HTTP: {e}"));
        }
        // As for RTMP players: let timers and other players run.
        glommio::yield_if_needed().await;
        ctx.on_read(rec, n, &window);
        got = 0..n;
    }
}

/// Undoes the body framing of `input` and records each FLV tag in it.
fn feed(
    mut input: &[u8],
    body: &mut BodyDecoder,
    flv: &mut FlvReader,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
    window: &Window,
) -> Result<(), String> {
    let now = Instant::now();
    let mut wall = None;
    while !input.is_empty() && !body.is_done() {
        let (used, mut data) = body.decode(input).map_err(|e| format!("HTTP: {e}"))?;
        input = &input[used..];
        while let Some(tag) = flv.read(&mut data).map_err(|e| format!("FLV: {e}"))? {
            if let Some(media) = tag.media() {
                let wall_now = *wall.get_or_insert_with(wall_us);
                rec.borrow_mut().on_media(
                    &media,
                    now,
                    wall_now,
                    window,
                    &mut ctx.hists.borrow_mut(),
                );
            }
        }
    }
    Ok(())
}

/// Bytes of each tag body the reader keeps: what [`Media`] needs (the FLV
/// audio/video header flags and the synthetic publisher's stamp).
pub const PREFIX_LEN: usize = STAMP_PREFIX_LEN;
/// The largest tag body the reader accepts. The DataSize field allows
/// 16 MiB; a real keyframe, even of a 4K stream, is a few MiB, so a larger
/// size is a reader that lost the tag boundaries. The reader never buffers
/// a body, so this bounds no memory, only how long a desynchronised reader
/// skips before the PreviousTagSize check catches it.
pub const TAG_BODY_LEN_MAX: u32 = 8 * 1024 * 1024;
/// The fixed-size fields the reader collects: the file header with
/// PreviousTagSize0, a tag header, a PreviousTagSize.
const FIXED_LEN: usize = FILE_HEADER_LEN + PREVIOUS_TAG_SIZE_LEN;
const _: () = assert!(TAG_HEADER_LEN <= FIXED_LEN && PREVIOUS_TAG_SIZE_LEN <= FIXED_LEN);
/// The Filter bit of a tag header: an encrypted body (FLV E.4.1).
const TAG_FILTER: u8 = 0x20;
/// The TagType bits of a tag header's first byte.
const TAG_TYPE_MASK: u8 = 0x1f;

/// An FLV stream that breaks the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvError {
    /// Offset in the FLV stream (after HTTP framing) of the bad field.
    pub pos: u64,
    pub what: &'static str,
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {} of the FLV stream", self.what, self.pos)
    }
}

/// What the reader waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The 9-byte file header and PreviousTagSize0.
    FileHeader,
    /// An 11-byte tag header.
    TagHeader,
    /// `remaining` bytes of a body of `len` bytes.
    Body {
        tag_type: u8,
        len: u32,
        remaining: u32,
    },
    /// The PreviousTagSize after a tag, which must be `expect`.
    PreviousTagSize { expect: u32 },
}

/// A sans-IO FLV tag reader that keeps only each tag's header and the
/// first [`PREFIX_LEN`] bytes of its body (under 100 bytes in all).
///
/// Defined by: FLV v10.1 annex E (E.2 header, E.3 body, E.4.1 tags).
///
/// ```text
/// FileHeader ─▶ TagHeader ─▶ Body ─▶ (tag) PreviousTagSize ─┐
///                   ▲────────────────────────────────────────┘
/// ```
#[derive(Clone, Debug)]
pub struct FlvReader {
    state: Expect,
    /// The fixed-size field being collected, and how much of it is in.
    fixed: [u8; FIXED_LEN],
    fixed_len: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// FLV stream bytes consumed, for error offsets.
    pos: u64,
}

impl Default for FlvReader {
    fn default() -> Self {
        FlvReader {
            state: Expect::FileHeader,
            fixed: [0; FIXED_LEN],
            fixed_len: 0,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            pos: 0,
        }
    }
}

/// One tag as the reader reports it, when its body has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlvTag<'a> {
    /// TagType: 8 audio, 9 video, 18 script data, or another value as read.
    pub tag_type: u8,
    pub body_len: usize,
    /// The body's first `min(body_len, PREFIX_LEN)` bytes.
    pub prefix: &'a [u8],
}

impl<'a> FlvTag<'a> {
    /// The tag as the stats see it; None for script data and other tags,
    /// and, like the RTMP client, for empty bodies and audio/video headers
    /// that do not parse.
    pub fn media(&self) -> Option<Media<'a>> {
        let (video, keyframe, sequence_header) = match self.tag_type {
            TAG_TYPE_VIDEO => {
                let h = VideoTagHeader::parse(self.prefix).ok()?;
                (true, h.is_keyframe(), h.is_sequence_header())
            }
            TAG_TYPE_AUDIO => {
                let h = AudioTagHeader::parse(self.prefix).ok()?;
                (false, false, h.packet == AudioPacket::SequenceStart)
            }
            _ => return None,
        };
        Some(Media {
            video,
            keyframe,
            sequence_header,
            len: self.body_len,
            prefix: self.prefix,
        })
    }
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b))
}

impl FlvReader {
    /// Reads from the front of `input`, advancing it, until a tag's body
    /// ends (then that tag) or `input` is used up (then None: call again
    /// with more).
    pub fn read(&mut self, input: &mut &[u8]) -> Result<Option<FlvTag<'_>>, FlvError> {
        loop {
            match self.state {
                Expect::FileHeader => {
                    if !self.fill(input, FIXED_LEN) {
                        return Ok(None);
                    }
                    match parse_file_header(&self.fixed) {
                        Parse::Complete { .. } => self.state = Expect::TagHeader,
                        Parse::Invalid { pos, what } => {
                            return Err(self.error(FIXED_LEN, pos, what))
                        }
                        Parse::Incomplete => {
                            return Err(self.error(FIXED_LEN, 0, "FLV header (bug: incomplete)"))
                        }
                    }
                }
                Expect::TagHeader => {
                    if !self.fill(input, TAG_HEADER_LEN) {
                        return Ok(None);
                    }
                    let h = &self.fixed[..TAG_HEADER_LEN];
                    if h[0] & TAG_FILTER != 0 {
                        let what = "FLV tag Filter (encrypted tags are not supported)";
                        return Err(self.error(TAG_HEADER_LEN, 0, what));
                    }
                    let len = be(&h[1..4]);
                    if len > TAG_BODY_LEN_MAX {
                        let what = "FLV DataSize (above TAG_BODY_LEN_MAX)";
                        return Err(self.error(TAG_HEADER_LEN, 1, what));
                    }
                    self.prefix_len = 0;
                    self.state = Expect::Body {
                        tag_type: h[0] & TAG_TYPE_MASK,
                        len,
                        remaining: len,
                    };
                }
                Expect::Body {
                    tag_type,
                    len,
                    remaining,
                } => {
                    let take = input.len().min(remaining as usize);
                    let keep = take.min(PREFIX_LEN - self.prefix_len);
                    self.prefix[self.prefix_len..self.prefix_len + keep]
                        .copy_from_slice(&input[..keep]);
                    self.prefix_len += keep;
                    *input = &input[take..];
                    self.pos += take as u64;
                    let remaining = remaining - take as u32;
                    if remaining > 0 {
                        self.state = Expect::Body {
                            tag_type,
                            len,
                            remaining,
                        };
                        return Ok(None);
                    }
                    self.state = Expect::PreviousTagSize {
                        expect: TAG_HEADER_LEN as u32 + len,
                    };
                    return Ok(Some(FlvTag {
                        tag_type,
                        body_len: len as usize,
                        prefix: &self.prefix[..self.prefix_len],
                    }));
                }
                Expect::PreviousTagSize { expect } => {
                    if !self.fill(input, PREVIOUS_TAG_SIZE_LEN) {
                        return Ok(None);
                    }
                    if be(&self.fixed[..PREVIOUS_TAG_SIZE_LEN]) != expect {
                        let what = "PreviousTagSize (11 + DataSize)";
                        return Err(self.error(PREVIOUS_TAG_SIZE_LEN, 0, what));
                    }
                    self.state = Expect::TagHeader;
                }
            }
        }
    }

    /// Collects a fixed-size field of `want` bytes; true once it is whole
    /// (in `fixed[..want]`, and the next field starts afresh).
    fn fill(&mut self, input: &mut &[u8], want: usize) -> bool {
        let take = input.len().min(want - self.fixed_len);
        self.fixed[self.fixed_len..self.fixed_len + take].copy_from_slice(&input[..take]);
        self.fixed_len += take;
        *input = &input[take..];
        self.pos += take as u64;
        if self.fixed_len < want {
            return false;
        }
        self.fixed_len = 0;
        true
    }

    /// An error at byte `at` of the `field_len`-byte field just collected.
    fn error(&self, field_len: usize, at: usize, what: &'static str) -> FlvError {
        FlvError {
            pos: self.pos - field_len as u64 + at as u64,
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_and_derives_the_rtmp_publish_url() {
        let u = HttpUrl::parse("http://127.0.0.1:8079/live/x.flv?only-audio=1").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8079);
        assert_eq!(u.authority, "127.0.0.1:8079");
        assert_eq!(u.target, "/live/x.flv?only-audio=1");
        assert_eq!(u.path(), "/live/x.flv");
        assert_eq!(u.rtmp_publish_url(), "rtmp://127.0.0.1:8079/live/x");
        let u = HttpUrl::parse("http://example.com/live/a.b.m3u8").unwrap();
        assert_eq!(u.port, 80);
        assert_eq!(u.rtmp_publish_url(), "rtmp://example.com:80/live/a.b");
        let u = HttpUrl::parse("http://[::1]:8000/live/x.flv").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.authority, "[::1]:8000");
        assert_eq!(u.rtmp_publish_url(), "rtmp://[::1]:8000/live/x");
        assert_eq!(HttpUrl::parse("http://h?x=1").unwrap().target, "/?x=1");
        assert!(HttpUrl::parse("http://h:0/a").is_err());
        assert!(HttpUrl::parse("http://:80/a").is_err());
        assert!(HttpUrl::parse("ftp://h/a.flv").is_err());
        let u = HttpUrl::parse("https://127.0.0.1/live/x.flv").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 443);
        assert!(!HttpUrl::parse("http://h/a.flv").unwrap().tls);
    }

    use bytes::Bytes;
    use proto::flv::{file_header, frame_tag, script_tag, TAG_TYPE_SCRIPT};

    use crate::synth::{read_stamp, Synth, SynthConfig};

    /// What the reader reported of one tag.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        tag_type: u8,
        body_len: usize,
        prefix: Vec<u8>,
    }

    fn read_pieces(reader: &mut FlvReader, pieces: &[&[u8]]) -> Result<Vec<Seen>, FlvError> {
        let mut seen = Vec::new();
        for piece in pieces {
            let mut input = *piece;
            while let Some(tag) = reader.read(&mut input)? {
                seen.push(Seen {
                    tag_type: tag.tag_type,
                    body_len: tag.body_len,
                    prefix: tag.prefix.to_vec(),
                });
            }
            assert!(input.is_empty(), "None only once the input is used up");
        }
        Ok(seen)
    }

    /// An FLV stream as shardcast sends it: header, onMetaData, sequence
    /// headers, a keyframe, audio, an inter frame, an empty video tag.
    fn stream() -> (Vec<u8>, Vec<Seen>) {
        let mut synth = Synth::new(SynthConfig {
            video_bps: 500_000,
            fps: 25.0,
            gop_s: 1.0,
            audio: true,
            audio_bps: 64_000,
        });
        let mut parts: Vec<Bytes> = vec![file_header(true, true)];
        script_tag(&Bytes::from(synth.metadata_body()), &mut parts);
        let frames = [
            synth.video_sequence_header(),
            synth.audio_sequence_header(),
            synth.next_video(0, 1_000_000),
            synth.audio_frame(10),
            synth.next_video(40, 1_040_000),
            proto::media::Frame {
                payload: Bytes::new(),
                ..synth.next_video(80, 1_080_000)
            },
        ];
        let mut want = vec![Seen {
            tag_type: TAG_TYPE_SCRIPT,
            body_len: synth.metadata_body().len(),
            prefix: synth.metadata_body()[..PREFIX_LEN].to_vec(),
        }];
        for f in &frames {
            frame_tag(f, &mut parts);
            let n = f.payload.len().min(PREFIX_LEN);
            want.push(Seen {
                tag_type: if f.is_video() {
                    TAG_TYPE_VIDEO
                } else {
                    TAG_TYPE_AUDIO
                },
                body_len: f.payload.len(),
                prefix: f.payload[..n].to_vec(),
            });
        }
        (parts.concat(), want)
    }

    #[test]
    fn flv_tags_read_alike_at_every_split_point() {
        let (bytes, want) = stream();
        assert!(bytes.len() > 2000, "the frames are larger than the prefix");
        for cut in 0..=bytes.len() {
            let mut r = FlvReader::default();
            let seen = read_pieces(&mut r, &[&bytes[..cut], &bytes[cut..]]).unwrap();
            assert_eq!(seen, want, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            read_pieces(&mut FlvReader::default(), &bytewise).unwrap(),
            want
        );
    }

    #[test]
    fn tags_become_media_with_flags_and_stamp() {
        let (bytes, _) = stream();
        let mut r = FlvReader::default();
        let mut input = &bytes[..];
        let mut media = Vec::new();
        while let Some(tag) = r.read(&mut input).unwrap() {
            media.push(tag.media().map(|m| {
                let stamp = read_stamp(m.prefix).map(|s| (s.seq, s.sent_us));
                (m.video, m.keyframe, m.sequence_header, m.len, stamp)
            }));
        }
        let [script, vsh, ash, key, audio, inter, empty] = &media[..] else {
            panic!("{media:?}");
        };
        assert_eq!(*script, None);
        assert!(matches!(vsh, Some((true, false, true, _, None))), "{vsh:?}");
        assert!(
            matches!(ash, Some((false, false, true, 4, None))),
            "{ash:?}"
        );
        assert!(
            matches!(key, Some((true, true, false, _, Some((0, 1_000_000))))),
            "{key:?}"
        );
        assert!(
            matches!(audio, Some((false, false, false, _, None))),
            "{audio:?}"
        );
        assert!(
            matches!(inter, Some((true, false, false, _, Some((1, 1_040_000))))),
            "{inter:?}"
        );
        assert_eq!(*empty, None, "an empty body is no frame (as over RTMP)");
    }

    #[test]
    fn enhanced_rtmp_headers_give_key_and_sequence_start() {
        let tag = |body: &'static [u8]| FlvTag {
            tag_type: TAG_TYPE_VIDEO,
            body_len: body.len() + 1000,
            prefix: body,
        };
        // IsExHeader | FrameType 1 (key) | PacketType 0 (SequenceStart), hvc1.
        let m = tag(b"\x90hvc1\x01\x02").media().unwrap();
        assert!(m.video && m.sequence_header && !m.keyframe);
        // PacketType 3 (CodedFramesX): a key picture without CompositionTime.
        let m = tag(b"\x93hvc1\x00\x00").media().unwrap();
        assert!(m.keyframe && !m.sequence_header);
        // FrameType 2 (inter), PacketType 1 (CodedFrames) with CompositionTime.
        let m = tag(b"\xa1hvc1\x00\x00\x00\x00").media().unwrap();
        assert!(!m.keyframe && !m.sequence_header);
        assert_eq!(m.len, 1009);
    }

    /// Wraps `body` in chunked transfer coding with chunks of the given
    /// sizes (cycled), then the last chunk.
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        for &size in sizes.iter().cycle() {
            if at == body.len() {
                break;
            }
            let end = (at + size).min(body.len());
            out.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
            out.extend_from_slice(&body[at..end]);
            out.extend_from_slice(b"\r\n");
            at = end;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn chunked_flv_reads_alike_at_every_split_point() {
        let (flv, want) = stream();
        // The first chunk ends 5 bytes into the first tag header, the
        // second inside the next tag's header too (a 13-byte file header,
        // then an 11-byte tag header).
        let script_len = want[0].body_len;
        let sizes = [FIXED_LEN + 5, 6 + script_len + 4 + 3, 700, 1];
        let wire = chunked(&flv, &sizes);
        for cut in 0..=wire.len() {
            let mut body = BodyDecoder::new(Framing::Chunked);
            let mut r = FlvReader::default();
            let mut seen = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                let mut input = piece;
                while !input.is_empty() && !body.is_done() {
                    let (used, data) = body.decode(input).unwrap();
                    input = &input[used..];
                    seen.extend(read_pieces(&mut r, &[data]).unwrap());
                }
            }
            assert!(body.is_done(), "cut at {cut}");
            assert_eq!(seen, want, "cut at {cut}");
        }
    }

    #[test]
    fn bad_streams_name_the_offset() {
        let (bytes, _) = stream();
        let err = |b: &[u8]| read_pieces(&mut FlvReader::default(), &[b]).unwrap_err();
        assert_eq!(
            err(b"<html>\r\n\r\nNot found"),
            FlvError {
                pos: 0,
                what: "FLV signature"
            }
        );
        // A wrong PreviousTagSize after the first tag.
        let mut b = bytes.clone();
        let after_script =
            FIXED_LEN + TAG_HEADER_LEN + (be(&b[FIXED_LEN + 1..FIXED_LEN + 4]) as usize);
        b[after_script + 3] ^= 1;
        let e = err(&b);
        assert_eq!(
            (e.pos, e.what),
            (after_script as u64, "PreviousTagSize (11 + DataSize)")
        );
        // A DataSize above the bound, and the Filter bit.
        let mut b = bytes.clone();
        b[FIXED_LEN + 1] = 0xff;
        let e = err(&b);
        assert_eq!(
            (e.pos, e.what),
            (
                FIXED_LEN as u64 + 1,
                "FLV DataSize (above TAG_BODY_LEN_MAX)"
            )
        );
        let mut b = bytes;
        b[FIXED_LEN] |= TAG_FILTER;
        assert_eq!(err(&b).pos, FIXED_LEN as u64);
        assert!(err(&b).to_string().contains("at byte 13 of the FLV stream"));
    }
}
