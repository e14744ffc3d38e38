//! The client side of the tests: rustls' own client driven over a blocking std `TcpStream`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use eventide::tls::rustls;
use rustls::ClientConnection;

use super::certs::name;
use crate::util::{self, Rng};

// ---------------------------------------------------------------------------------------------
// The client: rustls over a blocking std TcpStream, one thread writing while another reads
// ---------------------------------------------------------------------------------------------

/// A rustls client connection whose handshake is complete.
pub struct Client {
    pub conn: ClientConnection,
    pub sock: TcpStream,
}

/// Connects and completes the handshake (the error is the client's verdict on the server).
pub fn handshake(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    server: &str,
) -> io::Result<Client> {
    handshake_on(util::connect(addr), cfg, server)
}

/// Completes a handshake over a connected socket.
pub fn handshake_on(
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
pub type Shared = Arc<Mutex<ClientConnection>>;

impl Client {
    pub fn split(self) -> (Shared, TcpStream) {
        let Client { mut conn, sock } = self;
        // Ciphertext is taken out after every chunk, so the buffer stays one chunk deep.
        conn.set_buffer_limit(None);
        (Arc::new(Mutex::new(conn)), sock)
    }
}

/// Encrypts and sends `data` in chunks of random size (1 B to 64 KiB), then `close_notify` if
/// `close`, on a thread of its own.
pub fn spawn_writer(
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
pub fn ciphertext(conn: &mut ClientConnection) -> Vec<u8> {
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
pub fn read_to_close_notify(conn: &Shared, sock: &mut TcpStream) -> Vec<u8> {
    read_plain(conn, sock, |_, closed| closed)
}

/// Reads exactly `n` bytes of plaintext (the peer sends no more meanwhile).
pub fn read_exactly(conn: &Shared, sock: &mut TcpStream, n: usize) -> Vec<u8> {
    let got = read_plain(conn, sock, |got, _| got.len() >= n);
    assert_eq!(got.len(), n);
    got
}

/// Sends `data` and `close_notify` while reading the echo; returns what came back before the
/// server's `close_notify`.
pub fn echo_exchange(client: Client, data: Arc<Vec<u8>>) -> Vec<u8> {
    let (conn, mut sock) = client.split();
    let writer = spawn_writer(&conn, &sock, data, true);
    let got = read_to_close_notify(&conn, &mut sock);
    writer.join().expect("writer thread");
    got
}

/// Reads until the socket ends (EOF or reset); returns the bytes that came.
pub fn drain_socket(sock: &mut TcpStream) -> Vec<u8> {
    let (got, _reset) = util::read_until_closed(sock);
    got
}
