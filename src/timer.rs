//! Per-loop timers: a binary min-heap of deadlines with lazy cancellation.
//!
//! Why a heap and not a timing wheel: a heap gives exact deadline order (ties fire in the order
//! they were set) at O(log n) per insert and pop, needs no tick, and the loop's `epoll_wait`
//! timeout is simply the top of the heap. A wheel wins at O(1) only when timers are
//! rescheduled constantly; eventide avoids that pattern instead (an idle timeout is one timer
//! per connection that re-arms itself lazily from the last activity time, not a reset per byte).
//!
//! Cancelling removes the timer's slot from a slab (O(1)); the heap entry becomes stale and is
//! skipped when it reaches the top. When stale entries outnumber live ones the heap is rebuilt,
//! so memory stays proportional to the live timers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use slab::Slab;

/// Identifies a timer so it can be cancelled. Ids are never reused within a loop.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    slot: u32,
    // Non-zero, so `Option<TimerId>` costs nothing extra in a connection's record.
    seq: NonZeroU64,
}

struct Slot<K> {
    seq: u64,
    kind: K,
    period: Option<Duration>,
}

/// A min-heap of `(deadline, sequence, slot)`; the sequence number makes entries unique, orders
/// equal deadlines first-in first-out, and tells a live entry from a stale one.
pub(crate) struct Timers<K> {
    epoch: Instant,
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Slab<Slot<K>>,
    next_seq: u64,
}

impl<K: Clone> Timers<K> {
    pub(crate) fn new() -> Timers<K> {
        Timers {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
            slots: Slab::new(),
            next_seq: 1,
        }
    }

    /// Number of live (not cancelled, not fired one-shot) timers.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Milliseconds from this queue's epoch to `at` (a compact clock for per-connection times).
    pub(crate) fn millis(&self, at: Instant) -> u64 {
        self.nanos(at) / 1_000_000
    }

    /// The instant `ms` milliseconds after this queue's epoch.
    pub(crate) fn at_millis(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// Schedules `kind` at `deadline`, then every `period` after it if one is given.
    pub(crate) fn insert(
        &mut self,
        deadline: Instant,
        kind: K,
        period: Option<Duration>,
    ) -> TimerId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let period = period.map(|p| p.max(Duration::from_nanos(1)));
        let slot = self.slots.insert(Slot { seq, kind, period }) as u32;
        let at = self.nanos(deadline);
        self.heap.push(Reverse((at, seq, slot)));
        TimerId {
            slot,
            seq: nonzero(seq),
        }
    }

    /// Cancels a timer. Returns whether it was still pending.
    pub(crate) fn cancel(&mut self, id: TimerId) -> bool {
        match self.slots.get(id.slot as usize) {
            Some(slot) if slot.seq == id.seq.get() => {
                self.slots.remove(id.slot as usize);
                self.maybe_compact();
                true
            }
            _ => false,
        }
    }

    fn is_live(&self, seq: u64, slot: u32) -> bool {
        matches!(self.slots.get(slot as usize), Some(s) if s.seq == seq)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, seq, slot))) = self.heap.peek() {
            if self.is_live(seq, slot) {
                return Some(self.epoch + Duration::from_nanos(at));
            }
            self.heap.pop();
        }
        None
    }

    /// Takes the next timer due at or before `now`. A periodic timer is re-armed (its id stays
    /// valid for cancelling); a one-shot timer is removed.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(TimerId, K)> {
        let now = self.nanos(now);
        while let Some(&Reverse((at, seq, slot))) = self.heap.peek() {
            if !self.is_live(seq, slot) {
                self.heap.pop();
                continue;
            }
            if at > now {
                return None;
            }
            self.heap.pop();
            let id = TimerId {
                slot,
                seq: nonzero(seq),
            };
            let entry = &self.slots[slot as usize];
            let kind = entry.kind.clone();
            match entry.period {
                Some(period) => {
                    // Re-arm from the previous deadline (no drift), but never in the past, so a
                    // loop that fell behind does not fire a burst of catch-up ticks.
                    let period = period.as_nanos().min(u64::MAX as u128) as u64;
                    let mut next = at.saturating_add(period);
                    if next <= now {
                        next = now.saturating_add(period);
                    }
                    self.heap.push(Reverse((next, seq, slot)));
                }
                None => {
                    self.slots.remove(slot as usize);
                }
            }
            return Some((id, kind));
        }
        None
    }

    /// Cancels every timer whose kind fails `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.slots.retain(|_, slot| keep(&slot.kind));
        self.maybe_compact();
    }

    /// Drops every timer.
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
        self.slots.clear();
    }

    /// Rebuilds the heap without stale entries once they are the majority.
    fn maybe_compact(&mut self) {
        if self.heap.len() > 64 && self.heap.len() > 2 * self.slots.len() {
            let slots = &self.slots;
            let live: Vec<_> = self
                .heap
                .drain()
                .filter(|Reverse((_, seq, slot))| {
                    matches!(slots.get(*slot as usize), Some(s) if s.seq == *seq)
                })
                .collect();
            self.heap = BinaryHeap::from(live);
        }
    }

    /// Heap entries, live and stale (for tests).
    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.heap.len()
    }
}

/// Sequence numbers start at 1 and only grow.
fn nonzero(seq: u64) -> NonZeroU64 {
    NonZeroU64::new(seq).unwrap_or(NonZeroU64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_with_fifo_ties() {
        let mut t = Timers::new();
        let now = Instant::now();
        t.insert(now + Duration::from_millis(30), "c", None);
        t.insert(now + Duration::from_millis(10), "a", None);
        t.insert(now + Duration::from_millis(10), "b", None);
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        assert!(t.pop_expired(now).is_none());
        let later = now + Duration::from_secs(1);
        let order: Vec<_> = std::iter::from_fn(|| t.pop_expired(later).map(|(_, k)| k)).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn cancel_and_compaction() {
        let mut t = Timers::new();
        let now = Instant::now();
        let ids: Vec<_> = (0..1000)
            .map(|i| t.insert(now + Duration::from_millis(i), i, None))
            .collect();
        for id in &ids[..900] {
            assert!(t.cancel(*id));
        }
        assert!(!t.cancel(ids[0]));
        assert_eq!(t.len(), 100);
        assert!(t.heap_len() <= 2 * 100 + 64);
        let fired: Vec<_> =
            std::iter::from_fn(|| t.pop_expired(now + Duration::from_secs(5)).map(|(_, k)| k))
                .collect();
        assert_eq!(fired, (900..1000).collect::<Vec<_>>());
    }

    #[test]
    fn periodic_rearms_until_cancelled() {
        let mut t = Timers::new();
        let now = Instant::now();
        let id = t.insert(
            now + Duration::from_millis(10),
            7,
            Some(Duration::from_millis(10)),
        );
        let mut clock = now;
        for _ in 0..5 {
            clock += Duration::from_millis(10);
            assert_eq!(t.pop_expired(clock), Some((id, 7)));
            assert!(t.pop_expired(clock).is_none());
        }
        assert!(t.cancel(id));
        assert!(t.pop_expired(clock + Duration::from_secs(1)).is_none());
        assert_eq!(t.next_deadline(), None);
    }
}
