//! From a request path to a path beneath the root, or a refusal.
//!
//! The path is split on `/` first and each segment percent-decoded on its own, so an encoded
//! slash can never create a segment boundary. Then every segment is checked:
//!
//! | refused | why | answer |
//! |---|---|---|
//! | `..` and `.`, however encoded (`%2e%2e`, `.%2E`) | climbing out, or a path that is not canonical | 403 |
//! | an encoded `/` (`%2f`), a `\` raw or encoded | a separator in disguise | 403 |
//! | NUL (`%00`), any control byte | ends the name early in C, or is never a file name | 403 |
//! | a bad escape (`%`, `%4`, `%zz`) | not a URI | 400 |
//! | bytes that are not UTF-8 once decoded (overlong `%c0%ae`, lone `%ff`) | a second spelling of a name | 400 |
//! | a segment starting with `.` (`.git`, `.env`), unless hidden files are served | never meant to be published | 404 |
//!
//! Empty segments (`//`) are dropped, so the result is always relative (never `/etc/...`) and
//! canonical; whether the path ended in `/` is kept, since it tells a directory request.

use std::path::PathBuf;

use crate::http::Status;

/// A request path made safe to open beneath the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Safe {
    /// The decoded segments, joined by `/` (`.` for the root itself).
    pub rel: PathBuf,
    /// The decoded segments (empty for the root), for building links and redirects.
    pub segments: Vec<String>,
    /// The request path ended with `/`.
    pub dir_slash: bool,
}

/// Checks `path` (the path of a request target, percent-encoded as sent, starting with `/`).
/// The error is the status to answer with.
pub(crate) fn resolve(path: &str, hidden: bool) -> Result<Safe, Status> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Status::NOT_FOUND); // `*`, or a `CONNECT` authority: no file there
    };
    if rest.contains('\\') {
        return Err(Status::FORBIDDEN);
    }
    let mut segments = Vec::new();
    let mut hidden_seen = false;
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let seg = decode(raw)?;
        if seg == "." || seg == ".." {
            return Err(Status::FORBIDDEN);
        }
        if seg
            .bytes()
            .any(|b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
        {
            return Err(Status::FORBIDDEN);
        }
        hidden_seen |= seg.starts_with('.');
        segments.push(seg);
    }
    if hidden_seen && !hidden {
        return Err(Status::NOT_FOUND);
    }
    let rel = if segments.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(segments.join("/"))
    };
    Ok(Safe {
        rel,
        segments,
        dir_slash: path.ends_with('/'),
    })
}

/// Percent-decodes one segment; it must be UTF-8 once decoded.
fn decode(raw: &str) -> Result<String, Status> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(Status::BAD_REQUEST),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Status::BAD_REQUEST)
}

/// Percent-encodes `name` for use as one path segment of a link: everything but RFC 3986's
/// unreserved characters and a few sub-delimiters that are safe in a path.
pub(crate) fn encode_segment(name: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in name {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> (String, bool) {
        let s = resolve(path, false).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        (s.rel.to_string_lossy().into_owned(), s.dir_slash)
    }

    #[test]
    fn plain_paths_resolve_relative_and_canonical() {
        assert_eq!(ok("/"), (".".into(), true));
        assert_eq!(ok("/index.html"), ("index.html".into(), false));
        assert_eq!(ok("/a/b/c.txt"), ("a/b/c.txt".into(), false));
        assert_eq!(ok("/a/b/"), ("a/b".into(), true));
        assert_eq!(ok("//a///b"), ("a/b".into(), false));
        assert_eq!(ok("/hello%20world.txt"), ("hello world.txt".into(), false));
        assert_eq!(ok("/caf%C3%A9"), ("caf\u{e9}".into(), false));
        assert_eq!(ok("/caf\u{e9}"), ("caf\u{e9}".into(), false));
        assert_eq!(ok("/a..b/c...d"), ("a..b/c...d".into(), false));
        assert_eq!(ok("/%7Euser/x+y=z"), ("~user/x+y=z".into(), false));
        assert_eq!(ok("//etc/passwd"), ("etc/passwd".into(), false));
        assert_eq!(ok("/C:/x"), ("C:/x".into(), false));
        assert_eq!(
            resolve("/.well-known/x", true).unwrap().rel,
            PathBuf::from(".well-known/x")
        );
    }

    /// The attack table: every one refused, with the status the module documentation gives.
    #[test]
    fn attack_paths_are_refused() {
        let forbidden = Status::FORBIDDEN;
        let bad = Status::BAD_REQUEST;
        let hidden = Status::NOT_FOUND;
        let table: &[(&str, Status)] = &[
            ("/../etc/passwd", forbidden),
            ("/a/../../etc/passwd", forbidden),
            ("/a/..", forbidden),
            ("/..", forbidden),
            ("/.", forbidden),
            ("/a/./b", forbidden),
            ("/%2e%2e/etc/passwd", forbidden),
            ("/%2E%2E/%2E%2E/etc/passwd", forbidden),
            ("/.%2e/etc/passwd", forbidden),
            ("/%2e./etc/passwd", forbidden),
            ("/%2e", forbidden),
            ("/a%2f..%2f..%2fetc%2fpasswd", forbidden),
            ("/..%2fetc%2fpasswd", forbidden),
            ("/a%2Fb", forbidden),
            ("/..\\etc\\passwd", forbidden),
            ("/a\\b", forbidden),
            ("/..%5cetc%5cpasswd", forbidden),
            ("/a%5Cb", forbidden),
            ("/a%00.html", forbidden),
            ("/index.html%00.txt", forbidden),
            ("/a%0d%0aSet-Cookie:x", forbidden),
            ("/a%7f", forbidden),
            ("/a%09b", forbidden),
            ("/%c0%ae%c0%ae/etc/passwd", bad),
            ("/%c0%af", bad),
            ("/%e0%80%ae", bad),
            ("/%ff", bad),
            ("/%ed%a0%80", bad),
            ("/a%", bad),
            ("/a%2", bad),
            ("/a%zz", bad),
            ("/a%%32%65", bad),
            ("/.git/config", hidden),
            ("/.env", hidden),
            ("/a/.htpasswd", hidden),
            ("/%2egit/config", hidden),
            ("*", Status::NOT_FOUND),
            ("", Status::NOT_FOUND),
        ];
        assert!(table.len() >= 20);
        for &(path, status) in table {
            assert_eq!(resolve(path, false), Err(status), "{path:?}");
        }
        // Double encoding decodes once: `%252e` is the name `%2e`, not a dot.
        assert_eq!(ok("/%252e%252e/x"), ("%2e%2e/x".into(), false));
        assert_eq!(ok("/%25%32%65%25%32%65/x"), ("%2e%2e/x".into(), false));
    }

    proptest::proptest! {
        /// Whatever the request path, an accepted one is relative and made of plain names:
        /// no `.` or `..`, no separator, NUL or control byte inside a name.
        #[test]
        fn accepted_paths_stay_beneath_the_root(
            raw in proptest::collection::vec(
                proptest::sample::select(vec![
                    "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%00", "%25", "\\", "a", "b.txt",
                    "%c0%ae", "%e2%80%ae", "%", "2e", "~", "%41", "\u{e9}", "%0a", ":",
                ]),
                0..12,
            ),
            hidden: bool,
        ) {
            let path = format!("/{}", raw.concat());
            if let Ok(safe) = resolve(&path, hidden) {
                let rel = safe.rel.to_str().unwrap();
                proptest::prop_assert!(!rel.starts_with('/'), "{path} -> {rel}");
                for name in rel.split('/') {
                    proptest::prop_assert!(name != ".." && !name.is_empty(), "{path} -> {rel}");
                    proptest::prop_assert!(name != "." || rel == ".", "{path} -> {rel}");
                    proptest::prop_assert!(
                        !name.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f),
                        "{path} -> {rel:?}"
                    );
                    proptest::prop_assert!(hidden || !name.starts_with('.') || rel == ".");
                }
                proptest::prop_assert_eq!(safe.segments.join("/"), if rel == "." { "" } else { rel });
            }
        }
    }

    #[test]
    fn segments_encode_back_for_links() {
        let mut s = String::new();
        encode_segment("a b/c?d#e%f\u{e9}~".as_bytes(), &mut s);
        assert_eq!(s, "a%20b%2Fc%3Fd%23e%25f%C3%A9~");
    }
}
