//! `Transfer-Encoding: chunked` (RFC 9112 section 7.1), decoded incrementally.
//!
//! [`ChunkDecoder`] is the state machine: fed whatever bytes have arrived, it reads the framing
//! and hands out the chunk data it finds as slices of its input, so a body can be consumed as
//! it arrives, in pieces of any size, without a copy. It enforces the grammar to the letter:
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )   ; ext-val: token / quoted-string
//! trailer-section = *( field-name ":" OWS field-value OWS CRLF )
//! ```
//!
//! so white space after a chunk size (or an extension) with nothing after it, a bare LF, a
//! control byte in an extension, or a trailer name that is not a token are refused, as is a
//! body whose extensions or trailers pass [`MAX_METADATA`] bytes.
//!
//! [`Chunked`] wraps the decoder for a body that stays in the connection's input until it is
//! complete: it remembers how far into the encoded body it has read, so each new read costs
//! only its own bytes, however the body is cut. It runs twice per chunked request: once to
//! validate and find the end while the body arrives (input stays unconsumed, so the
//! connection's read timeout still covers a stalled upload), then once more over the complete
//! body to copy the data into the loop's body buffer ([`decode`]). Extensions and trailer
//! fields are validated and dropped.

use super::fast::is_tchar;
use super::status::Status;

/// Most bytes of chunk extensions, and separately of trailer fields, one body may carry.
pub(crate) const MAX_METADATA: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Reading hex digits.
    Size,
    /// White space before a `;` (after the size or an extension value).
    ExtSemi,
    /// After `;`: white space, then an extension name.
    ExtNameStart,
    /// Reading an extension name.
    ExtName,
    /// White space after an extension name: `=` or `;` must follow.
    ExtNameEnd,
    /// After `=`: white space, then a token or a quoted string.
    ExtValueStart,
    /// Reading a token value.
    ExtToken,
    /// Inside a quoted value.
    ExtQuoted,
    /// After a backslash in a quoted value.
    ExtEscape,
    /// After the closing quote.
    ExtQuotedEnd,
    /// CR seen after the size line; expecting LF.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Reading a trailer field name.
    TrailerName,
    /// Reading a trailer field value.
    TrailerValue,
    /// CR seen after a trailer field; expecting LF.
    TrailerLf,
    /// CR seen on the final empty line; expecting LF.
    FinalLf,
    /// The body is complete.
    Done,
}

impl St {
    /// Whether a byte read in this state is part of an extension (counted against
    /// [`MAX_METADATA`]).
    fn in_extension(self) -> bool {
        matches!(
            self,
            St::ExtSemi
                | St::ExtNameStart
                | St::ExtName
                | St::ExtNameEnd
                | St::ExtValueStart
                | St::ExtToken
                | St::ExtQuoted
                | St::ExtEscape
                | St::ExtQuotedEnd
        )
    }

    /// Whether a byte read in this state is part of a trailer field.
    fn in_trailer(self) -> bool {
        matches!(
            self,
            St::TrailerStart | St::TrailerName | St::TrailerValue | St::TrailerLf
        )
    }
}

/// What one call to [`ChunkDecoder::decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decoded<'a> {
    /// Bytes of the input read (framing and `data`).
    pub consumed: usize,
    /// Chunk data: a slice of the input, possibly empty.
    pub data: &'a [u8],
    /// The body is complete (its final CRLF was the last byte consumed).
    pub done: bool,
}

/// The chunked-body state machine, fed from wherever the encoded bytes are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkDecoder {
    st: St,
    /// Size of the current chunk (while reading its size), then the data still to read.
    size: usize,
    /// Decoded bytes so far, counting the current chunk in full once its size is known.
    decoded: usize,
    /// Extension bytes, then trailer bytes, read so far (each bounded by [`MAX_METADATA`]).
    ext: u16,
    trailer: u16,
}

impl ChunkDecoder {
    pub(crate) fn new() -> ChunkDecoder {
        ChunkDecoder {
            st: St::SizeStart,
            size: 0,
            decoded: 0,
            ext: 0,
            trailer: 0,
        }
    }

    /// Reads `input` (the encoded bytes that follow the ones consumed before) up to the end
    /// of the next run of chunk data, or the end of the body, or the end of `input`; the
    /// data is handed out uncopied. A caller that wants every byte calls again with the
    /// input after `consumed` until `done`, or until nothing more is consumed (more bytes
    /// are needed). A body that would decode to more than `max_body` bytes is refused with
    /// 413, bad framing with 400, too many extension bytes with 400 and too many trailer
    /// bytes with 431. After `done`, nothing more is consumed.
    pub(crate) fn decode<'a>(
        &mut self,
        input: &'a [u8],
        max_body: usize,
    ) -> Result<Decoded<'a>, Status> {
        self.run(input, max_body, None)
    }

    /// [`decode`](ChunkDecoder::decode), also appending the bytes of the trailer section read
    /// to `trailers` (at most [`MAX_METADATA`] of them; see [`trailer_fields`]).
    pub(crate) fn decode_keeping_trailers<'a>(
        &mut self,
        input: &'a [u8],
        max_body: usize,
        trailers: &mut Vec<u8>,
    ) -> Result<Decoded<'a>, Status> {
        self.run(input, max_body, Some(trailers))
    }

    fn run<'a>(
        &mut self,
        input: &'a [u8],
        max_body: usize,
        mut trailers: Option<&mut Vec<u8>>,
    ) -> Result<Decoded<'a>, Status> {
        let mut i = 0;
        while i < input.len() {
            match self.st {
                St::Done => break,
                St::Data => {
                    let take = self.size.min(input.len() - i);
                    self.size -= take;
                    if self.size == 0 {
                        self.st = St::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + take,
                        data: &input[i..i + take],
                        done: false,
                    });
                }
                st => {
                    if let Some(t) = trailers.as_deref_mut().filter(|_| st.in_trailer()) {
                        t.push(input[i]);
                    }
                    self.framing_byte(input[i], max_body)?;
                    i += 1;
                }
            }
        }
        Ok(Decoded {
            consumed: i,
            data: &[],
            done: self.st == St::Done,
        })
    }

    /// One byte of the framing (anything but chunk data).
    fn framing_byte(&mut self, b: u8, max_body: usize) -> Result<(), Status> {
        self.count_metadata()?;
        let next = match self.st {
            St::SizeStart | St::Size if hex(b).is_some() => {
                self.size_digit(hex(b).unwrap_or(0), max_body)?;
                Some(St::Size)
            }
            St::SizeLf if b == b'\n' => {
                self.decoded += self.size;
                Some(if self.size == 0 {
                    St::TrailerStart
                } else {
                    St::Data
                })
            }
            St::DataCr if b == b'\r' => Some(St::DataLf),
            St::DataLf if b == b'\n' => {
                self.size = 0;
                Some(St::SizeStart)
            }
            st @ (St::Size | St::ExtToken | St::ExtQuotedEnd) => after_size_or_value(st, b),
            st if st.in_extension() => extension_next(st, b),
            st @ (St::TrailerStart | St::TrailerName | St::TrailerValue) => trailer_next(st, b),
            St::TrailerLf if b == b'\n' => Some(St::TrailerStart),
            St::FinalLf if b == b'\n' => Some(St::Done),
            _ => None,
        };
        self.st = next.ok_or(Status::BAD_REQUEST)?;
        Ok(())
    }

    /// Counts a byte of an extension or a trailer field against [`MAX_METADATA`].
    #[inline(always)]
    fn count_metadata(&mut self) -> Result<(), Status> {
        if self.st.in_extension() {
            self.ext += 1;
            if usize::from(self.ext) > MAX_METADATA {
                return Err(Status::BAD_REQUEST);
            }
        } else if self.st.in_trailer() {
            self.trailer += 1;
            if usize::from(self.trailer) > MAX_METADATA {
                return Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
        }
        Ok(())
    }

    /// One more hex digit of the chunk size: the chunk must still fit in the body's limit.
    #[inline(always)]
    fn size_digit(&mut self, d: usize, max_body: usize) -> Result<(), Status> {
        self.size = match self.size.checked_mul(16).and_then(|s| s.checked_add(d)) {
            Some(s) if s <= max_body.saturating_sub(self.decoded) => s,
            _ => return Err(Status::CONTENT_TOO_LARGE),
        };
        Ok(())
    }
}

/// The state after `b`, which follows the chunk size (not a hex digit) or an extension's
/// value: the end of the size line, another extension, or more of a token value; `None` if
/// the byte is refused. (This and the next two are parts of one per-byte match, inlined.)
#[inline(always)]
fn after_size_or_value(st: St, b: u8) -> Option<St> {
    Some(match b {
        b'\r' => St::SizeLf,
        b';' => St::ExtNameStart,
        b' ' | b'\t' => St::ExtSemi,
        _ if st == St::ExtToken && is_tchar(b) => St::ExtToken,
        _ => return None,
    })
}

/// The state after `b` inside a chunk extension (`st` is one of the extension states but a
/// token value or the end of a quoted one); `None` if the byte is refused.
#[inline(always)]
fn extension_next(st: St, b: u8) -> Option<St> {
    let ws = b == b' ' || b == b'\t';
    Some(match st {
        // White space may come before a `;`, never before the end of the line.
        St::ExtSemi => match b {
            b';' => St::ExtNameStart,
            _ if ws => St::ExtSemi,
            _ => return None,
        },
        St::ExtNameStart => match b {
            _ if ws => St::ExtNameStart,
            _ if is_tchar(b) => St::ExtName,
            _ => return None,
        },
        St::ExtName | St::ExtNameEnd => match b {
            b'=' => St::ExtValueStart,
            b';' => St::ExtNameStart,
            b'\r' if st == St::ExtName => St::SizeLf,
            _ if ws => St::ExtNameEnd,
            _ if st == St::ExtName && is_tchar(b) => St::ExtName,
            _ => return None,
        },
        St::ExtValueStart => match b {
            b'"' => St::ExtQuoted,
            _ if ws => St::ExtValueStart,
            _ if is_tchar(b) => St::ExtToken,
            _ => return None,
        },
        St::ExtQuoted => match b {
            b'"' => St::ExtQuotedEnd,
            b'\\' => St::ExtEscape,
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::ExtQuoted,
            _ => return None,
        },
        St::ExtEscape => match b {
            b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::ExtQuoted,
            _ => return None,
        },
        _ => return None,
    })
}

/// The state after `b` on a trailer line: a field's name, then its value, or the final
/// empty line; `None` if the byte is refused.
#[inline(always)]
fn trailer_next(st: St, b: u8) -> Option<St> {
    Some(match (st, b) {
        (St::TrailerStart, b'\r') => St::FinalLf,
        (St::TrailerStart | St::TrailerName, _) if is_tchar(b) => St::TrailerName,
        (St::TrailerName, b':') => St::TrailerValue,
        (St::TrailerValue, b'\r') => St::TrailerLf,
        (St::TrailerValue, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff) => St::TrailerValue,
        _ => return None,
    })
}

/// Resumable scanner over a chunked body that stays in place while it arrives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunked {
    decoder: ChunkDecoder,
    /// Bytes of the encoded body already scanned.
    pos: usize,
}

/// Outcome of scanning what has arrived of a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The body ends after this many encoded bytes.
    Done(usize),
    /// More bytes are needed.
    More,
}

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked {
            decoder: ChunkDecoder::new(),
            pos: 0,
        }
    }

    /// Encoded bytes scanned so far.
    pub(crate) fn scanned(&self) -> usize {
        self.pos
    }

    /// Continues over `encoded` (the whole body received so far, of which the first
    /// [`scanned`](Chunked::scanned) bytes were seen before). Data bytes go to `out` if given.
    /// Errors are [`ChunkDecoder::decode`]'s.
    pub(crate) fn scan(
        &mut self,
        encoded: &[u8],
        max_body: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Scan, Status> {
        loop {
            let d = self.decoder.decode(&encoded[self.pos..], max_body)?;
            self.pos += d.consumed;
            if let Some(o) = out.as_deref_mut() {
                o.extend_from_slice(d.data);
            }
            if d.done {
                return Ok(Scan::Done(self.pos));
            }
            if self.pos == encoded.len() {
                return Ok(Scan::More);
            }
        }
    }
}

/// The fields of a trailer section kept by
/// [`decode_keeping_trailers`](ChunkDecoder::decode_keeping_trailers) (already validated:
/// `name:value` lines, each ending in CRLF, then the CR of the final empty line), as
/// `(name, value)` with the value's surrounding white space trimmed.
pub(crate) fn trailer_fields(kept: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    kept.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?;
        Some((name, super::request::trim(&line[colon + 1..])))
    })
}

fn hex(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(usize::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Decodes a complete chunked body (already validated by a scan) into `out`.
pub(crate) fn decode(encoded: &[u8], max_body: usize, out: &mut Vec<u8>) -> Result<usize, Status> {
    let mut c = Chunked::new();
    match c.scan(encoded, max_body, Some(out))? {
        Scan::Done(n) => Ok(n),
        Scan::More => Err(Status::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests;
