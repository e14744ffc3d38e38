//! HTTP dates (RFC 9110 section 5.6.7): the `Date` header value, formatted once a second per
//! loop rather than once per response, and the parser for dates received (`If-Modified-Since`
//! and the like).

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

/// Parses an HTTP-date (RFC 9110 section 5.6.7) into seconds since the Unix epoch: the
/// IMF-fixdate, and the two obsolete forms recipients must still accept, RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`, its two-digit year read as the most recent year with
/// those digits not more than 50 years after `now`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// `None` for anything else, dates before 1970 included.
pub(crate) fn parse_http_date(value: &[u8], now: u64) -> Option<u64> {
    let s = std::str::from_utf8(value).ok().filter(|s| s.is_ascii())?;
    // The weekday's name is not checked against the date, only its shape.
    let (wkday, rest) = s.split_once([',', ' '])?;
    if wkday.is_empty() || !wkday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let fields = if s.as_bytes()[wkday.len()] == b' ' {
        asctime(rest)?
    } else if wkday.len() == 3 {
        imf_fixdate(rest)?
    } else {
        rfc850(rest, now)?
    };
    fields.unix_secs()
}

/// A date's fields as one of the three forms lays them out, not yet checked.
struct DateFields<'a> {
    /// One or two digits.
    day: &'a str,
    /// `Jan` to `Dec`.
    month: &'a str,
    year: u64,
    /// `HH:MM:SS`.
    time: &'a str,
}

/// asctime after the weekday: `Nov  6 08:49:37 1994` (a one-digit day padded with a space).
fn asctime(rest: &str) -> Option<DateFields<'_>> {
    let b = rest.as_bytes();
    if b.len() != 20 || b[3] != b' ' || b[6] != b' ' || b[15] != b' ' {
        return None;
    }
    let day = if b[4] == b' ' {
        &rest[5..6]
    } else {
        &rest[4..6]
    };
    Some(DateFields {
        day,
        month: &rest[..3],
        year: year4(&rest[16..])?,
        time: &rest[7..15],
    })
}

/// IMF-fixdate after the weekday: `, 06 Nov 1994 08:49:37 GMT` (the comma split off).
fn imf_fixdate(rest: &str) -> Option<DateFields<'_>> {
    let b = rest.as_bytes();
    if b.len() != 25 || b[0] != b' ' || b[3] != b' ' || b[7] != b' ' || b[12] != b' ' {
        return None;
    }
    Some(DateFields {
        day: &rest[1..3],
        month: &rest[4..7],
        year: year4(&rest[8..12])?,
        time: gmt_time(&rest[13..])?,
    })
}

/// RFC 850 after the weekday: `, 06-Nov-94 08:49:37 GMT` (the comma split off).
fn rfc850(rest: &str, now: u64) -> Option<DateFields<'_>> {
    let b = rest.as_bytes();
    if b.len() != 23 || b[0] != b' ' || b[3] != b'-' || b[7] != b'-' || b[10] != b' ' {
        return None;
    }
    Some(DateFields {
        day: &rest[1..3],
        month: &rest[4..7],
        year: full_year(two(&rest[8..10])?, now),
        time: gmt_time(&rest[11..])?,
    })
}

/// The most recent year ending in the two digits `yy` that is not more than 50 years after
/// `now` (RFC 9110 section 5.6.7).
fn full_year(yy: u32, now: u64) -> u64 {
    let (now_year, _, _) = civil_from_days(now / 86_400);
    let year = now_year - now_year % 100 + u64::from(yy);
    if year > now_year + 50 {
        year - 100
    } else {
        year
    }
}

impl DateFields<'_> {
    /// Checks each field against the calendar and the clock (a leap second allowed) and
    /// counts the seconds since the Unix epoch.
    fn unix_secs(&self) -> Option<u64> {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let year = self.year;
        let month = MONTHS.iter().position(|m| *m == self.month)? as u32 + 1;
        let day = match self.day.as_bytes() {
            [d @ b'0'..=b'9'] => u32::from(d - b'0'),
            _ => two(self.day)?,
        };
        let (h, m, sec) = clock(self.time)?;
        if year < 1970 || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(sec))
    }
}

/// `HH:MM:SS` as its three numbers, not yet checked for range.
fn clock(time: &str) -> Option<(u32, u32, u32)> {
    let t = time.as_bytes();
    if t.len() != 8 || t[2] != b':' || t[5] != b':' {
        return None;
    }
    Some((two(&time[..2])?, two(&time[3..5])?, two(&time[6..])?))
}

/// The days in `month` (1..=12) of `year`, in the Gregorian calendar.
fn days_in_month(year: u64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `HH:MM:SS GMT` without the zone.
fn gmt_time(s: &str) -> Option<&str> {
    s.strip_suffix(" GMT")
}

fn year4(s: &str) -> Option<u64> {
    if s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn two(s: &str) -> Option<u32> {
    match s.as_bytes() {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

/// (year >= 1970, month 1..=12, day 1..=31) to days since 1970-01-01: the inverse of
/// [`civil_from_days`].
fn days_from_civil(year: u64, month: u32, day: u32) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let m = u64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + u64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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

    /// A `now` for the two-digit years: 2025-12-31.
    const NOW: u64 = 1_767_225_599;

    #[test]
    fn parses_the_three_http_date_forms() {
        let want = Some(784_111_777);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT", NOW), want);
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", NOW),
            want
        );
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994", NOW), want);
        assert_eq!(parse_http_date(b"Sun Nov 06 08:49:37 1994", NOW), want);
        assert_eq!(
            parse_http_date(b"Thu Nov 16 08:49:37 1994", NOW),
            Some(784_111_777 + 864_000)
        );
        for t in [
            0,
            951_782_400,
            1_767_225_599,
            4_107_542_400,
            253_402_300_799,
        ] {
            assert_eq!(parse_http_date(&format_imf_fixdate(t), NOW), Some(t), "{t}");
        }
        assert!(parse_http_date(b"Sun, 29 Feb 2004 00:00:00 GMT", NOW).is_some());
        assert!(parse_http_date(b"Tue, 29 Feb 2000 00:00:00 GMT", NOW).is_some());
        // A leap second.
        assert_eq!(
            parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT", NOW),
            Some(1_483_228_800)
        );
    }

    #[test]
    fn two_digit_years_are_at_most_50_years_ahead() {
        assert_eq!(
            parse_http_date(b"Friday, 01-Jan-50 00:00:00 GMT", NOW),
            Some(2_524_608_000)
        );
        assert_eq!(
            parse_http_date(b"Sunday, 01-Jan-89 00:00:00 GMT", NOW),
            Some(599_616_000)
        );
        assert_eq!(full_year(75, NOW), 2075);
        assert_eq!(full_year(76, NOW), 1976);
        assert_eq!(full_year(25, NOW), 2025);
    }

    #[test]
    fn refuses_what_is_not_an_http_date() {
        for bad in [
            &b""[..],
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 6 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 94 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 30 Feb 1994 08:49:37 GMT",
            b"Sun, 29 Feb 1900 08:49:37 GMT",
            b"Sun, 00 Nov 1994 08:49:37 GMT",
            b"Sun, 31 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:00:00 GMT",
            b"Sun, 06 Nov 1994 08:60:00 GMT",
            b"Sun, 06 Nov 1994 08:49:61 GMT",
            b"Sun, 06 Nov 1994 08.49.37 GMT",
            b"Sun, 06 Nov 1994 8:49:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMT ",
            b" Sun, 06 Nov 1994 08:49:37 GMT",
            b"S1n, 06 Nov 1994 08:49:37 GMT",
            b"S\xffn, 06 Nov 1994 08:49:37 GMT",
            b"Sunday, 06-Nov-94 08:49:37 UTC",
            b"Sunday, 06 Nov 94 08:49:37 GMT",
            b"Sunday, 06-Nov-1994 08:49:37 GMT",
            b"Sun Nov 6 08:49:37 1994",
            b"Sun Nov  0 08:49:37 1994",
            b"Sun Nov  6 08:49:37 94",
            b"Sun Nov  6 08:49:37 19x4",
            b"1994-11-06T08:49:37Z",
            b"784111777",
            "Sun, 0\u{e9} Nov 1994 08:49:37 GM".as_bytes(),
        ] {
            assert_eq!(
                parse_http_date(bad, NOW),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn never_panics_on_extreme_times() {
        let d = format_imf_fixdate(u64::MAX);
        assert_eq!(&d[25..], b" GMT");
    }
}
