//! [`Stats`] for monitoring systems: the Prometheus text exposition format
//! ([`Stats::prometheus`]), and with the `metrics` feature the
//! [`metrics`](https://docs.rs/metrics) facade ([`Stats::record_metrics`]).
//!
//! Every metric is one row of [`LOOP_METRICS`] or [`SERVER_METRICS`]: its name, kind, help
//! text and the function that reads it. A loop metric is exported twice — per loop, as
//! `eventide_loop_NAME{loop="I"}`, and for the whole server as `eventide_NAME` — so a
//! dashboard reads totals without a query and an imbalance between loops still shows.
//! Per-loop and total series live in different families on purpose: one family holding both
//! would make `sum()` count everything twice.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::server::Server;
use crate::shared::ServerShared;
use crate::stats::{LoopStatsSnapshot, Stats};

/// Whether a metric only goes up (restarting from zero with the process) or goes both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Where a metric's value comes from: one number, or one number per value of a label.
#[derive(Clone, Copy)]
enum Read<T> {
    One(fn(&T) -> u64),
    ByLabel(&'static str, fn(&T) -> Vec<(&'static str, u64)>),
}

/// One exported metric: `name` without the `eventide_` (and per-loop `eventide_loop_`)
/// prefix; counters end in `_total`, as the format asks.
struct Metric<T: 'static> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: Read<T>,
}

const fn counter<T>(name: &'static str, help: &'static str, f: fn(&T) -> u64) -> Metric<T> {
    Metric {
        name,
        kind: Kind::Counter,
        help,
        read: Read::One(f),
    }
}

const fn gauge<T>(name: &'static str, help: &'static str, f: fn(&T) -> u64) -> Metric<T> {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
        read: Read::One(f),
    }
}

type Snap = LoopStatsSnapshot;

/// The counters and gauges every loop keeps. Adding one is one line here.
#[rustfmt::skip]
const LOOP_METRICS: &[Metric<Snap>] = &[
    gauge("connections_open", "Open connections, including ones closing gracefully.", |s| s.connections),
    counter("connections_accepted_total", "Connections accepted and opened.", |s| s.accepted),
    counter("connections_refused_total", "Connections refused: at the connection limit, or by on_open.", |s| s.refused),
    Metric {
        name: "connections_refused_by_reason_total",
        kind: Kind::Counter,
        help: "Connections refused, by why: the connection limit, or the Refusal on_open returned.",
        read: Read::ByLabel("reason", |s| s.refused_by_reason.iter().collect()),
    },
    counter("accept_errors_total", "accept(2) failures (a descriptor or memory shortage backs the listener off).", |s| s.accept_errors),
    counter("connections_closed_total", "Connections closed.", |s| s.closed),
    Metric {
        name: "connections_closed_by_reason_total",
        kind: Kind::Counter,
        help: "Connections closed, by the reason on_close was given.",
        read: Read::ByLabel("reason", |s| s.closed_by_reason.iter().collect()),
    },
    counter("connects_total", "Outbound connects started.", |s| s.connects),
    counter("connects_established_total", "Outbound connections established.", |s| s.connected),
    counter("connect_errors_total", "Outbound connects that failed.", |s| s.connect_errors),
    counter("bytes_in_total", "Bytes read from connections.", |s| s.bytes_in),
    counter("bytes_out_total", "Bytes written to connections.", |s| s.bytes_out),
    gauge("pending_output_bytes", "Bytes waiting in connections' output buffers.", |s| s.pending_output),
    gauge("peak_pending_output_bytes", "The largest output buffer one connection has had.", |s| s.peak_pending_output),
    counter("epoll_waits_total", "epoll_wait calls.", |s| s.epoll_waits),
    counter("epoll_events_total", "Events epoll_wait returned.", |s| s.events),
    counter("eventfd_writes_total", "Writes to the loop's wake-up eventfd.", |s| s.eventfd_writes),
    counter("tasks_total", "Cross-thread tasks run.", |s| s.tasks),
    counter("timers_fired_total", "Timers fired.", |s| s.timers_fired),
    counter("panics_total", "Callbacks that panicked.", |s| s.panics),
    counter("datagrams_in_total", "UDP datagrams received.", |s| s.datagrams_in),
    counter("datagrams_out_total", "UDP datagrams sent.", |s| s.datagrams_out),
    counter("datagrams_truncated_total", "UDP datagrams received cut at the maximum size.", |s| s.datagrams_truncated),
    counter("datagrams_dropped_total", "UDP replies dropped (send queue full, or refused by the kernel).", |s| s.datagrams_dropped),
    counter("tls_handshakes_total", "TLS handshakes completed.", |s| s.tls_handshakes),
    counter("tls_handshake_errors_total", "TLS handshakes that failed.", |s| s.tls_handshake_errors),
    counter("group_delivered_total", "Group broadcasts handed to a member's output, once per member.", |s| s.group_delivered),
    counter("group_dropped_total", "Group broadcasts a member did not get (too far behind, or its write side shut).", |s| s.group_dropped),
];

/// What only the server as a whole has.
#[rustfmt::skip]
const SERVER_METRICS: &[Metric<Stats>] = &[
    gauge("loops", "Event loops.", |s| s.loops.len() as u64),
    gauge("worker_queue_jobs", "Worker-pool jobs queued and not yet started.", |s| s.worker_queue),
];

/// The HTTP `Content-Type` of [`Stats::prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Stats {
    /// The counters in the Prometheus text exposition format (version 0.0.4), for a
    /// `/metrics` endpoint (serve it with [`PROMETHEUS_CONTENT_TYPE`]).
    ///
    /// Each loop counter appears per loop (`eventide_loop_bytes_in_total{loop="0"}`) and for
    /// the whole server (`eventide_bytes_in_total`); connections closed are also counted by
    /// reason (`eventide_connections_closed_by_reason_total{reason="idle_timeout"}`).
    ///
    /// ```
    /// # use eventide::Stats;
    /// let text = Stats::default().prometheus();
    /// assert!(text.contains("# TYPE eventide_bytes_in_total counter\neventide_bytes_in_total 0\n"));
    /// ```
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.write_prometheus(&mut out);
        out
    }

    /// [`prometheus`](Stats::prometheus), appended to `out`.
    pub fn write_prometheus(&self, out: &mut String) {
        let total = self.total();
        for m in LOOP_METRICS {
            family(out, "eventide_", m, std::iter::once(("", &total)));
            let loops = self.loops.iter().enumerate();
            let labelled: Vec<(String, &Snap)> =
                loops.map(|(i, s)| (format!("loop=\"{i}\""), s)).collect();
            let rows = labelled.iter().map(|(l, s)| (l.as_str(), *s));
            family(out, "eventide_loop_", m, rows);
        }
        for m in SERVER_METRICS {
            family(out, "eventide_", m, std::iter::once(("", self)));
        }
    }
}

/// Writes one metric family: `# HELP`, `# TYPE` and a sample per row (`labels` is the text
/// inside the braces, empty for none).
fn family<'a, T: 'a>(
    out: &mut String,
    prefix: &str,
    m: &Metric<T>,
    rows: impl Iterator<Item = (&'a str, &'a T)>,
) {
    let name = m.name;
    let _ = writeln!(out, "# HELP {prefix}{name} {}", m.help);
    let _ = writeln!(out, "# TYPE {prefix}{name} {}", m.kind.as_str());
    for (labels, source) in rows {
        match m.read {
            Read::One(f) => sample(out, prefix, name, labels, None, f(source)),
            Read::ByLabel(key, f) => {
                for (value, n) in f(source) {
                    sample(out, prefix, name, labels, Some((key, value)), n);
                }
            }
        }
    }
}

fn sample(
    out: &mut String,
    prefix: &str,
    name: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
    value: u64,
) {
    let _ = write!(out, "{prefix}{name}");
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (false, None) => {
            let _ = write!(out, "{{{labels}}}");
        }
        (true, Some((k, v))) => {
            let _ = write!(out, "{{{k}=\"{v}\"}}");
        }
        (false, Some((k, v))) => {
            let _ = write!(out, "{{{labels},{k}=\"{v}\"}}");
        }
    }
    let _ = writeln!(out, " {value}");
}

/// Reads a running server's [`Stats`] from anywhere, e.g. from a handler serving
/// `/metrics` (`Send + Sync`, cheap to clone). Get one with [`Server::stats_handle`].
#[derive(Clone)]
pub struct StatsHandle {
    shared: Arc<ServerShared>,
}

impl StatsHandle {
    /// The counters now (the same as [`Server::stats`]).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The counters now, in the Prometheus text format (see [`Stats::prometheus`]).
    pub fn prometheus(&self) -> String {
        self.stats().prometheus()
    }
}

impl std::fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsHandle")
            .field("loops", &self.shared.loops.len())
            .finish()
    }
}

impl Server {
    /// A handle that reads this server's counters from any thread, also after the server
    /// has been moved into [`join`](Server::join) or
    /// [`run_until_signal`](Server::run_until_signal).
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            shared: Arc::clone(self.shared()),
        }
    }
}

#[cfg(feature = "metrics")]
impl Stats {
    /// Publishes the counters to the [`metrics`](https://docs.rs/metrics) facade's installed
    /// recorder (feature `metrics`): the same names and labels as
    /// [`prometheus`](Stats::prometheus), counters set with `absolute`, gauges with `set`.
    /// Call it periodically (from a timer, or before each scrape); without a recorder it
    /// does nothing.
    pub fn record_metrics(&self) {
        let total = self.total();
        for m in LOOP_METRICS {
            record(m, &total, "eventide_", &[]);
            for (i, s) in self.loops.iter().enumerate() {
                record(m, s, "eventide_loop_", &[("loop", i.to_string())]);
            }
        }
        for m in SERVER_METRICS {
            record(m, self, "eventide_", &[]);
        }
    }
}

#[cfg(feature = "metrics")]
fn record<T>(m: &Metric<T>, source: &T, prefix: &str, labels: &[(&'static str, String)]) {
    let name = format!("{prefix}{}", m.name);
    let emit = |extra: Option<(&'static str, &'static str)>, value: u64| {
        let mut all: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
            .collect();
        if let Some((k, v)) = extra {
            all.push(metrics::Label::new(k, v));
        }
        match m.kind {
            Kind::Counter => metrics::counter!(name.clone(), all).absolute(value),
            Kind::Gauge => metrics::gauge!(name.clone(), all).set(value as f64),
        }
    };
    match m.read {
        Read::One(f) => emit(None, f(source)),
        Read::ByLabel(key, f) => {
            for (value, n) in f(source) {
                emit(Some((key, value)), n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn two_loops() -> Stats {
        let a = LoopStatsSnapshot {
            bytes_in: 10,
            connections: 2,
            ..LoopStatsSnapshot::default()
        };
        let b = LoopStatsSnapshot {
            bytes_in: 5,
            ..LoopStatsSnapshot::default()
        };
        Stats {
            loops: vec![a, b],
            worker_queue: 3,
        }
    }

    #[test]
    fn totals_and_per_loop_series() {
        let text = two_loops().prometheus();
        for line in [
            "eventide_bytes_in_total 15",
            "eventide_loop_bytes_in_total{loop=\"0\"} 10",
            "eventide_loop_bytes_in_total{loop=\"1\"} 5",
            "eventide_connections_open 2",
            "eventide_loop_connections_closed_by_reason_total{loop=\"1\",reason=\"idle_timeout\"} 0",
            "eventide_connections_closed_by_reason_total{reason=\"peer_closed\"} 0",
            "eventide_worker_queue_jobs 3",
            "eventide_loops 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_family_is_declared_once_and_named_by_the_rules() {
        let text = two_loops().prometheus();
        let mut declared = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
                assert_eq!(
                    kind == "counter",
                    name.ends_with("_total"),
                    "{name} is a {kind}"
                );
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its TYPE");
            }
        }
        let expected = 2 * LOOP_METRICS.len() + SERVER_METRICS.len();
        assert_eq!(declared.len(), expected);
    }
}
