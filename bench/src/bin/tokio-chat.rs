//! `tokio-chat` — a broadcast chat on tokio with `tokio::sync::broadcast`: the peer of
//! eventide's `chat` demo in the broadcast scenarios.
//!
//! WebSocket (tokio-tungstenite) on the contract's `--addr`, any path, and plain TCP lines on
//! `--lines ADDR`. Every connection is `guest<N>` until it sends `/nick NAME`; each text
//! message (or line) it sends reaches every other connection as `NAME: TEXT`; joins and leaves
//! are announced as `* NAME joined` / `* NAME left`. A connection idle (nothing received) for
//! `--idle-timeout SECS` (default 300) is closed.
//!
//! Written as an expert would for fan-out: one `broadcast` channel (capacity 1024) of
//! `Arc`-shared events, so a message is formatted and allocated once however many receive it
//! (WebSocket text is tungstenite's `Utf8Bytes`, cloned by reference count); a connection's
//! writer drains every event already queued before one flush. A WebSocket connection is split
//! into a reader (this connection's task) and a writer task, so a broadcast wakes only the
//! writer; tungstenite's read buffer is 4 KiB, not its 128 KiB default, which it zero-fills
//! before every read attempt. The idle timer restarts only when something is received.
//! A receiver that falls more than 1024 events behind skips them (`Lagged`, counted and
//! reported on stderr at exit): the slow consumer loses messages, the others are unaffected.
//! Lines longer than 4 KiB close the connection. `current_thread` runtime for `--loops 1`.
//! Follows the demo contract (see the crate docs) plus `--lines ADDR`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventide_bench::args::Flags;
use eventide_bench::{announce, tokio_runtime, ServerArgs, Shutdown};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const USAGE: &str =
    "usage: tokio-chat [--addr HOST:PORT] [--loops N] [--lines HOST:PORT] [--idle-timeout SECS]";
const CAPACITY: usize = 1024;
const MAX_LINE: usize = 4096;

/// One chat event: who sent it (0 for notices, which everyone gets) and its text.
struct Event {
    from: u64,
    text: Utf8Bytes,
}

type Tx = broadcast::Sender<Arc<Event>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LAGGED: AtomicU64 = AtomicU64::new(0);

struct Opts {
    args: ServerArgs,
    lines: Option<SocketAddr>,
    idle: Duration,
}

fn parse() -> Result<Opts, String> {
    let (mut lines, mut idle, mut rest) = (None, Duration::from_secs(300), Vec::new());
    let mut flags = Flags::from_env();
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            "--lines" => {
                let v = flags.value()?;
                lines = Some(v.parse().map_err(|e| format!("bad --lines {v:?}: {e}"))?);
            }
            "--idle-timeout" => idle = Duration::from_secs(flags.parse()?),
            _ => {
                rest.push(flags.arg().to_string());
                if !flags.arg().contains('=') && matches!(key.as_str(), "--addr" | "--loops") {
                    rest.push(flags.value()?);
                }
            }
        }
    }
    let Some(args) = ServerArgs::parse(rest)? else {
        println!(
            "tokio-chat: tokio broadcast chat, WebSocket and TCP lines (benchmark peer)\n\n{USAGE}"
        );
        std::process::exit(0);
    };
    Ok(Opts { args, lines, idle })
}

fn main() {
    let o = parse().unwrap_or_else(|e| {
        eprintln!("tokio-chat: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let rt = tokio_runtime(o.args.loops).unwrap_or_else(|e| fail(&format!("runtime: {e}")));
    if let Err(e) = rt.block_on(serve(o)) {
        fail(&e.to_string());
    }
    let lagged = LAGGED.load(Ordering::Relaxed);
    if lagged > 0 {
        eprintln!("tokio-chat: {lagged} events skipped by lagging receivers");
    }
}

async fn serve(o: Opts) -> std::io::Result<()> {
    let mut shutdown = Shutdown::new()?;
    let (tx, _) = broadcast::channel::<Arc<Event>>(CAPACITY);
    let ws = TcpListener::bind(o.args.addr).await?;
    let lines = match o.lines {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    announce(ws.local_addr()?);
    let idle = o.idle;
    loop {
        tokio::select! {
            res = ws.accept() => match res {
                Ok((s, _)) => { tokio::spawn(ws_conn(s, tx.clone(), idle)); }
                Err(e) => eprintln!("tokio-chat: accept: {e}"),
            },
            res = async { lines.as_ref().expect("guarded").accept().await }, if lines.is_some() => match res {
                Ok((s, _)) => { tokio::spawn(line_conn(s, tx.clone(), idle)); }
                Err(e) => eprintln!("tokio-chat: accept: {e}"),
            },
            _ = shutdown.recv() => return Ok(()),
        }
    }
}

/// A participant as a sender: its id, its nickname, where its words go.
struct Member {
    id: u64,
    nick: String,
    tx: Tx,
}

/// A participant as a receiver: the events for it (its own are skipped).
struct Inbox {
    id: u64,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Member {
    fn join(tx: Tx) -> (Member, Inbox) {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let inbox = Inbox {
            id,
            rx: tx.subscribe(),
        };
        let m = Member {
            id,
            nick: format!("guest{id}"),
            tx,
        };
        m.notice(format!("* {} joined", m.nick));
        (m, inbox)
    }

    fn notice(&self, text: String) {
        let _ = self.tx.send(Arc::new(Event {
            from: self.id,
            text: text.into(),
        }));
    }

    /// What a received text does: a nickname change or a message to everyone else.
    fn said(&mut self, text: &str) {
        if let Some(nick) = text.strip_prefix("/nick ") {
            let nick = nick.trim();
            if !nick.is_empty() {
                let old = std::mem::replace(&mut self.nick, nick.to_string());
                self.notice(format!("* {old} is now {}", self.nick));
            }
            return;
        }
        self.notice(format!("{}: {text}", self.nick));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.notice(format!("* {} left", self.nick));
    }
}

impl Inbox {
    /// The next event; None when the channel closed.
    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.recv().await {
                Ok(ev) if ev.from == self.id => continue,
                Ok(ev) => return Some(ev),
                Err(RecvError::Lagged(n)) => {
                    LAGGED.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// An event already queued, without waiting.
    fn ready(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.try_recv() {
                Ok(ev) if ev.from == self.id => continue,
                Ok(ev) => return Some(ev),
                Err(TryRecvError::Lagged(n)) => {
                    LAGGED.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return None,
            }
        }
    }
}

/// tungstenite's read buffer. Its default (128 KiB) is zero-filled before every read attempt;
/// chat messages are small (a larger frame is still read, in several reads).
const WS_READ_BUFFER: usize = 4096;

/// A WebSocket member: a reader (this task) and a writer task over the split stream, so a
/// broadcast wakes only the writer and the read side is polled only when the socket is
/// readable. Whichever ends first ends the connection.
async fn ws_conn(stream: TcpStream, tx: Tx, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default().read_buffer_size(WS_READ_BUFFER);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (mut me, mut inbox) = Member::join(tx);
    let mut writer = tokio::spawn(async move {
        while let Some(ev) = inbox.next().await {
            sink.feed(Message::Text(ev.text.clone())).await?;
            while let Some(ev) = inbox.ready() {
                sink.feed(Message::Text(ev.text.clone())).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    });
    let reader = async {
        loop {
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => me.said(t.as_str()),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return,
                Ok(Some(Ok(_))) => {} // binary, ping, pong: nothing to relay
            }
        }
    };
    tokio::select! {
        () = reader => writer.abort(),
        _ = &mut writer => {}
    }
}

async fn line_conn(stream: TcpStream, tx: Tx, idle: Duration) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut w = BufWriter::new(w);
    let (mut me, mut inbox) = Member::join(tx);
    let mut line = Vec::new();
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            res = r.read_until(b'\n', &mut line) => match res {
                Ok(0) | Err(_) => return,
                Ok(_) if line.len() > MAX_LINE => return,
                Ok(_) if line.ends_with(b"\n") => {
                    deadline.as_mut().reset(Instant::now() + idle);
                    let text = String::from_utf8_lossy(&line);
                    me.said(text.trim_end_matches(['\r', '\n']));
                    line.clear();
                }
                Ok(_) => {} // end of stream inside a line: the next read ends it
            },
            ev = inbox.next() => {
                let Some(ev) = ev else { return };
                if write_line(&mut w, &ev).await.is_err() {
                    return;
                }
                while let Some(ev) = inbox.ready() {
                    if write_line(&mut w, &ev).await.is_err() {
                        return;
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
            () = &mut deadline => return,
        }
    }
}

async fn write_line(
    w: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    ev: &Event,
) -> std::io::Result<()> {
    w.write_all(ev.text.as_bytes()).await?;
    w.write_all(b"\n").await
}

fn fail(msg: &str) -> ! {
    eprintln!("tokio-chat: {msg}");
    std::process::exit(1);
}
