//! `bench-runner` — builds everything and runs eventide against its peers, side by side.
//!
//! For each scenario every server runs in turn, interleaved, the first one rotating each round
//! (≥ 5 rounds of ≥ 3 s by default). The server is pinned to CPU 0 (`taskset -c 0`, started with
//! `--addr 127.0.0.1:0 --loops 1` and otherwise its defaults), the load tool to CPU 1. Per run
//! it records the server's CPU seconds around the measured window (utime + stime from
//! `/proc/PID/stat`), the wall time, the busy fraction (flagged under 0.95: then the load tool
//! set the pace), the requests completed, so CPU µs per request, throughput and latency. A
//! separate, shorter pass under `perf` counts syscalls per request, events per `epoll_wait` and
//! context switches per request; it never overlaps the timed runs because tracing slows every
//! syscall.
//!
//! Modes: the suite (eventide's demos with their defaults beside the peers), `--triggers`
//! (eventide level- against edge-triggered, interleaved, in every scenario), `--callgrind`
//! (user-space instructions per message), each in the `release` or (`--lto`) `release-lto`
//! profile; `--rebaseline` runs all four passes in one go. The scenarios are listed in
//! `cli::SCENARIOS` and described in `scenarios` and BENCHMARKS.md.
//!
//! Output: per pass a table of medians with eventide/peer ratios and PASS/MISS against the
//! targets, written into the results section of `BENCHMARKS.md` (between its markers) and an
//! SVG chart (`docs/bench.svg`). `--quick` (1 round of ~1 s, no verdicts, outputs in a temp dir)
//! keeps the suite from rotting in CI.

mod broadcast;
mod callgrind;
mod chart;
mod cli;
mod conns;
mod gateway;
mod host;
mod load;
mod perf;
mod plan;
mod procs;
mod report;
mod runner;
mod scenarios;
mod setup;
mod switches;
mod tls_echo;
mod verdicts;

use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use eventide_bench::{date, sys};

use cli::{parse_config, Config, Mode, Profile, USAGE};
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

/// The passes of this invocation: one, or the four of a re-baseline.
fn passes(cfg: &Config) -> Vec<Config> {
    if !cfg.rebaseline {
        return vec![cfg.clone()];
    }
    [
        (Mode::Suite, Profile::Release),
        (Mode::Triggers, Profile::Release),
        (Mode::Suite, Profile::ReleaseLto),
        (Mode::Callgrind, Profile::Release),
    ]
    .into_iter()
    .map(|(mode, profile)| Config {
        mode,
        profile,
        ..cfg.clone()
    })
    .collect()
}

fn pass_title(cfg: &Config) -> (String, String) {
    match cfg.mode {
        Mode::Suite => (
            format!("Suite — {} profile", cfg.profile.name()),
            format!(
                "eventide's demos with their defaults beside the peers, every server built in the {}.",
                cfg.profile.describe()
            ),
        ),
        Mode::Triggers => (
            format!("Level- vs edge-triggered — {} profile", cfg.profile.name()),
            "eventide against itself in every scenario, level- and edge-triggered interleaved in one run; ratios are edge / level (below 1: edge costs less). `(default)` marks the mode the demo runs without a switch.".into(),
        ),
        Mode::Callgrind => (
            format!("Instructions per message — {} profile", cfg.profile.name()),
            "User-space instructions per message under `valgrind --tool=callgrind`, the difference of two fixed-size runs (start-up, handshakes and shutdown cancel). Deterministic, so comparable on a busy machine; the kernel's share is not in it.".into(),
        ),
    }
}

fn run(cfg: &Config) -> io::Result<()> {
    match sys::raise_nofile_limit(20_000) {
        Ok(n) if n < 19_600 => {
            println!("note: open-file limit is {n}; idle-mem and conns may fail")
        }
        Ok(_) => {}
        Err(e) => println!("note: could not raise the open-file limit: {e}"),
    }
    let busy_before = machine_busy(std::time::Duration::from_secs(1));
    let mut results = Vec::new();
    let mut notes = Vec::new();
    let mut chart_benches = None;
    let mut tmp = None;
    let mut planned = 0.0;
    let mut suite_plan = None;
    for pass in passes(cfg) {
        if cfg.plan && pass.profile == Profile::ReleaseLto {
            if let Some(s) = suite_plan {
                // The same scenarios and servers as the release suite pass (its binaries may not
                // be built yet, and --plan builds nothing it does not have to).
                println!(
                    "\nplan: the suite again, profile release-lto: ~{:.0} s as above",
                    s
                );
                planned += s;
                continue;
            }
        }
        let env = setup(&pass)?;
        if pass.mode == Mode::Callgrind && !env.valgrind {
            let n = "valgrind not installed: the instruction counts were skipped".to_string();
            println!("{n}");
            notes.push(n);
            continue;
        }
        let list = scenarios(&pass, &env);
        if cfg.plan {
            let s = plan::print(&pass, &env, &list);
            if pass.mode == Mode::Suite {
                suite_plan.get_or_insert(s);
            }
            planned += s;
            continue;
        }
        if list.is_empty() {
            println!("nothing to run");
        }
        let idle_conns = pass
            .idle_conns
            .unwrap_or(if pass.quick { 2_000 } else { 9_000 });
        let scripts = load::write_wrk_scripts(&env.tmp)?;
        let mut benches = Vec::new();
        for mut sc in list {
            if pass.mode == Mode::Callgrind {
                benches.extend(callgrind::run(&pass, &env, &sc));
            } else {
                let mut b = run_scenario(&pass, &env, &sc, idle_conns, &scripts);
                syscall_pass(&pass, &env, &sc, &mut b, &scripts);
                benches.extend(b);
            }
            if let Some(up) = sc.upstream.take() {
                let _ = up.stop();
            }
        }
        print!("{}", report::text_table(&benches));
        let verdicts = match pass.mode {
            _ if pass.quick => None,
            Mode::Suite => Some(verdicts::verdicts(&benches)),
            Mode::Callgrind => Some(verdicts::callgrind_verdicts(&benches)),
            Mode::Triggers => None,
        };
        if let Some(v) = &verdicts {
            print!("{}", verdicts::text_verdicts(v));
        }
        for n in &env.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        let (title, about) = pass_title(&pass);
        if pass.mode == Mode::Suite && chart_benches.is_none() {
            chart_benches = Some(results.len());
        }
        results.push(report::Pass {
            title,
            about,
            benches,
            verdicts,
        });
        tmp = Some((env.root.clone(), env.tmp.clone()));
    }
    if cfg.plan {
        println!("\nwhole run: ~{:.0} min (± 25 %)", planned / 60.0);
        return Ok(());
    }
    let Some((root, tmp)) = tmp else {
        return Ok(());
    };
    write_reports(
        cfg,
        &root,
        &tmp,
        &results,
        chart_benches,
        notes,
        busy_before,
    )
}

fn write_reports(
    cfg: &Config,
    root: &Path,
    tmp: &Path,
    results: &[report::Pass],
    chart_benches: Option<usize>,
    mut notes: Vec<String>,
    busy_before: Option<f64>,
) -> io::Result<()> {
    // Outputs: defaults in the workspace; in --quick mode a temp dir unless paths were given.
    let (md, svg) = if cfg.quick {
        (
            cfg.out_md
                .clone()
                .unwrap_or_else(|| tmp.join("BENCHMARKS.md")),
            cfg.out_svg.clone().unwrap_or_else(|| tmp.join("bench.svg")),
        )
    } else {
        (
            cfg.out_md
                .clone()
                .unwrap_or_else(|| root.join("BENCHMARKS.md")),
            cfg.out_svg
                .clone()
                .unwrap_or_else(|| root.join("docs").join("bench.svg")),
        )
    };
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
    notes.push("events/wait is the mean return value of epoll_wait/epoll_pwait/epoll_pwait2 recorded with `perf record` during the syscall pass".into());
    notes.push("vol cs/req and invol cs/req are the server's voluntary (blocked: a sleeping epoll_wait or io_uring_enter, a futex wait between a runtime's threads) and involuntary (preempted) context switches per request in the syscall pass, over the requests syscalls/req divides by: voluntary_ctxt_switches and nonvoluntary_ctxt_switches of /proc/PID/task/*/status, summed over every thread of every server process (nginx's master and worker, a tokio runtime's workers) and read just before and after the load; `perf stat -e context-switches` counts both kinds together, so it is only a cross-check".into());
    let title = "Server CPU time per request, one core (bar labels: ratio · µs/req)";
    let chart = match (svg.parent(), chart_benches) {
        (Some(dir), Some(i)) => {
            std::fs::create_dir_all(dir)?;
            match chart::write_svg(&svg, &results[i].benches, title) {
                Ok(()) => {
                    println!("\nchart: {}", svg.display());
                    Some(relative_to(&svg, md.parent().unwrap_or(Path::new("."))))
                }
                Err(e) => {
                    println!("\nchart not written: {e}");
                    None
                }
            }
        }
        _ => None,
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
        commit: commit(root),
        rounds: cfg.rounds,
        secs: cfg.secs,
        chart,
        notes,
    };
    let text = report::markdown(results, &cx);
    if let Some(dir) = md.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The workspace's BENCHMARKS.md keeps its hand-written text: only the region between the
    // markers is replaced. Any other path gets the results alone.
    let doc = std::fs::read_to_string(&md).ok();
    let out = match doc.as_deref().map(|d| (d, report::splice(d, &text))) {
        Some((_, Some(spliced))) => spliced,
        Some((_, None)) if md == root.join("BENCHMARKS.md") => {
            let alt = tmp.join("BENCHMARKS.results.md");
            std::fs::write(&alt, &text)?;
            return Err(io::Error::other(format!(
                "{} has no `{}` … `{}` markers; results written to {}",
                md.display(),
                report::BEGIN,
                report::END,
                alt.display()
            )));
        }
        _ => format!(
            "# eventide benchmark results\n\n{}\n{text}{}\n",
            report::BEGIN,
            report::END
        ),
    };
    std::fs::write(&md, out)?;
    println!("report: {}", md.display());
    // Perf scratch files are removed as they are read; keep the temp dir only if it holds reports.
    if !md.starts_with(tmp) && !svg.starts_with(tmp) {
        let _ = std::fs::remove_dir_all(tmp);
    }
    Ok(())
}
