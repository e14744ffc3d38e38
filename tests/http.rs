//! The HTTP/1.1 codec and the TechEmpower demo over real sockets: a real client (`ureq`),
//! raw sockets for what a client library hides (pipelining, chunked uploads, malformed
//! requests, limits, HTTP/1.0), and `curl` when installed.

#![cfg(feature = "http")]

mod proto_util;
#[path = "../examples/http/tfb.rs"]
mod tfb;
mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use eventide::http::{HttpServer, Request, Response, Service};
use eventide::{Builder, Server};
use proto_util::{assert_curl_got, connect, tool, ResponseReader, TFB_ROUTES, TIMEOUT};

/// The demo's routes, plus `/echo` (answers with the request body and method) and `/path...`
/// (answers with the request target), to check bodies and ordering.
struct TestService(tfb::Tfb);

impl Service for TestService {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if req.path() == "/echo" {
            res.header("X-Method", req.method())
                .content_type("application/octet-stream")
                .body(req.body());
        } else if req.path().starts_with("/path") {
            res.content_type("text/plain").body(req.target().as_bytes());
        } else {
            self.0.call(req, res);
        }
    }
}

fn start_with(tune: impl FnOnce(Builder) -> Builder) -> Server {
    let builder = Server::builder().bind("127.0.0.1:0").loops(2);
    tune(builder)
        .start(|_| HttpServer::new(TestService(tfb::Tfb)).max_body_size(64 * 1024))
        .expect("start the server")
}

fn start() -> Server {
    start_with(|b| b)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(TIMEOUT).build()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// An IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn assert_http_date(d: &str) {
    let b = d.as_bytes();
    assert_eq!(b.len(), 29, "Date {d:?}");
    assert!(
        d.ends_with(" GMT") && b[3] == b',' && b[19] == b':' && b[22] == b':',
        "Date {d:?}"
    );
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    assert!(days.contains(&&d[..3]), "Date {d:?}");
}

#[test]
fn plaintext_and_json_follow_the_techempower_rules() {
    let server = start();
    let agent = agent();
    let r = agent
        .get(&url(server.local_addr(), "/plaintext"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("Server"), Some("eventide"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert_http_date(r.header("Date").unwrap());
    assert_eq!(r.into_string().unwrap(), "Hello, World!");

    let r = agent
        .get(&url(server.local_addr(), "/json"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("Server"), Some("eventide"));
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Length"), Some("27"));
    assert_http_date(r.header("Date").unwrap());
    let body = r.into_string().unwrap();
    assert_eq!(body, r#"{"message":"Hello, World!"}"#);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["message"], "Hello, World!");

    match agent.get(&url(server.local_addr(), "/nope")).call() {
        Err(ureq::Error::Status(404, r)) => {
            assert_eq!(r.header("Server"), Some("eventide"));
            assert_eq!(r.into_string().unwrap(), "Not Found");
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[test]
fn the_header_set_is_exactly_the_benchmark_peers_one() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    for (ct, body) in [
        ("text/plain", &b"Hello, World!"[..]),
        ("application/json", br#"{"message":"Hello, World!"}"#),
    ] {
        let r = c.next().unwrap();
        let mut names = r.header_names();
        names.sort_unstable();
        assert_eq!(names, ["Content-Length", "Content-Type", "Date", "Server"]);
        assert_eq!(r.header("Content-Type"), Some(ct));
        assert_eq!(r.body, body);
    }
}

#[test]
fn the_date_header_changes_over_time() {
    let server = start();
    let agent = agent();
    let date = || {
        let r = agent
            .get(&url(server.local_addr(), "/plaintext"))
            .call()
            .unwrap();
        r.header("Date").unwrap().to_string()
    };
    let first = date();
    assert_http_date(&first);
    // The value is refreshed at each second boundary: poll until it moves (bounded).
    let next = util::wait_for("the Date header changes", || {
        Some(date()).filter(|now| *now != first)
    });
    assert_http_date(&next);
}

#[test]
fn a_hundred_pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    let mut batch = Vec::new();
    for i in 0..100 {
        match i % 3 {
            0 => write!(batch, "GET /path/{i} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap(),
            1 => write!(batch, "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").unwrap(),
            _ => write!(
                batch,
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\nbody-{i}",
                format!("body-{i}").len()
            )
            .unwrap(),
        }
    }
    c.send(&batch);
    for i in 0..100 {
        let r = c.next().expect("a response");
        assert_eq!(r.status, 200);
        let want = match i % 3 {
            0 => format!("/path/{i}"),
            1 => "Hello, World!".to_string(),
            _ => format!("body-{i}"),
        };
        assert_eq!(String::from_utf8(r.body).unwrap(), want, "response {i}");
    }
    // Still open: one more.
    c.send(b"GET /path/last HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next().unwrap().body, b"/path/last");
}

#[test]
fn bodies_upload_with_content_length_and_chunked_through_ureq() {
    let server = start();
    let agent = agent();
    let payload: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = agent
        .post(&url(server.local_addr(), "/echo"))
        .send_bytes(&payload)
        .unwrap();
    assert_eq!(r.header("X-Method"), Some("POST"));
    let mut back = Vec::new();
    r.into_reader().read_to_end(&mut back).unwrap();
    assert!(back == payload, "Content-Length body echoed");

    // A reader of unknown length: ureq sends it chunked.
    let r = agent
        .put(&url(server.local_addr(), "/echo"))
        .send(std::io::Cursor::new(payload.clone()))
        .unwrap();
    assert_eq!(r.header("X-Method"), Some("PUT"));
    let mut back = Vec::new();
    r.into_reader().read_to_end(&mut back).unwrap();
    assert!(back == payload, "chunked body echoed");
}

#[test]
fn a_chunked_upload_in_pieces_with_extensions_and_trailers_is_decoded() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    let pieces: [&[u8]; 7] = [
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"6\r\nhello,",
        b"\r\n1;name=value\r",
        b"\n \r\nA\r\n0123456789\r\n",
        b"0\r\n",
        b"X-Checksum: 42\r\n",
        b"\r\nGET /path/after HTTP/1.1\r\nHost: t\r\n\r\n",
    ];
    for p in pieces {
        c.send(p);
        c.stream.flush().unwrap();
    }
    let r = c.next().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, 0123456789");
    assert_eq!(c.next().unwrap().body, b"/path/after");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.next_head();
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.next().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
}

/// Accepts bodies only with an `Authorization` header (refused before the body is sent).
struct Guarded;

impl Service for Guarded {
    fn check_continue(&mut self, req: &Request<'_>) -> Result<(), eventide::http::Status> {
        match req.header("authorization") {
            Some(_) => Ok(()),
            None => Err(eventide::http::Status::UNAUTHORIZED),
        }
    }

    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        res.body(req.body());
    }
}

/// With `Expect: 100-continue` the service refuses before the body is sent: the client gets
/// the refusal instead of `100 Continue`, and the connection closes without the body read.
/// An accepted one gets `100 Continue`, then its answer.
#[test]
fn expect_100_continue_lets_the_service_refuse_before_the_body() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .start(|_| HttpServer::new(Guarded))
        .expect("start the server");
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 10000\r\nExpect: 100-continue\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();

    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"PUT /f HTTP/1.1\r\nHost: t\r\nAuthorization: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.next_head().status, 100);
    c.send(b"hello");
    let r = c.next().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
    server.stop();
}

#[test]
fn head_gets_headers_without_a_body() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"HEAD /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET /path/x HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.next_head();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("3"));
    assert_eq!(c.next().unwrap().body, b"/path/x");
}

/// Sends `request` on a fresh connection; expects `status`, `Connection: close`, then the
/// close. Meanwhile a keep-alive connection opened before keeps working, and so does a new one.
fn refused(server: &Server, request: &[u8], status: u16) {
    let addr = server.local_addr();
    let mut bystander = ResponseReader::new(connect(addr));
    bystander.send(b"GET /path/before HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(bystander.next().unwrap().body, b"/path/before");

    let mut c = ResponseReader::new(connect(addr));
    // The server may close (and reset) before every byte is written: ignore write errors.
    let _ = c.stream.write_all(request);
    let r = c
        .next()
        .unwrap_or_else(|| panic!("no answer, expected {status}"));
    assert_eq!(
        r.status,
        status,
        "answer to {:?}",
        String::from_utf8_lossy(&request[..request.len().min(80)])
    );
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.header("Server"), Some("eventide"));
    c.expect_closed();

    bystander.send(b"GET /path/after HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(bystander.next().unwrap().body, b"/path/after");
    let r = agent().get(&url(addr, "/plaintext")).call().unwrap();
    assert_eq!(r.into_string().unwrap(), "Hello, World!");
}

#[test]
fn malformed_requests_get_400_then_close() {
    let server = start();
    refused(
        &server,
        b"GET / HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n",
        400,
    );
    refused(&server, b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400);
    refused(
        &server,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        400,
    ); // a TLS hello
    refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12x\r\n\r\n",
        400,
    );
    refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    );
    refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        400,
    );
    refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    );
    refused(
        &server,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
        400,
    );
    // A good request before the bad one is still answered, in order.
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET /path/ok HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nBad\r\n\r\nGET /path/never HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next().unwrap().body, b"/path/ok");
    assert_eq!(c.next().unwrap().status, 400);
    c.expect_closed();
}

#[test]
fn oversized_heads_get_431_and_long_lines_414() {
    let server = start();
    let big_value = "v".repeat(10_000);
    refused(
        &server,
        format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big_value}\r\n\r\n").as_bytes(),
        431,
    );
    let many: String = (0..100).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    refused(
        &server,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
        431,
    );
    refused(
        &server,
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(10_000)).as_bytes(),
        414,
    );
}

#[test]
fn oversized_bodies_get_413() {
    let server = start();
    refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n",
        413,
    );
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'x'; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    refused(&server, &chunked, 413);
    refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
        413,
    );
}

#[test]
fn unsupported_transfer_codings_get_501() {
    let server = start();
    refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    );
    refused(
        &server,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
}

#[test]
fn http10_closes_by_default_and_keeps_alive_when_asked() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]));
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();

    let mut c = ResponseReader::new(connect(server.local_addr()));
    for i in 0..3 {
        c.send(format!("GET /path/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.next().unwrap();
        assert_eq!(r.header("Connection"), Some("keep-alive"));
        assert_eq!(r.body, format!("/path/{i}").as_bytes());
    }
}

#[test]
fn connection_close_ends_the_connection_after_its_response() {
    let server = start();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET /path/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /path/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /path/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!(r.body, b"/path/1");
    assert_eq!(r.header("Connection"), None);
    let r = c.next().unwrap();
    assert_eq!(r.body, b"/path/2");
    assert_eq!(r.header("Connection"), Some("close"));
    c.expect_closed();
}

#[test]
fn a_client_that_never_finishes_its_head_is_cut_by_the_read_timeout() {
    let server = start_with(|b| b.read_timeout(Duration::from_millis(200)));
    let addr = server.local_addr();
    // Opened first and idle throughout (nothing unconsumed): the read timeout must not cut it.
    let mut idle = ResponseReader::new(connect(addr));
    idle.send(b"GET /path/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.next().unwrap().body, b"/path/1");

    let mut slow = ResponseReader::new(connect(addr));
    slow.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    let r = slow.next().expect("an answer before the close");
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    slow.expect_closed();

    // The idle connection was open longer than the read timeout, yet it still serves.
    idle.send(b"GET /path/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.next().unwrap().body, b"/path/2");

    // A body that stops arriving is cut too.
    let mut stalled = ResponseReader::new(connect(addr));
    stalled.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(stalled.next().unwrap().status, 408);
    stalled.expect_closed();
}

#[test]
fn curl_gets_both_techempower_bodies() {
    let Some(curl) = tool("curl", "curl_gets_both_techempower_bodies") else {
        return;
    };
    let server = start();
    for (path, body, ct) in TFB_ROUTES {
        let out = std::process::Command::new(&curl)
            .args([
                "-sS",
                "--max-time",
                "30",
                "-D",
                "-",
                &url(server.local_addr(), path),
            ])
            .output()
            .expect("run curl");
        assert_curl_got(&out, body, ct);
    }
}

#[test]
fn a_service_closure_and_custom_limits_work() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(|_| {
            HttpServer::new(|req: &Request<'_>, res: &mut Response<'_>| {
                res.content_type("text/plain").body_with(|b| {
                    b.extend_from_slice(req.method().as_bytes());
                    b.extend_from_slice(b" ");
                    b.extend_from_slice(req.query().unwrap_or("-").as_bytes());
                });
            })
            .max_headers(4)
            .server_header(None)
        })
        .unwrap();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"DELETE /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!(r.body, b"DELETE y=1");
    assert_eq!(r.header("Server"), None);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n");
    assert_eq!(c.next().unwrap().status, 431);
    c.expect_closed();
}

/// A service whose loop timers report their tokens, and that hands its loop's handle out.
struct Ticks {
    ticks: std::sync::mpsc::Sender<u64>,
    handle: std::sync::mpsc::Sender<eventide::LoopHandle>,
}

impl Service for Ticks {
    fn call(&mut self, _: &Request<'_>, res: &mut Response<'_>) {
        res.body(b"ok");
    }

    fn on_boot(&mut self, cx: &mut eventide::LoopCx<'_>) {
        for token in [0, 1, u64::MAX] {
            cx.set_timer(Duration::from_millis(1), token);
        }
        let _ = self.handle.send(cx.handle());
    }

    fn on_tick(&mut self, _: &mut eventide::LoopCx<'_>, token: u64) {
        let _ = self.ticks.send(token);
    }
}

/// The server's `Date` timer does not share the service's token space: every token comes
/// back to the service, also from a timer set by a task posted to the loop, and the server
/// still runs exactly one timer of its own.
#[test]
fn a_services_loop_timers_get_every_token() {
    let (ticks, ticked) = std::sync::mpsc::channel();
    let (handle, handles) = std::sync::mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| {
            HttpServer::new(Ticks {
                ticks: ticks.clone(),
                handle: handle.clone(),
            })
        })
        .unwrap();
    let lp = handles.recv_timeout(TIMEOUT).expect("on_boot ran");
    lp.execute(|cx| {
        cx.set_timer(Duration::from_millis(1), 42);
    })
    .unwrap();
    let mut got: Vec<u64> = (0..4)
        .map(|_| ticked.recv_timeout(TIMEOUT).expect("a service timer fired"))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 42, u64::MAX]);
    let (tx, pending) = std::sync::mpsc::channel();
    lp.execute(move |cx| {
        let _ = tx.send(cx.pending_timers());
    })
    .unwrap();
    assert_eq!(
        pending.recv_timeout(TIMEOUT).unwrap(),
        1,
        "only the Date timer is left"
    );
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_http_date(c.next().unwrap().header("Date").unwrap());
}
