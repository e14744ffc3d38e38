//! A parsed request as handed to a [`Service`](super::Service), and the framing rules read from
//! its head (version, keep-alive, body length or chunked coding).

use std::fmt;

use super::fast::Head;
use super::response::ReqFacts;
use super::status::Status;
use super::uri;

/// The HTTP version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless the client asks for
    /// `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless either side says `Connection: close`.
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// One request: method, target, headers and the complete body, all borrowed from the
/// connection's input (a chunked body is decoded into a per-loop buffer first).
///
/// ```
/// use eventide::http::{Request, Response, Status};
///
/// fn route(req: &Request<'_>, res: &mut Response<'_>) {
///     match (req.method(), req.path()) {
///         ("GET", "/hello") => {
///             let who = req.query().unwrap_or("world");
///             res.content_type("text/plain");
///             res.body_with(|buf| {
///                 buf.extend_from_slice(b"hello, ");
///                 buf.extend_from_slice(who.as_bytes());
///             });
///         }
///         ("POST", "/echo") => {
///             let ct = req.header("content-type").unwrap_or(b"application/octet-stream");
///             res.header("Content-Type", ct).body(req.body());
///         }
///         _ => {
///             res.status(Status::NOT_FOUND).body(b"");
///         }
///     }
/// }
/// # let _ = route;
/// ```
pub struct Request<'r> {
    pub(crate) method: &'r str,
    pub(crate) target: &'r str,
    pub(crate) version: Version,
    pub(crate) headers: &'r [httparse::Header<'r>],
    pub(crate) body: &'r [u8],
    pub(crate) keep_alive: bool,
}

impl<'r> Request<'r> {
    /// The method, as sent (`"GET"`, `"POST"`, ...; methods are case-sensitive).
    pub fn method(&self) -> &'r str {
        self.method
    }

    /// The request target as sent: usually a path with an optional query (`/a/b?x=1`); an
    /// absolute URI (`http://host/a/b?x=1`, as sent to proxies, which servers must accept
    /// too); `*` for `OPTIONS *`; `host:port` for `CONNECT`.
    pub fn target(&self) -> &'r str {
        self.target
    }

    /// The path of the target, without the query: `/a/b` for `/a/b?x=1` and for
    /// `http://host/a/b?x=1`, `/` for `http://host`, `*` for `OPTIONS *`, empty for
    /// `CONNECT`'s `host:port`. It is percent-encoded as sent.
    pub fn path(&self) -> &'r str {
        if self.target.as_bytes().first() != Some(&b'/') {
            return self.other_form_path();
        }
        match self.query_start() {
            Some(i) => &self.target[..i],
            None => self.target,
        }
    }

    /// [`path`](Request::path) of an absolute-, asterisk- or authority-form target.
    #[cold]
    fn other_form_path(&self) -> &'r str {
        let pq = uri::path_and_query(self.target);
        let path = pq.split('?').next().unwrap_or("");
        if path.is_empty() && self.target.contains("://") {
            "/"
        } else {
            path
        }
    }

    /// The part of the target after the first `?`, if any.
    pub fn query(&self) -> Option<&'r str> {
        self.query_start().map(|i| &self.target[i + 1..])
    }

    /// The host the request is for, as sent (`example.com`, `example.com:8080`, `[::1]:80`):
    /// the authority of an absolute-form or `CONNECT` target, otherwise the `Host` field
    /// (RFC 9112 section 3.2.2; the codec has checked its syntax). `None` only for an
    /// HTTP/1.0 request without `Host`; an HTTP/1.1 one is refused before it gets here.
    pub fn host(&self) -> Option<&'r str> {
        uri::target_authority(self.target).or_else(|| {
            self.header("host")
                .and_then(|h| std::str::from_utf8(h).ok())
        })
    }

    /// Where the first `?` is (a plain byte loop: targets are short, and `str::find` goes
    /// through a general searcher).
    #[inline]
    fn query_start(&self) -> Option<usize> {
        self.target.bytes().position(|b| b == b'?')
    }

    /// The HTTP version of the request.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The value of the first header called `name` (compared ignoring ASCII case).
    pub fn header(&self, name: &str) -> Option<&'r [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Every header in the order received, as `(name, value)`.
    pub fn headers(&self) -> impl Iterator<Item = (&'r str, &'r [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, h.value))
    }

    /// The body: empty if the request had none; decoded if it was sent chunked.
    pub fn body(&self) -> &'r [u8] {
        self.body
    }

    /// Whether the connection stays open after this request's response (by its version and
    /// `Connection` header; [`Response::close`](super::Response::close) can still end it).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("headers", &self.headers.len())
            .field("body", &self.body.len())
            .finish()
    }
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// `Content-Length: n` (zero when neither header is present).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the head of a request says about the message and the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Framing {
    pub version: Version,
    pub keep_alive: bool,
    pub body: BodyKind,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `HEAD`: the response carries no body.
    pub head_only: bool,
}

impl Framing {
    /// The request of `head`, without its body (still to come).
    pub(crate) fn bodiless<'r>(self, head: &'r Head<'_, '_>) -> Request<'r> {
        Request {
            method: head.method,
            target: head.target,
            version: self.version,
            headers: head.headers,
            body: &[],
            keep_alive: self.keep_alive,
        }
    }

    /// What the request asks of its response.
    pub(crate) fn facts(self) -> ReqFacts {
        ReqFacts {
            head_only: self.head_only,
            keep_alive: self.keep_alive,
            announce: self.keep_alive && self.version == Version::Http10,
        }
    }
}

/// Reads the framing of a complete head (RFC 9112 section 6). Errors are the status to answer
/// with before closing.
pub(crate) fn framing(req: &Head<'_, '_>) -> Result<Framing, Status> {
    let version = match req.version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Status::HTTP_VERSION_NOT_SUPPORTED),
    };
    uri::form(req.method, req.target)?;
    let mut fields = FramingFields::default();
    for h in req.headers.iter() {
        fields.read(h.name, h.value, version)?;
    }
    fields.check(version)?;
    Ok(Framing {
        version,
        keep_alive: fields.keep_alive(version),
        body: fields.body(),
        expect_continue: fields.expect_continue,
        head_only: req.method == "HEAD",
    })
}

/// What the fields that frame a request have said so far, read one field at a time.
#[derive(Default)]
struct FramingFields {
    /// How many `Host` fields.
    hosts: u32,
    /// `Connection: close`.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive_token: bool,
    /// `Content-Length`, the same in every field that gives it.
    length: Option<usize>,
    /// `Transfer-Encoding` ended with `chunked`.
    chunked: bool,
    /// A `Transfer-Encoding` field was present (even an empty one).
    te_seen: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    expect_continue: bool,
}

impl FramingFields {
    /// Takes in one field; a framing field that is malformed or asks for what is not
    /// supported is the status to answer.
    #[inline]
    fn read(&mut self, name: &str, value: &[u8], version: Version) -> Result<(), Status> {
        // Only five names matter here; their lengths (4, 14, 17, 10, 6) tell them apart, so
        // most headers are skipped without a comparison.
        if !matches!(name.len(), 4 | 6 | 10 | 14 | 17) {
            return Ok(());
        }
        if is_host(name) {
            self.host(value)
        } else if name.eq_ignore_ascii_case("content-length") {
            self.content_length(value)
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.transfer_encoding(value)
        } else if name.eq_ignore_ascii_case("connection") {
            self.connection(value);
            Ok(())
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect(value, version)
        } else {
            Ok(())
        }
    }

    /// RFC 9112 section 3.2: one `Host`, well formed.
    fn host(&mut self, value: &[u8]) -> Result<(), Status> {
        self.hosts += 1;
        if self.hosts > 1 || !uri::valid_host(value) {
            return Err(Status::BAD_REQUEST);
        }
        Ok(())
    }

    /// Every `Content-Length` must give the same length.
    fn content_length(&mut self, value: &[u8]) -> Result<(), Status> {
        let n = parse_content_length(value)?;
        if self.length.is_some_and(|prev| prev != n) {
            return Err(Status::BAD_REQUEST); // conflicting lengths
        }
        self.length = Some(n);
        Ok(())
    }

    /// Codings apply in order; chunked must be the last and is the only one decoded.
    fn transfer_encoding(&mut self, value: &[u8]) -> Result<(), Status> {
        for coding in tokens(value) {
            if self.chunked {
                return Err(Status::BAD_REQUEST); // something after chunked
            }
            if !coding.eq_ignore_ascii_case(b"chunked") {
                return Err(Status::NOT_IMPLEMENTED);
            }
            self.chunked = true;
        }
        self.te_seen = true;
        Ok(())
    }

    /// The `close` and `keep-alive` options; others do not concern the framing.
    fn connection(&mut self, value: &[u8]) {
        for t in tokens(value) {
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive_token = true;
            }
        }
    }

    /// `100-continue` is the only expectation met (an HTTP/1.0 client is not told to
    /// continue, RFC 9110 section 10.1.1); any other is 417.
    fn expect(&mut self, value: &[u8], version: Version) -> Result<(), Status> {
        if !trim(value).eq_ignore_ascii_case(b"100-continue") {
            return Err(Status::EXPECTATION_FAILED);
        }
        self.expect_continue = version == Version::Http11;
        Ok(())
    }

    /// The rules across fields, once every field is read.
    fn check(&self, version: Version) -> Result<(), Status> {
        if self.hosts == 0 && version == Version::Http11 {
            return Err(Status::BAD_REQUEST); // RFC 9112 section 3.2: Host is required in 1.1
        }
        if self.te_seen && !self.chunked {
            return Err(Status::BAD_REQUEST); // an empty Transfer-Encoding
        }
        if self.chunked && (self.length.is_some() || version == Version::Http10) {
            // Both framings at once is the classic request-smuggling vector; chunked in 1.0
            // is not defined. Refuse rather than guess.
            return Err(Status::BAD_REQUEST);
        }
        Ok(())
    }

    /// Whether the connection stays open after the response, by the version's default.
    fn keep_alive(&self, version: Version) -> bool {
        match version {
            Version::Http11 => !self.close,
            Version::Http10 => self.keep_alive_token && !self.close,
        }
    }

    /// How the body is delimited (none is a length of zero).
    fn body(&self) -> BodyKind {
        if self.chunked {
            BodyKind::Chunked
        } else {
            BodyKind::Length(self.length.unwrap_or(0))
        }
    }
}

/// Whether a field name (a token) is `Host`, in any case: one word compare, as every request
/// has one. Setting bit 5 lowercases a letter and maps no other token byte onto `h`, `o`,
/// `s` or `t`.
#[inline]
fn is_host(name: &str) -> bool {
    match name.as_bytes() {
        &[a, b, c, d] => {
            u32::from_le_bytes([a, b, c, d]) | 0x2020_2020 == u32::from_le_bytes(*b"host")
        }
        _ => false,
    }
}

/// `Content-Length`: one or more decimal digits, nothing else (no sign, no list). A length
/// past what a `usize` holds is 413; the body limit is the server's to apply, as a body
/// the service streams ([`Intake::Stream`](super::Intake::Stream)) has none.
fn parse_content_length(value: &[u8]) -> Result<usize, Status> {
    let v = trim(value);
    if v.is_empty() {
        return Err(Status::BAD_REQUEST);
    }
    let mut n: usize = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(Status::BAD_REQUEST);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(Status::CONTENT_TOO_LARGE)?;
    }
    Ok(n)
}

/// The comma-separated elements of a header value, trimmed, empty ones skipped.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests;
