//! What every loop of a server shares ([`ServerShared`]): the loops' inboxes, the worker pool,
//! the connection count under the server's limit, and the stop flag.

use std::sync::atomic::{AtomicBool, Ordering::AcqRel, Ordering::Acquire, Ordering::Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cx::ConnLimit;
use crate::mailbox::{Loops, Task};
use crate::stats::Stats;
use crate::worker::WorkerPool;

/// What every loop of a server shares: the loops' inboxes, the connection count, the stop flag.
pub(crate) struct ServerShared {
    pub loops: Loops,
    pub pool: Option<Arc<WorkerPool>>,
    /// Accepted connections, under the connection limit (see `Seat`).
    pub limit: Arc<ConnLimit>,
    stopping: AtomicBool,
    /// The runtime futures spawned by callbacks run on (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub tokio: Option<crate::bridge::Bridge>,
}

impl ServerShared {
    pub(crate) fn new(
        loops: Loops,
        pool: Option<Arc<WorkerPool>>,
        max_connections: usize,
    ) -> ServerShared {
        ServerShared {
            loops,
            pool,
            limit: Arc::new(ConnLimit::new(max_connections)),
            stopping: AtomicBool::new(false),
            #[cfg(feature = "tokio")]
            tokio: None,
        }
    }

    /// Whether a stop has been requested.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Acquire)
    }

    /// Starts a graceful stop of every loop (once).
    pub(crate) fn stop(&self, timeout: Duration) {
        if !self.stopping.swap(true, AcqRel) {
            self.post_stop(Instant::now() + timeout);
        }
    }

    /// Stops every loop at once, also cutting short a graceful stop in progress (a loop that
    /// is stopping already brings its deadline forward).
    pub(crate) fn stop_now(&self) {
        self.stopping.store(true, Release);
        self.post_stop(Instant::now());
    }

    fn post_stop(&self, deadline: Instant) {
        if let Some(pool) = &self.pool {
            pool.discard_queued();
        }
        for l in self.loops.iter() {
            l.post(Task::Stop { deadline });
        }
    }

    /// Every loop closes its listeners and goes on serving its connections (a handover).
    /// Returns once every loop has (or `timeout` passed): from then on no connection is
    /// accepted, so the count of open ones only goes down.
    pub(crate) fn stop_accepting(&self, timeout: Duration) {
        let (done, acks) = std::sync::mpsc::channel();
        for l in self.loops.iter() {
            l.post(Task::StopAccepting(done.clone()));
        }
        drop(done); // a loop that has exited drops its task, and its sender with it
        let deadline = Instant::now() + timeout;
        for _ in self.loops.iter() {
            let left = deadline.saturating_duration_since(Instant::now());
            if acks.recv_timeout(left).is_err() {
                break;
            }
        }
    }

    /// A snapshot of every loop's counters, and of the worker queue.
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            loops: self.loops.iter().map(|l| l.stats.snapshot()).collect(),
            worker_queue: self.pool.as_ref().map_or(0, |p| p.queued() as u64),
        }
    }

    /// Accepted connections open now, including hand-offs to a loop still in flight.
    pub(crate) fn open_connections(&self) -> usize {
        self.limit.open()
    }
}
