//! Restarting the http demo through a listener handover while clients keep opening new
//! connections and sending requests: no connection is refused, no request fails, the old
//! process drains and exits 0, and the successor serves on the same address.

mod demo_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use demo_util::{Demo, TempDir, TIMEOUT};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
const CLIENTS: usize = 4;

/// Where the load goes.
#[derive(Clone)]
enum Target {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Target {
    fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        Ok(match self {
            Target::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
            Target::Unix(p) => {
                let s = UnixStream::connect(p)?;
                s.set_read_timeout(Some(TIMEOUT))?;
                Box::new(s)
            }
        })
    }
}

/// Clients that each open a new connection per request until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(target: Target) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..CLIENTS)
            .map(|_| {
                let (target, stop) = (target.clone(), Arc::clone(&stop));
                let (served, failures) = (Arc::clone(&served), Arc::clone(&failures));
                thread::spawn(move || {
                    let start = Instant::now();
                    // Bounded: it stops by itself even if the test forgets to.
                    while !stop.load(SeqCst) && start.elapsed() < TIMEOUT * 2 {
                        match one_request(&target) {
                            Ok(()) => {
                                served.fetch_add(1, SeqCst);
                            }
                            Err(e) => failures.lock().unwrap().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            served,
            failures,
            threads,
        }
    }

    fn served(&self) -> usize {
        self.served.load(SeqCst)
    }

    /// Waits until `n` more requests have been served than now (bounded).
    fn wait_for_more(&self, n: usize) {
        let target = self.served() + n;
        let start = Instant::now();
        while self.served() < target {
            let failures = self.failures.lock().unwrap().clone();
            assert!(failures.is_empty(), "requests failed: {failures:?}");
            assert!(
                start.elapsed() < TIMEOUT,
                "the load stalled at {} requests",
                self.served()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; the failures they saw.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.failures)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// One request on a fresh connection; an error says what went wrong (refused, cut, wrong).
fn one_request(target: &Target) -> Result<(), String> {
    let mut s = target.connect().map_err(|e| format!("connect: {e}"))?;
    s.write_all(REQUEST).map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    if text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nHello, World!") {
        Ok(())
    } else {
        Err(format!("bad response {text:?}"))
    }
}

/// Starts an instance, restarts it through the handover under load once per entry of
/// `successors` (each new instance hands over to the next), and checks the result.
fn restart_under_load(first: &[&str], successors: &[&[&str]], target: impl Fn(&Demo) -> Target) {
    let dir = TempDir::new("handover");
    let handover = dir.join("handover.sock");
    let start = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--handover", handover.to_str().unwrap()]);
        Demo::start("http", &v)
    };
    let Some(mut running) = start(first) else {
        return;
    };
    assert!(
        handover.exists(),
        "the first instance waits at the handover path"
    );
    let load = Load::start(target(&running));
    load.wait_for_more(50);
    for args in successors {
        let next = start(args).expect("built: the first one was");
        assert_eq!(
            next.addr, running.addr,
            "the successor serves the same address"
        );
        let status = std::mem::replace(&mut running, next).wait();
        assert!(
            status.success(),
            "the old instance exits 0 after its drain: {status}"
        );
        // Everything from here on is the successor's alone.
        load.wait_for_more(50);
    }
    let served = load.served();
    let failures = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the restarts: {failures:?}",
        failures.len(),
        served + failures.len()
    );
    assert!(
        handover.exists(),
        "each old instance left the handover socket to the new one"
    );
    running.stop("-TERM");
    assert!(
        !handover.exists(),
        "the last instance removes the handover socket"
    );
}

#[test]
fn restart_refuses_no_connection() {
    let args = ["--addr", "127.0.0.1:0", "--loops", "2"];
    let successors: &[&[&str]] = &[&["--loops", "3"], &["--loops", "1"]];
    restart_under_load(&args, successors, |d| Target::Tcp(d.tcp()));
}

#[test]
fn restart_in_reuseport_mode_keeps_every_socket_served() {
    let first = ["--addr", "127.0.0.1:0", "--loops", "3", "--reuseport"];
    let second = ["--loops", "2", "--reuseport"];
    restart_under_load(&first, &[&second, &first[2..]], |d| Target::Tcp(d.tcp()));
}

#[test]
fn restart_on_a_unix_socket_keeps_its_file() {
    let dir = TempDir::new("handover-unix");
    let path = dir.join("http.sock");
    let addr = format!("unix:{}", path.display());
    let args = ["--addr", addr.as_str(), "--loops", "2"];
    restart_under_load(&args, &[&["--loops", "1"]], |d| {
        assert_eq!(d.addr, addr);
        Target::Unix(path.clone())
    });
    assert!(
        !Path::new(&path).exists(),
        "the last instance removes the socket file"
    );
}
