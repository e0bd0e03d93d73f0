//! shardcast's protocol code, sans-IO: every parser and muxer takes bytes
//! (`&[u8]` or `Bytes`) and returns values. Nothing here opens a socket,
//! reads a clock or spawns a task; callers pass the time in where it
//! matters. The compiler holds that line: this crate depends on no IO
//! crate (checked by the server's `tests/layering.rs`).
//!
//! See ARCHITECTURE.md for the map.

pub mod flv;
pub mod hls;
pub mod http;
pub mod media;
pub mod mp4;
pub mod query;
pub mod rtmp;
pub mod sign;
pub mod ts;
