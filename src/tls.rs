//! TLS as a transport layer between the socket and the handler (feature `tls`, on rustls with
//! the ring provider).
//!
//! A session sits in the connection's record. Bytes read from the socket are fed to rustls and
//! the plaintext it yields becomes the handler's input; `Conn::write` encrypts, and the
//! ciphertext takes the ordinary output path — so pending output, the high-water mark and
//! back-pressure count what really waits for the socket. The handshake runs inside the loop,
//! driven by readiness like any other I/O, before `on_open`. A peer's `close_notify` is the
//! peer-closed-its-write-side event; a half-close or a graceful close sends `close_notify`
//! after the pending output.
//!
//! Without the feature the session type is uninhabited, so the reactor's TLS branches compile
//! away.

#[cfg(feature = "tls")]
pub use imp::*;
#[cfg(not(feature = "tls"))]
pub(crate) use stub::*;

#[cfg(feature = "tls")]
mod imp {
    use std::io::{self, Read, Write};
    use std::sync::Arc;

    pub use rustls;
    use rustls::pki_types::ServerName;

    /// A server configuration for [`Builder::bind_tls`](crate::Builder::bind_tls).
    pub type ServerConfig = Arc<rustls::ServerConfig>;

    /// What an outbound TLS connection needs: the client configuration and the name the
    /// server's certificate must match.
    #[derive(Clone, Debug)]
    pub struct ClientTls {
        pub(crate) config: Arc<rustls::ClientConfig>,
        pub(crate) name: ServerName<'static>,
    }

    impl ClientTls {
        /// TLS with `config`, verifying the server's certificate for `server_name`.
        pub fn new(
            config: Arc<rustls::ClientConfig>,
            server_name: ServerName<'static>,
        ) -> ClientTls {
            ClientTls {
                config,
                name: server_name,
            }
        }
    }

    /// One connection's TLS state.
    pub(crate) struct TlsSession {
        conn: rustls::Connection,
        close_notify_sent: bool,
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
            }
        }

        pub(crate) fn is_handshaking(&self) -> bool {
            self.conn.is_handshaking()
        }

        /// Feeds bytes read from the socket; hands each piece of plaintext to `plain`. An
        /// error is a TLS failure (the alert rustls queued should still be sent).
        pub(crate) fn feed(
            &mut self,
            mut raw: &[u8],
            plain: &mut dyn FnMut(&[u8]),
        ) -> io::Result<Fed> {
            let mut chunk = [0u8; 16 * 1024];
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
                loop {
                    match self.conn.reader().read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => plain(&chunk[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                let closed = state.peer_has_closed();
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

    /// A rustls error as an `io::Error` (`InvalidData`, with rustls' description).
    pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(not(feature = "tls"))]
mod stub {
    use std::io;

    /// Uninhabited without the `tls` feature: no value exists, so every branch on one is dead.
    pub(crate) enum TlsSession {}

    /// Uninhabited without the `tls` feature.
    #[derive(Debug)]
    pub(crate) enum ServerConfigStub {}

    /// Uninhabited without the `tls` feature.
    #[derive(Debug)]
    pub(crate) enum ClientTls {}

    pub(crate) type ServerConfig = std::sync::Arc<ServerConfigStub>;

    pub(crate) struct Fed {
        pub closed: bool,
    }

    impl TlsSession {
        pub(crate) fn server(config: &ServerConfig) -> io::Result<TlsSession> {
            match **config {}
        }
        pub(crate) fn client(tls: &ClientTls) -> io::Result<TlsSession> {
            match *tls {}
        }
        pub(crate) fn is_handshaking(&self) -> bool {
            match *self {}
        }
        pub(crate) fn feed(&mut self, _: &[u8], _: &mut dyn FnMut(&[u8])) -> io::Result<Fed> {
            match *self {}
        }
        pub(crate) fn encrypt(&mut self, _: &[u8]) {
            match *self {}
        }
        pub(crate) fn take_ciphertext(&mut self, _: &mut dyn FnMut(&[u8])) {
            match *self {}
        }
        pub(crate) fn send_close_notify(&mut self) -> bool {
            match *self {}
        }
        pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
            match *self {}
        }
        pub(crate) fn server_name(&self) -> Option<&str> {
            match *self {}
        }
    }
}
