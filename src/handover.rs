//! Listener handover between two processes of the same service, for restarts that refuse no
//! connection: the running server passes its listening sockets to its successor over a Unix
//! socket (`SCM_RIGHTS`), stops accepting, drains and exits, while the successor accepts
//! on the very same sockets — the kernel's accept queues are never closed in between.
//!
//! The exchange, over a `SOCK_SEQPACKET` socket at the handover path (`→` from the running
//! server, `←` from the successor; every message is one packet):
//!
//! ```text
//! ← connect                            the successor, started with the same path
//! → eventide-handover/1 listeners=N    (checked: the peer runs as the same user)
//! → listener unlink=0|1      × N       one listening socket each; unlink=1: a Unix socket
//!                                      whose file the successor now removes when it stops
//! → control                            the handover socket itself, for the next successor
//! ← ready                              the successor serves (its loops accept)
//! → draining                           the old server stops accepting and drains
//! ```
//!
//! Until `ready`, the old server goes on accepting: a successor that dies or gives up leaves
//! it serving as before. `ARCHITECTURE.md` ("Restarts without refusing a connection") has
//! the reasoning and the races.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::listener::{self, ListenFd, ListenSocket};
use crate::sys::fdpass::{self, MAX_FDS};

/// How long either side waits for the other's next message.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the running server waits for a successor to start serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const HELLO: &str = "eventide-handover/1";

/// Where a server waits for its successor, or takes its listeners from its predecessor.
///
/// [`Handover::new`] connects to the handover socket at a path. If a server runs there, this
/// process receives its listening sockets: start a server on them
/// ([`take_listeners`](Handover::take_listeners), [`Builder::bind_fd`](crate::Builder::bind_fd))
/// and run it with [`Server::run_with_handover`](crate::Server::run_with_handover), which
/// tells the old one to drain. If none runs there, bind as usual; the handover socket is
/// created at the path for the next successor.
///
/// ```no_run
/// # use eventide::{Action, Conn, Handler, Refusal, Handover, Server, ShutdownSignals};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     type Message = ();
/// #     fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
/// #         Ok(())
/// #     }
/// #     fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action { Action::Continue }
/// # }
/// let signals = ShutdownSignals::install()?;
/// let mut handover = Handover::new("/run/echo/handover.sock")?;
/// let inherited = handover.take_listeners();
/// let mut builder = Server::builder();
/// if inherited.is_empty() {
///     builder = builder.bind("0.0.0.0:7000"); // the first instance
/// }
/// for fd in inherited {
///     builder = builder.bind_fd(fd); // a restart: the predecessor's sockets
/// }
/// let server = builder.start(|_| Echo)?;
/// server.run_with_handover(signals, handover)?; // until a signal, or the next successor
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Only processes of the same user may take the listeners (checked with `SO_PEERCRED`); put
/// the path in a directory only the service can reach. UDP sockets are not handed over.
pub struct Handover {
    /// Where successors connect: this process's, or inherited from the predecessor.
    control: Option<ListenSocket>,
    /// The predecessor, waiting to hear that this process serves.
    predecessor: Option<Socket>,
    listeners: Vec<ListenFd>,
    drain_timeout: Duration,
    path: PathBuf,
}

impl Handover {
    /// Takes the listeners of the server waiting at `path`, or, where none waits (no socket
    /// file, or a stale one), creates the handover socket there.
    pub fn new(path: impl AsRef<Path>) -> io::Result<Handover> {
        let path = path.as_ref().to_owned();
        let context =
            |e: io::Error| io::Error::new(e.kind(), format!("handover at {}: {e}", path.display()));
        let mut handover = Handover {
            control: None,
            predecessor: None,
            listeners: Vec::new(),
            drain_timeout: Duration::from_secs(30),
            path: path.clone(),
        };
        match seqpacket().and_then(|s| s.connect(&SockAddr::unix(&path)?).map(|()| s)) {
            Ok(sock) => handover.take_over(sock).map_err(context)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ECONNREFUSED)) => {
                handover.control = Some(bind_control(&path).map_err(context)?);
            }
            Err(e) => return Err(context(e)),
        }
        Ok(handover)
    }

    /// How long an old server lets its connections finish by themselves once a successor
    /// has taken over, before it stops gracefully (default 30 s). The drain ends as soon as
    /// the last connection closes.
    pub fn drain_timeout(mut self, timeout: Duration) -> Handover {
        self.drain_timeout = timeout;
        self
    }

    /// The listening sockets taken from the predecessor (empty when none ran; a second call
    /// returns none).
    pub fn take_listeners(&mut self) -> Vec<ListenFd> {
        std::mem::take(&mut self.listeners)
    }

    /// Whether a predecessor handed its listeners to this process.
    pub fn has_predecessor(&self) -> bool {
        self.predecessor.is_some()
    }

    /// The predecessor's side of the exchange, up to the listeners and the handover socket.
    fn take_over(&mut self, sock: Socket) -> io::Result<()> {
        sock.set_read_timeout(Some(REPLY_TIMEOUT))?;
        sock.set_write_timeout(Some(REPLY_TIMEOUT))?;
        same_user(&sock)?;
        let (hello, _) = recv(&sock)?;
        let count = match hello.strip_prefix(HELLO).map(str::trim) {
            Some(rest) => rest
                .strip_prefix("listeners=")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| protocol(&hello))?,
            None if hello.starts_with("refused") => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the running server {hello}"),
                ))
            }
            None => return Err(protocol(&hello)),
        };
        for _ in 0..count {
            let (msg, fd) = recv_one_fd(&sock)?;
            let unlink = match msg.as_str() {
                "listener unlink=1" => true,
                "listener unlink=0" => false,
                _ => return Err(protocol(&msg)),
            };
            self.listeners.push(ListenFd::with(fd, None, unlink));
        }
        let (msg, fd) = recv_one_fd(&sock)?;
        if msg != "control" {
            return Err(protocol(&msg));
        }
        let control = Socket::from(fd);
        control.set_nonblocking(true)?;
        self.control = Some(ListenSocket::with_path(control, &self.path)?);
        self.predecessor = Some(sock);
        log::info!("eventide: took {count} listeners over from the running server");
        Ok(())
    }

    /// Tells the predecessor this process serves, and waits for it to agree to drain.
    pub(crate) fn confirm_predecessor(&mut self) -> io::Result<()> {
        let Some(sock) = self.predecessor.take() else {
            return Ok(());
        };
        let unconfirmed = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("the running server did not confirm the handover ({e}); it serves on"),
            )
        };
        send(&sock, &format!("ready pid={}", std::process::id()), &[]).map_err(unconfirmed)?;
        match recv(&sock).map_err(unconfirmed)?.0.as_str() {
            "draining" => Ok(()),
            other => Err(unconfirmed(protocol(other))),
        }
    }

    /// The handover socket to wait on, while this process may still hand over.
    pub(crate) fn control_fd(&self) -> Option<BorrowedFd<'_>> {
        self.control.as_ref().map(AsFd::as_fd)
    }

    pub(crate) fn drain(&self) -> Duration {
        self.drain_timeout
    }

    /// A successor is knocking: hand it `sockets`. `true` once it serves them (this process
    /// must stop accepting and drain); `false` if there was no one after all or the exchange
    /// failed (logged; this process serves on).
    pub(crate) fn serve_successor(&mut self, sockets: &[Weak<ListenSocket>]) -> bool {
        let Some(control) = self.control.as_ref() else {
            return false;
        };
        let conn = match control.sock.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                log::warn!("eventide: accepting a successor failed: {e}");
                return false;
            }
        };
        match self.hand_over(&conn, sockets) {
            Ok(()) => {
                self.control = None; // the successor's now (marked: its file stays)
                true
            }
            Err(e) => {
                log::warn!("eventide: handing the listeners over failed ({e}); serving on");
                false
            }
        }
    }

    fn hand_over(&self, conn: &Socket, sockets: &[Weak<ListenSocket>]) -> io::Result<()> {
        let control = self.control.as_ref().expect("checked by serve_successor");
        conn.set_nonblocking(false)?;
        conn.set_write_timeout(Some(REPLY_TIMEOUT))?;
        conn.set_read_timeout(Some(READY_TIMEOUT))?;
        same_user(conn)?;
        let Some(live) = sockets
            .iter()
            .map(Weak::upgrade)
            .collect::<Option<Vec<Arc<_>>>>()
        else {
            send(conn, "refused: stopping", &[])?;
            return Err(io::Error::other("this server is stopping"));
        };
        send(conn, &format!("{HELLO} listeners={}", live.len()), &[])?;
        for sock in &live {
            let msg = format!("listener unlink={}", u8::from(sock.owns_path()));
            send(conn, &msg, &[sock.as_fd()])?;
        }
        send(conn, "control", &[control.as_fd()])?;
        let (reply, _) = recv(conn)?;
        if !reply.starts_with("ready") {
            return Err(if reply.is_empty() {
                io::Error::other("the successor gave up before serving")
            } else {
                protocol(&reply)
            });
        }
        send(conn, "draining", &[])?;
        for sock in live.iter().map(|s| &**s).chain([control]) {
            sock.hand_over();
        }
        log::info!("eventide: the successor serves ({reply})");
        Ok(())
    }
}

impl fmt::Debug for Handover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handover")
            .field("path", &self.path)
            .field("has_predecessor", &self.has_predecessor())
            .field("listeners", &self.listeners.len())
            .finish()
    }
}

fn seqpacket() -> io::Result<Socket> {
    Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)
}

/// The handover socket at `path` (a stale file from a crashed run is replaced).
fn bind_control(path: &Path) -> io::Result<ListenSocket> {
    let bind = || -> io::Result<Socket> {
        let sock = seqpacket()?;
        sock.bind(&SockAddr::unix(path)?)?;
        sock.listen(8)?;
        sock.set_nonblocking(true)?;
        Ok(sock)
    };
    let sock = match bind() {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            listener::remove_if_stale(path)?;
            bind()?
        }
        other => other?,
    };
    ListenSocket::with_path(sock, path)
}

fn same_user(sock: &Socket) -> io::Result<()> {
    let (peer, me) = (fdpass::peer_uid(sock.as_fd())?, fdpass::euid());
    if peer != me && peer != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("the other side runs as uid {peer}, not {me}"),
        ));
    }
    Ok(())
}

fn send(sock: &Socket, msg: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    fdpass::send(sock.as_fd(), msg.as_bytes(), fds)
}

/// One message as text, and its descriptors (an empty message: the other side closed).
fn recv(sock: &Socket) -> io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = [0u8; 256];
    let (n, fds) = fdpass::recv(sock.as_fd(), &mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    debug_assert!(fds.len() <= MAX_FDS);
    Ok((text, fds))
}

fn recv_one_fd(sock: &Socket) -> io::Result<(String, OwnedFd)> {
    let (msg, mut fds) = recv(sock)?;
    match fds.len() {
        1 => Ok((msg, fds.pop().expect("one"))),
        n => Err(protocol(&format!("{msg} (with {n} descriptors, not 1)"))),
    }
}

fn protocol(msg: &str) -> io::Error {
    let msg = if msg.is_empty() {
        "the other side closed the connection".to_string()
    } else {
        format!("unexpected handover message {msg:?}")
    };
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
