//! The worker pool: threads for blocking business logic, so the event loops never block.
//!
//! A callback submits a job tied to its connection ([`Conn::submit`](crate::Conn::submit)).
//! A worker runs it and posts the output back to the connection's loop, which writes the
//! outputs of each connection in submission order (a job that finishes early waits for the
//! ones submitted before it). Each connection has at most
//! [`Builder::max_jobs_per_conn`](crate::Builder::max_jobs_per_conn) jobs in flight; at that
//! bound the connection stops reading until one completes, so the pool's queue is bounded by
//! connections × that number and a flooding client cannot grow it.
//!
//! On server stop, queued jobs that have not started are dropped (their connections are told,
//! so nothing waits for them); running jobs finish and their output is flushed, up to the stop
//! deadline.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// One unit of blocking work, with its way back to the loop inside (see
/// [`Ticket::job`](crate::mailbox::Ticket::job)): dropped unrun, it reports itself cancelled.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct PoolShared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A fixed set of worker threads sharing one job queue.
pub(crate) struct WorkerPool {
    shared: Arc<PoolShared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerPool {
    /// Starts `n` workers; each runs `on_start(its index)` first.
    pub(crate) fn start(
        n: usize,
        on_start: impl Fn(usize) + Clone + Send + 'static,
    ) -> std::io::Result<WorkerPool> {
        let shared = Arc::new(PoolShared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let pool = WorkerPool {
            shared,
            threads: Mutex::new(Vec::with_capacity(n)),
        };
        for i in 0..n {
            let shared = Arc::clone(&pool.shared);
            let on_start = on_start.clone();
            let t = std::thread::Builder::new()
                .name(format!("eventide-worker-{i}"))
                .spawn(move || {
                    on_start(i);
                    work(&shared)
                });
            match t {
                Ok(t) => pool.lock_threads().push(t),
                Err(e) => {
                    pool.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job. After [`discard_queued`](Self::discard_queued) it is dropped (and reported
    /// as cancelled) instead.
    pub(crate) fn submit(&self, job: Job) {
        let mut q = self.lock_queue();
        if q.closed {
            drop(q);
            drop(job);
            return;
        }
        q.jobs.push_back(job);
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Jobs waiting for a worker (a scrape of the queue depth; takes the queue's lock).
    pub(crate) fn queued(&self) -> usize {
        self.lock_queue().jobs.len()
    }

    /// Stops taking jobs and drops the ones not started (server stop).
    pub(crate) fn discard_queued(&self) {
        let dropped = {
            let mut q = self.lock_queue();
            q.closed = true;
            std::mem::take(&mut q.jobs)
        };
        drop(dropped); // outside the lock: each ticket posts a cancellation
        self.shared.ready.notify_all();
    }

    /// Discards queued jobs, lets running ones finish, and joins the workers.
    pub(crate) fn shutdown(&self) {
        self.discard_queued();
        let threads = std::mem::take(&mut *self.lock_threads());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn work(shared: &PoolShared) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A job reports its own panic (see `Ticket::job`); this keeps the worker alive
        // whatever it does.
        if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("eventide: a worker-pool job panicked");
        }
    }
}

/// A connection's jobs in flight and the outputs that finished ahead of their turn. Workers
/// (and futures on a tokio runtime, feature `tokio`) finish in any order; results come out in
/// submission order.
pub(crate) struct ConnJobs<R> {
    pub next_seq: u64,
    pub next_write: u64,
    pub in_flight: usize,
    /// Results that arrived before an earlier job's, by sequence number.
    pub early: std::collections::BTreeMap<u64, R>,
    /// The futures still running, aborted when this is dropped (with the connection).
    #[cfg(feature = "tokio")]
    pub running: crate::bridge::running::Running,
}

impl<R> Default for ConnJobs<R> {
    fn default() -> Self {
        ConnJobs {
            next_seq: 0,
            next_write: 0,
            in_flight: 0,
            early: Default::default(),
            #[cfg(feature = "tokio")]
            running: Default::default(),
        }
    }
}

impl<R> ConnJobs<R> {
    /// Job `seq` finished with `result`.
    pub(crate) fn finished(&mut self, seq: u64, result: R) {
        #[cfg(feature = "tokio")]
        self.running.finished(seq);
        self.early.insert(seq, result);
    }

    /// The next result in submission order, once it is there.
    pub(crate) fn next_in_order(&mut self) -> Option<R> {
        let result = self.early.remove(&self.next_write)?;
        self.next_write += 1;
        self.in_flight -= 1;
        Some(result)
    }
}
