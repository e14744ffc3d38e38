//! # eventide
//!
//! An epoll event-loop networking framework: the reactor pattern of muduo, gnet and netpoll,
//! in Rust, with callbacks instead of futures.
//!
//! A [`Server`] binds one or more listeners and runs N event loops, one thread each. A loop
//! waits in `epoll_wait`, accepts connections (or receives them from the acceptor loop), reads
//! into one shared buffer, and calls your [`Handler`] for each event on each connection:
//! opened, data readable, output drained, peer closed its write side, closed. Other threads
//! reach a loop through its task queue and its wake-up [`EventFd`].
//!
//! ```no_run
//! use eventide::{Action, Conn, Handler, Refusal, Server};
//!
//! /// Echoes every byte back.
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type State = ();
//!     type Message = ();
//!
//!     fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
//!         Ok(())
//!     }
//!
//!     fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
//!         let data = conn.input();
//!         conn.write(data);
//!         conn.consume(data.len());
//!         Action::Continue
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1:0").loops(2).start(|_| Echo)?;
//! println!("listening on {}", server.local_addr());
//! server.run_until_signal()?; // Ctrl-C or SIGTERM: graceful stop, returns after the drain
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! See `ARCHITECTURE.md` for the layers and the life of a connection and of an event.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]

mod acceptor;
#[cfg(any(feature = "http", feature = "resp"))]
mod adapter;
mod addr;
#[cfg(feature = "tokio")]
mod bridge;
mod budget;
mod buffer;
mod builder;
pub mod codec;
mod config;
mod conn;
mod connector;
mod cx;
mod event_loop;
mod fanout;
mod group;
mod handle;
mod handler;
mod handover;
mod inbox;
mod listener;
#[cfg(all(eventide_loom, test))]
mod loom_models;
mod mailbox;
mod metrics;
mod server;
mod shared;
mod shutdown;
mod stats;
pub mod sys;
mod timer;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(not(feature = "tls"))]
mod tls;
mod token;
mod udp;
mod worker;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "resp")]
#[cfg_attr(docsrs, doc(cfg(feature = "resp")))]
pub mod resp;
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub mod ws;

pub use addr::{Addr, ToAddrs};
pub use builder::Builder;
pub use config::{Balance, InboundPolicy, Trigger};
pub use conn::{CloseReason, Conn, ConnId, Refusal};
pub use connector::{Connect, ConnectError};
pub use cx::LoopCx;
pub use fanout::SlowConsumer;
pub use group::{Group, GroupStats};
pub use handle::{ConnHandle, LoopHandle};
pub use handler::{Action, Handler, Timeout};
pub use handover::Handover;
pub use listener::{ListenFd, StdListener};
pub use metrics::{StatsHandle, PROMETHEUS_CONTENT_TYPE};
pub use server::{Server, StopHandle};
pub use shutdown::ShutdownSignals;
pub use stats::{CloseCounts, LoopStatsSnapshot, RefusalCounts, Stats};
pub use sys::eventfd::{EventFd, EventFdFlags};
#[cfg(feature = "faults")]
pub use sys::faults::{FaultConfig, FaultCounts, FaultKind};
pub use timer::TimerId;
pub use udp::{Datagram, Udp};
