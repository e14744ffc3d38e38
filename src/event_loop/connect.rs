//! The loop side of outbound connects: starting a non-blocking connect, completing it when
//! epoll reports writability, timing it out, and reporting failures to the handler.
//!
//! A connect asked for from a callback ([`LoopCx::connect`]) or posted from another thread
//! starts at the end of the turn; each in progress holds its [`Seat`] on this loop, so
//! least-connections balancing counts it.

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::open::{Opening, TlsOpening};
use super::EventLoop;
use crate::addr::Addr;
use crate::connector::{Connect, ConnectError};
use crate::cx::{LoopCx, Seat, TimerKind};
use crate::handler::Handler;
use crate::stats::bump;
use crate::sys::epoll::{ERROR, HANG_UP, READ_CLOSED, WRITABLE};
use crate::sys::socket::{self, Progress};
use crate::timer::TimerId;
use crate::tls::ClientTls;
use crate::token;

/// A connect in progress, owned by its loop until it completes or fails.
pub(crate) struct Pending {
    sock: Socket,
    generation: u32,
    addr: Addr,
    deadline: Instant,
    /// The timeout (or, for a busy Unix listener, the retry) timer.
    timer: Option<TimerId>,
    context: Option<Box<dyn Any + Send>>,
    /// Registered with epoll (not waiting to retry a busy Unix listener).
    registered: bool,
    /// Retries made after `EAGAIN` (for the back-off).
    retries: u32,
    /// TLS to run once connected.
    tls: Option<ClientTls>,
    seat: Seat,
}

impl Pending {
    fn into_error(self, error: io::Error) -> ConnectError {
        ConnectError::new(self.addr, error, self.context)
    }
}

/// Back-off before retrying a Unix connect whose listener's backlog was full.
fn busy_retry_delay(retries: u32) -> Duration {
    Duration::from_millis((1u64 << retries.min(6)).min(50))
}

impl<H: Handler> EventLoop<H> {
    /// Starts the connects callbacks asked for during this turn (failing them if the loop is
    /// stopping).
    pub(super) fn start_connects(&mut self) {
        while !self.lp.connects.is_empty() {
            for c in std::mem::take(&mut self.lp.connects) {
                self.start_connect(c);
            }
        }
    }

    /// Starts connecting. Any failure — now or later — reaches `on_connect_error`.
    pub(super) fn start_connect(&mut self, c: Connect) {
        let Connect {
            addr,
            timeout,
            context,
            tls,
        } = c;
        if self.stopping {
            let e = io::Error::new(io::ErrorKind::Interrupted, "the server is stopping");
            return self.connect_failed(ConnectError::new(addr, e, context));
        }
        bump(&self.lp.shared.stats.connects, 1);
        let sock = match socket::stream_socket(&addr, self.lp.cfg.nodelay) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(ConnectError::new(addr, e, context)),
        };
        let progress = match socket::start_connect(&sock, &addr) {
            Ok(p) => p,
            Err(e) => return self.connect_failed(ConnectError::new(addr, e, context)),
        };
        let pending = Pending {
            sock,
            generation: self.lp.next_generation(),
            deadline: self.lp.now + timeout.unwrap_or(self.lp.cfg.connect_timeout),
            addr,
            timer: None,
            context,
            registered: false,
            retries: 0,
            tls,
            seat: Seat::outbound(&self.lp.shared),
        };
        self.wait_for_connect(pending, progress);
    }

    /// Puts a connect in the table: waiting for writability (in progress, or connected at
    /// once), or for a retry (a busy Unix listener).
    fn wait_for_connect(&mut self, mut p: Pending, progress: Progress) {
        let key = self.connecting.vacant_key();
        let generation = p.generation;
        if progress == Progress::Busy {
            let at = (self.lp.now + busy_retry_delay(p.retries)).min(p.deadline);
            let kind = TimerKind::ConnectRetry {
                key: key as u32,
                generation,
            };
            p.timer = Some(self.lp.timers.insert(at, kind, None));
        } else {
            // Connected already (a Unix socket) or in progress: writability says which.
            let tok = token::make(token::CONNECTING, key, generation);
            if !p.registered {
                if let Err(e) = self
                    .lp
                    .epoll
                    .add(p.sock.as_raw_fd(), WRITABLE | READ_CLOSED, tok)
                {
                    return self.fail_pending(p, e);
                }
                p.registered = true;
            }
            let kind = TimerKind::ConnectTimeout {
                key: key as u32,
                generation,
            };
            p.timer = Some(self.lp.timers.insert(p.deadline, kind, None));
        }
        self.connecting.insert(p);
    }

    /// Counts a failed connect and tells the handler.
    pub(super) fn connect_failed(&mut self, error: ConnectError) {
        bump(&self.lp.shared.stats.connect_errors, 1);
        self.report_connect_error(error);
    }

    fn pending_alive(&self, key: usize, generation: u32) -> bool {
        matches!(self.connecting.get(key), Some(p) if p.generation == generation)
    }

    /// Takes a pending connect out of the table (and its timer out of the heap).
    fn take_pending(&mut self, key: usize) -> Pending {
        let p = self.connecting.remove(key);
        if let Some(t) = p.timer {
            self.lp.timers.cancel(t);
        }
        p
    }

    /// Writability (or an error) on a connecting socket: the handshake finished one way or
    /// the other.
    pub(super) fn connect_event(&mut self, key: usize, generation: u32, events: u32) {
        if !self.pending_alive(key, generation) || events & (WRITABLE | ERROR | HANG_UP) == 0 {
            return;
        }
        let p = self.take_pending(key);
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
        if !self.pending_alive(key, generation) {
            return;
        }
        let mut p = self.take_pending(key);
        if !retry || self.lp.now >= p.deadline {
            let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            return self.fail_pending(p, e);
        }
        match socket::start_connect(&p.sock, &p.addr) {
            Ok(progress) => {
                if progress == Progress::Busy {
                    p.retries += 1;
                }
                self.wait_for_connect(p, progress);
            }
            Err(e) => self.fail_pending(p, e),
        }
    }

    fn connected(&mut self, p: Pending) {
        let peer = match &p.addr {
            Addr::Tcp(a) => Some(*a),
            Addr::Unix(_) => None,
        };
        let opening = Opening {
            fd: OwnedFd::from(p.sock),
            peer,
            seat: p.seat,
            context: p.context,
            registered: p.registered,
            tls: None::<TlsOpening>,
        };
        match p.tls {
            Some(tls) => self.start_client_handshake(opening, p.addr, &tls),
            None => self.open(opening),
        }
    }

    fn fail_pending(&mut self, p: Pending, e: io::Error) {
        self.connect_failed(p.into_error(e)); // drops the socket and the seat
    }

    fn report_connect_error(&mut self, error: ConnectError) {
        let handler = &mut self.handler;
        self.lp.callback("on_connect_error", |lp| {
            handler.on_connect_error(&mut LoopCx::new(lp), error)
        });
    }

    /// Drops every connect in progress (server stop).
    pub(super) fn abandon_connects(&mut self) {
        let keys: Vec<usize> = self.connecting.iter().map(|(k, _)| k).collect();
        for key in keys {
            let p = self.take_pending(key);
            let e = io::Error::new(io::ErrorKind::Interrupted, "the server is stopping");
            self.fail_pending(p, e);
        }
    }
}
