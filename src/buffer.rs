//! Per-connection byte buffers that exist only while they hold bytes.
//!
//! * [`InBuffer`] keeps the unconsumed remainder of inbound data (an incomplete message).
//!   Fresh bytes are normally read into the loop's shared read buffer and handed to the handler
//!   from there; only what the handler leaves behind is copied here, and the allocation is
//!   released as soon as the remainder is consumed.
//! * [`OutBuffer`] keeps outbound bytes the kernel would not take yet, as a queue of chunks
//!   (large writes are kept as the caller's own `Vec` without a copy) flushed with one
//!   gathering `sendmsg`. It is boxed in the connection and dropped once empty.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use crate::sys::socket;

/// Appended slices are packed into chunks of at least this many bytes.
const CHUNK: usize = 16 * 1024;
/// At most this many chunks go into one `sendmsg`.
const MAX_IOV: usize = 64;
/// Reading into an inbound remainder reserves at least this much spare room first.
const MIN_SPARE: usize = 4 * 1024;

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

/// Outbound bytes waiting for room in the socket's send buffer.
#[derive(Debug, Default)]
pub(crate) struct OutBuffer {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    head: usize,
    len: usize,
}

impl OutBuffer {
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
        if let Some(last) = self.chunks.back_mut() {
            if last.capacity() - last.len() >= bytes.len() {
                last.extend_from_slice(bytes);
                return;
            }
        }
        let mut chunk = Vec::with_capacity(bytes.len().max(CHUNK));
        chunk.extend_from_slice(bytes);
        self.chunks.push_back(chunk);
    }

    /// Appends an owned buffer; large ones are queued as they are, without a copy.
    pub(crate) fn push_vec(&mut self, bytes: Vec<u8>) {
        if bytes.len() < CHUNK {
            self.push_slice(&bytes);
        } else {
            self.len += bytes.len();
            self.chunks.push_back(bytes);
        }
    }

    /// Appends an owned buffer of which the first `skip` bytes were already sent.
    pub(crate) fn push_vec_from(&mut self, bytes: Vec<u8>, skip: usize) {
        if skip == 0 {
            self.push_vec(bytes);
        } else if self.chunks.is_empty() && bytes.len() - skip >= CHUNK {
            self.len += bytes.len() - skip;
            self.head = skip;
            self.chunks.push_back(bytes);
        } else {
            self.push_slice(&bytes[skip..]);
        }
    }

    /// Writes as much as one gathering `sendmsg` takes. Returns `(written, offered)`: fewer
    /// written than offered means the send buffer is full. `WouldBlock` means nothing was taken.
    pub(crate) fn write_to(&mut self, fd: RawFd) -> io::Result<(usize, usize)> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut count = 0;
        let mut offered = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
            let start = if i == 0 { self.head } else { 0 };
            slices[i] = IoSlice::new(&chunk[start..]);
            offered += chunk.len() - start;
            count += 1;
        }
        let n = socket::send_vectored(fd, &slices[..count])?;
        self.advance(n);
        Ok((n, offered))
    }

    /// Drops the first `n` bytes.
    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let front_left = self.chunks[0].len() - self.head;
            if n >= front_left {
                n -= front_left;
                self.chunks.pop_front();
                self.head = 0;
            } else {
                self.head += n;
                n = 0;
            }
        }
    }

    /// The queued bytes in order (for tests and for moving them elsewhere).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for (i, chunk) in self.chunks.iter().enumerate() {
            let start = if i == 0 { self.head } else { 0 };
            v.extend_from_slice(&chunk[start..]);
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
    fn out_buffer_push_vec_from_on_empty_keeps_vec() {
        let mut b = OutBuffer::default();
        let data: Vec<u8> = (0..CHUNK as u32 * 2).map(|i| i as u8).collect();
        b.push_vec_from(data.clone(), 10);
        assert_eq!(b.to_vec(), data[10..].to_vec());
        assert_eq!(b.chunks.len(), 1);
    }
}
