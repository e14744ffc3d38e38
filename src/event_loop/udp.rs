//! UDP sockets on a loop: receive a batch, hand each datagram to the handler, send the
//! replies of the batch together; `EPOLLOUT` only while replies wait for the kernel.

use std::os::fd::AsRawFd;

use super::EventLoop;
use crate::handler::Handler;
use crate::stats::bump;
use crate::sys::epoll::{READABLE, WRITABLE};
use crate::token;
use crate::udp::{Datagram, Udp};

/// Datagrams received per readiness event at most, however they are batched.
const UDP_READ_BUDGET: usize = 32;

impl<H: Handler> EventLoop<H> {
    pub(super) fn arm_udp(&mut self) -> std::io::Result<()> {
        for (i, s) in self.udp.iter().enumerate() {
            self.lp
                .epoll
                .add(s.sock.as_raw_fd(), READABLE, token::make(token::UDP, i, 0))?;
        }
        Ok(())
    }

    pub(super) fn udp_event(&mut self, i: usize, events: u32) {
        if i >= self.udp.len() {
            return;
        }
        if events & READABLE != 0 {
            self.udp_receive(i);
        }
        self.udp_flush(i);
    }

    /// Receives up to [`UDP_READ_BUDGET`] datagrams: one `recvmmsg` with the default batch;
    /// with smaller batches, more calls until a short one (level-triggered epoll reports
    /// again if more is queued), so a batch of one is not an `epoll_wait` per datagram.
    fn udp_receive(&mut self, i: usize) {
        let Some(batch) = self.udp_recv.as_mut() else {
            return;
        };
        let fd = self.udp[i].sock.as_raw_fd();
        let per_call = batch.capacity();
        let mut budget = UDP_READ_BUDGET.max(per_call);
        while budget > 0 {
            let n = match batch.recv(fd) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // E.g. an ICMP error queued for an earlier send; the socket stays usable.
                    log::debug!("eventide: udp receive: {e}");
                    return;
                }
            };
            budget = budget.saturating_sub(per_call);
            let stats = &self.lp.shared.stats;
            bump(&stats.datagrams_in, n as u64);
            for k in 0..n {
                let r = batch.get(k);
                let Some(peer) = r.peer else { continue };
                if r.len > r.data.len() {
                    bump(&self.lp.shared.stats.datagrams_truncated, 1);
                }
                bump(&self.lp.shared.stats.bytes_in, r.data.len() as u64);
                let dgram = Datagram {
                    data: r.data,
                    len: r.len,
                    peer,
                };
                let (handler, socket) = (&mut self.handler, &mut self.udp[i]);
                self.lp.callback("on_datagram", |lp| {
                    handler.on_datagram(&mut Udp { lp, socket }, dgram)
                });
            }
            if n < per_call {
                return; // the queue is drained
            }
        }
    }

    /// Sends the socket's queued replies; registers for writability while some remain.
    pub(super) fn udp_flush(&mut self, i: usize) {
        let s = &mut self.udp[i];
        if s.out.is_empty() && !s.waiting_out {
            return;
        }
        let fd = s.sock.as_raw_fd();
        let before = s.out.len();
        let (sent, failed) = s.out.flush(fd);
        let left = s.out.len();
        let stats = &self.lp.shared.stats;
        bump(&stats.datagrams_out, sent as u64);
        bump(&stats.datagrams_dropped, failed as u64);
        let _ = before;
        let want_out = left > 0;
        if want_out != s.waiting_out {
            let interest = if want_out {
                READABLE | WRITABLE
            } else {
                READABLE
            };
            if self
                .lp
                .epoll
                .modify(fd, interest, token::make(token::UDP, i, 0))
                .is_ok()
            {
                self.udp[i].waiting_out = want_out;
            }
        }
    }
}
