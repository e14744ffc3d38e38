//! Medians, ratios, verdicts, the text table, and BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::load::Sample;
use crate::perf::SyscallStats;
use crate::verdicts::Verdict;

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
    /// Further figures per server (one value per round) under the scenario's own columns.
    pub values: BTreeMap<String, BTreeMap<&'static str, Vec<f64>>>,
    /// Those columns, in display order.
    pub columns: Vec<Column>,
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
    /// Voluntary context switches per request: the server's threads blocking (syscall pass).
    pub vol_cs_per_req: Option<f64>,
    /// Involuntary context switches per request: its threads preempted (syscall pass).
    pub invol_cs_per_req: Option<f64>,
    /// Resident bytes per idle connection.
    pub bytes_per_conn: Option<f64>,
    /// Medians of the scenario's own columns.
    pub extra: BTreeMap<&'static str, f64>,
    /// Timed runs that succeeded.
    pub runs: usize,
}

/// A column of a scenario's own (beyond the timed-run figures of [`METRICS`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    /// Header.
    pub name: &'static str,
    /// Whether a larger value is better (for the best-peer choice and the reading of ratios).
    pub higher_better: bool,
}

/// How a verdict or a table reads one figure of a [`Summary`].
#[derive(Clone, Copy)]
pub enum Get {
    /// A figure of the timed runs (a [`METRICS`] getter).
    Std(fn(&Summary) -> Option<f64>),
    /// A column of the scenario's own.
    Extra(&'static str),
}

impl Summary {
    /// The figure `g` reads.
    pub fn get(&self, g: Get) -> Option<f64> {
        match g {
            Get::Std(f) => f(self),
            Get::Extra(name) => self.extra.get(name).copied(),
        }
    }
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
            vol_cs_per_req: sys.and_then(|s| s.voluntary_per_request()),
            invol_cs_per_req: sys.and_then(|s| s.involuntary_per_request()),
            bytes_per_conn: self.idle.get(server).and_then(|v| median(v.clone())),
            extra: self
                .values
                .get(server)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((*k, median(v.clone())?)))
                .collect(),
            runs: s.len()
                + self.idle.get(server).map_or(0, Vec::len)
                + self
                    .values
                    .get(server)
                    .and_then(|m| m.values().map(Vec::len).max())
                    .unwrap_or(0),
        }
    }

    /// Records one value of column `col` for `server`.
    pub fn record_value(&mut self, server: &str, col: Column, v: f64) {
        if !self.columns.iter().any(|c| c.name == col.name) {
            self.columns.push(col);
        }
        self.values
            .entry(server.to_string())
            .or_default()
            .entry(col.name)
            .or_default()
            .push(v);
    }

    /// The peers: every server but eventide's.
    pub fn peers(&self) -> impl Iterator<Item = &String> {
        self.servers
            .iter()
            .filter(move |s| Some(*s) != self.eventide.as_ref())
    }

    /// The best of `peers` (all peers when empty) on figure `g`, with its value.
    pub fn best_peer(&self, peers: &[&str], g: Get, higher_better: bool) -> Option<(String, f64)> {
        self.peers()
            .filter(|p| peers.is_empty() || peers.contains(&p.as_str()))
            .filter_map(|p| Some((p.clone(), self.summary(p).get(g)?)))
            .reduce(|a, b| {
                let b_better = if higher_better { b.1 > a.1 } else { b.1 < a.1 };
                if b_better {
                    b
                } else {
                    a
                }
            })
    }

    /// Runs whose busy fraction was under [`BUSY_FLAG`], as `(server, round, busy, the load
    /// tool's busy where sampled)`.
    pub fn flagged(&self) -> Vec<(String, usize, f64, Option<f64>)> {
        let mut out = Vec::new();
        for server in &self.servers {
            for s in self.samples.get(server).into_iter().flatten() {
                if s.busy() < BUSY_FLAG {
                    out.push((server.clone(), s.round + 1, s.busy(), s.load_busy()));
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
    /// Whether a larger value is better.
    pub higher_better: bool,
}

/// The columns, in order of importance (CPU per request first, as the guide asks).
pub const METRICS: &[Metric] = &[
    Metric {
        name: "CPU µs/req",
        higher_better: false,
        get: |s| s.cpu_us,
    },
    Metric {
        name: "busy",
        higher_better: true,
        get: |s| s.busy,
    },
    Metric {
        name: "kernel",
        higher_better: false,
        get: |s| s.kernel,
    },
    Metric {
        name: "req/s",
        higher_better: true,
        get: |s| s.rps,
    },
    Metric {
        name: "syscalls/req",
        higher_better: false,
        get: |s| s.sys_per_req,
    },
    Metric {
        name: "events/wait",
        higher_better: true,
        get: |s| s.events_per_wait,
    },
    Metric {
        name: "vol cs/req",
        higher_better: false,
        get: |s| s.vol_cs_per_req,
    },
    Metric {
        name: "invol cs/req",
        higher_better: false,
        get: |s| s.invol_cs_per_req,
    },
    Metric {
        name: "p50 µs",
        higher_better: false,
        get: |s| s.p50,
    },
    Metric {
        name: "p99 µs",
        higher_better: false,
        get: |s| s.p99,
    },
    Metric {
        name: "p99.9 µs",
        higher_better: false,
        get: |s| s.p999,
    },
    Metric {
        name: "max µs",
        higher_better: false,
        get: |s| s.max,
    },
    Metric {
        name: "B/conn idle",
        higher_better: false,
        get: |s| s.bytes_per_conn,
    },
];

/// Three significant digits (at least three decimals below 1), no exponent: a per-delivery
/// figure such as 0.00021 context switches must not read as zero.
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
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        // 2 − ⌊log10 a⌋ decimals keep three significant digits (0.00021 → 0.000210).
        let decimals = (2 - a.log10().floor() as i32).clamp(3, 12) as usize;
        format!("{v:.decimals$}")
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

pub fn fmt_opt(v: Option<f64>) -> String {
    v.map(fmt_num).unwrap_or_else(|| "-".into())
}

/// A column of a table: a timed-run figure or one of the scenario's own.
struct Col {
    name: &'static str,
    get: Get,
    higher_better: bool,
}

/// Rows of one bench: header, one row per server, one ratio row per peer, and when there are
/// several peers one against the best of them (chosen on the first column: CPU per request
/// where measured, otherwise the scenario's main figure).
fn rows(b: &Bench) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let sums: Vec<(String, Summary)> = b
        .servers
        .iter()
        .map(|s| (s.clone(), b.summary(s)))
        .collect();
    let mut cols: Vec<Col> = METRICS
        .iter()
        .map(|m| Col {
            name: m.name,
            get: Get::Std(m.get),
            higher_better: m.higher_better,
        })
        .collect();
    cols.extend(b.columns.iter().map(|c| Col {
        name: c.name,
        get: Get::Extra(c.name),
        higher_better: c.higher_better,
    }));
    cols.retain(|c| sums.iter().any(|(_, s)| s.get(c.get).is_some()));
    let mut header = vec!["server"];
    header.extend(cols.iter().map(|c| c.name));
    header.push("runs");
    let mut out = Vec::new();
    for (name, s) in &sums {
        let mut r = vec![name.clone()];
        r.extend(cols.iter().map(|c| fmt_opt(s.get(c.get))));
        r.push(s.runs.to_string());
        out.push(r);
    }
    let Some(ev) = &b.eventide else {
        return (header, out);
    };
    let evs = b.summary(ev);
    let ratio_row = |label: String, peer: &Summary| {
        let mut r = vec![label];
        r.extend(
            cols.iter()
                .map(|c| match (evs.get(c.get), peer.get(c.get)) {
                    (Some(a), Some(p)) if p != 0.0 => format!("{}×", fmt_ratio(a / p)),
                    _ => "-".into(),
                }),
        );
        r.push(String::new());
        r
    };
    for (name, s) in sums.iter().filter(|(n, _)| n != ev) {
        out.push(ratio_row(format!("ratio {ev}/{name}"), s));
    }
    let peers = sums.iter().filter(|(n, _)| n != ev).count();
    if let (true, Some(first)) = (peers >= 2, cols.first()) {
        if let Some((best, _)) = b.best_peer(&[], first.get, first.higher_better) {
            let s = b.summary(&best);
            out.push(ratio_row(
                format!("ratio {ev}/best peer ({best}, by {})", first.name),
                &s,
            ));
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
                "  flagged (busy < {BUSY_FLAG}; the load tool's own in brackets): {}",
                flagged_list(&flagged)
            );
        }
    }
    out
}

fn flagged_list(f: &[(String, usize, f64, Option<f64>)]) -> String {
    f.iter()
        .map(|(s, r, b, load)| match load {
            Some(l) => format!("{s} r{r} {b:.2} (load {l:.2})"),
            None => format!("{s} r{r} {b:.2}"),
        })
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
// BENCHMARKS.md

/// One pass of a run: a mode in a build profile, and what it measured.
pub struct Pass {
    /// Heading, e.g. "Suite — release profile".
    pub title: String,
    /// What the pass compares, one paragraph.
    pub about: String,
    /// Its benches.
    pub benches: Vec<Bench>,
    /// Its verdicts (full runs only).
    pub verdicts: Option<Vec<Verdict>>,
}

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
    /// Global remarks (skipped scenarios, missing tools, a busy machine).
    pub notes: Vec<String>,
}

/// The results section of BENCHMARKS.md: the run's facts, then per pass its targets and tables.
pub fn markdown(passes: &[Pass], cx: &Context) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Generated by `{}` — do not edit by hand between the markers; re-run the command.\n",
        cx.command
    );
    let _ = writeln!(o, "- Date: {}", cx.date);
    let _ = writeln!(o, "- Machine: {}", cx.machine);
    let _ = writeln!(o, "- Commit: {}", cx.commit);
    let _ = writeln!(
        o,
        "- {} interleaved rounds of {} s per scenario (the first server rotating each round), medians; \
server on CPU 0, load on CPU 1; runs with the server's core busy < {:.0} % flagged.",
        cx.rounds,
        cx.secs,
        BUSY_FLAG * 100.0
    );
    let _ = writeln!(
        o,
        "- Ratios are eventide / peer: below 1 is better for CPU, syscalls, context switches, \
latency, memory and times; above 1 for rates and events/wait. \"best peer\" is the peer best on the table's first column.\n"
    );
    if let Some(c) = &cx.chart {
        let _ = writeln!(o, "![server CPU time per request]({c})\n");
    }
    for p in passes {
        let _ = writeln!(o, "### {}\n\n{}\n", p.title, p.about);
        if let Some(v) = &p.verdicts {
            let _ = writeln!(
                o,
                "| result | what | target | measured |\n|---|---|---|---:|"
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
        for b in &p.benches {
            let _ = writeln!(o, "#### {}\n\n{}\n", b.name, b.load);
            o.push_str(&md_table(b));
            let flagged = b.flagged();
            if !flagged.is_empty() || !b.notes.is_empty() {
                let _ = writeln!(o);
            }
            if !flagged.is_empty() {
                let _ = writeln!(
                    o,
                    "- Flagged runs (server busy < {BUSY_FLAG}; the load tool's busy in brackets, where sampled): {}",
                    flagged_list(&flagged)
                );
            }
            for n in &b.notes {
                let _ = writeln!(o, "- {n}");
            }
            let _ = writeln!(o);
        }
    }
    if !cx.notes.is_empty() {
        let _ = writeln!(o, "### Notes\n");
        for n in &cx.notes {
            let _ = writeln!(o, "- {n}");
        }
        let _ = writeln!(o);
    }
    o
}

/// Where the generated results go in BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench-runner results: begin -->";
/// The end of that region.
pub const END: &str = "<!-- bench-runner results: end -->";

/// `doc` with the text between [`BEGIN`] and [`END`] replaced by `results`; None without the
/// markers.
pub fn splice(doc: &str, results: &str) -> Option<String> {
    let a = doc.find(BEGIN)? + BEGIN.len();
    let b = a + doc[a..].find(END)?;
    Some(format!(
        "{}\n\n{}\n{}",
        &doc[..a],
        results.trim_end(),
        &doc[b..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_figures_keep_three_significant_digits() {
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(2.443), "2.44");
        assert_eq!(fmt_num(0.057), "0.057");
        assert_eq!(fmt_num(0.0), "0.000");
        assert_eq!(fmt_num(0.00021), "0.000210");
        assert_eq!(fmt_num(0.0057), "0.00570");
        assert_eq!(fmt_num(f64::NAN), "-");
    }

    #[test]
    fn cs_columns_and_ratios_come_from_the_syscall_pass() {
        use crate::switches::Switches;
        let mut b = Bench {
            name: "echo-d16".into(),
            servers: vec!["eventide".into(), "peer".into()],
            eventide: Some("eventide".into()),
            ..Default::default()
        };
        for (server, vol, requests) in [("eventide", 300, 10_000), ("peer", 100, 5_000)] {
            let st = SyscallStats {
                syscalls: requests / 8,
                switches: Some(Switches {
                    voluntary: vol,
                    involuntary: 0,
                }),
                requests,
                ..Default::default()
            };
            b.syscalls.insert(server.into(), st);
        }
        let (header, rows) = rows(&b);
        let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
        let (vol, invol) = (col("vol cs/req"), col("invol cs/req"));
        assert_eq!(rows[0][vol], "0.030");
        assert_eq!(rows[1][vol], "0.020");
        assert_eq!(rows[0][invol], "0.000");
        assert_eq!(rows[2][0], "ratio eventide/peer");
        assert_eq!(rows[2][vol], "1.50×");
        // A zero in the peer gives no ratio rather than infinity.
        assert_eq!(rows[2][invol], "-");
    }
}
