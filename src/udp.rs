//! UDP: datagrams in, replies by `send_to`, on the same handler as streams.
//!
//! A server bound with [`Builder::bind_udp`](crate::Builder::bind_udp) gets one UDP socket on
//! loop 0, or with [`Builder::reuse_port`](crate::Builder::reuse_port) one `SO_REUSEPORT`
//! socket per loop. Each readiness event receives up to
//! [`Builder::udp_batch`](crate::Builder::udp_batch) datagrams with one `recvmmsg` and hands
//! each to [`Handler::on_datagram`](crate::Handler::on_datagram); replies queued with
//! [`Udp::send_to`] go out together with one `sendmmsg` once the batch is handled. A datagram
//! larger than [`Builder::udp_max_datagram`](crate::Builder::udp_max_datagram) arrives cut to
//! that size and marked [truncated](Datagram::is_truncated), with its real length — never cut
//! silently.

use std::fmt;
use std::net::SocketAddr;

use socket2::Socket;

use crate::cx::{LoopCore, LoopCx};
use crate::stats::bump;
use crate::sys::udp::SendQueue;

/// Replies queued per socket beyond which new ones are dropped (and counted).
pub(crate) const UDP_QUEUE_LIMIT: usize = 65_536;

/// A UDP socket owned by a loop.
pub(crate) struct UdpSocketState {
    pub sock: Socket,
    pub local: SocketAddr,
    pub out: SendQueue,
    /// `EPOLLOUT` is registered (replies are waiting).
    pub waiting_out: bool,
}

impl UdpSocketState {
    pub(crate) fn new(sock: Socket, batch: usize) -> std::io::Result<UdpSocketState> {
        let local = sock.local_addr()?.as_socket().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket")
        })?;
        Ok(UdpSocketState {
            sock,
            local,
            out: SendQueue::new(batch),
            waiting_out: false,
        })
    }
}

/// One received datagram.
#[derive(Clone, Copy)]
pub struct Datagram<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) len: usize,
    pub(crate) peer: SocketAddr,
}

impl<'a> Datagram<'a> {
    /// The payload (cut to the maximum datagram size if it was larger).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The datagram's real length (larger than `data().len()` when truncated).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the datagram was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the datagram was larger than the maximum and `data()` holds only its start.
    pub fn is_truncated(&self) -> bool {
        self.len > self.data.len()
    }

    /// Who sent it.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datagram")
            .field("peer", &self.peer)
            .field("len", &self.len)
            .field("truncated", &self.is_truncated())
            .finish()
    }
}

/// The UDP socket a datagram arrived on, as seen from
/// [`Handler::on_datagram`](crate::Handler::on_datagram).
pub struct Udp<'a> {
    pub(crate) lp: &'a mut LoopCore,
    pub(crate) socket: &'a mut UdpSocketState,
}

impl Udp<'_> {
    /// Queues `data` for `peer`; it is sent with the other replies of this batch (one
    /// `sendmmsg`). When the socket's queue is full (the kernel has been refusing for a
    /// while), the datagram is dropped and counted in
    /// [`LoopStatsSnapshot::datagrams_dropped`](crate::LoopStatsSnapshot::datagrams_dropped).
    pub fn send_to(&mut self, data: &[u8], peer: SocketAddr) {
        let s = &mut *self.socket;
        if s.out.len() >= UDP_QUEUE_LIMIT {
            bump(&self.lp.shared.stats.datagrams_dropped, 1);
            return;
        }
        s.out.push(data, peer);
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local
    }

    /// The event loop this socket lives on.
    pub fn loop_cx(&mut self) -> LoopCx<'_> {
        LoopCx::new(self.lp)
    }
}

impl fmt::Debug for Udp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Udp")
            .field("local", &self.local_addr())
            .finish()
    }
}
