//! The few libc calls the suite needs, and the io_uring peer's ring ([`uring`]). Every
//! `unsafe` block of the crate lives under this module.

use std::io;

pub mod uring;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `utime`/`stime` in
/// `/proc/PID/stat`. Falls back to 100, the value on every Linux architecture.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes an integer name and has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// The page size (`sysconf(_SC_PAGESIZE)`), 4096 if unknown.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes an integer name and has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (capped at the hard limit) and returns the
/// new soft limit. Children started afterwards inherit it.
pub fn raise_nofile_limit(want: libc::rlim_t) -> io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = want.min(lim.rlim_max);
    if lim.rlim_cur < target {
        lim.rlim_cur = target;
        // SAFETY: `lim` is a valid rlimit; setrlimit only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill has no memory-safety preconditions; `pid` is a specific positive process id
    // (never 0 or -1, which would signal a process group or every process).
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends SIGTERM to `pid`.
pub fn terminate(pid: u32) -> io::Result<()> {
    kill(pid, libc::SIGTERM)
}

/// Sends SIGINT to `pid` (how `perf stat -p` is asked to print its counts and exit).
pub fn interrupt(pid: u32) -> io::Result<()> {
    kill(pid, libc::SIGINT)
}
