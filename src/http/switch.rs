//! Switching an [`HttpServer`] connection to another protocol after `101 Switching
//! Protocols` (RFC 9110 section 7.8): the WebSocket upgrade of `eventide::ws`
//! ([`HttpServer::websocket`]) is the one protocol there is.
//!
//! A route asks for the switch from [`Service::call`](super::Service::call)
//! (`Response::websocket`). Once the service returns, the server hands the request and the
//! response to the protocol, which writes the `101` (or a refusal) and gives the connection's
//! new state; the server then answers no more HTTP on that connection: the rest of the input,
//! frames the client sent right behind its request included, and every callback after it
//! go to the protocol (`Side::Switched`).
//!
//! The rules, each tested in `tests/ws_upgrade.rs`:
//!
//! * Requests pipelined before the upgrade are answered first, in order: an upgrade request
//!   that arrives while answers are owed (deferred, or a file or stream body still being
//!   sent) waits, unread, until they are all out.
//! * Bytes after the upgrade request belong to the new protocol (RFC 9110: the switch takes
//!   effect right after the request): HTTP requests pipelined behind it are not answered
//!   (to WebSocket they are a protocol error, closed with 1002).
//! * The decision is made in `Service::call`: a deferred response
//!   ([`Response::defer`](super::Response::defer)) cannot switch, and one that asks is
//!   answered `500` (and logged).

use std::any::Any;
use std::fmt;

use super::{HttpServer, Request, Response, Service, Status};
use crate::{Action, CloseReason, Conn, ConnId, Timeout};

/// A protocol an [`HttpServer`] connection can switch to: one value per loop, with the
/// per-connection state it gives on accepting (type-erased, so that the server keeps one type
/// parameter).
pub(crate) trait Switch: Send {
    /// Whether a request head asks for this protocol (it waits behind answers owed).
    fn asks(&self, headers: &[httparse::Header<'_>]) -> bool;

    /// A route asked to switch: answer `req` in `res` (the `101`, or a refusal that closes
    /// the connection) and return the connection's state if it switches.
    fn accept(&mut self, req: &Request<'_>, res: &mut Response<'_>) -> Option<Box<dyn Any>>;

    /// The `101` is written: the protocol starts (and reads the input already there).
    fn open(&mut self, conn: &mut Conn<'_>, st: &mut dyn Any);

    /// A connection callback, forwarded.
    fn event(&mut self, conn: &mut Conn<'_>, st: &mut dyn Any, event: SwitchEvent) -> Action;

    /// The connection closed.
    fn close(&mut self, id: ConnId, st: Box<dyn Any>, reason: &CloseReason);
}

/// The connection callbacks a switched connection forwards.
#[cfg_attr(not(feature = "ws"), allow(dead_code))] // only `eventide::ws` reads them
pub(crate) enum SwitchEvent {
    Data,
    ReadClosed,
    Timeout(Timeout),
    Timer(u64),
    Message(Box<dyn Any + Send>),
    Stop,
}

/// The state of a connection that switched protocols.
pub(crate) struct Switched(Box<dyn Any>);

impl fmt::Debug for Switched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Switched")
    }
}

/// An [`HttpServer`]'s protocol to switch to, if any.
#[derive(Default)]
pub(crate) struct Upgrades {
    pub(crate) to: Option<Box<dyn Switch>>,
}

impl Upgrades {
    /// Whether the request with `headers` must wait behind the answers owed.
    #[inline]
    pub(crate) fn waits(&self, owing: bool, headers: &[httparse::Header<'_>]) -> bool {
        owing && self.to.as_ref().is_some_and(|to| to.asks(headers))
    }

    /// After `Service::call`: if the route asked to switch, answer the request for the
    /// protocol, and put the connection's new state in `switching` if it switches. `now` is
    /// whether the connection may switch here (no answers owed, no stop under way).
    #[inline]
    pub(crate) fn after_call(
        &mut self,
        req: &Request<'_>,
        res: &mut Response<'_>,
        now: bool,
        switching: &mut Option<Box<Switched>>,
    ) {
        if res.upgrade {
            *switching = self.answer(req, res, now);
        }
    }

    #[cold]
    fn answer(
        &mut self,
        req: &Request<'_>,
        res: &mut Response<'_>,
        now: bool,
    ) -> Option<Box<Switched>> {
        res.upgrade = false;
        if res.is_sent() {
            log::warn!("eventide::http: a switch of protocol after the response; ignored");
            return None;
        }
        let Some(to) = self.to.as_deref_mut() else {
            log::error!("eventide::http: a WebSocket upgrade on a server without HttpServer::websocket; answered 500");
            res.fail();
            return None;
        };
        if !now {
            refuse(
                res,
                Status::SERVICE_UNAVAILABLE,
                "cannot switch protocols now",
            );
            return None;
        }
        if !res.keep_alive() && req.version() == super::Version::Http11 {
            refuse(
                res,
                Status::BAD_REQUEST,
                "an upgrade request with Connection: close",
            );
            return None;
        }
        to.accept(req, res).map(|st| Box::new(Switched(st)))
    }
}

/// Answers `status` with `what` as a text body, and closes the connection.
pub(crate) fn refuse(res: &mut Response<'_>, status: Status, what: &str) {
    res.status(status)
        .close()
        .content_type("text/plain")
        .body(what.as_bytes());
}

impl<S: Service> HttpServer<S> {
    /// The `101` is written and the connection switched (`st`): the protocol starts.
    pub(crate) fn switched_open(&mut self, conn: &mut Conn<'_>, st: &mut Switched) {
        if let Some(to) = self.upgrade.to.as_deref_mut() {
            to.open(conn, &mut *st.0);
        }
    }

    /// A callback on a connection that switched protocols.
    pub(crate) fn switched(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut Switched,
        event: SwitchEvent,
    ) -> Action {
        match self.upgrade.to.as_deref_mut() {
            Some(to) => to.event(conn, &mut *st.0, event),
            None => Action::Close,
        }
    }

    /// A connection that switched protocols closed.
    pub(crate) fn switched_close(&mut self, id: ConnId, st: Switched, reason: &CloseReason) {
        if let Some(to) = self.upgrade.to.as_deref_mut() {
            to.close(id, st.0, reason);
        }
    }
}
