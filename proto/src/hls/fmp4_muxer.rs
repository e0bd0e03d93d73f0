//! [`Fmp4Muxer`]: the [`SegmentMuxer`] for fragmented MP4 (CMAF) HLS.
//!
//! Frames are queued per track as samples; [`SegmentMuxer::end_chunk`]
//! writes them as one fragment (`moof` + `mdat`), so a part is one
//! fragment and a segment its parts back to back. Sequence headers build
//! the tracks of the init segment ([`SegmentMuxer::take_init`]); a change
//! of codec configuration makes a new one.
//!
//! Timing: every track counts milliseconds ([`crate::mp4::TIMESCALE`]), so
//! decode times are the stream's timestamps (extended past the 32-bit
//! wrap) and `tfdt` is exact. A sample's duration is the distance to the
//! next sample of its track; the last sample of a track in a fragment,
//! whose successor has not arrived, lasts the track's latest spacing.

use bytes::Bytes;

use super::SegmentMuxer;
use crate::media::{
    keyframe_size, parse_aac_config, parse_av1_config, parse_avc_config, parse_hevc_config,
    parse_mp3_header, parse_opus_head, parse_vp9_config, AudioCodec, AudioPacket, AudioTagHeader,
    Frame, FrameKind, VideoCodec, VideoPacket, VideoTagHeader,
};
use crate::mp4::{
    write_fragment, write_init, Run, Sample, SampleEntry, Track, VideoFormat,
    SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC,
};

/// Track ids in the init segment.
const VIDEO_TRACK_ID: u32 = 1;
const AUDIO_TRACK_ID: u32 = 2;

/// The spacing assumed for a track's last sample before two samples have
/// shown it: 30 frames per second, an AAC frame at 44.1 kHz.
const DEFAULT_VIDEO_SPACING_MS: u32 = 33;
const DEFAULT_AUDIO_SPACING_MS: u32 = 23;
/// A spacing above this is a gap, not the track's frame spacing.
const SPACING_MAX_MS: u32 = 1_000;

/// One track's state.
#[derive(Debug)]
struct TrackState {
    entry: SampleEntry,
    /// Samples written since the last fragment.
    pending: Vec<Pending>,
    /// Bytes in `pending`.
    pending_bytes: usize,
    /// The last sample's 32-bit timestamp and its extension to 64 bits.
    last_ts: Option<u32>,
    wraps: u64,
    /// Latest spacing between two samples, ms.
    spacing_ms: u32,
    /// A new publisher came and has sent no sequence header for this
    /// track yet: left out of the next init segment, dropped once its
    /// pending samples are written.
    stale: bool,
}

#[derive(Debug)]
struct Pending {
    decode_time: u64,
    composition_offset: i32,
    sync: bool,
    data: Bytes,
}

impl TrackState {
    fn new(entry: SampleEntry) -> Self {
        TrackState {
            entry,
            pending: Vec::new(),
            pending_bytes: 0,
            last_ts: None,
            wraps: 0,
            spacing_ms: 0,
            stale: false,
        }
    }

    /// `ts` on the 64-bit timeline: past a wrap of the 32-bit clock it
    /// counts on.
    fn extend(&mut self, ts: u32) -> u64 {
        if let Some(last) = self.last_ts {
            let step = ts.wrapping_sub(last) as i32;
            if step > 0 && ts < last {
                self.wraps += 1;
            }
            if step > 0 && (step as u32) <= SPACING_MAX_MS {
                self.spacing_ms = step as u32;
            }
        }
        self.last_ts = Some(ts);
        (self.wraps << 32) | u64::from(ts)
    }

    /// The pending samples as a run; the last one lasts `spacing` (or
    /// `default` before any is known).
    fn take_run(&mut self, id: u32, default: u32) -> Run {
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let last_spacing = if self.spacing_ms > 0 {
            self.spacing_ms
        } else {
            default
        };
        let base_decode_time = pending.first().map_or(0, |p| p.decode_time);
        let mut samples = Vec::with_capacity(pending.len());
        for (i, p) in pending.iter().enumerate() {
            let duration = match pending.get(i + 1) {
                Some(next) => u32::try_from(next.decode_time.saturating_sub(p.decode_time))
                    .unwrap_or(u32::MAX),
                None => last_spacing,
            };
            samples.push(Sample {
                duration,
                composition_offset: p.composition_offset,
                flags: if p.sync {
                    SAMPLE_FLAGS_SYNC
                } else {
                    SAMPLE_FLAGS_NON_SYNC
                },
                data: p.data.clone(),
            });
        }
        Run {
            track_id: id,
            base_decode_time,
            samples,
        }
    }
}

/// Fragmented MP4 for HLS: at most one video and one audio track.
///
/// Carries H.264 (`avc1`), H.265 (`hvc1`), AV1 (`av01`), VP9 (`vp09`),
/// AAC, MP3 and Opus. A frame of another codec, or one before its track's
/// sequence header, is not written.
#[derive(Debug, Default)]
pub struct Fmp4Muxer {
    video: Option<TrackState>,
    audio: Option<TrackState>,
    /// The last fragment's `mfhd` sequence number.
    sequence: u32,
    /// The last init segment handed out.
    last_init: Option<Bytes>,
    /// Why the last sequence header made no track, until taken.
    refusal: Option<String>,
    /// The tracks changed since the last [`SegmentMuxer::take_init`].
    changed: bool,
    /// An MP3 frame header of this publisher failed to parse (reported).
    mp3_refused: bool,
}

impl Fmp4Muxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sequence header: the track's new sample entry, if it changed.
    /// A record that configures nothing yet (libaom's empty `av01` one)
    /// leaves the track as it is.
    fn configure(&mut self, frame: &Frame) -> Result<(), String> {
        let Some(entry) = sample_entry(frame)? else {
            return Ok(());
        };
        self.set_entry(frame.is_video(), entry);
        Ok(())
    }

    fn set_entry(&mut self, video: bool, entry: SampleEntry) {
        self.changed = true;
        let slot = if video {
            &mut self.video
        } else {
            &mut self.audio
        };
        match slot {
            Some(t) => {
                t.entry = entry;
                t.stale = false;
            }
            None => *slot = Some(TrackState::new(entry)),
        }
    }
}

/// A video entry whose record has no picture size (VP9, AV1 without a
/// sequence header in configOBUs) waits for the first keyframe's.
fn awaits_size(entry: &SampleEntry) -> bool {
    matches!(
        entry,
        SampleEntry::Video {
            format: VideoFormat::Vp9 | VideoFormat::Av1,
            width: 0,
            ..
        }
    )
}

/// The sample entry a sequence header describes (None: not yet, as for an
/// empty `av01` record), or why there is none.
fn sample_entry(frame: &Frame) -> Result<Option<SampleEntry>, String> {
    let record = frame.codec_data().map_err(|e| e.to_string())?;
    if frame.is_video() {
        let codec = frame
            .video_codec
            .ok_or("a video sequence header names no codec")?;
        let size = |w: Option<u32>, h: Option<u32>| {
            (
                w.and_then(|w| u16::try_from(w).ok()).unwrap_or(0),
                h.and_then(|h| u16::try_from(h).ok()).unwrap_or(0),
            )
        };
        let (format, record, (width, height)) = match codec {
            VideoCodec::Avc => {
                let c = parse_avc_config(&record).map_err(|e| format!("AVC: {e}"))?;
                (VideoFormat::Avc, record, size(c.width, c.height))
            }
            VideoCodec::Hevc => {
                // hvc1: the parameter sets stay in the hvcC, as Safari
                // requires.
                let c = parse_hevc_config(&record).map_err(|e| format!("HEVC: {e}"))?;
                (VideoFormat::Hevc, record, size(c.width, c.height))
            }
            VideoCodec::Av1 => {
                let Some(c) = parse_av1_config(&record).map_err(|e| format!("AV1: {e}"))? else {
                    return Ok(None);
                };
                let s = c.sequence_header;
                (
                    VideoFormat::Av1,
                    record,
                    size(s.map(|s| s.max_frame_width), s.map(|s| s.max_frame_height)),
                )
            }
            VideoCodec::Vp9 => {
                // The writer puts vpcC's version and flags: the record
                // goes in without ffmpeg's copy of them.
                let c = parse_vp9_config(&record).map_err(|e| format!("VP9: {e}"))?;
                (VideoFormat::Vp9, c.payload, (0, 0))
            }
            other => return Err(format!("fMP4 has no mapping for video codec {other}")),
        };
        return Ok(Some(SampleEntry::Video {
            format,
            record,
            width,
            height,
        }));
    }
    match frame.audio_codec {
        Some(AudioCodec::Aac) => {
            let c = parse_aac_config(&record).map_err(|e| format!("AAC: {e}"))?;
            Ok(Some(SampleEntry::Aac {
                config: record,
                sample_rate: c.sample_rate,
                channels: u16::from(c.channels),
            }))
        }
        Some(AudioCodec::Opus) => {
            let h = parse_opus_head(&record).map_err(|e| format!("Opus: {e}"))?;
            Ok(Some(SampleEntry::Opus {
                dops: h.dops_payload(),
                channels: u16::from(h.channels),
            }))
        }
        other => Err(format!(
            "fMP4 has no mapping for an audio sequence header of {}",
            other.map_or("none".to_string(), |c| c.to_string())
        )),
    }
}

impl SegmentMuxer for Fmp4Muxer {
    fn start_chunk(&mut self, _out: &mut Vec<u8>) {}

    /// What only coded frames tell: a VP9 or AV1 keyframe's picture size
    /// for a track whose record had none, and an MP3 track's parameters
    /// from its first frame (FLV's MP3 has no sequence header).
    fn learn(&mut self, frame: &Frame) {
        if frame.sequence_header {
            return;
        }
        if frame.keyframe {
            if let Some(t) = self.video.as_mut().filter(|t| awaits_size(&t.entry)) {
                if let (Some((w, h)), SampleEntry::Video { width, height, .. }) =
                    (keyframe_size(frame), &mut t.entry)
                {
                    *width = u16::try_from(w).unwrap_or(0);
                    *height = u16::try_from(h).unwrap_or(0);
                    self.changed = true;
                }
            }
        }
        let mp3_track_missing = self
            .audio
            .as_ref()
            .is_none_or(|t| t.stale || !matches!(t.entry, SampleEntry::Mp3 { .. }));
        if frame.audio_codec == Some(AudioCodec::Mp3) && mp3_track_missing {
            match frame.codec_data().map(|d| parse_mp3_header(&d)) {
                Ok(Ok(h)) => self.set_entry(
                    false,
                    SampleEntry::Mp3 {
                        sample_rate: h.sample_rate,
                        channels: u16::from(h.channels),
                    },
                ),
                // Reported once per publisher, not once per frame.
                Ok(Err(e)) | Err(e) if !self.mp3_refused => {
                    self.mp3_refused = true;
                    self.refusal = Some(format!("MP3: {e}"));
                }
                _ => {}
            }
        }
    }

    fn write_frame(&mut self, frame: &Frame, _out: &mut Vec<u8>) -> bool {
        if frame.kind == FrameKind::Data {
            return false;
        }
        if frame.sequence_header {
            if let Err(why) = self.configure(frame) {
                self.refusal = Some(why);
            }
            return false;
        }
        // Only coded frames are samples (not an end of sequence, a
        // command or metadata frame), and never an empty one. The header
        // is parsed once: it gives the packet type and the data's range.
        let range = if frame.is_video() {
            VideoTagHeader::parse(&frame.payload)
                .ok()
                .filter(|h| h.packet == VideoPacket::CodedFrames)
                .map(|h| (h.body_start, h.body_end))
        } else {
            AudioTagHeader::parse(&frame.payload)
                .ok()
                .filter(|h| h.packet == AudioPacket::CodedFrames)
                .map(|h| (h.body_start, h.body_end))
        };
        let data = match range {
            Some((start, end)) if start < end && end <= frame.payload.len() => {
                frame.payload.slice(start..end)
            }
            _ => return false,
        };
        let track = if frame.is_video() {
            self.video.as_mut()
        } else {
            self.audio.as_mut()
        };
        let Some(track) = track.filter(|t| !t.stale) else {
            return false;
        };
        let decode_time = track.extend(frame.timestamp);
        track.pending_bytes += data.len();
        track.pending.push(Pending {
            decode_time,
            composition_offset: frame.composition_offset,
            sync: frame.keyframe || frame.is_audio(),
            data,
        });
        true
    }

    fn end_chunk(&mut self, out: &mut Vec<u8>) {
        let mut runs = Vec::with_capacity(2);
        if let Some(v) = self.video.as_mut() {
            runs.push(v.take_run(VIDEO_TRACK_ID, DEFAULT_VIDEO_SPACING_MS));
        }
        if let Some(a) = self.audio.as_mut() {
            runs.push(a.take_run(AUDIO_TRACK_ID, DEFAULT_AUDIO_SPACING_MS));
        }
        for slot in [&mut self.video, &mut self.audio] {
            if slot.as_ref().is_some_and(|t| t.stale) {
                *slot = None;
            }
        }
        if runs.iter().all(|r| r.samples.is_empty()) {
            return;
        }
        self.sequence = self.sequence.wrapping_add(1).max(1);
        write_fragment(self.sequence, &runs, out);
    }

    fn new_publisher(&mut self) {
        self.changed = true;
        self.mp3_refused = false;
        for t in [&mut self.video, &mut self.audio].into_iter().flatten() {
            t.stale = true;
        }
    }

    fn pending_bytes(&self) -> usize {
        self.video.as_ref().map_or(0, |t| t.pending_bytes)
            + self.audio.as_ref().map_or(0, |t| t.pending_bytes)
    }

    fn take_refusal(&mut self) -> Option<String> {
        self.refusal.take()
    }

    /// The init segment of the tracks the current publisher has, when it
    /// differs from the last one handed out.
    fn take_init(&mut self) -> Option<Bytes> {
        if !self.changed {
            return None;
        }
        // A picture size comes with the first keyframe: no init before.
        if self
            .video
            .as_ref()
            .is_some_and(|t| !t.stale && awaits_size(&t.entry))
        {
            return None;
        }
        self.changed = false;
        let tracks: Vec<Track> = [(VIDEO_TRACK_ID, &self.video), (AUDIO_TRACK_ID, &self.audio)]
            .into_iter()
            .filter_map(|(id, t)| {
                let t = t.as_ref().filter(|t| !t.stale)?;
                Some(Track {
                    id,
                    entry: t.entry.clone(),
                })
            })
            .collect();
        if tracks.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        write_init(&tracks, &mut out);
        if self.last_init.as_deref() == Some(&out[..]) {
            return None;
        }
        let init = Bytes::from(out);
        self.last_init = Some(init.clone());
        Some(init)
    }
}

#[cfg(test)]
mod tests {
    use super::super::vectors::*;
    use super::super::{HlsConfig, HlsEvent, Segmenter};
    use super::Fmp4Muxer;

    /// Reads a fragment back: (sequence number, per traf: track id, tfdt,
    /// sample durations), checking every box size on the way.
    /// Per traf: track id, tfdt, sample durations.
    type Trafs = Vec<(u32, u64, Vec<u32>)>;

    fn read_fragment(data: &[u8]) -> (u32, Trafs, usize) {
        let be32 = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
        assert_eq!(&data[4..8], b"moof");
        let moof_end = be32(0) as usize;
        assert_eq!(&data[moof_end + 4..moof_end + 8], b"mdat");
        let mdat_end = moof_end + be32(moof_end) as usize;
        let mut at = 8;
        let mut seq = 0;
        let mut trafs = Vec::new();
        while at < moof_end {
            let (size, kind) = (be32(at) as usize, &data[at + 4..at + 8]);
            if kind == b"mfhd" {
                seq = be32(at + 12);
            } else if kind == b"traf" {
                let (tfhd, tfdt, trun) = (at + 8, at + 8 + 16, at + 8 + 16 + 20);
                assert_eq!(&data[tfdt + 4..tfdt + 8], b"tfdt");
                assert_eq!(&data[trun + 4..trun + 8], b"trun");
                let id = be32(tfhd + 12);
                let time = u64::from(be32(tfdt + 12)) << 32 | u64::from(be32(tfdt + 16));
                let flags = be32(trun + 8) & 0xff_ffff;
                let count = be32(trun + 12) as usize;
                let per = if flags & 0x800 != 0 { 16 } else { 12 };
                let durations = (0..count).map(|i| be32(trun + 20 + per * i)).collect();
                trafs.push((id, time, durations));
            }
            at += size;
        }
        assert_eq!(at, moof_end, "boxes fill the moof");
        (seq, trafs, mdat_end)
    }

    /// H.264 + AAC through the segmenter: an init segment first, every
    /// part one fragment (sequence numbers up by one), each segment its
    /// parts joined, and per track decode times that run on exactly from
    /// fragment to fragment.
    #[test]
    fn parts_are_fragments_with_continuous_decode_times() {
        let mut segmenter = Segmenter::new(HlsConfig::default(), Box::new(Fmp4Muxer::new()));
        let mut events = Vec::new();
        events.extend(segmenter.push(&video(0, AVC_SEQ), 0));
        events.extend(segmenter.push(&audio(0, AAC_SEQ), 0));
        for n in 0..150u32 {
            let ts = n * 1_000 / 30;
            let v = if n % 60 == 0 { IDR } else { SLICE };
            events.extend(segmenter.push(&video(ts, v), u64::from(ts)));
            events.extend(segmenter.push(&audio(n * 23, AAC), u64::from(ts)));
        }
        events.extend(segmenter.end());

        let inits: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HlsEvent::Init { data } => Some(data.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(inits.len(), 2, "video alone, then video and audio");
        assert!(matches!(events[1], HlsEvent::Init { .. }));
        assert_eq!(&inits[1][4..8], b"ftyp");

        let mut last_seq = 0;
        // Per track: where the next fragment's decode time must start.
        let mut next_time = [None::<u64>; 2];
        let mut joined = Vec::new();
        let mut segments = 0;
        for e in &events {
            match e {
                HlsEvent::Part { data, .. } => {
                    let (seq, trafs, len) = read_fragment(data);
                    assert_eq!(len, data.len(), "a part is one fragment");
                    assert_eq!(seq, last_seq + 1);
                    last_seq = seq;
                    for (id, time, durations) in trafs {
                        let slot = &mut next_time[id as usize - 1];
                        if let Some(expect) = *slot {
                            // The last sample of a fragment lasts the
                            // track's spacing; the next decode time is
                            // exact: within a ms of it.
                            assert!(
                                time.abs_diff(expect) <= 1,
                                "track {id}: tfdt {time}, expected {expect}"
                            );
                        }
                        *slot = Some(time + durations.iter().map(|&d| u64::from(d)).sum::<u64>());
                    }
                    joined.extend_from_slice(data);
                }
                HlsEvent::Segment { data, .. } => {
                    assert_eq!(data[..], joined[..], "a segment is its parts joined");
                    joined.clear();
                    segments += 1;
                }
                _ => {}
            }
        }
        assert_eq!(segments, 3);
        assert!(last_seq >= 10, "{last_seq} fragments");
    }

    /// Init segments for every codec, from ffmpeg 9's E-RTMP records:
    /// the sample entry's type, size and configuration box read back.
    mod codecs {
        use super::super::super::SegmentMuxer;
        use super::Fmp4Muxer;
        use crate::media::vectors::{self, audio, video};
        use crate::media::Frame;

        fn be16(b: &[u8], at: usize) -> u16 {
            u16::from_be_bytes([b[at], b[at + 1]])
        }

        /// (entry box content, its first child box: type and content).
        fn entry<'a>(init: &'a [u8], kind: &[u8; 4]) -> (&'a [u8], [u8; 4], &'a [u8]) {
            let stsd = init.windows(4).position(|w| w == b"stsd").unwrap();
            let at = stsd + init[stsd..].windows(4).position(|w| w == kind).unwrap();
            let size = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
            let body = &init[at + 4..at - 4 + size];
            let child = if kind == b"mp4a" || kind == b"Opus" {
                28
            } else {
                78
            };
            let csize = u32::from_be_bytes(body[child..child + 4].try_into().unwrap()) as usize;
            let ckind = body[child + 4..child + 8].try_into().unwrap();
            (body, ckind, &body[child + 8..child + csize])
        }

        fn feed(m: &mut Fmp4Muxer, frames: &[Frame]) -> Vec<bytes::Bytes> {
            let mut inits = Vec::new();
            for f in frames {
                if !f.sequence_header {
                    m.learn(f);
                }
                m.write_frame(f, &mut Vec::new());
                inits.extend(m.take_init());
            }
            inits
        }

        #[test]
        fn hevc_size_from_sps_and_hvcc_as_sent() {
            let seq = video(0, vectors::HEVC_SEQ);
            let inits = feed(&mut Fmp4Muxer::new(), std::slice::from_ref(&seq));
            let (body, kind, hvcc) = entry(&inits[0], b"hvc1");
            assert_eq!((be16(body, 24), be16(body, 26)), (320, 240));
            assert_eq!(&kind, b"hvcC");
            assert_eq!(hvcc, &seq.codec_data().unwrap()[..]);
        }

        #[test]
        fn av1_empty_record_then_real_one() {
            let mut m = Fmp4Muxer::new();
            let empty = feed(&mut m, &[video(0, vectors::AV1_AOM_EMPTY_SEQ)]);
            assert!(empty.is_empty());
            assert_eq!(m.take_refusal(), None, "an empty record is no error");
            let seq = video(0, vectors::AV1_AOM_SEQ);
            let inits = feed(&mut m, std::slice::from_ref(&seq));
            let (body, kind, av1c) = entry(&inits[0], b"av01");
            assert_eq!((be16(body, 24), be16(body, 26)), (320, 240));
            assert_eq!((&kind, av1c), (b"av1C", &seq.codec_data().unwrap()[..]));
        }

        #[test]
        fn av1_size_from_keyframe_when_config_obus_are_empty() {
            // av1C with no configOBUs: the size waits for a keyframe.
            let mut m = Fmp4Muxer::new();
            let bare = Frame::parse_video(
                0,
                bytes::Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1', 0x81, 0x00, 0x0c, 0x00]),
            )
            .unwrap();
            assert!(feed(&mut m, &[bare]).is_empty(), "no init before the size");
            let inits = feed(&mut m, &[video(0, vectors::AV1_SVT_KEY)]);
            let (body, _, _) = entry(&inits[0], b"av01");
            assert_eq!((be16(body, 24), be16(body, 26)), (320, 240));
        }

        #[test]
        fn vp9_size_from_keyframe_and_one_version_header() {
            let mut m = Fmp4Muxer::new();
            assert!(feed(&mut m, &[video(0, vectors::VP9_SEQ)]).is_empty());
            let inits = feed(&mut m, &[video(0, vectors::VP9_KEY)]);
            assert_eq!(inits.len(), 1);
            let (body, kind, vpcc) = entry(&inits[0], b"vp09");
            assert_eq!((be16(body, 24), be16(body, 26)), (320, 240));
            assert_eq!(&kind, b"vpcC");
            // Version 1 and flags once, then profile 0, level 20, ...
            assert_eq!(vpcc, &[1, 0, 0, 0, 0, 20, 0x82, 2, 2, 2, 0, 0]);
        }

        #[test]
        fn opus_dops_and_mp3_from_first_frame() {
            let mut m = Fmp4Muxer::new();
            let inits = feed(&mut m, &[audio(0, vectors::OPUS_51_SEQ)]);
            let (body, kind, dops) = entry(&inits[0], b"Opus");
            assert_eq!(be16(body, 16), 6, "channelcount");
            assert_eq!(&kind, b"dOps");
            assert_eq!(
                dops,
                &[0, 6, 1, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 1, 4, 2, 0, 4, 1, 2, 3, 5]
            );
            assert!(m.write_frame(&audio(0, vectors::OPUS_STEREO_FRAME), &mut Vec::new()));

            let mut m = Fmp4Muxer::new();
            let inits = feed(&mut m, &[audio(0, vectors::MP3_22050_FRAME)]);
            let (body, kind, esds) = entry(&inits[0], b"mp4a");
            assert_eq!(be16(body, 16), 1, "mono");
            assert_eq!(
                u32::from_be_bytes(body[24..28].try_into().unwrap()) >> 16,
                22_050
            );
            assert_eq!(&kind, b"esds");
            assert!(esds.contains(&0x6b), "objectTypeIndication MPEG-1 audio");
            assert_eq!(m.take_refusal(), None);
        }

        /// MP3 frames whose header does not parse make no track and are
        /// reported once per publisher, not once per frame.
        #[test]
        fn a_bad_mp3_header_is_reported_once() {
            let mut m = Fmp4Muxer::new();
            // Legacy SoundFormat 2 (MP3), then bytes without a frame sync.
            let bad =
                Frame::parse_audio(0, bytes::Bytes::from_static(&[0x2f, 0, 1, 2, 3])).unwrap();
            let mut reports = Vec::new();
            for _ in 0..5 {
                assert!(feed(&mut m, std::slice::from_ref(&bad)).is_empty());
                reports.extend(m.take_refusal());
            }
            assert_eq!(reports.len(), 1, "{reports:?}");
            assert!(reports[0].starts_with("MP3: "), "{reports:?}");
            m.new_publisher();
            feed(&mut m, std::slice::from_ref(&bad));
            assert!(m.take_refusal().is_some(), "a new publisher is told again");
        }
    }
}
