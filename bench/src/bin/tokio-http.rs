//! `tokio-http` — a hand-written tokio + httparse HTTP/1.1 server: the "lean Rust" peer for
//! eventide's HTTP example.
//!
//! Per connection: read into a buffer, parse every complete request in it with httparse, append
//! all responses to one output `Vec`, and issue one `write_all` per read batch (so a pipeline of
//! 16 requests costs one read and one write). Serves `GET /plaintext` → `Hello, World!` and
//! `GET /json` → `{"message":"Hello, World!"}` (serde_json per request), 404 otherwise, with the
//! same headers as the other HTTP peers: `Server: eventide`, `Content-Type`, `Content-Length`,
//! `Date` (cached, refreshed once per second). Follows the demo contract (see the crate docs).

use eventide_bench::{date, tokio_runtime, tokio_serve, ServerArgs};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Initial read buffer; grows (up to [`MAX_REQUEST`]) only for a larger incomplete request.
const READ_BUF: usize = 16 * 1024;
/// Largest request head + body accepted; beyond that the connection gets a 431 and is closed.
const MAX_REQUEST: usize = 64 * 1024;
const MAX_HEADERS: usize = 32;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

fn main() {
    let args = ServerArgs::from_env(
        "tokio-http",
        "tokio + httparse HTTP/1.1 server (benchmark peer)",
    );
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        fail(&e.to_string());
    }
}

async fn serve(args: ServerArgs) -> std::io::Result<()> {
    tokio_serve("tokio-http", args.addr, |stream| {
        tokio::spawn(connection(stream));
    })
    .await
}

async fn connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut rbuf = vec![0u8; READ_BUF];
    let mut filled = 0;
    let mut out: Vec<u8> = Vec::new();
    let mut scratch: Vec<u8> = Vec::new();
    loop {
        if filled == rbuf.len() {
            if rbuf.len() >= MAX_REQUEST {
                let _ = stream
                    .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nServer: eventide\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
            rbuf.resize(rbuf.len() * 2, 0);
        }
        let n = match stream.read(&mut rbuf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;

        let (consumed, close) = handle_batch(&rbuf[..filled], &mut out, &mut scratch);
        rbuf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
    }
}

/// Parses every complete request in `input`, appending responses to `out`.
/// Returns the bytes consumed and whether the connection must be closed afterwards.
fn handle_batch(input: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> (usize, bool) {
    let mut pos = 0;
    while pos < input.len() {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&input[pos..]) {
            Ok(httparse::Status::Complete(head_len)) => {
                let mut body_len = 0usize;
                let mut close = false;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        match std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                        {
                            Some(v) => body_len = v,
                            None => {
                                bad_request(out);
                                return (input.len(), true);
                            }
                        }
                    } else if h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                    {
                        close = true;
                    }
                }
                if head_len + body_len > MAX_REQUEST {
                    bad_request(out);
                    return (input.len(), true);
                }
                if input.len() - pos < head_len + body_len {
                    break; // Body not complete yet.
                }
                respond(req.method, req.path, out, scratch);
                pos += head_len + body_len;
                if close {
                    return (pos, true);
                }
            }
            Ok(httparse::Status::Partial) => break,
            Err(_) => {
                bad_request(out);
                return (input.len(), true);
            }
        }
    }
    (pos, false)
}

fn respond(method: Option<&str>, path: Option<&str>, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    match (method, path) {
        (Some("GET"), Some("/plaintext")) => {
            response(out, b"200 OK", b"text/plain", b"Hello, World!");
        }
        (Some("GET"), Some("/json")) => {
            scratch.clear();
            serde_json::to_writer(
                &mut *scratch,
                &Message {
                    message: "Hello, World!",
                },
            )
            .expect("serialising a static struct into a Vec cannot fail");
            response(out, b"200 OK", b"application/json", scratch);
        }
        _ => response(out, b"404 Not Found", b"text/plain", b"Not Found"),
    }
}

fn bad_request(out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 400 Bad Request\r\nServer: eventide\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

fn response(out: &mut Vec<u8>, status: &[u8], content_type: &[u8], body: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\nServer: eventide\r\nContent-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_usize(out, body.len());
    out.extend_from_slice(b"\r\nDate: ");
    date::extend_date(out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn push_usize(out: &mut Vec<u8>, mut v: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-http: {msg}");
    std::process::exit(1);
}
