//! The system-call layer: every `unsafe` block of the crate lives below this module.
//!
//! Public here: [`eventfd::EventFd`] (also re-exported at the crate root) and the open-file
//! limit helpers in [`rlimit`]; the epoll and socket wrappers are internal.
//!
//! Each wrapper turns the C convention (`-1` plus `errno`) into an [`io::Result`] and retries
//! `EINTR` where a retry is the right answer (reads, writes, accepts). Callers above this layer
//! never see a raw pointer.
//!
//! With the feature `faults`, [`faults`] can make those wrappers fail or cut calls short on
//! purpose (see its documentation); without it, the hooks are not compiled at all.

use std::io;

/// Lets the fault injector (feature `faults`) decide the call about to be made: `$hook` is its
/// verdict, `Ok(value)` to use in place of `$plain`, or `Err(errno)` to return `-1` with that
/// `errno` from the enclosing closure, exactly as the kernel fails a call (so `cvt_retry`
/// retries an injected `EINTR` like a real one). Without the feature it is `$plain`, and the
/// hook is not even compiled.
/// `inject!($hook)` is the same for a call whose arguments the injector never changes.
#[cfg(feature = "faults")]
macro_rules! inject {
    ($hook:expr, $plain:expr) => {
        match $hook {
            Ok(value) => value,
            Err(errno) => return $crate::sys::faults::fail(errno),
        }
    };
    ($hook:expr) => {
        if let Err(errno) = $hook {
            return $crate::sys::faults::fail(errno);
        }
    };
}
#[cfg(not(feature = "faults"))]
macro_rules! inject {
    ($hook:expr, $plain:expr) => {
        $plain
    };
    ($hook:expr) => {};
}

pub(crate) mod activation;
#[cfg(feature = "http")]
pub(crate) mod beneath;
pub(crate) mod epoll;
pub mod eventfd;
#[cfg(feature = "faults")]
#[cfg_attr(docsrs, doc(cfg(feature = "faults")))]
pub mod faults;
pub(crate) mod fdpass;
pub(crate) mod poll;
pub mod rlimit;
pub(crate) mod sendfile;
pub(crate) mod signal;
pub(crate) mod socket;
pub(crate) mod udp;

/// Converts a C return value into an `io::Result`, reading `errno` on `-1`.
#[inline]
pub(crate) fn cvt<T: MinusOne>(ret: T) -> io::Result<T> {
    if ret.is_minus_one() {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`], but calls `f` again while it fails with `EINTR`. (Inline: out of line, the
/// retry loop costs a read or a send a frame of saved registers around the syscall.)
#[inline]
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
    /// The failure value (what an injected fault returns).
    #[cfg(feature = "faults")]
    const MINUS_ONE: Self;
    fn is_minus_one(self) -> bool;
}

impl MinusOne for i32 {
    #[cfg(feature = "faults")]
    const MINUS_ONE: i32 = -1;
    fn is_minus_one(self) -> bool {
        self == -1
    }
}

impl MinusOne for isize {
    #[cfg(feature = "faults")]
    const MINUS_ONE: isize = -1;
    fn is_minus_one(self) -> bool {
        self == -1
    }
}
