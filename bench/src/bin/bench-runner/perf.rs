//! The syscall pass: `perf stat` counts the server's syscalls, epoll waits and context switches
//! while a load runs, `perf record` of the epoll exit tracepoints gives the events per wait, and
//! the server's threads' `/proc` counters split the context switches into voluntary (blocking)
//! and involuntary (preempted). Tracing slows every syscall, so this never overlaps a timed run.
//! A load whose set-up is a large share of a short run (the broadcast scenarios' 1,000
//! subscribers joining) is traced over its measured window only ([`traced_window`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::load::{self, Mark};
use crate::procs::{self, tail};
use crate::switches::{self, Switches};

/// Syscall counts from one traced run.
#[derive(Debug, Clone, Default)]
pub struct SyscallStats {
    /// All syscalls entered by the server.
    pub syscalls: u64,
    /// epoll_wait + epoll_pwait + epoll_pwait2 calls.
    pub epoll_waits: u64,
    /// Mean events returned per epoll wait (from `perf record` of the exit tracepoints).
    pub events_per_wait: Option<f64>,
    /// All context switches (`perf stat -e context-switches`: every thread, voluntary or not).
    pub context_switches: Option<u64>,
    /// Voluntary and involuntary switches of the server's threads while the load ran
    /// (`/proc/PID/task/*/status`); None when they could not be read.
    pub switches: Option<Switches>,
    /// Requests completed during the traced run.
    pub requests: u64,
    /// Remarks on the run for the report (a thread exited, `/proc` unreadable).
    pub notes: Vec<String>,
}

impl SyscallStats {
    /// Syscalls per request.
    pub fn per_request(&self) -> f64 {
        self.per_req(self.syscalls)
    }

    /// Voluntary context switches per request.
    pub fn voluntary_per_request(&self) -> Option<f64> {
        self.switches.map(|s| self.per_req(s.voluntary))
    }

    /// Involuntary context switches per request.
    pub fn involuntary_per_request(&self) -> Option<f64> {
        self.switches.map(|s| self.per_req(s.involuntary))
    }

    /// `n` over the requests of this run: every per-request figure of the pass uses this count.
    fn per_req(&self, n: u64) -> f64 {
        n as f64 / self.requests.max(1) as f64
    }
}

/// The counts of `perf stat -x ,` output: (syscalls, epoll waits, context switches).
fn parse_stat(text: &str) -> (u64, u64, Option<u64>) {
    let (mut syscalls, mut waits, mut cs) = (0, 0, None);
    for line in text.lines() {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 {
            continue;
        }
        // "<not counted>" and "<not supported>" are not numbers: the event stays unmeasured.
        let Ok(count) = cols[0].trim().parse::<u64>() else {
            continue;
        };
        // A modifier (":u" when perf falls back to user-only counting) follows the name.
        let ev = cols[2].trim();
        let name = ev.split(':').next().unwrap_or(ev);
        if ev == "raw_syscalls:sys_enter" {
            syscalls = count;
        } else if ev.starts_with("syscalls:sys_enter_epoll") {
            waits += count;
        } else if name == "context-switches" || name == "cs" {
            cs = Some(count);
        }
    }
    (syscalls, waits, cs)
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

/// Traces the processes `pids` (comma-separated: a server and its child processes) while `load`
/// runs: `perf stat` counts syscalls, epoll waits and context switches, `perf record` keeps the
/// epoll wait results, and `/proc` snapshots of the threads bracket the load. `load` returns the
/// requests it completed, the one count every per-request figure of the pass divides by.
pub fn traced<F: FnOnce() -> io::Result<u64>>(
    pids: &str,
    waits: &[String],
    tmp: &Path,
    load: F,
) -> io::Result<SyscallStats> {
    let tracers = Tracers::start(pids, waits, tmp, false)?;
    // The /proc window is the load's lifetime, the one its request count is for.
    let before = switches::snapshot(pids);
    let load_res = load();
    let after = switches::snapshot(pids);
    let results = tracers.finish();
    let mut st = results?;
    st.requests = load_res?;
    add_switches(&mut st, before.and_then(|b| Ok(after?.since(&b))));
    Ok(st)
}

/// [`traced`] over the measured window of `load` (a tool that prints `MARK start` / `MARK
/// end`): perf starts with its events disabled and is switched on and off through a control
/// FIFO at the marks, and the request count is the window's (`msgs` in the tool's report).
pub fn traced_window(
    pids: &str,
    waits: &[String],
    tmp: &Path,
    load: Command,
    what: &str,
    secs: f64,
) -> io::Result<SyscallStats> {
    let mut tracers = Tracers::start(pids, waits, tmp, true)?;
    let (mut before, mut after) = (None, None);
    let report = load::run_with_marks(load, what, secs, |mark, _| {
        tracers.switch(mark == Mark::Start)?;
        match mark {
            Mark::Start => before = Some(switches::snapshot(pids)),
            Mark::End => after = Some(switches::snapshot(pids)),
        }
        Ok(())
    });
    let results = tracers.finish();
    let report = report?;
    let mut st = results?;
    st.requests = report.get("msgs").and_then(|v| v.as_u64()).unwrap_or(0);
    let window = match (before, after) {
        (Some(b), Some(a)) => b.and_then(|b| Ok(a?.since(&b))),
        _ => Err(io::Error::other("no marks")),
    };
    add_switches(&mut st, window);
    Ok(st)
}

/// The perf processes of one traced run: `perf stat`, and `perf record` of the epoll wait
/// exits when the kernel has those tracepoints.
struct Tracers {
    stat: Child,
    stat_err: JoinHandle<String>,
    stat_out: PathBuf,
    rec: Option<Child>,
    rec_out: PathBuf,
    /// The control FIFOs (stat's, record's) of a windowed run.
    controls: Option<(Control, Control)>,
}

impl Tracers {
    /// Attaches to `pids`, counting at once or (`windowed`) only once switched on.
    fn start(pids: &str, waits: &[String], tmp: &Path, windowed: bool) -> io::Result<Tracers> {
        let tag = pids.split(',').next().unwrap_or("0");
        let stat_out = tmp.join(format!("perf-stat-{tag}.txt"));
        let rec_out = tmp.join(format!("perf-record-{tag}.data"));
        let controls = if windowed {
            let ctl = |what| Control::new(tmp.join(format!("perf-{what}-{tag}.ctl")));
            Some((ctl("stat")?, ctl("record")?))
        } else {
            None
        };
        let ctl_paths = controls
            .as_ref()
            .map(|(s, r)| (s.path.as_path(), r.path.as_path()));
        let mut stat = spawn_stat(pids, waits, &stat_out, ctl_paths.map(|c| c.0))?;
        let stat_err = procs::spawn_collect(stat.stderr.take().expect("piped"));
        let rec = (!waits.is_empty())
            .then(|| spawn_record(pids, waits, &rec_out, ctl_paths.map(|c| c.1)))
            .flatten();
        // Let both attach before the load starts.
        std::thread::sleep(Duration::from_millis(700));
        Ok(Tracers {
            stat,
            stat_err,
            stat_out,
            rec,
            rec_out,
            controls,
        })
    }

    /// Switches a windowed run's counting on or off.
    fn switch(&mut self, on: bool) -> io::Result<()> {
        if let Some((stat, rec)) = self.controls.as_mut() {
            stat.switch(on)?;
            if self.rec.is_some() {
                rec.switch(on)?;
            }
        }
        Ok(())
    }

    /// Stops perf and reads what it counted.
    fn finish(mut self) -> io::Result<SyscallStats> {
        stop(&mut self.stat, Duration::from_secs(20));
        if let Some(r) = self.rec.as_mut() {
            stop(r, Duration::from_secs(60));
        }
        let stat_err = self.stat_err.join().unwrap_or_default();
        let rec_out = self.rec.is_some().then_some(&self.rec_out);
        read_results(&self.stat_out, &stat_err, rec_out)
    }
}

/// A perf control FIFO (`--control fifo:PATH`), removed on drop.
struct Control {
    path: PathBuf,
    fifo: File,
}

impl Control {
    fn new(path: PathBuf) -> io::Result<Control> {
        let _ = std::fs::remove_file(&path);
        let made = Command::new("mkfifo").arg(&path).status()?;
        if !made.success() {
            return Err(io::Error::other(format!(
                "mkfifo {}: {made}",
                path.display()
            )));
        }
        // Read and write, so opening does not wait for perf to open its end.
        let fifo = File::options().read(true).write(true).open(&path)?;
        Ok(Control { path, fifo })
    }

    /// Switches perf's events on or off.
    fn switch(&mut self, on: bool) -> io::Result<()> {
        self.fifo
            .write_all(if on { b"enable\n" } else { b"disable\n" })
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The counts perf stat wrote to `stat_out` and, if recorded, the events per wait in
/// `rec_out` (both files are removed).
fn read_results(
    stat_out: &Path,
    stat_err: &str,
    rec_out: Option<&PathBuf>,
) -> io::Result<SyscallStats> {
    let text = std::fs::read_to_string(stat_out).map_err(|e| {
        io::Error::other(format!("perf stat wrote nothing ({e}){}", tail(stat_err)))
    })?;
    let (syscalls, epoll_waits, context_switches) = parse_stat(&text);
    let _ = std::fs::remove_file(stat_out);
    if syscalls == 0 {
        return Err(io::Error::other(format!(
            "perf stat counted no syscalls{}",
            tail(stat_err)
        )));
    }
    let events_per_wait = rec_out.and_then(|r| {
        let mean = events_per_wait(r);
        let _ = std::fs::remove_file(r);
        mean
    });
    Ok(SyscallStats {
        syscalls,
        epoll_waits,
        context_switches,
        events_per_wait,
        ..Default::default()
    })
}

/// `perf stat` of syscalls, context switches and the epoll waits `waits`, into `out`.
fn spawn_stat(pids: &str, waits: &[String], out: &Path, ctl: Option<&Path>) -> io::Result<Child> {
    let mut c = procs::load_command("perf");
    c.args(["stat", "-x", ",", "-o"]).arg(out);
    controlled(&mut c, ctl);
    c.args(["-e", "raw_syscalls:sys_enter", "-e", "context-switches"]);
    for w in waits {
        c.args(["-e", &format!("syscalls:sys_enter_{w}")]);
    }
    c.args(["-p", pids]);
    c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
}

/// `perf record` of the exits of the epoll waits `waits`, into `out`; None if it cannot start.
fn spawn_record(pids: &str, waits: &[String], out: &Path, ctl: Option<&Path>) -> Option<Child> {
    let mut c = procs::load_command("perf");
    c.args(["record", "-q", "-m", "1024", "-o"]).arg(out);
    controlled(&mut c, ctl);
    for w in waits {
        c.args(["-e", &format!("syscalls:sys_exit_{w}")]);
    }
    c.args(["-p", pids]);
    c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
}

/// With a control FIFO: perf starts with its events off, and the FIFO switches them.
fn controlled(c: &mut Command, ctl: Option<&Path>) {
    if let Some(ctl) = ctl {
        let mut fifo = std::ffi::OsString::from("fifo:");
        fifo.push(ctl);
        c.args(["-D", "-1", "--control"]).arg(fifo);
    }
}

/// SIGINT (perf writes its results on it), then SIGKILL after `timeout`.
fn stop(perf: &mut Child, timeout: Duration) {
    let _ = eventide_bench::sys::interrupt(perf.id());
    if procs::wait_timeout(perf, timeout).is_none() {
        let _ = perf.kill();
        let _ = perf.wait();
    }
}

/// Records the `/proc` context switches of the load's window in `st`, with a note when they
/// are incomplete (a thread exited) or missing.
fn add_switches(st: &mut SyscallStats, delta: io::Result<switches::Delta>) {
    match delta {
        Ok(d) => {
            if d.exited > 0 {
                st.notes.push(format!(
                    "{} thread(s) exited during the syscall pass: their context switches are \
missing from vol/invol cs/req ({} counted there, {} by perf stat)",
                    d.exited,
                    d.switches.voluntary + d.switches.involuntary,
                    st.context_switches.map_or("-".into(), |c| c.to_string())
                ));
            }
            st.switches = Some(d.switches);
        }
        Err(e) => st.notes.push(format!("context switches not measured: {e}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_output_with_context_switches() {
        // `perf stat -x ,` as perf 6.x writes it for a pid (first line is a comment).
        let text = "# started on Tue Dec  1 18:50:00 2026\n\n\
1843211,,raw_syscalls:sys_enter,2001230441,100.00,,\n\
48211,,context-switches,2001230441,100.00,24.091,/sec\n\
40102,,syscalls:sys_enter_epoll_wait,2001230441,100.00,,\n\
<not counted>,,syscalls:sys_enter_epoll_pwait,0,0.00,,\n\
311,,syscalls:sys_enter_epoll_pwait2,2001230441,100.00,,\n";
        assert_eq!(parse_stat(text), (1_843_211, 40_413, Some(48_211)));
    }

    #[test]
    fn stat_output_with_a_modifier_or_without_the_event() {
        let user_only = "5,,raw_syscalls:sys_enter,1,100.00,,\n7,,context-switches:u,1,100.00,,\n";
        assert_eq!(parse_stat(user_only), (5, 0, Some(7)));
        let unsupported =
            "5,,raw_syscalls:sys_enter,1,100.00,,\n<not supported>,,context-switches,0,0,,\n";
        assert_eq!(parse_stat(unsupported), (5, 0, None));
    }

    #[test]
    fn per_request_figures_share_the_request_count() {
        let st = SyscallStats {
            syscalls: 2_000,
            switches: Some(Switches {
                voluntary: 150,
                involuntary: 10,
            }),
            requests: 1_000,
            ..Default::default()
        };
        assert_eq!(st.per_request(), 2.0);
        assert_eq!(st.voluntary_per_request(), Some(0.15));
        assert_eq!(st.involuntary_per_request(), Some(0.01));
        let unmeasured = SyscallStats {
            requests: 1_000,
            ..Default::default()
        };
        assert_eq!(unmeasured.voluntary_per_request(), None);
    }
}
