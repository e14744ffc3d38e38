//! What a connection needs after anything happened to it — computed from its state, its
//! buffers and the configuration, without doing any of it. The event loop's `settle` applies
//! the [`Plan`]; when the plan is a no-op (the common case on a busy connection) settling costs
//! this computation and nothing else.
//!
//! A plan is one [`Step`] — the connection's life moves on (it fails, reports the high-water
//! mark, shuts its write side, closes) — or, when nothing ends, the [`Upkeep`] that brings the
//! loop's bookkeeping up to date: the high-water hysteresis, the read-timeout clock, the count
//! the handles see, epoll interest, the ready list and the timeout timer.

use std::time::Duration;

use super::state::{ConnState, HighWater, Interest, Lifecycle, Pauses, ReadSide, Registration};
use crate::config::Config;

/// Everything the planner looks at, read from a connection (or made up, in tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts<'a> {
    pub state: &'a ConnState,
    /// Bytes queued for the socket (the kernel refused them).
    pub pending: usize,
    /// Whether output is queued (there is an output buffer).
    pub queued: bool,
    /// Worker jobs in flight: their output must go out before a shutdown or close.
    pub jobs: usize,
    /// Unconsumed input.
    pub input: usize,
    /// Since when unconsumed input has waited (loop milliseconds).
    pub input_since: Option<u64>,
    /// Last time a byte moved (loop milliseconds).
    pub active_ms: u64,
    /// The connection's idle timeout.
    pub idle: IdleTimeout,
    /// When the armed timeout timer fires, if one is armed.
    pub timer_at: Option<u64>,
    /// The connection has handles, which are told its pending output.
    pub has_handle: bool,
    /// The loop's clock (milliseconds).
    pub now_ms: u64,
}

/// What a connection needs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub step: Step,
    /// Applied when the step is [`Step::Keep`].
    pub upkeep: Upkeep,
}

/// Where the connection's life goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing ends: keep serving (apply the upkeep).
    Keep,
    /// It failed: close at once, dropping pending output.
    Abort,
    /// Output just passed the high-water mark: call `on_high_water`, then plan again.
    NotifyHighWater,
    /// A half-close is due (output, jobs and answers owed flushed): TLS `close_notify` (once), then
    /// `shutdown(SHUT_WR)`; then plan again.
    ShutDownWrite,
    /// A close is due (output, jobs and answers owed flushed), or both sides have finished: TLS
    /// `close_notify` (once), then the graceful close.
    Close,
}

/// The bookkeeping a connection that stays needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Upkeep {
    /// Output fell to the low-water mark: the high-water state is back to below.
    pub below_low_water: bool,
    /// The read-timeout clock.
    pub input_clock: Clock,
    /// Tell the handles the pending output.
    pub publish: bool,
    /// Whether input flows to the handler now, if that changed.
    pub flowing: Option<bool>,
    /// Put it on the ready list: it resumed, with buffered input to offer again (or, edge-
    /// triggered, a socket to read, since the edge may have passed while it was held).
    pub requeue: bool,
    /// Register (or re-register) with this interest.
    pub register: Option<Interest>,
    /// Arm the timeout timer for this due time (loop milliseconds).
    pub arm_timer: Option<u64>,
}

/// What happens to the read-timeout clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    Keep,
    /// Unconsumed input is waiting from now on.
    Start,
    /// No input waits any more.
    Stop,
}

impl Upkeep {
    /// Nothing to do.
    pub(crate) const NONE: Upkeep = Upkeep {
        below_low_water: false,
        input_clock: Clock::Keep,
        publish: false,
        flowing: None,
        requeue: false,
        register: None,
        arm_timer: None,
    };

    #[inline]
    pub(crate) fn is_noop(&self) -> bool {
        *self == Upkeep::NONE
    }
}

impl Plan {
    /// Nothing to do.
    pub(crate) const NONE: Plan = Plan {
        step: Step::Keep,
        upkeep: Upkeep::NONE,
    };
}

/// The plan for a connection, by the full rules.
pub(crate) fn plan(f: &Facts<'_>, cfg: &Config) -> Plan {
    let step = step(f);
    let upkeep = if step == Step::Keep {
        upkeep(f, cfg)
    } else {
        Upkeep::NONE
    };
    Plan { step, upkeep }
}

/// The planner's shortcut for its most common verdict, "nothing to do", in a few compares:
/// open, under the high-water mark, not paused, input flowing, nothing queued, buffered, in
/// a job or owed, no handles, registered for reading (or edge-triggered), and no timeout timer to
/// move. `settle` takes it as its fast path; debug builds check every `true` against
/// [`plan`], so a rule added there that this does not know about fails the tests that reach
/// it instead of becoming a silent bug.
#[inline(always)]
pub(crate) fn steady(f: &Facts<'_>, cfg: &Config) -> bool {
    let s = f.state;
    let wanted = Interest::wanted(cfg.edge, s.read != ReadSide::Closed, false);
    s.lifecycle() == Lifecycle::Open
        && s.high_water == HighWater::Below
        && !s.paused_by_app
        && s.owed == 0
        && s.flowing
        && !f.queued
        && f.jobs == 0
        && f.input == 0
        && f.input_since.is_none()
        && !f.has_handle
        && matches!(s.registration, Registration::Registered(i) if i == wanted)
        && match f.idle.period() {
            // With no input waiting a read timeout has nothing to time.
            None => true,
            Some(idle) => f
                .timer_at
                .is_some_and(|at| at <= f.active_ms.saturating_add(idle)),
        }
}

/// Nothing more is coming for the peer: no output queued, no job in flight, no answer owed.
#[inline]
fn flushed(f: &Facts<'_>) -> bool {
    !f.queued && f.jobs == 0 && f.state.owed == 0
}

/// The step, in order of precedence: a failure closes at once (a failed write side once its
/// input is read); a crossed high-water mark is reported before anything else; an ending
/// waits until output, jobs and answers owed are flushed.
#[inline]
fn step(f: &Facts<'_>) -> Step {
    let s = f.state;
    let flushed = flushed(f);
    match s.lifecycle() {
        Lifecycle::Aborted => Step::Abort,
        // A dead write side flushes nothing (nor reports on output): once what the kernel
        // held is read, it is done.
        Lifecycle::WriteFailed if s.read == ReadSide::Closed => Step::Abort,
        Lifecycle::WriteFailed => Step::Keep,
        _ if s.high_water == HighWater::Crossed => Step::NotifyHighWater,
        Lifecycle::ShuttingDown if flushed => Step::ShutDownWrite,
        Lifecycle::Closing | Lifecycle::ClosingAfterShutdown if flushed => Step::Close,
        Lifecycle::WriteShut if flushed && s.read == ReadSide::Closed => Step::Close,
        _ => Step::Keep,
    }
}

#[inline]
fn upkeep(f: &Facts<'_>, cfg: &Config) -> Upkeep {
    let s = f.state;
    let below_low_water = s.high_water != HighWater::Below && f.pending <= cfg.low_water;
    let mut pauses = s.pauses(f.input, f.jobs, cfg);
    if below_low_water {
        pauses = pauses.without(Pauses::HIGH_WATER);
    }
    let delivering = s.delivering(!pauses.is_empty());
    let reading = delivering && s.read != ReadSide::Closed;
    let (input_clock, since) = match (f.input, f.input_since) {
        (0, Some(_)) => (Clock::Stop, None),
        (0, None) => (Clock::Keep, None),
        (_, None) => (Clock::Start, Some(f.now_ms)),
        (_, since) => (Clock::Keep, since),
    };
    let want = Interest::wanted(cfg.edge, reading, f.queued);
    let register = match s.registration {
        Registration::Deregistered => (reading || f.queued).then_some(want),
        Registration::Registered(now) => (now != want).then_some(want),
    };
    let resumed = delivering && !s.flowing;
    let arm_timer = next_due(s, !flushed(f), f.active_ms, since, f.idle, cfg)
        .filter(|&due| f.timer_at.map_or(true, |at| at > due));
    Upkeep {
        below_low_water,
        input_clock,
        publish: f.has_handle,
        flowing: (delivering != s.flowing).then_some(delivering),
        requeue: resumed && ((cfg.edge && reading) || f.input > 0),
        register,
        arm_timer,
    }
}

/// A duration in loop milliseconds (capped far from overflow).
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX / 2)) as u64
}

/// A connection's idle timeout: the server's ([`Builder::idle_timeout`](crate::Builder::idle_timeout))
/// from its opening, until [`Conn::set_idle_timeout`](crate::Conn::set_idle_timeout) replaces
/// it — in four bytes, so the connection's record keeps its size, and resolved once, so the
/// planner never looks up the server's. A period is kept to the millisecond up to
/// `u32::MAX - 1` ms (49.7 days); a longer one is that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdleTimeout(u32);

impl IdleTimeout {
    /// No idle timeout.
    const NONE: u32 = u32::MAX;

    /// `timeout` (`None`: none).
    pub(crate) fn new(timeout: Option<Duration>) -> IdleTimeout {
        match timeout {
            None => IdleTimeout(Self::NONE),
            Some(d) => IdleTimeout(millis(d).clamp(1, u64::from(Self::NONE - 1)) as u32),
        }
    }

    /// The idle period in milliseconds, if there is one.
    #[inline]
    pub(crate) fn period(self) -> Option<u64> {
        (self.0 != Self::NONE).then_some(u64::from(self.0))
    }
}

/// The idle period that applies now, if any: the connection's idle timeout, and while closing
/// with output still to come — queued for a peer that does not take it, owed by jobs in flight
/// or by answers given later — or after a send error (a reader paused for good must not keep
/// a dead connection), at most the flush timeout.
#[inline]
pub(crate) fn idle_period(
    s: &ConnState,
    waiting: bool,
    idle: IdleTimeout,
    cfg: &Config,
) -> Option<u64> {
    let idle = idle.period();
    if (s.lifecycle() == Lifecycle::Closing && waiting) || s.is_write_failed() {
        let stall = millis(cfg.flush_timeout).max(1);
        return Some(idle.map_or(stall, |i| i.min(stall)));
    }
    idle
}

/// When the read timeout is due, if input is waiting and one is configured.
#[inline]
pub(crate) fn read_due(since: Option<u64>, cfg: &Config) -> Option<u64> {
    match (cfg.read_timeout, since) {
        (Some(t), Some(since)) => Some(since.saturating_add(millis(t))),
        _ => None,
    }
}

/// When the next timeout check is due, if one is.
#[inline]
fn next_due(
    s: &ConnState,
    waiting: bool,
    active_ms: u64,
    since: Option<u64>,
    idle: IdleTimeout,
    cfg: &Config,
) -> Option<u64> {
    let idle = idle_period(s, waiting, idle, cfg).map(|p| active_ms.saturating_add(p));
    match (idle, read_due(since, cfg)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
