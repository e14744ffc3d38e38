//! Running out of descriptors (`EMFILE`) on accept: the server neither spins nor stops.
//!
//! The server runs in a child process (this test binary, re-executed) whose open-file limit
//! is lowered, so the clients in this process are not limited.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use eventide::Server;
use util::{roundtrip, Echo};

const CHILD_ENV: &str = "EVENTIDE_EMFILE_CHILD";
const FD_LIMIT: u64 = 32;
const BACKOFF: Duration = Duration::from_millis(100);
/// More clients than the child can hold (it has descriptors of its own open too), yet at most
/// twice what it accepts, so closing the accepted ones makes room for every waiting one.
const CLIENTS: usize = FD_LIMIT as usize;

/// The server side, run in a child process by `emfile_backs_off_and_recovers`. Serves an
/// echo server under a low descriptor limit and answers `stats` / `quit` on stdin.
#[test]
#[ignore = "helper process for emfile_backs_off_and_recovers"]
fn emfile_child_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    eventide::sys::rlimit::set_nofile_limit(FD_LIMIT).unwrap();
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .accept_backoff(BACKOFF)
        .start(factory)
        .unwrap();
    println!("listening on {}", server.local_addr());
    for line in std::io::stdin().lines() {
        match line.unwrap().as_str() {
            "stats" => {
                let t = server.stats().total();
                println!(
                    "stats {} {} {} {} {}",
                    t.accepted, t.accept_errors, t.connections, t.timers_fired, t.epoll_waits
                );
            }
            _ => break,
        }
    }
    server.stop();
    server.join().unwrap();
}

/// What the child server counts.
#[derive(Clone, Copy, Debug)]
struct ChildStats {
    accepted: u64,
    accept_errors: u64,
    timers_fired: u64,
    epoll_waits: u64,
}

struct Child {
    proc: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Child {
    /// The rest of the next line that contains `prefix` (the test harness may have printed
    /// on the same line before it).
    fn line_with(&mut self, prefix: &str) -> String {
        for line in &mut self.lines {
            let line = line.unwrap();
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].to_string();
            }
        }
        panic!("child exited before printing {prefix:?}");
    }

    /// The child server's counters.
    fn stats(&mut self) -> ChildStats {
        writeln!(self.stdin, "stats").unwrap();
        let s = self.line_with("stats ");
        let v: Vec<u64> = s.split(' ').map(|x| x.parse().unwrap()).collect();
        ChildStats {
            accepted: v[0],
            accept_errors: v[1],
            timers_fired: v[3],
            epoll_waits: v[4],
        }
    }
}

#[test]
fn emfile_backs_off_and_recovers() {
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "emfile_child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that hangs must fail the test, not hang CI.
    let pid = proc.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(util::TIMEOUT * 2);
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    let stdin = proc.stdin.take().unwrap();
    let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let mut child = Child { proc, stdin, lines };
    let addr: SocketAddr = child.line_with("listening on ").parse().unwrap();

    // More clients than the child has descriptors: the kernel completes every handshake, the
    // server accepts until EMFILE and leaves the rest in the accept queue.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| util::connect(addr)).collect();
    util::wait_until("accept fails with EMFILE", || {
        child.stats().accept_errors >= 1
    });
    let accepted = child.stats().accepted;
    assert!(
        accepted < CLIENTS as u64,
        "the limit should have stopped accepting"
    );
    assert!(accepted > 0);

    // While descriptors stay exhausted the listener is out of epoll between attempts: each
    // accept that fails again waits for a back-off timer, and the loop wakes for those timers
    // only (a listener left in epoll would wake it at once, again and again).
    let before = child.stats();
    util::wait_until("five more accepts fail", || {
        child.stats().accept_errors >= before.accept_errors + 5
    });
    let after = child.stats();
    let errors = after.accept_errors - before.accept_errors;
    let timers = after.timers_fired - before.timers_fired;
    let waits = after.epoll_waits - before.epoll_waits;
    assert!(
        errors <= timers + 1,
        "{errors} failed accepts after {timers} back-off timers"
    );
    assert!(
        waits <= 2 * timers + 4,
        "{waits} epoll waits for {timers} back-off timers: the loop spins"
    );

    // Connections already accepted are still served.
    for (i, s) in clients.iter_mut().take(accepted as usize).enumerate() {
        let msg = format!("old {i}");
        assert_eq!(roundtrip(s, msg.as_bytes()), msg.as_bytes());
    }

    // Free descriptors: the queued connections are accepted and served.
    let waiting = clients.split_off(accepted as usize);
    assert!(
        waiting.len() <= clients.len(),
        "test setup: {} clients wait, only {} can be closed to make room",
        waiting.len(),
        clients.len()
    );
    clients.drain(..waiting.len());
    for (i, mut s) in waiting.into_iter().enumerate() {
        let msg = format!("new {i}");
        assert_eq!(roundtrip(&mut s, msg.as_bytes()), msg.as_bytes());
        clients.push(s);
    }
    assert_eq!(child.stats().accepted, CLIENTS as u64);

    writeln!(child.stdin, "quit").unwrap();
    drop(clients);
    let status = child.proc.wait().unwrap();
    assert!(status.success(), "child server failed: {status}");
}
