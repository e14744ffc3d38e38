//! The TLS echo scenarios: eventide's echo example over TLS (`--tls-cert --tls-key`, built
//! with the `tls` feature) against `tokio-tls-echo` (tokio + tokio-rustls on the same rustls
//! 0.23 and ring provider, configured the same way) and its memory-careful form
//! `tokio-tls-echo-lean`.
//!
//! Load: `echo-load --tls`, 50 connections, TLS 1.3 AES-128-GCM (the only suite the client
//! offers), every session established before the measured window — so the figure is CPU per
//! message of record processing, not handshakes. `tls-echo`: 512 B at depth 1, and each round
//! then measures resident memory per idle TLS connection on a fresh server (the idle-mem
//! machinery with `echo-load --idle N --tls`): one handshake and one 16-byte round trip per
//! connection. `tls-echo-d16`: 512 B at depth 16 (16 messages per write, so many records per
//! read). `tls-echo-16k`: 16 KiB messages at depth 1 (one full-size record each).
//!
//! The certificate (self-signed, `localhost` and `127.0.0.1`) is made at run time with rcgen in
//! the run's temp dir. The TLS build of the echo example is kept beside the plain one as
//! `examples/echo-tls`, and the plain one is rebuilt after it, so the other scenarios run the
//! example without the `tls` feature.

use std::io;
use std::path::PathBuf;

use crate::cli::{Config, EVENTIDE};
use crate::load::{self, EchoParams, Sample};
use crate::procs::{Server, Spawn, Stopped};
use crate::runner::{echo_params, echo_warmup};
use crate::scenarios::{Kind, Scenario, ServerSpec};
use crate::setup::{cargo, Env};

/// The peers, as far as they are built.
const PEERS: &[&str] = &["tokio-tls-echo", "tokio-tls-echo-lean"];

fn cert(env: &Env) -> PathBuf {
    env.tmp.join("tls").join("cert.pem")
}

fn key(env: &Env) -> PathBuf {
    env.tmp.join("tls").join("key.pem")
}

/// echo-load's arguments for TLS: verify the servers' certificate against it.
pub fn load_args(env: &Env) -> Vec<String> {
    vec![
        "--tls".into(),
        "--ca".into(),
        cert(env).to_string_lossy().into_owned(),
    ]
}

/// The servers' arguments: the certificate and key.
fn server_args(env: &Env) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert(env).to_string_lossy().into_owned(),
        "--tls-key".into(),
        key(env).to_string_lossy().into_owned(),
    ]
}

/// One line describing the load, for the report.
pub fn load_desc(cfg: &Config, depth: usize, size: usize, idle_conns: Option<usize>) -> String {
    let mut d = format!(
        "echo-load --tls: 50 connections × {} B, depth {depth}, TLS 1.3 AES-128-GCM (rustls 0.23, ring, on both sides), sessions established before {} s windows after {} s warm-up",
        size,
        cfg.secs,
        echo_warmup(cfg)
    );
    if let Some(n) = idle_conns {
        d.push_str(&format!("; then VmRSS growth per connection over {n} idle TLS connections, each after its handshake and one 16-byte round trip"));
    }
    d
}

/// The scenario `name`, once the certificate is made and the servers exist; or why it cannot
/// run.
pub fn scenario(cfg: &Config, env: &Env, name: &'static str) -> Result<Scenario, String> {
    let kind = match name {
        "tls-echo" => Kind::TlsEcho {
            depth: 1,
            size: 512,
            idle: true,
        },
        "tls-echo-d16" => Kind::TlsEcho {
            depth: 16,
            size: 512,
            idle: false,
        },
        _ => Kind::TlsEcho {
            depth: 1,
            size: 16 * 1024,
            idle: false,
        },
    };
    let dir = env.tmp.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !cert(env).is_file() {
        eventide_bench::tls::write_self_signed(&dir)
            .map_err(|e| format!("making the certificate: {e}"))?;
    }
    let args = server_args(env);
    let mut servers = Vec::new();
    let mut notes = vec![format!("{name}: CPU µs/req excludes the handshakes")];
    if matches!(kind, Kind::TlsEcho { idle: true, .. }) {
        notes.push(format!("{name}: B/conn idle is per idle TLS connection (after its handshake and one round trip)"));
    }
    let mut eventide = None;
    match tls_echo_example(cfg, env) {
        Ok(echo) => {
            servers.push(ServerSpec {
                name: EVENTIDE.into(),
                spawn: Spawn::ContractWith(echo, args.clone()),
                example: Some("echo"),
            });
            eventide = Some(EVENTIDE.to_string());
        }
        Err(why) if cfg.quick || cfg.peers_anyway => notes.push(format!("eventide skipped: {why}")),
        Err(why) => return Err(why),
    }
    for p in PEERS {
        if env.bin(p).is_file() {
            servers.push(ServerSpec {
                name: p.to_string(),
                spawn: Spawn::ContractWith(env.bin(p), args.clone()),
                example: None,
            });
        }
    }
    if servers.is_empty() {
        return Err("no TLS echo server built".into());
    }
    Ok(Scenario {
        name,
        kind,
        servers,
        eventide,
        notes,
        upstream: None,
    })
}

/// eventide's echo example built with the `tls` feature, as `examples/echo-tls` (built once per
/// profile: the three TLS scenarios share it).
fn tls_echo_example(cfg: &Config, env: &Env) -> Result<PathBuf, String> {
    let examples = env.release.join("examples");
    let tls = examples.join("echo-tls");
    type Built = std::collections::BTreeMap<&'static str, Result<(), String>>;
    static BUILT: std::sync::Mutex<Built> = std::sync::Mutex::new(Built::new());
    if cfg.build {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        built
            .entry(env.profile)
            .or_insert_with(|| build_tls_echo(env))
            .clone()?;
    }
    if !tls.is_file() {
        return Err(format!("{} not built", tls.display()));
    }
    let usage = crate::setup::usage(&tls)?;
    if !usage.contains("[--tls-cert") {
        return Err("examples/echo does not take `--tls-cert PEM --tls-key PEM`".into());
    }
    Ok(tls)
}

fn build_tls_echo(env: &Env) -> Result<(), String> {
    let examples = env.release.join("examples");
    let tls = examples.join("echo-tls");
    {
        println!(
            "building eventide example `echo` ({}, features tls)…",
            env.profile
        );
        build_echo(env, &["--features", "tls"])?;
        std::fs::copy(examples.join("echo"), &tls)
            .map_err(|e| format!("copying the TLS echo example: {e}"))?;
        // Put back the plain build the other scenarios use (cached: only re-linked).
        build_echo(env, &[])?;
    }
    Ok(())
}

fn build_echo(env: &Env, extra: &[&str]) -> Result<(), String> {
    let out = cargo()
        .args([
            "build",
            "--profile",
            env.profile,
            "-p",
            "eventide",
            "--example",
            "echo",
        ])
        .args(extra)
        .current_dir(&env.root)
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "building the echo example{} failed: {}",
        if extra.is_empty() { "" } else { " with TLS" },
        err.lines().find(|l| l.starts_with("error")).unwrap_or("")
    ))
}

/// The echo load of a TLS scenario.
pub fn params(depth: usize, size: usize) -> EchoParams {
    EchoParams {
        size,
        ..echo_params(depth)
    }
}

/// A timed run: CPU sampled around echo-load's measured window.
pub fn timed(
    env: &Env,
    server: &Server,
    p: EchoParams,
    secs: f64,
    warmup: f64,
    round: usize,
) -> io::Result<Sample> {
    load::echo_timed_with(
        &env.bin("echo-load"),
        server,
        p,
        secs,
        warmup,
        round,
        &load_args(env),
    )
}

/// An untimed run (syscall pass): every message echoed.
pub fn total(env: &Env, server: &Server, p: EchoParams, secs: f64) -> io::Result<u64> {
    load::echo_total_with(&env.bin("echo-load"), server, p, secs, &load_args(env))
}

/// Resident bytes per idle TLS connection; stops `server`.
pub fn idle(env: &Env, server: Server, conns: usize) -> (io::Result<f64>, Stopped) {
    load::idle_rss_with(&env.bin("echo-load"), server, conns, &load_args(env))
}
