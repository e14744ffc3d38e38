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
//! `--tls-cert PEM --tls-key PEM` (feature `tls`: serve HTTPS, ALPN `http/1.1`):
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
use eventide::{Server, Trigger};
use routes::{Routes, StatsSlot};

fn main() {
    let args = Args::parse(
        "127.0.0.1:8080",
        &["read-timeout", "idle-timeout", "tls-cert", "tls-key"],
        &["reuseport", "edge"],
    );
    let tls = tls_args::config(&args, &[b"http/1.1"]);
    let signals = common::termination_signals();
    let mut builder = tls_args::bind(Server::builder(), &args.addr, tls)
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
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
