//! Unit tests of the codecs: stream cuts, limits, zero-length frames, round trips.

use super::line::find_byte;
use super::*;

/// What decoding a stream produced: the frames, then the error that stopped it, if any.
type Outcome = (Vec<Vec<u8>>, Option<FrameError>);

/// Feeds `chunks` one after another into an input buffer the way the event loop does (bytes
/// are appended, whole frames consumed from the front, the rest kept), decoding after each.
fn feed<C: Codec>(codec: &C, chunks: &[&[u8]]) -> Outcome {
    let mut input = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        loop {
            match codec.decode(&input) {
                Ok(Some((frame, used))) => {
                    assert!(
                        used >= frame.len() && used <= input.len(),
                        "consumed out of range"
                    );
                    frames.push(frame.to_vec());
                    input.drain(..used);
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Cuts `stream` at every pair of byte boundaries (so every single cut too, and the empty
/// pieces), and into single bytes: each must decode exactly as the whole stream does.
fn assert_cut_invariant<C: Codec>(codec: &C, stream: &[u8]) -> Outcome {
    let whole = feed(codec, &[stream]);
    let n = stream.len();
    for i in 0..=n {
        for j in i..=n {
            let got = feed(codec, &[&stream[..i], &stream[i..j], &stream[j..]]);
            assert_eq!(got, whole, "cut at {i} and {j} of {stream:?}");
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(feed(codec, &bytes), whole, "byte by byte: {stream:?}");
    whole
}

fn frames(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|f| f.to_vec()).collect()
}

fn all_length_codecs(max: usize) -> Vec<LengthCodec> {
    let mut all = Vec::new();
    for width in [
        PrefixWidth::U8,
        PrefixWidth::U16,
        PrefixWidth::U32,
        PrefixWidth::U64,
    ] {
        for endian in [Endian::Big, Endian::Little] {
            for includes in [false, true] {
                all.push(
                    LengthCodec::new(width, max)
                        .endian(endian)
                        .length_includes_prefix(includes),
                );
            }
        }
    }
    all
}

#[test]
fn line_stream_cut_anywhere_decodes_the_same() {
    let codec = LineCodec::new(8);
    let stream = b"hello\nworld\r\n\n\r\na\rb\n12345678\n12345678\r\n\r\r\nlast";
    let (got, err) = assert_cut_invariant(&codec, stream);
    assert_eq!(err, None);
    assert_eq!(
        got,
        frames(&[
            b"hello",
            b"world",
            b"",
            b"",
            b"a\rb",
            b"12345678",
            b"12345678",
            b"\r"
        ])
    );

    // Without stripping, `\r` is data.
    let raw = LineCodec::new(9).strip_cr(false);
    let (got, err) = assert_cut_invariant(&raw, b"a\r\n\r\nxy\n");
    assert_eq!(err, None);
    assert_eq!(got, frames(&[b"a\r", b"\r", b"xy"]));
}

#[test]
fn line_stream_ending_in_an_oversize_line_fails_the_same_at_every_cut() {
    let codec = LineCodec::new(4);
    for tail in [
        &b"abcde"[..],
        b"abcde\n",
        b"abcd\rx",
        b"abcde\r\n",
        b"abcd\r\r\n",
    ] {
        let stream = [&b"ok\n\r\n1234\r\n"[..], tail].concat();
        let (got, err) = assert_cut_invariant(&codec, &stream);
        assert_eq!(got, frames(&[b"ok", b"", b"1234"]), "tail {tail:?}");
        assert_eq!(
            err,
            Some(FrameError::LineTooLong { max: 4 }),
            "tail {tail:?}"
        );
    }
}

#[test]
fn length_stream_cut_anywhere_decodes_the_same() {
    let payloads: [&[u8]; 6] = [b"", b"a", b"hello", b"", &[0, 10, 13, 255], b"xyz"];
    for codec in all_length_codecs(16) {
        let mut stream = Vec::new();
        for p in payloads {
            codec.encode(p, &mut stream).unwrap();
        }
        let complete = stream.len();
        // A last frame cut short: announced, partly there.
        codec.encode(b"0123456789", &mut stream).unwrap();
        stream.truncate(stream.len() - 3);
        let (got, err) = assert_cut_invariant(&codec, &stream);
        assert_eq!(err, None, "{codec:?}");
        assert_eq!(got, frames(&payloads), "{codec:?}");
        assert!(stream.len() > complete);
    }
}

#[test]
fn length_stream_ending_in_an_oversize_prefix_fails_the_same_at_every_cut() {
    for codec in all_length_codecs(16) {
        let mut stream = Vec::new();
        codec.encode(b"fine", &mut stream).unwrap();
        codec.encode(b"", &mut stream).unwrap();
        // Announce 17 bytes (max + 1), send no body at all.
        let big = [0u8; 17];
        let mut oversize = Vec::new();
        LengthCodec::new(codec.width(), 17)
            .endian(codec.byte_order())
            .length_includes_prefix(codec.includes_prefix())
            .encode(&big, &mut oversize)
            .unwrap();
        stream.extend_from_slice(&oversize[..codec.width().bytes()]);
        let (got, err) = assert_cut_invariant(&codec, &stream);
        assert_eq!(got, frames(&[b"fine", b""]), "{codec:?}");
        assert_eq!(
            err,
            Some(FrameError::FrameTooLong { len: 17, max: 16 }),
            "{codec:?}"
        );
    }
}

#[test]
fn oversize_line_is_detected_without_waiting_for_the_newline() {
    let codec = LineCodec::new(4);
    assert_eq!(
        codec.decode(b"abcd").unwrap(),
        None,
        "exactly max, newline to come"
    );
    assert_eq!(
        codec.decode(b"abcd\r").unwrap(),
        None,
        "max then \\r: \\n may follow"
    );
    assert_eq!(
        codec.decode(b"abcde"),
        Err(FrameError::LineTooLong { max: 4 })
    );
    assert_eq!(
        codec.decode(b"abcd\rx"),
        Err(FrameError::LineTooLong { max: 4 })
    );
    // Without stripping, the `\r` is the fifth byte of the line.
    let raw = LineCodec::new(4).strip_cr(false);
    assert_eq!(
        raw.decode(b"abcd\r"),
        Err(FrameError::LineTooLong { max: 4 })
    );
    // A huge buffer is rejected after looking at max + 2 bytes only.
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    assert_eq!(codec.decode(&huge), Err(FrameError::LineTooLong { max: 4 }));
}

#[test]
fn oversize_length_prefix_is_detected_without_waiting_for_the_body() {
    let codec = LengthCodec::new(PrefixWidth::U32, 1000);
    assert_eq!(codec.decode(&[0, 0, 3]).unwrap(), None, "prefix incomplete");
    assert_eq!(
        codec.decode(&[0, 0, 3, 232]).unwrap(),
        None,
        "exactly max, body to come"
    );
    assert_eq!(
        codec.decode(&[0, 0, 3, 233]),
        Err(FrameError::FrameTooLong {
            len: 1001,
            max: 1000
        })
    );
    assert_eq!(
        codec.decode(&[255, 255, 255, 255]),
        Err(FrameError::FrameTooLong {
            len: u32::MAX as u64,
            max: 1000
        })
    );
    let huge = LengthCodec::new(PrefixWidth::U64, usize::MAX);
    assert_eq!(
        huge.decode(&[255; 8]).unwrap_err(),
        FrameError::FrameTooLong {
            len: u64::MAX,
            max: huge.max_frame()
        }
    );
}

#[test]
fn zero_length_frames() {
    let line = LineCodec::new(0);
    assert_eq!(line.decode(b"\n").unwrap(), Some((&b""[..], 1)));
    assert_eq!(line.decode(b"\r\n").unwrap(), Some((&b""[..], 2)));
    assert_eq!(line.decode(b"\r").unwrap(), None);
    assert_eq!(line.decode(b"x"), Err(FrameError::LineTooLong { max: 0 }));
    let mut out = Vec::new();
    line.encode(b"", &mut out).unwrap();
    assert_eq!(out, b"\n");

    for codec in all_length_codecs(0) {
        let mut out = Vec::new();
        codec.encode(b"", &mut out).unwrap();
        let w = codec.width().bytes();
        assert_eq!(out.len(), w);
        assert_eq!(
            codec.decode(&out).unwrap(),
            Some((&b""[..], w)),
            "{codec:?}"
        );
        assert!(codec.encode(b"x", &mut out).is_err());
    }
}

#[test]
fn a_self_counting_prefix_smaller_than_itself_is_an_error() {
    let codec = LengthCodec::new(PrefixWidth::U16, 100).length_includes_prefix(true);
    assert_eq!(codec.decode(&[0, 2]).unwrap(), Some((&b""[..], 2)));
    assert_eq!(
        codec.decode(&[0, 1]),
        Err(FrameError::LengthTooSmall { len: 1, prefix: 2 })
    );
    assert_eq!(
        codec.decode(&[0, 0]),
        Err(FrameError::LengthTooSmall { len: 0, prefix: 2 })
    );
}

#[test]
fn exactly_max_is_fine_and_max_plus_one_is_an_error() {
    let max = 300;
    let ok = vec![b'a'; max];
    let over = vec![b'a'; max + 1];

    for codec in [LineCodec::new(max), LineCodec::new(max).strip_cr(false)] {
        let mut out = Vec::new();
        codec.encode(&ok, &mut out).unwrap();
        assert_eq!(codec.decode(&out).unwrap(), Some((&ok[..], max + 1)));
        let crlf = [&ok[..], b"\r\n"].concat();
        let expect = if codec.strips_cr() { max } else { max + 1 };
        match codec.decode(&crlf) {
            Ok(Some((line, _))) => assert_eq!(line.len(), expect),
            Err(FrameError::LineTooLong { .. }) => assert!(!codec.strips_cr()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            codec.encode(&over, &mut Vec::new()),
            Err(FrameError::FrameTooLong {
                len: max as u64 + 1,
                max
            })
        );
        let over_line = [&over[..], b"\n"].concat();
        assert_eq!(
            codec.decode(&over_line),
            Err(FrameError::LineTooLong { max })
        );
    }

    for codec in all_length_codecs(max) {
        if codec.max_frame() < max {
            continue; // a one-byte prefix cannot say 300
        }
        let mut out = Vec::new();
        codec.encode(&ok, &mut out).unwrap();
        let w = codec.width().bytes();
        assert_eq!(
            codec.decode(&out).unwrap(),
            Some((&ok[..], w + max)),
            "{codec:?}"
        );
        let too_long = FrameError::FrameTooLong {
            len: max as u64 + 1,
            max,
        };
        assert_eq!(codec.encode(&over, &mut out), Err(too_long.clone()));
        let mut wide = Vec::new();
        LengthCodec::new(codec.width(), max + 1)
            .endian(codec.byte_order())
            .length_includes_prefix(codec.includes_prefix())
            .encode(&over, &mut wide)
            .unwrap();
        assert_eq!(codec.decode(&wide), Err(too_long), "{codec:?}");
    }
}

#[test]
fn max_frame_is_capped_by_the_prefix() {
    assert_eq!(LengthCodec::new(PrefixWidth::U8, 1000).max_frame(), 255);
    let counted = LengthCodec::new(PrefixWidth::U8, 1000).length_includes_prefix(true);
    assert_eq!(counted.max_frame(), 254);
    assert_eq!(
        LengthCodec::new(PrefixWidth::U16, 1 << 20).max_frame(),
        65_535
    );
    assert_eq!(LengthCodec::new(PrefixWidth::U32, 10).max_frame(), 10);
    let mut out = Vec::new();
    counted.encode(&[7; 254], &mut out).unwrap();
    assert_eq!(out[0], 255);
    assert!(counted.encode(&[7; 255], &mut Vec::new()).is_err());
}

#[test]
fn prefix_byte_order() {
    let payload = vec![0u8; 0x0102];
    let expect: [(PrefixWidth, Endian, &[u8]); 6] = [
        (PrefixWidth::U16, Endian::Big, &[1, 2]),
        (PrefixWidth::U16, Endian::Little, &[2, 1]),
        (PrefixWidth::U32, Endian::Big, &[0, 0, 1, 2]),
        (PrefixWidth::U32, Endian::Little, &[2, 1, 0, 0]),
        (PrefixWidth::U64, Endian::Big, &[0, 0, 0, 0, 0, 0, 1, 2]),
        (PrefixWidth::U64, Endian::Little, &[2, 1, 0, 0, 0, 0, 0, 0]),
    ];
    for (width, endian, prefix) in expect {
        let codec = LengthCodec::new(width, 1 << 16).endian(endian);
        let mut out = Vec::new();
        codec.encode(&payload, &mut out).unwrap();
        assert_eq!(&out[..prefix.len()], prefix, "{width:?} {endian:?}");
        assert_eq!(out.len(), prefix.len() + payload.len());
    }
    let one = LengthCodec::new(PrefixWidth::U8, 10).endian(Endian::Little);
    assert_eq!(
        one.decode(&[3, b'a', b'b', b'c']).unwrap(),
        Some((&b"abc"[..], 4))
    );
}

#[test]
fn encode_then_decode_round_trips() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let lines = [LineCodec::new(64), LineCodec::new(64).strip_cr(false)];
    for _ in 0..2000 {
        let len = (next() % 65) as usize;
        // Bytes biased toward `\r`, `\n` and 0 to hit the edge cases.
        let payload: Vec<u8> = (0..len)
            .map(|_| match next() % 8 {
                0 => b'\r',
                1 => b'\n',
                2 => 0,
                _ => next() as u8,
            })
            .collect();
        for codec in &lines {
            let mut out = Vec::new();
            match codec.encode(&payload, &mut out) {
                Ok(()) => {
                    assert_eq!(codec.decode(&out).unwrap(), Some((&payload[..], out.len())));
                }
                Err(e) => {
                    assert_eq!(e, FrameError::NewlineInLine);
                    assert!(payload.contains(&b'\n'));
                    assert!(out.is_empty(), "nothing written on error");
                }
            }
        }
        for codec in all_length_codecs(64) {
            let mut out = Vec::new();
            codec.encode(&payload, &mut out).unwrap();
            assert_eq!(codec.decode(&out).unwrap(), Some((&payload[..], out.len())));
        }
    }
}

#[test]
fn line_encoder_keeps_a_trailing_cr_through_a_stripping_decoder() {
    let codec = LineCodec::new(10);
    let mut out = Vec::new();
    codec.encode(b"abc\r", &mut out).unwrap();
    assert_eq!(out, b"abc\r\r\n");
    assert_eq!(codec.decode(&out).unwrap(), Some((&b"abc\r"[..], 6)));
    assert_eq!(
        codec.encode(b"a\nb", &mut out),
        Err(FrameError::NewlineInLine)
    );
    let mut out = Vec::new();
    codec.strip_cr(false).encode(b"abc\r", &mut out).unwrap();
    assert_eq!(out, b"abc\r\n");
}

#[test]
fn find_byte_matches_a_plain_search() {
    let mut seed = 7u64;
    for len in 0..80 {
        for _ in 0..50 {
            let hay: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Few distinct values, so the needle shows up at varied places.
                    [b'\n', 0, 0x8a, 0x0b, 0x09, 0xff][(seed >> 33) as usize % 6]
                })
                .collect();
            for needle in [b'\n', 0, 0xff] {
                let plain = hay.iter().position(|&b| b == needle);
                assert_eq!(find_byte(&hay, needle), plain, "{hay:?} {needle}");
            }
        }
    }
}

#[test]
fn errors_describe_themselves_and_become_protocol_close_reasons() {
    let e = FrameError::LineTooLong { max: 8192 };
    assert_eq!(e.to_string(), "line longer than the maximum of 8192 bytes");
    let reason: CloseReason = e.into();
    assert_eq!(reason.as_str(), "protocol");
    assert!(matches!(reason, CloseReason::Protocol(ref why) if why.contains("8192")));
    let e = FrameError::FrameTooLong {
        len: 70_000,
        max: 65_536,
    };
    assert_eq!(
        e.to_string(),
        "frame of 70000 bytes exceeds the maximum of 65536 bytes"
    );
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
}
