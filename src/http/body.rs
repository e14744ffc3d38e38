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
        let bad = Err(Status::BAD_REQUEST);
        if self.st.in_extension() {
            self.ext += 1;
            if usize::from(self.ext) > MAX_METADATA {
                return bad;
            }
        } else if self.st.in_trailer() {
            self.trailer += 1;
            if usize::from(self.trailer) > MAX_METADATA {
                return Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
        }
        let ws = b == b' ' || b == b'\t';
        self.st = match self.st {
            St::SizeStart | St::Size if hex(b).is_some() => {
                let d = hex(b).unwrap_or(0);
                self.size = match self.size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                    Some(s) if s <= max_body.saturating_sub(self.decoded) => s,
                    _ => return Err(Status::CONTENT_TOO_LARGE),
                };
                St::Size
            }
            St::SizeStart => return bad,
            St::Size | St::ExtToken | St::ExtQuotedEnd => match b {
                b'\r' => St::SizeLf,
                b';' => St::ExtNameStart,
                _ if ws => St::ExtSemi,
                _ if self.st == St::ExtToken && is_tchar(b) => St::ExtToken,
                _ => return bad,
            },
            // White space may come before a `;`, never before the end of the line.
            St::ExtSemi => match b {
                b';' => St::ExtNameStart,
                _ if ws => St::ExtSemi,
                _ => return bad,
            },
            St::ExtNameStart => match b {
                _ if ws => St::ExtNameStart,
                _ if is_tchar(b) => St::ExtName,
                _ => return bad,
            },
            St::ExtName | St::ExtNameEnd => match b {
                b'=' => St::ExtValueStart,
                b';' => St::ExtNameStart,
                b'\r' if self.st == St::ExtName => St::SizeLf,
                _ if ws => St::ExtNameEnd,
                _ if self.st == St::ExtName && is_tchar(b) => St::ExtName,
                _ => return bad,
            },
            St::ExtValueStart => match b {
                b'"' => St::ExtQuoted,
                _ if ws => St::ExtValueStart,
                _ if is_tchar(b) => St::ExtToken,
                _ => return bad,
            },
            St::ExtQuoted => match b {
                b'"' => St::ExtQuotedEnd,
                b'\\' => St::ExtEscape,
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::ExtQuoted,
                _ => return bad,
            },
            St::ExtEscape => match b {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::ExtQuoted,
                _ => return bad,
            },
            St::SizeLf if b == b'\n' => {
                self.decoded += self.size;
                if self.size == 0 {
                    St::TrailerStart
                } else {
                    St::Data
                }
            }
            St::DataCr if b == b'\r' => St::DataLf,
            St::DataLf if b == b'\n' => {
                self.size = 0;
                St::SizeStart
            }
            St::TrailerStart => match b {
                b'\r' => St::FinalLf,
                _ if is_tchar(b) => St::TrailerName,
                _ => return bad,
            },
            St::TrailerName => match b {
                b':' => St::TrailerValue,
                _ if is_tchar(b) => St::TrailerName,
                _ => return bad,
            },
            St::TrailerValue => match b {
                b'\r' => St::TrailerLf,
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => St::TrailerValue,
                _ => return bad,
            },
            St::TrailerLf if b == b'\n' => St::TrailerStart,
            St::FinalLf if b == b'\n' => St::Done,
            _ => return bad,
        };
        Ok(())
    }
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
mod tests {
    use super::*;

    const BODY: &[u8] = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Sum: 1\r\n\r\nGET";

    fn scan(b: &[u8], max: usize) -> Result<Scan, Status> {
        Chunked::new().scan(b, max, None)
    }

    #[test]
    fn decodes_whole() {
        let mut out = Vec::new();
        let n = decode(BODY, 1024, &mut out).unwrap();
        assert_eq!(out, b"hello, world");
        assert_eq!(&BODY[n..], b"GET");
    }

    #[test]
    fn resumes_at_every_split() {
        for cut in 0..BODY.len() - 3 {
            let mut c = Chunked::new();
            assert_eq!(c.scan(&BODY[..cut], 1024, None), Ok(Scan::More));
            assert_eq!(c.scan(BODY, 1024, None), Ok(Scan::Done(BODY.len() - 3)));
        }
    }

    /// The decoder fed one piece at a time (as a streaming consumer would, consuming what it
    /// is given) hands out exactly the data, as slices of its input, and stops at the end.
    #[test]
    fn hands_out_data_incrementally_at_every_cut() {
        for piece in 1..BODY.len() {
            let mut d = ChunkDecoder::new();
            let mut data = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut consumed_total = 0;
            for part in BODY.chunks(piece) {
                pending.extend_from_slice(part);
                loop {
                    let got = d.decode(&pending, 1024).unwrap();
                    data.extend_from_slice(got.data);
                    let (consumed, done) = (got.consumed, got.done);
                    pending.drain(..consumed);
                    consumed_total += consumed;
                    if done || consumed == 0 {
                        break;
                    }
                }
            }
            assert!(d.decode(&[], 1024).unwrap().done, "piece {piece}");
            assert_eq!(data, b"hello, world", "piece {piece}");
            assert_eq!(consumed_total, BODY.len() - 3);
            assert_eq!(pending, b"GET");
            // Nothing more is consumed once the body is complete.
            assert_eq!(d.decode(b"GET", 1024).unwrap().consumed, 0);
        }
    }

    /// The trailer section is kept whole however the body is cut, and read back as fields.
    #[test]
    fn keeps_trailers_at_every_cut() {
        let body = b"3;x=1\r\nabc\r\n0\r\nX-Sum: 42 \r\nX-Empty:\r\nX-B:\tb c\r\n\r\n";
        for cut in 1..body.len() {
            let mut d = ChunkDecoder::new();
            let (mut kept, mut data) = (Vec::new(), Vec::new());
            let mut pending = Vec::new();
            for part in body.chunks(cut) {
                pending.extend_from_slice(part);
                loop {
                    let got = d.decode_keeping_trailers(&pending, 10, &mut kept).unwrap();
                    data.extend_from_slice(got.data);
                    let (consumed, done) = (got.consumed, got.done);
                    pending.drain(..consumed);
                    if done || consumed == 0 {
                        break;
                    }
                }
            }
            assert_eq!(data, b"abc", "cut {cut}");
            let fields: Vec<_> = trailer_fields(&kept).collect();
            assert_eq!(
                fields,
                [("X-Sum", &b"42"[..]), ("X-Empty", b""), ("X-B", b"b c")],
                "cut {cut}"
            );
        }
        let mut kept = Vec::new();
        let got = ChunkDecoder::new()
            .decode_keeping_trailers(b"0\r\n\r\n", 10, &mut kept)
            .unwrap();
        assert!(got.done);
        assert_eq!(trailer_fields(&kept).count(), 0);
    }

    #[test]
    fn data_slices_point_into_the_input() {
        let mut d = ChunkDecoder::new();
        let input = b"3\r\nabc\r\n";
        let got = d.decode(input, 10).unwrap();
        assert_eq!((got.consumed, got.data, got.done), (6, &b"abc"[..], false));
        assert_eq!(got.data.as_ptr(), input[3..].as_ptr());
        let got = d.decode(&input[6..], 10).unwrap();
        assert_eq!((got.consumed, got.data, got.done), (2, &b""[..], false));
    }

    #[test]
    fn refuses_bad_framing_and_big_bodies() {
        assert_eq!(scan(b"x\r\n", 10), Err(Status::BAD_REQUEST));
        assert_eq!(scan(b"5\nhello", 10), Err(Status::BAD_REQUEST));
        assert_eq!(scan(b"5\r\nhelloXX", 10), Err(Status::BAD_REQUEST));
        assert_eq!(scan(b"b\r\n", 10), Err(Status::CONTENT_TOO_LARGE));
        assert_eq!(
            scan(b"5\r\nhello\r\n6\r\n", 10),
            Err(Status::CONTENT_TOO_LARGE)
        );
        assert_eq!(
            scan(b"ffffffffffffffffffffffff\r\n", usize::MAX),
            Err(Status::CONTENT_TOO_LARGE)
        );
        assert_eq!(scan(b"0\r\nno colon\r\n\r\n", 10), Err(Status::BAD_REQUEST));
        assert_eq!(scan(b"0\r\n\r\n", 10), Ok(Scan::Done(5)));
        assert_eq!(scan(b"000\r\n\r\n", 10), Ok(Scan::Done(7)));
    }

    /// RFC 9112 section 7.1.1: `BWS` only before `;` and around `=`; a chunk-size line may
    /// not end in white space.
    #[test]
    fn chunk_size_lines_follow_the_grammar() {
        let ok = [
            &b"5\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a\r\nhello\r\n0\r\n\r\n",
            b"5 ;a\r\nhello\r\n0\r\n\r\n",
            b"5\t; a = b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b;c;d=\"q \\\" ;x\"\r\nhello\r\n0;z\r\n\r\n",
            b"5;a=\"\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b ;c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x80\xff\"\r\nhello\r\n0\r\n\r\n",
        ];
        for body in ok {
            assert_eq!(
                scan(body, 10),
                Ok(Scan::Done(body.len())),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let bad = [
            &b"5 \r\nhello\r\n0\r\n\r\n"[..],
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\" \r\nhello\r\n0\r\n\r\n",
            b"5;\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;a=b=c\r\nhello\r\n0\r\n\r\n",
            b"5;a\x01\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\x7f\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\\\x00\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b\nhello\r\n0\r\n\r\n",
            b"5;a=b\rhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0 \r\n\r\n",
        ];
        for body in bad {
            assert_eq!(
                scan(body, 10),
                Err(Status::BAD_REQUEST),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn trailer_fields_follow_the_grammar() {
        for body in [
            &b"0\r\nX-A: 1\r\n\r\n"[..],
            b"0\r\nX-A:\r\n\r\n",
            b"0\r\nX-A:1 \t\r\nX-B: caf\xc3\xa9\r\n\r\n",
        ] {
            assert_eq!(scan(body, 10), Ok(Scan::Done(body.len())));
        }
        for body in [
            &b"0\r\nX\x01A: 1\r\n\r\n"[..],
            b"0\r\nX\x00A: 1\r\n\r\n",
            b"0\r\nX\x7fA: 1\r\n\r\n",
            b"0\r\nX A: 1\r\n\r\n",
            b"0\r\nX-A : 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\n X-A: 1\r\n\r\n",
            b"0\r\nX-A: 1\r\n folded\r\n\r\n",
            b"0\r\nX-A: 1\x00\r\n\r\n",
            b"0\r\nX-A: 1\n\r\n",
            b"0\r\nX-A: 1\r\n\n",
            b"0\r\n\xc3\xa9: 1\r\n\r\n",
        ] {
            assert_eq!(
                scan(body, 10),
                Err(Status::BAD_REQUEST),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let mut ext = b"1;a=".to_vec();
        ext.extend_from_slice(&vec![b'x'; MAX_METADATA]);
        ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(scan(&ext, 10), Err(Status::BAD_REQUEST));
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_METADATA + 16 {
            trailers.extend_from_slice(b"X-Pad: 0123456789\r\n");
        }
        trailers.extend_from_slice(b"\r\n");
        assert_eq!(
            scan(&trailers, 10),
            Err(Status::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        // Just under the bounds: accepted.
        let mut ext = b"1;a=".to_vec();
        ext.extend_from_slice(&vec![b'x'; MAX_METADATA - 4]);
        ext.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(scan(&ext, 10), Ok(Scan::Done(ext.len())));
    }
}
