//! [`WsServer`]: the [`Handler`] that reads the upgrade request (or, on a connection it
//! dialed, the answer), then runs a [`Session`] per connection for a [`WsHandler`].

use std::any::Any;
use std::fmt;
use std::io;
use std::ops::ControlFlow;
use std::time::Duration;

use super::client::{ClientHandshake, ClientRequest, HandshakeError};
use super::close::CloseCode;
use super::handle::Command;
use super::handler::{WsConn, WsHandler, CLOSE_TIMEOUT_TOKEN, IDLE_PING_TOKEN};
use super::handshake::{accept, Rejection};
use super::session::{Event, Scratch, Session};
use super::Config;
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

struct Open<S> {
    session: Session,
    user: S,
    protocol: Option<Box<str>>,
    close_timer: bool,
}

/// The context of an outbound connection opened with [`WsServer::dial`].
struct Dial<S> {
    request: ClientRequest,
    state: S,
}

/// Decides whether an `Origin` may open a connection.
type OriginCheck = dyn Fn(Option<&str>) -> bool + Send;

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
pub struct WsServer<H> {
    handler: H,
    config: Config,
    protocols: Vec<String>,
    origin_check: Option<Box<OriginCheck>>,
    idle_ping: Option<Duration>,
    close_timeout: Duration,
    max_head: usize,
    scratch: Scratch,
}

impl<H: WsHandler> WsServer<H> {
    /// A server running `handler` with the default [`Config`], no subprotocols, any origin,
    /// no idle ping, and a 5-second close timeout.
    pub fn new(handler: H) -> WsServer<H> {
        WsServer {
            handler,
            config: Config::new(),
            protocols: Vec::new(),
            origin_check: None,
            idle_ping: None,
            close_timeout: Duration::from_secs(5),
            max_head: 8 * 1024,
            scratch: Scratch::new(),
        }
    }

    /// The sessions' limits, delivery and compression.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Subprotocols this server speaks, in its order of preference: the first one the client
    /// offers is selected (before [`WsHandler::on_upgrade`], which may change it).
    pub fn protocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Accept only upgrades whose `Origin` (`None` when absent: not a browser) passes
    /// `check`; the others get 403.
    pub fn origin_check(mut self, check: impl Fn(Option<&str>) -> bool + Send + 'static) -> Self {
        self.origin_check = Some(Box::new(check));
        self
    }

    /// Ping connections that are quiet for `period`, and close those that stay quiet for
    /// another `period` (no pong): a vanished peer is found within two periods.
    pub fn idle_ping(mut self, period: Duration) -> Self {
        self.idle_ping = Some(period);
        self
    }

    /// How long to wait for the peer's close frame after sending ours (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
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
        if req
            .header("content-length")
            .is_some_and(|v| crate::http::trim(v) != b"0")
            || req.header("transfer-encoding").is_some()
        {
            return self.refuse(
                conn,
                st,
                Rejection::new(Status::BAD_REQUEST, "an upgrade request has no body"),
            );
        }
        let mut upgrade = match accept(&req, &self.config) {
            Ok(u) => u,
            Err(rejection) => return self.refuse(conn, st, rejection),
        };
        if let Some(check) = &self.origin_check {
            if !check(upgrade.origin()) {
                return self.refuse(
                    conn,
                    st,
                    Rejection::new(Status::FORBIDDEN, "origin not allowed"),
                );
            }
        }
        upgrade.select_first_of(&self.protocols);
        let user = match self.handler.on_upgrade(&req, &mut upgrade) {
            Ok(user) => user,
            Err(rejection) => return self.refuse(conn, st, rejection),
        };
        upgrade.write_response(conn);
        let session = upgrade.session(&self.config);
        let protocol = upgrade.protocol().map(Into::into);
        conn.consume(head.len);
        self.open(conn, st, session, user, protocol);
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
                let session = done.session(&self.config);
                conn.consume(done.head_len);
                let protocol = done.accepted.protocol().map(Into::into);
                self.open(conn, st, session, pending.1, protocol);
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
            self.handler
                .on_dial_error(user, io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }

    /// The handshake is done: the session runs from here.
    fn open(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        session: Session,
        user: H::State,
        protocol: Option<Box<str>>,
    ) {
        st.phase = Phase::Open(Open {
            session,
            user,
            protocol,
            close_timer: false,
        });
        if let Some(period) = self.idle_ping {
            conn.set_timer(period, IDLE_PING_TOKEN);
        }
        let Phase::Open(open) = &mut st.phase else {
            return;
        };
        let mut ws = WsConn {
            conn,
            tx: open.session.sender(&mut self.scratch),
            protocol: open.protocol.as_deref(),
        };
        self.handler.on_open(&mut ws, &mut open.user);
        self.after_callback(conn, open);
        if !conn.input().is_empty() {
            self.read_frames(conn, open);
        }
    }

    /// Runs the frames in the input through the session and the handler.
    fn read_frames(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>) {
        let handler = &mut self.handler;
        let user = &mut open.user;
        let protocol = open.protocol.as_deref();
        let input = conn.input();
        let used = open
            .session
            .receive(input, &mut self.scratch, conn, |event, tx, conn| {
                let mut ws = WsConn {
                    conn,
                    tx: tx.reborrow(),
                    protocol,
                };
                match event {
                    Event::Message(msg) => handler.on_message(&mut ws, user, msg),
                    Event::Fragment(f) => handler.on_fragment(&mut ws, user, f),
                    Event::Ping(p) => handler.on_ping(&mut ws, user, p),
                    Event::Pong(p) => handler.on_pong(&mut ws, user, p),
                    Event::Close(close) => {
                        handler.on_peer_close(&mut ws, user, close);
                        ws.conn.close();
                    }
                    Event::Failed(err) => {
                        log::debug!("eventide::ws: {err}");
                        ws.conn.close_with(CloseReason::Protocol(err.to_string()));
                    }
                }
                if ws.conn.is_closing() || ws.conn.is_read_paused() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
        conn.consume(used);
        self.after_callback(conn, open);
    }

    /// After the application had a chance to send a close frame: bound the wait for the
    /// peer's answer.
    /// No group broadcast may follow the close frame either: the connection leaves them.
    fn after_callback(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>) {
        if open.session.close_sent() {
            conn.leave_groups();
        }
        if open.session.close_sent() && !open.close_timer && !conn.is_closing() {
            open.close_timer = true;
            conn.set_timer(self.close_timeout, CLOSE_TIMEOUT_TOKEN);
        }
    }

    /// Runs a handle's command on the loop.
    fn command(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>, cmd: Command) {
        cmd.taken();
        let mut tx = open.session.sender(&mut self.scratch);
        let result = match &cmd {
            Command::Message {
                text: true, data, ..
            } => match std::str::from_utf8(data) {
                Ok(t) => tx.text(conn, t),
                Err(_) => Ok(()),
            },
            Command::Message { data, .. } => tx.binary(conn, data),
            Command::Close { code, reason } => tx.close(conn, *code, reason),
        };
        if let Err(e) = result {
            log::debug!("eventide::ws: handle send dropped: {e}");
        }
        self.after_callback(conn, open);
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
            Phase::Open(open) => self.read_frames(conn, open),
            Phase::Done => {
                let all = conn.input().len();
                conn.consume(all);
            }
        }
        Action::Continue
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) -> Action {
        // End of stream without a close frame is an abnormal closure (1006): the peer
        // vanished, maybe mid-frame. After the close handshake it is the expected end.
        let finished = matches!(&st.phase, Phase::Open(open) if open.session.is_finished());
        if !finished {
            log::debug!("eventide::ws: peer closed without a close frame");
            conn.close_with(CloseReason::PeerClosed);
        }
        Action::Close
    }

    fn on_timer(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        token: u64,
    ) -> Action {
        let Phase::Open(open) = &mut st.phase else {
            return Action::Continue;
        };
        match token {
            IDLE_PING_TOKEN => {
                if open.session.check_idle(&mut self.scratch, conn) == super::Liveness::Unresponsive
                {
                    conn.close_with(CloseReason::IdleTimeout);
                } else if let Some(period) = self.idle_ping {
                    conn.set_timer(period, IDLE_PING_TOKEN);
                }
                self.after_callback(conn, open);
            }
            CLOSE_TIMEOUT_TOKEN => {
                log::debug!("eventide::ws: no close frame from the peer in time");
                conn.close();
            }
            _ => {
                let mut ws = WsConn {
                    conn,
                    tx: open.session.sender(&mut self.scratch),
                    protocol: open.protocol.as_deref(),
                };
                self.handler.on_timer(&mut ws, &mut open.user, token);
                self.after_callback(conn, open);
            }
        }
        Action::Continue
    }

    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut WsConnState<H::State>,
        msg: Box<dyn Any + Send>,
    ) -> Action {
        let Phase::Open(open) = &mut st.phase else {
            return Action::Continue;
        };
        match msg.downcast::<Command>() {
            Ok(cmd) => self.command(conn, open, *cmd),
            Err(other) => {
                let mut ws = WsConn {
                    conn,
                    tx: open.session.sender(&mut self.scratch),
                    protocol: open.protocol.as_deref(),
                };
                self.handler.on_posted(&mut ws, &mut open.user, other);
                self.after_callback(conn, open);
            }
        }
        Action::Continue
    }

    /// A stop began: an open session says goodbye with a close frame (1001, "going away")
    /// and waits for the peer's answer (bounded by the close timeout and the stop deadline);
    /// any other connection closes.
    fn on_stop(&mut self, conn: &mut Conn<'_>, st: &mut WsConnState<H::State>) -> Action {
        let Phase::Open(open) = &mut st.phase else {
            return Action::Close;
        };
        if !open.session.close_sent() {
            let sent = open.session.sender(&mut self.scratch).close(
                conn,
                CloseCode::GOING_AWAY,
                "going away",
            );
            if let Err(e) = sent {
                log::debug!("eventide::ws: no close frame at the stop: {e}");
                return Action::Close;
            }
        }
        self.after_callback(conn, open);
        Action::Continue
    }

    fn on_connect_error(&mut self, _cx: &mut LoopCx<'_>, mut error: crate::ConnectError) {
        let reason = error.to_string();
        if let Some(dial) = error.take_context::<Dial<H::State>>() {
            self.handler.on_dial_error(
                dial.state,
                io::Error::new(io::ErrorKind::ConnectionRefused, reason),
            );
        }
    }

    fn on_close(&mut self, id: ConnId, st: WsConnState<H::State>, reason: &CloseReason) {
        match st.phase {
            Phase::Open(open) => self.handler.on_close(id, open.user, reason),
            Phase::Answer(pending) => {
                let (_, user) = *pending;
                self.handler.on_dial_error(
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
        self.handler.on_boot(cx);
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.handler.on_tick(cx, token);
    }
}

impl<H> fmt::Debug for WsServer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer")
            .field("config", &self.config)
            .field("protocols", &self.protocols)
            .field("idle_ping", &self.idle_ping)
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
