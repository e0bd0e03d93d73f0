//! Codec configuration records from sequence headers: the AVC
//! AVCDecoderConfigurationRecord and its SPS, the AAC AudioSpecificConfig,
//! and the HEVCDecoderConfigurationRecord (read by the TS muxer, so it is
//! reached through `TsMuxer::write_frame` with a sequence header and then a
//! keyframe), and the enhanced-RTMP records and frame headers: HEVC SPS,
//! AV1 av1C and sequence header OBUs, VP9 vpcC and keyframe headers,
//! OpusHead, MP3 frame headers, and the fMP4 muxer's sample entries made
//! from them. The first byte picks the record.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto::hls::{Fmp4Muxer, SegmentMuxer};
use proto::media::{
    find_sequence_header, parse_aac_config, parse_av1_config, parse_av1_sequence_header,
    parse_avc_config, parse_hevc_config, parse_hevc_sps, parse_mp3_header, parse_opus_head,
    parse_sps, parse_vp9_config, vp9_keyframe_size, Frame,
};
use proto::ts::TsMuxer;

/// Wraps `record` in an FLV tag body (`prefix`), muxes it, then `after`.
fn mux(prefix: &[u8], record: &[u8], after: &'static [u8], video: bool) {
    let mut body = prefix.to_vec();
    body.extend_from_slice(record);
    let parse = if video {
        Frame::parse_video
    } else {
        Frame::parse_audio
    };
    let Ok(seq) = parse(0, Bytes::from(body)) else {
        return;
    };
    let mut muxer = TsMuxer::new(video, !video);
    let mut out = Vec::new();
    muxer.write_psi(&mut out);
    if muxer.write_frame(&seq, &mut out).is_err() {
        return;
    }
    if let Ok(next) = parse(40, Bytes::from_static(after)) {
        let _ = muxer.write_frame(&next, &mut out);
    }
    assert_eq!(out.len() % 188, 0, "whole transport packets");
}

/// `body` as a video and as an audio tag through an fMP4 muxer.
fn fmp4(body: &[u8]) {
    for parse in [Frame::parse_video, Frame::parse_audio] {
        let Ok(frame) = parse(0, Bytes::copy_from_slice(body)) else {
            continue;
        };
        let mut muxer = Fmp4Muxer::new();
        let mut out = Vec::new();
        muxer.learn(&frame);
        muxer.write_frame(&frame, &mut out);
        let _ = muxer.take_init();
        muxer.end_chunk(&mut out);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, record)) = data.split_first() else {
        return;
    };
    match sel % 12 {
        0 => {
            if let Ok(config) = parse_avc_config(record) {
                for sps in &config.sps {
                    let _ = parse_sps(sps);
                }
            }
        }
        1 => {
            let _ = parse_sps(record);
        }
        2 => {
            if let Ok(asc) = parse_aac_config(record) {
                let _ = asc.sample_rate_index();
                let _ = asc.channel_configuration();
            }
        }
        // Legacy HEVC (codec id 12) sequence header, then an IDR slice.
        3 => mux(
            &[0x1c, 0x00, 0, 0, 0],
            record,
            &[0x1c, 0x01, 0, 0, 0, 0, 0, 0, 3, 0x26, 0x01, 0xaf],
            true,
        ),
        // AVC sequence header, then an IDR slice.
        4 => mux(
            &[0x17, 0x00, 0, 0, 0],
            record,
            &[0x17, 0x01, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88],
            true,
        ),
        6 => {
            if let Ok(c) = parse_hevc_config(record) {
                let _ = c.codecs();
            }
            let _ = parse_hevc_sps(record);
        }
        7 => {
            if let Ok(Some(c)) = parse_av1_config(record) {
                let _ = c.codecs();
            }
            if let Ok(Some(obu)) = find_sequence_header(record) {
                let _ = parse_av1_sequence_header(obu);
            }
        }
        8 => {
            if let Ok(c) = parse_vp9_config(record) {
                let _ = c.codecs();
            }
            let _ = vp9_keyframe_size(record);
        }
        9 => {
            if let Ok(h) = parse_opus_head(record) {
                let _ = h.dops_payload();
            }
            let _ = parse_mp3_header(record);
        }
        // Any tag body through the fMP4 muxer: its sample entries and
        // init segment from whatever sequence header or frame it is.
        10 => fmp4(record),
        // AAC sequence header, then a raw frame (ADTS header from the config).
        _ => mux(
            &[0xaf, 0x00],
            record,
            &[0xaf, 0x01, 0x21, 0x10, 0x04, 0x60],
            false,
        ),
    }
});
