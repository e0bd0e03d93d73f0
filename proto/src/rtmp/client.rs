//! The client side of an RTMP connection, as plain data: the edge's
//! upstream puller and the load generator (`shardcast-bench`) drive it.
//!
//! Bytes go in ([`ClientSession::handle_input`]); events and bytes come out
//! ([`ClientSession::poll_output`]). The session runs the whole start-up by
//! itself: handshake, `connect`, then for a publisher `releaseStream`,
//! `FCPublish`, `createStream` and `publish` (the sequence OBS and FFmpeg
//! send), for a player `createStream`, `play` and a buffer length. No
//! socket, clock or lock inside: time reaches it only as the timestamps of
//! the frames it is given. Only the command sequence lives here; the rest
//! is the [`Connection`] core the server session
//! runs too, in [`Role::Client`].
//!
//! ```text
//!  ExpectHandshake ──S0 S1 S2──▶ ExpectConnectResult ──_result──▶ ExpectStreamId
//!  ExpectStreamId ──_result(id), publish──▶ ExpectPublishStart ──onStatus Publish.Start──▶ Publishing
//!  ExpectStreamId ──_result(id), play─────▶ ExpectPlayStart ────onStatus Play.Start─────▶ Playing
//!  ExpectPublishStart | ExpectPlayStart ──error onStatus or _error──▶ Refused
//!  any ──close()──▶ Closed
//! ```
//!
//! A refused `connect` or `createStream` ends the connection (an error from
//! `handle_input`); a refused `publish` or `play` is a stream-level outcome
//! ([`ClientEvent::Refused`]) and the connection stays usable for the
//! driver to close politely.
//!
//! Defined by: Adobe RTMP Specification 1.0 (sections 5 and 7).

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;

use super::amf::{encode_amf0, Amf0Value, AmfLimits, Command};
use super::chunk::{ChunkLimits, EncodeError};
use super::conn::{Blame, ConnConfig, ConnError, Connection, Incoming, Role};
use super::message::{ControlMessage, UserControl};
use super::wire::CSID_DATA;
use crate::media::{Frame, MediaError};

/// The RTMP port when a URL names none (IANA registration for RTMP).
pub const DEFAULT_PORT: u16 = 1935;
/// The RTMPS port when a URL names none (what FFmpeg and OBS use).
pub const DEFAULT_TLS_PORT: u16 = 443;

/// Our outgoing chunk size unless the config says otherwise: large enough
/// that audio frames and most video frames go out as one chunk.
pub const DEFAULT_CHUNK_SIZE_OUT: u32 = 4096;

/// The buffer length a player announces (SetBufferLength), in ms. FFmpeg
/// announces 3000; servers use it only to pace recorded streams.
pub const DEFAULT_BUFFER_MS: u32 = 3000;

/// Transaction ids of the commands we send. Each command is sent once per
/// connection, so fixed numbers identify the replies.
mod txn {
    pub const CONNECT: f64 = 1.0;
    pub const RELEASE_STREAM: f64 = 2.0;
    pub const FC_PUBLISH: f64 = 3.0;
    pub const CREATE_STREAM: f64 = 4.0;
    pub const PUBLISH_OR_PLAY: f64 = 5.0;
}

/// Bounds on what the server may make us hold.
///
/// Worst case per connection: what [`ChunkLimits`] allows (one chunk of
/// input plus one partial message per chunk stream) plus one decoded
/// command bounded by [`AmfLimits`]. Events wait in a queue only until the
/// driver drains [`ClientSession::poll_output`], which it does after every
/// input.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientLimits {
    /// Incoming chunk size, message length and chunk stream count.
    pub chunk: ChunkLimits,
    /// AMF decoding bounds for commands and data messages.
    pub amf: AmfLimits,
}

/// What the connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// Receive a stream (`play`).
    Play,
    /// Send a stream (`publish`, type `live`).
    Publish,
}

/// Where to connect and what to do there.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `tcUrl` of `connect`, e.g. `rtmp://host:1935/live`.
    pub tc_url: String,
    /// `app` of `connect` (may carry a query string).
    pub app: String,
    /// Stream name for `publish`/`play`, with its query string if any.
    pub stream: String,
    pub mode: StreamMode,
    /// Our outgoing chunk size, announced right after the handshake;
    /// 1..=0x7FFFFFFF.
    pub chunk_size_out: u32,
    /// Buffer length announced by a player, in ms.
    pub buffer_ms: u32,
    pub limits: ClientLimits,
}

impl ClientConfig {
    /// A config for `url` with default chunk size, buffer length and limits.
    pub fn new(url: &RtmpUrl, mode: StreamMode) -> Self {
        ClientConfig {
            tc_url: url.tc_url(),
            app: url.app.clone(),
            stream: url.stream.clone(),
            mode,
            chunk_size_out: DEFAULT_CHUNK_SIZE_OUT,
            buffer_ms: DEFAULT_BUFFER_MS,
            limits: ClientLimits::default(),
        }
    }

    /// A config for `url` (`rtmp://host[:port]/app/stream[?query]`) with
    /// default chunk size, buffer length and limits.
    pub fn from_url(url: &str, mode: StreamMode) -> Result<Self, UrlError> {
        Ok(Self::new(&RtmpUrl::parse(url)?, mode))
    }
}

/// The parts of an `rtmp://host[:port]/app[/inst]/stream[?query]` URL, or
/// of an `rtmps://` one (RTMP over TLS; this module only speaks RTMP, the
/// driver does the TLS).
///
/// As FFmpeg does, the app is the first path segment and the stream name is
/// the rest (so `rtmp://h/live/a/b` plays `a/b` in app `live`); the query
/// string stays on the stream name, where servers read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpUrl {
    /// rtmps://: RTMP over TLS.
    pub tls: bool,
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub app: String,
    /// Stream name with its query string.
    pub stream: String,
}

/// Why a URL is not an RTMP URL we can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// It does not start with `rtmp://` or `rtmps://`.
    Scheme,
    /// No host after `rtmp://`.
    NoHost,
    /// The port is not a number in 1..=65535.
    BadPort(String),
    /// The path lacks an app or a stream name.
    NoStream,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::Scheme => f.write_str("URL does not start with rtmp:// or rtmps://"),
            UrlError::NoHost => f.write_str("URL has no host"),
            UrlError::BadPort(p) => write!(f, "URL port '{p}' is not in 1..=65535"),
            UrlError::NoStream => f.write_str("URL path needs /app/stream"),
        }
    }
}

impl std::error::Error for UrlError {}

impl RtmpUrl {
    /// Parses `rtmp://host[:port]/app/stream[?query]` or `rtmps://…`.
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (tls, rest) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(UrlError::Scheme),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None if tls => DEFAULT_TLS_PORT,
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| UrlError::BadPort(p.to_string()))?,
        };
        let (app, stream) = path.split_once('/').ok_or(UrlError::NoStream)?;
        if app.is_empty() || stream.is_empty() || stream.starts_with('?') {
            return Err(UrlError::NoStream);
        }
        Ok(RtmpUrl {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            stream: stream.to_string(),
        })
    }

    /// `rtmp://host:port/app` (`rtmps://` for TLS), the `tcUrl` of
    /// `connect`.
    pub fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}/{}", self.host, self.port, self.app)
        } else {
            format!("{scheme}://{}:{}/{}", self.host, self.port, self.app)
        }
    }
}

/// The whole URL, the port always written: `tcUrl` then `/stream`.
impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.stream)
    }
}

/// One `onStatus` info object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `status`, `warning` or `error`.
    pub level: String,
    /// E.g. `NetStream.Play.Start`.
    pub code: String,
    pub description: String,
}

/// What the session tells its driver.
#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// `connect` succeeded.
    Connected,
    /// `onStatus NetStream.Publish.Start`: frames may be sent.
    PublishStarted {
        /// The message stream id frames go out on.
        stream_id: u32,
    },
    /// `onStatus NetStream.Play.Start`: media follows.
    PlayStarted {
        /// The message stream id media comes on.
        stream_id: u32,
    },
    /// Every `onStatus` the server sends, including those above.
    Status(Status),
    /// The server refused the `publish` or `play` (an error `onStatus` or
    /// `_error`). Stream-level: the connection is still up.
    Refused(Status),
    /// An audio or video message, with its message timestamp.
    Media(Frame),
    /// `onMetaData`, as the AMF0 body `["onMetaData", props]`.
    Metadata(Bytes),
    /// A media message that did not parse; it was dropped.
    BadMedia(MediaError),
    /// User control StreamEOF for our stream: the server ended it.
    StreamEof,
    /// [`ClientSession::close`] was called; the goodbye is in the output.
    Closed,
}

/// What the driver does next: `Output::Event` or `Output::Transmit`.
pub type Output = super::conn::Output<ClientEvent>;

/// Why the connection must close. [`ClientError::blame`] says whether the
/// server caused it: everything but a message of ours that does not fit is
/// the server breaking the protocol, or ([`ClientError::Rejected`]) its
/// policy.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// Below the commands: handshake, chunk stream, control messages, AMF
    /// decoding, aggregates, metadata size, or a message we could not send.
    Connection(ConnError),
    /// The server answered `connect` or `createStream` with `_error` or an
    /// unsuccessful status.
    Rejected {
        /// The command refused.
        command: &'static str,
        /// The info object's code and description, if it had them.
        status: Option<Status>,
    },
    /// `createStream` was answered with a stream id that is not an integer
    /// in 1..=2^32-1 (`None`: no number at all).
    BadStreamId {
        /// The number the `_result` carried.
        value: Option<f64>,
    },
    /// A command of ours does not fit the 24-bit message length field
    /// (a stream name or URL of that size in our config).
    CommandTooLong {
        /// The command.
        command: &'static str,
        /// The encoder's error.
        error: EncodeError,
    },
}

impl ClientError {
    /// Who caused it.
    pub fn blame(&self) -> Blame {
        match self {
            ClientError::Connection(e) => e.blame(),
            ClientError::CommandTooLong { .. } => Blame::Local,
            ClientError::Rejected { .. } | ClientError::BadStreamId { .. } => Blame::Peer,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connection(e) => e.fmt(f),
            ClientError::Rejected {
                command,
                status: Some(s),
            } => write!(
                f,
                "server refused '{command}': {} ({})",
                s.code, s.description
            ),
            ClientError::Rejected {
                command,
                status: None,
            } => write!(f, "server refused '{command}'"),
            ClientError::BadStreamId { value } => write!(
                f,
                "createStream answered with stream id {value:?}, not an integer in 1..=2^32-1"
            ),
            ClientError::CommandTooLong { command, error } => {
                write!(f, "our '{command}' does not fit: {error}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl From<ConnError> for ClientError {
    fn from(e: ConnError) -> Self {
        ClientError::Connection(e)
    }
}

/// Why [`ClientSession::send_frame`] or `send_metadata` sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Before `PublishStarted` or after `close`: a bug of the driver.
    NotPublishing,
    /// The payload does not fit the 24-bit message length field.
    TooLong(EncodeError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::NotPublishing => f.write_str("frame sent while not publishing"),
            SendError::TooLong(e) => write!(f, "frame not sent: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Where the session is, named for what it waits for (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientPhase {
    ExpectHandshake,
    ExpectConnectResult,
    ExpectStreamId,
    ExpectPublishStart,
    ExpectPlayStart,
    Publishing,
    Playing,
    /// The publish or play was refused.
    Refused,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ExpectHandshake,
    ExpectConnectResult,
    ExpectStreamId,
    ExpectPublishStart { stream_id: u32 },
    ExpectPlayStart { stream_id: u32 },
    Publishing { stream_id: u32 },
    Playing { stream_id: u32 },
    Refused,
    Closed,
}

/// The client side of one RTMP connection: the command sequence over a
/// [`Connection`] in [`Role::Client`].
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    conn: Connection,
    state: State,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A session whose C0C1 is already waiting in the output. `random`
    /// and `epoch_ms` seed the handshake's C1.
    ///
    /// Panics, once the handshake is done, if `config.chunk_size_out` is 0
    /// or above 0x7FFFFFFF.
    pub fn new(config: ClientConfig, random: u64, epoch_ms: u32) -> Self {
        let conn_config = ConnConfig {
            chunk: config.limits.chunk,
            amf: config.limits.amf,
            // No acknowledgements before the server's Window
            // Acknowledgement Size (spec 5.4.4).
            ack_window: 0,
        };
        ClientSession {
            conn: Connection::new(Role::Client, conn_config, random, epoch_ms),
            config,
            state: State::ExpectHandshake,
            events: VecDeque::new(),
        }
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if self.state == State::Closed {
            self.conn.discard_input(bytes.len());
            return Ok(());
        }
        self.conn.handle_input(bytes);
        while let Some(incoming) = self.conn.poll_message()? {
            match incoming {
                Incoming::HandshakeDone => {
                    self.set_state(State::ExpectConnectResult);
                    self.send_connect()?;
                }
                Incoming::Command { command, .. } => self.handle_command(command)?,
                Incoming::Media(frame) => self.events.push_back(ClientEvent::Media(frame)),
                Incoming::BadMedia(e) => self.events.push_back(ClientEvent::BadMedia(e)),
                Incoming::Metadata(body) => self.events.push_back(ClientEvent::Metadata(body)),
                Incoming::UserControl(UserControl::StreamEof(id))
                    if Some(id) == self.stream_id() =>
                {
                    self.events.push_back(ClientEvent::StreamEof);
                }
                Incoming::UserControl(_) => {}
            }
        }
        Ok(())
    }

    /// The next event or bytes to send. Events come first; the bytes the
    /// input produced are batched into one transmit.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.conn.poll_output(&mut self.events)
    }

    /// Takes the bytes waiting to be sent, leaving events in place.
    pub fn take_transmit(&mut self) -> Option<Bytes> {
        self.conn.take_transmit()
    }

    /// Where the session is.
    pub fn phase(&self) -> ClientPhase {
        match self.state {
            State::ExpectHandshake => ClientPhase::ExpectHandshake,
            State::ExpectConnectResult => ClientPhase::ExpectConnectResult,
            State::ExpectStreamId => ClientPhase::ExpectStreamId,
            State::ExpectPublishStart { .. } => ClientPhase::ExpectPublishStart,
            State::ExpectPlayStart { .. } => ClientPhase::ExpectPlayStart,
            State::Publishing { .. } => ClientPhase::Publishing,
            State::Playing { .. } => ClientPhase::Playing,
            State::Refused => ClientPhase::Refused,
            State::Closed => ClientPhase::Closed,
        }
    }

    /// Bytes read so far (handshake included).
    pub fn bytes_in(&self) -> u64 {
        self.conn.bytes_in()
    }

    /// The message stream id of our publish or play, once created.
    pub fn stream_id(&self) -> Option<u32> {
        match self.state {
            State::ExpectPublishStart { stream_id }
            | State::ExpectPlayStart { stream_id }
            | State::Publishing { stream_id }
            | State::Playing { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    /// Appends one audio, video or data frame, chunked with header
    /// compression on chunk stream 4 (audio), 6 (video) or 5 (data).
    pub fn send_frame(&mut self, frame: &Frame) -> Result<(), SendError> {
        let State::Publishing { stream_id } = self.state else {
            return Err(SendError::NotPublishing);
        };
        self.conn
            .send_frame(stream_id, frame)
            .map_err(SendError::TooLong)
    }

    /// Appends `@setDataFrame` + `body`, where `body` is the AMF0 of
    /// `["onMetaData", props]` (as [`ClientEvent::Metadata`] carries it).
    pub fn send_metadata(&mut self, body: &[u8]) -> Result<(), SendError> {
        let State::Publishing { stream_id } = self.state else {
            return Err(SendError::NotPublishing);
        };
        let mut payload = Vec::with_capacity(16 + body.len());
        encode_amf0(&Amf0Value::String("@setDataFrame".into()), &mut payload);
        payload.extend_from_slice(body);
        self.conn
            .send_data(CSID_DATA, stream_id, &payload)
            .map_err(SendError::TooLong)
    }

    /// Ends the session politely: `FCUnpublish` and `deleteStream` for a
    /// publisher, `deleteStream` for a player (queued in the output), then
    /// [`ClientEvent::Closed`]. Later input is ignored.
    pub fn close(&mut self) {
        let stream_id = match self.state {
            State::Closed => return,
            State::Publishing { stream_id } | State::ExpectPublishStart { stream_id } => {
                // Smaller than the `publish` that carried the same name, so
                // it fits whenever that did.
                let _ = self.command("FCUnpublish", 0.0, vec![self.stream_name()], 0);
                Some(stream_id)
            }
            State::Playing { stream_id } | State::ExpectPlayStart { stream_id } => Some(stream_id),
            _ => None,
        };
        if let Some(id) = stream_id {
            // A few bytes: always fits.
            let _ = self.command("deleteStream", 0.0, vec![Amf0Value::Number(id.into())], 0);
        }
        self.set_state(State::Closed);
        self.events.push_back(ClientEvent::Closed);
    }

    /// Moves on; media and data reach us only from our `play` on (the
    /// server sends Play.Start and the GOP cache in one write, so media
    /// can follow the status in the same input).
    fn set_state(&mut self, state: State) {
        self.state = state;
        self.conn.set_media_in(matches!(
            state,
            State::Playing { .. } | State::ExpectPlayStart { .. }
        ));
    }

    fn stream_name(&self) -> Amf0Value {
        Amf0Value::String(self.config.stream.clone())
    }

    fn command(
        &mut self,
        name: &'static str,
        txn: f64,
        args: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<(), ClientError> {
        self.conn
            .send_command(stream_id, name, txn, Amf0Value::Null, args)
            .map_err(|error| ClientError::CommandTooLong {
                command: name,
                error,
            })
    }

    fn control(&mut self, msg: &ControlMessage) -> Result<(), ClientError> {
        self.conn
            .send_control(msg)
            .map_err(|e| ClientError::Connection(ConnError::Encode(e)))
    }

    /// Set Chunk Size, then `connect` (right after C2, as OBS does).
    fn send_connect(&mut self) -> Result<(), ClientError> {
        self.control(&ControlMessage::SetChunkSize(self.config.chunk_size_out))?;
        let s = |v: &str| Amf0Value::String(v.into());
        let mut props = vec![
            ("app".into(), s(&self.config.app)),
            ("type".into(), s("nonprivate")),
            (
                "flashVer".into(),
                s(match self.config.mode {
                    StreamMode::Publish => "FMLE/3.0 (compatible; shardcast)",
                    StreamMode::Play => "LNX 9,0,124,2",
                }),
            ),
            ("tcUrl".into(), s(&self.config.tc_url)),
        ];
        if self.config.mode == StreamMode::Play {
            props.extend([
                ("fpad".into(), Amf0Value::Boolean(false)),
                ("capabilities".into(), Amf0Value::Number(15.0)),
                ("audioCodecs".into(), Amf0Value::Number(4071.0)),
                ("videoCodecs".into(), Amf0Value::Number(252.0)),
                ("videoFunction".into(), Amf0Value::Number(1.0)),
            ]);
        }
        self.conn
            .send_command(
                0,
                "connect",
                txn::CONNECT,
                Amf0Value::Object(props),
                Vec::new(),
            )
            .map_err(|error| ClientError::CommandTooLong {
                command: "connect",
                error,
            })
    }

    fn handle_command(&mut self, cmd: Command) -> Result<(), ClientError> {
        match cmd.name.as_str() {
            "_result" => self.on_result(&cmd),
            "_error" => self.on_error(&cmd),
            "onStatus" => {
                self.on_status(&cmd);
                Ok(())
            }
            // onBWDone, onFCPublish, onFCUnpublish, close and calls we do
            // not implement: a client may ignore them.
            _ => Ok(()),
        }
    }

    fn on_result(&mut self, cmd: &Command) -> Result<(), ClientError> {
        match (self.state, cmd.transaction_id) {
            (State::ExpectConnectResult, t) if t == txn::CONNECT => {
                let status = info_status(cmd);
                if let Some(s) = status.as_ref().filter(|s| s.level == "error") {
                    return Err(ClientError::Rejected {
                        command: "connect",
                        status: Some(s.clone()),
                    });
                }
                self.events.push_back(ClientEvent::Connected);
                self.set_state(State::ExpectStreamId);
                if self.config.mode == StreamMode::Publish {
                    let name = self.stream_name();
                    self.command("releaseStream", txn::RELEASE_STREAM, vec![name.clone()], 0)?;
                    self.command("FCPublish", txn::FC_PUBLISH, vec![name], 0)?;
                }
                self.command("createStream", txn::CREATE_STREAM, Vec::new(), 0)?;
            }
            (State::ExpectStreamId, t) if t == txn::CREATE_STREAM => {
                let id = cmd.args.iter().find_map(Amf0Value::as_f64);
                let stream_id = match id {
                    Some(v) if v.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&v) => {
                        v as u32
                    }
                    value => return Err(ClientError::BadStreamId { value }),
                };
                let name = self.stream_name();
                match self.config.mode {
                    StreamMode::Publish => {
                        self.command(
                            "publish",
                            txn::PUBLISH_OR_PLAY,
                            vec![name, Amf0Value::String("live".into())],
                            stream_id,
                        )?;
                        self.set_state(State::ExpectPublishStart { stream_id });
                    }
                    StreamMode::Play => {
                        // Start -2: live if there is one, else recorded;
                        // duration -1: until the stream ends.
                        self.command(
                            "play",
                            txn::PUBLISH_OR_PLAY,
                            vec![name, Amf0Value::Number(-2.0), Amf0Value::Number(-1.0)],
                            stream_id,
                        )?;
                        self.control(&ControlMessage::UserControl(UserControl::SetBufferLength {
                            stream_id,
                            buffer_ms: self.config.buffer_ms,
                        }))?;
                        self.set_state(State::ExpectPlayStart { stream_id });
                    }
                }
            }
            // Replies to releaseStream and FCPublish carry nothing we need.
            _ => {}
        }
        Ok(())
    }

    fn on_error(&mut self, cmd: &Command) -> Result<(), ClientError> {
        let t = cmd.transaction_id;
        match self.state {
            State::ExpectConnectResult if t == txn::CONNECT => Err(ClientError::Rejected {
                command: "connect",
                status: info_status(cmd),
            }),
            State::ExpectStreamId if t == txn::CREATE_STREAM => Err(ClientError::Rejected {
                command: "createStream",
                status: info_status(cmd),
            }),
            State::ExpectPublishStart { .. } | State::ExpectPlayStart { .. }
                if t == txn::PUBLISH_OR_PLAY =>
            {
                let status = info_status(cmd).unwrap_or_else(|| Status {
                    level: "error".into(),
                    code: String::new(),
                    description: "_error without an info object".into(),
                });
                self.set_state(State::Refused);
                self.events.push_back(ClientEvent::Refused(status));
                Ok(())
            }
            // Some servers answer releaseStream or FCPublish with _error;
            // the publish goes on.
            _ => Ok(()),
        }
    }

    fn on_status(&mut self, cmd: &Command) {
        let Some(status) = info_status(cmd) else {
            return;
        };
        self.events.push_back(ClientEvent::Status(status.clone()));
        match self.state {
            State::ExpectPublishStart { stream_id } if status.code == "NetStream.Publish.Start" => {
                self.set_state(State::Publishing { stream_id });
                self.events
                    .push_back(ClientEvent::PublishStarted { stream_id });
            }
            State::ExpectPlayStart { stream_id } if status.code == "NetStream.Play.Start" => {
                self.set_state(State::Playing { stream_id });
                self.events
                    .push_back(ClientEvent::PlayStarted { stream_id });
            }
            State::ExpectPublishStart { .. } | State::ExpectPlayStart { .. }
                if status.level == "error" =>
            {
                self.set_state(State::Refused);
                self.events.push_back(ClientEvent::Refused(status));
            }
            _ => {}
        }
    }
}

/// The `{level, code, description}` object of an `onStatus`, `_result` or
/// `_error`: the first object among the arguments.
fn info_status(cmd: &Command) -> Option<Status> {
    let info = cmd
        .args
        .iter()
        .map(|a| a.clone().into_amf0())
        .find(|a| matches!(a, Amf0Value::Object(_) | Amf0Value::EcmaArray(_)))?;
    let field = |k: &str| {
        info.get(k)
            .and_then(Amf0Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Status {
        level: field("level"),
        code: field("code"),
        description: field("description"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf::{encode_command, parse_command};
    use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, Message};
    use crate::rtmp::message::{msg_type, parse_control, write_control};
    use crate::rtmp::session::{Output as ServerOutput, ServerSession, SessionEvent};
    use crate::rtmp::test_util::{
        audio_frame, decode_with, on_metadata, sample_frames, server_config, video_frame,
    };
    use crate::rtmp::wire;
    use bytes::BytesMut;

    fn client(mode: StreamMode) -> ClientSession {
        let config = ClientConfig::from_url("rtmp://127.0.0.1:8079/live/cam?k=v", mode).unwrap();
        ClientSession::new(config, 42, 0)
    }

    /// How the test server answers publish and play requests.
    #[derive(Clone, Copy)]
    enum Answer {
        Accept,
        Reject,
    }

    /// What each side saw while the two were pumped against each other.
    #[derive(Default)]
    struct Seen {
        client: Vec<ClientEvent>,
        server: Vec<SessionEvent>,
    }

    /// Feeds each side's transmits to the other until both are quiet.
    /// `split` feeds the client that many bytes at a time.
    fn pump(c: &mut ClientSession, s: &mut ServerSession, answer: Answer, split: usize) -> Seen {
        let mut seen = Seen::default();
        for _ in 0..100 {
            let mut progress = false;
            while let Some(o) = c.poll_output() {
                progress = true;
                match o {
                    Output::Transmit(b) => s.handle_input(&b).expect("server accepts"),
                    Output::Event(e) => seen.client.push(e),
                }
            }
            while let Some(o) = s.poll_output() {
                progress = true;
                match o {
                    ServerOutput::Transmit(b) => {
                        for piece in b.chunks(split) {
                            c.handle_input(piece).expect("client accepts");
                        }
                    }
                    ServerOutput::Event(e) => {
                        match (&e, answer) {
                            (SessionEvent::PublishRequested(_), Answer::Accept) => {
                                s.accept_publish()
                            }
                            (SessionEvent::PublishRequested(_), Answer::Reject) => {
                                s.reject_publish("NetStream.Publish.BadName", "taken")
                            }
                            (SessionEvent::PlayRequested(_), Answer::Accept) => s.accept_play(),
                            (SessionEvent::PlayRequested(_), Answer::Reject) => {
                                s.reject_play("NetStream.Play.StreamNotFound", "none")
                            }
                            _ => {}
                        }
                        seen.server.push(e);
                    }
                }
            }
            if !progress {
                return seen;
            }
        }
        panic!("client and server never went quiet");
    }

    fn codes(events: &[ClientEvent]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Status(s) => Some(s.code.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn publish_against_the_server_session() {
        let mut c = client(StreamMode::Publish);
        let mut s = ServerSession::new(server_config(), 1, 0);
        let seen = pump(&mut c, &mut s, Answer::Accept, usize::MAX);
        assert!(matches!(seen.client.first(), Some(ClientEvent::Connected)));
        assert!(seen
            .client
            .iter()
            .any(|e| matches!(e, ClientEvent::PublishStarted { stream_id: 1 })));
        assert!(codes(&seen.client).contains(&"NetStream.Publish.Start".to_string()));
        assert_eq!(c.phase(), ClientPhase::Publishing);
        let req = seen
            .server
            .iter()
            .find_map(|e| match e {
                SessionEvent::PublishRequested(r) => Some(r.clone()),
                _ => None,
            })
            .expect("publish requested");
        assert_eq!((req.app.as_str(), req.name.as_str()), ("live", "cam"));
        assert_eq!(req.param("k"), Some("v"));
        assert_eq!(req.tc_url_host.as_deref(), Some("127.0.0.1"));

        // Frames and metadata arrive intact, with their timestamps.
        let meta = on_metadata(1280.0);
        c.send_metadata(&meta).unwrap();
        let sent = sample_frames();
        for f in &sent {
            c.send_frame(f).unwrap();
        }
        let seen = pump(&mut c, &mut s, Answer::Accept, usize::MAX);
        let mut got = seen.server.iter();
        assert!(matches!(got.next(), Some(SessionEvent::Metadata(m)) if m[..] == meta[..]));
        for want in &sent {
            match got.next() {
                Some(SessionEvent::Media(f)) => {
                    assert_eq!(f.timestamp, want.timestamp);
                    assert_eq!(f.payload, want.payload);
                    assert_eq!(f.kind, want.kind);
                }
                other => panic!("expected media, got {other:?}"),
            }
        }

        // close: FCUnpublish/deleteStream make the server end the publish.
        c.close();
        let seen = pump(&mut c, &mut s, Answer::Accept, usize::MAX);
        assert!(matches!(seen.client.as_slice(), [ClientEvent::Closed]));
        assert!(seen
            .server
            .iter()
            .any(|e| matches!(e, SessionEvent::Unpublished)));
        assert_eq!(c.send_frame(&sent[1]), Err(SendError::NotPublishing));
    }

    #[test]
    fn play_against_the_server_session_byte_by_byte() {
        let mut c = client(StreamMode::Play);
        let mut s = ServerSession::new(server_config(), 1, 0);
        // One byte at a time: every split point of the server's output.
        let seen = pump(&mut c, &mut s, Answer::Accept, 1);
        let started = seen
            .client
            .iter()
            .position(|e| matches!(e, ClientEvent::PlayStarted { stream_id: 1 }));
        assert!(started.is_some(), "events: {:?}", seen.client);
        assert_eq!(
            codes(&seen.client),
            ["NetStream.Play.Reset", "NetStream.Play.Start"]
        );
        assert_eq!(c.phase(), ClientPhase::Playing);
        assert_eq!(c.stream_id(), Some(1));
        assert!(seen
            .server
            .iter()
            .any(|e| matches!(e, SessionEvent::PlayRequested(r) if r.name == "cam")));

        // Media as the server's fan-out sends it (fmt 0 on csid 4/6).
        let mut bufs = Vec::new();
        let f = video_frame(0x0123_4567, true, 10_000);
        wire::media_message(&f, 1, s.chunk_size_out(), &mut bufs).unwrap();
        wire::media_message(&audio_frame(40), 1, s.chunk_size_out(), &mut bufs).unwrap();
        for b in &bufs {
            c.handle_input(b).unwrap();
        }
        let mut events = Vec::new();
        while let Some(o) = c.poll_output() {
            if let Output::Event(e) = o {
                events.push(e);
            }
        }
        match events.as_slice() {
            [ClientEvent::Media(v), ClientEvent::Media(a)] => {
                assert_eq!(v.timestamp, 0x0123_4567);
                assert!(v.keyframe && v.is_video());
                assert_eq!(v.payload, f.payload);
                assert_eq!(a.timestamp, 40);
                assert!(a.is_audio());
            }
            other => panic!("expected two media events, got {other:?}"),
        }
    }

    #[test]
    fn refused_publish_is_a_stream_level_event() {
        let mut c = client(StreamMode::Publish);
        let mut s = ServerSession::new(server_config(), 1, 0);
        let seen = pump(&mut c, &mut s, Answer::Reject, usize::MAX);
        let refused = seen.client.iter().find_map(|e| match e {
            ClientEvent::Refused(st) => Some(st.clone()),
            _ => None,
        });
        let refused = refused.expect("refused event");
        assert_eq!(refused.code, "NetStream.Publish.BadName");
        assert_eq!(refused.level, "error");
        assert_eq!(c.phase(), ClientPhase::Refused);
        assert!(!seen
            .client
            .iter()
            .any(|e| matches!(e, ClientEvent::PublishStarted { .. })));
    }

    /// Decodes the client's output after the C0C1/C2 bytes.
    fn client_messages(bytes: &[u8]) -> Vec<Message> {
        decode_with(&mut ChunkDecoder::new(ChunkLimits::default()), bytes)
    }

    #[test]
    fn wire_bytes_of_the_start() {
        let mut c = client(StreamMode::Publish);
        let Some(Output::Transmit(c0c1)) = c.poll_output() else {
            panic!("C0C1 first");
        };
        assert_eq!(c0c1.len(), 1 + 1536);
        assert_eq!(c0c1[0], 3, "RTMP version 3");
        assert!(c.poll_output().is_none());

        let mut s = ServerSession::new(server_config(), 1, 0);
        s.handle_input(&c0c1).unwrap();
        let Some(ServerOutput::Transmit(s012)) = s.poll_output() else {
            panic!("S0S1S2");
        };
        c.handle_input(&s012).unwrap();
        let Some(Output::Transmit(out)) = c.poll_output() else {
            panic!("C2 and connect");
        };
        // C2, then Set Chunk Size (csid 2, fmt 0, type 1, length 4), then
        // connect on csid 3.
        assert_eq!(
            &out[1536..1536 + 16],
            &[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00]
        );
        let msgs = client_messages(&out[1536..]);
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[1].csid, msgs[1].type_id), (3, msg_type::COMMAND_AMF0));
        // "connect" (AMF0 string) and transaction id 1.0.
        assert_eq!(
            &msgs[1].payload[..18],
            &[
                0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3F, 0xF0, 0, 0,
                0, 0, 0
            ]
        );
        let cmd = parse_command(&msgs[1].payload, false, &AmfLimits::default()).unwrap();
        assert_eq!(
            cmd.object.get("app").and_then(Amf0Value::as_str),
            Some("live")
        );
        assert_eq!(
            cmd.object.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:8079/live")
        );
    }

    /// Connects a client to a server session; returns them and a decoder
    /// that has read the client's chunk stream so far (what the server saw).
    fn started(mode: StreamMode) -> (ClientSession, ServerSession, ChunkDecoder) {
        let mut c = client(mode);
        let mut s = ServerSession::new(server_config(), 1, 0);
        let mut wire_out = Vec::new();
        for _ in 0..100 {
            let mut progress = false;
            while let Some(o) = c.poll_output() {
                progress = true;
                if let Output::Transmit(b) = o {
                    wire_out.extend_from_slice(&b);
                    s.handle_input(&b).unwrap();
                }
            }
            while let Some(o) = s.poll_output() {
                progress = true;
                match o {
                    ServerOutput::Transmit(b) => c.handle_input(&b).unwrap(),
                    ServerOutput::Event(SessionEvent::PublishRequested(_)) => s.accept_publish(),
                    ServerOutput::Event(SessionEvent::PlayRequested(_)) => s.accept_play(),
                    ServerOutput::Event(_) => {}
                }
            }
            if !progress {
                break;
            }
        }
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let mut buf = BytesMut::from(&wire_out[2 * 1536 + 1..]);
        while dec.decode(&mut buf).unwrap().is_some() {}
        assert!(buf.is_empty());
        (c, s, dec)
    }

    fn drain_transmit(c: &mut ClientSession) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(o) = c.poll_output() {
            if let Output::Transmit(b) = o {
                out.extend_from_slice(&b);
            }
        }
        out
    }

    #[test]
    fn media_headers_are_compressed() {
        let (mut c, _s, mut dec) = started(StreamMode::Publish);
        for ts in [0, 23, 46, 69] {
            c.send_frame(&audio_frame(ts)).unwrap();
        }
        let out = drain_transmit(&mut c);
        // fmt 0 (12-byte header), fmt 2 (a delta after an absolute
        // timestamp: 4 bytes), then fmt 3 (same length and delta: 1 byte).
        let len = 6;
        assert_eq!(out[0], 0x04);
        assert_eq!(out[12 + len], 0x84);
        assert_eq!(out[12 + len + 4 + len], 0xC4);
        assert_eq!(out[12 + len + 4 + len + 1 + len], 0xC4);
        assert_eq!(out.len(), 12 + 4 + 1 + 1 + 4 * len);
        let msgs = decode_with(&mut dec, &out);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [0, 23, 46, 69]);
        assert!(msgs.iter().all(|m| m.stream_id == 1 && m.csid == 4));
    }

    #[test]
    fn answers_pings_and_acknowledges_per_window() {
        let (mut c, _s, mut dec) = started(StreamMode::Play);
        let mut enc = ChunkEncoder::new();
        let mut input = BytesMut::new();
        write_control(
            &mut enc,
            &ControlMessage::UserControl(UserControl::PingRequest(77)),
            &mut input,
        )
        .unwrap();
        write_control(&mut enc, &ControlMessage::WindowAckSize(1000), &mut input).unwrap();
        // 1200 bytes of video on the play stream push us past the window.
        enc.write(6, 0, msg_type::VIDEO, 1, &[0x27; 1200], &mut input)
            .unwrap();
        c.handle_input(&input).unwrap();
        let msgs = decode_with(&mut dec, &drain_transmit(&mut c));
        let controls: Vec<_> = msgs
            .iter()
            .map(|m| parse_control(m.type_id, &m.payload).unwrap())
            .collect();
        assert_eq!(controls.len(), 2);
        assert_eq!(
            controls[0],
            ControlMessage::UserControl(UserControl::PingResponse(77))
        );
        assert!(
            matches!(controls[1], ControlMessage::Acknowledgement(n) if u64::from(n) == c.bytes_in())
        );
    }

    #[test]
    fn refused_connect_is_a_connection_error() {
        let mut c = client(StreamMode::Play);
        let mut s = ServerSession::new(server_config(), 1, 0);
        let Some(Output::Transmit(c0c1)) = c.poll_output() else {
            panic!("C0C1");
        };
        s.handle_input(&c0c1).unwrap();
        let Some(ServerOutput::Transmit(s012)) = s.poll_output() else {
            panic!("S0S1S2");
        };
        c.handle_input(&s012).unwrap();
        let _ = drain_transmit(&mut c);
        let mut body = Vec::new();
        encode_command(
            &Command {
                name: "_error".into(),
                transaction_id: 1.0,
                object: Amf0Value::Null,
                args: vec![Amf0Value::Object(vec![
                    ("level".into(), Amf0Value::String("error".into())),
                    (
                        "code".into(),
                        Amf0Value::String("NetConnection.Connect.Rejected".into()),
                    ),
                ])],
            },
            &mut body,
        );
        let mut input = BytesMut::new();
        ChunkEncoder::new()
            .write(3, 0, msg_type::COMMAND_AMF0, 0, &body, &mut input)
            .unwrap();
        let err = c.handle_input(&input).unwrap_err();
        assert!(
            err.to_string().contains("NetConnection.Connect.Rejected"),
            "{err}"
        );
    }

    #[test]
    fn urls() {
        let u = RtmpUrl::parse("rtmp://example.com/live/a/b?x=1").unwrap();
        assert_eq!(
            u,
            RtmpUrl {
                tls: false,
                host: "example.com".into(),
                port: 1935,
                app: "live".into(),
                stream: "a/b?x=1".into()
            }
        );
        assert_eq!(u.tc_url(), "rtmp://example.com:1935/live");
        let u = RtmpUrl::parse("rtmp://[::1]:8079/live/s").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8079));
        assert_eq!(u.tc_url(), "rtmp://[::1]:8079/live");
        assert_eq!(u.to_string(), "rtmp://[::1]:8079/live/s");
        let u = RtmpUrl::parse("rtmps://example.com/live/s?k=v").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, DEFAULT_TLS_PORT);
        assert_eq!(u.tc_url(), "rtmps://example.com:443/live");
        assert_eq!(u.to_string(), "rtmps://example.com:443/live/s?k=v");
        let plain = RtmpUrl { tls: false, ..u };
        assert_eq!(plain.to_string(), "rtmp://example.com:443/live/s?k=v");
        assert_eq!(RtmpUrl::parse("http://h/a/b"), Err(UrlError::Scheme));
        assert_eq!(RtmpUrl::parse("rtmp://h/live"), Err(UrlError::NoStream));
        assert_eq!(RtmpUrl::parse("rtmp://h/live/"), Err(UrlError::NoStream));
        assert_eq!(
            RtmpUrl::parse("rtmp://h:0/a/b"),
            Err(UrlError::BadPort("0".into()))
        );
        assert_eq!(RtmpUrl::parse("rtmp:///a/b"), Err(UrlError::NoHost));
    }
}
