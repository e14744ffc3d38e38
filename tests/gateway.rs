//! The gateway demo (`examples/gateway.rs`) as a client sees it, over real sockets: requests
//! relayed byte-exact with hop-by-hop fields removed and `X-Forwarded-For` added (checked by
//! upstreams written here, on std's `TcpListener`), round-robin, `wrk` through it to the
//! `http` demo with zero errors, an upstream killed mid-load giving 502s (not hangs) and the
//! gateway recovering when it is back, 504 on a silent upstream, a 100 MiB body relayed
//! both ways byte-exact, `HEAD` keeping the upstream's `Content-Length`, and the idle pool
//! held to `--max-idle` (streaming and back-pressure: `tests/gateway_stream.rs`).

mod demo_util;
mod proto_util;
mod util;

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use demo_util::Demo;
use proto_util::{connect, tool, ResponseReader, TIMEOUT};
use util::wait_until;

/// A request as a test upstream received it.
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// An upstream on a std listener: every request it reads (head, `Content-Length` body) goes
/// to the returned channel, and `answer` (given the request's place on its connection, from
/// 0) gives the response's bytes; none closes the connection.
fn upstream(answer: fn(&Seen, usize) -> Vec<u8>) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = proto_util::serve_each(listener, move |s, tx| serve_upstream(s, answer, tx));
    (addr, rx)
}

fn serve_upstream(stream: TcpStream, answer: fn(&Seen, usize) -> Vec<u8>, tx: mpsc::Sender<Seen>) {
    let mut out = stream.try_clone().unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stream);
    for n in 0.. {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut seen = Seen {
            head,
            body: Vec::new(),
        };
        if seen.header("transfer-encoding") == Some("chunked") {
            match read_chunked(&mut r) {
                Some(body) => seen.body = body,
                None => return,
            }
        } else {
            let len: usize = seen
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            seen.body.resize(len, 0);
            if r.read_exact(&mut seen.body).is_err() {
                return;
            }
        }
        let bytes = answer(&seen, n);
        let _ = tx.send(seen);
        if bytes.is_empty() || out.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// A chunked request body, decoded (`None`: the connection ended in it).
fn read_chunked(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(line.trim_end().split(';').next()?, 16).ok()?;
        if size == 0 {
            // No trailers are forwarded: the blank line ends the body.
            line.clear();
            r.read_line(&mut line).ok()?;
            return (line == "\r\n").then_some(body);
        }
        let at = body.len();
        body.resize(at + size + 2, 0);
        r.read_exact(&mut body[at..]).ok()?;
        (body[at + size..] == *b"\r\n").then_some(())?;
        body.truncate(at + size);
    }
}

/// Starts the gateway in front of `upstreams`, with `extra` flags.
fn gateway(upstreams: &[SocketAddr], extra: &[&str]) -> Option<Demo> {
    let mut args: Vec<String> = ["--addr", "127.0.0.1:0", "--loops", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for u in upstreams {
        args.push("--upstream".into());
        args.push(u.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Demo::start("gateway", &args)
}

/// The answer of the header test's upstream: hop-by-hop fields of its own (which the client
/// must not see), an end-to-end one, and a chunked body.
fn answer_with_hop_fields(_: &Seen, _: usize) -> Vec<u8> {
    b"HTTP/1.1 201 Created\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\
      Keep-Alive: timeout=5\r\nProxy-Thing: no\r\nX-End: kept\r\n\
      Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
        .to_vec()
}

#[test]
fn requests_are_forwarded_with_hop_fields_removed_and_forwarded_for_added() {
    let (up, seen) = upstream(answer_with_hop_fields);
    let Some(gw) = gateway(&[up], &[]) else {
        return;
    };
    let mut c = ResponseReader::new(connect(gw.tcp()));
    c.send(
        b"POST /items?x=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Client-Hop\r\n\
          X-Client-Hop: gone\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\n\
          X-Forwarded-For: 10.1.2.3\r\nX-Keep: yes\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    );
    let res = c.next().expect("an answer");
    assert_eq!(res.status, 201);
    assert_eq!(res.body, b"hello, world");
    assert_eq!(res.header("x-end"), Some("kept"));
    // The gateway frames the body itself: whole with its length when it came in one read,
    // else streamed, chunked.
    let framing = (
        res.header("content-length"),
        res.header("transfer-encoding"),
    );
    assert!(
        matches!(framing, (Some("12"), None) | (None, Some("chunked"))),
        "{framing:?}"
    );
    assert_eq!(res.header("x-trailer"), None);
    for hop in ["x-hop", "keep-alive", "proxy-thing"] {
        assert_eq!(
            res.header(hop),
            None,
            "{hop} reached the client: {:?}",
            res.headers
        );
    }
    let got = seen
        .recv_timeout(TIMEOUT)
        .expect("the upstream got the request");
    assert!(
        got.head.starts_with("POST /items?x=1 HTTP/1.1\r\n"),
        "{}",
        got.head
    );
    // Streamed upstream as it came: chunked (re-framed by the gateway).
    assert_eq!(got.body, b"abcdefg");
    assert_eq!(got.header("transfer-encoding"), Some("chunked"));
    assert_eq!(got.header("content-length"), None);
    assert_eq!(got.header("host"), Some("shop.example"));
    assert_eq!(got.header("x-keep"), Some("yes"));
    assert_eq!(got.header("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(got.header(hop), None, "{hop} went upstream: {}", got.head);
    }
    gw.stop("-TERM");
}

fn answer_ok(_: &Seen, _: usize) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

#[test]
fn requests_go_round_robin_over_pooled_connections() {
    let (a, seen_a) = upstream(answer_ok);
    let (b, seen_b) = upstream(answer_ok);
    let Some(gw) = gateway(&[a, b], &["--loops", "1"]) else {
        return;
    };
    let mut c = ResponseReader::new(connect(gw.tcp()));
    for _ in 0..8 {
        c.send(b"GET /rr HTTP/1.1\r\nHost: x\r\n\r\n");
        let res = c.next().expect("an answer");
        assert_eq!((res.status, res.body.as_slice()), (200, &b"ok"[..]));
    }
    let count = |rx: &mpsc::Receiver<Seen>| rx.try_iter().count();
    assert_eq!((count(&seen_a), count(&seen_b)), (4, 4));
    gw.stop("-TERM");
}

#[test]
fn the_http_demo_answers_byte_exact_through_the_gateway_and_wrk_sees_no_error() {
    let Some(wrk) = tool("wrk", "gateway wrk") else {
        return;
    };
    let Some(http) = Demo::start("http", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let Some(gw) = gateway(&[http.tcp()], &[]) else {
        return;
    };
    // Byte-exact against the upstream itself, but for the `Date` each side writes.
    let strip_date = |s: Vec<u8>| -> String {
        let s = String::from_utf8(s).unwrap();
        s.split("\r\n")
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    for path in ["/plaintext", "/json", "/nothing-here"] {
        let get = |addr: SocketAddr| {
            let mut s = connect(addr);
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            strip_date(all)
        };
        assert_eq!(get(gw.tcp()), get(http.tcp()), "{path}");
    }
    let url = format!("http://{}/plaintext", gw.addr);
    let out = Command::new(wrk)
        .args(["-t1", "-c32", "-d2s", "--timeout", "10s", &url])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {report}");
    assert!(report.contains("requests in"), "{report}");
    assert!(!report.contains("Socket errors"), "{report}");
    assert!(!report.contains("Non-2xx"), "{report}");
    gw.stop("-TERM");
    http.stop("-TERM");
}

/// Answers the first request of a connection and closes it at the second, unanswered: an
/// upstream closing an idle keep-alive connection just as the gateway reuses it.
fn answer_once(_: &Seen, n: usize) -> Vec<u8> {
    if n == 0 {
        answer_ok(
            &Seen {
                head: String::new(),
                body: Vec::new(),
            },
            0,
        )
    } else {
        Vec::new()
    }
}

#[test]
fn an_idempotent_request_on_a_stale_pooled_connection_is_retried_once() {
    let (up, seen) = upstream(answer_once);
    let Some(gw) = gateway(&[up], &["--loops", "1"]) else {
        return;
    };
    let mut c = ResponseReader::new(connect(gw.tcp()));
    for _ in 0..3 {
        c.send(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
        let res = c.next().expect("an answer");
        assert_eq!((res.status, res.body.as_slice()), (200, &b"ok"[..]));
    }
    // Each GET after the first went out twice: on the stale connection, then on a new one.
    assert_eq!(seen.try_iter().count(), 5);
    // A POST is not sent twice: the client hears of the failure.
    c.send(b"POST /once HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(c.next().expect("an answer").status, 502);
    gw.stop("-TERM");
}

/// What each load client saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    bad_gateway: AtomicUsize,
    other: AtomicUsize,
}

/// Requests on keep-alive connections until `stop`, every answer bounded by the read timeout
/// (a hang fails the test); a closed connection is reopened.
fn load(addr: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut c = ResponseReader::new(connect(addr));
            while !stop.load(Ordering::Relaxed) {
                c.send(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
                let Some(res) = c.next() else { break };
                let counter = match res.status {
                    200 => &tally.ok,
                    502 => &tally.bad_gateway,
                    _ => &tally.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[test]
fn a_killed_upstream_gives_502s_and_the_gateway_recovers_when_it_returns() {
    let Some(http) = Demo::start("http", &["--addr", "127.0.0.1:0", "--loops", "1"]) else {
        return;
    };
    let up = http.tcp();
    let Some(gw) = gateway(&[up], &[]) else {
        return;
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| load(gw.tcp(), tally.clone(), stop.clone()))
        .collect();
    wait_until("requests are answered", || {
        tally.ok.load(Ordering::Relaxed) > 200
    });
    drop(http); // SIGKILL, mid-load
    let ok_at_kill = tally.ok.load(Ordering::Relaxed);
    wait_until("the clients get 502s", || {
        tally.bad_gateway.load(Ordering::Relaxed) > 50
    });
    // Back on the same port (the kernel may hold it for a moment: retried, bounded).
    let start = Instant::now();
    let http = loop {
        let port = up.to_string();
        if TcpListener::bind(up).is_ok() {
            if let Some(d) = Demo::start("http", &["--addr", &port, "--loops", "1"]) {
                break d;
            }
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "could not restart the upstream on {up}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let ok_at_return = tally.ok.load(Ordering::Relaxed);
    wait_until("answers come back", || {
        tally.ok.load(Ordering::Relaxed) > ok_at_return + 200
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .expect("a load client failed (a hang or a broken answer)");
    }
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "only 200s and 502s");
    assert!(ok_at_return >= ok_at_kill);
    gw.stop("-TERM");
    http.stop("-TERM");
}

#[test]
fn a_silent_upstream_gives_504_and_a_refusing_one_502() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let refusing = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // closed
    let Some(gw) = gateway(
        &[silent.local_addr().unwrap(), refusing],
        &["--loops", "1", "--upstream-timeout", "1"],
    ) else {
        return;
    };
    let mut c = ResponseReader::new(connect(gw.tcp()));
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.next().expect("an answer").status, 504);
    assert_eq!(c.next().expect("an answer").status, 502);
    drop(silent);
    gw.stop("-TERM");
}

/// Echoes the request body back.
fn answer_echo(seen: &Seen, _: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        seen.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&seen.body);
    out
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

#[test]
fn a_100_mib_body_is_relayed_both_ways_byte_exact() {
    let (up, seen) = upstream(answer_echo);
    let Some(gw) = gateway(&[up], &["--loops", "1"]) else {
        return;
    };
    let mut body = vec![0u8; 100 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in body.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let sent = hash(&body);
    let s = connect(gw.tcp());
    let mut writer = s.try_clone().unwrap();
    let upload = thread::spawn(move || {
        write!(
            writer,
            "PUT /blob HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        writer.write_all(&body).unwrap();
    });
    let mut r = ResponseReader::new(s.try_clone().unwrap());
    let res = r.next().expect("an answer");
    upload.join().unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body.len(), 100 << 20);
    assert_eq!(hash(&res.body), sent, "the body came back changed");
    let got = seen.recv_timeout(TIMEOUT).expect("the upstream got it");
    assert_eq!(hash(&got.body), sent, "the upstream got a changed body");
    let _ = s.shutdown(std::net::Shutdown::Both);
    gw.stop("-TERM");
}

/// An upstream that answers `HEAD` with a length and no body, anything else with `ok`.
fn answer_head(seen: &Seen, _: usize) -> Vec<u8> {
    if seen.head.starts_with("HEAD ") {
        b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nX-Up: 1\r\n\r\n".to_vec()
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
    }
}

/// `HEAD` through the gateway keeps the upstream's `Content-Length` (and no body follows:
/// the next answer on the connection is the next request's).
#[test]
fn head_through_the_gateway_keeps_the_upstreams_content_length() {
    let (up, _seen) = upstream(answer_head);
    let Some(gw) = gateway(&[up], &[]) else {
        return;
    };
    let mut c = ResponseReader::new(connect(gw.tcp()));
    c.send(b"HEAD /big HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.next_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("12345"));
    assert_eq!(head.header("x-up"), Some("1"));
    c.send(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n");
    let next = c.next().expect("the next answer");
    assert_eq!(next.body, b"ok");
    gw.stop("-TERM");
}

/// With `--max-idle 1`, the upstream connections returned to a full pool are closed: four
/// answered at once leave one open, which the next request reuses.
#[test]
fn the_idle_pool_keeps_at_most_max_idle_connections() {
    const K: usize = 4;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let (events, seen) = mpsc::channel::<(usize, &'static str)>();
    let barrier = Arc::new(std::sync::Barrier::new(K));
    thread::spawn(move || {
        for (conn, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let (events, barrier) = (events.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                for n in 0.. {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            let _ = events.send((conn, "closed"));
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let _ = events.send((conn, if n == 0 { "first" } else { "reused" }));
                    if conn < K && n == 0 {
                        barrier.wait(); // the first K requests are answered together
                    }
                    let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    let Some(gw) = gateway(&[up], &["--loops", "1", "--max-idle", "1"]) else {
        return;
    };
    let clients: Vec<_> = (0..K)
        .map(|_| {
            let addr = gw.tcp();
            thread::spawn(move || {
                let mut c = ResponseReader::new(connect(addr));
                c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                c.next().expect("an answer").body
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), b"ok");
    }
    let mut closed = 0;
    while closed < K - 1 {
        let (conn, what) = seen.recv_timeout(TIMEOUT).expect("upstream events");
        assert!(conn < K, "a connection beyond the first {K}: {conn} {what}");
        closed += usize::from(what == "closed");
    }
    let mut c = ResponseReader::new(connect(gw.tcp()));
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next().expect("an answer").body, b"ok");
    let (conn, what) = seen.recv_timeout(TIMEOUT).expect("the request upstream");
    assert_eq!(
        what, "reused",
        "connection {conn}: a new one instead of the pooled one"
    );
    gw.stop("-TERM");
}
