//! Shared helpers for the eventide benchmark suite.
//!
//! The binaries in `src/bin/` are the peer servers (`tokio-echo`, `mio-echo`, `hyper-http`,
//! `tokio-http`, `tokio-tls-echo`), the load generators (`echo-load`, `udp-load`) and the comparison runner
//! (`bench-runner`).
//! Every peer server follows the *demo contract* also followed by eventide's examples:
//!
//! * `--addr HOST:PORT` (port 0 allowed, default `127.0.0.1:0`) and `--loops N` (default 1);
//! * after binding, exactly one line `listening on ADDR` (the real bound address) on stdout, flushed;
//! * serve until SIGINT or SIGTERM, then exit with status 0.
//!
//! This module holds what those binaries share: argument parsing ([`args`]), signal handling
//! and the tokio peers' accept loop, the load generators' payload and window marks, the HTTP
//! `Date` cache and the few libc calls (in [`sys`]).

#![warn(missing_docs)]

pub mod args;
pub mod date;
pub mod stream;
pub mod sys;
pub mod tls;
pub mod ws;

use std::io::Write;
use std::net::SocketAddr;

/// Arguments of the demo contract: `--addr HOST:PORT` and `--loops N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerArgs {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Number of event loops / worker threads.
    pub loops: usize,
}

impl ServerArgs {
    /// Parses the process arguments; prints usage and exits with status 2 on error.
    pub fn from_env(program: &str, about: &str) -> ServerArgs {
        match ServerArgs::parse(std::env::args().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{program}: {about}\n\nusage: {program} [--addr HOST:PORT] [--loops N]");
                std::process::exit(0);
            }
            Err(e) => {
                eprintln!("{program}: {e}\nusage: {program} [--addr HOST:PORT] [--loops N]");
                std::process::exit(2);
            }
        }
    }

    /// Parses `--addr` / `--loops` (also `--addr=...` forms). `Ok(None)` means `--help`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Option<ServerArgs>, String> {
        let mut out = ServerArgs {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            loops: 1,
        };
        let mut flags = args::Flags::new(args);
        while let Some(key) = flags.next_key() {
            match key.as_str() {
                "--addr" => {
                    let v = flags.value()?;
                    out.addr = v.parse().map_err(|e| format!("bad --addr {v:?}: {e}"))?;
                }
                "--loops" => {
                    let v = flags.value()?;
                    out.loops =
                        v.parse().ok().filter(|&n: &usize| n >= 1).ok_or_else(|| {
                            format!("bad --loops {v:?}: expected an integer >= 1")
                        })?;
                }
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(out))
    }
}

/// Prints the contract line `listening on ADDR` and flushes stdout.
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not kill the server: ignore errors, the runner reads this line.
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// A load generator's payload for connection or socket `id`: `size` pseudo-random bytes
/// (xorshift64* seeded by the id: cheap, and different for every connection), so a reply
/// delivered to the wrong client or shifted by a byte is caught.
pub fn filler(id: u32, size: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (u64::from(id) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (0..size)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Prints `MARK what` on stdout and flushes it: a load generator's measured-window edges, at
/// which the runner samples the server's CPU time.
pub fn mark(what: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "MARK {what}");
    let _ = out.flush();
}

/// Builds the tokio runtime the contract asks for: `current_thread` for one loop, otherwise a
/// multi-thread runtime with `loops` workers.
pub fn tokio_runtime(loops: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if loops == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(loops)
            .enable_all()
            .build()
    }
}

/// The tokio peers' accept loop: binds `addr`, announces it (the contract line), and hands
/// every accepted connection to `spawn` until SIGINT or SIGTERM. An accept error (EMFILE and
/// friends) is logged as `program: accept: ...` and the connections already open keep being
/// served.
pub async fn tokio_serve(
    program: &str,
    addr: SocketAddr,
    mut spawn: impl FnMut(tokio::net::TcpStream),
) -> std::io::Result<()> {
    // Signal handlers first, so a SIGTERM right after the announcement is not lost.
    let mut shutdown = Shutdown::new()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    announce(listener.local_addr()?);
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, _)) => spawn(stream),
                Err(e) => eprintln!("{program}: accept: {e}"),
            },
            _ = shutdown.recv() => return Ok(()),
        }
    }
}

/// SIGINT/SIGTERM listener for the tokio peers.
///
/// Create it *before* announcing the address: the handlers are installed on construction, so a
/// SIGTERM sent right after the runner reads `listening on` is never lost to the default action.
pub struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the handlers (must run inside a tokio runtime).
    pub fn new() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Shutdown {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when SIGINT or SIGTERM arrives.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Option<ServerArgs>, String> {
        ServerArgs::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_contract_args() {
        let a = p(&[]).unwrap().unwrap();
        assert_eq!(a.addr, "127.0.0.1:0".parse().unwrap());
        assert_eq!(a.loops, 1);
        let a = p(&["--addr", "0.0.0.0:8080", "--loops=4"])
            .unwrap()
            .unwrap();
        assert_eq!(a.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.loops, 4);
        assert!(p(&["--loops", "0"]).is_err());
        assert!(p(&["--addr"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert_eq!(p(&["--help"]).unwrap(), None);
    }
}
