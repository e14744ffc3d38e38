//! TLS smoke test (feature `tls`): echo over TLS with rustls' own client.
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};

use eventide::tls::rustls;
use eventide::{Action, Conn, Handler, LoopCx, Server};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

struct Echo(mpsc::Sender<String>);

impl Handler for Echo {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        let _ = self.0.send(format!(
            "open tls={} sni={:?}",
            conn.is_tls(),
            conn.tls_server_name()
        ));
    }
    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let d = conn.input();
        conn.write(d);
        conn.consume(d.len());
        Action::Continue
    }
    fn on_tls_error(
        &mut self,
        _: &mut LoopCx<'_>,
        _: Option<std::net::SocketAddr>,
        e: &std::io::Error,
    ) {
        let _ = self.0.send(format!("tls error: {e}"));
    }
}

#[test]
fn tls_echo_smoke() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let server_cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0", Arc::new(server_cfg))
        .loops(1)
        .start(move |_| Echo(tx.clone()))
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let conn =
        rustls::ClientConnection::new(client_cfg, ServerName::try_from("localhost").unwrap())
            .unwrap();
    let sock = TcpStream::connect(server.local_addr()).unwrap();
    sock.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let data = util::Rng::new(5).bytes(3 << 20);
    tls.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    assert_eq!(
        rx.recv_timeout(util::TIMEOUT).unwrap(),
        "open tls=true sni=Some(\"localhost\")"
    );
    // A large payload (it fits in the loopback socket buffers), then close_notify.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    tls.write_all(&data).unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e} after {}", got.len()),
        }
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data);
    // Plaintext to the TLS port: the handshake fails with a reason.
    let mut plain = TcpStream::connect(server.local_addr()).unwrap();
    plain.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let msg = rx.recv_timeout(util::TIMEOUT).unwrap();
    assert!(msg.starts_with("tls error:"), "{msg}");
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert_eq!(server.stats().total().tls_handshake_errors, 1);
}
