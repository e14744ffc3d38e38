//! Inline commands: one line of text, split into arguments exactly as `redis-server` splits
//! it (`sdssplitargs`), quotes and escapes included.

use std::ops::Range;

use super::{Error, Parser};

impl Parser {
    /// An inline command: one line, split into arguments (see [`split_inline`]). `Some((used,
    /// quoted))`: the line took `used` bytes, and its arguments are in `unquoted` if `quoted`.
    pub(super) fn inline(
        &self,
        input: &[u8],
        ranges: &mut Vec<Range<usize>>,
        unquoted: &mut Vec<u8>,
    ) -> Result<Option<(usize, bool)>, Error> {
        let window = &input[..input.len().min(self.max_inline + 1)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if input.len() > self.max_inline {
                return Err(Error::new("too big inline request"));
            }
            return Ok(None);
        };
        let end = if nl > 0 && input[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let quoted = split_inline(&input[..end], ranges, unquoted)?;
        Ok(Some((nl + 1, quoted)))
    }
}

/// Splits an inline command line into arguments exactly as `redis-server` does
/// (`sdssplitargs`): the line ends at a NUL byte (it is a C string there); blanks (`isspace`)
/// separate arguments; an unquoted argument ends at a space, tab, CR or LF; quotes may start
/// anywhere in an argument and must be followed by a blank or the end of the line when they
/// close. Arguments without quotes are positions in `line` (returns `false`); a line with
/// quotes is unescaped into `unquoted` and the positions are there (returns `true`).
fn split_inline(
    line: &[u8],
    ranges: &mut Vec<Range<usize>>,
    unquoted: &mut Vec<u8>,
) -> Result<bool, Error> {
    let line = line.split(|&b| b == 0).next().unwrap_or_default();
    if !line.iter().any(|&b| b == b'"' || b == b'\'') {
        split_plain(line, ranges);
        return Ok(false);
    }
    unquoted.clear();
    let mut i = 0;
    loop {
        i = skip_blanks(line, i);
        if i == line.len() {
            return Ok(true);
        }
        let start = unquoted.len();
        i = unquote_arg(line, i, unquoted)?;
        ranges.push(start..unquoted.len());
    }
}

/// A line without quotes: each argument is a range of the line itself.
fn split_plain(line: &[u8], ranges: &mut Vec<Range<usize>>) {
    let mut i = 0;
    loop {
        i = skip_blanks(line, i);
        if i == line.len() {
            return;
        }
        let start = i;
        while i < line.len() && !ends_plain(line[i]) {
            i += 1;
        }
        ranges.push(start..i);
    }
}

/// One argument of a line with quotes, from `i` (not a blank), unescaped onto `unquoted`.
/// Returns where the next argument may start.
fn unquote_arg(line: &[u8], mut i: usize, unquoted: &mut Vec<u8>) -> Result<usize, Error> {
    while let Some(&b) = line.get(i) {
        match b {
            _ if ends_plain(b) => return Ok(i + 1),
            // A closing quote ends its argument, so a quoted part is always the last.
            b'"' => return double_quoted(line, i + 1, unquoted),
            b'\'' => return single_quoted(line, i + 1, unquoted),
            _ => unquoted.push(b),
        }
        i += 1;
    }
    Ok(i)
}

/// The rest of a `"double quoted"` part, from just after its opening quote: the escapes
/// `\n \r \t \b \a \xHH`, and `\` before any other byte is that byte. Returns the position
/// after the closing quote.
fn double_quoted(line: &[u8], mut i: usize, unquoted: &mut Vec<u8>) -> Result<usize, Error> {
    let hex = |j: usize| line.get(j).and_then(|&h| (h as char).to_digit(16));
    while let Some(&b) = line.get(i) {
        match b {
            b'\\' if line.get(i + 1) == Some(&b'x') => match (hex(i + 2), hex(i + 3)) {
                (Some(hi), Some(lo)) => {
                    unquoted.push((hi * 16 + lo) as u8);
                    i += 3;
                }
                // Without two hex digits it is an escaped `x`.
                _ => {
                    unquoted.push(b'x');
                    i += 1;
                }
            },
            b'\\' if i + 1 < line.len() => {
                i += 1;
                unquoted.push(match line[i] {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
            }
            b'"' if closes(line, i) => return Ok(i + 1),
            b'"' => return Err(unbalanced()),
            _ => unquoted.push(b),
        }
        i += 1;
    }
    Err(unbalanced())
}

/// The rest of a `'single quoted'` part, from just after its opening quote: only `\'` is an
/// escape. Returns the position after the closing quote.
fn single_quoted(line: &[u8], mut i: usize, unquoted: &mut Vec<u8>) -> Result<usize, Error> {
    while let Some(&b) = line.get(i) {
        match b {
            b'\\' if line.get(i + 1) == Some(&b'\'') => {
                i += 1;
                unquoted.push(b'\'');
            }
            b'\'' if closes(line, i) => return Ok(i + 1),
            b'\'' => return Err(unbalanced()),
            _ => unquoted.push(b),
        }
        i += 1;
    }
    Err(unbalanced())
}

/// Where the blanks from `i` end.
fn skip_blanks(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && is_blank(line[i]) {
        i += 1;
    }
    i
}

/// A blank between arguments (C's `isspace`).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A byte that ends an unquoted argument.
fn ends_plain(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A closing quote at `i` must be followed by a blank or the end of the line.
fn closes(line: &[u8], i: usize) -> bool {
    line.get(i + 1).map_or(true, |&b| is_blank(b))
}

/// A quote left open, or closed in the middle of an argument.
fn unbalanced() -> Error {
    Error::new("unbalanced quotes in request")
}
