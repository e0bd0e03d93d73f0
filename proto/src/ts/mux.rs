//! [`TsMuxer`]: frames in, 188-byte transport packets out.

use crate::media::{
    parse_aac_config, parse_avc_config, AudioCodec, AudioTagHeader, Frame, FrameKind, MediaError,
    VideoCodec, VideoPacket, VideoTagHeader,
};

use super::codec::{AdtsConfig, NalKind, NalSyntax, NalUnits, VideoConfig, START_CODE};
use super::packet::{write_pes_packets, write_section_packet, FirstPacket};
use super::psi::{write_pat, write_pmt, EsInfo};
use super::types::{
    ContinuityCounter, Pcr, Pid, Ts90k, PID_AUDIO, PID_PAT, PID_PMT, PID_VIDEO, PREFIX_DTS,
    PREFIX_PTS_ONLY, PREFIX_PTS_WITH_DTS,
};
use super::{Codec, TsError};

/// stream_id of the one video stream (Table 2-22: video stream number 0).
pub const STREAM_ID_VIDEO: u8 = 0xe0;
/// stream_id of the one audio stream (audio stream number 0).
pub const STREAM_ID_AUDIO: u8 = 0xc0;

/// The longest gap between two PCRs the muxer aims for, in 90 kHz ticks
/// (13818-1 2.7.2 asks for at most 100 ms). A PCR goes only at the start of
/// a PES on the PCR PID, so a video stream under 10 frames per second gets
/// one per frame and wider gaps.
pub const PCR_INTERVAL_90K: u64 = Ts90k::HZ / 10;

/// The largest audio PES payload, in bytes: PES_packet_length is 16 bits
/// and counts the 3 flag bytes and the 5-byte PTS. Video PES packets use
/// PES_packet_length 0 ("unbounded", allowed for video only, 2.4.3.7), so
/// their size is bounded only by the frame: an RTMP message is at most
/// 16 MiB (24-bit length, and the RTMP chunk limits set a lower bound on
/// ingest), plus the start codes, AUD and parameter sets the muxer adds.
pub const AUDIO_PES_PAYLOAD_MAX: usize = u16::MAX as usize - 3 - 5;

/// Bytes of the fixed PES header: start code prefix, stream_id,
/// PES_packet_length, two flag bytes and PES_header_data_length.
const PES_HEADER_FIXED_LEN: usize = 9;

/// An MPEG-TS muxer for one program with at most one video and one audio
/// stream (ISO/IEC 13818-1), writing into a caller's buffer: no I/O, no
/// clock. Timestamps come from the frames.
///
/// - PIDs: PAT 0, PMT [`PID_PMT`], video [`PID_VIDEO`], audio
///   [`PID_AUDIO`]; the PCR travels on the video PID, or on the audio PID of
///   an audio-only muxer.
/// - H.264 (stream_type 0x1B) and H.265 (0x24): Annex B with an access unit
///   delimiter first in each access unit and the parameter sets of the last
///   sequence header before each keyframe. AAC (0x0F) as ADTS, MP3 (0x03)
///   as is. Other codecs are [`TsError::Unsupported`].
/// - The PMT names the codecs of the last sequence headers (H.264 and AAC
///   until one arrives). When a codec changes, the muxer bumps the PMT's
///   version_number and writes PAT and PMT again before the next frame.
#[derive(Debug)]
pub struct TsMuxer {
    video: bool,
    audio: bool,
    pat_cc: ContinuityCounter,
    pmt_cc: ContinuityCounter,
    video_cc: ContinuityCounter,
    audio_cc: ContinuityCounter,
    /// The stream types the PMT lists: None until the publisher's
    /// sequence header (or, for MP3, first frame) names a codec TS
    /// carries, so the PMT lists exactly the published tracks.
    video_stream_type: Option<u8>,
    audio_stream_type: Option<u8>,
    /// version_number of the PMT, 5 bits.
    pmt_version: u8,
    /// Set when the PMT's stream types changed since PSI was last written.
    psi_stale: bool,
    video_config: Option<VideoConfig>,
    aac_config: Option<AdtsConfig>,
    /// The last PCR written.
    last_pcr: Option<Ts90k>,
    /// The next video frame carries the parameter sets even if it is no
    /// keyframe (set at the start of every LL-HLS part).
    parameter_sets_due: bool,
    /// Scratch space for one PES packet, reused between frames.
    pes: Vec<u8>,
    /// The video and the audio codec the muxer last refused, and why,
    /// until taken: one report per codec a publisher sends, not one per
    /// frame (a publish of AV1 and Opus refuses both, frame after frame).
    refused: [Option<Codec>; 2],
    refusal: Option<String>,
}

/// Where a frame's codec data lies within its payload.
fn data_range(payload: &[u8], start: usize, end: usize) -> Result<&[u8], TsError> {
    payload
        .get(start..end)
        .ok_or(TsError::Media(MediaError::Truncated {
            what: "codec data",
            need: end.max(start),
            have: payload.len(),
        }))
}

impl TsMuxer {
    /// A muxer whose PMT lists video and/or audio; audio-only and video-only
    /// outputs pass false for the other, and frames of that kind are then
    /// ignored.
    pub fn new(video: bool, audio: bool) -> Self {
        TsMuxer {
            video,
            audio,
            pat_cc: ContinuityCounter::default(),
            pmt_cc: ContinuityCounter::default(),
            video_cc: ContinuityCounter::default(),
            audio_cc: ContinuityCounter::default(),
            video_stream_type: None,
            audio_stream_type: None,
            pmt_version: 0,
            psi_stale: false,
            video_config: None,
            aac_config: None,
            last_pcr: None,
            parameter_sets_due: false,
            pes: Vec::new(),
            refused: [None; 2],
            refusal: None,
        }
    }

    /// The PID that carries the PCR: the video one while video is
    /// listed, else the audio one once audio is.
    pub fn pcr_pid(&self) -> Pid {
        let video = self.video && self.video_stream_type.is_some();
        let audio = self.audio && self.audio_stream_type.is_some();
        if video || !audio {
            PID_VIDEO
        } else {
            PID_AUDIO
        }
    }

    /// Notes a refused frame for [`TsMuxer::take_refusal`]: once per
    /// codec of each kind, until another codec of that kind is refused or
    /// a new publisher comes.
    pub fn note_refusal(&mut self, error: &TsError) {
        if let TsError::Unsupported { codec } = error {
            let slot = &mut self.refused[usize::from(matches!(codec, Codec::Audio(_)))];
            if *slot != Some(*codec) {
                *slot = Some(*codec);
                self.refusal = Some(format!("{error}: that track is left out of TS segments"));
            }
        }
    }

    /// Why frames were left out, once (see [`TsMuxer::note_refusal`]).
    pub fn take_refusal(&mut self) -> Option<String> {
        self.refusal.take()
    }

    /// A new publisher: what it publishes is not known until its sequence
    /// headers, so the PMT lists no stream until then (and a version
    /// bump makes players re-read it).
    pub fn new_publisher(&mut self) {
        self.refused = [None; 2];
        if self.video_stream_type.is_some() || self.audio_stream_type.is_some() {
            self.video_stream_type = None;
            self.audio_stream_type = None;
            self.video_config = None;
            self.aac_config = None;
            self.bump_pmt_version();
        }
    }

    /// The streams the PMT lists now.
    pub fn streams(&self) -> Vec<EsInfo> {
        let mut streams = Vec::with_capacity(2);
        if let Some(stream_type) = self.video_stream_type.filter(|_| self.video) {
            streams.push(EsInfo {
                stream_type,
                pid: PID_VIDEO,
            });
        }
        if let Some(stream_type) = self.audio_stream_type.filter(|_| self.audio) {
            streams.push(EsInfo {
                stream_type,
                pid: PID_AUDIO,
            });
        }
        streams
    }

    /// Writes a PAT and a PMT (one packet each, CRC_32 included). Call it at
    /// the start of every segment and every LL-HLS part so that each can be
    /// decoded on its own.
    pub fn write_psi(&mut self, out: &mut Vec<u8>) {
        let mut section = Vec::with_capacity(64);
        write_pat(&mut section, PID_PMT);
        write_section_packet(out, PID_PAT, &mut self.pat_cc, &section);
        section.clear();
        write_pmt(
            &mut section,
            self.pmt_version,
            self.pcr_pid(),
            &self.streams(),
        );
        write_section_packet(out, PID_PMT, &mut self.pmt_cc, &section);
        self.psi_stale = false;
    }

    /// Forgets the last PCR so the next PES on the PCR PID carries one, e.g.
    /// at the start of a segment that a player may fetch first.
    pub fn force_pcr(&mut self) {
        self.last_pcr = None;
    }

    /// Makes the next video frame carry the parameter sets (VPS, SPS, PPS)
    /// of the last sequence header, keyframe or not, e.g. at the start of
    /// an LL-HLS part that a player fetches and transmuxes on its own:
    /// shaka-player's transmuxer cannot decode a part whose first frame
    /// comes without them (its error 3018), and a decoder that has them
    /// already takes the repeat as a no-op.
    pub fn repeat_parameter_sets(&mut self) {
        self.parameter_sets_due = true;
    }

    fn set_video_stream_type(&mut self, stream_type: u8) {
        if self.video_stream_type != Some(stream_type) {
            self.video_stream_type = Some(stream_type);
            self.bump_pmt_version();
        }
    }

    fn set_audio_stream_type(&mut self, stream_type: u8) {
        if self.audio_stream_type != Some(stream_type) {
            self.audio_stream_type = Some(stream_type);
            self.bump_pmt_version();
        }
    }

    fn bump_pmt_version(&mut self) {
        self.pmt_version = (self.pmt_version + 1) & 0x1f;
        self.psi_stale = true;
    }

    /// Writes one frame as one PES packet.
    ///
    /// Sequence headers update the muxer's codec configuration and write
    /// nothing: `Ok(false)`. So do data frames, frames of a kind the PMT
    /// does not list, and video messages that carry no picture (end of
    /// sequence, metadata, commands). A coded frame is written and gives
    /// `Ok(true)`. On `Err` nothing was written and the muxer is unchanged
    /// except for a refused sequence header, whose codec is then unknown
    /// until the next one: the caller may skip the frame and go on.
    ///
    /// H.264 and H.265: the length-prefixed NAL units become Annex B, after
    /// an access unit delimiter (AUDs in the frame are dropped). Before a
    /// keyframe (the frame's flag, or an IDR/IRAP NAL unit in it), and
    /// before the first frame after [`TsMuxer::repeat_parameter_sets`], go
    /// the parameter sets of the last sequence header, each kind only if
    /// the frame carries none of it. The PES has PTS (DTS + composition offset)
    /// and, when different, DTS. On the PCR PID, a keyframe's first packet
    /// carries a PCR equal to its DTS and random_access_indicator; other
    /// PES packets carry a PCR when [`PCR_INTERVAL_90K`] has passed.
    ///
    /// AAC: each raw frame gets a 7-byte ADTS header built from the
    /// AudioSpecificConfig. Audio PES packets have PTS only.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<bool, TsError> {
        match frame.kind {
            FrameKind::Video if self.video => self.write_video(frame, out),
            FrameKind::Audio if self.audio => self.write_audio(frame, out),
            _ => Ok(false),
        }
    }

    fn write_video(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<bool, TsError> {
        let header = VideoTagHeader::parse(&frame.payload)?;
        let Some(codec) = header.codec else {
            return Ok(false); // a command frame
        };
        let codec = Codec::Video(codec);
        let stream_type = codec.stream_type().ok_or(TsError::Unsupported { codec })?;
        let syntax = if codec == Codec::Video(VideoCodec::Avc) {
            NalSyntax::Avc
        } else {
            NalSyntax::Hevc
        };
        let data = data_range(&frame.payload, header.body_start, header.body_end)?;
        match header.packet {
            VideoPacket::SequenceStart => {
                self.video_config = None;
                let config = match syntax {
                    NalSyntax::Avc => {
                        let c = parse_avc_config(data)?;
                        VideoConfig {
                            syntax,
                            nalu_length_size: c.nalu_length_size,
                            vps: Vec::new(),
                            sps: c.sps,
                            pps: c.pps,
                        }
                    }
                    NalSyntax::Hevc => {
                        VideoConfig::from_hevc(crate::media::parse_hevc_config(data)?)
                    }
                };
                self.video_config = Some(config);
                self.set_video_stream_type(stream_type);
                return Ok(false);
            }
            VideoPacket::CodedFrames => {}
            _ => return Ok(false),
        }
        if data.is_empty() {
            return Ok(false);
        }
        let config = match &self.video_config {
            Some(c) if c.syntax == syntax => c,
            _ => {
                return Err(TsError::MissingConfig {
                    kind: FrameKind::Video,
                })
            }
        };

        // First pass: validate the lengths and see what the frame holds.
        let (mut has_vps, mut has_sps, mut has_pps) = (false, false, false);
        let mut random_access = frame.keyframe;
        let mut es_len = syntax.access_unit_delimiter().len();
        for nal in NalUnits::new(data, config.nalu_length_size) {
            let nal = nal?;
            match syntax.kind(nal) {
                NalKind::Vps => has_vps = true,
                NalKind::Sps => has_sps = true,
                NalKind::Pps => has_pps = true,
                NalKind::RandomAccess => random_access = true,
                NalKind::AccessUnitDelimiter => continue,
                NalKind::Other => {}
            }
            es_len += START_CODE.len() + nal.len();
        }

        let dts = Ts90k::from_ms(u64::from(frame.timestamp));
        let pts = Ts90k::from_ms(u64::from(frame.pts()));
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        pes.reserve(PES_HEADER_FIXED_LEN + 10 + es_len + 256);
        write_pes_header(&mut pes, STREAM_ID_VIDEO, pts, Some(dts), None);
        pes.extend_from_slice(syntax.access_unit_delimiter());
        if random_access || self.parameter_sets_due {
            self.parameter_sets_due = false;
            let sets = [
                (&config.vps, has_vps),
                (&config.sps, has_sps),
                (&config.pps, has_pps),
            ];
            for (list, present) in sets {
                if !present {
                    for nal in list {
                        pes.extend_from_slice(&START_CODE);
                        pes.extend_from_slice(nal);
                    }
                }
            }
        }
        for nal in NalUnits::new(data, config.nalu_length_size).flatten() {
            if syntax.kind(nal) != NalKind::AccessUnitDelimiter {
                pes.extend_from_slice(&START_CODE);
                pes.extend_from_slice(nal);
            }
        }

        self.flush_psi_if_stale(out);
        let mut first = FirstPacket {
            random_access,
            pcr: None,
        };
        if self.pcr_pid() == PID_VIDEO && (random_access || self.pcr_due(dts)) {
            first.pcr = Some(Pcr::at(dts));
            self.last_pcr = Some(dts);
        }
        write_pes_packets(out, PID_VIDEO, &mut self.video_cc, first, &pes);
        self.pes = pes;
        Ok(true)
    }

    fn write_audio(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<bool, TsError> {
        let header = AudioTagHeader::parse(&frame.payload)?;
        let data = data_range(&frame.payload, header.body_start, header.body_end)?;
        let codec = Codec::Audio(header.codec);
        let stream_type = codec.stream_type().ok_or(TsError::Unsupported { codec })?;
        if frame.sequence_header {
            if header.codec == AudioCodec::Aac {
                self.aac_config = None;
                let asc = parse_aac_config(data)?;
                self.aac_config = Some(AdtsConfig::new(&asc)?);
            }
            self.set_audio_stream_type(stream_type);
            return Ok(false);
        }
        if header.packet != crate::media::AudioPacket::CodedFrames || data.is_empty() {
            return Ok(false);
        }
        let adts = if header.codec == AudioCodec::Aac {
            let config = self.aac_config.ok_or(TsError::MissingConfig {
                kind: FrameKind::Audio,
            })?;
            Some(config.header(data.len())?)
        } else {
            // MP3 needs no configuration: its frames describe themselves.
            None
        };
        let payload_len = data.len() + adts.map_or(0, |h| h.len());
        if payload_len > AUDIO_PES_PAYLOAD_MAX {
            return Err(TsError::PesTooLong { len: payload_len });
        }

        let pts = Ts90k::from_ms(u64::from(frame.pts()));
        let mut pes = std::mem::take(&mut self.pes);
        pes.clear();
        write_pes_header(&mut pes, STREAM_ID_AUDIO, pts, None, Some(payload_len));
        if let Some(h) = adts {
            pes.extend_from_slice(&h);
        }
        pes.extend_from_slice(data);

        self.set_audio_stream_type(stream_type);
        self.flush_psi_if_stale(out);
        let mut first = FirstPacket::default();
        if self.pcr_pid() == PID_AUDIO && self.pcr_due(pts) {
            first.pcr = Some(Pcr::at(pts));
            self.last_pcr = Some(pts);
        }
        write_pes_packets(out, PID_AUDIO, &mut self.audio_cc, first, &pes);
        self.pes = pes;
        Ok(true)
    }

    fn flush_psi_if_stale(&mut self, out: &mut Vec<u8>) {
        if self.psi_stale {
            self.write_psi(out);
        }
    }

    /// True when no PCR was written yet or [`PCR_INTERVAL_90K`] has passed
    /// (a time before the last PCR counts as passed: the clock jumped).
    fn pcr_due(&self, now: Ts90k) -> bool {
        self.last_pcr
            .is_none_or(|last| now.ticks_since(last) >= PCR_INTERVAL_90K)
    }
}

/// Writes a PES header (2.4.3.6, Table 2-21): start code prefix,
/// `stream_id`, PES_packet_length (`payload_len` + the header bytes after
/// the length field, or 0 when None), '10' marker with
/// data_alignment_indicator set, PTS_DTS_flags, PES_header_data_length and
/// the timestamps. DTS is written only when it differs from PTS.
fn write_pes_header(
    pes: &mut Vec<u8>,
    stream_id: u8,
    pts: Ts90k,
    dts: Option<Ts90k>,
    payload_len: Option<usize>,
) {
    let dts = dts.filter(|&d| d != pts);
    let header_data_len: u8 = if dts.is_some() { 10 } else { 5 };
    let packet_len = payload_len.map_or(0, |len| {
        u16::try_from(len + 3 + usize::from(header_data_len)).unwrap_or(0)
    });
    pes.extend_from_slice(&[0, 0, 1, stream_id]);
    pes.extend_from_slice(&packet_len.to_be_bytes());
    pes.push(0x84); // '10', not scrambled, data_alignment_indicator
    pes.push(if dts.is_some() { 0xc0 } else { 0x80 });
    pes.push(header_data_len);
    match dts {
        Some(dts) => {
            pes.extend_from_slice(&pts.pes_bytes(PREFIX_PTS_WITH_DTS));
            pes.extend_from_slice(&dts.pes_bytes(PREFIX_DTS));
        }
        None => pes.extend_from_slice(&pts.pes_bytes(PREFIX_PTS_ONLY)),
    }
}
