//! Request heads: a strict fast path for the common shape, and `httparse` for everything else.
//!
//! The fast path takes only a conservative subset of RFC 9112, on which its result is the one
//! `httparse` gives (same method, target, version, headers with the same trimming, same head
//! length; checked by the differential tests in `tests/http_props.rs` and the `http_head_diff`
//! fuzz target):
//!
//! ```text
//! head   = method SP target SP ( "HTTP/1.1" / "HTTP/1.0" ) CRLF *( field CRLF ) CRLF
//! method = 1*16tchar
//! target = 1*( %x21-7E )
//! field  = 1*tchar ":" *( SP / HTAB ) *( %x20-7E / HTAB )     ; trailing SP / HTAB trimmed
//! ```
//!
//! Anything else — leading empty lines, bare LF, obs-fold, control bytes, bytes of 0x80 and
//! above, an incomplete head, more headers than the limit or than [`FAST_HEADERS`] — makes it
//! give up, and the whole head is parsed again by `httparse`, which accepts or refuses it as it
//! always did.
//!
//! `httparse` knows only `HTTP/1.0` and `HTTP/1.1`. When it refuses a request line for its
//! version, [`other_version`] reads the line again: `HTTP/1.2` to `HTTP/1.9` are served as
//! HTTP/1.1 (RFC 9110 section 2.5: a higher minor version is processed as the highest one
//! supported), and a well-formed line with another major version (`HTTP/2.0`, `HTTP/3`,
//! `HTTP/0.9`) or none at all (an HTTP/0.9 `GET /path`) is [`HeadError::Version`], answered
//! with 505. Everything else stays `httparse`'s verdict.

use std::mem::MaybeUninit;

use httparse::Header;

use super::status::Status;

/// Most header fields the fast path takes (its array is initialised per request, so it is
/// kept small); a head with more goes to `httparse`.
pub(crate) const FAST_HEADERS: usize = 16;

/// Longest method the fast path takes.
const MAX_METHOD: usize = 16;

/// A parsed request head, whichever parser read it.
#[derive(Debug)]
pub(crate) struct Head<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    /// The minor version: 0 or 1.
    pub version: u8,
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, final CRLF included.
    pub len: usize,
}

/// Why a request head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Outside the HTTP/1.1 grammar (`httparse`'s error): 400.
    Syntax(httparse::Error),
    /// More header fields than the limit: 431.
    TooManyHeaders,
    /// A well-formed request line of an HTTP version other than 1.x: 505.
    Version,
}

impl From<httparse::Error> for HeadError {
    fn from(e: httparse::Error) -> HeadError {
        match e {
            httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
            e => HeadError::Syntax(e),
        }
    }
}

impl HeadError {
    /// The status a request with this head is refused with.
    pub(crate) fn status(self) -> Status {
        match self {
            HeadError::Syntax(_) => Status::BAD_REQUEST,
            HeadError::TooManyHeaders => Status::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Version => Status::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete, the `httparse`
/// error if it is malformed or has more than `slow.len()` headers. `text` is valid UTF-8 read
/// from the same bytes as `buf` (either may be the longer): the fast path reads it, and fills
/// `fast`; `httparse` reads `buf`, and fills `slow`.
#[inline]
pub(crate) fn parse_head<'h, 'b>(
    buf: &'b [u8],
    text: &'b str,
    fast: &'h mut [Header<'b>; FAST_HEADERS],
    slow: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<Head<'h, 'b>>, httparse::Error> {
    let cap = slow.len().min(FAST_HEADERS);
    match fast_head(text, buf.len(), &mut fast[..cap]) {
        Some(head) => Ok(Some(head)),
        None => httparse_head(buf, slow),
    }
}

/// Most header fields [`HttpServer::max_headers`](super::HttpServer::max_headers) allows.
pub(crate) const HEADERS_CAP: usize = 256;

/// Header slots for [`parse_head`]: a few initialised ones for the fast path, and
/// [`HEADERS_CAP`] uninitialised ones for `httparse` (zeroing those per request would cost
/// more than parsing). Lives on the stack of the caller.
pub(crate) struct Slots<'b> {
    fast: [Header<'b>; FAST_HEADERS],
    slow: [MaybeUninit<Header<'b>>; HEADERS_CAP],
    /// Slots for a head [`other_version`] reads (rare: allocated only then).
    other: Vec<Header<'b>>,
}

impl<'b> Slots<'b> {
    #[inline(always)]
    pub(crate) fn new() -> Slots<'b> {
        Slots {
            fast: [httparse::EMPTY_HEADER; FAST_HEADERS],
            slow: [const { MaybeUninit::uninit() }; HEADERS_CAP],
            other: Vec::new(),
        }
    }

    /// The head at the start of `buf` with `max_headers` (1..=[`HEADERS_CAP`]) header
    /// slots: [`parse_head`], then [`other_version`] for a line `httparse` refused for its
    /// version.
    #[inline(always)]
    pub(crate) fn parse<'h>(
        &'h mut self,
        buf: &'b [u8],
        text: &'b str,
        max_headers: usize,
    ) -> Result<Option<Head<'h, 'b>>, HeadError> {
        let Slots { fast, slow, other } = self;
        match parse_head(buf, text, fast, &mut slow[..max_headers]) {
            Ok(head) => Ok(head),
            Err(e @ (httparse::Error::Version | httparse::Error::Token)) => {
                other_version(buf, other, max_headers, e)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A head `httparse` refused with `err` (a version or token error): read its request line
/// again for a version `httparse` does not know (see the module documentation). `Ok` for
/// `HTTP/1.2`..`HTTP/1.9` (the head parsed as HTTP/1.1, its headers by `httparse` into
/// `slots`), [`HeadError::Version`] for another version, `Ok(None)` while the version is
/// still arriving, and `err` itself for any other line.
pub(crate) fn other_version<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut Vec<Header<'b>>,
    max_headers: usize,
    err: httparse::Error,
) -> Result<Option<Head<'h, 'b>>, HeadError> {
    let refused = Err(HeadError::Syntax(err));
    // Leading empty lines, as `httparse` skips them.
    let mut at = 0;
    while let Some(n) = [&b"\r\n"[..], b"\n"]
        .into_iter()
        .find(|eol| buf[at..].starts_with(eol))
    {
        at += n.len();
    }
    let line = &buf[at..];
    let Some((method, target, t_end)) = method_and_target(line) else {
        return refused;
    };
    match line.get(t_end) {
        // HTTP/0.9: no version at all.
        Some(b'\r' | b'\n') if !target.is_empty() => return Err(HeadError::Version),
        Some(b' ') if !target.is_empty() => {}
        _ => return refused,
    }
    let v = t_end + 1;
    let Some(version_len) = version_line_len(&line[v..], err)? else {
        return Ok(None);
    };
    let line_len = at + v + version_len;
    slots.clear();
    slots.resize(max_headers, httparse::EMPTY_HEADER);
    match httparse::parse_headers(&buf[line_len..], slots)? {
        httparse::Status::Complete((n, headers)) => Ok(Some(Head {
            method,
            target,
            version: 1,
            headers,
            len: line_len + n,
        })),
        httparse::Status::Partial => Ok(None),
    }
}

/// The method and target at the start of a request line, as `httparse` reads them (a token,
/// a space, then target bytes), and where the target ends; `None` if the line does not start
/// so, or they are not UTF-8.
fn method_and_target(line: &[u8]) -> Option<(&str, &str, usize)> {
    let m = line
        .iter()
        .position(|&b| !is_tchar(b))
        .unwrap_or(line.len());
    if m == 0 || line.get(m) != Some(&b' ') {
        return None;
    }
    let t = m + 1;
    let t_end = t + line[t..]
        .iter()
        .position(|&b| !is_target_byte(b))
        .unwrap_or(line.len() - t);
    let method = std::str::from_utf8(&line[..m]).ok()?;
    let target = std::str::from_utf8(&line[t..t_end]).ok()?;
    Some((method, target, t_end))
}

/// The bytes of `version` (what follows the target's space) up to and including its line end:
/// `"HTTP/" DIGIT [ "." DIGIT ]` then CRLF or LF, for `HTTP/1.2` to `HTTP/1.9`.
/// [`HeadError::Version`] for another major version, `Ok(None)` while it is still arriving,
/// and `err` itself for anything else.
fn version_line_len(version: &[u8], err: httparse::Error) -> Result<Option<usize>, HeadError> {
    let refused = Err(HeadError::Syntax(err));
    let Some(digits) = version.strip_prefix(b"HTTP/") else {
        return if b"HTTP/".starts_with(version) {
            Ok(None)
        } else {
            refused
        };
    };
    let (major, minor, end) = match *digits {
        [] | [b'0'..=b'9'] | [b'0'..=b'9', b'.'] => return Ok(None),
        [major @ b'0'..=b'9', b'.', minor @ b'0'..=b'9', ref end @ ..] => (major, Some(minor), end),
        [major @ b'0'..=b'9', ref end @ ..] if !end.starts_with(b".") => (major, None, end),
        _ => return refused,
    };
    let eol = match end {
        [] => return Ok(None),
        // Another major version: refused at the end of its line, whatever follows.
        [b'\r' | b'\n', ..] if major != b'1' => return Err(HeadError::Version),
        // "HTTP/1" without a minor version (1.0 and 1.1 are httparse's).
        _ if !matches!(minor, Some(b'2'..=b'9')) => return refused,
        [b'\r'] => return Ok(None),
        [b'\r', b'\n', ..] => 2,
        [b'\n', ..] => 1,
        _ => return refused,
    };
    Ok(Some(version.len() - end.len() + eol))
}

/// A byte `httparse` takes in a request target.
fn is_target_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

/// `httparse` alone, on `slow.len()` header slots.
pub(crate) fn httparse_head<'h, 'b>(
    buf: &'b [u8],
    slow: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<Head<'h, 'b>>, httparse::Error> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slow)? {
        httparse::Status::Complete(len) => Ok(Some(Head {
            method: req.method.unwrap_or(""),
            target: req.path.unwrap_or(""),
            version: req.version.unwrap_or(u8::MAX),
            headers: req.headers,
            len,
        })),
        httparse::Status::Partial => Ok(None),
    }
}

/// The fast path: the head at the start of `text` if it is complete within `max_len` bytes,
/// within the grammar above and has at most `slots.len()` headers; `None` otherwise
/// (including "incomplete"). Reading a `str` already validated spares a `str::from_utf8` per
/// name: on short slices it costs about ten instructions a byte.
pub(crate) fn fast_head<'h, 'b>(
    text: &'b str,
    max_len: usize,
    slots: &'h mut [Header<'b>],
) -> Option<Head<'h, 'b>> {
    let (method, target, version, mut rest) = request_line(text)?;
    let mut n = 0;
    loop {
        let b = rest.as_bytes();
        if *b.first()? == b'\r' {
            if *b.get(1)? != b'\n' {
                return None;
            }
            rest = skip(rest, 2)?;
            break;
        }
        let (field, after) = header_field(rest)?;
        *slots.get_mut(n)? = field;
        n += 1;
        rest = after;
    }
    let len = text.len() - rest.len();
    if len > max_len {
        return None;
    }
    let slots: &'h [Header<'b>] = slots;
    Some(Head {
        method,
        target,
        version,
        headers: &slots[..n],
        len,
    })
}

/// The fast path's request line at the start of `text`: method, target, minor version, and
/// the text after the line's CRLF. (Inlined, like [`header_field`]: they are parts of one
/// hot loop, cut apart to be read.)
#[inline(always)]
fn request_line(text: &str) -> Option<(&str, &str, u8, &str)> {
    let buf = text.as_bytes();
    // Method: "GET " is by far the most common.
    let m = if buf.starts_with(b"GET ") {
        3
    } else {
        let m = buf
            .iter()
            .take(MAX_METHOD + 1)
            .position(|&b| !is_tchar(b))?;
        if m == 0 || buf[m] != b' ' {
            return None;
        }
        m
    };
    // The `str`s are cut with `split_at_checked`, which the compiler inlines (`str::get` with
    // a range it calls out of line); every cut is at an ASCII byte.
    let (method, rest) = text.split_at_checked(m)?;
    let rest = skip(rest, 1)?;

    let t = run(rest.as_bytes(), 0x21);
    if t == 0 || rest.as_bytes().get(t) != Some(&b' ') {
        return None;
    }
    let (target, rest) = rest.split_at_checked(t)?;

    // " HTTP/1.x\r\n"
    let b = rest.as_bytes();
    let version = match u64::from_le_bytes(b.get(1..9)?.try_into().ok()?) {
        HTTP_11 => 1,
        HTTP_10 => 0,
        _ => return None,
    };
    if u16::from_le_bytes(b.get(9..11)?.try_into().ok()?) != CRLF {
        return None;
    }
    Some((method, target, version, skip(rest, 11)?))
}

/// One header field line at the start of `rest` (not the empty line ending the head): the
/// field, its value trimmed of white space, and the text after the line's CRLF.
#[inline(always)]
fn header_field(rest: &str) -> Option<(Header<'_>, &str)> {
    let b = rest.as_bytes();
    // Name, then the colon right after it.
    let name_len = b.iter().position(|&c| !is_tchar(c))?;
    if name_len == 0 || b[name_len] != b':' {
        return None;
    }
    let (name, line) = rest.split_at_checked(name_len)?;
    let b = line.as_bytes();
    // Leading OWS.
    let mut i = 1;
    while matches!(*b.get(i)?, b' ' | b'\t') {
        i += 1;
    }
    // Value up to CR: printable ASCII and tabs.
    let vs = i;
    loop {
        i += run(&b[i..], 0x20);
        match *b.get(i)? {
            b'\t' => i += 1,
            b'\r' => break,
            _ => return None,
        }
    }
    if *b.get(i + 1)? != b'\n' {
        return None;
    }
    // Trailing OWS.
    let mut ve = i;
    while ve > vs && matches!(b[ve - 1], b' ' | b'\t') {
        ve -= 1;
    }
    let field = Header {
        name,
        value: &b[vs..ve],
    };
    Some((field, skip(line, i + 2)?))
}

const HTTP_11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP_10: u64 = u64::from_le_bytes(*b"HTTP/1.0");
const CRLF: u16 = u16::from_le_bytes(*b"\r\n");

/// `s` without its first `n` bytes.
#[inline(always)]
fn skip(s: &str, n: usize) -> Option<&str> {
    Some(s.split_at_checked(n)?.1)
}

/// The longest prefix of `bytes` that is valid UTF-8.
pub(crate) fn utf8_prefix(bytes: &[u8]) -> (&str, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s, false),
        Err(e) => (
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
            e.error_len().is_some(),
        ),
    }
}

/// Validated text over a connection's input, so that the fast path can hand out `&str`s
/// without validating each (`str::from_utf8` costs about ten instructions a byte on short
/// slices, well under one on long ones). A window of up to `2 * max_head` bytes is validated
/// from the start of a request and serves the requests after it until one may run past it;
/// every byte is validated at most about twice.
pub(crate) struct Text<'b> {
    input: &'b [u8],
    /// `text` is `input[start..start + text.len()]`.
    start: usize,
    text: &'b str,
    /// `text` ends at a byte that is not UTF-8, or at the end of the input: it cannot grow.
    stuck: bool,
}

impl<'b> Text<'b> {
    pub(crate) fn new(input: &'b [u8]) -> Text<'b> {
        Text {
            input,
            start: 0,
            text: "",
            stuck: false,
        }
    }

    /// The validated text from `pos` on: at least `max_head` bytes, unless the input or its
    /// valid UTF-8 ends first.
    #[inline]
    pub(crate) fn at(&mut self, pos: usize, max_head: usize) -> &'b str {
        let end = self.start + self.text.len();
        if pos > end || (!self.stuck && end - pos < max_head) {
            let stop = self
                .input
                .len()
                .min(pos.saturating_add(max_head.saturating_mul(2)));
            let (text, bad) = utf8_prefix(&self.input[pos..stop]);
            self.start = pos;
            self.text = text;
            self.stuck = bad || stop == self.input.len();
        }
        // Not a character boundary: a byte the fast path would refuse anyway.
        self.text.get(pos - self.start..).unwrap_or("")
    }
}

static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    t
};

/// Whether `b` is a `tchar` (RFC 9110 section 5.6.2).
#[inline(always)]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Length of the run of bytes in `lo..=0x7E` at the start of `bytes`, eight at a time.
///
/// In a word of eight bytes (the first one lowest), `w - lo` sets the top bit of the first byte
/// below `lo`, `w + 1` that of the first above 0x7E, `w` that of the first of 0x80 and above;
/// borrows and carries only ever start at such a byte and move up, so the lowest flagged byte
/// is exactly the first one out of range.
#[inline(always)]
fn run(bytes: &[u8], lo: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let bad = (w.wrapping_sub(ONES * u64::from(lo)) | w.wrapping_add(ONES) | w) & HIGH;
        if bad != 0 {
            return i + (bad.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && (lo..=0x7E).contains(&bytes[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
