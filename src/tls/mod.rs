//! TLS as a transport layer between the socket and the handler (feature `tls`, on rustls with
//! the ring provider).
//!
//! A session sits in the connection's record. Bytes read from the socket are decrypted in
//! place, in the loop's read buffer (rustls' unbuffered API), and the plaintext becomes the
//! handler's input; `Conn::write` encrypts, and the ciphertext takes the ordinary output path —
//! so pending output, the high-water mark and back-pressure count what really waits for the
//! socket. The handshake runs inside the loop, driven by readiness like any other I/O, before
//! `on_open`. A peer's `close_notify` is the peer-closed-its-write-side event; a half-close or
//! a graceful close sends `close_notify` after the pending output. Early (0-RTT) data is not
//! accepted: a server configuration that enables it fails the connections that send it.
//!
//! Without the feature the session type is uninhabited, so the reactor's TLS branches compile
//! away.

#[cfg(feature = "tls")]
mod config;
#[cfg(feature = "tls")]
mod records;
#[cfg(feature = "tls")]
mod session;
#[cfg(not(feature = "tls"))]
mod stub;

#[cfg(feature = "tls")]
pub use config::*;
#[cfg(feature = "tls")]
pub use rustls;
#[cfg(feature = "tls")]
pub(crate) use session::TlsSession;
#[cfg(not(feature = "tls"))]
pub(crate) use stub::*;
