//! A demo binary of this build run as a child process: its `listening on` line read, signals
//! sent, its exit awaited — every wait bounded, and the process killed if a test fails first.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;

use super::TIMEOUT;

/// Where cargo put the example `name` (next to the test's `deps` directory). A plain
/// `cargo test` builds the examples with the test's features, so a missing binary is a
/// failure; `cargo test --test NAME` does not, and then the binary there is whatever the last
/// build of the example left (see [`BUILD_HINT`]).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/PROFILE/deps")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built ({BUILD_HINT})",
        path.display()
    );
    path
}

/// What to say when a demo is missing, or behaves as if built with other features.
pub const BUILD_HINT: &str = "`cargo test --test NAME` does not build the examples: \
run `cargo build --examples` with the test's features first";

/// Spawns example `name` with `args`, stdout piped, no stdin.
fn spawn(name: &str, args: &[&str], stderr: Stdio) -> Child {
    Command::new(example_binary(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the {name} demo: {e}"))
}

/// Runs example `name` with `args` to its end (a refused command line); bounded.
pub fn run_to_exit(name: &str, args: &[&str]) -> Output {
    let child = spawn(name, args, Stdio::piped());
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait for the demo"),
        Err(_) => {
            let _ = kill(pid, "-KILL");
            panic!("{name} {args:?} did not exit within {TIMEOUT:?}");
        }
    }
}

/// A running demo server.
pub struct Demo {
    pid: u32,
    addr: SocketAddr,
    exited: mpsc::Receiver<ExitStatus>,
    /// What the demo printed after its `listening on` line, once stdout closed.
    rest: mpsc::Receiver<String>,
    reaped: bool,
}

impl Demo {
    /// Starts example `name` with `args` and reads its `listening on ADDR` line.
    pub fn start(name: &str, args: &[&str]) -> Demo {
        Demo::start_with(name, args, Stdio::inherit()).0
    }

    /// [`start`](Demo::start), with the demo's stderr lines sent to the returned channel
    /// (and printed, for the test's log).
    pub fn start_with_stderr(name: &str, args: &[&str]) -> (Demo, mpsc::Receiver<String>) {
        let (demo, child_stderr) = Demo::start_with(name, args, Stdio::piped());
        let (tx, lines) = mpsc::channel();
        let stderr = child_stderr.expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[demo] {line}");
                let _ = tx.send(line);
            }
        });
        (demo, lines)
    }

    fn start_with(
        name: &str,
        args: &[&str],
        stderr: Stdio,
    ) -> (Demo, Option<std::process::ChildStderr>) {
        let mut child = spawn(name, args, stderr);
        let child_stderr = child.stderr.take();
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let (line_tx, line) = mpsc::channel();
        let (rest_tx, rest) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(stdout);
            let mut first = String::new();
            let _ = out.read_line(&mut first);
            let _ = line_tx.send(first);
            let mut more = String::new();
            let _ = out.read_to_string(&mut more);
            let _ = rest_tx.send(more);
        });
        let (exit_tx, exited) = mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut demo = Demo {
            pid,
            addr: "0.0.0.0:0".parse().unwrap(),
            exited,
            rest,
            reaped: false,
        };
        let first = line
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("{name}: no `listening on` line within {TIMEOUT:?}"));
        demo.addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("{name}: first line was {first:?}"));
        (demo, child_stderr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `signal` (`-TERM`, `-INT`) and checks that the demo exits 0 having printed
    /// nothing more on stdout.
    pub fn stop(mut self, signal: &str) {
        assert!(kill(self.pid, signal), "kill {signal} {} failed", self.pid);
        let status = self
            .exited
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no exit within {TIMEOUT:?} of {signal}"));
        self.reaped = true;
        assert!(status.success(), "exit status after {signal}: {status}");
        let rest = self.rest.recv_timeout(TIMEOUT).expect("stdout closed");
        assert!(
            rest.is_empty(),
            "more output after the listening line: {rest:?}"
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed test must not leave its server running. No status yet means the child
        // is not reaped, so the pid is still its own.
        if !self.reaped && self.exited.try_recv().is_err() {
            let _ = kill(self.pid, "-KILL");
            let _ = self.exited.recv_timeout(TIMEOUT);
        }
    }
}

/// Sends `signal` to `pid` with kill(1); whether it was delivered.
fn kill(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}
