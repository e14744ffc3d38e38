//! [`RespServer`]: the [`Handler`] that parses commands from a connection's input and hands
//! them to a [`Service`], which writes the replies.

use std::fmt;

use super::{Args, Command, Output, Parse, Parser, Writer};
use crate::adapter::{self, Protocol, Served, Then};
use crate::{Action, Conn, Handler, LoopCx, Refusal, Timeout};

/// The application behind a [`RespServer`]: one value per event loop, called for every
/// command of that loop's connections, in order, on the loop's thread (it must not block).
///
/// ```
/// use eventide::resp::{Command, Service, Writer};
/// use eventide::Action;
///
/// /// Answers PING, and QUIT by closing.
/// struct Ping;
///
/// impl Service for Ping {
///     fn call(&mut self, cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
///         if cmd.is(b"PING") {
///             reply.simple("PONG");
///         } else if cmd.is(b"QUIT") {
///             reply.ok();
///             return Action::Close;
///         } else {
///             reply.error_parts(&[b"ERR unknown command '", cmd.name(), b"'"]);
///         }
///         Action::Continue
///     }
/// }
/// ```
pub trait Service: Send + 'static {
    /// Answers one command (never empty) with exactly one reply. [`Action::Close`] closes the
    /// connection once the reply is flushed; later pipelined commands are dropped.
    fn call(&mut self, cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action;

    /// The loop started (see [`Handler::on_boot`]): a place to set loop timers.
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        let _ = cx;
    }

    /// A loop timer this service set fired.
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        let _ = (cx, token);
    }
}

/// A RESP2 server: the [`Handler`] that runs a [`Service`]. Every complete command in the input
/// is answered in order within one callback (a pipeline of N commands costs one read and one
/// write); an incomplete one stays unconsumed (so the server's read timeout covers it); a
/// malformed frame is answered with `-ERR Protocol error: ...` and the connection closes.
///
/// ```no_run
/// use eventide::resp::{Command, RespServer, Writer};
/// use eventide::{Action, Server};
///
/// let server = Server::builder()
///     .bind("127.0.0.1:6380")
///     .start(|_| {
///         RespServer::new(|cmd: &Command<'_>, reply: &mut Writer<'_>| {
///             match cmd.arg(1) {
///                 Some(msg) if cmd.is(b"ECHO") => reply.bulk(msg),
///                 _ => reply.simple("PONG"),
///             }
///             Action::Continue
///         })
///     })?;
/// server.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RespServer<S> {
    service: S,
    parser: Parser,
    /// Argument positions of the command being parsed, reused.
    args: Args,
    /// Replies of the current batch of commands, handed to the connection in one write.
    out_buf: Vec<u8>,
}

/// The batch of replies is handed to the connection once it holds this much.
const BATCH_FLUSH: usize = 32 * 1024;

/// Per-connection state of a [`RespServer`]: how many bytes the incomplete command at the
/// front of the input needs before parsing it again is worth it.
#[derive(Debug, Default)]
pub struct RespConnState {
    need: usize,
}

impl<F> Service for F
where
    F: FnMut(&Command<'_>, &mut Writer<'_>) -> Action + Send + 'static,
{
    fn call(&mut self, cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
        self(cmd, reply)
    }
}

impl<S: Service> RespServer<S> {
    /// A server running `service` with the default [`Parser`] limits.
    pub fn new(service: S) -> RespServer<S> {
        RespServer {
            service,
            parser: Parser::new(),
            args: Args::new(),
            out_buf: Vec::new(),
        }
    }

    /// Uses `parser` (its limits) instead of the default.
    pub fn parser(mut self, parser: Parser) -> Self {
        self.parser = parser;
        self
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// The service, mutably.
    pub fn service_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// Answers every complete command at the front of `input`, in order. The replies are
    /// gathered and handed to `out` in one piece (a large bulk string separately, uncopied).
    pub(crate) fn serve(
        &mut self,
        st: &mut RespConnState,
        input: &[u8],
        out: &mut dyn Output,
    ) -> Served {
        let mut buf = std::mem::take(&mut self.out_buf);
        let served = self.serve_batch(st, input, &mut buf, out);
        if !buf.is_empty() {
            out.put(&buf);
            buf.clear();
        }
        if buf.capacity() > 1024 * 1024 {
            buf = Vec::new(); // do not hold on to an unusually large batch
        }
        self.out_buf = buf;
        served
    }

    fn serve_batch(
        &mut self,
        st: &mut RespConnState,
        input: &[u8],
        buf: &mut Vec<u8>,
        out: &mut dyn Output,
    ) -> Served {
        let mut then = Then::Serve;
        if input.len() < st.need {
            return Served::serve(0);
        }
        st.need = 0;
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            match self.parser.parse_command(rest, &mut self.args) {
                Ok(Parse::Done(cmd, used)) => {
                    pos += used;
                    if cmd.is_empty() {
                        continue;
                    }
                    let action_now = self.service.call(&cmd, &mut Writer::batched(buf, out));
                    if buf.len() >= BATCH_FLUSH {
                        out.put(buf);
                        buf.clear();
                    }
                    match action_now {
                        Action::Continue => {}
                        Action::Close => return Served::close(input.len()),
                        Action::StopServer => then = Then::StopServer,
                    }
                }
                Ok(Parse::Incomplete(need)) => {
                    st.need = need;
                    break;
                }
                Err(e) => {
                    Writer::batched(buf, out).protocol_error(&e);
                    return Served::close(input.len());
                }
            }
        }
        Served {
            consumed: pos,
            then,
        }
    }
}

impl<S: Service> Protocol for RespServer<S> {
    type State = RespConnState;

    fn serve(&mut self, st: &mut RespConnState, input: &[u8], out: &mut dyn Output) -> Served {
        RespServer::serve(self, st, input, out)
    }

    fn buffer_bound(&self) -> usize {
        self.parser.command_size_limit()
    }

    fn service_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.service.on_boot(cx);
    }

    fn service_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.service.on_tick(cx, token);
    }
}

impl<S: Service> Handler for RespServer<S> {
    type State = RespConnState;
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<RespConnState, Refusal> {
        Ok(RespConnState::default())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, st: &mut RespConnState) -> Action {
        adapter::on_data(self, conn, st)
    }

    fn on_timeout(
        &mut self,
        conn: &mut Conn<'_>,
        st: &mut RespConnState,
        which: Timeout,
    ) -> Action {
        adapter::on_timeout(self, conn, st, which)
    }

    fn on_stop(&mut self, conn: &mut Conn<'_>, st: &mut RespConnState) -> Action {
        adapter::on_stop(self, conn, st)
    }

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        adapter::on_boot(self, cx);
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        adapter::on_tick(self, cx, token);
    }
}

impl<S> fmt::Debug for RespServer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespServer")
            .field("parser", &self.parser)
            .finish_non_exhaustive()
    }
}
