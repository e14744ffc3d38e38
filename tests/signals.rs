//! Stopping on signals: the README's first example stops on SIGINT with exit status 0, and
//! in a server of this process a second SIGTERM cuts a graceful stop short.

mod demo_util;
mod util;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use demo_util::{catches, Demo};
use eventide::{Server, ShutdownSignals};
use util::{wait_until, Echo, TIMEOUT};

/// The README's first Rust block is `examples/readme_echo.rs`, character for character.
#[test]
fn the_readme_example_is_the_example_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme
        .split("```rust")
        .nth(1)
        .and_then(|b| b.split_once('\n'))
        .and_then(|(_, rest)| rest.split("```").next())
        .expect("a rust block in the README");
    let file = std::fs::read_to_string(format!("{root}/examples/readme_echo.rs")).unwrap();
    assert_eq!(block, file, "README.md and examples/readme_echo.rs differ");
}

#[test]
fn the_readme_example_stops_on_sigint_with_exit_0() {
    let Some(demo) = Demo::start("readme_echo", &["--addr", "127.0.0.1:0"]) else {
        return;
    };
    let mut s = util::connect(demo.tcp());
    assert_eq!(util::roundtrip(&mut s, b"hello"), b"hello");
    // The handlers are installed by `run_until_signal`, just after the line is printed: a
    // SIGINT before that would take the default action, which is not what is tested here.
    wait_until("the example catches SIGINT", || catches(demo.pid(), 2));
    demo.stop("-INT");
    assert_eq!(
        util::read_until_closed(&mut s).0,
        b"",
        "the connection was closed"
    );
}

/// A graceful stop that would wait an hour for a client that never reads is cut short by a
/// second SIGTERM. (The only test of this binary that signals the process itself.)
#[test]
fn a_second_sigterm_stops_at_once() {
    let signals = ShutdownSignals::install().unwrap();
    let (factory, _closed) = Echo::factory();
    let hour = Duration::from_secs(3600);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .high_water(64 * 1024, 16 * 1024)
        .stop_timeout(hour)
        .flush_timeout(hour)
        .start(factory)
        .unwrap();
    let (addr, stats, stop) = (
        server.local_addr(),
        server.stats_handle(),
        server.stop_handle(),
    );
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.run_until(signals));
    });
    // A client that sends and never reads: the echo backs up past the high-water mark.
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        while s.write_all(&chunk).is_ok() {} // ends when the server closes the connection
    });
    wait_until("output backs up", || {
        stats.stats().total().pending_output >= 64 * 1024
    });
    let me = std::process::id().to_string();
    let kill = || {
        assert!(Command::new("kill")
            .args(["-TERM", &me])
            .status()
            .unwrap()
            .success())
    };
    kill();
    wait_until("the first SIGTERM starts a graceful stop", || {
        stop.is_stopping()
    });
    assert!(
        done.try_recv().is_err(),
        "the graceful stop waits for the client"
    );
    kill();
    let result = done
        .recv_timeout(TIMEOUT)
        .expect("the second SIGTERM did not stop the server");
    result.unwrap();
    writer.join().unwrap();
}
