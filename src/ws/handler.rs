//! The application's side of a [`WsServer`](super::WsServer): the [`WsHandler`] callbacks and
//! the [`WsConn`] they are given.

use std::any::Any;
use std::fmt;
use std::io;
use std::time::Duration;

use super::close::{CloseCode, CloseFrame};
use super::handle::WsHandle;
use super::handshake::{Rejection, Upgrade};
use super::session::{Fragment, Message, Sender};
#[cfg(doc)]
use super::{Config, WsServer};
use crate::http::Request;
#[cfg(doc)]
use crate::Handler;
use crate::{CloseReason, Conn, ConnId, LoopCx, TimerId};

/// Timer token of the idle ping ([`WsServer::idle_ping`]); reserved.
pub const IDLE_PING_TOKEN: u64 = u64::MAX;
/// Timer token of the close handshake timeout; reserved.
pub const CLOSE_TIMEOUT_TOKEN: u64 = u64::MAX - 1;

/// The application behind a [`WsServer`], or behind the WebSocket routes of an
/// [`HttpServer`](crate::http::HttpServer) ([`HttpServer::websocket`](crate::http::HttpServer::websocket)):
/// one value per event loop; every callback runs on the loop's thread and must not block.
/// Each connection has a typed [`State`](WsHandler::State), made by
/// [`on_upgrade`](WsHandler::on_upgrade).
pub trait WsHandler: Send + 'static {
    /// Per-connection state.
    type State: 'static;

    /// A valid upgrade request arrived (already checked: method, version, key, origin; on an
    /// `HttpServer`, a route chose to upgrade it with
    /// [`Response::websocket`](crate::http::Response::websocket)).
    /// Return the connection's state to accept it — after choosing a subprotocol on
    /// `upgrade` if you like (the server's [`protocols`](WsServer::protocols) are already
    /// applied) — or a [`Rejection`] to answer instead (e.g. 404 for an unknown path).
    fn on_upgrade(
        &mut self,
        req: &Request<'_>,
        upgrade: &mut Upgrade<'_>,
    ) -> Result<Self::State, Rejection>;

    /// The connection speaks WebSocket now (the 101 answer is written, or, on an outbound
    /// connection, was received).
    fn on_open(&mut self, ws: &mut WsConn<'_, '_>, state: &mut Self::State) {
        let _ = (ws, state);
    }

    /// A complete message arrived: text is valid UTF-8; both borrow the loop's buffers, for
    /// the duration of the call.
    fn on_message(&mut self, ws: &mut WsConn<'_, '_>, state: &mut Self::State, msg: Message<'_>);

    /// A piece of a message, in streaming delivery ([`Config::streaming`]).
    fn on_fragment(
        &mut self,
        ws: &mut WsConn<'_, '_>,
        state: &mut Self::State,
        fragment: Fragment<'_>,
    ) {
        let _ = (ws, state, fragment);
    }

    /// A ping arrived (already answered).
    fn on_ping(&mut self, ws: &mut WsConn<'_, '_>, state: &mut Self::State, payload: &[u8]) {
        let _ = (ws, state, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut WsConn<'_, '_>, state: &mut Self::State, payload: &[u8]) {
        let _ = (ws, state, payload);
    }

    /// The peer's close frame arrived (its code, if any, has been echoed unless this side
    /// closed first); the TCP connection closes next.
    fn on_peer_close(
        &mut self,
        ws: &mut WsConn<'_, '_>,
        state: &mut Self::State,
        close: CloseFrame<'_>,
    ) {
        let _ = (ws, state, close);
    }

    /// A value sent with [`ConnHandle::send`](crate::ConnHandle::send) arrived (boxed: a
    /// [`WsServer`]'s [`Message`](Handler::Message) type is `Box<dyn Any + Send>`).
    fn on_posted(
        &mut self,
        ws: &mut WsConn<'_, '_>,
        state: &mut Self::State,
        msg: Box<dyn Any + Send>,
    ) {
        let _ = (ws, state, msg);
    }

    /// A timer set with [`WsConn::set_timer`] fired.
    fn on_timer(&mut self, ws: &mut WsConn<'_, '_>, state: &mut Self::State, token: u64) {
        let _ = (ws, state, token);
    }

    /// An outbound connection ([`WsServer::dial`]) failed: the TCP connect, or the handshake
    /// (`InvalidData`, with the reason). Its state is handed back.
    fn on_dial_error(&mut self, state: Self::State, error: io::Error) {
        let _ = state;
        log::debug!("eventide::ws: dial failed: {error}");
    }

    /// The connection closed (after the close handshake, a failure, or the peer vanishing:
    /// `reason` says which). Called for every connection that reached `on_open`.
    fn on_close(&mut self, id: ConnId, state: Self::State, reason: &CloseReason) {
        let _ = (id, state, reason);
    }

    /// The loop started (see [`Handler::on_boot`]).
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        let _ = cx;
    }

    /// A loop timer fired (see [`Handler::on_tick`]).
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let _ = (cx, token);
    }
}

/// A WebSocket connection as seen from a [`WsHandler`] callback: send messages and control
/// frames, and reach the underlying [`Conn`] (pause reading, timers, addresses).
pub struct WsConn<'c, 'a> {
    pub(crate) conn: &'c mut Conn<'a>,
    pub(crate) tx: Sender<'c>,
    pub(crate) protocol: Option<&'c str>,
}

impl<'a> WsConn<'_, 'a> {
    /// Sends a text message.
    pub fn text(&mut self, text: &str) -> io::Result<()> {
        self.tx.text(self.conn, text)
    }

    /// Sends a binary message.
    pub fn binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.tx.binary(self.conn, data)
    }

    /// Sends a message like `msg` (an echo).
    #[inline]
    pub fn send(&mut self, msg: Message<'_>) -> io::Result<()> {
        self.tx.send(self.conn, msg)
    }

    /// Sends one frame of a fragmented message (see [`Sender::fragment`]). Fails with
    /// `InvalidInput` while the connection belongs to a [`Group`](crate::Group): a broadcast
    /// could land between two fragments, which the protocol forbids.
    pub fn fragment(&mut self, text: bool, data: &[u8], last: bool) -> io::Result<()> {
        if self.conn.group_count() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a connection in a group receives whole messages between its own: leave the groups before sending fragments",
            ));
        }
        self.tx.fragment(self.conn, text, data, last)
    }

    /// Sends a ping (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.tx.ping(self.conn, payload)
    }

    /// Sends an unsolicited pong (at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.tx.pong(self.conn, payload)
    }

    /// Starts the closing handshake. The peer's answer ends the connection; if it does not
    /// come within the close timeout ([`WsServer::close_timeout`]), the connection is closed
    /// anyway.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        self.tx.close(self.conn, code, reason)
    }

    /// Whether the close frame has been sent.
    pub fn is_closing(&self) -> bool {
        self.tx.is_closing()
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// A handle for sending to this connection from elsewhere.
    pub fn handle(&mut self) -> WsHandle {
        WsHandle::new(self.conn.handle())
    }

    /// Calls [`WsHandler::on_timer`] with `token` after `after` (the two highest tokens are
    /// reserved).
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.conn.set_timer(after, token)
    }

    /// The TCP connection underneath. Write to it only through this `WsConn`: raw bytes
    /// would break the framing.
    pub fn conn(&mut self) -> &mut Conn<'a> {
        self.conn
    }
}

impl fmt::Debug for WsConn<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConn")
            .field("id", &self.conn.id())
            .field("protocol", &self.protocol)
            .finish()
    }
}
