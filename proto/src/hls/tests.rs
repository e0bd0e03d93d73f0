//! Scripted streams through the segmenter and the window: golden
//! playlists, blocking-reload rules, cutting rules.

use std::io::Write as _;

use bytes::Bytes;

use super::*;
use crate::media::{AudioCodec, FrameKind, VideoCodec};

/// Writes `[PSI]` for a chunk start and `K<ts>;`, `V<ts>;`, `A<ts>;` for a
/// keyframe, an inter frame, an audio frame: the bytes show what went where.
struct FakeMuxer;

impl SegmentMuxer for FakeMuxer {
    fn start_chunk(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"[PSI]");
    }

    fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> bool {
        if frame.sequence_header {
            return false;
        }
        let tag = match (frame.kind, frame.keyframe) {
            (FrameKind::Video, true) => 'K',
            (FrameKind::Video, false) => 'V',
            _ => 'A',
        };
        let _ = write!(out, "{tag}{};", frame.timestamp);
        true
    }
}

fn video(ts: u32, keyframe: bool) -> Frame {
    Frame {
        kind: FrameKind::Video,
        timestamp: ts,
        composition_offset: 0,
        keyframe,
        sequence_header: false,
        video_codec: Some(VideoCodec::Avc),
        audio_codec: None,
        payload: Bytes::from_static(b"\x27\x01\0\0\0"),
    }
}

fn audio(ts: u32) -> Frame {
    Frame {
        kind: FrameKind::Audio,
        timestamp: ts,
        composition_offset: 0,
        keyframe: false,
        sequence_header: false,
        video_codec: None,
        audio_codec: Some(AudioCodec::Aac),
        payload: Bytes::from_static(b"\xaf\x01\x21"),
    }
}

fn video_seq() -> Frame {
    Frame {
        sequence_header: true,
        ..video(0, false)
    }
}

fn audio_seq() -> Frame {
    Frame {
        sequence_header: true,
        ..audio(0)
    }
}

/// 2023-11-14T22:13:20.000Z.
const WALL: u64 = 1_700_000_000_000;

/// A publisher: 30 fps video with a keyframe every `gop_ms`, and AAC audio
/// at 44.1 kHz (1024 samples a frame), interleaved in timestamp order
/// (video first on a tie), arriving in real time from `wall_ms` on.
struct Source {
    gop_frames: u64,
    video: bool,
    audio: bool,
    wall_ms: u64,
    n: u64,
    k: u64,
}

impl Source {
    fn new(gop_ms: u64, wall_ms: u64) -> Self {
        Self {
            gop_frames: gop_ms * 30 / 1_000,
            video: true,
            audio: true,
            wall_ms,
            n: 0,
            k: 0,
        }
    }

    fn video_ts(&self) -> u32 {
        (self.n * 1_000 / 30) as u32
    }

    fn audio_ts(&self) -> u32 {
        (self.k * 1_024 * 1_000 / 44_100) as u32
    }

    /// The frames with timestamps before `end_ms`, each with its arrival.
    fn until(&mut self, end_ms: u32) -> Vec<(Frame, u64)> {
        let mut out = Vec::new();
        loop {
            let v = self.video.then(|| self.video_ts()).filter(|&t| t < end_ms);
            let a = self.audio.then(|| self.audio_ts()).filter(|&t| t < end_ms);
            let frame = match (v, a) {
                (Some(v), Some(a)) if v <= a => self.next_video(v),
                (Some(v), None) => self.next_video(v),
                (_, Some(a)) => {
                    self.k += 1;
                    audio(a)
                }
                (None, None) => return out,
            };
            let wall = self.wall_ms + u64::from(frame.timestamp);
            out.push((frame, wall));
        }
    }

    fn next_video(&mut self, ts: u32) -> Frame {
        let key = self.n.is_multiple_of(self.gop_frames);
        self.n += 1;
        video(ts, key)
    }
}

/// A segmenter and one shard's window fed from it, with every event kept.
struct Harness {
    segmenter: Segmenter,
    window: HlsWindow,
    events: Vec<HlsEvent>,
}

impl Harness {
    /// The index in `events` of part `part` of segment `msn`.
    fn part_event(&self, msn: u64, part: u32) -> usize {
        self.events
            .iter()
            .position(
                |e| matches!(e, HlsEvent::Part { msn: m, part: p, .. } if (*m, *p) == (msn, part)),
            )
            .expect("the part was shipped")
    }

    fn new(config: HlsConfig) -> Self {
        Self {
            segmenter: Segmenter::new(config, Box::new(FakeMuxer)),
            window: HlsWindow::new(config, Container::Ts),
            events: Vec::new(),
        }
    }

    fn apply(&mut self, events: Vec<HlsEvent>) -> Vec<HlsEvent> {
        for e in &events {
            self.window.apply(e);
        }
        self.events.extend(events.iter().cloned());
        events
    }

    fn push(&mut self, frame: &Frame, now: u64) -> Vec<HlsEvent> {
        let events = self.segmenter.push(frame, now);
        self.apply(events)
    }

    /// Sequence headers, as a publisher sends them first.
    fn start(&mut self, source: &Source) {
        if source.video {
            self.push(&video_seq(), source.wall_ms);
        }
        if source.audio {
            self.push(&audio_seq(), source.wall_ms);
        }
    }

    fn run(&mut self, source: &mut Source, end_ms: u32) {
        for (frame, wall) in source.until(end_ms) {
            self.push(&frame, wall);
        }
    }

    fn segments(&self) -> Vec<(u64, u32, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::Segment {
                    msn,
                    duration_ms,
                    data,
                    ..
                } => Some((*msn, *duration_ms, data.clone())),
                _ => None,
            })
            .collect()
    }

    fn parts(&self) -> Vec<(u64, u32, u32, bool, Bytes)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::Part {
                    msn,
                    part,
                    duration_ms,
                    independent,
                    data,
                } => Some((*msn, *part, *duration_ms, *independent, data.clone())),
                _ => None,
            })
            .collect()
    }
}

fn ll(window_size: usize) -> HlsConfig {
    HlsConfig {
        segment_duration_ms: 2_000,
        part_duration_ms: 500,
        window_size,
        low_latency: true,
    }
}

fn plain(window_size: usize) -> HlsConfig {
    HlsConfig {
        low_latency: false,
        ..ll(window_size)
    }
}

/// A 2 s GOP stream run to `end_ms` with the given config.
fn scripted(config: HlsConfig, end_ms: u32) -> (Harness, Source) {
    let mut h = Harness::new(config);
    let mut source = Source::new(2_000, WALL);
    h.start(&source);
    h.run(&mut source, end_ms);
    (h, source)
}

#[test]
fn plain_playlist_golden_and_sliding() {
    let (mut h, mut source) = scripted(plain(3), 4_200);
    assert_eq!(
        h.window.render("live-", false),
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
         #EXTINF:2.000,\n\
         live-0.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n\
         #EXTINF:2.000,\n\
         live-1.ts\n"
    );
    h.run(&mut source, 10_200);
    let expected = "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-MEDIA-SEQUENCE:2\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n\
         #EXTINF:2.000,\n\
         live-2.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
         #EXTINF:2.000,\n\
         live-3.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z\n\
         #EXTINF:2.000,\n\
         live-4.ts\n";
    assert_eq!(h.window.render("live-", false), expected);
    // Without low latency there are no parts, and skip and blocking
    // directives are ignored.
    assert!(h.parts().is_empty());
    assert_eq!(h.window.render("live-", true), expected);
    assert_eq!(h.window.readiness(99, Some(3)), Readiness::Ready);
    assert_eq!(h.window.preload_hint(), None);
    // Each segment is PSI once, then its frames, starting at its keyframe.
    let (msn, duration, data) = &h.segments()[2];
    assert_eq!((*msn, *duration), (2, 2_000));
    assert!(data.starts_with(b"[PSI]K4000;A4017;V4033;"));
    assert_eq!(data.windows(5).filter(|w| w == b"[PSI]").count(), 1);
    assert!(data.ends_with(b"A5990;"));
}

#[test]
fn ll_playlist_golden() {
    let (h, _) = scripted(ll(3), 7_200);
    assert_eq!(
        h.window.render("test", false),
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
         #EXT-X-PART-INF:PART-TARGET=0.500\n\
         #EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
         #EXTINF:2.000,\n\
         test0.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test1.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test1.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test1.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test1.3.ts\"\n\
         #EXTINF:2.000,\n\
         test1.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test2.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test2.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test2.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test2.3.ts\"\n\
         #EXTINF:2.000,\n\
         test2.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test3.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test3.1.ts\"\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"test3.2.ts\"\n"
    );
    assert_eq!(h.window.last_part(), Some((3, 1)));
    assert_eq!(h.window.preload_hint(), Some((3, 2)));
}

#[test]
fn ll_playlist_slides() {
    let (mut h, mut source) = scripted(ll(3), 10_200);
    // Segment 5 has started but has no finished part: the hint is its
    // part 0, and the media sequence has moved past segments 0 and 1.
    assert_eq!(
        h.window.render("test-", false),
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
         #EXT-X-PART-INF:PART-TARGET=0.500\n\
         #EXT-X-MEDIA-SEQUENCE:2\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-2.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-2.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-2.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-2.3.ts\"\n\
         #EXTINF:2.000,\n\
         test-2.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-3.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-3.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-3.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-3.3.ts\"\n\
         #EXTINF:2.000,\n\
         test-3.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-4.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-4.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-4.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"test-4.3.ts\"\n\
         #EXTINF:2.000,\n\
         test-4.ts\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"test-5.0.ts\"\n"
    );
    // Segments that left the playlist stay downloadable for a while.
    assert!(h.window.segment(0).is_some());
    assert!(h.window.part(1, 3).is_some());
    // One more part: segment 2 now starts more than three target durations
    // before the end, so its parts are no longer listed.
    h.run(&mut source, 10_700);
    let text = h.window.render("test-", false);
    assert!(!text.contains("test-2.0.ts"), "{text}");
    assert!(text.contains(
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n#EXTINF:2.000,\ntest-2.ts\n"
    ));
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:30.000Z\n#EXT-X-PART:DURATION=0.500,URI=\"test-5.0.ts\",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"test-5.1.ts\"\n"));
}

#[test]
fn discontinuity_on_republish_and_sequence_when_it_slides_out() {
    let mut h = Harness::new(plain(3));
    let mut a = Source::new(2_000, WALL);
    h.start(&a);
    h.run(&mut a, 6_000);
    // A new publisher takes over; its clock starts at 0, a second later.
    h.segmenter.discontinuity();
    let mut b = Source::new(2_000, WALL + 7_000);
    h.start(&b);
    h.run(&mut b, 4_200);
    // Publisher A's last segment ends at its last frame: the audio frame at
    // 5990 ms lasts 23 ms, so 2.013 s. B's first segment is dated by the
    // wall clock, not by A's timeline.
    assert_eq!(
        h.window.render("s", false),
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-MEDIA-SEQUENCE:2\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:0\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n\
         #EXTINF:2.013,\n\
         s2.ts\n\
         #EXT-X-DISCONTINUITY\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:27.000Z\n\
         #EXTINF:2.000,\n\
         s3.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:29.000Z\n\
         #EXTINF:2.000,\n\
         s4.ts\n"
    );
    h.run(&mut b, 10_200);
    assert_eq!(
        h.window.render("s", false),
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-MEDIA-SEQUENCE:5\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:31.000Z\n\
         #EXTINF:2.000,\n\
         s5.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:33.000Z\n\
         #EXTINF:2.000,\n\
         s6.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:35.000Z\n\
         #EXTINF:2.000,\n\
         s7.ts\n"
    );
}

#[test]
fn ll_discontinuity_precedes_the_first_part_of_the_open_segment() {
    let mut h = Harness::new(ll(3));
    let mut a = Source::new(2_000, WALL);
    h.start(&a);
    h.run(&mut a, 5_000);
    h.segmenter.discontinuity();
    let mut b = Source::new(2_000, WALL + 6_000);
    h.start(&b);
    h.run(&mut b, 700);
    let text = h.window.render("t", false);
    // Segment 2 (A's last) ends at its own last frame, its final part cut
    // to the part target; segment 3 (B) is in progress.
    assert!(text.contains(
        "#EXT-X-PART:DURATION=0.500,URI=\"t2.1.ts\"\n#EXTINF:1.000,\nt2.ts\n\
         #EXT-X-DISCONTINUITY\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"t3.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"t3.1.ts\"\n"
    ));
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"));
    // B's bytes restart its clock; A's continue to the end of segment 2.
    assert!(h.window.part(3, 0).unwrap().starts_with(b"[PSI]K0;A0;"));
    assert!(h.window.segment(2).unwrap().ends_with(b"A4992;"));
}

#[test]
fn delta_update_skips_old_segments() {
    let (h, _) = scripted(ll(8), 18_700);
    let text = h.window.render("x", true);
    assert_eq!(
        text,
        "#EXTM3U\n\
         #EXT-X-VERSION:9\n\
         #EXT-X-TARGETDURATION:2\n\
         #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
         #EXT-X-PART-INF:PART-TARGET=0.500\n\
         #EXT-X-MEDIA-SEQUENCE:1\n\
         #EXT-X-SKIP:SKIPPED-SEGMENTS=2\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n\
         #EXTINF:2.000,\n\
         x3.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z\n\
         #EXTINF:2.000,\n\
         x4.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:30.000Z\n\
         #EXTINF:2.000,\n\
         x5.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z\n\
         #EXTINF:2.000,\n\
         x6.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:34.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x7.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x7.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x7.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x7.3.ts\"\n\
         #EXTINF:2.000,\n\
         x7.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x8.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x8.1.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x8.2.ts\"\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x8.3.ts\"\n\
         #EXTINF:2.000,\n\
         x8.ts\n\
         #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:38.000Z\n\
         #EXT-X-PART:DURATION=0.500,URI=\"x9.0.ts\",INDEPENDENT=YES\n\
         #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"x9.1.ts\"\n"
    );
    // The full playlist lists all eight segments, at version 3.
    let full = h.window.render("x", false);
    assert!(full.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"));
    assert!(!full.contains("EXT-X-SKIP"));
    assert_eq!(full.matches("#EXTINF:").count(), 8);
    assert!(full.contains("x1.ts\n"));
    // A window that fits within the skip boundary has nothing to skip.
    let (h, _) = scripted(ll(6), 18_700);
    assert!(!h.window.render("x", true).contains("EXT-X-SKIP"));
}

#[test]
fn blocking_reload_rules() {
    let (mut h, mut source) = scripted(ll(3), 7_200);
    let w = &h.window;
    // Segments 0-2 finished; segment 3 has parts 0 and 1.
    assert_eq!(w.last_part(), Some((3, 1)));
    // Parts that exist.
    assert_eq!(w.readiness(3, Some(1)), Readiness::Ready);
    assert_eq!(w.readiness(3, Some(0)), Readiness::Ready);
    assert_eq!(w.readiness(1, Some(2)), Readiness::Ready);
    // Gone from the playlist: the current playlist is the answer.
    assert_eq!(w.readiness(0, None), Readiness::Ready);
    assert_eq!(w.readiness(0, Some(9)), Readiness::Ready);
    // The next part, and the first part of the next segment.
    assert_eq!(w.readiness(3, Some(2)), Readiness::Wait);
    assert_eq!(w.readiness(4, Some(0)), Readiness::Wait);
    // A part index past the end of a finished segment is part 0 of the
    // next one, which exists here.
    assert_eq!(w.readiness(2, Some(4)), Readiness::Ready);
    assert_eq!(w.readiness(2, Some(u32::MAX)), Readiness::Ready);
    // Whole segments: 2 exists, 3 is in progress, 4 is the next.
    assert_eq!(w.readiness(2, None), Readiness::Ready);
    assert_eq!(w.readiness(3, None), Readiness::Wait);
    assert_eq!(w.readiness(4, None), Readiness::Wait);
    // More than two segments beyond the last finished one (2).
    assert_eq!(w.readiness(5, None), Readiness::Reject);
    assert_eq!(w.readiness(5, Some(0)), Readiness::Reject);
    assert_eq!(w.readiness(u64::MAX, Some(0)), Readiness::Reject);
    // The Advance Part Limit: 3 s of 0.5 s parts = 6 parts past the newest.
    assert_eq!(w.readiness(3, Some(6)), Readiness::Wait);
    assert_eq!(w.readiness(3, Some(7)), Readiness::Reject);
    assert_eq!(w.readiness(3, Some(u32::MAX)), Readiness::Reject);
    assert_eq!(w.readiness(4, Some(4)), Readiness::Wait);
    assert_eq!(w.readiness(4, Some(5)), Readiness::Reject);
    assert_eq!(w.blocking_timeout_ms(), 6_000);

    // Segment 3 finishes with 4 parts; segment 4 has started, no part yet.
    h.run(&mut source, 8_200);
    let w = &h.window;
    assert_eq!(w.last_part(), Some((3, 3)));
    assert_eq!(w.preload_hint(), Some((4, 0)));
    assert_eq!(w.readiness(3, None), Readiness::Ready);
    assert_eq!(w.readiness(3, Some(3)), Readiness::Ready);
    // Part 4 of segment 3 does not exist: it means part 0 of segment 4.
    assert_eq!(w.readiness(3, Some(4)), Readiness::Wait);
    assert_eq!(w.readiness(4, Some(0)), Readiness::Wait);
    h.run(&mut source, 8_600);
    assert_eq!(h.window.readiness(3, Some(4)), Readiness::Ready);
    assert_eq!(h.window.readiness(4, Some(0)), Readiness::Ready);

    // After the end, the directives are ignored: answer at once.
    let events = h.segmenter.end();
    h.apply(events);
    let w = &h.window;
    assert!(w.is_ended());
    assert_eq!(w.readiness(4, Some(5)), Readiness::Ready);
    assert_eq!(w.readiness(5, None), Readiness::Ready);
    assert_eq!(w.readiness(99, Some(0)), Readiness::Ready);
    assert_eq!(w.preload_hint(), None);
    let text = w.render("t", true);
    assert!(text.ends_with("t4.ts\n#EXT-X-ENDLIST\n"), "{text}");
    assert!(!text.contains("PRELOAD-HINT") && !text.contains("EXT-X-SKIP"));
}

/// Every segment or part request is answered for what the window knows:
/// here, coming (held), or gone (404 at once), the same for the owner and
/// for a replica a few events behind, which must hold a part that a
/// playlist from a shard further ahead listed (the shaka-player 404 of
/// issue 13).
#[test]
fn media_requests_are_here_coming_or_gone() {
    use Availability::{Coming, Gone};
    let here = |a: Availability| matches!(a, Availability::Here(_));
    let (h, _) = scripted(ll(3), 7_200);
    let w = &h.window;
    // Segments 0-2 finished (4 parts each); segment 3 has parts 0 and 1.
    assert!(w.lists_a_segment());
    assert!(here(w.media(3, Some(1))));
    assert!(here(w.media(2, None)));
    assert!(here(w.media(2, Some(3))));
    // The hinted part, a later one within the Advance Part Limit (3 s of
    // 0.5 s parts), and part 0 of the next segment are coming.
    assert_eq!(w.media(3, Some(2)), Coming);
    assert_eq!(w.media(3, Some(6)), Coming);
    assert_eq!(w.media(4, Some(0)), Coming);
    // The segment in progress and the next one are coming.
    assert_eq!(w.media(3, None), Coming);
    assert_eq!(w.media(4, None), Coming);
    // Never: past the limit, beyond the next segment, a part a finished
    // segment ended without, and an init segment of a TS window.
    assert_eq!(w.media(3, Some(7)), Gone);
    assert_eq!(w.media(5, None), Gone);
    assert_eq!(w.media(5, Some(0)), Gone);
    assert_eq!(w.media(2, Some(4)), Gone);
    assert_eq!(w.init_segment(0), Gone);

    // A replica two parts behind: it has applied segment 3's start and
    // none of its parts, so its hint is part 3.0, yet part 3.1 (listed by
    // the owner's playlist) is coming, not gone.
    let upto = h.part_event(3, 0);
    let mut replica = HlsWindow::new(ll(3), Container::Ts);
    for e in &h.events[..upto] {
        replica.apply(e);
    }
    assert_eq!(replica.preload_hint(), Some((3, 0)));
    assert_eq!(replica.media(3, Some(1)), Coming);
    assert_eq!(replica.media(3, None), Coming);
    for e in &h.events[upto..] {
        replica.apply(e);
    }
    assert_eq!(replica.media(3, Some(1)), w.media(3, Some(1)));

    // A replica that joined mid-segment never gets that segment's parts.
    let mut late = HlsWindow::new(ll(3), Container::Ts);
    for e in &h.events[upto + 1..] {
        late.apply(e);
    }
    assert_eq!(late.media(3, Some(0)), Gone);
    assert_eq!(late.media(3, Some(1)), Gone);
    assert_eq!(late.media(4, Some(0)), Coming);

    // Dropped segments are gone; after the end, whatever is not here is.
    let (mut h, _) = scripted(ll(3), 30_200);
    assert_eq!(h.window.media(0, None), Gone);
    assert_eq!(h.window.media(0, Some(0)), Gone);
    let events = h.segmenter.end();
    h.apply(events);
    let next = h.window.last_part().unwrap().0 + 1;
    assert_eq!(h.window.media(next, Some(0)), Gone);
    assert_eq!(h.window.media(next, None), Gone);
}

#[test]
fn blocking_reload_before_any_media() {
    let w = HlsWindow::new(ll(3), Container::Ts);
    assert!(w.is_empty());
    assert!(!w.lists_a_segment());
    assert_eq!(w.last_part(), None);
    assert_eq!(w.preload_hint(), Some((0, 0)));
    assert_eq!(w.readiness(0, Some(0)), Readiness::Wait);
    assert_eq!(w.readiness(1, None), Readiness::Wait);
    assert_eq!(w.readiness(2, None), Readiness::Reject);
    assert_eq!(
        w.render("t", false).lines().last(),
        Some("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"t0.0.ts\"")
    );
}

#[test]
fn parts_cut_at_the_first_frame_at_or_after_the_part_duration() {
    let mut h = Harness::new(ll(3));
    h.push(&video_seq(), WALL);
    assert!(h.push(&video(0, true), WALL).len() == 1); // SegmentStart
    for ts in [200, 400, 499] {
        assert!(h.push(&video(ts, false), WALL).is_empty(), "{ts}");
    }
    // 520 ms: the first frame at or after 500 ms ends part 0 (520 ms long);
    // the part is shipped by this very push.
    let events = h.push(&video(520, false), WALL);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::Part {
            msn: 0,
            part: 0,
            duration_ms: 520,
            independent: true,
            ..
        }]
    ));
    assert!(h.push(&video(1_019, false), WALL).is_empty());
    // Any frame cuts a part, audio too, exactly at the target.
    let events = h.push(&audio(1_020), WALL);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::Part {
            msn: 0,
            part: 1,
            duration_ms: 500,
            independent: false,
            ..
        }]
    ));
    let parts = h.parts();
    assert_eq!(parts[0].4.as_ref(), b"[PSI]K0;V200;V400;V499;");
    assert_eq!(parts[1].4.as_ref(), b"[PSI]V520;V1019;");
    // The part target grows to the longest part, so no part exceeds it.
    assert!(h
        .window
        .render("p", false)
        .contains("#EXT-X-PART-INF:PART-TARGET=0.520\n"));
    assert!(h
        .window
        .render("p", false)
        .contains("PART-HOLD-BACK=1.560,"));
}

#[test]
fn independent_only_on_parts_with_a_keyframe() {
    let mut h = Harness::new(ll(3));
    h.push(&video_seq(), WALL);
    // Keyframes at 0 (part 0), at 700 (inside part 1) and at 2000 (the
    // next segment).
    for n in 0..80u32 {
        let ts = n * 1_000 / 30;
        h.push(
            &video(ts, n.is_multiple_of(60) || n == 21),
            WALL + u64::from(ts),
        );
    }
    let flags: Vec<_> = h.parts().iter().map(|p| (p.0, p.1, p.3)).collect();
    assert_eq!(
        flags,
        [
            (0, 0, true),
            (0, 1, true),
            (0, 2, false),
            (0, 3, false),
            (1, 0, true)
        ]
    );
    let text = h.window.render("i", false);
    assert!(text.contains("URI=\"i0.1.ts\",INDEPENDENT=YES\n"));
    assert!(text.contains("URI=\"i0.2.ts\"\n"));
    assert_eq!(text.matches("INDEPENDENT=YES").count(), 3);

    // Audio only: every part is independent, segments cut at any frame.
    let mut h = Harness::new(ll(3));
    let mut source = Source::new(2_000, WALL);
    source.video = false;
    h.start(&source);
    h.run(&mut source, 4_600);
    assert!(h.parts().iter().all(|p| p.3));
    let segments = h.segments();
    assert_eq!(segments.len(), 2);
    // 2020 is the first audio frame at or after 2000 ms.
    assert_eq!(segments[0].1, 2_020);
    assert!(segments[1].2.starts_with(b"[PSI]A2020;"));
}

#[test]
fn segments_cut_only_at_keyframes() {
    let mut h = Harness::new(ll(3));
    let mut source = Source::new(5_000, WALL);
    h.start(&source);
    h.run(&mut source, 15_200);
    let segments = h.segments();
    assert_eq!(
        segments.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(0, 5_000), (1, 5_000), (2, 5_000)]
    );
    for s in &segments {
        assert!(s
            .2
            .starts_with(format!("[PSI]K{};", s.0 * 5_000).as_bytes()));
    }
    assert_eq!(h.window.target_duration_s(), 5);
    let text = h.window.render("g", false);
    assert!(text.contains("#EXT-X-TARGETDURATION:5\n"));
    assert!(text.contains("CAN-SKIP-UNTIL=30.000\n"));
    assert!(text.contains("#EXTINF:5.000,\ng1.ts\n"));
    // Ten parts a segment, the first independent.
    assert_eq!(h.parts().iter().filter(|p| p.0 == 1).count(), 10);
    assert_eq!(h.window.blocking_timeout_ms(), 15_000);

    // The target duration never shrinks, even once the long segments left.
    // (Three target durations are 15 s: eight 2 s segments stay listed.)
    h.segmenter.discontinuity();
    let mut short = Source::new(2_000, WALL + 20_000);
    h.start(&short);
    h.run(&mut short, 20_200);
    assert!(h
        .window
        .render("g", false)
        .contains("#EXT-X-MEDIA-SEQUENCE:6\n"));
    assert_eq!(h.window.target_duration_s(), 5);
}

#[test]
fn a_keyframe_a_little_early_still_ends_the_segment() {
    let mut h = Harness::new(plain(6));
    h.push(&video_seq(), WALL);
    h.push(&video(0, true), WALL);
    // A 2 s GOP at 30 fps stamped in whole ms: the keyframe is at 1999.
    h.push(&video(1_966, false), WALL);
    h.push(&video(1_999, true), WALL);
    h.push(&video(3_999 - SEGMENT_CUT_SLACK_MS, true), WALL);
    assert_eq!(
        h.segments().iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        [(0, 1_999), (1, 2_000 - SEGMENT_CUT_SLACK_MS)]
    );
    assert_eq!(h.window.target_duration_s(), 2);
    // Earlier than the slack is too early.
    h.push(&video(5_999 - 2 * SEGMENT_CUT_SLACK_MS - 1, true), WALL);
    assert_eq!(h.segments().len(), 2);
}

#[test]
fn segment_bytes_are_the_parts_back_to_back() {
    let (h, _) = scripted(ll(6), 12_700);
    let parts = h.parts();
    let segments = h.segments();
    assert_eq!(segments.len(), 6);
    for (msn, duration, data) in &segments {
        let mine: Vec<_> = parts.iter().filter(|p| p.0 == *msn).collect();
        let joined: Vec<u8> = mine.iter().flat_map(|p| p.4.iter().copied()).collect();
        assert_eq!(&joined[..], &data[..], "segment {msn}");
        assert_eq!(mine.iter().map(|p| p.2).sum::<u32>(), *duration);
        for (i, p) in mine.iter().enumerate() {
            assert_eq!(p.1 as usize, i);
            assert!(p.4.starts_with(b"[PSI]"));
            // The window serves the same bytes, sliced from the segment.
            let served = h.window.part(*msn, p.1).unwrap();
            assert_eq!(served, p.4);
        }
        let segment = h.window.segment(*msn).unwrap();
        let first = h.window.part(*msn, 0).unwrap();
        assert_eq!(first.as_ptr(), segment.as_ptr());
    }
    // The open segment's part 0 is served too; unknown ones are not.
    assert!(h.window.part(6, 0).is_some());
    assert_eq!(h.window.part(6, 1), None);
    assert_eq!(h.window.part(9, 0), None);
    assert_eq!(h.window.segment(6), None);
}

#[test]
fn a_zero_length_last_part_moves_to_the_next_segment() {
    let mut h = Harness::new(ll(3));
    h.push(&video_seq(), WALL);
    for ts in [0, 500, 1_000, 1_500] {
        h.push(&video(ts, ts == 0), WALL);
    }
    // The audio frame at 2000 starts part 4; the keyframe with the same
    // timestamp then ends the segment: part 4 would last 0 ms.
    h.push(&audio(2_000), WALL);
    let events = h.push(&video(2_000, true), WALL + 2_000);
    assert!(matches!(
        events.as_slice(),
        [
            HlsEvent::Segment {
                msn: 0,
                duration_ms: 2_000,
                ..
            },
            HlsEvent::SegmentStart { msn: 1, .. }
        ]
    ));
    h.push(&video(2_500, false), WALL + 2_500);
    let parts = h.parts();
    assert_eq!(parts.len(), 5);
    assert_eq!(parts[3].4.as_ref(), b"[PSI]V1500;");
    assert_eq!((parts[4].0, parts[4].1, parts[4].3), (1, 0, true));
    assert_eq!(parts[4].4.as_ref(), b"[PSI]A2000;K2000;");
    assert_eq!(
        h.segments()[0].2.as_ref(),
        b"[PSI]K0;[PSI]V500;[PSI]V1000;[PSI]V1500;"
    );
}

#[test]
fn a_timestamp_jump_is_a_discontinuity() {
    let mut h = Harness::new(plain(3));
    let mut source = Source::new(2_000, WALL);
    h.start(&source);
    h.run(&mut source, 3_000);
    // The publisher's clock jumps an hour ahead, at a keyframe.
    let events = h.push(&video(3_600_000, true), WALL + 4_000);
    assert!(matches!(
        events.as_slice(),
        [
            HlsEvent::Segment { msn: 1, discontinuity: false, .. },
            HlsEvent::SegmentStart { msn: 2, discontinuity: true, program_date_time_ms, .. },
        ] if *program_date_time_ms == WALL + 4_000
    ));
    // Segment 1 ends at its last frame (2995 + 23 ms of audio).
    assert_eq!(h.segments()[1].1, 1_018);
    // A jump back to a non-keyframe: frames are dropped until a keyframe.
    h.push(&video(3_600_033, false), WALL + 3_033);
    let events = h.push(&video(40, false), WALL + 3_066);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::Segment { msn: 2, .. }]
    ));
    assert!(h.push(&audio(60), WALL + 3_080).is_empty());
    let events = h.push(&video(100, true), WALL + 3_100);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::SegmentStart {
            msn: 3,
            discontinuity: true,
            ..
        }]
    ));
}

#[test]
fn audio_running_behind_video_is_not_a_jump() {
    let mut h = Harness::new(plain(3));
    h.push(&video_seq(), WALL);
    h.push(&audio_seq(), WALL);
    // Audio 1.5 s behind video, interleaved by arrival.
    for n in 0..200u32 {
        let ts = n * 1_000 / 30;
        h.push(
            &video(ts + 1_500, n.is_multiple_of(60)),
            WALL + u64::from(ts),
        );
        h.push(&audio(ts), WALL + u64::from(ts));
    }
    assert!(h.events.iter().all(|e| !matches!(
        e,
        HlsEvent::SegmentStart {
            discontinuity: true,
            ..
        }
    )));
    assert_eq!(
        h.segments().iter().map(|s| s.1).collect::<Vec<_>>(),
        [2_000, 2_000, 2_000]
    );
}

#[test]
fn a_segment_without_keyframes_is_cut_at_the_maximum() {
    let mut h = Harness::new(ll(3));
    h.push(&video_seq(), WALL);
    let mut ts = 0;
    while ts <= SEGMENT_DURATION_MAX_MS + 1_000 {
        h.push(&video(ts, ts == 0), WALL + u64::from(ts));
        ts += 40;
    }
    let segments = h.segments();
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].1, SEGMENT_DURATION_MAX_MS);
    let part = h.window.part(1, 0).unwrap();
    assert!(part.starts_with(b"[PSI]V30000;"));
    assert!(h.parts().iter().filter(|p| p.0 == 1).all(|p| !p.3));
    assert_eq!(h.window.target_duration_s(), 30);
}

#[test]
fn frames_before_the_first_keyframe_are_dropped() {
    let mut h = Harness::new(ll(3));
    h.push(&video_seq(), WALL);
    h.push(&audio_seq(), WALL);
    assert!(h
        .push(&Frame::data(0, Bytes::from_static(b"meta")), WALL)
        .is_empty());
    assert!(h.push(&audio(0), WALL).is_empty());
    assert!(h.push(&video(10, false), WALL).is_empty());
    let events = h.push(&video(33, true), WALL + 33);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::SegmentStart { msn: 0, discontinuity: false, program_date_time_ms }] if *program_date_time_ms == WALL + 33
    ));
    h.push(&audio(46), WALL + 46);
    h.push(&video(533, false), WALL + 533);
    assert_eq!(h.window.part(0, 0).unwrap().as_ref(), b"[PSI]K33;A46;");
}

#[test]
fn flush_end_and_resume() {
    let (mut h, mut source) = scripted(ll(3), 4_700);
    // The publisher leaves: the open part and segment are shipped now,
    // ending at their last frame (at most one part target).
    let events = h.segmenter.flush();
    let events = h.apply(events);
    assert!(matches!(
        events.as_slice(),
        [
            HlsEvent::Part {
                msn: 2,
                part: 1,
                duration_ms: 213,
                ..
            },
            HlsEvent::Segment {
                msn: 2,
                duration_ms: 713,
                ..
            }
        ]
    ));
    assert!(!h.window.is_ended());
    assert_eq!(h.window.preload_hint(), Some((3, 0)));
    assert_eq!(h.window.readiness(3, Some(0)), Readiness::Wait);
    // Nothing more to flush; the stream ends.
    let events = h.segmenter.end();
    assert_eq!(events, [HlsEvent::Ended]);
    h.apply(events);
    let text = h.window.render("e", false);
    assert!(
        text.ends_with("#EXTINF:0.713,\ne2.ts\n#EXT-X-ENDLIST\n"),
        "{text}"
    );
    // Media after all: the window resumes with a discontinuity.
    source.wall_ms += 10_000;
    h.run(&mut source, 7_000);
    assert!(!h.window.is_ended());
    let text = h.window.render("e", false);
    assert!(!text.contains("ENDLIST"));
    assert!(text.contains(
        "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:36.000Z\n#EXT-X-PART:DURATION=0.500,URI=\"e3.0.ts\",INDEPENDENT=YES\n"
    ), "{text}");
}

#[test]
fn program_dates_follow_media_time_not_arrival() {
    let mut h = Harness::new(plain(6));
    let mut source = Source::new(2_000, WALL);
    h.start(&source);
    // Ten seconds of media arrive in one burst, all at the same instant.
    for (frame, _) in source.until(10_200) {
        h.push(&frame, WALL);
    }
    let dates: Vec<u64> = h
        .events
        .iter()
        .filter_map(|e| match e {
            HlsEvent::Segment {
                program_date_time_ms,
                ..
            } => Some(*program_date_time_ms - WALL),
            _ => None,
        })
        .collect();
    assert_eq!(dates, [0, 2_000, 4_000, 6_000, 8_000]);
    // After a discontinuity the date never goes back before the previous
    // segment's end, even if the wall clock says so.
    let events = h.segmenter.flush();
    h.apply(events);
    h.push(&video_seq(), WALL);
    let events = h.push(&video(0, true), WALL + 1);
    assert!(matches!(
        events.as_slice(),
        [HlsEvent::SegmentStart { msn: 6, discontinuity: true, program_date_time_ms }]
            if *program_date_time_ms == WALL + 10_000 + 216
    ));
}

#[test]
fn memory_stays_bounded() {
    let (h, _) = scripted(ll(3), 120_200);
    let w = &h.window;
    assert!(w.render("m", false).contains("#EXT-X-MEDIA-SEQUENCE:57\n"));
    // Retired segments stay downloadable for three target durations of
    // media after they leave the playlist, then go.
    assert!(w.segment(54).is_some());
    assert!(w.part(54, 3).is_some());
    assert_eq!(w.segment(53), None);
    assert_eq!(w.part(53, 0), None);
    assert_eq!(w.segment(0), None);
    assert!(w.segment(59).is_some());
    assert_eq!(w.segment(60), None);
}

#[test]
fn window_restarts_after_missed_events_and_late_replicas_clone() {
    let (h, _) = scripted(ll(3), 9_200);
    // A replica that subscribes now starts from a clone of the owner's
    // window and renders the same playlist.
    let clone = h.window.clone();
    assert_eq!(clone.render("r", true), h.window.render("r", true));

    // A replica that starts from events mid-segment lists nothing of that
    // segment's parts, then everything from the next segment on.
    let mut late = HlsWindow::new(ll(3), Container::Ts);
    let from = h.part_event(3, 2);
    for e in &h.events[from..] {
        late.apply(e);
    }
    let text = late.render("r", false);
    assert!(!text.contains("r3.2.ts"), "{text}");
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
    assert!(text.contains("#EXTINF:2.000,\nr3.ts\n"));
    assert!(text.contains("r4.0.ts"));
    assert_eq!(late.part(3, 2), None);

    // Missed events: the window restarts at the later msn.
    let mut w = h.window.clone();
    w.apply(&HlsEvent::Segment {
        msn: 9,
        duration_ms: 2_000,
        data: Bytes::from_static(b"x"),
        program_date_time_ms: WALL,
        discontinuity: false,
    });
    assert!(w.render("r", false).contains("#EXT-X-MEDIA-SEQUENCE:9\n"));
    assert_eq!(w.segment(4), None);
    // Stale and repeated events are ignored.
    let before = w.render("r", false);
    w.apply(&HlsEvent::Segment {
        msn: 2,
        duration_ms: 2_000,
        data: Bytes::new(),
        program_date_time_ms: WALL,
        discontinuity: true,
    });
    w.apply(&HlsEvent::SegmentStart {
        msn: 9,
        program_date_time_ms: WALL,
        discontinuity: true,
    });
    assert_eq!(w.render("r", false), before);
}

/// Arbitrary event sequences never panic and keep the playlist well formed.
#[test]
fn arbitrary_events_do_not_panic() {
    let mut state: u64 = std::env::var("HLS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    for round in 0..200 {
        let mut w = HlsWindow::new(ll(1 + round % 5), Container::Ts);
        for _ in 0..200 {
            let msn = next(12);
            let event = match next(4) {
                0 => HlsEvent::SegmentStart {
                    msn,
                    program_date_time_ms: next(1 << 40),
                    discontinuity: next(2) == 0,
                },
                1 => HlsEvent::Part {
                    msn,
                    part: next(6) as u32,
                    duration_ms: next(3_000) as u32,
                    independent: next(2) == 0,
                    data: Bytes::from(vec![0; next(4) as usize]),
                },
                2 => HlsEvent::Segment {
                    msn,
                    duration_ms: next(40_000) as u32,
                    data: Bytes::from(vec![0; next(8) as usize]),
                    program_date_time_ms: next(1 << 40),
                    discontinuity: next(3) == 0,
                },
                _ => HlsEvent::Ended,
            };
            w.apply(&event);
            let text = w.render("f", next(2) == 0);
            assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:"));
            assert!(text.matches("#EXT-X-PRELOAD-HINT").count() <= 1);
            let _ = w.readiness(next(16), Some(next(10) as u32));
            let _ = w.readiness(next(16), None);
            let _ = w.segment(next(16));
            let _ = w.part(next(16), next(8) as u32);
            let _ = w.last_part();
        }
    }
}

#[test]
fn config_is_validated_and_clamped() {
    assert_eq!(HlsConfig::default().validate(), Ok(()));
    let bad = HlsConfig {
        part_duration_ms: 3_000,
        ..HlsConfig::default()
    };
    let err = bad.validate().unwrap_err();
    assert_eq!(err.field, "part_duration_ms");
    assert!(err.to_string().contains("part_duration_ms"));
    let zero = HlsConfig {
        segment_duration_ms: 0,
        part_duration_ms: 0,
        window_size: 0,
        low_latency: true,
    };
    assert!(zero.validate().is_err());
    // Clamped, not panicking, when used anyway.
    let mut h = Harness::new(zero);
    let mut source = Source::new(2_000, WALL);
    h.start(&source);
    h.run(&mut source, 4_200);
    assert_eq!(h.segments().len(), 2);
    assert!(h.window.render("z", false).contains("PART-TARGET=0.100\n"));
}

/// BANDWIDTH and AVERAGE-BANDWIDTH come from the listed segments: the
/// peak is the largest segment's bytes over its duration, the average all
/// bytes over all durations; before a segment, the parts so far.
#[test]
fn bit_rates_of_the_listed_segments() {
    let w = HlsWindow::new(ll(3), Container::Ts);
    assert_eq!(w.bit_rates(), None, "no media, no figure");
    let (h, _) = scripted(ll(3), 9_000);
    let listed: Vec<(u32, usize)> = h
        .segments()
        .iter()
        .rev()
        .take(3)
        .map(|(_, ms, data)| (*ms, data.len()))
        .collect();
    assert_eq!(listed.len(), 3);
    let peak = listed
        .iter()
        .map(|&(ms, b)| b as u64 * 8_000 / u64::from(ms))
        .max()
        .unwrap();
    let (bytes, ms) = listed.iter().fold((0, 0), |(b, m), &(pm, pb)| {
        (b + pb as u64, m + u64::from(pm))
    });
    assert_eq!(h.window.bit_rates(), Some((peak, bytes * 8_000 / ms)));

    let mut early = Harness::new(ll(3));
    early.push(&video_seq(), WALL);
    early.push(&video(0, true), WALL);
    early.push(&video(520, false), WALL);
    let (_, _, ms, _, data) = early.parts()[0].clone();
    let part_rate = data.len() as u64 * 8_000 / u64::from(ms);
    assert_eq!(early.window.bit_rates(), Some((part_rate, part_rate)));
}
