//! `poll(2)` for the control threads (signals, listener handover), which wait on a few
//! descriptors at a time and never on the hot path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Waits until one of `fds` is readable (or hung up), or `timeout` passes; returns a bit per
/// descriptor (bit i for `fds[i]`), zero on timeout or when a signal interrupted the wait.
pub(crate) fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<u64> {
    assert!(fds.len() <= 64, "at most 64 descriptors");
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        // Round up, so a short timeout does not become a busy poll.
        let ms = t.as_nanos().div_ceil(1_000_000);
        ms.min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `polled` is a valid array of `polled.len()` pollfd structs.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(polled
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .fold(0, |bits, (i, _)| bits | 1 << i))
}
