//! Streamed request bodies under injected faults (feature `faults`): short reads cut the
//! bodies — chunked, with extensions and trailers, or length-delimited — at arbitrary bytes,
//! and the sinks pause every 64 KiB and are resumed from another thread. Pipelined on each
//! connection, every upload's answer (its length and digest, computed by the sink) matches
//! what the client sent, in order, or the connection ends of an injected fatal fault the
//! server reports as such.

#![cfg(all(feature = "http", feature = "faults"))]

mod faults_support;
#[path = "../examples/api/hash.rs"]
mod hash;
mod util;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use eventide::http::{
    BodySink, HttpServer, Intake, Request, Response, Service, SinkCx, Status, Trailers,
};
use eventide::{FaultCounts, Server};
use faults_support::{mixes, recorded, seeds, verdict, Answer, Case, Outcome, AT_ONCE};
use hash::WordHash;
use util::Rng;

/// The threads that resume the sinks (joined before the descriptors are counted: each
/// holds a handle, and so the loop's shared state, until it ends).
type Resumers = Arc<Mutex<Vec<thread::JoinHandle<()>>>>;

/// A sink that digests its body and pauses every 64 KiB, resumed from a thread of its own.
struct Digest {
    hash: WordHash,
    next_pause: u64,
    resumers: Resumers,
}

impl BodySink for Digest {
    fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
        self.hash.update(chunk);
        if cx.received() >= self.next_pause {
            self.next_pause = cx.received() + 64 * 1024;
            let resume = cx.pause();
            let t = thread::spawn(move || {
                let _ = resume.resume();
            });
            self.resumers.lock().unwrap().push(t);
        }
        Ok(())
    }

    fn end(self: Box<Self>, trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let n = trailers.iter().count();
        res.body(format!("{} {:016x} {n}", self.hash.len(), self.hash.finish()).as_bytes());
    }
}

struct Uploads(Resumers);

impl Service for Uploads {
    fn intake(&mut self, _req: &Request<'_>) -> Intake {
        Intake::stream(Digest {
            hash: WordHash::default(),
            next_pause: 64 * 1024,
            resumers: Arc::clone(&self.0),
        })
    }

    fn call(&mut self, _req: &Request<'_>, res: &mut Response<'_>) {
        res.body(b"no body");
    }
}

/// One upload: its request bytes, the answer body it must get, and its body's length.
fn upload(rng: &mut Rng) -> (Vec<u8>, String, usize) {
    let len = rng.log_uniform(1, 1_000_000) as usize;
    let body = rng.bytes(len);
    let mut h = WordHash::default();
    h.update(&body);
    let mut req = b"POST /up HTTP/1.1\r\nHost: t\r\n".to_vec();
    let trailers = if rng.range(0, 1) == 0 {
        req.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
        req.extend_from_slice(&body);
        0
    } else {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        let mut at = 0;
        while at < len {
            let n = (rng.log_uniform(1, 70_000) as usize).min(len - at);
            let ext = if rng.range(0, 3) == 0 {
                ";ext=\"a b\""
            } else {
                ""
            };
            req.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
            req.extend_from_slice(&body[at..at + n]);
            req.extend_from_slice(b"\r\n");
            at += n;
        }
        req.extend_from_slice(b"0\r\nX-Len: 1\r\nX-Sum: 2\r\n\r\n");
        2
    };
    (req, format!("{len} {:016x} {trailers}", h.finish()), len)
}

#[test]
fn streamed_uploads_under_faults() {
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("http uploads {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let resumers = Resumers::default();
            let shared = Arc::clone(&resumers);
            let (factory, log) = recorded(move |_| HttpServer::new(Uploads(Arc::clone(&shared))));
            let server = Server::builder()
                .bind("127.0.0.1:0")
                .loops(2)
                .accept_backoff(Duration::from_millis(2))
                .faults(cfg)
                .start(factory)
                .unwrap();
            let addr = server.local_addr();
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    let mut rng = Rng::new(cfg.seed() * 53 + c);
                    let uploads: Vec<_> = (0..40).map(|_| upload(&mut rng)).collect();
                    thread::spawn(move || client(addr, uploads))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            for t in std::mem::take(&mut *resumers.lock().unwrap()) {
                t.join().expect("a resuming thread");
            }
            (faults, verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

fn stop(server: Server, what: &str) -> FaultCounts {
    util::wait_until("the server's connections close", || {
        server.stats().total().connections == 0
    });
    let stats = server.stats();
    assert_eq!(stats.total().panics, 0, "{what}: a callback panicked");
    server.stop();
    server.join().expect("the loops exit cleanly");
    stats.faults()
}

/// Pipelines the uploads and checks each answer, in order; `got` counts the body bytes of
/// the uploads answered right.
fn client(addr: std::net::SocketAddr, uploads: Vec<(Vec<u8>, String, usize)>) -> Outcome {
    let requests: Vec<u8> = uploads.iter().flat_map(|u| u.0.clone()).collect();
    let answers: Vec<Answer> = uploads
        .iter()
        .map(|(_, answer, body_len)| Answer::worth(answer.as_bytes(), *body_len))
        .collect();
    faults_support::pipeline_http(addr, requests, AT_ONCE, &answers)
}
