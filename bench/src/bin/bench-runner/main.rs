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
//! idle connection over 9,000 connections: the echo servers).
//!
//! Output: a table of medians and eventide/peer ratios, PASS/MISS against the targets, and
//! `BENCHMARKS.md` plus an SVG chart (`docs/bench.svg`). `--quick` (1 round of ~1 s, no verdicts,
//! outputs in a temp dir) keeps the suite from rotting in CI.

mod chart;
mod load;
mod procs;
mod report;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use eventide_bench::{date, sys};
use load::{EchoParams, Sample};
use procs::{Server, Spawn};
use report::Bench;

const USAGE: &str = "\
usage: bench-runner [options]
  --rounds N         interleaved rounds per scenario (default 5)
  --secs S           seconds per timed run (default 3)
  --quick            1 round of ~1 s, no verdicts, reports written to a temp dir (CI)
  --only LIST        comma-separated scenarios: echo-d1,echo-d16,http-plain,http-pipe16,
                     resp-p1,resp-p16,idle-mem (repeatable)
  --out-md PATH      markdown report (default <workspace>/BENCHMARKS.md)
  --out-svg PATH     chart (default <workspace>/docs/bench.svg)
  --idle-conns N     connections for idle-mem (default 9000; 2000 with --quick)
  --no-build         use the binaries already built
  --no-syscalls      skip the perf syscall pass
  --peers-anyway     run a scenario's peers even when its eventide example is missing
  --root PATH        workspace root (default: the parent of the bench crate)";

const SCENARIOS: &[&str] = &[
    "echo-d1",
    "echo-d16",
    "http-plain",
    "http-pipe16",
    "resp-p1",
    "resp-p16",
    "idle-mem",
];

const EVENTIDE: &str = "eventide";

#[derive(Debug, Clone)]
struct Config {
    rounds: usize,
    secs: f64,
    quick: bool,
    only: Option<Vec<String>>,
    out_md: Option<PathBuf>,
    out_svg: Option<PathBuf>,
    idle_conns: Option<usize>,
    build: bool,
    syscalls: bool,
    peers_anyway: bool,
    root: Option<PathBuf>,
    args: Vec<String>,
}

fn parse_config() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Config {
        rounds: 5,
        secs: 3.0,
        quick: false,
        only: None,
        out_md: None,
        out_svg: None,
        idle_conns: None,
        build: true,
        syscalls: true,
        peers_anyway: false,
        root: None,
        args: args.clone(),
    };
    let (mut rounds, mut secs) = (None, None);
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut val = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{key} needs a value"))
        };
        match key.as_str() {
            "--rounds" => {
                rounds = Some(
                    val()?
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or("bad --rounds")?,
                )
            }
            "--secs" => {
                secs = Some(
                    val()?
                        .parse::<f64>()
                        .ok()
                        .filter(|&s| s >= 0.5)
                        .ok_or("bad --secs (>= 0.5)")?,
                )
            }
            "--quick" => c.quick = true,
            "--only" => {
                let list = val()?;
                for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !SCENARIOS.contains(&s) {
                        return Err(format!(
                            "unknown scenario {s:?}; known: {}",
                            SCENARIOS.join(", ")
                        ));
                    }
                    c.only.get_or_insert_with(Vec::new).push(s.to_string());
                }
            }
            "--out-md" => c.out_md = Some(val()?.into()),
            "--out-svg" => c.out_svg = Some(val()?.into()),
            "--idle-conns" => {
                c.idle_conns = Some(
                    val()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or("bad --idle-conns")?,
                )
            }
            "--no-build" => c.build = false,
            "--no-syscalls" => c.syscalls = false,
            "--peers-anyway" => c.peers_anyway = true,
            "--root" => c.root = Some(val()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    if c.quick {
        c.rounds = rounds.unwrap_or(1);
        c.secs = secs.unwrap_or(1.0);
    } else {
        c.rounds = rounds.unwrap_or(5);
        c.secs = secs.unwrap_or(3.0);
    }
    Ok(c)
}

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

// ---------------------------------------------------------------------------------------------
// Environment: workspace, binaries, tools

struct Env {
    root: PathBuf,
    release: PathBuf,
    tmp: PathBuf,
    /// eventide example name → binary, or why it is unavailable.
    examples: BTreeMap<&'static str, Result<PathBuf, String>>,
    wrk: bool,
    redis_benchmark: bool,
    redis_server: bool,
    perf_waits: Option<Vec<String>>,
    notes: Vec<String>,
}

impl Env {
    fn bin(&self, name: &str) -> PathBuf {
        self.release.join(name)
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn setup(cfg: &Config) -> io::Result<Env> {
    let root = match &cfg.root {
        Some(r) => r.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    if !procs::on_path("taskset") {
        return Err(io::Error::other(
            "taskset not found (util-linux); it pins server and load",
        ));
    }
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "cargo metadata failed in {}",
            root.display()
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| io::Error::other(format!("cargo metadata: {e}")))?;
    let target = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| io::Error::other("cargo metadata: no target_directory"))?;
    let release = target.join("release");

    if cfg.build {
        println!("building eventide-bench (release)…");
        let st = cargo()
            .args(["build", "--release", "-p", "eventide-bench", "--bins"])
            .current_dir(&root)
            .status()?;
        if !st.success() {
            return Err(io::Error::other("cargo build -p eventide-bench failed"));
        }
    }
    for b in [
        "tokio-echo",
        "mio-echo",
        "hyper-http",
        "tokio-http",
        "echo-load",
    ] {
        if !release.join(b).is_file() {
            return Err(io::Error::other(format!(
                "{} missing: build with `cargo build --release -p eventide-bench`",
                release.join(b).display()
            )));
        }
    }

    // eventide's examples, as far as they exist.
    let pkg = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "eventide"));
    let mut examples = BTreeMap::new();
    for (name, feature) in [
        ("echo", None),
        ("http", Some("http")),
        ("redis", Some("resp")),
    ] {
        let res = example(cfg, &root, &release, pkg, name, feature);
        if let Err(why) = &res {
            println!("eventide example `{name}`: skipped — {why}");
        }
        examples.insert(name, res);
    }

    let tmp = std::env::temp_dir().join(format!("eventide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut notes = Vec::new();
    let wrk = procs::on_path("wrk");
    let redis_benchmark = procs::on_path("redis-benchmark");
    let redis_server = procs::on_path("redis-server");
    for (ok, tool) in [
        (wrk, "wrk"),
        (redis_benchmark, "redis-benchmark"),
        (redis_server, "redis-server"),
    ] {
        if !ok {
            let n = format!("{tool} not found on PATH: its scenarios or peer are skipped");
            println!("{n}");
            notes.push(n);
        }
    }
    let perf_waits = if !cfg.syscalls {
        notes.push("syscall pass disabled (--no-syscalls)".into());
        None
    } else if !procs::on_path("perf") {
        let n = "perf not found: syscall pass skipped".to_string();
        println!("{n}");
        notes.push(n);
        None
    } else {
        let w = load::epoll_wait_tracepoints();
        if w.is_empty() {
            let n = "no syscalls:sys_enter_epoll_wait* tracepoints: events per wait not measured"
                .to_string();
            println!("{n}");
            notes.push(n);
        }
        Some(w)
    };
    Ok(Env {
        root,
        release,
        tmp,
        examples,
        wrk,
        redis_benchmark,
        redis_server,
        perf_waits,
        notes,
    })
}

fn example(
    cfg: &Config,
    root: &Path,
    release: &Path,
    pkg: Option<&serde_json::Value>,
    name: &str,
    feature: Option<&str>,
) -> Result<PathBuf, String> {
    let pkg = pkg.ok_or("no `eventide` package in the workspace")?;
    let target = pkg["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["name"] == name
                && t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "example"))
        })
        .ok_or_else(|| format!("examples/{name}.rs does not exist yet"))?;
    let mut features: Vec<String> = target["required-features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(String::from))
        .collect();
    if let Some(f) = feature {
        if pkg["features"].get(f).is_some() && !features.iter().any(|x| x == f) {
            features.push(f.to_string());
        }
    }
    if cfg.build {
        println!(
            "building eventide example `{name}` (release{})…",
            if features.is_empty() {
                String::new()
            } else {
                format!(", features {}", features.join(","))
            }
        );
        let mut c = cargo();
        c.args(["build", "--release", "-p", "eventide", "--example", name]);
        if !features.is_empty() {
            c.args(["--features", &features.join(",")]);
        }
        let out = c
            .current_dir(root)
            .output()
            .map_err(|e| format!("cargo: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err
                .lines()
                .find(|l| l.starts_with("error"))
                .unwrap_or("")
                .to_string();
            return Err(format!(
                "build failed{}",
                if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                }
            ));
        }
    }
    let bin = release.join("examples").join(name);
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} not built", bin.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Debug, Clone, Copy)]
enum Kind {
    Echo { depth: usize },
    Http { pipeline: usize },
    Resp { pipeline: usize },
    Idle,
}

struct ServerSpec {
    name: String,
    spawn: Spawn,
}

struct Scenario {
    name: &'static str,
    kind: Kind,
    servers: Vec<ServerSpec>,
    eventide: Option<String>,
    notes: Vec<String>,
}

impl Scenario {
    fn benches(&self) -> Vec<String> {
        match self.kind {
            Kind::Resp { .. } => vec![format!("{} SET", self.name), format!("{} GET", self.name)],
            _ => vec![self.name.to_string()],
        }
    }

    fn load_desc(&self, cfg: &Config, idle_conns: usize, test: Option<&str>) -> String {
        match self.kind {
            Kind::Echo { depth } => format!(
                "echo-load: 50 connections × 512 B, depth {depth} (D messages per write), {} s windows after {} s warm-up",
                cfg.secs,
                echo_warmup(cfg)
            ),
            Kind::Http { pipeline } if pipeline > 1 => format!(
                "wrk -t1 -c64 GET /plaintext, pipelining {pipeline} (TechEmpower's pipeline.lua; wrk's latency percentiles are wrong under pipelining, so only max is shown, per batch)"
            ),
            Kind::Http { .. } => "wrk -t1 -c64 GET /plaintext (latency as wrk reports it, with its coordinated-omission correction)".into(),
            Kind::Resp { pipeline } => format!(
                "redis-benchmark -t {} -c 50 -P {pipeline}, -n sized for ≥ {} s (latency from its CSV, no p99.9)",
                test.unwrap_or("set,get").to_ascii_lowercase(),
                cfg.secs
            ),
            Kind::Idle => format!(
                "server VmRSS growth per connection: {idle_conns} connections, each after one 16-byte round trip"
            ),
        }
    }
}

fn scenarios(cfg: &Config, env: &Env) -> Vec<Scenario> {
    let contract = |n: &str| ServerSpec {
        name: n.to_string(),
        spawn: Spawn::Contract(env.bin(n)),
    };
    let mut out = Vec::new();
    for &name in SCENARIOS {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|x| x == name))
        {
            continue;
        }
        let (kind, example, peers): (Kind, &str, Vec<ServerSpec>) = match name {
            "echo-d1" => (
                Kind::Echo { depth: 1 },
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
            "echo-d16" => (
                Kind::Echo { depth: 16 },
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
            "http-plain" => (
                Kind::Http { pipeline: 1 },
                "http",
                vec![contract("hyper-http"), contract("tokio-http")],
            ),
            "http-pipe16" => (
                Kind::Http { pipeline: 16 },
                "http",
                vec![contract("hyper-http"), contract("tokio-http")],
            ),
            "resp-p1" | "resp-p16" => {
                let p = if name == "resp-p1" { 1 } else { 16 };
                let peers = if env.redis_server {
                    vec![ServerSpec {
                        name: "redis-server".into(),
                        spawn: Spawn::RedisServer,
                    }]
                } else {
                    vec![]
                };
                (Kind::Resp { pipeline: p }, "redis", peers)
            }
            _ => (
                Kind::Idle,
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
        };
        match kind {
            Kind::Http { .. } if !env.wrk => {
                println!("scenario {name}: skipped — wrk not installed");
                continue;
            }
            Kind::Resp { .. } if !env.redis_benchmark => {
                println!("scenario {name}: skipped — redis-benchmark not installed");
                continue;
            }
            _ => {}
        }
        let mut notes = Vec::new();
        let mut servers = Vec::new();
        let mut eventide = None;
        match &env.examples[example] {
            Ok(bin) => {
                servers.push(ServerSpec {
                    name: EVENTIDE.into(),
                    spawn: Spawn::Contract(bin.clone()),
                });
                eventide = Some(EVENTIDE.to_string());
            }
            Err(why) if cfg.peers_anyway => {
                println!(
                    "scenario {name}: eventide skipped — {why}; running the peers (--peers-anyway)"
                );
                notes.push(format!("eventide `{example}` example skipped: {why}"));
            }
            Err(why) => {
                println!(
                    "scenario {name}: skipped — eventide `{example}` example unavailable: {why}"
                );
                continue;
            }
        }
        servers.extend(peers);
        if servers.is_empty() {
            continue;
        }
        out.push(Scenario {
            name,
            kind,
            servers,
            eventide,
            notes,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Running

fn echo_warmup(cfg: &Config) -> f64 {
    if cfg.quick {
        0.3
    } else {
        1.0
    }
}

fn echo_params(depth: usize) -> EchoParams {
    EchoParams {
        conns: 50,
        size: 512,
        depth,
    }
}

fn progress(bench: &str, round: usize, rounds: usize, server: &str, res: &io::Result<Sample>) {
    match res {
        Ok(s) => println!(
            "  [{bench} {}/{rounds}] {server:<13} {:>10.0} req/s  CPU {:>7} µs/req  busy {:.2}{}  p99 {} µs",
            round + 1,
            s.rps,
            report::fmt_num(s.cpu_us_per_req()),
            s.busy(),
            if s.busy() < report::BUSY_FLAG { " (flagged)" } else { "" },
            s.p99_us.map(report::fmt_num).unwrap_or_else(|| "-".into()),
        ),
        Err(e) => println!("  [{bench} {}/{rounds}] {server:<13} FAILED: {e}", round + 1),
    }
}

fn record(b: &mut Bench, server: &str, round: usize, res: io::Result<Sample>) {
    match res {
        Ok(s) => b.samples.entry(server.to_string()).or_default().push(s),
        Err(e) => b.notes.push(format!("{server} round {}: {e}", round + 1)),
    }
}

fn stop_and_check(server: Server, name: &str, notes: &mut Vec<String>) {
    if let Some(p) = server.stop().problem() {
        let n = format!("{name}: {p}");
        println!("  warning: {n}");
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
}

/// redis-benchmark `-n` per test, sized from a calibration run so each timed run lasts ≥ secs.
fn calibrate_resp(
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

fn run_scenario(
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
            load: sc.load_desc(cfg, idle_conns, n.split(' ').nth(1)),
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
                    progress(&benches[0].name, round, cfg.rounds, &spec.name, &res);
                    record(&mut benches[0], &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Http { pipeline } => {
                    let script = if pipeline > 1 { &scripts.1 } else { &scripts.0 };
                    if !cfg.quick {
                        // Untimed warm-up: connections, allocator, caches.
                        let _ = load::wrk(&server, script, pipeline, 1, round);
                    }
                    let res = load::wrk(&server, script, pipeline, wrk_secs, round);
                    progress(&benches[0].name, round, cfg.rounds, &spec.name, &res);
                    record(&mut benches[0], &spec.name, round, res);
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Resp { pipeline } => {
                    for (j, test) in ["set", "get"].iter().enumerate() {
                        let res = load::redis_bench(&server, test, pipeline, resp_n[j], round);
                        progress(&benches[j].name, round, cfg.rounds, &spec.name, &res);
                        record(&mut benches[j], &spec.name, round, res);
                    }
                    stop_and_check(server, &spec.name, &mut benches[0].notes);
                }
                Kind::Idle => {
                    let (res, stopped) = load::idle_rss(&env.bin("echo-load"), server, idle_conns);
                    match res {
                        Ok(v) => {
                            println!(
                                "  [{} {}/{}] {:<13} {:>8.0} B/conn",
                                sc.name,
                                round + 1,
                                cfg.rounds,
                                spec.name,
                                v
                            );
                            benches[0]
                                .idle
                                .entry(spec.name.clone())
                                .or_default()
                                .push(v);
                        }
                        Err(e) => {
                            println!(
                                "  [{} {}/{}] {} FAILED: {e}",
                                sc.name,
                                round + 1,
                                cfg.rounds,
                                spec.name
                            );
                            benches[0].notes.push(format!(
                                "{} round {}: {e}",
                                spec.name,
                                round + 1
                            ));
                        }
                    }
                    if let Some(p) = stopped.problem() {
                        benches[0].notes.push(format!("{}: {p}", spec.name));
                    }
                }
            }
        }
    }
    benches
}

/// The perf pass: one shorter traced run per server, after all timed runs.
fn syscall_pass(
    cfg: &Config,
    env: &Env,
    sc: &Scenario,
    benches: &mut [Bench],
    scripts: &(PathBuf, PathBuf),
) {
    let Some(waits) = &env.perf_waits else { return };
    if matches!(sc.kind, Kind::Idle) {
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
        let pid = server.pid;
        let runs: Vec<(usize, io::Result<load::SyscallStats>)> = match sc.kind {
            Kind::Echo { depth } => vec![(
                0,
                load::traced(pid, waits, &env.tmp, || {
                    load::echo_total(&env.bin("echo-load"), &server, echo_params(depth), secs)
                }),
            )],
            Kind::Http { pipeline } => {
                let script = if pipeline > 1 { &scripts.1 } else { &scripts.0 };
                vec![(
                    0,
                    load::traced(pid, waits, &env.tmp, || {
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
                        load::traced(pid, waits, &env.tmp, || {
                            load::redis_bench(&server, test, pipeline, n, 0).map(|s| s.requests)
                        }),
                    )
                })
                .collect(),
            Kind::Idle => vec![],
        };
        for (j, res) in runs {
            match res {
                Ok(st) => {
                    println!(
                        "  [{} syscalls] {:<13} {:.2} syscalls/req, {} epoll waits, {} events/wait",
                        benches[j].name,
                        spec.name,
                        st.per_request(),
                        st.epoll_waits,
                        st.events_per_wait
                            .map(report::fmt_num)
                            .unwrap_or_else(|| "-".into())
                    );
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
        rounds: cfg.rounds,
        secs: cfg.secs,
        chart,
        notes,
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

/// Busy fraction over all CPUs above which the machine is reported as not quiet.
const QUIET_LIMIT: f64 = 0.05;

/// Fraction of all CPUs' time spent busy (not idle, not iowait) over `dur`, from `/proc/stat`.
fn machine_busy(dur: std::time::Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let line = s.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some((total, idle))
    }
    let (t0, i0) = sample()?;
    std::thread::sleep(dur);
    let (t1, i1) = sample()?;
    let total = t1.checked_sub(t0)?;
    (total > 0).then(|| 1.0 - (i1 - i0) as f64 / total as f64)
}

fn relative_to(path: &Path, base: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

fn command_line(cfg: &Config) -> String {
    let quote = |a: &String| {
        if a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:".contains(c))
        {
            a.clone()
        } else {
            format!("'{}'", a.replace('\'', r"'\''"))
        }
    };
    let mut s = String::from("cargo run --release -p eventide-bench --bin bench-runner");
    if !cfg.args.is_empty() {
        s.push_str(" --");
        for a in &cfg.args {
            s.push(' ');
            s.push_str(&quote(a));
        }
    }
    s
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}; Linux {kernel}; nproc {nproc}; {rustc}")
}
