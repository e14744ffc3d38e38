//! [`Files`] driven through the codec over in-memory reads (the harness the property tests
//! use): every answer parsed back from the bytes a client would receive.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::http::testing::Harness;
use crate::http::HttpServer;

/// A tree under the temp dir, removed on drop. `mtime` of every file is set an hour back, so
/// their tags are strong.
struct Tree(PathBuf);

const BODY: &[u8] = b"0123456789abcdefghij";

impl Tree {
    fn new(name: &str) -> Tree {
        let base =
            std::env::temp_dir().join(format!("eventide-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("root");
        for d in ["sub", "docs", "empty-dir", ".git", "idx"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let files: &[(&str, &[u8])] = &[
            ("a.txt", BODY),
            ("page.html", b"<p>hi</p>"),
            ("sub/b.css", b"b{}"),
            ("docs/index.html", b"docs index"),
            ("idx/one.bin", b"1"),
            (".git/config", b"secret"),
            (".env", b"secret"),
            ("empty.txt", b""),
            ("hello world.txt", b"spaced"),
        ];
        for (path, data) in files {
            fs::write(root.join(path), data).unwrap();
        }
        fs::write(base.join("outside.txt"), b"outside").unwrap();
        symlink("a.txt", root.join("link-in")).unwrap();
        symlink("../outside.txt", root.join("link-out")).unwrap();
        symlink("/etc/hostname", root.join("link-abs")).unwrap();
        symlink("..", root.join("link-up")).unwrap();
        let past = SystemTime::now() - Duration::from_secs(3600);
        for (path, _) in files {
            let f = fs::File::options()
                .write(true)
                .open(root.join(path))
                .unwrap();
            f.set_modified(past).unwrap();
        }
        Tree(base)
    }

    fn files(&self) -> Files {
        Files::new(self.0.join("root")).unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`extra` header lines after `Host`) and parses the answer.
fn ask(files: &Files, method: &str, target: &str, extra: &str) -> Answer {
    let mut h = Harness::new(HttpServer::new(files.clone()));
    h.feed(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
    let out = h.take_output();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(out[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_string(), v.to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    }
}

fn get(files: &Files, target: &str) -> Answer {
    ask(files, "GET", target, "")
}

#[test]
fn serves_files_with_type_length_and_validators() {
    let tree = Tree::new("serve");
    let files = tree.files();
    let a = get(&files, "/a.txt");
    assert_eq!((a.status, &a.body[..]), (200, BODY));
    assert_eq!(a.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.header("Content-Length"), Some("20"));
    assert_eq!(a.header("Accept-Ranges"), Some("bytes"));
    let etag = a.header("ETag").unwrap();
    assert!(etag.starts_with("\"14-") && etag.ends_with('"'), "{etag}");
    let lm = a.header("Last-Modified").unwrap();
    assert!(lm.ends_with(" GMT") && lm.len() == 29, "{lm}");
    assert_eq!(
        get(&files, "/sub/b.css").header("Content-Type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(get(&files, "/hello%20world.txt").body, b"spaced");
    assert_eq!(get(&files, "//sub//b.css").body, b"b{}");
    let empty = get(&files, "/empty.txt");
    assert_eq!(
        (empty.status, empty.header("Content-Length")),
        (200, Some("0"))
    );
    // Absolute-form targets resolve by their path.
    assert_eq!(get(&files, "http://t/a.txt").body, BODY);
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    let tree = Tree::new("head");
    let files = tree.files();
    let g = get(&files, "/a.txt");
    let h = ask(&files, "HEAD", "/a.txt", "");
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(h.headers, g.headers);
    // HEAD ignores Range (range handling is defined for GET only).
    let h = ask(&files, "HEAD", "/a.txt", "Range: bytes=0-1\r\n");
    assert_eq!((h.status, h.header("Content-Length")), (200, Some("20")));
}

#[test]
fn other_methods_get_405() {
    let tree = Tree::new("methods");
    let files = tree.files();
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = ask(&files, m, "/a.txt", "Content-Length: 0\r\n");
        assert_eq!(
            (r.status, r.header("Allow")),
            (405, Some("GET, HEAD")),
            "{m}"
        );
    }
}

/// The attack table over the whole request path: never a byte of a file outside the root,
/// nor of a hidden one.
#[test]
fn attack_paths_are_refused() {
    let tree = Tree::new("attacks");
    let files = tree.files();
    let table: &[(&str, u16)] = &[
        ("/../outside.txt", 403),
        ("/sub/../../outside.txt", 403),
        ("/%2e%2e/outside.txt", 403),
        ("/%2E%2E/%2e%2e/etc/passwd", 403),
        ("/.%2e/outside.txt", 403),
        ("/sub/%2e%2e/a.txt", 403),
        ("/..%2foutside.txt", 403),
        ("/sub%2f..%2f..%2foutside.txt", 403),
        ("/..%5coutside.txt", 403),
        ("/..\\outside.txt", 403),
        ("/a.txt%00.html", 403),
        ("/a.txt%00", 403),
        ("/./a.txt", 403),
        ("/%c0%ae%c0%ae/outside.txt", 400),
        ("/%c0%af", 400),
        ("/%ff", 400),
        ("/a%zz", 400),
        ("/a%", 400),
        ("/link-out", 403),
        ("/link-abs", 403),
        ("/link-up/outside.txt", 403),
        ("/.git/config", 404),
        ("/.env", 404),
        ("/%2egit/config", 404),
        ("/nope", 404),
        ("/a.txt/", 404),
        ("/a.txt/x", 404),
        ("/sub/nope.css", 404),
        ("*", 404),
    ];
    assert!(table.len() >= 20);
    for &(target, status) in table {
        let method = if target == "*" { "OPTIONS" } else { "GET" };
        let r = ask(&files, method, target, "");
        let want = if target == "*" { 405 } else { status };
        assert_eq!(r.status, want, "{target}");
        assert!(
            !r.body.windows(6).any(|w| w == b"secret" || w == b"outsid"),
            "{target}: leaked {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Links inside the root are followed, unless links are refused altogether.
    assert_eq!(get(&files, "/link-in").body, BODY);
    let strict = files.clone().follow_symlinks(false);
    assert_eq!(get(&strict, "/link-in").status, 403);
    assert_eq!(get(&strict, "/a.txt").status, 200);
    // Hidden files on request.
    let open = files.clone().hidden(true);
    assert_eq!(get(&open, "/.git/config").body, b"secret");
    assert_eq!(get(&open, "/../outside.txt").status, 403);
}

#[test]
fn directories_redirect_then_serve_their_index_or_nothing() {
    let tree = Tree::new("dirs");
    let files = tree.files();
    let r = get(&files, "/docs?x=1");
    assert_eq!((r.status, r.header("Location")), (301, Some("/docs/?x=1")));
    let r = get(&files, "/docs/");
    assert_eq!((r.status, &r.body[..]), (200, &b"docs index"[..]));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    // No index, no listing: 403; the root too.
    assert_eq!(get(&files, "/sub/").status, 403);
    assert_eq!(get(&files, "/").status, 403);
    // A redirect never points to another host.
    let r = get(&files, "//sub");
    assert_eq!(r.header("Location"), Some("/sub/"));
    // No index file configured: even /docs/ is refused.
    assert_eq!(get(&files.clone().index(None), "/docs/").status, 403);
    let custom = files.clone().index(Some("one.bin"));
    assert_eq!(get(&custom, "/idx/").body, b"1");
}

#[test]
fn listings_only_when_enabled_and_without_hidden_names() {
    let tree = Tree::new("listing");
    let files = tree.files().listing(true);
    let r = get(&files, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let page = String::from_utf8(r.body).unwrap();
    for name in ["a.txt", "sub/", "docs/", "hello%20world.txt", "link-in"] {
        assert!(
            page.contains(&format!("href=\"./{name}\"")),
            "{name}: {page}"
        );
    }
    assert!(!page.contains(".git") && !page.contains(".env"), "{page}");
    assert!(!page.contains("href=\"../\""), "the root has no parent");
    let sub = String::from_utf8(get(&files, "/sub/").body).unwrap();
    assert!(sub.contains("href=\"./b.css\"") && sub.contains("href=\"../\""));
    // An index still wins.
    assert_eq!(get(&files, "/docs/").body, b"docs index");
}

#[test]
fn etags_and_dates_give_304_and_412() {
    let tree = Tree::new("conditional");
    let files = tree.files();
    let a = get(&files, "/a.txt");
    let etag = a.header("ETag").unwrap().to_string();
    let lm = a.header("Last-Modified").unwrap().to_string();
    let cond = |extra: String| ask(&files, "GET", "/a.txt", &extra);
    let r = cond(format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("ETag"), Some(&*etag));
    assert!(r.body.is_empty() && r.header("Content-Length").is_none());
    assert_eq!(
        cond(format!("If-None-Match: \"x\", W/{etag}\r\n")).status,
        304
    );
    assert_eq!(cond("If-None-Match: *\r\n".into()).status, 304);
    assert_eq!(cond("If-None-Match: \"x\"\r\n".into()).status, 200);
    assert_eq!(cond(format!("If-Modified-Since: {lm}\r\n")).status, 304);
    assert_eq!(
        cond("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".into()).status,
        200
    );
    // If-None-Match takes precedence over If-Modified-Since.
    let both = cond(format!(
        "If-None-Match: \"x\"\r\nIf-Modified-Since: {lm}\r\n"
    ));
    assert_eq!(both.status, 200);
    assert_eq!(cond("If-Match: \"x\"\r\n".into()).status, 412);
    assert_eq!(cond(format!("If-Match: {etag}\r\n")).status, 200);
    assert_eq!(
        cond("If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".into()).status,
        412
    );
    // HEAD too.
    let h = ask(
        &files,
        "HEAD",
        "/a.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(h.status, 304);
}

#[test]
fn a_file_modified_just_now_has_a_weak_tag() {
    let tree = Tree::new("weak");
    fs::write(tree.0.join("root/fresh.txt"), b"fresh").unwrap();
    let files = tree.files();
    let r = get(&files, "/fresh.txt");
    let etag = r.header("ETag").unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    // Still validates a cache (weak comparison), never a range (strong comparison).
    let inm = ask(
        &files,
        "GET",
        "/fresh.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(inm.status, 304);
    let ir = ask(
        &files,
        "GET",
        "/fresh.txt",
        &format!("Range: bytes=0-1\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((ir.status, &ir.body[..]), (200, &b"fresh"[..]));
}

#[test]
fn ranges_give_206_416_or_the_whole_file() {
    let tree = Tree::new("ranges");
    let files = tree.files();
    let range = |spec: &str| ask(&files, "GET", "/a.txt", &format!("Range: {spec}\r\n"));
    let r = range("bytes=2-5");
    assert_eq!((r.status, &r.body[..]), (206, &b"2345"[..]));
    assert_eq!(r.header("Content-Range"), Some("bytes 2-5/20"));
    assert_eq!(r.header("Content-Length"), Some("4"));
    let r = range("bytes=-3");
    assert_eq!((r.status, &r.body[..]), (206, &b"hij"[..]));
    assert_eq!(r.header("Content-Range"), Some("bytes 17-19/20"));
    let r = range("bytes=15-");
    assert_eq!((r.status, &r.body[..]), (206, &b"fghij"[..]));
    let r = range("bytes=19-100");
    assert_eq!(r.header("Content-Range"), Some("bytes 19-19/20"));
    let r = range("bytes=20-");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */20"));
    let r = range("bytes=0-1,4-5");
    assert_eq!((r.status, &r.body[..]), (200, BODY));
    let r = range("bytes=5-2");
    assert_eq!((r.status, &r.body[..]), (200, BODY));
    let r = range("lines=1-2");
    assert_eq!(r.status, 200);
    // If-Range: the range only for the same representation.
    let a = get(&files, "/a.txt");
    let (etag, lm) = (
        a.header("ETag").unwrap(),
        a.header("Last-Modified").unwrap(),
    );
    let ir = |v: &str| {
        ask(
            &files,
            "GET",
            "/a.txt",
            &format!("Range: bytes=0-0\r\nIf-Range: {v}\r\n"),
        )
        .status
    };
    assert_eq!(ir(etag), 206);
    assert_eq!(ir(lm), 206);
    assert_eq!(ir("\"stale\""), 200);
    assert_eq!(ir("Thu, 01 Jan 1970 00:00:00 GMT"), 200);
    // An empty file has no byte to give.
    let e = ask(&files, "GET", "/empty.txt", "Range: bytes=0-\r\n");
    assert_eq!(
        (e.status, e.header("Content-Range")),
        (416, Some("bytes */0"))
    );
}

#[test]
fn a_root_that_is_not_a_directory_is_an_error() {
    let tree = Tree::new("root");
    assert!(Files::new(tree.0.join("root/a.txt")).is_err());
    assert!(Files::new(tree.0.join("missing")).is_err());
}
