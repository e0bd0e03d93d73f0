//! One answer to "what is this stream": the parameters of a video or audio
//! track (codec, size, profile, level, bit depth, sample rate, channels)
//! and its RFC 6381 CODECS string, from the sequence header of any codec
//! shardcast carries, or from the first frame where the configuration
//! record lacks them (VP9 and AV1 picture sizes, MP3 which has no
//! sequence header at all).
//!
//! Defined by: RFC 6381 3 (the codecs parameter) and the bindings each
//! codec module cites; Apple HLS Authoring Specification (CODECS values).

use super::{
    av1, find_sequence_header, mp3, parse_aac_config, parse_av1_config, parse_av1_sequence_header,
    parse_avc_config, parse_hevc_config, parse_mp3_header, parse_opus_head, parse_vp9_config, vp9,
    vp9_keyframe_size, AudioCodec, Frame, MediaError, VideoCodec, OPUS_SAMPLE_RATE,
};

/// A video track's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoParams {
    pub codec: VideoCodec,
    /// Display size; None until known (VP9 and some AV1 records need a
    /// keyframe: [`fill_size_from_keyframe`]).
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// As the codec's spec names it: `High`, `Main 10`, `0`.
    pub profile: String,
    /// As the codec's spec writes it: `3.1`, `4 High`, `2.0`.
    pub level: String,
    pub bit_depth: Option<u8>,
    /// RFC 6381: `avc1.64001f`, `hvc1.1.6.L93.B0`, `av01.0.08M.08`,
    /// `vp09.00.10.08`.
    pub codecs: String,
}

/// An audio track's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioParams {
    pub codec: AudioCodec,
    /// The decoder's output rate (48 kHz for Opus).
    pub sample_rate: u32,
    pub channels: u8,
    /// RFC 6381: `mp4a.40.2`, `opus`, `mp4a.40.34`.
    pub codecs: String,
}

/// H.264 profile names (ISO 14496-10 Annex A), constraint_set1 making
/// Baseline "Constrained Baseline".
fn avc_profile_name(profile_idc: u8, compat: u8) -> String {
    match profile_idc {
        66 if compat & 0x40 != 0 => "Constrained Baseline".into(),
        66 => "Baseline".into(),
        77 => "Main".into(),
        88 => "Extended".into(),
        100 => "High".into(),
        110 => "High 10".into(),
        122 => "High 4:2:2".into(),
        244 => "High 4:4:4 Predictive".into(),
        other => other.to_string(),
    }
}

/// H.264 level_idc as written: 31 is `3.1`, 9 is `1b`.
fn avc_level_name(level_idc: u8) -> String {
    match (level_idc, level_idc % 10) {
        (9, _) => "1b".into(),
        (l, 0) => (l / 10).to_string(),
        (l, minor) => format!("{}.{minor}", l / 10),
    }
}

/// The parameters a video sequence header tells. `Ok(None)` for one that
/// tells nothing yet (libaom's empty `av01` record); an error for a
/// malformed record or a codec without a parser here.
pub fn video_params(frame: &Frame) -> Result<Option<VideoParams>, MediaError> {
    let codec = frame.video_codec.ok_or(MediaError::Invalid {
        what: "video sequence header codec (none named)",
        value: 0,
        offset: 0,
    })?;
    let record = frame.codec_data()?;
    let params = match codec {
        VideoCodec::Avc => {
            let c = parse_avc_config(&record)?;
            let bit_depth = c
                .sps
                .first()
                .and_then(|s| super::parse_sps(s).ok())
                .map(|s| s.bit_depth_luma as u8);
            VideoParams {
                codec,
                width: c.width,
                height: c.height,
                profile: avc_profile_name(c.profile, c.compat),
                level: avc_level_name(c.level),
                bit_depth,
                codecs: format!("avc1.{:02x}{:02x}{:02x}", c.profile, c.compat, c.level),
            }
        }
        VideoCodec::Hevc => {
            let c = parse_hevc_config(&record)?;
            VideoParams {
                codec,
                width: c.width,
                height: c.height,
                profile: c.profile_name(),
                level: c.level_name(),
                bit_depth: Some(c.bit_depth_luma),
                codecs: c.codecs(),
            }
        }
        VideoCodec::Av1 => {
            let Some(c) = parse_av1_config(&record)? else {
                return Ok(None);
            };
            let tier = if c.seq_tier_0 { " High" } else { "" };
            VideoParams {
                codec,
                width: c.sequence_header.map(|s| s.max_frame_width),
                height: c.sequence_header.map(|s| s.max_frame_height),
                profile: av1::profile_name(c.seq_profile),
                level: format!("{}{tier}", av1::level_name(c.seq_level_idx_0)),
                bit_depth: Some(c.bit_depth()),
                codecs: c.codecs(),
            }
        }
        VideoCodec::Vp9 => {
            let c = parse_vp9_config(&record)?;
            VideoParams {
                codec,
                width: None,
                height: None,
                profile: c.profile.to_string(),
                level: c.level_name(),
                bit_depth: Some(c.bit_depth),
                codecs: c.codecs(),
            }
        }
        VideoCodec::Other { raw } => {
            return Err(MediaError::Invalid {
                what: "video codec without a configuration parser",
                value: u64::from(raw),
                offset: 0,
            })
        }
    };
    Ok(Some(params))
}

/// The picture size of a keyframe, where its codec puts one in every
/// keyframe: VP9's uncompressed header, AV1's sequence header OBU. None
/// for other codecs and frames that carry none.
pub fn keyframe_size(frame: &Frame) -> Option<(u32, u32)> {
    if !frame.keyframe {
        return None;
    }
    let data = frame.codec_data().ok()?;
    match frame.video_codec? {
        VideoCodec::Vp9 => vp9_keyframe_size(&data)
            .ok()
            .flatten()
            .map(|k: vp9::Vp9Keyframe| (k.width, k.height)),
        VideoCodec::Av1 => {
            let seq = find_sequence_header(&data).ok().flatten()?;
            parse_av1_sequence_header(seq)
                .ok()
                .map(|s| (s.max_frame_width, s.max_frame_height))
        }
        _ => None,
    }
}

/// Fills in a missing size from a keyframe ([`keyframe_size`]); true if
/// it did.
pub fn fill_size_from_keyframe(params: &mut VideoParams, keyframe: &Frame) -> bool {
    if params.width.is_some() && params.height.is_some() {
        return false;
    }
    match keyframe_size(keyframe) {
        Some((w, h)) => {
            params.width = Some(w);
            params.height = Some(h);
            true
        }
        None => false,
    }
}

/// The CODECS value of MP3. RFC 6381 would give `mp4a.6B` (the MPEG-1
/// audio objectTypeIndication in hex), but Apple's HLS Authoring
/// Specification lists `mp4a.40.34` (MPEG-4 audio object type 34,
/// Layer III) for MP3, and HLS playlists are where shardcast writes
/// CODECS; ffmpeg's HLS muxer writes the same. Browsers' MSE accepts both.
pub const MP3_CODECS: &str = "mp4a.40.34";

/// The parameters an audio sequence header tells: AAC's
/// AudioSpecificConfig or Opus's OpusHead. MP3 has none: see
/// [`mp3_frame_params`].
pub fn audio_params(frame: &Frame) -> Result<AudioParams, MediaError> {
    let codec = frame.audio_codec.ok_or(MediaError::Invalid {
        what: "audio codec (none named)",
        value: 0,
        offset: 0,
    })?;
    let data = frame.codec_data()?;
    match codec {
        AudioCodec::Aac => {
            let c = parse_aac_config(&data)?;
            Ok(AudioParams {
                codec,
                sample_rate: c.sample_rate,
                channels: c.channels,
                codecs: format!("mp4a.40.{}", c.object_type),
            })
        }
        AudioCodec::Opus => {
            let h = parse_opus_head(&data)?;
            Ok(AudioParams {
                codec,
                sample_rate: OPUS_SAMPLE_RATE,
                channels: h.channels,
                codecs: "opus".into(),
            })
        }
        AudioCodec::Mp3 => mp3_frame_params(frame),
        AudioCodec::Other { raw } => Err(MediaError::Invalid {
            what: "audio codec without a configuration parser",
            value: u64::from(raw),
            offset: 0,
        }),
    }
}

/// The parameters of an MP3 stream from one of its coded frames (legacy
/// FLV SoundFormat 2 or 14, or E-RTMP `.mp3`).
pub fn mp3_frame_params(frame: &Frame) -> Result<AudioParams, MediaError> {
    let h: mp3::Mp3Header = parse_mp3_header(&frame.codec_data()?)?;
    Ok(AudioParams {
        codec: AudioCodec::Mp3,
        sample_rate: h.sample_rate,
        channels: h.channels,
        codecs: MP3_CODECS.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, audio, video};

    #[test]
    fn every_video_codec() {
        let hevc = video_params(&video(0, vectors::HEVC_SEQ)).unwrap().unwrap();
        assert_eq!(hevc.codecs, "hvc1.1.6.L60.90");
        assert_eq!(
            (hevc.width, hevc.height, hevc.bit_depth),
            (Some(320), Some(240), Some(8))
        );
        assert_eq!((hevc.profile.as_str(), hevc.level.as_str()), ("Main", "2"));

        let av1 = video_params(&video(0, vectors::AV1_SVT_SEQ))
            .unwrap()
            .unwrap();
        assert_eq!(av1.codecs, "av01.0.00M.08");
        assert_eq!((av1.width, av1.height), (Some(320), Some(240)));
        assert_eq!((av1.profile.as_str(), av1.level.as_str()), ("Main", "2.0"));
        assert_eq!(
            video_params(&video(0, vectors::AV1_AOM_EMPTY_SEQ)),
            Ok(None)
        );

        let mut vp9 = video_params(&video(0, vectors::VP9_SEQ)).unwrap().unwrap();
        assert_eq!(vp9.codecs, "vp09.00.20.08");
        assert_eq!((vp9.width, vp9.height), (None, None));
        assert!(!fill_size_from_keyframe(
            &mut vp9,
            &video(0, vectors::VP9_SEQ)
        ));
        assert!(fill_size_from_keyframe(
            &mut vp9,
            &video(0, vectors::VP9_KEY)
        ));
        assert_eq!((vp9.width, vp9.height), (Some(320), Some(240)));
        assert!(!fill_size_from_keyframe(
            &mut vp9,
            &video(0, vectors::VP9_KEY)
        ));
        assert_eq!(
            keyframe_size(&video(0, vectors::AV1_SVT_KEY)),
            Some((320, 240))
        );

        // ffmpeg's HLS muxer writes avc1.64000d for this x264 stream.
        let avc = crate::rtmp::test_util::hex(
            "1700000000 0164000dffe100196764000dacd94141fb0110000003001000000303c0f142996001000668ebe3cb22c0fdf8f800",
        );
        let avc = video_params(&Frame::parse_video(0, avc.into()).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(avc.codecs, "avc1.64000d");
        assert_eq!(
            (avc.width, avc.height, avc.bit_depth),
            (Some(320), Some(240), Some(8))
        );
        assert_eq!((avc.profile.as_str(), avc.level.as_str()), ("High", "1.3"));
    }

    #[test]
    fn every_audio_codec() {
        let opus = audio_params(&audio(0, vectors::OPUS_MONO_SEQ)).unwrap();
        assert_eq!(
            (opus.sample_rate, opus.channels, opus.codecs.as_str()),
            (48_000, 1, "opus")
        );
        let opus = audio_params(&audio(0, vectors::OPUS_51_SEQ)).unwrap();
        assert_eq!(opus.channels, 6);
        let mp3 = mp3_frame_params(&audio(0, vectors::MP3_44100_FRAME)).unwrap();
        assert_eq!(
            (mp3.sample_rate, mp3.channels, mp3.codecs.as_str()),
            (44_100, 2, "mp4a.40.34")
        );
        let mp3 = audio_params(&audio(0, vectors::MP3_22050_FRAME)).unwrap();
        assert_eq!((mp3.sample_rate, mp3.channels), (22_050, 1));
        let aac =
            Frame::parse_audio(0, bytes::Bytes::from_static(&[0xaf, 0x00, 0x12, 0x10])).unwrap();
        let aac = audio_params(&aac).unwrap();
        assert_eq!(
            (aac.sample_rate, aac.channels, aac.codecs.as_str()),
            (44_100, 2, "mp4a.40.2")
        );
        assert!(audio_params(&audio(0, "9066 4c 61 43 00")).is_err());
    }
}
