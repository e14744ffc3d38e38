//! Why a connection closed ([`CloseReason`]) and which connection it was ([`ConnId`]).

use std::fmt;
use std::io;

/// Why a connection closed, as reported to [`Handler::on_close`](crate::Handler::on_close).
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer ended the connection in an orderly way: its end of stream, answered with a
    /// close (the default [`Handler::on_read_closed`](crate::Handler::on_read_closed) returns
    /// [`Action::Close`](crate::Action::Close)), or after this side's half-close.
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET` / `EPIPE`); unsent output was lost.
    Reset,
    /// An I/O error other than a reset.
    Error(io::Error),
    /// The application closed it ([`Conn::close`](crate::Conn::close), a handle's close, or
    /// [`Action::Close`](crate::Action::Close) from any callback but `on_read_closed`).
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

    /// Classifies an I/O error from a read or write on the connection.
    pub(crate) fn from_io(err: io::Error) -> CloseReason {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => CloseReason::Reset,
            _ => CloseReason::Error(err),
        }
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ConnId {
    pub(crate) loop_index: u16,
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// Index of the event loop that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}.{}", self.loop_index, self.key, self.generation)
    }
}
