//! Handles that reach an event loop, or one connection, from any thread.
//!
//! Both post to the loop's mailbox (task queue + eventfd wake-up). A [`ConnHandle`] names its
//! connection by slot and generation, so a handle that outlives its connection fails with
//! `NotConnected` and never touches a newer connection in the same slot.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use crate::budget::WriteBudget;
use crate::conn::{Conn, ConnId};
use crate::connector::Connect;
use crate::cx::LoopCx;
use crate::mailbox::{ConnOp, LoopShared, Loops, Task};

/// Runs closures on one event loop from any thread (`Send + Sync`, cheap to clone).
///
/// Tasks from one thread run in the order they were posted. Posting costs a lock and, unless
/// a wake-up is already pending, one `write` to the loop's eventfd.
///
/// ```no_run
/// # use eventide::{Action, Conn, Handler, Refusal, Server};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     type Message = ();
/// #     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
/// #         Ok(())
/// #     }
/// #     fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action { Action::Continue }
/// # }
/// let server = Server::builder().bind("127.0.0.1:0").loops(2).start(|_| Echo)?;
/// let handle = server.loop_handle(1).expect("loop 1 exists");
/// handle.execute(|cx| println!("running on loop {}", cx.index()))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<LoopShared>,
}

impl LoopHandle {
    /// Index of the loop.
    pub fn index(&self) -> usize {
        self.shared.index
    }

    /// Opens an outbound connection from this loop (see
    /// [`LoopCx::connect`](crate::LoopCx::connect)). Fails with `NotConnected` once the loop has
    /// exited; every other failure reaches the handler's `on_connect_error`.
    pub fn connect(&self, connect: Connect) -> io::Result<()> {
        if self.shared.has_exited() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the event loop has exited",
            ));
        }
        self.shared.post(Task::Connect(connect));
        Ok(())
    }

    /// Runs `f` on the loop's thread, after the I/O events of its current turn. Fails with
    /// `NotConnected` once the loop has exited (a task posted while it exits is dropped).
    pub fn execute(&self, f: impl FnOnce(&mut LoopCx<'_>) + Send + 'static) -> io::Result<()> {
        if self.shared.has_exited() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the event loop has exited",
            ));
        }
        self.shared.post(Task::Run(Box::new(f)));
        Ok(())
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("index", &self.shared.index)
            .finish()
    }
}

type Waiter = Box<dyn FnOnce() + Send>;

/// What a connection's handles share with its loop.
pub(crate) struct ConnShared {
    /// The server's loops (the connection's is `loops[id.loop_index]`).
    loops: Loops,
    id: ConnId,
    /// Bytes written through handles and not yet run by the loop, plus the connection's
    /// pending output as last published by the loop.
    budget: WriteBudget,
    closed: AtomicBool,
    waiters: Mutex<Vec<Waiter>>,
    has_waiters: AtomicBool,
}

impl ConnShared {
    pub(crate) fn new(loops: Loops, id: ConnId, limit: usize, pending: usize) -> Self {
        ConnShared {
            loops,
            id,
            budget: WriteBudget::new(limit, pending),
            closed: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            has_waiters: AtomicBool::new(false),
        }
    }

    /// The connection's loop.
    fn loop_shared(&self) -> &LoopShared {
        &self.loops[self.id.loop_index()]
    }

    /// Every loop of the connection's server.
    pub(crate) fn loops(&self) -> &Loops {
        &self.loops
    }

    /// Loop side: `counted` bytes of a handle write have been handed to the connection. They
    /// stay in `queued`, now as part of the connection's output: the next
    /// [`publish_pending`](Self::publish_pending) corrects the total by what the kernel took,
    /// in one step, so the count never dips below (nor overshoots) the bytes really held.
    pub(crate) fn write_done(&self, counted: usize) {
        self.budget.handed_over(counted);
    }

    /// Loop side: the connection's pending output is now `pending` bytes.
    pub(crate) fn publish_pending(&self, pending: usize) {
        self.budget.publish(pending);
        self.maybe_notify();
    }

    /// Loop side: the connection closed.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Release);
        self.run_waiters();
    }

    fn low_mark(&self) -> usize {
        self.budget.limit() / 2
    }

    fn maybe_notify(&self) {
        // SeqCst with `notify_writable`: either it sees the drained queue, or this sees its waiter.
        if self.has_waiters.load(SeqCst) && self.budget.queued() <= self.low_mark() {
            self.run_waiters();
        }
    }

    fn run_waiters(&self) {
        let waiters = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.has_waiters.store(false, SeqCst);
            std::mem::take(&mut *w)
        };
        for waiter in waiters {
            waiter();
        }
    }
}

/// Writes to, half-closes or closes one connection from any thread (`Send + Sync`, cheap to
/// clone). Get one with [`Conn::handle`](crate::Conn::handle).
///
/// Writes from one thread arrive in the order they were made. Writes are bounded: the bytes
/// queued through handles plus the connection's pending output may not pass the handle write
/// limit ([`Builder::handle_write_limit`](crate::Builder::handle_write_limit)); past it,
/// [`write`](ConnHandle::write) fails with `WouldBlock` and
/// [`notify_writable`](ConnHandle::notify_writable) tells when to try again. Once the
/// connection has closed, every operation fails with `NotConnected`.
#[derive(Clone)]
pub struct ConnHandle {
    pub(crate) shared: Arc<ConnShared>,
}

impl ConnHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.shared.id
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Acquire)
    }

    /// Bytes queued through handles plus the connection's pending output.
    pub fn queued(&self) -> usize {
        self.shared.budget.queued()
    }

    /// The most bytes [`queued`](ConnHandle::queued) may reach.
    pub fn limit(&self) -> usize {
        self.shared.budget.limit()
    }

    fn check_open(&self) -> io::Result<()> {
        if self.is_closed() || self.shared.loop_shared().has_exited() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection has closed",
            ));
        }
        Ok(())
    }

    fn post(&self, op: ConnOp) {
        let id = self.shared.id;
        self.shared.loop_shared().post(Task::Conn {
            key: id.key,
            generation: id.generation,
            op,
        });
    }

    /// Queues a copy of `data` for the connection. Fails with `WouldBlock` when it would take
    /// the queued bytes past the limit, `InvalidInput` if `data` alone is larger than the
    /// limit, `NotConnected` after the connection closed.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.write_vec(data.to_vec())
    }

    /// Like [`write`](ConnHandle::write), without copying `data`.
    pub fn write_vec(&self, data: Vec<u8>) -> io::Result<()> {
        self.check_open()?;
        let n = data.len();
        let limit = self.shared.budget.limit();
        if n > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{n} bytes exceed the handle write limit of {limit}"),
            ));
        }
        if self.shared.budget.reserve(n).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the connection's queued output is at its limit",
            ));
        }
        self.post(ConnOp::Write { data, counted: n });
        Ok(())
    }

    /// Runs `f` (on the connection's loop thread) once the queued bytes fall to half the limit
    /// or the connection closes — at once, on this thread, if that is already so.
    pub fn notify_writable(&self, f: impl FnOnce() + Send + 'static) {
        {
            let mut w = self
                .shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            w.push(Box::new(f));
            self.shared.has_waiters.store(true, Release);
        }
        // The loop may have drained the queue before the waiter was registered.
        if self.is_closed() || self.shared.budget.queued() <= self.shared.low_mark() {
            self.shared.run_waiters();
        }
    }

    /// Shuts down the write side once everything written before is flushed.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.check_open()?;
        self.post(ConnOp::ShutdownWrite);
        Ok(())
    }

    /// Closes the connection once everything written before is flushed.
    pub fn close(&self) -> io::Result<()> {
        self.check_open()?;
        self.post(ConnOp::Close);
        Ok(())
    }

    /// Stops reading the connection (e.g. while the other side of a proxy is slow).
    pub fn pause_read(&self) -> io::Result<()> {
        self.check_open()?;
        self.post(ConnOp::PauseRead);
        Ok(())
    }

    /// Resumes reading after [`pause_read`](ConnHandle::pause_read).
    pub fn resume_read(&self) -> io::Result<()> {
        self.check_open()?;
        self.post(ConnOp::ResumeRead);
        Ok(())
    }

    /// Sends `msg` to the connection's handler: [`Handler::on_message`](crate::Handler::on_message)
    /// runs with the connection, its state and `msg` on the connection's loop (skipped if the
    /// connection has closed by then).
    ///
    /// `M` must be the handler's [`Message`](crate::Handler::Message) type; another type fails
    /// at once with `InvalidInput`, naming both (a handle names a connection of any handler,
    /// so the type is checked here, at the call, rather than by its signature). Fails with
    /// `NotConnected` once the connection has closed.
    pub fn send<M: Send + 'static>(&self, msg: M) -> io::Result<()> {
        self.shared.loop_shared().message.check::<M>()?;
        self.check_open()?;
        self.post(ConnOp::Message(Box::new(msg)));
        Ok(())
    }

    /// Runs `f` with the connection on its loop's thread (skipped if it has closed by then).
    pub fn with_conn(&self, f: impl FnOnce(&mut Conn<'_>) + Send + 'static) -> io::Result<()> {
        self.check_open()?;
        self.post(ConnOp::Run(Box::new(f)));
        Ok(())
    }
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle")
            .field("id", &self.shared.id)
            .field("queued", &self.queued())
            .field("closed", &self.is_closed())
            .finish()
    }
}
