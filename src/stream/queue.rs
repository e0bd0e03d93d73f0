//! A player's bounded output queue and a one-shot signal, both single-shard.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
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
    /// (end position in bytes ever queued, ingest time on the owner) of
    /// live frames not yet fully written, oldest first.
    ingest_marks: VecDeque<(u64, Instant)>,
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
            ingest_marks: VecDeque::new(),
        }
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

    /// True while the writer task is parked on an empty queue: whoever
    /// queued bytes may then write them itself (the fan-out's direct write,
    /// done by the server, which holds the socket) before waking it.
    pub fn is_parked(&self) -> bool {
        self.waker.is_some()
    }

    /// Lends the first queued buffers for one vectored write: fills `out`
    /// (at most its length, [`IOV_BATCH`] by convention) and returns how
    /// many it filled. The writer then calls [`OutQueue::advance`] with
    /// what was written.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, b) in out.iter_mut().zip(self.bufs.iter()) {
            *slot = IoSlice::new(b);
            n += 1;
        }
        n
    }

    /// The first queued buffer (it may be partly written already).
    pub fn front(&self) -> Option<&Bytes> {
        self.bufs.front()
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

    /// Wakes the parked writer task, if any.
    pub fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
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

    pub(crate) fn b(n: usize) -> Vec<Bytes> {
        vec![Bytes::from(vec![0u8; n])]
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
        let mut slices = [IoSlice::new(&[]); IOV_BATCH];
        assert_eq!(q.io_slices(&mut slices), 1);
        assert_eq!(&*slices[0], b"efg");
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.len_bytes(), 0);
    }
}
