//! WebSocket conformance over loopback with a raw-socket client, written from RFC 6455: the
//! handshake and its refusals, framing, fragmentation, control frames, close codes, UTF-8,
//! limits, reserved bits, a peer vanishing mid-frame, idle pings, handles and the dialer.

#![cfg(feature = "ws")]

mod ws_support;

use std::io::Write;
use std::time::Duration;

use eventide::ws::{ClientRequest, CloseCode, Config, WsServer};
use ws_support::*;

#[test]
fn handshake_answers_with_the_accept_key_and_a_subprotocol() {
    let srv = EchoServer::start(|s| s.protocols(["chat.v2", "chat.v1"]));
    let mut raw = Raw::connect(srv.addr());
    let head = raw.request(&upgrade_request(
        "/any/path?x=1",
        "Sec-WebSocket-Protocol: chat.v1, chat.v2\r\nOrigin: https://example.com\r\n",
    ));
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("Connection: Upgrade\r\n"), "{head}");
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    // The server's order of preference wins among those offered.
    assert!(
        head.contains("Sec-WebSocket-Protocol: chat.v2\r\n"),
        "{head}"
    );
    assert!(matches!(srv.next(), Seen::Open { protocol: Some(p), .. } if p == "chat.v2"));
    raw.frame(0x81, b"hi");
    assert_eq!(raw.read_frame(), Some((0x81, b"hi".to_vec())));
}

#[test]
fn frames_sent_with_the_request_are_read() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::connect(srv.addr());
    let mut bytes = upgrade_request("/", "").into_bytes();
    bytes.extend(masked_frame(0x81, b"early"));
    raw.send(&bytes);
    let head = raw.request("");
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(raw.read_frame(), Some((0x81, b"early".to_vec())));
}

#[test]
fn bad_upgrades_are_refused() {
    let srv = EchoServer::start(|s| s.origin_check(|o| o != Some("https://evil.example")));
    // The valid request without the `drop` header line, with `add` lines.
    let base = |drop: &str, add: &str| {
        let mut lines: Vec<String> = upgrade_request("/", "")
            .lines()
            .filter(|l| !l.is_empty() && (drop.is_empty() || !l.starts_with(drop)))
            .map(|l| format!("{l}\r\n"))
            .collect();
        lines.push(format!("{add}\r\n"));
        lines.concat()
    };
    let cases = [
        (base("Sec-WebSocket-Key", ""), "400"),
        (base("Upgrade", ""), "400"),
        (base("Connection", ""), "400"),
        (base("Host", ""), "400"),
        (base("Sec-WebSocket-Version", ""), "400"),
        (base("", "").replacen("GET", "POST", 1), "400"),
        (base("", "").replacen("HTTP/1.1", "HTTP/1.0", 1), "400"),
        (
            base("Sec-WebSocket-Key", "Sec-WebSocket-Key: c2hvcnQ=\r\n"),
            "400",
        ),
        (
            base("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\n"),
            "426",
        ),
        (base("", "Origin: https://evil.example\r\n"), "403"),
        (upgrade_request("/reject", ""), "404"),
        ("GARBAGE\r\n\r\n".into(), "400"),
    ];
    for (request, status) in cases {
        let mut raw = Raw::connect(srv.addr());
        let head = raw.request(&request);
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} -> {head}"
        );
        assert!(head.contains("Connection: close\r\n"), "{head}");
        if status == "426" {
            assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
        }
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut raw.stream, &mut rest);
    }
}

#[test]
fn payload_lengths_0_125_126_127_and_64_bit() {
    let srv = EchoServer::with_config(Config::new().max_frame_size(1 << 20));
    let mut raw = Raw::open(srv.addr());
    for len in [0usize, 125, 126, 127, 0xFFFF, 0x1_0000, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        raw.frame(0x82, &payload);
        let (b0, back) = raw.read_frame().unwrap();
        assert_eq!(b0, 0x82);
        assert!(back == payload, "echo of {len} bytes differs");
    }
}

#[test]
fn non_minimal_length_is_a_protocol_error() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    raw.send(&[0x82, 0x80 | 126, 0, 3, 1, 2, 3, 4, 9, 9, 9]);
    raw.expect_close(1002);
}

#[test]
fn frames_byte_by_byte_and_fragments_with_control_frames_between() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    let mut stream = masked_frame(0x01, "frag".as_bytes());
    stream.extend(masked_frame(0x89, b"ping!"));
    stream.extend(masked_frame(0x00, "men".as_bytes()));
    stream.extend(masked_frame(0x8A, b""));
    stream.extend(masked_frame(0x80, "ted".as_bytes()));
    for b in &stream {
        raw.send(std::slice::from_ref(b));
    }
    assert_eq!(
        raw.read_frame(),
        Some((0x8A, b"ping!".to_vec())),
        "pong first"
    );
    assert_eq!(raw.read_frame(), Some((0x81, b"fragmented".to_vec())));
}

#[test]
fn ping_payload_limit() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x89, &[7; 125]);
    assert_eq!(raw.read_frame(), Some((0x8A, vec![7; 125])));
    raw.frame(0x89, &[7; 126]);
    raw.expect_close(1002);
    assert!(srv.closed_reason().contains("125"));
}

#[test]
fn close_codes_echoed_or_refused() {
    let srv = EchoServer::start(|s| s);
    for code in [1000u16, 1001, 1003, 1011, 3000, 4999] {
        let mut raw = Raw::open(srv.addr());
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"reason");
        raw.frame(0x88, &body);
        let (b0, payload) = raw.read_frame().expect("the echo");
        assert_eq!((b0, &payload[..2]), (0x88, &code.to_be_bytes()[..]));
        raw.expect_eof();
        loop {
            if let Seen::PeerClose { code: c, reason } = srv.next() {
                assert_eq!((c, reason.as_str()), (Some(code), "reason"));
                break;
            }
        }
    }
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
        let mut raw = Raw::open(srv.addr());
        raw.frame(0x88, &code.to_be_bytes());
        raw.expect_close(1002);
    }
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x88, b"");
    assert_eq!(
        raw.read_frame(),
        Some((0x88, vec![])),
        "empty close echoed empty"
    );
    raw.expect_eof();
}

#[test]
fn server_initiated_close_with_code_and_reason() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x81, b"close:4001");
    let (b0, payload) = raw.read_frame().unwrap();
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &4001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"asked to");
    raw.frame(0x88, &4001u16.to_be_bytes());
    raw.expect_eof();
}

#[test]
fn a_peer_that_never_answers_the_close_is_closed_after_the_timeout() {
    let srv = EchoServer::start(|s| s.close_timeout(Duration::from_millis(200)));
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x81, b"close:1000");
    assert_eq!(raw.read_frame().map(|f| f.0), Some(0x88));
    raw.expect_eof(); // without answering
}

#[test]
fn invalid_utf8_fails_fast_with_1007() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x01, "κόσμε".as_bytes());
    raw.frame(
        0x00,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
    );
    // Failed before the last fragment is sent.
    raw.expect_close(1007);
    // And a text split inside a character across fragments is fine.
    let mut raw = Raw::open(srv.addr());
    let text = "a€𝄞b".as_bytes();
    raw.frame(0x01, &text[..2]);
    raw.frame(0x00, &text[2..6]);
    raw.frame(0x80, &text[6..]);
    assert_eq!(raw.read_frame(), Some((0x81, text.to_vec())));
}

#[test]
fn limits_close_with_1009() {
    let srv = EchoServer::with_config(Config::new().max_frame_size(1000).max_message_size(1500));
    let mut raw = Raw::open(srv.addr());
    // Only the header of a too-large frame is sent: the answer comes without its payload.
    raw.send(&masked_frame(0x82, &[0; 1001])[..8]);
    raw.expect_close(1009);
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x02, &[0; 1000]);
    raw.frame(0x80, &[0; 501]);
    raw.expect_close(1009);
}

#[test]
fn reserved_bits_opcodes_and_unmasked_frames_are_protocol_errors() {
    let srv = EchoServer::start(|s| s);
    for b0 in [0xC1u8, 0xA1, 0x91, 0x83, 0x8B] {
        let mut raw = Raw::open(srv.addr());
        raw.frame(b0, b"x");
        raw.expect_close(1002);
    }
    let mut raw = Raw::open(srv.addr());
    raw.send(&[0x81, 0x02, b'h', b'i']); // unmasked
    raw.expect_close(1002);
}

#[test]
fn a_peer_vanishing_mid_frame_affects_no_one_else() {
    let srv = EchoServer::start(|s| s);
    let mut other = Raw::open(srv.addr());
    for cut in [1usize, 2, 5, 9, 300] {
        let raw = Raw::open(srv.addr());
        let frame = masked_frame(0x82, &[1; 1000]);
        let mut stream = raw.stream;
        stream.write_all(&frame[..cut]).unwrap();
        drop(stream); // FIN in the middle of the frame
        let reason = srv.closed_reason();
        assert!(
            reason.contains("peer") || reason.contains("reset"),
            "{reason}"
        );
        other.frame(0x81, b"still here");
        assert_eq!(other.read_frame(), Some((0x81, b"still here".to_vec())));
    }
    // A reset mid-frame.
    let raw = Raw::open(srv.addr());
    let sock = socket2::Socket::from(raw.stream);
    (&sock)
        .write_all(&masked_frame(0x82, &[1; 100])[..50])
        .unwrap();
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
    let _ = srv.closed_reason();
    other.frame(0x81, b"ok");
    assert_eq!(other.read_frame(), Some((0x81, b"ok".to_vec())));
}

#[test]
fn idle_ping_finds_a_silent_peer() {
    let srv = EchoServer::start(|s| s.idle_ping(Duration::from_millis(100)));
    let mut raw = Raw::open(srv.addr());
    // An answered ping keeps the connection; an unanswered one ends it.
    assert_eq!(raw.read_frame(), Some((0x89, vec![])));
    raw.frame(0x8A, b"");
    assert_eq!(raw.read_frame(), Some((0x89, vec![])));
    raw.expect_eof();
    assert!(srv.closed_reason().contains("idle"));
}

#[test]
fn a_handle_sends_from_another_thread() {
    let srv = EchoServer::start(|s| s);
    let mut raw = Raw::open(srv.addr());
    raw.frame(0x81, b"handle");
    let handle = loop {
        if let Seen::Handle(h) = srv.next() {
            break h.0;
        }
    };
    std::thread::spawn(move || {
        handle.text("from a thread").unwrap();
        handle.binary(&[1, 2, 3]).unwrap();
        handle.close(CloseCode::GOING_AWAY, "bye").unwrap();
        handle.text("after the close: dropped").unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(raw.read_frame(), Some((0x81, b"from a thread".to_vec())));
    assert_eq!(raw.read_frame(), Some((0x82, vec![1, 2, 3])));
    raw.expect_close(1001);
}

#[test]
fn the_dialer_speaks_to_an_eventide_server() {
    let srv = EchoServer::start(|s| s);
    let (tx, got) = std::sync::mpsc::channel();
    let client = eventide::Server::builder()
        .bind("127.0.0.1:0")
        .start(move |_| WsServer::new(Dialer { got: tx.clone() }))
        .unwrap();
    let request = ClientRequest::new(&srv.addr().to_string(), "/chat");
    client
        .connect(WsServer::<Dialer>::dial(
            srv.addr(),
            request,
            vec!["one", "two"],
        ))
        .unwrap();
    let next = || got.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(next(), "one");
    assert_eq!(next(), "two");
    assert_eq!(next(), "fragments");
    assert_eq!(next(), "closed: local");
    loop {
        if let Seen::PeerClose { code, reason } = srv.next() {
            assert_eq!((code, reason.as_str()), (Some(1000), "done"));
            break;
        }
    }
    // A server that refuses: the dial error says why.
    let request = ClientRequest::new(&srv.addr().to_string(), "/reject");
    client
        .connect(WsServer::<Dialer>::dial(srv.addr(), request, vec![]))
        .unwrap();
    let err = next();
    assert!(err.contains("404"), "{err}");
    client.stop();
}
