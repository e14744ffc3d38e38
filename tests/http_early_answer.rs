//! `SinkCx::defer`: a streamed request answered through the responder its sink took before
//! the body's end, over real sockets — the answer given mid-body goes out at once with
//! `Connection: close`, the sink is told, the rest of the body is dropped and the
//! connection ends; a body that ends first keeps the connection; a client that stalls
//! mid-body gets the server's 408 in the responder's place. (Through the gateway demo, whose
//! upload sink takes the responder with the first piece: `tests/gateway_stream.rs`.)

mod proto_util;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventide::http::{
    Aborted, BodySink, HttpServer, Intake, Reply, Request, Responder, Response, Service, SinkCx,
    Status, Trailers,
};
use eventide::{Builder, Server};
use proto_util::{connect, ResponseReader, TIMEOUT};

/// What the test sees of a sink: its responder (taken with the first piece), and how the
/// body ended.
enum Seen {
    Responder(Responder),
    Ended(u64),
    Aborted(Aborted),
}

struct Sink {
    tx: Sender<Seen>,
    got: u64,
    taken: bool,
}

impl BodySink for Sink {
    fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
        self.got += chunk.len() as u64;
        if !self.taken {
            self.taken = true;
            let _ = self.tx.send(Seen::Responder(cx.defer()));
        }
        Ok(())
    }

    fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        res.body(b"ignored: the responder answers"); // given already
        let _ = self.tx.send(Seen::Ended(self.got));
    }

    fn abort(self: Box<Self>, why: Aborted) {
        let _ = self.tx.send(Seen::Aborted(why));
    }
}

struct Svc(Arc<Mutex<Sender<Seen>>>);

impl Service for Svc {
    fn intake(&mut self, _req: &Request<'_>) -> Intake {
        let tx = self.0.lock().unwrap().clone();
        Intake::stream(Sink {
            tx,
            got: 0,
            taken: false,
        })
    }

    fn call(&mut self, _req: &Request<'_>, res: &mut Response<'_>) {
        res.body(b"bodiless");
    }
}

fn server(builder: Builder) -> (Server, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let server = builder
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| HttpServer::new(Svc(Arc::clone(&tx))))
        .unwrap();
    (server, rx)
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(TIMEOUT).expect("the sink reports")
}

fn responder(rx: &Receiver<Seen>) -> Responder {
    match next(rx) {
        Seen::Responder(r) => r,
        _ => panic!("expected the sink's responder"),
    }
}

/// Answered mid-body: the answer (its own header and body) goes out at once, says
/// `Connection: close`, the sink hears `Answered`, and the connection ends although the
/// client never sends the rest.
#[test]
fn an_answer_before_the_body_ends_goes_out_and_closes() {
    let (server, rx) = server(Server::builder());
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nfirst");
    let r = responder(&rx);
    r.send(
        Reply::new(Status::UNAUTHORIZED)
            .header("X-Why", "token")
            .body("no"),
    )
    .unwrap();
    let res = c.next().expect("the early answer");
    assert_eq!((res.status, &res.body[..]), (401, &b"no"[..]));
    assert_eq!(res.header("X-Why"), Some("token"));
    assert_eq!(res.header("Connection"), Some("close"));
    assert!(matches!(next(&rx), Seen::Aborted(Aborted::Answered)));
    c.send(&[b'x'; 4096]); // dropped, not parsed
    c.expect_closed();
    server.stop();
}

/// The body ends before the responder answers: `end` is called (what it writes is
/// ignored), the answer keeps the connection, and the next request is served on it.
#[test]
fn a_body_that_ends_first_keeps_the_connection() {
    let (server, rx) = server(Server::builder());
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    let r = responder(&rx);
    c.send(b"56789");
    assert!(matches!(next(&rx), Seen::Ended(10)));
    r.send(Reply::new(Status::CREATED).body("stored")).unwrap();
    let res = c.next().expect("the answer");
    assert_eq!((res.status, &res.body[..]), (201, &b"stored"[..]));
    assert_eq!(res.header("Connection"), None);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next_text(), (200, "bodiless".to_string()));
    server.stop();
}

/// A client that stalls mid-body with the responder unused gets the server's 408 in its
/// place; the responder's late answer is dropped.
#[test]
fn a_stalled_body_gets_408_in_the_responders_place() {
    let period = Duration::from_millis(250);
    let (server, rx) = server(Server::builder().idle_timeout(period).read_timeout(period));
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"PUT /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    let r = responder(&rx);
    let res = c.next().expect("a 408");
    assert_eq!(res.status, 408, "{res:?}");
    assert_eq!(res.header("Connection"), Some("close"));
    c.expect_closed();
    assert!(matches!(next(&rx), Seen::Aborted(Aborted::TimedOut)));
    let _ = r.send(Reply::ok()); // too late: dropped (or NotConnected)
    server.stop();
}
