//! The server side of an RTMP connection, as plain data.
//!
//! Bytes go in ([`ServerSession::handle_input`]); events and bytes come out
//! ([`ServerSession::poll_output`]). Decisions (may this publish? which
//! stream does this play?) are raised as events and answered later with
//! [`ServerSession::accept_publish`], [`ServerSession::reject_publish`] and
//! [`ServerSession::accept_play`], by whichever shard owns the stream. No
//! socket, clock or lock inside, so the session can move between shards.
//!
//! ```text
//!  ExpectHandshake ──C0C1/C2──▶ ExpectConnect ──connect──▶ Connected
//!                                                   │
//!                      createStream, publish/play ──┘ (one active stream)
//! ```
//!
//! Defined by: Adobe RTMP Specification 1.0 (sections 5 and 7).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::amf::{
    encode_command, parse_command, parse_data, Amf0Value, AmfError, AmfLimits, Command,
    CommandError,
};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, Message};
use super::handshake::{HandshakeError, ServerHandshake};
use super::message::{
    msg_type, parse_control, split_aggregate, write_control, ControlError, ControlMessage,
    UserControl,
};
use super::wire::{self, CSID_COMMAND};
use crate::media::{Frame, MediaError};

/// Message streams one connection may create (`createStream` calls).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 16;

/// Bounds and settings of one session.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Chunk stream bounds (incoming chunk size, message length, stream ids).
    pub chunk: ChunkLimits,
    /// AMF decoding bounds for commands and data messages.
    pub amf: AmfLimits,
    /// Our outgoing chunk size, announced at connect.
    pub chunk_size_out: u32,
    /// Window acknowledgement size we announce and acknowledge by.
    pub window_ack_size: u32,
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

/// What the driver does next.
#[derive(Debug)]
pub enum Output {
    /// An event to act on.
    Event(SessionEvent),
    /// Bytes to send, in order.
    Transmit(Bytes),
}

/// Why the connection must close. Each names what the peer did wrong.
#[derive(Debug)]
pub enum SessionError {
    /// The handshake was malformed.
    Handshake(HandshakeError),
    /// The chunk stream broke a rule or a bound.
    Chunk(ChunkError),
    /// A protocol control message was malformed.
    Control(ControlError),
    /// A command or data message could not be decoded.
    Command {
        /// Message type id.
        type_id: u8,
        /// The decoder's error.
        error: CommandError,
    },
    /// A command out of order or unknown.
    Protocol(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Handshake(e) => write!(f, "handshake: {e}"),
            SessionError::Chunk(e) => write!(f, "chunk stream: {e}"),
            SessionError::Control(e) => write!(f, "control message: {e}"),
            SessionError::Command { type_id, error } => {
                write!(f, "command message (type {type_id}): {error}")
            }
            SessionError::Protocol(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<AmfError> for SessionError {
    fn from(e: AmfError) -> Self {
        SessionError::Command {
            type_id: msg_type::COMMAND_AMF0,
            error: CommandError::Amf(e),
        }
    }
}

/// What the connection is for, once it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
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

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    ExpectHandshake(Box<ServerHandshake>),
    ExpectConnect,
    Connected,
}

/// The server side of one RTMP connection.
pub struct ServerSession {
    config: SessionConfig,
    phase: Phase,
    role: Role,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Input not yet consumed.
    input: BytesMut,
    /// Output not yet taken by the driver.
    output: BytesMut,
    events: VecDeque<SessionEvent>,
    app: String,
    app_query: Vec<(String, String)>,
    tc_url: Option<String>,
    streams_created: u32,
    bytes_in: u64,
    bytes_acked: u64,
}

impl ServerSession {
    /// A session waiting for the client's C0C1. `random` and `epoch_ms`
    /// seed the handshake's S1.
    pub fn new(config: SessionConfig, random: u64, epoch_ms: u32) -> Self {
        Self {
            config,
            phase: Phase::ExpectHandshake(Box::new(ServerHandshake::new(random, epoch_ms))),
            role: Role::Undecided,
            decoder: ChunkDecoder::new(config.chunk),
            encoder: ChunkEncoder::new(),
            input: BytesMut::with_capacity(4096),
            output: BytesMut::with_capacity(4096),
            events: VecDeque::new(),
            app: String::new(),
            app_query: Vec::new(),
            tc_url: None,
            streams_created: 0,
            bytes_in: 0,
            bytes_acked: 0,
        }
    }

    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.bytes_in += bytes.len() as u64;
        self.input.extend_from_slice(bytes);
        if let Phase::ExpectHandshake(hs) = &mut self.phase {
            let used = hs
                .handle_input(&self.input)
                .map_err(SessionError::Handshake)?;
            let _ = self.input.split_to(used.min(self.input.len()));
            if let Some(reply) = hs.poll_transmit() {
                self.output.extend_from_slice(&reply);
            }
            if !hs.is_done() {
                return Ok(());
            }
            self.phase = Phase::ExpectConnect;
        }
        while let Some(msg) = self
            .decoder
            .decode(&mut self.input)
            .map_err(SessionError::Chunk)?
        {
            self.handle_message(msg)?;
        }
        if self.bytes_in - self.bytes_acked >= u64::from(self.config.window_ack_size) {
            self.bytes_acked = self.bytes_in;
            // The sequence number is the byte count modulo 2^32 (spec 5.4.3).
            let seq = self.bytes_in as u32;
            self.control(&ControlMessage::Acknowledgement(seq));
        }
        Ok(())
    }

    /// The next event or bytes to send. Events come first; the bytes the
    /// answers to those events produce are batched into one transmit.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(e) = self.events.pop_front() {
            return Some(Output::Event(e));
        }
        if !self.output.is_empty() {
            return Some(Output::Transmit(self.output.split().freeze()));
        }
        None
    }

    /// Gives back the capacity of empty input and output buffers. A player's
    /// session lives as long as the play but sees little traffic after the
    /// start, so its driver calls this once playing: the handshake and the
    /// start had grown both buffers to kilobytes.
    pub fn release_buffers(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        if self.output.is_empty() {
            self.output = BytesMut::new();
        }
    }

    /// Takes the bytes waiting to be sent, leaving undelivered events in
    /// place (they travel with the session when it moves between shards).
    pub fn take_transmit(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// Tells a player the stream ended: `NetStream.Play.Stop` and StreamEOF.
    pub fn end_play(&mut self, description: &str) {
        if let Role::Playing(id) = self.role {
            self.status(id, "status", "NetStream.Play.Stop", description);
            self.control(&ControlMessage::UserControl(UserControl::StreamEof(id)));
        }
    }

    /// The handshake is over.
    pub fn handshake_done(&self) -> bool {
        !matches!(self.phase, Phase::ExpectHandshake(_))
    }

    /// Our outgoing chunk size (announced at connect).
    pub fn chunk_size_out(&self) -> u32 {
        self.config.chunk_size_out
    }

    /// Starts the publish raised by `PublishRequested`.
    pub fn accept_publish(&mut self) {
        if let Role::PublishPending(id) = self.role {
            self.role = Role::Publishing(id);
            self.status(id, "status", "NetStream.Publish.Start", "Start publishing.");
        }
    }

    /// Refuses the publish raised by `PublishRequested`, with an onStatus
    /// error such as `NetStream.Publish.BadName`.
    pub fn reject_publish(&mut self, code: &str, description: &str) {
        if let Role::PublishPending(id) = self.role {
            self.role = Role::Undecided;
            self.status(id, "error", code, description);
        }
    }

    /// Starts the play raised by `PlayRequested`: StreamBegin, Play.Reset,
    /// Play.Start and `|RtmpSampleAccess`. Media follows on the same stream id.
    pub fn accept_play(&mut self) {
        if let Role::PlayPending(id) = self.role {
            self.role = Role::Playing(id);
            self.control(&ControlMessage::UserControl(UserControl::StreamBegin(id)));
            self.status(
                id,
                "status",
                "NetStream.Play.Reset",
                "Playing and resetting.",
            );
            self.status(id, "status", "NetStream.Play.Start", "Started playing.");
            let mut access = Vec::with_capacity(32);
            super::amf::encode_amf0(&Amf0Value::String("|RtmpSampleAccess".into()), &mut access);
            super::amf::encode_amf0(&Amf0Value::Boolean(true), &mut access);
            super::amf::encode_amf0(&Amf0Value::Boolean(true), &mut access);
            self.encoder.write(
                CSID_COMMAND,
                0,
                msg_type::DATA_AMF0,
                id,
                &access,
                &mut self.output,
            );
        }
    }

    /// Refuses the play raised by `PlayRequested`.
    pub fn reject_play(&mut self, code: &str, description: &str) {
        if let Role::PlayPending(id) = self.role {
            self.role = Role::Undecided;
            self.status(id, "error", code, description);
        }
    }

    /// Sends an onStatus on the active stream (e.g. end of stream at shutdown).
    pub fn send_status(&mut self, level: &str, code: &str, description: &str) {
        match self.role {
            Role::Publishing(id) | Role::Playing(id) => self.status(id, level, code, description),
            _ => {}
        }
    }

    /// The message stream id being played, once playing.
    pub fn play_stream_id(&self) -> Option<u32> {
        match self.role {
            Role::Playing(id) | Role::PlayPending(id) => Some(id),
            _ => None,
        }
    }

    fn status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let body = wire::status_body(level, code, description);
        self.encoder.write(
            CSID_COMMAND,
            0,
            msg_type::COMMAND_AMF0,
            stream_id,
            &body,
            &mut self.output,
        );
    }

    fn control(&mut self, msg: &ControlMessage) {
        write_control(&mut self.encoder, msg, &mut self.output);
    }

    fn command_reply(&mut self, name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) {
        let cmd = Command {
            name: name.into(),
            transaction_id: txn,
            object,
            args,
        };
        let mut body = Vec::with_capacity(256);
        encode_command(&cmd, &mut body);
        self.encoder.write(
            CSID_COMMAND,
            0,
            msg_type::COMMAND_AMF0,
            0,
            &body,
            &mut self.output,
        );
    }

    fn handle_message(&mut self, msg: Message) -> Result<(), SessionError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE
            | msg_type::ABORT
            | msg_type::ACK
            | msg_type::WINDOW_ACK_SIZE
            | msg_type::SET_PEER_BANDWIDTH => {
                // The decoder applied chunk size and abort already; the
                // others need no action from a server.
                parse_control(msg.type_id, &msg.payload).map_err(SessionError::Control)?;
            }
            msg_type::USER_CONTROL => {
                let ctl =
                    parse_control(msg.type_id, &msg.payload).map_err(SessionError::Control)?;
                if let ControlMessage::UserControl(UserControl::PingRequest(t)) = ctl {
                    self.control(&ControlMessage::UserControl(UserControl::PingResponse(t)));
                }
            }
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let amf3 = msg.type_id == msg_type::COMMAND_AMF3;
                let cmd = parse_command(&msg.payload, amf3, &self.config.amf).map_err(|error| {
                    SessionError::Command {
                        type_id: msg.type_id,
                        error,
                    }
                })?;
                self.handle_command(cmd, msg.stream_id)?;
            }
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                if !matches!(self.role, Role::Publishing(_) | Role::PublishPending(_)) {
                    return Ok(());
                }
                let amf3 = msg.type_id == msg_type::DATA_AMF3;
                let values = parse_data(&msg.payload, amf3, &self.config.amf).map_err(|error| {
                    SessionError::Command {
                        type_id: msg.type_id,
                        error,
                    }
                })?;
                if let Some(body) = wire::metadata_body(&values) {
                    self.events.push_back(SessionEvent::Metadata(body));
                }
            }
            msg_type::AUDIO | msg_type::VIDEO => self.handle_media(msg),
            msg_type::AGGREGATE => {
                if matches!(self.role, Role::Publishing(_) | Role::PublishPending(_)) {
                    let parts = split_aggregate(&msg)
                        .map_err(|e| SessionError::Protocol(format!("aggregate message: {e}")))?;
                    for part in parts {
                        if matches!(part.type_id, msg_type::AUDIO | msg_type::VIDEO) {
                            self.handle_media(part);
                        }
                    }
                }
            }
            // Shared objects and unknown types are not for a live server.
            _ => {}
        }
        Ok(())
    }

    fn handle_media(&mut self, msg: Message) {
        // Media that arrives while the publish is being decided is kept: the
        // driver drops it if the publish is refused.
        if !matches!(self.role, Role::Publishing(_) | Role::PublishPending(_)) {
            return;
        }
        if msg.payload.is_empty() {
            // Some encoders send empty audio/video messages; nothing to play.
            return;
        }
        let parsed = if msg.type_id == msg_type::AUDIO {
            Frame::parse_audio(msg.timestamp, msg.payload)
        } else {
            Frame::parse_video(msg.timestamp, msg.payload)
        };
        match parsed {
            Ok(frame) => self.events.push_back(SessionEvent::Media(frame)),
            Err(e) => self.events.push_back(SessionEvent::BadMedia(e)),
        }
    }

    fn require_connected(&self, command: &str) -> Result<(), SessionError> {
        match self.phase {
            Phase::Connected => Ok(()),
            _ => Err(SessionError::Protocol(format!(
                "'{command}' before 'connect'"
            ))),
        }
    }

    fn handle_command(&mut self, cmd: Command, msg_stream_id: u32) -> Result<(), SessionError> {
        let txn = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd)?,
            "createStream" => {
                self.require_connected("createStream")?;
                if self.streams_created >= STREAMS_PER_CONNECTION_MAX {
                    return Err(SessionError::Protocol(format!(
                        "more than {STREAMS_PER_CONNECTION_MAX} createStream calls \
                         (STREAMS_PER_CONNECTION_MAX)"
                    )));
                }
                self.streams_created += 1;
                let id = self.streams_created;
                self.command_reply(
                    "_result",
                    txn,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(f64::from(id))],
                );
            }
            "releaseStream" | "FCSubscribe" | "FCUnsubscribe" | "_checkbw" => {
                self.require_connected(&cmd.name)?;
                if txn != 0.0 {
                    self.command_reply("_result", txn, Amf0Value::Null, vec![Amf0Value::Undefined]);
                }
            }
            "FCPublish" => {
                self.require_connected("FCPublish")?;
                if txn != 0.0 {
                    self.command_reply("_result", txn, Amf0Value::Null, vec![Amf0Value::Undefined]);
                }
                let name = first_string(&cmd.args).unwrap_or_default();
                self.command_reply(
                    "onFCPublish",
                    0.0,
                    Amf0Value::Null,
                    vec![status_object("status", "NetStream.Publish.Start", &name)],
                );
            }
            "FCUnpublish" => {
                self.require_connected("FCUnpublish")?;
                if txn != 0.0 {
                    self.command_reply("_result", txn, Amf0Value::Null, vec![Amf0Value::Undefined]);
                }
                if let Role::Publishing(_) = self.role {
                    self.role = Role::Undecided;
                    self.events.push_back(SessionEvent::Unpublished);
                }
            }
            "publish" => {
                self.require_connected("publish")?;
                self.expect_undecided("publish")?;
                let req = self.stream_request(&cmd, msg_stream_id)?;
                self.role = Role::PublishPending(req.stream_id);
                self.events.push_back(SessionEvent::PublishRequested(req));
            }
            "play" => {
                self.require_connected("play")?;
                self.expect_undecided("play")?;
                let req = self.stream_request(&cmd, msg_stream_id)?;
                self.role = Role::PlayPending(req.stream_id);
                self.events.push_back(SessionEvent::PlayRequested(req));
            }
            "deleteStream" | "closeStream" => {
                self.require_connected(&cmd.name)?;
                match self.role {
                    Role::Publishing(_) | Role::PublishPending(_) => {
                        self.role = Role::Undecided;
                        self.events.push_back(SessionEvent::Unpublished);
                    }
                    Role::Playing(_) | Role::PlayPending(_) => {
                        self.role = Role::Undecided;
                        self.events.push_back(SessionEvent::PlayStopped);
                    }
                    Role::Undecided => {}
                }
            }
            "getStreamLength" => {
                self.require_connected("getStreamLength")?;
                self.command_reply(
                    "_result",
                    txn,
                    Amf0Value::Null,
                    vec![Amf0Value::Number(0.0)],
                );
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
            other => {
                return Err(SessionError::Protocol(format!(
                    "unknown command '{}'",
                    other.escape_debug()
                )));
            }
        }
        Ok(())
    }

    fn expect_undecided(&self, command: &str) -> Result<(), SessionError> {
        if self.role == Role::Undecided {
            Ok(())
        } else {
            Err(SessionError::Protocol(format!(
                "'{command}' while already publishing or playing"
            )))
        }
    }

    fn on_connect(&mut self, cmd: &Command) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::ExpectConnect) {
            return Err(SessionError::Protocol("second 'connect'".into()));
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

        self.control(&ControlMessage::WindowAckSize(self.config.window_ack_size));
        self.control(&ControlMessage::SetPeerBandwidth {
            size: self.config.window_ack_size,
            limit_type: 2,
        });
        self.control(&ControlMessage::SetChunkSize(self.config.chunk_size_out));
        self.encoder.set_chunk_size(self.config.chunk_size_out);
        let props = Amf0Value::Object(vec![
            ("fmsVer".into(), Amf0Value::String("FMS/3,5,7,7009".into())),
            ("capabilities".into(), Amf0Value::Number(31.0)),
            ("mode".into(), Amf0Value::Number(1.0)),
        ]);
        let Amf0Value::Object(mut info) = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        ) else {
            unreachable!("status_object builds an object");
        };
        info.push(("objectEncoding".into(), Amf0Value::Number(encoding)));
        self.command_reply(
            "_result",
            cmd.transaction_id,
            props,
            vec![Amf0Value::Object(info)],
        );
        self.events.push_back(SessionEvent::Connected {
            app: self.app.clone(),
            tc_url: self.tc_url.clone(),
        });
        Ok(())
    }

    fn stream_request(
        &self,
        cmd: &Command,
        msg_stream_id: u32,
    ) -> Result<StreamRequest, SessionError> {
        let raw = first_string(&cmd.args).ok_or_else(|| {
            SessionError::Protocol(format!("'{}' without a stream name", cmd.name))
        })?;
        let (name, name_query) = split_query(&raw);
        if name.is_empty() {
            return Err(SessionError::Protocol(format!(
                "'{}' with an empty stream name",
                cmd.name
            )));
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
            query,
        })
    }
}

fn first_string(args: &[Amf0Value]) -> Option<String> {
    args.iter().find_map(|v| v.as_str().map(str::to_string))
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
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
    use crate::rtmp::handshake::ClientHandshake;

    fn config() -> SessionConfig {
        SessionConfig {
            chunk: ChunkLimits::default(),
            amf: AmfLimits::default(),
            chunk_size_out: 4096,
            window_ack_size: 2_500_000,
        }
    }

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
            let mut body = Vec::new();
            encode_command(
                &Command {
                    name: name.into(),
                    transaction_id: txn,
                    object,
                    args,
                },
                &mut body,
            );
            let mut out = BytesMut::new();
            self.enc
                .write(3, 0, msg_type::COMMAND_AMF0, stream_id, &body, &mut out);
            session.handle_input(&out).unwrap();
            let (bytes, events) = drain(session);
            self.inbuf.extend_from_slice(&bytes);
            events
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
        ChunkEncoder::new().write(3, 0, msg_type::COMMAND_AMF0, 1, &body, &mut out);
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
            .write(3, 0, msg_type::COMMAND_AMF0, 0, &body, &mut out);
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
        );
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
