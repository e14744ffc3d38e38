//! Context switches of a server, voluntary and involuntary, from `/proc/PID/task/*/status`.
//!
//! A voluntary switch is the thread blocking (an `epoll_wait` or `io_uring_enter` that sleeps, a
//! futex wait between a runtime's threads); an involuntary one is the thread being preempted.
//! `perf stat -e context-switches` counts both together, so the split comes from the kernel's
//! per-thread counters. `/proc/PID/status` holds only its main thread's, so every thread of
//! every server process is read, and the counts are kept per thread: a thread that starts in
//! the window counts from zero, and one that exits in it is reported (its switches since the
//! first snapshot are lost).

use std::collections::BTreeMap;
use std::io;

/// Context switches, summed over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// Switches out because the thread blocked.
    pub voluntary: u64,
    /// Switches out because the thread was preempted.
    pub involuntary: u64,
}

/// Each thread's counters, keyed by thread id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<u32, Switches>);

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Switches of the threads alive at the second snapshot.
    pub switches: Switches,
    /// Threads of the first snapshot gone by the second.
    pub exited: usize,
}

/// The two counters of one `/proc/PID/task/TID/status` text.
pub fn parse_status(text: &str) -> Option<Switches> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(Switches {
        voluntary: field("voluntary_ctxt_switches")?,
        involuntary: field("nonvoluntary_ctxt_switches")?,
    })
}

/// Reads every thread of every process in `pids` (comma-separated, as given to `perf -p`).
pub fn snapshot(pids: &str) -> io::Result<Snapshot> {
    let mut threads = BTreeMap::new();
    for pid in pids.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let dir = format!("/proc/{pid}/task");
        let tasks = std::fs::read_dir(&dir).map_err(|e| io::Error::other(format!("{dir}: {e}")))?;
        for task in tasks {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // A thread may exit between the listing and the read: it is simply not there.
            let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let sw = parse_status(&text).ok_or_else(|| {
                io::Error::other(format!("{dir}/{tid}/status: no *ctxt_switches fields"))
            })?;
            threads.insert(tid, sw);
        }
    }
    Ok(Snapshot(threads))
}

impl Snapshot {
    /// The switches from `earlier` to `self`, thread by thread.
    pub fn since(&self, earlier: &Snapshot) -> Delta {
        let mut switches = Switches::default();
        for (tid, now) in &self.0 {
            let before = earlier.0.get(tid).copied().unwrap_or_default();
            switches.voluntary += now.voluntary.saturating_sub(before.voluntary);
            switches.involuntary += now.involuntary.saturating_sub(before.involuntary);
        }
        let exited = earlier.0.keys().filter(|t| !self.0.contains_key(t)).count();
        Delta { switches, exited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttokio-runtime-w\nState:\tS (sleeping)\nTgid:\t4242\n\
Pid:\t4243\nVmRSS:\t    2048 kB\nvoluntary_ctxt_switches:\t1520\n\
nonvoluntary_ctxt_switches:\t37\n";

    #[test]
    fn parses_both_counters() {
        assert_eq!(
            parse_status(STATUS),
            Some(Switches {
                voluntary: 1520,
                involuntary: 37
            })
        );
    }

    #[test]
    fn voluntary_is_not_read_from_the_nonvoluntary_line() {
        // "nonvoluntary_ctxt_switches" ends with "voluntary_ctxt_switches": only a line that
        // starts with the name counts.
        let only_non = "nonvoluntary_ctxt_switches:\t9\n";
        assert_eq!(parse_status(only_non), None);
    }

    #[test]
    fn a_status_without_the_fields_is_none() {
        assert_eq!(parse_status("Name:\tx\nState:\tR (running)\n"), None);
        assert_eq!(parse_status("voluntary_ctxt_switches:\tmany\n"), None);
    }

    fn snap(v: &[(u32, u64, u64)]) -> Snapshot {
        Snapshot(
            v.iter()
                .map(|&(t, vol, inv)| {
                    (
                        t,
                        Switches {
                            voluntary: vol,
                            involuntary: inv,
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn delta_is_per_thread_with_new_threads_from_zero_and_exits_counted() {
        let before = snap(&[(10, 100, 5), (11, 50, 1), (12, 7, 0)]);
        // 11 grew, 12 exited, 13 started in the window.
        let after = snap(&[(10, 100, 5), (11, 80, 3), (13, 4, 1)]);
        assert_eq!(
            after.since(&before),
            Delta {
                switches: Switches {
                    voluntary: 34,
                    involuntary: 3
                },
                exited: 1
            }
        );
    }

    #[test]
    fn snapshot_of_this_process_sees_its_threads() {
        let me = std::process::id().to_string();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = ready_tx.send(());
            let _ = rx.recv();
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the helper thread did not start within 10 s");
        let s = snapshot(&me).expect("reading /proc/self/task/*/status");
        let _ = tx.send(());
        t.join().expect("helper thread");
        assert!(s.0.len() >= 2, "main thread and helper: {:?}", s.0.keys());
        assert!(snapshot("4294967295").is_err(), "a pid that cannot exist");
    }
}
