//! The response writer: the status line, headers and small bodies are appended to a per-loop
//! batch buffer that the server hands to the connection once per batch of requests (so a
//! pipeline of 16 requests costs one `Conn::write`, not 16 × 10), with no allocation per
//! response once the buffer has grown. A large body goes to the connection directly, after
//! the batch so far, so it is never copied twice. What cannot be written at once — a file, a
//! streamed body, an answer given later — is left in [`Next`] for the server to carry out.

use std::fmt;

use super::deferred::Reply;
use super::fast::is_tchar;
use super::files::FileBody;
use super::push::PushSlot;
use super::status::Status;
use super::stream::{Delimit, Streaming};
use super::Sink;

/// The status line of a `200 OK`, which the server's common head block starts with.
pub(crate) const OK_LINE: &[u8] = b"HTTP/1.1 200 OK\r\n";

/// The interim answer to `Expect: 100-continue`, written before a body the server will read.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A body at least this large bypasses the batch buffer: the batch is handed to the connection
/// first, then the body, so large bodies are copied once (into the loop's staging buffer, or
/// not at all if the connection sends them at once).
const DIRECT_BODY: usize = 8 * 1024;
/// The batch is handed to the connection once it holds this much (memory stays bounded and
/// the connection's staging limit is not passed in one piece).
const BATCH_FLUSH: usize = 32 * 1024;

/// Per-loop pieces of response heads: the common block, and the heads of the last `200 OK`
/// up to its `Content-Type` and the last `Content-Length` line, so a service that answers
/// alike request after request copies each in one piece instead of assembling it again.
/// Rebuilt (emptied) when the `Date` changes.
#[derive(Debug, Default)]
pub(crate) struct Heads {
    /// `HTTP/1.1 200 OK\r\nServer: ...\r\nDate: ...\r\n`.
    pub(crate) common: Vec<u8>,
    /// The `Content-Type` value of the last `200 OK` head written, and that head up to and
    /// including its `Content-Type` line (empty: nothing cached).
    ct_value: Vec<u8>,
    ct_head: Vec<u8>,
    /// The last body length and its `Content-Length: n\r\n` line (empty: nothing cached).
    body_len: usize,
    len_line: Vec<u8>,
}

impl Heads {
    /// Forgets the cached heads (the common block changed).
    pub(crate) fn invalidate(&mut self) {
        self.ct_value.clear();
        self.ct_head.clear();
    }
}

/// The response bytes of one batch of requests, on their way to a [`Sink`].
pub(crate) struct Batch<'o> {
    /// Bytes not yet handed to `out` (the server's reused buffer).
    pub(crate) buf: &'o mut Vec<u8>,
    pub(crate) out: &'o mut dyn Sink,
}

impl Batch<'_> {
    #[inline]
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands everything batched so far to the sink.
    pub(crate) fn flush(&mut self) {
        if !self.buf.is_empty() {
            self.out.put(self.buf);
            self.buf.clear();
        }
    }

    /// After a response: flush if the batch has grown large.
    #[inline]
    pub(crate) fn settle(&mut self) {
        if self.buf.len() >= BATCH_FLUSH {
            self.flush();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Phase {
    /// Nothing written yet: the status can still change.
    Fresh,
    /// Status line and headers are being written.
    Head,
    /// The response is complete (its body may still be on its way: [`Next`]).
    Sent,
    /// The answer comes later, through a [`Responder`].
    Deferred,
}

/// What the request asked of its response, kept for an answer given later.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReqFacts {
    /// `HEAD`: no body.
    pub head_only: bool,
    /// The connection stays open after it (unless the response closes it).
    pub keep_alive: bool,
    /// HTTP/1.0 keep-alive, confirmed with `Connection: keep-alive`.
    pub announce: bool,
}

/// What the server does once the service has returned, besides the bytes written.
#[derive(Debug, Default)]
pub(crate) enum Next {
    /// Nothing: the response is all in the output.
    #[default]
    Nothing,
    /// The answer comes later.
    Deferred,
    /// The body is this file range, sent after the head.
    File(FileBody),
    /// The body is streamed after the head.
    Stream(Streaming),
    /// The body is pushed after the head, through a `BodyWriter`.
    Push(PushSlot),
}

/// The response to one request, written straight into the connection's output.
///
/// Set the [`status`](Response::status) (default `200 OK`) and any
/// [`header`](Response::header)s, in any order, then one [`body`](Response::body) or
/// [`body_with`](Response::body_with), which completes the response. The writer adds the
/// status line, `Server`, `Date`, `Content-Length` and, when the connection is to close,
/// `Connection: close` — a service must not set those itself. A response the service leaves
/// unfinished is completed with an empty body. A `HEAD` request gets the headers (with the
/// `Content-Length` of the body given) but no body.
///
/// ```
/// use eventide::http::{Request, Response, Status};
///
/// fn created(_req: &Request<'_>, res: &mut Response<'_>) {
///     res.status(Status::CREATED)
///         .header("Location", "/items/7")
///         .content_type("application/json")
///         .body(br#"{"id":7}"#);
/// }
/// # let _ = created;
/// ```
pub struct Response<'r> {
    /// The batch buffer: head and small bodies go here.
    pub(super) buf: &'r mut Vec<u8>,
    /// Where the batch goes; written directly only for a large body.
    pub(super) out: &'r mut dyn Sink,
    scratch: &'r mut Vec<u8>,
    /// The common block (`HTTP/1.1 200 OK\r\nServer: ...\r\nDate: ...\r\n`, refreshed once a
    /// second by the loop) and cached heads.
    heads: &'r mut Heads,
    pub(super) status: Status,
    pub(super) phase: Phase,
    /// Where this response's status line starts in `buf` (once the head is started).
    pub(super) head_start: usize,
    pub(super) head_only: bool,
    pub(super) keep_alive: bool,
    /// HTTP/1.0 keep-alive must be confirmed with `Connection: keep-alive`.
    pub(super) announce_keep_alive: bool,
    /// The request's place on its connection (its answer's, for a [`Responder`]).
    pub(super) seq: u64,
    pub(super) next: Next,
    /// The route asked to switch the connection's protocol (`Response::websocket`).
    pub(crate) upgrade: bool,
}

impl<'r> Response<'r> {
    pub(crate) fn new(
        batch: &'r mut Batch<'_>,
        scratch: &'r mut Vec<u8>,
        heads: &'r mut Heads,
        facts: ReqFacts,
        seq: u64,
    ) -> Response<'r> {
        Response {
            buf: &mut *batch.buf,
            out: &mut *batch.out,
            scratch,
            heads,
            status: Status::OK,
            phase: Phase::Fresh,
            head_start: 0,
            head_only: facts.head_only,
            keep_alive: facts.keep_alive,
            announce_keep_alive: facts.announce,
            seq,
            next: Next::Nothing,
            upgrade: false,
        }
    }

    /// Whether nothing follows the bytes written (no file, no answer to come).
    #[inline]
    pub(crate) fn is_all_written(&self) -> bool {
        matches!(self.next, Next::Nothing)
    }

    /// What the server carries out after the service returned.
    pub(crate) fn take_next(&mut self) -> Next {
        std::mem::take(&mut self.next)
    }

    /// Sets the status (default `200 OK`), before or after headers: the status line is
    /// rewritten in place if headers were written already. Once the body is written the
    /// response is complete, and a status set then is ignored (and logged): check
    /// [`is_sent`](Response::is_sent) when in doubt.
    pub fn status(&mut self, status: Status) -> &mut Self {
        match self.phase {
            Phase::Fresh => self.status = status,
            Phase::Head if status != self.status => {
                let at = self.head_start;
                let old = self.status.with_line(<[u8]>::len);
                status.with_line(|line| {
                    self.buf.splice(at..at + old, line.iter().copied());
                });
                self.status = status;
            }
            Phase::Head => {}
            Phase::Sent | Phase::Deferred => {
                log::warn!("eventide::http: status {status} set after the body; ignored");
            }
        }
        self
    }

    /// The status set so far.
    pub fn status_code(&self) -> Status {
        self.status
    }

    /// Adds a header. A name that is not an HTTP token, or a value with CR, LF or NUL in it,
    /// is dropped (and logged), so request data echoed into a header cannot split the
    /// response. Ignored after the body.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        if self.is_done() {
            log::warn!("eventide::http: header {name} set after the body; ignored");
            return self;
        }
        if !header_ok(name, value) {
            return self;
        }
        self.start();
        let buf = &mut *self.buf;
        buf.reserve(name.len() + value.len() + 4);
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value);
        buf.extend_from_slice(b"\r\n");
        self
    }

    /// Shorthand for `header("Content-Type", content_type)`.
    pub fn content_type(&mut self, content_type: &str) -> &mut Self {
        let value = content_type.as_bytes();
        let fresh_ok = self.phase == Phase::Fresh && self.status == Status::OK;
        if fresh_ok && !self.heads.ct_head.is_empty() && self.heads.ct_value == value {
            // The same head as the last `200 OK` so far: one copy.
            self.head_start = self.buf.len();
            self.buf.extend_from_slice(&self.heads.ct_head);
            self.phase = Phase::Head;
            return self;
        }
        if self.is_done() || !value_ok(value) {
            return self.header("Content-Type", value); // logs and drops it
        }
        let from = self.buf.len();
        self.start();
        let buf = &mut *self.buf;
        buf.reserve(value.len() + 16);
        buf.extend_from_slice(b"Content-Type: ");
        buf.extend_from_slice(value);
        buf.extend_from_slice(b"\r\n");
        if fresh_ok {
            let heads = &mut *self.heads;
            heads.ct_value.clear();
            heads.ct_value.extend_from_slice(value);
            heads.ct_head.clear();
            heads.ct_head.extend_from_slice(&buf[from..]);
        }
        self
    }

    /// Closes the connection after this response (sending `Connection: close` if the head is
    /// still to be completed).
    pub fn close(&mut self) -> &mut Self {
        self.keep_alive = false;
        self
    }

    /// Whether the connection stays open after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Writes `Content-Length`, the end of the head and `body`, completing the response.
    /// Ignored if the response is already complete.
    pub fn body(&mut self, body: &[u8]) {
        if self.is_done() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return;
        }
        self.start();
        let bodyless = self.status.bodyless();
        let send_body = !self.head_only && !bodyless;
        let buf = &mut *self.buf;
        let direct = send_body && body.len() >= DIRECT_BODY;
        buf.reserve(48 + if send_body && !direct { body.len() } else { 0 });
        if !bodyless {
            let heads = &mut *self.heads;
            if heads.len_line.is_empty() || heads.body_len != body.len() {
                let mut n = itoa::Buffer::new();
                heads.len_line.clear();
                heads.len_line.extend_from_slice(b"Content-Length: ");
                heads
                    .len_line
                    .extend_from_slice(n.format(body.len()).as_bytes());
                heads.len_line.extend_from_slice(b"\r\n");
                heads.body_len = body.len();
            }
            buf.extend_from_slice(&heads.len_line);
        }
        self.end_head();
        let buf = &mut *self.buf;
        if direct {
            // The head goes first, then the body without a second copy.
            self.out.put(buf);
            buf.clear();
            self.out.put(body);
        } else if send_body {
            buf.extend_from_slice(body);
        }
        self.phase = Phase::Sent;
    }

    /// The event loop of the request's connection: to open an outbound connection that will
    /// answer it ([`LoopCx::connect`](crate::LoopCx::connect), see
    /// [`Service::on_connect`](super::Service::on_connect)), set a loop timer, or get a
    /// [`LoopHandle`](crate::LoopHandle). `None` for a response written to memory (tests).
    pub fn loop_cx(&mut self) -> Option<crate::LoopCx<'_>> {
        self.out.loop_cx()
    }

    /// The address of the client that sent the request (what a proxy puts in
    /// `X-Forwarded-For`); `None` for a Unix socket or a response written to memory.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.out.peer_addr()
    }

    /// Writes `reply` as this response: its status, headers and body.
    pub fn reply(&mut self, reply: Reply) {
        if self.is_done() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return;
        }
        let (status, headers, body, close) = reply.into_parts();
        self.status(status);
        self.raw_headers(&headers);
        if close {
            self.close();
        }
        self.body(&body);
    }

    /// Appends header lines checked already (a [`Reply`]'s).
    pub(super) fn raw_headers(&mut self, headers: &[u8]) {
        if !headers.is_empty() {
            self.start();
            self.buf.extend_from_slice(headers);
        }
    }

    /// Writes the framing of a body to come — `Content-Length: len`; chunked without a
    /// length; for an HTTP/1.0 client without one, the end of the connection — and ends the
    /// head: the response is given. Returns whether body bytes go out (not for `HEAD` or a
    /// status without a body) and how they are delimited.
    pub(super) fn open_body(&mut self, len: Option<u64>) -> (bool, Delimit) {
        let send = !self.head_only && !self.status.bodyless();
        self.start();
        let delimit = match len {
            Some(len) => {
                if !self.status.bodyless() {
                    let mut n = itoa::Buffer::new();
                    self.buf.extend_from_slice(b"Content-Length: ");
                    self.buf.extend_from_slice(n.format(len).as_bytes());
                    self.buf.extend_from_slice(b"\r\n");
                }
                Delimit::Length(len)
            }
            // HTTP/1.1 (`announce` marks a 1.0 keep-alive): chunked.
            None if self.keep_alive && !self.announce_keep_alive => {
                if !self.status.bodyless() {
                    self.buf
                        .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                }
                Delimit::Chunked
            }
            None => {
                if send {
                    self.keep_alive = false;
                }
                Delimit::Close
            }
        };
        self.end_head();
        self.phase = Phase::Sent;
        (send, delimit)
    }

    /// Answers `500 Internal Server Error` (an answer that could not be given).
    pub(crate) fn fail(&mut self) {
        self.status(Status::INTERNAL_SERVER_ERROR)
            .content_type("text/plain")
            .body(Status::INTERNAL_SERVER_ERROR.reason().as_bytes());
    }

    /// Whether the body was given (written, or to come through a responder).
    pub(super) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Sent | Phase::Deferred)
    }

    /// Ends the head: the `Connection` field the connection's fate calls for, then the blank
    /// line.
    /// (Each branch copies a constant, which the compiler turns into a few stores: a slice
    /// chosen first would cost a `memcpy` call per response.)
    #[inline(always)]
    pub(super) fn end_head(&mut self) {
        if !self.keep_alive {
            self.buf.extend_from_slice(b"Connection: close\r\n\r\n");
        } else if self.announce_keep_alive {
            self.buf
                .extend_from_slice(b"Connection: keep-alive\r\n\r\n");
        } else {
            self.buf.extend_from_slice(b"\r\n");
        }
    }

    /// Builds the body in a buffer the loop reuses (cleared first), then writes it as
    /// [`body`](Response::body) does: a body built per request costs no allocation once the
    /// buffer has grown.
    ///
    /// ```
    /// # use eventide::http::{Request, Response};
    /// fn count(req: &Request<'_>, res: &mut Response<'_>) {
    ///     use std::io::Write;
    ///     res.content_type("text/plain")
    ///         .body_with(|buf| write!(buf, "{} bytes", req.body().len()).unwrap());
    /// }
    /// # let _ = count;
    /// ```
    pub fn body_with(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = std::mem::take(self.scratch);
        buf.clear();
        build(&mut buf);
        self.body(&buf);
        *self.scratch = buf;
    }

    /// Whether the response is given: complete, or [deferred](Response::defer).
    pub fn is_sent(&self) -> bool {
        self.is_done()
    }

    /// Writes the status line and the common headers, once.
    pub(super) fn start(&mut self) {
        if self.phase == Phase::Fresh {
            self.buf.reserve(128);
            self.head_start = self.buf.len();
            let common = &self.heads.common;
            if self.status == Status::OK {
                self.buf.extend_from_slice(common);
            } else {
                self.status
                    .with_line(|line| self.buf.extend_from_slice(line));
                self.buf.extend_from_slice(&common[OK_LINE.len()..]);
            }
            self.phase = Phase::Head;
        }
    }

    /// Completes a response the service left unfinished.
    pub(crate) fn finish(&mut self) {
        if std::mem::take(&mut self.upgrade) && !self.is_done() {
            // Only `Service::call` can switch (the server answers it as the call returns).
            log::error!(
                "eventide::http: a switch of protocol from a deferred answer; answered 500"
            );
            self.fail();
        }
        if !self.is_done() {
            self.body(b"");
        }
    }
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("phase", &self.phase)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// Whether a header may be sent as it is: a token name, a value [`value_ok`]; logged and
/// dropped otherwise.
pub(crate) fn header_ok(name: &str, value: &[u8]) -> bool {
    let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
    if !(name_ok && value_ok(value)) {
        log::warn!("eventide::http: malformed header {name:?} dropped");
        return false;
    }
    true
}

/// Whether a header value may be sent as it is: no CR, LF or NUL (which could split the
/// response or end the head early). Eight bytes at a time: values are short, and a byte loop
/// with three comparisons per byte cost more than the rest of the header.
#[inline]
fn value_ok(value: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Exact for "is any byte zero": a borrow only starts at a zero byte.
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI != 0;
    let bad = |x: u64| has_zero(x) || has_zero(x ^ (LO * 0x0a)) || has_zero(x ^ (LO * 0x0d));
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("eight bytes"));
    let n = value.len();
    if n < 8 {
        return !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
    }
    let mut i = 0;
    while i + 8 <= n {
        if bad(word(&value[i..i + 8])) {
            return false;
        }
        i += 8;
    }
    // The last (overlapping) eight bytes cover the tail.
    i == n || !bad(word(&value[n - 8..]))
}

#[cfg(test)]
mod tests;
