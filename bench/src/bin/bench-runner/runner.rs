//! Running a scenario: the timed, interleaved rounds (the first server rotating each round),
//! then the separate syscall pass under `perf`.

use std::io;
use std::path::PathBuf;

use crate::cli::Config;
use crate::load::{self, EchoParams, Sample, UdpParams};
use crate::perf;
use crate::procs::Server;
use crate::report::{self, Bench};
use crate::scenarios::{Kind, Scenario, UDP_SIZE, UDP_SOCKETS};
use crate::setup::Env;
use crate::{broadcast, conns, tls_echo};

pub fn echo_warmup(cfg: &Config) -> f64 {
    if cfg.quick {
        0.3
    } else {
        1.0
    }
}

/// echo-load's arguments for the WebSocket scenarios.
pub fn ws_args() -> Vec<String> {
    vec!["--ws".into()]
}

pub fn echo_params(depth: usize) -> EchoParams {
    EchoParams {
        conns: 50,
        size: 512,
        depth,
    }
}

pub fn udp_params(depth: usize) -> UdpParams {
    UdpParams {
        sockets: UDP_SOCKETS,
        size: UDP_SIZE,
        depth,
    }
}

/// Prints one timed run's figures (or its failure) and records it in `b`.
pub fn record(b: &mut Bench, rounds: usize, server: &str, round: usize, res: io::Result<Sample>) {
    let bench = &b.name;
    match res {
        Ok(s) => {
            println!(
                "  [{bench} {}/{rounds}] {server:<19} {:>10.0} req/s  CPU {:>7} µs/req  busy {:.2}{}{}  p99 {} µs",
                round + 1,
                s.rps,
                report::fmt_num(s.cpu_us_per_req()),
                s.busy(),
                if s.busy() < report::BUSY_FLAG { " (flagged)" } else { "" },
                s.load_busy().map(|l| format!("  load {l:.2}")).unwrap_or_default(),
                s.p99_us.map(report::fmt_num).unwrap_or_else(|| "-".into()),
            );
            b.samples.entry(server.to_string()).or_default().push(s);
        }
        Err(e) => {
            println!(
                "  [{bench} {}/{rounds}] {server:<19} FAILED: {e}",
                round + 1
            );
            b.notes.push(format!("{server} round {}: {e}", round + 1));
        }
    }
}

pub fn stop_and_check(server: Server, name: &str, notes: &mut Vec<String>) {
    if let Some(p) = server.stop().problem() {
        let n = format!("{name}: {p}");
        println!("  warning: {n}");
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
}

/// redis-benchmark `-n` per test, sized from a calibration run so each timed run lasts ≥ secs.
pub fn calibrate_resp(
    cfg: &Config,
    sc: &Scenario,
    pipeline: usize,
    notes: &mut Vec<String>,
) -> [u64; 2] {
    let probe: u64 = match (cfg.quick, pipeline > 1) {
        (true, false) => 20_000,
        (true, true) => 200_000,
        (false, false) => 100_000,
        (false, true) => 1_000_000,
    };
    let mut best = [0f64; 2];
    for spec in &sc.servers {
        let server = match Server::start(&spec.spawn) {
            Ok(s) => s,
            Err(e) => {
                notes.push(format!("{} calibration: {e}", spec.name));
                continue;
            }
        };
        for (i, test) in ["set", "get"].iter().enumerate() {
            match load::redis_bench(&server, test, pipeline, probe, 0) {
                Ok(s) => best[i] = best[i].max(probe as f64 / s.wall_s.max(1e-3)),
                Err(e) => notes.push(format!("{} calibration {test}: {e}", spec.name)),
            }
        }
        stop_and_check(server, &spec.name, notes);
    }
    best.map(|r| {
        let n = if r > 0.0 {
            r * cfg.secs * 1.1
        } else {
            probe as f64
        };
        ((n / 1000.0).ceil() as u64 * 1000).max(10_000)
    })
}

pub fn run_scenario(
    cfg: &Config,
    env: &Env,
    sc: &Scenario,
    idle_conns: usize,
    scripts: &(PathBuf, PathBuf),
) -> Vec<Bench> {
    let names = sc.benches();
    let mut benches: Vec<Bench> = names
        .iter()
        .map(|n| Bench {
            name: n.clone(),
            load: sc.load_desc(cfg, idle_conns, n),
            servers: sc.servers.iter().map(|s| s.name.clone()).collect(),
            eventide: sc.eventide.clone(),
            notes: sc.notes.clone(),
            ..Default::default()
        })
        .collect();
    println!(
        "\n== scenario {} ({} round(s), servers: {})",
        sc.name,
        cfg.rounds,
        benches[0].servers.join(", ")
    );
    let warmup = echo_warmup(cfg);
    let wrk_secs = cfg.secs.ceil().max(1.0) as u64;
    let resp_n = match sc.kind {
        Kind::Resp { pipeline } => {
            let n = calibrate_resp(cfg, sc, pipeline, &mut benches[0].notes);
            println!("  redis-benchmark -n: SET {} GET {}", n[0], n[1]);
            n
        }
        _ => [0, 0],
    };

    for round in 0..cfg.rounds {
        let k = sc.servers.len();
        for i in 0..k {
            let spec = &sc.servers[(i + round) % k];
            let server = match Server::start(&spec.spawn) {
                Ok(s) => s,
                Err(e) => {
                    println!(
                        "  [{} {}/{}] {} FAILED to start: {e}",
                        sc.name,
                        round + 1,
                        cfg.rounds,
                        spec.name
                    );
                    for b in benches.iter_mut() {
                        b.notes
                            .push(format!("{} round {}: {e}", spec.name, round + 1));
                    }
                    continue;
                }
            };
            match sc.kind {
                Kind::Echo { depth } => {
                    let res = load::echo_timed(
                        &env.bin("echo-load"),
                        &server,
                        echo_params(depth),
                        cfg.secs,
                        warmup,
                        round,
                    );
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Udp { depth } => {
                    let res = load::udp_timed(
                        &env.bin("udp-load"),
                        &server,
                        udp_params(depth),
                        cfg.secs,
                        warmup,
                        round,
                    );
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Ws { depth } => {
                    let res = load::echo_timed_with(
                        &env.bin("echo-load"),
                        &server,
                        echo_params(depth),
                        cfg.secs,
                        warmup,
                        round,
                        &ws_args(),
                    );
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Broadcast { lines } => {
                    let res = broadcast::timed(env, &server, lines, cfg.secs, warmup, round);
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Conns => conns::round(cfg, env, spec, server, round, &mut benches),
                Kind::TlsEcho { depth, size, idle } => {
                    let p = tls_echo::params(depth, size);
                    let res = tls_echo::timed(env, &server, p, cfg.secs, warmup, round);
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                    if !idle {
                        continue;
                    }
                    // Idle memory per TLS connection, on a fresh server.
                    match Server::start(&spec.spawn) {
                        Ok(server) => {
                            let (res, stopped) = tls_echo::idle(env, server, idle_conns);
                            record_idle(
                                &mut benches[0],
                                sc.name,
                                round,
                                cfg.rounds,
                                &spec.name,
                                res,
                            );
                            if let Some(p) = stopped.problem() {
                                benches[0].notes.push(format!("{}: {p}", spec.name));
                            }
                        }
                        Err(e) => benches[0].notes.push(format!(
                            "{} idle round {}: {e}",
                            spec.name,
                            round + 1
                        )),
                    }
                }
                Kind::Http { .. } | Kind::Gateway => {
                    let pipeline = match sc.kind {
                        Kind::Http { pipeline } => pipeline,
                        _ => 1,
                    };
                    let script = if pipeline > 1 { &scripts.1 } else { &scripts.0 };
                    if !cfg.quick {
                        // Untimed warm-up: connections, allocator, caches.
                        let _ = load::wrk(&server, script, pipeline, 1, round);
                    }
                    let res = load::wrk(&server, script, pipeline, wrk_secs, round);
                    record(&mut benches[0], cfg.rounds, &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Resp { pipeline } => {
                    for (j, test) in ["set", "get"].iter().enumerate() {
                        let res = load::redis_bench(&server, test, pipeline, resp_n[j], round);
                        record(&mut benches[j], cfg.rounds, &spec.name, round, res);
                    }
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Idle => {
                    let (res, stopped) = load::idle_rss(&env.bin("echo-load"), server, idle_conns);
                    record_idle(&mut benches[0], sc.name, round, cfg.rounds, &spec.name, res);
                    if let Some(p) = stopped.problem() {
                        benches[0].notes.push(format!("{}: {p}", spec.name));
                    }
                }
            }
        }
    }
    benches
}

/// Records (and prints) one idle-memory measurement.
fn record_idle(
    b: &mut Bench,
    scenario: &str,
    round: usize,
    rounds: usize,
    server: &str,
    res: io::Result<f64>,
) {
    match res {
        Ok(v) => {
            println!(
                "  [{scenario} {}/{rounds}] {server:<19} {v:>8.0} B/conn",
                round + 1
            );
            b.idle.entry(server.to_string()).or_default().push(v);
        }
        Err(e) => {
            println!("  [{scenario} {}/{rounds}] {server} FAILED: {e}", round + 1);
            b.notes.push(format!("{server} round {}: {e}", round + 1));
        }
    }
}

/// The perf pass: one shorter traced run per server, after all timed runs.
pub fn syscall_pass(
    cfg: &Config,
    env: &Env,
    sc: &Scenario,
    benches: &mut [Bench],
    scripts: &(PathBuf, PathBuf),
) {
    let Some(waits) = &env.perf_waits else { return };
    if matches!(sc.kind, Kind::Idle | Kind::Conns) {
        return;
    }
    let secs = (cfg.secs / 2.0).max(1.0);
    println!("  syscall pass ({secs} s per server, under perf)");
    for spec in &sc.servers {
        let server = match Server::start(&spec.spawn) {
            Ok(s) => s,
            Err(e) => {
                benches[0]
                    .notes
                    .push(format!("{} syscall pass: {e}", spec.name));
                continue;
            }
        };
        let pids = server.pids();
        let pid = pids.as_str();
        let runs: Vec<(usize, io::Result<perf::SyscallStats>)> = match sc.kind {
            Kind::Echo { depth } => vec![(
                0,
                perf::traced(pid, waits, &env.tmp, || {
                    load::echo_total(&env.bin("echo-load"), &server, echo_params(depth), secs)
                }),
            )],
            Kind::Udp { depth } => vec![(
                0,
                perf::traced(pid, waits, &env.tmp, || {
                    load::udp_total(&env.bin("udp-load"), &server, udp_params(depth), secs)
                }),
            )],
            Kind::TlsEcho { depth, size, .. } => vec![(
                0,
                perf::traced(pid, waits, &env.tmp, || {
                    tls_echo::total(env, &server, tls_echo::params(depth, size), secs)
                }),
            )],
            Kind::Ws { depth } => vec![(
                0,
                perf::traced(pid, waits, &env.tmp, || {
                    load::echo_total_with(
                        &env.bin("echo-load"),
                        &server,
                        echo_params(depth),
                        secs,
                        &ws_args(),
                    )
                }),
            )],
            Kind::Broadcast { lines } => {
                vec![(0, broadcast::traced(env, &server, lines, secs, waits))]
            }
            Kind::Http { .. } | Kind::Gateway => {
                let pipeline = match sc.kind {
                    Kind::Http { pipeline } => pipeline,
                    _ => 1,
                };
                let script = if pipeline > 1 { &scripts.1 } else { &scripts.0 };
                vec![(
                    0,
                    perf::traced(pid, waits, &env.tmp, || {
                        load::wrk(&server, script, pipeline, secs.ceil() as u64, 0)
                            .map(|s| s.requests)
                    }),
                )]
            }
            Kind::Resp { pipeline } => ["set", "get"]
                .iter()
                .enumerate()
                .map(|(j, test)| {
                    // Half the timed size; the requests in flight are what matter, not duration.
                    let n = benches[j]
                        .samples
                        .values()
                        .flatten()
                        .map(|s| s.requests)
                        .max()
                        .unwrap_or(100_000)
                        / 2;
                    let n = n.max(10_000);
                    (
                        j,
                        perf::traced(pid, waits, &env.tmp, || {
                            load::redis_bench(&server, test, pipeline, n, 0).map(|s| s.requests)
                        }),
                    )
                })
                .collect(),
            Kind::Idle | Kind::Conns => vec![],
        };
        for (j, res) in runs {
            match res {
                Ok(st) => {
                    println!(
                        "  [{} syscalls] {:<19} {:.2} syscalls/req, {} epoll waits, {} events/wait, {} vol + {} invol cs/req ({} switches by perf), {} requests",
                        benches[j].name,
                        spec.name,
                        st.per_request(),
                        st.epoll_waits,
                        report::fmt_opt(st.events_per_wait),
                        report::fmt_opt(st.voluntary_per_request()),
                        report::fmt_opt(st.involuntary_per_request()),
                        st.context_switches
                            .map_or_else(|| "-".into(), |c| c.to_string()),
                        st.requests
                    );
                    for n in &st.notes {
                        benches[j].notes.push(format!("{}: {n}", spec.name));
                    }
                    benches[j].syscalls.insert(spec.name.clone(), st);
                }
                Err(e) => {
                    println!("  [{} syscalls] {} FAILED: {e}", benches[j].name, spec.name);
                    benches[j]
                        .notes
                        .push(format!("{} syscall pass: {e}", spec.name));
                }
            }
        }
        stop_and_check(server, &spec.name, &mut benches[0].notes);
    }
}
