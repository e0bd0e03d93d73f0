//! The RTMP connection core, sans-IO: what both ends of a connection do,
//! whichever end they are. [`ServerSession`](super::session::ServerSession)
//! and [`ClientSession`](super::client::ClientSession) are thin layers over
//! it that hold only their command flow, so the server, the edge's puller
//! and the load generator run the same connection code.
//!
//! ```text
//!  handle_input(bytes) ──▶ input ──▶ handshake ──▶ chunk decoder ──▶ message
//!                                     (by role)     (ChunkLimits)       │
//!      control (Set Chunk Size, Abort, Ack, Window Ack Size,            │
//!      Set Peer Bandwidth, ping) answered here ◀────────────────────────┤
//!      aggregates split into their media here ◀─────────────────────────┤
//!                                                                       ▼
//!  poll_message() ──▶ Incoming::{HandshakeDone, Command, Media, BadMedia,
//!                                Metadata, UserControl}
//!  send_*() ──▶ chunk encoder ──▶ output ──▶ take_transmit()
//! ```
//!
//! The role decides the handshake and two control rules:
//!
//! - [`Role::Server`] answers C0C1 with S0S1S2 (with the Flash digest when
//!   C1 carries one) and acknowledges by its own window from the start,
//!   the one it announces at `connect`.
//! - [`Role::Client`] sends C0C1 at once and answers S1 with C2;
//!   acknowledges by the window the server announces (none before, spec
//!   5.4.4) and answers Set Peer Bandwidth with its Window Acknowledgement
//!   Size (spec 5.4.5).
//!
//! Media and data messages reach the session only while it says it takes
//! them ([`Connection::set_media_in`]): a server while publishing, a client
//! while playing. Others are dropped unparsed.
//!
//! Defined by: Adobe RTMP Specification 1.0 (sections 5.2 to 5.4, 7.1).

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};

use super::amf::{encode_command, parse_command, parse_data, Amf0Value, AmfLimits, Command};
use super::amf::{AmfError, CommandError};
use super::chunk::{ChunkDecoder, ChunkEncoder, ChunkError, ChunkLimits, EncodeError, Message};
use super::handshake::{ClientHandshake, HandshakeError, ServerHandshake};
use super::message::{
    msg_type, parse_control, split_aggregate, write_control, AggregateError, ControlError,
    ControlMessage, UserControl,
};
use super::wire::{self, CSID_COMMAND};
use crate::media::{Frame, MediaError};

/// Which end of the connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection.
    Server,
    /// We opened it.
    Client,
}

/// Bounds and settings of one connection core.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnConfig {
    /// Chunk stream bounds (incoming chunk size, message length, chunk
    /// streams, bytes in reassembly). `chunk.message_len_max` also bounds
    /// the `onMetaData` body raised to the session.
    pub chunk: ChunkLimits,
    /// AMF decoding bounds for commands and data messages.
    pub amf: AmfLimits,
    /// Acknowledge every this many bytes received from the start; 0 sends
    /// no acknowledgement until the peer's Window Acknowledgement Size
    /// (which only [`Role::Client`] adopts).
    pub ack_window: u32,
}

/// Who caused an error (STYLE 7): the peer, or our own side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The peer broke the protocol or a bound, or refused us: this
    /// connection's fault, and only it closes.
    Peer,
    /// Something we were to send does not fit the protocol: a bug or a
    /// setting of ours.
    Local,
}

/// Why the connection must close, as far as the core can tell.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnError {
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
    /// An aggregate message could not be split.
    Aggregate(AggregateError),
    /// An `onMetaData` whose body, once re-encoded in AMF0 for players,
    /// exceeds `ChunkLimits::message_len_max` (AMF0 and AMF3 references
    /// let a body grow when copied out).
    MetadataTooLong {
        /// The body's length in bytes.
        len: usize,
        /// `ChunkLimits::message_len_max`.
        max: u32,
    },
    /// A message we were to send does not fit the chunk stream.
    Encode(EncodeError),
}

impl ConnError {
    /// Who caused it.
    pub fn blame(&self) -> Blame {
        match self {
            ConnError::Encode(_) => Blame::Local,
            _ => Blame::Peer,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Handshake(e) => write!(f, "handshake: {e}"),
            ConnError::Chunk(e) => write!(f, "chunk stream: {e}"),
            ConnError::Control(e) => write!(f, "control message: {e}"),
            ConnError::Command { type_id, error } => {
                write!(f, "command message (type {type_id}): {error}")
            }
            ConnError::Aggregate(e) => write!(f, "aggregate message: {e}"),
            ConnError::MetadataTooLong { len, max } => write!(
                f,
                "onMetaData body of {len} bytes once re-encoded exceeds message_len_max {max}"
            ),
            ConnError::Encode(e) => write!(f, "sending: {e}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<AmfError> for ConnError {
    fn from(e: AmfError) -> Self {
        ConnError::Command {
            type_id: msg_type::COMMAND_AMF0,
            error: CommandError::Amf(e),
        }
    }
}

/// What the core hands to the session, one complete message at a time.
#[derive(Clone, Debug)]
pub enum Incoming {
    /// The handshake is over; the chunk stream starts.
    HandshakeDone,
    /// A command (type 20, or 17 in AMF3) on a message stream.
    Command {
        /// The message stream id it came on.
        stream_id: u32,
        /// The decoded command.
        command: Command,
    },
    /// An audio or video message (alone or out of an aggregate), while
    /// media is taken.
    Media(Frame),
    /// A media message that did not parse; it was dropped.
    BadMedia(MediaError),
    /// `onMetaData`, as the AMF0 body `["onMetaData", props]` players get
    /// (without `@setDataFrame`), while media is taken.
    Metadata(Bytes),
    /// A user control event the core does not answer itself (all but ping
    /// requests), e.g. StreamBegin or StreamEOF.
    UserControl(UserControl),
}

/// What a session's driver does next: the shape both sessions' outputs
/// share, with their own event type.
#[derive(Debug)]
pub enum Output<E> {
    /// An event to act on.
    Event(E),
    /// Bytes to send, in order.
    Transmit(Bytes),
}

/// The handshake of the role, until it is done.
#[derive(Debug)]
enum Handshake {
    Server(Box<ServerHandshake>),
    Client(Box<ClientHandshake>),
}

impl Handshake {
    /// Consumes what it can of `input`: (bytes used, reply to send, done).
    fn drive(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>, bool), HandshakeError> {
        match self {
            Handshake::Server(hs) => {
                Ok((hs.handle_input(input)?, hs.poll_transmit(), hs.is_done()))
            }
            Handshake::Client(hs) => {
                Ok((hs.handle_input(input)?, hs.poll_transmit(), hs.is_done()))
            }
        }
    }
}

/// One RTMP connection below the command layer, for either role.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: ConnConfig,
    /// None once the handshake is done.
    handshake: Option<Handshake>,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Input not yet consumed.
    input: BytesMut,
    /// Output not yet taken by the driver.
    output: BytesMut,
    /// The media of an aggregate beyond the first, handed out in order.
    split: VecDeque<Incoming>,
    /// Whether media and data messages reach the session.
    media_in: bool,
    bytes_in: u64,
    bytes_acked: u64,
    /// Acknowledge every this many bytes; 0 = not at all.
    ack_window: u32,
    /// The last Window Acknowledgement Size sent in answer to Set Peer
    /// Bandwidth (client role).
    window_sent: Option<u32>,
    /// A send error from a call that could not return it, reported by the
    /// next [`Connection::poll_message`].
    deferred: Option<EncodeError>,
}

impl Connection {
    /// A connection core for `role`. A client's C0C1 is already waiting in
    /// the output; a server waits for the client's. `random` and
    /// `epoch_ms` seed our handshake packet (C1 or S1).
    pub fn new(role: Role, config: ConnConfig, random: u64, epoch_ms: u32) -> Self {
        let mut output = BytesMut::with_capacity(4096);
        let handshake = match role {
            Role::Server => Handshake::Server(Box::new(ServerHandshake::new(random, epoch_ms))),
            Role::Client => {
                let mut hs = Box::new(ClientHandshake::new(random, epoch_ms));
                if let Some(c0c1) = hs.poll_transmit() {
                    output.extend_from_slice(&c0c1);
                }
                Handshake::Client(hs)
            }
        };
        Connection {
            role,
            config,
            handshake: Some(handshake),
            decoder: ChunkDecoder::new(config.chunk),
            encoder: ChunkEncoder::new(),
            input: BytesMut::with_capacity(4096),
            output,
            split: VecDeque::new(),
            media_in: false,
            bytes_in: 0,
            bytes_acked: 0,
            ack_window: config.ack_window,
            window_sent: None,
            deferred: None,
        }
    }

    /// Which end we are.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The handshake is over.
    pub fn handshake_done(&self) -> bool {
        self.handshake.is_none()
    }

    /// Bytes read so far (handshake included).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// Our current outgoing chunk size (128 until we send Set Chunk Size).
    pub fn chunk_size_out(&self) -> u32 {
        self.encoder.chunk_size()
    }

    /// Buffers bytes read from the socket; [`Connection::poll_message`]
    /// then reads them.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.bytes_in += bytes.len() as u64;
        self.input.extend_from_slice(bytes);
    }

    /// Counts `len` bytes read and drops them (a session that is closing).
    pub fn discard_input(&mut self, len: usize) {
        self.bytes_in += len as u64;
    }

    /// Changes the incoming chunk limits from the next chunk on.
    pub fn set_chunk_limits(&mut self, limits: ChunkLimits) {
        self.decoder.set_limits(limits);
    }

    /// Whether media and data messages reach the session from now on.
    pub fn set_media_in(&mut self, on: bool) {
        self.media_in = on;
    }

    /// The next complete message of the input, after the core did its part
    /// (control messages answered, aggregates split). `Ok(None)` when the
    /// input is used up; then the acknowledgement is sent if the window is
    /// full. Call until `Ok(None)` after every input: the session's state
    /// may change between messages, and the next one is read under it.
    pub fn poll_message(&mut self) -> Result<Option<Incoming>, ConnError> {
        if let Some(e) = self.deferred.take() {
            return Err(ConnError::Encode(e));
        }
        if let Some(next) = self.split.pop_front() {
            return Ok(Some(next));
        }
        if let Some(hs) = &mut self.handshake {
            let (used, reply, done) = hs.drive(&self.input).map_err(ConnError::Handshake)?;
            let _ = self.input.split_to(used.min(self.input.len()));
            if let Some(reply) = reply {
                self.output.extend_from_slice(&reply);
            }
            if !done {
                return Ok(None);
            }
            self.handshake = None;
            return Ok(Some(Incoming::HandshakeDone));
        }
        while let Some(msg) = self
            .decoder
            .decode(&mut self.input)
            .map_err(ConnError::Chunk)?
        {
            if let Some(incoming) = self.on_message(msg)? {
                return Ok(Some(incoming));
            }
        }
        if self.ack_window > 0 && self.bytes_in - self.bytes_acked >= u64::from(self.ack_window) {
            self.bytes_acked = self.bytes_in;
            // The sequence number is the byte count modulo 2^32 (spec 5.4.3).
            self.send_control(&ControlMessage::Acknowledgement(self.bytes_in as u32))
                .map_err(ConnError::Encode)?;
        }
        Ok(None)
    }

    /// The session's next output: its next event, else the bytes waiting
    /// (everything the input and the answers to earlier events produced, as
    /// one transmit).
    pub fn poll_output<E>(&mut self, events: &mut VecDeque<E>) -> Option<Output<E>> {
        if let Some(e) = events.pop_front() {
            return Some(Output::Event(e));
        }
        self.take_transmit().map(Output::Transmit)
    }

    /// Takes the bytes waiting to be sent.
    pub fn take_transmit(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// Gives back the capacity of empty input and output buffers (a player
    /// sees little traffic after its start, which grew both).
    pub fn release_buffers(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        if self.output.is_empty() {
            self.output = BytesMut::new();
        }
    }

    /// Keeps the error of a send whose caller cannot return it, for the
    /// next [`Connection::poll_message`] to report (the first one wins).
    pub fn defer(&mut self, result: Result<(), EncodeError>) {
        if let Err(e) = result {
            self.deferred.get_or_insert(e);
        }
    }

    /// Appends one audio, video or data frame on its chunk stream
    /// ([`wire::frame_ids`]), with header compression.
    pub fn send_frame(&mut self, stream_id: u32, frame: &Frame) -> Result<(), EncodeError> {
        let (csid, type_id) = wire::frame_ids(frame.kind);
        let out = &mut self.output;
        self.encoder.write(
            csid,
            frame.timestamp,
            type_id,
            stream_id,
            &frame.payload,
            out,
        )
    }

    /// Appends an AMF0 data message (type 18) with timestamp 0 on `csid`.
    pub fn send_data(&mut self, csid: u32, stream_id: u32, body: &[u8]) -> Result<(), EncodeError> {
        let out = &mut self.output;
        self.encoder
            .write(csid, 0, msg_type::DATA_AMF0, stream_id, body, out)
    }

    /// Appends a protocol control or user control message; a Set Chunk
    /// Size also changes our outgoing chunk size, right after it.
    ///
    /// Panics on a Set Chunk Size of 0 or above 0x7FFFFFFF (a local bug).
    pub fn send_control(&mut self, msg: &ControlMessage) -> Result<(), EncodeError> {
        write_control(&mut self.encoder, msg, &mut self.output)
    }

    /// Appends the AMF0 command `name(transaction_id, object, args...)` on
    /// the command chunk stream.
    pub fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) -> Result<(), EncodeError> {
        let cmd = Command {
            name: name.into(),
            transaction_id,
            object,
            args,
        };
        let mut body = Vec::with_capacity(256);
        encode_command(&cmd, &mut body);
        self.send_command_body(stream_id, &body)
    }

    /// Appends `onStatus(0, null, {level, code, description})` on
    /// `stream_id`.
    pub fn send_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) -> Result<(), EncodeError> {
        let body = wire::status_body(level, code, description);
        self.send_command_body(stream_id, &body)
    }

    /// Appends an AMF0 command body with timestamp 0 on the command chunk
    /// stream.
    fn send_command_body(&mut self, stream_id: u32, body: &[u8]) -> Result<(), EncodeError> {
        let out = &mut self.output;
        self.encoder.write(
            CSID_COMMAND,
            0,
            msg_type::COMMAND_AMF0,
            stream_id,
            body,
            out,
        )
    }

    fn on_message(&mut self, msg: Message) -> Result<Option<Incoming>, ConnError> {
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE | msg_type::ABORT | msg_type::ACK => {
                // The decoder applied chunk size and abort already; an
                // acknowledgement needs nothing from us.
                parse_control(msg.type_id, &msg.payload).map_err(ConnError::Control)?;
                Ok(None)
            }
            msg_type::WINDOW_ACK_SIZE | msg_type::SET_PEER_BANDWIDTH | msg_type::USER_CONTROL => {
                let ctl = parse_control(msg.type_id, &msg.payload).map_err(ConnError::Control)?;
                self.on_control(ctl)
            }
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => {
                let amf3 = msg.type_id == msg_type::COMMAND_AMF3;
                let command =
                    parse_command(&msg.payload, amf3, &self.config.amf).map_err(|error| {
                        ConnError::Command {
                            type_id: msg.type_id,
                            error,
                        }
                    })?;
                Ok(Some(Incoming::Command {
                    stream_id: msg.stream_id,
                    command,
                }))
            }
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 if self.media_in => self.on_data(&msg),
            msg_type::AUDIO | msg_type::VIDEO if self.media_in => Ok(media(msg)),
            msg_type::AGGREGATE if self.media_in => {
                let parts = split_aggregate(&msg).map_err(ConnError::Aggregate)?;
                self.split.extend(
                    parts
                        .into_iter()
                        .filter(|part| matches!(part.type_id, msg_type::AUDIO | msg_type::VIDEO))
                        .filter_map(media),
                );
                Ok(self.split.pop_front())
            }
            // Media not taken now, shared objects and unknown types.
            _ => Ok(None),
        }
    }

    fn on_control(&mut self, ctl: ControlMessage) -> Result<Option<Incoming>, ConnError> {
        let reply = match ctl {
            ControlMessage::WindowAckSize(size) if self.role == Role::Client => {
                self.ack_window = size;
                None
            }
            ControlMessage::SetPeerBandwidth { size, .. }
                if self.role == Role::Client && self.window_sent != Some(size) =>
            {
                self.window_sent = Some(size);
                Some(ControlMessage::WindowAckSize(size))
            }
            ControlMessage::UserControl(UserControl::PingRequest(t)) => {
                Some(ControlMessage::UserControl(UserControl::PingResponse(t)))
            }
            ControlMessage::UserControl(event) => return Ok(Some(Incoming::UserControl(event))),
            _ => None,
        };
        if let Some(reply) = reply {
            self.send_control(&reply).map_err(ConnError::Encode)?;
        }
        Ok(None)
    }

    fn on_data(&mut self, msg: &Message) -> Result<Option<Incoming>, ConnError> {
        let amf3 = msg.type_id == msg_type::DATA_AMF3;
        let values = parse_data(&msg.payload, amf3, &self.config.amf).map_err(|error| {
            ConnError::Command {
                type_id: msg.type_id,
                error,
            }
        })?;
        // `|RtmpSampleAccess` and other data messages need nothing.
        let Some(body) = wire::metadata_body(&values) else {
            return Ok(None);
        };
        let max = self.config.chunk.message_len_max;
        if body.len() > max as usize {
            return Err(ConnError::MetadataTooLong {
                len: body.len(),
                max,
            });
        }
        Ok(Some(Incoming::Metadata(body)))
    }
}

/// An audio or video message as a frame; None for an empty one (some
/// encoders send them; there is nothing to play).
fn media(msg: Message) -> Option<Incoming> {
    if msg.payload.is_empty() {
        return None;
    }
    let parsed = if msg.type_id == msg_type::AUDIO {
        Frame::parse_audio(msg.timestamp, msg.payload)
    } else {
        Frame::parse_video(msg.timestamp, msg.payload)
    };
    Some(match parsed {
        Ok(frame) => Incoming::Media(frame),
        Err(e) => Incoming::BadMedia(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FrameKind;
    use crate::rtmp::amf::encode_amf0;
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientSession, StreamMode};
    use crate::rtmp::session::{ServerSession, SessionEvent};
    use crate::rtmp::test_util::{decode_with, hex, on_metadata, sample_frames, server_config};

    fn limits() -> ConnConfig {
        ConnConfig::default()
    }

    /// Moves everything `from` has to send into `to`; returns what `to`
    /// read from it.
    fn shuttle(from: &mut Connection, to: &mut Connection) -> Vec<Incoming> {
        let mut got = Vec::new();
        while let Some(bytes) = from.take_transmit() {
            to.handle_input(&bytes);
            while let Some(m) = to.poll_message().expect("valid input") {
                got.push(m);
            }
        }
        got
    }

    /// A client core and a server core with the handshake done between
    /// them; the server acknowledges every `server_window` bytes.
    fn pair(server_window: u32) -> (Connection, Connection) {
        let mut c = Connection::new(Role::Client, limits(), 7, 0);
        let server = ConnConfig {
            ack_window: server_window,
            ..limits()
        };
        let mut s = Connection::new(Role::Server, server, 9, 0);
        assert_eq!((c.role(), s.role()), (Role::Client, Role::Server));
        assert!(!c.handshake_done() && !s.handshake_done());
        // C0C1 is waiting before any input; S0S1S2 answers it; C2 ends it.
        let c0c1 = c.take_transmit().expect("C0C1");
        assert_eq!((c0c1.len(), c0c1[0]), (1 + 1536, 3));
        s.handle_input(&c0c1);
        assert!(s.poll_message().unwrap().is_none());
        let s012 = s.take_transmit().expect("S0S1S2");
        assert_eq!(s012.len(), 1 + 2 * 1536);
        c.handle_input(&s012);
        assert!(matches!(
            c.poll_message(),
            Ok(Some(Incoming::HandshakeDone))
        ));
        assert!(c.poll_message().unwrap().is_none());
        let got = shuttle(&mut c, &mut s);
        assert!(matches!(got.as_slice(), [Incoming::HandshakeDone]));
        assert!(c.handshake_done() && s.handshake_done());
        (c, s)
    }

    #[test]
    fn client_answers_set_peer_bandwidth_once_and_pings() {
        let (mut c, mut s) = pair(0);
        for ctl in [
            ControlMessage::WindowAckSize(1_000_000),
            ControlMessage::SetPeerBandwidth {
                size: 1_000_000,
                limit_type: 2,
            },
            ControlMessage::SetPeerBandwidth {
                size: 1_000_000,
                limit_type: 2,
            },
            ControlMessage::UserControl(UserControl::PingRequest(0x0102_0304)),
            ControlMessage::UserControl(UserControl::StreamBegin(1)),
        ] {
            s.send_control(&ctl).unwrap();
        }
        let got = shuttle(&mut s, &mut c);
        // Only the event the core does not answer reaches the session.
        assert!(matches!(
            got.as_slice(),
            [Incoming::UserControl(UserControl::StreamBegin(1))]
        ));
        let answer = c.take_transmit().expect("answers");
        // Window Ack Size 1000000 (fmt 0 on csid 2, type 5), once for the
        // two equal Set Peer Bandwidth; then the ping response (fmt 1:
        // delta 0, length 6, type 4; event 7 and the echoed timestamp).
        assert_eq!(
            &answer[..],
            &hex("02 000000 000004 05 00000000 000f4240
                 42 000000 000006 04 0007 01020304")[..]
        );
        s.handle_input(&answer);
        assert!(matches!(
            s.poll_message(),
            Ok(Some(Incoming::UserControl(UserControl::PingResponse(
                0x0102_0304
            ))))
        ));
    }

    #[test]
    fn server_ignores_a_clients_window_and_answers_pings() {
        let (mut c, mut s) = pair(0);
        c.send_control(&ControlMessage::SetPeerBandwidth {
            size: 500,
            limit_type: 0,
        })
        .unwrap();
        c.send_control(&ControlMessage::WindowAckSize(100)).unwrap();
        c.send_control(&ControlMessage::UserControl(UserControl::PingRequest(5)))
            .unwrap();
        assert!(shuttle(&mut c, &mut s).is_empty());
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let msgs = decode_with(&mut dec, &s.take_transmit().expect("pong"));
        let ctls: Vec<_> = msgs
            .iter()
            .map(|m| parse_control(m.type_id, &m.payload).unwrap())
            .collect();
        assert_eq!(
            ctls,
            [ControlMessage::UserControl(UserControl::PingResponse(5))]
        );
    }

    #[test]
    fn acknowledgement_windows_by_role() {
        // The server acknowledges by its own window from the start.
        let (mut c, mut s) = pair(5000);
        c.send_data(5, 1, &[0x02; 1000]).unwrap();
        assert!(shuttle(&mut c, &mut s).is_empty(), "data not taken");
        // C0C1, C2 and 1019 bytes of chunks: 4092 of 5000.
        assert_eq!(s.bytes_in(), 4092);
        assert!(s.take_transmit().is_none(), "window not full");
        c.send_data(5, 1, &[0x02; 1000]).unwrap();
        shuttle(&mut c, &mut s);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let msgs = decode_with(&mut dec, &s.take_transmit().expect("ack"));
        assert_eq!(msgs.len(), 1);
        assert_eq!(
            parse_control(msgs[0].type_id, &msgs[0].payload).unwrap(),
            ControlMessage::Acknowledgement(s.bytes_in() as u32)
        );

        // The client waits for the server's window, then acknowledges by it.
        let (mut c, mut s) = pair(0);
        s.send_data(5, 1, &[0x02; 2000]).unwrap();
        shuttle(&mut s, &mut c);
        assert!(c.take_transmit().is_none(), "no window announced yet");
        s.send_control(&ControlMessage::WindowAckSize(1000))
            .unwrap();
        s.send_data(5, 1, &[0x02; 10]).unwrap();
        shuttle(&mut s, &mut c);
        let mut dec = ChunkDecoder::new(ChunkLimits::default());
        let msgs = decode_with(&mut dec, &c.take_transmit().expect("ack"));
        assert_eq!(
            parse_control(msgs[0].type_id, &msgs[0].payload).unwrap(),
            ControlMessage::Acknowledgement(c.bytes_in() as u32)
        );
    }

    #[test]
    fn media_is_taken_only_when_asked_and_aggregates_split() {
        let (mut c, mut s) = pair(0);
        let audio = [0xAF, 0x01, 0x21, 0x10, 0x04, 0x60];
        c.send_data(5, 1, &audio).unwrap();
        c.send(4, 10, msg_type::AUDIO, 1, &audio);
        assert!(shuttle(&mut c, &mut s).is_empty(), "media off");

        s.set_media_in(true);
        // An aggregate at timestamp 1000 holding audio (sub-timestamp 100)
        // and video (133, so 1033 once rebased) with their back pointers.
        let aggregate = hex("08 000006 000064 00 000000 af0121100460 00000011
             09 000005 000085 00 000000 2701000000   00000010");
        c.send(6, 1000, msg_type::AGGREGATE, 1, &aggregate);
        c.send(4, 20, msg_type::AUDIO, 1, &[]); // empty: dropped
        c.send(4, 30, msg_type::AUDIO, 1, &[0xAF]); // truncated AAC
        let got = shuttle(&mut c, &mut s);
        match got.as_slice() {
            [Incoming::Media(a), Incoming::Media(v), Incoming::BadMedia(_)] => {
                assert_eq!((a.kind, a.timestamp), (FrameKind::Audio, 1000));
                assert_eq!(&a.payload[..], &audio);
                assert_eq!((v.kind, v.timestamp), (FrameKind::Video, 1033));
                assert_eq!(&v.payload[..], &hex("2701000000")[..]);
            }
            other => panic!("expected two frames and a bad one, got {other:?}"),
        }

        // A truncated aggregate is the peer's error, naming the offset.
        c.send(6, 0, msg_type::AGGREGATE, 1, &hex("08 000006 000000"));
        s.handle_input(&c.take_transmit().unwrap());
        let err = s.poll_message().unwrap_err();
        assert!(matches!(err, ConnError::Aggregate(_)), "{err}");
        assert_eq!(err.blame(), Blame::Peer);
        assert!(err.to_string().starts_with("aggregate message: "), "{err}");
    }

    impl Connection {
        /// Test shorthand: a message, unwrapped.
        fn send(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
            let out = &mut self.output;
            self.encoder
                .write(csid, ts, type_id, stream_id, payload, out)
                .unwrap();
        }
    }

    #[test]
    fn metadata_is_raised_without_set_data_frame_and_bounded() {
        let server = ConnConfig {
            chunk: ChunkLimits {
                message_len_max: 4096,
                ..ChunkLimits::default()
            },
            ..limits()
        };
        let (mut c, _) = pair(0);
        let mut s = Connection::new(Role::Server, server, 1, 0);
        s.handle_input(&[3]);
        s.poll_message().unwrap();
        let _ = s.take_transmit();
        s.handle_input(&[0; 1536 * 2]);
        assert!(matches!(
            s.poll_message(),
            Ok(Some(Incoming::HandshakeDone))
        ));
        s.set_media_in(true);

        let mut body = Vec::new();
        encode_amf0(&Amf0Value::String("@setDataFrame".into()), &mut body);
        let players_body = body.len();
        encode_amf0(&Amf0Value::String("onMetaData".into()), &mut body);
        encode_amf0(
            &Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
            &mut body,
        );
        c.send_data(5, 1, &body).unwrap();
        let got = shuttle(&mut c, &mut s);
        assert!(matches!(got.as_slice(), [Incoming::Metadata(m)] if m[..] == body[players_body..]));

        // An object of 1000 bytes, then five AMF0 references to it: 1.1 KB
        // on the wire, 6 KB once copied out for players.
        let mut body = Vec::new();
        encode_amf0(&Amf0Value::String("onMetaData".into()), &mut body);
        encode_amf0(
            &Amf0Value::Object(vec![("x".into(), Amf0Value::String("y".repeat(1000)))]),
            &mut body,
        );
        for _ in 0..5 {
            body.extend_from_slice(&[0x07, 0x00, 0x00]);
        }
        c.send_data(5, 1, &body).unwrap();
        s.handle_input(&c.take_transmit().unwrap());
        let err = s.poll_message().unwrap_err();
        assert!(
            matches!(err, ConnError::MetadataTooLong { len, max: 4096 } if len > 6000),
            "{err}"
        );
        assert!(err.to_string().contains("message_len_max 4096"), "{err}");
    }

    #[test]
    fn a_send_that_does_not_fit_is_refused_and_can_be_deferred() {
        let (mut c, _) = pair(0);
        let too_long = vec![0u8; 0x100_0000];
        let err = c.send_data(5, 1, &too_long).unwrap_err();
        assert_eq!(
            err,
            EncodeError::MessageTooLong {
                len: 0x100_0000,
                max: 0xFF_FFFF,
                csid: 5,
                type_id: msg_type::DATA_AMF0
            }
        );
        assert!(c.take_transmit().is_none(), "nothing written");
        c.defer(Err(err));
        c.defer(Ok(()));
        let reported = c.poll_message().unwrap_err();
        assert_eq!(reported, ConnError::Encode(err));
        assert_eq!(reported.blame(), Blame::Local);
        assert!(c.poll_message().unwrap().is_none(), "reported once");
    }

    #[test]
    fn handshake_errors_name_the_byte() {
        let mut s = Connection::new(Role::Server, limits(), 1, 0);
        s.handle_input(&[6]);
        let err = s.poll_message().unwrap_err();
        assert!(matches!(err, ConnError::Handshake(_)), "{err}");
        assert!(err.to_string().starts_with("handshake: "), "{err}");
    }

    /// Pumps a client session against a server session until both are
    /// quiet, accepting publish and play; returns the events of each.
    fn pump(c: &mut ClientSession, s: &mut ServerSession) -> (Vec<ClientEvent>, Vec<SessionEvent>) {
        let (mut client, mut server) = (Vec::new(), Vec::new());
        loop {
            let mut quiet = true;
            while let Some(o) = c.poll_output() {
                quiet = false;
                match o {
                    Output::Transmit(b) => s.handle_input(&b).expect("server accepts"),
                    Output::Event(e) => client.push(e),
                }
            }
            while let Some(o) = s.poll_output() {
                quiet = false;
                match o {
                    Output::Transmit(b) => c.handle_input(&b).expect("client accepts"),
                    Output::Event(e) => {
                        match e {
                            SessionEvent::PublishRequested(_) => s.accept_publish(),
                            SessionEvent::PlayRequested(_) => s.accept_play(),
                            _ => {}
                        }
                        server.push(e);
                    }
                }
            }
            if quiet {
                return (client, server);
            }
        }
    }

    fn session(mode: StreamMode, seed: u64) -> ClientSession {
        let url = "rtmp://127.0.0.1:8079/live/cam";
        ClientSession::new(ClientConfig::from_url(url, mode).unwrap(), seed, 0)
    }

    /// A publisher and a player, each a ClientSession against its own
    /// ServerSession, joined as the server joins them: the ingest side's
    /// media events go to the player through `wire`, as the fan-out does.
    #[test]
    fn publisher_to_player_through_the_server_sessions() {
        let mut publisher = session(StreamMode::Publish, 1);
        let mut ingest = ServerSession::new(server_config(), 2, 0);
        let (events, requests) = pump(&mut publisher, &mut ingest);
        assert!(matches!(events.first(), Some(ClientEvent::Connected)));
        assert!(events
            .iter()
            .any(|e| matches!(e, ClientEvent::PublishStarted { stream_id: 1 })));
        assert!(requests
            .iter()
            .any(|e| matches!(e, SessionEvent::PublishRequested(r) if r.name == "cam")));

        let mut player = session(StreamMode::Play, 3);
        let mut egress = ServerSession::new(server_config(), 4, 0);
        let (events, _) = pump(&mut player, &mut egress);
        assert!(events
            .iter()
            .any(|e| matches!(e, ClientEvent::PlayStarted { stream_id: 1 })));
        let play_id = egress.play_stream_id().expect("playing");

        let meta = on_metadata(1280.0);
        publisher.send_metadata(&meta).unwrap();
        let sent = sample_frames();
        for f in &sent {
            publisher.send_frame(f).unwrap();
        }
        let (_, ingested) = pump(&mut publisher, &mut ingest);

        // What the fan-out sends each player, built from what was ingested.
        let mut parts = Vec::new();
        for e in &ingested {
            match e {
                SessionEvent::Metadata(body) => {
                    wire::metadata_message(body, play_id, egress.chunk_size_out(), &mut parts)
                }
                SessionEvent::Media(f) => {
                    wire::media_message(f, play_id, egress.chunk_size_out(), &mut parts)
                }
                other => panic!("unexpected {other:?}"),
            }
            .unwrap();
        }
        for p in &parts {
            player.handle_input(p).unwrap();
        }
        let (got, _) = pump(&mut player, &mut egress);
        let mut got = got.iter();
        assert!(matches!(got.next(), Some(ClientEvent::Metadata(m)) if m[..] == meta[..]));
        for want in &sent {
            match got.next() {
                Some(ClientEvent::Media(f)) => {
                    assert_eq!((f.kind, f.timestamp), (want.kind, want.timestamp));
                    assert_eq!(f.payload, want.payload);
                }
                other => panic!("expected media, got {other:?}"),
            }
        }
        assert!(got.next().is_none());

        // The publisher leaves; the server ends the play.
        publisher.close();
        let (_, ended) = pump(&mut publisher, &mut ingest);
        assert!(ended.iter().any(|e| matches!(e, SessionEvent::Unpublished)));
        egress.end_play("Stream is over.");
        let (got, _) = pump(&mut player, &mut egress);
        assert!(got
            .iter()
            .any(|e| matches!(e, ClientEvent::Status(s) if s.code == "NetStream.Play.Stop")));
        assert!(got.iter().any(|e| matches!(e, ClientEvent::StreamEof)));
    }
}
