//! The scenarios: what load each one applies, and which servers it compares.

use crate::cli::{Config, EVENTIDE, SCENARIOS};
use crate::procs::Spawn;
use crate::runner::echo_warmup;
use crate::setup::Env;
use crate::tls_echo::{self, TLS_ECHO};

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
    /// Echo over TLS, then idle memory per TLS connection (see `tls_echo`).
    TlsEcho {
        depth: usize,
    },
}

/// The UDP scenario's name.
pub const UDP_ECHO: &str = "udp-echo";
/// UDP load: sockets, datagram size, datagrams in flight per socket.
pub const UDP_SOCKETS: usize = 50;
pub const UDP_SIZE: usize = 512;
pub const UDP_DEPTH: usize = 16;
/// The `--udp-batch` compared: batched first (the "eventide" column), then one per syscall.
pub const UDP_BATCHES: [usize; 2] = [32, 1];

/// Display name of eventide's UDP echo with `--udp-batch n`.
fn udp_server_name(n: usize) -> String {
    format!("{EVENTIDE} batch {n}")
}

pub struct ServerSpec {
    pub name: String,
    pub spawn: Spawn,
}

pub struct Scenario {
    pub name: &'static str,
    pub kind: Kind,
    pub servers: Vec<ServerSpec>,
    pub eventide: Option<String>,
    pub notes: Vec<String>,
}

impl Scenario {
    pub fn benches(&self) -> Vec<String> {
        match self.kind {
            Kind::Resp { .. } => vec![format!("{} SET", self.name), format!("{} GET", self.name)],
            _ => vec![self.name.to_string()],
        }
    }

    pub fn load_desc(&self, cfg: &Config, idle_conns: usize, test: Option<&str>) -> String {
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
            Kind::TlsEcho { .. } => tls_echo::load_desc(cfg, idle_conns),
        }
    }
}

pub fn scenarios(cfg: &Config, env: &Env) -> Vec<Scenario> {
    let contract = |n: &str| ServerSpec {
        name: n.to_string(),
        spawn: Spawn::Contract(env.bin(n)),
    };
    let mut out = Vec::new();
    for &name in SCENARIOS {
        if cfg
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|x| x == name))
        {
            continue;
        }
        if name == TLS_ECHO {
            match tls_echo::scenario(cfg, env) {
                Ok(sc) => out.push(sc),
                Err(why) => println!("scenario {name}: skipped — {why}"),
            }
            continue;
        }
        if name == UDP_ECHO {
            match &env.udp {
                Ok(_) => out.push(udp_scenario(env)),
                Err(why) => println!("scenario {name}: skipped — {why}"),
            }
            continue;
        }
        let (kind, example, peers): (Kind, &str, Vec<ServerSpec>) = match name {
            "echo-d1" => (
                Kind::Echo { depth: 1 },
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
            "echo-d16" => (
                Kind::Echo { depth: 16 },
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
            "http-plain" => (
                Kind::Http { pipeline: 1 },
                "http",
                vec![contract("hyper-http"), contract("tokio-http")],
            ),
            "http-pipe16" => (
                Kind::Http { pipeline: 16 },
                "http",
                vec![contract("hyper-http"), contract("tokio-http")],
            ),
            "resp-p1" | "resp-p16" => {
                let p = if name == "resp-p1" { 1 } else { 16 };
                let peers = if env.redis_server {
                    vec![ServerSpec {
                        name: "redis-server".into(),
                        spawn: Spawn::RedisServer,
                    }]
                } else {
                    vec![]
                };
                (Kind::Resp { pipeline: p }, "redis", peers)
            }
            _ => (
                Kind::Idle,
                "echo",
                vec![contract("tokio-echo"), contract("mio-echo")],
            ),
        };
        match kind {
            Kind::Http { .. } if !env.wrk => {
                println!("scenario {name}: skipped — wrk not installed");
                continue;
            }
            Kind::Resp { .. } if !env.redis_benchmark => {
                println!("scenario {name}: skipped — redis-benchmark not installed");
                continue;
            }
            _ => {}
        }
        let mut notes = Vec::new();
        let mut servers = Vec::new();
        let mut eventide = None;
        match &env.examples[example] {
            Ok(bin) => {
                // Throughput scenarios run eventide edge-triggered, as mio (and tokio, through
                // mio) register their sockets: level-triggered epoll re-polls every reported
                // socket on the next epoll_wait, which costs kernel time per message. The idle
                // scenario keeps the defaults.
                let spawn = if matches!(kind, Kind::Idle) {
                    Spawn::Contract(bin.clone())
                } else {
                    notes.push(EDGE_NOTE.to_string());
                    Spawn::ContractWith(bin.clone(), vec!["--edge".into()])
                };
                servers.push(ServerSpec {
                    name: EVENTIDE.into(),
                    spawn,
                });
                eventide = Some(EVENTIDE.to_string());
            }
            Err(why) if cfg.peers_anyway => {
                println!(
                    "scenario {name}: eventide skipped — {why}; running the peers (--peers-anyway)"
                );
                notes.push(format!("eventide `{example}` example skipped: {why}"));
            }
            Err(why) => {
                println!(
                    "scenario {name}: skipped — eventide `{example}` example unavailable: {why}"
                );
                continue;
            }
        }
        servers.extend(peers);
        if servers.is_empty() {
            continue;
        }
        out.push(Scenario {
            name,
            kind,
            servers,
            eventide,
            notes,
        });
    }
    out
}

/// Why eventide runs with `--edge` in the throughput scenarios (printed in the report).
pub(crate) const EDGE_NOTE: &str =
    "eventide runs edge-triggered (`--edge`), as mio and tokio (through mio) \
register their sockets; its default, level-triggered mode costs the kernel one extra poll of each \
reported socket per epoll_wait (measured by hand at depth 1: about 6 % more CPU per message and a \
27 % higher p99)";

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
    }
}
