//! Muxer tests: frames built from the FLV and codec specs go through
//! [`TsMuxer`], and the output is read back byte by byte and with
//! [`check_packets`].

use bytes::Bytes;

use super::*;
use crate::media::Frame;

/// An AVCDecoderConfigurationRecord (14496-15 5.2.4.1): version 1, High
/// profile 100, level 3.1, 4-byte lengths, one SPS, one PPS. The parameter
/// sets are short stand-ins: the muxer copies them, it does not read them.
const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];

fn avc_sequence_header(ts: u32) -> Frame {
    let mut body = vec![0x17, 0x00, 0, 0, 0]; // key, AVC, sequence header, cts 0
    body.extend_from_slice(&[0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1]);
    body.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    body.extend_from_slice(SPS);
    body.push(0x01);
    body.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    body.extend_from_slice(PPS);
    Frame::parse_video(ts, Bytes::from(body)).unwrap()
}

/// A legacy AVC NALU message: frame type (1 key, 2 inter), composition
/// time, and NAL units each with a 4-byte length.
fn avc_frame(ts: u32, key: bool, cts: i32, nals: &[&[u8]]) -> Frame {
    let mut body = vec![if key { 0x17 } else { 0x27 }, 0x01];
    body.extend_from_slice(&cts.to_be_bytes()[1..]);
    for nal in nals {
        body.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        body.extend_from_slice(nal);
    }
    Frame::parse_video(ts, Bytes::from(body)).unwrap()
}

/// An IDR slice of `len` bytes (NAL type 5), a non-IDR slice (type 1).
fn idr(len: usize) -> Vec<u8> {
    let mut v = vec![0x65];
    v.resize(len, 0x88);
    v
}
fn slice(len: usize) -> Vec<u8> {
    let mut v = vec![0x41];
    v.resize(len, 0x9a);
    v
}

/// AAC sequence header: AAC, 44 kHz, 16-bit, stereo (0xAF), packet type 0,
/// AudioSpecificConfig 0x12 0x10 = LC (2), index 4 (44.1 kHz), 2 channels.
fn aac_sequence_header() -> Frame {
    Frame::parse_audio(0, Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10])).unwrap()
}

fn aac_frame(ts: u32, len: usize) -> Frame {
    let mut body = vec![0xaf, 0x01];
    body.resize(2 + len, 0x21);
    Frame::parse_audio(ts, Bytes::from(body)).unwrap()
}

/// Every PES packet on `pid`, reassembled from the packets' payloads.
fn pes_packets(buf: &[u8], pid: Pid) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for p in buf.chunks(PACKET_LEN) {
        let this = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
        if this != pid.value() || p[3] & 0x10 == 0 {
            continue;
        }
        let at = if p[3] & 0x20 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        if p[1] & 0x40 != 0 {
            out.push(Vec::new());
        }
        out.last_mut().unwrap().extend_from_slice(&p[at..]);
    }
    out
}

/// The elementary stream bytes of a PES packet (after its header).
fn es(pes: &[u8]) -> &[u8] {
    &pes[9 + usize::from(pes[8])..]
}

/// The bytes a NAL unit takes in Annex B.
fn annex_b(nal: &[u8]) -> Vec<u8> {
    [&[0, 0, 0, 1][..], nal].concat()
}

/// A stream of 2 s: video at 25 fps with a keyframe every second, AAC at
/// 1024 samples per 44.1 kHz frame (23.2 ms).
fn two_second_stream() -> Vec<Frame> {
    let mut frames = vec![avc_sequence_header(0), aac_sequence_header()];
    let mut audio_ms = 0.0f64;
    for n in 0..50u32 {
        let ts = n * 40;
        while audio_ms <= f64::from(ts) {
            frames.push(aac_frame(audio_ms as u32, 300 + (n as usize % 7)));
            audio_ms += 1024.0 * 1000.0 / 44_100.0;
        }
        let key = n % 25 == 0;
        let nal = if key {
            idr(5000)
        } else {
            slice(700 + n as usize)
        };
        frames.push(avc_frame(ts, key, 80, &[&nal]));
    }
    frames
}

fn mux(muxer: &mut TsMuxer, frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    for f in frames {
        muxer.write_frame(f, &mut out).unwrap();
    }
    out
}

#[test]
fn packet_boundaries() {
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    assert_eq!(out.len(), 2 * PACKET_LEN);
    for f in two_second_stream() {
        let before = out.len();
        let wrote = muxer.write_frame(&f, &mut out).unwrap();
        assert_eq!(wrote, !f.sequence_header);
        assert_eq!(out.len() == before, f.sequence_header);
        assert_eq!(out.len() % PACKET_LEN, 0);
    }
    for (i, p) in out.chunks(PACKET_LEN).enumerate() {
        assert_eq!(p[0], SYNC_BYTE, "packet {i}");
    }
}

#[test]
fn psi_packets() {
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    for seq in [avc_sequence_header(0), aac_sequence_header()] {
        assert_eq!(muxer.write_frame(&seq, &mut out), Ok(false));
    }
    muxer.write_psi(&mut out);
    // PAT: PUSI, PID 0, payload only, CC 0, pointer_field 0, the section,
    // 0xFF filler.
    let pat = [
        0x47, 0x40, 0x00, 0x10, 0x00, //
        0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, //
        0x2A, 0xB1, 0x04, 0xB2,
    ];
    assert_eq!(&out[..pat.len()], &pat);
    assert!(out[pat.len()..PACKET_LEN].iter().all(|&b| b == 0xff));
    // PMT on 0x1000: PCR on 0x100, H.264 on 0x100, AAC on 0x101; version
    // 2, since each sequence header added a stream.
    let pmt = &out[PACKET_LEN..2 * PACKET_LEN];
    assert_eq!(&pmt[..5], &[0x47, 0x50, 0x00, 0x10, 0x00]);
    assert_eq!(
        &pmt[5..27],
        &[
            0x02, 0xB0, 0x17, 0x00, 0x01, 0xC5, 0x00, 0x00, 0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1,
            0x00, 0xF0, 0x00, 0x0F, 0xE1, 0x01, 0xF0, 0x00
        ]
    );
    assert_eq!(crc32_mpeg2(&pmt[5..31]), 0, "CRC_32 over the section");
    // The second PSI continues the counters.
    muxer.write_psi(&mut out);
    assert_eq!(out[2 * PACKET_LEN + 3], 0x11);
    assert_eq!(out[3 * PACKET_LEN + 3], 0x11);
    let summary = check_packets(&out).unwrap();
    assert_eq!((summary.pat_count, summary.pmt_count), (2, 2));
    assert_eq!(summary.pmt_pids, vec![PID_PMT]);
    assert_eq!(summary.pcr_pid, Some(PID_VIDEO));
    assert_eq!(
        summary.stream_types(),
        vec![STREAM_TYPE_H264, STREAM_TYPE_AAC_ADTS]
    );
}

/// Counters per PID run 0, 1, ... 15, 0 across frames, and the checker
/// agrees.
#[test]
fn continuity_counters_wrap() {
    let mut muxer = TsMuxer::new(true, true);
    let frames = two_second_stream();
    let out = mux(&mut muxer, &frames);
    let mut next = std::collections::HashMap::<u16, u8>::new();
    let mut wrapped = std::collections::HashSet::new();
    for p in out.chunks(PACKET_LEN) {
        let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
        let cc = p[3] & 0x0f;
        let expected = next.get(&pid).copied().unwrap_or(0);
        assert_eq!(cc, expected, "PID {pid:#x}");
        if cc == 15 {
            wrapped.insert(pid);
        }
        next.insert(pid, (cc + 1) % 16);
    }
    assert!(wrapped.contains(&PID_VIDEO.value()) && wrapped.contains(&PID_AUDIO.value()));
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.packets, out.len() / PACKET_LEN);
    assert!(summary.packets_per_pid[&PID_VIDEO] > 16);
    assert!(summary.packets_per_pid[&PID_AUDIO] > 16);
    assert_eq!(summary.pes_on(PID_VIDEO).count(), 50);
    let audio_frames = frames
        .iter()
        .filter(|f| f.is_audio() && !f.sequence_header)
        .count();
    assert_eq!(summary.pes_on(PID_AUDIO).count(), audio_frames);
}

#[test]
fn checker_detects_injected_faults() {
    let mut muxer = TsMuxer::new(true, true);
    let out = mux(&mut muxer, &two_second_stream());
    check_packets(&out).unwrap();

    // Drop one video packet from the middle, between two other video
    // packets with payload only: a counter gap.
    let plain_video = |p: &[u8]| p[1] == 0x01 && p[2] == 0x00 && p[3] >> 4 == 0x1;
    let packets: Vec<&[u8]> = out.chunks(PACKET_LEN).collect();
    let victim = (0..packets.len() - 1)
        .filter(|&i| plain_video(packets[i]) && plain_video(packets[i + 1]))
        .nth(20)
        .unwrap();
    let mut gap = out[..victim * PACKET_LEN].to_vec();
    gap.extend_from_slice(&out[(victim + 1) * PACKET_LEN..]);
    match check_packets(&gap) {
        Err(TsError::ContinuityGap {
            offset,
            pid,
            expected,
            found,
        }) => {
            assert_eq!(offset, victim * PACKET_LEN);
            assert_eq!(pid, PID_VIDEO);
            assert_eq!(found, (expected + 1) % 16);
        }
        other => panic!("{other:?}"),
    }
    // The same gap is allowed when the packet after it sets
    // discontinuity_indicator: give it a 2-byte adaptation field (its
    // payload loses 2 bytes, which a video PES of unbounded length hides).
    let mut flagged = gap.clone();
    {
        let p = &mut flagged[victim * PACKET_LEN..(victim + 1) * PACKET_LEN];
        let payload: Vec<u8> = p[4..].to_vec();
        p[3] = (p[3] & 0x0f) | 0x30;
        p[4] = 1;
        p[5] = 0x80;
        p[6..].copy_from_slice(&payload[..182]);
    }
    check_packets(&flagged).unwrap();

    // A wrong sync byte, a truncated stream, a broken PMT CRC.
    let mut bad = out.clone();
    bad[5 * PACKET_LEN] = 0x48;
    assert_eq!(
        check_packets(&bad),
        Err(TsError::Sync {
            offset: 5 * PACKET_LEN
        })
    );
    assert_eq!(
        check_packets(&out[..out.len() - 1]),
        Err(TsError::Length { len: out.len() - 1 })
    );
    let mut bad = out.clone();
    bad[PACKET_LEN + 20] ^= 0x01;
    assert_eq!(
        check_packets(&bad),
        Err(TsError::Crc {
            offset: PACKET_LEN,
            pid: PID_PMT
        })
    );
    // A corrupt PTS marker bit.
    let mut bad = out.clone();
    let first_audio = out
        .chunks(PACKET_LEN)
        .position(|p| p[1] == 0x41 && p[2] == 0x01)
        .unwrap();
    bad[first_audio * PACKET_LEN + 4 + 13] &= 0xfe;
    assert!(matches!(
        check_packets(&bad),
        Err(TsError::Malformed { what: "PTS", .. })
    ));
}

#[test]
fn access_unit_delimiter_and_parameter_sets_before_idr() {
    let mut muxer = TsMuxer::new(true, false);
    let sei = [0x06, 0x05, 0x01, 0xaa, 0x80];
    let frames = [
        avc_sequence_header(0),
        avc_frame(0, true, 0, &[&sei, &idr(300)]),
        avc_frame(40, false, 0, &[&slice(200)]),
        // A keyframe that carries its own SPS and PPS and an AUD.
        avc_frame(80, true, 0, &[&[0x09, 0xf0], SPS, PPS, &idr(50)]),
    ];
    let out = mux(&mut muxer, &frames);
    let pes = pes_packets(&out, PID_VIDEO);
    assert_eq!(pes.len(), 3);
    let aud = [0, 0, 0, 1, 0x09, 0xf0];
    let want_key = [
        &aud[..],
        &annex_b(SPS),
        &annex_b(PPS),
        &annex_b(&sei),
        &annex_b(&idr(300)),
    ]
    .concat();
    assert_eq!(es(&pes[0]), &want_key[..]);
    assert_eq!(es(&pes[1]), &[&aud[..], &annex_b(&slice(200))].concat()[..]);
    // Not duplicated, and the frame's own AUD is replaced by ours.
    let want = [&aud[..], &annex_b(SPS), &annex_b(PPS), &annex_b(&idr(50))].concat();
    assert_eq!(es(&pes[2]), &want[..]);
}

#[test]
fn pes_headers_and_timestamps() {
    let mut muxer = TsMuxer::new(true, true);
    let frames = [
        avc_sequence_header(0),
        aac_sequence_header(),
        avc_frame(1000, true, 80, &[&idr(100)]),
        avc_frame(1040, false, 0, &[&slice(100)]),
        aac_frame(1010, 100),
    ];
    let out = mux(&mut muxer, &frames);
    let video = pes_packets(&out, PID_VIDEO);
    // Video: PES_packet_length 0, '10' + data_alignment, PTS and DTS,
    // header length 10; PTS 1080 ms = 97200, DTS 1000 ms = 90000.
    assert_eq!(
        &video[0][..19],
        &[
            0x00, 0x00, 0x01, 0xE0, 0x00, 0x00, 0x84, 0xC0, 0x0A, //
            0x31, 0x00, 0x05, 0xF7, 0x61, // PTS 97200 = 0x17BB0
            0x11, 0x00, 0x05, 0xBF, 0x21, // DTS 90000
        ]
    );
    // PTS == DTS: PTS only.
    assert_eq!(&video[1][6..9], &[0x84, 0x80, 0x05]);
    assert_eq!(video[1][9] >> 4, 0x2);
    // Audio: PES_packet_length = 3 + 5 + 7 (ADTS) + 100, PTS only.
    let audio = pes_packets(&out, PID_AUDIO);
    assert_eq!(
        &audio[0][..14],
        &[0x00, 0x00, 0x01, 0xC0, 0x00, 115, 0x84, 0x80, 0x05, 0x21, 0x00, 0x05, 0xC6, 0x29]
    );
    // ADTS: LC, 44.1 kHz, stereo, frame_length 107.
    assert_eq!(
        &es(&audio[0])[..7],
        &[0xFF, 0xF1, 0x50, 0x80, 0x0D, 0x7F, 0xFC]
    );
    assert_eq!(es(&audio[0]).len(), 107);
    let summary = check_packets(&out).unwrap();
    let v: Vec<_> = summary
        .pes_on(PID_VIDEO)
        .map(|p| (p.pts.map(Ts90k::value), p.dts.map(Ts90k::value)))
        .collect();
    assert_eq!(v, vec![(Some(97_200), Some(90_000)), (Some(93_600), None)]);
    let a = summary.pes_on(PID_AUDIO).next().unwrap();
    assert_eq!(
        (a.pts, a.dts, a.stream_id),
        (Some(Ts90k::from_ms(1010)), None, 0xC0)
    );
}

#[test]
fn pcr_and_random_access() {
    let mut muxer = TsMuxer::new(true, true);
    let out = mux(&mut muxer, &two_second_stream());
    let summary = check_packets(&out).unwrap();
    assert!(summary.pcrs.iter().all(|(pid, _)| *pid == PID_VIDEO));
    let pcrs: Vec<u64> = summary.pcrs.iter().map(|(_, p)| p.base.value()).collect();
    // First keyframe at 0, then every 120 ms (the first 40 ms frame at or
    // past 100 ms), and the second keyframe at 1000 ms.
    assert_eq!(&pcrs[..4], &[0, 120 * 90, 240 * 90, 360 * 90]);
    assert!(pcrs.contains(&(1000 * 90)));
    assert!(pcrs
        .windows(2)
        .all(|w| w[1] > w[0] && w[1] - w[0] <= 120 * 90));
    assert!(summary.pcrs.iter().all(|(_, p)| p.extension == 0));
    let keys: Vec<u64> = summary
        .pes_on(PID_VIDEO)
        .filter(|p| p.random_access)
        .map(|p| p.dts.unwrap().value())
        .collect();
    assert_eq!(keys, vec![0, 1000 * 90]);
    assert!(summary.pes_on(PID_AUDIO).all(|p| !p.random_access));
    // The keyframe's first packet: PUSI, AF with RAI and PCR.
    let key_at = summary.pes_on(PID_VIDEO).nth(25).unwrap().offset;
    assert_eq!(
        &out[key_at..key_at + 12],
        &[
            0x47,
            0x41,
            0x00,
            out[key_at + 3],
            0x07,
            0x50,
            0x00,
            0x00,
            0xAF,
            0xC8,
            0x7E,
            0x00
        ]
    );
    assert_eq!(out[key_at + 3] >> 4, 0x3);
}

#[test]
fn audio_only_has_no_video_pid() {
    let mut muxer = TsMuxer::new(false, true);
    let out = mux(&mut muxer, &two_second_stream());
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.streams.len(), 1);
    assert_eq!(summary.streams[0].pid, PID_AUDIO);
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_AAC_ADTS]);
    assert_eq!(summary.pcr_pid, Some(PID_AUDIO));
    assert!(!summary.packets_per_pid.contains_key(&PID_VIDEO));
    // PCRs ride on audio PES starts, at most 100 ms + one audio frame apart.
    assert!(summary.pcrs.len() >= 15);
    assert!(summary.pcrs.iter().all(|(pid, _)| *pid == PID_AUDIO));
    // Video-only: the mirror image.
    let mut muxer = TsMuxer::new(true, false);
    let out = mux(&mut muxer, &two_second_stream());
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_H264]);
    assert!(!summary.packets_per_pid.contains_key(&PID_AUDIO));
}

#[test]
fn refused_frames_write_nothing() {
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    // Coded frames before their sequence headers.
    assert_eq!(
        muxer.write_frame(&avc_frame(0, true, 0, &[&idr(10)]), &mut out),
        Err(TsError::MissingConfig {
            kind: FrameKind::Video
        })
    );
    assert_eq!(
        muxer.write_frame(&aac_frame(0, 10), &mut out),
        Err(TsError::MissingConfig {
            kind: FrameKind::Audio
        })
    );
    assert_eq!(
        muxer.write_frame(&avc_sequence_header(0), &mut out),
        Ok(false)
    );
    // A NAL length that runs past the frame.
    let body = Bytes::from_static(&[0x27, 0x01, 0, 0, 0, 0, 0, 0, 9, 0x41, 0x9a]);
    let bad = Frame::parse_video(40, body).unwrap();
    assert_eq!(
        muxer.write_frame(&bad, &mut out),
        Err(TsError::NalLengthOverrun {
            offset: 0,
            length: 9,
            available: 2
        })
    );
    // AV1, VP9 and Opus have no TS mapping here.
    let av1 = Frame::parse_video(
        0,
        Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0x12, 0x00]),
    )
    .unwrap();
    assert_eq!(
        muxer.write_frame(&av1, &mut out),
        Err(TsError::Unsupported {
            codec: Codec::Video(VideoCodec::Av1)
        })
    );
    let opus =
        Frame::parse_audio(0, Bytes::from_static(&[0x91, b'O', b'p', b'u', b's', 0xfc])).unwrap();
    let err = muxer.write_frame(&opus, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audio codec opus cannot be muxed into MPEG-TS"
    );
    // An AAC config ADTS cannot carry (explicit 44 kHz sampling rate).
    let odd = Frame::parse_audio(
        0,
        Bytes::from_static(&[0xaf, 0x00, 0x17, 0x80, 0x55, 0xf0, 0x10]),
    )
    .unwrap();
    assert_eq!(
        muxer.write_frame(&odd, &mut out),
        Err(TsError::AacConfig {
            object_type: 2,
            sample_rate: 44_000
        })
    );
    assert!(out.is_empty());
    // Data frames, end of sequence and empty frames write nothing either.
    let data = Frame::data(0, Bytes::from_static(b"\x02\x00\x0aonMetaData"));
    assert_eq!(muxer.write_frame(&data, &mut out), Ok(false));
    let eos = Frame::parse_video(0, Bytes::from_static(&[0x17, 0x02, 0, 0, 0])).unwrap();
    assert_eq!(muxer.write_frame(&eos, &mut out), Ok(false));
    let empty = Frame::parse_video(0, Bytes::from_static(&[0x27, 0x01, 0, 0, 0])).unwrap();
    assert_eq!(muxer.write_frame(&empty, &mut out), Ok(false));
    assert!(out.is_empty());
    // The muxer goes on after the refusals.
    assert_eq!(
        muxer.write_frame(&avc_frame(80, true, 0, &[&idr(10)]), &mut out),
        Ok(true)
    );
    // PAT and PMT (H.264 now) before it.
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_H264]);
}

/// The PMT lists exactly the published tracks: none before a sequence
/// header, AAC alone (with the PCR on it) for an audio-only publish on a
/// muxer made for both, and nothing again after a new publisher until its
/// sequence headers.
#[test]
fn the_pmt_lists_only_what_is_published() {
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    assert!(check_packets(&out).unwrap().stream_types().is_empty());
    out.clear();
    assert_eq!(
        muxer.write_frame(&aac_sequence_header(), &mut out),
        Ok(false)
    );
    assert_eq!(muxer.write_frame(&aac_frame(0, 10), &mut out), Ok(true));
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_AAC_ADTS]);
    assert_eq!(summary.pcr_pid, Some(PID_AUDIO));
    // Video joins.
    out.clear();
    muxer
        .write_frame(&avc_sequence_header(0), &mut out)
        .unwrap();
    muxer.write_psi(&mut out);
    let summary = check_packets(&out).unwrap();
    assert_eq!(
        summary.stream_types(),
        vec![STREAM_TYPE_H264, STREAM_TYPE_AAC_ADTS]
    );
    assert_eq!(summary.pcr_pid, Some(PID_VIDEO));
    // Opus has no TS mapping: refused, and not listed as anything.
    let opus_seq = Frame::parse_audio(
        0,
        Bytes::from_static(&[0x90, b'O', b'p', b'u', b's', b'O', b'p', b'u', b's']),
    )
    .unwrap();
    muxer.new_publisher();
    assert!(muxer.write_frame(&opus_seq, &mut out).is_err());
    out.clear();
    muxer.write_psi(&mut out);
    assert!(check_packets(&out).unwrap().stream_types().is_empty());
}

/// A publish of two codecs TS cannot carry (AV1 and Opus, frame after
/// frame) is reported once per codec, not once per frame; a new
/// publisher's refusals are reported again.
#[test]
fn refusals_are_reported_once_per_codec() {
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    let av1 =
        Frame::parse_video(0, Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0x0a])).unwrap();
    let opus =
        Frame::parse_audio(0, Bytes::from_static(&[0x91, b'O', b'p', b'u', b's', 0xfc])).unwrap();
    let mut reports = Vec::new();
    for _ in 0..5 {
        for f in [&av1, &opus] {
            let e = muxer.write_frame(f, &mut out).unwrap_err();
            muxer.note_refusal(&e);
            reports.extend(muxer.take_refusal());
        }
    }
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports[0].contains("video codec av1"), "{reports:?}");
    assert!(reports[1].contains("audio codec opus"), "{reports:?}");
    muxer.new_publisher();
    let e = muxer.write_frame(&opus, &mut out).unwrap_err();
    muxer.note_refusal(&e);
    assert!(
        muxer.take_refusal().is_some(),
        "a new publisher is told again"
    );
}

#[test]
fn hevc_and_pmt_version_bump() {
    // hvcC with 4-byte lengths and one VPS, SPS and PPS.
    let mut body = vec![0x1c, 0x00, 0, 0, 0]; // legacy HEVC (12) sequence header
    body.extend_from_slice(&[
        1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xf0, 0, 0xfc,
    ]);
    body.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]);
    body.extend_from_slice(&[0xa0, 0, 1, 0, 3, 0x40, 0x01, 0x0c]);
    body.extend_from_slice(&[0xa1, 0, 1, 0, 3, 0x42, 0x01, 0x01]);
    body.extend_from_slice(&[0xa2, 0, 1, 0, 3, 0x44, 0x01, 0xc1]);
    let seq = Frame::parse_video(0, Bytes::from(body)).unwrap();
    let key = Frame::parse_video(
        0,
        Bytes::from_static(&[0x1c, 0x01, 0, 0, 0, 0, 0, 0, 3, 0x26, 0x01, 0xaf]),
    )
    .unwrap();
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    assert_eq!(muxer.write_frame(&seq, &mut out), Ok(false));
    assert_eq!(
        out.len(),
        2 * PACKET_LEN,
        "a sequence header writes nothing"
    );
    assert_eq!(muxer.write_frame(&key, &mut out), Ok(true));
    // PAT and PMT again (version 1, H.265) before the frame.
    assert_eq!(out.len(), 5 * PACKET_LEN);
    assert_eq!(
        &out[3 * PACKET_LEN..3 * PACKET_LEN + 3],
        &[0x47, 0x50, 0x00]
    );
    assert_eq!(out[3 * PACKET_LEN + 10], 0xC3, "version_number 1");
    let summary = check_packets(&out).unwrap();
    // No audio sequence header came: the PMT lists the video alone.
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_H265]);
    let pes = pes_packets(&out, PID_VIDEO);
    let want = [
        &[0, 0, 0, 1, 0x46, 0x01, 0x50][..],
        &annex_b(&[0x40, 0x01, 0x0c]),
        &annex_b(&[0x42, 0x01, 0x01]),
        &annex_b(&[0x44, 0x01, 0xc1]),
        &annex_b(&[0x26, 0x01, 0xaf]),
    ]
    .concat();
    assert_eq!(es(&pes[0]), &want[..]);
    // A HEVC frame after an AVC sequence header is refused, not misread.
    let mut avc = TsMuxer::new(true, false);
    avc.write_frame(&avc_sequence_header(0), &mut Vec::new())
        .unwrap();
    assert_eq!(
        avc.write_frame(&key, &mut Vec::new()),
        Err(TsError::MissingConfig {
            kind: FrameKind::Video
        })
    );
}

/// RTMP timestamps wrap at 2^32 ms; the TS clock at 2^33 ticks. Frames
/// across the RTMP wrap give PTS values 40 ms apart across the TS wrap.
#[test]
fn timestamps_across_the_wrap() {
    let mut muxer = TsMuxer::new(true, false);
    let frames = [
        avc_sequence_header(0),
        avc_frame(u32::MAX - 19, true, 0, &[&idr(10)]),
        avc_frame(20, false, 0, &[&slice(10)]),
    ];
    let out = mux(&mut muxer, &frames);
    let summary = check_packets(&out).unwrap();
    let pts: Vec<Ts90k> = summary.pes.iter().map(|p| p.pts.unwrap()).collect();
    assert_eq!(pts[0].value(), (1 << 33) - 20 * 90);
    assert_eq!(pts[1].value(), 20 * 90);
    assert_eq!(pts[1].ticks_since(pts[0]), 40 * 90);
    // The PCR carried on the keyframe is past 2^32 and encodes bit 32.
    assert_eq!(summary.pcrs[0].1.base, pts[0]);
    // PCR due again 40 ms later? No: not 100 ms yet, across the wrap.
    assert_eq!(summary.pcrs.len(), 1);
}

#[test]
fn mp3_passes_through() {
    let mut muxer = TsMuxer::new(false, true);
    let mp3 =
        Frame::parse_audio(0, Bytes::from_static(&[0x2f, 0xff, 0xfb, 0x90, 0x64, 0x00])).unwrap();
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    assert_eq!(muxer.write_frame(&mp3, &mut out), Ok(true));
    let summary = check_packets(&out).unwrap();
    assert_eq!(summary.stream_types(), vec![STREAM_TYPE_MPEG1_AUDIO]);
    let pes = pes_packets(&out, PID_AUDIO);
    assert_eq!(es(&pes[0]), &[0xff, 0xfb, 0x90, 0x64, 0x00]);
}

/// Pseudo-random frames never panic the muxer, and pseudo-random packets
/// never panic the checker.
#[test]
fn no_panic_on_noise() {
    let mut state: u32 = 0x9e37_79b9;
    let mut rand = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8
    };
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    muxer
        .write_frame(&avc_sequence_header(0), &mut out)
        .unwrap();
    muxer.write_frame(&aac_sequence_header(), &mut out).unwrap();
    for i in 0..20_000u32 {
        let len = usize::from(rand() % 40);
        let mut body: Vec<u8> = (0..len).map(|_| rand()).collect();
        if let Some(b) = body.first_mut() {
            // Mostly AVC/AAC headers, so the muxer gets past them.
            match i % 3 {
                0 => *b = 0x17,
                1 => *b = 0xaf,
                _ => {}
            }
        }
        let body = Bytes::from(body);
        for frame in [
            Frame::parse_video(i, body.clone()),
            Frame::parse_audio(i, body),
        ]
        .into_iter()
        .flatten()
        {
            let _ = muxer.write_frame(&frame, &mut out);
        }
    }
    assert_eq!(out.len() % PACKET_LEN, 0);
    // Whatever was accepted is a valid stream.
    check_packets(&out).unwrap();

    for _ in 0..2_000 {
        let mut packet: Vec<u8> = (0..PACKET_LEN * 3).map(|_| rand()).collect();
        for p in packet.chunks_mut(PACKET_LEN) {
            p[0] = SYNC_BYTE;
            p[1] &= 0x5f;
        }
        let _ = check_packets(&packet);
    }
}

/// Manual check against ffmpeg (not run by default):
///
/// ```text
/// ffmpeg -f lavfi -i testsrc2=size=320x240:rate=30 -f lavfi -i sine -t 2 \
///     -c:v libx264 -g 30 -c:a aac -f flv /tmp/t.flv
/// SHARDCAST_FLV_IN=/tmp/t.flv SHARDCAST_TS_OUT=/tmp/t.ts \
///     cargo test --lib ts::tests::mux_flv_file -- --ignored
/// ffprobe -v error -show_streams /tmp/t.ts; ffmpeg -v error -i /tmp/t.ts -f null -
/// ```
#[test]
#[ignore = "needs an FLV file named by SHARDCAST_FLV_IN"]
fn mux_flv_file() {
    use crate::flv::{parse_file_header, parse_tag, Parse};
    let input = std::env::var("SHARDCAST_FLV_IN").unwrap();
    let output = std::env::var("SHARDCAST_TS_OUT").unwrap();
    let buf = Bytes::from(std::fs::read(input).unwrap());
    let Parse::Complete { mut consumed, .. } = parse_file_header(&buf) else {
        panic!("not an FLV file");
    };
    let mut muxer = TsMuxer::new(true, true);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    let mut written = 0;
    while let Parse::Complete { value, consumed: n } = parse_tag(&buf.slice(consumed..)) {
        consumed += n;
        if let Ok(frame) = value.to_frame() {
            if muxer.write_frame(&frame, &mut out).unwrap() {
                written += 1;
            }
        }
    }
    assert_eq!(consumed, buf.len());
    let summary = check_packets(&out).unwrap();
    eprintln!(
        "{written} frames, {} packets, streams {:?}",
        summary.packets, summary.streams
    );
    std::fs::write(output, &out).unwrap();
}
