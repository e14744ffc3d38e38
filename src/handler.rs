//! The application's side of the reactor: the [`Handler`] callbacks, the [`Action`] they
//! return, and why a connection closed ([`CloseReason`]).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::conn::Conn;
use crate::connector::ConnectError;
use crate::event_loop::LoopCx;
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

/// Why a connection closed, as reported to [`Handler::on_close`].
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection in an orderly way (end of stream, then close).
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`, or `ENOTCONN` from a shutdown);
    /// unsent output was lost.
    Reset,
    /// An I/O error other than a reset.
    Error(io::Error),
    /// The application closed it ([`Action::Close`] or [`Conn::close`]).
    Local,
    /// The handler left more unconsumed input than the inbound limit allows.
    InboundLimit,
    /// A callback panicked; the connection was dropped without flushing.
    Panicked,
    /// The server is shutting down.
    ServerShutdown,
    /// No bytes moved in either direction for longer than the idle timeout.
    IdleTimeout,
    /// An incomplete inbound message waited longer than the read timeout.
    ReadTimeout,
    /// A protocol error found by a codec or the application, with a short description.
    Protocol(String),
    /// A TLS error on an established connection (a bad record, an alert from the peer).
    Tls(String),
}

impl CloseReason {
    /// A short stable name for logs and metrics (`"peer_closed"`, `"reset"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Reset => "reset",
            CloseReason::Error(_) => "error",
            CloseReason::Local => "local",
            CloseReason::InboundLimit => "inbound_limit",
            CloseReason::Panicked => "panicked",
            CloseReason::ServerShutdown => "server_shutdown",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ReadTimeout => "read_timeout",
            CloseReason::Protocol(_) => "protocol",
            CloseReason::Tls(_) => "tls",
        }
    }

    /// Classifies an I/O error from a read, write or shutdown on the connection. `ENOTCONN`
    /// is a reset too: on a connection that was established, `shutdown(2)` answers it once the
    /// peer's reset has arrived (between the last event and the shutdown).
    pub(crate) fn from_io(err: io::Error) -> CloseReason {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected => CloseReason::Reset,
            _ => CloseReason::Error(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_after_the_peer_reset_is_a_reset() {
        for errno in [
            libc::ECONNRESET,
            libc::EPIPE,
            libc::ECONNABORTED,
            libc::ENOTCONN,
        ] {
            let reason = CloseReason::from_io(io::Error::from_raw_os_error(errno));
            assert_eq!(reason.as_str(), "reset", "errno {errno}");
        }
        let reason = CloseReason::from_io(io::Error::from_raw_os_error(libc::ENOBUFS));
        assert_eq!(reason.as_str(), "error");
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::Protocol(why) => write!(f, "protocol error: {why}"),
            CloseReason::Tls(why) => write!(f, "tls error: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Identifies a connection within its event loop: a slab slot plus a generation, so an id
/// that outlives its connection never matches the connection that reuses the slot.
///
/// The generation is a per-loop counter, one value per connection, so the loop index and the
/// generation alone name the connection: they are its identity (equality, hashing) and its
/// stable numeric form, [`as_u64`](ConnId::as_u64), for logs, metrics labels or a map key
/// kept outside the process. [`Display`](fmt::Display) writes the same two numbers as
/// `LOOP:GENERATION`. Ids repeat only after 2³² connections on one loop.
///
/// ```
/// # use eventide::ConnId;
/// fn remember(id: ConnId) -> u64 {
///     let n = id.as_u64();
///     assert_eq!(ConnId::from_u64(n), Some(id));
///     assert_eq!(id.to_string(), format!("{}:{}", n >> 32, n & 0xffff_ffff));
///     n
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ConnId {
    pub(crate) loop_index: u16,
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The slot of an id rebuilt by [`from_u64`](ConnId::from_u64), which only its loop knows.
    const UNKNOWN_KEY: u32 = u32::MAX;

    /// Index of the event loop that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    /// The id as one number: the loop index in bits 32..48, the generation in bits 0..32.
    pub fn as_u64(&self) -> u64 {
        (u64::from(self.loop_index) << 32) | u64::from(self.generation)
    }

    /// The id [`as_u64`](ConnId::as_u64) gave `n`; `None` if `n` has bits above 48 set, so
    /// it cannot be one.
    pub fn from_u64(n: u64) -> Option<ConnId> {
        let loop_index = u16::try_from(n >> 32).ok()?;
        Some(ConnId {
            loop_index,
            key: Self::UNKNOWN_KEY,
            generation: n as u32,
        })
    }
}

impl PartialEq for ConnId {
    fn eq(&self, other: &ConnId) -> bool {
        self.as_u64() == other.as_u64()
    }
}

impl Eq for ConnId {}

impl std::hash::Hash for ConnId {
    fn hash<S: std::hash::Hasher>(&self, state: &mut S) {
        self.as_u64().hash(state);
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.loop_index, self.generation)
    }
}

/// The callbacks of one event loop. The server creates one handler value per loop (so it is
/// `Send` but need not be `Sync`); every callback for the connections of that loop runs on the
/// loop's thread, one at a time, and must not block.
///
/// Each connection carries a typed [`State`](Handler::State), created by
/// [`on_open`](Handler::on_open), stored inline in the loop's connection table and handed to
/// every later callback by `&mut` — no lookup, no downcast.
///
/// An echo server:
///
/// ```
/// use eventide::{Action, Conn, Handler};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///
///     fn on_open(&mut self, _conn: &mut Conn<'_>) {}
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

    /// A connection is established (the seed's *state change* event). Returns its state.
    /// To refuse it, call [`Conn::close`].
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Self::State;

    /// Bytes arrived (the seed's *data readable* event). [`Conn::input`] holds everything not
    /// yet consumed; [`Conn::consume`] what was handled. Unconsumed bytes are kept and shown
    /// again with the next bytes. While a call consumes something and input remains, the loop
    /// calls again, so a handler may handle one message per call.
    fn on_data(&mut self, conn: &mut Conn<'_>, state: &mut Self::State) -> Action;

    /// All pending output has been written to the socket (the seed's *writable* event, as
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

    /// The peer shut down its write side (end of stream). Output may still be written. The
    /// default closes the connection after pending output is flushed.
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
    /// value (downcast it with `msg.downcast::<T>()`). Ignored by default.
    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        state: &mut Self::State,
        msg: Box<dyn std::any::Any + Send>,
    ) -> Action {
        let _ = (conn, state, msg);
        Action::Continue
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
