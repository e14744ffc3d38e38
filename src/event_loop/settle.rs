//! Settling a connection after anything happened to it: send what the callback staged, then
//! apply the [`Plan`] the planner (`conn::plan`) computes from the connection's state — a step
//! in its life (fail, report the high-water mark, shut the write side, close) or the upkeep of
//! the loop's bookkeeping (high-water hysteresis, read-timeout clock, handles, epoll interest,
//! ready list, timeout timer). A no-op plan, the common case on a busy connection, costs the
//! planning and nothing else.

use std::os::fd::AsRawFd;

use super::EventLoop;
use crate::conn::plan::{self, Clock, Plan, Step, Upkeep};
use crate::conn::state::{HighWater, Registration};
use crate::conn::{CloseReason, Extra};
use crate::cx::TimerKind;
use crate::handler::Handler;
use crate::sys::socket;
use crate::token;

impl<H: Handler> EventLoop<H> {
    /// Flushes what the last callback staged and applies the connection's plan until it asks
    /// for nothing more (or the connection is gone).
    ///
    /// The fast path is the planner's shortcut for a no-op plan ([`plan::steady`]); debug
    /// builds check that the full plan really is a no-op there.
    #[inline]
    pub(super) fn settle(&mut self, key: usize) {
        self.send_staged(key);
        let entry = &self.conns[key];
        let facts = entry.core.facts(entry.input.len(), self.lp.now_ms);
        if plan::steady(&facts, &self.lp.cfg) {
            debug_assert_eq!(
                plan::plan(&facts, &self.lp.cfg),
                Plan::NONE,
                "the steady shortcut would skip work for {facts:?}"
            );
            return;
        }
        self.settle_by_plan(key);
    }

    /// The slow path: plan, apply, and plan again while steps move the connection on.
    #[inline(never)]
    fn settle_by_plan(&mut self, key: usize) {
        loop {
            let entry = &self.conns[key];
            let facts = entry.core.facts(entry.input.len(), self.lp.now_ms);
            let plan = plan::plan(&facts, &self.lp.cfg);
            match plan.step {
                Step::Keep => return self.keep_up(key, plan.upkeep),
                Step::Abort => {
                    let reason = self.conns[key].core.state.take_reason(CloseReason::Reset);
                    return self.close_now(key, reason);
                }
                Step::NotifyHighWater => {
                    let core = &mut self.conns[key].core;
                    core.state.high_water = HighWater::Above;
                    let generation = core.generation;
                    self.call_unsettled(key, |h, c, s| h.on_high_water(c, s));
                    if !self.alive(key, generation) {
                        return;
                    }
                }
                Step::ShutDownWrite | Step::Close => {
                    let core = &mut self.conns[key].core;
                    // TLS: close_notify goes after everything else, before the shutdown or
                    // close; once queued, plan again (it may have to wait for the socket).
                    if core.send_close_notify(&mut self.lp) {
                        continue;
                    }
                    if plan.step == Step::Close {
                        return self.close_graceful(key);
                    }
                    if let Err(e) = socket::shutdown_write(&core.fd) {
                        return self.close_now(key, CloseReason::from_io(e));
                    }
                    core.state.write_shut();
                }
            }
            self.send_staged(key);
        }
    }

    /// Sends what the last callback wrote (encrypting it first on a TLS connection).
    #[inline]
    fn send_staged(&mut self, key: usize) {
        let core = &mut self.conns[key].core;
        if core.tls.is_some() {
            core.encrypt_staged(&mut self.lp);
        }
        if !self.lp.staging.is_empty() {
            core.send_staged(&mut self.lp, Extra::None);
        }
    }

    /// Applies the upkeep of a connection that stays. A no-op returns at once; debug builds
    /// apply it anyway and check that it changed nothing.
    fn keep_up(&mut self, key: usize, upkeep: Upkeep) {
        let noop = upkeep.is_noop();
        if noop && !cfg!(debug_assertions) {
            return;
        }
        #[cfg(debug_assertions)]
        let before = self.observe(key);
        let now_ms = self.lp.now_ms;
        let entry = &mut self.conns[key];
        let core = &mut entry.core;
        if upkeep.below_low_water {
            core.state.high_water = HighWater::Below;
        }
        match upkeep.input_clock {
            Clock::Keep => {}
            Clock::Start => core.input_since_ms = Some(now_ms),
            Clock::Stop => core.input_since_ms = None,
        }
        if upkeep.publish {
            if let Some(shared) = &core.handle {
                shared.publish_pending(core.pending());
            }
        }
        if let Some(flowing) = upkeep.flowing {
            core.state.flowing = flowing;
        }
        let generation = core.generation;
        if upkeep.requeue {
            self.ready.push((key, generation));
        }
        if let Some(interest) = upkeep.register {
            let core = &mut self.conns[key].core;
            let tok = token::make(token::CONN, key, generation);
            let fd = core.fd.as_raw_fd();
            let result = match core.state.registration {
                Registration::Deregistered => self.lp.epoll.add(fd, interest.bits(), tok),
                Registration::Registered(_) => self.lp.epoll.modify(fd, interest.bits(), tok),
            };
            match result {
                Ok(()) => core.state.registration = Registration::Registered(interest),
                Err(e) => return self.close_now(key, CloseReason::Error(e)),
            }
        }
        if let Some(due) = upkeep.arm_timer {
            self.arm_timeout(key, due);
        }
        #[cfg(debug_assertions)]
        if noop {
            debug_assert_eq!(
                before,
                self.observe(key),
                "the slow path changed a connection whose plan was a no-op"
            );
        }
    }

    /// Arms the connection's timeout check for `due` (loop milliseconds), replacing a later one.
    pub(super) fn arm_timeout(&mut self, key: usize, due: u64) {
        let core = &mut self.conns[key].core;
        if let Some((timer, _)) = core.timeout_timer.take() {
            self.lp.timers.cancel(timer);
        }
        let kind = TimerKind::ConnTimeout {
            key: key as u32,
            generation: core.generation,
        };
        let timer = self
            .lp
            .timers
            .insert(self.lp.timers.at_millis(due), kind, None);
        core.timeout_timer = Some((timer, due));
    }

    /// What settling can change on a connection (debug builds compare it around a no-op plan).
    #[cfg(debug_assertions)]
    fn observe(&self, key: usize) -> impl PartialEq + std::fmt::Debug {
        let core = &self.conns[key].core;
        let s = &core.state;
        (
            (s.lifecycle(), s.read, s.high_water, s.paused_by_app),
            (s.registration, s.flowing, core.input_since_ms),
            core.timeout_timer.map(|(_, at)| at),
            self.ready.len(),
        )
    }
}
