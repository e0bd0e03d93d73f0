//! Sinks: subscribers of a stream that are not players on a socket (a
//! recorder writing a file, an upstream push to an origin). A sink receives
//! every frame in order as a [`Frame`] value, not as wire bytes, with the
//! stream's metadata and publish changes between them; it has its own
//! bounded queue and its own policy when that queue is full, so a slow disk
//! or a slow origin never slows the publisher, the shard, or the players.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::Signal;
use proto::media::Frame;

/// What a sink does when its queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop frames (counted) until the next video keyframe that fits, as a
    /// slow player does: a recording gets a gap, not a stall.
    SkipToKeyframe,
    /// Give up: raise the sink's `close` (an upstream push that cannot keep
    /// up reconnects rather than send a broken stream).
    Close,
}

/// One item a sink receives, in stream order.
#[derive(Clone, Debug)]
pub enum SinkItem {
    /// A publisher started: what follows is a new timeline's codec configs.
    Published,
    /// The publisher left.
    Unpublished,
    /// An `onMetaData` body (`["onMetaData", {..}]`, AMF0).
    Metadata(Bytes),
    /// An audio or video frame (sequence headers included).
    Frame(Frame),
}

impl SinkItem {
    fn bytes(&self) -> usize {
        match self {
            SinkItem::Frame(f) => f.payload.len(),
            SinkItem::Metadata(b) => b.len(),
            SinkItem::Published | SinkItem::Unpublished => 0,
        }
    }
}

/// A sink's queue, bounded in payload bytes.
#[derive(Debug)]
pub struct SinkQueue {
    items: VecDeque<SinkItem>,
    bytes: usize,
    bytes_max: usize,
    /// Dropping frames until a keyframe that fits ([`FullPolicy::SkipToKeyframe`]).
    skipping: bool,
    dropped: u64,
    waker: Option<Waker>,
}

impl SinkQueue {
    fn push(&mut self, item: SinkItem, policy: FullPolicy, close: &Signal) {
        let len = item.bytes();
        let fits = self.bytes + len <= self.bytes_max;
        let is_frame = matches!(item, SinkItem::Frame(_));
        let resume_point = match &item {
            SinkItem::Frame(f) => (f.is_video() && f.keyframe) || f.sequence_header,
            _ => true,
        };
        if self.skipping && is_frame && !resume_point {
            self.dropped += 1;
            return;
        }
        if !fits {
            match policy {
                FullPolicy::SkipToKeyframe => {
                    self.skipping = true;
                    self.dropped += 1;
                    return;
                }
                FullPolicy::Close => {
                    self.dropped += 1;
                    close.raise();
                    return;
                }
            }
        }
        if is_frame {
            self.skipping = false;
        }
        self.bytes += len;
        self.items.push_back(item);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The next item, or Pending (the consumer is woken when one arrives).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<SinkItem> {
        match self.items.pop_front() {
            Some(item) => {
                self.bytes -= item.bytes();
                Poll::Ready(item)
            }
            None => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The next item, if one is queued.
    pub fn pop(&mut self) -> Option<SinkItem> {
        let item = self.items.pop_front()?;
        self.bytes -= item.bytes();
        Some(item)
    }

    /// Frames dropped because the sink fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Payload bytes queued.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }
}

/// A subscriber of a stream that takes [`SinkItem`]s.
#[derive(Debug)]
pub struct Sink {
    /// Unique on this shard (a connection id space, like players).
    pub id: u64,
    /// What it is, for logs and the API (`record`, `push`).
    pub what: &'static str,
    /// When full.
    pub policy: FullPolicy,
    /// What it has to consume.
    pub queue: RefCell<SinkQueue>,
    /// Raised when the sink must stop (policy `Close`, or the stream is
    /// dropped).
    pub close: Signal,
    /// Frames given to it so far.
    pub frames: Cell<u64>,
}

impl Sink {
    /// A sink whose queue holds at most `bytes_max` payload bytes.
    pub fn new(id: u64, what: &'static str, policy: FullPolicy, bytes_max: usize) -> Self {
        Self {
            id,
            what,
            policy,
            queue: RefCell::new(SinkQueue {
                items: VecDeque::new(),
                bytes: 0,
                bytes_max,
                skipping: false,
                dropped: 0,
                waker: None,
            }),
            close: Signal::default(),
            frames: Cell::new(0),
        }
    }

    /// Queues `item` under the bound and the policy.
    pub fn push(&self, item: SinkItem) {
        if matches!(item, SinkItem::Frame(_)) {
            self.frames.set(self.frames.get() + 1);
        }
        self.queue.borrow_mut().push(item, self.policy, &self.close);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(ts: u32, key: bool, len: usize) -> Frame {
        let mut body = vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0];
        body.resize(len.max(5), 0);
        Frame::parse_video(ts, Bytes::from(body)).unwrap()
    }

    fn drain(sink: &Sink) -> Vec<u32> {
        let mut q = sink.queue.borrow_mut();
        std::iter::from_fn(|| q.pop())
            .filter_map(|i| match i {
                SinkItem::Frame(f) => Some(f.timestamp),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_full_sink_skips_to_the_next_keyframe_and_counts() {
        let sink = Sink::new(1, "record", FullPolicy::SkipToKeyframe, 250);
        sink.push(SinkItem::Frame(video(0, true, 100)));
        sink.push(SinkItem::Frame(video(33, false, 100)));
        sink.push(SinkItem::Frame(video(66, false, 100))); // over: skip starts
        sink.push(SinkItem::Frame(video(100, false, 10))); // fits, but skipping
        assert_eq!(sink.queue.borrow().dropped(), 2);
        assert_eq!(drain(&sink), [0, 33]);
        sink.push(SinkItem::Frame(video(133, false, 10)));
        sink.push(SinkItem::Frame(video(166, true, 100)));
        sink.push(SinkItem::Frame(video(200, false, 10)));
        assert_eq!(drain(&sink), [166, 200], "resumes at the keyframe");
        assert_eq!(sink.queue.borrow().dropped(), 3);
        assert!(!sink.close.is_raised());
    }

    #[test]
    fn a_full_sink_with_the_close_policy_is_closed() {
        let sink = Sink::new(1, "push", FullPolicy::Close, 150);
        sink.push(SinkItem::Frame(video(0, true, 100)));
        assert!(!sink.close.is_raised());
        sink.push(SinkItem::Frame(video(33, false, 100)));
        assert!(sink.close.is_raised());
        assert_eq!(drain(&sink), [0]);
    }
}
