//! The command-line contract every demo server keeps: `--addr HOST:PORT` (port 0 allowed),
//! `--loops N`, exactly one `listening on ADDR` line on stdout, serve until SIGINT or SIGTERM,
//! then stop gracefully and exit 0 (a second signal stops at once). Logs go to stderr through
//! `env_logger`: `RUST_LOG=info`, `RUST_LOG=eventide=debug`; warnings and errors by default.

#![allow(dead_code)] // each demo uses a different part of this module

use std::collections::HashMap;
use std::io::Write;
use std::process::exit;

use eventide::{Handover, Server, ShutdownSignals, ToAddrs};

/// Parsed command line: `--addr`, `--loops`, and the demo's own options.
pub struct Args {
    pub addr: String,
    pub loops: usize,
    values: HashMap<String, String>,
    /// Every option value given, in order (for a repeatable option).
    all_values: Vec<(String, String)>,
    flags: Vec<String>,
    usage: String,
}

impl Args {
    /// Parses `std::env::args()`. `options` take a value (`--name VALUE` or `--name=VALUE`),
    /// `switches` do not. Exits with status 2 and a usage line on a bad command line.
    pub fn parse(default_addr: &str, options: &[&str], switches: &[&str]) -> Args {
        init_logging(); // every demo starts here
        let mut usage = String::from("usage: [--addr HOST:PORT] [--loops N]");
        for o in options {
            usage.push_str(&format!(" [--{o} VALUE]"));
        }
        for s in switches {
            usage.push_str(&format!(" [--{s}]"));
        }
        let mut args = Args {
            addr: default_addr.to_string(),
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            values: HashMap::new(),
            all_values: Vec::new(),
            flags: Vec::new(),
            usage,
        };
        let usage = args.usage.clone();
        let fail = |msg: String| -> ! { exit_usage(&msg, &usage) };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                fail(format!("unexpected argument {arg:?}"))
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if name == "help" {
                println!("{usage}");
                exit(0);
            }
            if switches.contains(&name.as_str()) {
                args.flags.push(name);
                continue;
            }
            if name != "addr" && name != "loops" && !options.contains(&name.as_str()) {
                fail(format!("unknown option --{name}"));
            }
            let value = match inline.or_else(|| it.next()) {
                Some(v) => v,
                None => fail(format!("--{name} needs a value")),
            };
            match name.as_str() {
                "addr" => args.addr = value,
                "loops" => match value.parse::<usize>() {
                    Ok(n) if n > 0 => args.loops = n,
                    _ => fail(format!("--loops needs a positive number, not {value:?}")),
                },
                _ => {
                    args.all_values.push((name.clone(), value.clone()));
                    args.values.insert(name, value);
                }
            }
        }
        if let Err(e) = args.addr.as_str().to_addrs() {
            fail(format!("--addr: {e}"));
        }
        args
    }

    /// Whether a switch was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// The value of an option, if given.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every value of a repeatable option, in the order given.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.all_values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of an option the demo cannot run without; exits 2 with the usage line when
    /// it is missing.
    pub fn required(&self, name: &str) -> &str {
        self.value(name)
            .unwrap_or_else(|| self.fail(&format!("--{name} is required")))
    }

    /// Prints `msg` and the usage line, and exits 2 (a bad command line).
    pub fn fail(&self, msg: &str) -> ! {
        exit_usage(msg, &self.usage)
    }

    /// The value of an option parsed as `T`, or `default`. Exits on a malformed value.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| self.fail(&format!("--{name}: malformed value {v:?}"))),
        }
    }
}

fn exit_usage(msg: &str, usage: &str) -> ! {
    eprintln!("{msg}\n{usage}");
    exit(2)
}

/// Sends the `log` records of the library and the demo to stderr, filtered by `RUST_LOG`
/// (default: warnings and errors).
fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
}

/// Installs the SIGINT/SIGTERM handlers. Call before printing the `listening on` line, so a
/// tool that sends SIGTERM as soon as it reads the line never hits the default (fatal) action.
pub fn termination_signals() -> ShutdownSignals {
    or_exit(ShutdownSignals::install(), "installing the signal handlers")
}

/// Prints the `listening on` line, serves until SIGINT or SIGTERM, and exits 0 (1 if a loop
/// failed).
pub fn serve(server: Server, signals: ShutdownSignals, shown: &str) -> ! {
    announce(shown);
    exit_with(server.run_until(signals))
}

/// [`serve`], and hands the listeners to a successor that asks through `handover`: then this
/// process drains its connections and exits 0.
pub fn serve_with_handover(
    server: Server,
    signals: ShutdownSignals,
    handover: Handover,
    shown: &str,
) -> ! {
    announce(shown);
    exit_with(server.run_with_handover(signals, handover))
}

fn announce(shown: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {shown}");
    let _ = out.flush();
}

fn exit_with(result: std::io::Result<()>) -> ! {
    match result {
        Ok(()) => exit(0),
        Err(e) => {
            eprintln!("server failed: {e}");
            exit(1)
        }
    }
}

/// Exits with a readable message when starting the server failed.
pub fn or_exit<T>(result: std::io::Result<T>, what: &str) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("{what}: {e}");
        exit(1)
    })
}
