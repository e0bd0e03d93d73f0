//! AAC decoder configuration: the AudioSpecificConfig an RTMP AAC sequence
//! header carries.
//!
//! Defined by: ISO/IEC 14496-3 1.6.2.1 (AudioSpecificConfig), 1.6.3.3
//! (samplingFrequencyIndex, Table 1.18) and 1.6.3.4 (channelConfiguration,
//! Table 1.19).

use super::bits::BitReader;
use super::MediaError;

/// The core AAC configuration, as an ADTS/TS muxer needs it.
///
/// For HE-AAC (v1 and v2) with explicit signalling (object type 5 or 29 in
/// the config) these are the core layer's values: `object_type` is the
/// underlying type (normally 2, AAC LC) and `sample_rate` the core rate,
/// which is what ADTS headers carry; the decoder doubles it with SBR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// audioObjectType: 1 main, 2 LC, 3 SSR, 4 LTP, ... (Table 1.17).
    pub object_type: u8,
    /// Sampling frequency in Hz.
    pub sample_rate: u32,
    /// Number of channels (Table 1.19); 0 when the channel layout is given
    /// by a program_config_element (channelConfiguration 0).
    pub channels: u8,
}

/// samplingFrequencyIndex to Hz (Table 1.18); 13 and 14 are reserved, 15
/// means an explicit 24-bit frequency follows.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];
const SAMPLE_RATE_INDEX_ESCAPE: u32 = 15;

/// Object types that signal SBR (5) and PS (29) explicitly, followed by the
/// extension sampling frequency and the underlying object type.
const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;
/// ER BSAC carries an extension channel configuration after the SBR fields.
const AOT_ER_BSAC: u8 = 22;

impl AacConfig {
    /// The samplingFrequencyIndex for this rate, if the table has it (ADTS
    /// cannot carry the explicit-frequency escape).
    pub fn sample_rate_index(&self) -> Option<u8> {
        SAMPLE_RATES
            .iter()
            .position(|&r| r == self.sample_rate)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// The channelConfiguration an ADTS header (3 bits) would carry: the
    /// count itself for 1..=6, 7 for eight channels (7.1), else 0 (layout
    /// given in-band).
    pub fn channel_configuration(&self) -> u8 {
        match self.channels {
            1..=6 => self.channels,
            8 => 7,
            _ => 0,
        }
    }
}

/// GetAudioObjectType() (1.6.2.1.1): 5 bits, escaped to 32 + 6 bits by 31.
fn object_type(r: &mut BitReader<'_>) -> Result<u8, MediaError> {
    let aot = r.bits(5, "audioObjectType")? as u8;
    if aot == 31 {
        Ok(32 + r.bits(6, "audioObjectTypeExt")? as u8)
    } else {
        Ok(aot)
    }
}

/// samplingFrequencyIndex, or the explicit frequency after index 15.
fn sample_rate(r: &mut BitReader<'_>, what: &'static str) -> Result<u32, MediaError> {
    let at = r.byte_pos();
    let index = r.bits(4, what)?;
    if index == SAMPLE_RATE_INDEX_ESCAPE {
        let at = r.byte_pos();
        let hz = r.bits(24, "samplingFrequency")?;
        if hz == 0 {
            return Err(MediaError::Invalid {
                what: "samplingFrequency",
                value: 0,
                offset: at,
            });
        }
        return Ok(hz);
    }
    SAMPLE_RATES
        .get(index as usize)
        .copied()
        .ok_or(MediaError::Invalid {
            what,
            value: u64::from(index),
            offset: at,
        })
}

/// Parses an AudioSpecificConfig (the body of an AAC sequence header)
/// through the fields that describe the stream.
pub fn parse_aac_config(asc: &[u8]) -> Result<AacConfig, MediaError> {
    let mut r = BitReader::new(asc);
    let mut object = object_type(&mut r)?;
    let rate = sample_rate(&mut r, "samplingFrequencyIndex")?;
    let config_at = r.byte_pos();
    let config = r.bits(4, "channelConfiguration")?;
    let channels = match config {
        0..=6 => config as u8,
        7 => 8,
        11 => 7,
        12 => 8,
        13 => 24,
        14 => 8,
        reserved => {
            return Err(MediaError::Invalid {
                what: "channelConfiguration",
                value: u64::from(reserved),
                offset: config_at,
            })
        }
    };
    if object == AOT_SBR || object == AOT_PS {
        sample_rate(&mut r, "extensionSamplingFrequencyIndex")?;
        object = object_type(&mut r)?;
        if object == AOT_ER_BSAC {
            r.bits(4, "extensionChannelConfiguration")?;
        }
    }
    if object == 0 {
        return Err(MediaError::Invalid {
            what: "audioObjectType",
            value: 0,
            offset: 0,
        });
    }
    Ok(AacConfig {
        object_type: object,
        sample_rate: rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lc_44100_stereo() {
        // 00010 0100 0010 000: LC, 44.1 kHz, stereo (what ffmpeg and OBS send).
        let c = parse_aac_config(&[0x12, 0x10]).unwrap();
        assert_eq!(
            c,
            AacConfig {
                object_type: 2,
                sample_rate: 44100,
                channels: 2
            }
        );
        assert_eq!(c.sample_rate_index(), Some(4));
        assert_eq!(c.channel_configuration(), 2);
    }

    #[test]
    fn lc_48000_mono_and_51() {
        // 00010 0011 0001 000: LC, 48 kHz, mono.
        let c = parse_aac_config(&[0x11, 0x88]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 1));
        // 00010 0011 0110 000: LC, 48 kHz, 5.1.
        let c = parse_aac_config(&[0x11, 0xb0]).unwrap();
        assert_eq!(c.channels, 6);
        // 00010 0011 0111 000: 7.1 is eight channels, ADTS config 7.
        let c = parse_aac_config(&[0x11, 0xb8]).unwrap();
        assert_eq!((c.channels, c.channel_configuration()), (8, 7));
    }

    #[test]
    fn escape_sample_rate() {
        // 00010 1111 <24 bits: 44056> 0010 000: LC at an odd 44056 Hz.
        // 44056 = 0x00AC18.
        // bits: 00010111 1|0000000 0|1010110 0|0001100 0|0010000
        let c = parse_aac_config(&[0x17, 0x80, 0x56, 0x0c, 0x10]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 44056, 2));
        assert_eq!(c.sample_rate_index(), None);
        // Escape with too few bits.
        assert!(matches!(
            parse_aac_config(&[0x17, 0x80]),
            Err(MediaError::Truncated {
                what: "samplingFrequency",
                ..
            })
        ));
    }

    #[test]
    fn he_aac_explicit_signalling() {
        // 00101 0110 0010 0011 00010 ...: SBR (5), core 24 kHz, stereo,
        // extension 48 kHz, underlying LC.
        // bits: 00101011 00010001 10001000
        let c = parse_aac_config(&[0x2b, 0x11, 0x88]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 24000, 2));
        // HE-AAC v2 (29 = 11101), core 24 kHz, mono, extension 48 kHz, LC.
        // bits: 11101011 00001001 10001000
        let c = parse_aac_config(&[0xeb, 0x09, 0x88]).unwrap();
        assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 24000, 1));
    }

    #[test]
    fn escaped_object_type() {
        // 11111 000010 0100 0010: object type 32 + 2 = 34 (Layer-3 as AOT),
        // 44.1 kHz, stereo. bits: 11111000 01001000 010(00000)
        let c = parse_aac_config(&[0xf8, 0x48, 0x40]).unwrap();
        assert_eq!(c.object_type, 34);
        assert_eq!(c.channels, 2);
    }

    #[test]
    fn invalid_and_truncated() {
        assert!(matches!(
            parse_aac_config(&[]),
            Err(MediaError::Truncated {
                what: "audioObjectType",
                need: 1,
                have: 0
            })
        ));
        assert!(matches!(
            parse_aac_config(&[0x12]),
            Err(MediaError::Truncated {
                what: "samplingFrequencyIndex",
                ..
            })
        ));
        // samplingFrequencyIndex 13 is reserved: 00010 1101 0010 000.
        assert_eq!(
            parse_aac_config(&[0x16, 0x90]).unwrap_err(),
            MediaError::Invalid {
                what: "samplingFrequencyIndex",
                value: 13,
                offset: 0
            }
        );
        // channelConfiguration 9 is reserved: 00010 0100 1001 000.
        assert!(matches!(
            parse_aac_config(&[0x12, 0x48]),
            Err(MediaError::Invalid {
                what: "channelConfiguration",
                value: 9,
                ..
            })
        ));
        // Object type 0 is "null".
        assert!(matches!(
            parse_aac_config(&[0x02, 0x10]),
            Err(MediaError::Invalid {
                what: "audioObjectType",
                ..
            })
        ));
        for b0 in 0..=255u8 {
            for b1 in [0x00, 0x10, 0x88, 0xff] {
                let _ = parse_aac_config(&[b0, b1]);
                let _ = parse_aac_config(&[b0, b1, b0]);
            }
        }
    }
}
