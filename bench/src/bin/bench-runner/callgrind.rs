//! `--callgrind`: user-space instructions per message, counted by `valgrind --tool=callgrind`
//! (exact and deterministic enough to compare on a busy machine, unlike CPU time).
//!
//! For each server of an echo-driven scenario (plain, TLS, WebSocket echo): two runs under
//! callgrind with a fixed amount of work (`echo-load --requests N1`, then `N2`, on fresh
//! servers), each stopped with SIGTERM so callgrind writes its totals; instructions per message
//! are `(I2 − I1) / (M2 − M1)`, so start-up, handshakes and shutdown cancel. Kernel time is
//! not counted: read these next to the suite's `kernel` column.

use std::io;
use std::path::Path;

use crate::cli::Config;
use crate::load::{self, EchoParams};
use crate::procs::{Launch, Server};
use crate::report::{Bench, Column};
use crate::runner::{echo_params, ws_args};
use crate::scenarios::{Kind, Scenario};
use crate::setup::Env;
use crate::tls_echo;

/// The column.
pub const INSTR: &str = "instructions/msg";

/// The load of a scenario in this mode, and the two request counts; None if it has none.
fn work(cfg: &Config, env: &Env, kind: Kind) -> Option<(EchoParams, Vec<String>, [u64; 2])> {
    let scale = |a: u64, b: u64| if cfg.quick { [a / 10, b / 10] } else { [a, b] };
    match kind {
        Kind::Echo { depth: 1 } => Some((echo_params(1), vec![], scale(20_000, 100_000))),
        Kind::Echo { depth } => Some((echo_params(depth), vec![], scale(100_000, 500_000))),
        Kind::TlsEcho { depth, size, .. } => {
            let n = match (depth, size) {
                (1, 512) => scale(10_000, 50_000),
                (1, _) => scale(2_000, 10_000),
                _ => scale(50_000, 250_000),
            };
            Some((tls_echo::params(depth, size), tls_echo::load_args(env), n))
        }
        Kind::Ws { depth: 1 } => Some((echo_params(1), ws_args(), scale(10_000, 50_000))),
        Kind::Ws { depth } => Some((echo_params(depth), ws_args(), scale(50_000, 250_000))),
        _ => None,
    }
}

/// The scenario's instruction counts; None if it is not echo-driven.
pub fn run(cfg: &Config, env: &Env, sc: &Scenario) -> Option<Bench> {
    let (p, extra, n) = work(cfg, env, sc.kind)?;
    let mut b = Bench {
        name: sc.name.to_string(),
        load: format!(
            "user-space instructions per message under callgrind: (I({}) − I({})) / messages, {} connections × {} B at depth {}{}",
            n[1],
            n[0],
            p.conns,
            p.size,
            p.depth,
            if extra.is_empty() { String::new() } else { format!(", echo-load {}", extra[0]) }
        ),
        servers: sc.servers.iter().map(|s| s.name.clone()).collect(),
        eventide: sc.eventide.clone(),
        notes: sc.notes.clone(),
        ..Default::default()
    };
    println!(
        "\n== callgrind {} (servers: {})",
        sc.name,
        b.servers.join(", ")
    );
    for spec in &sc.servers {
        if spec.name == "uring-echo" {
            // Under valgrind a thread waiting in io_uring_enter never sees the SIGTERM that
            // would end the run (measured: the server has to be killed, with no profile).
            b.notes.push(
                "uring-echo is left out: under valgrind it does not stop on SIGTERM while it waits in io_uring_enter, so callgrind writes no profile".into(),
            );
            continue;
        }
        let mut counts = Vec::new();
        for (i, &reqs) in n.iter().enumerate() {
            let out = env
                .tmp
                .join(format!("callgrind-{}-{i}.out", std::process::id()));
            counts.push(counted(env, &spec.spawn, &out, p, reqs, &extra));
            let _ = std::fs::remove_file(&out);
        }
        match (&counts[0], &counts[1]) {
            (Ok((i1, m1)), Ok((i2, m2))) if m2 > m1 => {
                let v = (*i2 as f64 - *i1 as f64) / (*m2 - *m1) as f64;
                println!(
                    "  [{} callgrind] {:<19} {v:.0} instructions/msg",
                    sc.name, spec.name
                );
                b.record_value(
                    &spec.name,
                    Column {
                        name: INSTR,
                        higher_better: false,
                    },
                    v,
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                println!("  [{} callgrind] {} FAILED: {e}", sc.name, spec.name);
                b.notes.push(format!("{} under callgrind: {e}", spec.name));
            }
            _ => b.notes.push(format!(
                "{}: the longer run did no more messages",
                spec.name
            )),
        }
    }
    Some(b)
}

/// One run under callgrind: total instructions and messages.
fn counted(
    env: &Env,
    spawn: &crate::procs::Spawn,
    out: &Path,
    p: EchoParams,
    reqs: u64,
    extra: &[String],
) -> io::Result<(u64, u64)> {
    let launch = Launch {
        cpu: None,
        callgrind: Some(out.to_path_buf()),
    };
    let server = Server::start_with(spawn, &launch)?;
    let msgs = load::echo_requests(&env.bin("echo-load"), &server, p, reqs, extra);
    let stopped = server.stop();
    let msgs = msgs?;
    if let Some(problem) = stopped.problem() {
        return Err(io::Error::other(problem));
    }
    let text = std::fs::read_to_string(out)
        .map_err(|e| io::Error::other(format!("no callgrind output {}: {e}", out.display())))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("callgrind output without totals"))?;
    Ok((total, msgs))
}
