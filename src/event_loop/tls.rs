//! TLS in the loop: handshakes (driven by readiness, before `on_open`), and reading on an
//! established TLS connection (ciphertext in, plaintext to the handler).
//!
//! A connection in its handshake lives in a table of its own: it has no handler state yet
//! (`on_open` creates that), so it cannot sit in the connection table. When the handshake
//! completes it moves there — with any ciphertext still to send and any application data that
//! arrived with the last handshake flight — and `on_open` runs.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering::AcqRel;

use super::{token, EventLoop, LoopCx, Src, TimerKind};
use crate::addr::Addr;
use crate::conn::{flag, Extra};
use crate::connector::ConnectError;
use crate::handler::{CloseReason, Handler};
use crate::stats::bump;
use crate::sys::epoll::{ERROR, HANG_UP, READABLE, READ_CLOSED, WRITABLE};
use crate::sys::socket;
use crate::timer::TimerId;
use crate::tls::{ClientTls, ServerConfig, TlsSession};

/// Reads per readiness event while handshaking.
const HANDSHAKE_READS: usize = 4;

/// A connection whose TLS handshake is under way.
pub(crate) struct Handshake {
    fd: OwnedFd,
    generation: u32,
    session: Box<TlsSession>,
    peer: Option<SocketAddr>,
    /// For an outbound connection: where it was dialled and the connect's context.
    outbound: Option<(Addr, Option<Box<dyn Any + Send>>)>,
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
    /// Serves an accepted connection: at once, or after a TLS handshake.
    pub(super) fn open(
        &mut self,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        tls: Option<ServerConfig>,
    ) {
        match tls {
            None => self.open_with(fd, peer, None, false, None),
            Some(config) => match TlsSession::server(&config) {
                Ok(session) => self.start_handshake(fd, peer, session, None, false),
                Err(e) => {
                    self.report_tls_error(peer, &e);
                    drop(fd);
                    self.release_slot(false);
                }
            },
        }
    }

    /// Starts the TLS handshake of an outbound connection that just connected.
    pub(super) fn start_client_handshake(
        &mut self,
        fd: OwnedFd,
        addr: Addr,
        peer: Option<SocketAddr>,
        context: Option<Box<dyn Any + Send>>,
        tls: &ClientTls,
    ) {
        match TlsSession::client(tls) {
            Ok(session) => self.start_handshake(fd, peer, session, Some((addr, context)), true),
            Err(e) => {
                self.lp.shared.stats.assigned.fetch_sub(1, AcqRel);
                self.lp
                    .connect_failures
                    .push(ConnectError::new(addr, e, context));
            }
        }
    }

    fn start_handshake(
        &mut self,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        session: TlsSession,
        outbound: Option<(Addr, Option<Box<dyn Any + Send>>)>,
        registered: bool,
    ) {
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
        let raw = fd.as_raw_fd();
        let result = if registered {
            self.lp.epoll.modify(raw, READABLE | READ_CLOSED, tok)
        } else {
            self.lp.epoll.add(raw, READABLE | READ_CLOSED, tok)
        };
        let mut h = Handshake {
            fd,
            generation,
            session: Box::new(session),
            peer,
            outbound,
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
        let fd = h.fd.as_raw_fd();
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
        let fd = h.fd.as_raw_fd();
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
            fd,
            session,
            peer,
            outbound,
            out,
            early,
            ..
        } = h;
        let tls = Some((session, early, out));
        match outbound {
            Some((_, context)) => self.open_with(fd, peer, Some(context), true, tls),
            None => self.open_with(fd, peer, None, true, tls),
        }
    }

    fn handshake_failed(&mut self, h: Handshake, e: io::Error) {
        bump(&self.lp.shared.stats.tls_handshake_errors, 1);
        let Handshake {
            fd, peer, outbound, ..
        } = h;
        drop(fd);
        match outbound {
            Some((addr, context)) => {
                self.lp.shared.stats.assigned.fetch_sub(1, AcqRel);
                bump(&self.lp.shared.stats.connect_errors, 1);
                self.lp
                    .connect_failures
                    .push(ConnectError::new(addr, e, context));
            }
            None => {
                self.release_slot(false);
                self.report_tls_error(peer, &e);
            }
        }
    }

    fn report_tls_error(&mut self, peer: Option<SocketAddr>, e: &io::Error) {
        let handler = &mut self.handler;
        let mut cx = LoopCx::new(&mut self.lp);
        if panic::catch_unwind(AssertUnwindSafe(|| handler.on_tls_error(&mut cx, peer, e))).is_err()
        {
            self.note_panic("on_tls_error");
        }
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

    /// Reads an established TLS connection: ciphertext from the socket, plaintext to
    /// `on_data`; the peer's `close_notify` (or end of stream) is `on_read_closed`.
    pub(super) fn read_ready_tls(&mut self, key: usize) {
        let budget = self.read_budget();
        let generation = self.conns[key].core.id.generation;
        for round in 0..budget {
            let entry = &mut self.conns[key];
            if !entry.core.reading_enabled() {
                return;
            }
            let fd = entry.core.fd.as_raw_fd();
            let n = match socket::read(fd, &mut self.read_buf) {
                Ok(0) => {
                    // End of stream without close_notify: the peer is gone all the same.
                    self.settle(key);
                    if self.alive(key, generation) {
                        self.read_closed_tls(key);
                    }
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.close_now(key, CloseReason::from_io(e)),
            };
            bump(&self.lp.shared.stats.bytes_in, n as u64);
            let entry = &mut self.conns[key];
            entry.core.active_ms = self.lp.now_ms;
            let crate::event_loop::Entry { core, input, .. } = entry;
            let Some(tls) = core.tls.as_mut() else { return };
            let fed = tls.feed(&mut self.read_buf[..n], &mut |p| input.append(p));
            match fed {
                Err(e) => {
                    // Send the alert rustls queued, then close.
                    core.encrypt_staged(&mut self.lp);
                    if core.out.is_none() {
                        core.send_staged(&mut self.lp, Extra::None);
                    }
                    self.lp.clear_staging();
                    return self.close_now(key, CloseReason::Tls(e.to_string()));
                }
                Ok(fed) => {
                    if self.conns[key].input.is_empty() {
                        self.settle(key);
                    } else {
                        self.deliver(key, Src::Buffered);
                    }
                    if !self.alive(key, generation) {
                        return;
                    }
                    if fed.closed {
                        return self.read_closed_tls(key);
                    }
                }
            }
            if !self.read_more(key, generation, n, round, budget) {
                return;
            }
        }
    }

    pub(super) fn read_closed_tls(&mut self, key: usize) {
        self.conns[key].core.set(flag::READ_CLOSED);
        self.call(key, |h, c, s| h.on_read_closed(c, s));
    }
}
