//! The syscall pass: `perf stat` counts the server's syscalls and epoll waits while a load
//! runs, and `perf record` of the epoll exit tracepoints gives the events per wait. Tracing
//! slows every syscall, so this never overlaps a timed run.

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::procs::{self, tail};

/// Syscall counts from one traced run.
#[derive(Debug, Clone, Default)]
pub struct SyscallStats {
    /// All syscalls entered by the server.
    pub syscalls: u64,
    /// epoll_wait + epoll_pwait + epoll_pwait2 calls.
    pub epoll_waits: u64,
    /// Mean events returned per epoll wait (from `perf record` of the exit tracepoints).
    pub events_per_wait: Option<f64>,
    /// Requests completed during the traced run.
    pub requests: u64,
}

impl SyscallStats {
    /// Syscalls per request.
    pub fn per_request(&self) -> f64 {
        self.syscalls as f64 / self.requests.max(1) as f64
    }
}

/// Which epoll wait tracepoints exist on this kernel (`perf list 'syscalls:*epoll*'`).
pub fn epoll_wait_tracepoints() -> Vec<String> {
    let out = Command::new("perf")
        .args(["list", "syscalls:*epoll*"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    ["epoll_wait", "epoll_pwait", "epoll_pwait2"]
        .iter()
        .map(|s| s.to_string())
        .filter(|s| out.contains(&format!("syscalls:sys_enter_{s} ")))
        .collect()
}

/// Traces the processes `pids` (comma-separated: a server and its child processes) with `perf stat` (syscall counts) and `perf record` (epoll wait results) while
/// `load` runs; `load` returns the requests it completed.
pub fn traced<F: FnOnce() -> io::Result<u64>>(
    pids: &str,
    waits: &[String],
    tmp: &Path,
    load: F,
) -> io::Result<SyscallStats> {
    let tag = pids.split(',').next().unwrap_or("0");
    let stat_out = tmp.join(format!("perf-stat-{tag}.txt"));
    let rec_out = tmp.join(format!("perf-record-{tag}.data"));
    let mut stat = procs::load_command("perf");
    stat.args(["stat", "-x", ",", "-o"]).arg(&stat_out);
    stat.args(["-e", "raw_syscalls:sys_enter"]);
    for w in waits {
        stat.args(["-e", &format!("syscalls:sys_enter_{w}")]);
    }
    stat.args(["-p", pids]);
    let mut stat = stat.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stat_err = procs::spawn_collect(stat.stderr.take().expect("piped"));
    let mut rec = if waits.is_empty() {
        None
    } else {
        let mut c = procs::load_command("perf");
        c.args(["record", "-q", "-m", "1024", "-o"]).arg(&rec_out);
        for w in waits {
            c.args(["-e", &format!("syscalls:sys_exit_{w}")]);
        }
        c.args(["-p", pids]);
        c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
    };
    // Let both attach before the load starts.
    std::thread::sleep(Duration::from_millis(700));
    let load_res = load();
    let _ = eventide_bench::sys::interrupt(stat.id());
    if let Some(r) = &rec {
        let _ = eventide_bench::sys::interrupt(r.id());
    }
    let stat_status = procs::wait_timeout(&mut stat, Duration::from_secs(20));
    if stat_status.is_none() {
        let _ = stat.kill();
        let _ = stat.wait();
    }
    if let Some(r) = rec.as_mut() {
        if procs::wait_timeout(r, Duration::from_secs(60)).is_none() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
    let stat_err = stat_err.join().unwrap_or_default();
    let requests = load_res?;
    let text = std::fs::read_to_string(&stat_out).map_err(|e| {
        io::Error::other(format!("perf stat wrote nothing ({e}){}", tail(&stat_err)))
    })?;
    let mut st = SyscallStats {
        requests,
        ..Default::default()
    };
    for line in text.lines() {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 {
            continue;
        }
        let Ok(count) = cols[0].trim().parse::<u64>() else {
            continue;
        };
        let ev = cols[2].trim();
        if ev == "raw_syscalls:sys_enter" {
            st.syscalls = count;
        } else if ev.starts_with("syscalls:sys_enter_epoll") {
            st.epoll_waits += count;
        }
    }
    if st.syscalls == 0 {
        return Err(io::Error::other(format!(
            "perf stat counted no syscalls{}",
            tail(&stat_err)
        )));
    }
    if rec.is_some() {
        st.events_per_wait = events_per_wait(&rec_out);
    }
    let _ = std::fs::remove_file(&stat_out);
    let _ = std::fs::remove_file(&rec_out);
    Ok(st)
}

/// Mean return value of the recorded epoll wait exits (errors such as EINTR excluded).
fn events_per_wait(data: &Path) -> Option<f64> {
    let out = Command::new("perf")
        .args(["script", "-F", "trace", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut sum, mut n) = (0u64, 0u64);
    for line in text.lines() {
        let v = line.trim();
        let v = v.rsplit(' ').next().unwrap_or(v);
        let parsed = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse::<u64>().ok(),
        };
        if let Some(r) = parsed {
            if r < (1 << 31) {
                sum += r;
                n += 1;
            }
        }
    }
    (n > 0).then(|| sum as f64 / n as f64)
}
