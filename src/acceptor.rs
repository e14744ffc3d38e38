//! The acceptor: drains a listener's accept queue (the seed's L2, the kernel's full-connection
//! queue) and picks the loop that will serve each connection.
//!
//! Faults never stop it: `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` take the listener out of
//! epoll for a back-off period (the pending connections wait in the kernel's queue, nothing
//! spins), and per-connection failures such as `ECONNABORTED` are counted and skipped.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::config::Balance;
use crate::cx::Seat;
use crate::listener::Listener;
use crate::mailbox::LoopShared;
use crate::shared::ServerShared;
use crate::stats::bump;
use crate::sys::socket;
use crate::tls::ServerConfig;

/// A connection taken from the accept queue.
pub(crate) struct Accepted {
    pub fd: OwnedFd,
    pub peer: Option<SocketAddr>,
    /// The listener's TLS configuration: the connection starts with a handshake.
    pub tls: Option<ServerConfig>,
    /// Its place under the connection limit (assigned to a loop by the caller).
    pub seat: Seat,
}

/// How a drain of the accept queue ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Drain {
    /// The queue is empty (`EAGAIN`).
    Empty,
    /// The per-wake-up budget ran out; the listener stays readable.
    Budget,
    /// Out of descriptors or memory: back off before accepting again.
    BackOff,
}

/// Accepts up to `budget` connections into `out`. Connections over the server's limit are
/// closed at once and counted as refused.
pub(crate) fn drain(
    listener: &Listener,
    budget: usize,
    server: &ServerShared,
    shared: &LoopShared,
    out: &mut Vec<Accepted>,
) -> Drain {
    let fd = listener.sock.as_raw_fd();
    for _ in 0..budget {
        match socket::accept(fd) {
            Ok((fd, addr)) => {
                let Some(seat) = Seat::accepted(&server.limit) else {
                    shared.stats.count_refusal(None);
                    socket::abort(fd);
                    continue;
                };
                out.push(Accepted {
                    fd,
                    peer: addr.as_socket(),
                    tls: listener.tls.clone(),
                    seat,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Empty,
            Err(e) => {
                bump(&shared.stats.accept_errors, 1);
                if needs_back_off(&e) {
                    log::warn!("eventide: accept failed ({e}); backing off");
                    return Drain::BackOff;
                }
                // The connection died in the queue, or a firewall refused it: skip it.
                log::debug!("eventide: accept skipped a connection: {e}");
            }
        }
    }
    Drain::Budget
}

/// Out of descriptors or memory, or an error accept(2) does not document as per-connection:
/// back off rather than retry at once (which would spin).
fn needs_back_off(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || !matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ETIMEDOUT
        )
    )
}

/// Picks the loop for each new connection under a [`Balance`] policy.
pub(crate) struct Balancer {
    policy: Balance,
    next: usize,
}

impl Balancer {
    pub(crate) fn new(policy: Balance) -> Balancer {
        Balancer { policy, next: 0 }
    }

    pub(crate) fn pick(&mut self, peer: Option<SocketAddr>, loops: &[Arc<LoopShared>]) -> usize {
        let n = loops.len();
        if n == 1 {
            return 0;
        }
        match self.policy {
            Balance::RoundRobin => {
                let i = self.next % n;
                self.next = self.next.wrapping_add(1);
                i
            }
            Balance::LeastConnections => loops
                .iter()
                .enumerate()
                .min_by_key(|(i, l)| (l.stats.assigned.load(Relaxed), (*i + n - self.next % n) % n))
                .map(|(i, _)| {
                    self.next = i + 1;
                    i
                })
                .unwrap_or(0),
            Balance::SourceHash => match peer {
                Some(addr) => (hash_ip(addr.ip()) % n as u64) as usize,
                None => {
                    let i = self.next % n;
                    self.next = self.next.wrapping_add(1);
                    i
                }
            },
        }
    }
}

/// FNV-1a over the address bytes: stable across runs, so a client keeps its loop.
fn hash_ip(ip: IpAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match ip {
        IpAddr::V4(v4) => feed(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => feed(&v4.octets()),
            None => feed(&v6.octets()),
        },
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loops(n: usize) -> Vec<Arc<LoopShared>> {
        (0..n)
            .map(|i| Arc::new(LoopShared::new(i, crate::mailbox::MessageType::of::<()>()).unwrap()))
            .collect()
    }

    #[test]
    fn round_robin_cycles() {
        let l = loops(3);
        let mut b = Balancer::new(Balance::RoundRobin);
        let picks: Vec<_> = (0..6).map(|_| b.pick(None, &l)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_prefers_emptiest() {
        let l = loops(3);
        l[0].stats.assigned.store(5, Relaxed);
        l[1].stats.assigned.store(1, Relaxed);
        l[2].stats.assigned.store(3, Relaxed);
        let mut b = Balancer::new(Balance::LeastConnections);
        assert_eq!(b.pick(None, &l), 1);
        l[1].stats.assigned.fetch_add(2, Relaxed);
        // 5, 3, 3: a tie between 1 and 2 goes to the next in turn after the last pick.
        assert_eq!(b.pick(None, &l), 2);
    }

    #[test]
    fn source_hash_is_sticky_per_ip() {
        let l = loops(4);
        let mut b = Balancer::new(Balance::SourceHash);
        let a: SocketAddr = "10.0.0.7:1000".parse().unwrap();
        let a2: SocketAddr = "10.0.0.7:2000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:3000".parse().unwrap();
        let first = b.pick(Some(a), &l);
        assert_eq!(b.pick(Some(a2), &l), first);
        assert_eq!(b.pick(Some(mapped), &l), first);
        let spread: std::collections::HashSet<_> = (0..64u8)
            .map(|i| b.pick(Some(SocketAddr::from(([10, 0, 1, i], 80))), &l))
            .collect();
        assert!(spread.len() > 1);
    }
}
