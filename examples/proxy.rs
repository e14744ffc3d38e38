//! TCP proxy: every client gets its own connection to the backend, and bytes are relayed
//! both ways with back-pressure (a slow side pauses reading on the other) and half-close
//! propagation (a FIN from one side becomes `shutdown(SHUT_WR)` on the other once everything
//! before it is flushed).
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000 &
//! cargo run --release --example proxy -- --addr 127.0.0.1:7100 --backend 127.0.0.1:7000
//! ```
//!
//! `--backend` also takes `unix:/path`.

mod common;
#[path = "proxy/relay.rs"]
mod relay;

use common::Args;
use eventide::{Addr, Server, ToAddrs};
use relay::Relay;

fn main() {
    let args = Args::parse("127.0.0.1:7100", &["backend"], &[]);
    let backend: Addr = match args.required("backend").to_addrs() {
        Ok(addrs) => addrs[0].clone(),
        Err(e) => args.fail(&format!("--backend: {e}")),
    };
    let signals = common::termination_signals();
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .start(move |_| Relay::new(backend.clone())),
        "starting the proxy",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
