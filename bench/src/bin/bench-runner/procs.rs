//! Starting, sampling and stopping the processes of a run: servers pinned to CPU 0, load tools
//! pinned to CPU 1, CPU time and resident memory read from `/proc`.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventide_bench::sys;

/// CPU that runs the server under test.
pub const SERVER_CPU: &str = "0";
/// CPU that runs the load generator.
pub const LOAD_CPU: &str = "1";

/// How a server is started.
#[derive(Debug, Clone)]
pub enum Spawn {
    /// A binary following the demo contract (`--addr`, `--loops`, `listening on ADDR`).
    Contract(std::path::PathBuf),
    /// The same, with extra arguments (e.g. eventide's echo with `--udp --udp-batch 32`).
    ContractWith(std::path::PathBuf, Vec<String>),
    /// `redis-server` on a free port with persistence off.
    RedisServer,
}

/// A server process under test.
pub struct Server {
    child: Child,
    /// Its pid (taskset execs, so this is the server itself).
    pub pid: u32,
    /// The address it listens on.
    pub addr: SocketAddr,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a stopped server left behind.
pub struct Stopped {
    /// Exit status, or None when it had to be killed.
    pub status: Option<ExitStatus>,
    /// stdout after the `listening on` line.
    pub stdout: String,
    /// Everything it wrote on stderr.
    pub stderr: String,
}

impl Stopped {
    /// A short description of a contract violation at exit, if any.
    pub fn problem(&self) -> Option<String> {
        match self.status {
            Some(s) if s.success() => None,
            Some(s) => Some(format!("exited with {s} on SIGTERM{}", tail(&self.stderr))),
            None => Some("did not exit within 10 s of SIGTERM (killed)".to_string()),
        }
    }
}

/// The last non-empty line of `s`, as `: line`, for error messages.
pub fn tail(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default()
}

impl Server {
    /// Starts a server pinned to [`SERVER_CPU`] and waits until it accepts connections.
    pub fn start(spawn: &Spawn) -> io::Result<Server> {
        match spawn {
            Spawn::Contract(bin) => Server::start_contract(bin, &[]),
            Spawn::ContractWith(bin, args) => Server::start_contract(bin, args),
            Spawn::RedisServer => Server::start_redis(),
        }
    }

    fn start_contract(bin: &Path, extra: &[String]) -> io::Result<Server> {
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CPU])
            .arg(bin)
            .args(["--addr", "127.0.0.1:0", "--loops", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn {}: {e}", bin.display())))?;
        let pid = child.id();
        let stderr = child.stderr.take().map(spawn_collect);
        let (lines, stdout) = spawn_lines(child.stdout.take().expect("piped stdout"));
        let mut server = Server {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout: Some(stdout),
            stderr,
        };
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => match line.strip_prefix("listening on ").map(|a| a.trim().parse()) {
                Some(Ok(addr)) => {
                    server.addr = addr;
                    Ok(server)
                }
                _ => {
                    let st = server.stop();
                    Err(io::Error::other(format!(
                        "{}: first stdout line is {line:?}, expected `listening on ADDR`{}",
                        bin.display(),
                        tail(&st.stderr)
                    )))
                }
            },
            Err(_) => {
                let st = server.stop();
                Err(io::Error::other(format!(
                    "{}: no `listening on` line within 20 s{}",
                    bin.display(),
                    tail(&st.stderr)
                )))
            }
        }
    }

    fn start_redis() -> io::Result<Server> {
        let port = free_port()?;
        let mut child = Command::new("taskset")
            .args(["-c", SERVER_CPU, "redis-server", "--port"])
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
                "--maxclients",
                "10000",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawn redis-server: {e}")))?;
        let pid = child.id();
        let stdout = child.stdout.take().map(spawn_collect);
        let stderr = child.stderr.take().map(spawn_collect);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Server {
            child,
            pid,
            addr,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                let st = server.stop();
                return Err(io::Error::other(format!(
                    "redis-server did not start on port {port}{}{}",
                    tail(&st.stdout),
                    tail(&st.stderr)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Server CPU time so far (utime and stime of all its threads).
    pub fn cpu_time(&self) -> io::Result<CpuTime> {
        cpu_time(self.pid)
    }

    /// Resident set size in bytes (VmRSS).
    pub fn rss_bytes(&self) -> io::Result<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait up to 10 s (SIGKILL after that).
    pub fn stop(mut self) -> Stopped {
        let mut status = match self.child.try_wait() {
            Ok(Some(st)) => Some(st),
            _ => {
                let _ = sys::terminate(self.pid);
                wait_timeout(&mut self.child, Duration::from_secs(10))
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            status = None;
        }
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Stopped {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only reached on early returns: never leave a server running.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds a process has used, split into user and kernel time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    /// utime: seconds in user space.
    pub user_s: f64,
    /// stime: seconds in the kernel (syscalls, softirqs charged to the process).
    pub system_s: f64,
}

impl CpuTime {
    /// User plus kernel seconds.
    pub fn total(self) -> f64 {
        self.user_s + self.system_s
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

/// Reads `/proc/PID/stat` utime and stime, in seconds.
pub fn cpu_time(pid: u32) -> io::Result<CpuTime> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14 and stime field 15 (1-based); `rest` starts at field 3.
    let get = |i: usize| -> io::Result<u64> {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
    };
    let hz = ticks() as f64;
    Ok(CpuTime {
        user_s: get(14)? as f64 / hz,
        system_s: get(15)? as f64 / hz,
    })
}

fn ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(sys::clock_ticks)
}

/// A port that was free a moment ago (for servers that cannot bind port 0 themselves).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits for `child` up to `timeout`; None if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

/// Reads a pipe to the end on a thread.
pub fn spawn_collect<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Sends the first line of `out` through a channel, then collects the rest.
fn spawn_lines(out: ChildStdout) -> (Receiver<String>, JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut first = String::new();
        if r.read_line(&mut first).unwrap_or(0) > 0 {
            let _ = tx.send(first.trim_end().to_string());
        }
        drop(tx);
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        rest
    });
    (rx, h)
}

/// A line-by-line reader of a child's stdout on a thread, for tools that report progress.
pub struct LineReader {
    rx: Receiver<String>,
}

impl LineReader {
    /// Starts reading `r` line by line.
    pub fn new<R: Read + Send + 'static>(r: R) -> LineReader {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        LineReader { rx }
    }

    /// The next line, or None at end of stream or after `timeout`.
    pub fn next(&self, timeout: Duration) -> Result<String, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }
}

/// A command pinned to the load CPU.
pub fn load_command(program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", LOAD_CPU, program]);
    c
}

/// Whether `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
