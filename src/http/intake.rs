//! The server's side of streamed request bodies (see `upload.rs` for the sink's): choosing
//! how a body is taken once its head is in, feeding it to the sink as it arrives, and what
//! the connection's events mean for a body half in — a resume, the client's end of stream,
//! a timeout, a stop, a close.

use super::deferred::AnswerKind;
use super::exchange::{Exchange, Step};
use super::fast::Head;
use super::pipeline::Writer;
use super::request::{BodyKind, Framing};
use super::response::{Batch, Phase, ReqFacts, Response, CONTINUE};
use super::status::Status;
use super::upload::{Aborted, Fed, Intake, ResumeBody, Upload};
use super::{HttpServer, Service};
use crate::adapter::{self, Job, Output, Protocol};
use crate::{Action, Conn, ConnHandle, LoopCx};

impl<S: Service> HttpServer<S> {
    /// A head with a body is in (`rest` starts with it): the service chooses how the body is
    /// taken. `None`: buffered, as usual; otherwise what became of the request.
    pub(super) fn take_intake(
        &mut self,
        ex: &mut Exchange,
        req: &Head<'_, '_>,
        f: Framing,
        rest: &[u8],
        out: &mut Batch<'_>,
    ) -> Option<Step> {
        let sink = match self.service.intake(&f.bodiless(req)) {
            Intake::Buffer => return None,
            Intake::Refuse(status) => return Some(Step::Refuse(status)),
            Intake::Stream(sink) => sink,
        };
        let head_len = req.len;
        // (With answers owed ahead, an interim answer would jump the queue.)
        if f.expect_continue && rest.len() == head_len && !ex.answers.owing() {
            out.put(CONTINUE);
        }
        let len = match f.body {
            BodyKind::Length(n) => Some(n as u64),
            BodyKind::Chunked => None,
        };
        ex.uploads = ex.uploads.wrapping_add(1);
        let place = (ex.uploads, ex.answers.next_seq());
        ex.upload = Some(Box::new(Upload::new(sink, len, f.facts(), place)));
        Some(match self.feed_upload(ex, &rest[head_len..], out) {
            Step::Used(n) => Step::Used(head_len + n),
            Step::Answered { len, keep_alive } => Step::Answered {
                len: head_len + len,
                keep_alive,
            },
            step => step,
        })
    }

    /// Feeds the body bytes at the front of `body` to the upload in progress; once the body
    /// is complete, its sink answers (or the responder it took, see [`SinkCx::defer`]).
    ///
    /// [`SinkCx::defer`]: super::SinkCx::defer
    pub(super) fn feed_upload(
        &mut self,
        ex: &mut Exchange,
        body: &[u8],
        out: &mut Batch<'_>,
    ) -> Step {
        let Some(up) = ex.upload.as_mut() else {
            return Step::Used(0);
        };
        let fed = up.feed(body, &mut *out.out);
        if up.take_deferred() {
            // The sink took the responder: the answer's place is kept in the pipeline now.
            let facts = last_facts(up.facts, ex.last);
            let mut w = Writer {
                scratch: &mut self.scratch,
                heads: &mut self.heads,
            };
            ex.answers.answer_next(&mut w, out, facts, |res| res.owe());
        }
        let owed = up.owed();
        match fed {
            Fed::More(n) | Fed::Paused(n) => Step::Used(n),
            Fed::Done(n) => {
                let keep_alive = match ex.upload.take() {
                    Some(up) => self.end_upload(ex, *up, out),
                    None => false,
                };
                Step::Answered { len: n, keep_alive }
            }
            Fed::Refused(status) => {
                ex.upload = None;
                match owed {
                    Some(seq) => self.answer_in_place(ex, seq, status, out),
                    None => Step::Refuse(status),
                }
            }
            Fed::Malformed(status) => {
                if let Some(up) = ex.upload.take() {
                    up.abort(Aborted::Malformed(status));
                }
                match owed {
                    Some(seq) => self.answer_in_place(ex, seq, status, out),
                    None => Step::Refuse(status),
                }
            }
        }
    }

    /// The server gives up on a body whose answer a sink's responder owes: `status` answers
    /// in its place (the responder's answer, if it comes, is dropped), and the connection
    /// closes after it.
    fn answer_in_place(
        &mut self,
        ex: &mut Exchange,
        seq: u64,
        status: Status,
        out: &mut Batch<'_>,
    ) -> Step {
        ex.answers.close_after(seq);
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        let refusal = AnswerKind::Respond(Box::new(move |res: &mut Response<'_>| {
            res.status(status).content_type("text/plain");
            res.body(status.reason().as_bytes());
        }));
        ex.answers.answer_owed(&mut w, out, seq, refusal);
        Step::Answered {
            len: 0,
            keep_alive: false,
        }
    }

    /// The body is complete: the sink answers. Returns whether the connection stays open.
    fn end_upload(&mut self, ex: &mut Exchange, up: Upload, out: &mut Batch<'_>) -> bool {
        if up.is_paused() {
            out.out.resume_input(); // the pause was this body's: the next request is read
        }
        let facts = last_facts(up.facts, ex.last);
        if let Some(seq) = up.owed() {
            // The sink's responder answers: `end` gets a response given already.
            let mut ignored = Vec::new();
            let mut given = Given(&mut *out.out);
            let mut batch = Batch {
                buf: &mut ignored,
                out: &mut given,
            };
            let mut res = Response::new(&mut batch, &mut self.scratch, &mut self.heads, facts, seq);
            res.phase = Phase::Deferred;
            up.end(&mut res);
            return facts.keep_alive;
        }
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        ex.answers
            .answer_next(&mut w, out, facts, |res| up.end(res))
    }

    /// A sink's [`BodyResume`](super::BodyResume) arrived: reading resumes, with the input
    /// held meanwhile.
    pub(super) fn resume_upload(
        &mut self,
        conn: &mut Conn<'_>,
        ex: &mut Exchange,
        msg: &ResumeBody,
    ) -> Action {
        if !ex.upload.as_mut().is_some_and(|up| up.resume(msg)) {
            return Action::Continue; // stale: a later pause, or a body that ended
        }
        conn.resume_read();
        if !conn.input().is_empty() {
            let action = adapter::serve_input(conn, |input, conn| self.serve(ex, input, conn));
            if action != Action::Continue {
                return action;
            }
        }
        if conn.is_read_closed() {
            return self.upload_read_closed(conn, ex);
        }
        Action::Continue
    }

    /// The client finished sending with a body half in: unless what it sent is still held
    /// by a pause, the body cannot complete.
    pub(super) fn upload_read_closed(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange) -> Action {
        match ex.upload.take() {
            Some(up) if up.is_paused() && !conn.input().is_empty() => {
                ex.upload = Some(up); // the rest is read once the sink resumes
                Action::Continue
            }
            Some(up) => {
                up.abort(Aborted::Closed);
                Action::Close
            }
            None if ex.answers.owing() => Action::Continue,
            None => Action::Close,
        }
    }

    /// A timeout with a body half in: a paused one is the server taking its time; otherwise
    /// the client gets 408 (in place of the answer a sink's responder owes, if it took one)
    /// and the sink is told.
    pub(super) fn upload_timed_out(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange) -> Action {
        match ex.upload.take() {
            Some(up) if up.is_paused() => {
                ex.upload = Some(up);
                Action::Continue
            }
            Some(up) => {
                let owed = up.owed();
                up.abort(Aborted::TimedOut);
                let Some(seq) = owed else {
                    <Self as Protocol>::timed_out(self, conn);
                    return Action::Close;
                };
                let mut buf = std::mem::take(&mut self.out_buf);
                let mut batch = Batch {
                    buf: &mut buf,
                    out: &mut *conn,
                };
                self.answer_in_place(ex, seq, Status::REQUEST_TIMEOUT, &mut batch);
                batch.flush();
                self.keep_batch(buf);
                Action::Close
            }
            None => Action::Close,
        }
    }

    /// The answer `seq`, which a sink's responder owed, arrived: if its body is still
    /// coming, the sink is told, the rest of the body is dropped as it arrives, and the
    /// connection closes after the answer.
    pub(super) fn answered_early(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange, seq: u64) {
        if ex.upload.as_ref().and_then(|up| up.owed()) != Some(seq) {
            return;
        }
        if let Some(up) = ex.upload.take() {
            if up.is_paused() {
                conn.resume_read(); // read, to drop: a client blocked in a write reads no answer
            }
            up.abort(Aborted::Answered);
        }
        ex.answers.close_after(seq);
    }
}

/// The facts of an upload's answer: the connection's last if the server is stopping.
fn last_facts(mut facts: ReqFacts, last: bool) -> ReqFacts {
    if last {
        facts.keep_alive = false;
        facts.announce = false;
    }
    facts
}

/// The output of a response given already (the answer is a responder's): bytes written to
/// it are dropped; the rest reaches the connection.
struct Given<'a>(&'a mut dyn Output);

impl Output for Given<'_> {
    fn put(&mut self, _bytes: &[u8]) {} // (the response logs what it ignores)

    fn handle(&mut self) -> Option<ConnHandle> {
        self.0.handle()
    }

    fn spawn(&mut self, job: Job) -> Result<(), Job> {
        self.0.spawn(job)
    }

    fn loop_cx(&mut self) -> Option<LoopCx<'_>> {
        self.0.loop_cx()
    }

    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

/// The connection closed with a body half in: its sink is told.
pub(super) fn closed(ex: Exchange) {
    if let Some(up) = ex.upload {
        up.abort(Aborted::Closed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::testing::Harness;
    use super::super::upload::{BodySink, SinkCx, Trailers};
    use super::super::{Request, Response, Status};
    use super::*;

    /// What the sinks of one server saw.
    #[derive(Debug, Default)]
    struct Log {
        data: Vec<u8>,
        pieces: usize,
        trailers: Vec<(String, Vec<u8>)>,
        aborted: Vec<Aborted>,
    }

    struct Rec {
        log: Arc<Mutex<Log>>,
        /// Refuse the body once it passes this many bytes.
        refuse_past: u64,
    }

    impl BodySink for Rec {
        fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
            let mut log = self.log.lock().unwrap();
            log.data.extend_from_slice(chunk);
            log.pieces += usize::from(!chunk.is_empty());
            if cx.received() > self.refuse_past {
                return Err(Status::CONTENT_TOO_LARGE);
            }
            Ok(())
        }

        fn end(self: Box<Self>, trailers: &Trailers<'_>, res: &mut Response<'_>) {
            let mut log = self.log.lock().unwrap();
            log.trailers = trailers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect();
            let n = log.data.len();
            res.body(format!("streamed {n}").as_bytes());
        }

        fn abort(self: Box<Self>, why: Aborted) {
            self.log.lock().unwrap().aborted.push(why);
        }
    }

    /// `/up` streams (`/up/small` refuses past 4 bytes), `/no` is refused, the rest buffered.
    struct Svc(Arc<Mutex<Log>>);

    impl Service for Svc {
        fn intake(&mut self, req: &Request<'_>) -> Intake {
            let refuse_past = match req.path() {
                "/up" => u64::MAX,
                "/up/small" => 4,
                "/no" => return Intake::Refuse(Status::FORBIDDEN),
                _ => return Intake::Buffer,
            };
            Intake::stream(Rec {
                log: Arc::clone(&self.0),
                refuse_past,
            })
        }

        fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
            res.body(format!("buffered {}", req.body().len()).as_bytes());
        }
    }

    fn harness() -> (Harness<Svc>, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        let server = HttpServer::new(Svc(Arc::clone(&log))).max_body_size(16);
        (Harness::new(server), log)
    }

    fn text(h: &Harness<Svc>) -> String {
        String::from_utf8_lossy(h.output()).into_owned()
    }

    const CHUNKED: &[u8] = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=\"v a\"\r\nhello\r\n1a\r\n, a world of thirty bytes!\r\n0\r\nX-Sum: 42\r\nX-Two:  b \r\n\r\n\
        GET /after HTTP/1.1\r\nHost: h\r\n\r\n";
    const CHUNKED_DATA: &[u8] = b"hello, a world of thirty bytes!";

    /// A streamed body, chunked with extensions and trailers, then a pipelined request: the
    /// sink gets exactly the data and the trailers, and the answers are the same whatever the
    /// reads, down to one byte each.
    #[test]
    fn streamed_bodies_are_the_same_at_every_cut() {
        let length = [
            &b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 31\r\n\r\n"[..],
            CHUNKED_DATA,
            b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n",
        ]
        .concat();
        for stream in [CHUNKED, &length[..]] {
            let (mut whole, _) = harness();
            whole.feed(stream);
            let want = text(&whole);
            assert_eq!(want.matches("HTTP/1.1 200 OK").count(), 2, "{want}");
            assert!(
                want.contains("\r\n\r\nstreamed 31HTTP/1.1 200 OK"),
                "{want}"
            );
            assert!(want.ends_with("buffered 0"), "{want}");
            for cut in 1..stream.len() {
                let (mut h, log) = harness();
                for piece in stream.chunks(cut) {
                    h.feed(piece);
                }
                assert_eq!(text(&h), want, "cut {cut}");
                assert!(!h.is_closed());
                assert_eq!(h.buffered(), 0);
                let log = log.lock().unwrap();
                assert_eq!(log.data, CHUNKED_DATA, "cut {cut}");
                assert!(log.aborted.is_empty());
                if stream == CHUNKED {
                    let t: Vec<_> = log.trailers.iter().map(|(n, v)| (&n[..], &v[..])).collect();
                    assert_eq!(t, [("X-Sum", &b"42"[..]), ("X-Two", b"b")], "cut {cut}");
                }
            }
        }
    }

    /// The in-memory limit binds buffered bodies only: at the limit buffered, one over 413
    /// (and a close); a streamed body of any size.
    #[test]
    fn the_body_limit_binds_buffered_bodies_only() {
        let post = |path: &str, n: usize| {
            let mut r = format!("POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {n}\r\n\r\n")
                .into_bytes();
            r.resize(r.len() + n, b'x');
            r
        };
        let (mut h, _) = harness();
        h.feed(&post("/buf", 16));
        assert!(
            text(&h).ends_with("buffered 16") && !h.is_closed(),
            "{}",
            text(&h)
        );
        let (mut h, _) = harness();
        h.feed(&post("/buf", 17));
        assert!(
            text(&h).starts_with("HTTP/1.1 413 ") && h.is_closed(),
            "{}",
            text(&h)
        );
        let (mut h, log) = harness();
        h.feed(&post("/up", 17));
        h.feed(&post("/up", 100_000));
        assert!(
            text(&h).ends_with("streamed 100017") && !h.is_closed(),
            "{}",
            text(&h)
        );
        assert_eq!(log.lock().unwrap().pieces, 2);
        // Chunked: 16 decoded bytes buffered, 17 refused, 17 streamed.
        let chunked = |path: &str, n: usize| {
            let data = "y".repeat(n);
            format!("POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{data}\r\n0\r\n\r\n")
        };
        let (mut h, _) = harness();
        h.feed(chunked("/buf", 16).as_bytes());
        assert!(text(&h).ends_with("buffered 16"), "{}", text(&h));
        let (mut h, _) = harness();
        h.feed(chunked("/buf", 17).as_bytes());
        assert!(
            text(&h).starts_with("HTTP/1.1 413 ") && h.is_closed(),
            "{}",
            text(&h)
        );
        let (mut h, _) = harness();
        h.feed(chunked("/up", 17).as_bytes());
        assert!(text(&h).ends_with("streamed 17"), "{}", text(&h));
    }

    /// A sink that gives up answers its status and closes; nothing after is answered.
    #[test]
    fn a_sink_that_gives_up_answers_its_status() {
        let (mut h, log) = harness();
        h.feed(b"POST /up/small HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123");
        assert_eq!(h.output(), b"");
        h.feed(b"456789GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let out = text(&h);
        assert!(
            out.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("Connection: close\r\n"), "{out}");
        assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        assert!(h.is_closed());
        assert_eq!(log.lock().unwrap().data, b"0123456789");
    }

    /// Broken chunked framing mid-body: 400, a close, and the sink told why.
    #[test]
    fn malformed_framing_aborts_the_sink() {
        let (mut h, log) = harness();
        h.feed(b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
        h.feed(b"3 \r\nabc\r\n0\r\n\r\n");
        assert!(text(&h).starts_with("HTTP/1.1 400 "), "{}", text(&h));
        assert!(h.is_closed());
        let log = log.lock().unwrap();
        assert_eq!(log.data, b"abc");
        assert_eq!(log.aborted, [Aborted::Malformed(Status::BAD_REQUEST)]);
    }

    /// `Expect: 100-continue`: a streamed body gets `100 Continue` first; a refused one its
    /// status and no invitation.
    #[test]
    fn expect_continue_with_a_streamed_body() {
        let (mut h, log) = harness();
        h.feed(
            b"POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(h.output(), CONTINUE);
        h.feed(b"abc");
        assert!(text(&h).ends_with("streamed 3"), "{}", text(&h));
        assert_eq!(log.lock().unwrap().data, b"abc");
        let (mut h, _) = harness();
        h.feed(
            b"POST /no HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(
            text(&h).starts_with("HTTP/1.1 403 Forbidden\r\n"),
            "{}",
            text(&h)
        );
        assert!(h.is_closed());
    }
}
