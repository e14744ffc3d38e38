//! Fan-out under pressure and at the edges: a member that stops reading misses messages
//! (`SlowConsumer::Drop`, counted) or is closed (`SlowConsumer::Close`, with its reason) while
//! the others receive every message in order; no connection holds more pending output than
//! the group's limit; `LoopCx::write_to` reaches another connection of the loop without a
//! mailbox task; members closing and the server stopping in the middle of broadcasts lose
//! nothing for the others and break nothing; with injected short writes, `EAGAIN` and
//! spurious wake-ups (feature `faults`) nothing is lost or reordered. (Order and allocations
//! at scale: `fanout_order.rs`.)

mod util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Instant;

use eventide::{Action, CloseReason, Conn, ConnId, Group, Handler, Refusal, Server, SlowConsumer};
use util::{checks, Checks, Failures, TIMEOUT};

/// One broadcast: its sequence number, then padding.
const MESSAGE: usize = 1024;
/// The most pending output a member may hold.
const MAX_PENDING: usize = 32 * 1024;
/// How many messages the publisher lets a reading member fall behind: well within
/// `MAX_PENDING`, so a reader is never the slow one, however loaded the machine.
const WINDOW: u64 = 8;

/// Every connection joins the room and is told its id; closes are reported.
struct Member {
    room: Group,
    closed: mpsc::Sender<(ConnId, &'static str)>,
    checks: Checks,
}

impl Handler for Member {
    type State = ();
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        join_and_greet(&self.room, &self.checks, conn);
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let n = conn.input().len();
        conn.consume(n);
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.closed.send((id, reason.as_str()));
    }
}

/// Joins `conn` to `room` and tells the client its id.
fn join_and_greet(room: &Group, checks: &Checks, conn: &mut Conn<'_>) {
    let joined = room.join(conn);
    checks.eq(joined.ok(), Some(true), "a first join");
    conn.write(&conn.id().as_u64().to_le_bytes());
}

struct Room {
    server: Server,
    room: Group,
    closed: mpsc::Receiver<(ConnId, &'static str)>,
    failures: Failures,
}

fn start(room: Group) -> Room {
    let (checks, failures) = checks();
    let (tx, closed) = mpsc::channel();
    let factory_room = room.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        // Small kernel buffers, so a member that stops reading is soon behind.
        .socket_send_buffer(16 * 1024)
        .start(move |_| Member {
            room: factory_room.clone(),
            closed: tx.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    Room {
        server,
        room,
        closed,
        failures,
    }
}

/// A member's client: its stream and its connection id. `small`: with a small receive
/// buffer (the one that stops reading).
fn join(addr: SocketAddr, small: bool) -> (TcpStream, u64) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if small {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut id = [0u8; 8];
    s.read_exact(&mut id).unwrap();
    (s, u64::from_le_bytes(id))
}

fn message(seq: u64) -> Arc<[u8]> {
    let mut m = vec![b'.'; MESSAGE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    Arc::from(m)
}

/// Reads whole messages until `count` came (or the stream ends); returns their sequence
/// numbers.
fn read_messages(s: &mut TcpStream, count: Option<u64>, progress: &AtomicU64) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut m = [0u8; MESSAGE];
    while count.map_or(true, |c| (seqs.len() as u64) < c) {
        match s.read_exact(&mut m) {
            Ok(()) => {}
            Err(e) if count.is_none() && e.kind() != ErrorKind::WouldBlock => break,
            Err(e) => panic!("reading message {} of {count:?}: {e}", seqs.len() + 1),
        }
        let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert!(m[8..].iter().all(|&b| b == b'.'), "message {seq} is intact");
        seqs.push(seq);
        progress.store(seq, Relaxed);
    }
    seqs
}

/// Posts messages `1..=count`, never more than [`WINDOW`] ahead of the slowest reader.
fn publish(room: &Group, count: u64, readers: &[Arc<AtomicU64>]) {
    let start = Instant::now();
    for seq in 1..=count {
        let payload = message(seq);
        loop {
            assert!(start.elapsed() < TIMEOUT, "publishing message {seq}");
            let behind = readers.iter().any(|r| r.load(Relaxed) + WINDOW < seq);
            if behind {
                thread::yield_now();
                continue;
            }
            match room.post(Arc::clone(&payload)) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("post {seq}: {e}"),
            }
        }
    }
}

/// `members` clients of which the first stops reading; readers read every message of
/// `count`. Returns the stalled client, its id, the readers' clients and the sequence
/// numbers they read.
fn run(r: &Room, members: usize, count: u64) -> (TcpStream, u64, Vec<TcpStream>, Vec<Vec<u64>>) {
    let addr = r.server.local_addr();
    let stalled = join(addr, true);
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for _ in 1..members {
        let (mut s, _) = join(addr, false);
        let p = Arc::new(AtomicU64::new(0));
        progress.push(Arc::clone(&p));
        readers.push(thread::spawn(move || {
            let seqs = read_messages(&mut s, Some(count), &p);
            (s, seqs) // still a member
        }));
    }
    util::wait_until("every member joined", || r.room.len() == members);
    publish(&r.room, count, &progress);
    let (streams, seqs) = readers.into_iter().map(|t| t.join().unwrap()).unzip();
    (stalled.0, stalled.1, streams, seqs)
}

fn assert_all_in_order(seqs: &[Vec<u64>], count: u64) {
    let want: Vec<u64> = (1..=count).collect();
    for (i, s) in seqs.iter().enumerate() {
        assert!(*s == want, "reader {i} got every message in order");
    }
}

#[test]
fn a_member_that_stops_reading_misses_messages_while_the_others_get_all() {
    const MEMBERS: usize = 10;
    const COUNT: u64 = 1000;
    let r = start(Group::with_max_pending(SlowConsumer::Drop, MAX_PENDING));
    let (mut stalled, _, _readers, seqs) = run(&r, MEMBERS, COUNT);
    assert_all_in_order(&seqs, COUNT);

    // Every message was delivered or dropped, once per member (counted once a round of
    // deliveries is done).
    util::wait_until("every message counted", || {
        let s = r.room.stats();
        s.delivered + s.dropped == COUNT * MEMBERS as u64
    });
    let stats = r.room.stats();
    assert_eq!(stats.published, COUNT);
    assert_eq!(stats.members, MEMBERS, "a slow member stays under Drop");
    assert_eq!(stats.closed, 0);
    assert!(stats.dropped > 0, "the stalled member missed messages");
    // The server's counters say the same (one group here), in /metrics too.
    let total = r.server.stats().total();
    assert_eq!(
        (total.group_delivered, total.group_dropped),
        (stats.delivered, stats.dropped)
    );
    let metrics = r.server.stats().prometheus();
    let line = format!("eventide_group_dropped_total {}", stats.dropped);
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    // Its output never passed the group's limit: the server holds no more for it than that.
    let peak = r.server.stats().total().peak_pending_output;
    assert!(
        peak <= MAX_PENDING as u64,
        "{peak} bytes pending on one connection, the limit is {MAX_PENDING}"
    );

    // What it did get is the rest of the delivered messages, in order, with gaps.
    let its = stats.delivered - COUNT * (MEMBERS as u64 - 1);
    let got = read_messages(&mut stalled, Some(its), &AtomicU64::new(0));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    stalled.set_nonblocking(true).unwrap();
    assert_eq!(
        stalled.read(&mut [0u8; 1]).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "nothing more than counted as delivered"
    );

    // It keeps its place: once it reads, it gets the next messages again.
    stalled.set_nonblocking(false).unwrap();
    r.room.post(message(COUNT + 1)).unwrap();
    let next = read_messages(&mut stalled, Some(1), &AtomicU64::new(0));
    assert_eq!(next, [COUNT + 1]);
    r.failures.assert_none();
    r.server.stop();
    r.server.join().unwrap();
}

#[test]
fn a_member_that_stops_reading_is_closed_while_the_others_get_all() {
    const MEMBERS: usize = 10;
    const COUNT: u64 = 1000;
    let r = start(Group::with_max_pending(SlowConsumer::Close, MAX_PENDING));
    let (mut stalled, stalled_id, _readers, seqs) = run(&r, MEMBERS, COUNT);
    assert_all_in_order(&seqs, COUNT);

    let (id, reason) = r.failures.recv(&r.closed, "the slow member's close");
    assert_eq!(
        id.as_u64(),
        stalled_id,
        "the stalled member is the one closed"
    );
    assert_eq!(reason, CloseReason::SlowConsumer.as_str());
    util::wait_until("the close counted", || r.room.stats().closed == 1);
    let stats = r.room.stats();
    assert_eq!((stats.closed, stats.dropped), (1, 0));
    assert_eq!(stats.members, MEMBERS - 1, "a closed member has left");
    assert_eq!(
        r.server
            .stats()
            .total()
            .closed_by_reason
            .get(&CloseReason::SlowConsumer),
        1
    );
    let peak = r.server.stats().total().peak_pending_output;
    assert!(
        peak <= MAX_PENDING as u64,
        "{peak} bytes pending on one connection"
    );

    // Its client reads what reached its socket, then the end of the stream.
    let got = read_messages(&mut stalled, None, &AtomicU64::new(0));
    assert!(
        got.len() < COUNT as usize && got.iter().copied().eq(1..=got.len() as u64),
        "the first messages, then the close: {} of them",
        got.len()
    );
    assert!(r.closed.try_recv().is_err(), "no reader was closed");
    r.failures.assert_none();
    r.server.stop();
    r.server.join().unwrap();
}

/// Relays: a client sends `[target id: 8 bytes][text]` and the handler writes the text to
/// the target with `LoopCx::write_to`, reporting each call's result.
struct Relay {
    on_loop: HashMap<u64, ConnId>,
    results: mpsc::Sender<Result<(), ErrorKind>>,
}

impl Handler for Relay {
    type State = ();
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        self.on_loop.insert(conn.id().as_u64(), conn.id());
        conn.write(&conn.id().as_u64().to_le_bytes());
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let input = conn.input();
        if input.len() < 9 {
            return Action::Continue;
        }
        let target = u64::from_le_bytes(input[..8].try_into().unwrap());
        let text = input[8..].to_vec();
        conn.consume(input.len());
        // A connection of this loop by the id it gave; any other by the rebuilt id (which
        // names no slot).
        let to = self.on_loop.get(&target).copied();
        let Some(to) = to.or_else(|| ConnId::from_u64(target)) else {
            let _ = self.results.send(Err(ErrorKind::NotFound));
            return Action::Continue;
        };
        let result = conn.loop_cx().write_to(to, &text);
        let _ = self.results.send(result.map_err(|e| e.kind()));
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), _: &CloseReason) {
        self.on_loop.remove(&id.as_u64());
    }
}

#[test]
fn write_to_reaches_a_connection_of_the_loop_without_a_mailbox_task() {
    let (tx, results) = mpsc::channel();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| Relay {
            on_loop: HashMap::new(),
            results: tx.clone(),
        })
        .unwrap();
    let addr = server.local_addr();
    let mut clients: Vec<(TcpStream, u64)> = (0..8).map(|_| join(addr, false)).collect();
    let loop_of = |id: u64| id >> 32;
    // Two connections on one loop, one on the other.
    let a = (0..clients.len())
        .find(|&i| {
            clients
                .iter()
                .filter(|c| loop_of(c.1) == loop_of(clients[i].1))
                .count()
                >= 2
        })
        .expect("two connections on one loop");
    let b = (0..clients.len())
        .find(|&i| i != a && loop_of(clients[i].1) == loop_of(clients[a].1))
        .unwrap();
    let other = (0..clients.len()).find(|&i| loop_of(clients[i].1) != loop_of(clients[a].1));
    let recv = |what: &str| {
        results
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no result for {what}"))
    };
    let tasks_before = server.stats().total().tasks;

    let b_id = clients[b].1;
    for i in 0..100u32 {
        let text = format!("hello {i}\n");
        let mut msg = b_id.to_le_bytes().to_vec();
        msg.extend_from_slice(text.as_bytes());
        clients[a].0.write_all(&msg).unwrap();
        assert_eq!(recv("a write to the same loop"), Ok(()));
        let mut got = vec![0u8; text.len()];
        clients[b].0.read_exact(&mut got).unwrap();
        assert_eq!(got, text.as_bytes());
    }
    assert_eq!(
        server.stats().total().tasks,
        tasks_before,
        "no task went through a mailbox"
    );

    if let Some(o) = other {
        let mut msg = clients[o].1.to_le_bytes().to_vec();
        msg.extend_from_slice(b"elsewhere");
        clients[a].0.write_all(&msg).unwrap();
        assert_eq!(
            recv("a write to another loop"),
            Err(ErrorKind::InvalidInput)
        );
    }
    // A connection that closed gets nothing, and the writer is not hurt.
    let (closed, closed_id) = clients.remove(b);
    drop(closed);
    let a = if b < a { a - 1 } else { a };
    let mut msg = closed_id.to_le_bytes().to_vec();
    msg.extend_from_slice(b"too late");
    loop {
        clients[a].0.write_all(&msg).unwrap();
        // Once the loop saw the close, the id is forgotten and rebuilt: `InvalidInput`.
        if recv("a write to a closed connection") == Err(ErrorKind::InvalidInput) {
            break;
        }
    }
    let mut msg = clients[a].1.to_le_bytes().to_vec();
    msg.extend_from_slice(b"to myself");
    clients[a].0.write_all(&msg).unwrap();
    assert_eq!(recv("a write to itself"), Ok(()));
    let mut got = [0u8; 9];
    clients[a].0.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to myself");
    server.stop();
    server.join().unwrap();
}

/// Members come and go, a connection of each loop publishes from its callbacks and a thread
/// posts, all at once; then the server stops with broadcasts in flight. The members that stay
/// get every message of every publisher in order; nothing panics; posting after the stop
/// fails cleanly or does nothing.
#[test]
fn members_closing_mid_broadcast_and_a_stopping_server_break_nothing() {
    let r = start(Group::new(SlowConsumer::Drop));
    let addr = r.server.local_addr();
    const STAYING: usize = 6;
    const COUNT: u64 = 500;
    let mut progress = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..STAYING {
        let (mut s, _) = join(addr, false);
        let p = Arc::new(AtomicU64::new(0));
        progress.push(Arc::clone(&p));
        readers.push(thread::spawn(move || {
            let seqs = read_messages(&mut s, Some(COUNT), &p);
            (s, seqs)
        }));
    }
    util::wait_until("the staying members joined", || r.room.len() == STAYING);
    let churn = thread::spawn(move || {
        // Each comes, takes what arrives for a moment and goes, some with a reset.
        for i in 0..60 {
            let (s, _) = join(addr, false);
            if i % 2 == 0 {
                socket2::SockRef::from(&s)
                    .set_linger(Some(std::time::Duration::ZERO))
                    .unwrap();
            }
            drop(s);
        }
    });
    publish(&r.room, COUNT, &progress);
    churn.join().unwrap();
    let (_staying, seqs): (Vec<TcpStream>, Vec<Vec<u64>>) =
        readers.into_iter().map(|t| t.join().unwrap()).unzip();
    assert_all_in_order(&seqs, COUNT);
    util::wait_until("the leavers left", || r.room.len() == STAYING);

    // Stop with a stream of broadcasts going.
    let poster = {
        let room = r.room.clone();
        thread::spawn(move || {
            for seq in 0..10_000 {
                match room.post(message(seq)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                    Err(e) => panic!("post during the stop: {e}"),
                }
            }
        })
    };
    let stats = r.server.stats_handle();
    r.server.stop();
    r.server.join().unwrap();
    poster.join().unwrap();
    assert_eq!(stats.stats().total().panics, 0);
    assert_eq!(r.room.len(), 0, "every member left with the stop");
    r.room.post(message(0)).unwrap();
    r.failures.assert_none();
}

/// The README's fan-out snippet is `Group`'s documentation example (a compiled doc test),
/// without its hidden lines.
#[test]
fn the_readme_snippet_is_the_group_doc_example() {
    let root = env!("CARGO_MANIFEST_DIR");
    let source = std::fs::read_to_string(format!("{root}/src/group.rs")).unwrap();
    let start = source
        .find("/// ```no_run\n/// use eventide::{Action, Conn, Group")
        .expect("Group's doc example");
    let example: String = source[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "/// ```")
        .map(|l| {
            l.strip_prefix("/// ")
                .unwrap_or(l.trim_start_matches("///"))
        })
        .filter(|l| !l.starts_with("# "))
        .map(|l| format!("{l}\n"))
        .collect();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = format!("```rust,no_run\n{example}```\n");
    assert!(
        readme.contains(&block),
        "README.md's fan-out snippet differs from Group's doc example:\n{block}"
    );
}

/// Short writes (a shared payload cut anywhere, its rest queued as the shared buffer or a
/// copy), `EAGAIN` on ready sockets, `EINTR` and spurious wake-ups: every member still gets
/// every message, whole and in order, and nothing is dropped.
#[cfg(feature = "faults")]
#[test]
fn broadcasts_survive_short_writes_and_spurious_wakeups() {
    use eventide::{FaultConfig, FaultKind};
    const MEMBERS: usize = 8;
    const COUNT: u64 = 300;
    let kinds = [
        FaultKind::ShortWrite,
        FaultKind::ShortRead,
        FaultKind::Eintr,
        FaultKind::Eagain,
        FaultKind::SpuriousReady,
    ];
    for seed in 1..=3 {
        let cfg = FaultConfig::new(seed, 0.2).unwrap().with_kinds(&kinds);
        let (checks, failures) = checks();
        let (tx, closed) = mpsc::channel();
        let room = Group::new(SlowConsumer::Drop);
        let factory_room = room.clone();
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .loops(2)
            .faults(cfg)
            .start(move |_| Member {
                room: factory_room.clone(),
                closed: tx.clone(),
                checks: checks.clone(),
            })
            .unwrap();
        let r = Room {
            server,
            room,
            closed,
            failures,
        };
        let addr = r.server.local_addr();
        let mut progress = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..MEMBERS {
            let (mut s, _) = join(addr, false);
            let p = Arc::new(AtomicU64::new(0));
            progress.push(Arc::clone(&p));
            readers.push(thread::spawn(move || {
                let seqs = read_messages(&mut s, Some(COUNT), &p);
                (s, seqs)
            }));
        }
        util::wait_until("every member joined", || r.room.len() == MEMBERS);
        publish(&r.room, COUNT, &progress);
        let (_streams, seqs): (Vec<TcpStream>, Vec<Vec<u64>>) =
            readers.into_iter().map(|t| t.join().unwrap()).unzip();
        assert_all_in_order(&seqs, COUNT);
        util::wait_until("every message counted", || {
            r.room.stats().delivered == COUNT * MEMBERS as u64
        });
        let stats = r.room.stats();
        assert_eq!((stats.dropped, stats.closed), (0, 0), "seed {seed}");
        let faults = r.server.stats().faults();
        assert!(
            faults.get(FaultKind::ShortWrite) > 0,
            "seed {seed}: short writes were injected: {faults:?}"
        );
        r.failures.assert_none();
        r.server.stop();
        r.server.join().unwrap();
    }
}

/// A member that broadcasts every [`MESSAGE`]-sized record it sends to the room (the first
/// connection publishes; the others only read).
#[cfg(feature = "faults")]
struct Publisher {
    room: Group,
    checks: Checks,
}

#[cfg(feature = "faults")]
impl Handler for Publisher {
    type State = ();
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
        join_and_greet(&self.room, &self.checks, conn);
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let whole = conn.input().len() / MESSAGE * MESSAGE;
        let records: Vec<Arc<[u8]>> = conn.input()[..whole]
            .chunks_exact(MESSAGE)
            .map(Arc::from)
            .collect();
        conn.consume(whole);
        let sender = conn.id();
        let mut cx = conn.loop_cx();
        for r in records {
            let sent = self.room.broadcast_except(&mut cx, r, sender);
            self.checks
                .ok(sent, "a broadcast within the in-flight bound");
        }
        Action::Continue
    }
}

#[cfg(feature = "faults")]
#[test]
fn the_broadcasts_of_one_event_reach_every_member_whole_and_in_order() {
    // Bursts of 1 to 20 records per write: one event's broadcasts go to each member with one
    // send, copied together when small and gathered from the shared buffers when large; short
    // writes cut both kinds anywhere.
    use eventide::{FaultConfig, FaultKind};
    const MEMBERS: usize = 6;
    const BURSTS: u64 = 60;
    let cfg = FaultConfig::new(7, 0.2)
        .unwrap()
        .with_kinds(&[FaultKind::ShortWrite, FaultKind::Eagain]);
    let (checks, failures) = checks();
    let room = Group::new(SlowConsumer::Drop);
    let factory_room = room.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .faults(cfg)
        .start(move |_| Publisher {
            room: factory_room.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    let addr = server.local_addr();
    let (mut publisher, _) = join(addr, false);
    let mut members: Vec<TcpStream> = (0..MEMBERS).map(|_| join(addr, false).0).collect();
    util::wait_until("every member joined", || room.len() == MEMBERS + 1);
    let mut seq = 0;
    for burst in 0..BURSTS {
        let n = 1 + burst % 20;
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| {
                message({
                    seq += 1;
                    seq
                })
                .to_vec()
            })
            .collect();
        publisher.write_all(&bytes).unwrap();
        // Each member reads the burst before the next is written, so it usually lands in one
        // event (whether it does changes only which path sends it).
        for (i, m) in members.iter_mut().enumerate() {
            let got = read_messages(m, Some(n), &AtomicU64::new(0));
            let want: Vec<u64> = (seq - n + 1..=seq).collect();
            assert_eq!(got, want, "member {i}, burst {burst}");
        }
    }
    util::wait_until("every message counted", || {
        room.stats().delivered == seq * MEMBERS as u64
    });
    assert_eq!(room.stats().dropped, 0);
    assert!(
        server.stats().faults().get(FaultKind::ShortWrite) > 0,
        "short writes were injected"
    );
    failures.assert_none();
    server.stop();
    server.join().unwrap();
}
