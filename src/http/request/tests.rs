//! The framing rules without sockets: keep-alive, body delimiting, `Host` and `Expect`, each
//! refusal with its status; and the accessors of each target form.

use super::*;

fn frame(head: &str) -> Result<Framing, Status> {
    let mut headers = [std::mem::MaybeUninit::uninit(); 16];
    let req = super::super::fast::httparse_head(head.as_bytes(), &mut headers);
    framing(&req.unwrap().unwrap())
}

#[test]
fn keep_alive_rules() {
    assert!(
        frame("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        !frame("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(!frame("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
    assert!(
        frame("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        !frame("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n")
            .unwrap()
            .keep_alive
    );
}

#[test]
fn body_framing() {
    let f = frame("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n").unwrap();
    assert_eq!(f.body, BodyKind::Length(12));
    let f = frame("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
    assert_eq!(f.body, BodyKind::Chunked);
    let bad = |h: &str| frame(h).unwrap_err();
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        Status::NOT_IMPLEMENTED
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad(
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        ),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        Status::CONTENT_TOO_LARGE
    );
    assert_eq!(
        frame("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .body,
        BodyKind::Length(5)
    );
}

#[test]
fn expectations_and_the_remaining_framing_errors() {
    let f = frame("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue \r\n\r\n").unwrap();
    assert!(f.expect_continue);
    // RFC 9110 section 10.1.1: ignored in an HTTP/1.0 request.
    let f = frame("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert!(!f.expect_continue);
    let bad = |h: &str| frame(h).unwrap_err();
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n"),
        Status::EXPECTATION_FAILED
    );
    // An empty coding list, chunked in 1.0, and a coding after chunked in a second field.
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"),
        Status::BAD_REQUEST
    );
    let f = frame("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert!(f.head_only && f.body == BodyKind::Length(0));
    assert!(
        !frame("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .head_only
    );
}

#[test]
fn the_host_name_test_is_exact() {
    for b in 0..=255u8 {
        for at in 0..4 {
            let mut name = *b"Host";
            name[at] = b;
            let Ok(name) = std::str::from_utf8(&name) else {
                continue;
            };
            assert_eq!(is_host(name), name.eq_ignore_ascii_case("host"), "{name:?}");
        }
    }
    assert!(!is_host("hos") && !is_host("hostx") && is_host("HoSt"));
}

#[test]
fn host_rules() {
    let bad = |h: &str| frame(h).unwrap_err();
    assert_eq!(bad("GET / HTTP/1.1\r\n\r\n"), Status::BAD_REQUEST);
    assert_eq!(
        bad("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("GET / HTTP/1.1\r\nhOsT: a/b\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("GET / HTTP/1.0\r\nHost: a@b\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert_eq!(
        bad("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
        Status::BAD_REQUEST
    );
    // HTTP/1.0 needs none; an empty one is valid (RFC 9110 section 7.2).
    assert!(frame("GET / HTTP/1.0\r\n\r\n").is_ok());
    assert!(frame("GET / HTTP/1.1\r\nHost:\r\n\r\n").is_ok());
    assert!(frame("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").is_ok());
    // Absolute form: Host still required in 1.1, and still checked.
    assert!(frame("GET http://a/b HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
    assert_eq!(bad("GET http://a/b HTTP/1.1\r\n\r\n"), Status::BAD_REQUEST);
    assert_eq!(
        bad("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        Status::BAD_REQUEST
    );
    assert!(frame("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
}

fn req<'a>(target: &'a str, headers: &'a [httparse::Header<'a>]) -> Request<'a> {
    Request {
        method: "GET",
        target,
        version: Version::Http11,
        headers,
        body: b"",
        keep_alive: true,
    }
}

#[test]
fn path_query_and_host_of_each_form() {
    let host = [httparse::Header {
        name: "Host",
        value: b"h:1",
    }];
    let r = req("/a/b?x=1", &host);
    assert_eq!(
        (r.path(), r.query(), r.host()),
        ("/a/b", Some("x=1"), Some("h:1"))
    );
    let r = req("http://other:2/plaintext?q", &host);
    assert_eq!(
        (r.path(), r.query(), r.host()),
        ("/plaintext", Some("q"), Some("other:2"))
    );
    let r = req("https://other", &host);
    assert_eq!((r.path(), r.query(), r.host()), ("/", None, Some("other")));
    let r = req("http://other?q", &[]);
    assert_eq!((r.path(), r.query()), ("/", Some("q")));
    let r = req("*", &host);
    assert_eq!((r.path(), r.query(), r.host()), ("*", None, Some("h:1")));
    let r = req("h:443", &[]);
    assert_eq!((r.path(), r.host()), ("", Some("h:443")));
    assert_eq!(req("/", &[]).host(), None);
}

#[test]
fn trims_and_splits() {
    assert_eq!(trim(b"  a b\t"), b"a b");
    assert_eq!(trim(b"   "), b"");
    let t: Vec<&[u8]> = tokens(b" close , ,keep-alive").collect();
    assert_eq!(t, vec![&b"close"[..], &b"keep-alive"[..]]);
}
