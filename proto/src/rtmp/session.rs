//! The server side of an RTMP connection, as plain data.
//!
//! Bytes go in ([`ServerSession::handle_input`]); events and bytes come out
//! ([`ServerSession::poll_output`]). Decisions (may this publish? which
//! stream does this play?) are raised as events and answered later with
//! [`ServerSession::accept_publish`], [`ServerSession::reject_publish`] and
//! [`ServerSession::accept_play`], by whichever shard owns the stream. No
//! socket, clock or lock inside, so the session can move between shards.
//!
//! Only the command flow lives here; the handshake, chunk stream, control
//! messages, acknowledgements and aggregates are the
//! [`Connection`] core's, in [`Role::Server`].
//!
//! ```text
//!  ExpectHandshake ──C0C1/C2──▶ ExpectConnect ──connect──▶ Connected
//!                                                   │
//!                      createStream, publish/play ──┘ (one active stream)
//! ```
//!
//! Defined by: Adobe RTMP Specification 1.0 (sections 5 and 7).

use std::collections::VecDeque;

use bytes::Bytes;

use super::amf::{encode_amf0, Amf0Value, AmfError, AmfLimits, Command};
use super::chunk::{ChunkLimits, EncodeError};
use super::conn::{Blame, ConnConfig, ConnError, Connection, Incoming, Role};
use super::message::{ControlMessage, UserControl};
use super::wire::{self, CSID_COMMAND};
use crate::media::{Frame, MediaError};

/// Message streams one connection may create (`createStream` calls).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 16;

/// Until a publish is accepted a client sends only commands and control
/// messages, which are small: its messages are bounded by this, far below
/// the publishing limits (`SessionConfig::chunk`), so a client that has not
/// been admitted as a publisher (a player, or one refused or never asking)
/// holds at most [`UNPUBLISHED_PARTIAL_BYTES_MAX`] in reassembly.
pub const UNPUBLISHED_MESSAGE_LEN_MAX: u32 = 64 * 1024;
/// Reassembly bound, across chunk streams, until a publish is accepted.
pub const UNPUBLISHED_PARTIAL_BYTES_MAX: u64 = 2 * UNPUBLISHED_MESSAGE_LEN_MAX as u64;

/// Bounds and settings of one session.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Chunk stream bounds (incoming chunk size, message length, stream ids)
    /// of a publisher; until its publish is accepted, capped by
    /// [`UNPUBLISHED_MESSAGE_LEN_MAX`] and [`UNPUBLISHED_PARTIAL_BYTES_MAX`].
    pub chunk: ChunkLimits,
    /// AMF decoding bounds for commands and data messages.
    pub amf: AmfLimits,
    /// Our outgoing chunk size, announced at connect.
    pub chunk_size_out: u32,
    /// Window acknowledgement size we announce and acknowledge by.
    pub window_ack_size: u32,
}

/// `limits` as they are until a publish is accepted.
fn unpublished(limits: ChunkLimits) -> ChunkLimits {
    limits.capped(UNPUBLISHED_MESSAGE_LEN_MAX, UNPUBLISHED_PARTIAL_BYTES_MAX)
}

/// What a client asked to publish or play.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    /// The message stream id the command came on; media goes out on it.
    pub stream_id: u32,
    /// Application name from `connect` (query string removed).
    pub app: String,
    /// Stream name (query string removed).
    pub name: String,
    /// The host part of the `tcUrl`, if any.
    pub tc_url_host: Option<String>,
    /// The whole `tcUrl` of `connect`, if any (hooks are told it).
    pub tc_url: Option<String>,
    /// Query parameters of the app and the stream name, app's first.
    pub query: Vec<(String, String)>,
}

impl StreamRequest {
    /// The last value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        crate::query::param(&self.query, key)
    }

    /// True when the parameter is present and `1`/`true`/`yes`/empty.
    pub fn flag(&self, key: &str) -> bool {
        crate::query::flag(&self.query, key)
    }
}

/// What the session tells its driver.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    /// `connect` succeeded.
    Connected {
        /// Application.
        app: String,
        /// The client's tcUrl.
        tc_url: Option<String>,
    },
    /// Answer with `accept_publish` or `reject_publish`.
    PublishRequested(StreamRequest),
    /// Answer with `accept_play` (or `reject_play`).
    PlayRequested(StreamRequest),
    /// An audio or video frame from the publisher.
    Media(Frame),
    /// `onMetaData` from the publisher, as the body players get.
    Metadata(Bytes),
    /// The publisher ended its publish (FCUnpublish, deleteStream, closeStream).
    Unpublished,
    /// The player stopped playing (deleteStream, closeStream).
    PlayStopped,
    /// `receiveAudio` / `receiveVideo` from a player: the kind it names
    /// (the other is `None`, unchanged).
    ReceiveMedia {
        /// Audio wanted, if this call is about audio.
        audio: Option<bool>,
        /// Video wanted, if this call is about video.
        video: Option<bool>,
    },
    /// A media message we could not parse; it was dropped.
    BadMedia(MediaError),
}

/// What the driver does next: `Output::Event` or `Output::Transmit`.
pub type Output = super::conn::Output<SessionEvent>;

/// Why the connection must close. Each names what was wrong;
/// [`SessionError::blame`] says whether the client caused it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    /// Below the commands: handshake, chunk stream, control messages, AMF
    /// decoding, aggregates, metadata size, or a message we could not send.
    Connection(ConnError),
    /// A command other than `connect` before `connect` succeeded.
    BeforeConnect {
        /// The command.
        command: String,
    },
    /// A `connect` on a connection that is already connected.
    SecondConnect,
    /// `publish` or `play` while the connection already publishes or plays
    /// (one active stream per connection).
    AlreadyActive {
        /// `publish` or `play`.
        command: &'static str,
    },
    /// More `createStream` calls than [`STREAMS_PER_CONNECTION_MAX`].
    TooManyStreams {
        /// [`STREAMS_PER_CONNECTION_MAX`].
        max: u32,
    },
    /// `publish` or `play` with no string argument.
    NoStreamName {
        /// `publish` or `play`.
        command: &'static str,
    },
    /// `publish` or `play` whose stream name is empty (once its query
    /// string is removed).
    EmptyStreamName {
        /// `publish` or `play`.
        command: &'static str,
    },
    /// A command this server does not know.
    UnknownCommand {
        /// Its name.
        name: String,
    },
    /// The stream name the client gave makes our echo of it too long for
    /// the 24-bit message length field (`onFCPublish` repeats the name of
    /// `FCPublish`), as a `message_len_max` near the field's maximum allows.
    EchoTooLong {
        /// The client's command.
        command: &'static str,
        /// The reply that did not fit.
        error: EncodeError,
    },
}

impl SessionError {
    /// Who caused it: everything but a message of our own that does not
    /// fit is the client's doing, and closes only its connection.
    pub fn blame(&self) -> Blame {
        match self {
            SessionError::Connection(e) => e.blame(),
            _ => Blame::Peer,
        }
    }
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Connection(e) => e.fmt(f),
            SessionError::BeforeConnect { command } => {
                write!(f, "'{}' before 'connect'", command.escape_debug())
            }
            SessionError::SecondConnect => f.write_str("second 'connect'"),
            SessionError::AlreadyActive { command } => {
                write!(f, "'{command}' while already publishing or playing")
            }
            SessionError::TooManyStreams { max } => write!(
                f,
                "more than {max} createStream calls (STREAMS_PER_CONNECTION_MAX)"
            ),
            SessionError::NoStreamName { command } => {
                write!(f, "'{command}' without a stream name")
            }
            SessionError::EmptyStreamName { command } => {
                write!(f, "'{command}' with an empty stream name")
            }
            SessionError::UnknownCommand { name } => {
                write!(f, "unknown command '{}'", name.escape_debug())
            }
            SessionError::EchoTooLong { command, error } => {
                write!(
                    f,
                    "the stream name of '{command}' is too long to echo: {error}"
                )
            }
        }
    }
}

impl std::error::Error for SessionError {}

impl From<ConnError> for SessionError {
    fn from(e: ConnError) -> Self {
        SessionError::Connection(e)
    }
}

impl From<AmfError> for SessionError {
    fn from(e: AmfError) -> Self {
        SessionError::Connection(e.into())
    }
}

/// A reply the session sends in answer to a command: its failure is a
/// connection error (our own message did not fit).
fn sent(result: Result<(), EncodeError>) -> Result<(), SessionError> {
    result.map_err(|e| SessionError::Connection(ConnError::Encode(e)))
}

/// What the connection does with its one active stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    /// Neither publishing nor playing yet.
    Undecided,
    /// Waiting for the driver to answer a publish on this stream id.
    PublishPending(u32),
    /// Publishing on this stream id.
    Publishing(u32),
    /// Waiting for the driver to answer a play on this stream id.
    PlayPending(u32),
    /// Playing on this stream id.
    Playing(u32),
}

/// Where the command flow is (the handshake is the core's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    ExpectHandshake,
    ExpectConnect,
    Connected,
}

/// The server side of one RTMP connection: the command flow over a
/// [`Connection`] in [`Role::Server`].
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    conn: Connection,
    phase: Phase,
    stream: StreamState,
    events: VecDeque<SessionEvent>,
    app: String,
    app_query: Vec<(String, String)>,
    tc_url: Option<String>,
    streams_created: u32,
}

impl ServerSession {
    /// A session waiting for the client's C0C1. `random` and `epoch_ms`
    /// seed the handshake's S1.
    pub fn new(config: SessionConfig, random: u64, epoch_ms: u32) -> Self {
        let conn_config = ConnConfig {
            chunk: unpublished(config.chunk),
            amf: config.amf,
            ack_window: config.window_ack_size,
        };
        Self {
            config,
            conn: Connection::new(Role::Server, conn_config, random, epoch_ms),
            phase: Phase::ExpectHandshake,
            stream: StreamState::Undecided,
            events: VecDeque::new(),
            app: String::new(),
            app_query: Vec::new(),
            tc_url: None,
            streams_created: 0,
        }
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.conn.handle_input(bytes);
        while let Some(incoming) = self.conn.poll_message()? {
            match incoming {
                Incoming::HandshakeDone => self.phase = Phase::ExpectConnect,
                Incoming::Command { stream_id, command } => {
                    self.handle_command(command, stream_id)?
                }
                // Media that arrives while the publish is being decided is
                // kept: the driver drops it if the publish is refused.
                Incoming::Media(frame) => self.events.push_back(SessionEvent::Media(frame)),
                Incoming::BadMedia(e) => self.events.push_back(SessionEvent::BadMedia(e)),
                Incoming::Metadata(body) => self.events.push_back(SessionEvent::Metadata(body)),
                // StreamBegin and the like mean nothing from a client.
                Incoming::UserControl(_) => {}
            }
        }
        Ok(())
    }

    /// The next event or bytes to send. Events come first; the bytes the
    /// answers to those events produce are batched into one transmit.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.conn.poll_output(&mut self.events)
    }

    /// Gives back the capacity of empty input and output buffers. A player's
    /// session lives as long as the play but sees little traffic after the
    /// start, so its driver calls this once playing: the handshake and the
    /// start had grown both buffers to kilobytes.
    pub fn release_buffers(&mut self) {
        self.conn.release_buffers();
    }

    /// Takes the bytes waiting to be sent, leaving undelivered events in
    /// place (they travel with the session when it moves between shards).
    pub fn take_transmit(&mut self) -> Option<Bytes> {
        self.conn.take_transmit()
    }

    /// Tells a player the stream ended: `NetStream.Play.Stop` and StreamEOF.
    pub fn end_play(&mut self, description: &str) {
        if let StreamState::Playing(id) = self.stream {
            let r = self
                .conn
                .send_status(id, "status", "NetStream.Play.Stop", description)
                .and_then(|()| {
                    self.conn
                        .send_control(&ControlMessage::UserControl(UserControl::StreamEof(id)))
                });
            self.conn.defer(r);
        }
    }

    /// The handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.conn.handshake_done()
    }

    /// Our outgoing chunk size (announced at connect).
    pub fn chunk_size_out(&self) -> u32 {
        self.config.chunk_size_out
    }

    /// Starts the publish raised by `PublishRequested`.
    pub fn accept_publish(&mut self) {
        if let StreamState::PublishPending(id) = self.stream {
            self.set_stream(StreamState::Publishing(id));
            let r =
                self.conn
                    .send_status(id, "status", "NetStream.Publish.Start", "Start publishing.");
            self.conn.defer(r);
        }
    }

    /// Refuses the publish raised by `PublishRequested`, with an onStatus
    /// error such as `NetStream.Publish.BadName`.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        if let StreamState::PublishPending(id) = self.stream {
            self.set_stream(StreamState::Undecided);
            let r = self.conn.send_status(id, "error", code, description);
            self.conn.defer(r);
        }
    }

    /// Starts the play raised by `PlayRequested`: StreamBegin, Play.Reset,
    /// Play.Start and `|RtmpSampleAccess`. Media follows on the same stream id.
    pub fn accept_play(&mut self) {
        if let StreamState::PlayPending(id) = self.stream {
            self.set_stream(StreamState::Playing(id));
            let r = self.play_start(id);
            self.conn.defer(r);
        }
    }

    fn play_start(&mut self, id: u32) -> Result<(), EncodeError> {
        self.conn
            .send_control(&ControlMessage::UserControl(UserControl::StreamBegin(id)))?;
        self.conn.send_status(
            id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting.",
        )?;
        self.conn
            .send_status(id, "status", "NetStream.Play.Start", "Started playing.")?;
        let mut access = Vec::with_capacity(32);
        encode_amf0(&Amf0Value::String("|RtmpSampleAccess".into()), &mut access);
        encode_amf0(&Amf0Value::Boolean(true), &mut access);
        encode_amf0(&Amf0Value::Boolean(true), &mut access);
        self.conn.send_data(CSID_COMMAND, id, &access)
    }

    /// Refuses the play raised by `PlayRequested`.
    pub fn reject_play(&mut self, code: &str, description: &str) {
        if let StreamState::PlayPending(id) = self.stream {
            self.set_stream(StreamState::Undecided);
            let r = self.conn.send_status(id, "error", code, description);
            self.conn.defer(r);
        }
    }

    /// Sends an onStatus on the active stream (e.g. end of stream at shutdown).
    pub fn send_status(&mut self, level: &str, code: &str, description: &str) {
        match self.stream {
            StreamState::Publishing(id) | StreamState::Playing(id) => {
                let r = self.conn.send_status(id, level, code, description);
                self.conn.defer(r);
            }
            _ => {}
        }
    }

    /// The message stream id being played, once playing.
    pub fn play_stream_id(&self) -> Option<u32> {
        match self.stream {
            StreamState::Playing(id) | StreamState::PlayPending(id) => Some(id),
            _ => None,
        }
    }

    /// Moves the active stream on; media and data reach us only while a
    /// publish is pending or running.
    fn set_stream(&mut self, stream: StreamState) {
        self.stream = stream;
        self.conn.set_media_in(matches!(
            stream,
            StreamState::Publishing(_) | StreamState::PublishPending(_)
        ));
        self.conn.set_chunk_limits(match stream {
            StreamState::Publishing(_) => self.config.chunk,
            _ => unpublished(self.config.chunk),
        });
    }

    /// `_result(txn, null, undefined)`, unless the client wants no reply.
    fn ack_command(&mut self, txn: f64) -> Result<(), SessionError> {
        if txn == 0.0 {
            return Ok(());
        }
        sent(self.conn.send_command(
            0,
            "_result",
            txn,
            Amf0Value::Null,
            vec![Amf0Value::Undefined],
        ))
    }

    fn require_connected(&self, command: &str) -> Result<(), SessionError> {
        match self.phase {
            Phase::Connected => Ok(()),
            _ => Err(SessionError::BeforeConnect {
                command: command.to_string(),
            }),
        }
    }

    fn handle_command(&mut self, cmd: Command, msg_stream_id: u32) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd)?,
            "createStream" => {
                self.require_connected("createStream")?;
                if self.streams_created >= STREAMS_PER_CONNECTION_MAX {
                    return Err(SessionError::TooManyStreams {
                        max: STREAMS_PER_CONNECTION_MAX,
                    });
                }
                self.streams_created += 1;
                let id = self.streams_created;
                sent(self.conn.send_command(
                    0,
                    "_result",
                    txn,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(id))],
                ))?;
            }
            "releaseStream" | "FCSubscribe" | "FCUnsubscribe" | "_checkbw" => {
                self.require_connected(&cmd.name)?;
                self.ack_command(txn)?;
            }
            "FCPublish" => {
                self.require_connected("FCPublish")?;
                self.ack_command(txn)?;
                let name = first_string(&cmd.args).unwrap_or_default();
                self.conn
                    .send_command(
                        0,
                        "onFCPublish",
                        0.0,
                        Amf0Value::Null,
                        vec![wire::status_object(
                            "status",
                            "NetStream.Publish.Start",
                            &name,
                        )],
                    )
                    .map_err(|error| SessionError::EchoTooLong {
                        command: "FCPublish",
                        error,
                    })?;
            }
            "FCUnpublish" => {
                self.require_connected("FCUnpublish")?;
                self.ack_command(txn)?;
                if let StreamState::Publishing(_) = self.stream {
                    self.set_stream(StreamState::Undecided);
                    self.events.push_back(SessionEvent::Unpublished);
                }
            }
            "publish" => {
                self.require_connected("publish")?;
                self.expect_undecided("publish")?;
                let req = self.stream_request(&cmd, "publish", msg_stream_id)?;
                self.set_stream(StreamState::PublishPending(req.stream_id));
                self.events.push_back(SessionEvent::PublishRequested(req));
            }
            "play" => {
                self.require_connected("play")?;
                self.expect_undecided("play")?;
                let req = self.stream_request(&cmd, "play", msg_stream_id)?;
                self.set_stream(StreamState::PlayPending(req.stream_id));
                self.events.push_back(SessionEvent::PlayRequested(req));
            }
            "deleteStream" | "closeStream" => {
                self.require_connected(&cmd.name)?;
                match self.stream {
                    StreamState::Publishing(_) | StreamState::PublishPending(_) => {
                        self.set_stream(StreamState::Undecided);
                        self.events.push_back(SessionEvent::Unpublished);
                    }
                    StreamState::Playing(_) | StreamState::PlayPending(_) => {
                        self.set_stream(StreamState::Undecided);
                        self.events.push_back(SessionEvent::PlayStopped);
                    }
                    StreamState::Undecided => {}
                }
            }
            "getStreamLength" => {
                self.require_connected("getStreamLength")?;
                sent(self.conn.send_command(
                    0,
                    "_result",
                    txn,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(0.0)],
                ))?;
            }
            "receiveAudio" | "receiveVideo" => {
                self.require_connected(&cmd.name)?;
                let on = cmd
                    .args
                    .first()
                    .and_then(Amf0Value::as_bool)
                    .unwrap_or(true);
                let (audio, video) = if cmd.name == "receiveAudio" {
                    (Some(on), None)
                } else {
                    (None, Some(on))
                };
                self.events
                    .push_back(SessionEvent::ReceiveMedia { audio, video });
            }
            // Replies to calls we never make, and client-side notifications
            // some clients send: harmless, nothing to do.
            "_result" | "_error" | "onBWDone" | "onStatus" | "pause" | "seek" | "call" => {}
            _ => return Err(SessionError::UnknownCommand { name: cmd.name }),
        }
        Ok(())
    }

    fn expect_undecided(&self, command: &'static str) -> Result<(), SessionError> {
        if self.stream == StreamState::Undecided {
            Ok(())
        } else {
            Err(SessionError::AlreadyActive { command })
        }
    }

    fn on_connect(&mut self, cmd: &Command) -> Result<(), SessionError> {
        if self.phase != Phase::ExpectConnect {
            return Err(SessionError::SecondConnect);
        }
        // Flash clients using AMF3 send the command object as an AMF3 value.
        let obj = &cmd.object.clone().into_amf0();
        let app_raw = obj.get("app").and_then(Amf0Value::as_str).unwrap_or("");
        let (app, query) = split_query(app_raw.trim_matches('/'));
        self.app = app.to_string();
        self.app_query = query;
        self.tc_url = obj
            .get("tcUrl")
            .and_then(Amf0Value::as_str)
            .map(str::to_string);
        let encoding = obj
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.phase = Phase::Connected;

        let window = self.config.window_ack_size;
        for ctl in [
            ControlMessage::WindowAckSize(window),
            ControlMessage::SetPeerBandwidth {
                size: window,
                limit_type: 2,
            },
            ControlMessage::SetChunkSize(self.config.chunk_size_out),
        ] {
            sent(self.conn.send_control(&ctl))?;
        }
        let props = Amf0Value::Object(vec![
            ("fmsVer".into(), Amf0Value::String("FMS/3,5,7,7009".into())),
            ("capabilities".into(), Amf0Value::Number(31.0)),
            ("mode".into(), Amf0Value::Number(1.0)),
        ]);
        let mut info = match wire::status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        ) {
            Amf0Value::Object(props) => props,
            _ => Vec::new(),
        };
        info.push(("objectEncoding".into(), Amf0Value::Number(encoding)));
        sent(self.conn.send_command(
            0,
            "_result",
            cmd.transaction_id,
            props,
            vec![Amf0Value::Object(info)],
        ))?;
        self.events.push_back(SessionEvent::Connected {
            app: self.app.clone(),
            tc_url: self.tc_url.clone(),
        });
        Ok(())
    }

    fn stream_request(
        &self,
        cmd: &Command,
        command: &'static str,
        msg_stream_id: u32,
    ) -> Result<StreamRequest, SessionError> {
        let raw = first_string(&cmd.args).ok_or(SessionError::NoStreamName { command })?;
        let (name, name_query) = split_query(&raw);
        if name.is_empty() {
            return Err(SessionError::EmptyStreamName { command });
        }
        let mut query = self.app_query.clone();
        query.extend(name_query);
        Ok(StreamRequest {
            // A publish/play on stream 0 (some clients skip createStream)
            // is answered on stream 1, where clients then look for it.
            stream_id: msg_stream_id.max(1),
            app: self.app.clone(),
            name: name.to_string(),
            tc_url_host: self.tc_url.as_deref().and_then(url_host),
            tc_url: self.tc_url.clone(),
            query,
        })
    }
}

fn first_string(args: &[Amf0Value]) -> Option<String> {
    args.iter().find_map(|v| v.as_str().map(str::to_string))
}

/// Splits `name?a=1&b` into `name` and its parameters.
pub fn split_query(s: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, q)) = s.split_once('?') else {
        return (s, Vec::new());
    };
    let params = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    (name, params)
}

/// The host of `rtmp://host:port/app`, lowercased, without the port.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf::{encode_command, parse_command};
    use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder};
    use crate::rtmp::handshake::ClientHandshake;
    use crate::rtmp::message::{msg_type, parse_control, write_control};
    use crate::rtmp::test_util::{hex, server_config as config};
    use bytes::BytesMut;

    /// A scripted client: handshake, then chunked commands.
    struct Client {
        enc: ChunkEncoder,
        dec: ChunkDecoder,
        inbuf: BytesMut,
    }

    impl Client {
        fn connect(session: &mut ServerSession) -> (Client, Vec<SessionEvent>) {
            let mut hs = ClientHandshake::new(7, 0);
            let c0c1 = hs.poll_transmit().expect("C0C1");
            session.handle_input(&c0c1).unwrap();
            let (s012, _) = drain(session);
            let used = hs.handle_input(&s012).unwrap();
            assert_eq!(used, s012.len());
            let c2 = hs.poll_transmit().expect("C2");
            assert!(hs.is_done());
            session.handle_input(&c2).unwrap();
            assert!(session.handshake_done());
            let mut c = Client {
                enc: ChunkEncoder::new(),
                dec: ChunkDecoder::new(ChunkLimits::default()),
                inbuf: BytesMut::new(),
            };
            let obj = Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String("live".into())),
                (
                    "tcUrl".into(),
                    Amf0Value::String("rtmp://Example.com:1935/live".into()),
                ),
            ]);
            let ev = c.command(session, "connect", 1.0, obj, vec![], 0);
            (c, ev)
        }

        fn command(
            &mut self,
            session: &mut ServerSession,
            name: &str,
            txn: f64,
            object: Amf0Value,
            args: Vec<Amf0Value>,
            stream_id: u32,
        ) -> Vec<SessionEvent> {
            let body = command_body(name, txn, object, args);
            self.send_body(session, &body, stream_id).unwrap()
        }

        /// Sends a command body; the session's verdict, and what it
        /// answered.
        fn send_body(
            &mut self,
            session: &mut ServerSession,
            body: &[u8],
            stream_id: u32,
        ) -> Result<Vec<SessionEvent>, SessionError> {
            let mut out = BytesMut::new();
            self.enc
                .write(3, 0, msg_type::COMMAND_AMF0, stream_id, body, &mut out)
                .unwrap();
            session.handle_input(&out)?;
            let (bytes, events) = drain(session);
            self.inbuf.extend_from_slice(&bytes);
            Ok(events)
        }

        /// Commands received so far (name, first arg's code if any).
        fn received(&mut self) -> Vec<(String, Option<String>, u32)> {
            let mut got = Vec::new();
            while let Some(m) = self.dec.decode(&mut self.inbuf).unwrap() {
                if m.type_id == msg_type::COMMAND_AMF0 {
                    let c = parse_command(&m.payload, false, &AmfLimits::default()).unwrap();
                    let code = c
                        .args
                        .first()
                        .and_then(|a| a.get("code"))
                        .and_then(Amf0Value::as_str)
                        .map(str::to_string);
                    got.push((c.name, code, m.stream_id));
                }
            }
            got
        }
    }

    fn command_body(name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
        let mut body = Vec::new();
        let command = Command {
            name: name.into(),
            transaction_id: txn,
            object,
            args,
        };
        encode_command(&command, &mut body);
        body
    }

    fn drain(session: &mut ServerSession) -> (Vec<u8>, Vec<SessionEvent>) {
        let mut bytes = Vec::new();
        let mut events = Vec::new();
        while let Some(o) = session.poll_output() {
            match o {
                Output::Event(e) => events.push(e),
                Output::Transmit(b) => bytes.extend_from_slice(&b),
            }
        }
        (bytes, events)
    }

    #[test]
    fn connect_create_publish_accept() {
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, ev) = Client::connect(&mut s);
        assert!(matches!(ev.as_slice(), [SessionEvent::Connected { app, .. }] if app == "live"));
        let got = c.received();
        assert_eq!(got[0].0, "_result");
        assert_eq!(got[0].1.as_deref(), Some("NetConnection.Connect.Success"));

        c.command(
            &mut s,
            "releaseStream",
            2.0,
            Amf0Value::Null,
            vec![Amf0Value::String("cam".into())],
            0,
        );
        c.command(
            &mut s,
            "FCPublish",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::String("cam".into())],
            0,
        );
        c.command(&mut s, "createStream", 4.0, Amf0Value::Null, vec![], 0);
        let ev = c.command(
            &mut s,
            "publish",
            5.0,
            Amf0Value::Null,
            vec![
                Amf0Value::String("cam?vhost=v1".into()),
                Amf0Value::String("live".into()),
            ],
            1,
        );
        let [SessionEvent::PublishRequested(req)] = ev.as_slice() else {
            panic!("expected a publish request, got {ev:?}");
        };
        assert_eq!(req.name, "cam");
        assert_eq!(req.app, "live");
        assert_eq!(req.stream_id, 1);
        assert_eq!(req.param("vhost"), Some("v1"));
        assert_eq!(req.tc_url_host.as_deref(), Some("example.com"));
        s.accept_publish();
        let (bytes, _) = drain(&mut s);
        c.inbuf.extend_from_slice(&bytes);
        let got = c.received();
        let last = got.last().unwrap();
        assert_eq!(last.0, "onStatus");
        assert_eq!(last.1.as_deref(), Some("NetStream.Publish.Start"));
        assert_eq!(last.2, 1, "onStatus on the publish stream id");
    }

    #[test]
    fn play_accept_sends_reset_and_start_on_the_play_stream() {
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        c.command(&mut s, "createStream", 2.0, Amf0Value::Null, vec![], 0);
        c.command(&mut s, "createStream", 3.0, Amf0Value::Null, vec![], 0);
        let ev = c.command(
            &mut s,
            "play",
            4.0,
            Amf0Value::Null,
            vec![
                Amf0Value::String("cam?only-audio=1".into()),
                Amf0Value::Number(-2.0),
            ],
            2,
        );
        let [SessionEvent::PlayRequested(req)] = ev.as_slice() else {
            panic!("expected a play request, got {ev:?}");
        };
        assert!(req.flag("only-audio"));
        assert!(!req.flag("only-video"));
        s.accept_play();
        let (bytes, _) = drain(&mut s);
        c.inbuf.extend_from_slice(&bytes);
        let got = c.received();
        let codes: Vec<_> = got.iter().filter_map(|g| g.1.clone()).collect();
        assert!(codes.ends_with(&["NetStream.Play.Reset".into(), "NetStream.Play.Start".into()]));
        assert_eq!(got.last().unwrap().2, 2);
        assert_eq!(s.play_stream_id(), Some(2));
    }

    #[test]
    fn play_before_connect_is_an_error() {
        let mut s = ServerSession::new(config(), 1, 0);
        let mut hs = ClientHandshake::new(3, 0);
        s.handle_input(&hs.poll_transmit().unwrap()).unwrap();
        let (s012, _) = drain(&mut s);
        hs.handle_input(&s012).unwrap();
        s.handle_input(&hs.poll_transmit().unwrap()).unwrap();
        let mut body = Vec::new();
        encode_command(
            &Command {
                name: "play".into(),
                transaction_id: 1.0,
                object: Amf0Value::Null,
                args: vec![Amf0Value::String("x".into())],
            },
            &mut body,
        );
        let mut out = BytesMut::new();
        ChunkEncoder::new()
            .write(3, 0, msg_type::COMMAND_AMF0, 1, &body, &mut out)
            .unwrap();
        let err = s.handle_input(&out).unwrap_err();
        assert!(err.to_string().contains("'play' before 'connect'"), "{err}");
    }

    #[test]
    fn unknown_command_is_an_error_naming_it() {
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        let mut body = Vec::new();
        encode_command(
            &Command {
                name: "launchMissiles".into(),
                transaction_id: 2.0,
                object: Amf0Value::Null,
                args: vec![],
            },
            &mut body,
        );
        let mut out = BytesMut::new();
        c.enc
            .write(3, 0, msg_type::COMMAND_AMF0, 0, &body, &mut out)
            .unwrap();
        let err = s.handle_input(&out).unwrap_err();
        assert!(err.to_string().contains("launchMissiles"), "{err}");
    }

    #[test]
    fn garbage_instead_of_a_handshake_is_an_error() {
        let mut s = ServerSession::new(config(), 1, 0);
        let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 1) as u8).collect();
        assert!(s.handle_input(&garbage).is_err());
    }

    #[test]
    fn ping_request_gets_a_response() {
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        c.received();
        let mut out = BytesMut::new();
        write_control(
            &mut c.enc,
            &ControlMessage::UserControl(UserControl::PingRequest(42)),
            &mut out,
        )
        .unwrap();
        s.handle_input(&out).unwrap();
        let (bytes, _) = drain(&mut s);
        c.inbuf.extend_from_slice(&bytes);
        let m = c.dec.decode(&mut c.inbuf).unwrap().expect("a reply");
        assert_eq!(m.type_id, msg_type::USER_CONTROL);
        assert_eq!(
            parse_control(m.type_id, &m.payload).unwrap(),
            ControlMessage::UserControl(UserControl::PingResponse(42))
        );
    }

    /// Connects, creates a stream and publishes `cam` on it; accepted.
    fn publishing(config: SessionConfig) -> (ServerSession, Client) {
        let mut s = ServerSession::new(config, 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        c.command(&mut s, "createStream", 2.0, Amf0Value::Null, vec![], 0);
        let ev = c.command(
            &mut s,
            "publish",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::String("cam".into())],
            1,
        );
        assert!(matches!(ev.as_slice(), [SessionEvent::PublishRequested(_)]));
        s.accept_publish();
        drain(&mut s);
        (s, c)
    }

    /// With `message_len_max` at the 24-bit maximum, an FCPublish (sent
    /// again while publishing, when the full limits apply) may carry a name
    /// so long that the onFCPublish echoing it cannot be sent: that is an
    /// error naming the command and the bound, not a panic.
    #[test]
    fn fcpublish_whose_echo_does_not_fit_is_an_error() {
        let config = SessionConfig {
            chunk: ChunkLimits {
                message_len_max: crate::rtmp::chunk::MESSAGE_LEN_FIELD_MAX,
                partial_bytes_max: 2 * u64::from(crate::rtmp::chunk::MESSAGE_LEN_FIELD_MAX),
                ..ChunkLimits::default()
            },
            ..config()
        };
        let (mut s, mut c) = publishing(config);
        // "FCPublish", 0.0, null, then an AMF0 long string (0x0C) filling
        // the message up to 16777215 bytes.
        let mut body = hex("02 0009 4643507562 6c697368 00 0000000000000000 05");
        let name_len = 0xFF_FFFF - body.len() - 5;
        body.push(0x0C);
        body.extend_from_slice(&(name_len as u32).to_be_bytes());
        body.resize(0xFF_FFFF, b'n');
        let mut out = BytesMut::new();
        c.enc
            .write(3, 0, msg_type::COMMAND_AMF0, 0, &body, &mut out)
            .unwrap();
        let err = s.handle_input(&out).unwrap_err();
        assert!(
            matches!(
                &err,
                SessionError::EchoTooLong {
                    command: "FCPublish",
                    error: EncodeError::MessageTooLong { max: 0xFF_FFFF, .. }
                }
            ),
            "{err}"
        );
        assert_eq!(err.blame(), Blame::Peer);
        let text = err.to_string();
        assert!(
            text.contains("FCPublish") && text.contains("MESSAGE_LEN_FIELD_MAX"),
            "{text}"
        );
    }

    /// Until its publish is accepted a client's messages are capped at
    /// UNPUBLISHED_MESSAGE_LEN_MAX, checked at the header before anything is
    /// buffered (a client that never publishes holds little); once
    /// publishing, the configured message_len_max applies.
    #[test]
    fn messages_are_small_until_a_publish_is_accepted() {
        let video = |len: u32, c: &mut Client| {
            let mut out = BytesMut::new();
            // An AVC NALU frame: keyframe, packet type 1, composition 0.
            let mut body = vec![0x17u8, 0x01, 0, 0, 0];
            body.resize(len as usize, 0x65);
            c.enc
                .write(6, 0, msg_type::VIDEO, 1, &body, &mut out)
                .unwrap();
            out
        };
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        let err = s
            .handle_input(&video(UNPUBLISHED_MESSAGE_LEN_MAX + 1, &mut c))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&UNPUBLISHED_MESSAGE_LEN_MAX.to_string()),
            "{err}"
        );
        // Messages up to the cap pass (unpublished media is dropped).
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        s.handle_input(&video(UNPUBLISHED_MESSAGE_LEN_MAX, &mut c))
            .unwrap();
        // A pending publish is not yet accepted.
        c.command(&mut s, "createStream", 2.0, Amf0Value::Null, vec![], 0);
        c.command(
            &mut s,
            "publish",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::String("cam".into())],
            1,
        );
        assert!(s
            .handle_input(&video(UNPUBLISHED_MESSAGE_LEN_MAX + 1, &mut c))
            .is_err());

        let (mut s, mut c) = publishing(config());
        let big = config().chunk.message_len_max;
        s.handle_input(&video(big, &mut c)).unwrap();
        let (_, ev) = drain(&mut s);
        assert!(
            ev.iter().any(|e| matches!(e, SessionEvent::Media(_))),
            "a {big}-byte frame while publishing: {ev:?}"
        );
    }

    #[test]
    fn command_flow_errors_are_typed() {
        let mut s = ServerSession::new(config(), 1, 0);
        let (mut c, _) = Client::connect(&mut s);
        let mut send = |s: &mut ServerSession, name: &str, args: Vec<Amf0Value>, id: u32| {
            let body = command_body(name, 0.0, Amf0Value::Null, args);
            c.send_body(s, &body, id).map(drop)
        };
        assert_eq!(
            send(&mut s, "connect", vec![], 0),
            Err(SessionError::SecondConnect)
        );
        assert_eq!(
            send(&mut s, "publish", vec![], 1),
            Err(SessionError::NoStreamName { command: "publish" })
        );
        assert_eq!(
            send(&mut s, "play", vec![Amf0Value::String("?a=1".into())], 1),
            Err(SessionError::EmptyStreamName { command: "play" })
        );
        let cam = || vec![Amf0Value::String("cam".into())];
        assert_eq!(send(&mut s, "play", cam(), 1), Ok(()));
        let err = send(&mut s, "publish", cam(), 1).unwrap_err();
        assert_eq!(err, SessionError::AlreadyActive { command: "publish" });
        assert_eq!(
            err.to_string(),
            "'publish' while already publishing or playing"
        );
        for _ in 0..STREAMS_PER_CONNECTION_MAX {
            send(&mut s, "createStream", vec![], 0).unwrap();
        }
        let err = send(&mut s, "createStream", vec![], 0).unwrap_err();
        assert_eq!(err, SessionError::TooManyStreams { max: 16 });
        assert!(
            err.to_string().contains("STREAMS_PER_CONNECTION_MAX"),
            "{err}"
        );
    }

    #[test]
    fn url_host_and_query() {
        assert_eq!(
            url_host("rtmp://Host.Example:1935/live").as_deref(),
            Some("host.example")
        );
        assert_eq!(url_host("rtmp://[::1]:8079/live").as_deref(), Some("::1"));
        assert_eq!(url_host("live"), None);
        let (n, q) = split_query("s?a=1&b");
        assert_eq!(n, "s");
        assert_eq!(
            q,
            vec![("a".into(), "1".into()), ("b".into(), String::new())]
        );
    }
}
