//! The HTTP `Date` header value (RFC 7231 IMF-fixdate), cached per thread and refreshed once per
//! second, the way production servers (hyper, nginx) avoid formatting it per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

struct Cache {
    secs: u64,
    bytes: [u8; DATE_LEN],
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { secs: u64::MAX, bytes: [0; DATE_LEN] }) };
}

/// Calls `f` with the current date, formatted; re-formats only when the second has changed.
pub fn with_date<R>(f: impl FnOnce(&[u8; DATE_LEN]) -> R) -> R {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.secs != now {
            c.bytes = format_imf_fixdate(now);
            c.secs = now;
        }
        f(&c.bytes)
    })
}

/// Appends the cached current date to `out`.
pub fn extend_date(out: &mut Vec<u8>) {
    with_date(|d| out.extend_from_slice(d));
}

/// Formats seconds since the Unix epoch as an IMF-fixdate, with `httpdate` (the formatter
/// hyper uses), so the peers share no code with eventide's own.
pub fn format_imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    let date = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(unix_secs));
    let mut b = [b' '; DATE_LEN];
    // 29 bytes for every year up to 9999, the last httpdate accepts (callers pass the clock).
    let n = date.len().min(DATE_LEN);
    b[..n].copy_from_slice(&date.as_bytes()[..n]);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_dates() {
        assert_eq!(&format_imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &format_imf_fixdate(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            &format_imf_fixdate(951_782_400),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            &format_imf_fixdate(1_767_225_599),
            b"Wed, 31 Dec 2025 23:59:59 GMT"
        );
    }

    #[test]
    fn cached_date_is_well_formed() {
        let d = with_date(|d| *d);
        assert_eq!(&d[25..], b" GMT");
        assert_eq!(d[3], b',');
    }
}
