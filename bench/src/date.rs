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

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub fn format_imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let sod = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday.

    let mut b = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    b[0..3].copy_from_slice(DAYS[weekday]);
    put2(&mut b[5..7], day);
    b[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year as u32;
    b[12] = b'0' + ((y / 1000) % 10) as u8;
    b[13] = b'0' + ((y / 100) % 10) as u8;
    put2(&mut b[14..16], y % 100);
    put2(&mut b[17..19], (sod / 3600) as u32);
    put2(&mut b[20..22], ((sod / 60) % 60) as u32);
    put2(&mut b[23..25], (sod % 60) as u32);
    b
}

fn put2(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
