//! Interoperability with the `tungstenite` crate, both ways: its client against the eventide
//! server, and eventide's dialer against its server.

#![cfg(feature = "ws")]

mod ws_support;

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use tungstenite::protocol::frame::coding::CloseCode as TCode;
use tungstenite::protocol::CloseFrame as TFrame;
use tungstenite::{Message as TMsg, WebSocket};

use eventide::ws::{ClientRequest, Config, WsServer};
use ws_support::*;

fn client(srv: &EchoServer, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(srv.addr()).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let url = format!("ws://{}{path}", srv.addr());
    let (ws, response) = tungstenite::client(url, stream).expect("tungstenite handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

#[test]
fn tungstenite_client_round_trips_messages_of_every_length_class() {
    let srv = EchoServer::with_config(
        Config::new()
            .max_message_size(4 << 20)
            .max_frame_size(4 << 20),
    );
    let mut ws = client(&srv, "/echo");
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 3 << 20] {
        let text: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        ws.send(TMsg::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), TMsg::text(text), "text of {len}");
        let bin: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
        ws.send(TMsg::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), TMsg::binary(bin), "binary of {len}");
    }
    ws.send(TMsg::text("ünïcödé ✓ 𝄞")).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::text("ünïcödé ✓ 𝄞"));
}

#[test]
fn tungstenite_ping_gets_its_pong() {
    let srv = EchoServer::start(|s| s);
    let mut ws = client(&srv, "/");
    ws.send(TMsg::Ping(b"are you there".to_vec().into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        TMsg::Pong(b"are you there".to_vec().into())
    );
}

#[test]
fn tungstenite_client_close_with_code_and_reason() {
    let srv = EchoServer::start(|s| s);
    let mut ws = client(&srv, "/");
    ws.close(Some(TFrame {
        code: TCode::Away,
        reason: "navigating away".into(),
    }))
    .unwrap();
    // The echo of the close, then the server closes the TCP connection.
    match ws.read() {
        Ok(TMsg::Close(Some(f))) => assert_eq!(f.code, TCode::Away),
        other => panic!("expected the close echo, got {other:?}"),
    }
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    loop {
        if let Seen::PeerClose { code, reason } = srv.next() {
            assert_eq!((code, reason.as_str()), (Some(1001), "navigating away"));
            break;
        }
    }
}

#[test]
fn server_close_with_code_and_reason_reaches_tungstenite() {
    let srv = EchoServer::start(|s| s);
    let mut ws = client(&srv, "/");
    ws.send(TMsg::text("close:4001")).unwrap();
    match ws.read() {
        Ok(TMsg::Close(Some(f))) => {
            assert_eq!(u16::from(f.code), 4001);
            assert_eq!(f.reason.as_str(), "asked to");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // tungstenite answered the close; the server ends the connection.
    loop {
        match ws.read() {
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break
            }
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let reason = srv.closed_reason();
    assert!(reason.contains("local"), "{reason}");
}

#[test]
fn tungstenite_subprotocol_and_refusal() {
    let srv = EchoServer::start(|s| s.protocols(["v2", "v1"]));
    let stream = TcpStream::connect(srv.addr()).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/",
        srv.addr()
    ))
    .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v1, v2".parse().unwrap());
    let (_ws, res) = tungstenite::client(req, stream).unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "v2");
    let stream = TcpStream::connect(srv.addr()).unwrap();
    match tungstenite::client(format!("ws://{}/reject", srv.addr()), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(res))) => {
            assert_eq!(res.status().as_u16(), 404)
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[test]
fn eventide_dialer_against_a_tungstenite_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut ws = tungstenite::accept(stream).expect("tungstenite accepts the handshake");
        loop {
            match ws.read() {
                Ok(msg @ (TMsg::Text(_) | TMsg::Binary(_))) => {
                    seen_tx.send(format!("{msg}")).unwrap();
                    ws.send(msg).unwrap();
                }
                Ok(TMsg::Close(frame)) => {
                    seen_tx.send(format!("close {frame:?}")).unwrap();
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => {
                    seen_tx.send(format!("error {e}")).unwrap();
                    break;
                }
            }
        }
    });
    let (tx, got) = mpsc::channel();
    let client = eventide::Server::builder()
        .bind("127.0.0.1:0")
        .start(move |_| WsServer::new(Dialer { got: tx.clone() }))
        .unwrap();
    let request = ClientRequest::new(&addr.to_string(), "/");
    client
        .connect(WsServer::<Dialer>::dial(
            addr,
            request,
            vec!["hello", "world"],
        ))
        .unwrap();
    let next = || got.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(next(), "hello");
    assert_eq!(next(), "world");
    assert_eq!(next(), "fragments");
    assert_eq!(next(), "closed: local");
    server.join().unwrap();
    let seen: Vec<String> = seen.try_iter().collect();
    assert_eq!(seen[..3], ["hello", "world", "fragments"]);
    assert!(
        seen[3].contains("Normal") && seen[3].contains("done"),
        "{seen:?}"
    );
    client.stop();
}
