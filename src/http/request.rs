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
    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name;
        // Only five names matter here; their lengths (4, 14, 17, 10, 6) tell them apart, so
        // most headers are skipped without a comparison.
        if !matches!(name.len(), 4 | 6 | 10 | 14 | 17) {
            continue;
        }
        if is_host(name) {
            // RFC 9112 section 3.2: one Host, well formed.
            hosts += 1;
            if hosts > 1 || !uri::valid_host(h.value) {
                return Err(Status::BAD_REQUEST);
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_content_length(h.value)?;
            if length.is_some_and(|prev| prev != n) {
                return Err(Status::BAD_REQUEST); // conflicting lengths
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Codings apply in order; chunked must be the last and is the only one we decode.
            for coding in tokens(h.value) {
                if chunked {
                    return Err(Status::BAD_REQUEST); // something after chunked
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    return Err(Status::NOT_IMPLEMENTED);
                }
            }
            te_seen = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                expect_continue = version == Version::Http11;
            } else {
                return Err(Status::EXPECTATION_FAILED);
            }
        }
    }
    if hosts == 0 && version == Version::Http11 {
        return Err(Status::BAD_REQUEST); // RFC 9112 section 3.2: Host is required in 1.1
    }
    if te_seen && !chunked {
        return Err(Status::BAD_REQUEST); // an empty Transfer-Encoding
    }
    if chunked && (length.is_some() || version == Version::Http10) {
        // Both framings at once is the classic request-smuggling vector; chunked in 1.0 is
        // not defined. Refuse rather than guess.
        return Err(Status::BAD_REQUEST);
    }
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    let body = if chunked {
        BodyKind::Chunked
    } else {
        BodyKind::Length(length.unwrap_or(0))
    };
    Ok(Framing {
        version,
        keep_alive,
        body,
        expect_continue,
        head_only: req.method == "HEAD",
    })
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
mod tests {
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
            bad("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
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
}
