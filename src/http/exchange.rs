//! One inbound connection's requests, step by step: parse a head, take its body (buffered
//! here, streamed in `intake.rs`), call the service, and write the answer or the refusal
//! (the order of answers given later is kept in `pipeline.rs`).

use super::body::{self, Chunked, Scan};
use super::fast::{Head, Slots, Text};
use super::pipeline::{Answers, Writer};
use super::request::{framing, BodyKind, Framing, Request};
use super::response::{Batch, ReqFacts, CONTINUE};
use super::status::Status;
use super::switch::Switched;
use super::upload::Upload;
use super::{HttpServer, Limits, Service};
use crate::adapter::{Output, Served};

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
    /// A `101` was written in this callback: the connection's new protocol and its state
    /// (the handler switches to it once serving returns; the rest of the input is its own).
    pub(crate) switching: Option<Box<Switched>>,
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
        if ex.answers.closing() {
            // An answer owed closes the connection (a request answered before its body
            // ended, a deferred answer that says so): what arrives is dropped until then.
            return Served::serve(input.len());
        }
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
                    if ex.switching.is_some() {
                        break; // the rest of the input is the new protocol's
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
            return match p.body.scan(rest, head_len, &limits) {
                BodyScan::Done(end) => self.answer_pending(ex, &rest[..end], head_len, t, out),
                BodyScan::More => Step::Incomplete,
                BodyScan::Refuse(status) => Step::Refuse(status),
            };
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
        let mut f = match framing(&req) {
            Ok(f) => f,
            Err(status) => return Step::Refuse(status),
        };
        f.keep_alive &= !ex.last;
        if self.upgrade.waits(ex.answers.owing(), req.headers) {
            return Step::Incomplete; // an upgrade is served once the answers before it are out
        }
        self.take_body(ex, &req, f, rest, out)
    }

    /// The pending request's body is complete (`request` is all of it, `head_len` bytes of
    /// head, then the body): parse the head again (it is still in the input) and answer.
    fn answer_pending(
        &mut self,
        ex: &mut Exchange,
        request: &[u8],
        head_len: usize,
        t: &str,
        out: &mut Batch<'_>,
    ) -> Step {
        let mut slots = Slots::new();
        let Ok(Some(req)) = slots.parse(&request[..head_len], t, self.limits.max_headers) else {
            return Step::Refuse(Status::BAD_REQUEST); // cannot happen: parsed before
        };
        let Ok(mut f) = framing(&req) else {
            return Step::Refuse(Status::BAD_REQUEST);
        };
        f.keep_alive &= !ex.last;
        self.body_ready(ex, &req, f, &request[head_len..], out)
    }

    /// A head that may be served now is in (`rest` starts with it): take its body, streamed
    /// into the service's sink, or buffered: answered if it is all in, else waited for.
    #[inline]
    fn take_body(
        &mut self,
        ex: &mut Exchange,
        req: &Head<'_, '_>,
        f: Framing,
        rest: &[u8],
        out: &mut Batch<'_>,
    ) -> Step {
        let limits = self.limits;
        if f.body != BodyKind::Length(0) {
            if let Some(step) = self.take_intake(ex, req, f, rest, out) {
                return step;
            }
        }
        if matches!(f.body, BodyKind::Length(n) if n > limits.max_body) {
            return Step::Refuse(Status::CONTENT_TOO_LARGE);
        }
        let head_len = req.len;
        let mut body = PendingBody::new(f.body);
        let body_end = match body.scan(rest, head_len, &limits) {
            BodyScan::Done(end) => end,
            BodyScan::More => {
                if f.expect_continue {
                    if let Err(status) = self.check_continue(req, f) {
                        return Step::Refuse(status);
                    }
                }
                self.wait_for_body(ex, f, rest, head_len, body, out);
                return Step::Incomplete;
            }
            BodyScan::Refuse(status) => return Step::Refuse(status),
        };
        self.body_ready(ex, req, f, &rest[head_len..body_end], out)
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
            out.put(CONTINUE);
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
        let (service, upgrade) = (&mut self.service, &mut self.upgrade);
        let may_switch = !ex.answers.owing() && !ex.last;
        let switching = &mut ex.switching;
        ex.answers.answer_next(&mut w, out, facts, |res| {
            service.call(&request, res);
            upgrade.after_call(&request, res, may_switch, switching);
        })
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
