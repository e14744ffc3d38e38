//! Answers given later: a [`Responder`] (`Send`) completes one deferred response from any
//! thread, or from another connection's callback; a [`Reply`] is an answer built off the
//! loop (status, headers, body). Both reach the connection as one message through its
//! handle — a burst of answers for one loop costs one eventfd write — and the server writes
//! each when its turn in the connection's pipeline comes.

use std::fmt;
use std::io;

use super::response::{header_ok, Response};
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
}

/// What comes back to a connection for one of its deferred responses.
pub(crate) struct Answer {
    pub seq: u64,
    pub kind: AnswerKind,
}

pub(crate) enum AnswerKind {
    /// Write the response with the full API.
    Respond(Box<dyn FnOnce(&mut Response<'_>) + Send>),
    /// Write this reply.
    Reply(Reply),
    /// The responder was dropped unanswered: 500.
    Dropped,
}

impl Responder {
    pub(crate) fn new(to: ConnHandle, seq: u64) -> Responder {
        Responder { to: Some(to), seq }
    }

    /// A responder with nowhere to go (its response was answered already).
    pub(crate) fn detached() -> Responder {
        Responder { to: None, seq: 0 }
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
        to.send(Answer {
            seq: self.seq,
            kind,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            log::warn!("eventide::http: a deferred response was dropped unanswered; answering 500");
            let _ = to.send(Answer {
                seq: self.seq,
                kind: AnswerKind::Dropped,
            });
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
