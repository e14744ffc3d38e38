//! `eventfd(2)`: a loop's wake-up descriptor, a kernel `u64` counter behind a descriptor.
//!
//! Every event loop keeps one in its epoll set, registered for **readability**: the descriptor
//! is readable while the counter is non-zero, so a write from another thread makes a blocked
//! `epoll_wait` return. (Registering it for `EPOLLOUT` would be a bug: an eventfd is almost always
//! writable, so a level-triggered `EPOLLOUT` interest makes `epoll_wait` return forever.)

use std::fmt;
use std::io;
use std::ops::BitOr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt_retry;

/// Creation flags for an [`EventFd`], combinable with `|`.
///
/// ```
/// use eventide::{EventFd, EventFdFlags};
/// let efd = EventFd::new(0, EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFdFlags(i32);

impl EventFdFlags {
    /// No flags: blocking reads, descriptor inherited across `exec`.
    pub const NONE: EventFdFlags = EventFdFlags(0);
    /// `EFD_NONBLOCK`: a read of a zero counter fails with `WouldBlock` instead of blocking.
    pub const NONBLOCK: EventFdFlags = EventFdFlags(libc::EFD_NONBLOCK);
    /// `EFD_CLOEXEC`: the descriptor is closed on `exec`.
    pub const CLOEXEC: EventFdFlags = EventFdFlags(libc::EFD_CLOEXEC);
    /// `EFD_SEMAPHORE`: each read returns 1 and decrements the counter by 1.
    pub const SEMAPHORE: EventFdFlags = EventFdFlags(libc::EFD_SEMAPHORE);

    /// Whether every flag in `other` is set in `self`.
    pub fn contains(self, other: EventFdFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for EventFdFlags {
    type Output = EventFdFlags;
    fn bitor(self, rhs: EventFdFlags) -> EventFdFlags {
        EventFdFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for EventFdFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        for (flag, name) in [
            (Self::NONBLOCK, "NONBLOCK"),
            (Self::CLOEXEC, "CLOEXEC"),
            (Self::SEMAPHORE, "SEMAPHORE"),
        ] {
            if self.contains(flag) {
                names.push(name);
            }
        }
        if names.is_empty() {
            names.push("NONE");
        }
        write!(f, "EventFdFlags({})", names.join(" | "))
    }
}

/// An event counter in the kernel (`eventfd(2)`): `write` adds to it, `read` returns it and
/// resets it to zero.
///
/// ```
/// use eventide::{EventFd, EventFdFlags};
/// use std::io::ErrorKind;
///
/// let efd = EventFd::new(0, EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC)?;
/// efd.write(2)?;
/// efd.write(3)?;
/// assert_eq!(efd.read()?, 5); // the sum, and the counter is now zero
/// assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(initval, flags)`: a new counter starting at `initval`.
    pub fn new(initval: u32, flags: EventFdFlags) -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; on success it returns a fresh descriptor.
        let fd = cvt_retry(|| unsafe { libc::eventfd(initval, flags.0) })?;
        // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Adds `value` to the counter (an 8-byte write).
    ///
    /// Fails with `InvalidInput` for `u64::MAX`, and with `WouldBlock` on a non-blocking
    /// eventfd whose counter would exceed `u64::MAX - 1`.
    pub fn write(&self, value: u64) -> io::Result<()> {
        let bytes = value.to_ne_bytes();
        cvt_retry(|| {
            inject!(super::faults::eventfd_write());
            // SAFETY: `bytes` is a valid 8-byte buffer that outlives the call.
            unsafe { libc::write(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) }
        })?;
        Ok(())
    }

    /// Returns the counter and resets it to zero (an 8-byte read). With
    /// [`EventFdFlags::SEMAPHORE`], returns 1 and decrements instead.
    ///
    /// On a zero counter a non-blocking eventfd fails with `WouldBlock`; a blocking one waits.
    pub fn read(&self) -> io::Result<u64> {
        let mut bytes = [0u8; 8];
        self.read_into(&mut bytes)?;
        Ok(u64::from_ne_bytes(bytes))
    }

    /// The raw `read(2)` behind [`EventFd::read`], taking any buffer: one shorter than eight
    /// bytes fails with `InvalidInput` (`EINVAL`), as the kernel defines.
    pub(crate) fn read_into(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = cvt_retry(|| {
            inject!(super::faults::eventfd_read());
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
            unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
        })?;
        Ok(n as usize)
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;

    fn nonblocking() -> EventFd {
        EventFd::new(0, EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC).unwrap()
    }

    #[test]
    fn initial_value_is_read_back() {
        let efd = EventFd::new(7, EventFdFlags::NONBLOCK).unwrap();
        assert_eq!(efd.read().unwrap(), 7);
    }

    #[test]
    fn writes_add_and_read_resets() {
        let efd = nonblocking();
        efd.write(1).unwrap();
        efd.write(41).unwrap();
        assert_eq!(efd.read().unwrap(), 42);
        assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
        efd.write(3).unwrap();
        assert_eq!(efd.read().unwrap(), 3);
    }

    #[test]
    fn nonblocking_read_of_zero_would_block() {
        let efd = nonblocking();
        assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
    }

    #[test]
    fn short_read_buffer_is_invalid_input() {
        let efd = nonblocking();
        efd.write(5).unwrap();
        let mut short = [0u8; 7];
        let err = efd.read_into(&mut short).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        // The failed read left the counter alone.
        assert_eq!(efd.read().unwrap(), 5);
    }

    #[test]
    fn max_value_write_is_invalid_and_overflow_would_block() {
        let efd = nonblocking();
        assert_eq!(
            efd.write(u64::MAX).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        efd.write(u64::MAX - 1).unwrap();
        assert_eq!(efd.write(1).unwrap_err().kind(), ErrorKind::WouldBlock);
        assert_eq!(efd.read().unwrap(), u64::MAX - 1);
    }

    #[test]
    fn semaphore_mode_decrements_by_one() {
        let efd = EventFd::new(2, EventFdFlags::NONBLOCK | EventFdFlags::SEMAPHORE).unwrap();
        assert_eq!(efd.read().unwrap(), 1);
        assert_eq!(efd.read().unwrap(), 1);
        assert_eq!(efd.read().unwrap_err().kind(), ErrorKind::WouldBlock);
    }

    #[test]
    fn blocking_read_waits_for_a_write() {
        let efd = std::sync::Arc::new(EventFd::new(0, EventFdFlags::CLOEXEC).unwrap());
        let writer = efd.clone();
        let t = std::thread::spawn(move || writer.write(9).unwrap());
        assert_eq!(efd.read().unwrap(), 9);
        t.join().unwrap();
    }

    #[test]
    fn flags_debug_names_them() {
        let f = EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC;
        assert_eq!(format!("{f:?}"), "EventFdFlags(NONBLOCK | CLOEXEC)");
        assert_eq!(format!("{:?}", EventFdFlags::NONE), "EventFdFlags(NONE)");
    }
}
