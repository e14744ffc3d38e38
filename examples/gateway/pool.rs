//! The gateway's upstream connections, one loop's: each request goes on an idle pooled
//! connection to its upstream or on a new one (`dispatch`), and each connection's events —
//! open, its answer's bytes (`relay.rs`), full and drained, closed, failed to connect — are
//! the loop's outbound callbacks, forwarded by the service.

use std::net::SocketAddr;

use eventide::http::{OutboundEvent, Status};
use eventide::{Action, CloseReason, Conn, ConnId, Connect, ConnectError, LoopCx};

use super::{Exchange, Gateway, Link};

impl Gateway {
    /// Sends `ex` on an idle connection to `upstream`, or on a new one; returns its link.
    pub(super) fn dispatch(
        &mut self,
        cx: &mut LoopCx<'_>,
        upstream: usize,
        mut ex: Exchange,
    ) -> usize {
        while let Some(link) = self.idle[upstream].pop() {
            let Some(id) = self.links[link].id else {
                continue;
            };
            if cx.write_to(id, &ex.request).is_ok() {
                ex.reused = true;
                if !ex.idempotent {
                    ex.request = Vec::new();
                }
                self.links[link].exchange = Some(ex);
                return link;
            }
        }
        self.connect(cx, upstream, ex)
    }

    /// Sends `ex` on a new connection to `upstream`; returns its link.
    fn connect(&mut self, cx: &mut LoopCx<'_>, upstream: usize, ex: Exchange) -> usize {
        let link = self.links.insert(Link {
            upstream,
            id: None,
            handle: None,
            full: false,
            exchange: Some(ex),
        });
        cx.connect(
            Connect::new(self.upstreams[upstream])
                .timeout(self.timeout)
                .context(link),
        );
        link
    }

    pub(super) fn on_connect(&mut self, conn: &mut Conn<'_>) -> u64 {
        let Some(link) = conn
            .take_context::<usize>()
            .filter(|l| self.links.contains(*l))
        else {
            conn.close();
            return u64::MAX;
        };
        let entry = &mut self.links[link];
        if std::mem::take(&mut self.down[entry.upstream]) {
            log::warn!(
                "gateway: upstream {} is reachable again",
                self.upstreams[entry.upstream]
            );
        }
        entry.id = Some(conn.id());
        entry.handle = Some(conn.handle());
        conn.set_idle_timeout(Some(self.timeout));
        let _ = conn.set_nodelay(true);
        match entry.exchange.as_mut() {
            Some(ex) => {
                conn.write_vec(std::mem::take(&mut ex.request));
                // An upload that waited for the connection goes on.
                if let Some(resume) = ex.upload.as_mut().and_then(|u| u.resume.take()) {
                    let _ = resume.resume();
                }
            }
            None if self.idle[entry.upstream].len() < self.max_idle => {
                self.idle[entry.upstream].push(link)
            }
            None => conn.close(),
        }
        link as u64
    }

    pub(super) fn on_outbound(
        &mut self,
        conn: &mut Conn<'_>,
        link: u64,
        event: OutboundEvent,
    ) -> Action {
        let link = link as usize;
        if !self.links.contains(link) {
            return Action::Close;
        }
        match event {
            OutboundEvent::Data => self.on_data(conn, link),
            OutboundEvent::ReadClosed => {
                // A body read until close is complete; any other answer in progress is cut
                // short, and `on_outbound_close` answers for it.
                let Some(ex) = self.links[link].exchange.take() else {
                    return Action::Close;
                };
                if ex.reader.until_close() {
                    ex.finish();
                    return Action::Close;
                }
                if ex.may_retry() {
                    let upstream = self.links[link].upstream;
                    let ex = Exchange {
                        reused: false,
                        ..ex
                    };
                    self.connect(&mut conn.loop_cx(), upstream, ex);
                } else {
                    self.links[link].exchange = Some(ex);
                }
                Action::Close
            }
            OutboundEvent::Timeout(_) => {
                self.fail(link, Status::GATEWAY_TIMEOUT);
                Action::Close
            }
            OutboundEvent::HighWater => {
                self.links[link].full = true;
                Action::Continue
            }
            OutboundEvent::Drained => {
                let entry = &mut self.links[link];
                entry.full = false;
                let upload = entry.exchange.as_mut().and_then(|e| e.upload.as_mut());
                if let Some(resume) = upload.and_then(|u| u.resume.take()) {
                    let _ = resume.resume();
                }
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    pub(super) fn on_outbound_close(&mut self, _id: ConnId, link: u64, reason: &CloseReason) {
        let link = link as usize;
        if !self.links.contains(link) {
            return;
        }
        if self.links[link].exchange.is_some() {
            log::warn!(
                "gateway: upstream {} closed: {reason:?}",
                self.upstream_of(link)
            );
            self.fail(link, Status::BAD_GATEWAY);
        }
        let upstream = self.links[link].upstream;
        self.idle[upstream].retain(|&l| l != link);
        self.links.remove(link);
    }

    pub(super) fn on_connect_error(&mut self, _cx: &mut LoopCx<'_>, mut error: ConnectError) {
        let Some(link) = error
            .take_context::<usize>()
            .filter(|l| self.links.contains(*l))
        else {
            return;
        };
        let upstream = self.links[link].upstream;
        if !std::mem::replace(&mut self.down[upstream], true) {
            log::warn!("gateway: upstream {}: {}", error.addr(), error.error());
        }
        let status = if error.kind() == std::io::ErrorKind::TimedOut {
            Status::GATEWAY_TIMEOUT
        } else {
            Status::BAD_GATEWAY
        };
        self.fail(link, status);
        self.links.remove(link);
    }

    pub(super) fn upstream_of(&self, link: usize) -> SocketAddr {
        self.upstreams[self.links[link].upstream]
    }
}
