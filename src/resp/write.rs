//! The reply writer: RESP2 values written straight into a connection's output (or a `Vec`).

use std::fmt;

use super::Value;
use crate::Conn;

/// Where a [`Writer`] puts bytes: a connection's output ([`Conn`]) or a `Vec<u8>`.
pub trait Output {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
}

impl Output for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Output for Conn<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.write(bytes);
    }
}

/// Writes RESP2 replies. Each method writes one complete value, except
/// [`array`](Writer::array), which writes the header of an array whose elements follow.
///
/// ```
/// use eventide::resp::Writer;
///
/// let mut out = Vec::new();
/// let mut w = Writer::new(&mut out);
/// w.array(3);
/// w.bulk(b"a");
/// w.nil();
/// w.integer(-2);
/// w.ok();
/// w.error("ERR no such key");
/// assert_eq!(out, b"*3\r\n$1\r\na\r\n$-1\r\n:-2\r\n+OK\r\n-ERR no such key\r\n");
/// ```
pub struct Writer<'o> {
    out: &'o mut dyn Output,
}

impl<'o> Writer<'o> {
    /// A writer appending to `out`.
    pub fn new(out: &'o mut dyn Output) -> Writer<'o> {
        Writer { out }
    }

    /// `+OK`
    pub fn ok(&mut self) {
        self.out.put(b"+OK\r\n");
    }

    /// A simple string (`+text`). CR and LF, which cannot appear in one, become spaces.
    pub fn simple(&mut self, text: &str) {
        self.line(b'+', text.as_bytes());
    }

    /// An error (`-text`); by convention `text` starts with a code such as `ERR` or
    /// `WRONGTYPE`. CR and LF become spaces.
    pub fn error(&mut self, text: &str) {
        self.line(b'-', text.as_bytes());
    }

    /// An error built from parts, written without an intermediate `String`, e.g.
    /// `["ERR unknown command '", name, "'"]`.
    pub fn error_parts(&mut self, parts: &[&[u8]]) {
        self.out.put(b"-");
        for p in parts {
            self.clean(p);
        }
        self.out.put(b"\r\n");
    }

    /// The reply to a malformed frame: `-ERR Protocol error: <err>`.
    pub fn protocol_error(&mut self, err: &super::Error) {
        self.out.put(b"-ERR Protocol error: ");
        let mut msg = [0u8; 96];
        let mut cursor = std::io::Cursor::new(&mut msg[..]);
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{err}"));
        let n = cursor.position() as usize;
        self.clean(&msg[..n]);
        self.out.put(b"\r\n");
    }

    /// An integer (`:n`).
    pub fn integer(&mut self, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.out.put(b":");
        self.out.put(buf.format(n).as_bytes());
        self.out.put(b"\r\n");
    }

    /// A bulk string (`$len` then the bytes).
    pub fn bulk(&mut self, data: &[u8]) {
        let mut buf = itoa::Buffer::new();
        self.out.put(b"$");
        self.out.put(buf.format(data.len()).as_bytes());
        self.out.put(b"\r\n");
        self.out.put(data);
        self.out.put(b"\r\n");
    }

    /// A bulk string, or the null bulk string for `None`.
    pub fn bulk_or_nil(&mut self, data: Option<&[u8]>) {
        match data {
            Some(d) => self.bulk(d),
            None => self.nil(),
        }
    }

    /// The null bulk string (`$-1`).
    pub fn nil(&mut self) {
        self.out.put(b"$-1\r\n");
    }

    /// The header of an array of `len` elements; write the elements next.
    pub fn array(&mut self, len: usize) {
        let mut buf = itoa::Buffer::new();
        self.out.put(b"*");
        self.out.put(buf.format(len).as_bytes());
        self.out.put(b"\r\n");
    }

    /// The null array (`*-1`).
    pub fn nil_array(&mut self) {
        self.out.put(b"*-1\r\n");
    }

    /// Any value, arrays included.
    pub fn value(&mut self, v: &Value<'_>) {
        match v {
            Value::Simple(s) => self.line(b'+', s),
            Value::Error(s) => self.line(b'-', s),
            Value::Integer(n) => self.integer(*n),
            Value::Bulk(b) => self.bulk(b),
            Value::Nil => self.nil(),
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::NilArray => self.nil_array(),
        }
    }

    /// Raw bytes, for replies prepared elsewhere (they must be valid RESP).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.put(bytes);
    }

    fn line(&mut self, tag: u8, text: &[u8]) {
        self.out.put(&[tag]);
        self.clean(text);
        self.out.put(b"\r\n");
    }

    /// Writes `text` with CR and LF replaced by spaces.
    fn clean(&mut self, text: &[u8]) {
        let mut rest = text;
        while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.out.put(&rest[..i]);
            self.out.put(b" ");
            rest = &rest[i + 1..];
        }
        self.out.put(rest);
    }
}

impl fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}
