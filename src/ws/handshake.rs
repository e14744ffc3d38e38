//! The server side of the opening handshake (RFC 6455 section 4.2): validating a client's
//! upgrade request and answering it. The client side is in [`client`](super::client).
//!
//! `Sec-WebSocket-Accept` is the base64 of the SHA-1 of the key and a fixed GUID. SHA-1 comes
//! from `sha1_smol` (one file, no dependencies, the one tungstenite's peers use); base64 is
//! only ever encoded here (20-byte digests, 16-byte keys) and a key only checked for shape,
//! so that part is the dozen lines below, checked against the RFC's example.

use std::fmt;

#[cfg(feature = "ws-deflate")]
use super::deflate::{self, DeflateParams};
use super::{Config, Output, Role, Session};
use crate::http::{tokens, trim, Request, Status, Version};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
///
/// ```
/// // The example of RFC 6455 section 1.3.
/// assert_eq!(
///     eventide::ws::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     *b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let mut out = [0u8; 28];
    base64(&sha.digest().bytes(), &mut out);
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding; `out` is exactly `4 * ceil(len / 3)` bytes.
pub(crate) fn base64(data: &[u8], out: &mut [u8]) {
    for (chunk, dst) in data.chunks(3).zip(out.chunks_mut(4)) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, d) in dst.iter_mut().enumerate() {
            *d = if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
        }
    }
}

/// Whether `key` is the base64 of 16 bytes: 22 characters of the alphabet, the last of them
/// with its low four bits zero (they would be padding), then `==`.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key[..22].iter().all(|b| ALPHABET.contains(b))
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

/// The values of every `name` header, in order, comma-separated lists split, trimmed.
fn header_tokens<'a, 'r>(
    req: &'a Request<'r>,
    name: &'static str,
) -> impl Iterator<Item = &'r [u8]> + 'a {
    req.headers()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| tokens(v))
}

/// The only `name` header, trimmed: `None` if absent or repeated.
fn single_header<'r>(req: &Request<'r>, name: &str) -> Option<&'r [u8]> {
    let mut values = req.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let (_, v) = values.next()?;
    values.next().is_none().then(|| trim(v))
}

/// Whether `req` asks to upgrade to WebSocket (`Upgrade: websocket`), valid or not — for a
/// route that serves plain HTTP on the same path.
pub fn is_upgrade_request(req: &Request<'_>) -> bool {
    asks_websocket(req.headers)
}

/// Whether request headers carry `Upgrade: websocket`.
pub(crate) fn asks_websocket(headers: &[httparse::Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("upgrade"))
        .flat_map(|h| tokens(h.value))
        .any(|t| t.eq_ignore_ascii_case(b"websocket"))
}

/// Why an upgrade request was refused, and how to answer it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    status: Status,
    what: &'static str,
}

impl Rejection {
    /// A refusal with `status` (e.g. 403 from an origin check); `what` is the response body.
    pub fn new(status: Status, what: &'static str) -> Rejection {
        Rejection { status, what }
    }

    fn bad(what: &'static str) -> Rejection {
        Rejection::new(Status::BAD_REQUEST, what)
    }

    /// The status to answer with: 400 for a malformed upgrade, 426 for a version other than 13.
    pub fn status(&self) -> Status {
        self.status
    }

    /// What was wrong (the body of the answer).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Whether the answer must carry `Sec-WebSocket-Version: 13` (a 426).
    pub fn needs_version_header(&self) -> bool {
        self.status.code() == 426
    }

    /// Writes the complete HTTP answer: status, `Connection: close`, the version header if
    /// needed, a text body.
    pub fn write_response<O: Output + ?Sized>(&self, out: &mut O) {
        let reason = match self.status.code() {
            426 => "Upgrade Required",
            _ => self.status.reason(),
        };
        let version = if self.needs_version_header() {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nConnection: close\r\n{version}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            self.status.code(),
            self.what.len(),
        );
        out.put(head.as_bytes());
        out.put(self.what.as_bytes());
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.code(), self.what)
    }
}

impl std::error::Error for Rejection {}

/// A valid upgrade request, before it is answered: the application may pick a subprotocol
/// or decline permessage-deflate, then the `101 Switching Protocols` answer is written.
#[derive(Debug)]
pub struct Upgrade<'r> {
    accept: [u8; 28],
    protocols: Vec<&'r str>,
    protocol: Option<&'r str>,
    origin: Option<&'r str>,
    #[cfg(feature = "ws-deflate")]
    deflate: Option<(DeflateParams, String)>,
}

/// Validates an upgrade request (RFC 6455 section 4.2.1): `GET`, HTTP/1.1, a `Host`,
/// `Upgrade: websocket`, `Connection: upgrade`, one `Sec-WebSocket-Key` of 16 base64 bytes
/// (else 400), `Sec-WebSocket-Version: 13` (else 426). Negotiates permessage-deflate when
/// `config` enables it.
///
/// ```
/// use eventide::http::{HttpServer, Request, Response};
/// use eventide::ws::{accept, Config};
///
/// // In an HTTP route: is this a valid upgrade request?
/// fn route(req: &Request<'_>, res: &mut Response<'_>) {
///     match accept(req, &Config::new()) {
///         Ok(upgrade) => {
///             // ... answer with upgrade.response_headers() and switch the connection
///             # let _ = upgrade;
///         }
///         Err(rejection) => {
///             res.status(rejection.status());
///             if rejection.needs_version_header() {
///                 res.header("Sec-WebSocket-Version", "13");
///             }
///             res.close().body(rejection.what().as_bytes());
///         }
///     }
/// }
/// # let _ = HttpServer::new(route);
/// ```
pub fn accept<'r>(req: &Request<'r>, config: &Config) -> Result<Upgrade<'r>, Rejection> {
    let _ = config;
    if req.method() != "GET" {
        return Err(Rejection::bad("a WebSocket upgrade must be a GET"));
    }
    if req.version() != Version::Http11 {
        return Err(Rejection::bad("a WebSocket upgrade needs HTTP/1.1"));
    }
    if req.header("host").is_none() {
        return Err(Rejection::bad("no Host header"));
    }
    if !is_upgrade_request(req) {
        return Err(Rejection::bad("no Upgrade: websocket header"));
    }
    if !header_tokens(req, "connection").any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
        return Err(Rejection::bad("no Connection: upgrade header"));
    }
    match single_header(req, "sec-websocket-version") {
        Some(b"13") => {}
        Some(_) => {
            return Err(Rejection::new(
                Status::new(426).unwrap_or(Status::BAD_REQUEST),
                "unsupported WebSocket version (this server speaks 13)",
            ))
        }
        None => return Err(Rejection::bad("no single Sec-WebSocket-Version header")),
    }
    let key = match single_header(req, "sec-websocket-key") {
        Some(k) if is_valid_key(k) => k,
        _ => return Err(Rejection::bad("no valid Sec-WebSocket-Key header")),
    };
    let protocols = header_tokens(req, "sec-websocket-protocol")
        .filter_map(|p| std::str::from_utf8(p).ok())
        .collect();
    let origin = req
        .header("origin")
        .and_then(|o| std::str::from_utf8(trim(o)).ok());
    Ok(Upgrade {
        accept: accept_key(key),
        protocols,
        protocol: None,
        origin,
        #[cfg(feature = "ws-deflate")]
        deflate: config.deflate.as_ref().and_then(|d| {
            let offers = req
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|(_, v)| v);
            deflate::accept_offer(offers, d)
        }),
    })
}

impl<'r> Upgrade<'r> {
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order.
    pub fn offered_protocols(&self) -> &[&'r str] {
        &self.protocols
    }

    /// Picks the subprotocol to answer with; only one the client offered is taken (returns
    /// whether it was).
    pub fn select_protocol(&mut self, name: &str) -> bool {
        self.protocol = self.protocols.iter().copied().find(|p| *p == name);
        self.protocol.is_some()
    }

    /// Picks the first of `supported` (the server's order of preference) that the client
    /// offered, if any.
    pub fn select_first_of(&mut self, supported: &[impl AsRef<str>]) -> Option<&'r str> {
        self.protocol = supported
            .iter()
            .find_map(|s| self.protocols.iter().copied().find(|p| *p == s.as_ref()));
        self.protocol
    }

    /// The subprotocol selected so far.
    pub fn protocol(&self) -> Option<&'r str> {
        self.protocol
    }

    /// The `Origin` header (browsers send it; check it against the sites allowed to open
    /// connections, since browsers let any page try).
    pub fn origin(&self) -> Option<&'r str> {
        self.origin
    }

    /// The permessage-deflate parameters agreed, if any.
    #[cfg(feature = "ws-deflate")]
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|(p, _)| *p)
    }

    /// Answer without permessage-deflate even though it was offered.
    #[cfg(feature = "ws-deflate")]
    pub fn decline_deflate(&mut self) {
        self.deflate = None;
    }

    /// The headers of the `101 Switching Protocols` answer, for a writer of its own (an
    /// `HttpServer` response).
    pub fn response_headers(&self) -> Vec<(&'static str, &str)> {
        let mut h = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            (
                "Sec-WebSocket-Accept",
                std::str::from_utf8(&self.accept).unwrap_or_default(),
            ),
        ];
        if let Some(p) = self.protocol {
            h.push(("Sec-WebSocket-Protocol", p));
        }
        #[cfg(feature = "ws-deflate")]
        if let Some((_, ext)) = &self.deflate {
            h.push(("Sec-WebSocket-Extensions", ext.as_str()));
        }
        h
    }

    /// Writes the complete `101 Switching Protocols` answer.
    pub fn write_response<O: Output + ?Sized>(&self, out: &mut O) {
        let mut head = Vec::with_capacity(160);
        head.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in self.response_headers() {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        out.put(&head);
    }

    /// The server's session for the connection, with what was agreed.
    pub fn session(&self, config: &Config) -> Session {
        let session = Session::new(Role::Server, config);
        #[cfg(feature = "ws-deflate")]
        if let Some((params, _)) = self.deflate {
            return session.with_deflate(params);
        }
        session
    }

    /// The outcome, detached from the request.
    pub fn accepted(&self) -> Accepted {
        Accepted {
            protocol: self.protocol.map(Into::into),
            #[cfg(feature = "ws-deflate")]
            deflate: self.deflate(),
        }
    }
}

/// What an opening handshake agreed: the subprotocol and the extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub(crate) protocol: Option<Box<str>>,
    #[cfg(feature = "ws-deflate")]
    pub(crate) deflate: Option<DeflateParams>,
}

impl Accepted {
    /// The subprotocol agreed, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed, if any.
    #[cfg(feature = "ws-deflate")]
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        // RFC 4648 section 10.
        for (data, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = vec![0u8; data.len().div_ceil(3) * 4];
            base64(data.as_bytes(), &mut out);
            assert_eq!(out, want.as_bytes(), "{data}");
        }
    }

    #[test]
    fn sha1_vectors() {
        // FIPS 180 examples, through the crate.
        let hex = |d: &[u8]| sha1_smol::Sha1::from(d).digest().to_string();
        assert_eq!(hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn key_shape() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR==")); // low bits set
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25j*Q=="));
        let mut key = [0u8; 24];
        base64(&[0xFF; 16], &mut key);
        assert!(is_valid_key(&key));
    }

    fn request<'r>(headers: &'r [httparse::Header<'r>]) -> Request<'r> {
        Request {
            method: "GET",
            target: "/chat",
            version: Version::Http11,
            headers,
            body: &[],
            keep_alive: true,
        }
    }

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn server_accepts_and_picks_a_subprotocol() {
        let headers = [
            h("Host", "example.com"),
            h("Upgrade", "WebSocket"),
            h("Connection", "keep-alive, Upgrade"),
            h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            h("Sec-WebSocket-Version", "13"),
            h("Sec-WebSocket-Protocol", "a, b"),
            h("Sec-WebSocket-Protocol", "c"),
            h("Origin", "https://example.com"),
        ];
        let req = request(&headers);
        assert!(is_upgrade_request(&req));
        let mut up = accept(&req, &Config::new()).unwrap();
        assert_eq!(up.offered_protocols(), ["a", "b", "c"]);
        assert_eq!(up.select_first_of(&["z", "c", "a"]), Some("c"));
        assert!(!up.select_protocol("z"));
        assert!(up.select_protocol("b"));
        assert_eq!(up.origin(), Some("https://example.com"));
        let mut out = Vec::new();
        up.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: b\r\n\r\n"
        );
        // A repeated key or version is refused.
        let mut twice = headers.to_vec();
        twice.push(h("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            accept(&request(&twice), &Config::new())
                .unwrap_err()
                .status(),
            Status::BAD_REQUEST
        );
        let mut v8 = headers[..4].to_vec();
        v8.push(h("Sec-WebSocket-Version", "8"));
        let rej = accept(&request(&v8), &Config::new()).unwrap_err();
        assert_eq!(rej.status().code(), 426);
        let mut out = Vec::new();
        rej.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{text}"
        );
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"), "{text}");
    }
}
