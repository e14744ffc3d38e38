//! Echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000 --loops 2 [--reuseport] [--edge]
//! ```

mod common;

use common::Args;
use eventide::{Action, Conn, Handler, Server, Trigger};

/// Writes input back as it arrives; the default `on_read_closed` closes after the last byte
/// is flushed, so a client that half-closes still gets everything back.
struct Echo;

impl Handler for Echo {
    type State = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) {}

    fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
        let data = conn.input();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }
}

fn main() {
    let args = Args::parse("127.0.0.1:7000", &[], &["reuseport", "edge"]);
    let signals = common::termination_signals();
    let trigger = if args.flag("edge") {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .reuse_port(args.flag("reuseport"))
            .trigger(trigger)
            .start(|_| Echo),
        "starting the echo server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
