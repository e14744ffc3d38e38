//! Frames for many connections: what a [`Group`](crate::Group) broadcasts to WebSocket
//! members.
//!
//! A server's frames are not masked, so one frame's bytes serve every connection: a broadcast
//! frames the message once and the group writes the same buffer to each member. The frame is
//! not compressed, which every connection accepts, with or without permessage-deflate (a
//! message without RSV1 is an uncompressed one). The [`WsServer`](super::WsServer) takes a
//! connection out of its groups once its close frame is sent, so no broadcast follows it.

use std::sync::Arc;

use super::frame::{encode_header, OpCode, MAX_HEADER};
use crate::Group;

/// A text message whose text is `parts` one after another, as one server frame in one
/// allocation, for [`Group::broadcast`] to WebSocket connections.
///
/// ```
/// let frame = eventide::ws::shared_text(&["alice", ": ", "hi"]);
/// assert_eq!(&frame[..], b"\x81\x09alice: hi");
/// ```
pub fn shared_text(parts: &[&str]) -> Arc<[u8]> {
    let mut bytes = [&[][..]; 8];
    if parts.len() <= bytes.len() {
        for (b, p) in bytes.iter_mut().zip(parts) {
            *b = p.as_bytes();
        }
        return frame(OpCode::Text, &bytes[..parts.len()]);
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    frame(OpCode::Text, &bytes)
}

/// A binary message of `parts` one after another, as one server frame in one allocation.
pub fn shared_binary(parts: &[&[u8]]) -> Arc<[u8]> {
    frame(OpCode::Binary, parts)
}

fn frame(opcode: OpCode, parts: &[&[u8]]) -> Arc<[u8]> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut header = [0u8; MAX_HEADER];
    let n = encode_header(&mut header, true, false, opcode, len, None);
    let mut all = [&[][..]; 9];
    if parts.len() < all.len() {
        all[0] = &header[..n];
        all[1..=parts.len()].copy_from_slice(parts);
        return Group::payload(&all[..=parts.len()]);
    }
    let mut all = Vec::with_capacity(parts.len() + 1);
    all.push(&header[..n]);
    all.extend_from_slice(parts);
    Group::payload(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_frames_use_the_shortest_length_and_no_mask() {
        let long = "x".repeat(300);
        let f = shared_text(&[&long, "!"]);
        assert_eq!(&f[..4], [0x81, 126, 0x01, 0x2d]);
        assert_eq!(f.len(), 4 + 301);
        let parts: Vec<&str> = (0..20).map(|_| "ab").collect();
        let f = shared_text(&parts);
        assert_eq!(&f[..2], [0x81, 40]);
        let f = shared_binary(&[b"\x00\xff"]);
        assert_eq!(&f[..], [0x82, 2, 0x00, 0xff]);
        assert_eq!(&shared_binary(&[])[..], [0x82, 0]);
    }
}
