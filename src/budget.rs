//! The byte accounting of a connection's handle writes, apart from the connection, so the same
//! code runs in the server and in its `loom` model.
//!
//! `queued` counts the bytes written through handles and not yet run by the loop, plus the
//! connection's pending output as last published by the loop. A writer reserves its bytes
//! with a compare-and-swap that never takes `queued` past the limit; the loop moves them from
//! "posted" to "pending" in one step when the write runs, and corrects the total by what the
//! kernel took when it publishes the pending output. So `queued` never dips below the bytes
//! really held (a writer cannot overrun the limit) and never counts them twice.

#[cfg(all(eventide_loom, test))]
use loom::sync::atomic::AtomicUsize;
#[cfg(not(all(eventide_loom, test)))]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, SeqCst};

/// Reservation failed: the bytes would take the queue past the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Bytes waiting for one connection through its handles, bounded by a limit.
pub(crate) struct WriteBudget {
    queued: AtomicUsize,
    /// The loop's last published pending output (written by the loop only).
    published: AtomicUsize,
    limit: usize,
}

impl WriteBudget {
    /// A budget of `limit` bytes for a connection with `pending` bytes of output already.
    pub(crate) fn new(limit: usize, pending: usize) -> WriteBudget {
        WriteBudget {
            queued: AtomicUsize::new(pending),
            published: AtomicUsize::new(pending),
            limit,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes queued through handles plus the connection's published pending output.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(SeqCst)
    }

    /// Writer side: reserves `n` bytes, unless that would pass the limit.
    pub(crate) fn reserve(&self, n: usize) -> Result<(), Full> {
        let mut current = self.queued.load(Acquire);
        loop {
            if current + n > self.limit {
                return Err(Full);
            }
            match self
                .queued
                .compare_exchange_weak(current, current + n, AcqRel, Acquire)
            {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
    }

    /// Loop side: `counted` reserved bytes have been handed to the connection. They stay in
    /// `queued`, now as part of its pending output: the next [`publish`](Self::publish)
    /// corrects the total by what the kernel took, in one step.
    pub(crate) fn handed_over(&self, counted: usize) {
        self.published.fetch_add(counted, AcqRel);
    }

    /// Loop side: the connection's pending output is now `pending` bytes.
    pub(crate) fn publish(&self, pending: usize) {
        let old = self.published.swap(pending, AcqRel);
        if pending > old {
            self.queued.fetch_add(pending - old, SeqCst);
        } else if pending < old {
            self.queued.fetch_sub(old - pending, SeqCst);
        }
    }
}
