//! The handler's API over real sockets: typed messages through a handle, a connection's own
//! idle timeout, and `on_open` refusing a connection without a state.

mod util;

use std::io::{ErrorKind, Read};
use std::sync::mpsc;
use std::time::Duration;

use eventide::{Action, CloseReason, Conn, ConnHandle, ConnId, Handler, Refusal, Server};
use util::{connect, read_until_closed, roundtrip, wait_until, TIMEOUT};

/// What [`Notes`] connections take from their handles.
#[derive(Debug)]
enum Note {
    Line(String),
    Close,
}

/// Writes each [`Note::Line`] to its connection; [`Note::Close`] closes it.
struct Notes(mpsc::Sender<ConnHandle>);

impl Handler for Notes {
    type State = ();
    type Message = Note;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        let _ = self.0.send(conn.handle());
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let n = conn.input().len();
        conn.consume(n);
        Action::Continue
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), note: Note) -> Action {
        match note {
            Note::Line(line) => {
                conn.write(line.as_bytes());
                Action::Continue
            }
            Note::Close => Action::Close,
        }
    }
}

#[test]
fn messages_arrive_typed_and_other_types_are_refused_at_the_call() {
    let (tx, handles) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .start(move |_| Notes(tx.clone()))
        .expect("start");
    let mut client = connect(server.local_addr());
    let handle = handles.recv_timeout(TIMEOUT).expect("on_open ran");

    handle.send(Note::Line("hello\n".into())).expect("a Note");
    let mut got = [0u8; 6];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");

    let err = handle.send(42u32).expect_err("a u32 is not a Note");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let text = err.to_string();
    assert!(
        text.contains("Note") && text.contains("u32"),
        "names both types: {text}"
    );

    handle.send(Note::Close).expect("a Note");
    let (rest, reset) = read_until_closed(&mut client);
    assert!(
        rest.is_empty() && !reset,
        "closed cleanly: {rest:?} reset={reset}"
    );
    server.stop();
    server.join().unwrap();
}

/// Answers each line with the idle timeout that now applies; `off` and `short` first set one.
struct Idle(mpsc::Sender<(ConnId, String)>);

impl Handler for Idle {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let Some(end) = conn.input().iter().position(|&b| b == b'\n') else {
            return Action::Continue;
        };
        match &conn.input()[..end] {
            b"off" => conn.set_idle_timeout(None),
            b"short" => conn.set_idle_timeout(Some(Duration::from_millis(30))),
            _ => {}
        }
        conn.consume(end + 1);
        let answer = format!("{:?}\n", conn.idle_timeout());
        conn.write(answer.as_bytes());
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.0.send((id, reason.as_str().to_string()));
    }
}

/// Sends `line` and reads the one-line answer.
fn ask(s: &mut std::net::TcpStream, line: &str) -> String {
    use std::io::Write;
    s.write_all(line.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "end of stream before the answer"
        );
        got.push(b[0]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn a_connection_replaces_the_servers_idle_timeout() {
    // A server-wide timeout: a connection that turns it off outlives one that keeps it.
    let (tx, closed) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1) // one timer heap: the timeouts fire in order
        .idle_timeout(Duration::from_millis(100))
        .start(move |_| Idle(tx.clone()))
        .expect("start");
    let addr = server.local_addr();
    let mut off = connect(addr);
    assert_eq!(ask(&mut off, "off\n"), "None\n");
    let mut kept = connect(addr);
    assert_eq!(ask(&mut kept, "hi\n"), "Some(100ms)\n");
    // `off` was idle longer than `kept` when `kept` timed out: had it the server's timeout,
    // it would have closed first.
    let (_, reason) = closed
        .recv_timeout(TIMEOUT)
        .expect("a connection timed out");
    assert_eq!(reason, "idle_timeout");
    let (rest, _) = read_until_closed(&mut kept);
    assert!(rest.is_empty());
    assert_eq!(
        roundtrip_line(&mut off),
        "None\n",
        "without a timeout it stays open"
    );
    server.stop();
    server.join().unwrap();
    let (_, reason) = closed
        .recv_timeout(TIMEOUT)
        .expect("the other closed at the stop");
    assert_eq!(reason, "server_shutdown");

    // No server-wide timeout: a connection's own still closes it.
    let (tx, closed) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Idle(tx.clone()))
        .expect("start");
    let addr = server.local_addr();
    let mut never = connect(addr);
    assert_eq!(ask(&mut never, "hi\n"), "None\n");
    let mut short = connect(addr);
    assert_eq!(ask(&mut short, "short\n"), "Some(30ms)\n");
    let (_, reason) = closed
        .recv_timeout(TIMEOUT)
        .expect("the short one timed out");
    assert_eq!(reason, "idle_timeout");
    let (rest, _) = read_until_closed(&mut short);
    assert!(rest.is_empty());
    assert_eq!(roundtrip_line(&mut never), "None\n", "the other stays open");
    server.stop();
    server.join().unwrap();
}

fn roundtrip_line(s: &mut std::net::TcpStream) -> String {
    ask(s, "again\n")
}

/// Serves the first connection (echo); refuses the second silently and the third with a
/// goodbye line.
struct Gate {
    opened: u32,
    closed: mpsc::Sender<ConnId>,
}

impl Handler for Gate {
    type State = ();
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        self.opened += 1;
        match self.opened {
            1 => Ok(()),
            2 => Err(Refusal::Denied),
            _ => {
                conn.write(b"busy, try later\r\n");
                Err(Refusal::Busy)
            }
        }
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let data = conn.input();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), _: &CloseReason) {
        let _ = self.closed.send(id);
    }
}

#[test]
fn on_open_refuses_without_a_state() {
    let (tx, closed) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1) // one Gate counts every connection
        .start(move |_| Gate {
            opened: 0,
            closed: tx.clone(),
        })
        .expect("start");
    let addr = server.local_addr();
    let mut served = connect(addr);
    assert_eq!(roundtrip(&mut served, b"ping"), b"ping");

    let mut denied = connect(addr);
    let (got, reset) = read_until_closed(&mut denied);
    assert!(
        got.is_empty() && !reset,
        "closed at once: {got:?} reset={reset}"
    );

    let mut busy = connect(addr);
    let (got, reset) = read_until_closed(&mut busy);
    assert_eq!(got, b"busy, try later\r\n", "the goodbye arrives");
    assert!(!reset);
    drop(busy);

    wait_until("both refusals are counted", || {
        server.stats().total().refused == 2
    });
    let total = server.stats().total();
    assert_eq!(total.refused_by_reason.get(Refusal::Denied), 1);
    assert_eq!(total.refused_by_reason.get(Refusal::Busy), 1);
    assert_eq!(total.refused_by_reason.connection_limit(), 0);
    assert_eq!(
        total
            .closed_by_reason
            .get(&CloseReason::Refused(Refusal::Busy)),
        2,
        "counted as closes (for any refusal)"
    );
    assert_eq!(
        roundtrip(&mut served, b"still"),
        b"still",
        "the served one is untouched"
    );
    assert!(
        closed.try_recv().is_err(),
        "no on_close for a connection without a state"
    );
    server.stop();
    server.join().unwrap();
    assert!(
        closed.recv_timeout(TIMEOUT).is_ok(),
        "on_close for the served one"
    );
    assert!(closed.try_recv().is_err(), "and only for it");
}
