//! Futures off the loop (feature `tokio`): outputs in submission order under load, the bound
//! on jobs in flight and the read pause, cancellation when a connection closes, panics that
//! close only their connection, loop-level futures, and both kinds of runtime.
//!
//! The handler speaks lines; each command line spawns one future whose output answers it:
//! `OUT ms tag` (bytes, `Conn::spawn`), `THEN ms tag` (a closure, `Conn::spawn_then`),
//! `MSG ms tag` (a message to `on_message`, `Conn::spawn_message`), `GATE n` (waits until the
//! test opens gate `n`), `HANG` (never finishes), `PANIC` (the future panics),
//! `APPLYPANIC` (the closure it returns panics on the loop).

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use eventide::{Action, Builder, CloseReason, Conn, ConnId, Handler, Refusal, Server};
use tokio::sync::watch;
use util::{connect, wait_until, Checks, Failures, Rng};

/// The tests count the process's descriptors, so they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the futures report about themselves.
#[derive(Default)]
struct Probe {
    /// Futures that started running (were first polled).
    started: AtomicUsize,
    /// Futures alive now (started, not yet finished or dropped).
    alive: AtomicUsize,
    /// The most futures of one connection alive at once.
    max_alive: AtomicUsize,
    /// Futures dropped before they finished.
    dropped_unfinished: AtomicUsize,
}

/// Lives inside a future: counts it alive while it exists, and unfinished if it is dropped
/// before [`Live::finish`].
struct Live {
    probe: Arc<Probe>,
    finished: bool,
}

impl Live {
    fn new(probe: &Arc<Probe>) -> Live {
        probe.started.fetch_add(1, SeqCst);
        let alive = probe.alive.fetch_add(1, SeqCst) + 1;
        probe.max_alive.fetch_max(alive, SeqCst);
        Live {
            probe: Arc::clone(probe),
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.probe.alive.fetch_sub(1, SeqCst);
        if !self.finished {
            self.probe.dropped_unfinished.fetch_add(1, SeqCst);
        }
    }
}

struct Lines {
    probe: Arc<Probe>,
    /// How many gates are open: `GATE n` finishes once it is above `n`.
    gate: watch::Receiver<usize>,
    closed: mpsc::Sender<(ConnId, String)>,
    checks: Checks,
    max_jobs: usize,
}

impl Lines {
    /// Spawns the future line `cmd` asks for.
    fn spawn(&self, conn: &mut Conn<'_>, cmd: &str) -> std::io::Result<()> {
        let mut words = cmd.split(' ');
        let (verb, a, b) = (words.next(), words.next(), words.next());
        let probe = Arc::clone(&self.probe);
        let delay =
            |ms: Option<&str>| Duration::from_millis(ms.and_then(|m| m.parse().ok()).unwrap_or(0));
        let tag = |t: Option<&str>| format!("{}\n", t.unwrap_or("?"));
        match verb {
            Some("OUT") => {
                let (d, t) = (delay(a), tag(b));
                conn.spawn(async move {
                    let live = Live::new(&probe);
                    tokio::time::sleep(d).await;
                    live.finish();
                    t.into_bytes()
                })
            }
            Some("THEN") => {
                let (d, t) = (delay(a), tag(b));
                conn.spawn_then(async move {
                    let live = Live::new(&probe);
                    tokio::time::sleep(d).await;
                    live.finish();
                    move |c: &mut Conn<'_>| {
                        c.write(t.as_bytes());
                    }
                })
            }
            Some("MSG") => {
                let (d, t) = (delay(a), tag(b));
                conn.spawn_message(async move {
                    let live = Live::new(&probe);
                    tokio::time::sleep(d).await;
                    live.finish();
                    t
                })
            }
            Some("GATE") => {
                let mut gate = self.gate.clone();
                let n: usize = a.and_then(|n| n.parse().ok()).unwrap_or(0);
                conn.spawn(async move {
                    let live = Live::new(&probe);
                    let opened = gate.wait_for(|&open| open > n).await;
                    opened.expect("the test holds the gates until the end");
                    live.finish();
                    format!("g{n}\n").into_bytes()
                })
            }
            Some("HANG") => conn.spawn(async move {
                let _live = Live::new(&probe);
                std::future::pending::<Vec<u8>>().await
            }),
            Some("PANIC") => conn.spawn(async move {
                let _live = Live::new(&probe);
                tokio::time::sleep(Duration::from_millis(5)).await;
                panic!("a future asked to panic");
            }),
            Some("APPLYPANIC") => conn.spawn_then(async move {
                let live = Live::new(&probe);
                live.finish();
                |_: &mut Conn<'_>| panic!("a future's closure asked to panic")
            }),
            _ => Err(std::io::Error::other(format!("unknown command {cmd:?}"))),
        }
    }
}

impl Handler for Lines {
    type State = ();
    type Message = String;

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        while let Some(end) = conn.input().iter().position(|&b| b == b'\n') {
            if !conn.can_spawn() {
                // At the bound: the rest waits unconsumed, and the loop stops reading.
                self.checks
                    .eq(conn.jobs_in_flight(), self.max_jobs, "jobs at the bound");
                self.checks
                    .that(conn.is_read_paused(), "reading paused at the bound");
                break;
            }
            let line = String::from_utf8_lossy(&conn.input()[..end]).into_owned();
            let spawned = self.spawn(conn, &line);
            self.checks.ok(spawned, "spawn after can_spawn");
            self.checks.that(
                conn.jobs_in_flight() <= self.max_jobs,
                "jobs in flight within the bound",
            );
            conn.consume(end + 1);
        }
        Action::Continue
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), tag: String) -> Action {
        conn.write(tag.as_bytes());
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.closed.send((id, reason.as_str().to_string()));
    }
}

struct Fixture {
    server: Server,
    probe: Arc<Probe>,
    gates: watch::Sender<usize>,
    closed: mpsc::Receiver<(ConnId, String)>,
    failures: Failures,
}

impl Fixture {
    fn start(builder: Builder, max_jobs: usize) -> Fixture {
        let probe = Arc::new(Probe::default());
        let (gates, gate) = watch::channel(0);
        let (tx, closed) = mpsc::channel();
        let (checks, failures) = util::checks();
        let p = Arc::clone(&probe);
        let server = builder
            .bind("127.0.0.1:0")
            .loops(2)
            .max_jobs_per_conn(max_jobs)
            .start(move |_| Lines {
                probe: Arc::clone(&p),
                gate: gate.clone(),
                closed: tx.clone(),
                checks: checks.clone(),
                max_jobs,
            })
            .expect("start the server");
        Fixture {
            server,
            probe,
            gates,
            closed,
            failures,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn open_connections(&self) -> u64 {
        self.server.stats().total().connections
    }

    /// The close reason of the next connection to close.
    fn next_close(&self) -> String {
        self.failures.recv(&self.closed, "a connection to close").1
    }
}

/// Reads `n` lines.
fn read_lines(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut line = String::new();
            let got = reader.read_line(&mut line).expect("read a reply");
            assert!(got > 0, "end of stream after {i} of {n} replies");
            line.trim_end().to_string()
        })
        .collect()
}

/// Reads until end of stream; returns what came.
fn read_to_end(reader: &mut BufReader<TcpStream>) -> String {
    let mut rest = String::new();
    std::io::Read::read_to_string(reader, &mut rest).expect("read to end of stream");
    rest
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// 64 connections × 100 futures that finish after random delays, in any order: every
/// connection reads its replies in the order it asked, whatever kind of output they were.
fn ordered_under_load(builder: Builder) {
    const CONNS: usize = 64;
    const PER_CONN: usize = 100;
    let fx = Fixture::start(builder, 16);
    let addr = fx.addr();
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            thread::spawn(move || {
                let mut rng = Rng::new(c as u64 + 1);
                let mut request = String::new();
                let mut want = Vec::with_capacity(PER_CONN);
                for i in 0..PER_CONN {
                    let verb = ["OUT", "THEN", "MSG"][i % 3];
                    let tag = format!("c{c}-{i}");
                    request.push_str(&format!("{verb} {} {tag}\n", rng.range(0, 4)));
                    want.push(tag);
                }
                let mut stream = connect(addr);
                stream.write_all(request.as_bytes()).unwrap();
                let mut reader = BufReader::new(stream);
                assert_eq!(read_lines(&mut reader, PER_CONN), want, "connection {c}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    fx.failures.assert_none();
    assert_eq!(fx.probe.started.load(SeqCst), CONNS * PER_CONN);
    assert_eq!(fx.probe.dropped_unfinished.load(SeqCst), 0);
    wait_until("every connection closed", || fx.open_connections() == 0);
    for _ in 0..CONNS {
        assert_eq!(fx.next_close(), "peer_closed");
    }
}

#[test]
fn results_come_back_in_submission_order_on_the_servers_runtime() {
    let _serial = serial();
    ordered_under_load(Server::builder().tokio_threads(2));
}

#[test]
fn results_come_back_in_submission_order_on_the_applications_runtime() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    ordered_under_load(Server::builder().tokio_handle(rt.handle().clone()));
}

/// At the bound, the connection's input waits unread; each completion lets one more in, and
/// the replies still come in order.
#[test]
fn reading_pauses_at_the_bound_and_resumes() {
    let _serial = serial();
    const BOUND: usize = 4;
    const LINES: usize = 40;
    let fx = Fixture::start(Server::builder().tokio_threads(1), BOUND);
    let mut stream = connect(fx.addr());
    let request: String = (0..LINES).map(|i| format!("GATE {i}\n")).collect();
    stream.write_all(request.as_bytes()).unwrap();
    wait_until("the first futures wait at the gate", || {
        fx.probe.alive.load(SeqCst) == BOUND
    });
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for i in 0..LINES {
        // One gate at a time: each reply lets one more line in.
        fx.gates.send_replace(i + 1);
        assert_eq!(read_lines(&mut reader, 1), [format!("g{i}")]);
        fx.failures.assert_none();
        assert!(fx.probe.started.load(SeqCst) <= (i + 1 + BOUND).min(LINES));
    }
    assert!(
        fx.probe.max_alive.load(SeqCst) <= BOUND,
        "never more than the bound in flight"
    );
    assert_eq!(fx.probe.started.load(SeqCst), LINES);
    drop(reader);
    stream.shutdown(Shutdown::Both).unwrap();
    assert_eq!(fx.next_close(), "peer_closed");
}

/// A client that resets: the future that would never finish is dropped, the connection is
/// gone, and every descriptor it used is closed.
#[test]
fn a_reset_connection_drops_its_futures() {
    let _serial = serial();
    let fx = Fixture::start(Server::builder().tokio_threads(1), 16);
    let fds = open_fds();
    let mut streams = Vec::new();
    for _ in 0..8 {
        let mut s = connect(fx.addr());
        s.write_all(b"HANG\nHANG\nOUT 0 never-written\n").unwrap();
        streams.push(s);
    }
    // Every future started, and only the hanging ones still run.
    wait_until("the hanging futures run", || {
        fx.probe.started.load(SeqCst) == 24 && fx.probe.alive.load(SeqCst) == 16
    });
    for s in streams {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // SO_LINGER 0: a reset
    }
    for _ in 0..8 {
        assert_eq!(fx.next_close(), "reset");
    }
    wait_until("the futures are dropped", || {
        fx.probe.dropped_unfinished.load(SeqCst) == 16
    });
    assert_eq!(fx.probe.alive.load(SeqCst), 0);
    wait_until("the connections are closed", || fx.open_connections() == 0);
    wait_until("the descriptors are closed", || open_fds() == fds);
}

/// A client that sends its last request and closes its side: the close waits for the output
/// owed, but a future that never finishes is cut by the flush timeout and dropped.
#[test]
fn a_graceful_close_waits_for_outputs_and_is_bounded_by_the_flush_timeout() {
    let _serial = serial();
    let builder = Server::builder()
        .tokio_threads(1)
        .flush_timeout(Duration::from_millis(200));
    let fx = Fixture::start(builder, 16);
    let fds = open_fds();
    // Outputs still owed when the peer finishes are written before the close.
    let mut s = connect(fx.addr());
    s.write_all(b"OUT 50 first\nTHEN 20 second\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(s);
    assert_eq!(read_to_end(&mut reader), "first\nsecond\n");
    assert_eq!(fx.next_close(), "peer_closed");
    drop(reader);
    // One that never comes: the flush timeout closes the connection and drops the future.
    let mut s = connect(fx.addr());
    s.write_all(b"OUT 0 before\nHANG\nOUT 0 after\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(s);
    assert_eq!(read_to_end(&mut reader), "before\n");
    assert_eq!(fx.next_close(), "peer_closed");
    // (The one after it is dropped too if it had not finished by then.)
    wait_until("the hanging future is dropped", || {
        fx.probe.dropped_unfinished.load(SeqCst) >= 1
    });
    wait_until("no future of it runs on", || {
        fx.probe.alive.load(SeqCst) == 0
    });
    drop(reader);
    wait_until("the connections are closed", || fx.open_connections() == 0);
    wait_until("the descriptors are closed", || open_fds() == fds);
}

/// A future that panics, and one whose closure panics on the loop: each closes its own
/// connection after the replies before it, and a neighbour is served throughout.
#[test]
fn a_panicking_future_closes_only_its_connection() {
    let _serial = serial();
    let fx = Fixture::start(Server::builder().tokio_threads(2), 16);
    let mut neighbour = connect(fx.addr());
    let mut neighbour_in = BufReader::new(neighbour.try_clone().unwrap());
    neighbour.write_all(b"OUT 1 n0\n").unwrap();
    assert_eq!(read_lines(&mut neighbour_in, 1), ["n0"]);
    // A panicking future: the replies before it go out, the ones after it never do. A
    // panicking closure is a panicking callback: its connection closes at once, and output
    // not yet sent is dropped, so nothing comes before it here.
    for (i, (bad, before)) in [("PANIC", "OUT 1 before\n"), ("APPLYPANIC", "")]
        .iter()
        .enumerate()
    {
        let mut s = connect(fx.addr());
        s.write_all(format!("{before}{bad}\nOUT 0 after\n").as_bytes())
            .unwrap();
        let mut reader = BufReader::new(s);
        let want = if before.is_empty() { "" } else { "before\n" };
        assert_eq!(read_to_end(&mut reader), want, "{bad}");
        assert_eq!(fx.next_close(), "panicked", "{bad}");
        neighbour
            .write_all(format!("THEN 1 n{}\nMSG 0 m{}\n", i + 1, i + 1).as_bytes())
            .unwrap();
        assert_eq!(
            read_lines(&mut neighbour_in, 2),
            [format!("n{}", i + 1), format!("m{}", i + 1)]
        );
    }
    fx.failures.assert_none();
    assert_eq!(fx.open_connections(), 1);
    let closed = fx.server.stats().total().closed_by_reason;
    assert_eq!(
        closed.get(&CloseReason::Panicked),
        2,
        "both counted as panicked"
    );
}

/// A graceful stop waits for outputs up to its deadline, then drops what still runs; the
/// server's runtime is shut down before `join` returns.
#[test]
fn a_stop_drops_unfinished_futures_and_the_runtime() {
    let _serial = serial();
    let builder = Server::builder()
        .tokio_threads(2)
        .stop_timeout(Duration::from_millis(300));
    let fx = Fixture::start(builder, 16);
    let mut s = connect(fx.addr());
    s.write_all(b"HANG\n").unwrap();
    wait_until("the hanging future runs", || {
        fx.probe.alive.load(SeqCst) == 1
    });
    let runtime_threads = || tokio_threads().len();
    // (A worker names itself once it runs: under load that may come after the future.)
    wait_until("the server's runtime runs its 2 threads", || {
        runtime_threads() == 2
    });
    fx.server.stop();
    fx.server.join().expect("join the server");
    assert_eq!(fx.probe.dropped_unfinished.load(SeqCst), 1);
    wait_until("the runtime's threads exit", || runtime_threads() == 0);
    let (_, reason) = fx.failures.recv(&fx.closed, "the connection to close");
    assert_eq!(reason, "server_shutdown");
    let mut reader = BufReader::new(s);
    assert_eq!(read_to_end(&mut reader), "");
}

/// Threads of this process named like the server's runtime workers.
fn tokio_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| name.starts_with("eventide-tokio"))
        .collect()
}

/// An application runtime shut down under a running server: the futures it drops close
/// their connections with an error (their replies will never come).
#[test]
fn a_runtime_that_shuts_down_closes_the_connections_it_abandons() {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let fx = Fixture::start(Server::builder().tokio_handle(rt.handle().clone()), 16);
    let s = connect(fx.addr());
    (&s).write_all(b"HANG\n").unwrap();
    wait_until("the hanging future runs", || {
        fx.probe.alive.load(SeqCst) == 1
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    assert_eq!(fx.next_close(), "error");
    let mut reader = BufReader::new(s);
    assert_eq!(read_to_end(&mut reader), "");
    assert_eq!(fx.probe.dropped_unfinished.load(SeqCst), 1);
}

/// Without a runtime, spawning fails with `Unsupported` and the future is dropped unrun.
#[test]
fn without_a_runtime_spawning_is_unsupported() {
    let _serial = serial();
    struct NoRuntime(mpsc::Sender<(bool, std::io::ErrorKind)>);
    impl Handler for NoRuntime {
        type State = ();
        type Message = ();
        fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
            let can = conn.can_spawn();
            let kind = conn
                .spawn(async { Vec::new() })
                .map_or_else(|e| e.kind(), |()| std::io::ErrorKind::Other);
            let _ = self.0.send((can, kind));
            conn.close();
            Ok(())
        }
        fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
            Action::Continue
        }
    }
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| NoRuntime(tx.clone()))
        .unwrap();
    assert!(server.tokio_handle().is_none());
    let _s = connect(server.local_addr());
    let (can, kind) = rx.recv_timeout(util::TIMEOUT).expect("on_open ran");
    assert!(!can);
    assert_eq!(kind, std::io::ErrorKind::Unsupported);
}

/// Loop-level futures: the output runs on the loop that spawned it; one still running when
/// the server stops is dropped.
#[test]
fn loop_level_futures_run_their_output_on_the_loop() {
    let _serial = serial();
    struct Boot {
        done: mpsc::Sender<(usize, usize)>,
        probe: Arc<Probe>,
    }
    impl Handler for Boot {
        type State = ();
        type Message = ();
        fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
            Ok(())
        }
        fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
            Action::Continue
        }
        fn on_boot(&mut self, cx: &mut eventide::LoopCx<'_>) {
            let (done, index) = (self.done.clone(), cx.index());
            let probe = Arc::clone(&self.probe);
            cx.spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                move |cx: &mut eventide::LoopCx<'_>| {
                    let _ = done.send((index, cx.index()));
                }
            })
            .expect("spawn a loop-level future");
            cx.spawn(async move {
                let _live = Live::new(&probe);
                std::future::pending::<fn(&mut eventide::LoopCx<'_>)>().await
            })
            .expect("spawn a loop-level future");
        }
    }
    let (tx, rx) = mpsc::channel();
    let probe = Arc::new(Probe::default());
    let p = Arc::clone(&probe);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .tokio_threads(1)
        .start(move |_| Boot {
            done: tx.clone(),
            probe: Arc::clone(&p),
        })
        .unwrap();
    let mut seen: Vec<(usize, usize)> = (0..2)
        .map(|_| {
            rx.recv_timeout(util::TIMEOUT)
                .expect("a loop-level output ran")
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [(0, 0), (1, 1)], "each output ran on its own loop");
    wait_until("the pending futures run", || probe.alive.load(SeqCst) == 2);
    server.stop();
    server.join().unwrap();
    assert_eq!(probe.dropped_unfinished.load(SeqCst), 2);
}
