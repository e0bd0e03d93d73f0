//! HLS and Low-Latency HLS players that fetch like hls.js: one keep-alive
//! HTTP/1.1 connection per player, requests one after the other.
//!
//! ```text
//!  GET stream.m3u8 ──▶ low latency? (EXT-X-PART-INF and CAN-BLOCK-RELOAD=YES)
//!   yes: start at the last independent part at least PART-HOLD-BACK
//!        before the end, fetch the parts after it, then for each next part
//!        GET stream.m3u8?_HLS_msn=M&_HLS_part=P (held by the server until
//!        the part exists) and GET the part.
//!   no:  start 3 segments before the end, fetch the segments after it,
//!        reload every target duration (half of it when the playlist did not
//!        change, RFC 8216 6.3.4) and fetch the new segments.
//! ```
//!
//! [`Planner`] decides what to fetch next from the playlists it is shown
//! and the time it is told (sans-IO, tested with the server's own playlist
//! renderer); [`play`] does the I/O. Bodies are never kept: media goes
//! through the TS demuxer ([`hls_ts`](crate::hls_ts)) as it arrives, and
//! each frame is recorded when its part or segment has finished
//! downloading, the moment a real player could hand it to a decoder.
//!
//! The server also holds a request for the part EXT-X-PRELOAD-HINT names
//! until it exists; with one connection, a player gets a part as early by
//! a blocking reload and a GET, so the hint is read but not fetched early.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::hls_ts::{TsDemuxer, TsFrame};
use crate::http::HttpUrl;
use crate::net::READ_BUF_LEN;
use crate::runtime::{player_started, start_within, wall_us, ThreadCtx};
use crate::stats::{Media, PlayerRecord, Window, STALL_GAP};
use crate::tls::{PlayerStream, TlsClient};
use proto::hls::parse::{parse_media_playlist, MediaPlaylist, PLAYLIST_BYTES_MAX};
use proto::http::client::{parse_response_head, write_get, BodyDecoder, Parse, ResponseHead};

/// Bytes of one segment or part a player accepts: twice what shardcast
/// cuts a segment at. Bodies stream through the demuxer, so this bounds
/// time, not memory.
pub const MEDIA_BYTES_MAX: usize = 2 * proto::hls::SEGMENT_BYTES_MAX;
/// Bytes of an error response's body kept for the error message.
const ERROR_BODY_MAX: usize = 256;
/// Longest wait for the next bytes of a response. A blocking reload is
/// held up to three target durations (6 s by default, 90 s at most).
pub const READ_TIMEOUT: Duration = Duration::from_secs(100);
/// Segments before the end a plain HLS player starts at (hls.js
/// `liveSyncDurationCount`).
pub const PLAIN_START_SEGMENTS: usize = 3;
/// Bytes of the playlist URL's request target we accept.
const TARGET_LEN_MAX: usize = 2048;

/// Where HLS players connect, and how they play.
#[derive(Clone, Debug)]
pub struct HlsTarget {
    pub addr: SocketAddr,
    pub url: HttpUrl,
    /// Play as a plain HLS player even when the playlist is low-latency.
    pub plain: bool,
    /// For https://.
    pub tls: Option<TlsClient>,
}

/// A place in the stream: segment `msn`, part `part`; [`WHOLE`] stands for
/// the whole segment and sorts after its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub msn: u64,
    pub part: u32,
}

/// [`Pos::part`] of a whole segment.
pub const WHOLE: u32 = u32::MAX;

impl Pos {
    /// The first place after this item.
    fn after(self) -> Pos {
        if self.part == WHOLE {
            Pos {
                msn: self.msn + 1,
                part: 0,
            }
        } else {
            Pos {
                msn: self.msn,
                part: self.part + 1,
            }
        }
    }
}

/// A segment or part to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub pos: Pos,
    /// As the playlist wrote it.
    pub uri: String,
}

/// What the player does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// GET the playlist; with `Some((msn, part))` as a blocking reload
    /// (`_HLS_msn`, `_HLS_part`).
    Playlist {
        block: Option<(u64, u32)>,
    },
    Media(Item),
    /// Nothing until then (a plain HLS reload).
    Wait(Instant),
    /// The playlist has EXT-X-ENDLIST and everything in it was fetched.
    Ended,
}

/// Which kind of player, fixed by the first playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    LowLatency,
    Plain,
}

/// Decides what to fetch, hls.js-like (see the module doc). Plain data:
/// playlists and times in, [`Action`]s out.
#[derive(Debug)]
pub struct Planner {
    prefer_plain: bool,
    flavour: Option<Flavour>,
    /// Fetch items at or after this place.
    next: Pos,
    queue: VecDeque<Item>,
    /// The last finished segment of the last playlist and its part count.
    last_finished: Option<(u64, usize)>,
    ended: bool,
    /// Plain: when to reload, and the last playlist's (first msn, open
    /// msn, ended) to tell whether it changed.
    reload_at: Option<Instant>,
    shape: Option<(u64, u64, bool)>,
    /// EXT-X-TARGETDURATION of the last playlist.
    target_duration: Duration,
}

/// An item of a playlist with its start time from the playlist's start.
struct Listed<'a> {
    pos: Pos,
    uri: &'a str,
    start_ms: u64,
    independent: bool,
}

/// The media a player of `flavour` would fetch from `pl`, in order: for
/// low latency the parts where listed and whole segments elsewhere, for
/// plain HLS the segments.
fn listed<'a>(pl: &MediaPlaylist<'a>, flavour: Flavour) -> (Vec<Listed<'a>>, u64) {
    let mut out = Vec::new();
    let mut t = 0;
    let ll = flavour == Flavour::LowLatency;
    for s in &pl.segments {
        if ll && !s.parts.is_empty() {
            for (i, p) in s.parts.iter().enumerate() {
                out.push(Listed {
                    pos: Pos {
                        msn: s.msn,
                        part: i as u32,
                    },
                    uri: p.uri,
                    start_ms: t,
                    independent: p.independent || i == 0,
                });
                t += p.duration_ms;
            }
        } else {
            out.push(Listed {
                pos: Pos {
                    msn: s.msn,
                    part: WHOLE,
                },
                uri: s.uri,
                start_ms: t,
                independent: true,
            });
            t += s.duration_ms;
        }
    }
    if ll {
        for (i, p) in pl.open_parts.iter().enumerate() {
            out.push(Listed {
                pos: Pos {
                    msn: pl.open_msn(),
                    part: i as u32,
                },
                uri: p.uri,
                start_ms: t,
                independent: p.independent || i == 0,
            });
            t += p.duration_ms;
        }
    }
    (out, t)
}

impl Planner {
    pub fn new(prefer_plain: bool) -> Self {
        Planner {
            prefer_plain,
            flavour: None,
            next: Pos { msn: 0, part: 0 },
            queue: VecDeque::new(),
            last_finished: None,
            ended: false,
            reload_at: None,
            shape: None,
            target_duration: Duration::ZERO,
        }
    }

    /// The kind of player, once the first playlist was seen.
    pub fn flavour(&self) -> Option<Flavour> {
        self.flavour
    }

    /// EXT-X-TARGETDURATION of the last playlist.
    pub fn target_duration(&self) -> Duration {
        self.target_duration
    }

    /// A playlist arrived; its request started at `load_started`.
    pub fn on_playlist(&mut self, pl: &MediaPlaylist<'_>, load_started: Instant, now: Instant) {
        let flavour = *self.flavour.get_or_insert_with(|| {
            if pl.is_low_latency() && !self.prefer_plain {
                Flavour::LowLatency
            } else {
                Flavour::Plain
            }
        });
        let (items, total_ms) = listed(pl, flavour);
        if self.shape.is_none() {
            self.next = start(pl, flavour, &items, total_ms);
        }
        self.queue = items
            .iter()
            .filter(|i| i.pos >= self.next)
            .map(|i| Item {
                pos: i.pos,
                uri: i.uri.to_string(),
            })
            .collect();
        self.last_finished = pl.segments.last().map(|s| (s.msn, s.parts.len()));
        self.ended = pl.ended;
        let shape = (
            pl.media_sequence + pl.skipped_segments,
            pl.open_msn(),
            pl.ended,
        );
        let target = Duration::from_millis(pl.target_duration_ms);
        self.target_duration = target;
        self.reload_at = Some(if self.shape != Some(shape) {
            load_started + target
        } else {
            now + target / 2
        });
        self.shape = Some(shape);
    }

    /// `pos` was fetched.
    pub fn on_media_done(&mut self, pos: Pos) {
        self.next = self.next.max(pos.after());
    }

    /// What to do at `now`.
    pub fn next_action(&mut self, now: Instant) -> Action {
        while let Some(item) = self.queue.pop_front() {
            if item.pos >= self.next {
                return Action::Media(item);
            }
        }
        if self.ended {
            return Action::Ended;
        }
        match (self.flavour, self.reload_at) {
            (Some(Flavour::LowLatency), _) => Action::Playlist {
                block: Some(self.block_at()),
            },
            (Some(Flavour::Plain), Some(at)) if at > now => Action::Wait(at),
            _ => Action::Playlist { block: None },
        }
    }

    /// The `_HLS_msn`/`_HLS_part` of the next part: past the last part of a
    /// finished segment is part 0 of the next (RFC 8216bis 6.2.5.2 lets a
    /// server map it so, but a client should ask for what exists next).
    fn block_at(&self) -> (u64, u32) {
        let Pos { msn, part } = self.next;
        match self.last_finished {
            Some((m, parts)) if msn < m || (msn == m && part as usize >= parts) => (m + 1, 0),
            _ => (msn, part),
        }
    }
}

/// Where a player starts: low latency, at the last independent item that
/// starts at least PART-HOLD-BACK (else three part targets) before the
/// end; plain, [`PLAIN_START_SEGMENTS`] segments before the end.
fn start(pl: &MediaPlaylist<'_>, flavour: Flavour, items: &[Listed<'_>], total_ms: u64) -> Pos {
    let first = Pos {
        msn: pl.open_msn(),
        part: 0,
    };
    match flavour {
        Flavour::LowLatency => {
            let hold_back = pl
                .part_hold_back_ms
                .unwrap_or(3 * pl.part_target_ms.unwrap_or(0));
            let latest = total_ms.saturating_sub(hold_back);
            items
                .iter()
                .rfind(|i| i.independent && i.start_ms <= latest)
                .or(items.first())
                .map_or(first, |i| Pos {
                    msn: i.pos.msn,
                    part: if i.pos.part == WHOLE { 0 } else { i.pos.part },
                })
        }
        Flavour::Plain => {
            let n = pl.segments.len();
            pl.segments
                .get(n.saturating_sub(PLAIN_START_SEGMENTS))
                .map_or(first, |s| Pos {
                    msn: s.msn,
                    part: 0,
                })
        }
    }
}

/// The request target of `uri` from a playlist at `playlist_path`: an
/// absolute path as is, a relative one against the playlist's directory
/// (RFC 3986 5.2; the playlist's query is not inherited), an absolute URL
/// only on the player's own host.
pub fn resolve(playlist_path: &str, authority: &str, uri: &str) -> Result<String, String> {
    if let Some(rest) = uri.strip_prefix("http://") {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, target) = rest.split_at(split);
        if !host.eq_ignore_ascii_case(authority) {
            return Err(format!(
                "media URI {uri} is on another host; a player connects only to {authority}"
            ));
        }
        return Ok(if target.is_empty() { "/" } else { target }.to_string());
    }
    if uri.contains("://") {
        return Err(format!("media URI {uri}: only http:// is supported"));
    }
    if uri.starts_with('/') {
        return Ok(uri.to_string());
    }
    let dir = playlist_path
        .rfind('/')
        .map_or("/", |i| &playlist_path[..=i]);
    Ok(format!("{dir}{uri}"))
}

/// The playlist's request target with the blocking-reload directives.
fn playlist_target(target: &str, block: Option<(u64, u32)>) -> String {
    match block {
        None => target.to_string(),
        Some((msn, part)) => {
            let sep = if target.contains('?') { '&' } else { '?' };
            format!("{target}{sep}_HLS_msn={msn}&_HLS_part={part}")
        }
    }
}

/// Where a player's reads and frames are recorded.
#[derive(Clone, Copy)]
struct Meter<'a> {
    rec: &'a RefCell<PlayerRecord>,
    ctx: &'a ThreadCtx,
    /// The run's measurement window.
    window: Window,
}

/// One player's keep-alive connection: requests in sequence, responses
/// read through one buffer.
struct Conn<'a> {
    target: &'a HlsTarget,
    stream: Option<PlayerStream>,
    /// Requests answered on the current connection.
    answered: u32,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    request: Vec<u8>,
}

impl<'a> Conn<'a> {
    fn new(target: &'a HlsTarget) -> Self {
        Conn {
            target,
            stream: None,
            answered: 0,
            buf: vec![0; READ_BUF_LEN],
            start: 0,
            end: 0,
            request: Vec::with_capacity(256),
        }
    }

    /// GETs `path`, handing the body to `sink` as it arrives; at most
    /// `body_max` bytes. Errors name the status or failure and the URL.
    ///
    /// A reused connection that closes before any byte of the response is
    /// retried once on a new one: a server may close an idle keep-alive
    /// connection at any time, and RFC 9112 9.3.1 lets a client retry an
    /// idempotent request then.
    async fn get(
        &mut self,
        path: &str,
        body_max: usize,
        m: Meter<'_>,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut retried = false;
        loop {
            let reused = self.stream.is_some() && self.answered > 0;
            match self.exchange(path, body_max, m, sink).await {
                Ok(head) if head.keep_alive => {
                    self.answered += 1;
                    return Ok(());
                }
                Ok(_) => {
                    self.close();
                    return Ok(());
                }
                Err((what, got_bytes)) => {
                    self.close();
                    if reused && !got_bytes && !retried {
                        retried = true;
                        continue;
                    }
                    let host = &self.target.url.authority;
                    let scheme = if self.target.url.tls { "https" } else { "http" };
                    return Err(format!("GET {scheme}://{host}{path}: {what}"));
                }
            }
        }
    }

    fn close(&mut self) {
        self.stream = None;
        self.answered = 0;
        self.start = 0;
        self.end = 0;
    }

    /// Reads more bytes into the buffer; Ok(false) when the server closed.
    async fn fill(&mut self, m: Meter<'_>) -> Result<bool, String> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err("not connected".into());
        };
        let n = stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        // A socket that always has data never makes `read` wait; let the
        // executor run timers and other players when its slice is over.
        glommio::yield_if_needed().await;
        m.ctx.on_read(m.rec, n, &m.window);
        self.end += n;
        Ok(n > 0)
    }

    /// One request and its response. Err carries whether any byte of the
    /// response arrived.
    async fn exchange(
        &mut self,
        path: &str,
        body_max: usize,
        m: Meter<'_>,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<ResponseHead, (String, bool)> {
        if self.stream.is_none() {
            let stream = PlayerStream::connect(self.target.addr, self.target.tls.as_ref())
                .await
                .map_err(|e| (e, false))?;
            stream
                .tcp()
                .set_read_timeout(Some(READ_TIMEOUT))
                .map_err(|e| (format!("SO_RCVTIMEO: {e}"), false))?;
            self.stream = Some(stream);
        }
        self.request.clear();
        write_get(&mut self.request, &self.target.url.authority, path);
        if let Some(stream) = self.stream.as_mut() {
            stream
                .write_all(&self.request)
                .await
                .map_err(|e| (format!("write: {e}"), false))?;
        }
        let head = loop {
            match parse_response_head(&self.buf[self.start..self.end], false) {
                Parse::Complete { value, consumed } => {
                    self.start += consumed;
                    break value;
                }
                Parse::Invalid { what } => return Err((what, true)),
                Parse::Incomplete => {}
            }
            let any = self.end > self.start;
            if !self.fill(m).await.map_err(|e| (e, any))? {
                let what = "the server closed the connection before the response";
                return Err((what.into(), any));
            }
        };
        let mut error_body = Vec::new();
        let ok = head.status == 200;
        let mut received = 0usize;
        let mut body = BodyDecoder::new(head.framing);
        while !body.is_done() {
            if self.start == self.end && !self.fill(m).await.map_err(|e| (e, true))? {
                body.close().map_err(|e| (e.to_string(), true))?;
                break;
            }
            let (used, data) = body
                .decode(&self.buf[self.start..self.end])
                .map_err(|e| (e.to_string(), true))?;
            self.start += used;
            received += data.len();
            if !ok {
                let room = ERROR_BODY_MAX.saturating_sub(error_body.len());
                error_body.extend_from_slice(&data[..room.min(data.len())]);
                continue;
            }
            if received > body_max {
                return Err((format!("body over {body_max} bytes"), true));
            }
            sink(data).map_err(|e| (e, true))?;
        }
        if !ok {
            let text = String::from_utf8_lossy(&error_body);
            let first = text.lines().next().unwrap_or("").trim();
            return Err((format!("{}: {first}", head.status_line()), true));
        }
        Ok(head)
    }
}

/// Plays the target until the run ends (the thread stops polling) or a
/// request fails. [`crate::runtime::run_player`] records the outcome.
pub async fn play(
    target: &HlsTarget,
    rec: &RefCell<PlayerRecord>,
    ctx: &ThreadCtx,
) -> Result<(), String> {
    if target.url.target.len() > TARGET_LEN_MAX {
        return Err(format!("playlist URL over {TARGET_LEN_MAX} bytes"));
    }
    let mut player = Player {
        conn: Conn::new(target),
        planner: Planner::new(target.plain),
        demux: TsDemuxer::new(),
        frames: Vec::new(),
        text: Vec::new(),
    };
    // The first playlist is the start of media.
    let meter = |window| Meter { rec, ctx, window };
    start_within("HLS playlist", player.playlist(None, meter(ctx.window()))).await?;
    player_started(rec, ctx);
    // The window is known once players start.
    let m = meter(ctx.window());
    loop {
        match player.planner.next_action(Instant::now()) {
            Action::Playlist { block } => player.playlist(block, m).await?,
            Action::Media(item) => player.media(item, m).await?,
            Action::Wait(at) => {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await
            }
            Action::Ended => return Err("the stream ended (EXT-X-ENDLIST)".into()),
        }
    }
}

/// One player's state besides its record.
struct Player<'a> {
    conn: Conn<'a>,
    planner: Planner,
    demux: TsDemuxer,
    /// Frames of the body being fetched (reused).
    frames: Vec<TsFrame>,
    /// The playlist being fetched (reused).
    text: Vec<u8>,
}

impl Player<'_> {
    async fn playlist(&mut self, block: Option<(u64, u32)>, m: Meter<'_>) -> Result<(), String> {
        let path = playlist_target(&self.conn.target.url.target, block);
        let started = Instant::now();
        self.text.clear();
        let text = &mut self.text;
        self.conn
            .get(&path, PLAYLIST_BYTES_MAX, m, &mut |data| {
                text.extend_from_slice(data);
                Ok(())
            })
            .await?;
        let text = std::str::from_utf8(&self.text)
            .map_err(|e| format!("{path}: playlist is not UTF-8: {e}"))?;
        let pl = parse_media_playlist(text).map_err(|e| format!("{path}: {e}"))?;
        self.planner.on_playlist(&pl, started, Instant::now());
        if self.planner.flavour() == Some(Flavour::Plain) {
            // Plain HLS reloads once per target duration, so segments come
            // that far apart: STALL_GAP beyond it is a stall. The target
            // duration may grow (a long segment) but never shrinks.
            m.rec.borrow_mut().stall_gap = STALL_GAP + self.planner.target_duration();
        }
        Ok(())
    }

    async fn media(&mut self, item: Item, m: Meter<'_>) -> Result<(), String> {
        let url = &self.conn.target.url;
        let path = resolve(url.path(), &url.authority, &item.uri)?;
        self.frames.clear();
        let (demux, frames) = (&mut self.demux, &mut self.frames);
        self.conn
            .get(&path, MEDIA_BYTES_MAX, m, &mut |data| {
                demux.push(data, frames).map_err(|e| format!("{path}: {e}"))
            })
            .await?;
        self.demux
            .finish(&mut self.frames)
            .map_err(|e| format!("{path}: {e}"))?;
        let now = Instant::now();
        let wall = wall_us();
        let mut r = m.rec.borrow_mut();
        let mut hists = m.ctx.hists.borrow_mut();
        for f in &self.frames {
            let media = Media {
                video: f.video,
                keyframe: f.keyframe,
                sequence_header: false,
                len: f.len,
                prefix: f.flv_prefix.as_ref().map_or(&[][..], |p| &p[..]),
            };
            r.on_media(&media, now, wall, &m.window, &mut hists);
        }
        self.planner.on_media_done(item.pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{read_stamp, Synth, SynthConfig, AUDIO_RATE, AUDIO_SAMPLES_PER_FRAME};
    use proto::hls::parse::parse_media_playlist;
    use proto::hls::{Container, HlsConfig, HlsWindow, Segmenter};
    use proto::ts::TsMuxer;

    /// shardcast's own segmenter and window fed `secs` of the synthetic
    /// stream (30 fps, 2 s GOP, audio) with the default HLS config.
    fn window(secs: u32, low_latency: bool) -> HlsWindow {
        let config = HlsConfig {
            low_latency,
            ..HlsConfig::default()
        };
        let mut synth = Synth::new(SynthConfig {
            video_bps: 1_000_000,
            fps: 30.0,
            gop_s: 2.0,
            audio: true,
            audio_bps: 128_000,
        });
        let mut seg = Segmenter::new(config, Box::new(TsMuxer::new(true, true)));
        let mut w = HlsWindow::new(config, Container::Ts);
        let mut events = seg.push(&synth.video_sequence_header(), 0);
        events.extend(seg.push(&synth.audio_sequence_header(), 0));
        let audio_ms = f64::from(AUDIO_SAMPLES_PER_FRAME) * 1000.0 / f64::from(AUDIO_RATE);
        let (mut v, mut a) = (0u32, 0u32);
        while v * 100 / 3 < secs * 1000 {
            let vt = v * 100 / 3;
            let at = (f64::from(a) * audio_ms) as u32;
            if at < vt {
                events.extend(seg.push(&synth.audio_frame(at), u64::from(at)));
                a += 1;
            } else {
                let f = synth.next_video(vt, 1_000_000 + u64::from(v));
                events.extend(seg.push(&f, u64::from(vt)));
                v += 1;
            }
        }
        for e in &events {
            w.apply(e);
        }
        w
    }

    #[test]
    fn parses_what_the_server_renders() {
        let w = window(13, true);
        let text = w.render("x/", false);
        let pl = parse_media_playlist(&text).unwrap();
        assert!(pl.is_low_latency());
        assert_eq!(
            (pl.target_duration_ms, pl.part_target_ms),
            (2_000, Some(500))
        );
        // Six 2 s segments, 0..=5, and the parts of segment 6 so far.
        let msns: Vec<u64> = pl.segments.iter().map(|s| s.msn).collect();
        assert_eq!(msns, [0, 1, 2, 3, 4, 5]);
        assert_eq!(pl.open_msn(), 6);
        assert!(!pl.open_parts.is_empty());
        let hint = format!("x/6.{}.ts", pl.open_parts.len());
        assert_eq!(pl.preload_hint, Some(hint.as_str()));
        // Parts are listed for the last three target durations only.
        assert!(pl.segments[0].parts.is_empty());
        assert_eq!(pl.segments[5].parts.len(), 4);
        assert!(pl.segments[5].parts[0].independent);
        assert_eq!(pl.segments[5].parts[1].uri, "x/5.1.ts");
    }

    /// A low-latency player starts at the last independent part at least
    /// PART-HOLD-BACK (1.5 s) from the end, fetches what follows, then
    /// blocks for the next part; every frame after its start arrives once,
    /// stamped, in order.
    #[test]
    fn low_latency_start_and_blocking_reloads_over_server_output() {
        let w = window(13, true);
        let text = w.render("x/", false);
        let pl = parse_media_playlist(&text).unwrap();
        let t0 = Instant::now();
        let mut p = Planner::new(false);
        p.on_playlist(&pl, t0, t0);
        assert_eq!(p.flavour(), Some(Flavour::LowLatency));
        // 13 s of media: segments 0..=5 (12 s), segment 6 has parts up to
        // about 12.5 s. The end minus 1.5 s is in segment 5, which starts
        // with the last independent part before it.
        let mut fetched = Vec::new();
        loop {
            match p.next_action(t0) {
                Action::Media(item) => {
                    fetched.push(item.uri.clone());
                    p.on_media_done(item.pos);
                }
                Action::Playlist { block } => {
                    let open_parts = pl.open_parts.len() as u32;
                    assert_eq!(block, Some((6, open_parts)));
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let mut expected: Vec<String> = (0..4).map(|i| format!("x/5.{i}.ts")).collect();
        expected.extend((0..pl.open_parts.len()).map(|i| format!("x/6.{i}.ts")));
        assert_eq!(fetched, expected);

        // The parts' frames, demuxed: consecutive sequence numbers.
        let mut demux = TsDemuxer::new();
        let mut frames = Vec::new();
        for uri in &fetched {
            let name = uri.trim_start_matches("x/").trim_end_matches(".ts");
            let (m, i) = name.split_once('.').unwrap();
            let data = w.part(m.parse().unwrap(), i.parse().unwrap()).unwrap();
            demux.push(&data, &mut frames).unwrap();
            demux.finish(&mut frames).unwrap();
        }
        let seqs: Vec<u32> = frames
            .iter()
            .filter_map(|f| f.flv_prefix.and_then(|p| read_stamp(&p)))
            .map(|s| s.seq)
            .collect();
        assert_eq!(seqs.first(), Some(&300), "segment 5 starts at 10 s");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert!(frames.iter().find(|f| f.video).unwrap().keyframe);
        assert!(frames.iter().filter(|f| !f.video).count() > 100);
    }

    /// Past the last part of a finished segment, the next blocking reload
    /// asks for part 0 of the next segment.
    #[test]
    fn blocking_reload_moves_to_the_next_segment() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500\n\
            #EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:4\n\
            #EXT-X-PART:DURATION=0.5,URI=\"x/4.0.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.5,URI=\"x/4.1.ts\"\n\
            #EXT-X-PART:DURATION=0.5,URI=\"x/4.2.ts\"\n\
            #EXT-X-PART:DURATION=0.5,URI=\"x/4.3.ts\"\n#EXTINF:2.0,\nx/4.ts\n";
        let pl = parse_media_playlist(text).unwrap();
        let t0 = Instant::now();
        let mut p = Planner::new(false);
        p.on_playlist(&pl, t0, t0);
        // 2 s listed, hold back 1.5 s: start at 4.0, the only independent
        // part before 0.5 s.
        for i in 0..4 {
            match p.next_action(t0) {
                Action::Media(item) => {
                    assert_eq!(item.uri, format!("x/4.{i}.ts"));
                    p.on_media_done(item.pos);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            p.next_action(t0),
            Action::Playlist {
                block: Some((5, 0))
            }
        );
    }

    /// A plain player starts three segments from the end and reloads after
    /// a target duration, or half of one when nothing changed.
    #[test]
    fn plain_start_and_reload_timing() {
        let w = window(13, false);
        let text = w.render("x/", false);
        let pl = parse_media_playlist(&text).unwrap();
        assert!(!pl.is_low_latency());
        let t0 = Instant::now();
        let mut p = Planner::new(false);
        p.on_playlist(&pl, t0, t0);
        assert_eq!(p.flavour(), Some(Flavour::Plain));
        let mut got = Vec::new();
        let t1 = t0 + Duration::from_millis(300);
        while let Action::Media(item) = p.next_action(t1) {
            got.push(item.uri.clone());
            p.on_media_done(item.pos);
        }
        assert_eq!(got, ["x/3.ts", "x/4.ts", "x/5.ts"]);
        assert_eq!(p.next_action(t1), Action::Wait(t0 + Duration::from_secs(2)));
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(p.next_action(t2), Action::Playlist { block: None });
        // Unchanged: again in half a target duration.
        p.on_playlist(&pl, t2, t2);
        assert_eq!(p.next_action(t2), Action::Wait(t2 + Duration::from_secs(1)));
        // An LL playlist played as plain HLS uses segments only.
        let ll = window(13, true).render("x/", false);
        let mut p = Planner::new(true);
        p.on_playlist(&parse_media_playlist(&ll).unwrap(), t0, t0);
        assert_eq!(p.flavour(), Some(Flavour::Plain));
        assert!(matches!(p.next_action(t0), Action::Media(i) if i.uri == "x/3.ts"));
    }

    #[test]
    fn resolves_uris_against_the_playlist() {
        let r = |uri| resolve("/live/x.m3u8", "h:8079", uri);
        assert_eq!(r("x/3.ts").unwrap(), "/live/x/3.ts");
        assert_eq!(r("/other/3.ts").unwrap(), "/other/3.ts");
        assert_eq!(r("http://h:8079/live/x/3.ts").unwrap(), "/live/x/3.ts");
        assert!(r("http://elsewhere/3.ts")
            .unwrap_err()
            .contains("another host"));
        assert!(r("https://h:8079/3.ts").is_err());
        assert_eq!(
            playlist_target("/live/x.m3u8?vhost=a", Some((7, 2))),
            "/live/x.m3u8?vhost=a&_HLS_msn=7&_HLS_part=2"
        );
        assert_eq!(
            playlist_target("/live/x.m3u8", Some((7, 0))),
            "/live/x.m3u8?_HLS_msn=7&_HLS_part=0"
        );
    }
}
