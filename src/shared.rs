//! What every loop of a server shares ([`ServerShared`]): the loops' inboxes, the worker pool,
//! the connection count under the server's limit, and the stop flag.

use std::sync::atomic::{AtomicBool, Ordering::AcqRel};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cx::ConnLimit;
use crate::mailbox::{LoopShared, Task};
use crate::worker::WorkerPool;

/// What every loop of a server shares: the loops' inboxes, the connection count, the stop flag.
pub(crate) struct ServerShared {
    pub loops: Vec<Arc<LoopShared>>,
    pub pool: Option<Arc<WorkerPool>>,
    /// Accepted connections, under the connection limit (see `Seat`).
    pub limit: Arc<ConnLimit>,
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
            limit: Arc::new(ConnLimit::new(max_connections)),
            stopping: AtomicBool::new(false),
        }
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
