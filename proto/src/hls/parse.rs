//! Media playlists as an HLS player reads them, sans-IO: the text in, the
//! segments, LL-HLS parts and the server's capabilities out, borrowing the
//! URIs from the text.
//!
//! Defined by: RFC 8216bis (draft-pantos-hls-rfc8216bis) 4.2 (attribute
//! lists), 4.4.2 (EXTINF), 4.4.3 (EXT-X-TARGETDURATION,
//! EXT-X-MEDIA-SEQUENCE, EXT-X-ENDLIST, EXT-X-PART-INF,
//! EXT-X-SERVER-CONTROL), 4.4.4.9 (EXT-X-PART), 4.4.5.2 (EXT-X-SKIP),
//! 4.4.5.3 (EXT-X-PRELOAD-HINT).
//!
//! Only what a player needs to choose and fetch media is kept; every other
//! tag (EXT-X-PROGRAM-DATE-TIME, EXT-X-DISCONTINUITY, ...) is skipped. A
//! multivariant playlist is refused: shardcast serves media playlists.

use std::fmt;

/// Bytes of a playlist a player accepts. shardcast's playlists are a few
/// KiB (6 segments, the parts of the last three target durations); the
/// bound allows about a thousand segments.
pub const PLAYLIST_BYTES_MAX: usize = 256 * 1024;
/// Segments one playlist may list (RFC 8216bis sets no bound; shardcast
/// lists at most `WINDOW_SIZE_MAX` + 8).
pub const PLAYLIST_SEGMENTS_MAX: usize = 2_000;
/// EXT-X-PART tags one playlist may list.
pub const PLAYLIST_PARTS_MAX: usize = 2_000;

/// One EXT-X-PART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub duration_ms: u64,
    pub uri: &'a str,
    /// INDEPENDENT=YES: it starts with an independent frame.
    pub independent: bool,
}

/// A finished segment (EXTINF and its URI), with the parts listed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Media sequence number: EXT-X-MEDIA-SEQUENCE + skipped + position.
    pub msn: u64,
    pub duration_ms: u64,
    pub uri: &'a str,
    /// Its EXT-X-PART tags, in order; empty if none are listed.
    pub parts: Vec<Part<'a>>,
}

/// A media playlist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaPlaylist<'a> {
    pub target_duration_ms: u64,
    pub media_sequence: u64,
    /// EXT-X-SERVER-CONTROL CAN-BLOCK-RELOAD=YES: `_HLS_msn`/`_HLS_part`
    /// requests are held until the media exists.
    pub can_block_reload: bool,
    /// EXT-X-SERVER-CONTROL PART-HOLD-BACK.
    pub part_hold_back_ms: Option<u64>,
    /// EXT-X-PART-INF PART-TARGET: the playlist is low-latency.
    pub part_target_ms: Option<u64>,
    /// EXT-X-SKIP SKIPPED-SEGMENTS (a delta update).
    pub skipped_segments: u64,
    pub segments: Vec<Segment<'a>>,
    /// Parts after the last segment: those of the segment in progress,
    /// whose msn is [`MediaPlaylist::open_msn`].
    pub open_parts: Vec<Part<'a>>,
    /// EXT-X-PRELOAD-HINT TYPE=PART URI.
    pub preload_hint: Option<&'a str>,
    /// EXT-X-ENDLIST: nothing more will be added.
    pub ended: bool,
}

impl MediaPlaylist<'_> {
    /// The msn after the last finished segment: that of the segment in
    /// progress.
    pub fn open_msn(&self) -> u64 {
        self.media_sequence + self.skipped_segments + self.segments.len() as u64
    }

    /// Low-latency: parts are listed and the server blocks reloads.
    pub fn is_low_latency(&self) -> bool {
        self.part_target_ms.is_some() && self.can_block_reload
    }
}

/// Why a playlist was refused: the 1-based line and what was wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaylistError {
    pub line: usize,
    pub what: String,
}

impl fmt::Display for PlaylistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "playlist line {}: {}", self.line, self.what)
    }
}

impl std::error::Error for PlaylistError {}

/// Attribute `name` of an attribute list (RFC 8216bis 4.2), quoted values
/// without their quotes.
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let (v, tail) = quoted.split_once('"')?;
            (v, tail.strip_prefix(',').unwrap_or(tail))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// A decimal-floating-point number of seconds as whole milliseconds.
fn secs_to_ms(s: &str) -> Option<u64> {
    let v: f64 = s.trim().parse().ok()?;
    (0.0..1e9)
        .contains(&v)
        .then(|| (v * 1_000.0).round() as u64)
}

/// Media sequence numbers count up from EXT-X-MEDIA-SEQUENCE past the
/// skipped segments and at most [`PLAYLIST_SEGMENTS_MAX`] listed ones: the
/// two tags may say at most this much together, so that every msn (and
/// [`MediaPlaylist::open_msn`]) fits in a u64.
pub const PLAYLIST_MSN_BASE_MAX: u64 = u64::MAX - PLAYLIST_SEGMENTS_MAX as u64;

fn msn_in_range(pl: &MediaPlaylist<'_>) -> Result<(), String> {
    match pl.media_sequence.checked_add(pl.skipped_segments) {
        Some(base) if base <= PLAYLIST_MSN_BASE_MAX => Ok(()),
        _ => Err(format!(
            "EXT-X-MEDIA-SEQUENCE {} and {} skipped segments are over \
             PLAYLIST_MSN_BASE_MAX ({PLAYLIST_MSN_BASE_MAX})",
            pl.media_sequence, pl.skipped_segments
        )),
    }
}

/// Parses a media playlist. URIs are borrowed from `text` as written
/// (relative ones are resolved by the caller).
pub fn parse_media_playlist(text: &str) -> Result<MediaPlaylist<'_>, PlaylistError> {
    let mut pl = MediaPlaylist::default();
    let mut target_duration = None;
    let mut pending_parts: Vec<Part<'_>> = Vec::new();
    let mut pending_extinf: Option<u64> = None;
    let mut parts_total = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |what: String| PlaylistError {
            line: line_no,
            what,
        };
        let line = raw.trim();
        if i == 0 {
            if line != "#EXTM3U" {
                return Err(err("the first line is not #EXTM3U".into()));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let Some(tag) = line.strip_prefix('#') else {
            // A URI line: it ends the segment its EXTINF began.
            let duration_ms = pending_extinf
                .take()
                .ok_or_else(|| err(format!("URI '{line}' without EXTINF")))?;
            if pl.segments.len() >= PLAYLIST_SEGMENTS_MAX {
                return Err(err(format!("more than {PLAYLIST_SEGMENTS_MAX} segments")));
            }
            let msn = pl.open_msn();
            pl.segments.push(Segment {
                msn,
                duration_ms,
                uri: line,
                parts: std::mem::take(&mut pending_parts),
            });
            continue;
        };
        let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
        let number = |v: &str| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| err(format!("#{name} value '{v}' is not a whole number")))
        };
        let secs = |v: &str| {
            secs_to_ms(v).ok_or_else(|| err(format!("#{name}: '{v}' is not a duration in seconds")))
        };
        match name {
            "EXT-X-TARGETDURATION" => {
                let ms = number(value)?.checked_mul(1_000);
                target_duration = Some(ms.ok_or_else(|| {
                    err(format!(
                        "#{name} value '{value}' is too large to count in ms"
                    ))
                })?);
            }
            "EXT-X-MEDIA-SEQUENCE" => {
                pl.media_sequence = number(value)?;
                msn_in_range(&pl).map_err(err)?;
            }
            "EXT-X-SERVER-CONTROL" => {
                pl.can_block_reload = attribute(value, "CAN-BLOCK-RELOAD") == Some("YES");
                pl.part_hold_back_ms = attribute(value, "PART-HOLD-BACK").map(secs).transpose()?;
            }
            "EXT-X-PART-INF" => {
                let target = attribute(value, "PART-TARGET")
                    .ok_or_else(|| err("#EXT-X-PART-INF without PART-TARGET".into()))?;
                pl.part_target_ms = Some(secs(target)?);
            }
            "EXT-X-SKIP" => {
                let n = attribute(value, "SKIPPED-SEGMENTS")
                    .ok_or_else(|| err("#EXT-X-SKIP without SKIPPED-SEGMENTS".into()))?;
                pl.skipped_segments = number(n)?;
                msn_in_range(&pl).map_err(err)?;
            }
            "EXTINF" => {
                let duration = value.split_once(',').map_or(value, |(d, _)| d);
                pending_extinf = Some(secs(duration)?);
            }
            "EXT-X-PART" => {
                let duration = attribute(value, "DURATION")
                    .ok_or_else(|| err("#EXT-X-PART without DURATION".into()))?;
                let uri =
                    attribute(value, "URI").ok_or_else(|| err("#EXT-X-PART without URI".into()))?;
                parts_total += 1;
                if parts_total > PLAYLIST_PARTS_MAX {
                    return Err(err(format!("more than {PLAYLIST_PARTS_MAX} parts")));
                }
                pending_parts.push(Part {
                    duration_ms: secs(duration)?,
                    uri,
                    independent: attribute(value, "INDEPENDENT") == Some("YES"),
                });
            }
            "EXT-X-PRELOAD-HINT" if attribute(value, "TYPE") == Some("PART") => {
                pl.preload_hint = attribute(value, "URI");
            }
            "EXT-X-ENDLIST" => pl.ended = true,
            "EXT-X-STREAM-INF" | "EXT-X-I-FRAME-STREAM-INF" => {
                return Err(err(
                    "a multivariant playlist; give the URL of a media playlist".into(),
                ))
            }
            _ => {}
        }
    }
    if text.is_empty() {
        return Err(PlaylistError {
            line: 1,
            what: "empty playlist".into(),
        });
    }
    pl.target_duration_ms = target_duration.ok_or_else(|| PlaylistError {
        line: text.lines().count(),
        what: "no #EXT-X-TARGETDURATION".into(),
    })?;
    pl.open_parts = pending_parts;
    Ok(pl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A playlist as shardcast's `HlsWindow::render` writes it (golden
    /// text): two finished segments, the second with its parts, and two
    /// parts of the third.
    const LL: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z
#EXTINF:2.000,
x/7.ts
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.123Z
#EXT-X-PART:DURATION=0.500,URI=\"x/8.0.ts\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.533,URI=\"x/8.1.ts\"
#EXTINF:1.033,
x/8.ts
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:23.156Z
#EXT-X-PART:DURATION=0.500,URI=\"x/9.0.ts\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI=\"x/9.1.ts\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"x/9.2.ts\"
";

    #[test]
    fn reads_a_low_latency_playlist() {
        let pl = parse_media_playlist(LL).unwrap();
        assert!(pl.is_low_latency());
        assert_eq!(pl.target_duration_ms, 2_000);
        assert_eq!(pl.part_target_ms, Some(500));
        assert_eq!(pl.part_hold_back_ms, Some(1_500));
        assert_eq!(pl.media_sequence, 7);
        let msns: Vec<u64> = pl.segments.iter().map(|s| s.msn).collect();
        assert_eq!(msns, [7, 8]);
        assert_eq!(pl.segments[0].uri, "x/7.ts");
        assert!(pl.segments[0].parts.is_empty());
        assert_eq!(
            pl.segments[1].parts,
            [
                Part {
                    duration_ms: 500,
                    uri: "x/8.0.ts",
                    independent: true
                },
                Part {
                    duration_ms: 533,
                    uri: "x/8.1.ts",
                    independent: false
                }
            ]
        );
        assert_eq!(pl.segments[1].duration_ms, 1_033);
        assert_eq!(pl.open_msn(), 9);
        assert_eq!(pl.open_parts.len(), 2);
        assert_eq!(pl.preload_hint, Some("x/9.2.ts"));
        assert!(!pl.ended);
    }

    #[test]
    fn reads_plain_and_delta_playlists() {
        let plain = "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:3\n\
                     #EXTINF:4.000,title\nhttp://h/a.ts\n#EXTINF:3.5,\n/b.ts\n#EXT-X-ENDLIST\n";
        let pl = parse_media_playlist(plain).unwrap();
        assert!(!pl.is_low_latency());
        assert_eq!(pl.segments.len(), 2);
        assert_eq!((pl.segments[1].msn, pl.segments[1].duration_ms), (4, 3_500));
        assert!(pl.ended);
        let delta = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n\
                     #EXT-X-SKIP:SKIPPED-SEGMENTS=3\n#EXTINF:2.0,\nx/13.ts\n";
        let pl = parse_media_playlist(delta).unwrap();
        assert_eq!(pl.segments[0].msn, 13);
    }

    #[test]
    fn refuses_what_a_player_cannot_use_naming_the_line() {
        let e = |text: &str| parse_media_playlist(text).unwrap_err();
        assert_eq!(e("").line, 1);
        assert_eq!(e("hello\n").what, "the first line is not #EXTM3U");
        let m = e("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nx.m3u8\n");
        assert_eq!(m.line, 2);
        assert!(m.what.contains("multivariant"), "{m}");
        assert_eq!(e("#EXTM3U\n#EXT-X-TARGETDURATION:2\nx.ts\n").line, 3);
        assert!(e("#EXTM3U\n#EXT-X-TARGETDURATION:two\n")
            .what
            .contains("'two'"));
        assert!(e("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n")
            .what
            .contains("TARGETDURATION"));
        assert!(e("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\nx.ts\n")
            .what
            .contains("-1"));
        assert!(
            e("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PART:DURATION=0.5\n")
                .what
                .contains("URI")
        );
        let mut many = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
        for i in 0..=PLAYLIST_SEGMENTS_MAX {
            many.push_str(&format!("#EXTINF:2,\n{i}.ts\n"));
        }
        assert!(e(&many).what.contains("more than"));
    }

    /// Found by `fuzz/fuzz_targets/hls_playlist.rs`: a target duration
    /// whose milliseconds overflow a u64 panicked (overflow checks) or
    /// wrapped. The input is the fuzzer's, cut to the lines that matter.
    #[test]
    fn fuzz_target_duration_too_large_is_refused() {
        let text = "\x0c#EXTM3U\n#EX:2\n#EXT-X-SERVER-CONTROL:CADURATION:2\n\
                    #EXT-X-TARGETDURATION:0000000000000000000000000000000000000000000000008198552921648689608\n";
        let err = parse_media_playlist(text).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.what.contains("too large"), "{}", err.what);
        let max = format!("#EXTM3U\n#EXT-X-TARGETDURATION:{}\n", u64::MAX / 1_000);
        assert_eq!(
            parse_media_playlist(&max).unwrap().target_duration_ms,
            u64::MAX / 1_000 * 1_000
        );
    }

    /// A media sequence near u64::MAX plus skipped and listed segments
    /// would overflow the msn of the segments and `open_msn`.
    #[test]
    fn media_sequence_numbers_that_overflow_are_refused() {
        let near = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
            u64::MAX
        );
        let err = parse_media_playlist(&near).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.what.contains("PLAYLIST_MSN_BASE_MAX"), "{}", err.what);
        let skip = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{PLAYLIST_MSN_BASE_MAX}\n\
             #EXT-X-SKIP:SKIPPED-SEGMENTS=1\n#EXTINF:2,\nx.ts\n"
        );
        assert_eq!(parse_media_playlist(&skip).unwrap_err().line, 4);
        let edge = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{PLAYLIST_MSN_BASE_MAX}\n#EXTINF:2,\nx.ts\n"
        );
        let pl = parse_media_playlist(&edge).unwrap();
        assert_eq!(pl.segments[0].msn, PLAYLIST_MSN_BASE_MAX);
        assert_eq!(pl.open_msn(), PLAYLIST_MSN_BASE_MAX + 1);
    }

    #[test]
    fn attribute_lists_keep_commas_inside_quotes() {
        let list = "A=1,URI=\"x,y.ts\",B=YES";
        assert_eq!(attribute(list, "URI"), Some("x,y.ts"));
        assert_eq!(attribute(list, "B"), Some("YES"));
        assert_eq!(attribute(list, "A"), Some("1"));
        assert_eq!(attribute(list, "C"), None);
    }
}
