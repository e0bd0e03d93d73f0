//! HTTP hooks (`[hooks]`): a publish or play in mode "hook" is decided by
//! a POST to `hooks.on_publish` / `hooks.on_play`; the ends of admitted
//! publishers and players are told to `hooks.on_unpublish` /
//! `hooks.on_stop`, fire and forget.
//!
//! A hook request is an async glommio TCP connection on the shard of the
//! connection it is about, framed by the sans-IO `proto::http::client`:
//! the wait costs no thread and every other connection on the shard keeps
//! running. Each request has one deadline, `hooks.timeout_ms`, from connect
//! to answer; a shard has at most `hooks.inflight_max` in flight.
//!
//! HLS has no connection per player, so it asks once per *session*: the
//! client's address, the stream key and the playlist's query (less the
//! LL-HLS directives), which the playlist carries into its part and
//! segment URIs (`proto::query::carry`, as signed URLs are carried). The
//! first request of a session asks `on_play`; later ones are admitted from
//! this shard's [`HlsSessions`] while the session is used within
//! [`HLS_SESSION_TTL`]; an expired session is told to `on_stop`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::decide::{Action, Ask};
use crate::config::{HookOnError, HooksConfig};
use crate::error::Refusal;
use crate::metrics::{Protocol, Refused};
use crate::stream::StreamKey;
use proto::http::client::{self, BodyDecoder, HttpUrl, Parse};

/// An HLS session not used for this long has ended: its next request asks
/// the hook again, and `on_stop` is told.
pub const HLS_SESSION_TTL: Duration = Duration::from_secs(30);
/// HLS sessions one shard remembers; past it the least recently used one
/// ends (and is told to `on_stop`). About 200 bytes each.
pub const HLS_SESSIONS_MAX: usize = 4096;
/// Bytes of a refusing hook's body kept for the reason a client is told.
pub const HOOK_REASON_BYTES_MAX: usize = 200;
/// How much longer than `hooks.timeout_ms` the whole decision may take
/// (the IP rule, the request's own bookkeeping), so the hook's own
/// deadline is the one that fires.
pub const HOOK_DECISION_MARGIN: Duration = Duration::from_secs(1);
/// Read buffer of one hook request.
const HOOK_READ_BUF_LEN: usize = 4096;

/// The LL-HLS delivery directives: they change per playlist request and
/// are no part of a session's identity.
const HLS_DIRECTIVES: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `on_publish`.
    Publish,
    /// `on_play`.
    Play,
    /// `on_unpublish`.
    Unpublish,
    /// `on_stop`.
    Stop,
}

impl Hook {
    /// The config key's last part, as logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Publish => "on_publish",
            Hook::Play => "on_play",
            Hook::Unpublish => "on_unpublish",
            Hook::Stop => "on_stop",
        }
    }

    /// The `action` the hook is told.
    fn action(self) -> &'static str {
        match self {
            Hook::Publish => "publish",
            Hook::Play => "play",
            Hook::Unpublish => "unpublish",
            Hook::Stop => "stop",
        }
    }

    /// The hook that decides `action`.
    pub fn deciding(action: Action) -> Hook {
        match action {
            Action::Publish => Hook::Publish,
            Action::Play => Hook::Play,
        }
    }

    /// The hook told when an admitted `action` ends.
    pub fn ending(action: Action) -> Hook {
        match action {
            Action::Publish => Hook::Unpublish,
            Action::Play => Hook::Stop,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why a hook request got no answer.
#[derive(Debug)]
pub enum HookError {
    /// `hooks.inflight_max` requests were in flight on this shard.
    Busy(usize),
    /// The TCP connection failed (refused, unreachable).
    Connect(std::io::Error),
    /// No answer within `hooks.timeout_ms`.
    Timeout(u64),
    /// Writing the request or reading the answer failed.
    Io(std::io::Error),
    /// The answer was no HTTP response.
    BadAnswer(String),
    /// The hook closed the connection before a response head.
    Closed,
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::Busy(max) => write!(
                f,
                "not sent: {max} hook requests in flight on this shard (hooks.inflight_max)"
            ),
            HookError::Connect(e) => write!(f, "connect failed: {e}"),
            HookError::Timeout(ms) => write!(f, "no answer within {ms} ms (hooks.timeout_ms)"),
            HookError::Io(e) => write!(f, "socket: {e}"),
            HookError::BadAnswer(what) => write!(f, "bad answer: {what}"),
            HookError::Closed => f.write_str("closed the connection before answering"),
        }
    }
}

/// A hook's answer: its status line and the start of its body.
struct Answer {
    status: u16,
    status_line: String,
    reason: String,
}

/// Who an HLS session is: the client's address, the stream and the
/// playlist's query (in the form its URIs carry).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SessionKey {
    ip: IpAddr,
    key: StreamKey,
    query: String,
}

/// What a session remembers, to tell `on_stop`.
struct Session {
    last_used: Instant,
    client_id: u64,
    peer: SocketAddr,
    query: Vec<(String, String)>,
}

/// One shard's HLS sessions admitted by `on_play`, at most
/// [`HLS_SESSIONS_MAX`], each kept [`HLS_SESSION_TTL`] after its last use.
#[derive(Default)]
pub struct HlsSessions {
    map: HashMap<SessionKey, Session>,
}

impl HlsSessions {
    /// True (and the session's use renewed) if the session is known and
    /// not expired.
    fn admit(&mut self, sk: &SessionKey, now: Instant) -> bool {
        match self.map.get_mut(sk) {
            Some(s) if now.duration_since(s.last_used) < HLS_SESSION_TTL => {
                s.last_used = now;
                true
            }
            _ => false,
        }
    }

    /// Remembers an admitted session; returns the one that made room.
    fn insert(&mut self, sk: SessionKey, s: Session) -> Option<(SessionKey, Session)> {
        let mut evicted = None;
        if self.map.len() >= HLS_SESSIONS_MAX && !self.map.contains_key(&sk) {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| k.clone());
            evicted = oldest.and_then(|k| self.map.remove_entry(&k));
        }
        self.map.insert(sk, s);
        evicted
    }

    /// Removes and returns the sessions unused for [`HLS_SESSION_TTL`].
    fn expire(&mut self, now: Instant) -> Vec<(SessionKey, Session)> {
        let gone: Vec<SessionKey> = self
            .map
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used) >= HLS_SESSION_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter()
            .filter_map(|k| self.map.remove_entry(&k))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// The query an HLS playlist carries into its part and segment URIs in
/// mode "hook": its own, less the LL-HLS directives. A session is known
/// by it.
pub fn session_query(query: &[(String, String)]) -> Vec<(&str, &str)> {
    query
        .iter()
        .filter(|(k, _)| !HLS_DIRECTIVES.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// One shard's hooks: their URLs, the requests in flight, HLS sessions.
pub struct Hooks {
    /// What `[hooks]` says; a reload replaces it for the next request.
    settings: RefCell<Rc<HookSettings>>,
    inflight: Cell<usize>,
    sessions: RefCell<HlsSessions>,
}

/// Counts a request in flight while it lives.
struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// `[hooks]`, parsed.
struct HookSettings {
    /// By [`Hook::index`]: the URL as configured (for logs) and parsed.
    urls: [Option<(String, HttpUrl)>; 4],
    timeout: Duration,
    inflight_max: usize,
    on_error: HookOnError,
}

impl HookSettings {
    /// Validated at load, so every URL parses.
    fn new(config: &HooksConfig) -> Self {
        let url = |s: &String| {
            (!s.is_empty())
                .then(|| HttpUrl::parse(s).ok().map(|u| (s.clone(), u)))
                .flatten()
        };
        HookSettings {
            urls: [
                url(&config.on_publish),
                url(&config.on_play),
                url(&config.on_unpublish),
                url(&config.on_stop),
            ],
            timeout: config.timeout(),
            inflight_max: config.inflight_max,
            on_error: config.on_error,
        }
    }
}

impl Hooks {
    /// The hooks of `config`.
    pub fn new(config: &HooksConfig) -> Self {
        Hooks {
            settings: RefCell::new(Rc::new(HookSettings::new(config))),
            inflight: Cell::new(0),
            sessions: RefCell::new(HlsSessions::default()),
        }
    }

    /// A reload's `[hooks]`: requests from now on use it; those in flight
    /// and the HLS sessions already admitted are kept.
    pub fn reconfigure(&self, config: &HooksConfig) {
        *self.settings.borrow_mut() = Rc::new(HookSettings::new(config));
    }

    fn settings(&self) -> Rc<HookSettings> {
        self.settings.borrow().clone()
    }

    /// Decides `ask` by its hook (`on_publish` or `on_play`): Ok on a 2xx,
    /// a refusal naming the status otherwise; a request that got no answer
    /// goes by `hooks.on_error`. HLS asks once per session.
    pub async fn decide(self: &Rc<Self>, ask: &Ask<'_>) -> Result<(), Refusal> {
        let hook = Hook::deciding(ask.action);
        let session = (ask.protocol == Protocol::Hls).then(|| SessionKey {
            ip: ask.peer.ip(),
            key: ask.key.clone(),
            query: proto::query::carry(&session_query(ask.query)),
        });
        if let Some(sk) = &session {
            if self.sessions.borrow_mut().admit(sk, Instant::now()) {
                return Ok(());
            }
        }
        let settings = self.settings();
        let Some((raw, url)) = &settings.urls[hook.index()] else {
            return Err(Refusal::server(format!("hooks.{} is not set", hook.name())));
        };
        let body = hook_body(hook, ask);
        match self.post(&settings, url, &body).await {
            Ok(a) if (200..300).contains(&a.status) => {
                log::debug!(
                    "hook {} {raw}: {} for key={} peer={}",
                    hook.name(),
                    a.status_line,
                    ask.key,
                    ask.peer
                );
            }
            Ok(a) => {
                crate::metrics::with(|m| m.refused(Refused::Hook));
                log::info!(
                    "hook {} {raw}: answered {} for key={} peer={}",
                    hook.name(),
                    a.status_line,
                    ask.key,
                    ask.peer
                );
                let mut why = format!("refused by the {} hook: {}", hook.name(), a.status_line);
                if !a.reason.is_empty() {
                    why.push_str(": ");
                    why.push_str(&a.reason);
                }
                return Err(Refusal::credential(false, why));
            }
            Err(e) => {
                if matches!(e, HookError::Busy(_)) {
                    crate::metrics::with(|m| m.refused(Refused::HookInflight));
                }
                let allow = settings.on_error == HookOnError::Allow;
                log::warn!(
                    "hook {} {raw}: {e} (key={} peer={}; hooks.on_error={})",
                    hook.name(),
                    ask.key,
                    ask.peer,
                    if allow {
                        "allow: admitted"
                    } else {
                        "deny: refused"
                    }
                );
                if !allow {
                    crate::metrics::with(|m| m.refused(Refused::Hook));
                    return Err(Refusal::server(format!(
                        "the {} hook failed: {e}",
                        hook.name()
                    )));
                }
            }
        }
        if let Some(sk) = session {
            let s = Session {
                last_used: Instant::now(),
                client_id: ask.client_id,
                peer: ask.peer,
                query: ask.query.to_vec(),
            };
            let evicted = self.sessions.borrow_mut().insert(sk, s);
            if let Some((k, s)) = evicted {
                log::info!(
                    "hls session key={} peer={} ended: HLS_SESSIONS_MAX={HLS_SESSIONS_MAX} reached",
                    k.key,
                    s.peer
                );
                self.session_ended(&k, &s);
            }
        }
        Ok(())
    }

    /// Tells the hook of `ask`'s end (`on_unpublish`, `on_stop`), if set:
    /// fire and forget, bounded like every hook request, failures logged.
    pub fn notify_end(self: &Rc<Self>, ask: &Ask<'_>) {
        let hook = Hook::ending(ask.action);
        let settings = self.settings();
        if settings.urls[hook.index()].is_none() {
            return;
        }
        let body = hook_body(hook, ask);
        let hooks = self.clone();
        let what = format!("key={} peer={}", ask.key, ask.peer);
        glommio::spawn_local(async move {
            let Some((raw, url)) = &settings.urls[hook.index()] else {
                return;
            };
            match hooks.post(&settings, url, &body).await {
                Ok(a) if (200..300).contains(&a.status) => {
                    log::debug!("hook {} {raw}: {} for {what}", hook.name(), a.status_line)
                }
                Ok(a) => log::warn!(
                    "hook {} {raw}: answered {} for {what}",
                    hook.name(),
                    a.status_line
                ),
                Err(e) => {
                    if matches!(e, HookError::Busy(_)) {
                        crate::metrics::with(|m| m.refused(Refused::HookInflight));
                    }
                    log::warn!("hook {} {raw}: {e} ({what})", hook.name())
                }
            }
        })
        .detach();
    }

    /// Ends the HLS sessions unused for [`HLS_SESSION_TTL`], telling
    /// `on_stop` of each (the shard's tick calls it).
    pub fn expire_sessions(self: &Rc<Self>, now: Instant) {
        if self.sessions.borrow().len() == 0 {
            return;
        }
        let gone = self.sessions.borrow_mut().expire(now);
        for (k, s) in gone {
            log::info!(
                "hls session key={} peer={} ended: unused for {} s (HLS_SESSION_TTL)",
                k.key,
                s.peer,
                HLS_SESSION_TTL.as_secs()
            );
            self.session_ended(&k, &s);
        }
    }

    fn session_ended(self: &Rc<Self>, k: &SessionKey, s: &Session) {
        self.notify_end(&Ask {
            action: Action::Play,
            key: &k.key,
            protocol: Protocol::Hls,
            peer: s.peer,
            query: &s.query,
            client_id: s.client_id,
            tc_url: None,
        });
    }

    /// POSTs `body` to `url` and reads the answer's head (and the start of
    /// its body), all within `hooks.timeout_ms`, if fewer than
    /// `hooks.inflight_max` requests are in flight.
    async fn post(
        &self,
        settings: &HookSettings,
        url: &HttpUrl,
        body: &[u8],
    ) -> Result<Answer, HookError> {
        if self.inflight.get() >= settings.inflight_max {
            return Err(HookError::Busy(settings.inflight_max));
        }
        self.inflight.set(self.inflight.get() + 1);
        let _counted = InFlight(&self.inflight);
        let timeout = settings.timeout;
        // The status, once its head is in: a refusal whose body is slow
        // stays a refusal when the deadline cuts the body short (it must
        // not become a hook error, which `on_error = "allow"` admits).
        let status = RefCell::new(None);
        let exchange = async {
            let mut conn = glommio::net::TcpStream::connect_timeout(url.addr, timeout)
                .await
                .map_err(|e| HookError::Connect(e.into()))?;
            let _ = conn.set_nodelay(true);
            let mut request = Vec::with_capacity(256 + body.len());
            client::write_post(
                &mut request,
                &url.authority,
                &url.target,
                "application/json",
                body,
            );
            conn.write_all(&request).await.map_err(HookError::Io)?;
            read_answer(&mut conn, &status).await
        };
        let deadline = async {
            glommio::timer::sleep(timeout).await;
            match status.borrow_mut().take() {
                Some((status, status_line)) => Ok(Answer {
                    status,
                    status_line,
                    reason: String::new(),
                }),
                None => Err(HookError::Timeout(timeout.as_millis() as u64)),
            }
        };
        futures_lite::future::or(exchange, deadline).await
    }
}

/// Reads a response head (its status into `status` once known), then up
/// to [`HOOK_REASON_BYTES_MAX`] of its body.
async fn read_answer(
    conn: &mut glommio::net::TcpStream,
    status: &RefCell<Option<(u16, String)>>,
) -> Result<Answer, HookError> {
    let mut buf = Vec::with_capacity(HOOK_READ_BUF_LEN);
    let mut chunk = [0u8; HOOK_READ_BUF_LEN];
    let (head, consumed) = loop {
        match client::parse_response_head(&buf, false) {
            Parse::Complete { value, consumed } => break (value, consumed),
            Parse::Invalid { what } => return Err(HookError::BadAnswer(what)),
            Parse::Incomplete => {}
        }
        let n = conn.read(&mut chunk).await.map_err(HookError::Io)?;
        if n == 0 {
            return Err(HookError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    *status.borrow_mut() = Some((head.status, head.status_line()));
    let mut reason = Vec::new();
    if !(200..300).contains(&head.status) {
        // The body's first line, for the refusal a client is told, read
        // until the request's deadline at most.
        let mut decoder = BodyDecoder::new(head.framing);
        let mut pending = buf.split_off(consumed);
        while !decoder.is_done() && reason.len() < HOOK_REASON_BYTES_MAX {
            if pending.is_empty() {
                let n = conn.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            let Ok((used, data)) = decoder.decode(&pending) else {
                break;
            };
            reason.extend_from_slice(data);
            pending.drain(..used);
        }
    }
    let reason = String::from_utf8_lossy(&reason);
    let reason: String = reason
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(HOOK_REASON_BYTES_MAX)
        .collect();
    Ok(Answer {
        status: head.status,
        status_line: head.status_line(),
        reason,
    })
}

/// The JSON object a hook is POSTed: `action, vhost, app, stream, query`
/// (an object; the last value of a repeated parameter wins), `client_id,
/// ip, protocol` (`rtmp`, `http_flv`, `hls`) and `tc_url` (RTMP's tcUrl,
/// null for HTTP).
fn hook_body(hook: Hook, ask: &Ask<'_>) -> Vec<u8> {
    let mut parts = ask.key.splitn(3, '/');
    let (vhost, app, stream) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let query: serde_json::Map<String, serde_json::Value> = ask
        .query
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let protocol = match ask.protocol {
        Protocol::RtmpPublish | Protocol::RtmpPlay => "rtmp",
        Protocol::HttpFlv => "http_flv",
        Protocol::Hls => "hls",
        Protocol::Other => "other",
    };
    serde_json::to_vec(&serde_json::json!({
        "action": hook.action(),
        "vhost": vhost,
        "app": app,
        "stream": stream,
        "query": query,
        "client_id": ask.client_id,
        "ip": ask.peer.ip().to_string(),
        "protocol": protocol,
        "tc_url": ask.tc_url,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sk(ip: &str, q: &str) -> SessionKey {
        SessionKey {
            ip: ip.parse().unwrap(),
            key: "v/live/test".into(),
            query: q.into(),
        }
    }

    fn session(at: Instant) -> Session {
        Session {
            last_used: at,
            client_id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            query: vec![],
        }
    }

    /// A session is admitted while used within the TTL, and ends after.
    #[test]
    fn hls_sessions_live_while_used() {
        let t0 = Instant::now();
        let mut s = HlsSessions::default();
        assert!(!s.admit(&sk("127.0.0.1", "?t=1"), t0));
        assert!(s.insert(sk("127.0.0.1", "?t=1"), session(t0)).is_none());
        let later = t0 + HLS_SESSION_TTL / 2;
        assert!(s.admit(&sk("127.0.0.1", "?t=1"), later));
        assert!(!s.admit(&sk("127.0.0.2", "?t=1"), later), "another client");
        assert!(!s.admit(&sk("127.0.0.1", "?t=2"), later), "another query");
        // Used at `later`, so alive until later + TTL.
        assert!(s.expire(t0 + HLS_SESSION_TTL).is_empty());
        assert_eq!(s.expire(later + HLS_SESSION_TTL).len(), 1);
        assert_eq!(s.len(), 0);
    }

    /// Past HLS_SESSIONS_MAX the least recently used session makes room.
    #[test]
    fn hls_sessions_are_bounded() {
        let t0 = Instant::now();
        let mut s = HlsSessions::default();
        for i in 0..HLS_SESSIONS_MAX {
            let at = t0 + Duration::from_millis(i as u64);
            assert!(s
                .insert(sk("127.0.0.1", &format!("?i={i}")), session(at))
                .is_none());
        }
        let (gone, _) = s
            .insert(
                sk("127.0.0.1", "?new"),
                session(t0 + Duration::from_secs(9)),
            )
            .expect("one session makes room");
        assert_eq!(gone.query, "?i=0");
        assert_eq!(s.len(), HLS_SESSIONS_MAX);
    }

    #[test]
    fn the_session_query_drops_ll_hls_directives() {
        let q: Vec<(String, String)> = [("token", "a b"), ("_HLS_msn", "3"), ("_HLS_part", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(proto::query::carry(&session_query(&q)), "?token=a%20b");
    }

    #[test]
    fn the_body_names_the_request() {
        let key: StreamKey = "__defaultVhost__/live/test".into();
        let query = vec![("token".to_string(), "x".to_string())];
        let ask = Ask {
            action: Action::Play,
            key: &key,
            protocol: Protocol::HttpFlv,
            peer: "127.0.0.3:5000".parse().unwrap(),
            query: &query,
            client_id: 42,
            tc_url: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&hook_body(Hook::Stop, &ask)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "action": "stop", "vhost": "__defaultVhost__", "app": "live",
                "stream": "test", "query": {"token": "x"}, "client_id": 42,
                "ip": "127.0.0.3", "protocol": "http_flv", "tc_url": null,
            })
        );
    }
}
