//! Configuring a server: listen addresses, loops, accept mode, limits, timeouts; and
//! starting it ([`Builder::start`]). The option types and the per-loop settings are in
//! `config.rs`.

use std::fmt;
use std::io;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use socket2::Socket;

use crate::addr::{Addr, ToAddrs};
use crate::config::{Balance, Config, InboundPolicy, Trigger};
use crate::event_loop::{EventLoop, LoopParts};
use crate::handler::Handler;
use crate::listener::{self, ListenFd, Listener, StdListener, TcpOptions};
use crate::mailbox::{LoopShared, MessageType};
use crate::server::Server;
use crate::shared::ServerShared;
use crate::sys::epoll::Epoll;
use crate::sys::socket::ListenOptions;
use crate::tls::ServerConfig;
use crate::udp::UdpSocketState;
use crate::worker::WorkerPool;

/// Configures and starts a [`Server`].
///
/// ```no_run
/// use eventide::{Action, Conn, Handler, Refusal, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     type Message = ();
///     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
///         Ok(())
///     }
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
    addrs: Vec<(Addr, Option<ServerConfig>)>,
    udp_addrs: Vec<std::net::SocketAddr>,
    bind_error: Option<io::Error>,
    loops: usize,
    backlog: i32,
    nodelay: bool,
    send_buffer: Option<usize>,
    recv_buffer: Option<usize>,
    max_connections: usize,
    workers: usize,
    cfg: Config,
    on_shutdown: Option<Box<dyn FnOnce() + Send>>,
    inherited: Vec<(ListenFd, Option<ServerConfig>)>,
    /// Where futures spawned by callbacks run (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub(crate) tokio: Option<crate::bridge::RuntimeChoice>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            addrs: Vec::new(),
            udp_addrs: Vec::new(),
            bind_error: None,
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backlog: 1024,
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
            max_connections: usize::MAX,
            workers: 0,
            cfg: Config::default(),
            on_shutdown: None,
            inherited: Vec::new(),
            #[cfg(feature = "tokio")]
            tokio: None,
        }
    }
}

impl Server {
    /// A builder with default settings.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Builder {
    /// Adds an address to listen on: `"HOST:PORT"` (port 0 picks a free port; see
    /// [`Server::local_addrs`]), `"unix:/path"` for a Unix-domain socket, a `SocketAddr`, or
    /// an [`Addr`]. A name that fails to resolve is reported by [`start`](Builder::start).
    pub fn bind<A: ToAddrs>(self, addr: A) -> Builder {
        self.bind_with(addr, None)
    }

    fn bind_with<A: ToAddrs>(mut self, addr: A, tls: Option<ServerConfig>) -> Builder {
        match addr.to_addrs() {
            Ok(addrs) => self
                .addrs
                .extend(addrs.into_iter().map(|a| (a, tls.clone()))),
            Err(e) => {
                self.bind_error.get_or_insert(e);
            }
        }
        self
    }

    /// Adds an address whose connections are TLS (feature `tls`): the handshake runs in the
    /// loop before `on_open`, and callbacks see plaintext. Certificates, SNI-based selection
    /// and ALPN come from the rustls configuration.
    #[cfg(feature = "tls")]
    pub fn bind_tls<A: ToAddrs>(self, addr: A, config: ServerConfig) -> Builder {
        self.bind_with(addr, Some(config))
    }

    /// Serves a listening socket this process was given instead of binding one: from systemd
    /// socket activation ([`ListenFd::from_systemd`]), from a predecessor
    /// ([`Handover::take_listeners`](crate::Handover::take_listeners)), or any listening TCP
    /// or Unix stream socket as an `OwnedFd`. It is checked by [`start`](Builder::start),
    /// which fails on a descriptor that is not one. Loop 0 accepts on inherited listeners;
    /// in reuse-port mode, where every loop accepts on listeners of its own, the copies of one
    /// address go round the loops, and when there are fewer copies than loops (a
    /// predecessor ran fewer) the missing ones are bound with `SO_REUSEPORT` to the same
    /// address — `start` fails if the sockets lack `SO_REUSEPORT`, since the loops left
    /// without a copy would never accept. [`Server::local_addrs`] lists their addresses
    /// after the bound ones. Options that apply to a listener (`TCP_NODELAY`, buffer sizes) are set
    /// on it; the backlog and `SO_REUSEPORT` stay as its creator set them.
    pub fn bind_fd(mut self, fd: impl Into<ListenFd>) -> Builder {
        self.inherited.push((fd.into(), None));
        self
    }

    /// [`bind_fd`](Builder::bind_fd) for a `std::net::TcpListener` or
    /// `std::os::unix::net::UnixListener` the application made.
    pub fn from_std(self, listener: impl StdListener) -> Builder {
        self.bind_fd(listener)
    }

    /// [`bind_fd`](Builder::bind_fd) with TLS, as [`bind_tls`](Builder::bind_tls) (feature
    /// `tls`).
    #[cfg(feature = "tls")]
    pub fn bind_fd_tls(mut self, fd: impl Into<ListenFd>, config: ServerConfig) -> Builder {
        self.inherited.push((fd.into(), Some(config)));
        self
    }

    /// How long a TLS handshake may take before the connection is closed (default 10 s;
    /// a configured [`read_timeout`](Builder::read_timeout) applies if it is shorter).
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.handshake_timeout = timeout;
        self
    }

    /// Adds a UDP address (port 0 picks a free port; see [`Server::udp_addrs`]). Datagrams go
    /// to [`Handler::on_datagram`]. One socket on loop 0, or with
    /// [`reuse_port`](Builder::reuse_port) one per loop.
    pub fn bind_udp<A: std::net::ToSocketAddrs>(mut self, addr: A) -> Builder {
        match addr.to_socket_addrs() {
            Ok(addrs) => self.udp_addrs.extend(addrs),
            Err(e) => {
                self.bind_error.get_or_insert(e);
            }
        }
        self
    }

    /// Datagrams moved per `recvmmsg` / `sendmmsg` (default 32; 1 uses plain `recvmsg` /
    /// `sendto`).
    pub fn udp_batch(mut self, n: usize) -> Builder {
        self.cfg.udp_batch = n.clamp(1, 1024);
        self
    }

    /// The largest UDP datagram received whole (default 4096 bytes); a larger one arrives cut
    /// and marked [truncated](crate::Datagram::is_truncated). Each loop with UDP sockets keeps
    /// `udp_batch × udp_max_datagram` bytes of receive buffers.
    pub fn udp_max_datagram(mut self, bytes: usize) -> Builder {
        self.cfg.udp_max_datagram = bytes.clamp(1, 65_536);
        self
    }

    /// `SO_RCVBUF` of the UDP sockets (default 1 MiB; the kernel caps it at
    /// `net.core.rmem_max`). Datagrams that arrive while the buffer is full are dropped by the
    /// kernel, so a server that takes bursts wants it large.
    pub fn udp_recv_buffer(mut self, bytes: usize) -> Builder {
        self.cfg.udp_recv_buffer = bytes;
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

    /// `TCP_NODELAY` on accepted and outbound connections (default: on).
    pub fn nodelay(mut self, on: bool) -> Builder {
        self.nodelay = on;
        self.cfg.nodelay = on;
        self
    }

    /// How long an outbound connect may take before it fails with `TimedOut` (default 10 s;
    /// [`Connect::timeout`](crate::Connect::timeout) overrides it per connect).
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.connect_timeout = timeout;
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

    /// Close a connection on which no byte moved in either direction for `timeout`
    /// ([`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout); see
    /// [`Handler::on_timeout`]), kept to the millisecond up to 49 days. Default: none.
    pub fn idle_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.idle_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Close a connection whose unconsumed input — an incomplete message, such as a request
    /// whose headers never finish — is older than `timeout`
    /// ([`CloseReason::ReadTimeout`](crate::CloseReason::ReadTimeout); see
    /// [`Handler::on_timeout`]). Default: none.
    pub fn read_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.read_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// The most bytes that may wait for one connection through its
    /// [`ConnHandle`](crate::ConnHandle)s, counting its pending output (default 1 MiB). Past
    /// it, handle writes fail with `WouldBlock`.
    pub fn handle_write_limit(mut self, bytes: usize) -> Builder {
        self.cfg.handle_write_limit = bytes.max(1);
        self
    }

    /// Starts a pool of `n` threads for blocking work submitted with
    /// [`Conn::submit`](crate::Conn::submit) (default: no pool).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n;
        self
    }

    /// The most worker-pool jobs one connection may have in flight; at the limit its reading
    /// pauses until one completes (default 16).
    pub fn max_jobs_per_conn(mut self, n: usize) -> Builder {
        self.cfg.max_jobs_per_conn = n.max(1);
        self
    }

    /// The most answers one connection may owe its peer — responses a protocol adapter has
    /// taken on and not yet written, such as HTTP's deferred and streamed responses, and the
    /// ones pipelined behind them (default 16, at most 65,535). At the limit its reading pauses
    /// until one is written; a graceful close waits for them (up to the stop deadline).
    pub fn max_owed_answers(mut self, n: usize) -> Builder {
        self.cfg.max_owed_answers = n.clamp(1, usize::from(u16::MAX));
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

    /// How long a closing connection may go without writing a byte of its pending output
    /// before it is closed anyway and the output dropped (default 30 s). Progress resets the
    /// clock, so a slow but live peer still gets everything. It bounds a connection whose send
    /// failed the same way: one that reads nothing for this long (its reading paused) is
    /// closed, for the send error, with what the kernel still holds.
    pub fn flush_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.flush_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a graceful stop waits for pending output before closing anyway (default 5 s).
    pub fn stop_timeout(mut self, timeout: Duration) -> Builder {
        self.cfg.stop_timeout = timeout;
        self
    }

    /// Injects faults into this server's system calls (feature `faults`; see
    /// [`sys::faults`](crate::sys::faults)). Without this call a server reads
    /// `EVENTIDE_FAULTS`; with it the variable is ignored, so one process can run many servers
    /// with different seeds.
    #[cfg(feature = "faults")]
    pub fn faults(mut self, config: crate::sys::faults::FaultConfig) -> Builder {
        self.cfg.faults = Some(config);
        self
    }

    /// Runs `hook` once the server has stopped and every loop has exited.
    pub fn on_shutdown(mut self, hook: impl FnOnce() + Send + 'static) -> Builder {
        self.on_shutdown = Some(Box::new(hook));
        self
    }

    /// Binds the listeners and starts the loops; `factory(i)` makes the handler of loop `i`.
    pub fn start<H, F>(mut self, factory: F) -> io::Result<Server>
    where
        H: Handler,
        F: FnMut(usize) -> H,
    {
        self.check()?;
        let cfg = self.effective_config()?;
        let inherited = std::mem::take(&mut self.inherited);
        let tcp = listener::bind_all(&self.addrs, inherited, self.loops, self.tcp_options(&cfg))?;
        let (udp, udp_addrs) = listener::bind_udp_all(
            &self.udp_addrs,
            self.loops,
            cfg.reuse_port,
            cfg.udp_recv_buffer,
        )?;
        let shared = self.shared_state::<H>(&cfg)?;
        let parts = loop_parts(factory, &shared, cfg, tcp.per_loop, udp)?;
        let mut server = Server::new(
            shared,
            tcp.addrs,
            udp_addrs,
            self.on_shutdown,
            cfg.stop_timeout,
        );
        server.set_listen_sockets(tcp.sockets);
        start_loops(server, parts)
    }

    /// Refuses what cannot start: an address that did not resolve, nothing to listen on, a
    /// number of loops out of range.
    fn check(&mut self) -> io::Result<()> {
        if let Some(e) = self.bind_error.take() {
            return Err(io::Error::new(
                e.kind(),
                format!("resolving the listen address: {e}"),
            ));
        }
        if self.addrs.is_empty() && self.udp_addrs.is_empty() && self.inherited.is_empty() {
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
        Ok(())
    }

    /// The configuration the loops run with: with feature `faults`, the faults given to
    /// [`faults`](Builder::faults) or else read from `EVENTIDE_FAULTS`.
    fn effective_config(&self) -> io::Result<Config> {
        #[allow(unused_mut)]
        let mut cfg = self.cfg;
        #[cfg(feature = "faults")]
        {
            cfg.faults = crate::sys::faults::effective(cfg.faults)?;
        }
        Ok(cfg)
    }

    /// How the TCP listeners are bound and their connections set up.
    fn tcp_options(&self, cfg: &Config) -> TcpOptions {
        TcpOptions {
            listen: ListenOptions {
                backlog: self.backlog,
                reuse_port: cfg.reuse_port,
            },
            nodelay: self.nodelay,
            send_buffer: self.send_buffer,
            recv_buffer: self.recv_buffer,
        }
    }

    /// What the loops share: each loop's mailbox and counters, the worker pool, the
    /// connection limit and (feature `tokio`) the runtime bridge.
    fn shared_state<H: Handler>(&mut self, cfg: &Config) -> io::Result<Arc<ServerShared>> {
        let loops = (0..self.loops)
            .map(|i| LoopShared::new(i, MessageType::of::<H::Message>()).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let pool = match self.workers {
            0 => None,
            n => Some(Arc::new(WorkerPool::start(n, worker_start(cfg, &loops))?)),
        };
        #[allow(unused_mut)]
        let mut shared = ServerShared::new(loops.into(), pool, self.max_connections);
        #[cfg(feature = "tokio")]
        {
            shared.tokio = self
                .tokio
                .take()
                .map(crate::bridge::Bridge::start)
                .transpose()?;
        }
        Ok(Arc::new(shared))
    }
}

/// What each loop starts with: its handler from `factory`, its own epoll instance, its share
/// of the TCP listeners and of the UDP sockets.
fn loop_parts<H: Handler>(
    mut factory: impl FnMut(usize) -> H,
    shared: &Arc<ServerShared>,
    cfg: Config,
    tcp: Vec<Vec<Listener>>,
    udp: Vec<Vec<Socket>>,
) -> io::Result<Vec<LoopParts<H>>> {
    tcp.into_iter()
        .zip(udp)
        .enumerate()
        .map(|(i, (listeners, udp))| {
            let udp = udp
                .into_iter()
                .map(|s| UdpSocketState::new(s, cfg.udp_batch))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(LoopParts {
                handler: factory(i),
                epoll: Epoll::new()?,
                shared: Arc::clone(&shared.loops[i]),
                server: Arc::clone(shared),
                cfg,
                listeners,
                udp,
            })
        })
        .collect()
}

/// Starts a thread per loop and waits until every loop has registered its own descriptors,
/// so that a failure fails the start rather than leaving a loop that serves nothing. On a
/// failure the loops already running are stopped.
fn start_loops<H: Handler>(mut server: Server, parts: Vec<LoopParts<H>>) -> io::Result<Server> {
    let loops = parts.len();
    let (started, set_up) = mpsc::channel();
    for (i, p) in parts.into_iter().enumerate() {
        let started = started.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("eventide-loop-{i}"))
            .spawn(move || EventLoop::new(p).run(started));
        match spawned {
            Ok(t) => server.add_thread(t),
            Err(e) => {
                server.abandon();
                return Err(io::Error::new(
                    e.kind(),
                    format!("starting the thread of loop {i}: {e}"),
                ));
            }
        }
    }
    drop(started);
    match first_set_up_failure(&set_up, loops) {
        Some(e) => {
            server.abandon();
            Err(e)
        }
        None => Ok(server),
    }
}

/// The first failure among the set-up reports of `loops` loops: a loop that could not
/// register its descriptors, or a thread that died before reporting.
fn first_set_up_failure(
    set_up: &mpsc::Receiver<(usize, io::Result<()>)>,
    loops: usize,
) -> Option<io::Error> {
    let mut failure = None;
    for _ in 0..loops {
        match set_up.recv() {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert(io::Error::other("an event loop thread died setting up"));
                break;
            }
        }
    }
    failure
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("addrs", &self.addrs)
            .field("udp_addrs", &self.udp_addrs)
            .field("loops", &self.loops)
            .field("backlog", &self.backlog)
            .field("nodelay", &self.nodelay)
            .field("max_connections", &self.max_connections)
            .field("workers", &self.workers)
            .field("config", &self.cfg)
            .finish()
    }
}

/// What a worker thread runs first: with faults configured (feature `faults`), worker `i`'s
/// fault injector, counting on loop `i` mod the number of loops.
fn worker_start(
    faults: &Config,
    loops: &[Arc<LoopShared>],
) -> impl Fn(usize) + Clone + Send + 'static {
    #[cfg(feature = "faults")]
    {
        use crate::sys::faults::{install, Role};
        let cfg = faults.faults;
        let counters: Vec<_> = loops.iter().map(|l| Arc::clone(&l.stats.faults)).collect();
        move |i: usize| {
            if let Some(cfg) = cfg {
                let counters = Arc::clone(&counters[i % counters.len()]);
                install(cfg, Role::Worker(i), counters);
            }
        }
    }
    #[cfg(not(feature = "faults"))]
    {
        let _ = (faults, loops);
        |_: usize| {}
    }
}
