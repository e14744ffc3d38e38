//! The loop's side of fan-out: which of the loop's connections belong to which group, what
//! each group published on the loop and has not yet written to every member (its log, in
//! `log.rs`), and what callbacks asked to write to other connections of the loop once their
//! event is done (the outbox). The public side, [`Group`](crate::Group), is in `group.rs`;
//! delivery, which needs the connection table, is the event loop's (`event_loop/fanout.rs`).
//!
//! A group's members are kept per loop, in the loop that owns them: a broadcast reads its own
//! loop's list without a lock, and each other loop with members gets one [`Shipment`] per
//! broadcast, not one per recipient. What other threads see of a group on a loop is its
//! [`Counters`]: members (so a broadcast skips loops without any), bytes in flight to the loop
//! (bounded), and what was delivered, dropped and closed.
//!
//! This module imports nothing of the core, so the mailbox can carry a shipment without a
//! circle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::AcqRel, Ordering::Acquire};
use std::sync::Arc;

use slab::Slab;

mod log;

use log::{in_publish_order, GroupLog};
pub(crate) use log::{Logged, Run};

/// What a group does with a member that does not keep up: one whose pending output (the bytes
/// the kernel refused so far) would pass the group's limit with the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// The message is not written to that member and is counted as dropped; the member stays
    /// in the group and gets the next messages that fit (its stream has gaps). The others are
    /// not affected.
    Drop,
    /// The member is closed at once, its pending output discarded, with
    /// [`CloseReason::SlowConsumer`](crate::CloseReason::SlowConsumer).
    Close,
}

/// How a group treats its members (fixed when it is made).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    pub policy: SlowConsumer,
    /// The most pending output a member may hold with a message added; `None`: the server's
    /// high-water mark.
    pub max_pending: Option<usize>,
}

/// What a shipment costs in flight beyond its payload (the task, the shared payload's
/// header): so a burst of tiny messages is bounded too.
const SHIPMENT_OVERHEAD: usize = 64;

/// Bytes a message of `len` bytes holds in flight to one loop.
pub(crate) fn in_flight_cost(len: usize) -> usize {
    len.saturating_add(SHIPMENT_OVERHEAD)
}

/// One group's counters on one loop. `members` and `in_flight` change from other threads too
/// (read-modify-writes); the loop alone writes the others (a relaxed load and store). Aligned
/// so two loops' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    /// Members on the loop, counting joins posted from other threads and not yet applied.
    pub members: AtomicUsize,
    /// Bytes of shipments posted to the loop and not yet taken by it (see
    /// [`in_flight_cost`]).
    pub in_flight: AtomicUsize,
    /// Broadcasts started by callbacks on the loop.
    pub published: AtomicU64,
    /// Messages handed to a member's output (sent, or queued behind its pending output).
    pub delivered: AtomicU64,
    /// Messages a member did not get: it was too far behind (the drop policy), or no longer
    /// took output.
    pub dropped: AtomicU64,
    /// Members closed for being too far behind (the close policy).
    pub closed: AtomicU64,
}

impl Counters {
    /// Reserves `cost` bytes in flight, unless that would pass `limit` (one shipment always
    /// fits when nothing else is in flight, however large).
    pub(crate) fn reserve(&self, cost: usize, limit: usize) -> bool {
        self.in_flight
            .fetch_update(AcqRel, Acquire, |now| {
                let total = now.saturating_add(cost);
                (now == 0 || total <= limit).then_some(total)
            })
            .is_ok()
    }

    /// Gives back bytes reserved in flight.
    pub(crate) fn release(&self, cost: usize) {
        self.in_flight.fetch_sub(cost, AcqRel);
    }
}

/// A broadcast on its way to one loop (posted to its mailbox).
pub(crate) struct Shipment {
    pub group: u64,
    pub payload: Arc<[u8]>,
    /// The generation of a connection of that loop not to write to (the sender).
    pub except: Option<u32>,
    /// The group's counters on that loop: the shipment is in flight there until taken.
    pub counters: Arc<Counters>,
}

/// Something a callback asked to write to connections of its loop, delivered once its event
/// is done.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A message for every member of `group` on this loop but the one of generation `except`.
    Broadcast {
        group: u64,
        payload: Arc<[u8]>,
        except: Option<u32>,
    },
    /// Bytes for one connection (`start..end` of the outbox's bytes).
    WriteTo {
        key: u32,
        generation: u32,
        start: usize,
        end: usize,
    },
}

/// What callbacks wrote for other connections, in order; the bytes of every `WriteTo` are
/// packed in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub entries: Vec<Outgoing>,
    pub bytes: Vec<u8>,
}

/// A group's members on one loop, and what it published there not yet written to all.
struct LocalGroup {
    rules: Rules,
    counters: Arc<Counters>,
    /// Each member; a member's place is stable until it leaves.
    members: Slab<Member>,
    log: GroupLog,
}

/// A member of a group on its loop.
#[derive(Clone, Copy, Debug)]
struct Member {
    key: u32,
    generation: u32,
    /// The number of the first broadcast it has not been written (or was not owed: those
    /// before it joined).
    next: u64,
}

/// A member a sweep's slice is to write to. `from`: where its entries begin in the group's
/// log when that group is its only one; `None` when it belongs to others too, whose entries
/// may come between.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Visit {
    pub key: u32,
    pub generation: u32,
    pub from: Option<usize>,
}

/// A loop's groups, its connections' memberships, and its outbox.
#[derive(Default)]
pub(crate) struct LoopGroups {
    groups: HashMap<u64, LocalGroup>,
    /// The groups of each member connection, by slot: its generation, and `(group, place)`.
    memberships: HashMap<u32, (u32, Vec<(u64, usize)>)>,
    outbox: Outbox,
    /// The number the next broadcast delivered on this loop gets (one sequence for all its
    /// groups, so a member of several gets them in the loop's order).
    seq: u64,
    /// The groups with a sweep under way, in the order they began.
    sweeping: Vec<u64>,
    /// Reused by the sweeps: the groups of a round of slices, a slice's members, a member's
    /// stretches, and room to order them.
    pub order: Vec<u64>,
    pub visits: Vec<Visit>,
    pub runs: Vec<Run>,
    run_scratch: Vec<Run>,
}

impl LoopGroups {
    /// Adds connection `key`/`generation` to `group`. `counted`: its place in the members
    /// count was taken already (a join posted from another thread). Returns `false` if it was
    /// a member already.
    pub(crate) fn join(
        &mut self,
        group: u64,
        rules: Rules,
        counters: &Arc<Counters>,
        (key, generation): (u32, u32),
        counted: bool,
    ) -> bool {
        let entry = self
            .memberships
            .entry(key)
            .or_insert((generation, Vec::new()));
        if entry.0 != generation {
            // A connection that left the slot without leaving its groups (cannot happen:
            // every close leaves them); start afresh rather than mix two connections.
            debug_assert!(false, "stale memberships for slot {key}");
            *entry = (generation, Vec::new());
        }
        if entry.1.iter().any(|&(g, _)| g == group) {
            if counted {
                counters.members.fetch_sub(1, AcqRel);
            }
            return false;
        }
        let local = self.groups.entry(group).or_insert_with(|| LocalGroup {
            rules,
            counters: Arc::clone(counters),
            members: Slab::new(),
            log: GroupLog::default(),
        });
        // It is owed what is published from now on, not what is still being written.
        let place = local.members.insert(Member {
            key,
            generation,
            next: self.seq,
        });
        entry.1.push((group, place));
        if !counted {
            counters.members.fetch_add(1, AcqRel);
        }
        true
    }

    /// Takes connection `key`/`generation` out of `group`. Returns whether it was a member.
    pub(crate) fn leave(&mut self, group: u64, (key, generation): (u32, u32)) -> bool {
        let Some((g, groups)) = self.memberships.get_mut(&key) else {
            return false;
        };
        if *g != generation {
            return false;
        }
        let Some(i) = groups.iter().position(|&(id, _)| id == group) else {
            return false;
        };
        let (_, place) = groups.swap_remove(i);
        if groups.is_empty() {
            self.memberships.remove(&key);
        }
        self.remove_member(group, place);
        true
    }

    /// Takes connection `key`/`generation` out of every group (it closed, or asked to).
    /// Returns how many it left.
    pub(crate) fn leave_all(&mut self, (key, generation): (u32, u32)) -> usize {
        if self.memberships.is_empty() {
            return 0;
        }
        match self.memberships.get(&key) {
            Some(&(g, _)) if g == generation => {}
            _ => return 0,
        }
        let Some((_, groups)) = self.memberships.remove(&key) else {
            return 0;
        };
        for &(group, place) in &groups {
            self.remove_member(group, place);
        }
        groups.len()
    }

    fn remove_member(&mut self, group: u64, place: usize) {
        let Some(local) = self.groups.get_mut(&group) else {
            return;
        };
        local.members.try_remove(place);
        local.counters.members.fetch_sub(1, AcqRel);
        if local.members.is_empty() {
            // Its log goes with it: nobody here is owed it.
            self.groups.remove(&group);
            self.sweeping.retain(|&g| g != group);
        }
    }

    /// The groups connection `key`/`generation` belongs to, as `(group, place)`.
    fn groups_of(&self, (key, generation): (u32, u32)) -> &[(u64, usize)] {
        match self.memberships.get(&key) {
            Some((g, groups)) if *g == generation => groups,
            _ => &[],
        }
    }

    /// Whether connection `key`/`generation` belongs to `group`.
    pub(crate) fn is_member(&self, group: u64, member: (u32, u32)) -> bool {
        self.groups_of(member).iter().any(|&(id, _)| id == group)
    }

    /// How many groups connection `key`/`generation` belongs to.
    pub(crate) fn count_of(&self, member: (u32, u32)) -> usize {
        self.groups_of(member).len()
    }

    /// Whether `group` has members on this loop.
    pub(crate) fn has_members(&self, group: u64) -> bool {
        self.groups.contains_key(&group)
    }

    /// Logs a broadcast for the members of `group` on this loop, to be written by a sweep.
    /// Returns the bytes the group's log holds with it, or `None` without members here.
    pub(crate) fn append(
        &mut self,
        group: u64,
        payload: Arc<[u8]>,
        except: Option<u32>,
    ) -> Option<usize> {
        let local = self.groups.get_mut(&group)?;
        let seq = self.seq;
        self.seq += 1;
        if local.log.push(Logged {
            seq,
            payload,
            except,
        }) {
            self.sweeping.push(group);
        }
        Some(local.log.bytes())
    }

    /// Whether any group has a sweep under way on this loop.
    #[inline]
    pub(crate) fn sweeping(&self) -> bool {
        !self.sweeping.is_empty()
    }

    /// Whether `group` has a sweep under way on this loop.
    pub(crate) fn is_sweeping(&self, group: u64) -> bool {
        self.groups.get(&group).is_some_and(|l| l.log.sweeping())
    }

    /// The groups with a sweep under way, in the order they began, into `into`.
    pub(crate) fn sweeping_groups(&self, into: &mut Vec<u64>) {
        into.extend_from_slice(&self.sweeping);
    }

    /// The next members of `group`'s sweep owed something, up to `max` of them, into
    /// `visits`. Each is taken as written from here on: a member of this group alone is
    /// given where its entries begin; one of several groups is to be brought up to date in
    /// all of them ([`catch_up`](Self::catch_up)). Returns whether the group is sweeping.
    pub(crate) fn next_slice(&mut self, group: u64, max: usize, visits: &mut Vec<Visit>) -> bool {
        let seq = self.seq;
        let Some(local) = self.groups.get_mut(&group) else {
            return false;
        };
        let Some(mut cursor) = local.log.visit_from(seq) else {
            return false;
        };
        let end = local.log.end();
        let places = local.members.capacity();
        // Stops at the first member owed something past the slice: a pass with nobody owed
        // after the slice ends with it.
        while cursor < places {
            if let Some(m) = local.members.get_mut(cursor) {
                if m.next < end {
                    if visits.len() == max {
                        break;
                    }
                    let alone = self
                        .memberships
                        .get(&m.key)
                        .is_some_and(|(_, g)| g.len() == 1);
                    let from = alone.then(|| local.log.index_of(m.next));
                    if alone {
                        m.next = seq;
                    }
                    visits.push(Visit {
                        key: m.key,
                        generation: m.generation,
                        from,
                    });
                }
            }
            cursor += 1;
        }
        local.log.advance(cursor);
        true
    }

    /// After a slice of `group`'s sweep was written: at the end of a pass, the entries every
    /// member has go, and the sweep ends if nothing is left.
    pub(crate) fn end_slice(&mut self, group: u64) {
        let Some(local) = self.groups.get_mut(&group) else {
            return;
        };
        let at_end = local
            .log
            .cursor()
            .is_some_and(|c| c >= local.members.capacity());
        if at_end && !local.log.end_pass() {
            self.sweeping.retain(|&g| g != group);
        }
    }

    /// What member `key`/`generation` is owed by each of its groups, into `runs` in publish
    /// order; it is taken as written from here on.
    pub(crate) fn catch_up(&mut self, (key, generation): (u32, u32), runs: &mut Vec<Run>) {
        let Some((g, mine)) = self.memberships.get(&key) else {
            return;
        };
        if *g != generation {
            return;
        }
        for &(group, place) in mine {
            let Some(local) = self.groups.get_mut(&group) else {
                continue;
            };
            let Some(m) = local.members.get_mut(place) else {
                continue;
            };
            let (from, to) = (local.log.index_of(m.next), local.log.entries().len());
            m.next = self.seq;
            if from < to {
                runs.push(Run { group, from, to });
            }
        }
        let groups = &self.groups;
        let seq_at = |g: u64, i: usize| groups[&g].log.entries()[i].seq;
        in_publish_order(runs, seq_at, &mut self.run_scratch);
    }

    /// Lends out `group`'s log for writing, with its rules and counters.
    pub(crate) fn check_out(&mut self, group: u64) -> Option<(Rules, Arc<Counters>, Vec<Logged>)> {
        let local = self.groups.get_mut(&group)?;
        let entries = local.log.check_out();
        Some((local.rules, Arc::clone(&local.counters), entries))
    }

    /// Takes back a log lent by [`check_out`](Self::check_out).
    pub(crate) fn check_in(&mut self, group: u64, entries: Vec<Logged>) {
        if let Some(local) = self.groups.get_mut(&group) {
            local.log.check_in(entries);
        }
    }

    /// Queues a broadcast for the members on this loop.
    pub(crate) fn push_broadcast(&mut self, group: u64, payload: Arc<[u8]>, except: Option<u32>) {
        self.outbox.entries.push(Outgoing::Broadcast {
            group,
            payload,
            except,
        });
    }

    /// Queues bytes for connection `key`/`generation` (a copy, packed with the others).
    pub(crate) fn push_write(&mut self, (key, generation): (u32, u32), data: &[u8]) {
        let start = self.outbox.bytes.len();
        self.outbox.bytes.extend_from_slice(data);
        self.outbox.entries.push(Outgoing::WriteTo {
            key,
            generation,
            start,
            end: start + data.len(),
        });
    }

    /// Whether callbacks left anything to deliver.
    #[inline]
    pub(crate) fn has_outgoing(&self) -> bool {
        !self.outbox.entries.is_empty()
    }

    /// Takes what is to be delivered (what the deliveries make callbacks write collects anew).
    pub(crate) fn take_outgoing(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    /// Hands back a delivered outbox, to keep its allocations.
    pub(crate) fn recycle(&mut self, mut done: Outbox) {
        if self.outbox.entries.is_empty() && self.outbox.entries.capacity() == 0 {
            done.entries.clear();
            done.bytes.clear();
            self.outbox = done;
        }
    }
}

#[cfg(test)]
mod tests;
