//! What callbacks reach of their loop: the loop's non-generic state ([`LoopCore`]: epoll, the
//! staging buffers, timers, outbound connects in progress) and the public view of it
//! ([`LoopCx`]), with the kinds of timer a loop schedules ([`TimerKind`]).
//!
//! It also holds a connection's [`Seat`]: its place in the loop's count and under the
//! server's connection limit, given back when it is dropped.
//!
//! It sits below the connection view and the event loop, which both hold a `&mut LoopCore`.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::conn::ConnId;
use crate::connector::Connect;
use crate::fanout::LoopGroups;
use crate::handle::LoopHandle;
use crate::mailbox::{LoopShared, Loops};
use crate::stats::{bump, LoopStatsSnapshot};
use crate::sys::epoll::Epoll;
use crate::timer::{TimerId, Timers};
use crate::worker::WorkerPool;

/// Timer kinds a loop schedules.
#[derive(Clone, Debug)]
pub(crate) enum TimerKind {
    /// `Handler::on_timer` for a connection.
    Conn {
        key: u32,
        generation: u32,
        token: u64,
    },
    /// `Handler::on_tick`. `adapter`: a protocol adapter's own timer (its `Date` refresh),
    /// apart from its service's token space; every timer set through [`LoopCx::set_timer`]
    /// is not.
    Loop { token: u64, adapter: bool },
    /// A lingering close ran out of time.
    Linger { key: u32, generation: u32 },
    /// Re-arm a listener after an accept back-off.
    AcceptRetry { listener: usize },
    /// The graceful-stop deadline: close whatever is left.
    StopDeadline,
    /// During a stop: end the lingering closes whose peer has acknowledged everything.
    StopSweep,
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
    /// Every loop of the server (this one is `loops[shared.index]`).
    pub loops: Loops,
    pub cfg: Config,
    /// Output written during the current callback, sent when it returns.
    pub staging: Vec<u8>,
    /// Small writes to a TLS connection during the current callback, gathered into a record:
    /// encrypted when it returns, or once the record is full.
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
    /// Connects asked for during this turn's callbacks, started at the end of the turn.
    pub connects: Vec<Connect>,
    /// The `Connect::context` of the outbound connection being opened (during `on_open`).
    pub open_context: Option<Box<dyn Any + Send>>,
    /// The loop's group members, and what callbacks wrote for other connections of the loop.
    pub fanout: LoopGroups,
    /// The runtime for futures spawned by callbacks, and the loop's own (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub tokio: Option<crate::bridge::running::LoopFutures>,
    /// Generation for the next connection or connect (tells reused slots apart).
    next_generation: u32,
}

impl LoopCore {
    pub(crate) fn new(
        epoll: Epoll,
        loops: Loops,
        index: usize,
        cfg: Config,
        pool: Option<Arc<WorkerPool>>,
    ) -> LoopCore {
        LoopCore {
            epoll,
            shared: Arc::clone(&loops[index]),
            loops,
            cfg,
            staging: Vec::new(),
            tls_plain: Vec::new(),
            timers: Timers::new(),
            now: Instant::now(),
            now_ms: 0,
            stop_requested: false,
            pool,
            connects: Vec::new(),
            open_context: None,
            fanout: LoopGroups::default(),
            #[cfg(feature = "tokio")]
            tokio: None,
            next_generation: 0,
        }
    }

    pub(crate) fn next_generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = g.wrapping_add(1);
        g
    }

    /// Runs one application callback — every handler callback, posted closure and
    /// connection-handle closure goes through here. A panic is caught, counted in the loop's
    /// `panics`, and logged naming `what`; the output the callback staged belongs to nobody
    /// then and is dropped. Returns `None` if it panicked.
    #[inline]
    pub(crate) fn callback<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut LoopCore) -> R,
    ) -> Option<R> {
        match panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => Some(r),
            Err(_) => {
                bump(&self.shared.stats.panics, 1);
                self.clear_staging();
                log::error!("eventide: loop {}: {what} panicked", self.shared.index);
                None
            }
        }
    }

    /// Reads the clock once for this turn of the loop.
    pub(crate) fn tick(&mut self) {
        self.now = Instant::now();
        self.now_ms = self.timers.millis(self.now);
    }
}

/// The event loop, as seen from [`Handler::on_boot`](crate::Handler::on_boot),
/// [`Handler::on_tick`](crate::Handler::on_tick), a task posted to the loop, or
/// [`Conn::loop_cx`](crate::Conn::loop_cx).
pub struct LoopCx<'a> {
    pub(crate) lp: &'a mut LoopCore,
    /// In `on_tick`: the timer that fired is a protocol adapter's own.
    #[cfg(any(feature = "http", feature = "resp"))]
    adapter_timer: bool,
}

impl<'a> LoopCx<'a> {
    pub(crate) fn new(lp: &'a mut LoopCore) -> LoopCx<'a> {
        LoopCx {
            lp,
            #[cfg(any(feature = "http", feature = "resp"))]
            adapter_timer: false,
        }
    }

    /// The view for `on_tick` of a loop timer; `adapter`: it is a protocol adapter's own.
    pub(crate) fn for_tick(lp: &'a mut LoopCore, adapter: bool) -> LoopCx<'a> {
        let _ = adapter;
        LoopCx {
            lp,
            #[cfg(any(feature = "http", feature = "resp"))]
            adapter_timer: adapter,
        }
    }

    /// Sets a protocol adapter's own loop timer: it comes back through `on_tick` with
    /// [`is_adapter_timer`](Self::is_adapter_timer) true, so the tokens of the service the
    /// adapter runs (every timer set with [`set_timer`](Self::set_timer), from wherever) are
    /// the service's alone.
    #[cfg(feature = "http")]
    pub(crate) fn set_adapter_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let kind = TimerKind::Loop {
            token,
            adapter: true,
        };
        self.lp.timers.insert(self.lp.now + after, kind, None)
    }

    /// In `on_tick`: whether the timer that fired was set with
    /// [`set_adapter_timer`](Self::set_adapter_timer).
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn is_adapter_timer(&self) -> bool {
        self.adapter_timer
    }

    /// Index of this loop (0-based).
    pub fn index(&self) -> usize {
        self.lp.shared.index
    }

    /// The loop's state, for the modules that act through this view (groups).
    pub(crate) fn core(&mut self) -> &mut LoopCore {
        self.lp
    }

    /// Writes `data` to connection `to` of this loop — from a callback of another
    /// connection, without a trip through the mailbox: it is written as the connection's own
    /// writes are, once this callback's event is done (after the output of the event's
    /// callbacks), straight to the socket if nothing is pending. A connection that closed
    /// by then gets nothing. Like the connection's own writes it counts toward its pending
    /// output and high-water mark; for a bounded stream from elsewhere, use its
    /// [`ConnHandle`](crate::ConnHandle).
    ///
    /// Fails with `InvalidInput` for a connection of another loop (use its `ConnHandle`) or
    /// an id rebuilt by [`ConnId::from_u64`], which does not name a slot.
    pub fn write_to(&mut self, to: ConnId, data: &[u8]) -> std::io::Result<()> {
        if to.loop_index() != self.index() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "connection {to} lives on loop {}, not on this one ({}): write through its ConnHandle",
                    to.loop_index(),
                    self.index()
                ),
            ));
        }
        if to.key == ConnId::UNKNOWN_KEY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an id rebuilt by ConnId::from_u64 names no slot: use the id the connection gave",
            ));
        }
        if !data.is_empty() {
            self.lp.fanout.push_write((to.key, to.generation), data);
        }
        Ok(())
    }

    /// The time this turn of the loop started (cheaper than `Instant::now()`).
    pub fn now(&self) -> Instant {
        self.lp.now
    }

    /// Calls [`Handler::on_tick`](crate::Handler::on_tick) with `token` once, after `after`.
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let kind = TimerKind::Loop {
            token,
            adapter: false,
        };
        self.lp.timers.insert(self.lp.now + after, kind, None)
    }

    /// Calls [`Handler::on_tick`](crate::Handler::on_tick) with `token` every `period`, until cancelled.
    pub fn set_interval(&mut self, period: Duration, token: u64) -> TimerId {
        let kind = TimerKind::Loop {
            token,
            adapter: false,
        };
        self.lp
            .timers
            .insert(self.lp.now + period, kind, Some(period))
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
    /// The connect starts when the current callback's turn of the loop ends.
    pub fn connect(&mut self, connect: Connect) {
        self.lp.connects.push(connect);
    }

    /// A handle to this loop for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
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

/// The server-wide count of accepted connections, held under the connection limit.
pub(crate) struct ConnLimit {
    connections: AtomicUsize,
    max: usize,
}

impl ConnLimit {
    pub(crate) fn new(max: usize) -> ConnLimit {
        ConnLimit {
            connections: AtomicUsize::new(0),
            max,
        }
    }

    /// Accepted connections holding a seat now.
    pub(crate) fn open(&self) -> usize {
        self.connections.load(Acquire)
    }
}

/// A connection's seat: its place in its loop's count of assigned connections (which
/// least-connections balancing and `Server::connect` read) and, for an accepted connection,
/// under the server's connection limit.
///
/// It is taken when a connection is accepted (under the limit) or a connect starts, and given
/// back when it is dropped — whichever way the socket ends: refused, a failed handshake or
/// connect, a close, the end of a lingering close, or a hand-off still queued when its loop
/// exits. No path releases a seat by hand.
pub(crate) struct Seat {
    /// The loop it is counted on, once assigned.
    assigned: Option<Arc<LoopShared>>,
    /// The place under the connection limit (accepted connections only).
    limit: Option<Arc<ConnLimit>>,
}

impl Seat {
    /// A place under `limit` for a connection just accepted (not yet assigned to a loop), or
    /// `None` when the server is full.
    pub(crate) fn accepted(limit: &Arc<ConnLimit>) -> Option<Seat> {
        if limit.connections.fetch_add(1, AcqRel) >= limit.max {
            limit.connections.fetch_sub(1, AcqRel);
            return None;
        }
        Some(Seat {
            assigned: None,
            limit: Some(Arc::clone(limit)),
        })
    }

    /// A seat on `on` for an outbound connection (outside the connection limit).
    pub(crate) fn outbound(on: &Arc<LoopShared>) -> Seat {
        let mut seat = Seat {
            assigned: None,
            limit: None,
        };
        seat.assign(on);
        seat
    }

    /// Counts the connection on loop `to`.
    pub(crate) fn assign(&mut self, to: &Arc<LoopShared>) {
        debug_assert!(self.assigned.is_none());
        to.stats.assigned.fetch_add(1, AcqRel);
        self.assigned = Some(Arc::clone(to));
    }

    /// Whether this side opened the connection.
    pub(crate) fn is_outbound(&self) -> bool {
        self.limit.is_none()
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(l) = &self.assigned {
            l.stats.assigned.fetch_sub(1, AcqRel);
        }
        if let Some(limit) = &self.limit {
            limit.connections.fetch_sub(1, AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    /// A seat holds its place under the limit and on its loop until it is dropped.
    #[test]
    fn a_seat_is_given_back_when_dropped() {
        let lp = Arc::new(LoopShared::new(0, crate::mailbox::MessageType::of::<()>()).unwrap());
        let limit = Arc::new(ConnLimit::new(1));
        let mut first = Seat::accepted(&limit).expect("under the limit");
        assert!(Seat::accepted(&limit).is_none(), "the limit is one");
        first.assign(&lp);
        let outbound = Seat::outbound(&lp);
        assert!(outbound.is_outbound() && !first.is_outbound());
        assert_eq!(lp.stats.assigned.load(Relaxed), 2);
        drop(first);
        assert_eq!(lp.stats.assigned.load(Relaxed), 1);
        assert!(Seat::accepted(&limit).is_some(), "the place was given back");
        drop(outbound);
        assert_eq!(lp.stats.assigned.load(Relaxed), 0);
    }
}
