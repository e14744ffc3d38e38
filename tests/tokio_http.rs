//! HTTP answers from futures (`Response::spawn_future`, features `tokio` and `http`):
//! pipelined answers in request order under random delays, a future dropped when its client
//! goes away, a panicking future answered 500 on a connection that stays, and 500 without a
//! runtime.

mod proto_util;
mod util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use eventide::http::{HttpServer, Reply, Request, Response};
use eventide::{Builder, Server};
use proto_util::ResponseReader;
use util::{wait_until, Rng};

/// Futures that started, and those dropped before they finished.
#[derive(Default)]
struct Probe {
    started: AtomicUsize,
    dropped_unfinished: AtomicUsize,
}

/// Lives inside a future; counts it dropped unfinished unless [`Live::finish`] ran.
struct Live(Arc<Probe>, bool);

impl Live {
    fn new(probe: &Arc<Probe>) -> Live {
        probe.started.fetch_add(1, SeqCst);
        Live(Arc::clone(probe), false)
    }

    fn finish(mut self) {
        self.1 = true;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped_unfinished.fetch_add(1, SeqCst);
        }
    }
}

/// `/sleep/MS/TAG` answers TAG after MS ms; `/hang` never answers; `/panic` panics.
fn service(probe: Arc<Probe>) -> impl FnMut(&Request<'_>, &mut Response<'_>) + Send + 'static {
    move |req, res| {
        let probe = Arc::clone(&probe);
        let mut parts = req.path().trim_start_matches('/').split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("sleep"), Some(ms), Some(tag)) => {
                let (ms, tag) = (ms.parse().unwrap_or(0), tag.to_string());
                res.spawn_future(async move {
                    let live = Live::new(&probe);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    live.finish();
                    Reply::ok().body(tag)
                });
            }
            (Some("hang"), _, _) => res.spawn_future(async move {
                let _live = Live::new(&probe);
                std::future::pending::<Reply>().await
            }),
            (Some("panic"), _, _) => res.spawn_future(async move {
                let _live = Live::new(&probe);
                tokio::task::yield_now().await;
                panic!("a future asked to panic")
            }),
            _ => res.body(b"now"),
        }
    }
}

fn start(builder: Builder) -> (Server, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = Arc::clone(&probe);
    let server = builder
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| HttpServer::new(service(Arc::clone(&p))))
        .expect("start the server");
    (server, probe)
}

fn connect(addr: SocketAddr) -> (TcpStream, ResponseReader) {
    let s = util::connect(addr);
    let reader = ResponseReader::new(s.try_clone().unwrap());
    (s, reader)
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// 32 connections × 50 pipelined requests whose futures finish after random delays, mixed
/// with answers given at once: every connection reads its answers in request order.
#[test]
fn pipelined_answers_come_in_request_order() {
    const CONNS: usize = 32;
    const PER_CONN: usize = 50;
    let (server, probe) = start(Server::builder().tokio_threads(2));
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            thread::spawn(move || {
                let mut rng = Rng::new(c as u64 + 7);
                let (mut request, mut want) = (String::new(), Vec::new());
                for i in 0..PER_CONN {
                    if i % 5 == 4 {
                        request.push_str(&get("/now"));
                        want.push((200, "now".to_string()));
                    } else {
                        let tag = format!("c{c}r{i}");
                        request.push_str(&get(&format!("/sleep/{}/{tag}", rng.range(0, 4))));
                        want.push((200, tag));
                    }
                }
                let (mut s, mut reader) = connect(addr);
                s.write_all(request.as_bytes()).unwrap();
                let got: Vec<_> = (0..PER_CONN).map(|_| reader.next_text()).collect();
                assert_eq!(got, want, "connection {c}");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    assert_eq!(probe.dropped_unfinished.load(SeqCst), 0);
    assert_eq!(probe.started.load(SeqCst), CONNS * PER_CONN * 4 / 5);
}

/// A client that resets while its answer is owed: the future that would never finish is
/// dropped and the connection is gone. (A client that only half-closes is still owed its
/// answers: the HTTP server waits for them, timeouts included, so its futures run on.)
#[test]
fn a_client_that_goes_away_drops_its_futures() {
    let (server, probe) = start(Server::builder().tokio_threads(1));
    let (mut s, reader) = connect(server.local_addr());
    s.write_all(format!("{}{}", get("/hang"), get("/now")).as_bytes())
        .unwrap();
    wait_until("the hanging future runs", || {
        probe.started.load(SeqCst) == 1
    });
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reader);
    drop(s); // SO_LINGER 0: a reset
    wait_until("the hanging future is dropped", || {
        probe.dropped_unfinished.load(SeqCst) == 1
    });
    wait_until("the connection is closed", || {
        server.stats().total().connections == 0
    });
}

/// A future that panics is answered 500; the connection stays and serves the next request.
#[test]
fn a_panicking_future_answers_500_and_the_connection_stays() {
    let (server, _probe) = start(Server::builder().tokio_threads(1));
    let (mut s, mut reader) = connect(server.local_addr());
    s.write_all(format!("{}{}", get("/panic"), get("/sleep/1/next")).as_bytes())
        .unwrap();
    assert_eq!(reader.next_text().0, 500);
    assert_eq!(reader.next_text(), (200, "next".into()));
    s.write_all(get("/now").as_bytes()).unwrap();
    assert_eq!(reader.next_text(), (200, "now".into()));
    assert_eq!(server.stats().total().connections, 1);
}

/// Without a runtime, a future's answer is 500 (and the connection goes on).
#[test]
fn without_a_runtime_the_answer_is_500() {
    let (server, probe) = start(Server::builder());
    let (mut s, mut reader) = connect(server.local_addr());
    s.write_all(format!("{}{}", get("/sleep/0/x"), get("/now")).as_bytes())
        .unwrap();
    assert_eq!(reader.next_text().0, 500);
    assert_eq!(reader.next_text(), (200, "now".into()));
    assert_eq!(probe.started.load(SeqCst), 0, "the future never ran");
}
