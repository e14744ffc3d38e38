//! The targets: each a PASS/MISS/SKIP verdict on eventide against the best of the peers it
//! names, or against an absolute bound.

use std::fmt::Write as _;

use crate::report::{fmt_opt, Bench, Get};

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

pub fn find<'a>(benches: &'a [Bench], name: &str) -> Option<&'a Bench> {
    benches.iter().find(|b| b.name == name)
}

/// eventide against the best of `peers` (all of them when empty) on figure `g` (lower is
/// better), target `≤ limit×`.
fn ratio_verdict(
    benches: &[Bench],
    bench: &str,
    peers: &[&str],
    metric: &str,
    g: Get,
    limit: f64,
) -> Verdict {
    let found = find(benches, bench).and_then(|b| {
        let ev = b.eventide.as_ref()?;
        let a = b.summary(ev).get(g)?;
        let (best, p) = b.best_peer(peers, g, false)?;
        (p > 0.0).then(|| (a / p, best))
    });
    let against = match (peers, &found) {
        (_, Some((_, best))) if peers.len() != 1 => format!("best of {} ({best})", peer_set(peers)),
        ([one], _) => one.to_string(),
        _ => format!("best of {}", peer_set(peers)),
    };
    let value = found.map(|(v, _)| v);
    Verdict {
        what: format!("{bench}: {metric}, eventide / {against}"),
        target: format!("≤ {limit}×"),
        value,
        outcome: outcome(value, |v| v <= limit),
    }
}

fn peer_set(peers: &[&str]) -> String {
    if peers.is_empty() {
        "the peers".into()
    } else {
        peers.join(", ")
    }
}

fn outcome(value: Option<f64>, pass: impl Fn(f64) -> bool) -> Outcome {
    match value {
        Some(v) if pass(v) => Outcome::Pass,
        Some(_) => Outcome::Miss,
        None => Outcome::Skip,
    }
}

/// eventide's own figure `g` in `bench` against an absolute bound.
fn absolute_verdict(
    benches: &[Bench],
    bench: &str,
    what: &str,
    g: Get,
    at_most: bool,
    limit: f64,
    unit: &str,
) -> Verdict {
    let value = find(benches, bench).and_then(|b| b.summary(b.eventide.as_ref()?).get(g));
    Verdict {
        what: format!("{bench}: eventide {what}"),
        target: format!("{} {limit}{unit}", if at_most { "≤" } else { "≥" }),
        value,
        outcome: outcome(value, |v| if at_most { v <= limit } else { v >= limit }),
    }
}

/// The tokio echo peers: the idiomatic one and the memory-careful one.
pub const TOKIO_ECHO: &[&str] = &["tokio-echo", "tokio-echo-lean"];
/// The tokio-rustls echo peers.
pub const TOKIO_TLS: &[&str] = &["tokio-tls-echo", "tokio-tls-echo-lean"];

/// The targets of the benchmark issues, each against the best of the peers it names.
pub fn verdicts(benches: &[Bench]) -> Vec<Verdict> {
    let cpu = Get::Std(|s| s.cpu_us);
    let sys = Get::Std(|s| s.sys_per_req);
    let p99 = Get::Std(|s| s.p99);
    let idle = Get::Std(|s| s.bytes_per_conn);
    let mut v = Vec::new();
    for b in ["echo-d1", "echo-d16"] {
        v.push(ratio_verdict(benches, b, TOKIO_ECHO, "CPU/msg", cpu, 0.85));
    }
    for b in ["echo-d1", "echo-d16"] {
        v.push(ratio_verdict(
            benches,
            b,
            TOKIO_ECHO,
            "syscalls/msg",
            sys,
            0.8,
        ));
    }
    v.push(ratio_verdict(
        benches,
        "echo-d1",
        TOKIO_ECHO,
        "p99 latency",
        p99,
        1.1,
    ));
    for b in ["http-plain", "http-pipe16"] {
        v.push(ratio_verdict(
            benches,
            b,
            &["hyper-http"],
            "CPU/req",
            cpu,
            0.77,
        ));
        v.push(ratio_verdict(
            benches,
            b,
            &["tokio-http"],
            "CPU/req",
            cpu,
            0.9,
        ));
    }
    for b in ["resp-p1 SET", "resp-p1 GET", "resp-p16 SET", "resp-p16 GET"] {
        v.push(ratio_verdict(
            benches,
            b,
            &["redis-server"],
            "CPU/req",
            cpu,
            1.0,
        ));
    }
    v.push(absolute_verdict(
        benches,
        "idle-mem",
        "resident bytes per idle connection",
        idle,
        true,
        256.0,
        " B",
    ));
    v.push(ratio_verdict(
        benches, "tls-echo", TOKIO_TLS, "CPU/msg", cpu, 0.85,
    ));
    v.push(ratio_verdict(
        benches,
        "tls-echo-d16",
        TOKIO_TLS,
        "CPU/msg",
        cpu,
        0.75,
    ));
    v.push(ratio_verdict(
        benches,
        "tls-echo-16k",
        TOKIO_TLS,
        "CPU/msg",
        cpu,
        0.75,
    ));
    v.push(absolute_verdict(
        benches,
        "tls-echo",
        "resident bytes per idle TLS connection",
        idle,
        true,
        7849.0,
        " B",
    ));
    v.push(absolute_verdict(
        benches,
        "conns",
        "resident bytes per idle connection",
        Get::Extra(crate::conns::RSS),
        true,
        200.0,
        " B",
    ));
    v.push(absolute_verdict(
        benches,
        "conns",
        "active-set p99 with the idle ones / without",
        Get::Extra(crate::conns::P99_RATIO),
        true,
        1.3,
        "×",
    ));
    v.push(absolute_verdict(
        benches,
        "conns",
        "accepts per second of one loop's CPU",
        Get::Extra(crate::conns::ACCEPTS_PER_CPU_S),
        false,
        100_000.0,
        "",
    ));
    v.push(absolute_verdict(
        benches,
        "conns",
        "graceful stop with every connection open",
        Get::Extra(crate::conns::STOP_MS),
        true,
        1000.0,
        " ms",
    ));
    for b in ["ws-d1", "ws-d16"] {
        v.push(ratio_verdict(
            benches,
            b,
            &["tokio-ws-echo"],
            "CPU/msg",
            cpu,
            0.7,
        ));
    }
    for b in ["broadcast", "broadcast-lines"] {
        v.push(ratio_verdict(
            benches,
            b,
            &["tokio-chat"],
            "CPU/delivered msg",
            cpu,
            0.7,
        ));
    }
    v.retain(|x| {
        x.outcome != Outcome::Skip
            || find(benches, x.what.split(':').next().unwrap_or("")).is_some()
    });
    v
}

/// The instruction-count target: user-space instructions per TLS message ≤ 0.7× tokio-rustls.
pub fn callgrind_verdicts(benches: &[Bench]) -> Vec<Verdict> {
    let instr = Get::Extra(crate::callgrind::INSTR);
    ["tls-echo", "tls-echo-d16", "tls-echo-16k"]
        .iter()
        .filter(|b| find(benches, b).is_some())
        .map(|b| {
            ratio_verdict(
                benches,
                b,
                TOKIO_TLS,
                "user-space instructions/msg",
                instr,
                0.7,
            )
        })
        .collect()
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
