//! The event loop: one thread, one epoll instance, and everything that thread owns.
//!
//! Each turn of the loop is one `epoll_wait` (its timeout is the nearest timer deadline, or
//! zero while connections still have read budget left or a group's broadcasts are being
//! written), then, in order: the I/O events of that wait, the tasks other threads posted (if
//! the wake-up eventfd fired), connections whose reading resumed, due timers, and one slice of
//! each group's sweep.
//!
//! * `open.rs` — the one way into the connection table ([`Opening`](open::Opening)).
//! * `io_path.rs` — dispatching events, the read loop (plain and TLS), delivering input to
//!   the handler, writing queued output, the ready list.
//! * `settle.rs` — after every callback: send what it staged, apply the connection's plan.
//! * `close.rs` — closing connections, the lingering close, and graceful stop.
//! * `connect.rs` — outbound connects: start, completion, timeout, failure reports.
//! * `tasks.rs` — work posted by other threads: hand-offs, closures, connection-handle
//!   operations, worker-pool results, broadcasts from other loops.
//! * `fanout.rs` — taking in what callbacks broadcast to a group or wrote to another
//!   connection of the loop, after each event.
//! * `sweep.rs` — writing each group's broadcasts to its members, a slice of members per
//!   turn, and bringing a member up to date before anything else reaches it.
//! * `timeouts.rs` — idle and read timeouts, one lazily re-armed timer per connection.
//! * `udp.rs` — UDP sockets: batched receive, handler calls, batched replies.
//! * `tls.rs` — TLS handshakes before `on_open`.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::acceptor::{self, Accepted, Balancer, Drain};
use crate::buffer::InBuffer;
use crate::config::Config;
use crate::conn::ConnCore;
use crate::cx::{LoopCore, LoopCx, TimerKind};
use crate::handler::Handler;
use crate::listener::Listener;
use crate::mailbox::{LoopShared, Task};
use crate::shared::ServerShared;
use crate::stats::bump;
use crate::sys::epoll::{Epoll, Events, READABLE};
use crate::sys::udp::RecvBatch;
use crate::token;
use crate::udp::UdpSocketState;

mod close;
mod connect;
mod fanout;
mod io_path;
mod open;
mod settle;
mod sweep;
mod tasks;
mod timeouts;
mod tls;
mod udp;

/// One connection in the loop's table: the loop's record, the inbound remainder and the
/// handler's state, side by side so one callback can borrow all three.
pub(crate) struct Entry<S> {
    pub core: ConnCore,
    pub input: InBuffer,
    pub state: S,
}

/// What a loop thread is started with (built on the caller's thread, so set-up errors surface
/// from `start`).
pub(crate) struct LoopParts<H> {
    pub handler: H,
    pub epoll: Epoll,
    pub shared: Arc<LoopShared>,
    pub server: Arc<ServerShared>,
    pub cfg: Config,
    pub listeners: Vec<Listener>,
    pub udp: Vec<UdpSocketState>,
}

pub(crate) struct EventLoop<H: Handler> {
    handler: H,
    lp: LoopCore,
    /// What every loop of the server shares (the other loops, the connection limit).
    server: Arc<ServerShared>,
    /// This loop's UDP sockets.
    udp: Vec<UdpSocketState>,
    conns: Slab<Entry<H::State>>,
    lingering: Slab<close::Lingering>,
    handshakes: Slab<tls::Handshake>,
    /// Outbound connects in progress.
    connecting: Slab<connect::Pending>,
    listeners: Vec<Option<Listener>>,
    balancer: Balancer,
    read_buf: Vec<u8>,
    events: Events,
    tasks: Vec<Task>,
    accepted: Vec<Accepted>,
    /// Connections to read (or re-deliver input to) without waiting for epoll.
    ready: Vec<(usize, u32)>,
    stopping: bool,
    stop_deadline: Option<Instant>,
    /// Receive buffers for this loop's UDP sockets (only if it has any).
    udp_recv: Option<RecvBatch>,
}

/// Where the bytes shown to `on_data` come from. (Each variant holds one word, so a `Src` is
/// passed in two registers.)
#[derive(Clone, Copy)]
pub(crate) enum Src {
    /// The first `n` bytes of the loop's read buffer: a plain read.
    Read(usize),
    /// TLS plaintext decrypted in place in the loop's read buffer, after its record's header.
    Decrypted(Span),
    /// The connection's own inbound remainder.
    Buffered,
}

/// A range of the loop's read buffer, in one word (offsets under 4 GiB).
#[derive(Clone, Copy)]
pub(crate) struct Span(u64);

impl Span {
    /// `start..end`, if both fit in 32 bits.
    pub(crate) fn new(start: usize, end: usize) -> Option<Span> {
        let (start, end) = (u32::try_from(start).ok()?, u32::try_from(end).ok()?);
        Some(Span(u64::from(start) << 32 | u64::from(end)))
    }

    #[inline]
    pub(crate) fn start(self) -> usize {
        (self.0 >> 32) as usize
    }

    #[inline]
    pub(crate) fn end(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(parts: LoopParts<H>) -> EventLoop<H> {
        let cfg = parts.cfg;
        let pool = parts.server.pool.clone();
        let udp_recv =
            (!parts.udp.is_empty()).then(|| RecvBatch::new(cfg.udp_batch, cfg.udp_max_datagram));
        #[allow(unused_mut)]
        let mut lp = LoopCore::new(
            parts.epoll,
            Arc::clone(&parts.server.loops),
            parts.shared.index,
            cfg,
            pool,
        );
        #[cfg(feature = "tokio")]
        {
            lp.tokio = parts
                .server
                .tokio
                .as_ref()
                .map(|b| crate::bridge::running::LoopFutures::new(b.handle().clone()));
        }
        EventLoop {
            handler: parts.handler,
            balancer: Balancer::new(cfg.balance),
            lp,
            server: parts.server,
            udp: parts.udp,
            conns: Slab::new(),
            lingering: Slab::new(),
            handshakes: Slab::new(),
            connecting: Slab::new(),
            listeners: parts.listeners.into_iter().map(Some).collect(),
            read_buf: vec![0; cfg.read_buffer],
            events: Events::with_capacity(cfg.max_events),
            tasks: Vec::new(),
            accepted: Vec::new(),
            ready: Vec::new(),
            stopping: false,
            stop_deadline: None,
            udp_recv,
        }
    }

    /// Sets the loop up on its thread, says how that went on `started` (which
    /// [`Builder::start`](crate::Builder::start) waits for, so a loop that cannot register
    /// its own descriptors fails the start instead of leaving an acceptor feeding a loop
    /// that never serves), then runs until the server stops and every connection is closed.
    /// A loop that fails later stops the whole server, for the same reason.
    pub(crate) fn run(mut self, started: Sender<(usize, io::Result<()>)>) -> io::Result<()> {
        let index = self.lp.shared.index;
        let set_up = self.set_up();
        let failed = set_up.is_err();
        let _ = started.send((index, set_up));
        drop(started);
        if failed {
            self.lp.shared.mark_exited();
            return Ok(()); // reported by `start`
        }
        self.lp.tick();
        let handler = &mut self.handler;
        self.lp
            .callback("on_boot", |lp| handler.on_boot(&mut LoopCx::new(lp)));
        self.flush_outbox();
        self.start_connects();
        while !(self.stopping
            && self.conns.is_empty()
            && self.lingering.is_empty()
            && self.connecting.is_empty()
            && self.handshakes.is_empty())
        {
            if let Err(e) = self.turn() {
                log::error!("eventide: loop {index} failed, stopping the server: {e}");
                self.server.stop(self.lp.cfg.stop_timeout);
                self.force_close_all();
                self.finish();
                return Err(io::Error::new(e.kind(), format!("loop {index}: {e}")));
            }
        }
        self.finish();
        Ok(())
    }

    /// The loop's own registrations: its wake-up eventfd, its listeners, its UDP sockets.
    fn set_up(&mut self) -> io::Result<()> {
        self.lp.shared.enter();
        // Faults meet the set-up only when asked to (a torture run needs its servers to start).
        #[cfg(feature = "faults")]
        let setup_faults = self.lp.cfg.faults.is_some_and(|f| f.in_setup());
        #[cfg(feature = "faults")]
        if setup_faults {
            self.lp.shared.inject_faults(self.lp.cfg.faults);
        }
        let index = self.lp.shared.index;
        let context = |what: &str, e: io::Error| {
            io::Error::new(e.kind(), format!("loop {index}: registering {what}: {e}"))
        };
        let waker = token::make(token::WAKER, 0, 0);
        self.lp
            .epoll
            .add(self.lp.shared.eventfd_raw(), READABLE, waker)
            .map_err(|e| context("its wake-up eventfd", e))?;
        for i in 0..self.listeners.len() {
            self.arm_listener(i).map_err(|e| context("a listener", e))?;
        }
        self.arm_udp().map_err(|e| context("a UDP socket", e))?;
        #[cfg(feature = "faults")]
        if !setup_faults {
            self.lp.shared.inject_faults(self.lp.cfg.faults);
        }
        Ok(())
    }

    /// One `epoll_wait` and everything it makes due.
    fn turn(&mut self) -> io::Result<()> {
        let idle = self.ready.is_empty() && !self.lp.fanout.sweeping();
        let timeout = if idle && !self.lp.shared.has_local_tasks() {
            self.lp
                .timers
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let n = self.lp.epoll.wait(&mut self.events, timeout)?;
        let stats = &self.lp.shared.stats;
        bump(&stats.epoll_waits, 1);
        bump(&stats.events, n as u64);
        self.lp.tick();
        let mut woken = false;
        for i in 0..n {
            let (tok, flags) = self.events.get(i);
            let (tag, key, generation) = token::split(tok);
            if tag == token::CONN {
                self.conn_event(key, generation, flags);
            } else {
                woken |= self.other_event(tag, key, generation, flags);
            }
            self.flush_outbox(); // what the event's callbacks broadcast or wrote to others
        }
        if woken || self.lp.shared.has_local_tasks() {
            self.run_tasks(woken);
        }
        self.run_ready();
        self.run_timers();
        if !self.lp.connects.is_empty() {
            self.start_connects();
            self.flush_outbox();
        }
        if self.lp.fanout.sweeping() {
            self.sweep();
        }
        if self.lp.stop_requested {
            self.lp.stop_requested = false;
            self.server.stop(self.lp.cfg.stop_timeout);
        }
        Ok(())
    }

    /// Dispatches an event that is not a connection's (out of line, so the loop over a busy
    /// wait's connection events stays small). Returns whether it was the wake-up eventfd's.
    #[inline(never)]
    fn other_event(&mut self, tag: u64, key: usize, generation: u32, flags: u32) -> bool {
        match tag {
            token::LISTENER => self.accept(key),
            token::LINGER => self.linger_event(key, generation, flags),
            token::CONNECTING => self.connect_event(key, generation, flags),
            token::UDP => self.udp_event(key, flags),
            token::HANDSHAKE => self.handshake_event(key, generation, flags),
            _ => return true,
        }
        false
    }

    fn arm_listener(&mut self, i: usize) -> io::Result<()> {
        if let Some(l) = self.listeners[i].as_mut() {
            let tok = token::make(token::LISTENER, i, 0);
            self.lp.epoll.add(l.sock.as_raw_fd(), READABLE, tok)?;
            l.armed = true;
        }
        Ok(())
    }

    /// Drains listener `i` and hands each connection to its loop.
    fn accept(&mut self, i: usize) {
        let Some(listener) = self.listeners[i].as_ref() else {
            return;
        };
        let mut accepted = std::mem::take(&mut self.accepted);
        let outcome = acceptor::drain(
            listener,
            self.lp.cfg.accept_batch,
            &self.server,
            &self.lp.shared,
            &mut accepted,
        );
        if outcome == Drain::BackOff {
            self.back_off(i);
        }
        let server = Arc::clone(&self.server);
        let mut woken = 0u64; // bit set of loops to wake (loops beyond 64 are woken at once)
        for a in accepted.drain(..) {
            match self.dispatch(a, &server) {
                Some(target) if target < 64 => woken |= 1 << target,
                Some(target) => server.loops[target].wake(),
                None => {}
            }
        }
        while woken != 0 {
            let target = woken.trailing_zeros() as usize;
            woken &= woken - 1;
            server.loops[target].wake();
        }
        self.accepted = accepted;
    }

    /// Stops accepting on listener `i` for the accept back-off (descriptors ran out).
    fn back_off(&mut self, i: usize) {
        if let Some(l) = self.listeners[i].as_mut() {
            let _ = self.lp.epoll.delete(l.sock.as_raw_fd());
            l.armed = false;
        }
        let at = self.lp.now + self.lp.cfg.accept_backoff;
        self.lp
            .timers
            .insert(at, TimerKind::AcceptRetry { listener: i }, None);
    }

    /// Opens an accepted connection on this loop, or queues it for the loop the balancer
    /// picks; that loop, which is to be woken.
    #[inline]
    fn dispatch(&mut self, a: Accepted, server: &ServerShared) -> Option<usize> {
        let Accepted {
            fd,
            peer,
            tls,
            mut seat,
        } = a;
        let me = self.lp.shared.index;
        let target = if self.lp.cfg.reuse_port {
            me
        } else {
            match self.balancer.pick(peer, &server.loops) {
                // A loop that failed (it stops the server) is never handed a connection it
                // would not serve.
                t if server.loops[t].has_exited() => me,
                t => t,
            }
        };
        seat.assign(&server.loops[target]);
        if target == me {
            self.open_accepted(fd, peer, tls, seat);
            return None;
        }
        server.loops[target].push(Task::Register {
            fd,
            peer,
            tls,
            seat,
        });
        Some(target)
    }

    fn run_timers(&mut self) {
        let now = self.lp.now;
        while let Some((_, kind)) = self.lp.timers.pop_expired(now) {
            bump(&self.lp.shared.stats.timers_fired, 1);
            match kind {
                TimerKind::Conn {
                    key,
                    generation,
                    token,
                } => {
                    let key = key as usize;
                    if self.alive(key, generation) && self.up_to_date(key, generation) {
                        self.call(key, |h, c, s| h.on_timer(c, s, token));
                    }
                }
                TimerKind::Loop { token, adapter } => {
                    let handler = &mut self.handler;
                    self.lp.callback("on_tick", |lp| {
                        handler.on_tick(&mut LoopCx::for_tick(lp, adapter), token)
                    });
                }
                TimerKind::Linger { key, generation } => {
                    self.linger_expired(key as usize, generation)
                }
                TimerKind::AcceptRetry { listener } => {
                    if !self.stopping {
                        if let Err(e) = self.arm_listener(listener) {
                            log::error!("eventide: re-arming a listener failed: {e}");
                            let at = self.lp.now + self.lp.cfg.accept_backoff;
                            self.lp
                                .timers
                                .insert(at, TimerKind::AcceptRetry { listener }, None);
                        }
                    }
                }
                TimerKind::StopDeadline => self.force_close_all(),
                TimerKind::StopSweep => self.sweep_lingering(),
                TimerKind::ConnectTimeout { key, generation } => {
                    self.connect_timer(key as usize, generation, false)
                }
                TimerKind::ConnectRetry { key, generation } => {
                    self.connect_timer(key as usize, generation, true)
                }
                TimerKind::HandshakeTimeout { key, generation } => {
                    self.handshake_expired(key as usize, generation)
                }
                TimerKind::ConnTimeout { key, generation } => {
                    let key = key as usize;
                    if self.alive(key, generation) && self.up_to_date(key, generation) {
                        self.check_timeouts(key);
                    }
                }
            }
            self.flush_outbox();
        }
    }

    /// Whether slot `key` still holds the connection of that generation.
    fn alive(&self, key: usize, generation: u32) -> bool {
        matches!(self.conns.get(key), Some(e) if e.core.generation == generation)
    }

    /// The loop is exiting: drop queued work and tell the handler.
    fn finish(&mut self) {
        self.lp.shared.mark_exited();
        let mut tasks = std::mem::take(&mut self.tasks);
        self.lp.shared.take_tasks(&mut tasks, false);
        for task in tasks {
            // A hand-off that will not be served: reset it (its seat goes with it).
            if let Task::Register { fd, .. } = task {
                crate::sys::socket::abort(fd);
            }
        }
        self.lp.timers.clear();
        let handler = &mut self.handler;
        self.lp.callback("on_shutdown", |_| handler.on_shutdown());
    }
}

#[cfg(test)]
mod size_tests {
    /// An idle connection costs its table entry and nothing else on the heap; keep the entry
    /// small (the benchmark target is 256 bytes of RSS per idle connection, all included).
    #[test]
    fn connection_entry_stays_small() {
        let entry = std::mem::size_of::<super::Entry<()>>();
        assert!(
            entry <= 192,
            "a connection's table entry grew to {entry} bytes"
        );
    }
}
