//! Property tests of the HTTP request path (no sockets: the codec is driven over in-memory
//! reads exactly as a connection's `on_data` drives it), and the replay of the fuzz corpus.
//!
//! * Any valid stream of requests — bodies by length or chunked, with extensions and
//!   trailers, HTTP/1.0 and 1.1 — cut into reads at arbitrary byte boundaries parses to
//!   exactly the requests it was built from, and to the same responses as when delivered
//!   whole.
//! * Arbitrary bytes (and valid streams with bytes flipped) never panic, never leave more
//!   buffered than the limits allow, and give the same answers however they are cut.

#![cfg(feature = "http")]

use std::sync::{Arc, Mutex};

use eventide::http::testing::{digest_service, fuzz_entry, without_continues, Harness};
use eventide::http::{HttpServer, Request, Response, Service, Version};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Req {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `None`: Content-Length (omitted if empty, for GET); `Some(sizes)`: chunked, in chunks
    /// of these sizes.
    chunks: Option<Vec<usize>>,
    trailers: bool,
}

impl Req {
    fn encode(&self, out: &mut Vec<u8>) {
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        out.extend_from_slice(format!("{} {} {version}\r\n", self.method, self.target).as_bytes());
        if self.http10 {
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
                    let ext = if i % 2 == 1 { ";ext=1" } else { "" };
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
                    out.extend_from_slice(b"X-Trailer: yes\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The headers the server sees: ours plus the framing ones.
    fn seen(&self) -> Seen {
        let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
        if self.http10 {
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
            target: self.target.clone(),
            http10: self.http10,
            headers,
            body: self.body.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// Records every request and answers with a digest of it.
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Service for Recorder {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.0.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            target: req.target().to_string(),
            http10: req.version() == Version::Http10,
            headers: req
                .headers()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
            body: req.body().to_vec(),
        });
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
    (
        method,
        target,
        any::<bool>(),
        headers,
        body,
        chunks,
        any::<bool>(),
    )
        .prop_map(
            |(method, target, http10, headers, body, chunks, trailers)| Req {
                method: method.to_string(),
                target,
                http10: http10 && chunks.is_none(), // chunked is HTTP/1.1 only
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

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http_request");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| fuzz_entry(&data));
        assert!(outcome.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus in {}", dir.display());
}
