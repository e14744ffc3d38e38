//! Broadcast chat over WebSocket (on any path) and over plain TCP lines, one room for both:
//! every text a client sends reaches every other client as `nick: text` — a text message for
//! WebSocket clients, a line for line clients. The WebSocket side is the upgrade route of an
//! `HttpServer` (`HttpServer::websocket`): a plain HTTP request on the same port gets a page
//! that says how to join.
//!
//! ```text
//! cargo run --release --features ws --example chat -- --addr 127.0.0.1:9002 --lines 127.0.0.1:9003
//! python3 -m websockets ws://127.0.0.1:9002/     # or: nc 127.0.0.1 9003
//! ```
//!
//! A client is in the room as soon as it connects (WebSocket: once upgraded), as `guestN`,
//! and is told `* welcome guestN, M online`; `/nick NAME` renames it (1 to 24 letters, digits,
//! `-`, `_` or `.`, not in use: `* you are NAME`, and the others see `* guestN is now NAME`).
//! Every other text is broadcast; the others also see `* NAME joined` and `* NAME left`.
//! Lines end with `\n` (a `\r` before it is dropped), are at most 4 KiB and must be UTF-8,
//! like WebSocket text.
//!
//! Options: `--lines HOST:PORT` also serves TCP line clients there (its address, as bound,
//! is printed on stderr as `lines on ADDR`; stdout keeps its one `listening on` line for
//! `--addr`); `--idle-timeout SECS` (default 300; 0 disables): a client that sends nothing
//! for that long is told `* idle timeout` (a close frame with that reason, code 1000, over
//! WebSocket) and disconnected.
//!
//! The room is two [`Group`]s, one per framing: a message is framed once per protocol and
//! that one buffer is written to every member of the group (one allocation per broadcast,
//! however many members). A client that falls behind by more than the server's high-water
//! mark of output is disconnected (`SlowConsumer::Close`) rather than slowing down the room.

mod common;

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Args;
use eventide::http::{HttpConnState, HttpServer, Response};
use eventide::ws::{
    self, shared_text, CloseCode, Message, Rejection, Request, Upgrade, WsConn, WsHandler, WsServer,
};
use eventide::{
    Action, CloseReason, Conn, ConnId, Group, Handler, LoopCx, Refusal, Server, SlowConsumer,
    Timeout,
};

/// The longest line a line client may send.
const MAX_LINE: usize = 4096;
/// The timer that checks a client's idleness.
const IDLE_TIMER: u64 = 1;

/// The room: its members by framing, and the nicknames in use (on every loop).
#[derive(Clone)]
struct Room {
    ws: Group,
    lines: Group,
    nicks: Arc<Mutex<HashSet<String>>>,
    idle: Option<Duration>,
}

/// A client in the room.
struct Member {
    nick: String,
    last_heard: Instant,
}

/// Numbers the guests (process-wide: guest names are unique on every loop).
static NEXT_GUEST: AtomicU64 = AtomicU64::new(1);

/// What the idle check found.
enum Idle {
    /// Check again after this long.
    Wait(Duration),
    TimedOut,
}

impl Room {
    /// Sends `parts` (one text) to every member but `except`, framed for each protocol.
    fn say(&self, cx: &mut LoopCx<'_>, parts: &[&str], except: ConnId) -> io::Result<()> {
        let ws = self.ws.broadcast_except(cx, shared_text(parts), except);
        let mut line: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        line.push(b"\n");
        let lines = self
            .lines
            .broadcast_except(cx, Group::payload(&line), except);
        ws.and(lines)
    }

    /// [`say`](Room::say) from outside a callback of the room's connections (`on_close`).
    fn announce(&self, parts: &[&str]) {
        let mut line: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        line.push(b"\n");
        let sent = self
            .ws
            .post(shared_text(parts))
            .and(self.lines.post(Group::payload(&line)));
        if let Err(e) = sent {
            log::warn!(
                "chat: notice {:?} not sent to everyone: {e}",
                parts.concat()
            );
        }
    }

    /// A new client: in the room at once, as a guest, in `mine` (the group of its protocol).
    /// Returns it and its welcome.
    fn enter(&self, conn: &mut Conn<'_>, mine: &Group) -> (Member, String) {
        let nick = loop {
            let guest = format!("guest{}", NEXT_GUEST.fetch_add(1, Relaxed));
            if self.nicks.lock().unwrap().insert(guest.clone()) {
                break guest; // not taken by a `/nick` already
            }
        };
        if let Err(e) = mine.join(conn) {
            log::warn!("chat: {} could not join the room: {e}", conn.id());
        }
        let me = conn.id();
        if let Err(e) = self.say(&mut conn.loop_cx(), &["* ", &nick, " joined"], me) {
            log::warn!("chat: the join of {nick} was not announced: {e}");
        }
        let online = self.ws.len() + self.lines.len();
        let welcome = format!("* welcome {nick}, {online} online (/nick NAME to rename)");
        let member = Member {
            nick,
            last_heard: Instant::now(),
        };
        (member, welcome)
    }

    /// What a member said; returns the answer for it alone, if any.
    fn heard(&self, conn: &mut Conn<'_>, member: &mut Member, text: &str) -> Option<String> {
        member.last_heard = Instant::now();
        if let Some(nick) = text.strip_prefix("/nick ") {
            return Some(self.rename(conn, member, nick.trim()));
        }
        let me = conn.id();
        match self.say(&mut conn.loop_cx(), &[&member.nick, ": ", text], me) {
            Ok(()) => None,
            Err(e) => Some(format!("* not sent ({e}), try again")),
        }
    }

    /// `/nick NAME`: the new name if it is one and free.
    fn rename(&self, conn: &mut Conn<'_>, member: &mut Member, nick: &str) -> String {
        let valid = (1..=24).contains(&nick.chars().count())
            && nick
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return format!("* {nick:?} is not a nickname (1 to 24 letters, digits, -, _ or .)");
        }
        {
            let mut nicks = self.nicks.lock().unwrap();
            if !nicks.insert(nick.to_string()) {
                return format!("* {nick} is taken");
            }
            nicks.remove(&member.nick);
        }
        let old = std::mem::replace(&mut member.nick, nick.to_string());
        let me = conn.id();
        if let Err(e) = self.say(&mut conn.loop_cx(), &["* ", &old, " is now ", nick], me) {
            log::warn!("chat: the rename of {old} to {nick} was not announced: {e}");
        }
        format!("* you are {nick}")
    }

    /// A member's connection closed: its nickname is free again, and the others are told.
    fn left(&self, member: Member) {
        self.nicks.lock().unwrap().remove(&member.nick);
        self.announce(&["* ", &member.nick, " left"]);
    }

    /// Whether `member` has been quiet for the idle timeout, or when to look again.
    fn idle(&self, member: &Member) -> Option<Idle> {
        let limit = self.idle?;
        let quiet = member.last_heard.elapsed();
        Some(if quiet >= limit {
            Idle::TimedOut
        } else {
            Idle::Wait(limit - quiet)
        })
    }
}

/// The WebSocket side: any path, text messages.
struct WsChat(Room);

impl WsHandler for WsChat {
    /// `None` until the upgrade is done and the client is in the room.
    type State = Option<Member>;

    fn on_upgrade(
        &mut self,
        _: &Request<'_>,
        _: &mut Upgrade<'_>,
    ) -> Result<Self::State, Rejection> {
        Ok(None)
    }

    fn on_open(&mut self, ws: &mut WsConn<'_, '_>, member: &mut Option<Member>) {
        let room = &self.0;
        let (entered, welcome) = room.enter(ws.conn(), &room.ws);
        *member = Some(entered);
        let _ = ws.text(&welcome);
        if let Some(idle) = room.idle {
            ws.set_timer(idle, IDLE_TIMER);
        }
    }

    fn on_message(
        &mut self,
        ws: &mut WsConn<'_, '_>,
        member: &mut Option<Member>,
        msg: Message<'_>,
    ) {
        let Some(member) = member else { return };
        let Message::Text(text) = msg else {
            let _ = ws.text("* binary messages are not chat: send text");
            return;
        };
        if let Some(answer) = self.0.heard(ws.conn(), member, text) {
            let _ = ws.text(&answer);
        }
    }

    fn on_ping(&mut self, _: &mut WsConn<'_, '_>, member: &mut Option<Member>, _: &[u8]) {
        if let Some(member) = member {
            member.last_heard = Instant::now();
        }
    }

    fn on_timer(&mut self, ws: &mut WsConn<'_, '_>, member: &mut Option<Member>, token: u64) {
        let Some(member) = member else { return };
        match (token, self.0.idle(member)) {
            (IDLE_TIMER, Some(Idle::Wait(after))) => {
                ws.set_timer(after, IDLE_TIMER);
            }
            (IDLE_TIMER, Some(Idle::TimedOut)) => {
                let _ = ws.close(CloseCode::NORMAL, "idle timeout");
            }
            _ => {}
        }
    }

    fn on_close(&mut self, _: ConnId, member: Option<Member>, _: &CloseReason) {
        if let Some(member) = member {
            self.0.left(member);
        }
    }
}

/// The line side: one message per `\n`-terminated line.
struct LinesChat {
    room: Room,
    /// The line being handled (taken out of the input, which the broadcast's loop context
    /// borrows too).
    line: String,
}

impl LinesChat {
    fn on_open(&mut self, conn: &mut Conn<'_>) -> Member {
        let room = &self.room;
        let (member, welcome) = room.enter(conn, &room.lines);
        conn.write(welcome.as_bytes());
        conn.write(b"\n");
        if let Some(idle) = room.idle {
            conn.set_timer(idle, IDLE_TIMER);
        }
        member
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, member: &mut Member) -> Action {
        loop {
            let input = conn.input();
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if input.len() > MAX_LINE {
                    conn.write(b"* line too long, bye\n");
                    return Action::Close;
                }
                return Action::Continue;
            };
            let line = input[..end].strip_suffix(b"\r").unwrap_or(&input[..end]);
            let answer = match std::str::from_utf8(line) {
                Ok("") => None,
                Ok(text) if text.len() > MAX_LINE => Some("* line too long, not sent".into()),
                Ok(text) => {
                    self.line.clear();
                    self.line.push_str(text);
                    self.room.heard(conn, member, &self.line)
                }
                Err(_) => Some("* not UTF-8, not sent".into()),
            };
            conn.consume(end + 1);
            if let Some(answer) = answer {
                conn.write(answer.as_bytes());
                conn.write(b"\n");
            }
        }
    }

    fn on_timer(&mut self, conn: &mut Conn<'_>, member: &mut Member, token: u64) -> Action {
        match (token, self.room.idle(member)) {
            (IDLE_TIMER, Some(Idle::Wait(after))) => {
                conn.set_timer(after, IDLE_TIMER);
                Action::Continue
            }
            (IDLE_TIMER, Some(Idle::TimedOut)) => {
                conn.write(b"* idle timeout\n");
                Action::Close
            }
            _ => Action::Continue,
        }
    }
}

/// The HTTP routes of the WebSocket port: an upgrade on any path joins the room, any other
/// request gets a page that says so.
fn page(req: &Request<'_>, res: &mut Response<'_>) {
    if ws::is_upgrade_request(req) {
        return res.websocket();
    }
    res.content_type("text/plain; charset=utf-8")
        .body(b"eventide chat: connect with a WebSocket client, on any path\n");
}

/// The HTTP server of the WebSocket port.
type Web = HttpServer<fn(&Request<'_>, &mut Response<'_>)>;

/// A connection of either listener.
enum Client {
    Web(HttpConnState),
    Lines(Member),
}

/// The server's handler: connections to the lines listener speak lines, the others HTTP
/// until they upgrade to WebSocket.
struct Chat {
    web: Web,
    lines: LinesChat,
    lines_addr: Option<SocketAddr>,
}

impl Chat {
    fn is_lines(&self, conn: &Conn<'_>) -> bool {
        let (Some(lines), Ok(local)) = (self.lines_addr, conn.local_addr()) else {
            return false;
        };
        local.port() == lines.port() && (lines.ip().is_unspecified() || local.ip() == lines.ip())
    }
}

impl Handler for Chat {
    type State = Client;
    // The HTTP server's own messages (deferred answers, the WebSocket handles' commands).
    type Message = <Web as Handler>::Message;

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<Client, Refusal> {
        if self.is_lines(conn) {
            Ok(Client::Lines(self.lines.on_open(conn)))
        } else {
            Ok(Client::Web(self.web.on_open(conn)?))
        }
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, client: &mut Client) -> Action {
        match client {
            Client::Web(st) => self.web.on_data(conn, st),
            Client::Lines(member) => self.lines.on_data(conn, member),
        }
    }

    fn on_drained(&mut self, conn: &mut Conn<'_>, client: &mut Client) -> Action {
        match client {
            Client::Web(st) => self.web.on_drained(conn, st),
            Client::Lines(_) => Action::Continue,
        }
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_>, client: &mut Client) -> Action {
        match client {
            Client::Web(st) => self.web.on_read_closed(conn, st),
            Client::Lines(_) => Action::Close,
        }
    }

    fn on_timeout(&mut self, conn: &mut Conn<'_>, client: &mut Client, which: Timeout) -> Action {
        match client {
            Client::Web(st) => self.web.on_timeout(conn, st, which),
            Client::Lines(_) => Action::Close,
        }
    }

    fn on_timer(&mut self, conn: &mut Conn<'_>, client: &mut Client, token: u64) -> Action {
        match client {
            Client::Web(st) => self.web.on_timer(conn, st, token),
            Client::Lines(member) => self.lines.on_timer(conn, member, token),
        }
    }

    fn on_message(
        &mut self,
        conn: &mut Conn<'_>,
        client: &mut Client,
        msg: Self::Message,
    ) -> Action {
        match client {
            Client::Web(st) => self.web.on_message(conn, st, msg),
            Client::Lines(_) => Action::Continue,
        }
    }

    /// At a server stop: WebSocket clients get close 1001 ("going away"), lines clients are
    /// closed (HTTP ones after the answer they are owed).
    fn on_stop(&mut self, conn: &mut Conn<'_>, client: &mut Client) -> Action {
        match client {
            Client::Web(st) => self.web.on_stop(conn, st),
            Client::Lines(_) => Action::Close,
        }
    }

    fn on_close(&mut self, id: ConnId, client: Client, reason: &CloseReason) {
        match client {
            Client::Web(st) => self.web.on_close(id, st, reason),
            Client::Lines(member) => self.lines.room.left(member),
        }
    }

    /// The HTTP server's `Date` timer.
    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        self.web.on_boot(cx);
    }

    fn on_tick(&mut self, cx: &mut LoopCx<'_>, token: u64) {
        self.web.on_tick(cx, token);
    }
}

fn main() {
    let args = Args::parse("127.0.0.1:9002", &["lines", "idle-timeout"], &[]);
    let idle = Duration::from_secs(args.parsed::<u32>("idle-timeout", 300).into());
    let lines = args.value("lines").map(|addr| {
        if addr.to_socket_addrs().is_err() {
            args.fail(&format!("--lines needs HOST:PORT, not {addr:?}"));
        }
        common::or_exit(TcpListener::bind(addr), &format!("--lines {addr}"))
    });
    let lines_addr = lines
        .as_ref()
        .map(|l| common::or_exit(l.local_addr(), "--lines"));
    let room = Room {
        ws: Group::new(SlowConsumer::Close),
        lines: Group::new(SlowConsumer::Close),
        nicks: Arc::default(),
        idle: (!idle.is_zero()).then_some(idle),
    };
    let signals = common::termination_signals();
    let mut builder = Server::builder().bind(args.addr.as_str()).loops(args.loops);
    if !idle.is_zero() {
        // The clients' own clocks start once they speak WebSocket or lines; this one also
        // cuts a connection that never sends a complete upgrade request.
        builder = builder.idle_timeout(idle * 2);
    }
    if let Some(l) = lines {
        builder = builder.from_std(l);
    }
    let server = common::or_exit(
        builder.start(move |_| Chat {
            web: HttpServer::new(page as fn(&Request<'_>, &mut Response<'_>))
                .websocket(WsServer::new(WsChat(room.clone()))),
            lines: LinesChat {
                room: room.clone(),
                line: String::new(),
            },
            lines_addr,
        }),
        "starting the chat server",
    );
    if let Some(addr) = lines_addr {
        eprintln!("lines on {addr}");
    }
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
