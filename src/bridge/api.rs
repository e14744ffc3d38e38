//! The bridge's public face: where the futures run ([`Builder`], [`Server`]) and how a
//! callback hands one over ([`Conn`], [`LoopCx`]).

use std::any::Any;
use std::future::Future;
use std::io;

use tokio::runtime::Handle;

use super::{spawn_for_conn, spawn_for_loop, RuntimeChoice};
use crate::builder::Builder;
use crate::conn::Conn;
use crate::cx::LoopCx;
use crate::mailbox::JobResult;
use crate::server::Server;

impl Builder {
    /// Runs the futures that callbacks spawn ([`Conn::spawn`], [`LoopCx::spawn`]) on the
    /// application's tokio runtime (feature `tokio`). The runtime must be running while the
    /// server does: a multi-thread runtime, or a current-thread one that a thread keeps
    /// driving (`block_on`). If it shuts down first, the futures it drops close their
    /// connections with an error.
    pub fn tokio_handle(mut self, handle: Handle) -> Builder {
        self.tokio = Some(RuntimeChoice::Handle(handle));
        self
    }

    /// Runs the futures that callbacks spawn on a multi-thread tokio runtime of the server's
    /// own, with `threads` worker threads (at least one) named `eventide-tokio-N` and every
    /// driver the tokio build has (time, I/O) enabled (feature `tokio`). It is shut down once
    /// the server has stopped, before the shutdown hook runs.
    pub fn tokio_threads(mut self, threads: usize) -> Builder {
        self.tokio = Some(RuntimeChoice::Threads(threads.max(1)));
        self
    }
}

impl Server {
    /// The runtime the server's futures run on (feature `tokio`): to set up clients (a
    /// connection pool, say) on it before serving, or to spawn work of its own.
    pub fn tokio_handle(&self) -> Option<Handle> {
        self.shared().tokio.as_ref().map(|b| b.handle().clone())
    }
}

/// Futures off the loop (feature `tokio`).
///
/// A future handed over with [`spawn`](Conn::spawn), [`spawn_then`](Conn::spawn_then) or
/// [`spawn_message`](Conn::spawn_message) runs on the server's tokio runtime
/// ([`Builder::tokio_handle`], [`Builder::tokio_threads`]) and its output comes back to this
/// connection's loop. It is one of the connection's jobs, like a
/// [`submit`](Conn::submit)ted one:
///
/// * outputs are applied in submission order (jobs and futures together), whatever order
///   the futures finish in;
/// * at [`Builder::max_jobs_per_conn`] jobs in flight the connection stops reading until one
///   completes (leave the message unconsumed; it is offered again);
/// * a graceful close waits for the outputs still owed (bounded by the flush timeout,
///   [`Builder::flush_timeout`]), and a connection that goes away any other way — reset,
///   error, timeout, stop deadline — aborts its futures: they are dropped at their next
///   suspension point, and their outputs are never applied;
/// * a future that panics closes its connection ([`CloseReason::Panicked`]) and no other.
///
/// [`CloseReason::Panicked`]: crate::CloseReason::Panicked
///
/// ```no_run
/// use std::time::Duration;
/// use eventide::{Action, Conn, Handler, Refusal, Server};
///
/// /// Answers each line after a timer on the runtime (standing in for a database call).
/// struct Later;
///
/// impl Handler for Later {
///     type State = ();
///     type Message = ();
///     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
///         Ok(())
///     }
///     fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
///         while let Some(end) = conn.input().iter().position(|&b| b == b'\n') {
///             if !conn.can_spawn() {
///                 break; // at the bound: the rest waits, unread, until a reply is written
///             }
///             let line = conn.input()[..=end].to_vec();
///             conn.spawn(async move {
///                 tokio::time::sleep(Duration::from_millis(10)).await;
///                 line
///             })
///             .expect("can_spawn said yes");
///             conn.consume(end + 1);
///         }
///         Action::Continue
///     }
/// }
///
/// let server = Server::builder()
///     .bind("127.0.0.1:0")
///     .tokio_threads(1)
///     .start(|_| Later)?;
/// server.run_until_signal()?;
/// # Ok::<(), std::io::Error>(())
/// ```
impl Conn<'_> {
    /// Whether a future would be accepted now: the server has a runtime, the connection is
    /// not closing, and its jobs are under the bound.
    pub fn can_spawn(&self) -> bool {
        self.lp.tokio.is_some()
            && !self.is_closing()
            && self.jobs_in_flight() < self.lp.cfg.max_jobs_per_conn
    }

    /// Runs `fut` on the server's tokio runtime; its output is written to this connection
    /// after the outputs of the jobs and futures submitted before it — the async twin of
    /// [`submit`](Conn::submit).
    ///
    /// Fails (dropping `fut`) if the server has no runtime (`Unsupported`), the connection is
    /// closing (`NotConnected`), or its jobs are at the bound (`WouldBlock`); check
    /// [`can_spawn`](Conn::can_spawn) first.
    pub fn spawn<F>(&mut self, fut: F) -> io::Result<()>
    where
        F: Future<Output = Vec<u8>> + Send + 'static,
    {
        spawn_for_conn(self, fut, JobResult::Output)
    }

    /// Runs `fut` on the server's tokio runtime; its output, a closure, runs on this
    /// connection's loop with the connection, in submission order as [`spawn`](Conn::spawn):
    /// it may write, close, pause or resume reading, set timers. A panic in it closes the
    /// connection. Fails as [`spawn`](Conn::spawn) does.
    pub fn spawn_then<F, A>(&mut self, fut: F) -> io::Result<()>
    where
        F: Future<Output = A> + Send + 'static,
        A: FnOnce(&mut Conn<'_>) + Send + 'static,
    {
        spawn_for_conn(self, fut, |apply| JobResult::Apply(Box::new(apply)))
    }

    /// Runs `fut` on the server's tokio runtime; its output is handed to
    /// [`Handler::on_message`](crate::Handler::on_message) for this connection, with its
    /// state, in submission order as [`spawn`](Conn::spawn) — the way a future's result
    /// reaches the handler's own logic. The output must be the handler's
    /// [`Message`](crate::Handler::Message) type (`InvalidInput` otherwise, naming both);
    /// fails as [`spawn`](Conn::spawn) does besides.
    pub fn spawn_message<F>(&mut self, fut: F) -> io::Result<()>
    where
        F: Future + Send + 'static,
        F::Output: Any + Send,
    {
        self.lp.shared.message.check::<F::Output>()?;
        spawn_for_conn(self, fut, |msg| JobResult::Message(Box::new(msg)))
    }
}

impl LoopCx<'_> {
    /// Runs `fut` on the server's tokio runtime (feature `tokio`); its output, a closure,
    /// runs on this loop. Loop-level futures have no order and no bound between them; they
    /// are aborted when the loop exits. A panic in the future is logged, and its output
    /// never runs. Fails with `Unsupported` if the server has no runtime.
    pub fn spawn<F, A>(&mut self, fut: F) -> io::Result<()>
    where
        F: Future<Output = A> + Send + 'static,
        A: FnOnce(&mut LoopCx<'_>) + Send + 'static,
    {
        spawn_for_loop(self.lp, fut)
    }

    /// The runtime the server's futures run on (feature `tokio`).
    pub fn tokio_handle(&self) -> Option<Handle> {
        self.lp.tokio.as_ref().map(|t| t.handle.clone())
    }
}
