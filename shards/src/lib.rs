//! The thread-per-core runtime under shardcast.
//!
//! One glommio executor per shard, optionally pinned to a core. Every shard
//! binds its own `SO_REUSEPORT` listener on the same address, so the kernel
//! spreads accepts over shards. Shards share no mutable state on the data
//! path: they talk only through typed messages, and a connection moves
//! between shards as an owning [`MovedConnection`].
//!
//! Every ordered pair of shards has two lanes (see [`Lane`]): a media lane
//! ([`ShardCtx::try_send_media`]: bounded, never waits, a full channel is an
//! error the sender repairs) and an ordered control lane
//! ([`ShardCtx::post_control`]: posted from synchronous code, delivered in
//! posting order per destination, bounded by
//! [`PoolConfig::control_backlog_max`]). Each lane is its own glommio
//! channel mesh, so a full media channel never holds up a control message.
//!
//! This crate knows nothing of media: the message type `M` and the state
//! carried by a moved connection are the caller's.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::channels::shared_channel::ConnectedReceiver;
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement, ResourceType};

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
    /// Capacity, in messages, of each shard-to-shard media channel (at least
    /// 1). A full channel makes [`ShardCtx::try_send_media`] fail rather than
    /// wait, so a slow shard never stalls the sender.
    pub media_capacity: usize,
    /// Capacity, in messages, of each shard-to-shard control channel (at
    /// least 1). What does not fit waits in the sender's outbox for that
    /// peer (see [`ShardCtx::post_control`]).
    pub control_capacity: usize,
    /// Messages the control outbox of one destination may hold beyond its
    /// channel; posting more is [`SendError::ControlBacklog`]. 0: no outbox,
    /// a full control channel is that error at once.
    pub control_backlog_max: usize,
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

/// Which lane a message between two shards travelled on.
///
/// Every ordered pair of shards has two channels. The **media lane** carries
/// high-volume messages that may be lost to a full channel: the caller
/// notices ([`SendError::Full`]) and repairs (e.g. resynchronises a
/// replica). The **control lane** carries the messages that must arrive, in
/// the order they were posted: however full the media lane is, it never
/// delays them, and the receiver takes a pending control message before the
/// next media message (see [`serve_inbox`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Ordered, not lost while the destination runs; bounded by
    /// [`PoolConfig::control_backlog_max`].
    Control,
    /// Non-waiting: a full channel is an error to the sender.
    Media,
}

/// What a shard knows about itself and how it reaches the others. Only the
/// shard that owns it touches it (it is `!Send` by construction of `Senders`).
pub struct ShardCtx<M: Send + 'static> {
    id: usize,
    count: usize,
    pinned_core: Option<usize>,
    media: Senders<M>,
    control: Rc<ControlLane<M>>,
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

    fn check_peer(&self, to: usize) -> Result<(), SendError> {
        if to == self.id || to >= self.count {
            return Err(SendError::NoSuchPeer { to });
        }
        Ok(())
    }

    /// Sends `msg` to shard `to` on the media lane, without waiting. Fails
    /// when that channel is full ([`SendError::Full`]), closed, or `to` is
    /// this shard (a shard never messages itself: it calls its own code
    /// directly). The message is dropped on failure; the caller repairs.
    pub fn try_send_media(&self, to: usize, msg: M) -> Result<(), SendError> {
        self.check_peer(to)?;
        self.media
            .try_send_to(to, msg)
            .map_err(SendError::from_glommio)
    }

    /// Posts `msg` to shard `to` on the control lane, from synchronous code.
    ///
    /// Messages posted to one destination are delivered in the order they
    /// were posted. When the control channel has room and nothing is
    /// waiting for it, the message goes into the channel at once; otherwise
    /// it joins the destination's FIFO outbox, which one task per
    /// destination (started on demand, ended when the outbox is empty)
    /// moves into the channel, waiting for room. A message is never
    /// dropped while the destination runs; if the destination stops with
    /// messages waiting, they are logged as undelivered.
    ///
    /// Fails, dropping `msg`, when the outbox already holds
    /// [`PoolConfig::control_backlog_max`] messages
    /// ([`SendError::ControlBacklog`]), when the destination has stopped
    /// ([`SendError::Closed`]), or when `to` is this shard or out of range.
    pub fn post_control(&self, to: usize, msg: M) -> Result<(), SendError> {
        self.check_peer(to)?;
        self.control.post(to, msg)
    }
}

/// How often a control-lane delivery that waits for room says so.
pub const CONTROL_STALL_WARN: Duration = Duration::from_secs(1);

/// The sending side of the control lane: the control mesh plus one FIFO
/// outbox per destination.
///
/// Order is kept by one rule: a message goes straight into the channel only
/// if nothing is waiting for that destination (`waiting == 0`: the outbox is
/// empty and no drain task holds a message in flight); otherwise it is
/// queued behind them. The drain task pops one message at a time and awaits
/// its send before taking the next, so the channel sees the messages in
/// posting order. The channel itself is FIFO and the receiver reads it from
/// one task.
struct ControlLane<M: Send + 'static> {
    senders: Senders<M>,
    backlog_max: usize,
    outboxes: Vec<Outbox<M>>,
}

struct Outbox<M> {
    queue: RefCell<VecDeque<M>>,
    /// Messages accepted and not yet in the channel: the queue plus the one
    /// a drain task may hold in flight. A drain task runs while this is
    /// not 0; `backlog_max` bounds it.
    waiting: Cell<usize>,
    /// The destination stopped: posting fails at once.
    closed: Cell<bool>,
}

impl<M: Send + 'static> ControlLane<M> {
    fn new(senders: Senders<M>, peers: usize, backlog_max: usize) -> Self {
        let outboxes = (0..peers)
            .map(|_| Outbox {
                queue: RefCell::new(VecDeque::new()),
                waiting: Cell::new(0),
                closed: Cell::new(false),
            })
            .collect();
        Self {
            senders,
            backlog_max,
            outboxes,
        }
    }

    fn post(self: &Rc<Self>, to: usize, msg: M) -> Result<(), SendError> {
        let Some(out) = self.outboxes.get(to) else {
            return Err(SendError::NoSuchPeer { to });
        };
        if out.closed.get() {
            return Err(SendError::Closed);
        }
        let waiting = out.waiting.get();
        let msg = if waiting > 0 {
            msg
        } else {
            match self.senders.try_send_to(to, msg) {
                Ok(()) => return Ok(()),
                Err(glommio::GlommioError::WouldBlock(ResourceType::Channel(msg))) => msg,
                Err(e) => {
                    out.closed.set(true);
                    return Err(SendError::from_glommio(e));
                }
            }
        };
        if waiting >= self.backlog_max {
            return Err(SendError::ControlBacklog {
                to,
                max: self.backlog_max,
            });
        }
        out.queue.borrow_mut().push_back(msg);
        out.waiting.set(waiting + 1);
        if waiting == 0 {
            // glommio may run the task at once: no borrow is held here.
            glommio::spawn_local(self.clone().drain(to)).detach();
        }
        Ok(())
    }

    /// Moves `to`'s outbox into its channel, oldest first, until it is
    /// empty or the destination stopped.
    async fn drain(self: Rc<Self>, to: usize) {
        let Some(out) = self.outboxes.get(to) else {
            return;
        };
        loop {
            let Some(msg) = out.queue.borrow_mut().pop_front() else {
                return;
            };
            let send = self.senders.send_to(to, msg);
            futures_lite::pin!(send);
            let sent = loop {
                let stalled = async {
                    glommio::timer::sleep(CONTROL_STALL_WARN).await;
                    None
                };
                match futures_lite::future::or(async { Some(send.as_mut().await) }, stalled).await {
                    Some(result) => break result,
                    None => log::warn!(
                        "control lane to shard {to}: no room for {} s, {} messages waiting \
                         (control_capacity full)",
                        CONTROL_STALL_WARN.as_secs(),
                        out.waiting.get()
                    ),
                }
            };
            if let Err(e) = sent {
                // This one and every queued one.
                let lost = out.waiting.replace(0);
                out.queue.borrow_mut().clear();
                out.closed.set(true);
                log::warn!(
                    "control lane to shard {to}: {lost} messages not delivered: {}",
                    SendError::from_glommio(e)
                );
                return;
            }
            out.waiting.set(out.waiting.get().saturating_sub(1));
        }
    }
}

/// Why a cross-shard message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The media channel to that shard holds `media_capacity` messages
    /// already.
    Full,
    /// The control outbox to shard `to` holds `max`
    /// (`control_backlog_max`) messages already.
    ControlBacklog { to: usize, max: usize },
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
            SendError::Full => f.write_str("cross-shard media channel full (media_capacity)"),
            SendError::ControlBacklog { to, max } => write!(
                f,
                "control lane to shard {to} has {max} messages waiting (control_backlog_max)"
            ),
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

/// glommio refuses to start an executor when the soft RLIMIT_MEMLOCK is
/// below this (its io_uring rings are locked memory). Many machines and
/// containers default to 64 KiB.
pub const MIN_MEMLOCK_BYTES: libc::rlim_t = 512 * 1024;

/// Makes the soft RLIMIT_MEMLOCK at least [`MIN_MEMLOCK_BYTES`]: up to the
/// hard limit, which needs no privilege, or both limits with
/// CAP_SYS_RESOURCE. Otherwise an error that says how to raise it.
fn ensure_memlock() -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(io::Error::other(format!(
            "reading RLIMIT_MEMLOCK: {}",
            io::Error::last_os_error()
        )));
    }
    let enough = |v: libc::rlim_t| v == libc::RLIM_INFINITY || v >= MIN_MEMLOCK_BYTES;
    if enough(limit.rlim_cur) {
        return Ok(());
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    let raised = if enough(hard) {
        libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        }
    } else {
        libc::rlimit {
            rlim_cur: MIN_MEMLOCK_BYTES,
            rlim_max: MIN_MEMLOCK_BYTES,
        }
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } != 0 {
        return Err(io::Error::other(format!(
            "RLIMIT_MEMLOCK is {soft} bytes (hard limit {hard}) and could not be raised ({}); \
             the shards' io_uring needs at least {MIN_MEMLOCK_BYTES}: raise it with `ulimit -l 512` \
             as root, LimitMEMLOCK= in a systemd unit or `docker run --ulimit memlock=-1`",
            io::Error::last_os_error()
        )));
    }
    log::info!(
        "RLIMIT_MEMLOCK raised from {soft} to {} bytes for the shards' io_uring",
        if raised.rlim_cur == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            raised.rlim_cur.to_string()
        }
    );
    Ok(())
}

/// Runs the pool: starts `config.shards` executors, joins them into the two
/// channel meshes (media and control lanes), and runs `shard_main(ctx)` on
/// each. Blocks until every shard's future has finished. Returns the first
/// executor error, or an `InvalidInput` error naming a zero count or
/// capacity in `config`.
pub fn run<M, F, Fut>(config: &PoolConfig, shard_main: F) -> io::Result<()>
where
    M: Send + 'static,
    F: Fn(ShardCtx<M>) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    for (field, value) in [
        ("shards", config.shards),
        ("media_capacity", config.media_capacity),
        ("control_capacity", config.control_capacity),
    ] {
        if value == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("PoolConfig::{field} must be at least 1"),
            ));
        }
    }
    ensure_memlock()?;
    let media: MeshBuilder<M, _> = MeshBuilder::full(config.shards, config.media_capacity);
    let control: MeshBuilder<M, _> = MeshBuilder::full(config.shards, config.control_capacity);
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
        let (media, control) = (media.clone(), control.clone());
        let shard_main = shard_main.clone();
        let count = config.shards;
        let backlog_max = config.control_backlog_max;
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("{}-{id}", config.name))
            // Short preemption slice: a shard checks for pending I/O often,
            // which bounds the latency one busy task adds to the others.
            .preempt_timer(Duration::from_millis(10))
            .spawn(move || async move {
                let (media, control) = match join_lanes(id, media, control).await {
                    Ok(lanes) => lanes,
                    Err(e) => {
                        log::error!("shard {id}: could not join the channel mesh: {e}");
                        request_stop();
                        return;
                    }
                };
                let ctx = ShardCtx {
                    id,
                    count,
                    pinned_core,
                    media: media.0,
                    control: Rc::new(ControlLane::new(control.0, count, backlog_max)),
                };
                let inbox = Inbox {
                    media: media.1,
                    control: control.1,
                };
                INBOX.with(|slot| slot.set(Some(Box::new(inbox) as Box<dyn std::any::Any>)));
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

type FullMesh<M> = MeshBuilder<M, glommio::channels::channel_mesh::Full>;
type Joined<M> = (Senders<M>, Receivers<M>);

/// Joins the media mesh, then the control mesh (every shard in the same
/// order), and checks that this shard's index in both is `id`.
async fn join_lanes<M: Send + 'static>(
    id: usize,
    media: FullMesh<M>,
    control: FullMesh<M>,
) -> io::Result<(Joined<M>, Joined<M>)> {
    let media = join_mesh(media)
        .await
        .map_err(|e| io::Error::other(format!("media lane: {e}")))?;
    let control = join_mesh(control)
        .await
        .map_err(|e| io::Error::other(format!("control lane: {e}")))?;
    // A mesh orders peers by executor id; executors are created in shard
    // order, so this is our id. Checked, not assumed.
    for (lane, index) in [
        ("media", media.0.peer_id()),
        ("control", control.0.peer_id()),
    ] {
        if index != id {
            return Err(io::Error::other(format!(
                "{lane} mesh index {index} differs from shard id"
            )));
        }
    }
    Ok((media, control))
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
async fn join_mesh<M: Send + 'static>(mesh: FullMesh<M>) -> io::Result<Joined<M>> {
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

/// The receiving ends of this shard's two lanes, until [`serve_inbox`].
struct Inbox<M: Send + 'static> {
    media: Receivers<M>,
    control: Receivers<M>,
}

/// Starts delivering this shard's incoming messages, both lanes, to
/// `handler(from, lane, msg)`: one task per peer, which takes a waiting
/// control message before the next media message (so a flood of media from
/// one peer never delays that peer's control messages by more than the one
/// media message being handled) and keeps each lane's order. Call once per
/// shard, from its `shard_main`. The handler runs on this shard and must
/// not block.
pub fn serve_inbox<M, H>(handler: H)
where
    M: Send + 'static,
    H: Fn(usize, Lane, M) + 'static,
{
    let inbox = INBOX
        .with(|slot| slot.take())
        .and_then(|b| b.downcast::<Inbox<M>>().ok());
    let Some(mut inbox) = inbox else {
        log::error!("serve_inbox called twice or with the wrong message type");
        return;
    };
    let handler = Rc::new(handler);
    let mut control: Vec<Option<ConnectedReceiver<M>>> = Vec::new();
    for (from, rx) in inbox.control.streams() {
        if control.len() <= from {
            control.resize_with(from + 1, || None);
        }
        control[from] = Some(rx);
    }
    let mut media: Vec<Option<ConnectedReceiver<M>>> = Vec::new();
    for (from, rx) in inbox.media.streams() {
        if media.len() <= from {
            media.resize_with(from + 1, || None);
        }
        media[from] = Some(rx);
    }
    for from in 0..control.len().max(media.len()) {
        let control = control.get_mut(from).and_then(Option::take);
        let media = media.get_mut(from).and_then(Option::take);
        if control.is_none() && media.is_none() {
            continue;
        }
        glommio::spawn_local(serve_peer(from, control, media, handler.clone())).detach();
    }
}

/// Delivers what peer `from` sends on either lane until both are closed,
/// control first when both have a message.
async fn serve_peer<M, H>(
    from: usize,
    mut control: Option<ConnectedReceiver<M>>,
    mut media: Option<ConnectedReceiver<M>>,
    handler: Rc<H>,
) where
    M: Send + 'static,
    H: Fn(usize, Lane, M) + 'static,
{
    loop {
        let (lane, msg) = match (&control, &media) {
            (Some(c), Some(m)) => {
                // `or` polls the control receive first; a receive that
                // loses is dropped before it took a message.
                futures_lite::future::or(async { (Lane::Control, c.recv().await) }, async {
                    (Lane::Media, m.recv().await)
                })
                .await
            }
            (Some(c), None) => (Lane::Control, c.recv().await),
            (None, Some(m)) => (Lane::Media, m.recv().await),
            (None, None) => return,
        };
        match (lane, msg) {
            (lane, Some(msg)) => handler(from, lane, msg),
            (Lane::Control, None) => control = None,
            (Lane::Media, None) => media = None,
        }
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

    fn config(media_capacity: usize, control_capacity: usize, backlog: usize) -> PoolConfig {
        PoolConfig {
            shards: 2,
            pin_cores: false,
            media_capacity,
            control_capacity,
            control_backlog_max: backlog,
            name: "t".into(),
        }
    }

    #[test]
    fn messages_cross_shards() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        static GOT: AtomicUsize = AtomicUsize::new(0);
        let done = Arc::new(AtomicUsize::new(0));
        run::<u32, _, _>(&config(4, 4, 4), move |ctx| {
            let done = done.clone();
            async move {
                serve_inbox(move |from, _lane, msg: u32| {
                    assert_ne!(from, usize::MAX);
                    GOT.fetch_add(msg as usize, Ordering::SeqCst);
                });
                assert!(ctx.try_send_media(ctx.id(), 1).is_err(), "no self-sends");
                assert!(ctx.post_control(ctx.id(), 1).is_err(), "no self-posts");
                ctx.post_control(1 - ctx.id(), 10 + ctx.id() as u32).ok();
                done.fetch_add(1, Ordering::SeqCst);
                let deadline = std::time::Instant::now() + TEST_DEADLINE;
                while GOT.load(Ordering::SeqCst) < 21 && std::time::Instant::now() < deadline {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .unwrap();
        assert_eq!(GOT.load(Ordering::SeqCst), 21);
    }

    #[test]
    fn zero_capacities_are_refused() {
        for (cfg, field) in [
            (config(0, 1, 0), "media_capacity"),
            (config(1, 0, 0), "control_capacity"),
        ] {
            let err = run::<u32, _, _>(&cfg, |_ctx| async {}).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    /// A test message: media carries a sequence number, control messages a key.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Msg {
        Media(u32),
        Unsubscribe(u32),
        Subscribe(u32),
    }

    /// How long a test waits for anything.
    const TEST_DEADLINE: Duration = Duration::from_secs(10);

    /// Sleeps in small steps until `done()` or [`TEST_DEADLINE`].
    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + TEST_DEADLINE;
        while !done() && std::time::Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs two shards. Shard 0 runs `post(&ctx)` (synchronous code) while
    /// shard 1 is not yet reading its inbox, so channels really fill up;
    /// `post` returns what it wants checked. Then shard 1 serves its inbox
    /// until it has `want` messages, while shard 0 keeps running (its
    /// outbox tasks live there). Returns `post`'s result and what shard 1
    /// received, in order, with the lane.
    fn post_then_receive<R: Send + 'static>(
        cfg: &PoolConfig,
        want: usize,
        post: impl Fn(&ShardCtx<Msg>) -> R + Send + Sync + 'static,
    ) -> (Option<R>, Vec<(Lane, Msg)>) {
        use std::sync::{Arc, Mutex};
        let got = Arc::new(Mutex::new(Vec::new()));
        let posted = Arc::new(Mutex::new(None));
        let post = Arc::new(post);
        {
            let (got, posted) = (got.clone(), posted.clone());
            run::<Msg, _, _>(cfg, move |ctx| {
                let (got, posted, post) = (got.clone(), posted.clone(), post.clone());
                async move {
                    let received = || got.lock().map_or(0, |g| g.len());
                    if ctx.id() == 0 {
                        let result = post(&ctx);
                        if let Ok(mut slot) = posted.lock() {
                            *slot = Some(result);
                        }
                    } else {
                        wait_until(|| posted.lock().is_ok_and(|p| p.is_some())).await;
                        let got = got.clone();
                        serve_inbox(move |from, lane, msg: Msg| {
                            assert_eq!(from, 0);
                            if let Ok(mut g) = got.lock() {
                                g.push((lane, msg));
                            }
                        });
                    }
                    wait_until(|| received() >= want).await;
                }
            })
            .unwrap();
        }
        let got = got.lock().unwrap().clone();
        let posted = posted.lock().unwrap().take();
        (posted, got)
    }

    /// Fills shard 0's media lane to shard 1 until `try_send_media` fails,
    /// returning how many fitted and the error.
    fn fill_media(ctx: &ShardCtx<Msg>, most: u32) -> (u32, Option<SendError>) {
        for n in 0..most {
            if let Err(e) = ctx.try_send_media(1, Msg::Media(n)) {
                return (n, Some(e));
            }
        }
        (most, None)
    }

    fn media(n: u32) -> impl Iterator<Item = (Lane, Msg)> {
        (0..n).map(|i| (Lane::Media, Msg::Media(i)))
    }

    #[test]
    fn control_messages_arrive_past_a_full_media_lane() {
        const MEDIA: usize = 8;
        const CONTROL: u32 = 20; // more than the control channel holds
        let cfg = config(MEDIA, 4, 64);
        let (posted, got) = post_then_receive(&cfg, MEDIA + CONTROL as usize, |ctx| {
            let filled = fill_media(ctx, 1000);
            let posts: Vec<_> = (0..CONTROL)
                .map(|k| ctx.post_control(1, Msg::Subscribe(k)))
                .collect();
            let still_full = ctx.try_send_media(1, Msg::Media(999));
            (filled, posts, still_full)
        });
        let (filled, posts, still_full) = posted.unwrap();
        assert_eq!(filled, (MEDIA as u32, Some(SendError::Full)));
        assert!(posts.iter().all(Result::is_ok), "{posts:?}");
        assert_eq!(still_full, Err(SendError::Full));
        // Every message arrived, each lane in order.
        let on = |lane| -> Vec<_> { got.iter().filter(|(l, _)| *l == lane).cloned().collect() };
        let want: Vec<_> = (0..CONTROL)
            .map(|k| (Lane::Control, Msg::Subscribe(k)))
            .collect();
        assert_eq!(on(Lane::Control), want);
        assert_eq!(on(Lane::Media), media(MEDIA as u32).collect::<Vec<_>>());
        // The first control message was taken while the media lane was
        // still full: before any media message.
        assert_eq!(got[0], (Lane::Control, Msg::Subscribe(0)), "{got:?}");
    }

    #[test]
    fn subscribe_after_unsubscribe_arrives_while_media_lane_is_full() {
        const MEDIA: usize = 16;
        let cfg = config(MEDIA, 4, 64);
        let (posted, got) = post_then_receive(&cfg, MEDIA + 2, |ctx| {
            let filled = fill_media(ctx, 1000);
            let unsub = ctx.post_control(1, Msg::Unsubscribe(7));
            let sub = ctx.post_control(1, Msg::Subscribe(7));
            (filled, unsub, sub)
        });
        let (filled, unsub, sub) = posted.unwrap();
        assert_eq!(filled, (MEDIA as u32, Some(SendError::Full)));
        assert_eq!((unsub, sub), (Ok(()), Ok(())));
        let mut want = vec![
            (Lane::Control, Msg::Unsubscribe(7)),
            (Lane::Control, Msg::Subscribe(7)),
        ];
        want.extend(media(MEDIA as u32));
        assert_eq!(got, want);
    }

    /// The alternating messages for key `k` in `0..keys`.
    fn flapping(keys: u32) -> Vec<Msg> {
        (0..keys)
            .flat_map(|k| [Msg::Unsubscribe(k), Msg::Subscribe(k)])
            .collect()
    }

    #[test]
    fn control_posts_arrive_in_posting_order() {
        const KEYS: u32 = 500; // 1000 posts through a channel of 4
        let cfg = config(4, 4, 2 * KEYS as usize);
        let posts = flapping(KEYS);
        let (posted, got) = post_then_receive(&cfg, posts.len(), |ctx| {
            flapping(KEYS)
                .into_iter()
                .map(|m| ctx.post_control(1, m))
                .filter(Result::is_err)
                .count()
        });
        assert_eq!(posted, Some(0), "posts refused");
        let want: Vec<_> = posts.into_iter().map(|m| (Lane::Control, m)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn control_posts_stay_in_order_while_the_outbox_drains() {
        const KEYS: u32 = 2000;
        let cfg = config(4, 4, 2 * KEYS as usize);
        let posts = flapping(KEYS);
        let (posted, got) = post_then_receive(&cfg, posts.len(), |ctx| {
            // The receiver starts once this returns; the second half is
            // posted by a task of this shard, a few at a time, while the
            // outbox drains and the channel keeps getting room.
            let mut all = flapping(KEYS);
            let second = all.split_off(all.len() / 2);
            let refused: usize = all
                .into_iter()
                .map(|m| ctx.post_control(1, m))
                .filter(Result::is_err)
                .count();
            let lane = ctx.control.clone();
            glommio::spawn_local(async move {
                for chunk in second.chunks(4) {
                    for m in chunk {
                        if let Err(e) = lane.post(1, m.clone()) {
                            log::error!("post refused: {e}");
                        }
                    }
                    glommio::timer::sleep(Duration::from_micros(20)).await;
                }
            })
            .detach();
            refused
        });
        assert_eq!(posted, Some(0), "posts refused");
        let want: Vec<_> = posts.into_iter().map(|m| (Lane::Control, m)).collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "control messages out of posting order");
    }

    #[test]
    fn control_backlog_is_bounded_with_a_typed_error() {
        const CHANNEL: usize = 2;
        const BACKLOG: usize = 3;
        let cfg = config(4, CHANNEL, BACKLOG);
        let (posted, got) = post_then_receive(&cfg, CHANNEL + BACKLOG, |ctx| {
            (0..(CHANNEL + BACKLOG + 2) as u32)
                .map(|k| ctx.post_control(1, Msg::Subscribe(k)))
                .collect::<Vec<_>>()
        });
        let posted = posted.unwrap();
        let (ok, refused) = posted.split_at(CHANNEL + BACKLOG);
        assert!(ok.iter().all(Result::is_ok), "{posted:?}");
        let err = SendError::ControlBacklog {
            to: 1,
            max: BACKLOG,
        };
        assert!(refused.iter().all(|r| *r == Err(err)), "{posted:?}");
        assert!(err.to_string().contains("control_backlog_max"));
        let want: Vec<_> = (0..(CHANNEL + BACKLOG) as u32)
            .map(|k| (Lane::Control, Msg::Subscribe(k)))
            .collect();
        assert_eq!(got, want);
    }
}
