//! A loop's inbox: the task queue other threads post to, and the wake-up eventfd
//! (the seed's `wakeUpEventFd`) that interrupts the loop's `epoll_wait` when a task arrives.
//!
//! Wake-ups are coalesced: a poster writes the eventfd only if no wake is already pending
//! (an atomic flag), so a burst of a thousand posts costs one `write(2)` and one `read(2)`.
//!
//! No wake is ever lost. The loop clears the flag *before* it takes the queue: a poster that
//! saw the flag set pushed its task before the loop took the queue (the task is run), and a
//! poster that comes later sees the flag clear and writes the eventfd again.
//!
//! A task posted from the loop's own thread (a callback writing to another connection of the
//! same loop through its handle) does not touch the eventfd at all: the loop runs it at the
//! end of the current turn.

use std::any::{Any, TypeId};
use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Instant;

use crate::conn::Conn;
use crate::connector::Connect;
use crate::cx::{LoopCx, Seat};
use crate::fanout::Shipment;
use crate::inbox::{Doorbell, Inbox};
use crate::stats::LoopStats;
use crate::sys::eventfd::{EventFd, EventFdFlags};
use crate::tls::ServerConfig;
use crate::worker::Job;

/// An operation on one connection, posted through a [`ConnHandle`](crate::ConnHandle).
pub(crate) enum ConnOp {
    /// Bytes to write; `counted` of them are accounted in the handle's queued total.
    Write {
        data: Vec<u8>,
        counted: usize,
    },
    ShutdownWrite,
    Close,
    PauseRead,
    ResumeRead,
    Run(Box<dyn FnOnce(&mut Conn<'_>) + Send>),
    /// A message for `Handler::on_message`.
    Message(Box<dyn Any + Send>),
}

/// How a worker-pool job (or a future off the loop, feature `tokio`) ended.
pub(crate) enum JobResult {
    /// The job returned this output.
    Output(Vec<u8>),
    /// A future's output: a closure to run on the loop with the connection.
    #[cfg(feature = "tokio")]
    Apply(Box<dyn FnOnce(&mut Conn<'_>) + Send>),
    /// A future's output: a message for `Handler::on_message`.
    #[cfg(feature = "tokio")]
    Message(Box<dyn Any + Send>),
    /// The job was dropped before it ran (server stop).
    Cancelled,
    /// A future was dropped before it finished while its connection lived on (its runtime
    /// shut down): the reply it owed will never come.
    #[cfg(feature = "tokio")]
    Abandoned,
    /// The job panicked.
    Panicked,
}

/// Where a worker-pool job's result goes: the loop of the connection that submitted it. If
/// the job is dropped unrun, `Drop` reports it cancelled.
pub(crate) struct Ticket {
    loop_shared: Arc<LoopShared>,
    key: u32,
    generation: u32,
    seq: u64,
    sent: bool,
}

impl Ticket {
    pub(crate) fn new(loop_shared: Arc<LoopShared>, key: u32, generation: u32, seq: u64) -> Ticket {
        Ticket {
            loop_shared,
            key,
            generation,
            seq,
            sent: false,
        }
    }

    /// Its place in the connection's submission order.
    #[cfg(feature = "tokio")]
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The pool's job: runs `run` and posts its output back, or that it panicked.
    pub(crate) fn job(self, run: Box<dyn FnOnce() -> Vec<u8> + Send>) -> Job {
        Box::new(move || {
            let result = match panic::catch_unwind(AssertUnwindSafe(run)) {
                Ok(output) => JobResult::Output(output),
                Err(_) => {
                    log::error!("eventide: a worker-pool job panicked");
                    JobResult::Panicked
                }
            };
            self.send(result);
        })
    }

    /// Posts how the job ended.
    pub(crate) fn send(mut self, result: JobResult) {
        self.sent = true;
        self.post(result);
    }

    fn post(&self, result: JobResult) {
        self.loop_shared.post(Task::JobDone {
            key: self.key,
            generation: self.generation,
            seq: self.seq,
            result,
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.sent {
            self.post(JobResult::Cancelled);
        }
    }
}

/// Work posted to a loop.
pub(crate) enum Task {
    /// A connection accepted by another loop's acceptor, to be served here.
    Register {
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        tls: Option<ServerConfig>,
        seat: Seat,
    },
    /// A closure to run on the loop.
    Run(Box<dyn FnOnce(&mut LoopCx<'_>) + Send>),
    /// An operation on a connection of this loop (ignored if that connection is gone).
    Conn {
        key: u32,
        generation: u32,
        op: ConnOp,
    },
    /// A worker-pool job of a connection of this loop finished.
    JobDone {
        key: u32,
        generation: u32,
        seq: u64,
        result: JobResult,
    },
    /// Open an outbound connection from this loop.
    Connect(Connect),
    /// Stop gracefully: flush and close every connection by `deadline`, then exit.
    Stop { deadline: Instant },
    /// Close the listeners (their sockets live on in a successor process), say so on the
    /// channel, and go on serving.
    StopAccepting(std::sync::mpsc::Sender<()>),
    /// A group's broadcast, for its members on this loop.
    Broadcast(Shipment),
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Task::Register { peer, .. } => write!(f, "Register({peer:?})"),
            Task::Run(_) => f.write_str("Run"),
            Task::Conn {
                key, generation, ..
            } => write!(f, "Conn({key}.{generation})"),
            Task::JobDone {
                key,
                generation,
                seq,
                ..
            } => {
                write!(f, "JobDone({key}.{generation} #{seq})")
            }
            Task::Connect(c) => write!(f, "Connect({})", c.addr()),
            Task::Stop { deadline } => write!(f, "Stop({deadline:?})"),
            Task::StopAccepting(_) => f.write_str("StopAccepting"),
            Task::Broadcast(s) => write!(f, "Broadcast({}, {} bytes)", s.group, s.payload.len()),
        }
    }
}

thread_local! {
    /// The loop this thread runs, if it is a loop thread.
    static CURRENT_LOOP: Cell<*const LoopShared> = const { Cell::new(std::ptr::null()) };
}

/// Every loop of a server, by index (shared by the server, its loops, handles and groups).
pub(crate) type Loops = Arc<[Arc<LoopShared>]>;

/// The type of the messages a loop's handler takes (`Handler::Message`), which
/// `ConnHandle::send` checks before it posts one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageType {
    pub id: TypeId,
    pub name: &'static str,
}

impl MessageType {
    pub(crate) fn of<M: 'static>() -> MessageType {
        MessageType {
            id: TypeId::of::<M>(),
            name: std::any::type_name::<M>(),
        }
    }

    /// `InvalidInput`, naming both types, unless `M` is this type.
    pub(crate) fn check<M: 'static>(&self) -> io::Result<()> {
        if TypeId::of::<M>() == self.id {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the connection's handler takes messages of type {}, not {}",
                self.name,
                std::any::type_name::<M>()
            ),
        ))
    }
}

/// The part of a loop other threads can reach.
pub(crate) struct LoopShared {
    pub index: usize,
    /// What its handler's `on_message` takes.
    pub message: MessageType,
    pub stats: LoopStats,
    /// The task queue, woken through the loop's eventfd.
    inbox: Inbox<Task, EventFd>,
    /// Tasks were posted from the loop's own thread (no eventfd write was made for them).
    local_pending: AtomicBool,
    exited: AtomicBool,
}

impl LoopShared {
    pub(crate) fn new(index: usize, message: MessageType) -> io::Result<LoopShared> {
        Ok(LoopShared {
            index,
            message,
            stats: LoopStats::default(),
            inbox: Inbox::new(EventFd::new(
                0,
                EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC,
            )?),
            local_pending: AtomicBool::new(false),
            exited: AtomicBool::new(false),
        })
    }

    /// Marks the calling thread as this loop's thread.
    pub(crate) fn enter(&self) {
        CURRENT_LOOP.with(|c| c.set(self as *const LoopShared));
    }

    /// Turns fault injection on for the calling thread, this loop's (feature `faults`).
    #[cfg(feature = "faults")]
    pub(crate) fn inject_faults(&self, cfg: Option<crate::sys::faults::FaultConfig>) {
        use crate::sys::faults::{install, Role};
        if let Some(cfg) = cfg {
            install(cfg, Role::Loop(self.index), Arc::clone(&self.stats.faults));
        }
    }

    fn is_current_thread(&self) -> bool {
        CURRENT_LOOP.with(|c| std::ptr::eq(c.get(), self))
    }

    /// Queues a task and makes sure the loop runs it soon: from another thread by waking the
    /// loop, from the loop's own thread by flagging it for the end of the current turn.
    pub(crate) fn post(&self, task: Task) {
        self.push(task);
        if self.is_current_thread() {
            self.local_pending.store(true, Relaxed);
        } else {
            self.wake();
        }
    }

    /// Queues a task without waking the loop (the caller wakes it once after a batch).
    pub(crate) fn push(&self, task: Task) {
        self.inbox.push(task);
    }

    /// Interrupts the loop's `epoll_wait`, unless a wake is already pending.
    pub(crate) fn wake(&self) {
        match self.inbox.wake() {
            Ok(false) => {}
            Ok(true) => {
                self.stats.eventfd_writes.fetch_add(1, Relaxed);
            }
            // Only possible if the counter were near u64::MAX, which the loop's reads prevent.
            Err(e) => log::error!("eventide: waking loop {} failed: {e}", self.index),
        }
    }

    /// Whether tasks were posted from the loop's own thread since the last take.
    pub(crate) fn has_local_tasks(&self) -> bool {
        self.local_pending.load(Relaxed)
    }

    /// Moves every queued task into `into`. With `woken`, first resets the eventfd counter and
    /// the pending flag (the eventfd was reported readable).
    pub(crate) fn take_tasks(&self, into: &mut Vec<Task>, woken: bool) {
        self.local_pending.store(false, Relaxed);
        if let Err(e) = self.inbox.take(into, woken) {
            log::error!("eventide: reading loop {} eventfd failed: {e}", self.index);
        }
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
        self.inbox.bell().as_raw_fd()
    }
}

impl Doorbell for EventFd {
    fn ring(&self) -> io::Result<()> {
        self.write(1)
    }

    fn silence(&self) -> io::Result<()> {
        self.read().map(drop)
    }
}
