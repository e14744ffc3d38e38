//! Running a server until the process is told to stop: SIGINT or SIGTERM start a graceful
//! stop, a second one stops at once ([`Server::run_until_signal`]); with a
//! [`Handover`](crate::Handover), a successor process taking the listeners over starts a drain
//! ([`Server::run_with_handover`]).
//!
//! One control thread (the caller's) waits with `poll(2)` on the signal descriptor, the
//! handover socket and a descriptor that the thread joining the loops writes when they have
//! all exited; nothing here runs on an event loop.

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::handover::Handover;
use crate::listener::ListenSocket;
use crate::server::{Server, StopHandle};
use crate::shared::ServerShared;
use crate::sys::eventfd::{EventFd, EventFdFlags};
use crate::sys::poll::wait_readable;
use crate::sys::signal::{self, SignalGuard};

/// How often a draining server looks whether its last connection has closed.
const DRAIN_CHECK: Duration = Duration::from_millis(20);
/// The longest the loops may take to close their listeners after a handover (a loop stuck
/// in a callback for longer is a bug elsewhere; the drain then starts anyway).
const STOP_ACCEPTING_WAIT: Duration = Duration::from_secs(10);

/// Handlers for SIGINT and SIGTERM, installed while this value lives (the previous handlers
/// come back when it drops). A signal that arrives before the server runs is kept, not lost.
///
/// Install them before telling the world the server is ready (printing its address,
/// notifying a supervisor): a signal sent as soon as that is seen then stops the server
/// gracefully instead of killing the process.
///
/// ```no_run
/// # use eventide::{Action, Conn, Handler, Refusal, Server, ShutdownSignals};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     type Message = ();
/// #     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
/// #         Ok(())
/// #     }
/// #     fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action { Action::Continue }
/// # }
/// let signals = ShutdownSignals::install()?;
/// let server = Server::builder().bind("127.0.0.1:0").start(|_| Echo)?;
/// println!("listening on {}", server.local_addr());
/// server.run_until(signals)?; // returns once every connection has been drained
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The handlers are process-wide: one `ShutdownSignals` may exist at a time (a second
/// [`install`](ShutdownSignals::install) fails with `AlreadyExists`). They run on whichever
/// thread the kernel picks, and only write to a descriptor; a thread that blocks both signals
/// never runs them, and a process that blocks them everywhere (to read them with its own
/// `signalfd`) should stop the server with a [`StopHandle`](crate::StopHandle) instead.
pub struct ShutdownSignals {
    guard: SignalGuard,
}

impl ShutdownSignals {
    /// Installs the handlers for SIGINT and SIGTERM.
    pub fn install() -> io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {
            guard: SignalGuard::install(&[libc::SIGINT, libc::SIGTERM])?,
        })
    }
}

impl fmt::Debug for ShutdownSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownSignals(SIGINT, SIGTERM)")
    }
}

impl Server {
    /// Serves until SIGINT or SIGTERM, then stops gracefully — listeners close, pending
    /// output is flushed (up to the stop timeout), connections close — and returns once
    /// every loop has exited. A second signal stops at once, dropping pending output.
    /// Returns the first error a loop failed with; a stop through a
    /// [`StopHandle`](crate::StopHandle) also ends it.
    ///
    /// The handlers are installed when this is called; see [`ShutdownSignals`] to install
    /// them earlier, and [`run_until`](Server::run_until).
    pub fn run_until_signal(self) -> io::Result<()> {
        let signals = ShutdownSignals::install()?;
        self.run_until(signals)
    }

    /// [`run_until_signal`](Server::run_until_signal) with handlers installed beforehand.
    pub fn run_until(self, signals: ShutdownSignals) -> io::Result<()> {
        supervise(self, &signals, None)
    }

    /// [`run_until`](Server::run_until), and meanwhile waits for a successor on `handover`:
    /// when one takes the listeners over, this server stops accepting, lets its connections
    /// finish (up to the handover's [drain timeout](Handover::drain_timeout)), stops
    /// gracefully and returns. See [`Handover`] for the whole exchange.
    pub fn run_with_handover(self, signals: ShutdownSignals, handover: Handover) -> io::Result<()> {
        supervise(self, &signals, Some(handover))
    }
}

/// The control loop: signals, handover requests, the drain, and the end of the loops.
fn supervise(
    server: Server,
    signals: &ShutdownSignals,
    handover: Option<Handover>,
) -> io::Result<()> {
    let mut control = Control {
        shared: Arc::clone(server.shared()),
        listen_sockets: server.listen_sockets().to_vec(),
        stop: server.stop_handle(),
        signals,
        handover,
        drain_until: None,
    };
    if let Some(h) = control.handover.as_mut() {
        // The predecessor, if any, drains once it hears this server serves.
        h.confirm_predecessor()?;
    }
    let (joiner, done) = join_in_background(server)?;
    loop {
        let ready = control.wait(&done);
        if ready & LOOPS_DONE != 0 {
            break;
        }
        if ready & SIGNALED != 0 {
            control.on_signals();
        }
        if ready & SUCCESSOR != 0 {
            control.on_successor();
        }
        control.end_drain_when_due();
    }
    joiner
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread joining the loops panicked")))
}

/// [`Control::wait`]'s bits: every loop has exited, a signal came, a successor knocked.
const LOOPS_DONE: u64 = 1;
const SIGNALED: u64 = 2;
const SUCCESSOR: u64 = 4;

/// Joins the loops on a thread of its own; the descriptor becomes readable when they have
/// all exited.
fn join_in_background(server: Server) -> io::Result<(JoinHandle<io::Result<()>>, Arc<EventFd>)> {
    let done = Arc::new(EventFd::new(
        0,
        EventFdFlags::NONBLOCK | EventFdFlags::CLOEXEC,
    )?);
    let joined = Arc::clone(&done);
    let joiner = std::thread::Builder::new()
        .name("eventide-join".into())
        .spawn(move || {
            let result = server.join();
            let _ = joined.write(1);
            result
        })?;
    Ok((joiner, done))
}

/// What the control loop watches and acts on.
struct Control<'a> {
    shared: Arc<ServerShared>,
    listen_sockets: Vec<Weak<ListenSocket>>,
    stop: StopHandle,
    signals: &'a ShutdownSignals,
    handover: Option<Handover>,
    /// Set while draining after a handover: when the drain gives up on the last connections.
    drain_until: Option<Instant>,
}

impl Control<'_> {
    /// Waits until the loops are done, a signal comes or (while this server still accepts)
    /// a successor asks for the listeners; while draining, at most [`DRAIN_CHECK`]. A bit per
    /// event: [`LOOPS_DONE`], [`SIGNALED`], [`SUCCESSOR`]; none on timeout.
    fn wait(&self, done: &EventFd) -> u64 {
        let mut fds = vec![done.as_fd(), self.signals.guard.fd()];
        let listening = self.drain_until.is_none() && !self.stop.is_stopping();
        if let Some(fd) = self.handover.as_ref().and_then(Handover::control_fd) {
            if listening {
                fds.push(fd);
            }
        }
        match wait_readable(&fds, self.drain_until.map(|_| DRAIN_CHECK)) {
            Ok(ready) => ready,
            Err(e) => {
                log::error!("eventide: waiting for signals failed ({e}); stopping");
                self.stop.stop();
                0
            }
        }
    }

    /// A first signal stops gracefully (ending a drain); a second, or one during a stop,
    /// stops at once.
    fn on_signals(&mut self) {
        let (count, last) = self.signals.guard.take();
        if count == 0 {
            return;
        }
        self.drain_until = None;
        if count > 1 || self.stop.is_stopping() {
            log::warn!("eventide: {}: stopping now", signal::name(last));
            self.stop.stop_now();
        } else {
            log::info!("eventide: {}: stopping gracefully", signal::name(last));
            self.stop.stop();
        }
    }

    /// Hands the listeners to a successor; once it has them, stops accepting and drains.
    fn on_successor(&mut self) {
        let Some(h) = self.handover.as_mut() else {
            return;
        };
        if h.serve_successor(&self.listen_sockets) {
            // Synchronous: a loop still accepting when the drain looks at the count would
            // have its newest connection cut by the stop that follows.
            self.shared.stop_accepting(STOP_ACCEPTING_WAIT);
            self.drain_until = Some(Instant::now() + h.drain());
            log::info!("eventide: listeners handed over; draining");
        }
    }

    /// Ends a drain with a graceful stop once the last connection has closed or the drain
    /// timeout has passed.
    fn end_drain_when_due(&mut self) {
        if let Some(deadline) = self.drain_until {
            if self.shared.open_connections() == 0 || Instant::now() >= deadline {
                self.drain_until = None;
                self.stop.stop();
            }
        }
    }
}
