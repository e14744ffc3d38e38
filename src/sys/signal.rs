//! Termination signals turned into a readable descriptor: a `sigaction` handler that only
//! writes to an eventfd (the self-pipe trick), to wait on with [`poll`](super::poll) beside
//! other descriptors.
//!
//! Why not `signalfd`: it reports a signal only while the signal is blocked in *every* thread,
//! or a thread that has it unblocked takes the default action (for SIGTERM: death). A library
//! cannot block signals in threads it did not create (the application's, a runtime's), and
//! threads created before the mask was set keep theirs. A handler works whatever the masks
//! are: the kernel runs it on any thread that has the signal unblocked.
//!
//! The handler is async-signal-safe: it stores the signal number in an atomic and makes one
//! `write(2)` to the eventfd, saving and restoring `errno` around it. The eventfd is created
//! once and never closed, so a handler running on another thread while the handlers are
//! being restored can never write into a descriptor number that was closed and reused.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::sync::OnceLock;

use super::cvt;
use super::eventfd::{EventFd, EventFdFlags};

/// The descriptor the handler writes to (`-1` before the first installation).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The last signal delivered.
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether a [`SignalGuard`] holds the handlers now.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The process's signal eventfd, made on first use and kept for the life of the process.
fn wake() -> io::Result<&'static EventFd> {
    static WAKE: OnceLock<EventFd> = OnceLock::new();
    if let Some(w) = WAKE.get() {
        return Ok(w);
    }
    let efd = EventFd::new(0, EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC)?;
    let w = WAKE.get_or_init(|| efd);
    WAKE_FD.store(w.as_raw_fd(), SeqCst);
    Ok(w)
}

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    LAST_SIGNAL.store(signal, SeqCst);
    let fd = WAKE_FD.load(SeqCst);
    if fd >= 0 {
        let one = 1u64.to_ne_bytes();
        // SAFETY: `one` is a valid 8-byte buffer; `fd` is the never-closed eventfd. write(2)
        // is async-signal-safe; a full counter (EAGAIN) loses nothing, the reader wakes anyway.
        unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Handlers for some signals, installed for as long as the guard lives; the previous
/// dispositions are restored when it drops. One guard at a time per process.
pub(crate) struct SignalGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    /// Installs the handler for `signals`. Fails with `AlreadyExists` while another guard
    /// holds them.
    pub(crate) fn install(signals: &[libc::c_int]) -> io::Result<SignalGuard> {
        if INSTALLED.swap(true, SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the shutdown signal handlers are installed already",
            ));
        }
        let mut guard = SignalGuard {
            previous: Vec::new(),
        };
        let efd = wake()?;
        let _ = efd.read(); // what a previous guard left unread
        for &signal in signals {
            // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags) that is
            // filled in below before use.
            let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            // SAFETY: `sa_mask` is a valid sigset_t owned by `action`.
            unsafe { libc::sigemptyset(&mut action.sa_mask) };
            // SAFETY: as above; `old` is written by the kernel before it is read.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: both pointers are valid sigaction structs for the duration of the call.
            cvt(unsafe { libc::sigaction(signal, &action, &mut old) })?;
            guard.previous.push((signal, old));
        }
        Ok(guard)
    }

    /// The descriptor that becomes readable when one of the signals arrives.
    pub(crate) fn fd(&self) -> BorrowedFd<'static> {
        let efd = wake().expect("made by install");
        // SAFETY: the eventfd is never closed (it lives in a static).
        unsafe { BorrowedFd::borrow_raw(efd.as_raw_fd()) }
    }

    /// How many signals arrived since the last call (0 if none), and the last one.
    pub(crate) fn take(&self) -> (u64, libc::c_int) {
        let n = wake().map_or(0, |w| w.read().unwrap_or(0));
        (n, LAST_SIGNAL.load(SeqCst))
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, old) in self.previous.drain(..).rev() {
            // SAFETY: `old` is the disposition the kernel gave back at installation.
            unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
        }
        INSTALLED.store(false, SeqCst);
    }
}

/// The name of a signal for logs (`SIGTERM`), or its number.
pub(crate) fn name(signal: libc::c_int) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_signal_wakes_the_descriptor_and_the_old_handler_returns() {
        // SIGUSR2: nothing else in the test process uses it.
        let guard = SignalGuard::install(&[libc::SIGUSR2]).unwrap();
        assert!(
            SignalGuard::install(&[libc::SIGUSR2]).is_err(),
            "one guard at a time"
        );
        assert_eq!(
            crate::sys::poll::wait_readable(&[guard.fd()], Some(Duration::ZERO)).unwrap(),
            0
        );
        // SAFETY: raising a signal whose handler is installed.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(
            crate::sys::poll::wait_readable(&[guard.fd()], Some(Duration::from_secs(60))).unwrap(),
            1
        );
        assert_eq!(guard.take(), (1, libc::SIGUSR2));
        assert_eq!(guard.take().0, 0);
        drop(guard);
        // SAFETY: reading the current disposition only.
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        unsafe { libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut now) };
        assert_eq!(
            now.sa_sigaction,
            libc::SIG_DFL,
            "the default disposition is back"
        );
    }
}
