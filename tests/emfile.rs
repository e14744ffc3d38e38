//! Running out of descriptors (`EMFILE`) on accept: the server neither spins nor stops.
//!
//! The server runs in a child process (this test binary, re-executed) whose open-file limit
//! is lowered, so the clients in this process are not limited.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventide::Server;
use util::{roundtrip, Echo};

const CHILD_ENV: &str = "EVENTIDE_EMFILE_CHILD";
const FD_LIMIT: u64 = 32;
const BACKOFF: Duration = Duration::from_millis(100);
const CLIENTS: usize = 40;

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
                println!("stats {} {} {}", t.accepted, t.accept_errors, t.connections);
            }
            _ => break,
        }
    }
    server.stop();
    server.join().unwrap();
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

    /// `(accepted, accept_errors, connections)`.
    fn stats(&mut self) -> (u64, u64, u64) {
        writeln!(self.stdin, "stats").unwrap();
        let s = self.line_with("stats ");
        let v: Vec<u64> = s.split(' ').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
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
    util::wait_until("accept fails with EMFILE", || child.stats().1 >= 1);
    let (accepted, _, _) = child.stats();
    assert!(
        accepted < CLIENTS as u64,
        "the limit should have stopped accepting"
    );
    assert!(accepted > 0);

    // While descriptors stay exhausted, accept errors grow at most once per back-off period.
    let (_, errors_before, _) = child.stats();
    let window = Instant::now();
    std::thread::sleep(BACKOFF * 10);
    let (_, errors_after, _) = child.stats();
    let periods = window.elapsed().as_millis() / BACKOFF.as_millis();
    let grew = errors_after - errors_before;
    assert!(
        grew as u128 <= periods + 2,
        "{grew} accept errors in {periods} back-off periods"
    );

    // Connections already accepted are still served.
    for (i, s) in clients.iter_mut().take(accepted as usize).enumerate() {
        let msg = format!("old {i}");
        assert_eq!(roundtrip(s, msg.as_bytes()), msg.as_bytes());
    }

    // Free descriptors: the queued connections are accepted and served.
    let waiting = clients.split_off(accepted as usize);
    let freed = clients.len().min(20);
    clients.drain(..freed);
    assert!(
        waiting.len() <= freed,
        "test setup: free enough room for every waiting client"
    );
    for (i, mut s) in waiting.into_iter().enumerate() {
        let msg = format!("new {i}");
        assert_eq!(roundtrip(&mut s, msg.as_bytes()), msg.as_bytes());
        clients.push(s);
    }
    let (accepted_now, _, _) = child.stats();
    assert_eq!(accepted_now, CLIENTS as u64);

    writeln!(child.stdin, "quit").unwrap();
    drop(clients);
    let status = child.proc.wait().unwrap();
    assert!(status.success(), "child server failed: {status}");
}
