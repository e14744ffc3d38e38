//! [`Group`]: connections that receive the same messages (fan-out), across the loops of a
//! server.
//!
//! A group keeps its members where they live: each loop has its own list of the members it
//! owns (`fanout::LoopGroups`), read and changed only on that loop's thread. A broadcast from
//! a callback goes to the members of the caller's loop without a mailbox — into the group's
//! log there once the callback's event is done, written to the members a slice at a time
//! between the loop's other events — and to each *other* loop that has members as one
//! task carrying the shared payload — one allocation per broadcast, one task per loop, never
//! one per recipient. What the loops share about a group is a few counters per loop: how many
//! members it has (a broadcast skips loops without any), the bytes in flight to it (bounded,
//! so a loop that falls behind pushes back on the publisher instead of growing its mailbox),
//! and what was delivered, dropped and closed. No lock is taken on the way, but the target
//! loops' mailboxes.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use crate::conn::{Conn, ConnId};
use crate::cx::{LoopCore, LoopCx};
use crate::fanout::{self, Counters, Rules, Shipment, SlowConsumer};
use crate::handle::ConnHandle;
use crate::mailbox::{Loops, Task};
use crate::stats::bump;

/// Tells groups apart in a loop's table (process-wide, never reused).
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// A set of connections, on any loops of one server, that receive the same messages: a chat
/// room, a topic, the players of a game.
///
/// Cheap to clone (`Send + Sync`): every clone is the same group. Connections join from a
/// callback ([`join`](Group::join)) or from any thread ([`join_handle`](Group::join_handle)),
/// and leave the same ways or by closing. A message is one shared buffer (`Arc<[u8]>`), written
/// as it is to every member: the payload is allocated once per broadcast, whatever the number
/// of members, and only a member whose socket refuses it keeps a reference (a long one) or a
/// copy (a short one) in its pending output.
///
/// From a callback, [`broadcast`](Group::broadcast) logs the message for the members of the
/// caller's loop once the callback's event is done, and posts one task per other loop that
/// has members; from any other thread, [`post`](Group::post) posts one task per loop. Each
/// loop writes a group's log to its members 64 at a time, with its other events in between:
/// a member gets everything published since it was last written in one system call (up to 64
/// messages), so the more a group is sent, the fuller each call. A loop holds at most the
/// handle write limit of a group's messages not yet written to all of its members; past it,
/// it writes them to everyone before it reads on.
///
/// Order is kept as if each message were written to every member at once: messages from one
/// publisher (one connection's callbacks, one thread) reach every member in the order they
/// were sent, and a member is written what it is owed before anything else reaches it — its
/// own callbacks' output, a [`write_to`](crate::LoopCx::write_to) — so it never sees those
/// overtake a message its loop took in earlier. A member that joins is owed what is published
/// from then on; a stop writes everything published before it first.
///
/// A member that does not keep up — its pending output would pass the group's limit (the
/// server's high-water mark unless [`with_max_pending`](Group::with_max_pending) says
/// otherwise) — is treated as the [`SlowConsumer`] policy says: the message is dropped for it,
/// or it is closed. Either way the others are not slowed down, and no member holds more than
/// the limit (or one message, when a single message is larger). Broadcasts in flight to a loop
/// are bounded by the handle write limit
/// ([`Builder::handle_write_limit`](crate::Builder::handle_write_limit)): past it a broadcast
/// fails with `WouldBlock` and nothing is sent.
///
/// A broadcast chat:
///
/// ```no_run
/// use eventide::{Action, Conn, Group, Handler, Refusal, Server, SlowConsumer};
///
/// struct Chat {
///     room: Group,
/// }
///
/// impl Handler for Chat {
///     type State = ();
///     type Message = ();
///
///     fn on_open(&mut self, conn: &mut Conn<'_>) -> Result<(), Refusal> {
///         let _ = self.room.join(conn); // left again when the connection closes
///         Ok(())
///     }
///
///     fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
///         let (text, me) = (conn.input(), conn.id());
///         // One allocation, however many members; everyone but the sender gets it.
///         let _ = self.room.broadcast_except(&mut conn.loop_cx(), text, me);
///         conn.consume(text.len());
///         Action::Continue
///     }
/// }
///
/// let room = Group::new(SlowConsumer::Drop); // a member that falls behind misses messages
/// let server = Server::builder()
///     .bind("127.0.0.1:7000")
///     .start(move |_| Chat { room: room.clone() })?;
/// server.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Group {
    shared: Arc<GroupShared>,
}

struct GroupShared {
    id: u64,
    rules: Rules,
    /// The server the group serves, fixed by its first member or broadcast.
    binding: OnceLock<Binding>,
    /// Broadcasts posted from outside the loops ([`Group::post`]).
    posted: AtomicU64,
}

/// A group's view of its server: the loops, and its counters on each.
struct Binding {
    loops: Loops,
    counters: Box<[Arc<Counters>]>,
    /// The most bytes in flight to one loop (the server's handle write limit).
    in_flight_limit: usize,
}

/// What a group has done, summed over its loops ([`Group::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupStats {
    /// Members now (a join posted from another thread counts from the moment it is posted).
    pub members: usize,
    /// Broadcasts sent (from callbacks and from other threads).
    pub published: u64,
    /// Messages handed to a member's output: each broadcast counts once per member reached.
    pub delivered: u64,
    /// Messages a member did not get: it was too far behind under [`SlowConsumer::Drop`], or
    /// its write side was shut.
    pub dropped: u64,
    /// Members closed for being too far behind ([`SlowConsumer::Close`]).
    pub closed: u64,
}

impl Group {
    /// An empty group whose members may hold up to the server's high-water mark of pending
    /// output ([`Builder::high_water`](crate::Builder::high_water)); past it, `policy` applies.
    pub fn new(policy: SlowConsumer) -> Group {
        Group::make(Rules {
            policy,
            max_pending: None,
        })
    }

    /// An empty group whose members may hold up to `max_pending` bytes of pending output;
    /// past it, `policy` applies.
    pub fn with_max_pending(policy: SlowConsumer, max_pending: usize) -> Group {
        Group::make(Rules {
            policy,
            max_pending: Some(max_pending),
        })
    }

    fn make(rules: Rules) -> Group {
        Group {
            shared: Arc::new(GroupShared {
                id: NEXT_GROUP.fetch_add(1, Relaxed),
                rules,
                binding: OnceLock::new(),
                posted: AtomicU64::new(0),
            }),
        }
    }

    /// One buffer holding `parts` one after another, in a single allocation: a message
    /// built from pieces (a prefix, the text, a line end) for [`broadcast`](Group::broadcast).
    ///
    /// ```
    /// let msg = eventide::Group::payload(&[b"alice", b": ", b"hello", b"\n"]);
    /// assert_eq!(&msg[..], b"alice: hello\n");
    /// ```
    pub fn payload(parts: &[&[u8]]) -> Arc<[u8]> {
        let len = parts.iter().map(|p| p.len()).sum();
        // A zeroed buffer of a length known in advance is collected in one allocation; a
        // fresh `Arc` is unique, so it can be filled in place.
        let mut buf: Arc<[u8]> = (0..len).map(|_| 0u8).collect();
        if let Some(bytes) = Arc::get_mut(&mut buf) {
            let mut at = 0;
            for p in parts {
                bytes[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        }
        buf
    }

    /// What the group does with a member that does not keep up.
    pub fn policy(&self) -> SlowConsumer {
        self.shared.rules.policy
    }

    /// The group's view of the server of `loops`, made on first use; an error for another
    /// server's.
    fn bind(&self, loops: &Loops, in_flight_limit: usize) -> io::Result<&Binding> {
        let binding = self.shared.binding.get_or_init(|| Binding {
            loops: Arc::clone(loops),
            counters: loops.iter().map(|_| Arc::default()).collect(),
            in_flight_limit,
        });
        if Arc::ptr_eq(&binding.loops, loops) {
            Ok(binding)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a group serves the connections of one server, and this is another one",
            ))
        }
    }

    /// Adds the connection of this callback to the group. Returns `false` if it was a member
    /// already; fails with `InvalidInput` if the group serves another server's connections.
    /// It leaves the group when it closes, or with [`leave`](Group::leave).
    pub fn join(&self, conn: &mut Conn<'_>) -> io::Result<bool> {
        let binding = self.bind(&conn.lp.loops, conn.lp.cfg.handle_write_limit)?;
        let id = conn.id();
        let counters = &binding.counters[id.loop_index()];
        let slot = (id.key, id.generation);
        let rules = self.shared.rules;
        Ok(conn
            .lp
            .fanout
            .join(self.shared.id, rules, counters, slot, false))
    }

    /// Takes the connection of this callback out of the group. Returns whether it was a
    /// member.
    pub fn leave(&self, conn: &mut Conn<'_>) -> bool {
        let id = conn.id();
        conn.lp
            .fanout
            .leave(self.shared.id, (id.key, id.generation))
    }

    /// Adds a connection to the group from any thread: it counts as a member at once (a
    /// broadcast from this thread that follows reaches it) and joins on its loop, in order
    /// with the handle's other operations. Fails with `NotConnected` once the connection has
    /// closed, `InvalidInput` if the group serves another server's connections.
    pub fn join_handle(&self, conn: &ConnHandle) -> io::Result<()> {
        let binding = self.bind(conn.shared.loops(), conn.limit())?;
        let counters = Arc::clone(&binding.counters[conn.id().loop_index()]);
        counters.members.fetch_add(1, AcqRel);
        let join = PendingJoin {
            group: self.clone(),
            counters: Some(counters),
        };
        // Dropped unrun (the connection closed first), the join gives its count back.
        conn.with_conn(move |c| join.apply(c))
    }

    /// Takes a connection out of the group from any thread, in order with the handle's other
    /// operations. Fails with `NotConnected` once it has closed (it has left then).
    pub fn leave_handle(&self, conn: &ConnHandle) -> io::Result<()> {
        let group = self.clone();
        conn.with_conn(move |c| {
            group.leave(c);
        })
    }

    /// From a callback: sends `payload` to every member. The members on this loop get it
    /// after the output this event's callbacks wrote, from the group's log on this loop, with
    /// whatever else they are owed, in one system call per member; each other loop with
    /// members gets one task. Fails with `WouldBlock`, sending
    /// nothing, when a loop already has the handle write limit of broadcasts in flight;
    /// `InvalidInput` if the group serves another server.
    ///
    /// The bytes go out as they are, to every member: for WebSocket members, broadcast a
    /// frame ([`ws::shared_text`](crate::ws::shared_text) with the feature `ws`).
    pub fn broadcast(&self, cx: &mut LoopCx<'_>, payload: impl Into<Arc<[u8]>>) -> io::Result<()> {
        self.broadcast_from(cx.core(), payload.into(), None)
    }

    /// Like [`broadcast`](Group::broadcast), to every member but `except` (the sender, say).
    pub fn broadcast_except(
        &self,
        cx: &mut LoopCx<'_>,
        payload: impl Into<Arc<[u8]>>,
        except: ConnId,
    ) -> io::Result<()> {
        self.broadcast_from(cx.core(), payload.into(), Some(except))
    }

    /// From any thread: sends `payload` to every member, one task per loop with members (the
    /// calling thread's own loop included, if it is one: from a callback,
    /// [`broadcast`](Group::broadcast) skips that loop's mailbox). Fails as `broadcast` does.
    pub fn post(&self, payload: impl Into<Arc<[u8]>>) -> io::Result<()> {
        self.post_from(payload.into(), None)
    }

    /// Like [`post`](Group::post), to every member but `except`.
    pub fn post_except(&self, payload: impl Into<Arc<[u8]>>, except: ConnId) -> io::Result<()> {
        self.post_from(payload.into(), Some(except))
    }

    fn broadcast_from(
        &self,
        lp: &mut LoopCore,
        payload: Arc<[u8]>,
        except: Option<ConnId>,
    ) -> io::Result<()> {
        let binding = self.bind(&lp.loops, lp.cfg.handle_write_limit)?;
        let here = lp.shared.index;
        self.ship(binding, Some(here), &payload, except)?;
        bump(&binding.counters[here].published, 1);
        let id = self.shared.id;
        if lp.fanout.has_members(id) {
            lp.fanout
                .push_broadcast(id, payload, generation_on(except, here));
        }
        Ok(())
    }

    fn post_from(&self, payload: Arc<[u8]>, except: Option<ConnId>) -> io::Result<()> {
        if let Some(binding) = self.shared.binding.get() {
            self.ship(binding, None, &payload, except)?;
        }
        self.shared.posted.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Posts `payload` to every loop with members but `skip`: reserves its cost in flight on
    /// each first, so it goes to all of them or to none.
    fn ship(
        &self,
        b: &Binding,
        skip: Option<usize>,
        payload: &Arc<[u8]>,
        except: Option<ConnId>,
    ) -> io::Result<()> {
        let cost = fanout::in_flight_cost(payload.len());
        let mut targets = LoopSet::with_room(b.loops.len());
        for (i, counters) in b.counters.iter().enumerate() {
            if Some(i) == skip || counters.members.load(Acquire) == 0 || b.loops[i].has_exited() {
                continue;
            }
            if !counters.reserve(cost, b.in_flight_limit) {
                targets.for_each(|j| b.counters[j].release(cost));
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "a loop of the group has the handle write limit of broadcasts in flight",
                ));
            }
            targets.insert(i);
        }
        targets.for_each(|i| {
            b.loops[i].post(Task::Broadcast(Shipment {
                group: self.shared.id,
                payload: Arc::clone(payload),
                except: generation_on(except, i),
                counters: Arc::clone(&b.counters[i]),
            }));
        });
        Ok(())
    }

    /// Members now, on every loop.
    pub fn len(&self) -> usize {
        self.shared.binding.get().map_or(0, |b| {
            b.counters.iter().map(|c| c.members.load(Acquire)).sum()
        })
    }

    /// Whether the group has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the group has done, summed over its loops.
    pub fn stats(&self) -> GroupStats {
        let mut s = GroupStats {
            published: self.shared.posted.load(Relaxed),
            ..GroupStats::default()
        };
        if let Some(b) = self.shared.binding.get() {
            for c in b.counters.iter() {
                s.members += c.members.load(Acquire);
                s.published += c.published.load(Relaxed);
                s.delivered += c.delivered.load(Relaxed);
                s.dropped += c.dropped.load(Relaxed);
                s.closed += c.closed.load(Relaxed);
            }
        }
        s
    }
}

/// The generation of `except` if it is a connection of loop `on`.
fn generation_on(except: Option<ConnId>, on: usize) -> Option<u32> {
    except
        .filter(|id| id.loop_index() == on)
        .map(|id| id.generation)
}

/// A join posted from another thread: its place in the members count is taken, and given
/// back if the join never runs (the connection closed first) or finds a member already.
struct PendingJoin {
    group: Group,
    counters: Option<Arc<Counters>>,
}

impl PendingJoin {
    fn apply(mut self, conn: &mut Conn<'_>) {
        let Some(counters) = self.counters.take() else {
            return;
        };
        let id = conn.id();
        let shared = &self.group.shared;
        conn.lp.fanout.join(
            shared.id,
            shared.rules,
            &counters,
            (id.key, id.generation),
            true,
        );
    }
}

impl Drop for PendingJoin {
    fn drop(&mut self) {
        if let Some(counters) = self.counters.take() {
            counters.members.fetch_sub(1, AcqRel);
        }
    }
}

/// The loops a broadcast is shipped to: a bit each, on the stack for up to 64 loops.
enum LoopSet {
    Few(u64),
    Many(Vec<usize>),
}

impl LoopSet {
    fn with_room(loops: usize) -> LoopSet {
        if loops <= 64 {
            LoopSet::Few(0)
        } else {
            LoopSet::Many(Vec::new())
        }
    }

    fn insert(&mut self, i: usize) {
        match self {
            LoopSet::Few(bits) => *bits |= 1 << i,
            LoopSet::Many(v) => v.push(i),
        }
    }

    fn for_each(&self, mut f: impl FnMut(usize)) {
        match self {
            LoopSet::Few(bits) => {
                let mut rest = *bits;
                while rest != 0 {
                    f(rest.trailing_zeros() as usize);
                    rest &= rest - 1;
                }
            }
            LoopSet::Many(v) => v.iter().copied().for_each(f),
        }
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.shared.id)
            .field("policy", &self.shared.rules.policy)
            .field("max_pending", &self.shared.rules.max_pending)
            .field("members", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_set_visits_what_was_inserted() {
        for loops in [2, 64, 65, 300] {
            let mut set = LoopSet::with_room(loops);
            let want: Vec<usize> = (0..loops).filter(|i| i % 3 == 1).collect();
            for &i in &want {
                set.insert(i);
            }
            let mut got = Vec::new();
            set.for_each(|i| got.push(i));
            assert_eq!(got, want, "{loops} loops");
        }
    }
}
