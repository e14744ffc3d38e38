//! Sweeps: writing each group's log to its members on this loop a slice of members at a
//! time, with the loop's other work in between.
//!
//! Why slices: writing a broadcast to a thousand members takes milliseconds. Done in one go
//! it holds up every other connection of the loop, the publishers too, and each member costs
//! a system call per round of broadcasts however little each round holds. Done
//! [`SLICE`] members at a time, with an `epoll_wait` (timeout zero) and its events in
//! between, what publishers send meanwhile joins the log, and each member visited gets
//! everything since its last visit in one system call: the busier the group, the fuller each
//! call.
//!
//! Bounds: a group's log on a loop holds at most the handle write limit
//! ([`Builder::handle_write_limit`](crate::Builder::handle_write_limit), counted as for
//! broadcasts in flight between loops); past it the loop finishes the sweep before it reads
//! on, so publishers faster than the members still meet back-pressure, as they do across
//! loops. A stop finishes every sweep before `on_stop`.
//!
//! Order: a connection is brought up to date ([`up_to_date`](EventLoop::up_to_date)) before
//! anything else reaches it — before its callbacks run, its handle's work is done, or a
//! `write_to` is written to it — and a member of several groups gets their broadcasts in the
//! order the loop took them in. So each connection gets its broadcasts, its own writes and
//! the `write_to`s meant for it in the order its loop took them, as if every broadcast were
//! written to everyone at once.

use std::sync::Arc;

use super::fanout::Tally;
use super::EventLoop;
use crate::fanout::Run;
use crate::handler::Handler;

/// Members written to in one slice of a sweep.
const SLICE: usize = 64;

impl<H: Handler> EventLoop<H> {
    /// A broadcast for the members of `group` on this loop: into its log, and past the bound,
    /// written to all of them now.
    pub(super) fn log_broadcast(&mut self, group: u64, payload: Arc<[u8]>, except: Option<u32>) {
        let Some(logged) = self.lp.fanout.append(group, payload, except) else {
            return; // no members here (any more)
        };
        if logged > self.lp.cfg.handle_write_limit {
            self.finish_sweep(group);
        }
    }

    /// One slice of every sweep under way, then what its callbacks wrote.
    pub(super) fn sweep(&mut self) {
        let mut groups = std::mem::take(&mut self.lp.fanout.order);
        self.lp.fanout.sweeping_groups(&mut groups);
        for &group in &groups {
            self.sweep_slice(group);
        }
        groups.clear();
        self.lp.fanout.order = groups;
        self.flush_outbox();
    }

    /// Writes every sweep to its end (the server is stopping), then what that made
    /// callbacks write.
    pub(super) fn finish_sweeps(&mut self) {
        let mut groups = Vec::new();
        self.lp.fanout.sweeping_groups(&mut groups);
        for group in groups {
            self.finish_sweep(group);
        }
        self.flush_outbox();
    }

    /// Writes `group`'s log to every member that is owed any of it. Ends: nothing joins the
    /// log meanwhile (what callbacks broadcast waits in the outbox), and a full pass
    /// brings every member up to date.
    fn finish_sweep(&mut self, group: u64) {
        while self.lp.fanout.is_sweeping(group) {
            self.sweep_slice(group);
        }
    }

    /// The next [`SLICE`] members of `group`'s sweep that are owed something: each written
    /// what it is owed.
    fn sweep_slice(&mut self, group: u64) {
        let mut visits = std::mem::take(&mut self.lp.fanout.visits);
        if self.lp.fanout.next_slice(group, SLICE, &mut visits) {
            let alone = visits.iter().any(|v| v.from.is_some());
            if let Some((rules, counters, owed)) =
                alone.then(|| self.lp.fanout.check_out(group)).flatten()
            {
                let mut tally = Tally::default();
                for v in &visits {
                    let (key, generation) = (v.key as usize, v.generation);
                    if let Some(from) = v.from {
                        if self.alive(key, generation) {
                            self.deliver_to(key, generation, &owed[from..], rules, &mut tally);
                        }
                    }
                }
                self.lp.fanout.check_in(group, owed);
                tally.publish(&counters, &self.lp.shared.stats);
            }
            // Members of other groups too: brought up to date in all of them, in order.
            for v in visits.iter().filter(|v| v.from.is_none()) {
                if self.alive(v.key as usize, v.generation) {
                    self.catch_up(v.key as usize, v.generation);
                }
            }
            self.lp.fanout.end_slice(group);
        }
        visits.clear();
        self.lp.fanout.visits = visits;
    }

    /// Writes connection `key`, if a member with something owed while sweeps are under way,
    /// what its groups owe it, before anything else reaches it. Returns whether it is still
    /// open.
    #[inline]
    pub(super) fn up_to_date(&mut self, key: usize, generation: u32) -> bool {
        if !self.lp.fanout.sweeping() {
            return true;
        }
        self.catch_up(key, generation);
        self.alive(key, generation)
    }

    /// Writes member `key` what each of its groups owes it, in publish order.
    #[inline(never)]
    fn catch_up(&mut self, key: usize, generation: u32) {
        let mut runs = std::mem::take(&mut self.lp.fanout.runs);
        self.lp.fanout.catch_up((key as u32, generation), &mut runs);
        for &run in &runs {
            if !self.alive(key, generation) {
                break;
            }
            // A callback of an earlier stretch (`on_high_water`) may have left the group: a
            // WebSocket member leaves once its close frame is out, and nothing may follow it.
            if self
                .lp
                .fanout
                .is_member(run.group, (key as u32, generation))
            {
                self.deliver_run(key, generation, run);
            }
        }
        runs.clear();
        self.lp.fanout.runs = runs;
    }

    /// Writes member `key` one stretch of a group's log.
    fn deliver_run(&mut self, key: usize, generation: u32, run: Run) {
        let Some((rules, counters, owed)) = self.lp.fanout.check_out(run.group) else {
            return;
        };
        let mut tally = Tally::default();
        // A stretch of a log made anew meanwhile (its member left and joined again from a
        // callback of an earlier stretch) is not there: nothing is owed from it.
        if let Some(stretch) = owed.get(run.from..run.to) {
            self.deliver_to(key, generation, stretch, rules, &mut tally);
        }
        self.lp.fanout.check_in(run.group, owed);
        tally.publish(&counters, &self.lp.shared.stats);
    }
}
