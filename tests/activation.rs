//! Starting from inherited listening sockets: systemd socket activation (with
//! `systemd-socket-activate`, and with the variables set by hand), and `Builder::from_std`.

mod demo_util;
mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Command;

use demo_util::{missing, Demo, TempDir, TIMEOUT};
use eventide::{Addr, ListenFd, Server};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

fn get(mut s: impl Read + Write) -> String {
    s.write_all(REQUEST).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

fn assert_hello(response: &str) {
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("Hello, World!"), "{response}");
}

/// The variables are read once and removed, as `sd_listen_fds(unset_environment=1)` does,
/// whether or not they were meant for this process. (Only this test touches them, and no
/// descriptor is taken: `LISTEN_FDS=0`.)
#[test]
fn the_variables_are_removed_for_children() {
    for pid in [std::process::id().to_string(), "1".to_string()] {
        std::env::set_var("LISTEN_PID", &pid);
        std::env::set_var("LISTEN_FDS", "0");
        std::env::set_var("LISTEN_FDNAMES", "");
        assert!(ListenFd::from_systemd().unwrap().is_empty());
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            assert!(std::env::var_os(var).is_none(), "{var} left for children");
        }
    }
    std::env::set_var("LISTEN_PID", std::process::id().to_string());
    std::env::set_var("LISTEN_FDS", "many");
    let e = ListenFd::from_systemd().unwrap_err();
    assert!(e.to_string().contains("\"many\""), "{e}");
    assert!(std::env::var_os("LISTEN_FDS").is_none());
}

/// A launcher that does what systemd does: a listening socket on descriptor 3, the three
/// variables naming this process, then exec of the demo (which keeps the process id).
#[test]
fn the_http_demo_serves_the_socket_it_was_passed() {
    const LAUNCHER: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="web")
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let Some(bin) = demo_util::example("http") else {
        return;
    };
    if Command::new("python3").arg("-V").output().is_err() {
        return missing::<()>("python3").unwrap_or(());
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-c", LAUNCHER])
        .arg(bin)
        .args(["--addr", "127.0.0.1:1", "--loops", "2"]);
    let demo = Demo::spawn(cmd);
    assert_ne!(
        demo.addr, "127.0.0.1:1",
        "--addr is ignored under activation"
    );
    let s = TcpStream::connect(demo.tcp()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_hello(&get(s));
    demo.stop("-TERM");
}

/// The real tool, on a Unix socket: it execs the demo at the first connection, and the
/// socket file stays (systemd's, not the demo's) after the demo stops.
#[test]
fn systemd_socket_activate_starts_the_http_demo() {
    let Some(bin) = demo_util::example("http") else {
        return;
    };
    let tool = "systemd-socket-activate";
    if Command::new(tool).arg("--version").output().is_err() {
        return missing::<()>(&format!("{tool} (Debian package systemd)")).unwrap_or(());
    }
    let dir = TempDir::new("activation");
    let path = dir.join("http.sock");
    let mut cmd = Command::new(tool);
    cmd.arg("-l")
        .arg(&path)
        .arg(bin)
        .args(["--addr", "127.0.0.1:1", "--loops", "1"]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The tool prints nothing on stdout; the demo's line comes once it runs. Wait until the
    // tool's socket takes a connection (its file exists from `bind`, before `listen`: a
    // connect in between is refused), which makes it exec the demo; then read the demo's line.
    let s = util::wait_for(&format!("{tool} listens on its socket"), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{tool} exited: {status}");
        }
        match UnixStream::connect(&path) {
            Ok(s) => Some(s),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
                None
            }
            Err(e) => panic!("connecting to {tool}'s socket: {e}"),
        }
    });
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let demo = Demo::adopt(child);
    assert_eq!(demo.addr, format!("unix:{}", path.display()));
    assert_hello(&get(s));
    demo.stop("-INT");
    assert!(
        path.exists(),
        "a passed socket's file is its owner's to remove"
    );
}

/// `Builder::from_std` serves a listener the application made; its address is reported.
#[test]
fn from_std_serves_a_std_listener() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let server = Server::builder()
        .from_std(std_listener)
        .loops(1)
        .start(|_| eventide::http::HttpServer::new(Hello))
        .unwrap();
    assert_eq!(server.local_addrs(), &[Addr::Tcp(addr)]);
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_hello(&get(s));

    // A descriptor that is not a listening socket is refused with a clear error.
    let not_listening = std::fs::File::open("/dev/null").unwrap();
    let e = Server::builder()
        .bind_fd(std::os::fd::OwnedFd::from(not_listening))
        .start(|_| eventide::http::HttpServer::new(Hello))
        .unwrap_err();
    assert!(
        e.to_string().contains("not a listening stream socket"),
        "{e}"
    );
}

struct Hello;

impl eventide::http::Service for Hello {
    fn call(&mut self, _: &eventide::http::Request<'_>, res: &mut eventide::http::Response<'_>) {
        res.body(b"Hello, World!");
    }
}

/// A listening socket with `SO_REUSEPORT`, as a predecessor in reuse-port mode makes one per
/// loop.
fn reuse_port_listener(addr: std::net::SocketAddr) -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(128).unwrap();
    s
}

/// In reuse-port mode each loop accepts only on listeners of its own. A successor with more
/// loops than the sockets it inherited (its predecessor ran fewer) binds the missing copies
/// with `SO_REUSEPORT` to the same address, so every loop serves; one socket without
/// `SO_REUSEPORT` for several loops is refused with the reason.
#[test]
fn reuse_port_loops_beyond_the_inherited_sockets_get_copies_of_their_own() {
    let first = reuse_port_listener("127.0.0.1:0".parse().unwrap());
    let addr = first.local_addr().unwrap().as_socket().unwrap();
    let second = reuse_port_listener(addr);
    let server = Server::builder()
        .bind_fd(std::os::fd::OwnedFd::from(first))
        .bind_fd(std::os::fd::OwnedFd::from(second))
        .reuse_port(true)
        .loops(4)
        .start(|_| eventide::http::HttpServer::new(Hello))
        .unwrap();
    assert_eq!(server.local_addrs(), &[Addr::Tcp(addr)]);
    // The kernel spreads connections over the group by their source port: with 400, a loop
    // without a listener of its own is the only way one accepts none.
    for _ in 0..400 {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        assert_hello(&get(s));
    }
    let accepted: Vec<u64> = server.stats().loops.iter().map(|l| l.accepted).collect();
    assert!(
        accepted.iter().all(|&n| n > 0),
        "every loop accepts: {accepted:?}"
    );
    server.stop();
    server.join().unwrap();

    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = Server::builder()
        .from_std(plain)
        .reuse_port(true)
        .loops(2)
        .start(|_| eventide::http::HttpServer::new(Hello))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("without SO_REUSEPORT"), "{e}");
}
