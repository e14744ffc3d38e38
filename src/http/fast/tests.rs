//! The fast head parser without sockets: the shapes it accepts, where it gives up and leaves
//! the head to `httparse`, and how other HTTP versions are read.

use super::*;

type Owned = (String, String, u8, Vec<(String, Vec<u8>)>, usize);

fn fast(buf: &[u8]) -> Option<Owned> {
    let mut slots = [httparse::EMPTY_HEADER; FAST_HEADERS];
    let h = fast_head(utf8_prefix(buf).0, buf.len(), &mut slots)?;
    let headers = h
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    Some((h.method.into(), h.target.into(), h.version, headers, h.len))
}

#[test]
fn accepts_the_common_shape() {
    let head =
        b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a:80\r\nX-Empty:\r\nX-Ws: \t v \t\r\n\r\nbody";
    let (m, t, v, h, len) = fast(head).unwrap();
    assert_eq!(
        (&*m, &*t, v, len),
        ("GET", "/plaintext?x=1", 1, head.len() - 4)
    );
    let names: Vec<&str> = h.iter().map(|(n, _)| &**n).collect();
    assert_eq!(names, ["Host", "X-Empty", "X-Ws"]);
    assert_eq!(h[0].1, b"a:80");
    assert_eq!(h[1].1, b"");
    assert_eq!(h[2].1, b"v");
    let (m, _, v, h, _) = fast(b"M-SEARCH * HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!((&*m, v, h.len()), ("M-SEARCH", 0, 0));
}

#[test]
fn gives_up_outside_the_grammar() {
    for head in [
        &b"\r\nGET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: \x80\r\n\r\n",
        b"GET /\x80 HTTP/1.1\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nA : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n",
        b"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n",
    ] {
        assert!(fast(head).is_none(), "{:?}", String::from_utf8_lossy(head));
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for _ in 0..=FAST_HEADERS {
        many.extend_from_slice(b"A: b\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert!(fast(&many).is_none());
}

/// What the server's parser makes of a head: the version read, or the error.
fn version_of(head: &[u8]) -> Result<Option<(u8, usize, usize)>, HeadError> {
    let mut slots = Slots::new();
    let text = utf8_prefix(head).0;
    let h = slots.parse(head, text, 8)?;
    Ok(h.map(|h| (h.version, h.headers.len(), h.len)))
}

#[test]
fn higher_minor_versions_are_read_as_http11() {
    for v in 2..=9 {
        let head = format!("GET /x?y HTTP/1.{v}\r\nHost: a\r\nX: 1\r\n\r\nbody");
        let b = head.as_bytes();
        assert_eq!(version_of(b), Ok(Some((1, 2, b.len() - 4))), "{head:?}");
        // Still arriving: incomplete at every cut.
        for end in 0..b.len() - 4 {
            assert_eq!(version_of(&b[..end]), Ok(None), "{:?}", &head[..end]);
        }
    }
    let mut slots = Slots::new();
    let head = b"\r\nPOST /a HTTP/1.5\nHost: a\n\n";
    let h = slots.parse(head, "", 8).unwrap().unwrap();
    assert_eq!((h.method, h.target, h.version), ("POST", "/a", 1));
    assert_eq!((h.headers[0].name, h.headers[0].value), ("Host", &b"a"[..]));
    // More headers than the slots.
    let many = b"GET / HTTP/1.2\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let mut slots = Slots::new();
    assert_eq!(
        slots.parse(many, "", 2).map(|h| h.is_some()),
        Err(HeadError::TooManyHeaders)
    );
}

#[test]
fn other_versions_are_refused_as_unsupported() {
    for head in [
        &b"GET / HTTP/2.0\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/2\r\n",
        b"GET / HTTP/3\r\nHost: a\r\n\r\n",
        b"GET / HTTP/0.9\r\n",
        b"GET / HTTP/9.9\n",
        b"GET /index.html\r\n",
        b"GET /\n",
        b"GET / HTTP/2.0\rjunk",
    ] {
        assert_eq!(
            version_of(head),
            Err(HeadError::Version),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    assert_eq!(
        HeadError::Version.status(),
        Status::HTTP_VERSION_NOT_SUPPORTED
    );
    for partial in [&b"GET / HTTP/2"[..], b"GET / HTTP/2.", b"GET / HTTP/3.0"] {
        assert_eq!(version_of(partial), Ok(None));
    }
}

#[test]
fn malformed_versions_stay_malformed() {
    for head in [
        &b"GET / HTTP/1\r\n\r\n"[..],
        b"GET / HTTP/1.10\r\n\r\n",
        b"GET / HTTP/12.0\r\n\r\n",
        b"GET / HTTP/1.2 \r\n\r\n",
        b"GET / HTTP/1.2\rX\r\n",
        b"GET / http/1.1\r\n\r\n",
        b"GET / HTTP/1.x\r\n\r\n",
        b"GET / HTTPS/1.1\r\n\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET / x HTTP/1.1\r\n\r\n",
        b"GET\r\n",
        b"G@T /\r\n",
        b"GET /\xff\xfe HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.2\r\nBad header\r\n\r\n",
    ] {
        let got = version_of(head);
        assert!(
            matches!(got, Err(HeadError::Syntax(_))),
            "{:?}: {got:?}",
            String::from_utf8_lossy(head)
        );
    }
}

#[test]
fn runs_stop_at_the_first_byte_out_of_range() {
    for len in 0..20 {
        for bad in [0u8, b'\t', b' ', 0x7f, 0x80, 0xff] {
            let mut v = vec![b'a'; len];
            v.push(bad);
            v.extend_from_slice(&[0xff, 0, b' ', b'a', b'b', b'c', b'd', b'e']);
            assert_eq!(run(&v, 0x20), if bad == b' ' { len + 1 } else { len });
            assert_eq!(run(&v, 0x21), len);
        }
    }
}
