//! Idle and read timeouts: one timer per connection at most, re-armed lazily.
//!
//! Activity does not touch the timer heap: reads and writes only store the time (one store of
//! the loop's cached clock). When the timer fires, the connection's due times are computed
//! from those stamps; if nothing is due yet the timer is re-armed for the earliest one. So a
//! busy connection costs one timer operation per timeout period, not one per event.
//!
//! A connection that is closing with output the peer does not take is bounded the same way:
//! while closing, the idle period is at most the flush timeout, and when it passes without any
//! progress the connection is closed and its output dropped. So is one whose send failed and
//! that reads nothing for as long (its reader paused): it closes for the send error.

use super::{EventLoop, Src};
use crate::conn::plan::{idle_period, read_due};
use crate::conn::CloseReason;
use crate::handler::{Action, Handler, Timeout};

impl<H: Handler> EventLoop<H> {
    /// The timeout timer fired: act on whatever is due, re-arm for the rest.
    pub(super) fn check_timeouts(&mut self, key: usize) {
        let cfg = &self.lp.cfg;
        let now = self.lp.now_ms;
        let core = &mut self.conns[key].core;
        core.timeout_timer = None;
        let waiting = core.out.is_some() || core.jobs_in_flight() > 0 || core.state.owed > 0;
        let idle_due = idle_period(&core.state, waiting, core.idle, cfg)
            .map(|p| core.active_ms.saturating_add(p));
        let which = if idle_due.is_some_and(|d| d <= now) {
            Timeout::Idle
        } else if read_due(core.input_since_ms, cfg).is_some_and(|d| d <= now) {
            Timeout::Read
        } else {
            return self.settle(key); // not due yet: the plan re-arms the timer
        };
        if core.state.is_ending() {
            // Closing and the peer takes nothing: give up on the output. (A failed write side
            // that read nothing for as long: give up on the input too, for the send error.)
            let reason = core.state.take_reason(CloseReason::IdleTimeout);
            return self.close_now(key, reason);
        }
        let Some((action, consumed)) =
            self.invoke(key, Src::Buffered, |h, c, s| h.on_timeout(c, s, which))
        else {
            return;
        };
        let entry = &mut self.conns[key];
        entry.input.consume(consumed);
        match action {
            Action::Close => entry.core.state.close(match which {
                Timeout::Idle => CloseReason::IdleTimeout,
                Timeout::Read => CloseReason::ReadTimeout,
            }),
            Action::Continue => match which {
                Timeout::Idle => entry.core.active_ms = now,
                Timeout::Read => entry.core.input_since_ms = Some(now),
            },
            Action::StopServer => self.lp.stop_requested = true,
        }
        self.settle(key);
    }
}
