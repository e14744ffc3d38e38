//! The `conns` scenario: many connections in one server process (19,000 by default, under
//! this machine's hard limit of 20,000 descriptors), eventide's echo against both tokio echo
//! servers and the mio loop.
//!
//! Each round, per server: open the connections with `conns-load` (from several source
//! addresses in 127.0.0.0/8, up to 256 in progress; each is open once it echoed 16 bytes) and
//! time it, sampling the server's CPU around the opening; read the server's RSS and the
//! kernel's memory (`/proc/meminfo` Slab, `/proc/net/sockstat`) before and after; run an
//! active set of 500 connections at depth 1 beside the idle ones; stop the server with all of
//! them open and time the graceful stop. Then, on a fresh server, the same active set alone.
//!
//! Three tables: `conns` (opening, memory, stop, and the active set's p99 with the idle ones
//! over its p99 alone), `conns-active` (the active set alone) and `conns-active-idle` (beside
//! the idle ones).

use std::io;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cli::Config;
use crate::load::{self, EchoParams};
use crate::procs::{self, tail, LineReader, Server};
use crate::report::{Bench, Column};
use crate::runner::{echo_warmup, record, stop_and_check};
use crate::scenarios::ServerSpec;
use crate::setup::Env;

/// Connections of the active set.
pub const ACTIVE: usize = 500;

pub const OPEN_S: &str = "open s";
pub const OPENS_PER_S: &str = "opens/s";
pub const OPEN_BUSY: &str = "open busy";
pub const ACCEPTS_PER_CPU_S: &str = "opens/CPU s";
pub const RSS: &str = "B/conn RSS";
pub const SLAB: &str = "kernel B/conn";
pub const SOCK_MEM: &str = "TCP buf B/conn";
pub const STOP_MS: &str = "stop ms";
pub const P99_RATIO: &str = "p99 idle/alone";

fn col(name: &'static str, higher_better: bool) -> Column {
    Column {
        name,
        higher_better,
    }
}

/// The scenario's tables.
pub fn benches() -> Vec<String> {
    vec![
        "conns".into(),
        "conns-active".into(),
        "conns-active-idle".into(),
    ]
}

/// The idle connections held (`--scale-conns`).
pub fn idle_conns(cfg: &Config) -> usize {
    cfg.scale_conns
        .unwrap_or(if cfg.quick { 2_000 } else { 19_000 })
}

pub fn load_desc(cfg: &Config, bench: &str) -> String {
    let n = idle_conns(cfg);
    let active = format!(
        "echo-load: {ACTIVE} connections × 512 B, depth 1, {} s windows after {} s warm-up",
        cfg.secs,
        echo_warmup(cfg)
    );
    match bench {
        "conns-active" => format!("{active}, alone on a fresh server"),
        "conns-active-idle" => format!("{active}, beside {n} idle connections"),
        _ => format!(
            "conns-load: {n} connections opened (connect, accept, one 16-byte round trip each; 4 source addresses, 256 in progress); \
open s and opens/s: wall time of the opening; opens/CPU s: connections per second of the server's CPU during it (what one loop can accept when it is the bottleneck); \
B/conn RSS: server VmRSS growth per connection; kernel B/conn: growth of /proc/meminfo Slab per connection (both ends of the loopback connection, and anything else the machine allocated meanwhile); \
TCP buf B/conn: growth of the TCP buffer memory of /proc/net/sockstat (`TCP: mem`, pages) per connection; \
stop ms: SIGTERM to exit with all {n} (and no active) connections open; p99 idle/alone: the active set's p99 beside the idle connections over its p99 alone"
        ),
    }
}

/// One round of one server: `server` was just started.
pub fn round(
    cfg: &Config,
    env: &Env,
    spec: &ServerSpec,
    server: Server,
    round: usize,
    benches: &mut [Bench],
) {
    let n = idle_conns(cfg);
    let name = &spec.name;
    match with_idle(cfg, env, server, n, round) {
        Ok((figures, active_idle)) => {
            println!(
                "  [conns {}/{}] {name:<19} opened {n} in {:.2} s ({:.0}/s, {:.0}/CPU s), {:.0} B/conn RSS, {:.0} B/conn kernel, stop {:.0} ms",
                round + 1,
                cfg.rounds,
                figures.open_s,
                n as f64 / figures.open_s,
                figures.opens_per_cpu_s,
                figures.rss,
                figures.slab,
                figures.stop_ms.unwrap_or(f64::NAN)
            );
            let b = &mut benches[0];
            b.record_value(name, col(OPEN_S, false), figures.open_s);
            b.record_value(name, col(OPENS_PER_S, true), n as f64 / figures.open_s);
            b.record_value(name, col(OPEN_BUSY, true), figures.busy);
            b.record_value(name, col(ACCEPTS_PER_CPU_S, true), figures.opens_per_cpu_s);
            b.record_value(name, col(RSS, false), figures.rss);
            b.record_value(name, col(SLAB, false), figures.slab);
            b.record_value(name, col(SOCK_MEM, false), figures.sock);
            if let Some(ms) = figures.stop_ms {
                b.record_value(name, col(STOP_MS, false), ms);
            }
            if let Some(p) = figures.stop_problem {
                b.notes.push(format!("{name} round {}: {p}", round + 1));
            }
            let with = active_idle.as_ref().ok().and_then(|s| s.p99_us);
            record(&mut benches[2], cfg.rounds, name, round, active_idle);
            let alone = alone(cfg, env, spec, round);
            let without = alone.as_ref().ok().and_then(|s| s.p99_us);
            record(&mut benches[1], cfg.rounds, name, round, alone);
            if let (Some(w), Some(a)) = (with, without) {
                benches[0].record_value(name, col(P99_RATIO, false), w / a);
            }
        }
        Err(e) => {
            println!("  [conns {}/{}] {name} FAILED: {e}", round + 1, cfg.rounds);
            benches[0]
                .notes
                .push(format!("{name} round {}: {e}", round + 1));
        }
    }
}

struct Figures {
    open_s: f64,
    busy: f64,
    opens_per_cpu_s: f64,
    rss: f64,
    slab: f64,
    sock: f64,
    stop_ms: Option<f64>,
    stop_problem: Option<String>,
}

/// Opens `n` connections, measures, runs the active set beside them, stops the server.
fn with_idle(
    cfg: &Config,
    env: &Env,
    mut server: Server,
    n: usize,
    round: usize,
) -> io::Result<(Figures, io::Result<load::Sample>)> {
    std::thread::sleep(Duration::from_millis(200));
    let (rss0, slab0, sock0) = (server.rss_bytes()?, slab_bytes()?, tcp_mem_bytes()?);
    let mut cmd = procs::load_command(&env.bin("conns-load").to_string_lossy());
    cmd.arg("--addr")
        .arg(server.addr.to_string())
        .args(["--conns", &n.to_string(), "--marks"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = cmd.spawn()?;
    let lines = LineReader::new(client.stdout.take().expect("piped"));
    let err = procs::spawn_collect(client.stderr.take().expect("piped"));
    let res = (|| -> io::Result<(Figures, io::Result<load::Sample>)> {
        let (mut start, mut end, mut open_s) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let line = lines
                .next(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| io::Error::other("conns-load ended before `ready`"))?;
            match line.trim() {
                "MARK start" => start = Some((server.cpu_time()?, Instant::now())),
                "MARK end" => end = Some((server.cpu_time()?, Instant::now())),
                "ready" => break,
                l if l.starts_with('{') => {
                    let v: serde_json::Value = serde_json::from_str(l)
                        .map_err(|e| io::Error::other(format!("conns-load report {l:?}: {e}")))?;
                    open_s = v.get("open_secs").and_then(|x| x.as_f64());
                }
                _ => {}
            }
        }
        let (Some((c0, t0)), Some((c1, t1)), Some(open_s)) = (start, end, open_s) else {
            return Err(io::Error::other("conns-load gave no marks or report"));
        };
        let cpu = (c1 - c0).total();
        std::thread::sleep(Duration::from_millis(500)); // let the last echoes settle
        if !server.alive() {
            return Err(io::Error::other("server died holding the connections"));
        }
        let (rss1, slab1, sock1) = (server.rss_bytes()?, slab_bytes()?, tcp_mem_bytes()?);
        let active = load::echo_timed(
            &env.bin("echo-load"),
            &server,
            active_params(),
            cfg.secs,
            echo_warmup(cfg),
            round,
        );
        let (stopped, took) = server.stop_timed();
        Ok((
            Figures {
                open_s,
                busy: cpu / t1.duration_since(t0).as_secs_f64().max(1e-9),
                opens_per_cpu_s: n as f64 / cpu.max(1e-9),
                rss: (rss1 as f64 - rss0 as f64) / n as f64,
                slab: (slab1 as f64 - slab0 as f64) / n as f64,
                sock: (sock1 as f64 - sock0 as f64) / n as f64,
                stop_ms: took.map(|d| d.as_secs_f64() * 1e3),
                stop_problem: stopped.problem(),
            },
            active,
        ))
    })();
    drop(client.stdin.take()); // EOF: conns-load exits
    if procs::wait_timeout(&mut client, Duration::from_secs(30)).is_none() {
        let _ = client.kill();
        let _ = client.wait();
    }
    res.map_err(|e| {
        let err = err.join().unwrap_or_default();
        io::Error::other(format!("{e}{}", tail(&err)))
    })
}

fn active_params() -> EchoParams {
    EchoParams {
        conns: ACTIVE,
        size: 512,
        depth: 1,
    }
}

/// The active set alone, on a fresh server.
fn alone(cfg: &Config, env: &Env, spec: &ServerSpec, round: usize) -> io::Result<load::Sample> {
    let server = Server::start(&spec.spawn)?;
    let res = load::echo_timed(
        &env.bin("echo-load"),
        &server,
        active_params(),
        cfg.secs,
        echo_warmup(cfg),
        round,
    );
    let mut notes = Vec::new();
    stop_and_check(server, &spec.name, &mut notes);
    res
}

/// The kernel's slab memory (`/proc/meminfo` Slab), bytes.
fn slab_bytes() -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/meminfo")?;
    s.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no Slab in /proc/meminfo"))
}

/// The TCP sockets' buffer memory (`/proc/net/sockstat`, `TCP: ... mem PAGES`), bytes.
fn tcp_mem_bytes() -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat")?;
    let page = eventide_bench::sys::page_size();
    s.lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.windows(2)
                .find(|w| w[0] == "mem")
                .and_then(|w| w[1].parse::<u64>().ok())
        })
        .map(|pages| pages * page)
        .ok_or_else(|| io::Error::other("no TCP mem in /proc/net/sockstat"))
}
