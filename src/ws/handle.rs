//! [`WsHandle`]: sending WebSocket messages to a connection from other threads or other
//! connections.

use std::any::Any;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::close::CloseCode;
use crate::{ConnHandle, ConnId};

/// Sends messages to (or closes) one WebSocket connection from anywhere (`Send + Sync`, cheap
/// to clone). Get one with [`WsConn::handle`](super::WsConn::handle).
///
/// The payload is handed to the connection's loop, which frames it with the connection's
/// session: a handle's messages are compressed and masked like the loop's own, keep the
/// order they were sent in, and are dropped (never written after the close frame) once the
/// closing handshake has begun. Bytes in flight are bounded by the connection's handle write
/// limit ([`Builder::handle_write_limit`](crate::Builder::handle_write_limit)): past it a send
/// fails with `WouldBlock`.
#[derive(Clone, Debug)]
pub struct WsHandle {
    conn: ConnHandle,
    /// Payload bytes posted and not yet framed by the loop.
    in_flight: Arc<AtomicUsize>,
}

/// What a handle asks the connection's loop to do.
#[derive(Debug)]
pub(crate) enum Command {
    Message {
        text: bool,
        data: Vec<u8>,
        in_flight: Arc<AtomicUsize>,
    },
    Close {
        code: CloseCode,
        reason: String,
    },
}

impl Command {
    /// The loop took the command: its bytes are no longer in flight.
    pub(crate) fn taken(&self) {
        if let Command::Message {
            data, in_flight, ..
        } = self
        {
            in_flight.fetch_sub(data.len(), Ordering::Relaxed);
        }
    }
}

impl WsHandle {
    pub(crate) fn new(conn: ConnHandle) -> WsHandle {
        WsHandle {
            conn,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.conn.id()
    }

    /// Whether the connection has closed (sends fail with `NotConnected`).
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Sends a text message.
    pub fn text(&self, text: &str) -> io::Result<()> {
        self.post(true, text.as_bytes().to_vec())
    }

    /// Sends a binary message.
    pub fn binary(&self, data: &[u8]) -> io::Result<()> {
        self.post(false, data.to_vec())
    }

    /// Sends a binary message, taking the buffer (no copy on this side).
    pub fn binary_vec(&self, data: Vec<u8>) -> io::Result<()> {
        self.post(false, data)
    }

    /// Starts the closing handshake, after the messages sent before.
    pub fn close(&self, code: CloseCode, reason: &str) -> io::Result<()> {
        if !code.is_valid() || reason.len() > 123 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid close code or a reason over 123 bytes",
            ));
        }
        self.command(Command::Close {
            code,
            reason: reason.into(),
        })
    }

    /// Posts `cmd` to the connection's [`WsServer`](super::WsServer), whose messages are
    /// `Box<dyn Any + Send>` (a handle's commands beside the application's own values).
    fn command(&self, cmd: Command) -> io::Result<()> {
        self.conn.send::<Box<dyn Any + Send>>(Box::new(cmd))
    }

    fn post(&self, text: bool, data: Vec<u8>) -> io::Result<()> {
        let len = data.len();
        let queued = self.in_flight.load(Ordering::Relaxed) + self.conn.queued();
        if len > self.conn.limit() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "message larger than the handle write limit",
            ));
        }
        if queued + len > self.conn.limit() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the connection's handle write limit is reached",
            ));
        }
        self.in_flight.fetch_add(len, Ordering::Relaxed);
        let cmd = Command::Message {
            text,
            data,
            in_flight: Arc::clone(&self.in_flight),
        };
        self.command(cmd).inspect_err(|_| {
            self.in_flight.fetch_sub(len, Ordering::Relaxed);
        })
    }
}
