//! The torture suite's harness: cases run one at a time (so descriptor counts mean something),
//! a handler wrapper that records how each connection ended, clients that report how far they
//! got instead of panicking, and the verdict: every byte arrived once and in order, and a
//! connection that ended early was ended by an injected connection-fatal fault and reported
//! with the matching `CloseReason`.

#![allow(dead_code)] // each case uses a different part

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use eventide::{
    Action, CloseReason, Conn, ConnId, ConnectError, Datagram, FaultConfig, FaultCounts, FaultKind,
    Handler, LoopCx, Refusal, Udp,
};

/// A client waiting this long for a byte declares the server hung.
pub const STALL: Duration = Duration::from_secs(20);
/// The most a whole case may take.
pub const CASE_LIMIT: Duration = Duration::from_secs(120);

/// Seeds every case runs under (`EVENTIDE_FAULT_SEEDS=1,2,3` overrides).
pub fn seeds() -> Vec<u64> {
    match std::env::var("EVENTIDE_FAULT_SEEDS") {
        Ok(v) => v.split(',').map(|s| s.trim().parse().unwrap()).collect(),
        Err(_) => vec![11, 12, 13],
    }
}

/// The two mixes every case runs per seed: the faults that must never end a connection at
/// 10 % (every client must get every byte), then every kind at 2 % (connections may die, but
/// only of an injected reset or out-of-memory error, reported as such).
pub fn mixes(seed: u64) -> [FaultConfig; 2] {
    use FaultKind::*;
    let harmless = [ShortRead, ShortWrite, Eintr, Eagain, SpuriousReady, Emfile];
    [
        FaultConfig::new(seed, 0.1).unwrap().with_kinds(&harmless),
        FaultConfig::new(seed, 0.02).unwrap(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Cases: serialised, bounded in time, checked for descriptor leaks, fault counts printed
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());
static TOTAL: Mutex<(u64, [u64; 8])> = Mutex::new((0, [0; 8]));

/// One torture case.
pub struct Case {
    name: String,
    fds: usize,
    _serial: MutexGuard<'static, ()>,
}

impl Case {
    pub fn new(name: &str) -> Case {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Case {
            name: name.to_string(),
            fds: open_fds(),
            _serial: serial,
        }
    }

    /// Runs `body` on its own thread; a body that outlives [`CASE_LIMIT`] fails the case.
    pub fn run<T: Send + 'static>(&self, body: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let name = self.name.clone();
        thread::Builder::new()
            .name(format!("case {name}"))
            .spawn(move || {
                let _ = tx.send(body());
            })
            .unwrap();
        match rx.recv_timeout(CASE_LIMIT) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: still running after {CASE_LIMIT:?} (a hang)")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the case panicked"),
        }
    }

    /// After every server of the case is joined: no descriptor left behind; prints the faults.
    pub fn finish(self, faults: FaultCounts, bytes: u64) {
        let now = open_fds();
        assert_eq!(now, self.fds, "{}: descriptors leaked", self.name);
        let mut total = TOTAL.lock().unwrap_or_else(|e| e.into_inner());
        total.0 += bytes;
        for (i, k) in FaultKind::ALL.iter().enumerate() {
            total.1[i] += faults.get(*k);
        }
        let sum: Vec<String> = FaultKind::ALL
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{}={}", k.name(), total.1[i]))
            .collect();
        println!(
            "{}: {bytes} bytes verified; faults injected: {faults}\n  suite so far: {} bytes, {}",
            self.name,
            total.0,
            sum.join(" ")
        );
    }
}

pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

// ---------------------------------------------------------------------------------------------
// Recording how connections end
// ---------------------------------------------------------------------------------------------

/// How a connection ended, as its handler saw it.
#[derive(Clone, Debug)]
pub struct Ended {
    pub peer: Option<SocketAddr>,
    pub reason: &'static str,
    pub errno: Option<i32>,
}

/// Close reports of one server (and connect failures, which end a proxied client).
#[derive(Clone, Default)]
pub struct Log {
    ended: Arc<Mutex<Vec<Ended>>>,
    connect_errors: Arc<Mutex<u64>>,
}

impl Log {
    pub fn ended(&self) -> Vec<Ended> {
        self.ended.lock().unwrap().clone()
    }

    pub fn connect_errors(&self) -> u64 {
        *self.connect_errors.lock().unwrap()
    }
}

/// Wraps a handler and records every close (by peer address) in a [`Log`].
pub struct Recorded<H> {
    pub inner: H,
    pub log: Log,
}

impl<H: Handler> Handler for Recorded<H> {
    type State = (Option<SocketAddr>, H::State);
    type Message = H::Message;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<Self::State, Refusal> {
        Ok((conn.peer_addr(), self.inner.on_open(conn)?))
    }
    fn on_data(&mut self, conn: &mut Conn<'_>, s: &mut Self::State) -> Action {
        self.inner.on_data(conn, &mut s.1)
    }
    fn on_drained(&mut self, conn: &mut Conn<'_>, s: &mut Self::State) -> Action {
        self.inner.on_drained(conn, &mut s.1)
    }
    fn on_high_water(&mut self, conn: &mut Conn<'_>, s: &mut Self::State) -> Action {
        self.inner.on_high_water(conn, &mut s.1)
    }
    fn on_read_closed(&mut self, conn: &mut Conn<'_>, s: &mut Self::State) -> Action {
        self.inner.on_read_closed(conn, &mut s.1)
    }
    fn on_message(&mut self, conn: &mut Conn<'_>, s: &mut Self::State, msg: H::Message) -> Action {
        self.inner.on_message(conn, &mut s.1, msg)
    }
    fn on_stop(&mut self, conn: &mut Conn<'_>, s: &mut Self::State) -> Action {
        self.inner.on_stop(conn, &mut s.1)
    }
    fn on_timer(&mut self, conn: &mut Conn<'_>, s: &mut Self::State, token: u64) -> Action {
        self.inner.on_timer(conn, &mut s.1, token)
    }
    fn on_datagram(&mut self, udp: &mut Udp<'_>, datagram: Datagram<'_>) {
        self.inner.on_datagram(udp, datagram)
    }
    fn on_connect_error(&mut self, cx: &mut LoopCx<'_>, error: ConnectError) {
        *self.log.connect_errors.lock().unwrap() += 1;
        self.inner.on_connect_error(cx, error)
    }
    fn on_close(&mut self, id: ConnId, s: Self::State, reason: &CloseReason) {
        let errno = match reason {
            CloseReason::Error(e) => e.raw_os_error(),
            _ => None,
        };
        self.log.ended.lock().unwrap().push(Ended {
            peer: s.0,
            reason: reason.as_str(),
            errno,
        });
        self.inner.on_close(id, s.1, reason)
    }
    #[cfg(feature = "tls")]
    fn on_tls_error(&mut self, cx: &mut LoopCx<'_>, peer: Option<SocketAddr>, error: &io::Error) {
        // A handshake an injected fault broke: recorded like a close, by what the error was.
        let reset = matches!(
            error.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::NotConnected
        );
        self.log.ended.lock().unwrap().push(Ended {
            peer,
            reason: if reset { "reset" } else { "error" },
            errno: error.raw_os_error(),
        });
        self.inner.on_tls_error(cx, peer, error)
    }
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.inner.on_boot(cx)
    }
    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.inner.on_tick(cx, token)
    }
    fn on_shutdown(&mut self) {
        self.inner.on_shutdown()
    }
}

/// A factory making `make(i)` handlers that record into one log.
pub fn recorded<H: Handler>(
    mut make: impl FnMut(usize) -> H,
) -> (impl FnMut(usize) -> Recorded<H>, Log) {
    let log = Log::default();
    let l = log.clone();
    (
        move |i| Recorded {
            inner: make(i),
            log: l.clone(),
        },
        log,
    )
}

/// Echoes every byte; the default `on_read_closed` closes once the echo is flushed.
pub struct Echo;

impl Handler for Echo {
    type State = ();
    type Message = ();
    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }
    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let data = conn.input();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }
    fn on_datagram(&mut self, udp: &mut Udp<'_>, d: Datagram<'_>) {
        udp.send_to(d.data(), d.peer());
    }
}

// ---------------------------------------------------------------------------------------------
// Clients that report how far they got
// ---------------------------------------------------------------------------------------------

/// What one client connection saw.
#[derive(Debug)]
pub struct Outcome {
    /// The client's own address (the server's peer address for it).
    pub local: SocketAddr,
    pub expected: usize,
    /// Bytes that arrived, all matching the expected stream so far.
    pub got: usize,
    /// What ended it early, if it did.
    pub ended_by: Option<String>,
}

/// Whether a client-side error is the server ending the connection (as opposed to a hang).
fn is_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected
    )
}

/// One response a pipelining client waits for: the exact body it must carry, and how many
/// bytes its arrival is worth in the client's [`Outcome`] (`got`/`expected`).
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub body: &'a [u8],
    pub worth: usize,
}

impl<'a> Answer<'a> {
    /// A response worth its own body's bytes (a download, an echo).
    pub fn body(body: &'a [u8]) -> Answer<'a> {
        Answer {
            body,
            worth: body.len(),
        }
    }

    /// A response worth `worth` bytes whatever its body's length (an upload's short answer
    /// stands for the upload it acknowledges).
    pub fn worth(body: &'a [u8], worth: usize) -> Answer<'a> {
        Answer { body, worth }
    }
}

/// Reads one `200 OK` response per entry of `answers`, in order, each body byte-exact and
/// announced by its `Content-Length`. Only the server ending the connection stops it early;
/// a stall or a wrong response panics. `got`/`expected` add up the answers' worth.
pub fn read_http_responses(reader: &mut TcpStream, answers: &[Answer<'_>]) -> Outcome {
    let local = reader.local_addr().expect("the client's address");
    let what = format!("http client {local}");
    let (mut got, mut buf, mut chunk) = (0, Vec::new(), vec![0u8; 64 * 1024]);
    let mut ended_by = None;
    'responses: for (i, answer) in answers.iter().enumerate() {
        let which = format!("{what}: response {i}");
        loop {
            if let Some(taken) = take_response(&buf, answer.body, &which) {
                got += answer.worth;
                buf.drain(..taken);
                continue 'responses;
            }
            match reader.read(&mut chunk) {
                Ok(0) => {
                    ended_by = Some("end of stream".to_string());
                    break 'responses;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_end(&e) => {
                    ended_by = Some(e.to_string());
                    break 'responses;
                }
                Err(e) => panic!("{what}: stalled after {i} responses ({got} bytes' worth): {e}"),
            }
        }
    }
    let expected = answers.iter().map(|a| a.worth).sum();
    // A connection that lost only answers worth nothing still lost responses: count it one
    // byte short so the verdict asks for the server's reason.
    let expected = if ended_by.is_some() && got == expected {
        expected + 1
    } else {
        expected
    };
    Outcome {
        local,
        expected,
        got,
        ended_by,
    }
}

/// If `buf` starts with a whole response, checks it is a `200 OK` whose `Content-Length`
/// and body are `body`'s, and returns its length in bytes; `None` while it is incomplete.
fn take_response(buf: &[u8], body: &[u8], what: &str) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{what}: {head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("{what}: no Content-Length in {head}"))
        .parse()
        .unwrap_or_else(|e| panic!("{what}: Content-Length: {e}"));
    assert_eq!(len, body.len(), "{what}: Content-Length");
    let whole = end + 4 + len;
    if buf.len() < whole {
        return None;
    }
    assert!(buf[end + 4..whole] == *body, "{what}: the body differs");
    Some(whole)
}

/// Reads until end of stream, comparing with `expected` as bytes arrive. A mismatch panics
/// (that is corruption, whatever faults were injected); a stall panics (a hang).
pub fn read_expecting(s: &mut impl Read, expected: &[u8], what: &str) -> (usize, Option<String>) {
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let early = (got < expected.len()).then(|| "end of stream".to_string());
                return (got, early);
            }
            Ok(n) => {
                assert!(
                    got + n <= expected.len(),
                    "{what}: {} bytes more than expected",
                    got + n - expected.len()
                );
                if buf[..n] != expected[got..got + n] {
                    let at = (0..n).find(|&i| buf[i] != expected[got + i]).unwrap();
                    panic!("{what}: byte {} differs from what was sent", got + at);
                }
                got += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_end(&e) => return (got, Some(e.to_string())),
            Err(e) => panic!(
                "{what}: stalled after {got} of {} bytes ({e}): the server hung",
                expected.len()
            ),
        }
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(STALL)).unwrap();
    s.set_write_timeout(Some(STALL)).unwrap();
    s
}

/// Writes `data` in chunks of the given sizes (cycled); stops quietly if the server has
/// ended the connection.
pub fn write_chunks(s: &mut impl Write, data: &[u8], sizes: &[usize]) -> io::Result<()> {
    let mut pos = 0;
    for &n in sizes.iter().cycle() {
        if pos == data.len() {
            break;
        }
        let n = n.clamp(1, data.len() - pos);
        s.write_all(&data[pos..pos + n])?;
        pos += n;
    }
    Ok(())
}

/// Chunk sizes for [`write_chunks`] that write everything in one call.
pub const AT_ONCE: &[usize] = &[usize::MAX];

/// Pipelines `requests` — written from a thread of its own in chunks of `sizes` (cycled),
/// then half-closed — while reading one answer per entry of `answers` on this one
/// ([`read_http_responses`]).
pub fn pipeline_http(
    addr: SocketAddr,
    requests: Vec<u8>,
    sizes: &'static [usize],
    answers: &[Answer<'_>],
) -> Outcome {
    let mut reader = connect(addr);
    let mut writer = reader.try_clone().unwrap();
    let w = thread::spawn(move || {
        if write_chunks(&mut writer, &requests, sizes).is_ok() {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let outcome = read_http_responses(&mut reader, answers);
    w.join().unwrap();
    outcome
}

/// Sends `data` from one thread while reading the echo on this one, then half-closes.
pub fn pipelined(addr: SocketAddr, data: Arc<Vec<u8>>, expect: Arc<Vec<u8>>) -> Outcome {
    let mut reader = connect(addr);
    let local = reader.local_addr().unwrap();
    let mut writer = reader.try_clone().unwrap();
    let sent = Arc::clone(&data);
    let w = thread::spawn(move || {
        let sizes = [1, 7, 1000, 64 * 1024, 300_000];
        match write_chunks(&mut writer, &sent, &sizes) {
            Ok(()) => {
                let _ = writer.shutdown(Shutdown::Write);
            }
            Err(e) if is_end(&e) => {}
            Err(e) => panic!("client write stalled: {e}"),
        }
    });
    let (got, ended_by) = read_expecting(&mut reader, &expect, &format!("client {local}"));
    w.join().unwrap();
    Outcome {
        local,
        expected: expect.len(),
        got,
        ended_by,
    }
}

/// Sends `data` `chunk` bytes at a time, reading each chunk's echo before the next.
pub fn lockstep(addr: SocketAddr, data: &[u8], chunk: usize) -> Outcome {
    let s = connect(addr);
    let local = s.local_addr().unwrap();
    lockstep_on(s, local, data, chunk, |s| {
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// [`lockstep`] over any stream (`finish` ends the client's sending, say with a half-close).
pub fn lockstep_on<S: Read + Write>(
    mut s: S,
    local: SocketAddr,
    data: &[u8],
    chunk: usize,
    finish: impl FnOnce(&mut S),
) -> Outcome {
    let mut got = 0;
    let what = format!("client {local}");
    for piece in data.chunks(chunk.max(1)) {
        if let Err(e) = s.write_all(piece).and_then(|()| s.flush()) {
            assert!(is_end(&e), "{what}: write stalled: {e}");
            return Outcome {
                local,
                expected: data.len(),
                got,
                ended_by: Some(e.to_string()),
            };
        }
        let mut r = (&mut s).take(piece.len() as u64);
        let (n, early) = read_expecting(&mut r, &data[got..got + piece.len()], &what);
        got += n;
        if n < piece.len() {
            return Outcome {
                local,
                expected: data.len(),
                got,
                ended_by: Some(early.unwrap_or_else(|| "end of stream".into())),
            };
        }
    }
    finish(&mut s);
    let (_, _) = read_expecting(&mut s, &[], &what);
    Outcome {
        local,
        expected: data.len(),
        got,
        ended_by: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The verdict
// ---------------------------------------------------------------------------------------------

/// Reasons a connection may end with when nothing went wrong.
const NORMAL: [&str; 3] = ["peer_closed", "local", "server_shutdown"];

/// Whether `e` is what an injected connection-fatal fault reports: a reset (`ECONNRESET`,
/// `EPIPE`, `ECONNABORTED`, `ENOTCONN` all read as `Reset`) or `ENOMEM`/`ENOBUFS`.
pub fn is_fatal_fault(e: &Ended) -> bool {
    e.reason == "reset"
        || (e.reason == "error" && matches!(e.errno, Some(libc::ENOMEM | libc::ENOBUFS)))
}

/// Checks a server's close reports against its clients: every close is normal or the
/// report of an injected fatal fault (no more of those than were injected), and every client
/// that got less than it was owed was ended by such a fault on the server.
pub fn verdict(what: &str, outcomes: &[Outcome], log: &Log, faults: FaultCounts) -> u64 {
    let ended = log.ended();
    let by_peer: HashMap<SocketAddr, &Ended> =
        ended.iter().filter_map(|e| Some((e.peer?, e))).collect();
    let fatal = ended.iter().filter(|e| is_fatal_fault(e)).count() as u64;
    for e in &ended {
        assert!(
            NORMAL.contains(&e.reason) || is_fatal_fault(e),
            "{what}: a connection ended with {e:?}, which no injected fault explains"
        );
    }
    assert!(
        fatal <= faults.connection_fatal(),
        "{what}: {fatal} connections ended by a fault, but {faults}"
    );
    let mut bytes = 0;
    for o in outcomes {
        bytes += o.got as u64;
        if o.got == o.expected {
            continue;
        }
        let server_side = by_peer.get(&o.local);
        assert!(
            server_side.is_some_and(|e| is_fatal_fault(e)),
            "{what}: client {} got {} of {} bytes ({:?}); the server reported {server_side:?}",
            o.local,
            o.got,
            o.expected,
            o.ended_by
        );
    }
    bytes
}

/// The verdict for a relay: its own closes and the backend's are normal or injected fatal
/// faults, and clients that got less than they were owed number no more than the fatal
/// faults (and failed connects) on both sides.
pub fn verdict_relayed(what: &str, outcomes: &[Outcome], logs: &[(&Log, FaultCounts)]) -> u64 {
    let mut explained = 0;
    for (log, faults) in logs {
        for e in log.ended() {
            assert!(
                NORMAL.contains(&e.reason) || is_fatal_fault(&e),
                "{what}: a connection ended with {e:?}, which no injected fault explains"
            );
        }
        explained += faults.connection_fatal();
        explained += log.connect_errors();
    }
    let short: Vec<_> = outcomes.iter().filter(|o| o.got < o.expected).collect();
    assert!(
        short.len() as u64 <= explained,
        "{what}: {} clients got less than they were owed ({:?}), but only {explained} fatal \
         faults and failed connects explain them",
        short.len(),
        short.first()
    );
    outcomes.iter().map(|o| o.got as u64).sum()
}
