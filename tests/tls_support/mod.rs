//! Support code for `tests/tls.rs`: certificates and configurations ([`certs`]), the rustls
//! client over a std `TcpStream` ([`client`]), and here the server's probe handler, which
//! reports what it sees on a channel, with the helpers that wait for its reports.

pub mod certs;
pub mod client;

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;

use eventide::tls::ServerConfig;
use eventide::{Action, CloseReason, Conn, ConnId, Connect, ConnectError, Handler, LoopCx, Server};

use crate::util::{Rng, TIMEOUT};

// ---------------------------------------------------------------------------------------------
// The server's handler: reports what it sees on a channel
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub enum Event {
    Open {
        peer: Option<SocketAddr>,
        outbound: bool,
        tls: bool,
        alpn: Option<Vec<u8>>,
        sni: Option<String>,
    },
    /// A failed server-side handshake (`on_tls_error`).
    TlsError {
        peer: Option<SocketAddr>,
        kind: ErrorKind,
        message: String,
    },
    ConnectError {
        kind: ErrorKind,
        message: String,
    },
    /// An outbound connection got back everything it sent.
    Echoed(Vec<u8>),
    /// The peer's `close_notify` arrived after this many plaintext bytes.
    ReadClosed {
        received: usize,
    },
    /// Plaintext that reached a `SendThenShutdown` connection.
    Data(Vec<u8>),
    Closed {
        peer: Option<SocketAddr>,
        reason: &'static str,
        text: String,
    },
    /// A check in a callback failed (an `assert!` there would be caught by the loop):
    /// [`wait_for`] fails the test with it at once.
    CheckFailed(String),
}

/// What inbound connections do.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Echo; the default `on_read_closed` closes after the last byte.
    Echo,
    /// Echo; on the peer's `close_notify`, report it, write [`TRAILER`], then close.
    EchoThenTrailer,
    /// Echo, each input written back in pieces of [`PIECES`] sizes in turn (small ones
    /// gathered into records, large ones encrypted as they are).
    EchoInPieces,
    /// On open, write this many bytes and shut the write side down (half-close); report
    /// what arrives afterwards.
    SendThenShutdown(usize),
}

pub const TRAILER: &[u8] = b"-- that was everything --";

/// The sizes [`Mode::EchoInPieces`] writes in, in turn: around a record's 16 KiB of plaintext.
pub const PIECES: &[usize] = &[1, 700, 16 * 1024, 20_000, 5, 16 * 1024 - 1];

pub struct Probe {
    pub tx: mpsc::Sender<Event>,
    pub mode: Mode,
    pub dial_at_boot: Option<Connect>,
}

#[derive(Default)]
pub struct State {
    peer: Option<SocketAddr>,
    received: usize,
    /// Outbound: what was sent and what came back so far.
    dial: Option<(Vec<u8>, Vec<u8>)>,
}

fn probe(mode: Mode) -> (impl FnMut(usize) -> Probe, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let factory = move |_| Probe {
        tx: tx.clone(),
        mode,
        dial_at_boot: None,
    };
    (factory, rx)
}

/// `n` bytes of a deterministic stream.
pub fn payload(seed: u64, n: usize) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

impl Handler for Probe {
    type State = State;

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        if let Some(c) = self.dial_at_boot.take() {
            cx.connect(c);
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) -> State {
        let _ = self.tx.send(Event::Open {
            peer: conn.peer_addr(),
            outbound: conn.is_outbound(),
            tls: conn.is_tls(),
            alpn: conn.tls_alpn_protocol().map(<[u8]>::to_vec),
            sni: conn.tls_server_name().map(str::to_string),
        });
        let mut state = State {
            peer: conn.peer_addr(),
            ..State::default()
        };
        if conn.is_outbound() {
            let Some(data) = conn.take_context::<Vec<u8>>() else {
                let why = "an outbound connection without a payload as its context".to_string();
                let _ = self.tx.send(Event::CheckFailed(why));
                conn.close();
                return state;
            };
            conn.write(&data);
            state.dial = Some((data, Vec::new()));
        } else if let Mode::SendThenShutdown(n) = self.mode {
            conn.write_vec(payload(n as u64, n));
            conn.shutdown_write();
        }
        state
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, state: &mut State) -> Action {
        let data = conn.input();
        conn.consume(data.len());
        state.received += data.len();
        if let Some((sent, got)) = state.dial.as_mut() {
            got.extend_from_slice(data);
            if got.len() >= sent.len() {
                let _ = self.tx.send(Event::Echoed(std::mem::take(got)));
                return Action::Close;
            }
            return Action::Continue;
        }
        match self.mode {
            Mode::Echo | Mode::EchoThenTrailer => {
                conn.write(data);
            }
            Mode::EchoInPieces => {
                let mut rest = data;
                for &size in PIECES.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (piece, after) = rest.split_at(size.min(rest.len()));
                    conn.write(piece);
                    rest = after;
                }
            }
            Mode::SendThenShutdown(_) => {
                let _ = self.tx.send(Event::Data(data.to_vec()));
            }
        }
        Action::Continue
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, state: &mut State) -> Action {
        match self.mode {
            Mode::Echo | Mode::EchoInPieces => {}
            Mode::EchoThenTrailer => {
                let _ = self.tx.send(Event::ReadClosed {
                    received: state.received,
                });
                conn.write(TRAILER);
            }
            Mode::SendThenShutdown(_) => {
                let _ = self.tx.send(Event::ReadClosed {
                    received: state.received,
                });
                // Both directions are closed now: the loop closes it (`peer_closed`).
                return Action::Continue;
            }
        }
        Action::Close
    }

    fn on_tls_error(&mut self, _: &mut LoopCx<'_>, peer: Option<SocketAddr>, e: &io::Error) {
        let _ = self.tx.send(Event::TlsError {
            peer,
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    fn on_connect_error(&mut self, _: &mut LoopCx<'_>, e: ConnectError) {
        let _ = self.tx.send(Event::ConnectError {
            kind: e.kind(),
            message: e.to_string(),
        });
    }

    fn on_close(&mut self, _: ConnId, state: State, reason: &CloseReason) {
        let _ = self.tx.send(Event::Closed {
            peer: state.peer,
            reason: reason.as_str(),
            text: reason.to_string(),
        });
    }
}

/// The first event `pick` accepts, skipping others; panics after [`TIMEOUT`].
pub fn wait_for<T>(
    rx: &mpsc::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Event::CheckFailed(why)) => panic!("a check in a handler callback failed: {why}"),
            Ok(e) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// The `on_tls_error` reports for the connections from `peers` (in any order; other events
/// are skipped): each one's kind and message, in the order of `peers`.
pub fn tls_errors(rx: &mpsc::Receiver<Event>, peers: &[SocketAddr]) -> Vec<(ErrorKind, String)> {
    let mut found: Vec<Option<(ErrorKind, String)>> = vec![None; peers.len()];
    while found.iter().any(Option::is_none) {
        let (i, report) = wait_for(rx, &format!("on_tls_error for {peers:?}"), |e| match e {
            Event::TlsError {
                peer: Some(p),
                kind,
                message,
            } => peers
                .iter()
                .position(|&x| x == p)
                .map(|i| (i, (kind, message))),
            _ => None,
        });
        assert!(found[i].is_none(), "two reports for {}", peers[i]);
        found[i] = Some(report);
    }
    found.into_iter().map(Option::unwrap).collect()
}

/// The `on_tls_error` report for the connection from `peer`.
pub fn tls_error_for(rx: &mpsc::Receiver<Event>, peer: SocketAddr) -> (ErrorKind, String) {
    tls_errors(rx, &[peer]).remove(0)
}

pub fn start(
    bind: ServerConfig,
    mode: Mode,
    tune: impl FnOnce(eventide::Builder) -> eventide::Builder,
) -> (Server, mpsc::Receiver<Event>) {
    let (factory, rx) = probe(mode);
    let builder = Server::builder().bind_tls("127.0.0.1:0", bind).loops(2);
    (tune(builder).start(factory).expect("start the server"), rx)
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Whether an error message names `path`.
pub fn mentions(e: &io::Error, path: &Path) -> bool {
    e.to_string().contains(&path.display().to_string())
}
