//! The 64-bit digest the `api` demo's `POST /upload` answers with (its tests compute it too):
//! FNV-1a's multiply over the body's little-endian 8-byte words, with a rotation so every bit
//! reaches every other, the last partial word zero-padded and the length mixed in last. Fed
//! in pieces of any size, it gives the same digest as the whole. A check of byte-exactness,
//! not a cryptographic hash.

#![allow(dead_code)] // the tests that include this file use part of it

/// A digest in progress.
#[derive(Debug, Clone)]
pub struct WordHash {
    h: u64,
    tail: [u8; 8],
    tail_len: usize,
    len: u64,
}

const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for WordHash {
    fn default() -> WordHash {
        WordHash {
            h: 0xcbf2_9ce4_8422_2325,
            tail: [0; 8],
            tail_len: 0,
            len: 0,
        }
    }
}

impl WordHash {
    fn mix(&mut self, word: u64) {
        self.h = (self.h ^ word).wrapping_mul(PRIME).rotate_left(29);
    }

    /// Adds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let n = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&data[..n]);
            self.tail_len += n;
            data = &data[n..];
            if self.tail_len < 8 {
                return;
            }
            self.mix(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// Bytes added so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The digest of everything added.
    pub fn finish(&self) -> u64 {
        let mut end = self.clone();
        if end.tail_len > 0 {
            end.tail[end.tail_len..].fill(0);
            end.mix(u64::from_le_bytes(end.tail));
        }
        end.mix(end.len);
        end.h
    }
}
