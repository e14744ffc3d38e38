//! Listening sockets: TCP (one, or one `SO_REUSEPORT` copy per loop) and Unix-domain.
//!
//! A Unix socket path left behind by a crashed run is reused only if nothing answers on it:
//! binding finds the path in use, connecting to it is refused, so the stale file is removed.
//! A path some live server answers on, or a path that is not a socket, is an error. The socket
//! file is removed when the listener closes (clean stop), if it is still the one bound.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::Socket;

use crate::addr::Addr;
use crate::sys::socket::{self, ListenOptions};
use crate::tls::ServerConfig;

/// A listening socket owned by a loop.
pub(crate) struct Listener {
    pub sock: Socket,
    /// Whether it is currently registered with epoll (not backing off).
    pub armed: bool,
    /// The Unix socket file to remove on close, with its device and inode.
    unix_file: Option<(PathBuf, u64, u64)>,
    /// Connections accepted here start with a TLS handshake.
    pub tls: Option<ServerConfig>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.unix_file {
            // Remove the file only if it is still ours (not replaced by another server's).
            if let Ok(meta) = fs::symlink_metadata(path) {
                if meta.dev() == *dev && meta.ino() == *ino {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

/// Socket options applied to every TCP listener (accepted sockets inherit them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpOptions {
    pub listen: ListenOptions,
    pub nodelay: bool,
    pub send_buffer: Option<usize>,
    pub recv_buffer: Option<usize>,
}

/// Binds every address: per loop, the listeners it owns; and the bound addresses in order.
/// TCP addresses get one listener per loop in reuse-port mode (port 0 resolves once, later
/// copies bind the port the first one got); Unix addresses get one, on loop 0.
pub(crate) fn bind_all(
    addrs: &[(Addr, Option<ServerConfig>)],
    loops: usize,
    opts: TcpOptions,
) -> io::Result<(Vec<Vec<Listener>>, Vec<Addr>)> {
    let mut per_loop: Vec<Vec<Listener>> = (0..loops).map(|_| Vec::new()).collect();
    let mut bound_addrs = Vec::with_capacity(addrs.len());
    for (addr, tls) in addrs {
        match addr {
            Addr::Tcp(a) => {
                let copies = if opts.listen.reuse_port { loops } else { 1 };
                let mut bound = *a;
                for listeners in per_loop.iter_mut().take(copies) {
                    let sock = bind_tcp(bound, opts)
                        .map_err(|e| io::Error::new(e.kind(), format!("binding {bound}: {e}")))?;
                    if let Some(actual) = sock.local_addr()?.as_socket() {
                        bound = actual;
                    }
                    listeners.push(Listener {
                        sock,
                        armed: false,
                        unix_file: None,
                        tls: tls.clone(),
                    });
                }
                bound_addrs.push(Addr::Tcp(bound));
            }
            Addr::Unix(path) => {
                let mut listener = bind_unix(path, opts.listen.backlog).map_err(|e| {
                    io::Error::new(e.kind(), format!("binding unix:{}: {e}", path.display()))
                })?;
                listener.tls = tls.clone();
                per_loop[0].push(listener);
                bound_addrs.push(addr.clone());
            }
        }
    }
    Ok((per_loop, bound_addrs))
}

/// Binds the UDP addresses: per loop, its sockets; and the bound addresses. With reuse-port,
/// one socket per loop per address; otherwise one, on loop 0.
pub(crate) fn bind_udp_all(
    addrs: &[SocketAddr],
    loops: usize,
    reuse_port: bool,
    recv_buffer: usize,
) -> io::Result<(Vec<Vec<Socket>>, Vec<SocketAddr>)> {
    let mut per_loop: Vec<Vec<Socket>> = (0..loops).map(|_| Vec::new()).collect();
    let mut bound_addrs = Vec::with_capacity(addrs.len());
    for &a in addrs {
        let copies = if reuse_port { loops } else { 1 };
        let mut bound = a;
        for sockets in per_loop.iter_mut().take(copies) {
            let sock = crate::sys::udp::udp_socket(bound, reuse_port)
                .map_err(|e| io::Error::new(e.kind(), format!("binding udp {bound}: {e}")))?;
            sock.set_recv_buffer_size(recv_buffer)?;
            if let Some(actual) = sock.local_addr()?.as_socket() {
                bound = actual;
            }
            sockets.push(sock);
        }
        bound_addrs.push(bound);
    }
    Ok((per_loop, bound_addrs))
}

fn bind_tcp(addr: SocketAddr, opts: TcpOptions) -> io::Result<Socket> {
    let sock = socket::tcp_listener(addr, opts.listen)?;
    // Accepted sockets inherit these from the listener: one call, not one per connection.
    sock.set_nodelay(opts.nodelay)?;
    if let Some(n) = opts.send_buffer {
        sock.set_send_buffer_size(n)?;
    }
    if let Some(n) = opts.recv_buffer {
        sock.set_recv_buffer_size(n)?;
    }
    Ok(sock)
}

fn bind_unix(path: &Path, backlog: i32) -> io::Result<Listener> {
    let sock = match socket::unix_listener(path, backlog) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_if_stale(path)?;
            socket::unix_listener(path, backlog)?
        }
        other => other?,
    };
    let meta = fs::symlink_metadata(path)?;
    let unix_file = Some((path.to_owned(), meta.dev(), meta.ino()));
    Ok(Listener {
        sock,
        armed: false,
        unix_file,
        tls: None,
    })
}

/// Removes a socket file nothing answers on; anything else at `path` is an error.
fn remove_if_stale(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "the path exists and is not a socket",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a live server answers on this path",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("eventide: removing stale socket file {}", path.display());
            fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("checking whether the socket is stale: {e}"),
        )),
    }
}
