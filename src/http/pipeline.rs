//! The order of a connection's answers. HTTP/1.1 answers pipelined requests in the order they
//! came; when one is answered later (deferred) the ones after it wait in a [`Pipeline`] of
//! slots — the bytes already written for each and what still follows them — and go out, in
//! order, as the front one is given. Every slot is an answer the connection owes its peer
//! (`Conn::owe_answer`): a graceful close waits for them, and at the bound reading pauses.
//! A connection that never defers never builds a pipeline, and pays nothing for it.

use std::collections::VecDeque;

use super::deferred::AnswerKind;
use super::files::FileBody;
use super::push::PushSlot;
use super::response::{Batch, Heads, Next, ReqFacts, Response};
use super::stream::{Pumped, Streaming};
use crate::adapter::{Job, Output};
use crate::ConnHandle;

/// Answers owed on one connection, oldest first.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// The request sequence number of the first slot.
    first: u64,
    slots: VecDeque<Slot>,
}

/// One answer owed.
#[derive(Debug)]
struct Slot {
    /// Bytes of this answer written already, waiting for the answers before it.
    held: Vec<u8>,
    tail: Tail,
    facts: ReqFacts,
    /// The connection closes after this answer (later slots are dropped).
    close: bool,
}

/// What follows a slot's held bytes.
#[derive(Debug)]
enum Tail {
    /// The answer is still to come.
    Owed,
    /// Nothing: the answer is all in `held`.
    Done,
    /// A file range.
    File(FileBody),
    /// A streamed body.
    Stream(Streaming),
    /// A body pushed through a `BodyWriter`.
    Push(PushSlot),
}

/// The per-loop buffers a response is written with.
pub(crate) struct Writer<'a> {
    pub scratch: &'a mut Vec<u8>,
    pub heads: &'a mut Heads,
}

/// The answers of one connection: the next request's sequence number and the answers owed.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    next_seq: u64,
    pipe: Option<Box<Pipeline>>,
}

/// An output that keeps the bytes of an answer that must wait its turn, and reaches the
/// connection for everything else (a handle for a responder, the worker pool).
struct Held<'a> {
    bytes: &'a mut Vec<u8>,
    conn: &'a mut dyn Output,
}

impl Output for Held<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    fn handle(&mut self) -> Option<ConnHandle> {
        self.conn.handle()
    }

    fn spawn(&mut self, job: Job) -> Result<(), Job> {
        self.conn.spawn(job)
    }

    fn loop_cx(&mut self) -> Option<crate::LoopCx<'_>> {
        self.conn.loop_cx()
    }

    #[cfg(feature = "tokio")]
    fn spawn_future(
        &mut self,
        fut: crate::bridge::UnitFuture,
    ) -> Result<(), crate::bridge::UnitFuture> {
        self.conn.spawn_future(fut)
    }
}

impl Answers {
    /// Whether answers are owed (later ones wait).
    #[inline]
    pub(crate) fn owing(&self) -> bool {
        self.pipe.is_some()
    }

    /// Whether an answer owed closes the connection (said so, or the request's body was not
    /// all read): requests read after it are dropped unread, as their answers could never be
    /// sent (RFC 9112 §9.6: no further requests are processed).
    #[inline]
    pub(crate) fn closing(&self) -> bool {
        self.pipe
            .as_ref()
            .is_some_and(|pipe| pipe.slots.iter().any(|slot| slot.close))
    }

    /// The sequence number the next request's answer gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The answer to request `seq`, still owed, closes the connection (it says so): the
    /// request's body was not all read.
    pub(crate) fn close_after(&mut self, seq: u64) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let slot = seq
            .checked_sub(pipe.first)
            .and_then(|i| pipe.slots.get_mut(i as usize));
        if let Some(slot) = slot.filter(|s| matches!(s.tail, Tail::Owed)) {
            slot.facts.keep_alive = false;
            slot.facts.announce = false;
            slot.close = true;
        }
    }

    /// Answers the next request with `call`: at once, or — with answers owed ahead of it —
    /// into a slot that waits its turn. Returns whether the connection stays open after it.
    ///
    /// (The sequence number advances only while answers are owed: a responder made with none
    /// owed takes the current number, which starts the pipeline.)
    #[inline]
    pub(crate) fn answer_next(
        &mut self,
        w: &mut Writer<'_>,
        out: &mut Batch<'_>,
        facts: ReqFacts,
        call: impl FnOnce(&mut Response<'_>),
    ) -> bool {
        if self.pipe.is_some() {
            return self.answer_behind(w, out, facts, call);
        }
        let seq = self.next_seq;
        let mut res = Response::new(out, w.scratch, w.heads, facts, seq);
        call(&mut res);
        res.finish();
        let keep = res.keep_alive();
        if res.is_all_written() {
            return keep; // the common case: the whole answer is in the output
        }
        let next = res.take_next();
        self.after_answer(out, facts, seq, keep, next)
    }

    /// The rest of an answer given at once: its file, or the start of a pipeline.
    #[cold]
    fn after_answer(
        &mut self,
        out: &mut Batch<'_>,
        facts: ReqFacts,
        seq: u64,
        keep: bool,
        next: Next,
    ) -> bool {
        match next {
            Next::Nothing => keep,
            Next::File(body) if out.out.zero_copy_files() => {
                out.flush();
                let (file, offset, len) = body.into_parts();
                out.out.put_file(file, offset, len) && keep
            }
            Next::File(body) => {
                // Read in pieces as the output drains: the answer stays owed until it is out.
                self.start_pipeline(out, facts, seq, keep, Tail::File(body));
                self.advance(out) && keep
            }
            Next::Stream(body) => {
                self.start_pipeline(out, facts, seq, keep, Tail::Stream(body));
                self.advance(out) && keep
            }
            Next::Push(slot) => {
                self.start_pipeline(out, facts, seq, keep, Tail::Push(slot));
                self.advance(out) && keep
            }
            Next::Deferred => {
                self.start_pipeline(out, facts, seq, keep, Tail::Owed);
                keep
            }
        }
    }

    /// Starts the pipeline with the answer to request `seq`, owed (`tail`).
    fn start_pipeline(
        &mut self,
        out: &mut Batch<'_>,
        facts: ReqFacts,
        seq: u64,
        keep: bool,
        tail: Tail,
    ) {
        out.out.owe_answer();
        let mut slots = VecDeque::with_capacity(4);
        slots.push_back(Slot {
            held: Vec::new(),
            tail,
            facts,
            close: !keep,
        });
        self.pipe = Some(Box::new(Pipeline { first: seq, slots }));
        self.next_seq = seq + 1;
    }

    /// The output drained: a file body sent in pieces goes on (a pushed body's writer may go
    /// on), and the answers after it. Returns whether the connection stays open.
    pub(crate) fn drained(&mut self, out: &mut Batch<'_>) -> bool {
        if let Some(Tail::Push(slot)) = self.front_tail() {
            slot.drained();
        }
        self.advance(out)
    }

    /// The output passed its high-water mark: a pushed body at the front is told to wait.
    pub(crate) fn high_water(&mut self) {
        if let Some(Tail::Push(slot)) = self.front_tail() {
            slot.high_water();
        }
    }

    fn front_tail(&self) -> Option<&Tail> {
        Some(&self.pipe.as_ref()?.slots.front()?.tail)
    }

    /// An answer with answers owed ahead of it: written into a slot that waits its turn.
    #[cold]
    fn answer_behind(
        &mut self,
        w: &mut Writer<'_>,
        out: &mut Batch<'_>,
        facts: ReqFacts,
        call: impl FnOnce(&mut Response<'_>),
    ) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut held = Vec::new();
        let (keep, next) = {
            let mut sink = Held {
                bytes: &mut held,
                conn: &mut *out.out,
            };
            let mut buf = Vec::new();
            let mut batch = Batch {
                buf: &mut buf,
                out: &mut sink,
            };
            let r = respond(w, &mut batch, facts, seq, call);
            batch.flush();
            r
        };
        out.out.owe_answer();
        if let Some(pipe) = self.pipe.as_mut() {
            pipe.slots.push_back(Slot {
                held,
                tail: Tail::from(next),
                facts,
                close: !keep,
            });
        }
        keep
    }

    /// An answer for request `seq` arrived: it is written at once if it is the oldest owed,
    /// kept in its slot otherwise, and the answers that were waiting for it follow. Returns
    /// whether the connection stays open. An answer for a request no longer owed (the
    /// connection moved on after a close) is dropped.
    pub(crate) fn answer_owed(
        &mut self,
        w: &mut Writer<'_>,
        out: &mut Batch<'_>,
        seq: u64,
        kind: AnswerKind,
    ) -> bool {
        let Some(pipe) = self.pipe.as_mut() else {
            return true;
        };
        if matches!(kind, AnswerKind::Pushed) {
            // A pushed body's bytes or end: taken when its answer is at the front.
            return self.advance(out);
        }
        let Some(i) = seq.checked_sub(pipe.first).map(|i| i as usize) else {
            return true;
        };
        let Some(slot) = pipe.slots.get_mut(i) else {
            return true;
        };
        if !matches!(slot.tail, Tail::Owed) {
            return true;
        }
        let facts = slot.facts;
        let (keep, next) = if i == 0 {
            respond(w, out, facts, seq, |res| apply(kind, res))
        } else {
            let mut sink = Held {
                bytes: &mut slot.held,
                conn: &mut *out.out,
            };
            let mut buf = Vec::new();
            let mut batch = Batch {
                buf: &mut buf,
                out: &mut sink,
            };
            let r = respond(w, &mut batch, facts, seq, |res| apply(kind, res));
            batch.flush();
            r
        };
        slot.tail = Tail::from(next);
        slot.close = !keep;
        self.advance(out)
    }

    /// Writes the answers at the front that are ready, up to the first still owed. Returns
    /// whether the connection stays open (an answer written closes it, or failed).
    fn advance(&mut self, out: &mut Batch<'_>) -> bool {
        let Some(pipe) = self.pipe.as_mut() else {
            return true;
        };
        while let Some(front) = pipe.slots.front_mut() {
            if !front.held.is_empty() {
                out.flush();
                out.out.put_vec(std::mem::take(&mut front.held));
            }
            let ok = match write_tail(std::mem::replace(&mut front.tail, Tail::Done), out) {
                Ok(ok) => ok,
                Err(rest) => {
                    // An answer still owed, or a body's rest once the output drains (or its
                    // writer pushes more).
                    front.tail = rest;
                    return true;
                }
            };
            let done = pipe.slots.pop_front();
            pipe.first += 1;
            out.out.answer_given();
            if !ok || done.is_some_and(|s| s.close) {
                // Nothing may follow: the rest is dropped with the connection.
                for _ in pipe.slots.drain(..) {
                    out.out.answer_given();
                }
                self.pipe = None;
                return false;
            }
        }
        self.pipe = None;
        true
    }
}

/// Writes what follows a slot's held bytes as far as the output allows: whether it all went
/// out (`false`: it failed, the answer is cut short), or what is left to wait for.
fn write_tail(tail: Tail, out: &mut Batch<'_>) -> Result<bool, Tail> {
    let pumped = match tail {
        Tail::Owed => return Err(Tail::Owed),
        Tail::Done => return Ok(true),
        Tail::File(body) if out.out.zero_copy_files() => {
            out.flush();
            let (file, offset, len) = body.into_parts();
            return Ok(out.out.put_file(file, offset, len));
        }
        Tail::File(mut body) => {
            out.flush();
            match copy_file(out.out, &mut body) {
                Copied::All => Pumped::All,
                Copied::Some => return Err(Tail::File(body)),
                Copied::Failed => Pumped::Failed,
            }
        }
        Tail::Stream(mut body) => {
            out.flush();
            match body.pump(out.out, &mut Vec::new()) {
                Pumped::Some => return Err(Tail::Stream(body)),
                pumped => pumped,
            }
        }
        Tail::Push(mut slot) => {
            out.flush();
            match slot.pump(out.out) {
                Pumped::Some => return Err(Tail::Push(slot)),
                pumped => pumped,
            }
        }
    };
    Ok(matches!(pumped, Pumped::All))
}

impl From<Next> for Tail {
    fn from(next: Next) -> Tail {
        match next {
            Next::Nothing => Tail::Done,
            Next::Deferred => Tail::Owed,
            Next::File(body) => Tail::File(body),
            Next::Stream(body) => Tail::Stream(body),
            Next::Push(slot) => Tail::Push(slot),
        }
    }
}

/// Writes one response with `call` and completes it; returns whether the connection stays
/// open after it, and what follows its bytes.
fn respond(
    w: &mut Writer<'_>,
    out: &mut Batch<'_>,
    facts: ReqFacts,
    seq: u64,
    call: impl FnOnce(&mut Response<'_>),
) -> (bool, Next) {
    let mut res = Response::new(out, w.scratch, w.heads, facts, seq);
    call(&mut res);
    res.finish();
    (res.keep_alive(), res.take_next())
}

/// Writes a deferred answer.
fn apply(kind: AnswerKind, res: &mut Response<'_>) {
    match kind {
        AnswerKind::Respond(f) => f(res),
        AnswerKind::Reply(reply) => res.reply(reply),
        AnswerKind::Dropped => res.fail(),
        AnswerKind::Push(head) => res.push_head(*head),
        AnswerKind::Pushed => {} // not an answer of its own: see `answer_owed`
    }
}

/// Most bytes of a file body read into the output at a time, where it cannot be sent from
/// the file (TLS).
const FILE_PIECE: usize = 64 * 1024;

/// How far [`copy_file`] got.
enum Copied {
    All,
    /// The output is waiting for the kernel: the rest when it drains.
    Some,
    /// The file ended early or failed to read: the answer is cut short.
    Failed,
}

/// Reads `body` into `out` piece by piece until it is all written or the output waits for
/// the kernel, advancing `body` past what was written.
fn copy_file(out: &mut dyn Output, body: &mut FileBody) -> Copied {
    use std::os::unix::fs::FileExt;
    let mut piece = vec![0u8; FILE_PIECE.min(usize::try_from(body.len()).unwrap_or(FILE_PIECE))];
    while !body.is_empty() {
        if out.is_queued() {
            return Copied::Some;
        }
        let want = piece
            .len()
            .min(usize::try_from(body.len()).unwrap_or(usize::MAX));
        match body.file().read_at(&mut piece[..want], body.offset()) {
            Ok(0) => {
                log::warn!(
                    "eventide::http: a file body ended {} bytes short",
                    body.len()
                );
                return Copied::Failed;
            }
            Ok(n) => {
                out.put(&piece[..n]);
                body.advance(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("eventide::http: reading a file body: {e}");
                return Copied::Failed;
            }
        }
    }
    Copied::All
}
