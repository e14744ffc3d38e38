//! Property tests of the HTTP request path (no sockets: the codec is driven over in-memory
//! reads exactly as a connection's `on_data` drives it), and the replay of the fuzz corpus.
//!
//! * Any valid stream of requests — bodies by length or chunked, with extensions (tokens,
//!   quoted strings, white space where the grammar allows it) and trailers, HTTP/1.0, 1.1 and
//!   1.2-1.9 (read as 1.1), origin- and absolute-form targets — cut into reads at arbitrary
//!   byte boundaries parses to exactly the requests it was built from (paths included), and
//!   to the same responses as when delivered whole.
//! * The same streams with every body streamed into a sink (`Service::intake`) give the sink
//!   exactly the bodies, in non-empty pieces, and the same answers however they are cut.
//! * Arbitrary bytes (and valid streams with bytes flipped) never panic, never leave more
//!   buffered than the limits allow, and give the same answers however they are cut.
//! * The head parser's fast path agrees with `httparse` on every head it takes, and the
//!   parser the server runs (fast path, else `httparse`) agrees with `httparse` alone on every
//!   input, errors and "incomplete" included (heads from a grammar of valid and tricky pieces,
//!   mutated, and random bytes).

#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};

use eventide::http::testing::{
    check_head, digest_service, fuzz_entry, head_diff_entry, without_continues, Harness,
};
use eventide::http::{
    BodySink, HttpServer, Intake, Request, Response, Service, SinkCx, Status, Trailers, Version,
};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Req {
    method: String,
    /// An origin-form target; sent as is, or in absolute form if `absolute`.
    target: String,
    absolute: bool,
    /// The minor version: 0, 1, or 2..=9 (read as 1.1).
    minor: u8,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: Content-Length (omitted if empty, for GET); `Some(sizes)`: chunked, in chunks
    /// of these sizes.
    chunks: Option<Vec<usize>>,
    trailers: bool,
}

impl Req {
    fn http10(&self) -> bool {
        self.minor == 0
    }

    fn sent_target(&self) -> String {
        if self.absolute {
            format!("http://example.com:8080{}", self.target)
        } else {
            self.target.clone()
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let (method, target, minor) = (&self.method, self.sent_target(), self.minor);
        out.extend_from_slice(format!("{method} {target} HTTP/1.{minor}\r\n").as_bytes());
        out.extend_from_slice(b"Host: example.com\r\n");
        if self.http10() {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match &self.chunks {
            None => {
                if !self.body.is_empty() {
                    out.extend_from_slice(
                        format!("Content-Length: {}\r\n", self.body.len()).as_bytes(),
                    );
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&self.body);
            }
            Some(sizes) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &self.body[..];
                for (i, &s) in sizes.iter().enumerate() {
                    let s = s.min(rest.len());
                    if s == 0 {
                        continue;
                    }
                    let ext = ["", ";ext=1", " ;a", ";b=\"q \\\" x\"", "\t; c = d ;e"][i % 5];
                    out.extend_from_slice(format!("{s:x}{ext}\r\n").as_bytes());
                    out.extend_from_slice(&rest[..s]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[s..];
                }
                if !rest.is_empty() {
                    out.extend_from_slice(format!("{:X}\r\n", rest.len()).as_bytes());
                    out.extend_from_slice(rest);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                if self.trailers {
                    out.extend_from_slice(b"X-Trailer: yes\r\nX-Empty:\r\nX-Ws: \t a b \r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The headers the server sees: ours plus the framing ones.
    fn seen(&self) -> Seen {
        let mut headers: Vec<(String, Vec<u8>)> = vec![("Host".into(), b"example.com".to_vec())];
        if self.http10() {
            headers.push(("Connection".into(), b"keep-alive".to_vec()));
        }
        headers.extend(
            self.headers
                .iter()
                .map(|(n, v)| (n.clone(), v.as_bytes().to_vec())),
        );
        match &self.chunks {
            None if !self.body.is_empty() => headers.push((
                "Content-Length".into(),
                self.body.len().to_string().into_bytes(),
            )),
            None => {}
            Some(_) => headers.push(("Transfer-Encoding".into(), b"chunked".to_vec())),
        }
        Seen {
            method: self.method.clone(),
            target: self.sent_target(),
            path: self.target.split('?').next().unwrap_or("").to_string(),
            http10: self.http10(),
            headers,
            body: self.body.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    path: String,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Records every request and answers with a digest of it.
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Service for Recorder {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.0.lock().unwrap().push(Seen::of(req));
        digest_service(req, res);
    }
}

impl Seen {
    /// What a service sees of `req` (its body so far).
    fn of(req: &Request<'_>) -> Seen {
        Seen {
            method: req.method().to_string(),
            target: req.target().to_string(),
            path: req.path().to_string(),
            http10: req.version() == Version::Http10,
            headers: req
                .headers()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: req.body().to_vec(),
        }
    }
}

/// Like [`Recorder`], but every body is streamed into a [`Gather`] sink.
struct Streamer(Arc<Mutex<Vec<Seen>>>);

/// Gathers a streamed body and records its request at the end; an empty piece is recorded as
/// a request with the method `EMPTY PIECE`.
struct Gather {
    seen: Seen,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl BodySink for Gather {
    fn data(&mut self, chunk: &[u8], _cx: &mut SinkCx<'_>) -> Result<(), Status> {
        if chunk.is_empty() {
            self.seen.method = "EMPTY PIECE".into();
        }
        self.seen.body.extend_from_slice(chunk);
        Ok(())
    }

    fn end(self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let Gather { seen, log } = *self;
        res.body(format!("{} {}", seen.target, seen.body.len()).as_bytes());
        log.lock().unwrap().push(seen);
    }
}

impl Service for Streamer {
    fn intake(&mut self, req: &Request<'_>) -> Intake {
        Intake::stream(Gather {
            seen: Seen::of(req),
            log: Arc::clone(&self.0),
        })
    }

    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.0.lock().unwrap().push(Seen::of(req));
        digest_service(req, res);
    }
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
    let target = "/[a-z0-9/._-]{0,24}(\\?[a-z0-9=&]{0,12})?";
    let header = ("X-[A-Za-z0-9-]{1,12}", "[!-~]([ -~]{0,30}[!-~])?");
    let headers = prop::collection::vec(header, 0..6);
    let body = prop::collection::vec(any::<u8>(), 0..300);
    let chunks = prop::option::of(prop::collection::vec(1usize..64, 0..6));
    let minor = prop_oneof![4 => Just(1u8), 2 => Just(0u8), 1 => 2u8..=9];
    (
        (method, target, any::<bool>(), minor),
        headers,
        body,
        chunks,
        any::<bool>(),
    )
        .prop_map(
            |((method, target, absolute, minor), headers, body, chunks, trailers)| Req {
                method: method.to_string(),
                target,
                absolute,
                // chunked is HTTP/1.1 only
                minor: if chunks.is_some() {
                    minor.max(1)
                } else {
                    minor
                },
                headers,
                body,
                chunks,
                trailers,
            },
        )
}

/// Cut points: sorted offsets within `len`.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn server<S: Service>(svc: S) -> HttpServer<S> {
    HttpServer::new(svc).max_body_size(4096)
}

fn feed_cut<S: Service>(h: &mut Harness<S>, stream: &[u8], cuts: &[usize]) {
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        h.feed(&stream[at..c]);
        assert!(
            h.buffered() <= h.buffer_bound(),
            "buffered {} > {}",
            h.buffered(),
            h.buffer_bound()
        );
        at = c;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn valid_streams_parse_the_same_however_they_are_cut(
        reqs in prop::collection::vec(request(), 1..8),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut stream = Vec::new();
        for r in &reqs {
            r.encode(&mut stream);
        }
        let expected: Vec<Seen> = reqs.iter().map(Req::seen).collect();

        let seen_whole = Arc::new(Mutex::new(Vec::new()));
        let mut whole = Harness::new(server(Recorder(seen_whole.clone())));
        whole.feed(&stream);

        let seen_split = Arc::new(Mutex::new(Vec::new()));
        let mut split = Harness::new(server(Recorder(seen_split.clone())));
        feed_cut(&mut split, &stream, &cuts(stream.len(), &raw_cuts));

        prop_assert_eq!(&*seen_whole.lock().unwrap(), &expected);
        prop_assert_eq!(&*seen_split.lock().unwrap(), &expected);
        prop_assert_eq!(whole.buffered(), 0);
        prop_assert_eq!(split.buffered(), 0);
        prop_assert!(!whole.is_closed() && !split.is_closed());
        prop_assert_eq!(without_continues(whole.output()), without_continues(split.output()));
    }

    #[test]
    fn streamed_bodies_are_the_same_however_they_are_cut(
        reqs in prop::collection::vec(request(), 1..8),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut stream = Vec::new();
        for r in &reqs {
            r.encode(&mut stream);
        }
        let expected: Vec<Seen> = reqs.iter().map(Req::seen).collect();

        let seen_whole = Arc::new(Mutex::new(Vec::new()));
        let mut whole = Harness::new(server(Streamer(seen_whole.clone())));
        whole.feed(&stream);

        let seen_split = Arc::new(Mutex::new(Vec::new()));
        let mut split = Harness::new(server(Streamer(seen_split.clone())));
        feed_cut(&mut split, &stream, &cuts(stream.len(), &raw_cuts));

        prop_assert_eq!(&*seen_whole.lock().unwrap(), &expected);
        prop_assert_eq!(&*seen_split.lock().unwrap(), &expected);
        prop_assert_eq!(whole.buffered(), 0);
        prop_assert_eq!(split.buffered(), 0);
        prop_assert!(!whole.is_closed() && !split.is_closed());
        prop_assert_eq!(without_continues(whole.output()), without_continues(split.output()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_within_the_limits(
        stream in prop::collection::vec(any::<u8>(), 0..3000),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..32),
    ) {
        let mut whole = Harness::new(server(digest_service));
        whole.feed(&stream);
        let mut split = Harness::new(server(digest_service));
        feed_cut(&mut split, &stream, &cuts(stream.len(), &raw_cuts));
        prop_assert!(whole.buffered() <= whole.buffer_bound());
        prop_assert_eq!(without_continues(whole.output()), without_continues(split.output()));
        prop_assert_eq!(whole.is_closed(), split.is_closed());
    }

    #[test]
    fn corrupted_valid_streams_agree_whole_and_cut(
        reqs in prop::collection::vec(request(), 1..5),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in 1u8..64,
    ) {
        let mut stream = vec![cut];
        for r in &reqs {
            r.encode(&mut stream);
        }
        for (at, b) in flips {
            let i = 1 + at % (stream.len() - 1);
            stream[i] = b;
        }
        fuzz_entry(&stream);
    }
}

/// Runs every file of `fuzz/corpus/<target>` through `entry`; each must pass.
fn replay_corpus(target: &str, entry: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus in {}", dir.display());
}

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    replay_corpus("http_request", fuzz_entry);
}

/// A piece of a head and whether it is within the fast path's grammar.
type Piece = (Vec<u8>, bool);

fn regex(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern).unwrap().boxed()
}

fn clean(pattern: &str) -> BoxedStrategy<Piece> {
    regex(pattern).prop_map(|s| (s.into_bytes(), true)).boxed()
}

fn fixed(options: &[&'static str], is_clean: bool) -> BoxedStrategy<Piece> {
    prop::sample::select(options.to_vec())
        .prop_map(move |s| (s.as_bytes().to_vec(), is_clean))
        .boxed()
}

fn raw(max: usize) -> BoxedStrategy<Piece> {
    prop::collection::vec(any::<u8>(), 0..max)
        .prop_map(|b| (b, false))
        .boxed()
}

const TCHARS: &str = "[!#$%&'*+.^_`|~0-9A-Za-z-]";

/// A header line: name, separator, value, line end.
fn header_line() -> impl Strategy<Value = (Piece, Piece, Piece, Piece)> {
    let name = prop_oneof![
        32 => clean("[A-Za-z][A-Za-z0-9-]{0,15}"),
        8 => clean(&format!("{TCHARS}{{1,70}}")),
        1 => fixed(&["", "A B", "A\t", "\u{e9}", "A\0", " A", "A\r", "A\n", "(A)"], false),
        1 => raw(6),
    ];
    let sep = prop_oneof![
        32 => fixed(&[":", ": ", ":\t", ": \t  ", ":   "], true),
        1 => fixed(&[" :", "\t:", "", ": \r\n ", ":\n"], false),
    ];
    let value = prop_oneof![
        32 => clean("[ -~\t]{0,40}"),
        8 => fixed(&["", " ", "\t", "a:b", "keep-alive", "x \t", "127.0.0.1:8080"], true),
        1 => fixed(&["\x7f", "a\0b", "caf\u{e9}", "a\rb", "a\nb", "\x01", "\u{1f600}"], false),
        1 => raw(10),
    ];
    let eol = prop_oneof![
        48 => fixed(&["\r\n"], true),
        1 => fixed(&["\n", "\r\n ", "\r\n\t", "\r", "\r\r\n", " \r\n"], false),
    ];
    (name, sep, value, eol)
}

/// A head from the grammar: the bytes, whether it is within the fast path's grammar, and its
/// number of headers.
fn head() -> impl Strategy<Value = (Vec<u8>, bool, usize)> {
    let lead = prop_oneof![40 => fixed(&[""], true), 1 => fixed(&["\r\n", "\n", " "], false)];
    let method = prop_oneof![
        32 => fixed(&["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "M-SEARCH", "get"], true),
        8 => regex(&format!("{TCHARS}{{1,20}}"))
            .prop_map(|m| { let ok = m.len() <= 16; (m.into_bytes(), ok) })
            .boxed(),
        1 => fixed(&["", "GE T", "G\0T", "GET\t", "\u{e9}T", "GET\r"], false),
    ];
    let target = prop_oneof![
        32 => clean("/[!-~]{0,30}"),
        4 => fixed(&["*", "/plaintext", "http://a/b?c=d#e", "/:?:"], true),
        1 => fixed(&["", "/a b", "/\x7f", "/\u{e9}", "/\t", "/\0"], false),
        1 => raw(8),
    ];
    let sp = prop_oneof![40 => fixed(&[" "], true), 1 => fixed(&["  ", "\t", ""], false)];
    let version = prop_oneof![
        32 => fixed(&["HTTP/1.1", "HTTP/1.0"], true),
        1 => fixed(&["HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.", "HTTP/1.1 ", "HTTP/1.10"], false),
        1 => fixed(&["HTTP/1.9", "HTTP/3", "HTTP/0.9", "HTTP/2", "HTTP/1", "HTTP/9.9", ""], false),
    ];
    let eol = prop_oneof![40 => fixed(&["\r\n"], true), 1 => fixed(&["\n", "\r", "\r\r\n"], false)];
    let end =
        prop_oneof![40 => fixed(&["\r\n"], true), 1 => fixed(&["\n", "", "\r", " \r\n"], false)];
    let body = prop::collection::vec(any::<u8>(), 0..12);
    (
        (lead, method, sp.clone(), target, sp, version, eol),
        prop_oneof![
            4 => prop::collection::vec(header_line(), 0..6),
            1 => prop::collection::vec(header_line(), 0..24),
        ],
        end,
        body,
    )
        .prop_map(
            |((lead, method, sp1, target, sp2, version, eol), headers, end, body)| {
                let mut out = Vec::new();
                let mut ok = true;
                let mut put = |(bytes, clean): &Piece| {
                    out.extend_from_slice(bytes);
                    ok &= clean;
                };
                for piece in [&lead, &method, &sp1, &target, &sp2, &version, &eol] {
                    put(piece);
                }
                for (name, sep, value, eol) in &headers {
                    for piece in [name, sep, value, eol] {
                        put(piece);
                    }
                }
                put(&end);
                out.extend_from_slice(&body);
                (out, ok, headers.len())
            },
        )
}

/// Small edits of a head: flip, insert or delete a byte, or cut it short.
fn mutate(mut head: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, kind, byte) in edits {
        let i = at % (head.len() + 1);
        match kind % 4 {
            0 if i < head.len() => head[i] = byte,
            1 => head.insert(i, byte),
            2 if i < head.len() => {
                head.remove(i);
            }
            _ => head.truncate(i),
        }
    }
    head
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn head_fast_path_agrees_with_httparse(
        (head, clean, n) in head(),
        max_headers in 1usize..=20,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        text_cut in any::<usize>(),
    ) {
        let taken = check_head(&head, usize::MAX, max_headers);
        prop_assert!(taken.is_ok(), "{}", taken.unwrap_err());
        if clean && n <= max_headers.min(16) {
            prop_assert!(taken.unwrap(), "fast path refused {:?}", String::from_utf8_lossy(&head));
        }
        let r = check_head(&head, text_cut % (head.len() + 1), max_headers);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        let edited = mutate(head, &edits);
        let r = check_head(&edited, usize::MAX, max_headers);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        let r = check_head(&noise, usize::MAX, max_headers);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}

#[test]
fn the_head_diff_fuzz_corpus_replays_cleanly() {
    replay_corpus("http_head_diff", head_diff_entry);
}

/// Every byte value, in every place of a head the fast path reads: the parsers agree.
#[test]
fn head_parsers_agree_on_every_byte_in_every_place() {
    let templates: [&[u8]; 9] = [
        b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /@ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.@\r\nHost: a\r\n\r\n",
        b"GET / HTTP/@.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/@\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.2@\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nH@st: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a@\r\n\r\n",
    ];
    let mut taken = 0;
    for template in templates {
        let at = template.iter().position(|&b| b == b'@').unwrap();
        for byte in 0..=255u8 {
            let mut head = template.to_vec();
            head[at] = byte;
            for max_headers in [1, 16] {
                match check_head(&head, usize::MAX, max_headers) {
                    Ok(fast) => taken += usize::from(fast),
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    // The fast path does take the printable cases (it is not silently always giving up).
    assert!(taken > 6 * 2 * 60, "fast path took only {taken} heads");
}
