//! The server's side of streamed request bodies (see `upload.rs` for the sink's): choosing
//! how a body is taken once its head is in, feeding it to the sink as it arrives, and what
//! the connection's events mean for a body half in — a resume, the client's end of stream,
//! a timeout, a stop, a close.

use super::fast::Head;
use super::pipeline::Writer;
use super::request::{BodyKind, Framing};
use super::response::Batch;
use super::server::{bodiless, facts, Exchange, Step};
use super::upload::{Aborted, Fed, Intake, ResumeBody, Upload};
use super::{HttpServer, Service};
use crate::adapter::{self, Protocol};
use crate::{Action, Conn};

/// The interim answer to `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

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
        let sink = match self.service.intake(&bodiless(req, f)) {
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
        ex.upload = Some(Box::new(Upload::new(sink, len, facts(f), ex.uploads)));
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
    /// is complete, its sink answers.
    pub(super) fn feed_upload(
        &mut self,
        ex: &mut Exchange,
        body: &[u8],
        out: &mut Batch<'_>,
    ) -> Step {
        let Some(up) = ex.upload.as_mut() else {
            return Step::Used(0);
        };
        match up.feed(body, &mut *out.out) {
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
                Step::Refuse(status)
            }
            Fed::Malformed(status) => {
                if let Some(up) = ex.upload.take() {
                    up.abort(Aborted::Malformed(status));
                }
                Step::Refuse(status)
            }
        }
    }

    /// The body is complete: the sink answers. Returns whether the connection stays open.
    fn end_upload(&mut self, ex: &mut Exchange, up: Upload, out: &mut Batch<'_>) -> bool {
        if up.is_paused() {
            out.out.resume_input(); // the pause was this body's: the next request is read
        }
        let mut facts = up.facts;
        if ex.last {
            facts.keep_alive = false;
            facts.announce = false;
        }
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        ex.answers.answer_next(&mut w, out, facts, |res| up.end(res))
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
    /// the client gets 408 and the sink is told.
    pub(super) fn upload_timed_out(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange) -> Action {
        match ex.upload.take() {
            Some(up) if up.is_paused() => {
                ex.upload = Some(up);
                Action::Continue
            }
            Some(up) => {
                up.abort(Aborted::TimedOut);
                <Self as Protocol>::timed_out(self, conn);
                Action::Close
            }
            None => Action::Close,
        }
    }
}

/// The connection closed with a body half in: its sink is told.
pub(super) fn closed(ex: Exchange) {
    if let Some(up) = ex.upload {
        up.abort(Aborted::Closed);
    }
}
