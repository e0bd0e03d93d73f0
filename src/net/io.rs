//! Reading and writing a [`Transport`] with deadlines, and draining a
//! player's queue: one vectored write for everything queued (up to
//! [`IOV_BATCH`] buffers), never one syscall per frame.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::registry::ConnSlot;
use super::transport::DirectHandle;
use crate::error::{ConnError, Deadline};
use crate::stream::{OutQueue, Signal, IOV_BATCH};

/// Bytes read from a socket at once (publishers, requests, handshakes).
pub const READ_BUF_LEN: usize = 16 * 1024;
/// How long a write may wait for the peer to make room before the
/// connection is dropped (publishers and the pre-play phase; players have
/// bounded queues instead).
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads one chunk of input, or None when the connection should close
/// (peer closed, or `close` raised). A passed `deadline` is an error that
/// names it.
pub async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut [u8],
    close: &Signal,
    deadline: Option<Deadline>,
) -> Result<Option<usize>, ConnError> {
    let read = async { Some(rd.read(buf).await.map_err(ConnError::Io)) };
    let closed = async {
        close.wait().await;
        None
    };
    let timeout = async {
        let Some(d) = deadline else {
            return std::future::pending().await;
        };
        glommio::timer::sleep(d.at.saturating_duration_since(Instant::now())).await;
        Some(Err(ConnError::Deadline {
            bound: d.bound,
            waiting_for: d.waiting_for,
        }))
    };
    match futures_lite::future::or(read, futures_lite::future::or(closed, timeout)).await {
        None | Some(Ok(0)) => Ok(None),
        Some(Ok(n)) => {
            crate::metrics::with(|m| m.bytes_in(n as u64));
            Ok(Some(n))
        }
        Some(Err(e)) => Err(e),
    }
}

/// Writes all of `bytes` and flushes them (a TLS connection holds
/// encrypted bytes until flushed), counting them.
pub async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    slot: &mut ConnSlot,
) -> io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await?;
    slot.bytes_out += bytes.len() as u64;
    crate::metrics::with(|m| m.bytes_out(bytes.len() as u64));
    Ok(())
}

/// One write of the queue's first [`IOV_BATCH`] buffers to `to`, without
/// waiting; forgets what was written and returns its length.
pub fn write_queued(to: DirectHandle, q: &mut OutQueue) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); IOV_BATCH];
    let n = q.io_slices(&mut slices);
    let written = to.try_write_vectored(&slices[..n])?;
    q.advance(written);
    Ok(written)
}

/// A player's plain connection that the fan-out may write to itself while
/// the player's writer task is parked, and the activity clock to touch
/// when it does.
pub struct DirectWriter {
    /// Where to write.
    pub to: DirectHandle,
    /// The connection's last activity.
    pub last_active: Rc<Cell<Instant>>,
}

/// Gets a queue's bytes moving. While its writer task is parked on an
/// empty queue and `direct` is given, they are written here, at once, with
/// no task woken; whatever the socket does not take at once (or an error)
/// is left to the woken writer. Once woken, the writer owns every write
/// until it parks again, so bytes never interleave. A TLS player has no
/// `direct`: its writer is always woken.
pub fn flush_or_wake(q: &mut OutQueue, direct: Option<&DirectWriter>, now: Instant) {
    if q.is_empty() {
        return;
    }
    if let (Some(d), true) = (direct, q.is_parked()) {
        if let Ok(n) = write_queued(d.to, q) {
            if n > 0 {
                d.last_active.set(now);
            }
            if q.is_empty() {
                return;
            }
        }
    }
    q.wake();
}

/// Writes whatever the queue holds, forever; returns only on a socket error.
pub async fn drain<W: AsyncWrite + Unpin>(
    wr: &mut W,
    queue: &RefCell<OutQueue>,
    last_active: &Cell<Instant>,
) -> io::Result<()> {
    loop {
        std::future::poll_fn(|cx| queue.borrow_mut().poll_nonempty(cx)).await;
        flush(wr, queue).await?;
        last_active.set(Instant::now());
    }
}

/// Writes until the queue is empty and the transport has sent it all: one
/// vectored write of up to [`IOV_BATCH`] queued buffers at a time. The
/// queue is borrowed only inside a poll, never across a wait, so the
/// fan-out can push to it meanwhile.
pub async fn flush<W: AsyncWrite + Unpin>(wr: &mut W, queue: &RefCell<OutQueue>) -> io::Result<()> {
    std::future::poll_fn(|cx| loop {
        let mut q = queue.borrow_mut();
        if q.is_empty() {
            return Pin::new(&mut *wr).poll_flush(cx);
        }
        let mut slices = [IoSlice::new(&[]); IOV_BATCH];
        let n = q.io_slices(&mut slices);
        match Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..n]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => q.advance(written),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::queue::tests::{b, CountWakes};
    use bytes::Bytes;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    /// A queue with a socket attached, and the socket's other end.
    fn attached() -> (OutQueue, DirectWriter, UnixStream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let q = OutQueue::new(1 << 24);
        let direct = DirectWriter {
            to: DirectHandle(ours.as_raw_fd()),
            last_active: Rc::new(Cell::new(Instant::now())),
        };
        (q, direct, ours, theirs)
    }

    #[test]
    fn a_parked_writer_is_bypassed_and_not_woken() {
        let (mut q, direct, _ours, mut theirs) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        assert!(q.push_media(
            &[Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            true
        ));
        let now = Instant::now();
        flush_or_wake(&mut q, Some(&direct), now);
        assert_eq!(wakes.get(), 0, "written without the writer task");
        assert!(q.is_empty());
        assert_eq!((q.written(), direct.last_active.get()), (4, now));
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcd");
    }

    #[test]
    fn what_the_socket_does_not_take_wakes_the_writer() {
        let (mut q, direct, _ours, _theirs) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        // Far more than a socket pair buffers.
        for _ in 0..64 {
            assert!(q.push_media(&b(64 * 1024), true));
        }
        flush_or_wake(&mut q, Some(&direct), Instant::now());
        assert_eq!(wakes.get(), 1);
        assert!(q.len_bytes() > 0 && q.written() > 0);
    }

    #[test]
    fn a_busy_writer_is_left_alone() {
        let (mut q, direct, _ours, _theirs) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        q.push_control(&b(3));
        assert_eq!(wakes.get(), 1, "control wakes the writer");
        // The writer is now between its wake and its write: no one else may
        // write, or bytes would interleave.
        assert!(q.push_media(&b(5), true));
        flush_or_wake(&mut q, Some(&direct), Instant::now());
        assert_eq!((q.len_bytes(), q.written()), (8, 0));
    }

    #[test]
    fn a_detached_socket_is_never_written() {
        let (mut q, direct, _ours, _theirs) = attached();
        let wakes = Arc::new(CountWakes::default());
        wakes.park(&mut q);
        let _ = direct;
        assert!(q.push_media(&b(5), true));
        flush_or_wake(&mut q, None, Instant::now());
        assert_eq!((wakes.get(), q.written()), (1, 0));
    }
}
