//! Flow control and the ends of connections: half-close, the output high-water mark, the
//! inbound limit, the connection limit, panics, graceful stop, close reasons.

mod util;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use eventide::{InboundPolicy, Server};
use util::{connect, read_until_closed, roundtrip, Echo, Rng, TIMEOUT};

fn next_close(rx: &mpsc::Receiver<util::Closed>) -> util::Closed {
    rx.recv_timeout(TIMEOUT)
        .expect("a connection should have closed")
}

/// muduo loses data here: the client half-closes after 64 MiB and must still get all 64 MiB
/// back before the server closes.
#[test]
fn half_close_delivers_everything_back() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let mut stream = connect(server.local_addr());
    let mut writer = stream.try_clone().unwrap();
    let data = Rng::new(7).bytes(64 << 20);
    let sent = data.clone();
    let t = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let (got, reset) = read_until_closed(&mut stream);
    t.join().unwrap();
    assert!(!reset, "the server reset the connection");
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    assert_eq!(next_close(&closed).reason, "peer_closed");
}

/// A client that writes but never reads: output stops growing at the high-water mark (reading
/// pauses), and everything arrives once the client reads.
#[test]
fn high_water_mark_bounds_pending_output() {
    const HIGH: usize = 256 * 1024;
    const READ_CHUNK: usize = 64 * 1024;
    const SENT: usize = 32 << 20;
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .high_water(HIGH, HIGH / 4)
        .read_buffer_size(READ_CHUNK)
        .start(factory)
        .unwrap();
    let stream = connect(server.local_addr());
    let mut writer = stream.try_clone().unwrap();
    let data = Rng::new(11).bytes(SENT);
    let sent = data.clone();
    let t = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    // The client reads nothing until the server's output has passed the mark.
    util::wait_until("output passes the high-water mark", || {
        server.stats().total().peak_pending_output > HIGH as u64
    });
    let peak = server.stats().total().peak_pending_output;
    assert!(
        peak <= (HIGH + READ_CHUNK) as u64,
        "peak pending output {peak}"
    );
    let mut stream = stream;
    let (got, _) = read_until_closed(&mut stream);
    t.join().unwrap();
    assert!(
        got == data,
        "echo differs ({} of {} bytes)",
        got.len(),
        data.len()
    );
    let peak = server.stats().total().peak_pending_output;
    assert!(
        peak <= (HIGH + READ_CHUNK) as u64,
        "peak pending output {peak}"
    );
}

/// A handler that never consumes hits the inbound limit and that connection closes with its
/// reason; other connections keep echoing.
#[test]
fn inbound_limit_closes_hoarding_connection() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .inbound_limit(64 * 1024, InboundPolicy::Close)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut good = connect(addr);
    assert_eq!(roundtrip(&mut good, b"before"), b"before");

    let mut hoarder = connect(addr);
    hoarder.write_all(b"HOARD").unwrap();
    let filler = vec![b'x'; 128 * 1024];
    // The server closes once it has read past the limit; later writes may fail with a reset.
    let _ = hoarder.write_all(&filler);
    let (echoed, _) = read_until_closed(&mut hoarder);
    assert!(
        echoed.is_empty(),
        "nothing was consumed, so nothing is echoed"
    );
    assert_eq!(next_close(&closed).reason, "inbound_limit");

    assert_eq!(roundtrip(&mut good, b"after"), b"after");
}

/// Under the pause policy the hoarding connection stops being read (the server never reads
/// much past the limit) while others are served.
#[test]
fn inbound_limit_pauses_hoarding_connection() {
    const LIMIT: usize = 64 * 1024;
    const READ: usize = 16 * 1024;
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .inbound_limit(LIMIT, InboundPolicy::Pause)
        .read_buffer_size(READ)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let hoarded = || server.stats().total().bytes_in as usize;
    let mut hoarder = connect(addr);
    hoarder.write_all(b"HOARD").unwrap();
    hoarder.set_nonblocking(true).unwrap();
    // Offer input until the server has read past the limit (it pauses there); whatever the
    // kernel buffers then hold stays unread.
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 5usize;
    util::wait_until("the server reads past the limit", || {
        match hoarder.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("write failed: {e}"),
        }
        hoarded() > LIMIT
    });
    while let Ok(n) = hoarder.write(&chunk) {
        written += n;
    }
    // Round trips on another connection of the same loop: each is a turn of the loop, in
    // which a hoarder still registered for reading would have been read again.
    let read = hoarded();
    let mut good = connect(addr);
    for i in 0..4 {
        let msg = format!("still served {i}");
        assert_eq!(roundtrip(&mut good, msg.as_bytes()), msg.as_bytes());
    }
    let good_bytes = (0..4)
        .map(|i| format!("still served {i}").len())
        .sum::<usize>();
    assert_eq!(
        hoarded() - good_bytes,
        read,
        "the paused connection was read again"
    );
    assert!(
        read <= LIMIT + READ,
        "read {read} bytes past a {LIMIT}-byte limit"
    );
    assert!(read < written, "the hoarder's last bytes stay unread");
}

/// The connection limit: the extra connection is closed at once and counted.
#[test]
fn max_connections_refuses_extra() {
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .max_connections(10)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    for (i, s) in held.iter_mut().enumerate() {
        let msg = format!("hello {i}");
        assert_eq!(roundtrip(s, msg.as_bytes()), msg.as_bytes());
    }
    let mut extra = connect(addr);
    let (got, _) = read_until_closed(&mut extra);
    assert!(got.is_empty());
    assert_eq!(server.stats().total().refused, 1);
    // Closing one makes room.
    drop(held.pop());
    util::wait_until("a connection closes", || {
        server.stats().total().connections == 9
    });
    let mut next = connect(addr);
    assert_eq!(roundtrip(&mut next, b"room again"), b"room again");
}

/// A panicking callback closes its own connection; others keep echoing.
#[test]
fn panic_closes_only_that_connection() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut good = connect(addr);
    assert_eq!(roundtrip(&mut good, b"one"), b"one");
    let mut bad = connect(addr);
    bad.write_all(b"PANIC please").unwrap();
    let (got, _) = read_until_closed(&mut bad);
    assert!(got.is_empty());
    assert_eq!(next_close(&closed).reason, "panicked");
    assert_eq!(server.stats().total().panics, 1);
    assert_eq!(roundtrip(&mut good, b"two"), b"two");
    let mut fresh = connect(addr);
    assert_eq!(roundtrip(&mut fresh, b"three"), b"three");
}

/// Close reasons: orderly close by the peer, and a reset.
#[test]
fn peer_close_and_reset_reasons() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut s = connect(addr);
    assert_eq!(roundtrip(&mut s, b"x"), b"x");
    drop(s);
    // End of stream first: the default on_read_closed closes the connection.
    assert_eq!(next_close(&closed).reason, "peer_closed");

    let mut s = connect(addr);
    assert_eq!(roundtrip(&mut s, b"y"), b"y");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    assert_eq!(next_close(&closed).reason, "reset");
}

/// Graceful stop from another thread while 100 connections have output pending: every byte
/// the server read comes back before the close, and all threads join.
#[test]
fn graceful_stop_flushes_pending_output() {
    const CONNS: usize = 100;
    const EACH: usize = 1 << 20;
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .high_water(256 * 1024, 64 * 1024)
        .socket_send_buffer(16 * 1024)
        .stop_timeout(TIMEOUT)
        // The clients read only once the stop has begun, each on a thread of its own that a
        // busy machine may start late: a linger or flush timeout shorter than the test's
        // bound would cut a connection whose client has not read yet (a close with unread
        // input resets it, and the reset drops the echo its kernel still held).
        .linger_timeout(TIMEOUT)
        .flush_timeout(TIMEOUT)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for i in 0..CONNS {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(16 * 1024).unwrap(); // keep the echo in the server's buffers
        s.connect(&addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        let data = Rng::new(100 + i as u64).bytes(EACH);
        // Write what the socket takes now; the rest stays unsent.
        s.set_nonblocking(true).unwrap();
        let mut sent = 0;
        while sent < data.len() {
            match s.write(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        clients.push((s, data, sent));
    }
    util::wait_until("output is pending", || {
        server.stats().total().pending_output >= (CONNS * 64 * 1024) as u64
    });
    let stop = server.stop_handle();
    thread::spawn(move || stop.stop()).join().unwrap();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(mut s, data, sent)| {
            thread::spawn(move || {
                let (got, reset) = read_until_closed(&mut s);
                assert!(!reset, "connection reset during graceful stop");
                assert!(got.len() <= sent);
                assert!(got[..] == data[..got.len()], "echo differs");
                got.len() as u64
            })
        })
        .collect();
    let echoed: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let stats = server.stats().total();
    assert_eq!(
        echoed, stats.bytes_in,
        "every byte read was echoed before the close"
    );
    assert_eq!(stats.bytes_out, stats.bytes_in);
    server.join().unwrap();
    let reasons: Vec<_> = closed.try_iter().map(|c| c.reason).collect();
    assert_eq!(reasons.len(), CONNS);
    assert!(
        reasons.iter().all(|r| r == "server_shutdown"),
        "{reasons:?}"
    );
}

/// The shutdown hook runs after every loop has exited; `join` returns.
#[test]
fn shutdown_hook_runs_after_stop() {
    let (factory, _closed) = Echo::factory();
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(3)
        .on_shutdown(move || tx.send("done").unwrap())
        .start(factory)
        .unwrap();
    let mut s = connect(server.local_addr());
    assert_eq!(roundtrip(&mut s, b"hi"), b"hi");
    server.stop_handle().stop();
    let (rest, _) = read_until_closed(&mut s);
    assert!(rest.is_empty());
    server.join().unwrap();
    assert_eq!(rx.try_recv(), Ok("done"));
}

/// A bind failure is a clear error naming the address.
#[test]
fn bind_failure_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (factory, _closed) = Echo::factory();
    let err = Server::builder()
        .bind(addr)
        .loops(1)
        .start(factory)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let (factory, _closed) = Echo::factory();
    let err = Server::builder().loops(1).start(factory).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// Accepted sockets inherit TCP_NODELAY from the listener (no setsockopt per accept).
#[test]
fn accepted_sockets_have_nodelay() {
    struct Probe(mpsc::Sender<bool>);
    impl eventide::Handler for Probe {
        type State = ();
        type Message = ();
        fn on_open(&mut self, conn: &mut eventide::Conn<'_>) -> Result<(), eventide::Refusal> {
            let _ = self.0.send(conn.nodelay().unwrap());
            Ok(())
        }
        fn on_data(&mut self, _: &mut eventide::Conn<'_>, _: &mut ()) -> eventide::Action {
            eventide::Action::Continue
        }
    }
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Probe(tx.clone()))
        .unwrap();
    let _client = connect(server.local_addr());
    assert!(rx.recv_timeout(TIMEOUT).unwrap());
}

/// A closing connection whose peer takes nothing is dropped once no byte of its output has
/// been written for the flush timeout (long before the stop deadline).
#[test]
fn stalled_closing_connection_is_dropped_after_flush_timeout() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .socket_send_buffer(16 * 1024)
        .flush_timeout(Duration::from_millis(200))
        .stop_timeout(TIMEOUT * 10)
        .start(factory)
        .unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 * 1024).unwrap();
    s.connect(&server.local_addr().into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_nonblocking(true).unwrap();
    let chunk = vec![b'z'; 64 * 1024];
    while s.write(&chunk).is_ok() {}
    util::wait_until("output is pending", || {
        server.stats().total().pending_output > 0
    });
    server.stop();
    // The client never reads: only the flush timeout can end this connection.
    util::wait_until("the stalled connection is dropped", || {
        server.stats().total().connections == 0
    });
    assert_eq!(next_close(&closed).reason, "server_shutdown");
    drop(s);
    server.join().unwrap();
}

/// After the write side is shut down, writes are refused and say so: `Conn::write` returns
/// `false` and `io::Write` fails with `BrokenPipe`, instead of pretending to take the bytes.
#[test]
fn writes_after_shutdown_are_refused_and_say_so() {
    struct HalfClose(mpsc::Sender<(bool, ErrorKind)>);
    impl eventide::Handler for HalfClose {
        type State = ();
        type Message = ();
        fn on_open(&mut self, _: &mut eventide::Conn<'_>) -> Result<(), eventide::Refusal> {
            Ok(())
        }
        fn on_data(&mut self, conn: &mut eventide::Conn<'_>, _: &mut ()) -> eventide::Action {
            let n = conn.input().len();
            conn.consume(n);
            if conn.write(b"bye") {
                conn.shutdown_write();
            } else {
                let err = std::io::Write::write_all(conn, b"more").unwrap_err();
                let _ = self.0.send((false, err.kind()));
            }
            eventide::Action::Continue
        }
    }
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| HalfClose(tx.clone()))
        .unwrap();
    let mut s = connect(server.local_addr());
    s.write_all(b"first").unwrap();
    let (got, reset) = read_until_closed(&mut s);
    assert_eq!((got.as_slice(), reset), (&b"bye"[..], false));
    // The read side is still open: this arrives after the shutdown.
    s.write_all(b"second").unwrap();
    let (accepted, kind) = rx
        .recv_timeout(TIMEOUT)
        .expect("the second message's verdict");
    assert!(!accepted);
    assert_eq!(kind, ErrorKind::BrokenPipe);
}
