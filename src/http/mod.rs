//! An HTTP/1.1 server codec on the reactor (feature `http`), built on [`httparse`] and the
//! public [`Handler`](crate::Handler) API only.
//!
//! Write a [`Service`] — one `call` per request, with the request borrowed from the
//! connection's input and a [`Response`] that writes into the connection's output — and run it
//! with [`HttpServer`], which implements [`Handler`](crate::Handler):
//!
//! ```no_run
//! use eventide::http::{HttpServer, Request, Response, Status};
//! use eventide::Server;
//!
//! fn hello(req: &Request<'_>, res: &mut Response<'_>) {
//!     match req.path() {
//!         "/" => res.content_type("text/plain").body(b"Hello, World!"),
//!         _ => res.status(Status::NOT_FOUND).body(b""),
//!     }
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:8080")
//!     .start(|_| HttpServer::new(hello))?;
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! What the codec does:
//!
//! * **Keep-alive and pipelining.** Every complete request in the input is answered in order
//!   within one callback, so a pipeline of N requests costs one read and one write. HTTP/1.1
//!   keeps the connection open unless a side says `Connection: close`; HTTP/1.0 closes unless
//!   the client asks for `Connection: keep-alive`.
//! * **Bodies.** `Content-Length` bodies are handed over in place; `Transfer-Encoding: chunked`
//!   bodies (extensions and trailers allowed) are validated incrementally as they arrive and
//!   decoded into a per-loop buffer once complete. `Expect: 100-continue` is answered.
//! * **Streamed request bodies**, of any size: [`Service::intake`] chooses per request to
//!   take the body piece by piece into a [`BodySink`] (each piece a slice of the input, never
//!   copied), which can [`pause`](SinkCx::pause) reading until a slower consumer catches up
//!   ([`BodyResume`], `Send`), gets the [`Trailers`] at the end and answers; see
//!   [`BodySink`] for an example.
//! * **Streamed and pushed response bodies**, of any size: [`Response::stream`] pulls a body
//!   from a [`BodyStream`] as the socket drains; [`Response::push_body`] (or
//!   [`Responder::push`] for an answer given later) starts the response and returns a `Send`
//!   [`BodyWriter`] that pushes the body as it arrives — from any thread, or with
//!   [`push_local`](BodyWriter::push_local) straight into the connection's output from a
//!   callback on its loop (an upstream's, in a proxy). A push says [`Flow::Full`] while the
//!   client's output is past its high-water mark and [`on_ready`](BodyWriter::on_ready)
//!   wakes the producer when it drained; a body ended early or with the wrong length closes
//!   the connection, never passing for complete.
//! * **No allocation per request.** The status line and headers are written straight into the
//!   connection's output; `Server` and `Date` come from a per-loop block refreshed at each
//!   second boundary by a loop timer; lengths are formatted with `itoa`.
//! * **Limits**, answered with a status and then a close (the answer is flushed first):
//!   malformed request → 400, head larger than [`HttpServer::max_head_size`] or with more
//!   headers than [`HttpServer::max_headers`] → 431 (414 when the request line alone is too
//!   long), body larger than [`HttpServer::max_body_size`] → 413, a transfer coding other than
//!   `chunked` → 501, an `Expect` other than `100-continue` → 417, a version other than 1.x →
//!   505.
//! * **RFC 9112 request rules** (each tested in `tests/http_conformance.rs`): an HTTP/1.1
//!   request must carry exactly one `Host`, and any `Host` must be `host[:port]` by RFC 3986,
//!   else 400; absolute-form targets (`GET http://host/path`) are served, with
//!   [`Request::path`] the path and [`Request::host`] the target's authority; `*` is only for
//!   `OPTIONS` and `host:port` only for `CONNECT` (400 otherwise); `HTTP/1.2` and later 1.x
//!   minor versions are served as HTTP/1.1; chunk-size lines and trailers follow the grammar
//!   exactly. `HEAD` is answered like `GET` without the body, with the `Content-Length` the
//!   body would have had, whatever the service writes.
//! * **Files.** [`files::Files`] serves a directory; [`Response::file`] sends a
//!   [`files::FileBody`] (an open file, an offset and a length).
//! * **Slow clients.** An incomplete request stays unconsumed in the connection's input, so
//!   the server's read timeout ([`Builder::read_timeout`](crate::Builder::read_timeout)) covers
//!   it; when it fires, the client gets `408 Request Timeout` and the connection closes.
//!
//! Keep the server's inbound limit
//! ([`Builder::inbound_limit`](crate::Builder::inbound_limit), 1 MiB by default) above
//! `max_head_size + 2 * max_body_size + 8 KiB`, the most one incomplete request may buffer. A
//! streamed body buffers at most what one read brings, whatever its size.

use crate::{Action, CloseReason, Conn, ConnId, ConnectError, LoopCx};

mod body;
mod date;
mod deferred;
mod exchange;
mod fast;
pub mod files;
mod handler;
mod intake;
mod pipeline;
mod push;
mod request;
mod response;
mod server;
mod status;
mod stream;
mod switch;
#[doc(hidden)]
pub mod testing;
mod upload;
mod uri;

pub use deferred::{Reply, Responder};
pub use handler::{HttpConnState, OutboundEvent};
pub use push::{BodyWriter, Flow};
pub use request::{Request, Version};
pub use response::Response;
pub use server::HttpServer;
pub use status::Status;
pub use stream::BodyStream;
pub use upload::{Aborted, BodyResume, BodySink, Intake, SinkCx, Trailers};

// The WebSocket upgrade reads its request head with this module's parser and header helpers.
#[cfg(feature = "ws")]
pub(crate) use fast::{utf8_prefix, Slots};
#[cfg(feature = "ws")]
pub(crate) use request::{tokens, trim};
#[cfg(feature = "ws")]
pub(crate) use switch::{refuse, Switch, SwitchEvent};

/// The application behind an [`HttpServer`]: one value per event loop, called for every
/// request of that loop's connections, in order, on the loop's thread (so it must not block:
/// answer later with [`Response::defer`], or from the worker pool with [`Response::spawn`]).
///
/// Any `FnMut(&Request<'_>, &mut Response<'_>) + Send + 'static` is a service.
///
/// The server's handler serves the loop's outbound connections too — the ones the service
/// opens with [`LoopCx::connect`], to an upstream server for instance: their callbacks come
/// to [`on_outbound`](Service::on_outbound) with the `u64` link
/// [`on_connect`](Service::on_connect) returned for them (a key into the service's own table
/// of such connections, say). A deferred response can be answered from there, on the same
/// loop, without a wake-up.
pub trait Service: Send + 'static {
    /// Answers one request. A response left unfinished is completed with an empty body.
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>);

    /// An outbound connection this service opened ([`LoopCx::connect`]) is established:
    /// returns the link its later events carry ([`Conn::take_context`] gives the connect's
    /// context). The default closes it: a service that opens none gets none.
    fn on_connect(&mut self, conn: &mut Conn<'_>) -> u64 {
        conn.close();
        0
    }

    /// An event on an outbound connection, with the link [`on_connect`](Service::on_connect)
    /// gave it; the [`Action`] is the callback's. The default closes the connection on its
    /// peer's end of stream or a timeout, and ignores the rest.
    fn on_outbound(&mut self, conn: &mut Conn<'_>, link: u64, event: OutboundEvent) -> Action {
        let _ = (conn, link);
        match event {
            OutboundEvent::ReadClosed | OutboundEvent::Timeout(_) => Action::Close,
            _ => Action::Continue,
        }
    }

    /// An outbound connection closed.
    fn on_outbound_close(&mut self, id: ConnId, link: u64, reason: &CloseReason) {
        let _ = (id, link, reason);
    }

    /// An outbound connection could not be established (see
    /// [`Handler::on_connect_error`](crate::Handler::on_connect_error)).
    fn on_connect_error(&mut self, cx: &mut LoopCx<'_>, error: ConnectError) {
        let _ = cx;
        log::debug!("eventide::http: {error}");
    }

    /// A request with `Expect: 100-continue` whose head is in and whose body is not: return
    /// `Err(status)` to refuse it before the client sends the body — a `401` for missing
    /// credentials, a `413` for a body this route will not take, a `417` — and the server
    /// answers it with that status and closes the connection (the body is never read). The
    /// default accepts, and the server sends `100 Continue`. `req.body()` is empty here;
    /// [`call`](Service::call) comes as usual once the body is in. This is for bodies taken
    /// into memory ([`Intake::Buffer`]); a streamed body is refused in
    /// [`intake`](Service::intake).
    ///
    /// ```
    /// use eventide::http::{Request, Response, Service, Status};
    ///
    /// struct Uploads;
    ///
    /// impl Service for Uploads {
    ///     fn check_continue(&mut self, req: &Request<'_>) -> Result<(), Status> {
    ///         match req.header("authorization") {
    ///             Some(_) => Ok(()),
    ///             None => Err(Status::UNAUTHORIZED),
    ///         }
    ///     }
    ///
    ///     fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
    ///         res.body(format!("{} bytes", req.body().len()).as_bytes());
    ///     }
    /// }
    /// # let _ = Uploads;
    /// ```
    fn check_continue(&mut self, req: &Request<'_>) -> Result<(), Status> {
        let _ = req;
        Ok(())
    }

    /// How the body of `req` is taken, chosen once its head is in (for a request with a body:
    /// a `Content-Length` above zero, or chunked). [`Intake::Buffer`] (the default) gathers
    /// it in memory up to [`HttpServer::max_body_size`] and then calls
    /// [`call`](Service::call); [`Intake::Stream`] hands it piece by piece to a
    /// [`BodySink`], whatever its size, and the sink answers; [`Intake::Refuse`] answers a
    /// status and closes. `req.body()` is empty here. For
    /// a request with `Expect: 100-continue` this is where a streamed body is refused before
    /// it is sent ([`check_continue`](Service::check_continue) is for buffered ones): the
    /// server sends `100 Continue` once a sink is given.
    ///
    /// ```
    /// use eventide::http::{BodySink, Intake, Request, Response, Service, SinkCx, Status, Trailers};
    ///
    /// /// Keeps the body of `POST /logs` in a bounded ring of recent bytes.
    /// struct Tail(Vec<u8>);
    ///
    /// impl BodySink for Tail {
    ///     fn data(&mut self, chunk: &[u8], _cx: &mut SinkCx<'_>) -> Result<(), Status> {
    ///         self.0.extend_from_slice(chunk);
    ///         let over = self.0.len().saturating_sub(4096);
    ///         self.0.drain(..over);
    ///         Ok(())
    ///     }
    ///
    ///     fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
    ///         res.body(&self.0);
    ///     }
    /// }
    ///
    /// struct Logs;
    ///
    /// impl Service for Logs {
    ///     fn intake(&mut self, req: &Request<'_>) -> Intake {
    ///         match (req.method(), req.path(), req.header("authorization")) {
    ///             ("POST", "/logs", Some(_)) => Intake::stream(Tail(Vec::new())),
    ///             ("POST", "/logs", None) => Intake::Refuse(Status::UNAUTHORIZED),
    ///             _ => Intake::Buffer,
    ///         }
    ///     }
    ///
    ///     fn call(&mut self, _req: &Request<'_>, res: &mut Response<'_>) {
    ///         res.status(Status::NOT_FOUND).body(b"");
    ///     }
    /// }
    /// # let _ = Logs;
    /// ```
    fn intake(&mut self, req: &Request<'_>) -> Intake {
        let _ = req;
        Intake::Buffer
    }

    /// The loop started (see [`Handler::on_boot`](crate::Handler::on_boot)): a place to set
    /// loop timers.
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        let _ = cx;
    }

    /// A loop timer this service set fired. The service's timers are its own: any token is
    /// free (the server's `Date` timer does not share their space).
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let _ = (cx, token);
    }
}

impl<F> Service for F
where
    F: FnMut(&Request<'_>, &mut Response<'_>) + Send + 'static,
{
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self(req, res)
    }
}

/// Size limits of one request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Request line plus headers, in bytes.
    pub max_head: usize,
    /// Number of header fields.
    pub max_headers: usize,
    /// Decoded body, in bytes.
    pub max_body: usize,
}

impl Limits {
    /// The most encoded bytes a chunked body may take (chunk framing, extensions and
    /// trailers included).
    pub(crate) fn max_encoded(&self) -> usize {
        self.max_body.saturating_mul(2).saturating_add(8 * 1024)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            max_headers: 64,
            max_body: 256 * 1024,
        }
    }
}

/// Where response bytes go: a connection, or a `Vec` (the protocol adapter's output).
pub(crate) use crate::adapter::Output as Sink;
