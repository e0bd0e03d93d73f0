//! A publisher's input, measured: bytes and frames in total, and the
//! bitrate and video frame rate over the last [`RATE_WINDOW`] (the API's
//! stream view shows them). On the data path: one record per frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proto::media::Frame;

/// How far back the measured ingest bitrate and frame rate look.
pub const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Frames a stream's [`IngestMeter`] remembers at most (16 bytes each, so
/// 64 KiB per published stream at worst). A 5 s window of 30 fps video
/// and 43 AAC frames/s holds about 365; past the bound the oldest go first
/// and the rates cover a shorter span.
pub const RATE_SAMPLES_MAX: usize = 4096;

/// Measures a publisher's input: bytes and frames in total, and the
/// bitrate and video frame rate over the last [`RATE_WINDOW`].
#[derive(Debug)]
pub struct IngestMeter {
    /// When the publish started.
    pub started: Instant,
    pub started_unix_ms: u64,
    /// Media payload bytes received.
    pub bytes: u64,
    /// Media frames received.
    pub frames: u64,
    /// The frames of the last [`RATE_WINDOW`], oldest first, at most
    /// [`RATE_SAMPLES_MAX`].
    samples: VecDeque<Sample>,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    bytes: u32,
    /// The DTS of a coded video frame.
    video_ts: Option<u32>,
}

impl IngestMeter {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            started_unix_ms: crate::stream::unix_ms(),
            bytes: 0,
            frames: 0,
            samples: VecDeque::new(),
        }
    }

    /// Counts one frame that arrived at `now`.
    pub fn record(&mut self, now: Instant, frame: &Frame) {
        let len = frame.payload.len();
        self.bytes += len as u64;
        self.frames += 1;
        let video_ts = (frame.is_video() && !frame.sequence_header).then_some(frame.timestamp);
        self.samples.push_back(Sample {
            at: now,
            bytes: u32::try_from(len).unwrap_or(u32::MAX),
            video_ts,
        });
        while self.samples.len() > RATE_SAMPLES_MAX
            || self
                .samples
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.at) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Bits per second of media payload over the last [`RATE_WINDOW`] (or
    /// since the publish started, if later).
    pub fn bitrate_bps(&self, now: Instant) -> u64 {
        let from = now
            .checked_sub(RATE_WINDOW)
            .unwrap_or(self.started)
            .max(self.started);
        let span = now.saturating_duration_since(from).as_secs_f64();
        if span < 0.001 {
            return 0;
        }
        let bytes: u64 = self
            .samples
            .iter()
            .filter(|s| s.at >= from)
            .map(|s| u64::from(s.bytes))
            .sum();
        (bytes as f64 * 8.0 / span) as u64
    }

    /// Video frames per second, from the DTS of the coded video frames of
    /// the window; None with fewer than two.
    pub fn fps(&self) -> Option<f64> {
        let mut ts = self.samples.iter().filter_map(|s| s.video_ts);
        let first = ts.next()?;
        let (n, last) = ts.fold((1u32, first), |(n, _), t| (n + 1, t));
        let span_ms = last.wrapping_sub(first);
        if n < 2 || span_ms == 0 || span_ms > u32::MAX / 2 {
            return None;
        }
        let fps = f64::from(n - 1) * 1000.0 / f64::from(span_ms);
        Some((fps * 100.0).round() / 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, len: usize) -> Frame {
        let mut body = vec![0x27, 1, 0, 0, 0];
        body.resize(len, 0);
        Frame::parse_video(ts, Bytes::from(body)).unwrap()
    }

    #[test]
    fn meter_measures_fps_from_timestamps_and_bitrate_over_the_window() {
        let t0 = Instant::now();
        let mut m = IngestMeter::new(t0);
        // 2 s of 30 fps video, 1000-byte frames, arriving in real time.
        for i in 0..60u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 1000 / 30);
            m.record(at, &video(i * 1000 / 30, 1000));
        }
        let now = t0 + Duration::from_secs(2);
        assert_eq!(m.frames, 60);
        assert_eq!(m.bytes, 60_000);
        let fps = m.fps().unwrap();
        assert!((29.5..=30.5).contains(&fps), "{fps}");
        // 60 000 bytes over 2 s.
        assert_eq!(m.bitrate_bps(now), 240_000);
        // Later, only the last RATE_WINDOW counts.
        let later = t0 + Duration::from_secs(30);
        m.record(later, &video(30_000, 1000));
        assert_eq!(m.samples.len(), 1, "old samples leave the window");
        assert_eq!(m.bitrate_bps(later), 8000 / RATE_WINDOW.as_secs());
        assert_eq!(m.fps(), None, "one frame has no rate");
    }

    #[test]
    fn meter_is_bounded() {
        let t0 = Instant::now();
        let mut m = IngestMeter::new(t0);
        for i in 0..(RATE_SAMPLES_MAX as u32 + 100) {
            m.record(t0, &video(i, 10));
        }
        assert_eq!(m.samples.len(), RATE_SAMPLES_MAX);
    }
}
