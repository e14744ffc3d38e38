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
//! body goes upstream with a `Content-Length` (a chunked upload is decoded by the codec
//! first). An upstream that cannot be reached, refuses, resets or breaks HTTP before its
//! answer's head is in gives the client `502 Bad Gateway`; one silent for
//! `--upstream-timeout` seconds (default 10) gives `504 Gateway Timeout`. A failure after
//! the head cannot be told to the client any more: its connection closes, so it sees a body
//! that ended early, never a wrong one.
//!
//! Bodies are relayed whole, each bounded by `--max-body` bytes (default 128 MiB; a request
//! above it gets 413, a response above it 502): the request body is collected by the codec
//! and sent on, the response body collected from the upstream and sent back. Streaming them
//! piece by piece with back-pressure needs a push-fed body in `eventide::http`, not there yet.
//!
//! Options: `--upstream HOST:PORT` (required, repeatable), `--upstream-timeout SECS`,
//! `--max-body BYTES`.

mod common;
#[path = "gateway/parse.rs"]
mod parse;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use common::Args;
use eventide::http::{HttpServer, OutboundEvent, Request, Responder, Response, Service, Status};
use eventide::{
    Action, CloseReason, Conn, ConnId, Connect, ConnectError, InboundPolicy, LoopCx, Server,
};
use parse::{Read, ResponseReader};
use slab::Slab;

fn main() {
    let args = Args::parse(
        "127.0.0.1:8000",
        &["upstream", "upstream-timeout", "max-body"],
        &[],
    );
    let upstreams = upstreams(&args);
    let timeout = Duration::from_secs(args.parsed("upstream-timeout", 10u64).max(1));
    let max_body: usize = args.parsed("max-body", 128 << 20);
    let signals = common::termination_signals();
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            // One request may buffer its head, its body and (chunked) its framing.
            .inbound_limit(
                max_body.saturating_mul(2).saturating_add(1 << 20),
                InboundPolicy::Close,
            )
            .start(move |_| {
                let gateway = Gateway::new(upstreams.clone(), timeout, max_body);
                HttpServer::new(gateway).max_body_size(max_body)
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

/// One loop's side of the gateway: its upstream connections and the requests on them.
struct Gateway {
    upstreams: Vec<SocketAddr>,
    /// The upstream the next request goes to.
    next: usize,
    timeout: Duration,
    max_body: usize,
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
    /// The request it carries, if any.
    exchange: Option<Exchange>,
}

/// A request on its way upstream and its answer coming back.
struct Exchange {
    responder: Responder,
    /// The request's bytes: until the connection is open to take them, or, sent on a pooled
    /// connection, kept for one retry (see [`Exchange::may_retry`]); else empty.
    request: Vec<u8>,
    /// Whether it may be sent twice (RFC 9110 §9.2.2) and is small enough to keep.
    idempotent: bool,
    /// Sent on a pooled connection (which the upstream may have closed meanwhile).
    reused: bool,
    reader: ResponseReader,
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
    fn new(upstreams: Vec<SocketAddr>, timeout: Duration, max_body: usize) -> Gateway {
        let idle = vec![Vec::new(); upstreams.len()];
        let down = vec![false; upstreams.len()];
        Gateway {
            down,
            upstreams,
            next: 0,
            timeout,
            max_body,
            links: Slab::new(),
            idle,
        }
    }

    /// Sends `ex` on an idle connection to `upstream`, or on a new one.
    fn dispatch(&mut self, cx: &mut LoopCx<'_>, upstream: usize, mut ex: Exchange) {
        while let Some(link) = self.idle[upstream].pop() {
            let Some(id) = self.links[link].id else {
                continue;
            };
            if cx.write_to(id, &ex.request).is_ok() {
                ex.reused = true;
                if !ex.idempotent {
                    ex.request = Vec::new();
                }
                self.links[link].exchange = Some(ex);
                return;
            }
        }
        self.connect(cx, upstream, ex);
    }

    /// Sends `ex` on a new connection to `upstream`.
    fn connect(&mut self, cx: &mut LoopCx<'_>, upstream: usize, ex: Exchange) {
        let link = self.links.insert(Link {
            upstream,
            id: None,
            exchange: Some(ex),
        });
        cx.connect(
            Connect::new(self.upstreams[upstream])
                .timeout(self.timeout)
                .context(link),
        );
    }

    /// The upstream's bytes on `link`'s connection: the answer goes to the client once whole.
    fn on_data(&mut self, conn: &mut Conn<'_>, link: usize) -> Action {
        let Some(ex) = self.links[link].exchange.as_mut() else {
            log::warn!("gateway: bytes from an upstream with no request on it; closing");
            return Action::Close;
        };
        match ex.reader.read(conn.input()) {
            Read::More(n) => {
                conn.consume(n);
                Action::Continue
            }
            Read::Done(n) => {
                conn.consume(n);
                let ex = self.links[link].exchange.take().expect("checked above");
                let answer = ex.reader.finish();
                let reuse = answer.reusable && conn.input().is_empty();
                answer_with(ex.responder, answer);
                if reuse {
                    self.idle[self.links[link].upstream].push(link);
                    Action::Continue
                } else {
                    Action::Close
                }
            }
            Read::Bad(why) => {
                log::warn!("gateway: upstream {}: {why}", self.upstream_of(link));
                self.fail(link, Status::BAD_GATEWAY);
                Action::Close
            }
        }
    }

    /// The request on `link` ends without an answer from upstream: `status` if the client can
    /// still be told, else its connection closes (its answer was started).
    fn fail(&mut self, link: usize, status: Status) {
        let Some(ex) = self.links[link].exchange.take() else {
            return;
        };
        if ex.reader.started() {
            let _ = ex.responder.respond(|res| {
                res.status(Status::BAD_GATEWAY).close().body(b"");
            });
        } else {
            let _ = ex.responder.respond(move |res| {
                res.status(status)
                    .content_type("text/plain")
                    .body(format!("{}\n", status.reason()).as_bytes());
            });
        }
    }

    fn upstream_of(&self, link: usize) -> SocketAddr {
        self.upstreams[self.links[link].upstream]
    }
}

/// Gives the client the upstream's answer.
fn answer_with(responder: Responder, answer: parse::Answer) {
    let _ = responder.respond(move |res| {
        res.status(Status::new(answer.status).unwrap_or(Status::BAD_GATEWAY));
        for (name, value) in &answer.headers {
            res.header(name, value);
        }
        res.body(&answer.body);
    });
}

impl Service for Gateway {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let upstream = self.next;
        self.next = (self.next + 1) % self.upstreams.len();
        let request = parse::forward(req, res.peer_addr(), &self.upstreams[upstream].to_string());
        let idempotent = matches!(req.method(), "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
            && request.len() <= MAX_RETRIED;
        let exchange = Exchange {
            responder: res.defer(),
            request,
            idempotent,
            reused: false,
            reader: ResponseReader::new(req.method() == "HEAD", self.max_body),
        };
        match res.loop_cx() {
            Some(mut cx) => self.dispatch(&mut cx, upstream, exchange),
            None => drop(exchange), // no loop (a test's memory sink): the responder answers 500
        }
    }

    fn on_connect(&mut self, conn: &mut Conn<'_>) -> u64 {
        let Some(link) = conn
            .take_context::<usize>()
            .filter(|l| self.links.contains(*l))
        else {
            conn.close();
            return u64::MAX;
        };
        let entry = &mut self.links[link];
        if std::mem::take(&mut self.down[entry.upstream]) {
            log::warn!(
                "gateway: upstream {} is reachable again",
                self.upstreams[entry.upstream]
            );
        }
        entry.id = Some(conn.id());
        conn.set_idle_timeout(Some(self.timeout));
        let _ = conn.set_nodelay(true);
        match entry.exchange.as_mut() {
            Some(ex) => {
                conn.write_vec(std::mem::take(&mut ex.request));
            }
            None => self.idle[entry.upstream].push(link),
        }
        link as u64
    }

    fn on_outbound(&mut self, conn: &mut Conn<'_>, link: u64, event: OutboundEvent) -> Action {
        let link = link as usize;
        if !self.links.contains(link) {
            return Action::Close;
        }
        match event {
            OutboundEvent::Data => self.on_data(conn, link),
            OutboundEvent::ReadClosed => {
                // A body read until close is complete; any other answer in progress is cut
                // short, and `on_outbound_close` answers for it.
                let Some(ex) = self.links[link].exchange.take() else {
                    return Action::Close;
                };
                if ex.reader.until_close() {
                    answer_with(ex.responder, ex.reader.finish());
                    return Action::Close;
                }
                if ex.may_retry() {
                    let upstream = self.links[link].upstream;
                    let ex = Exchange {
                        reused: false,
                        ..ex
                    };
                    self.connect(&mut conn.loop_cx(), upstream, ex);
                } else {
                    self.links[link].exchange = Some(ex);
                }
                Action::Close
            }
            OutboundEvent::Timeout(_) => {
                self.fail(link, Status::GATEWAY_TIMEOUT);
                Action::Close
            }
            _ => Action::Continue,
        }
    }

    fn on_outbound_close(&mut self, _id: ConnId, link: u64, reason: &CloseReason) {
        let link = link as usize;
        if !self.links.contains(link) {
            return;
        }
        if self.links[link].exchange.is_some() {
            log::warn!(
                "gateway: upstream {} closed: {reason:?}",
                self.upstream_of(link)
            );
            self.fail(link, Status::BAD_GATEWAY);
        }
        let upstream = self.links[link].upstream;
        self.idle[upstream].retain(|&l| l != link);
        self.links.remove(link);
    }

    fn on_connect_error(&mut self, _cx: &mut LoopCx<'_>, mut error: ConnectError) {
        let Some(link) = error
            .take_context::<usize>()
            .filter(|l| self.links.contains(*l))
        else {
            return;
        };
        let upstream = self.links[link].upstream;
        if !std::mem::replace(&mut self.down[upstream], true) {
            log::warn!("gateway: upstream {}: {}", error.addr(), error.error());
        }
        let status = if error.kind() == std::io::ErrorKind::TimedOut {
            Status::GATEWAY_TIMEOUT
        } else {
            Status::BAD_GATEWAY
        };
        self.fail(link, status);
        self.links.remove(link);
    }
}
