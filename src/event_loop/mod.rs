//! The event loop: one thread, one epoll instance, and everything that thread owns.
//!
//! Each turn of the loop is one `epoll_wait` (its timeout is the nearest timer deadline, or
//! zero while connections still have read budget left), then, in order: the I/O events of
//! that wait, the tasks other threads posted (if the wake-up eventfd fired), connections
//! whose reading resumed, and due timers.
//!
//! * `io.rs` — reading, delivering input to the handler, writing, epoll interest.
//! * `close.rs` — closing connections, the lingering close, and graceful stop.
//! * `connect.rs` — outbound connects: start, completion, timeout, failure reports.
//! * `tasks.rs` — work posted by other threads: hand-offs, closures, connection-handle
//!   operations, worker-pool results.
//! * `timeouts.rs` — idle and read timeouts, one lazily re-armed timer per connection.
//! * `udp.rs` — UDP sockets: batched receive, handler calls, batched replies.
//! * `tls.rs` — TLS handshakes before `on_open`, and reading TLS connections.

use std::any::Any;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::acceptor::{self, Accepted, Balancer, Drain};
use crate::buffer::InBuffer;
use crate::builder::Config;
use crate::conn::ConnCore;
use crate::connector::{Connect, ConnectError, Pending};
use crate::handler::Handler;
use crate::listener::Listener;
use crate::mailbox::{LoopShared, Task};
use crate::server::ServerShared;
use crate::stats::{bump, LoopStatsSnapshot};
use crate::sys::epoll::{Epoll, Events, READABLE};
use crate::sys::udp::RecvBatch;
use crate::timer::{TimerId, Timers};
use crate::worker::WorkerPool;
pub(crate) use udp::{UdpSocketState, UDP_QUEUE_LIMIT};

mod close;
mod connect;
mod io_path;
mod tasks;
mod timeouts;
mod tls;
mod udp;

/// Epoll tokens: the top three bits say what the descriptor is, then a 32-bit generation and a
/// 29-bit slab key, so a stale event for a recycled slot is recognised and ignored.
pub(crate) mod token {
    pub const CONN: u64 = 0;
    pub const LISTENER: u64 = 1;
    pub const LINGER: u64 = 2;
    pub const WAKER: u64 = 3;
    pub const CONNECTING: u64 = 4;
    pub const UDP: u64 = 5;
    pub const HANDSHAKE: u64 = 6;
    const TAG_SHIFT: u32 = 61;
    pub const KEY_BITS: u32 = 29;
    pub const KEY_MASK: u64 = (1 << KEY_BITS) - 1;

    pub fn make(tag: u64, key: usize, generation: u32) -> u64 {
        (tag << TAG_SHIFT) | (u64::from(generation) << KEY_BITS) | (key as u64 & KEY_MASK)
    }

    pub fn split(token: u64) -> (u64, usize, u32) {
        (
            token >> TAG_SHIFT,
            (token & KEY_MASK) as usize,
            (token >> KEY_BITS) as u32,
        )
    }
}

/// Timer kinds a loop schedules.
#[derive(Clone, Debug)]
pub(crate) enum TimerKind {
    /// `Handler::on_timer` for a connection.
    Conn {
        key: u32,
        generation: u32,
        token: u64,
    },
    /// `Handler::on_tick`.
    Loop { token: u64 },
    /// A lingering close ran out of time.
    Linger { key: u32, generation: u32 },
    /// Re-arm a listener after an accept back-off.
    AcceptRetry { listener: usize },
    /// The graceful-stop deadline: close whatever is left.
    StopDeadline,
    /// Check a connection's idle and read timeouts.
    ConnTimeout { key: u32, generation: u32 },
    /// An outbound connect ran out of time.
    ConnectTimeout { key: u32, generation: u32 },
    /// Retry a Unix connect whose listener's backlog was full.
    ConnectRetry { key: u32, generation: u32 },
    /// A TLS handshake ran out of time.
    HandshakeTimeout { key: u32, generation: u32 },
}

/// The non-generic state of a loop, which callbacks reach through [`Conn`](crate::Conn) and
/// [`LoopCx`].
pub(crate) struct LoopCore {
    pub epoll: Epoll,
    pub shared: Arc<LoopShared>,
    pub server: Arc<ServerShared>,
    pub cfg: Config,
    /// Output written during the current callback, sent when it returns.
    pub staging: Vec<u8>,
    /// Plaintext written to a TLS connection during the current callback, encrypted when it
    /// returns.
    pub tls_plain: Vec<u8>,
    pub timers: Timers<TimerKind>,
    /// Time at the start of this turn of the loop.
    pub now: Instant,
    /// The same, in milliseconds since the timer epoch (for per-connection activity times).
    pub now_ms: u64,
    /// A callback asked to stop the server.
    pub stop_requested: bool,
    /// The server's worker pool, if it has one.
    pub pool: Option<Arc<WorkerPool>>,
    /// Outbound connects in progress.
    pub connecting: Slab<Pending>,
    /// Connects that failed at once, reported to the handler at the end of the turn.
    pub connect_failures: Vec<ConnectError>,
    /// The `Connect::context` of the outbound connection being opened (during `on_open`).
    pub open_context: Option<Box<dyn Any + Send>>,
    /// Generation for the next connection or connect (tells reused slots apart).
    next_generation: u32,
    /// This loop's UDP sockets.
    pub udp: Vec<UdpSocketState>,
}

impl LoopCore {
    pub(crate) fn next_generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = g.wrapping_add(1);
        g
    }

    /// Reads the clock once for this turn of the loop.
    pub(crate) fn tick(&mut self) {
        self.now = Instant::now();
        self.now_ms = self.timers.millis(self.now);
    }
}

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
    pub udp: Vec<socket2::Socket>,
}

pub(crate) struct EventLoop<H: Handler> {
    handler: H,
    lp: LoopCore,
    conns: Slab<Entry<H::State>>,
    lingering: Slab<close::Lingering>,
    handshakes: Slab<tls::Handshake>,
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

/// Where the bytes shown to `on_data` come from.
#[derive(Clone, Copy)]
pub(crate) enum Src {
    /// The first `n` bytes of the loop's read buffer.
    ReadBuf(usize),
    /// The connection's own inbound remainder.
    Buffered,
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(parts: LoopParts<H>) -> EventLoop<H> {
        let cfg = parts.cfg;
        let pool = parts.server.pool.clone();
        let udp = parts
            .udp
            .into_iter()
            .filter_map(|s| match UdpSocketState::new(s, cfg.udp_batch) {
                Ok(u) => Some(u),
                Err(e) => {
                    log::error!("eventide: dropping a UDP socket: {e}");
                    None
                }
            })
            .collect::<Vec<_>>();
        let udp_recv =
            (!udp.is_empty()).then(|| RecvBatch::new(cfg.udp_batch, cfg.udp_max_datagram));
        EventLoop {
            handler: parts.handler,
            balancer: Balancer::new(cfg.balance),
            lp: LoopCore {
                epoll: parts.epoll,
                shared: parts.shared,
                server: parts.server,
                cfg,
                staging: Vec::new(),
                tls_plain: Vec::new(),
                timers: Timers::new(),
                now: Instant::now(),
                now_ms: 0,
                stop_requested: false,
                pool,
                connecting: Slab::new(),
                connect_failures: Vec::new(),
                open_context: None,
                next_generation: 0,
                udp,
            },
            conns: Slab::new(),
            lingering: Slab::new(),
            handshakes: Slab::new(),
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

    /// Runs until the server stops and every connection is closed.
    pub(crate) fn run(mut self) -> io::Result<()> {
        self.lp.shared.enter();
        let waker = token::make(token::WAKER, 0, 0);
        self.lp
            .epoll
            .add(self.lp.shared.eventfd_raw(), READABLE, waker)?;
        for i in 0..self.listeners.len() {
            self.arm_listener(i)?;
        }
        self.arm_udp()?;
        // After the set-up registrations: a loop that cannot register its own descriptors is
        // not the subject of fault injection (it fails before serving anything).
        #[cfg(feature = "faults")]
        self.lp.shared.inject_faults(self.lp.cfg.faults);
        self.lp.tick();
        let handler = &mut self.handler;
        let mut cx = LoopCx::new(&mut self.lp);
        if panic::catch_unwind(AssertUnwindSafe(|| handler.on_boot(&mut cx))).is_err() {
            self.note_panic("on_boot");
        }
        while !(self.stopping
            && self.conns.is_empty()
            && self.lingering.is_empty()
            && self.lp.connecting.is_empty()
            && self.handshakes.is_empty())
        {
            self.turn()?;
        }
        self.finish();
        Ok(())
    }

    /// One `epoll_wait` and everything it makes due.
    fn turn(&mut self) -> io::Result<()> {
        let timeout = if self.ready.is_empty() && !self.lp.shared.has_local_tasks() {
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
            match tag {
                token::CONN => self.conn_event(key, generation, flags),
                token::LISTENER => self.accept(key),
                token::LINGER => self.linger_event(key, generation, flags),
                token::CONNECTING => self.connect_event(key, generation, flags),
                token::UDP => self.udp_event(key, flags),
                token::HANDSHAKE => self.handshake_event(key, generation, flags),
                _ => woken = true,
            }
        }
        if woken || self.lp.shared.has_local_tasks() {
            self.run_tasks(woken);
        }
        self.run_ready();
        self.run_timers();
        if !self.lp.connect_failures.is_empty() {
            self.report_connect_failures();
        }
        if self.lp.stop_requested {
            self.lp.stop_requested = false;
            self.lp.server.stop(self.lp.cfg.stop_timeout);
        }
        Ok(())
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
            &self.lp.server,
            &self.lp.shared,
            &mut accepted,
        );
        if outcome == Drain::BackOff {
            if let Some(l) = self.listeners[i].as_mut() {
                let _ = self.lp.epoll.delete(l.sock.as_raw_fd());
                l.armed = false;
            }
            let at = self.lp.now + self.lp.cfg.accept_backoff;
            self.lp
                .timers
                .insert(at, TimerKind::AcceptRetry { listener: i }, None);
        }
        let me = self.lp.shared.index;
        let server = Arc::clone(&self.lp.server);
        let mut woken = 0u64; // bit set of loops to wake (loops beyond 64 are woken at once)
        for a in accepted.drain(..) {
            let target = if self.lp.cfg.reuse_port {
                me
            } else {
                self.balancer.pick(a.peer, &server.loops)
            };
            acceptor::note_assigned(&server.loops[target]);
            if target == me {
                self.open(a.fd, a.peer, a.tls);
            } else {
                server.loops[target].push(Task::Register {
                    fd: a.fd,
                    peer: a.peer,
                    tls: a.tls,
                });
                if target < 64 {
                    woken |= 1 << target;
                } else {
                    server.loops[target].wake();
                }
            }
        }
        while woken != 0 {
            let target = woken.trailing_zeros() as usize;
            woken &= woken - 1;
            server.loops[target].wake();
        }
        self.accepted = accepted;
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
                    if self.alive(key, generation) {
                        self.call(key, |h, c, s| h.on_timer(c, s, token));
                    }
                }
                TimerKind::Loop { token } => {
                    let handler = &mut self.handler;
                    let mut cx = LoopCx::new(&mut self.lp);
                    if panic::catch_unwind(AssertUnwindSafe(|| handler.on_tick(&mut cx, token)))
                        .is_err()
                    {
                        self.note_panic("on_tick");
                    }
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
                    if self.alive(key, generation) {
                        self.check_timeouts(key);
                    }
                }
            }
        }
    }

    /// Whether slot `key` still holds the connection of that generation.
    fn alive(&self, key: usize, generation: u32) -> bool {
        matches!(self.conns.get(key), Some(e) if e.core.id.generation == generation)
    }

    fn note_panic(&mut self, what: &str) {
        bump(&self.lp.shared.stats.panics, 1);
        // Output a panicking callback staged belongs to nobody now.
        self.lp.clear_staging();
        log::error!("eventide: loop {}: {what} panicked", self.lp.shared.index);
    }

    /// The loop is exiting: drop queued work and tell the handler.
    fn finish(&mut self) {
        self.lp.shared.mark_exited();
        let mut tasks = std::mem::take(&mut self.tasks);
        self.lp.shared.take_tasks(&mut tasks, false);
        for task in tasks {
            if let Task::Register { fd, .. } = task {
                crate::sys::socket::abort(fd);
                self.release_slot(false);
            }
        }
        self.lp.timers.clear();
        let handler = &mut self.handler;
        if panic::catch_unwind(AssertUnwindSafe(|| handler.on_shutdown())).is_err() {
            self.note_panic("on_shutdown");
        }
    }
}

/// The event loop, as seen from [`Handler::on_boot`], [`Handler::on_tick`], a task posted to
/// the loop, or [`Conn::loop_cx`](crate::Conn::loop_cx).
pub struct LoopCx<'a> {
    lp: &'a mut LoopCore,
}

impl<'a> LoopCx<'a> {
    pub(crate) fn new(lp: &'a mut LoopCore) -> LoopCx<'a> {
        LoopCx { lp }
    }

    /// Index of this loop (0-based).
    pub fn index(&self) -> usize {
        self.lp.shared.index
    }

    /// The time this turn of the loop started (cheaper than `Instant::now()`).
    pub fn now(&self) -> Instant {
        self.lp.now
    }

    /// Calls [`Handler::on_tick`] with `token` once, after `after`.
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        self.lp
            .timers
            .insert(self.lp.now + after, TimerKind::Loop { token }, None)
    }

    /// Calls [`Handler::on_tick`] with `token` every `period`, until cancelled.
    pub fn set_interval(&mut self, period: Duration, token: u64) -> TimerId {
        self.lp.timers.insert(
            self.lp.now + period,
            TimerKind::Loop { token },
            Some(period),
        )
    }

    /// Cancels a timer. Returns whether it was still pending.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.lp.timers.cancel(id)
    }

    /// Number of timers pending on this loop.
    pub fn pending_timers(&self) -> usize {
        self.lp.timers.len()
    }

    /// This loop's counters.
    pub fn stats(&self) -> LoopStatsSnapshot {
        self.lp.shared.stats.snapshot()
    }

    /// Stops the whole server gracefully.
    pub fn stop_server(&mut self) {
        self.lp.stop_requested = true;
    }

    /// Opens an outbound connection from this loop. When it is established the handler's
    /// `on_open` runs for it ([`Conn::is_outbound`](crate::Conn::is_outbound) is true and
    /// [`Conn::take_context`](crate::Conn::take_context) returns the connect's context); if it
    /// fails — refused, unreachable, timed out, or at once — `on_connect_error` runs instead.
    pub fn connect(&mut self, connect: Connect) {
        self.lp.connect(connect);
    }

    /// A handle to this loop for other threads.
    pub fn handle(&self) -> crate::LoopHandle {
        crate::LoopHandle {
            shared: Arc::clone(&self.lp.shared),
        }
    }
}

impl std::fmt::Debug for LoopCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopCx")
            .field("index", &self.index())
            .finish()
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
