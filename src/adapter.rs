//! The protocol adapter behind [`HttpServer`](crate::http::HttpServer) and
//! [`RespServer`](crate::resp::RespServer): one way from a connection's input to a
//! request/response protocol and back, and the in-memory [`Harness`] that tests and fuzzers
//! drive the same path with.
//!
//! A [`Protocol`] answers every complete message at the front of the input, in order, and
//! says how much it used and what the connection does next ([`Served`]). The adapter consumes
//! that much and turns the verdict into the callback's [`Action`] — the one way a protocol
//! closes its connection. An incomplete message stays in the connection's input, where the
//! read timeout and the inbound limit apply. A protocol's own loop timers (HTTP's `Date`
//! refresh) are set with [`LoopCx::set_adapter_timer`] and come back to it; every other loop
//! timer goes to its service, whose tokens are all its own.
//!
//! # What the shape is for
//!
//! The protocol sees its connection as an [`Output`] and answers with a [`Served`], so the
//! steps planned next fit without another path through the adapter:
//!
//! * **Answers given later** (an HTTP `Responder` finished on another thread): the answer
//!   comes back as a message to the connection (`Handler::on_message`, forwarded to the
//!   protocol as `serve` is); the order of a pipeline is the protocol's per-connection state
//!   (answers queue behind the oldest one still owed); its bound on answers owed is a `Then`
//!   that pauses reading, and the message that brings the last owed answer resumes it (the
//!   loop offers the held input again).
//! * **Streamed bodies**: a body written in pieces is resumed from `Handler::on_drained`,
//!   forwarded the same way, writing to the same `Output`.
//! * **File bodies**: an `Output` method that takes a file range (sent with `sendfile` by a
//!   connection, read into the `Vec` by the harness).
//! * **A switch of protocol** after `101 Switching Protocols` (the WebSocket upgrade from an
//!   `HttpServer` route): the connection's HTTP state becomes the new protocol's, and the
//!   HTTP handler forwards the input and the other connection callbacks (end of stream,
//!   timers, messages, stop, close) to it. The [`Harness`] has no connection to run the new
//!   protocol on: after a `101` it closes.
//!
//! Each is one more forwarded callback or one more `Then`, not another loop over the input.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::conn::Conn;
use crate::cx::LoopCx;
use crate::handle::ConnHandle;
use crate::handler::{Action, Timeout};

/// A job for the worker pool (see [`Output::spawn`]).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Where a protocol's answers go: a connection's output ([`Conn`]), or a `Vec<u8>` (tests,
/// fuzzing, building a reply to send later).
///
/// Beyond bytes, a connection offers what answers given later need: a handle to post them
/// through, the worker pool, the count of answers owed (which holds a close and, at its
/// bound, reading) and whether output waits for the kernel (a streamed body then waits for
/// `on_drained`). Other outputs keep the defaults: no handle, no pool, no bound, never queued.
pub trait Output {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);

    /// Appends each of `parts` in order: what belongs together (a frame's header and its
    /// payload) in one call, which a connection copies into its output at once.
    fn put_vectored(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.put(part);
        }
    }

    /// Appends `bytes`, taking ownership (a connection queues a large buffer without a copy).
    fn put_vec(&mut self, bytes: Vec<u8>) {
        self.put(&bytes);
    }

    /// Appends `len` bytes of `file` from `offset`. A connection sends them from the file
    /// as the socket takes them (`sendfile` on plain TCP); the default reads them into `put`.
    /// Returns `false` if the file ended or failed before `len` bytes (the answer is cut
    /// short: the caller must close the connection).
    fn put_file(&mut self, file: File, offset: u64, len: u64) -> bool {
        let mut piece = vec![0u8; 64 * 1024];
        let (mut at, mut left) = (offset, len);
        while left > 0 {
            let want = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read_at(&mut piece[..want], at) {
                Ok(0) => return false,
                Ok(n) => {
                    self.put(&piece[..n]);
                    at += n as u64;
                    left -= n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether [`put_file`](Output::put_file) sends from the file without reading it into
    /// memory (a plain TCP connection); otherwise a large file is better read in pieces as
    /// output drains.
    fn zero_copy_files(&self) -> bool {
        false
    }

    /// A handle to reach the connection from elsewhere later; `None` without one.
    fn handle(&mut self) -> Option<ConnHandle> {
        None
    }

    /// Runs `job` on the server's worker pool; gives it back when there is none.
    fn spawn(&mut self, job: Job) -> Result<(), Job> {
        Err(job)
    }

    /// The event loop the connection lives on; `None` without one.
    fn loop_cx(&mut self) -> Option<LoopCx<'_>> {
        None
    }

    /// The connection's peer address; `None` without one (or for a Unix socket).
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }

    /// Runs `fut` on the server's tokio runtime for the connection, dropped if it goes away
    /// (feature `tokio`); gives it back when there is no runtime.
    #[cfg(all(feature = "tokio", feature = "http"))]
    fn spawn_future(
        &mut self,
        fut: crate::bridge::UnitFuture,
    ) -> Result<(), crate::bridge::UnitFuture> {
        Err(fut)
    }

    /// Takes on one answer owed to the peer; `false` at the bound (nothing changes).
    fn owe_answer(&mut self) -> bool {
        true
    }

    /// One answer owed is now in the output (or given up on).
    fn answer_given(&mut self) {}

    /// Whether one more answer may be owed.
    fn may_owe(&self) -> bool {
        true
    }

    /// Whether output waits for the kernel (the connection calls `on_drained` once it is
    /// all sent).
    fn is_queued(&self) -> bool {
        false
    }

    /// Stops reading input until [`resume_input`](Output::resume_input).
    fn pause_input(&mut self) {}

    /// Resumes reading input; input held meanwhile is offered again.
    fn resume_input(&mut self) {}
}

impl Output for Conn<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }

    #[inline]
    fn put_vectored(&mut self, parts: &[&[u8]]) {
        self.write_vectored(parts);
    }

    fn put_vec(&mut self, bytes: Vec<u8>) {
        self.write_vec(bytes);
    }

    fn put_file(&mut self, file: File, offset: u64, len: u64) -> bool {
        self.write_file(file, offset, len)
    }

    fn zero_copy_files(&self) -> bool {
        !self.is_tls()
    }

    fn handle(&mut self) -> Option<ConnHandle> {
        Some(Conn::handle(self))
    }

    fn spawn(&mut self, job: Job) -> Result<(), Job> {
        self.spawn_job(job)
    }

    fn loop_cx(&mut self) -> Option<LoopCx<'_>> {
        Some(Conn::loop_cx(self))
    }

    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        Conn::peer_addr(self)
    }

    #[cfg(all(feature = "tokio", feature = "http"))]
    fn spawn_future(
        &mut self,
        fut: crate::bridge::UnitFuture,
    ) -> Result<(), crate::bridge::UnitFuture> {
        crate::bridge::spawn_unit(self, fut)
    }

    fn owe_answer(&mut self) -> bool {
        Conn::owe_answer(self)
    }

    fn answer_given(&mut self) {
        Conn::answer_given(self);
    }

    fn may_owe(&self) -> bool {
        Conn::may_owe(self)
    }

    fn is_queued(&self) -> bool {
        self.is_output_queued()
    }

    fn pause_input(&mut self) {
        self.pause_read();
    }

    fn resume_input(&mut self) {
        self.resume_read();
    }
}

impl Output for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A request/response protocol on a connection: messages parsed from the front of the input,
/// each answered in order, with per-loop state in the implementing value and per-connection
/// state in [`State`](Protocol::State).
pub trait Protocol {
    /// Where parsing of an incomplete message stands: small and heap-free.
    type State: Default;

    /// Answers every complete message at the front of `input`, in order, writing to `out`.
    fn serve(&mut self, st: &mut Self::State, input: &[u8], out: &mut dyn Output) -> Served;

    /// The read timeout fired with an incomplete message in the input: the answer, if the
    /// protocol has one (HTTP's 408). The connection then closes.
    fn timed_out(&mut self, out: &mut dyn Output) {
        let _ = out;
    }

    /// A graceful stop began with a message half in: mark it to get the connection's last
    /// answer (HTTP: `Connection: close`, then [`Then::Close`]) and return `true`, and the
    /// connection is served until then; `false` (the default) closes it now, the message
    /// unanswered.
    fn last_answer(&mut self, st: &mut Self::State) -> bool {
        let _ = st;
        false
    }

    /// The most an incomplete message may hold under the protocol's limits.
    fn buffer_bound(&self) -> usize;

    /// The loop started: the protocol's own set-up (its timers), before its service's.
    fn boot(&mut self, cx: &mut LoopCx<'_>) {
        let _ = cx;
    }

    /// One of the protocol's own loop timers fired.
    fn tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let _ = (cx, token);
    }

    /// The loop started: the service's `on_boot`.
    fn service_boot(&mut self, cx: &mut LoopCx<'_>);

    /// A loop timer the service set fired.
    fn service_tick(&mut self, cx: &mut LoopCx<'_>, token: u64);

    /// Makes the output reproducible (tests and fuzzing: HTTP freezes its `Date`).
    fn freeze_clock(&mut self) {}
}

/// What a protocol did with the input it was shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    /// Bytes of input fully handled.
    pub consumed: usize,
    /// What the connection does next.
    pub then: Then,
}

/// What a connection does after a batch of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Keep serving.
    Serve,
    /// Close once the answers are flushed (a refusal, `Connection: close`, `QUIT`); the rest
    /// of the input is dropped.
    Close,
    /// Keep serving, and stop the whole server gracefully.
    StopServer,
}

impl Served {
    /// Keep serving, `consumed` bytes handled.
    #[inline]
    pub fn serve(consumed: usize) -> Served {
        Served {
            consumed,
            then: Then::Serve,
        }
    }

    /// Close after the answers; all of the input (`input_len` bytes) is used up.
    #[inline]
    pub fn close(input_len: usize) -> Served {
        Served {
            consumed: input_len,
            then: Then::Close,
        }
    }
}

/// `Handler::on_data` for a protocol.
#[inline]
#[cfg(feature = "resp")]
pub(crate) fn on_data<P: Protocol>(p: &mut P, conn: &mut Conn<'_>, st: &mut P::State) -> Action {
    serve_input(conn, |input, conn| p.serve(st, input, conn))
}

/// Shows the connection's input to `serve`, consumes what it used and turns its verdict into
/// the callback's [`Action`] (for a protocol whose state is part of a larger one).
#[inline]
pub(crate) fn serve_input(
    conn: &mut Conn<'_>,
    serve: impl FnOnce(&[u8], &mut Conn<'_>) -> Served,
) -> Action {
    let input = conn.input();
    let served = serve(input, conn);
    conn.consume(served.consumed);
    match served.then {
        Then::Serve => Action::Continue,
        Then::Close => Action::Close,
        Then::StopServer => Action::StopServer,
    }
}

/// `Handler::on_timeout` for a protocol: a read timeout with a message half in gets the
/// protocol's answer; either timeout closes.
pub(crate) fn on_timeout<P: Protocol>(
    p: &mut P,
    conn: &mut Conn<'_>,
    st: &mut P::State,
    which: Timeout,
) -> Action {
    if which == Timeout::Read && !conn.input().is_empty() {
        *st = P::State::default();
        p.timed_out(conn);
    }
    Action::Close
}

/// `Handler::on_stop` for a protocol: a connection between messages closes now (after the
/// answers being flushed); one with a message half in is served until that message's answer,
/// its last, if the protocol can mark it so ([`Protocol::last_answer`]).
pub(crate) fn on_stop<P: Protocol>(p: &mut P, conn: &mut Conn<'_>, st: &mut P::State) -> Action {
    if !conn.input().is_empty() && p.last_answer(st) {
        Action::Continue
    } else {
        Action::Close
    }
}

/// `Handler::on_boot` for a protocol: its own set-up, then its service's.
pub(crate) fn on_boot<P: Protocol>(p: &mut P, cx: &mut LoopCx<'_>) {
    p.boot(cx);
    p.service_boot(cx);
}

/// `Handler::on_tick` for a protocol: its own timer, or its service's.
pub(crate) fn on_tick<P: Protocol>(p: &mut P, cx: &mut LoopCx<'_>, token: u64) {
    if cx.is_adapter_timer() {
        p.tick(cx, token);
    } else {
        p.service_tick(cx, token);
    }
}

/// A simulated connection for tests and fuzzing, not part of the stable API: input is kept
/// while a message is incomplete and answers are collected, exactly as the adapter does on a
/// real connection.
#[derive(Debug)]
pub struct Harness<P: Protocol> {
    protocol: P,
    state: P::State,
    input: Vec<u8>,
    output: Vec<u8>,
    closed: bool,
    peak: usize,
}

impl<P: Protocol> Harness<P> {
    /// Wraps `protocol`, with its clock frozen (reproducible output).
    pub fn new(mut protocol: P) -> Harness<P> {
        protocol.freeze_clock();
        Harness {
            protocol,
            state: P::State::default(),
            input: Vec::new(),
            output: Vec::new(),
            closed: false,
            peak: 0,
        }
    }

    /// Delivers `bytes` as one read. Ignored once the connection is closing.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.input.extend_from_slice(bytes);
        let served = self
            .protocol
            .serve(&mut self.state, &self.input, &mut self.output);
        self.input.drain(..served.consumed);
        self.peak = self.peak.max(self.input.len());
        if served.then == Then::Close {
            self.closed = true;
            self.input = Vec::new();
        }
    }

    /// Everything written so far.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Takes what was written so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether the protocol asked to close the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Bytes held unconsumed (an incomplete message).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The most bytes ever held unconsumed after a read.
    pub fn peak_buffered(&self) -> usize {
        self.peak
    }

    /// The most an incomplete message may hold under the protocol's limits.
    pub fn buffer_bound(&self) -> usize {
        self.protocol.buffer_bound()
    }

    /// The server being driven.
    pub fn server_mut(&mut self) -> &mut P {
        &mut self.protocol
    }
}
