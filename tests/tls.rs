//! TLS (feature `tls`) over real sockets, against clients written by others: rustls' own client
//! driven over a std `TcpStream`, and `curl` for HTTPS. Certificates are made at test time
//! with rcgen (a CA and leaves it signs); no key is stored in the repository.

#![cfg(feature = "tls")]

#[cfg(feature = "http")]
#[path = "../examples/http/tfb.rs"]
mod tfb;
mod util;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use eventide::tls::{rustls, ClientTls, ServerConfig};
use eventide::{Action, CloseReason, Conn, ConnId, Connect, ConnectError, Handler, LoopCx, Server};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConnection;
use util::{Rng, TIMEOUT};

// ---------------------------------------------------------------------------------------------
// Certificates and configurations
// ---------------------------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate (signed by a [`Ca`]) and its private key.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, &names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(leaf: &Leaf, alpn: &[&[u8]]) -> ServerConfig {
    server_config_for(leaf, alpn, rustls::DEFAULT_VERSIONS)
}

/// A server configuration speaking only `versions`.
fn server_config_for(
    leaf: &Leaf,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ServerConfig {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A client trusting `roots` (none: it trusts nobody) and offering `alpn`.
fn client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    client_config_for(roots, alpn, rustls::DEFAULT_VERSIONS)
}

/// A client configuration speaking only `versions`.
fn client_config_for(
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn name(n: &str) -> ServerName<'static> {
    ServerName::try_from(n.to_string()).unwrap()
}

/// A directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("eventide-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The server's handler: reports what it sees on a channel
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Event {
    Open {
        peer: Option<SocketAddr>,
        outbound: bool,
        tls: bool,
        alpn: Option<Vec<u8>>,
        sni: Option<String>,
    },
    /// A failed server-side handshake (`on_tls_error`).
    TlsError {
        peer: Option<SocketAddr>,
        kind: ErrorKind,
        message: String,
    },
    ConnectError {
        kind: ErrorKind,
        message: String,
    },
    /// An outbound connection got back everything it sent.
    Echoed(Vec<u8>),
    /// The peer's `close_notify` arrived after this many plaintext bytes.
    ReadClosed {
        received: usize,
    },
    /// Plaintext that reached a `SendThenShutdown` connection.
    Data(Vec<u8>),
    Closed {
        peer: Option<SocketAddr>,
        reason: &'static str,
        text: String,
    },
}

/// What inbound connections do.
#[derive(Clone, Copy)]
enum Mode {
    /// Echo; the default `on_read_closed` closes after the last byte.
    Echo,
    /// Echo; on the peer's `close_notify`, report it, write [`TRAILER`], then close.
    EchoThenTrailer,
    /// On open, write this many bytes and shut the write side down (half-close); report
    /// what arrives afterwards.
    SendThenShutdown(usize),
}

const TRAILER: &[u8] = b"-- that was everything --";

struct Probe {
    tx: mpsc::Sender<Event>,
    mode: Mode,
    dial_at_boot: Option<Connect>,
}

#[derive(Default)]
struct State {
    peer: Option<SocketAddr>,
    received: usize,
    /// Outbound: what was sent and what came back so far.
    dial: Option<(Vec<u8>, Vec<u8>)>,
}

fn probe(mode: Mode) -> (impl FnMut(usize) -> Probe, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let factory = move |_| Probe {
        tx: tx.clone(),
        mode,
        dial_at_boot: None,
    };
    (factory, rx)
}

/// `n` bytes of a deterministic stream.
fn payload(seed: u64, n: usize) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

impl Handler for Probe {
    type State = State;

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        if let Some(c) = self.dial_at_boot.take() {
            cx.connect(c);
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) -> State {
        let _ = self.tx.send(Event::Open {
            peer: conn.peer_addr(),
            outbound: conn.is_outbound(),
            tls: conn.is_tls(),
            alpn: conn.tls_alpn_protocol().map(<[u8]>::to_vec),
            sni: conn.tls_server_name().map(str::to_string),
        });
        let mut state = State {
            peer: conn.peer_addr(),
            ..State::default()
        };
        if conn.is_outbound() {
            let data: Vec<u8> = conn.take_context().expect("a payload as the context");
            conn.write(&data);
            state.dial = Some((data, Vec::new()));
        } else if let Mode::SendThenShutdown(n) = self.mode {
            conn.write_vec(payload(n as u64, n));
            conn.shutdown_write();
        }
        state
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, state: &mut State) -> Action {
        let data = conn.input();
        conn.consume(data.len());
        state.received += data.len();
        if let Some((sent, got)) = state.dial.as_mut() {
            got.extend_from_slice(data);
            if got.len() >= sent.len() {
                let _ = self.tx.send(Event::Echoed(std::mem::take(got)));
                return Action::Close;
            }
            return Action::Continue;
        }
        match self.mode {
            Mode::Echo | Mode::EchoThenTrailer => conn.write(data),
            Mode::SendThenShutdown(_) => {
                let _ = self.tx.send(Event::Data(data.to_vec()));
            }
        }
        Action::Continue
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, state: &mut State) -> Action {
        match self.mode {
            Mode::Echo => {}
            Mode::EchoThenTrailer => {
                let _ = self.tx.send(Event::ReadClosed {
                    received: state.received,
                });
                conn.write(TRAILER);
            }
            Mode::SendThenShutdown(_) => {
                let _ = self.tx.send(Event::ReadClosed {
                    received: state.received,
                });
                // Both directions are closed now: the loop closes it (`peer_closed`).
                return Action::Continue;
            }
        }
        Action::Close
    }

    fn on_tls_error(&mut self, _: &mut LoopCx<'_>, peer: Option<SocketAddr>, e: &io::Error) {
        let _ = self.tx.send(Event::TlsError {
            peer,
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    fn on_connect_error(&mut self, _: &mut LoopCx<'_>, e: ConnectError) {
        let _ = self.tx.send(Event::ConnectError {
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    fn on_close(&mut self, _: ConnId, state: State, reason: &CloseReason) {
        let _ = self.tx.send(Event::Closed {
            peer: state.peer,
            reason: reason.as_str(),
            text: reason.to_string(),
        });
    }
}

/// The first event `pick` accepts, skipping others; panics after [`TIMEOUT`].
fn wait_for<T>(
    rx: &mpsc::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// The `on_tls_error` reports for the connections from `peers` (in any order; other events
/// are skipped): each one's kind and message, in the order of `peers`.
fn tls_errors(rx: &mpsc::Receiver<Event>, peers: &[SocketAddr]) -> Vec<(ErrorKind, String)> {
    let mut found: Vec<Option<(ErrorKind, String)>> = vec![None; peers.len()];
    while found.iter().any(Option::is_none) {
        let (i, report) = wait_for(rx, &format!("on_tls_error for {peers:?}"), |e| match e {
            Event::TlsError {
                peer: Some(p),
                kind,
                message,
            } => peers
                .iter()
                .position(|&x| x == p)
                .map(|i| (i, (kind, message))),
            _ => None,
        });
        assert!(found[i].is_none(), "two reports for {}", peers[i]);
        found[i] = Some(report);
    }
    found.into_iter().map(Option::unwrap).collect()
}

/// The `on_tls_error` report for the connection from `peer`.
fn tls_error_for(rx: &mpsc::Receiver<Event>, peer: SocketAddr) -> (ErrorKind, String) {
    tls_errors(rx, &[peer]).remove(0)
}

// ---------------------------------------------------------------------------------------------
// The client: rustls over a blocking std TcpStream, one thread writing while another reads
// ---------------------------------------------------------------------------------------------

/// A rustls client connection whose handshake is complete.
struct Client {
    conn: ClientConnection,
    sock: TcpStream,
}

/// Connects and completes the handshake (the error is the client's verdict on the server).
fn handshake(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, server: &str) -> io::Result<Client> {
    handshake_on(util::connect(addr), cfg, server)
}

/// Completes a handshake over a connected socket.
fn handshake_on(
    mut sock: TcpStream,
    cfg: Arc<rustls::ClientConfig>,
    server: &str,
) -> io::Result<Client> {
    let mut conn = ClientConnection::new(cfg, name(server)).map_err(io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(Client { conn, sock })
}

/// The session, shared by the writing and the reading thread. Only the writer touches the
/// socket's sending side; the reader never needs to send (TLS 1.3 after the handshake).
type Shared = Arc<Mutex<ClientConnection>>;

impl Client {
    fn split(self) -> (Shared, TcpStream) {
        let Client { mut conn, sock } = self;
        // Ciphertext is taken out after every chunk, so the buffer stays one chunk deep.
        conn.set_buffer_limit(None);
        (Arc::new(Mutex::new(conn)), sock)
    }
}

/// Encrypts and sends `data` in chunks of random size (1 B to 64 KiB), then `close_notify` if
/// `close`, on a thread of its own.
fn spawn_writer(
    conn: &Shared,
    sock: &TcpStream,
    data: Arc<Vec<u8>>,
    close: bool,
) -> JoinHandle<()> {
    let conn = Arc::clone(conn);
    let mut sock = sock.try_clone().unwrap();
    thread::spawn(move || {
        let mut rng = Rng::new(data.len() as u64 ^ 0x5eed);
        let mut pos = 0;
        while pos < data.len() {
            let n = (rng.range(1, 64 * 1024) as usize).min(data.len() - pos);
            let out = {
                let mut c = conn.lock().unwrap();
                c.writer().write_all(&data[pos..pos + n]).unwrap();
                ciphertext(&mut c)
            };
            sock.write_all(&out).expect("client write");
            pos += n;
        }
        if !close {
            return;
        }
        let out = {
            let mut c = conn.lock().unwrap();
            c.send_close_notify();
            ciphertext(&mut c)
        };
        sock.write_all(&out).expect("client write (close_notify)");
    })
}

/// Takes every record the session has queued.
fn ciphertext(conn: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Feeds `raw` (empty: the stream ended) to the session and appends the plaintext to `got`.
/// Returns whether the server's `close_notify` has arrived.
fn feed(c: &mut ClientConnection, mut raw: &[u8], got: &mut Vec<u8>) -> bool {
    loop {
        c.read_tls(&mut raw).expect("read_tls");
        let state = c
            .process_new_packets()
            .unwrap_or_else(|e| panic!("client TLS error after {} bytes: {e}", got.len()));
        let mut plain = vec![0u8; state.plaintext_bytes_to_read()];
        c.reader().read_exact(&mut plain).unwrap();
        got.extend_from_slice(&plain);
        if state.peer_has_closed() {
            return true;
        }
        if raw.is_empty() {
            return false;
        }
    }
}

/// Reads from the socket and feeds the session until `done(plaintext so far, closed)`.
fn read_plain(
    conn: &Shared,
    sock: &mut TcpStream,
    mut done: impl FnMut(&[u8], bool) -> bool,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("client read after {} bytes: {e}", got.len()));
        let closed = feed(&mut conn.lock().unwrap(), &buf[..n], &mut got);
        if done(&got, closed) {
            return got;
        }
        assert!(
            n > 0 && !closed,
            "the connection ended (close_notify: {closed}) after {} bytes",
            got.len()
        );
    }
}

/// Reads plaintext until the server's `close_notify`; panics if the stream ends without it
/// (a truncation) or on any TLS error.
fn read_to_close_notify(conn: &Shared, sock: &mut TcpStream) -> Vec<u8> {
    read_plain(conn, sock, |_, closed| closed)
}

/// Reads exactly `n` bytes of plaintext (the peer sends no more meanwhile).
fn read_exactly(conn: &Shared, sock: &mut TcpStream, n: usize) -> Vec<u8> {
    let got = read_plain(conn, sock, |got, _| got.len() >= n);
    assert_eq!(got.len(), n);
    got
}

/// Sends `data` and `close_notify` while reading the echo; returns what came back before the
/// server's `close_notify`.
fn echo_exchange(client: Client, data: Arc<Vec<u8>>) -> Vec<u8> {
    let (conn, mut sock) = client.split();
    let writer = spawn_writer(&conn, &sock, data, true);
    let got = read_to_close_notify(&conn, &mut sock);
    writer.join().expect("writer thread");
    got
}

/// Reads until the socket ends (EOF or reset); returns the bytes that came.
fn drain_socket(sock: &mut TcpStream) -> Vec<u8> {
    let (got, _reset) = util::read_until_closed(sock);
    got
}

fn start(
    bind: ServerConfig,
    mode: Mode,
    tune: impl FnOnce(eventide::Builder) -> eventide::Builder,
) -> (Server, mpsc::Receiver<Event>) {
    let (factory, rx) = probe(mode);
    let builder = Server::builder().bind_tls("127.0.0.1:0", bind).loops(2);
    (tune(builder).start(factory).expect("start the server"), rx)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Fifty concurrent connections, each writing and reading at once from two threads, payloads
/// from 1 B to 8 MiB: every byte comes back in order, and each connection ends with the
/// server's `close_notify` (no truncation).
#[test]
fn echo_1b_to_8mib_over_50_concurrent_connections() {
    const CONNS: usize = 50;
    const MAX: u64 = 8 << 20;
    let ca = Ca::new("echo CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _rx) = start(server_config(&leaf, &[]), Mode::Echo, |b| b);
    let addr = server.local_addr();
    let cfg = client_config(&[ca.der()], &[]);
    let mut sizes = Rng::new(77);
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            let size = match i {
                0 => 1,
                1 => MAX,
                _ => sizes.log_uniform(1, MAX),
            } as usize;
            let cfg = Arc::clone(&cfg);
            thread::spawn(move || {
                let data = Arc::new(payload(i as u64, size));
                let client = handshake(addr, cfg, "localhost").expect("handshake");
                let got = echo_exchange(client, Arc::clone(&data));
                assert_eq!(got.len(), data.len(), "connection {i}: echoed length");
                assert!(got == *data, "connection {i}: echoed bytes differ");
                size
            })
        })
        .collect();
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let stats = server.stats().total();
    assert_eq!(stats.tls_handshakes, CONNS as u64);
    assert_eq!(stats.tls_handshake_errors, 0);
    println!("{CONNS} connections echoed {total} bytes over TLS");
}

/// The TechEmpower service over TLS, with a certificate and key loaded from PEM files by
/// `eventide::tls::server_config_from_pem`: curl, verifying against the test CA, gets both
/// bodies.
#[cfg(feature = "http")]
#[test]
fn curl_gets_plaintext_and_json_over_https() {
    let Some(curl) = which("curl") else {
        println!("SKIPPED curl_gets_plaintext_and_json_over_https: `curl` is not installed");
        eprintln!("SKIPPED curl_gets_plaintext_and_json_over_https: `curl` is not installed");
        return;
    };
    let ca = Ca::new("https CA");
    let leaf = ca.leaf(&["localhost"]);
    let dir = TempDir::new("https");
    let ca_pem = dir.file("ca.pem", &ca.pem());
    let cert = dir.file("cert.pem", &leaf.cert_pem);
    let key = dir.file("key.pem", &leaf.key_pem);
    let cfg = eventide::tls::server_config_from_pem(&cert, &key, &[b"http/1.1"]).unwrap();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0", cfg)
        .loops(2)
        .start(|_| eventide::http::HttpServer::new(tfb::Tfb))
        .expect("start the HTTPS server");
    let port = server.local_addr().port();
    for (path, body, ct) in [
        ("/plaintext", "Hello, World!", "text/plain"),
        (
            "/json",
            r#"{"message":"Hello, World!"}"#,
            "application/json",
        ),
    ] {
        let out = std::process::Command::new(&curl)
            .args(["-sS", "--max-time", "30", "-D", "-", "--cacert"])
            .arg(&ca_pem)
            .arg("--resolve")
            .arg(format!("localhost:{port}:127.0.0.1"))
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Type: {ct}\r\n")), "{text}");
        assert!(text.contains("Server: eventide\r\n"), "{text}");
        assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
    }
    let stats = server.stats().total();
    assert_eq!(stats.tls_handshakes, 2);
    assert_eq!(stats.tls_handshake_errors, 0);
}

#[cfg(feature = "http")]
fn which(tool: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("which")
        .arg(tool)
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Client half-close: the client sends 4 MiB then `close_notify` but keeps reading. The
/// handler sees the peer-closed event only after every byte, can still write (a trailer),
/// and the client gets the whole echo, the trailer, then the server's `close_notify`.
#[test]
fn client_half_close_delivers_everything_then_close_notify() {
    let ca = Ca::new("half-close CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, rx) = start(server_config(&leaf, &[]), Mode::EchoThenTrailer, |b| b);
    let cfg = client_config(&[ca.der()], &[]);
    let data = Arc::new(payload(3, 4 << 20));
    let client = handshake(server.local_addr(), cfg, "localhost").unwrap();
    let got = echo_exchange(client, Arc::clone(&data));
    assert_eq!(got.len(), data.len() + TRAILER.len());
    assert!(got[..data.len()] == data[..], "echoed bytes differ");
    assert_eq!(&got[data.len()..], TRAILER);
    let received = wait_for(&rx, "on_read_closed", |e| match e {
        Event::ReadClosed { received } => Some(received),
        _ => None,
    });
    assert_eq!(
        received,
        data.len(),
        "read-closed came before the last byte"
    );
}

/// A client whose first flight after the handshake — `Finished`, application data and
/// `close_notify` — arrives in one read: the handler gets the data, then the peer-closed
/// event, and the client gets the echo and the server's `close_notify` (a `close_notify` read
/// during the handshake once went unnoticed, and the connection waited forever).
#[test]
fn close_notify_with_the_final_handshake_flight_is_not_lost() {
    let ca = Ca::new("flight CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, rx) = start(server_config(&leaf, &[]), Mode::EchoThenTrailer, |b| b);
    let mut sock = util::connect(server.local_addr());
    let mut conn =
        ClientConnection::new(client_config(&[ca.der()], &[]), name("localhost")).unwrap();
    // Drive the handshake, holding back the client's last flight.
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        if conn.is_handshaking() {
            conn.read_tls(&mut sock).unwrap();
            conn.process_new_packets().unwrap();
        }
    }
    conn.writer().write_all(b"hello").unwrap();
    conn.send_close_notify();
    let flight = ciphertext(&mut conn);
    sock.write_all(&flight).unwrap();
    let (conn, mut sock) = Client { conn, sock }.split();
    let got = read_to_close_notify(&conn, &mut sock);
    assert_eq!(got, [&b"hello"[..], TRAILER].concat());
    let received = wait_for(&rx, "on_read_closed", |e| match e {
        Event::ReadClosed { received } => Some(received),
        _ => None,
    });
    assert_eq!(received, 5);
}

/// Server half-close: the handler writes 2 MiB and shuts its write side down. The client reads
/// all of it, then the server's `close_notify` — and the connection still carries the
/// client's bytes the other way until the client's own `close_notify`.
#[test]
fn server_half_close_sends_close_notify_after_pending_output() {
    const SENT: usize = 2 << 20;
    let ca = Ca::new("shutdown CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, rx) = start(
        server_config(&leaf, &[]),
        Mode::SendThenShutdown(SENT),
        |b| b,
    );
    let cfg = client_config(&[ca.der()], &[]);
    let client = handshake(server.local_addr(), cfg, "localhost").unwrap();
    let (conn, mut sock) = client.split();
    let got = read_to_close_notify(&conn, &mut sock);
    assert_eq!(got.len(), SENT);
    assert!(got == payload(SENT as u64, SENT), "bytes differ");
    // The server's read side is still open.
    let after = Arc::new(b"still talking after your close_notify".to_vec());
    spawn_writer(&conn, &sock, Arc::clone(&after), true)
        .join()
        .unwrap();
    let mut heard = Vec::new();
    while heard.len() < after.len() {
        heard.extend(wait_for(&rx, "data after the half-close", |e| match e {
            Event::Data(d) => Some(d),
            _ => None,
        }));
    }
    assert_eq!(heard, *after);
    let received = wait_for(&rx, "on_read_closed", |e| match e {
        Event::ReadClosed { received } => Some(received),
        _ => None,
    });
    assert_eq!(received, after.len());
    let reason = wait_for(&rx, "on_close", |e| match e {
        Event::Closed { reason, .. } => Some(reason),
        _ => None,
    });
    assert_eq!(reason, "peer_closed");
    // The server closed the socket after both close_notifys: end of stream.
    assert!(drain_socket(&mut sock).is_empty());
}

/// Plaintext sent to the TLS port, a client that rejects the server's certificate and one with
/// no protocol version in common: each fails its handshake, reaches `on_tls_error` with its
/// reason and is closed; the stats count them. A forged record on an established connection
/// closes it with `CloseReason::Tls`. A good client mid-stream on the same loop is unaffected
/// by all four.
#[test]
fn failed_handshakes_close_with_their_reason_and_spare_others() {
    let ca = Ca::new("good CA");
    let stranger = Ca::new("some other CA");
    let leaf = ca.leaf(&["localhost"]);
    // TLS 1.3 only, so that a TLS 1.2 client has no version in common with it. One loop: the
    // failures and the good connection share it.
    let tls13 = server_config_for(&leaf, &[], &[&rustls::version::TLS13]);
    let (server, rx) = start(tls13, Mode::Echo, |b| b.loops(1));
    let addr = server.local_addr();

    // A good client: handshake, one round trip, then wait while the others fail.
    let good = handshake(addr, client_config(&[ca.der()], &[]), "localhost").unwrap();
    let (conn, mut sock) = good.split();
    let first = Arc::new(payload(1, 100_000));
    spawn_writer(&conn, &sock, Arc::clone(&first), false)
        .join()
        .unwrap();
    assert!(read_exactly(&conn, &mut sock, first.len()) == *first);

    // Plaintext to the TLS port.
    let mut plain = util::connect(addr);
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (kind, message) = tls_error_for(&rx, plain.local_addr().unwrap());
    assert_eq!(kind, ErrorKind::InvalidData, "{message}");
    assert!(message.contains("corrupt message"), "{message}");
    // All the plaintext client gets is a fatal TLS alert (record type 21, level 2), then the
    // end of the stream.
    let answer = drain_socket(&mut plain);
    assert!(answer.starts_with(&[21, 3, 3, 0, 2, 2]), "{answer:?}");

    // A client that does not trust the server's certificate.
    let rejecting = util::connect(addr);
    let me = rejecting.local_addr().unwrap();
    let mut rejecting_copy = rejecting.try_clone().unwrap();
    let err = handshake_on(
        rejecting,
        client_config(&[stranger.der()], &[]),
        "localhost",
    )
    .err()
    .expect("a client with another root store must reject the certificate");
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert!(err.to_string().contains("UnknownIssuer"), "client: {err}");
    let (kind, message) = tls_error_for(&rx, me);
    assert_eq!(kind, ErrorKind::InvalidData, "{message}");
    assert!(message.contains("alert: UnknownCA"), "server: {message}");
    // The server closed it.
    drain_socket(&mut rejecting_copy);

    // A client that speaks only TLS 1.2.
    let old = util::connect(addr);
    let me = old.local_addr().unwrap();
    let mut old_copy = old.try_clone().unwrap();
    let cfg = client_config_for(&[ca.der()], &[], &[&rustls::version::TLS12]);
    let err = handshake_on(old, cfg, "localhost")
        .err()
        .expect("no version in common");
    assert!(err.to_string().contains("ProtocolVersion"), "client: {err}");
    let (kind, message) = tls_error_for(&rx, me);
    assert_eq!(kind, ErrorKind::InvalidData, "{message}");
    assert!(
        message.contains("peer is incompatible"),
        "server: {message}"
    );
    drain_socket(&mut old_copy);

    // A record that does not decrypt, after a good handshake: the established connection
    // closes with a TLS reason (and a fatal alert to the client).
    let mut forger = handshake(addr, client_config(&[ca.der()], &[]), "localhost").unwrap();
    let me = forger.sock.local_addr().unwrap();
    // An application-data record (type 23) of 20 bytes that no key produced.
    let forged: Vec<u8> = [23, 3, 3, 0, 20].into_iter().chain(1..=20).collect();
    forger.sock.write_all(&forged).unwrap();
    let (reason, text) = wait_for(&rx, "on_close for the forged record", |e| match e {
        Event::Closed {
            peer: Some(p),
            reason,
            text,
        } if p == me => Some((reason, text)),
        _ => None,
    });
    assert_eq!(reason, "tls", "{text}");
    assert!(text.contains("decrypt"), "{text}");
    // The client's session reads the server's alert.
    let answer = drain_socket(&mut forger.sock);
    let mut rest = &answer[..];
    let verdict = loop {
        forger.conn.read_tls(&mut rest).unwrap();
        match forger.conn.process_new_packets() {
            Err(e) => break e.to_string(),
            Ok(_) if rest.is_empty() => break "no alert".to_string(),
            Ok(_) => {}
        }
    };
    assert!(verdict.contains("alert: BadRecordMac"), "{verdict}");

    // The good connection carries on.
    let rest = Arc::new(payload(2, 1 << 20));
    let writer = spawn_writer(&conn, &sock, Arc::clone(&rest), true);
    let got = read_to_close_notify(&conn, &mut sock);
    writer.join().unwrap();
    assert!(got == *rest, "the good connection's echo differs");
    let stats = server.stats().total();
    assert_eq!(stats.tls_handshakes, 2);
    assert_eq!(stats.tls_handshake_errors, 3);
}

/// A client that connects and says nothing is cut by the handshake timeout; with a read
/// timeout shorter than the handshake timeout, by the read timeout — also one that stalls
/// halfway through its first record.
#[test]
fn stalled_handshakes_are_cut_by_the_timeouts() {
    let ca = Ca::new("stall CA");
    let leaf = ca.leaf(&["localhost"]);
    let cfg = server_config(&leaf, &[]);
    // The handshake timeout alone.
    let (a, rx_a) = start(Arc::clone(&cfg), Mode::Echo, |b| {
        b.tls_handshake_timeout(Duration::from_millis(100))
    });
    // A read timeout, with a handshake timeout far beyond the test's bound: only the read
    // timeout can end these.
    let (b, rx_b) = start(cfg, Mode::Echo, |b| {
        b.tls_handshake_timeout(Duration::from_secs(3600))
            .read_timeout(Duration::from_millis(100))
    });
    let mut silent_a = util::connect(a.local_addr());
    let mut silent_b = util::connect(b.local_addr());
    let mut partial_b = util::connect(b.local_addr());
    // The first bytes of a ClientHello record header, and no more.
    partial_b.write_all(&[0x16, 0x03, 0x01]).unwrap();
    let (kind, message) = tls_error_for(&rx_a, silent_a.local_addr().unwrap());
    assert_eq!(kind, ErrorKind::TimedOut, "{message}");
    let peers = [
        silent_b.local_addr().unwrap(),
        partial_b.local_addr().unwrap(),
    ];
    for (kind, message) in tls_errors(&rx_b, &peers) {
        assert_eq!(kind, ErrorKind::TimedOut, "{message}");
    }
    // Each was closed.
    for sock in [&mut silent_a, &mut silent_b, &mut partial_b] {
        drain_socket(sock);
    }
    assert_eq!(a.stats().total().tls_handshake_errors, 1);
    assert_eq!(b.stats().total().tls_handshake_errors, 2);
    assert_eq!(
        a.stats().total().tls_handshakes + b.stats().total().tls_handshakes,
        0
    );
}

/// SNI picks the certificate (a rustls `ResolvesServerCertUsingSni`), ALPN picks `http/1.1`,
/// and the handler sees both; a client that sends neither (connecting by IP address, no ALPN)
/// shows neither.
#[test]
fn sni_and_alpn_are_visible_to_the_handler() {
    let ca = Ca::new("sni CA");
    let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
    for host in ["alpha.test", "beta.test"] {
        let leaf = ca.leaf(&[host]);
        let key = rustls::sign::CertifiedKey::from_der(leaf.chain, leaf.key, &provider()).unwrap();
        resolver.add(host, key).unwrap();
    }
    let mut sni_cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    sni_cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (server, rx) = start(Arc::new(sni_cfg), Mode::Echo, |b| b);
    let roots = [ca.der()];
    for host in ["alpha.test", "beta.test"] {
        // The client verifies the certificate for `host`: only the one SNI selected passes.
        let client = handshake(
            server.local_addr(),
            client_config(&roots, &[b"h2", b"http/1.1"]),
            host,
        )
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let me = client.sock.local_addr().unwrap();
        let (alpn, sni) = wait_for(&rx, "on_open", |e| match e {
            Event::Open {
                peer: Some(p),
                tls: true,
                alpn,
                sni,
                ..
            } if p == me => Some((alpn, sni)),
            _ => None,
        });
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert_eq!(sni.as_deref(), Some(host));
        let got = echo_exchange(client, Arc::new(b"hello".to_vec()));
        assert_eq!(got, b"hello");
    }

    // By IP address (rustls sends no SNI for one) and without ALPN.
    let leaf = ca.leaf(&["127.0.0.1"]);
    let (plain_server, rx) = start(server_config(&leaf, &[b"http/1.1"]), Mode::Echo, |b| b);
    let client = handshake(
        plain_server.local_addr(),
        client_config(&roots, &[]),
        "127.0.0.1",
    )
    .unwrap();
    assert_eq!(client.conn.alpn_protocol(), None);
    let me = client.sock.local_addr().unwrap();
    let (alpn, sni) = wait_for(&rx, "on_open", |e| match e {
        Event::Open {
            peer: Some(p),
            alpn,
            sni,
            ..
        } if p == me => Some((alpn, sni)),
        _ => None,
    });
    assert_eq!((alpn, sni), (None, None));
}

/// Outbound TLS: dialled from another server's loop (`LoopCx::connect` at boot, and
/// `Server::connect`), a connection to a TLS echo server works with the right server name —
/// the handler gets its bytes back — and fails with the wrong one: the verification error
/// reaches `on_connect_error` as `InvalidData` with rustls' reason.
#[test]
fn outbound_tls_verifies_the_server_name() {
    let ca = Ca::new("dial CA");
    let leaf = ca.leaf(&["localhost"]);
    let (echo, echo_rx) = start(server_config(&leaf, &[]), Mode::Echo, |b| b);
    let target = echo.local_addr();
    let cfg = client_config(&[ca.der()], &[]);
    let (tx, rx) = mpsc::channel();
    let wrong = Connect::new(target)
        .tls(ClientTls::new(Arc::clone(&cfg), name("wrong.example")))
        .context(b"never sent".to_vec());
    let mut wrong = Some(wrong);
    let dialer = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Probe {
            tx: tx.clone(),
            mode: Mode::Echo,
            dial_at_boot: wrong.take(),
        })
        .unwrap();

    // The wrong name, dialled at boot from the loop.
    let (kind, message) = wait_for(&rx, "on_connect_error", |e| match e {
        Event::ConnectError { kind, message } => Some((kind, message)),
        Event::Open { .. } => panic!("a connection with the wrong server name opened"),
        _ => None,
    });
    assert_eq!(kind, ErrorKind::InvalidData, "{message}");
    assert!(
        message.contains("not valid for name") || message.contains("NotValidForName"),
        "{message}"
    );
    // The echo server saw the client's alert.
    let (kind, message) = wait_for(&echo_rx, "the echo server's on_tls_error", |e| match e {
        Event::TlsError { kind, message, .. } => Some((kind, message)),
        _ => None,
    });
    assert_eq!(kind, ErrorKind::InvalidData, "{message}");
    assert!(message.contains("alert: BadCertificate"), "{message}");

    // The right name, dialled from this thread.
    let data = payload(9, 300_000);
    dialer
        .connect(
            Connect::new(target)
                .tls(ClientTls::new(cfg, name("localhost")))
                .context(data.clone()),
        )
        .unwrap();
    let tls = wait_for(&rx, "the outbound on_open", |e| match e {
        Event::Open {
            outbound: true,
            tls,
            ..
        } => Some(tls),
        _ => None,
    });
    assert!(tls, "the outbound connection is not TLS");
    let echoed = wait_for(&rx, "the echo", |e| match e {
        Event::Echoed(d) => Some(d),
        _ => None,
    });
    assert!(echoed == data, "the echo differs");
    let d = dialer.stats().total();
    assert_eq!((d.tls_handshakes, d.tls_handshake_errors), (1, 1));
    assert_eq!(d.connect_errors, 1);
    let e = echo.stats().total();
    assert_eq!((e.tls_handshakes, e.tls_handshake_errors), (1, 1));
}

/// Back-pressure over TLS: a client that writes but never reads. The server's pending output
/// (ciphertext) stops at the high-water mark plus what one read's plaintext re-encrypts to;
/// once the client reads, every byte arrives.
#[test]
fn high_water_mark_bounds_pending_ciphertext() {
    const HIGH: usize = 256 * 1024;
    const READ_CHUNK: usize = 64 * 1024;
    const SENT: usize = 16 << 20;
    // One read of READ_CHUNK bytes of ciphertext yields at most READ_CHUNK bytes of plaintext
    // plus the rest of a record the previous read began (a record carries at most 16 KiB);
    // echoed, that is re-encrypted with at most 1 KiB of overhead per 16 KiB record.
    const RECORD: usize = 16 * 1024;
    const ONE_READ: usize = READ_CHUNK + RECORD;
    const BOUND: usize = HIGH + ONE_READ + (ONE_READ / RECORD + 1) * 1024;
    let ca = Ca::new("flow CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _rx) = start(server_config(&leaf, &[]), Mode::Echo, |b| {
        b.loops(1)
            .high_water(HIGH, HIGH / 4)
            .read_buffer_size(READ_CHUNK)
    });
    let client = handshake(
        server.local_addr(),
        client_config(&[ca.der()], &[]),
        "localhost",
    )
    .unwrap();
    let (conn, mut sock) = client.split();
    let data = Arc::new(payload(11, SENT));
    let writer = spawn_writer(&conn, &sock, Arc::clone(&data), true);
    // The client reads nothing until the server's output has passed the mark.
    util::wait_until("output passes the high-water mark", || {
        server.stats().total().peak_pending_output > HIGH as u64
    });
    let peak = server.stats().total().peak_pending_output;
    assert!(peak <= BOUND as u64, "peak pending output {peak} > {BOUND}");
    let got = read_to_close_notify(&conn, &mut sock);
    writer.join().unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == *data, "echoed bytes differ");
    let peak = server.stats().total().peak_pending_output;
    assert!(peak <= BOUND as u64, "peak pending output {peak} > {BOUND}");
}

/// The PEM helpers: certificates and a key written as PEM load back; a missing file, a file
/// without certificates and a key that does not match the certificate each fail with a
/// message naming the file.
#[test]
fn pem_helpers_load_files_and_name_them_in_errors() {
    use eventide::tls::{load_certs, load_private_key, server_config_from_pem};
    let ca = Ca::new("pem CA");
    let leaf = ca.leaf(&["localhost"]);
    let other = ca.leaf(&["localhost"]);
    let dir = TempDir::new("pem");
    let both = dir.file("both.pem", &format!("{}{}", leaf.key_pem, leaf.cert_pem));
    let other_key = dir.file("other-key.pem", &other.key_pem);
    let missing = dir.0.join("missing.pem");

    assert_eq!(load_certs(&both).unwrap(), leaf.chain);
    let ca_pem = dir.file("ca.pem", &ca.pem());
    assert_eq!(load_certs(&ca_pem).unwrap(), vec![ca.der()]);
    assert_eq!(
        load_private_key(&both).unwrap().secret_der(),
        leaf.key.secret_der()
    );
    let cfg = server_config_from_pem(&both, &both, &[b"http/1.1"]).unwrap();
    assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);

    let e = load_certs(&missing).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(mentions(&e, &missing), "{e}");
    let e = load_certs(&other_key).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(mentions(&e, &other_key), "{e}");
    let e = server_config_from_pem(&both, &other_key, &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(mentions(&e, &other_key), "{e}");
}

fn mentions(e: &io::Error, path: &Path) -> bool {
    e.to_string().contains(&path.display().to_string())
}
