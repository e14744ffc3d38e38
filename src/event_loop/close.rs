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
use crate::conn::state::{ReadSide, Registration};
use crate::conn::{CloseReason, ConnCore, ConnId};
use crate::cx::{Seat, TimerKind};
use crate::handler::Handler;
use crate::stats::{bump, drop_by};
use crate::sys::epoll::{ERROR, HANG_UP, READABLE, READ_CLOSED};
use crate::sys::socket;
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
        self.notify_close(entry.core.id, entry.state, &reason);
        self.count_closed(entry.core.fd, entry.core.seat);
    }

    /// Cuts a connection leaving the table loose from its timer, its handles and its groups.
    fn detach(&mut self, core: &mut ConnCore) {
        self.lp.fanout.leave_all((core.id.key, core.id.generation));
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
    pub(super) fn close_graceful(&mut self, key: usize) {
        let mut entry = self.conns.remove(key);
        self.detach(&mut entry.core);
        let reason = entry.core.state.take_reason(CloseReason::PeerClosed);
        let core = entry.core;
        self.notify_close(core.id, entry.state, &reason);
        let linger = self.lp.cfg.linger_timeout;
        if core.state.read == ReadSide::Closed || linger.is_zero() {
            return self.count_closed(core.fd, core.seat);
        }
        if !core.state.is_write_shut() && socket::shutdown_write(&core.fd).is_err() {
            return self.count_closed(core.fd, core.seat);
        }
        let vacant = self.lingering.vacant_entry();
        let lkey = vacant.key();
        let generation = core.id.generation;
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
        let mut deadline = self.lp.now + linger;
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

    /// Stop accepting, stop reading, and close every connection once its output is flushed
    /// (or at `deadline`).
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
            .map(|(k, e)| (k, e.core.id.generation))
            .collect();
        for (key, generation) in keys {
            if self.alive(key, generation) {
                self.conns[key]
                    .core
                    .state
                    .close(CloseReason::ServerShutdown);
                self.settle(key);
            }
        }
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
