//! A failed send loses no input: when the peer answers and then resets the connection while
//! this side is still sending (an HTTP upstream that answers `413` and closes mid-upload), the
//! send fails, but the answer the kernel already received is delivered to `on_data`, and only
//! then does `on_close` report the send error (`reset`), without `on_read_closed`: the end of
//! that stream is the reset, not an orderly close. Writes are refused from the failure on.
//!
//! The peer is a raw socket that writes its answer and closes with `SO_LINGER` 0 (a reset).

#[cfg(feature = "tls")]
#[allow(dead_code)] // the probe handler and most helpers serve tests/tls.rs
mod tls_support;
mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventide::{
    Action, Builder, CloseReason, Conn, ConnHandle, ConnId, Handler, Refusal, Server, Trigger,
};
use util::TIMEOUT;

/// What the paused uploader writes: more than loopback socket buffers hold.
const UPLOAD: usize = 32 << 20;

const ANSWER: &[u8] = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n";

#[derive(Debug)]
enum Event {
    /// The upload started (the server is waiting for the peer to answer and reset).
    Started(Option<ConnHandle>),
    /// Input delivered, and whether a write in the same callback was taken.
    Data {
        bytes: Vec<u8>,
        write_taken: bool,
    },
    ReadClosed,
    Closed(String),
}

#[derive(Clone, Copy)]
enum Mode {
    /// The upload is written after the peer's reset arrived: the send fails.
    SendAfterReset,
    /// Reading is paused when the upload starts; a handle message resumes it (`None`: never).
    Paused { resume: bool },
}

/// Receives a start line, then uploads; reports everything on the test thread's channel.
struct Uploader {
    mode: Mode,
    tx: Sender<Event>,
    /// `SendAfterReset`: the test thread's word that the peer has reset.
    reset_done: Arc<Mutex<Receiver<()>>>,
}

impl Handler for Uploader {
    type State = bool; // the upload started
    type Message = ();

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<bool, Refusal> {
        Ok(false)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, started: &mut bool) -> Action {
        let input = conn.input().to_vec();
        conn.consume(input.len());
        if !*started {
            *started = true;
            match self.mode {
                Mode::SendAfterReset => {
                    let _ = self.tx.send(Event::Started(None));
                    // Hold the loop until the reset is in, so that the upload's send meets it
                    // before any read of the answer.
                    let waited = self.reset_done.lock().unwrap().recv_timeout(TIMEOUT);
                    if waited.is_err() {
                        return Action::Close; // the test thread reports the timeout
                    }
                    conn.write(&[b'u'; 4096]);
                }
                Mode::Paused { resume } => {
                    // More than the socket buffers take, so some of it is queued (and
                    // dropped once the peer resets).
                    conn.pause_read();
                    conn.write_vec(vec![b'u'; UPLOAD]);
                    let handle = resume.then(|| conn.handle());
                    let _ = self.tx.send(Event::Started(handle));
                }
            }
            return Action::Continue;
        }
        let write_taken = conn.write(b"more upload");
        let _ = self.tx.send(Event::Data {
            bytes: input,
            write_taken,
        });
        Action::Continue
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut bool, _: ()) -> Action {
        conn.resume_read();
        Action::Continue
    }

    fn on_read_closed(&mut self, _: &mut Conn<'_>, _: &mut bool) -> Action {
        let _ = self.tx.send(Event::ReadClosed);
        Action::Close
    }

    fn on_close(&mut self, _: ConnId, _: bool, reason: &CloseReason) {
        let _ = self.tx.send(Event::Closed(reason.as_str().to_string()));
    }
}

struct Run {
    server: Server,
    events: Receiver<Event>,
    reset_done: Sender<()>,
}

fn start(mode: Mode, edge: bool, flush_timeout: Duration) -> Run {
    start_on(
        Server::builder().bind("127.0.0.1:0"),
        mode,
        edge,
        flush_timeout,
    )
}

/// [`start`] on the addresses `builder` binds.
fn start_on(builder: Builder, mode: Mode, edge: bool, flush_timeout: Duration) -> Run {
    let (tx, events) = mpsc::channel();
    let (reset_done, wait) = mpsc::channel();
    let wait = Arc::new(Mutex::new(wait));
    let trigger = if edge { Trigger::Edge } else { Trigger::Level };
    let server = builder
        .loops(1)
        .trigger(trigger)
        .flush_timeout(flush_timeout)
        .start(move |_| Uploader {
            mode,
            tx: tx.clone(),
            reset_done: Arc::clone(&wait),
        })
        .unwrap();
    Run {
        server,
        events,
        reset_done,
    }
}

fn next(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(TIMEOUT)
        .expect("the server reports within the timeout")
}

/// Connects, sends the start line and waits for the upload to start.
fn begin(run: &Run, addr: SocketAddr) -> (TcpStream, Option<ConnHandle>) {
    let mut peer = util::connect(addr);
    peer.write_all(b"start\n").unwrap();
    (peer, started(run))
}

/// Waits for the upload to start.
fn started(run: &Run) -> Option<ConnHandle> {
    match next(&run.events) {
        Event::Started(handle) => handle,
        other => panic!("expected the upload to start, got {other:?}"),
    }
}

/// Starts a server in `mode`, connects, and has the peer answer and then reset once the
/// upload started: returns the run and the connection's handle, if the mode keeps one.
fn answered_then_reset(
    mode: Mode,
    edge: bool,
    flush_timeout: Duration,
) -> (Run, Option<ConnHandle>) {
    let run = start(mode, edge, flush_timeout);
    let (peer, handle) = begin(&run, run.server.local_addr());
    answer_and_reset(peer);
    (run, handle)
}

/// The peer answers, then resets the connection.
fn answer_and_reset(mut peer: TcpStream) {
    peer.write_all(ANSWER).unwrap();
    reset(peer);
}

/// Closes with `SO_LINGER` 0: the kernel sends a reset.
fn reset(peer: TcpStream) {
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
}

/// Everything the server reported until `on_close`.
fn until_closed(events: &Receiver<Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = next(events);
        let done = matches!(e, Event::Closed(_));
        seen.push(e);
        if done {
            return seen;
        }
    }
}

/// The answer was delivered whole, writes after the failure were refused, and the connection
/// closed for the reset, without `on_read_closed`.
fn assert_answer_then_reset(seen: &[Event]) {
    let mut answer = Vec::new();
    for e in seen {
        match e {
            Event::Data { bytes, write_taken } => {
                answer.extend_from_slice(bytes);
                assert!(
                    !write_taken,
                    "a write after the failed send was taken: {seen:?}"
                );
            }
            Event::ReadClosed => panic!("on_read_closed for a reset stream: {seen:?}"),
            Event::Started(_) => panic!("started twice: {seen:?}"),
            Event::Closed(reason) => assert_eq!(reason, "reset", "{seen:?}"),
        }
    }
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(ANSWER),
        "the answer received before the reset: {seen:?}"
    );
}

/// Output was queued, and the failure dropped it from the pending total.
fn assert_output_dropped(server: &Server) {
    let total = server.stats().total();
    assert!(
        total.peak_pending_output > 0,
        "nothing was queued: {total:?}"
    );
    assert_eq!(total.pending_output, 0, "the dropped output is uncounted");
}

fn send_after_reset(edge: bool) {
    let (run, _) = answered_then_reset(Mode::SendAfterReset, edge, Duration::from_secs(3600));
    run.reset_done.send(()).unwrap();
    let seen = until_closed(&run.events);
    assert_answer_then_reset(&seen);
    run.server.stop();
    run.server.join().unwrap();
}

#[test]
fn a_failed_send_still_delivers_the_answer_received_before_the_reset() {
    send_after_reset(false);
}

#[test]
fn a_failed_send_still_delivers_the_answer_edge_triggered() {
    send_after_reset(true);
}

/// Reading paused when the peer resets: the reset does not drop the answer the kernel holds;
/// resuming delivers it, then `on_close` says `reset`.
#[test]
fn a_reset_while_paused_keeps_the_answer_for_when_reading_resumes() {
    for edge in [false, true] {
        let (run, handle) = answered_then_reset(
            Mode::Paused { resume: true },
            edge,
            Duration::from_secs(3600),
        );
        resume_then_check(run, handle);
    }
}

/// Resumes the paused reader: the answer is delivered whole, the connection closes for the
/// reset, and the queued output was dropped. Then stops the server.
fn resume_then_check(run: Run, handle: Option<ConnHandle>) {
    handle.expect("a handle").send(()).unwrap();
    let seen = until_closed(&run.events);
    assert_answer_then_reset(&seen);
    assert_output_dropped(&run.server);
    run.server.stop();
    run.server.join().unwrap();
}

/// A reader paused for good does not keep a connection whose write side died: with no idle
/// timeout, the flush timeout closes it, for the reset, without delivering anything.
#[test]
fn a_dead_connection_paused_for_good_closes_at_the_flush_timeout() {
    let (run, _) = answered_then_reset(
        Mode::Paused { resume: false },
        false,
        Duration::from_millis(100),
    );
    match until_closed(&run.events).as_slice() {
        [Event::Closed(reason)] => assert_eq!(reason, "reset"),
        other => panic!("expected only the close, got {other:?}"),
    }
    assert_output_dropped(&run.server);
    run.server.stop();
    run.server.join().unwrap();
}

/// TLS: the answer arrives as records; after the reset they are still read and decrypted,
/// and the plaintext delivered, as plain input is. (The session's own records after the
/// failure, such as its `close_notify`, have nowhere to go and are dropped.)
#[cfg(feature = "tls")]
#[test]
fn a_reset_tls_connection_still_delivers_the_decrypted_answer() {
    use tls_support::certs::{client_config, server_config, Ca};
    use tls_support::client::{ciphertext, handshake};

    let ca = Ca::new("send-error CA");
    let leaf = ca.leaf(&["localhost"]);
    let builder = Server::builder().bind_tls("127.0.0.1:0", server_config(&leaf, &[]));
    let run = start_on(
        builder,
        Mode::Paused { resume: true },
        false,
        Duration::from_secs(3600),
    );
    let cfg = client_config(&[ca.der()], &[]);
    let mut client = handshake(run.server.local_addr(), cfg, "localhost").expect("handshake");
    let mut send = |plain: &[u8]| {
        client.conn.writer().write_all(plain).unwrap();
        let records = ciphertext(&mut client.conn);
        client.sock.write_all(&records).unwrap();
    };
    send(b"start\n");
    let handle = started(&run);
    send(ANSWER);
    reset(client.sock);
    resume_then_check(run, handle);
}
