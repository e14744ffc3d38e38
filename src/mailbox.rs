//! A loop's inbox: the task queue other threads post to, and the wake-up eventfd
//! (the seed's `wakeUpEventFd`) that interrupts the loop's `epoll_wait` when a task arrives.
//!
//! Wake-ups are coalesced: a poster writes the eventfd only if no wake is already pending
//! (an atomic flag), so a burst of a thousand posts costs one `write(2)` and one `read(2)`.
//!
//! No wake is ever lost. The loop clears the flag *before* it takes the queue: a poster that
//! saw the flag set pushed its task before the loop took the queue (the task is run), and a
//! poster that comes later sees the flag clear and writes the eventfd again.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Instant;

use crate::event_loop::LoopCx;
use crate::stats::LoopStats;
use crate::sys::eventfd::{EventFd, EventFdFlags};

/// Work posted to a loop from another thread.
pub(crate) enum Task {
    /// A connection accepted by another loop's acceptor, to be served here.
    Register {
        fd: OwnedFd,
        peer: Option<SocketAddr>,
    },
    /// A closure to run on the loop.
    Run(Box<dyn FnOnce(&mut LoopCx<'_>) + Send>),
    /// Stop gracefully: flush and close every connection by `deadline`, then exit.
    Stop { deadline: Instant },
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Register { peer, .. } => write!(f, "Register({peer:?})"),
            Task::Run(_) => f.write_str("Run"),
            Task::Stop { deadline } => write!(f, "Stop({deadline:?})"),
        }
    }
}

/// The part of a loop other threads can reach.
pub(crate) struct LoopShared {
    pub index: usize,
    pub stats: LoopStats,
    tasks: Mutex<Vec<Task>>,
    eventfd: EventFd,
    wake_pending: AtomicBool,
    exited: AtomicBool,
}

impl LoopShared {
    pub(crate) fn new(index: usize) -> io::Result<LoopShared> {
        Ok(LoopShared {
            index,
            stats: LoopStats::default(),
            tasks: Mutex::new(Vec::new()),
            eventfd: EventFd::new(0, EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC)?,
            wake_pending: AtomicBool::new(false),
            exited: AtomicBool::new(false),
        })
    }

    /// Queues a task and wakes the loop.
    pub(crate) fn post(&self, task: Task) {
        self.push(task);
        self.wake();
    }

    /// Queues a task without waking the loop (the caller wakes it once after a batch).
    pub(crate) fn push(&self, task: Task) {
        // A poisoned queue only means a poster panicked mid-push; the Vec is still valid.
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Interrupts the loop's `epoll_wait`, unless a wake is already pending.
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, SeqCst) {
            self.stats
                .eventfd_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = self.eventfd.write(1) {
                // Only possible if the counter were near u64::MAX, which the loop's reads prevent.
                log::error!("eventide: waking loop {} failed: {e}", self.index);
            }
        }
    }

    /// Called by the loop when its eventfd is readable: resets the counter and the pending flag,
    /// then moves every queued task into `into`.
    pub(crate) fn take_tasks(&self, into: &mut Vec<Task>) {
        match self.eventfd.read() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => log::error!("eventide: reading loop {} eventfd failed: {e}", self.index),
        }
        self.wake_pending.store(false, SeqCst);
        let mut queue = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *queue, into);
    }

    /// Marks the loop as gone: later posts fail instead of queueing forever.
    pub(crate) fn mark_exited(&self) {
        self.exited.store(true, SeqCst);
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(SeqCst)
    }

    /// Descriptor of the wake-up eventfd, registered for readability in the loop's epoll.
    pub(crate) fn eventfd_raw(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }
}
