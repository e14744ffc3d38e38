//! The `Date` header value (an RFC 9110 IMF-fixdate), formatted once a second per loop rather
//! than once per response.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const DATE_LEN: usize = 29;

/// One loop's cached `Date` value. [`HttpServer`](super::HttpServer) refreshes it from a loop
/// timer at each second boundary.
#[derive(Clone, Debug)]
pub(crate) struct DateCache {
    secs: u64,
    bytes: [u8; DATE_LEN],
}

impl DateCache {
    /// A cache holding the current time.
    pub(crate) fn now() -> DateCache {
        let mut c = DateCache {
            secs: u64::MAX,
            bytes: [0; DATE_LEN],
        };
        c.refresh();
        c
    }

    /// A cache frozen at `unix_secs` (for reproducible output in tests and fuzzing).
    pub(crate) fn fixed(unix_secs: u64) -> DateCache {
        DateCache {
            secs: unix_secs,
            bytes: format_imf_fixdate(unix_secs),
        }
    }

    /// Re-reads the clock; formats only if the second changed.
    pub(crate) fn refresh(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.secs {
            self.secs = now;
            self.bytes = format_imf_fixdate(now);
        }
    }

    /// The formatted value.
    pub(crate) fn get(&self) -> &[u8; DATE_LEN] {
        &self.bytes
    }
}

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub(crate) fn format_imf_fixdate(unix_secs: u64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday

    let mut b = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    b[0..3].copy_from_slice(DAYS[weekday]);
    put2(&mut b[5..7], day);
    b[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = (year % 10_000) as u32;
    put2(&mut b[12..14], y / 100);
    put2(&mut b[14..16], y % 100);
    put2(&mut b[17..19], (secs_of_day / 3600) as u32);
    put2(&mut b[20..22], ((secs_of_day / 60) % 60) as u32);
    put2(&mut b[23..25], (secs_of_day % 60) as u32);
    b
}

fn put2(dst: &mut [u8], v: u32) {
    dst[0] = b'0' + (v / 10 % 10) as u8;
    dst[1] = b'0' + (v % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31): the proleptic Gregorian calendar
/// by eras of 400 years (after Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
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
        assert_eq!(
            &format_imf_fixdate(4_107_542_400),
            b"Mon, 01 Mar 2100 00:00:00 GMT"
        );
    }

    #[test]
    fn never_panics_on_extreme_times() {
        let d = format_imf_fixdate(u64::MAX);
        assert_eq!(&d[25..], b" GMT");
    }
}
