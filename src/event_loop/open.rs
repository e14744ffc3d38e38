//! The one way into the connection table: a socket accepted here or handed over by the
//! acceptor, an outbound connect that completed, or either after its TLS handshake becomes an
//! [`Opening`], and [`open`](EventLoop::open) turns that into a connection — entry, `on_open`,
//! epoll registration.

use std::any::Any;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{Entry, EventLoop};
use crate::buffer::InBuffer;
use crate::conn::state::{Interest, Registration};
use crate::conn::{CloseReason, Conn, ConnCore, ConnId, Extra};
use crate::cx::Seat;
use crate::handler::Handler;
use crate::stats::bump;
use crate::sys::socket;
use crate::tls::{ServerConfig, TlsSession};
use crate::token;

/// A socket about to become a connection.
pub(crate) struct Opening {
    pub fd: OwnedFd,
    pub peer: Option<SocketAddr>,
    /// Its place in this loop's count (and, if accepted, under the connection limit).
    pub seat: Seat,
    /// For an outbound connection: the connect's context, for `on_open`.
    pub context: Option<Box<dyn Any + Send>>,
    /// The socket is in epoll already, under a connecting or handshake token.
    pub registered: bool,
    /// The session of a completed TLS handshake.
    pub tls: Option<TlsOpening>,
}

/// A TLS session whose handshake just completed, with what came and went with its last flight.
pub(crate) struct TlsOpening {
    pub session: Box<TlsSession>,
    /// Application data that arrived with the final handshake flight.
    pub early: Vec<u8>,
    /// Ciphertext the socket has not taken yet.
    pub unsent: Vec<u8>,
}

impl<H: Handler> EventLoop<H> {
    /// Serves a socket accepted on a listener: at once, or after a TLS handshake.
    pub(super) fn open_accepted(
        &mut self,
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        tls: Option<ServerConfig>,
        seat: Seat,
    ) {
        let opening = Opening {
            fd,
            peer,
            seat,
            context: None,
            registered: false,
            tls: None,
        };
        match tls {
            None => self.open(opening),
            Some(config) => self.start_server_handshake(opening, &config),
        }
    }

    /// Creates the connection's entry, calls `on_open` and registers the socket.
    pub(super) fn open(&mut self, opening: Opening) {
        let Opening {
            fd,
            peer,
            seat,
            context,
            registered,
            tls,
        } = opening;
        let generation = self.lp.next_generation();
        let vacant = self.conns.vacant_entry();
        let key = vacant.key();
        if key as u64 > token::KEY_MASK {
            log::error!("eventide: connection table full; refusing a connection");
            socket::abort(fd);
            return; // the seat goes with it
        }
        let outbound = seat.is_outbound();
        let stats = &self.lp.shared.stats;
        bump(&stats.connections, 1);
        bump(
            if outbound {
                &stats.connected
            } else {
                &stats.accepted
            },
            1,
        );
        let id = ConnId {
            loop_index: self.lp.shared.index as u16,
            key: key as u32,
            generation,
        };
        let mut core = ConnCore::new(fd, id, peer, seat, self.lp.cfg.idle_timeout);
        core.active_ms = self.lp.now_ms;
        self.lp.open_context = context;
        let mut input = InBuffer::default();
        // Input, or a close_notify, that came with the last handshake flight: no readiness
        // event will announce it, so the ready list delivers it.
        let mut early = false;
        if let Some(TlsOpening {
            session,
            early: plain,
            unsent,
        }) = tls
        {
            early = !plain.is_empty() || session.peer_closed();
            core.tls = Some(session);
            input.append(&plain);
            if !unsent.is_empty() {
                core.write_raw(&mut self.lp, Extra::Vec(unsent));
            }
        }
        let handler = &mut self.handler;
        let opened = self.lp.callback("on_open", |lp| {
            handler.on_open(&mut Conn::new(&mut core, lp, &[]))
        });
        self.lp.open_context = None;
        let state = match opened {
            Some(Ok(state)) => state,
            Some(Err(why)) => return self.refuse(core, registered, why),
            None => {
                self.lp.fanout.leave_all((key as u32, generation));
                self.lp.shared.stats.count_close(&CloseReason::Panicked);
                return self.count_closed(core.fd, core.seat);
            }
        };
        let fd = core.fd.as_raw_fd();
        let jobs = core.jobs_in_flight();
        let paused = core.state.paused(input.len(), jobs, &self.lp.cfg);
        let interest = Interest::wanted(self.lp.cfg.edge, core.state.reading(paused), false);
        core.state.registration = Registration::Registered(interest);
        core.state.flowing = core.state.delivering(paused);
        if early {
            self.ready.push((key, generation));
        }
        vacant.insert(Entry { core, input, state });
        let tok = token::make(token::CONN, key, generation);
        let result = if registered {
            self.lp.epoll.modify(fd, interest.bits(), tok)
        } else {
            self.lp.epoll.add(fd, interest.bits(), tok)
        };
        if let Err(e) = result {
            self.close_now(key, CloseReason::Error(e));
            return;
        }
        self.settle(key);
    }
}
