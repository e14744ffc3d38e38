//! systemd socket activation: the listening sockets a service manager opened for this process,
//! as `sd_listen_fds(3)` finds them — descriptors 3, 4, ... (`LISTEN_FDS` of them) when
//! `LISTEN_PID` is this process, named by `LISTEN_FDNAMES` (colon-separated).
//!
//! Like `sd_listen_fds(unset_environment = 1)`, reading the variables removes them, so child
//! processes do not believe the sockets are theirs; the descriptors are made close-on-exec
//! for the same reason. They are taken once: with the variables gone, a second call finds
//! nothing.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// What the variables say: how many descriptors, and their names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Passed {
    pub count: usize,
    pub names: Vec<Option<String>>,
}

/// Reads the protocol's variables (`None` where unset) for process `pid`: `Ok(None)` when
/// they are not meant for it.
pub(crate) fn parse(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
) -> io::Result<Option<Passed>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let Some(listen_pid) = listen_pid else {
        return Ok(None);
    };
    let for_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_PID={listen_pid:?} is not a process id")))?;
    if for_pid != pid {
        return Ok(None);
    }
    let fds = listen_fds.unwrap_or("0");
    let count: usize = fds
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_FDS={fds:?} is not a count")))?;
    if count > (i32::MAX - FIRST_FD) as usize {
        return Err(invalid(format!("LISTEN_FDS={fds:?} is too large")));
    }
    let names = match names {
        None => vec![None; count],
        Some("") if count == 0 => Vec::new(),
        Some(list) => {
            let names: Vec<Option<String>> = list
                .split(':')
                .map(|n| (!n.is_empty()).then(|| n.to_string()))
                .collect();
            if names.len() != count {
                return Err(invalid(format!(
                    "LISTEN_FDNAMES={list:?} names {} descriptors, LISTEN_FDS says {count}",
                    names.len()
                )));
            }
            names
        }
    };
    Ok(Some(Passed { count, names }))
}

/// Takes the descriptors systemd passed to this process, with their names, and removes the
/// variables. Empty when it passed none (or they were taken already).
///
/// Call it early, before other threads start: removing environment variables races with
/// threads reading the environment.
pub(crate) fn take() -> io::Result<Vec<(OwnedFd, Option<String>)>> {
    let var = |name: &str| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(passed) = parse(
        std::process::id(),
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
    )?
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(passed.count);
    for (i, name) in passed.names.into_iter().enumerate() {
        let fd = FIRST_FD + i as RawFd;
        // SAFETY: F_SETFD on a descriptor number: fails with EBADF if it is not open, touches
        // no memory.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })
            .map_err(|e| io::Error::new(e.kind(), format!("LISTEN_FDS descriptor {fd}: {e}")))?;
        // SAFETY: the protocol hands descriptors 3.. to this process for it to own; the
        // variables are removed above, so they are wrapped only once, and the fcntl showed
        // this one is open.
        out.push((unsafe { OwnedFd::from_raw_fd(fd) }, name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_variables_as_sd_listen_fds_does() {
        assert_eq!(parse(7, None, Some("2"), None).unwrap(), None);
        assert_eq!(
            parse(7, Some("8"), Some("2"), None).unwrap(),
            None,
            "not ours"
        );
        let p = parse(7, Some("7"), Some("2"), None).unwrap().unwrap();
        assert_eq!(
            p,
            Passed {
                count: 2,
                names: vec![None, None]
            }
        );
        let p = parse(7, Some("7"), Some("2"), Some("http:"))
            .unwrap()
            .unwrap();
        assert_eq!(p.names, vec![Some("http".to_string()), None]);
        assert_eq!(parse(7, Some("7"), None, None).unwrap().unwrap().count, 0);
        assert_eq!(
            parse(7, Some("7"), Some("0"), Some(""))
                .unwrap()
                .unwrap()
                .names,
            vec![]
        );
        for (pid, fds, names) in [
            ("x", "1", None),
            ("7", "-1", None),
            ("7", "two", None),
            ("7", "2", Some("one")),
        ] {
            let e = parse(7, Some(pid), Some(fds), names).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
    }
}
