//! The `ws_echo` demo binary driven over loopback by clients written by others — the
//! `tungstenite` crate and Python's `websockets` package (with permessage-deflate when the
//! demo is built with `ws-deflate`) — and by the raw client for its limits, its idle ping and
//! its stop. Every echo is compared byte for byte, with its type (text or binary). Under
//! `CI=true` a missing Python package fails.

#![cfg(feature = "ws")]

mod util;
mod ws_support;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Message as TMsg, WebSocket};

use util::Rng;
use ws_support::demo::{run_to_exit, Demo, BUILD_HINT};
use ws_support::{python_with_websockets, Raw, TIMEOUT};

const MIB: usize = 1 << 20;

fn demo(extra: &[&str]) -> Demo {
    let mut args = vec!["--addr", "127.0.0.1:0", "--loops", "2"];
    args.extend_from_slice(extra);
    Demo::start("ws_echo", &args)
}

fn tungstenite_client(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("tungstenite handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    Rng::new(seed).fill_stream(&mut bytes);
    bytes
}

/// 1 MiB of text with one-, two-, three- and four-byte characters.
fn mixed_text(len: usize) -> String {
    let mut text = String::with_capacity(len + 4);
    let mut rng = Rng::new(len as u64);
    while text.len() < len {
        text.push(['a', 'é', '✓', '𝄞'][rng.range(0, 3) as usize]);
    }
    text
}

/// Sends `msg` and checks that the next message is the same, byte for byte and type.
fn round_trip(ws: &mut WebSocket<TcpStream>, msg: TMsg, what: &str) {
    ws.send(msg.clone()).unwrap();
    let back = ws.read().unwrap();
    assert!(
        back == msg,
        "{what}: sent {} bytes (text: {}), got {} bytes (text: {})",
        msg.len(),
        msg.is_text(),
        back.len(),
        back.is_text()
    );
}

#[test]
fn tungstenite_messages_come_back_byte_exact() {
    let demo = demo(&[]);
    let mut ws = tungstenite_client(demo.addr(), "/any/path?q=1");
    for text in ["", "hello", "ünïcödé ✓ 𝄞"] {
        round_trip(&mut ws, TMsg::text(text), &format!("text {text:?}"));
    }
    round_trip(&mut ws, TMsg::text(mixed_text(MIB)), "1 MiB of text");
    round_trip(&mut ws, TMsg::binary(Vec::new()), "empty binary");
    let every_byte: Vec<u8> = (0..=255).collect();
    round_trip(&mut ws, TMsg::binary(every_byte), "every byte value");
    round_trip(&mut ws, TMsg::binary(random_bytes(1, MIB)), "1 MiB binary");
    demo.stop("-TERM");
}

#[test]
fn tungstenite_fragmented_messages_come_back_whole() {
    let demo = demo(&[]);
    let mut ws = tungstenite_client(demo.addr(), "/");
    // Text cut inside a character, with a ping between the fragments.
    let text = "frag·mented ✓ 𝄞".as_bytes();
    let cuts = [
        (0, 5, Data::Text),
        (5, 13, Data::Continue),
        (13, 18, Data::Continue),
    ];
    for (i, &(from, to, kind)) in cuts.iter().enumerate() {
        let frame = Frame::message(text[from..to].to_vec(), OpCode::Data(kind), false);
        ws.send(TMsg::Frame(frame)).unwrap();
        if i == 1 {
            ws.send(TMsg::Ping(b"between".to_vec().into())).unwrap();
        }
    }
    let last = Frame::message(text[18..].to_vec(), OpCode::Data(Data::Continue), true);
    ws.send(TMsg::Frame(last)).unwrap();
    assert_eq!(ws.read().unwrap(), TMsg::Pong(b"between".to_vec().into()));
    let back = ws.read().unwrap();
    assert_eq!(back, TMsg::text(std::str::from_utf8(text).unwrap()));

    // 1 MiB of binary in 16 frames of 64 KiB.
    let data = random_bytes(2, MIB);
    for (i, piece) in data.chunks(MIB / 16).enumerate() {
        let kind = if i == 0 { Data::Binary } else { Data::Continue };
        let frame = Frame::message(piece.to_vec(), OpCode::Data(kind), i == 15);
        ws.send(TMsg::Frame(frame)).unwrap();
    }
    let back = ws.read().unwrap();
    assert!(back == TMsg::binary(data), "fragmented 1 MiB binary");
    demo.stop("-TERM");
}

#[test]
fn concurrent_tungstenite_clients_each_get_their_own_bytes() {
    let demo = demo(&[]);
    let addr = demo.addr();
    let clients: Vec<_> = (0..8u64)
        .map(|c| {
            std::thread::spawn(move || {
                let mut ws = tungstenite_client(addr, &format!("/client/{c}"));
                let mut rng = Rng::new(100 + c);
                for i in 0..50 {
                    let len = rng.log_uniform(1, 64 << 10) as usize;
                    let msg = TMsg::binary(random_bytes(c * 1000 + i, len));
                    round_trip(&mut ws, msg, &format!("client {c} message {i}"));
                }
                ws.close(None).unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    demo.stop("-INT");
}

/// The Python client: prints one line per check, `ok NAME` or `FAIL NAME detail`.
const PYTHON_CLIENT: &str = r#"
import random, sys
from websockets.sync.client import connect

url, compression, extensions = sys.argv[1], sys.argv[2], sys.argv[3]
def check(name, ok, detail=""):
    print(("ok " if ok else "FAIL ") + name + ("" if ok else " " + repr(detail)[:200]), flush=True)

def echo(ws, name, msg):
    ws.send(msg)
    back = ws.recv(timeout=30)
    whole = "".join(msg) if isinstance(msg, list) and isinstance(msg[0], str) else \
            b"".join(msg) if isinstance(msg, list) else msg
    check(name, type(back) is type(whole) and back == whole, (type(back), len(back)))

rng = random.Random(7)
text = "".join(rng.choice("aé✓𝄞") for _ in range(1 << 19))
data = rng.randbytes(1 << 20)
with connect(url, compression=None if compression == "none" else "deflate",
             max_size=4 << 20, open_timeout=30, close_timeout=30) as ws:
    names = ",".join(e.name for e in ws.protocol.extensions)
    check("extensions", names == extensions, names)
    echo(ws, "text", "hello ✓ 𝄞")
    echo(ws, "empty text", "")
    echo(ws, "text 1 MiB+", text)
    echo(ws, "repetitive text 1 MiB", "x" * (1 << 20))
    echo(ws, "binary every byte", bytes(range(256)))
    echo(ws, "empty binary", b"")
    echo(ws, "binary 1 MiB", data)
    echo(ws, "fragmented text", ["frag", "mé", "nted ✓"])
    echo(ws, "fragmented binary", [b"ab", b"", b"cd"])
    echo(ws, "fragmented binary 1 MiB", [data[i:i + 65536] for i in range(0, len(data), 65536)])
    check("ping", ws.ping(b"hi").wait(30))
    ws.close(1000, "bye")
    check("close echo", ws.close_code == 1000, ws.close_code)
"#;

fn python_round_trips(compression: &str, extensions: &str, test: &str) {
    let Some(python) = python_with_websockets(test) else {
        return;
    };
    let demo = demo(&[]);
    let url = format!("ws://{}/python", demo.addr());
    let out = Command::new(python)
        .args(["-c", PYTHON_CLIENT, &url, compression, extensions])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    if lines
        .first()
        .is_some_and(|l| l.starts_with("FAIL extensions"))
    {
        panic!("{}\n({BUILD_HINT})", lines[0]);
    }
    for line in &lines {
        assert!(line.starts_with("ok "), "{line}\n(all: {stdout})");
    }
    assert_eq!(lines.len(), 13, "checks run:\n{stdout}");
    demo.stop("-TERM");
}

#[test]
fn python_websockets_messages_come_back_byte_exact() {
    python_round_trips(
        "none",
        "",
        "python_websockets_messages_come_back_byte_exact",
    );
}

#[test]
fn python_websockets_with_permessage_deflate_offered() {
    // The demo accepts the offer exactly when it is built with `ws-deflate`.
    let agreed = if cfg!(feature = "ws-deflate") {
        "permessage-deflate"
    } else {
        ""
    };
    python_round_trips(
        "deflate",
        agreed,
        "python_websockets_with_permessage_deflate_offered",
    );
}

#[test]
fn a_message_over_max_message_is_refused_with_1009() {
    let demo = demo(&["--max-message", "1024"]);
    let mut raw = Raw::open(demo.addr());
    raw.frame(0x82, &[7; 1024]);
    assert_eq!(raw.read_frame(), Some((0x82, vec![7; 1024])));
    // Refused on the header: the payload is never sent.
    raw.send(&[0x82, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4]);
    raw.expect_close(1009);
    // Other connections are unaffected.
    let mut other = Raw::open(demo.addr());
    other.frame(0x81, b"still here");
    assert_eq!(other.read_frame(), Some((0x81, b"still here".to_vec())));
    demo.stop("-TERM");
}

#[test]
fn idle_ping_keeps_answering_peers_and_closes_silent_ones() {
    let demo = demo(&["--idle-ping", "1"]);
    let mut raw = Raw::open(demo.addr());
    // Two pings answered (a ping goes out after a quiet period, and none while the pong is
    // fresh): the connection outlives three periods and still echoes.
    for _ in 0..2 {
        let (b0, payload) = raw.read_frame().expect("a ping");
        assert_eq!(b0, 0x89, "expected a ping, got {b0:02x} {payload:?}");
        raw.frame(0x8A, &payload);
    }
    raw.frame(0x81, b"alive");
    assert_eq!(raw.read_frame(), Some((0x81, b"alive".to_vec())));
    // The next ping goes unanswered: the server gives up on the connection.
    let (b0, _) = raw.read_frame().expect("a ping");
    assert_eq!(b0, 0x89);
    raw.expect_eof();
    demo.stop("-TERM");
}

#[test]
fn stop_with_connections_open_exits_0() {
    let demo = demo(&[]);
    let mut open = Raw::open(demo.addr());
    open.frame(0x81, b"before the stop");
    assert_eq!(open.read_frame(), Some((0x81, b"before the stop".to_vec())));
    // The stop says goodbye to an open session (1001, going away); the client answers at
    // once, so the demo need not wait out the close timeout.
    let client = std::thread::spawn(move || open.expect_close(1001));
    demo.stop("-TERM");
    client
        .join()
        .expect("the session got close 1001, then end of stream");
}

#[test]
fn bad_command_lines_exit_2() {
    let out = run_to_exit("ws_echo", &["--bogus"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--bogus") && stderr.contains("usage: "),
        "{stderr}"
    );
    for bad in [["--max-message", "0"], ["--idle-ping", "soon"]] {
        let out = run_to_exit("ws_echo", &bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad:?} printed on stdout");
    }
}
