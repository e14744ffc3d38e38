//! Facts about the machine and the invocation, for the report: how busy the CPUs were, the
//! CPU model and kernel, and the exact command line.

use std::path::Path;
use std::process::Command;

use crate::cli::Config;

/// Busy fraction over all CPUs above which the machine is reported as not quiet.
pub const QUIET_LIMIT: f64 = 0.05;

/// Fraction of all CPUs' time spent busy (not idle, not iowait) over `dur`, from `/proc/stat`.
pub fn machine_busy(dur: std::time::Duration) -> Option<f64> {
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

pub fn relative_to(path: &Path, base: &Path) -> String {
    match path.strip_prefix(base) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

pub fn command_line(cfg: &Config) -> String {
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

pub fn machine() -> String {
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

/// The commit the benchmarked code comes from (`git describe --always --dirty`), or "unknown"
/// outside a git checkout.
pub fn commit(root: &std::path::Path) -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
