//! Streamed HTTP responses over real sockets: a body produced piece by piece as the client
//! reads — 1 GiB through the `api` demo, length-delimited and chunked, byte-exact, with the
//! server's peak memory under 32 MiB — answers pipelined behind a stream keep their order, and
//! a stream that breaks its length ends the connection instead of corrupting the next answer.

#![cfg(feature = "http")]

mod demo_util;
mod proto_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use demo_util::Demo;
use eventide::http::{HttpServer, Request, Response};
use eventide::Server;
use proto_util::{check_pattern, connect, status_kb, tool, ResponseReader};

const GIB: u64 = 1 << 30;
/// The most the demo may have resident at any time while it streams 1 GiB.
const RSS_BOUND_KB: u64 = 32 * 1024;

/// 1 GiB with `Content-Length` over a raw socket, then 1 GiB chunked through `curl` (which
/// decodes the chunks): both byte-exact, and the demo never held more than 32 MiB.
#[test]
fn a_gib_streams_through_the_api_demo_in_little_memory() {
    let Some(curl) = tool(
        "curl",
        "a_gib_streams_through_the_api_demo_in_little_memory",
    ) else {
        return;
    };
    let Some(api) = Demo::start("api", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let addr = api.tcp();

    let mut s = connect(addr);
    s.write_all(format!("GET /download?bytes={GIB} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(r.read_line(&mut head).unwrap() > 0, "head: {head:?}");
    }
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {GIB}\r\n")),
        "{head}"
    );
    check_pattern(&mut r, GIB);

    let mut child = Command::new(curl)
        .args(["-sS", "--fail", "--max-time", "300", "-D", "/dev/stderr"])
        .arg(format!("http://{addr}/download?bytes={GIB}&chunked"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
    check_pattern(&mut out, GIB);
    let mut extra = Vec::new();
    out.read_to_end(&mut extra).unwrap();
    assert!(extra.is_empty(), "{} bytes after the body", extra.len());
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let heads = String::from_utf8_lossy(&done.stderr).to_lowercase();
    assert!(heads.contains("transfer-encoding: chunked"), "{heads}");

    let peak = status_kb(api.pid(), "VmHWM:");
    api.stop("-TERM");
    assert!(
        peak < RSS_BOUND_KB,
        "the demo's peak RSS was {peak} KiB streaming 2 GiB"
    );
}

type Svc = fn(&Request<'_>, &mut Response<'_>);

/// `/big`: 3 MiB of `b` in 64 KiB pieces; `/liar`: announces 100 bytes, gives 10; else `ok`.
fn routes(req: &Request<'_>, res: &mut Response<'_>) {
    match req.path() {
        "/big" => {
            let mut left = 3u64 << 20;
            res.stream(Some(left), move |buf: &mut Vec<u8>| {
                let n = left.min(64 * 1024);
                buf.resize(n as usize, b'b');
                left -= n;
                Ok(left > 0)
            });
        }
        "/liar" => res.stream(Some(100), |buf: &mut Vec<u8>| {
            buf.extend_from_slice(b"0123456789");
            Ok(false)
        }),
        _ => {
            res.body(b"ok");
        }
    }
}

fn serve() -> Server {
    Server::builder()
        .bind("127.0.0.1:0")
        .start(|_| HttpServer::new(routes as Svc))
        .expect("start the server")
}

/// Requests pipelined behind a streamed response are answered after it, in order; `HEAD`
/// gets the head alone.
#[test]
fn answers_behind_a_stream_keep_their_order() {
    let server = serve();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\nHEAD /big HTTP/1.1\r\nHost: t\r\n\r\nGET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n");
    let big = c.next().unwrap();
    assert_eq!((big.status, big.body.len()), (200, 3 << 20));
    assert!(big.body.iter().all(|&b| b == b'b'));
    assert_eq!(c.next().unwrap().body, b"ok");
    let head = c.next_head();
    assert_eq!(head.header("Content-Length"), Some("3145728"));
    assert_eq!(c.next().unwrap().body.len(), 3 << 20);
    assert_eq!(c.next().unwrap().body, b"ok");
    server.stop();
}

/// A stream that gives fewer bytes than it announced ends the connection after them: the
/// client sees a short body and the close, never the next response in its place.
#[test]
fn a_stream_that_breaks_its_length_closes_the_connection() {
    let server = serve();
    let mut s = connect(server.local_addr());
    s.write_all(b"GET /liar HTTP/1.1\r\nHost: t\r\n\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 100\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n0123456789"), "{text}");
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "a second response after a broken one: {text}"
    );
    server.stop();
}
