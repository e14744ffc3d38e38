//! [`HttpServer`]: the [`Handler`](crate::Handler) that turns a connection's input into
//! requests for a [`Service`] and writes the responses back: its configuration, the `Date`
//! it keeps, and the protocol's entry points (the requests of one connection are stepped
//! through in `exchange.rs`; the callbacks are in `handler.rs`; the order of answers given
//! later in `pipeline.rs`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::date::DateCache;
use super::exchange::Exchange;
use super::fast::HEADERS_CAP;
use super::handler::{HttpConnState, Side};
use super::response::{Batch, Heads, OK_LINE};
use super::status::Status;
use super::switch::Upgrades;
use super::{Limits, Service};
use crate::adapter::{Output, Protocol, Served};
use crate::LoopCx;

/// The token of the server's own loop timer, the `Date` refresh at each second boundary (an
/// adapter timer: the service's tokens are all its own).
const DATE_TIMER: u64 = 0;

/// An HTTP/1.1 server: the [`Handler`](crate::Handler) that runs a [`Service`]. Make one per event loop in
/// the factory given to [`Builder::start`](crate::Builder::start).
///
/// ```no_run
/// use eventide::http::{HttpServer, Request, Response};
/// use eventide::Server;
///
/// let server = Server::builder()
///     .bind("127.0.0.1:8080")
///     .loops(2)
///     .start(|_| {
///         HttpServer::new(|_: &Request<'_>, res: &mut Response<'_>| res.body(b"ok"))
///             .max_body_size(64 * 1024)
///             .server_header(Some("my-app"))
///     })?;
/// # drop(server);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct HttpServer<S> {
    pub(crate) service: S,
    pub(super) limits: Limits,
    server_name: Option<Box<str>>,
    date: DateCache,
    /// `HTTP/1.1 200 OK\r\nServer: ...\r\nDate: ...\r\n` (rebuilt when the date changes)
    /// and the cached heads built on it.
    pub(crate) heads: Heads,
    /// Body buffer for [`Response::body_with`](super::Response::body_with).
    pub(crate) scratch: Vec<u8>,
    /// Responses of the current batch of requests, handed to the connection in one write.
    pub(crate) out_buf: Vec<u8>,
    /// Decoded chunked bodies.
    pub(super) body_buf: Vec<u8>,
    /// The date is frozen (tests): the timer leaves it alone.
    frozen: bool,
    /// The protocol a route may switch a connection to (`HttpServer::websocket`).
    pub(crate) upgrade: Upgrades,
}

impl<S: Service> HttpServer<S> {
    /// A server running `service`, with default limits: 8 KiB of head, 64 headers, 256 KiB of
    /// body; `Server: eventide`.
    pub fn new(service: S) -> HttpServer<S> {
        let mut s = HttpServer {
            service,
            limits: Limits::default(),
            server_name: Some("eventide".into()),
            date: DateCache::now(),
            heads: Heads::default(),
            scratch: Vec::new(),
            out_buf: Vec::new(),
            body_buf: Vec::new(),
            frozen: false,
            upgrade: Upgrades::default(),
        };
        s.rebuild_common();
        s
    }

    /// Largest request head (request line and headers) accepted, in bytes; a larger one is
    /// answered with 431 (default 8 KiB).
    pub fn max_head_size(mut self, bytes: usize) -> Self {
        self.limits.max_head = bytes.max(64);
        self
    }

    /// Most header fields in a request (default 64, at most 256); more is answered with 431.
    pub fn max_headers(mut self, n: usize) -> Self {
        self.limits.max_headers = n.clamp(1, HEADERS_CAP);
        self
    }

    /// Largest request body accepted, in bytes (decoded, for chunked bodies, whose encoding
    /// may take at most twice that plus 8 KiB); a larger one is answered with 413 (default
    /// 256 KiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.limits.max_body = bytes;
        self
    }

    /// The `Server` header value, or `None` to send none (default `eventide`). A value with
    /// control characters is ignored.
    pub fn server_header(mut self, value: Option<&str>) -> Self {
        match value {
            Some(v) if v.bytes().any(|b| b.is_ascii_control()) => {
                log::warn!("eventide::http: Server header {v:?} has control characters; ignored");
            }
            _ => {
                self.server_name = value.map(Into::into);
                self.rebuild_common();
            }
        }
        self
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, mutably.
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// Freezes the `Date` header at `unix_secs` (reproducible output for tests and fuzzing).
    pub(crate) fn freeze_date(&mut self, unix_secs: u64) {
        self.date = DateCache::fixed(unix_secs);
        self.frozen = true;
        self.rebuild_common();
    }

    fn refresh_date(&mut self) {
        if self.frozen {
            return;
        }
        let before = *self.date.get();
        self.date.refresh();
        if before != *self.date.get() {
            self.rebuild_common();
        }
    }

    fn rebuild_common(&mut self) {
        self.heads.invalidate();
        let common = &mut self.heads.common;
        common.clear();
        common.extend_from_slice(OK_LINE);
        if let Some(name) = &self.server_name {
            common.extend_from_slice(b"Server: ");
            common.extend_from_slice(name.as_bytes());
            common.extend_from_slice(b"\r\n");
        }
        common.extend_from_slice(b"Date: ");
        common.extend_from_slice(self.date.get());
        common.extend_from_slice(b"\r\n");
    }
}

/// Time until just past the next second boundary of the wall clock.
fn until_next_second() -> Duration {
    let sub = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_nanos(u64::from(1_000_000_000 - sub.min(999_999_999))) + Duration::from_millis(1)
}

impl<S: Service> Protocol for HttpServer<S> {
    type State = HttpConnState;

    fn serve(&mut self, st: &mut HttpConnState, input: &[u8], out: &mut dyn Output) -> Served {
        match &mut st.side {
            Side::Inbound(ex) => {
                let served = HttpServer::serve(self, ex, input, out);
                if ex.switching.take().is_some() {
                    // Only a connection runs a switched protocol: the in-memory harness stops.
                    return Served::close(input.len());
                }
                served
            }
            // Not reached: outbound input is the service's, a switched one the protocol's.
            Side::Outbound(_) | Side::Switched(_) => Served::serve(0),
        }
    }

    fn timed_out(&mut self, out: &mut dyn Output) {
        let mut buf = std::mem::take(&mut self.out_buf);
        let mut batch = Batch { buf: &mut buf, out };
        self.write_refusal(
            &mut Exchange::default(),
            Status::REQUEST_TIMEOUT,
            &mut batch,
        );
        batch.flush();
        self.keep_batch(buf);
    }

    fn buffer_bound(&self) -> usize {
        let l = self.limits;
        l.max_head + l.max_encoded().max(l.max_body) + 1
    }

    fn boot(&mut self, cx: &mut LoopCx<'_>) {
        self.refresh_date();
        cx.set_adapter_timer(until_next_second(), DATE_TIMER);
    }

    fn tick(&mut self, cx: &mut LoopCx<'_>, _token: u64) {
        self.refresh_date();
        cx.set_adapter_timer(until_next_second(), DATE_TIMER);
    }

    fn service_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.service.on_boot(cx);
    }

    fn service_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.service.on_tick(cx, token);
    }

    fn freeze_clock(&mut self) {
        self.freeze_date(crate::http::testing::FROZEN_DATE);
    }

    fn last_answer(&mut self, st: &mut HttpConnState) -> bool {
        match &mut st.side {
            Side::Inbound(ex) => {
                ex.last = true;
                true
            }
            Side::Outbound(_) | Side::Switched(_) => false,
        }
    }
}

impl<S> fmt::Debug for HttpServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("limits", &self.limits)
            .field("server_name", &self.server_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response};

    #[test]
    fn next_second_is_within_a_second() {
        let d = until_next_second();
        assert!(d > Duration::ZERO && d <= Duration::from_millis(1001));
    }

    fn route(req: &Request<'_>, res: &mut Response<'_>) {
        match req.path() {
            "/a" => res.content_type("text/plain").body(b"x"),
            "/b" => res.content_type("application/json").body(b"yy"),
            "/h" => res
                .content_type("text/plain")
                .header("X-Extra", "1")
                .body(b"x"),
            "/bad" => res.content_type("text/plain\r\nX: y").body(b"x"),
            _ => res
                .status(Status::NOT_FOUND)
                .content_type("text/plain")
                .body(b"nope"),
        }
    }

    /// The heads copied from the cache are byte for byte the ones built piece by piece, in
    /// any order of routes, and across a change of the `Date`.
    #[test]
    fn cached_heads_match_built_ones() {
        let expected = |status: &str, ct: Option<&str>, extra: &str, body: &str, date: &str| {
            let ct = ct.map_or(String::new(), |c| format!("Content-Type: {c}\r\n"));
            format!(
                "HTTP/1.1 {status}\r\nServer: eventide\r\nDate: {date}\r\n{ct}{extra}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let d1 = "Sun, 06 Nov 1994 08:49:37 GMT";
        let d2 = "Sun, 06 Nov 1994 08:49:38 GMT";
        let a = |d| expected("200 OK", Some("text/plain"), "", "x", d);
        let b = |d| expected("200 OK", Some("application/json"), "", "yy", d);
        let h = |d| expected("200 OK", Some("text/plain"), "X-Extra: 1\r\n", "x", d);
        let bad = |d| expected("200 OK", None, "", "x", d);
        let nf = |d| expected("404 Not Found", Some("text/plain"), "", "nope", d);
        let mut server = HttpServer::new(route as fn(&Request<'_>, &mut Response<'_>));
        server.freeze_date(784_111_777);
        let mut st = Exchange::default();
        let paths = [
            "/a", "/a", "/b", "/a", "/h", "/a", "/x", "/a", "/bad", "/a", "/b", "/b",
        ];
        let mut input = Vec::new();
        let mut want = String::new();
        for p in paths {
            input.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            want.push_str(&match p {
                "/a" => a(d1),
                "/b" => b(d1),
                "/h" => h(d1),
                "/bad" => bad(d1),
                _ => nf(d1),
            });
        }
        // Whole, then one request per read.
        let mut out = Vec::new();
        let served = server.serve(&mut st, &input, &mut out);
        assert_eq!(served.consumed, input.len());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let mut out = Vec::new();
        for p in paths {
            let req = format!("GET {p} HTTP/1.1\r\nHost: h\r\n\r\n");
            server.serve(&mut st, req.as_bytes(), &mut out);
        }
        assert_eq!(String::from_utf8(out).unwrap(), want);
        // A new date empties the cache: the next heads carry it.
        server.freeze_date(784_111_778);
        let mut out = Vec::new();
        server.serve(
            &mut st,
            b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            &mut out,
        );
        assert_eq!(String::from_utf8(out).unwrap(), a(d2) + &a(d2));
    }
}
