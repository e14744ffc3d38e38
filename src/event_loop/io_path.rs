//! The life of an event on a connection: readiness in, bytes read into the loop's buffer,
//! handed to the handler, output flushed, epoll interest brought up to date.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};

use super::{token, Entry, EventLoop, Src};
use crate::buffer::InBuffer;
use crate::conn::{flag, Conn, ConnCore, Extra};
use crate::handler::{Action, CloseReason, ConnId, Handler};
use crate::stats::bump;
use crate::sys::epoll::{EDGE, ERROR, HANG_UP, READABLE, READ_CLOSED, WRITABLE};
use crate::sys::socket;
use crate::tls::TlsSession;

/// Reads per readiness event in edge-triggered mode before yielding to other connections.
pub(super) const EDGE_READ_BUDGET: usize = 8;

impl<H: Handler> EventLoop<H> {
    /// Serves an outbound connection that just completed its handshake. `registered`: the
    /// socket is still in epoll under its connecting token.
    pub(super) fn open_outbound(
        &mut self,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        context: Option<Box<dyn Any + Send>>,
        registered: bool,
    ) {
        self.open_with(fd, peer, Some(context), registered, None);
    }

    /// Creates the connection's entry, calls `on_open` and registers the socket.
    /// `outbound`: the connect's context, for a connection this side opened. `registered`: the
    /// socket is already in epoll (under a connecting or handshake token). `tls`: the session
    /// of a completed handshake, with plaintext that came with its last flight and ciphertext
    /// the socket has not taken yet.
    pub(super) fn open_with(
        &mut self,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        outbound: Option<Option<Box<dyn Any + Send>>>,
        registered: bool,
        tls: Option<(Box<TlsSession>, Vec<u8>, Vec<u8>)>,
    ) {
        let is_outbound = outbound.is_some();
        let generation = self.lp.next_generation();
        let vacant = self.conns.vacant_entry();
        let key = vacant.key();
        if key as u64 > token::KEY_MASK {
            log::error!("eventide: connection table full; refusing a connection");
            socket::abort(fd);
            self.release_slot(is_outbound);
            return;
        }
        let stats = &self.lp.shared.stats;
        bump(&stats.connections, 1);
        bump(
            if is_outbound {
                &stats.connected
            } else {
                &stats.accepted
            },
            1,
        );
        let id = ConnId {
            loop_index: self.lp.shared.index as u16,
            key: key as u32,
            generation,
        };
        let mut core = ConnCore::new(fd, id, peer);
        core.active_ms = self.lp.now_ms;
        if let Some(context) = outbound {
            core.set(flag::OUTBOUND);
            self.lp.open_context = context;
        }
        let mut early_input = Vec::new();
        let mut peer_closed = false;
        if let Some((session, early, unsent)) = tls {
            peer_closed = session.peer_closed();
            core.tls = Some(session);
            early_input = early;
            if !unsent.is_empty() {
                core.write_raw(&mut self.lp, Extra::Vec(unsent));
            }
        }
        let handler = &mut self.handler;
        let mut conn = Conn::new(&mut core, &mut self.lp, &[]);
        let opened = panic::catch_unwind(AssertUnwindSafe(|| handler.on_open(&mut conn)));
        self.lp.open_context = None;
        let Ok(state) = opened else {
            self.note_panic("on_open");
            drop(core);
            self.lp.shared.stats.count_close(&CloseReason::Panicked);
            self.count_closed(is_outbound);
            return;
        };
        let fd = core.fd.as_raw_fd();
        let reading = core.reading_enabled();
        let interest = if self.lp.cfg.edge {
            READABLE | WRITABLE | READ_CLOSED | EDGE
        } else if reading {
            READABLE | READ_CLOSED
        } else {
            0
        };
        core.interest = interest;
        if reading {
            core.set(flag::READING);
        }
        if core.delivering() {
            core.set(flag::DELIVERING);
        }
        let mut input = InBuffer::default();
        if !early_input.is_empty() {
            input.append(&early_input);
        }
        // Input, or a close_notify, that came with the last handshake flight: no readiness
        // event will announce it, so the ready list delivers it.
        if !early_input.is_empty() || peer_closed {
            self.ready.push((key, generation));
        }
        vacant.insert(Entry { core, input, state });
        let tok = token::make(token::CONN, key, generation);
        let result = if registered {
            self.lp.epoll.modify(fd, interest, tok)
        } else {
            self.lp.epoll.add(fd, interest, tok)
        };
        if let Err(e) = result {
            self.close_now(key, CloseReason::Error(e));
            return;
        }
        self.settle(key);
    }

    /// Dispatches one epoll event for a connection.
    pub(super) fn conn_event(&mut self, key: usize, generation: u32, events: u32) {
        if !self.alive(key, generation) {
            return; // the slot was freed (or reused) earlier in this batch
        }
        if events & (READABLE | READ_CLOSED | HANG_UP | ERROR) != 0 {
            let core = &mut self.conns[key].core;
            if events & (READ_CLOSED | HANG_UP) != 0 {
                core.set(flag::PEER_FIN);
            }
            if core.reading_enabled() {
                self.read_ready(key);
            } else if events & ERROR != 0 {
                let reason = match socket::take_error(&core.fd) {
                    Ok(Some(e)) | Err(e) => CloseReason::from_io(e),
                    Ok(None) => CloseReason::Reset,
                };
                self.close_now(key, reason);
                return;
            } else if events & HANG_UP != 0 && core.out.is_none() && !self.lp.cfg.edge {
                // Level-triggered hang-up is reported on every wait and cannot be masked:
                // while nothing can be done with it, take the socket out of epoll.
                let _ = self.lp.epoll.delete(core.fd.as_raw_fd());
                core.set(flag::DEREGISTERED);
                core.interest = 0;
            }
            if !self.alive(key, generation) {
                return;
            }
        }
        if events & WRITABLE != 0 && self.conns[key].core.out.is_some() {
            self.write_ready(key);
        }
    }

    /// Reads what the socket holds and hands it to the handler: once per event when
    /// level-triggered (epoll reports again if more is left), until a short read or the budget
    /// when edge-triggered.
    pub(super) fn read_ready(&mut self, key: usize) {
        if self.conns[key].core.tls.is_some() {
            return self.read_ready_tls(key);
        }
        let budget = self.read_budget();
        let generation = self.conns[key].core.id.generation;
        for round in 0..budget {
            let entry = &mut self.conns[key];
            if !entry.core.reading_enabled() {
                return;
            }
            let fd = entry.core.fd.as_raw_fd();
            let result = if entry.input.is_empty() {
                socket::read(fd, &mut self.read_buf).map(|n| (n, Src::ReadBuf(n)))
            } else {
                entry
                    .input
                    .read_from(fd, &mut self.read_buf)
                    .map(|n| (n, Src::Buffered))
            };
            match result {
                Ok((0, _)) => {
                    self.read_closed(key);
                    return;
                }
                Ok((n, src)) => {
                    bump(&self.lp.shared.stats.bytes_in, n as u64);
                    self.conns[key].core.active_ms = self.lp.now_ms;
                    self.deliver(key, src);
                    if !self.alive(key, generation) {
                        return;
                    }
                    if !self.read_more(key, generation, n, round, budget) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close_now(key, CloseReason::from_io(e));
                    return;
                }
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
        if n < self.read_buf.len() && !(edge && self.conns[key].core.has(flag::PEER_FIN)) {
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
                Src::ReadBuf(n) => {
                    if consumed < n {
                        entry.input.append(&self.read_buf[consumed..n]);
                    }
                    src = Src::Buffered;
                }
                Src::Buffered => entry.input.consume(consumed),
            }
            self.apply(key, action);
            let entry = &self.conns[key];
            if consumed == 0 || entry.input.is_empty() || !entry.core.delivering() {
                break;
            }
        }
        let cfg = self.lp.cfg;
        let entry = &mut self.conns[key];
        if entry.input.len() > cfg.inbound_limit && !entry.core.has(flag::PAUSE_LIMIT) {
            match cfg.inbound_policy {
                crate::InboundPolicy::Close => {
                    entry.input.clear();
                    entry.core.request_close(CloseReason::InboundLimit);
                }
                crate::InboundPolicy::Pause => entry.core.set(flag::PAUSE_LIMIT),
            }
        }
        self.settle(key);
    }

    /// The peer shut down its write side.
    fn read_closed(&mut self, key: usize) {
        self.conns[key].core.set(flag::READ_CLOSED);
        self.call(key, |h, c, s| h.on_read_closed(c, s));
    }

    /// The socket has room: send queued output.
    pub(super) fn write_ready(&mut self, key: usize) {
        let entry = &mut self.conns[key];
        let emptied = entry.core.write_queued(&mut self.lp);
        if emptied && entry.core.has(flag::NOTIFY_DRAINED) && !entry.core.has(flag::ABORT) {
            entry.core.clear(flag::NOTIFY_DRAINED);
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

    /// Runs a callback with panics caught. A panic closes the connection and returns `None`.
    pub(super) fn invoke<R>(
        &mut self,
        key: usize,
        src: Src,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> R,
    ) -> Option<(R, usize)> {
        let Entry { core, input, state } = &mut self.conns[key];
        let view: &[u8] = match src {
            Src::ReadBuf(n) => &self.read_buf[..n],
            Src::Buffered => input.data(),
        };
        let mut conn = Conn::new(core, &mut self.lp, view);
        conn.input_stable = matches!(src, Src::ReadBuf(_));
        let handler = &mut self.handler;
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(handler, &mut conn, state)));
        let consumed = conn.consumed;
        let borrowed = conn.borrowed.take();
        match result {
            Ok(r) => {
                if let Some((start, len)) = borrowed {
                    // The callback's only output was part of the read buffer: send it from
                    // there (staging is empty and nothing is queued, or it would have been
                    // copied to staging), as settling would have sent staging.
                    let core = &mut self.conns[key].core;
                    let bytes = &self.read_buf[start..start + len];
                    core.send_staged(&mut self.lp, Extra::Slice(bytes));
                }
                Some((r, consumed))
            }
            Err(_) => {
                let id = self.conns[key].core.id;
                self.note_panic("a connection callback");
                log::error!("eventide: closing connection {id} after a panic");
                self.close_now(key, CloseReason::Panicked);
                None
            }
        }
    }

    fn apply(&mut self, key: usize, action: Action) {
        match action {
            Action::Continue => {}
            Action::Close => self.conns[key].core.request_close(CloseReason::Local),
            Action::StopServer => self.lp.stop_requested = true,
        }
    }

    /// After anything happened on a connection: flush what the callback staged, run deferred
    /// notifications, finish a requested shutdown or close, and update epoll interest.
    pub(super) fn settle(&mut self, key: usize) {
        loop {
            let core = &mut self.conns[key].core;
            if core.tls.is_some() {
                core.encrypt_staged(&mut self.lp);
            }
            if !self.lp.staging.is_empty() {
                core.send_staged(&mut self.lp, Extra::None);
            }
            if core.has(flag::ABORT) {
                let reason = core.take_reason().unwrap_or(CloseReason::Reset);
                self.close_now(key, reason);
                return;
            }
            if core.has(flag::NOTIFY_HWM) {
                core.clear(flag::NOTIFY_HWM);
                let generation = core.id.generation;
                self.call_unsettled(key, |h, c, s| h.on_high_water(c, s));
                if !self.alive(key, generation) {
                    return;
                }
                continue;
            }
            break;
        }
        if self.settled_already(key) {
            return;
        }
        let cfg = self.lp.cfg;
        let core = &mut self.conns[key].core;
        // Output of jobs still running is part of what must go out before a shutdown or close.
        let flushed = core.out.is_none() && core.jobs_in_flight() == 0;
        let ending = core.has(flag::CLOSE_REQ)
            || (core.has(flag::SHUTDOWN_REQ) && !core.has(flag::WRITE_SHUT));
        // TLS: close_notify goes after everything else, before the shutdown or close.
        if flushed && ending && core.send_close_notify(&mut self.lp) && core.has(flag::ABORT) {
            let reason = core.take_reason().unwrap_or(CloseReason::Reset);
            return self.close_now(key, reason);
        }
        let entry = &mut self.conns[key];
        let core = &mut entry.core;
        if core.out.is_none() && core.jobs_in_flight() == 0 {
            if core.has(flag::SHUTDOWN_REQ) && !core.has(flag::WRITE_SHUT) {
                core.set(flag::WRITE_SHUT);
                if let Err(e) = socket::shutdown_write(&core.fd) {
                    self.close_now(key, CloseReason::from_io(e));
                    return;
                }
            }
            if core.has(flag::CLOSE_REQ) {
                self.close_graceful(key);
                return;
            }
            if core.has(flag::WRITE_SHUT) && core.has(flag::READ_CLOSED) {
                core.request_close(CloseReason::PeerClosed);
                self.close_graceful(key);
                return;
            }
        }
        if core.has(flag::HWM_HIT) && core.pending() <= cfg.low_water {
            core.clear(flag::HWM_HIT | flag::PAUSE_HWM);
        }
        if core.has(flag::PAUSE_LIMIT) && entry.input.len() <= cfg.inbound_limit {
            entry.core.clear(flag::PAUSE_LIMIT);
        }
        if entry.input.is_empty() {
            entry.core.input_since_ms = None;
        } else if entry.core.input_since_ms.is_none() {
            entry.core.input_since_ms = Some(self.lp.now_ms);
        }
        if let Some(shared) = &entry.core.handle {
            shared.publish_pending(entry.core.pending());
        }
        let generation = entry.core.id.generation;
        self.sync_interest(key);
        if self.alive(key, generation) {
            self.arm_timeouts(key);
        }
    }

    /// Whether the rest of [`settle`](Self::settle) would change nothing: the common state
    /// after a callback on a busy level-triggered connection (nothing requested, paused or
    /// queued, no input left over, no handles, epoll interest already `EPOLLIN | EPOLLRDHUP`,
    /// and no timeout to re-arm: none configured, or the idle timer already due early
    /// enough). A mask test and a few loads instead of the two dozen checks of the full path.
    #[inline]
    fn settled_already(&self, key: usize) -> bool {
        /// Any of these needs the full path (closing, shutting down, paused, high-water mark,
        /// end of stream, deregistered, a pending notification).
        const SLOW: u32 = flag::NO_READ
            | flag::SHUTDOWN_REQ
            | flag::WRITE_SHUT
            | flag::HWM_HIT
            | flag::NOTIFY_HWM
            | flag::DEREGISTERED;
        const STEADY: u32 = flag::READING | flag::DELIVERING;
        let cfg = &self.lp.cfg;
        let entry = &self.conns[key];
        let core = &entry.core;
        let steady = core.flags & (SLOW | STEADY) == STEADY
            && core.out.is_none()
            && entry.input.is_empty()
            && core.input_since_ms.is_none()
            && core.handle.is_none()
            && !cfg.edge
            && core.interest == READABLE | READ_CLOSED;
        // With no input waiting, a read timeout has nothing to time; the idle timeout is due
        // at `active_ms + idle`, and `arm_timeouts` leaves a timer alone that fires earlier.
        steady
            && match cfg.idle_timeout {
                None => true,
                Some(idle) => core.timeout_timer.is_some_and(|(_, at)| {
                    at <= core.active_ms.saturating_add(super::timeouts::millis(idle))
                }),
            }
    }

    /// Like [`call`](Self::call) without the settling (for notifications run while settling).
    /// Returns `false` if the callback panicked (the connection is closed).
    fn call_unsettled(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Conn<'_>, &mut H::State) -> Action,
    ) -> bool {
        let Some((action, consumed)) = self.invoke(key, Src::Buffered, f) else {
            return false;
        };
        self.conns[key].input.consume(consumed);
        self.apply(key, action);
        true
    }

    /// Brings epoll interest in line with what the connection is waiting for. Level-triggered:
    /// `EPOLLIN` while reading, `EPOLLOUT` only while output is queued. Edge-triggered: the
    /// registration never changes; a resumed connection is put on the ready list instead.
    fn sync_interest(&mut self, key: usize) {
        let edge = self.lp.cfg.edge;
        let entry = &mut self.conns[key];
        let core = &mut entry.core;
        let generation = core.id.generation;
        let reading = core.reading_enabled();
        let delivering = core.delivering();
        let resumed_reading = reading && !core.has(flag::READING);
        let resumed_delivery = delivering && !core.has(flag::DELIVERING);
        if reading {
            core.set(flag::READING)
        } else {
            core.clear(flag::READING)
        }
        if delivering {
            core.set(flag::DELIVERING)
        } else {
            core.clear(flag::DELIVERING)
        }
        // Resumed: offer what is buffered (level-triggered epoll reports new bytes by itself;
        // edge-triggered must read, as the edge may have passed while paused).
        if (resumed_reading && edge) || (resumed_delivery && !entry.input.is_empty()) {
            self.ready.push((key, generation));
        }
        let desired = if edge {
            READABLE | WRITABLE | READ_CLOSED | EDGE
        } else {
            (if reading { READABLE | READ_CLOSED } else { 0 })
                | (if core.out.is_some() { WRITABLE } else { 0 })
        };
        let tok = token::make(token::CONN, key, generation);
        let fd = core.fd.as_raw_fd();
        let result = if core.has(flag::DEREGISTERED) {
            if !reading && core.out.is_none() {
                return;
            }
            core.clear(flag::DEREGISTERED);
            self.lp.epoll.add(fd, desired, tok)
        } else if desired != core.interest {
            self.lp.epoll.modify(fd, desired, tok)
        } else {
            return;
        };
        match result {
            Ok(()) => self.conns[key].core.interest = desired,
            Err(e) => self.close_now(key, CloseReason::Error(e)),
        }
    }

    /// Connections whose reading resumed (or that used up their edge-triggered read budget):
    /// offer buffered input again, then read the socket when edge-triggered.
    pub(super) fn run_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut self.ready);
        for (key, generation) in list.drain(..) {
            if !self.alive(key, generation) || !self.conns[key].core.delivering() {
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
            let core = &self.conns[key].core;
            if core.reading_enabled() && core.tls.as_ref().is_some_and(|t| t.peer_closed()) {
                self.read_closed_tls(key);
                continue;
            }
            if self.lp.cfg.edge && self.conns[key].core.reading_enabled() {
                self.read_ready(key);
            }
        }
        if self.ready.is_empty() {
            self.ready = list; // keep the allocation
        }
    }
}
