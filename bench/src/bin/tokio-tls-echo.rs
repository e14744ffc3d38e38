//! `tokio-tls-echo` — the idiomatic tokio + tokio-rustls echo server, the peer of eventide's
//! `echo --tls-cert PEM --tls-key PEM` in the `tls-echo` scenario.
//!
//! `tokio-echo` over TLS: one task per connection, the handshake in the task
//! (`TlsAcceptor::accept`), a 64 KiB read buffer per task, `read` then `write_all` + `flush`; the
//! client's `close_notify` (end of stream) is answered with ours (`shutdown`). rustls 0.23
//! with the ring provider, configured as eventide's `server_config_from_pem` does
//! (`eventide_bench::tls::server_config`). Follows the demo contract (`--addr`, `--loops`, one
//! `listening on ADDR` line, exit 0 on SIGINT/SIGTERM) plus `--tls-cert PEM --tls-key PEM`.

use std::path::PathBuf;

use eventide_bench::{tls, tokio_runtime, tokio_serve, ServerArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

const USAGE: &str =
    "usage: tokio-tls-echo [--addr HOST:PORT] [--loops N] --tls-cert PEM --tls-key PEM";

fn main() {
    let (args, cert, key) = parse().unwrap_or_else(|e| {
        eprintln!("tokio-tls-echo: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let config = tls::server_config(&cert, &key).unwrap_or_else(|e| fail(&e.to_string()));
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args, TlsAcceptor::from(config))) {
        fail(&e.to_string());
    }
}

/// The contract's arguments plus `--tls-cert` and `--tls-key` (both required).
fn parse() -> Result<(ServerArgs, PathBuf, PathBuf), String> {
    let (mut cert, mut key, mut rest) = (None, None, Vec::new());
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--tls-cert" => &mut cert,
            "--tls-key" => &mut key,
            _ => {
                rest.push(arg);
                continue;
            }
        };
        let value = inline
            .or_else(|| it.next())
            .ok_or(format!("{name} needs a value"))?;
        *slot = Some(PathBuf::from(value));
    }
    let Some(args) = ServerArgs::parse(rest)? else {
        println!("tokio-tls-echo: tokio + tokio-rustls echo server (benchmark peer)\n\n{USAGE}");
        std::process::exit(0);
    };
    match (cert, key) {
        (Some(c), Some(k)) => Ok((args, c, k)),
        _ => Err("--tls-cert and --tls-key are required".into()),
    }
}

async fn serve(args: ServerArgs, acceptor: TlsAcceptor) -> std::io::Result<()> {
    tokio_serve("tokio-tls-echo", args.addr, |stream| {
        tokio::spawn(echo(acceptor.clone(), stream));
    })
    .await
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut stream) = acceptor.accept(stream).await else {
        return;
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => {
                let _ = stream.shutdown().await; // close_notify
                return;
            }
            Err(_) => return,
            Ok(n) => n,
        };
        // write_all may leave the last records in the session when the socket is full;
        // flush sends them.
        if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-tls-echo: {msg}");
    std::process::exit(1);
}
