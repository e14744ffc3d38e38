//! The server: a builder for its listeners, loops and limits; the running [`Server`]; and the
//! [`StopHandle`] that stops it from any thread.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::AcqRel};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::acceptor::{Balance, Listener};
use crate::event_loop::{EventLoop, LoopParts};
use crate::handler::Handler;
use crate::mailbox::{LoopShared, Task};
use crate::stats::Stats;
use crate::sys::epoll::Epoll;
use crate::sys::socket::{self, ListenOptions};

/// How readiness is reported for connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Trigger {
    /// Level-triggered (the default): `EPOLLOUT` is registered only while output is queued,
    /// and each readiness event costs one read.
    #[default]
    Level,
    /// Edge-triggered: `EPOLLIN | EPOLLOUT | EPOLLRDHUP` registered once, never modified, so a
    /// blocked write costs no `epoll_ctl`; reads continue until a short read.
    Edge,
}

/// What to do when a handler leaves more unconsumed input than the inbound limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum InboundPolicy {
    /// Close the connection with [`CloseReason::InboundLimit`](crate::CloseReason::InboundLimit)
    /// (after flushing its output).
    #[default]
    Close,
    /// Stop reading it until the handler consumes enough to fall under the limit.
    Pause,
}

/// Loop settings, copied into every loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub edge: bool,
    pub reuse_port: bool,
    pub balance: Balance,
    pub read_buffer: usize,
    pub max_events: usize,
    pub accept_batch: usize,
    pub accept_backoff: Duration,
    pub linger_timeout: Duration,
    pub stop_timeout: Duration,
    pub high_water: usize,
    pub low_water: usize,
    pub pause_on_high_water: bool,
    pub inbound_limit: usize,
    pub inbound_policy: InboundPolicy,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            edge: false,
            reuse_port: false,
            balance: Balance::RoundRobin,
            read_buffer: 64 * 1024,
            max_events: 1024,
            accept_batch: 256,
            accept_backoff: Duration::from_millis(100),
            linger_timeout: Duration::from_secs(2),
            stop_timeout: Duration::from_secs(5),
            high_water: 1024 * 1024,
            low_water: 256 * 1024,
            pause_on_high_water: true,
            inbound_limit: 1024 * 1024,
            inbound_policy: InboundPolicy::Close,
        }
    }
}

/// What every loop of a server shares: the loops' inboxes, the connection count, the stop flag.
pub(crate) struct ServerShared {
    pub loops: Vec<Arc<LoopShared>>,
    connections: AtomicUsize,
    max_connections: usize,
    stopping: AtomicBool,
}

impl ServerShared {
    /// Takes a place under the connection limit; `false` when the server is full.
    pub(crate) fn reserve_connection(&self) -> bool {
        if self.connections.fetch_add(1, AcqRel) >= self.max_connections {
            self.connections.fetch_sub(1, AcqRel);
            return false;
        }
        true
    }

    pub(crate) fn release_connection(&self) {
        self.connections.fetch_sub(1, AcqRel);
    }

    /// Starts a graceful stop of every loop (once).
    pub(crate) fn stop(&self, timeout: Duration) {
        if !self.stopping.swap(true, AcqRel) {
            let deadline = Instant::now() + timeout;
            for l in &self.loops {
                l.post(Task::Stop { deadline });
            }
        }
    }
}

/// Configures and starts a [`Server`].
///
/// ```no_run
/// use eventide::{Action, Conn, Handler, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_open(&mut self, _: &mut Conn<'_>) {}
///     fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
///         let data = conn.input();
///         conn.write(data);
///         conn.consume(data.len());
///         Action::Continue
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:7000").loops(4).start(|_| Echo)?;
/// println!("listening on {}", server.local_addr());
/// server.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Builder {
    addrs: Vec<SocketAddr>,
    bind_error: Option<io::Error>,
    loops: usize,
    backlog: i32,
    nodelay: bool,
    send_buffer: Option<usize>,
    recv_buffer: Option<usize>,
    max_connections: usize,
    cfg: Config,
    on_shutdown: Option<Box<dyn FnOnce() + Send>>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            addrs: Vec::new(),
            bind_error: None,
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backlog: 1024,
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
            max_connections: usize::MAX,
            cfg: Config::default(),
            on_shutdown: None,
        }
    }
}

impl Builder {
    /// Adds an address to listen on (port 0 picks a free port; see [`Server::local_addrs`]).
    /// A name that fails to resolve is reported by [`start`](Builder::start).
    pub fn bind<A: ToSocketAddrs>(mut self, addr: A) -> Builder {
        match addr.to_socket_addrs() {
            Ok(addrs) => self.addrs.extend(addrs),
            Err(e) => {
                self.bind_error.get_or_insert(e);
            }
        }
        self
    }

    /// Number of event loops, one thread each (default: the number of available cores).
    pub fn loops(mut self, n: usize) -> Builder {
        self.loops = n;
        self
    }

    /// Give every loop its own `SO_REUSEPORT` listener, letting the kernel spread connections
    /// (default: off — one acceptor in loop 0 hands connections out by [`Balance`]).
    pub fn reuse_port(mut self, on: bool) -> Builder {
        self.cfg.reuse_port = on;
        self
    }

    /// How the acceptor picks a loop for each connection (default: round-robin).
    pub fn balance(mut self, balance: Balance) -> Builder {
        self.cfg.balance = balance;
        self
    }

    /// Level- or edge-triggered readiness for connections (default: level).
    pub fn trigger(mut self, trigger: Trigger) -> Builder {
        self.cfg.edge = trigger == Trigger::Edge;
        self
    }

    /// Length of each listener's accept queue (default 1024; the kernel caps it at
    /// `net.core.somaxconn`).
    pub fn backlog(mut self, backlog: u32) -> Builder {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `TCP_NODELAY` on accepted connections (default: on).
    pub fn nodelay(mut self, on: bool) -> Builder {
        self.nodelay = on;
        self
    }

    /// `SO_SNDBUF` for accepted connections (set on the listener, which they inherit). The
    /// kernel doubles the value and may cap it (`net.core.wmem_max`). Default: the kernel's
    /// auto-tuning.
    pub fn socket_send_buffer(mut self, bytes: usize) -> Builder {
        self.send_buffer = Some(bytes);
        self
    }

    /// `SO_RCVBUF` for accepted connections (set on the listener, which they inherit). Default:
    /// the kernel's auto-tuning.
    pub fn socket_recv_buffer(mut self, bytes: usize) -> Builder {
        self.recv_buffer = Some(bytes);
        self
    }

    /// At most this many open connections; further ones are accepted and closed at once, and
    /// counted as refused (default: no limit).
    pub fn max_connections(mut self, n: usize) -> Builder {
        self.max_connections = n;
        self
    }

    /// The most unconsumed input a handler may leave on one connection, and what happens past
    /// it (default: 1 MiB, close).
    pub fn inbound_limit(mut self, bytes: usize, policy: InboundPolicy) -> Builder {
        self.cfg.inbound_limit = bytes;
        self.cfg.inbound_policy = policy;
        self
    }

    /// Output high- and low-water marks per connection (default: 1 MiB and 256 KiB). Passing
    /// the high mark calls [`Handler::on_high_water`] and, unless disabled with
    /// [`pause_on_high_water`](Builder::pause_on_high_water), pauses reading until output falls
    /// to the low mark.
    pub fn high_water(mut self, high: usize, low: usize) -> Builder {
        self.cfg.high_water = high;
        self.cfg.low_water = low.min(high);
        self
    }

    /// Whether passing the high-water mark pauses reading (default: yes).
    pub fn pause_on_high_water(mut self, on: bool) -> Builder {
        self.cfg.pause_on_high_water = on;
        self
    }

    /// Size of each loop's shared read buffer, i.e. the most one read takes (default 64 KiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Builder {
        self.cfg.read_buffer = bytes.max(1024);
        self
    }

    /// How long a listener rests after `accept` fails for lack of descriptors or memory
    /// (default 100 ms).
    pub fn accept_backoff(mut self, pause: Duration) -> Builder {
        self.cfg.accept_backoff = pause;
        self
    }

    /// How long a gracefully closed connection waits for the peer to finish sending before the
    /// descriptor is closed (default 2 s; zero closes at once).
    pub fn linger_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.linger_timeout = timeout;
        self
    }

    /// How long a graceful stop waits for pending output before closing anyway (default 5 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.stop_timeout = timeout;
        self
    }

    /// Runs `hook` once the server has stopped and every loop has exited.
    pub fn on_shutdown(mut self, hook: impl FnOnce() + Send + 'static) -> Builder {
        self.on_shutdown = Some(Box::new(hook));
        self
    }

    /// Binds the listeners and starts the loops; `factory(i)` makes the handler of loop `i`.
    pub fn start<H, F>(self, mut factory: F) -> io::Result<Server>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        if let Some(e) = self.bind_error {
            return Err(io::Error::new(
                e.kind(),
                format!("resolving the listen address: {e}"),
            ));
        }
        if self.addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to listen on",
            ));
        }
        if self.loops == 0 || self.loops > usize::from(u16::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "loops must be between 1 and {}, not {}",
                    u16::MAX,
                    self.loops
                ),
            ));
        }
        let cfg = self.cfg;
        let opts = ListenOptions {
            backlog: self.backlog,
            reuse_port: cfg.reuse_port,
        };
        let mut per_loop: Vec<Vec<Listener>> = (0..self.loops).map(|_| Vec::new()).collect();
        let mut local_addrs = Vec::new();
        for &addr in &self.addrs {
            let copies = if cfg.reuse_port { self.loops } else { 1 };
            let mut bound = addr;
            for listeners in per_loop.iter_mut().take(copies) {
                let sock = socket::tcp_listener(bound, opts)
                    .map_err(|e| io::Error::new(e.kind(), format!("binding {bound}: {e}")))?;
                // Accepted sockets inherit TCP_NODELAY from the listener: one call, not one per
                // connection.
                sock.set_nodelay(self.nodelay)?;
                if let Some(n) = self.send_buffer {
                    sock.set_send_buffer_size(n)?;
                }
                if let Some(n) = self.recv_buffer {
                    sock.set_recv_buffer_size(n)?;
                }
                if let Some(actual) = sock.local_addr()?.as_socket() {
                    bound = actual; // port 0: later copies bind the port the first one got
                }
                listeners.push(Listener { sock, armed: false });
            }
            local_addrs.push(bound);
        }
        let loops = (0..self.loops)
            .map(|i| LoopShared::new(i).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(ServerShared {
            loops,
            connections: AtomicUsize::new(0),
            max_connections: self.max_connections,
            stopping: AtomicBool::new(false),
        });
        let mut parts = Vec::with_capacity(self.loops);
        for (i, listeners) in per_loop.into_iter().enumerate() {
            parts.push(LoopParts {
                handler: factory(i),
                epoll: Epoll::new()?,
                shared: Arc::clone(&shared.loops[i]),
                server: Arc::clone(&shared),
                cfg,
                listeners,
            });
        }
        let mut server = Server {
            shared,
            threads: Vec::with_capacity(self.loops),
            local_addrs,
            on_shutdown: self.on_shutdown,
            stop_timeout: cfg.stop_timeout,
        };
        for (i, p) in parts.into_iter().enumerate() {
            let spawned = std::thread::Builder::new()
                .name(format!("eventide-loop-{i}"))
                .spawn(move || EventLoop::new(p).run());
            match spawned {
                Ok(t) => server.threads.push(t),
                Err(e) => {
                    server.stop();
                    let _ = server.join_threads();
                    return Err(e);
                }
            }
        }
        Ok(server)
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("addrs", &self.addrs)
            .field("loops", &self.loops)
            .field("backlog", &self.backlog)
            .field("nodelay", &self.nodelay)
            .field("max_connections", &self.max_connections)
            .field("config", &self.cfg)
            .finish()
    }
}

/// A running server. Dropping it stops it gracefully and waits for its threads.
pub struct Server {
    shared: Arc<ServerShared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    local_addrs: Vec<SocketAddr>,
    on_shutdown: Option<Box<dyn FnOnce() + Send>>,
    stop_timeout: Duration,
}

impl Server {
    /// A builder with default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The first bound address (with the real port if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every bound address, in the order they were added.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Number of event loops.
    pub fn loop_count(&self) -> usize {
        self.shared.loops.len()
    }

    /// A handle to loop `index` for running closures on it from other threads.
    pub fn loop_handle(&self, index: usize) -> Option<crate::LoopHandle> {
        self.shared.loops.get(index).map(|l| crate::LoopHandle {
            shared: Arc::clone(l),
        })
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
        Stats {
            loops: self
                .shared
                .loops
                .iter()
                .map(|l| l.stats.snapshot())
                .collect(),
        }
    }

    /// Waits until the server has stopped and every loop thread has exited, then runs the
    /// shutdown hook. Returns the first error a loop failed with.
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
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

    /// Whether a stop has been requested.
    pub fn is_stopping(&self) -> bool {
        self.shared
            .stopping
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle")
            .field("stopping", &self.is_stopping())
            .finish()
    }
}
