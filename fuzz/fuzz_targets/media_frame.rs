//! RTMP audio/video message bodies (FLV tag bodies, legacy and Enhanced
//! RTMP) as `media::Frame`, and the tag headers by themselves. The first
//! byte picks audio or video and the timestamp's low bits.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use proto::media::{AudioTagHeader, Frame, VideoTagHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let ts = u32::from(sel >> 1) << 16;
    let payload = Bytes::copy_from_slice(body);
    let frame = if sel & 1 == 0 {
        let _ = VideoTagHeader::parse(body);
        Frame::parse_video(ts, payload)
    } else {
        let _ = AudioTagHeader::parse(body);
        Frame::parse_audio(ts, payload)
    };
    if let Ok(frame) = frame {
        let _ = frame.pts();
        let _ = frame.is_start_point();
        let _ = frame.codec_data();
    }
});
