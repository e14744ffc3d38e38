//! The one way into the connection table: a socket accepted here or handed over by the
//! acceptor, an outbound connect that completed, or either after its TLS handshake becomes an
//! [`Opening`], and [`open`](EventLoop::open) turns that into a connection — entry, `on_open`,
//! epoll registration.

use std::any::Any;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::{Entry, EventLoop};
use crate::buffer::InBuffer;
use crate::config::Config;
use crate::conn::state::{Interest, Registration};
use crate::conn::{CloseReason, Conn, ConnCore, ConnId, Extra, Refusal};
use crate::cx::{LoopCore, Seat};
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
        let id = ConnId {
            loop_index: self.lp.shared.index as u16,
            key: key as u32,
            generation,
        };
        let mut core = new_core(&mut self.lp, fd, id, peer, seat);
        let (input, unannounced) = adopt_tls(&mut core, &mut self.lp, tls);
        let state = match call_on_open(&mut self.handler, &mut self.lp, &mut core, context) {
            Some(Ok(state)) => state,
            Some(Err(why)) => return self.refuse(core, registered, why),
            None => {
                self.lp.fanout.leave_all((key as u32, generation));
                self.lp.shared.stats.count_close(&CloseReason::Panicked);
                return self.count_closed(core.fd, core.seat);
            }
        };
        let interest = start_serving(&mut core, input.len(), &self.lp.cfg);
        if unannounced {
            self.ready.push((key, generation));
        }
        let fd = core.fd.as_raw_fd();
        vacant.insert(Entry { core, input, state });
        self.register(key, generation, fd, interest, registered);
    }

    /// Puts the new connection's socket in epoll (or moves it there from its connecting or
    /// handshake token) and settles what `on_open` did.
    #[inline]
    fn register(
        &mut self,
        key: usize,
        generation: u32,
        fd: RawFd,
        interest: Interest,
        registered: bool,
    ) {
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

/// A connection's core, counted as opened (accepted or connected) now.
#[inline]
fn new_core(
    lp: &mut LoopCore,
    fd: OwnedFd,
    id: ConnId,
    peer: Option<SocketAddr>,
    seat: Seat,
) -> ConnCore {
    let stats = &lp.shared.stats;
    bump(&stats.connections, 1);
    bump(
        if seat.is_outbound() {
            &stats.connected
        } else {
            &stats.accepted
        },
        1,
    );
    let mut core = ConnCore::new(fd, id, peer, seat, lp.cfg.idle_timeout);
    core.active_ms = lp.now_ms;
    core
}

/// Takes over a completed handshake's session: the input that came with its last flight,
/// and whether that input (or a close_notify) is there — no readiness event will announce
/// it, so the ready list must deliver it. Ciphertext the socket did not take is queued.
#[inline]
fn adopt_tls(core: &mut ConnCore, lp: &mut LoopCore, tls: Option<TlsOpening>) -> (InBuffer, bool) {
    let mut input = InBuffer::default();
    let Some(TlsOpening {
        session,
        early,
        unsent,
    }) = tls
    else {
        return (input, false);
    };
    let unannounced = !early.is_empty() || session.peer_closed();
    core.tls = Some(session);
    input.append(&early);
    if !unsent.is_empty() {
        core.write_raw(lp, Extra::Vec(unsent));
    }
    (input, unannounced)
}

/// Calls `on_open`, with the connect's context (if any) at hand; `None` if it panicked.
#[inline]
fn call_on_open<H: Handler>(
    handler: &mut H,
    lp: &mut LoopCore,
    core: &mut ConnCore,
    context: Option<Box<dyn Any + Send>>,
) -> Option<Result<H::State, Refusal>> {
    lp.open_context = context;
    let opened = lp.callback("on_open", |lp| {
        handler.on_open(&mut Conn::new(core, lp, &[]))
    });
    lp.open_context = None;
    opened
}

/// Sets the new connection's state for serving (reading unless paused from the start,
/// delivering when it flows); the epoll interest that goes with it.
#[inline]
fn start_serving(core: &mut ConnCore, buffered: usize, cfg: &Config) -> Interest {
    let jobs = core.jobs_in_flight();
    let paused = core.state.paused(buffered, jobs, cfg);
    let interest = Interest::wanted(cfg.edge, core.state.reading(paused), false);
    core.state.registration = Registration::Registered(interest);
    core.state.flowing = core.state.delivering(paused);
    interest
}
