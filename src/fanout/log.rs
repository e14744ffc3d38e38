//! What a group published on a loop and has not yet written to every member there: its log,
//! and where the sweep that writes it stands.
//!
//! Broadcasts are numbered on their loop (one sequence for all its groups), and each member
//! remembers the number of the first one it has not been written. A sweep visits the group's
//! members in passes, a slice at a time with the loop's other work in between; a member
//! visited gets everything published since it was last written, in one go. Every member
//! visited in a pass (or joined during it) has everything published before the pass began, so
//! when a pass ends those entries go, and a new pass starts if anything is left.

use std::sync::Arc;

use super::in_flight_cost;

/// One broadcast in a group's log.
#[derive(Debug)]
pub(crate) struct Logged {
    /// Its number on the loop.
    pub seq: u64,
    pub payload: Arc<[u8]>,
    /// The generation of the member not to write it to (its sender).
    pub except: Option<u32>,
}

/// A group's log on one loop and its sweep.
#[derive(Debug, Default)]
pub(crate) struct GroupLog {
    /// Oldest first.
    entries: Vec<Logged>,
    /// What the entries hold, as [`in_flight_cost`] counts it: kept as they come and go, so
    /// the bound is checked without a walk.
    bytes: usize,
    /// The sweep under way: there is one exactly while there are entries.
    pass: Option<Pass>,
}

/// Where a sweep's pass stands (a new one: at the first place, its start noted when it
/// visits it).
#[derive(Clone, Copy, Debug, Default)]
struct Pass {
    /// The next member place to visit.
    cursor: usize,
    /// The loop's next number when the pass visited its first place: every member visited
    /// in the pass has what was published before.
    start: u64,
}

impl GroupLog {
    /// Adds broadcast `seq`; returns whether this started a sweep.
    pub(crate) fn push(&mut self, entry: Logged) -> bool {
        debug_assert!(self.entries.last().map_or(true, |e| e.seq < entry.seq));
        self.bytes += in_flight_cost(entry.payload.len());
        self.entries.push(entry);
        let started = self.pass.is_none();
        if started {
            self.pass = Some(Pass::default());
        }
        started
    }

    /// Whether a sweep is under way.
    pub(crate) fn sweeping(&self) -> bool {
        self.pass.is_some()
    }

    /// The bytes the log holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[Logged] {
        &self.entries
    }

    /// Where the entries from broadcast `seq` on begin.
    pub(crate) fn index_of(&self, seq: u64) -> usize {
        self.entries.partition_point(|e| e.seq < seq)
    }

    /// The number past the newest entry (0 without entries): a member whose next is below it
    /// has something to be written.
    pub(crate) fn end(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.seq + 1)
    }

    /// The place the sweep visits next, if one is under way; a pass that is beginning notes
    /// `seq`, the loop's next number.
    pub(crate) fn visit_from(&mut self, seq: u64) -> Option<usize> {
        let pass = self.pass.as_mut()?;
        if pass.cursor == 0 {
            pass.start = seq;
        }
        Some(pass.cursor)
    }

    /// The place the sweep visits next, if one is under way.
    pub(crate) fn cursor(&self) -> Option<usize> {
        self.pass.map(|p| p.cursor)
    }

    /// Moves the sweep on to place `cursor`.
    pub(crate) fn advance(&mut self, cursor: usize) {
        if let Some(p) = self.pass.as_mut() {
            p.cursor = cursor;
        }
    }

    /// The pass reached the last place: the entries every member has go, and a new pass
    /// begins at the first place if any are left. Returns whether the sweep goes on.
    pub(crate) fn end_pass(&mut self) -> bool {
        let Some(pass) = self.pass else {
            return false;
        };
        let done = self.index_of(pass.start);
        for e in self.entries.drain(..done) {
            self.bytes -= in_flight_cost(e.payload.len());
        }
        if self.entries.is_empty() {
            self.pass = None;
            return false;
        }
        self.pass = Some(Pass::default());
        true
    }

    /// Lends the entries out (delivery needs the loop whole); [`check_in`](Self::check_in)
    /// gives them back. The sweep's place is kept.
    pub(crate) fn check_out(&mut self) -> Vec<Logged> {
        std::mem::take(&mut self.entries)
    }

    /// Takes back entries lent by [`check_out`](Self::check_out). Entries of a sweep that is
    /// gone — the group emptied and was made anew while they were out — are dropped: no
    /// member of the new one is owed them.
    pub(crate) fn check_in(&mut self, entries: Vec<Logged>) {
        if self.pass.is_some() && self.entries.is_empty() {
            self.entries = entries;
        }
    }
}

/// A stretch of one group's log owed to one member: entries `from..to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub group: u64,
    pub from: usize,
    pub to: usize,
}

/// Puts the stretches owed to a member of several groups in publish order: cut where another
/// group's entries come between, so writing them one after the other keeps the loop's order.
/// `seq_at(group, i)` is the number of entry `i` of that group's log.
pub(crate) fn in_publish_order(
    runs: &mut Vec<Run>,
    seq_at: impl Fn(u64, usize) -> u64,
    scratch: &mut Vec<Run>,
) {
    if runs.len() < 2 {
        return;
    }
    scratch.clear();
    scratch.append(runs);
    loop {
        let mut live = scratch.iter().enumerate().filter(|(_, r)| r.from < r.to);
        let Some((mut pick, first)) = live.next() else {
            break;
        };
        let mut lowest = seq_at(first.group, first.from);
        let mut bound = u64::MAX;
        for (i, r) in live {
            let s = seq_at(r.group, r.from);
            if s < lowest {
                bound = lowest;
                (pick, lowest) = (i, s);
            } else {
                bound = bound.min(s);
            }
        }
        let r = &mut scratch[pick];
        let mut end = r.from + 1;
        while end < r.to && seq_at(r.group, end) < bound {
            end += 1;
        }
        runs.push(Run {
            group: r.group,
            from: r.from,
            to: end,
        });
        r.from = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, len: usize) -> Logged {
        Logged {
            seq,
            payload: Arc::from(vec![0u8; len]),
            except: None,
        }
    }

    #[test]
    fn a_pass_drops_what_every_member_has_and_goes_on_while_more_came() {
        let mut log = GroupLog::default();
        assert!(!log.sweeping());
        assert!(log.push(entry(3, 10)), "the first entry starts a sweep");
        assert!(!log.push(entry(4, 10)));
        assert_eq!(log.bytes(), 2 * in_flight_cost(10));
        assert_eq!(log.end(), 5);
        // The pass begins visiting when the loop's next number is 5: 3 and 4 go at its end.
        assert_eq!(log.visit_from(5), Some(0));
        log.advance(7);
        assert_eq!(log.cursor(), Some(7));
        assert_eq!(
            log.visit_from(9),
            Some(7),
            "a pass under way keeps its start"
        );
        log.push(entry(5, 1));
        assert!(log.end_pass(), "entry 5 came during the pass");
        assert_eq!(log.entries().iter().map(|e| e.seq).collect::<Vec<_>>(), [5]);
        assert_eq!(log.bytes(), in_flight_cost(1));
        assert_eq!(
            log.visit_from(6),
            Some(0),
            "the next pass begins at the first place"
        );
        assert!(!log.end_pass(), "nothing came during the second pass");
        assert!(!log.sweeping() && log.entries().is_empty() && log.bytes() == 0);
        assert_eq!(log.index_of(100), 0);
    }

    #[test]
    fn entries_lent_out_come_back_only_to_their_sweep() {
        let mut log = GroupLog::default();
        log.push(entry(0, 1));
        let lent = log.check_out();
        assert!(log.sweeping(), "the sweep stands while the entries are out");
        log.check_in(lent);
        assert_eq!(log.entries().len(), 1);
        let lent = log.check_out();
        let mut remade = GroupLog::default(); // the group emptied and was made anew
        remade.check_in(lent);
        assert!(remade.entries().is_empty() && !remade.sweeping());
    }

    #[test]
    fn stretches_of_several_groups_are_cut_into_publish_order() {
        // Group 1 holds broadcasts 0, 2, 3, 7; group 2 holds 1, 4, 5; group 3 holds 6.
        let seqs = |g: u64| -> &'static [u64] {
            match g {
                1 => &[0, 2, 3, 7],
                2 => &[1, 4, 5],
                _ => &[6],
            }
        };
        let mut runs = vec![
            Run {
                group: 1,
                from: 0,
                to: 4,
            },
            Run {
                group: 2,
                from: 0,
                to: 3,
            },
            Run {
                group: 3,
                from: 0,
                to: 1,
            },
        ];
        let mut scratch = Vec::new();
        in_publish_order(&mut runs, |g, i| seqs(g)[i], &mut scratch);
        let order: Vec<u64> = runs
            .iter()
            .flat_map(|r| seqs(r.group)[r.from..r.to].iter().copied())
            .collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(runs.len(), 6, "each stretch as long as the order allows");
        let mut one = vec![Run {
            group: 1,
            from: 1,
            to: 4,
        }];
        in_publish_order(&mut one, |g, i| seqs(g)[i], &mut scratch);
        assert_eq!(one.len(), 1, "a single stretch is left whole");
    }
}
