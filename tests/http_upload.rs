//! Streamed request bodies over real sockets: 1 GiB uploaded through the `api` demo,
//! length-delimited and chunked (curl), byte-exact, with the server's peak memory under
//! 32 MiB; a sink that pauses stalls the client's writes in the kernel's buffers and resumes
//! from another thread and from another connection's request; a client that goes away
//! mid-body is reported to the sink; `Expect: 100-continue` and a pipelined request after a
//! streamed body.

#![cfg(feature = "http")]

mod demo_util;
mod proto_util;
mod util;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use demo_util::{Demo, TIMEOUT};
use eventide::http::{
    Aborted, BodyResume, BodySink, HttpServer, Intake, Request, Response, Service, SinkCx, Status,
    Trailers,
};
use eventide::Server;
use proto_util::hash::WordHash;
use proto_util::{
    connect, curl_fed, send_pattern, status_kb, tool, upload_answer, Pattern, ResponseReader,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// The most the demo may have resident at any time while it takes 1 GiB.
const RSS_BOUND_KB: u64 = 32 * 1024;

/// 1 GiB with `Content-Length` over a raw socket, then 1 GiB chunked through `curl` fed
/// from a pipe (curl asks `Expect: 100-continue` first): the demo's digest matches the
/// client's both times, and the demo never held more than 32 MiB.
#[test]
fn a_gib_uploads_through_the_api_demo_in_little_memory() {
    let Some(curl) = tool(
        "curl",
        "a_gib_uploads_through_the_api_demo_in_little_memory",
    ) else {
        return;
    };
    let Some(api) = Demo::start("api", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let addr = api.tcp();

    let mut s = connect(addr);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        format!("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {GIB}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let sent = send_pattern(&mut s, GIB).unwrap();
    let mut r = ResponseReader::new(s);
    let res = r.next().expect("an answer to the upload");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(upload_answer(&res.body), (GIB, format!("{sent:016x}")));

    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--fail", "--max-time", "300", "-T", "-"])
        .args(["-H", "Transfer-Encoding: chunked"])
        .arg(format!("http://{addr}/upload"));
    let (done, fed) = curl_fed(cmd, GIB);
    let sent = fed.expect("feeding curl");
    assert!(
        done.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(upload_answer(&done.stdout), (GIB, format!("{sent:016x}")));

    let peak = status_kb(api.pid(), "VmHWM:");
    println!("the api demo's peak RSS taking 2 GiB: {peak} KiB");
    api.stop("-TERM");
    assert!(
        peak < RSS_BOUND_KB,
        "the demo's peak RSS was {peak} KiB taking 2 GiB"
    );
}

/// What a [`Paced`] sink reports to the test thread.
enum Report {
    /// It paused after this many bytes; the resume is here, or with `/resume`.
    Paused(u64, Option<BodyResume>),
    /// It was told the body will not complete.
    Aborted(Aborted),
}

/// A sink that digests its body and pauses once it passes each of `pause_at`; the first
/// pause's resume goes to the test thread, the later ones to the service's `/resume` route.
struct Paced {
    hash: WordHash,
    seen: Arc<AtomicU64>,
    pause_at: Vec<u64>,
    report: Sender<Report>,
    slot: Arc<Mutex<Option<BodyResume>>>,
}

impl BodySink for Paced {
    fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
        self.hash.update(chunk);
        self.seen.store(cx.received(), Ordering::SeqCst);
        if self.pause_at.first().is_some_and(|&at| cx.received() >= at) {
            let first = self.pause_at.len() == 2;
            self.pause_at.remove(0);
            let resume = cx.pause();
            let resume = if first {
                Some(resume)
            } else {
                *self.slot.lock().unwrap() = Some(resume);
                None
            };
            let _ = self.report.send(Report::Paused(cx.received(), resume));
        }
        Ok(())
    }

    fn end(self: Box<Self>, trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let sum = trailers
            .get("x-sum")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        res.body(format!("{} {:016x} {sum:?}", self.hash.len(), self.hash.finish()).as_bytes());
    }

    fn abort(self: Box<Self>, why: Aborted) {
        let _ = self.report.send(Report::Aborted(why));
    }
}

/// `/paced` streams into a [`Paced`] sink (pausing at 1 MiB and 64 MiB); `/resume` resumes
/// the paused one; anything else answers `ok` with its body's length.
struct PacedService {
    seen: Arc<AtomicU64>,
    report: Sender<Report>,
    slot: Arc<Mutex<Option<BodyResume>>>,
}

impl Service for PacedService {
    fn intake(&mut self, req: &Request<'_>) -> Intake {
        let pause_at = match req.path() {
            "/paced" => vec![MIB, 64 * MIB],
            "/plain" => Vec::new(),
            _ => return Intake::Buffer,
        };
        Intake::stream(Paced {
            hash: WordHash::default(),
            seen: Arc::clone(&self.seen),
            pause_at,
            report: self.report.clone(),
            slot: Arc::clone(&self.slot),
        })
    }

    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if req.path() == "/resume" {
            let resumed = self.slot.lock().unwrap().take().map(BodyResume::resume);
            res.body(format!("{resumed:?}").as_bytes());
        } else {
            res.body(format!("ok {}", req.body().len()).as_bytes());
        }
    }
}

fn paced_server() -> (Server, Arc<AtomicU64>, Receiver<Report>) {
    paced_server_with(Server::builder())
}

fn paced_server_with(builder: eventide::Builder) -> (Server, Arc<AtomicU64>, Receiver<Report>) {
    let (tx, rx) = mpsc::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let shared = Arc::clone(&seen);
    let slot = Arc::new(Mutex::new(None));
    let server = builder
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| {
            HttpServer::new(PacedService {
                seen: Arc::clone(&shared),
                report: tx.clone(),
                slot: Arc::clone(&slot),
            })
        })
        .expect("start the server");
    (server, seen, rx)
}

/// The most bytes the kernel may hold between a client and a server that stopped reading:
/// the largest receive and send buffers TCP may grow to, plus the server's input buffer.
fn kernel_bound() -> u64 {
    let max = |path: &str| -> u64 {
        let v = std::fs::read_to_string(path).unwrap();
        v.split_whitespace().last().unwrap().parse().unwrap()
    };
    max("/proc/sys/net/ipv4/tcp_rmem") + max("/proc/sys/net/ipv4/tcp_wmem") + 4 * MIB
}

/// A client writing the pattern with a write timeout: how far it got.
struct Writer {
    s: TcpStream,
    p: Pattern,
    hash: WordHash,
    len: u64,
}

impl Writer {
    /// Writes until `stop()` holds or the body is all sent (`true`), or until the writes
    /// stall: no progress for three write timeouts in a row (`false`).
    fn write_until(&mut self, mut stop: impl FnMut() -> bool) -> bool {
        let mut stalls = 0;
        while self.p.at < self.len && !stop() {
            let piece = self.p.peek(self.len - self.p.at);
            match self.s.write(piece) {
                Ok(n) => {
                    self.hash.update(&piece[..n]);
                    self.p.advance(n);
                    stalls = 0;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    stalls += 1;
                    if stalls == 3 {
                        return false;
                    }
                }
                Err(e) => panic!("writing the body: {e}"),
            }
        }
        true
    }
}

/// Waits for the sink's next report.
fn next_report(rx: &Receiver<Report>) -> Report {
    rx.recv_timeout(TIMEOUT).expect("a report from the sink")
}

/// The sink pauses at 1 MiB: the client's writes stall with no more than the kernel's
/// buffers past the pause, and the sink sees nothing more; resumed from the test thread, it
/// goes on to 64 MiB, pauses again, stalls again, and is resumed by another connection's
/// request on the same loop; then all 128 MiB arrive, byte-exact.
#[test]
fn a_paused_sink_stalls_the_client_until_resumed() {
    let (server, seen, rx) = paced_server();
    let len = 128 * MIB;
    let bound = kernel_bound();
    assert!(
        64 * MIB + bound < len,
        "the kernel's buffers ({bound}) hold the whole body"
    );
    let mut s = connect(server.local_addr());
    s.write_all(
        format!("POST /paced HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut w = Writer {
        s,
        p: Pattern::new(),
        hash: WordHash::default(),
        len,
    };
    for round in 0..2 {
        // Write until the sink reports its pause, then until the writes stall.
        let mut report = None;
        let all = w.write_until(|| {
            report = report.take().or_else(|| rx.try_recv().ok());
            report.is_some()
        });
        assert!(
            !all || report.is_some(),
            "round {round}: the body went through unpaused"
        );
        let report = report.unwrap_or_else(|| next_report(&rx));
        let Report::Paused(at, resume) = report else {
            panic!("round {round}: the sink was aborted");
        };
        assert!(
            !w.write_until(|| false),
            "round {round}: the writes never stalled"
        );
        let written = w.p.at;
        assert_eq!(
            seen.load(Ordering::SeqCst),
            at,
            "round {round}: the sink got more while paused"
        );
        assert!(
            written - at <= bound,
            "round {round}: {written} bytes written past a pause at {at} (bound {bound})"
        );
        match resume {
            Some(resume) => resume.resume().expect("resume from the test thread"),
            None => {
                let mut other = ResponseReader::new(connect(server.local_addr()));
                other.send(b"GET /resume HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(other.next().unwrap().body, b"Some(Ok(()))");
            }
        }
    }
    w.s.set_write_timeout(None).unwrap();
    assert!(w.write_until(|| false));
    let mut r = ResponseReader::new(w.s);
    let res = r.next().expect("an answer");
    let want = format!("{len} {:016x} None", w.hash.finish());
    assert_eq!(String::from_utf8_lossy(&res.body), want);
    server.stop();
}

/// A client that goes away mid-body: its sink is told, and the server serves on.
#[test]
fn a_client_vanishing_mid_body_aborts_the_sink() {
    let (server, _seen, rx) = paced_server();
    let mut s = connect(server.local_addr());
    s.write_all(b"POST /plain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        .unwrap();
    drop(s);
    match next_report(&rx) {
        Report::Aborted(why) => assert_eq!(why, Aborted::Closed),
        Report::Paused(..) => panic!("paused"),
    }
    // Paused, then gone: told once the pause ends.
    let mut s = connect(server.local_addr());
    s.write_all(
        format!(
            "PUT /paced HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            4 * MIB
        )
        .as_bytes(),
    )
    .unwrap();
    send_pattern(&mut s, 2 * MIB).unwrap();
    let Report::Paused(_, Some(resume)) = next_report(&rx) else {
        panic!("no pause");
    };
    drop(s);
    resume.resume().expect("resume");
    match next_report(&rx) {
        Report::Aborted(why) => assert_eq!(why, Aborted::Closed),
        Report::Paused(..) => panic!("paused again"),
    }
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next().unwrap().body, b"ok 0");
    server.stop();
}

/// `Expect: 100-continue` with a streamed body: `100 Continue`, the body, its answer with
/// the trailer the sink read, then a pipelined request on the same connection.
#[test]
fn continue_then_a_streamed_body_then_a_pipelined_request() {
    let (server, _seen, _rx) = paced_server();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send(b"POST /plain HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.next().unwrap().status, 100);
    c.send(
        b"3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let mut h = WordHash::default();
    h.update(b"abcde");
    let res = c.next().unwrap();
    assert_eq!(res.status, 200);
    let want = format!("5 {:016x} Some(\"5\")", h.finish());
    assert_eq!(String::from_utf8_lossy(&res.body), want);
    assert_eq!(c.next().unwrap().body, b"ok 0");
    // And one more streamed body on the kept-alive connection, length-delimited.
    c.send(b"PUT /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nabcde");
    let want = format!("5 {:016x} None", h.finish());
    assert_eq!(String::from_utf8_lossy(&c.next().unwrap().body), want);
    server.stop();
}

/// A graceful stop with a body half in: the body may finish, and its answer is the
/// connection's last (`Connection: close`).
#[test]
fn a_stop_lets_a_streamed_body_finish() {
    let (server, seen, _rx) = paced_server();
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send(b"PUT /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234");
    util::wait_until("the sink gets the first bytes", || {
        seen.load(Ordering::SeqCst) >= 5
    });
    // An idle connection on the same loop closes at the stop: once it has, the stop has
    // reached the upload's connection too.
    let mut idle = ResponseReader::new(connect(server.local_addr()));
    idle.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.next().unwrap().body, b"ok 0");
    server.stop();
    idle.expect_closed();
    c.send(b"56789");
    let res = c.next().expect("the upload's answer");
    let mut h = WordHash::default();
    h.update(b"0123456789");
    let want = format!("10 {:016x} None", h.finish());
    assert_eq!(String::from_utf8_lossy(&res.body), want);
    assert_eq!(res.header("Connection"), Some("close"));
    c.expect_closed();
    server.join().expect("the loops exit cleanly");
}

/// Timeouts with a body half in: a client that stalls mid-body gets 408 and its sink is
/// told; a paused upload outlives many timeout periods (the server is the one waiting) and
/// completes once resumed.
#[test]
fn timeouts_cut_stalled_clients_not_paused_uploads() {
    // Long enough that a loaded machine does not stall a flowing upload for a period.
    let period = Duration::from_millis(250);
    let builder = Server::builder().idle_timeout(period).read_timeout(period);
    let (server, _seen, rx) = paced_server_with(builder);
    let mut c = ResponseReader::new(connect(server.local_addr()));
    c.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.send(b"PUT /plain HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1");
    assert_eq!(c.next().expect("a 408").status, 408);
    c.expect_closed();
    match next_report(&rx) {
        Report::Aborted(why) => assert_eq!(why, Aborted::TimedOut),
        Report::Paused(..) => panic!("paused"),
    }

    let len = 3 * MIB;
    let mut s = connect(server.local_addr());
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        format!("PUT /paced HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let sent = send_pattern(&mut s, len).unwrap();
    let Report::Paused(_, Some(resume)) = next_report(&rx) else {
        panic!("no pause");
    };
    // Three canary connections opened one after another, each cut by the idle timeout: the
    // paused upload has sat through at least three timeout periods, and must still be there.
    for i in 0..3 {
        let mut canary = connect(server.local_addr());
        canary.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut byte = [0u8; 1];
        let n = canary
            .read(&mut byte)
            .expect("the canary is cut, not left hanging");
        assert_eq!(n, 0, "canary {i}: closed by the idle timeout");
    }
    resume
        .resume()
        .expect("the paused connection is still open");
    let res = ResponseReader::new(s).next().expect("the upload's answer");
    let want = format!("{len} {sent:016x} None");
    assert_eq!(String::from_utf8_lossy(&res.body), want);
    server.stop();
}
