//! `Conn::write_vectored` over a real socket: its parts arrive whole and in order whether they
//! fit the loop's staging buffer (the one-check path), pass its limit (sent at once), or
//! follow output the kernel has not taken yet (queued behind it), and interleaved with plain
//! writes.

mod util;

use std::io::{Read, Write};

use eventide::{Action, Conn, Handler, Refusal, Server};
use util::connect;

/// Bytes `0, 1, ..., 250, 0, ...` shifted by `seed`, so misplaced pieces show.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// For each byte `c` read: `c = b's'` writes small parts, `b'l'` parts larger than staging,
/// `b'q'` a large answer the kernel cannot take at once followed by small parts (queued).
struct Vectored;

/// What [`Vectored`] answers to `command`.
fn answer(command: u8) -> Vec<Vec<u8>> {
    match command {
        b's' => vec![b"<".to_vec(), pattern(500, 1), Vec::new(), b">".to_vec()],
        b'l' => vec![pattern(40_000, 2), pattern(40_000, 3)],
        _ => vec![
            pattern(4 << 20, 4),
            b"[".to_vec(),
            pattern(100, 5),
            b"]".to_vec(),
        ],
    }
}

impl Handler for Vectored {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        let input = conn.input().to_vec();
        conn.consume(input.len());
        for command in input {
            conn.write(b"|");
            let parts = answer(command);
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            if !conn.write_vectored(&slices) {
                return Action::Close;
            }
        }
        Action::Continue
    }
}

#[test]
fn parts_arrive_in_order_staged_sent_at_once_or_queued() {
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .start(|_| Vectored)
        .expect("start");
    let mut client = connect(server.local_addr());
    let commands = b"sslsqs";
    let mut expect = Vec::new();
    for &c in commands {
        expect.extend_from_slice(b"|");
        expect.extend(answer(c).concat());
    }
    client.write_all(commands).unwrap();
    let mut got = vec![0u8; expect.len()];
    client
        .read_exact(&mut got)
        .expect("every part of every answer");
    let first_bad = got.iter().zip(&expect).position(|(a, b)| a != b);
    assert_eq!(
        first_bad, None,
        "the answers differ from byte {first_bad:?}"
    );
    server.stop();
    server.join().unwrap();
}
