//! Why a connection, a request or a decision ended, by scope and by blame:
//! the peer's fault (bad bytes, a bound exceeded, a deadline it let pass),
//! its stream's (already published), or ours (an internal fault). The
//! client is told the truth, and the log names the bound or deadline by
//! its config key or constant.

use std::fmt;
use std::time::Duration;

use proto::rtmp::session::SessionError;

/// Whose fault an ending is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The peer's: it sent bad input or let a deadline pass.
    Peer,
    /// The stream's state: e.g. it is already being published.
    Stream,
    /// Ours: an internal fault the peer could do nothing about.
    Server,
}

/// A deadline, named by the config key or constant that sets it.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    /// When it passes.
    pub at: std::time::Instant,
    /// Its name, e.g. `rtmp.handshake_timeout_s`.
    pub bound: &'static str,
    /// What it waits for, e.g. "publish or play".
    pub waiting_for: &'static str,
}

impl Deadline {
    /// A deadline `after` from now.
    pub fn after(after: Duration, bound: &'static str, waiting_for: &'static str) -> Self {
        Self {
            at: std::time::Instant::now() + after,
            bound,
            waiting_for,
        }
    }
}

/// Why a connection ended early.
#[derive(Debug)]
pub enum ConnError {
    /// The peer broke RTMP (bad bytes or a bound of `ChunkLimits` or
    /// `AmfLimits` exceeded).
    Rtmp(SessionError),
    /// A named deadline passed.
    Deadline {
        /// The config key or constant.
        bound: &'static str,
        /// What was being waited for.
        waiting_for: &'static str,
    },
    /// The socket failed (reset, broken pipe, a write that timed out).
    Io(std::io::Error),
    /// The peer broke TLS (a bad handshake, no shared cipher suite or
    /// protocol, an unknown SNI name with no default).
    Tls(String),
    /// Ours: e.g. a handoff to the owner shard failed.
    Internal(String),
}

impl ConnError {
    /// Whose fault it is.
    pub fn blame(&self) -> Blame {
        match self {
            ConnError::Rtmp(e) => match e.blame() {
                proto::rtmp::conn::Blame::Peer => Blame::Peer,
                proto::rtmp::conn::Blame::Local => Blame::Server,
            },
            ConnError::Deadline { .. } | ConnError::Io(_) | ConnError::Tls(_) => Blame::Peer,
            ConnError::Internal(_) => Blame::Server,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Rtmp(e) => write!(f, "{e}"),
            ConnError::Deadline { bound, waiting_for } => {
                write!(f, "{bound} passed while waiting for {waiting_for}")
            }
            ConnError::Io(e) => write!(f, "socket: {e}"),
            ConnError::Tls(e) => write!(f, "tls: {e}"),
            ConnError::Internal(e) => write!(f, "internal: {e}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<SessionError> for ConnError {
    fn from(e: SessionError) -> Self {
        ConnError::Rtmp(e)
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// Why a publish or play was refused, decided before any media byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Whose fault it is (the client is told the truth).
    pub blame: Blame,
    /// What was wrong, in one line.
    pub reason: String,
    /// The request carried no credential at all (HTTP: 401, not 403).
    pub no_credential: bool,
}

impl Refusal {
    /// Refused because of the stream's state (e.g. already published).
    pub fn stream(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Stream,
            reason: reason.into(),
            no_credential: false,
        }
    }

    /// Refused because of an internal fault.
    pub fn server(reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Server,
            reason: reason.into(),
            no_credential: false,
        }
    }

    /// Refused because no decision came within its deadline.
    pub fn timed_out(bound: &'static str) -> Self {
        Self {
            blame: Blame::Server,
            reason: format!("no decision within {bound}"),
            no_credential: false,
        }
    }

    /// Refused for the peer's credential: none given (`missing`), or one
    /// that is expired, tampered with or for another action or stream.
    pub fn credential(missing: bool, reason: impl Into<String>) -> Self {
        Self {
            blame: Blame::Peer,
            reason: reason.into(),
            no_credential: missing,
        }
    }

    /// The RTMP status code a refused publish is answered with.
    pub fn publish_code(&self) -> &'static str {
        match self.blame {
            Blame::Stream => "NetStream.Publish.BadName",
            Blame::Peer => "NetStream.Publish.Denied",
            Blame::Server => "NetStream.Failed",
        }
    }

    /// The RTMP status code a refused play is answered with.
    pub fn play_code(&self) -> &'static str {
        match self.blame {
            Blame::Stream => "NetStream.Play.StreamNotFound",
            Blame::Peer => "NetStream.Play.Failed",
            Blame::Server => "NetStream.Failed",
        }
    }

    /// The HTTP status a refused request is answered with.
    pub fn http_status(&self) -> u16 {
        match self.blame {
            Blame::Stream => 404,
            Blame::Peer if self.no_credential => 401,
            Blame::Peer => 403,
            Blame::Server => 503,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}
