//! WebSocket (RFC 6455) on the reactor (feature `ws`): a sans-I/O protocol engine, the opening
//! handshake for both sides, optional permessage-deflate (RFC 7692, feature `ws-deflate`), and
//! [`WsServer`], a [`Handler`](crate::Handler) that runs a [`WsHandler`] — one call per
//! message, typed per-connection state.
//!
//! ```no_run
//! use eventide::ws::{Message, Rejection, Request, Upgrade, WsConn, WsHandler, WsServer};
//! use eventide::Server;
//!
//! /// Echoes every message as it came.
//! struct Echo;
//!
//! impl WsHandler for Echo {
//!     type State = ();
//!
//!     fn on_upgrade(
//!         &mut self,
//!         _req: &Request<'_>,
//!         _upgrade: &mut Upgrade<'_>,
//!     ) -> Result<(), Rejection> {
//!         Ok(()) // accept every (valid) upgrade request, on any path
//!     }
//!
//!     fn on_message(&mut self, ws: &mut WsConn<'_, '_>, _state: &mut (), msg: Message<'_>) {
//!         let _ = ws.send(msg); // fails only once the close handshake has begun
//!     }
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:9001")
//!     .start(|_| WsServer::new(Echo))?;
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # The layers
//!
//! * [`Session`] is the protocol state of one connection and does no I/O: shown the bytes
//!   that arrived, it reports [`Event`]s and writes the frames it owes (pongs, close replies)
//!   to an [`Output`] — a [`Conn`](crate::Conn), or a `Vec<u8>` in tests. It is what the
//!   [`WsServer`] adapter runs, and what an `HttpServer` route that upgrades its connection
//!   can run as well.
//! * [`accept`] (server) and [`ClientRequest`] / [`ClientHandshake`] (client) are the opening
//!   handshake, as functions over a parsed request or response.
//! * [`WsServer`] + [`WsHandler`] serve connections: the upgrade request is read with the
//!   `http` module's head parser, then every frame goes through the session.
//! * Or the same handler behind an [`HttpServer`](crate::http::HttpServer) route:
//!   [`HttpServer::websocket`](crate::http::HttpServer::websocket) gives the server the handler
//!   and a [`WsServer`]'s options, a route answers with
//!   [`Response::websocket`](crate::http::Response::websocket), and the connection runs the
//!   same session after the `101` while other routes serve HTTP on the same port. Requests
//!   pipelined before the upgrade are answered first, in order; bytes after it are frames.
//! * [`shared_text`] / [`shared_binary`] frame a message once for a
//!   [`Group`](crate::Group) broadcast: server frames are not masked, so the same bytes
//!   serve every member.
//!
//! # What the engine enforces
//!
//! Every violation fails the connection: the close frame with the code is written, the rest
//! of the input ignored, and the TCP connection closed once it is flushed.
//!
//! * **1002 protocol error**: an unmasked frame from a client (a masked one from a server),
//!   RSV1 without permessage-deflate and RSV2/RSV3 always, a reserved opcode, a fragmented
//!   control frame or one over 125 bytes, a continuation without a message or a new message
//!   inside a fragmented one, a payload length not in its shortest encoding or with the top
//!   bit set, a close frame with a one-byte body or an invalid code (see
//!   [`CloseCode::is_valid`]).
//! * **1007 invalid data**: text that is not UTF-8 — checked incrementally as frames and
//!   partial frames arrive, failing at the first impossible byte, not at the end of the
//!   message — or a close reason that is not.
//! * **1009 too big**: a frame longer than [`Config::max_frame_size`] or a message longer
//!   than [`Config::max_message_size`], refused on the header that announces it, before its
//!   payload arrives; a compressed message that inflates past the limit.
//!
//! Pings are answered with pongs, and a close frame with the echo of its code, before the
//! application is told. [`Session::check_idle`] pings a connection that went quiet and
//! reports it gone when even the pong does not come.
//!
//! # Copies
//!
//! [`Conn::input`](crate::Conn::input) cannot be written to, and a client's payload is
//! masked, so one copy is unavoidable: a frame that holds a whole message is unmasked into a
//! per-loop [`Scratch`] buffer (one pass: the XOR, at vector width, writes the unmasked
//! bytes) and handed to the handler from there; nothing per connection is allocated. A message in several frames, or cut by
//! a read, is unmasked straight into a buffer of its own as its bytes arrive, and that buffer
//! is freed once the message is delivered. Unmasked frames (what a client receives) are
//! handed over from the input itself.

mod client;
mod close;
#[cfg(feature = "ws-deflate")]
mod deflate;
mod frame;
mod handle;
mod handler;
mod handshake;
mod recv;
mod runner;
mod server;
mod session;
mod shared;
mod upgrade;
mod utf8;

pub use crate::http::Request;
pub use client::{ClientHandshake, ClientRequest, HandshakeError, Handshaken};
pub use close::{CloseCode, CloseFrame};
#[cfg(feature = "ws-deflate")]
pub use deflate::{DeflateConfig, DeflateParams};
pub use frame::MAX_CONTROL_PAYLOAD;
pub use handle::WsHandle;
pub use handler::{WsConn, WsHandler, CLOSE_TIMEOUT_TOKEN, IDLE_PING_TOKEN};
pub use handshake::{accept, accept_key, is_upgrade_request, Accepted, Rejection, Upgrade};
pub use server::{WsConnState, WsServer};
pub use session::{
    Event, Flow, Fragment, Liveness, Message, ProtocolError, Scratch, Sender, Session,
};
pub use shared::{shared_binary, shared_text};

/// Which end of the connection a [`Session`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that accepted the connection: expects masked frames, sends unmasked ones.
    Server,
    /// The side that opened it: expects unmasked frames, masks what it sends.
    Client,
}

/// Limits and delivery options of a [`Session`].
///
/// ```
/// use eventide::ws::Config;
///
/// let config = Config::new()
///     .max_message_size(4 << 20)
///     .max_frame_size(1 << 20);
/// assert_eq!(config.get_max_message_size(), 4 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) max_frame: usize,
    pub(crate) max_message: usize,
    pub(crate) streaming: bool,
    #[cfg(feature = "ws-deflate")]
    pub(crate) deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_frame: 1 << 20,
            max_message: 1 << 20,
            streaming: false,
            #[cfg(feature = "ws-deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// 1 MiB frames and messages, whole messages delivered, no compression.
    pub fn new() -> Config {
        Config::default()
    }

    /// The largest frame payload accepted (default 1 MiB); a longer one fails the connection
    /// with 1009 as soon as its header arrives.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// The largest message accepted, all its frames together (default 1 MiB; for a
    /// compressed message, both before and after inflating); a longer one fails the
    /// connection with 1009 as soon as a header announces it.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// The message size limit.
    pub fn get_max_message_size(&self) -> usize {
        self.max_message
    }

    /// Deliver messages in pieces as their bytes arrive ([`Event::Fragment`]) instead of
    /// assembled (default off). Nothing is buffered per connection then (but compressed
    /// messages, which are inflated whole), and [`max_message_size`](Config::max_message_size)
    /// still bounds each message.
    pub fn streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// Offer or accept permessage-deflate with these preferences (feature `ws-deflate`;
    /// default off).
    #[cfg(feature = "ws-deflate")]
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = Some(deflate);
        self
    }
}

/// Where a [`Session`] writes frames: a connection's output, or a `Vec<u8>` — the output every
/// protocol adapter writes to, so a session can run inside an HTTP connection after an upgrade.
pub use crate::adapter::Output;

#[cfg(test)]
mod tests;
