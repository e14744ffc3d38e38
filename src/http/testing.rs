//! Test and fuzzing support, not part of the stable API: drives an [`HttpServer`] over
//! in-memory bytes exactly as a connection's `on_data` would, without sockets.

use std::mem::MaybeUninit;

use super::fast::{
    fast_head, httparse_head, utf8_prefix, Head, HeadError, Slots, FAST_HEADERS, HEADERS_CAP,
};
use super::response::CONTINUE;
use super::{BodySink, HttpServer, Intake, Request, Response, Service, SinkCx, Status, Trailers};

/// The `Date` a [`Harness`] freezes its server at: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const FROZEN_DATE: u64 = 784_111_777;

/// A simulated connection, the protocol adapter's harness over an [`HttpServer`]: input is
/// buffered while a request is incomplete, as the event loop does, and responses are
/// collected; the server's `Date` is frozen at [`FROZEN_DATE`].
pub type Harness<S> = crate::adapter::Harness<HttpServer<S>>;

/// The service the fuzz target and the property tests run: it answers with a digest of the
/// request (method, target, version, headers, body), so two runs that parse the same requests
/// write the same bytes.
pub fn digest_service(req: &Request<'_>, res: &mut Response<'_>) {
    let mut d = Digest::of_head(req);
    d.mix(req.body());
    d.answer(res);
}

/// A request's digest, built as its body arrives.
struct Digest {
    h: u64,
    line: String,
    body: usize,
}

impl Digest {
    /// The digest of the head (method, target, version and headers).
    fn of_head(req: &Request<'_>) -> Digest {
        let mut d = Digest {
            h: 0xcbf2_9ce4_8422_2325,
            line: format!("{} {} {}", req.method(), req.target(), req.version()),
            body: 0,
        };
        for (name, value) in req.headers() {
            d.mix(name.as_bytes());
            d.mix(value);
        }
        d.body = 0;
        d
    }

    /// Adds one field (or, for the body, all of it: see [`add_body`](Digest::add_body)).
    fn mix(&mut self, bytes: &[u8]) {
        self.add_body(bytes);
        self.end_field();
    }

    fn add_body(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.h = (self.h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.body += bytes.len();
    }

    fn end_field(&mut self) {
        self.h = (self.h ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }

    fn answer(&self, res: &mut Response<'_>) {
        let (line, n, h) = (&self.line, self.body, self.h);
        res.content_type("text/plain").body_with(|buf| {
            use std::io::Write;
            let _ = write!(buf, "{line} body={n} digest={h:016x}");
        });
    }
}

/// [`digest_service`], with the bodies of `PUT` requests and of those whose target contains
/// `stream` streamed into a sink that digests them as they arrive (the answers are the same
/// as if buffered, so the fuzz target exercises both paths with one oracle).
pub struct FuzzService;

impl BodySink for Digest {
    fn data(&mut self, chunk: &[u8], _cx: &mut SinkCx<'_>) -> Result<(), Status> {
        assert!(!chunk.is_empty(), "an empty piece of a streamed body");
        self.add_body(chunk);
        Ok(())
    }

    fn end(mut self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        self.end_field();
        self.answer(res);
    }
}

impl Service for FuzzService {
    fn intake(&mut self, req: &Request<'_>) -> Intake {
        if req.method() == "PUT" || req.target().contains("stream") {
            Intake::stream(Digest::of_head(req))
        } else {
            Intake::Buffer
        }
    }

    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        digest_service(req, res);
    }
}

/// Strips interim `100 Continue` responses, which depend on whether a body arrived with its
/// head.
pub fn without_continues(output: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(output.len());
    let mut i = 0;
    while i < output.len() {
        if output[i..].starts_with(CONTINUE) {
            i += CONTINUE.len();
        } else {
            out.push(output[i]);
            i += 1;
        }
    }
    out
}

fn fuzz_server() -> HttpServer<FuzzService> {
    HttpServer::new(FuzzService)
        .max_head_size(512)
        .max_headers(8)
        .max_body_size(1024)
}

/// The HTTP fuzz target: `data[0]` picks a read size, the rest is the byte stream. The stream
/// is served whole and cut into reads of that size; both must write the same responses and
/// agree on closing, no read may leave more buffered than the limits allow, and every
/// response must start with a status line. Panics on a violation.
pub fn fuzz_entry(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut % 64) + 1;
    let mut whole = Harness::new(fuzz_server());
    whole.feed(stream);
    let mut split = Harness::new(fuzz_server());
    for piece in stream.chunks(cut) {
        split.feed(piece);
        assert!(
            split.buffered() <= split.buffer_bound(),
            "{} bytes buffered, bound {}",
            split.buffered(),
            split.buffer_bound()
        );
    }
    assert!(whole.buffered() <= whole.buffer_bound());
    let (a, b) = (
        without_continues(whole.output()),
        without_continues(split.output()),
    );
    assert!(
        a == b,
        "whole and split differ:\n{}\n---\n{}",
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b)
    );
    assert_eq!(whole.is_closed(), split.is_closed());
    assert!(a.is_empty() || a.starts_with(b"HTTP/1.1 "));
    if let Err(e) = check_head(stream, usize::MAX, 8) {
        panic!("{e}");
    }
}

/// A parsed head, owned, to compare the parsers' results.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Complete {
        method: String,
        target: String,
        version: u8,
        headers: Vec<(String, Vec<u8>)>,
        len: usize,
    },
    Partial,
    Error(HeadError),
}

impl Parsed {
    fn of<E: Into<HeadError>>(r: Result<Option<Head<'_, '_>>, E>) -> Parsed {
        match r {
            Ok(Some(h)) => Parsed::Complete {
                method: h.method.into(),
                target: h.target.into(),
                version: h.version,
                headers: h
                    .headers
                    .iter()
                    .map(|h| (h.name.into(), h.value.into()))
                    .collect(),
                len: h.len,
            },
            Ok(None) => Parsed::Partial,
            Err(e) => Parsed::Error(e.into()),
        }
    }
}

/// `httparse` alone on `buf`, with `max_headers` slots.
fn httparse_alone(buf: &[u8], max_headers: usize) -> Parsed {
    let mut slow = [const { MaybeUninit::uninit() }; HEADERS_CAP];
    Parsed::of(httparse_head(buf, &mut slow[..max_headers]))
}

/// What the server's parser must answer for a head `httparse` refused with a version or
/// token error, worked out from `httparse` alone: the version starts where replacing the
/// rest of the line by `HTTP/1.1` makes a request line `httparse` takes. `HTTP/1.2`..`1.9`
/// then reads as the head with `HTTP/1.1` in its place; another major version, or no
/// version at all where one would make a valid line (HTTP/0.9), is a version error; a
/// version still arriving is "incomplete"; anything else keeps `httparse`'s verdict.
fn other_version_reference(buf: &[u8], max_headers: usize, reference: Parsed) -> Parsed {
    let start = request_line_start(buf);
    let verdict = match version_start(buf, start) {
        Some(v) => version_verdict(buf, v, max_headers),
        None => missing_version_verdict(buf, start),
    };
    verdict.unwrap_or(reference)
}

/// Whether `line` (a request line up to its version) followed by `HTTP/1.1` is a request
/// line `httparse` takes.
fn valid_with_version(line: &[u8]) -> bool {
    let mut l = line.to_vec();
    l.extend_from_slice(b"HTTP/1.1\r\n\r\n");
    matches!(httparse_alone(&l, 1), Parsed::Complete { .. })
}

/// Where the request line starts: after the empty lines `httparse` skips.
fn request_line_start(buf: &[u8]) -> usize {
    let mut start = 0;
    while let Some(n) = [&b"\r\n"[..], b"\n"]
        .into_iter()
        .find(|eol| buf[start..].starts_with(eol))
    {
        start += n.len();
    }
    start
}

/// Where the version of the request line starting at `start` begins: the first place,
/// after a space and within the line, where `HTTP/1.1` would complete a valid line.
fn version_start(buf: &[u8], start: usize) -> Option<usize> {
    let line_end = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| start + i + 1);
    (1..line_end).find(|&p| buf[p - 1] == b' ' && valid_with_version(&buf[..p]))
}

/// A line with no place for a version: HTTP/0.9 — a version error — if the line up to its
/// first CR or LF, given a version, is valid; `None` (`httparse`'s verdict stands) otherwise.
fn missing_version_verdict(buf: &[u8], start: usize) -> Option<Parsed> {
    let e = start
        + buf[start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')?;
    let line = &buf[..e];
    (!line.ends_with(b" ") && valid_with_version(&[line, &b" "[..]].concat()))
        .then_some(Parsed::Error(HeadError::Version))
}

/// What the version at `buf[v..]` makes of the head, trying each version token in turn;
/// `None` (`httparse`'s verdict stands) if none of them is there.
fn version_verdict(buf: &[u8], v: usize, max_headers: usize) -> Option<Parsed> {
    let rest = &buf[v..];
    for (token, served) in other_versions() {
        // A version other than 1.x is refused at the end of its line, a 1.x once the line
        // is complete.
        let full = [&token[..], if served { b"\r\n" } else { b"\r" }].concat();
        if rest.len() < full.len() && full.starts_with(rest) {
            return Some(Parsed::Partial);
        }
        if !rest.starts_with(&token) {
            continue;
        }
        match &rest[token.len()..] {
            [b'\r' | b'\n', ..] if !served => return Some(Parsed::Error(HeadError::Version)),
            [b'\r', b'\n', ..] | [b'\n', ..] => {
                let mut as_11 = buf.to_vec();
                as_11[v..v + 8].copy_from_slice(b"HTTP/1.1");
                return Some(httparse_alone(&as_11, max_headers));
            }
            _ => {}
        }
    }
    None
}

/// The version tokens `httparse` does not take, in the order they are tried (`HTTP/M`
/// before `HTTP/M.m`), each with whether the server serves it: `HTTP/1.2`..`HTTP/1.9` are
/// served as HTTP/1.1; every other major version (`HTTP/0`, `HTTP/2.0`, ...) is refused.
fn other_versions() -> impl Iterator<Item = (Vec<u8>, bool)> {
    let minors = || std::iter::once(None).chain((b'0'..=b'9').map(Some));
    (b'0'..=b'9')
        .flat_map(move |major| minors().map(move |minor| (major, minor)))
        .filter_map(|(major, minor)| {
            let served = major == b'1' && matches!(minor, Some(b'2'..=b'9'));
            if !served && major == b'1' {
                return None; // `HTTP/1`, `HTTP/1.0`, `HTTP/1.1`: httparse's own
            }
            let mut token = b"HTTP/".to_vec();
            token.push(major);
            token.extend(minor.map(|m| [b'.', m]).into_iter().flatten());
            Some((token, served))
        })
}

/// The differential check of the head parser: with `max_headers` header slots (1..=256) and
/// the fast path reading the valid UTF-8 of `buf[..text_len]`, the fast path's result (when it
/// takes `buf`) must be `httparse`'s alone, errors and "incomplete" included, and so must that
/// of the parser the server runs (fast path, else `httparse`), except on the versions
/// `httparse` does not know, where it must be what `httparse` says of the line with
/// `HTTP/1.1` in place. `Ok(true)` if the fast path took `buf`; `Err` describes a
/// disagreement.
pub fn check_head(buf: &[u8], text_len: usize, max_headers: usize) -> Result<bool, String> {
    let max_headers = max_headers.clamp(1, HEADERS_CAP);
    let text = utf8_prefix(&buf[..text_len.min(buf.len())]).0;
    let reference = httparse_alone(buf, max_headers);
    let expected = match reference {
        Parsed::Error(HeadError::Syntax(httparse::Error::Version | httparse::Error::Token)) => {
            other_version_reference(buf, max_headers, reference)
        }
        _ => reference,
    };
    let mut both = Slots::new();
    let combined = Parsed::of(both.parse(buf, text, max_headers));
    let mut slots = [httparse::EMPTY_HEADER; FAST_HEADERS];
    let cap = max_headers.min(FAST_HEADERS);
    let fast_only =
        fast_head(text, buf.len(), &mut slots[..cap]).map(|h| Parsed::of::<HeadError>(Ok(Some(h))));
    let show = || {
        format!(
            "{:?} (text {} bytes, max_headers {max_headers})",
            String::from_utf8_lossy(buf),
            text.len()
        )
    };
    if combined != expected {
        return Err(format!(
            "head parser disagrees with httparse on {}:\n  {combined:?}\n  {expected:?}",
            show()
        ));
    }
    match fast_only {
        Some(f) if f != expected => Err(format!(
            "fast path disagrees with httparse on {}:\n  {f:?}\n  {expected:?}",
            show()
        )),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}

/// The `http_head_diff` fuzz target: `data[0] % 20 + 1` header slots, the rest is the head,
/// checked by [`check_head`] with the fast path reading all of it and a prefix of
/// `data[0] * 2` bytes; panics on a disagreement. For a head the fast path takes, every prefix
/// is checked too (a cut head must be "incomplete" to both, or refused by both).
pub fn head_diff_entry(data: &[u8]) {
    let Some((&n, buf)) = data.split_first() else {
        return;
    };
    let max_headers = usize::from(n % 20) + 1;
    let check = |buf: &[u8], text_len: usize| {
        check_head(buf, text_len, max_headers).unwrap_or_else(|e| panic!("{e}"))
    };
    check(buf, usize::from(n) * 2);
    if check(buf, usize::MAX) {
        for end in 0..buf.len().min(1024) {
            check(&buf[..end], usize::MAX);
        }
    }
}
