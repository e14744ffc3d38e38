//! Fault injection (feature `faults`): the system calls under the reactor misbehave on
//! purpose, deterministically from a seed, so that the paths handling a short write, an
//! `EINTR` or a reset run — loopback almost never takes them.
//!
//! Every wrapper in `sys` that the reactor calls asks the calling thread's injector first. An
//! injector exists only on the threads a server started with faults configured (its loops and
//! workers), so other threads of the process — a test's clients — are never
//! affected. Each thread draws from its own random stream, derived from the seed and the
//! thread's role (loop *i*, worker *i*): the *n*-th call of loop 2 gets the same verdict in
//! every run with the same seed (which call is the *n*-th still depends on timing).
//!
//! With probability `rate` a call gets one fault, picked uniformly among the enabled kinds
//! that apply to it. The fault takes the place of the kernel's answer *inside* the wrapper's
//! retry loop, so an injected `EINTR` is retried exactly like a real one.
//!
//! | kind | calls | what the call returns |
//! |---|---|---|
//! | `short_read` | recv, recvmsg, recvmmsg | 1 to len−1 bytes (log-uniform), fewer datagrams |
//! | `short_write` | send, sendmsg, sendmmsg | the same, for writes |
//! | `eintr` | recv, send, accept4, connect, epoll_wait, eventfd, UDP batches | `EINTR` |
//! | `eagain` | recv, send, accept4, connect, eventfd read, UDP batches | `EAGAIN` on a ready descriptor |
//! | `spurious_ready` | epoll_wait | no events, early; or a registered descriptor reported ready with nothing to do |
//! | `reset` | recv, send, accept4, connect, shutdown | `ECONNRESET`/`EPIPE`, `ECONNABORTED`, `ECONNREFUSED`, `ENOTCONN` |
//! | `nomem` | recv, send, accept4, connect, epoll_ctl add, UDP batches | `ENOMEM` or `ENOBUFS` |
//! | `emfile` | accept4 | `EMFILE` or `ENFILE` |
//!
//! `close(2)` is not hooked: its result is never looked at (a failed close still frees the
//! descriptor on Linux, and retrying it could close someone else's).
//!
//! Faithful to the kernel where it matters: a short read, short write or `EAGAIN` on a
//! descriptor registered edge-triggered is followed by a readiness event at that thread's next
//! `epoll_wait`. In a real kernel the bytes behind a short read, or the room a short write
//! lacked, arrive a moment later and raise a new edge; without that event an edge-triggered
//! loop would wait for an edge no kernel would withhold. To name descriptors in events the
//! injector keeps each thread's epoll registrations (fd → interest and token).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::IoSlice;
use std::os::fd::RawFd;
use std::sync::Arc;

mod config;

pub(crate) use config::FaultCounters;
pub use config::{FaultConfig, FaultCounts, FaultKind, ENV_VAR};

use super::MinusOne;
use FaultKind::{Eagain, Eintr, Emfile, NoMem, Reset, ShortRead, ShortWrite, SpuriousReady};

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;
const EDGE: u32 = libc::EPOLLET as u32;

/// Which thread of a server an injector runs on; its random stream is derived from this.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    Loop(usize),
    Worker(usize),
}

/// The configuration a server starts with: `given` (from
/// [`Builder::faults`](crate::Builder::faults)), else `EVENTIDE_FAULTS`. Printed once to
/// stderr when faults are on; a malformed variable is an `InvalidInput` error.
pub(crate) fn effective(given: Option<FaultConfig>) -> std::io::Result<Option<FaultConfig>> {
    let (cfg, source) = match given {
        Some(c) => (Some(c), "Builder::faults"),
        None => (FaultConfig::from_env()?, ENV_VAR),
    };
    if let Some(c) = cfg {
        eprintln!("eventide: injecting faults {c} (from {source})");
    }
    Ok(cfg)
}

/// Turns fault injection on for the calling thread, counting into `counters`.
pub(crate) fn install(cfg: FaultConfig, role: Role, counters: Arc<FaultCounters>) {
    counters.enable();
    let stream = match role {
        Role::Loop(i) => i as u64,
        Role::Worker(i) => (1 << 32) | i as u64,
    };
    let injector = Injector {
        cfg,
        state: mix(cfg.seed() ^ mix(stream)),
        counters,
    };
    let _ = THREAD.try_with(|t| t.borrow_mut().injector = Some(injector));
}

struct Injector {
    cfg: FaultConfig,
    state: u64,
    counters: Arc<FaultCounters>,
}

impl Injector {
    /// splitmix64: one add and a mix per number; any seed gives a full-period stream.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One draw per call; with probability `rate`, a kind among the enabled `applicable` ones.
    fn pick(&mut self, applicable: u16) -> Option<FaultKind> {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let mask = applicable & self.cfg.kind_mask();
        if u >= self.cfg.rate() || mask == 0 {
            return None;
        }
        let nth = self.below(u64::from(mask.count_ones())) as usize;
        let kind = FaultKind::ALL
            .into_iter()
            .filter(|k| mask & k.bit() != 0)
            .nth(nth)?;
        self.counters.note(kind);
        Some(kind)
    }

    /// A length in `1..len` (`len >= 2`), log-uniform: one byte is as likely as half.
    fn shorter(&mut self, len: usize) -> usize {
        let max = len as u64 - 1;
        let bits = 64 - max.leading_zeros();
        let b = 1 + self.below(u64::from(bits)) as u32;
        let lo = 1u64 << (b - 1);
        let hi = ((1u64 << b) - 1).min(max);
        (lo + self.below(hi - lo + 1)) as usize
    }

    fn either(&mut self, a: i32, b: i32) -> i32 {
        if self.next() & 1 == 0 {
            a
        } else {
            b
        }
    }
}

fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An epoll registration made on this thread.
struct Registration {
    epfd: RawFd,
    events: u32,
    token: u64,
}

#[derive(Default)]
struct ThreadFaults {
    injector: Option<Injector>,
    /// Every registration this thread made, by descriptor (ordered: spurious events pick one
    /// by position, which must not depend on a hasher's random state).
    registered: BTreeMap<RawFd, Registration>,
    /// Readiness owed to descriptors whose I/O was cut short: `(fd, EPOLLIN or EPOLLOUT)`.
    owed: Vec<(RawFd, u32)>,
}

thread_local! {
    static THREAD: RefCell<ThreadFaults> = RefCell::new(ThreadFaults::default());
}

/// With this thread's injector: draws a verdict among `applicable` kinds and lets `f` turn a
/// fault into the call's result. `None` when no fault is injected.
fn decide<R>(
    applicable: u16,
    f: impl FnOnce(FaultKind, &mut Injector, &mut Vec<(RawFd, u32)>) -> R,
) -> Option<R> {
    THREAD
        .try_with(|t| {
            let t = &mut *t.borrow_mut();
            let injector = t.injector.as_mut()?;
            let kind = injector.pick(applicable)?;
            Some(f(kind, injector, &mut t.owed))
        })
        .ok()
        .flatten()
}

fn kinds(list: &[FaultKind]) -> u16 {
    list.iter().fold(0, |m, k| m | k.bit())
}

/// Short I/O applies only to calls of two units or more.
fn short_if(kind: FaultKind, len: usize) -> u16 {
    if len >= 2 {
        kind.bit()
    } else {
        0
    }
}

/// Sets `errno` and returns the C failure value, as a failing system call does.
pub(crate) fn fail<T: MinusOne>(errno: i32) -> T {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() = errno };
    T::MINUS_ONE
}

/// A stream receive of up to `len` bytes on `fd`: the length to ask the kernel for, or the
/// errno to fail with.
pub(crate) fn recv(fd: RawFd, len: usize) -> Result<usize, i32> {
    let applicable = short_if(ShortRead, len) | kinds(&[Eintr, Eagain, Reset, NoMem]);
    decide(applicable, |kind, inj, owed| match kind {
        ShortRead => {
            owed.push((fd, IN));
            Ok(inj.shorter(len))
        }
        Eagain => {
            owed.push((fd, IN));
            Err(libc::EAGAIN)
        }
        Reset => Err(libc::ECONNRESET),
        NoMem => Err(libc::ENOMEM),
        _ => Err(libc::EINTR),
    })
    .unwrap_or(Ok(len))
}

/// A stream send of `len` bytes on `fd`: the length to hand the kernel, or the errno.
pub(crate) fn send(fd: RawFd, len: usize) -> Result<usize, i32> {
    let applicable = short_if(ShortWrite, len) | kinds(&[Eintr, Eagain, Reset, NoMem]);
    decide(applicable, |kind, inj, owed| match kind {
        ShortWrite => {
            owed.push((fd, OUT));
            Ok(inj.shorter(len))
        }
        Eagain => {
            owed.push((fd, OUT));
            Err(libc::EAGAIN)
        }
        Reset => Err(inj.either(libc::EPIPE, libc::ECONNRESET)),
        NoMem => Err(libc::ENOBUFS),
        _ => Err(libc::EINTR),
    })
    .unwrap_or(Ok(len))
}

/// The iovecs of the first `cap` bytes of `bufs` (a gathering write cut short). They point
/// into `bufs`' buffers and are valid while those are.
pub(crate) fn cut(bufs: &[IoSlice<'_>], cap: usize) -> Vec<libc::iovec> {
    let mut left = cap;
    let mut out = Vec::new();
    for b in bufs {
        if left == 0 {
            break;
        }
        let take = b.len().min(left);
        out.push(libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: take,
        });
        left -= take;
    }
    out
}

/// `accept4` on a listener: `Ok` to make the call, or the errno (the connection stays queued).
pub(crate) fn accept() -> Result<(), i32> {
    decide(
        kinds(&[Eintr, Eagain, Reset, NoMem, Emfile]),
        |kind, inj, _| {
            Err(match kind {
                Eagain => libc::EAGAIN,
                Reset => libc::ECONNABORTED,
                NoMem => inj.either(libc::ENOBUFS, libc::ENOMEM),
                Emfile => inj.either(libc::EMFILE, libc::ENFILE),
                _ => libc::EINTR,
            })
        },
    )
    .unwrap_or(Ok(()))
}

/// A `connect` about to start: `Ok` to make it, or the errno it fails with.
pub(crate) fn connect() -> Result<(), i32> {
    decide(kinds(&[Eintr, Eagain, Reset, NoMem]), |kind, _, _| {
        Err(match kind {
            Eagain => libc::EAGAIN,
            Reset => libc::ECONNREFUSED,
            NoMem => libc::ENOBUFS,
            _ => libc::EINTR,
        })
    })
    .unwrap_or(Ok(()))
}

/// `shutdown(SHUT_WR)`: `ENOTCONN`, what a connection the peer has reset answers.
pub(crate) fn shutdown() -> Result<(), i32> {
    decide(Reset.bit(), |_, _, _| Err(libc::ENOTCONN)).unwrap_or(Ok(()))
}

/// An eventfd write (`EINTR` is all a non-blocking eventfd write can meet in practice).
pub(crate) fn eventfd_write() -> Result<(), i32> {
    decide(Eintr.bit(), |_, _, _| Err(libc::EINTR)).unwrap_or(Ok(()))
}

/// An eventfd read: `EINTR`, or `EAGAIN` although the descriptor was reported readable.
pub(crate) fn eventfd_read() -> Result<(), i32> {
    decide(kinds(&[Eintr, Eagain]), |kind, _, _| {
        Err(if kind == Eagain {
            libc::EAGAIN
        } else {
            libc::EINTR
        })
    })
    .unwrap_or(Ok(()))
}

/// A UDP receive of up to `batch` datagrams: how many to ask for, or the errno.
pub(crate) fn udp_recv(batch: usize) -> Result<usize, i32> {
    let applicable = short_if(ShortRead, batch) | kinds(&[Eintr, Eagain, NoMem]);
    decide(applicable, |kind, inj, _| match kind {
        ShortRead => Ok(inj.shorter(batch)),
        Eagain => Err(libc::EAGAIN),
        NoMem => Err(libc::ENOMEM),
        _ => Err(libc::EINTR),
    })
    .unwrap_or(Ok(batch))
}

/// A UDP send of `batch` datagrams: how many to hand the kernel, or the errno.
pub(crate) fn udp_send(batch: usize) -> Result<usize, i32> {
    let applicable = short_if(ShortWrite, batch) | kinds(&[Eintr, Eagain, NoMem]);
    decide(applicable, |kind, inj, _| match kind {
        ShortWrite => Ok(inj.shorter(batch)),
        Eagain => Err(libc::EAGAIN),
        NoMem => Err(libc::ENOBUFS),
        _ => Err(libc::EINTR),
    })
    .unwrap_or(Ok(batch))
}

/// `epoll_ctl(op)`: `ENOMEM` may meet a registration (`EPOLL_CTL_ADD` allocates).
pub(crate) fn epoll_ctl(op: i32) -> Result<(), i32> {
    if op != libc::EPOLL_CTL_ADD {
        return Ok(());
    }
    decide(NoMem.bit(), |_, _, _| Err(libc::ENOMEM)).unwrap_or(Ok(()))
}

/// Records a successful `epoll_ctl` (on every thread: registrations made before the
/// injector is installed are needed later too).
pub(crate) fn registered(epfd: RawFd, op: i32, fd: RawFd, events: u32, token: u64) {
    let _ = THREAD.try_with(|t| {
        let reg = &mut t.borrow_mut().registered;
        if op == libc::EPOLL_CTL_DEL {
            reg.remove(&fd);
        } else {
            reg.insert(
                fd,
                Registration {
                    epfd,
                    events,
                    token,
                },
            );
        }
    });
}

/// Events to add to what one `epoll_wait` reports: `(token, flags)`.
pub(crate) type Extra = Vec<(u64, u32)>;

/// One `epoll_wait` on `epfd`: `wait(timeout_ms)` makes the real call. Returns its result (or
/// an injected failure: `-1` with `EINTR`, or `0` at once) and the events to merge into the
/// ones reported (see [`merge`]). A wait owing events does not block.
pub(crate) fn wait(epfd: RawFd, timeout_ms: i32, wait: impl FnOnce(i32) -> i32) -> (i32, Extra) {
    let extra = THREAD.try_with(|t| {
        let t = &mut *t.borrow_mut();
        let mut extra = Extra::new();
        let verdict = match t.injector.as_mut() {
            Some(injector) => injector.pick(kinds(&[Eintr, SpuriousReady])),
            None => None,
        };
        match verdict {
            // A failed or early wait leaves the owed events owed, as the kernel keeps a
            // pending edge across an interrupted wait.
            Some(Eintr) => return Err(-1),
            Some(_) if t.injector.as_mut().is_some_and(|i| i.next() & 1 == 0) => return Err(0),
            Some(_) => {
                let mine: Vec<&Registration> = t
                    .registered
                    .values()
                    .filter(|r| r.epfd == epfd && r.events & (IN | OUT) != 0)
                    .collect();
                if let (false, Some(injector)) = (mine.is_empty(), t.injector.as_mut()) {
                    let r = mine[injector.below(mine.len() as u64) as usize];
                    extra.push((r.token, r.events & (IN | OUT)));
                }
            }
            None => {}
        }
        for (fd, flags) in t.owed.drain(..) {
            match t.registered.get(&fd) {
                Some(r) if r.epfd == epfd && r.events & EDGE != 0 && r.events & flags != 0 => {
                    extra.push((r.token, flags))
                }
                _ => {}
            }
        }
        Ok(extra)
    });
    match extra {
        Ok(Ok(extra)) => {
            let timeout = if extra.is_empty() { timeout_ms } else { 0 };
            (wait(timeout), extra)
        }
        Ok(Err(-1)) => (fail(libc::EINTR), Extra::new()),
        Ok(Err(_)) => (0, Extra::new()),
        Err(_) => (wait(timeout_ms), Extra::new()),
    }
}

/// Merges `extra` into the `n` events the kernel reported in `buf` (a descriptor already
/// reported gets the flags added, others are appended while there is room). Returns the new
/// count.
pub(crate) fn merge(buf: &mut [libc::epoll_event], mut n: usize, extra: Extra) -> usize {
    for (token, flags) in extra {
        // epoll_event is packed on x86_64: fields are copied, never borrowed.
        let cap = buf.len();
        match buf[..n].iter_mut().find(|e| ({ e.u64 }) == token) {
            Some(e) => e.events = { e.events } | flags,
            None if n < cap => {
                buf[n] = libc::epoll_event {
                    events: flags,
                    u64: token,
                };
                n += 1;
            }
            None => {}
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injector(rate: f64) -> Injector {
        Injector {
            cfg: FaultConfig::new(9, rate).unwrap(),
            state: 1,
            counters: Arc::default(),
        }
    }

    #[test]
    fn short_lengths_cover_one_byte_to_len_minus_one() {
        let mut inj = injector(1.0);
        for len in [2usize, 3, 17, 65536] {
            let mut seen_one = false;
            for _ in 0..2000 {
                let n = inj.shorter(len);
                assert!((1..len).contains(&n), "{n} of {len}");
                seen_one |= n == 1;
            }
            assert!(seen_one, "a 1-byte cut of {len} is likely");
        }
    }

    #[test]
    fn rate_is_honoured_and_counted() {
        let mut inj = injector(0.1);
        let hits = (0..100_000)
            .filter(|_| inj.pick(Eintr.bit()).is_some())
            .count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert_eq!(inj.counters.snapshot().get(Eintr), hits as u64);
        // Disabled kinds are never picked.
        let mut inj = injector(1.0);
        inj.cfg = inj.cfg.with_kinds(&[Reset]);
        assert_eq!(inj.pick(Eintr.bit()), None);
        assert_eq!(inj.pick(Eintr.bit() | Reset.bit()), Some(Reset));
    }

    #[test]
    fn threads_without_an_injector_are_untouched() {
        // This test thread never installed one.
        assert_eq!(recv(0, 100), Ok(100));
        assert_eq!(send(0, 100), Ok(100));
        assert_eq!(accept(), Ok(()));
    }

    #[test]
    fn injected_calls_fail_like_the_kernel() {
        std::thread::spawn(|| {
            let counters = Arc::new(FaultCounters::default());
            let cfg = FaultConfig::new(1, 1.0).unwrap().with_kinds(&[Eintr]);
            install(cfg, Role::Loop(0), Arc::clone(&counters));
            assert_eq!(recv(0, 10), Err(libc::EINTR));
            let r: isize = fail(libc::EINTR);
            assert_eq!(r, -1);
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EINTR)
            );
            assert_eq!(counters.snapshot().get(Eintr), 1);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn merge_adds_flags_or_appends() {
        let ev = |events, u64| libc::epoll_event { events, u64 };
        let mut buf = [ev(IN, 1), ev(0, 0), ev(0, 0)];
        let n = merge(&mut buf, 1, vec![(1, OUT), (2, IN), (3, IN)]);
        assert_eq!(n, 3);
        assert_eq!(({ buf[0].events }, { buf[0].u64 }), (IN | OUT, 1));
        assert_eq!(({ buf[1].events }, { buf[1].u64 }), (IN, 2));
        assert_eq!({ buf[2].u64 }, 3);
    }
}
