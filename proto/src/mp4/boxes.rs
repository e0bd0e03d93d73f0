//! Writing ISO BMFF boxes into a `Vec<u8>`: a box is opened (its size left
//! as zero), its content appended, and closed (the size patched in). No
//! box this crate writes comes near 4 GiB: a fragment holds one part or
//! segment, bounded by `hls::SEGMENT_BYTES_MAX`, so 32-bit sizes do.
//!
//! Defined by: ISO/IEC 14496-12 4.2 (Box, FullBox).

/// An open box: where its size field is.
#[must_use = "a box must be closed with `end`"]
pub struct Open(usize);

/// Opens a box of type `kind`.
pub fn start(out: &mut Vec<u8>, kind: &[u8; 4]) -> Open {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    Open(at)
}

/// Opens a full box: a box with a version byte and 24 bits of flags.
pub fn start_full(out: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> Open {
    let open = start(out, kind);
    u32(out, (u32::from(version) << 24) | (flags & 0x00ff_ffff));
    open
}

/// Closes a box: its size is everything written since it was opened.
pub fn end(out: &mut [u8], open: Open) {
    let size = u32::try_from(out.len() - open.0).expect("a box under 4 GiB");
    out[open.0..open.0 + 4].copy_from_slice(&size.to_be_bytes());
}

pub fn u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub fn u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `n` zero bytes.
pub fn zeros(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// The unity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30
/// fixed point).
pub fn unity_matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32(out, v);
    }
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 7.2.2): its tag, then its size in
/// the expandable form (7 bits per byte, high bit = more follows), then
/// what `content` writes.
pub fn descriptor(out: &mut Vec<u8>, tag: u8, content: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    content(&mut body);
    out.push(tag);
    let len = body.len();
    let mut groups = 1;
    while groups < 4 && len >> (7 * groups) != 0 {
        groups += 1;
    }
    for i in (0..groups).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        out.push(more | ((len >> (7 * i)) & 0x7f) as u8);
    }
    out.extend_from_slice(&body);
}
