//! The demos' listeners: the listen address, or the sockets systemd passed (socket
//! activation), or a predecessor's (handover); with `--tls-cert PEM --tls-key PEM`, TLS on
//! them (feature `tls`; without it, the options are refused with a clear message).

use std::process::exit;

use eventide::{Builder, ListenFd};

use crate::common::Args;

/// A server configuration (uninhabited without the `tls` feature).
#[cfg(feature = "tls")]
pub type Config = eventide::tls::ServerConfig;
/// A server configuration (uninhabited without the `tls` feature).
#[cfg(not(feature = "tls"))]
pub enum Config {}

/// The TLS configuration the command line asks for, with `alpn` offered: `None` without
/// `--tls-cert`. Exits 2 on half the pair or without the `tls` feature, 1 when the files do
/// not load.
pub fn config(args: &Args, alpn: &[&[u8]]) -> Option<Config> {
    let (cert, key) = match (args.value("tls-cert"), args.value("tls-key")) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            eprintln!("--tls-cert and --tls-key go together");
            exit(2)
        }
    };
    load(cert, key, alpn)
}

#[cfg(feature = "tls")]
fn load(cert: &str, key: &str, alpn: &[&[u8]]) -> Option<Config> {
    match eventide::tls::server_config_from_pem(cert, key, alpn) {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("loading the TLS certificate and key: {e}");
            exit(1)
        }
    }
}

#[cfg(not(feature = "tls"))]
fn load(_: &str, _: &str, _: &[&[u8]]) -> Option<Config> {
    eprintln!(
        "--tls-cert needs the `tls` feature: cargo run --release --features tls --example ..."
    );
    exit(2)
}

/// Listens on the sockets systemd passed if it passed any (socket activation: `--addr` is
/// ignored then), else on `addr`; with TLS when `config` is given.
pub fn bind(builder: Builder, addr: &str, config: Option<Config>) -> Builder {
    let passed = crate::common::or_exit(ListenFd::from_systemd(), "socket activation");
    if !passed.is_empty() {
        return adopt(builder, passed, config);
    }
    match config {
        None => builder.bind(addr),
        #[cfg(feature = "tls")]
        Some(config) => builder.bind_tls(addr, config),
        #[cfg(not(feature = "tls"))]
        Some(config) => match config {},
    }
}

/// Serves listening sockets this process was given, with TLS when `config` is given.
pub fn adopt(mut builder: Builder, fds: Vec<ListenFd>, config: Option<Config>) -> Builder {
    for fd in fds {
        builder = match &config {
            None => builder.bind_fd(fd),
            #[cfg(feature = "tls")]
            Some(config) => builder.bind_fd_tls(fd, config.clone()),
            #[cfg(not(feature = "tls"))]
            Some(config) => match *config {},
        };
    }
    builder
}
