//! Helpers for the protocol tests (HTTP and RESP): blocking clients with bounded timeouts, an
//! HTTP/1.1 response reader for raw sockets, the demos' pattern (sent, fed to `curl`, checked)
//! and the digest of the `api` demo's uploads, a process's memory from `/proc`, and finding
//! the tools they drive (a missing one fails the test under `CI=true`).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[path = "../../examples/api/hash.rs"]
pub mod hash;

use hash::WordHash;

/// Generous bound for any single wait, so a bug fails a test instead of hanging CI.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A test server on `listener`: every connection it accepts is served by `serve` on a thread
/// of its own, with a sender to the returned channel (for what the test wants to know).
pub fn serve_each<T: Send + 'static>(
    listener: std::net::TcpListener,
    serve: impl Fn(TcpStream, std::sync::mpsc::Sender<T>) + Send + Copy + 'static,
) -> std::sync::mpsc::Receiver<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve(stream, tx));
        }
    });
    rx
}

/// A blocking client with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The path of the program `name`, searched on `PATH`. When it is missing, the test `test`
/// fails under `CI=true` (CI installs every tool the tests use, and a test that did not run
/// must not pass) and is skipped elsewhere, saying why.
pub fn tool(name: &str, test: &str) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    });
    if let Some(p) = found {
        return Some(p.to_string_lossy().into_owned());
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test}: `{name}` is not installed, and under CI=true a test must not skip"
    );
    println!("SKIPPED {test}: `{name}` is not installed");
    eprintln!("SKIPPED {test}: `{name}` is not installed");
    None
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The TechEmpower paths of the http demo's service: (path, body, content type).
pub const TFB_ROUTES: [(&str, &str, &str); 2] = [
    ("/plaintext", "Hello, World!", "text/plain"),
    (
        "/json",
        r#"{"message":"Hello, World!"}"#,
        "application/json",
    ),
];

/// Asserts that `curl -sS -D -` succeeded and printed a 200 response from eventide with
/// `content_type` and exactly `body`.
pub fn assert_curl_got(out: &std::process::Output, body: &str, content_type: &str) {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains(&format!("Content-Type: {content_type}\r\n")),
        "{text}"
    );
    assert!(text.contains("Server: eventide\r\n"), "{text}");
    assert!(text.ends_with(&format!("\r\n\r\n{body}")), "{text}");
}

/// One HTTP response as read from a raw socket.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// `(name, value)` in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (ignoring case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Header names, in order.
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// Reads HTTP/1.1 responses (framed by `Content-Length`, or chunked) from a stream.
pub struct ResponseReader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl ResponseReader {
    pub fn new(stream: TcpStream) -> ResponseReader {
        ResponseReader {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next response; `None` at end of stream (or a reset) with nothing buffered.
    pub fn next(&mut self) -> Option<HttpResponse> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).expect("head is UTF-8");
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap();
                assert!(
                    status_line.starts_with("HTTP/1.1 "),
                    "status line {status_line:?}"
                );
                let status: u16 = status_line[9..12].parse().unwrap();
                let headers: Vec<(String, String)> = lines
                    .map(|l| {
                        let (n, v) = l.split_once(": ").unwrap_or_else(|| panic!("header {l:?}"));
                        (n.to_string(), v.to_string())
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let has_body = !(status < 200 || status == 204 || status == 304);
                let chunked = headers.iter().any(|(n, v)| {
                    n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                });
                if has_body && chunked {
                    self.buf.drain(..end + 4);
                    let body = self.dechunk();
                    return Some(HttpResponse {
                        status,
                        headers,
                        body,
                    });
                }
                let len = if has_body { len } else { 0 };
                while self.buf.len() < end + 4 + len {
                    match self.fill() {
                        Ok(0) | Err(_) => panic!("connection ended inside a response"),
                        Ok(_) => {}
                    }
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Some(HttpResponse {
                    status,
                    headers,
                    body,
                });
            }
            match self.fill() {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "partial response at end of stream");
                    return None;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next response as its status and UTF-8 body; the connection must not end first.
    pub fn next_text(&mut self) -> (u16, String) {
        let r = self
            .next()
            .expect("a response, not the end of the connection");
        (r.status, String::from_utf8(r.body).expect("a text body"))
    }

    /// A chunked body at the front of the buffer, decoded (trailers dropped).
    fn dechunk(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                match find(&self.buf, b"\r\n") {
                    Some(e) => break e,
                    None => assert!(self.fill().unwrap_or(0) > 0, "ended in a chunk size"),
                }
            };
            let line = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("chunk size {line:?}"));
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer lines, then the empty line.
                loop {
                    while find(&self.buf, b"\r\n").is_none() {
                        assert!(self.fill().unwrap_or(0) > 0, "ended in the trailers");
                    }
                    let e = find(&self.buf, b"\r\n").unwrap();
                    self.buf.drain(..e + 2);
                    if e == 0 {
                        return body;
                    }
                }
            }
            while self.buf.len() < size + 2 {
                assert!(self.fill().unwrap_or(0) > 0, "ended inside a chunk");
            }
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(
                &self.buf[size..size + 2],
                b"\r\n",
                "chunk data without its CRLF"
            );
            self.buf.drain(..size + 2);
        }
    }

    /// The next response for a HEAD request (no body whatever `Content-Length` says).
    pub fn next_head(&mut self) -> HttpResponse {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
                let headers = lines
                    .map(|l| {
                        let (n, v) = l.split_once(": ").unwrap();
                        (n.to_string(), v.to_string())
                    })
                    .collect();
                return HttpResponse {
                    status,
                    headers,
                    body: Vec::new(),
                };
            }
            assert!(self.fill().unwrap() > 0, "end of stream before a head");
        }
    }

    /// Asserts the server closes the connection with nothing more to read.
    pub fn expect_closed(&mut self) {
        match self.next() {
            None => {}
            Some(r) => panic!("expected the connection to close, got {r:?}"),
        }
    }

    /// Bytes received but not yet returned as a response.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads `len` bytes from `r` and checks them against the demos' download pattern (byte `i`
/// is `i % 251`), a memcmp per block.
pub fn check_pattern(r: &mut impl BufRead, len: u64) {
    let mut p = Pattern::new();
    while p.at < len {
        let buf = r.fill_buf().unwrap();
        assert!(!buf.is_empty(), "the body ended at {} of {len} bytes", p.at);
        let want = p.peek((buf.len() as u64).min(len - p.at));
        let n = want.len();
        assert!(buf[..n] == *want, "the body differs near byte {}", p.at);
        r.consume(n);
        p.advance(n);
    }
}

/// The demos' pattern (byte `i` is `i % 251`), produced a block at a time.
pub struct Pattern {
    block: Vec<u8>,
    /// How much of it was taken.
    pub at: u64,
}

impl Pattern {
    pub fn new() -> Pattern {
        Pattern {
            block: (0..(1 << 20) + 251).map(|i| (i % 251) as u8).collect(),
            at: 0,
        }
    }

    /// The next `n` bytes at most (1 MiB), not advancing.
    pub fn peek(&self, n: u64) -> &[u8] {
        let from = (self.at % 251) as usize;
        &self.block[from..from + n.min(1 << 20) as usize]
    }

    pub fn advance(&mut self, n: usize) {
        self.at += n as u64;
    }
}

/// Writes `len` bytes of the pattern to `w`, returning their digest (the `api` demo's
/// `POST /upload` answers the same digest of what it received, see [`upload_answer`]).
pub fn send_pattern(w: &mut impl Write, len: u64) -> io::Result<u64> {
    let mut p = Pattern::new();
    let mut h = WordHash::default();
    while p.at < len {
        let piece = p.peek(len - p.at);
        w.write_all(piece)?;
        h.update(piece);
        let n = piece.len();
        p.advance(n);
    }
    Ok(h.finish())
}

/// Runs `curl` with `len` bytes of the pattern on its stdin; returns its output and what
/// feeding it gave (the pattern's digest, or the error if curl stopped reading).
pub fn curl_fed(mut curl: Command, len: u64) -> (Output, io::Result<u64>) {
    let mut child = curl
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl starts");
    let mut stdin = child.stdin.take().expect("curl's stdin");
    let feeder = std::thread::spawn(move || send_pattern(&mut stdin, len));
    let done = child.wait_with_output().expect("curl's output");
    (done, feeder.join().expect("the feeder thread"))
}

/// The `(bytes, hash64)` of the `api` demo's answer to `POST /upload`.
pub fn upload_answer(json: &[u8]) -> (u64, String) {
    let v: serde_json::Value = serde_json::from_slice(json)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(json)));
    let bytes = v["bytes"].as_u64().expect("bytes");
    (bytes, v["hash64"].as_str().expect("hash64").to_string())
}

/// A memory figure of process `pid` in KiB, from `/proc/PID/status`: `VmHWM:` (the peak
/// resident set) or `VmRSS:` (the current one).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}
