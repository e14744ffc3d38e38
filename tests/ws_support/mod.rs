//! Helpers for the WebSocket tests: an echo server that reports how connections end, a
//! raw-socket client that writes frames byte by byte as the RFC draws them, and a demo binary
//! run as a child process (`demo`).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use eventide::http::Status;
use eventide::ws::{
    CloseCode, CloseFrame, Config, Message, Rejection, Request, Upgrade, WsConn, WsHandle,
    WsHandler, WsServer,
};
use eventide::{CloseReason, ConnId, Server};

pub mod demo;

/// Generous bound for any single wait, so a bug fails a test instead of hanging CI.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// What the echo server saw, in order, per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open {
        id: ConnId,
        protocol: Option<String>,
    },
    PeerClose {
        code: Option<u16>,
        reason: String,
    },
    Handle(WsHandleBox),
    Closed {
        id: ConnId,
        reason: String,
    },
}

/// A handle sent out of the server (compared by id only).
#[derive(Debug, Clone)]
pub struct WsHandleBox(pub WsHandle);

impl PartialEq for WsHandleBox {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}
impl Eq for WsHandleBox {}

/// Echoes every message as it came. Text `close:CODE` makes it close with that code;
/// `handle` makes it report a [`WsHandle`]. The path `/reject` is refused with 404.
pub struct Echo {
    pub seen: mpsc::Sender<Seen>,
}

impl WsHandler for Echo {
    type State = ();

    fn on_upgrade(&mut self, req: &Request<'_>, _: &mut Upgrade<'_>) -> Result<(), Rejection> {
        if req.path() == "/reject" {
            return Err(Rejection::new(Status::NOT_FOUND, "no such endpoint"));
        }
        Ok(())
    }

    fn on_open(&mut self, ws: &mut WsConn<'_, '_>, _: &mut ()) {
        let _ = self.seen.send(Seen::Open {
            id: ws.id(),
            protocol: ws.protocol().map(Into::into),
        });
    }

    fn on_message(&mut self, ws: &mut WsConn<'_, '_>, _: &mut (), msg: Message<'_>) {
        if let Message::Text(t) = msg {
            if let Some(code) = t.strip_prefix("close:") {
                let code = CloseCode(code.parse().unwrap_or(1000));
                let _ = ws.close(code, "asked to");
                return;
            }
            if t == "handle" {
                let _ = self.seen.send(Seen::Handle(WsHandleBox(ws.handle())));
                return;
            }
        }
        let _ = ws.send(msg);
    }

    fn on_peer_close(&mut self, _: &mut WsConn<'_, '_>, _: &mut (), close: CloseFrame<'_>) {
        let _ = self.seen.send(Seen::PeerClose {
            code: close.code.map(|c| c.0),
            reason: close.reason.into(),
        });
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.seen.send(Seen::Closed {
            id,
            reason: reason.to_string(),
        });
    }
}

/// A running echo server and what it saw.
pub struct EchoServer {
    pub server: Server,
    pub seen: mpsc::Receiver<Seen>,
}

impl EchoServer {
    /// Starts one loop on 127.0.0.1:0 with `configure` applied to each loop's adapter.
    pub fn start(
        configure: impl Fn(WsServer<Echo>) -> WsServer<Echo> + Send + 'static,
    ) -> EchoServer {
        let (tx, seen) = mpsc::channel();
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .start(move |_| configure(WsServer::new(Echo { seen: tx.clone() })))
            .expect("start the server");
        EchoServer { server, seen }
    }

    pub fn with_config(config: Config) -> EchoServer {
        EchoServer::start(move |s| s.config(config.clone()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The next thing the server saw.
    pub fn next(&self) -> Seen {
        self.seen
            .recv_timeout(TIMEOUT)
            .expect("the server reported nothing in time")
    }

    /// Waits for a connection's close report and returns its reason.
    pub fn closed_reason(&self) -> String {
        loop {
            if let Seen::Closed { reason, .. } = self.next() {
                return reason;
            }
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// A raw client: writes the frames the test builds, reads the server's frames.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// The key of RFC 6455 section 1.3 and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `request` and reads the response head (the bytes after it stay buffered).
    pub fn request(&mut self, request: &str) -> String {
        self.stream.write_all(request.as_bytes()).unwrap();
        self.read_head()
    }

    /// Reads a response head (the bytes after it stay buffered).
    pub fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill() > 0, "closed before the response head");
        }
    }

    /// Reads one HTTP response: its head, and its body of `Content-Length` bytes.
    pub fn read_response(&mut self) -> (String, Vec<u8>) {
        let head = self.read_head();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().expect("a Content-Length"));
        while self.buf.len() < len {
            assert!(self.fill() > 0, "closed inside a response body");
        }
        let body = self.buf.drain(..len).collect();
        (head, body)
    }

    /// Connects and upgrades on `/`; panics unless the answer is 101 with the right accept.
    pub fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr);
        let head = raw.request(&upgrade_request("/", ""));
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
            "{head}"
        );
        raw
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Writes a masked frame with first header byte `b0`.
    pub fn frame(&mut self, b0: u8, payload: &[u8]) {
        self.send(&masked_frame(b0, payload));
    }

    /// Reads one frame: (first header byte, payload). `None` at end of stream.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((b0, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some((b0, payload));
            }
            if self.fill() == 0 {
                assert!(self.buf.is_empty(), "stream ended inside a frame");
                return None;
            }
        }
    }

    /// Reads a close frame with `code`, answers it, and checks that the server then closes
    /// the TCP connection.
    pub fn expect_close(&mut self, code: u16) {
        let (b0, payload) = self.read_frame().expect("a close frame");
        assert_eq!(b0, 0x88, "expected a close frame, got {b0:02x} {payload:?}");
        assert!(payload.len() >= 2, "close frame without a code");
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            code,
            "close code"
        );
        let _ = self.stream.write_all(&masked_frame(0x88, &payload[..2]));
        self.expect_eof();
    }

    /// Reads until the server closes; nothing but end of stream may come.
    pub fn expect_eof(&mut self) {
        if let Some(frame) = self.read_frame() {
            panic!("expected end of stream, got {frame:?}");
        }
    }
}

/// A valid upgrade request for `path` with `extra` header lines (each ending in CRLF).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A client frame: header byte `b0`, masked payload (length in its shortest encoding).
pub fn masked_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0xB2, 0xC3, 0xD4];
    let mut v = vec![b0];
    match payload.len() {
        n @ 0..=125 => v.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

/// Parses an unmasked server frame at the start of `buf`: (b0, payload, bytes used).
pub fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "a server frame must not be masked");
    let (len, at) = match buf[1] & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((buf[0], payload.to_vec(), at + len))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Python interpreter with the `websockets` package, or `None` (a skip) when it is
/// missing — which fails the test under `CI=true`.
pub fn python_with_websockets(test: &str) -> Option<String> {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = std::process::Command::new(python)
            .args(["-c", "import websockets.sync.client"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(python.into());
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: Python's websockets package (with websockets.sync) is required under CI=true"
        );
    }
    eprintln!("SKIPPED {test}: Python's websockets package is not installed");
    println!("SKIPPED {test}: Python's websockets package is not installed");
    None
}

/// A client side that sends its messages on open and records what comes back.
pub struct Dialer {
    pub got: std::sync::mpsc::Sender<String>,
}

impl eventide::ws::WsHandler for Dialer {
    type State = Vec<&'static str>;

    fn on_upgrade(
        &mut self,
        _: &eventide::ws::Request<'_>,
        _: &mut eventide::ws::Upgrade<'_>,
    ) -> Result<Self::State, eventide::ws::Rejection> {
        unreachable!("the dialer accepts nothing")
    }

    fn on_open(&mut self, ws: &mut eventide::ws::WsConn<'_, '_>, msgs: &mut Self::State) {
        for m in msgs.iter() {
            ws.text(m).unwrap();
        }
        ws.fragment(true, b"frag", false).unwrap();
        ws.fragment(true, b"ments", true).unwrap();
    }

    fn on_message(
        &mut self,
        ws: &mut eventide::ws::WsConn<'_, '_>,
        _: &mut Self::State,
        msg: Message<'_>,
    ) {
        let text = std::str::from_utf8(msg.as_bytes()).unwrap().to_string();
        if text == "fragments" {
            ws.close(CloseCode::NORMAL, "done").unwrap();
        }
        let _ = self.got.send(text);
    }

    fn on_dial_error(&mut self, _: Self::State, error: std::io::Error) {
        let _ = self.got.send(format!("error: {error}"));
    }

    fn on_close(&mut self, _: eventide::ConnId, _: Self::State, reason: &eventide::CloseReason) {
        let _ = self.got.send(format!("closed: {}", reason.as_str()));
    }
}
