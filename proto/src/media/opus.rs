//! Opus decoder configuration: the ID header (`OpusHead`) an E-RTMP
//! `Opus` SequenceStart carries, and the `dOps` box payload built from it.
//!
//! Defined by: RFC 7845 5.1 (Identification Header) and 5.1.1 (channel
//! mapping families); Encapsulation of Opus in ISO Base Media File Format
//! v0.6.8 4.3.2 (Opus Specific Box, `dOps`).

use bytes::Bytes;

use super::bits::ByteReader;
use super::MediaError;

/// Opus always decodes at 48 kHz, whatever the input rate was (RFC 7845
/// 5.1, "Input Sample Rate").
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
const MAGIC: &[u8; 8] = b"OpusHead";
/// Versions with major version 0 (the top four bits) are this format.
const VERSION_MAJOR_MASK: u8 = 0xf0;
/// Mapping family 1 allows 1 to 8 channels (5.1.1.2).
const FAMILY_1_CHANNELS_MAX: u8 = 8;

/// An Opus identification header (RFC 7845 5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusHead {
    pub version: u8,
    pub channels: u8,
    /// Samples at 48 kHz to drop from the start of the decoded output.
    pub pre_skip: u16,
    /// The encoder's input rate, for information only (0 unknown).
    pub input_sample_rate: u32,
    /// Q7.8 dB.
    pub output_gain: i16,
    pub mapping_family: u8,
    /// For family != 0: streams, coupled streams and the mapping of each
    /// output channel.
    pub stream_count: u8,
    pub coupled_count: u8,
    pub channel_mapping: Vec<u8>,
}

/// Parses an OpusHead (little-endian fields, RFC 7845 5.1).
pub fn parse_opus_head(data: &[u8]) -> Result<OpusHead, MediaError> {
    let mut r = ByteReader::new(data);
    if r.take(MAGIC.len(), "OpusHead magic")? != MAGIC {
        return Err(MediaError::Invalid {
            what: "OpusHead magic signature",
            value: 0,
            offset: 0,
        });
    }
    let version_at = r.pos();
    let version = r.u8("OpusHead version")?;
    if version & VERSION_MAJOR_MASK != 0 {
        return Err(MediaError::Invalid {
            what: "OpusHead version (major version 0)",
            value: u64::from(version),
            offset: version_at,
        });
    }
    let channels_at = r.pos();
    let channels = r.u8("Output Channel Count")?;
    let pre_skip = u16::from_le_bytes(le::<2>(&mut r, "Pre-skip")?);
    let input_sample_rate = u32::from_le_bytes(le::<4>(&mut r, "Input Sample Rate")?);
    let output_gain = i16::from_le_bytes(le::<2>(&mut r, "Output Gain")?);
    let mapping_family = r.u8("Channel Mapping Family")?;
    let bad_channels = MediaError::Invalid {
        what: "Output Channel Count for the mapping family",
        value: u64::from(channels),
        offset: channels_at,
    };
    let mut head = OpusHead {
        version,
        channels,
        pre_skip,
        input_sample_rate,
        output_gain,
        mapping_family,
        stream_count: 1,
        coupled_count: u8::from(channels == 2),
        channel_mapping: Vec::new(),
    };
    match mapping_family {
        0 if !(1..=2).contains(&channels) => return Err(bad_channels),
        0 => return Ok(head),
        1 if !(1..=FAMILY_1_CHANNELS_MAX).contains(&channels) => return Err(bad_channels),
        _ if channels == 0 => return Err(bad_channels),
        _ => {}
    }
    let streams_at = r.pos();
    head.stream_count = r.u8("Stream Count")?;
    head.coupled_count = r.u8("Coupled Count")?;
    if head.stream_count == 0 || head.coupled_count > head.stream_count {
        return Err(MediaError::Invalid {
            what: "Stream Count (at least 1, at least Coupled Count)",
            value: u64::from(head.stream_count),
            offset: streams_at,
        });
    }
    let mapping_at = r.pos();
    head.channel_mapping = r.take(usize::from(channels), "Channel Mapping")?.to_vec();
    // Each entry names a decoded channel, or 255 for silence (5.1.1).
    let decoded = u16::from(head.stream_count) + u16::from(head.coupled_count);
    if let Some(i) = head
        .channel_mapping
        .iter()
        .position(|&c| c != 255 && u16::from(c) >= decoded)
    {
        return Err(MediaError::Invalid {
            what: "Channel Mapping entry",
            value: u64::from(head.channel_mapping[i]),
            offset: mapping_at + i,
        });
    }
    Ok(head)
}

fn le<const N: usize>(r: &mut ByteReader<'_>, what: &'static str) -> Result<[u8; N], MediaError> {
    let mut out = [0u8; N];
    out.copy_from_slice(r.take(N, what)?);
    Ok(out)
}

impl OpusHead {
    /// The `dOps` box payload (Opus in ISOBMFF 4.3.2): Version 0, then the
    /// head's fields big-endian (OpusHead's are little-endian), the
    /// mapping table only for family != 0.
    pub fn dops_payload(&self) -> Bytes {
        let mut out = Vec::with_capacity(11 + 2 + self.channel_mapping.len());
        out.push(0); // Version
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        out.push(self.mapping_family);
        if self.mapping_family != 0 {
            out.push(self.stream_count);
            out.push(self.coupled_count);
            out.extend_from_slice(&self.channel_mapping);
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::vectors::{self, data};

    fn head(body: &str) -> OpusHead {
        parse_opus_head(&data(&vectors::audio(0, body))).unwrap()
    }

    /// libopus mono and stereo: version 1, pre-skip 312 (0x0138), input
    /// rate 48000, gain 0, family 0. ffmpeg reports "opus, 48000 Hz, mono"
    /// and "stereo".
    #[test]
    fn libopus_mono_and_stereo() {
        let mono = head(vectors::OPUS_MONO_SEQ);
        assert_eq!(
            (
                mono.version,
                mono.channels,
                mono.pre_skip,
                mono.input_sample_rate
            ),
            (1, 1, 312, 48_000)
        );
        assert_eq!((mono.output_gain, mono.mapping_family), (0, 0));
        let stereo = head(vectors::OPUS_STEREO_SEQ);
        assert_eq!(stereo.channels, 2);
        assert_eq!(
            stereo.dops_payload().as_ref(),
            &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
        );
    }

    /// libopus 5.1: family 1, 4 streams, 2 coupled, Vorbis order mapping.
    #[test]
    fn libopus_5_1() {
        let h = head(vectors::OPUS_51_SEQ);
        assert_eq!((h.channels, h.mapping_family), (6, 1));
        assert_eq!((h.stream_count, h.coupled_count), (4, 2));
        assert_eq!(h.channel_mapping, vec![0, 4, 1, 2, 3, 5]);
        let dops = h.dops_payload();
        assert_eq!(dops.len(), 11 + 2 + 6);
        assert_eq!(&dops[10..], &[1, 4, 2, 0, 4, 1, 2, 3, 5]);
    }

    #[test]
    fn gain_is_big_endian_in_dops() {
        let mut h = head(vectors::OPUS_STEREO_SEQ);
        h.output_gain = -256; // -1 dB, 0xFF00
        assert_eq!(&h.dops_payload()[8..10], &[0xff, 0x00]);
    }

    #[test]
    fn errors_and_prefixes() {
        let good = data(&vectors::audio(0, vectors::OPUS_51_SEQ));
        for end in 0..good.len() {
            assert!(parse_opus_head(&good[..end]).is_err(), "{end}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            parse_opus_head(&bad),
            Err(MediaError::Invalid { offset: 0, .. })
        ));
        let mut v16 = good.clone();
        v16[8] = 0x10;
        assert!(matches!(
            parse_opus_head(&v16),
            Err(MediaError::Invalid { offset: 8, .. })
        ));
        let mut mapping = good.clone();
        mapping[21 + 5] = 6; // only 6 decoded channels: 0..=5
        assert!(matches!(
            parse_opus_head(&mapping),
            Err(MediaError::Invalid {
                what: "Channel Mapping entry",
                offset: 26,
                ..
            })
        ));
        let stereo = data(&vectors::audio(0, vectors::OPUS_STEREO_SEQ));
        let mut three = stereo.clone();
        three[9] = 3; // family 0 with 3 channels
        assert!(parse_opus_head(&three).is_err());
    }
}
