//! Socket calls: listeners, `accept4`, and the read / write paths of connections.
//!
//! Writes use `send`/`sendmsg` with `MSG_NOSIGNAL`, so a peer that has gone away yields `EPIPE`
//! instead of killing the process with `SIGPIPE`, whatever the application did with the signal.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use super::cvt_retry;
use crate::addr::Addr;

/// Options for a listening TCP socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenOptions {
    /// Length of the accept queue (the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// `SO_REUSEPORT`: several sockets share the port and the kernel spreads connections.
    pub reuse_port: bool,
}

/// Creates a non-blocking, close-on-exec TCP listener with `SO_REUSEADDR` bound to `addr`.
pub(crate) fn tcp_listener(addr: SocketAddr, opts: ListenOptions) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if opts.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket)
}

/// Creates a non-blocking, close-on-exec Unix-domain stream listener bound to `path`.
pub(crate) fn unix_listener(path: &Path, backlog: i32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// A non-blocking, close-on-exec stream socket for connecting to `addr` (TCP sockets get
/// `TCP_NODELAY` as accepted ones do).
pub(crate) fn stream_socket(addr: &Addr, nodelay: bool) -> io::Result<Socket> {
    match addr {
        Addr::Tcp(a) => {
            let s = Socket::new(
                Domain::for_address(*a),
                Type::STREAM.nonblocking().cloexec(),
                Some(Protocol::TCP),
            )?;
            s.set_nodelay(nodelay)?;
            Ok(s)
        }
        Addr::Unix(_) => Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None),
    }
}

/// How a non-blocking `connect` started.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Connected already (usual for Unix sockets).
    Connected,
    /// `EINPROGRESS`: completion is reported by writability, the result by `SO_ERROR`.
    Pending,
    /// `EAGAIN` from a Unix socket whose listener's backlog is full: try again later.
    Busy,
}

/// Starts connecting `sock` to `addr`. An `Err` is the attempt failing at once (refused,
/// no such file, unreachable).
pub(crate) fn start_connect(sock: &Socket, addr: &Addr) -> io::Result<Progress> {
    let target = match addr {
        Addr::Tcp(a) => SockAddr::from(*a),
        Addr::Unix(p) => SockAddr::unix(p)?,
    };
    loop {
        #[cfg(feature = "faults")]
        let result = match super::faults::connect() {
            Ok(()) => sock.connect(&target),
            Err(errno) => Err(io::Error::from_raw_os_error(errno)),
        };
        #[cfg(not(feature = "faults"))]
        let result = sock.connect(&target);
        return match result {
            Ok(()) => Ok(Progress::Connected),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINPROGRESS) => Ok(Progress::Pending),
                Some(libc::EAGAIN) => Ok(Progress::Busy),
                Some(libc::EINTR) => continue,
                // A second connect on a socket whose first one is still in progress.
                Some(libc::EALREADY) => Ok(Progress::Pending),
                Some(libc::EISCONN) => Ok(Progress::Connected),
                _ => Err(e),
            },
        };
    }
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the next connection of the accept queue and its
/// peer address. `WouldBlock` when the queue is empty. (Through `syscall(2)`, like the
/// per-message calls: see [`raw`].)
pub(crate) fn accept(listener: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    // SAFETY: `try_init` hands the closure a zeroed sockaddr_storage and its length; accept4
    // writes at most `*len` bytes there and updates `*len`, which is the contract try_init needs.
    let (fd, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            cvt_retry(|| {
                inject!(super::faults::accept());
                raw(libc::syscall(
                    libc::SYS_accept4,
                    listener,
                    storage.cast::<libc::sockaddr>(),
                    len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ))
            })
        })
    }?;
    // SAFETY: accept4 returned a new descriptor that nothing else owns (a descriptor is a
    // non-negative `int`, so the conversion from the syscall's `long` is exact).
    Ok((unsafe { OwnedFd::from_raw_fd(fd as RawFd) }, addr))
}

/// The result of `libc::syscall` (a `c_long`) as the `ssize_t` the libc wrappers return.
///
/// The per-message calls (recv, recvmsg, send, sendmsg) go through `syscall(2)` rather than
/// glibc's wrappers: those are thread-cancellation points, and in a multi-threaded process
/// (every server has its loop threads and a signal thread) each call enables and disables
/// asynchronous cancellation around the syscall, about 60 instructions per call (measured with
/// callgrind). eventide never cancels threads, so the plain syscall does the same thing;
/// `syscall(2)` still returns -1 and sets `errno` on failure.
#[inline]
fn raw(ret: libc::c_long) -> isize {
    ret as isize
}

/// `recv(2)` into `buf`; `Ok(0)` means end of stream.
///
/// `recv` rather than `read`: on a socket both end in the same receive path, but `read` first
/// goes through the VFS layer (file position lock, access checks, fsnotify), which the kernel
/// profile of a pipelined HTTP run showed as a few percent of the receive cost.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = cvt_retry(|| {
        // (`fd` named first: the closure then captures as it did before the hook existed.)
        let (fd, len) = (fd, inject!(super::faults::recv(fd, buf.len()), buf.len()));
        // SAFETY: `buf` is valid for writes of `len <= buf.len()` bytes during the call; no
        // address is asked for (null pointers are allowed by recvfrom).
        unsafe {
            raw(libc::syscall(
                libc::SYS_recvfrom,
                fd,
                buf.as_mut_ptr(),
                len,
                0,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            ))
        }
    })?;
    Ok(n as usize)
}

/// One scattering receive (`recvmsg(2)`, a `readv` without the VFS layer) that fills the spare
/// capacity of `vec` first and then `extra`, so a connection that already holds a partial
/// message reads into its own buffer without a copy, and a burst larger than that still fits in
/// one call. Bytes read into `vec` are appended to it (its length grows); returns
/// `(into_vec, into_extra)`.
pub(crate) fn read_append(
    fd: RawFd,
    vec: &mut Vec<u8>,
    extra: &mut [u8],
) -> io::Result<(usize, usize)> {
    let spare: &mut [MaybeUninit<u8>] = vec.spare_capacity_mut();
    let spare_len = spare.len();
    let mut iov = [
        libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare_len,
        },
        libc::iovec {
            iov_base: extra.as_mut_ptr().cast(),
            iov_len: extra.len(),
        },
    ];
    // SAFETY: an all-zero msghdr is a valid value (null name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    let n = cvt_retry(|| {
        #[cfg(feature = "faults")]
        {
            // A read cut short fills the spare capacity first, like the kernel.
            let cap = inject!(super::faults::recv(fd, spare_len + extra.len()), ());
            iov[0].iov_len = spare_len.min(cap);
            iov[1].iov_len = (cap - iov[0].iov_len).min(extra.len());
            msg.msg_iov = iov.as_mut_ptr();
        }
        // SAFETY: `msg` points at two iovecs of writable memory of the stated lengths (the
        // vector's spare capacity and `extra`), which stay valid and unaliased for the call.
        unsafe {
            raw(libc::syscall(
                libc::SYS_recvmsg,
                fd,
                &mut msg as *mut libc::msghdr,
                0,
            ))
        }
    })? as usize;
    let into_vec = n.min(spare_len);
    // SAFETY: the kernel initialised the first `into_vec` bytes of the spare capacity.
    unsafe { vec.set_len(vec.len() + into_vec) };
    Ok((into_vec, n - into_vec))
}

/// `send(2)` with `MSG_NOSIGNAL`.
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = cvt_retry(|| {
        let (fd, len) = (fd, inject!(super::faults::send(fd, buf.len()), buf.len()));
        // SAFETY: `buf` is valid for reads of `len <= buf.len()` bytes during the call.
        unsafe {
            raw(libc::syscall(
                libc::SYS_sendto,
                fd,
                buf.as_ptr(),
                len,
                libc::MSG_NOSIGNAL,
                std::ptr::null::<libc::sockaddr>(),
                0 as libc::socklen_t,
            ))
        }
    })?;
    Ok(n as usize)
}

/// Gathering write: `sendmsg(2)` of several buffers with `MSG_NOSIGNAL` (a `writev` that cannot
/// raise `SIGPIPE`). At most `IOV_MAX` buffers are passed; the rest wait for the next call.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    if bufs.len() == 1 {
        return send(fd, &bufs[0]);
    }
    let count = bufs.len().min(IOV_MAX);
    // SAFETY: an all-zero msghdr is a valid value (null name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = count as _;
    #[cfg(feature = "faults")]
    let mut cut = Vec::new();
    let n = cvt_retry(|| {
        #[cfg(feature = "faults")]
        {
            let total = bufs[..count].iter().map(|b| b.len()).sum();
            let cap = inject!(super::faults::send(fd, total), ());
            // Only a short write is cut (an uncut call allocates nothing, as without faults).
            if cap < total {
                cut = super::faults::cut(&bufs[..count], cap);
                msg.msg_iov = cut.as_mut_ptr();
                msg.msg_iovlen = cut.len() as _;
            } else {
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = count as _;
            }
        }
        // SAFETY: `msg` points at `count` valid iovecs borrowed from `bufs` for the whole call
        // (or, cut short by the fault injector, at iovecs into the same buffers).
        unsafe {
            raw(libc::syscall(
                libc::SYS_sendmsg,
                fd,
                &msg as *const libc::msghdr,
                libc::MSG_NOSIGNAL,
            ))
        }
    })?;
    Ok(n as usize)
}

/// The most buffers one `sendmsg` takes on Linux.
pub(crate) const IOV_MAX: usize = 1024;

/// `shutdown(2)` of the write side: the peer reads end-of-stream after the bytes already sent.
pub(crate) fn shutdown_write(fd: &impl AsFd) -> io::Result<()> {
    #[cfg(feature = "faults")]
    super::faults::shutdown().map_err(io::Error::from_raw_os_error)?;
    SockRef::from(fd).shutdown(Shutdown::Write)
}

/// Whether the kernel still holds the connection open (it has a peer): after a reset or a
/// timeout its state is closed, and `getpeername` answers `ENOTCONN`.
pub(crate) fn is_connected(fd: &impl AsFd) -> bool {
    SockRef::from(fd).peer_addr().is_ok()
}

/// Reads `TCP_NODELAY`.
pub(crate) fn nodelay(fd: &impl AsFd) -> io::Result<bool> {
    SockRef::from(fd).nodelay()
}

/// Sets `TCP_NODELAY`.
pub(crate) fn set_nodelay(fd: &impl AsFd, on: bool) -> io::Result<()> {
    SockRef::from(fd).set_nodelay(on)
}

/// Reads and clears `SO_ERROR`.
pub(crate) fn take_error(fd: &impl AsFd) -> io::Result<Option<io::Error>> {
    SockRef::from(fd).take_error()
}

/// `getsockname(2)` as a std address (`None` for a non-IP socket).
pub(crate) fn local_addr(fd: &impl AsFd) -> io::Result<Option<SocketAddr>> {
    Ok(SockRef::from(fd).local_addr()?.as_socket())
}

/// Closes `fd` right away with `SO_LINGER` zero, so the peer sees a reset at once (used to
/// refuse a connection over the limit without leaving it in `TIME_WAIT` on our side).
pub(crate) fn abort(fd: OwnedFd) {
    let _ = SockRef::from(&fd).set_linger(Some(std::time::Duration::ZERO));
    drop(fd);
}

/// Number of bytes waiting in the socket's receive queue (`FIONREAD`).
pub(crate) fn readable_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for that write.
    super::cvt(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// Number of bytes in the socket's send queue: not yet acknowledged by the peer on TCP, not
/// yet read by the peer on a Unix socket (`SIOCOUTQ`, which is `TIOCOUTQ`).
pub(crate) fn unacknowledged_bytes(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one c_int through the pointer, which is
    // valid for that write.
    super::cvt(unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) })?;
    Ok(n.max(0) as usize)
}

/// Whether closing the socket now is a clean FIN that risks no reset: nothing unread in its
/// receive queue (closing over unread bytes sends a reset) and nothing it sent still waiting
/// for the peer (a reset would make the peer's kernel drop it). `fin_sent`: the write side
/// is shut, so the send queue may hold the FIN (one sequence number), which the peer
/// acknowledges late (Linux delays that acknowledgement) and closing does not lose. An error
/// says no.
pub(crate) fn is_quiet(fd: RawFd, fin_sent: bool) -> bool {
    matches!(readable_bytes(fd), Ok(0))
        && matches!(unacknowledged_bytes(fd), Ok(n) if n <= usize::from(fin_sent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    fn listener() -> (Socket, SocketAddr) {
        let l = tcp_listener(
            "127.0.0.1:0".parse().unwrap(),
            ListenOptions {
                backlog: 16,
                reuse_port: false,
            },
        )
        .unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        (l, addr)
    }

    #[test]
    fn accept_would_block_then_returns_connection() {
        let (l, addr) = listener();
        assert_eq!(
            accept(l.as_raw_fd()).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        let client = TcpStream::connect(addr).unwrap();
        // The connection is queued by the time connect returns on loopback.
        let (fd, peer) = accept(l.as_raw_fd()).unwrap();
        assert_eq!(peer.as_socket().unwrap(), client.local_addr().unwrap());
        // accept4 set O_NONBLOCK on the new socket.
        let mut buf = [0u8; 4];
        assert_eq!(
            read(fd.as_raw_fd(), &mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }

    #[test]
    fn read_append_spills_into_extra() {
        let (l, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (fd, _) = accept(l.as_raw_fd()).unwrap();
        client.write_all(b"hello world").unwrap();
        let mut vec = Vec::with_capacity(4);
        vec.extend_from_slice(b"ab");
        let mut extra = [0u8; 64];
        // Wait until all 11 bytes are queued, so one recvmsg sees them (bounded: loopback
        // delivers them at once, but the machine may be busy).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while readable_bytes(fd.as_raw_fd()).unwrap() < 11 {
            assert!(
                std::time::Instant::now() < deadline,
                "11 bytes written on loopback never arrived"
            );
            std::thread::yield_now();
        }
        let (a, b) = read_append(fd.as_raw_fd(), &mut vec, &mut extra).unwrap();
        assert_eq!(a, vec.capacity() - 2);
        assert_eq!(a + b, 11);
        let mut all = vec[2..].to_vec();
        all.extend_from_slice(&extra[..b]);
        assert_eq!(all, b"hello world");
        assert_eq!(&vec[..2], b"ab");
    }

    #[test]
    fn send_vectored_and_shutdown() {
        let (l, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (fd, _) = accept(l.as_raw_fd()).unwrap();
        let n = send_vectored(fd.as_raw_fd(), &[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).unwrap();
        assert_eq!(n, 4);
        shutdown_write(&fd).unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abcd");
    }

    #[test]
    fn send_to_closed_peer_is_an_error_not_a_signal() {
        let (l, addr) = listener();
        let client = TcpStream::connect(addr).unwrap();
        let (fd, _) = accept(l.as_raw_fd()).unwrap();
        SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client); // reset
        let mut failed = false;
        for _ in 0..1000 {
            match send(fd.as_raw_fd(), b"x") {
                Ok(_) => std::thread::yield_now(),
                Err(e) => {
                    assert!(matches!(
                        e.kind(),
                        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
                    ));
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
    }

    #[test]
    fn bind_conflict_is_a_clear_error() {
        let (_l, addr) = listener();
        let err = tcp_listener(
            addr,
            ListenOptions {
                backlog: 16,
                reuse_port: false,
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse);
    }

    /// A socket is quiet once nothing is unread and the peer acknowledged what it was sent;
    /// after a shutdown the FIN alone does not count.
    #[test]
    fn quiet_means_nothing_unread_and_everything_acknowledged() {
        let (l, addr) = listener();
        let mut client = TcpStream::connect(addr).unwrap();
        let (owned, _) = accept(l.as_raw_fd()).unwrap();
        let fd = owned.as_raw_fd();
        let until = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !cond() {
                assert!(std::time::Instant::now() < deadline, "never {what}");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        };
        until("quiet when new", &|| is_quiet(fd, false));
        client.write_all(b"unread").unwrap();
        until("the bytes arrive", &|| readable_bytes(fd).unwrap() == 6);
        assert!(!is_quiet(fd, false), "unread bytes");
        let mut buf = [0u8; 6];
        assert_eq!(read(fd, &mut buf).unwrap(), 6);
        until("quiet once read", &|| is_quiet(fd, false));
        assert_eq!(send(fd, b"reply").unwrap(), 5);
        until("the reply is acknowledged", &|| {
            unacknowledged_bytes(fd).unwrap() == 0
        });
        assert!(is_quiet(fd, false));
        let mut reply = [0u8; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"reply");
        // Shut for writing: the FIN may wait for its (delayed) acknowledgement.
        shutdown_write(&owned).unwrap();
        until("quiet with the FIN sent", &|| is_quiet(fd, true));
        assert_eq!(client.read(&mut reply).unwrap(), 0, "the peer sees the FIN");
    }
}
