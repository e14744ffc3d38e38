//! Running the load tools (echo-load, udp-load, wrk, redis-benchmark) against a started server, sampling
//! the server's CPU time around the measured window, and parsing the tools' reports.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::{self, tail, LineReader, Server, Stopped};

/// One timed run of one server.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Round number (0-based).
    pub round: usize,
    /// Server CPU seconds (utime + stime) during the window.
    pub cpu_s: f64,
    /// The part of `cpu_s` spent in the kernel (stime).
    pub system_s: f64,
    /// Wall seconds of the window.
    pub wall_s: f64,
    /// Requests (messages) completed in the window, as counted by the load tool.
    pub requests: u64,
    /// Throughput reported by the load tool (requests/s).
    pub rps: f64,
    /// Latency percentiles and max, µs (what the tool can report).
    pub p50_us: Option<f64>,
    /// p99, µs.
    pub p99_us: Option<f64>,
    /// p99.9, µs.
    pub p999_us: Option<f64>,
    /// Maximum, µs.
    pub max_us: Option<f64>,
    /// The load tool's CPU seconds over the same window, where it is sampled (the tools that
    /// print marks): whether the client, not the server, set the pace.
    pub load_cpu_s: Option<f64>,
}

impl Sample {
    /// Fraction of the window the server's core was busy.
    pub fn busy(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.cpu_s / self.wall_s
        } else {
            0.0
        }
    }

    /// Fraction of the window the load tool's core was busy, where it was sampled.
    pub fn load_busy(&self) -> Option<f64> {
        self.load_cpu_s
            .filter(|_| self.wall_s > 0.0)
            .map(|c| c / self.wall_s)
    }

    /// Fraction of the server's CPU time spent in the kernel.
    pub fn kernel_share(&self) -> f64 {
        if self.cpu_s > 0.0 {
            self.system_s / self.cpu_s
        } else {
            f64::NAN
        }
    }

    /// Server CPU µs per request.
    pub fn cpu_us_per_req(&self) -> f64 {
        if self.requests > 0 {
            self.cpu_s * 1e6 / self.requests as f64
        } else {
            f64::NAN
        }
    }
}

/// Runs `cmd` (already pinned) to completion with a timeout, capturing stdout and stderr.
fn run_captured(mut cmd: Command, timeout: Duration, what: &str) -> io::Result<(String, String)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("spawn {what}: {e}")))?;
    let out = procs::spawn_collect(child.stdout.take().expect("piped"));
    let err = procs::spawn_collect(child.stderr.take().expect("piped"));
    let status = procs::wait_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok((out, err)),
        Some(s) => Err(io::Error::other(format!(
            "{what} exited with {s}{}{}",
            tail(&out),
            tail(&err)
        ))),
        None => Err(io::Error::other(format!(
            "{what} timed out after {timeout:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// echo-load

/// Echo load parameters.
#[derive(Debug, Clone, Copy)]
pub struct EchoParams {
    /// Connections.
    pub conns: usize,
    /// Message size, bytes.
    pub size: usize,
    /// Messages in flight per connection.
    pub depth: usize,
}

fn echo_command(
    bin: &Path,
    server: &Server,
    p: EchoParams,
    secs: f64,
    warmup: f64,
    extra: &[String],
) -> Command {
    let mut c = procs::load_command(&bin.to_string_lossy());
    c.args(extra);
    c.arg("--addr")
        .arg(server.addr.to_string())
        .args(["--conns", &p.conns.to_string()])
        .args(["--size", &p.size.to_string()])
        .args(["--depth", &p.depth.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .arg("--json");
    c
}

/// A timed echo run: CPU sampled at echo-load's `MARK start` / `MARK end` lines.
pub fn echo_timed(
    bin: &Path,
    server: &Server,
    p: EchoParams,
    secs: f64,
    warmup: f64,
    round: usize,
) -> io::Result<Sample> {
    echo_timed_with(bin, server, p, secs, warmup, round, &[])
}

/// [`echo_timed`] with extra echo-load arguments (`--tls --ca PEM`).
pub fn echo_timed_with(
    bin: &Path,
    server: &Server,
    p: EchoParams,
    secs: f64,
    warmup: f64,
    round: usize,
    extra: &[String],
) -> io::Result<Sample> {
    let cmd = echo_command(bin, server, p, secs, warmup, extra);
    marked_run(cmd, "echo-load", server, secs + warmup, round)
}

/// Runs a load tool that prints `MARK start` / `MARK end` around its measured window and then
/// a JSON report (echo-load, udp-load with `--marks --json`), sampling the server's CPU time,
/// and the tool's own, at the marks.
pub fn marked_run(
    cmd: Command,
    what: &str,
    server: &Server,
    secs: f64,
    round: usize,
) -> io::Result<Sample> {
    let (mut start, mut end) = (None, None);
    let v = run_with_marks(cmd, what, secs, |mark, load| {
        let at = Some((server.cpu_time()?, procs::cpu_time(load)?, Instant::now()));
        match mark {
            Mark::Start => start = at,
            Mark::End => end = at,
        }
        Ok(())
    })?;
    let (Some((c0, l0, t0)), Some((c1, l1, t1))) = (start, end) else {
        return Err(io::Error::other(format!("{what} gave no marks")));
    };
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    Ok(Sample {
        round,
        cpu_s: (c1 - c0).total(),
        system_s: (c1 - c0).system_s,
        wall_s: t1.duration_since(t0).as_secs_f64(),
        requests: f("msgs").unwrap_or(0.0) as u64,
        rps: f("msgs_per_sec").unwrap_or(0.0),
        p50_us: f("p50_us"),
        p99_us: f("p99_us"),
        p999_us: f("p999_us"),
        max_us: f("max_us"),
        load_cpu_s: Some((l1 - l0).total()),
    })
}

/// The two lines a load tool prints around its measured window (`--marks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Start,
    End,
}

/// Runs a load tool with `--marks`, calls `on_mark` with the tool's pid as each mark is read
/// (so the window is measured where the tool measures it), and returns its JSON report once
/// it exits cleanly.
/// `secs` is how long the tool is meant to run; it is given a minute more.
pub fn run_with_marks(
    mut cmd: Command,
    what: &str,
    secs: f64,
    mut on_mark: impl FnMut(Mark, u32) -> io::Result<()>,
) -> io::Result<serde_json::Value> {
    cmd.arg("--marks")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    // `taskset` execs the tool, so the pid is the tool's.
    let pid = child.id();
    let lines = LineReader::new(child.stdout.take().expect("piped"));
    let err = procs::spawn_collect(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + Duration::from_secs_f64(secs + 60.0);
    let mut json = None;
    let mut marks = 0;
    while let Ok(line) = lines.next(deadline.saturating_duration_since(Instant::now())) {
        match line.trim() {
            "MARK start" => {
                on_mark(Mark::Start, pid)?;
                marks += 1;
            }
            "MARK end" => {
                on_mark(Mark::End, pid)?;
                marks += 1;
            }
            l if l.starts_with('{') => json = Some(l.to_string()),
            _ => {}
        }
    }
    let status = procs::wait_timeout(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(io::Error::other(format!(
                "{what} exited with {s}{}",
                tail(&err)
            )))
        }
        None => return Err(io::Error::other(format!("{what} timed out"))),
    }
    let (2, Some(json)) = (marks, json) else {
        return Err(io::Error::other(format!(
            "{what} gave no marks/report{}",
            tail(&err)
        )));
    };
    serde_json::from_str(&json)
        .map_err(|e| io::Error::other(format!("{what} report {json:?}: {e}")))
}

/// A fixed amount of echo work (`--requests n`, for instruction counts): returns the messages
/// completed.
pub fn echo_requests(
    bin: &Path,
    server: &Server,
    p: EchoParams,
    n: u64,
    extra: &[String],
) -> io::Result<u64> {
    let mut cmd = echo_command(bin, server, p, 1.0, 0.0, extra);
    cmd.args(["--requests", &n.to_string()]);
    total_msgs(cmd, "echo-load", 600.0)
}

/// An untimed echo run (syscall pass): returns every message completed, warm-up included.
pub fn echo_total(bin: &Path, server: &Server, p: EchoParams, secs: f64) -> io::Result<u64> {
    echo_total_with(bin, server, p, secs, &[])
}

/// [`echo_total`] with extra echo-load arguments.
pub fn echo_total_with(
    bin: &Path,
    server: &Server,
    p: EchoParams,
    secs: f64,
    extra: &[String],
) -> io::Result<u64> {
    let cmd = echo_command(bin, server, p, secs, 0.0, extra);
    total_msgs(cmd, "echo-load", secs)
}

/// Runs a load tool to completion and returns the `total_msgs` of its JSON report.
pub fn total_msgs(cmd: Command, what: &str, secs: f64) -> io::Result<u64> {
    let (out, _) = run_captured(cmd, Duration::from_secs_f64(secs + 60.0), what)?;
    let json = out.lines().find(|l| l.starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| io::Error::other(format!("{what} report {json:?}: {e}")))?;
    v.get("total_msgs")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| io::Error::other(format!("{what} report without total_msgs")))
}

// ---------------------------------------------------------------------------------------------
// udp-load

/// UDP echo load parameters.
#[derive(Debug, Clone, Copy)]
pub struct UdpParams {
    /// Sockets.
    pub sockets: usize,
    /// Datagram size, bytes.
    pub size: usize,
    /// Datagrams in flight per socket.
    pub depth: usize,
}

fn udp_command(bin: &Path, server: &Server, p: UdpParams, secs: f64, warmup: f64) -> Command {
    let mut c = procs::load_command(&bin.to_string_lossy());
    c.arg("--addr")
        .arg(server.addr.to_string())
        .args(["--sockets", &p.sockets.to_string()])
        .args(["--size", &p.size.to_string()])
        .args(["--depth", &p.depth.to_string()])
        .args(["--duration", &secs.to_string()])
        .args(["--warmup", &warmup.to_string()])
        .arg("--json");
    c
}

/// A timed UDP echo run: CPU sampled at udp-load's marks; requests are datagrams echoed.
pub fn udp_timed(
    bin: &Path,
    server: &Server,
    p: UdpParams,
    secs: f64,
    warmup: f64,
    round: usize,
) -> io::Result<Sample> {
    let cmd = udp_command(bin, server, p, secs, warmup);
    marked_run(cmd, "udp-load", server, secs + warmup, round)
}

/// An untimed UDP echo run (syscall pass): every datagram echoed, warm-up included.
pub fn udp_total(bin: &Path, server: &Server, p: UdpParams, secs: f64) -> io::Result<u64> {
    let cmd = udp_command(bin, server, p, secs, 0.0);
    total_msgs(cmd, "udp-load", secs)
}

/// Idle-memory run: server RSS growth per connection after `conns` idle connections, each after
/// one round trip. Stops the server (before the client closes, so TIME_WAIT lands on the server
/// side and the client's ephemeral ports stay free).
pub fn idle_rss(bin: &Path, server: Server, conns: usize) -> (io::Result<f64>, Stopped) {
    idle_rss_with(bin, server, conns, &[])
}

/// [`idle_rss`] with extra echo-load arguments (`--tls --ca PEM`: idle TLS connections).
pub fn idle_rss_with(
    bin: &Path,
    mut server: Server,
    conns: usize,
    extra: &[String],
) -> (io::Result<f64>, Stopped) {
    let res = (|| -> io::Result<(f64, std::process::Child)> {
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_bytes()?;
        let mut cmd = procs::load_command(&bin.to_string_lossy());
        cmd.arg("--addr")
            .arg(server.addr.to_string())
            .args(["--idle", &conns.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let lines = LineReader::new(child.stdout.take().expect("piped"));
        let err = procs::spawn_collect(child.stderr.take().expect("piped"));
        match lines.next(Duration::from_secs(120)) {
            Ok(l) if l.trim() == "ready" => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let err = err.join().unwrap_or_default();
                return Err(io::Error::other(format!(
                    "echo-load --idle never got ready{}",
                    tail(&err)
                )));
            }
        }
        // Let the server finish processing the last round trips.
        std::thread::sleep(Duration::from_millis(500));
        if !server.alive() {
            return Err(io::Error::other(
                "server died while holding idle connections",
            ));
        }
        let after = server.rss_bytes()?;
        Ok(((after as f64 - before as f64) / conns as f64, child))
    })();
    let stopped = server.stop();
    match res {
        Ok((v, mut child)) => {
            drop(child.stdin.take()); // EOF: echo-load exits.
            if procs::wait_timeout(&mut child, Duration::from_secs(20)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            (Ok(v), stopped)
        }
        Err(e) => (Err(e), stopped),
    }
}

// ---------------------------------------------------------------------------------------------
// wrk

/// Writes the Lua scripts wrk needs into `dir`: a reporter (`report.lua`) and TechEmpower's
/// pipelining script plus the same reporter (`pipeline.lua`). Returns their paths.
pub fn write_wrk_scripts(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("BENCH p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"#;
    const PIPELINE: &str = r#"
-- TechEmpower's pipeline.lua: one request string holding `depth` copies of the GET.
init = function(args)
  local r = {}
  local depth = tonumber(args[1]) or 1
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
"#;
    let plain = dir.join("report.lua");
    let pipe = dir.join("pipeline.lua");
    std::fs::File::create(&plain)?.write_all(DONE.as_bytes())?;
    std::fs::File::create(&pipe)?.write_all(format!("{PIPELINE}{DONE}").as_bytes())?;
    Ok((plain, pipe))
}

/// One wrk run (`-t1 -c64`), CPU sampled around the wrk process.
pub fn wrk(
    server: &Server,
    script: &Path,
    pipeline: usize,
    secs: u64,
    round: usize,
) -> io::Result<Sample> {
    let mut cmd = procs::load_command("wrk");
    cmd.args(["-t1", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://{}/plaintext", server.addr));
    if pipeline > 1 {
        cmd.args(["--", &pipeline.to_string()]);
    }
    let c0 = server.cpu_time()?;
    let t0 = Instant::now();
    let (out, _) = run_captured(cmd, Duration::from_secs(secs + 60), "wrk")?;
    let c1 = server.cpu_time()?;
    let wall = t0.elapsed().as_secs_f64();
    let kv = |key: &str| -> Option<f64> {
        out.lines()
            .filter(|l| l.starts_with("BENCH "))
            .flat_map(|l| l.split_whitespace())
            .find_map(|t| t.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
    };
    let requests =
        kv("requests").ok_or_else(|| io::Error::other(format!("no report from wrk: {out}")))?;
    let dur_us = kv("duration_us").unwrap_or(0.0);
    let bad = ["connect", "read", "write", "status", "timeout"]
        .iter()
        .map(|k| (k, kv(k).unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>();
    if !bad.is_empty() {
        return Err(io::Error::other(format!(
            "wrk reported errors: {}",
            bad.join(" ")
        )));
    }
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(if dur_us > 0.0 {
            requests * 1e6 / dur_us
        } else {
            0.0
        });
    if requests < 1.0 {
        return Err(io::Error::other("wrk completed no requests"));
    }
    // wrk corrects latencies for coordinated omission by adding synthetic samples; with
    // pipelining its expected interval counts every response of a batch, the synthetic samples land
    // below the recorded minimum and high percentiles read 0. Only the maximum is trustworthy there.
    let pct = |key: &str| {
        if pipeline > 1 {
            None
        } else {
            kv(key).filter(|v| *v > 0.0)
        }
    };
    Ok(Sample {
        round,
        cpu_s: (c1 - c0).total(),
        system_s: (c1 - c0).system_s,
        wall_s: wall,
        requests: requests as u64,
        rps,
        p50_us: pct("p50_us"),
        p99_us: pct("p99_us"),
        p999_us: pct("p999_us"),
        max_us: kv("max_us"),
        load_cpu_s: None,
    })
}

// ---------------------------------------------------------------------------------------------
// redis-benchmark

/// One redis-benchmark run of one test (`set` or `get`), CPU sampled around the process.
pub fn redis_bench(
    server: &Server,
    test: &str,
    pipeline: usize,
    n: u64,
    round: usize,
) -> io::Result<Sample> {
    let mut cmd = procs::load_command("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(["-t", test, "-c", "50", "-P", &pipeline.to_string()])
        .args(["-n", &n.to_string(), "--csv"]);
    let c0 = server.cpu_time()?;
    let t0 = Instant::now();
    let (out, err) = run_captured(cmd, Duration::from_secs(600), "redis-benchmark")?;
    let c1 = server.cpu_time()?;
    let wall = t0.elapsed().as_secs_f64();
    let want = format!("\"{}\"", test.to_ascii_uppercase());
    let row = out.lines().find(|l| l.starts_with(&want)).ok_or_else(|| {
        io::Error::other(format!(
            "no {want} row from redis-benchmark{}{}",
            tail(&out),
            tail(&err)
        ))
    })?;
    let f: Vec<Option<f64>> = row
        .split(',')
        .map(|c| c.trim().trim_matches('"').parse::<f64>().ok())
        .collect();
    let at = |i: usize| f.get(i).copied().flatten();
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let ms = |i: usize| at(i).map(|v| v * 1000.0);
    if err.contains("Error") || err.contains("ERR") {
        return Err(io::Error::other(format!(
            "redis-benchmark reported{}",
            tail(&err)
        )));
    }
    Ok(Sample {
        round,
        cpu_s: (c1 - c0).total(),
        system_s: (c1 - c0).system_s,
        wall_s: wall,
        requests: n,
        rps: at(1).unwrap_or(0.0),
        p50_us: ms(4),
        p99_us: ms(6),
        p999_us: None,
        max_us: ms(7),
        load_cpu_s: None,
    })
}
