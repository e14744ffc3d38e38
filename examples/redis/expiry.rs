//! Expiry times as redis-server reads them. A time is relative (`EX`, `PX`, `EXPIRE`) or
//! absolute (`EXAT`, `PXAT`, `EXPIREAT`), in seconds or milliseconds; either way it names a
//! deadline in Unix milliseconds, which must fit an `i64` — a time that overflows in the
//! conversion or when added to the clock is refused with
//! `ERR invalid expire time in '<command>' command`, as redis-server refuses it, instead of
//! being stored wrapped around. Shared with the tests like `kv.rs`.

#![allow(dead_code)] // the tests use part of this module, the example another

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eventide::resp::Writer;

use crate::store::Now;

/// What an expiry time counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Millis,
}

/// Where an expiry time counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The time is a duration from now (`EX`, `PX`, `EXPIRE`, `PEXPIRE`, `SETEX`, `PSETEX`).
    Now,
    /// The time is a Unix time (`EXAT`, `PXAT`, `EXPIREAT`, `PEXPIREAT`).
    Epoch,
}

/// The wall clock in Unix milliseconds (redis-server's `mstime`).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The deadline a string command's option names (`SET EX/PX/EXAT/PXAT`, `SETEX`, `PSETEX`,
/// `GETEX`), as redis-server's `getExpireMillisecondsOrReply` computes it: the time must be
/// positive, and the deadline a positive `i64`. `None`: an invalid expire time.
pub fn string_deadline(time: i64, unit: Unit, base: Base, now: &mut Now) -> Option<i64> {
    if time <= 0 {
        return None;
    }
    let ms = match unit {
        Unit::Seconds => time.checked_mul(1000)?,
        Unit::Millis => time,
    };
    let at = match base {
        Base::Now => ms.checked_add(now.unix_ms())?,
        Base::Epoch => ms,
    };
    (at > 0).then_some(at)
}

/// The deadline an `EXPIRE` family command names, as redis-server's `expireGenericCommand`
/// computes it: any time (one in the past deletes the key), as long as the conversion to
/// milliseconds and the addition of the clock do not overflow. `None`: an invalid expire time.
pub fn key_deadline(time: i64, unit: Unit, base: Base, now: &mut Now) -> Option<i64> {
    let ms = match unit {
        Unit::Seconds => time.checked_mul(1000)?,
        Unit::Millis => time,
    };
    match base {
        Base::Now => ms.checked_add(now.unix_ms()),
        Base::Epoch => Some(ms),
    }
}

/// The store's deadline for Unix milliseconds `at`: the loop clock's instant that far from
/// now (now itself, so already expired, for a time that has passed). `None` only if the
/// monotonic clock cannot represent it (never for an `i64` of milliseconds on Linux).
pub fn instant(at: i64, now: &mut Now) -> Option<Instant> {
    let ahead = at.saturating_sub(now.unix_ms());
    if ahead <= 0 {
        return Some(now.get());
    }
    now.get().checked_add(Duration::from_millis(ahead as u64))
}

/// The reply to an expire time redis-server refuses, for command `name` (lowercase).
pub fn invalid(reply: &mut Writer<'_>, name: &str) {
    reply.error_parts(&[
        b"ERR invalid expire time in '",
        name.as_bytes(),
        b"' command",
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_times_are_refused() {
        let mut now = Now(None);
        let max = i64::MAX;
        assert_eq!(
            string_deadline(max, Unit::Millis, Base::Now, &mut now),
            None
        );
        assert_eq!(
            string_deadline(max / 1000 + 1, Unit::Seconds, Base::Epoch, &mut now),
            None
        );
        assert_eq!(string_deadline(0, Unit::Seconds, Base::Now, &mut now), None);
        assert_eq!(
            string_deadline(max, Unit::Millis, Base::Epoch, &mut now),
            Some(max)
        );
        assert_eq!(key_deadline(max, Unit::Seconds, Base::Now, &mut now), None);
        assert_eq!(
            key_deadline(i64::MIN / 1000 - 1, Unit::Seconds, Base::Now, &mut now),
            None
        );
        assert_eq!(
            key_deadline(max, Unit::Millis, Base::Epoch, &mut now),
            Some(max)
        );
        assert!(key_deadline(-5, Unit::Seconds, Base::Now, &mut now).is_some());
    }
}
