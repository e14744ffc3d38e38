//! The client side of the opening handshake (RFC 6455 section 4.1): building the request
//! and validating the server's answer.

use std::fmt;
use std::hash::{BuildHasher, RandomState};

#[cfg(feature = "ws-deflate")]
use super::deflate;
use super::handshake::{accept_key, base64, Accepted};
use super::{Config, Output, Role, Session};
use crate::http::{tokens, trim};

/// An opening handshake request for an outbound connection.
///
/// ```
/// use eventide::ws::ClientRequest;
///
/// let mut request = Vec::new();
/// let handshake = ClientRequest::new("example.com", "/chat")
///     .protocol("chat.v1")
///     .header("Authorization", "Bearer t0ken")
///     .write(&mut request);
/// let text = String::from_utf8(request).unwrap();
/// assert!(text.starts_with("GET /chat HTTP/1.1\r\nHost: example.com\r\n"));
/// assert!(text.contains("Sec-WebSocket-Protocol: chat.v1\r\n"));
/// # let _ = handshake;
/// ```
#[derive(Clone, Debug)]
pub struct ClientRequest {
    host: String,
    path: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    #[cfg(feature = "ws-deflate")]
    deflate: Option<super::DeflateConfig>,
}

impl ClientRequest {
    /// A request for `path` (with its query, if any) on `host` (the `Host` header: a name,
    /// and `:port` unless it is the default).
    pub fn new(host: &str, path: &str) -> ClientRequest {
        ClientRequest {
            host: host.into(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            protocols: Vec::new(),
            headers: Vec::new(),
            #[cfg(feature = "ws-deflate")]
            deflate: None,
        }
    }

    /// Offers a subprotocol (in order of preference).
    pub fn protocol(mut self, name: &str) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Adds a header (`Origin`, `Authorization`, cookies...). Names and values with CR or LF
    /// are dropped.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if !(name.contains(['\r', '\n']) || value.contains(['\r', '\n'])) {
            self.headers.push((name.into(), value.into()));
        }
        self
    }

    /// Offers permessage-deflate with these preferences.
    #[cfg(feature = "ws-deflate")]
    pub fn deflate(mut self, config: super::DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Writes the request with a fresh random key; returns what validates the answer.
    pub fn write<O: Output + ?Sized>(&self, out: &mut O) -> ClientHandshake {
        let keys = RandomState::new();
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&keys.hash_one(1u8).to_ne_bytes());
        raw[8..].copy_from_slice(&keys.hash_one(2u8).to_ne_bytes());
        let mut key = [0u8; 24];
        base64(&raw, &mut key);
        let key_str = std::str::from_utf8(&key).unwrap_or_default();
        let mut head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key_str}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host
        );
        if !self.protocols.is_empty() {
            head.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.protocols.join(", ")
            ));
        }
        #[cfg(feature = "ws-deflate")]
        if let Some(d) = &self.deflate {
            head.push_str(&format!(
                "Sec-WebSocket-Extensions: {}\r\n",
                deflate::client_offer(d)
            ));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        out.put(head.as_bytes());
        ClientHandshake {
            accept: accept_key(&key),
            protocols: self.protocols.clone(),
            #[cfg(feature = "ws-deflate")]
            deflate: self.deflate,
        }
    }
}

/// A client's pending handshake: checks the server's answer.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    accept: [u8; 28],
    protocols: Vec<String>,
    #[cfg(feature = "ws-deflate")]
    deflate: Option<super::DeflateConfig>,
}

/// A failed client handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The answer is not HTTP.
    Malformed,
    /// The server answered with this status instead of 101.
    Status(u16),
    /// The answer is a 101 but breaks RFC 6455 section 4.1 in this way.
    Invalid(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed => f.write_str("the handshake answer is not HTTP"),
            HandshakeError::Status(code) => write!(f, "the server answered {code}, not 101"),
            HandshakeError::Invalid(why) => write!(f, "invalid handshake answer: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A completed client handshake.
#[derive(Debug)]
pub struct Handshaken {
    /// Bytes of the answer's head; frames may follow them in the same input.
    pub head_len: usize,
    /// What was agreed.
    pub accepted: Accepted,
}

impl Handshaken {
    /// The client's session for the connection.
    pub fn session(&self, config: &Config) -> Session {
        let session = Session::new(Role::Client, config);
        #[cfg(feature = "ws-deflate")]
        if let Some(params) = self.accepted.deflate {
            return session.with_deflate(params);
        }
        session
    }
}

impl ClientHandshake {
    /// Validates the answer at the start of `input`: `Ok(None)` while its head is
    /// incomplete. A 101 must carry `Upgrade: websocket`, `Connection: upgrade`, the right
    /// `Sec-WebSocket-Accept`, and no subprotocol or extension that was not offered.
    pub fn validate(&self, input: &[u8]) -> Result<Option<Handshaken>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HandshakeError::Malformed),
        };
        let code = res.code.unwrap_or(0);
        if code != 101 {
            return Err(HandshakeError::Status(code));
        }
        self.check_upgrade(res.headers)?;
        let accepted = self.agreed(res.headers)?;
        Ok(Some(Handshaken { head_len, accepted }))
    }

    /// The headers a 101 answer to this request must carry: the upgrade to WebSocket and
    /// the accept value of this request's key.
    fn check_upgrade(&self, headers: &[httparse::Header<'_>]) -> Result<(), HandshakeError> {
        let has_token = |name: &'static str, token: &[u8]| {
            values(headers, name).any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
        };
        if !has_token("upgrade", b"websocket") {
            return Err(HandshakeError::Invalid("no Upgrade: websocket"));
        }
        if !has_token("connection", b"upgrade") {
            return Err(HandshakeError::Invalid("no Connection: upgrade"));
        }
        if !values(headers, "sec-websocket-accept").any(|v| trim(v) == self.accept) {
            return Err(HandshakeError::Invalid("wrong Sec-WebSocket-Accept"));
        }
        Ok(())
    }

    /// What the answer agreed to, refused if it names a subprotocol or an extension that
    /// was not offered.
    fn agreed(&self, headers: &[httparse::Header<'_>]) -> Result<Accepted, HandshakeError> {
        let protocol = match values(headers, "sec-websocket-protocol").next() {
            None => None,
            Some(v) => {
                let p = std::str::from_utf8(trim(v)).unwrap_or_default();
                if !self.protocols.iter().any(|o| o == p) {
                    return Err(HandshakeError::Invalid(
                        "a subprotocol that was not offered",
                    ));
                }
                Some(p.into())
            }
        };
        #[cfg(feature = "ws-deflate")]
        let mut deflate = None;
        // Without permessage-deflate, any extension in the answer is refused at once.
        #[cfg_attr(not(feature = "ws-deflate"), allow(clippy::never_loop))]
        for ext in values(headers, "sec-websocket-extensions") {
            #[cfg(feature = "ws-deflate")]
            if let Some(cfg) = &self.deflate {
                if deflate.is_none() {
                    deflate = Some(deflate::read_answer(ext, cfg).map_err(|()| {
                        HandshakeError::Invalid("unacceptable permessage-deflate parameters")
                    })?);
                    continue;
                }
            }
            let _ = ext;
            return Err(HandshakeError::Invalid("an extension that was not offered"));
        }
        Ok(Accepted {
            protocol,
            #[cfg(feature = "ws-deflate")]
            deflate,
        })
    }
}

/// The values of the headers called `name` (any case), in order.
fn values<'h>(
    headers: &'h [httparse::Header<'h>],
    name: &'static str,
) -> impl Iterator<Item = &'h [u8]> + 'h {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

#[cfg(test)]
mod tests {
    use super::super::handshake::is_valid_key;
    use super::*;

    fn answer(accept: &str, extra: &str) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
        )
    }

    #[test]
    fn client_validates_the_answer() {
        let mut request = Vec::new();
        let hs = ClientRequest::new("h:1", "")
            .protocol("p1")
            .write(&mut request);
        let request = String::from_utf8(request).unwrap();
        assert!(
            request.starts_with("GET / HTTP/1.1\r\nHost: h:1\r\n"),
            "{request}"
        );
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        assert!(is_valid_key(key.as_bytes()));
        let good = String::from_utf8(accept_key(key.as_bytes()).to_vec()).unwrap();
        let ok = answer(&good, "Sec-WebSocket-Protocol: p1\r\n");
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend_from_slice(&[0x81, 0x00]);
        let done = hs.validate(&with_frame).unwrap().unwrap();
        assert_eq!(
            (done.head_len, done.accepted.protocol()),
            (ok.len(), Some("p1"))
        );
        assert!(matches!(
            hs.validate(&ok.as_bytes()[..ok.len() - 1]),
            Ok(None)
        ));
        let bad = |text: String| match hs.validate(text.as_bytes()) {
            Err(e) => e,
            Ok(r) => panic!("accepted {text:?}: {r:?}"),
        };
        assert!(matches!(
            bad(answer("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "")),
            HandshakeError::Invalid(_)
        ));
        assert!(matches!(
            bad(answer(&good, "Sec-WebSocket-Protocol: p2\r\n")),
            HandshakeError::Invalid(_)
        ));
        assert!(matches!(
            bad(answer(&good, "Sec-WebSocket-Extensions: x-foo\r\n")),
            HandshakeError::Invalid(_)
        ));
        assert_eq!(
            bad("HTTP/1.1 403 Forbidden\r\n\r\n".into()),
            HandshakeError::Status(403)
        );
        assert_eq!(bad("SSH-2.0\r\n\r\n".into()), HandshakeError::Malformed);
        let no_upgrade = answer(&good, "").replace("Upgrade: websocket\r\n", "");
        assert!(matches!(bad(no_upgrade), HandshakeError::Invalid(_)));
    }
}
