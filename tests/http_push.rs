//! Push-fed response bodies (`Response::push_body`, `Responder::push`, `BodyWriter`) over
//! real sockets: a producer on another thread and one on the connection's own loop, each
//! byte-exact, known-length and chunked; back-pressure (a client that stops reading: the
//! producer is told the output is full, stops with little pushed, and resumes when the client
//! reads); a client that vanishes mid-body (the producer's pushes fail); a body cut by an
//! error, or by a length pushed too long or too short (the connection closes, never a body
//! that looks complete); `HEAD`; and answers pipelined behind a pushed body, in order.

#![cfg(feature = "http")]

mod proto_util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventide::http::{BodyWriter, Flow, HttpServer, Reply, Request, Response, Service};
use eventide::{LoopCx, LoopHandle, Server};
use proto_util::{check_pattern, connect, ResponseReader, TIMEOUT};

/// Byte `i` of every body is `i % 251`.
fn pattern() -> Vec<u8> {
    (0..(64 << 10) + 251).map(|i| (i % 251) as u8).collect()
}

const PIECE: u64 = 64 << 10;

/// What a producer saw, reported to the test thread.
#[derive(Debug, Default)]
struct Report {
    fulls: u64,
    /// Bytes pushed in all.
    pushed: u64,
    /// How the body ended: `Ok` for `finish`, else the error's kind.
    end: Option<Result<(), std::io::ErrorKind>>,
}

/// Where producers report: their end, and the bytes pushed each time they stop on `Full`.
#[derive(Clone)]
struct Reports {
    done: mpsc::Sender<Report>,
    waits: mpsc::Sender<u64>,
}

/// Pushes `len` bytes of the pattern from this thread, waiting for `on_ready` whenever a
/// push says `Full`.
fn produce(mut body: BodyWriter, len: u64, to: Reports) {
    let tx = to.done;
    let pattern = pattern();
    let (wake_tx, wake) = mpsc::channel();
    let mut r = Report::default();
    while r.pushed < len {
        let n = PIECE.min(len - r.pushed) as usize;
        let from = (r.pushed % 251) as usize;
        match body.push(&pattern[from..from + n]) {
            Ok(flow) => {
                r.pushed += n as u64;
                if flow == Flow::Full {
                    r.fulls += 1;
                    let _ = to.waits.send(r.pushed);
                    let w = wake_tx.clone();
                    body.on_ready(move || {
                        let _ = w.send(());
                    });
                    if wake.recv_timeout(TIMEOUT).is_err() {
                        r.end = Some(Err(std::io::ErrorKind::TimedOut));
                        let _ = tx.send(r);
                        return;
                    }
                }
            }
            Err(e) => {
                r.end = Some(Err(e.kind()));
                let _ = tx.send(r);
                return;
            }
        }
    }
    r.end = Some(body.finish().map_err(|e| e.kind()));
    let _ = tx.send(r);
}

/// A body pushed from a loop timer of the connection's own loop: `push_local` while it may,
/// and on `Full` a wake-up that sets the timer again.
struct Local {
    body: BodyWriter,
    len: u64,
    report: Report,
}

/// The service: `/cross?N` (a thread pushes N bytes, `Content-Length`), `/cross-chunked?N`,
/// `/later?N` (deferred, then `Responder::push` from a thread), `/local?N` and
/// `/local-chunked?N` (the loop's own timer pushes), `/cut` (1000 bytes, then `fail`),
/// `/over` and `/under` (10 announced, 11 or 5 pushed), anything else `ok`.
struct Pushes {
    reports: Reports,
    local: HashMap<u64, Local>,
    next_token: u64,
    pattern: Vec<u8>,
}

impl Pushes {
    fn new(reports: Reports) -> Pushes {
        Pushes {
            reports,
            local: HashMap::new(),
            next_token: 1,
            pattern: pattern(),
        }
    }

    /// Starts a body of `n` bytes (`len`: announced) pushed by the loop's own timer.
    fn start_local(&mut self, res: &mut Response<'_>, len: Option<u64>, n: u64) {
        let body = res.push_body(len);
        let token = self.next_token;
        self.next_token += 1;
        let report = Report::default();
        self.local.insert(
            token,
            Local {
                body,
                len: n,
                report,
            },
        );
        if let Some(mut cx) = res.loop_cx() {
            cx.set_timer(Duration::ZERO, token);
        }
    }

    /// Runs a local producer until its body is done or a push says `Full`.
    fn run_local(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let Some(job) = self.local.get_mut(&token) else {
            return;
        };
        while job.report.pushed < job.len {
            let n = PIECE.min(job.len - job.report.pushed) as usize;
            let from = (job.report.pushed % 251) as usize;
            match job.body.push_local(cx, &self.pattern[from..from + n]) {
                Ok(Flow::Open) => job.report.pushed += n as u64,
                Ok(Flow::Full) => {
                    job.report.pushed += n as u64;
                    job.report.fulls += 1;
                    let _ = self.reports.waits.send(job.report.pushed);
                    let lp: LoopHandle = cx.handle();
                    job.body.on_ready(move || {
                        let _ = lp.execute(move |cx| {
                            cx.set_timer(Duration::ZERO, token);
                        });
                    });
                    return;
                }
                Err(e) => {
                    let mut job = self.local.remove(&token).expect("running");
                    job.report.end = Some(Err(e.kind()));
                    let _ = self.reports.done.send(job.report);
                    return;
                }
            }
        }
        let mut job = self.local.remove(&token).expect("running");
        job.report.end = Some(job.body.finish().map_err(|e| e.kind()));
        let _ = self.reports.done.send(job.report);
    }
}

impl Service for Pushes {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let n: u64 = req.query().and_then(|q| q.parse().ok()).unwrap_or(0);
        let tx = self.reports.clone();
        match req.path() {
            "/cross" | "/cross-chunked" => {
                let len = (req.path() == "/cross").then_some(n);
                let body = res.content_type("application/octet-stream").push_body(len);
                std::thread::spawn(move || produce(body, n, tx));
            }
            "/later" => {
                let responder = res.defer();
                std::thread::spawn(move || {
                    let head = Reply::ok().header("X-Later", "1");
                    match responder.push(head, Some(n)) {
                        Ok(body) => produce(body, n, tx),
                        Err(e) => drop(tx.done.send(Report {
                            end: Some(Err(e.kind())),
                            ..Report::default()
                        })),
                    }
                });
            }
            "/local" | "/local-chunked" => {
                let len = (req.path() == "/local").then_some(n);
                self.start_local(res, len, n);
            }
            "/cut" => {
                let mut body = res.push_body(None);
                std::thread::spawn(move || {
                    let _ = body.push(&[b'c'; 1000]);
                    body.fail();
                });
            }
            "/over" | "/under" => {
                let pushed = if req.path() == "/over" { 11 } else { 5 };
                let mut body = res.push_body(Some(10));
                let end = body
                    .push(&vec![b'x'; pushed])
                    .and_then(|_| body.finish())
                    .map_err(|e| e.kind());
                let report = Report {
                    end: Some(end),
                    ..Report::default()
                };
                let _ = tx.done.send(report);
            }
            _ => res.body(b"ok"),
        }
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.run_local(cx, token);
    }
}

fn serve() -> (Server, mpsc::Receiver<Report>) {
    let (server, done, _) = serve_with_waits();
    (server, done)
}

fn serve_with_waits() -> (Server, mpsc::Receiver<Report>, mpsc::Receiver<u64>) {
    let (done, done_rx) = mpsc::channel();
    let (waits, waits_rx) = mpsc::channel();
    let to = Arc::new(Mutex::new(Reports { done, waits }));
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| HttpServer::new(Pushes::new(to.lock().unwrap().clone())))
        .expect("start the server");
    (server, done_rx, waits_rx)
}

fn report(rx: &mpsc::Receiver<Report>) -> Report {
    rx.recv_timeout(TIMEOUT)
        .expect("the producer reports within the timeout")
}

/// The head of a response on `r`.
fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(
            r.read_line(&mut head).unwrap() > 0,
            "ended in the head: {head:?}"
        );
    }
    head
}

/// A producer on another thread and one on the loop, known length and chunked, through
/// `ureq`: every byte arrives, in order, and each producer ends with `finish` succeeding.
#[test]
fn bodies_pushed_from_a_thread_and_from_the_loop_arrive_byte_exact() {
    let (server, rx) = serve();
    let addr = server.local_addr();
    let len = 24u64 << 20;
    for path in ["cross", "cross-chunked", "later", "local", "local-chunked"] {
        let res = ureq::get(&format!("http://{addr}/{path}?{len}"))
            .call()
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let chunked = path.ends_with("chunked");
        assert_eq!(
            res.header("transfer-encoding").is_some(),
            chunked,
            "{path}: framing"
        );
        if !chunked {
            assert_eq!(
                res.header("content-length"),
                Some(&*len.to_string()),
                "{path}"
            );
        }
        if path == "later" {
            assert_eq!(res.header("x-later"), Some("1"));
        }
        let mut body = BufReader::with_capacity(1 << 20, res.into_reader());
        check_pattern(&mut body, len);
        let mut rest = Vec::new();
        body.read_to_end(&mut rest).unwrap();
        assert!(
            rest.is_empty(),
            "{path}: {} bytes past the body",
            rest.len()
        );
        let r = report(&rx);
        assert_eq!(r.end, Some(Ok(())), "{path}: {r:?}");
        assert_eq!(r.pushed, len, "{path}");
    }
    server.stop();
}

/// The most a producer may have pushed while its client reads nothing: the kernel's socket
/// buffers, the high-water mark and one queue's worth, with room to spare.
const UNREAD_BOUND: u64 = 48 << 20;

/// A client that stops reading: each producer (thread, loop) is stopped by `Full` with a
/// bounded amount pushed — the server holds little — then resumes as the client reads, and
/// every byte arrives.
#[test]
fn a_client_that_stops_reading_pauses_the_producer_until_it_reads() {
    let (server, rx, waits) = serve_with_waits();
    let len = 256u64 << 20;
    for path in ["cross", "local"] {
        let mut s = connect(server.local_addr());
        write!(s, "GET /{path}?{len} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        // Not reading: each stop on `Full` is reported; once none has come for a second the
        // producer is at rest. Every stop must come with little pushed (a producer that is
        // never stopped keeps reporting ever larger amounts, past the bound).
        let mut stops = 0;
        while let Ok(pushed) = waits.recv_timeout(Duration::from_secs(1)) {
            stops += 1;
            assert!(
                pushed < UNREAD_BOUND,
                "{path}: {pushed} bytes pushed to a client that reads nothing"
            );
        }
        assert!(stops > 0, "{path}: the producer was never told Full");
        let mut r = BufReader::with_capacity(1 << 20, s);
        let head = read_head(&mut r);
        assert!(
            head.contains(&format!("Content-Length: {len}\r\n")),
            "{head}"
        );
        check_pattern(&mut r, len);
        let rep = report(&rx);
        assert_eq!(rep.end, Some(Ok(())), "{path}: {rep:?}");
        assert!(rep.fulls > 1, "{path}: full only {} times", rep.fulls);
        while waits.try_recv().is_ok() {} // the stops while the client read
    }
    server.stop();
}

/// The client goes away mid-body: the producer, paused or pushing, gets `NotConnected`.
#[test]
fn a_client_that_vanishes_mid_body_fails_the_producer() {
    let (server, rx) = serve();
    for path in ["cross", "local"] {
        let mut s = connect(server.local_addr());
        write!(s, "GET /{path}?{} HTTP/1.1\r\nHost: t\r\n\r\n", 1u64 << 40).unwrap();
        let mut r = BufReader::new(s);
        read_head(&mut r);
        check_pattern(&mut r, 1 << 20);
        drop(r);
        let rep = report(&rx);
        assert_eq!(
            rep.end,
            Some(Err(std::io::ErrorKind::NotConnected)),
            "{path}: {rep:?}"
        );
    }
    server.stop();
}

/// A body failed mid-way, or pushed too long or too short for its length, cuts the
/// connection after what was sent: no terminating chunk, no full length, no next answer.
#[test]
fn a_body_cut_by_an_error_or_a_wrong_length_closes_the_connection() {
    let (server, rx) = serve();
    for (path, kind) in [
        ("cut", None),
        ("over", Some(std::io::ErrorKind::InvalidInput)),
        ("under", Some(std::io::ErrorKind::InvalidInput)),
    ] {
        let mut s = connect(server.local_addr());
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("the connection closes");
        let text = String::from_utf8_lossy(&all);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{path}: {text}");
        let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
        match path {
            "cut" => {
                assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
                assert!(!body.ends_with("0\r\n\r\n"), "a cut body looked complete");
                assert!(body.starts_with("3e8\r\n"), "{body}");
            }
            _ => {
                assert!(text.contains("Content-Length: 10\r\n"), "{text}");
                assert!(body.len() < 10, "{path}: {body:?}");
                let rep = report(&rx);
                assert_eq!(rep.end, Some(Err(kind.unwrap())), "{path}");
            }
        }
    }
    server.stop();
}

/// `HEAD` gets the head with the length, no body bytes; answers pipelined behind a pushed
/// body come after it, in order.
#[test]
fn head_and_pipelined_answers_behind_a_pushed_body() {
    let (server, rx) = serve();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(
        b"GET /cross?300000 HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD /local?5000 HTTP/1.1\r\nHost: t\r\n\r\nGET /local-chunked?70000 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let first = c.next().unwrap();
    assert_eq!(first.body.len(), 300_000);
    assert!(first
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(c.next().unwrap().body, b"ok");
    let head = c.next_head();
    assert_eq!(head.header("Content-Length"), Some("5000"));
    let chunked = c.next().unwrap();
    assert_eq!(chunked.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(chunked.body.len(), 70_000);
    assert_eq!(c.next().unwrap().body, b"ok");
    assert!(c.buffered().is_empty(), "bytes after the last answer");
    for _ in 0..3 {
        assert_eq!(report(&rx).end, Some(Ok(())));
    }
    server.stop();
}
