//! What every loop of a server shares ([`ServerShared`]): the loops' inboxes, the worker pool,
//! the connection count under the server's limit, and the stop flag.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::AcqRel};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mailbox::{LoopShared, Task};
use crate::worker::WorkerPool;

/// What every loop of a server shares: the loops' inboxes, the connection count, the stop flag.
pub(crate) struct ServerShared {
    pub loops: Vec<Arc<LoopShared>>,
    pub pool: Option<Arc<WorkerPool>>,
    connections: AtomicUsize,
    max_connections: usize,
    stopping: AtomicBool,
}

impl ServerShared {
    pub(crate) fn new(
        loops: Vec<Arc<LoopShared>>,
        pool: Option<Arc<WorkerPool>>,
        max_connections: usize,
    ) -> ServerShared {
        ServerShared {
            loops,
            pool,
            connections: AtomicUsize::new(0),
            max_connections,
            stopping: AtomicBool::new(false),
        }
    }

    /// Takes a place under the connection limit; `false` when the server is full.
    pub(crate) fn reserve_connection(&self) -> bool {
        if self.connections.fetch_add(1, AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, AcqRel);
            return false;
        }
        true
    }

    pub(crate) fn release_connection(&self) {
        self.connections.fetch_sub(1, AcqRel);
    }

    /// Whether a stop has been requested.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Starts a graceful stop of every loop (once).
    pub(crate) fn stop(&self, timeout: Duration) {
        if !self.stopping.swap(true, AcqRel) {
            let deadline = Instant::now() + timeout;
            if let Some(pool) = &self.pool {
                pool.discard_queued();
            }
            for l in &self.loops {
                l.post(Task::Stop { deadline });
            }
        }
    }
}
