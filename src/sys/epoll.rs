//! `epoll(7)`: the readiness multiplexer under every event loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::cvt;

/// Readiness for reading (and, on a listener, a non-empty accept queue).
pub(crate) const READABLE: u32 = libc::EPOLLIN as u32;
/// Room in the socket's send buffer.
pub(crate) const WRITABLE: u32 = libc::EPOLLOUT as u32;
/// The peer shut down its write side (a FIN arrived).
pub(crate) const READ_CLOSED: u32 = libc::EPOLLRDHUP as u32;
/// Both directions are closed, or the connection was reset. Always reported.
pub(crate) const HANG_UP: u32 = libc::EPOLLHUP as u32;
/// An error is pending on the socket (`SO_ERROR`). Always reported.
pub(crate) const ERROR: u32 = libc::EPOLLERR as u32;
/// Edge-triggered notification.
pub(crate) const EDGE: u32 = libc::EPOLLET as u32;

/// An epoll instance, closed on drop.
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; on success it returns a new descriptor that
        // nothing else owns, so wrapping it in an OwnedFd is sound.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Registers `fd` with the given interest; `token` comes back with each event.
    pub(crate) fn add(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest, token)
    }

    /// Replaces the interest (and token) of a registered `fd`.
    pub(crate) fn modify(&self, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest, token)
    }

    /// Removes `fd` from the interest list.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    fn ctl(&self, op: i32, fd: RawFd, interest: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest,
            u64: token,
        };
        #[cfg(feature = "faults")]
        super::faults::epoll_ctl(op).map_err(io::Error::from_raw_os_error)?;
        // SAFETY: `event` is a valid, initialised epoll_event that outlives the call (the kernel
        // copies it); for EPOLL_CTL_DEL the kernel ignores it.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) })?;
        #[cfg(feature = "faults")]
        super::faults::registered(self.fd.as_raw_fd(), op, fd, interest, token);
        Ok(())
    }

    /// Waits for events. `None` waits forever; a timeout is rounded *up* to the next
    /// millisecond so that a loop never wakes just before a timer is due and spins.
    /// An interrupted wait (`EINTR`) returns zero events: the caller re-checks its timers.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let timeout_ms = timeout_millis(timeout);
        events.len = 0;
        let capacity = events.buf.len().min(i32::MAX as usize) as i32;
        let epfd = self.fd.as_raw_fd();
        let buf = events.buf.as_mut_ptr();
        // SAFETY (both calls): `buf` is an initialised buffer of `capacity` epoll_event
        // values, and the kernel writes at most `capacity` entries into it.
        #[cfg(feature = "faults")]
        let (res, extra) = super::faults::wait(epfd, timeout_ms, |timeout_ms| unsafe {
            libc::epoll_wait(epfd, buf, capacity, timeout_ms)
        });
        #[cfg(not(feature = "faults"))]
        let res = unsafe { libc::epoll_wait(epfd, buf, capacity, timeout_ms) };
        let res = cvt(res);
        match res {
            Ok(n) => {
                #[cfg(feature = "faults")]
                let n = super::faults::merge(&mut events.buf, n as usize, extra) as i32;
                events.len = n as usize;
                Ok(events.len)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Converts an optional timeout into epoll's milliseconds, rounding up.
pub(crate) fn timeout_millis(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        }
    }
}

/// A reusable buffer of events filled by [`Epoll::wait`].
pub(crate) struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// A buffer that can receive up to `capacity` events per wait.
    pub(crate) fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    /// The `i`-th event as `(token, readiness flags)`.
    pub(crate) fn get(&self, i: usize) -> (u64, u32) {
        // epoll_event is packed on x86_64: copy the fields out by value.
        let ev = self.buf[i];
        (ev.u64, ev.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounds_up() {
        assert_eq!(timeout_millis(None), -1);
        assert_eq!(timeout_millis(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_millis(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_millis(Some(Duration::from_micros(1500))), 2);
        assert_eq!(timeout_millis(Some(Duration::from_millis(7))), 7);
        assert_eq!(
            timeout_millis(Some(Duration::from_secs(u64::MAX))),
            i32::MAX
        );
    }

    #[test]
    fn reports_readiness_with_token() {
        let ep = Epoll::new().unwrap();
        let efd =
            super::super::eventfd::EventFd::new(0, super::super::eventfd::EventFdFlags::NONBLOCK)
                .unwrap();
        ep.add(efd.as_raw_fd(), READABLE, 42).unwrap();
        let mut events = Events::with_capacity(8);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        efd.write(1).unwrap();
        assert_eq!(
            ep.wait(&mut events, Some(Duration::from_secs(5))).unwrap(),
            1
        );
        let (token, flags) = events.get(0);
        assert_eq!(token, 42);
        assert_ne!(flags & READABLE, 0);
        ep.delete(efd.as_raw_fd()).unwrap();
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    }
}
