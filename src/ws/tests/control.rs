//! Control frames: the ping payload limit, close codes and the close handshake, the idle
//! check.

use super::*;

#[test]
fn ping_payload_limit_is_125() {
    let p = server(&client_frame(PING, &[b'x'; 125]));
    assert_eq!(p.events, [Ev::Ping(vec![b'x'; 125])]);
    assert_eq!(p.written(), [(PONG, vec![b'x'; 125])]);
    let p = server(&client_frame(PING, &[b'x'; 126]));
    assert_eq!(p.events, [Ev::Failed(1002)]);
    assert_eq!(p.close_sent(), Some(Some(1002)));
    let mut s = Peer::server();
    let mut tx = s.session.sender(&mut s.scratch);
    assert!(tx.ping(&mut s.out, &[0; 126]).is_err());
}

#[test]
fn close_codes_valid_invalid_reserved() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        let p = server(&client_frame(CLOSE, &body));
        assert_eq!(p.events, [Ev::Close(Some(code), "bye".into())], "{code}");
        assert_eq!(p.close_sent(), Some(Some(code)), "echo of {code}");
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let p = server(&client_frame(CLOSE, &code.to_be_bytes()));
        assert_eq!(p.events, [Ev::Failed(1002)], "{code}");
        assert_eq!(p.close_sent(), Some(Some(1002)), "{code}");
    }
    // Empty close: answered with an empty close. One byte: a protocol error. A reason that
    // is not UTF-8: 1007.
    let p = server(&client_frame(CLOSE, b""));
    assert_eq!(
        (p.events.clone(), p.close_sent()),
        (vec![Ev::Close(None, String::new())], Some(None))
    );
    assert_eq!(
        server(&client_frame(CLOSE, &[3])).events,
        [Ev::Failed(1002)]
    );
    assert_eq!(
        server(&client_frame(CLOSE, b"\x03\xe8\xff\xfe")).events,
        [Ev::Failed(1007)]
    );
}

#[test]
fn nothing_is_read_after_the_close() {
    let mut s = client_frame(CLOSE, &1000u16.to_be_bytes());
    s.extend(client_frame(TEXT, b"late"));
    s.extend(b"garbage that is not a frame");
    let p = server(&s);
    assert_eq!(p.events, [Ev::Close(Some(1000), String::new())]);
    assert!(p.session.is_finished());
}

#[test]
fn a_close_started_here_is_not_echoed() {
    let mut p = Peer::server();
    let mut tx = p.session.sender(&mut p.scratch);
    tx.close(&mut p.out, CloseCode::GOING_AWAY, "restart")
        .unwrap();
    assert!(
        tx.text(&mut p.out, "after").is_err(),
        "no data after the close frame"
    );
    assert!(tx.close(&mut p.out, CloseCode::NORMAL, "").is_err());
    // Messages still in flight from the peer are delivered, then its close.
    p.feed(&client_frame(TEXT, b"in flight"));
    p.feed(&client_frame(CLOSE, &1001u16.to_be_bytes()));
    assert_eq!(
        p.events,
        [
            Ev::Text("in flight".into()),
            Ev::Close(Some(1001), String::new())
        ]
    );
    let mut want = 1001u16.to_be_bytes().to_vec();
    want.extend_from_slice(b"restart");
    assert_eq!(p.written(), [(CLOSE, want)], "exactly one close frame");
}

#[test]
fn idle_check_pings_then_gives_up() {
    let mut p = Peer::server();
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Pinged
    );
    assert_eq!(p.written(), [(PING, vec![])]);
    p.feed(&client_frame(PONG, b""));
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Active
    );
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Pinged
    );
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Unresponsive
    );
}
