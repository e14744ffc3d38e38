//! The proxy demo's relay in front of an echo server: 50 clients with random payloads up to
//! 4 MiB each get every byte back, in order; every client half-closes after sending and still
//! receives all of its data before the close.

#[path = "../examples/proxy/relay.rs"]
mod relay;
mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;

use eventide::{Addr, Server};
use relay::Relay;
use util::{connect, Echo, Rng};

#[test]
fn proxy_relays_both_ways_and_propagates_half_close() {
    let (factory, _closed) = Echo::factory();
    let backend = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(factory)
        .unwrap();
    let backend_addr = Addr::Tcp(backend.local_addr());
    let proxy = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| Relay::new(backend_addr.clone()))
        .unwrap();
    let addr = proxy.local_addr();
    let clients: Vec<_> = (0..50u64)
        .map(|c| {
            thread::spawn(move || {
                let mut rng = Rng::new(1000 + c);
                let len = rng.range(0, 4 << 20) as usize;
                let data = rng.bytes(len);
                let mut reader = connect(addr);
                let mut writer = reader.try_clone().unwrap();
                let sent = data.clone();
                let t = thread::spawn(move || {
                    writer.write_all(&sent).unwrap();
                    // Half-close: the FIN must travel through the proxy to the echo server.
                    writer.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::with_capacity(len);
                reader.read_to_end(&mut got).unwrap();
                t.join().unwrap();
                assert_eq!(got.len(), data.len(), "client {c}: length");
                assert!(got == data, "client {c}: bytes differ");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    // Both proxy sides and the backend connections all closed in the end.
    util::wait_until("the proxy's connections close", || {
        proxy.stats().total().connections == 0
    });
    util::wait_until("the backend's connections close", || {
        backend.stats().total().connections == 0
    });
    let p = proxy.stats().total();
    assert_eq!((p.accepted, p.connected, p.connect_errors), (50, 50, 0));
    assert_eq!(p.panics, 0);
}

/// A backend that refuses: the client is closed, the proxy keeps serving.
#[test]
fn refused_backend_closes_the_client() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Relay::new(Addr::Tcp(dead)))
        .unwrap();
    let mut c = connect(proxy.local_addr());
    let _ = c.write_all(b"anyone there?");
    let (got, _) = util::read_until_closed(&mut c);
    assert!(got.is_empty());
    assert_eq!(proxy.stats().total().connect_errors, 1);
}
