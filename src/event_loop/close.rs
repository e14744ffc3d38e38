//! The end of a connection: immediate close, graceful close with a lingering read side, and
//! the graceful stop of the whole loop.
//!
//! Why linger: closing a socket whose receive queue still holds unread bytes makes the kernel
//! send a reset, and a reset makes the *peer's* kernel discard data it has received but the
//! peer application has not read yet — the response we just flushed. So a graceful close of a
//! connection whose peer has not finished sending first shuts down our write side (the peer
//! reads every byte, then end-of-stream), then reads and discards until the peer closes or
//! the linger timeout passes, and only then closes the descriptor.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use super::EventLoop;
use crate::conn::state::{Interest, ReadSide, Registration};
use crate::conn::{CloseReason, ConnCore, ConnId, Extra, Refusal};
use crate::cx::{Seat, TimerKind};
use crate::handler::Handler;
use crate::stats::{bump, drop_by};
use crate::sys::epoll::{ERROR, HANG_UP, READABLE, READ_CLOSED};
use crate::sys::socket;

/// How often a stop looks for lingering closes that can end (see
/// [`sweep_lingering`](EventLoop::sweep_lingering)): about half a delayed acknowledgement.
const STOP_SWEEP: std::time::Duration = std::time::Duration::from_millis(20);
use crate::timer::TimerId;
use crate::token;

/// Reads of up to one read buffer each per lingering event before yielding.
const LINGER_READS: usize = 4;

/// A closed connection whose descriptor stays open until the peer finishes sending.
pub(crate) struct Lingering {
    fd: OwnedFd,
    generation: u32,
    timer: TimerId,
    seat: Seat,
}

impl<H: Handler> EventLoop<H> {
    /// Closes at once; queued output is dropped.
    pub(super) fn close_now(&mut self, key: usize, reason: CloseReason) {
        let mut entry = self.conns.remove(key);
        self.detach(&mut entry.core);
        let pending = entry.core.pending() as u64;
        drop_by(&self.lp.shared.stats.pending_output, pending);
        let id = entry.core.id(self.lp.shared.index);
        self.notify_close(id, entry.state, &reason);
        self.count_closed(entry.core.fd, entry.core.seat);
    }

    /// Cuts a connection leaving the table loose from its timer, its handles and its groups.
    fn detach(&mut self, core: &mut ConnCore) {
        self.lp.fanout.leave_all((core.key, core.generation));
        if let Some((timer, _)) = core.timeout_timer.take() {
            self.lp.timers.cancel(timer);
        }
        if let Some(shared) = core.handle.take() {
            shared.mark_closed();
        }
    }

    /// Closes a connection whose output is flushed: at once if the peer already finished
    /// sending, otherwise through a lingering close. Without a reason given, both sides
    /// finished: the write side was shut and the peer's end of stream read.
    ///
    /// During a stop, a connection that is quiet — nothing buffered or unread, everything it
    /// sent acknowledged — is closed at once (a FIN), without lingering: an idle keep-alive
    /// connection, whose peer may keep it open for minutes, or one whose last answer the peer
    /// has (nginx closes those the same way at its stop). A reset then risks nothing the
    /// peer was sent.
    pub(super) fn close_graceful(&mut self, key: usize) {
        let mut entry = self.conns.remove(key);
        self.detach(&mut entry.core);
        let reason = entry.core.state.take_reason(CloseReason::PeerClosed);
        let quiet = self.stopping
            && entry.input.is_empty()
            && socket::is_quiet(entry.core.fd.as_raw_fd(), entry.core.state.is_write_shut());
        let id = entry.core.id(self.lp.shared.index);
        self.notify_close(id, entry.state, &reason);
        self.release(entry.core, !quiet);
    }

    /// `on_open` refused a connection: what it wrote (a goodbye) is sent, and the socket
    /// closes — after a lingering close when there was a goodbye, so that it arrives; at once
    /// otherwise. Output the kernel does not take at once is dropped. `registered`: the
    /// socket is in epoll already (under a connecting or handshake token).
    pub(super) fn refuse(&mut self, mut core: ConnCore, registered: bool, why: Refusal) {
        let stats = &self.lp.shared.stats;
        stats.count_refusal(Some(why));
        stats.count_close(&CloseReason::Refused(why));
        log::debug!("eventide: on_open refused a connection ({why})");
        self.detach(&mut core);
        let tls = core.tls.is_some();
        if tls {
            core.encrypt_staged(&mut self.lp);
            core.send_close_notify(&mut self.lp);
        }
        let goodbye = tls || core.out.is_some() || !self.lp.staging.is_empty();
        if !self.lp.staging.is_empty() {
            core.send_staged(&mut self.lp, Extra::None);
        }
        if let Some(out) = core.out.take() {
            log::debug!(
                "eventide: {} bytes of a refusal the kernel did not take",
                out.len()
            );
            drop_by(&self.lp.shared.stats.pending_output, out.len() as u64);
        }
        core.state.registration = if registered {
            Registration::Registered(Interest::Idle)
        } else {
            Registration::Deregistered
        };
        self.release(core, goodbye);
    }

    /// The socket of a connection that has left the table, its output flushed: closed at once
    /// if the peer finished sending (or without `linger`, or with lingering off), otherwise
    /// shut for writing and kept — read and discarded — until the peer's FIN or the linger
    /// timeout.
    fn release(&mut self, core: ConnCore, linger: bool) {
        let timeout = self.lp.cfg.linger_timeout;
        if !linger || core.state.read == ReadSide::Closed || timeout.is_zero() {
            return self.count_closed(core.fd, core.seat);
        }
        if !core.state.is_write_shut() && socket::shutdown_write(&core.fd).is_err() {
            return self.count_closed(core.fd, core.seat);
        }
        let vacant = self.lingering.vacant_entry();
        let lkey = vacant.key();
        let generation = core.generation;
        let tok = token::make(token::LINGER, lkey, generation);
        let fd = core.fd.as_raw_fd();
        let registered = if core.state.registration == Registration::Deregistered {
            self.lp.epoll.add(fd, READABLE | READ_CLOSED, tok)
        } else {
            self.lp.epoll.modify(fd, READABLE | READ_CLOSED, tok)
        };
        if registered.is_err() {
            return self.count_closed(core.fd, core.seat);
        }
        let mut deadline = self.lp.now + timeout;
        if let Some(stop) = self.stop_deadline {
            deadline = deadline.min(stop);
        }
        let kind = TimerKind::Linger {
            key: lkey as u32,
            generation,
        };
        let timer = self.lp.timers.insert(deadline, kind, None);
        vacant.insert(Lingering {
            fd: core.fd,
            generation,
            timer,
            seat: core.seat,
        });
    }

    /// Readiness on a lingering socket: discard input; close at end of stream or error.
    pub(super) fn linger_event(&mut self, key: usize, generation: u32, events: u32) {
        let Some(l) = self.lingering.get(key) else {
            return;
        };
        if l.generation != generation {
            return;
        }
        let fd = l.fd.as_raw_fd();
        let mut done = events & ERROR != 0;
        if !done {
            for _ in 0..LINGER_READS {
                match socket::read(fd, &mut self.read_buf) {
                    Ok(0) => {
                        done = true;
                        break;
                    }
                    Ok(n) if n < self.read_buf.len() => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
        }
        if done || (events & HANG_UP != 0 && events & READABLE == 0) {
            self.close_lingering(key);
        }
    }

    pub(super) fn linger_expired(&mut self, key: usize, generation: u32) {
        if matches!(self.lingering.get(key), Some(l) if l.generation == generation) {
            self.close_lingering(key);
        }
    }

    /// During a stop, every [`STOP_SWEEP`] until none is left: the lingering closes whose
    /// socket is quiet end (see [`close_graceful`](Self::close_graceful)) — the peer has
    /// everything, its FIN included, once its (possibly delayed) acknowledgement is in. The
    /// rest still wait for the peer's FIN, up to the stop deadline.
    pub(super) fn sweep_lingering(&mut self) {
        let quiet: Vec<usize> = self
            .lingering
            .iter()
            .filter(|(_, l)| socket::is_quiet(l.fd.as_raw_fd(), true))
            .map(|(k, _)| k)
            .collect();
        for key in quiet {
            self.close_lingering(key);
        }
        // Connections still open may linger later; the loop exits when none is left.
        if !self.lingering.is_empty() || !self.conns.is_empty() {
            let at = self.lp.now + STOP_SWEEP;
            self.lp.timers.insert(at, TimerKind::StopSweep, None);
        }
    }

    fn close_lingering(&mut self, key: usize) {
        let l = self.lingering.remove(key);
        self.lp.timers.cancel(l.timer);
        self.count_closed(l.fd, l.seat);
    }

    fn notify_close(&mut self, id: ConnId, state: H::State, reason: &CloseReason) {
        self.lp.shared.stats.count_close(reason);
        let handler = &mut self.handler;
        self.lp
            .callback("on_close", |_| handler.on_close(id, state, reason));
    }

    /// A connection's descriptor closes: it and its seat are dropped, then counted (in that
    /// order, so whoever sees the count fall can use the seat).
    pub(super) fn count_closed(&mut self, fd: OwnedFd, seat: Seat) {
        drop(fd);
        drop(seat);
        let stats = &self.lp.shared.stats;
        drop_by(&stats.connections, 1);
        bump(&stats.closed, 1);
    }

    /// Stop accepting, tell every connection (`on_stop`: by default it closes, stops reading,
    /// and closes once its output is flushed), and close whatever is left at `deadline`.
    pub(super) fn begin_stop(&mut self, deadline: Instant) {
        if self.stopping {
            // A later stop with an earlier deadline (`StopHandle::stop_now`) brings it forward.
            if self.stop_deadline.is_some_and(|d| deadline < d) {
                self.stop_deadline = Some(deadline);
                self.lp
                    .timers
                    .insert(deadline, TimerKind::StopDeadline, None);
            }
            return;
        }
        self.stopping = true;
        self.stop_deadline = Some(deadline);
        // What was published before the stop reaches every member before its goodbye.
        self.finish_sweeps();
        self.abandon_connects();
        self.abandon_handshakes();
        // UDP sockets: send what replies the kernel takes now, then close.
        for i in 0..self.udp.len() {
            self.udp_flush(i);
        }
        self.udp.clear();
        self.close_listeners();
        let keys: Vec<(usize, u32)> = self
            .conns
            .iter()
            .map(|(k, e)| (k, e.core.generation))
            .collect();
        // Each connection's protocol may say goodbye first (`on_stop`); by default it closes.
        for (key, generation) in keys {
            if self.alive(key, generation) && !self.conns[key].core.state.is_closing() {
                self.call_as(
                    key,
                    || CloseReason::ServerShutdown,
                    |h, c, s| h.on_stop(c, s),
                );
            }
        }
        self.sweep_lingering();
        // Application timers end with the server; the loop's own (timeouts, lingering
        // closes) still bound the stop.
        self.lp
            .timers
            .retain(|k| !matches!(k, TimerKind::Conn { .. } | TimerKind::Loop { .. }));
        self.lp
            .timers
            .insert(deadline, TimerKind::StopDeadline, None);
    }

    /// Stops accepting: the listeners leave epoll and are dropped. Deleted from epoll before
    /// the descriptor closes: a socket handed to another process stays open there, and epoll
    /// forgets a registration only when the last descriptor of the socket closes.
    pub(super) fn close_listeners(&mut self) {
        for listener in self.listeners.iter_mut() {
            if let Some(l) = listener.take() {
                if l.armed {
                    let _ = self.lp.epoll.delete(l.sock.as_raw_fd());
                }
            }
        }
    }

    /// The stop deadline passed: close whatever is left, output or not.
    pub(super) fn force_close_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let reason = self.conns[key]
                .core
                .state
                .take_reason(CloseReason::ServerShutdown);
            self.close_now(key, reason);
        }
        let keys: Vec<usize> = self.lingering.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close_lingering(key);
        }
    }
}
