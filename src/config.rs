//! The configuration: one TOML file in which every field has a default, and
//! command-line flags that override it.
//!
//! `shardcast` alone serves an origin on port 8079; `shardcast --config
//! shardcast.toml` reads the file (the repository's `shardcast.toml` lists
//! every field with its default), then applies the flags, then validates the
//! result. Unknown keys and values of the wrong type are refused with the
//! file name and the key, never ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// The largest RTMP message length: the chunk header's message length field
/// is 24 bits (RTMP 1.0, 5.3.1.2). The chunk encoder refuses anything
/// longer, so `rtmp.message_len_max` (what a peer may send, and so what we
/// may relay) must not exceed it.
pub const RTMP_MESSAGE_LEN_LIMIT: u32 = proto::rtmp::chunk::MESSAGE_LEN_FIELD_MAX;
const _: () = assert!(RTMP_MESSAGE_LEN_LIMIT == 0xff_ffff);
/// The largest chunk size a Set Chunk Size message may carry: 31 bits
/// (RTMP 1.0, 5.4.1).
pub const RTMP_CHUNK_SIZE_LIMIT: u32 = 0x7fff_ffff;
/// The smallest chunk size: RTMP's initial chunk size, which every peer
/// starts with and no sane peer goes below.
pub const RTMP_CHUNK_SIZE_MIN: u32 = 128;
/// A chunk larger than the largest message can never be filled, so an
/// outgoing chunk size above the message limit only wastes buffer.
pub const RTMP_CHUNK_SIZE_OUT_MAX: u32 = RTMP_MESSAGE_LEN_LIMIT;
const _: () = assert!(RTMP_CHUNK_SIZE_MIN <= RTMP_CHUNK_SIZE_OUT_MAX);
const _: () = assert!(RTMP_CHUNK_SIZE_OUT_MAX <= RTMP_CHUNK_SIZE_LIMIT);

/// Shards talk over a full mesh of channels (shards² of them), so the count
/// is bounded well above any core count shardcast runs on.
pub const SHARDS_MAX: usize = 1024;
/// Commands (a `connect` with its object, `onMetaData`) need a few KiB; a
/// smaller message limit would refuse ordinary clients.
pub const MESSAGE_LEN_MAX_MIN: u32 = 4096;
/// ffmpeg alone uses five chunk streams (control, command, audio, video,
/// data); fewer would refuse ordinary publishers.
pub const CHUNK_STREAMS_MAX_MIN: usize = 8;
/// Chunk stream ids run from 2 to 65599 (RTMP 1.0, 5.3.1.1).
pub const CHUNK_STREAMS_MAX_LIMIT: usize = 65598;
/// AMF0 commands nest objects a few levels deep (`connect`'s object, E-RTMP
/// `fourCcInfoMap`); 4 is the least that parses real clients.
pub const AMF_DEPTH_MAX_MIN: usize = 4;
/// AMF parsing recurses once per level; this keeps the stack it can use
/// small whatever the config says.
pub const AMF_DEPTH_MAX_LIMIT: usize = 256;
/// A player's queue must hold at least one typical keyframe, or a player
/// would skip to the next keyframe forever.
pub const PLAYER_QUEUE_BYTES_MAX_MIN: usize = 64 * 1024;

/// Longest `stream.audio_coalesce_ms` and `stream.write_coalesce_ms`:
/// frames held longer than a second would starve players' buffers.
pub const COALESCE_MS_MAX: u64 = 1000;

/// The whole configuration. Every field has a default (see
/// [`Config::default`] and `shardcast.toml`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on for every protocol. Default "0.0.0.0".
    pub listen: String,
    /// TCP port for every protocol (RTMP, HTTP, TLS are told apart by their
    /// first bytes). Default 8079.
    pub port: u16,
    /// A second port, on `listen`, that serves only the monitoring API
    /// (`/api/...`, `/status`, `/metrics`); the main port then answers
    /// those paths 404. 0 = off: the API is on the main port. Default 0.
    pub internal_port: u16,
    /// Number of shards (one glommio executor each); 0 = one per online core.
    pub shards: usize,
    /// Pin shard k to core k. Default false.
    pub pin_cores: bool,
    /// Where and how the server logs (`[log]`); `log = "debug"` is short
    /// for `[log] level = "debug"`.
    pub log: LogConfig,
    /// The vhost of a stream key when the request names none or one not in
    /// `vhosts`. Default "__defaultVhost__".
    pub default_vhost: String,
    /// Host names accepted as vhosts (from `?vhost=`, the tcUrl host or the
    /// HTTP Host header, compared case-insensitively). Default empty: every
    /// stream lives in `default_vhost`.
    pub vhosts: Vec<String>,
    /// Open connections allowed for the whole process; 0 = unlimited. Each
    /// connection costs its socket buffers plus its queues (see
    /// `stream.player_queue_bytes_max`).
    pub max_connections: usize,
    /// Open connections allowed from one peer address; 0 = unlimited
    /// (default). A connection past it is closed at accept, logged and
    /// counted (`shardcast_refused_total{reason="max_connections_per_ip"}`);
    /// open ones are untouched. On the public internet, 64 leaves room for
    /// players behind one NAT and stops one host from taking every slot.
    pub max_connections_per_ip: usize,
    /// A connection that moves no bytes either way for this many seconds is
    /// closed; -1 = never. Default 60.
    pub idle_timeout_s: i64,
    /// What this node is: "origin" (default: streams are published here)
    /// or "edge" (a stream's first player makes the node pull it from one
    /// of `edge.origins`). Flag `--edge`.
    pub mode: Mode,
    pub stream: StreamConfig,
    pub rtmp: RtmpConfig,
    pub http: HttpConfig,
    pub hls: HlsSettings,
    pub auth: AuthConfig,
    pub access: AccessConfig,
    pub api: ApiConfig,
    pub hooks: HooksConfig,
    pub tls: TlsConfig,
    pub edge: EdgeConfig,
    pub cluster: ClusterConfig,
}

/// `[log]`: the log's filter, file, line format and the HTTP access log.
/// A string in place of the table (`log = "debug"`) sets `level` alone.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default, remote = "Self")]
pub struct LogConfig {
    /// Filter in env_logger syntax, e.g. "info" or
    /// "info,shardcast::server=debug". Flag `--log`. Default "info";
    /// SIGHUP applies a new one.
    pub level: String,
    /// File the log is appended to; empty (default) = stderr. Flag
    /// `--log-file`. SIGUSR1 reopens it by name (for logrotate), SIGHUP
    /// opens a changed one.
    pub file: String,
    /// "text" (default): `[time LEVEL target] message`; "json": one object
    /// per line with `ts`, `level`, `target` and `msg`.
    pub format: LogFormat,
    /// One line per HTTP request (target `access`, level info): peer,
    /// method, path, status, bytes sent, duration and User-Agent; a
    /// streaming HTTP-FLV response logs when it ends. Default false.
    pub access: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: String::new(),
            format: LogFormat::Text,
            access: false,
        }
    }
}

impl<'de> Deserialize<'de> for LogConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = LogConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a log filter such as \"info\", or a [log] table")
            }
            fn visit_str<E: serde::de::Error>(self, level: &str) -> Result<LogConfig, E> {
                Ok(LogConfig {
                    level: level.into(),
                    ..LogConfig::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LogConfig, A::Error> {
                LogConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_any(Either)
    }
}

impl Serialize for LogConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        LogConfig::serialize(self, s)
    }
}

/// `log.format`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The origin cluster's registry on Redis (see `shardcast.toml`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port[/db]`; empty = no cluster.
    pub redis: String,
    /// This node's id in the registry; default `advertise`.
    pub node_id: String,
    /// Where other nodes reach this one (host:port); default
    /// `listen:port`, which must then be a specific address.
    pub advertise: String,
    /// Seconds an announcement lives unless refreshed. 2..=3600, default 10.
    pub ttl_s: u64,
    /// Seconds between refreshes; less than `ttl_s`. Default 3.
    pub refresh_s: u64,
    /// Prefix of every key and channel. Default "shardcast".
    pub key_prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: String::new(),
            node_id: String::new(),
            advertise: String::new(),
            ttl_s: 10,
            refresh_s: 3,
            key_prefix: "shardcast".into(),
        }
    }
}

impl Config {
    /// `cluster.advertise`, or `listen:port`.
    pub fn advertise(&self) -> String {
        if self.cluster.advertise.is_empty() {
            format!("{}:{}", self.listen, self.port)
        } else {
            self.cluster.advertise.clone()
        }
    }

    /// `cluster.node_id`, or the advertised address.
    pub fn node_id(&self) -> String {
        if self.cluster.node_id.is_empty() {
            self.advertise()
        } else {
            self.cluster.node_id.clone()
        }
    }
}

/// What a node is (`mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Streams are published here.
    #[default]
    Origin,
    /// Streams are pulled from `edge.origins` on demand.
    Edge,
}

impl Mode {
    /// As the config file writes it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Origin => "origin",
            Mode::Edge => "edge",
        }
    }
}

/// How an edge orders its origins for a stream (`edge.lb`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OriginChoice {
    /// A consistent (rendezvous) hash of the stream key over the list:
    /// every edge pulls a stream from the same origin, and removing an
    /// origin moves only the streams it had.
    #[default]
    Hash,
    /// Each new pull starts at the next origin of the list.
    RoundRobin,
}

/// Edge mode: where streams are pulled from and the retry policy.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Origins as "host:port" (RTMP; resolved once at startup). An origin
    /// may itself be an edge (a tree). Flag `--origin`, repeatable.
    pub origins: Vec<String>,
    /// Milliseconds a player (RTMP, HTTP-FLV, HLS) waits for the pull to
    /// deliver; then 404 / `NetStream.Play.StreamNotFound`.
    /// 100..=60000, default 5000.
    pub pull_wait_ms: u64,
    /// Seconds a pull goes on after its last player or HLS request, so a
    /// player who reloads finds it running. 0..=3600, default 10.
    pub keep_pulling_s: u64,
    /// Pulls running at once on this node; each shard runs at most its
    /// share (this over the shards, rounded up). A play that would start
    /// one more gets no pull: it is counted in `shardcast_refused_total`
    /// (`edge_pulls_max`) and answered 404 / StreamNotFound after
    /// `pull_wait_ms`. Bounds what players asking for made-up names cost
    /// the origins. 1..=1000000, default 4096.
    pub pulls_max: usize,
    /// Which origin a stream is pulled from first: "hash" (default) or
    /// "round_robin".
    pub lb: OriginChoice,
    /// Milliseconds a TCP connect to an origin may take. 1..=60000,
    /// default 1000.
    pub connect_timeout_ms: u64,
    /// Retries right after a failure, each to the next origin. 0..=16,
    /// default 2.
    pub fast_retries: u32,
    /// Milliseconds between the later retries. 1..=60000, default 1000.
    pub retry_interval_ms: u64,
    /// Milliseconds of failing after which the pull gives up and its
    /// players are told the stream ended. 0..=3600000, default 10000.
    pub retry_max_ms: u64,
    /// Seconds an origin that failed a stream is skipped for that stream
    /// (unless every origin is). 0..=3600, default 10.
    pub origin_disable_s: u64,
    /// A stream published to the edge is pushed to the origin `lb` picks
    /// for it (with the same retry policy), so publishers may use any
    /// node. Default true.
    pub push_publishes: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            origins: Vec::new(),
            pull_wait_ms: 5000,
            keep_pulling_s: 10,
            pulls_max: 4096,
            lb: OriginChoice::Hash,
            connect_timeout_ms: 1000,
            fast_retries: 2,
            retry_interval_ms: 1000,
            retry_max_ms: 10_000,
            origin_disable_s: 10,
            push_publishes: true,
        }
    }
}

impl EdgeConfig {
    /// `origins` resolved, in order; the error names the entry.
    pub fn origin_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        self.origins
            .iter()
            .map(|o| {
                o.to_socket_addrs()
                    .map_err(|e| format!("{o:?}: {e} (give host:port)"))?
                    .next()
                    .ok_or_else(|| format!("{o:?} resolves to no address"))
            })
            .collect()
    }

    /// `pull_wait_ms` as a duration.
    pub fn pull_wait(&self) -> Duration {
        Duration::from_millis(self.pull_wait_ms)
    }
}

/// TLS on the one port (HTTPS and RTMPS beside plain HTTP and RTMP: a
/// first byte 0x16 is TLS), and optionally on a TLS-only port.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the default certificate (flag
    /// `--tls-cert`); empty = no TLS. Read again on SIGHUP.
    pub cert: String,
    /// PEM private key of `cert` (flag `--tls-key`).
    pub key: String,
    /// More certificates, chosen by the name the client asks for (SNI):
    /// `[[tls.certs]] names = ["a.example.com", "*.b.example.com"]`, `cert`,
    /// `key`. A client asking for no listed name gets the default pair.
    pub certs: Vec<TlsCertConfig>,
    /// A second port, on `listen`, that serves only TLS (OBS and ffmpeg
    /// default `rtmps://` to 443); 0 = none. Default 0.
    pub port: u16,
    /// Seconds a TLS handshake may take from its first byte. 1..=60,
    /// default 10.
    pub handshake_timeout_s: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: String::new(),
            key: String::new(),
            certs: Vec::new(),
            port: 0,
            handshake_timeout_s: 10,
        }
    }
}

impl TlsConfig {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty()
    }
}

/// One certificate chosen by SNI.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsCertConfig {
    /// The host names it serves; `*.example.com` covers one label.
    pub names: Vec<String>,
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// IP rules for publish and play: lists of CIDRs (IPv4 or IPv6; a bare
/// address is one host). Deny wins; an empty allow list allows all.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// Peers that may publish (empty: all not denied).
    pub allow_publish: Vec<String>,
    /// Peers that may not publish.
    pub deny_publish: Vec<String>,
    /// Peers that may play (empty: all not denied).
    pub allow_play: Vec<String>,
    /// Peers that may not play.
    pub deny_play: Vec<String>,
}

/// Who reaches the admin surface: `/api/*` (but `/api/streams`, which the
/// page at `/` reads), `/status`, `/metrics`, `/dashboard` and its charting
/// library. The local host (127.0.0.1, ::1) always; others (other 127/8
/// addresses too) get 403 unless listed or bearing the token.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// More peers (CIDRs) admitted besides loopback.
    pub allow: Vec<String>,
    /// Admits `Authorization: Bearer <token>` from anywhere; empty = no
    /// token. Never shown by the API.
    #[serde(skip_serializing)]
    pub token: String,
}

/// How a publish or play is authorized.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port.
    #[default]
    Open,
    /// A signed URL (`expires=` and `sign=` in the query, see `auth.secret`).
    Signed,
    /// An HTTP hook decides: `hooks.on_publish` / `hooks.on_play`.
    Hook,
}

/// The longest `hooks.timeout_ms`: a publisher or player waits this long
/// at most for its decision.
pub const HOOK_TIMEOUT_MS_MAX: u64 = 60_000;
/// The most `hooks.inflight_max` may allow per shard (each request in
/// flight holds a socket and a few KiB).
pub const HOOK_INFLIGHT_LIMIT: usize = 65_536;

/// What a hook request that got no answer (timeout, refused or
/// unreachable, `hooks.inflight_max` reached) decides.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HookOnError {
    /// Refuse (fail closed).
    #[default]
    Deny,
    /// Admit.
    Allow,
}

/// HTTP hooks: URLs POSTed a JSON object about each publish, play and
/// their ends (see `shardcast.toml`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Decides publishes when `auth.publish = "hook"`: a 2xx admits.
    /// `http://<ip>:<port>/<path>` (an IP address: no DNS lookup on a
    /// shard); empty = none.
    pub on_publish: String,
    /// Decides plays when `auth.play = "hook"` (HLS: once per session).
    pub on_play: String,
    /// Told when an admitted publisher ends (fire and forget).
    pub on_unpublish: String,
    /// Told when an admitted player ends (fire and forget; HLS: when its
    /// session expires).
    pub on_stop: String,
    /// Milliseconds a hook request may take, connect to answer.
    /// 1..=60000, default 3000.
    pub timeout_ms: u64,
    /// Hook requests one shard may have in flight; one more is not sent
    /// and counts as a hook error. 1..=65536, default 256.
    pub inflight_max: usize,
    /// What a hook error (no answer) decides: "deny" (default) or "allow".
    /// An answer other than 2xx always refuses.
    pub on_error: HookOnError,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_publish: String::new(),
            on_play: String::new(),
            on_unpublish: String::new(),
            on_stop: String::new(),
            timeout_ms: 3000,
            inflight_max: 256,
            on_error: HookOnError::Deny,
        }
    }
}

impl HooksConfig {
    /// `hooks.timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Publish and play authorization.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The shared secret of signed URLs: `sign` is the lowercase hex
    /// HMAC-SHA256 with it of `<action>:<vhost>/<app>/<stream>:<expires>`
    /// (`shardcast sign` prints one). Required when a mode is "signed".
    /// Never shown by the API.
    #[serde(skip_serializing)]
    pub secret: String,
    /// Who may publish: "open", "signed" or "hook" (`hooks.on_publish`).
    /// Default "open".
    pub publish: AuthMode,
    /// Who may play (RTMP, HTTP-FLV, every HLS request): "open", "signed"
    /// or "hook" (`hooks.on_play`; HLS asks once per session). Default
    /// "open".
    pub play: AuthMode,
    /// Seconds a signature is still accepted after its `expires`, for
    /// clocks that differ. 0..=3600, default 30.
    pub clock_skew_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret: String::new(),
            publish: AuthMode::Open,
            play: AuthMode::Open,
            clock_skew_s: 30,
        }
    }
}

/// How streams are kept and fanned out.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Keep the last GOP (from the latest keyframe) so a new player starts
    /// at once. Default true.
    pub gop_cache: bool,
    /// Bound on one stream's GOP cache in payload bytes; past it the cache
    /// is dropped until the next keyframe. Worst case memory: this times the
    /// number of published streams (replicas share the frames' memory).
    /// Default 16 MiB.
    pub gop_cache_bytes_max: usize,
    /// Bound on one stream's GOP cache in frames. Default 2048.
    pub gop_cache_frames_max: usize,
    /// What a second publish of a stream that is already published does.
    /// Default "replace".
    pub republish: Republish,
    /// Seconds players wait for a publisher (before the first publish and
    /// after an unpublish) before they are closed. Default 30.
    pub publisher_grace_s: u64,
    /// Bound on one player's outgoing queue in bytes; past it the player
    /// skips to the next keyframe. Worst case memory: this times the number
    /// of players (frames are shared, so usually far less). Default 8 MiB.
    pub player_queue_bytes_max: usize,
    /// Milliseconds an audio frame of a stream with video may wait for the
    /// next video frame, so that one write to each player carries both:
    /// about half the writes, wakeups and packets at 30 fps. Video is never
    /// held back. 0 = every frame is written at once. Default 50.
    pub audio_coalesce_ms: u64,
    /// Milliseconds any frame but a keyframe may wait in players' queues
    /// for later frames, so one write carries several (merged writes).
    /// Fewer writes and packets for more latency: 33 at 30 fps about halves
    /// the server's CPU per player and adds up to 33 ms. Keyframes never
    /// wait. 0 = off. Default 0.
    pub write_coalesce_ms: u64,
}

/// What happens when a stream that already has a publisher is published
/// again.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Republish {
    /// The new publisher takes over; the old one is told and closed.
    #[default]
    Replace,
    /// The new publisher is refused; the old one keeps the stream.
    Reject,
}

/// HTTP (HTTP-FLV, HLS, pages) limits and waits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Bytes a request head (request line and headers) may take; more is
    /// answered 431. This is also the read buffer a connection holds while a
    /// head is incomplete. 1024..=65536, default 8192.
    pub header_bytes_max: usize,
    /// Header lines a request may have; more is answered 431. 8..=128,
    /// default 64.
    pub headers_max: usize,
    /// Seconds a request for a stream that is not (yet) published waits for
    /// its publisher before the answer is 404. 0..=300, default 10.
    pub stream_wait_s: u64,
    /// Seconds a keep-alive connection may wait for the first byte of its
    /// next request before it is closed. 1..=3600, default 10.
    pub keepalive_timeout_s: u64,
    /// Seconds a request head (and its body) may take from its first byte:
    /// a client that trickles one (slowloris) is closed then, however
    /// often it sends a byte. 1..=300, default 10.
    pub header_timeout_s: u64,
    /// Bytes of request body a request may carry (the API reads none: a
    /// body is read past and discarded); more is answered 413. 0..=16 MiB,
    /// default 65536.
    pub body_bytes_max: u64,
    /// Where the web player libraries (npm packages `hls.js`, `mpegts.js`)
    /// are installed; `/assets/<package>/<path>` serves files from here.
    /// Default "node_modules" (relative to the working directory).
    pub assets_dir: String,
}

/// HLS and low-latency HLS.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSettings {
    /// Cut LL-HLS parts and list them (plain HLS players ignore the part
    /// tags, so one playlist serves both). Default true.
    pub low_latency: bool,
    /// Target segment length: a segment is cut at the first keyframe this
    /// long after its start. 1000..=30000, default 2000.
    pub segment_duration_ms: u32,
    /// Target LL-HLS part length; parts are cut at any frame.
    /// 100..=segment_duration_ms, default 500.
    pub part_duration_ms: u32,
    /// Segments listed in the playlist. 1..=1000, default 6.
    pub window_size: usize,
    /// The container a playlist request without `?container=` gets, cut
    /// from each publish on: "ts" (default) or "fmp4". The other one is
    /// cut from the first request for it.
    pub container: HlsContainer,
    /// Per application: `[hls.apps.<app>] container = "fmp4"`.
    pub apps: std::collections::BTreeMap<String, HlsAppSettings>,
}

/// `hls.container`: MPEG-TS or fragmented MP4 (CMAF) segments.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HlsContainer {
    #[default]
    Ts,
    Fmp4,
}

impl HlsContainer {
    pub fn to_container(self) -> proto::hls::Container {
        match self {
            HlsContainer::Ts => proto::hls::Container::Ts,
            HlsContainer::Fmp4 => proto::hls::Container::Fmp4,
        }
    }
}

/// HLS settings of one application.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HlsAppSettings {
    pub container: HlsContainer,
}

impl Default for HlsSettings {
    fn default() -> Self {
        HlsSettings {
            low_latency: true,
            segment_duration_ms: 2000,
            part_duration_ms: 500,
            window_size: 6,
            container: HlsContainer::Ts,
            apps: Default::default(),
        }
    }
}

impl HlsSettings {
    /// The container of each stream's HLS, by application.
    pub fn containers(&self) -> crate::stream::Containers {
        crate::stream::Containers {
            default: self.container.to_container(),
            apps: self
                .apps
                .iter()
                .map(|(app, s)| (app.clone(), s.container.to_container()))
                .collect(),
        }
    }

    /// The segmenter's configuration.
    pub fn to_hls_config(&self) -> proto::hls::HlsConfig {
        proto::hls::HlsConfig {
            segment_duration_ms: self.segment_duration_ms,
            part_duration_ms: self.part_duration_ms,
            window_size: self.window_size,
            low_latency: self.low_latency,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_bytes_max: 8192,
            headers_max: 64,
            stream_wait_s: 10,
            keepalive_timeout_s: 10,
            header_timeout_s: 10,
            body_bytes_max: 64 * 1024,
            assets_dir: "node_modules".into(),
        }
    }
}

/// RTMP protocol limits. Every byte bound here is per connection.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Chunk size shardcast announces and sends with, 128..=16777215.
    /// Larger chunks mean fewer chunk headers. Default 60000.
    pub chunk_size_out: u32,
    /// The largest Set Chunk Size a peer may send, >= 128; larger requests
    /// close the connection. Default 65536.
    pub chunk_size_in_max: u32,
    /// The largest message a peer may send, in bytes, up to 16777215.
    /// Worst case memory while reassembling: this times
    /// `chunk_streams_max`. Default 8 MiB.
    pub message_len_max: u32,
    /// How many chunk streams a peer may use at once, each holding at most
    /// one partial message. Default 64.
    pub chunk_streams_max: usize,
    /// How deeply AMF values (objects, arrays) may nest. Default 16.
    pub amf_depth_max: usize,
    /// Seconds a client has to finish the handshake. Default 10.
    pub handshake_timeout_s: u64,
    /// Window Acknowledgement Size shardcast announces, in bytes. Default
    /// 2500000.
    pub window_ack_size: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0".into(),
            port: 8079,
            internal_port: 0,
            shards: 0,
            pin_cores: false,
            log: LogConfig::default(),
            default_vhost: "__defaultVhost__".into(),
            vhosts: Vec::new(),
            max_connections: 0,
            max_connections_per_ip: 0,
            idle_timeout_s: 60,
            mode: Mode::Origin,
            stream: StreamConfig::default(),
            rtmp: RtmpConfig::default(),
            http: HttpConfig::default(),
            hls: HlsSettings::default(),
            auth: AuthConfig::default(),
            access: AccessConfig::default(),
            api: ApiConfig::default(),
            tls: TlsConfig::default(),
            hooks: HooksConfig::default(),
            edge: EdgeConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            gop_cache: true,
            gop_cache_bytes_max: 16 * 1024 * 1024,
            gop_cache_frames_max: 2048,
            republish: Republish::Replace,
            publisher_grace_s: 30,
            player_queue_bytes_max: 8 * 1024 * 1024,
            audio_coalesce_ms: 50,
            write_coalesce_ms: 0,
        }
    }
}

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            chunk_size_out: 60000,
            chunk_size_in_max: 65536,
            message_len_max: 8 * 1024 * 1024,
            chunk_streams_max: 64,
            amf_depth_max: 16,
            handshake_timeout_s: 10,
            window_ack_size: 2_500_000,
        }
    }
}

/// Command-line flags; each one given overrides the file.
#[derive(Parser, Debug, Clone, Default, PartialEq)]
#[command(
    name = "shardcast",
    version,
    about = "A thread-per-core live-streaming server"
)]
pub struct Flags {
    /// TOML configuration file (every field optional).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Validate the configuration (the file with the other flags, and the
    /// TLS certificates it names), print what was checked and exit: 0 if
    /// it is valid, 2 with an error naming the key if not. Nothing is
    /// started or bound.
    #[arg(long)]
    pub check: bool,
    /// TCP port for every protocol.
    #[arg(long)]
    pub port: Option<u16>,
    /// Number of shards; 0 = one per online core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Pin shard k to core k.
    #[arg(long)]
    pub pin_cores: bool,
    /// Log filter (env_logger syntax), e.g. "debug" (`log.level`).
    #[arg(long, value_name = "LEVEL")]
    pub log: Option<String>,
    /// Write the log to this file instead of stderr (`log.file`); SIGUSR1
    /// reopens it (after logrotate moved it).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// PEM certificate chain for TLS on the port (`tls.cert`).
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<String>,
    /// PEM private key of `--tls-cert` (`tls.key`).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<String>,
    /// Run as an edge (`mode = "edge"`): pull streams from `--origin`s.
    #[arg(long)]
    pub edge: bool,
    /// An origin of the edge, HOST:PORT (`edge.origins`); repeatable, and
    /// replaces the file's list.
    #[arg(long = "origin", value_name = "HOST:PORT")]
    pub origins: Vec<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What else the binary does besides serving.
#[derive(Debug, Clone, PartialEq, clap::Subcommand)]
pub enum Command {
    /// Prints the query of a signed URL (`expires=…&sign=…`) and exits.
    Sign {
        /// The shared secret (`auth.secret`).
        #[arg(long)]
        secret: String,
        /// `publish` or `play`.
        #[arg(long, value_parser = ["publish", "play"])]
        action: String,
        /// `app/stream`, e.g. `live/test`.
        #[arg(long)]
        stream: String,
        /// Seconds from now until the signature expires.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The vhost; default `default_vhost` ("__defaultVhost__").
        #[arg(long)]
        vhost: Option<String>,
    },
}

/// Why the configuration could not be used. Display names the file (or
/// "flags") and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    Read { path: String, error: String },
    /// The file is not valid TOML for [`Config`]: syntax, an unknown key or
    /// a value of the wrong type. `message` is toml's, which names the key
    /// and shows the line.
    Parse { origin: String, message: String },
    /// A value is outside what shardcast accepts.
    Invalid {
        /// The file name, "flags" or "defaults"; None from
        /// [`Config::validate`] alone.
        origin: Option<String>,
        /// The dotted key, e.g. `rtmp.chunk_size_out`.
        key: &'static str,
        /// What was wrong, with the value.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read config {path}: {error}"),
            ConfigError::Parse { origin, message } => {
                write!(f, "config {origin}: {}", message.trim_end())
            }
            ConfigError::Invalid {
                origin: Some(origin),
                key,
                reason,
            } => write!(f, "config {origin}: {key}: {reason}"),
            ConfigError::Invalid {
                origin: None,
                key,
                reason,
            } => write!(f, "config: {key}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &'static str, reason: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        origin: None,
        key,
        reason,
    })
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return invalid(key, format!("{value} is outside {min}..={max}"));
    }
    Ok(())
}

impl Config {
    /// The IP rule of publishes (`publish`) or plays, from `[access]`
    /// (validated at load, so a bad entry cannot reach here).
    pub fn access_rule(&self, publish: bool) -> crate::access::Rule {
        let a = &self.access;
        let (allow, deny) = if publish {
            (&a.allow_publish, &a.deny_publish)
        } else {
            (&a.allow_play, &a.deny_play)
        };
        crate::access::Rule {
            allow: crate::access::Cidrs::parse(allow).unwrap_or_default(),
            deny: crate::access::Cidrs::parse(deny).unwrap_or_default(),
        }
    }

    /// Parses and validates a TOML document; `origin` (the file name) is
    /// named in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config = Self::parse_toml(text, origin)?;
        config.validate().map_err(|e| e.with_origin(origin))?;
        Ok(config)
    }

    fn parse_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads `--config` if given (else starts from the defaults), applies
    /// the other flags, and validates the result.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let (mut config, origin) = match &flags.config {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: name.clone(),
                    error: e.to_string(),
                })?;
                (Self::parse_toml(&text, &name)?, name)
            }
            None => (Config::default(), "defaults".to_string()),
        };
        let overridden = config.apply_flags(flags);
        let origin = if overridden {
            format!("{origin} with flags")
        } else {
            origin
        };
        config.validate().map_err(|e| e.with_origin(&origin))?;
        Ok(config)
    }

    /// Overrides fields with the flags that were given; true if any was.
    pub fn apply_flags(&mut self, flags: &Flags) -> bool {
        let mut any = false;
        if let Some(port) = flags.port {
            self.port = port;
            any = true;
        }
        if let Some(shards) = flags.shards {
            self.shards = shards;
            any = true;
        }
        if flags.pin_cores {
            self.pin_cores = true;
            any = true;
        }
        if let Some(level) = &flags.log {
            self.log.level = level.clone();
            any = true;
        }
        if let Some(file) = &flags.log_file {
            self.log.file = file.clone();
            any = true;
        }
        if let Some(listen) = &flags.listen {
            self.listen = listen.clone();
            any = true;
        }
        if let Some(cert) = &flags.tls_cert {
            self.tls.cert = cert.clone();
            any = true;
        }
        if let Some(key) = &flags.tls_key {
            self.tls.key = key.clone();
            any = true;
        }
        if flags.edge {
            self.mode = Mode::Edge;
            any = true;
        }
        if !flags.origins.is_empty() {
            self.edge.origins = flags.origins.clone();
            any = true;
        }
        any
    }

    /// The `[tls]` section: pairs complete, ports distinct. The files are
    /// read when the server starts (and on SIGHUP), not here.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let t = &self.tls;
        if t.cert.is_empty() != t.key.is_empty() {
            let (key, other) = if t.cert.is_empty() {
                ("tls.cert", "tls.key")
            } else {
                ("tls.key", "tls.cert")
            };
            invalid(key, format!("is empty, but {other} is set: give both"))?;
        }
        if !t.enabled() && (t.port != 0 || !t.certs.is_empty()) {
            invalid(
                "tls.cert",
                "is empty, but tls.port or [[tls.certs]] is set: they need the default pair".into(),
            )?;
        }
        for (i, c) in t.certs.iter().enumerate() {
            if c.names.is_empty() || c.cert.is_empty() || c.key.is_empty() {
                invalid(
                    "tls.certs",
                    format!("entry {} needs names, cert and key", i + 1),
                )?;
            }
        }
        if t.port != 0 && (t.port == self.port || t.port == self.internal_port) {
            invalid(
                "tls.port",
                format!(
                    "{} is also `port` or `internal_port`: it must differ",
                    t.port
                ),
            )?;
        }
        in_range("tls.handshake_timeout_s", t.handshake_timeout_s, 1, 60)
    }

    /// The `[cluster]` section.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.redis.is_empty() {
            return Ok(());
        }
        if !c.redis.starts_with("redis://") {
            invalid(
                "cluster.redis",
                format!("{:?} is not a redis:// URL", c.redis),
            )?;
        }
        if c.advertise.is_empty()
            && self
                .listen
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        {
            invalid(
                "cluster.advertise",
                format!(
                    "is empty and listen is {}: give the host:port other nodes reach",
                    self.listen
                ),
            )?;
        }
        if self.advertise().to_socket_addrs().is_err() {
            invalid(
                "cluster.advertise",
                format!("{:?} is not host:port", self.advertise()),
            )?;
        }
        in_range("cluster.ttl_s", c.ttl_s, 2, 3600)?;
        in_range("cluster.refresh_s", c.refresh_s, 1, c.ttl_s - 1)?;
        if c.key_prefix.is_empty() {
            invalid("cluster.key_prefix", "is empty".into())?;
        }
        Ok(())
    }

    /// The `[edge]` section: an edge needs origins that resolve.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        let e = &self.edge;
        if self.mode == Mode::Edge && e.origins.is_empty() {
            invalid(
                "edge.origins",
                "is empty, but mode is \"edge\": give at least one host:port (--origin)".into(),
            )?;
        }
        if let Err(why) = e.origin_addrs() {
            invalid("edge.origins", why)?;
        }
        in_range("edge.pull_wait_ms", e.pull_wait_ms, 100, 60_000)?;
        in_range("edge.keep_pulling_s", e.keep_pulling_s, 0, 3600)?;
        in_range("edge.pulls_max", e.pulls_max, 1, 1_000_000)?;
        in_range("edge.connect_timeout_ms", e.connect_timeout_ms, 1, 60_000)?;
        in_range("edge.fast_retries", e.fast_retries, 0, 16)?;
        in_range("edge.retry_interval_ms", e.retry_interval_ms, 1, 60_000)?;
        in_range("edge.retry_max_ms", e.retry_max_ms, 0, 3_600_000)?;
        in_range("edge.origin_disable_s", e.origin_disable_s, 0, 3600)
    }

    /// Checks every value shardcast cannot work with; the error names the
    /// dotted key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        if (a.publish == AuthMode::Signed || a.play == AuthMode::Signed) && a.secret.is_empty() {
            invalid(
                "auth.secret",
                "is empty, but auth.publish or auth.play is \"signed\"".to_string(),
            )?;
        }
        in_range("auth.clock_skew_s", a.clock_skew_s, 0, 3600)?;
        self.validate_tls()?;
        self.validate_edge()?;
        self.validate_cluster()?;
        let h = &self.hooks;
        for (key, url) in [
            ("hooks.on_publish", &h.on_publish),
            ("hooks.on_play", &h.on_play),
            ("hooks.on_unpublish", &h.on_unpublish),
            ("hooks.on_stop", &h.on_stop),
        ] {
            if !url.is_empty() {
                if let Err(e) = proto::http::client::HttpUrl::parse(url) {
                    invalid(key, format!("{url:?}: {e}"))?;
                }
            }
        }
        for (mode, auth_key, url, key) in [
            (a.publish, "auth.publish", &h.on_publish, "hooks.on_publish"),
            (a.play, "auth.play", &h.on_play, "hooks.on_play"),
        ] {
            if mode == AuthMode::Hook && url.is_empty() {
                invalid(key, format!("is empty, but {auth_key} is \"hook\""))?;
            }
        }
        in_range("hooks.timeout_ms", h.timeout_ms, 1, HOOK_TIMEOUT_MS_MAX)?;
        in_range("hooks.inflight_max", h.inflight_max, 1, HOOK_INFLIGHT_LIMIT)?;
        in_range(
            "max_connections_per_ip",
            self.max_connections_per_ip,
            0,
            10_000_000,
        )?;
        for (key, list) in [
            ("access.allow_publish", &self.access.allow_publish),
            ("access.deny_publish", &self.access.deny_publish),
            ("access.allow_play", &self.access.allow_play),
            ("access.deny_play", &self.access.deny_play),
            ("api.allow", &self.api.allow),
        ] {
            if let Err(e) = crate::access::Cidrs::parse(list) {
                invalid(key, e)?;
            }
        }
        if self.listen.parse::<IpAddr>().is_err() {
            invalid("listen", format!("{:?} is not an IP address", self.listen))?;
        }
        in_range("shards", self.shards, 0, SHARDS_MAX)?;
        if self.internal_port != 0 && self.internal_port == self.port {
            invalid(
                "internal_port",
                format!(
                    "{} is also `port`: the API port must differ from the main port (0 = no API port)",
                    self.internal_port
                ),
            )?;
        }
        if self.log.level.trim().is_empty() {
            invalid("log.level", "is empty (use e.g. \"info\")".into())?;
        }
        check_vhost("default_vhost", &self.default_vhost)?;
        in_range(
            "http.header_bytes_max",
            self.http.header_bytes_max,
            1024,
            65536,
        )?;
        in_range("http.headers_max", self.http.headers_max, 8, 128)?;
        in_range("http.stream_wait_s", self.http.stream_wait_s, 0, 300)?;
        in_range(
            "http.keepalive_timeout_s",
            self.http.keepalive_timeout_s,
            1,
            3600,
        )?;
        in_range("http.header_timeout_s", self.http.header_timeout_s, 1, 300)?;
        in_range("http.body_bytes_max", self.http.body_bytes_max, 0, 16 << 20)?;
        if let Err(e) = self.hls.to_hls_config().validate() {
            let key = match e.field {
                "segment_duration_ms" => "hls.segment_duration_ms",
                "part_duration_ms" => "hls.part_duration_ms",
                "window_size" => "hls.window_size",
                _ => "hls",
            };
            invalid(key, format!("{} must be {}", e.field, e.expected))?;
        }
        for vhost in &self.vhosts {
            check_vhost("vhosts", vhost)?;
        }
        if self.idle_timeout_s == 0 || self.idle_timeout_s < -1 {
            invalid(
                "idle_timeout_s",
                format!(
                    "{} must be -1 (never) or a number of seconds >= 1",
                    self.idle_timeout_s
                ),
            )?;
        }

        let s = &self.stream;
        if s.gop_cache {
            if s.gop_cache_bytes_max == 0 {
                invalid(
                    "stream.gop_cache_bytes_max",
                    "is 0 with gop_cache = true (set gop_cache = false instead)".into(),
                )?;
            }
            if s.gop_cache_frames_max == 0 {
                invalid(
                    "stream.gop_cache_frames_max",
                    "is 0 with gop_cache = true (set gop_cache = false instead)".into(),
                )?;
            }
        }
        if s.player_queue_bytes_max < PLAYER_QUEUE_BYTES_MAX_MIN {
            invalid(
                "stream.player_queue_bytes_max",
                format!(
                    "{} is below the minimum {PLAYER_QUEUE_BYTES_MAX_MIN}",
                    s.player_queue_bytes_max
                ),
            )?;
        }

        in_range(
            "stream.audio_coalesce_ms",
            s.audio_coalesce_ms,
            0,
            COALESCE_MS_MAX,
        )?;
        in_range(
            "stream.write_coalesce_ms",
            s.write_coalesce_ms,
            0,
            COALESCE_MS_MAX,
        )?;

        let r = &self.rtmp;
        in_range(
            "rtmp.chunk_size_out",
            r.chunk_size_out,
            RTMP_CHUNK_SIZE_MIN,
            RTMP_CHUNK_SIZE_OUT_MAX,
        )?;
        in_range(
            "rtmp.chunk_size_in_max",
            r.chunk_size_in_max,
            RTMP_CHUNK_SIZE_MIN,
            RTMP_CHUNK_SIZE_LIMIT,
        )?;
        in_range(
            "rtmp.message_len_max",
            r.message_len_max,
            MESSAGE_LEN_MAX_MIN,
            RTMP_MESSAGE_LEN_LIMIT,
        )?;
        in_range(
            "rtmp.chunk_streams_max",
            r.chunk_streams_max,
            CHUNK_STREAMS_MAX_MIN,
            CHUNK_STREAMS_MAX_LIMIT,
        )?;
        in_range(
            "rtmp.amf_depth_max",
            r.amf_depth_max,
            AMF_DEPTH_MAX_MIN,
            AMF_DEPTH_MAX_LIMIT,
        )?;
        if r.handshake_timeout_s == 0 {
            invalid(
                "rtmp.handshake_timeout_s",
                "must be at least 1 second".into(),
            )?;
        }
        if r.window_ack_size == 0 {
            invalid("rtmp.window_ack_size", "must be at least 1 byte".into())?;
        }
        Ok(())
    }

    /// The number of shards to start: `shards`, or one per online core.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    /// `idle_timeout_s` as a duration; None = never.
    pub fn idle_timeout(&self) -> Option<Duration> {
        u64::try_from(self.idle_timeout_s)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
    }
}

impl StreamConfig {
    /// `publisher_grace_s` as a duration.
    pub fn publisher_grace(&self) -> Duration {
        Duration::from_secs(self.publisher_grace_s)
    }
}

impl RtmpConfig {
    /// `handshake_timeout_s` as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_s)
    }
}

/// A vhost is the first part of `vhost/app/stream`, so it cannot be empty
/// or contain a slash.
fn check_vhost(key: &'static str, vhost: &str) -> Result<(), ConfigError> {
    if vhost.is_empty() || vhost.contains('/') || vhost.chars().any(char::is_whitespace) {
        return invalid(
            key,
            format!("{vhost:?} is not a vhost name (non-empty, no '/' or spaces)"),
        );
    }
    Ok(())
}

impl ConfigError {
    fn with_origin(self, name: &str) -> ConfigError {
        match self {
            ConfigError::Invalid {
                origin: None,
                key,
                reason,
            } => ConfigError::Invalid {
                origin: Some(name.to_string()),
                key,
                reason,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../shardcast.toml");

    #[test]
    fn the_cluster_examples_in_deploy_load() {
        for (name, text) in [
            ("origin.toml", include_str!("../deploy/cluster/origin.toml")),
            ("edge.toml", include_str!("../deploy/cluster/edge.toml")),
            (
                "edge-of-edge.toml",
                include_str!("../deploy/cluster/edge-of-edge.toml"),
            ),
        ] {
            let c = Config::from_toml_str(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.mode == Mode::Edge, name.starts_with("edge"), "{name}");
            if c.mode == Mode::Edge {
                assert_eq!(c.edge.origin_addrs().map(|o| o.len()), Ok(2), "{name}");
            }
        }
    }

    #[test]
    fn a_cluster_needs_an_address_others_can_reach() {
        let e = Config::from_toml_str("[cluster]\nredis = \"redis://127.0.0.1:6379\"\n", "t")
            .unwrap_err();
        assert!(e.to_string().contains("cluster.advertise"), "{e}");
        let c = Config::from_toml_str(
            "listen = \"127.0.0.2\"\n[cluster]\nredis = \"redis://127.0.0.1:6379\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.advertise(), "127.0.0.2:8079");
        assert_eq!(c.node_id(), "127.0.0.2:8079");
        let e = Config::from_toml_str(
            "listen = \"127.0.0.2\"\n[cluster]\nredis = \"redis://h\"\nrefresh_s = 10\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("cluster.refresh_s"), "{e}");
    }

    #[test]
    fn an_edge_needs_origins_that_are_host_and_port() {
        let e = Config::from_toml_str("mode = \"edge\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("edge.origins"), "{e}");
        let e = Config::from_toml_str("[edge]\norigins = [\"127.0.0.1\"]\n", "t").unwrap_err();
        assert!(
            e.to_string().contains("edge.origins") && e.to_string().contains("host:port"),
            "{e}"
        );
        let flags = Flags {
            edge: true,
            origins: vec!["127.0.0.2:1935".into()],
            ..Flags::default()
        };
        let mut c = Config::default();
        assert!(c.apply_flags(&flags));
        assert_eq!(c.mode, Mode::Edge);
        assert_eq!(c.edge.origins, ["127.0.0.2:1935"]);
        c.validate().unwrap();
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.listen, "0.0.0.0");
        assert_eq!(c.port, 8079);
        assert_eq!(c.internal_port, 0);
        assert_eq!(c.shards, 0);
        assert!(!c.pin_cores);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.default_vhost, "__defaultVhost__");
        assert!(c.vhosts.is_empty());
        assert_eq!(c.max_connections, 0);
        assert_eq!(c.idle_timeout_s, 60);
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(60)));
        assert!(c.stream.gop_cache);
        assert_eq!(c.stream.gop_cache_bytes_max, 16 << 20);
        assert_eq!(c.stream.gop_cache_frames_max, 2048);
        assert_eq!(c.stream.republish, Republish::Replace);
        assert_eq!(c.stream.publisher_grace(), Duration::from_secs(30));
        assert_eq!(c.stream.player_queue_bytes_max, 8 << 20);
        assert_eq!(c.rtmp.chunk_size_out, 60000);
        assert_eq!(c.rtmp.chunk_size_in_max, 65536);
        assert_eq!(c.rtmp.message_len_max, 8 << 20);
        assert_eq!(c.rtmp.chunk_streams_max, 64);
        assert_eq!(c.rtmp.amf_depth_max, 16);
        assert_eq!(c.rtmp.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(c.rtmp.window_ack_size, 2_500_000);
        c.validate().unwrap();
        // An empty file is the defaults.
        assert_eq!(Config::from_toml_str("", "empty.toml").unwrap(), c);
        assert!(c.shard_count() >= 1);
        let pinned = Config {
            shards: 3,
            ..Config::default()
        };
        assert_eq!(pinned.shard_count(), 3);
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml_str(
            "port = 1935\n[stream]\nrepublish = \"reject\"\n[rtmp]\nchunk_size_out = 4096\n",
            "partial.toml",
        )
        .unwrap();
        assert_eq!(c.port, 1935);
        assert_eq!(c.stream.republish, Republish::Reject);
        assert_eq!(c.rtmp.chunk_size_out, 4096);
        assert_eq!(c.rtmp.chunk_size_in_max, 65536);
        assert!(c.stream.gop_cache);
        let never = Config::from_toml_str("idle_timeout_s = -1", "x.toml").unwrap();
        assert_eq!(never.idle_timeout(), None);
    }

    #[test]
    fn unknown_key_refused_with_its_name() {
        let err = Config::from_toml_str("prot = 1935\n", "site.toml").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(text.contains("site.toml"), "{text}");
        assert!(text.contains("prot"), "{text}");
        let err = Config::from_toml_str("[rtmp]\nchunk_size = 4096\n", "site.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("site.toml") && text.contains("chunk_size"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        let err = Config::from_toml_str("[streams]\ngop_cache = false\n", "s.toml").unwrap_err();
        assert!(err.to_string().contains("streams"), "{err}");
    }

    #[test]
    fn bad_values_refused() {
        // Wrong types and out-of-type values: toml/serde name the key.
        for (text, key) in [
            ("port = \"eighty\"", "port"),
            ("port = 70000", "port"),
            ("pin_cores = 1", "pin_cores"),
            ("[stream]\nrepublish = \"maybe\"", "republish"),
            ("[stream]\nrepublish = \"Replace\"", "republish"),
            ("[rtmp]\nchunk_size_out = -5", "chunk_size_out"),
        ] {
            let err = Config::from_toml_str(text, "bad.toml").unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ConfigError::Parse { .. }), "{text}: {msg}");
            assert!(
                msg.contains("bad.toml") && msg.contains(key),
                "{text}: {msg}"
            );
        }
        // Values of the right type that shardcast cannot use: validation
        // names the dotted key.
        for (text, key) in [
            ("[rtmp]\nchunk_size_out = 100", "rtmp.chunk_size_out"),
            ("[rtmp]\nchunk_size_out = 16777216", "rtmp.chunk_size_out"),
            ("[rtmp]\nchunk_size_in_max = 127", "rtmp.chunk_size_in_max"),
            ("[rtmp]\nmessage_len_max = 16777216", "rtmp.message_len_max"),
            ("[rtmp]\nmessage_len_max = 100", "rtmp.message_len_max"),
            ("[rtmp]\namf_depth_max = 3", "rtmp.amf_depth_max"),
            ("[rtmp]\nchunk_streams_max = 2", "rtmp.chunk_streams_max"),
            (
                "[rtmp]\nhandshake_timeout_s = 0",
                "rtmp.handshake_timeout_s",
            ),
            ("[rtmp]\nwindow_ack_size = 0", "rtmp.window_ack_size"),
            (
                "[stream]\nplayer_queue_bytes_max = 1000",
                "stream.player_queue_bytes_max",
            ),
            (
                "[stream]\ngop_cache_bytes_max = 0",
                "stream.gop_cache_bytes_max",
            ),
            (
                "[stream]\ngop_cache_frames_max = 0",
                "stream.gop_cache_frames_max",
            ),
            ("idle_timeout_s = 0", "idle_timeout_s"),
            ("idle_timeout_s = -2", "idle_timeout_s"),
            ("listen = \"localhost:80\"", "listen"),
            ("shards = 5000", "shards"),
            ("default_vhost = \"a/b\"", "default_vhost"),
            ("vhosts = [\"\"]", "vhosts"),
            ("log = \"\"", "log.level"),
            ("port = 9000\ninternal_port = 9000", "internal_port"),
        ] {
            let err = Config::from_toml_str(text, "bad.toml").unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, ConfigError::Invalid { key: k, .. } if k == key),
                "{text}: {msg}"
            );
            assert!(
                msg.starts_with(&format!("config bad.toml: {key}: ")),
                "{text}: {msg}"
            );
        }
        // A disabled GOP cache may have zero bounds.
        Config::from_toml_str(
            "[stream]\ngop_cache = false\ngop_cache_bytes_max = 0",
            "ok.toml",
        )
        .unwrap();
        let msg = Config::from_toml_str("[rtmp]\nchunk_size_out = 100", "b.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "config b.toml: rtmp.chunk_size_out: 100 is outside 128..=16777215"
        );
    }

    /// `rtmp.message_len_max` may be as large as the 24-bit length field
    /// carries and no larger; the error names the key and the bound.
    #[test]
    fn message_len_max_is_bounded_by_the_24_bit_field() {
        let c = Config::from_toml_str("[rtmp]\nmessage_len_max = 16777215", "a.toml").unwrap();
        assert_eq!(c.rtmp.message_len_max, RTMP_MESSAGE_LEN_LIMIT);
        let msg = Config::from_toml_str("[rtmp]\nmessage_len_max = 16777216", "a.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "config a.toml: rtmp.message_len_max: 16777216 is outside 4096..=16777215"
        );
    }

    /// Signed modes need the secret; an unknown mode is refused by name.
    #[test]
    fn auth_modes_and_their_secret() {
        let c = Config::from_toml_str(
            "[auth]\nplay = \"signed\"\nsecret = \"s\"\nclock_skew_s = 5",
            "a.toml",
        )
        .unwrap();
        assert_eq!(
            (c.auth.publish, c.auth.play, c.auth.clock_skew_s),
            (AuthMode::Open, AuthMode::Signed, 5)
        );
        let msg = Config::from_toml_str("[auth]\npublish = \"signed\"", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("auth.secret"), "{msg}");
        let msg = Config::from_toml_str("[auth]\npublish = \"magic\"", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("magic") && msg.contains("hook"), "{msg}");
    }

    /// The error loading `toml` (as `a.toml`) gives.
    /// `log` is a filter string or a `[log]` table; a table's unknown keys
    /// and bad values are refused by name.
    #[test]
    fn log_is_a_level_or_a_table() {
        let short = Config::from_toml_str("log = \"debug\"", "a.toml").unwrap();
        assert_eq!(short.log.level, "debug");
        assert_eq!(short.log.format, LogFormat::Text);
        let table = Config::from_toml_str(
            "[log]\nlevel = \"warn\"\nfile = \"/tmp/s.log\"\nformat = \"json\"\naccess = true",
            "a.toml",
        )
        .unwrap();
        assert_eq!(
            table.log,
            LogConfig {
                level: "warn".into(),
                file: "/tmp/s.log".into(),
                format: LogFormat::Json,
                access: true,
            }
        );
        let unknown = load_error("[log]\nlevle = \"info\"");
        assert!(unknown.contains("unknown field `levle`"), "{unknown}");
        let format = load_error("[log]\nformat = \"xml\"");
        assert!(format.contains("unknown variant `xml`"), "{format}");
        let number = load_error("log = 3");
        assert!(number.contains("a [log] table"), "{number}");
    }

    fn load_error(toml: &str) -> String {
        Config::from_toml_str(toml, "a.toml")
            .unwrap_err()
            .to_string()
    }

    /// Mode "hook" needs its URL; a URL must be `http://<ip>:<port>/...`.
    #[test]
    fn hook_mode_needs_its_url() {
        let c = Config::from_toml_str(
            "[auth]\nplay = \"hook\"\n[hooks]\non_play = \"http://127.0.0.1:9/p\"\n\
             timeout_ms = 500\non_error = \"allow\"",
            "a.toml",
        )
        .unwrap();
        assert_eq!(
            (c.auth.play, c.hooks.timeout_ms, c.hooks.on_error),
            (AuthMode::Hook, 500, HookOnError::Allow)
        );
        let msg = load_error("[auth]\npublish = \"hook\"");
        assert!(
            msg.contains("hooks.on_publish") && msg.contains("auth.publish"),
            "{msg}"
        );
        let msg = load_error("[hooks]\non_stop = \"https://x.example/\"");
        assert!(
            msg.contains("hooks.on_stop") && msg.contains("http://"),
            "{msg}"
        );
        let msg = load_error("[hooks]\ntimeout_ms = 0");
        assert!(msg.contains("hooks.timeout_ms"), "{msg}");
    }

    /// A list entry that is no CIDR is refused, naming the key and entry.
    #[test]
    fn access_and_api_lists_are_cidrs() {
        let c = Config::from_toml_str(
            "[access]\ndeny_play = [\"10.0.0.0/8\", \"::1\"]\n[api]\nallow = [\"192.0.2.1\"]",
            "a.toml",
        )
        .unwrap();
        assert!(!c.access_rule(false).deny.is_empty());
        let msg = Config::from_toml_str("[api]\nallow = [\"10.0.0.0/40\"]", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("api.allow") && msg.contains("10.0.0.0/40"),
            "{msg}"
        );
    }

    /// A config file in a directory removed when the guard drops.
    fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_override_file() {
        let (_dir, path) = temp_file(
            "override.toml",
            "port = 1935\nshards = 2\nlog = \"warn\"\nlisten = \"127.0.0.1\"\n",
        );
        let from_file = Config::load(&Flags {
            config: Some(path.clone()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!((from_file.port, from_file.shards), (1935, 2));
        assert_eq!(from_file.log.level, "warn");

        let flags = Flags::try_parse_from([
            "shardcast",
            "--config",
            path.to_str().unwrap(),
            "--port",
            "9000",
            "--shards",
            "4",
            "--pin-cores",
            "--log",
            "debug",
            "--listen",
            "::1",
        ])
        .unwrap();
        let c = Config::load(&flags).unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.shards, 4);
        assert!(c.pin_cores);
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.listen, "::1");
        // Untouched by flags: still from the file's defaults.
        assert_eq!(c.rtmp, RtmpConfig::default());

        // No file: flags over the defaults.
        let c =
            Config::load(&Flags::try_parse_from(["shardcast", "--port", "1"]).unwrap()).unwrap();
        assert_eq!(c.port, 1);
        assert_eq!(c.stream, StreamConfig::default());

        // A bad flag value is named like a bad file value.
        let err = Config::load(&Flags {
            config: Some(path.clone()),
            listen: Some("nowhere".into()),
            ..Flags::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("override.toml with flags: listen:"), "{msg}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn missing_file_named() {
        let err = Config::load(&Flags {
            config: Some(PathBuf::from("/nonexistent/shardcast.toml")),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/shardcast.toml"));
    }

    #[test]
    fn example_file_equals_defaults() {
        let c = Config::from_toml_str(EXAMPLE, "shardcast.toml").unwrap();
        assert_eq!(c, Config::default());
    }

    /// Every field of the config appears (uncommented) in the example file,
    /// so the file stays the complete reference.
    #[test]
    fn example_file_lists_every_field() {
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        fn walk(prefix: &str, defaults: &toml::Table, example: &toml::Table) {
            for (key, value) in defaults {
                let path = format!("{prefix}{key}");
                let Some(found) = example.get(key) else {
                    panic!("shardcast.toml lacks {path}");
                };
                if let (toml::Value::Table(d), toml::Value::Table(e)) = (value, found) {
                    walk(&format!("{path}."), d, e);
                }
            }
        }
        walk("", &defaults, &example);
    }

    #[test]
    fn round_trip_through_toml() {
        let mut c = Config {
            vhosts: vec!["live.example.com".into()],
            ..Config::default()
        };
        c.stream.republish = Republish::Reject;
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("republish = \"reject\""), "{text}");
        assert_eq!(Config::from_toml_str(&text, "rt.toml").unwrap(), c);
    }
}
