//! `--plan`: what a run would do and about how long it takes, without running it.
//!
//! The estimate adds, per scenario, rounds × servers × (the measured window, the warm-up and
//! what each scenario does around them: starting and stopping servers, opening connections,
//! handshakes), the syscall pass, and for `--callgrind` a rough minute per server. It is meant
//! to within ±25 %, to schedule a quiet machine.

use crate::cli::{Config, Mode};
use crate::conns;
use crate::runner::echo_warmup;
use crate::scenarios::{Kind, Scenario};
use crate::setup::Env;

/// Seconds one server spends in one round of `sc`.
fn per_round(cfg: &Config, sc: &Scenario, idle_conns: usize) -> f64 {
    let (secs, warm) = (cfg.secs, echo_warmup(cfg));
    let start_stop = 1.0;
    match sc.kind {
        Kind::Echo { .. } | Kind::Ws { .. } | Kind::Udp { .. } => secs + warm + start_stop,
        Kind::TlsEcho { idle, .. } => {
            let idle_s = if idle {
                idle_conns as f64 * 300e-6 + 2.0
            } else {
                0.0
            };
            secs + warm + start_stop + idle_s
        }
        Kind::Http { .. } | Kind::Gateway => {
            secs.ceil() + if cfg.quick { 0.0 } else { 1.0 } + start_stop
        }
        Kind::Resp { .. } => 2.0 * secs * 1.1 + start_stop,
        Kind::Idle => idle_conns as f64 * 60e-6 + 2.0,
        Kind::Conns => {
            let n = conns::idle_conns(cfg) as f64;
            n / 10_000.0 + 2.0 * (secs + warm) + 3.0 * start_stop
        }
        Kind::Broadcast { .. } => secs + warm + 2.0 + start_stop,
    }
}

/// Seconds of the syscall pass of `sc`.
fn syscall_pass(cfg: &Config, env: &Env, sc: &Scenario) -> f64 {
    if env.perf_waits.is_none() || matches!(sc.kind, Kind::Idle | Kind::Conns) {
        return 0.0;
    }
    let runs = if matches!(sc.kind, Kind::Resp { .. }) {
        2.0
    } else {
        1.0
    };
    sc.servers.len() as f64 * (runs * (cfg.secs / 2.0).max(1.0) + 3.0)
}

/// Prints the plan of one pass and returns its estimated seconds.
pub fn print(cfg: &Config, env: &Env, list: &[Scenario]) -> f64 {
    let idle_conns = cfg
        .idle_conns
        .unwrap_or(if cfg.quick { 2_000 } else { 9_000 });
    println!(
        "\nplan: {:?} mode, profile {}, {} round(s) of {} s",
        cfg.mode, env.profile, cfg.rounds, cfg.secs
    );
    let mut total = 0.0;
    for sc in list {
        let s = match cfg.mode {
            Mode::Callgrind => match sc.kind {
                Kind::Echo { .. } | Kind::TlsEcho { .. } | Kind::Ws { .. } => {
                    let counted = sc.servers.iter().filter(|s| s.name != "uring-echo");
                    counted.count() as f64 * 60.0
                }
                _ => continue, // not counted in this mode
            },
            _ => {
                let calibrate = if matches!(sc.kind, Kind::Resp { .. }) {
                    sc.servers.len() as f64 * 4.0
                } else {
                    0.0
                };
                cfg.rounds as f64 * sc.servers.len() as f64 * per_round(cfg, sc, idle_conns)
                    + calibrate
                    + syscall_pass(cfg, env, sc)
            }
        };
        total += s;
        let names: Vec<&str> = sc.servers.iter().map(|s| s.name.as_str()).collect();
        println!("  {:<16} ~{:>4.0} s  {}", sc.name, s, names.join(", "));
    }
    println!("  estimated: ~{:.0} min (± 25 %)", total / 60.0);
    total
}
