//! Frame headers (RFC 6455 section 5.2) and masking (section 5.3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use std::hash::{BuildHasher, RandomState};

/// The longest frame header: 2 bytes, a 64-bit length, a masking key.
pub(crate) const MAX_HEADER: usize = 14;

/// The most payload a control frame may carry (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    pub(crate) fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub fin: bool,
    /// RSV1: "compressed" under permessage-deflate.
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// Bytes of the header itself (2 to 14).
    pub size: usize,
}

/// Why a header is refused (each is a 1002 protocol error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// RSV2 or RSV3 set (no extension defines them here).
    ReservedBits,
    /// Opcodes 3-7 and 0xB-0xF are reserved.
    ReservedOpcode(u8),
    /// A 16- or 64-bit length that fits a shorter encoding (section 5.2: "the minimal number
    /// of bytes MUST be used").
    NonMinimalLength,
    /// A 64-bit length with its most significant bit set.
    LengthTooLong,
}

impl HeaderError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            HeaderError::ReservedBits => "reserved bits RSV2/RSV3 set",
            HeaderError::ReservedOpcode(_) => "reserved opcode",
            HeaderError::NonMinimalLength => "payload length not minimally encoded",
            HeaderError::LengthTooLong => "64-bit payload length with the top bit set",
        }
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` while it is incomplete. Only what the
/// header alone shows is checked here; the rules that depend on the connection (masking, RSV1,
/// fragmentation, limits) are the receiver's.
#[inline]
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(HeaderError::ReservedBits);
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(HeaderError::ReservedOpcode(b0 & 0x0F))?;
    let masked = b1 & 0x80 != 0;
    let (len, mut size) = match b1 & 0x7F {
        126 => {
            let Some(ext) = buf.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([ext[0], ext[1]]));
            if len < 126 {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(ext.try_into().unwrap_or_default());
            if len >> 63 != 0 {
                return Err(HeaderError::LengthTooLong);
            }
            if len <= 0xFFFF {
                return Err(HeaderError::NonMinimalLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(key) = buf.get(size..size + 4) else {
            return Ok(None);
        };
        size += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode,
        mask,
        len,
        size,
    }))
}

/// The header of the usual data frame, read by [`parse_usual`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UsualHeader {
    pub text: bool,
    pub mask: Option<[u8; 4]>,
    pub len: usize,
    /// Bytes of the header itself (2 to 8).
    pub size: usize,
}

/// The usual frame's header, read without the general parser: a whole text or binary
/// message (FIN set, no RSV bit), masked if `masked` (as a server expects) or not (a
/// client), with a 7- or a minimal 16-bit length. `None` for anything else, including an
/// incomplete header: [`parse_header`] and the receiver's checks then decide, so no frame is
/// accepted here that they would refuse, and none refused.
#[inline]
pub(crate) fn parse_usual(buf: &[u8], masked: bool) -> Option<UsualHeader> {
    let [b0, b1, ..] = *buf else {
        return None;
    };
    let text = match b0 {
        0x81 => true,
        0x82 => false,
        _ => return None,
    };
    if (b1 & 0x80 != 0) != masked {
        return None;
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            let ext = buf.get(2..4)?;
            let len = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
            if len < 126 {
                return None; // not minimal: refused by parse_header
            }
            (len, 4)
        }
        127 => return None,
        n => (usize::from(n), 2),
    };
    let (mask, size) = if masked {
        let key = buf.get(at..at + 4)?;
        (Some([key[0], key[1], key[2], key[3]]), at + 4)
    } else {
        (None, at)
    };
    Some(UsualHeader {
        text,
        mask,
        len,
        size,
    })
}

/// Encodes a header into `dst`, returning its length: the shortest length encoding, the mask
/// key if given.
#[inline]
pub(crate) fn encode_header(
    dst: &mut [u8; MAX_HEADER],
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    len: usize,
    mask: Option<[u8; 4]>,
) -> usize {
    dst[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode.bits();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut n = match len {
        0..=125 => {
            dst[1] = mask_bit | len as u8;
            2
        }
        126..=0xFFFF => {
            dst[1] = mask_bit | 126;
            dst[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            dst[1] = mask_bit | 127;
            dst[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    if let Some(key) = mask {
        dst[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Masking works on 64-byte blocks of 16-byte lanes: a lane is a plain byte loop over
/// arrays, which the compiler turns into one vector XOR, and a block of four gives it an
/// unrolled loop (callgrind, 512-byte payload: about 180 instructions to unmask into another
/// buffer, against 330 for a copy and then a `u64` word loop, which stays scalar).
const LANE: usize = 16;
const BLOCK: usize = 64;

/// The key repeated over a lane, as seen from payload byte `offset` (the key repeats every
/// four bytes).
#[inline]
fn lane_key(key: [u8; 4], offset: usize) -> [u8; LANE] {
    // Little-endian, the first byte is the lowest: moving the key's bytes left by one is a
    // rotation right by 8 bits.
    let [a, b, c, d] = u32::from_le_bytes(key)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes();
    [a, b, c, d, a, b, c, d, a, b, c, d, a, b, c, d]
}

/// XORs `src` with the key into `dst`, for the first `LANE` bytes if both have that many:
/// the lengths are known at compile time inside, so this is one vector XOR.
#[inline(always)]
fn xor_lane(dst: &mut [u8], src: &[u8], key: &[u8; LANE]) {
    if let (Ok(dst), Ok(src)) = (
        <&mut [u8; LANE]>::try_from(dst),
        <&[u8; LANE]>::try_from(src),
    ) {
        let mut out = [0u8; LANE];
        for ((o, s), k) in out.iter_mut().zip(src).zip(key) {
            *o = s ^ k;
        }
        *dst = out;
    }
}

/// [`xor_lane`] for the bytes left after the last whole lane (fewer than `LANE`).
#[inline(always)]
fn xor_tail(dst: &mut [u8], src: &[u8], key: &[u8; LANE]) {
    for ((d, s), k) in dst.iter_mut().zip(src).zip(key) {
        *d = s ^ k;
    }
}

/// Writes `src` unmasked into `dst`, `src[0]` being payload byte number `offset`; the two
/// have the same length (only the shorter's length is written otherwise).
#[inline]
pub(crate) fn unmask(dst: &mut [u8], src: &[u8], key: [u8; 4], offset: usize) {
    let key = lane_key(key, offset);
    let mut dst_blocks = dst.chunks_exact_mut(BLOCK);
    let mut src_blocks = src.chunks_exact(BLOCK);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        for (d, s) in d.chunks_exact_mut(LANE).zip(s.chunks_exact(LANE)) {
            xor_lane(d, s, &key);
        }
    }
    let mut dst_lanes = dst_blocks.into_remainder().chunks_exact_mut(LANE);
    let mut src_lanes = src_blocks.remainder().chunks_exact(LANE);
    for (d, s) in (&mut dst_lanes).zip(&mut src_lanes) {
        xor_lane(d, s, &key);
    }
    xor_tail(dst_lanes.into_remainder(), src_lanes.remainder(), &key);
}

/// XORs `data` with the masking key in place, `data[0]` being payload byte number `offset`
/// (masking and unmasking are the same operation).
#[inline]
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let key = lane_key(key, offset);
    let mut blocks = data.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(LANE) {
            xor_lane_in_place(lane, &key);
        }
    }
    let mut lanes = blocks.into_remainder().chunks_exact_mut(LANE);
    for lane in &mut lanes {
        xor_lane_in_place(lane, &key);
    }
    for (b, k) in lanes.into_remainder().iter_mut().zip(&key) {
        *b ^= k;
    }
}

/// [`xor_lane`] in place.
#[inline(always)]
fn xor_lane_in_place(lane: &mut [u8], key: &[u8; LANE]) {
    if let Ok(lane) = <&mut [u8; LANE]>::try_from(lane) {
        for (b, k) in lane.iter_mut().zip(key) {
            *b ^= k;
        }
    }
}

/// Appends `src` unmasked to `dst`: a copy, then the XOR in place (writing straight into
/// the spare capacity would need `unsafe`; both passes run at vector width on data already
/// in cache).
#[inline]
pub(crate) fn unmask_into(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[start..], key, offset);
}

/// Masking keys for client frames. Section 10.3 asks for keys a peer cannot predict, so that
/// a hostile script cannot choose the bytes an intermediary sees. Each key is SipHash, keyed by
/// the random keys the standard library draws from the OS once per thread, over a counter: a
/// keyed pseudo-random function, unpredictable without the key, and no system call per frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct MaskKeys {
    keys: RandomState,
    counter: u64,
}

impl MaskKeys {
    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        self.counter = self.counter.wrapping_add(1);
        (self.keys.hash_one(self.counter) as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> Header {
        parse_header(bytes).unwrap().unwrap()
    }

    /// The short path reads exactly what the general parser reads for the headers it takes
    /// (a whole text or binary message, masked as expected, a 7- or 16-bit length), and
    /// leaves every other header to it: each first and second byte, with 16-bit lengths
    /// below, at and above 126, whole and cut.
    #[test]
    fn usual_headers_read_as_the_general_parser_reads_them() {
        let mut taken = 0;
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for ext in [[0u8, 125], [0, 126], [1, 0], [255, 255]] {
                    let buf = [b0, b1, ext[0], ext[1], 9, 8, 7, 6, 5, 4];
                    for masked in [true, false] {
                        for cut in 0..=buf.len() {
                            let Some(u) = parse_usual(&buf[..cut], masked) else {
                                continue;
                            };
                            taken += 1;
                            let h = header(&buf[..cut]);
                            assert!(h.fin && !h.rsv1, "{b0:#x} {b1:#x}");
                            assert_eq!(u.text, h.opcode == OpCode::Text);
                            assert!(matches!(h.opcode, OpCode::Text | OpCode::Binary));
                            assert_eq!(h.mask.is_some(), masked);
                            assert_eq!((u.mask, u.len as u64, u.size), (h.mask, h.len, h.size));
                        }
                    }
                }
            }
        }
        assert!(taken > 0);
        // A few it must leave to the general parser.
        for buf in [
            &[0x01, 0x85, 1, 2, 3, 4][..], // no FIN
            &[0xC1, 0x85, 1, 2, 3, 4],     // RSV1
            &[0x80, 0x85, 1, 2, 3, 4],     // continuation
            &[0x89, 0x85, 1, 2, 3, 4],     // ping
            &[0x82, 0xFE, 0, 125, 1, 2, 3, 4],
            &[0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
            &[0x82, 0x85, 1, 2, 3], // cut in the key
        ] {
            assert_eq!(parse_usual(buf, true), None, "{buf:?}");
        }
        assert_eq!(parse_usual(&[0x82, 0x85, 1, 2, 3, 4], false), None);
        assert_eq!(parse_usual(&[0x82, 0x05], true), None);
    }

    #[test]
    fn payload_length_encodings_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 1 << 33] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut buf = [0; MAX_HEADER];
                let n = encode_header(&mut buf, true, false, OpCode::Binary, len, mask);
                let expect = match len {
                    0..=125 => 2,
                    126..=0xFFFF => 4,
                    _ => 10,
                } + if mask.is_some() { 4 } else { 0 };
                assert_eq!(n, expect, "header size for {len}");
                let h = header(&buf[..n]);
                assert_eq!((h.len, h.size, h.mask), (len as u64, n, mask));
                // Every strict prefix is incomplete, never an error.
                for cut in 0..n {
                    assert_eq!(parse_header(&buf[..cut]), Ok(None), "cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn lengths_must_be_minimal() {
        assert_eq!(
            parse_header(&[0x82, 126, 0, 125]),
            Err(HeaderError::NonMinimalLength)
        );
        assert_eq!(header(&[0x82, 126, 0, 126]).len, 126);
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&0xFFFFu64.to_be_bytes());
        assert_eq!(parse_header(&b), Err(HeaderError::NonMinimalLength));
        let mut b = vec![0x82, 127];
        b.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse_header(&b), Err(HeaderError::LengthTooLong));
    }

    #[test]
    fn reserved_bits_and_opcodes() {
        assert_eq!(parse_header(&[0xA2, 0]), Err(HeaderError::ReservedBits));
        assert_eq!(parse_header(&[0x92, 0]), Err(HeaderError::ReservedBits));
        assert!(header(&[0xC2, 0]).rsv1);
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                parse_header(&[0x80 | op, 0]),
                Err(HeaderError::ReservedOpcode(op))
            );
        }
    }

    /// The definition (RFC 6455 section 5.3): byte `i` of the payload XORed with key byte
    /// `i % 4`.
    fn bytewise(data: &[u8], key: [u8; 4], offset: usize) -> Vec<u8> {
        let key_at = |i: usize| key[(i + offset) % 4];
        data.iter()
            .enumerate()
            .map(|(i, b)| b ^ key_at(i))
            .collect()
    }

    #[test]
    fn masking_matches_the_byte_definition() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 7) as u8).collect();
        // Every length to 200 (all the block, lane and tail splits, several times over) and
        // a few long ones, from every start alignment, at every key phase.
        let lens = (0..=200).chain([1000, 4096, 4096 + 37, 4999 - 15]);
        for len in lens {
            for align in 0..16 {
                let src = &data[align..align + len];
                for offset in 0..8 {
                    let want = bytewise(src, key, offset);
                    let what = format!("len {len} align {align} offset {offset}");

                    let mut in_place = src.to_vec();
                    apply_mask(&mut in_place, key, offset);
                    assert_eq!(in_place, want, "apply_mask, {what}");

                    let mut dst = vec![0xAA; len + 32];
                    unmask(&mut dst[align..align + len], src, key, offset);
                    assert_eq!(&dst[align..align + len], &want[..], "unmask, {what}");
                    assert!(dst[..align].iter().all(|&b| b == 0xAA), "before, {what}");
                    let after = &dst[align + len..];
                    assert!(after.iter().all(|&b| b == 0xAA), "after, {what}");

                    let mut appended = vec![1, 2, 3];
                    unmask_into(&mut appended, src, key, offset);
                    assert_eq!(&appended[..3], &[1, 2, 3]);
                    assert_eq!(&appended[3..], &want[..], "unmask_into, {what}");
                }
            }
        }
        // RFC 6455 section 5.7: a masked "Hello".
        let mut hello = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut hello, key, 0);
        assert_eq!(&hello, b"Hello");
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        // A payload unmasked as it arrives, cut anywhere: each piece starts at its offset.
        let key = [9, 0x80, 0xFF, 1];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let want = bytewise(&data, key, 0);
        for cut in 0..=data.len() {
            let mut out = Vec::new();
            unmask_into(&mut out, &data[..cut], key, 0);
            unmask_into(&mut out, &data[cut..], key, cut);
            assert_eq!(out, want, "cut at {cut}");
        }
    }

    #[test]
    fn mask_keys_differ() {
        let mut keys = MaskKeys::default();
        let a = keys.next_key();
        let b = keys.next_key();
        assert_ne!(a, b);
    }
}
