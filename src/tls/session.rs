//! One connection's TLS session: bytes read from the socket are fed to rustls, the plaintext
//! goes to the handler, written plaintext is encrypted into records for the socket.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use super::{tls_error, ClientTls};

/// One connection's TLS state.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    close_notify_sent: bool,
    /// The peer's `close_notify` has been read.
    peer_closed: bool,
}

/// What feeding received bytes produced.
pub(crate) struct Fed {
    /// The peer sent `close_notify`: no more plaintext will come.
    pub closed: bool,
}

impl TlsSession {
    pub(crate) fn server(config: &Arc<rustls::ServerConfig>) -> io::Result<TlsSession> {
        let conn = rustls::ServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
        Ok(TlsSession::new(conn.into()))
    }

    pub(crate) fn client(tls: &ClientTls) -> io::Result<TlsSession> {
        let conn = rustls::ClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
            .map_err(tls_error)?;
        Ok(TlsSession::new(conn.into()))
    }

    fn new(mut conn: rustls::Connection) -> TlsSession {
        // Ciphertext is moved out after every write, so rustls' own buffer never grows:
        // the connection's output buffer and its high-water mark bound it instead.
        conn.set_buffer_limit(None);
        TlsSession {
            conn,
            close_notify_sent: false,
            peer_closed: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether the peer's `close_notify` has been read (no more plaintext will come).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feeds bytes read from the socket; hands each piece of plaintext to `plain`. An
    /// error is a TLS failure (the alert rustls queued should still be sent).
    pub(crate) fn feed(&mut self, mut raw: &[u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<Fed> {
        loop {
            let mut progressed = true;
            if !raw.is_empty() {
                match self.conn.read_tls(&mut raw) {
                    // After close_notify rustls reads nothing more; the rest is ignored.
                    Ok(0) => progressed = false,
                    Ok(_) => {}
                    // "Received plaintext buffer full": drained below, then retried.
                    Err(e) if e.kind() == io::ErrorKind::Other => {}
                    Err(e) => return Err(e),
                }
            }
            let state = self.conn.process_new_packets().map_err(tls_error)?;
            // Each decrypted record is handed over where rustls keeps it, not copied out.
            let mut reader = self.conn.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) => break,
                    Ok(chunk) => {
                        let n = chunk.len();
                        plain(chunk);
                        reader.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let closed = state.peer_has_closed();
            self.peer_closed |= closed;
            if raw.is_empty() || !progressed || closed {
                return Ok(Fed { closed });
            }
        }
    }

    /// Encrypts `plain` into the session's outgoing records.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) {
        // With no buffer limit the writer takes everything.
        let _ = self.conn.writer().write_all(plain);
    }

    /// Moves every pending TLS record to `out`.
    pub(crate) fn take_ciphertext(&mut self, out: &mut dyn FnMut(&[u8])) {
        let mut sink = Sink(out);
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut sink).is_err() {
                break;
            }
        }
    }

    /// Queues `close_notify` (once).
    pub(crate) fn send_close_notify(&mut self) -> bool {
        if self.close_notify_sent {
            return false;
        }
        self.close_notify_sent = true;
        self.conn.send_close_notify();
        true
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    pub(crate) fn server_name(&self) -> Option<&str> {
        match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        }
    }
}

struct Sink<'a>(&'a mut dyn FnMut(&[u8]));

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (self.0)(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
