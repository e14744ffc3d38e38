//! Server and client configurations: PEM files, the ring provider, and the client's server name.

use std::io;
use std::path::Path;
use std::sync::Arc;

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
/// use eventide::{Action, Conn, Handler, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_open(&mut self, _: &mut Conn<'_>) {}
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
    pub fn new(config: Arc<rustls::ClientConfig>, server_name: ServerName<'static>) -> ClientTls {
        ClientTls {
            config,
            name: server_name,
        }
    }
}

/// A rustls error as an `io::Error` (`InvalidData`, with rustls' description).
pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
