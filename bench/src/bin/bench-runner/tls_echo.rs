//! The `tls-echo` scenario: eventide's echo example over TLS (`--tls-cert --tls-key`, built
//! with the `tls` feature) against `tokio-tls-echo` (tokio + tokio-rustls on the same rustls
//! 0.23 and ring provider, configured the same way).
//!
//! Load: `echo-load --tls`, 50 connections × 512 B at depth 1, TLS 1.3 AES-128-GCM (the only
//! suite the client offers), every session established before the measured window — so the
//! figure is CPU per message of record processing, not handshakes. Each round then measures
//! resident memory per idle TLS connection on a fresh server (the idle-mem machinery with
//! `echo-load --idle N --tls`): one handshake and one 16-byte round trip per connection.
//!
//! The certificate (self-signed, `localhost` and `127.0.0.1`) is made at run time with rcgen in
//! the run's temp dir. The TLS build of the echo example is kept beside the plain one as
//! `examples/echo-tls`, and the plain one is rebuilt after it, so the other scenarios run the
//! example without the `tls` feature.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cli::{Config, EVENTIDE};
use crate::load::{self, Sample};
use crate::procs::{Server, Spawn, Stopped};
use crate::runner::{echo_params, echo_warmup};
use crate::scenarios::{Kind, Scenario, ServerSpec};
use crate::setup::{cargo, Env};

/// The scenario's name.
pub const TLS_ECHO: &str = "tls-echo";
/// Messages in flight per connection.
pub const DEPTH: usize = 1;
/// The peer.
const PEER: &str = "tokio-tls-echo";

fn cert(env: &Env) -> PathBuf {
    env.tmp.join("tls").join("cert.pem")
}

fn key(env: &Env) -> PathBuf {
    env.tmp.join("tls").join("key.pem")
}

/// echo-load's arguments for TLS: verify the servers' certificate against it.
fn load_args(env: &Env) -> Vec<String> {
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
pub fn load_desc(cfg: &Config, idle_conns: usize) -> String {
    format!(
        "echo-load --tls: 50 connections × 512 B, depth {DEPTH}, TLS 1.3 AES-128-GCM (rustls 0.23, ring, on both sides), sessions established before {} s windows after {} s warm-up; then VmRSS growth per connection over {idle_conns} idle TLS connections, each after its handshake and one 16-byte round trip",
        cfg.secs,
        echo_warmup(cfg)
    )
}

/// The scenario, once the certificate is made and both servers exist; or why it cannot run.
pub fn scenario(cfg: &Config, env: &Env) -> Result<Scenario, String> {
    let dir = env.tmp.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    eventide_bench::tls::write_self_signed(&dir)
        .map_err(|e| format!("making the certificate: {e}"))?;
    let peer = env.bin(PEER);
    if !peer.is_file() {
        return Err(format!(
            "{} missing: build with `cargo build --release -p eventide-bench`",
            peer.display()
        ));
    }
    let echo = tls_echo_example(cfg, env)?;
    let args = server_args(env);
    Ok(Scenario {
        name: TLS_ECHO,
        kind: Kind::TlsEcho { depth: DEPTH },
        servers: vec![
            ServerSpec {
                name: EVENTIDE.into(),
                spawn: Spawn::ContractWith(echo, [args.clone(), vec!["--edge".into()]].concat()),
            },
            ServerSpec {
                name: PEER.into(),
                spawn: Spawn::ContractWith(peer, args),
            },
        ],
        eventide: Some(EVENTIDE.into()),
        notes: vec![
            super::scenarios::EDGE_NOTE.to_string(),
            "tls-echo: B/conn idle is per idle TLS connection (after its handshake and one round trip); CPU µs/req excludes the handshakes".into(),
        ],
    })
}

/// eventide's echo example built with the `tls` feature, as `examples/echo-tls`.
fn tls_echo_example(cfg: &Config, env: &Env) -> Result<PathBuf, String> {
    let examples = env.release.join("examples");
    let tls = examples.join("echo-tls");
    if cfg.build {
        println!("building eventide example `echo` (release, features tls)…");
        build_echo(env, &["--features", "tls"])?;
        std::fs::copy(examples.join("echo"), &tls)
            .map_err(|e| format!("copying the TLS echo example: {e}"))?;
        // Put back the plain build the other scenarios use (cached: only re-linked).
        build_echo(env, &[])?;
    }
    if !tls.is_file() {
        return Err(format!("{} not built", tls.display()));
    }
    let out = Command::new(&tls)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running `{} --help`: {e}", tls.display()))?;
    if !String::from_utf8_lossy(&out.stdout).contains("[--tls-cert") {
        return Err("examples/echo does not take `--tls-cert PEM --tls-key PEM`".into());
    }
    Ok(tls)
}

fn build_echo(env: &Env, extra: &[&str]) -> Result<(), String> {
    let out = cargo()
        .args(["build", "--release", "-p", "eventide", "--example", "echo"])
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

/// A timed run: CPU sampled around echo-load's measured window.
pub fn timed(
    env: &Env,
    server: &Server,
    depth: usize,
    secs: f64,
    warmup: f64,
    round: usize,
) -> io::Result<Sample> {
    load::echo_timed_with(
        &env.bin("echo-load"),
        server,
        echo_params(depth),
        secs,
        warmup,
        round,
        &load_args(env),
    )
}

/// An untimed run (syscall pass): every message echoed.
pub fn total(env: &Env, server: &Server, depth: usize, secs: f64) -> io::Result<u64> {
    load::echo_total_with(
        &env.bin("echo-load"),
        server,
        echo_params(depth),
        secs,
        &load_args(env),
    )
}

/// Resident bytes per idle TLS connection; stops `server`.
pub fn idle(env: &Env, server: Server, conns: usize) -> (io::Result<f64>, Stopped) {
    load::idle_rss_with(&env.bin("echo-load"), server, conns, &load_args(env))
}
