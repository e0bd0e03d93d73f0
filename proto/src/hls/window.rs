//! [`HlsWindow`]: one shard's copy of a stream's HLS state, built from
//! [`HlsEvent`]s, answering playlist, segment, part and blocking-reload
//! requests.

use std::collections::VecDeque;
use std::fmt::Write;

use bytes::Bytes;

use super::playlist::{DateTime, Secs};
use super::{
    Container, HlsConfig, HlsEvent, INITS_KEPT_MAX, LISTED_EXTRA_SEGMENTS_MAX, RETIRED_SEGMENTS_MAX,
};

/// What to do with a blocking playlist reload, a playlist request with
/// `_HLS_msn=M` and maybe `_HLS_part=N` (RFC 8216bis 6.2.5.2).
///
/// [`HlsWindow::readiness`] applies the section's rules:
/// - Once the playlist has EXT-X-ENDLIST the directives are ignored:
///   `Ready`. They are also ignored (`Ready`) without low latency, where
///   the playlist does not advertise CAN-BLOCK-RELOAD.
/// - `M` greater than the msn of the last segment in the playlist plus two:
///   `Reject` (the SHOULD of the section; "last segment" is the last one
///   with an EXTINF, not the one in progress).
/// - `M` alone: `Ready` once the playlist holds segment `M` or a later one
///   (a segment already gone from the playlist counts: the whole current
///   playlist is the answer), else `Wait`.
/// - `M` and `N`: `Ready` once the playlist holds part `N` of segment `M` or
///   a later part. A part index past the last part of a finished segment
///   means part 0 of the next segment (a MUST of the section). Otherwise,
///   when `N` exceeds the newest part by the Advance Part Limit or more
///   (3 / PART-TARGET parts when PART-TARGET is under one second, else 3),
///   `Reject`; a request for the next segment counts at least `N + 1`
///   parts ahead, since the open segment may end at any moment. Else
///   `Wait`.
///
/// Not decided here, because the arguments cannot express it: `_HLS_part`
/// without `_HLS_msn` MUST be answered 400 by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Answer now with the whole playlist.
    Ready,
    /// Hold the request and ask again after the window applies the next
    /// event (when [`HlsWindow::last_part`] or the segment count changes).
    /// Past [`HlsWindow::blocking_timeout_ms`], answer 503 Service
    /// Unavailable (the section's SHOULD).
    Wait,
    /// Answer 400 Bad Request at once: the request is too far ahead.
    Reject,
}

/// Where a segment, part or init segment stands in a window
/// ([`HlsWindow::media`], [`HlsWindow::init_segment`]): every request
/// for one is answered by one of these, so a shard whose copy of the
/// window lags the owner's (a replica a few events behind) still answers
/// right for a URI that a playlist from another shard named.
///
/// RFC 8216bis 6.2.6 has the server hold a request for a hinted part
/// until it exists (a blocking request, answered within the 6.2.5.2
/// timeout of three target durations), and 6.2.2 keeps every listed
/// segment and part available: a part that this window has not seen yet
/// but that the stream can reach within the Advance Part Limit is
/// `Coming`, whether or not this copy hints it yet. What can never be
/// here is `Gone` at once (404), not after a wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Here: the bytes.
    Here(Bytes),
    /// Not here yet but expected: hold the request, ask again after the
    /// window applies the next event, and answer 404 past the blocking
    /// timeout ([`HlsWindow::blocking_timeout_ms`]).
    Coming,
    /// Never here: too old (dropped), a part the segment ended without,
    /// the parts of a segment this window missed, too far ahead, or the
    /// stream ended.
    Gone,
}

/// One shard's view of a stream's HLS state, built only from
/// [`HlsEvent`]s, so every shard that applied the same events renders the
/// same playlist. Clone it to start a late replica (the media is shared
/// [`Bytes`]).
///
/// What it keeps (the bounds are named in [`super`]):
/// - the listed segments: the last `window_size`, plus up to
///   [`LISTED_EXTRA_SEGMENTS_MAX`] more while the playlist would otherwise
///   be shorter than three target durations (RFC 8216bis 6.2.2);
/// - retired segments, no longer listed but still downloadable until three
///   target durations of media came after them, at most
///   [`RETIRED_SEGMENTS_MAX`] (RFC 8216bis 6.2.2 keeps removed segments and
///   parts downloadable for a while);
/// - the parts of every kept segment, as slices of the segment's bytes
///   when they add up to it (they do for the segmenter's events), and the
///   parts of the segment in progress.
///
/// Playlist rules applied by [`HlsWindow::render`]:
/// - EXT-X-TARGETDURATION starts at the configured segment duration and
///   grows to each segment's duration rounded to the nearest second (the
///   RFC 8216 4.3.3.1 rule), never shrinking: RFC 8216bis 6.2.1 forbids it
///   to change, so it moves only when a segment outgrows it (a GOP longer
///   than the configured duration).
/// - PART-TARGET likewise starts at the configured part duration and grows
///   to the longest part seen, since every part MUST be at most
///   PART-TARGET (RFC 8216bis 4.4.4.9) and a part ends at the first frame
///   after the target, not exactly at it.
/// - EXT-X-PART tags are listed for the segment in progress and for
///   finished segments that start at most three target durations before
///   the end of the playlist (6.2.2: remove them beyond that).
/// - EXT-X-DISCONTINUITY-SEQUENCE appears once a discontinuity has been in
///   the playlist (6.2.2: required when segments are removed from a
///   playlist with EXT-X-DISCONTINUITY).
/// - EXT-X-VERSION is the least the rendered tags need (6.2.1): 9 for a
///   delta update with EXT-X-SKIP (section 8), else 3 for the
///   decimal EXTINF durations; no other tag used here requires more.
#[derive(Clone, Debug)]
pub struct HlsWindow {
    config: HlsConfig,
    container: Container,
    /// Init segments (fMP4) by id, oldest first; ids count the Init
    /// events applied, so every shard numbers them alike.
    inits: VecDeque<(u32, Bytes)>,
    /// The id the next Init gets.
    next_init: u32,
    /// Kept segments, oldest first, with consecutive msns; the first
    /// `retired` are no longer listed.
    segments: VecDeque<SegmentEntry>,
    retired: usize,
    /// The segment in progress.
    open: Option<OpenEntry>,
    /// Media time added since the window started: the clock that retires
    /// and drops segments.
    media_end_ms: u64,
    /// EXT-X-DISCONTINUITY tags removed from the playlist so far.
    discontinuity_sequence: u64,
    /// A discontinuity has been listed: EXT-X-DISCONTINUITY-SEQUENCE is
    /// rendered from then on.
    discontinuity_seen: bool,
    target_duration_s: u64,
    part_target_ms: u64,
    ended: bool,
}

#[derive(Clone, Debug)]
struct SegmentEntry {
    msn: u64,
    /// The init segment it needs (fMP4).
    init: Option<u32>,
    duration_ms: u32,
    data: Bytes,
    program_date_time_ms: u64,
    discontinuity: bool,
    /// All its parts in order, or none (not all seen, or no low latency).
    parts: Vec<PartEntry>,
    /// `media_end_ms` when it left the playlist.
    retired_at_ms: u64,
}

#[derive(Clone, Debug)]
struct PartEntry {
    duration_ms: u32,
    independent: bool,
    data: Bytes,
}

#[derive(Clone, Debug)]
struct OpenEntry {
    msn: u64,
    init: Option<u32>,
    /// None if the window joined after the segment's start.
    program_date_time_ms: Option<u64>,
    discontinuity: bool,
    /// Its parts so far, from part 0 on, without gaps.
    parts: Vec<PartEntry>,
    /// A part was missed: no later part of this segment is taken.
    broken: bool,
}

/// `ms` rounded to the nearest whole second, at least 1.
fn round_secs(ms: u64) -> u64 {
    ((ms + 500) / 1_000).max(1)
}

impl HlsWindow {
    /// An empty window of `container` segments. Out-of-range config
    /// values are clamped (see [`HlsConfig::validate`]); use the
    /// segmenter's config.
    pub fn new(config: HlsConfig, container: Container) -> Self {
        let config = config.clamped();
        Self {
            config,
            container,
            inits: VecDeque::new(),
            next_init: 0,
            segments: VecDeque::new(),
            retired: 0,
            open: None,
            media_end_ms: 0,
            discontinuity_sequence: 0,
            discontinuity_seen: false,
            target_duration_s: round_secs(u64::from(config.segment_duration_ms)),
            part_target_ms: u64::from(config.part_duration_ms),
            ended: false,
        }
    }

    /// Applies one event. Events must come in the segmenter's order; a
    /// stale or repeated one is ignored, and one that shows events were
    /// missed (a later msn than the next expected) restarts the window at
    /// it, since a playlist cannot have holes. Resynchronise such a replica
    /// with a clone of the owner's window.
    pub fn apply(&mut self, event: &HlsEvent) {
        match event {
            HlsEvent::SegmentStart {
                msn,
                program_date_time_ms,
                discontinuity,
            } => {
                if !self.accept(*msn) || self.open.as_ref().is_some_and(|o| o.msn == *msn) {
                    return;
                }
                self.open = Some(OpenEntry {
                    msn: *msn,
                    init: self.current_init(),
                    program_date_time_ms: Some(*program_date_time_ms),
                    discontinuity: *discontinuity,
                    parts: Vec::new(),
                    broken: false,
                });
            }
            HlsEvent::Part {
                msn,
                part,
                duration_ms,
                independent,
                data,
            } => {
                if !self.accept(*msn) {
                    return;
                }
                self.part_target_ms = self.part_target_ms.max(u64::from(*duration_ms));
                let init = self.current_init();
                let open = self.open.get_or_insert_with(|| OpenEntry {
                    msn: *msn,
                    init,
                    program_date_time_ms: None,
                    discontinuity: false,
                    parts: Vec::new(),
                    broken: false,
                });
                let next = open.parts.len();
                if !open.broken && usize::try_from(*part).is_ok_and(|p| p == next) {
                    open.parts.push(PartEntry {
                        duration_ms: *duration_ms,
                        independent: *independent,
                        data: data.clone(),
                    });
                } else if usize::try_from(*part).map_or(true, |p| p > next) {
                    open.broken = true;
                }
            }
            HlsEvent::Segment {
                msn,
                duration_ms,
                data,
                program_date_time_ms,
                discontinuity,
            } => {
                if !self.accept(*msn) {
                    return;
                }
                let (parts, init) = match self.open.take() {
                    Some(open) if open.msn == *msn && !open.broken => {
                        (slice_parts(open.parts, data), open.init)
                    }
                    Some(open) if open.msn == *msn => (Vec::new(), open.init),
                    _ => (Vec::new(), self.current_init()),
                };
                self.target_duration_s = self
                    .target_duration_s
                    .max(round_secs(u64::from(*duration_ms)));
                self.discontinuity_seen |= *discontinuity;
                self.media_end_ms += u64::from(*duration_ms);
                self.segments.push_back(SegmentEntry {
                    msn: *msn,
                    init,
                    duration_ms: *duration_ms,
                    data: data.clone(),
                    program_date_time_ms: *program_date_time_ms,
                    discontinuity: *discontinuity,
                    parts,
                    retired_at_ms: 0,
                });
                self.evict();
            }
            HlsEvent::Ended => {
                self.ended = true;
                self.open = None;
            }
            HlsEvent::Init { data } => {
                self.inits.push_back((self.next_init, data.clone()));
                self.next_init = self.next_init.wrapping_add(1);
                self.evict_inits();
            }
        }
    }

    /// Whether an event for segment `msn` continues the window; clears the
    /// window when events were missed. Media also ends an `Ended` state.
    fn accept(&mut self, msn: u64) -> bool {
        let next = self.next_msn();
        let fresh = self.segments.is_empty() && self.open.is_none();
        if msn < next && !fresh {
            return false;
        }
        if msn > next && !fresh {
            self.discontinuity_sequence += self
                .segments
                .iter()
                .skip(self.retired)
                .filter(|s| s.discontinuity)
                .count() as u64;
            self.segments.clear();
            self.retired = 0;
            self.open = None;
        }
        self.ended = false;
        true
    }

    /// Moves segments out of the playlist, then drops retired ones.
    /// The init the segments starting now need.
    fn current_init(&self) -> Option<u32> {
        self.inits.back().map(|(id, _)| *id)
    }

    /// Drops init segments no kept segment needs (the current one stays),
    /// and past [`INITS_KEPT_MAX`] the oldest.
    fn evict_inits(&mut self) {
        let current = self.current_init();
        let (open, segments) = (&self.open, &self.segments);
        self.inits.retain(|(id, _)| {
            Some(*id) == current
                || open.as_ref().is_some_and(|o| o.init == Some(*id))
                || segments.iter().any(|s| s.init == Some(*id))
        });
        while self.inits.len() > INITS_KEPT_MAX {
            self.inits.pop_front();
        }
    }

    /// Init segment `id` (fMP4), while a kept segment needs it.
    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, data)| data.clone())
    }

    /// The container of the window's media.
    pub fn container(&self) -> Container {
        self.container
    }

    fn evict(&mut self) {
        let min_playlist_ms = 3_000 * self.target_duration_s;
        let mut listed_ms: u64 = self
            .segments
            .iter()
            .skip(self.retired)
            .map(|s| u64::from(s.duration_ms))
            .sum();
        loop {
            let listed = self.segments.len() - self.retired;
            let Some(front) = self.segments.get_mut(self.retired) else {
                break;
            };
            if listed <= self.config.window_size {
                break;
            }
            let remaining_ms = listed_ms - u64::from(front.duration_ms);
            if remaining_ms < min_playlist_ms
                && listed <= self.config.window_size + LISTED_EXTRA_SEGMENTS_MAX
            {
                break;
            }
            front.retired_at_ms = self.media_end_ms;
            if front.discontinuity {
                self.discontinuity_sequence += 1;
            }
            listed_ms = remaining_ms;
            self.retired += 1;
        }
        while let Some(front) = self.segments.front() {
            if self.retired == 0 {
                break;
            }
            let expired = self.media_end_ms - front.retired_at_ms >= min_playlist_ms;
            if !expired && self.retired <= RETIRED_SEGMENTS_MAX {
                break;
            }
            self.segments.pop_front();
            self.retired -= 1;
        }
        self.evict_inits();
    }

    /// The msn of the first segment not yet finished.
    fn next_msn(&self) -> u64 {
        match (self.segments.back(), &self.open) {
            (Some(last), _) => last.msn + 1,
            (None, Some(open)) => open.msn,
            (None, None) => 0,
        }
    }

    /// The in-progress segment, if its parts are listed.
    fn open_listed(&self) -> Option<&OpenEntry> {
        self.open
            .as_ref()
            .filter(|o| self.config.low_latency && !o.parts.is_empty())
    }

    /// The media playlist. URIs take the form `uris` gives: segment `msn`
    /// is `{prefix}{msn}.ts{query}`, its part `i` `{prefix}{msn}.{i}.ts{query}`
    /// (a plain `&str` is a prefix with no query). With `skip`
    /// (`_HLS_skip=YES`) it is a delta update (RFC 8216bis 6.2.5.1): the
    /// segments that end more than CAN-SKIP-UNTIL (six target durations)
    /// before the end of the playlist, the in-progress parts included, are
    /// replaced by EXT-X-SKIP. `skip` is ignored without low latency (no
    /// CAN-SKIP-UNTIL is advertised) and once the stream ended.
    pub fn render<'a>(&self, uris: impl Into<UriForm<'a>>, skip: bool) -> String {
        let UriForm {
            prefix: base,
            query,
        } = uris.into();
        let ll = self.config.low_latency;
        let target_ms = 1_000 * self.target_duration_s;
        let open = self.open_listed();
        let open_ms: u64 = open.map_or(0, |o| {
            o.parts.iter().map(|p| u64::from(p.duration_ms)).sum()
        });
        let listed = || self.segments.iter().skip(self.retired);
        let total_ms = listed().map(|s| u64::from(s.duration_ms)).sum::<u64>() + open_ms;

        let skip_until_ms = 6 * target_ms;
        let mut skipped = 0;
        if ll && skip && !self.ended {
            let mut end_ms = 0;
            for s in listed() {
                end_ms += u64::from(s.duration_ms);
                if total_ms - end_ms <= skip_until_ms {
                    break;
                }
                skipped += 1;
            }
        }

        let mut out = String::with_capacity(256 + 160 * (self.segments.len() + 8));
        let ext = self.container.extension();
        // 9 for a delta update, 6 for EXT-X-MAP (RFC 8216 7), 3 for the
        // decimal EXTINF durations.
        let version = if skipped > 0 {
            9
        } else if self.container == Container::Fmp4 {
            6
        } else {
            3
        };
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{}\n",
            self.target_duration_s
        );
        if ll {
            let _ = write!(
                out,
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n\
                 #EXT-X-PART-INF:PART-TARGET={}\n",
                Secs(3 * self.part_target_ms),
                Secs(skip_until_ms),
                Secs(self.part_target_ms)
            );
        }
        let media_sequence = listed().next().map_or(self.next_msn(), |s| s.msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{media_sequence}");
        if self.discontinuity_seen || open.is_some_and(|o| o.discontinuity) {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }

        // EXT-X-MAP before the first segment rendered and wherever the
        // init changes (it applies to every segment after it).
        let mut mapped = None;
        let mut map = |out: &mut String, init: Option<u32>| {
            if let Some(id) = init.filter(|_| init != mapped) {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{base}init-{id}.mp4{query}\"");
                mapped = init;
            }
        };
        let mut start_ms = 0;
        for (i, s) in listed().enumerate() {
            let start_distance_ms = total_ms - start_ms;
            start_ms += u64::from(s.duration_ms);
            if i < skipped {
                continue;
            }
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            map(&mut out, s.init);
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                DateTime(s.program_date_time_ms)
            );
            if ll && start_distance_ms <= 3 * target_ms {
                render_parts(&mut out, base, ext, query, s.msn, &s.parts);
            }
            let _ = write!(
                out,
                "#EXTINF:{},\n{base}{}.{ext}{query}\n",
                Secs(u64::from(s.duration_ms)),
                s.msn
            );
        }
        if let Some(o) = open {
            if o.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            map(&mut out, o.init);
            if let Some(pdt) = o.program_date_time_ms {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", DateTime(pdt));
            }
            render_parts(&mut out, base, ext, query, o.msn, &o.parts);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        } else if let Some((msn, part)) = self.preload_hint() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{base}{msn}.{part}.{ext}{query}\""
            );
        }
        out
    }

    /// The bytes of segment `msn`, while it is kept (listed or retired).
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.entry(msn).map(|s| s.data.clone())
    }

    /// The bytes of part `part` of segment `msn`, while kept.
    pub fn part(&self, msn: u64, part: u32) -> Option<Bytes> {
        let index = usize::try_from(part).ok()?;
        let parts = match &self.open {
            Some(open) if open.msn == msn => &open.parts,
            _ => &self.entry(msn)?.parts,
        };
        parts.get(index).map(|p| p.data.clone())
    }

    /// Where segment `msn` (`part` None) or its part `part` stands; see
    /// [`Availability`]. Still to come are: a part of the segment in
    /// progress or of a later one, up to the Advance Part Limit (the rule
    /// of [`Readiness::Reject`]); the segment in progress and the next
    /// one. A part of a finished segment that was not seen, or a part of
    /// a segment in progress whose earlier parts this window missed, never
    /// comes here.
    pub fn media(&self, msn: u64, part: Option<u32>) -> Availability {
        let found = match part {
            Some(p) => self.part(msn, p),
            None => self.segment(msn),
        };
        if let Some(bytes) = found {
            return Availability::Here(bytes);
        }
        let next = self.next_msn();
        let coming = !self.ended
            && msn >= next
            && match part {
                None => msn <= next.saturating_add(1),
                Some(_) if self.open.as_ref().is_some_and(|o| o.msn == msn && o.broken) => false,
                Some(p) => self.config.low_latency && !self.too_far_ahead(msn, p),
            };
        if coming {
            Availability::Coming
        } else {
            Availability::Gone
        }
    }

    /// Where init segment `id` stands (fMP4): here while a kept segment
    /// needs it, coming when it is the next one the window numbers (a
    /// replica that has not applied it yet), else gone.
    pub fn init_segment(&self, id: u32) -> Availability {
        match self.init(id) {
            Some(bytes) => Availability::Here(bytes),
            None if self.container == Container::Fmp4 && !self.ended && id == self.next_init => {
                Availability::Coming
            }
            None => Availability::Gone,
        }
    }

    /// Whether part `part` of segment `msn` (the one in progress or a
    /// later one) lies beyond what a server may make a client wait for:
    /// more than two segments past the last finished one (6.2.5.2's
    /// SHOULD), or past the newest part by the Advance Part Limit or more
    /// (3 / PART-TARGET parts when PART-TARGET is under one second, else
    /// 3). A request for the segment after the one in progress counts at
    /// least `part + 1` parts ahead, since the open segment may end at any
    /// moment.
    fn too_far_ahead(&self, msn: u64, part: u32) -> bool {
        let next = self.next_msn();
        if msn > next.saturating_add(1) {
            return true;
        }
        let open_parts = match &self.open {
            Some(open) if open.msn == next => open.parts.len() as u64,
            _ => 0,
        };
        let ahead = if msn == next {
            (u64::from(part) + 1).saturating_sub(open_parts)
        } else {
            u64::from(part) + 1
        };
        // "Exceeds by the limit": ahead >= limit, i.e. ahead × PART-TARGET
        // >= 3 s.
        if self.part_target_ms < 1_000 {
            ahead.saturating_mul(self.part_target_ms) >= 3_000
        } else {
            ahead >= 3
        }
    }

    fn entry(&self, msn: u64) -> Option<&SegmentEntry> {
        let first = self.segments.front()?.msn;
        let index = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(index)
    }

    /// The part the playlist hints at with EXT-X-PRELOAD-HINT (low latency,
    /// not ended): the next part of the segment in progress, or part 0 of
    /// the next segment. A request for it is [`Availability::Coming`] (and
    /// so is one for a later part within the limit, which a shard further
    /// ahead may hint already) until the part exists, and `Gone` once the
    /// segment ended before that part (6.2.6 allows hinted parts never to
    /// be published).
    pub fn preload_hint(&self) -> Option<(u64, u32)> {
        if !self.config.low_latency || self.ended {
            return None;
        }
        match &self.open {
            Some(open) if open.broken => None,
            Some(open) => Some((open.msn, u32::try_from(open.parts.len()).ok()?)),
            None => Some((self.next_msn(), 0)),
        }
    }

    /// Whether a blocking reload for segment `msn` (and part `part`) can be
    /// answered; see [`Readiness`] for the rules.
    #[must_use]
    pub fn readiness(&self, msn: u64, part: Option<u32>) -> Readiness {
        if !self.config.low_latency || self.ended {
            return Readiness::Ready;
        }
        let next = self.next_msn();
        if msn > next.saturating_add(1) {
            return Readiness::Reject;
        }
        let Some(part) = part else {
            return if msn < next {
                Readiness::Ready
            } else {
                Readiness::Wait
            };
        };
        let (msn, part) = if msn < next {
            match self.entry(msn).map(|s| s.parts.len()) {
                Some(count) if count > 0 && usize::try_from(part).map_or(true, |p| p >= count) => {
                    (msn + 1, 0)
                }
                // A finished segment holds the part, or its parts are
                // unknown (missed, or gone from the window): the current
                // playlist is the answer.
                _ => return Readiness::Ready,
            }
        } else {
            (msn, part)
        };
        if msn < next || self.last_part().is_some_and(|last| last >= (msn, part)) {
            return Readiness::Ready;
        }
        if self.too_far_ahead(msn, part) {
            Readiness::Reject
        } else {
            Readiness::Wait
        }
    }

    /// The (msn, part index) of the newest finished part, if any: when it
    /// changes, waiting blocking reloads and part requests should check
    /// again.
    pub fn last_part(&self) -> Option<(u64, u32)> {
        let newest = |msn: u64, parts: &[PartEntry]| {
            let last = parts.len().checked_sub(1)?;
            Some((msn, u32::try_from(last).ok()?))
        };
        self.open
            .as_ref()
            .and_then(|o| newest(o.msn, &o.parts))
            .or_else(|| self.segments.back().and_then(|s| newest(s.msn, &s.parts)))
    }

    /// How long a blocking reload may be held before it is answered 503:
    /// three target durations (RFC 8216bis 6.2.5.2).
    pub fn blocking_timeout_ms(&self) -> u64 {
        3_000 * self.target_duration_s
    }

    /// The playlist lists a finished segment (an EXTINF), not only the
    /// parts of the one in progress.
    pub fn lists_a_segment(&self) -> bool {
        self.segments.len() > self.retired
    }

    /// Nothing to play yet: no finished segment and no part.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty() && self.last_part().is_none()
    }

    /// The stream ended ([`HlsEvent::Ended`]) and nothing came after.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Current EXT-X-TARGETDURATION, seconds.
    pub fn target_duration_s(&self) -> u64 {
        self.target_duration_s
    }

    /// Peak and average bit rate (bits per second) of the listed
    /// segments, or of the open segment's parts before any segment is
    /// finished: a multivariant playlist's BANDWIDTH and
    /// AVERAGE-BANDWIDTH. None before any media.
    pub fn bit_rates(&self) -> Option<(u64, u64)> {
        let rate = |bytes: usize, ms: u32| (bytes as u64 * 8 * 1_000) / u64::from(ms.max(1));
        let mut listed: Vec<(usize, u32)> = self
            .segments
            .iter()
            .skip(self.retired)
            .map(|s| (s.data.len(), s.duration_ms))
            .collect();
        if listed.is_empty() {
            listed = self
                .open
                .iter()
                .flat_map(|o| &o.parts)
                .map(|p| (p.data.len(), p.duration_ms))
                .collect();
        }
        let peak = listed.iter().map(|&(b, ms)| rate(b, ms)).max()?;
        let (bytes, ms) = listed
            .iter()
            .fold((0, 0), |(b, m), &(pb, pm)| (b + pb, m + pm));
        Some((peak, rate(bytes, ms)))
    }
}

/// How a playlist names its segments and parts: `{prefix}{msn}.ts{query}`
/// and `{prefix}{msn}.{part}.ts{query}`.
#[derive(Clone, Copy, Debug)]
pub struct UriForm<'a> {
    pub prefix: &'a str,
    /// Empty, or `?name=value...` carried over from the playlist request.
    pub query: &'a str,
}

impl<'a> From<&'a str> for UriForm<'a> {
    fn from(prefix: &'a str) -> Self {
        UriForm { prefix, query: "" }
    }
}

/// A finished segment's parts as slices of its bytes, when they add up to
/// them (then the parts' own buffers are freed); else as they came.
fn slice_parts(parts: Vec<PartEntry>, data: &Bytes) -> Vec<PartEntry> {
    let total: usize = parts.iter().map(|p| p.data.len()).sum();
    if total != data.len() {
        return parts;
    }
    let mut offset = 0;
    parts
        .into_iter()
        .map(|p| {
            let end = offset + p.data.len();
            debug_assert_eq!(data.slice(offset..end), p.data);
            let sliced = PartEntry {
                data: data.slice(offset..end),
                ..p
            };
            offset = end;
            sliced
        })
        .collect()
}

fn render_parts(
    out: &mut String,
    base: &str,
    ext: &str,
    query: &str,
    msn: u64,
    parts: &[PartEntry],
) {
    for (i, p) in parts.iter().enumerate() {
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{base}{msn}.{i}.{ext}{query}\"",
            Secs(u64::from(p.duration_ms))
        );
        if p.independent {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    }
}
