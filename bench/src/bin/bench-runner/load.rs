//! Running the load tools (echo-load, wrk, redis-benchmark) against a started server, sampling
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

fn echo_command(bin: &Path, server: &Server, p: EchoParams, secs: f64, warmup: f64) -> Command {
    let mut c = procs::load_command(&bin.to_string_lossy());
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
    let mut cmd = echo_command(bin, server, p, secs, warmup);
    cmd.arg("--marks")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let lines = LineReader::new(child.stdout.take().expect("piped"));
    let err = procs::spawn_collect(child.stderr.take().expect("piped"));
    let limit = Duration::from_secs_f64(secs + warmup + 60.0);
    let (mut start, mut end, mut json) = (None, None, None);
    let deadline = Instant::now() + limit;
    while let Ok(line) = lines.next(deadline.saturating_duration_since(Instant::now())) {
        match line.trim() {
            "MARK start" => start = Some((server.cpu_seconds()?, Instant::now())),
            "MARK end" => end = Some((server.cpu_seconds()?, Instant::now())),
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
                "echo-load exited with {s}{}",
                tail(&err)
            )))
        }
        None => return Err(io::Error::other("echo-load timed out")),
    }
    let (Some((c0, t0)), Some((c1, t1)), Some(json)) = (start, end, json) else {
        return Err(io::Error::other(format!(
            "echo-load gave no marks/report{}",
            tail(&err)
        )));
    };
    let v: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| io::Error::other(format!("echo-load report {json:?}: {e}")))?;
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    Ok(Sample {
        round,
        cpu_s: c1 - c0,
        wall_s: t1.duration_since(t0).as_secs_f64(),
        requests: f("msgs").unwrap_or(0.0) as u64,
        rps: f("msgs_per_sec").unwrap_or(0.0),
        p50_us: f("p50_us"),
        p99_us: f("p99_us"),
        p999_us: f("p999_us"),
        max_us: f("max_us"),
    })
}

/// An untimed echo run (syscall pass): returns every message completed, warm-up included.
pub fn echo_total(bin: &Path, server: &Server, p: EchoParams, secs: f64) -> io::Result<u64> {
    let cmd = echo_command(bin, server, p, secs, 0.0);
    let (out, _) = run_captured(cmd, Duration::from_secs_f64(secs + 60.0), "echo-load")?;
    let json = out.lines().find(|l| l.starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| io::Error::other(format!("echo-load report {json:?}: {e}")))?;
    v.get("total_msgs")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| io::Error::other("echo-load report without total_msgs"))
}

/// Idle-memory run: server RSS growth per connection after `conns` idle connections, each after
/// one round trip. Stops the server (before the client closes, so TIME_WAIT lands on the server
/// side and the client's ephemeral ports stay free).
pub fn idle_rss(bin: &Path, mut server: Server, conns: usize) -> (io::Result<f64>, Stopped) {
    let res = (|| -> io::Result<(f64, std::process::Child)> {
        std::thread::sleep(Duration::from_millis(200));
        let before = server.rss_bytes()?;
        let mut cmd = procs::load_command(&bin.to_string_lossy());
        cmd.arg("--addr")
            .arg(server.addr.to_string())
            .args(["--idle", &conns.to_string()])
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
    let c0 = server.cpu_seconds()?;
    let t0 = Instant::now();
    let (out, _) = run_captured(cmd, Duration::from_secs(secs + 60), "wrk")?;
    let c1 = server.cpu_seconds()?;
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
        cpu_s: c1 - c0,
        wall_s: wall,
        requests: requests as u64,
        rps,
        p50_us: pct("p50_us"),
        p99_us: pct("p99_us"),
        p999_us: pct("p999_us"),
        max_us: kv("max_us"),
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
    let c0 = server.cpu_seconds()?;
    let t0 = Instant::now();
    let (out, err) = run_captured(cmd, Duration::from_secs(600), "redis-benchmark")?;
    let c1 = server.cpu_seconds()?;
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
        cpu_s: c1 - c0,
        wall_s: wall,
        requests: n,
        rps: at(1).unwrap_or(0.0),
        p50_us: ms(4),
        p99_us: ms(6),
        p999_us: None,
        max_us: ms(7),
    })
}

// ---------------------------------------------------------------------------------------------
// perf (syscall pass)

/// Syscall counts from one traced run.
#[derive(Debug, Clone, Default)]
pub struct SyscallStats {
    /// All syscalls entered by the server.
    pub syscalls: u64,
    /// epoll_wait + epoll_pwait + epoll_pwait2 calls.
    pub epoll_waits: u64,
    /// Mean events returned per epoll wait (from `perf record` of the exit tracepoints).
    pub events_per_wait: Option<f64>,
    /// Requests completed during the traced run.
    pub requests: u64,
}

impl SyscallStats {
    /// Syscalls per request.
    pub fn per_request(&self) -> f64 {
        self.syscalls as f64 / self.requests.max(1) as f64
    }
}

/// Which epoll wait tracepoints exist on this kernel (`perf list 'syscalls:*epoll*'`).
pub fn epoll_wait_tracepoints() -> Vec<String> {
    let out = Command::new("perf")
        .args(["list", "syscalls:*epoll*"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    ["epoll_wait", "epoll_pwait", "epoll_pwait2"]
        .iter()
        .map(|s| s.to_string())
        .filter(|s| out.contains(&format!("syscalls:sys_enter_{s} ")))
        .collect()
}

/// Traces `pid` with `perf stat` (syscall counts) and `perf record` (epoll wait results) while
/// `load` runs; `load` returns the requests it completed.
pub fn traced<F: FnOnce() -> io::Result<u64>>(
    pid: u32,
    waits: &[String],
    tmp: &Path,
    load: F,
) -> io::Result<SyscallStats> {
    let stat_out = tmp.join(format!("perf-stat-{pid}.txt"));
    let rec_out = tmp.join(format!("perf-record-{pid}.data"));
    let mut stat = procs::load_command("perf");
    stat.args(["stat", "-x", ",", "-o"]).arg(&stat_out);
    stat.args(["-e", "raw_syscalls:sys_enter"]);
    for w in waits {
        stat.args(["-e", &format!("syscalls:sys_enter_{w}")]);
    }
    stat.args(["-p", &pid.to_string()]);
    let mut stat = stat.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stat_err = procs::spawn_collect(stat.stderr.take().expect("piped"));
    let mut rec = if waits.is_empty() {
        None
    } else {
        let mut c = procs::load_command("perf");
        c.args(["record", "-q", "-m", "1024", "-o"]).arg(&rec_out);
        for w in waits {
            c.args(["-e", &format!("syscalls:sys_exit_{w}")]);
        }
        c.args(["-p", &pid.to_string()]);
        c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
    };
    // Let both attach before the load starts.
    std::thread::sleep(Duration::from_millis(700));
    let load_res = load();
    let _ = eventide_bench::sys::interrupt(stat.id());
    if let Some(r) = &rec {
        let _ = eventide_bench::sys::interrupt(r.id());
    }
    let stat_status = procs::wait_timeout(&mut stat, Duration::from_secs(20));
    if stat_status.is_none() {
        let _ = stat.kill();
        let _ = stat.wait();
    }
    if let Some(r) = rec.as_mut() {
        if procs::wait_timeout(r, Duration::from_secs(60)).is_none() {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
    let stat_err = stat_err.join().unwrap_or_default();
    let requests = load_res?;
    let text = std::fs::read_to_string(&stat_out).map_err(|e| {
        io::Error::other(format!("perf stat wrote nothing ({e}){}", tail(&stat_err)))
    })?;
    let mut st = SyscallStats {
        requests,
        ..Default::default()
    };
    for line in text.lines() {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() < 3 {
            continue;
        }
        let Ok(count) = cols[0].trim().parse::<u64>() else {
            continue;
        };
        let ev = cols[2].trim();
        if ev == "raw_syscalls:sys_enter" {
            st.syscalls = count;
        } else if ev.starts_with("syscalls:sys_enter_epoll") {
            st.epoll_waits += count;
        }
    }
    if st.syscalls == 0 {
        return Err(io::Error::other(format!(
            "perf stat counted no syscalls{}",
            tail(&stat_err)
        )));
    }
    if rec.is_some() {
        st.events_per_wait = events_per_wait(&rec_out);
    }
    let _ = std::fs::remove_file(&stat_out);
    let _ = std::fs::remove_file(&rec_out);
    Ok(st)
}

/// Mean return value of the recorded epoll wait exits (errors such as EINTR excluded).
fn events_per_wait(data: &Path) -> Option<f64> {
    let out = Command::new("perf")
        .args(["script", "-F", "trace", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut sum, mut n) = (0u64, 0u64);
    for line in text.lines() {
        let v = line.trim();
        let v = v.rsplit(' ').next().unwrap_or(v);
        let parsed = match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse::<u64>().ok(),
        };
        if let Some(r) = parsed {
            if r < (1 << 31) {
                sum += r;
                n += 1;
            }
        }
    }
    (n > 0).then(|| sum as f64 / n as f64)
}
