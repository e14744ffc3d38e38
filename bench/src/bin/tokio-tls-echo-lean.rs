//! `tokio-tls-echo-lean` — a memory-careful tokio + tokio-rustls echo server, beside the
//! idiomatic `tokio-tls-echo`: what a tokio user can do for idle TLS connections.
//!
//! As `tokio-echo-lean` does for plaintext: no read buffer per task. The task reads plaintext
//! (`poll_read`, which decrypts what arrived) into one buffer shared by the tasks of its thread,
//! borrowed only inside a single poll, hands it straight back to the session in the same poll
//! (`poll_write` encrypts it into rustls's outgoing buffer and writes what the socket takes) and
//! keeps only plaintext the session refused. Then `flush`, awaited only if the socket did not
//! take every record. What an idle connection still holds is the session itself (rustls's
//! state and its own buffers) and the task. Same configuration, handshake and `close_notify`
//! handling as `tokio-tls-echo`. Follows the demo contract plus `--tls-cert PEM --tls-key PEM`.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;

use eventide_bench::args::Flags;
use eventide_bench::{tls, tokio_runtime, tokio_serve, ServerArgs};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

const USAGE: &str =
    "usage: tokio-tls-echo-lean [--addr HOST:PORT] [--loops N] --tls-cert PEM --tls-key PEM";

/// The plaintext buffer shared by the tasks of one thread (a TLS record holds up to 16 KiB).
const SHARED_BUF: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SHARED_BUF]);
}

fn main() {
    let (args, cert, key) = parse().unwrap_or_else(|e| {
        eprintln!("tokio-tls-echo-lean: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let config = tls::server_config(&cert, &key).unwrap_or_else(|e| fail(&e.to_string()));
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    let acceptor = TlsAcceptor::from(config);
    let res = rt.block_on(tokio_serve("tokio-tls-echo-lean", args.addr, |stream| {
        tokio::spawn(echo(acceptor.clone(), stream));
    }));
    if let Err(e) = res {
        fail(&e.to_string());
    }
}

/// The contract's arguments plus `--tls-cert` and `--tls-key` (both required).
fn parse() -> Result<(ServerArgs, PathBuf, PathBuf), String> {
    let (mut cert, mut key, mut rest) = (None, None, Vec::new());
    let mut flags = Flags::from_env();
    while let Some(k) = flags.next_key() {
        match k.as_str() {
            "--tls-cert" => cert = Some(PathBuf::from(flags.value()?)),
            "--tls-key" => key = Some(PathBuf::from(flags.value()?)),
            "--addr" | "--loops" => {
                rest.push(k.clone());
                rest.push(flags.value()?);
            }
            _ => rest.push(flags.arg().to_string()),
        }
    }
    let Some(args) = ServerArgs::parse(rest)? else {
        println!("tokio-tls-echo-lean: memory-careful tokio + tokio-rustls echo (benchmark peer)\n\n{USAGE}");
        std::process::exit(0);
    };
    match (cert, key) {
        (Some(c), Some(k)) => Ok((args, c, k)),
        _ => Err("--tls-cert and --tls-key are required".into()),
    }
}

/// What one poll did.
enum Step {
    /// Echoed (all, or with a remainder kept); `flushed` if every record went out.
    Echoed { flushed: bool },
    /// The client ended the stream (close_notify or EOF).
    End,
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut stream) = acceptor.accept(stream).await else {
        return;
    };
    let mut refused: Vec<u8> = Vec::new();
    loop {
        match poll_fn(|cx| BUF.with_borrow_mut(|buf| step(&mut stream, cx, buf, &mut refused)))
            .await
        {
            Ok(Step::End) => {
                let _ = stream.shutdown().await; // close_notify
                return;
            }
            Ok(Step::Echoed { flushed }) => {
                let wrote_rest = !refused.is_empty();
                if wrote_rest {
                    // Back-pressure: stop reading until the remainder is out, then free it.
                    if stream.write_all(&refused).await.is_err() {
                        return;
                    }
                    refused = Vec::new();
                }
                if (!flushed || wrote_rest) && stream.flush().await.is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Reads what plaintext there is into the shared buffer and writes it back, in one poll.
fn step(
    stream: &mut TlsStream<TcpStream>,
    cx: &mut std::task::Context<'_>,
    buf: &mut [u8],
    refused: &mut Vec<u8>,
) -> Poll<io::Result<Step>> {
    let mut rb = ReadBuf::new(buf);
    match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Ready(Ok(())) => {}
    }
    let data = rb.filled();
    if data.is_empty() {
        return Poll::Ready(Ok(Step::End));
    }
    let mut off = 0;
    while off < data.len() {
        match Pin::new(&mut *stream).poll_write(cx, &data[off..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => off += n,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => break,
        }
    }
    refused.extend_from_slice(&data[off..]);
    let flushed = matches!(Pin::new(&mut *stream).poll_flush(cx), Poll::Ready(Ok(())));
    Poll::Ready(Ok(Step::Echoed { flushed }))
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-tls-echo-lean: {msg}");
    std::process::exit(1);
}
