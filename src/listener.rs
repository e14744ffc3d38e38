//! Listening sockets: TCP (one, or one `SO_REUSEPORT` copy per loop) and Unix-domain, bound
//! here or inherited ([`ListenFd`]: systemd socket activation, a predecessor's handover, a
//! descriptor or std listener the application passes).
//!
//! A Unix socket path left behind by a crashed run is reused only if nothing answers on it:
//! binding finds the path in use, connecting to it is refused, so the stale file is removed.
//! A path some live server answers on, or a path that is not a socket, is an error. The socket
//! file is removed when the listener closes (clean stop), if it is still the one bound and
//! this process owns it: not after a handover (the successor serves it now), and never for a
//! socket systemd or the application passed in (its owner removes it).

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Release};
use std::sync::{Arc, Weak};

use socket2::{Domain, Socket, Type};

use crate::addr::Addr;
use crate::sys::socket::{self, ListenOptions};
use crate::tls::ServerConfig;

/// A listening socket, shared by the loop that accepts on it and the server (which may hand
/// it to a successor process).
pub(crate) struct ListenSocket {
    pub sock: Socket,
    /// The Unix socket file to remove on close, with its device and inode.
    unix_file: Option<(PathBuf, u64, u64)>,
    /// The file belongs to a successor now: leave it.
    handed_over: AtomicBool,
}

impl ListenSocket {
    fn new(sock: Socket, unix_file: Option<(PathBuf, u64, u64)>) -> ListenSocket {
        ListenSocket {
            sock,
            unix_file,
            handed_over: AtomicBool::new(false),
        }
    }

    /// A Unix socket bound at `path`, whose file it removes when it closes.
    pub(crate) fn with_path(sock: Socket, path: &Path) -> io::Result<ListenSocket> {
        let meta = fs::symlink_metadata(path)?;
        let file = (path.to_owned(), meta.dev(), meta.ino());
        Ok(ListenSocket::new(sock, Some(file)))
    }

    /// Whether closing it removes its socket file (a Unix socket this process owns).
    pub(crate) fn owns_path(&self) -> bool {
        self.unix_file.is_some() && !self.handed_over.load(Acquire)
    }

    /// A successor serves it now: its socket file stays when this process closes it.
    pub(crate) fn hand_over(&self) {
        self.handed_over.store(true, Release);
    }
}

impl AsRawFd for ListenSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for ListenSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl Drop for ListenSocket {
    fn drop(&mut self) {
        if let (Some((path, dev, ino)), false) = (&self.unix_file, self.handed_over.load(Acquire)) {
            remove_if_ours(path, *dev, *ino);
        }
    }
}

/// Removes the socket file at `path` if it is still the one with this device and inode (not
/// replaced by another server's).
pub(crate) fn remove_if_ours(path: &Path, dev: u64, ino: u64) {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.dev() == dev && meta.ino() == ino {
            let _ = fs::remove_file(path);
        }
    }
}

/// A listening socket owned by a loop.
pub(crate) struct Listener {
    pub sock: Arc<ListenSocket>,
    /// Whether it is currently registered with epoll (not backing off).
    pub armed: bool,
    /// Connections accepted here start with a TLS handshake.
    pub tls: Option<ServerConfig>,
}

/// A listening stream socket this process was given instead of binding it: by systemd
/// socket activation ([`ListenFd::from_systemd`]), by a predecessor in a
/// [`Handover`](crate::Handover), or by the application (an `OwnedFd`, a
/// `std::net::TcpListener`, a `std::os::unix::net::UnixListener`). Serve it with
/// [`Builder::bind_fd`](crate::Builder::bind_fd).
///
/// The descriptor is checked when the server starts: it must be a listening TCP or
/// Unix-domain stream socket. It is made non-blocking and close-on-exec then.
#[derive(Debug)]
pub struct ListenFd {
    fd: OwnedFd,
    name: Option<String>,
    owns_path: bool,
}

impl ListenFd {
    pub(crate) fn with(fd: OwnedFd, name: Option<String>, owns_path: bool) -> ListenFd {
        ListenFd {
            fd,
            name,
            owns_path,
        }
    }

    /// The listening sockets systemd passed to this process (socket activation: `LISTEN_PID`,
    /// `LISTEN_FDS`, `LISTEN_FDNAMES`), in order; empty when it passed none. Like
    /// `sd_listen_fds(3)`, it removes the variables, so child processes do not take the
    /// sockets for theirs, and marks the descriptors close-on-exec.
    ///
    /// Call it at the start of `main`, before other threads run: removing environment
    /// variables races with threads reading the environment.
    ///
    /// ```no_run
    /// # use eventide::{Action, Conn, Handler, Refusal, ListenFd, Server};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type State = ();
    /// #     type Message = ();
    /// #     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
    /// #         Ok(())
    /// #     }
    /// #     fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action { Action::Continue }
    /// # }
    /// let mut builder = Server::builder();
    /// let passed = ListenFd::from_systemd()?;
    /// if passed.is_empty() {
    ///     builder = builder.bind("127.0.0.1:8080"); // started by hand
    /// }
    /// for fd in passed {
    ///     builder = builder.bind_fd(fd);
    /// }
    /// let server = builder.start(|_| Echo)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_systemd() -> io::Result<Vec<ListenFd>> {
        let passed = crate::sys::activation::take()?;
        Ok(passed
            .into_iter()
            .map(|(fd, name)| ListenFd::with(fd, name, false))
            .collect())
    }

    /// The name systemd gave it (`FileDescriptorName=`, from `LISTEN_FDNAMES`), if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<Addr> {
        bound_addr(&self.fd)
    }
}

/// The address a socket is bound to: TCP, or a Unix path (abstract and unnamed Unix
/// addresses have no [`Addr`]).
fn bound_addr(fd: &impl AsFd) -> io::Result<Addr> {
    let addr = socket2::SockRef::from(fd).local_addr()?;
    if let Some(a) = addr.as_socket() {
        return Ok(Addr::Tcp(a));
    }
    match addr.as_pathname() {
        Some(path) => Ok(Addr::Unix(path.to_owned())),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an abstract or unnamed Unix socket address",
        )),
    }
}

impl From<OwnedFd> for ListenFd {
    fn from(fd: OwnedFd) -> ListenFd {
        ListenFd::with(fd, None, false)
    }
}

impl From<std::net::TcpListener> for ListenFd {
    fn from(l: std::net::TcpListener) -> ListenFd {
        ListenFd::from(OwnedFd::from(l))
    }
}

impl From<std::os::unix::net::UnixListener> for ListenFd {
    fn from(l: std::os::unix::net::UnixListener) -> ListenFd {
        ListenFd::from(OwnedFd::from(l))
    }
}

impl From<ListenFd> for OwnedFd {
    fn from(l: ListenFd) -> OwnedFd {
        l.fd
    }
}

impl AsFd for ListenFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for ListenFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A std listener [`Builder::from_std`](crate::Builder::from_std) takes over.
pub trait StdListener: Into<ListenFd> + sealed::Sealed {}

impl StdListener for std::net::TcpListener {}
impl StdListener for std::os::unix::net::UnixListener {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::TcpListener {}
    impl Sealed for std::os::unix::net::UnixListener {}
}

/// Socket options applied to every TCP listener (accepted sockets inherit them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpOptions {
    pub listen: ListenOptions,
    pub nodelay: bool,
    pub send_buffer: Option<usize>,
    pub recv_buffer: Option<usize>,
}

/// What binding produced: per loop, the listeners it owns; the addresses in order; and every
/// listening socket, for a handover.
pub(crate) struct Bound {
    pub per_loop: Vec<Vec<Listener>>,
    pub addrs: Vec<Addr>,
    pub sockets: Vec<Weak<ListenSocket>>,
}

impl Bound {
    fn push(&mut self, loop_index: usize, sock: ListenSocket, tls: Option<ServerConfig>) {
        let sock = Arc::new(sock);
        self.sockets.push(Arc::downgrade(&sock));
        self.per_loop[loop_index].push(Listener {
            sock,
            armed: false,
            tls,
        });
    }
}

/// Binds every address, then adopts the inherited listeners. TCP addresses get one listener
/// per loop in reuse-port mode (port 0 resolves once, later copies bind the port the first
/// one got); Unix addresses get one, on loop 0. Inherited listeners go to loop 0, or in
/// reuse-port mode round the loops, address by address (see [`spread_inherited`]).
pub(crate) fn bind_all(
    addrs: &[(Addr, Option<ServerConfig>)],
    inherited: Vec<(ListenFd, Option<ServerConfig>)>,
    loops: usize,
    opts: TcpOptions,
) -> io::Result<Bound> {
    let mut bound = Bound {
        per_loop: (0..loops).map(|_| Vec::new()).collect(),
        addrs: Vec::with_capacity(addrs.len() + inherited.len()),
        sockets: Vec::new(),
    };
    for (addr, tls) in addrs {
        match addr {
            Addr::Tcp(a) => {
                let copies = if opts.listen.reuse_port { loops } else { 1 };
                let mut port = *a;
                for i in 0..copies {
                    let sock = bind_tcp(port, opts)
                        .map_err(|e| io::Error::new(e.kind(), format!("binding {port}: {e}")))?;
                    if let Some(actual) = sock.local_addr()?.as_socket() {
                        port = actual;
                    }
                    bound.push(i, ListenSocket::new(sock, None), tls.clone());
                }
                bound.addrs.push(Addr::Tcp(port));
            }
            Addr::Unix(path) => {
                let sock = bind_unix(path, opts.listen.backlog).map_err(|e| {
                    io::Error::new(e.kind(), format!("binding unix:{}: {e}", path.display()))
                })?;
                bound.push(0, sock, tls.clone());
                bound.addrs.push(addr.clone());
            }
        }
    }
    // Adopted, grouped by address (in the order the addresses first appear).
    let mut groups: Vec<(Addr, Vec<Adopted>)> = Vec::new();
    for (fd, tls) in inherited {
        let raw = fd.as_raw_fd();
        let (sock, addr) = adopt(fd, opts)
            .map_err(|e| io::Error::new(e.kind(), format!("inherited descriptor {raw}: {e}")))?;
        match groups.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, copies)) => copies.push((sock, tls)),
            None => groups.push((addr, vec![(sock, tls)])),
        }
    }
    for (addr, copies) in groups {
        if opts.listen.reuse_port {
            spread_inherited(&mut bound, &addr, copies, opts)?;
        } else {
            for (sock, tls) in copies {
                bound.push(0, sock, tls);
            }
        }
        if !bound.addrs.contains(&addr) {
            bound.addrs.push(addr);
        }
    }
    Ok(bound)
}

/// An inherited listener, set up, with its TLS configuration.
type Adopted = (ListenSocket, Option<ServerConfig>);

/// Reuse-port mode, where each loop accepts only on its own listeners: the inherited copies of
/// one address go round the loops, and every loop must get one. A predecessor with as many
/// loops passed one per loop; one with fewer passed too few, and the missing copies are bound
/// here with `SO_REUSEPORT` to the same address (joining the kernel's group of them, whose
/// accept queues live on). A TCP listener without `SO_REUSEPORT` cannot be copied: refused,
/// since the loops without a copy would never accept. A Unix listener (no copies possible) is
/// served by the loops it reaches, as a bound one is by loop 0.
fn spread_inherited(
    bound: &mut Bound,
    addr: &Addr,
    copies: Vec<Adopted>,
    opts: TcpOptions,
) -> io::Result<()> {
    let loops = bound.per_loop.len();
    let have = copies.len();
    let reusable = copies
        .first()
        .map_or(Ok(false), |(s, _)| s.sock.reuse_port())?;
    let tls = copies.first().and_then(|(_, tls)| tls.clone());
    for (i, (sock, tls)) in copies.into_iter().enumerate() {
        bound.push(i % loops, sock, tls);
    }
    let Addr::Tcp(a) = addr else {
        return Ok(());
    };
    if have >= loops {
        return Ok(());
    }
    if !reusable {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "inherited listener {a}: {have} socket(s) without SO_REUSEPORT for {loops} \
                 loops in reuse-port mode, so {} loop(s) would never accept; pass one socket \
                 per loop, set SO_REUSEPORT on it, or start without reuse_port",
                loops - have
            ),
        ));
    }
    for i in have..loops {
        let sock = bind_tcp(*a, opts).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding a copy of inherited listener {a} for loop {i}: {e}"),
            )
        })?;
        bound.push(i, ListenSocket::new(sock, None), tls.clone());
    }
    Ok(())
}

/// Checks an inherited descriptor is a listening TCP or Unix stream socket and sets it up as
/// a bound one would be.
fn adopt(fd: ListenFd, opts: TcpOptions) -> io::Result<(ListenSocket, Addr)> {
    let owns_path = fd.owns_path;
    let sock = Socket::from(OwnedFd::from(fd));
    let not_listening = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a listening stream socket ({what})"),
        )
    };
    let domain = sock.domain().map_err(|_| not_listening("not a socket"))?;
    if sock.r#type()? != Type::STREAM {
        return Err(not_listening("not a stream socket"));
    }
    if !sock.is_listener()? {
        return Err(not_listening("listen() was not called"));
    }
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)?;
    let addr = bound_addr(&sock)?;
    match domain {
        Domain::IPV4 | Domain::IPV6 => {
            tune_tcp(&sock, opts)?;
            Ok((ListenSocket::new(sock, None), addr))
        }
        Domain::UNIX => match (&addr, owns_path) {
            (Addr::Unix(path), true) => Ok((ListenSocket::with_path(sock, path)?, addr)),
            _ => Ok((ListenSocket::new(sock, None), addr)),
        },
        _ => Err(not_listening("not TCP or Unix-domain")),
    }
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
    tune_tcp(&sock, opts)?;
    Ok(sock)
}

/// Accepted sockets inherit these from the listener: one call, not one per connection.
fn tune_tcp(sock: &Socket, opts: TcpOptions) -> io::Result<()> {
    sock.set_nodelay(opts.nodelay)?;
    if let Some(n) = opts.send_buffer {
        sock.set_send_buffer_size(n)?;
    }
    if let Some(n) = opts.recv_buffer {
        sock.set_recv_buffer_size(n)?;
    }
    Ok(())
}

fn bind_unix(path: &Path, backlog: i32) -> io::Result<ListenSocket> {
    let sock = match socket::unix_listener(path, backlog) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            remove_if_stale(path)?;
            socket::unix_listener(path, backlog)?
        }
        other => other?,
    };
    ListenSocket::with_path(sock, path)
}

/// Removes a socket file nothing answers on; anything else at `path` is an error.
pub(crate) fn remove_if_stale(path: &Path) -> io::Result<()> {
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
