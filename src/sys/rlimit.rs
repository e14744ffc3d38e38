//! The open-file limit (`RLIMIT_NOFILE`), which bounds how many connections a process can hold.
//!
//! Servers usually raise the soft limit to the hard limit at start-up (Go's runtime does it
//! automatically); [`raise_nofile_limit`] does that.

use std::io;

use super::cvt;

/// The `(soft, hard)` limit on open descriptors of this process.
///
/// ```
/// let (soft, hard) = eventide::sys::rlimit::nofile_limit()?;
/// assert!(soft <= hard);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which is valid for that write.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets the soft limit on open descriptors (it cannot exceed the hard limit).
pub fn set_nofile_limit(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit()?;
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit through the pointer, which is valid for that read.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit()?;
    if soft < hard {
        set_nofile_limit(hard)?;
    }
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_reaches_hard_limit() {
        let (_, hard) = nofile_limit().unwrap();
        assert_eq!(raise_nofile_limit().unwrap(), hard);
        assert_eq!(nofile_limit().unwrap().0, hard);
    }
}
