//! RESP2, the Redis protocol (feature `resp`): a parser, a reply writer, and a server adapter
//! on the public [`Handler`](crate::Handler) API.
//!
//! * [`Parser`] reads commands — arrays of bulk strings, or inline lines such as `PING\r\n`,
//!   split and unquoted as `redis-server` does — and general [`Value`]s (simple strings,
//!   errors, integers, bulk strings, nil, arrays). It borrows from the input instead of
//!   copying (but for quoted inline arguments), and is incremental: on a partial frame it
//!   returns [`Parse::Incomplete`] with a lower bound of the bytes needed and consumes
//!   nothing. Limits on elements per array, bulk size, inline size, command size and nesting
//!   turn hostile input into an [`Error`], never into unbounded memory.
//! * [`Writer`] writes replies into any [`Output`]: a [`Conn`](crate::Conn) (straight into the
//!   connection's output) or a `Vec<u8>`.
//! * [`RespServer`] is the [`Handler`](crate::Handler) that feeds every complete command of a
//!   connection to a [`Service`] and answers malformed frames with
//!   `-ERR Protocol error: ...` before closing.
//!
//! ```no_run
//! use eventide::resp::{Command, RespServer, Writer};
//! use eventide::{Action, Server};
//!
//! fn ping(cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
//!     if cmd.is(b"PING") {
//!         reply.simple("PONG");
//!     } else {
//!         reply.error("ERR only PING here");
//!     }
//!     Action::Continue
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:6380").start(|_| RespServer::new(ping))?;
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! See `examples/redis.rs` for a key-value server that `redis-cli` and `redis-benchmark` work
//! against.

mod parse;
mod server;
#[doc(hidden)]
pub mod testing;
mod write;

pub use parse::{Args, Command, Error, Parse, Parser, Value};
pub use server::{RespConnState, RespServer, Service};
pub use write::{Output, Writer};
