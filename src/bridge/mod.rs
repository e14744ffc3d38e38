//! Futures off the loop (feature `tokio`): a callback hands a future to a tokio runtime and
//! gets its output back on the connection's loop.
//!
//! The bridge is the worker pool's mechanism with a different executor. A future spawned by
//! a connection ([`Conn::spawn`](crate::Conn::spawn) and its two siblings) takes a place in
//! the connection's jobs ([`ConnJobs`](crate::worker::ConnJobs)) like a worker job: a
//! [`Ticket`] with the next sequence number, the same bound on jobs in flight (at which the
//! connection stops reading), the same task that writes results in submission order, and the
//! same close that waits for them. What the runtime adds is cancellation: each running
//! future's [`AbortHandle`](tokio::task::AbortHandle) is kept beside the connection's jobs
//! ([`Running`](running::Running)), so a connection that leaves its loop's table, whichever
//! way, aborts its futures — the runtime drops them at their next suspension point instead of
//! running them to an output nobody reads.
//!
//! The runtime is the application's ([`Builder::tokio_handle`](crate::Builder::tokio_handle))
//! or the server's own ([`Builder::tokio_threads`](crate::Builder::tokio_threads)), a
//! multi-thread runtime with every driver tokio was built with, shut down when the server
//! has stopped. A future that panics closes its connection (`CloseReason::Panicked`), as a
//! panicking job does; one the runtime drops before it finishes (its runtime shut down while
//! the server runs) closes its connection with an error, since the reply it owed never comes.

use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::conn::{Conn, ConnId};
use crate::cx::{LoopCore, LoopCx};
use crate::mailbox::{JobResult, LoopShared, Task, Ticket};

mod api;
pub(crate) mod running;

/// Where the server's futures run, as the builder was told.
#[derive(Clone, Debug)]
pub(crate) enum RuntimeChoice {
    /// The application's runtime.
    Handle(Handle),
    /// A multi-thread runtime of the server's own, with this many worker threads.
    Threads(usize),
}

/// The server's runtime: a handle to it, and the runtime itself when the server owns it.
pub(crate) struct Bridge {
    handle: Handle,
    owned: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Bridge {
    /// Builds the runtime the server owns, or takes the application's.
    pub(crate) fn start(choice: RuntimeChoice) -> io::Result<Bridge> {
        let (handle, owned) = match choice {
            RuntimeChoice::Handle(handle) => (handle, None),
            RuntimeChoice::Threads(n) => {
                let next = AtomicUsize::new(0);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.max(1))
                    .thread_name_fn(move || {
                        format!("eventide-tokio-{}", next.fetch_add(1, Relaxed))
                    })
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("starting the tokio runtime: {e}"))
                    })?;
                (rt.handle().clone(), Some(rt))
            }
        };
        Ok(Bridge {
            handle,
            owned: Mutex::new(owned),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Shuts the server's own runtime down (the loops have exited, so every future they
    /// spawned was aborted), waiting up to `timeout` for its threads. The application's
    /// runtime is left alone.
    pub(crate) fn shutdown(&self, timeout: Duration) {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rt) = owned {
            // Dropping a runtime blocks, which tokio forbids inside another runtime.
            if Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(timeout);
            }
        }
    }
}

impl Drop for Bridge {
    /// A server that did not get to `join` (its start failed half-way) still shuts its
    /// runtime down the way tokio allows where it is dropped.
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// Runs `fut` on the loop's runtime for the connection, in its submission order; `deliver`
/// turns the output into the result the loop applies.
pub(crate) fn spawn_for_conn<F>(
    conn: &mut Conn<'_>,
    fut: F,
    deliver: impl FnOnce(F::Output) -> JobResult + Send + 'static,
) -> io::Result<()>
where
    F: Future + Send + 'static,
{
    let Some(handle) = conn.lp.tokio.as_ref().map(|rt| rt.handle.clone()) else {
        return Err(no_runtime());
    };
    let ticket = conn.admit_job()?;
    spawn_as_job(conn, &handle, ticket, fut, deliver);
    Ok(())
}

/// Spawns `fut` with its ticket, and keeps its abort handle with the connection's jobs.
fn spawn_as_job<F>(
    conn: &mut Conn<'_>,
    handle: &Handle,
    ticket: Ticket,
    fut: F,
    deliver: impl FnOnce(F::Output) -> JobResult + Send + 'static,
) where
    F: Future + Send + 'static,
{
    let seq = ticket.seq();
    let task = handle.spawn(deliver_to(ticket, conn.id(), fut, deliver));
    if let Some(jobs) = conn.core.jobs.as_mut() {
        jobs.running.add(seq, task.abort_handle());
    }
}

/// A future with nothing to deliver: it answers through a handle of its own (an HTTP
/// [`Responder`](crate::http::Responder)).
#[cfg(feature = "http")]
pub(crate) type UnitFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `fut` for the connection: as one of its jobs when it can take one (dropped if the
/// connection goes away), else by itself on the runtime — it answers through its own handle,
/// so it is not lost either way. Gives it back when there is no runtime.
#[cfg(feature = "http")]
pub(crate) fn spawn_unit(conn: &mut Conn<'_>, fut: UnitFuture) -> Result<(), UnitFuture> {
    let Some(handle) = conn.lp.tokio.as_ref().map(|rt| rt.handle.clone()) else {
        return Err(fut);
    };
    match conn.admit_job() {
        Ok(ticket) => spawn_as_job(conn, &handle, ticket, fut, |()| {
            JobResult::Output(Vec::new())
        }),
        Err(e) => {
            log::debug!("eventide: a future for {} runs uncounted: {e}", conn.id());
            drop(handle.spawn(fut));
        }
    }
    Ok(())
}

/// Runs `fut` and posts its result with `ticket`. A panic is caught (the connection closes);
/// dropped before it finishes, it posts [`JobResult::Abandoned`].
async fn deliver_to<F: Future>(
    ticket: Ticket,
    id: ConnId,
    fut: F,
    deliver: impl FnOnce(F::Output) -> JobResult,
) {
    let delivery = Delivery(Some(ticket));
    let result = match caught(fut).await {
        Ok(output) => deliver(output),
        Err(()) => {
            log::error!("eventide: a future spawned for connection {id} panicked");
            JobResult::Panicked
        }
    };
    delivery.send(result);
}

/// A future's ticket, which reports the future abandoned if it is dropped unfinished.
struct Delivery(Option<Ticket>);

impl Delivery {
    fn send(mut self, result: JobResult) {
        if let Some(ticket) = self.0.take() {
            ticket.send(result);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Aborted because its connection closed: the loop ignores the report.
        if let Some(ticket) = self.0.take() {
            ticket.send(JobResult::Abandoned);
        }
    }
}

/// Runs `fut` on the loop's runtime; its output, a closure, runs on the loop.
pub(crate) fn spawn_for_loop<F, A>(lp: &mut LoopCore, fut: F) -> io::Result<()>
where
    F: Future<Output = A> + Send + 'static,
    A: FnOnce(&mut LoopCx<'_>) + Send + 'static,
{
    let Some(rt) = lp.tokio.as_mut() else {
        return Err(no_runtime());
    };
    let entry = rt.running.vacant_entry();
    let done = LoopDelivery {
        shared: Arc::clone(&lp.shared),
        slot: entry.key(),
        sent: false,
    };
    let task = rt.handle.spawn(async move {
        match caught(fut).await {
            Ok(apply) => done.send(Some(Box::new(apply))),
            Err(()) => {
                log::error!(
                    "eventide: a future spawned for loop {} panicked",
                    done.shared.index
                );
                done.send(None);
            }
        }
    });
    entry.insert(task.abort_handle());
    Ok(())
}

type LoopApply = Box<dyn FnOnce(&mut LoopCx<'_>) + Send>;

/// A loop-level future's way back: it frees the future's slot, then runs its output.
struct LoopDelivery {
    shared: Arc<LoopShared>,
    slot: usize,
    sent: bool,
}

impl LoopDelivery {
    fn send(mut self, apply: Option<LoopApply>) {
        self.sent = true;
        self.post(apply);
    }

    fn post(&self, apply: Option<LoopApply>) {
        let slot = self.slot;
        self.shared
            .post(Task::Run(Box::new(move |cx: &mut LoopCx<'_>| {
                if let Some(rt) = cx.lp.tokio.as_mut() {
                    rt.running.try_remove(slot);
                }
                if let Some(apply) = apply {
                    apply(cx);
                }
            })));
    }
}

impl Drop for LoopDelivery {
    fn drop(&mut self) {
        if !self.sent {
            self.post(None);
        }
    }
}

/// `fut`, with a panic in its `poll` caught and reported as `Err` (it is not polled again).
pub(crate) async fn caught<F: Future>(fut: F) -> Result<F::Output, ()> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(move |cx| {
        match panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    })
    .await
}

fn no_runtime() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the server has no tokio runtime (Builder::tokio_handle or Builder::tokio_threads)",
    )
}
