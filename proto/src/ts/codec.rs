//! Elementary-stream conversions for MPEG-TS: length-prefixed H.264/H.265
//! NAL units to Annex B byte streams, the parameter sets that go in-band
//! (from `crate::media`'s record parsers), and ADTS headers for raw AAC.
//!
//! Defined by: ISO/IEC 14496-10 7.3.1 and Table 7-1 (NAL unit types),
//! 7.3.2.4 (access unit delimiter), Annex B (byte stream format);
//! ISO/IEC 23008-2 7.3.1.2 and Table 7-1; ISO/IEC 14496-15 5.2.4.1 and
//! 8.3.3.1 (decoder configuration records); ISO/IEC 13818-7 6.2 / 14496-3
//! 1.A.2 (adts_fixed_header, adts_variable_header).

use bytes::Bytes;

use super::TsError;

/// The Annex B start code written before every NAL unit.
pub(crate) const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Which NAL unit syntax a video stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NalSyntax {
    /// H.264: one header byte, nal_unit_type in its low 5 bits.
    Avc,
    /// H.265: two header bytes, nal_unit_type in bits 6..1 of the first.
    Hevc,
}

/// What a NAL unit is, as far as the muxer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NalKind {
    AccessUnitDelimiter,
    /// A video parameter set (H.265 only).
    Vps,
    Sps,
    Pps,
    /// A random access point: an H.264 IDR slice, an H.265 IRAP slice.
    RandomAccess,
    Other,
}

impl NalSyntax {
    pub(crate) fn kind(self, nal: &[u8]) -> NalKind {
        let Some(&first) = nal.first() else {
            return NalKind::Other;
        };
        match self {
            NalSyntax::Avc => match first & 0x1f {
                5 => NalKind::RandomAccess,
                7 => NalKind::Sps,
                8 => NalKind::Pps,
                9 => NalKind::AccessUnitDelimiter,
                _ => NalKind::Other,
            },
            NalSyntax::Hevc => match (first >> 1) & 0x3f {
                // BLA, IDR and CRA pictures and the reserved IRAP types.
                16..=23 => NalKind::RandomAccess,
                32 => NalKind::Vps,
                33 => NalKind::Sps,
                34 => NalKind::Pps,
                35 => NalKind::AccessUnitDelimiter,
                _ => NalKind::Other,
            },
        }
    }

    /// An access unit delimiter NAL unit, start code included. H.264:
    /// nal_unit_type 9, primary_pic_type 7 (any slice type) and the
    /// trailing bits. H.265: nal_unit_type 35, nuh_layer_id 0,
    /// nuh_temporal_id_plus1 1, pic_type 2 (I, P and B) and the trailing
    /// bits.
    pub(crate) fn access_unit_delimiter(self) -> &'static [u8] {
        match self {
            NalSyntax::Avc => &[0, 0, 0, 1, 0x09, 0xf0],
            NalSyntax::Hevc => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
        }
    }
}

/// The decoder configuration a video elementary stream needs in-band.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VideoConfig {
    pub syntax: NalSyntax,
    /// Bytes in each NAL unit length prefix of a coded frame: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Parameter set NAL units in the order they go before a random access
    /// point: VPS (H.265), SPS, PPS.
    pub vps: Vec<Bytes>,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

/// An error while walking length-prefixed NAL units.
fn overrun(offset: usize, length: usize, available: usize) -> TsError {
    TsError::NalLengthOverrun {
        offset,
        length,
        available,
    }
}

/// Iterates the NAL units of a length-prefixed frame (ISO 14496-15: each
/// unit preceded by its length in `length_size` big-endian bytes). A prefix
/// or unit that runs past the end is an error; zero-length units are
/// skipped.
pub(crate) struct NalUnits<'a> {
    data: &'a [u8],
    pos: usize,
    length_size: usize,
}

impl<'a> NalUnits<'a> {
    pub(crate) fn new(data: &'a [u8], length_size: u8) -> Self {
        NalUnits {
            data,
            pos: 0,
            length_size: usize::from(length_size),
        }
    }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8], TsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos >= self.data.len() {
                return None;
            }
            let at = self.pos;
            let available = self.data.len() - at;
            let Some(prefix) = self.data.get(at..at + self.length_size) else {
                self.pos = self.data.len();
                return Some(Err(overrun(at, self.length_size, available)));
            };
            let len = prefix
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            let start = at + self.length_size;
            let Some(nal) = self.data.get(start..start.saturating_add(len)) else {
                self.pos = self.data.len();
                return Some(Err(overrun(at, len, self.data.len().saturating_sub(start))));
            };
            self.pos = start + len;
            if !nal.is_empty() {
                return Some(Ok(nal));
            }
        }
    }
}

impl VideoConfig {
    /// The parameter sets of an HEVCDecoderConfigurationRecord, parsed
    /// by [`crate::media::parse_hevc_config`].
    pub(crate) fn from_hevc(c: crate::media::HevcConfig) -> VideoConfig {
        VideoConfig {
            syntax: NalSyntax::Hevc,
            nalu_length_size: c.nalu_length_size,
            vps: c.vps,
            sps: c.sps,
            pps: c.pps,
        }
    }
}

/// The ADTS header fields that come from the AudioSpecificConfig.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AdtsConfig {
    /// profile_ObjectType: audio object type - 1 (0 main, 1 LC, 2 SSR, 3
    /// LTP).
    pub profile: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
}

/// Bytes in an ADTS header without CRC (protection_absent = 1).
pub(crate) const ADTS_HEADER_LEN: usize = 7;
/// The largest ADTS frame: frame_length has 13 bits and counts the header.
pub(crate) const ADTS_FRAME_LEN_MAX: usize = (1 << 13) - 1;

impl AdtsConfig {
    /// The ADTS fields for a parsed AudioSpecificConfig, if ADTS can carry
    /// it: object types 1 to 4 (the 2-bit profile field) and a sampling
    /// frequency from the index table (ADTS has no explicit frequency).
    pub(crate) fn new(asc: &crate::media::AacConfig) -> Result<AdtsConfig, TsError> {
        let unsupported = TsError::AacConfig {
            object_type: asc.object_type,
            sample_rate: asc.sample_rate,
        };
        if !(1..=4).contains(&asc.object_type) {
            return Err(unsupported);
        }
        let sampling_frequency_index = asc.sample_rate_index().ok_or(unsupported)?;
        Ok(AdtsConfig {
            profile: asc.object_type - 1,
            sampling_frequency_index,
            channel_configuration: asc.channel_configuration(),
        })
    }

    /// The 7-byte header of a frame with `raw_len` bytes of raw AAC:
    /// syncword 0xFFF, ID 0 (MPEG-4), layer 0, protection_absent 1,
    /// profile, sampling_frequency_index, private_bit 0,
    /// channel_configuration, original/copy 0, home 0, copyright bits 0,
    /// frame_length (header included), adts_buffer_fullness 0x7FF (variable
    /// rate), number_of_raw_data_blocks_in_frame 0 (one block).
    pub(crate) fn header(self, raw_len: usize) -> Result<[u8; ADTS_HEADER_LEN], TsError> {
        let len = raw_len + ADTS_HEADER_LEN;
        if len > ADTS_FRAME_LEN_MAX {
            return Err(TsError::AacFrameTooLong { len: raw_len });
        }
        let ch = self.channel_configuration & 0x07;
        let fullness: u16 = 0x7ff;
        Ok([
            0xff,
            0xf1,
            ((self.profile & 0x03) << 6)
                | ((self.sampling_frequency_index & 0x0f) << 2)
                | (ch >> 2),
            ((ch & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
            (len >> 3) as u8,
            (((len & 0x07) as u8) << 5) | (fullness >> 6) as u8,
            ((fullness & 0x3f) as u8) << 2,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::AacConfig;

    #[test]
    fn nal_units_walk_and_overrun() {
        let data = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 0, 0, 0, 0, 1, 0x06];
        let units: Vec<_> = NalUnits::new(&data, 4).collect::<Result<_, _>>().unwrap();
        assert_eq!(units, vec![&[0x65, 0x88][..], &[0x06][..]]);
        let two = [0, 1, 0x09, 0, 2, 0x67, 0x64];
        assert_eq!(NalUnits::new(&two, 2).count(), 2);
        // A length that runs past the frame.
        let bad = [0, 0, 0, 9, 0x65, 0x88];
        assert_eq!(
            NalUnits::new(&bad, 4).next(),
            Some(Err(TsError::NalLengthOverrun {
                offset: 0,
                length: 9,
                available: 2
            }))
        );
        // A prefix cut short.
        let bad = [0, 0, 0, 1, 0x65, 0, 0];
        let mut it = NalUnits::new(&bad, 4);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            it.next(),
            Some(Err(TsError::NalLengthOverrun {
                offset: 5,
                length: 4,
                available: 2
            }))
        );
        assert_eq!(it.next(), None);
    }

    #[test]
    fn nal_kinds() {
        let avc = NalSyntax::Avc;
        assert_eq!(avc.kind(&[0x65]), NalKind::RandomAccess);
        assert_eq!(avc.kind(&[0x67]), NalKind::Sps);
        assert_eq!(avc.kind(&[0x68]), NalKind::Pps);
        assert_eq!(avc.kind(&[0x09]), NalKind::AccessUnitDelimiter);
        assert_eq!(avc.kind(&[0x41]), NalKind::Other);
        assert_eq!(avc.kind(&[]), NalKind::Other);
        let hevc = NalSyntax::Hevc;
        assert_eq!(hevc.kind(&[0x26, 0x01]), NalKind::RandomAccess); // IDR_W_RADL
        assert_eq!(hevc.kind(&[0x2a, 0x01]), NalKind::RandomAccess); // CRA
        assert_eq!(hevc.kind(&[0x40, 0x01]), NalKind::Vps);
        assert_eq!(hevc.kind(&[0x42, 0x01]), NalKind::Sps);
        assert_eq!(hevc.kind(&[0x44, 0x01]), NalKind::Pps);
        assert_eq!(hevc.kind(&[0x46, 0x01]), NalKind::AccessUnitDelimiter);
        assert_eq!(hevc.kind(&[0x02, 0x01]), NalKind::Other); // TRAIL_R
                                                              // The AUDs the muxer writes read back as AUDs.
        assert_eq!(
            avc.kind(&avc.access_unit_delimiter()[4..]),
            NalKind::AccessUnitDelimiter
        );
        assert_eq!(
            hevc.kind(&hevc.access_unit_delimiter()[4..]),
            NalKind::AccessUnitDelimiter
        );
    }

    /// AAC-LC (object type 2), 44.1 kHz (index 4), stereo, 100 bytes of raw
    /// data: frame_length 107, worked out bit by bit.
    #[test]
    fn adts_header_lc_44100_stereo() {
        let asc = AacConfig {
            object_type: 2,
            sample_rate: 44_100,
            channels: 2,
        };
        let adts = AdtsConfig::new(&asc).unwrap();
        assert_eq!(
            adts,
            AdtsConfig {
                profile: 1,
                sampling_frequency_index: 4,
                channel_configuration: 2
            }
        );
        let h = adts.header(100).unwrap();
        // 1111 1111 | 1111 0 00 1 | 01 0100 0 0 | 10 0 0 0 0 00 |
        // 0000 1101 | 011 11111 | 111111 00
        assert_eq!(h, [0xFF, 0xF1, 0x50, 0x80, 0x0D, 0x7F, 0xFC]);
        // The largest frame, and one byte more.
        let h = adts.header(ADTS_FRAME_LEN_MAX - 7).unwrap();
        assert_eq!(h[3] & 0x03, 0x03);
        assert_eq!(h[4], 0xFF);
        assert_eq!(h[5] >> 5, 0x07);
        assert_eq!(
            adts.header(ADTS_FRAME_LEN_MAX - 6),
            Err(TsError::AacFrameTooLong { len: 8185 })
        );
        // 48 kHz mono main profile; 7.1 (8 channels) is configuration 7.
        let h = AdtsConfig::new(&AacConfig {
            object_type: 1,
            sample_rate: 48_000,
            channels: 8,
        })
        .unwrap()
        .header(0)
        .unwrap();
        assert_eq!(h[2], 0x0D); // profile 0, index 3, channel bit 2 = 1
        assert_eq!(h[3] >> 6, 0x03);
        // HE-AAC v2's PS object type (29) and explicit rates cannot be ADTS.
        assert!(AdtsConfig::new(&AacConfig {
            object_type: 29,
            sample_rate: 44_100,
            channels: 2
        })
        .is_err());
        assert!(AdtsConfig::new(&AacConfig {
            object_type: 2,
            sample_rate: 44_000,
            channels: 2
        })
        .is_err());
    }
}
