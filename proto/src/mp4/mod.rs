//! Fragmented MP4 (ISO BMFF, CMAF-style), sans-IO: an init segment
//! (`ftyp` + `moov`) that describes the tracks, and fragments (`moof` +
//! `mdat`) that carry their samples. HLS uses it for fMP4 segments and
//! LL-HLS parts; a recorder can write the same boxes to a file.
//!
//! The writers take what the caller knows (codec configuration records,
//! sample sizes, durations, decode times) and append bytes to a `Vec<u8>`;
//! they keep no state. Timing is the caller's: every track here counts in
//! [`TIMESCALE`] ticks per second, the RTMP clock, so decode times and
//! durations are the publisher's timestamps as they are.
//!
//! Defined by: ISO/IEC 14496-12 (the boxes), 14496-14 (`esds`), 14496-15
//! (`avcC`, `hvcC`), AV1 Codec ISO Media File Format Binding (`av1C`), VP
//! Codec ISO Media File Format Binding (`vpcC`), Encapsulation of Opus in
//! ISO BMFF (`dOps`), ISO/IEC 23000-19 (CMAF brands).

pub mod boxes;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use boxes::{descriptor, end, start, start_full, u16, u32, u64, u8, unity_matrix, zeros};

/// Ticks per second of every track: milliseconds, as RTMP counts.
pub const TIMESCALE: u32 = 1000;

/// A video format of fMP4: the sample entry's type and its configuration
/// box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFormat {
    /// H.264: `avc1` with the AVCDecoderConfigurationRecord as `avcC`
    /// (parameter sets in the record, none needed in the samples).
    Avc,
    /// H.265: `hvc1` (parameter sets in the record, as Safari requires)
    /// with the HEVCDecoderConfigurationRecord as `hvcC`.
    Hevc,
    /// AV1: `av01` with the AV1CodecConfigurationRecord as `av1C`.
    Av1,
    /// VP9: `vp09` with `vpcC`, the VPCodecConfigurationRecord (the full
    /// box's version and flags are written here).
    Vp9,
}

impl VideoFormat {
    /// The sample entry's type and its configuration box's.
    fn boxes(self) -> (&'static [u8; 4], &'static [u8; 4]) {
        match self {
            VideoFormat::Avc => (b"avc1", b"avcC"),
            VideoFormat::Hevc => (b"hvc1", b"hvcC"),
            VideoFormat::Av1 => (b"av01", b"av1C"),
            VideoFormat::Vp9 => (b"vp09", b"vpcC"),
        }
    }
}

/// What a track's samples are and how to decode them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleEntry {
    Video {
        format: VideoFormat,
        /// The codec's configuration record, as the publisher sent it.
        record: Bytes,
        width: u16,
        height: u16,
    },
    /// AAC: `mp4a` with the AudioSpecificConfig in `esds`.
    Aac {
        config: Bytes,
        sample_rate: u32,
        channels: u16,
    },
    /// MP3: `mp4a` with object type 0x6B in `esds`.
    Mp3 { sample_rate: u32, channels: u16 },
    /// Opus: `Opus` with `dops`, the `dOps` payload (big-endian, built
    /// from the OpusHead). Opus always decodes at 48 kHz.
    Opus { dops: Bytes, channels: u16 },
}

impl SampleEntry {
    pub fn is_video(&self) -> bool {
        matches!(self, SampleEntry::Video { .. })
    }
}

/// A track of the init segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    /// 1 and up, unique in the file.
    pub id: u32,
    pub entry: SampleEntry,
}

/// `sample_flags` (14496-12 8.8.3.1) of a sample that starts a decode: it
/// depends on no other (`sample_depends_on` = 2), a sync sample.
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;
/// ... of a sample that depends on others (`sample_depends_on` = 1) and is
/// not a sync sample (`sample_is_non_sync_sample`).
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// One sample of a fragment's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Ticks until the next sample's decode time.
    pub duration: u32,
    /// Presentation minus decode time, in ticks (video with B-frames).
    pub composition_offset: i32,
    /// [`SAMPLE_FLAGS_SYNC`] or [`SAMPLE_FLAGS_NON_SYNC`].
    pub flags: u32,
    /// The sample as the track's format has it: length-prefixed NAL units
    /// (AVC, HEVC), OBUs (AV1), a frame (VP9), an access unit (AAC, MP3,
    /// Opus).
    pub data: Bytes,
}

/// One track's samples in a fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub track_id: u32,
    /// Decode time of the first sample, in ticks (`tfdt`).
    pub base_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// Writes an init segment: `ftyp` (CMAF brands) and a `moov` with one
/// `trak` per track, no samples in it, and `mvex` announcing fragments.
pub fn write_init(tracks: &[Track], out: &mut Vec<u8>) {
    let ftyp = start(out, b"ftyp");
    out.extend_from_slice(b"iso6");
    u32(out, 0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        out.extend_from_slice(brand);
    }
    end(out, ftyp);

    let moov = start(out, b"moov");
    let mvhd = start_full(out, b"mvhd", 0, 0);
    u32(out, 0); // creation_time
    u32(out, 0); // modification_time
    u32(out, TIMESCALE);
    u32(out, 0); // duration: unknown, fragments follow
    u32(out, 0x0001_0000); // rate 1.0
    u16(out, 0x0100); // volume 1.0
    zeros(out, 2 + 8);
    unity_matrix(out);
    zeros(out, 24); // pre_defined
    u32(out, tracks.iter().map(|t| t.id).max().unwrap_or(0) + 1);
    end(out, mvhd);
    for t in tracks {
        write_trak(t, out);
    }
    let mvex = start(out, b"mvex");
    for t in tracks {
        let trex = start_full(out, b"trex", 0, 0);
        u32(out, t.id);
        u32(out, 1); // default_sample_description_index
        u32(out, 0); // default_sample_duration
        u32(out, 0); // default_sample_size
        u32(out, 0); // default_sample_flags
        end(out, trex);
    }
    end(out, mvex);
    end(out, moov);
}

fn write_trak(t: &Track, out: &mut Vec<u8>) {
    let video = t.entry.is_video();
    let (width, height) = match &t.entry {
        SampleEntry::Video { width, height, .. } => (*width, *height),
        _ => (0, 0),
    };
    let trak = start(out, b"trak");
    // Flags: track_enabled | track_in_movie.
    let tkhd = start_full(out, b"tkhd", 0, 3);
    u32(out, 0); // creation_time
    u32(out, 0); // modification_time
    u32(out, t.id);
    u32(out, 0); // reserved
    u32(out, 0); // duration
    zeros(out, 8);
    u16(out, 0); // layer
    u16(out, 0); // alternate_group
    u16(out, if video { 0 } else { 0x0100 });
    u16(out, 0);
    unity_matrix(out);
    u32(out, u32::from(width) << 16);
    u32(out, u32::from(height) << 16);
    end(out, tkhd);

    let mdia = start(out, b"mdia");
    let mdhd = start_full(out, b"mdhd", 0, 0);
    u32(out, 0);
    u32(out, 0);
    u32(out, TIMESCALE);
    u32(out, 0);
    // Language "und", three 5-bit letters less 0x60.
    u16(out, 0x55c4);
    u16(out, 0);
    end(out, mdhd);
    let hdlr = start_full(out, b"hdlr", 0, 0);
    u32(out, 0); // pre_defined
    out.extend_from_slice(if video { b"vide" } else { b"soun" });
    zeros(out, 12);
    out.extend_from_slice(if video {
        b"VideoHandler\0".as_slice()
    } else {
        b"SoundHandler\0".as_slice()
    });
    end(out, hdlr);

    let minf = start(out, b"minf");
    if video {
        let vmhd = start_full(out, b"vmhd", 0, 1);
        zeros(out, 8); // graphicsmode, opcolor
        end(out, vmhd);
    } else {
        let smhd = start_full(out, b"smhd", 0, 0);
        zeros(out, 4); // balance, reserved
        end(out, smhd);
    }
    let dinf = start(out, b"dinf");
    let dref = start_full(out, b"dref", 0, 0);
    u32(out, 1);
    // Flags 1: the media is in this file.
    let url = start_full(out, b"url ", 0, 1);
    end(out, url);
    end(out, dref);
    end(out, dinf);

    let stbl = start(out, b"stbl");
    let stsd = start_full(out, b"stsd", 0, 0);
    u32(out, 1);
    write_sample_entry(&t.entry, out);
    end(out, stsd);
    // No samples in the moov: they all come in fragments.
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = start_full(out, kind, 0, 0);
        u32(out, 0);
        end(out, b);
    }
    let stsz = start_full(out, b"stsz", 0, 0);
    u32(out, 0); // sample_size
    u32(out, 0); // sample_count
    end(out, stsz);
    end(out, stbl);
    end(out, minf);
    end(out, mdia);
    end(out, trak);
}

fn write_sample_entry(entry: &SampleEntry, out: &mut Vec<u8>) {
    match entry {
        SampleEntry::Video {
            format,
            record,
            width,
            height,
        } => {
            let (kind, config) = format.boxes();
            visual(out, kind, *width, *height, |out| {
                let b = if *format == VideoFormat::Vp9 {
                    start_full(out, config, 1, 0)
                } else {
                    start(out, config)
                };
                out.extend_from_slice(record);
                end(out, b);
            })
        }
        SampleEntry::Aac {
            config,
            sample_rate,
            channels,
        } => audio(out, b"mp4a", *sample_rate, *channels, |out| {
            esds(out, OBJECT_TYPE_AAC, Some(config))
        }),
        SampleEntry::Mp3 {
            sample_rate,
            channels,
        } => audio(out, b"mp4a", *sample_rate, *channels, |out| {
            esds(out, OBJECT_TYPE_MP3, None)
        }),
        SampleEntry::Opus { dops, channels } => {
            audio(out, b"Opus", OPUS_SAMPLE_RATE, *channels, |out| {
                let b = start(out, b"dOps");
                out.extend_from_slice(dops);
                end(out, b);
            })
        }
    }
}

/// Opus decodes at 48 kHz whatever the input rate was.
pub const OPUS_SAMPLE_RATE: u32 = 48_000;
/// `objectTypeIndication` of AAC (ISO/IEC 14496-3 audio) in `esds`.
const OBJECT_TYPE_AAC: u8 = 0x40;
/// ... of MPEG-1 audio (MP3).
const OBJECT_TYPE_MP3: u8 = 0x6b;

/// A VisualSampleEntry (14496-12 12.1.3) whose `config` writes the codec's
/// configuration box.
fn visual(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    width: u16,
    height: u16,
    config: impl FnOnce(&mut Vec<u8>),
) {
    let b = start(out, kind);
    zeros(out, 6);
    u16(out, 1); // data_reference_index
    zeros(out, 2 + 2 + 12); // pre_defined, reserved, pre_defined
    u16(out, width);
    u16(out, height);
    u32(out, 0x0048_0000); // 72 dpi
    u32(out, 0x0048_0000);
    u32(out, 0); // reserved
    u16(out, 1); // frame_count
    zeros(out, 32); // compressorname: empty
    u16(out, 0x0018); // depth
    u16(out, 0xffff); // pre_defined = -1
    config(out);
    end(out, b);
}

/// An AudioSampleEntry (14496-12 12.2.3) whose `config` writes the codec's
/// configuration box. Rates past 16 bits (the 16.16 field) are written as
/// 0; the configuration record has the real rate.
fn audio(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    sample_rate: u32,
    channels: u16,
    config: impl FnOnce(&mut Vec<u8>),
) {
    let b = start(out, kind);
    zeros(out, 6);
    u16(out, 1); // data_reference_index
    zeros(out, 8); // reserved
    u16(out, channels);
    u16(out, 16); // samplesize
    zeros(out, 4); // pre_defined, reserved
    u32(
        out,
        if sample_rate > 0xffff {
            0
        } else {
            sample_rate << 16
        },
    );
    config(out);
    end(out, b);
}

/// `esds` (14496-14 5.6): an ES_Descriptor with a DecoderConfigDescriptor
/// (and the decoder's specific info, if any) and an SLConfigDescriptor.
fn esds(out: &mut Vec<u8>, object_type: u8, specific: Option<&Bytes>) {
    let b = start_full(out, b"esds", 0, 0);
    descriptor(out, 0x03, |out| {
        u16(out, 0); // ES_ID
        u8(out, 0); // no dependency, URL or OCR stream
        descriptor(out, 0x04, |out| {
            u8(out, object_type);
            // streamType 5 (audio) << 2, upStream 0, reserved 1.
            u8(out, 0x15);
            zeros(out, 3); // bufferSizeDB
            u32(out, 0); // maxBitrate
            u32(out, 0); // avgBitrate
            if let Some(info) = specific {
                descriptor(out, 0x05, |out| out.extend_from_slice(info));
            }
        });
        // SLConfigDescriptor, predefined 2 (MP4 files).
        descriptor(out, 0x06, |out| u8(out, 2));
    });
    end(out, b);
}

/// `trun` flags: data_offset, then per sample duration, size, flags and
/// composition time offset present.
const TRUN_DATA_OFFSET: u32 = 0x000001;
const TRUN_DURATION: u32 = 0x000100;
const TRUN_SIZE: u32 = 0x000200;
const TRUN_FLAGS: u32 = 0x000400;
const TRUN_COMPOSITION_OFFSET: u32 = 0x000800;
/// `tfhd` flag: data offsets count from the start of the `moof`.
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x020000;

/// Writes one fragment: a `moof` with fragment number `sequence` (1 and
/// up, increasing) and a `traf` per run that has samples, then an `mdat`
/// with every run's samples in that order. Runs without samples are left
/// out; with none at all nothing is written.
pub fn write_fragment(sequence: u32, runs: &[Run], out: &mut Vec<u8>) {
    let runs: Vec<&Run> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    if runs.is_empty() {
        return;
    }
    let moof_at = out.len();
    let moof = start(out, b"moof");
    let mfhd = start_full(out, b"mfhd", 0, 0);
    u32(out, sequence);
    end(out, mfhd);
    // Where each trun's data_offset goes, patched once the moof's size is
    // known.
    let mut offsets = Vec::with_capacity(runs.len());
    for r in &runs {
        let traf = start(out, b"traf");
        let tfhd = start_full(out, b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF);
        u32(out, r.track_id);
        end(out, tfhd);
        let tfdt = start_full(out, b"tfdt", 1, 0);
        u64(out, r.base_decode_time);
        end(out, tfdt);
        let with_cto = r.samples.iter().any(|s| s.composition_offset != 0);
        let mut flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS;
        if with_cto {
            flags |= TRUN_COMPOSITION_OFFSET;
        }
        // Version 1: signed composition offsets.
        let trun = start_full(out, b"trun", 1, flags);
        u32(out, r.samples.len() as u32);
        offsets.push(out.len());
        u32(out, 0);
        for s in &r.samples {
            u32(out, s.duration);
            u32(out, s.data.len() as u32);
            u32(out, s.flags);
            if with_cto {
                boxes::i32(out, s.composition_offset);
            }
        }
        end(out, trun);
        end(out, traf);
    }
    end(out, moof);
    let mdat = start(out, b"mdat");
    for (r, at) in runs.iter().zip(offsets) {
        let offset = (out.len() - moof_at) as u32;
        out[at..at + 4].copy_from_slice(&offset.to_be_bytes());
        for s in &r.samples {
            out.extend_from_slice(&s.data);
        }
    }
    end(out, mdat);
}
