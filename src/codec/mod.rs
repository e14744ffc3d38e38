//! Framing: cutting a connection's byte stream into messages, and writing messages back.
//!
//! Two codecs, both built only on the crate's public API:
//!
//! - [`LineCodec`]: frames end with `\n`; a `\r` just before it is stripped by default
//!   ([`LineCodec::strip_cr`]).
//! - [`LengthCodec`]: each frame starts with its length in 1, 2, 4 or 8 bytes ([`PrefixWidth`]),
//!   big- or little-endian ([`Endian`]), optionally counting the prefix itself
//!   ([`LengthCodec::length_includes_prefix`]).
//!
//! Both implement [`Codec`]. Decoding borrows the frame from the buffer it was given, without a
//! copy; [`Codec::next_frame`] does it on a [`Conn`]'s input and consumes the frame. Because
//! [`Conn::input`] lives for the whole callback, the frame can be used while writing to the
//! connection — an echo needs no allocation at all.
//!
//! Every codec has a maximum frame size, enforced as soon as a violation is detectable: a line
//! with no newline within the maximum, or a length prefix above it (without waiting for the
//! body). The [`FrameError`] can close the connection with
//! [`CloseReason::Protocol`] describing it ([`FrameError::close_connection`], or
//! [`Codec::next_frame_or_close`] which does both steps).
//!
//! A line echo server:
//!
//! ```no_run
//! use eventide::codec::{Codec, LineCodec};
//! use eventide::{Action, Conn, Handler, Refusal, Server};
//!
//! struct LineEcho {
//!     codec: LineCodec,
//! }
//!
//! impl Handler for LineEcho {
//!     type State = ();
//!     type Message = ();
//!
//!     fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
//!         Ok(())
//!     }
//!
//!     fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
//!         // An oversize line closes the connection with `CloseReason::Protocol` and ends
//!         // the loop; an incomplete one stays in the input until more bytes arrive.
//!         while let Some(line) = self.codec.next_frame_or_close(conn) {
//!             // `line` borrows the connection's input while we write to it.
//!             self.codec.write_frame(conn, line).expect("a decoded line re-encodes");
//!         }
//!         Action::Continue
//!     }
//! }
//!
//! let server = Server::builder()
//!     .bind("127.0.0.1:0")
//!     .start(|_| LineEcho { codec: LineCodec::new(8 * 1024) })?;
//! println!("listening on {}", server.local_addr());
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Keep the maximum frame size under the server's inbound limit
//! ([`Builder::inbound_limit`](crate::Builder::inbound_limit), 1 MiB by default): a frame
//! larger than that can never be completed in the input, and the connection would be closed
//! with [`CloseReason::InboundLimit`] instead.

use std::error::Error;
use std::fmt;
use std::io;

use crate::{CloseReason, Conn};

mod length;
mod line;
#[cfg(test)]
mod tests;

pub use length::{Endian, LengthCodec, PrefixWidth};
pub use line::LineCodec;

/// A framing scheme: decodes frames from a byte buffer without copying, encodes them to a
/// buffer or straight to a connection.
///
/// Decoding is stateless and incremental: called on a buffer holding part of the stream, it
/// returns `Ok(None)` until a whole frame is there, and the frames (and any error) do not
/// depend on how the stream was cut into reads.
pub trait Codec {
    /// The largest payload this codec decodes or encodes, in bytes (for [`LengthCodec`], also
    /// capped by what its prefix can express).
    fn max_frame(&self) -> usize;

    /// Decodes the first frame of `buf`. Returns the payload, borrowed from `buf`, and how
    /// many bytes of `buf` the frame took (payload plus framing); `Ok(None)` if `buf` does
    /// not yet hold a whole frame; an error as soon as `buf` shows the frame is invalid
    /// (longer than [`max_frame`](Codec::max_frame)), without waiting for the rest of it.
    ///
    /// ```
    /// use eventide::codec::{Codec, LineCodec};
    ///
    /// let codec = LineCodec::new(16);
    /// assert_eq!(codec.decode(b"hello\r\nwor").unwrap(), Some((&b"hello"[..], 7)));
    /// assert_eq!(codec.decode(b"wor").unwrap(), None);
    /// assert!(codec.decode(&[b'x'; 17]).is_err()); // no newline within 16 bytes
    /// ```
    fn decode<'b>(&self, buf: &'b [u8]) -> Result<Option<(&'b [u8], usize)>, FrameError>;

    /// Appends the frame carrying `payload` (framing included) to `dst`. On error `dst` is
    /// left unchanged.
    ///
    /// ```
    /// use eventide::codec::{Codec, LengthCodec, PrefixWidth};
    ///
    /// let codec = LengthCodec::new(PrefixWidth::U16, 1024);
    /// let mut out = Vec::new();
    /// codec.encode(b"hi", &mut out).unwrap();
    /// assert_eq!(out, [0, 2, b'h', b'i']);
    /// ```
    fn encode(&self, payload: &[u8], dst: &mut Vec<u8>) -> Result<(), FrameError>;

    /// Writes the frame carrying `payload` to `conn` with [`Conn::write`] (framing and
    /// payload, without building an intermediate buffer). On error nothing is written.
    fn write_frame(&self, conn: &mut Conn<'_>, payload: &[u8]) -> Result<(), FrameError>;

    /// Decodes the next frame from `conn`'s unconsumed input and consumes it. The frame
    /// borrows the input, which lives for the whole callback, so `conn` can be written to
    /// while the frame is in use. `Ok(None)` when the input holds no whole frame yet (it is
    /// kept and shown again with the next bytes).
    ///
    /// On error nothing is consumed; see [`FrameError::close_connection`] or
    /// [`next_frame_or_close`](Codec::next_frame_or_close).
    fn next_frame<'a>(&self, conn: &mut Conn<'a>) -> Result<Option<&'a [u8]>, FrameError> {
        match self.decode(conn.input())? {
            Some((frame, used)) => {
                conn.consume(used);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Like [`next_frame`](Codec::next_frame), but an invalid frame closes the connection
    /// ([`FrameError::close_connection`]) and returns `None`, like an incomplete one. Meant
    /// for `while let Some(frame) = codec.next_frame_or_close(conn) { ... }`.
    fn next_frame_or_close<'a>(&self, conn: &mut Conn<'a>) -> Option<&'a [u8]> {
        match self.next_frame(conn) {
            Ok(frame) => frame,
            Err(e) => {
                e.close_connection(conn);
                None
            }
        }
    }
}

/// Why a frame could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A line is longer than the maximum: no newline came within the maximum (plus the
    /// optional `\r`).
    LineTooLong {
        /// The codec's maximum line length.
        max: usize,
    },
    /// A frame is longer than the maximum: announced by a length prefix, or given to encode.
    FrameTooLong {
        /// The frame's payload length.
        len: u64,
        /// The codec's maximum.
        max: usize,
    },
    /// A length prefix that counts itself holds less than the prefix's own size.
    LengthTooSmall {
        /// The value of the prefix.
        len: u64,
        /// The size of the prefix in bytes.
        prefix: usize,
    },
    /// A line to encode contains a newline.
    NewlineInLine,
}

impl FrameError {
    /// The [`CloseReason::Protocol`] describing this error.
    pub fn to_close_reason(&self) -> CloseReason {
        CloseReason::Protocol(self.to_string())
    }

    /// Closes `conn` with [`CloseReason::Protocol`] describing this error, after its pending
    /// output is flushed (replies to the frames before the bad one still go out). The unread
    /// input is discarded.
    ///
    /// ```
    /// use eventide::codec::{Codec, LengthCodec, PrefixWidth};
    /// use eventide::{Action, Conn};
    ///
    /// fn on_data(codec: &LengthCodec, conn: &mut Conn<'_>) -> Action {
    ///     loop {
    ///         match codec.next_frame(conn) {
    ///             Ok(Some(frame)) => {
    ///                 conn.write(frame);
    ///             }
    ///             Ok(None) => break,
    ///             Err(e) => {
    ///                 e.close_connection(conn);
    ///                 break;
    ///             }
    ///         }
    ///     }
    ///     Action::Continue
    /// }
    /// # let _ = (on_data, LengthCodec::new(PrefixWidth::U32, 1 << 20));
    /// ```
    pub fn close_connection(&self, conn: &mut Conn<'_>) {
        conn.consume(conn.input().len());
        conn.close_with(self.to_close_reason());
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::LineTooLong { max } => {
                write!(f, "line longer than the maximum of {max} bytes")
            }
            FrameError::FrameTooLong { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            FrameError::LengthTooSmall { len, prefix } => {
                write!(
                    f,
                    "length {len} is smaller than its own {prefix}-byte prefix"
                )
            }
            FrameError::NewlineInLine => f.write_str("a line to encode contains a newline"),
        }
    }
}

impl Error for FrameError {}

impl From<FrameError> for CloseReason {
    fn from(e: FrameError) -> CloseReason {
        e.to_close_reason()
    }
}

impl From<FrameError> for io::Error {
    fn from(e: FrameError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}
