//! Cross-thread connection handles: ordering, coalesced wake-ups, stale handles, bounded writes.

mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use eventide::{Action, CloseReason, Conn, ConnHandle, ConnId, Handler, Refusal, Server};
use util::{connect, roundtrip, TIMEOUT};

/// Echoes, except that a first line `ID n` registers the connection's handle as client `n`.
struct Registry {
    handles: mpsc::Sender<(usize, ConnHandle)>,
    closed: mpsc::Sender<(ConnId, String)>,
}

impl Handler for Registry {
    type State = bool; // registered yet
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<bool, Refusal> {
        Ok(false)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, registered: &mut bool) -> Action {
        let input = conn.input();
        if !*registered {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                return Action::Continue;
            };
            let line = std::str::from_utf8(&input[..end]).unwrap();
            let n: usize = line.strip_prefix("ID ").unwrap().parse().unwrap();
            let handle = conn.handle();
            self.handles.send((n, handle)).unwrap();
            conn.consume(end + 1);
            *registered = true;
            return Action::Continue;
        }
        conn.write(input);
        conn.consume(input.len());
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: bool, reason: &CloseReason) {
        let _ = self.closed.send((id, reason.as_str().to_string()));
    }
}

struct Fixture {
    server: Server,
    handles: mpsc::Receiver<(usize, ConnHandle)>,
    closed: mpsc::Receiver<(ConnId, String)>,
}

fn start(builder: eventide::Builder) -> Fixture {
    let (htx, handles) = mpsc::channel();
    let (ctx, closed) = mpsc::channel();
    let server = builder
        .bind("127.0.0.1:0")
        .start(move |_| Registry {
            handles: htx.clone(),
            closed: ctx.clone(),
        })
        .unwrap();
    Fixture {
        server,
        handles,
        closed,
    }
}

/// Connects `n` clients, registers each, returns them with their handles by index.
fn clients(f: &Fixture, n: usize) -> (Vec<TcpStream>, Vec<ConnHandle>) {
    let streams: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = connect(f.server.local_addr());
            writeln!(s, "ID {i}").unwrap();
            s
        })
        .collect();
    let mut by_index: HashMap<usize, ConnHandle> = HashMap::new();
    for _ in 0..n {
        let (i, h) = f.handles.recv_timeout(TIMEOUT).unwrap();
        by_index.insert(i, h);
    }
    let handles = (0..n).map(|i| by_index.remove(&i).unwrap()).collect();
    (streams, handles)
}

/// Writes through a handle, waiting for `notify_writable` whenever the queue is full.
fn write_blocking(h: &ConnHandle, data: &[u8]) {
    loop {
        match h.write(data) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let (tx, rx) = mpsc::channel();
                h.notify_writable(move || {
                    let _ = tx.send(());
                });
                rx.recv_timeout(TIMEOUT)
                    .expect("never told the connection was writable again");
            }
            Err(e) => panic!("handle write failed: {e}"),
        }
    }
}

/// 8 threads each write 10,000 numbered messages spread over 100 connections: every client
/// gets every message addressed to it, and each thread's messages in order.
#[test]
fn writes_from_many_threads_arrive_complete_and_in_order() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 10_000;
    const CONNS: usize = 100;
    let f = start(Server::builder().loops(4));
    let (streams, handles) = clients(&f, CONNS);
    let handles = Arc::new(handles);
    let readers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            thread::spawn(move || {
                let expected = (0..THREADS * PER_THREAD).filter(|k| k % CONNS == c).count();
                let mut last = [None::<usize>; THREADS];
                let mut lines = BufReader::new(s).lines();
                for _ in 0..expected {
                    let line = lines.next().expect("connection ended early").unwrap();
                    let mut parts = line.split(' ');
                    let t: usize = parts.next().unwrap().parse().unwrap();
                    let seq: usize = parts.next().unwrap().parse().unwrap();
                    let to: usize = parts.next().unwrap().parse().unwrap();
                    assert_eq!(to, c, "message for {to} arrived at {c}");
                    assert!(
                        last[t].is_none_or(|l| seq > l),
                        "thread {t} out of order at {c}"
                    );
                    last[t] = Some(seq);
                }
                expected
            })
        })
        .collect();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handles = Arc::clone(&handles);
            thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    let k = t * PER_THREAD + seq;
                    let to = k % CONNS;
                    write_blocking(&handles[to], format!("{t} {seq} {to}\n").as_bytes());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let received: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(received, THREADS * PER_THREAD);
}

/// With the loop parked in a task, 1,000 handle writes cost exactly one eventfd write.
#[test]
fn a_burst_of_handle_writes_wakes_the_loop_once() {
    let f = start(Server::builder().loops(1));
    let (mut streams, handles) = clients(&f, 1);
    let handle = handles[0].clone();
    let barrier = Arc::new(Barrier::new(2));
    let (parked_tx, parked_rx) = mpsc::channel();
    let b = Arc::clone(&barrier);
    f.server
        .loop_handle(0)
        .unwrap()
        .execute(move |_| {
            parked_tx.send(()).unwrap();
            b.wait();
        })
        .unwrap();
    parked_rx.recv_timeout(TIMEOUT).unwrap();
    let before = f.server.stats().total().eventfd_writes;
    for i in 0..1000 {
        handle.write(format!("{i:04}\n").as_bytes()).unwrap();
    }
    let after = f.server.stats().total().eventfd_writes;
    barrier.wait();
    assert_eq!(after - before, 1, "eventfd writes for the burst");
    let mut got = vec![0u8; 5000];
    streams[0].read_exact(&mut got).unwrap();
    let expected: String = (0..1000).map(|i| format!("{i:04}\n")).collect();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
}

/// A handle to a closed connection fails with NotConnected; the connection that reuses its
/// slot receives nothing from it.
#[test]
fn stale_handle_fails_and_never_touches_the_new_connection() {
    let f = start(Server::builder().loops(1));
    let (streams, handles) = clients(&f, 1);
    let old = handles[0].clone();
    drop(streams);
    let (closed_id, _) = f.closed.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(closed_id, old.id());
    assert!(old.is_closed());
    let (mut streams, handles) = clients(&f, 1);
    let new = &handles[0];
    assert_eq!(new.id().loop_index(), old.id().loop_index());
    assert_ne!(new.id(), old.id(), "a reused slot gets a new generation");
    let err = old.write(b"stale").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    assert_eq!(old.close().unwrap_err().kind(), ErrorKind::NotConnected);
    // Anything the stale handle had delivered would come before the echo.
    assert_eq!(roundtrip(&mut streams[0], b"fresh"), b"fresh");
}

/// Flooding a client that does not read ends in WouldBlock with the queue never above the
/// limit; once the client reads, the writer is told and finishes, and every byte arrives.
#[test]
fn handle_writes_are_bounded_and_resume_when_drained() {
    const LIMIT: usize = 256 * 1024;
    const MSG: usize = 4096;
    const TOTAL: usize = 4 << 20;
    let f = start(
        Server::builder()
            .loops(1)
            .handle_write_limit(LIMIT)
            .socket_send_buffer(16 * 1024),
    );
    let (mut streams, handles) = clients(&f, 1);
    let h = handles[0].clone();
    let msg: Vec<u8> = (0..MSG).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        h.write(&vec![0u8; LIMIT + 1]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let mut sent = 0;
    let blocked = loop {
        match h.write(&msg) {
            Ok(()) => sent += MSG,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(e) => panic!("{e}"),
        }
        assert!(h.queued() <= LIMIT, "queued {} over the limit", h.queued());
        assert!(sent < TOTAL, "the client never pushed back");
    };
    assert!(blocked);
    let (tx, rx) = mpsc::channel();
    let expected = msg.clone();
    let writer = thread::spawn(move || {
        let mut notified = 0;
        while sent < TOTAL {
            match h.write(&msg) {
                Ok(()) => sent += MSG,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let (wtx, wrx) = mpsc::channel();
                    h.notify_writable(move || {
                        let _ = wtx.send(());
                    });
                    wrx.recv_timeout(TIMEOUT).expect("never told to continue");
                    notified += 1;
                }
                Err(e) => panic!("{e}"),
            }
            let q = h.queued();
            assert!(q <= LIMIT, "queued {q} > {LIMIT} after {sent}");
        }
        tx.send(notified).unwrap();
    });
    let mut got = vec![0u8; TOTAL];
    streams[0].read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(rx.recv().unwrap() > 0, "the writer was told to continue");
    for chunk in got.chunks(MSG) {
        assert_eq!(chunk, &expected[..]);
    }
}

/// A handle from a callback of one connection writes to another on the same loop without
/// touching the eventfd.
#[test]
fn same_loop_handle_writes_do_not_wake_the_loop() {
    let f = start(Server::builder().loops(1));
    let (mut streams, handles) = clients(&f, 2);
    // Have connection 0's loop write to connection 1 from inside a loop task.
    let target = handles[1].clone();
    let (done_tx, done_rx) = mpsc::channel();
    let before = f.server.stats().total().eventfd_writes;
    f.server
        .loop_handle(0)
        .unwrap()
        .execute(move |_| {
            for i in 0..100 {
                target.write(format!("{i:03}\n").as_bytes()).unwrap();
            }
            done_tx.send(()).unwrap();
        })
        .unwrap();
    done_rx.recv_timeout(TIMEOUT).unwrap();
    let mut got = vec![0u8; 400];
    streams[1].read_exact(&mut got).unwrap();
    let expected: String = (0..100).map(|i| format!("{i:03}\n")).collect();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
    // One write for the execute() itself; none for the 100 handle writes.
    assert_eq!(f.server.stats().total().eventfd_writes - before, 1);
}

/// Half-close and close through handles flush first.
#[test]
fn handle_shutdown_and_close_flush_first() {
    let f = start(Server::builder().loops(2));
    let (mut streams, handles) = clients(&f, 2);
    handles[0].write(b"last words").unwrap();
    handles[0].shutdown_write().unwrap();
    let (got, _) = util::read_until_closed(&mut streams[0]);
    assert_eq!(got, b"last words");
    // The read side is still open after a half-close.
    streams[0].write_all(b"still reading").unwrap();
    handles[1].write(b"bye").unwrap();
    handles[1].close().unwrap();
    let (got, _) = util::read_until_closed(&mut streams[1]);
    assert_eq!(got, b"bye");
}
