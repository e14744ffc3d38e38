//! A connection's state as types: where it is in its life ([`Lifecycle`]), what its read side
//! has seen ([`ReadSide`]), where its output stands against the high-water mark
//! ([`HighWater`]), and how it is registered with epoll ([`Registration`]). Why reading is
//! paused ([`Pauses`]) is not stored: it is computed from these, the buffers and the
//! configuration whenever it is asked.
//!
//! ```text
//!           shutdown_write          flushed: shutdown(SHUT_WR)
//!   Open ─────────────────▶ ShuttingDown ────────────────────────▶ WriteShut
//!    │                           │                                    │   │
//!    │ close(reason)             │ close(reason)        close(reason) │   │ peer's FIN read,
//!    ▼                           ▼                                    ▼   │ flushed
//!  Closing ◀─────────────────────┘                 ClosingAfterShutdown   │
//!    │                                                       │            │
//!    └──── flushed: close_notify (TLS), lingering close ─────┴────────────┘
//!          (at once if the peer is done) ──▶ removed from the table, on_close
//!
//!  any state ── fatal I/O error, reset ──▶ Aborted ── when the callback returns ──▶
//!          closed at once, pending output dropped, on_close
//!
//!  Open, ShuttingDown, WriteShut ── send error, peer reset ──▶ WriteFailed ── end of
//!          stream, a read error, close(), a timeout ──▶ Aborted (the send error kept as
//!          the reason)
//!          (pending output dropped, writes refused; the input the kernel holds is still
//!          read and delivered)
//! ```

use super::CloseReason;
use crate::config::{Config, InboundPolicy};
use crate::sys::epoll::{EDGE, READABLE, READ_CLOSED, WRITABLE};

/// Where a connection is in its life.
///
/// The order makes the questions asked per write and per event one compare each: the states
/// that take writes come first, then the closing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Reading and writing.
    Open,
    /// A half-close was asked for: the write side shuts once pending output (and the output
    /// of jobs still running) is flushed. Writes are still taken and go out first.
    ShuttingDown,
    /// Closing once pending output is flushed; reading has stopped, writes are still taken.
    Closing,
    /// Closing after the write side was shut (its output went out before the shutdown).
    ClosingAfterShutdown,
    /// A fatal error: the connection closes when the current callback returns, and its
    /// pending output is lost.
    Aborted,
    /// The write side is shut (`shutdown(SHUT_WR)` done); reading goes on, writes are refused.
    WriteShut,
    /// A send failed (the peer reset: `EPIPE`, `ECONNRESET`): pending output was dropped and
    /// writes are refused, but what the kernel received before the reset is still read and
    /// delivered. It closes, for the send error, at end of stream or a read error (without
    /// `on_read_closed`: that end is the reset, not an orderly close), at `close`, or when
    /// nothing moved for the idle period (at most the flush timeout, so a paused reader cannot
    /// keep it).
    WriteFailed,
}

/// What the read side has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadSide {
    /// Nothing ends it yet.
    Open,
    /// Epoll reported the peer's FIN (`EPOLLRDHUP`/`EPOLLHUP`) but end of stream has not been
    /// read yet: edge-triggered, a short read then does not mean the socket is drained.
    FinSeen,
    /// End of stream was read and `on_read_closed` called.
    Closed,
}

/// Pending output against the high- and low-water marks (a hysteresis, so not derivable
/// from the current length alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HighWater {
    /// Under the high mark, or back under the low one since.
    Below,
    /// Just passed the high mark: `on_high_water` is due when the callback returns.
    Crossed,
    /// Above the high mark (notified), until output falls to the low mark.
    Above,
}

/// The epoll interest of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Level-triggered, waiting for nothing (reading paused, nothing queued).
    Idle,
    /// Level-triggered: readable (and the peer's FIN).
    Read,
    /// Level-triggered: writable (output queued, reading paused).
    Write,
    /// Level-triggered: both.
    ReadWrite,
    /// Edge-triggered: everything, registered once and never changed.
    Edge,
}

impl Interest {
    /// What a connection waits for: in edge-triggered mode everything; otherwise reading
    /// while it reads, writability while output is queued.
    #[inline]
    pub(crate) fn wanted(edge: bool, reading: bool, queued: bool) -> Interest {
        match (edge, reading, queued) {
            (true, _, _) => Interest::Edge,
            (false, false, false) => Interest::Idle,
            (false, true, false) => Interest::Read,
            (false, false, true) => Interest::Write,
            (false, true, true) => Interest::ReadWrite,
        }
    }

    /// The epoll event bits.
    #[inline]
    pub(crate) fn bits(self) -> u32 {
        match self {
            Interest::Idle => 0,
            Interest::Read => READABLE | READ_CLOSED,
            Interest::Write => WRITABLE,
            Interest::ReadWrite => READABLE | READ_CLOSED | WRITABLE,
            Interest::Edge => READABLE | WRITABLE | READ_CLOSED | EDGE,
        }
    }
}

/// How a connection's socket is registered with epoll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Registration {
    /// Taken out of epoll: a level-triggered hang-up, reported on every wait and impossible to
    /// mask, arrived while nothing could be done with it. Added again when reading resumes or
    /// output is queued.
    Deregistered,
    /// In epoll with this interest.
    Registered(Interest),
}

/// Why reading is paused: a small set, computed (never stored) from the state, the buffers
/// and the configuration. Closing stops reading too (that is how a server stop does), but
/// that is the lifecycle, not a pause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pauses(u8);

impl Pauses {
    /// The application paused it ([`Conn::pause_read`](crate::Conn::pause_read) or
    /// [`ConnHandle::pause_read`](crate::ConnHandle::pause_read), e.g. back-pressure from
    /// the other side of a proxy).
    pub const APPLICATION: Pauses = Pauses(1);
    /// Output is above the high-water mark (and the server pauses on it).
    pub const HIGH_WATER: Pauses = Pauses(2);
    /// Unconsumed input is over the inbound limit (under [`InboundPolicy::Pause`]).
    pub const INBOUND_LIMIT: Pauses = Pauses(4);
    /// As many worker jobs are in flight as a connection may have.
    pub const WORKER_JOBS: Pauses = Pauses(8);
    /// The connection owes its peer as many answers as it may (a protocol's deferred
    /// responses and the ones queued behind them, [`Config::max_owed_answers`]).
    pub const ANSWERS_OWED: Pauses = Pauses(16);

    /// No pause.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `reason` is in the set.
    #[cfg(test)]
    pub fn contains(self, reason: Pauses) -> bool {
        self.0 & reason.0 != 0
    }

    #[inline]
    fn with(self, reason: Pauses, on: bool) -> Pauses {
        if on {
            Pauses(self.0 | reason.0)
        } else {
            self
        }
    }

    /// The set without `reason`.
    #[inline]
    pub fn without(self, reason: Pauses) -> Pauses {
        Pauses(self.0 & !reason.0)
    }
}

/// The state of one connection. Only what cannot be derived is here; see [`Pauses`].
#[derive(Debug)]
pub(crate) struct ConnState {
    lifecycle: Lifecycle,
    /// Why it is ending: present exactly while [`is_ending`](Self::is_ending) (boxed: rare,
    /// and large).
    reason: Option<Box<CloseReason>>,
    pub read: ReadSide,
    pub high_water: HighWater,
    /// Reading paused by the application.
    pub paused_by_app: bool,
    /// Answers owed to the peer that are not in the output yet (a protocol adapter's deferred
    /// responses and those behind them): "flushed" waits for them, and at the bound reading
    /// pauses. (In what was padding: the state stays 16 bytes.)
    pub owed: u16,
    pub registration: Registration,
    /// Whether input was being offered to the handler when the connection last settled: a
    /// connection that was held and now is not has its buffered input offered again.
    pub flowing: bool,
}

impl ConnState {
    /// A connection just opened, not yet registered.
    pub(crate) fn new() -> ConnState {
        ConnState {
            lifecycle: Lifecycle::Open,
            reason: None,
            read: ReadSide::Open,
            high_water: HighWater::Below,
            paused_by_app: false,
            owed: 0,
            registration: Registration::Registered(Interest::Idle),
            flowing: true,
        }
    }

    #[inline]
    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// A state in `lifecycle` (with a reason when it needs one), for tables of cases.
    #[cfg(test)]
    pub(crate) fn in_lifecycle(lifecycle: Lifecycle) -> ConnState {
        let mut s = ConnState::new();
        s.lifecycle = lifecycle;
        if s.is_ending() {
            s.reason = Some(Box::new(CloseReason::Local));
        }
        s
    }

    /// Asks for the write side to shut once output is flushed (ignored when closing or shut).
    pub(crate) fn shutdown_write(&mut self) {
        if self.lifecycle == Lifecycle::Open {
            self.lifecycle = Lifecycle::ShuttingDown;
        }
    }

    /// The write side is shut.
    pub(crate) fn write_shut(&mut self) {
        debug_assert_eq!(self.lifecycle, Lifecycle::ShuttingDown);
        self.lifecycle = Lifecycle::WriteShut;
    }

    /// Asks for a close once output is flushed, keeping the first reason given. With its
    /// write side failed there is nothing to flush: it closes at once, for the send error.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        self.lifecycle = match self.lifecycle {
            Lifecycle::Open | Lifecycle::ShuttingDown => Lifecycle::Closing,
            Lifecycle::WriteShut => Lifecycle::ClosingAfterShutdown,
            Lifecycle::WriteFailed => {
                self.lifecycle = Lifecycle::Aborted;
                return;
            }
            Lifecycle::Closing | Lifecycle::ClosingAfterShutdown | Lifecycle::Aborted => return,
        };
        self.reason = Some(Box::new(reason));
    }

    /// Marks the connection failed; it closes at once when the callback returns. The first
    /// failure's reason (a send error's too) replaces a close asked for before.
    pub(crate) fn fail(&mut self, reason: CloseReason) {
        match self.lifecycle {
            Lifecycle::Aborted => {}
            Lifecycle::WriteFailed => self.lifecycle = Lifecycle::Aborted,
            _ => {
                self.lifecycle = Lifecycle::Aborted;
                self.reason = Some(Box::new(reason));
            }
        }
    }

    /// A send failed: the write side is dead, but reading goes on ([`Lifecycle::WriteFailed`];
    /// the first send error is kept). A connection that was closing (reading had stopped)
    /// fails as [`fail`](Self::fail) does.
    pub(crate) fn send_failed(&mut self, reason: CloseReason) {
        match self.lifecycle {
            Lifecycle::Open | Lifecycle::ShuttingDown | Lifecycle::WriteShut => {
                self.lifecycle = Lifecycle::WriteFailed;
                self.reason = Some(Box::new(reason));
                self.high_water = HighWater::Below; // its output is dropped
            }
            Lifecycle::WriteFailed => {}
            Lifecycle::Closing | Lifecycle::ClosingAfterShutdown | Lifecycle::Aborted => {
                self.fail(reason)
            }
        }
    }

    /// Whether a send failed and the connection is reading what the kernel still holds.
    #[inline]
    pub(crate) fn is_write_failed(&self) -> bool {
        self.lifecycle == Lifecycle::WriteFailed
    }

    /// The reason a connection whose reading ended with `reason` closes for: the send error,
    /// if its write side failed first.
    pub(crate) fn read_ended(&mut self, reason: CloseReason) -> CloseReason {
        if self.is_write_failed() {
            self.take_reason(reason)
        } else {
            reason
        }
    }

    /// Takes the reason it is ending, or `otherwise` (the write side shut and the peer
    /// finished too: [`CloseReason::PeerClosed`]; a stop deadline: the shutdown reason).
    pub(crate) fn take_reason(&mut self, otherwise: CloseReason) -> CloseReason {
        self.reason.take().map_or(otherwise, |r| *r)
    }

    /// Whether writes are still taken.
    #[inline]
    pub(crate) fn writable(&self) -> bool {
        self.lifecycle as u8 <= Lifecycle::Closing as u8
    }

    /// Whether a close was asked for or the connection failed.
    #[inline]
    pub(crate) fn is_closing(&self) -> bool {
        let l = self.lifecycle as u8;
        l >= Lifecycle::Closing as u8 && l <= Lifecycle::Aborted as u8
    }

    /// Whether it is ending and holds the reason it will close for: a close was asked for,
    /// it failed, or a send failed (it is reading what the kernel still holds).
    #[inline]
    pub(crate) fn is_ending(&self) -> bool {
        self.is_closing() || self.is_write_failed()
    }

    /// Whether the write side is shut (so a close need not shut it again).
    pub(crate) fn is_write_shut(&self) -> bool {
        matches!(
            self.lifecycle,
            Lifecycle::WriteShut | Lifecycle::ClosingAfterShutdown | Lifecycle::WriteFailed
        )
    }

    /// Why reading is paused, given `input` unconsumed bytes and `jobs` worker jobs in flight.
    #[inline]
    pub(crate) fn pauses(&self, input: usize, jobs: usize, cfg: &Config) -> Pauses {
        Pauses::default()
            .with(Pauses::APPLICATION, self.paused_by_app)
            .with(
                Pauses::HIGH_WATER,
                self.high_water != HighWater::Below && cfg.pause_on_high_water,
            )
            .with(
                Pauses::INBOUND_LIMIT,
                cfg.inbound_policy == InboundPolicy::Pause && input > cfg.inbound_limit,
            )
            .with(Pauses::WORKER_JOBS, jobs >= cfg.max_jobs_per_conn)
            .with(Pauses::ANSWERS_OWED, self.owes_the_most(cfg))
    }

    /// Whether the connection owes as many answers as it may.
    #[inline]
    pub(crate) fn owes_the_most(&self, cfg: &Config) -> bool {
        usize::from(self.owed) >= cfg.max_owed_answers
    }

    /// Whether any pause holds: `!pauses(..).is_empty()`, the cheapest reasons checked first.
    #[inline]
    pub(crate) fn paused(&self, input: usize, jobs: usize, cfg: &Config) -> bool {
        self.paused_by_app
            || (self.high_water != HighWater::Below && cfg.pause_on_high_water)
            || jobs >= cfg.max_jobs_per_conn
            || self.owes_the_most(cfg)
            || (cfg.inbound_policy == InboundPolicy::Pause && input > cfg.inbound_limit)
    }

    /// Whether input is offered to the handler (also after end of stream): not closing, not
    /// `paused`.
    #[inline]
    pub(crate) fn delivering(&self, paused: bool) -> bool {
        !paused && !self.is_closing()
    }

    /// Whether the socket is read: delivering, and end of stream not read yet.
    #[inline]
    pub(crate) fn reading(&self, paused: bool) -> bool {
        self.delivering(paused) && self.read != ReadSide::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_follows_the_diagram() {
        let mut s = ConnState::new();
        assert!(s.writable() && !s.is_closing());
        s.shutdown_write();
        assert_eq!(s.lifecycle(), Lifecycle::ShuttingDown);
        assert!(
            s.writable(),
            "output written before the shutdown still goes out"
        );
        s.write_shut();
        assert!(!s.writable() && s.is_write_shut() && !s.is_closing());
        s.close(CloseReason::Local);
        assert_eq!(s.lifecycle(), Lifecycle::ClosingAfterShutdown);
        s.close(CloseReason::ServerShutdown);
        assert_eq!(s.take_reason(CloseReason::PeerClosed).as_str(), "local");

        let mut s = ConnState::new();
        s.close(CloseReason::IdleTimeout);
        s.shutdown_write();
        assert_eq!(s.lifecycle(), Lifecycle::Closing);
        assert!(s.writable() && s.is_closing());
        s.fail(CloseReason::Reset);
        s.fail(CloseReason::Panicked);
        assert_eq!(s.lifecycle(), Lifecycle::Aborted);
        assert!(!s.writable());
        assert_eq!(s.take_reason(CloseReason::Local).as_str(), "reset");
    }

    #[test]
    fn a_send_error_kills_the_write_side_and_keeps_its_reason() {
        for from in [
            Lifecycle::Open,
            Lifecycle::ShuttingDown,
            Lifecycle::WriteShut,
        ] {
            let mut s = ConnState::in_lifecycle(from);
            s.send_failed(CloseReason::Reset);
            assert_eq!(s.lifecycle(), Lifecycle::WriteFailed, "from {from:?}");
            assert!(!s.writable() && !s.is_closing() && s.is_write_shut());
            assert!(
                s.delivering(false),
                "what the kernel holds is still delivered"
            );
            s.send_failed(CloseReason::Panicked);
            let read = s.read_ended(CloseReason::PeerClosed);
            assert_eq!(read.as_str(), "reset", "the send error is the reason");
        }
        // A close or a later failure closes at once, for the send error.
        for end in [ConnState::close, ConnState::fail] {
            let mut s = ConnState::new();
            s.send_failed(CloseReason::Reset);
            end(&mut s, CloseReason::Local);
            assert_eq!(s.lifecycle(), Lifecycle::Aborted);
            assert_eq!(s.take_reason(CloseReason::Local).as_str(), "reset");
        }
        // Closing had stopped reading: a send error there aborts, as before.
        let mut s = ConnState::new();
        s.close(CloseReason::Local);
        s.send_failed(CloseReason::Reset);
        assert_eq!(s.lifecycle(), Lifecycle::Aborted);
        assert_eq!(s.take_reason(CloseReason::Local).as_str(), "reset");
        // Reading that ends on a connection whose write side works keeps its own reason.
        let mut s = ConnState::new();
        assert_eq!(
            s.read_ended(CloseReason::ReadTimeout).as_str(),
            "read_timeout"
        );
    }

    #[test]
    fn pauses_are_derived_from_state_buffers_and_config() {
        let cfg = Config {
            inbound_policy: InboundPolicy::Pause,
            inbound_limit: 10,
            max_jobs_per_conn: 2,
            max_owed_answers: 3,
            ..Config::default()
        };
        let mut s = ConnState::new();
        assert!(s.pauses(10, 1, &cfg).is_empty());
        assert_eq!(s.pauses(11, 0, &cfg), Pauses::INBOUND_LIMIT);
        assert_eq!(s.pauses(0, 2, &cfg), Pauses::WORKER_JOBS);
        s.owed = 2;
        assert!(s.pauses(0, 0, &cfg).is_empty());
        s.owed = 3;
        assert_eq!(s.pauses(0, 0, &cfg), Pauses::ANSWERS_OWED);
        s.owed = 0;
        s.high_water = HighWater::Above;
        assert_eq!(s.pauses(0, 0, &cfg), Pauses::HIGH_WATER);
        let no_hwm_pause = Config {
            pause_on_high_water: false,
            ..cfg
        };
        assert!(s.pauses(0, 0, &no_hwm_pause).is_empty());
        s.paused_by_app = true;
        s.owed = 3;
        let all = s.pauses(11, 2, &cfg);
        for p in [
            Pauses::APPLICATION,
            Pauses::HIGH_WATER,
            Pauses::INBOUND_LIMIT,
            Pauses::WORKER_JOBS,
            Pauses::ANSWERS_OWED,
        ] {
            assert!(all.contains(p));
        }
        let close = Config {
            inbound_policy: InboundPolicy::Close,
            ..cfg
        };
        assert!(!s.pauses(11, 0, &close).contains(Pauses::INBOUND_LIMIT));
        // The short-circuit check agrees with the set everywhere.
        for (app, owed) in [(false, 0), (true, 0), (false, 3), (true, 4)] {
            for hw in [HighWater::Below, HighWater::Crossed, HighWater::Above] {
                for (input, jobs) in [(0, 0), (11, 0), (0, 2), (11, 2), (10, 1)] {
                    for c in [cfg, no_hwm_pause, close] {
                        s.paused_by_app = app;
                        s.owed = owed;
                        s.high_water = hw;
                        let set = s.pauses(input, jobs, &c);
                        assert_eq!(s.paused(input, jobs, &c), !set.is_empty(), "{set:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn interest_is_what_the_connection_waits_for() {
        assert_eq!(
            Interest::wanted(false, true, false).bits(),
            READABLE | READ_CLOSED
        );
        assert_eq!(Interest::wanted(false, false, true).bits(), WRITABLE);
        assert_eq!(Interest::wanted(false, false, false).bits(), 0);
        assert_eq!(Interest::wanted(true, false, false), Interest::Edge);
        assert_eq!(Interest::wanted(true, true, true).bits() & EDGE, EDGE);
    }
}
