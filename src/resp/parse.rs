//! The RESP2 parser: commands (arrays of bulk strings, or inline lines) and general values,
//! borrowed from the input, incremental (an incomplete frame consumes nothing), with limits.

use std::fmt;
use std::ops::Range;

/// Longest `*<n>` or `$<n>` line accepted, CRLF included (a sign, 19 digits, CRLF, slack).
const LEN_LINE_MAX: usize = 24;

/// Limits and entry points of the parser.
///
/// ```
/// use eventide::resp::{Args, Parse, Parser};
///
/// let parser = Parser::new();
/// let mut args = Args::new();
/// let input = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n*1\r\n$4\r\nPI";
/// let Parse::Done(cmd, used) = parser.parse_command(input, &mut args)? else { unreachable!() };
/// assert!(cmd.is(b"get"));
/// assert_eq!(cmd.arg(1), Some(&b"key"[..]));
/// assert_eq!(used, 22);
/// // The second command is incomplete: nothing is consumed, and a lower bound of the bytes
/// // needed is given.
/// assert!(matches!(parser.parse_command(&input[used..], &mut args)?, Parse::Incomplete(_)));
/// # Ok::<(), eventide::resp::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Parser {
    max_elements: usize,
    max_bulk: usize,
    max_inline: usize,
    max_command: usize,
    max_depth: usize,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new()
    }
}

/// The outcome of a parse that did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<T> {
    /// A complete frame, and the number of input bytes it took.
    Done(T, usize),
    /// The frame is incomplete: at least this many input bytes (in all, counted from the
    /// start of the input given) are needed before it can complete.
    Incomplete(usize),
}

/// A protocol error. The connection cannot be resynchronised after one: answer with
/// [`Writer::protocol_error`](super::Writer::protocol_error) and close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    msg: &'static str,
    byte: Option<u8>,
}

impl Error {
    fn new(msg: &'static str) -> Error {
        Error { msg, byte: None }
    }

    fn unexpected(msg: &'static str, byte: u8) -> Error {
        Error {
            msg,
            byte: Some(byte),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.byte {
            Some(b) if b.is_ascii_graphic() => write!(f, "{}, got '{}'", self.msg, b as char),
            Some(b) => write!(f, "{}, got byte 0x{b:02x}", self.msg),
            None => f.write_str(self.msg),
        }
    }
}

impl std::error::Error for Error {}

/// A command: its arguments, borrowed from the input. The first argument is the name.
#[derive(Clone, Copy)]
pub struct Command<'a> {
    input: &'a [u8],
    args: &'a [Range<usize>],
}

impl<'a> Command<'a> {
    /// Number of arguments, the name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether there are no arguments (an empty inline line, or `*0`); servers skip these.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `i` (0 is the command name).
    pub fn arg(&self, i: usize) -> Option<&'a [u8]> {
        self.args.get(i).map(|r| &self.input[r.clone()])
    }

    /// The command name (empty for an empty command).
    pub fn name(&self) -> &'a [u8] {
        self.arg(0).unwrap_or(b"")
    }

    /// Whether the name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &[u8]) -> bool {
        self.name().eq_ignore_ascii_case(name)
    }

    /// Every argument, the name first.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let input = self.input;
        self.args.iter().map(move |r| &input[r.clone()])
    }
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.args().map(String::from_utf8_lossy))
            .finish()
    }
}

/// Where the arguments of a parsed [`Command`] are: their positions, and the bytes of the
/// inline arguments that quoting changed. Kept by the caller and reused from command to
/// command, so parsing allocates nothing once it has grown.
#[derive(Clone, Debug, Default)]
pub struct Args {
    ranges: Vec<Range<usize>>,
    /// The arguments of a quoted inline command, unescaped (its ranges point here).
    unquoted: Vec<u8>,
}

impl Args {
    /// Empty storage.
    pub fn new() -> Args {
        Args::default()
    }
}

/// A RESP2 value, borrowed from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// `+OK`
    Simple(&'a [u8]),
    /// `-ERR message`
    Error(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(&'a [u8]),
    /// `$-1`: the null bulk string.
    Nil,
    /// `*2\r\n...`
    Array(Vec<Value<'a>>),
    /// `*-1`: the null array.
    NilArray,
}

/// Result of reading one line: its content and where the next byte is.
enum Line<'a> {
    Done(&'a [u8], usize),
    Incomplete,
}

impl Parser {
    /// A parser with Redis-like limits: 1,048,576 elements per array, 512 KiB per bulk string,
    /// 64 KiB per inline command, 1 MiB per command (keep it within the server's inbound
    /// limit), 32 levels of nested arrays.
    pub const fn new() -> Parser {
        Parser {
            max_elements: 1024 * 1024,
            max_bulk: 512 * 1024,
            max_inline: 64 * 1024,
            max_command: 1024 * 1024,
            max_depth: 32,
        }
    }

    /// Most elements in one array.
    pub const fn max_elements(mut self, n: usize) -> Parser {
        self.max_elements = n;
        self
    }

    /// Largest bulk string, in bytes.
    pub const fn max_bulk_size(mut self, bytes: usize) -> Parser {
        self.max_bulk = bytes;
        self
    }

    /// Longest inline command line, in bytes.
    pub const fn max_inline_size(mut self, bytes: usize) -> Parser {
        self.max_inline = bytes;
        self
    }

    /// Largest command (or value), in bytes of input: a connection never buffers more than
    /// this for one incomplete frame.
    pub const fn max_command_size(mut self, bytes: usize) -> Parser {
        self.max_command = bytes;
        self
    }

    /// Deepest nesting of arrays in [`parse_value`](Parser::parse_value).
    pub const fn max_depth(mut self, n: usize) -> Parser {
        self.max_depth = n;
        self
    }

    /// The configured largest command size.
    pub const fn command_size_limit(&self) -> usize {
        self.max_command
    }

    /// Parses one command from the front of `input`: an array of bulk strings, or an inline
    /// line, split into arguments as `redis-server` splits it (blanks between arguments;
    /// `"double quotes"` with the escapes `\n \r \t \b \a \xHH` and `\"`; `'single
    /// quotes'` with `\'`; a closing quote must end its argument; unbalanced quotes are an
    /// error). The arguments' positions go into `args`, cleared first.
    pub fn parse_command<'a>(
        &self,
        input: &'a [u8],
        args: &'a mut Args,
    ) -> Result<Parse<Command<'a>>, Error> {
        let Args { ranges, unquoted } = args;
        ranges.clear();
        let (parsed, from) = if input.first() == Some(&b'*') {
            (self.multibulk(input, ranges)?, input)
        } else {
            match self.inline(input, ranges, unquoted)? {
                Some((used, false)) => (Ok(used), input),
                Some((used, true)) => (Ok(used), &unquoted[..]),
                None => (Err(input.len() + 1), input),
            }
        };
        Ok(match parsed {
            Ok(used) => Parse::Done(
                Command {
                    input: from,
                    args: ranges,
                },
                used,
            ),
            Err(need) => {
                ranges.clear();
                Parse::Incomplete(self.need(input, need)?)
            }
        })
    }

    /// After an incomplete parse that needs at least `need` bytes: that bound, or an error if
    /// the frame is already known to be too large.
    fn need(&self, input: &[u8], need: usize) -> Result<usize, Error> {
        if input.len() >= self.max_command || need > self.max_command {
            return Err(Error::new("command too large"));
        }
        Ok(need.max(input.len() + 1))
    }

    /// `*<n>\r\n` then n bulk strings: `Ok(used)`, or `Err(need)` if incomplete (at least
    /// `need` bytes in all are needed).
    fn multibulk(
        &self,
        input: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<Result<usize, usize>, Error> {
        let more = Err(input.len() + 1);
        let (n, mut pos) = match quick_len(input, 1) {
            Some(found) => found,
            None => match len_line(input, 1, "invalid multibulk length")? {
                Line::Done(digits, next) => (parse_int(digits, "invalid multibulk length")?, next),
                Line::Incomplete => return Ok(more),
            },
        };
        if n > self.max_elements as i64 {
            return Err(Error::new("invalid multibulk length"));
        }
        for _ in 0..n.max(0) {
            let Some(&b) = input.get(pos) else {
                return Ok(more);
            };
            if b != b'$' {
                return Err(Error::unexpected("expected '$'", b));
            }
            let (len, next) = match quick_len(input, pos + 1) {
                Some(found) => found,
                None => match len_line(input, pos + 1, "invalid bulk length")? {
                    Line::Done(digits, next) => (parse_int(digits, "invalid bulk length")?, next),
                    Line::Incomplete => return Ok(more),
                },
            };
            if len < 0 || len > self.max_bulk as i64 {
                return Err(Error::new("invalid bulk length"));
            }
            let end = next + len as usize;
            if end > self.max_command {
                return Err(Error::new("command too large"));
            }
            if input.len() < end + 2 {
                return Ok(Err(end + 2));
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(Error::new("bulk string not terminated by CRLF"));
            }
            args.push(next..end);
            pos = end + 2;
        }
        if pos > self.max_command {
            return Err(Error::new("command too large"));
        }
        Ok(Ok(pos))
    }

    /// Parses one value of any RESP2 type from the front of `input`.
    ///
    /// ```
    /// use eventide::resp::{Parse, Parser, Value};
    ///
    /// let v = Parser::new().parse_value(b"*3\r\n+OK\r\n:-7\r\n$-1\r\n")?;
    /// let expected = Value::Array(vec![Value::Simple(b"OK"), Value::Integer(-7), Value::Nil]);
    /// assert_eq!(v, Parse::Done(expected, 19));
    /// # Ok::<(), eventide::resp::Error>(())
    /// ```
    pub fn parse_value<'a>(&self, input: &'a [u8]) -> Result<Parse<Value<'a>>, Error> {
        Ok(match self.value(input, 0, 0)? {
            Some((v, used)) => Parse::Done(v, used),
            None => Parse::Incomplete(self.need(input, input.len() + 1)?),
        })
    }

    /// One value at `pos`, nested `depth` arrays deep: the value and the position after it,
    /// or `None` if it is incomplete.
    fn value<'a>(
        &self,
        input: &'a [u8],
        pos: usize,
        depth: usize,
    ) -> Result<Option<(Value<'a>, usize)>, Error> {
        let Some(&tag) = input.get(pos) else {
            return Ok(None);
        };
        let v = match tag {
            b'+' | b'-' => self.simple(input, pos, tag)?,
            b':' => match len_line(input, pos + 1, "invalid integer")? {
                Line::Done(d, next) => {
                    Some((Value::Integer(parse_int(d, "invalid integer")?), next))
                }
                Line::Incomplete => None,
            },
            b'$' => self.bulk(input, pos)?,
            b'*' => self.array(input, pos, depth)?,
            other => return Err(Error::unexpected("unknown type byte", other)),
        };
        match v {
            Some((_, end)) if end > self.max_command => Err(Error::new("value too large")),
            v => Ok(v),
        }
    }

    /// `+<line>` or `-<line>` at `pos` (the tag says which).
    fn simple<'a>(
        &self,
        input: &'a [u8],
        pos: usize,
        tag: u8,
    ) -> Result<Option<(Value<'a>, usize)>, Error> {
        let window = &input[pos + 1..input.len().min(pos + 1 + self.max_inline + 1)];
        let (s, next) = match window.iter().position(|&b| b == b'\r') {
            Some(i) if window.get(i + 1) == Some(&b'\n') => (&window[..i], pos + 1 + i + 2),
            Some(i) if i + 1 < window.len() => {
                return Err(Error::new("line not terminated by CRLF"))
            }
            Some(_) => return Ok(None),
            None if window.len() > self.max_inline => return Err(Error::new("line too long")),
            None => return Ok(None),
        };
        if s.contains(&b'\n') {
            return Err(Error::new("line not terminated by CRLF"));
        }
        let v = if tag == b'+' {
            Value::Simple(s)
        } else {
            Value::Error(s)
        };
        Ok(Some((v, next)))
    }

    /// `$<len>` and that many bytes at `pos`, or `$-1`: nil.
    fn bulk<'a>(&self, input: &'a [u8], pos: usize) -> Result<Option<(Value<'a>, usize)>, Error> {
        let (len, next) = match len_line(input, pos + 1, "invalid bulk length")? {
            Line::Done(d, next) => (parse_int(d, "invalid bulk length")?, next),
            Line::Incomplete => return Ok(None),
        };
        if len == -1 {
            return Ok(Some((Value::Nil, next)));
        }
        if len < 0 || len > self.max_bulk as i64 {
            return Err(Error::new("invalid bulk length"));
        }
        let end = next + len as usize;
        if end > self.max_command {
            return Err(Error::new("value too large"));
        }
        if input.len() < end + 2 {
            return Ok(None);
        }
        if &input[end..end + 2] != b"\r\n" {
            return Err(Error::new("bulk string not terminated by CRLF"));
        }
        Ok(Some((Value::Bulk(&input[next..end]), end + 2)))
    }

    /// `*<n>` and n values at `pos`, the array being `depth` deep, or `*-1`: a nil array.
    fn array<'a>(
        &self,
        input: &'a [u8],
        pos: usize,
        depth: usize,
    ) -> Result<Option<(Value<'a>, usize)>, Error> {
        let (n, mut next) = match len_line(input, pos + 1, "invalid multibulk length")? {
            Line::Done(d, next) => (parse_int(d, "invalid multibulk length")?, next),
            Line::Incomplete => return Ok(None),
        };
        if n == -1 {
            return Ok(Some((Value::NilArray, next)));
        }
        if n < 0 || n > self.max_elements as i64 {
            return Err(Error::new("invalid multibulk length"));
        }
        if depth >= self.max_depth {
            return Err(Error::new("arrays nested too deeply"));
        }
        // Grown as elements arrive, never sized by the declared count.
        let mut items = Vec::new();
        for _ in 0..n {
            let Some((v, after)) = self.value(input, next, depth + 1)? else {
                return Ok(None);
            };
            items.push(v);
            next = after;
        }
        Ok(Some((Value::Array(items), next)))
    }
}

/// The common case of a length line, decided in one pass: 1 to 18 digits (no sign, so no
/// overflow) then CRLF, starting at `from`. Returns the value and the position after the
/// line, exactly as [`len_line`] and [`parse_int`] would; anything else (a sign, more digits,
/// an incomplete or malformed line) returns `None` for them to decide.
#[inline]
fn quick_len(input: &[u8], from: usize) -> Option<(i64, usize)> {
    let digits = input.get(from..)?;
    // Most lengths in commands have one or two digits.
    match *digits {
        [a @ b'0'..=b'9', b'\r', b'\n', ..] => return Some((i64::from(a - b'0'), from + 3)),
        [a @ b'0'..=b'9', b @ b'0'..=b'9', b'\r', b'\n', ..] => {
            return Some((i64::from(a - b'0') * 10 + i64::from(b - b'0'), from + 4))
        }
        _ => {}
    }
    let mut n: i64 = 0;
    let mut i = 0;
    while i < digits.len().min(18) && digits[i].is_ascii_digit() {
        n = n * 10 + i64::from(digits[i] - b'0');
        i += 1;
    }
    if i == 0 || digits.get(i..i + 2) != Some(b"\r\n") {
        return None;
    }
    Some((n, from + i + 2))
}

/// Reads the digits of a `*<n>` / `$<n>` / `:<n>` line starting at `from`.
fn len_line<'a>(input: &'a [u8], from: usize, what: &'static str) -> Result<Line<'a>, Error> {
    let window = &input[from.min(input.len())..input.len().min(from + LEN_LINE_MAX)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if i + 1 < window.len() => {
            if window[i + 1] != b'\n' {
                return Err(Error::new(what));
            }
            Ok(Line::Done(&window[..i], from + i + 2))
        }
        Some(_) => Ok(Line::Incomplete),
        None if window.len() >= LEN_LINE_MAX => Err(Error::new(what)),
        None => Ok(Line::Incomplete),
    }
}

/// A decimal integer: optional `-`, then 1 to 19 digits, within `i64`.
fn parse_int(digits: &[u8], what: &'static str) -> Result<i64, Error> {
    let (neg, d) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if d.is_empty() || d.len() > 19 {
        return Err(Error::new(what));
    }
    let mut n: i64 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return Err(Error::new(what));
        }
        // Accumulated with the final sign, so i64::MIN is reachable.
        let digit = i64::from(b - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if neg {
                    n.checked_sub(digit)
                } else {
                    n.checked_add(digit)
                }
            })
            .ok_or_else(|| Error::new(what))?;
    }
    Ok(n)
}

mod inline;

#[cfg(test)]
mod tests;
