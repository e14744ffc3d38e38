//! The scenarios: what load each one applies, and which servers it compares.
//!
//! Every eventide demo runs with its defaults (no flags beyond the demo contract and what the
//! scenario needs to reach it, such as a certificate). `--triggers` replaces each scenario's
//! servers by eventide level-triggered beside eventide edge-triggered, with whatever switch the
//! demo's usage line offers for that.

use crate::cli::{Config, Mode, EVENTIDE, SCENARIOS};
use crate::procs::{Server, Spawn};
use crate::runner::echo_warmup;
use crate::setup::Env;
use crate::{broadcast, conns, gateway, tls_echo};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Echo {
        depth: usize,
    },
    Http {
        pipeline: usize,
    },
    Resp {
        pipeline: usize,
    },
    Idle,
    /// UDP echo, `depth` datagrams in flight per socket: eventide's echo with batched
    /// recvmmsg/sendmmsg against itself with one datagram per syscall.
    Udp {
        depth: usize,
    },
    /// Echo over TLS, `size`-byte messages; `idle` adds the idle memory per TLS connection.
    TlsEcho {
        depth: usize,
        size: usize,
        idle: bool,
    },
    /// Many connections in one process (see `conns`).
    Conns,
    /// WebSocket echo (echo-load --ws): 50 connections × 512 B binary messages.
    Ws {
        depth: usize,
    },
    /// One publisher, many subscribers (see `broadcast`); `lines` for the plain TCP protocol.
    Broadcast {
        lines: bool,
    },
    /// HTTP through a reverse proxy to one upstream (see `gateway`).
    Gateway,
}

/// The UDP scenario's name.
pub const UDP_ECHO: &str = "udp-echo";
/// UDP load: sockets, datagram size, datagrams in flight per socket.
pub const UDP_SOCKETS: usize = 50;
pub const UDP_SIZE: usize = 512;
pub const UDP_DEPTH: usize = 16;
/// The `--udp-batch` compared: batched first (the "eventide" column), then one per syscall.
pub const UDP_BATCHES: [usize; 2] = [32, 1];

/// The plain echo peers: idiomatic tokio, memory-careful tokio, a minimal mio loop, io_uring.
const ECHO_PEERS: &[&str] = &["tokio-echo", "tokio-echo-lean", "mio-echo", "uring-echo"];
/// The peers of the scale scenario (the ones the issue names).
const CONNS_PEERS: &[&str] = &["tokio-echo", "tokio-echo-lean", "mio-echo"];

/// Display name of eventide's UDP echo with `--udp-batch n`.
fn udp_server_name(n: usize) -> String {
    format!("{EVENTIDE} batch {n}")
}

pub struct ServerSpec {
    pub name: String,
    pub spawn: Spawn,
    /// The eventide example it runs, for the `--triggers` variants.
    pub example: Option<&'static str>,
}

pub struct Scenario {
    pub name: &'static str,
    pub kind: Kind,
    pub servers: Vec<ServerSpec>,
    pub eventide: Option<String>,
    pub notes: Vec<String>,
    /// A server the scenario's servers depend on (the gateway's upstream), stopped with it.
    pub upstream: Option<Server>,
}

impl Scenario {
    pub fn benches(&self) -> Vec<String> {
        match self.kind {
            Kind::Resp { .. } => vec![format!("{} SET", self.name), format!("{} GET", self.name)],
            Kind::Conns => conns::benches(),
            _ => vec![self.name.to_string()],
        }
    }

    pub fn load_desc(&self, cfg: &Config, idle_conns: usize, bench: &str) -> String {
        let test = bench.split(' ').nth(1);
        match self.kind {
            Kind::Echo { depth } => format!(
                "echo-load: 50 connections × 512 B, depth {depth} (D messages per write), {} s windows after {} s warm-up",
                cfg.secs,
                echo_warmup(cfg)
            ),
            Kind::Http { pipeline } if pipeline > 1 => format!(
                "wrk -t1 -c64 GET /plaintext, pipelining {pipeline} (TechEmpower's pipeline.lua; wrk's latency percentiles are wrong under pipelining, so only max is shown, per batch)"
            ),
            Kind::Http { .. } => "wrk -t1 -c64 GET /plaintext (latency as wrk reports it, with its coordinated-omission correction)".into(),
            Kind::Resp { pipeline } => format!(
                "redis-benchmark -t {} -c 50 -P {pipeline}, -n sized for ≥ {} s (latency from its CSV, no p99.9)",
                test.unwrap_or("set,get").to_ascii_lowercase(),
                cfg.secs
            ),
            Kind::Idle => format!(
                "server VmRSS growth per connection: {idle_conns} connections, each after one 16-byte round trip"
            ),
            Kind::Udp { depth } => format!(
                "udp-load: {UDP_SOCKETS} sockets × {UDP_SIZE} B datagrams, {depth} in flight per socket, {} s windows after {} s warm-up; eventide's echo --udp with --udp-batch {} (recvmmsg/sendmmsg) vs --udp-batch {} (one datagram per syscall): CPU per datagram",
                cfg.secs,
                echo_warmup(cfg),
                UDP_BATCHES[0],
                UDP_BATCHES[1]
            ),
            Kind::TlsEcho { depth, size, idle } => tls_echo::load_desc(cfg, depth, size, idle.then_some(idle_conns)),
            Kind::Conns => conns::load_desc(cfg, bench),
            Kind::Ws { depth } => format!(
                "echo-load --ws: 50 WebSocket connections × 512 B binary messages (masked, as RFC 6455 requires of clients), depth {depth}, {} s windows after {} s warm-up",
                cfg.secs,
                echo_warmup(cfg)
            ),
            Kind::Broadcast { lines } => broadcast::load_desc(cfg, lines),
            Kind::Gateway => gateway::load_desc(),
        }
    }
}

/// What a scenario needs from eventide and who it is compared with.
struct Plan {
    kind: Kind,
    example: &'static str,
    peers: Vec<ServerSpec>,
    /// Arguments eventide's demo needs to serve the scenario (none: its defaults).
    args: Vec<String>,
}

pub fn scenarios(cfg: &Config, env: &Env) -> Vec<Scenario> {
    let mut out = Vec::new();
    for &name in SCENARIOS {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|x| x == name))
        {
            continue;
        }
        match scenario(cfg, env, name) {
            Ok(Some(sc)) => out.push(sc),
            Ok(None) => {}
            Err(why) => println!("scenario {name}: skipped — {why}"),
        }
    }
    if cfg.mode == Mode::Triggers {
        out = out
            .into_iter()
            .filter_map(|sc| match triggers(env, sc) {
                Ok(sc) => Some(sc),
                Err((name, why)) => {
                    println!("scenario {name}: skipped — {why}");
                    None
                }
            })
            .collect();
    }
    out
}

fn contract(env: &Env, n: &str) -> ServerSpec {
    ServerSpec {
        name: n.to_string(),
        spawn: Spawn::Contract(env.bin(n)),
        example: None,
    }
}

/// One scenario, `Ok(None)` when it is left out without a reason to print.
fn scenario(cfg: &Config, env: &Env, name: &'static str) -> Result<Option<Scenario>, String> {
    let peers = |list: &[&str]| -> Vec<ServerSpec> {
        list.iter()
            .filter(|p| env.bin(p).is_file())
            .map(|p| contract(env, p))
            .collect()
    };
    let plan = match name {
        UDP_ECHO => {
            env.udp.as_ref().map_err(|e| e.clone())?;
            return Ok(Some(udp_scenario(env)));
        }
        "tls-echo" | "tls-echo-d16" | "tls-echo-16k" => {
            return tls_echo::scenario(cfg, env, name).map(Some)
        }
        "echo-d1" | "echo-d16" => Plan {
            kind: Kind::Echo {
                depth: if name == "echo-d1" { 1 } else { 16 },
            },
            example: "echo",
            peers: peers(ECHO_PEERS),
            args: vec![],
        },
        "http-plain" | "http-pipe16" => {
            if !env.wrk {
                return Err("wrk not installed".into());
            }
            Plan {
                kind: Kind::Http {
                    pipeline: if name == "http-plain" { 1 } else { 16 },
                },
                example: "http",
                peers: peers(&["hyper-http", "tokio-http"]),
                args: vec![],
            }
        }
        "resp-p1" | "resp-p16" => {
            if !env.redis_benchmark {
                return Err("redis-benchmark not installed".into());
            }
            let peers = if env.redis_server {
                vec![ServerSpec {
                    name: "redis-server".into(),
                    spawn: Spawn::RedisServer,
                    example: None,
                }]
            } else {
                vec![]
            };
            Plan {
                kind: Kind::Resp {
                    pipeline: if name == "resp-p1" { 1 } else { 16 },
                },
                example: "redis",
                peers,
                args: vec![],
            }
        }
        "idle-mem" => Plan {
            kind: Kind::Idle,
            example: "echo",
            peers: peers(ECHO_PEERS),
            args: vec![],
        },
        "conns" => Plan {
            kind: Kind::Conns,
            example: "echo",
            peers: peers(CONNS_PEERS),
            args: vec![],
        },
        "ws-d1" | "ws-d16" => Plan {
            kind: Kind::Ws {
                depth: if name == "ws-d1" { 1 } else { 16 },
            },
            example: "ws_echo",
            peers: peers(&["tokio-ws-echo"]),
            args: vec![],
        },
        "broadcast" | "broadcast-lines" => {
            let lines = name == "broadcast-lines";
            Plan {
                kind: Kind::Broadcast { lines },
                example: "chat",
                peers: broadcast::peers(env, lines),
                args: vec![],
            }
        }
        "gateway" => return gateway::scenario(cfg, env).map(Some),
        _ => return Ok(None),
    };
    Ok(assemble(cfg, env, name, plan))
}

/// eventide's demo (when it exists) and the peers, as a scenario; `None` when nothing can run.
fn assemble(cfg: &Config, env: &Env, name: &'static str, plan: Plan) -> Option<Scenario> {
    let mut notes = Vec::new();
    let mut servers = Vec::new();
    let mut eventide = None;
    match &env.examples[plan.example] {
        Ok(bin) => {
            let spawn = match (&plan.kind, plan.args.is_empty()) {
                (Kind::Broadcast { lines: true }, _) => Spawn::Lines(bin.clone(), plan.args),
                (_, true) => Spawn::Contract(bin.clone()),
                (_, false) => Spawn::ContractWith(bin.clone(), plan.args),
            };
            servers.push(ServerSpec {
                name: EVENTIDE.into(),
                spawn,
                example: Some(plan.example),
            });
            eventide = Some(EVENTIDE.to_string());
        }
        Err(why) if cfg.peers_anyway || cfg.quick => {
            println!(
                "scenario {name}: eventide skipped — {why}; running the peers{}",
                if cfg.quick {
                    " (--quick keeps them from rotting)"
                } else {
                    " (--peers-anyway)"
                }
            );
            notes.push(format!(
                "eventide `examples/{}.rs` skipped: {why}",
                plan.example
            ));
        }
        Err(why) => {
            println!(
                "scenario {name}: skipped — eventide `examples/{}.rs` unavailable: {why}",
                plan.example
            );
            return None;
        }
    }
    servers.extend(plan.peers);
    if servers.is_empty() {
        return None;
    }
    Some(Scenario {
        name,
        kind: plan.kind,
        servers,
        eventide,
        notes,
        upstream: None,
    })
}

/// The `--triggers` form of a scenario: each eventide server twice, level- and edge-triggered,
/// and no peers. Ratios are edge / level.
fn triggers(env: &Env, mut sc: Scenario) -> Result<Scenario, (&'static str, String)> {
    let name = sc.name;
    let spec = sc
        .servers
        .drain(..)
        .find(|s| s.example.is_some())
        .ok_or((name, "no eventide demo to compare".to_string()))?;
    let example = spec.example.expect("found by example");
    let modes = env
        .triggers
        .get(example)
        .cloned()
        .unwrap_or_else(|| Err(format!("examples/{example}.rs not built")))
        .map_err(|why| (name, why))?;
    let mut servers = Vec::new();
    for (mode, args) in [("level", &modes.level), ("edge", &modes.edge)] {
        let default = if modes.default == Some(mode) {
            " (default)"
        } else {
            ""
        };
        servers.push(ServerSpec {
            name: format!("{} {mode}{default}", spec.name),
            spawn: spec.spawn.with_args(args),
            example: spec.example,
        });
    }
    sc.eventide = Some(servers[1].name.clone());
    sc.notes.push(format!(
        "{name}: eventide against itself, edge- / level-triggered ({}); the peers are in the suite's table",
        modes.describe()
    ));
    sc.servers = servers;
    Ok(sc)
}

/// How a demo selects level- or edge-triggered readiness, read from its usage line.
#[derive(Debug, Clone)]
pub struct TriggerArgs {
    pub level: Vec<String>,
    pub edge: Vec<String>,
    /// The mode it runs without either argument, when its usage says.
    pub default: Option<&'static str>,
}

impl TriggerArgs {
    /// From a demo's `--help` output: `[--trigger VALUE]`, `[--edge]` or `[--level]`.
    pub fn from_usage(usage: &str) -> Result<TriggerArgs, String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        if usage.contains("[--trigger ") {
            Ok(TriggerArgs {
                level: v(&["--trigger", "level"]),
                edge: v(&["--trigger", "edge"]),
                default: None,
            })
        } else if usage.contains("[--edge]") {
            Ok(TriggerArgs {
                level: vec![],
                edge: v(&["--edge"]),
                default: Some("level"),
            })
        } else if usage.contains("[--level]") {
            Ok(TriggerArgs {
                level: v(&["--level"]),
                edge: vec![],
                default: Some("edge"),
            })
        } else {
            Err("its usage offers no --edge, --level or --trigger switch".into())
        }
    }

    fn describe(&self) -> String {
        let show = |a: &[String]| {
            if a.is_empty() {
                "no switch".to_string()
            } else {
                format!("`{}`", a.join(" "))
            }
        };
        format!("level: {}, edge: {}", show(&self.level), show(&self.edge))
    }
}

/// eventide's UDP echo at each batch size of [`UDP_BATCHES`] (the caller checked that the
/// example and the load tool support it).
fn udp_scenario(env: &Env) -> Scenario {
    let servers = match &env.examples["echo"] {
        Ok(bin) => UDP_BATCHES
            .iter()
            .map(|&n| ServerSpec {
                name: udp_server_name(n),
                spawn: Spawn::ContractWith(
                    bin.clone(),
                    vec!["--udp".into(), "--udp-batch".into(), n.to_string()],
                ),
                example: Some("echo"),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    Scenario {
        name: UDP_ECHO,
        kind: Kind::Udp { depth: UDP_DEPTH },
        servers,
        eventide: Some(udp_server_name(UDP_BATCHES[0])),
        notes: vec![format!(
            "udp-echo compares eventide with itself: ratios are --udp-batch {} / --udp-batch {}",
            UDP_BATCHES[0], UDP_BATCHES[1]
        )],
        upstream: None,
    }
}
