//! The WebSocket upgrade from an [`HttpServer`] route: [`HttpServer::websocket`] gives the
//! server a [`WsHandler`] (with a [`WsServer`]'s options), a route answers with
//! [`Response::websocket`], and the connection runs the same session, with the same handler
//! callbacks, as on a [`WsServer`] — through the same `Conn` output, so TLS, groups and
//! handles work alike.

use std::any::Any;

use super::handler::WsHandler;
use super::handshake::asks_websocket;
use super::runner::{self, Open, Runner};
use super::WsServer;
use crate::http::{refuse, HttpServer, Request, Response, Service, Status, Switch, SwitchEvent};
use crate::{Action, CloseReason, Conn, ConnId, Timeout};

impl<S: Service> HttpServer<S> {
    /// Lets this server's routes upgrade requests to WebSocket with `ws`'s handler and
    /// options — its [`protocols`](WsServer::protocols), [`origin_check`](WsServer::origin_check),
    /// [`config`](WsServer::config), [`idle_ping`](WsServer::idle_ping) and
    /// [`close_timeout`](WsServer::close_timeout); the HTTP server's own head limits apply to
    /// the upgrade request. A route upgrades with [`Response::websocket`]; every other request
    /// is served as HTTP, on the same port.
    ///
    /// On an `HttpServer` the handler's [`on_boot`](WsHandler::on_boot) and
    /// [`on_tick`](WsHandler::on_tick) are not called: the loop's timers are the service's.
    ///
    /// ```no_run
    /// use eventide::http::{HttpServer, Request, Response, Status};
    /// use eventide::ws::{self, Message, Rejection, Upgrade, WsConn, WsHandler, WsServer};
    /// use eventide::Server;
    ///
    /// /// Echoes every message; the state is the connection's message count.
    /// struct Echo;
    ///
    /// impl WsHandler for Echo {
    ///     type State = u64;
    ///
    ///     fn on_upgrade(&mut self, _: &Request<'_>, _: &mut Upgrade<'_>) -> Result<u64, Rejection> {
    ///         Ok(0)
    ///     }
    ///
    ///     fn on_message(&mut self, ws: &mut WsConn<'_, '_>, count: &mut u64, msg: Message<'_>) {
    ///         *count += 1;
    ///         let _ = ws.send(msg);
    ///     }
    /// }
    ///
    /// fn routes(req: &Request<'_>, res: &mut Response<'_>) {
    ///     match req.path() {
    ///         "/echo" if ws::is_upgrade_request(req) => res.websocket(),
    ///         "/health" => res.content_type("text/plain").body(b"ok"),
    ///         _ => res.status(Status::NOT_FOUND).body(b""),
    ///     }
    /// }
    ///
    /// let server = Server::builder()
    ///     .bind("127.0.0.1:8080")
    ///     .start(|_| {
    ///         HttpServer::new(routes)
    ///             .websocket(WsServer::new(Echo).protocols(["echo.v1"]).origin_check(|o| {
    ///                 o.is_none_or(|o| o == "https://example.com")
    ///             }))
    ///     })?;
    /// server.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn websocket<H: WsHandler>(mut self, ws: WsServer<H>) -> Self {
        self.upgrade.to = Some(Box::new(ws.runner));
        self
    }
}

impl Response<'_> {
    /// Switches the connection to WebSocket (the server's [`HttpServer::websocket`] handler):
    /// once the route returns, the request is checked as a [`WsServer`] checks it — a
    /// malformed upgrade gets 400, a version other than 13 gets 426 with
    /// `Sec-WebSocket-Version: 13`, a refused origin 403, an upgrade request with a body 400,
    /// the handler's [`on_upgrade`](WsHandler::on_upgrade) may refuse too — each answer
    /// closing the connection; an accepted one gets `101 Switching Protocols` with
    /// `Sec-WebSocket-Accept` (and the subprotocol chosen), and the connection speaks frames
    /// from the byte after the request.
    ///
    /// Requests pipelined before it are answered first, in order; the decision must be made
    /// here, in `Service::call` (from a deferred answer it is answered 500). Call it instead
    /// of writing a response; after one it is ignored.
    pub fn websocket(&mut self) {
        if self.is_sent() {
            log::warn!("eventide::ws: websocket() on a response already given; ignored");
            return;
        }
        self.upgrade = true;
    }
}

impl<H: WsHandler> Switch for Runner<H> {
    fn asks(&self, headers: &[httparse::Header<'_>]) -> bool {
        asks_websocket(headers)
    }

    fn accept(&mut self, req: &Request<'_>, res: &mut Response<'_>) -> Option<Box<dyn Any>> {
        let (upgrade, user) = match self.negotiate(req) {
            Ok(accepted) => accepted,
            Err(rejection) => {
                log::debug!("eventide::ws: upgrade refused: {rejection}");
                if rejection.needs_version_header() {
                    res.header("Sec-WebSocket-Version", "13");
                }
                refuse(res, rejection.status(), rejection.what());
                return None;
            }
        };
        res.status(Status::SWITCHING_PROTOCOLS);
        for (name, value) in upgrade.response_headers() {
            res.header(name, value);
        }
        res.body(b"");
        Some(Box::new(self.open_for(&upgrade, user)))
    }

    fn open(&mut self, conn: &mut Conn<'_>, st: &mut dyn Any) {
        if let Some(open) = st.downcast_mut::<Open<H::State>>() {
            self.start(conn, open);
        }
    }

    fn event(&mut self, conn: &mut Conn<'_>, st: &mut dyn Any, event: SwitchEvent) -> Action {
        let Some(open) = st.downcast_mut::<Open<H::State>>() else {
            return Action::Close; // not reached: the state is the one `accept` made
        };
        match event {
            SwitchEvent::Data => self.read_frames(conn, open),
            SwitchEvent::ReadClosed => {
                return runner::read_closed(conn, open.session.is_finished())
            }
            // As on a `WsServer`: the builder's idle and read timeouts close.
            SwitchEvent::Timeout(Timeout::Idle | Timeout::Read) => return Action::Close,
            SwitchEvent::Timer(token) => self.timer(conn, open, token),
            SwitchEvent::Message(msg) => self.message(conn, open, msg),
            SwitchEvent::Stop => return self.stop(conn, open),
        }
        Action::Continue
    }

    fn close(&mut self, id: ConnId, st: Box<dyn Any>, reason: &CloseReason) {
        if let Ok(open) = st.downcast::<Open<H::State>>() {
            self.handler.on_close(id, open.user, reason);
        }
    }
}
