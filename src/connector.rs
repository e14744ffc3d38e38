//! Outbound connections (the client side of the seed's L1): a non-blocking `connect` whose
//! completion epoll reports as writability, checked with `SO_ERROR`.
//!
//! A TCP connect returns `EINPROGRESS`; the socket is registered for writability and, when it
//! fires, `SO_ERROR` says whether the handshake completed. A Unix-socket connect succeeds at
//! once, or fails with `EAGAIN` when the listener's backlog is full — then it is retried with a
//! short back-off until the connect timeout. Once established, the connection is served by the
//! same [`Handler`](crate::Handler) as accepted ones ([`Conn::is_outbound`](crate::Conn::is_outbound)
//! tells them apart); a failure reaches
//! [`Handler::on_connect_error`](crate::Handler::on_connect_error) with the reason.

use std::any::Any;
use std::fmt;
use std::io;
use std::time::Duration;

use crate::addr::Addr;
use crate::tls::ClientTls;

/// What to connect to, and how.
///
/// ```
/// use eventide::Connect;
/// use std::time::Duration;
///
/// let c = Connect::new("127.0.0.1:6379".parse::<std::net::SocketAddr>().unwrap())
///     .timeout(Duration::from_secs(2))
///     .context(42u32); // handed to on_open (Conn::take_context) or on_connect_error
/// assert_eq!(c.addr().to_string(), "127.0.0.1:6379");
/// ```
pub struct Connect {
    pub(crate) addr: Addr,
    pub(crate) timeout: Option<Duration>,
    pub(crate) context: Option<Box<dyn Any + Send>>,
    pub(crate) tls: Option<ClientTls>,
}

impl Connect {
    /// Connect to `addr` (a `SocketAddr` or an [`Addr`], e.g. a Unix socket path).
    pub fn new(addr: impl Into<Addr>) -> Connect {
        Connect {
            addr: addr.into(),
            timeout: None,
            context: None,
            tls: None,
        }
    }

    /// Give up after `timeout` (default: the server's
    /// [`Builder::connect_timeout`](crate::Builder::connect_timeout)).
    pub fn timeout(mut self, timeout: Duration) -> Connect {
        self.timeout = Some(timeout);
        self
    }

    /// A value carried to the connection's `on_open` (see
    /// [`Conn::take_context`](crate::Conn::take_context)), or back to `on_connect_error`.
    pub fn context<T: Any + Send>(mut self, value: T) -> Connect {
        self.context = Some(Box::new(value));
        self
    }

    /// Run TLS over the connection (feature `tls`): after the TCP handshake, a TLS handshake
    /// with `tls`'s client configuration, verifying the server's certificate for its server
    /// name. `on_open` runs once it completes; a verification failure reaches
    /// `on_connect_error` with the reason.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: ClientTls) -> Connect {
        self.tls = Some(tls);
        self
    }

    /// The address to connect to.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("context", &self.context.is_some())
            .finish()
    }
}

/// An outbound connection that could not be established.
pub struct ConnectError {
    addr: Addr,
    error: io::Error,
    context: Option<Box<dyn Any + Send>>,
}

impl ConnectError {
    pub(crate) fn new(addr: Addr, error: io::Error, context: Option<Box<dyn Any + Send>>) -> Self {
        ConnectError {
            addr,
            error,
            context,
        }
    }

    /// The address that was dialled.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Why it failed: `ConnectionRefused`, `TimedOut`, `HostUnreachable`,
    /// `NetworkUnreachable`, `NotFound` (no such socket file), ...
    pub fn kind(&self) -> io::ErrorKind {
        self.error.kind()
    }

    /// The underlying error.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// Takes back the [`Connect::context`] value, if it was a `T`.
    pub fn take_context<T: Any>(&mut self) -> Option<T> {
        take_as(&mut self.context)
    }

    /// The underlying error, consuming this.
    pub fn into_error(self) -> io::Error {
        self.error
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connecting to {}: {}", self.addr, self.error)
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectError")
            .field("addr", &self.addr)
            .field("error", &self.error)
            .finish()
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Takes the boxed value out of `slot` if it is a `T` (leaves it otherwise).
pub(crate) fn take_as<T: Any>(slot: &mut Option<Box<dyn Any + Send>>) -> Option<T> {
    match slot.take() {
        Some(b) if b.is::<T>() => b.downcast::<T>().ok().map(|b| *b),
        other => {
            *slot = other;
            None
        }
    }
}
