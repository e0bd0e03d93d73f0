//! What every player's socket shares, whatever protocol it speaks: the
//! connect with its deadline, the one read buffer's size, and
//! SO_RCVLOWAT.

use std::net::SocketAddr;
use std::time::Duration;

use glommio::net::TcpStream;

/// Bytes read from a socket at once, per player. 16 KiB takes an inter
/// frame of a few Mbit/s stream in one read and keeps 4000 players under
/// 64 MiB of buffers.
pub const READ_BUF_LEN: usize = 16 * 1024;
/// From the TCP connect to the start of media (Play.Start, an HTTP 200)
/// or Publish.Start at most.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect_timeout(addr, START_TIMEOUT)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Makes the socket readable only once `bytes` are queued (socket(7)), so a
/// player wakes for a video frame and reads the audio queued before it in
/// the same read, instead of waking for every small audio message.
pub fn set_rcvlowat(stream: &TcpStream, bytes: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a valid
    // pointer to `v`, which outlives the call; the fd is open (we own it).
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Readies a player's socket for media: the plan's SO_RCVLOWAT, and the
/// thread's [`crate::sweep::Sweeper`] set, whose registration the caller
/// must drop before the stream (declare it after).
pub fn media_socket(
    stream: &TcpStream,
    ctx: &crate::runtime::ThreadCtx,
) -> Result<crate::sweep::Registration, String> {
    use std::os::fd::AsRawFd;
    let bytes = ctx.plan.rcvlowat;
    if bytes > 1 {
        set_rcvlowat(stream, bytes).map_err(|e| format!("SO_RCVLOWAT: {e}"))?;
    }
    ctx.sweeper
        .register(stream.as_raw_fd())
        .map_err(|e| format!("epoll: {e}"))
}
