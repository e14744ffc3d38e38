//! A load generator's connection: plaintext, TLS or WebSocket over a non-blocking mio socket,
//! its handshake already complete. `Read` and `Write` move the payload (plaintext, or the
//! WebSocket messages' bytes).
//!
//! The contract the load generators rely on, whatever the variant: a read returns less than the
//! buffer only once the socket has nothing more (or ended), as a plain read does — so "a short
//! read drained the socket" still holds for edge-triggered readiness. A TLS or WebSocket write
//! takes the whole buffer once earlier bytes have gone out, and fails with `WouldBlock` while
//! some are still waiting: call [`flush_pending`](Stream::flush_pending) on writability.

use std::io::{self, ErrorKind, Read, Write};

use mio::net::TcpStream;
use rustls::ClientConnection;

use crate::tls::TlsStream;
use crate::ws::WsStream;

/// See the module docs.
pub enum Stream {
    /// A plain TCP stream.
    Plain(TcpStream),
    /// A TLS session over a TCP stream.
    Tls(Box<TlsStream>),
    /// A WebSocket connection over a TCP stream.
    Ws(Box<WsStream<TcpStream>>),
}

impl Stream {
    /// A TLS stream over `sock` (non-blocking) with the established session `conn`.
    pub fn tls(conn: ClientConnection, sock: TcpStream) -> Stream {
        Stream::Tls(Box::new(TlsStream::new(conn, sock)))
    }

    /// The socket, for registering with mio.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &mut t.sock,
            Stream::Ws(w) => w.socket(),
        }
    }

    /// Sends bytes the socket refused earlier (nothing for plaintext). `Ok` also when the
    /// socket is full again.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        let res = match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(t) => t.flush_tls(),
            Stream::Ws(w) => w.flush_out(),
        };
        match res {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            other => other,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
            Stream::Ws(w) => w.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
            Stream::Ws(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
            Stream::Ws(w) => w.flush(),
        }
    }
}
