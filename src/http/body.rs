//! `Transfer-Encoding: chunked` (RFC 9112 section 7.1), decoded incrementally.
//!
//! The scanner is resumable: it remembers its state and how far into the encoded body it has
//! read, so each new read costs only its own bytes, however the body is cut. It runs twice per
//! chunked request: once to validate and find the end while the body arrives (input stays
//! unconsumed, so the connection's read timeout still covers a stalled upload), then once more
//! over the complete body to copy the data into the loop's body buffer. Line endings must be
//! CRLF; chunk extensions and trailer fields are accepted and dropped.

use super::response::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Reading hex digits.
    Size,
    /// Spaces or tabs after the size (before `;` or CR).
    SizeSpace,
    /// A chunk extension, up to CR.
    Ext,
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
    /// Inside a trailer field line.
    Trailer,
    /// CR seen after a trailer field; expecting LF.
    TrailerLf,
    /// CR seen on the final empty line; expecting LF.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Resumable chunked-body scanner and decoder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunked {
    st: St,
    /// Bytes of the encoded body already scanned.
    pos: usize,
    /// Size of the current chunk (while reading its size), then the data still to read.
    size: usize,
    /// Decoded bytes so far, counting the current chunk in full once its size is known.
    decoded: usize,
    /// Whether the current trailer line has a colon.
    colon: bool,
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
            st: St::SizeStart,
            pos: 0,
            size: 0,
            decoded: 0,
            colon: false,
        }
    }

    /// Encoded bytes scanned so far.
    pub(crate) fn scanned(&self) -> usize {
        self.pos
    }

    /// Continues over `encoded` (the whole body received so far, of which the first
    /// [`scanned`](Chunked::scanned) bytes were seen before). Data bytes go to `out` if given.
    /// A body that would decode to more than `max_body` bytes is refused with 413.
    pub(crate) fn scan(
        &mut self,
        encoded: &[u8],
        max_body: usize,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Scan, Status> {
        let bad = Err(Status::BAD_REQUEST);
        while self.pos < encoded.len() {
            if self.st == St::Data {
                let take = self.size.min(encoded.len() - self.pos);
                if let Some(o) = out.as_deref_mut() {
                    o.extend_from_slice(&encoded[self.pos..self.pos + take]);
                }
                self.pos += take;
                self.size -= take;
                if self.size == 0 {
                    self.st = St::DataCr;
                }
                continue;
            }
            let b = encoded[self.pos];
            self.pos += 1;
            self.st = match self.st {
                St::SizeStart | St::Size => match hex(b) {
                    Some(d) => {
                        self.size = match self.size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                            Some(s) => s,
                            None => return Err(Status::CONTENT_TOO_LARGE),
                        };
                        if self.size > max_body.saturating_sub(self.decoded) {
                            return Err(Status::CONTENT_TOO_LARGE);
                        }
                        St::Size
                    }
                    None if self.st == St::SizeStart => return bad,
                    None => self.after_size(b)?,
                },
                St::SizeSpace => self.after_size(b)?,
                St::Ext => match b {
                    b'\r' => St::SizeLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => St::Ext,
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
                    b'\n' | b':' | b' ' | b'\t' => return bad,
                    _ => {
                        self.colon = false;
                        St::Trailer
                    }
                },
                St::Trailer => match b {
                    b'\r' if self.colon => St::TrailerLf,
                    b'\r' | b'\n' | 0 => return bad,
                    b':' => {
                        self.colon = true;
                        St::Trailer
                    }
                    _ => St::Trailer,
                },
                St::TrailerLf if b == b'\n' => St::TrailerStart,
                St::FinalLf if b == b'\n' => {
                    self.st = St::Done;
                    return Ok(Scan::Done(self.pos));
                }
                St::Done => return Ok(Scan::Done(self.pos - 1)),
                _ => return bad,
            };
        }
        Ok(if self.st == St::Done {
            Scan::Done(self.pos)
        } else {
            Scan::More
        })
    }

    /// After the size digits: spaces, an extension, or the end of the line.
    fn after_size(&mut self, b: u8) -> Result<St, Status> {
        match b {
            b' ' | b'\t' => Ok(St::SizeSpace),
            b';' => Ok(St::Ext),
            b'\r' => Ok(St::SizeLf),
            _ => Err(Status::BAD_REQUEST),
        }
    }
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

    #[test]
    fn refuses_bad_framing_and_big_bodies() {
        let scan = |b: &[u8], max| Chunked::new().scan(b, max, None);
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
    }
}
