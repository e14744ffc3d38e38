//! Deferred HTTP responses over real sockets: answers given later — from worker threads,
//! from other threads, from another connection's callback — keep the order of a pipeline,
//! bound the answers a connection may owe (reading pauses), answer 500 when dropped, hold a
//! close until given, and report a connection that closed meanwhile.

#![cfg(feature = "http")]

mod proto_util;
mod util;

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use eventide::http::{HttpServer, Reply, Request, Responder, Response, Service, Status};
use eventide::{Builder, Server};
use proto_util::{connect, ResponseReader, TIMEOUT};
use util::{checks, wait_until, Rng};

fn server(
    tune: impl FnOnce(Builder) -> Builder,
    make: impl FnMut(usize) -> HttpServer<Svc>,
) -> Server {
    tune(Server::builder().bind("127.0.0.1:0"))
        .start(make)
        .expect("start the server")
}

type Svc = Box<dyn FnMut(&Request<'_>, &mut Response<'_>) + Send>;

fn svc(f: impl FnMut(&Request<'_>, &mut Response<'_>) + Send + 'static) -> HttpServer<Svc> {
    HttpServer::new(Box::new(f) as Svc)
}

/// `GET path` pipelined, `n` of them, `path(i)` each.
fn pipeline(paths: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    out
}

/// The case: 64 connections × 16 pipelined requests, each answered from a worker
/// thread after a random delay; every connection gets its 16 answers in order.
#[test]
fn pipelined_answers_from_workers_keep_their_order() {
    let server = server(
        |b| b.loops(2).workers(4),
        |_| {
            svc(|req, res| {
                let target = req.target().to_string();
                res.spawn(move || {
                    let mut rng = Rng::new(target.bytes().map(u64::from).sum());
                    thread::sleep(Duration::from_micros(rng.range(0, 3000)));
                    Reply::ok().content_type("text/plain").body(target)
                });
            })
        },
    );
    let addr = server.local_addr();
    let clients: Vec<_> = (0..64)
        .map(|c| {
            thread::spawn(move || {
                let paths: Vec<String> = (0..16).map(|i| format!("/c{c}/r{i}")).collect();
                let mut r = ResponseReader::new(connect(addr));
                r.send(&pipeline(&paths));
                for p in &paths {
                    let res = r.next().expect("a response");
                    assert_eq!(res.status, 200, "{p}");
                    assert_eq!(String::from_utf8_lossy(&res.body), *p, "out of order");
                }
                paths.len()
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(answered, 1024);
    server.stop();
    server.join().unwrap();
}

/// Responders travel to another thread, which answers them in reverse order; the answers
/// still go out in request order, and the server never owes more than its bound (it stops
/// reading the pipeline meanwhile).
#[test]
fn the_bound_on_answers_owed_pauses_reading() {
    const BOUND: usize = 4;
    let (tx, rx) = mpsc::channel::<(String, Responder)>();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (o, m) = (outstanding.clone(), most.clone());
    let tx = Mutex::new(tx);
    let server = server(
        |b| b.loops(1).max_owed_answers(BOUND),
        move |_| {
            let (tx, o, m) = (tx.lock().unwrap().clone(), o.clone(), m.clone());
            svc(move |req, res| {
                let now = o.fetch_add(1, SeqCst) + 1;
                m.fetch_max(now, SeqCst);
                let _ = tx.send((req.target().to_string(), res.defer()));
            })
        },
    );
    let paths: Vec<String> = (0..16).map(|i| format!("/r{i}")).collect();
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&paths));
    for round in paths.chunks(BOUND) {
        let mut held: Vec<(String, Responder)> = (0..BOUND)
            .map(|_| rx.recv_timeout(TIMEOUT).expect("a deferred request"))
            .collect();
        let names: Vec<&str> = held.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, round.iter().map(String::as_str).collect::<Vec<_>>());
        while let Some((p, responder)) = held.pop() {
            outstanding.fetch_sub(1, SeqCst);
            responder
                .send(Reply::ok().body(p))
                .expect("the connection is open");
        }
        for p in round {
            let res = r.next().expect("a response");
            assert_eq!(String::from_utf8_lossy(&res.body), *p);
        }
    }
    assert_eq!(
        most.load(SeqCst),
        BOUND,
        "the server owed more than its bound"
    );
    server.stop();
    server.join().unwrap();
}

/// A responder dropped unanswered answers 500, in its place in the pipeline; the connection
/// goes on.
#[test]
fn a_dropped_responder_answers_500() {
    let server = server(
        |b| b,
        |_| {
            svc(|req, res| match req.path() {
                "/drop" => drop(res.defer()),
                "/later" => {
                    let responder = res.defer();
                    thread::spawn(move || {
                        let _ = responder.respond(|res| res.body(b"later"));
                    });
                }
                p => res.body(p.as_bytes()),
            })
        },
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    let paths = ["/a", "/drop", "/later", "/drop", "/b"].map(String::from);
    r.send(&pipeline(&paths));
    let got: Vec<(u16, Vec<u8>)> = (0..5)
        .map(|_| r.next().map(|x| (x.status, x.body)).expect("a response"))
        .collect();
    let want: Vec<(u16, Vec<u8>)> = vec![
        (200, b"/a".to_vec()),
        (500, b"Internal Server Error".to_vec()),
        (200, b"later".to_vec()),
        (500, b"Internal Server Error".to_vec()),
        (200, b"/b".to_vec()),
    ];
    assert_eq!(got, want);
    // Still serving.
    r.send(&pipeline(&["/c".to_string()]));
    assert_eq!(r.next().unwrap().body, b"/c");
}

/// A client that resets while its answer is owed: the late answer reports that the
/// connection closed, and nothing else is touched.
#[test]
fn a_late_answer_to_a_closed_connection_reports_it() {
    let (tx, rx) = mpsc::channel::<Responder>();
    let tx = Mutex::new(tx);
    let server = server(
        |b| b,
        move |_| {
            let tx = tx.lock().unwrap().clone();
            svc(move |_req, res| {
                let _ = tx.send(res.defer());
            })
        },
    );
    let s = connect(server.local_addr());
    (&s).write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let responder = rx.recv_timeout(TIMEOUT).expect("the request was deferred");
    assert!(!responder.is_closed());
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s); // a reset
    wait_until("the server sees the connection closed", || {
        responder.is_closed()
    });
    let e = responder.send(Reply::ok()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected);
    wait_until("no connection is left", || {
        server.stats().total().connections == 0
    });
}

/// A client that half-closes after its requests still gets every deferred answer, then the
/// connection closes.
#[test]
fn a_half_closed_client_gets_its_deferred_answers() {
    let (tx, rx) = mpsc::channel::<(String, Responder)>();
    let tx = Mutex::new(tx);
    let server = server(
        |b| b.max_owed_answers(2),
        move |_| {
            let tx = tx.lock().unwrap().clone();
            svc(move |req, res| {
                let _ = tx.send((req.target().to_string(), res.defer()));
            })
        },
    );
    let s = connect(server.local_addr());
    let paths: Vec<String> = (0..6).map(|i| format!("/h{i}")).collect();
    (&s).write_all(&pipeline(&paths)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = ResponseReader::new(s);
    for p in &paths {
        let (target, responder) = rx.recv_timeout(TIMEOUT).expect("a deferred request");
        assert_eq!(&target, p);
        responder.send(Reply::ok().body(target)).unwrap();
        assert_eq!(String::from_utf8_lossy(&r.next().unwrap().body), *p);
    }
    r.expect_closed();
}

/// `Connection: close` on a request pipelined behind a deferred one: the deferred answer
/// first, then the closing one, then the end of the stream.
#[test]
fn a_close_waits_for_the_answers_owed() {
    let (tx, rx) = mpsc::channel::<Responder>();
    let tx = Mutex::new(tx);
    let server = server(
        |b| b,
        move |_| {
            let tx = tx.lock().unwrap().clone();
            svc(move |req, res| match req.path() {
                "/slow" => {
                    let _ = tx.send(res.defer());
                }
                p => res.body(p.as_bytes()),
            })
        },
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(
        b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n\
          GET /never HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let responder = rx.recv_timeout(TIMEOUT).unwrap();
    responder.send(Reply::ok().body("slow")).unwrap();
    assert_eq!(r.next().unwrap().body, b"slow");
    let last = r.next().unwrap();
    assert_eq!(last.body, b"/last");
    assert_eq!(last.header("Connection"), Some("close"));
    r.expect_closed();
}

/// A deferred answer that closes the connection drops the answers after it (already made)
/// and closes.
#[test]
fn a_deferred_answer_can_close_the_connection() {
    let (tx, rx) = mpsc::channel::<Responder>();
    let tx = Mutex::new(tx);
    let server = server(
        |b| b,
        move |_| {
            let tx = tx.lock().unwrap().clone();
            svc(move |req, res| match req.path() {
                "/slow" => {
                    let _ = tx.send(res.defer());
                }
                p => res.body(p.as_bytes()),
            })
        },
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&["/slow".to_string(), "/next".to_string()]));
    let responder = rx.recv_timeout(TIMEOUT).unwrap();
    responder
        .send(Reply::new(Status::SERVICE_UNAVAILABLE).close())
        .unwrap();
    let res = r.next().unwrap();
    assert_eq!(res.status, 503);
    assert_eq!(res.header("Connection"), Some("close"));
    r.expect_closed();
}

/// Per-loop state of the rendezvous service below: the responders waiting for a release.
#[derive(Default)]
struct Rendezvous {
    waiting: HashMap<String, Responder>,
}

impl Service for Rendezvous {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if let Some(key) = req.path().strip_prefix("/wait/") {
            self.waiting.insert(key.to_string(), res.defer());
        } else if let Some(key) = req.path().strip_prefix("/release/") {
            match self.waiting.remove(key) {
                Some(responder) => {
                    let ok = responder.send(Reply::ok().body(format!("released {key}")));
                    res.body(if ok.is_ok() { b"done" } else { b"gone" });
                }
                None => res.status(Status::NOT_FOUND).body(b""),
            }
        }
    }
}

/// The rendezvous, plus `/close/KEY`, which answers KEY's wait `503` with `Connection:
/// close`, and `/count`, which counts the times it runs.
#[derive(Default)]
struct Closer {
    rendezvous: Rendezvous,
    counted: Arc<AtomicUsize>,
}

impl Service for Closer {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if req.path() == "/count" {
            self.counted.fetch_add(1, SeqCst);
            res.body(b"counted");
        } else if let Some(key) = req.path().strip_prefix("/close/") {
            match self.rendezvous.waiting.remove(key) {
                Some(responder) => {
                    let closing = Reply::new(Status::SERVICE_UNAVAILABLE).close();
                    res.body(if responder.send(closing).is_ok() {
                        b"done"
                    } else {
                        b"gone"
                    });
                }
                None => res.status(Status::NOT_FOUND).body(b""),
            }
        } else {
            self.rendezvous.call(req, res);
        }
    }
}

/// Sends `path` until it is answered `200` (the request it refers to may not have been read
/// yet: `404` until then), and returns the body.
fn retry_until_found(r: &mut ResponseReader, path: &str) -> Vec<u8> {
    loop {
        r.send(&pipeline(&[path.to_string()]));
        let res = r.next().expect("an answer");
        if res.status == 200 {
            return res.body;
        }
        assert_eq!(res.status, 404, "{path}");
    }
}

/// A deferred answer that says `Connection: close` while an earlier one is still owed: a
/// request read after it is not run (its answer could never be sent; a client would take it
/// for one never made, and might send it again), the owed answers go out in order, then the
/// connection closes.
#[test]
fn requests_after_a_deferred_close_are_not_run() {
    let counted = Arc::new(AtomicUsize::new(0));
    let for_loops = Arc::clone(&counted);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| {
            HttpServer::new(Closer {
                counted: Arc::clone(&for_loops),
                ..Closer::default()
            })
        })
        .unwrap();
    let addr = server.local_addr();
    let mut client = ResponseReader::new(connect(addr));
    client.send(&pipeline(&["/wait/a".to_string(), "/wait/b".to_string()]));
    let mut releaser = ResponseReader::new(connect(addr));
    // b's answer, which closes, is given (at the end of that loop turn) while a's is owed.
    assert_eq!(retry_until_found(&mut releaser, "/close/b"), b"done");
    // Then a request on the client's connection, read in a later turn.
    let count = pipeline(&["/count".to_string()]);
    let before = server.stats().total().bytes_in;
    client.send(&count);
    wait_until("the server read /count", || {
        server.stats().total().bytes_in >= before + count.len() as u64
    });
    assert_eq!(retry_until_found(&mut releaser, "/release/a"), b"done");
    let a = client.next().expect("a's answer");
    assert_eq!((a.status, &a.body[..]), (200, &b"released a"[..]));
    let b = client.next().expect("b's answer");
    assert_eq!(b.status, 503);
    assert_eq!(b.header("Connection"), Some("close"));
    client.expect_closed();
    assert_eq!(counted.load(SeqCst), 0, "a request after the close was run");
}

/// One connection's request is answered from another connection's callback on the same
/// loop: the answer is a task for the end of the loop's turn, not a wake-up.
#[test]
fn an_answer_from_another_connections_callback() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(|_| HttpServer::new(Rendezvous::default()))
        .unwrap();
    let addr = server.local_addr();
    let mut waiter = ResponseReader::new(connect(addr));
    waiter.send(&pipeline(&["/wait/k1".to_string()]));
    let mut releaser = ResponseReader::new(connect(addr));
    // The wait request may not have been read yet: retry the release until it finds it.
    let wakes_before = server.stats().total().eventfd_writes;
    loop {
        releaser.send(&pipeline(&["/release/k1".to_string()]));
        let res = releaser.next().unwrap();
        if res.status == 200 {
            assert_eq!(res.body, b"done");
            break;
        }
        assert_eq!(res.status, 404);
    }
    assert_eq!(waiter.next().unwrap().body, b"released k1");
    assert_eq!(
        server.stats().total().eventfd_writes,
        wakes_before,
        "a same-loop answer woke the loop"
    );
}

/// `spawn` without a worker pool answers 500, and says so in the log.
#[test]
fn spawn_without_a_worker_pool_answers_500() {
    let server = server(
        |b| b,
        |_| svc(|_req, res| res.spawn(|| Reply::ok().body("never"))),
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&["/".to_string()]));
    assert_eq!(r.next().unwrap().status, 500);
}

/// A job that panics on the worker answers 500; the pool and the connection go on.
#[test]
fn a_panicking_job_answers_500() {
    let server = server(
        |b| b.workers(1),
        |_| {
            svc(|req, res| {
                let boom = req.path() == "/boom";
                res.spawn(move || {
                    assert!(!boom, "the job fails (on purpose)");
                    Reply::ok().body("fine")
                })
            })
        },
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&["/boom".to_string(), "/ok".to_string()]));
    assert_eq!(r.next().unwrap().status, 500);
    let ok = r.next().unwrap();
    assert_eq!((ok.status, ok.body), (200, b"fine".to_vec()));
}

/// A graceful stop waits for the answers owed (up to its deadline): the client gets its
/// answer, then the connection closes and the server exits.
#[test]
fn a_graceful_stop_waits_for_answers_owed() {
    let (tx, rx) = mpsc::channel::<Responder>();
    let tx = Mutex::new(tx);
    let (checks, failures) = checks();
    let server = server(
        |b| b.stop_timeout(TIMEOUT),
        move |_| {
            let tx = tx.lock().unwrap().clone();
            let checks = checks.clone();
            svc(move |_req, res| {
                checks.that(tx.send(res.defer()).is_ok(), "the test took the responder");
            })
        },
    );
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&["/".to_string()]));
    let responder = rx.recv_timeout(TIMEOUT).unwrap();
    let stop = server.stop_handle();
    stop.stop();
    let joined = thread::spawn(move || server.join());
    responder.send(Reply::ok().body("after the stop")).unwrap();
    assert_eq!(r.next().unwrap().body, b"after the stop");
    r.expect_closed();
    joined.join().unwrap().unwrap();
    failures.assert_none();
}

/// A service that answers each request with what a backend says: it opens an outbound
/// connection per request (on the same loop, through `LoopCx::connect`), and answers from
/// that connection's callback.
struct AskBackend {
    backend: std::net::SocketAddr,
    /// Outbound connections by link: the responder each one answers.
    asking: HashMap<u64, Responder>,
    next_link: u64,
    /// Responders whose connection is being opened, by the link it will get.
    connecting: HashMap<u64, Responder>,
    failures: util::Checks,
}

impl Service for AskBackend {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let link = self.next_link;
        self.next_link += 1;
        self.connecting.insert(link, res.defer());
        let what = req.path().to_string();
        let connect = eventide::Connect::new(self.backend).context((link, what));
        match res.loop_cx() {
            Some(mut cx) => cx.connect(connect),
            None => {
                self.failures
                    .that(false, "a response on a connection has its loop");
            }
        }
    }

    fn on_connect(&mut self, conn: &mut eventide::Conn<'_>) -> u64 {
        let Some((link, what)) = conn.take_context::<(u64, String)>() else {
            self.failures.that(false, "the connect's context");
            conn.close();
            return u64::MAX;
        };
        conn.write(format!("{what}\n").as_bytes());
        if let Some(r) = self.connecting.remove(&link) {
            self.asking.insert(link, r);
        }
        link
    }

    fn on_outbound(
        &mut self,
        conn: &mut eventide::Conn<'_>,
        link: u64,
        event: eventide::http::OutboundEvent,
    ) -> eventide::Action {
        use eventide::http::OutboundEvent;
        match event {
            OutboundEvent::Data => {
                let input = conn.input();
                let Some(end) = input.iter().position(|&b| b == b'\n') else {
                    return eventide::Action::Continue;
                };
                let line = String::from_utf8_lossy(&input[..end]).to_string();
                conn.consume(end + 1);
                if let Some(r) = self.asking.remove(&link) {
                    let ok = r.send(Reply::ok().body(format!("backend said {line}")));
                    self.failures.that(ok.is_ok(), "the client is still there");
                }
                eventide::Action::Close
            }
            OutboundEvent::ReadClosed => eventide::Action::Close,
            _ => eventide::Action::Continue,
        }
    }

    fn on_outbound_close(&mut self, _id: eventide::ConnId, link: u64, _: &eventide::CloseReason) {
        // A backend that closed without a line: the responder answers 500 as it drops.
        self.asking.remove(&link);
    }

    fn on_connect_error(&mut self, _cx: &mut eventide::LoopCx<'_>, mut e: eventide::ConnectError) {
        if let Some((link, _)) = e.take_context::<(u64, String)>() {
            if let Some(r) = self.connecting.remove(&link) {
                let _ = r.send(Reply::new(Status::BAD_GATEWAY));
            }
        }
    }
}

#[test]
fn an_answer_from_an_outbound_connections_callback() {
    use std::io::{BufRead, BufReader};
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    thread::spawn(move || {
        for s in backend.incoming() {
            let Ok(s) = s else { return };
            thread::spawn(move || {
                let mut line = String::new();
                if BufReader::new(&s).read_line(&mut line).is_ok() {
                    let _ = (&s).write_all(format!("pong {}", line).as_bytes());
                }
            });
        }
    });
    let (checks, failures) = checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| {
            HttpServer::new(AskBackend {
                backend: backend_addr,
                asking: HashMap::new(),
                next_link: 0,
                connecting: HashMap::new(),
                failures: checks.clone(),
            })
        })
        .unwrap();
    let mut r = ResponseReader::new(connect(server.local_addr()));
    let paths: Vec<String> = (0..8).map(|i| format!("/q{i}")).collect();
    r.send(&pipeline(&paths));
    for p in &paths {
        let res = r.next().unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(
            String::from_utf8_lossy(&res.body),
            format!("backend said pong {p}")
        );
    }
    drop(r);
    server.stop();
    server.join().unwrap();
    failures.assert_none();
}

/// The same service with its backend down: the connect error answers 502.
#[test]
fn a_connect_error_answers_from_on_connect_error() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (checks, failures) = checks();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .start(move |_| {
            HttpServer::new(AskBackend {
                backend: dead_addr,
                asking: HashMap::new(),
                next_link: 0,
                connecting: HashMap::new(),
                failures: checks.clone(),
            })
        })
        .unwrap();
    let mut r = ResponseReader::new(connect(server.local_addr()));
    r.send(&pipeline(&["/x".to_string(), "/y".to_string()]));
    assert_eq!(r.next().unwrap().status, 502);
    assert_eq!(r.next().unwrap().status, 502);
    failures.assert_none();
}
