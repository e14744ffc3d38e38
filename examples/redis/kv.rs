//! The command table of the redis example, over the key-value store of `store.rs`. Shared
//! with the tests (`tests/resp.rs` includes this file and `store.rs`, as the demo does, each
//! as a module at the crate root), so they run exactly what the demo runs.

#![allow(dead_code)] // the tests use part of this module, the example another

use std::io::Write;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use eventide::resp::{Command, Service, Writer};
use eventide::{Action, LoopCx};

use crate::expiry::{self, Base, Unit};
use crate::store::{Entry, KeyRef, Now, Shard, Store};

/// Loop-timer token of the expiry sweep.
pub const SWEEP_TOKEN: u64 = 1;
/// How often loop 0 sweeps.
pub const SWEEP_PERIOD: Duration = Duration::from_millis(100);

/// The command table: one per loop, all sharing the [`Store`].
pub struct Kv {
    store: Arc<Store>,
}

impl Kv {
    /// A loop's service over `store`.
    pub fn new(store: Arc<Store>) -> Kv {
        Kv { store }
    }
}

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// A strict decimal `i64`, as Redis reads numbers (no sign but `-`, no spaces).
fn int(arg: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.starts_with('+') || (s.len() > 1 && s.starts_with('0')) || s.starts_with("-0") {
        return None;
    }
    s.parse().ok()
}

fn arity_error(reply: &mut Writer<'_>, name: &str) {
    reply.error_parts(&[
        b"ERR wrong number of arguments for '",
        name.as_bytes(),
        b"' command",
    ]);
}

fn unknown(cmd: &Command<'_>, reply: &mut Writer<'_>) {
    let mut parts: Vec<&[u8]> = vec![
        b"ERR unknown command '",
        cmd.name(),
        b"', with args beginning with: ",
    ];
    for a in cmd.args().skip(1).take(8) {
        parts.push(b"'");
        parts.push(&a[..a.len().min(128)]);
        parts.push(b"' ");
    }
    reply.error_parts(&parts);
}

impl Service for Kv {
    fn call(&mut self, cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
        let mut buf = [0u8; 16];
        let name = cmd.name();
        if name.len() > buf.len() {
            unknown(cmd, reply);
            return Action::Continue;
        }
        let upper = &mut buf[..name.len()];
        upper.copy_from_slice(name);
        upper.make_ascii_uppercase();
        let n = cmd.len();
        let arg = |i: usize| cmd.arg(i).unwrap_or(b"");
        let mut now = Now(None);
        let store = &*self.store;
        macro_rules! arity {
            ($ok:expr, $name:literal) => {
                if !($ok) {
                    arity_error(reply, $name);
                    return Action::Continue;
                }
            };
        }
        match &*upper {
            b"PING" => {
                arity!(n <= 2, "ping");
                match cmd.arg(1) {
                    Some(msg) => reply.bulk(msg),
                    None => reply.simple("PONG"),
                }
            }
            b"ECHO" => {
                arity!(n == 2, "echo");
                reply.bulk(arg(1));
            }
            b"GET" => {
                arity!(n == 2, "get");
                let key = store.key(arg(1));
                let mut shard = store.shard(key);
                reply.bulk_or_nil(shard.live(key, &mut now).map(|e| &e.value[..]));
            }
            b"SET" => {
                arity!(n >= 3, "set");
                self.set(cmd, reply, &mut now);
            }
            b"SETEX" | b"PSETEX" => {
                let (unit, name) = match upper[0] {
                    b'P' => (Unit::Millis, "psetex"),
                    _ => (Unit::Seconds, "setex"),
                };
                if n != 4 {
                    arity_error(reply, name);
                    return Action::Continue;
                }
                let Some(time) = int(arg(2)) else {
                    reply.error(NOT_INTEGER);
                    return Action::Continue;
                };
                let at = expiry::string_deadline(time, unit, Base::Now, &mut now)
                    .and_then(|at| expiry::instant(at, &mut now));
                let Some(at) = at else {
                    expiry::invalid(reply, name);
                    return Action::Continue;
                };
                let key = store.key(arg(1));
                store.shard(key).insert(key, arg(3), Some(at));
                reply.ok();
            }
            b"GETEX" => {
                arity!(n >= 2, "getex");
                self.getex(cmd, reply, &mut now);
            }
            b"DEL" | b"UNLINK" => {
                arity!(n >= 2, "del");
                let mut count = 0;
                for key in cmd.args().skip(1) {
                    let key = store.key(key);
                    let mut shard = store.shard(key);
                    if shard.live(key, &mut now).is_some() {
                        shard.remove(key);
                        count += 1;
                    }
                }
                reply.integer(count);
            }
            b"EXISTS" => {
                arity!(n >= 2, "exists");
                let count = cmd
                    .args()
                    .skip(1)
                    .map(|k| store.key(k))
                    .filter(|&k| store.shard(k).live(k, &mut now).is_some())
                    .count();
                reply.integer(count as i64);
            }
            b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" => {
                let by_arg = upper.len() > 4;
                let delta = if by_arg {
                    arity!(n == 3, "incrby");
                    match int(arg(2)) {
                        Some(d) => d,
                        None => {
                            reply.error(NOT_INTEGER);
                            return Action::Continue;
                        }
                    }
                } else {
                    arity!(n == 2, "incr");
                    1
                };
                let delta = if upper[0] == b'D' {
                    delta.checked_neg()
                } else {
                    Some(delta)
                };
                self.incr(arg(1), delta, reply, &mut now);
            }
            b"MGET" => {
                arity!(n >= 2, "mget");
                reply.array(n - 1);
                for key in cmd.args().skip(1) {
                    let key = store.key(key);
                    let mut shard = store.shard(key);
                    reply.bulk_or_nil(shard.live(key, &mut now).map(|e| &e.value[..]));
                }
            }
            b"MSET" => {
                arity!(n >= 3 && n % 2 == 1, "mset");
                // Atomic: lock every shard involved, in index order (no deadlock), then write.
                let keys: Vec<KeyRef<'_>> = (1..n).step_by(2).map(|i| store.key(arg(i))).collect();
                let mut idx: Vec<usize> = keys.iter().map(|&k| store.index(k)).collect();
                idx.sort_unstable();
                idx.dedup();
                let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
                    idx.iter().map(|&i| (i, store.lock(i))).collect();
                for (key, i) in keys.iter().zip((1..n).step_by(2)) {
                    let s = store.index(*key);
                    let g = guards.iter_mut().find(|(j, _)| *j == s).map(|(_, g)| g);
                    if let Some(g) = g {
                        g.insert(*key, arg(i + 1), None);
                    }
                }
                drop(guards);
                reply.ok();
            }
            b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" => {
                let (unit, base, name) = match &*upper {
                    b"EXPIRE" => (Unit::Seconds, Base::Now, "expire"),
                    b"PEXPIRE" => (Unit::Millis, Base::Now, "pexpire"),
                    b"EXPIREAT" => (Unit::Seconds, Base::Epoch, "expireat"),
                    _ => (Unit::Millis, Base::Epoch, "pexpireat"),
                };
                if n < 3 {
                    arity_error(reply, name);
                    return Action::Continue;
                }
                self.expire(cmd, (unit, base, name), reply, &mut now);
            }
            b"TTL" | b"PTTL" => {
                arity!(n == 2, "ttl");
                let key = store.key(arg(1));
                let mut shard = store.shard(key);
                let ttl = match shard.live(key, &mut now) {
                    None => -2,
                    Some(Entry { expires: None, .. }) => -1,
                    Some(Entry {
                        expires: Some(t), ..
                    }) => {
                        let ms = t.saturating_duration_since(now.get()).as_millis() as i64;
                        if upper[0] == b'P' {
                            ms
                        } else {
                            (ms + 500) / 1000
                        }
                    }
                };
                reply.integer(ttl);
            }
            b"PERSIST" => {
                arity!(n == 2, "persist");
                let key = store.key(arg(1));
                let mut shard = store.shard(key);
                let had = shard
                    .live(key, &mut now)
                    .is_some_and(|e| e.expires.is_some());
                if had {
                    shard.set_deadline(key, None);
                }
                reply.integer(i64::from(had));
            }
            b"DBSIZE" => reply.integer(store.len() as i64),
            b"FLUSHALL" | b"FLUSHDB" => {
                store.clear();
                reply.ok();
            }
            b"SELECT" => match arg(1) {
                b"0" => reply.ok(),
                _ => reply.error("ERR DB index is out of range"),
            },
            // redis-cli asks for command docs at start; an empty list is a valid answer.
            b"COMMAND" => reply.array(0),
            // redis-benchmark reads `save` and `appendonly` at start.
            b"CONFIG" if arg(1).eq_ignore_ascii_case(b"GET") && n == 3 => {
                let value: Option<&[u8]> = match arg(2).to_ascii_lowercase().as_slice() {
                    b"save" => Some(b""),
                    b"appendonly" => Some(b"no"),
                    b"databases" => Some(b"1"),
                    _ => None,
                };
                match value {
                    Some(v) => {
                        reply.array(2);
                        reply.bulk(arg(2));
                        reply.bulk(v);
                    }
                    None => reply.array(0),
                }
            }
            b"CLIENT"
                if arg(1).eq_ignore_ascii_case(b"SETNAME")
                    || arg(1).eq_ignore_ascii_case(b"SETINFO") =>
            {
                reply.ok();
            }
            b"QUIT" => {
                reply.ok();
                return Action::Close;
            }
            _ => unknown(cmd, reply),
        }
        Action::Continue
    }

    fn on_boot(&mut self, cx: &mut LoopCx<'_>) {
        if cx.index() == 0 {
            cx.set_interval(SWEEP_PERIOD, SWEEP_TOKEN);
        }
    }

    fn on_tick(&mut self, _cx: &mut LoopCx<'_>, token: u64) {
        if token == SWEEP_TOKEN {
            self.store.sweep();
        }
    }
}

impl Kv {
    /// `SET key value [NX | XX] [GET] [EX s | PX ms | EXAT t | PXAT t | KEEPTTL]`
    fn set(&self, cmd: &Command<'_>, reply: &mut Writer<'_>, now: &mut Now) {
        let (key, value) = (cmd.arg(1).unwrap_or(b""), cmd.arg(2).unwrap_or(b""));
        let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
        let mut ttl: Option<Instant> = None;
        let mut i = 3;
        while i < cmd.len() {
            let opt = cmd.arg(i).unwrap_or(b"").to_ascii_uppercase();
            match opt.as_slice() {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                b"GET" => get = true,
                b"KEEPTTL" if ttl.is_none() => keep_ttl = true,
                b"EX" | b"PX" | b"EXAT" | b"PXAT"
                    if ttl.is_none() && !keep_ttl && i + 1 < cmd.len() =>
                {
                    i += 1;
                    let Some(time) = cmd.arg(i).and_then(int) else {
                        reply.error(NOT_INTEGER);
                        return;
                    };
                    let (unit, base) = time_option(&opt);
                    let at = expiry::string_deadline(time, unit, base, now)
                        .and_then(|at| expiry::instant(at, now));
                    match at {
                        Some(at) => ttl = Some(at),
                        None => return expiry::invalid(reply, "set"),
                    }
                }
                _ => {
                    reply.error(SYNTAX);
                    return;
                }
            }
            i += 1;
        }
        let key = self.store.key(key);
        let mut shard = self.store.shard(key);
        if !(nx || xx || get || keep_ttl) {
            // The plain SET: whatever was there (live or expired) is replaced; one lookup.
            shard.insert(key, value, ttl);
            reply.ok();
            return;
        }
        let old = shard.live(key, now);
        let exists = old.is_some();
        let old_deadline = old.as_ref().and_then(|e| e.expires);
        if get {
            reply.bulk_or_nil(old.map(|e| &e.value[..]));
        }
        if (nx && exists) || (xx && !exists) {
            if !get {
                reply.nil();
            }
            return;
        }
        let expires = match ttl {
            Some(at) => Some(at),
            None if keep_ttl => old_deadline,
            None => None,
        };
        shard.insert(key, value, expires);
        if !get {
            reply.ok();
        }
    }

    fn incr(&self, key: &[u8], delta: Option<i64>, reply: &mut Writer<'_>, now: &mut Now) {
        let key = self.store.key(key);
        let mut shard = self.store.shard(key);
        let current = match shard.live(key, now) {
            None => 0,
            Some(e) => match int(&e.value) {
                Some(v) => v,
                None => return reply.error(NOT_INTEGER),
            },
        };
        let Some(next) = delta.and_then(|d| current.checked_add(d)) else {
            return reply.error("ERR increment or decrement would overflow");
        };
        match shard.live(key, now) {
            Some(e) => {
                // Keeps the deadline, as Redis does.
                e.value.clear();
                let _ = write!(e.value, "{next}");
            }
            None => shard.insert(key, next.to_string().as_bytes(), None),
        }
        reply.integer(next);
    }

    /// `GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]`: the value, and its deadline
    /// set or removed.
    fn getex(&self, cmd: &Command<'_>, reply: &mut Writer<'_>, now: &mut Now) {
        let mut option: Option<(Vec<u8>, Option<&[u8]>)> = None;
        let mut i = 2;
        while i < cmd.len() {
            let opt = cmd.arg(i).unwrap_or(b"").to_ascii_uppercase();
            match opt.as_slice() {
                b"PERSIST" if option.is_none() => option = Some((opt, None)),
                b"EX" | b"PX" | b"EXAT" | b"PXAT" if option.is_none() && i + 1 < cmd.len() => {
                    i += 1;
                    option = Some((opt, cmd.arg(i)));
                }
                _ => return reply.error(SYNTAX),
            }
            i += 1;
        }
        let key = self.store.key(cmd.arg(1).unwrap_or(b""));
        let mut shard = self.store.shard(key);
        if shard.live(key, now).is_none() {
            return reply.nil();
        }
        // As redis-server: the time is checked once the key is known to exist.
        let deadline = match &option {
            None => None,
            Some((_, None)) => Some(None),
            Some((opt, Some(time))) => {
                let Some(time) = int(time) else {
                    return reply.error(NOT_INTEGER);
                };
                let (unit, base) = time_option(opt);
                let at = expiry::string_deadline(time, unit, base, now)
                    .and_then(|at| expiry::instant(at, now));
                match at {
                    Some(at) => Some(Some(at)),
                    None => return expiry::invalid(reply, "getex"),
                }
            }
        };
        if let Some(e) = shard.live(key, now) {
            reply.bulk(&e.value);
        }
        match deadline {
            Some(Some(at)) if at <= now.get() => {
                shard.remove(key);
            }
            Some(at) => shard.set_deadline(key, at),
            None => {}
        }
    }

    /// `EXPIRE key seconds [NX] [XX] [GT] [LT]`, and `PEXPIRE` (milliseconds), `EXPIREAT` and
    /// `PEXPIREAT` (Unix times).
    fn expire(
        &self,
        cmd: &Command<'_>,
        (unit, base, name): (Unit, Base, &str),
        reply: &mut Writer<'_>,
        now: &mut Now,
    ) {
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for opt in cmd.args().skip(3) {
            match opt.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                _ => return reply.error_parts(&[b"ERR Unsupported option ", opt]),
            }
        }
        if nx && (xx || gt || lt) {
            return reply
                .error("ERR NX and XX, GT or LT options at the same time are not compatible");
        }
        if gt && lt {
            return reply.error("ERR GT and LT options at the same time are not compatible");
        }
        let Some(time) = cmd.arg(2).and_then(int) else {
            return reply.error(NOT_INTEGER);
        };
        let Some(at) = expiry::key_deadline(time, unit, base, now) else {
            return expiry::invalid(reply, name);
        };
        let Some(new_at) = expiry::instant(at, now) else {
            return expiry::invalid(reply, name);
        };
        let key = self.store.key(cmd.arg(1).unwrap_or(b""));
        let mut shard = self.store.shard(key);
        let Some(entry) = shard.live(key, now) else {
            return reply.integer(0);
        };
        // No deadline counts as an infinite one.
        let current = entry.expires;
        let refused = (nx && current.is_some())
            || (xx && current.is_none())
            || (gt && !current.is_some_and(|c| new_at > c))
            || (lt && current.is_some_and(|c| new_at >= c));
        if refused {
            return reply.integer(0);
        }
        if new_at <= now.get() {
            shard.remove(key); // a deadline that has passed deletes at once
        } else {
            shard.set_deadline(key, Some(new_at));
        }
        reply.integer(1);
    }
}

/// The unit and base of a `EX`, `PX`, `EXAT` or `PXAT` option (upper case).
fn time_option(opt: &[u8]) -> (Unit, Base) {
    let unit = if opt[0] == b'P' {
        Unit::Millis
    } else {
        Unit::Seconds
    };
    let base = if opt.ends_with(b"AT") {
        Base::Epoch
    } else {
        Base::Now
    };
    (unit, base)
}
