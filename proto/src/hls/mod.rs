//! HLS and Low-Latency HLS: the segmenter that cuts a stream into MPEG-TS
//! segments and partial segments, and the window that serves them.
//!
//! Defined by: RFC 8216 (HTTP Live Streaming) and its second edition,
//! draft-pantos-hls-rfc8216bis (Low-Latency HLS: EXT-X-PART, EXT-X-PART-INF,
//! EXT-X-SERVER-CONTROL, EXT-X-PRELOAD-HINT, EXT-X-SKIP, and the delivery
//! directives `_HLS_msn`, `_HLS_part` and `_HLS_skip` of its section 6.2.5).
//!
//! The work is split along DESIGN.md's owner/replica line, and both halves
//! are sans-IO: no clock, no socket, no shard inside. Callers pass the wall
//! clock in where it matters.
//!
//! ```text
//!  owner shard                                   every shard (owner too)
//!  Frame ──▶ Segmenter ──▶ HlsEvent ──(channel)──▶ HlsWindow::apply
//!            (+ SegmentMuxer: PSI,                  render / segment / part /
//!               PES bytes)                          readiness / last_part
//! ```
//!
//! - [`Segmenter`] (`segmenter.rs`) runs on the owner. It decides where parts
//!   and segments end, asks a [`SegmentMuxer`] for their bytes, and returns
//!   [`HlsEvent`]s. A boundary is decided when the frame that starts the next
//!   part or segment arrives, so a part is shipped the moment its successor's
//!   first frame is pushed.
//! - [`HlsWindow`] (`window.rs`) is one shard's view. It is built only from
//!   events, so every shard that applied the same events renders the same
//!   playlist byte for byte: a player whose requests land on different
//!   shards sees one consistent stream. A replica that subscribes late
//!   starts from a clone of the owner's window (cheap: the media is
//!   reference-counted [`Bytes`]) and applies the events that follow.
//! - `playlist.rs` holds the text formatting (decimal seconds, ISO 8601
//!   dates).
//! - `ts_muxer.rs` adapts the MPEG-TS muxer of `crate::ts` to
//!   [`SegmentMuxer`]; `fmp4_muxer.rs` is the fragmented MP4 one (on
//!   `crate::mp4`), whose init segments travel as [`HlsEvent::Init`].
//!
//! # Memory bounds
//!
//! - Segmenter: one open segment, cut at [`SEGMENT_DURATION_MAX_MS`] or
//!   [`SEGMENT_BYTES_MAX`] (plus one frame) even without a keyframe.
//! - Window: the listed segments (`window_size`, extended by at most
//!   [`LISTED_EXTRA_SEGMENTS_MAX`] to keep three target durations listed),
//!   at most [`RETIRED_SEGMENTS_MAX`] segments kept downloadable after they
//!   left the playlist, and the parts of the open segment. Parts of finished
//!   segments are zero-copy slices of the segment's bytes, so keeping them
//!   costs only their metadata.

mod fmp4_muxer;
mod multivariant;
pub mod parse;
mod playlist;
mod segmenter;
#[cfg(test)]
mod tests;
mod ts_muxer;
#[cfg(test)]
mod vectors;
mod window;

use std::fmt;

use bytes::Bytes;

use crate::media::Frame;

pub use fmp4_muxer::Fmp4Muxer;
pub use multivariant::{render_multivariant, Variant};
pub use playlist::format_program_date_time;
pub use segmenter::Segmenter;
pub use window::{Availability, HlsWindow, Readiness, UriForm};

/// A segment is cut without a keyframe once it is this long, so a stream
/// that never sends one (or has a very long GOP) cannot grow a segment
/// without bound. The next segment then starts on a non-keyframe.
pub const SEGMENT_DURATION_MAX_MS: u32 = 30_000;

/// A keyframe this much before a segment's target duration still ends the
/// segment. Publishers' keyframes land a little early: a 2 s GOP at 30 fps
/// is stamped 1999 ms after the last one (millisecond rounding), and
/// waiting for the next keyframe would make a 4 s segment and raise the
/// playlist's EXT-X-TARGETDURATION to 4 for good.
pub const SEGMENT_CUT_SLACK_MS: u32 = 100;

/// A segment is cut without a keyframe once its bytes reach this. With the
/// window's bounds this caps the memory one stream's HLS state may pin per
/// shard at about 32 MiB × (`window_size` + [`LISTED_EXTRA_SEGMENTS_MAX`] +
/// [`RETIRED_SEGMENTS_MAX`] + 1) in the worst case; a 6 Mbit/s stream uses
/// 1.5 MB per 2 s segment.
pub const SEGMENT_BYTES_MAX: usize = 32 << 20;

/// A frame more than this after the previous frame of its kind (audio or
/// video) is a timestamp discontinuity: the open segment ends at its own
/// last frame and the next one starts with EXT-X-DISCONTINUITY
/// (RFC 8216bis 6.2.1: timing changes MUST be signalled).
pub const TIMESTAMP_JUMP_MAX_MS: u32 = 10_000;

/// Likewise for a frame more than this before the previous frame of its
/// kind. Timestamps (DTS) of one kind only grow; the tolerance absorbs
/// publishers' rounding jitter. Comparing within a kind keeps the
/// interleaving of audio and video, which may run apart by a second or
/// more, out of it.
pub const TIMESTAMP_STEP_BACK_MAX_MS: u32 = 1_000;

/// Segments the playlist may list beyond `window_size`, which it does only
/// to keep the playlist at least three target durations long
/// (RFC 8216bis 6.2.2: a segment MUST NOT be removed if that would leave a
/// shorter playlist), e.g. after a run of short segments.
pub const LISTED_EXTRA_SEGMENTS_MAX: usize = 8;

/// Segments kept downloadable after they left the playlist. They are kept
/// until three target durations of media have been added after them
/// (RFC 8216bis 6.2.2: a removed segment stays downloadable for its
/// availability duration, a removed part for three target durations), or
/// until this many are retired, whichever comes first.
pub const RETIRED_SEGMENTS_MAX: usize = 8;

/// The largest `window_size` [`HlsConfig::validate`] accepts.
pub const WINDOW_SIZE_MAX: usize = 1_000;

/// What the segmenter and the window are configured with. Owner and
/// replicas must use the same values, since the playlist header derives
/// from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HlsConfig {
    /// Target segment duration: a segment is cut at the first keyframe at
    /// least this long after its start (any audio frame, for a stream
    /// without video).
    pub segment_duration_ms: u32,
    /// Target part duration (LL-HLS): a part is cut at the first frame at
    /// least this long after its start, keyframe or not.
    pub part_duration_ms: u32,
    /// Segments listed in the playlist.
    pub window_size: usize,
    /// Cut parts and render the LL-HLS tags. Plain HLS players ignore the
    /// part tags, so one playlist serves both kinds.
    pub low_latency: bool,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_duration_ms: 2_000,
            part_duration_ms: 500,
            window_size: 6,
            low_latency: true,
        }
    }
}

/// A field of [`HlsConfig`] outside its range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsConfigError {
    /// The field's name.
    pub field: &'static str,
    /// What its value must be.
    pub expected: &'static str,
}

impl fmt::Display for HlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HLS setting {} must be {}", self.field, self.expected)
    }
}

impl std::error::Error for HlsConfigError {}

impl HlsConfig {
    /// Checks the ranges. [`Segmenter::new`] and [`HlsWindow::new`] clamp
    /// out-of-range values instead; call this where the configuration is
    /// loaded, to refuse them with a message.
    pub fn validate(&self) -> Result<(), HlsConfigError> {
        let err = |field, expected| Err(HlsConfigError { field, expected });
        if self.segment_duration_ms < 1_000 || self.segment_duration_ms > SEGMENT_DURATION_MAX_MS {
            return err("segment_duration_ms", "between 1000 and 30000");
        }
        if self.part_duration_ms < 100 || self.part_duration_ms > self.segment_duration_ms {
            return err(
                "part_duration_ms",
                "at least 100 and at most segment_duration_ms",
            );
        }
        if self.window_size < 1 || self.window_size > WINDOW_SIZE_MAX {
            return err("window_size", "between 1 and 1000");
        }
        Ok(())
    }

    /// The values the segmenter and window use: each clamped into the range
    /// [`HlsConfig::validate`] checks.
    pub(crate) fn clamped(self) -> HlsConfig {
        let segment_duration_ms = self
            .segment_duration_ms
            .clamp(1_000, SEGMENT_DURATION_MAX_MS);
        HlsConfig {
            segment_duration_ms,
            part_duration_ms: self.part_duration_ms.clamp(100, segment_duration_ms),
            window_size: self.window_size.clamp(1, WINDOW_SIZE_MAX),
            low_latency: self.low_latency,
        }
    }
}

/// What the owner's [`Segmenter`] tells every shard's [`HlsWindow`], in
/// order. Values only (media as [`Bytes`]), so they cross shards as typed
/// messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsEvent {
    /// Segment `msn` has started. It precedes the segment's first `Part`,
    /// so that the playlist can put the segment's EXT-X-DISCONTINUITY and
    /// EXT-X-PROGRAM-DATE-TIME before its first EXT-X-PART, where
    /// RFC 8216bis 4.4.4.9 requires them, while the segment is in progress.
    SegmentStart {
        msn: u64,
        /// Wall-clock time of the segment's first frame, ms since the Unix
        /// epoch (see [`Segmenter::push`] for how it is kept contiguous).
        program_date_time_ms: u64,
        /// An EXT-X-DISCONTINUITY precedes the segment.
        discontinuity: bool,
    },
    /// A finished LL-HLS part of segment `msn`, index `part` (from 0).
    Part {
        msn: u64,
        part: u32,
        duration_ms: u32,
        /// The part contains an independent frame (a video keyframe; any
        /// frame of a stream without video): RFC 8216bis 4.4.4.9
        /// INDEPENDENT=YES.
        independent: bool,
        /// PSI, then the part's frames.
        data: Bytes,
    },
    /// A finished segment. With low latency on, its bytes are exactly the
    /// concatenation of its parts' bytes and its duration the sum of theirs.
    Segment {
        msn: u64,
        duration_ms: u32,
        data: Bytes,
        /// As in [`HlsEvent::SegmentStart`].
        program_date_time_ms: u64,
        /// As in [`HlsEvent::SegmentStart`].
        discontinuity: bool,
    },
    /// A new initialization segment (fMP4's `ftyp` + `moov`, for
    /// EXT-X-MAP): the segments that start from now on need it. The first
    /// comes before the first segment; a later one (the codec
    /// configuration changed) before a segment with EXT-X-DISCONTINUITY.
    Init { data: Bytes },
    /// The stream is over ([`Segmenter::end`]); everything before it has
    /// been flushed. The window keeps serving what it holds, renders
    /// EXT-X-ENDLIST, hints no next part, and answers every blocking reload
    /// at once (RFC 8216bis 6.2.5.2: the directives are ignored once the
    /// playlist has EXT-X-ENDLIST). Should media arrive after all (a
    /// publisher returning after `end`), the window resumes: the next
    /// segment carries EXT-X-DISCONTINUITY and the ENDLIST goes away.
    Ended,
}

/// The container of a window's segments and parts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Container {
    /// MPEG-TS (`.ts`).
    #[default]
    Ts,
    /// Fragmented MP4 (`.m4s` fragments after an `init-N.mp4`, EXT-X-MAP).
    Fmp4,
}

impl Container {
    /// Both, in index order.
    pub const ALL: [Container; 2] = [Container::Ts, Container::Fmp4];

    /// The media files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Ts => "ts",
            Container::Fmp4 => "m4s",
        }
    }

    /// The name in configuration and queries: `ts`, `fmp4`.
    pub fn name(self) -> &'static str {
        match self {
            Container::Ts => "ts",
            Container::Fmp4 => "fmp4",
        }
    }

    /// From its name.
    pub fn from_name(name: &str) -> Option<Container> {
        Container::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The media files' Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Container::Ts => "video/mp2t",
            Container::Fmp4 => "video/mp4",
        }
    }
}

/// Init segments a window keeps for the segments it holds: a stream whose
/// codec configuration changes more often than this within the window
/// loses the oldest, whose segments then 404 on their init.
pub const INITS_KEPT_MAX: usize = 8;

/// The muxer the segmenter writes parts and segments with (the MPEG-TS
/// muxer of `crate::ts` in production, a fake in tests).
pub trait SegmentMuxer {
    /// Writes what a part or segment must start with so that it can be
    /// decoded on its own (for MPEG-TS: PAT and PMT).
    fn start_chunk(&mut self, out: &mut Vec<u8>);
    /// Writes one frame; false if nothing was written (a sequence header,
    /// which only updates the muxer's codec state, or a frame the muxer
    /// cannot carry). A muxer may hold frames back until
    /// [`SegmentMuxer::end_chunk`].
    fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> bool;
    /// Called with every coded frame before the segmenter places it, so
    /// that an init segment this frame completes ([`SegmentMuxer::take_init`],
    /// asked right after) comes before the segment that holds the frame:
    /// fMP4 learns a VP9/AV1 picture size from a keyframe and an MP3 track
    /// from its first frame.
    fn learn(&mut self, _frame: &Frame) {}
    /// A new publisher's frames follow: the tracks it has are known from
    /// its sequence headers, which come next.
    fn new_publisher(&mut self) {}
    /// Ends the part or segment: writes what was held back (fMP4: the
    /// fragment of the frames written since the last end).
    fn end_chunk(&mut self, _out: &mut Vec<u8>) {}
    /// Bytes of frames held back, not yet in `out`.
    fn pending_bytes(&self) -> usize {
        0
    }
    /// A new initialization segment, once, when the tracks changed since
    /// the last one was taken; never for a container without one.
    fn take_init(&mut self) -> Option<Bytes> {
        None
    }
    /// Why the muxer left a track or frames out (a codec it cannot carry),
    /// once per occurrence, for the caller to log.
    fn take_refusal(&mut self) -> Option<String> {
        None
    }
}
