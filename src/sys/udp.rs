//! UDP sockets and batched datagram I/O: `recvmmsg` / `sendmmsg` move up to a batch of
//! datagrams per syscall; with a batch of one, plain `recvfrom` / `sendto` are used.
//!
//! Receiving passes `MSG_TRUNC`, so the length reported for a datagram larger than its buffer
//! is its real length: a truncated datagram is always recognisable, never silently cut.

use std::io;
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::cvt_retry;

/// A non-blocking, close-on-exec UDP socket bound to `addr` (`SO_REUSEPORT` if asked).
pub(crate) fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

/// One received datagram, as reported by [`RecvBatch::get`].
pub(crate) struct Received<'a> {
    pub data: &'a [u8],
    /// Its real length (larger than `data.len()` when truncated).
    pub len: usize,
    pub peer: Option<SocketAddr>,
}

/// Buffers for receiving up to `batch` datagrams of up to `max` bytes with one syscall.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    max: usize,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    count: usize,
}

// SAFETY: the raw pointers inside `iovs` and `msgs` point only into this struct's own heap
// buffers (`bufs`, `addrs`, `iovs`), which move with it; nothing is shared with another thread.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub(crate) fn new(batch: usize, max: usize) -> RecvBatch {
        let batch = batch.max(1);
        let max = max.max(1);
        // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr (null pointers,
        // zero lengths); the pointers are filled in by `prepare` before each use.
        let zeroed_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zeroed_msg: libc::mmsghdr = unsafe { mem::zeroed() };
        RecvBatch {
            bufs: vec![0; batch * max],
            max,
            addrs: vec![zeroed_addr; batch],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            msgs: vec![zeroed_msg; batch],
            count: 0,
        }
    }

    /// Points every header at its buffer and address slot (the vectors never reallocate, but
    /// pointers are refreshed each time so the struct may have moved).
    fn prepare(&mut self) {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.msgs.len() {
            // SAFETY: `i * max` is within `bufs`, whose length is `batch * max`.
            self.iovs[i] = libc::iovec {
                iov_base: unsafe { base.add(i * self.max) }.cast(),
                iov_len: self.max,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
    }

    /// Datagrams one [`recv`](Self::recv) can return.
    pub(crate) fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Receives what is queued, up to the batch size. `WouldBlock` when nothing is.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.prepare();
        let n = if self.msgs.len() == 1 {
            let hdr = &mut self.msgs[0].msg_hdr;
            let n = cvt_retry(|| {
                inject!(super::faults::udp_recv(1));
                // SAFETY: `hdr` describes one writable buffer of `max` bytes and one address
                // slot, both owned by `self` and valid for the call.
                unsafe { libc::recvmsg(fd, &mut *hdr, libc::MSG_TRUNC) }
            })?;
            self.msgs[0].msg_len = n as libc::c_uint;
            1
        } else {
            let vlen = self.msgs.len() as libc::c_uint;
            // SAFETY: `msgs` holds `vlen` headers prepared above, each pointing at buffers and
            // address slots owned by `self`; a null timeout means no timeout.
            cvt_retry(|| {
                let vlen = inject!(super::faults::udp_recv(vlen as usize), vlen as usize);
                // SAFETY: as above; `vlen` is at most the number of headers.
                unsafe {
                    libc::recvmmsg(
                        fd,
                        self.msgs.as_mut_ptr(),
                        vlen as libc::c_uint,
                        libc::MSG_TRUNC,
                        std::ptr::null_mut(),
                    )
                }
            })? as usize
        };
        self.count = n;
        Ok(n)
    }

    /// The `i`-th datagram of the last [`recv`](Self::recv).
    pub(crate) fn get(&self, i: usize) -> Received<'_> {
        let len = self.msgs[i].msg_len as usize;
        let start = i * self.max;
        let data = &self.bufs[start..start + len.min(self.max)];
        let namelen = self.msgs[i].msg_hdr.msg_namelen;
        Received {
            data,
            len,
            peer: sockaddr_to_std(&self.addrs[i], namelen),
        }
    }
}

/// Converts a kernel-filled `sockaddr_storage` to a std address.
fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in of at least its size;
            // sockaddr_storage is aligned for every address type.
            let a: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Encodes a std address for the kernel; returns the storage and its length.
fn std_to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Datagrams waiting to be sent, packed in one buffer, sent with `sendmmsg`.
pub(crate) struct SendQueue {
    data: Vec<u8>,
    /// `(offset, len, destination)` of each queued datagram, oldest first.
    items: std::collections::VecDeque<(usize, usize, SocketAddr)>,
    batch: usize,
    // Scratch space for one sendmmsg, kept between calls so sending never allocates.
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the scratch vectors are rebuilt before every use and point only
// into this struct's own heap buffers; nothing is shared with another thread.
unsafe impl Send for SendQueue {}

impl SendQueue {
    pub(crate) fn new(batch: usize) -> SendQueue {
        SendQueue {
            data: Vec::new(),
            items: std::collections::VecDeque::new(),
            batch: batch.max(1),
            addrs: Vec::new(),
            iovs: Vec::new(),
            msgs: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn push(&mut self, payload: &[u8], to: SocketAddr) {
        let off = self.data.len();
        self.data.extend_from_slice(payload);
        self.items.push_back((off, payload.len(), to));
    }

    /// Sends queued datagrams, up to a batch per syscall, until the queue is empty or the
    /// socket would block. Returns `(sent, failed)`: an error other than `WouldBlock` (say an
    /// `ECONNREFUSED` the kernel reports for an earlier datagram) drops the datagram at the
    /// head, counted as failed.
    pub(crate) fn flush(&mut self, fd: RawFd) -> (usize, usize) {
        let (mut sent, mut failed) = (0, 0);
        while !self.items.is_empty() {
            match self.send_some(fd) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n;
                    self.items.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    failed += 1;
                    self.items.pop_front();
                }
            }
        }
        if self.items.is_empty() {
            self.data.clear();
        }
        (sent, failed)
    }

    fn send_some(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.items.len().min(self.batch);
        if n == 1 {
            let (off, len, to) = self.items[0];
            let (addr, alen) = std_to_sockaddr(&to);
            let buf = &self.data[off..off + len];
            cvt_retry(|| {
                inject!(super::faults::udp_send(1));
                // SAFETY: `buf` and `addr` are valid for reads for the duration of the call.
                unsafe {
                    libc::sendto(
                        fd,
                        buf.as_ptr().cast(),
                        len,
                        libc::MSG_NOSIGNAL,
                        (&addr as *const libc::sockaddr_storage).cast(),
                        alen,
                    )
                }
            })?;
            return Ok(1);
        }
        self.addrs.clear();
        self.iovs.clear();
        self.msgs.clear();
        let base = self.data.as_mut_ptr();
        for &(off, len, to) in self.items.iter().take(n) {
            self.addrs.push(std_to_sockaddr(&to));
            // SAFETY: `off + len` is within `data`: each payload was appended whole.
            self.iovs.push(libc::iovec {
                iov_base: unsafe { base.add(off) }.cast(),
                iov_len: len,
            });
        }
        for i in 0..n {
            // SAFETY: all-zero is a valid mmsghdr; its pointers are set just below.
            let mut m: libc::mmsghdr = unsafe { mem::zeroed() };
            m.msg_hdr.msg_name = (&mut self.addrs[i].0 as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = self.addrs[i].1;
            m.msg_hdr.msg_iov = &mut self.iovs[i];
            m.msg_hdr.msg_iovlen = 1;
            self.msgs.push(m);
        }
        // SAFETY: `msgs` holds `n` headers pointing into `addrs`, `iovs` and `data`, none of
        // which is touched (or moved) until the call returns.
        let sent = cvt_retry(|| {
            let count = inject!(super::faults::udp_send(n), n);
            // SAFETY: see above; `count <= n`, the number of headers.
            unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_NOSIGNAL,
                )
            }
        })?;
        Ok(sent as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_receive_reports_truncation_and_peers() {
        let server = udp_socket("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = server.local_addr().unwrap().as_socket().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"short", addr).unwrap();
        client.send_to(&[7u8; 100], addr).unwrap();
        let mut batch = RecvBatch::new(8, 16);
        let mut got = Vec::new();
        while got.len() < 2 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let r = batch.get(i);
                        got.push((r.data.to_vec(), r.len, r.peer));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let me = client.local_addr().unwrap();
        assert_eq!(got[0], (b"short".to_vec(), 5, Some(me)));
        assert_eq!(got[1].0, vec![7u8; 16]);
        assert_eq!(got[1].1, 100, "the real length of a truncated datagram");
    }

    #[test]
    fn send_queue_batches_and_single() {
        let server = udp_socket("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = client.local_addr().unwrap();
        for batch in [1, 4] {
            let mut q = SendQueue::new(batch);
            for i in 0..10u8 {
                q.push(&[i; 3], to);
            }
            assert_eq!(q.flush(server.as_raw_fd()), (10, 0));
            assert!(q.is_empty());
            let mut buf = [0u8; 8];
            for i in 0..10u8 {
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[i; 3]);
                assert_eq!(from, server.local_addr().unwrap().as_socket().unwrap());
            }
        }
    }
}
