//! Publish and play are requests answered later, with accept or a
//! [`Refusal`], before any media byte: one code path for RTMP, HTTP-FLV and
//! HLS. The decision may wait (an HTTP hook, a registry lookup: the
//! security issue plugs them in here) under its own deadline,
//! [`DECISION_TIMEOUT`] (longer when `hooks.timeout_ms` needs it),
//! distinct from the handshake deadline; while it waits, every other
//! connection on the shard keeps running.

use std::net::SocketAddr;
use std::time::Duration;

use super::hooks::HOOK_DECISION_MARGIN;
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
    /// The client id (the API's).
    pub client_id: u64,
    /// RTMP's tcUrl; None for HTTP.
    pub tc_url: Option<&'a str>,
}

impl Shard {
    /// How long a decision may take: [`DECISION_TIMEOUT`], or longer when
    /// a hook's own deadline (`hooks.timeout_ms`) needs it, so that the
    /// hook's deadline is the one that fires.
    pub fn decision_timeout(&self) -> Duration {
        DECISION_TIMEOUT.max(self.config().hooks.timeout() + HOOK_DECISION_MARGIN)
    }

    /// Decides `ask`, waiting at most [`Shard::decision_timeout`].
    pub async fn decide(&self, ask: &Ask<'_>) -> Result<(), Refusal> {
        let decision = async { Some(self.decision(ask).await) };
        let timeout = async {
            glommio::timer::sleep(self.decision_timeout()).await;
            None
        };
        futures_lite::future::or(decision, timeout)
            .await
            .unwrap_or_else(|| Err(Refusal::timed_out("DECISION_TIMEOUT")))
    }

    /// The decision itself: the IP rule, then the action's `auth` mode (an
    /// open one, a signed URL checked here, locally, or the HTTP hook).
    async fn decision(&self, ask: &Ask<'_>) -> Result<(), Refusal> {
        // IP rules first: they need nothing from the request but its peer.
        let live = self.live();
        let rule = match ask.action {
            Action::Publish => &live.access_publish,
            Action::Play => &live.access_play,
        };
        rule.check(ask.peer.ip(), ask.action.name())
            .map_err(|why| {
                self.metrics.refused(Refused::Access);
                Refusal::credential(false, why)
            })?;
        let auth = &live.config.auth;
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
        if mode == AuthMode::Hook {
            self.hooks.decide(ask).await?;
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
