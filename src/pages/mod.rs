//! The pages the server shows a person, and the npm packages they load.

/// The page at `/`: lists live streams (from `/api/streams`) and plays them
/// with hls.js or mpegts.js served from `/assets/`.
pub const PAGE: &str = include_str!("page.html");

/// The page at `/dashboard`: charts of `/api/v1/stats`, `/api/v1/streams`
/// and `/api/v1/shards`, refreshed every second, drawn with uPlot served
/// from `/assets/`.
pub const DASHBOARD: &str = include_str!("dashboard.html");
