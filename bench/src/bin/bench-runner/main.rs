//! `bench-runner` — builds everything and runs eventide against its peers, side by side.
//!
//! For each scenario every server runs in turn, interleaved, the first one rotating each round
//! (≥ 5 rounds of ≥ 3 s by default). The server is pinned to CPU 0 (`taskset -c 0`, started with
//! `--addr 127.0.0.1:0 --loops 1`), the load tool to CPU 1. Per run it records the server's CPU
//! seconds around the measured window (utime + stime from `/proc/PID/stat`), the wall time, the
//! busy fraction (flagged under 0.95: then the load tool set the pace), the requests completed,
//! so CPU µs per request, throughput and latency. A separate, shorter pass under `perf` counts
//! syscalls per request and events per `epoll_wait`; it never overlaps the timed runs because
//! tracing slows every syscall.
//!
//! Scenarios: `echo-d1`, `echo-d16` (echo-load, 50 conns × 512 B, depth 1/16: eventide's echo
//! example vs `tokio-echo` vs `mio-echo`), `http-plain`, `http-pipe16` (wrk -t1 -c64 on
//! `/plaintext`, pipelining 16 with TechEmpower's pipeline.lua: eventide's http example vs
//! `hyper-http` vs `tokio-http`), `resp-p1`, `resp-p16` (redis-benchmark SET and GET as separate
//! runs, -c 50 -P 1/16: eventide's redis example vs `redis-server`), `idle-mem` (RSS growth per
//! idle connection over 9,000 connections: the echo servers), `udp-echo` (udp-load, 50 sockets ×
//! 512 B datagrams, 16 in flight each: eventide's echo `--udp --udp-batch 32` vs `--udp-batch 1`,
//! skipped with the reason while the example does not take those options).
//!
//! Output: a table of medians and eventide/peer ratios, PASS/MISS against the targets, and
//! `BENCHMARKS.md` plus an SVG chart (`docs/bench.svg`). `--quick` (1 round of ~1 s, no verdicts,
//! outputs in a temp dir) keeps the suite from rotting in CI.

mod chart;
mod cli;
mod host;
mod load;
mod perf;
mod procs;
mod report;
mod runner;
mod scenarios;
mod setup;
mod tls_echo;

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use eventide_bench::{date, sys};

use cli::{parse_config, Config, USAGE};
use host::{command_line, commit, machine, machine_busy, relative_to, QUIET_LIMIT};
use runner::{run_scenario, syscall_pass};
use scenarios::scenarios;
use setup::setup;

fn main() {
    let cfg = match parse_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench-runner: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&cfg) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench-runner: {e}");
            std::process::exit(1);
        }
    }
}

fn run(cfg: &Config) -> io::Result<()> {
    match sys::raise_nofile_limit(20_000) {
        Ok(n) if n < 2 * 9_000 + 100 => println!("note: open-file limit is {n}; idle-mem may fail"),
        Ok(_) => {}
        Err(e) => println!("note: could not raise the open-file limit: {e}"),
    }
    let env = setup(cfg)?;
    let busy_before = machine_busy(std::time::Duration::from_secs(1));
    let idle_conns = cfg
        .idle_conns
        .unwrap_or(if cfg.quick { 2_000 } else { 9_000 });
    let scripts = load::write_wrk_scripts(&env.tmp)?;
    let list = scenarios(cfg, &env);
    if list.is_empty() {
        println!("nothing to run");
    }
    let mut benches = Vec::new();
    for sc in &list {
        let mut b = run_scenario(cfg, &env, sc, idle_conns, &scripts);
        syscall_pass(cfg, &env, sc, &mut b, &scripts);
        benches.extend(b);
    }

    print!("{}", report::text_table(&benches));
    let verdicts = (!cfg.quick).then(|| report::verdicts(&benches));
    if let Some(v) = &verdicts {
        print!("{}", report::text_verdicts(v));
    }

    // Outputs: defaults in the workspace; in --quick mode a temp dir unless paths were given.
    let (md, svg) = if cfg.quick {
        (
            cfg.out_md
                .clone()
                .unwrap_or_else(|| env.tmp.join("BENCHMARKS.md")),
            cfg.out_svg
                .clone()
                .unwrap_or_else(|| env.tmp.join("bench.svg")),
        )
    } else {
        (
            cfg.out_md
                .clone()
                .unwrap_or_else(|| env.root.join("BENCHMARKS.md")),
            cfg.out_svg
                .clone()
                .unwrap_or_else(|| env.root.join("docs").join("bench.svg")),
        )
    };
    let mut notes = env.notes.clone();
    let busy_after = machine_busy(std::time::Duration::from_secs(1));
    for (when, busy) in [("before", busy_before), ("after", busy_after)] {
        if let Some(b) = busy.filter(|b| *b > QUIET_LIMIT) {
            let n = format!(
                "the machine was not quiet: {:.0} % of its CPU time was busy in the second {when} the runs, with no server or load running; other processes competed for the cores, so these figures are unreliable",
                b * 100.0
            );
            println!("warning: {n}");
            notes.push(n);
        }
    }
    if env.perf_waits.is_some() {
        notes.push(
            "events/wait is the mean return value of epoll_wait/epoll_pwait/epoll_pwait2 recorded with `perf record` during the syscall pass".into(),
        );
    }
    let title = "Server CPU time per request, one core (bar labels: ratio · µs/req)";
    let chart = if let Some(dir) = svg.parent() {
        std::fs::create_dir_all(dir)?;
        match chart::write_svg(&svg, &benches, title) {
            Ok(()) => {
                println!("\nchart: {}", svg.display());
                Some(relative_to(&svg, md.parent().unwrap_or(Path::new("."))))
            }
            Err(e) => {
                println!("\nchart not written: {e}");
                None
            }
        }
    } else {
        None
    };
    let cx = report::Context {
        command: command_line(cfg),
        date: String::from_utf8_lossy(&date::format_imf_fixdate(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ))
        .into_owned(),
        machine: machine(),
        commit: commit(&env.root),
        rounds: cfg.rounds,
        secs: cfg.secs,
        chart,
        notes,
        // The hand-written reading of the verdicts, kept next to the runner and included
        // only with verdicts (it discusses the full run's figures).
        analysis: verdicts
            .as_ref()
            .and_then(|_| std::fs::read_to_string(env.root.join("bench/ANALYSIS.md")).ok()),
        verdicts,
    };
    if let Some(dir) = md.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&md, report::markdown(&benches, &cx))?;
    println!("report: {}", md.display());
    // Perf scratch files are removed as they are read; keep the temp dir only if it holds reports.
    if !md.starts_with(&env.tmp) && !svg.starts_with(&env.tmp) {
        let _ = std::fs::remove_dir_all(&env.tmp);
    }
    Ok(())
}
