//! Request bodies consumed as they arrive: a service that chooses to
//! ([`Service::intake`](super::Service::intake) returns [`Intake::Stream`]) gets the body of
//! a request piece by piece in a [`BodySink`] — each piece a slice of the connection's input,
//! never copied and never held whole — so an upload of any size takes no more memory than
//! one read. The sink paces the client: [`SinkCx::pause`] stops reading the connection (the
//! kernel's buffers fill, and the client's writes stall) until the [`BodyResume`] it returns
//! is used, from any thread or from another connection's callback. At the end the sink gets
//! the trailer fields and writes the response, at once or later ([`Response::defer`]), in
//! the connection's order of answers — or it takes the request's [`Responder`] before the
//! end ([`SinkCx::defer`]) to answer while the body is still arriving, as a proxy does when
//! its upstream answers early.

use std::any::Any;
use std::fmt;
use std::io;

use super::body::{trailer_fields, ChunkDecoder};
use super::deferred::Responder;
use super::response::{ReqFacts, Response};
use super::status::Status;
use crate::adapter::Output;
use crate::{ConnHandle, LoopCx};

/// How the server takes the body of a request (see [`Service::intake`](super::Service::intake)).
pub enum Intake {
    /// Into memory, as a whole, up to [`HttpServer::max_body_size`](super::HttpServer::max_body_size);
    /// then [`Service::call`](super::Service::call) gets the request with its body.
    Buffer,
    /// Piece by piece into this sink, whatever its size; `call` is not called for this
    /// request (the sink answers it).
    Stream(Box<dyn BodySink>),
    /// Not at all: the server answers with this status and closes the connection (with
    /// `Expect: 100-continue`, before the client sends the body).
    Refuse(Status),
}

impl Intake {
    /// [`Intake::Stream`] into `sink`.
    pub fn stream(sink: impl BodySink) -> Intake {
        Intake::Stream(Box::new(sink))
    }
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intake::Buffer => f.write_str("Buffer"),
            Intake::Stream(_) => f.write_str("Stream(..)"),
            Intake::Refuse(s) => write!(f, "Refuse({s:?})"),
        }
    }
}

/// Where a streamed request body goes, piece by piece (see [`Intake::Stream`]). It lives on
/// the connection's loop thread, so it need not be `Send`, and must not block.
///
/// ```
/// use eventide::http::{
///     BodySink, HttpServer, Intake, Request, Response, Service, SinkCx, Status, Trailers,
/// };
///
/// /// Counts the bytes of `PUT /count` bodies of any size; other requests are buffered.
/// struct Counter;
///
/// struct Count(u64);
///
/// impl BodySink for Count {
///     fn data(&mut self, chunk: &[u8], _cx: &mut SinkCx<'_>) -> Result<(), Status> {
///         self.0 += chunk.len() as u64;
///         Ok(())
///     }
///
///     fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
///         res.body(format!("{} bytes", self.0).as_bytes());
///     }
/// }
///
/// impl Service for Counter {
///     fn intake(&mut self, req: &Request<'_>) -> Intake {
///         match (req.method(), req.path()) {
///             ("PUT", "/count") => Intake::stream(Count(0)),
///             _ => Intake::Buffer,
///         }
///     }
///
///     fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
///         res.body(format!("{} bytes, buffered", req.body().len()).as_bytes());
///     }
/// }
///
/// let _server = HttpServer::new(Counter);
/// ```
pub trait BodySink: 'static {
    /// The next piece of the body, decoded (chunk framing removed), never empty: a slice of
    /// the connection's input, valid for this call. Keep what is needed, or forward it, and
    /// call [`cx.pause()`](SinkCx::pause) to stop reading until a slower consumer catches
    /// up. `Err(status)` gives up on the body: the server answers with `status` (413 for a
    /// body too large for this sink, 500 for a store that failed...) and closes the
    /// connection, reading and discarding what the client still sends for a while so the
    /// answer reaches it.
    fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status>;

    /// The body is complete; `trailers` holds the fields of a chunked body's trailer section
    /// (none for a `Content-Length` body). Write the response (or [`Response::defer`] it).
    /// After [`SinkCx::defer`], `res` is given already (the responder answers; anything
    /// written to it is ignored).
    fn end(self: Box<Self>, trailers: &Trailers<'_>, res: &mut Response<'_>);

    /// The body will not complete: the client went away or was too slow, its framing is
    /// broken, or the server stopped. The server answers what there is to answer; this is the
    /// place to drop a partial upload. The default does nothing.
    fn abort(self: Box<Self>, why: Aborted) {
        let _ = why;
    }
}

/// Why a streamed body did not complete (see [`BodySink::abort`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Aborted {
    /// The connection ended first: the client closed or reset it, or the server stopped.
    Closed,
    /// The client sent nothing for longer than the server's read or idle timeout (it gets
    /// `408 Request Timeout`).
    TimedOut,
    /// The chunked framing is malformed or a chunk would not fit in memory's address space;
    /// the client gets this status.
    Malformed(Status),
    /// The responder taken with [`SinkCx::defer`] answered before the body's end: the rest
    /// of the body is read and dropped, and the connection closes after the answer.
    Answered,
}

/// What a [`BodySink`] can do besides taking a piece: pause the connection, reach its loop.
pub struct SinkCx<'a> {
    out: &'a mut dyn Output,
    pause: &'a mut Pause,
    answered_by: &'a mut AnsweredBy,
    received: u64,
    remaining: Option<u64>,
}

impl SinkCx<'_> {
    /// Stops reading the connection once this piece is taken: no more pieces come until the
    /// returned [`BodyResume`] is used (or dropped). Bytes the server has already read but
    /// not handed over wait in the connection's input; the client's further writes stall in
    /// the kernel's buffers. A piece that completes a `Content-Length` body still ends it
    /// ([`BodySink::end`] is called).
    ///
    /// ```
    /// use std::io::Write;
    /// use std::sync::mpsc::Sender;
    ///
    /// use eventide::http::{BodyResume, BodySink, Response, SinkCx, Status, Trailers};
    ///
    /// /// Hands the body to a writer thread a MiB at a time, reading no further until the
    /// /// thread has written each one.
    /// struct ToWriter {
    ///     tx: Sender<(Vec<u8>, Option<BodyResume>)>,
    ///     buf: Vec<u8>,
    /// }
    ///
    /// impl BodySink for ToWriter {
    ///     fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
    ///         self.buf.extend_from_slice(chunk);
    ///         if self.buf.len() >= 1 << 20 {
    ///             let piece = (std::mem::take(&mut self.buf), Some(cx.pause()));
    ///             self.tx.send(piece).map_err(|_| Status::INTERNAL_SERVER_ERROR)?;
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
    ///         let _ = self.tx.send((self.buf, None));
    ///         res.status(Status::CREATED).body(b"");
    ///     }
    /// }
    ///
    /// /// The writer thread's loop.
    /// fn write_all(rx: std::sync::mpsc::Receiver<(Vec<u8>, Option<BodyResume>)>, mut to: impl Write) {
    ///     for (piece, resume) in rx {
    ///         if to.write_all(&piece).is_err() {
    ///             return; // the resumes dropped with `rx` resume the uploads
    ///         }
    ///         if let Some(resume) = resume {
    ///             let _ = resume.resume();
    ///         }
    ///     }
    /// }
    /// # let (tx, rx) = std::sync::mpsc::channel();
    /// # drop(tx);
    /// # write_all(rx, Vec::new());
    /// ```
    pub fn pause(&mut self) -> BodyResume {
        self.pause.paused = true;
        self.pause.count = self.pause.count.wrapping_add(1);
        self.out.pause_input();
        BodyResume {
            to: self.out.handle(),
            upload: self.pause.upload,
            pause: self.pause.count,
        }
    }

    /// The request's [`Responder`], taken before its body ends, to answer from any thread
    /// or from another connection's callback (an upstream's answer, say) whether the body
    /// has ended or not. Pieces keep coming until the answer is written; then, if the body
    /// is not all in, the sink is told ([`BodySink::abort`] with [`Aborted::Answered`]),
    /// the answer says `Connection: close` (RFC 9112 §9.3: a server that does not read the
    /// whole body must close), and the server reads and drops what the client still sends
    /// until the connection has closed (a lingering close, bounded by
    /// [`Builder::linger_timeout`](crate::Builder::linger_timeout)). A body that ends first
    /// ends as usual ([`BodySink::end`], with a response given already) and the answer keeps
    /// the connection. A body the server gives up on first (malformed, too slow, refused by
    /// [`data`](BodySink::data)) is answered with the server's status instead; the
    /// responder's answer is then dropped. Once per request: a second call gets a responder
    /// that answers nothing (logged).
    ///
    /// ```
    /// use eventide::http::{BodySink, Reply, Response, SinkCx, Status, Trailers};
    ///
    /// /// Refuses an upload, with an answer of its own, as soon as it passes a quota.
    /// struct Quota {
    ///     left: u64,
    ///     refused: bool,
    /// }
    ///
    /// impl BodySink for Quota {
    ///     fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
    ///         let over = chunk.len() as u64 > self.left;
    ///         self.left = self.left.saturating_sub(chunk.len() as u64);
    ///         if over && !self.refused {
    ///             self.refused = true;
    ///             let reply = Reply::new(Status::CONTENT_TOO_LARGE)
    ///                 .header("Retry-After", "3600")
    ///                 .body("over quota");
    ///             let _ = cx.defer().send(reply);
    ///         }
    ///         Ok(())
    ///     }
    ///
    ///     fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
    ///         if !self.refused {
    ///             res.status(Status::CREATED).body(b"");
    ///         }
    ///     }
    /// }
    /// # let _ = Quota { left: 1, refused: false };
    /// ```
    pub fn defer(&mut self) -> Responder {
        if *self.answered_by != AnsweredBy::Sink {
            log::warn!("eventide::http: SinkCx::defer() twice for one request; ignored");
            return Responder::detached();
        }
        let Some(handle) = self.out.handle() else {
            log::error!("eventide::http: SinkCx::defer() without a connection; ignored");
            return Responder::detached();
        };
        *self.answered_by = AnsweredBy::Taken;
        Responder::new(handle, self.pause.seq, self.pause.head_only)
    }

    /// Body bytes handed over so far, this piece included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// For a `Content-Length` body, the bytes still to come after this piece; `None` for a
    /// chunked one.
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    /// The event loop of the connection (to write to another connection, say); `None` on
    /// an in-memory connection.
    pub fn loop_cx(&mut self) -> Option<LoopCx<'_>> {
        self.out.loop_cx()
    }

    /// A handle to the client's connection; `None` on an in-memory connection.
    pub fn handle(&mut self) -> Option<ConnHandle> {
        self.out.handle()
    }

    /// The client's address; `None` on an in-memory connection (or a Unix socket).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.out.peer_addr()
    }
}

impl fmt::Debug for SinkCx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkCx")
            .field("received", &self.received)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Resumes reading a streamed body paused with [`SinkCx::pause`], from any thread. Dropped
/// unused, it resumes too: a paused upload never waits forever on a handle that is gone.
pub struct BodyResume {
    to: Option<ConnHandle>,
    upload: u32,
    pause: u32,
}

/// The message a [`BodyResume`] posts to its connection.
#[derive(Debug)]
pub(crate) struct ResumeBody {
    upload: u32,
    pause: u32,
}

impl BodyResume {
    /// Resumes reading: the pieces held meanwhile come first. Fails with `NotConnected` if
    /// the connection has closed (the sink was told, see [`BodySink::abort`]) or there is no
    /// connection to resume (an in-memory one). A resume for a pause that is over — a later
    /// pause, or the body ended — does nothing.
    pub fn resume(mut self) -> io::Result<()> {
        self.post()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.to.as_ref().map_or(true, ConnHandle::is_closed)
    }

    fn post(&mut self) -> io::Result<()> {
        let Some(to) = self.to.take() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "no connection to resume",
            ));
        };
        let msg: Box<dyn Any + Send> = Box::new(ResumeBody {
            upload: self.upload,
            pause: self.pause,
        });
        to.send(msg)
    }
}

impl Drop for BodyResume {
    fn drop(&mut self) {
        if self.to.is_some() {
            let _ = self.post();
        }
    }
}

impl fmt::Debug for BodyResume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyResume")
            .field("pause", &self.pause)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The trailer fields of a chunked request body (RFC 9112 section 7.1.2), in the order
/// received; names compared ignoring ASCII case.
#[derive(Clone, Copy)]
pub struct Trailers<'a> {
    kept: &'a [u8],
}

impl<'a> Trailers<'a> {
    /// Every field as `(name, value)`, the value without surrounding white space.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        trailer_fields(self.kept)
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for Trailers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

/// Where the pauses of one upload stand, and the request's place for a responder.
#[derive(Debug)]
struct Pause {
    /// The upload's number on its connection (a resume for an earlier one is stale).
    upload: u32,
    /// Pauses so far (a resume for an earlier one is stale).
    count: u32,
    paused: bool,
    /// The request's answer's sequence number on its connection, and whether it is a `HEAD`.
    seq: u64,
    head_only: bool,
}

/// Who answers an upload's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnsweredBy {
    /// The sink, in [`BodySink::end`].
    Sink,
    /// A responder taken with [`SinkCx::defer`] in this piece: its place in the
    /// connection's answers is still to be made.
    Taken,
    /// A responder taken earlier, whose answer the connection owes.
    Owed,
}

/// How the rest of a streamed body is delimited.
#[derive(Debug)]
enum Rest {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked: the decoder, and the trailer section read so far.
    Chunked(ChunkDecoder, Vec<u8>),
}

/// A body on its way into a sink: the request's part of a connection's state.
pub(crate) struct Upload {
    sink: Box<dyn BodySink>,
    rest: Rest,
    pause: Pause,
    answered_by: AnsweredBy,
    received: u64,
    /// What the request asked of its response.
    pub(crate) facts: ReqFacts,
}

/// How far [`Upload::feed`] got: each carries the bytes of input it used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fed {
    /// The body is complete.
    Done(usize),
    /// All of the input is used, and more is needed.
    More(usize),
    /// The sink paused; the rest of the input waits.
    Paused(usize),
    /// The sink gave up on the body (it is dropped); answer this status.
    Refused(Status),
    /// The framing is malformed (the sink was told); answer this status.
    Malformed(Status),
}

impl Upload {
    /// An upload into `sink` of a body of `len` bytes (`None`: chunked), the connection's
    /// upload number `upload`, for the request whose answer will be number `seq`.
    pub(crate) fn new(
        sink: Box<dyn BodySink>,
        len: Option<u64>,
        facts: ReqFacts,
        (upload, seq): (u32, u64),
    ) -> Upload {
        let rest = match len {
            Some(n) => Rest::Length(n),
            None => Rest::Chunked(ChunkDecoder::new(), Vec::new()),
        };
        Upload {
            sink,
            rest,
            pause: Pause {
                upload,
                count: 0,
                paused: false,
                seq,
                head_only: facts.head_only,
            },
            answered_by: AnsweredBy::Sink,
            received: 0,
            facts,
        }
    }

    /// Whether the sink has paused reading.
    pub(crate) fn is_paused(&self) -> bool {
        self.pause.paused
    }

    /// Whether the sink took the request's responder in the pieces just fed (its place in
    /// the connection's answers is to be made now); from then on it is owed.
    pub(crate) fn take_deferred(&mut self) -> bool {
        let taken = self.answered_by == AnsweredBy::Taken;
        if taken {
            self.answered_by = AnsweredBy::Owed;
        }
        taken
    }

    /// The sequence number of the request's answer, if a responder the sink took owes it.
    pub(crate) fn owed(&self) -> Option<u64> {
        (self.answered_by == AnsweredBy::Owed).then_some(self.pause.seq)
    }

    /// Takes a resume for this upload; `false` if it is stale (nothing changes).
    pub(crate) fn resume(&mut self, msg: &ResumeBody) -> bool {
        let current = msg.upload == self.pause.upload && msg.pause == self.pause.count;
        if current && self.pause.paused {
            self.pause.paused = false;
            return true;
        }
        false
    }

    /// Hands the body bytes at the front of `input` to the sink, until the body ends, the
    /// input does, or the sink pauses.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut dyn Output) -> Fed {
        let mut pos = 0;
        loop {
            if self.pause.paused {
                return Fed::Paused(pos);
            }
            let (data, used, done) = match &mut self.rest {
                Rest::Length(0) => return Fed::Done(pos),
                Rest::Length(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX);
                    let n = n.min(input.len() - pos);
                    *left -= n as u64;
                    (&input[pos..pos + n], n, *left == 0)
                }
                Rest::Chunked(decoder, kept) => {
                    match decoder.decode_keeping_trailers(&input[pos..], usize::MAX, kept) {
                        Ok(d) => (d.data, d.consumed, d.done),
                        Err(status) => return Fed::Malformed(status),
                    }
                }
            };
            if !data.is_empty() {
                if let Err(status) = self.deliver(data, out) {
                    return Fed::Refused(status);
                }
            }
            pos += used;
            if done {
                return Fed::Done(pos);
            }
            if used == 0 || pos == input.len() {
                return Fed::More(pos);
            }
        }
    }

    fn deliver(&mut self, data: &[u8], out: &mut dyn Output) -> Result<(), Status> {
        self.received += data.len() as u64;
        let mut cx = SinkCx {
            out,
            pause: &mut self.pause,
            answered_by: &mut self.answered_by,
            received: self.received,
            remaining: match self.rest {
                Rest::Length(left) => Some(left),
                Rest::Chunked(..) => None,
            },
        };
        self.sink.data(data, &mut cx)
    }

    /// The body is complete: the sink writes the response.
    pub(crate) fn end(self, res: &mut Response<'_>) {
        let kept = match &self.rest {
            Rest::Chunked(_, kept) => &kept[..],
            Rest::Length(_) => &[],
        };
        self.sink.end(&Trailers { kept }, res);
    }

    /// The body will not complete.
    pub(crate) fn abort(self, why: Aborted) {
        self.sink.abort(why);
    }
}

impl fmt::Debug for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upload")
            .field("rest", &self.rest)
            .field("pause", &self.pause)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
