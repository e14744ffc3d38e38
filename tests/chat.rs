//! The chat demo driven by 50 scripted clients, WebSocket (tungstenite) and TCP lines mixed:
//! each enters as a guest and picks a nickname, every message any of them sends reaches every
//! other client intact and in its order, joins, renames and leaves are announced, nicknames
//! are unique, a client that says nothing is cut by the idle timeout, and plain HTTP on the
//! WebSocket port gets a page.

#![cfg(feature = "ws")]

mod util;
mod ws_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};
use ws_support::demo::Demo;
use ws_support::TIMEOUT;

const CLIENTS: usize = 50;
const MESSAGES: usize = 5;

/// One chat client, of either kind.
enum Client {
    Ws(Box<WebSocket<TcpStream>>),
    Lines {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    },
}

/// What a client got: a text, or the end of the connection (with a WebSocket close reason).
#[derive(Debug, PartialEq)]
enum Got {
    Text(String),
    Closed(Option<(u16, String)>),
}

impl Client {
    fn ws(addr: SocketAddr, path: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (ws, _) =
            tungstenite::client(format!("ws://{addr}{path}"), stream).expect("the upgrade");
        Client::Ws(Box::new(ws))
    }

    fn lines(addr: SocketAddr) -> Client {
        let writer = TcpStream::connect(addr).unwrap();
        writer.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client::Lines {
            reader: BufReader::new(writer.try_clone().unwrap()),
            writer,
        }
    }

    fn send(&mut self, text: &str) {
        match self {
            Client::Ws(ws) => ws.send(Message::text(text)).expect("send a message"),
            Client::Lines { writer, .. } => writer
                .write_all(format!("{text}\n").as_bytes())
                .expect("send a line"),
        }
    }

    fn next(&mut self) -> Got {
        match self {
            Client::Ws(ws) => loop {
                match ws.read() {
                    Ok(Message::Text(t)) => return Got::Text(t.to_string()),
                    Ok(Message::Close(frame)) => {
                        return Got::Closed(
                            frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                        )
                    }
                    Ok(Message::Ping(_) | Message::Pong(_)) => {}
                    Ok(other) => panic!("unexpected message {other:?}"),
                    Err(tungstenite::Error::ConnectionClosed) => return Got::Closed(None),
                    Err(e) => panic!("reading a message: {e}"),
                }
            },
            Client::Lines { reader, .. } => {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => Got::Closed(None),
                    Ok(_) => {
                        assert!(line.ends_with('\n'), "a whole line: {line:?}");
                        line.pop();
                        Got::Text(line)
                    }
                    Err(e) => panic!("reading a line: {e}"),
                }
            }
        }
    }

    fn text(&mut self) -> String {
        match self.next() {
            Got::Text(t) => t,
            other => panic!("a text was due, got {other:?}"),
        }
    }

    /// Reads the welcome (returning its guest name and the count online it gives), then
    /// asks for `nick` and returns the server's answer.
    fn enter(&mut self, nick: &str) -> (String, usize, String) {
        let welcome = self.text();
        let rest = welcome
            .strip_prefix("* welcome ")
            .unwrap_or_else(|| panic!("a welcome first, got {welcome:?}"));
        let (guest, rest) = rest.split_once(", ").expect("the guest name");
        let online = rest
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .expect("the count online");
        let guest = guest.to_string();
        self.send(&format!("/nick {nick}"));
        (guest, online, self.text())
    }

    fn quit(self) {
        match self {
            Client::Ws(mut ws) => {
                ws.close(None).unwrap();
                while ws.read().is_ok() {}
            }
            Client::Lines { .. } => {}
        }
    }
}

/// The chat demo with a lines listener; its WebSocket and lines addresses.
fn start(extra: &[&str]) -> (Demo, SocketAddr, SocketAddr) {
    let mut args = vec!["--addr", "127.0.0.1:0", "--loops", "2"];
    args.extend_from_slice(&["--lines", "127.0.0.1:0"]);
    args.extend_from_slice(extra);
    let (demo, stderr) = Demo::start_with_stderr("chat", &args);
    let lines = loop {
        let line = stderr
            .recv_timeout(TIMEOUT)
            .expect("the demo's `lines on ADDR` line on stderr");
        if let Some(addr) = line.strip_prefix("lines on ") {
            break addr.parse().expect("the lines address");
        }
    };
    let ws = demo.addr();
    (demo, ws, lines)
}

/// What client `i` says, `j`th time: text that must arrive intact, multi-byte UTF-8 too.
fn said(i: usize, j: usize) -> String {
    format!("message {j} from c{i}: héllo wörld ✓ «{}»", "x".repeat(i))
}

#[test]
fn fifty_clients_ws_and_lines_every_message_reaches_every_other_client() {
    let (demo, ws_addr, lines_addr) = start(&[]);
    // Even clients speak WebSocket (on assorted paths), odd ones lines.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = if i % 2 == 0 {
            Client::ws(ws_addr, &format!("/room/{i}"))
        } else {
            Client::lines(lines_addr)
        };
        let (guest, online, answer) = c.enter(&format!("c{i}"));
        assert!(guest.starts_with("guest"), "{guest}");
        assert_eq!(online, i + 1, "c{i} is told the count online");
        assert_eq!(answer, format!("* you are c{i}"));
        clients.push(c);
    }

    // Nicknames are unique and checked.
    let mut odd = Client::lines(lines_addr);
    let (_, _, answer) = odd.enter("c3");
    assert_eq!(answer, "* c3 is taken");
    odd.send("/nick no spaces");
    assert!(
        odd.text().contains("is not a nickname"),
        "a nickname has no spaces"
    );
    drop(odd); // its join and leave reach the others as notices

    let go = Arc::new(Barrier::new(CLIENTS));
    let (done_tx, done) = mpsc::channel();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let (go, done_tx) = (Arc::clone(&go), done_tx.clone());
            thread::spawn(move || {
                go.wait();
                for j in 0..MESSAGES {
                    c.send(&said(i, j));
                }
                // Every other client's messages, each sender's in order; notices aside.
                let mut next: HashMap<usize, usize> = HashMap::new();
                let mut count = 0;
                let mut notices = Vec::new();
                while count < (CLIENTS - 1) * MESSAGES {
                    let text = c.text();
                    if text.starts_with("* ") {
                        notices.push(text);
                        continue;
                    }
                    let (nick, body) = text.split_once(": ").expect("nick: text");
                    let from: usize = nick[1..].parse().expect("a client's nick");
                    assert_ne!(from, i, "c{i} got its own message back");
                    let j = next.entry(from).or_default();
                    assert_eq!(body, said(from, *j), "c{i} from c{from}");
                    *j += 1;
                    count += 1;
                }
                // The joins after its own were announced to it, and the renames.
                for later in i + 1..CLIENTS {
                    let renamed = format!(" is now c{later}");
                    let guest = notices
                        .iter()
                        .find_map(|n| n.strip_suffix(&renamed)?.strip_prefix("* "))
                        .unwrap_or_else(|| panic!("c{i} missed c{later}'s rename: {notices:?}"));
                    let joined = format!("* {guest} joined");
                    assert!(notices.contains(&joined), "c{i} missed {joined:?}");
                }
                let _ = done_tx.send(());
                c
            })
        })
        .collect();
    drop(done_tx);
    let mut clients: Vec<Client> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(done.iter().count(), CLIENTS);

    // Two leave, one of each kind; the others are told.
    let (c0, c1) = {
        let mut first = clients.drain(..2);
        (first.next().unwrap(), first.next().unwrap())
    };
    c0.quit();
    c1.quit();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut left = Vec::new();
        while left.len() < 2 {
            let text = c.text();
            if text.ends_with(" left") {
                left.push(text);
            }
        }
        left.sort();
        assert_eq!(left, ["* c0 left", "* c1 left"], "client c{}", i + 2);
    }
    drop(clients);
    demo.stop("-TERM");
}

#[test]
fn a_quiet_client_is_cut_by_the_idle_timeout() {
    let (demo, ws_addr, lines_addr) = start(&["--idle-timeout", "1"]);
    let mut line = Client::lines(lines_addr);
    assert_eq!(line.enter("quiet").2, "* you are quiet");
    let mut ws = Client::ws(ws_addr, "/");
    assert_eq!(ws.enter("silent").2, "* you are silent");
    // Each hears at most the other come and go, then its own timeout, then the end.
    let mut heard = Vec::new();
    let end = loop {
        match line.next() {
            Got::Text(t) => heard.push(t),
            closed => break closed,
        }
    };
    assert_eq!(end, Got::Closed(None));
    assert_eq!(heard.pop().as_deref(), Some("* idle timeout"), "{heard:?}");
    assert!(
        heard
            .iter()
            .all(|t| t.contains(" guest") || t.contains(" silent")),
        "{heard:?}"
    );
    let close = loop {
        match ws.next() {
            Got::Text(t) => assert_eq!(t, "* quiet left"),
            closed => break closed,
        }
    };
    assert_eq!(
        close,
        Got::Closed(Some((u16::from(CloseCode::Normal), "idle timeout".into())))
    );
    demo.stop("-INT");
}

/// The WebSocket port is an HTTP server's: a plain request there gets a page, while a
/// WebSocket client on the same port is in the room.
#[test]
fn the_websocket_port_answers_plain_http_with_a_page() {
    let (demo, ws_addr, _) = start(&[]);
    let mut ws = Client::ws(ws_addr, "/any/path");
    assert_eq!(ws.enter("web").2, "* you are web");
    let page = ureq::get(&format!("http://{ws_addr}/"))
        .timeout(TIMEOUT)
        .call()
        .expect("the page")
        .into_string()
        .unwrap();
    assert!(page.contains("connect with a WebSocket client"), "{page}");
    ws.send("/nick web2");
    assert_eq!(ws.text(), "* you are web2");
    ws.quit();
    demo.stop("-TERM");
}
