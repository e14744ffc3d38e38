//! HTTP/1.1 reverse proxy: every request goes to one of the `--upstream` servers, in turn
//! (round-robin), over a keep-alive connection from the loop's pool for that upstream; the
//! answer comes back to the client in its place in the connection's pipeline.
//!
//! ```text
//! cargo run --release --features http --example http -- --addr 127.0.0.1:8080 &
//! cargo run --release --features http --example gateway -- \
//!     --addr 127.0.0.1:8000 --upstream 127.0.0.1:8080
//! curl http://127.0.0.1:8000/plaintext
//! ```
//!
//! What it does to a request: hop-by-hop header fields (`Connection`, `Keep-Alive`,
//! `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and those `Connection` names)
//! are removed both ways, the client's address is appended to `X-Forwarded-For`, and the
//! body goes upstream as it came: with its `Content-Length`, or chunked again (a request's
//! trailer fields are not forwarded). An upstream that cannot be reached, refuses, resets or
//! breaks HTTP before its answer's head is in gives the client `502 Bad Gateway`; one silent for
//! `--upstream-timeout` seconds (default 10) gives `504 Gateway Timeout`. A failure after
//! the head cannot be told to the client any more: its connection closes, so it sees a body
//! that ended early, never a wrong one.
//!
//! Response bodies are streamed: each piece the upstream sends is pushed to the client
//! ([`BodyWriter::push_local`], straight into the client's output on the same loop) as it
//! arrives, with the upstream's `Content-Length` (kept for `HEAD` too) or chunked. While the
//! client's output is past its high-water mark the gateway stops reading that upstream
//! connection, and resumes when the client has drained, so a download of any size costs the
//! gateway a few hundred KiB. Request bodies are streamed the other way (`upload.rs`): the
//! client is paused while the upstream connection's output is full. `--max-body BYTES`
//! bounds a request body (default: no limit; above it, 413).
//!
//! An upstream may answer before the request's body is all in (a `413` or `401` after the
//! head, and then perhaps close): the upload's sink holds the request's responder from its
//! first piece ([`SinkCx::defer`](eventide::http::SinkCx::defer)), so the answer goes to
//! the client as it comes, whole. From its head on, no more of the body goes upstream (as
//! nginx does with `proxy_request_buffering off`: it stops sending once the response head
//! is in); the client's connection closes after the answer (`Connection: close`, the rest
//! of its body read and dropped until then), and the upstream connection, whose request
//! was cut short, is closed rather than pooled — one is pooled only when the whole request
//! went out and the whole answer came back. So is an upstream that answers and then resets
//! the connection while the gateway is still writing to it: the failed send does not lose
//! the answer the kernel received before the reset (the loop reads it before it closes the
//! connection), so the client gets it whole.
//!
//! Each loop keeps at most `--max-idle` idle connections per upstream (default 128, above the
//! concurrency of a busy client pool, so a steady load reuses connections instead of churning
//! them; nginx's `keepalive` is set the same in the benchmark); one
//! returned to a full pool is closed.
//!
//! Options: `--upstream HOST:PORT` (required, repeatable), `--upstream-timeout SECS`,
//! `--max-body BYTES`, `--max-idle N`.

mod common;
#[path = "gateway/parse.rs"]
mod parse;
#[path = "gateway/pool.rs"]
mod pool;
#[path = "gateway/relay.rs"]
mod relay;
#[path = "gateway/upload.rs"]
mod upload;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::Args;
use eventide::http::{
    BodyResume, BodyWriter, HttpServer, Intake, OutboundEvent, Request, Responder, Response,
    Service,
};
use eventide::{Action, CloseReason, Conn, ConnHandle, ConnId, ConnectError, LoopCx, Server};
use parse::ResponseReader;
use slab::Slab;

fn main() {
    let args = Args::parse(
        "127.0.0.1:8000",
        &["upstream", "upstream-timeout", "max-body", "max-idle"],
        &[],
    );
    let upstreams = upstreams(&args);
    let timeout = Duration::from_secs(args.parsed("upstream-timeout", 10u64).max(1));
    let max_body: u64 = args.parsed("max-body", u64::MAX);
    let max_idle: usize = args.parsed("max-idle", 128);
    let signals = common::termination_signals();
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .start(move |_| {
                let gateway = Gateway::new(upstreams.clone(), timeout, max_idle, max_body);
                HttpServer::new(Shared(Arc::new(Mutex::new(gateway))))
            }),
        "starting the gateway",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}

/// Every `--upstream` given (at least one), resolved.
fn upstreams(args: &Args) -> Vec<SocketAddr> {
    let given = args.values("upstream");
    if given.is_empty() {
        args.fail("--upstream is required");
    }
    given
        .iter()
        .map(|u| match u.to_socket_addrs() {
            Ok(mut addrs) => addrs
                .next()
                .unwrap_or_else(|| args.fail(&format!("--upstream {u}: no address"))),
            Err(e) => args.fail(&format!("--upstream {u}: {e}")),
        })
        .collect()
}

/// One loop's gateway, shared by its service and the sinks of the uploads in progress (all
/// on the loop's thread: the lock is never contended, it only makes the sharing `Send`).
struct Shared(Arc<Mutex<Gateway>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Gateway> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One loop's side of the gateway: its upstream connections and the requests on them.
struct Gateway {
    upstreams: Vec<SocketAddr>,
    /// The upstream the next request goes to.
    next: usize,
    timeout: Duration,
    /// The most idle connections kept per upstream.
    max_idle: usize,
    /// The largest request body relayed.
    max_body: u64,
    /// Numbers the exchanges, so an upload's sink knows its own from a later one on the
    /// same link.
    serial: u64,
    /// Each upstream connection (open or opening), by link.
    links: Slab<Link>,
    /// Per upstream: the links of open connections waiting for a request.
    idle: Vec<Vec<usize>>,
    /// Per upstream: its last connect failed (logged once, not once per request).
    down: Vec<bool>,
}

/// One upstream connection.
struct Link {
    upstream: usize,
    /// `None` while it is being opened.
    id: Option<ConnId>,
    /// Its handle, once open (to resume or close it from the client's side).
    handle: Option<ConnHandle>,
    /// Its output is past the high-water mark: an upload into it waits.
    full: bool,
    /// The request it carries, if any.
    exchange: Option<Exchange>,
}

/// A request on its way upstream and its answer coming back.
struct Exchange {
    serial: u64,
    /// A request body still streaming upstream (see `upload.rs`).
    upload: Option<Upload>,
    /// The client's answer, until the upstream's head is in ...
    responder: Option<Responder>,
    /// ... and then its body, pushed as it arrives.
    body: Option<BodyWriter>,
    /// The request's bytes: until the connection is open to take them, or, sent on a pooled
    /// connection, kept for one retry (see [`Exchange::may_retry`]); else empty.
    request: Vec<u8>,
    /// Whether it may be sent twice (RFC 9110 §9.2.2) and is small enough to keep.
    idempotent: bool,
    /// Sent on a pooled connection (which the upstream may have closed meanwhile).
    reused: bool,
    reader: ResponseReader,
}

/// A streamed request body still on its way upstream (until then, its connection cannot
/// carry another request).
#[derive(Default)]
struct Upload {
    /// The client's connection is paused until the upstream takes more.
    resume: Option<BodyResume>,
}

/// The largest request kept for a retry.
const MAX_RETRIED: usize = 64 * 1024;

impl Exchange {
    /// The request again, on a fresh connection, when a pooled one was closed by the
    /// upstream before any answer came (it closed an idle keep-alive connection as the
    /// request went out: the request was not processed). Only idempotent requests, once.
    fn may_retry(&self) -> bool {
        self.reused && self.idempotent && !self.reader.started() && !self.request.is_empty()
    }
}

impl Gateway {
    fn new(
        upstreams: Vec<SocketAddr>,
        timeout: Duration,
        max_idle: usize,
        max_body: u64,
    ) -> Gateway {
        let idle = vec![Vec::new(); upstreams.len()];
        let down = vec![false; upstreams.len()];
        Gateway {
            down,
            upstreams,
            next: 0,
            timeout,
            max_idle,
            max_body,
            serial: 0,
            links: Slab::new(),
            idle,
        }
    }

    /// The upstream the next request goes to (round-robin).
    fn pick(&mut self) -> usize {
        let upstream = self.next;
        self.next = (self.next + 1) % self.upstreams.len();
        upstream
    }

    /// A new exchange for a request (`head_only`: a `HEAD`), its head and body in `request`.
    fn exchange(&mut self, request: Vec<u8>, idempotent: bool, head_only: bool) -> Exchange {
        self.serial += 1;
        Exchange {
            serial: self.serial,
            upload: None,
            responder: None,
            body: None,
            request,
            idempotent,
            reused: false,
            reader: ResponseReader::new(head_only),
        }
    }

    /// A client's request: to the next upstream, its answer given later (deferred).
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let upstream = self.pick();
        let request = parse::forward(req, res.peer_addr(), &self.upstreams[upstream].to_string());
        let idempotent = matches!(req.method(), "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
            && request.len() <= MAX_RETRIED;
        let mut exchange = self.exchange(request, idempotent, req.method() == "HEAD");
        exchange.responder = Some(res.defer());
        match res.loop_cx() {
            Some(mut cx) => drop(self.dispatch(&mut cx, upstream, exchange)),
            None => drop(exchange), // no loop (a test's memory sink): the responder answers 500
        }
    }
}

impl Service for Shared {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.lock().call(req, res);
    }

    fn intake(&mut self, req: &Request<'_>) -> Intake {
        upload::intake(&self.0, req)
    }

    fn on_connect(&mut self, conn: &mut Conn<'_>) -> u64 {
        self.lock().on_connect(conn)
    }

    fn on_outbound(&mut self, conn: &mut Conn<'_>, link: u64, event: OutboundEvent) -> Action {
        self.lock().on_outbound(conn, link, event)
    }

    fn on_outbound_close(&mut self, id: ConnId, link: u64, reason: &CloseReason) {
        self.lock().on_outbound_close(id, link, reason);
    }

    fn on_connect_error(&mut self, cx: &mut LoopCx<'_>, error: ConnectError) {
        self.lock().on_connect_error(cx, error);
    }
}
