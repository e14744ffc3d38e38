//! UDP: batched receive and send, every datagram answered, truncation reported.

mod util;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::thread;

use eventide::{Action, Conn, Datagram, Handler, Refusal, Server, Udp};
use util::{wait_until, Rng, TIMEOUT};

/// Echoes datagrams; a truncated one is answered with `TRUNCATED <real length>`; one that
/// starts with `PANIC` makes it panic.
struct UdpEcho;

impl Handler for UdpEcho {
    type State = ();
    type Message = ();
    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }
    fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
        Action::Continue
    }
    fn on_datagram(&mut self, udp: &mut Udp<'_>, d: Datagram<'_>) {
        if d.data().starts_with(b"PANIC") {
            panic!("test handler asked to panic");
        }
        if d.is_truncated() {
            let msg = format!("TRUNCATED {} {}", d.len(), d.data().len());
            udp.send_to(msg.as_bytes(), d.peer());
        } else {
            udp.send_to(d.data(), d.peer());
        }
    }
}

/// The datagram a client sends for sequence number `seq`: its id and seq, then bytes derived
/// from both, 16..=512 bytes long.
fn datagram(client: u64, seq: u64) -> Vec<u8> {
    let mut rng = Rng::new(client << 32 | seq);
    let len = rng.range(16, 512) as usize;
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&client.to_le_bytes());
    d.extend_from_slice(&seq.to_le_bytes());
    d.extend(rng.bytes(len - 16));
    d
}

fn echo_load(server: &Server, clients: u64, per_client: u64, in_flight: u64) {
    let addr = server.udp_addrs()[0];
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(addr).unwrap();
                s.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut outstanding = HashSet::new();
                let mut next = 0u64;
                let mut answered = 0u64;
                let mut buf = [0u8; 1024];
                while answered < per_client {
                    while next < per_client && outstanding.len() < in_flight as usize {
                        s.send(&datagram(c, next)).unwrap();
                        outstanding.insert(next);
                        next += 1;
                    }
                    let n = s.recv(&mut buf).expect("a datagram was lost");
                    let seq = u64::from_le_bytes(buf[8..16].try_into().unwrap());
                    assert!(
                        outstanding.remove(&seq),
                        "client {c}: unexpected reply {seq}"
                    );
                    assert_eq!(
                        &buf[..n],
                        &datagram(c, seq)[..],
                        "client {c}: reply {seq} differs"
                    );
                    answered += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// 100,000 datagrams from 10 clients, at most 32 in flight each: every one answered, exactly.
#[test]
fn udp_echo_loses_nothing_with_batching() {
    let server = Server::builder()
        .bind_udp("127.0.0.1:0")
        .loops(1)
        .start(|_| UdpEcho)
        .unwrap();
    echo_load(&server, 10, 10_000, 32);
    // The loop publishes its counters after the turn that sent the last replies.
    wait_until("the loop counts every datagram", || {
        server.stats().total().datagrams_out >= 100_000
    });
    let t = server.stats().total();
    assert_eq!(t.datagrams_in, 100_000);
    assert_eq!(t.datagrams_out, 100_000);
    assert_eq!((t.datagrams_truncated, t.datagrams_dropped), (0, 0));
}

/// Without batching (plain recvmsg/sendto) and with one SO_REUSEPORT socket per loop.
#[test]
fn udp_echo_unbatched_and_reuseport() {
    let server = Server::builder()
        .bind_udp("127.0.0.1:0")
        .loops(2)
        .reuse_port(true)
        .udp_batch(1)
        .start(|_| UdpEcho)
        .unwrap();
    echo_load(&server, 4, 2_000, 8);
    wait_until("the loops count every datagram", || {
        server.stats().total().datagrams_out >= 8_000
    });
    assert_eq!(server.stats().total().datagrams_out, 8_000);
}

/// A datagram over the maximum size is reported truncated, with its real length.
#[test]
fn oversize_datagram_is_reported_truncated() {
    let server = Server::builder()
        .bind_udp("127.0.0.1:0")
        .loops(1)
        .udp_max_datagram(512)
        .start(|_| UdpEcho)
        .unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server.udp_addrs()[0]).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.send(&[1u8; 1000]).unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"TRUNCATED 1000 512");
    s.send(&[2u8; 512]).unwrap();
    let mut big = [0u8; 1024];
    let n = s.recv(&mut big).unwrap();
    assert_eq!(
        &big[..n],
        &[2u8; 512][..],
        "exactly the maximum is not truncated"
    );
    wait_until("the truncation is counted", || {
        server.stats().total().datagrams_truncated >= 1
    });
    assert_eq!(server.stats().total().datagrams_truncated, 1);
}

/// TCP and UDP on one server, one handler.
#[test]
fn tcp_and_udp_side_by_side() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .bind_udp("127.0.0.1:0")
        .loops(1)
        .start(|_| UdpEcho)
        .unwrap();
    assert_eq!(server.local_addrs().len(), 1);
    echo_load(&server, 1, 100, 4);
    server.stop();
    server.join().unwrap();
}

/// A panic in `on_datagram` is caught and counted like any other callback's; the socket
/// keeps serving.
#[test]
fn panic_in_on_datagram_is_counted_and_the_socket_keeps_serving() {
    let server = Server::builder()
        .bind_udp("127.0.0.1:0")
        .loops(1)
        .start(|_| UdpEcho)
        .unwrap();
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server.udp_addrs()[0]).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.send(b"PANIC now").unwrap();
    s.send(b"after").unwrap();
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
    wait_until("the panic is counted", || {
        server.stats().total().panics >= 1
    });
    assert_eq!(server.stats().total().panics, 1);
}
