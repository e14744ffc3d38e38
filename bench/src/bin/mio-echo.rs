//! `mio-echo` — a hand-written single-threaded mio echo loop: the "minimal loop" reference.
//!
//! What a careful C programmer would write on epoll, through mio: edge-triggered readiness (as mio
//! always is), each socket registered once for read+write (no `epoll_ctl` per message), one shared
//! 64 KiB read buffer, a per-connection pending-output `Vec` that is allocated only when a write is
//! short, and a `Slab` of connections. A read shorter than the buffer is taken to have drained the
//! socket (the next arrival raises a new edge), so the common case costs one `read` + one `write`
//! per ready connection plus the shared `epoll_wait`.
//!
//! Follows the demo contract (see the crate docs); only `--loops 1` is supported.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;

use eventide_bench::{announce, ServerArgs};
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
const READ_BUF: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    /// Bytes the kernel would not take yet; empty (and unallocated) in the common case.
    pending: Vec<u8>,
}

fn main() {
    let args = ServerArgs::from_env("mio-echo", "single-threaded mio echo loop (benchmark peer)");
    if args.loops != 1 {
        eprintln!(
            "mio-echo: only --loops 1 is supported (got --loops {})",
            args.loops
        );
        std::process::exit(2);
    }
    if let Err(e) = run(args) {
        eprintln!("mio-echo: {e}");
        std::process::exit(1);
    }
}

fn run(args: ServerArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;

    // Signals: handlers write to a socket pair that sits in the poll set. Installed before the
    // address is announced so an early SIGTERM is never lost.
    let (sig_read, sig_write) = StdUnixStream::pair()?;
    sig_read.set_nonblocking(true)?;
    sig_write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, sig_write.try_clone()?)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, sig_write)?;
    let mut sig_read = UnixStream::from_std(sig_read);
    poll.registry()
        .register(&mut sig_read, SIGNAL, Interest::READABLE)?;

    let mut listener = TcpListener::bind(args.addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    announce(listener.local_addr()?);

    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            match ev.token() {
                SIGNAL => return Ok(()),
                LISTENER => accept_all(&poll, &listener, &mut conns),
                Token(key) => {
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    let mut alive = true;
                    if ev.is_writable() && !conn.pending.is_empty() {
                        alive = flush(conn);
                        // Output drained: resume reading what arrived meanwhile (no new edge will
                        // announce data that was already queued).
                        if alive && conn.pending.is_empty() {
                            alive = on_readable(conn, &mut buf);
                        }
                    }
                    if alive
                        && conn.pending.is_empty()
                        && (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                    {
                        alive = on_readable(conn, &mut buf);
                    }
                    if !alive {
                        // Dropping closes the fd, which also removes it from the epoll set.
                        conns.remove(key);
                    }
                }
            }
        }
    }
}

fn accept_all(poll: &Poll, listener: &TcpListener, conns: &mut Slab<Conn>) {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                let token = Token(entry.key());
                if poll
                    .registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    entry.insert(Conn {
                        stream,
                        pending: Vec::new(),
                    });
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE etc.: drop this batch, keep serving; the listener stays readable.
                eprintln!("mio-echo: accept: {e}");
                return;
            }
        }
    }
}

/// Reads and echoes until the socket is drained or output backs up. Returns false to close.
fn on_readable(conn: &mut Conn, buf: &mut [u8]) -> bool {
    loop {
        let n = match conn.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let mut off = 0;
        while off < n {
            match conn.stream.write(&buf[off..n]) {
                Ok(0) => return false,
                Ok(w) => off += w,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        if off < n {
            // Short write: keep the rest and stop reading until the socket is writable again.
            conn.pending.extend_from_slice(&buf[off..n]);
            return true;
        }
        if n < buf.len() {
            // A short read drained the receive queue; the next arrival raises a new edge.
            return true;
        }
    }
}

/// Writes pending output. Returns false to close.
fn flush(conn: &mut Conn) -> bool {
    let mut off = 0;
    while off < conn.pending.len() {
        match conn.stream.write(&conn.pending[off..]) {
            Ok(0) => return false,
            Ok(w) => off += w,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if off == conn.pending.len() {
        conn.pending = Vec::new(); // Free it: idle connections hold no buffers.
    } else {
        conn.pending.drain(..off);
    }
    true
}
