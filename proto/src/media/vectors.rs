//! Byte vectors from ffmpeg 9 (n9.0.2, the static build the project's
//! `.venv` carries) `-f flv` output: FLV tag bodies exactly as an E-RTMP
//! publisher sends them, as hex. Made from `testsrc2` and `sine` with the
//! encoder each constant names; the sizes are what ffmpeg reports for the
//! same files.

use bytes::Bytes;

use super::Frame;
use crate::rtmp::test_util::hex;

/// A video tag body as a parsed frame.
pub(crate) fn video(ts: u32, body: &str) -> Frame {
    Frame::parse_video(ts, Bytes::from(hex(body))).expect("a valid video vector")
}

/// An audio tag body as a parsed frame.
pub(crate) fn audio(ts: u32, body: &str) -> Frame {
    Frame::parse_audio(ts, Bytes::from(hex(body))).expect("a valid audio vector")
}

/// The codec data (configuration record, OBUs, frame) of a vector.
pub(crate) fn data(frame: &Frame) -> Vec<u8> {
    frame.codec_data().expect("codec data").to_vec()
}

/// libx265 Main 320x240 (E-RTMP `hvc1` SequenceStart; the record's prefix SEI array, x265's 2.3 kB version string, left out).
pub(crate) const HEVC_SEQ: &str = "\
90687663310101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff016000000300900000\
03000003003c959409210001002a42010101600000030090000003000003003ca00a080f16595952930bc05a02000003\
0002000003003c1022000100064401c073c189";

/// libx265 Main 10, 318x238 (a conformance window crops the coded 320x240).
pub(crate) const HEVC10_SEQ: &str = "\
90687663310102200000009000000000003cf000fcfdfafa00000f03200001001840010c01ffff022000000300900000\
03000003003c959409210001002b42010102200000030090000003000003003ca00a080f1d536595952930bc05a02000\
0003002000000303c122000100064401c073c189";

/// libx265 with temporal-layers=3: VPS and SPS with sps_max_sub_layers_minus1 = 2, 320x240.
pub(crate) const HEVC_TEMPORAL_SEQ: &str = "\
90687663310101600000009000000000003cf000fcfdf8f800001b03200001001e40010c04ffff016000000300900000\
03000003003c00009594aca5650240210001002e42010401600000030090000003000003003c0000a00a080f1659594a\
ca5654a4c2f0168080000003008000000f0422000100064401c073c189";

/// libsvtav1 320x240 8-bit: av1C with the sequence header OBU in configOBUs.
pub(crate) const AV1_SVT_SEQ: &str = "\
906176303181000c000a0b0200000521e7fde017c002";

/// libaom-av1: the empty `av01` SequenceStart it sends before the real one.
pub(crate) const AV1_AOM_EMPTY_SEQ: &str = "\
9061763031";

/// libaom-av1 320x240: the second, real SequenceStart.
pub(crate) const AV1_AOM_SEQ: &str = "\
906176303181000c000a0b000000043cffbcdaf90040";

/// libsvtav1 426x240 10-bit.
pub(crate) const AV1_10_SEQ: &str = "\
906176303181004c000a0b0200000521f53de017c202";

/// libsvtav1: the first 40 bytes of the first keyframe (CodedFrames): a temporal delimiter, the sequence header, the start of the frame.
pub(crate) const AV1_SVT_KEY: &str = "\
916176303112000a0b0200000521e7fde257c80232993110008660808204102fbc0bcf3c0800dd3b";

/// libvpx-vp9 profile 0 320x240: vpcC with the FullBox version 1 and flags in front.
pub(crate) const VP9_SEQ: &str = "\
9076703039010000000014820202020000";

/// libvpx-vp9: the first 32 bytes of the first keyframe.
pub(crate) const VP9_KEY: &str = "\
9176703039824983420013f00ef60638241c184a000ae050661fdfdff87f47ff";

/// libvpx-vp9 profile 2 (10-bit) 352x288.
pub(crate) const VP9_10_SEQ: &str = "\
9076703039010000000214a20202020000";

/// libvpx-vp9 profile 2: the first 32 bytes of the first keyframe.
pub(crate) const VP9_10_KEY: &str = "\
917670303992498342000af808fb031c120e0c2c00066850661fdfdff7ffda7f";

/// libopus mono (E-RTMP `Opus` SequenceStart: an OpusHead).
pub(crate) const OPUS_MONO_SEQ: &str = "\
904f7075734f707573486561640101380180bb0000000000";

/// libopus stereo.
pub(crate) const OPUS_STEREO_SEQ: &str = "\
904f7075734f707573486561640102380180bb0000000000";

/// libopus 5.1: channel mapping family 1.
pub(crate) const OPUS_51_SEQ: &str = "\
904f7075734f707573486561640106380180bb00000000010402000401020305";

/// libopus stereo: the first 24 bytes of the first CodedFrames message.
pub(crate) const OPUS_STEREO_FRAME: &str = "\
914f707573fc7e0299e7f9ecf511d613fd3afcf53c747846";

/// libmp3lame 44.1 kHz stereo 128 kb/s, legacy FLV SoundFormat 2: the first 24 bytes of the first tag.
pub(crate) const MP3_44100_FRAME: &str = "\
2ffffb90640000023c08d0bd3c200800000d20a000010c5c";

/// libmp3lame 22.05 kHz mono (MPEG-2 Layer III): the first 24 bytes of the first tag.
pub(crate) const MP3_22050_FRAME: &str = "\
2afff340c40012b05e8c5f4f180001a7db6ff857a7d0f43d";
