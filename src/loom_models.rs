//! `loom` models of the cross-thread parts, run over every interleaving loom explores (with a
//! bounded number of preemptions):
//!
//! ```text
//! RUSTFLAGS="--cfg eventide_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --lib loom
//! ```
//!
//! They drive the very types the server uses — [`Inbox`] (the mailbox's queue and pending-wake
//! flag), [`WriteBudget`] (a connection's handle-write accounting) and [`ConnJobs`] (worker
//! results back in submission order) — with loom's atomics and mutexes in place of std's; only
//! the eventfd is modelled, as a counter.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::SeqCst;

use loom::sync::atomic::{AtomicU64, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::budget::WriteBudget;
use crate::inbox::{Doorbell, Inbox};
use crate::worker::ConnJobs;

/// An eventfd: a counter that is readable while non-zero.
#[derive(Default)]
struct Counter {
    value: AtomicU64,
    writes: AtomicUsize,
}

impl Doorbell for Counter {
    fn ring(&self) -> io::Result<()> {
        self.writes.fetch_add(1, SeqCst);
        self.value.fetch_add(1, SeqCst);
        Ok(())
    }

    fn silence(&self) -> io::Result<()> {
        match self.value.swap(0, SeqCst) {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            _ => Ok(()),
        }
    }
}

impl Counter {
    fn readable(&self) -> bool {
        self.value.load(SeqCst) != 0
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Posters and a loop that takes the queue whenever the eventfd is readable: no task is ever
/// left queued while the eventfd is silent (the loop would sleep on it forever), and a burst
/// costs at most one eventfd write per wake-up of the loop.
#[test]
fn loom_mailbox_loses_no_wake_up() {
    model(|| {
        let inbox = Arc::new(Inbox::<u32, Counter>::new(Counter::default()));
        let posters: Vec<_> = (0..2)
            .map(|i| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || {
                    inbox.push(i);
                    inbox.wake().unwrap();
                })
            })
            .collect();
        let (mut taken, mut wakeups) = (Vec::new(), 0);
        // The loop, concurrently: one turn, woken only if the eventfd is readable.
        if inbox.bell().readable() {
            wakeups += 1;
            inbox.take(&mut taken, true).unwrap();
        }
        for p in posters {
            p.join().unwrap();
        }
        // Every poster is done. If anything is still queued, the eventfd must say so.
        let mut rest = Vec::new();
        if inbox.bell().readable() {
            wakeups += 1;
            inbox.take(&mut rest, true).unwrap();
        }
        taken.extend(rest);
        taken.sort_unstable();
        assert_eq!(taken, [0, 1], "a task was queued with no wake-up pending");
        let writes = inbox.bell().writes.load(SeqCst);
        assert!(
            writes <= wakeups + 1,
            "{writes} eventfd writes for {wakeups} wake-ups"
        );
    });
}

/// A writer reserving handle-write bytes while the loop hands them to the connection and the
/// kernel drains it: the count never dips below the bytes really held (posted, plus pending
/// output) and never passes the limit.
#[test]
fn loom_handle_budget_holds_and_bounds() {
    const LIMIT: usize = 8;
    model(|| {
        let budget = Arc::new(WriteBudget::new(LIMIT, 0));
        let posted = Arc::new(Mutex::new(VecDeque::new()));
        let writer = {
            let (budget, posted) = (Arc::clone(&budget), Arc::clone(&posted));
            thread::spawn(move || {
                for n in [3, 4, 5] {
                    if budget.reserve(n).is_ok() {
                        posted.lock().unwrap().push_back(n);
                    }
                    assert!(budget.queued() <= LIMIT, "a writer passed the limit");
                }
            })
        };
        let mut pending = 0;
        for _turn in 0..2 {
            // Run the posted writes, then the kernel takes up to 4 bytes, then publish.
            let runs: Vec<usize> = posted.lock().unwrap().drain(..).collect();
            for n in runs {
                budget.handed_over(n);
                pending += n;
                check(&budget, &posted, pending);
            }
            pending -= pending.min(4);
            check(&budget, &posted, pending);
            budget.publish(pending);
            check(&budget, &posted, pending);
        }
        writer.join().unwrap();
    });

    fn check(budget: &WriteBudget, posted: &Mutex<VecDeque<usize>>, pending: usize) {
        let held = posted.lock().unwrap().iter().sum::<usize>() + pending;
        let queued = budget.queued();
        assert!(queued >= held, "counted {queued} bytes, {held} held");
        assert!(queued <= LIMIT, "counted {queued} bytes, over the limit");
    }
}

/// Workers finish three jobs in any order and post through the mailbox; the loop writes their
/// results in submission order, however the posts interleave with its turns.
#[test]
fn loom_worker_results_keep_submission_order() {
    model(|| {
        let inbox = Arc::new(Inbox::<(u64, u64), Counter>::new(Counter::default()));
        let workers: Vec<_> = [vec![1u64], vec![0, 2]]
            .into_iter()
            .map(|seqs| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || {
                    for seq in seqs {
                        inbox.push((seq, seq * 10));
                        inbox.wake().unwrap();
                    }
                })
            })
            .collect();
        let mut jobs = ConnJobs::<u64>::default();
        jobs.next_seq = 3;
        jobs.in_flight = 3;
        let mut written = Vec::new();
        let mut turn = |jobs: &mut ConnJobs<u64>, written: &mut Vec<u64>| {
            if inbox.bell().readable() {
                let mut done = Vec::new();
                inbox.take(&mut done, true).unwrap();
                for (seq, out) in done {
                    jobs.finished(seq, out);
                    while let Some(out) = jobs.next_in_order() {
                        written.push(out);
                    }
                }
            }
        };
        turn(&mut jobs, &mut written);
        for w in workers {
            w.join().unwrap();
        }
        turn(&mut jobs, &mut written);
        assert_eq!(written, [0, 10, 20], "outputs out of submission order");
        assert_eq!(jobs.in_flight, 0);
    });
}
