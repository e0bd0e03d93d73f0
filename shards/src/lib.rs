//! The thread-per-core runtime under shardcast.
//!
//! One glommio executor per shard, optionally pinned to a core. Every shard
//! binds its own `SO_REUSEPORT` listener on the same address, so the kernel
//! spreads accepts over shards. Shards share no mutable state on the data
//! path: they talk only through typed messages on a bounded channel mesh
//! ([`ShardCtx::try_send`]), and a connection moves between shards as an
//! owning [`MovedConnection`].
//!
//! This crate knows nothing of media: the message type `M` and the state
//! carried by a moved connection are the caller's.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glommio::channels::channel_mesh::{MeshBuilder, Senders};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};

pub use glommio;

/// The owning shard of a key: a pure function of the key bytes and the shard
/// count, so every shard (and an edge in front of us) computes the same owner
/// without a registry. FNV-1a: stable across builds and platforms.
pub fn shard_for(key: &[u8], shards: usize) -> usize {
    assert!(shards > 0, "shard count must be positive");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards as u64) as usize
}

/// How the pool is built.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Number of shards (executors), at least 1.
    pub shards: usize,
    /// Pin shard k to the k-th online CPU.
    pub pin_cores: bool,
    /// Capacity, in messages, of each shard-to-shard channel. A full channel
    /// makes [`ShardCtx::try_send`] fail rather than wait, so a slow shard
    /// never stalls the sender.
    pub channel_capacity: usize,
    /// Thread name prefix.
    pub name: String,
}

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every shard to stop; shards observe it through [`stop_requested`]
/// (the session drivers poll it on their timers). Async-signal-safe.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// True once [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// What a shard knows about itself and how it reaches the others. Only the
/// shard that owns it touches it (it is `!Send` by construction of `Senders`).
pub struct ShardCtx<M: Send + 'static> {
    id: usize,
    count: usize,
    pinned_core: Option<usize>,
    senders: Senders<M>,
}

impl<M: Send + 'static> ShardCtx<M> {
    /// This shard's index, in `0..count()`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of shards in the pool.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The CPU this shard is pinned to, if pinned.
    pub fn pinned_core(&self) -> Option<usize> {
        self.pinned_core
    }

    /// The owner of `key` (see [`shard_for`]).
    pub fn owner_of(&self, key: &[u8]) -> usize {
        shard_for(key, self.count)
    }

    /// Sends `msg` to shard `to` without waiting. Fails when the channel is
    /// full, closed, or `to` is this shard (a shard never messages itself: it
    /// calls its own code directly). The message is dropped on failure.
    pub fn try_send(&self, to: usize, msg: M) -> Result<(), SendError> {
        if to == self.id || to >= self.count {
            return Err(SendError::NoSuchPeer { to });
        }
        self.senders
            .try_send_to(to, msg)
            .map_err(SendError::from_glommio)
    }

    /// Sends `msg` to shard `to`, waiting while the channel is full. For
    /// control messages that must not be lost (handoffs, subscriptions);
    /// never for media fan-out.
    pub async fn send(&self, to: usize, msg: M) -> Result<(), SendError> {
        if to == self.id || to >= self.count {
            return Err(SendError::NoSuchPeer { to });
        }
        self.senders
            .send_to(to, msg)
            .await
            .map_err(SendError::from_glommio)
    }
}

/// Why a cross-shard message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The channel to that shard holds `channel_capacity` messages already.
    Full,
    /// The receiving shard has stopped.
    Closed,
    /// `to` is this shard or out of range.
    NoSuchPeer { to: usize },
}

impl SendError {
    fn from_glommio<T>(e: glommio::GlommioError<T>) -> Self {
        match e {
            glommio::GlommioError::WouldBlock(_) => SendError::Full,
            _ => SendError::Closed,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full => f.write_str("cross-shard channel full (channel_capacity)"),
            SendError::Closed => f.write_str("receiving shard stopped"),
            SendError::NoSuchPeer { to } => write!(f, "no peer shard {to}"),
        }
    }
}

/// A connection travelling to another shard: the socket (as an owned fd, so
/// dropping the value closes it) and whatever state the caller carries with
/// it (bytes already read, the sans-IO session).
pub struct MovedConnection<S> {
    fd: OwnedFd,
    /// The caller's state travelling with the socket.
    pub state: S,
}

impl<S> MovedConnection<S> {
    /// Detaches `stream` from this shard. The fd is duplicated before the
    /// original stream is dropped, so the socket stays open in transit.
    pub fn detach(stream: TcpStream, state: S) -> io::Result<Self> {
        // SAFETY: dup of a valid open fd owned by `stream`; the new fd is
        // owned by the OwnedFd from here on.
        let raw = unsafe { libc::dup(stream.as_raw_fd()) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(stream);
        // SAFETY: `raw` is a fresh fd from dup above, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd, state })
    }

    /// Attaches the socket to the executor this is called on.
    pub fn attach(self) -> (TcpStream, S) {
        use std::os::fd::IntoRawFd;
        let raw = self.fd.into_raw_fd();
        // SAFETY: `raw` came out of an OwnedFd, so we own it exclusively.
        let stream = unsafe { TcpStream::from_raw_fd(raw) };
        (stream, self.state)
    }
}

/// Online CPU ids in ascending order, so "shard k on the k-th online CPU"
/// means the same CPU on every start. glommio's `CpuSet` is a `HashSet`,
/// whose iteration order changes from run to run.
fn online_cpus_sorted() -> io::Result<Vec<usize>> {
    let mut cpus: Vec<usize> = glommio::CpuSet::online()
        .map_err(|e| io::Error::other(format!("listing online CPUs: {e}")))?
        .into_iter()
        .map(|l| l.cpu)
        .collect();
    cpus.sort_unstable();
    Ok(cpus)
}

/// Runs the pool: starts `config.shards` executors, joins them into a channel
/// mesh, and runs `shard_main(ctx)` on each. Blocks until every shard's
/// future has finished. Returns the first executor error.
pub fn run<M, F, Fut>(config: &PoolConfig, shard_main: F) -> io::Result<()>
where
    M: Send + 'static,
    F: Fn(ShardCtx<M>) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    assert!(config.shards > 0, "PoolConfig::shards must be at least 1");
    let mesh: MeshBuilder<M, _> = MeshBuilder::full(config.shards, config.channel_capacity);
    let cpus: Vec<usize> = if config.pin_cores {
        online_cpus_sorted()?
    } else {
        Vec::new()
    };
    let mut handles = Vec::with_capacity(config.shards);
    for id in 0..config.shards {
        let pinned_core = cpus.get(id % cpus.len().max(1)).copied();
        let placement = match pinned_core {
            Some(cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let mesh = mesh.clone();
        let shard_main = shard_main.clone();
        let count = config.shards;
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{id}", config.name))
            // Short preemption slice: a shard checks for pending I/O often,
            // which bounds the latency one busy task adds to the others.
            .preempt_timer(Duration::from_millis(10))
            .spawn(move || async move {
                let (senders, receivers) = match join_mesh(mesh).await {
                    Ok(pair) => pair,
                    Err(e) => {
                        log::error!("shard {id}: could not join the channel mesh: {e}");
                        request_stop();
                        return;
                    }
                };
                // The mesh orders peers by executor id; executors are created
                // in shard order, so this is our id. Checked, not assumed.
                if senders.peer_id() != id {
                    log::error!(
                        "shard {id}: mesh index {} differs from shard id",
                        senders.peer_id()
                    );
                    request_stop();
                    return;
                }
                let ctx = ShardCtx {
                    id,
                    count,
                    pinned_core,
                    senders,
                };
                INBOX.with(|slot| slot.set(Some(Box::new(receivers) as Box<dyn std::any::Any>)));
                shard_main(ctx).await;
            })
            .map_err(|e| io::Error::other(format!("starting shard {id}: {e}")))?;
        handles.push(handle);
    }
    let mut first_err = None;
    for (id, h) in handles.into_iter().enumerate() {
        if let Err(e) = h.join() {
            first_err.get_or_insert(io::Error::other(format!("shard {id}: {e}")));
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// How long shards may take to connect their channels at start.
pub const MESH_JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// While joining, each executor wakes this often (see [`join_mesh`]).
const MESH_JOIN_POLL: Duration = Duration::from_millis(1);

/// Joins the channel mesh, bounded by [`MESH_JOIN_TIMEOUT`].
///
/// glommio's shared-channel connection registers a waker that the peer's
/// connect does not reliably wake when this executor is already parked in
/// `io_uring_enter` (seen: 1 start in 10 hung forever with ten servers
/// starting at once). A ticking task keeps the executor's loop turning, so
/// the connection is noticed within [`MESH_JOIN_POLL`].
async fn join_mesh<M: Send + 'static>(
    mesh: MeshBuilder<M, glommio::channels::channel_mesh::Full>,
) -> io::Result<(Senders<M>, glommio::channels::channel_mesh::Receivers<M>)> {
    let joined = Rc::new(Cell::new(false));
    let ticker = {
        let joined = joined.clone();
        glommio::spawn_local(async move {
            while !joined.get() {
                glommio::timer::sleep(MESH_JOIN_POLL).await;
            }
        })
    };
    let result = glommio::timer::timeout(MESH_JOIN_TIMEOUT, async {
        mesh.join()
            .await
            .map_err(|e| glommio::GlommioError::IoError(io::Error::other(e.to_string())))
    })
    .await;
    joined.set(true);
    ticker.await;
    result.map_err(|e| io::Error::other(format!("within {MESH_JOIN_TIMEOUT:?}: {e}")))
}

thread_local! {
    static INBOX: Cell<Option<Box<dyn std::any::Any>>> = const { Cell::new(None) };
}

/// Starts delivering this shard's incoming messages to `handler(from, msg)`,
/// one task per peer channel. Call once per shard, from its `shard_main`.
/// The handler runs on this shard and must not block.
pub fn serve_inbox<M, H>(handler: H)
where
    M: Send + 'static,
    H: Fn(usize, M) + 'static,
{
    let receivers = INBOX.with(|slot| slot.take()).and_then(|b| {
        b.downcast::<glommio::channels::channel_mesh::Receivers<M>>()
            .ok()
    });
    let Some(mut receivers) = receivers else {
        log::error!("serve_inbox called twice or with the wrong message type");
        return;
    };
    let handler = Rc::new(handler);
    for (from, rx) in receivers.streams() {
        let handler = handler.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                handler(from, msg);
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_for_is_stable_and_in_range() {
        for n in 1..8 {
            for key in ["a/b/c", "__defaultVhost__/live/test", ""] {
                let s = shard_for(key.as_bytes(), n);
                assert!(s < n);
                assert_eq!(s, shard_for(key.as_bytes(), n));
            }
        }
        // FNV-1a of the empty key is the offset basis.
        assert_eq!(shard_for(b"", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as usize);
    }

    #[test]
    fn online_cpus_are_listed_in_ascending_order() {
        let cpus = online_cpus_sorted().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]), "{cpus:?}");
    }

    #[test]
    fn messages_cross_shards() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        static GOT: AtomicUsize = AtomicUsize::new(0);
        let cfg = PoolConfig {
            shards: 2,
            pin_cores: false,
            channel_capacity: 4,
            name: "t".into(),
        };
        let done = Arc::new(AtomicUsize::new(0));
        run::<u32, _, _>(&cfg, move |ctx| {
            let done = done.clone();
            async move {
                serve_inbox(move |from, msg: u32| {
                    assert_ne!(from, usize::MAX);
                    GOT.fetch_add(msg as usize, Ordering::SeqCst);
                });
                assert!(ctx.try_send(ctx.id(), 1).is_err(), "no self-sends");
                ctx.send(1 - ctx.id(), 10 + ctx.id() as u32).await.ok();
                done.fetch_add(1, Ordering::SeqCst);
                while GOT.load(Ordering::SeqCst) < 21 {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .unwrap();
        assert_eq!(GOT.load(Ordering::SeqCst), 21);
    }
}
