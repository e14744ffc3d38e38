//! UTF-8 validation of a text message that arrives in pieces (fragments, partial frames,
//! inflated output), failing at the first byte that cannot begin or continue a character —
//! not at the end of the message, which is what Autobahn's "fail fast" cases expect.

/// The validation state between pieces: the first bytes of a character cut by a piece
/// boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Utf8 {
    pending: [u8; 4],
    len: u8,
}

/// A byte that is not valid UTF-8 where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Invalid;

impl Utf8 {
    /// Checks the next piece. Bytes after an error are not looked at.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            // Complete the cut character one byte at a time; the standard validator tells an
            // impossible prefix (an error with a length) from one that only needs more bytes.
            while let Some((&b, rest)) = bytes.split_first() {
                self.pending[usize::from(self.len)] = b;
                self.len += 1;
                bytes = rest;
                match std::str::from_utf8(&self.pending[..usize::from(self.len)]) {
                    Ok(_) => {
                        self.len = 0;
                        break;
                    }
                    Err(e) if e.error_len().is_some() => return Err(Invalid),
                    Err(_) => {}
                }
            }
            if self.len > 0 {
                return Ok(()); // the piece ended inside the character
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Invalid),
            Err(e) => {
                // The piece ends with a valid prefix of a character (at most 3 bytes).
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Whether the text so far ends on a character boundary (required at the end of the
    /// message).
    pub(crate) fn is_complete(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Validates `bytes` cut at every pair of positions; the verdict (and the position of a
    /// failure) must not depend on the cuts.
    fn check_all_cuts(bytes: &[u8]) {
        let whole = std::str::from_utf8(bytes);
        // The first byte after which the text can no longer be a prefix of valid UTF-8.
        let fail_at = (0..bytes.len())
            .find(|&i| std::str::from_utf8(&bytes[..=i]).is_err_and(|e| e.error_len().is_some()));
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8::default();
                let mut failed_in = None;
                for (i, piece) in [&bytes[..a], &bytes[a..b], &bytes[b..]].iter().enumerate() {
                    if v.feed(piece).is_err() {
                        failed_in = Some(i);
                        break;
                    }
                }
                match fail_at {
                    Some(pos) => {
                        // It fails in the piece that holds the first bad byte.
                        let piece = if pos < a {
                            0
                        } else if pos < b {
                            1
                        } else {
                            2
                        };
                        assert_eq!(failed_in, Some(piece), "{bytes:x?} cut {a},{b}");
                    }
                    None => {
                        assert_eq!(failed_in, None, "{bytes:x?} cut {a},{b}");
                        assert_eq!(v.is_complete(), whole.is_ok(), "{bytes:x?} cut {a},{b}");
                    }
                }
            }
        }
    }

    #[test]
    fn valid_text_split_anywhere() {
        check_all_cuts("κόσμε".as_bytes());
        check_all_cuts("a€b𝄞c\u{10FFFF}".as_bytes());
        check_all_cuts(b"");
    }

    #[test]
    fn invalid_text_fails_at_the_first_bad_byte() {
        // Autobahn 6.x flavours: overlong forms, surrogates, beyond U+10FFFF, stray
        // continuation bytes, truncated characters followed by ASCII.
        for bad in [
            &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            b"\xc0\x80",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf4\x90\x80\x80",
            b"\xf5",
            b"ab\x80cd",
            b"\xe2\x82x",
            b"\xed\xbf\xbf",
            b"\xef\xbf",
        ] {
            check_all_cuts(bad);
        }
    }

    #[test]
    fn exhaustive_two_byte_prefixes_agree_with_std() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let bytes = [a, b];
                let mut v = Utf8::default();
                let split = v.feed(&[a]).and_then(|()| v.feed(&[b]));
                let std_verdict = match std::str::from_utf8(&bytes) {
                    Ok(_) => Ok(()),
                    Err(e) if e.error_len().is_some() => Err(Invalid),
                    Err(_) => Ok(()),
                };
                assert_eq!(split, std_verdict, "{a:02x} {b:02x}");
            }
        }
    }
}
