//! [`Segmenter`]: cuts a stream's frames into LL-HLS parts and HLS segments
//! on the owner shard.

use bytes::Bytes;

use super::{
    HlsConfig, HlsEvent, SegmentMuxer, SEGMENT_BYTES_MAX, SEGMENT_CUT_SLACK_MS,
    SEGMENT_DURATION_MAX_MS, TIMESTAMP_JUMP_MAX_MS, TIMESTAMP_STEP_BACK_MAX_MS,
};
use crate::media::{Frame, FrameKind};

/// Frame spacing above this is not taken as a stream's typical frame
/// duration (it is a gap, not a frame).
const FRAME_INTERVAL_MAX_MS: i64 = 1_000;

/// `later - earlier` on the RTMP millisecond clock, which wraps at 2^32:
/// the signed distance, correct across one wrap.
fn ts_diff(later: u32, earlier: u32) -> i64 {
    i64::from(later.wrapping_sub(earlier) as i32)
}

/// A non-negative millisecond distance as a duration.
fn duration_ms(ms: i64) -> u32 {
    u32::try_from(ms.max(0)).unwrap_or(u32::MAX)
}

/// Cuts frames into parts and segments and returns what each push
/// completed as [`HlsEvent`]s, for the owner to apply to its own
/// [`super::HlsWindow`] and send to every replica.
///
/// ```text
///              push(frame)                       push(first frame of the
///  ExpectStart ──────────▶ Open (a segment, its      next part/segment)
///  (until a keyframe,      open part)   ──────────▶ Part / Segment +
///   or any audio frame                               SegmentStart events
///   without video)            │ flush / end / discontinuity / timestamp jump
///  ◀──────────────────────────┘ (the open part and segment end at their own
///                                last frame; the next segment starts with
///                                EXT-X-DISCONTINUITY)
/// ```
///
/// Rules:
/// - A segment starts at a video keyframe, or at any audio frame while the
///   stream (its current publisher) has shown no video. Frames before that
///   are dropped, sequence headers excepted: those always reach the muxer.
/// - A segment ends at the first such start point at least
///   `segment_duration_ms` after its start (a keyframe up to
///   [`SEGMENT_CUT_SLACK_MS`] early counts), or at any frame once it is
///   [`SEGMENT_DURATION_MAX_MS`] long or [`SEGMENT_BYTES_MAX`] big.
/// - With low latency, a part ends at the first frame (keyframe or not) at
///   least `part_duration_ms` after its start, and when its segment ends.
///   Each part starts with the muxer's `start_chunk` (PSI), so it decodes on
///   its own; a segment's bytes are its parts' bytes, back to back.
/// - Durations are distances between the first frames (DTS) of consecutive
///   parts and segments. A part or segment ended without a successor
///   (flush, end, new publisher, timestamp jump: a step of more than
///   [`TIMESTAMP_JUMP_MAX_MS`] forwards or [`TIMESTAMP_STEP_BACK_MAX_MS`]
///   backwards from the previous frame of the same kind) lasts until its
///   last frame plus that kind's usual frame spacing; a last part so
///   ended is capped at the part target, so no part exceeds it.
/// - If a segment's last part would have no duration (an audio frame with
///   the keyframe's timestamp arrived just before it and started a part),
///   that part is not shipped: its bytes move to the head of the next
///   segment.
/// - EXT-X-PROGRAM-DATE-TIME: the first segment, and the first after a
///   discontinuity, take the wall clock of their first frame; every other
///   segment starts where the previous one ended (its date plus its
///   duration), so the date/media mapping stays unambiguous
///   (RFC 8216bis 6.2.1) however frames arrive (bursts, late frames).
///   After a discontinuity the date never goes back before the previous
///   segment's end.
/// - `Data` frames (`onMetaData`) are not carried: MPEG-TS has no place
///   for them.
pub struct Segmenter {
    config: HlsConfig,
    muxer: Box<dyn SegmentMuxer>,
    /// The msn the next segment gets. Never reset: the media sequence stays
    /// monotonic across publishers.
    next_msn: u64,
    open: Option<OpenSegment>,
    /// The next segment gets EXT-X-DISCONTINUITY; an open segment ends at
    /// its own last frame when the next frame arrives.
    discontinuity_pending: bool,
    /// The current publisher sent video: segments start at keyframes only.
    video_seen: bool,
    /// Timestamps of the last written frame of each kind, for jump
    /// detection and frame spacing.
    last_video_ts: Option<u32>,
    last_audio_ts: Option<u32>,
    /// Latest spacing between consecutive frames of each kind.
    video_interval_ms: i64,
    audio_interval_ms: i64,
    /// Date of the end of the last finished segment.
    next_program_date_time_ms: Option<u64>,
    /// Capacity for the next segment's buffer: the last one's size plus an
    /// eighth, so a steady stream rarely reallocates.
    segment_capacity: usize,
    /// Where sequence headers go while no segment is open.
    scratch: Vec<u8>,
}

struct OpenSegment {
    msn: u64,
    start_ts: u32,
    program_date_time_ms: u64,
    discontinuity: bool,
    /// The whole segment so far; the open part is its tail.
    data: Vec<u8>,
    /// Sum of the shipped parts' durations.
    parts_duration_ms: u32,
    part: OpenPart,
}

/// The open part; without low latency, the whole segment.
struct OpenPart {
    index: u32,
    start_ts: u32,
    /// Where the part starts in the segment's bytes.
    offset: usize,
    independent: bool,
    /// Estimated end of the part's media, ms after its start: the latest
    /// frame's time plus that kind's frame spacing.
    end_estimate_ms: i64,
}

/// The bytes of an unshipped, zero-length last part, moved to the next
/// segment.
struct Carry {
    data: Vec<u8>,
    start_ts: u32,
    independent: bool,
    end_estimate_ms: i64,
}

impl Segmenter {
    /// A segmenter whose first segment gets msn 0. Out-of-range config
    /// values are clamped (see [`HlsConfig::validate`]).
    pub fn new(config: HlsConfig, muxer: Box<dyn SegmentMuxer>) -> Self {
        Self {
            config: config.clamped(),
            muxer,
            next_msn: 0,
            open: None,
            discontinuity_pending: false,
            video_seen: false,
            last_video_ts: None,
            last_audio_ts: None,
            video_interval_ms: 0,
            audio_interval_ms: 0,
            next_program_date_time_ms: None,
            segment_capacity: 0,
            scratch: Vec::new(),
        }
    }

    /// Feeds one frame; `now_unix_ms` is the wall clock (ms since the Unix
    /// epoch) when it arrived. Returns the events it completed: usually
    /// none; at a boundary the finished `Part` and/or `Segment`, then the
    /// new segment's `SegmentStart`.
    #[must_use]
    pub fn push(&mut self, frame: &Frame, now_unix_ms: u64) -> Vec<HlsEvent> {
        let mut events = Vec::new();
        if frame.kind == FrameKind::Data {
            return events;
        }
        if frame.is_video() {
            self.video_seen = true;
        }
        if frame.sequence_header {
            let out = match self.open.as_mut() {
                Some(seg) => &mut seg.data,
                None => &mut self.scratch,
            };
            self.muxer.write_frame(frame, out);
            self.scratch.clear();
            if let Some(data) = self.muxer.take_init() {
                // Media after a new init segment is a new encoding: the
                // open segment ends at its own last frame.
                if self.open.is_some() {
                    self.discontinuity_pending = true;
                }
                events.push(HlsEvent::Init { data });
            }
            return events;
        }
        let ts = frame.timestamp;
        let last = if frame.is_video() {
            self.last_video_ts
        } else {
            self.last_audio_ts
        };
        if let Some(last) = last {
            let step = ts_diff(ts, last);
            if step > i64::from(TIMESTAMP_JUMP_MAX_MS)
                || step < -i64::from(TIMESTAMP_STEP_BACK_MAX_MS)
            {
                self.new_timeline(false);
            }
        }
        // An init segment this frame completes: the open segment (of the
        // old init) ends first, as after a sequence header.
        self.muxer.learn(frame);
        let init = self.muxer.take_init();
        if init.is_some() && self.open.is_some() {
            self.discontinuity_pending = true;
        }
        if self.discontinuity_pending {
            self.close_estimated(&mut events);
        }
        if let Some(data) = init {
            events.push(HlsEvent::Init { data });
        }

        let start_point = frame.keyframe || (frame.is_audio() && !self.video_seen);
        let Some(seg) = self.open.as_ref() else {
            if start_point {
                self.open_segment(ts, now_unix_ms, None, &mut events);
                self.write(frame);
            }
            return events;
        };
        let segment_elapsed = ts_diff(ts, seg.start_ts);
        // Keyframes may come a little early; audio start points come
        // every few tens of ms and need no slack.
        let slack = if frame.keyframe {
            SEGMENT_CUT_SLACK_MS
        } else {
            0
        };
        let cut_segment = (start_point
            && segment_elapsed + i64::from(slack) >= i64::from(self.config.segment_duration_ms))
            || segment_elapsed >= i64::from(SEGMENT_DURATION_MAX_MS)
            || seg.data.len() + self.muxer.pending_bytes() >= SEGMENT_BYTES_MAX;
        if cut_segment {
            let carry = self.close_at(ts, &mut events);
            self.open_segment(ts, now_unix_ms, carry, &mut events);
        } else if self.config.low_latency
            && ts_diff(ts, seg.part.start_ts) >= i64::from(self.config.part_duration_ms)
        {
            self.ship_part(ts, &mut events);
        }
        self.write(frame);
        events
    }

    /// A new publisher takes over: the open segment ends at its own last
    /// frame when the next frame arrives, and the next segment gets
    /// EXT-X-DISCONTINUITY. The msn and the muxer's state (continuity
    /// counters) continue. Call it before the new publisher's first frame,
    /// sequence headers included.
    pub fn discontinuity(&mut self) {
        self.new_timeline(true);
    }

    /// The publisher left, and may come back: the open part and segment
    /// end now, at their own last frame, so players get every frame; the
    /// next segment gets EXT-X-DISCONTINUITY. Blocking requests keep
    /// waiting (the caller answers them 503 after
    /// [`super::HlsWindow::blocking_timeout_ms`]).
    #[must_use]
    pub fn flush(&mut self) -> Vec<HlsEvent> {
        let mut events = Vec::new();
        self.close_estimated(&mut events);
        self.new_timeline(true);
        events
    }

    /// Why the muxer left a track or frames out since the last call
    /// ([`SegmentMuxer::take_refusal`]), for the caller to log.
    pub fn take_refusal(&mut self) -> Option<String> {
        self.muxer.take_refusal()
    }

    /// The stream is over: [`Segmenter::flush`], then [`HlsEvent::Ended`].
    #[must_use]
    pub fn end(&mut self) -> Vec<HlsEvent> {
        let mut events = self.flush();
        events.push(HlsEvent::Ended);
        events
    }

    /// What follows has a new timeline (and, if `new_publisher`, maybe no
    /// video): the open segment must end at its own last frame.
    fn new_timeline(&mut self, new_publisher: bool) {
        if self.next_msn > 0 {
            self.discontinuity_pending = true;
        }
        if new_publisher {
            self.video_seen = false;
            self.muxer.new_publisher();
        }
        self.last_video_ts = None;
        self.last_audio_ts = None;
    }

    fn open_segment(
        &mut self,
        start_ts: u32,
        now_unix_ms: u64,
        carry: Option<Carry>,
        events: &mut Vec<HlsEvent>,
    ) {
        let msn = self.next_msn;
        self.next_msn += 1;
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        let program_date_time_ms = match self.next_program_date_time_ms {
            Some(next) if discontinuity => next.max(now_unix_ms),
            Some(next) => next,
            None => now_unix_ms,
        };
        let mut part = OpenPart {
            index: 0,
            start_ts,
            offset: 0,
            independent: false,
            end_estimate_ms: 0,
        };
        let data = match carry {
            Some(carry) => {
                part.independent = carry.independent;
                part.end_estimate_ms = carry.end_estimate_ms + ts_diff(carry.start_ts, start_ts);
                carry.data
            }
            None => {
                let mut data = Vec::with_capacity(self.segment_capacity);
                self.muxer.start_chunk(&mut data);
                data
            }
        };
        self.open = Some(OpenSegment {
            msn,
            start_ts,
            program_date_time_ms,
            discontinuity,
            data,
            parts_duration_ms: 0,
            part,
        });
        events.push(HlsEvent::SegmentStart {
            msn,
            program_date_time_ms,
            discontinuity,
        });
    }

    /// Writes a media frame into the open part and tracks its timing.
    fn write(&mut self, frame: &Frame) {
        let Some(seg) = self.open.as_mut() else {
            return;
        };
        let wrote = self.muxer.write_frame(frame, &mut seg.data);
        if wrote && (frame.keyframe || (frame.is_audio() && !self.video_seen)) {
            seg.part.independent = true;
        }
        let ts = frame.timestamp;
        let (last, interval) = if frame.is_video() {
            (&mut self.last_video_ts, &mut self.video_interval_ms)
        } else {
            (&mut self.last_audio_ts, &mut self.audio_interval_ms)
        };
        if let Some(prev) = *last {
            let d = ts_diff(ts, prev);
            if d > 0 && d <= FRAME_INTERVAL_MAX_MS {
                *interval = d;
            }
        }
        *last = Some(ts);
        let end = ts_diff(ts, seg.part.start_ts) + *interval;
        seg.part.end_estimate_ms = seg.part.end_estimate_ms.max(end);
    }

    /// Ships the open part (low latency), which ends where the part that
    /// `next_start_ts` begins starts.
    fn ship_part(&mut self, next_start_ts: u32, events: &mut Vec<HlsEvent>) {
        let Some(seg) = self.open.as_mut() else {
            return;
        };
        let duration = duration_ms(ts_diff(next_start_ts, seg.part.start_ts));
        self.muxer.end_chunk(&mut seg.data);
        events.push(HlsEvent::Part {
            msn: seg.msn,
            part: seg.part.index,
            duration_ms: duration,
            independent: seg.part.independent,
            data: Bytes::copy_from_slice(seg.data.get(seg.part.offset..).unwrap_or_default()),
        });
        seg.parts_duration_ms = seg.parts_duration_ms.saturating_add(duration);
        let offset = seg.data.len();
        self.muxer.start_chunk(&mut seg.data);
        seg.part = OpenPart {
            index: seg.part.index.saturating_add(1),
            start_ts: next_start_ts,
            offset,
            independent: false,
            end_estimate_ms: 0,
        };
    }

    /// Ends the open segment where the segment that `next_start_ts` begins
    /// starts. Returns its last part instead of shipping it when that part
    /// would have no duration.
    fn close_at(&mut self, next_start_ts: u32, events: &mut Vec<HlsEvent>) -> Option<Carry> {
        let mut seg = self.open.take()?;
        let last = ts_diff(next_start_ts, seg.part.start_ts);
        let mut carry = None;
        if self.config.low_latency && last <= 0 && seg.part.index > 0 {
            carry = Some(Carry {
                data: seg.data.split_off(seg.part.offset.min(seg.data.len())),
                start_ts: seg.part.start_ts,
                independent: seg.part.independent,
                end_estimate_ms: seg.part.end_estimate_ms,
            });
            self.finish(seg, None, events);
        } else {
            self.finish(seg, Some(duration_ms(last)), events);
        }
        carry
    }

    /// Ends the open segment, if any, at its own last frame.
    fn close_estimated(&mut self, events: &mut Vec<HlsEvent>) {
        let Some(seg) = self.open.take() else {
            return;
        };
        let mut last = duration_ms(seg.part.end_estimate_ms).max(1);
        if self.config.low_latency {
            last = last.min(self.config.part_duration_ms);
        }
        self.finish(seg, Some(last), events);
    }

    /// Emits the segment's last part (when `last_part_ms` is given and low
    /// latency is on) and the segment. Without low latency `last_part_ms`
    /// is the duration of the whole segment.
    fn finish(
        &mut self,
        mut seg: OpenSegment,
        last_part_ms: Option<u32>,
        events: &mut Vec<HlsEvent>,
    ) {
        let mut duration = seg.parts_duration_ms;
        if let Some(last) = last_part_ms {
            self.muxer.end_chunk(&mut seg.data);
            if self.config.low_latency {
                events.push(HlsEvent::Part {
                    msn: seg.msn,
                    part: seg.part.index,
                    duration_ms: last,
                    independent: seg.part.independent,
                    data: Bytes::copy_from_slice(
                        seg.data.get(seg.part.offset..).unwrap_or_default(),
                    ),
                });
            }
            duration = duration.saturating_add(last);
        }
        self.next_program_date_time_ms = Some(seg.program_date_time_ms + u64::from(duration));
        let mut data = seg.data;
        self.segment_capacity = (data.len() + data.len() / 8).min(SEGMENT_BYTES_MAX);
        // The window keeps the segment as it is: no more than a quarter of
        // it may be unused capacity.
        if data.capacity() - data.len() > data.len() / 4 {
            data.shrink_to_fit();
        }
        events.push(HlsEvent::Segment {
            msn: seg.msn,
            duration_ms: duration,
            data: Bytes::from(data),
            program_date_time_ms: seg.program_date_time_ms,
            discontinuity: seg.discontinuity,
        });
    }
}
