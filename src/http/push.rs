//! Push-fed response bodies: the service starts a response (status, headers, a known length
//! or chunked) and a [`BodyWriter`] pushes the body in pieces later, from wherever its bytes
//! come — an outbound connection's callback on the same loop (a gateway relaying its
//! upstream), or any other thread.
//!
//! Both sides share one small state: the body bytes waiting for the connection, whether the
//! client's output is full, the end of the body, and the producer's wake-up. On the
//! connection's own loop, once the answer is at the front of the pipeline, a piece goes
//! straight to the connection's output with [`LoopCx::write_to`] (no mailbox, no queue);
//! before that, or from another thread, it waits in the state and one message per burst
//! tells the connection to take it (`ConnHandle::send`: one eventfd write per burst).
//!
//! Back-pressure: a push returns [`Flow::Full`] while the client's output is past its
//! high-water mark (or too much waits in the state); [`BodyWriter::on_ready`] runs a closure
//! once the client has drained, or has gone. A push never refuses bytes for being full: the
//! producer stops pushing and waits, so memory stays bounded by the mark plus one piece.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::deferred::{Answer, AnswerKind, Responder};
use super::response::{Next, Response};
use super::stream::{chunk_size, Delimit, Pumped};
use crate::adapter::Output;
use crate::{ConnHandle, LoopCx};

/// The most body bytes waiting for the connection before a push says [`Flow::Full`].
const QUEUE_HIGH: usize = 256 * 1024;

/// Whether the producer of a pushed body may go on (see [`BodyWriter::push`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// The client takes the body as fast as it comes: push more.
    Open,
    /// The client's output is past its high-water mark: stop pushing (the bytes given were
    /// taken) and push again once [`BodyWriter::on_ready`] runs.
    Full,
}

type Wake = Box<dyn FnOnce() + Send>;

/// What a writer and its connection share.
struct Shared {
    to: ConnHandle,
    /// The answer's place on its connection.
    seq: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// How the body is framed; set when the head is written.
    delimit: Option<Delimit>,
    /// The head is out and the answer is at the front: pieces may go straight out.
    active: bool,
    /// Body bytes (unframed) waiting for the connection.
    queue: Vec<u8>,
    /// A message telling the connection to take the queue is on its way.
    posted: bool,
    /// The client's output passed its high-water mark and has not drained since.
    high_water: bool,
    /// Bytes written straight out during the loop turn that started at `turn`: they reach
    /// the connection only after the callback, so its high-water mark cannot see them yet.
    direct: usize,
    turn: Option<std::time::Instant>,
    end: Option<End>,
    /// The connection closed, or the answer was dropped: nothing more goes out.
    gone: bool,
    /// Runs once the producer may push again.
    wake: Option<Wake>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every byte was pushed.
    Finished,
    /// The body is cut short: the connection closes.
    Failed,
}

impl State {
    fn full(&self) -> bool {
        self.high_water || self.queue.len() >= QUEUE_HIGH || self.direct >= QUEUE_HIGH
    }

    /// The wake-up to run, if the producer may go on now.
    fn take_wake(&mut self) -> Option<Wake> {
        if self.gone || !self.full() {
            self.wake.take()
        } else {
            None
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the connection to take what waits, unless a message is already on its way.
    fn post(&self, st: &mut State) {
        if !std::mem::replace(&mut st.posted, true) {
            let msg = Answer::message(self.seq, AnswerKind::Pushed);
            if self.to.send(msg).is_err() {
                st.gone = true;
            }
        }
    }
}

/// Pushes the body of one response started with [`Response::push_body`] or
/// [`Responder::push`]: `Send`, usable from any thread, and from an outbound connection's
/// callback on the connection's own loop with [`push_local`](BodyWriter::push_local), which
/// writes straight to the connection.
///
/// End the body with [`finish`](BodyWriter::finish); [`fail`](BodyWriter::fail) cuts it
/// short (the connection closes, so the client sees a body that ended early, never one that
/// looks complete). A writer dropped unfinished fails. With a known length, pushing more or
/// finishing with fewer bytes is an error and cuts the response too. Once the client has
/// gone, every call fails with `NotConnected`.
///
/// ```
/// use eventide::http::{Flow, Request, Response};
///
/// fn ticker(_req: &Request<'_>, res: &mut Response<'_>) {
///     let mut body = res.content_type("text/plain").push_body(None);
///     std::thread::spawn(move || {
///         for i in 0..10 {
///             match body.push(format!("tick {i}\n").as_bytes()) {
///                 Ok(Flow::Open) => {}
///                 Ok(Flow::Full) => {
///                     // A real producer waits for `on_ready`; this one just slows down.
///                     std::thread::sleep(std::time::Duration::from_millis(10));
///                 }
///                 Err(_) => return, // the client went away
///             }
///         }
///         let _ = body.finish();
///     });
/// }
/// # let _ = ticker;
/// ```
pub struct BodyWriter {
    /// `None`: no body goes out — the head only (`no_body`), or nowhere to go (pushes fail).
    shared: Option<Arc<Shared>>,
    /// Bytes still due with a known length.
    left: Option<u64>,
    /// The head only: pieces are dropped, and any length is right.
    no_body: bool,
    done: bool,
}

/// The connection's side of a pushed body: the front of its pipeline while the body flows.
/// Dropped (the connection closed, the answer was discarded), it tells the writer.
pub(crate) struct PushSlot {
    shared: Arc<Shared>,
}

impl BodyWriter {
    fn new(shared: Option<Arc<Shared>>, len: Option<u64>, no_body: bool) -> BodyWriter {
        BodyWriter {
            shared,
            left: len,
            no_body,
            done: false,
        }
    }

    /// Pushes `bytes` of the body, from any thread: they wait in the writer's state and the
    /// connection takes them on its loop (one message per burst). Returns whether to go on.
    pub fn push(&mut self, bytes: &[u8]) -> io::Result<Flow> {
        self.push_with(None, bytes)
    }

    /// Pushes `bytes` of the body from a callback on the connection's own loop (an outbound
    /// connection's, a timer's): once the head is out and earlier answers are written, they
    /// go straight to the connection's output, as [`LoopCx::write_to`] writes; otherwise, or
    /// from another loop, as [`push`](BodyWriter::push) does.
    pub fn push_local(&mut self, cx: &mut LoopCx<'_>, bytes: &[u8]) -> io::Result<Flow> {
        self.push_with(Some(cx), bytes)
    }

    fn push_with(&mut self, cx: Option<&mut LoopCx<'_>>, bytes: &[u8]) -> io::Result<Flow> {
        self.check_open()?;
        if let Some(left) = self.left.as_mut() {
            let n = bytes.len() as u64;
            if n > *left && !self.no_body {
                let msg = format!("{n} bytes pushed with {left} left of the Content-Length");
                return Err(self.cut(io::ErrorKind::InvalidInput, msg));
            }
            *left = left.saturating_sub(n);
        }
        let Some(shared) = self.shared.as_ref().filter(|_| !self.no_body) else {
            return Ok(Flow::Open);
        };
        if bytes.is_empty() {
            return Ok(Flow::Open);
        }
        let mut st = shared.lock();
        let to = shared.to.id();
        match (cx, st.delimit) {
            (Some(cx), Some(delimit))
                if st.active && st.queue.is_empty() && cx.index() == to.loop_index() =>
            {
                // In order (nothing waits before it) and on the loop: straight out.
                if st.turn != Some(cx.now()) {
                    st.turn = Some(cx.now());
                    st.direct = 0;
                }
                st.direct += bytes.len();
                if st.direct >= QUEUE_HIGH {
                    // Enough for one turn: the connection takes it first, then wakes us.
                    shared.post(&mut st);
                }
                if delimit == Delimit::Chunked {
                    let mut size = [0u8; 20];
                    cx.write_to(to, chunk_size(bytes.len(), &mut size))?;
                    cx.write_to(to, bytes)?;
                    cx.write_to(to, b"\r\n")?;
                } else {
                    cx.write_to(to, bytes)?;
                }
            }
            _ => {
                st.queue.extend_from_slice(bytes);
                shared.post(&mut st);
            }
        }
        Ok(if st.full() { Flow::Full } else { Flow::Open })
    }

    /// Ends the body: every byte was pushed (with a known length, fewer is an error, which
    /// cuts the response).
    pub fn finish(mut self) -> io::Result<()> {
        self.check_open()?;
        if let Some(left) = self.left.filter(|&l| l > 0 && !self.no_body) {
            let msg = format!("the body ended {left} bytes short of its Content-Length");
            return Err(self.cut(io::ErrorKind::InvalidInput, msg));
        }
        self.end(End::Finished);
        Ok(())
    }

    /// Cuts the body short (the source failed): the connection closes after what was
    /// pushed, so the client sees a body that ended early.
    pub fn fail(mut self) {
        self.end(End::Failed);
    }

    /// Runs `wake` (on the connection's loop, or at once on this thread) once a push may go
    /// on: the client's output has drained below its mark, or the client has gone (a push
    /// then fails). Replaces a wake-up registered before.
    pub fn on_ready(&self, wake: impl FnOnce() + Send + 'static) {
        let now = match self.shared.as_ref().filter(|_| !self.no_body) {
            None => Some(Box::new(wake) as Wake),
            Some(shared) => {
                let mut st = shared.lock();
                st.wake = Some(Box::new(wake));
                st.take_wake()
            }
        };
        if let Some(wake) = now {
            wake();
        }
    }

    /// Whether the client has gone (a push would fail).
    pub fn is_closed(&self) -> bool {
        match &self.shared {
            Some(s) => s.lock().gone || s.to.is_closed(),
            None => !self.no_body,
        }
    }

    fn check_open(&self) -> io::Result<()> {
        if self.shared.is_none() && !self.no_body {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "this body goes nowhere: its response was given already, or has no connection",
            ));
        }
        if self.done {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the body was already ended",
            ));
        }
        if self.is_closed() && !self.no_body {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the client has gone: the body goes nowhere",
            ));
        }
        Ok(())
    }

    /// Cuts the body for a broken length, and describes why.
    fn cut(&mut self, kind: io::ErrorKind, msg: String) -> io::Error {
        log::warn!("eventide::http: a pushed body was cut: {msg}");
        self.end(End::Failed);
        io::Error::new(kind, msg)
    }

    fn end(&mut self, end: End) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(shared) = self.shared.as_ref().filter(|_| !self.no_body) {
            let mut st = shared.lock();
            st.end = Some(end);
            shared.post(&mut st);
        }
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        if !self.done && self.shared.is_some() && !self.no_body {
            log::warn!("eventide::http: a pushed body was dropped unfinished; cutting it");
        }
        self.end(End::Failed);
    }
}

impl fmt::Debug for BodyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyWriter")
            .field("left", &self.left)
            .field("no_body", &self.no_body)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl PushSlot {
    /// The answer is at the front and its head is out: the waiting bytes go to `out`, framed,
    /// then the end if it came.
    pub(crate) fn pump(&mut self, out: &mut dyn Output) -> Pumped {
        let (queue, delimit, end, wake) = {
            let mut st = self.shared.lock();
            st.active = true;
            st.posted = false;
            st.direct = 0;
            let queue = std::mem::take(&mut st.queue);
            let wake = st.take_wake();
            (queue, st.delimit.unwrap_or(Delimit::Close), st.end, wake)
        };
        if !queue.is_empty() {
            if delimit == Delimit::Chunked {
                let mut size = [0u8; 20];
                out.put(chunk_size(queue.len(), &mut size));
                out.put_vec(queue);
                out.put(b"\r\n");
            } else {
                out.put_vec(queue);
            }
        }
        if let Some(wake) = wake {
            wake();
        }
        match end {
            None => Pumped::Some,
            Some(End::Failed) => Pumped::Failed,
            Some(End::Finished) => {
                if delimit == Delimit::Chunked {
                    out.put(b"0\r\n\r\n");
                }
                Pumped::All
            }
        }
    }

    /// The client's output passed its high-water mark.
    pub(crate) fn high_water(&self) {
        self.shared.lock().high_water = true;
    }

    /// The client's output drained: the producer may go on.
    pub(crate) fn drained(&self) {
        let wake = {
            let mut st = self.shared.lock();
            st.high_water = false;
            st.direct = 0;
            st.take_wake()
        };
        if let Some(wake) = wake {
            wake();
        }
    }
}

impl Drop for PushSlot {
    fn drop(&mut self) {
        let wake = {
            let mut st = self.shared.lock();
            st.gone = true;
            st.active = false;
            st.queue = Vec::new();
            st.wake.take()
        };
        if let Some(wake) = wake {
            wake();
        }
    }
}

impl fmt::Debug for PushSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushSlot")
            .field("seq", &self.shared.seq)
            .finish_non_exhaustive()
    }
}

/// A pushed body's head, on its way to the connection (see [`Responder::push`]).
pub(crate) struct PushHead {
    pub reply: super::Reply,
    pub len: Option<u64>,
    pub slot: PushSlot,
}

impl Responder {
    /// Answers with `head` (its status and headers; its body is ignored) now, and a body
    /// pushed later through the returned [`BodyWriter`]: `Content-Length: len`, or chunked
    /// without a length (an HTTP/1.0 client: ended by the close). The head goes out in its
    /// turn, as [`send`](Responder::send)'s reply would; pieces pushed before are kept until
    /// then (and [`Flow::Full`] tells when enough wait). Fails with `NotConnected` if the
    /// connection has closed.
    ///
    /// ```
    /// use eventide::http::{Reply, Request, Response};
    ///
    /// fn relay(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     let responder = res.defer();
    ///     std::thread::spawn(move || {
    ///         let head = Reply::ok().content_type("application/octet-stream");
    ///         let Ok(mut body) = responder.push(head, Some(6)) else { return };
    ///         let _ = body.push(b"abc").and_then(|_| body.push(b"def"));
    ///         let _ = body.finish();
    ///     });
    /// }
    /// # let _ = relay;
    /// ```
    pub fn push(self, head: super::Reply, len: Option<u64>) -> io::Result<BodyWriter> {
        let no_body = self.head_only() || head.status_code().bodyless();
        let seq = self.seq();
        let to = self.handle_for_push()?;
        let shared = Arc::new(Shared {
            to: to.clone(),
            seq,
            state: Mutex::new(State::default()),
        });
        let slot = PushSlot {
            shared: Arc::clone(&shared),
        };
        let head = PushHead {
            reply: head,
            len,
            slot,
        };
        to.send(Answer::message(seq, AnswerKind::Push(Box::new(head))))?;
        Ok(BodyWriter::new(Some(shared), len, no_body))
    }
}

impl Response<'_> {
    /// Writes the head now — `Content-Length: len`, or chunked without a length (for an
    /// HTTP/1.0 client the body then ends with the connection) — and returns the
    /// [`BodyWriter`] that pushes the body later, from any thread or, without a trip through
    /// the loop's mailbox, from a callback on this loop
    /// ([`push_local`](BodyWriter::push_local)). Responses pipelined after this one wait for
    /// its body. A `HEAD` request (or a status without a body) gets the head only: the
    /// writer takes the pieces and drops them.
    ///
    /// ```
    /// use eventide::http::{Request, Response};
    ///
    /// fn greet(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     let mut body = res.content_type("text/plain").push_body(Some(12));
    ///     std::thread::spawn(move || {
    ///         let _ = body.push(b"hello, ").and_then(|_| body.push(b"world"));
    ///         let _ = body.finish();
    ///     });
    /// }
    /// # let _ = greet;
    /// ```
    pub fn push_body(&mut self, len: Option<u64>) -> BodyWriter {
        if self.is_sent() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return BodyWriter::new(None, None, false);
        }
        if self.head_only || self.status.bodyless() {
            self.open_body(len);
            return BodyWriter::new(None, len, true);
        }
        let Some(to) = self.out.handle() else {
            log::error!("eventide::http: push_body() without a connection; answered 500");
            self.fail();
            return BodyWriter::new(None, None, false);
        };
        let shared = Arc::new(Shared {
            to,
            seq: self.seq,
            state: Mutex::new(State::default()),
        });
        self.push_into(
            len,
            PushSlot {
                shared: Arc::clone(&shared),
            },
        );
        BodyWriter::new(Some(shared), len, false)
    }

    /// Writes the head of a pushed body whose writer exists already (a [`Responder::push`]).
    pub(crate) fn push_head(&mut self, head: PushHead) {
        if self.is_sent() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return; // the slot is dropped: the writer hears the client is gone
        }
        let (status, headers, _, close) = head.reply.into_parts();
        self.status(status);
        self.raw_headers(&headers);
        if close {
            self.close();
        }
        self.push_into(head.len, head.slot);
    }

    fn push_into(&mut self, len: Option<u64>, slot: PushSlot) {
        let (send, delimit) = self.open_body(len);
        slot.shared.lock().delimit = Some(delimit);
        if send {
            self.next = Next::Push(slot);
        }
    }
}
