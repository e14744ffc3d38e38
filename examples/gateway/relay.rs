//! An upstream's answer, relayed to the client as it arrives: the head starts the client's
//! answer, the body is pushed piece by piece (a small answer complete in one read goes
//! whole), and while the client is full the upstream is not read.

use eventide::http::{BodyWriter, Flow, Reply, Responder, Status};
use eventide::{Action, Conn, LoopCx};

use super::parse::{self, Piece, Read};
use super::{Exchange, Gateway};

impl Gateway {
    /// The upstream's bytes on `link`'s connection: the head starts the client's answer, the
    /// body follows piece by piece; while the client is full, reading this upstream pauses.
    pub(super) fn on_data(&mut self, conn: &mut Conn<'_>, link: usize) -> Action {
        let Some(ex) = self.links[link].exchange.as_mut() else {
            log::warn!("gateway: bytes from an upstream with no request on it; closing");
            return Action::Close;
        };
        // (An answer that comes before the request's body is all sent goes to the client at
        // once too: `upload.rs` forwards no more of the body, see `Gateway::upload_bytes`.)
        let input = conn.input();
        let (read, flow) = ex.relay(input, &mut conn.loop_cx());
        let flow = match flow {
            Ok(flow) => flow,
            Err(e) => {
                // The client has gone: the rest of this answer goes nowhere.
                log::debug!("gateway: client gone mid-answer: {e}");
                self.links[link].exchange = None;
                return Action::Close;
            }
        };
        match read {
            Read::More(n) => {
                conn.consume(n);
                if flow == Flow::Full {
                    self.pause(conn, link);
                }
                Action::Continue
            }
            Read::Done(n) => {
                conn.consume(n);
                let ex = self.links[link].exchange.take().expect("checked above");
                // Reused only if clean: the whole request went out (an early answer cut
                // its body short) and the answer is all that came back.
                let reuse = ex.reader.reusable() && conn.input().is_empty() && ex.upload.is_none();
                ex.finish();
                let upstream = self.links[link].upstream;
                if reuse && self.idle[upstream].len() < self.max_idle {
                    self.idle[upstream].push(link);
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

    /// The client of `link`'s answer is full: stop reading the upstream (and its silence
    /// timeout: the wait is the client's) until the client has drained.
    fn pause(&mut self, conn: &mut Conn<'_>, link: usize) {
        let Some(body) = self.links[link]
            .exchange
            .as_ref()
            .and_then(|e| e.body.as_ref())
        else {
            return;
        };
        conn.pause_read();
        conn.set_idle_timeout(None);
        let upstream = conn.handle();
        let timeout = self.timeout;
        body.on_ready(move || {
            let _ = upstream.with_conn(move |c| {
                c.set_idle_timeout(Some(timeout));
                c.resume_read();
            });
        });
    }

    /// The request on `link` ends without a complete answer from upstream: `status` if the
    /// client can still be told, else its answer is cut short (its connection closes).
    pub(super) fn fail(&mut self, link: usize, status: Status) {
        let Some(ex) = self.links[link].exchange.take() else {
            return;
        };
        if let Some(body) = ex.body {
            body.fail();
        } else if let Some(responder) = ex.responder {
            let _ = responder.respond(move |res| {
                res.status(status)
                    .content_type("text/plain")
                    .body(format!("{}\n", status.reason()).as_bytes());
            });
        }
    }
}

impl Exchange {
    /// Reads the upstream's `input`: the head starts the client's answer, body pieces are
    /// pushed to it — except an answer complete in this read, small and not for a `HEAD`,
    /// which goes to the client whole, as one message. Returns what was read, and whether
    /// the client takes more (an error: the client has gone).
    fn relay(&mut self, input: &[u8], cx: &mut LoopCx<'_>) -> (Read, std::io::Result<Flow>) {
        let head_only = self.reader.head_only();
        let (responder, body) = (&mut self.responder, &mut self.body);
        let mut head = None;
        let mut small = Vec::new();
        let mut flow = Ok(Flow::Open);
        let read = self.reader.read(input, &mut |piece| {
            if flow.is_err() {
                return;
            }
            match piece {
                Piece::Head(answer) => head = Some((head_of(answer), answer.len)),
                Piece::Body(bytes) if body.is_none() && small.len() + bytes.len() <= SMALL => {
                    small.extend_from_slice(bytes);
                }
                Piece::Body(bytes) => {
                    if let Some(head) = head.take() {
                        flow = start(responder, body, head, &small, cx);
                        small = Vec::new();
                    }
                    if let (Some(w), Ok(_)) = (body.as_mut(), &flow) {
                        flow = w.push_local(cx, bytes).map(|f| match flow {
                            Ok(Flow::Full) => Flow::Full,
                            _ => f,
                        });
                    }
                }
            }
        });
        if let Some((reply, len)) = head.filter(|_| flow.is_ok()) {
            match responder.take() {
                Some(r) if matches!(read, Read::Done(_)) && !head_only => {
                    flow = r.send(reply.body(small)).map(|()| Flow::Open);
                }
                r => {
                    *responder = r;
                    flow = start(responder, body, (reply, len), &small, cx);
                }
            }
        }
        (read, flow)
    }

    /// The upstream's answer is complete: so is the client's.
    pub(super) fn finish(self) {
        if let Some(body) = self.body {
            if let Err(e) = body.finish() {
                log::warn!("gateway: ending an answer: {e}");
            }
        }
    }
}

/// The most body bytes of an answer complete in one read that go to the client with its
/// head as one reply (a larger or longer answer is pushed).
const SMALL: usize = 64 * 1024;

/// Starts pushing the client's answer: its `head` (and length), then the body bytes `first`.
fn start(
    responder: &mut Option<Responder>,
    body: &mut Option<BodyWriter>,
    (reply, len): (Reply, Option<u64>),
    first: &[u8],
    cx: &mut LoopCx<'_>,
) -> std::io::Result<Flow> {
    let Some(r) = responder.take() else {
        log::warn!("gateway: a second head for one answer");
        return Ok(Flow::Open);
    };
    let writer = body.insert(r.push(reply, len)?);
    if first.is_empty() {
        return Ok(Flow::Open);
    }
    writer.push_local(cx, first)
}

/// The client's head for the upstream's answer: its status and end-to-end fields.
fn head_of(answer: &parse::Answer) -> Reply {
    let status = Status::new(answer.status).unwrap_or(Status::BAD_GATEWAY);
    answer
        .headers
        .iter()
        .fold(Reply::new(status), |reply, (name, value)| {
            reply.header(name, value)
        })
}
