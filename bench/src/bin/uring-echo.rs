//! `uring-echo` — a minimal io_uring echo server on the `io-uring` crate: a peer that records what
//! a completion-based backend buys on this kernel, not a candidate backend.
//!
//! Written as the C servers that hold io_uring's records are: one ring set up `SINGLE_ISSUER` +
//! `DEFER_TASKRUN`, a multishot accept, one multishot receive per connection into a shared
//! ring of provided buffers (no buffer per connection), and each received buffer sent straight
//! back from where the kernel put it (`MSG_WAITALL`), then handed back to the ring. A
//! connection has at most one send in flight (two sends on one socket may complete out of
//! order); what arrives meanwhile waits as buffer ids. When the buffers run out a receive ends
//! with `ENOBUFS` and is re-armed once a buffer comes back.
//!
//! Follows the demo contract (see the crate docs); only `--loops 1` is supported.

use std::collections::VecDeque;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use eventide_bench::sys::uring::{self, Completion, Uring};
use eventide_bench::{announce, ServerArgs};
use slab::Slab;

/// Provided buffers (a power of two) and their size: 8 MiB shared by every connection.
const BUFFERS: u16 = 512;
const BUFFER_SIZE: usize = 16 * 1024;

/// Request tags: the kind in the top byte, the connection key below.
const ACCEPT: u64 = 1 << 56;
const RECV: u64 = 2 << 56;
const SEND: u64 = 3 << 56;
const SIGNAL: u64 = 4 << 56;
const KIND: u64 = 0xff << 56;

struct Conn {
    fd: RawFd,
    /// A multishot receive is armed.
    receiving: bool,
    /// The send in flight: buffer, bytes already sent, bytes in it.
    sending: Option<(u16, usize, usize)>,
    /// Received buffers waiting for the send in flight: (buffer, bytes).
    queued: VecDeque<(u16, usize)>,
    /// End of stream: close once everything received went back.
    closing: bool,
    /// An error: close once nothing is in flight, dropping what is queued.
    failed: bool,
}

fn main() {
    let args = ServerArgs::from_env(
        "uring-echo",
        "io_uring echo server: multishot receive, provided buffers (benchmark peer)",
    );
    if args.loops != 1 {
        eprintln!(
            "uring-echo: only --loops 1 is supported (got --loops {})",
            args.loops
        );
        std::process::exit(2);
    }
    if let Err(e) = run(args) {
        eprintln!("uring-echo: {e}");
        std::process::exit(1);
    }
}

struct Echo {
    ring: Uring,
    conns: Slab<Conn>,
    /// Connections whose receive ended with ENOBUFS, re-armed when a buffer returns.
    starved: Vec<usize>,
}

fn run(args: ServerArgs) -> io::Result<()> {
    let mut ring = Uring::new(4096, BUFFERS, BUFFER_SIZE)?;
    // Signals: the handlers write to a socket pair whose read end the ring polls. Installed
    // before the address is announced so an early SIGTERM is never lost.
    let (sig_read, sig_write) = UnixStream::pair()?;
    sig_write.set_nonblocking(true)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGINT, sig_write.try_clone()?)?;
    signal_hook::low_level::pipe::register(signal_hook::consts::SIGTERM, sig_write)?;
    ring.poll_readable(sig_read.as_raw_fd(), SIGNAL)?;

    let listener = TcpListener::bind(args.addr)?;
    ring.accept_multi(listener.as_raw_fd(), ACCEPT)?;
    announce(listener.local_addr()?);

    let mut echo = Echo {
        ring,
        conns: Slab::new(),
        starved: Vec::new(),
    };
    let mut done = Vec::with_capacity(1024);
    loop {
        done.clear();
        echo.ring.wait(&mut done)?;
        for c in &done {
            match c.tag & KIND {
                SIGNAL => {
                    for (_, conn) in echo.conns.iter() {
                        uring::close(conn.fd);
                    }
                    return Ok(());
                }
                ACCEPT => echo.on_accept(c, listener.as_raw_fd())?,
                RECV => echo.on_recv(c)?,
                SEND => echo.on_send(c)?,
                _ => {}
            }
        }
    }
}

impl Echo {
    fn on_accept(&mut self, c: &Completion, listener: RawFd) -> io::Result<()> {
        if c.result >= 0 {
            let fd = c.result;
            let _ = uring::set_nodelay(fd);
            let key = self.conns.insert(Conn {
                fd,
                receiving: true,
                sending: None,
                queued: VecDeque::new(),
                closing: false,
                failed: false,
            });
            self.ring.recv_multi(fd, RECV | key as u64)?;
        } else {
            eprintln!(
                "uring-echo: accept: {}",
                io::Error::from_raw_os_error(-c.result)
            );
        }
        if !c.more {
            self.ring.accept_multi(listener, ACCEPT)?;
        }
        Ok(())
    }

    fn on_recv(&mut self, c: &Completion) -> io::Result<()> {
        let key = (c.tag & !KIND) as usize;
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        match (c.result, c.buffer) {
            (n, Some(bid)) if n > 0 => conn.queued.push_back((bid, n as usize)),
            (n, _) if n == -libc::ENOBUFS => {}
            (0, _) => conn.closing = true,
            _ => conn.failed = true,
        }
        if !c.more {
            conn.receiving = false;
            if !conn.closing && !conn.failed {
                if c.result == -libc::ENOBUFS {
                    self.starved.push(key);
                } else {
                    conn.receiving = true;
                    let fd = conn.fd;
                    self.ring.recv_multi(fd, RECV | key as u64)?;
                }
            }
        }
        self.advance(key)
    }

    fn on_send(&mut self, c: &Completion) -> io::Result<()> {
        let key = (c.tag & !KIND) as usize;
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let Some((bid, sent, len)) = conn.sending.take() else {
            return Ok(());
        };
        if c.result <= 0 {
            conn.failed = true;
            self.recycle(bid)?;
        } else if sent + (c.result as usize) < len {
            // Short send despite MSG_WAITALL (interrupted): send the rest.
            let sent = sent + c.result as usize;
            conn.sending = Some((bid, sent, len));
            let fd = conn.fd;
            self.ring
                .send_buffer(fd, bid, sent, len - sent, SEND | key as u64)?;
        } else {
            self.recycle(bid)?;
        }
        self.advance(key)
    }

    /// Starts the next send, or closes a finished connection.
    fn advance(&mut self, key: usize) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if !conn.failed && conn.sending.is_none() {
            if let Some((bid, len)) = conn.queued.pop_front() {
                conn.sending = Some((bid, 0, len));
                let fd = conn.fd;
                return self.ring.send_buffer(fd, bid, 0, len, SEND | key as u64);
            }
        }
        let finished = conn.failed || (conn.closing && conn.queued.is_empty());
        if finished && conn.sending.is_none() && !conn.receiving {
            let conn = self.conns.remove(key);
            uring::close(conn.fd);
            for (bid, _) in conn.queued {
                self.recycle(bid)?;
            }
        }
        Ok(())
    }

    /// Hands a buffer back and re-arms a receive that starved for one.
    fn recycle(&mut self, bid: u16) -> io::Result<()> {
        self.ring.recycle(bid);
        while let Some(key) = self.starved.pop() {
            if let Some(conn) = self.conns.get_mut(key) {
                if !conn.closing && !conn.failed && !conn.receiving {
                    conn.receiving = true;
                    let fd = conn.fd;
                    self.ring.recv_multi(fd, RECV | key as u64)?;
                    break;
                }
            }
        }
        Ok(())
    }
}
