//! shardcast: a thread-per-core live-streaming server.
//!
//! See ARCHITECTURE.md for the map of this crate.

pub mod config;
pub mod flv;
pub mod hls;
pub mod http;
pub mod media;
pub mod metrics;
pub mod query;
pub mod rtmp;
pub mod server;
pub mod stream;
pub mod ts;
