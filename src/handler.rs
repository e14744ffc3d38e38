//! The application's side of the reactor: the [`Handler`] callbacks, the [`Action`] they
//! return, why a connection closed ([`CloseReason`]) and why `on_open` refused one
//! ([`Refusal`]).

use std::io;
use std::net::SocketAddr;

use crate::conn::{CloseReason, Conn, ConnId, Refusal};
use crate::connector::ConnectError;
use crate::cx::LoopCx;
use crate::udp::{Datagram, Udp};

/// What the event loop should do after a callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Action {
    /// Keep serving the connection.
    #[default]
    Continue,
    /// Close the connection once its pending output has been flushed.
    Close,
    /// Stop the whole server gracefully (as [`StopHandle::stop`](crate::StopHandle::stop)).
    StopServer,
}

/// Which per-connection timeout fired (see [`Handler::on_timeout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// No byte moved in either direction for the idle timeout
    /// ([`Builder::idle_timeout`](crate::Builder::idle_timeout)).
    Idle,
    /// Unconsumed input (an incomplete message) waited longer than the read timeout
    /// ([`Builder::read_timeout`](crate::Builder::read_timeout)).
    Read,
}

/// The callbacks of one event loop. The server creates one handler value per loop (so it is
/// `Send` but need not be `Sync`); every callback for the connections of that loop runs on the
/// loop's thread, one at a time, and must not block.
///
/// Each connection carries a typed [`State`](Handler::State), created by
/// [`on_open`](Handler::on_open), stored inline in the loop's connection table and handed to
/// every later callback by `&mut` — no lookup, no downcast. Values other threads and
/// connections send it ([`ConnHandle::send`](crate::ConnHandle::send)) are typed too: a
/// [`Message`](Handler::Message), handed to [`on_message`](Handler::on_message).
///
/// An echo server:
///
/// ```
/// use eventide::{Action, Conn, Handler, Refusal};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///     type Message = ();
///
///     fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
///         Ok(())
///     }
///
///     fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
///         let data = conn.input();
///         conn.write(data);
///         conn.consume(data.len());
///         Action::Continue
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// Per-connection state, created by [`on_open`](Handler::on_open).
    type State: 'static;

    /// What [`ConnHandle::send`](crate::ConnHandle::send) carries to a connection of this
    /// handler, for [`on_message`](Handler::on_message): `()` when it takes none, an enum when
    /// it takes several kinds.
    ///
    /// It has no default: a default (`type Message = ();`) needs associated type defaults,
    /// which are unstable (`associated_type_defaults`, rust-lang/rust#29661). A type
    /// parameter with a default (`Handler<M = ()>`) would compile on stable, but would let one
    /// type be several handlers and add a parameter to everything generic over a handler; a
    /// handler has exactly one message type, which is what an associated type says.
    type Message: Send + 'static;

    /// A connection is established (its *state change* event). Returns its state, or why it
    /// is refused: a [`Refusal`] closes it without a state — no other callback runs for it,
    /// and what `on_open` wrote (a one-line reason) is sent before the close.
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<Self::State, Refusal>;

    /// Bytes arrived (the *data readable* event). [`Conn::input`] holds everything not
    /// yet consumed; [`Conn::consume`] what was handled. Unconsumed bytes are kept and shown
    /// again with the next bytes. While a call consumes something and input remains, the loop
    /// calls again, so a handler may handle one message per call.
    fn on_data(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action;

    /// All pending output has been written to the socket (the *writable* event, as
    /// seen by the application). Called only after output had to wait for the kernel.
    fn on_drained(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action {
        let _ = (conn, state);
        Action::Continue
    }

    /// Pending output has just passed the high-water mark. By default the loop has already
    /// paused reading this connection until output falls under the low-water mark.
    fn on_high_water(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action {
        let _ = (conn, state);
        Action::Continue
    }

    /// The peer shut down its write side (end of stream). Output may still be written.
    /// [`Action::Close`] (the default) closes the connection once pending output is flushed,
    /// reported as [`CloseReason::PeerClosed`](crate::CloseReason::PeerClosed).
    fn on_read_closed(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action {
        let _ = (conn, state);
        Action::Close
    }

    /// A per-connection timeout fired. The default returns [`Action::Close`], which closes the
    /// connection with [`CloseReason::IdleTimeout`] or [`CloseReason::ReadTimeout`]; returning
    /// [`Action::Continue`] restarts that timeout's clock.
    fn on_timeout(
        &mut self,
        conn: &mut Conn<'_>,
        state: &mut Self::State,
        which: Timeout,
    ) -> Action {
        let _ = (conn, state, which);
        Action::Close
    }

    /// A message sent with [`ConnHandle::send`](crate::ConnHandle::send) arrived for this
    /// connection — the way another connection, another loop or another thread hands it a
    /// value. Ignored by default.
    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        state: &mut Self::State,
        msg: Self::Message,
    ) -> Action {
        let _ = (conn, state, msg);
        Action::Continue
    }

    /// A graceful stop began ([`StopHandle::stop`](crate::StopHandle::stop)): called once for
    /// each open connection, before it stops being read, so its protocol can say goodbye —
    /// finish the request in flight and close after its response, send a close frame. The
    /// default, [`Action::Close`], closes once pending output is flushed, as
    /// [`CloseReason::ServerShutdown`]; [`Action::Continue`] keeps serving the connection
    /// until it closes itself or the stop deadline passes.
    ///
    /// A connection that is quiet when it closes during the stop — nothing pending, nothing
    /// unread, everything it sent acknowledged — is closed with a FIN at once, without the
    /// lingering close, so idle keep-alive connections do not hold the stop up.
    fn on_stop(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action {
        let _ = (conn, state);
        Action::Close
    }

    /// A timer set with [`Conn::set_timer`] fired.
    fn on_timer(&mut self, conn: &mut Conn<'_>, state: &mut Self::State, token: u64) -> Action {
        let _ = (conn, state, token);
        Action::Continue
    }

    /// A UDP datagram arrived on one of the server's UDP sockets
    /// ([`Builder::bind_udp`](crate::Builder::bind_udp)). Reply with [`Udp::send_to`].
    /// Ignored by default.
    fn on_datagram(&mut self, udp: &mut Udp<'_>, datagram: Datagram<'_>) {
        let _ = (udp, datagram);
    }

    /// The TLS handshake of an accepted connection failed — plaintext sent to a TLS port, a
    /// client that rejects the certificate, no protocol version or cipher suite in common, a
    /// handshake that stalled past its timeout. The connection is closed; `on_open` never ran
    /// for it.
    fn on_tls_error(&mut self, cx: &mut LoopCx<'_>, peer: Option<SocketAddr>, error: &io::Error) {
        let _ = cx;
        log::debug!("eventide: TLS handshake with {peer:?} failed: {error}");
    }

    /// An outbound connection ([`LoopCx::connect`]) could not be established.
    fn on_connect_error(&mut self, cx: &mut LoopCx<'_>, error: ConnectError) {
        let _ = cx;
        log::debug!("eventide: {error}");
    }

    /// The connection is closed; its state is handed back for cleanup.
    fn on_close(&mut self, id: ConnId, state: Self::State, reason: &CloseReason) {
        let _ = (id, state, reason);
    }

    /// The loop started, before any connection is served: a place for per-loop set-up and for
    /// starting loop timers with [`LoopCx::set_timer`].
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        let _ = cx;
    }

    /// A loop timer set with [`LoopCx::set_timer`] fired.
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let _ = (cx, token);
    }

    /// The loop is about to exit: every connection is closed.
    fn on_shutdown(&mut self) {}
}
