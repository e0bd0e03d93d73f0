//! shardcast: a thread-per-core live-streaming server.
//!
//! The protocol code is in the `proto` crate (`shardcast-proto`, sans-IO);
//! this crate is what does IO and holds state. See ARCHITECTURE.md for the
//! map.

pub mod access;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod error;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pages;
pub mod reload;
pub mod server;
pub mod stream;
