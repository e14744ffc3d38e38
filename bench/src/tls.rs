//! TLS for the `tls-echo` scenario: the certificate the runner makes, the configurations of
//! both sides, and the load generator's non-blocking TLS client stream.
//!
//! Every party uses rustls 0.23 with the ring provider, the version and provider eventide's
//! `tls` feature uses. The servers (eventide's `echo --tls-cert --tls-key` and `tokio-tls-echo`)
//! build their configuration the same way ([`server_config`] mirrors
//! `eventide::tls::server_config_from_pem`); the load generator offers a single cipher suite,
//! TLS 1.3 AES-128-GCM (SHA-256), so both servers negotiate exactly that, with X25519 (ring's
//! first key-exchange group).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::net::TcpStream;
pub use rustls;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConnection;

/// The name the certificate is made for and the load generator verifies.
pub const SERVER_NAME: &str = "localhost";

/// The ring provider offering only TLS 1.3 AES-128-GCM-SHA256 (the load generator's side).
pub fn client_provider() -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    p.cipher_suites = vec![ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    Arc::new(p)
}

fn invalid(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

/// The certificates of a PEM file.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

/// A server configuration as `eventide::tls::server_config_from_pem` builds it (no ALPN):
/// ring's default suites, TLS 1.3 and 1.2, no client authentication, one certificate.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in `ca` and offering only TLS 1.3
/// AES-128-GCM.
pub fn client_config(ca: &Path) -> io::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| invalid(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(client_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Makes a self-signed certificate for `localhost` and `127.0.0.1` (ECDSA P-256) and writes it
/// and its key as `cert.pem` and `key.pem` into `dir`. The certificate is its own CA: pass
/// `cert.pem` to the client as `--ca`.
pub fn write_self_signed(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let names = vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}

/// Connects and completes a TLS handshake on a blocking socket, verifying the server's
/// certificate for [`SERVER_NAME`].
pub fn connect_blocking(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> io::Result<(ClientConnection, StdTcpStream)> {
    let mut sock = StdTcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok((conn, sock))
}

/// A load generator's TLS connection on a non-blocking mio socket, its handshake complete.
/// `Read` and `Write` move plaintext; see [`Stream`](crate::stream::Stream) for the contract.
pub struct TlsStream {
    conn: ClientConnection,
    pub(crate) sock: TcpStream,
    eof: bool,
}

impl TlsStream {
    /// A TLS stream over `sock` (non-blocking) with the established session `conn`.
    pub fn new(mut conn: ClientConnection, sock: TcpStream) -> TlsStream {
        // Ciphertext leaves right after each write; the socket, not rustls, bounds it.
        conn.set_buffer_limit(None);
        TlsStream {
            conn,
            sock,
            eof: false,
        }
    }

    /// Sends TLS records the socket refused earlier.
    pub(crate) fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock)? == 0 {
                return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0"));
            }
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = self;
        let mut n = 0;
        loop {
            match t.conn.reader().read(&mut buf[n..]) {
                Ok(0) => return Ok(n), // close_notify
                Ok(k) => {
                    n += k;
                    if n == buf.len() {
                        return Ok(n);
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The stream ended without close_notify.
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(n),
                Err(e) => return Err(e),
            }
            if t.eof {
                return Ok(n);
            }
            match t.conn.read_tls(&mut t.sock) {
                Ok(0) => t.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock && n > 0 => return Ok(n),
                Err(e) => return Err(e),
            }
            t.conn
                .process_new_packets()
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = self;
        t.flush_tls()?;
        t.conn.writer().write_all(buf)?;
        match t.flush_tls() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(buf.len()),
            Err(e) => Err(e),
            Ok(()) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
