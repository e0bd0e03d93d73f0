//! The one transport every driver takes: a byte stream to a peer, plain
//! TCP or TLS, with no driver signature naming the concrete socket type.
//!
//! Every variant reads and writes asynchronously, vectored writes included
//! (a player's queue leaves in one `sendmsg`, and under TLS in records that
//! span many frames). A plain TCP connection also gives a
//! [`DirectHandle`], so the fan-out can write to a parked player itself;
//! a TLS one cannot (its bytes must pass its rustls session), so the fan-out
//! wakes its writer instead.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use shards::MovedConnection;

use super::tls::TlsStream;

/// A connection to a peer.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (HTTPS, RTMPS).
    Tls(Box<TlsStream>),
}

/// A connection's state on its way to another shard besides the socket:
/// the caller's, and the TLS session when there is one.
pub struct Carried<S> {
    state: S,
    tls: Option<Box<rustls::ServerConnection>>,
}

impl Transport {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr().map_err(io::Error::from),
            Transport::Tls(t) => t.io.peer_addr().map_err(io::Error::from),
        }
    }

    /// Sets TCP_NODELAY (DESIGN.md: every socket) and the timeout of one
    /// waiting write.
    pub fn configure(&self, write_timeout: Duration) -> io::Result<()> {
        let s = match self {
            Transport::Tcp(s) => s,
            Transport::Tls(t) => &t.io,
        };
        s.set_nodelay(true).map_err(io::Error::from)?;
        s.set_write_timeout(Some(write_timeout))
            .map_err(io::Error::from)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// A handle for writes from outside the connection's task (the
    /// fan-out's direct writes), for plain TCP only: it borrows nothing, so
    /// the caller must stop using it before the connection closes (see
    /// `server::player`'s `DirectWrites`).
    pub fn direct_handle(&self) -> Option<DirectHandle> {
        match self {
            Transport::Tcp(s) => Some(DirectHandle(s.as_raw_fd())),
            Transport::Tls(_) => None,
        }
    }

    /// Detaches the connection from this shard, with `state` (and its TLS
    /// session, if any), to attach it on another (a publisher handed to its
    /// stream's owner).
    pub fn detach<S>(self, state: S) -> io::Result<MovedConnection<Carried<S>>> {
        match self {
            Transport::Tcp(s) => MovedConnection::detach(s, Carried { state, tls: None }),
            Transport::Tls(t) => {
                let TlsStream { io, tls } = *t;
                let tls = Some(Box::new(tls));
                MovedConnection::detach(io, Carried { state, tls })
            }
        }
    }

    /// Attaches a connection that arrived from another shard.
    pub fn attach<S>(moved: MovedConnection<Carried<S>>) -> (Self, S) {
        let (io, carried) = moved.attach();
        let conn = match carried.tls {
            None => Transport::Tcp(io),
            Some(tls) => Transport::Tls(Box::new(TlsStream { io, tls: *tls })),
        };
        (conn, carried.state)
    }
}

/// Where the fan-out may write to a plain player's connection while that
/// player's writer task is parked: the socket's fd.
#[derive(Clone, Copy, Debug)]
pub struct DirectHandle(pub std::os::fd::RawFd);

impl DirectHandle {
    /// One write of as many of `bufs` as the peer takes now, without
    /// waiting (one non-blocking `sendmsg`); `WouldBlock` when it takes
    /// nothing.
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sendmsg_nonblocking(self.0, bufs)
    }
}

/// One non-blocking `sendmsg` of `bufs` to `fd`.
pub(super) fn sendmsg_nonblocking(
    fd: std::os::fd::RawFd,
    bufs: &[IoSlice<'_>],
) -> io::Result<usize> {
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

/// One non-blocking `sendmsg` of all of `bufs` to `s`; when the socket is
/// full, the reactor is asked to wake the task once there is room (its
/// single-buffer write tries once more and registers).
pub(super) fn poll_sendmsg(
    s: &mut TcpStream,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    match sendmsg_nonblocking(s.as_raw_fd(), bufs) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            Pin::new(s).poll_write(cx, first)
        }
        other => Poll::Ready(other),
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
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
            Transport::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    /// Plain TCP: one non-blocking `sendmsg` of all of `bufs`; when the
    /// socket is full, the reactor waits for room. TLS: the buffers are
    /// encrypted together.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => poll_sendmsg(s, cx, bufs),
            Transport::Tls(t) => Pin::new(&mut **t).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_close(cx),
            Transport::Tls(t) => Pin::new(&mut **t).poll_close(cx),
        }
    }
}

/// The two halves of a [`Transport`], for a task that reads and writes it
/// at once (a player). They share it in an `Rc<RefCell>`: a shard is one
/// thread, and each borrow lasts one poll, which never enters the other
/// half. (`futures_lite::io::split` takes a mutex and does not forward
/// `poll_write_vectored`, so every queued buffer became a write of its
/// own: on TLS its own record and `sendmsg`, 7.7 times the plain path's.)
pub fn split(conn: Transport) -> (ReadHalf, WriteHalf) {
    let shared = Rc::new(RefCell::new(conn));
    (ReadHalf(shared.clone()), WriteHalf(shared))
}

/// The reading half of [`split`].
pub struct ReadHalf(Rc<RefCell<Transport>>);

/// The writing half of [`split`].
pub struct WriteHalf(Rc<RefCell<Transport>>);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncWriteExt;
    use std::io::Read;

    /// The write half hands every buffer of a vectored write down at once
    /// (one `sendmsg`), not only the first.
    #[test]
    fn the_write_half_writes_vectored() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let written = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let (_rd, mut wr) = split(Transport::Tcp(tcp));
                let bufs = [
                    IoSlice::new(b"tag header "),
                    IoSlice::new(b"payload "),
                    IoSlice::new(b"size"),
                ];
                let n = wr.write_vectored(&bufs).await.unwrap();
                wr.close().await.unwrap();
                n
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(written, 23, "all three buffers in one write");
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = String::new();
        peer.read_to_string(&mut got).unwrap();
        assert_eq!(got, "tag header payload size");
    }
}
