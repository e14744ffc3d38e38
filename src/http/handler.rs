//! The [`Handler`] callbacks of an [`HttpServer`]: inbound connections run the HTTP codec and
//! the answers owed; outbound connections — the ones the service opens with
//! [`LoopCx::connect`], to an upstream server say — go to the service's outbound callbacks
//! with the link `Service::on_connect` gave them.

use std::any::Any;
use std::fmt;

use super::deferred::{Answer, AnswerKind};
use super::exchange::Exchange;
use super::pipeline::Writer;
use super::response::Batch;
use super::switch::{SwitchEvent, Switched};
use super::upload::ResumeBody;
use super::{intake, HttpServer, Service};
use crate::adapter;
use crate::{Action, CloseReason, Conn, ConnId, ConnectError, Handler, LoopCx, Refusal, Timeout};

/// Per-connection state of an [`HttpServer`]. For an inbound connection: where parsing of an
/// incomplete request stands and the answers owed, small and heap-free while nothing is owed
/// (so an idle connection costs nothing beyond it). For an outbound one: the service's link.
/// After a WebSocket upgrade (`Response::websocket`, feature `ws`): the session and the
/// handler's state for it.
#[derive(Debug)]
pub struct HttpConnState {
    pub(crate) side: Side,
}

#[derive(Debug)]
pub(crate) enum Side {
    Inbound(Exchange),
    /// What `Service::on_connect` returned.
    Outbound(u64),
    /// Switched protocols after a `101` (a WebSocket upgrade): the new protocol's state.
    Switched(Switched),
}

impl Default for HttpConnState {
    fn default() -> HttpConnState {
        HttpConnState {
            side: Side::Inbound(Exchange::default()),
        }
    }
}

/// What happened on an outbound connection of an [`HttpServer`]'s service (see
/// [`Service::on_outbound`]): the [`Handler`] callback of the same name, forwarded.
#[non_exhaustive]
pub enum OutboundEvent {
    /// Bytes arrived: [`Conn::input`] holds everything not consumed yet (`on_data`).
    Data,
    /// Output that had to wait for the kernel is all sent (`on_drained`).
    Drained,
    /// Pending output passed the high-water mark (`on_high_water`).
    HighWater,
    /// The peer shut down its write side (`on_read_closed`).
    ReadClosed,
    /// A per-connection timeout fired (`on_timeout`).
    Timeout(Timeout),
    /// A timer set with [`Conn::set_timer`] fired (`on_timer`).
    Timer(u64),
    /// A message sent with [`ConnHandle::send`](crate::ConnHandle::send) (`on_message`).
    Message(Box<dyn Any + Send>),
}

impl fmt::Debug for OutboundEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundEvent::Data => f.write_str("Data"),
            OutboundEvent::Drained => f.write_str("Drained"),
            OutboundEvent::HighWater => f.write_str("HighWater"),
            OutboundEvent::ReadClosed => f.write_str("ReadClosed"),
            OutboundEvent::Timeout(t) => write!(f, "Timeout({t:?})"),
            OutboundEvent::Timer(t) => write!(f, "Timer({t})"),
            OutboundEvent::Message(_) => f.write_str("Message(..)"),
        }
    }
}

impl<S: Service> HttpServer<S> {
    /// Serves the input of an inbound connection.
    #[inline]
    fn inbound_data(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange) -> Action {
        adapter::serve_input(conn, |input, conn| self.serve(ex, input, conn))
    }

    /// An answer owed arrived: write it in order, then what waited for it, then the requests
    /// held meanwhile. Once the peer has finished sending (it was read while answers were
    /// owed, see `on_read_closed`) and nothing more is owed, the connection closes.
    fn answer_owed(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange, answer: Answer) -> Action {
        let mut buf = std::mem::take(&mut self.out_buf);
        let mut batch = Batch {
            buf: &mut buf,
            out: &mut *conn,
        };
        let mut w = Writer {
            scratch: &mut self.scratch,
            heads: &mut self.heads,
        };
        let keep = ex
            .answers
            .answer_owed(&mut w, &mut batch, answer.seq, answer.kind);
        batch.flush();
        self.keep_batch(buf);
        self.after_answers(conn, ex, keep)
    }

    /// After answers owed were written (`keep`: the connection stays open): the requests held
    /// meanwhile are served; a peer that finished sending is closed on once nothing is owed.
    fn after_answers(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange, keep: bool) -> Action {
        if !keep {
            return Action::Close;
        }
        if !conn.input().is_empty() && (!ex.answers.owing() || conn.may_owe()) {
            let action = self.inbound_data(conn, ex);
            if action != Action::Continue {
                return action;
            }
        }
        if conn.is_read_closed() && !ex.answers.owing() {
            return Action::Close;
        }
        Action::Continue
    }
}

impl<S: Service> HttpServer<S> {
    /// After serving HTTP on `st` (which gave `action`): a `101` written meanwhile switches
    /// the connection.
    #[inline]
    fn maybe_switch(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut HttpConnState,
        action: Action,
    ) -> Action {
        let Side::Inbound(ex) = &mut st.side else {
            return action;
        };
        match ex.switching.take() {
            None => action,
            Some(switched) => self.switch(conn, st, *switched, action),
        }
    }

    #[cold]
    fn switch(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut HttpConnState,
        switched: Switched,
        action: Action,
    ) -> Action {
        if self.upgrade.to.is_none() {
            return Action::Close;
        }
        if action != Action::Continue {
            return action; // closing anyway: the protocol never starts
        }
        st.side = Side::Switched(switched);
        if let Side::Switched(sw) = &mut st.side {
            self.switched_open(conn, sw);
        }
        Action::Continue
    }
}

impl<S: Service> HttpServer<S> {
    /// Output drained with answers owed: a file body read in pieces goes on, then the answers
    /// and requests behind it.
    #[cold]
    fn inbound_drained(&mut self, conn: &mut Conn<'_>, ex: &mut Exchange) -> Action {
        let mut buf = std::mem::take(&mut self.out_buf);
        let mut batch = Batch {
            buf: &mut buf,
            out: &mut *conn,
        };
        let keep = ex.answers.drained(&mut batch);
        batch.flush();
        self.keep_batch(buf);
        self.after_answers(conn, ex, keep)
    }
}

impl<S: Service> Handler for HttpServer<S> {
    type State = HttpConnState;
    /// Boxed: a connection's messages are the server's own (the answers owed to inbound
    /// connections) and, on outbound ones, whatever the service sends them.
    type Message = Box<dyn Any + Send>;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<HttpConnState, Refusal> {
        if conn.is_outbound() {
            let link = self.service.on_connect(conn);
            return Ok(HttpConnState {
                side: Side::Outbound(link),
            });
        }
        Ok(HttpConnState::default())
    }

    fn on_stop(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState) -> Action {
        match &mut st.side {
            // A body half in: it may finish, and get the connection's last answer.
            Side::Inbound(ex) if ex.upload.is_some() => {
                ex.last = true;
                Action::Continue
            }
            Side::Inbound(_) => adapter::on_stop(self, conn, st),
            Side::Outbound(_) => Action::Close,
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::Stop),
        }
    }

    #[inline]
    fn on_data(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState) -> Action {
        match &mut st.side {
            Side::Inbound(ex) => {
                let action = self.inbound_data(conn, ex);
                self.maybe_switch(conn, st, action)
            }
            Side::Outbound(link) => self.service.on_outbound(conn, *link, OutboundEvent::Data),
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::Data),
        }
    }

    fn on_drained(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState) -> Action {
        match &mut st.side {
            Side::Inbound(ex) if ex.answers.owing() => {
                let action = self.inbound_drained(conn, ex);
                self.maybe_switch(conn, st, action)
            }
            Side::Inbound(_) | Side::Switched(_) => Action::Continue,
            Side::Outbound(link) => self
                .service
                .on_outbound(conn, *link, OutboundEvent::Drained),
        }
    }

    fn on_high_water(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState) -> Action {
        match &mut st.side {
            Side::Inbound(ex) => {
                ex.answers.high_water(); // a pushed body's writer waits for the drain
                Action::Continue
            }
            Side::Switched(_) => Action::Continue,
            Side::Outbound(link) => self
                .service
                .on_outbound(conn, *link, OutboundEvent::HighWater),
        }
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState) -> Action {
        match &mut st.side {
            Side::Inbound(ex) if ex.upload.is_some() && !ex.answers.owing() => {
                self.upload_read_closed(conn, ex)
            }
            // Requests are answered before the close: the ones owed, and those still held.
            Side::Inbound(ex) if ex.answers.owing() => Action::Continue,
            Side::Inbound(_) => Action::Close,
            Side::Outbound(link) => {
                self.service
                    .on_outbound(conn, *link, OutboundEvent::ReadClosed)
            }
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::ReadClosed),
        }
    }

    fn on_timeout(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut HttpConnState,
        which: Timeout,
    ) -> Action {
        match &mut st.side {
            // A body whose answer a sink's responder owes: the client is the slow one.
            Side::Inbound(ex) if ex.upload.as_ref().is_some_and(|up| up.owed().is_some()) => {
                self.upload_timed_out(conn, ex)
            }
            // The server is the one taking its time (input waits behind answers owed).
            Side::Inbound(ex) if ex.answers.owing() => Action::Continue,
            Side::Inbound(ex) if ex.upload.is_some() => self.upload_timed_out(conn, ex),
            Side::Inbound(_) => adapter::on_timeout(self, conn, st, which),
            Side::Outbound(link) => {
                self.service
                    .on_outbound(conn, *link, OutboundEvent::Timeout(which))
            }
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::Timeout(which)),
        }
    }

    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut HttpConnState,
        msg: Box<dyn Any + Send>,
    ) -> Action {
        match &mut st.side {
            Side::Inbound(ex) => match msg.downcast::<Answer>() {
                Ok(answer) => {
                    if !matches!(answer.kind, AnswerKind::Pushed) {
                        self.answered_early(conn, ex, answer.seq);
                    }
                    let action = self.answer_owed(conn, ex, *answer);
                    self.maybe_switch(conn, st, action)
                }
                Err(msg) if msg.is::<ResumeBody>() => match msg.downcast::<ResumeBody>() {
                    Ok(resume) => self.resume_upload(conn, ex, &resume),
                    Err(_) => Action::Continue,
                },
                Err(_) => {
                    log::debug!("eventide::http: a message for an inbound connection; ignored");
                    Action::Continue
                }
            },
            Side::Outbound(link) => {
                self.service
                    .on_outbound(conn, *link, OutboundEvent::Message(msg))
            }
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::Message(msg)),
        }
    }

    fn on_timer(&mut self, conn: &mut Conn<'_>, st: &mut HttpConnState, token: u64) -> Action {
        match &mut st.side {
            Side::Inbound(_) => Action::Continue,
            Side::Outbound(link) => {
                self.service
                    .on_outbound(conn, *link, OutboundEvent::Timer(token))
            }
            Side::Switched(sw) => self.switched(conn, sw, SwitchEvent::Timer(token)),
        }
    }

    fn on_connect_error(&mut self, cx: &mut LoopCx<'_>, error: ConnectError) {
        self.service.on_connect_error(cx, error);
    }

    fn on_close(&mut self, id: ConnId, st: HttpConnState, reason: &CloseReason) {
        match st.side {
            Side::Outbound(link) => self.service.on_outbound_close(id, link, reason),
            Side::Switched(sw) => self.switched_close(id, sw, reason),
            Side::Inbound(ex) => intake::closed(ex),
        }
    }

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        adapter::on_boot(self, cx);
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        adapter::on_tick(self, cx, token);
    }
}
