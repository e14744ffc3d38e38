//! The epoll token of every registered descriptor: what it is (the top three bits), then a
//! 32-bit generation and a 29-bit slot in the table that owns it. The generation tells a
//! stale event for a slot that was freed and reused in the same batch from a live one.

/// An accepted or outbound connection (the connection table).
pub(crate) const CONN: u64 = 0;
/// A listening socket (the loop's listener list).
pub(crate) const LISTENER: u64 = 1;
/// A gracefully closed socket waiting for the peer's FIN (the lingering table).
pub(crate) const LINGER: u64 = 2;
/// The loop's wake-up eventfd.
pub(crate) const WAKER: u64 = 3;
/// An outbound connect in progress (the connecting table).
pub(crate) const CONNECTING: u64 = 4;
/// A UDP socket (the loop's UDP socket list).
pub(crate) const UDP: u64 = 5;
/// A connection in its TLS handshake (the handshake table).
pub(crate) const HANDSHAKE: u64 = 6;

const TAG_SHIFT: u32 = 61;
const KEY_BITS: u32 = 29;
/// The largest slot a token can name.
pub(crate) const KEY_MASK: u64 = (1 << KEY_BITS) - 1;

/// The token of slot `key` (generation `generation`) in the table that `tag` names.
pub(crate) fn make(tag: u64, key: usize, generation: u32) -> u64 {
    (tag << TAG_SHIFT) | (u64::from(generation) << KEY_BITS) | (key as u64 & KEY_MASK)
}

/// `(tag, key, generation)` of a token.
pub(crate) fn split(token: u64) -> (u64, usize, u32) {
    (
        token >> TAG_SHIFT,
        (token & KEY_MASK) as usize,
        (token >> KEY_BITS) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for tag in [CONN, LISTENER, LINGER, WAKER, CONNECTING, UDP, HANDSHAKE] {
            for (key, generation) in [(0, 0), (1, 7), (KEY_MASK as usize, u32::MAX)] {
                assert_eq!(split(make(tag, key, generation)), (tag, key, generation));
            }
        }
    }
}
