//! Line-delimited frames.

use super::{Codec, FrameError};
use crate::Conn;

/// Frames that end with `\n`.
///
/// Decoding strips a `\r` just before the `\n` (so `\r\n` and `\n` both end a line) unless
/// [`strip_cr(false)`](LineCodec::strip_cr). The maximum counts the line's bytes without its
/// terminator: a line of exactly [`max_line`](LineCodec::max_line) bytes is accepted, one byte
/// more is [`FrameError::LineTooLong`] — reported as soon as that many bytes arrived without
/// a newline, not when the newline finally comes.
///
/// Encoding appends `\n` (or `\r\n` with [`write_crlf`](LineCodec::write_crlf)) and rejects
/// a payload that contains `\n`. When `\r` is stripped, a payload that itself ends with `\r`
/// is written with `\r\n`, so that the same codec decodes it back unchanged.
///
/// ```
/// use eventide::codec::{Codec, FrameError, LineCodec};
///
/// let codec = LineCodec::new(5);
/// assert_eq!(codec.decode(b"hello\r\n").unwrap(), Some((&b"hello"[..], 7)));
/// assert_eq!(codec.decode(b"\n").unwrap(), Some((&b""[..], 1)));
/// assert_eq!(codec.decode(b"hello!"), Err(FrameError::LineTooLong { max: 5 }));
///
/// let raw = LineCodec::new(5).strip_cr(false);
/// assert_eq!(raw.decode(b"hi\r\n").unwrap(), Some((&b"hi\r"[..], 4)));
///
/// let mut out = Vec::new();
/// LineCodec::new(5).write_crlf(true).encode(b"hi", &mut out).unwrap();
/// assert_eq!(out, b"hi\r\n");
/// ```
///
/// An incomplete line is searched again from its start each time bytes arrive, so the work
/// per call is bounded by the maximum line length: keep it to what the protocol needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCodec {
    max: usize,
    strip_cr: bool,
    write_crlf: bool,
}

impl LineCodec {
    /// A codec for lines of at most `max_line` bytes (terminator not counted), stripping a
    /// trailing `\r` and writing `\n`.
    pub const fn new(max_line: usize) -> LineCodec {
        LineCodec {
            max: max_line,
            strip_cr: true,
            write_crlf: false,
        }
    }

    /// Whether decoding strips a `\r` that precedes the `\n` (default: yes). Only one `\r`
    /// is stripped; a `\r` elsewhere in the line is part of it.
    pub const fn strip_cr(mut self, on: bool) -> LineCodec {
        self.strip_cr = on;
        self
    }

    /// Whether encoding ends lines with `\r\n` instead of `\n` (default: `\n`).
    pub const fn write_crlf(mut self, on: bool) -> LineCodec {
        self.write_crlf = on;
        self
    }

    /// The maximum line length in bytes, terminator not counted.
    pub const fn max_line(&self) -> usize {
        self.max
    }

    /// Whether decoding strips a `\r` before the `\n`.
    pub const fn strips_cr(&self) -> bool {
        self.strip_cr
    }

    /// Whether encoding ends lines with `\r\n`.
    pub const fn writes_crlf(&self) -> bool {
        self.write_crlf
    }

    /// Checks `payload` and picks its terminator.
    fn terminator(&self, payload: &[u8]) -> Result<&'static [u8], FrameError> {
        if payload.len() > self.max {
            return Err(FrameError::FrameTooLong {
                len: payload.len() as u64,
                max: self.max,
            });
        }
        if find_byte(payload, b'\n').is_some() {
            return Err(FrameError::NewlineInLine);
        }
        if self.write_crlf || (self.strip_cr && payload.last() == Some(&b'\r')) {
            Ok(b"\r\n")
        } else {
            Ok(b"\n")
        }
    }
}

impl Codec for LineCodec {
    fn max_frame(&self) -> usize {
        self.max
    }

    fn decode<'b>(&self, buf: &'b [u8]) -> Result<Option<(&'b [u8], usize)>, FrameError> {
        let cr = usize::from(self.strip_cr);
        // A valid line's newline sits at most at index max + cr: look no further.
        let window = self.max.saturating_add(cr + 1).min(buf.len());
        let Some(nl) = find_byte(&buf[..window], b'\n') else {
            if buf.len() <= self.max {
                return Ok(None);
            }
            // max bytes then a `\r`: fine if a `\n` comes next.
            if self.strip_cr && buf.len() == self.max + 1 && buf[self.max] == b'\r' {
                return Ok(None);
            }
            return Err(FrameError::LineTooLong { max: self.max });
        };
        let mut line = &buf[..nl];
        if self.strip_cr {
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
        }
        if line.len() > self.max {
            // max + 1 bytes then `\n`: the same error a shorter read of it gives.
            return Err(FrameError::LineTooLong { max: self.max });
        }
        Ok(Some((line, nl + 1)))
    }

    fn encode(&self, payload: &[u8], dst: &mut Vec<u8>) -> Result<(), FrameError> {
        let end = self.terminator(payload)?;
        dst.reserve(payload.len() + end.len());
        dst.extend_from_slice(payload);
        dst.extend_from_slice(end);
        Ok(())
    }

    fn write_frame(&self, conn: &mut Conn<'_>, payload: &[u8]) -> Result<(), FrameError> {
        let end = self.terminator(payload)?;
        conn.write(payload);
        conn.write(end);
        Ok(())
    }
}

/// The index of the first `needle` in `hay`: eight bytes at a time (no `unsafe`, no SIMD).
pub(super) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Bytes equal to `needle` become zero; the lowest zero byte sets its high bit exactly
        // (borrows only produce false positives above a true zero byte).
        let x = u64::from_le_bytes(word) ^ pattern;
        let zero = x.wrapping_sub(LO) & !x & HI;
        if zero != 0 {
            return Some(offset + (zero.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}
