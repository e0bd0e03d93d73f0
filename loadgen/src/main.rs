//! `shardcast-bench`: the fan-out load generator.
//!
//! ```text
//! shardcast-bench publish rtmp://host:8079/live/bench [--bitrate 2500k] [--fps 30] [--gop 2s] [--no-audio]
//! shardcast-bench play    rtmp://host:8079/live/bench --players 1000 [--ramp 500/s]
//! shardcast-bench play    http://host:8079/live/bench.flv --players 1000
//! shardcast-bench play    http://host:8079/live/bench.m3u8 --players 1000 [--hls-plain]
//! shardcast-bench play    rtmps://host:8079/live/bench --players 1000 --cacert ca.pem
//! shardcast-bench fanout  --url rtmp://host:8079/live/bench --players 1000 [--server-pid PID] [--json]
//! shardcast-bench fanout  --url http://host:8000/live/bench.flv [--publish-url rtmp://host:1935/live/bench] ...
//! ```
//!
//! Thread-per-core on glommio like the server. The publisher speaks RTMP
//! on the project's sans-IO client ([`proto::rtmp::client`]) and sends
//! a synthetic H.264 + AAC stream ([`synth`]) whose video frames carry a
//! sequence number and their send time. Players speak what the play URL
//! says: `rtmp://` RTMP ([`rtmp`]), `http://…/app/stream.flv` HTTP-FLV
//! ([`http`]), `http://…/app/stream.m3u8` HLS ([`hls`]: LL-HLS parts after
//! blocking playlist reloads, or plain HLS segments, on one keep-alive
//! connection each, the stamp read from the TS); `https://` plays both
//! and `rtmps://` plays RTMP over TLS ([`tls`], rustls; `--cacert PEM` or
//! `--insecure`). Whatever the protocol, they count what they get, parse only
//! the FLV header flags and that stamp, and report time to first frame,
//! end-to-end latency, stalls and skipped frames. Once media flows, RTMP
//! and HTTP-FLV players wait on their thread's epoll set, checked every
//! millisecond ([`sweep`]), not on a wakeup per packet, which on loopback
//! the server would pay for. In a fanout the
//! publisher goes to `--publish-url`, by default the play URL if it is
//! rtmp://, else plain RTMP on the play URL's host and port (shardcast
//! serves all of them on one port). Every run stops by itself ([`DURATION_MAX`], and a
//! watchdog after it) and connects only to the addresses its URLs name.

mod hls;
mod hls_ts;
mod http;
mod net;
mod procstat;
mod rtmp;
mod runtime;
mod stats;
mod sweep;
mod synth;
mod tls;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proto::rtmp::client::RtmpUrl;
use serde::Serialize;

use runtime::{Plan, RunResult, Target};
use stats::{Hists, Percentiles, PlayerState, OK_SHARE};
use synth::SynthConfig;

/// Longest run.
const DURATION_MAX: Duration = Duration::from_secs(3600);
/// Most players one process may run.
const PLAYERS_MAX: usize = 100_000;
/// Most threads.
const THREADS_MAX: usize = 256;
/// Highest video or audio bitrate, in bit/s.
const BITRATE_MAX: u64 = 200_000_000;
/// The window must be at least this long to judge rates.
const WINDOW_MIN: Duration = Duration::from_secs(2);
/// Timer lag beyond these means the bench itself is late.
const TIMER_LAG_P99_WARN_MS: f64 = 20.0;
const TIMER_LAG_MAX_WARN_MS: f64 = 200.0;
/// File descriptors kept beyond one per player (executors, stdio, /proc).
const FDS_SPARE: u64 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "shardcast-bench",
    version,
    about = "Fan-out load generator: publishes a synthetic stream and plays it with many players"
)]
struct Cli {
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Threads (one glommio executor each); 0 = one per online core.
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// Pin thread k to the k-th online CPU.
    #[arg(long, global = true)]
    pin_cores: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Publish the synthetic stream to URL.
    Publish {
        /// rtmp://host[:port]/app/stream
        url: String,
        #[command(flatten)]
        stream: StreamArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Play URL with many players.
    Play {
        /// rtmp://host[:port]/app/stream, HTTP-FLV
        /// http://host[:port]/app/stream.flv[?query], or HLS
        /// http://host[:port]/app/stream.m3u8; rtmps:// and https:// for
        /// the same over TLS (with --cacert or --insecure)
        url: String,
        #[command(flatten)]
        load: LoadArgs,
        /// The stream's media bitrate (audio + video) a player must receive
        /// 90% of to be OK, e.g. 2628k. Default: the best player's rate.
        #[arg(long, value_parser = parse_bitrate)]
        expect_bitrate: Option<u64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Publish and play in one process.
    Fanout {
        /// What players play: rtmp://host[:port]/app/stream, HTTP-FLV
        /// http://host[:port]/app/stream.flv[?query], or HLS
        /// http://host[:port]/app/stream.m3u8; rtmps:// and https:// for
        /// the same over TLS (with --cacert or --insecure)
        #[arg(long)]
        url: String,
        /// Where the publisher publishes, rtmp://host[:port]/app/stream.
        /// Default: --url if it is rtmp://, else rtmp:// on --url's host
        /// and port with its path (for http(s):// less the extension and
        /// query): right for shardcast, which serves RTMP, RTMPS, HTTP and
        /// HTTPS on one port.
        #[arg(long)]
        publish_url: Option<String>,
        #[command(flatten)]
        stream: StreamArgs,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args, Debug, Clone)]
struct StreamArgs {
    /// Video bitrate, e.g. 2500k or 6M.
    #[arg(long, default_value = "2500k", value_parser = parse_bitrate)]
    bitrate: u64,
    /// Video frames per second.
    #[arg(long, default_value_t = 30.0)]
    fps: f64,
    /// Keyframe interval, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = parse_secs)]
    gop: f64,
    /// Video only.
    #[arg(long)]
    no_audio: bool,
    /// Audio bitrate (AAC frames padded to it).
    #[arg(long, default_value = "128k", value_parser = parse_bitrate)]
    audio_bitrate: u64,
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// Number of players.
    #[arg(long)]
    players: usize,
    /// Players started per second, e.g. 500/s.
    #[arg(long, default_value = "1000/s", value_parser = parse_rate)]
    ramp: f64,
    /// SO_RCVLOWAT for players once playing: a player wakes only when this
    /// many bytes are queued, so small audio messages are read with the
    /// next video frame (video latency is unaffected while video frames are
    /// larger). 0 = off. Default: 2048 in a fanout whose inter frames are
    /// at least 4 KiB, else off.
    #[arg(long)]
    rcvlowat: Option<u32>,
    /// HLS: play as plain HLS players (whole segments, playlist polling)
    /// even when the playlist is low-latency.
    #[arg(long)]
    hls_plain: bool,
    /// https:// and rtmps://: trust the certificates in this PEM file.
    #[arg(long, value_name = "PATH", conflicts_with = "insecure")]
    cacert: Option<std::path::PathBuf>,
    /// https:// and rtmps://: accept any server certificate (benchmarks
    /// only; the handshake's signature is still checked).
    #[arg(long)]
    insecure: bool,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Length of the run from the first player's start (or the publish's),
    /// e.g. 20 or 20s.
    #[arg(long, default_value = "20s", value_parser = parse_secs)]
    duration: f64,
    /// Sample this process's CPU time and RSS (the server under test).
    #[arg(long)]
    server_pid: Option<u32>,
}

/// `2500k`, `2.5M`, `800000` (bit/s).
fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a bitrate like 2500k or 6M"))?;
    let bps = v * mult;
    if !(1000.0..=BITRATE_MAX as f64).contains(&bps) {
        return Err(format!(
            "bitrate {s} outside 1k..={}M",
            BITRATE_MAX / 1_000_000
        ));
    }
    Ok(bps as u64)
}

/// `20`, `20s`, `500ms` (seconds).
fn parse_secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 20s or 500ms"))?;
    let secs = v * mult;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration '{s}' must be positive"));
    }
    Ok(secs)
}

/// `500`, `500/s`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix("/s").unwrap_or(t);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a rate like 500/s"))?;
    if !(v.is_finite() && v > 0.0 && v <= 1e6) {
        return Err(format!("ramp '{s}' must be in (0, 1000000]/s"));
    }
    Ok(v)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("shardcast-bench: {msg}");
    std::process::exit(2);
}

/// What players of a URL speak: by its scheme and, for http://, by the
/// extension of its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UrlKind {
    Rtmp,
    /// rtmps://: RTMP over TLS.
    Rtmps,
    HttpFlv,
    Hls,
}

fn url_kind(url: &str) -> Result<UrlKind, String> {
    if url.starts_with("rtmp://") {
        return Ok(UrlKind::Rtmp);
    }
    if url.starts_with("rtmps://") {
        return Ok(UrlKind::Rtmps);
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        if path.ends_with(".flv") {
            return Ok(UrlKind::HttpFlv);
        }
        if path.ends_with(".m3u8") {
            return Ok(UrlKind::Hls);
        }
        return Err(format!(
            "{url}: an http(s):// URL must end in .flv (HTTP-FLV) or .m3u8 (HLS)"
        ));
    }
    Err(format!(
        "{url}: use an rtmp(s):// URL, http(s)://…/app/stream.flv for HTTP-FLV \
         or http(s)://…/app/stream.m3u8 for HLS"
    ))
}

/// Resolves a host; only hosts named on the command line get here.
fn resolve(host: &str, port: u16) -> SocketAddr {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| fail(format!("cannot resolve {host}")))
}

/// Players' target for URL; nothing else is ever connected to.
fn player_target(url: &str, load: &LoadArgs) -> Target {
    match url_kind(url).unwrap_or_else(|e| fail(e)) {
        UrlKind::Rtmp | UrlKind::Rtmps => {
            let (addr, parsed) = rtmp_url(url);
            let tls = tls_client(parsed.tls.then_some(TlsScheme::Rtmps), &parsed.host, load);
            Target::Rtmp(rtmp::RtmpTarget {
                addr,
                url: parsed,
                tls,
            })
        }
        UrlKind::HttpFlv => {
            let (addr, parsed) = http_url(url);
            let tls = tls_client(parsed.tls.then_some(TlsScheme::Https), &parsed.host, load);
            Target::HttpFlv(http::HttpFlvTarget::new(addr, parsed, tls))
        }
        UrlKind::Hls => {
            let (addr, url) = http_url(url);
            let tls = tls_client(url.tls.then_some(TlsScheme::Https), &url.host, load);
            Target::Hls(hls::HlsTarget {
                addr,
                url,
                plain: load.hls_plain,
                tls,
            })
        }
    }
}

/// The scheme of a player URL over TLS.
#[derive(Clone, Copy, Debug)]
enum TlsScheme {
    Https,
    Rtmps,
}

impl TlsScheme {
    fn name(self) -> &'static str {
        match self {
            TlsScheme::Https => "https",
            TlsScheme::Rtmps => "rtmps",
        }
    }

    /// The ALPN protocol its players offer.
    fn alpn(self) -> Option<&'static [u8]> {
        match self {
            TlsScheme::Https => Some(tls::ALPN_HTTP1),
            TlsScheme::Rtmps => None,
        }
    }
}

/// The TLS client of a player URL on `host` whose scheme is `tls`,
/// trusting what --cacert or --insecure says; None for a plain URL.
fn tls_client(tls: Option<TlsScheme>, host: &str, load: &LoadArgs) -> Option<tls::TlsClient> {
    let Some(scheme) = tls else {
        if load.cacert.is_some() || load.insecure {
            fail("--cacert and --insecure are for https:// and rtmps:// URLs");
        }
        return None;
    };
    let trust = match (&load.cacert, load.insecure) {
        (Some(path), _) => tls::Trust::CaFile(path),
        (None, true) => tls::Trust::Insecure,
        (None, false) => fail(format!(
            "an {}:// URL needs --cacert PEM or --insecure",
            scheme.name()
        )),
    };
    let config = tls::client_config(trust, scheme.alpn()).unwrap_or_else(|e| fail(e));
    Some(tls::TlsClient::new(config, host).unwrap_or_else(|e| fail(e)))
}

/// An http:// URL and the address it names.
fn http_url(url: &str) -> (SocketAddr, http::HttpUrl) {
    let parsed = http::HttpUrl::parse(url).unwrap_or_else(|e| fail(e));
    (resolve(&parsed.host, parsed.port), parsed)
}

/// An rtmp:// or rtmps:// URL and the address it names.
fn rtmp_url(url: &str) -> (SocketAddr, RtmpUrl) {
    let parsed = RtmpUrl::parse(url).unwrap_or_else(|e| fail(format!("{url}: {e}")));
    (resolve(&parsed.host, parsed.port), parsed)
}

/// The publisher's target: plain RTMP only.
fn rtmp_target(url: &str) -> rtmp::RtmpTarget {
    if url_kind(url) != Ok(UrlKind::Rtmp) {
        fail(format!(
            "{url}: publishing needs an rtmp:// URL (the bench publishes plain RTMP only)"
        ));
    }
    let (addr, url) = rtmp_url(url);
    rtmp::RtmpTarget {
        addr,
        url,
        tls: None,
    }
}

/// Where a fanout publishes when --publish-url is absent: the play URL
/// itself if it is rtmp://, else plain RTMP on the same host and port.
fn default_publish_url(play_url: &str) -> String {
    match url_kind(play_url) {
        Ok(UrlKind::Rtmp) => play_url.to_string(),
        Ok(UrlKind::Rtmps) => {
            let url = RtmpUrl::parse(play_url).unwrap_or_else(|e| fail(format!("{play_url}: {e}")));
            RtmpUrl { tls: false, ..url }.to_string()
        }
        _ => http::HttpUrl::parse(play_url)
            .unwrap_or_else(|e| fail(e))
            .rtmp_publish_url(),
    }
}

fn synth_config(s: &StreamArgs) -> SynthConfig {
    if !(1.0..=240.0).contains(&s.fps) {
        fail(format!("--fps {} outside 1..=240", s.fps));
    }
    if !(0.1..=60.0).contains(&s.gop) {
        fail(format!("--gop {} s outside 0.1..=60 s", s.gop));
    }
    SynthConfig {
        video_bps: s.bitrate,
        fps: s.fps,
        gop_s: s.gop,
        audio: !s.no_audio,
        audio_bps: s.audio_bitrate,
    }
}

/// Inter frames at least this large make the automatic SO_RCVLOWAT safe.
const RCVLOWAT_AUTO_FRAME_MIN: usize = 4096;
const RCVLOWAT_AUTO: u32 = 2048;
const _: () = assert!(RCVLOWAT_AUTO as usize * 2 <= RCVLOWAT_AUTO_FRAME_MIN);

fn rcvlowat(load: Option<&LoadArgs>, stream: Option<&StreamArgs>) -> u32 {
    match (load.and_then(|l| l.rcvlowat), stream) {
        (Some(v), _) => v,
        (None, Some(s)) => {
            let (_, inter) = synth_config(s).video_frame_sizes();
            if inter >= RCVLOWAT_AUTO_FRAME_MIN {
                RCVLOWAT_AUTO
            } else {
                0
            }
        }
        (None, None) => 0,
    }
}

fn main() {
    let cli = Cli::parse();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if cli.threads == 0 { cores } else { cli.threads };
    if threads > THREADS_MAX {
        fail(format!("--threads {threads} above {THREADS_MAX}"));
    }
    let (mode, url, publish_url, stream, load, run, expect) = match &cli.command {
        Command::Publish { url, stream, run } => (
            "publish",
            url,
            Some(url.clone()),
            Some(stream),
            None,
            run,
            None,
        ),
        Command::Play {
            url,
            load,
            expect_bitrate,
            run,
        } => ("play", url, None, None, Some(load), run, *expect_bitrate),
        Command::Fanout {
            url,
            publish_url,
            stream,
            load,
            run,
        } => {
            // The players' URL is judged first: an unsupported one is the
            // error to report.
            player_target(url, load);
            let publish_url = publish_url
                .clone()
                .unwrap_or_else(|| default_publish_url(url));
            (
                "fanout",
                url,
                Some(publish_url),
                Some(stream),
                Some(load),
                run,
                None,
            )
        }
    };
    let duration = Duration::from_secs_f64(run.duration);
    if duration > DURATION_MAX {
        fail(format!(
            "--duration {} s above the cap of {} s",
            run.duration,
            DURATION_MAX.as_secs()
        ));
    }
    let players = load.map_or(0, |l| l.players);
    if players > PLAYERS_MAX {
        fail(format!("--players {players} above {PLAYERS_MAX}"));
    }
    let plan = Plan {
        mode,
        target: load.map(|l| player_target(url, l)),
        publish: stream
            .zip(publish_url.as_deref())
            .map(|(s, u)| rtmp::PublishPlan {
                target: rtmp_target(u),
                synth: synth_config(s),
            }),
        players,
        ramp_per_s: load.map_or(1.0, |l| l.ramp),
        duration,
        // A publisher alone needs one thread.
        threads: if players == 0 {
            1
        } else {
            threads.min(players)
        },
        pin_cores: cli.pin_cores,
        // HLS responses (a playlist, an error) may be shorter than any
        // low-water mark, which would hold them back: never for HLS.
        rcvlowat: if url_kind(url) == Ok(UrlKind::Hls) {
            0
        } else {
            rcvlowat(load, stream)
        },
    };
    if players > 0 {
        let needed = plan.ramp_time() + runtime::SETTLE + WINDOW_MIN;
        if needed > duration {
            fail(format!(
                "--duration {} s leaves no measurement window: the ramp takes {:.1} s, \
                 then {} s to settle, and the window needs {} s; use --duration {:.0} or a \
                 faster --ramp",
                run.duration,
                plan.ramp_time().as_secs_f64(),
                runtime::SETTLE.as_secs(),
                WINDOW_MIN.as_secs(),
                needed.as_secs_f64().ceil()
            ));
        }
        match procstat::raise_nofile_limit() {
            Ok(limit) if limit < players as u64 + FDS_SPARE => fail(format!(
                "the open-files limit is {limit}, too low for {players} players \
                 (raise it with ulimit -n)"
            )),
            Ok(_) => {}
            Err(e) => eprintln!("shardcast-bench: could not raise the open-files limit: {e}"),
        }
    }
    let plan = Arc::new(plan);
    let result = runtime::run(plan.clone(), run.server_pid)
        .unwrap_or_else(|e| fail(format!("cannot run: {e}")));
    let report = build_report(
        &plan,
        url,
        publish_url.as_deref(),
        &result,
        stream,
        expect,
        run.server_pid,
    );
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => fail(format!("JSON: {e}")),
        }
    } else {
        print_table(&report);
    }
    if let Some(reason) = &report.aborted {
        eprintln!("shardcast-bench: run aborted: {reason}");
        std::process::exit(1);
    }
}

#[derive(Serialize, Debug)]
struct Report {
    mode: &'static str,
    url: String,
    /// Where the in-process publisher published, if there was one.
    publish_url: Option<String>,
    threads: usize,
    /// Players' SO_RCVLOWAT (0 = off).
    rcvlowat: u32,
    duration_s: f64,
    /// The measurement window (after the ramp and settling).
    window_s: f64,
    players: PlayersReport,
    publish: Option<PublishReport>,
    /// Media bitrate a player must get 90% of, and where it came from.
    reference_media_bps: Option<f64>,
    reference_source: &'static str,
    /// Socket bytes all players received in the window, as Gbit/s.
    delivered_gbps: f64,
    /// From the start of the TCP connect, in ms.
    ttff_ms: Percentiles,
    first_keyframe_ms: Percentiles,
    /// Publisher send to player receive, live frames only, in ms.
    latency_ms: Percentiles,
    /// How late each thread's 100 ms timer fired, in ms.
    timer_lag_ms: Percentiles,
    bench: BenchReport,
    server: Option<ServerReport>,
    errors: BTreeMap<String, u64>,
    warnings: Vec<String>,
    aborted: Option<String>,
}

#[derive(Serialize, Debug, Default)]
struct PlayersReport {
    requested: usize,
    connected: usize,
    failed: usize,
    dropped: usize,
    not_started: usize,
    ok: usize,
    stalls: u64,
    players_with_stalls: usize,
    skipped_frames: u64,
    /// Coded video frames all players received (sequence headers aside).
    video_frames_received: u64,
}

#[derive(Serialize, Debug)]
struct PublishReport {
    video_bitrate_bps: u64,
    audio_bitrate_bps: Option<u64>,
    fps: f64,
    gop_s: f64,
    /// Media payload the publisher sent in the window, as bit/s.
    measured_media_bps: Option<f64>,
    video_frames: u64,
    audio_frames: u64,
    send_lag_max_ms: f64,
}

#[derive(Serialize, Debug)]
struct BenchReport {
    cpu_s_window: Option<f64>,
    /// Of one core (100 = one core busy).
    cpu_pct_window: Option<f64>,
    cpu_s_total: f64,
    wall_s: f64,
}

#[derive(Serialize, Debug)]
struct ServerReport {
    pid: u32,
    cpu_s_window: Option<f64>,
    cpu_pct_window: Option<f64>,
    rss_mb_start: Option<f64>,
    rss_mb_end: Option<f64>,
    cpu_s_per_gbit: Option<f64>,
}

fn build_report(
    plan: &Plan,
    url: &str,
    publish_url: Option<&str>,
    r: &RunResult,
    stream: Option<&StreamArgs>,
    expect: Option<u64>,
    server_pid: Option<u32>,
) -> Report {
    let window = r.timeline.map(|t| t.window);
    let window_s = window.map_or(0.0, |w| w.secs());
    let mut hists = Hists::default();
    let mut errors = stats::ErrorCounts::default();
    let mut players = Vec::new();
    let mut publisher = None;
    for t in &r.threads {
        hists.merge(&t.hists);
        errors.merge(&t.errors);
        players.extend_from_slice(&t.players);
        if t.publisher.is_some() {
            publisher = t.publisher.clone();
        }
    }
    let rate = |bytes: u64| {
        if window_s > 0.0 {
            bytes as f64 * 8.0 / window_s
        } else {
            0.0
        }
    };
    let measured = publisher
        .as_ref()
        .filter(|_| window_s > 0.0)
        .map(|p| rate(p.window_media_bytes));
    let (reference, reference_source) = match (measured, expect) {
        (_, Some(e)) => (Some(e as f64), "--expect-bitrate"),
        (Some(m), None) => (Some(m), "publisher"),
        (None, None) => (
            players
                .iter()
                .map(|p| rate(p.window_media_bytes))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
            "best player",
        ),
    };
    let mut pr = PlayersReport {
        requested: plan.players,
        ..Default::default()
    };
    let mut delivered_bytes = 0u64;
    for p in &players {
        match p.state {
            PlayerState::Playing => pr.connected += 1,
            PlayerState::Dropped => {
                pr.connected += 1;
                pr.dropped += 1;
            }
            PlayerState::Failed | PlayerState::Starting => pr.failed += 1,
            PlayerState::Waiting => pr.not_started += 1,
        }
        let ok = p.state == PlayerState::Playing
            && reference.is_some_and(|r| r > 0.0 && rate(p.window_media_bytes) >= OK_SHARE * r);
        pr.ok += usize::from(ok);
        pr.stalls += u64::from(p.stalls);
        pr.players_with_stalls += usize::from(p.stalls > 0);
        pr.skipped_frames += p.skipped_frames;
        pr.video_frames_received += p.video_frames;
        delivered_bytes += p.window_socket_bytes;
    }
    let delivered_gbps = rate(delivered_bytes) / 1e9;
    let timer_lag = Percentiles::of(&hists.timer_lag);
    let s = &r.samples;
    let bench_cpu_window = s
        .self_cpu_at_window_start
        .zip(s.self_cpu_at_window_end)
        .map(|(a, b)| b - a);
    let pct = |cpu: Option<f64>| cpu.filter(|_| window_s > 0.0).map(|c| c / window_s * 100.0);
    let server = server_pid.map(|pid| {
        let cpu = s
            .server_at_window_start
            .zip(s.server_at_window_end)
            .map(|(a, b)| b.cpu_s - a.cpu_s);
        ServerReport {
            pid,
            cpu_s_window: cpu,
            cpu_pct_window: pct(cpu),
            rss_mb_start: s.server_at_start.map(|x| x.rss_kib as f64 / 1024.0),
            rss_mb_end: s.server_at_window_end.map(|x| x.rss_kib as f64 / 1024.0),
            cpu_s_per_gbit: cpu.filter(|_| delivered_bytes > 0).map(|c| {
                let gbit = delivered_bytes as f64 * 8.0 / 1e9;
                c / gbit
            }),
        }
    });
    let publish = stream.map(|st| {
        let p = publisher.clone().unwrap_or_default();
        PublishReport {
            video_bitrate_bps: st.bitrate,
            audio_bitrate_bps: (!st.no_audio).then_some(st.audio_bitrate),
            fps: st.fps,
            gop_s: st.gop,
            measured_media_bps: measured,
            video_frames: p.video_frames,
            audio_frames: p.audio_frames,
            send_lag_max_ms: p.send_lag_max.as_secs_f64() * 1000.0,
        }
    });

    let mut warnings = Vec::new();
    if timer_lag.p99.is_some_and(|v| v > TIMER_LAG_P99_WARN_MS)
        || timer_lag.max.is_some_and(|v| v > TIMER_LAG_MAX_WARN_MS)
    {
        warnings.push(format!(
            "the bench's own timers fired late (p99 {:.1} ms, max {:.1} ms): the load \
             generator may be the bottleneck; give it more cores (--threads) or fewer players",
            timer_lag.p99.unwrap_or(0.0),
            timer_lag.max.unwrap_or(0.0)
        ));
    }
    if let Some(c) = pct(bench_cpu_window) {
        let executors = plan.threads + usize::from(plan.publish.is_some());
        if c > 80.0 * executors as f64 {
            warnings.push(format!(
                "the bench used {c:.0}% CPU on {executors} threads: it may be the bottleneck"
            ));
        }
    }
    if let Some(p) = &publish {
        if p.send_lag_max_ms > 100.0 {
            warnings.push(format!(
                "the publisher fell behind its schedule by up to {:.0} ms",
                p.send_lag_max_ms
            ));
        }
    }
    if pr.not_started > 0 {
        warnings.push(format!(
            "{} players never started (the run ended first)",
            pr.not_started
        ));
    }
    if server_pid.is_some() && server.as_ref().is_some_and(|s| s.cpu_s_window.is_none()) {
        warnings.push("could not read the server's /proc entries".into());
    }
    Report {
        mode: plan.mode,
        url: url.to_string(),
        publish_url: publish_url.map(str::to_string),
        threads: plan.threads,
        rcvlowat: plan.rcvlowat,
        duration_s: plan.duration.as_secs_f64(),
        window_s,
        players: pr,
        publish,
        reference_media_bps: reference,
        reference_source,
        delivered_gbps,
        ttff_ms: Percentiles::of(&hists.ttff),
        first_keyframe_ms: Percentiles::of(&hists.ttfk),
        latency_ms: Percentiles::of(&hists.latency),
        timer_lag_ms: timer_lag,
        bench: BenchReport {
            cpu_s_window: bench_cpu_window,
            cpu_pct_window: pct(bench_cpu_window),
            cpu_s_total: r.self_cpu_total_s,
            wall_s: r.wall.as_secs_f64(),
        },
        server,
        errors: errors.0,
        warnings,
        aborted: r.abort.clone(),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2} ms"))
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}{unit}"))
}

fn print_table(r: &Report) {
    println!(
        "shardcast-bench {} {} - {} players, {} threads, SO_RCVLOWAT {}, window {:.1} s of {:.1} s",
        r.mode,
        r.url,
        r.players.requested,
        r.threads,
        if r.rcvlowat > 1 {
            r.rcvlowat.to_string()
        } else {
            "off".into()
        },
        r.window_s,
        r.duration_s
    );
    if r.players.requested > 0 {
        let p = &r.players;
        let share = if p.requested > 0 {
            p.ok as f64 * 100.0 / p.requested as f64
        } else {
            0.0
        };
        println!(
            "  players      connected {}  failed {}  dropped {}  not started {}  OK {} ({share:.1}%)",
            p.connected, p.failed, p.dropped, p.not_started, p.ok
        );
        println!(
            "  stalls       {} (players with stalls: {})  skipped frames {}",
            p.stalls, p.players_with_stalls, p.skipped_frames
        );
    }
    if let Some(p) = &r.publish {
        println!(
            "  publish      {} {} kbit/s video{} at {} fps, GOP {} s; sent {} video / {} \
             audio frames, media {}, send lag max {:.1} ms",
            r.publish_url.as_deref().unwrap_or("-"),
            p.video_bitrate_bps / 1000,
            p.audio_bitrate_bps
                .map_or(String::new(), |a| format!(" + {} kbit/s audio", a / 1000)),
            p.fps,
            p.gop_s,
            p.video_frames,
            p.audio_frames,
            opt(p.measured_media_bps.map(|b| b / 1e6), " Mbit/s", 3),
            p.send_lag_max_ms
        );
    }
    if r.players.requested > 0 {
        println!(
            "  reference    {} ({}); OK = at least {:.0}% of it",
            opt(r.reference_media_bps.map(|b| b / 1e6), " Mbit/s", 3),
            r.reference_source,
            OK_SHARE * 100.0
        );
        println!("  delivered    {:.3} Gbit/s", r.delivered_gbps);
        let pct = |name: &str, p: &Percentiles| {
            println!(
                "  {name:<12} p50 {}  p90 {}  p99 {}  max {}  (n={})",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.max),
                p.count
            )
        };
        pct("TTFF", &r.ttff_ms);
        pct("first key", &r.first_keyframe_ms);
        pct("latency", &r.latency_ms);
    }
    println!(
        "  timer lag    p99 {}  max {}",
        ms(r.timer_lag_ms.p99),
        ms(r.timer_lag_ms.max)
    );
    println!(
        "  bench CPU    {} in the window ({} of one core), {:.2} s in {:.1} s total",
        opt(r.bench.cpu_s_window, " s", 2),
        opt(r.bench.cpu_pct_window, "%", 0),
        r.bench.cpu_s_total,
        r.bench.wall_s
    );
    if let Some(s) = &r.server {
        println!(
            "  server       pid {}: CPU {} in the window ({} of one core), RSS {} -> {} MB, \
             {} CPU-s per delivered Gbit",
            s.pid,
            opt(s.cpu_s_window, " s", 2),
            opt(s.cpu_pct_window, "%", 0),
            opt(s.rss_mb_start, "", 1),
            opt(s.rss_mb_end, "", 1),
            opt(s.cpu_s_per_gbit, "", 2)
        );
    }
    for (what, n) in &r.errors {
        println!("  error        {n} x {what}");
    }
    for w in &r.warnings {
        println!("  WARNING      {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_bitrate("2500k"), Ok(2_500_000));
        assert_eq!(parse_bitrate("2.5M"), Ok(2_500_000));
        assert_eq!(parse_bitrate("800000"), Ok(800_000));
        assert!(parse_bitrate("fast").is_err());
        assert!(parse_bitrate("1G").is_err(), "above BITRATE_MAX");
        assert_eq!(parse_secs("2s"), Ok(2.0));
        assert_eq!(parse_secs("500ms"), Ok(0.5));
        assert_eq!(parse_secs("20"), Ok(20.0));
        assert!(parse_secs("0").is_err());
        assert_eq!(parse_rate("500/s"), Ok(500.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert!(parse_rate("-1/s").is_err());
    }

    #[test]
    fn url_kinds_and_default_publish_urls() {
        assert_eq!(url_kind("rtmp://h/a/b"), Ok(UrlKind::Rtmp));
        assert_eq!(url_kind("http://h/a/b.flv?x=1"), Ok(UrlKind::HttpFlv));
        assert_eq!(url_kind("http://h/a/b.m3u8"), Ok(UrlKind::Hls));
        assert_eq!(url_kind("https://h/a/b.flv"), Ok(UrlKind::HttpFlv));
        assert_eq!(url_kind("https://h/a/b.m3u8"), Ok(UrlKind::Hls));
        assert_eq!(url_kind("rtmps://h/a/b"), Ok(UrlKind::Rtmps));
        assert_eq!(
            default_publish_url("rtmps://127.0.0.1:8443/live/s?k=1"),
            "rtmp://127.0.0.1:8443/live/s?k=1"
        );
        assert_eq!(
            default_publish_url("https://h:8443/live/s.flv"),
            "rtmp://h:8443/live/s"
        );
        assert!(url_kind("http://h/a/b?f=.flv").is_err());
        assert!(url_kind("srt://h/a").is_err());
        assert_eq!(default_publish_url("rtmp://h:1/a/b"), "rtmp://h:1/a/b");
        assert_eq!(
            default_publish_url("http://h:8000/live/s.flv?only-audio=1"),
            "rtmp://h:8000/live/s"
        );
        let c = Cli::try_parse_from([
            "shardcast-bench",
            "fanout",
            "--url",
            "http://h:8000/live/s.flv",
            "--publish-url",
            "rtmp://h:1935/live/s",
            "--players",
            "2",
        ])
        .unwrap();
        assert!(matches!(
            c.command,
            Command::Fanout { ref publish_url, .. } if publish_url.as_deref() == Some("rtmp://h:1935/live/s")
        ));
    }

    #[test]
    fn cli_shapes() {
        let c = Cli::try_parse_from([
            "shardcast-bench",
            "fanout",
            "--url",
            "rtmp://127.0.0.1:8079/live/b",
            "--players",
            "20",
            "--duration",
            "5",
            "--json",
        ])
        .unwrap();
        assert!(c.json);
        assert!(matches!(c.command, Command::Fanout { ref load, .. } if load.players == 20));
        let c = Cli::try_parse_from([
            "shardcast-bench",
            "play",
            "rtmp://h/live/b",
            "--players",
            "3",
            "--ramp",
            "10/s",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Play { ref load, .. } if load.ramp == 10.0));
        assert!(Cli::try_parse_from(["shardcast-bench", "play", "rtmp://h/a/b"]).is_err());
    }
}
