//! `hyper-http` — a hyper 1.x HTTP/1.1 server, the "production framework" peer for eventide's
//! HTTP example.
//!
//! Serves `GET /plaintext` → `Hello, World!` (`text/plain`) and `GET /json` →
//! `{"message":"Hello, World!"}` (`application/json`, serialised per request with serde_json),
//! 404 otherwise, TechEmpower style. Headers: `Server: eventide` (so every HTTP peer sends the
//! same bytes), `Content-Type`, `Content-Length` (from the body) and `Date` (hyper's own cache,
//! refreshed once per second), and `pipeline_flush` so pipelined responses go out in one write.
//! Header names go out as hyper writes them (lower case): the same length as the other peers'
//! `Server:`/`Content-Type:`, so the bytes on the wire are as many, and no per-response
//! title-casing (`title_case_headers`) that an expert would not turn on. One connection task per socket
//! via hyper-util's `TokioIo`; `current_thread` runtime for `--loops 1`.
//! Follows the demo contract (see the crate docs).

use std::convert::Infallible;

use bytes::Bytes;
use eventide_bench::{tokio_runtime, tokio_serve, ServerArgs};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

fn main() {
    let args = ServerArgs::from_env("hyper-http", "hyper HTTP/1.1 server (benchmark peer)");
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        fail(&e.to_string());
    }
}

async fn serve(args: ServerArgs) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.pipeline_flush(true);
    tokio_serve("hyper-http", args.addr, |stream| {
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handle));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    })
    .await
}

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/plaintext") => (
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"Hello, World!"),
        ),
        (&Method::GET, "/json") => {
            let body = serde_json::to_vec(&Message {
                message: "Hello, World!",
            })
            .expect("serialising a static struct cannot fail");
            (StatusCode::OK, "application/json", Bytes::from(body))
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"Not Found"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(SERVER, HeaderValue::from_static("eventide"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

fn fail(msg: &str) -> ! {
    eprintln!("hyper-http: {msg}");
    std::process::exit(1);
}
