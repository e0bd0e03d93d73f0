//! Publish and play are requests answered later, with accept or a
//! [`Refusal`], before any media byte: one code path for RTMP, HTTP-FLV and
//! HLS. The decision may wait (an HTTP hook, a registry lookup: the
//! security issue plugs them in here) under its own deadline,
//! [`DECISION_TIMEOUT`], distinct from the handshake deadline; while it
//! waits, every other connection on the shard keeps running. Today every
//! request is accepted.

use std::net::SocketAddr;
use std::time::Duration;

use super::Shard;
use crate::config::AuthMode;
use crate::error::Refusal;
use crate::metrics::{Protocol, Refused};
use crate::stream::StreamKey;
use proto::sign::SignError;

/// How long a publish or play may wait for its decision; past it the
/// request is refused (fail closed).
pub const DECISION_TIMEOUT: Duration = Duration::from_secs(5);

/// What is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Become the stream's publisher.
    Publish,
    /// Receive the stream.
    Play,
}

impl Action {
    /// `publish` or `play`, as logs and hooks name it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }
}

/// A publish or play request, as every protocol asks it.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// Publish or play.
    pub action: Action,
    /// `vhost/app/stream`.
    pub key: &'a StreamKey,
    /// The protocol the client speaks.
    pub protocol: Protocol,
    /// Where the client connects from.
    pub peer: SocketAddr,
    /// The request's query parameters (the stream name's or the URL's).
    pub query: &'a [(String, String)],
}

impl Shard {
    /// Decides `ask`, waiting at most [`DECISION_TIMEOUT`].
    pub async fn decide(&self, ask: &Ask<'_>) -> Result<(), Refusal> {
        let decision = async { Some(self.decision(ask).await) };
        let timeout = async {
            glommio::timer::sleep(DECISION_TIMEOUT).await;
            None
        };
        futures_lite::future::or(decision, timeout)
            .await
            .unwrap_or_else(|| Err(Refusal::timed_out("DECISION_TIMEOUT")))
    }

    /// The decision itself: the action's `auth` mode (an open one, or a
    /// signed URL checked here, locally). Hooks and IP rules come in here.
    async fn decision(&self, ask: &Ask<'_>) -> Result<(), Refusal> {
        // IP rules first: they need nothing from the request but its peer.
        let rule = match ask.action {
            Action::Publish => &self.access_publish,
            Action::Play => &self.access_play,
        };
        rule.check(ask.peer.ip(), ask.action.name())
            .map_err(|why| {
                self.metrics.refused(Refused::Access);
                Refusal::credential(false, why)
            })?;
        let auth = &self.config.auth;
        let mode = match ask.action {
            Action::Publish => auth.publish,
            Action::Play => auth.play,
        };
        if mode == AuthMode::Signed {
            let now = crate::stream::unix_ms() / 1000;
            proto::sign::verify(
                auth.secret.as_bytes(),
                ask.action.name(),
                ask.key,
                ask.query,
                now,
                auth.clock_skew_s,
            )
            .map_err(|e| {
                self.metrics.refused(Refused::Auth);
                Refusal::credential(e == SignError::Missing, e.to_string())
            })?;
        }
        log::debug!(
            "decision=allow action={} key={} peer={} protocol={:?}",
            ask.action.name(),
            ask.key,
            ask.peer,
            ask.protocol
        );
        Ok(())
    }
}
