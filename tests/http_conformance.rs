//! RFC 9112 / RFC 9110 conformance of the HTTP codec, one test per rule, over real sockets:
//! raw TCP for what client libraries will not send, `ureq` (also as a client of a proxy, which
//! sends absolute-form targets) and `curl` where they can.
//!
//! Every refusal is checked the same way: the status, `Connection: close`, the close itself,
//! nothing after the bad request answered, and the same verdict when the request arrives one
//! byte per write.

#![cfg(feature = "http")]

mod proto_util;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use eventide::http::{HttpServer, Request, Response, Status, Version};
use eventide::Server;
use proto_util::{connect, tool, HttpResponse, ResponseReader, TIMEOUT};

/// Routes that show what the service saw and exercise every way of writing a body.
fn service(req: &Request<'_>, res: &mut Response<'_>) {
    if req.method() == "CONNECT" {
        res.status(Status::METHOD_NOT_ALLOWED)
            .body(format!("CONNECT {}", req.host().unwrap_or("-")).as_bytes());
        return;
    }
    if req.target() == "*" {
        res.status(Status::NO_CONTENT)
            .header("Allow", "GET, HEAD, OPTIONS");
        return;
    }
    match req.path() {
        "/plaintext" => res.content_type("text/plain").body(b"Hello, World!"),
        "/seen" => {
            let version = match req.version() {
                Version::Http10 => "1.0",
                _ => "1.1",
            };
            let seen = format!(
                "{} {} path={} query={} host={} version={version}",
                req.method(),
                req.target(),
                req.path(),
                req.query().unwrap_or("-"),
                req.host().unwrap_or("-"),
            );
            res.content_type("text/plain").body(seen.as_bytes());
        }
        "/big" => res.content_type("application/octet-stream").body(&big()),
        "/built" => res
            .content_type("text/plain")
            .body_with(|b| b.extend_from_slice(b"built in place")),
        "/unfinished" => {
            res.header("X-Unfinished", "1");
        }
        "/no-content" => {
            res.status(Status::NO_CONTENT).body(b"");
        }
        "/late-status" => {
            res.content_type("text/plain").header("Location", "/x");
            res.status(Status::CREATED).body(b"created");
        }
        _ => res.status(Status::NOT_FOUND).body(b"no such page"),
    }
}

fn big() -> Vec<u8> {
    (0..20_000u32).map(|i| (i % 251) as u8).collect()
}

fn start() -> Server {
    Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(|_| HttpServer::new(service as fn(&Request<'_>, &mut Response<'_>)))
        .expect("start the server")
}

/// Sends `bytes` in one write and returns every response until the server closes (or
/// `count` responses if the connection stays open).
fn exchange(addr: SocketAddr, bytes: &[u8], count: usize) -> (Vec<HttpResponse>, bool) {
    let mut c = ResponseReader::new(connect(addr));
    // The server may close (and reset) before every byte is written: ignore write errors.
    let _ = c.stream.write_all(bytes);
    read_answers(&mut c, count)
}

/// The same, one byte per write.
fn exchange_bytewise(addr: SocketAddr, bytes: &[u8], count: usize) -> (Vec<HttpResponse>, bool) {
    let mut c = ResponseReader::new(connect(addr));
    for &b in bytes {
        if c.stream.write_all(&[b]).is_err() {
            break; // refused and closed before the end: what follows is never read
        }
    }
    read_answers(&mut c, count)
}

fn read_answers(c: &mut ResponseReader, count: usize) -> (Vec<HttpResponse>, bool) {
    let mut out = Vec::new();
    while out.len() < count {
        match c.next() {
            Some(r) => {
                let close = r.header("Connection") == Some("close");
                out.push(r);
                if close {
                    c.expect_closed();
                    return (out, true);
                }
            }
            None => return (out, true),
        }
    }
    (out, false)
}

/// What matters of an answer to compare two deliveries: status, body, `Connection`.
fn verdicts(answers: &[HttpResponse]) -> Vec<(u16, Vec<u8>, Option<String>)> {
    answers
        .iter()
        .map(|r| {
            (
                r.status,
                r.body.clone(),
                r.header("Connection").map(str::to_string),
            )
        })
        .collect()
}

/// `request` is refused with `status` and a close; a request pipelined after it is never
/// answered; the verdict is the same one byte at a time; other connections are unaffected.
fn refused(addr: SocketAddr, request: &[u8], status: u16) {
    let show = String::from_utf8_lossy(request).into_owned();
    let mut stream = request.to_vec();
    stream.extend_from_slice(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    let (answers, closed) = exchange(addr, &stream, 2);
    assert_eq!(answers.len(), 1, "{show:?}: {answers:?}");
    assert!(closed, "{show:?}: not closed");
    let r = &answers[0];
    assert_eq!(r.status, status, "{show:?}");
    assert_eq!(r.header("Connection"), Some("close"), "{show:?}");
    let (bytewise, closed) = exchange_bytewise(addr, &stream, 2);
    assert!(closed, "{show:?}: not closed when sent byte by byte");
    assert_eq!(
        verdicts(&bytewise),
        verdicts(&answers),
        "{show:?} byte by byte"
    );
    served(
        addr,
        b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n",
        b"Hello, World!",
    );
}

/// `request` is answered 200 with `body`, the connection stays open, and the same happens
/// one byte at a time.
fn served(addr: SocketAddr, request: &[u8], body: &[u8]) -> HttpResponse {
    let show = String::from_utf8_lossy(request).into_owned();
    let (answers, closed) = exchange(addr, request, 1);
    assert!(!closed, "{show:?}: closed");
    let r = answers.into_iter().next().unwrap();
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body)),
        (200, String::from_utf8_lossy(body)),
        "{show:?}"
    );
    let (bytewise, _) = exchange_bytewise(addr, request, 1);
    assert_eq!(
        verdicts(&bytewise),
        verdicts(std::slice::from_ref(&r)),
        "{show:?} byte by byte"
    );
    r
}

fn seen(addr: SocketAddr, request: &str) -> String {
    let (answers, _) = exchange(addr, request.as_bytes(), 1);
    let r = answers
        .first()
        .unwrap_or_else(|| panic!("no answer to {request:?}"));
    assert_eq!(r.status, 200, "{request:?}");
    String::from_utf8(r.body.clone()).unwrap()
}

/// `curl`, which must be installed under CI.
fn curl(test: &str) -> Option<String> {
    let found = tool("curl", test);
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: curl is required under CI");
    }
    found
}

// RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
// HTTP/1.1 request message that lacks a Host header field and to any request message that
// contains more than one Host header field line or a Host header field with an invalid field
// value."

#[test]
fn an_http11_request_without_host_gets_400() {
    let server = start();
    let addr = server.local_addr();
    refused(addr, b"GET /plaintext HTTP/1.1\r\n\r\n", 400);
    refused(addr, b"GET /plaintext HTTP/1.1\r\nX-Host: a\r\n\r\n", 400);
    // HTTP/1.0 predates Host: served.
    let (answers, _) = exchange(addr, b"GET /plaintext HTTP/1.0\r\n\r\n", 1);
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].body, b"Hello, World!");
}

#[test]
fn two_host_fields_get_400() {
    let server = start();
    let addr = server.local_addr();
    refused(addr, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    refused(addr, b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400);
    refused(addr, b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400);
}

#[test]
fn an_invalid_host_gets_400() {
    let server = start();
    let addr = server.local_addr();
    for host in [
        "a b",
        "a/b",
        "a?b",
        "a#b",
        "a@b",
        "a:b",
        "a:1:2",
        "[::1",
        "[::1]x",
        "[zz::1]",
        "::1",
        "a\\b",
        "%zz",
        "a,b\"",
        "caf\u{e9}",
    ] {
        refused(
            addr,
            format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            400,
        );
    }
    for host in [
        "example.com",
        "example.com:8080",
        "127.0.0.1:1",
        "[::1]:8080",
        "[v7.x:y]",
        "x%41y",
        "",
    ] {
        served(
            addr,
            format!("GET /plaintext HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes(),
            b"Hello, World!",
        );
    }
}

// RFC 9112 section 3.2.2: "A server MUST accept the absolute-form in requests"; the host is
// the target's authority, Host is still required (section 3.2) and its value ignored.

#[test]
fn absolute_form_targets_are_served_by_their_path() {
    let server = start();
    let addr = server.local_addr();
    served(
        addr,
        b"GET http://example.com/plaintext HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"Hello, World!",
    );
    assert_eq!(
        seen(
            addr,
            "GET HTTP://other.example:81/seen?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        ),
        "GET HTTP://other.example:81/seen?q=1 path=/seen query=q=1 host=other.example:81 version=1.1"
    );
    assert_eq!(
        seen(addr, "GET /seen HTTP/1.1\r\nHost: example.com:80\r\n\r\n"),
        "GET /seen path=/seen query=- host=example.com:80 version=1.1"
    );
    // An empty path is "/" (here: no such page, but a page was looked up).
    let (answers, _) = exchange(addr, b"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n", 1);
    assert_eq!(answers[0].status, 404);
    // Still one valid Host in 1.1; an authority with user information or no host is refused.
    refused(
        addr,
        b"GET http://example.com/plaintext HTTP/1.1\r\n\r\n",
        400,
    );
    refused(
        addr,
        b"GET http://user@example.com/plaintext HTTP/1.1\r\nHost: example.com\r\n\r\n",
        400,
    );
    refused(
        addr,
        b"GET http:///plaintext HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
    );
    refused(
        addr,
        b"GET ftp://h/plaintext HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
    );
    refused(addr, b"GET plaintext HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

#[test]
fn a_proxy_client_sending_absolute_form_is_served() {
    let server = start();
    // ureq talking to the server as to an HTTP proxy sends `GET http://example.com/...`.
    let proxy = ureq::Proxy::new(format!("http://{}", server.local_addr())).unwrap();
    let agent = ureq::AgentBuilder::new()
        .proxy(proxy)
        .timeout(TIMEOUT)
        .build();
    let r = agent
        .get("http://example.com/plaintext")
        .call()
        .expect("GET through the proxy");
    assert_eq!(r.into_string().unwrap(), "Hello, World!");
    let r = agent
        .get("http://example.com:8080/seen?x=y")
        .call()
        .unwrap();
    assert_eq!(
        r.into_string().unwrap(),
        "GET http://example.com:8080/seen?x=y path=/seen query=x=y host=example.com:8080 version=1.1"
    );
}

// RFC 9112 sections 3.2.3 and 3.2.4: the authority form is only for CONNECT, the asterisk
// form only for OPTIONS.

#[test]
fn asterisk_form_only_with_options() {
    let server = start();
    let addr = server.local_addr();
    let (answers, closed) = exchange(addr, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 1);
    assert!(!closed);
    assert_eq!(answers[0].status, 204);
    assert_eq!(answers[0].header("Allow"), Some("GET, HEAD, OPTIONS"));
    for method in ["GET", "HEAD", "POST", "DELETE"] {
        refused(
            addr,
            format!("{method} * HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes(),
            400,
        );
    }
    refused(addr, b"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

#[test]
fn asterisk_form_from_curl() {
    let Some(curl) = curl("asterisk_form_from_curl") else {
        return;
    };
    let server = start();
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "30", "-i", "-X", "OPTIONS"])
        .args(["--request-target", "*"])
        .arg(format!("http://{}/", server.local_addr()))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
    assert!(text.contains("Allow: GET, HEAD, OPTIONS\r\n"), "{text}");
}

#[test]
fn authority_form_only_with_connect() {
    let server = start();
    let addr = server.local_addr();
    let (answers, _) = exchange(
        addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        1,
    );
    assert_eq!(answers[0].status, 405);
    assert_eq!(answers[0].body, b"CONNECT example.com:443");
    refused(
        addr,
        b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
    );
    refused(addr, b"CONNECT /plaintext HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    refused(addr, b"CONNECT http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    refused(
        addr,
        b"CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n",
        400,
    );
    refused(addr, b"CONNECT * HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

// RFC 9110 section 9.3.2: HEAD is GET without content; the same header fields, Content-Length
// included.

#[test]
fn head_is_answered_like_get_without_a_body_for_every_kind_of_response() {
    let server = start();
    let addr = server.local_addr();
    for path in [
        "/plaintext",
        "/big",
        "/built",
        "/unfinished",
        "/no-content",
        "/late-status",
        "/missing",
        "/seen",
    ] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        let head = format!("HEAD {path} HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut c = ResponseReader::new(connect(addr));
        // HEAD, then GET on the same connection: the HEAD answer must carry no body, or
        // the GET answer would not parse.
        c.send(format!("{head}{get}").as_bytes());
        let h = c.next_head();
        let g = c.next().expect("the GET answer");
        assert_eq!(h.status, g.status, "{path}");
        let without_date = |r: &HttpResponse| {
            r.headers
                .iter()
                .filter(|(n, _)| n != "Date")
                .cloned()
                .collect::<Vec<_>>()
        };
        let mut hh = without_date(&h);
        if path == "/seen" {
            // The body (and its length) names the method.
            hh.retain(|(n, _)| n != "Content-Length");
            let body = format!("HEAD {path} path={path} query=- host=h version=1.1");
            assert_eq!(h.header("Content-Length"), Some(&*body.len().to_string()));
        }
        let mut gh = without_date(&g);
        if path == "/seen" {
            gh.retain(|(n, _)| n != "Content-Length");
        }
        assert_eq!(hh, gh, "{path}");
        assert!(
            c.buffered().is_empty(),
            "{path}: bytes after the GET answer"
        );
        // Still open.
        c.send(b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(c.next().unwrap().body, b"Hello, World!");
    }
}

#[test]
fn curl_head_gets_the_get_headers() {
    let Some(curl) = curl("curl_head_gets_the_get_headers") else {
        return;
    };
    let server = start();
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "30", "-I"])
        .arg(format!("http://{}/big", server.local_addr()))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 20000\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
}

// RFC 9110 section 2.5 and the module documentation: a version other than 1.x is answered
// 505; a higher 1.x minor version is served as the highest one supported, 1.1.

#[test]
fn unsupported_versions_get_505() {
    let server = start();
    let addr = server.local_addr();
    for request in [
        &b"GET /plaintext HTTP/2.0\r\nHost: h\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /plaintext HTTP/3\r\nHost: h\r\n\r\n",
        b"GET /plaintext HTTP/3.0\r\nHost: h\r\n\r\n",
        b"GET /plaintext HTTP/0.9\r\n\r\n",
        b"GET /plaintext\r\n",
        b"GET /plaintext\n",
    ] {
        refused(addr, request, 505);
    }
    // Malformed versions stay malformed.
    for request in [
        &b"GET /plaintext HTTP/1\r\nHost: h\r\n\r\n"[..],
        b"GET /plaintext HTTP/1.10\r\nHost: h\r\n\r\n",
        b"GET /plaintext http/1.1\r\nHost: h\r\n\r\n",
        b"GET /plaintext HTTP/one\r\nHost: h\r\n\r\n",
    ] {
        refused(addr, request, 400);
    }
}

#[test]
fn higher_minor_versions_are_served_as_http11() {
    let server = start();
    let addr = server.local_addr();
    for minor in 2..=9 {
        let request = format!("GET /seen HTTP/1.{minor}\r\nHost: h\r\n\r\n");
        let r = served(
            addr,
            request.as_bytes(),
            b"GET /seen path=/seen query=- host=h version=1.1",
        );
        // HTTP/1.1 rules: kept alive without being asked.
        assert_eq!(r.header("Connection"), None);
    }
    // Pipelined, with a body.
    let mut c = ResponseReader::new(connect(addr));
    c.send(b"POST /seen HTTP/1.2\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /plaintext HTTP/1.9\r\nHost: h\r\n\r\n");
    assert_eq!(c.next().unwrap().status, 200);
    assert_eq!(c.next().unwrap().body, b"Hello, World!");
}

// RFC 9112 section 7.1: chunk-size [ chunk-ext ] CRLF, where white space may only precede a
// `;`; trailer fields are field lines, whose names are tokens.

#[test]
fn a_chunk_size_line_with_trailing_white_space_is_refused() {
    let server = start();
    let addr = server.local_addr();
    let post = "POST /seen HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "3 \r\nabc\r\n0\r\n\r\n",
        "3\t\r\nabc\r\n0\r\n\r\n",
        "3;x=y \r\nabc\r\n0\r\n\r\n",
        "3\r\nabc\r\n0 \r\n\r\n",
        "3;x\x01\r\nabc\r\n0\r\n\r\n",
    ] {
        refused(addr, format!("{post}{body}").as_bytes(), 400);
    }
    // White space before `;` is the grammar's BWS: accepted.
    served(
        addr,
        format!("{post}3 ;x=\"a b\"\r\nabc\r\n0\r\n\r\n").as_bytes(),
        b"POST /seen path=/seen query=- host=h version=1.1",
    );
}

#[test]
fn a_trailer_field_name_with_control_bytes_is_refused() {
    let server = start();
    let addr = server.local_addr();
    let post =
        "POST /seen HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n";
    for trailer in [
        "X\x01A: 1\r\n",
        "X\x7fA: 1\r\n",
        "X\x00A: 1\r\n",
        "X-A\t: 1\r\n",
        "X A: 1\r\n",
        ": 1\r\n",
        "X-A: \x01\r\n",
    ] {
        refused(addr, format!("{post}{trailer}\r\n").as_bytes(), 400);
    }
    served(
        addr,
        format!("{post}X-Sum: 7\r\n\r\n").as_bytes(),
        b"POST /seen path=/seen query=- host=h version=1.1",
    );
}

// What held before these rules and must still hold.

#[test]
fn framing_ambiguities_are_refused_and_nothing_after_them_is_processed() {
    let server = start();
    let addr = server.local_addr();
    for request in [
        &b"POST /seen HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
        b"POST /seen HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /seen HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"POST /seen HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /seen HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        b"POST /seen HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc",
    ] {
        refused(addr, request, 400);
    }
    // A good request before the bad one is answered; nothing after it.
    let (answers, closed) = exchange(
        addr,
        b"GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n",
        3,
    );
    assert!(closed);
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400]);
}

// RFC 9110 section 15: a status set after a header field is the status sent.

#[test]
fn a_status_set_after_headers_is_the_status_sent() {
    let server = start();
    let addr = server.local_addr();
    let (answers, _) = exchange(addr, b"GET /late-status HTTP/1.1\r\nHost: h\r\n\r\n", 1);
    let r = &answers[0];
    assert_eq!((r.status, &r.body[..]), (201, &b"created"[..]));
    assert_eq!(r.header("Location"), Some("/x"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    // Through a client library too.
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let r = agent
        .get(&format!("http://{addr}/late-status"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 201);
}
