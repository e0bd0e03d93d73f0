//! The MPEG-TS readers: the load generator's HLS demuxer (`TsDemuxer`,
//! in `loadgen/src/hls_ts.rs`, compiled in here from its source since the
//! load generator is a binary crate) and proto's `ts::check_packets`. The
//! demuxer is fed differentially: the whole body at once and in two pieces
//! split at a point taken from the input must give the same frames and
//! the same error.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../loadgen/src/synth.rs"]
mod synth;

#[allow(dead_code)]
#[path = "../../loadgen/src/hls_ts.rs"]
mod hls_ts;

use hls_ts::{TsDemuxError, TsDemuxer, TsFrame};

fn demux(pieces: &[&[u8]]) -> (Vec<TsFrame>, Option<TsDemuxError>) {
    let mut dem = TsDemuxer::new();
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = dem.push(piece, &mut out) {
            return (out, Some(e));
        }
    }
    let end = dem.finish(&mut out).err();
    (out, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let _ = proto::ts::check_packets(body);
    let split = usize::from(sel) * body.len() / 255;
    let whole = demux(&[body]);
    let halves = demux(&[&body[..split], &body[split..]]);
    assert_eq!(whole, halves, "split at {split}");
});
