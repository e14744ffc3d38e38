//! The demo contract, checked on the demo binaries themselves (cargo builds the examples
//! before running tests): `--addr 127.0.0.1:0 --loops N`, exactly one `listening on ADDR`
//! line on stdout, serving, and a graceful stop with exit status 0 on SIGTERM and SIGINT.

mod demo_util;
mod util;
#[cfg(feature = "ws")]
mod ws_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};

use demo_util::example;
use util::TIMEOUT;

struct Demo {
    child: Child,
    addr: String,
    out: BufReader<std::process::ChildStdout>,
}

/// Starts a demo and reads its `listening on` line; `None` (with a printed reason) when the
/// binary is not built in this configuration (a failure under `CI=true`).
fn start(name: &str, args: &[&str]) -> Option<Demo> {
    let bin = example(name)?;
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // A demo that hangs must fail the test, not hang CI.
    std::thread::spawn(move || {
        std::thread::sleep(TIMEOUT * 2);
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{name}: first line was {line:?}"))
        .trim_end()
        .to_string();
    Some(Demo { child, addr, out })
}

impl Demo {
    fn tcp(&self) -> SocketAddr {
        self.addr.parse().unwrap()
    }

    /// Sends `signal`, then checks the exit status and that nothing more was printed.
    fn stop(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status after {signal}: {status}");
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        assert!(
            rest.is_empty(),
            "more output after the listening line: {rest:?}"
        );
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn echo_demo_keeps_the_contract() {
    let Some(demo) = start("echo", &["--addr", "127.0.0.1:0", "--loops", "2"]) else {
        return;
    };
    let mut s = connect(demo.tcp());
    s.write_all(b"contract").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"contract");
    drop(s);
    demo.stop("-TERM");
}

#[test]
fn echo_demo_udp_and_unix_modes() {
    if let Some(demo) = start("echo", &["--udp", "--addr", "127.0.0.1:0", "--loops", "1"]) {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(TIMEOUT)).unwrap();
        u.send_to(b"dgram", demo.tcp()).unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = u.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"dgram");
        demo.stop("-INT");
    }
    let path = std::env::temp_dir().join(format!("eventide-demo-{}.sock", std::process::id()));
    let p = path.to_str().unwrap();
    if let Some(demo) = start("echo", &["--unix", p, "--loops", "1"]) {
        assert_eq!(demo.addr, format!("unix:{p}"));
        let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
        s.write_all(b"unix").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"unix");
        drop(s);
        demo.stop("-TERM");
        assert!(!path.exists(), "the socket file is removed on a clean stop");
    }
}

#[test]
fn http_demo_keeps_the_contract() {
    let Some(demo) = start("http", &["--addr", "127.0.0.1:0", "--loops", "2"]) else {
        return;
    };
    let mut s = connect(demo.tcp());
    s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nHello, World!"), "{resp}");
    demo.stop("-TERM");
}

#[test]
fn redis_demo_keeps_the_contract() {
    let Some(demo) = start("redis", &["--addr", "127.0.0.1:0", "--loops", "2"]) else {
        return;
    };
    let mut s = connect(demo.tcp());
    s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut back = [0u8; 7];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"+PONG\r\n");
    drop(s);
    demo.stop("-INT");
}

#[cfg(feature = "ws")]
#[test]
fn ws_echo_demo_keeps_the_contract() {
    let Some(demo) = start("ws_echo", &["--addr", "127.0.0.1:0", "--loops", "2"]) else {
        return;
    };
    let mut ws = ws_support::Raw::open(demo.tcp());
    ws.frame(0x81, "contract ✓".as_bytes());
    let (b0, payload) = ws.read_frame().expect("the echo");
    assert_eq!((b0, payload.as_slice()), (0x81, "contract ✓".as_bytes()));
    drop(ws);
    demo.stop("-INT");
}

#[cfg(feature = "ws")]
#[test]
fn chat_demo_keeps_the_contract() {
    // With a lines listener too, stdout still has the one line, for `--addr`.
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--loops",
        "2",
        "--lines",
        "127.0.0.1:0",
    ];
    let Some(demo) = start("chat", &args) else {
        return;
    };
    let mut ws = ws_support::Raw::open(demo.tcp());
    let (b0, welcome) = ws.read_frame().expect("the welcome");
    assert_eq!(b0, 0x81);
    assert!(welcome.starts_with(b"* welcome guest"), "{welcome:?}");
    ws.frame(0x81, b"/nick contract");
    let (_, payload) = ws.read_frame().expect("the answer");
    assert_eq!(payload, b"* you are contract");
    drop(ws);
    demo.stop("-INT");
}

#[test]
fn blocking_demo_keeps_the_contract() {
    let args = ["--addr", "127.0.0.1:0", "--loops", "1", "--workers", "2"];
    let Some(demo) = start("blocking", &args) else {
        return;
    };
    let mut s = connect(demo.tcp());
    s.write_all(b"one\ntwo\n").unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.contains("ONE") && second.contains("TWO"),
        "{first:?} {second:?}"
    );
    drop(s);
    demo.stop("-TERM");
}

#[test]
fn proxy_demo_keeps_the_contract() {
    let Some(echo) = start("echo", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let backend = echo.addr.clone();
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--loops",
        "2",
        "--backend",
        backend.as_str(),
    ];
    let Some(proxy) = start("proxy", &args) else {
        return;
    };
    let mut s = connect(proxy.tcp());
    s.write_all(b"through the proxy").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"through the proxy");
    proxy.stop("-TERM");
    echo.stop("-TERM");
}

#[test]
fn gateway_demo_keeps_the_contract() {
    let Some(http) = start("http", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let upstream = http.addr.clone();
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--loops",
        "2",
        "--upstream",
        upstream.as_str(),
    ];
    let Some(gateway) = start("gateway", &args) else {
        return;
    };
    let mut s = connect(gateway.tcp());
    s.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nHello, World!"), "{resp}");
    gateway.stop("-INT");
    http.stop("-TERM");
}

/// Runs a demo that must refuse its command line: exit status 2, the usage line, and the
/// message naming what was wrong (`needle`), all on stderr; nothing on stdout.
fn refuses(name: &str, args: &[&str], needle: &str) {
    let Some(bin) = example(name) else {
        return;
    };
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
    assert!(stderr.contains(needle), "{name} {args:?}: {stderr}");
    assert!(stderr.contains("usage: "), "{name} {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{name} {args:?} printed on stdout");
}

#[test]
fn bad_command_lines_get_the_usage_and_exit_2() {
    refuses("proxy", &["--addr", "127.0.0.1:0"], "--backend is required");
    refuses(
        "proxy",
        &["--addr", "127.0.0.1:0", "--backend", "nowhere"],
        "\"nowhere\"",
    );
    refuses("http", &["--addr", "nonsense"], "\"nonsense\"");
    refuses(
        "gateway",
        &["--addr", "127.0.0.1:0"],
        "--upstream is required",
    );
    refuses(
        "gateway",
        &["--addr", "127.0.0.1:0", "--upstream", "nowhere"],
        "nowhere",
    );
    refuses(
        "echo",
        &["--addr", "127.0.0.1:99999"],
        "\"127.0.0.1:99999\"",
    );
    refuses("redis", &["--loops", "zero"], "\"zero\"");
    refuses("blocking", &["--bogus"], "--bogus");
    #[cfg(feature = "ws")]
    refuses("ws_echo", &["--max-message", "0"], "--max-message");
    #[cfg(feature = "ws")]
    refuses("chat", &["--lines", "nowhere"], "\"nowhere\"");
    #[cfg(feature = "ws")]
    refuses("chat", &["--idle-timeout", "soon"], "\"soon\"");
}
