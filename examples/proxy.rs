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
use eventide::{Addr, Server};
use relay::Relay;

fn main() {
    let args = Args::parse("127.0.0.1:7100", &["backend"], &[]);
    let backend: Addr = match args.value("backend").map(str::parse) {
        Some(Ok(a)) => a,
        Some(Err(e)) => common::or_exit(Err(e), "--backend"),
        None => common::or_exit(
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "--backend HOST:PORT is required",
            )),
            "starting the proxy",
        ),
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
