//! The origin cluster's registry on Redis (`[cluster]`): which node has
//! which live stream. Redis is off the data path: one registry thread per
//! process talks to it (the `redis` crate's blocking client, with
//! timeouts), one more thread listens to its events, and the shards talk
//! to them over bounded channels, never waiting on them. A full channel or
//! a Redis that is down or slow costs a lookup (the caller falls back to
//! its static list) or an announcement (made again at the next refresh),
//! never a shard.
//!
//! - A node with a live publisher announces `<prefix>:stream:<key>` →
//!   `{"node","addr","since","epoch"}` with `SET NX PX ttl`, refreshes it
//!   every `refresh_s` only while the value is still its own (a script
//!   compares and extends), and deletes it at unpublish the same way. A
//!   node that lost the key (another took it) stops refreshing it and
//!   logs so.
//! - A node that finds the key held by another checks the holder: when
//!   nothing answers at the holder's address (it died: its publisher
//!   moved here), it takes the key over at once, replacing exactly the
//!   stale value; a live holder keeps it, and the node tries again at each
//!   refresh and when the holder withdraws.
//! - Each change is published on `<prefix>:events` (`announce` with the
//!   value, `withdraw`). Every node subscribes: an announcement by another
//!   node goes to each shard ([`Moved`]), whose pull of that stream, if it
//!   pulls from elsewhere, follows at once.
//! - A lookup is a GET. A player on a node without the stream makes that
//!   node pull it from the node the registry names (`server::pull`).
//! - The outage is logged once (and its end), shown in the API, and the
//!   threads reconnect with a backoff up to [`RECONNECT_BACKOFF_MAX`];
//!   what a node owns is announced again then.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::config::ClusterConfig;

/// Commands the shards may have queued for the registry thread; past it a
/// command is refused at once (a lookup then falls back).
pub const REGISTRY_QUEUE_MAX: usize = 4096;
/// Connect, read and write timeout of every Redis call.
pub const REDIS_IO_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a shard waits for a lookup's answer before it falls back.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(300);
/// First and longest wait between attempts to reach Redis again.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a node waits for a TCP connect to the holder of a key it
/// wants before it judges the holder dead and takes the key over.
pub const HOLDER_CHECK_TIMEOUT: Duration = Duration::from_millis(250);
/// Announcements a shard may have waiting; past it one is dropped (that
/// shard's pull finds the stream by a lookup when its origin fails).
pub const SHARD_EVENTS_MAX: usize = 256;
/// The events subscription pings Redis after this long without a message,
/// and connects again when the ping fails.
pub const EVENTS_PING_INTERVAL: Duration = Duration::from_secs(5);

/// What a stream's key holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Announcement {
    /// The node's id (`cluster.node_id`).
    pub node: String,
    /// Where other nodes reach it (`cluster.advertise`).
    pub addr: String,
    /// When its publish started (Unix ms).
    pub since: u64,
    /// Unique per announcement (Unix ms when made): tells two publishes
    /// of one node apart.
    pub epoch: u64,
}

/// A lookup's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Announced by this node.
    Found { node: String, addr: SocketAddr },
    /// Nobody announces it.
    Absent,
    /// No answer (Redis down or slow, the queue full): use the static list.
    Unavailable,
}

/// Another node announced a stream: a pull of it elsewhere follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    /// `vhost/app/stream`.
    pub key: String,
    pub node: String,
    pub addr: SocketAddr,
}

enum Cmd {
    Announce {
        key: String,
        since: u64,
    },
    Withdraw {
        key: String,
    },
    /// Another node withdrew `key`: take it if we publish it.
    Vacant {
        key: String,
    },
    Lookup {
        key: String,
        reply: flume::Sender<Lookup>,
    },
}

/// The registry's state, for the API.
#[derive(Debug, Default)]
pub struct RegistryState {
    up: AtomicBool,
    announced: AtomicU64,
    last_error: Mutex<String>,
}

/// The registry as the shards see it: cheap to clone, never blocking.
#[derive(Clone)]
pub struct Registry {
    tx: Sender<Cmd>,
    state: Arc<RegistryState>,
    /// This node's id and address.
    pub node_id: String,
    pub advertise: String,
    redis_url: String,
    /// Per shard: announcements by other nodes.
    moves: Arc<Vec<flume::Receiver<Moved>>>,
}

impl Registry {
    /// Starts the registry's threads for `shards` shards, or None when
    /// `cluster.redis` is empty. `node_id` and `advertise` are resolved
    /// (defaults filled in) by the caller.
    pub fn start(
        cfg: &ClusterConfig,
        node_id: String,
        advertise: String,
        shards: usize,
    ) -> Option<Self> {
        if cfg.redis.is_empty() {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(REGISTRY_QUEUE_MAX);
        let state = Arc::new(RegistryState::default());
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards.max(1))
            .map(|_| flume::bounded(SHARD_EVENTS_MAX))
            .unzip();
        let registry = Registry {
            tx: tx.clone(),
            state: state.clone(),
            node_id: node_id.clone(),
            advertise: advertise.clone(),
            redis_url: cfg.redis.clone(),
            moves: Arc::new(receivers),
        };
        let events = Events {
            url: cfg.redis.clone(),
            channel: format!("{}:events", cfg.key_prefix),
            node_id: node_id.clone(),
            shards: senders,
            registry: tx,
        };
        std::thread::Builder::new()
            .name("registry-events".into())
            .spawn(move || events.run())
            .expect("spawning the registry events thread");
        let worker = Worker {
            url: cfg.redis.clone(),
            prefix: cfg.key_prefix.clone(),
            ttl: Duration::from_secs(cfg.ttl_s),
            refresh: Duration::from_secs(cfg.refresh_s),
            node_id,
            advertise,
            state,
            conn: None,
            backoff: RECONNECT_BACKOFF_MIN,
            next_connect: Instant::now(),
            down_logged: false,
            owned: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("registry".into())
            .spawn(move || worker.run(rx))
            .expect("spawning the registry thread");
        log::info!(
            "cluster: registry {} node={} advertise={}",
            cfg.redis,
            registry.node_id,
            registry.advertise
        );
        Some(registry)
    }

    fn send(&self, cmd: Cmd) -> bool {
        match self.tx.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!("cluster: registry queue full ({REGISTRY_QUEUE_MAX}): command dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// A publisher of `key` is live here (since `since`, Unix ms).
    pub fn announce(&self, key: &str, since: u64) {
        self.send(Cmd::Announce {
            key: key.to_string(),
            since,
        });
    }

    /// Announcements of streams by other nodes, for shard `shard`.
    pub fn moves(&self, shard: usize) -> Option<flume::Receiver<Moved>> {
        self.moves.get(shard).cloned()
    }

    /// The publisher of `key` left.
    pub fn withdraw(&self, key: &str) {
        self.send(Cmd::Withdraw {
            key: key.to_string(),
        });
    }

    /// Who has `key`; answers within [`LOOKUP_TIMEOUT`] (Unavailable past
    /// it). The wait is async: the shard goes on meanwhile.
    pub async fn lookup(&self, key: &str) -> Lookup {
        let (reply, answer) = flume::bounded(1);
        if !self.send(Cmd::Lookup {
            key: key.to_string(),
            reply,
        }) {
            return Lookup::Unavailable;
        }
        futures_lite::future::or(
            async { answer.recv_async().await.unwrap_or(Lookup::Unavailable) },
            async {
                glommio::timer::sleep(LOOKUP_TIMEOUT).await;
                Lookup::Unavailable
            },
        )
        .await
    }

    /// The registry's state for the API.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "redis": self.redis_url,
            "up": self.state.up.load(Ordering::Relaxed),
            "announced": self.state.announced.load(Ordering::Relaxed),
            "last_error": self.state.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
        })
    }
}

/// One stream this node has a publisher of.
struct Owned {
    value: String,
    /// The key is ours in Redis (else: retry SET NX at each refresh).
    held: bool,
}

/// The registry thread.
struct Worker {
    url: String,
    prefix: String,
    ttl: Duration,
    refresh: Duration,
    node_id: String,
    advertise: String,
    state: Arc<RegistryState>,
    conn: Option<redis::Connection>,
    backoff: Duration,
    next_connect: Instant,
    /// The current outage was logged.
    down_logged: bool,
    owned: HashMap<String, Owned>,
}

/// Extends the key's TTL if it still holds our value.
const REFRESH_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
/// Replaces the key's value if it still holds the stale one.
const TAKEOVER_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) else return false end";
/// Deletes the key if it still holds our value.
const DELETE_SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then \
     return redis.call('del', KEYS[1]) else return 0 end";

impl Worker {
    fn key(&self, stream: &str) -> String {
        format!("{}:stream:{stream}", self.prefix)
    }

    fn run(mut self, rx: Receiver<Cmd>) {
        // Connected from the start: the API shows whether Redis is there.
        self.conn();
        let mut next_refresh = Instant::now() + self.refresh;
        loop {
            let wait = next_refresh.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(cmd) => self.command(cmd),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.refresh_all();
                    next_refresh = Instant::now() + self.refresh;
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// The connection, made again (at most once per backoff) if needed.
    fn conn(&mut self) -> Option<&mut redis::Connection> {
        if self.conn.is_none() && Instant::now() >= self.next_connect {
            match connect(&self.url) {
                Ok(c) => {
                    self.conn = Some(c);
                    self.backoff = RECONNECT_BACKOFF_MIN;
                    self.state.up.store(true, Ordering::Relaxed);
                    if std::mem::take(&mut self.down_logged) {
                        log::info!(
                            "cluster: registry {} reachable again: announcing anew",
                            self.url
                        );
                    } else {
                        log::info!("cluster: registry {} reachable", self.url);
                    }
                    // Everything owned must be announced again.
                    for o in self.owned.values_mut() {
                        o.held = false;
                    }
                    self.state.announced.store(0, Ordering::Relaxed);
                }
                Err(e) => self.failed(&e),
            }
        }
        self.conn.as_mut()
    }

    /// A Redis call failed: drop the connection, log the outage once.
    fn failed(&mut self, e: &redis::RedisError) {
        self.conn = None;
        self.next_connect = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(RECONNECT_BACKOFF_MAX);
        if let Ok(mut last) = self.state.last_error.lock() {
            *last = e.to_string();
        }
        self.state.up.store(false, Ordering::Relaxed);
        if !self.down_logged {
            self.down_logged = true;
            log::warn!(
                "cluster: registry {} unreachable ({e}): lookups fall back to static lists; retrying, at most {} s apart",
                self.url,
                RECONNECT_BACKOFF_MAX.as_secs()
            );
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Announce { key, since } => {
                let value = serde_json::to_string(&Announcement {
                    node: self.node_id.clone(),
                    addr: self.advertise.clone(),
                    since,
                    epoch: crate::stream::unix_ms(),
                })
                .unwrap_or_default();
                self.owned.insert(key.clone(), Owned { value, held: false });
                self.take(&key);
            }
            Cmd::Withdraw { key } => {
                let Some(o) = self.owned.remove(&key) else {
                    return;
                };
                if o.held {
                    let (rkey, channel) = (self.key(&key), format!("{}:events", self.prefix));
                    let event =
                        serde_json::json!({"event": "withdraw", "key": key, "node": self.node_id})
                            .to_string();
                    if let Some(c) = self.conn() {
                        let r: redis::RedisResult<i64> = redis::Script::new(DELETE_SCRIPT)
                            .key(&rkey)
                            .arg(&o.value)
                            .invoke(c)
                            .and_then(|n| {
                                redis::cmd("PUBLISH")
                                    .arg(&channel)
                                    .arg(&event)
                                    .query::<i64>(c)
                                    .map(|_| n)
                            });
                        if let Err(e) = r {
                            self.failed(&e);
                        }
                    }
                    self.state.announced.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Cmd::Vacant { key } => self.take(&key),
            Cmd::Lookup { key, reply } => {
                let rkey = self.key(&key);
                let answer = match self.conn() {
                    None => Lookup::Unavailable,
                    Some(c) => match redis::cmd("GET").arg(&rkey).query::<Option<String>>(c) {
                        Ok(None) => Lookup::Absent,
                        Ok(Some(v)) => match serde_json::from_str::<Announcement>(&v) {
                            Ok(a) => match a.addr.parse() {
                                Ok(addr) => Lookup::Found { node: a.node, addr },
                                Err(_) => {
                                    log::warn!("cluster: {rkey} names {:?}, not host:port", a.addr);
                                    Lookup::Absent
                                }
                            },
                            Err(e) => {
                                log::warn!("cluster: {rkey} holds {v:?}, not an announcement: {e}");
                                Lookup::Absent
                            }
                        },
                        Err(e) => {
                            self.failed(&e);
                            Lookup::Unavailable
                        }
                    },
                };
                let _ = reply.try_send(answer);
            }
        }
    }

    /// Takes the key of an owned stream not yet held ([`try_take`]) and
    /// publishes the change.
    fn take(&mut self, key: &str) {
        let Some(value) = self
            .owned
            .get(key)
            .filter(|o| !o.held)
            .map(|o| o.value.clone())
        else {
            return;
        };
        let (rkey, channel, ttl) = (
            self.key(key),
            format!("{}:events", self.prefix),
            self.ttl.as_millis() as u64,
        );
        let event = format!(
            r#"{{"event":"announce","key":{},"value":{value}}}"#,
            serde_json::Value::from(key)
        );
        let node_id = self.node_id.clone();
        let Some(c) = self.conn() else { return };
        let r = try_take(c, &rkey, &value, ttl, &node_id).and_then(|took| {
            if let Took::Set(_) = took {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&event)
                    .query::<i64>(c)?;
            }
            Ok(took)
        });
        match r {
            Ok(Took::Set(how)) => {
                if let Some(o) = self.owned.get_mut(key) {
                    o.held = true;
                }
                self.state.announced.fetch_add(1, Ordering::Relaxed);
                log::info!("cluster: announced key={key} ({how})");
            }
            Ok(Took::Alive(h)) => log::info!(
                "cluster: key={key} is announced by {} at {}, which answers; taking it when it withdraws or lapses",
                h.node,
                h.addr
            ),
            Ok(Took::Changed) => {}
            Err(e) => self.failed(&e),
        }
    }

    /// Extends every held key (while it is still ours) and tries again to
    /// take the others.
    fn refresh_all(&mut self) {
        let keys: Vec<String> = self.owned.keys().cloned().collect();
        for key in keys {
            let held = self.owned.get(&key).is_some_and(|o| o.held);
            if !held {
                self.take(&key);
                continue;
            }
            let value = self.owned[&key].value.clone();
            let (rkey, ttl) = (self.key(&key), self.ttl.as_millis() as u64);
            let Some(c) = self.conn() else { return };
            match redis::Script::new(REFRESH_SCRIPT)
                .key(&rkey)
                .arg(&value)
                .arg(ttl)
                .invoke::<i64>(c)
            {
                Ok(1) => {}
                Ok(_) => {
                    log::warn!("cluster: key={key} is no longer ours (it lapsed or another node took it): not refreshing it");
                    if let Some(o) = self.owned.get_mut(&key) {
                        o.held = false;
                    }
                    self.state.announced.fetch_sub(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
    }
}

/// What an attempt to take a stream's key found.
enum Took {
    /// The key is ours now (how: new, or taken over and why).
    Set(String),
    /// Another node holds it and answers at its address.
    Alive(Announcement),
    /// It changed between two calls: try again at the next refresh.
    Changed,
}

/// Takes `rkey` with `value`: SET NX; else, when the value found is this
/// node's (from before an outage), not an announcement, or names a node
/// that does not answer ([`holder_gone`]), replaces exactly that value.
fn try_take(
    c: &mut redis::Connection,
    rkey: &str,
    value: &str,
    ttl_ms: u64,
    node_id: &str,
) -> redis::RedisResult<Took> {
    let set: Option<String> = redis::cmd("SET")
        .arg(rkey)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query(c)?;
    if set.is_some() {
        return Ok(Took::Set("new".into()));
    }
    let Some(stale) = redis::cmd("GET").arg(rkey).query::<Option<String>>(c)? else {
        return Ok(Took::Changed);
    };
    let why = match serde_json::from_str::<Announcement>(&stale) {
        Ok(h) if h.node == node_id => "this node's, from before an outage".to_string(),
        Ok(h) => match holder_gone(&h.addr) {
            None => return Ok(Took::Alive(h)),
            Some(e) => format!("taken over: {} at {} does not answer: {e}", h.node, h.addr),
        },
        Err(e) => format!("taken over: it held {stale:?}, not an announcement ({e})"),
    };
    let done: Option<String> = redis::Script::new(TAKEOVER_SCRIPT)
        .key(rkey)
        .arg(&stale)
        .arg(value)
        .arg(ttl_ms)
        .invoke(c)?;
    Ok(match done {
        Some(_) => Took::Set(why),
        None => Took::Changed,
    })
}

/// Why the node at `addr` is gone (nothing accepts a TCP connection there
/// within [`HOLDER_CHECK_TIMEOUT`]); None while it answers.
fn holder_gone(addr: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    let target = match addr.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(t)) => t,
        Ok(None) => return Some(format!("{addr:?} resolves to no address")),
        Err(e) => return Some(format!("{addr:?} does not resolve: {e}")),
    };
    match std::net::TcpStream::connect_timeout(&target, HOLDER_CHECK_TIMEOUT) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// The thread that listens to `<prefix>:events`.
struct Events {
    url: String,
    channel: String,
    node_id: String,
    /// Per shard.
    shards: Vec<flume::Sender<Moved>>,
    /// The registry thread's queue.
    registry: Sender<Cmd>,
}

impl Events {
    fn run(self) {
        let mut backoff = RECONNECT_BACKOFF_MIN;
        let mut down_logged = false;
        loop {
            let connected = Instant::now();
            let e = match self.listen(&mut down_logged) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if connected.elapsed() > RECONNECT_BACKOFF_MAX {
                backoff = RECONNECT_BACKOFF_MIN;
            }
            if !std::mem::replace(&mut down_logged, true) {
                log::warn!(
                    "cluster: events of {} not received ({e}): pulls find moved streams by lookups until they are",
                    self.url
                );
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    }

    /// Subscribes and hands out events until the connection fails.
    fn listen(&self, down_logged: &mut bool) -> redis::RedisResult<std::convert::Infallible> {
        let mut c = connect(&self.url)?;
        let mut sub = c.as_pubsub();
        sub.subscribe(&self.channel)?;
        sub.set_read_timeout(Some(EVENTS_PING_INTERVAL))?;
        if std::mem::take(down_logged) {
            log::info!("cluster: events of {} received again", self.url);
        }
        loop {
            match sub.get_message() {
                Ok(msg) => {
                    if let Ok(payload) = msg.get_payload::<String>() {
                        self.event(&payload);
                    }
                }
                Err(e) if e.is_timeout() => {
                    sub.ping::<String>()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One event: another node's announcement goes to every shard, its
    /// withdrawal to the registry thread.
    fn event(&self, payload: &str) {
        #[derive(Deserialize)]
        struct Event {
            event: String,
            key: String,
            #[serde(default)]
            node: String,
            value: Option<Announcement>,
        }
        let ev = match serde_json::from_str::<Event>(payload) {
            Ok(ev) => ev,
            Err(e) => {
                log::warn!(
                    "cluster: {} carried {payload:?}, not an event: {e}",
                    self.channel
                );
                return;
            }
        };
        match (ev.event.as_str(), ev.value) {
            ("announce", Some(a)) if a.node != self.node_id => {
                let Ok(addr) = a.addr.parse() else {
                    log::warn!("cluster: {} announced {:?}, not host:port", a.node, a.addr);
                    return;
                };
                let moved = Moved {
                    key: ev.key,
                    node: a.node,
                    addr,
                };
                for (i, shard) in self.shards.iter().enumerate() {
                    if shard.try_send(moved.clone()).is_err() {
                        log::warn!(
                            "cluster: shard {i} has {SHARD_EVENTS_MAX} announcements waiting: {} dropped",
                            moved.key
                        );
                    }
                }
            }
            ("withdraw", _) if ev.node != self.node_id => {
                let _ = self.registry.try_send(Cmd::Vacant { key: ev.key });
            }
            _ => {}
        }
    }
}

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let c = client.get_connection_with_timeout(REDIS_IO_TIMEOUT)?;
    c.set_read_timeout(Some(REDIS_IO_TIMEOUT))?;
    c.set_write_timeout(Some(REDIS_IO_TIMEOUT))?;
    Ok(c)
}
