//! No descriptor leaks. In a test binary of its own, so no other test opens descriptors
//! while this one counts them.

mod util;

use std::io::Write;
use std::time::Duration;

use eventide::Server;
use util::{connect, read_until_closed, roundtrip, Echo};

#[test]
fn connect_close_cycles_leak_nothing() {
    const CYCLES: u64 = 2000;
    let before_server = util::open_fds();
    let (factory, _closed) = Echo::factory();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(factory)
        .unwrap();
    let addr = server.local_addr();
    let baseline = util::open_fds();
    for i in 0..CYCLES {
        let mut s = connect(addr);
        match i % 4 {
            // Connect and go away without a word.
            0 => drop(s),
            // A round trip, then an orderly close by the client.
            1 => {
                assert_eq!(roundtrip(&mut s, b"ping"), b"ping");
                drop(s);
            }
            // A round trip, then a reset.
            2 => {
                assert_eq!(roundtrip(&mut s, b"ping"), b"ping");
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(s);
            }
            // The server closes first (and lingers until the client closes).
            _ => {
                s.write_all(b"QUIT").unwrap();
                let (got, _) = read_until_closed(&mut s);
                assert_eq!(got, b"QUIT");
                drop(s);
            }
        }
    }
    util::wait_until("every connection is closed", || {
        let t = server.stats().total();
        t.closed == CYCLES && t.connections == 0
    });
    assert_eq!(
        util::open_fds(),
        baseline,
        "descriptors leaked while serving"
    );
    server.stop();
    server.join().unwrap();
    assert_eq!(
        util::open_fds(),
        before_server,
        "descriptors leaked by the server itself"
    );
}
