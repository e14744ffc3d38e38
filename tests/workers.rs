//! The worker pool: blocking jobs off the loop, outputs in submission order, bounded queues,
//! and what a stop does to queued and running jobs.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;

use eventide::{Action, CloseReason, Conn, ConnId, Handler, Refusal, Server};
use util::{connect, roundtrip, Checks, Failures, TIMEOUT};

/// A gate jobs wait at until the test opens it; counts the jobs waiting.
#[derive(Default)]
struct Latch {
    state: Mutex<(bool, usize)>,
    cv: Condvar,
}

impl Latch {
    fn wait(&self) {
        let mut s = self.state.lock().unwrap();
        s.1 += 1;
        while !s.0 {
            s = self.cv.wait(s).unwrap();
        }
        s.1 -= 1;
    }
    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.cv.notify_all();
    }
    fn waiting(&self) -> usize {
        self.state.lock().unwrap().1
    }
}

/// `JOB n` runs a job that waits at the latch and answers `DONE n`; `PANIC` runs a job that
/// panics; `ECHO x` is echoed at once, without the pool.
struct Jobs {
    latch: Arc<Latch>,
    max_in_flight: Arc<AtomicUsize>,
    paused_seen: Arc<AtomicBool>,
    closed: mpsc::Sender<(ConnId, String)>,
    checks: Checks,
}

impl Handler for Jobs {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let input = conn.input();
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return Action::Continue;
        };
        let Some(line) = self
            .checks
            .ok(std::str::from_utf8(&input[..end]), "a UTF-8 line")
        else {
            return Action::Close;
        };
        let line = line.to_string();
        if line.starts_with("ECHO ") {
            conn.write(&input[..=end]);
        } else if line.starts_with("JOB ") || line == "PANIC" {
            if !conn.can_submit() {
                // Leave the line for later: it is offered again when a job completes.
                return Action::Continue;
            }
            let latch = Arc::clone(&self.latch);
            let submitted = conn.submit(move || {
                latch.wait();
                if line == "PANIC" {
                    panic!("job asked to panic");
                }
                format!("DONE {}\n", &line[4..]).into_bytes()
            });
            self.checks.ok(submitted, "submit after can_submit");
            self.max_in_flight
                .fetch_max(conn.jobs_in_flight(), Ordering::SeqCst);
            self.paused_seen
                .fetch_or(conn.is_read_paused(), Ordering::SeqCst);
        }
        conn.consume(end + 1);
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.closed.send((id, reason.as_str().to_string()));
    }
}

struct Fixture {
    server: Server,
    latch: Arc<Latch>,
    max_in_flight: Arc<AtomicUsize>,
    paused_seen: Arc<AtomicBool>,
    closed: mpsc::Receiver<(ConnId, String)>,
    /// Checked when the fixture is dropped, at the end of each test.
    _failures: Failures,
}

fn start(workers: usize, per_conn: usize) -> Fixture {
    let latch = Arc::new(Latch::default());
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let paused_seen = Arc::new(AtomicBool::new(false));
    let (tx, closed) = mpsc::channel();
    let (checks, failures) = util::checks();
    let (l, m, p) = (latch.clone(), max_in_flight.clone(), paused_seen.clone());
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .workers(workers)
        .max_jobs_per_conn(per_conn)
        .start(move |_| Jobs {
            latch: l.clone(),
            max_in_flight: m.clone(),
            paused_seen: p.clone(),
            closed: tx.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    Fixture {
        server,
        latch,
        max_in_flight,
        paused_seen,
        closed,
        _failures: failures,
    }
}

fn expect_lines(s: std::net::TcpStream, lines: impl Iterator<Item = String>) {
    let mut reader = BufReader::new(s);
    for want in lines {
        let mut got = String::new();
        reader.read_line(&mut got).unwrap();
        assert_eq!(got.trim_end(), want);
    }
}

/// 200 jobs over 20 connections on 8 workers: while every worker is blocked, a connection
/// that does not use the pool is still answered; after release every reply arrives, each
/// connection's in request order.
#[test]
fn blocked_workers_do_not_block_the_loop_and_outputs_keep_order() {
    let f = start(8, 16);
    let addr = f.server.local_addr();
    let mut clients = Vec::new();
    for c in 0..20 {
        let mut s = connect(addr);
        let batch: String = (0..10).map(|j| format!("JOB {c}-{j}\n")).collect();
        s.write_all(batch.as_bytes()).unwrap();
        clients.push(s);
    }
    util::wait_until("all 8 workers are blocked", || f.latch.waiting() == 8);
    let mut free = connect(addr);
    assert_eq!(roundtrip(&mut free, b"ECHO hi\n"), b"ECHO hi\n");
    assert_eq!(f.latch.waiting(), 8, "the echo did not need a worker");
    f.latch.open();
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            thread::spawn(move || expect_lines(s, (0..10).map(move |j| format!("DONE {c}-{j}"))))
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    assert!(f.max_in_flight.load(Ordering::SeqCst) <= 10);
}

/// A connection flooding jobs while the pool is blocked stops being read at its bound, and
/// gets every answer in order once the pool moves again.
#[test]
fn a_flooding_connection_is_paused_at_its_bound() {
    const BOUND: usize = 16;
    let f = start(4, BOUND);
    let mut s = connect(f.server.local_addr());
    let flood: String = (0..1000).map(|j| format!("JOB {j}\n")).collect();
    s.write_all(flood.as_bytes()).unwrap();
    util::wait_until("reading pauses at the bound", || {
        f.paused_seen.load(Ordering::SeqCst)
    });
    assert_eq!(f.max_in_flight.load(Ordering::SeqCst), BOUND);
    f.latch.open();
    expect_lines(s, (0..1000).map(|j| format!("DONE {j}")));
    assert_eq!(
        f.max_in_flight.load(Ordering::SeqCst),
        BOUND,
        "the bound was exceeded"
    );
}

/// Stop: jobs not started are dropped, running ones finish and their output is flushed
/// before the connection closes.
#[test]
fn stop_drops_queued_jobs_and_flushes_running_ones() {
    let f = start(2, 16);
    let mut s = connect(f.server.local_addr());
    s.write_all(b"JOB 0\nJOB 1\nJOB 2\nJOB 3\nJOB 4\nJOB 5\n")
        .unwrap();
    util::wait_until("both workers run a job", || f.latch.waiting() == 2);
    f.server.stop();
    f.latch.open();
    let (got, reset) = util::read_until_closed(&mut s);
    assert!(!reset);
    assert_eq!(String::from_utf8(got).unwrap(), "DONE 0\nDONE 1\n");
    let (_, reason) = f.closed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(reason, "server_shutdown");
    drop(s); // the server lingers until the client closes
    f.server.join().unwrap();
}

/// A job that panics closes its connection (its reply will never come); others carry on.
#[test]
fn a_panicking_job_closes_its_connection() {
    let f = start(2, 16);
    f.latch.open();
    let addr = f.server.local_addr();
    let mut bad = connect(addr);
    bad.write_all(b"JOB 1\nPANIC\nJOB 3\n").unwrap();
    let (got, _) = util::read_until_closed(&mut bad);
    assert_eq!(String::from_utf8(got).unwrap(), "DONE 1\n");
    let (_, reason) = f.closed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(reason, "panicked");
    let mut good = connect(addr);
    good.write_all(b"JOB 9\n").unwrap();
    expect_lines(good, ["DONE 9".to_string()].into_iter());
}

/// Without a pool, `submit` is an error, not a panic.
#[test]
fn submit_without_a_pool_is_an_error() {
    struct NoPool(mpsc::Sender<std::io::ErrorKind>, Checks);
    impl Handler for NoPool {
        type State = ();
        type Message = ();
        fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
            self.1.that(!conn.can_submit(), "can_submit without a pool");
            match conn.submit(Vec::new) {
                Ok(()) => {
                    self.1.that(false, "submit without a pool succeeded");
                }
                Err(e) => {
                    let _ = self.0.send(e.kind());
                }
            }
            Ok(())
        }
        fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
            Action::Continue
        }
    }
    let (tx, rx) = mpsc::channel();
    let (checks, failures) = util::checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| NoPool(tx.clone(), checks.clone()))
        .unwrap();
    let _c = connect(server.local_addr());
    assert_eq!(
        failures.recv(&rx, "submit's error"),
        std::io::ErrorKind::Unsupported
    );
}
