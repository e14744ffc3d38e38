//! The HTTP answers that leave the plain path — file bodies (`sendfile`), streamed bodies,
//! bodies pushed from another thread and answers from the worker pool — under injected faults (feature `faults`): pipelined on
//! each connection, every body arrives byte-exact and in order, or the connection ends of an
//! injected fatal fault the server reports as such.

#![cfg(all(feature = "http", feature = "faults"))]

mod faults_support;
mod util;

use std::fs::File;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use eventide::http::files::FileBody;
use eventide::http::{BodyWriter, Flow, HttpServer, Reply, Request, Response};
use eventide::{FaultCounts, Server};
use faults_support::{mixes, recorded, seeds, verdict, Answer, Case, Outcome, AT_ONCE};
use util::Rng;

/// The bytes every answer is a slice of.
const DATA_LEN: usize = 2 << 20;

/// `/{kind}/{offset}/{len}`: `f` a file range, `s` a stream, `p` a body pushed from a
/// thread, `d` an answer from the pool.
fn answer(data: &Arc<Vec<u8>>, file: &Arc<File>, req: &Request<'_>, res: &mut Response<'_>) {
    let mut parts = req.path().trim_start_matches('/').split('/');
    let kind = parts.next().unwrap_or("");
    let off: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let len: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    match kind {
        "f" => match file.try_clone() {
            Ok(f) => res.file(FileBody::new(f, off as u64, len as u64)),
            Err(_) => res
                .status(eventide::http::Status::INTERNAL_SERVER_ERROR)
                .body(b""),
        },
        "s" => {
            let data = Arc::clone(data);
            let (mut at, end) = (off, off + len);
            res.stream(Some(len as u64), move |buf: &mut Vec<u8>| {
                let n = (end - at).min(20_000);
                buf.extend_from_slice(&data[at..at + n]);
                at += n;
                Ok(at < end)
            });
        }
        "p" => {
            let body = res.push_body(Some(len as u64));
            let data = Arc::clone(data);
            thread::spawn(move || push(body, &data[off..off + len]));
        }
        _ => {
            let data = Arc::clone(data);
            res.spawn(move || Reply::ok().body(data[off..off + len].to_vec()));
        }
    }
}

/// Pushes `bytes` in pieces, waiting for the client to drain whenever it is full; gives up
/// when the connection has gone (an injected fault closed it).
fn push(mut body: BodyWriter, bytes: &[u8]) {
    let (wake_tx, wake) = std::sync::mpsc::channel();
    for piece in bytes.chunks(20_000) {
        match body.push(piece) {
            Ok(Flow::Open) => {}
            Ok(Flow::Full) => {
                let w = wake_tx.clone();
                body.on_ready(move || {
                    let _ = w.send(());
                });
                if wake.recv_timeout(Duration::from_secs(60)).is_err() {
                    return; // dropped unfinished: the connection is cut
                }
            }
            Err(_) => return,
        }
    }
    let _ = body.finish();
}

#[test]
fn files_streams_and_deferred_answers_under_faults() {
    let dir = std::env::temp_dir().join(format!("eventide-http-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = Arc::new(Rng::new(7).bytes(DATA_LEN));
    let path = dir.join("data.bin");
    std::fs::write(&path, &*data).unwrap();
    let file = Arc::new(File::open(&path).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("http files, streams, deferred {cfg}");
        let case = Case::new(&what);
        let (data, file) = (Arc::clone(&data), Arc::clone(&file));
        let (faults, bytes) = case.run(move || {
            let (d, f) = (Arc::clone(&data), Arc::clone(&file));
            let (factory, log) = recorded(move |_| {
                let (d, f) = (Arc::clone(&d), Arc::clone(&f));
                HttpServer::new(move |req: &Request<'_>, res: &mut Response<'_>| {
                    answer(&d, &f, req, res)
                })
            });
            let server = Server::builder()
                .bind("127.0.0.1:0")
                .loops(2)
                .workers(2)
                .accept_backoff(Duration::from_millis(2))
                .faults(cfg)
                .start(factory)
                .unwrap();
            let addr = server.local_addr();
            let clients: Vec<_> = (0..4)
                .map(|c| {
                    let mut rng = Rng::new(cfg.seed() * 41 + c);
                    let asks: Vec<(char, usize, usize)> = (0..60)
                        .map(|_| {
                            let len = rng.log_uniform(1, 600_001) as usize - 1;
                            let off = rng.range(0, (DATA_LEN - len) as u64) as usize;
                            (['f', 's', 'p', 'd'][rng.range(0, 3) as usize], off, len)
                        })
                        .collect();
                    let data = Arc::clone(&data);
                    thread::spawn(move || client(addr, &asks, &data))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
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

/// Pipelines one GET per ask and checks each body against its slice of `data`, in order.
fn client(addr: std::net::SocketAddr, asks: &[(char, usize, usize)], data: &[u8]) -> Outcome {
    let requests: String = asks
        .iter()
        .map(|(k, off, len)| format!("GET /{k}/{off}/{len} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    let answers: Vec<Answer> = asks
        .iter()
        .map(|&(_, off, len)| Answer::body(&data[off..off + len]))
        .collect();
    faults_support::pipeline_http(addr, requests.into_bytes(), AT_ONCE, &answers)
}
