//! Outbound connections: non-blocking connect, completion, refused / timed out, contexts,
//! connecting from callbacks and from other threads; Unix-domain sockets; handle messages.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use eventide::{
    Action, Addr, CloseReason, Conn, ConnId, Connect, ConnectError, Handler, LoopCx, Refusal,
    Server,
};
use util::TIMEOUT;

#[derive(Debug)]
enum Event {
    Open {
        outbound: bool,
        context: Option<u32>,
        peer: Option<SocketAddr>,
    },
    Data(Vec<u8>),
    ConnectError {
        kind: ErrorKind,
        context: Option<u32>,
    },
    Closed {
        id: ConnId,
        reason: String,
    },
    Message(String),
}

/// Inbound connections echo; outbound ones send a greeting and report what comes back.
struct Probe {
    tx: mpsc::Sender<Event>,
    dial_at_boot: Option<Connect>,
}

impl Handler for Probe {
    type State = bool; // outbound
    type Message = String;

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        if let Some(c) = self.dial_at_boot.take() {
            cx.connect(c);
        }
    }

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<bool, Refusal> {
        let outbound = conn.is_outbound();
        let context = conn.take_context::<u32>();
        let _ = self.tx.send(Event::Open {
            outbound,
            context,
            peer: conn.peer_addr(),
        });
        if outbound {
            conn.write(b"hello from outbound");
        }
        Ok(outbound)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, outbound: &mut bool) -> Action {
        let data = conn.input();
        if *outbound {
            let _ = self.tx.send(Event::Data(data.to_vec()));
        } else {
            conn.write(data);
        }
        conn.consume(data.len());
        Action::Continue
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut bool, text: String) -> Action {
        conn.write(text.as_bytes());
        let _ = self.tx.send(Event::Message(text));
        Action::Continue
    }

    fn on_connect_error(&mut self, _: &mut LoopCx<'_>, mut error: ConnectError) {
        let context = error.take_context::<u32>();
        let _ = self.tx.send(Event::ConnectError {
            kind: error.kind(),
            context,
        });
    }

    fn on_close(&mut self, id: ConnId, _: bool, reason: &CloseReason) {
        let _ = self.tx.send(Event::Closed {
            id,
            reason: reason.as_str().to_string(),
        });
    }
}

fn probe_server(addr: &str, dial_at_boot: Option<Connect>) -> (Server, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let mut dial = dial_at_boot;
    let server = Server::builder()
        .bind(addr)
        .loops(1)
        .start(move |_| Probe {
            tx: tx.clone(),
            dial_at_boot: dial.take(),
        })
        .unwrap();
    (server, rx)
}

fn next(rx: &mpsc::Receiver<Event>) -> Event {
    rx.recv_timeout(TIMEOUT).expect("an event")
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let target = closed_port();
    let (server, rx) = probe_server("127.0.0.1:0", Some(Connect::new(target).context(7u32)));
    match next(&rx) {
        Event::ConnectError { kind, context } => {
            assert_eq!(kind, ErrorKind::ConnectionRefused);
            assert_eq!(context, Some(7));
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let t = server.stats().total();
    assert_eq!((t.connects, t.connect_errors, t.connected), (1, 1, 0));
}

/// A listener whose accept queue is full and never accepted: the kernel drops our SYN, so the
/// connect can only end by its timeout. Loopback only.
#[test]
fn connect_that_cannot_complete_times_out() {
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    full.listen(0).unwrap();
    let target = full.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue; connects past its capacity stall in SYN_SENT.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&target.into());
        fillers.push(s);
    }
    let c = Connect::new(target)
        .timeout(Duration::from_millis(300))
        .context(9u32);
    let (_server, rx) = probe_server("127.0.0.1:0", Some(c));
    match next(&rx) {
        Event::ConnectError { kind, context } => {
            assert_eq!(kind, ErrorKind::TimedOut);
            assert_eq!(context, Some(9));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A server dials itself: the outbound side greets, the inbound side echoes.
#[test]
fn outbound_connection_uses_the_same_handler() {
    let (tx, rx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| Probe {
            tx: tx.clone(),
            dial_at_boot: None,
        })
        .unwrap();
    let addr = server.local_addr();
    // From another thread, on the least loaded loop.
    server.connect(Connect::new(addr).context(1u32)).unwrap();
    let mut opens = Vec::new();
    let mut echoed = Vec::new();
    while opens.len() < 2 || echoed.len() < 19 {
        match next(&rx) {
            Event::Open {
                outbound,
                context,
                peer,
            } => opens.push((outbound, context, peer)),
            Event::Data(d) => echoed.extend(d),
            other => panic!("unexpected {other:?}"),
        }
    }
    opens.sort_by_key(|o| o.0);
    assert!(!opens[0].0 && opens[0].1.is_none(), "the inbound side");
    assert_eq!(
        (opens[1].0, opens[1].1, opens[1].2),
        (true, Some(1), Some(addr))
    );
    assert_eq!(echoed, b"hello from outbound");
    let t = server.stats().total();
    assert_eq!((t.connects, t.connected, t.accepted), (1, 1, 1));
    // And through a loop handle.
    server
        .loop_handle(1)
        .unwrap()
        .connect(Connect::new(addr).context(2u32))
        .unwrap();
    let mut seen_context = None;
    while seen_context.is_none() {
        if let Event::Open {
            outbound: true,
            context,
            ..
        } = next(&rx)
        {
            seen_context = context;
        }
    }
    assert_eq!(seen_context, Some(2));
}

fn temp_sock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eventide-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn unix_echo_and_socket_file_removed_on_stop() {
    let path = temp_sock("echo.sock");
    let unix = format!("unix:{}", path.display());
    let (server, rx) = probe_server(&unix, None);
    assert_eq!(server.local_addrs()[0], Addr::Unix(path.clone()));
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"over unix").unwrap();
    let mut back = [0u8; 9];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"over unix");
    drop(c);
    loop {
        if let Event::Closed { id, reason } = next(&rx) {
            assert_eq!(id.loop_index(), 0);
            assert_eq!(
                reason, "peer_closed",
                "end of stream, then the default close"
            );
            break;
        }
    }
    server.stop();
    server.join().unwrap();
    assert!(!path.exists(), "the socket file is removed on a clean stop");
}

#[test]
fn binding_over_a_stale_socket_file_works_and_a_live_one_is_refused() {
    let path = temp_sock("stale.sock");
    // A crashed run: the file stays, nothing answers.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let unix = format!("unix:{}", path.display());
    let (server, _rx) = probe_server(&unix, None);
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    drop(c);
    // A second server on the same live path is refused, and does not remove the file.
    let (tx, _rx2) = mpsc::channel();
    let err = Server::builder()
        .bind(unix.as_str())
        .loops(1)
        .start(move |_| Probe {
            tx: tx.clone(),
            dial_at_boot: None,
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(path.exists());
    // A regular file is never removed.
    let file = temp_sock("not-a-socket");
    std::fs::write(&file, b"data").unwrap();
    let (tx, _rx3) = mpsc::channel();
    let err = Server::builder()
        .bind(format!("unix:{}", file.display()))
        .loops(1)
        .start(move |_| Probe {
            tx: tx.clone(),
            dial_at_boot: None,
        })
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    drop(server);
}

#[test]
fn outbound_unix_connect_and_missing_path() {
    let path = temp_sock("dial.sock");
    let unix: Addr = format!("unix:{}", path.display()).parse().unwrap();
    let (server, rx) = probe_server(&format!("unix:{}", path.display()), None);
    server.connect(Connect::new(unix).context(5u32)).unwrap();
    let mut echoed = Vec::new();
    let mut saw_outbound = false;
    while echoed.len() < 19 {
        match next(&rx) {
            Event::Open {
                outbound: true,
                context,
                peer,
            } => {
                assert_eq!((context, peer), (Some(5), None));
                saw_outbound = true;
            }
            Event::Data(d) => echoed.extend(d),
            _ => {}
        }
    }
    assert!(saw_outbound);
    assert_eq!(echoed, b"hello from outbound");
    let missing: Addr = format!("unix:{}", temp_sock("nobody.sock").display())
        .parse()
        .unwrap();
    server.connect(Connect::new(missing)).unwrap();
    loop {
        if let Event::ConnectError { kind, .. } = next(&rx) {
            assert_eq!(kind, ErrorKind::NotFound);
            break;
        }
    }
}

/// `ConnHandle::send` reaches `on_message` with the connection, its state and the message, of
/// the handler's `Message` type; another type is refused at the call, naming both.
#[test]
fn messages_reach_the_handler() {
    struct Keep(mpsc::Sender<eventide::ConnHandle>, mpsc::Sender<Event>);
    impl Handler for Keep {
        type State = ();
        type Message = String;
        fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
            self.0.send(conn.handle()).unwrap();
            Ok(())
        }
        fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action {
            Action::Continue
        }
        fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), text: String) -> Action {
            conn.write(text.as_bytes());
            self.1.send(Event::Message(text)).unwrap();
            Action::Continue
        }
    }
    let (htx, hrx) = mpsc::channel();
    let (etx, erx) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Keep(htx.clone(), etx.clone()))
        .unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let handle = hrx.recv_timeout(TIMEOUT).unwrap();
    let wrong = handle.send("a &str").unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::InvalidInput);
    let says = wrong.to_string();
    assert!(
        says.starts_with("the connection's handler takes messages of type ")
            && says.contains("String, not &str"),
        "{says}"
    );
    handle.send("a message".to_string()).unwrap();
    match erx.recv_timeout(TIMEOUT).unwrap() {
        Event::Message(m) => assert_eq!(m, "a message"),
        other => panic!("{other:?}"),
    }
    let mut got = [0u8; 9];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"a message");
    drop(client);
    util::wait_until("closed", || handle.is_closed());
    assert_eq!(
        handle.send("late".to_string()).unwrap_err().kind(),
        ErrorKind::NotConnected
    );
}
