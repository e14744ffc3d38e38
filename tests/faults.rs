//! The torture suite: real servers on loopback whose system calls misbehave on purpose (feature
//! `faults`), under several seeds at rates up to 10 %. Every byte must arrive exactly once and
//! in order; only an injected connection-fatal fault may end a connection, and then the
//! server must report it with the matching `CloseReason`; no descriptor leaks, no panic
//! escapes a loop, and the server still serves afterwards. Each case prints how many faults of
//! each kind it survived (`cargo test --features faults --test faults -- --nocapture`).

mod faults_support;
#[path = "faults_support/protocols.rs"]
mod protocols;
mod util;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use eventide::{FaultConfig, FaultKind};
use eventide::{Server, Trigger};
use faults_support::{lockstep, mixes, pipelined, recorded, seeds, verdict, Case, Echo, Outcome};
use util::Rng;

/// Payload sizes: every order of magnitude from 1 byte to 4 MiB.
fn payloads(seed: u64, n: usize) -> Vec<Arc<Vec<u8>>> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<_> = (0..n)
        .map(|_| {
            let len = rng.log_uniform(1, 4 << 20) as usize;
            Arc::new(rng.bytes(len))
        })
        .collect();
    v[0] = Arc::new(rng.bytes(4 << 20)); // the largest always runs
    v[1] = Arc::new(rng.bytes(1));
    v
}

/// After the faulty traffic: a fresh client still gets its echo (retrying past connections an
/// injected fatal fault ends).
fn still_serves(addr: std::net::SocketAddr) {
    for _ in 0..20 {
        let o = lockstep(addr, b"still there?", 64);
        if o.got == o.expected {
            return;
        }
    }
    panic!("the server stopped serving after the faults");
}

#[derive(Clone, Copy)]
struct EchoCase {
    edge: bool,
    reuse_port: bool,
    pipelined: bool,
}

fn echo_case(c: EchoCase, cfg: FaultConfig) {
    let name = format!(
        "echo {} {} {} {cfg}",
        if c.edge { "edge" } else { "level" },
        if c.reuse_port {
            "reuseport"
        } else {
            "acceptor"
        },
        if c.pipelined { "pipelined" } else { "lockstep" },
    );
    let seed = cfg.seed();
    let case = Case::new(&name);
    let what = name.clone();
    let (faults, bytes) = case.run(move || {
        let (factory, log) = recorded(|_| Echo);
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .loops(2)
            .trigger(if c.edge {
                Trigger::Edge
            } else {
                Trigger::Level
            })
            .reuse_port(c.reuse_port)
            .accept_backoff(Duration::from_millis(2))
            // Small reads make many more system calls to misbehave.
            .read_buffer_size(if seed % 2 == 0 { 4096 } else { 64 * 1024 })
            .faults(cfg)
            .start(factory)
            .unwrap();
        let addr = server.local_addr();
        let clients: Vec<_> = payloads(seed, 12)
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                thread::spawn(move || {
                    if c.pipelined {
                        pipelined(addr, Arc::clone(&data), data)
                    } else {
                        // At most a few hundred round trips per client.
                        let chunk = [1, 100, 4096, 65536, 1 << 20][i % 5].max(data.len() / 256);
                        lockstep(addr, &data, chunk)
                    }
                })
            })
            .collect();
        let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
        still_serves(addr);
        util::wait_until("the server's connections close", || {
            server.stats().total().connections == 0
        });
        let stats = server.stats();
        assert_eq!(stats.total().panics, 0, "{what}: a callback panicked");
        let bytes = verdict(&what, &outcomes, &log, stats.faults());
        server.stop();
        server.join().expect("the loops exit cleanly");
        (stats.faults(), bytes)
    });
    case.finish(faults, bytes);
}

#[test]
fn echo_level_acceptor_pipelined() {
    let c = EchoCase {
        edge: false,
        reuse_port: false,
        pipelined: true,
    };
    for cfg in seeds().into_iter().flat_map(mixes) {
        echo_case(c, cfg);
    }
}

#[test]
fn echo_edge_acceptor_pipelined() {
    let c = EchoCase {
        edge: true,
        reuse_port: false,
        pipelined: true,
    };
    for cfg in seeds().into_iter().flat_map(mixes) {
        echo_case(c, cfg);
    }
}

#[test]
fn echo_level_reuseport_lockstep() {
    let c = EchoCase {
        edge: false,
        reuse_port: true,
        pipelined: false,
    };
    for cfg in seeds().into_iter().flat_map(mixes) {
        echo_case(c, cfg);
    }
}

#[test]
fn echo_edge_reuseport_lockstep() {
    let c = EchoCase {
        edge: true,
        reuse_port: true,
        pipelined: false,
    };
    for cfg in seeds().into_iter().flat_map(mixes) {
        echo_case(c, cfg);
    }
}

/// One server under one fault mix: what a case body gets and hands back.
fn serve<H: eventide::Handler>(
    builder: eventide::Builder,
    cfg: FaultConfig,
    make: impl FnMut(usize) -> H,
) -> (Server, faults_support::Log) {
    let (factory, log) = recorded(make);
    let server = builder
        .loops(2)
        .accept_backoff(Duration::from_millis(2))
        .faults(cfg)
        .start(factory)
        .unwrap();
    (server, log)
}

/// Drains, checks that no callback panicked, stops and joins: the loops must exit cleanly.
fn stop(server: Server, what: &str) -> eventide::FaultCounts {
    util::wait_until("the server's connections close", || {
        server.stats().total().connections == 0
    });
    let stats = server.stats();
    assert_eq!(stats.total().panics, 0, "{what}: a callback panicked");
    server.stop();
    server.join().expect("the loops exit cleanly");
    stats.faults()
}

#[test]
fn half_close_with_16_mib() {
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("half-close 16 MiB {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let (server, log) = serve(Server::builder().bind("127.0.0.1:0"), cfg, |_| Echo);
            let addr = server.local_addr();
            let clients: Vec<_> = (0..2)
                .map(|i| {
                    let data = Arc::new(Rng::new(cfg.seed() * 10 + i).bytes(16 << 20));
                    thread::spawn(move || pipelined(addr, Arc::clone(&data), data))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            still_serves(addr);
            let faults = stop(server, &what);
            (faults, verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

#[path = "../examples/proxy/relay.rs"]
mod relay;

#[test]
fn proxy_relay() {
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("proxy relay {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let backend_cfg = cfg.with_seed(cfg.seed() + 1000);
            let (backend, backend_log) =
                serve(Server::builder().bind("127.0.0.1:0"), backend_cfg, |_| Echo);
            let to = eventide::Addr::Tcp(backend.local_addr());
            let (proxy, proxy_log) = serve(Server::builder().bind("127.0.0.1:0"), cfg, move |_| {
                relay::Relay::new(to.clone())
            });
            let addr = proxy.local_addr();
            let clients: Vec<_> = payloads(cfg.seed(), 10)
                .into_iter()
                .map(|data| thread::spawn(move || pipelined(addr, Arc::clone(&data), data)))
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            still_serves(addr);
            let pf = stop(proxy, &what);
            let bf = stop(backend, &what);
            let bytes = faults_support::verdict_relayed(
                &what,
                &outcomes,
                &[(&proxy_log, pf), (&backend_log, bf)],
            );
            (pf + bf, bytes)
        });
        case.finish(faults, bytes);
    }
}

/// Datagrams are echoed exactly (never cut, never duplicated) in batches; the only losses are
/// replies an injected `ENOBUFS` made the server drop, and the server counts those.
#[test]
fn udp_batches() {
    use std::collections::HashSet;
    for cfg in seeds().into_iter().flat_map(mixes) {
        for batch in [32, 1] {
            let what = format!("udp batch {batch} {cfg}");
            let case = Case::new(&what);
            let what2 = what.clone();
            let (faults, bytes) = case.run(move || {
                let builder = Server::builder().bind_udp("127.0.0.1:0").udp_batch(batch);
                let (server, _log) = serve(builder, cfg, |_| Echo);
                let to = server.udp_addrs()[0];
                let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                client
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                let mut rng = Rng::new(cfg.seed());
                let (mut sent, mut bytes) = (0u64, 0u64);
                let mut seen = HashSet::new();
                let mut buf = [0u8; 2048];
                for _burst in 0..30 {
                    let mut waiting = HashSet::new();
                    for _ in 0..64 {
                        let len = rng.range(8, 1400) as usize;
                        let mut d = rng.bytes(len);
                        d[..8].copy_from_slice(&sent.to_le_bytes());
                        client.send_to(&d, to).unwrap();
                        waiting.insert(d);
                        sent += 1;
                    }
                    let start = std::time::Instant::now();
                    loop {
                        match client.recv_from(&mut buf) {
                            Ok((n, _)) => {
                                let d = buf[..n].to_vec();
                                assert!(waiting.remove(&d), "{what2}: a reply nobody sent");
                                assert!(seen.insert(d), "{what2}: a reply came twice");
                                bytes += n as u64;
                            }
                            Err(_) => {
                                let dropped = server.stats().total().datagrams_dropped;
                                if seen.len() as u64 + dropped == sent {
                                    break;
                                }
                                assert!(
                                    start.elapsed() < faults_support::STALL,
                                    "{what2}: {} replies missing, {dropped} dropped",
                                    sent - seen.len() as u64
                                );
                            }
                        }
                    }
                }
                let stats = server.stats().total();
                assert!(
                    stats.datagrams_dropped <= stats.faults.get(FaultKind::NoMem),
                    "{what2}: more replies dropped than faults injected"
                );
                (stop(server, &what2), bytes)
            });
            case.finish(faults, bytes);
        }
    }
}

/// Lines go through the worker pool and come back in the order they were sent.
#[test]
fn worker_pool_keeps_order() {
    struct Lines;
    impl eventide::Handler for Lines {
        type State = ();
        type Message = ();
        fn on_open(&mut self, _: &mut eventide::Conn<'_>) -> Result<(), eventide::Refusal> {
            Ok(())
        }
        fn on_data(&mut self, conn: &mut eventide::Conn<'_>, _: &mut ()) -> eventide::Action {
            // At the jobs limit the rest stays unconsumed; it is offered again on resumption.
            while conn.can_submit() {
                let Some(end) = conn.input().iter().position(|&b| b == b'\n') else {
                    break;
                };
                let line = conn.input()[..=end].to_vec();
                conn.consume(end + 1);
                let spin = line.len() % 7 == 0; // some jobs take longer than the next ones
                let job = move || {
                    if spin {
                        thread::sleep(Duration::from_micros(200));
                    }
                    line.to_ascii_uppercase()
                };
                if conn.submit(job).is_err() {
                    return eventide::Action::Close;
                }
            }
            eventide::Action::Continue
        }
    }
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("worker pool {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let builder = Server::builder()
                .bind("127.0.0.1:0")
                .workers(3)
                .max_jobs_per_conn(4);
            let (server, log) = serve(builder, cfg, |_| Lines);
            let addr = server.local_addr();
            let clients: Vec<_> = (0..6)
                .map(|c| {
                    let mut rng = Rng::new(cfg.seed() * 100 + c);
                    let mut data = Vec::new();
                    for i in 0..2000 {
                        let len = rng.range(0, 60) as usize;
                        data.extend_from_slice(format!("{c}:{i}:").as_bytes());
                        data.extend((0..len).map(|_| b'a' + rng.range(0, 25) as u8));
                        data.push(b'\n');
                    }
                    let expect = Arc::new(data.to_ascii_uppercase());
                    let data = Arc::new(data);
                    thread::spawn(move || pipelined(addr, data, expect))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            (faults, verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

/// Other threads write a connection's stream through its `ConnHandle` (bounded: they wait
/// for `notify_writable` on `WouldBlock`), then close it; the client gets the stream exactly.
#[test]
fn conn_handle_writes_from_other_threads() {
    use std::sync::mpsc;
    struct Give(mpsc::Sender<eventide::ConnHandle>);
    impl eventide::Handler for Give {
        type State = ();
        type Message = ();
        fn on_open(&mut self, conn: &mut eventide::Conn<'_>) -> Result<(), eventide::Refusal> {
            let _ = self.0.send(conn.handle());
            Ok(())
        }
        fn on_data(&mut self, conn: &mut eventide::Conn<'_>, _: &mut ()) -> eventide::Action {
            let n = conn.input().len();
            conn.consume(n);
            eventide::Action::Continue
        }
        fn on_read_closed(&mut self, _: &mut eventide::Conn<'_>, _: &mut ()) -> eventide::Action {
            eventide::Action::Continue // the writer closes
        }
    }
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("conn handle writes {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let (tx, rx) = mpsc::channel();
            let builder = Server::builder()
                .bind("127.0.0.1:0")
                .handle_write_limit(256 * 1024);
            let (server, log) = serve(builder, cfg, move |_| Give(tx.clone()));
            let addr = server.local_addr();
            let mut clients = Vec::new();
            for c in 0..4u64 {
                let data = Arc::new(Rng::new(cfg.seed() * 7 + c).bytes(3 << 20));
                let mut s = faults_support::connect(addr);
                let handle = rx.recv_timeout(faults_support::STALL).expect("on_open ran");
                let stream = Arc::clone(&data);
                let writer = thread::spawn(move || {
                    for piece in stream.chunks(40_000) {
                        loop {
                            match handle.write(piece) {
                                Ok(()) => break,
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                    let (wtx, wrx) = mpsc::channel();
                                    handle.notify_writable(move || {
                                        let _ = wtx.send(());
                                    });
                                    wrx.recv_timeout(faults_support::STALL)
                                        .expect("notify_writable fired");
                                }
                                Err(_) => return, // closed by a fault
                            }
                        }
                    }
                    let _ = handle.close();
                });
                let local = s.local_addr().unwrap();
                clients.push(thread::spawn(move || {
                    let (got, ended_by) =
                        faults_support::read_expecting(&mut s, &data, &format!("client {c}"));
                    writer.join().unwrap();
                    Outcome {
                        local,
                        expected: data.len(),
                        got,
                        ended_by,
                    }
                }));
            }
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            (faults, verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

/// A loop that cannot register its own descriptors (its wake-up eventfd, its listeners) fails
/// `Builder::start` with the reason, and the loops that did start are stopped with it: no
/// server is left whose acceptor would hand connections to a loop that never serves them.
#[test]
fn a_loop_that_cannot_register_fails_the_start() {
    // Serialised with the other cases, whose descriptor counts its sockets would upset.
    let case = Case::new("a loop that cannot register fails the start");
    // Every registration fails: each loop's first one, its wake-up eventfd.
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std.local_addr().unwrap();
    let every = FaultConfig::new(1, 1.0)
        .unwrap()
        .with_kinds(&[FaultKind::NoMem])
        .with_setup(true);
    let err = Server::builder()
        .from_std(std)
        .loops(2)
        .faults(every)
        .on_shutdown(|| panic!("the shutdown hook ran for a server that never started"))
        .start(|_| Echo)
        .expect_err("no loop could register its eventfd");
    assert_eq!(err.kind(), std::io::ErrorKind::OutOfMemory, "{err}");
    assert!(
        err.to_string().contains("registering its wake-up eventfd"),
        "the error says what failed: {err}"
    );
    assert_refused(addr);

    // Only loop 1 fails: with seed 8 at a rate of 1/2, loop 0's two registrations (eventfd,
    // listener) draw no fault and loop 1's first one does (each loop's stream is fixed by the
    // seed and the loop's index). Loop 0 was serving: the failed start stops it.
    let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std.local_addr().unwrap();
    let half = FaultConfig::new(8, 0.5)
        .unwrap()
        .with_kinds(&[FaultKind::NoMem])
        .with_setup(true);
    let err = Server::builder()
        .from_std(std)
        .loops(2)
        .faults(half)
        .start(|_| Echo)
        .expect_err("loop 1 could not register its eventfd");
    assert!(
        err.to_string()
            .starts_with("loop 1: registering its wake-up eventfd"),
        "the error names the loop: {err}"
    );
    assert_refused(addr);

    // The same server without faults in its set-up starts and serves.
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .faults(FaultConfig::new(1, 0.0).unwrap().with_setup(true))
        .start(|_| Echo)
        .expect("starts without faults");
    still_serves(server.local_addr());
    server.stop();
    server.join().unwrap();
    case.finish(eventide::FaultCounts::default(), 0);
}

/// Nothing listens at `addr` any more: the failed start closed the listener it was given.
fn assert_refused(addr: std::net::SocketAddr) {
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr} still accepts after the failed start"),
    }
}
