//! Length-prefixed frames.

use super::{Codec, FrameError};
use crate::Conn;

/// The size of a length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrefixWidth {
    /// One byte: frames up to 255 bytes.
    U8,
    /// Two bytes: frames up to 65,535 bytes.
    U16,
    /// Four bytes.
    U32,
    /// Eight bytes.
    U64,
}

impl PrefixWidth {
    /// The prefix's size in bytes: 1, 2, 4 or 8.
    pub const fn bytes(self) -> usize {
        match self {
            PrefixWidth::U8 => 1,
            PrefixWidth::U16 => 2,
            PrefixWidth::U32 => 4,
            PrefixWidth::U64 => 8,
        }
    }

    /// The largest value the prefix can hold.
    pub const fn max_value(self) -> u64 {
        match self {
            PrefixWidth::U8 => u8::MAX as u64,
            PrefixWidth::U16 => u16::MAX as u64,
            PrefixWidth::U32 => u32::MAX as u64,
            PrefixWidth::U64 => u64::MAX,
        }
    }
}

/// The byte order of a length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Endian {
    /// Most significant byte first (network byte order; the default).
    #[default]
    Big,
    /// Least significant byte first.
    Little,
}

/// Frames that start with their length: a prefix of 1, 2, 4 or 8 bytes, big-endian by
/// default, counting only the payload unless
/// [`length_includes_prefix(true)`](LengthCodec::length_includes_prefix).
///
/// A prefix announcing more than the maximum is [`FrameError::FrameTooLong`] as soon as the
/// prefix has arrived, without waiting for the body. The maximum is also capped by what the
/// prefix can express ([`max_frame`](Codec::max_frame)).
///
/// ```
/// use eventide::codec::{Codec, Endian, FrameError, LengthCodec, PrefixWidth};
///
/// let codec = LengthCodec::new(PrefixWidth::U16, 1024);
/// assert_eq!(codec.decode(&[0, 3, b'a', b'b', b'c', 9]).unwrap(), Some((&b"abc"[..], 5)));
/// assert_eq!(codec.decode(&[0, 3, b'a']).unwrap(), None);
/// assert_eq!(codec.decode(&[4, 1]), Err(FrameError::FrameTooLong { len: 1025, max: 1024 }));
///
/// // Little-endian, four bytes, the length counting the prefix too.
/// let codec = LengthCodec::new(PrefixWidth::U32, 1024)
///     .endian(Endian::Little)
///     .length_includes_prefix(true);
/// let mut out = Vec::new();
/// codec.encode(b"hi", &mut out).unwrap();
/// assert_eq!(out, [6, 0, 0, 0, b'h', b'i']);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthCodec {
    width: PrefixWidth,
    endian: Endian,
    includes_prefix: bool,
    max: usize,
}

impl LengthCodec {
    /// A codec with a `width` prefix, big-endian, counting only the payload, for payloads of
    /// at most `max_frame` bytes.
    pub const fn new(width: PrefixWidth, max_frame: usize) -> LengthCodec {
        LengthCodec {
            width,
            endian: Endian::Big,
            includes_prefix: false,
            max: max_frame,
        }
    }

    /// Sets the prefix's byte order (default [`Endian::Big`]).
    pub const fn endian(mut self, endian: Endian) -> LengthCodec {
        self.endian = endian;
        self
    }

    /// Whether the prefix's value counts the prefix itself as well as the payload (default:
    /// no). The maximum applies to the payload either way.
    pub const fn length_includes_prefix(mut self, on: bool) -> LengthCodec {
        self.includes_prefix = on;
        self
    }

    /// The prefix's size.
    pub const fn width(&self) -> PrefixWidth {
        self.width
    }

    /// The prefix's byte order.
    pub const fn byte_order(&self) -> Endian {
        self.endian
    }

    /// Whether the prefix counts itself.
    pub const fn includes_prefix(&self) -> bool {
        self.includes_prefix
    }

    /// How much the prefix's value adds to the payload length.
    fn overhead(&self) -> u64 {
        if self.includes_prefix {
            self.width.bytes() as u64
        } else {
            0
        }
    }

    fn read_prefix(&self, prefix: &[u8]) -> u64 {
        let fold = |v: u64, &b: &u8| (v << 8) | u64::from(b);
        match self.endian {
            Endian::Big => prefix.iter().fold(0, fold),
            Endian::Little => prefix.iter().rev().fold(0, fold),
        }
    }

    /// The prefix for a payload of `len` bytes (already checked against the maximum).
    fn prefix(&self, len: usize) -> ([u8; 8], usize) {
        let w = self.width.bytes();
        let value = len as u64 + self.overhead();
        let mut out = [0u8; 8];
        match self.endian {
            Endian::Big => out[..w].copy_from_slice(&value.to_be_bytes()[8 - w..]),
            Endian::Little => out[..w].copy_from_slice(&value.to_le_bytes()[..w]),
        }
        (out, w)
    }

    fn check(&self, payload: &[u8]) -> Result<(), FrameError> {
        let max = self.max_frame();
        if payload.len() > max {
            return Err(FrameError::FrameTooLong {
                len: payload.len() as u64,
                max,
            });
        }
        Ok(())
    }
}

impl Codec for LengthCodec {
    fn max_frame(&self) -> usize {
        let w = self.width.bytes();
        let expressible = self.width.max_value() - self.overhead();
        let addressable = (usize::MAX - w) as u64; // so that prefix + payload never overflows
        let cap = expressible.min(addressable) as usize;
        self.max.min(cap)
    }

    fn decode<'b>(&self, buf: &'b [u8]) -> Result<Option<(&'b [u8], usize)>, FrameError> {
        let w = self.width.bytes();
        let Some(prefix) = buf.get(..w) else {
            return Ok(None);
        };
        let value = self.read_prefix(prefix);
        let len = value
            .checked_sub(self.overhead())
            .ok_or(FrameError::LengthTooSmall {
                len: value,
                prefix: w,
            })?;
        let max = self.max_frame();
        if len > max as u64 {
            return Err(FrameError::FrameTooLong { len, max });
        }
        let end = w + len as usize;
        Ok(buf.get(w..end).map(|frame| (frame, end)))
    }

    fn encode(&self, payload: &[u8], dst: &mut Vec<u8>) -> Result<(), FrameError> {
        self.check(payload)?;
        let (prefix, w) = self.prefix(payload.len());
        dst.reserve(w + payload.len());
        dst.extend_from_slice(&prefix[..w]);
        dst.extend_from_slice(payload);
        Ok(())
    }

    fn write_frame(&self, conn: &mut Conn<'_>, payload: &[u8]) -> Result<(), FrameError> {
        self.check(payload)?;
        let (prefix, w) = self.prefix(payload.len());
        conn.write(&prefix[..w]);
        conn.write(payload);
        Ok(())
    }
}
