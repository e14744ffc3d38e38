//! `ConnId`'s numeric form: unique across the connections of every loop, and `from_u64` and
//! `Display` agree with it.

mod util;

use std::collections::HashSet;
use std::io::Write;

use eventide::{ConnId, Server};
use util::{connect, read_until_closed, Echo, TIMEOUT};

#[test]
fn numeric_ids_are_unique_and_round_trip() {
    let (factory, closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(factory)
        .unwrap();
    const N: usize = 64;
    for _ in 0..N {
        let mut s = connect(server.local_addr());
        s.write_all(b"QUIT").unwrap();
        let (back, _) = read_until_closed(&mut s);
        assert_eq!(back, b"QUIT");
    }
    let mut seen = HashSet::new();
    let mut loops = HashSet::new();
    for _ in 0..N {
        let id = closed.recv_timeout(TIMEOUT).expect("a close report").id;
        let n = id.as_u64();
        assert!(seen.insert(n), "{id} repeated");
        loops.insert(id.loop_index());
        assert_eq!(ConnId::from_u64(n), Some(id));
        assert_eq!(n >> 32, id.loop_index() as u64);
        assert_eq!(id.to_string(), format!("{}:{}", n >> 32, n & 0xffff_ffff));
    }
    assert_eq!(loops.len(), 2, "round-robin spreads over both loops");
    assert_eq!(ConnId::from_u64(1 << 48), None);
}
