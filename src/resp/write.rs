//! The reply writer: RESP2 values written straight into a connection's output (or a `Vec`).

use std::fmt;

use super::Value;

/// Where a [`Writer`] puts bytes: a connection's output ([`Conn`](crate::Conn)) or a
/// `Vec<u8>` — the output of every protocol adapter.
pub use crate::adapter::Output;

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
    out: Out<'o>,
}

/// Where a [`Writer`]'s bytes go.
enum Out<'o> {
    /// Straight to an [`Output`].
    Direct(&'o mut dyn Output),
    /// Into a batch buffer that the server hands to `out` once per batch of commands (so a
    /// pipeline of 16 replies costs one `Conn::write`); a large bulk string goes to `out`
    /// directly, after the batch so far, without a second copy.
    Batch {
        buf: &'o mut Vec<u8>,
        out: &'o mut dyn Output,
    },
}

/// A bulk string at least this large bypasses the batch buffer.
const DIRECT_BULK: usize = 8 * 1024;

impl<'o> Writer<'o> {
    /// A writer appending to `out`.
    pub fn new(out: &'o mut dyn Output) -> Writer<'o> {
        Writer {
            out: Out::Direct(out),
        }
    }

    /// A writer appending to the batch buffer `buf`, whose contents the caller hands to
    /// `out` later; large bulk strings go to `out` at once (after `buf`'s contents).
    pub(crate) fn batched(buf: &'o mut Vec<u8>, out: &'o mut dyn Output) -> Writer<'o> {
        Writer {
            out: Out::Batch { buf, out },
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        match &mut self.out {
            Out::Direct(out) => out.put(bytes),
            Out::Batch { buf, .. } => buf.extend_from_slice(bytes),
        }
    }

    /// `+OK`
    pub fn ok(&mut self) {
        self.put(b"+OK\r\n");
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
        self.put(b"-");
        for p in parts {
            self.clean(p);
        }
        self.put(b"\r\n");
    }

    /// The reply to a malformed frame: `-ERR Protocol error: <err>`.
    pub fn protocol_error(&mut self, err: &super::Error) {
        self.put(b"-ERR Protocol error: ");
        let mut msg = [0u8; 96];
        let mut cursor = std::io::Cursor::new(&mut msg[..]);
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{err}"));
        let n = cursor.position() as usize;
        self.clean(&msg[..n]);
        self.put(b"\r\n");
    }

    /// An integer (`:n`).
    pub fn integer(&mut self, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.put(b":");
        self.put(buf.format(n).as_bytes());
        self.put(b"\r\n");
    }

    /// A bulk string (`$len` then the bytes).
    pub fn bulk(&mut self, data: &[u8]) {
        let mut n = itoa::Buffer::new();
        let len = n.format(data.len()).as_bytes();
        match &mut self.out {
            Out::Batch { buf, out } => {
                if data.len() >= DIRECT_BULK {
                    buf.push(b'$');
                    buf.extend_from_slice(len);
                    buf.extend_from_slice(b"\r\n");
                    out.put(buf);
                    buf.clear();
                    out.put(data);
                    buf.extend_from_slice(b"\r\n");
                } else {
                    buf.reserve(data.len() + len.len() + 5);
                    buf.push(b'$');
                    buf.extend_from_slice(len);
                    buf.extend_from_slice(b"\r\n");
                    buf.extend_from_slice(data);
                    buf.extend_from_slice(b"\r\n");
                }
            }
            Out::Direct(out) => {
                out.put(b"$");
                out.put(len);
                out.put(b"\r\n");
                out.put(data);
                out.put(b"\r\n");
            }
        }
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
        self.put(b"$-1\r\n");
    }

    /// The header of an array of `len` elements; write the elements next.
    pub fn array(&mut self, len: usize) {
        let mut buf = itoa::Buffer::new();
        self.put(b"*");
        self.put(buf.format(len).as_bytes());
        self.put(b"\r\n");
    }

    /// The null array (`*-1`).
    pub fn nil_array(&mut self) {
        self.put(b"*-1\r\n");
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
        self.put(bytes);
    }

    fn line(&mut self, tag: u8, text: &[u8]) {
        self.put(&[tag]);
        self.clean(text);
        self.put(b"\r\n");
    }

    /// Writes `text` with CR and LF replaced by spaces.
    fn clean(&mut self, text: &[u8]) {
        let mut rest = text;
        while let Some(i) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.put(&rest[..i]);
            self.put(b" ");
            rest = &rest[i + 1..];
        }
        self.put(rest);
    }
}

impl fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}
