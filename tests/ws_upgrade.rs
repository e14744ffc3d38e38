//! The WebSocket upgrade from an `HttpServer` route (`HttpServer::websocket`,
//! `Response::websocket`): real clients (tungstenite, Python's `websockets`) on a WebSocket
//! route while HTTP clients keep being answered on the same port; subprotocols, the origin
//! hook, bad upgrades from a raw socket, frames in the same segment as the request, requests
//! pipelined before (answered first, in order) and after it (the WebSocket side's), a
//! deferred decision (refused), the switch from HTTP limits to WebSocket limits, a stop, and
//! wss: the same route over TLS.

#![cfg(feature = "ws")]

#[cfg(feature = "tls")]
#[allow(dead_code)] // the probe handler and most helpers serve tests/tls.rs
mod tls_support;
#[cfg(feature = "tls")]
mod util;
mod ws_support;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode as TCode;
use tungstenite::Message as TMsg;

use eventide::http::{HttpServer, Request, Responder, Response, Service, Status};
use eventide::ws::{self, Config, WsServer};
use eventide::{Builder, Server};
use ws_support::*;

/// Routes of an ordinary HTTP service, one of which upgrades.
pub struct App {
    /// Deferred answers of `/slow`, handed to the test thread to give.
    slow: mpsc::Sender<Responder>,
}

impl Service for App {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        match req.path() {
            // `/reject` is refused by the handler's `on_upgrade` (404).
            "/chat" | "/reject" => res.websocket(),
            "/hello" => res.content_type("text/plain").body(b"hello"),
            "/slow" => {
                let _ = self.slow.send(res.defer());
            }
            "/late" => {
                // A decision to upgrade from a deferred answer: refused with 500.
                let _ = res.defer().respond(|res| res.websocket());
            }
            _ => res.status(Status::NOT_FOUND).body(b"no such route"),
        }
    }
}

/// An `HttpServer` with a WebSocket route, and what its handler saw.
pub struct Upgrading {
    pub server: Server,
    pub seen: mpsc::Receiver<Seen>,
    pub slow: mpsc::Receiver<Responder>,
}

/// A small HTTP body limit, a larger WebSocket message limit: after the switch only the
/// second applies.
pub const MAX_BODY: usize = 1024;
pub const MAX_MESSAGE: usize = 128 << 10;

impl Upgrading {
    pub fn start(builder: Builder) -> Upgrading {
        Upgrading::start_with(builder, |ws| ws)
    }

    /// With `configure` applied to the WebSocket side's options.
    pub fn start_with(
        builder: Builder,
        configure: impl Fn(WsServer<Echo>) -> WsServer<Echo> + Send + 'static,
    ) -> Upgrading {
        let (tx, seen) = mpsc::channel();
        let (slow_tx, slow) = mpsc::channel();
        let server = builder
            .start(move |_| {
                let ws = configure(WsServer::new(Echo { seen: tx.clone() }))
                    .config(
                        Config::new()
                            .max_message_size(MAX_MESSAGE)
                            .max_frame_size(MAX_MESSAGE),
                    )
                    .protocols(["chat.v2", "chat.v1"])
                    .origin_check(|origin| origin != Some("https://evil.example"));
                HttpServer::new(App {
                    slow: slow_tx.clone(),
                })
                .max_body_size(MAX_BODY)
                .websocket(ws)
            })
            .expect("start the server");
        Upgrading { server, seen, slow }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn next(&self) -> Seen {
        self.seen
            .recv_timeout(TIMEOUT)
            .expect("the handler reported nothing in time")
    }
}

impl Drop for Upgrading {
    fn drop(&mut self) {
        self.server.stop();
    }
}

fn plain() -> Upgrading {
    Upgrading::start(Server::builder().bind("127.0.0.1:0"))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let res = ureq::get(&format!("http://{addr}{path}"))
        .timeout(TIMEOUT)
        .call();
    let res = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    (res.status(), res.into_string().unwrap())
}

#[test]
fn tungstenite_on_the_ws_route_while_ureq_gets_http_on_the_same_port() {
    let srv = plain();
    let stream = TcpStream::connect(srv.addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/chat",
        srv.addr()
    ))
    .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v1, chat.v2".parse().unwrap(),
    );
    let (mut ws, response) = tungstenite::client(req, stream).expect("tungstenite handshake");
    assert_eq!(response.status().as_u16(), 101);
    // The server's preference wins among the offered ones.
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "chat.v2"
    );
    assert!(response.headers().get("Date").is_some(), "an HTTP head");
    match srv.next() {
        Seen::Open { protocol, .. } => assert_eq!(protocol.as_deref(), Some("chat.v2")),
        other => panic!("expected the open, got {other:?}"),
    }
    for round in 0..3 {
        assert_eq!(get(srv.addr(), "/hello"), (200, "hello".into()));
        assert_eq!(get(srv.addr(), "/nope").0, 404);
        // A plain GET of the WebSocket route is refused as a bad upgrade.
        assert_eq!(get(srv.addr(), "/chat").0, 400);
        let text = format!("round {round} ✓");
        ws.send(TMsg::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), TMsg::text(text));
    }
    // The HTTP body limit no longer applies, the WebSocket one does.
    let big = vec![7u8; 64 << 10];
    assert!(big.len() > MAX_BODY);
    ws.send(TMsg::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::binary(big));
    ws.send(TMsg::binary(vec![0u8; MAX_MESSAGE + 1])).unwrap();
    match ws.read() {
        Ok(TMsg::Close(Some(f))) => assert_eq!(f.code, TCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

/// The client script: prints one line per check.
const PYTHON_CLIENT: &str = r#"
import sys, urllib.request
from websockets.sync.client import connect

base = sys.argv[1]
with connect("ws" + base[4:] + "/chat", subprotocols=["chat.v1"], open_timeout=30,
             close_timeout=30) as ws:
    print("subprotocol", ws.subprotocol, flush=True)
    ws.send("héllo ✓")
    print("text", ws.recv(timeout=30), flush=True)
    page = urllib.request.urlopen(base + "/hello", timeout=30).read().decode()
    print("http", page, flush=True)
    ws.send(b"\x00\x01\xff")
    print("binary", ws.recv(timeout=30).hex(), flush=True)
    ws.close(1000, "bye")
print("close", ws.close_code, flush=True)
"#;

#[test]
fn python_websockets_on_the_ws_route_while_http_is_served_on_the_same_port() {
    let Some(python) = python_with_websockets("python_websockets_on_the_ws_route") else {
        return;
    };
    let srv = plain();
    let out = Command::new(python)
        .args(["-c", PYTHON_CLIENT, &format!("http://{}", srv.addr())])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "subprotocol chat.v1\ntext héllo ✓\nhttp hello\nbinary 0001ff\nclose 1000\n"
    );
    assert_eq!(get(srv.addr(), "/hello"), (200, "hello".into()));
}

/// A request for `/chat` with these header lines instead of the valid ones.
fn upgrade_with(first_line: &str, headers: &[&str]) -> String {
    let mut r = format!("{first_line}\r\nHost: localhost\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r + "\r\n"
}

const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const KEY_LINE: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
const VERSION: &str = "Sec-WebSocket-Version: 13";

#[test]
fn bad_upgrades_get_400_426_403_and_a_close() {
    let srv = plain();
    let get = "GET /chat HTTP/1.1";
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "missing key",
            upgrade_with(get, &[UPGRADE, CONNECTION, VERSION]),
            400,
        ),
        (
            "key of the wrong length",
            upgrade_with(
                get,
                &[
                    UPGRADE,
                    CONNECTION,
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==",
                    VERSION,
                ],
            ),
            400,
        ),
        (
            "version 8",
            upgrade_with(
                get,
                &[UPGRADE, CONNECTION, KEY_LINE, "Sec-WebSocket-Version: 8"],
            ),
            426,
        ),
        (
            "no version",
            upgrade_with(get, &[UPGRADE, CONNECTION, KEY_LINE]),
            400,
        ),
        (
            "POST",
            upgrade_with(
                "POST /chat HTTP/1.1",
                &[UPGRADE, CONNECTION, KEY_LINE, VERSION, "Content-Length: 0"],
            ),
            400,
        ),
        (
            "HTTP/1.0",
            upgrade_with(
                "GET /chat HTTP/1.0",
                &[UPGRADE, CONNECTION, KEY_LINE, VERSION],
            ),
            400,
        ),
        (
            "no Connection: upgrade token",
            upgrade_with(get, &[UPGRADE, "Connection: keep-alive", KEY_LINE, VERSION]),
            400,
        ),
        (
            "no Upgrade header",
            upgrade_with(get, &[CONNECTION, KEY_LINE, VERSION]),
            400,
        ),
        (
            "Connection: close as well",
            upgrade_with(
                get,
                &[UPGRADE, "Connection: Upgrade, close", KEY_LINE, VERSION],
            ),
            400,
        ),
        (
            "a body",
            upgrade_with(
                get,
                &[UPGRADE, CONNECTION, KEY_LINE, VERSION, "Content-Length: 5"],
            ) + "hello",
            400,
        ),
        (
            "a chunked body",
            upgrade_with(
                get,
                &[
                    UPGRADE,
                    CONNECTION,
                    KEY_LINE,
                    VERSION,
                    "Transfer-Encoding: chunked",
                ],
            ) + "0\r\n\r\n",
            400,
        ),
        (
            "origin refused by the hook",
            upgrade_with(
                get,
                &[
                    UPGRADE,
                    CONNECTION,
                    KEY_LINE,
                    VERSION,
                    "Origin: https://evil.example",
                ],
            ),
            403,
        ),
        ("refused by on_upgrade", upgrade_request("/reject", ""), 404),
    ];
    for (what, request, status) in cases {
        let mut raw = Raw::connect(srv.addr());
        raw.send(request.as_bytes());
        let (head, body) = raw.read_response();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {head}"
        );
        assert!(head.contains("Connection: close\r\n"), "{what}: {head}");
        assert_eq!(
            head.contains("Sec-WebSocket-Version: 13\r\n"),
            status == 426,
            "{what}: {head}"
        );
        assert!(!body.is_empty(), "{what}: a body says why");
        raw.expect_eof();
    }
    // An allowed origin opens.
    let mut raw = Raw::connect(srv.addr());
    let head = raw.request(&upgrade_request("/chat", "Origin: https://example.com\r\n"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn frames_in_the_same_segment_as_the_request_go_to_the_websocket_side() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    let mut bytes = upgrade_request("/chat", "").into_bytes();
    bytes.extend(masked_frame(0x81, b"early"));
    bytes.extend(masked_frame(0x82, &[1, 2, 3]));
    raw.send(&bytes);
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert_eq!(raw.read_frame(), Some((0x81, b"early".to_vec())));
    assert_eq!(raw.read_frame(), Some((0x82, vec![1, 2, 3])));
    raw.frame(0x88, &1000u16.to_be_bytes());
    assert_eq!(
        raw.read_frame(),
        Some((0x88, 1000u16.to_be_bytes().to_vec()))
    );
    raw.expect_eof();
}

#[test]
fn http_pipelined_before_the_upgrade_is_answered_first_in_order() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    let hello = "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut bytes = format!("{hello}GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n{hello}");
    bytes.push_str(&upgrade_request("/chat", ""));
    let mut bytes = bytes.into_bytes();
    bytes.extend(masked_frame(0x81, b"after"));
    raw.send(&bytes);
    for want in [(200, "hello"), (404, "no such route"), (200, "hello")] {
        let (head, body) = raw.read_response();
        assert!(head.starts_with(&format!("HTTP/1.1 {} ", want.0)), "{head}");
        assert_eq!(body, want.1.as_bytes());
    }
    assert!(raw.read_head().starts_with("HTTP/1.1 101 "));
    assert_eq!(raw.read_frame(), Some((0x81, b"after".to_vec())));
}

#[test]
fn an_upgrade_waits_for_a_deferred_answer_before_it() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    let mut bytes = "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string();
    bytes.push_str(&upgrade_request("/chat", ""));
    let mut bytes = bytes.into_bytes();
    bytes.extend(masked_frame(0x81, b"behind"));
    raw.send(&bytes);
    // The upgrade request is in the server, waiting behind the answer owed.
    let responder = srv
        .slow
        .recv_timeout(TIMEOUT)
        .expect("the deferred request");
    responder
        .respond(|res| res.content_type("text/plain").body(b"slow answer"))
        .unwrap();
    let (head, body) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"slow answer");
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(raw.read_frame(), Some((0x81, b"behind".to_vec())));
}

/// A stop that begins while an upgrade waits behind an answer owed: the answer is given, the
/// upgrade refused (503), the connection closed — it never switches during a stop.
#[test]
fn an_upgrade_waiting_when_a_stop_begins_is_refused_with_503() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    // One write (one segment on loopback): the upgrade is read with the request before it.
    let bytes =
        "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string() + &upgrade_request("/chat", "");
    raw.send(bytes.as_bytes());
    let responder = srv
        .slow
        .recv_timeout(TIMEOUT)
        .expect("the deferred request");
    srv.server.stop();
    responder
        .respond(|res| res.content_type("text/plain").body(b"last"))
        .unwrap();
    let (head, body) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"last");
    let (head, _) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    raw.expect_eof();
}

#[test]
fn requests_pipelined_after_the_upgrade_are_the_websocket_sides() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    let bytes = upgrade_request("/chat", "") + "GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n";
    raw.send(bytes.as_bytes());
    assert!(raw.read_head().starts_with("HTTP/1.1 101 "));
    // `G` is a frame header with RSV1 set and a reserved opcode: a protocol error.
    let (b0, payload) = raw.read_frame().expect("a close frame");
    assert_eq!(b0, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    raw.expect_eof();
}

#[test]
fn an_upgrade_decided_in_a_deferred_answer_is_refused_with_500() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    raw.send(upgrade_request("/late", "").as_bytes());
    let (head, _) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 500 "), "{head}");
    // The connection still speaks HTTP.
    raw.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, b"hello");
}

#[test]
fn a_route_that_upgrades_without_a_websocket_handler_gets_500() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .start(|_| {
            HttpServer::new(|req: &Request<'_>, res: &mut Response<'_>| {
                if ws::is_upgrade_request(req) {
                    res.websocket();
                }
            })
        })
        .unwrap();
    let mut raw = Raw::connect(server.local_addr());
    raw.send(upgrade_request("/", "").as_bytes());
    let (head, _) = raw.read_response();
    assert!(head.starts_with("HTTP/1.1 500 "), "{head}");
    server.stop();
}

#[test]
fn the_idle_ping_carries_over_from_the_websocket_options() {
    let srv = Upgrading::start_with(Server::builder().bind("127.0.0.1:0"), |ws| {
        ws.idle_ping(Duration::from_millis(100))
    });
    let mut raw = Raw::connect(srv.addr());
    assert!(raw
        .request(&upgrade_request("/chat", ""))
        .starts_with("HTTP/1.1 101 "));
    // An answered ping keeps the connection; an unanswered one ends it.
    assert_eq!(raw.read_frame(), Some((0x89, vec![])));
    raw.frame(0x8A, b"");
    assert_eq!(raw.read_frame(), Some((0x89, vec![])));
    raw.expect_eof();
    loop {
        if let Seen::Closed { reason, .. } = srv.next() {
            assert!(reason.contains("idle"), "{reason}");
            break;
        }
    }
}

#[test]
fn a_stop_closes_websocket_connections_with_1001_and_http_ones_plainly() {
    let srv = plain();
    let mut raw = Raw::connect(srv.addr());
    assert!(raw
        .request(&upgrade_request("/chat", ""))
        .starts_with("HTTP/1.1 101 "));
    raw.frame(0x81, b"ping?");
    assert_eq!(raw.read_frame(), Some((0x81, b"ping?".to_vec())));
    let mut http = Raw::connect(srv.addr());
    http.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(http.read_response().1, b"hello");
    srv.server.stop();
    raw.expect_close(1001);
    http.expect_eof();
    loop {
        if let Seen::Closed { reason, .. } = srv.next() {
            assert!(reason.contains("local"), "{reason}");
            break;
        }
    }
}

#[cfg(feature = "tls")]
#[test]
fn wss_through_the_same_route_over_tls_with_https_beside_it() {
    use std::io::{Read, Write};

    use eventide::tls::rustls;
    use tls_support::certs::{client_config, name, server_config, Ca};

    let ca = Ca::new("ws upgrade CA");
    let leaf = ca.leaf(&["localhost"]);
    let srv =
        Upgrading::start(Server::builder().bind_tls("127.0.0.1:0", server_config(&leaf, &[])));
    let roots = [ca.der()];
    let tls = || {
        let sock = TcpStream::connect(srv.addr()).unwrap();
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        let conn =
            rustls::ClientConnection::new(client_config(&roots, &[]), name("localhost")).unwrap();
        rustls::StreamOwned::new(conn, sock)
    };
    let url = format!("wss://localhost:{}/chat", srv.addr().port());
    let (mut ws, response) = tungstenite::client(url, tls()).expect("handshake over TLS");
    assert_eq!(response.status().as_u16(), 101);
    ws.send(TMsg::text("over tls")).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::text("over tls"));
    // HTTPS on the same port meanwhile.
    let mut https = tls();
    https
        .write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut page = Vec::new();
    while !page.ends_with(b"\r\n\r\nhello") {
        let mut chunk = [0u8; 4096];
        let n = https.read(&mut chunk).expect("the HTTPS answer");
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&page)
        );
        page.extend_from_slice(&chunk[..n]);
    }
    assert!(page.starts_with(b"HTTP/1.1 200 "));
    let big = vec![3u8; 100 << 10];
    ws.send(TMsg::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::binary(big));
    // A stop says goodbye with 1001 over TLS too.
    srv.server.stop();
    match ws.read() {
        Ok(TMsg::Close(Some(f))) => assert_eq!(f.code, TCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
}

/// The in-memory harness (tests, fuzzing) answers the upgrade like a connection, then closes:
/// it has no connection to run the session on.
#[test]
fn the_in_memory_harness_answers_the_upgrade_then_closes() {
    let (tx, _seen) = mpsc::channel();
    let (slow, _) = mpsc::channel();
    let server = HttpServer::new(App { slow }).websocket(WsServer::new(Echo { seen: tx }));
    let mut h = eventide::http::testing::Harness::new(server);
    let mut input = b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    input.extend_from_slice(upgrade_request("/chat", "").as_bytes());
    input.extend(masked_frame(0x81, b"early"));
    h.feed(&input);
    let out = String::from_utf8_lossy(h.output()).into_owned();
    let (hello, upgrade) = out.split_at(out.find("HTTP/1.1 101 ").expect(&out));
    assert!(
        hello.starts_with("HTTP/1.1 200 ") && hello.ends_with("hello"),
        "{out}"
    );
    assert!(upgrade.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert!(
        upgrade.ends_with("\r\n\r\n"),
        "nothing after the 101: {out}"
    );
    assert!(h.is_closed());
}
