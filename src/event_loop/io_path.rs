//! The life of an event on a connection: readiness in, bytes read into the loop's buffer,
//! handed to the handler, output flushed, epoll interest brought up to date.

use std::io;
use std::os::fd::AsRawFd;

use super::{Entry, EventLoop, Span, Src};
use crate::config::InboundPolicy;
use crate::conn::state::{Lifecycle, Pauses, ReadSide, Registration};
use crate::conn::{CloseReason, Conn, Extra};
use crate::handler::{Action, Handler};
use crate::stats::bump;
use crate::sys::epoll::{ERROR, HANG_UP, READABLE, READ_CLOSED, WRITABLE};
use crate::sys::socket;

/// Reads per readiness event in edge-triggered mode before yielding to other connections.
pub(super) const EDGE_READ_BUDGET: usize = 8;

impl<H: Handler> EventLoop<H> {
    /// Dispatches one epoll event for a connection.
    pub(super) fn conn_event(&mut self, key: usize, generation: u32, events: u32) {
        if !self.alive(key, generation) {
            return; // the slot was freed (or reused) earlier in this batch
        }
        if !self.up_to_date(key, generation) {
            return;
        }
        if events & (READABLE | READ_CLOSED | HANG_UP | ERROR) != 0 {
            let state = &mut self.conns[key].core.state;
            if events & (READ_CLOSED | HANG_UP) != 0 && state.read == ReadSide::Open {
                state.read = ReadSide::FinSeen;
            }
            if self.reading(key) {
                self.read_ready(key);
            } else if events & ERROR != 0 {
                return self.failed_unread(key);
            } else if events & HANG_UP != 0
                && self.conns[key].core.out.is_none()
                && !self.lp.cfg.edge
            {
                // Level-triggered hang-up is reported on every wait and cannot be masked:
                // while nothing can be done with it, take the socket out of epoll.
                let core = &mut self.conns[key].core;
                let _ = self.lp.epoll.delete(core.fd.as_raw_fd());
                core.state.registration = Registration::Deregistered;
            }
            if !self.alive(key, generation) {
                return;
            }
        }
        if events & WRITABLE != 0 && self.conns[key].core.out.is_some() {
            self.write_ready(key);
        }
    }

    /// The socket failed while it was not being read, and is taken as a failed send is
    /// ([`send_failed`](crate::conn::ConnCore::send_failed)): after the peer's reset the write
    /// side is dead but what the kernel received is still read once reading resumes; a
    /// connection the kernel still holds open, or one that was closing (it had stopped
    /// reading), fails at once.
    #[cold]
    #[inline(never)]
    fn failed_unread(&mut self, key: usize) {
        let core = &mut self.conns[key].core;
        let err = match socket::take_error(&core.fd) {
            Ok(Some(e)) | Err(e) => e,
            Ok(None) => io::ErrorKind::ConnectionReset.into(),
        };
        core.send_failed(&mut self.lp, err);
        self.settle(key);
    }

    /// Reads what the socket holds and hands it to the handler: once per event when
    /// level-triggered (epoll reports again if more is left), until a short read or the budget
    /// when edge-triggered. Plain and TLS connections share the loop; only what one read
    /// brings differs ([`read_once`](Self::read_once)). The caller checked that the
    /// connection is being read.
    pub(super) fn read_ready(&mut self, key: usize) {
        let budget = self.read_budget();
        let generation = self.conns[key].core.generation;
        for round in 0..budget {
            if round > 0 && !self.reading(key) {
                return; // the handler paused or closed it
            }
            match self.read_once(key) {
                Read::End => return self.read_closed(key),
                Read::Drained => return,
                Read::Failed(reason) => {
                    let reason = self.conns[key].core.state.read_ended(reason);
                    return self.close_now(key, reason);
                }
                Read::Bytes {
                    n,
                    src,
                    peer_closed,
                } => {
                    match src {
                        Some(src) => self.deliver(key, src),
                        // TLS records without plaintext: rustls may have answers to send.
                        None => self.settle(key),
                    }
                    if !self.alive(key, generation) {
                        return;
                    }
                    if peer_closed {
                        return self.read_closed(key);
                    }
                    if !self.read_more(key, generation, n, round, budget) {
                        return;
                    }
                }
            }
        }
    }

    /// One read of the socket. Plain: into the loop's read buffer (shown to `on_data` in
    /// place) or, with a remainder buffered, into the remainder's spare room first. TLS:
    /// ciphertext into the read buffer, for [`decrypt`](Self::decrypt).
    fn read_once(&mut self, key: usize) -> Read {
        let entry = &mut self.conns[key];
        let fd = entry.core.fd.as_raw_fd();
        let tls = entry.core.tls.is_some();
        let in_place = tls || entry.input.is_empty();
        let result = if in_place {
            socket::read(fd, &mut self.read_buf)
        } else {
            entry.input.read_from(fd, &mut self.read_buf)
        };
        let n = match result {
            Ok(0) => return Read::End,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read::Drained,
            Err(e) => return Read::Failed(CloseReason::from_io(e)),
        };
        bump(&self.lp.shared.stats.bytes_in, n as u64);
        self.conns[key].core.active_ms = self.lp.now_ms;
        if tls {
            return self.decrypt(key, n);
        }
        Read::Bytes {
            n,
            src: Some(if in_place {
                Src::Read(n)
            } else {
                Src::Buffered
            }),
            peer_closed: false,
        }
    }

    /// The first `n` bytes of the read buffer are ciphertext: decrypted there by the session,
    /// and the plaintext shown in place too when the session could gather it there (else
    /// appended to the input). Out of line, so the plain path stays short.
    #[inline(never)]
    fn decrypt(&mut self, key: usize, n: usize) -> Read {
        let Entry { core, input, .. } = &mut self.conns[key];
        let Some(tls) = core.tls.as_mut() else {
            // (Not reached: the caller checked. Without a session the bytes are plaintext.)
            return Read::Bytes {
                n,
                src: Some(Src::Read(n)),
                peer_closed: false,
            };
        };
        match tls.feed(&mut self.read_buf[..n], &mut |p| input.append(p)) {
            Ok(fed) => {
                // Plaintext gathered in the read buffer is shown from there, like a plain
                // read, unless a remainder is buffered ahead of it (or, never in practice,
                // the read buffer is past 4 GiB).
                let (start, end) = (fed.placed.start, fed.placed.end);
                let src = match Span::new(start, end) {
                    Some(span) if start < end && input.is_empty() => Some(Src::Decrypted(span)),
                    _ => {
                        input.append(&self.read_buf[start..end]);
                        (!input.is_empty()).then_some(Src::Buffered)
                    }
                };
                Read::Bytes {
                    n,
                    src,
                    peer_closed: fed.closed,
                }
            }
            Err(e) => {
                // Send the alert rustls queued, if the socket takes it, then close.
                core.encrypt_staged(&mut self.lp);
                if core.out.is_none() {
                    core.send_staged(&mut self.lp, Extra::None);
                }
                self.lp.clear_staging();
                Read::Failed(CloseReason::Tls(e.to_string()))
            }
        }
    }

    /// Reads per readiness event: one when level-triggered (epoll reports again if more is
    /// left), [`EDGE_READ_BUDGET`] when edge-triggered.
    pub(super) fn read_budget(&self) -> usize {
        if self.lp.cfg.edge {
            EDGE_READ_BUDGET
        } else {
            1
        }
    }

    /// After a read of `n` bytes in round `round` of `budget`: whether to read again. A short
    /// read drained the socket, unless edge-triggered with the FIN still to be read; when an
    /// edge-triggered budget is spent, the connection is queued to resume after the others.
    pub(super) fn read_more(
        &mut self,
        key: usize,
        generation: u32,
        n: usize,
        round: usize,
        budget: usize,
    ) -> bool {
        let edge = self.lp.cfg.edge;
        let fin_to_read = self.conns[key].core.state.read == ReadSide::FinSeen;
        if n < self.read_buf.len() && !(edge && fin_to_read) {
            return false;
        }
        if edge && round + 1 == budget {
            self.ready.push((key, generation));
        }
        true
    }

    /// Shows the input to `on_data` until it stops consuming, then enforces the inbound limit
    /// and settles the connection.
    pub(super) fn deliver(&mut self, key: usize, mut src: Src) {
        loop {
            let Some((action, consumed)) = self.invoke(key, src, |h, c, s| h.on_data(c, s)) else {
                return;
            };
            let entry = &mut self.conns[key];
            match src {
                Src::Read(n) => {
                    if consumed < n {
                        entry.input.append(&self.read_buf[consumed..n]);
                    }
                    src = Src::Buffered;
                }
                Src::Decrypted(span) => {
                    let (start, end) = (span.start(), span.end());
                    if start + consumed < end {
                        entry.input.append(&self.read_buf[start + consumed..end]);
                    }
                    src = Src::Buffered;
                }
                Src::Buffered => entry.input.consume(consumed),
            }
            self.apply(key, action, || CloseReason::Local);
            // The inbound limit is enforced once the handler stops consuming (below), so a
            // handler working through a large input one message per call is not cut off.
            let entry = &self.conns[key];
            if consumed == 0 || entry.input.is_empty() {
                break;
            }
            let held = self.pauses(key).without(Pauses::INBOUND_LIMIT);
            if !self.conns[key].core.state.delivering(!held.is_empty()) {
                break;
            }
        }
        let cfg = &self.lp.cfg;
        let entry = &mut self.conns[key];
        // Under the pause policy the planner holds input over the limit; this one closes.
        if entry.input.len() > cfg.inbound_limit && cfg.inbound_policy == InboundPolicy::Close {
            entry.input.clear();
            entry.core.state.close(CloseReason::InboundLimit);
        }
        self.settle(key);
    }

    /// The peer shut down its write side: `on_read_closed`, whose [`Action::Close`] (the
    /// default) closes the connection as [`CloseReason::PeerClosed`]. After a send error the
    /// end of stream is the peer's reset, not an orderly close (Linux reports the reset as
    /// end of stream once a send has taken the error): the connection closes for the send
    /// error, without `on_read_closed`, so a handler never takes a stream cut by a reset for a
    /// complete one.
    pub(super) fn read_closed(&mut self, key: usize) {
        let state = &mut self.conns[key].core.state;
        state.read = ReadSide::Closed;
        if state.is_write_failed() {
            let reason = state.take_reason(CloseReason::Reset);
            return self.close_now(key, reason);
        }
        let on_read_closed = |h: &mut H, c: &mut Conn<'_>, s: &mut H::State| h.on_read_closed(c, s);
        if self.call_unsettled_as(key, || CloseReason::PeerClosed, on_read_closed) {
            self.settle(key);
        }
    }

    /// The socket has room: send queued output.
    pub(super) fn write_ready(&mut self, key: usize) {
        let entry = &mut self.conns[key];
        // Emptied now means output had to wait for the kernel: the handler hears it drained.
        let emptied = entry.core.write_queued(&mut self.lp);
        if emptied && entry.core.state.lifecycle() != Lifecycle::Aborted {
            self.call(key, |h, c, s| h.on_drained(c, s));
        } else {
            self.settle(key);
        }
    }

    /// Runs a callback on connection `key` with its buffered input, applies the action it
    /// returns, and settles the connection.
    pub(super) fn call(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> Action,
    ) {
        if self.call_unsettled(key, f) {
            self.settle(key);
        }
    }

    /// [`call`](Self::call), where [`Action::Close`] closes for `close_as`.
    pub(super) fn call_as(
        &mut self,
        key: usize,
        close_as: fn() -> CloseReason,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> Action,
    ) {
        if self.call_unsettled_as(key, close_as, f) {
            self.settle(key);
        }
    }

    /// Runs a callback with panics caught. A panic closes the connection and returns `None`.
    pub(super) fn invoke<R>(
        &mut self,
        key: usize,
        src: Src,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> R,
    ) -> Option<(R, usize)> {
        let Entry { core, input, state } = &mut self.conns[key];
        let view: &[u8] = match src {
            Src::Read(n) => &self.read_buf[..n],
            Src::Decrypted(span) => &self.read_buf[span.start()..span.end()],
            Src::Buffered => input.data(),
        };
        let handler = &mut self.handler;
        let result = self.lp.callback("a connection callback", |lp| {
            let mut conn = Conn::new(core, lp, view);
            conn.input_stable = !matches!(src, Src::Buffered);
            let r = f(handler, &mut conn, state);
            (r, conn.consumed, conn.borrowed)
        });
        match result {
            Some((r, consumed, borrowed)) => {
                // The callback's only output was part of the read buffer: send it from there
                // (staging is empty and nothing is queued, or it would have been copied to
                // staging), as settling would have sent staging.
                match (borrowed, src) {
                    (Some((at, len)), Src::Read(_)) => {
                        let bytes = &self.read_buf[at..at + len];
                        let core = &mut self.conns[key].core;
                        core.send_staged(&mut self.lp, Extra::Slice(bytes));
                    }
                    (Some((at, len)), Src::Decrypted(span)) => {
                        self.encrypt_borrowed(key, span.start() + at, len)
                    }
                    _ => {}
                }
                Some((r, consumed))
            }
            None => {
                let id = self.conns[key].core.id(self.lp.shared.index);
                log::error!("eventide: closing connection {id} after a panic");
                self.close_now(key, CloseReason::Panicked);
                None
            }
        }
    }

    /// A TLS callback's only output, `len` bytes of the read buffer from `at`: encrypted from
    /// there, for settling to send.
    #[inline(never)]
    fn encrypt_borrowed(&mut self, key: usize, at: usize, len: usize) {
        let core = &mut self.conns[key].core;
        core.encrypt_now(&mut self.lp, &self.read_buf[at..at + len]);
    }

    /// Applies what a callback returned; [`Action::Close`] closes for `close_as` (the
    /// application's own close, unless the callback answered the peer's end of stream).
    fn apply(&mut self, key: usize, action: Action, close_as: fn() -> CloseReason) {
        match action {
            Action::Continue => {}
            Action::Close => self.conns[key].core.state.close(close_as()),
            Action::StopServer => self.lp.stop_requested = true,
        }
    }

    /// Like [`call`](Self::call) without the settling (for notifications run while settling).
    /// Returns `false` if the callback panicked (the connection is closed).
    pub(super) fn call_unsettled(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> Action,
    ) -> bool {
        self.call_unsettled_as(key, || CloseReason::Local, f)
    }

    fn call_unsettled_as(
        &mut self,
        key: usize,
        close_as: fn() -> CloseReason,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> Action,
    ) -> bool {
        let Some((action, consumed)) = self.invoke(key, Src::Buffered, f) else {
            return false;
        };
        self.conns[key].input.consume(consumed);
        self.apply(key, action, close_as);
        true
    }

    /// Connections whose reading resumed (or that used up their edge-triggered read budget):
    /// offer buffered input again, then read the socket when edge-triggered.
    pub(super) fn run_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.ready);
        for (key, generation) in list.drain(..) {
            if !self.alive(key, generation)
                || !self.up_to_date(key, generation)
                || !self.delivering(key)
            {
                continue;
            }
            if !self.conns[key].input.is_empty() {
                self.deliver(key, Src::Buffered);
                if !self.alive(key, generation) {
                    continue;
                }
            }
            // A TLS peer's close_notify read with the last handshake flight, before the
            // connection opened: its peer-closed event comes after that flight's data.
            let tls_closed = self.conns[key]
                .core
                .tls
                .as_ref()
                .is_some_and(|t| t.peer_closed());
            if self.reading(key) && tls_closed {
                self.read_closed(key);
                continue;
            }
            if self.lp.cfg.edge && self.reading(key) {
                self.read_ready(key);
            }
            self.flush_outbox();
        }
        if self.ready.is_empty() {
            self.ready = list; // keep the allocation
        }
    }

    /// Why connection `key` is not read now, if it is paused.
    #[inline]
    pub(super) fn pauses(&self, key: usize) -> Pauses {
        let entry = &self.conns[key];
        let jobs = entry.core.jobs_in_flight();
        entry
            .core
            .state
            .pauses(entry.input.len(), jobs, &self.lp.cfg)
    }

    /// Whether a pause holds on connection `key`.
    #[inline]
    fn paused(&self, key: usize) -> bool {
        let entry = &self.conns[key];
        let jobs = entry.core.jobs_in_flight();
        entry
            .core
            .state
            .paused(entry.input.len(), jobs, &self.lp.cfg)
    }

    /// Whether connection `key`'s input is offered to its handler, between callbacks. Every
    /// change to what decides it (a callback, a task, a timer, a job's result) is followed by
    /// a settle, which records the verdict in `flowing`; so it is read from there, and debug
    /// builds check it against the rules. (Inside a callback's sequence, before its settle,
    /// the rules are asked directly.)
    #[inline]
    pub(super) fn delivering(&self, key: usize) -> bool {
        let state = &self.conns[key].core.state;
        debug_assert_eq!(
            state.flowing,
            state.delivering(self.paused(key)),
            "a change to connection {key} was not settled"
        );
        state.flowing
    }

    /// Whether connection `key`'s socket is read, between callbacks (see
    /// [`delivering`](Self::delivering)).
    #[inline]
    pub(super) fn reading(&self, key: usize) -> bool {
        self.delivering(key) && self.conns[key].core.state.read != ReadSide::Closed
    }
}

/// What one read of a connection's socket brought.
enum Read {
    /// `n` bytes read; `src` is where the input to show `on_data` is (`None`: TLS records
    /// without plaintext); `peer_closed`: the TLS peer's `close_notify` came with them.
    Bytes {
        n: usize,
        src: Option<Src>,
        peer_closed: bool,
    },
    /// End of stream.
    End,
    /// Nothing to read (`EAGAIN`).
    Drained,
    /// A read error, or a TLS failure (its alert sent if the socket took it).
    Failed(CloseReason),
}
