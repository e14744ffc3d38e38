//! Static files over real sockets: `curl` (downloads, ranges, resumed downloads, `ETag`
//! round trips, `--path-as-is` traversal) and `ureq`, raw TCP for the attack table, and the
//! `files` demo under the demo contract.

#![cfg(feature = "http")]

mod proto_util;
#[cfg(feature = "tls")]
#[allow(dead_code)] // the certificates are all this test takes from it
mod tls_support;
#[cfg(feature = "tls")]
mod util;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use eventide::http::files::Files;
use eventide::http::HttpServer;
use eventide::Server;
use proto_util::{connect, tool, ResponseReader, TIMEOUT};

const BIG: usize = 5 * 1024 * 1024 + 123;
/// A file far larger than the server may hold in memory (sparse: no disk used).
const HUGE: u64 = 1 << 30;
/// The most the files demo may have resident at any time while it serves [`HUGE`].
const RSS_BOUND_KB: u64 = 32 * 1024;

fn big_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..BIG)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A served tree under a unique temp dir, removed on drop:
/// `root/{big.bin, huge.bin, a.txt, site/index.html, sub/, in -> a.txt, out -> ../outside.txt,
/// .env}` and `outside.txt` next to `root`.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let base = std::env::temp_dir().join(format!(
            "eventide-tests-files-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        fs::create_dir_all(root.join("site")).unwrap();
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("big.bin"), big_bytes()).unwrap();
        fs::File::create(root.join("huge.bin"))
            .unwrap()
            .set_len(HUGE)
            .unwrap();
        fs::write(root.join("a.txt"), b"hello, files\n").unwrap();
        fs::write(root.join("site/index.html"), b"<h1>site</h1>").unwrap();
        fs::write(root.join("sub/x.json"), b"{}").unwrap();
        fs::write(root.join(".env"), b"outside secret").unwrap();
        fs::write(base.join("outside.txt"), b"outside secret").unwrap();
        symlink("a.txt", root.join("in")).unwrap();
        symlink("../outside.txt", root.join("out")).unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        for f in ["big.bin", "a.txt", "site/index.html"] {
            fs::File::options()
                .write(true)
                .open(root.join(f))
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        Tree(base)
    }

    fn root(&self) -> PathBuf {
        self.0.join("root")
    }

    fn serve(&self, tune: impl Fn(Files) -> Files) -> Server {
        let files = tune(Files::new(self.root()).unwrap());
        Server::builder()
            .bind("127.0.0.1:0")
            .loops(2)
            .start(move |_| HttpServer::new(files.clone()))
            .expect("start the file server")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `curl`, which must be installed under CI.
fn curl(test: &str) -> Option<String> {
    let found = tool("curl", test);
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: curl is required under CI");
    }
    found
}

fn run_curl(curl: &str, args: &[&str]) -> Output {
    let out = Command::new(curl)
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The HTTP status curl saw (`-w %{http_code}` printed last).
fn code(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout);
    s[s.len() - 3..].to_string()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

#[test]
fn curl_downloads_are_byte_exact() {
    let Some(curl) = curl("curl_downloads_are_byte_exact") else {
        return;
    };
    let tree = Tree::new("download");
    let server = tree.serve(|f| f);
    let out_file = tree.0.join("download.bin");
    let out = run_curl(
        &curl,
        &[
            "-o",
            out_file.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url(server.local_addr(), "/big.bin"),
        ],
    );
    assert_eq!(code(&out), "200");
    assert!(
        fs::read(&out_file).unwrap() == big_bytes(),
        "download differs"
    );
    // Several at once, on both loops.
    let addr = server.local_addr();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let curl = curl.clone();
            let dest = tree.0.join(format!("parallel-{i}.bin"));
            std::thread::spawn(move || {
                run_curl(
                    &curl,
                    &["-o", dest.to_str().unwrap(), &url(addr, "/big.bin")],
                );
                fs::read(dest).unwrap()
            })
        })
        .collect();
    let want = big_bytes();
    for h in handles {
        assert!(h.join().unwrap() == want, "a parallel download differs");
    }
}

#[test]
fn curl_ranges_and_resumed_downloads() {
    let Some(curl) = curl("curl_ranges_and_resumed_downloads") else {
        return;
    };
    let tree = Tree::new("ranges");
    let server = tree.serve(|f| f);
    let big = big_bytes();
    let u = url(server.local_addr(), "/big.bin");
    let part = run_curl(&curl, &["-r", "1000-1999", &u]);
    assert!(part.stdout == big[1000..2000], "range 1000-1999");
    let tail = run_curl(&curl, &["-r", "-500", &u]);
    assert!(tail.stdout == big[BIG - 500..], "suffix range");
    let head = run_curl(&curl, &["-r", "0-99", "-D", "-", "-o", "/dev/null", &u]);
    let text = String::from_utf8_lossy(&head.stdout);
    assert!(
        text.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Content-Range: bytes 0-99/{BIG}\r\n")),
        "{text}"
    );
    let miss = run_curl(
        &curl,
        &[
            "-r",
            "99999999-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &u,
        ],
    );
    assert_eq!(code(&miss), "416");
    // A download cut short, then resumed with `-C -` (a Range from the partial file's size).
    let dest = tree.0.join("resumed.bin");
    fs::write(&dest, &big[..1_234_567]).unwrap();
    let out = run_curl(
        &curl,
        &[
            "-C",
            "-",
            "-o",
            dest.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &u,
        ],
    );
    assert_eq!(code(&out), "206");
    assert!(fs::read(&dest).unwrap() == big, "resumed download differs");
}

#[test]
fn curl_gets_304_from_etags_and_dates() {
    let Some(curl) = curl("curl_gets_304_from_etags_and_dates") else {
        return;
    };
    let tree = Tree::new("etag");
    let server = tree.serve(|f| f);
    let u = url(server.local_addr(), "/a.txt");
    let etag_file = tree.0.join("etag.txt");
    let etag_path = etag_file.to_str().unwrap();
    let first = run_curl(&curl, &["--etag-save", etag_path, "-w", "%{http_code}", &u]);
    assert_eq!(code(&first), "200");
    let saved = fs::read_to_string(&etag_file).unwrap();
    assert!(saved.trim().starts_with('"'), "etag {saved:?}");
    let again = run_curl(
        &curl,
        &["--etag-compare", etag_path, "-w", "%{http_code}", &u],
    );
    assert_eq!(code(&again), "304");
    assert_eq!(again.stdout.len(), 3, "a 304 has no body");
    // -z sends If-Modified-Since with the date given.
    let head = run_curl(&curl, &["-sI", &u]);
    let text = String::from_utf8_lossy(&head.stdout).into_owned();
    let lm = text
        .lines()
        .find_map(|l| l.strip_prefix("Last-Modified: "))
        .expect("Last-Modified")
        .trim()
        .to_string();
    let ims = run_curl(
        &curl,
        &["-z", &lm, "-o", "/dev/null", "-w", "%{http_code}", &u],
    );
    assert_eq!(code(&ims), "304");
    let older = run_curl(
        &curl,
        &[
            "-z",
            "Thu, 01 Jan 1970 00:00:01 GMT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &u,
        ],
    );
    assert_eq!(code(&older), "200");
}

#[test]
fn ureq_gets_files_heads_and_types() {
    let tree = Tree::new("ureq");
    let server = tree.serve(|f| f);
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let r = agent
        .get(&url(server.local_addr(), "/a.txt"))
        .call()
        .unwrap();
    assert_eq!(r.content_type(), "text/plain");
    assert_eq!(r.charset(), "utf-8");
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    assert!(r.header("ETag").is_some() && r.header("Last-Modified").is_some());
    assert_eq!(r.into_string().unwrap(), "hello, files\n");
    let r = agent
        .head(&url(server.local_addr(), "/big.bin"))
        .call()
        .unwrap();
    assert_eq!(r.header("Content-Length"), Some(&*BIG.to_string()));
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    let mut body = Vec::new();
    r.into_reader().read_to_end(&mut body).unwrap();
    assert!(body.is_empty());
    let r = agent
        .get(&url(server.local_addr(), "/sub/x.json"))
        .call()
        .unwrap();
    assert_eq!(r.content_type(), "application/json");
    match agent.post(&url(server.local_addr(), "/a.txt")).call() {
        Err(ureq::Error::Status(405, r)) => assert_eq!(r.header("Allow"), Some("GET, HEAD")),
        other => panic!("POST: {other:?}"),
    }
}

/// Raw requests a browser or client library would normalise away: every one refused, none
/// leaks a byte of what lies outside the root or is hidden, and the connection goes on.
#[test]
fn traversal_attempts_are_refused() {
    let tree = Tree::new("attacks");
    let server = tree.serve(|f| f);
    let table: &[(&str, u16)] = &[
        ("/../outside.txt", 403),
        ("/../../../../etc/passwd", 403),
        ("/sub/../../outside.txt", 403),
        ("/%2e%2e/outside.txt", 403),
        ("/%2E%2E%2Foutside.txt", 403),
        ("/.%2e/outside.txt", 403),
        ("/%2e./outside.txt", 403),
        ("/sub/%2e%2e/%2e%2e/outside.txt", 403),
        ("/sub%2f..%2f..%2foutside.txt", 403),
        ("/..%5coutside.txt", 403),
        ("/..\\outside.txt", 403),
        ("/a.txt%00", 403),
        ("/a.txt%00.html", 403),
        ("/%0d%0aX-Injected:%201", 403),
        ("/./a.txt", 403),
        ("/%c0%ae%c0%ae/outside.txt", 400),
        ("/%c0%af%c0%afoutside.txt", 400),
        ("/%e0%80%ae%e0%80%ae/outside.txt", 400),
        ("/%ff%fe", 400),
        ("/%zz", 400),
        ("/out", 403),
        ("/.env", 404),
        ("/%2eenv", 404),
        ("/missing.txt", 404),
        ("/a.txt/", 404),
        ("http://t/../outside.txt", 403),
    ];
    assert!(table.len() >= 20);
    let mut c = ResponseReader::new(connect(server.local_addr()));
    for &(target, status) in table {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.next().unwrap_or_else(|| panic!("{target}: no answer"));
        assert_eq!(r.status, status, "{target}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{target}: leaked"
        );
        assert!(
            r.header("X-Injected").is_none(),
            "{target}: header injected"
        );
    }
    // The connection served the whole table, and serves on.
    c.send(b"GET /in HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.next().unwrap().body, b"hello, files\n");
}

#[test]
fn curl_path_as_is_traversal_is_refused() {
    let Some(curl) = curl("curl_path_as_is_traversal_is_refused") else {
        return;
    };
    let tree = Tree::new("curl-attacks");
    let server = tree.serve(|f| f);
    for path in [
        "/../outside.txt",
        "/sub/../../outside.txt",
        "/%2e%2e/outside.txt",
    ] {
        let out = run_curl(
            &curl,
            &[
                "--path-as-is",
                "-w",
                "%{http_code}",
                &url(server.local_addr(), path),
            ],
        );
        assert_eq!(code(&out), "403", "{path}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    }
}

#[test]
fn directories_get_their_index_a_redirect_or_a_listing_when_enabled() {
    let tree = Tree::new("dirs");
    let plain = tree.serve(|f| f);
    let mut c = ResponseReader::new(connect(plain.local_addr()));
    c.send(b"GET /site HTTP/1.1\r\nHost: t\r\n\r\nGET /site/ HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!((r.status, r.header("Location")), (301, Some("/site/")));
    let r = c.next().unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"<h1>site</h1>"[..]));
    assert_eq!(c.next().unwrap().status, 403);
    // ureq follows the redirect.
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let r = agent.get(&url(plain.local_addr(), "/site")).call().unwrap();
    assert_eq!(r.into_string().unwrap(), "<h1>site</h1>");

    let listed = tree.serve(|f| f.listing(true));
    let r = agent
        .get(&url(listed.local_addr(), "/sub/"))
        .call()
        .unwrap();
    assert_eq!(r.content_type(), "text/html");
    let page = r.into_string().unwrap();
    assert!(page.contains("href=\"./x.json\""), "{page}");
    let root = agent
        .get(&url(listed.local_addr(), "/"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        root.contains("href=\"./big.bin\"") && !root.contains(".env"),
        "{root}"
    );
}

/// A 1 GiB file is served whole — its `HEAD`, a range, the whole body, byte for byte — by
/// the files demo, whose peak resident memory (`VmHWM`) stays under 32 MiB: the body goes
/// from the file to the socket, never through the server's memory.
#[test]
fn a_huge_file_is_served_whole_without_being_read_into_memory() {
    let Some(bin) = example("files") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the files demo is not built"
        );
        println!("skipping: the files demo is not built in this configuration");
        return;
    };
    let tree = Tree::new("huge");
    let mut child = Reaped(
        Command::new(&bin)
            .args(["--addr", "127.0.0.1:0", "--loops", "1", "--root"])
            .arg(tree.root())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening_addr(&mut child);
    let mut c = ResponseReader::new(connect(addr));
    c.send(b"HEAD /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.next_head();
    assert_eq!(
        (h.status, h.header("Content-Length")),
        (200, Some(&*HUGE.to_string()))
    );
    c.send(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-199\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!((r.status, r.body.len()), (206, 100));
    assert!(r.body.iter().all(|&b| b == 0));
    // The whole body, then a small response after it on the same connection.
    let mut s = connect(addr);
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, s);
    let head = read_head(&mut r);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {HUGE}\r\n")),
        "{head}"
    );
    let zeros = vec![0u8; 1 << 20];
    let mut left = HUGE;
    while left > 0 {
        let buf = r.fill_buf().unwrap();
        assert!(!buf.is_empty(), "the body ended {left} bytes short");
        let n = buf
            .len()
            .min(zeros.len())
            .min(usize::try_from(left).unwrap());
        // (A slice compare is a memcmp: fast in a debug build too.)
        assert!(buf[..n] == zeros[..n], "the body is not the file's bytes");
        r.consume(n);
        left -= n as u64;
    }
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("hello, files\n"),
        "{rest}"
    );
    let peak = proto_util::status_kb(child.id(), "VmHWM:");
    stop(&mut child);
    assert!(
        peak < RSS_BOUND_KB,
        "the server's peak RSS was {peak} KiB serving a 1 GiB file"
    );
}

/// On plain TCP a file body goes out with `sendfile(2)`: under `strace`, the demo's
/// `sendfile` calls carry every byte of a 5 MiB download, which arrives byte-exact.
#[test]
fn file_bodies_go_out_with_sendfile() {
    let Some(strace) = tool("strace", "file_bodies_go_out_with_sendfile") else {
        return;
    };
    let Some(bin) = example("files") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the files demo is not built"
        );
        println!("skipping: the files demo is not built in this configuration");
        return;
    };
    let tree = Tree::new("sendfile");
    let log = tree.0.join("strace.log");
    let mut child = Reaped(
        Command::new(strace)
            .args(["-f", "-qq", "-e", "trace=sendfile", "-o"])
            .arg(&log)
            .arg(&bin)
            .args(["--addr", "127.0.0.1:0", "--loops", "1", "--root"])
            .arg(tree.root())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening_addr(&mut child);
    let mut c = ResponseReader::new(connect(addr));
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.next().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body == big_bytes(), "the download differs");
    drop(c);
    // Stop the demo (strace's child); strace then exits with its status.
    let demo = fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id()))
        .unwrap()
        .split_whitespace()
        .next()
        .expect("the demo under strace")
        .to_string();
    Command::new("kill")
        .args(["-TERM", &demo])
        .status()
        .unwrap();
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(0), "exit status under strace");
    let trace = fs::read_to_string(&log).unwrap();
    let sent: u64 = trace
        .lines()
        .filter(|l| l.contains("sendfile("))
        .filter_map(|l| l.rsplit("= ").next()?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(
        sent, BIG as u64,
        "bytes sent with sendfile; the trace:\n{trace}"
    );
}

/// Under TLS the file cannot go from the file to the socket: it is read in pieces as the
/// output drains, and `curl` over HTTPS gets it byte-exact, twice on one connection.
#[cfg(feature = "tls")]
#[test]
fn files_over_tls_are_byte_exact() {
    use tls_support::certs::{Ca, TempDir};
    let Some(curl) = curl("files_over_tls_are_byte_exact") else {
        return;
    };
    let ca = Ca::new("files CA");
    let leaf = ca.leaf(&["localhost"]);
    let dir = TempDir::new("files-tls");
    let ca_pem = dir.file("ca.pem", &ca.pem());
    let cert = dir.file("cert.pem", &leaf.cert_pem);
    let key = dir.file("key.pem", &leaf.key_pem);
    let cfg = eventide::tls::server_config_from_pem(&cert, &key, &[b"http/1.1"]).unwrap();
    let tree = Tree::new("tls");
    let files = Files::new(tree.root()).unwrap();
    let server = Server::builder()
        .bind_tls("127.0.0.1:0", cfg)
        .start(move |_| HttpServer::new(files.clone()))
        .expect("start the HTTPS file server");
    let port = server.local_addr().port();
    let (one, two) = (tree.0.join("one.bin"), tree.0.join("two.bin"));
    let u = format!("https://localhost:{port}/big.bin");
    let out = run_curl(
        &curl,
        &[
            "--cacert",
            ca_pem.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-w",
            "%{num_connects} ",
            "-o",
            one.to_str().unwrap(),
            &u,
            "-o",
            two.to_str().unwrap(),
            &u,
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 0 ",
        "one connection for both"
    );
    let want = big_bytes();
    assert!(
        fs::read(&one).unwrap() == want,
        "the first download differs"
    );
    assert!(
        fs::read(&two).unwrap() == want,
        "the second download differs"
    );
}

/// A child process killed (and reaped) if the test fails before it stops it.
struct Reaped(std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads a demo's `listening on ADDR` line.
fn listening_addr(child: &mut std::process::Child) -> SocketAddr {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .trim_end()
        .parse()
        .unwrap()
}

/// A response head, through its blank line.
fn read_head(r: &mut impl BufRead) -> String {
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        assert!(
            r.read_line(&mut head).unwrap() > 0,
            "the head ended early: {head:?}"
        );
    }
    head
}

/// SIGTERM, then the exit status must be 0.
fn stop(child: &mut std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(
        wait_bounded(child).code(),
        Some(0),
        "exit status after SIGTERM"
    );
}

/// Where cargo put the example binaries (next to the test's `deps` directory).
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.exists().then_some(path)
}

#[test]
fn the_files_demo_keeps_the_contract() {
    let Some(bin) = example("files") else {
        println!("skipping: the files demo is not built in this configuration");
        return;
    };
    let tree = Tree::new("demo");
    let mut child = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--loops", "2", "--root"])
        .arg(tree.root())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"))
        .trim_end()
        .parse()
        .unwrap();
    let mut s = connect(addr);
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("hello, files\n"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = wait_bounded(&mut child);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "more on stdout: {rest:?}");

    // Without --root, or with a root that is no directory: usage, exit 2 / 1.
    let no_root = Command::new(&bin).stderr(Stdio::piped()).output().unwrap();
    assert_eq!(no_root.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_root.stderr).contains("usage"));
    let bad_root = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--root"])
        .arg(tree.root().join("a.txt"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(bad_root.status.code(), Some(1));
    assert!(Path::new(&bin).exists());
}

fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("the demo did not stop within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
