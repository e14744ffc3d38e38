//! The torture suite: real servers on loopback whose system calls misbehave on purpose (feature
//! `faults`), under several seeds at rates up to 10 %. Every byte must arrive exactly once and
//! in order; only an injected connection-fatal fault may end a connection, and then the
//! server must report it with the matching `CloseReason`; no descriptor leaks, no panic
//! escapes a loop, and the server still serves afterwards. Each case prints how many faults of
//! each kind it survived (`cargo test --features faults --test faults -- --nocapture`).

mod faults_support;
#[allow(dead_code)]
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
        faults_support::wait_until("the server's connections close", || {
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
    faults_support::wait_until("the server's connections close", || {
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
