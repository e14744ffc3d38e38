//! Passing descriptors between processes over a Unix-domain socket (`SCM_RIGHTS`), and the
//! peer's credentials (`SO_PEERCRED`), for the listener handover.
//!
//! The handover runs over `SOCK_SEQPACKET`: every message arrives whole and alone with the
//! descriptors sent with it, so a reader never has to find where one message ends.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt_retry;

/// The most descriptors one message carries (the kernel's limit, `SCM_MAX_FD`, is 253).
pub(crate) const MAX_FDS: usize = 16;

/// Room for a control message holding `MAX_FDS` descriptors, aligned for `cmsghdr`.
#[repr(C)]
struct CmsgBuf {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; 128],
}

fn cmsg_space(fds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((fds * size_of::<RawFd>()) as u32) as usize }
}

/// Sends `data` with `fds` attached (they stay open here; the receiver gets duplicates).
pub(crate) fn send(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS && cmsg_space(MAX_FDS) <= 128);
    let mut cmsg = CmsgBuf {
        _align: [],
        bytes: [0; 128],
    };
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len()) as _;
        // SAFETY: `msg_control` points at `cmsg`, large enough for one header and
        // `fds.len()` descriptors (checked above), so CMSG_FIRSTHDR is non-null and CMSG_DATA
        // has room for the descriptors.
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN((fds.len() * size_of::<RawFd>()) as u32) as _;
            let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` and everything it points to (`iov`, `data`, `cmsg`) outlive the call.
    let sent = cvt_retry(|| unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })?;
    if sent as usize != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "a message went out cut",
        ));
    }
    Ok(())
}

/// Receives one message into `buf`: its length (0 at end of stream) and the descriptors
/// that came with it, close-on-exec. A message cut short or with more descriptors than
/// [`MAX_FDS`] is an error (and whatever descriptors did arrive are closed).
pub(crate) fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cmsg = CmsgBuf {
        _align: [],
        bytes: [0; 128],
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields used are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
    msg.msg_controllen = cmsg_space(MAX_FDS) as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `cmsg`, which outlive the call.
    let n =
        cvt_retry(|| unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of well-formed
    // control messages; CMSG_FIRSTHDR/NXTHDR walk them within that length, and each
    // SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 descriptors that are now ours.
    unsafe {
        let mut hdr = libc::CMSG_FIRSTHDR(&msg);
        while !hdr.is_null() {
            if (*hdr).cmsg_level == libc::SOL_SOCKET && (*hdr).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*hdr).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(hdr).cast::<RawFd>();
                for i in 0..payload / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            hdr = libc::CMSG_NXTHDR(&msg, hdr);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message carried more descriptors than expected",
        ));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message was too long",
        ));
    }
    Ok((n as usize, fds))
}

/// The user id of the process at the other end of a connected Unix socket.
pub(crate) fn peer_uid(sock: BorrowedFd<'_>) -> io::Result<u32> {
    let mut cred = MaybeUninit::<libc::ucred>::zeroed();
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` has room for a ucred and `len` says so; the kernel writes at most that.
    cvt_retry(|| unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            cred.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    // SAFETY: zero-initialised and (partly) filled by the kernel: every bit pattern is valid.
    Ok(unsafe { cred.assume_init() }.uid)
}

/// This process's effective user id.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn descriptors_cross_with_their_message() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;

        let (a, b) = UnixDatagram::pair().unwrap();
        let (near, far) = UnixStream::pair().unwrap();
        send(a.as_fd(), b"pair", &[near.as_fd(), near.as_fd()]).unwrap();
        drop(near);
        let mut buf = [0u8; 16];
        let (n, fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"pair");
        assert_eq!(fds.len(), 2);
        let mut passed = UnixStream::from(fds.into_iter().next().unwrap());
        passed.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        (&far).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        assert_eq!(peer_uid(a.as_fd()).unwrap(), euid());
        send(a.as_fd(), b"bare", &[]).unwrap();
        let (n, fds) = recv(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fds.len()), (&b"bare"[..], 0));
    }
}
