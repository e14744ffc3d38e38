//! `tokio-echo-lean` — a memory-careful tokio echo server: the best a tokio user can do for
//! idle connections, beside the idiomatic `tokio-echo`.
//!
//! One task per connection, but no buffer per task: the task waits for readability and reads
//! into one buffer shared by every task of the thread, borrowed only inside a single poll (never
//! across an await), writes the bytes straight back in the same poll, and keeps only what the
//! socket refused (allocated then, freed once written). An idle connection costs its task, its
//! `TcpStream` registration and nothing else.
//!
//! The read goes through `AsyncRead::poll_read` rather than `readable().await` + `try_read`:
//! tokio clears the readiness after a short `poll_read` (the socket is drained), while `try_read`
//! clears it only on `EWOULDBLOCK` — so `try_read` would cost an extra `read` returning `EAGAIN`
//! per message. The effect is the same memory pattern with the syscall count of `tokio-echo`.
//!
//! `current_thread` runtime for `--loops 1`, multi-thread otherwise (one shared buffer per worker
//! thread). Follows the demo contract (see the crate docs).

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;

use eventide_bench::{tokio_runtime, tokio_serve, ServerArgs};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The read buffer shared by the tasks of one thread.
const SHARED_BUF: usize = 64 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SHARED_BUF]);
}

fn main() {
    let args = ServerArgs::from_env(
        "tokio-echo-lean",
        "memory-careful tokio echo server (benchmark peer)",
    );
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        fail(&e.to_string());
    }
}

async fn serve(args: ServerArgs) -> io::Result<()> {
    tokio_serve("tokio-echo-lean", args.addr, |stream| {
        tokio::spawn(echo(stream));
    })
    .await
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // What the socket refused; empty and unallocated in the common case.
    let mut refused: Vec<u8> = Vec::new();
    loop {
        match poll_fn(|cx| {
            BUF.with_borrow_mut(|buf| {
                let mut rb = ReadBuf::new(buf);
                match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let data = rb.filled();
                if data.is_empty() {
                    return Poll::Ready(Ok(false)); // end of stream
                }
                let mut off = 0;
                while off < data.len() {
                    match Pin::new(&mut stream).poll_write(cx, &data[off..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                        }
                        Poll::Ready(Ok(n)) => off += n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
                refused.extend_from_slice(&data[off..]);
                Poll::Ready(Ok(true))
            })
        })
        .await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if !refused.is_empty() {
            // Back-pressure: stop reading until the remainder is out, then free it.
            if stream.write_all(&refused).await.is_err() {
                return;
            }
            refused = Vec::new();
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-echo-lean: {msg}");
    std::process::exit(1);
}
