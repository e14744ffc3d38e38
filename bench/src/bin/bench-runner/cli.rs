//! The command line: options, their defaults, and the list of scenarios.

use std::path::PathBuf;

use eventide_bench::args::Flags;

pub const USAGE: &str = "\
usage: bench-runner [options]
  --rounds N         interleaved rounds per scenario (default 5)
  --secs S           seconds per timed run (default 3)
  --quick            1 round of ~1 s, no verdicts, reports written to a temp dir (CI)
  --only LIST        comma-separated scenarios: echo-d1,echo-d16,http-plain,http-pipe16,
                     resp-p1,resp-p16,idle-mem,udp-echo,tls-echo (repeatable)
  --out-md PATH      markdown report (default <workspace>/BENCHMARKS.md)
  --out-svg PATH     chart (default <workspace>/docs/bench.svg)
  --idle-conns N     connections for idle-mem (default 9000; 2000 with --quick)
  --no-build         use the binaries already built
  --no-syscalls      skip the perf syscall pass
  --peers-anyway     run a scenario's peers even when its eventide example is missing
  --root PATH        workspace root (default: the parent of the bench crate)";

pub const SCENARIOS: &[&str] = &[
    "echo-d1",
    "echo-d16",
    "http-plain",
    "http-pipe16",
    "resp-p1",
    "resp-p16",
    "idle-mem",
    "udp-echo",
    "tls-echo",
];

pub const EVENTIDE: &str = "eventide";

#[derive(Debug, Clone)]
pub struct Config {
    pub rounds: usize,
    pub secs: f64,
    pub quick: bool,
    pub only: Option<Vec<String>>,
    pub out_md: Option<PathBuf>,
    pub out_svg: Option<PathBuf>,
    pub idle_conns: Option<usize>,
    pub build: bool,
    pub syscalls: bool,
    pub peers_anyway: bool,
    pub root: Option<PathBuf>,
    pub args: Vec<String>,
}

pub fn parse_config() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Config {
        rounds: 5,
        secs: 3.0,
        quick: false,
        only: None,
        out_md: None,
        out_svg: None,
        idle_conns: None,
        build: true,
        syscalls: true,
        peers_anyway: false,
        root: None,
        args: args.clone(),
    };
    let (mut rounds, mut secs) = (None, None);
    let mut flags = Flags::new(args);
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            "--rounds" => {
                rounds = Some(
                    flags
                        .value()?
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or("bad --rounds")?,
                )
            }
            "--secs" => {
                secs = Some(
                    flags
                        .value()?
                        .parse::<f64>()
                        .ok()
                        .filter(|&s| s >= 0.5)
                        .ok_or("bad --secs (>= 0.5)")?,
                )
            }
            "--quick" => c.quick = true,
            "--only" => {
                let list = flags.value()?;
                for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !SCENARIOS.contains(&s) {
                        return Err(format!(
                            "unknown scenario {s:?}; known: {}",
                            SCENARIOS.join(", ")
                        ));
                    }
                    c.only.get_or_insert_with(Vec::new).push(s.to_string());
                }
            }
            "--out-md" => c.out_md = Some(flags.value()?.into()),
            "--out-svg" => c.out_svg = Some(flags.value()?.into()),
            "--idle-conns" => {
                c.idle_conns = Some(
                    flags
                        .value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or("bad --idle-conns")?,
                )
            }
            "--no-build" => c.build = false,
            "--no-syscalls" => c.syscalls = false,
            "--peers-anyway" => c.peers_anyway = true,
            "--root" => c.root = Some(flags.value()?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {:?}", flags.arg())),
        }
    }
    if c.quick {
        c.rounds = rounds.unwrap_or(1);
        c.secs = secs.unwrap_or(1.0);
    } else {
        c.rounds = rounds.unwrap_or(5);
        c.secs = secs.unwrap_or(3.0);
    }
    Ok(c)
}
