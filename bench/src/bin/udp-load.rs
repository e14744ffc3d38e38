//! `udp-load` — the UDP echo load generator (the runner's `udp-echo` scenario).
//!
//! `--sockets N` UDP sockets, each connected to the server and keeping `--depth D` datagrams of
//! `--size S` bytes in flight, driven by one single-threaded mio loop (the runner pins it to its
//! own core). Every datagram carries its socket id, its slot (0..D) and a sequence number over a
//! per-socket filler; a reply must be byte-for-byte the datagram sent, or the run fails (exit
//! status 1). When a slot's reply is back, the slot sends its next datagram. UDP may drop
//! datagrams: a datagram unanswered for `--timeout-ms` (default 200) is sent again with the same
//! sequence number and counted as lost; a late reply to a datagram already answered is counted
//! as a duplicate and ignored.
//!
//! After `--warmup` seconds a `--duration`-second window is measured: datagrams/s and the
//! latency p50 / p99 / p99.9 / max (µs, from an HdrHistogram; a retried datagram's latency runs
//! from its first send), as one JSON line with `--json`. `--marks` prints `MARK start` /
//! `MARK end` at the window edges so the runner can sample the server's CPU time around it.
//! `--requests N` runs a fixed amount of work instead (no warm-up, no time limit): datagrams are
//! issued until N were sent, and the run ends when all of them came back.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventide_bench::args::Flags;
use eventide_bench::filler;
use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "usage: udp-load --addr HOST:PORT [--sockets N] [--size BYTES] [--depth D] \
[--duration SECS | --requests N] [--warmup SECS] [--timeout-ms MS] [--json] [--marks]";

/// Bytes at the start of each datagram that identify it: socket id (u32 LE), slot (u32 LE),
/// sequence (u64 LE).
const HEADER: usize = 16;

#[derive(Debug, Clone)]
struct Opts {
    addr: SocketAddr,
    sockets: usize,
    size: usize,
    depth: usize,
    duration: f64,
    warmup: f64,
    timeout: Duration,
    json: bool,
    marks: bool,
    requests: Option<u64>,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        sockets: 50,
        size: 512,
        depth: 1,
        duration: 3.0,
        warmup: 1.0,
        timeout: Duration::from_millis(200),
        json: false,
        marks: false,
        requests: None,
    };
    let mut have_addr = false;
    let mut flags = Flags::from_env();
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            "--addr" => {
                o.addr = flags.parse()?;
                have_addr = true;
            }
            "--sockets" => o.sockets = flags.parse()?,
            "--size" => o.size = flags.parse()?,
            "--depth" => o.depth = flags.parse()?,
            "--duration" => o.duration = flags.parse()?,
            "--warmup" => o.warmup = flags.parse()?,
            "--timeout-ms" => o.timeout = Duration::from_millis(flags.parse()?),
            "--requests" => o.requests = Some(flags.parse()?),
            "--json" => o.json = true,
            "--marks" => o.marks = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {:?}", flags.arg())),
        }
    }
    if !have_addr || o.addr.port() == 0 {
        return Err("--addr HOST:PORT of a running server is required".into());
    }
    if o.sockets == 0 || o.depth == 0 {
        return Err("--sockets and --depth must be >= 1".into());
    }
    if !(HEADER..=65_507).contains(&o.size) {
        return Err(format!("--size must be {HEADER} to 65507 bytes"));
    }
    if o.timeout.is_zero() {
        return Err("--timeout-ms must be >= 1".into());
    }
    if o.requests == Some(0) {
        return Err("--requests must be >= 1".into());
    }
    if o.requests.is_some() {
        o.warmup = 0.0;
    }
    if !o.duration.is_finite() || o.duration <= 0.0 || !o.warmup.is_finite() || o.warmup < 0.0 {
        return Err("--duration must be > 0 and --warmup >= 0".into());
    }
    Ok(o)
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("udp-load: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("udp-load: {e}");
        std::process::exit(1);
    }
}

/// One datagram in flight.
#[derive(Clone, Copy)]
struct Flight {
    seq: u64,
    /// First send (latency is measured from here, retries included).
    first_sent: Instant,
    /// Last send (the retry timer runs from here).
    last_sent: Instant,
}

struct Client {
    sock: UdpSocket,
    id: u32,
    /// Per-socket filler, one datagram long; each datagram overwrites its header.
    template: Vec<u8>,
    /// Slot → the datagram in flight there, if any.
    slots: Vec<Option<Flight>>,
    /// Slots whose datagram must be (re)sent once the socket has room.
    to_send: VecDeque<usize>,
    next_seq: u64,
}

impl Client {
    /// The datagram for `slot` with sequence `seq`.
    fn datagram(&self, slot: usize, seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.template);
        out[..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..8].copy_from_slice(&(slot as u32).to_le_bytes());
        out[8..16].copy_from_slice(&seq.to_le_bytes());
    }

    /// Sends what is queued; stops (keeping the rest queued) when the socket is full.
    fn flush(&mut self, scratch: &mut Vec<u8>) -> io::Result<()> {
        while let Some(&slot) = self.to_send.front() {
            let Some(f) = self.slots[slot] else {
                self.to_send.pop_front();
                continue;
            };
            self.datagram(slot, f.seq, scratch);
            match self.sock.send(scratch) {
                Ok(_) => {
                    self.to_send.pop_front();
                    if let Some(f) = self.slots[slot].as_mut() {
                        f.last_sent = Instant::now();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A refused send (ICMP port unreachable from an earlier datagram) means the
                // server is gone.
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Starts the next datagram in `slot`.
    fn issue(&mut self, slot: usize, now: Instant) {
        self.slots[slot] = Some(Flight {
            seq: self.next_seq,
            first_sent: now,
            last_sent: now,
        });
        self.next_seq += 1;
        self.to_send.push_back(slot);
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Warmup,
    Measure,
}

#[derive(Default)]
struct Counts {
    /// Datagrams answered (all phases).
    total: u64,
    /// Answered in the measured window.
    window: u64,
    /// Datagrams sent again after the timeout.
    lost: u64,
    /// Replies to datagrams already answered (after a retry).
    duplicates: u64,
}

fn run(o: &Opts) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let local: SocketAddr = if o.addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        "[::]:0".parse().expect("an IPv6 wildcard")
    };
    let now = Instant::now();
    let budget = o.requests.unwrap_or(u64::MAX);
    let mut issued: u64 = 0;
    let mut clients = Vec::with_capacity(o.sockets);
    for i in 0..o.sockets {
        let mut sock = UdpSocket::bind(local)?;
        sock.connect(o.addr)
            .map_err(|e| io::Error::new(e.kind(), format!("connect socket #{i}: {e}")))?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let id = i as u32;
        let mut c = Client {
            sock,
            id,
            template: filler(id, o.size),
            slots: vec![None; o.depth],
            to_send: VecDeque::with_capacity(o.depth),
            next_seq: 0,
        };
        for slot in 0..o.depth {
            if issued < budget {
                c.issue(slot, now);
                issued += 1;
            }
        }
        clients.push(c);
    }

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
    let mut n = Counts::default();
    let mut scratch = Vec::with_capacity(o.size);
    let mut buf = vec![0u8; 65_536];
    let mut events = Events::with_capacity(1024);

    let t0 = Instant::now();
    for c in clients.iter_mut() {
        c.flush(&mut scratch)?;
    }
    let mut phase = Phase::Warmup;
    let mut window_start = t0 + Duration::from_secs_f64(o.warmup);
    let mut window_end = window_start + Duration::from_secs_f64(o.duration);
    if o.warmup == 0.0 {
        phase = Phase::Measure;
        window_start = t0;
        window_end = t0 + Duration::from_secs_f64(o.duration);
        mark(o, "start");
    }
    let scan_every = (o.timeout / 4).max(Duration::from_millis(1));
    let mut next_scan = t0 + scan_every;

    loop {
        let now = Instant::now();
        if phase == Phase::Warmup && now >= window_start {
            phase = Phase::Measure;
            window_start = now;
            window_end = now + Duration::from_secs_f64(o.duration);
            mark(o, "start");
        }
        let finished = if o.requests.is_some() {
            issued >= budget && clients.iter().all(|c| c.slots.iter().all(Option::is_none))
        } else {
            phase == Phase::Measure && now >= window_end
        };
        if finished {
            window_end = now;
            mark(o, "end");
            break;
        }
        if now >= next_scan {
            // Datagrams unanswered for the timeout are sent again.
            for c in clients.iter_mut() {
                for slot in 0..c.slots.len() {
                    if let Some(f) = c.slots[slot] {
                        if now.duration_since(f.last_sent) >= o.timeout
                            && !c.to_send.contains(&slot)
                        {
                            n.lost += 1;
                            c.to_send.push_back(slot);
                        }
                    }
                }
                c.flush(&mut scratch)?;
            }
            next_scan = now + scan_every;
        }
        let mut deadline = next_scan;
        if o.requests.is_none() {
            deadline = deadline.min(if phase == Phase::Warmup {
                window_start
            } else {
                window_end
            });
        }
        match poll.poll(&mut events, Some(deadline.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let c = &mut clients[ev.token().0];
            if ev.is_readable() || ev.is_error() {
                loop {
                    let len = match c.sock.recv(&mut buf) {
                        Ok(len) => len,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(io::Error::new(
                                e.kind(),
                                format!("socket {}: recv: {e}", c.id),
                            ))
                        }
                    };
                    let got = &buf[..len];
                    let field = |r: std::ops::Range<usize>| got.get(r).unwrap_or(&[]);
                    let id = field(0..4).try_into().map(u32::from_le_bytes);
                    let slot = field(4..8).try_into().map(u32::from_le_bytes);
                    let seq = field(8..16).try_into().map(u64::from_le_bytes);
                    let (Ok(id), Ok(slot), Ok(seq)) = (id, slot, seq) else {
                        return Err(io::Error::other(format!(
                            "socket {}: verification failed: a {len}-byte reply",
                            c.id
                        )));
                    };
                    let slot = slot as usize;
                    if id != c.id || slot >= c.slots.len() || seq >= c.next_seq {
                        return Err(io::Error::other(format!(
                            "socket {}: verification failed: reply names socket {id}, slot {slot}, seq {seq}",
                            c.id
                        )));
                    }
                    c.datagram(slot, seq, &mut scratch);
                    if got != &scratch[..] {
                        let at = (0..len.min(scratch.len()))
                            .find(|&i| got[i] != scratch[i])
                            .unwrap_or(len.min(scratch.len()));
                        return Err(io::Error::other(format!(
                            "socket {}: verification failed: seq {seq}, {len} bytes back for {} sent, first difference at byte {at}",
                            c.id,
                            scratch.len()
                        )));
                    }
                    match c.slots[slot] {
                        Some(f) if f.seq == seq => {
                            let done = Instant::now();
                            n.total += 1;
                            if phase == Phase::Measure {
                                n.window += 1;
                                let ns = done.duration_since(f.first_sent).as_nanos().max(1) as u64;
                                let _ = hist.record(ns.min(hist.high()));
                            }
                            c.slots[slot] = None;
                            if issued < budget {
                                issued += 1;
                                c.issue(slot, done);
                            }
                        }
                        // An earlier datagram of this slot, answered already (it was retried).
                        _ => n.duplicates += 1,
                    }
                }
            }
            c.flush(&mut scratch)
                .map_err(|e| io::Error::new(e.kind(), format!("socket {}: send: {e}", c.id)))?;
        }
    }

    let secs = window_end.duration_since(window_start).as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let rate = n.window as f64 / secs;
    if o.json {
        let j = serde_json::json!({
            "sockets": o.sockets, "size": o.size, "depth": o.depth,
            "msgs": n.window, "secs": secs, "msgs_per_sec": rate,
            "total_msgs": n.total, "lost": n.lost, "duplicates": n.duplicates,
            "p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999),
            "max_us": hist.max() as f64 / 1000.0,
        });
        println!("{j}");
    } else {
        println!(
            "{} sockets x {} B, depth {}: {} datagrams in {:.2} s = {:.0} datagrams/s ({} lost and resent, {} duplicates)",
            o.sockets, o.size, o.depth, n.window, secs, rate, n.lost, n.duplicates
        );
        println!(
            "latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(0.5),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1000.0
        );
    }
    let _ = io::stdout().flush();
    Ok(())
}

fn mark(o: &Opts, what: &str) {
    if o.marks {
        eventide_bench::mark(what);
    }
}
