//! The session against rustls' own buffered connections, in memory: every way the byte stream
//! can be cut into reads, handshake messages split over many records, `close_notify`, and
//! failures.

use std::io::{ErrorKind, Read, Write as _};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, Connection, ServerConnection};

use super::*;

/// Read sizes the byte stream is cut into.
const CUTS: &[usize] = &[1, 2, 3, 5, 7, 64, 517, 4096, 20_000, usize::MAX];

/// A self-signed certificate for `localhost`, and its key.
fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der());
    (ck.cert.der().clone(), key.into())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's and the client's configurations; `fragment` caps their records' size.
fn configs(fragment: Option<usize>) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let (cert, key) = certificate();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    server.max_fragment_size = fragment;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    client.max_fragment_size = fragment;
    (Arc::new(server), Arc::new(client))
}

/// A server session, and a rustls client asking for `name`.
fn server_pair(fragment: Option<usize>, name: &str) -> (TlsSession, Connection) {
    let (server, client) = configs(fragment);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let peer = ClientConnection::new(client, name).unwrap();
    (TlsSession::server(&server).unwrap(), peer.into())
}

/// A client session for `localhost`, and a rustls server.
fn client_pair(fragment: Option<usize>) -> (TlsSession, Connection) {
    let (server, client) = configs(fragment);
    let tls = ClientTls::new(client, ServerName::try_from("localhost").unwrap());
    let peer = ServerConnection::new(server).unwrap();
    (TlsSession::client(&tls).unwrap(), peer.into())
}

/// Every record `peer` has for the wire.
fn wire(peer: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while peer.wants_write() {
        peer.write_tls(&mut out).unwrap();
    }
    out
}

/// Feeds `bytes` to the session `cut` bytes at a time: the plaintext, and whether the peer
/// closed.
fn feed_in(
    session: &mut TlsSession,
    mut bytes: Vec<u8>,
    cut: usize,
) -> io::Result<(Vec<u8>, bool)> {
    let (mut plain, mut closed) = (Vec::new(), false);
    for piece in bytes.chunks_mut(cut) {
        closed = session
            .feed(piece, &mut |p| plain.extend_from_slice(p))?
            .closed;
    }
    Ok((plain, closed))
}

/// Hands the session's records to `peer`: the plaintext it read, and whether it saw
/// `close_notify`.
fn deliver(
    session: &mut TlsSession,
    peer: &mut Connection,
) -> Result<(Vec<u8>, bool), rustls::Error> {
    let mut records = Vec::new();
    session.take_ciphertext(&mut |c| records.extend_from_slice(c));
    let (mut rest, mut plain, mut closed) = (&records[..], Vec::new(), false);
    while !rest.is_empty() {
        peer.read_tls(&mut rest).unwrap();
        closed = peer.process_new_packets()?.peer_has_closed();
        // Drained as it comes: rustls holds at most 16 KiB of plaintext.
        if let Err(e) = peer.reader().read_to_end(&mut plain) {
            assert_eq!(e.kind(), ErrorKind::WouldBlock);
        }
    }
    Ok((plain, closed))
}

/// Runs the handshake, the session's reads cut into `cut` bytes.
fn handshake(session: &mut TlsSession, peer: &mut Connection, cut: usize) {
    for _ in 0..8 {
        let (early, _) = feed_in(session, wire(peer), cut).unwrap();
        assert!(early.is_empty(), "no application data yet");
        deliver(session, peer).unwrap();
        if !session.is_handshaking() && !peer.is_handshaking() && !peer.wants_write() {
            return;
        }
    }
    panic!("the handshake did not complete (reads of {cut} bytes)");
}

/// `n` bytes that differ from one position to the next.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_server_session_reads_and_echoes_however_the_stream_is_cut() {
    for &cut in CUTS {
        let (mut session, mut peer) = server_pair(None, "localhost");
        handshake(&mut session, &mut peer, cut);
        assert_eq!(session.server_name(), Some("localhost"));
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        // A small record, a full one, and a write of two records.
        let sent = pattern(100 + 16 * 1024 + 20_000);
        for part in [&sent[..100], &sent[100..16_484], &sent[16_484..]] {
            peer.writer().write_all(part).unwrap();
        }
        let (got, closed) = feed_in(&mut session, wire(&mut peer), cut).unwrap();
        assert!(!closed);
        assert!(
            got == sent,
            "reads of {cut}: {} of {} bytes right",
            got.len(),
            sent.len()
        );
        assert_eq!(
            session.incoming.capacity(),
            0,
            "nothing is held once records are whole"
        );
        session.encrypt(&got);
        let (echoed, _) = deliver(&mut session, &mut peer).unwrap();
        assert!(echoed == sent, "reads of {cut}: the echo differs");
    }
}

#[test]
fn handshake_messages_split_over_many_small_records_are_joined() {
    for &cut in &[1, 7, 100, usize::MAX] {
        // Records of at most 32 bytes: every handshake message spans several.
        let (mut session, mut peer) = server_pair(Some(32), "localhost");
        handshake(&mut session, &mut peer, cut);
        assert_eq!(session.server_name(), Some("localhost"));
        peer.writer()
            .write_all(b"after a fragmented handshake")
            .unwrap();
        let (got, _) = feed_in(&mut session, wire(&mut peer), cut).unwrap();
        assert_eq!(got, b"after a fragmented handshake");
    }
}

#[test]
fn a_client_session_handshakes_and_exchanges_data_however_the_stream_is_cut() {
    for (i, &cut) in CUTS.iter().enumerate() {
        let fragment = (i % 2 == 1).then_some(64);
        let (mut session, mut peer) = client_pair(fragment);
        handshake(&mut session, &mut peer, cut);
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(session.server_name(), None, "a client has no SNI to report");
        session.encrypt(b"hello from the client");
        let (got, _) = deliver(&mut session, &mut peer).unwrap();
        assert_eq!(got, b"hello from the client");
        let sent = pattern(40_000);
        peer.writer().write_all(&sent).unwrap();
        let (got, _) = feed_in(&mut session, wire(&mut peer), cut).unwrap();
        assert!(
            got == sent,
            "reads of {cut}: {} of {} bytes right",
            got.len(),
            sent.len()
        );
    }
}

#[test]
fn a_client_without_sni_leaves_the_server_name_empty() {
    let (mut session, mut peer) = server_pair(None, "127.0.0.1");
    // The certificate is for `localhost` only: the client rejects it, after the server has
    // seen its ClientHello (which has no SNI for an IP address).
    let _ = feed_in(&mut session, wire(&mut peer), usize::MAX);
    assert_eq!(session.server_name(), None);
}

#[test]
fn a_record_arriving_in_two_reads_is_completed_from_the_second() {
    let (mut session, mut peer) = server_pair(None, "localhost");
    handshake(&mut session, &mut peer, usize::MAX);
    let sent = pattern(16 * 1024 + 100);
    peer.writer().write_all(&sent[..16 * 1024]).unwrap();
    peer.writer().write_all(&sent[16 * 1024..]).unwrap();
    let mut bytes = wire(&mut peer);
    let (first, second) = bytes.split_at_mut(1000);
    let mut got = Vec::new();
    session
        .feed(first, &mut |p| got.extend_from_slice(p))
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(
        session.incoming, first,
        "the start of the record is kept as it came"
    );
    session
        .feed(second, &mut |p| got.extend_from_slice(p))
        .unwrap();
    assert!(got == sent, "{} of {} bytes right", got.len(), sent.len());
    assert_eq!(session.incoming.capacity(), 0);
}

#[test]
fn close_notify_ends_the_plaintext_and_later_bytes_are_ignored() {
    let (mut session, mut peer) = server_pair(None, "localhost");
    handshake(&mut session, &mut peer, usize::MAX);
    peer.writer().write_all(b"last words").unwrap();
    peer.send_close_notify();
    let mut bytes = wire(&mut peer);
    bytes.extend_from_slice(b"bytes after the end");
    let (got, closed) = feed_in(&mut session, bytes, usize::MAX).unwrap();
    assert_eq!(got, b"last words");
    assert!(closed && session.peer_closed());
    let fed = session.feed(&mut b"more".to_vec(), &mut |_| {
        panic!("no plaintext after the end")
    });
    assert!(fed.unwrap().closed);
    // Our side may still write, then closes.
    session.encrypt(b"bye");
    assert!(session.send_close_notify());
    assert!(!session.send_close_notify(), "close_notify is sent once");
    session.encrypt(b"dropped: written after close_notify");
    assert_eq!(
        deliver(&mut session, &mut peer).unwrap(),
        (b"bye".to_vec(), true)
    );
}

#[test]
fn a_corrupt_record_fails_the_session_with_an_alert_for_the_peer() {
    let (mut session, mut peer) = server_pair(None, "localhost");
    handshake(&mut session, &mut peer, usize::MAX);
    peer.writer().write_all(&[b'x'; 100]).unwrap();
    let mut bytes = wire(&mut peer);
    bytes[20] ^= 1;
    let e = feed_in(&mut session, bytes, usize::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    // The alert is ready for the peer, which learns why.
    let sent = deliver(&mut session, &mut peer).unwrap_err();
    assert_eq!(
        sent,
        rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac)
    );
    // The session stays failed, and quiet.
    assert!(session.feed(&mut [23, 3, 3, 0, 1, 0], &mut |_| {}).is_err());
    session.encrypt(b"nothing goes out now");
    session.take_ciphertext(&mut |_| panic!("no records after the failure"));
}

#[test]
fn bytes_that_are_not_tls_fail_the_handshake() {
    let (mut session, _peer) = server_pair(None, "localhost");
    let e = session
        .feed(&mut b"GET / HTTP/1.1\r\n\r\n".to_vec(), &mut |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(session.is_handshaking());
}

#[test]
fn plaintext_before_the_handshake_completes_fails_the_session() {
    let (mut session, mut peer) = server_pair(None, "localhost");
    session.encrypt(b"too early");
    session.take_ciphertext(&mut |_| panic!("nothing may go out before the handshake"));
    assert!(feed_in(&mut session, wire(&mut peer), usize::MAX).is_err());
}

fn record(len: u16) -> Vec<u8> {
    let mut r = vec![23, 3, 3];
    r.extend_from_slice(&len.to_be_bytes());
    r.resize(HEADER + usize::from(len), 0xab);
    r
}

#[test]
fn completing_takes_the_rest_of_the_last_record() {
    let r = record(100);
    assert_eq!(completing(&r[..40], &[0; 500]), 65);
    // Only what arrived, if the record is still incomplete after it.
    assert_eq!(completing(&r[..40], &[0; 10]), 10);
    // Whole records before the incomplete one are walked over.
    let mut two = record(10);
    two.extend_from_slice(&r[..7]);
    assert_eq!(completing(&two, &[0; 500]), 98);
}

#[test]
fn completing_reads_a_split_header_from_the_next_bytes() {
    let r = record(300);
    assert_eq!(completing(&r[..2], &r[2..]), 303);
    assert_eq!(completing(&r[..2], &r[2..4]), 2);
}

#[test]
fn completing_takes_nothing_after_whole_records() {
    assert_eq!(completing(&record(20), &[0; 50]), 0);
}

#[test]
fn early_data_is_refused_when_a_configuration_enables_it() {
    let (server, client) = configs(None);
    let mut server = Arc::unwrap_or_clone(server);
    server.max_early_data_size = 1024;
    let server = Arc::new(server);
    let mut client = Arc::unwrap_or_clone(client);
    client.enable_early_data = true;
    let client = Arc::new(client);
    let connect = || {
        let name = ServerName::try_from("localhost").unwrap();
        let peer: Connection = ClientConnection::new(Arc::clone(&client), name)
            .unwrap()
            .into();
        (TlsSession::server(&server).unwrap(), peer)
    };
    // A first handshake gives the client a ticket that allows early data.
    let (mut session, mut peer) = connect();
    handshake(&mut session, &mut peer, usize::MAX);
    // The second sends data with its ClientHello.
    let (mut session, mut peer) = connect();
    let Connection::Client(c) = &mut peer else {
        unreachable!()
    };
    c.early_data()
        .expect("a ticket allowing early data")
        .write_all(b"0-RTT")
        .unwrap();
    let e = feed_in(&mut session, wire(&mut peer), usize::MAX).unwrap_err();
    assert!(e.to_string().contains("0-RTT"), "{e}");
}

#[test]
fn a_handshake_message_in_tiny_records_is_refused_past_a_bound() {
    let (mut session, _peer) = server_pair(None, "localhost");
    // A ClientHello announcing 65,000 bytes, sent one byte per record: six bytes on the wire
    // for each byte of the message.
    let announced = [1, 0, 0xfd, 0xe8];
    let mut wire = Vec::new();
    for i in 0..65_000 + 4 {
        let byte = announced.get(i).copied().unwrap_or(0);
        wire.extend_from_slice(&[22, 3, 1, 0, 1, byte]);
    }
    let mut fed = 0;
    let e = loop {
        let piece = &mut wire[fed..fed + 16 * 1024];
        fed += piece.len();
        if let Err(e) = session.feed(piece, &mut |_| {}) {
            break e;
        }
    };
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains("exceed"), "{e}");
    assert!(fed <= MAX_KEPT + 16 * 1024, "refused after {fed} bytes");
    assert_eq!(
        session.incoming.capacity(),
        0,
        "nothing is held after the refusal"
    );
}

#[test]
fn a_key_update_from_the_peer_is_answered_and_traffic_goes_on() {
    let (mut session, mut peer) = server_pair(None, "localhost");
    handshake(&mut session, &mut peer, usize::MAX);
    for round in 0..3 {
        // A TLS 1.3 KeyUpdate that asks for ours in return, then data under the new keys.
        peer.refresh_traffic_keys().unwrap();
        let sent = format!("round {round}").into_bytes();
        peer.writer().write_all(&sent).unwrap();
        let (got, _) = feed_in(&mut session, wire(&mut peer), 3).unwrap();
        assert_eq!(got, sent);
        // Our KeyUpdate goes first, then the reply under our new keys.
        session.encrypt(&got);
        let mut records = Vec::new();
        session.take_ciphertext(&mut |c| records.extend_from_slice(c));
        assert_eq!(
            record_lengths(&records).len(),
            2,
            "a KeyUpdate, then the reply"
        );
        let mut rest = &records[..];
        while !rest.is_empty() {
            peer.read_tls(&mut rest).unwrap();
            peer.process_new_packets().unwrap();
        }
        let mut echoed = vec![0; sent.len()];
        peer.reader().read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, sent);
    }
}

/// The payload lengths of the records in `wire`.
fn record_lengths(mut wire: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    while wire.len() >= HEADER {
        let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        lengths.push(len);
        wire = &wire[(HEADER + len).min(wire.len())..];
    }
    lengths
}
