//! `tokio-ws-echo` — a WebSocket echo server on tokio + tokio-tungstenite, the peer of
//! eventide's `ws_echo` demo.
//!
//! One task per connection: the upgrade (`accept_async`, any path), then every text or binary
//! message is echoed as it came. Written as an expert writes it for throughput: each message is
//! `feed`-ed into the sink (encoded into tungstenite's write buffer) and the sink is flushed
//! only when no further message is already waiting, so 16 pipelined messages cost one write,
//! not 16 (`send` would flush after each). Pings are answered by tungstenite itself; a close
//! frame is answered and ends the task. `WebSocketConfig` defaults (tungstenite's limits) but a
//! 8 KiB read buffer.
//! `current_thread` runtime for `--loops 1`. Follows the demo contract (see the crate docs).

use eventide_bench::{tokio_runtime, tokio_serve, ServerArgs};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error, Message};

fn main() {
    let args = ServerArgs::from_env(
        "tokio-ws-echo",
        "tokio + tokio-tungstenite WebSocket echo server (benchmark peer)",
    );
    let rt = tokio_runtime(args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(args)) {
        fail(&e.to_string());
    }
}

async fn serve(args: ServerArgs) -> std::io::Result<()> {
    tokio_serve("tokio-ws-echo", args.addr, |stream| {
        tokio::spawn(echo(stream));
    })
    .await
}

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // tungstenite zero-fills its read buffer to the full read size before every read attempt
    // (twice a message at depth 1: the read, then the drain that finds nothing); its 128 KiB
    // default costs more than the echo itself. 8 KiB: tokio's `BufReader` size, about a depth-16
    // batch of 512 B frames.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(msg) = ws.next().await {
        if feed(&mut ws, msg).await.is_err() {
            return;
        }
        // Echo what is already decoded or readable without waiting, then flush once.
        // (`next()` is cancellation-safe: a pending poll loses nothing.)
        while let Some(Some(msg)) = ws.next().now_or_never() {
            if feed(&mut ws, msg).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// Queues the echo of a data message; control messages are tungstenite's business.
async fn feed(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    msg: Result<Message, Error>,
) -> Result<(), Error> {
    match msg? {
        m @ (Message::Text(_) | Message::Binary(_)) => ws.feed(m).await,
        _ => Ok(()),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-ws-echo: {msg}");
    std::process::exit(1);
}
