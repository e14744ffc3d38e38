//! `sendfile(2)`: bytes of a file sent to a socket by the kernel, without passing through
//! user space (the zero-copy path for file bodies on plain TCP; TLS needs the bytes in user
//! space and reads the file with `pread` instead).
//!
//! Semantics a caller must handle, all tested below on loopback:
//!
//! * **Partial sends.** A non-blocking socket takes what fits in its send buffer: the call
//!   returns fewer bytes than asked, and the caller continues from the advanced offset once the
//!   socket is writable again. With no room at all it fails with `WouldBlock`.
//! * **End of file.** `Ok(0)` with a non-zero length means the file ends at the offset (it was
//!   truncated after its length was read): the caller must not wait for more, since the
//!   promised length can no longer be sent, and should close the connection.
//! * **`SIGPIPE`.** `sendfile` has no `MSG_NOSIGNAL`: a peer that has gone away raises
//!   `SIGPIPE` in the calling thread before `EPIPE` is returned. Rust programs ignore `SIGPIPE`
//!   from `main` on (the standard library's default); a host that does not must block it on
//!   the threads that call this.
//!
//! The file's own offset is never used or moved (the offset is passed explicitly), so one open
//! file can feed several responses at once.
//!
//! The connection's output path is the caller: a file range queued with
//! `Conn::write_file` goes out with this as the socket takes it, resumed on writable.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::cvt_retry;

/// Most bytes one `sendfile` call transfers (the kernel's own cap, `MAX_RW_COUNT`).
pub(crate) const MAX_CHUNK: usize = 0x7fff_f000;

/// Sends up to `len` bytes of `file`, starting at `*offset`, to `socket`, and advances
/// `*offset` by the bytes sent, which it returns: fewer than `len` on a partial send, 0 at the
/// end of the file. `WouldBlock` when a non-blocking socket has no room; `EINTR` is retried.
pub(crate) fn sendfile(
    socket: RawFd,
    file: BorrowedFd<'_>,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset beyond off_t"))?;
    let count = len.min(MAX_CHUNK);
    let n = cvt_retry(|| {
        let take = inject!(super::faults::send(socket, count), count);
        // SAFETY: `socket` is the caller's open socket and `file` a borrowed open file for the
        // duration of the call, `off` is a valid off_t the kernel reads and updates, and no
        // user memory is touched otherwise.
        unsafe { libc::sendfile(socket, file.as_raw_fd(), &mut off, take) }
    })?;
    *offset = off as u64;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;
    use std::time::Duration;

    /// A temporary file with `data`, unlinked once opened (nothing to clean up).
    fn temp_file(data: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "eventide-sendfile-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(data).unwrap();
        f
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// A connected loopback pair: (server side, client side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn a_blocking_socket_gets_the_whole_range() {
        let data = pattern(3 * 1024 * 1024 + 17);
        let file = temp_file(&data);
        let (server, mut client) = pair();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got
        });
        // From an offset inside the file, to its end.
        let mut offset = 1000u64;
        let mut left = data.len() - 1000;
        while left > 0 {
            let n = sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, left).unwrap();
            assert!(n > 0);
            left -= n;
        }
        assert_eq!(offset, data.len() as u64);
        drop(server);
        let got = reader.join().unwrap();
        assert!(got == data[1000..], "bytes differ");
    }

    #[test]
    fn a_non_blocking_socket_takes_partial_sends_and_would_block() {
        let data = pattern(2 * 1024 * 1024);
        let file = temp_file(&data);
        let (server, mut client) = pair();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        server.set_nonblocking(true).unwrap();
        let (mut offset, mut got) = (0u64, Vec::with_capacity(data.len()));
        let (mut partial, mut blocked) = (false, false);
        let mut buf = vec![0u8; 256 * 1024];
        while got.len() < data.len() {
            let left = data.len() - offset as usize;
            if left > 0 {
                match sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, left) {
                    Ok(n) => {
                        assert!(n > 0, "0 bytes before the end of the file");
                        partial |= n < left;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => blocked = true,
                    Err(e) => panic!("sendfile: {e}"),
                }
            }
            // Drain what has arrived (blocking: something is always in flight here).
            if got.len() < offset as usize {
                let n = client.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert!(partial, "never a partial send with a 16 KiB send buffer");
        assert!(blocked, "never WouldBlock with a 16 KiB send buffer");
        assert_eq!(offset, data.len() as u64);
        assert!(got == data, "bytes differ");
    }

    #[test]
    fn the_end_of_the_file_gives_zero() {
        let file = temp_file(b"0123456789");
        let (server, mut client) = pair();
        let mut offset = 6;
        assert_eq!(
            sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, 100).unwrap(),
            4
        );
        assert_eq!(offset, 10);
        assert_eq!(
            sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, 100).unwrap(),
            0
        );
        let mut offset = 50;
        assert_eq!(
            sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, 100).unwrap(),
            0
        );
        assert_eq!(offset, 50);
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"6789");
    }

    #[test]
    fn errors_are_io_errors() {
        let file = temp_file(b"abc");
        let (server, client) = pair();
        // A socket is not a file sendfile can read from.
        let mut offset = 0;
        let e = sendfile(server.as_raw_fd(), client.as_fd(), &mut offset, 3).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ESPIPE | libc::EINVAL)),
            "{e}"
        );
        // The peer resets: ECONNRESET, then EPIPE (SIGPIPE is ignored in Rust programs).
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let start = std::time::Instant::now();
        let e = loop {
            let mut offset = 0;
            match sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, 3) {
                Err(e) => break e,
                Ok(_) => assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "sending to a reset peer never failed"
                ),
            }
        };
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)),
            "{e}"
        );
        let mut offset = u64::MAX;
        let e = sendfile(server.as_raw_fd(), file.as_fd(), &mut offset, 3).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
