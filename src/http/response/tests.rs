//! The response writer without sockets: a batch of responses written to memory, the status
//! line rewritten after headers, and the header-field checks against their definitions.

use super::*;

/// The bytes of a batch of responses, each written by one closure.
fn respond(writers: &mut [&mut dyn FnMut(&mut Response<'_>)]) -> String {
    let mut heads = Heads::default();
    heads
        .common
        .extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: t\r\n");
    let (mut out, mut buf, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
    let mut batch = Batch {
        buf: &mut buf,
        out: &mut out,
    };
    for write in writers {
        let facts = ReqFacts {
            head_only: false,
            keep_alive: true,
            announce: false,
        };
        let mut res = Response::new(&mut batch, &mut scratch, &mut heads, facts, 0);
        write(&mut res);
        res.finish();
    }
    batch.flush();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_status_set_after_headers_rewrites_the_status_line() {
    let got = respond(&mut [
        &mut |r| {
            r.content_type("text/plain").body(b"a");
        },
        &mut |r| {
            r.content_type("text/plain").header("X-A", "1");
            r.status(Status::NOT_FOUND).header("X-B", "2").body(b"b");
        },
        &mut |r| {
            r.header("X-A", "1").status(Status::new(299).unwrap());
            r.status(Status::NO_CONTENT);
        },
        &mut |r| {
            r.status(Status::new(599).unwrap()).header("X-A", "1");
            r.status(Status::OK).body(b"d");
            r.status(Status::INTERNAL_SERVER_ERROR); // after the body: ignored
            assert_eq!(r.status_code(), Status::OK);
            assert!(r.is_sent());
        },
    ]);
    let want = [
        "HTTP/1.1 200 OK\r\nServer: t\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\na",
        "HTTP/1.1 404 Not Found\r\nServer: t\r\nContent-Type: text/plain\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 1\r\n\r\nb",
        "HTTP/1.1 204 No Content\r\nServer: t\r\nX-A: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nServer: t\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nd",
    ]
    .concat();
    assert_eq!(got, want);
}

#[test]
fn token_table_matches_the_rfc() {
    for b in 0..=255u8 {
        let expected = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert_eq!(is_tchar(b), expected, "byte {b:#04x}");
    }
}

#[test]
fn value_check_matches_a_byte_loop() {
    let slow = |v: &[u8]| !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
    assert!(value_ok(b"text/plain; charset=utf-8\t"));
    assert!(value_ok(b""));
    for len in 0..40 {
        let base: Vec<u8> = (0..len).map(|i: usize| b' ' + (i * 7 % 90) as u8).collect();
        assert_eq!(value_ok(&base), slow(&base));
        for pos in 0..len {
            for bad in [0u8, 1, 9, 10, 11, 13, 14, 0x80, 0x8a, 0x8d, 0xff] {
                let mut v = base.clone();
                v[pos] = bad;
                assert_eq!(value_ok(&v), slow(&v), "len {len} pos {pos} byte {bad:#x}");
            }
        }
    }
    assert_eq!(OK_LINE, Status::OK.line().unwrap());
}
