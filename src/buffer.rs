//! Per-connection byte buffers that exist only while they hold bytes.
//!
//! * [`InBuffer`] keeps the unconsumed remainder of inbound data (an incomplete message).
//!   Fresh bytes are normally read into the loop's shared read buffer and handed to the handler
//!   from there; only what the handler leaves behind is copied here, and the allocation is
//!   released as soon as the remainder is consumed.
//! * [`OutBuffer`] keeps outbound bytes the kernel would not take yet, as a queue of chunks
//!   (large writes are kept as the caller's own `Vec` without a copy, a broadcast's payload
//!   as the `Arc` every recipient shares) flushed with one gathering `sendmsg`, and file
//!   ranges, sent from the file with `sendfile(2)` when their turn comes (never read into
//!   memory). It is boxed in the connection and dropped once empty.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, RawFd};
use std::sync::Arc;

use crate::sys::{sendfile, socket};

/// Appended slices are packed into chunks of at least this many bytes.
const CHUNK: usize = 16 * 1024;
/// At most this many chunks go into one `sendmsg`.
pub(crate) const MAX_IOV: usize = 64;
/// Reading into an inbound remainder reserves at least this much spare room first.
const MIN_SPARE: usize = 4 * 1024;
/// A shared payload at least this long is queued as the shared `Arc`; a shorter one is copied
/// into the packed chunks: a few bytes cost less to copy than a chunk of their own, which would
/// also take one of the 64 slots of a `sendmsg`.
pub(crate) const SHARE_MIN: usize = 512;

/// The unconsumed inbound bytes of one connection.
#[derive(Debug, Default)]
pub(crate) struct InBuffer {
    buf: Vec<u8>,
    head: usize,
}

impl InBuffer {
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.buf.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.head..]
    }

    /// Drops the first `n` bytes; frees the allocation when nothing is left.
    pub(crate) fn consume(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.is_empty() {
            self.buf = Vec::new();
            self.head = 0;
        }
    }

    /// Frees everything.
    pub(crate) fn clear(&mut self) {
        self.buf = Vec::new();
        self.head = 0;
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// One scattering `recvmsg` into this buffer's spare room and then `extra`; whatever landed in `extra`
    /// is appended too. Returns the number of bytes read (0 at end of stream).
    pub(crate) fn read_from(&mut self, fd: RawFd, extra: &mut [u8]) -> io::Result<usize> {
        self.compact();
        if self.buf.capacity() - self.buf.len() < MIN_SPARE {
            self.buf.reserve(MIN_SPARE);
        }
        let (into_buf, into_extra) = socket::read_append(fd, &mut self.buf, extra)?;
        self.buf.extend_from_slice(&extra[..into_extra]);
        Ok(into_buf + into_extra)
    }

    /// Moves the live bytes to the front when the consumed prefix is at least half the buffer,
    /// so repeated small consumes cost amortised O(1).
    fn compact(&mut self) {
        if self.head > 0 && self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    /// Bytes of heap this buffer holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// Outbound bytes waiting for room in the socket's send buffer: chunks of bytes, and ranges
/// of files sent from the file by the kernel (`sendfile(2)`) when their turn comes.
#[derive(Debug, Default)]
pub(crate) struct OutBuffer {
    pieces: VecDeque<Piece>,
    /// Bytes of the front chunk already written.
    head: usize,
    /// Bytes queued, file ranges included.
    len: usize,
}

/// One piece of queued output.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    /// A payload shared with every other recipient of a broadcast.
    Shared(Arc<[u8]>),
    /// `left` bytes of `file` from `offset` (the file's own position is never used).
    File {
        file: File,
        offset: u64,
        left: u64,
    },
}

impl Piece {
    /// The bytes of a chunk; `None` for a file range.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Piece::Bytes(v) => Some(v),
            Piece::Shared(s) => Some(s),
            Piece::File { .. } => None,
        }
    }
}

impl OutBuffer {
    /// Bytes queued (file ranges included).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `bytes`, packing small writes into the last chunk.
    pub(crate) fn push_slice(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Piece::Bytes(last)) = self.pieces.back_mut() {
            if last.capacity() - last.len() >= bytes.len() {
                last.extend_from_slice(bytes);
                return;
            }
        }
        let mut chunk = Vec::with_capacity(bytes.len().max(CHUNK));
        chunk.extend_from_slice(bytes);
        self.pieces.push_back(Piece::Bytes(chunk));
    }

    /// Appends an owned buffer; large ones are queued as they are, without a copy.
    pub(crate) fn push_vec(&mut self, bytes: Vec<u8>) {
        if bytes.len() < CHUNK {
            self.push_slice(&bytes);
        } else {
            self.len += bytes.len();
            self.pieces.push_back(Piece::Bytes(bytes));
        }
    }

    /// Appends an owned buffer of which the first `skip` bytes were already sent.
    pub(crate) fn push_vec_from(&mut self, bytes: Vec<u8>, skip: usize) {
        if skip == 0 {
            self.push_vec(bytes);
        } else if self.pieces.is_empty() && bytes.len() - skip >= CHUNK {
            self.len += bytes.len() - skip;
            self.head = skip;
            self.pieces.push_back(Piece::Bytes(bytes));
        } else {
            self.push_slice(&bytes[skip..]);
        }
    }

    /// Appends a payload shared with other connections, of which the first `skip` bytes were
    /// already sent: kept as the shared `Arc` (no copy) unless it is short ([`SHARE_MIN`]).
    pub(crate) fn push_shared(&mut self, bytes: &Arc<[u8]>, skip: usize) {
        let rest = bytes.len() - skip;
        if rest < SHARE_MIN || (skip > 0 && !self.pieces.is_empty()) {
            self.push_slice(&bytes[skip..]);
        } else {
            if self.pieces.is_empty() {
                self.head = skip;
            }
            self.len += rest;
            self.pieces.push_back(Piece::Shared(Arc::clone(bytes)));
        }
    }

    /// Appends `len` bytes of `file` from `offset`, sent from the file when their turn comes.
    pub(crate) fn push_file(&mut self, file: File, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.len += usize::try_from(len).unwrap_or(usize::MAX);
        self.pieces.push_back(Piece::File {
            file,
            offset,
            left: len,
        });
    }

    /// Writes as much as one syscall takes: a gathering `sendmsg` of the chunks up to the
    /// first file range, or one `sendfile` of the file range at the front. Returns `(written,
    /// offered)`: fewer written than offered means the send buffer is full. `WouldBlock`
    /// means nothing was taken; `UnexpectedEof` that a file ended before its range did (what
    /// follows would be taken for the missing bytes: the connection must fail).
    pub(crate) fn write_to(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        if let Some(Piece::File { file, offset, left }) = self.pieces.front_mut() {
            let want = usize::try_from(*left).unwrap_or(usize::MAX);
            let n = sendfile::sendfile(fd, file.as_fd(), offset, want)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ended {left} bytes short of the range sent"),
                ));
            }
            *left -= n as u64;
            self.len -= n;
            if *left == 0 {
                self.pieces.pop_front();
            }
            return Ok((n, want.min(sendfile::MAX_CHUNK)));
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        let mut offered = 0;
        for (i, piece) in self.pieces.iter().take(MAX_IOV).enumerate() {
            let Some(chunk) = piece.bytes() else { break };
            let start = if i == 0 { self.head } else { 0 };
            slices[i] = IoSlice::new(&chunk[start..]);
            offered += chunk.len() - start;
            count += 1;
        }
        let n = socket::send_vectored(fd, &slices[..count])?;
        self.advance(n);
        Ok((n, offered))
    }

    /// Drops the first `n` bytes (all in chunks before any file range).
    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.pieces.front().and_then(Piece::bytes) else {
                debug_assert!(false, "advanced past the chunks before a file range");
                break;
            };
            let front_left = front.len() - self.head;
            if n >= front_left {
                n -= front_left;
                self.pieces.pop_front();
                self.head = 0;
            } else {
                self.head += n;
                n = 0;
            }
        }
    }

    /// The queued bytes in order, file ranges read (for tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut v = Vec::with_capacity(self.len);
        for (i, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Bytes(_) | Piece::Shared(_) => {
                    let start = if i == 0 { self.head } else { 0 };
                    v.extend_from_slice(&piece.bytes().unwrap_or_default()[start..]);
                }
                Piece::File { file, offset, left } => {
                    let mut range = vec![0; *left as usize];
                    file.read_exact_at(&mut range, *offset).unwrap();
                    v.extend_from_slice(&range);
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_buffer_consumes_and_frees() {
        let mut b = InBuffer::default();
        b.append(b"hello world");
        assert_eq!(b.data(), b"hello world");
        b.consume(6);
        assert_eq!(b.data(), b"world");
        b.append(b"!");
        assert_eq!(b.data(), b"world!");
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn out_buffer_keeps_order_across_chunk_kinds() {
        let mut b = OutBuffer::default();
        b.push_slice(b"ab");
        b.push_vec(vec![b'x'; CHUNK * 2]);
        b.push_slice(b"cd");
        let mut big = vec![b'y'; CHUNK + 5];
        big[0] = b'z';
        b.push_vec_from(big, 1);
        assert_eq!(b.len(), 2 + CHUNK * 2 + 2 + CHUNK + 4);
        let v = b.to_vec();
        assert_eq!(&v[..2], b"ab");
        assert_eq!(&v[2 + CHUNK * 2..4 + CHUNK * 2], b"cd");
        assert!(v[4 + CHUNK * 2..].iter().all(|&c| c == b'y'));
        b.advance(3);
        assert_eq!(b.to_vec(), v[3..].to_vec());
        b.advance(CHUNK * 2);
        assert_eq!(b.to_vec(), v[3 + CHUNK * 2..].to_vec());
    }

    #[test]
    fn out_buffer_shares_long_payloads_and_copies_short_ones() {
        let long: Arc<[u8]> = (0..SHARE_MIN as u32 * 2).map(|i| i as u8).collect();
        let short: Arc<[u8]> = Arc::from(&b"hello"[..]);
        let mut b = OutBuffer::default();
        b.push_shared(&long, 7); // the first 7 bytes went out already
        b.push_shared(&short, 0);
        b.push_shared(&long, 0);
        assert_eq!(Arc::strong_count(&long), 3, "queued twice without a copy");
        assert_eq!(Arc::strong_count(&short), 1, "copied: too short to share");
        let mut want = long[7..].to_vec();
        want.extend_from_slice(b"hello");
        want.extend_from_slice(&long);
        assert_eq!(b.len(), want.len());
        assert_eq!(b.to_vec(), want);
        b.advance(long.len() - 7 + 2);
        assert_eq!(b.to_vec(), want[long.len() - 7 + 2..].to_vec());
        b.advance(3 + long.len());
        assert!(b.is_empty());
        assert_eq!(Arc::strong_count(&long), 1, "written chunks are released");
        // Behind queued bytes, a partly sent payload is copied (only the front chunk has a
        // start offset).
        b.push_slice(b"x");
        b.push_shared(&long, 5);
        assert_eq!(Arc::strong_count(&long), 1);
        assert_eq!(b.len(), 1 + long.len() - 5);
    }

    #[test]
    fn out_buffer_push_vec_from_on_empty_keeps_vec() {
        let mut b = OutBuffer::default();
        let data: Vec<u8> = (0..CHUNK as u32 * 2).map(|i| i as u8).collect();
        b.push_vec_from(data.clone(), 10);
        assert_eq!(b.to_vec(), data[10..].to_vec());
        assert_eq!(b.pieces.len(), 1);
    }

    /// Bytes, a file range, bytes again: written through a socket whose peer reads slowly,
    /// they arrive in order, the range from the file (with `sendfile`), and a file cut short
    /// is an `UnexpectedEof`, never bytes of what follows.
    #[test]
    fn out_buffer_sends_file_ranges_in_order() {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;

        let path = std::env::temp_dir().join(format!("eventide-outbuffer-{}", std::process::id()));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        let short = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        let mut b = OutBuffer::default();
        b.push_slice(b"head:");
        b.push_file(file, 1000, 250_000);
        b.push_slice(b":tail");
        b.push_file(short, 299_990, 20); // 10 bytes short
        let mut eof = None;
        while !b.is_empty() {
            match b.write_to(server.as_raw_fd()) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => {
                    eof = Some(e.kind());
                    break;
                }
            }
        }
        assert_eq!(eof, Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(b.len(), 10, "the bytes the file did not have");
        (&server).flush().unwrap();
        drop(server);
        let mut want = b"head:".to_vec();
        want.extend_from_slice(&content[1000..251_000]);
        want.extend_from_slice(b":tail");
        want.extend_from_slice(&content[299_990..]);
        assert!(reader.join().unwrap() == want, "the bytes sent differ");
    }
}
