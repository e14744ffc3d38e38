//! A small in-memory key-value server that speaks RESP2: `redis-cli` and `redis-benchmark`
//! work against it unmodified.
//!
//! ```text
//! cargo run --release --features resp --example redis -- --addr 127.0.0.1:6380 --loops 2
//! redis-cli -p 6380 set greeting hello
//! redis-benchmark -p 6380 -q -t set,get -c 50 -P 16
//! ```
//!
//! Commands: PING, ECHO, GET, SET (EX / PX / EXAT / PXAT / NX / XX / GET / KEEPTTL),
//! SETEX, PSETEX, GETEX (EX / PX / EXAT / PXAT / PERSIST), DEL, EXISTS, INCR, DECR, INCRBY,
//! DECRBY, MGET, MSET, EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX / XX / GT / LT), TTL, PTTL,
//! PERSIST, DBSIZE, FLUSHALL, SELECT 0, QUIT, and the COMMAND / CONFIG GET replies the tools
//! ask for at start. Expire times are checked as redis-server checks them (a time that
//! overflows is `ERR invalid expire time in '...' command`), and inline commands are split
//! with redis' quoting (`SET a "hello world"`). Anything else is answered
//! `-ERR unknown command ...` and the connection stays open; a malformed frame is answered
//! `-ERR Protocol error: ...` and the connection closes.
//!
//! Options: `--shards N` (default 64) shards of the shared keyspace; `--read-timeout SECS`
//! (default 0: none) cuts a client whose command never completes; `--edge` for edge-triggered
//! readiness.

mod common;
#[path = "redis/expiry.rs"]
mod expiry;
#[path = "redis/kv.rs"]
mod kv;
#[path = "redis/store.rs"]
mod store;

use std::time::Duration;

use common::Args;
use eventide::resp::{Parser, RespServer};
use eventide::{InboundPolicy, Server, Trigger};
use kv::Kv;
use store::Store;

fn main() {
    let args = Args::parse("127.0.0.1:6380", &["shards", "read-timeout"], &["edge"]);
    let signals = common::termination_signals();
    let store = Store::new(args.parsed("shards", 64));
    // Values up to 32 MiB: the parser's command limit and the connection's inbound limit
    // must both allow a SET of that size.
    let parser = Parser::new()
        .max_bulk_size(32 << 20)
        .max_command_size(33 << 20);
    let mut builder = Server::builder()
        .bind(args.addr.as_str())
        .loops(args.loops)
        .trigger(if args.flag("edge") {
            Trigger::Edge
        } else {
            Trigger::Level
        })
        .inbound_limit(34 << 20, InboundPolicy::Close);
    let read_timeout: u64 = args.parsed("read-timeout", 0);
    if read_timeout > 0 {
        builder = builder.read_timeout(Duration::from_secs(read_timeout));
    }
    let server = common::or_exit(
        builder.start(|_| RespServer::new(Kv::new(store.clone())).parser(parser)),
        "starting the redis server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
