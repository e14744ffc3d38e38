//! Answers given later: a [`Responder`] (`Send`) completes one deferred response from any
//! thread, or from another connection's callback; a [`Reply`] is an answer built off the
//! loop (status, headers, body). Both reach the connection as one message through its
//! handle — a burst of answers for one loop costs one eventfd write — and the server writes
//! each when its turn in the connection's pipeline comes.

use std::any::Any;
use std::fmt;
use std::io;

use super::push::PushHead;
use super::response::{header_ok, Next, Phase, Response};
use super::status::Status;
use crate::ConnHandle;

/// Completes one deferred response (see [`Response::defer`]) from any thread.
///
/// It answers once: [`respond`](Responder::respond) runs a closure with the response on the
/// connection's loop, [`send`](Responder::send) writes a [`Reply`]. Both fail with
/// `NotConnected` when the connection has closed meanwhile (the answer is dropped); an answer
/// posted while the connection is closing is still written before it closes. Dropped without
/// an answer — a job that panicked, a branch that forgot — it answers `500 Internal Server
/// Error`, so a connection never waits forever.
pub struct Responder {
    /// Where the answer goes; `None` once given (or for a response that had no connection).
    to: Option<ConnHandle>,
    seq: u64,
    /// The request was a `HEAD`: an answer's body is not sent.
    head_only: bool,
}

/// What comes back to a connection for one of its deferred responses.
pub(crate) struct Answer {
    pub seq: u64,
    pub kind: AnswerKind,
}

impl Answer {
    /// The answer as the server's connections take messages (`HttpServer`'s `Message`).
    pub(crate) fn message(seq: u64, kind: AnswerKind) -> Box<dyn Any + Send> {
        Box::new(Answer { seq, kind })
    }
}

pub(crate) enum AnswerKind {
    /// Write the response with the full API.
    Respond(Box<dyn FnOnce(&mut Response<'_>) + Send>),
    /// Write this reply.
    Reply(Reply),
    /// The responder was dropped unanswered: 500.
    Dropped,
    /// Write this head; its body is pushed (see `Responder::push`).
    Push(Box<PushHead>),
    /// A pushed body has bytes waiting, or ended.
    Pushed,
}

impl Responder {
    pub(crate) fn new(to: ConnHandle, seq: u64, head_only: bool) -> Responder {
        Responder {
            to: Some(to),
            seq,
            head_only,
        }
    }

    /// A responder with nowhere to go (its response was answered already).
    pub(crate) fn detached() -> Responder {
        Responder {
            to: None,
            seq: 0,
            head_only: false,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn head_only(&self) -> bool {
        self.head_only
    }

    /// The connection, taken for an answer that goes another way (a pushed body's head).
    pub(crate) fn handle_for_push(mut self) -> io::Result<ConnHandle> {
        self.to.take().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "this response was answered already",
            )
        })
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.to.is_some()
    }

    /// Answers with `f`, run on the connection's loop thread with this request's
    /// [`Response`] once the answers before it are written (the whole API: status, headers,
    /// a body, a file). Fails with `NotConnected` if the connection has closed.
    ///
    /// ```
    /// use eventide::http::{Request, Response, Status};
    ///
    /// fn later(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     let responder = res.defer();
    ///     std::thread::spawn(move || {
    ///         let _ = responder.respond(|res| {
    ///             res.status(Status::ACCEPTED).header("X-Job", "7").body(b"queued");
    ///         });
    ///     });
    /// }
    /// # let _ = later;
    /// ```
    pub fn respond(self, f: impl FnOnce(&mut Response<'_>) + Send + 'static) -> io::Result<()> {
        self.post(AnswerKind::Respond(Box::new(f)))
    }

    /// Answers with `reply`. Fails with `NotConnected` if the connection has closed.
    pub fn send(self, reply: Reply) -> io::Result<()> {
        self.post(AnswerKind::Reply(reply))
    }

    /// Whether the connection has closed (an answer would be dropped).
    pub fn is_closed(&self) -> bool {
        self.to.as_ref().map_or(true, ConnHandle::is_closed)
    }

    fn post(mut self, kind: AnswerKind) -> io::Result<()> {
        let Some(to) = self.to.take() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "this response was answered already",
            ));
        };
        to.send(Answer::message(self.seq, kind))
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            log::warn!("eventide::http: a deferred response was dropped unanswered; answering 500");
            let _ = to.send(Answer::message(self.seq, AnswerKind::Dropped));
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("seq", &self.seq)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Response<'_> {
    /// Answers later, from any thread: the returned [`Responder`] completes this response
    /// once, with [`respond`](Responder::respond) (the whole `Response` API, on the loop's
    /// thread) or [`send`](Responder::send) (an owned [`Reply`]). Responses to the requests
    /// pipelined after this one wait for it, so the connection's answers keep their order;
    /// while the connection owes [`Builder::max_owed_answers`](crate::Builder::max_owed_answers)
    /// answers, it reads no more requests. A `Responder` dropped unused answers `500`.
    ///
    /// Call it before writing anything (a response already started is discarded, and
    /// logged).
    ///
    /// ```
    /// use eventide::http::{Reply, Request, Response, Status};
    ///
    /// fn slow(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     let responder = res.defer();
    ///     std::thread::spawn(move || {
    ///         let reply = Reply::new(Status::OK).content_type("text/plain").body("done");
    ///         // Err: the client went away meanwhile; nothing to do.
    ///         let _ = responder.send(reply);
    ///     });
    /// }
    /// # let _ = slow;
    /// ```
    pub fn defer(&mut self) -> Responder {
        match self.phase {
            Phase::Fresh => {}
            Phase::Head => {
                log::warn!("eventide::http: defer() after the head was started; discarded");
                self.buf.truncate(self.head_start);
                self.status = Status::OK;
            }
            Phase::Sent | Phase::Deferred => {
                log::warn!("eventide::http: defer() on a response already given; ignored");
                return Responder::detached();
            }
        }
        let Some(handle) = self.out.handle() else {
            // No connection to come back to (an in-memory output): answer at once.
            log::error!("eventide::http: defer() without a connection; answered 500");
            self.fail();
            return Responder::detached();
        };
        self.phase = Phase::Deferred;
        self.next = Next::Deferred;
        Responder::new(handle, self.seq, self.head_only)
    }

    /// The answer comes from a responder made already (a sink's, see
    /// [`SinkCx::defer`](super::SinkCx::defer)).
    pub(crate) fn owe(&mut self) {
        self.phase = Phase::Deferred;
        self.next = Next::Deferred;
    }

    /// Runs `job` on the worker pool ([`Builder::workers`](crate::Builder::workers)) and
    /// answers with the [`Reply`] it returns, in order (see [`defer`](Response::defer)). A job
    /// that panics, or a server without a worker pool, answers `500`.
    ///
    /// ```
    /// use eventide::http::{Reply, Request, Response};
    ///
    /// fn report(req: &Request<'_>, res: &mut Response<'_>) {
    ///     let id = req.query().unwrap_or("").to_string();
    ///     res.spawn(move || {
    ///         // Blocking work: a database, a file, a computation.
    ///         Reply::ok().content_type("text/plain").body(format!("report {id}"))
    ///     });
    /// }
    /// # let _ = report;
    /// ```
    pub fn spawn(&mut self, job: impl FnOnce() -> Reply + Send + 'static) {
        let responder = self.defer();
        if !responder.is_attached() {
            return;
        }
        let run = Box::new(move || {
            let reply = job();
            let _ = responder.send(reply);
        });
        if let Err(run) = self.out.spawn(run) {
            log::error!("eventide::http: spawn() on a server without a worker pool; answered 500");
            drop(run); // the responder inside answers 500
        }
    }

    /// Answers with the [`Reply`] that `fut` returns, run on the server's tokio runtime
    /// (feature `tokio`: [`Builder::tokio_handle`](crate::Builder::tokio_handle) or
    /// [`Builder::tokio_threads`](crate::Builder::tokio_threads)), in order (see
    /// [`defer`](Response::defer)). The future is one of the connection's jobs
    /// ([`Conn::spawn`](crate::Conn::spawn)): dropped if the connection goes away. A future
    /// that panics, or a server without a runtime, answers `500`.
    ///
    /// ```no_run
    /// use eventide::http::{Reply, Request, Response};
    ///
    /// fn lookup(req: &Request<'_>, res: &mut Response<'_>) {
    ///     let key = req.path().to_string();
    ///     res.spawn_future(async move {
    ///         // An async client: a database, a cache, another service.
    ///         tokio::task::yield_now().await;
    ///         Reply::ok().content_type("text/plain").body(format!("value of {key}"))
    ///     });
    /// }
    /// # let _ = lookup;
    /// ```
    #[cfg(feature = "tokio")]
    pub fn spawn_future(&mut self, fut: impl std::future::Future<Output = Reply> + Send + 'static) {
        let responder = self.defer();
        if !responder.is_attached() {
            return;
        }
        // A panic drops the responder, which answers 500; the connection stays.
        let answer = Box::pin(async move {
            match crate::bridge::caught(fut).await {
                Ok(reply) => drop(responder.send(reply)),
                Err(()) => log::error!("eventide::http: a future answering a request panicked"),
            }
        });
        if self.out.spawn_future(answer).is_err() {
            log::error!(
                "eventide::http: spawn_future() on a server without a tokio runtime; answered 500"
            );
        }
    }
}

/// An answer built anywhere — on a worker thread, in a future — and written by the loop:
/// a status, headers and a body. The server adds what [`Response`] adds (status line,
/// `Server`, `Date`, `Content-Length`, `Connection`).
///
/// ```
/// use eventide::http::{Reply, Status};
///
/// let reply = Reply::new(Status::CREATED)
///     .header("Location", "/items/7")
///     .content_type("application/json")
///     .body(r#"{"id":7}"#);
/// assert_eq!(reply.status_code(), Status::CREATED);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    status: Status,
    /// `Name: value\r\n` lines, each checked when added.
    headers: Vec<u8>,
    body: Vec<u8>,
    close: bool,
}

impl Reply {
    /// An empty reply with `status`.
    pub fn new(status: Status) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// An empty `200 OK`.
    pub fn ok() -> Reply {
        Reply::new(Status::OK)
    }

    /// Adds a header; a malformed one is dropped (and logged), as [`Response::header`] does.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Reply {
        let value = value.as_ref();
        if header_ok(name, value) {
            self.headers.extend_from_slice(name.as_bytes());
            self.headers.extend_from_slice(b": ");
            self.headers.extend_from_slice(value);
            self.headers.extend_from_slice(b"\r\n");
        }
        self
    }

    /// Shorthand for `header("Content-Type", content_type)`.
    pub fn content_type(self, content_type: &str) -> Reply {
        self.header("Content-Type", content_type)
    }

    /// The body (replacing any set before).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// Closes the connection after this reply.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// The status.
    pub fn status_code(&self) -> Status {
        self.status
    }

    /// The body so far.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    pub(crate) fn into_parts(self) -> (Status, Vec<u8>, Vec<u8>, bool) {
        (self.status, self.headers, self.body, self.close)
    }
}

impl Default for Reply {
    fn default() -> Reply {
        Reply::ok()
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &String::from_utf8_lossy(&self.headers))
            .field("body", &self.body.len())
            .field("close", &self.close)
            .finish()
    }
}
