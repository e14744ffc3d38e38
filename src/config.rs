//! What a server is configured with: the public option types ([`Trigger`], [`InboundPolicy`],
//! [`Balance`]) and the settings every loop copies ([`Config`]). It imports nothing from the
//! crate, so every layer can read its configuration without reaching up.

use std::time::Duration;

/// How the acceptor spreads new connections over the loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each loop in turn.
    #[default]
    RoundRobin,
    /// The loop with the fewest open connections (hand-offs in flight included).
    LeastConnections,
    /// A hash of the peer's IP address, so one client always lands on the same loop.
    SourceHash,
}

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
    pub flush_timeout: Duration,
    pub stop_timeout: Duration,
    pub high_water: usize,
    pub low_water: usize,
    pub pause_on_high_water: bool,
    pub inbound_limit: usize,
    pub inbound_policy: InboundPolicy,
    pub idle_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub handle_write_limit: usize,
    pub connect_timeout: Duration,
    pub nodelay: bool,
    pub udp_batch: usize,
    pub udp_max_datagram: usize,
    pub udp_recv_buffer: usize,
    pub handshake_timeout: Duration,
    pub max_jobs_per_conn: usize,
    /// Answers a connection may owe its peer (a protocol's deferred responses) before its
    /// reading pauses.
    pub max_owed_answers: usize,
    /// Faults to inject (feature `faults`), once resolved by `start`.
    #[cfg(feature = "faults")]
    pub faults: Option<crate::sys::faults::FaultConfig>,
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
            flush_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            high_water: 1024 * 1024,
            low_water: 256 * 1024,
            pause_on_high_water: true,
            inbound_limit: 1024 * 1024,
            inbound_policy: InboundPolicy::Close,
            idle_timeout: None,
            read_timeout: None,
            handle_write_limit: 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            nodelay: true,
            udp_batch: 32,
            udp_max_datagram: 4096,
            udp_recv_buffer: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            max_jobs_per_conn: 16,
            max_owed_answers: 16,
            #[cfg(feature = "faults")]
            faults: None,
        }
    }
}
