//! Bodies streamed through the gateway demo (`examples/gateway.rs`) over real sockets: 1 GiB
//! downloaded from the api demo (length-delimited and chunked) and 1 GiB uploaded to it (raw
//! `Content-Length` and chunked by `curl`), byte-exact, with the gateway's peak RSS under
//! 32 MiB; and back-pressure both ways — a client that stops reading stops the gateway
//! reading its upstream, an upstream that stops reading stops the gateway reading its client
//! — with every byte arriving once they read again. And an upstream that answers before the
//! upload's end (then closes, resets, or keeps reading): its answer reaches the client at once
//! and whole, no more of the body goes upstream, both connections close after it, and the
//! next requests are served (a raw client, and curl with `Expect: 100-continue`).

mod demo_util;
mod proto_util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use demo_util::Demo;
use proto_util::hash::WordHash;
use proto_util::{
    check_pattern, connect, curl_fed, send_pattern, status_kb, tool, upload_answer, Pattern,
    ResponseReader, TIMEOUT,
};

const GIB: u64 = 1 << 30;
/// The most a stalled relay may have taken in: the kernel's socket buffers on the gateway's
/// side (its reader's own are kept small; its receive buffer may grow to `tcp_rmem`'s 32 MiB
/// here), the high-water marks and a queue's worth, with room to spare. A relay without
/// back-pressure never stalls.
const STALL_BOUND: u64 = 64 << 20;

/// A socket with a small, fixed receive buffer (no autotuning): what a stalled reader
/// leaves in its kernel buffer stays small, so the gateway's part shows.
fn small_buffered() -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(64 << 10).unwrap();
    s
}

/// A client connected to `addr` with a small receive buffer.
fn small_client(addr: SocketAddr) -> std::net::TcpStream {
    let s = small_buffered();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// A listener whose connections have small receive buffers.
fn small_listener() -> TcpListener {
    let s = small_buffered();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(8).unwrap();
    s.into()
}

/// Starts the gateway (one loop) in front of `upstream`.
fn gateway(upstream: SocketAddr) -> Option<Demo> {
    let up = upstream.to_string();
    Demo::start(
        "gateway",
        &["--addr", "127.0.0.1:0", "--loops", "1", "--upstream", &up],
    )
}

/// Reads a chunked body of `len` bytes from `r`, decoding it as it arrives and checking the
/// download pattern across its chunks.
fn check_chunked_pattern(r: &mut impl BufRead, len: u64) {
    let mut p = Pattern::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "ended at {}", p.at);
        let size = u64::from_str_radix(line.trim_end(), 16).expect("a chunk size");
        if size == 0 {
            let mut end = String::new();
            r.read_line(&mut end).unwrap();
            assert_eq!(end, "\r\n");
            break;
        }
        let mut left = size;
        while left > 0 {
            let buf = r.fill_buf().unwrap();
            assert!(!buf.is_empty(), "ended inside a chunk at {}", p.at);
            let want = p.peek((buf.len() as u64).min(left));
            let n = want.len();
            assert!(buf[..n] == *want, "differs near {}", p.at);
            r.consume(n);
            p.advance(n);
            left -= n as u64;
        }
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf).unwrap();
        assert_eq!(&crlf, b"\r\n");
    }
    assert_eq!(p.at, len, "chunked body length");
}

/// 1 GiB downloaded through the gateway from the api demo's streamed download, with its
/// `Content-Length` and then chunked: byte-exact, and the gateway, which pauses its upstream
/// while the client is full, never held more than 32 MiB.
#[test]
fn a_gib_download_streams_through_the_gateway_in_little_memory() {
    let Some(api) = Demo::start("api", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let Some(gw) = gateway(api.tcp()) else {
        return;
    };
    let s = connect(gw.tcp());
    let mut r = BufReader::with_capacity(1 << 20, s);
    for (query, framing) in [
        ("", format!("content-length: {GIB}\r\n")),
        ("&chunked", "transfer-encoding: chunked\r\n".to_string()),
    ] {
        write!(
            r.get_mut(),
            "GET /download?bytes={GIB}{query} HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        .unwrap();
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(r.read_line(&mut head).unwrap() > 0, "head: {head:?}");
        }
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.to_lowercase().contains(&framing), "{head}");
        if query.is_empty() {
            check_pattern(&mut r, GIB);
            continue;
        }
        check_chunked_pattern(&mut r, GIB);
    }
    let peak = status_kb(gw.pid(), "VmHWM:");
    gw.stop("-TERM");
    api.stop("-TERM");
    assert!(
        peak < 32 * 1024,
        "the gateway's peak RSS was {peak} KiB relaying 2 GiB"
    );
}

/// 1 GiB uploaded through the gateway to the api demo's streamed `POST /upload`, with its
/// `Content-Length` over a raw socket and then chunked by `curl` from a pipe: the demo's
/// digest matches the client's, and the gateway, which pauses its client while the upstream
/// is full, never held more than 32 MiB.
#[test]
fn a_gib_upload_streams_through_the_gateway_in_little_memory() {
    let Some(curl) = tool(
        "curl",
        "a_gib_upload_streams_through_the_gateway_in_little_memory",
    ) else {
        return;
    };
    let Some(api) = Demo::start("api", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let Some(gw) = gateway(api.tcp()) else {
        return;
    };
    let mut s = connect(gw.tcp());
    write!(
        s,
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {GIB}\r\n\r\n"
    )
    .unwrap();
    let sent = send_pattern(&mut s, GIB).unwrap();
    let res = ResponseReader::new(s)
        .next()
        .expect("an answer to the upload");
    assert_eq!(res.status, 200, "{res:?}");
    assert_eq!(upload_answer(&res.body), (GIB, format!("{sent:016x}")));

    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "--fail", "--max-time", "300", "-T", "-"])
        .args(["-H", "Transfer-Encoding: chunked"])
        .arg(format!("http://{}/upload", gw.tcp()));
    let (done, fed) = curl_fed(cmd, GIB);
    let sent = fed.expect("feeding curl");
    assert!(
        done.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(upload_answer(&done.stdout), (GIB, format!("{sent:016x}")));
    let peak = status_kb(gw.pid(), "VmHWM:");
    gw.stop("-TERM");
    api.stop("-TERM");
    assert!(
        peak < 32 * 1024,
        "the gateway's peak RSS was {peak} KiB relaying 2 GiB upstream"
    );
}

/// Writes `len` pattern bytes to `w` with `stall` as its write timeout: the first write that
/// times out (nothing moved for that long: the pipe is full end to end) reports how much was
/// written by then on `stalled`, and the rest is written without a timeout. Returns the
/// digest of everything written.
fn write_until_stalled(
    w: &mut std::net::TcpStream,
    len: u64,
    stalled: mpsc::Sender<u64>,
) -> std::io::Result<u64> {
    let mut p = Pattern::new();
    let mut h = WordHash::default();
    w.set_write_timeout(Some(Duration::from_secs(1)))?;
    let mut reported = false;
    while p.at < len {
        let piece = p.peek(len - p.at);
        match w.write(piece) {
            Ok(n) => {
                h.update(&piece[..n]);
                p.advance(n);
            }
            Err(e)
                if !reported
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                reported = true;
                let _ = stalled.send(p.at);
                w.set_write_timeout(None)?;
            }
            Err(e) => return Err(e),
        }
    }
    if !reported {
        let _ = stalled.send(u64::MAX); // never stalled
    }
    Ok(h.finish())
}

/// A client that stops reading a 1 GiB download: the gateway stops reading its upstream
/// (whose writes stall after little), holds little meanwhile, and relays every byte once the
/// client reads again.
#[test]
fn a_client_that_stops_reading_stalls_the_upstream() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let (stalled_tx, stalled) = mpsc::channel();
    let upstream = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            assert!(r.read_line(&mut line).unwrap() > 0, "the request's head");
        }
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n").unwrap();
        write_until_stalled(&mut s, GIB, stalled_tx).unwrap()
    });
    let Some(gw) = gateway(up) else {
        return;
    };
    let mut s = small_client(gw.tcp());
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Not reading: the upstream must stall.
    let at = stalled.recv_timeout(TIMEOUT).expect("the upstream reports");
    assert!(
        at < STALL_BOUND,
        "the upstream wrote {at} bytes to a client reading nothing"
    );
    let held = status_kb(gw.pid(), "VmRSS:");
    assert!(held < 32 * 1024, "the stalled gateway holds {held} KiB");
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(r.read_line(&mut head).unwrap() > 0, "head: {head:?}");
    }
    assert!(
        head.contains(&format!("Content-Length: {GIB}\r\n")),
        "{head}"
    );
    check_pattern(&mut r, GIB);
    upstream.join().unwrap();
    gw.stop("-TERM");
}

/// An upstream that stops reading a 1 GiB upload: the gateway stops reading its client
/// (whose writes stall after little), holds little meanwhile, and relays every byte once the
/// upstream reads again.
#[test]
fn an_upstream_that_stops_reading_stalls_the_client() {
    let listener = small_listener();
    let up = listener.local_addr().unwrap();
    let (go_tx, go) = mpsc::channel::<()>();
    let upstream = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = BufReader::with_capacity(1 << 20, s.try_clone().unwrap());
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(r.read_line(&mut head).unwrap() > 0, "the request's head");
        }
        assert!(
            head.contains(&format!("Content-Length: {GIB}\r\n")),
            "{head}"
        );
        go.recv_timeout(TIMEOUT).expect("the test says go");
        let mut h = WordHash::default();
        let mut left = GIB;
        while left > 0 {
            let buf = r.fill_buf().unwrap();
            assert!(!buf.is_empty(), "the upload ended {left} bytes short");
            let n = buf.len().min(left as usize);
            h.update(&buf[..n]);
            r.consume(n);
            left -= n as u64;
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        h.finish()
    });
    let Some(gw) = gateway(up) else {
        return;
    };
    let mut s = connect(gw.tcp());
    write!(
        s,
        "PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {GIB}\r\n\r\n"
    )
    .unwrap();
    let (stalled_tx, stalled) = mpsc::channel();
    let mut w = s.try_clone().unwrap();
    let client = thread::spawn(move || write_until_stalled(&mut w, GIB, stalled_tx).unwrap());
    let at = stalled.recv_timeout(TIMEOUT).expect("the client reports");
    assert!(
        at < STALL_BOUND,
        "the client wrote {at} bytes to an upstream reading nothing"
    );
    let held = status_kb(gw.pid(), "VmRSS:");
    assert!(held < 32 * 1024, "the stalled gateway holds {held} KiB");
    go_tx.send(()).unwrap();
    let sent = client.join().unwrap();
    let res = ResponseReader::new(s).next().expect("the answer");
    assert_eq!((res.status, &res.body[..]), (200, &b"ok"[..]));
    assert_eq!(
        upstream.join().unwrap(),
        sent,
        "the upstream got a changed body"
    );
    gw.stop("-TERM");
}

/// How an early-answering upstream frames its answer, and what it does after.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Says `Connection: close`, delimits the body by closing, and shuts its write side at
    /// once (RFC 9112 §9.6's staged close: the FIN follows the answer), then reads and drops
    /// what still comes until the gateway lets go or [`CLOSE_AFTER`] bytes have come: then
    /// it closes, so what the gateway sends next meets a dead socket (a reset).
    Close,
    /// Gives a `Content-Length`, keeps the connection, and goes on reading the request body
    /// (RFC 9110 §10.1.1's other choice) until the gateway lets go.
    Drain,
    /// Gives a `Content-Length` and resets the connection at once (`SO_LINGER` 0), while the
    /// gateway is still forwarding the body: its next send fails, and the answer the kernel
    /// received before the reset must still reach the client, not a `502`.
    Reset,
}

/// The body of the early answer.
const EARLY_BODY: &str = "the upload is refused before its body is read\n";
/// What a closing upstream reads after its answer before it closes: far more than the
/// gateway can have sent before it read the answer (the upstream's receive buffer is kept
/// small; the gateway's send buffer and high-water mark are a few MiB), so only a gateway
/// that goes on forwarding after the answer reaches it.
const CLOSE_AFTER: u64 = 16 << 20;

/// An upstream that answers `/early` from the request's head alone (`413` with a header and
/// a body, framed as `after` says), then reads until the gateway closes the connection —
/// which it must, as the request was cut short — and reports on the returned channel how
/// many body bytes it read meanwhile. Any other request is read whole (`Content-Length`) and
/// answered `200` with its body's length, on a connection kept open.
fn early_upstream(after: After) -> (SocketAddr, mpsc::Receiver<u64>) {
    let listener = small_listener();
    let addr = listener.local_addr().unwrap();
    let rx = proto_util::serve_each(listener, move |s, tx| early_upstream_conn(s, after, tx));
    (addr, rx)
}

fn early_upstream_conn(stream: std::net::TcpStream, after: After, tx: mpsc::Sender<u64>) {
    use std::io::Read;
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stream);
    loop {
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            match r.read_line(&mut head) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let len: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        if !head.starts_with("POST /early ") {
            let mut body = Vec::new();
            (&mut r).take(len).read_to_end(&mut body).unwrap();
            let text = format!("got {}", body.len());
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            if out.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let framing = match after {
            After::Close => "Connection: close".to_string(),
            After::Drain | After::Reset => format!("Content-Length: {}", EARLY_BODY.len()),
        };
        let answer = format!(
            "HTTP/1.1 413 Content Too Large\r\nX-Early: yes\r\nContent-Type: text/plain\r\n\
             {framing}\r\n\r\n{EARLY_BODY}"
        );
        out.write_all(answer.as_bytes()).unwrap();
        match after {
            After::Close => out.shutdown(std::net::Shutdown::Write).unwrap(),
            After::Drain => {}
            After::Reset => {
                socket2::SockRef::from(&out)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                let _ = tx.send(0);
                return;
            }
        }
        let limit = if let After::Drain = after {
            u64::MAX
        } else {
            CLOSE_AFTER
        };
        let mut read = 0u64;
        while read < limit {
            match r.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buf) => {
                    let n = buf.len();
                    r.consume(n);
                    read += n as u64;
                }
            }
        }
        let _ = tx.send(read);
        return; // (with bytes unread, the close is a reset)
    }
}

/// Body bytes a client sends before it waits for the early answer.
const SENT_FIRST: u64 = 1 << 20;

/// Sends the head of a 64 MiB `POST /early` and its first MiB, then reads without sending
/// more: the upstream's early answer must arrive whole, say `Connection: close`, and the
/// connection must end after it.
fn early_answer_without_the_rest(gw: &Demo) {
    use std::io::Read;
    let mut s = connect(gw.tcp());
    write!(
        s,
        "POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    )
    .unwrap();
    send_pattern(&mut s, SENT_FIRST).unwrap();
    // All of it, up to the end of the connection (a read timeout fails the test): the
    // answer may be delimited by the close, as the connection closes after it.
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the upstream's early answer while 63 MiB of the body are unsent, then the end");
    let text = String::from_utf8_lossy(&got);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 413 "), "{text}");
    for field in [
        "X-Early: yes",
        "Content-Type: text/plain",
        "Connection: close",
    ] {
        assert!(head.contains(&format!("\r\n{field}")), "{field}: {text}");
    }
    let body = if head.contains("Transfer-Encoding: chunked") {
        let size = format!("{:x}\r\n", EARLY_BODY.len());
        let data = body.strip_prefix(&size).expect("one chunk");
        data.strip_suffix("\r\n0\r\n\r\n").expect("the last chunk")
    } else {
        body // by `Content-Length` or delimited by the close: the rest
    };
    assert_eq!(body, EARLY_BODY, "{text}");
}

/// An answer before the body: the gateway's client gets it at once and whole, the client's
/// connection closes after it, the upstream gets no more than the client had sent, and
/// other requests — on a new connection, to the same upstream — are served as usual.
fn an_early_answer_reaches_the_client(after: After) {
    let (up, ended) = early_upstream(after);
    let Some(gw) = gateway(up) else {
        return;
    };
    early_answer_without_the_rest(&gw);
    // (The upstream reads until the gateway closes: the connection was not pooled.)
    let read = ended
        .recv_timeout(TIMEOUT)
        .expect("the gateway closes the upstream connection");
    assert!(
        read <= SENT_FIRST,
        "{after:?}: the upstream read {read} body bytes, the client sent {SENT_FIRST}"
    );
    // The gateway is fine: the same again, then plain uploads on a fresh connection.
    early_answer_without_the_rest(&gw);
    ended.recv_timeout(TIMEOUT).expect("the second one ends");
    // Streamed uploads whose body ends before the answer keep their connection.
    let mut s = ResponseReader::new(connect(gw.tcp()));
    for n in [5, 300_000] {
        s.send(
            format!("POST /other HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
        );
        s.send(&vec![b'x'; n]);
        let res = s.next().expect("an answer to the upload");
        assert_eq!(
            (res.status, &res.body[..]),
            (200, format!("got {n}").as_bytes())
        );
        assert_eq!(res.header("Connection"), None, "{res:?}");
    }
    gw.stop("-TERM");
}

#[test]
fn an_early_answer_then_a_close_reaches_the_client_whole() {
    an_early_answer_reaches_the_client(After::Close);
}

#[test]
fn an_early_answer_from_an_upstream_that_drains_reaches_the_client_at_once() {
    an_early_answer_reaches_the_client(After::Drain);
}

#[test]
fn an_early_answer_then_a_reset_mid_upload_reaches_the_client_whole() {
    an_early_answer_reaches_the_client(After::Reset);
}

/// `curl` uploading 64 MiB with `Expect: 100-continue` (a file with its `Content-Length`,
/// then chunked from a pipe) to an upstream that answers from the head and closes once
/// [`CLOSE_AFTER`] more bytes came: curl gets the upstream's answer whole and stops sending,
/// and the gateway closes the upstream connection before the upstream closes it. (A gateway
/// that holds the answer until the body's end forwards into the closed socket: 502.)
#[test]
fn curl_gets_an_early_answer_and_stops_sending() {
    let Some(curl) = tool("curl", "curl_gets_an_early_answer_and_stops_sending") else {
        return;
    };
    let (up, ended) = early_upstream(After::Close);
    let Some(gw) = gateway(up) else {
        return;
    };
    const BODY: u64 = 64 << 20;
    let dir = demo_util::TempDir::new("gateway-early");
    let file = dir.join("body");
    let mut body = Vec::new();
    send_pattern(&mut body, BODY).unwrap();
    std::fs::write(&file, &body).unwrap();
    drop(body);
    let url = format!("http://{}/early", gw.tcp());
    let runs: [&[&str]; 2] = [
        &["--data-binary", &format!("@{}", file.display())],
        &["-T", "-", "-H", "Transfer-Encoding: chunked"],
    ];
    for args in runs {
        let mut cmd = Command::new(&curl);
        cmd.args(["-sS", "--max-time", "60", "-X", "POST"])
            .args(["-H", "Expect: 100-continue", "-w", "\n%{http_code}"])
            .args(args)
            .arg(&url);
        let (done, _) = curl_fed(cmd, BODY); // curl may stop reading its input: not an error
        let out = String::from_utf8_lossy(&done.stdout);
        assert_eq!(
            out,
            format!("{EARLY_BODY}\n413"),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let read = ended
            .recv_timeout(TIMEOUT)
            .expect("the upstream's connection ends");
        assert!(
            read < CLOSE_AFTER,
            "{args:?}: the gateway forwarded {read} bytes after the answer"
        );
    }
    gw.stop("-TERM");
}

/// An upstream that reads and never answers; reports each connection's first bytes (up to
/// and including `until`) on the returned channel, then reads to the end.
fn silent_upstream(until: &'static [u8]) -> (SocketAddr, mpsc::Receiver<Vec<u8>>) {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = proto_util::serve_each(listener, move |mut s, tx| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(until.len()).any(|w| w == until) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    (addr, rx)
}

/// A body the gateway's server gives up on after its first piece went upstream — broken
/// chunk framing (400), or past `--max-body` (413) — is answered with the server's status
/// (in place of the upstream's answer, which never comes), `Connection: close`, and the
/// connection ends.
#[test]
fn a_body_given_up_on_midway_gets_the_servers_status() {
    let (up, first) = silent_upstream(b"hello\r\n");
    let upstream = up.to_string();
    let args = [
        "--addr",
        "127.0.0.1:0",
        "--loops",
        "1",
        "--upstream",
        &upstream,
    ];
    let Some(gw) = Demo::start("gateway", &args) else {
        return;
    };
    let Some(limited) = Demo::start("gateway", &[&args[..], &["--max-body", "8"]].concat()) else {
        return;
    };
    for (at, rest, status) in [(&gw, "zz\r\n", 400), (&limited, "6\r\nworld!\r\n", 413)] {
        let mut r = ResponseReader::new(connect(at.tcp()));
        r.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
        let got = first
            .recv_timeout(TIMEOUT)
            .expect("the first piece upstream");
        assert!(
            got.ends_with(b"5\r\nhello\r\n"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        r.send(rest.as_bytes());
        let res = r.next().expect("the server's answer");
        assert_eq!(res.status, status, "{res:?}");
        assert_eq!(res.header("Connection"), Some("close"), "{res:?}");
        r.expect_closed();
    }
    gw.stop("-TERM");
    limited.stop("-TERM");
}
