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
    /// A chat server under the contract that also serves plain TCP lines on `--lines ADDR`
    /// (a free port picked at start); the load goes to that address.
    Lines(std::path::PathBuf, Vec<String>),
    /// `redis-server` on a free port with persistence off.
    RedisServer,
    /// nginx as a reverse proxy to `upstream` (see `gateway`), configured in `dir`.
    Nginx {
        dir: std::path::PathBuf,
        upstream: SocketAddr,
    },
}

impl Spawn {
    /// The same server with `more` arguments (a contract binary only; others are unchanged).
    pub fn with_args(&self, more: &[String]) -> Spawn {
        let join = |a: &[String]| [a, more].concat();
        match self {
            Spawn::Contract(b) => Spawn::ContractWith(b.clone(), more.to_vec()),
            Spawn::ContractWith(b, a) => Spawn::ContractWith(b.clone(), join(a)),
            Spawn::Lines(b, a) => Spawn::Lines(b.clone(), join(a)),
            other => other.clone(),
        }
    }
}

/// How a server process is launched: the CPU it is pinned to, and optionally under callgrind.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The CPU (default [`SERVER_CPU`]).
    pub cpu: Option<&'static str>,
    /// Run under `valgrind --tool=callgrind`, writing the profile here.
    pub callgrind: Option<std::path::PathBuf>,
}

/// A server process under test.
pub struct Server {
    child: Child,
    /// Its pid (taskset execs, so this is the server itself).
    pub pid: u32,
    /// The address the load goes to (the `listening on` one, or the `--lines` one).
    pub addr: SocketAddr,
    /// How long to wait for it to exit after SIGTERM before killing it.
    grace: Duration,
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
            None => Some("did not exit in time after SIGTERM (killed)".to_string()),
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
        Server::start_with(spawn, &Launch::default())
    }

    /// Starts a server as `launch` says and waits until it accepts connections.
    pub fn start_with(spawn: &Spawn, launch: &Launch) -> io::Result<Server> {
        match spawn {
            Spawn::Contract(bin) => Server::start_contract(bin, &[], launch),
            Spawn::ContractWith(bin, args) => Server::start_contract(bin, args, launch),
            Spawn::Lines(bin, args) => {
                let lines = SocketAddr::from(([127, 0, 0, 1], free_port()?));
                let args = [args.clone(), vec!["--lines".into(), lines.to_string()]].concat();
                let mut server = Server::start_contract(bin, &args, launch)?;
                server.addr = lines;
                server.wait_connectable()?;
                Ok(server)
            }
            Spawn::RedisServer => Server::start_redis(),
            Spawn::Nginx { dir, upstream } => crate::gateway::start_nginx(dir, *upstream, launch),
        }
    }

    /// A process started by the caller (already pinned), once `addr` accepts connections.
    pub fn adopt(mut child: Child, addr: SocketAddr, what: &str) -> io::Result<Server> {
        let pid = child.id();
        let stdout = child.stdout.take().map(spawn_collect);
        let stderr = child.stderr.take().map(spawn_collect);
        let mut server = Server {
            child,
            pid,
            addr,
            grace: Duration::from_secs(10),
            stdout,
            stderr,
        };
        if let Err(e) = server.wait_connectable() {
            let st = server.stop();
            return Err(io::Error::other(format!(
                "{what}: {e}{}{}",
                tail(&st.stdout),
                tail(&st.stderr)
            )));
        }
        Ok(server)
    }

    /// Waits up to 20 s until `addr` accepts a connection.
    fn wait_connectable(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline || !self.alive() {
                return Err(io::Error::other(format!(
                    "not accepting connections on {}",
                    self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn start_contract(bin: &Path, extra: &[String], launch: &Launch) -> io::Result<Server> {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", launch.cpu.unwrap_or(SERVER_CPU)]);
        let mut grace = Duration::from_secs(10);
        if let Some(out) = &launch.callgrind {
            cmd.args(["valgrind", "--tool=callgrind", "--dump-instr=no", "-q"])
                .arg(format!("--callgrind-out-file={}", out.display()));
            grace = Duration::from_secs(120); // writing the profile takes a while
        }
        let mut child = cmd
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
            grace,
            stdout: Some(stdout),
            stderr,
        };
        let wait = Duration::from_secs(if launch.callgrind.is_some() { 120 } else { 20 });
        match lines.recv_timeout(wait) {
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
                    "{}: no `listening on` line in time{}",
                    bin.display(),
                    tail(&st.stderr)
                )))
            }
        }
    }

    fn start_redis() -> io::Result<Server> {
        let port = free_port()?;
        let child = Command::new("taskset")
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
        Server::adopt(
            child,
            SocketAddr::from(([127, 0, 0, 1], port)),
            "redis-server",
        )
    }

    /// Server CPU time so far (utime and stime of all its threads, and of its child processes
    /// such as nginx's worker).
    pub fn cpu_time(&self) -> io::Result<CpuTime> {
        let mut t = cpu_time(self.pid)?;
        for child in children(self.pid) {
            if let Ok(c) = cpu_time(child) {
                t.user_s += c.user_s;
                t.system_s += c.system_s;
            }
        }
        Ok(t)
    }

    /// Its pid and its child processes' (nginx's worker), comma-separated, for `perf -p`.
    pub fn pids(&self) -> String {
        std::iter::once(self.pid)
            .chain(children(self.pid))
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
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

    /// SIGTERM, then wait (10 s, 120 s under callgrind; SIGKILL after that).
    pub fn stop(self) -> Stopped {
        self.stop_timed().0
    }

    /// [`stop`](Server::stop), also returning how long the process took to exit after SIGTERM
    /// (None if it had already exited or had to be killed).
    pub fn stop_timed(mut self) -> (Stopped, Option<Duration>) {
        let mut took = None;
        let mut status = match self.child.try_wait() {
            Ok(Some(st)) => Some(st),
            _ => {
                let t0 = Instant::now();
                let _ = sys::terminate(self.pid);
                let st = wait_timeout(&mut self.child, self.grace);
                took = st.map(|_| t0.elapsed());
                st
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
        (
            Stopped {
                status,
                stdout,
                stderr,
            },
            took,
        )
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

/// Waits for `child` up to `timeout`; None if it is still running. Polls every millisecond,
/// so a stop time read from it is good to about 1 ms.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            _ => return None,
        }
    }
}

/// The child processes of `pid` (`/proc/PID/task/*/children`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
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
