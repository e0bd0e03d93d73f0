//! The connections a shard has open: ids unique across shards, what each
//! is, its close signal and activity clock (for idle checks, shutdown and
//! the API's client list), and the process-wide `max_connections` slots.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{ConnCount, Refused, ShardMetrics};
use crate::stream::{Signal, StreamKey};

/// Connections open in the whole process (for `max_connections`).
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
/// Connections open per peer address, in the whole process (for
/// `max_connections_per_ip`; only kept while that limit is on). Taken at
/// accept and close only, never on the data path.
static OPEN_PER_IP: Mutex<Option<HashMap<IpAddr, usize>>> = Mutex::new(None);

/// A connection as its shard sees it.
pub struct ConnState {
    /// Remote address.
    pub peer: SocketAddr,
    /// When it was accepted (or handed to this shard).
    pub accepted: Instant,
    /// Accepted on `internal_port`, which serves only the API.
    pub internal: bool,
    /// What it turned out to be so far.
    pub what: RefCell<ConnWhat>,
    /// Raised to make the connection close.
    pub close: Rc<Signal>,
    /// Last time bytes moved either way (shared with a player's direct
    /// writes from the fan-out).
    pub last_active: Rc<Cell<Instant>>,
}

/// What a connection is, as far as its driver knows.
#[derive(Clone, Debug, Default)]
pub enum ConnWhat {
    /// Its first bytes have not arrived yet.
    #[default]
    Sniffing,
    /// RTMP, before publish or play.
    Rtmp,
    /// HTTP requests (API, HLS, pages).
    Http,
    /// The publisher of a stream.
    Publisher(StreamKey),
    /// A player of a stream, by protocol (`rtmp`, `http-flv`).
    Player(StreamKey, &'static str),
}

/// One open connection under `max_connections`, with its counters. It is
/// `Send`, travels with a handed-off publisher, and releases the slot when
/// dropped.
pub struct ConnSlot {
    /// When the connection was accepted.
    pub accepted: Instant,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// The peer's address, when it holds a `max_connections_per_ip` slot.
    per_ip: Option<IpAddr>,
}

impl ConnSlot {
    /// Reserves a slot for a connection from `ip` under `max` and
    /// `max_per_ip` (0 = unlimited); Err names the limit that was reached.
    pub fn reserve(max: usize, max_per_ip: usize, ip: IpAddr) -> Result<Self, Refused> {
        let prev = OPEN_CONNECTIONS.fetch_add(1, Ordering::SeqCst);
        if max != 0 && prev >= max {
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::MaxConnections);
        }
        let mut slot = Self {
            accepted: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            per_ip: None,
        };
        if max_per_ip != 0 {
            let ip = crate::access::canonical(ip);
            let mut map = OPEN_PER_IP.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.get_or_insert_with(HashMap::new).entry(ip).or_insert(0);
            if *n >= max_per_ip {
                // Dropping `slot` gives the process-wide slot back.
                return Err(Refused::MaxConnectionsPerIp);
            }
            *n += 1;
            slot.per_ip = Some(ip);
        }
        Ok(slot)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.per_ip {
            let mut map = OPEN_PER_IP.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(map) = map.as_mut() {
                if let Some(n) = map.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&ip);
                    }
                }
            }
        }
    }
}

/// One shard's open connections.
pub struct Conns {
    /// This shard's index, in the low bits of every id it gives out.
    shard: usize,
    /// Ids are unique across shards: `n * shards_max + shard`.
    shards_max: u64,
    next: Cell<u64>,
    map: RefCell<HashMap<u64, Rc<ConnState>>>,
    /// Connections that have ended, ever.
    closed: Cell<u64>,
}

impl Conns {
    /// The registry of shard `shard`, whose ids leave room for `shards_max`
    /// shards.
    pub fn new(shard: usize, shards_max: usize) -> Self {
        Self {
            shard,
            shards_max: shards_max as u64,
            next: Cell::new(1),
            map: RefCell::new(HashMap::new()),
            closed: Cell::new(0),
        }
    }

    /// A fresh id, unique across shards (`id % shards_max` is the shard).
    pub fn next_id(&self) -> u64 {
        let n = self.next.get();
        self.next.set(n + 1);
        n * self.shards_max + self.shard as u64
    }

    /// The open connection `id`, if any.
    pub fn get(&self, id: u64) -> Option<Rc<ConnState>> {
        self.map.borrow().get(&id).cloned()
    }

    /// Calls `f` for every open connection.
    pub fn for_each(&self, mut f: impl FnMut(u64, &ConnState)) {
        for (id, c) in self.map.borrow().iter() {
            f(*id, c);
        }
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Number of connections that have ended since the shard started.
    pub fn closed(&self) -> u64 {
        self.closed.get()
    }
}

/// Keeps a connection in its shard's registry while alive.
pub struct Registered {
    conns: Rc<Conns>,
    /// The client id (the API's), unique across shards.
    pub id: u64,
    /// What the shard knows of it.
    pub state: Rc<ConnState>,
    /// The connection in the shard's connection counts, by protocol.
    pub count: ConnCount,
}

impl Registered {
    /// Registers a connection from `peer`; `closing`: the shard is
    /// stopping, so it is told to close at once.
    pub fn new(
        conns: &Rc<Conns>,
        metrics: &Rc<ShardMetrics>,
        peer: SocketAddr,
        internal: bool,
        closing: bool,
    ) -> Self {
        let id = conns.next_id();
        let state = Rc::new(ConnState {
            peer,
            accepted: Instant::now(),
            internal,
            what: RefCell::new(ConnWhat::Sniffing),
            close: Rc::new(Signal::default()),
            last_active: Rc::new(Cell::new(Instant::now())),
        });
        conns.map.borrow_mut().insert(id, state.clone());
        if closing {
            state.close.raise();
        }
        Self {
            conns: conns.clone(),
            id,
            state,
            count: ConnCount::open(metrics.clone()),
        }
    }

    /// Records what the connection turned out to be.
    pub fn set_what(&self, what: ConnWhat) {
        *self.state.what.borrow_mut() = what;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.conns.map.borrow_mut().remove(&self.id);
        self.conns.closed.set(self.conns.closed.get() + 1);
    }
}

/// After many connections or streams end (a flood of idle or hostile
/// clients, a big event's players leaving, streams dropped after their
/// grace), the allocator keeps the memory they freed: glibc's malloc
/// returns a heap's pages to the kernel only from its top, so RSS stays at
/// its peak. `Trim` asks it to give back every free page (`malloc_trim`)
/// once [`TRIM_AFTER_ENDED`] have ended since the last trim, at most once
/// per [`TRIM_INTERVAL`]: a shard that sees little churn never trims, a
/// busy one at most every 5 s.
#[derive(Debug, Default)]
pub struct Trim {
    /// Connections and streams ended, ever, at the last trim.
    ended_at_last: u64,
    last: Option<Instant>,
    /// The last trim came in a burst: the next due tick trims what ended
    /// since, however little (the tail of the burst: a flood's last
    /// connections, streams dropped after their grace).
    in_burst: bool,
}

/// Connections and streams that must have ended since the last trim.
pub const TRIM_AFTER_ENDED: u64 = 256;
/// The least time between two trims of one shard.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(5);

impl Trim {
    /// Called from the shard's tick with the number of its connections and
    /// streams ended so far ([`Conns::closed`] and the stream table's
    /// removals): trims when due; true when it did.
    pub fn tick(&mut self, ended: u64, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= TRIM_INTERVAL);
        if !due {
            return false;
        }
        let since = ended - self.ended_at_last;
        let burst = since >= TRIM_AFTER_ENDED;
        let tail = self.in_burst && since > 0;
        self.in_burst = burst;
        if !burst && !tail {
            return false;
        }
        self.ended_at_last = ended;
        self.last = Some(now);
        release_free_memory();
        true
    }
}

/// Returns the allocator's free pages to the kernel (glibc: every arena).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's own free
    // lists; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;

    #[test]
    fn trims_after_many_closes_at_most_every_interval() {
        let mut t = Trim::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!t.tick(0, t0), "nothing ended");
        assert!(!t.tick(255, at(1)));
        assert!(t.tick(256, at(2)), "256 ended");
        // More within TRIM_INTERVAL wait for it.
        assert!(!t.tick(2000, at(3)));
        assert!(!t.tick(2000, at(6)));
        assert!(t.tick(2000, at(7)));
        // The tail of the burst, however small, is trimmed once...
        assert!(!t.tick(2010, at(11)));
        assert!(t.tick(2010, at(12)), "the tail of the burst");
        // ...and then fewer than TRIM_AFTER_ENDED never trims.
        for i in 0..100u64 {
            assert!(!t.tick(2010 + i * 2, at(20 + i * 6)));
        }
        // A burst with no tail: nothing more after it.
        assert!(t.tick(5000, at(1000)));
        assert!(!t.tick(5000, at(1010)));
        assert!(!t.tick(5001, at(1020)), "the burst is over");
    }
}
