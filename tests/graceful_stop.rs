//! A graceful stop over real sockets: idle keep-alive connections close at once (they do not
//! sit in the lingering close), a request in flight is answered — its response the
//! connection's last — and a WebSocket session is told "going away" (1001).
//!
//! The servers here linger and drain for far longer than any wait in these tests, so a stop
//! that waited for them would fail the test instead of passing slowly.

#![cfg(all(feature = "http", feature = "ws"))]

mod proto_util;
mod util;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use eventide::http::{HttpServer, Request, Response, Service};
use eventide::ws::{Message, Rejection, Upgrade, WsConn, WsHandler, WsServer};
use eventide::{Builder, CloseReason, Server};
use proto_util::{connect, ResponseReader, TIMEOUT};
use util::wait_until;

/// Longer than any wait below: a stop that lingered or drained this long fails the test.
const PATIENT: Duration = Duration::from_secs(3600);

/// How long a test waits for `join` to return once the stop is due.
const JOIN_WAIT: Duration = Duration::from_secs(30);

fn patient(builder: Builder) -> Builder {
    builder
        .bind("127.0.0.1:0")
        .loops(2)
        .linger_timeout(PATIENT)
        .stop_timeout(PATIENT)
}

/// Answers every request with its path.
struct Paths;

impl Service for Paths {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        res.content_type("text/plain").body(req.path().as_bytes());
    }
}

/// `join` returns within [`JOIN_WAIT`], with `Ok`.
fn joins(server: Server, what: &str) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(server.join());
    });
    match rx.recv_timeout(JOIN_WAIT) {
        Ok(result) => result.unwrap_or_else(|e| panic!("{what}: join failed: {e}")),
        Err(_) => panic!("{what}: the stop did not finish within {JOIN_WAIT:?}"),
    }
}

/// Reads until end of stream: `Ok` with what came, or the error (a reset) that ended it.
fn read_to_end(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).map(|_| got)
}

#[test]
fn idle_keep_alive_connections_close_at_once_on_stop() {
    let server = patient(Server::builder())
        .start(|_| HttpServer::new(Paths))
        .expect("start");
    let addr = server.local_addr();
    let mut clients: Vec<TcpStream> = Vec::new();
    for i in 0..16 {
        let mut r = ResponseReader::new(connect(addr));
        r.send(format!("GET /c{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let res = r.next().expect("a response");
        assert_eq!(res.body, format!("/c{i}").as_bytes());
        assert_eq!(res.header("connection"), None, "kept alive");
        clients.push(r.stream);
    }
    server.stop();
    // The clients stay connected and silent: the server closes them, with a FIN.
    for (i, c) in clients.iter_mut().enumerate() {
        let rest = read_to_end(c).unwrap_or_else(|e| panic!("client {i}: {e} instead of EOF"));
        assert!(
            rest.is_empty(),
            "client {i} got {rest:?} after its response"
        );
    }
    let stats = server.stats().total();
    joins(server, "idle keep-alive");
    assert_eq!(stats.closed_by_reason.get(&CloseReason::ServerShutdown), 16);
}

#[test]
fn a_request_in_flight_at_stop_gets_the_last_response() {
    let server = patient(Server::builder())
        .loops(1)
        .start(|_| HttpServer::new(Paths))
        .expect("start");
    let addr = server.local_addr();
    let first = b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut r = ResponseReader::new(connect(addr));
    r.send(first);
    assert_eq!(r.next().expect("a response").body, b"/idle");
    let mut idle = r.stream;

    // Half a request in: the server has read it before the stop (it counts the bytes).
    let mut busy = ResponseReader::new(connect(addr));
    let head = b"GET /busy HTTP/1.1\r\nHost: x\r\n";
    busy.send(head);
    let read = (first.len() + head.len()) as u64;
    wait_until("the half request is read", || {
        server.stats().total().bytes_in >= read
    });
    server.stop();
    assert!(read_to_end(&mut idle).expect("EOF").is_empty(), "idle: EOF");
    // The rest of the request, after the stop began: answered, and the connection closed.
    busy.send(b"\r\n");
    let res = busy.next().expect("the request in flight is answered");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"/busy"[..]));
    assert_eq!(res.header("connection"), Some("close"), "its last response");
    busy.expect_closed();
    drop(busy); // as a client told `Connection: close` does: the lingering close ends
    joins(server, "in flight");
}

/// Answers text with text; reports how sessions end.
struct WsEcho(mpsc::Sender<String>);

impl WsHandler for WsEcho {
    type State = ();
    fn on_upgrade(&mut self, _: &Request<'_>, _: &mut Upgrade<'_>) -> Result<(), Rejection> {
        Ok(())
    }
    fn on_message(&mut self, ws: &mut WsConn<'_, '_>, _: &mut (), msg: Message<'_>) {
        let _ = ws.send(msg);
    }
    fn on_close(&mut self, _: eventide::ConnId, _: (), reason: &CloseReason) {
        let _ = self.0.send(reason.to_string());
    }
}

#[test]
fn websocket_sessions_are_told_going_away() {
    let (tx, closed) = mpsc::channel();
    let server = patient(Server::builder())
        .start(move |_| WsServer::new(WsEcho(tx.clone())))
        .expect("start");
    let addr = server.local_addr();
    let mut sessions = Vec::new();
    for i in 0..4 {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).expect("handshake");
        ws.send(tungstenite::Message::text(format!("hi {i}")))
            .unwrap();
        assert_eq!(
            ws.read().unwrap(),
            tungstenite::Message::text(format!("hi {i}"))
        );
        sessions.push(ws);
    }
    server.stop();
    for (i, ws) in sessions.iter_mut().enumerate() {
        match ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001, "session {i}: {frame:?}");
            }
            other => panic!("session {i}: expected a close frame, got {other:?}"),
        }
        // tungstenite answers the close; the server then closes the connection.
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed) => {}
            Err(e) => panic!("session {i}: {e} instead of a clean close"),
            Ok(m) => panic!("session {i}: {m:?} after the close"),
        }
    }
    drop(sessions); // the clients close their ends: the lingering closes end
    joins(server, "ws");
    for _ in 0..4 {
        let reason = closed
            .recv_timeout(TIMEOUT)
            .expect("on_close for each session");
        // Ended by the close handshake, not cut at the stop deadline.
        assert_eq!(reason, "local", "how the session ended");
    }
}
