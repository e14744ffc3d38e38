//! [`WsServer`]: the [`Handler`] that reads the upgrade request (or, on a connection it
//! dialed, the answer), then runs a [`Session`] per connection for a [`WsHandler`].

use std::any::Any;
use std::fmt;
use std::io;
use std::time::Duration;

use super::client::{ClientHandshake, ClientRequest, HandshakeError};
use super::handler::WsHandler;
use super::handshake::Rejection;
use super::runner::{self, Open, Runner};
use super::Config;
#[cfg(doc)]
use super::Session;
use crate::http::{utf8_prefix, Request, Slots, Status, Version};
use crate::{Action, CloseReason, Conn, ConnId, Connect, Handler, LoopCx, Refusal};

/// A connection's state in a [`WsServer`].
pub struct WsConnState<S> {
    phase: Phase<S>,
}

enum Phase<S> {
    /// Accepted: waiting for the upgrade request.
    Request,
    /// Outbound: the request is written, the answer awaited.
    Answer(Box<(ClientHandshake, S)>),
    Open(Open<S>),
    /// Refused or failed before opening: input is dropped until the close.
    Done,
}

/// The context of an outbound connection opened with [`WsServer::dial`].
struct Dial<S> {
    request: ClientRequest,
    state: S,
}

/// Most header fields in an upgrade request.
const MAX_HEADERS: usize = 64;

/// A WebSocket server (and dialer): the [`Handler`] that runs a [`WsHandler`]. Make one per
/// loop in the factory given to [`Builder::start`](crate::Builder::start).
///
/// Accepted connections must open with an upgrade request (on any path: the handler's
/// [`on_upgrade`](WsHandler::on_upgrade) decides); a malformed one is answered with 400, a
/// wrong version with 426, a refused origin with 403, and closed. The request head is read
/// with the `http` module's parser, at most 8 KiB of it (431 beyond), and while incomplete it
/// stays in the connection's input, where the server's read timeout applies.
///
/// To serve WebSocket on some routes of an HTTP server instead, give one to
/// [`HttpServer::websocket`](crate::http::HttpServer::websocket): its handler and options
/// (all but the head limit, which is the HTTP server's) serve the connections its routes
/// upgrade.
pub struct WsServer<H> {
    pub(crate) runner: Runner<H>,
    max_head: usize,
}

impl<H: WsHandler> WsServer<H> {
    /// A server running `handler` with the default [`Config`], no subprotocols, any origin,
    /// no idle ping, and a 5-second close timeout.
    pub fn new(handler: H) -> WsServer<H> {
        WsServer {
            runner: Runner::new(handler),
            max_head: 8 * 1024,
        }
    }

    /// The sessions' limits, delivery and compression.
    pub fn config(mut self, config: Config) -> Self {
        self.runner.config = config;
        self
    }

    /// Subprotocols this server speaks, in its order of preference: the first one the client
    /// offers is selected (before [`WsHandler::on_upgrade`], which may change it).
    pub fn protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.runner.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Accept only upgrades whose `Origin` (`None` when absent: not a browser) passes
    /// `check`; the others get 403.
    pub fn origin_check(mut self, check: impl Fn(Option<&str>) -> bool + Send + 'static) -> Self {
        self.runner.origin_check = Some(Box::new(check));
        self
    }

    /// Ping connections that are quiet for `period`, and close those that stay quiet for
    /// another `period` (no pong): a vanished peer is found within two periods.
    pub fn idle_ping(mut self, period: Duration) -> Self {
        self.runner.idle_ping = Some(period);
        self
    }

    /// How long to wait for the peer's close frame after sending ours (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.runner.close_timeout = timeout;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.runner.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.runner.handler
    }

    /// What to pass to [`LoopCx::connect`] (or [`Server::connect`](crate::Server::connect))
    /// to open an outbound WebSocket connection to `addr` with `request`; `state` becomes
    /// the connection's state once the handshake succeeds, or goes to
    /// [`on_dial_error`](WsHandler::on_dial_error).
    pub fn dial(addr: impl Into<crate::Addr>, request: ClientRequest, state: H::State) -> Connect
    where
        H::State: Send,
    {
        Connect::new(addr).context(Dial { request, state })
    }

    /// Reads the upgrade request at the front of the input and answers it.
    fn read_request(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) {
        let input = conn.input();
        let head_part = &input[..input.len().min(self.max_head)];
        let (text, _) = utf8_prefix(head_part);
        let mut slots = Slots::new();
        let head = match slots.parse(head_part, text, MAX_HEADERS) {
            Ok(Some(head)) => head,
            Ok(None) if input.len() < self.max_head => return, // wait for the rest
            Ok(None) => {
                return self.refuse(
                    conn,
                    st,
                    Rejection::new(
                        Status::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "request head too large",
                    ),
                );
            }
            Err(e) => {
                let status = e.status();
                let reason = if status == Status::BAD_REQUEST {
                    "malformed request"
                } else {
                    status.reason()
                };
                return self.refuse(conn, st, Rejection::new(status, reason));
            }
        };
        let version = match head.version {
            1 => Version::Http11,
            _ => Version::Http10,
        };
        let req = Request {
            method: head.method,
            target: head.target,
            version,
            headers: head.headers,
            body: &[],
            keep_alive: false,
        };
        let (upgrade, user) = match self.runner.negotiate(&req) {
            Ok(accepted) => accepted,
            Err(rejection) => return self.refuse(conn, st, rejection),
        };
        upgrade.write_response(conn);
        let open = self.runner.open_for(&upgrade, user);
        conn.consume(head.len);
        self.open(conn, st, open);
    }

    fn refuse(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        rejection: Rejection,
    ) {
        log::debug!("eventide::ws: upgrade refused: {rejection}");
        rejection.write_response(conn);
        conn.consume(conn.input().len());
        conn.close_with(CloseReason::Protocol(format!(
            "WebSocket upgrade refused: {rejection}"
        )));
        st.phase = Phase::Done;
    }

    /// Reads the server's answer on an outbound connection.
    fn read_answer(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) {
        let Phase::Answer(pending) = &st.phase else {
            return;
        };
        match pending.0.validate(conn.input()) {
            Ok(None) => {}
            Ok(Some(done)) => {
                let Phase::Answer(pending) = std::mem::replace(&mut st.phase, Phase::Done) else {
                    return;
                };
                let session = done.session(&self.runner.config);
                conn.consume(done.head_len);
                let protocol = done.accepted.protocol().map(Into::into);
                self.open(conn, st, Open::new(session, pending.1, protocol));
            }
            Err(e) => self.dial_failed(conn, st, e),
        }
    }

    fn dial_failed(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        e: HandshakeError,
    ) {
        conn.consume(conn.input().len());
        conn.close_with(CloseReason::Protocol(e.to_string()));
        if let Phase::Answer(pending) = std::mem::replace(&mut st.phase, Phase::Done) {
            let (_, user) = *pending;
            self.runner
                .handler
                .on_dial_error(user, io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }

    /// The handshake is done: the session runs from here.
    fn open(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>, open: Open<H::State>) {
        st.phase = Phase::Open(open);
        if let Phase::Open(open) = &mut st.phase {
            self.runner.start(conn, open);
        }
    }
}

impl<H: WsHandler> Handler for WsServer<H> {
    type State = WsConnState<H::State>;
    /// A handle's commands, and what [`WsHandler::on_posted`] gets.
    type Message = Box<dyn Any + Send>;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<WsConnState<H::State>, Refusal> {
        let mut st = WsConnState {
            phase: Phase::Request,
        };
        if conn.is_outbound() {
            let Some(dial) = conn.take_context::<Dial<H::State>>() else {
                log::warn!("eventide::ws: outbound connection without WsServer::dial context");
                return Err(Refusal::Unsupported);
            };
            let handshake = dial.request.write(conn);
            st.phase = Phase::Answer(Box::new((handshake, dial.state)));
        }
        Ok(st)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) -> Action {
        match &mut st.phase {
            Phase::Request => self.read_request(conn, st),
            Phase::Answer(_) => self.read_answer(conn, st),
            Phase::Open(open) => self.runner.read_frames(conn, open),
            Phase::Done => {
                let all = conn.input().len();
                conn.consume(all);
            }
        }
        Action::Continue
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) -> Action {
        let finished = matches!(&st.phase, Phase::Open(open) if open.session.is_finished());
        runner::read_closed(conn, finished)
    }

    fn on_timer(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        token: u64,
    ) -> Action {
        if let Phase::Open(open) = &mut st.phase {
            self.runner.timer(conn, open, token);
        }
        Action::Continue
    }

    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        msg: Box<dyn Any + Send>,
    ) -> Action {
        if let Phase::Open(open) = &mut st.phase {
            self.runner.message(conn, open, msg);
        }
        Action::Continue
    }

    /// A stop began: an open session says goodbye with a close frame (1001, "going away")
    /// and waits for the peer's answer (bounded by the close timeout and the stop deadline);
    /// any other connection closes.
    fn on_stop(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) -> Action {
        match &mut st.phase {
            Phase::Open(open) => self.runner.stop(conn, open),
            _ => Action::Close,
        }
    }

    fn on_connect_error(&mut self, _cx: &mut LoopCx<'_>, mut error: crate::ConnectError) {
        let reason = error.to_string();
        if let Some(dial) = error.take_context::<Dial<H::State>>() {
            self.runner.handler.on_dial_error(
                dial.state,
                io::Error::new(io::ErrorKind::ConnectionRefused, reason),
            );
        }
    }

    fn on_close(&mut self, id: ConnId, st: WsConnState<H::State>, reason: &CloseReason) {
        match st.phase {
            Phase::Open(open) => self.runner.handler.on_close(id, open.user, reason),
            Phase::Answer(pending) => {
                let (_, user) = *pending;
                self.runner.handler.on_dial_error(
                    user,
                    io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("closed during the handshake: {reason}"),
                    ),
                );
            }
            Phase::Request | Phase::Done => {}
        }
    }

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.runner.handler.on_boot(cx);
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.runner.handler.on_tick(cx, token);
    }
}

impl<H> fmt::Debug for WsServer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer")
            .field("config", &self.runner.config)
            .field("protocols", &self.runner.protocols)
            .field("idle_ping", &self.runner.idle_ping)
            .finish()
    }
}

impl<S> fmt::Debug for WsConnState<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Request => "request",
            Phase::Answer(_) => "answer",
            Phase::Open(_) => "open",
            Phase::Done => "done",
        };
        f.debug_struct("WsConnState")
            .field("phase", &phase)
            .finish()
    }
}
