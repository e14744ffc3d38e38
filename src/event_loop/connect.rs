//! The loop side of outbound connections: starting a non-blocking connect, completing it when
//! epoll reports writability, timing it out, and reporting failures to the handler.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::AcqRel;

use super::EventLoop;
use crate::addr::Addr;
use crate::connector::{busy_retry_delay, Connect, ConnectError, Pending};
use crate::cx::{LoopCore, LoopCx, TimerKind};
use crate::handler::Handler;
use crate::stats::bump;
use crate::sys::epoll::{ERROR, HANG_UP, READ_CLOSED, WRITABLE};
use crate::sys::socket::{self, Progress};
use crate::token;

impl LoopCore {
    /// Starts connecting. Any failure — now or later — reaches `on_connect_error`.
    pub(crate) fn connect(&mut self, c: Connect) {
        let Connect {
            addr,
            timeout,
            context,
            tls,
        } = c;
        let stats = &self.shared.stats;
        bump(&stats.connects, 1);
        let sock = match socket::stream_socket(&addr, self.cfg.nodelay) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(ConnectError::new(addr, e, context)),
        };
        let progress = match socket::start_connect(&sock, &addr) {
            Ok(p) => p,
            Err(e) => return self.connect_failed(ConnectError::new(addr, e, context)),
        };
        self.shared.stats.assigned.fetch_add(1, AcqRel);
        let generation = self.next_generation();
        let deadline = self.now + timeout.unwrap_or(self.cfg.connect_timeout);
        let key = self.connecting.vacant_key();
        let mut pending = Pending {
            sock,
            generation,
            addr,
            deadline,
            timer: None,
            context,
            registered: false,
            retries: 0,
            tls,
        };
        if progress == Progress::Busy {
            let at = (self.now + busy_retry_delay(0)).min(deadline);
            let kind = TimerKind::ConnectRetry {
                key: key as u32,
                generation,
            };
            pending.timer = Some(self.timers.insert(at, kind, None));
        } else {
            // Connected already (a Unix socket) or in progress: writability says which.
            let tok = token::make(token::CONNECTING, key, generation);
            let fd = pending.sock.as_raw_fd();
            if let Err(e) = self.epoll.add(fd, WRITABLE | READ_CLOSED, tok) {
                self.shared.stats.assigned.fetch_sub(1, AcqRel);
                return self.connect_failed(pending.into_error(e));
            }
            pending.registered = true;
            let kind = TimerKind::ConnectTimeout {
                key: key as u32,
                generation,
            };
            pending.timer = Some(self.timers.insert(deadline, kind, None));
        }
        self.connecting.insert(pending);
    }

    fn connect_failed(&mut self, error: ConnectError) {
        bump(&self.shared.stats.connect_errors, 1);
        self.connect_failures.push(error);
    }

    fn pending_alive(&self, key: usize, generation: u32) -> bool {
        matches!(self.connecting.get(key), Some(p) if p.generation == generation)
    }

    /// Takes a pending connect out of the table (and out of epoll and the timer heap).
    fn take_pending(&mut self, key: usize) -> Pending {
        let p = self.connecting.remove(key);
        if let Some(t) = p.timer {
            self.timers.cancel(t);
        }
        p
    }
}

impl<H: Handler> EventLoop<H> {
    /// Writability (or an error) on a connecting socket: the handshake finished one way or
    /// the other.
    pub(super) fn connect_event(&mut self, key: usize, generation: u32, events: u32) {
        if !self.lp.pending_alive(key, generation) || events & (WRITABLE | ERROR | HANG_UP) == 0 {
            return;
        }
        let p = self.lp.take_pending(key);
        let outcome = match socket::take_error(&p.sock) {
            Ok(None) if events & (ERROR | HANG_UP) == 0 => Ok(()),
            Ok(None) => Err(io::Error::from(io::ErrorKind::NotConnected)),
            Ok(Some(e)) | Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => self.connected(p),
            Err(e) => self.fail_pending(p, e),
        }
    }

    /// The connect timer fired: time out, or retry a Unix connect refused for a full backlog.
    pub(super) fn connect_timer(&mut self, key: usize, generation: u32, retry: bool) {
        if !self.lp.pending_alive(key, generation) {
            return;
        }
        let mut p = self.lp.take_pending(key);
        if !retry || self.lp.now >= p.deadline {
            let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            return self.fail_pending(p, e);
        }
        match socket::start_connect(&p.sock, &p.addr) {
            Ok(Progress::Busy) => {
                p.retries += 1;
                let at = (self.lp.now + busy_retry_delay(p.retries)).min(p.deadline);
                let new_key = self.lp.connecting.vacant_key();
                let kind = TimerKind::ConnectRetry {
                    key: new_key as u32,
                    generation,
                };
                p.timer = Some(self.lp.timers.insert(at, kind, None));
                self.lp.connecting.insert(p);
            }
            Ok(_) => {
                let new_key = self.lp.connecting.vacant_key();
                let tok = token::make(token::CONNECTING, new_key, generation);
                if let Err(e) = self
                    .lp
                    .epoll
                    .add(p.sock.as_raw_fd(), WRITABLE | READ_CLOSED, tok)
                {
                    return self.fail_pending(p, e);
                }
                p.registered = true;
                let kind = TimerKind::ConnectTimeout {
                    key: new_key as u32,
                    generation,
                };
                p.timer = Some(self.lp.timers.insert(p.deadline, kind, None));
                self.lp.connecting.insert(p);
            }
            Err(e) => self.fail_pending(p, e),
        }
    }

    fn connected(&mut self, p: Pending) {
        let peer = match &p.addr {
            Addr::Tcp(a) => Some(*a),
            Addr::Unix(_) => None,
        };
        let fd: OwnedFd = p.sock.into();
        match p.tls {
            Some(tls) => self.start_client_handshake(fd, p.addr, peer, p.context, &tls),
            None => self.open_outbound(fd, peer, p.context, p.registered),
        }
    }

    fn fail_pending(&mut self, p: Pending, e: io::Error) {
        self.lp.shared.stats.assigned.fetch_sub(1, AcqRel);
        bump(&self.lp.shared.stats.connect_errors, 1);
        let error = p.into_error(e); // drops the socket
        self.report_connect_error(error);
    }

    /// Hands queued connect failures to the handler.
    pub(super) fn report_connect_failures(&mut self) {
        while let Some(error) = self.lp.connect_failures.pop() {
            self.report_connect_error(error);
        }
    }

    fn report_connect_error(&mut self, error: ConnectError) {
        let handler = &mut self.handler;
        self.lp.callback("on_connect_error", |lp| {
            handler.on_connect_error(&mut LoopCx::new(lp), error)
        });
    }

    /// Drops every connect in progress (server stop).
    pub(super) fn abandon_connects(&mut self) {
        let keys: Vec<usize> = self.lp.connecting.iter().map(|(k, _)| k).collect();
        for key in keys {
            let p = self.lp.take_pending(key);
            let e = io::Error::new(io::ErrorKind::Interrupted, "the server is stopping");
            self.fail_pending(p, e);
        }
    }
}
