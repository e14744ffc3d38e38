//! Messages: assembly from fragments, UTF-8 across them, size limits, streaming delivery,
//! and the buffer a message leaves behind.

use super::*;

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
    // The same frame whole in the input (the short path's limits), and one at the limit.
    assert_eq!(run(&config, &frame).events, [Ev::Failed(1009)]);
    let at_limit = client_frame(BINARY, &[7; 100]);
    assert_eq!(run(&config, &at_limit).events, [Ev::Binary(vec![7; 100])]);
    // A whole frame within the frame limit but over the message limit.
    let config_small_message = Config::new().max_frame_size(200).max_message_size(150);
    let frame = client_frame(BINARY, &[0; 151]);
    assert_eq!(
        run(&config_small_message, &frame).events,
        [Ev::Failed(1009)]
    );
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
