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
    use std::path::Path;
    use std::sync::Arc;

    pub use rustls;
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    /// A server configuration for [`Builder::bind_tls`](crate::Builder::bind_tls).
    pub type ServerConfig = Arc<rustls::ServerConfig>;

    /// Reads every certificate (`-----BEGIN CERTIFICATE-----` section) from a PEM file, in
    /// order: for a server, the leaf first, then its intermediates; for a client's root store,
    /// the trusted authorities. Other sections (a private key in the same file) are skipped.
    ///
    /// Fails with `NotFound` (and the other errors of opening a file) or, for a file that is
    /// not PEM or holds no certificate, `InvalidData`; the message names the file.
    pub fn load_certs(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|sections| sections.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(path, "certificates", e))?;
        if certs.is_empty() {
            return Err(pem_error(path, "certificates", pem::Error::NoItemsFound));
        }
        Ok(certs)
    }

    /// Reads the first private key from a PEM file: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`), as written by
    /// `openssl req -newkey`, `openssl genpkey` or rcgen.
    ///
    /// Fails like [`load_certs`]; a file without a key is `InvalidData`.
    pub fn load_private_key(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
        let path = path.as_ref();
        PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "a private key", e))
    }

    /// A server configuration from a certificate chain and its private key in PEM files, with
    /// the ring provider, TLS 1.3 and 1.2, no client authentication, and `alpn` as the
    /// protocols offered for ALPN in order of preference (empty: no ALPN).
    ///
    /// For anything else — SNI-based certificate selection with
    /// [`ResolvesServerCertUsingSni`](rustls::server::ResolvesServerCertUsingSni), client
    /// certificates, a session cache — build a [`rustls::ServerConfig`] directly.
    ///
    /// Fails like [`load_certs`] and [`load_private_key`], or with `InvalidData` if the key
    /// does not match the certificate.
    ///
    /// ```no_run
    /// use eventide::tls::server_config_from_pem;
    /// use eventide::{Action, Conn, Handler, Refusal, Server};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     type State = ();
    ///     type Message = ();
    ///     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
    ///         Ok(())
    ///     }
    ///     fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
    ///         let data = conn.input();
    ///         conn.write(data);
    ///         conn.consume(data.len());
    ///         Action::Continue
    ///     }
    /// }
    ///
    /// let config = server_config_from_pem("cert.pem", "key.pem", &[b"http/1.1"])?;
    /// let server = Server::builder().bind_tls("127.0.0.1:7443", config).start(|_| Echo)?;
    /// println!("listening on {}", server.local_addr());
    /// server.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn server_config_from_pem(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
        alpn: &[&[u8]],
    ) -> io::Result<ServerConfig> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let certs = load_certs(cert_path)?;
        let key = load_private_key(key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} with {}: {e}", cert_path.display(), key_path.display()),
                )
            })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A PEM reading error as an `io::Error` naming the file and what was looked for.
    fn pem_error(path: &Path, what: &str, e: pem::Error) -> io::Error {
        let kind = match &e {
            pem::Error::Io(io) => io.kind(),
            _ => io::ErrorKind::InvalidData,
        };
        let why = match e {
            pem::Error::NoItemsFound => "none found".to_string(),
            other => other.to_string(),
        };
        io::Error::new(
            kind,
            format!("reading {what} from {}: {why}", path.display()),
        )
    }

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
        pub(crate) fn peer_closed(&self) -> bool {
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
