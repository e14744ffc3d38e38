//! Interoperability with Python's `websockets` package (its synchronous client): messages of
//! every length class, fragmented messages, ping, close codes both ways, subprotocols, and
//! permessage-deflate when the feature is on. Under `CI=true` a missing package fails.

#![cfg(feature = "ws")]

mod ws_support;

use std::process::Command;

use eventide::ws::Config;
#[cfg(feature = "ws-deflate")]
use eventide::ws::DeflateConfig;
use ws_support::*;

/// The client script: prints one line per check, `ok NAME` or `FAIL NAME detail`.
const CLIENT: &str = r#"
import sys
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

url, compression = sys.argv[1], sys.argv[2]
def check(name, ok, detail=""):
    print(("ok " if ok else "FAIL ") + name + ("" if ok else " " + repr(detail)), flush=True)

with connect(url, compression=None if compression == "none" else "deflate",
             subprotocols=["chat.v1"], max_size=8 << 20, open_timeout=30, close_timeout=30) as ws:
    names = [e.name for e in ws.protocol.extensions]
    check("extensions", names == ([] if compression == "none" else ["permessage-deflate"]), names)
    check("subprotocol", ws.subprotocol == "chat.v1", ws.subprotocol)
    for msg in ["", "hello", "ünïcödé ✓ 𝄞", "x" * 125, "x" * 126, "y" * 65536, "z" * (3 << 20)]:
        ws.send(msg)
        back = ws.recv(timeout=30)
        check("text %d" % len(msg), back == msg, len(back))
    for msg in [b"", b"\x00\xff", bytes(range(256)) * 300]:
        ws.send(msg)
        back = ws.recv(timeout=30)
        check("binary %d" % len(msg), back == msg, len(back))
    ws.send(["frag", "men", "ted ✓"])
    check("fragmented text", ws.recv(timeout=30) == "fragmented ✓")
    ws.send([b"ab", b"cd", b""])
    check("fragmented binary", ws.recv(timeout=30) == b"abcd")
    check("ping", ws.ping(b"hi").wait(30))
    ws.close(1000, "bye")
    check("close echo", ws.close_code == 1000, ws.close_code)

with connect(url, compression=None if compression == "none" else "deflate", open_timeout=30) as ws:
    ws.send("close:4001")
    try:
        ws.recv(timeout=30)
        check("server close", False, "no close")
    except ConnectionClosed as e:
        check("server close", e.rcvd is not None and e.rcvd.code == 4001 and e.rcvd.reason == "asked to", e.rcvd)
"#;

fn run_client(addr: std::net::SocketAddr, compression: &str, test: &str) -> Option<String> {
    let python = python_with_websockets(test)?;
    let out = Command::new(python)
        .args(["-c", CLIENT, &format!("ws://{addr}/chat"), compression])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}

fn assert_all_ok(stdout: &str, expected: usize) {
    let lines: Vec<&str> = stdout.lines().collect();
    for l in &lines {
        assert!(l.starts_with("ok "), "{l}\n(all: {stdout})");
    }
    assert_eq!(lines.len(), expected, "checks run:\n{stdout}");
}

fn config() -> Config {
    Config::new()
        .max_message_size(8 << 20)
        .max_frame_size(8 << 20)
}

#[test]
fn python_websockets_client() {
    // The client offers permessage-deflate; without it configured the server declines.
    let srv = EchoServer::start(|s| s.config(config()).protocols(["chat.v1"]));
    if let Some(out) = run_client(srv.addr(), "none", "python_websockets_client") {
        assert_all_ok(&out, 17);
    }
}

#[cfg(feature = "ws-deflate")]
#[test]
fn python_websockets_client_with_permessage_deflate() {
    let srv = EchoServer::start(|s| {
        s.config(config().deflate(DeflateConfig::new()))
            .protocols(["chat.v1"])
    });
    let Some(out) = run_client(
        srv.addr(),
        "deflate",
        "python_websockets_client_with_permessage_deflate",
    ) else {
        return;
    };
    assert_all_ok(&out, 17);
    // The 3 MiB of repeated text crossed the wire compressed, both ways.
    let stats = srv.server.stats().total();
    assert!(
        stats.bytes_in < 1 << 20,
        "received {} bytes",
        stats.bytes_in
    );
    assert!(stats.bytes_out < 1 << 20, "sent {} bytes", stats.bytes_out);
}
