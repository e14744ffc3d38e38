//! `Range: bytes=...` (RFC 9110 section 14): which part of a file a request asks for.
//!
//! A single range is served with 206. Several ranges are answered with the whole file (200),
//! which the RFC allows and which spares a `multipart/byteranges` body no client needs; if none
//! of them can be satisfied the answer is 416. A header that does not parse, or names a unit
//! other than `bytes`, is ignored (the whole file), as section 14.2 allows.

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// The whole file (no range, several, or a header to ignore).
    Whole,
    /// `len` bytes from `start`, within the file.
    One { start: u64, len: u64 },
    /// Nothing asked for is in the file: 416.
    Unsatisfiable,
}

/// Reads a `Range` value against a file of `len` bytes.
pub(crate) fn parse(value: &[u8], len: u64) -> Ranges {
    let Ok(value) = std::str::from_utf8(value) else {
        return Ranges::Whole;
    };
    let Some((unit, set)) = value.trim_matches([' ', '\t']).split_once('=') else {
        return Ranges::Whole;
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        return Ranges::Whole;
    }
    let mut specs = 0;
    let mut first = None;
    let mut satisfiable = 0;
    for spec in set.split(',').map(|s| s.trim_matches([' ', '\t'])) {
        if spec.is_empty() {
            continue; // empty list elements are allowed (RFC 9110 section 5.6.1)
        }
        let Some(range) = spec_range(spec, len) else {
            return Ranges::Whole; // invalid: ignore the header
        };
        specs += 1;
        if let Some(r) = range {
            satisfiable += 1;
            first.get_or_insert(r);
        }
    }
    match (specs, satisfiable, first) {
        (0, _, _) => Ranges::Whole,
        (_, 0, _) => Ranges::Unsatisfiable,
        // An empty file satisfies a suffix range with nothing: served whole (empty).
        (1, _, Some((_, 0))) => Ranges::Whole,
        (1, _, Some((start, len))) => Ranges::One { start, len },
        _ => Ranges::Whole,
    }
}

/// One `range-spec`: `None` if it is malformed, `Some(None)` if valid but outside the file,
/// `Some(Some((start, len)))` otherwise. A zero-length file satisfies only a suffix range,
/// with nothing: it is served whole (empty).
fn spec_range(spec: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        // Too many digits for a u64 is still a number: larger than any file.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    if a.is_empty() {
        // suffix-range: the last `n` bytes.
        let n = num(b)?;
        return Some(match (n, len) {
            (0, _) => None,
            (_, 0) => Some((0, 0)),
            (n, len) => Some((len - n.min(len), n.min(len))),
        });
    }
    let first = num(a)?;
    let last = if b.is_empty() { None } else { Some(num(b)?) };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    if first >= len {
        return Some(None);
    }
    let end = last.map_or(len, |l| l.saturating_add(1).min(len));
    Some(Some((first, end - first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(start: u64, len: u64) -> Ranges {
        Ranges::One { start, len }
    }

    #[test]
    fn single_ranges() {
        let p = |v: &str| parse(v.as_bytes(), 1000);
        assert_eq!(p("bytes=0-499"), one(0, 500));
        assert_eq!(p("bytes=500-999"), one(500, 500));
        assert_eq!(p("bytes=500-"), one(500, 500));
        assert_eq!(p("bytes=-200"), one(800, 200));
        assert_eq!(p("bytes=-2000"), one(0, 1000));
        assert_eq!(p("bytes=990-5000"), one(990, 10));
        assert_eq!(p("bytes=999-999"), one(999, 1));
        assert_eq!(p("Bytes = 0-0"), Ranges::Whole); // no white space around `=`
        assert_eq!(p("BYTES=0-0"), one(0, 1));
        assert_eq!(p(" bytes=0-0 "), one(0, 1));
        assert_eq!(p("bytes=0-99999999999999999999999"), one(0, 1000));
        assert_eq!(p("bytes=0-0,"), one(0, 1));
    }

    #[test]
    fn unsatisfiable_ranges() {
        let p = |v: &str| parse(v.as_bytes(), 1000);
        assert_eq!(p("bytes=1000-"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=1000-2000"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=99999999999999999999-"), Ranges::Unsatisfiable);
        assert_eq!(p("bytes=2000-3000, 4000-"), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0), Ranges::Unsatisfiable);
        assert_eq!(parse(b"bytes=-5", 0), Ranges::Whole);
    }

    #[test]
    fn several_or_invalid_ranges_mean_the_whole_file() {
        let p = |v: &str| parse(v.as_bytes(), 1000);
        for v in [
            "bytes=0-1,5-6",
            "bytes=0-1, 2000-",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
            "bytes=0x1-2",
            "items=0-1",
            "bytes",
            "bytes=",
            "=0-1",
        ] {
            assert_eq!(p(v), Ranges::Whole, "{v}");
        }
        assert_eq!(parse(b"bytes=\xff-1", 10), Ranges::Whole);
    }
}
