//! HTTP/1.1 server for the TechEmpower plaintext and JSON tests.
//!
//! ```text
//! cargo run --release --features http --example http -- --addr 127.0.0.1:8080 --loops 2
//! curl -i http://127.0.0.1:8080/plaintext
//! wrk -t1 -c64 -d10s http://127.0.0.1:8080/plaintext
//! ```
//!
//! `GET /plaintext` → `Hello, World!` (`text/plain`); `GET /json` → `{"message":"Hello, World!"}`
//! serialised per request with serde_json (`application/json`); anything else → 404. Every
//! response carries `Server: eventide`, `Date`, `Content-Type` and `Content-Length`, the same
//! header set as the benchmark peers (bench/src/bin/hyper-http.rs, tokio-http.rs).
//! `GET /metrics` → the server's counters in the Prometheus text format.
//!
//! Options: `--read-timeout SECS` (default 10; cuts a client whose request never completes),
//! `--idle-timeout SECS` (default 60; 0 disables either), `--reuseport`, `--edge`,
//! `--handover PATH` (restart without refusing a connection: where an instance runs with the
//! same PATH, take its listeners — it then drains and exits 0; where none runs, bind
//! `--addr` and wait at PATH for a successor), `--tls-cert PEM --tls-key PEM` (feature `tls`:
//! serve HTTPS, ALPN `http/1.1`). Started by systemd with sockets (socket activation), it
//! serves those instead of `--addr`.
//!
//! ```text
//! cargo run --release --example http -- --handover /tmp/http.handover &
//! cargo run --release --example http -- --handover /tmp/http.handover   # takes over
//! ```
//!
//!
//! ```text
//! cargo run --release --features tls --example http -- --tls-cert cert.pem --tls-key key.pem
//! curl --cacert cert.pem https://localhost:8080/plaintext
//! ```

mod common;
#[path = "http/metrics.rs"]
mod routes;
#[path = "http/tfb.rs"]
mod tfb;
#[path = "common/tls.rs"]
mod tls_args;

use std::time::Duration;

use common::Args;
use eventide::http::HttpServer;
use eventide::{Handover, Server, Trigger};
use routes::{Routes, StatsSlot};

fn main() {
    let args = Args::parse(
        "127.0.0.1:8080",
        &[
            "read-timeout",
            "idle-timeout",
            "tls-cert",
            "tls-key",
            "handover",
        ],
        &["reuseport", "edge"],
    );
    let tls = tls_args::config(&args, &[b"http/1.1"]);
    let signals = common::termination_signals();
    let mut handover = args
        .value("handover")
        .map(|path| common::or_exit(Handover::new(path), "--handover"));
    let inherited = handover.as_mut().map(Handover::take_listeners);
    let builder = match inherited {
        Some(fds) if !fds.is_empty() => tls_args::adopt(Server::builder(), fds, tls),
        _ => tls_args::bind(Server::builder(), &args.addr, tls),
    };
    let mut builder = builder
        .loops(args.loops)
        .reuse_port(args.flag("reuseport"))
        .trigger(if args.flag("edge") {
            Trigger::Edge
        } else {
            Trigger::Level
        });
    let read_timeout: u64 = args.parsed("read-timeout", 10);
    let idle_timeout: u64 = args.parsed("idle-timeout", 60);
    if read_timeout > 0 {
        builder = builder.read_timeout(Duration::from_secs(read_timeout));
    }
    if idle_timeout > 0 {
        builder = builder.idle_timeout(Duration::from_secs(idle_timeout));
    }
    let stats = StatsSlot::default();
    let server = common::or_exit(
        builder.start(|_| HttpServer::new(Routes::new(stats.clone()))),
        "starting the HTTP server",
    );
    let _ = stats.set(server.stats_handle());
    let addr = server.local_addrs()[0].to_string();
    match handover {
        Some(h) => common::serve_with_handover(server, signals, h, &addr),
        None => common::serve(server, signals, &addr),
    }
}
