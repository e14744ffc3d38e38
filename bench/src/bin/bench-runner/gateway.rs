//! The `gateway` scenario: HTTP through a reverse proxy to one upstream — eventide's `gateway`
//! demo (`--upstream HOST:PORT`) against nginx (Debian's `nginx-light`) configured as an expert
//! configures a keep-alive reverse proxy — CPU per request of the proxy process.
//!
//! The upstream is eventide's `http` demo, started once for the scenario and pinned to the
//! load's CPU (CPU 1, beside wrk), so the proxy has CPU 0 to itself and its CPU time is what
//! is compared. nginx: one worker (`worker_processes 1`; the master's and the worker's CPU are
//! summed), `access_log off`, client keep-alive without a request limit, an upstream
//! `keepalive` pool of 128 idle connections (more than wrk's 64 concurrent requests, so no
//! request waits for an upstream connect) with `proxy_http_version 1.1` and the `Connection`
//! header cleared (what the pool needs), `X-Forwarded-For` added as the gateway adds it.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::{Config, EVENTIDE};
use crate::procs::{free_port, Launch, Server, Spawn, LOAD_CPU, SERVER_CPU};
use crate::scenarios::{Kind, Scenario, ServerSpec};
use crate::setup::Env;

pub fn load_desc() -> String {
    "wrk -t1 -c64 GET /plaintext through the proxy to eventide's http demo (pinned to CPU 1 with wrk); CPU µs/req is the proxy's (nginx: master + its one worker)".into()
}

/// The scenario, with its upstream started; or why it cannot run.
pub fn scenario(cfg: &Config, env: &Env) -> Result<Scenario, String> {
    if !env.wrk {
        return Err("wrk not installed".into());
    }
    let http = env.examples["http"]
        .as_ref()
        .map_err(|why| format!("the upstream, eventide's http demo, is unavailable: {why}"))?;
    let launch = Launch {
        cpu: Some(LOAD_CPU),
        callgrind: None,
    };
    let upstream = Server::start_with(&Spawn::Contract(http.clone()), &launch)
        .map_err(|e| format!("starting the upstream: {e}"))?;
    let mut servers = Vec::new();
    let mut notes = Vec::new();
    let mut eventide = None;
    match &env.examples["gateway"] {
        Ok(bin) => {
            servers.push(ServerSpec {
                name: EVENTIDE.into(),
                spawn: Spawn::ContractWith(
                    bin.clone(),
                    vec!["--upstream".into(), upstream.addr.to_string()],
                ),
                example: Some("gateway"),
            });
            eventide = Some(EVENTIDE.to_string());
        }
        Err(why) if cfg.quick || cfg.peers_anyway => {
            println!("scenario gateway: eventide skipped — {why}; running nginx");
            notes.push(format!("eventide `examples/gateway.rs` skipped: {why}"));
        }
        Err(why) => return Err(format!("eventide `examples/gateway.rs` unavailable: {why}")),
    }
    if env.nginx {
        servers.push(ServerSpec {
            name: "nginx".into(),
            spawn: Spawn::Nginx {
                dir: env.tmp.join("nginx"),
                upstream: upstream.addr,
            },
            example: None,
        });
    } else {
        notes.push("nginx not installed (Debian `nginx-light`): no peer".into());
    }
    if servers.is_empty() {
        return Err("neither the gateway demo nor nginx is available".into());
    }
    Ok(Scenario {
        name: "gateway",
        kind: Kind::Gateway,
        servers,
        eventide,
        notes,
        upstream: Some(upstream),
    })
}

fn config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 75s;
    upstream backend {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"#
    )
}

/// Starts nginx (master + one worker) on a free port, pinned as `launch` says.
pub fn start_nginx(dir: &Path, upstream: SocketAddr, launch: &Launch) -> io::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, port, upstream))?;
    let child = Command::new("taskset")
        .args([
            "-c",
            launch.cpu.unwrap_or(SERVER_CPU),
            "nginx",
            "-e",
            "stderr",
            "-p",
        ])
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("spawn nginx: {e}")))?;
    Server::adopt(child, SocketAddr::from(([127, 0, 0, 1], port)), "nginx")
}
