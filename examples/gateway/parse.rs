//! The gateway's two pieces of HTTP text handling: the request it forwards (hop-by-hop
//! headers removed, `X-Forwarded-For` appended) and an upstream's response, read
//! incrementally from the connection's input (`Content-Length`, chunked, or until close): its
//! head once whole, then its body piece by piece as it arrives, never held whole.

use std::net::SocketAddr;

use eventide::http::Request;

/// The most an upstream's response head may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields an upstream's response head may have.
const MAX_HEADERS: usize = 100;

/// Header fields that concern one hop only (RFC 9110 §7.6.1), never forwarded; the ones a
/// `Connection` field names are dropped too. `Content-Length` and `Expect` are the codec's
/// business on each side (it re-frames bodies and answers `100-continue` itself).
fn hop_by_hop(name: &str, connection: &[&str]) -> bool {
    const FIXED: [&str; 8] = [
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    ];
    FIXED.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() >= 6 && name[..6].eq_ignore_ascii_case("proxy-")
        || connection.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// The tokens of every `Connection` field among `headers`.
fn connection_tokens<'h>(headers: impl Iterator<Item = (&'h str, &'h [u8])>) -> Vec<&'h str> {
    headers
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// A request's head as it goes upstream, but for the client's address and the body's
/// framing (see [`ForwardHead::finish`]): HTTP/1.1 and keep-alive, end-to-end headers.
pub struct ForwardHead {
    lines: Vec<u8>,
    /// The request's own `X-Forwarded-For` list, if it had one.
    forwarded_for: Option<Vec<u8>>,
}

/// How the body of a request goes upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body, and none expected for the method: no framing field.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

impl ForwardHead {
    /// A head taken already (a placeholder).
    pub fn empty() -> ForwardHead {
        ForwardHead {
            lines: Vec::new(),
            forwarded_for: None,
        }
    }

    /// The head of `req` for `upstream` (its `Host` when the request has none).
    pub fn of(req: &Request<'_>, upstream: &str) -> ForwardHead {
        let mut lines = Vec::with_capacity(256);
        lines.extend_from_slice(req.method().as_bytes());
        lines.push(b' ');
        lines.extend_from_slice(req.target().as_bytes());
        lines.extend_from_slice(b" HTTP/1.1\r\n");
        let connection = connection_tokens(req.headers());
        let mut forwarded_for: Option<Vec<u8>> = None;
        let mut host = false;
        for (name, value) in req.headers() {
            if hop_by_hop(name, &connection) {
                continue;
            }
            if name.eq_ignore_ascii_case("x-forwarded-for") {
                append(forwarded_for.get_or_insert_with(Vec::new), value);
                continue;
            }
            host |= name.eq_ignore_ascii_case("host");
            push_field(&mut lines, name, value);
        }
        if !host {
            push_field(
                &mut lines,
                "Host",
                req.host().unwrap_or(upstream).as_bytes(),
            );
        }
        ForwardHead {
            lines,
            forwarded_for,
        }
    }

    /// The whole head: `client` appended to `X-Forwarded-For`, the body's framing field,
    /// the blank line.
    pub fn finish(self, client: Option<SocketAddr>, framing: Framing) -> Vec<u8> {
        let ForwardHead {
            mut lines,
            mut forwarded_for,
        } = self;
        if let Some(ip) = client.map(|c| c.ip().to_string()) {
            append(forwarded_for.get_or_insert_with(Vec::new), ip.as_bytes());
        }
        if let Some(list) = &forwarded_for {
            push_field(&mut lines, "X-Forwarded-For", list);
        }
        match framing {
            Framing::None => {}
            Framing::Length(n) => {
                push_field(&mut lines, "Content-Length", n.to_string().as_bytes())
            }
            Framing::Chunked => push_field(&mut lines, "Transfer-Encoding", b"chunked"),
        }
        lines.extend_from_slice(b"\r\n");
        lines
    }
}

/// `req` as it goes upstream, with its (buffered) body: see [`ForwardHead`].
pub fn forward(req: &Request<'_>, client: Option<SocketAddr>, upstream: &str) -> Vec<u8> {
    let body = req.body();
    let framing =
        if !body.is_empty() || !matches!(req.method(), "GET" | "HEAD" | "DELETE" | "OPTIONS") {
            Framing::Length(body.len() as u64)
        } else {
            Framing::None
        };
    let mut out = ForwardHead::of(req, upstream).finish(client, framing);
    out.extend_from_slice(body);
    out
}

/// Appends `item` to a comma-separated list.
fn append(list: &mut Vec<u8>, item: &[u8]) {
    if !list.is_empty() {
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(item);
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The head of an upstream's answer: what the client gets before the body.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// End-to-end header fields, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The upstream's `Content-Length` (kept for a `HEAD` too); `None`: chunked or until close.
    pub len: Option<u64>,
    /// The upstream connection can carry another request.
    pub reusable: bool,
}

/// What [`ResponseReader::read`] found, in order.
pub enum Piece<'a> {
    /// The answer's head is in.
    Head(&'a Answer),
    /// Bytes of its body.
    Body(&'a [u8]),
}

/// How the body of the response being read is delimited.
#[derive(Debug)]
enum Body {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked: the next thing is a chunk-size line (`None`) or this many data bytes and
    /// their CRLF.
    Chunked(Option<u64>),
    /// Chunked, past the last chunk: trailer lines until an empty one.
    Trailers,
    /// Until the upstream closes.
    UntilClose,
}

/// Reads one upstream response incrementally.
#[derive(Debug)]
pub struct ResponseReader {
    head_only: bool,
    answer: Answer,
    /// `None` until the head is in.
    body: Option<Body>,
}

/// What [`ResponseReader::read`] made of the input.
#[derive(Debug)]
pub enum Read {
    /// More input is needed; this many bytes were used.
    More(usize),
    /// The response is complete; this many bytes were used.
    Done(usize),
    /// The upstream broke HTTP: why.
    Bad(&'static str),
}

impl ResponseReader {
    /// A reader for the answer to a `HEAD` request (`head_only`: no body whatever the head
    /// says) or another.
    pub fn new(head_only: bool) -> ResponseReader {
        ResponseReader {
            head_only,
            answer: Answer::default(),
            body: None,
        }
    }

    /// Whether this reads the answer to a `HEAD` request (no body, whatever the head says).
    pub fn head_only(&self) -> bool {
        self.head_only
    }

    /// Whether the head of the answer is in (an upstream failing after it cannot be
    /// answered for with a 502 of the gateway's own without the client knowing).
    pub fn started(&self) -> bool {
        self.body.is_some()
    }

    /// Whether the body is read until the upstream closes (so its close completes it).
    pub fn until_close(&self) -> bool {
        matches!(self.body, Some(Body::UntilClose))
    }

    /// Whether the upstream connection can carry another request after this answer.
    pub fn reusable(&self) -> bool {
        self.answer.reusable
    }

    /// Reads from `input` (what is not consumed yet), giving `on` the head once it is in and
    /// then each piece of the body.
    pub fn read(&mut self, input: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Read {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = match self.body {
                None => {
                    let step = self.read_head(rest);
                    if self.body.is_some() {
                        on(Piece::Head(&self.answer));
                    }
                    step
                }
                Some(_) => self.read_body(rest, on),
            };
            match step {
                Read::More(n) if n > 0 && !rest[n..].is_empty() => used += n,
                Read::More(n) => return Read::More(used + n),
                Read::Done(n) => return Read::Done(used + n),
                bad => return bad,
            }
        }
    }

    fn read_head(&mut self, input: &[u8]) -> Read {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut fields);
        let len = match res.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
                return Read::Bad("response head too large")
            }
            Ok(httparse::Status::Partial) => return Read::More(0),
            Err(_) => return Read::Bad("malformed response head"),
        };
        let status = res.code.unwrap_or(0);
        if (100..200).contains(&status) {
            return Read::More(len); // an interim answer (`100 Continue`): skipped
        }
        let names = res.headers.iter().map(|h| (h.name, h.value));
        let connection = connection_tokens(names);
        let (length, chunked) = match self.take_fields(res.headers, &connection) {
            Ok(framing) => framing,
            Err(why) => return Read::Bad(why),
        };
        let mut close = res.version == Some(0);
        for t in &connection {
            close |= t.eq_ignore_ascii_case("close");
            if res.version == Some(0) && t.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
        self.answer.status = status;
        self.answer.len = if chunked { None } else { length };
        let body = if self.head_only || status == 204 || status == 304 {
            Body::Length(0)
        } else if chunked {
            Body::Chunked(None)
        } else if let Some(n) = length {
            Body::Length(n)
        } else {
            close = true;
            Body::UntilClose
        };
        self.answer.reusable = !close;
        self.body = Some(body);
        match self.body {
            Some(Body::Length(0)) => Read::Done(len),
            _ => Read::More(len),
        }
    }

    /// Keeps the head's end-to-end fields for the client's answer; returns how the body is
    /// framed: its `Content-Length`, and whether it is chunked.
    fn take_fields(
        &mut self,
        headers: &[httparse::Header<'_>],
        connection: &[&str],
    ) -> Result<(Option<u64>, bool), &'static str> {
        let mut length = None;
        let mut chunked = false;
        for h in headers {
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("content-length") {
                match value.parse::<u64>() {
                    Ok(n) if length.map_or(true, |l| l == n) => length = Some(n),
                    _ => return Err("bad Content-Length"),
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().map(str::trim) == Some("chunked")
                    || value.eq_ignore_ascii_case("chunked");
                if !chunked {
                    return Err("unsupported transfer coding");
                }
            }
            if hop_by_hop(h.name, connection) || drop_from_upstream(h.name) {
                continue;
            }
            self.answer
                .headers
                .push((h.name.to_string(), h.value.to_vec()));
        }
        Ok((length, chunked))
    }

    fn read_body(&mut self, input: &[u8], on: &mut dyn FnMut(Piece<'_>)) -> Read {
        match self.body.as_mut().expect("the head is in") {
            Body::Length(left) => {
                let n = (*left).min(input.len() as u64) as usize;
                if n > 0 {
                    on(Piece::Body(&input[..n]));
                }
                *left -= n as u64;
                if *left == 0 {
                    Read::Done(n)
                } else {
                    Read::More(n)
                }
            }
            Body::UntilClose => {
                if !input.is_empty() {
                    on(Piece::Body(input));
                }
                Read::More(input.len())
            }
            Body::Chunked(None) => self.read_chunk_size(input),
            Body::Chunked(Some(0)) => match input {
                [b'\r', b'\n', ..] => {
                    self.body = Some(Body::Chunked(None));
                    Read::More(2)
                }
                [] | [b'\r'] => Read::More(0),
                _ => Read::Bad("chunk data not followed by CRLF"),
            },
            Body::Chunked(Some(left)) => {
                let n = (*left).min(input.len() as u64) as usize;
                if n > 0 {
                    on(Piece::Body(&input[..n]));
                }
                *left -= n as u64;
                Read::More(n)
            }
            Body::Trailers => match input.iter().position(|&b| b == b'\n') {
                Some(0) | Some(1) if input[0] == b'\r' || input[0] == b'\n' => {
                    Read::Done(input.iter().position(|&b| b == b'\n').unwrap() + 1)
                }
                Some(p) => Read::More(p + 1), // a trailer field: dropped
                None if input.len() > MAX_HEAD => Read::Bad("trailers too large"),
                None => Read::More(0),
            },
        }
    }

    /// A chunk-size line: the next chunk's size, or the last chunk (then the trailers).
    fn read_chunk_size(&mut self, input: &[u8]) -> Read {
        match httparse::parse_chunk_size(input) {
            Ok(httparse::Status::Complete((_, 0))) => {
                let used = input.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                self.body = Some(Body::Trailers);
                Read::More(used)
            }
            Ok(httparse::Status::Complete((used, size))) => {
                self.body = Some(Body::Chunked(Some(size)));
                Read::More(used)
            }
            Ok(httparse::Status::Partial) if input.len() > 1024 => {
                Read::Bad("chunk-size line too long")
            }
            Ok(httparse::Status::Partial) => Read::More(0),
            Err(_) => Read::Bad("malformed chunk size"),
        }
    }
}

/// Fields of an upstream's head the gateway's own codec writes for the client.
fn drop_from_upstream(name: &str) -> bool {
    ["date", "server"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}
