//! Idle and read timeouts: one timer per connection at most, re-armed lazily.
//!
//! Activity does not touch the timer heap: reads and writes only store the time (one store of
//! the loop's cached clock). When the timer fires, the connection's due times are computed
//! from those stamps; if nothing is due yet the timer is re-armed for the earliest one. So a
//! busy connection costs one timer operation per timeout period, not one per event.
//!
//! A connection that is closing with output the peer does not take is bounded the same way:
//! while closing, the idle period is at most the flush timeout, and when it passes without any
//! progress the connection is closed and its output dropped.

use std::time::Duration;

use super::{EventLoop, Src};
use crate::config::Config;
use crate::conn::{flag, CloseReason, ConnCore};
use crate::cx::TimerKind;
use crate::handler::{Action, Handler, Timeout};

pub(super) fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX / 2)) as u64
}

/// The idle period that applies to `core` now, if any.
fn idle_period(core: &ConnCore, cfg: &Config) -> Option<u64> {
    let idle = cfg.idle_timeout.map(millis);
    if core.has(flag::CLOSE_REQ) && core.out.is_some() {
        let stall = millis(cfg.flush_timeout).max(1);
        return Some(idle.map_or(stall, |i| i.min(stall)));
    }
    idle
}

/// When the next timeout check is due, if one is.
fn next_due(core: &ConnCore, cfg: &Config) -> Option<u64> {
    let idle = idle_period(core, cfg).map(|p| core.active_ms.saturating_add(p));
    let read = match (cfg.read_timeout, core.input_since_ms) {
        (Some(t), Some(since)) => Some(since.saturating_add(millis(t))),
        _ => None,
    };
    match (idle, read) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<H: Handler> EventLoop<H> {
    /// Makes sure a timer fires no later than the connection's earliest due time.
    pub(super) fn arm_timeouts(&mut self, key: usize) {
        // By reference: `Config` is large, and a copy of it here (once per event) was a
        // `memcpy` call of its own.
        let cfg = &self.lp.cfg;
        let core = &mut self.conns[key].core;
        if cfg.idle_timeout.is_none() && cfg.read_timeout.is_none() && !core.has(flag::CLOSE_REQ) {
            return;
        }
        let Some(due) = next_due(core, cfg) else {
            return;
        };
        if let Some((timer, at)) = core.timeout_timer {
            if at <= due {
                return; // it fires early enough and re-checks then
            }
            self.lp.timers.cancel(timer);
        }
        let kind = TimerKind::ConnTimeout {
            key: key as u32,
            generation: core.id.generation,
        };
        let timer = self
            .lp
            .timers
            .insert(self.lp.timers.at_millis(due), kind, None);
        core.timeout_timer = Some((timer, due));
    }

    /// The timeout timer fired: act on whatever is due, re-arm for the rest.
    pub(super) fn check_timeouts(&mut self, key: usize) {
        let cfg = self.lp.cfg;
        let now = self.lp.now_ms;
        let core = &mut self.conns[key].core;
        core.timeout_timer = None;
        let idle_due = idle_period(core, &cfg).map(|p| core.active_ms.saturating_add(p));
        let read_due = match (cfg.read_timeout, core.input_since_ms) {
            (Some(t), Some(since)) => Some(since.saturating_add(millis(t))),
            _ => None,
        };
        let which = if idle_due.is_some_and(|d| d <= now) {
            Timeout::Idle
        } else if read_due.is_some_and(|d| d <= now) {
            Timeout::Read
        } else {
            self.arm_timeouts(key);
            return;
        };
        if core.has(flag::CLOSE_REQ) {
            // Closing and the peer takes nothing: give up on the output.
            let reason = core.take_reason().unwrap_or(CloseReason::IdleTimeout);
            self.close_now(key, reason);
            return;
        }
        let Some((action, consumed)) =
            self.invoke(key, Src::Buffered, |h, c, s| h.on_timeout(c, s, which))
        else {
            return;
        };
        let entry = &mut self.conns[key];
        entry.input.consume(consumed);
        match action {
            Action::Close => entry.core.request_close(match which {
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
