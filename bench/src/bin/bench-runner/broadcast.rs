//! The broadcast scenarios: one publisher and 1,000 subscribers of a chat server (`fanout-load`),
//! eventide's `chat` demo against `tokio-chat` (tokio + `tokio::sync::broadcast`). `broadcast`
//! speaks WebSocket (text messages, any path), `broadcast-lines` plain TCP lines on the demos'
//! `--lines ADDR`. The figure is server CPU per *delivered* message (one publish reaches 1,000
//! subscribers), and deliveries per second.

use std::io;

use crate::cli::Config;
use crate::load::{self, Sample};
use crate::perf;
use crate::procs::{self, Server, Spawn};
use crate::runner::echo_warmup;
use crate::scenarios::ServerSpec;
use crate::setup::Env;

/// Subscribers, message size (text bytes the publisher sends), messages in flight.
pub const SUBSCRIBERS: usize = 1000;
pub const SIZE: usize = 64;
pub const WINDOW: usize = 32;

/// The tokio peer, as far as it is built.
pub fn peers(env: &Env, lines: bool) -> Vec<ServerSpec> {
    let bin = env.bin("tokio-chat");
    if !bin.is_file() {
        return Vec::new();
    }
    vec![ServerSpec {
        name: "tokio-chat".into(),
        spawn: if lines {
            Spawn::Lines(bin, vec![])
        } else {
            Spawn::Contract(bin)
        },
        example: None,
    }]
}

pub fn load_desc(cfg: &Config, lines: bool) -> String {
    format!(
        "fanout-load --proto {}: {SUBSCRIBERS} subscribers and one publisher of {SIZE}-byte text messages, at most {WINDOW} not yet delivered everywhere; {} s windows after {} s warm-up; req/s and CPU µs/req count deliveries (one publish = {SUBSCRIBERS} deliveries); latency from publish to each delivery",
        if lines { "lines (plain TCP, --lines ADDR)" } else { "ws (WebSocket text, any path)" },
        cfg.secs,
        echo_warmup(cfg)
    )
}

fn command(
    env: &Env,
    server: &Server,
    lines: bool,
    secs: f64,
    warmup: f64,
) -> std::process::Command {
    let mut c = procs::load_command(&env.bin("fanout-load").to_string_lossy());
    c.arg("--addr")
        .arg(server.addr.to_string())
        .args(["--proto", if lines { "lines" } else { "ws" }])
        .args(["--subscribers", &SUBSCRIBERS.to_string()])
        .args(["--size", &SIZE.to_string()])
        .args(["--window", &WINDOW.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .arg("--json");
    c
}

/// A timed run: CPU sampled at fanout-load's marks; requests are deliveries.
pub fn timed(
    env: &Env,
    server: &Server,
    lines: bool,
    secs: f64,
    warmup: f64,
    round: usize,
) -> io::Result<Sample> {
    let cmd = command(env, server, lines, secs, warmup);
    load::marked_run(cmd, "fanout-load", server, secs + warmup + 60.0, round)
}

/// The syscall pass: traced over the measured window only, since the 1,000 subscribers'
/// joins (upgrades and join notices to everyone) would otherwise be counted against a short
/// run's deliveries.
pub fn traced(
    env: &Env,
    server: &Server,
    lines: bool,
    secs: f64,
    waits: &[String],
) -> io::Result<perf::SyscallStats> {
    let warmup = 0.5;
    let cmd = command(env, server, lines, secs, warmup);
    perf::traced_window(
        &server.pids(),
        waits,
        &env.tmp,
        cmd,
        "fanout-load",
        secs + warmup,
    )
}
