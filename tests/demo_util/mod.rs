//! Running the demo binaries (cargo builds the examples before the tests) and the external
//! tools the operations tests drive: a demo with its `listening on` line read, a stop by
//! signal with the exit status checked, and the tool checks that fail under `CI=true`.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Generous bound for any wait on a demo.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this is a CI run, where a missing tool or binary fails the test.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `None` with a printed reason when `what` is missing outside CI; a failure under CI.
pub fn missing<T>(what: &str) -> Option<T> {
    assert!(
        !ci(),
        "{what} is missing (CI=true: the test cannot run without it)"
    );
    println!("skipping: {what} is missing");
    None
}

/// Where cargo put the example binary `name` of this build (next to the test's `deps`).
pub fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    if path.exists() {
        Some(path)
    } else {
        missing(&format!("the {name} example binary"))
    }
}

/// A unique scratch directory for this test (removed when dropped).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("eventide-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running demo whose `listening on ADDR` line has been read. Killed if dropped while it
/// runs (a failed test leaves no server behind).
pub struct Demo {
    child: Option<Child>,
    pub addr: String,
    out: Option<BufReader<ChildStdout>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Demo {
    /// Starts `cmd` (a demo, or a launcher that execs one) and reads its first line.
    pub fn spawn(mut cmd: Command) -> Demo {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Demo::adopt(child)
    }

    /// Reads the first line of a started process whose stdout is piped (a demo, or a
    /// launcher that execs one).
    pub fn adopt(mut child: Child) -> Demo {
        // Read the first line on a thread, so a demo that never prints fails the test.
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = out;
            let mut line = String::new();
            let read = out.read_line(&mut line);
            let _ = tx.send((read, line, out));
        });
        let Ok((read, line, out)) = rx.recv_timeout(TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo printed no line in time");
        };
        read.unwrap();
        let Some(addr) = line.strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo's first line was {line:?}");
        };
        let addr = addr.trim_end().to_string();
        Demo {
            child: Some(child),
            addr,
            out: Some(out),
        }
    }

    /// Starts example `name` with `args`; `None` when its binary is not built (outside CI).
    pub fn start(name: &str, args: &[&str]) -> Option<Demo> {
        let mut cmd = Command::new(example(name)?);
        cmd.args(args);
        Some(Demo::spawn(cmd))
    }

    pub fn tcp(&self) -> std::net::SocketAddr {
        self.addr.parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (`-TERM`, `-INT`) to the demo.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Waits for the demo to exit (bounded) and checks it printed nothing after its line.
    pub fn wait(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the demo did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut rest = String::new();
        let _ = self.out.take().expect("running").read_to_string(&mut rest);
        assert!(
            rest.is_empty(),
            "more output after the listening line: {rest:?}"
        );
        status
    }

    /// Sends `signal`, then checks the demo exits 0 with nothing more on stdout.
    pub fn stop(self, signal: &str) {
        self.signal(signal);
        let status = self.wait();
        assert!(status.success(), "exit status after {signal}: {status}");
    }
}

/// Whether `pid` catches `signal` (its handler is installed): the `SigCgt` mask of
/// `/proc/PID/status`, where bit N-1 stands for signal N.
pub fn catches(pid: u32, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}
