//! `conns-load` — opens many connections to an echo server as fast as the server takes them,
//! then holds them: the `conns` scenario's client.
//!
//! `--conns N` connections are opened by one single-threaded mio loop with up to `--window W`
//! of them in progress at a time (non-blocking connect, then one 16-byte message that must come
//! back byte for byte: the connection is *open* once the server accepted it and served it).
//! Connection `i` is bound to source address `127.0.0.(2 + i % K)` (`--sources K`), so the
//! ephemeral ports of one address are never the limit. `MARK start` / `MARK end` (with
//! `--marks`) frame the opening, for the runner to sample the server's CPU time; then one JSON
//! line (`conns`, `open_secs`, `opens_per_sec`), then `ready`. The connections are held until
//! stdin closes or SIGINT/SIGTERM arrives. Any failure (refused, reset, a wrong echo, a
//! connection closed early, no progress for 30 s) exits non-zero with the reason.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use eventide_bench::args::Flags;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str =
    "usage: conns-load --addr HOST:PORT --conns N [--sources K] [--window W] [--marks]";

/// The message each connection sends once and expects back.
const HELLO: usize = 16;

struct Opts {
    addr: SocketAddr,
    conns: usize,
    sources: u8,
    window: usize,
    marks: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        conns: 0,
        sources: 4,
        window: 256,
        marks: false,
    };
    let mut flags = Flags::from_env();
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            "--addr" => o.addr = flags.parse()?,
            "--conns" => o.conns = flags.parse()?,
            "--sources" => o.sources = flags.parse()?,
            "--window" => o.window = flags.parse()?,
            "--marks" => o.marks = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {:?}", flags.arg())),
        }
    }
    if o.addr.port() == 0 || o.conns == 0 {
        return Err("--addr HOST:PORT of a running server and --conns N are required".into());
    }
    if o.sources == 0 || o.sources > 250 || o.window == 0 {
        return Err("--sources must be in 1..=250 and --window >= 1".into());
    }
    Ok(o)
}

fn main() {
    let o = parse().unwrap_or_else(|e| {
        eprintln!("conns-load: {e}\n{USAGE}");
        std::process::exit(2)
    });
    if let Err(e) = run(&o) {
        eprintln!("conns-load: {e}");
        std::process::exit(1);
    }
}

/// A connection being opened: connect in progress, then the hello written and echoed.
struct Opening {
    stream: TcpStream,
    hello: [u8; HELLO],
    written: usize,
    received: usize,
}

fn hello(i: usize) -> [u8; HELLO] {
    let mut m = [0u8; HELLO];
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m[8..].copy_from_slice(b"conn-rt!");
    m
}

fn connect(o: &Opts, i: usize) -> io::Result<TcpStream> {
    let source = SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(o.sources)) as u8),
        0,
    ));
    let domain = socket2::Domain::for_address(o.addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    if o.addr.is_ipv4() {
        s.bind(&source.into())
            .map_err(|e| io::Error::new(e.kind(), format!("bind {source}: {e}")))?;
    }
    match s.connect(&o.addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

fn run(o: &Opts) -> io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut opening: slab::Slab<(usize, Opening)> = slab::Slab::with_capacity(o.window);
    let mut held: Vec<TcpStream> = Vec::with_capacity(o.conns);
    let mut next = 0usize;
    let mut buf = [0u8; 64];
    if o.marks {
        eventide_bench::mark("start");
    }
    let t0 = Instant::now();
    let mut progress = Instant::now();
    while held.len() < o.conns {
        while next < o.conns && opening.len() < o.window {
            let i = next;
            let mut stream = connect(o, i).map_err(|e| {
                io::Error::new(e.kind(), format!("connect #{i} ({} open): {e}", held.len()))
            })?;
            let entry = opening.vacant_entry();
            poll.registry().register(
                &mut stream,
                Token(entry.key()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            entry.insert((
                i,
                Opening {
                    stream,
                    hello: hello(i),
                    written: 0,
                    received: 0,
                },
            ));
            next += 1;
        }
        poll.poll(&mut events, Some(Duration::from_secs(1)))
            .or_else(|e| {
                if e.kind() == ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        if events.is_empty() && progress.elapsed() > Duration::from_secs(30) {
            return Err(io::Error::other(format!(
                "no progress for 30 s with {} open and {} in progress",
                held.len(),
                opening.len()
            )));
        }
        for ev in events.iter() {
            let key = ev.token().0;
            let Some((i, c)) = opening.get_mut(key) else {
                continue;
            };
            let i = *i;
            let fail = |what: &str, e: io::Error| {
                io::Error::new(
                    e.kind(),
                    format!("conn #{i} ({} open): {what}: {e}", held.len()),
                )
            };
            if let Some(e) = c.stream.take_error().map_err(|e| fail("connect", e))? {
                return Err(fail("connect", e));
            }
            if ev.is_writable() && c.written < HELLO {
                match c.stream.write(&c.hello[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::NotConnected => {} // still connecting
                    Err(e) => return Err(fail("write", e)),
                }
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => return Err(fail("read", ErrorKind::UnexpectedEof.into())),
                    Ok(n) => {
                        let end = c.received + n;
                        if end > c.written || buf[..n] != c.hello[c.received..end] {
                            return Err(fail("echo", io::Error::other("the echo differs")));
                        }
                        c.received = end;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::NotConnected => break,
                    Err(e) => return Err(fail("read", e)),
                }
            }
            if c.received == HELLO {
                let (_, mut c) = opening.remove(key);
                poll.registry().deregister(&mut c.stream)?;
                held.push(c.stream);
                progress = Instant::now();
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if o.marks {
        eventide_bench::mark("end");
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({
            "conns": o.conns,
            "open_secs": secs,
            "opens_per_sec": o.conns as f64 / secs,
        })
    )?;
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    std::thread::spawn(|| {
        let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
        std::process::exit(0);
    });
    let _ = signals.forever().next();
    drop(held);
    Ok(())
}
