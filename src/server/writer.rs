//! Draining a player's queue into its socket: one vectored `sendmsg` for
//! everything queued (up to [`IOV_BATCH`] buffers), never one syscall per
//! frame.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};

use crate::stream::OutQueue;

/// Buffers handed to one `sendmsg` (far below the kernel's IOV_MAX of 1024;
/// a frame is two or three buffers, so this is a GOP burst's worth).
pub const IOV_BATCH: usize = 64;

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
            let q = queue.borrow();
            if q.is_empty() {
                return Ok(());
            }
            send_vectored(fd, q.bufs())
        };
        match result {
            Ok(n) => queue.borrow_mut().advance(n),
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

/// One non-blocking `sendmsg` of the first [`IOV_BATCH`] buffers.
fn send_vectored(fd: RawFd, bufs: &VecDeque<Bytes>) -> io::Result<usize> {
    let mut iov: [libc::iovec; IOV_BATCH] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; IOV_BATCH];
    let mut n = 0;
    for b in bufs.iter().take(IOV_BATCH) {
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
    // SAFETY: every iovec points into a `Bytes` borrowed from `bufs` for the
    // duration of this synchronous call; the kernel only reads them.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
