//! Work posted to the loop: connections handed over by the acceptor, closures from
//! [`LoopHandle::execute`](crate::LoopHandle::execute), operations from
//! [`ConnHandle`](crate::ConnHandle)s, worker-pool results, and broadcasts from other loops
//! (consecutive ones are delivered together, see `fanout.rs`).

use super::EventLoop;
use crate::conn::{CloseReason, Conn};
use crate::cx::LoopCx;
use crate::fanout::in_flight_cost;
use crate::handler::Handler;
use crate::mailbox::{ConnOp, JobResult, Task};
use crate::stats::bump;

impl<H: Handler> EventLoop<H> {
    /// Runs every queued task. `woken`: the eventfd fired (and must be reset).
    pub(super) fn run_tasks(&mut self, woken: bool) {
        let mut tasks = std::mem::take(&mut self.tasks);
        self.lp.shared.take_tasks(&mut tasks, woken);
        bump(&self.lp.shared.stats.tasks, tasks.len() as u64);
        for task in tasks.drain(..) {
            // What the tasks before wrote to connections goes out before this one runs;
            // consecutive broadcasts wait to go out together.
            if !matches!(task, Task::Broadcast(_)) {
                self.flush_outbox();
            }
            match task {
                Task::Broadcast(s) => {
                    s.counters.release(in_flight_cost(s.payload.len()));
                    self.lp.fanout.push_broadcast(s.group, s.payload, s.except);
                }
                Task::Register {
                    fd,
                    peer,
                    tls,
                    seat,
                } => {
                    if self.stopping {
                        crate::sys::socket::abort(fd); // and the seat is given back
                    } else {
                        self.open_accepted(fd, peer, tls, seat);
                    }
                }
                Task::Run(f) => {
                    self.lp
                        .callback("a posted task", |lp| f(&mut LoopCx::new(lp)));
                }
                Task::Conn {
                    key,
                    generation,
                    op,
                } => self.conn_op(key as usize, generation, op),
                Task::JobDone {
                    key,
                    generation,
                    seq,
                    result,
                } => self.job_done(key as usize, generation, seq, result),
                Task::Connect(c) => self.lp.connects.push(c),
                Task::Stop { deadline } => self.begin_stop(deadline),
                Task::StopAccepting(done) => {
                    self.close_listeners();
                    let _ = done.send(());
                }
            }
        }
        self.flush_outbox();
        self.tasks = tasks;
    }

    /// Runs `f` on connection `key` outside any handler callback (a panic closes it).
    fn with_conn(&mut self, key: usize, f: impl FnOnce(&mut Conn<'_>)) -> bool {
        let entry = &mut self.conns[key];
        let (core, input) = (&mut entry.core, entry.input.data());
        let ran = self.lp.callback("a connection-handle closure", |lp| {
            f(&mut Conn::new(core, lp, input))
        });
        if ran.is_none() {
            self.close_now(key, CloseReason::Panicked);
        }
        ran.is_some()
    }

    fn conn_op(&mut self, key: usize, generation: u32, op: ConnOp) {
        if !self.alive(key, generation) {
            return; // closed (its handles already say so), or the slot holds a newer connection
        }
        if !self.up_to_date(key, generation) {
            return;
        }
        match op {
            ConnOp::Write { data, counted } => {
                if !self.with_conn(key, |c| {
                    c.write_vec(data);
                }) {
                    return;
                }
                if let Some(shared) = &self.conns[key].core.handle {
                    shared.write_done(counted);
                }
            }
            ConnOp::ShutdownWrite => self.conns[key].core.state.shutdown_write(),
            ConnOp::Close => self.conns[key].core.state.close(CloseReason::Local),
            ConnOp::PauseRead => self.conns[key].core.state.paused_by_app = true,
            ConnOp::ResumeRead => self.conns[key].core.state.paused_by_app = false,
            ConnOp::Run(f) => {
                if !self.with_conn(key, f) {
                    return;
                }
            }
            ConnOp::Message(msg) => {
                // `ConnHandle::send` checked the type against this loop's handler.
                if let Ok(msg) = msg.downcast::<H::Message>() {
                    self.call(key, |h, c, s| h.on_message(c, s, *msg));
                }
                return;
            }
        }
        self.settle(key);
    }

    /// A job finished (or was dropped): apply the results that are now in order.
    fn job_done(&mut self, key: usize, generation: u32, seq: u64, result: JobResult) {
        if !self.alive(key, generation) || !self.up_to_date(key, generation) {
            return;
        }
        let Some(jobs) = self.conns[key].core.jobs.as_mut() else {
            return;
        };
        jobs.finished(seq, result);
        let failed = match self.deliver_due(key) {
            Delivered::InOrder => None,
            Delivered::Failed(reason) => Some(reason),
            #[cfg(feature = "tokio")]
            Delivered::Gone => return,
        };
        self.end_jobs(key, failed);
        self.settle(key);
    }

    /// Delivers the results that are next in the connection's order, until one is missing.
    fn deliver_due(&mut self, key: usize) -> Delivered {
        while let Some(jobs) = self.conns[key].core.jobs.as_mut() {
            let Some(result) = jobs.next_in_order() else {
                break;
            };
            match result {
                JobResult::Output(bytes) => {
                    let core = &mut self.conns[key].core;
                    Conn::new(core, &mut self.lp, &[]).write_vec(bytes);
                }
                #[cfg(feature = "tokio")]
                JobResult::Apply(apply) => {
                    if !self.with_conn(key, apply) {
                        return Delivered::Gone; // it panicked: the connection is closed
                    }
                }
                #[cfg(feature = "tokio")]
                JobResult::Message(msg) => {
                    let generation = self.conns[key].core.generation;
                    // `spawn_message` checked the type against this loop's handler.
                    if let Ok(msg) = msg.downcast::<H::Message>() {
                        self.call_unsettled(key, |h, c, s| h.on_message(c, s, *msg));
                    }
                    if !self.alive(key, generation) {
                        return Delivered::Gone;
                    }
                }
                JobResult::Cancelled => {}
                #[cfg(feature = "tokio")]
                JobResult::Abandoned => {
                    return Delivered::Failed(CloseReason::Error(std::io::Error::other(
                        "a future was dropped before it finished (its runtime shut down)",
                    )));
                }
                JobResult::Panicked => return Delivered::Failed(CloseReason::Panicked),
            }
        }
        Delivered::InOrder
    }

    /// Drops the connection's job queue once it is empty, or at once after a failed job,
    /// which closes the connection.
    fn end_jobs(&mut self, key: usize, failed: Option<CloseReason>) {
        let core = &mut self.conns[key].core;
        if core
            .jobs
            .as_ref()
            .is_some_and(|j| j.in_flight == 0 && j.early.is_empty())
        {
            core.jobs = None;
        }
        if let Some(reason) = failed {
            // The reply to that request will never come: the stream is out of step. Later
            // outputs are dropped and the close does not wait for jobs still running (futures
            // among them are aborted).
            core.jobs = None;
            core.state.close(reason);
        }
    }
}

/// How delivering a connection's finished jobs ended.
enum Delivered {
    /// Every result due so far is delivered.
    InOrder,
    /// A job failed: the connection closes, for this reason.
    Failed(CloseReason),
    /// The connection closed in a callback.
    #[cfg(feature = "tokio")]
    Gone,
}
