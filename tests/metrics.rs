//! The http demo's `/metrics`, read by a real Prometheus parser (Python `prometheus_client`),
//! with values that move as the test drives load: connections, bytes, closes by reason.

mod demo_util;
mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use demo_util::{missing, Demo, TIMEOUT};

/// Parses exposition text with `prometheus_client`: sample (name plus sorted labels) →
/// (family type, value). `None` (outside CI) when Python or the package is missing.
fn parse(text: &str) -> Option<HashMap<String, (String, f64)>> {
    const SCRIPT: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
        print(fam.type, "%s{%s}" % (s.name, labels), repr(s.value))
"#;
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return missing("python3 with prometheus_client (pip install prometheus_client)");
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the parser rejected:\n{text}");
    let mut samples = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut parts = line.splitn(3, ' ');
        let (kind, name, value) = (parts.next(), parts.next(), parts.next());
        let (Some(kind), Some(name), Some(value)) = (kind, name, value) else {
            panic!("unexpected parser output {line:?}");
        };
        samples.insert(name.to_string(), (kind.to_string(), value.parse().unwrap()));
    }
    Some(samples)
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns (head, body, bytes).
fn read_response(r: &mut BufReader<TcpStream>) -> (String, Vec<u8>, usize) {
    let mut head = String::new();
    loop {
        let before = head.len();
        r.read_line(&mut head).unwrap();
        assert!(
            head.len() > before,
            "connection closed inside a response head"
        );
        if head.ends_with("\r\n\r\n") {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length header")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let bytes = head.len() + len;
    (head, body, bytes)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// One scrape over its own connection: the parsed samples and the request and response
/// sizes (what the scrape itself adds to the byte counters).
struct Scrape {
    samples: HashMap<String, (String, f64)>,
    request_bytes: usize,
    response_bytes: usize,
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

fn scrape(addr: SocketAddr) -> Option<Scrape> {
    let mut s = connect(addr);
    s.write_all(SCRAPE).unwrap();
    let mut r = BufReader::new(s);
    let (head, body, response_bytes) = read_response(&mut r);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = parse(std::str::from_utf8(&body).unwrap())?;
    Some(Scrape {
        samples,
        request_bytes: SCRAPE.len(),
        response_bytes,
    })
}

impl Scrape {
    fn get(&self, sample: &str) -> f64 {
        match self.samples.get(sample) {
            Some((_, v)) => *v,
            None => panic!("no sample {sample}"),
        }
    }

    fn kind(&self, sample: &str) -> &str {
        &self.samples[sample].0
    }

    /// Every per-loop sample adds up to its total (peaks are maxima, not sums).
    fn check_loops_add_up(&self, loops: usize) {
        let mut sums: HashMap<String, f64> = HashMap::new();
        for (name, (_, v)) in &self.samples {
            let Some(rest) = name.strip_prefix("eventide_loop_") else {
                continue;
            };
            let (metric, labels) = rest.split_once('{').unwrap();
            let labels: Vec<&str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.starts_with("loop=") && !l.is_empty())
                .collect();
            *sums
                .entry(format!("eventide_{metric}{{{}}}", labels.join(",")))
                .or_default() += v;
        }
        for (total, sum) in sums {
            if !total.starts_with("eventide_peak_") {
                assert_eq!(self.get(&total), sum, "{total}: loops add up to {sum}");
            }
        }
        assert_eq!(self.get("eventide_loops{}"), loops as f64);
    }
}

const PLAINTEXT: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n";

#[test]
fn metrics_parse_and_follow_the_load() {
    let Some(demo) = Demo::start("http", &["--addr", "127.0.0.1:0", "--loops", "2"]) else {
        return;
    };
    let addr = demo.tcp();
    let Some(before) = scrape(addr) else {
        return;
    };
    before.check_loops_add_up(2);
    assert_eq!(before.kind("eventide_bytes_in_total{}"), "counter");
    assert_eq!(before.kind("eventide_connections_open{}"), "gauge");
    assert_eq!(
        before.get("eventide_connections_open{}"),
        1.0,
        "the scrape's own"
    );

    // Load: connections that each send a few keep-alive requests; some stay open idle.
    const CONNS: usize = 24;
    const REQUESTS: usize = 3;
    const HELD: usize = 8;
    let (mut sent, mut received) = (0, 0);
    let mut held = Vec::new();
    for i in 0..CONNS {
        let mut r = BufReader::new(connect(addr));
        for _ in 0..REQUESTS {
            r.get_mut().write_all(PLAINTEXT).unwrap();
            sent += PLAINTEXT.len();
            let (head, body, n) = read_response(&mut r);
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            assert_eq!(body, b"Hello, World!");
            received += n;
        }
        if i < HELD {
            held.push(r);
        }
    }
    let delta = |s: &Scrape, name: &str| s.get(name) - before.get(name);
    // A loop counts bytes written just after the write, so a client (and a scrape served by
    // the other loop) can see a response before it is counted: scrape until every byte the
    // clients received is, adding what the scrapes in between wrote themselves.
    let (mut scrapes, mut scraped_out) = (0, before.response_bytes);
    let during = util::wait_for("bytes out count every byte written", || {
        let s = scrape(addr).expect("the parser was there a moment ago");
        scrapes += 1;
        let out = delta(&s, "eventide_bytes_out_total{}");
        let expected = (received + scraped_out) as f64;
        assert!(
            out <= expected,
            "{out} bytes out counted, {expected} written"
        );
        scraped_out += s.response_bytes;
        (out == expected).then_some(s)
    });
    during.check_loops_add_up(2);
    // Connections are counted when opened and bytes in when read, before any answer: exact.
    // This scrape's request was read before the page was rendered.
    assert_eq!(
        delta(&during, "eventide_connections_accepted_total{}"),
        (CONNS + scrapes) as f64
    );
    assert_eq!(
        delta(&during, "eventide_bytes_in_total{}"),
        (sent + scrapes * during.request_bytes) as f64
    );
    assert!(during.get("eventide_connections_open{}") >= (HELD + 1) as f64);
    let per_loop: Vec<f64> = (0..2)
        .map(|i| {
            during.get(&format!(
                "eventide_loop_connections_accepted_total{{loop=\"{i}\"}}"
            ))
        })
        .collect();
    assert!(
        per_loop.iter().all(|&n| n > 0.0),
        "both loops served: {per_loop:?}"
    );

    // Closing the held connections shows in the close counters, by reason.
    drop(held);
    let after = util::wait_for("the server counts the closes", || {
        let s = scrape(addr).unwrap();
        let closed = delta(&s, "eventide_connections_closed_total{}");
        (closed >= (CONNS + 1) as f64).then_some(s)
    });
    after.check_loops_add_up(2);
    let by_reason: f64 = after
        .samples
        .iter()
        .filter(|(n, _)| n.starts_with("eventide_connections_closed_by_reason_total{"))
        .map(|(_, (_, v))| v)
        .sum();
    // A close is counted by reason when on_close runs, and as closed once its lingering
    // close ends: the reasons can only be ahead, by the closes still lingering.
    let closed = after.get("eventide_connections_closed_total{}");
    assert!(
        by_reason >= closed,
        "{by_reason} closes by reason, {closed} closed"
    );
    assert!(by_reason >= (CONNS + 1) as f64);
    demo.stop("-TERM");
}

/// With the `metrics` feature, the same counters reach the `metrics` facade's recorder.
#[cfg(feature = "metrics")]
#[test]
fn stats_reach_the_metrics_facade() {
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata};
    use metrics::{Recorder, SharedString, Unit};

    type Values = Arc<Mutex<HashMap<String, f64>>>;

    /// A recorder that keeps the last value of every series, named as in the text format.
    #[derive(Default)]
    struct Keep(Values);

    struct Series(String, Values);

    impl CounterFn for Series {
        fn increment(&self, n: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += n as f64;
        }
        fn absolute(&self, n: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), n as f64);
        }
    }

    impl GaugeFn for Series {
        fn increment(&self, n: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += n;
        }
        fn decrement(&self, n: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= n;
        }
        fn set(&self, n: f64) {
            self.1.lock().unwrap().insert(self.0.clone(), n);
        }
    }

    impl Keep {
        fn series(&self, key: &Key) -> Arc<Series> {
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            Arc::new(Series(name, Arc::clone(&self.0)))
        }
    }

    impl Recorder for Keep {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.series(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.series(key))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    let server = eventide::Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(|_| eventide::http::HttpServer::new(Hello))
        .unwrap();
    let mut r = BufReader::new(connect(server.local_addr()));
    r.get_mut().write_all(PLAINTEXT).unwrap();
    let (_, body, received) = read_response(&mut r);
    assert_eq!(body, b"hi");
    // The loop counts the bytes just after writing them: wait until it has.
    util::wait_until("the response is counted", || {
        server.stats().total().bytes_out >= received as u64
    });
    let recorder = Keep::default();
    metrics::with_local_recorder(&recorder, || server.stats().record_metrics());
    let values = recorder.0.lock().unwrap().clone();
    let text = server.stats().prometheus();
    // Every sample of the text format, with the same name, labels and value.
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let series = if series.contains('{') {
            series.to_string()
        } else {
            format!("{series}{{}}")
        };
        let value: f64 = value.parse().unwrap();
        assert_eq!(values.get(&series), Some(&value), "{series}");
        samples += 1;
    }
    assert_eq!(values.len(), samples);
    assert_eq!(values["eventide_bytes_in_total{}"], PLAINTEXT.len() as f64);
    assert_eq!(values["eventide_bytes_out_total{}"], received as f64);
}

#[cfg(feature = "metrics")]
struct Hello;

#[cfg(feature = "metrics")]
impl eventide::http::Service for Hello {
    fn call(&mut self, _: &eventide::http::Request<'_>, res: &mut eventide::http::Response<'_>) {
        res.body(b"hi");
    }
}
