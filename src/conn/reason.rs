//! Why a connection closed ([`CloseReason`]), why `on_open` refused one ([`Refusal`]), and
//! which connection it was ([`ConnId`]).

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
    /// The peer reset the connection (`ECONNRESET`, `EPIPE`, or `ENOTCONN` from a shutdown);
    /// unsent output was lost.
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
    /// It was too far behind a [`Group`](crate::Group)'s messages for the group's limit, under
    /// [`SlowConsumer::Close`](crate::SlowConsumer::Close); its pending output was dropped.
    SlowConsumer,
    /// [`Handler::on_open`](crate::Handler::on_open) refused the connection. It never had a
    /// state, so `on_close` does not run for it: this reason is counted in
    /// [`Stats`](crate::Stats) (and logged), never reported to the handler.
    Refused(Refusal),
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
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Refused(_) => "refused",
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

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Error(e) => write!(f, "error: {e}"),
            CloseReason::Protocol(why) => write!(f, "protocol error: {why}"),
            CloseReason::Tls(why) => write!(f, "tls error: {why}"),
            CloseReason::Refused(why) => write!(f, "refused: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why [`Handler::on_open`](crate::Handler::on_open) refused a connection: returned as its
/// `Err`, counted by kind in [`Stats`](crate::Stats) (`refused_by_reason`), and its close as
/// [`CloseReason::Refused`].
///
/// A refused connection has no state, so no other callback runs for it (no `on_close`).
/// What `on_open` wrote before refusing — a one-line reason for the peer — is sent, and the
/// connection closed after it (through the lingering close, so it arrives); without such a
/// goodbye the socket is closed at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The application is at a limit of its own: connections per client, memory, a queue.
    Busy,
    /// The peer may not connect: an address filter, a ban, a TLS name it may not use.
    Denied,
    /// Not a connection this handler serves: an ALPN protocol it does not speak, an outbound
    /// connection without the context its protocol needs.
    Unsupported,
}

impl Refusal {
    /// Every kind, in the order [`RefusalCounts`](crate::RefusalCounts) lists them after the
    /// connection limit.
    pub const ALL: [Refusal; 3] = [Refusal::Busy, Refusal::Denied, Refusal::Unsupported];

    /// A short stable name for logs and metrics (`"busy"`, `"denied"`, `"unsupported"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Denied => "denied",
            Refusal::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    pub(crate) const UNKNOWN_KEY: u32 = u32::MAX;

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
