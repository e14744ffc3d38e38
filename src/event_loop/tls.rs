//! TLS handshakes in the loop, driven by readiness, before `on_open`. (An established TLS
//! connection is read by the same read loop as a plain one, `io_path.rs`.)
//!
//! A connection in its handshake lives in a table of its own: it has no handler state yet
//! (`on_open` creates that), so it cannot sit in the connection table. When the handshake
//! completes it moves there — with any ciphertext still to send and any application data that
//! arrived with the last handshake flight — and `on_open` runs.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use super::open::{Opening, TlsOpening};
use super::EventLoop;
use crate::addr::Addr;
use crate::connector::ConnectError;
use crate::cx::{LoopCx, TimerKind};
use crate::handler::Handler;
use crate::stats::bump;
use crate::sys::epoll::{ERROR, HANG_UP, READABLE, READ_CLOSED, WRITABLE};
use crate::sys::socket;
use crate::timer::TimerId;
use crate::tls::{ClientTls, ServerConfig, TlsSession};
use crate::token;

/// Reads per readiness event while handshaking.
const HANDSHAKE_READS: usize = 4;

/// A connection whose TLS handshake is under way.
pub(crate) struct Handshake {
    /// The socket, its seat, and (outbound) the connect's context: what opens once done.
    opening: Opening,
    /// For an outbound connection: the address it was dialled at, for a failure report.
    dialled: Option<Addr>,
    generation: u32,
    session: Box<TlsSession>,
    /// Ciphertext the socket has not taken yet.
    out: Vec<u8>,
    /// Application data that arrived with the final handshake flight.
    early: Vec<u8>,
    timer: TimerId,
    interest: u32,
}

/// What happened on a handshake's socket.
enum Step {
    Continue,
    Done,
    Failed(io::Error),
}

impl<H: Handler> EventLoop<H> {
    /// Starts the TLS handshake of an accepted connection.
    pub(super) fn start_server_handshake(&mut self, opening: Opening, config: &ServerConfig) {
        match TlsSession::server(config) {
            Ok(session) => self.start_handshake(opening, None, session),
            Err(e) => self.report_tls_error(opening.peer, &e), // drops the socket and its seat
        }
    }

    /// Starts the TLS handshake of an outbound connection that just connected.
    pub(super) fn start_client_handshake(&mut self, opening: Opening, addr: Addr, tls: &ClientTls) {
        match TlsSession::client(tls) {
            Ok(session) => self.start_handshake(opening, Some(addr), session),
            Err(e) => self.connect_failed(ConnectError::new(addr, e, opening.context)),
        }
    }

    fn start_handshake(&mut self, opening: Opening, dialled: Option<Addr>, session: TlsSession) {
        let generation = self.lp.next_generation();
        let key = self.handshakes.vacant_key();
        let limit = match self.lp.cfg.read_timeout {
            Some(r) => r.min(self.lp.cfg.handshake_timeout),
            None => self.lp.cfg.handshake_timeout,
        };
        let kind = TimerKind::HandshakeTimeout {
            key: key as u32,
            generation,
        };
        let timer = self.lp.timers.insert(self.lp.now + limit, kind, None);
        let tok = token::make(token::HANDSHAKE, key, generation);
        let raw = opening.fd.as_raw_fd();
        let result = if opening.registered {
            self.lp.epoll.modify(raw, READABLE | READ_CLOSED, tok)
        } else {
            self.lp.epoll.add(raw, READABLE | READ_CLOSED, tok)
        };
        let mut h = Handshake {
            opening: Opening {
                registered: true,
                ..opening
            },
            dialled,
            generation,
            session: Box::new(session),
            out: Vec::new(),
            early: Vec::new(),
            timer,
            interest: READABLE | READ_CLOSED,
        };
        if let Err(e) = result {
            self.lp.timers.cancel(h.timer);
            return self.handshake_failed(h, e);
        }
        // A client speaks first: send the ClientHello now.
        h.session
            .take_ciphertext(&mut |c| h.out.extend_from_slice(c));
        self.handshakes.insert(h);
        if let Step::Failed(e) = self.flush_handshake(key) {
            let h = self.take_handshake(key);
            self.handshake_failed(h, e);
        }
    }

    fn take_handshake(&mut self, key: usize) -> Handshake {
        let h = self.handshakes.remove(key);
        self.lp.timers.cancel(h.timer);
        h
    }

    /// Readiness on a handshaking socket.
    pub(super) fn handshake_event(&mut self, key: usize, generation: u32, events: u32) {
        if !matches!(self.handshakes.get(key), Some(h) if h.generation == generation) {
            return;
        }
        let mut step = Step::Continue;
        if events & (READABLE | READ_CLOSED | HANG_UP | ERROR) != 0 {
            step = self.handshake_read(key);
        }
        if let Step::Continue | Step::Done = step {
            if let Step::Failed(e) = self.flush_handshake(key) {
                step = Step::Failed(e);
            }
        }
        match step {
            Step::Continue => {}
            Step::Done => {
                let h = self.take_handshake(key);
                self.handshake_done(h);
            }
            Step::Failed(e) => {
                let h = self.take_handshake(key);
                self.handshake_failed(h, e);
            }
        }
    }

    fn handshake_read(&mut self, key: usize) -> Step {
        let h = &mut self.handshakes[key];
        let fd = h.opening.fd.as_raw_fd();
        for _ in 0..HANDSHAKE_READS {
            match socket::read(fd, &mut self.read_buf) {
                Ok(0) => {
                    return Step::Failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the peer closed the connection during the TLS handshake",
                    ))
                }
                Ok(n) => {
                    bump(&self.lp.shared.stats.bytes_in, n as u64);
                    let Handshake {
                        session,
                        early,
                        out,
                        ..
                    } = h;
                    match session.feed(&mut self.read_buf[..n], &mut |p| early.extend_from_slice(p))
                    {
                        Err(e) => {
                            // Send the alert rustls queued, if the socket takes it.
                            session.take_ciphertext(&mut |c| out.extend_from_slice(c));
                            let _ = socket::send(fd, out);
                            return Step::Failed(e);
                        }
                        // close_notify: nothing more will come. With the final flight it is
                        // the peer's end of data, kept in the session for `open_with`.
                        Ok(fed) if fed.closed => {
                            if session.is_handshaking() {
                                return Step::Failed(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "the peer closed the connection during the TLS handshake",
                                ));
                            }
                            break;
                        }
                        Ok(_) => {}
                    }
                    if n < self.read_buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Step::Failed(e),
            }
        }
        if h.session.is_handshaking() {
            Step::Continue
        } else {
            Step::Done
        }
    }

    /// Sends the handshake's pending ciphertext; waits for writability if the socket is full.
    fn flush_handshake(&mut self, key: usize) -> Step {
        let h = &mut self.handshakes[key];
        let Handshake { session, out, .. } = h;
        session.take_ciphertext(&mut |c| out.extend_from_slice(c));
        let fd = h.opening.fd.as_raw_fd();
        while !h.out.is_empty() {
            match socket::send(fd, &h.out) {
                Ok(n) => {
                    bump(&self.lp.shared.stats.bytes_out, n as u64);
                    h.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Step::Failed(e),
            }
        }
        let want = if h.out.is_empty() {
            READABLE | READ_CLOSED
        } else {
            READABLE | READ_CLOSED | WRITABLE
        };
        if want != h.interest {
            let tok = token::make(token::HANDSHAKE, key, h.generation);
            if let Err(e) = self.lp.epoll.modify(fd, want, tok) {
                return Step::Failed(e);
            }
            h.interest = want;
        }
        if h.session.is_handshaking() {
            Step::Continue
        } else {
            Step::Done
        }
    }

    pub(super) fn handshake_expired(&mut self, key: usize, generation: u32) {
        if matches!(self.handshakes.get(key), Some(h) if h.generation == generation) {
            let h = self.handshakes.remove(key);
            let e = io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out");
            self.handshake_failed(h, e);
        }
    }

    fn handshake_done(&mut self, h: Handshake) {
        bump(&self.lp.shared.stats.tls_handshakes, 1);
        let Handshake {
            opening,
            session,
            out,
            early,
            ..
        } = h;
        let tls = TlsOpening {
            session,
            early,
            unsent: out,
        };
        self.open(Opening {
            tls: Some(tls),
            ..opening
        });
    }

    /// The handshake failed: the socket closes (and its seat is given back), and the handler
    /// hears of it — `on_connect_error` for a connect, `on_tls_error` for an accepted one.
    fn handshake_failed(&mut self, h: Handshake, e: io::Error) {
        bump(&self.lp.shared.stats.tls_handshake_errors, 1);
        let Handshake {
            opening, dialled, ..
        } = h;
        let Opening { peer, context, .. } = opening;
        match dialled {
            Some(addr) => self.connect_failed(ConnectError::new(addr, e, context)),
            None => self.report_tls_error(peer, &e),
        }
    }

    fn report_tls_error(&mut self, peer: Option<SocketAddr>, e: &io::Error) {
        let handler = &mut self.handler;
        self.lp.callback("on_tls_error", |lp| {
            handler.on_tls_error(&mut LoopCx::new(lp), peer, e)
        });
    }

    /// Abandons every handshake (server stop).
    pub(super) fn abandon_handshakes(&mut self) {
        let keys: Vec<usize> = self.handshakes.iter().map(|(k, _)| k).collect();
        for key in keys {
            let h = self.take_handshake(key);
            let e = io::Error::new(io::ErrorKind::Interrupted, "the server is stopping");
            self.handshake_failed(h, e);
        }
    }
}
