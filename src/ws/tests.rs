//! Conformance of the engine, written from RFC 6455: framing, fragmentation, control frames,
//! close codes, UTF-8, limits, reserved bits — each stream also fed cut at every byte.

use std::ops::ControlFlow;

use proptest::prelude::*;

use super::frame::parse_header;
use super::*;

/// An event as recorded by the test peer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Piece(bool, Vec<u8>, bool, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Failed(u16),
}

/// One side of a connection, fed bytes as reads would deliver them.
struct Peer {
    session: Session,
    scratch: Scratch,
    input: Vec<u8>,
    out: Vec<u8>,
    events: Vec<Ev>,
}

impl Peer {
    fn new(role: Role, config: &Config) -> Peer {
        Peer {
            session: Session::new(role, config),
            scratch: Scratch::new(),
            input: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    fn server() -> Peer {
        Peer::new(Role::Server, &Config::new())
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        let events = &mut self.events;
        let used =
            self.session
                .receive(&self.input, &mut self.scratch, &mut self.out, |e, _, _| {
                    events.push(match e {
                        Event::Message(Message::Text(t)) => Ev::Text(t.into()),
                        Event::Message(Message::Binary(b)) => Ev::Binary(b.into()),
                        Event::Fragment(f) => Ev::Piece(f.text, f.data.into(), f.first, f.last),
                        Event::Ping(p) => Ev::Ping(p.into()),
                        Event::Pong(p) => Ev::Pong(p.into()),
                        Event::Close(c) => Ev::Close(c.code.map(|c| c.0), c.reason.into()),
                        Event::Failed(e) => Ev::Failed(e.code.0),
                    });
                    ControlFlow::Continue(())
                });
        self.input.drain(..used);
    }

    /// The frames written, as (first header byte, payload); server frames are unmasked.
    fn written(&self) -> Vec<(u8, Vec<u8>)> {
        decode(&self.out)
    }

    /// The code of the close frame written, if any.
    fn close_sent(&self) -> Option<Option<u16>> {
        self.written()
            .into_iter()
            .find(|(b0, _)| b0 & 0x0F == 0x8)
            .map(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
    }
}

fn decode(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Ok(Some(h)) = parse_header(out) {
        let end = h.size + h.len as usize;
        let mut payload = out[h.size..end].to_vec();
        if let Some(key) = h.mask {
            frame::apply_mask(&mut payload, key, 0);
        }
        frames.push((out[0], payload));
        out = &out[end..];
    }
    assert!(out.is_empty(), "trailing bytes in the output");
    frames
}

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A frame as a client would send it: `b0` is FIN/RSV/opcode, the payload is masked.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, Some(KEY))
}

fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => v.push(m | n as u8),
        n @ 126..=0xFFFF => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = v.len();
    v.extend_from_slice(payload);
    if let Some(key) = mask {
        v.splice(start..start, key);
        frame::apply_mask(&mut v[start + 4..], key, 0);
    }
    v
}

const TEXT: u8 = 0x81;
const BINARY: u8 = 0x82;
const TEXT_START: u8 = 0x01;
const CONT: u8 = 0x00;
const CONT_FIN: u8 = 0x80;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8A;

/// Feeds `stream` whole, then cut at every position (two reads), then one byte at a time;
/// the events and the output must be the same each time. Returns the whole-stream peer.
fn run(config: &Config, stream: &[u8]) -> Peer {
    let mut whole = Peer::new(Role::Server, config);
    whole.feed(stream);
    let check = |p: &Peer, how: &str| {
        assert_eq!(p.events, whole.events, "events differ when fed {how}");
        assert_eq!(p.out, whole.out, "output differs when fed {how}");
    };
    // Every cut of a short stream; of a long one, the cuts near its frame headers and a
    // sample of the others.
    let cuts: Vec<usize> = if stream.len() <= 4096 {
        (0..stream.len()).collect()
    } else {
        (0..64)
            .chain(stream.len() - 64..stream.len())
            .chain((64..stream.len() - 64).step_by(997))
            .collect()
    };
    for cut in cuts {
        let mut p = Peer::new(Role::Server, config);
        p.feed(&stream[..cut]);
        p.feed(&stream[cut..]);
        check(&p, &format!("cut at {cut}"));
    }
    if stream.len() < 20_000 {
        let mut p = Peer::new(Role::Server, config);
        for b in stream {
            p.feed(std::slice::from_ref(b));
        }
        check(&p, "byte by byte");
    }
    whole
}

fn server(stream: &[u8]) -> Peer {
    run(&Config::new(), stream)
}

#[test]
fn payload_lengths_and_their_encodings() {
    let config = Config::new()
        .max_frame_size(1 << 17)
        .max_message_size(1 << 17);
    for len in [0usize, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut p = Peer::new(Role::Server, &config);
        p.feed(&client_frame(BINARY, &payload));
        assert_eq!(p.events, [Ev::Binary(payload.clone())], "length {len}");
        // The echo uses the shortest length encoding.
        let mut tx = p.session.sender(&mut p.scratch);
        tx.binary(&mut p.out, &payload).unwrap();
        let header = match len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        assert_eq!(p.out.len(), header + len, "length {len}");
        assert_eq!(p.written(), [(BINARY, payload)]);
    }
    // Every cut of a 64-bit-length frame gives the same message.
    let big: Vec<u8> = (0..0x1_0001u32).map(|i| i as u8).collect();
    let p = run(&config, &client_frame(BINARY, &big));
    assert_eq!(p.events, [Ev::Binary(big)]);
}

#[test]
fn lengths_must_use_the_shortest_encoding() {
    // 5 bytes announced with the 16-bit form, then with the 64-bit form.
    for header in [
        &[BINARY, 0x80 | 126, 0, 5][..],
        &[BINARY, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5],
    ] {
        let mut stream = header.to_vec();
        stream.extend_from_slice(&KEY);
        stream.extend_from_slice(b"hello");
        let p = server(&stream);
        assert_eq!(p.events, [Ev::Failed(1002)]);
        assert_eq!(p.close_sent(), Some(Some(1002)));
    }
    let mut top_bit = vec![BINARY, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    top_bit.extend_from_slice(&KEY);
    assert_eq!(server(&top_bit).events, [Ev::Failed(1002)]);
}

#[test]
fn fragmented_messages_with_control_frames_in_between() {
    let mut stream = client_frame(TEXT_START, b"Hel");
    stream.extend(client_frame(PING, b"p1"));
    stream.extend(client_frame(CONT, b""));
    stream.extend(client_frame(PONG, b"unsolicited"));
    stream.extend(client_frame(CONT_FIN, b"lo"));
    stream.extend(client_frame(0x02, &[1, 2]));
    stream.extend(client_frame(CONT_FIN, &[3]));
    let p = server(&stream);
    assert_eq!(
        p.events,
        [
            Ev::Ping(b"p1".to_vec()),
            Ev::Pong(b"unsolicited".to_vec()),
            Ev::Text("Hello".into()),
            Ev::Binary(vec![1, 2, 3]),
        ]
    );
    assert_eq!(p.written(), [(PONG, b"p1".to_vec())]);
}

#[test]
fn fragmentation_errors() {
    // A continuation with nothing to continue; a new message inside a fragmented one.
    assert_eq!(
        server(&client_frame(CONT_FIN, b"x")).events,
        [Ev::Failed(1002)]
    );
    let mut s = client_frame(TEXT_START, b"a");
    s.extend(client_frame(TEXT, b"b"));
    assert_eq!(server(&s).events, [Ev::Failed(1002)]);
    // A fragmented control frame.
    assert_eq!(server(&client_frame(0x09, b"")).events, [Ev::Failed(1002)]);
}

#[test]
fn ping_payload_limit_is_125() {
    let p = server(&client_frame(PING, &[b'x'; 125]));
    assert_eq!(p.events, [Ev::Ping(vec![b'x'; 125])]);
    assert_eq!(p.written(), [(PONG, vec![b'x'; 125])]);
    let p = server(&client_frame(PING, &[b'x'; 126]));
    assert_eq!(p.events, [Ev::Failed(1002)]);
    assert_eq!(p.close_sent(), Some(Some(1002)));
    let mut s = Peer::server();
    let mut tx = s.session.sender(&mut s.scratch);
    assert!(tx.ping(&mut s.out, &[0; 126]).is_err());
}

#[test]
fn close_codes_valid_invalid_reserved() {
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        let p = server(&client_frame(CLOSE, &body));
        assert_eq!(p.events, [Ev::Close(Some(code), "bye".into())], "{code}");
        assert_eq!(p.close_sent(), Some(Some(code)), "echo of {code}");
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let p = server(&client_frame(CLOSE, &code.to_be_bytes()));
        assert_eq!(p.events, [Ev::Failed(1002)], "{code}");
        assert_eq!(p.close_sent(), Some(Some(1002)), "{code}");
    }
    // Empty close: answered with an empty close. One byte: a protocol error. A reason that
    // is not UTF-8: 1007.
    let p = server(&client_frame(CLOSE, b""));
    assert_eq!(
        (p.events.clone(), p.close_sent()),
        (vec![Ev::Close(None, String::new())], Some(None))
    );
    assert_eq!(
        server(&client_frame(CLOSE, &[3])).events,
        [Ev::Failed(1002)]
    );
    assert_eq!(
        server(&client_frame(CLOSE, b"\x03\xe8\xff\xfe")).events,
        [Ev::Failed(1007)]
    );
}

#[test]
fn nothing_is_read_after_the_close() {
    let mut s = client_frame(CLOSE, &1000u16.to_be_bytes());
    s.extend(client_frame(TEXT, b"late"));
    s.extend(b"garbage that is not a frame");
    let p = server(&s);
    assert_eq!(p.events, [Ev::Close(Some(1000), String::new())]);
    assert!(p.session.is_finished());
}

#[test]
fn a_close_started_here_is_not_echoed() {
    let mut p = Peer::server();
    let mut tx = p.session.sender(&mut p.scratch);
    tx.close(&mut p.out, CloseCode::GOING_AWAY, "restart")
        .unwrap();
    assert!(
        tx.text(&mut p.out, "after").is_err(),
        "no data after the close frame"
    );
    assert!(tx.close(&mut p.out, CloseCode::NORMAL, "").is_err());
    // Messages still in flight from the peer are delivered, then its close.
    p.feed(&client_frame(TEXT, b"in flight"));
    p.feed(&client_frame(CLOSE, &1001u16.to_be_bytes()));
    assert_eq!(
        p.events,
        [
            Ev::Text("in flight".into()),
            Ev::Close(Some(1001), String::new())
        ]
    );
    let mut want = 1001u16.to_be_bytes().to_vec();
    want.extend_from_slice(b"restart");
    assert_eq!(p.written(), [(CLOSE, want)], "exactly one close frame");
}

#[test]
fn utf8_split_across_fragments_at_every_byte() {
    let text = "κόσμε €𝄞 z";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let mut s = client_frame(TEXT_START, &bytes[..cut]);
        s.extend(client_frame(CONT_FIN, &bytes[cut..]));
        let mut p = Peer::server();
        p.feed(&s);
        assert_eq!(p.events, [Ev::Text(text.into())], "cut at {cut}");
    }
    // Three fragments, both cuts anywhere.
    for a in 0..=bytes.len() {
        for b in a..=bytes.len() {
            let mut s = client_frame(TEXT_START, &bytes[..a]);
            s.extend(client_frame(CONT, &bytes[a..b]));
            s.extend(client_frame(CONT_FIN, &bytes[b..]));
            let mut p = Peer::server();
            p.feed(&s);
            assert_eq!(p.events, [Ev::Text(text.into())], "cuts {a},{b}");
        }
    }
}

#[test]
fn invalid_utf8_fails_fast() {
    // The bad byte is in the second fragment: the connection fails when it arrives, before
    // the third (Autobahn 6.4.1).
    let mut p = Peer::server();
    p.feed(&client_frame(TEXT_START, "κόσμε".as_bytes()));
    assert!(p.events.is_empty());
    p.feed(&client_frame(CONT, b"\xf4\x90\x80\x80"));
    assert_eq!(p.events, [Ev::Failed(1007)]);
    assert_eq!(p.close_sent(), Some(Some(1007)));
    // In one frame that arrives in pieces, it fails at the piece with the bad byte (6.4.3).
    let frame = client_frame(TEXT, b"valid start \xed\xa0\x80 and more valid text");
    let mut p = Peer::server();
    p.feed(&frame[..10]);
    assert!(p.events.is_empty());
    p.feed(&frame[10..22]);
    assert_eq!(p.events, [Ev::Failed(1007)]);
    // A character left unfinished at the end of the message.
    let mut s = client_frame(TEXT_START, b"ab");
    s.extend(client_frame(CONT_FIN, b"\xe2\x82"));
    assert_eq!(server(&s).events, [Ev::Failed(1007)]);
    assert_eq!(
        server(&client_frame(TEXT, b"\xc0\xaf")).events,
        [Ev::Failed(1007)]
    );
}

#[test]
fn limits_fail_on_the_header() {
    let config = Config::new().max_frame_size(100).max_message_size(150);
    // A frame over the limit: 1009 as soon as its header is in, without its payload.
    let frame = client_frame(BINARY, &[0; 101]);
    let mut p = Peer::new(Role::Server, &config);
    p.feed(&frame[..8]);
    assert_eq!(p.events, [Ev::Failed(1009)]);
    assert_eq!(p.close_sent(), Some(Some(1009)));
    // A message over the limit in frames within it.
    let mut s = client_frame(0x02, &[0; 100]);
    s.extend(client_frame(CONT_FIN, &[0; 51]));
    let p = run(&config, &s);
    assert_eq!(p.events, [Ev::Failed(1009)]);
    let mut s = client_frame(0x02, &[0; 100]);
    s.extend(client_frame(CONT_FIN, &[0; 50]));
    assert_eq!(run(&config, &s).events, [Ev::Binary(vec![0; 150])]);
}

#[test]
fn reserved_bits_and_opcodes() {
    for b0 in [0xC2u8, 0xA2, 0x92, 0xC8 | 0x01, 0xC9] {
        assert_eq!(
            server(&client_frame(b0, b"x")).events,
            [Ev::Failed(1002)],
            "{b0:02x}"
        );
    }
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_eq!(
            server(&client_frame(0x80 | op, b"")).events,
            [Ev::Failed(1002)],
            "{op}"
        );
    }
}

#[test]
fn masking_is_required_from_clients_and_refused_from_servers() {
    let p = server(&raw_frame(TEXT, b"plain", None));
    assert_eq!(p.events, [Ev::Failed(1002)]);
    let mut client = Peer::new(Role::Client, &Config::new());
    client.feed(&raw_frame(TEXT, b"masked", Some(KEY)));
    assert_eq!(client.events, [Ev::Failed(1002)]);
    // A client reads unmasked frames, and masks its own with a fresh key each.
    let mut client = Peer::new(Role::Client, &Config::new());
    client.feed(&raw_frame(TEXT, b"hi", None));
    assert_eq!(client.events, [Ev::Text("hi".into())]);
    let mut tx = client.session.sender(&mut client.scratch);
    tx.text(&mut client.out, "abcd").unwrap();
    tx.text(&mut client.out, "abcd").unwrap();
    let h1 = parse_header(&client.out).unwrap().unwrap();
    let h2 = parse_header(&client.out[h1.size + 4..]).unwrap().unwrap();
    assert!(h1.mask.is_some() && h2.mask.is_some());
    assert_ne!(h1.mask, h2.mask, "a fresh key per frame");
    assert_eq!(
        decode(&client.out),
        [(TEXT, b"abcd".to_vec()), (TEXT, b"abcd".to_vec())]
    );
}

#[test]
fn streaming_delivers_pieces_as_they_arrive() {
    let config = Config::new().streaming(true);
    let mut s = client_frame(TEXT_START, "héllo ".as_bytes());
    s.extend(client_frame(CONT_FIN, "wörld".as_bytes()));
    let mut p = Peer::new(Role::Server, &config);
    p.feed(&s[..9]); // the first frame's header and 3 of its bytes
    assert_eq!(
        p.events,
        [Ev::Piece(true, b"h\xc3\xa9".to_vec(), true, false)]
    );
    p.feed(&s[9..]);
    let pieces: Vec<u8> = p
        .events
        .iter()
        .flat_map(|e| match e {
            Ev::Piece(_, d, _, _) => d.clone(),
            _ => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(pieces, "héllo wörld".as_bytes());
    assert!(matches!(
        p.events.last(),
        Some(Ev::Piece(true, _, false, true))
    ));
    assert!(
        p.session.rx.buffer_capacity() == 0,
        "nothing buffered when streaming"
    );
}

#[test]
fn idle_check_pings_then_gives_up() {
    let mut p = Peer::server();
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Pinged
    );
    assert_eq!(p.written(), [(PING, vec![])]);
    p.feed(&client_frame(PONG, b""));
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Active
    );
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Pinged
    );
    assert_eq!(
        p.session.check_idle(&mut p.scratch, &mut p.out),
        Liveness::Unresponsive
    );
}

#[test]
fn an_idle_session_holds_no_heap_memory() {
    let mut p = Peer::server();
    let mut s = client_frame(0x02, &[1; 1000]);
    s.extend(client_frame(CONT_FIN, &[2; 1000]));
    p.feed(&s[..1500]);
    assert!(p.session.rx.buffer_capacity() > 0);
    p.feed(&s[1500..]);
    assert_eq!(p.events.len(), 1);
    assert_eq!(
        p.session.rx.buffer_capacity(),
        0,
        "the message buffer is freed"
    );
    assert!(
        std::mem::size_of::<Session>() <= 128,
        "{}",
        std::mem::size_of::<Session>()
    );
}

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

fn encode_message(text: bool, payload: &[u8], cuts: &[usize], pings: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut first = true;
    for &cut in cuts {
        let (a, b) = rest.split_at(cut.min(rest.len()));
        let op = if first {
            if text {
                1
            } else {
                2
            }
        } else {
            0
        };
        out.extend(client_frame(op, a));
        if pings {
            out.extend(client_frame(PING, b"k"));
        }
        rest = b;
        first = false;
    }
    let op = if first {
        if text {
            1
        } else {
            2
        }
    } else {
        0
    };
    out.extend(client_frame(0x80 | op, rest));
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
