//! Request-body framing without sockets: chunked scanning and decoding, byte by byte and in pieces, and the limits it enforces.

use super::*;

const BODY: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Sum: 1\r\n\r\nGET";

fn scan(b: &[u8], max: usize) -> Result<Scan, Status> {
    Chunked::new().scan(b, max, None)
}

#[test]
fn decodes_whole() {
    let mut out = Vec::new();
    let n = decode(BODY, 1024, &mut out).unwrap();
    assert_eq!(out, b"hello, world");
    assert_eq!(&BODY[n..], b"GET");
}

#[test]
fn resumes_at_every_split() {
    for cut in 0..BODY.len() - 3 {
        let mut c = Chunked::new();
        assert_eq!(c.scan(&BODY[..cut], 1024, None), Ok(Scan::More));
        assert_eq!(c.scan(BODY, 1024, None), Ok(Scan::Done(BODY.len() - 3)));
    }
}

/// The decoder fed one piece at a time (as a streaming consumer would, consuming what it
/// is given) hands out exactly the data, as slices of its input, and stops at the end.
#[test]
fn hands_out_data_incrementally_at_every_cut() {
    for piece in 1..BODY.len() {
        let mut d = ChunkDecoder::new();
        let mut data = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut consumed_total = 0;
        for part in BODY.chunks(piece) {
            pending.extend_from_slice(part);
            loop {
                let got = d.decode(&pending, 1024).unwrap();
                data.extend_from_slice(got.data);
                let (consumed, done) = (got.consumed, got.done);
                pending.drain(..consumed);
                consumed_total += consumed;
                if done || consumed == 0 {
                    break;
                }
            }
        }
        assert!(d.decode(&[], 1024).unwrap().done, "piece {piece}");
        assert_eq!(data, b"hello, world", "piece {piece}");
        assert_eq!(consumed_total, BODY.len() - 3);
        assert_eq!(pending, b"GET");
        // Nothing more is consumed once the body is complete.
        assert_eq!(d.decode(b"GET", 1024).unwrap().consumed, 0);
    }
}

/// The trailer section is kept whole however the body is cut, and read back as fields.
#[test]
fn keeps_trailers_at_every_cut() {
    let body = b"3;x=1\r\nabc\r\n0\r\nX-Sum: 42 \r\nX-Empty:\r\nX-B:\tb c\r\n\r\n";
    for cut in 1..body.len() {
        let mut d = ChunkDecoder::new();
        let (mut kept, mut data) = (Vec::new(), Vec::new());
        let mut pending = Vec::new();
        for part in body.chunks(cut) {
            pending.extend_from_slice(part);
            loop {
                let got = d.decode_keeping_trailers(&pending, 10, &mut kept).unwrap();
                data.extend_from_slice(got.data);
                let (consumed, done) = (got.consumed, got.done);
                pending.drain(..consumed);
                if done || consumed == 0 {
                    break;
                }
            }
        }
        assert_eq!(data, b"abc", "cut {cut}");
        let fields: Vec<_> = trailer_fields(&kept).collect();
        assert_eq!(
            fields,
            [("X-Sum", &b"42"[..]), ("X-Empty", b""), ("X-B", b"b c")],
            "cut {cut}"
        );
    }
    let mut kept = Vec::new();
    let got = ChunkDecoder::new()
        .decode_keeping_trailers(b"0\r\n\r\n", 10, &mut kept)
        .unwrap();
    assert!(got.done);
    assert_eq!(trailer_fields(&kept).count(), 0);
}

#[test]
fn data_slices_point_into_the_input() {
    let mut d = ChunkDecoder::new();
    let input = b"3\r\nabc\r\n";
    let got = d.decode(input, 10).unwrap();
    assert_eq!((got.consumed, got.data, got.done), (6, &b"abc"[..], false));
    assert_eq!(got.data.as_ptr(), input[3..].as_ptr());
    let got = d.decode(&input[6..], 10).unwrap();
    assert_eq!((got.consumed, got.data, got.done), (2, &b""[..], false));
}

#[test]
fn refuses_bad_framing_and_big_bodies() {
    assert_eq!(scan(b"x\r\n", 10), Err(Status::BAD_REQUEST));
    assert_eq!(scan(b"5\nhello", 10), Err(Status::BAD_REQUEST));
    assert_eq!(scan(b"5\r\nhelloXX", 10), Err(Status::BAD_REQUEST));
    assert_eq!(scan(b"b\r\n", 10), Err(Status::CONTENT_TOO_LARGE));
    assert_eq!(
        scan(b"5\r\nhello\r\n6\r\n", 10),
        Err(Status::CONTENT_TOO_LARGE)
    );
    assert_eq!(
        scan(b"ffffffffffffffffffffffff\r\n", usize::MAX),
        Err(Status::CONTENT_TOO_LARGE)
    );
    assert_eq!(scan(b"0\r\nno colon\r\n\r\n", 10), Err(Status::BAD_REQUEST));
    assert_eq!(scan(b"0\r\n\r\n", 10), Ok(Scan::Done(5)));
    assert_eq!(scan(b"000\r\n\r\n", 10), Ok(Scan::Done(7)));
}

/// RFC 9112 section 7.1.1: `BWS` only before `;` and around `=`; a chunk-size line may
/// not end in white space.
#[test]
fn chunk_size_lines_follow_the_grammar() {
    let ok = [
        &b"5\r\nhello\r\n0\r\n\r\n"[..],
        b"5;a\r\nhello\r\n0\r\n\r\n",
        b"5 ;a\r\nhello\r\n0\r\n\r\n",
        b"5\t; a = b\r\nhello\r\n0\r\n\r\n",
        b"5;a=b;c;d=\"q \\\" ;x\"\r\nhello\r\n0;z\r\n\r\n",
        b"5;a=\"\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=b ;c\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\x80\xff\"\r\nhello\r\n0\r\n\r\n",
    ];
    for body in ok {
        assert_eq!(
            scan(body, 10),
            Ok(Scan::Done(body.len())),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let bad = [
        &b"5 \r\nhello\r\n0\r\n\r\n"[..],
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5;a \r\nhello\r\n0\r\n\r\n",
        b"5;a=b \r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;=b\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a=b=c\r\nhello\r\n0\r\n\r\n",
        b"5;a\x01\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"b\\\x00\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=b\nhello\r\n0\r\n\r\n",
        b"5;a=b\rhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0 \r\n\r\n",
    ];
    for body in bad {
        assert_eq!(
            scan(body, 10),
            Err(Status::BAD_REQUEST),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn trailer_fields_follow_the_grammar() {
    for body in [
        &b"0\r\nX-A: 1\r\n\r\n"[..],
        b"0\r\nX-A:\r\n\r\n",
        b"0\r\nX-A:1 \t\r\nX-B: caf\xc3\xa9\r\n\r\n",
    ] {
        assert_eq!(scan(body, 10), Ok(Scan::Done(body.len())));
    }
    for body in [
        &b"0\r\nX\x01A: 1\r\n\r\n"[..],
        b"0\r\nX\x00A: 1\r\n\r\n",
        b"0\r\nX\x7fA: 1\r\n\r\n",
        b"0\r\nX A: 1\r\n\r\n",
        b"0\r\nX-A : 1\r\n\r\n",
        b"0\r\n: 1\r\n\r\n",
        b"0\r\n X-A: 1\r\n\r\n",
        b"0\r\nX-A: 1\r\n folded\r\n\r\n",
        b"0\r\nX-A: 1\x00\r\n\r\n",
        b"0\r\nX-A: 1\n\r\n",
        b"0\r\nX-A: 1\r\n\n",
        b"0\r\n\xc3\xa9: 1\r\n\r\n",
    ] {
        assert_eq!(
            scan(body, 10),
            Err(Status::BAD_REQUEST),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn extensions_and_trailers_are_bounded() {
    let mut ext = b"1;a=".to_vec();
    ext.extend_from_slice(&vec![b'x'; MAX_METADATA]);
    ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(scan(&ext, 10), Err(Status::BAD_REQUEST));
    let mut trailers = b"0\r\n".to_vec();
    while trailers.len() < MAX_METADATA + 16 {
        trailers.extend_from_slice(b"X-Pad: 0123456789\r\n");
    }
    trailers.extend_from_slice(b"\r\n");
    assert_eq!(
        scan(&trailers, 10),
        Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
    // Just under the bounds: accepted.
    let mut ext = b"1;a=".to_vec();
    ext.extend_from_slice(&vec![b'x'; MAX_METADATA - 4]);
    ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
    assert_eq!(scan(&ext, 10), Ok(Scan::Done(ext.len())));
}
