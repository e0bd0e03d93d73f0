//! [`SegmentMuxer`] for the MPEG-TS muxer of [`crate::ts`].

use super::SegmentMuxer;
use crate::media::Frame;
use crate::ts::TsMuxer;

/// Each part and segment starts with PAT and PMT, carries a PCR in its
/// first packet on the PCR PID and has the parameter sets before its first
/// video frame, so a player can start with any of them and transmux each
/// part on its own. A segment stays exactly its parts joined.
///
/// Frames the muxer refuses (a codec MPEG-TS cannot carry here, such as
/// Opus or AV1, or a malformed frame) are left out of the segment and
/// reported as not written; the muxer itself stays usable. Push only the
/// kinds the muxer was made for: an audio-only rendition's segmenter should
/// get no video frames, so that it cuts segments on audio.
impl SegmentMuxer for TsMuxer {
    fn new_publisher(&mut self) {
        TsMuxer::new_publisher(self);
    }

    fn start_chunk(&mut self, out: &mut Vec<u8>) {
        self.force_pcr();
        self.repeat_parameter_sets();
        self.write_psi(out);
    }

    fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> bool {
        match TsMuxer::write_frame(self, frame, out) {
            Ok(written) => written,
            Err(e) => {
                self.note_refusal(&e);
                false
            }
        }
    }

    fn take_refusal(&mut self) -> Option<String> {
        TsMuxer::take_refusal(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::vectors::*;
    use super::super::{HlsConfig, HlsEvent, Segmenter};
    use crate::ts::{check_packets, TsMuxer, PACKET_LEN, PID_VIDEO};

    /// Whether `needle` occurs in `hay`.
    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Parts and segments from the real muxer: whole packets, PSI and a PCR
    /// at the start of each part, SPS and PPS before each part's first
    /// video frame (keyframe or not), each segment exactly its parts
    /// joined, and continuity counters that run on from part to part and
    /// from segment to segment.
    #[test]
    fn parts_and_segments_are_valid_transport_streams() {
        let config = HlsConfig::default();
        let mut segmenter = Segmenter::new(config, Box::new(TsMuxer::new(true, true)));
        let mut events = Vec::new();
        events.extend(segmenter.push(&video(0, AVC_SEQ), 0));
        events.extend(segmenter.push(&audio(0, AAC_SEQ), 0));
        for n in 0..140u32 {
            let ts = n * 1_000 / 30;
            let v = if n % 60 == 0 { IDR } else { SLICE };
            events.extend(segmenter.push(&video(ts, v), u64::from(ts)));
            events.extend(segmenter.push(&audio(ts + 10, AAC), u64::from(ts)));
        }
        events.extend(segmenter.end());

        let mut stream = Vec::new();
        let mut parts = 0;
        let mut joined = Vec::new();
        let mut non_key_parts = 0;
        for e in &events {
            match e {
                HlsEvent::Part {
                    data, independent, ..
                } => {
                    parts += 1;
                    joined.extend_from_slice(data);
                    non_key_parts += usize::from(!independent);
                    assert_eq!(data.len() % PACKET_LEN, 0);
                    let summary = check_packets(data).expect("a part is a valid TS");
                    assert_eq!(summary.pat_count, 1);
                    assert_eq!(summary.pmt_count, 1);
                    // PAT first, PID 0.
                    assert_eq!((data[1] & 0x1f, data[2]), (0, 0));
                    assert!(!summary.pcrs.is_empty());
                    // The test frames are small: the first video PES fits
                    // in its first packet.
                    let first = summary
                        .pes_on(PID_VIDEO)
                        .next()
                        .expect("video in every part");
                    let packet = &data[first.offset..first.offset + PACKET_LEN];
                    assert!(contains(packet, &[0, 0, 0, 1, 0x67, 0x42]), "SPS");
                    assert!(contains(packet, &[0, 0, 0, 1, 0x68, 0xce]), "PPS");
                }
                HlsEvent::Segment { data, .. } => {
                    assert_eq!(data[..], joined[..], "a segment is its parts joined");
                    joined.clear();
                    stream.extend_from_slice(data);
                }
                _ => {}
            }
        }
        assert_eq!(parts, 10);
        assert!(non_key_parts > 0, "some parts start without a keyframe");
        let summary = check_packets(&stream).expect("the segments form one valid TS");
        assert_eq!(summary.pat_count, parts);
        assert_eq!(summary.stream_types(), [0x1b, 0x0f]);
    }
}
