//! Reading players' media without a wakeup per packet.
//!
//! On loopback the server's `sendmsg` runs the receiving socket's TCP input
//! and wakes whoever waits on it, on the server's CPU time. A glommio read
//! waits with an io_uring poll, and each wake of it costs the sender a
//! cross-CPU interrupt: profiled at 1000 players, half of the server's CPU
//! went there, a cost that on a real network falls on the players'
//! machines. So once media flows, players wait here instead: every socket
//! is in one edge-triggered epoll set per thread, which the thread checks
//! without blocking every [`SWEEP_TICK`]. A packet then costs the sender a
//! list insert, and the thread wakes once per tick, not once per packet.
//! Time stamps taken on reads are late by up to one tick.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How often a thread collects readable sockets.
pub const SWEEP_TICK: Duration = Duration::from_millis(1);
/// Readiness events taken per `epoll_wait`; more wait for the next call.
const EVENTS_MAX: usize = 1024;

#[derive(Default)]
struct Slot {
    ready: bool,
    waker: Option<Waker>,
}

/// One thread's epoll set and the players waiting on it.
pub struct Sweeper {
    epoll: OwnedFd,
    slots: RefCell<HashMap<RawFd, Slot>>,
}

impl Sweeper {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sweeper {
            // SAFETY: `fd` was just created and is owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(HashMap::new()),
        })
    }

    /// Adds a socket; it is read with [`Sweeper::read`] until the returned
    /// guard drops (which must happen before the socket closes).
    pub fn register(self: &Rc<Self>, fd: RawFd) -> io::Result<Registration> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: fd as u64,
        };
        // SAFETY: both fds are open; `ev` outlives the call.
        let r =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Edge-triggered: data that arrived before the ADD raised no edge.
        self.slots.borrow_mut().insert(
            fd,
            Slot {
                ready: true,
                waker: None,
            },
        );
        Ok(Registration {
            sweeper: self.clone(),
            fd,
        })
    }

    /// Reads what is there, waiting for the next sweep that finds the
    /// socket readable if nothing is. 0 = end of stream.
    pub async fn read(&self, reg: &Registration, buf: &mut [u8]) -> io::Result<usize> {
        let fd = reg.fd;
        loop {
            // SAFETY: `buf` is valid for writes of its length; `fd` is open
            // while `reg` lives.
            let n =
                unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {}
                _ => return Err(e),
            }
            poll_fn(|cx| {
                let mut slots = self.slots.borrow_mut();
                let Some(slot) = slots.get_mut(&fd) else {
                    return Poll::Ready(());
                };
                if std::mem::take(&mut slot.ready) {
                    Poll::Ready(())
                } else {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
        }
    }

    /// Marks every socket that became readable since the last call and
    /// wakes its reader. Never blocks.
    fn collect(&self) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX];
        loop {
            // SAFETY: `events` is valid for EVENTS_MAX entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_MAX as libc::c_int,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut slots = self.slots.borrow_mut();
            for ev in &events[..n as usize] {
                if let Some(slot) = slots.get_mut(&(ev.u64 as RawFd)) {
                    slot.ready = true;
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            if (n as usize) < EVENTS_MAX {
                return Ok(());
            }
        }
    }

    /// The thread's sweep loop: runs until the thread stops.
    pub async fn run(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(SWEEP_TICK).await;
            if let Err(e) = self.collect() {
                eprintln!("shardcast-bench: epoll_wait: {e}");
                return;
            }
        }
    }
}

/// A socket in a [`Sweeper`]; removes it when dropped.
pub struct Registration {
    sweeper: Rc<Sweeper>,
    fd: RawFd,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: removing an fd the set holds; a failure (already closed)
        // changes nothing.
        unsafe {
            libc::epoll_ctl(
                self.sweeper.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                self.fd,
                std::ptr::null_mut(),
            );
        }
        self.sweeper.slots.borrow_mut().remove(&self.fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_what_arrived_before_and_after_registration() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let sweeper = Rc::new(Sweeper::new().unwrap());
                glommio::spawn_local(sweeper.clone().run()).detach();
                let (ours, mut theirs) = UnixStream::pair().unwrap();
                theirs.write_all(b"early").unwrap();
                let reg = sweeper.register(ours.as_raw_fd()).unwrap();
                let mut buf = [0u8; 16];
                let n = sweeper.read(&reg, &mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"early");
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    theirs.write_all(b"late").unwrap();
                    theirs
                });
                let n = sweeper.read(&reg, &mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"late");
                drop(writer.join().unwrap());
                assert_eq!(
                    sweeper.read(&reg, &mut buf).await.unwrap(),
                    0,
                    "end of stream"
                );
                drop(reg);
                assert!(sweeper.slots.borrow().is_empty());
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
