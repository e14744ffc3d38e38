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
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::handover::Handover;
use crate::server::Server;
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
    mut handover: Option<Handover>,
) -> io::Result<()> {
    let shared = Arc::clone(server.shared());
    let listen_sockets = server.listen_sockets().to_vec();
    let stop = server.stop_handle();
    if let Some(h) = handover.as_mut() {
        // The predecessor, if any, drains once it hears this server serves.
        h.confirm_predecessor()?;
    }
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
    let mut drain_until: Option<Instant> = None;
    loop {
        let mut fds = vec![done.as_fd(), signals.guard.fd()];
        let listening = drain_until.is_none() && !stop.is_stopping();
        if let Some(fd) = handover.as_ref().and_then(Handover::control_fd) {
            if listening {
                fds.push(fd);
            }
        }
        let ready = match wait_readable(&fds, drain_until.map(|_| DRAIN_CHECK)) {
            Ok(ready) => ready,
            Err(e) => {
                log::error!("eventide: waiting for signals failed ({e}); stopping");
                stop.stop();
                0
            }
        };
        if ready & 1 != 0 {
            break;
        }
        if ready & 2 != 0 {
            let (count, last) = signals.guard.take();
            if count > 0 {
                drain_until = None;
                if count > 1 || stop.is_stopping() {
                    log::warn!("eventide: {}: stopping now", signal::name(last));
                    stop.stop_now();
                } else {
                    log::info!("eventide: {}: stopping gracefully", signal::name(last));
                    stop.stop();
                }
            }
        }
        if ready & 4 != 0 {
            if let Some(h) = handover.as_mut() {
                if h.serve_successor(&listen_sockets) {
                    // Synchronous: a loop still accepting when the drain looks at the count
                    // would have its newest connection cut by the stop that follows.
                    shared.stop_accepting(STOP_ACCEPTING_WAIT);
                    drain_until = Some(Instant::now() + h.drain());
                    log::info!("eventide: listeners handed over; draining");
                }
            }
        }
        if let Some(deadline) = drain_until {
            if shared.open_connections() == 0 || Instant::now() >= deadline {
                drain_until = None;
                stop.stop();
            }
        }
    }
    joiner
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the thread joining the loops panicked")))
}
