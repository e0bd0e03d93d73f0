//! Draining a player's queue into its socket: one vectored `sendmsg` for
//! everything queued (up to [`crate::stream::queue::IOV_BATCH`] buffers),
//! never one syscall per frame. While this task is parked, the fan-out
//! writes to the socket itself ([`OutQueue::flush_or_wake`]); this task
//! takes over when the socket is full.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use futures_lite::{AsyncWrite, AsyncWriteExt};

use crate::stream::OutQueue;

/// Writes whatever the queue holds, forever; returns only on a socket error.
pub async fn drain<W: AsyncWrite + Unpin>(
    fd: RawFd,
    wr: &mut W,
    queue: &RefCell<OutQueue>,
    last_active: &Cell<Instant>,
) -> io::Result<()> {
    loop {
        std::future::poll_fn(|cx| queue.borrow_mut().poll_nonempty(cx)).await;
        flush(fd, wr, queue).await?;
        last_active.set(Instant::now());
    }
}

/// Writes until the queue is empty.
pub async fn flush<W: AsyncWrite + Unpin>(
    fd: RawFd,
    wr: &mut W,
    queue: &RefCell<OutQueue>,
) -> io::Result<()> {
    loop {
        let result = {
            let mut q = queue.borrow_mut();
            if q.is_empty() {
                return Ok(());
            }
            q.write_to(fd)
        };
        match result {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The socket is full: let the reactor wait for room by
                // writing the front buffer the ordinary way, then go back to
                // vectored writes.
                let front = queue.borrow().bufs().front().cloned();
                if let Some(front) = front {
                    let n = wr.write(&front).await?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    queue.borrow_mut().advance(n);
                }
            }
            Err(e) => return Err(e),
        }
    }
}
