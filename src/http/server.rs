//! [`HttpServer`]: the [`Handler`](crate::Handler) that turns a connection's input into
//! requests for a [`Service`] and writes the responses back (the callbacks are in
//! `handler.rs`; the order of answers given later in `pipeline.rs`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::body::{self, Chunked, Scan};
use super::date::DateCache;
use super::fast::{Head, Slots, Text, HEADERS_CAP};
use super::handler::{HttpConnState, Side};
use super::pipeline::{Answers, Writer};
use super::request::{framing, BodyKind, Framing, Request};
use super::response::{Batch, Heads, ReqFacts, OK_LINE};
use super::status::Status;
use super::upload::Upload;
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
    limits: Limits,
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
    body_buf: Vec<u8>,
    /// The date is frozen (tests): the timer leaves it alone.
    frozen: bool,
}

/// Where the requests of one inbound connection stand: a head whose body is still arriving,
/// and the answers owed.
///
/// An incomplete head is parsed again from its start on each read (httparse is fast, a head
/// is at most [`HttpServer::max_head_size`] bytes, and the read timeout bounds how long a
/// client may trickle one in); this keeps every verdict independent of how the bytes were cut.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    /// A complete head whose body is still arriving.
    pending: Option<Pending>,
    /// The request in progress gets the connection's last response (`Connection: close`):
    /// the server is stopping.
    pub(crate) last: bool,
    pub(crate) answers: Answers,
    /// A body streamed into the service's sink (`upload.rs`), and how many have been.
    pub(crate) upload: Option<Box<Upload>>,
    pub(crate) uploads: u32,
}

#[derive(Debug)]
struct Pending {
    head_len: usize,
    body: PendingBody,
}

#[derive(Debug)]
enum PendingBody {
    Length(usize),
    Chunked(Chunked),
}

/// Where a body stands in the input received so far.
enum BodyScan {
    /// It ends at this offset from the start of the request.
    Done(usize),
    /// More is needed.
    More,
    /// It is refused with this status.
    Refuse(Status),
}

impl PendingBody {
    #[inline]
    fn new(kind: BodyKind) -> PendingBody {
        match kind {
            BodyKind::Length(n) => PendingBody::Length(n),
            BodyKind::Chunked => PendingBody::Chunked(Chunked::new()),
        }
    }

    /// Scans the body of the request in `rest` whose head is `head_len` bytes (a chunked
    /// body resumes where the last scan stopped).
    #[inline]
    fn scan(&mut self, rest: &[u8], head_len: usize, limits: &Limits) -> BodyScan {
        match self {
            PendingBody::Length(n) if rest.len() - head_len >= *n => BodyScan::Done(head_len + *n),
            PendingBody::Length(_) => BodyScan::More,
            PendingBody::Chunked(c) => {
                match c.scan(encoded(rest, head_len, limits), limits.max_body, None) {
                    Ok(Scan::Done(n)) => BodyScan::Done(head_len + n),
                    Ok(Scan::More) if c.scanned() > limits.max_encoded() => {
                        BodyScan::Refuse(Status::CONTENT_TOO_LARGE)
                    }
                    Ok(Scan::More) => BodyScan::More,
                    Err(status) => BodyScan::Refuse(status),
                }
            }
        }
    }
}

/// One step of parsing.
pub(super) enum Step {
    /// A request was answered; it took `len` bytes.
    Answered { len: usize, keep_alive: bool },
    /// The request at the front is incomplete.
    Incomplete,
    /// The request at the front is incomplete, and its first `len` bytes are used (a body
    /// streamed into a sink).
    Used(usize),
    /// The request at the front is refused with this status; the connection closes.
    Refuse(Status),
}

/// Where a request's body is.
enum BodySrc<'a> {
    Slice(&'a [u8]),
    /// Decoded into `body_buf`.
    Decoded,
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

    /// Answers every complete request at the front of `input`, in order. The responses are
    /// gathered and handed to `out` in one piece (a large body separately, uncopied).
    pub(crate) fn serve(
        &mut self,
        ex: &mut Exchange,
        input: &[u8],
        out: &mut dyn Output,
    ) -> Served {
        let mut buf = std::mem::take(&mut self.out_buf);
        let mut batch = Batch { buf: &mut buf, out };
        let served = self.serve_batch(ex, input, &mut batch);
        batch.flush();
        self.keep_batch(buf);
        served
    }

    /// Puts the batch buffer back, unless it grew unusually large.
    pub(crate) fn keep_batch(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 1024 * 1024 {
            buf = Vec::new();
        }
        buf.clear();
        self.out_buf = buf;
    }

    fn serve_batch(&mut self, ex: &mut Exchange, input: &[u8], out: &mut Batch<'_>) -> Served {
        let mut pos = 0;
        let mut text = Text::new(input);
        while pos < input.len() {
            if ex.answers.owing() && !out.out.may_owe() {
                break; // as many answers owed as allowed: the rest waits, reading pauses
            }
            let t = text.at(pos, self.limits.max_head);
            match self.step(ex, &input[pos..], t, out) {
                Step::Answered { len, keep_alive } => {
                    ex.pending = None;
                    out.settle();
                    pos += len;
                    if !keep_alive {
                        return Served::close(input.len());
                    }
                }
                Step::Incomplete => break,
                Step::Used(len) => {
                    pos += len;
                    break;
                }
                Step::Refuse(status) => {
                    ex.pending = None;
                    self.write_refusal(ex, status, out);
                    return Served::close(input.len());
                }
            }
        }
        Served::serve(pos)
    }

    /// Parses (and answers) the request at the front of `rest`; `t` is valid UTF-8 read from the
    /// same bytes, for the head parser's fast path.
    fn step(&mut self, ex: &mut Exchange, rest: &[u8], t: &str, out: &mut Batch<'_>) -> Step {
        let limits = self.limits;
        if ex.upload.is_some() {
            return self.feed_upload(ex, rest, out);
        }
        if let Some(p) = ex.pending.as_mut() {
            let head_len = p.head_len;
            let body_end = match p.body.scan(rest, head_len, &limits) {
                BodyScan::Done(end) => end,
                BodyScan::More => return Step::Incomplete,
                BodyScan::Refuse(status) => return Step::Refuse(status),
            };
            // The body is complete: parse the head again (it is still in the input) and answer.
            let mut slots = Slots::new();
            let Ok(Some(req)) = slots.parse(&rest[..head_len], t, limits.max_headers) else {
                return Step::Refuse(Status::BAD_REQUEST); // cannot happen: parsed before
            };
            let Ok(mut f) = framing(&req) else {
                return Step::Refuse(Status::BAD_REQUEST);
            };
            f.keep_alive &= !ex.last;
            return self.body_ready(ex, &req, f, &rest[head_len..body_end], out);
        }

        let mut slots = Slots::new();
        // Only the first `max_head` bytes can hold an acceptable head, so only those are parsed:
        // the verdict on a request then never depends on how its bytes were cut into reads.
        let head_part = &rest[..rest.len().min(limits.max_head)];
        let req = match slots.parse(head_part, t, limits.max_headers) {
            Ok(Some(req)) => req,
            Ok(None) => return self.wait_for_head(rest),
            Err(e) => return Step::Refuse(e.status()),
        };
        let head_len = req.len;
        let mut f = match framing(&req) {
            Ok(f) => f,
            Err(status) => return Step::Refuse(status),
        };
        f.keep_alive &= !ex.last;
        if f.body != BodyKind::Length(0) {
            if let Some(step) = self.take_intake(ex, &req, f, rest, out) {
                return step;
            }
        }
        if matches!(f.body, BodyKind::Length(n) if n > limits.max_body) {
            return Step::Refuse(Status::CONTENT_TOO_LARGE);
        }
        let mut body = PendingBody::new(f.body);
        let body_end = match body.scan(rest, head_len, &limits) {
            BodyScan::Done(end) => end,
            BodyScan::More => {
                if f.expect_continue {
                    if let Err(status) = self.check_continue(&req, f) {
                        return Step::Refuse(status);
                    }
                }
                self.wait_for_body(ex, f, rest, head_len, body, out);
                return Step::Incomplete;
            }
            BodyScan::Refuse(status) => return Step::Refuse(status),
        };
        self.body_ready(ex, &req, f, &rest[head_len..body_end], out)
    }

    /// `Expect: 100-continue` with the body still to come: the service may refuse it now.
    #[cold]
    fn check_continue(&mut self, req: &Head<'_, '_>, f: Framing) -> Result<(), Status> {
        self.service.check_continue(&f.bodiless(req))
    }

    /// The head is incomplete (its first `max_head` bytes parsed without error): wait for
    /// more, or refuse it if it is already too long.
    fn wait_for_head(&self, rest: &[u8]) -> Step {
        let max = self.limits.max_head;
        if rest.len() <= max {
            Step::Incomplete
        } else if rest[..max].contains(&b'\n') {
            Step::Refuse(Status::REQUEST_HEADER_FIELDS_TOO_LARGE)
        } else {
            Step::Refuse(Status::URI_TOO_LONG)
        }
    }

    /// The head is complete, the body is not: keep both unconsumed until it is.
    fn wait_for_body(
        &self,
        ex: &mut Exchange,
        f: Framing,
        rest: &[u8],
        head_len: usize,
        body: PendingBody,
        out: &mut Batch<'_>,
    ) {
        // (With answers owed ahead, an interim answer would jump the queue: the client sends
        // its body after its own wait instead.)
        if f.expect_continue && rest.len() == head_len && !ex.answers.owing() {
            out.put(super::intake::CONTINUE);
        }
        ex.pending = Some(Pending { head_len, body });
    }

    /// The whole request is in: `encoded` is its body as sent. Decode it if chunked, then
    /// answer.
    #[inline]
    fn body_ready(
        &mut self,
        ex: &mut Exchange,
        req: &Head<'_, '_>,
        f: Framing,
        encoded: &[u8],
        out: &mut Batch<'_>,
    ) -> Step {
        let src = match f.body {
            BodyKind::Length(_) => BodySrc::Slice(encoded),
            BodyKind::Chunked => {
                self.body_buf.clear();
                if let Err(status) = body::decode(encoded, self.limits.max_body, &mut self.body_buf)
                {
                    return Step::Refuse(status);
                }
                BodySrc::Decoded
            }
        };
        let keep_alive = self.answer(ex, req, f, src, out);
        if self.body_buf.capacity() > 4 * 1024 * 1024 {
            self.body_buf = Vec::new(); // do not hold on to an unusually large body
        }
        Step::Answered {
            len: req.len + encoded.len(),
            keep_alive,
        }
    }

    /// Calls the service for one complete request. Returns whether the connection stays open.
    fn answer(
        &mut self,
        ex: &mut Exchange,
        req: &Head<'_, '_>,
        f: Framing,
        src: BodySrc<'_>,
        out: &mut Batch<'_>,
    ) -> bool {
        let body = match src {
            BodySrc::Slice(s) => s,
            BodySrc::Decoded => &self.body_buf[..],
        };
        let request = Request {
            method: req.method,
            target: req.target,
            version: f.version,
            headers: req.headers,
            body,
            keep_alive: f.keep_alive,
        };
        let facts = f.facts();
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        let service = &mut self.service;
        ex.answers
            .answer_next(&mut w, out, facts, |res| service.call(&request, res))
    }

    /// Answers a refused request: status, a one-line text body, `Connection: close`.
    pub(crate) fn write_refusal(&mut self, ex: &mut Exchange, status: Status, out: &mut Batch<'_>) {
        let facts = ReqFacts {
            head_only: false,
            keep_alive: false,
            announce: false,
        };
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        ex.answers.answer_next(&mut w, out, facts, |res| {
            res.status(status).content_type("text/plain");
            res.body(status.reason().as_bytes());
        });
    }
}

/// The encoded body received so far, cut one byte past the most a chunked body may take, so a
/// body over the limit is refused at the same byte however its reads were cut.
fn encoded<'a>(rest: &'a [u8], head_len: usize, limits: &Limits) -> &'a [u8] {
    let body = &rest[head_len..];
    &body[..body.len().min(limits.max_encoded().saturating_add(1))]
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
            Side::Inbound(ex) => HttpServer::serve(self, ex, input, out),
            Side::Outbound(_) => Served::serve(0), // not reached: outbound input is the service's
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
            Side::Outbound(_) => false,
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
    use crate::http::Response;

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
