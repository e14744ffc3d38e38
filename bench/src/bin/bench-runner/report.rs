//! Medians, ratios, verdicts, the text table, and BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::Sample;
use crate::perf::SyscallStats;

/// Busy fraction under which a run is flagged: the server was not the bottleneck.
pub const BUSY_FLAG: f64 = 0.95;

/// Everything measured for one benchmark (a scenario, or one test of a RESP scenario).
#[derive(Debug, Default)]
pub struct Bench {
    /// Display name, e.g. `echo-d1` or `resp-p16 GET`.
    pub name: String,
    /// One-line description of the load.
    pub load: String,
    /// Servers in display order (eventide first when present).
    pub servers: Vec<String>,
    /// Name of the eventide server when it took part.
    pub eventide: Option<String>,
    /// Timed samples per server.
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// Syscall pass per server.
    pub syscalls: BTreeMap<String, SyscallStats>,
    /// Idle memory per server, bytes per connection, one value per round.
    pub idle: BTreeMap<String, Vec<f64>>,
    /// Failed runs, skipped servers and other remarks.
    pub notes: Vec<String>,
}

/// Medians for one server in one bench.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Server CPU µs per request.
    pub cpu_us: Option<f64>,
    /// Server busy fraction.
    pub busy: Option<f64>,
    /// Fraction of the server's CPU time spent in the kernel.
    pub kernel: Option<f64>,
    /// Requests per second.
    pub rps: Option<f64>,
    /// Latency p50, µs.
    pub p50: Option<f64>,
    /// Latency p99, µs.
    pub p99: Option<f64>,
    /// Latency p99.9, µs.
    pub p999: Option<f64>,
    /// Latency max, µs.
    pub max: Option<f64>,
    /// Syscalls per request (syscall pass).
    pub sys_per_req: Option<f64>,
    /// Events per epoll wait (syscall pass).
    pub events_per_wait: Option<f64>,
    /// Resident bytes per idle connection.
    pub bytes_per_conn: Option<f64>,
    /// Timed runs that succeeded.
    pub runs: usize,
}

/// Median of the finite values (None when there are none).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Bench {
    /// Medians for `server`.
    pub fn summary(&self, server: &str) -> Summary {
        let s = self.samples.get(server).map(Vec::as_slice).unwrap_or(&[]);
        let m = |f: &dyn Fn(&Sample) -> Option<f64>| median(s.iter().filter_map(f).collect());
        let sys = self.syscalls.get(server);
        Summary {
            cpu_us: m(&|x| Some(x.cpu_us_per_req())),
            busy: m(&|x| Some(x.busy())),
            kernel: m(&|x| Some(x.kernel_share())),
            rps: m(&|x| Some(x.rps)),
            p50: m(&|x| x.p50_us),
            p99: m(&|x| x.p99_us),
            p999: m(&|x| x.p999_us),
            max: m(&|x| x.max_us),
            sys_per_req: sys.map(|s| s.per_request()),
            events_per_wait: sys.and_then(|s| s.events_per_wait),
            bytes_per_conn: self.idle.get(server).and_then(|v| median(v.clone())),
            runs: s.len() + self.idle.get(server).map_or(0, Vec::len),
        }
    }

    /// Runs whose busy fraction was under [`BUSY_FLAG`], as `(server, round, busy)`.
    pub fn flagged(&self) -> Vec<(String, usize, f64)> {
        let mut out = Vec::new();
        for server in &self.servers {
            for s in self.samples.get(server).into_iter().flatten() {
                if s.busy() < BUSY_FLAG {
                    out.push((server.clone(), s.round + 1, s.busy()));
                }
            }
        }
        out
    }
}

/// One column of the results table.
pub struct Metric {
    /// Column header.
    pub name: &'static str,
    /// Getter.
    pub get: fn(&Summary) -> Option<f64>,
}

/// The columns, in order of importance (CPU per request first, as the guide asks).
pub const METRICS: &[Metric] = &[
    Metric {
        name: "CPU µs/req",
        get: |s| s.cpu_us,
    },
    Metric {
        name: "busy",
        get: |s| s.busy,
    },
    Metric {
        name: "kernel",
        get: |s| s.kernel,
    },
    Metric {
        name: "req/s",
        get: |s| s.rps,
    },
    Metric {
        name: "syscalls/req",
        get: |s| s.sys_per_req,
    },
    Metric {
        name: "events/wait",
        get: |s| s.events_per_wait,
    },
    Metric {
        name: "p50 µs",
        get: |s| s.p50,
    },
    Metric {
        name: "p99 µs",
        get: |s| s.p99,
    },
    Metric {
        name: "p99.9 µs",
        get: |s| s.p999,
    },
    Metric {
        name: "max µs",
        get: |s| s.max,
    },
    Metric {
        name: "B/conn idle",
        get: |s| s.bytes_per_conn,
    },
];

/// Three significant digits, no exponent.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A ratio: two decimals, more when it is tiny.
pub fn fmt_ratio(v: f64) -> String {
    if v.abs() < 0.01 && v != 0.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "-".into())
}

/// Rows of one bench: header, one row per server, one ratio row per peer.
fn rows(b: &Bench) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let sums: Vec<(String, Summary)> = b
        .servers
        .iter()
        .map(|s| (s.clone(), b.summary(s)))
        .collect();
    let cols: Vec<&Metric> = METRICS
        .iter()
        .filter(|m| sums.iter().any(|(_, s)| (m.get)(s).is_some()))
        .collect();
    let mut header = vec!["server"];
    header.extend(cols.iter().map(|m| m.name));
    header.push("runs");
    let mut out = Vec::new();
    for (name, s) in &sums {
        let mut r = vec![name.clone()];
        r.extend(cols.iter().map(|m| fmt_opt((m.get)(s))));
        r.push(s.runs.to_string());
        out.push(r);
    }
    if let Some(ev) = &b.eventide {
        let evs = b.summary(ev);
        for (name, s) in sums.iter().filter(|(n, _)| n != ev) {
            let mut r = vec![format!("ratio {ev}/{name}")];
            r.extend(cols.iter().map(|m| match ((m.get)(&evs), (m.get)(s)) {
                (Some(a), Some(b)) if b != 0.0 => format!("{}×", fmt_ratio(a / b)),
                _ => "-".into(),
            }));
            r.push(String::new());
            out.push(r);
        }
    }
    (header, out)
}

/// The text table printed at the end of a run.
pub fn text_table(benches: &[Bench]) -> String {
    let mut out = String::new();
    for b in benches {
        let _ = writeln!(out, "\n== {} — {}", b.name, b.load);
        let (header, rows) = rows(b);
        let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<String>| -> String {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = width[i] - c.chars().count();
                    if i == 0 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(
            out,
            "{}",
            line(header.iter().map(|s| s.to_string()).collect())
        );
        for r in rows {
            let _ = writeln!(out, "{}", line(r));
        }
        for n in &b.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        let flagged = b.flagged();
        if !flagged.is_empty() {
            let _ = writeln!(
                out,
                "  flagged (busy < {BUSY_FLAG}): {}",
                flagged_list(&flagged)
            );
        }
    }
    out
}

fn flagged_list(f: &[(String, usize, f64)]) -> String {
    f.iter()
        .map(|(s, r, b)| format!("{s} r{r} {b:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn md_table(b: &Bench) -> String {
    let (header, rows) = rows(b);
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Verdicts

/// Outcome of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Target met.
    Pass,
    /// Target missed.
    Miss,
    /// Not measurable in this run.
    Skip,
}

impl Outcome {
    /// Upper-case label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Miss => "MISS",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One target and its outcome.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is compared.
    pub what: String,
    /// The target, human readable.
    pub target: String,
    /// The measured value (ratio or absolute).
    pub value: Option<f64>,
    /// PASS / MISS / SKIP.
    pub outcome: Outcome,
}

fn find<'a>(benches: &'a [Bench], name: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.name == name)
}

fn ratio_verdict(
    benches: &[Bench],
    bench: &str,
    peer: &str,
    metric: &str,
    get: fn(&Summary) -> Option<f64>,
    limit: f64,
) -> Verdict {
    let value = find(benches, bench).and_then(|b| {
        let ev = b.eventide.as_ref()?;
        if !b.servers.iter().any(|s| s == peer) {
            return None;
        }
        let (a, p) = (get(&b.summary(ev))?, get(&b.summary(peer))?);
        (p > 0.0).then(|| a / p)
    });
    Verdict {
        what: format!("{bench}: {metric}, eventide / {peer}"),
        target: format!("≤ {limit}×"),
        value,
        outcome: match value {
            Some(v) if v <= limit => Outcome::Pass,
            Some(_) => Outcome::Miss,
            None => Outcome::Skip,
        },
    }
}

/// The targets of the benchmark issue.
pub fn verdicts(benches: &[Bench]) -> Vec<Verdict> {
    let cpu: fn(&Summary) -> Option<f64> = |s| s.cpu_us;
    let sys: fn(&Summary) -> Option<f64> = |s| s.sys_per_req;
    let p99: fn(&Summary) -> Option<f64> = |s| s.p99;
    let mut v = Vec::new();
    for b in ["echo-d1", "echo-d16"] {
        v.push(ratio_verdict(
            benches,
            b,
            "tokio-echo",
            "CPU/msg",
            cpu,
            0.85,
        ));
    }
    for b in ["echo-d1", "echo-d16"] {
        v.push(ratio_verdict(
            benches,
            b,
            "tokio-echo",
            "syscalls/msg",
            sys,
            0.8,
        ));
    }
    v.push(ratio_verdict(
        benches,
        "echo-d1",
        "tokio-echo",
        "p99 latency",
        p99,
        1.1,
    ));
    for b in ["http-plain", "http-pipe16"] {
        v.push(ratio_verdict(
            benches,
            b,
            "hyper-http",
            "CPU/req",
            cpu,
            0.77,
        ));
        v.push(ratio_verdict(benches, b, "tokio-http", "CPU/req", cpu, 0.9));
    }
    for b in ["resp-p1 SET", "resp-p1 GET", "resp-p16 SET", "resp-p16 GET"] {
        v.push(ratio_verdict(
            benches,
            b,
            "redis-server",
            "CPU/req",
            cpu,
            1.0,
        ));
    }
    let idle =
        find(benches, "idle-mem").and_then(|b| b.summary(b.eventide.as_ref()?).bytes_per_conn);
    v.push(Verdict {
        what: "idle-mem: eventide resident bytes per idle connection".into(),
        target: "≤ 256 B".into(),
        value: idle,
        outcome: match idle {
            Some(x) if x <= 256.0 => Outcome::Pass,
            Some(_) => Outcome::Miss,
            None => Outcome::Skip,
        },
    });
    v
}

/// Verdicts as text lines.
pub fn text_verdicts(v: &[Verdict]) -> String {
    let mut out = String::from("\nTargets:\n");
    for x in v {
        let _ = writeln!(
            out,
            "  {}  {}  target {}  measured {}",
            x.outcome.label(),
            x.what,
            x.target,
            fmt_opt(x.value)
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// BENCHMARKS.md

/// Context for the markdown report.
pub struct Context {
    /// The command that produced the report.
    pub command: String,
    /// Date (IMF-fixdate, UTC).
    pub date: String,
    /// CPU model, kernel, nproc.
    pub machine: String,
    /// The commit the code under test comes from.
    pub commit: String,
    /// Rounds and seconds per run.
    pub rounds: usize,
    /// Seconds per timed run.
    pub secs: f64,
    /// Chart path relative to the markdown file, if written.
    pub chart: Option<String>,
    /// Global remarks (skipped scenarios, missing tools).
    pub notes: Vec<String>,
    /// Whether verdicts were computed.
    pub verdicts: Option<Vec<Verdict>>,
    /// `bench/ANALYSIS.md`: what the misses mean, written by hand (full runs only).
    pub analysis: Option<String>,
}

/// Renders BENCHMARKS.md.
pub fn markdown(benches: &[Bench], cx: &Context) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# eventide benchmarks\n");
    let _ = writeln!(
        o,
        "Generated by the `eventide-bench` runner; do not edit by hand. Re-run with:\n\n```\n{}\n```\n",
        cx.command
    );
    let _ = writeln!(o, "- Date: {}", cx.date);
    let _ = writeln!(o, "- Machine: {}", cx.machine);
    let _ = writeln!(o, "- Commit: {}", cx.commit);
    let _ = writeln!(
        o,
        "- Method: server pinned to CPU 0 (`taskset -c 0`, `--loops 1`), load tool pinned to CPU 1; \
servers interleaved, the first one rotating each round; {} rounds of {} s; medians. \
Server CPU time is utime + stime from `/proc/PID/stat` around the measured window; \
`kernel` is the share of it spent in the kernel (stime / (utime + stime)). \
Syscalls are counted in a separate, shorter pass under `perf stat -e raw_syscalls:sys_enter`, \
events per `epoll_wait` from `perf record` of the epoll exit tracepoints (tracing slows the \
server, so this pass never overlaps the timed runs). Runs where the server's core was busy less \
than {:.0} % of the window are flagged: there the load tool, not the server, set the pace, and \
throughput and latency ratios say little (CPU per request still holds).",
        cx.rounds,
        cx.secs,
        BUSY_FLAG * 100.0
    );
    let _ = writeln!(
        o,
        "- Ratios are eventide / peer: below 1 is better for CPU, syscalls, latency and memory; above 1 \
is better for req/s and events/wait.\n"
    );
    if let Some(c) = &cx.chart {
        let _ = writeln!(o, "![server CPU time per request]({c})\n");
    }
    if let Some(v) = &cx.verdicts {
        let _ = writeln!(
            o,
            "## Targets\n\n| result | what | target | measured |\n|---|---|---|---:|"
        );
        for x in v {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} |",
                x.outcome.label(),
                x.what,
                x.target,
                fmt_opt(x.value)
            );
        }
        let _ = writeln!(o);
    }
    if let Some(a) = &cx.analysis {
        let _ = writeln!(o, "{}\n", a.trim_end());
    }
    let _ = writeln!(o, "## Results\n");
    for b in benches {
        let _ = writeln!(o, "### {}\n\n{}\n", b.name, b.load);
        o.push_str(&md_table(b));
        let flagged = b.flagged();
        if !flagged.is_empty() || !b.notes.is_empty() {
            let _ = writeln!(o);
        }
        if !flagged.is_empty() {
            let _ = writeln!(
                o,
                "- Flagged runs (server busy < {BUSY_FLAG}): {}",
                flagged_list(&flagged)
            );
        }
        for n in &b.notes {
            let _ = writeln!(o, "- {n}");
        }
        let _ = writeln!(o);
    }
    if !cx.notes.is_empty() {
        let _ = writeln!(o, "## Notes\n");
        for n in &cx.notes {
            let _ = writeln!(o, "- {n}");
        }
        let _ = writeln!(o);
    }
    o
}
