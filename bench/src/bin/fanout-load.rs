//! `fanout-load` — the broadcast scenario's client: one publisher, many subscribers of a chat
//! server, counting every message delivered.
//!
//! `--subscribers N` connections (WebSocket, `--proto ws`, upgraded on `--ws-path`; or plain
//! TCP lines, `--proto lines`) only listen; one more connection publishes text messages of
//! `--size` bytes, each carrying a marker `~M<10-digit sequence>~`. The chat may add framing
//! (a nickname prefix) and notices (joins and leaves): subscribers scan what they receive for
//! markers and ignore the rest, so any chat that delivers the text intact works. A message is
//! *delivered* when a subscriber sees its marker; sequences must arrive in publish order per
//! subscriber (a gap is a message the server dropped for that subscriber: counted, not an
//! error; a repeat or a step back is an error). The publisher keeps at most `--window`
//! messages not yet delivered to every subscriber, so the server's queues stay bounded.
//!
//! First message 0 is published and waited for on every subscriber: by then the server has
//! sent every join notice ahead of it. Then, as `echo-load`: `--warmup` seconds, a measured
//! `--duration` window (`--marks`: `MARK start` / `MARK end` around it), one JSON line with
//! `--json` (delivered `msgs`, `msgs_per_sec`, `published`, `dropped`, delivery latency from
//! publish to each subscriber p50/p99/p99.9/max in µs, and `total_msgs` delivered overall);
//! or with `--requests N`, N messages published and all delivered, for instruction counts.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use eventide_bench::args::Flags;
use eventide_bench::stream::Stream;
use eventide_bench::ws::{self, Framing, WsStream};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

const USAGE: &str = "usage: fanout-load --addr HOST:PORT [--proto ws|lines] [--ws-path P] \
[--subscribers N] [--size BYTES] [--window W] [--duration SECS | --requests N] [--warmup SECS] \
[--json] [--marks]";

/// `~M` + 10 digits + `~`.
const MARKER: usize = 13;
const PUBLISHER: Token = Token(usize::MAX - 1);

struct Opts {
    addr: SocketAddr,
    lines: bool,
    path: String,
    subscribers: usize,
    size: usize,
    window: usize,
    duration: f64,
    warmup: f64,
    requests: Option<u64>,
    json: bool,
    marks: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        lines: false,
        path: "/".into(),
        subscribers: 1000,
        size: 64,
        window: 32,
        duration: 3.0,
        warmup: 1.0,
        requests: None,
        json: false,
        marks: false,
    };
    let mut flags = Flags::from_env();
    while let Some(key) = flags.next_key() {
        match key.as_str() {
            "--addr" => o.addr = flags.parse()?,
            "--proto" => match flags.value()?.as_str() {
                "ws" => o.lines = false,
                "lines" => o.lines = true,
                p => return Err(format!("--proto {p:?}: expected ws or lines")),
            },
            "--ws-path" => o.path = flags.value()?,
            "--subscribers" => o.subscribers = flags.parse()?,
            "--size" => o.size = flags.parse()?,
            "--window" => o.window = flags.parse()?,
            "--duration" => o.duration = flags.parse()?,
            "--warmup" => o.warmup = flags.parse()?,
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
    if o.addr.port() == 0 {
        return Err("--addr HOST:PORT of a running server is required".into());
    }
    if o.subscribers == 0 || o.window == 0 || o.size < MARKER || o.requests == Some(0) {
        return Err(format!(
            "--subscribers, --window, --requests must be >= 1 and --size >= {MARKER}"
        ));
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
    let o = parse().unwrap_or_else(|e| {
        eprintln!("fanout-load: {e}\n{USAGE}");
        std::process::exit(2)
    });
    if let Err(e) = run(&o) {
        eprintln!("fanout-load: {e}");
        std::process::exit(1);
    }
}

fn connect(o: &Opts, id: usize) -> io::Result<Stream> {
    let context =
        |e: io::Error| io::Error::new(e.kind(), format!("connect #{id} to {}: {e}", o.addr));
    if o.lines {
        let s = StdTcpStream::connect(o.addr).map_err(context)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        return Ok(Stream::Plain(TcpStream::from_std(s)));
    }
    let (s, rest) = ws::connect_blocking(o.addr, &o.path).map_err(context)?;
    s.set_nonblocking(true)?;
    let framing = Framing {
        opcode: ws::TEXT,
        frame_size: None,
        expect: None,
    };
    Ok(Stream::Ws(Box::new(WsStream::new(
        TcpStream::from_std(s),
        rest,
        framing,
        id as u64 + 1,
    ))))
}

/// A subscriber: its stream, the next sequence it expects, and the unparsed tail of what it
/// read (`carry[..carried]`: a marker split between reads).
struct Sub {
    stream: Stream,
    next: u64,
    carry: [u8; MARKER - 1],
    carried: usize,
}

/// The messages not yet delivered everywhere: `oldest..published`, each with its publish time
/// and how many subscribers have it (or lost it).
struct Window {
    oldest: u64,
    published: u64,
    sent_at: Vec<Instant>,
    reached: Vec<usize>,
}

struct Tally {
    hist: Histogram<u64>,
    delivered: u64,
    window_delivered: u64,
    dropped: u64,
    measuring: bool,
}

fn run(o: &Opts) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut subs = Vec::with_capacity(o.subscribers);
    for i in 0..o.subscribers {
        let mut stream = connect(o, i)?;
        poll.registry()
            .register(stream.socket(), Token(i), Interest::READABLE)?;
        subs.push(Sub {
            stream,
            next: 0,
            carry: [0; MARKER - 1],
            carried: 0,
        });
    }
    let mut publisher = connect(o, o.subscribers)?;
    poll.registry().register(
        publisher.socket(),
        PUBLISHER,
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let mut win = Window {
        oldest: 0,
        published: 0,
        sent_at: vec![Instant::now(); o.window],
        reached: vec![0; o.window],
    };
    let mut tally = Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| io::Error::other(format!("histogram: {e}")))?,
        delivered: 0,
        window_delivered: 0,
        dropped: 0,
        measuring: false,
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut msg = vec![b'x'; o.size];

    // Message 0: wait until every subscriber has it (the joins are behind us then).
    let budget = o.requests.map_or(u64::MAX, |n| n + 1);
    publish(o, &mut publisher, &mut win, &mut msg)?;
    let mut settled = false;
    let t0 = Instant::now();
    let mut window_start = t0;
    let mut window_end = t0;
    loop {
        let now = Instant::now();
        if !settled && win.oldest >= 1 {
            settled = true;
            window_start = now + Duration::from_secs_f64(o.warmup);
            if o.warmup == 0.0 {
                start_window(o, &mut tally, &mut window_start, &mut window_end);
            }
        }
        if settled && !tally.measuring && now >= window_start {
            start_window(o, &mut tally, &mut window_start, &mut window_end);
        }
        let finished = match o.requests {
            Some(_) => win.oldest >= budget,
            None => tally.measuring && now >= window_end,
        };
        if finished {
            window_end = now;
            if o.marks {
                eventide_bench::mark("end");
            }
            break;
        }
        if !settled && now.duration_since(t0) > Duration::from_secs(120) {
            return Err(io::Error::other(format!(
                "message 0 reached {} of {} subscribers in 120 s",
                win.reached[0], o.subscribers
            )));
        }
        while settled && win.published < budget && win.published - win.oldest < o.window as u64 {
            publish(o, &mut publisher, &mut win, &mut msg)?;
        }
        let timeout = if !settled || o.requests.is_some() {
            Some(Duration::from_millis(100))
        } else if tally.measuring {
            Some(window_end.saturating_duration_since(now))
        } else {
            Some(window_start.saturating_duration_since(now))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            if ev.token() == PUBLISHER {
                publisher
                    .flush_pending()
                    .map_err(|e| io::Error::new(e.kind(), format!("publisher: {e}")))?;
                drain(&mut publisher, &mut buf)
                    .map_err(|e| io::Error::new(e.kind(), format!("publisher: {e}")))?;
                continue;
            }
            let i = ev.token().0;
            receive(o, i, &mut subs[i], &mut buf, &mut win, &mut tally)?;
        }
    }
    let secs = window_end
        .duration_since(window_start)
        .as_secs_f64()
        .max(1e-9);
    let us = |q: f64| tally.hist.value_at_quantile(q) as f64 / 1000.0;
    let rate = tally.window_delivered as f64 / secs;
    if o.json {
        let j = serde_json::json!({
            "subscribers": o.subscribers, "size": o.size,
            "msgs": tally.window_delivered, "secs": secs, "msgs_per_sec": rate,
            "total_msgs": tally.delivered, "published": win.published, "dropped": tally.dropped,
            "p50_us": us(0.5), "p99_us": us(0.99), "p999_us": us(0.999),
            "max_us": tally.hist.max() as f64 / 1000.0,
        });
        println!("{j}");
    } else {
        println!(
            "{} subscribers x {} B: {} deliveries in {:.2} s = {:.0}/s ({} published, {} dropped)",
            o.subscribers, o.size, tally.window_delivered, secs, rate, win.published, tally.dropped
        );
        println!(
            "delivery latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(0.5),
            us(0.99),
            us(0.999),
            tally.hist.max() as f64 / 1000.0
        );
    }
    io::stdout().flush()
}

fn start_window(o: &Opts, tally: &mut Tally, start: &mut Instant, end: &mut Instant) {
    tally.measuring = true;
    *start = Instant::now();
    *end = *start + Duration::from_secs_f64(o.duration);
    if o.marks {
        eventide_bench::mark("start");
    }
}

/// Publishes the next message (its marker over the filler).
fn publish(
    o: &Opts,
    publisher: &mut Stream,
    win: &mut Window,
    msg: &mut Vec<u8>,
) -> io::Result<()> {
    let seq = win.published;
    let marker = format!("~M{seq:010}~");
    msg.truncate(o.size);
    msg[..MARKER].copy_from_slice(marker.as_bytes());
    if o.lines {
        msg.push(b'\n');
    }
    let slot = (seq % win.sent_at.len() as u64) as usize;
    win.sent_at[slot] = Instant::now();
    win.reached[slot] = 0;
    win.published += 1;
    let mut off = 0;
    // The window bounds what is in flight, so the socket takes it; a full socket waits here.
    while off < msg.len() {
        match publisher.write(&msg[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("publisher: write: {e}"))),
        }
    }
    Ok(())
}

/// Reads and discards what the publisher receives (notices).
fn drain(s: &mut Stream, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match s.read(buf) {
            Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed")),
            Ok(n) if n < buf.len() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn receive(
    o: &Opts,
    i: usize,
    sub: &mut Sub,
    buf: &mut [u8],
    win: &mut Window,
    tally: &mut Tally,
) -> io::Result<()> {
    let fail = |what: String| io::Error::other(format!("subscriber {i}: {what}"));
    loop {
        // The tail kept from the last read goes in front of this one, so the scan sees a
        // marker split between reads whole; nothing else is copied or allocated per read
        // (the client must not be what limits a fast server).
        let kept = sub.carried;
        buf[..kept].copy_from_slice(&sub.carry[..kept]);
        let n = match sub.stream.read(&mut buf[kept..]) {
            Ok(0) => return Err(fail("the server closed the connection".into())),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("read: {e}"))),
        };
        let data = &buf[..kept + n];
        // Everything in one read arrived together: one clock read stamps all of it.
        let now = Instant::now();
        let mut at = 0;
        while let Some(p) = find_marker(&data[at..]) {
            let start = at + p;
            if data.len() - start < MARKER {
                break; // split across reads
            }
            let seq = parse_seq(&data[start..start + MARKER])
                .ok_or_else(|| fail("malformed marker".into()))?;
            deliver(o, seq, now, sub, win, tally).map_err(fail)?;
            at = start + MARKER;
        }
        // Keep a possible marker prefix for the next read.
        let keep_from = data.len().saturating_sub(MARKER - 1).max(at);
        sub.carried = data.len() - keep_from;
        sub.carry[..sub.carried].copy_from_slice(&data[keep_from..]);
        if kept + n < buf.len() {
            return Ok(()); // drained; a new arrival raises a new edge
        }
    }
}

/// Where the next `~M` starts in `data`.
fn find_marker(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = data[from..].iter().position(|&b| b == b'~') {
        let at = from + p;
        match data.get(at + 1) {
            Some(b'M') | None => return Some(at),
            Some(_) => from = at + 1,
        }
    }
    None
}

/// The sequence of a whole marker, `~M` + 10 digits + `~`.
fn parse_seq(m: &[u8]) -> Option<u64> {
    if m[1] != b'M' || m[MARKER - 1] != b'~' {
        return None;
    }
    m[2..MARKER - 1].iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// Counts message `seq` as delivered to `sub` (and the ones it skipped as dropped).
fn deliver(
    o: &Opts,
    seq: u64,
    now: Instant,
    sub: &mut Sub,
    win: &mut Window,
    tally: &mut Tally,
) -> Result<(), String> {
    if seq < sub.next || seq >= win.published {
        return Err(format!(
            "message {seq} out of order (expected {}, {} published)",
            sub.next, win.published
        ));
    }
    let slots = win.sent_at.len() as u64;
    for s in sub.next..=seq {
        let slot = (s % slots) as usize;
        win.reached[slot] += 1;
        if s < seq {
            tally.dropped += 1;
        }
    }
    sub.next = seq + 1;
    let slot = (seq % slots) as usize;
    tally.delivered += 1;
    if tally.measuring {
        tally.window_delivered += 1;
        let ns = now.duration_since(win.sent_at[slot]).as_nanos().max(1) as u64;
        let _ = tally.hist.record(ns.min(tally.hist.high()));
    }
    while win.oldest < win.published && win.reached[(win.oldest % slots) as usize] >= o.subscribers
    {
        win.oldest += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{find_marker, parse_seq};

    #[test]
    fn markers_are_found_past_other_tildes_and_parsed() {
        let data = b"guest1: ~x~~M0000000042~xx";
        let at = find_marker(data).expect("a marker");
        assert_eq!(at, 11);
        assert_eq!(parse_seq(&data[at..at + super::MARKER]), Some(42));
        assert_eq!(
            find_marker(b"xx~"),
            Some(2),
            "a trailing ~ may begin a split marker"
        );
        assert_eq!(find_marker(b"~x~y"), None);
        assert_eq!(parse_seq(b"~M00000000a1~"), None);
        assert_eq!(parse_seq(b"~M0000000001x"), None);
    }
}
