//! A cheap MPEG-TS demuxer for HLS players, sans-IO: bytes of a segment or
//! part in (in pieces of any size), one [`TsFrame`] per video access unit
//! and per audio frame out. It reads only what a player's statistics
//! need: PAT → PMT for the PIDs, the random_access_indicator, the length
//! of each elementary-stream frame, the ADTS frame headers, and the first
//! [`ES_PREFIX_MAX`] bytes of each video access unit, where it looks for
//! the bench's stamp.
//!
//! Defined by: ISO/IEC 13818-1 2.4.3.2 (transport packet), 2.4.3.4
//! (adaptation field), 2.4.3.6 (PES packet), 2.4.4.3 and 2.4.4.8 (PAT,
//! PMT); ISO/IEC 14496-10 Annex B (byte stream) and 7.4.1.2.3 (NAL unit
//! order: AUD, SPS, PPS, SEI, slices); ISO/IEC 13818-7 6.2 (ADTS).
//!
//! Every part and segment shardcast serves starts with PAT and PMT and
//! holds whole PES packets, one per video access unit (PES_packet_length 0,
//! so a video PES ends where the next starts or where the body ends:
//! [`TsDemuxer::finish`]).
//!
//! # The stamp
//!
//! The synthetic publisher's video frames are FLV bodies
//! `17|27 01 000000 <NAL length> <SEI NAL> <filler NAL>` (see `synth.rs`).
//! shardcast's TS muxer turns them into Annex B:
//! `AUD [SPS PPS] 00000001 <SEI NAL> 00000001 <filler NAL>`. The demuxer
//! finds the SEI NAL by its start code and type (not at a fixed offset) and
//! rebuilds the start of the FLV body around it ([`TsFrame::flv_prefix`]),
//! so `synth::read_stamp`, the one stamp reader, applies to every protocol.

use std::fmt;

use proto::ts::crc32_mpeg2;

use crate::synth::read_stamp;

/// Bytes of a transport packet.
pub const PACKET_LEN: usize = 188;
const SYNC_BYTE: u8 = 0x47;
/// Bytes at the start of a video access unit that are searched for the
/// stamp's SEI. The bench's access units begin with AUD (6 bytes), SPS
/// (4 + 24) and PPS (4 + 4) before keyframes, then the SEI (4 + 44).
pub const ES_PREFIX_MAX: usize = 256;
/// The SEI NAL unit of a stamped frame: header, payload type and size,
/// the 40-byte payload, the trailing bits.
const SEI_NAL_LEN: usize = 44;
/// FLV video tag header (5 bytes) and 4-byte NAL length before the SEI.
const FLV_SEI_AT: usize = 9;
/// The start of a stamped FLV video body: what [`read_stamp`] reads.
pub const FLV_PREFIX_LEN: usize = FLV_SEI_AT + SEI_NAL_LEN;
const _: () = assert!(6 + (4 + 24) + (4 + 4) + (4 + SEI_NAL_LEN) <= ES_PREFIX_MAX);
/// The longest PSI section (section_length is at most 1021).
const SECTION_BYTES_MAX: usize = 1024;
/// Bytes of the fixed PES header, up to PES_header_data_length.
const PES_HEADER_FIXED: usize = 9;
/// Bytes of an ADTS header (without CRC) read to get frame_length.
const ADTS_HEADER_LEN: usize = 7;

const PID_PAT: u16 = 0;
const STREAM_TYPE_MPEG1_AUDIO: u8 = 0x03;
const STREAM_TYPE_MPEG2_AUDIO: u8 = 0x04;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_H265: u8 = 0x24;

/// One video access unit or audio frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsFrame {
    pub video: bool,
    /// A video random access point (random_access_indicator, or an H.264
    /// IDR slice in the access unit's prefix).
    pub keyframe: bool,
    /// Elementary-stream bytes: the Annex B access unit, or the ADTS
    /// frame with its header.
    pub len: usize,
    /// For a stamped video frame: the start of the FLV body it was muxed
    /// from, rebuilt around its SEI (see the module doc).
    pub flv_prefix: Option<[u8; FLV_PREFIX_LEN]>,
}

/// Why a body is not a transport stream we can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsDemuxError {
    /// Byte offset in the body.
    pub offset: u64,
    pub what: &'static str,
}

impl fmt::Display for TsDemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MPEG-TS: {} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for TsDemuxError {}

/// Where a PES packet's bytes are going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PesState {
    /// Waiting for a packet with payload_unit_start_indicator.
    Idle,
    /// Reading the fixed header: `have` bytes of it so far.
    Header { have: usize },
    /// Skipping the optional header fields.
    HeaderFields { left: usize },
    /// Elementary-stream bytes.
    Payload,
}

/// One elementary stream's PES in progress.
#[derive(Debug)]
struct Pes {
    state: PesState,
    header: [u8; PES_HEADER_FIXED],
    /// ES bytes of the current PES.
    es_len: usize,
    random_access: bool,
}

impl Pes {
    fn new() -> Self {
        Pes {
            state: PesState::Idle,
            header: [0; PES_HEADER_FIXED],
            es_len: 0,
            random_access: false,
        }
    }

    fn start(&mut self, random_access: bool) {
        self.state = PesState::Header { have: 0 };
        self.es_len = 0;
        self.random_access = random_access;
    }

    /// Consumes header bytes from `data`; returns the ES bytes in it.
    fn payload<'a>(&mut self, mut data: &'a [u8], offset: u64) -> Result<&'a [u8], TsDemuxError> {
        loop {
            match self.state {
                PesState::Idle => return Ok(&[]),
                PesState::Payload => {
                    self.es_len += data.len();
                    return Ok(data);
                }
                PesState::Header { have } => {
                    let n = (PES_HEADER_FIXED - have).min(data.len());
                    self.header[have..have + n].copy_from_slice(&data[..n]);
                    data = &data[n..];
                    if have + n < PES_HEADER_FIXED {
                        self.state = PesState::Header { have: have + n };
                        return Ok(&[]);
                    }
                    if self.header[..3] != [0, 0, 1] {
                        return Err(TsDemuxError {
                            offset,
                            what: "no PES start code",
                        });
                    }
                    self.state = PesState::HeaderFields {
                        left: usize::from(self.header[8]),
                    };
                }
                PesState::HeaderFields { left } => {
                    let n = left.min(data.len());
                    data = &data[n..];
                    if n < left {
                        self.state = PesState::HeaderFields { left: left - n };
                        return Ok(&[]);
                    }
                    self.state = PesState::Payload;
                }
            }
        }
    }
}

/// Counts ADTS frames in an audio elementary stream.
#[derive(Debug)]
struct Adts {
    header: [u8; ADTS_HEADER_LEN],
    have: usize,
    /// Bytes of the current frame still to skip.
    skip: usize,
    /// Lost sync; nothing is counted until the next PES.
    lost: bool,
}

impl Adts {
    fn new() -> Self {
        Adts {
            header: [0; ADTS_HEADER_LEN],
            have: 0,
            skip: 0,
            lost: false,
        }
    }

    /// A PES starts: it starts with a frame (data_alignment_indicator).
    fn reset(&mut self) {
        *self = Adts::new();
    }

    fn feed(&mut self, mut data: &[u8], out: &mut Vec<TsFrame>) {
        while !data.is_empty() && !self.lost {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (ADTS_HEADER_LEN - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < ADTS_HEADER_LEN {
                return;
            }
            let h = &self.header;
            let frame_len =
                usize::from(h[3] & 0x03) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
            if h[0] != 0xff || h[1] & 0xf0 != 0xf0 || frame_len < ADTS_HEADER_LEN {
                self.lost = true;
                return;
            }
            out.push(TsFrame {
                video: false,
                keyframe: false,
                len: frame_len,
                flv_prefix: None,
            });
            self.skip = frame_len - ADTS_HEADER_LEN;
            self.have = 0;
        }
    }
}

/// The demuxer. One per player; it keeps the PIDs from body to body.
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes of a packet split across pieces.
    partial: [u8; PACKET_LEN],
    partial_len: usize,
    /// Bytes of the current body seen so far.
    offset: u64,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    audio_is_adts: bool,
    /// A PSI section being collected, and its PID.
    section: Vec<u8>,
    section_pid: Option<u16>,
    video: Pes,
    /// The current access unit's first bytes.
    video_prefix: Vec<u8>,
    audio: Pes,
    adts: Adts,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    pub fn new() -> Self {
        TsDemuxer {
            partial: [0; PACKET_LEN],
            partial_len: 0,
            offset: 0,
            pmt_pid: None,
            video_pid: None,
            audio_pid: None,
            audio_is_adts: false,
            section: Vec::new(),
            section_pid: None,
            video: Pes::new(),
            video_prefix: Vec::with_capacity(ES_PREFIX_MAX),
            audio: Pes::new(),
            adts: Adts::new(),
        }
    }

    /// The video and audio PIDs of the last PMT.
    #[cfg(test)]
    pub fn pids(&self) -> (Option<u16>, Option<u16>) {
        (self.video_pid, self.audio_pid)
    }

    /// Feeds the next bytes of a body; frames that completed go to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<TsFrame>) -> Result<(), TsDemuxError> {
        if self.partial_len > 0 {
            let n = (PACKET_LEN - self.partial_len).min(data.len());
            self.partial[self.partial_len..self.partial_len + n].copy_from_slice(&data[..n]);
            self.partial_len += n;
            data = &data[n..];
            if self.partial_len < PACKET_LEN {
                return Ok(());
            }
            let packet = self.partial;
            self.partial_len = 0;
            self.packet(&packet, out)?;
        }
        let mut packets = data.chunks_exact(PACKET_LEN);
        for p in &mut packets {
            self.packet(p, out)?;
        }
        let rest = packets.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.partial_len = rest.len();
        Ok(())
    }

    /// The body ended: the open video access unit is complete. Resets the
    /// per-body state (the PIDs stay).
    pub fn finish(&mut self, out: &mut Vec<TsFrame>) -> Result<(), TsDemuxError> {
        let result = if self.partial_len > 0 {
            Err(TsDemuxError {
                offset: self.offset,
                what: "the body ends inside a transport packet",
            })
        } else {
            Ok(())
        };
        self.end_video(out);
        self.audio.state = PesState::Idle;
        self.partial_len = 0;
        self.offset = 0;
        self.section_pid = None;
        result
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<TsFrame>) -> Result<(), TsDemuxError> {
        let offset = self.offset;
        self.offset += PACKET_LEN as u64;
        let err = |what| Err(TsDemuxError { offset, what });
        if p[0] != SYNC_BYTE {
            return err("no sync byte 0x47");
        }
        let start = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let afc = (p[3] >> 4) & 0x03;
        let mut payload_at = 4;
        let mut random_access = false;
        if afc & 0b10 != 0 {
            let len = usize::from(p[4]);
            if len > PACKET_LEN - 5 {
                return err("adaptation_field_length over 183");
            }
            random_access = len > 0 && p[5] & 0x40 != 0;
            payload_at = 5 + len;
        }
        if afc & 0b01 == 0 {
            return Ok(());
        }
        let payload = &p[payload_at..];
        if pid == PID_PAT || Some(pid) == self.pmt_pid {
            self.psi(pid, start, payload, offset)
        } else if Some(pid) == self.video_pid {
            if start {
                self.end_video(out);
                self.video.start(random_access);
                self.video_prefix.clear();
            }
            let es = self.video.payload(payload, offset)?;
            let room = ES_PREFIX_MAX - self.video_prefix.len();
            self.video_prefix
                .extend_from_slice(&es[..room.min(es.len())]);
            Ok(())
        } else if Some(pid) == self.audio_pid {
            if start {
                self.end_audio(out);
                self.audio.start(false);
                self.adts.reset();
            }
            let es = self.audio.payload(payload, offset)?;
            if self.audio_is_adts {
                self.adts.feed(es, out);
            }
            Ok(())
        } else {
            Ok(())
        }
    }

    /// Emits the open video access unit, if any.
    fn end_video(&mut self, out: &mut Vec<TsFrame>) {
        if self.video.state != PesState::Payload {
            self.video.state = PesState::Idle;
            return;
        }
        self.video.state = PesState::Idle;
        let (idr, sei) = scan_annex_b(&self.video_prefix);
        let keyframe = self.video.random_access || idr;
        let flv_prefix = sei.map(|nal| flv_prefix(keyframe, nal));
        out.push(TsFrame {
            video: true,
            keyframe,
            len: self.video.es_len,
            flv_prefix,
        });
    }

    /// An audio PES that is not ADTS counts as one frame when it ends.
    fn end_audio(&mut self, out: &mut Vec<TsFrame>) {
        if !self.audio_is_adts && self.audio.state == PesState::Payload {
            out.push(TsFrame {
                video: false,
                keyframe: false,
                len: self.audio.es_len,
                flv_prefix: None,
            });
        }
        self.audio.state = PesState::Idle;
    }

    fn psi(
        &mut self,
        pid: u16,
        start: bool,
        payload: &[u8],
        offset: u64,
    ) -> Result<(), TsDemuxError> {
        let err = |what| Err(TsDemuxError { offset, what });
        if start {
            let pointer = usize::from(*payload.first().unwrap_or(&0));
            let Some(section) = payload.get(1 + pointer..) else {
                return err("pointer_field past the packet");
            };
            self.section.clear();
            self.section.extend_from_slice(section);
            self.section_pid = Some(pid);
        } else if self.section_pid == Some(pid) {
            self.section.extend_from_slice(payload);
        } else {
            return Ok(());
        }
        let Some(len) = self
            .section
            .get(1..3)
            .map(|b| usize::from(b[0] & 0x0f) << 8 | usize::from(b[1]))
        else {
            return Ok(());
        };
        let total = 3 + len;
        if total > SECTION_BYTES_MAX {
            return err("section_length over 1021");
        }
        if self.section.len() < total {
            return Ok(());
        }
        self.section_pid = None;
        let s = &self.section[..total];
        if total < 12 || crc32_mpeg2(s) != 0 {
            return err("PSI section fails its CRC_32");
        }
        let body = &s[8..total - 4];
        match s[0] {
            0x00 => {
                // PAT: program_number, PID pairs; program 0 is the NIT.
                self.pmt_pid = body
                    .chunks_exact(4)
                    .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
                    .map(|e| u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]));
            }
            0x02 => {
                let info_len = usize::from(body[2] & 0x0f) << 8 | usize::from(body[3]);
                let mut es = body.get(4 + info_len..).unwrap_or_default();
                let (mut video, mut audio, mut adts) = (None, None, false);
                while es.len() >= 5 {
                    let pid = u16::from(es[1] & 0x1f) << 8 | u16::from(es[2]);
                    match es[0] {
                        STREAM_TYPE_H264 | STREAM_TYPE_H265 => video = video.or(Some(pid)),
                        STREAM_TYPE_AAC_ADTS
                        | STREAM_TYPE_MPEG1_AUDIO
                        | STREAM_TYPE_MPEG2_AUDIO
                            if audio.is_none() =>
                        {
                            audio = Some(pid);
                            adts = es[0] == STREAM_TYPE_AAC_ADTS;
                        }
                        _ => {}
                    }
                    let info = usize::from(es[3] & 0x0f) << 8 | usize::from(es[4]);
                    es = es.get(5 + info..).unwrap_or_default();
                }
                self.video_pid = video;
                self.audio_pid = audio;
                self.audio_is_adts = adts;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Walks the Annex B NAL units in `es`: whether one is an H.264 IDR
/// slice, and the first SEI unit that holds the bench's stamp.
fn scan_annex_b(es: &[u8]) -> (bool, Option<&[u8; SEI_NAL_LEN]>) {
    let mut idr = false;
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i..i + 3] != [0, 0, 1] {
            i += 1;
            continue;
        }
        let nal = &es[i + 3..];
        match nal[0] & 0x1f {
            5 => idr = true,
            6 => {
                let sei = nal.first_chunk::<SEI_NAL_LEN>();
                if sei.is_some_and(|sei| read_stamp(&flv_prefix(false, sei)).is_some()) {
                    return (idr, sei);
                }
            }
            _ => {}
        }
        i += 3;
    }
    (idr, None)
}

/// The start of the FLV video body an SEI NAL unit came from: frame type
/// and codec, AVCPacketType NALU, composition time 0, the NAL length.
fn flv_prefix(keyframe: bool, sei: &[u8; SEI_NAL_LEN]) -> [u8; FLV_PREFIX_LEN] {
    let mut b = [0; FLV_PREFIX_LEN];
    b[0] = if keyframe { 0x17 } else { 0x27 };
    b[1] = 0x01;
    b[5..FLV_SEI_AT].copy_from_slice(&(SEI_NAL_LEN as u32).to_be_bytes());
    b[FLV_SEI_AT..].copy_from_slice(sei);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Synth, SynthConfig};
    use proto::media::Frame;
    use proto::ts::{TsMuxer, PID_AUDIO, PID_VIDEO};

    fn synth() -> Synth {
        Synth::new(SynthConfig {
            video_bps: 1_000_000,
            fps: 30.0,
            gop_s: 0.5,
            audio: true,
            audio_bps: 128_000,
        })
    }

    /// A TS body from shardcast's own muxer: PSI, then `n` video frames
    /// (stamped with seq, sent_us = 1000 + seq) each followed by an audio
    /// frame. Returns the body and the frames muxed.
    fn body(n: u32) -> (Vec<u8>, Vec<Frame>) {
        let mut s = synth();
        let mut mux = TsMuxer::new(true, true);
        let mut out = Vec::new();
        mux.write_psi(&mut out);
        let mut frames = vec![s.video_sequence_header(), s.audio_sequence_header()];
        for i in 0..n {
            frames.push(s.next_video(i * 33, 1_000 + u64::from(i)));
            frames.push(s.audio_frame(i * 33 + 5));
        }
        for f in &frames {
            mux.write_frame(f, &mut out).unwrap();
        }
        (out, frames)
    }

    fn demux_in_pieces(body: &[u8], cuts: &[usize]) -> Vec<TsFrame> {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
            d.push(&body[at..cut], &mut out).unwrap();
            at = cut;
        }
        d.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn finds_pids_frames_keyframes_and_stamps() {
        let (body, frames) = body(20);
        let out = demux_in_pieces(&body, &[]);
        let video: Vec<&TsFrame> = out.iter().filter(|f| f.video).collect();
        let audio = out.iter().filter(|f| !f.video).count();
        assert_eq!((video.len(), audio), (20, 20));
        // A 0.5 s GOP at 30 fps: keyframes at 0 and 15.
        let keys: Vec<usize> = (0..20).filter(|&i| video[i].keyframe).collect();
        assert_eq!(keys, [0, 15]);
        for (i, v) in video.iter().enumerate() {
            let stamp = read_stamp(&v.flv_prefix.expect("stamped")).unwrap();
            assert_eq!((stamp.seq, stamp.sent_us), (i as u32, 1_000 + i as u64));
        }
        // ES bytes: the FLV body's NAL units with start codes for lengths,
        // plus the AUD (6) and on keyframes SPS and PPS (4 + 24 + 4 + 4),
        // less the 5-byte FLV video header.
        let coded: Vec<&Frame> = frames[2..].iter().filter(|f| f.is_video()).collect();
        for (i, v) in video.iter().enumerate() {
            let extra = if v.keyframe { 36 } else { 0 };
            assert_eq!(v.len, coded[i].payload.len() - 5 + 6 + extra, "frame {i}");
        }
        // ADTS frames: the raw AAC (the FLV body less its 2-byte header)
        // plus the 7-byte ADTS header.
        let a = out.iter().find(|f| !f.video).unwrap();
        assert_eq!(a.len, frames[3].payload.len() - 2 + 7);
        let mut d = TsDemuxer::new();
        d.push(&body, &mut Vec::new()).unwrap();
        assert_eq!(d.pids(), (Some(PID_VIDEO.value()), Some(PID_AUDIO.value())));
    }

    /// The same frames whatever the pieces: split into two at every
    /// 188-byte boundary and around it, and fed one byte at a time.
    #[test]
    fn pieces_do_not_matter() {
        let (body, _) = body(6);
        let whole = demux_in_pieces(&body, &[]);
        for boundary in (0..=body.len()).step_by(PACKET_LEN) {
            for cut in [boundary.saturating_sub(1), boundary, boundary + 1] {
                let cut = cut.min(body.len());
                assert_eq!(demux_in_pieces(&body, &[cut]), whole, "cut at {cut}");
            }
        }
        let bytes: Vec<usize> = (1..body.len()).collect();
        assert_eq!(demux_in_pieces(&body, &bytes), whole);
    }

    #[test]
    fn errors_name_the_offset() {
        let (good, _) = body(2);
        let mut out = Vec::new();
        let mut bad = good.clone();
        bad[2 * PACKET_LEN] = 0;
        let e = TsDemuxer::new().push(&bad, &mut out).unwrap_err();
        assert_eq!(
            (e.offset, e.what),
            (2 * PACKET_LEN as u64, "no sync byte 0x47")
        );
        let mut bad = good.clone();
        // The PAT's last CRC_32 byte: header 4, pointer_field 1, section 16.
        bad[4 + 1 + 15] ^= 0xff;
        let e = TsDemuxer::new().push(&bad, &mut out).unwrap_err();
        assert_eq!((e.offset, e.what), (0, "PSI section fails its CRC_32"));
        let mut d = TsDemuxer::new();
        d.push(&good[..PACKET_LEN + 10], &mut out).unwrap();
        let e = d.finish(&mut out).unwrap_err();
        assert_eq!(
            (e.offset, e.what),
            (PACKET_LEN as u64, "the body ends inside a transport packet")
        );
    }
}
