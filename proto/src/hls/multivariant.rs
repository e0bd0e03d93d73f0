//! The multivariant playlist of one stream: one `EXT-X-STREAM-INF` per
//! variant, with what a player needs to pick a decoder before it fetches
//! anything (CODECS, RESOLUTION, FRAME-RATE) and the bandwidth to pick a
//! variant by.
//!
//! Defined by: RFC 8216bis 4.4.6.2 (EXT-X-STREAM-INF: BANDWIDTH required,
//! AVERAGE-BANDWIDTH, CODECS, RESOLUTION, FRAME-RATE with three
//! decimals), 4.4.2.1 (EXT-X-INDEPENDENT-SEGMENTS), RFC 6381 3 (CODECS).

use std::fmt::Write;

/// One variant stream of a multivariant playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// The media playlist's URI, relative to the multivariant playlist.
    pub uri: String,
    /// Peak segment bit rate, bits per second (BANDWIDTH).
    pub bandwidth: u64,
    /// Average segment bit rate, bits per second (AVERAGE-BANDWIDTH).
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codec strings of every track (`avc1.64001f`, `mp4a.40.2`).
    pub codecs: Vec<String>,
    /// Picture width and height, for a variant with video.
    pub resolution: Option<(u32, u32)>,
    /// Video frames per second.
    pub frame_rate: Option<f64>,
}

/// The playlist text. Every segment of ours starts with what decodes it
/// (a keyframe, or audio), so it carries EXT-X-INDEPENDENT-SEGMENTS.
pub fn render_multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        // A bandwidth of 0 is no figure; players divide by it.
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={}", avg.max(1));
        }
        if !v.codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{}\"", v.codecs.join(","));
        }
        if let Some((w, h)) = v.resolution.filter(|&(w, h)| w > 0 && h > 0) {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        let _ = writeln!(out, "\n{}", v.uri);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_names_its_codecs_size_rate_and_bandwidth() {
        let text = render_multivariant(&[Variant {
            uri: "test.m3u8?container=fmp4".into(),
            bandwidth: 2_500_000,
            average_bandwidth: Some(2_100_000),
            codecs: vec!["hvc1.1.6.L93.B0".into(), "opus".into()],
            resolution: Some((1280, 720)),
            frame_rate: Some(29.97),
        }]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,AVERAGE-BANDWIDTH=2100000,\
             CODECS=\"hvc1.1.6.L93.B0,opus\",RESOLUTION=1280x720,FRAME-RATE=29.970\n\
             test.m3u8?container=fmp4\n"
        );
    }

    #[test]
    fn an_audio_only_variant_has_no_resolution_or_frame_rate() {
        let text = render_multivariant(&[Variant {
            uri: "radio.m3u8".into(),
            bandwidth: 0,
            average_bandwidth: None,
            codecs: vec!["mp4a.40.2".into()],
            resolution: None,
            frame_rate: None,
        }]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"mp4a.40.2\"\nradio.m3u8\n"
        );
    }
}
