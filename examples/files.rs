//! Static file server: serves the directory `--root DIR` with [`eventide::http::files::Files`].
//!
//! ```text
//! cargo run --release --example files -- --root ./public --addr 127.0.0.1:8080 --loops 2
//! curl -i http://127.0.0.1:8080/index.html
//! curl -r 0-99 -o part http://127.0.0.1:8080/big.iso
//! ```
//!
//! Directories answer with their `index.html`, else 403; `--listing` lists them instead.
//! `--hidden` serves names starting with `.`; `--no-symlinks` refuses every symbolic link (links
//! out of the root are always refused). `--read-timeout SECS` (default 10) and
//! `--idle-timeout SECS` (default 60; 0 disables either) as in the http demo.

mod common;

use std::process::exit;
use std::time::Duration;

use common::Args;
use eventide::http::files::Files;
use eventide::http::HttpServer;
use eventide::Server;

fn main() {
    let args = Args::parse(
        "127.0.0.1:8080",
        &["root", "read-timeout", "idle-timeout"],
        &["listing", "hidden", "no-symlinks"],
    );
    let Some(root) = args.value("root") else {
        eprintln!(
            "--root DIR is required\nusage: --root DIR [--addr HOST:PORT] [--loops N] \
             [--listing] [--hidden] [--no-symlinks] [--read-timeout SECS] [--idle-timeout SECS]"
        );
        exit(2)
    };
    let files = common::or_exit(Files::new(root), &format!("opening --root {root}"))
        .listing(args.flag("listing"))
        .hidden(args.flag("hidden"))
        .follow_symlinks(!args.flag("no-symlinks"));
    let signals = common::termination_signals();
    let mut builder = Server::builder().bind(args.addr.as_str()).loops(args.loops);
    let read_timeout: u64 = args.parsed("read-timeout", 10);
    let idle_timeout: u64 = args.parsed("idle-timeout", 60);
    if read_timeout > 0 {
        builder = builder.read_timeout(Duration::from_secs(read_timeout));
    }
    if idle_timeout > 0 {
        builder = builder.idle_timeout(Duration::from_secs(idle_timeout));
    }
    let server = common::or_exit(
        builder.start(move |_| HttpServer::new(files.clone())),
        "starting the file server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
