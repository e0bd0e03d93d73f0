//! Outgoing TCP connections (an edge's pull of an origin): bound to the
//! node's own address when it listens on one, so the origin sees that
//! address (and its IP rules apply to it), with a connect deadline.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Connects to `to` from `local` (any port; None or another address
/// family: the kernel's choice) and sends `first` (a client speaks first:
/// RTMP's C0C1). The connect and that write together have `timeout`;
/// the error names the peer and what failed.
///
/// glommio's own connect cannot bind, so the socket is made here and
/// connects without blocking; the first write completes once the
/// connection is up (the kernel answers EAGAIN while it is not, and the
/// reactor waits for writability), and fails with the connect's error.
pub async fn dial(
    local: Option<IpAddr>,
    to: SocketAddr,
    first: &[u8],
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = local.filter(|ip| ip.is_ipv4() == to.is_ipv4()) {
        socket
            .bind(&SockAddr::from(SocketAddr::new(ip, 0)))
            .map_err(|e| io::Error::new(e.kind(), format!("bind to {ip} for {to}: {e}")))?;
    }
    match socket.connect(&SockAddr::from(to)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("connect to {to}: {e}"))),
    }
    // SAFETY: the fd is a TCP socket just made here and owned by nobody
    // else once `into_raw_fd` gave it up.
    let mut stream = unsafe { TcpStream::from_raw_fd(socket.into_raw_fd()) };
    let sent = futures_lite::future::or(async { Some(stream.write_all(first).await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await;
    match sent {
        Some(Ok(())) => Ok(stream),
        Some(Err(e)) => Err(io::Error::new(e.kind(), format!("connect to {to}: {e}"))),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "connect to {to}: no connection within {} ms (edge.connect_timeout_ms)",
                timeout.as_millis()
            ),
        )),
    }
}
