//! The proxy's handler: each client connection dials the backend and the pair relays bytes
//! both ways through connection handles, with back-pressure and half-close propagation.
//! Shared by `examples/proxy.rs` and `tests/proxy.rs`.

use std::io::ErrorKind;

use eventide::{
    Action, Addr, CloseReason, Conn, ConnHandle, ConnId, Connect, ConnectError, Handler, LoopCx,
    Refusal,
};

/// Relays every client to one backend.
pub struct Relay {
    backend: Addr,
}

impl Relay {
    /// A relay to `backend`.
    pub fn new(backend: Addr) -> Relay {
        Relay { backend }
    }
}

/// One side of a client–backend pair.
pub struct Side {
    /// The other side, once both exist.
    peer: Option<ConnHandle>,
}

/// Sent to the client side when its backend connection is established.
pub struct PeerReady(ConnHandle);

impl Handler for Relay {
    type State = Side;
    type Message = PeerReady;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<Side, Refusal> {
        if conn.is_outbound() {
            // The backend side: tell the client side who its peer is.
            let Some(client) = conn.take_context::<ConnHandle>() else {
                return Err(Refusal::Unsupported); // not a connect this relay made
            };
            if client.send(PeerReady(conn.handle())).is_err() {
                conn.close(); // the client left while we were connecting
            }
            Ok(Side { peer: Some(client) })
        } else {
            // A client: read nothing until the backend is there.
            conn.pause_read();
            let me = conn.handle();
            conn.loop_cx()
                .connect(Connect::new(self.backend.clone()).context(me));
            Ok(Side { peer: None })
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, side: &mut Side, ready: PeerReady) -> Action {
        side.peer = Some(ready.0);
        conn.resume_read();
        Action::Continue
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, side: &mut Side) -> Action {
        let Some(peer) = &side.peer else {
            return Action::Continue;
        };
        let data = conn.input();
        let n = data.len().min(peer.limit() / 2);
        match peer.write(&data[..n]) {
            Ok(()) => conn.consume(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // The other side is slow: stop reading this one until it drains.
                conn.pause_read();
                let me = conn.handle();
                peer.notify_writable(move || {
                    let _ = me.resume_read();
                });
            }
            Err(_) => return Action::Close, // the other side is gone
        }
        Action::Continue
    }

    fn on_read_closed(&mut self, _conn: &mut Conn<'_>, side: &mut Side) -> Action {
        // Pass the FIN on once everything before it is written; keep relaying the other way.
        match &side.peer {
            Some(peer) if peer.shutdown_write().is_ok() => Action::Continue,
            _ => Action::Close,
        }
    }

    fn on_close(&mut self, _id: ConnId, side: Side, _reason: &CloseReason) {
        // Closing flushes first, so whatever this side forwarded still arrives.
        if let Some(peer) = side.peer {
            let _ = peer.close();
        }
    }

    fn on_connect_error(&mut self, _cx: &mut LoopCx<'_>, mut error: ConnectError) {
        log::warn!("proxy: {error}");
        if let Some(client) = error.take_context::<ConnHandle>() {
            let _ = client.close();
        }
    }
}
