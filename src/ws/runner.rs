//! What a [`WsServer`](super::WsServer) and an `HttpServer` route that upgrades share: the
//! handler with its options, the checks an upgrade request passes before the handler sees
//! it, and the session of each open connection with the callbacks it drives.

use std::any::Any;
use std::ops::ControlFlow;
use std::time::Duration;

use super::close::CloseCode;
use super::handle::Command;
use super::handler::{WsConn, WsHandler, CLOSE_TIMEOUT_TOKEN, IDLE_PING_TOKEN};
use super::handshake::{accept, Rejection, Upgrade};
use super::session::{Event, Scratch, Session};
use super::{Config, Liveness};
use crate::http::{trim, Request, Status};
use crate::{Action, CloseReason, Conn};

/// Decides whether an `Origin` may open a connection.
pub(crate) type OriginCheck = dyn Fn(Option<&str>) -> bool + Send;

/// A [`WsHandler`] and the options it runs with, one per loop.
pub(crate) struct Runner<H> {
    pub(crate) handler: H,
    pub(crate) config: Config,
    pub(crate) protocols: Vec<String>,
    pub(crate) origin_check: Option<Box<OriginCheck>>,
    pub(crate) idle_ping: Option<Duration>,
    pub(crate) close_timeout: Duration,
    scratch: Scratch,
}

/// An open connection: its session, the handler's state for it, the subprotocol agreed.
pub(crate) struct Open<S> {
    pub(crate) session: Session,
    pub(crate) user: S,
    protocol: Option<Box<str>>,
    close_timer: bool,
}

impl<S> Open<S> {
    pub(crate) fn new(session: Session, user: S, protocol: Option<Box<str>>) -> Open<S> {
        Open {
            session,
            user,
            protocol,
            close_timer: false,
        }
    }
}

impl<H: WsHandler> Runner<H> {
    /// The default options: [`Config::new`], no subprotocols, any origin, no idle ping, a
    /// 5-second close timeout.
    pub(crate) fn new(handler: H) -> Runner<H> {
        Runner {
            handler,
            config: Config::new(),
            protocols: Vec::new(),
            origin_check: None,
            idle_ping: None,
            close_timeout: Duration::from_secs(5),
            scratch: Scratch::new(),
        }
    }

    /// Checks an upgrade request — no body, RFC 6455's rules ([`accept`]), the origin hook —
    /// selects the first subprotocol of the server's list the client offered, and lets the
    /// handler decide. On success the 101 answer is still to be written.
    pub(crate) fn negotiate<'r>(
        &mut self,
        req: &Request<'r>,
    ) -> Result<(Upgrade<'r>, H::State), Rejection> {
        let has_body = !req.body().is_empty()
            || req
                .header("content-length")
                .is_some_and(|v| trim(v) != b"0")
            || req.header("transfer-encoding").is_some();
        if has_body {
            return Err(Rejection::new(
                Status::BAD_REQUEST,
                "an upgrade request has no body",
            ));
        }
        let mut upgrade = accept(req, &self.config)?;
        if let Some(check) = &self.origin_check {
            if !check(upgrade.origin()) {
                return Err(Rejection::new(Status::FORBIDDEN, "origin not allowed"));
            }
        }
        upgrade.select_first_of(&self.protocols);
        let user = self.handler.on_upgrade(req, &mut upgrade)?;
        Ok((upgrade, user))
    }

    /// The connection for an accepted `upgrade` (its 101 written or about to be).
    pub(crate) fn open_for(&self, upgrade: &Upgrade<'_>, user: H::State) -> Open<H::State> {
        let protocol = upgrade.protocol().map(Into::into);
        Open::new(upgrade.session(&self.config), user, protocol)
    }

    /// The handshake is done: the idle ping starts, the handler's `on_open` runs, and the
    /// frames already in the input (sent right behind the handshake) are read.
    pub(crate) fn start(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>) {
        if let Some(period) = self.idle_ping {
            conn.set_timer(period, IDLE_PING_TOKEN);
        }
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
    pub(crate) fn read_frames(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>) {
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

    /// A connection timer fired: the idle ping, the close timeout, or the handler's own.
    pub(crate) fn timer(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>, token: u64) {
        match token {
            IDLE_PING_TOKEN => {
                if open.session.check_idle(&mut self.scratch, conn) == Liveness::Unresponsive {
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
    }

    /// A message for the connection: a handle's command, or a value for `on_posted`.
    pub(crate) fn message(
        &mut self,
        conn: &mut Conn<'_>,
        open: &mut Open<H::State>,
        msg: Box<dyn Any + Send>,
    ) {
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
    }

    /// A stop began: the session says goodbye with a close frame (1001, "going away") and
    /// waits for the peer's answer (bounded by the close timeout and the stop deadline).
    pub(crate) fn stop(&mut self, conn: &mut Conn<'_>, open: &mut Open<H::State>) -> Action {
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
}

/// The peer ended its stream: after the close handshake that is the expected end; without a
/// close frame it is an abnormal closure (1006), the peer vanished, maybe mid-frame.
pub(crate) fn read_closed(conn: &mut Conn<'_>, finished: bool) -> Action {
    if !finished {
        log::debug!("eventide::ws: peer closed without a close frame");
        conn.close_with(CloseReason::PeerClosed);
    }
    Action::Close
}
