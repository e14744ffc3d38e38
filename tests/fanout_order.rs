//! Fan-out at scale: 1,000 connections over 2 loops each receive every one of 10,000
//! broadcasts, in publish order per publisher, from three publishers at once — a thread
//! (`Group::post`) and a connection on each loop (`Group::broadcast_except` from `on_data`) —
//! and each broadcast's payload is allocated once, however many members it reaches (counted
//! by this binary's allocator). Alone in its binary: the allocator counts the whole process.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use eventide::{Action, Conn, Group, Handler, Refusal, Server, SlowConsumer};
use util::{checks, Checks, TIMEOUT};

/// One message: `FAN!`, the publisher (a connection id, or [`THREAD`]), its sequence number,
/// and four bytes of padding.
const RECORD: usize = 24;
const THREAD: u64 = u64::MAX;
const MEMBERS: usize = 1000;
const FROM_THREAD: u64 = 4000;
const FROM_EACH_CONN: u64 = 3000;
const BROADCASTS: u64 = FROM_THREAD + 2 * FROM_EACH_CONN;

/// Counts, while [`COUNTING`], every allocation and those the size of a payload's `Arc<[u8]>`
/// (its two counts, then the bytes).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static PAYLOAD_SIZED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are atomics
// and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCS.fetch_add(1, Relaxed);
            if layout.size() == 2 * std::mem::size_of::<usize>() + RECORD {
                PAYLOAD_SIZED.fetch_add(1, Relaxed);
            }
        }
        // SAFETY: the caller's layout, passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn record(publisher: u64, seq: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..4].copy_from_slice(b"FAN!");
    r[4..12].copy_from_slice(&publisher.to_le_bytes());
    r[12..20].copy_from_slice(&seq.to_le_bytes());
    r
}

/// Every connection joins the room and is told its id; a connection that sends bytes
/// publishes one message per byte to everyone else.
struct Member {
    room: Group,
    checks: Checks,
}

impl Handler for Member {
    type State = u64; // messages published
    type Message = ();

    fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<u64, Refusal> {
        let joined = self.room.join(conn);
        self.checks.eq(joined.ok(), Some(true), "a first join");
        conn.write(&conn.id().as_u64().to_le_bytes());
        Ok(0)
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, sent: &mut u64) -> Action {
        let (n, me) = (conn.input().len(), conn.id());
        conn.consume(n);
        for _ in 0..n {
            *sent += 1;
            let payload: Arc<[u8]> = Arc::from(&record(me.as_u64(), *sent)[..]);
            let result = self.room.broadcast_except(&mut conn.loop_cx(), payload, me);
            self.checks
                .ok(result, "a broadcast within the in-flight bound");
        }
        Action::Continue
    }
}

/// What one client received: per publisher, the next sequence number expected.
struct Received {
    next: HashMap<u64, u64>,
    messages: u64,
    bad: Option<String>,
}

impl Received {
    fn take(&mut self, r: &[u8]) {
        let publisher = u64::from_le_bytes(r[4..12].try_into().unwrap());
        let seq = u64::from_le_bytes(r[12..20].try_into().unwrap());
        match self.next.get_mut(&publisher) {
            Some(next) if &r[..4] == b"FAN!" && seq == *next => *next = seq + 1,
            next => {
                let want = next.map(|n| *n);
                self.bad.get_or_insert(format!(
                    "from {publisher:x}: message {seq} where {want:?} was due"
                ));
            }
        }
        self.messages += 1;
    }
}

struct Client {
    stream: TcpStream,
    expected: u64,
    got: Received,
    carry: Vec<u8>,
}

impl Client {
    /// Reads what is there (or blocks for it); returns whether all expected bytes came.
    fn read(&mut self, buf: &mut [u8], block: bool) -> bool {
        self.stream.set_nonblocking(!block).unwrap();
        match self.stream.read(buf) {
            Ok(0) => {
                self.got
                    .bad
                    .get_or_insert("the server closed the connection".into());
                return true;
            }
            Ok(n) => {
                self.carry.extend_from_slice(&buf[..n]);
                let whole = self.carry.len() / RECORD * RECORD;
                for r in self.carry[..whole].chunks_exact(RECORD) {
                    self.got.take(r);
                }
                self.carry.drain(..whole);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                self.got.bad.get_or_insert(format!("read: {e}"));
                return true;
            }
        }
        self.got.messages >= self.expected
    }
}

/// Reads `clients` round-robin until each has everything (a pass that finds nothing blocks
/// on the first unfinished client: the server writes to all of them in turn).
fn read_all(mut clients: Vec<Client>) -> Vec<Client> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left: Vec<usize> = (0..clients.len()).collect();
    let start = Instant::now();
    while let Some(&first) = left.first() {
        assert!(
            start.elapsed() < TIMEOUT * 2,
            "the broadcasts did not all arrive"
        );
        let before: u64 = left.iter().map(|&i| clients[i].got.messages).sum();
        left.retain(|&i| !clients[i].read(&mut buf, false));
        let after: u64 = left.iter().map(|&i| clients[i].got.messages).sum();
        if after == before && left.first() == Some(&first) && clients[first].read(&mut buf, true) {
            left.retain(|&i| i != first);
        }
    }
    clients
}

#[test]
fn a_thousand_members_get_ten_thousand_broadcasts_in_order_one_allocation_each() {
    let (checks, failures) = checks();
    let room = Group::new(SlowConsumer::Drop);
    let factory_room = room.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| Member {
            room: factory_room.clone(),
            checks: checks.clone(),
        })
        .unwrap();
    let addr: SocketAddr = server.local_addr();

    // Members, each told its id (and so its loop).
    let mut clients = Vec::new();
    for _ in 0..MEMBERS {
        let mut s = util::connect(addr);
        let mut id = [0u8; 8];
        s.read_exact(&mut id).unwrap();
        clients.push((s, u64::from_le_bytes(id)));
    }
    util::wait_until("every member joined", || room.len() == MEMBERS);
    // A publisher on each loop.
    let on_loop = |l: u64| clients.iter().position(|&(_, id)| id >> 32 == l).unwrap();
    let publishers = [on_loop(0), on_loop(1)];
    let publisher_ids: Vec<u64> = publishers.iter().map(|&i| clients[i].1).collect();
    let mut writers: Vec<TcpStream> = publishers
        .iter()
        .map(|&i| clients[i].0.try_clone().unwrap())
        .collect();
    let clients: Vec<Client> = clients
        .into_iter()
        .map(|(stream, id)| {
            let own = u64::from(publisher_ids.contains(&id));
            // Filled in advance: the readers allocate nothing while the allocator counts.
            let next = [THREAD, publisher_ids[0], publisher_ids[1]]
                .into_iter()
                .filter(|&p| p != id)
                .map(|p| (p, 1))
                .collect();
            Client {
                stream,
                expected: BROADCASTS - own * FROM_EACH_CONN,
                got: Received {
                    next,
                    messages: 0,
                    bad: None,
                },
                carry: Vec::with_capacity(64 * 1024 + RECORD),
            }
        })
        .collect();

    let readers: Vec<_> = split(clients, 16)
        .into_iter()
        .map(|part| thread::spawn(move || read_all(part)))
        .collect();
    let go = Arc::new(Barrier::new(2));
    let poster = {
        let (room, go) = (room.clone(), Arc::clone(&go));
        thread::spawn(move || {
            go.wait();
            for seq in 1..=FROM_THREAD {
                let payload: Arc<[u8]> = Arc::from(&record(THREAD, seq)[..]);
                loop {
                    match room.post(Arc::clone(&payload)) {
                        Ok(()) => break,
                        // Back-pressure from a loop with its bound of broadcasts in flight.
                        Err(e) if e.kind() == ErrorKind::WouldBlock => thread::yield_now(),
                        Err(e) => panic!("post: {e}"),
                    }
                }
            }
        })
    };
    COUNTING.store(true, Relaxed);
    go.wait();
    // Each publisher connection asks for its messages in bursts, as a client would type.
    for burst in 0..FROM_EACH_CONN / 100 {
        for w in &mut writers {
            w.write_all(&[burst as u8; 100]).unwrap();
        }
    }
    poster.join().unwrap();
    let clients: Vec<Client> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    COUNTING.store(false, Relaxed);

    failures.assert_none();
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.got.bad, None, "member {i}");
        assert_eq!(c.got.messages, c.expected, "member {i}");
        for (&p, &next) in &c.got.next {
            let count = if p == THREAD {
                FROM_THREAD
            } else {
                FROM_EACH_CONN
            };
            assert_eq!(next, count + 1, "member {i}: the messages of {p:x}");
        }
    }
    let deliveries: u64 = clients.iter().map(|c| c.expected).sum();
    let stats = room.stats();
    assert_eq!(stats.published, BROADCASTS);
    assert_eq!(
        (stats.delivered, stats.dropped, stats.closed),
        (deliveries, 0, 0)
    );
    assert_eq!(stats.members, MEMBERS);
    // One payload allocation per broadcast (the publishers' `Arc::from`), none per member;
    // and nothing else allocated per delivery either.
    let (sized, all) = (PAYLOAD_SIZED.load(Relaxed), ALLOCS.load(Relaxed));
    assert_eq!(
        sized, BROADCASTS,
        "allocations of a payload's size, {all} in all"
    );
    assert!(
        all < deliveries / 20,
        "{all} allocations for {deliveries} deliveries of {BROADCASTS} broadcasts"
    );
    drop((clients, writers));
    util::wait_until("every member left", || room.is_empty());
    server.stop();
    server.join().unwrap();
}

fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % parts].push(item);
    }
    out
}
