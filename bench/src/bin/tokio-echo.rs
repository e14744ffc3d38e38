//! `tokio-echo` — the idiomatic tokio echo server, the main Rust peer for eventide's echo example.
//!
//! One task per connection, a 64 KiB read buffer per task, `read` then `write_all`. With
//! `--loops 1` it runs on a `current_thread` runtime (one core, like one eventide loop);
//! otherwise on a multi-thread runtime with N workers. Follows the demo contract (see the crate
//! docs): `--addr`, `--loops`, one `listening on ADDR` line, exit 0 on SIGINT/SIGTERM.

use eventide_bench::{tokio_runtime, tokio_serve, ServerArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    let args = ServerArgs::from_env("tokio-echo", "tokio echo server (benchmark peer)");
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        fail(&e.to_string());
    }
}

async fn serve(args: ServerArgs) -> std::io::Result<()> {
    tokio_serve("tokio-echo", args.addr, |stream| {
        tokio::spawn(echo(stream));
    })
    .await
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-echo: {msg}");
    std::process::exit(1);
}
