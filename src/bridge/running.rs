//! The abort handles of running futures, kept where the loop keeps a connection's jobs and
//! its own state: dropping them (with the connection, or the loop) aborts the futures. A leaf,
//! so the job bookkeeping (`worker::ConnJobs`) and the loop's core (`cx`) can hold them.

use slab::Slab;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// A connection's futures still running, by sequence number; dropping it aborts them.
#[derive(Default)]
pub(crate) struct Running(Vec<(u64, AbortHandle)>);

impl Running {
    pub(crate) fn add(&mut self, seq: u64, task: AbortHandle) {
        self.0.push((seq, task));
    }

    /// Job `seq` finished (a future, or a worker job, which is not here).
    pub(crate) fn finished(&mut self, seq: u64) {
        if let Some(i) = self.0.iter().position(|&(s, _)| s == seq) {
            self.0.swap_remove(i);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, task) in &self.0 {
            task.abort();
        }
    }
}

/// A loop's way to its runtime, and the loop-level futures it runs
/// ([`LoopCx::spawn`](crate::LoopCx::spawn)), aborted when the loop exits.
pub(crate) struct LoopFutures {
    pub(crate) handle: Handle,
    pub(crate) running: Slab<AbortHandle>,
}

impl LoopFutures {
    pub(crate) fn new(handle: Handle) -> LoopFutures {
        LoopFutures {
            handle,
            running: Slab::new(),
        }
    }
}

impl Drop for LoopFutures {
    fn drop(&mut self) {
        for (_, task) in &self.running {
            task.abort();
        }
    }
}
