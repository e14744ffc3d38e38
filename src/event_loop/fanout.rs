//! Fan-out on the loop: what callbacks broadcast to a group or wrote to another connection of
//! the loop (the outbox), and the broadcasts other loops shipped here, taken in once the event
//! that produced them is done — never inside a callback, so a delivery never meets a
//! connection in the middle of one, and the callbacks a delivery causes (a member's
//! `on_high_water`, `on_close` when it is closed) only add to the next round.
//!
//! A broadcast goes into its group's log, which a sweep writes to the members (`sweep.rs`); a
//! `write_to` is written at once, after what the target is owed by its groups, so a
//! connection gets everything in the order its loop took it in. Writing a member what it is
//! owed takes one system call for up to 64 messages (up to 8 KiB copied together for one
//! `send`, larger ones gathered by `sendmsg`).

use std::sync::Arc;

use super::EventLoop;
use crate::buffer::MAX_IOV;
use crate::conn::CloseReason;
use crate::fanout::{Counters, Logged, Outgoing, Rules, SlowConsumer};
use crate::handler::Handler;
use crate::stats::bump;

/// What deliveries to a group's members did on this loop.
#[derive(Default)]
pub(super) struct Tally {
    delivered: u64,
    dropped: u64,
    closed: u64,
}

impl Tally {
    /// Adds what was done to the group's counters and the loop's.
    pub(super) fn publish(&self, counters: &Counters, stats: &crate::stats::LoopStats) {
        bump(&counters.delivered, self.delivered);
        bump(&counters.dropped, self.dropped);
        bump(&counters.closed, self.closed);
        bump(&stats.group_delivered, self.delivered);
        bump(&stats.group_dropped, self.dropped);
    }
}

impl<H: Handler> EventLoop<H> {
    /// Delivers what callbacks left in the outbox (and what those deliveries make callbacks
    /// write, until nothing is left).
    #[inline]
    pub(super) fn flush_outbox(&mut self) {
        if self.lp.fanout.has_outgoing() {
            self.deliver_outbox();
        }
    }

    #[inline(never)]
    fn deliver_outbox(&mut self) {
        while self.lp.fanout.has_outgoing() {
            let mut outbox = self.lp.fanout.take_outgoing();
            for entry in outbox.entries.drain(..) {
                match entry {
                    Outgoing::WriteTo {
                        key,
                        generation,
                        start,
                        end,
                    } => self.write_to(key as usize, generation, &outbox.bytes[start..end]),
                    Outgoing::Broadcast {
                        group,
                        payload,
                        except,
                    } => self.log_broadcast(group, payload, except),
                }
            }
            self.lp.fanout.recycle(outbox);
        }
    }

    /// `LoopCx::write_to`: the bytes, written as the connection's own (after what it is owed
    /// by its groups).
    fn write_to(&mut self, key: usize, generation: u32, data: &[u8]) {
        if !self.alive(key, generation) || !self.up_to_date(key, generation) {
            return;
        }
        let core = &mut self.conns[key].core;
        crate::conn::Conn::new(core, &mut self.lp, &[]).write(data);
        self.settle(key);
    }

    /// The broadcasts of `owed` not meant to skip it, to member `key`, as far as its pending
    /// output allows: a message goes in when the member's pending output stays within the
    /// group's limit with it (or holds nothing at all); otherwise the policy decides.
    pub(super) fn deliver_to(
        &mut self,
        key: usize,
        generation: u32,
        owed: &[Logged],
        rules: Rules,
        tally: &mut Tally,
    ) {
        let mut rest = meant_for(owed, generation);
        let Some(first) = rest.next() else {
            return;
        };
        let mut queue = Queue {
            next: Some(first),
            rest,
        };
        if !self.conns[key].core.state.writable() {
            tally.dropped += queue.left();
            return;
        }
        let limit = rules.max_pending.unwrap_or(self.lp.cfg.high_water);
        let mut window = [first; MAX_IOV];
        while queue.next.is_some() {
            // A window against the pending output as it stands now: it is sent before a
            // message that would not fit with it, since the kernel may take the window; only
            // the queue it refused counts against the limit.
            let pending = self.conns[key].core.pending();
            let Some(n) = queue.fill(&mut window, pending, limit, rules.policy, tally) else {
                tally.closed += 1;
                return self.close_now(key, CloseReason::SlowConsumer);
            };
            if n == 0 {
                break; // the rest was dropped
            }
            tally.delivered += n as u64;
            let core = &mut self.conns[key].core;
            core.send_shared(&mut self.lp, &window[..n]);
            if !core.state.writable() {
                // The socket failed (settling closes it): the rest is lost with it.
                tally.dropped += queue.left();
                break;
            }
        }
        self.settle(key);
    }
}

/// The broadcasts of `owed` for the member of `generation`: not sent by it, not empty.
#[inline]
fn meant_for(owed: &[Logged], generation: u32) -> impl Iterator<Item = &Arc<[u8]>> {
    owed.iter()
        .filter(move |e| e.except != Some(generation) && !e.payload.is_empty())
        .map(|e| &e.payload)
}

/// The messages still to go to one member, the next one in view.
struct Queue<'a, I> {
    next: Option<&'a Arc<[u8]>>,
    rest: I,
}

impl<'a, I: Iterator<Item = &'a Arc<[u8]>>> Queue<'a, I> {
    /// How many messages are left: what a member that can take no more loses.
    fn left(self) -> u64 {
        self.next.map_or(0, |_| 1 + self.rest.count() as u64)
    }

    /// Takes the next messages into `window`, up to `MAX_IOV`, while the member's `pending`
    /// output stays within `limit` with them. One that does not fit ends the window, or, at
    /// the start of one, is dropped (`tally`) — or closes the member, as `policy` says: then
    /// `None`. Returns how many went in (0: the rest was dropped).
    #[inline(always)]
    fn fill(
        &mut self,
        window: &mut [&'a Arc<[u8]>; MAX_IOV],
        mut pending: usize,
        limit: usize,
        policy: SlowConsumer,
        tally: &mut Tally,
    ) -> Option<usize> {
        let mut n = 0;
        while let Some(p) = self.next {
            if n == MAX_IOV {
                break;
            }
            if pending > 0 && pending + p.len() > limit {
                if n > 0 {
                    break;
                }
                if policy == SlowConsumer::Close {
                    return None;
                }
                self.next = self.rest.next();
                tally.dropped += 1;
                continue;
            }
            self.next = self.rest.next();
            pending += p.len();
            window[n] = p;
            n += 1;
        }
        Some(n)
    }
}
