//! Every codec enhanced RTMP carries, on every output: the real `shardcast`
//! binary, real E-RTMP publishers (the static ffmpeg 9 of PyPI's
//! imageio-ffmpeg, installed by scripts/test.sh into `.venv/`, for HEVC,
//! AV1 and Opus; Debian's ffmpeg for H.264 + AAC), and real readers:
//! ffmpeg records RTMP and HTTP-FLV, this file fetches HLS-TS and
//! HLS-fMP4 over raw HTTP, and Debian's ffprobe and ffmpeg read what came.
//!
//! Each case encodes live a small picture (320x240, 30 fps, 2 s GOP) and a
//! 440 Hz sine at 48 kHz, with fast presets: the cases run in parallel on
//! shared cores.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_client::{self, Response};
use common::*;
use proto::ts::{check_packets, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265};

/// One publish: how it is encoded and what every output must show.
struct Case {
    stream: &'static str,
    /// Encoded by ffmpeg 9 (E-RTMP), else by Debian's ffmpeg.
    enhanced: bool,
    video_args: &'static [&'static str],
    audio_args: &'static [&'static str],
    expect: Expect<'static>,
    /// The sample entries the fMP4 init segment must hold.
    init_boxes: &'static [&'static [u8; 4]],
    /// The PMT's stream types in `?container=ts` segments: exactly the
    /// tracks TS carries, never one announced as another.
    ts_stream_types: &'static [u8],
    /// The container a playlist request naming none gets.
    default_container: &'static str,
    /// The multivariant playlist's CODECS, each as a prefix (the profile
    /// and level digits after it depend on the encoder's choices).
    codecs: &'static [&'static str],
}

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
/// Opus frames are 20 ms.
const OPUS_FPS: f64 = 50.0;
/// AAC frames of 1024 samples at 48 kHz.
const AAC_48K_FPS: f64 = 48_000.0 / 1024.0;

const X265: &[&str] = &[
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "keyint=60:min-keyint=60:scenecut=0:log-level=error",
];
const AAC: &[&str] = &["-c:a", "aac", "-b:a", "96k"];

fn expect(video: &'static str, audio: &'static str) -> Expect<'static> {
    Expect {
        video: Some((video, WIDTH, HEIGHT)),
        fps: FPS,
        audio: Some((audio, 48_000)),
        audio_fps: if audio == "opus" {
            OPUS_FPS
        } else {
            AAC_48K_FPS
        },
        video_gap_max_s: Some(0.1),
    }
}

/// Encodes the test picture and tone live with the case's codecs and
/// publishes them to `live/<stream>`; waits for the server's `publish`.
fn publish(server: &Server, case: &Case) -> Proc {
    let bin = if case.enhanced {
        ffmpeg9()
    } else {
        PathBuf::from("ffmpeg")
    };
    let args: Vec<&str> = case
        .video_args
        .iter()
        .chain(case.audio_args)
        .copied()
        .collect();
    let p = encode_and_publish(
        &bin,
        &format!("publish-{}", case.stream),
        &server.url(&format!("live/{}", case.stream)),
        &format!("{WIDTH}x{HEIGHT}"),
        &args,
    );
    wait_published(server, p, &live_key(case.stream))
}

/// Records 4 s of `url` with `-c copy` into MP4 (ffmpeg 9 reads E-RTMP;
/// Debian's ffprobe reads the file) and probes it.
fn record_and_probe(case: &Case, what: &str, url: &str) -> Probe {
    let path = artefact_dir().join(format!("{}-{what}.mp4", case.stream));
    let mut cmd = Command::new(ffmpeg9());
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(["-rw_timeout", "10000000", "-i", url])
        .args(["-t", "4", "-c", "copy", "-f", "mp4"])
        .arg(&path)
        .stdout(Stdio::null());
    let mut p = Proc::spawn(&format!("record-{}-{what}", case.stream), &mut cmd);
    let status = p.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "recording {url}: {status:?}\n{}",
        p.stderr_tail(20)
    );
    ffprobe(
        &format!("probe-{}-{what}", case.stream),
        path.to_str().expect("a UTF-8 path"),
        None,
        Duration::from_secs(20),
    )
}

/// `GET /live/<rel>`, 200 expected.
fn get_live(server: &Server, rel: &str) -> Response {
    let path = format!("/live/{rel}");
    let r = http_client::get(server.port, &path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.head.status, 200, "GET {path}: {}", r.text());
    r
}

/// The playlist `<stream>.m3u8<query>` once it lists `segments` finished
/// segments.
fn playlist_with(server: &Server, stream: &str, query: &str, segments: usize) -> String {
    let rel = format!("{stream}.m3u8{query}");
    wait_for(Duration::from_secs(40), || {
        let r = http_client::get(
            server.port,
            &format!("/live/{rel}"),
            Duration::from_secs(10),
        )
        .ok()?;
        let text = r.text();
        (r.head.status == 200 && text.matches("#EXTINF").count() >= segments).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "{rel}: no playlist with {segments} segments\n{}",
            server.log_tail(30)
        )
    })
}

fn media_uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

/// HLS in fMP4: the init segment holds the case's sample entries; every
/// segment is valid fragments (box sizes, sequence numbers increasing,
/// per-track `tfdt` continuous within a frame); a segment equals its parts
/// joined; ffprobe reads the codecs, size and a steady frame rate from
/// the init segment and 3+ segments joined, and `ffmpeg -v error` decodes
/// them without a word.
fn check_fmp4(server: &Server, case: &Case) {
    let text = playlist_with(server, case.stream, "?container=fmp4", 4);
    assert!(text.contains("#EXT-X-VERSION:6"), "{text}");
    let map = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no EXT-X-MAP in\n{text}"));
    let init = get_live(server, map).body;
    assert_eq!(&init[4..8], b"ftyp", "{map}");
    for b in case.init_boxes {
        assert!(
            init.windows(4).any(|w| w == *b),
            "{map}: no {:?} box",
            String::from_utf8_lossy(*b)
        );
    }
    // The video sample entry (ISO 14496-12 12.1.3, VisualSampleEntry):
    // its width and height follow 24 bytes after the box type.
    let entry = init
        .windows(4)
        .position(|w| w == case.init_boxes[0])
        .expect("the video sample entry");
    let be16 = |at: usize| u32::from(u16::from_be_bytes([init[at], init[at + 1]]));
    assert_eq!(
        (be16(entry + 28), be16(entry + 30)),
        (WIDTH, HEIGHT),
        "{map}: the {:?} entry's width and height",
        String::from_utf8_lossy(case.init_boxes[0])
    );
    let uris: Vec<&str> = media_uris(&text);
    let segments: Vec<Vec<u8>> = uris.iter().map(|u| get_live(server, u).body).collect();
    check_fragment_run(uris.iter().copied().zip(segments.iter().map(Vec::as_slice)));
    let mut joined = init.to_vec();
    joined.extend(segments.iter().flatten());
    // The last finished segment whose parts are all listed: its parts
    // joined are the segment.
    let chunks: Vec<&str> = text.split("#EXTINF").collect();
    let (with_parts, seg_uri) = chunks
        .windows(2)
        .rev()
        .filter(|w| w[0].contains("#EXT-X-PART:") && w[0].contains(".0.m4s"))
        .filter_map(|w| {
            // w[1] starts with the rest of its EXTINF line.
            let (_, after) = w[1].split_once('\n')?;
            Some((w[0], media_uris(after).first().copied()?))
        })
        .next()
        .expect("a finished segment with all its parts listed");
    let parts: Vec<u8> = with_parts
        .lines()
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .filter(|u| is_part_uri(u))
        .flat_map(|u| get_live(server, u).body)
        .collect();
    assert_eq!(
        parts,
        get_live(server, seg_uri).body,
        "{seg_uri}: its parts joined"
    );

    let file = format!("{}-fmp4.mp4", case.stream);
    let probe = probe_bytes(&file, &joined);
    check_media(&probe, &case.expect, 5.0)
        .unwrap_or_else(|e| panic!("fMP4 init + {} segments: {e}", uris.len()));
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(artefact_dir().join(&file))
        .args(["-f", "null", "-"]);
    let mut decode = Proc::spawn(&format!("decode-{}", case.stream), &mut cmd);
    let status = decode.wait_timeout(Duration::from_secs(60));
    let said = std::fs::read_to_string(&decode.stderr_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && said.trim().is_empty(),
        "ffmpeg -v error decoding {file}: {status:?}\n{said}"
    );
}

/// `?multivariant=1`: one variant whose CODECS name every track of the
/// default container (and with `container=ts` only what TS carries),
/// RESOLUTION and FRAME-RATE those of the picture, a BANDWIDTH, and a URI
/// that is the media playlist.
fn check_multivariant(server: &Server, case: &Case) {
    let text = playlist_with(server, case.stream, "?multivariant=1", 0);
    let inf = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:"))
        .unwrap_or_else(|| panic!("no EXT-X-STREAM-INF in\n{text}"));
    let attr = |name: &str| {
        let at = inf.find(&format!("{name}="))? + name.len() + 1;
        let rest = &inf[at..];
        Some(match rest.strip_prefix('"') {
            Some(q) => q[..q.find('"')?].to_string(),
            None => rest.split(',').next()?.to_string(),
        })
    };
    let codecs = attr("CODECS").unwrap_or_default();
    let listed: Vec<&str> = codecs.split(',').collect();
    assert_eq!(listed.len(), case.codecs.len(), "CODECS {codecs:?}");
    for (got, want) in listed.iter().zip(case.codecs) {
        assert!(
            got.starts_with(want),
            "CODECS {codecs:?}: {got} is not {want}…"
        );
    }
    assert_eq!(
        attr("RESOLUTION").as_deref(),
        Some(format!("{WIDTH}x{HEIGHT}").as_str()),
        "{inf}"
    );
    let fps: f64 = attr("FRAME-RATE")
        .and_then(|f| f.parse().ok())
        .unwrap_or(0.0);
    assert!((29.5..=30.5).contains(&fps), "FRAME-RATE in {inf}");
    let bandwidth: u64 = attr("BANDWIDTH").and_then(|b| b.parse().ok()).unwrap_or(0);
    assert!(bandwidth > 10_000, "BANDWIDTH in {inf}");
    let uri = media_uris(&text)[0];
    let media = get_live(server, uri).text();
    assert!(media.contains("#EXTINF"), "{uri}:\n{media}");
    assert_eq!(
        media.contains("#EXT-X-MAP"),
        case.default_container == "fmp4",
        "{uri}:\n{media}"
    );

    let carried = case.ts_stream_types.len();
    if carried == 0 {
        // No TS variant of a stream TS carries nothing of.
        expect_no_ts(server, case, "?multivariant=1&container=ts");
        return;
    }
    let ts = playlist_with(server, case.stream, "?multivariant=1&container=ts", 0);
    let ts_codecs: Vec<&str> = ts
        .split("CODECS=\"")
        .nth(1)
        .and_then(|c| c.split('"').next())
        .map(|c| c.split(',').collect())
        .unwrap_or_default();
    assert_eq!(ts_codecs.len(), carried, "TS variant: {ts}");
}

/// A TS playlist request (`query`) for a stream TS carries nothing of:
/// a 404 that names fMP4, not segments of PAT and PMT alone.
fn expect_no_ts(server: &Server, case: &Case, query: &str) {
    let target = format!("/live/{}.m3u8{query}", case.stream);
    let r = http_client::get(server.port, &target, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    let text = r.text();
    assert_eq!(r.head.status, 404, "GET {target}:\n{text}");
    assert!(text.contains("?container=fmp4"), "GET {target}: {text}");
    println!("{target}: 404 {}", text.trim());
}

/// A part URI (`N.M.m4s`), not a preload hint or a segment.
fn is_part_uri(uri: &str) -> bool {
    let file = uri.rsplit('/').next().unwrap_or(uri);
    file.matches('.').count() == 2
}

/// HLS in MPEG-TS: the PMT lists exactly what TS carries of the case
/// (nothing: [`expect_no_ts`]).
fn check_ts(server: &Server, case: &Case) {
    if case.ts_stream_types.is_empty() {
        expect_no_ts(server, case, "?container=ts");
        return;
    }
    // Not the first segment: the publish's sequence headers arrive one
    // after the other, and the PMT of its start follows them.
    let text = playlist_with(server, case.stream, "?container=ts", 2);
    let uri = media_uris(&text)[1];
    let seg = get_live(server, uri).body;
    let summary = check_packets(&seg).unwrap_or_else(|e| panic!("{uri}: {e:?}"));
    assert_eq!(
        summary.stream_types(),
        case.ts_stream_types,
        "{uri}: the PMT's streams"
    );
    let file = format!("{}-ts.ts", case.stream);
    let probe = probe_bytes(&file, &seg);
    // ffprobe lists a program's streams, then every stream: by index.
    let kinds: Vec<String> = probe
        .streams
        .iter()
        .filter_map(|s| Some((s.get("index")?.parse::<u32>().ok()?, s.get("codec_name")?)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_values()
        .cloned()
        .collect();
    let want: Vec<&str> = case
        .ts_stream_types
        .iter()
        .map(|t| match *t {
            STREAM_TYPE_H264 => "h264",
            STREAM_TYPE_H265 => "hevc",
            STREAM_TYPE_AAC_ADTS => "aac",
            other => panic!("stream type {other:#x}"),
        })
        .collect();
    assert_eq!(kinds, want, "ffprobe of {uri}");
}

fn run(case: &Case) {
    let server = Server::start();
    let _publisher = publish(&server, case);
    let started = Instant::now();

    let rtmp = record_and_probe(case, "rtmp", &server.url(&format!("live/{}", case.stream)));
    check_media(&rtmp, &case.expect, 3.0).unwrap_or_else(|e| panic!("RTMP: {e}"));
    let flv = server.http_url(&format!("live/{}.flv", case.stream));
    let flv = record_and_probe(case, "flv", &flv);
    check_media(&flv, &case.expect, 3.0).unwrap_or_else(|e| panic!("HTTP-FLV: {e}"));

    check_ts(&server, case);
    check_fmp4(&server, case);

    check_multivariant(&server, case);

    let plain = playlist_with(&server, case.stream, "", 1);
    let default_is_fmp4 = plain.contains("#EXT-X-MAP");
    assert_eq!(
        default_is_fmp4,
        case.default_container == "fmp4",
        "a playlist naming no container:\n{plain}"
    );
    eprintln!(
        "{}: every output checked in {:.1} s",
        case.stream,
        started.elapsed().as_secs_f64()
    );
    let errors = server.find_logs(|l| l.contains(" ERROR "));
    assert!(errors.is_empty(), "server errors: {errors:?}");
}

#[test]
fn h264_and_aac_on_every_output() {
    run(&Case {
        stream: "h264aac",
        enhanced: false,
        video_args: &[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-sc_threshold",
            "0",
        ],
        audio_args: AAC,
        expect: expect("h264", "aac"),
        init_boxes: &[b"avc1", b"avcC", b"mp4a", b"esds"],
        ts_stream_types: &[STREAM_TYPE_H264, STREAM_TYPE_AAC_ADTS],
        default_container: "ts",
        codecs: &["avc1.", "mp4a.40.2"],
    });
}

#[test]
fn hevc_and_aac_on_every_output() {
    run(&Case {
        stream: "hevcaac",
        enhanced: true,
        video_args: X265,
        audio_args: AAC,
        expect: expect("hevc", "aac"),
        init_boxes: &[b"hvc1", b"hvcC", b"mp4a", b"esds"],
        ts_stream_types: &[STREAM_TYPE_H265, STREAM_TYPE_AAC_ADTS],
        default_container: "ts",
        codecs: &["hvc1.1.6.L", "mp4a.40.2"],
    });
}

/// TS carries the HEVC and leaves the Opus out (never announced as AAC);
/// the default container is fMP4, which carries both.
#[test]
fn hevc_and_opus_on_every_output() {
    run(&Case {
        stream: "hevcopus",
        enhanced: true,
        video_args: X265,
        audio_args: OPUS_ARGS,
        expect: expect("hevc", "opus"),
        init_boxes: &[b"hvc1", b"hvcC", b"Opus", b"dOps"],
        ts_stream_types: &[STREAM_TYPE_H265],
        default_container: "fmp4",
        codecs: &["hvc1.1.6.L", "opus"],
    });
}

/// TS carries neither: a TS playlist request gets a 404 naming fMP4.
#[test]
fn av1_and_opus_on_every_output() {
    run(&Case {
        stream: "av1opus",
        enhanced: true,
        video_args: SVT_AV1_ARGS,
        audio_args: OPUS_ARGS,
        expect: expect("av1", "opus"),
        init_boxes: &[b"av01", b"av1C", b"Opus", b"dOps"],
        ts_stream_types: &[],
        default_container: "fmp4",
        codecs: &["av01.0.", "opus"],
    });
}
