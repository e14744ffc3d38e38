//! Counters each loop keeps about itself, readable from any thread.
//!
//! Most counters have a single writer (the loop's own thread), so they are bumped with a
//! relaxed load and store — a plain `mov`, no locked instruction on the hot path. The few that
//! other threads write (waker writes, handed-over connections) use atomic read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::conn::reason::{CloseReason, Refusal};
#[cfg(feature = "faults")]
use crate::sys::faults::{FaultCounters, FaultCounts};

/// Live counters of one event loop.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    pub connect_errors: AtomicU64,
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
    pub closed: AtomicU64,
    pub eventfd_writes: AtomicU64,
    pub epoll_waits: AtomicU64,
    pub events: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub pending_output: AtomicU64,
    pub peak_pending_output: AtomicU64,
    pub panics: AtomicU64,
    pub tasks: AtomicU64,
    pub timers_fired: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub datagrams_truncated: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_errors: AtomicU64,
    pub group_delivered: AtomicU64,
    pub group_dropped: AtomicU64,
    /// Connections assigned to this loop and not yet closed, counted by the acceptor when it
    /// hands one over (so least-connections sees hand-offs still in flight).
    pub assigned: AtomicU64,
    /// Connections closed, by [`CloseReason`] (in [`CloseCounts::LABELS`] order).
    pub closed_by_reason: [AtomicU64; CloseCounts::LABELS.len()],
    /// Connections refused, by why (in [`RefusalCounts::LABELS`] order; `refused` is the sum).
    pub refused_by_reason: [AtomicU64; RefusalCounts::LABELS.len()],
    /// Faults injected by this loop's thread (and the worker threads counted with it).
    #[cfg(feature = "faults")]
    pub faults: std::sync::Arc<FaultCounters>,
}

/// Adds to a counter only this thread writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtracts from a counter only this thread writes.
#[inline]
pub(crate) fn drop_by(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

/// Raises a high-water counter only this thread writes.
#[inline]
pub(crate) fn raise(counter: &AtomicU64, value: u64) {
    if value > counter.load(Relaxed) {
        counter.store(value, Relaxed);
    }
}

impl LoopStats {
    /// Counts a connection leaving the table for `reason` (on the loop's thread).
    pub(crate) fn count_close(&self, reason: &CloseReason) {
        bump(&self.closed_by_reason[CloseCounts::slot(reason)], 1);
    }

    /// Counts a connection refused: by `on_open` for `why`, or (`None`) at the connection
    /// limit (on the loop's thread).
    pub(crate) fn count_refusal(&self, why: Option<Refusal>) {
        bump(&self.refused, 1);
        bump(&self.refused_by_reason[RefusalCounts::slot(why)], 1);
    }

    pub(crate) fn snapshot(&self) -> LoopStatsSnapshot {
        LoopStatsSnapshot {
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            connected: self.connected.load(Relaxed),
            connects: self.connects.load(Relaxed),
            connect_errors: self.connect_errors.load(Relaxed),
            refused: self.refused.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            closed: self.closed.load(Relaxed),
            eventfd_writes: self.eventfd_writes.load(Relaxed),
            epoll_waits: self.epoll_waits.load(Relaxed),
            events: self.events.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            pending_output: self.pending_output.load(Relaxed),
            peak_pending_output: self.peak_pending_output.load(Relaxed),
            panics: self.panics.load(Relaxed),
            tasks: self.tasks.load(Relaxed),
            timers_fired: self.timers_fired.load(Relaxed),
            datagrams_in: self.datagrams_in.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            datagrams_truncated: self.datagrams_truncated.load(Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            group_delivered: self.group_delivered.load(Relaxed),
            group_dropped: self.group_dropped.load(Relaxed),
            tls_handshake_errors: self.tls_handshake_errors.load(Relaxed),
            closed_by_reason: CloseCounts(
                self.closed_by_reason.each_ref().map(|c| c.load(Relaxed)),
            ),
            refused_by_reason: RefusalCounts(
                self.refused_by_reason.each_ref().map(|c| c.load(Relaxed)),
            ),
            #[cfg(feature = "faults")]
            faults: self.faults.snapshot(),
        }
    }
}

/// Connections closed, per [`CloseReason`] kind.
///
/// ```
/// # use eventide::{CloseReason, Stats};
/// # fn show(stats: &Stats) {
/// let total = stats.total();
/// println!("{} idle timeouts", total.closed_by_reason.get(&CloseReason::IdleTimeout));
/// for (reason, n) in total.closed_by_reason.iter() {
///     println!("{reason}: {n}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseCounts([u64; CloseCounts::LABELS.len()]);

impl CloseCounts {
    /// The reasons counted, as [`CloseReason::as_str`] names them.
    pub const LABELS: [&'static str; 13] = [
        "peer_closed",
        "reset",
        "error",
        "local",
        "inbound_limit",
        "panicked",
        "server_shutdown",
        "idle_timeout",
        "read_timeout",
        "protocol",
        "tls",
        "slow_consumer",
        "refused",
    ];

    fn slot(reason: &CloseReason) -> usize {
        match reason {
            CloseReason::PeerClosed => 0,
            CloseReason::Reset => 1,
            CloseReason::Error(_) => 2,
            CloseReason::Local => 3,
            CloseReason::InboundLimit => 4,
            CloseReason::Panicked => 5,
            CloseReason::ServerShutdown => 6,
            CloseReason::IdleTimeout => 7,
            CloseReason::ReadTimeout => 8,
            CloseReason::Protocol(_) => 9,
            CloseReason::Tls(_) => 10,
            CloseReason::SlowConsumer => 11,
            CloseReason::Refused(_) => 12,
        }
    }

    /// Connections closed for this kind of reason (the detail a reason carries is ignored).
    pub fn get(&self, reason: &CloseReason) -> u64 {
        self.0[Self::slot(reason)]
    }

    /// Every reason with its count, in [`LABELS`](CloseCounts::LABELS) order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::LABELS.iter().copied().zip(self.0.iter().copied())
    }

    fn add(&mut self, other: &CloseCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// Connections refused, by why: at the server's connection limit
/// ([`Builder::max_connections`](crate::Builder::max_connections)), or by `on_open` with a
/// [`Refusal`].
///
/// ```
/// # use eventide::{Refusal, Stats};
/// # fn show(stats: &Stats) {
/// let refused = stats.total().refused_by_reason;
/// println!("{} over the limit, {} denied", refused.connection_limit(), refused.get(Refusal::Denied));
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; RefusalCounts::LABELS.len()]);

impl RefusalCounts {
    /// The reasons counted: the connection limit, then [`Refusal::as_str`] of each kind.
    pub const LABELS: [&'static str; 4] = ["connection_limit", "busy", "denied", "unsupported"];

    fn slot(why: Option<Refusal>) -> usize {
        match why {
            None => 0,
            Some(Refusal::Busy) => 1,
            Some(Refusal::Denied) => 2,
            Some(Refusal::Unsupported) => 3,
        }
    }

    /// Connections refused at the server's connection limit.
    pub fn connection_limit(&self) -> u64 {
        self.0[0]
    }

    /// Connections `on_open` refused for `why`.
    pub fn get(&self, why: Refusal) -> u64 {
        self.0[Self::slot(Some(why))]
    }

    /// Every reason with its count, in [`LABELS`](RefusalCounts::LABELS) order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Self::LABELS.iter().copied().zip(self.0.iter().copied())
    }

    fn add(&mut self, other: &RefusalCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

/// A point-in-time copy of one loop's counters (or, from [`Stats::total`], of all loops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStatsSnapshot {
    /// Open connections, including ones closing gracefully.
    pub connections: u64,
    /// Connections accepted and opened on this loop.
    pub accepted: u64,
    /// Outbound connections established from this loop.
    pub connected: u64,
    /// Outbound connects started.
    pub connects: u64,
    /// Outbound connects that failed (refused, unreachable, timed out, ...).
    pub connect_errors: u64,
    /// Connections refused (by why in `refused_by_reason`): accepted and closed at once
    /// because the server was at its connection limit — never opened, so not counted in
    /// `accepted` — or refused by `on_open`: opened, so counted in `accepted` (or
    /// `connected`) and then in `closed`, as [`CloseReason::Refused`].
    pub refused: u64,
    /// `accept` failures (e.g. `EMFILE`); each one backs the listener off.
    pub accept_errors: u64,
    /// Connections closed.
    pub closed: u64,
    /// Writes to the loop's wake-up eventfd (one per burst of cross-thread tasks).
    pub eventfd_writes: u64,
    /// `epoll_wait` calls.
    pub epoll_waits: u64,
    /// Events returned by `epoll_wait`.
    pub events: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Bytes waiting in connections' output buffers now.
    pub pending_output: u64,
    /// The largest output buffer any single connection has had.
    pub peak_pending_output: u64,
    /// Callbacks that panicked.
    pub panics: u64,
    /// Cross-thread tasks run.
    pub tasks: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// UDP datagrams larger than the maximum size (delivered cut, marked truncated).
    pub datagrams_truncated: u64,
    /// UDP replies dropped: the send queue was full, or the kernel refused them.
    pub datagrams_dropped: u64,
    /// TLS handshakes completed (both directions).
    pub tls_handshakes: u64,
    /// TLS handshakes that failed (including outbound ones).
    pub tls_handshake_errors: u64,
    /// Group broadcasts handed to a member's output, once per member reached (every
    /// [`Group`](crate::Group) of the loop's connections).
    pub group_delivered: u64,
    /// Group broadcasts a member did not get (too far behind under
    /// [`SlowConsumer::Drop`](crate::SlowConsumer::Drop), or its write side shut).
    pub group_dropped: u64,
    /// Connections closed, by reason (they add up to `closed`, less lingering closes still
    /// in progress).
    pub closed_by_reason: CloseCounts,
    /// Connections refused, by why (they add up to `refused`).
    pub refused_by_reason: RefusalCounts,
    /// Faults injected, per kind (feature `faults`; worker thread *i* counts on loop *i* mod
    /// the number of loops).
    #[cfg(feature = "faults")]
    pub faults: FaultCounts,
}

impl LoopStatsSnapshot {
    fn add(&mut self, o: &LoopStatsSnapshot) {
        self.connections += o.connections;
        self.accepted += o.accepted;
        self.connected += o.connected;
        self.connects += o.connects;
        self.connect_errors += o.connect_errors;
        self.refused += o.refused;
        self.accept_errors += o.accept_errors;
        self.closed += o.closed;
        self.eventfd_writes += o.eventfd_writes;
        self.epoll_waits += o.epoll_waits;
        self.events += o.events;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.pending_output += o.pending_output;
        self.peak_pending_output = self.peak_pending_output.max(o.peak_pending_output);
        self.panics += o.panics;
        self.tasks += o.tasks;
        self.timers_fired += o.timers_fired;
        self.datagrams_in += o.datagrams_in;
        self.datagrams_out += o.datagrams_out;
        self.datagrams_truncated += o.datagrams_truncated;
        self.datagrams_dropped += o.datagrams_dropped;
        self.tls_handshakes += o.tls_handshakes;
        self.group_delivered += o.group_delivered;
        self.group_dropped += o.group_dropped;
        self.tls_handshake_errors += o.tls_handshake_errors;
        self.closed_by_reason.add(&o.closed_by_reason);
        self.refused_by_reason.add(&o.refused_by_reason);
        #[cfg(feature = "faults")]
        self.faults.add(&o.faults);
    }
}

/// Counters of every loop of a server.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// One snapshot per loop, by loop index.
    pub loops: Vec<LoopStatsSnapshot>,
    /// Worker-pool jobs queued and not yet started (0 without a pool).
    pub worker_queue: u64,
}

impl Stats {
    /// The sum over all loops (`peak_pending_output` is the maximum).
    pub fn total(&self) -> LoopStatsSnapshot {
        let mut t = LoopStatsSnapshot::default();
        for l in &self.loops {
            t.add(l);
        }
        t
    }

    /// Faults injected into the whole server, per kind (feature `faults`).
    #[cfg(feature = "faults")]
    pub fn faults(&self) -> FaultCounts {
        self.total().faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_labels_are_the_reasons_names() {
        let reasons = [
            CloseReason::PeerClosed,
            CloseReason::Reset,
            CloseReason::Error(std::io::Error::other("x")),
            CloseReason::Local,
            CloseReason::InboundLimit,
            CloseReason::Panicked,
            CloseReason::ServerShutdown,
            CloseReason::IdleTimeout,
            CloseReason::ReadTimeout,
            CloseReason::Protocol("x".into()),
            CloseReason::Tls("x".into()),
            CloseReason::Refused(Refusal::Busy),
        ];
        for r in &reasons {
            assert_eq!(CloseCounts::LABELS[CloseCounts::slot(r)], r.as_str());
        }
    }

    #[test]
    fn refusal_labels_are_the_limit_then_the_refusals_names() {
        assert_eq!(
            RefusalCounts::LABELS[RefusalCounts::slot(None)],
            "connection_limit"
        );
        for r in Refusal::ALL {
            assert_eq!(
                RefusalCounts::LABELS[RefusalCounts::slot(Some(r))],
                r.as_str()
            );
        }
    }
}
