//! The system-call layer: every `unsafe` block of the crate lives below this module.
//!
//! Public here: [`eventfd::EventFd`] (also re-exported at the crate root) and the open-file
//! limit helpers in [`rlimit`]; the epoll and socket wrappers are internal.
//!
//! Each wrapper turns the C convention (`-1` plus `errno`) into an [`io::Result`] and retries
//! `EINTR` where a retry is the right answer (reads, writes, accepts). Callers above this layer
//! never see a raw pointer.

use std::io;

#[cfg(feature = "http")]
pub(crate) mod beneath;
pub(crate) mod epoll;
pub mod eventfd;
pub mod rlimit;
pub(crate) mod sendfile;
pub(crate) mod socket;
pub(crate) mod udp;

/// Converts a C return value into an `io::Result`, reading `errno` on `-1`.
pub(crate) fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but calls `f` again while it fails with `EINTR`.
pub(crate) fn cvt_retry<T: MinusOne>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(f()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Integer types a syscall returns, where `-1` means failure.
pub(crate) trait MinusOne: Copy {
    fn is_minus_one(self) -> bool;
}

impl MinusOne for i32 {
    fn is_minus_one(self) -> bool {
        self == -1
    }
}

impl MinusOne for isize {
    fn is_minus_one(self) -> bool {
        self == -1
    }
}
