use bytes::Bytes;

use super::*;

/// A box as the tests read it back: type, and its content's range.
#[derive(Debug)]
struct BoxAt {
    kind: [u8; 4],
    start: usize,
    end: usize,
}

/// The boxes one after another in `data[from..to]`; panics on a size
/// that does not fit, so every test checks the sizes too.
fn boxes_in(data: &[u8], from: usize, to: usize) -> Vec<BoxAt> {
    let mut at = from;
    let mut out = Vec::new();
    while at < to {
        assert!(at + 8 <= to, "a box header past the end at {at}");
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && at + size <= to,
            "box size {size} at {at} (end {to})"
        );
        out.push(BoxAt {
            kind: data[at + 4..at + 8].try_into().unwrap(),
            start: at + 8,
            end: at + size,
        });
        at += size;
    }
    out
}

/// The box at a path of types (`b"moov/trak/mdia"`), the first of each.
fn find<'a>(data: &'a [u8], path: &str) -> &'a [u8] {
    let (mut from, mut to) = (0, data.len());
    for kind in path.split('/') {
        let b = boxes_in(data, from, to)
            .into_iter()
            .find(|b| b.kind == kind.as_bytes())
            .unwrap_or_else(|| panic!("no {kind} in {path}"));
        (from, to) = (b.start, b.end);
        // Containers whose children follow a header: skip it.
        from += match kind {
            "stsd" => 8,
            "dref" => 8,
            _ => 0,
        };
    }
    &data[from..to]
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn avc_track() -> Track {
    Track {
        id: 1,
        entry: SampleEntry::Video {
            format: VideoFormat::Avc,
            // Baseline 3.0, one SPS, one PPS.
            record: Bytes::from_static(&[
                1, 0x42, 0x00, 0x1e, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x42, 0x00, 0x1e, 0x01, 0x00,
                0x02, 0x68, 0xce,
            ]),
            width: 320,
            height: 240,
        },
    }
}

fn aac_track() -> Track {
    Track {
        id: 2,
        entry: SampleEntry::Aac {
            config: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44_100,
            channels: 2,
        },
    }
}

#[test]
fn an_init_segment_describes_each_track_and_announces_fragments() {
    let mut out = Vec::new();
    write_init(&[avc_track(), aac_track()], &mut out);
    let top: Vec<_> = boxes_in(&out, 0, out.len())
        .iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(top, [*b"ftyp", *b"moov"]);
    assert_eq!(&find(&out, "ftyp")[..4], b"iso6");
    let moov = find(&out, "moov");
    let kinds: Vec<_> = boxes_in(moov, 0, moov.len())
        .iter()
        .map(|b| b.kind)
        .collect();
    assert_eq!(kinds, [*b"mvhd", *b"trak", *b"trak", *b"mvex"]);
    // mvhd: timescale after version/flags and two times; next_track_ID last.
    let mvhd = find(&out, "moov/mvhd");
    assert_eq!(be32(mvhd, 12), TIMESCALE);
    assert_eq!(be32(mvhd, mvhd.len() - 4), 3);
    // The video track: tkhd's width and height in 16.16, the avc1 entry
    // with its avcC as given.
    let tkhd = find(&out, "moov/trak/tkhd");
    assert_eq!(be32(tkhd, 12), 1, "track_ID");
    assert_eq!(be32(tkhd, tkhd.len() - 8), 320 << 16);
    assert_eq!(be32(tkhd, tkhd.len() - 4), 240 << 16);
    assert_eq!(&find(&out, "moov/trak/mdia/hdlr")[8..12], b"vide");
    let entry = find(&out, "moov/trak/mdia/minf/stbl/stsd");
    let e = &boxes_in(entry, 0, entry.len())[0];
    assert_eq!(&e.kind, b"avc1");
    assert_eq!(
        u16::from_be_bytes(entry[e.start + 24..e.start + 26].try_into().unwrap()),
        320
    );
    // 78 bytes of VisualSampleEntry, then the avcC box.
    let config = &boxes_in(entry, e.start + 78, e.end)[0];
    assert_eq!(&config.kind, b"avcC");
    let SampleEntry::Video { record, .. } = avc_track().entry else {
        unreachable!()
    };
    assert_eq!(&entry[config.start..config.end], &record[..]);
    // Every track has a trex.
    let mvex = find(&out, "moov/mvex");
    let ids: Vec<u32> = boxes_in(mvex, 0, mvex.len())
        .iter()
        .map(|b| be32(mvex, b.start + 4))
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn the_aac_entry_carries_its_audio_specific_config_in_esds() {
    let mut out = Vec::new();
    write_init(&[aac_track()], &mut out);
    let stsd = find(&out, "moov/trak/mdia/minf/stbl/stsd");
    let e = &boxes_in(stsd, 0, stsd.len())[0];
    assert_eq!(&e.kind, b"mp4a");
    // channelcount at 16, samplerate (16.16) at 24 of the entry's content.
    assert_eq!(
        u16::from_be_bytes(stsd[e.start + 16..e.start + 18].try_into().unwrap()),
        2
    );
    assert_eq!(be32(stsd, e.start + 24), 44_100 << 16);
    let esds = &boxes_in(stsd, e.start + 28, e.end)[0];
    assert_eq!(&esds.kind, b"esds");
    let d = &stsd[esds.start + 4..esds.end];
    // ES_Descriptor(3) > DecoderConfigDescriptor(4, AAC) >
    // DecoderSpecificInfo(5) = the ASC; SLConfigDescriptor(6) = 2.
    assert_eq!(d[0], 0x03);
    assert_eq!(usize::from(d[1]), d.len() - 2);
    assert_eq!((d[5], d[7]), (0x04, 0x40));
    let asc = d.windows(4).position(|w| w == [0x05, 2, 0x12, 0x10]);
    assert!(asc.is_some(), "the ASC in a DecoderSpecificInfo: {d:02x?}");
    assert_eq!(&d[d.len() - 3..], [0x06, 1, 2]);
}

#[test]
fn long_descriptors_use_the_expandable_size() {
    let mut out = Vec::new();
    boxes::descriptor(&mut out, 0x05, |o| o.extend_from_slice(&[7; 200]));
    // 200 = 0b1_1001000: two groups, 0x81 0x48.
    assert_eq!(&out[..3], [0x05, 0x81, 0x48]);
    assert_eq!(out.len(), 3 + 200);
}

fn sample(duration: u32, key: bool, data: &'static [u8]) -> Sample {
    Sample {
        duration,
        composition_offset: 0,
        flags: if key {
            SAMPLE_FLAGS_SYNC
        } else {
            SAMPLE_FLAGS_NON_SYNC
        },
        data: Bytes::from_static(data),
    }
}

#[test]
fn a_fragment_points_each_run_at_its_samples_in_the_mdat() {
    let video = Run {
        track_id: 1,
        base_decode_time: 90_000,
        samples: vec![
            Sample {
                composition_offset: 66,
                ..sample(33, true, b"KEYFRAME")
            },
            sample(34, false, b"inter"),
        ],
    };
    let audio = Run {
        track_id: 2,
        base_decode_time: 90_010,
        samples: vec![sample(23, true, b"aac1"), sample(23, true, b"aac2")],
    };
    let mut out = Vec::new();
    write_fragment(7, &[video, audio, Run::default()], &mut out);
    let top = boxes_in(&out, 0, out.len());
    assert_eq!(
        top.iter().map(|b| b.kind).collect::<Vec<_>>(),
        [*b"moof", *b"mdat"]
    );
    assert_eq!(&out[top[1].start..top[1].end], b"KEYFRAMEinteraac1aac2");
    let moof = find(&out, "moof");
    assert_eq!(be32(find(&out, "moof/mfhd"), 4), 7);
    let trafs: Vec<_> = boxes_in(moof, 0, moof.len())
        .into_iter()
        .filter(|b| &b.kind == b"traf")
        .collect();
    assert_eq!(trafs.len(), 2, "the empty run is left out");
    let moof_start = top[0].start - 8;
    let mut expect_offset = top[1].start - moof_start;
    for (traf, (id, tfdt, data)) in trafs.iter().zip([
        (1, 90_000u64, &b"KEYFRAMEinter"[..]),
        (2, 90_010, &b"aac1aac2"[..]),
    ]) {
        let parts = boxes_in(moof, traf.start, traf.end);
        let tfhd = &parts[0];
        assert_eq!(
            be32(moof, tfhd.start) & 0xff_ffff,
            0x020000,
            "default-base-is-moof"
        );
        assert_eq!(be32(moof, tfhd.start + 4), id);
        let t = &parts[1];
        assert_eq!(&t.kind, b"tfdt");
        assert_eq!(moof[t.start], 1, "version 1: 64-bit time");
        assert_eq!(
            u64::from_be_bytes(moof[t.start + 4..t.start + 12].try_into().unwrap()),
            tfdt
        );
        let trun = &parts[2];
        assert_eq!(be32(moof, trun.start + 4), 2, "sample_count");
        let offset = be32(moof, trun.start + 8) as usize;
        assert_eq!(offset, expect_offset, "data_offset of track {id}");
        assert_eq!(
            &out[moof_start + offset..moof_start + offset + data.len()],
            data
        );
        expect_offset += data.len();
    }
    // The video run has composition offsets (flag 0x800), the audio one not.
    let video_trun = boxes_in(moof, trafs[0].start, trafs[0].end)[2].start;
    assert_eq!(be32(moof, video_trun) & 0xff_ffff, 0x000f01);
    // First sample: duration 33, size 8, sync flags, offset 66.
    assert_eq!(
        [0, 4, 8, 12].map(|i| be32(moof, video_trun + 12 + i)),
        [33, 8, SAMPLE_FLAGS_SYNC, 66]
    );
    let audio_trun = boxes_in(moof, trafs[1].start, trafs[1].end)[2].start;
    assert_eq!(be32(moof, audio_trun) & 0xff_ffff, 0x000701);
}

#[test]
fn a_fragment_without_samples_writes_nothing() {
    let mut out = Vec::new();
    write_fragment(1, &[Run::default()], &mut out);
    assert!(out.is_empty());
}
