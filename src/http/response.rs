//! The response writer: status line and headers go straight into the connection's output
//! (the loop's staging buffer), with no allocation per response.

use std::fmt;

use super::Sink;

/// An HTTP status code.
///
/// ```
/// use eventide::http::Status;
///
/// assert_eq!(Status::NOT_FOUND.code(), 404);
/// assert_eq!(Status::NOT_FOUND.reason(), "Not Found");
/// assert_eq!(Status::new(299).map(|s| s.reason()), Some(""));
/// assert!(Status::new(1000).is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(u16);

macro_rules! statuses {
    ($($name:ident = $code:literal $reason:literal;)*) => {
        impl Status {
            $(
                #[doc = concat!("`", stringify!($code), " ", $reason, "`")]
                pub const $name: Status = Status($code);
            )*

            /// The reason phrase of a registered code, or `""`.
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $($code => $reason,)*
                    _ => "",
                }
            }

            /// `HTTP/1.1 <code> <reason>\r\n` for a registered code.
            fn line(self) -> Option<&'static [u8]> {
                match self.0 {
                    $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes()),)*
                    _ => None,
                }
            }
        }
    };
}

statuses! {
    CONTINUE = 100 "Continue";
    SWITCHING_PROTOCOLS = 101 "Switching Protocols";
    OK = 200 "OK";
    CREATED = 201 "Created";
    ACCEPTED = 202 "Accepted";
    NO_CONTENT = 204 "No Content";
    PARTIAL_CONTENT = 206 "Partial Content";
    MOVED_PERMANENTLY = 301 "Moved Permanently";
    FOUND = 302 "Found";
    SEE_OTHER = 303 "See Other";
    NOT_MODIFIED = 304 "Not Modified";
    TEMPORARY_REDIRECT = 307 "Temporary Redirect";
    PERMANENT_REDIRECT = 308 "Permanent Redirect";
    BAD_REQUEST = 400 "Bad Request";
    UNAUTHORIZED = 401 "Unauthorized";
    FORBIDDEN = 403 "Forbidden";
    NOT_FOUND = 404 "Not Found";
    METHOD_NOT_ALLOWED = 405 "Method Not Allowed";
    REQUEST_TIMEOUT = 408 "Request Timeout";
    CONFLICT = 409 "Conflict";
    LENGTH_REQUIRED = 411 "Length Required";
    CONTENT_TOO_LARGE = 413 "Content Too Large";
    URI_TOO_LONG = 414 "URI Too Long";
    UNSUPPORTED_MEDIA_TYPE = 415 "Unsupported Media Type";
    EXPECTATION_FAILED = 417 "Expectation Failed";
    TOO_MANY_REQUESTS = 429 "Too Many Requests";
    REQUEST_HEADER_FIELDS_TOO_LARGE = 431 "Request Header Fields Too Large";
    INTERNAL_SERVER_ERROR = 500 "Internal Server Error";
    NOT_IMPLEMENTED = 501 "Not Implemented";
    BAD_GATEWAY = 502 "Bad Gateway";
    SERVICE_UNAVAILABLE = 503 "Service Unavailable";
    HTTP_VERSION_NOT_SUPPORTED = 505 "HTTP Version Not Supported";
}

impl Status {
    /// A status from its code, which must have three digits (100 to 999).
    pub fn new(code: u16) -> Option<Status> {
        (100..=999).contains(&code).then_some(Status(code))
    }

    /// The numeric code.
    pub fn code(self) -> u16 {
        self.0
    }

    /// Whether a response with this status carries no body and no `Content-Length`
    /// (1xx and 204); 304 carries no body either.
    fn bodyless(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }

    /// Writes the status line.
    pub(crate) fn write_line(self, out: &mut dyn Sink) {
        match self.line() {
            Some(line) => out.put(line),
            None => {
                let c = self.0;
                let digits = [
                    b'0' + (c / 100 % 10) as u8,
                    b'0' + (c / 10 % 10) as u8,
                    b'0' + (c % 10) as u8,
                ];
                out.put(b"HTTP/1.1 ");
                out.put(&digits);
                out.put(b" \r\n");
            }
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Nothing written yet: the status can still change.
    Fresh,
    /// Status line and headers are being written.
    Head,
    /// The response is complete.
    Sent,
}

/// The response to one request, written straight into the connection's output.
///
/// Calls go in order: optionally [`status`](Response::status) (default `200 OK`), then any
/// [`header`](Response::header)s, then one [`body`](Response::body) or
/// [`body_with`](Response::body_with), which completes the response. The writer adds the
/// status line, `Server`, `Date`, `Content-Length` and, when the connection is to close,
/// `Connection: close` — a service must not set those itself. A response the service leaves
/// unfinished is completed with an empty body. A `HEAD` request gets the headers (with the
/// `Content-Length` of the body given) but no body.
///
/// ```
/// use eventide::http::{Request, Response, Status};
///
/// fn created(_req: &Request<'_>, res: &mut Response<'_>) {
///     res.status(Status::CREATED)
///         .header("Location", "/items/7")
///         .content_type("application/json")
///         .body(br#"{"id":7}"#);
/// }
/// # let _ = created;
/// ```
pub struct Response<'r> {
    out: &'r mut dyn Sink,
    scratch: &'r mut Vec<u8>,
    /// `Server: ...\r\nDate: ...\r\n`, refreshed once a second by the loop.
    common: &'r [u8],
    status: Status,
    phase: Phase,
    head_only: bool,
    keep_alive: bool,
    /// HTTP/1.0 keep-alive must be confirmed with `Connection: keep-alive`.
    announce_keep_alive: bool,
}

impl<'r> Response<'r> {
    pub(crate) fn new(
        out: &'r mut dyn Sink,
        scratch: &'r mut Vec<u8>,
        common: &'r [u8],
        head_only: bool,
        keep_alive: bool,
        announce_keep_alive: bool,
    ) -> Response<'r> {
        Response {
            out,
            scratch,
            common,
            status: Status::OK,
            phase: Phase::Fresh,
            head_only,
            keep_alive,
            announce_keep_alive,
        }
    }

    /// Sets the status (default `200 OK`). Ignored once a header or the body was written.
    pub fn status(&mut self, status: Status) -> &mut Self {
        if self.phase == Phase::Fresh {
            self.status = status;
        } else {
            log::warn!("eventide::http: status set after the head was started; ignored");
        }
        self
    }

    /// Adds a header. A name that is not an HTTP token, or a value with CR, LF or NUL in it,
    /// is dropped (and logged), so request data echoed into a header cannot split the
    /// response. Ignored after the body.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        let value = value.as_ref();
        if self.phase == Phase::Sent {
            log::warn!("eventide::http: header {name} set after the body; ignored");
            return self;
        }
        let name_ok = !name.is_empty() && name.bytes().all(is_token);
        let value_ok = !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0);
        if !(name_ok && value_ok) {
            log::warn!("eventide::http: malformed header {name:?} dropped");
            return self;
        }
        self.start();
        self.out.put(name.as_bytes());
        self.out.put(b": ");
        self.out.put(value);
        self.out.put(b"\r\n");
        self
    }

    /// Shorthand for `header("Content-Type", content_type)`.
    pub fn content_type(&mut self, content_type: &str) -> &mut Self {
        self.header("Content-Type", content_type)
    }

    /// Closes the connection after this response (sending `Connection: close` if the head is
    /// still to be completed).
    pub fn close(&mut self) -> &mut Self {
        self.keep_alive = false;
        self
    }

    /// Whether the connection stays open after this response.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Writes `Content-Length`, the end of the head and `body`, completing the response.
    /// Ignored if the response is already complete.
    pub fn body(&mut self, body: &[u8]) {
        if self.phase == Phase::Sent {
            log::warn!("eventide::http: a second body for one response; ignored");
            return;
        }
        self.start();
        if !self.status.bodyless() {
            let mut n = itoa::Buffer::new();
            self.out.put(b"Content-Length: ");
            self.out.put(n.format(body.len()).as_bytes());
            self.out.put(b"\r\n");
        }
        if !self.keep_alive {
            self.out.put(b"Connection: close\r\n\r\n");
        } else if self.announce_keep_alive {
            self.out.put(b"Connection: keep-alive\r\n\r\n");
        } else {
            self.out.put(b"\r\n");
        }
        if !self.head_only && !self.status.bodyless() {
            self.out.put(body);
        }
        self.phase = Phase::Sent;
    }

    /// Builds the body in a buffer the loop reuses (cleared first), then writes it as
    /// [`body`](Response::body) does: a body built per request costs no allocation once the
    /// buffer has grown.
    ///
    /// ```
    /// # use eventide::http::{Request, Response};
    /// fn count(req: &Request<'_>, res: &mut Response<'_>) {
    ///     use std::io::Write;
    ///     res.content_type("text/plain")
    ///         .body_with(|buf| write!(buf, "{} bytes", req.body().len()).unwrap());
    /// }
    /// # let _ = count;
    /// ```
    pub fn body_with(&mut self, build: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = std::mem::take(self.scratch);
        buf.clear();
        build(&mut buf);
        self.body(&buf);
        *self.scratch = buf;
    }

    /// Whether the response is complete.
    pub fn is_sent(&self) -> bool {
        self.phase == Phase::Sent
    }

    /// Writes the status line and the common headers, once.
    fn start(&mut self) {
        if self.phase == Phase::Fresh {
            self.status.write_line(self.out);
            self.out.put(self.common);
            self.phase = Phase::Head;
        }
    }

    /// Completes a response the service left unfinished.
    pub(crate) fn finish(&mut self) {
        if self.phase != Phase::Sent {
            self.body(b"");
        }
    }
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("phase", &self.phase)
            .field("keep_alive", &self.keep_alive)
            .finish()
    }
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
