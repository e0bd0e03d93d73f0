//! A player's bounded output queue and a one-shot signal, both single-shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes};

/// Buffers handed to one `sendmsg` (far below the kernel's IOV_MAX of 1024;
/// a frame is two or three buffers, so this is a GOP burst's worth).
pub const IOV_BATCH: usize = 64;

/// Entries an empty queue keeps allocated (32 bytes each): enough for a
/// few frames, so steady playback does not reallocate.
const QUEUE_ENTRIES_KEPT: usize = 16;

/// Frames whose ingest time a queue remembers until they are written, for
/// the fan-out latency histogram (24 bytes each). Past this many frames
/// waiting, later frames are not timed: a backlog that deep is already
/// counted as skips.
pub const INGEST_MARKS_MAX: usize = 128;

/// Where a queue is in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QueueState {
    /// Not started: media is dropped (uncounted) until a start point.
    AwaitStart,
    /// Media is queued.
    Flowing,
    /// The queue overflowed: media is dropped (counted) until a start point
    /// that fits.
    Skipping,
}

/// Bytes waiting for one socket, bounded in bytes.
///
/// Media past `bytes_max` is not queued: the player skips to the next start
/// point (a keyframe) and the frames it missed are counted. Control messages
/// (status, codec configs, metadata) are always queued: they are small and a
/// player cannot decode without them. The publisher never waits on a player.
#[derive(Debug)]
pub struct OutQueue {
    bufs: VecDeque<Bytes>,
    /// Bytes in `bufs`.
    bytes: usize,
    /// The bound on queued bytes beyond which media is skipped.
    bytes_max: usize,
    state: QueueState,
    /// Media frames dropped because the player fell behind.
    skipped: u64,
    /// Bytes handed to the kernel.
    written: u64,
    /// The writer task's waker while it is parked on an empty queue.
    waker: Option<Waker>,
    /// The player's socket, while its writer may be bypassed.
    direct: Option<DirectSocket>,
    /// (end position in bytes ever queued, ingest time on the owner) of
    /// live frames not yet fully written, oldest first.
    ingest_marks: VecDeque<(u64, Instant)>,
}

/// A socket the fan-out may write to itself while the player's writer task
/// is parked, and the connection's activity clock to touch when it does.
#[derive(Debug)]
struct DirectSocket {
    fd: RawFd,
    last_active: Rc<Cell<Instant>>,
}

impl OutQueue {
    /// An empty queue that waits for a start point.
    pub fn new(bytes_max: usize) -> Self {
        Self {
            bufs: VecDeque::new(),
            bytes: 0,
            bytes_max,
            state: QueueState::AwaitStart,
            skipped: 0,
            written: 0,
            waker: None,
            direct: None,
            ingest_marks: VecDeque::new(),
        }
    }

    /// Lets [`OutQueue::flush_or_wake`] write to `fd` itself while the
    /// writer task is parked. The caller must call
    /// [`OutQueue::detach_socket`] before `fd` is closed or written by
    /// anything but this queue.
    pub fn attach_socket(&mut self, fd: RawFd, last_active: Rc<Cell<Instant>>) {
        self.direct = Some(DirectSocket { fd, last_active });
    }

    /// Stops writes from outside the writer task.
    pub fn detach_socket(&mut self) {
        self.direct = None;
    }

    /// Queues bytes that must arrive whatever the backlog.
    pub fn push_control(&mut self, parts: &[Bytes]) {
        for p in parts {
            self.push(p.clone());
        }
        self.wake();
    }

    /// Queues one media message (its chunked parts) under the bound and the
    /// skip rules, without waking the writer: the caller decides when the
    /// queue goes out ([`OutQueue::wake_if_pending`]), so several messages
    /// can leave in one write. Returns whether it was queued.
    pub fn push_media(&mut self, parts: &[Bytes], start_point: bool) -> bool {
        let len: usize = parts.iter().map(Bytes::len).sum();
        let fits = self.bytes + len <= self.bytes_max;
        let queue = match self.state {
            QueueState::Flowing if fits => true,
            QueueState::Flowing => {
                self.state = QueueState::Skipping;
                false
            }
            QueueState::AwaitStart | QueueState::Skipping => start_point && fits,
        };
        if !queue {
            if self.state == QueueState::Skipping {
                self.skipped += 1;
                crate::metrics::with(|m| m.frame_skipped());
            }
            return false;
        }
        self.state = QueueState::Flowing;
        for p in parts {
            self.push(p.clone());
        }
        crate::metrics::with(|m| m.frame_out());
        true
    }

    /// The message just queued was ingested by its owner at `ingest`: when
    /// its last byte is written, the shard's fan-out latency histogram gets
    /// the time since (bounded by [`INGEST_MARKS_MAX`]).
    pub fn mark_ingest(&mut self, ingest: Instant) {
        if self.ingest_marks.len() < INGEST_MARKS_MAX {
            let end = self.written + self.bytes as u64;
            self.ingest_marks.push_back((end, ingest));
        }
    }

    /// Gets queued bytes moving. While the writer task is parked on an
    /// empty queue and a socket is attached, they are written here, at
    /// once, with no task woken; whatever the socket does not take at once
    /// (or an error) is left to the woken writer.
    pub fn flush_or_wake(&mut self, now: Instant) {
        if self.bufs.is_empty() {
            return;
        }
        if let (Some(fd), Some(_)) = (self.direct.as_ref().map(|d| d.fd), &self.waker) {
            if let Ok(n) = self.write_to(fd) {
                if let (true, Some(d)) = (n > 0, &self.direct) {
                    d.last_active.set(now);
                }
                if self.bufs.is_empty() {
                    return;
                }
            }
        }
        self.wake();
    }

    /// One non-blocking `sendmsg` of the first [`IOV_BATCH`] buffers to
    /// `fd`; forgets what was written and returns its length.
    pub fn write_to(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_BATCH];
        let mut n = 0;
        for b in self.bufs.iter().take(IOV_BATCH) {
            iov[n] = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
            n += 1;
        }
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = n as _;
        // SAFETY: every iovec points into a `Bytes` held by `self.bufs`,
        // unchanged for the duration of this synchronous call; the kernel
        // only reads them.
        let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        self.advance(r as usize);
        Ok(r as usize)
    }

    /// Waits for a start point again (a new publisher, or a fresh start).
    pub fn restart(&mut self) {
        self.state = QueueState::AwaitStart;
    }

    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.bytes += b.len();
        self.bufs.push_back(b);
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Queued buffers, front first (the front may be partly written).
    pub fn bufs(&self) -> &VecDeque<Bytes> {
        &self.bufs
    }

    /// Bytes queued.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Forgets `n` bytes from the front, after they were written (one
    /// write, for the shard's write-size histogram).
    pub fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        let written = self.written;
        let done = self
            .ingest_marks
            .front()
            .is_some_and(|&(end, _)| end <= written);
        crate::metrics::with(|m| {
            m.player_write(n as u64);
            if done {
                let now = Instant::now();
                while let Some(&(end, ingest)) = self.ingest_marks.front() {
                    if end > written {
                        break;
                    }
                    m.delivered(ingest, now);
                    self.ingest_marks.pop_front();
                }
            }
        });
        self.bytes -= n.min(self.bytes);
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.bufs.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        // A start burst (the whole GOP) grows the ring to hundreds of
        // entries; a player that has caught up needs a handful.
        if self.bufs.is_empty() && self.bufs.capacity() > QUEUE_ENTRIES_KEPT {
            self.bufs.shrink_to(QUEUE_ENTRIES_KEPT);
        }
        if self.ingest_marks.is_empty() && self.ingest_marks.capacity() > QUEUE_ENTRIES_KEPT {
            self.ingest_marks.shrink_to(QUEUE_ENTRIES_KEPT);
        }
    }

    /// Media frames skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Ready when something is queued; otherwise remembers the waker (and
    /// the writer counts as parked until it is woken or polled ready).
    pub fn poll_nonempty(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.bufs.is_empty() {
            self.waker = Some(cx.waker().clone());
            Poll::Pending
        } else {
            self.waker = None;
            Poll::Ready(())
        }
    }
}

/// A flag raised once (close this connection), with the tasks waiting on it.
#[derive(Debug, Default)]
pub struct Signal {
    raised: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Raises the flag and wakes every waiter.
    pub fn raise(&self) {
        self.raised.set(true);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// True once raised.
    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    /// Resolves once the flag is raised.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        SignalWait { signal: self }
    }
}

struct SignalWait<'a> {
    signal: &'a Signal,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.get() {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A change counter that tasks can wait on (e.g. "the HLS window moved").
#[derive(Debug, Default)]
pub struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Counts a change and wakes every waiter.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// The current change count.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Resolves once the count differs from `seen`.
    pub fn changed(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wakes.
    #[derive(Default)]
    pub(crate) struct CountWakes(AtomicUsize);

    impl CountWakes {
        pub(crate) fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }

        /// Parks a writer on `q` with this waker; panics if `q` is not empty.
        pub(crate) fn park(self: &Arc<Self>, q: &mut OutQueue) {
            let waker = Waker::from(self.clone());
            assert!(q
                .poll_nonempty(&mut Context::from_waker(&waker))
                .is_pending());
        }
    }

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn b(n: usize) -> Vec<Bytes> {
        vec![Bytes::from(vec![0u8; n])]
    }

    /// A queue with a socket attached, and the socket's other end.
    fn attached() -> (OutQueue, UnixStream, UnixStream, Rc<Cell<Instant>>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut q = OutQueue::new(1 << 24);
        let clock = Rc::new(Cell::new(Instant::now()));
        q.attach_socket(ours.as_raw_fd(), clock.clone());
        (q, ours, theirs, clock)
    }

    #[test]
    fn a_parked_writer_is_bypassed_and_not_woken() {
        let (mut q, _ours, mut theirs, clock) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        assert!(q.push_media(
            &[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            true
        ));
        let now = Instant::now();
        q.flush_or_wake(now);
        assert_eq!(wakes.get(), 0, "written without the writer task");
        assert!(q.is_empty());
        assert_eq!((q.written(), clock.get()), (4, now));
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");
    }

    #[test]
    fn what_the_socket_does_not_take_wakes_the_writer() {
        let (mut q, _ours, _theirs, _) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        // Far more than a socket pair buffers.
        for _ in 0..64 {
            assert!(q.push_media(&b(64 * 1024), true));
        }
        q.flush_or_wake(Instant::now());
        assert_eq!(wakes.get(), 1);
        assert!(q.len_bytes() > 0 && q.written() > 0);
    }

    #[test]
    fn a_busy_writer_is_left_alone() {
        let (mut q, _ours, _theirs, _) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        q.push_control(&b(3));
        assert_eq!(wakes.get(), 1, "control wakes the writer");
        // The writer is now between its wake and its write: no one else may
        // write, or bytes would interleave.
        assert!(q.push_media(&b(5), true));
        q.flush_or_wake(Instant::now());
        assert_eq!((q.len_bytes(), q.written()), (8, 0));
    }

    #[test]
    fn a_detached_socket_is_never_written() {
        let (mut q, _ours, _theirs, _) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        q.detach_socket();
        assert!(q.push_media(&b(5), true));
        q.flush_or_wake(Instant::now());
        assert_eq!((wakes.get(), q.written()), (1, 0));
    }

    #[test]
    fn waits_for_a_start_point_then_flows() {
        let mut q = OutQueue::new(1000);
        assert!(
            !q.push_media(&b(10), false),
            "inter frame before a keyframe"
        );
        assert_eq!(q.skipped(), 0, "not started is not skipping");
        assert!(q.push_media(&b(10), true));
        assert!(q.push_media(&b(10), false));
        assert_eq!(q.len_bytes(), 20);
    }

    #[test]
    fn overflow_skips_to_the_next_start_point_and_counts() {
        let mut q = OutQueue::new(100);
        assert!(q.push_media(&b(60), true));
        assert!(!q.push_media(&b(60), false), "over the bound");
        assert!(!q.push_media(&b(10), false), "skipping until a start point");
        assert_eq!(q.skipped(), 2);
        assert!(!q.push_media(&b(60), true), "a keyframe that does not fit");
        q.advance(60);
        assert!(!q.push_media(&b(10), false));
        assert!(q.push_media(&b(60), true), "a keyframe that fits resumes");
        assert!(q.push_media(&b(10), false));
        assert_eq!(q.skipped(), 4);
        assert_eq!(q.written(), 60);
    }

    #[test]
    fn a_frame_is_timed_when_its_last_byte_is_written() {
        let timed = || {
            let s = crate::metrics::local().snapshot(0, Default::default());
            (s.fanout_us.count(), s.write_bytes.count())
        };
        let before = timed();
        let mut q = OutQueue::new(1000);
        assert!(q.push_media(&b(10), true));
        q.mark_ingest(Instant::now());
        q.push_control(&b(4));
        assert!(q.push_media(&b(10), false));
        q.mark_ingest(Instant::now());
        q.advance(8);
        assert_eq!(timed(), (before.0, before.1 + 1), "no frame complete");
        q.advance(10);
        assert_eq!(timed().0, before.0 + 1, "the first frame");
        q.advance(6);
        assert_eq!(timed(), (before.0 + 2, before.1 + 3));
        assert!(q.ingest_marks.is_empty());
    }

    #[test]
    fn control_bypasses_the_bound() {
        let mut q = OutQueue::new(10);
        q.push_control(&b(50));
        assert_eq!(q.len_bytes(), 50);
    }

    #[test]
    fn advance_handles_partial_buffers() {
        let mut q = OutQueue::new(1000);
        q.push_control(&[Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]);
        q.advance(4);
        assert_eq!(q.bufs().len(), 1);
        assert_eq!(&q.bufs()[0][..], b"efg");
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.len_bytes(), 0);
    }
}
