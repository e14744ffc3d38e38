//! Close codes (RFC 6455 section 7.4) and the payload of a close frame (section 5.5.1).

use std::fmt;

/// A close status code.
///
/// ```
/// use eventide::ws::CloseCode;
///
/// assert!(CloseCode::NORMAL.is_valid());
/// assert!(CloseCode(4000).is_valid()); // private use
/// assert!(!CloseCode(1005).is_valid()); // "no status": never on the wire
/// assert!(!CloseCode(2000).is_valid()); // reserved for future revisions
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutting down, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint cannot accept (e.g. binary on a text-only service).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (reported locally, never sent).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame (reported locally, never sent).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message was not valid UTF-8 (or data was inconsistent with its type).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message was larger than the endpoint accepts.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (from a client) the server did not negotiate an extension the client requires.
    pub const MISSING_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway got an invalid response from upstream (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether the code may appear in a close frame: 1000–1003, 1007–1014 (the RFC's codes
    /// and the ones IANA registered since), 3000–4999 (libraries, applications). Everything
    /// else is refused with a protocol error when received: below 1000 (unused), 1004
    /// (reserved), 1005 and 1006 (local-only), 1015 (TLS failure, local-only), 1016–2999
    /// (reserved), 5000 and above (undefined).
    pub fn is_valid(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The body of a close frame: a status code and a UTF-8 reason (both absent in an empty close
/// frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code; `None` for a close frame without a body.
    pub code: Option<CloseCode>,
    /// The reason (at most 123 bytes), empty if none was given.
    pub reason: &'a str,
}

/// Why a received close payload is refused, and with which code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadClose {
    /// One byte: a code needs two (1002).
    Truncated,
    /// A code that may not be sent (1002).
    Code(u16),
    /// The reason is not UTF-8 (1007).
    Reason,
}

impl BadClose {
    pub(crate) fn code(self) -> CloseCode {
        match self {
            BadClose::Truncated | BadClose::Code(_) => CloseCode::PROTOCOL_ERROR,
            BadClose::Reason => CloseCode::INVALID_DATA,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            BadClose::Truncated => "close frame with a one-byte body",
            BadClose::Code(_) => "close frame with an invalid status code",
            BadClose::Reason => "close reason is not valid UTF-8",
        }
    }
}

/// Reads a received close frame's payload.
pub(crate) fn parse_close(payload: &[u8]) -> Result<CloseFrame<'_>, BadClose> {
    match payload {
        [] => Ok(CloseFrame {
            code: None,
            reason: "",
        }),
        [_] => Err(BadClose::Truncated),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid() {
                return Err(BadClose::Code(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| BadClose::Reason)?;
            Ok(CloseFrame {
                code: Some(code),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_valid_invalid_reserved() {
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(CloseCode(c).is_valid(), "{c}");
        }
        for c in [3000, 3999, 4000, 4999] {
            assert!(CloseCode(c).is_valid(), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(c).is_valid(), "{c}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(parse_close(b"").unwrap().code, None);
        assert_eq!(parse_close(&[3]), Err(BadClose::Truncated));
        assert_eq!(parse_close(&[0x03, 0xED]), Err(BadClose::Code(1005)));
        let f = parse_close(b"\x03\xe8bye").unwrap();
        assert_eq!((f.code, f.reason), (Some(CloseCode::NORMAL), "bye"));
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(BadClose::Reason));
        assert_eq!(BadClose::Reason.code(), CloseCode::INVALID_DATA);
    }
}
