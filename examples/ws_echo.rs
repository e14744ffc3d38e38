//! WebSocket echo server, the endpoint Autobahn-style conformance clients expect: on any path,
//! every message comes back as it came — text as text, binary as binary, a fragmented message
//! assembled and echoed whole — and pings, close handshakes and protocol errors are handled by
//! the engine (`eventide::ws`).
//!
//! ```text
//! cargo run --release --features ws --example ws_echo -- --addr 127.0.0.1:9001 --loops 2
//! cargo run --release --features ws-deflate --example ws_echo     # with permessage-deflate
//! python3 -m websockets ws://127.0.0.1:9001/
//! ```
//!
//! Built with `ws-deflate`, it accepts permessage-deflate offers (no context takeover either
//! way, so the compressor and the inflater are per loop, not per connection).
//!
//! Options: `--max-message BYTES` (default 16 MiB, Autobahn's largest case): the largest
//! message and frame accepted, a longer one is refused with close code 1009 as soon as its
//! header arrives; `--idle-ping SECS` (default 30; 0 disables): ping a connection that was
//! quiet for that long and close it when even the pong does not come within another period,
//! and close a connection that never upgrades after three periods; `--edge` for
//! edge-triggered readiness.

mod common;

use std::num::NonZeroUsize;
use std::time::Duration;

use common::Args;
use eventide::ws::{Config, Message, Rejection, Request, Upgrade, WsConn, WsHandler, WsServer};
use eventide::{Server, Trigger};

/// Echoes every message as it came, on any path.
struct Echo;

impl WsHandler for Echo {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>, _: &mut Upgrade<'_>) -> Result<(), Rejection> {
        Ok(())
    }

    fn on_message(&mut self, ws: &mut WsConn<'_, '_>, _: &mut (), msg: Message<'_>) {
        // Fails only once the close handshake has begun: the peer no longer reads messages.
        let _ = ws.send(msg);
    }
}

/// The sessions' limits, and permessage-deflate when the feature is built.
fn session_config(max_message: usize) -> Config {
    let config = Config::new()
        .max_message_size(max_message)
        .max_frame_size(max_message);
    #[cfg(feature = "ws-deflate")]
    let config = config.deflate(eventide::ws::DeflateConfig::new());
    config
}

fn main() {
    let args = Args::parse("127.0.0.1:9001", &["max-message", "idle-ping"], &["edge"]);
    let max_message = args.parsed("max-message", NonZeroUsize::new(16 << 20).unwrap());
    let idle_ping = Duration::from_secs(args.parsed::<u32>("idle-ping", 30).into());
    let signals = common::termination_signals();
    let mut builder = Server::builder()
        .bind(args.addr.as_str())
        .loops(args.loops)
        .trigger(if args.flag("edge") {
            Trigger::Edge
        } else {
            Trigger::Level
        });
    if !idle_ping.is_zero() {
        // An open connection moves bytes at least every two periods (its traffic, or the
        // ping and its pong), so this only cuts connections that never sent an upgrade.
        builder = builder.idle_timeout(idle_ping * 3);
    }
    let config = session_config(max_message.get());
    let server = common::or_exit(
        builder.start(move |_| {
            let ws = WsServer::new(Echo).config(config.clone());
            if idle_ping.is_zero() {
                ws
            } else {
                ws.idle_ping(idle_ping)
            }
        }),
        "starting the WebSocket echo server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
