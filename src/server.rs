//! A running [`Server`] and the [`StopHandle`] that stops it from any thread.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Acquire;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::addr::Addr;
use crate::connector::Connect;
use crate::handle::LoopHandle;
use crate::listener::ListenSocket;
use crate::shared::ServerShared;
use crate::stats::Stats;

/// A running server. Dropping it stops it gracefully and waits for its threads.
pub struct Server {
    shared: Arc<ServerShared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    local_addrs: Vec<Addr>,
    udp_addrs: Vec<SocketAddr>,
    on_shutdown: Option<Box<dyn FnOnce() + Send>>,
    stop_timeout: Duration,
    /// Every listening socket, for a handover (gone once its loop has closed it).
    listen_sockets: Vec<Weak<ListenSocket>>,
}

impl Server {
    pub(crate) fn new(
        shared: Arc<ServerShared>,
        local_addrs: Vec<Addr>,
        udp_addrs: Vec<SocketAddr>,
        on_shutdown: Option<Box<dyn FnOnce() + Send>>,
        stop_timeout: Duration,
    ) -> Server {
        Server {
            shared,
            threads: Vec::new(),
            local_addrs,
            udp_addrs,
            on_shutdown,
            stop_timeout,
            listen_sockets: Vec::new(),
        }
    }

    pub(crate) fn set_listen_sockets(&mut self, sockets: Vec<Weak<ListenSocket>>) {
        self.listen_sockets = sockets;
    }

    /// Every listening socket, for a handover.
    pub(crate) fn listen_sockets(&self) -> &[Weak<ListenSocket>] {
        &self.listen_sockets
    }

    pub(crate) fn add_thread(&mut self, t: JoinHandle<io::Result<()>>) {
        self.threads.push(t);
    }

    /// The first bound TCP address (with the real port if port 0 was asked for).
    ///
    /// # Panics
    ///
    /// If the server listens on Unix-domain sockets only; use
    /// [`local_addrs`](Server::local_addrs) then.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs
            .iter()
            .find_map(Addr::as_tcp)
            .expect("the server has no TCP listener; use local_addrs()")
    }

    /// Every bound address, in the order they were added (TCP ports as bound).
    pub fn local_addrs(&self) -> &[Addr] {
        &self.local_addrs
    }

    /// Every bound UDP address, in the order they were added (ports as bound).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Number of event loops.
    pub fn loop_count(&self) -> usize {
        self.shared.loops.len()
    }

    /// A handle to loop `index` for running closures on it from other threads.
    pub fn loop_handle(&self, index: usize) -> Option<LoopHandle> {
        self.shared.loops.get(index).map(|l| LoopHandle {
            shared: Arc::clone(l),
        })
    }

    /// Opens an outbound connection on the least loaded loop (the one with the fewest
    /// connections, including hand-offs and connects in flight). See
    /// [`LoopCx::connect`](crate::LoopCx::connect).
    pub fn connect(&self, connect: Connect) -> io::Result<()> {
        let target = self
            .shared
            .loops
            .iter()
            .min_by_key(|l| l.stats.assigned.load(Acquire))
            .expect("a server has at least one loop");
        LoopHandle {
            shared: Arc::clone(target),
        }
        .connect(connect)
    }

    /// A handle that stops the server from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: Arc::clone(&self.shared),
            timeout: self.stop_timeout,
        }
    }

    /// Starts a graceful stop (see [`StopHandle::stop`]); [`join`](Server::join) waits for it.
    pub fn stop(&self) {
        self.shared.stop(self.stop_timeout);
    }

    /// Counters of every loop.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// What the loops share (for the operations modules: metrics, signals, handover).
    pub(crate) fn shared(&self) -> &Arc<ServerShared> {
        &self.shared
    }

    /// A start that failed: stops the loops already running and waits for them, without the
    /// shutdown hook (the server never served).
    pub(crate) fn abandon(mut self) {
        self.on_shutdown = None;
        self.stop();
        let _ = self.join_threads();
    }

    /// Waits until the server has stopped and every loop thread has exited, then runs the
    /// shutdown hook. Returns the first error a loop failed with.
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    pub(crate) fn join_threads(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let outcome = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")));
            if let Err(e) = outcome {
                log::error!("eventide: event loop failed: {e}");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if let Some(pool) = &self.shared.pool {
            pool.shutdown();
        }
        #[cfg(feature = "tokio")]
        if let Some(bridge) = &self.shared.tokio {
            bridge.shutdown(self.stop_timeout);
        }
        #[cfg(feature = "faults")]
        if self
            .shared
            .loops
            .iter()
            .any(|l| l.stats.faults.is_enabled())
        {
            eprintln!("eventide: faults injected: {}", self.stats().faults());
        }
        if let Some(hook) = self.on_shutdown.take() {
            hook();
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop();
            let _ = self.join_threads();
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addrs", &self.local_addrs)
            .field("loops", &self.shared.loops.len())
            .finish()
    }
}

/// Stops a server from any thread: listeners close, reading stops, pending output is flushed
/// (up to the stop timeout), connections close, the loops exit.
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<ServerShared>,
    timeout: Duration,
}

impl StopHandle {
    /// Starts a graceful stop with the server's stop timeout. Returns at once; calling it again
    /// does nothing.
    pub fn stop(&self) {
        self.shared.stop(self.timeout);
    }

    /// Starts a graceful stop that closes whatever is left after `timeout`.
    pub fn stop_with_timeout(&self, timeout: Duration) {
        self.shared.stop(timeout);
    }

    /// Stops at once: listeners close and every connection is closed without waiting for
    /// its pending output. Also cuts short a graceful stop in progress.
    pub fn stop_now(&self) {
        self.shared.stop_now();
    }

    /// Whether a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopping", &self.is_stopping())
            .finish()
    }
}
