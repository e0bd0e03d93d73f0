//! The media playlist parser the load generator's HLS players (and the
//! edge next) read playlists with. Bytes that are not UTF-8 are refused
//! before the parser, as the players do.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::hls::parse::parse_media_playlist;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pl) = parse_media_playlist(text) {
        let _ = pl.open_msn();
        let _ = pl.is_low_latency();
    }
});
