//! RTMP: sans-IO handshake, chunk stream, AMF and command session.

pub mod amf;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod message;
pub mod session;
pub mod wire;
