//! A small JSON API on [`eventide::http`]: JSON in and out with `serde_json`, one route
//! answered from the worker pool (deferred), one streamed download.
//!
//! ```text
//! cargo run --release --example api --features http -- --addr 127.0.0.1:8080 --loops 2 --workers 4
//! curl -s -XPOST -d '{"name":"lamp","price_cents":1999}' http://127.0.0.1:8080/items
//! curl -s 'http://127.0.0.1:8080/primes?below=1000000'
//! curl -s 'http://127.0.0.1:8080/download?bytes=1073741824' | sha256sum
//! head -c 1073741824 /dev/zero | curl -s -T - -H 'Transfer-Encoding: chunked' http://127.0.0.1:8080/upload
//! ```
//!
//! * `POST /items` takes `{"name": string, "price_cents": integer}` and answers `201` with
//!   the item and its id (`400` with the parser's message for bad JSON);
//! * `GET /primes?below=N` counts primes below `N` (at most 10^8) on the worker pool — the
//!   loop thread goes on serving other requests meanwhile, and answers keep their order;
//! * `GET /download?bytes=N` streams `N` bytes (`Content-Length`; add `&chunked` for
//!   `Transfer-Encoding: chunked`) of a fixed pattern — byte `i` is `i % 251` — produced as
//!   the client reads, so a download of any size takes no memory;
//! * `POST /upload` (or `PUT`) takes a body of any size, `Content-Length` or chunked, as it
//!   arrives — streamed into a digest, never held — and answers
//!   `{"bytes": N, "hash64": "16 hex digits"}` (the digest of `api/hash.rs`);
//! * anything else: a JSON `404`.
//!
//! `--workers N` (default 2) sizes the worker pool.

mod common;
#[path = "api/hash.rs"]
mod hash;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::Args;
use eventide::http::{
    BodySink, HttpServer, Intake, Reply, Request, Response, SinkCx, Status, Trailers,
};
use eventide::Server;
use hash::WordHash;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewItem {
    name: String,
    price_cents: u64,
}

#[derive(Serialize)]
struct Item {
    id: u64,
    name: String,
    price_cents: u64,
}

/// The service of one loop; ids are shared by every loop.
struct Api {
    next_id: Arc<AtomicU64>,
    /// One piece of the download pattern, from any offset: `PIECE + 251` bytes.
    pattern: Arc<[u8]>,
}

/// The size of a download's pieces.
const PIECE: usize = 64 * 1024;

impl Api {
    fn create(&self, req: &Request<'_>, res: &mut Response<'_>) {
        match serde_json::from_slice::<NewItem>(req.body()) {
            Ok(new) => {
                let item = Item {
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    name: new.name,
                    price_cents: new.price_cents,
                };
                json(res, Status::CREATED, &item);
            }
            Err(e) => error(res, Status::BAD_REQUEST, &e.to_string()),
        }
    }

    fn primes(&self, req: &Request<'_>, res: &mut Response<'_>) {
        let Some(below) = param(req, "below").and_then(|v| v.parse::<u64>().ok()) else {
            return error(res, Status::BAD_REQUEST, "?below=N is required");
        };
        if below > 100_000_000 {
            return error(res, Status::BAD_REQUEST, "below must be at most 10^8");
        }
        // Blocking work goes to the pool; the answer comes back through a responder.
        res.spawn(move || {
            let count = count_primes(below);
            let body = serde_json::json!({ "below": below, "primes": count }).to_string();
            Reply::ok().content_type("application/json").body(body)
        });
    }

    fn download(&self, req: &Request<'_>, res: &mut Response<'_>) {
        let Some(total) = param(req, "bytes").and_then(|v| v.parse::<u64>().ok()) else {
            return error(res, Status::BAD_REQUEST, "?bytes=N is required");
        };
        let chunked = param(req, "chunked").is_some();
        let pattern = Arc::clone(&self.pattern);
        let mut at = 0u64;
        res.content_type("application/octet-stream").stream(
            (!chunked).then_some(total),
            move |buf: &mut Vec<u8>| {
                let n = (total - at).min(PIECE as u64) as usize;
                let from = (at % 251) as usize;
                buf.extend_from_slice(&pattern[from..from + n]);
                at += n as u64;
                Ok(at < total)
            },
        );
    }
}

/// The sink of one `POST /upload`: each piece goes into the digest as it arrives.
struct Upload(WordHash);

impl BodySink for Upload {
    fn data(&mut self, chunk: &[u8], _cx: &mut SinkCx<'_>) -> Result<(), Status> {
        self.0.update(chunk);
        Ok(())
    }

    fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let body = serde_json::json!({
            "bytes": self.0.len(),
            "hash64": format!("{:016x}", self.0.finish()),
        });
        json(res, Status::OK, &body);
    }
}

impl eventide::http::Service for Api {
    fn intake(&mut self, req: &Request<'_>) -> Intake {
        match (req.method(), req.path()) {
            ("POST" | "PUT", "/upload") => Intake::stream(Upload(WordHash::default())),
            _ => Intake::Buffer,
        }
    }

    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        match (req.method(), req.path()) {
            ("POST", "/items") => self.create(req, res),
            ("GET", "/primes") => self.primes(req, res),
            ("GET", "/download") => self.download(req, res),
            _ => error(res, Status::NOT_FOUND, "no such route"),
        }
    }
}

fn json(res: &mut Response<'_>, status: Status, value: &impl Serialize) {
    res.status(status)
        .content_type("application/json")
        .body_with(|buf| serde_json::to_writer(buf, value).expect("serialising to memory"));
}

fn error(res: &mut Response<'_>, status: Status, message: &str) {
    json(res, status, &serde_json::json!({ "error": message }));
}

/// The value of `name` in the query (`name=value`, or `name` alone for `""`).
fn param<'r>(req: &Request<'r>, name: &str) -> Option<&'r str> {
    req.query()?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k == name).then_some(v),
            None => (pair == name).then_some(""),
        })
}

/// Primes below `n`, by a sieve (the blocking work of the example).
fn count_primes(n: u64) -> u64 {
    let n = n as usize;
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if !composite[i] {
            count += 1;
            let mut j = i * i;
            while j < n {
                composite[j] = true;
                j += i;
            }
        }
    }
    count
}

fn main() {
    let args = Args::parse("127.0.0.1:8080", &["workers"], &[]);
    let workers: usize = args.parsed("workers", 2);
    let signals = common::termination_signals();
    let next_id = Arc::new(AtomicU64::new(1));
    let pattern: Arc<[u8]> = (0..PIECE + 251).map(|i| (i % 251) as u8).collect();
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .workers(workers.max(1))
            .start(move |_| {
                HttpServer::new(Api {
                    next_id: Arc::clone(&next_id),
                    pattern: Arc::clone(&pattern),
                })
            }),
        "starting the API server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
