//! The environment of a run: the workspace, the binaries (built here unless `--no-build`),
//! eventide's examples as far as they exist, and the external tools.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::Config;
use crate::scenarios::TriggerArgs;
use crate::{perf, procs};

/// eventide's demos the suite runs, with the feature each needs beyond its required ones.
const EXAMPLES: &[(&str, Option<&str>)] = &[
    ("echo", None),
    ("http", Some("http")),
    ("redis", Some("resp")),
    ("ws_echo", Some("ws")),
    ("chat", Some("ws")),
    ("gateway", Some("http")),
];

pub struct Env {
    pub root: PathBuf,
    /// The directory of the build profile's binaries (`target/release`, `target/release-lto`).
    pub release: PathBuf,
    /// The cargo profile everything was built with.
    pub profile: &'static str,
    pub tmp: PathBuf,
    /// eventide example name → binary, or why it is unavailable.
    pub examples: BTreeMap<&'static str, Result<PathBuf, String>>,
    /// How each built example selects level- or edge-triggered readiness.
    pub triggers: BTreeMap<&'static str, Result<TriggerArgs, String>>,
    pub wrk: bool,
    pub nginx: bool,
    pub valgrind: bool,
    pub redis_benchmark: bool,
    pub redis_server: bool,
    pub perf_waits: Option<Vec<String>>,
    /// The UDP load generator and an echo example that serves UDP (`--udp`, `--udp-batch`),
    /// or why the `udp-echo` scenario cannot run.
    pub udp: Result<PathBuf, String>,
    pub notes: Vec<String>,
}

impl Env {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.release.join(name)
    }
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn setup(cfg: &Config) -> io::Result<Env> {
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
    let profile = cfg.profile.name();
    let release = target.join(profile);

    if cfg.build {
        println!("building eventide-bench (profile {profile})…");
        let st = cargo()
            .args([
                "build",
                "--profile",
                profile,
                "-p",
                "eventide-bench",
                "--bins",
            ])
            .current_dir(&root)
            .status()?;
        if !st.success() {
            return Err(io::Error::other("cargo build -p eventide-bench failed"));
        }
    }
    for b in ["echo-load", "conns-load", "fanout-load"] {
        if !release.join(b).is_file() {
            return Err(io::Error::other(format!(
                "{} missing: build with `cargo build --profile {profile} -p eventide-bench`",
                release.join(b).display()
            )));
        }
    }

    // eventide's examples, as far as they exist.
    let pkg = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "eventide"));
    let mut examples = BTreeMap::new();
    let mut triggers = BTreeMap::new();
    for &(name, feature) in EXAMPLES {
        let res = example(cfg, &root, &release, pkg, name, feature);
        match &res {
            Err(why) => println!("eventide example `{name}`: skipped — {why}"),
            Ok(bin) => {
                triggers.insert(name, usage(bin).and_then(|u| TriggerArgs::from_usage(&u)));
            }
        }
        examples.insert(name, res);
    }

    let udp = udp_support(&release, &examples);
    let udp_wanted = !cfg
        .only
        .as_ref()
        .is_some_and(|o| !o.iter().any(|x| x == crate::scenarios::UDP_ECHO));

    let tmp = std::env::temp_dir().join(format!("eventide-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut notes = Vec::new();
    let wrk = procs::on_path("wrk");
    let nginx = procs::on_path("nginx");
    let valgrind = procs::on_path("valgrind");
    let redis_benchmark = procs::on_path("redis-benchmark");
    let redis_server = procs::on_path("redis-server");
    for (ok, tool) in [
        (wrk, "wrk"),
        (redis_benchmark, "redis-benchmark"),
        (redis_server, "redis-server"),
        (nginx, "nginx"),
    ] {
        if !ok {
            let n = format!("{tool} not found on PATH: its scenarios or peer are skipped");
            println!("{n}");
            notes.push(n);
        }
    }
    if let (Err(why), true) = (&udp, udp_wanted) {
        notes.push(format!("scenario udp-echo skipped: {why}"));
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
        let w = perf::epoll_wait_tracepoints();
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
        profile,
        tmp,
        examples,
        triggers,
        wrk,
        nginx,
        valgrind,
        redis_benchmark,
        redis_server,
        perf_waits,
        udp,
        notes,
    })
}

/// Whether the `udp-echo` scenario can run: `udp-load` is built and eventide's echo example
/// takes `--udp` and `--udp-batch N` (its usage line, printed by `--help`, lists them).
fn udp_support(
    release: &Path,
    examples: &BTreeMap<&'static str, Result<PathBuf, String>>,
) -> Result<PathBuf, String> {
    let load = release.join("udp-load");
    if !load.is_file() {
        return Err(format!(
            "{} missing: build with `cargo build --release -p eventide-bench`",
            load.display()
        ));
    }
    let echo = match examples.get("echo") {
        Some(Ok(bin)) => bin,
        Some(Err(why)) => return Err(format!("eventide `echo` example unavailable: {why}")),
        None => return Err("eventide `echo` example unavailable".into()),
    };
    let usage = usage(echo)?;
    for flag in ["[--udp]", "[--udp-batch"] {
        if !usage.contains(flag) {
            return Err(format!(
                "examples/echo does not support `--udp --udp-batch N` yet (its usage has no {flag}...)"
            ));
        }
    }
    Ok(load)
}

/// A demo's usage line, as `--help` prints it.
pub fn usage(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{} --help`: {e}", bin.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn example(
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
            "building eventide example `{name}` ({}{})…",
            cfg.profile.name(),
            if features.is_empty() {
                String::new()
            } else {
                format!(", features {}", features.join(","))
            }
        );
        let mut c = cargo();
        c.args(["build", "--profile", cfg.profile.name()]);
        c.args(["-p", "eventide", "--example", name]);
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
