//! Streamed response bodies: a [`BodyStream`] produces the body piece by piece as the
//! connection takes it, so a response of any size is never held in memory whole. The server
//! asks for the next piece while the output is not waiting for the kernel, and resumes from
//! `on_drained` when it was; the answers pipelined behind a streamed one wait for it.

use std::fmt;
use std::io;

use super::response::{Next, Response};
use crate::adapter::Output;

/// A response body produced piece by piece (see [`Response::stream`](super::Response::stream)).
///
/// Any `FnMut(&mut Vec<u8>) -> io::Result<bool> + Send + 'static` is one.
///
/// ```
/// use eventide::http::BodyStream;
///
/// /// `n` bytes of `x`, 64 KiB at a time.
/// struct Xs(u64);
///
/// impl BodyStream for Xs {
///     fn next_piece(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
///         let n = self.0.min(64 * 1024);
///         buf.resize(n as usize, b'x');
///         self.0 -= n;
///         Ok(self.0 > 0)
///     }
/// }
/// # let _ = Xs(3);
/// ```
pub trait BodyStream: Send + 'static {
    /// Appends the next piece of the body to `buf` (empty when called; tens of KiB is a good
    /// size) and returns whether more follows. It runs on the loop's thread, so it must not
    /// block; a piece must hold at least one byte unless it is the last. An error cuts the
    /// response short: the connection closes (the client sees a body that ended early, never
    /// another response's bytes in its place).
    fn next_piece(&mut self, buf: &mut Vec<u8>) -> io::Result<bool>;
}

impl<F> BodyStream for F
where
    F: FnMut(&mut Vec<u8>) -> io::Result<bool> + Send + 'static,
{
    fn next_piece(&mut self, buf: &mut Vec<u8>) -> io::Result<bool> {
        self(buf)
    }
}

/// How a streamed body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delimit {
    /// `Content-Length` announced: exactly this many bytes are still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The connection closes after the body (an HTTP/1.0 client, length unknown).
    Close,
}

/// A streamed body on its way.
pub(crate) struct Streaming {
    source: Box<dyn BodyStream>,
    delimit: Delimit,
}

/// How far [`Streaming::pump`] got.
pub(crate) enum Pumped {
    /// The body is all in the output.
    All,
    /// The output waits for the kernel: more once it drains.
    Some,
    /// The source failed or broke its length: the answer is cut short.
    Failed,
}

impl Streaming {
    pub(crate) fn new(source: Box<dyn BodyStream>, delimit: Delimit) -> Streaming {
        Streaming { source, delimit }
    }

    /// Writes pieces into `out` until the body is complete or the output waits for the
    /// kernel; `piece` is a buffer to produce them in.
    pub(crate) fn pump(&mut self, out: &mut dyn Output, piece: &mut Vec<u8>) -> Pumped {
        loop {
            if out.is_queued() {
                return Pumped::Some;
            }
            piece.clear();
            let more = match self.source.next_piece(piece) {
                Ok(more) => more,
                Err(e) => {
                    log::warn!("eventide::http: a streamed body failed: {e}");
                    return Pumped::Failed;
                }
            };
            if more && piece.is_empty() {
                log::warn!("eventide::http: a streamed body gave an empty piece; cut short");
                return Pumped::Failed;
            }
            if !self.write(out, piece, more) {
                return Pumped::Failed;
            }
            if !more {
                return Pumped::All;
            }
        }
    }

    /// Writes one piece, framed; `false` if it breaks the announced length.
    fn write(&mut self, out: &mut dyn Output, piece: &[u8], more: bool) -> bool {
        match &mut self.delimit {
            Delimit::Length(left) => {
                let n = piece.len() as u64;
                if n > *left {
                    log::warn!(
                        "eventide::http: a streamed body passed its Content-Length \
                         ({left} bytes left, a piece of {n})"
                    );
                    return false;
                }
                *left -= n;
                out.put(piece);
                if !more && *left > 0 {
                    log::warn!(
                        "eventide::http: a streamed body ended {left} bytes short of its \
                         Content-Length"
                    );
                    return false;
                }
            }
            Delimit::Chunked => {
                if !piece.is_empty() {
                    let mut size = [0u8; 20];
                    out.put(chunk_size(piece.len(), &mut size));
                    out.put(piece);
                    out.put(b"\r\n");
                }
                if !more {
                    out.put(b"0\r\n\r\n");
                }
            }
            Delimit::Close => out.put(piece),
        }
        true
    }
}

impl Response<'_> {
    /// Streams the body: `source` gives it piece by piece as the connection takes it, so it
    /// is never held in memory whole (the server asks for more from `on_drained` while the
    /// socket is full). With `len`, `Content-Length: len` is sent and the pieces must add up
    /// to it exactly; without, the body is chunked (`Transfer-Encoding: chunked`), or, for an
    /// HTTP/1.0 client, ends with the connection. A source that fails or breaks the length
    /// ends the connection after what was sent. A `HEAD` request (or a status without a
    /// body) gets the head only. Responses pipelined after this one wait for it.
    ///
    /// ```
    /// use eventide::http::{Request, Response};
    ///
    /// /// One line per second of a day's log, generated as the client reads.
    /// fn log(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     let mut second = 0u32;
    ///     res.content_type("text/plain").stream(None, move |buf: &mut Vec<u8>| {
    ///         use std::io::Write;
    ///         for _ in 0..1000 {
    ///             writeln!(buf, "second {second}: ok")?;
    ///             second += 1;
    ///         }
    ///         Ok(second < 86_400)
    ///     });
    /// }
    /// # let _ = log;
    /// ```
    pub fn stream(&mut self, len: Option<u64>, source: impl BodyStream) {
        if self.is_done() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return;
        }
        let (send, delimit) = self.open_body(len);
        if send && delimit != Delimit::Length(0) {
            self.next = Next::Stream(Streaming::new(Box::new(source), delimit));
        }
    }
}

/// `HEX\r\n` for a chunk of `len` bytes.
pub(crate) fn chunk_size(len: usize, buf: &mut [u8; 20]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in buf[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    buf[digits] = b'\r';
    buf[digits + 1] = b'\n';
    &buf[..digits + 2]
}

impl fmt::Debug for Streaming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field("delimit", &self.delimit)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(sizes: Vec<usize>) -> Box<dyn BodyStream> {
        let mut it = sizes.into_iter().peekable();
        Box::new(move |buf: &mut Vec<u8>| {
            let n = it.next().unwrap_or(0);
            buf.resize(n, b'a');
            Ok(it.peek().is_some())
        })
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut b = [0; 20];
        for (len, want) in [(0, "0"), (1, "1"), (15, "f"), (16, "10"), (65536, "10000")] {
            assert_eq!(chunk_size(len, &mut b), format!("{want}\r\n").as_bytes());
        }
    }

    #[test]
    fn bodies_are_framed_as_announced() {
        let mut piece = Vec::new();
        let mut out = Vec::new();
        let mut s = Streaming::new(pieces(vec![3, 17]), Delimit::Chunked);
        assert!(matches!(s.pump(&mut out, &mut piece), Pumped::All));
        assert_eq!(
            out,
            [&b"3\r\naaa\r\n11\r\n"[..], &[b'a'; 17], b"\r\n0\r\n\r\n"].concat()
        );

        let mut out = Vec::new();
        let mut s = Streaming::new(pieces(vec![3, 17]), Delimit::Length(20));
        assert!(matches!(s.pump(&mut out, &mut piece), Pumped::All));
        assert_eq!(out, vec![b'a'; 20]);
        // Too long, or too short: cut short.
        for len in [19, 21] {
            let mut s = Streaming::new(pieces(vec![3, 17]), Delimit::Length(len));
            assert!(
                matches!(s.pump(&mut Vec::new(), &mut piece), Pumped::Failed),
                "{len}"
            );
        }
        // An empty piece that is not the last would never end: refused.
        let mut s = Streaming::new(pieces(vec![3, 0, 4]), Delimit::Close);
        assert!(matches!(
            s.pump(&mut Vec::new(), &mut piece),
            Pumped::Failed
        ));
    }
}
