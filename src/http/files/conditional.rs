//! Validators and conditional requests (RFC 9110 sections 8.8 and 13): `ETag` and
//! `Last-Modified` of a file, and the verdict of `If-Match`, `If-Unmodified-Since`,
//! `If-None-Match`, `If-Modified-Since` and `If-Range`, evaluated in the order of section
//! 13.2.2.
//!
//! The entity tag is the file's size and modification time in nanoseconds, in hex. Not its
//! inode: replicas serving the same files behind one name then agree on the tags (the reason
//! Apache dropped the inode from its default). It is strong — the bytes change only with the
//! modification time — except for a file modified within the last second, which may still be
//! changing within one timestamp tick: its tag is weak (`W/"..."`), so it validates caches
//! (`If-None-Match` compares weakly) but never a range (`If-Range` compares strongly).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::http::date::parse_http_date;
use crate::http::Request;

/// A file's validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Validators {
    /// `"size-mtime"`, or `W/"size-mtime"` when weak.
    pub etag: String,
    /// The modification time, whole seconds (what `Last-Modified` carries).
    pub modified: u64,
}

impl Validators {
    /// The validators of a file with `meta`, at time `now` (seconds since the epoch).
    pub(crate) fn of(meta: &Metadata, now: u64) -> Validators {
        let secs = u64::try_from(meta.mtime()).unwrap_or(0);
        let nanos = secs
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(meta.mtime_nsec()).unwrap_or(0));
        let weak = now <= secs.saturating_add(1);
        let etag = format!(
            "{}\"{:x}-{:x}\"",
            if weak { "W/" } else { "" },
            meta.size(),
            nanos
        );
        Validators {
            etag,
            modified: secs,
        }
    }

    fn is_weak(&self) -> bool {
        self.etag.starts_with("W/")
    }

    /// The tag without its weakness flag, quotes included.
    fn opaque(&self) -> &str {
        self.etag.trim_start_matches("W/")
    }
}

/// What the preconditions of a `GET` or `HEAD` decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answer normally; `range` says whether a `Range` header may be honoured (`If-Range`).
    Proceed { range: bool },
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the conditional headers of `req` (a `GET` or `HEAD`) against `v`.
pub(crate) fn evaluate(req: &Request<'_>, v: &Validators, now: u64) -> Verdict {
    let date = |name: &str| req.header(name).and_then(|d| parse_http_date(d, now));
    // 1. If-Match: some tag must match strongly; 2. else If-Unmodified-Since.
    if let Some(list) = tag_list(req, "if-match") {
        if !list_matches(&list, v, true) {
            return Verdict::Failed;
        }
    } else if let Some(since) = date("if-unmodified-since") {
        if v.modified > since {
            return Verdict::Failed;
        }
    }
    // 3. If-None-Match: a match (weakly) means not modified; 4. else If-Modified-Since.
    if let Some(list) = tag_list(req, "if-none-match") {
        if list_matches(&list, v, false) {
            return Verdict::NotModified;
        }
    } else if let Some(since) = date("if-modified-since") {
        if v.modified <= since {
            return Verdict::NotModified;
        }
    }
    // 5. If-Range: the range only if the representation is the one the client has.
    let range = match req.header("if-range") {
        None => true,
        Some(value) if value.first() == Some(&b'"') || value.starts_with(b"W/") => {
            // Strong comparison: a weak tag on either side never matches.
            !v.is_weak() && value == v.etag.as_bytes()
        }
        // A date must be exactly the Last-Modified sent, and that must be strong-ish: at
        // least a second older than the tag's own weakness window.
        Some(value) => !v.is_weak() && parse_http_date(value, now) == Some(v.modified),
    };
    Verdict::Proceed { range }
}

/// An entity-tag list from every `name` field of `req`: `Some(None)` for `*`, `None` if
/// there is no such field. A list that does not parse matches nothing.
fn tag_list<'r>(req: &Request<'r>, name: &str) -> Option<Option<Vec<&'r [u8]>>> {
    let mut seen = false;
    let mut tags = Vec::new();
    for (_, value) in req.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        seen = true;
        let mut rest = value;
        loop {
            rest = skip_list_space(rest);
            if rest.is_empty() {
                break;
            }
            if rest[0] == b'*' {
                return Some(None);
            }
            let Some((tag, after)) = entity_tag(rest) else {
                return Some(Some(Vec::new()));
            };
            tags.push(tag);
            rest = after;
            let next = skip_ows(rest);
            if !(next.is_empty() || next[0] == b',') {
                return Some(Some(Vec::new()));
            }
            rest = next;
        }
    }
    seen.then_some(Some(tags))
}

/// `[ "W/" ] DQUOTE *etagc DQUOTE` at the start of `s`: the tag as sent and the rest.
fn entity_tag(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = if s.starts_with(b"W/") { 2 } else { 0 };
    if s.get(start) != Some(&b'"') {
        return None;
    }
    let len = s[start + 1..]
        .iter()
        .position(|&b| b == b'"')
        .filter(|&n| {
            s[start + 1..start + 1 + n]
                .iter()
                .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        })?;
    let end = start + 1 + len + 1;
    Some((&s[..end], &s[end..]))
}

fn skip_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

fn skip_list_space(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t' || b == b',')
        .count();
    &s[n..]
}

/// Whether a list (`None`: `*`) matches `v`, strongly or weakly (section 8.8.3.2).
fn list_matches(list: &Option<Vec<&[u8]>>, v: &Validators, strong: bool) -> bool {
    let Some(tags) = list else {
        return true; // `*`: the file exists
    };
    tags.iter().any(|tag| {
        let weak = tag.starts_with(b"W/");
        let opaque = if weak { &tag[2..] } else { tag };
        if strong {
            !weak && !v.is_weak() && opaque == v.opaque().as_bytes()
        } else {
            opaque == v.opaque().as_bytes()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Version;

    const STRONG: &str = "\"10-5\"";

    fn v(weak: bool) -> Validators {
        Validators {
            etag: format!("{}{STRONG}", if weak { "W/" } else { "" }),
            modified: 784_111_777,
        }
    }

    fn verdict(headers: &[(&str, &str)], weak: bool) -> Verdict {
        let hs: Vec<httparse::Header<'_>> = headers
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        let req = Request {
            method: "GET",
            target: "/",
            version: Version::Http11,
            headers: &hs,
            body: b"",
            keep_alive: true,
        };
        evaluate(&req, &v(weak), 1_767_225_599)
    }

    const GO: Verdict = Verdict::Proceed { range: true };
    const NO_RANGE: Verdict = Verdict::Proceed { range: false };
    const LAST_MOD: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn if_none_match_compares_weakly() {
        let inm = |value: &str, weak| verdict(&[("If-None-Match", value)], weak);
        assert_eq!(inm(STRONG, false), Verdict::NotModified);
        assert_eq!(inm("W/\"10-5\"", false), Verdict::NotModified);
        assert_eq!(inm(STRONG, true), Verdict::NotModified);
        assert_eq!(inm("\"x\", \"10-5\"", false), Verdict::NotModified);
        assert_eq!(inm("  ,\"x\" ,W/\"10-5\" ", false), Verdict::NotModified);
        assert_eq!(inm("*", false), Verdict::NotModified);
        assert_eq!(inm("\"x\", \"y\"", false), GO);
        assert_eq!(inm("\"10-5", false), GO);
        assert_eq!(inm("10-5", false), GO);
        assert_eq!(inm("\"10-5\" junk", false), GO);
        // Over two field lines.
        let two = verdict(
            &[("If-None-Match", "\"x\""), ("if-none-match", STRONG)],
            false,
        );
        assert_eq!(two, Verdict::NotModified);
        // If-None-Match wins over If-Modified-Since (section 13.1.3).
        let both = verdict(
            &[("If-None-Match", "\"x\""), ("If-Modified-Since", LAST_MOD)],
            false,
        );
        assert_eq!(both, GO);
    }

    #[test]
    fn if_modified_since_compares_dates() {
        let ims = |d: &str| verdict(&[("If-Modified-Since", d)], false);
        assert_eq!(ims(LAST_MOD), Verdict::NotModified);
        assert_eq!(ims("Sun, 06 Nov 1994 08:49:38 GMT"), Verdict::NotModified);
        assert_eq!(ims("Sun, 06 Nov 1994 08:49:36 GMT"), GO);
        assert_eq!(ims("Sunday, 06-Nov-94 08:49:37 GMT"), Verdict::NotModified);
        assert_eq!(ims("yesterday"), GO); // invalid: ignored
    }

    #[test]
    fn if_match_and_if_unmodified_since_guard() {
        let im = |value: &str, weak| verdict(&[("If-Match", value)], weak);
        assert_eq!(im(STRONG, false), GO);
        assert_eq!(im("*", false), GO);
        assert_eq!(im("W/\"10-5\"", false), Verdict::Failed);
        assert_eq!(im(STRONG, true), Verdict::Failed);
        assert_eq!(im("\"other\"", false), Verdict::Failed);
        let ius = |d: &str| verdict(&[("If-Unmodified-Since", d)], false);
        assert_eq!(ius(LAST_MOD), GO);
        assert_eq!(ius("Sun, 06 Nov 1994 08:49:36 GMT"), Verdict::Failed);
        assert_eq!(ius("garbage"), GO);
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let ir = |value: &str, weak| verdict(&[("If-Range", value), ("Range", "bytes=0-1")], weak);
        assert_eq!(ir(STRONG, false), GO);
        assert_eq!(ir("\"other\"", false), NO_RANGE);
        assert_eq!(ir("W/\"10-5\"", false), NO_RANGE);
        assert_eq!(ir(STRONG, true), NO_RANGE);
        assert_eq!(ir(LAST_MOD, false), GO);
        assert_eq!(ir("Sun, 06 Nov 1994 08:49:38 GMT", false), NO_RANGE);
        assert_eq!(ir(LAST_MOD, true), NO_RANGE);
        assert_eq!(ir("nonsense", false), NO_RANGE);
    }
}
