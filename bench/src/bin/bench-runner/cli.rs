//! The command line: options, their defaults, and the list of scenarios.

use std::path::PathBuf;

use eventide_bench::args::Flags;

pub const USAGE: &str = "\
usage: bench-runner [options]
  --rebaseline       the whole re-baseline in one run: the suite (peers, eventide defaults),
                     level vs edge, the suite again with --lto, and the instruction counts
  --triggers         instead of the peers: eventide level- vs edge-triggered, interleaved
  --callgrind        instead of timed runs: user-space instructions per message under
                     valgrind (echo and TLS echo scenarios), eventide vs its peers
  --lto              build and run every server with lto = \"fat\", codegen-units = 1
                     (cargo profile release-lto) instead of the release profile
  --plan             print what would run and an estimate of how long, then exit
  --rounds N         interleaved rounds per scenario (default 5)
  --secs S           seconds per timed run (default 3)
  --quick            1 round of ~1 s, no verdicts, reports written to a temp dir (CI)
  --only LIST        comma-separated scenarios (repeatable): echo-d1,echo-d16,http-plain,
                     http-pipe16,resp-p1,resp-p16,idle-mem,udp-echo,tls-echo,tls-echo-d16,
                     tls-echo-16k,conns,ws-d1,ws-d16,broadcast,broadcast-lines,gateway
  --out-md PATH      markdown report (default: the results section of <workspace>/BENCHMARKS.md)
  --out-svg PATH     chart (default <workspace>/docs/bench.svg)
  --idle-conns N     connections for idle-mem (default 9000; 2000 with --quick)
  --scale-conns N    idle connections held in the conns scenario (default 19000; 2000 with
                     --quick), beside its active set of 500
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
    "tls-echo-d16",
    "tls-echo-16k",
    "conns",
    "ws-d1",
    "ws-d16",
    "broadcast",
    "broadcast-lines",
    "gateway",
];

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Timed runs, eventide with its defaults beside the peers.
    Suite,
    /// Timed runs, eventide level-triggered beside eventide edge-triggered (no peers).
    Triggers,
    /// Instruction counts under callgrind (no timed runs).
    Callgrind,
}

/// The cargo profile every server and load tool is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `release` (the workspace's `[profile.release]`).
    Release,
    /// `release-lto`: release with `lto = "fat"`, `codegen-units = 1`.
    ReleaseLto,
}

impl Profile {
    /// The name cargo knows it by (`--profile NAME`), also its directory under `target/`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::ReleaseLto => "release-lto",
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            Profile::Release => {
                "release profile (opt-level 3, thin local LTO, 16 codegen units, debug = 1)"
            }
            Profile::ReleaseLto => {
                "release-lto profile (release + lto = \"fat\", codegen-units = 1)"
            }
        }
    }
}

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
    pub scale_conns: Option<usize>,
    pub mode: Mode,
    pub profile: Profile,
    pub rebaseline: bool,
    pub plan: bool,
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
        scale_conns: None,
        mode: Mode::Suite,
        profile: Profile::Release,
        rebaseline: false,
        plan: false,
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
            "--scale-conns" => {
                c.scale_conns = Some(
                    flags
                        .value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or("bad --scale-conns")?,
                )
            }
            "--triggers" => c.mode = Mode::Triggers,
            "--callgrind" => c.mode = Mode::Callgrind,
            "--lto" => c.profile = Profile::ReleaseLto,
            "--rebaseline" => c.rebaseline = true,
            "--plan" => c.plan = true,
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
    if c.rebaseline && (c.mode != Mode::Suite || c.profile != Profile::Release) {
        return Err("--rebaseline runs every mode and profile itself: drop --triggers, --callgrind and --lto".into());
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
