//! A connection: its loop-owned record ([`ConnCore`]: socket, state flags, buffers, close
//! bookkeeping) and the view handed to callbacks ([`Conn`]). How written bytes reach the socket
//! is in [`output`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use std::sync::Arc;

use crate::buffer::OutBuffer;
use crate::connector::take_as;
use crate::cx::{LoopCore, LoopCx, Seat, TimerKind};
use crate::handle::{ConnHandle, ConnShared};
use crate::mailbox::{JobResult, Ticket};
use crate::sys::socket;
use crate::timer::TimerId;
use crate::tls::TlsSession;
use crate::worker::ConnJobs;
use plan::IdleTimeout;

mod output;
pub(crate) mod plan;
pub(crate) mod reason;
pub(crate) mod state;

pub(crate) use output::Extra;
pub use reason::{CloseReason, ConnId, Refusal};
use state::{ConnState, ReadSide};

/// The loop's record of one connection (everything but the handler's state and the inbound
/// remainder, which sit beside it so a callback can borrow all three at once).
pub(crate) struct ConnCore {
    pub fd: OwnedFd,
    /// Its slot in the loop's table and its generation: with the loop's index, its
    /// [`ConnId`] (kept apart, so that the record has room for `idle`).
    pub key: u32,
    pub generation: u32,
    /// Its idle timeout: the server's, until [`Conn::set_idle_timeout`] replaces it.
    pub idle: IdleTimeout,
    /// Where it is in its life, and the rest of what cannot be derived.
    pub state: ConnState,
    pub out: Option<Box<OutBuffer>>,
    pub peer: Option<SocketAddr>,
    /// Last time a byte moved either way (loop milliseconds), for the idle timeout.
    pub active_ms: u64,
    /// Since when unconsumed input has waited (loop milliseconds), for the read timeout.
    pub input_since_ms: Option<u64>,
    /// The pending timeout check and when it is due (loop milliseconds).
    pub timeout_timer: Option<(TimerId, u64)>,
    /// Shared with this connection's handles, once one was made.
    pub handle: Option<Arc<ConnShared>>,
    /// Worker-pool jobs in flight, while there are any.
    pub jobs: Option<Box<ConnJobs<JobResult>>>,
    /// The TLS session, on a TLS connection.
    pub tls: Option<Box<TlsSession>>,
    /// Its place in the loop's count and, if accepted, under the connection limit.
    pub seat: Seat,
}

impl ConnCore {
    /// A connection just opened, with the server's idle timeout `idle`.
    pub(crate) fn new(
        fd: OwnedFd,
        id: ConnId,
        peer: Option<SocketAddr>,
        seat: Seat,
        idle: Option<Duration>,
    ) -> ConnCore {
        ConnCore {
            fd,
            key: id.key,
            generation: id.generation,
            idle: IdleTimeout::new(idle),
            state: ConnState::new(),
            out: None,
            peer,
            active_ms: 0,
            input_since_ms: None,
            timeout_timer: None,
            handle: None,
            jobs: None,
            tls: None,
            seat,
        }
    }

    /// Its id, on the loop numbered `loop_index`.
    #[inline]
    pub(crate) fn id(&self, loop_index: usize) -> ConnId {
        ConnId {
            loop_index: loop_index as u16,
            key: self.key,
            generation: self.generation,
        }
    }

    /// Jobs submitted to the worker pool whose output is not written yet.
    #[inline]
    pub(crate) fn jobs_in_flight(&self) -> usize {
        self.jobs.as_ref().map_or(0, |j| j.in_flight)
    }

    #[inline]
    pub(crate) fn pending(&self) -> usize {
        self.out.as_ref().map_or(0, |o| o.len())
    }

    /// The planner's view of this connection, with `input` bytes unconsumed.
    #[inline]
    pub(crate) fn facts(&self, input: usize, now_ms: u64) -> plan::Facts<'_> {
        plan::Facts {
            state: &self.state,
            pending: self.pending(),
            queued: self.out.is_some(),
            jobs: self.jobs_in_flight(),
            input,
            input_since: self.input_since_ms,
            active_ms: self.active_ms,
            idle: self.idle,
            timer_at: self.timeout_timer.map(|(_, at)| at),
            has_handle: self.handle.is_some(),
            now_ms,
        }
    }

    /// Marks the connection dead after an I/O error; it is closed when the callback returns.
    pub(crate) fn fail(&mut self, err: io::Error) {
        self.state.fail(CloseReason::from_io(err));
    }
}

/// A connection, as seen from inside a [`Handler`](crate::Handler) callback.
///
/// It gives the unconsumed input without a copy, writes (straight to the socket when the
/// callback returns; only what the kernel refuses is buffered), and controls the connection:
/// close, half-close, pause and resume reading, timers.
pub struct Conn<'a> {
    pub(crate) core: &'a mut ConnCore,
    pub(crate) lp: &'a mut LoopCore,
    input: &'a [u8],
    pub(crate) consumed: usize,
    /// `input` is the loop's read buffer, which nothing touches until this callback's output
    /// has been sent: a write of part of it can be sent from there, without a copy.
    pub(crate) input_stable: bool,
    /// Such a write, not copied to staging (nor, on a TLS connection, gathered for
    /// encryption): `(start, len)` within `input`. It is the only output of the callback so
    /// far; any other write copies it first.
    pub(crate) borrowed: Option<(usize, usize)>,
}

impl<'a> Conn<'a> {
    pub(crate) fn new(core: &'a mut ConnCore, lp: &'a mut LoopCore, input: &'a [u8]) -> Conn<'a> {
        Conn {
            core,
            lp,
            input,
            consumed: 0,
            input_stable: false,
            borrowed: None,
        }
    }

    /// Where `data` starts within the input, if it lies entirely within it.
    fn offset_in_input(&self, data: &[u8]) -> Option<usize> {
        let start = (data.as_ptr() as usize).checked_sub(self.input.as_ptr() as usize)?;
        (start + data.len() <= self.input.len()).then_some(start)
    }

    /// Copies a borrowed write to staging, so that what is written next goes after it. (The
    /// check inline, the copy out of line: most writes have nothing borrowed.)
    #[inline]
    fn unborrow(&mut self) {
        if self.borrowed.is_some() {
            self.copy_borrowed();
        }
    }

    #[inline(never)]
    fn copy_borrowed(&mut self) {
        if let Some((start, len)) = self.borrowed.take() {
            let bytes = &self.input[start..start + len];
            if self.core.tls.is_some() {
                self.core.write_tls(self.lp, bytes);
            } else {
                self.core.write_slice(self.lp, bytes);
            }
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.core.id(self.lp.shared.index)
    }

    /// The peer's address (`None` for a non-IP socket).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// Whether this is a TLS connection (the handshake is done: callbacks see plaintext).
    pub fn is_tls(&self) -> bool {
        self.core.tls.is_some()
    }

    /// The protocol agreed by ALPN on a TLS connection (e.g. `b"http/1.1"`).
    pub fn tls_alpn_protocol(&self) -> Option<&[u8]> {
        self.core.tls.as_ref().and_then(|t| t.alpn_protocol())
    }

    /// The server name the client asked for (SNI), on an accepted TLS connection.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.core.tls.as_ref().and_then(|t| t.server_name())
    }

    /// Whether this side opened the connection ([`LoopCx::connect`]) rather than accepted it.
    pub fn is_outbound(&self) -> bool {
        self.core.seat.is_outbound()
    }

    /// During `on_open` of an outbound connection: takes the
    /// [`Connect::context`](crate::Connect::context) value, if it was a `T`.
    pub fn take_context<T: std::any::Any>(&mut self) -> Option<T> {
        take_as(&mut self.lp.open_context)
    }

    /// The local address of the connection (`getsockname`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::local_addr(&self.core.fd)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not an IP socket"))
    }

    /// Whether `TCP_NODELAY` is set (it is by default, see
    /// [`Builder::nodelay`](crate::Builder::nodelay)).
    pub fn nodelay(&self) -> io::Result<bool> {
        socket::nodelay(&self.core.fd)
    }

    /// Sets or clears `TCP_NODELAY` on this connection.
    pub fn set_nodelay(&mut self, on: bool) -> io::Result<()> {
        socket::set_nodelay(&self.core.fd, on)
    }

    /// Inbound bytes not yet consumed, oldest first. The slice lives as long as the callback,
    /// so it can be passed to [`write`](Conn::write) directly.
    pub fn input(&self) -> &'a [u8] {
        &self.input[self.consumed..]
    }

    /// Marks the first `n` bytes of [`input`](Conn::input) as handled (capped at its length).
    pub fn consume(&mut self, n: usize) {
        self.consumed = (self.consumed + n).min(self.input.len());
    }

    /// Queues `data` for the peer. It is sent when the callback returns (or at once if large);
    /// what the kernel does not take is buffered and sent as the socket drains.
    ///
    /// Returns whether the bytes were taken: `false` after the write side was shut down or
    /// the connection failed (a send failed too: the peer reset; what it sent before is still
    /// delivered), when they are dropped. (Most callers need not look: a failed connection is
    /// closing, and its `on_close` says why.)
    pub fn write(&mut self, data: &[u8]) -> bool {
        if !self.core.state.writable() {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        // Echoing (part of) the input as the callback's first output: remember where it is
        // instead of copying it; it is sent from the read buffer when the callback returns.
        if self.input_stable
            && self.borrowed.is_none()
            && self.core.out.is_none()
            && self.lp.staging.is_empty()
            && self.lp.tls_plain.is_empty()
        {
            if let Some(start) = self.offset_in_input(data) {
                self.borrowed = Some((start, data.len()));
                return true;
            }
        }
        self.unborrow();
        if self.core.tls.is_some() {
            self.core.write_tls(self.lp, data);
        } else {
            self.core.write_slice(self.lp, data);
        }
        true
    }

    /// Like [`write`](Conn::write), taking ownership: a large buffer the kernel does not take
    /// at once is queued as it is, without a copy.
    pub fn write_vec(&mut self, data: Vec<u8>) -> bool {
        if !self.core.state.writable() {
            return false;
        }
        if data.is_empty() {
            return true;
        }
        self.unborrow();
        if self.core.tls.is_some() {
            self.core.write_tls(self.lp, &data);
        } else {
            self.core.write_raw(self.lp, Extra::Vec(data));
        }
        true
    }

    /// Writes several buffers in order (one gathering syscall when they go out). Returns
    /// whether they were taken, as [`write`](Conn::write).
    #[inline]
    pub fn write_vectored(&mut self, bufs: &[&[u8]]) -> bool {
        if !self.core.state.writable() {
            return false;
        }
        // The common case with one set of checks: plain TCP, nothing borrowed or queued, room
        // in staging.
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.core.tls.is_none()
            && self.borrowed.is_none()
            && self.core.out.is_none()
            && self.lp.staging.len() + total <= output::STAGING_LIMIT
        {
            self.lp.staging.reserve(total);
            for b in bufs {
                self.lp.staging.extend_from_slice(b);
            }
            return true;
        }
        bufs.iter().all(|b| self.write(b))
    }

    /// Sends `len` bytes of `file` from `offset`, after everything written before. On plain
    /// TCP they go from the file to the socket with `sendfile(2)` as the socket takes them
    /// (resumed on writable; counted as pending output), never read into memory. Under TLS
    /// they must pass through user space: the range is read and encrypted now, so send a large
    /// file there in pieces as output drains (`on_drained`), as the HTTP server does. Returns
    /// `false` if they were not taken ([`write`](Conn::write)'s reasons), or (TLS) the file
    /// ended or failed to read before `len` bytes. A file that ends early fails the
    /// connection, since what follows would be taken for the missing bytes.
    pub fn write_file(&mut self, file: std::fs::File, offset: u64, len: u64) -> bool {
        if !self.core.state.writable() {
            return false;
        }
        self.unborrow();
        if self.core.tls.is_none() {
            self.core.write_file_raw(self.lp, file, offset, len);
            return self.core.state.writable();
        }
        self.copy_file(&file, offset, len)
    }

    /// Reads `len` bytes of `file` from `offset` into [`write`](Conn::write), in 64 KiB
    /// pieces.
    fn copy_file(&mut self, file: &std::fs::File, offset: u64, len: u64) -> bool {
        use std::os::unix::fs::FileExt;
        let mut piece = vec![0u8; 64 * 1024];
        let (mut at, mut left) = (offset, len);
        while left > 0 {
            let want = piece.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read_at(&mut piece[..want], at) {
                Ok(0) => break,
                Ok(n) => {
                    self.write(&piece[..n]);
                    at += n as u64;
                    left -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.core.fail(e);
                    return false;
                }
            }
        }
        if left > 0 {
            self.core.fail(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file ended {left} bytes short of the range sent"),
            ));
            return false;
        }
        true
    }

    /// Bytes written but not yet accepted by the kernel (staged in this callback plus queued).
    pub fn pending_output(&self) -> usize {
        let staged = if self.core.out.is_none() {
            self.lp.staging.len()
        } else {
            0
        };
        let borrowed = self.borrowed.map_or(0, |(_, len)| len);
        let encrypted = self.core.tls.as_ref().map_or(0, |t| t.ciphertext_len());
        self.core.pending() + staged + borrowed + self.lp.tls_plain.len() + encrypted
    }

    /// Closes the connection once pending output is flushed ([`CloseReason::Local`]).
    pub fn close(&mut self) {
        self.core.state.close(CloseReason::Local);
    }

    /// Closes the connection once pending output is flushed, reporting `reason`.
    pub fn close_with(&mut self, reason: CloseReason) {
        self.core.state.close(reason);
    }

    /// Shuts down the write side once pending output is flushed (half-close): the peer reads
    /// end-of-stream after the last byte, and this side can still read.
    pub fn shutdown_write(&mut self) {
        self.core.state.shutdown_write();
    }

    /// Stops reading this connection until [`resume_read`](Conn::resume_read).
    pub fn pause_read(&mut self) {
        self.core.state.paused_by_app = true;
    }

    /// Resumes reading after [`pause_read`](Conn::pause_read). Input left unconsumed is
    /// offered again to `on_data`.
    pub fn resume_read(&mut self) {
        self.core.state.paused_by_app = false;
    }

    /// Whether reading is paused (by the application, the high-water mark, the inbound limit,
    /// a full job queue, or as many answers owed as the connection may owe).
    #[inline]
    pub fn is_read_paused(&self) -> bool {
        let (input, jobs) = (self.input().len(), self.core.jobs_in_flight());
        !self.core.state.pauses(input, jobs, &self.lp.cfg).is_empty()
    }

    /// A handle for writing to (or closing) this connection from other threads or from other
    /// connections' callbacks. The first call allocates what the handles share.
    pub fn handle(&mut self) -> ConnHandle {
        let id = self.id();
        let shared = self.core.handle.get_or_insert_with(|| {
            Arc::new(ConnShared::new(
                Arc::clone(&self.lp.loops),
                id,
                self.lp.cfg.handle_write_limit,
                self.core.out.as_ref().map_or(0, |o| o.len()),
            ))
        });
        ConnHandle {
            shared: Arc::clone(shared),
        }
    }

    /// How many [`Group`](crate::Group)s this connection belongs to.
    pub fn group_count(&self) -> usize {
        self.lp
            .fanout
            .count_of((self.core.key, self.core.generation))
    }

    /// Takes this connection out of every [`Group`](crate::Group) it belongs to (closing
    /// does it too); returns how many it left. What was broadcast to them before is still
    /// written.
    pub fn leave_groups(&mut self) -> usize {
        self.lp
            .fanout
            .leave_all((self.core.key, self.core.generation))
    }

    /// Worker-pool jobs submitted by this connection whose output is not written yet.
    pub fn jobs_in_flight(&self) -> usize {
        self.core.jobs_in_flight()
    }

    /// Whether [`submit`](Conn::submit) would accept a job now.
    pub fn can_submit(&self) -> bool {
        self.lp.pool.is_some()
            && !self.is_closing()
            && self.core.jobs_in_flight() < self.lp.cfg.max_jobs_per_conn
    }

    /// Runs `job` on the worker pool; its output is written to this connection, after the
    /// outputs of the jobs submitted before it. When the connection reaches its limit of jobs
    /// in flight, reading pauses until one completes.
    ///
    /// Fails (dropping `job`) if the server has no worker pool
    /// ([`Builder::workers`](crate::Builder::workers)), the connection is closing, or its
    /// jobs are at the limit — check [`can_submit`](Conn::can_submit) first and leave the
    /// message unconsumed: it is offered again once reading resumes.
    pub fn submit(&mut self, job: impl FnOnce() -> Vec<u8> + Send + 'static) -> io::Result<()> {
        if self.lp.pool.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the server has no worker pool",
            ));
        }
        let ticket = self.admit_job()?;
        if let Some(pool) = &self.lp.pool {
            pool.submit(ticket.job(Box::new(job)));
        }
        Ok(())
    }

    /// Takes a place for one more job (or future) among this connection's, in submission
    /// order: the ticket its result comes back with.
    pub(crate) fn admit_job(&mut self) -> io::Result<Ticket> {
        if self.is_closing() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closing",
            ));
        }
        let max = self.lp.cfg.max_jobs_per_conn;
        let jobs = self.core.jobs.get_or_insert_with(Default::default);
        if jobs.in_flight >= max {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "too many jobs in flight",
            ));
        }
        let seq = jobs.next_seq;
        jobs.next_seq += 1;
        jobs.in_flight += 1;
        Ok(Ticket::new(
            Arc::clone(&self.lp.shared),
            self.core.key,
            self.core.generation,
            seq,
        ))
    }

    /// Takes on one more answer the connection owes its peer — a response a protocol adapter
    /// will write later (deferred, or queued behind one that is): a graceful close waits for
    /// it, and at the builder's `max_owed_answers` reading pauses until one is given. Returns
    /// `false` (nothing changes) when already at that bound.
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn owe_answer(&mut self) -> bool {
        if self.core.state.owes_the_most(&self.lp.cfg) {
            return false;
        }
        self.core.state.owed += 1;
        true
    }

    /// One answer owed has been written to the output (or given up on).
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn answer_given(&mut self) {
        debug_assert!(
            self.core.state.owed > 0,
            "an answer given that was not owed"
        );
        self.core.state.owed = self.core.state.owed.saturating_sub(1);
    }

    /// Whether one more answer may be owed (the bound is not reached).
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn may_owe(&self) -> bool {
        !self.core.state.owes_the_most(&self.lp.cfg)
    }

    /// Whether output waits for the kernel: it refused bytes, and `on_drained` follows once
    /// they are all sent.
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn is_output_queued(&self) -> bool {
        self.core.out.is_some()
    }

    /// Runs `job` on the worker pool, not tied to this connection's job order or bound (the
    /// job carries its own way back); gives it back when the server has no pool.
    #[cfg(any(feature = "http", feature = "resp"))]
    pub(crate) fn spawn_job(
        &mut self,
        job: crate::adapter::Job,
    ) -> Result<(), crate::adapter::Job> {
        match self.lp.pool.as_ref() {
            Some(pool) => {
                pool.submit(job);
                Ok(())
            }
            None => Err(job),
        }
    }

    /// Whether the peer has shut down its write side.
    pub fn is_read_closed(&self) -> bool {
        self.core.state.read == ReadSide::Closed
    }

    /// Whether a close has been requested or the connection has failed — also when only a
    /// send failed (the peer reset): writes are refused from then on, but what the peer sent
    /// before its reset is still delivered to `on_data`; then the connection closes, and
    /// `on_close` gives the send error (usually [`CloseReason::Reset`]).
    pub fn is_closing(&self) -> bool {
        self.core.state.is_ending()
    }

    /// Replaces the server's idle timeout ([`Builder::idle_timeout`](crate::Builder::idle_timeout))
    /// for this connection: `Some(period)` closes it after `period` without a byte moving
    /// either way (counted from the last byte, as always; at least 1 ms, kept to the
    /// millisecond up to 49 days), `None` never does. For a connection whose protocol
    /// changed (a WebSocket after its upgrade), a client known to be slow, a keep-alive
    /// connection to close sooner under load.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.core.idle = IdleTimeout::new(timeout);
    }

    /// The idle timeout that applies to this connection (the server's, unless
    /// [`set_idle_timeout`](Conn::set_idle_timeout) replaced it).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.core.idle.period().map(Duration::from_millis)
    }

    /// Calls [`Handler::on_timer`](crate::Handler::on_timer) for this connection with `token`
    /// after `after`. The timer is ignored if the connection has closed by then.
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let kind = TimerKind::Conn {
            key: self.core.key,
            generation: self.core.generation,
            token,
        };
        self.lp.timers.insert(self.lp.now + after, kind, None)
    }

    /// Cancels a timer. Returns whether it was still pending.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.lp.timers.cancel(id)
    }

    /// The event loop this connection lives on.
    pub fn loop_cx(&mut self) -> LoopCx<'_> {
        LoopCx::new(self.lp)
    }

    /// Stops the whole server gracefully once this callback returns.
    pub fn stop_server(&mut self) {
        self.lp.stop_requested = true;
    }
}

/// Writes go to the connection's output like [`Conn::write`]; once it no longer takes them
/// (the write side was shut down, or the connection failed) they fail with `BrokenPipe`.
impl io::Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if Conn::write(self, buf) {
            Ok(buf.len())
        } else {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection no longer takes output (write side shut down, or failed)",
            ))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id())
            .field("peer", &self.core.peer)
            .field("input", &self.input().len())
            .field("pending_output", &self.pending_output())
            .finish()
    }
}
