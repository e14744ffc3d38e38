//! Fan-out written in sweeps, a slice of members at a time: a member still gets everything in
//! the order its loop took it in — broadcasts published before its own writes, or before a
//! `write_to` meant for it, reach it first, however late in the sweep its place is; a member
//! that joins while a sweep is under way gets exactly what is published from its join on;
//! and a stop delivers every broadcast published before it. One loop and more members than a
//! slice, so every round of broadcasts is written over several turns of the loop.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;

use eventide::{Action, Conn, ConnId, Group, Handler, Refusal, Server, SlowConsumer};
use util::{checks, Checks, TIMEOUT};

/// Members that only listen: several slices' worth.
const MEMBERS: usize = 200;
/// Broadcasts per byte the publisher sends.
const BURST: u64 = 8;
const BYTES: u64 = 250;
const BROADCASTS: u64 = BURST * BYTES;

/// A record from the server: a kind, padding, and a number.
const RECORD: usize = 16;
/// Broadcast number `n`.
const B: u8 = b'B';
/// To the watched member, by `write_to` after a burst: `n` broadcasts were published.
const W: u8 = b'W';
/// The watched member's own answer to its ping: `n` broadcasts were published.
const P: u8 = b'P';
/// To a member, as it joins: `n` broadcasts were published before.
const J: u8 = b'J';

fn record(kind: u8, n: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind;
    r[8..].copy_from_slice(&n.to_le_bytes());
    r
}

fn parse(r: &[u8]) -> (u8, u64) {
    (r[0], u64::from_le_bytes(r[8..RECORD].try_into().unwrap()))
}

/// A client's first byte says what it is: `M` a member, `X` the watched member, `T` the
/// publisher. Then the publisher's every byte publishes a burst and tells the watched member
/// by `write_to`; the watched member's every byte is a ping, answered on its own connection.
struct Room {
    room: Group,
    published: u64,
    watched: Option<ConnId>,
    /// Stop the server after the first burst (the stop test).
    stop_after_burst: bool,
    checks: Checks,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum Role {
    #[default]
    New,
    Member,
    Watched,
    Publisher,
}

impl Handler for Room {
    type State = Role;
    type Message = ();

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<Role, Refusal> {
        Ok(Role::New)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, role: &mut Role) -> Action {
        let input = conn.input().to_vec();
        conn.consume(input.len());
        for &byte in &input {
            match (*role, byte) {
                (Role::New, b'M' | b'X') => {
                    let joined = self.room.join(conn);
                    self.checks.eq(joined.ok(), Some(true), "a first join");
                    conn.write(&record(J, self.published));
                    *role = Role::Member;
                    if byte == b'X' {
                        self.watched = Some(conn.id());
                        *role = Role::Watched;
                    }
                }
                (Role::New, b'T') => *role = Role::Publisher,
                (Role::Publisher, _) => {
                    for _ in 0..BURST {
                        let msg = Group::payload(&[&record(B, self.published)]);
                        let sent = self.room.broadcast(&mut conn.loop_cx(), msg);
                        self.checks.that(sent.is_ok(), "a broadcast is taken");
                        self.published += 1;
                    }
                    if let Some(x) = self.watched {
                        let told = conn.loop_cx().write_to(x, &record(W, self.published));
                        self.checks
                            .that(told.is_ok(), "write_to the watched member");
                    }
                    if self.stop_after_burst {
                        return Action::StopServer;
                    }
                }
                (Role::Watched, _) => {
                    conn.write(&record(P, self.published));
                }
                _ => {
                    self.checks
                        .that(false, format_args!("byte {byte} from {role:?}"));
                }
            }
        }
        Action::Continue
    }
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Role::New => "a new connection",
            Role::Member => "a member",
            Role::Watched => "the watched member",
            Role::Publisher => "the publisher",
        };
        f.write_str(name)
    }
}

fn start(stop_after_burst: bool) -> (Server, Group, util::Failures) {
    let room = Group::with_max_pending(SlowConsumer::Close, 64 << 20);
    let (checks, failures) = checks();
    let r = room.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| Room {
            room: r.clone(),
            published: 0,
            watched: None,
            stop_after_burst,
            checks: checks.clone(),
        })
        .unwrap();
    (server, room, failures)
}

/// A client that has said what it is; for a member, the number published before it joined.
fn client(addr: SocketAddr, role: u8) -> (TcpStream, Option<u64>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(&[role]).unwrap();
    if role == b'T' {
        return (s, None);
    }
    let mut r = [0u8; RECORD];
    s.read_exact(&mut r).unwrap();
    let (kind, n) = parse(&r);
    assert_eq!(kind, J, "a member is told first that it joined");
    (s, Some(n))
}

/// Reads records until `last` broadcast or the end of the stream; returns the broadcasts'
/// numbers (anything else fails).
fn broadcasts(s: &mut TcpStream, last: Option<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    let mut r = [0u8; RECORD];
    while last.map_or(true, |l| got.last() != Some(&l)) {
        let mut filled = 0;
        while filled < RECORD {
            match s.read(&mut r[filled..]).unwrap() {
                0 if filled == 0 && last.is_none() => return got,
                0 => panic!("the stream ended inside a record"),
                n => filled += n,
            }
        }
        let (kind, n) = parse(&r);
        assert_eq!(kind, B, "only broadcasts reach a member that does not ping");
        got.push(n);
    }
    got
}

/// The watched member pings as it reads: every answer (`P n`) and every `write_to` (`W n`)
/// comes after broadcasts `0..n`, and the broadcasts come in order.
fn watch(mut s: TcpStream) {
    let mut next = 0u64; // the next broadcast expected
    let (mut pongs, mut told) = (0u64, 0u64);
    let mut r = [0u8; RECORD];
    s.write_all(b"p").unwrap();
    while next < BROADCASTS || told < BYTES {
        s.read_exact(&mut r).unwrap();
        match parse(&r) {
            (B, n) => {
                assert_eq!(n, next, "broadcasts in publish order");
                next += 1;
            }
            (P, n) => {
                assert!(
                    n <= next,
                    "my answer came before broadcast {next} of the {n} published before my ping"
                );
                pongs += 1;
                s.write_all(b"p").unwrap();
            }
            (W, n) => {
                assert!(
                    n <= next,
                    "write_to came before broadcast {next} of the {n} published before it"
                );
                told += 1;
            }
            other => panic!("unexpected record {other:?}"),
        }
    }
    assert!(pongs > 0);
}

#[test]
fn own_writes_and_write_to_never_overtake_a_broadcast_and_late_joiners_get_exactly_what_follows() {
    let (server, room, failures) = start(false);
    let addr = server.local_addr();
    let mut members: Vec<TcpStream> = (0..MEMBERS)
        .map(|_| {
            let (s, before) = client(addr, b'M');
            assert_eq!(before, Some(0));
            s
        })
        .collect();
    // Opened last: its place is visited last in every sweep.
    let (watched, _) = client(addr, b'X');
    let watcher = thread::spawn(move || watch(watched));
    let (mut publisher, _) = client(addr, b'T');
    publisher.write_all(&[b'b'; (BYTES / 2) as usize]).unwrap();
    // Joins while the first half is being written (or after it): owed exactly what follows.
    let (mut late, before) = client(addr, b'M');
    let before = before.unwrap();
    publisher.write_all(&[b'b'; (BYTES / 2) as usize]).unwrap();
    watcher.join().unwrap();

    let all: Vec<u64> = (0..BROADCASTS).collect();
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(broadcasts(m, Some(BROADCASTS - 1)), all, "member {i}");
    }
    assert_eq!(
        broadcasts(&mut late, Some(BROADCASTS - 1)),
        (before..BROADCASTS).collect::<Vec<_>>(),
        "the member that joined after {before} broadcasts"
    );
    failures.assert_none();
    let stats = room.stats();
    let deliveries = (MEMBERS as u64 + 1) * BROADCASTS + (BROADCASTS - before);
    assert_eq!(
        (
            stats.published,
            stats.delivered,
            stats.dropped,
            stats.closed
        ),
        (BROADCASTS, deliveries, 0, 0)
    );
    drop(publisher);
    server.stop();
    server.join().unwrap();
}

#[test]
fn a_stop_writes_every_broadcast_published_before_it() {
    let (server, room, failures) = start(true);
    let addr = server.local_addr();
    let mut members: Vec<TcpStream> = (0..MEMBERS).map(|_| client(addr, b'M').0).collect();
    let (mut publisher, _) = client(addr, b'T');
    // One burst, and the server stops in the same callback.
    publisher.write_all(b"b").unwrap();
    let all: Vec<u64> = (0..BURST).collect();
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(broadcasts(m, None), all, "member {i}, read to its end");
    }
    server.join().unwrap();
    failures.assert_none();
    assert_eq!(room.stats().delivered, MEMBERS as u64 * BURST);
}
