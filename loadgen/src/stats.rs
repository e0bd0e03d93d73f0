//! What players and the publisher record, independent of the protocol a
//! player speaks: RTMP, HTTP-FLV and HLS players feed the same
//! [`PlayerRecord`] with socket bytes and media frames ([`Media`]).
//!
//! Each thread keeps its own records and histograms ([`ThreadStats`]);
//! the main thread merges them once at the end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::synth::read_stamp;

/// A receive gap at least this long is a stall.
pub const STALL_GAP: Duration = Duration::from_secs(2);
/// A player is OK when it received at least this share of the reference
/// media bitrate over the window.
pub const OK_SHARE: f64 = 0.9;
/// Histograms hold µs values up to this (longer values are clamped).
const HIST_MAX_US: u64 = 600 * 1_000_000;
/// Distinct error texts kept per thread; the rest are counted under "other".
const ERROR_KINDS_MAX: usize = 16;

/// The measurement window: bytes count toward a player's rate only when
/// they arrive inside it.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }

    pub fn secs(&self) -> f64 {
        self.end.saturating_duration_since(self.start).as_secs_f64()
    }
}

/// A µs histogram with the bounds every bench histogram uses.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, HIST_MAX_US);
    // In bounds by the clamp above.
    let _ = h.record(us);
}

/// One audio or video frame as a player saw it: the FLV header flags, the
/// length of its body (the FLV tag body, or RTMP message payload), and
/// the start of that body. A player need not keep more than
/// [`STAMP_PREFIX_LEN`](crate::synth::STAMP_PREFIX_LEN) bytes of a frame.
#[derive(Clone, Copy, Debug)]
pub struct Media<'a> {
    pub video: bool,
    pub keyframe: bool,
    pub sequence_header: bool,
    /// Bytes in the whole body.
    pub len: usize,
    /// The body's first bytes: at least `min(len, STAMP_PREFIX_LEN)`, the
    /// rest of the body is not needed.
    pub prefix: &'a [u8],
}

/// Where a player is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayerState {
    /// Not started yet (the ramp has not reached it).
    Waiting,
    /// TCP connect, handshake, play command.
    Starting,
    /// Play started; media flows.
    Playing,
    /// Never got to play.
    Failed,
    /// Lost its connection after play started.
    Dropped,
}

/// One player's measurements.
#[derive(Debug)]
pub struct PlayerRecord {
    pub state: PlayerState,
    /// When its TCP connect began; time-to-first-frame counts from here.
    pub connect_started: Option<Instant>,
    /// Wall clock (µs since the Unix epoch) when play started: frames
    /// stamped earlier came from the GOP cache and have no live latency.
    pub play_started_wall_us: u64,
    pub first_frame: Option<Duration>,
    pub first_keyframe: Option<Duration>,
    last_media: Option<Instant>,
    /// A receive gap at least this long is a stall: [`STALL_GAP`], plus the
    /// time between two deliveries where media comes in batches (a plain
    /// HLS player gets a segment per target duration).
    pub stall_gap: Duration,
    pub stalls: u32,
    /// Socket bytes, and media payload bytes, that arrived in the window.
    pub window_socket_bytes: u64,
    pub window_media_bytes: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    last_seq: Option<u32>,
    pub skipped_frames: u64,
}

impl Default for PlayerRecord {
    fn default() -> Self {
        PlayerRecord {
            state: PlayerState::Waiting,
            connect_started: None,
            play_started_wall_us: 0,
            first_frame: None,
            first_keyframe: None,
            last_media: None,
            stall_gap: STALL_GAP,
            stalls: 0,
            window_socket_bytes: 0,
            window_media_bytes: 0,
            video_frames: 0,
            audio_frames: 0,
            last_seq: None,
            skipped_frames: 0,
        }
    }
}

impl PlayerRecord {
    /// Bytes read from the socket at `now`.
    pub fn on_socket_bytes(&mut self, n: usize, now: Instant, window: &Window) {
        if window.contains(now) {
            self.window_socket_bytes += n as u64;
        }
    }

    /// One audio or video frame; only a video frame's stamp is parsed.
    pub fn on_media(
        &mut self,
        media: &Media<'_>,
        now: Instant,
        now_wall_us: u64,
        window: &Window,
        hists: &mut Hists,
    ) {
        let Media {
            video,
            keyframe,
            sequence_header,
            len,
            prefix,
        } = *media;
        if window.contains(now) {
            self.window_media_bytes += len as u64;
        }
        if let Some(last) = self.last_media {
            if now.saturating_duration_since(last) >= self.stall_gap {
                self.stalls += 1;
            }
        }
        self.last_media = Some(now);
        if sequence_header {
            return;
        }
        let since_connect = self
            .connect_started
            .map(|t| now.saturating_duration_since(t));
        if self.first_frame.is_none() {
            self.first_frame = since_connect;
            if let Some(d) = since_connect {
                record(&mut hists.ttff, d);
            }
        }
        if !video {
            self.audio_frames += 1;
            return;
        }
        self.video_frames += 1;
        if keyframe && self.first_keyframe.is_none() {
            self.first_keyframe = since_connect;
            if let Some(d) = since_connect {
                record(&mut hists.ttfk, d);
            }
        }
        let Some(stamp) = read_stamp(prefix) else {
            return;
        };
        match self.last_seq {
            Some(last) if stamp.seq > last => {
                self.skipped_frames += u64::from(stamp.seq - last - 1);
            }
            // A restart of the publisher or a repeated GOP: start counting
            // afresh.
            _ => {}
        }
        self.last_seq = Some(stamp.seq);
        if stamp.sent_us >= self.play_started_wall_us {
            let lat = now_wall_us.saturating_sub(stamp.sent_us);
            record(&mut hists.latency, Duration::from_micros(lat));
        }
    }

    /// Closes the record at the end of the run: a gap running at the end
    /// counts as a stall too.
    pub fn finish(&mut self, end: Instant) {
        if let (PlayerState::Playing, Some(last)) = (self.state, self.last_media) {
            if end.saturating_duration_since(last) >= self.stall_gap {
                self.stalls += 1;
            }
        }
        if self.state == PlayerState::Playing && self.first_frame.is_none() {
            // Playing with no media at all for the whole run is a stall.
            self.stalls += 1;
        }
    }
}

/// Histograms of one thread (all in µs).
pub struct Hists {
    pub ttff: Histogram<u64>,
    pub ttfk: Histogram<u64>,
    pub latency: Histogram<u64>,
    /// How late the periodic timer fired.
    pub timer_lag: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        Hists {
            ttff: histogram(),
            ttfk: histogram(),
            latency: histogram(),
            timer_lag: histogram(),
        }
    }
}

impl Hists {
    pub fn merge(&mut self, other: &Hists) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.ttff.add(&other.ttff);
        let _ = self.ttfk.add(&other.ttfk);
        let _ = self.latency.add(&other.latency);
        let _ = self.timer_lag.add(&other.timer_lag);
    }

    pub fn record_timer_lag(&mut self, lag: Duration) {
        record(&mut self.timer_lag, lag);
    }
}

/// What one player ends up as, sent from its thread to the main thread.
#[derive(Clone, Copy, Debug)]
pub struct PlayerSummary {
    pub state: PlayerState,
    pub stalls: u32,
    pub window_socket_bytes: u64,
    pub window_media_bytes: u64,
    pub skipped_frames: u64,
    pub video_frames: u64,
}

impl From<&PlayerRecord> for PlayerSummary {
    fn from(r: &PlayerRecord) -> Self {
        PlayerSummary {
            state: r.state,
            stalls: r.stalls,
            window_socket_bytes: r.window_socket_bytes,
            window_media_bytes: r.window_media_bytes,
            skipped_frames: r.skipped_frames,
            video_frames: r.video_frames,
        }
    }
}

/// What the publisher did.
#[derive(Clone, Debug, Default)]
pub struct PublisherRecord {
    pub live: bool,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub socket_bytes: u64,
    /// Media payload bytes sent inside the window.
    pub window_media_bytes: u64,
    /// How late frames left against their schedule.
    pub send_lag_max: Duration,
    pub error: Option<String>,
}

/// Error texts and how often each happened, bounded.
#[derive(Clone, Debug, Default)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    pub fn add(&mut self, what: &str) {
        if let Some(n) = self.0.get_mut(what) {
            *n += 1;
        } else if self.0.len() < ERROR_KINDS_MAX {
            self.0.insert(what.to_string(), 1);
        } else {
            *self.0.entry("other".into()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, other: &ErrorCounts) {
        for (k, n) in &other.0 {
            *self.0.entry(k.clone()).or_default() += n;
        }
    }
}

/// Percentiles of a µs histogram, in ms; None where it has no samples.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| Some(us as f64 / 1000.0);
        Percentiles {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Synth, SynthConfig, STAMP_PREFIX_LEN};

    fn video(keyframe: bool, body: &[u8]) -> Media<'_> {
        Media {
            video: true,
            keyframe,
            sequence_header: false,
            len: body.len(),
            prefix: body,
        }
    }

    #[test]
    fn records_ttff_stalls_skips_and_live_latency_only() {
        let t0 = Instant::now();
        let window = Window {
            start: t0,
            end: t0 + Duration::from_secs(100),
        };
        let mut hists = Hists::default();
        let mut r = PlayerRecord {
            state: PlayerState::Playing,
            connect_started: Some(t0),
            play_started_wall_us: 1_000_000,
            ..Default::default()
        };
        let mut synth = Synth::new(SynthConfig {
            video_bps: 1_000_000,
            fps: 10.0,
            gop_s: 1.0,
            audio: false,
            audio_bps: 0,
        });
        // A cached frame stamped before play started: no latency sample.
        let cached = synth.next_video(0, 900_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        r.on_media(
            &video(true, &cached.payload),
            at(3),
            1_000_500,
            &window,
            &mut hists,
        );
        assert_eq!(r.first_frame, Some(Duration::from_millis(3)));
        assert_eq!(r.first_keyframe, Some(Duration::from_millis(3)));
        assert_eq!(hists.latency.len(), 0);
        // Frames 1 and 2 lost; frame 3 live, 2 ms late, after a 2.5 s gap.
        let _ = synth.next_video(100, 0);
        let _ = synth.next_video(200, 0);
        let f3 = synth.next_video(300, 1_100_000);
        // Only the prefix is looked at.
        let f3_media = Media {
            prefix: &f3.payload[..STAMP_PREFIX_LEN],
            ..video(false, &f3.payload)
        };
        r.on_media(&f3_media, at(2503), 1_102_000, &window, &mut hists);
        assert_eq!(r.skipped_frames, 2);
        assert_eq!(r.stalls, 1);
        assert_eq!(hists.latency.len(), 1);
        let p = Percentiles::of(&hists.latency);
        assert!((p.p50.unwrap() - 2.0).abs() < 0.01, "{p:?}");
        assert_eq!(
            r.window_media_bytes,
            (cached.payload.len() + f3.payload.len()) as u64
        );
        r.finish(at(2600));
        assert_eq!(r.stalls, 1);
        r.finish(at(5000));
        assert_eq!(r.stalls, 2, "a gap running at the end counts");
    }

    #[test]
    fn error_counts_are_bounded() {
        let mut e = ErrorCounts::default();
        for i in 0..100 {
            e.add(&format!("e{i}"));
        }
        e.add("e0");
        assert_eq!(e.0.len(), ERROR_KINDS_MAX + 1);
        assert_eq!(e.0["e0"], 2);
        assert_eq!(e.0["other"], 100 - ERROR_KINDS_MAX as u64);
    }
}
