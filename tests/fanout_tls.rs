//! Fan-out to TLS members: a broadcast's shared payload is encrypted per member (the one
//! path where it cannot be written as it is), and every member still gets every message,
//! whole and in order, read through rustls' own client — also while another TLS member that
//! stopped reading is closed for it in the middle of a run of broadcasts.

#![cfg(feature = "tls")]

#[allow(dead_code)] // the probe handler and most helpers serve tests/tls.rs
mod tls_support;
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use eventide::tls::rustls;
use eventide::{Action, Conn, Group, Handler, Refusal, Server, SlowConsumer};
use tls_support::certs::{client_config, server_config, Ca};
use tls_support::client::handshake_on;
use util::TIMEOUT;

const MEMBERS: usize = 6;
const COUNT: u64 = 200;
/// Long enough to be queued as the shared buffer when the socket refuses it, not copied.
const MESSAGE: usize = 1500;

struct Member {
    room: Group,
    /// Broadcasts refused in `on_data` (checked on the test thread).
    refused: Arc<AtomicU64>,
}

impl Handler for Member {
    type State = ();
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        let _ = self.room.join(conn);
        conn.write(b"in");
        Ok(())
    }

    /// `go` from a client: every message, from this one callback (one run of broadcasts).
    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let go = conn.input() == b"go";
        let (n, me) = (conn.input().len(), conn.id());
        conn.consume(n);
        for seq in (1..=COUNT).filter(|_| go) {
            if self
                .room
                .broadcast_except(&mut conn.loop_cx(), message(seq), me)
                .is_err()
            {
                self.refused.fetch_add(1, Relaxed);
            }
        }
        Action::Continue
    }
}

fn message(seq: u64) -> Arc<[u8]> {
    let mut m = vec![(seq % 251) as u8; MESSAGE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    Arc::from(m)
}

/// A TLS client of `addr` (with a small receive buffer if `small`), past the server's hello.
fn connect(
    addr: std::net::SocketAddr,
    roots: &[rustls::pki_types::CertificateDer<'static>],
    small: bool,
) -> (rustls::ClientConnection, TcpStream) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if small {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    let sock: TcpStream = sock.into();
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let client = handshake_on(sock, client_config(roots, &[]), "localhost").unwrap();
    let (mut conn, mut sock) = (client.conn, client.sock);
    let mut hello = [0u8; 2];
    rustls::Stream::new(&mut conn, &mut sock)
        .read_exact(&mut hello)
        .expect("the server's hello");
    assert_eq!(&hello, b"in");
    (conn, sock)
}

/// Reads messages `1..=COUNT` on a thread of its own, storing its progress; hands the
/// connection back (still a member).
fn reader(
    (mut conn, mut sock): (rustls::ClientConnection, TcpStream),
    done: Arc<AtomicU64>,
) -> thread::JoinHandle<(rustls::ClientConnection, TcpStream)> {
    thread::spawn(move || {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let mut m = vec![0u8; MESSAGE];
        for want in 1..=COUNT {
            tls.read_exact(&mut m)
                .unwrap_or_else(|e| panic!("message {want}: {e}"));
            assert!(*m == *message(want), "message {want} whole and in order");
            done.store(want, Relaxed);
        }
        (conn, sock)
    })
}

/// Posts messages `1..=COUNT`, at most `window` ahead of the slowest of `progress`.
fn publish(room: &Group, progress: &[Arc<AtomicU64>], window: u64) {
    let start = Instant::now();
    for seq in 1..=COUNT {
        let payload = message(seq);
        loop {
            assert!(start.elapsed() < TIMEOUT, "publishing message {seq}");
            if progress.iter().any(|p| p.load(Relaxed) + window < seq) {
                thread::yield_now();
                continue;
            }
            match room.post(Arc::clone(&payload)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("post {seq}: {e}"),
            }
        }
    }
}

/// A TLS server whose connections are members of `room`. `send_buffer`: the sockets' send
/// buffer size, if not the system's.
fn serve(
    room: &Group,
    leaf: &tls_support::certs::Leaf,
    refused: &Arc<AtomicU64>,
    send_buffer: Option<usize>,
) -> Server {
    let (factory_room, refused) = (room.clone(), Arc::clone(refused));
    let mut builder = Server::builder();
    if let Some(bytes) = send_buffer {
        builder = builder.socket_send_buffer(bytes);
    }
    builder
        .bind_tls("127.0.0.1:0", server_config(leaf, &[]))
        .loops(2)
        // Every message of a `go` in flight to the other loop at once.
        .handle_write_limit(4 << 20)
        .start(move |_| Member {
            room: factory_room.clone(),
            refused: Arc::clone(&refused),
        })
        .unwrap()
}

/// All the messages from one callback: each member gets them as one run of broadcasts,
/// more than one gathering write's worth, encrypted in turn for each.
#[test]
fn tls_members_get_every_broadcast_whole_and_in_order() {
    let ca = Ca::new("fan-out CA");
    let leaf = ca.leaf(&["localhost"]);
    // Room for every message: this test is about the bytes, not the slow-consumer policy.
    let room = Group::with_max_pending(SlowConsumer::Close, 4 << 20);
    let refused = Arc::default();
    // The system's send buffers: records are gathered in the loop's staging buffer, not
    // queued behind refused output.
    let server = serve(&room, &leaf, &refused, None);
    let roots = [ca.der()];
    let readers: Vec<_> = (0..MEMBERS)
        .map(|_| reader(connect(server.local_addr(), &roots, false), Arc::default()))
        .collect();
    let (mut conn, mut sock) = connect(server.local_addr(), &roots, false);
    util::wait_until("every member joined", || room.len() == MEMBERS + 1);
    rustls::Stream::new(&mut conn, &mut sock)
        .write_all(b"go")
        .unwrap();
    let _members: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("a member read every message"))
        .collect();
    assert_eq!(refused.load(Relaxed), 0, "broadcasts refused");
    util::wait_until("every message counted", || {
        room.stats().delivered == COUNT * MEMBERS as u64
    });
    let stats = room.stats();
    assert_eq!((stats.dropped, stats.closed), (0, 0));
    server.stop();
    server.join().unwrap();
}

#[test]
fn a_stalled_tls_member_is_closed_and_the_others_lose_nothing() {
    let ca = Ca::new("fan-out CA");
    let leaf = ca.leaf(&["localhost"]);
    // The readers are kept within a few messages of the publisher, far from the limit; the
    // stalled member passes it and is closed.
    let room = Group::with_max_pending(SlowConsumer::Close, 64 * 1024);
    let server = serve(&room, &leaf, &Arc::default(), Some(16 * 1024));
    let roots = [ca.der()];
    let _stalled = connect(server.local_addr(), &roots, true);
    let progress: Vec<Arc<AtomicU64>> = (0..MEMBERS).map(|_| Arc::default()).collect();
    let readers: Vec<_> = progress
        .iter()
        .map(|p| reader(connect(server.local_addr(), &roots, false), Arc::clone(p)))
        .collect();
    util::wait_until("every member joined", || room.len() == MEMBERS + 1);
    publish(&room, &progress, 8);
    let _members: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("a member read every message"))
        .collect();
    util::wait_until("the stalled member closed", || room.stats().closed == 1);
    let stats = room.stats();
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.members, MEMBERS, "the others stay");
    server.stop();
    server.join().unwrap();
}
