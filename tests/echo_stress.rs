//! Echo under load: 100 concurrent connections over 4 loops, payloads log-uniform from 1 B to
//! 8 MiB, about 256 MiB per configuration, every client writing and reading at the same time,
//! every byte verified — for the acceptor and SO_REUSEPORT modes, level- and edge-triggered.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use eventide::{Server, Trigger};
use util::{connect, Echo, Rng};

const CONNS: usize = 100;
const LOOPS: usize = 4;
const TOTAL: u64 = 256 << 20;
const MAX_PAYLOAD: u64 = 8 << 20;

fn stress(reuse_port: bool, trigger: Trigger, seed: u64) {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(LOOPS)
        .reuse_port(reuse_port)
        .trigger(trigger)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();

    // Payload sizes, dealt to the connections in turn until ~256 MiB are planned.
    let mut rng = Rng::new(seed);
    let mut plans = vec![Vec::new(); CONNS];
    let mut total = 0;
    let mut i = 0;
    while total < TOTAL {
        let n = rng.log_uniform(1, MAX_PAYLOAD);
        plans[i % CONNS].push(n as usize);
        total += n;
        i += 1;
    }

    let clients: Vec<_> = plans
        .into_iter()
        .enumerate()
        .map(|(c, sizes)| {
            let stream_seed = seed ^ (c as u64 + 1) << 32;
            thread::spawn(move || {
                let mut reader = connect(addr);
                let mut writer = reader.try_clone().unwrap();
                let expected: usize = sizes.iter().sum();
                let sender = thread::spawn(move || {
                    let mut rng = Rng::new(stream_seed);
                    for n in sizes {
                        writer.write_all(&rng.bytes(n)).unwrap();
                    }
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                // Regenerate the same stream and compare as it arrives.
                let mut rng = Rng::new(stream_seed);
                let mut want = Vec::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0usize;
                loop {
                    let n = reader.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    want.resize(n, 0);
                    rng.fill_stream(&mut want);
                    assert!(
                        buf[..n] == want[..],
                        "connection {c}: bytes differ at offset {got}"
                    );
                    got += n;
                }
                sender.join().unwrap();
                assert_eq!(got, expected, "connection {c}: echoed length");
                got as u64
            })
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|t| t.join()).collect();
    let reasons: Vec<String> = closed.try_iter().map(|c| c.reason).collect();
    let odd: Vec<&String> = reasons.iter().filter(|r| *r != "peer_closed").collect();
    assert!(odd.is_empty(), "unexpected close reasons: {odd:?}");
    let echoed: u64 = results.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(echoed, total);

    util::wait_until("all connections closed", || {
        server.stats().total().connections == 0
    });
    let stats = server.stats();
    let t = stats.total();
    assert_eq!(t.accepted, CONNS as u64);
    assert_eq!(t.bytes_in, total);
    assert_eq!(t.bytes_out, total);
    assert_eq!(t.panics, 0);
    for (i, l) in stats.loops.iter().enumerate() {
        if reuse_port {
            assert!(
                l.accepted > 0,
                "loop {i} got no connection from SO_REUSEPORT"
            );
        } else {
            assert_eq!(
                l.accepted,
                (CONNS / LOOPS) as u64,
                "round-robin share of loop {i}"
            );
        }
    }
    server.stop();
    server.join().unwrap();
}

#[test]
fn acceptor_level_triggered() {
    stress(false, Trigger::Level, 1);
}

#[test]
fn acceptor_edge_triggered() {
    stress(false, Trigger::Edge, 2);
}

#[test]
fn reuseport_level_triggered() {
    stress(true, Trigger::Level, 3);
}

#[test]
fn reuseport_edge_triggered() {
    stress(true, Trigger::Edge, 4);
}
