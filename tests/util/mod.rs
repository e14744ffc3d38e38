//! Helpers shared by the integration tests: clients with bounded timeouts, deterministic
//! payloads, an echo handler that reports how connections end, condition waits, and the
//! checks handlers make in their callbacks, reported to the test thread.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use eventide::{Action, CloseReason, Conn, ConnId, Handler, Refusal};

/// Generous bound for any single wait, so a bug fails a test instead of hanging CI.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// xorshift64*: deterministic, fast, good enough for payloads and sizes.
#[derive(Clone)]
pub struct Rng {
    state: u64,
    pending: u64,
    left: u32,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            pending: 0,
            left: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Log-uniform in `lo..=hi`: every order of magnitude equally likely.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((a + u * (b - a)).exp() as u64).clamp(lo, hi)
    }

    /// The next `buf.len()` bytes of this generator's byte stream. The stream does not depend
    /// on how it is cut: filling 3 then 5 bytes gives the same 8 bytes as filling 8.
    pub fn fill_stream(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            if self.left == 0 {
                self.pending = self.next_u64();
                self.left = 8;
            }
            *b = self.pending as u8;
            self.pending >>= 8;
            self.left -= 1;
        }
    }

    /// The next `len` bytes of the stream (see [`fill_stream`](Rng::fill_stream)).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill_stream(&mut v);
        v
    }
}

/// A blocking client with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Writes `data` and reads the same number of bytes back.
pub fn roundtrip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// Sends `chunks` on one thread while reading the echo on this one; checks every byte and
/// that the server closes after the write side is shut down. Returns the bytes echoed.
pub fn echo_concurrently(addr: SocketAddr, chunks: Vec<Vec<u8>>) -> usize {
    let mut stream = connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let expected: Vec<u8> = chunks.concat();
    let sender = thread::spawn(move || {
        for c in &chunks {
            writer.write_all(c).unwrap();
        }
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::with_capacity(expected.len());
    stream.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got.len(), expected.len(), "echoed length");
    assert!(got == expected, "echoed bytes differ");
    got.len()
}

/// Polls `cond` until it holds; panics after [`TIMEOUT`]. For conditions no event signals
/// (a server-side counter), polled without sleeping a fixed time.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || cond().then_some(()))
}

/// Polls `poll` until it gives a value, and returns that value; panics after [`TIMEOUT`].
/// For a wait whose result the test goes on to check (the scrape that showed the count).
pub fn wait_for<T>(what: &str, mut poll: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = poll() {
            return v;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out after {TIMEOUT:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Checks a test's handler makes inside its callbacks. An `assert!` there would be caught by
/// the loop's panic isolation — the connection closes and the test times out somewhere else
/// with an unrelated message — so a check records its failure instead, and the test thread
/// fails with that message at its next wait ([`Failures::recv`]) or at the end of the test
/// (when the [`Failures`] is dropped).
#[derive(Clone)]
pub struct Checks(mpsc::Sender<String>);

/// The test thread's side of [`Checks`].
pub struct Failures(mpsc::Receiver<String>);

/// A pair of [`Checks`] (cloned into the handlers) and the [`Failures`] the test watches.
pub fn checks() -> (Checks, Failures) {
    let (tx, rx) = mpsc::channel();
    (Checks(tx), Failures(rx))
}

impl Checks {
    /// Records a failure unless `ok`; returns `ok`.
    pub fn that(&self, ok: bool, what: impl std::fmt::Display) -> bool {
        if !ok {
            let _ = self.0.send(what.to_string());
        }
        ok
    }

    /// Records a failure unless `got == want`; returns whether they are equal.
    pub fn eq<V: PartialEq + std::fmt::Debug>(&self, got: V, want: V, what: &str) -> bool {
        let same = got == want;
        if !same {
            let _ = self.0.send(format!("{what}: got {got:?}, want {want:?}"));
        }
        same
    }

    /// `r`'s value, or `None` and a recorded failure.
    pub fn ok<V, E: std::fmt::Debug>(&self, r: Result<V, E>, what: &str) -> Option<V> {
        r.map_err(|e| {
            let _ = self.0.send(format!("{what}: {e:?}"));
        })
        .ok()
    }
}

impl Failures {
    /// Fails the test with the first check that failed so far, if one did.
    pub fn assert_none(&self) {
        if let Ok(failure) = self.0.try_recv() {
            panic!("a check in a handler callback failed: {failure}");
        }
    }

    /// The next value from `rx`, waiting at most [`TIMEOUT`]; fails at once, with its
    /// message, if a check fails in the meantime.
    pub fn recv<T>(&self, rx: &mpsc::Receiver<T>, what: &str) -> T {
        let start = Instant::now();
        loop {
            self.assert_none();
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(v) => return v,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.assert_none();
                    panic!("waiting for {what}: every sender is gone")
                }
            }
        }
    }
}

impl Drop for Failures {
    /// The checks made until the end of the test count too.
    fn drop(&mut self) {
        if !thread::panicking() {
            self.assert_none();
        }
    }
}

/// How a connection ended, as the handler saw it.
#[derive(Debug, Clone)]
pub struct Closed {
    pub id: ConnId,
    pub reason: String,
}

/// Echo handler that reports every close on a channel; it panics on a message that starts
/// with `PANIC`, never consumes input that starts with `HOARD`, and closes the connection
/// (after echoing) on input that starts with `QUIT`.
pub struct Echo {
    pub closed: mpsc::Sender<Closed>,
}

impl Echo {
    /// A factory for `Builder::start` and the receiving end of the close reports.
    pub fn factory() -> (impl FnMut(usize) -> Echo, mpsc::Receiver<Closed>) {
        let (tx, rx) = mpsc::channel();
        (move |_| Echo { closed: tx.clone() }, rx)
    }
}

impl Handler for Echo {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let data = conn.input();
        if data.starts_with(b"PANIC") {
            panic!("test handler asked to panic");
        }
        if data.starts_with(b"HOARD") {
            return Action::Continue;
        }
        conn.write(data);
        conn.consume(data.len());
        if data.starts_with(b"QUIT") {
            return Action::Close;
        }
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.closed.send(Closed {
            id,
            reason: reason.as_str().to_string(),
        });
    }
}

/// Number of descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Reads until end of stream or reset; returns what arrived and whether it ended in a reset.
pub fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (got, true),
            Err(e) => panic!("read failed: {e}"),
        }
    }
}
