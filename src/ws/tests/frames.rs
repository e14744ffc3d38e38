//! Frames: payload length encodings, reserved bits and opcodes, masking by direction.

use super::*;

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
fn each_message_has_its_own_length_after_longer_ones() {
    // The loop's scratch buffer keeps the length of the longest payload it unmasked: a
    // shorter message after it must still be exactly its own bytes, of either kind.
    let sizes = [1000usize, 3, 0, 200, 65, 64, 63, 16, 15, 1, 130];
    let mut stream = Vec::new();
    let mut want = Vec::new();
    for (n, &len) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|i| (i * 13 + n * 29) as u8).collect();
        if n % 2 == 0 {
            stream.extend(client_frame(BINARY, &payload));
            want.push(Ev::Binary(payload));
        } else {
            let text: String = payload.iter().map(|b| char::from(b'a' + b % 26)).collect();
            stream.extend(client_frame(TEXT, text.as_bytes()));
            want.push(Ev::Text(text));
        }
    }
    assert_eq!(server(&stream).events, want);
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
