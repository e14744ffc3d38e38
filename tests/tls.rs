//! TLS (feature `tls`) over real sockets, against clients written by others: rustls' own client
//! driven over a std `TcpStream`, and `curl` for HTTPS. Certificates are made at test time
//! with rcgen (a CA and leaves it signs); no key is stored in the repository.

#![cfg(feature = "tls")]

mod proto_util;
#[cfg(feature = "http")]
#[path = "../examples/http/tfb.rs"]
mod tfb;
mod tls_support;
mod util;

use std::io::{ErrorKind, Write};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use eventide::tls::{rustls, ClientTls};
use eventide::{Connect, Server};
#[cfg(feature = "http")]
#[cfg(feature = "http")]
use proto_util::{assert_curl_got, tool, TFB_ROUTES};
use rustls::ClientConnection;
use tls_support::certs::{
    client_config, client_config_for, name, provider, server_config, server_config_for, Ca, TempDir,
};
use tls_support::client::{
    ciphertext, drain_socket, echo_exchange, handshake, handshake_on, read_exactly,
    read_to_close_notify, spawn_writer, Client,
};
use tls_support::{
    mentions, payload, start, tls_error_for, tls_errors, wait_for, Event, Mode, Probe, TRAILER,
};
use util::Rng;

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

/// Output written in pieces of every size around a record's (the first borrowed from the
/// input, small ones gathered into records, large ones encrypted from the caller's bytes)
/// comes back whole and in order.
#[test]
fn echo_written_in_pieces_of_every_size_comes_back_whole() {
    let ca = Ca::new("pieces CA");
    let leaf = ca.leaf(&["localhost"]);
    let (server, _rx) = start(server_config(&leaf, &[]), Mode::EchoInPieces, |b| b);
    let addr = server.local_addr();
    let cfg = client_config(&[ca.der()], &[]);
    let clients: Vec<_> = [1usize, 717, 16 * 1024, 40_000, 300_000, 2 << 20]
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let cfg = Arc::clone(&cfg);
            thread::spawn(move || {
                let data = Arc::new(payload(i as u64 + 100, size));
                let client = handshake(addr, cfg, "localhost").expect("handshake");
                let got = echo_exchange(client, Arc::clone(&data));
                assert_eq!(got.len(), data.len(), "{size} B: echoed length");
                assert!(got == *data, "{size} B: echoed bytes differ");
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

/// The TechEmpower service over TLS, with a certificate and key loaded from PEM files by
/// `eventide::tls::server_config_from_pem`: curl, verifying against the test CA, gets both
/// bodies.
#[cfg(feature = "http")]
#[test]
fn curl_gets_plaintext_and_json_over_https() {
    let Some(curl) = tool("curl", "curl_gets_plaintext_and_json_over_https") else {
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
    for (path, body, ct) in TFB_ROUTES {
        let out = std::process::Command::new(&curl)
            .args(["-sS", "--max-time", "30", "-D", "-", "--cacert"])
            .arg(&ca_pem)
            .arg("--resolve")
            .arg(format!("localhost:{port}:127.0.0.1"))
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("run curl");
        assert_curl_got(&out, body, ct);
    }
    let stats = server.stats().total();
    assert_eq!(stats.tls_handshakes, 2);
    assert_eq!(stats.tls_handshake_errors, 0);
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
