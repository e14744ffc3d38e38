//! The request target and the `Host` field (RFC 9112 sections 3.2 and 3.3, with the
//! authority grammar of RFC 3986 section 3.2).
//!
//! A target takes one of four forms, each allowed where RFC 9112 section 3.2 allows it:
//!
//! | form | example | allowed with |
//! |---|---|---|
//! | origin | `/where?q=now` | every method but `CONNECT` |
//! | absolute | `http://www.example.org/pub/WWW/` | every method but `CONNECT` (scheme `http` or `https`) |
//! | authority | `www.example.com:80` | `CONNECT` only |
//! | asterisk | `*` | `OPTIONS` only |
//!
//! An `http(s)` authority must have a host and no user information (RFC 9110 section 4.2).
//! `Host` must appear once in an HTTP/1.1 request, at most once otherwise, and hold
//! `uri-host [ ":" port ]` or nothing; for an absolute-form target the target's authority
//! names the host and `Host` is only checked (RFC 9112 section 3.2.2).

use std::net::Ipv6Addr;

use super::status::Status;

/// The form of a request target (RFC 9112 section 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// `/path?query`.
    Origin,
    /// `scheme://authority/path?query`.
    Absolute,
    /// `host:port` (`CONNECT`).
    Authority,
    /// `*` (`OPTIONS`).
    Asterisk,
}

/// The form of `target` sent with `method`, or 400 if the target is not one the method may
/// use or its authority is malformed.
pub(crate) fn form(method: &str, target: &str) -> Result<Form, Status> {
    let bad = Err(Status::BAD_REQUEST);
    let connect = method == "CONNECT";
    let form = match target.as_bytes().first() {
        Some(b'/') => Form::Origin,
        Some(b'*') if target.len() == 1 => Form::Asterisk,
        _ if connect => Form::Authority,
        _ if absolute_path_start(target).is_some() => Form::Absolute,
        _ => return bad,
    };
    let allowed = match form {
        Form::Origin | Form::Absolute => !connect,
        Form::Authority => authority(target.as_bytes(), true),
        Form::Asterisk => method == "OPTIONS",
    };
    if allowed {
        Ok(form)
    } else {
        bad
    }
}

/// Where the path of an absolute-form `http` or `https` target starts, if the target is one
/// with a valid authority.
pub(crate) fn absolute_path_start(target: &str) -> Option<usize> {
    let (scheme, rest) = target.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let len = rest
        .bytes()
        .position(|b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let auth = &rest.as_bytes()[..len];
    // `http` URIs must name a host (RFC 9110 section 4.2.1) and must not carry userinfo
    // (section 4.2.4); the latter is refused by the authority grammar, which has no `@`.
    let host_empty = auth.is_empty() || auth[0] == b':';
    (!host_empty && authority(auth, false)).then_some(scheme.len() + 3 + len)
}

/// The path of a target of the given form: `/` for an absolute-form target with an empty
/// path, `*` for the asterisk form, empty for the authority form.
pub(crate) fn path_and_query(target: &str) -> &str {
    match target.as_bytes().first() {
        Some(b'/') | Some(b'*') => target,
        _ => match absolute_path_start(target) {
            Some(i) => &target[i..],
            None => "",
        },
    }
}

/// The authority of an absolute- or authority-form target.
pub(crate) fn target_authority(target: &str) -> Option<&str> {
    match target.as_bytes().first() {
        Some(b'/') | Some(b'*') | None => None,
        _ => match absolute_path_start(target) {
            Some(end) => {
                let start = target.find("://").map_or(0, |i| i + 3);
                Some(&target[start..end])
            }
            None => Some(target),
        },
    }
}

/// Whether `value` is a valid `Host` field value: empty, or `uri-host [ ":" port ]`.
///
/// Every request carries one, so the common shape — a name or IPv4 address of
/// unreserved and sub-delimiter characters, then an optional `:port` — is checked in one pass
/// over a table; anything else (escapes, IP literals, errors) takes the full grammar.
#[inline]
pub(crate) fn valid_host(value: &[u8]) -> bool {
    let plain = |b: u8| PLAIN_HOST[usize::from(b)];
    // Eight bytes a step: one branch for eight table lookups.
    let mut name = 0;
    while let Some(w) = value.get(name..name + 8) {
        if !(plain(w[0]) & plain(w[1]) & plain(w[2]) & plain(w[3]))
            || !(plain(w[4]) & plain(w[5]) & plain(w[6]) & plain(w[7]))
        {
            break;
        }
        name += 8;
    }
    while name < value.len() && plain(value[name]) {
        name += 1;
    }
    if name == value.len() {
        return true;
    }
    if value[name] == b':' {
        let mut port = name + 1;
        while port < value.len() && value[port].wrapping_sub(b'0') < 10 {
            port += 1;
        }
        if port == value.len() {
            return true;
        }
    }
    authority(value, false)
}

/// The bytes of a `reg-name` other than `%` (unreserved and sub-delimiters).
static PLAIN_HOST: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        i += 1;
    }
    t
};

/// `host [ ":" port ]` (RFC 3986 section 3.2.2, no userinfo), the port required (and not
/// empty) if `port_required`.
fn authority(a: &[u8], port_required: bool) -> bool {
    let (host, port) = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        if !ip_literal(&a[1..close]) {
            return false;
        }
        match &a[close + 1..] {
            [] => (&a[..0], None),
            [b':', port @ ..] => (&a[..0], Some(port)),
            _ => return false,
        }
    } else {
        match a.iter().position(|&b| b == b':') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        }
    };
    let port_ok = match port {
        Some(p) => p.iter().all(u8::is_ascii_digit) && !(port_required && p.is_empty()),
        None => !port_required,
    };
    port_ok && reg_name(host)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (an IPv4 address is one too).
fn reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        let b = name[i];
        if b == b'%' {
            let hex = |j: usize| name.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if unreserved(b) || sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `[...]`: an IPv6 address or `v` HEXDIG "." ... (IPvFuture).
fn ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (ver, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !ver.is_empty()
            && ver.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| unreserved(b) || sub_delim(b) || b == b':');
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

fn unreserved(b: u8) -> bool {
    // The table is the union of this and `sub_delim` (checked in the tests).
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_rfc_3986() {
        for ok in [
            "",
            "example.com",
            "example.com:8080",
            "example.com:",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::ff00:42:8329]",
            "[::ffff:192.0.2.1]:1",
            "[v1.fe80::a+en1]",
            "a-b_c~d.e",
            "%41bc",
            "sub!$&'()*+,;=delims",
            "localhost",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "a b",
            "a/b",
            "a?b",
            "a#b",
            "a@b",
            "user@host",
            "a:b",
            "a:80:80",
            "[::1",
            "::1",
            "[::1]x",
            "[::1]:x",
            "[:::]",
            "[1.2.3.4]",
            "[v.x]",
            "[v1.]",
            "[vz.x]",
            "%4",
            "%zz",
            "a\\b",
            "caf\u{e9}",
            "a\tb",
            "a\"b",
            "<a>",
            "a|b",
            "a:８０",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn the_plain_host_table_is_reg_name_without_escapes() {
        for b in 0..=255u8 {
            assert_eq!(
                PLAIN_HOST[usize::from(b)],
                unreserved(b) || sub_delim(b),
                "{b:#x}"
            );
        }
        // The one-pass check and the full grammar agree on every short value.
        let alphabet = b"a1-.%:[]v@/ 9f";
        for len in 0..5 {
            let mut idx = vec![0usize; len];
            loop {
                let v: Vec<u8> = idx.iter().map(|&i| alphabet[i]).collect();
                assert_eq!(
                    valid_host(&v),
                    v.is_empty() || authority(&v, false),
                    "{:?}",
                    String::from_utf8_lossy(&v)
                );
                let Some(k) = (0..len).find(|&k| idx[k] + 1 < alphabet.len()) else {
                    break;
                };
                idx[k] += 1;
                idx[..k].fill(0);
            }
        }
    }

    #[test]
    fn target_forms_go_with_their_methods() {
        assert_eq!(form("GET", "/a?b"), Ok(Form::Origin));
        assert_eq!(form("OPTIONS", "*"), Ok(Form::Asterisk));
        assert_eq!(form("CONNECT", "example.com:443"), Ok(Form::Authority));
        assert_eq!(form("CONNECT", "[::1]:443"), Ok(Form::Authority));
        assert_eq!(form("GET", "http://h/plaintext"), Ok(Form::Absolute));
        assert_eq!(form("HEAD", "HTTPS://h:1?q"), Ok(Form::Absolute));
        assert_eq!(absolute_path_start("HTTPS://h:1?q"), Some(11));
        let bad = Err(Status::BAD_REQUEST);
        for (method, target) in [
            ("GET", "*"),
            ("POST", "*"),
            ("OPTIONS", "**"),
            ("GET", "example.com:443"),
            ("CONNECT", "/"),
            ("CONNECT", "*"),
            ("CONNECT", "http://h/"),
            ("CONNECT", "example.com"),
            ("CONNECT", "example.com:"),
            ("CONNECT", "user@example.com:443"),
            ("GET", "a"),
            ("GET", "ftp://h/"),
            ("GET", "http:/h"),
            ("GET", "http:///a"),
            ("GET", "http://:80/a"),
            ("GET", "http://u@h/a"),
            ("GET", "http://u:p@h/a"),
            ("GET", "http://a b/"),
            ("GET", "http://h#f"),
            ("GET", "http://[::1/"),
        ] {
            assert_eq!(form(method, target), bad, "{method} {target}");
        }
    }

    #[test]
    fn paths_and_authorities_of_each_form() {
        assert_eq!(path_and_query("/a?b"), "/a?b");
        assert_eq!(path_and_query("http://h/p/q?x=1"), "/p/q?x=1");
        assert_eq!(path_and_query("http://h:80?x"), "?x");
        assert_eq!(path_and_query("http://h"), "");
        assert_eq!(path_and_query("*"), "*");
        assert_eq!(path_and_query("h:443"), "");
        assert_eq!(target_authority("/a"), None);
        assert_eq!(target_authority("*"), None);
        assert_eq!(target_authority("http://h:8/p"), Some("h:8"));
        assert_eq!(target_authority("https://[::1]"), Some("[::1]"));
        assert_eq!(target_authority("h:443"), Some("h:443"));
    }
}
