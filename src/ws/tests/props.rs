//! Properties over generated streams: any messages in any fragments and reads arrive intact,
//! and garbage never panics.

use proptest::prelude::*;

use super::*;

/// A message and how a client sends it: kind, payload, fragment sizes.
fn arb_message() -> impl Strategy<Value = (bool, Vec<u8>, Vec<usize>)> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(0usize..120, 0..4),
    )
        .prop_map(|(text, mut payload, cuts)| {
            if text {
                payload = String::from_utf8_lossy(&payload).into_owned().into_bytes();
            }
            (text, payload, cuts)
        })
}

/// The frames of one message cut at `cuts` (a ping after each non-final frame if `pings`).
fn encode_message(text: bool, payload: &[u8], cuts: &[usize], pings: bool) -> Vec<u8> {
    let opcode = if text { 0x1 } else { 0x2 };
    let mut out = Vec::new();
    let mut rest = payload;
    for (i, &cut) in cuts.iter().enumerate() {
        let (frame, after) = rest.split_at(cut.min(rest.len()));
        out.extend(client_frame(if i == 0 { opcode } else { CONT }, frame));
        if pings {
            out.extend(client_frame(PING, b"k"));
        }
        rest = after;
    }
    let last = if cuts.is_empty() { opcode } else { CONT };
    out.extend(client_frame(CONT_FIN | last, rest));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of messages, any fragmentation, pings in between, read in any pieces:
    /// every message arrives intact and in order, every ping answered.
    #[test]
    fn any_stream_in_any_pieces(
        msgs in proptest::collection::vec(arb_message(), 1..6),
        pings in any::<bool>(),
        reads in proptest::collection::vec(1usize..200, 1..40),
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (text, payload, cuts) in &msgs {
            stream.extend(encode_message(*text, payload, cuts, pings));
            if pings {
                want.extend(std::iter::repeat_n(Ev::Ping(b"k".to_vec()), cuts.len()));
            }
            want.push(if *text {
                Ev::Text(String::from_utf8(payload.clone()).unwrap())
            } else {
                Ev::Binary(payload.clone())
            });
        }
        let mut p = Peer::server();
        let mut pos = 0;
        for r in reads.iter().cycle() {
            if pos >= stream.len() {
                break;
            }
            let end = (pos + r).min(stream.len());
            p.feed(&stream[pos..end]);
            pos = end;
        }
        prop_assert_eq!(&p.events, &want);
        prop_assert!(p.input.is_empty());
        let pongs = p.written().iter().filter(|(b0, _)| *b0 == PONG).count();
        prop_assert_eq!(pongs, want.iter().filter(|e| matches!(e, Ev::Ping(_))).count());
    }

    /// Bytes that are not a valid stream never panic, and end in at most one close frame.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut p = Peer::server();
        p.feed(&bytes);
        let closes = p.written().iter().filter(|(b0, _)| *b0 == CLOSE).count();
        prop_assert!(closes <= 1);
        prop_assert!(p.events.iter().filter(|e| matches!(e, Ev::Failed(_) | Ev::Close(..))).count() <= 1);
    }
}
