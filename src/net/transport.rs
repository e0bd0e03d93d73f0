//! The one transport every driver takes: a byte stream to a peer, plain
//! TCP today, TLS tomorrow (a second variant), with no driver signature
//! naming the concrete socket type.
//!
//! Besides the async read and write every variant has, [`Transport`] can
//! write a batch of buffers at once without waiting
//! ([`Transport::try_write_vectored`]): the fan-out's direct write to a
//! parked player and the writer task's vectored write both use it.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use shards::MovedConnection;

/// A connection to a peer.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl Transport {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr().map_err(io::Error::from),
        }
    }

    /// Sets TCP_NODELAY (DESIGN.md: every socket) and the timeout of one
    /// waiting write.
    pub fn configure(&self, write_timeout: Duration) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => {
                s.set_nodelay(true).map_err(io::Error::from)?;
                s.set_write_timeout(Some(write_timeout))
                    .map_err(io::Error::from)
            }
        }
    }

    /// One write of as many of `bufs` as the peer takes now, without
    /// waiting; `WouldBlock` when it takes nothing. For plain TCP this is
    /// one non-blocking `sendmsg` over all of them.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => sendmsg_nonblocking(s.as_raw_fd(), bufs),
        }
    }

    /// A handle for writes from outside the connection's task (the
    /// fan-out's direct writes): it borrows nothing, so the caller must
    /// stop using it before the connection closes (see
    /// `server::player`'s `DirectWrites`).
    pub fn direct_handle(&self) -> DirectHandle {
        match self {
            Transport::Tcp(s) => DirectHandle::Tcp(s.as_raw_fd()),
        }
    }

    /// Detaches the connection from this shard, with `state`, to attach
    /// it on another (a publisher handed to its stream's owner).
    pub fn detach<S>(self, state: S) -> io::Result<MovedConnection<S>> {
        match self {
            Transport::Tcp(s) => MovedConnection::detach(s, state),
        }
    }

    /// Attaches a connection that arrived from another shard.
    pub fn attach<S>(moved: MovedConnection<S>) -> (Self, S) {
        let (s, state) = moved.attach();
        (Transport::Tcp(s), state)
    }
}

/// Where the fan-out may write to a player's connection while that
/// player's writer task is parked.
#[derive(Clone, Copy, Debug)]
pub enum DirectHandle {
    /// A plain TCP socket's fd.
    Tcp(std::os::fd::RawFd),
}

impl DirectHandle {
    /// As [`Transport::try_write_vectored`].
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match *self {
            DirectHandle::Tcp(fd) => sendmsg_nonblocking(fd, bufs),
        }
    }
}

/// One non-blocking `sendmsg` of `bufs` to `fd`.
fn sendmsg_nonblocking(fd: std::os::fd::RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (std documents it).
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: every iovec points into memory borrowed by `bufs` for the
    // duration of this synchronous call; the kernel only reads it.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_close(cx),
        }
    }
}
