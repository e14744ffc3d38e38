//! Blocking business logic on the worker pool: a line protocol where every request line is
//! handed to a worker thread that sleeps 20 ms (standing in for a database call or a blocking
//! library), then answers with the line upper-cased. Replies come back in request order on
//! each connection, while the event loop keeps serving every other connection.
//!
//! ```text
//! cargo run --release --example blocking -- --addr 127.0.0.1:7001 --loops 2 --workers 16
//! printf 'hello\nworld\n' | nc -q1 127.0.0.1 7001      # HELLO, WORLD
//! ```
//!
//! Options: `--workers N` (default 16), `--max-line BYTES` (default 8192; a longer line closes
//! the connection with a protocol error), `--jobs-per-conn N` (default 16: past that many
//! requests in flight, the connection is not read until one completes).

mod common;

use std::time::Duration;

use common::Args;
use eventide::codec::{Codec, LineCodec};
use eventide::{Action, CloseReason, Conn, Handler, Refusal, Server};

/// How long each request blocks its worker.
const WORK: Duration = Duration::from_millis(20);

struct Blocking {
    codec: LineCodec,
}

/// Per connection: whether the client has finished sending (half-closed its side).
#[derive(Default)]
struct Peer {
    eof: bool,
}

impl Blocking {
    /// Whether no whole request line is left in the input (an unterminated tail at end of
    /// stream is dropped).
    fn no_line_left(&self, conn: &Conn<'_>) -> bool {
        matches!(self.codec.decode(conn.input()), Ok(None))
    }
}

impl Handler for Blocking {
    type State = Peer;
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<Peer, Refusal> {
        Ok(Peer::default())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, peer: &mut Peer) -> Action {
        // When the connection has as many jobs in flight as allowed, the rest of the input
        // stays unconsumed: the loop stops reading it and offers it again once a job is done.
        while conn.can_submit() {
            let (line, used) = match self.codec.decode(conn.input()) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    e.close_connection(conn);
                    break;
                }
            };
            let request = line.to_vec();
            let codec = self.codec;
            let job = move || {
                std::thread::sleep(WORK); // the blocking call this demo is about
                let mut reply = Vec::with_capacity(request.len() + 2);
                codec
                    .encode(&request.to_ascii_uppercase(), &mut reply)
                    .expect("an upper-cased line is a valid line");
                reply
            };
            if let Err(e) = conn.submit(job) {
                conn.close_with(CloseReason::Error(e));
                break;
            }
            conn.consume(used);
        }
        if peer.eof && self.no_line_left(conn) {
            return Action::Close; // after the replies still being worked on
        }
        Action::Continue
    }

    /// A client may send its requests and half-close before reading the replies: answer the
    /// lines still waiting for a free job slot, then close.
    fn on_read_closed(&mut self, conn: &mut Conn<'_>, peer: &mut Peer) -> Action {
        peer.eof = true;
        match self.codec.decode(conn.input()) {
            Ok(None) => Action::Close,
            Ok(Some(_)) => Action::Continue, // on_data takes them as job slots free up
            Err(e) => {
                e.close_connection(conn);
                Action::Continue
            }
        }
    }
}

fn main() {
    let args = Args::parse(
        "127.0.0.1:7001",
        &["workers", "max-line", "jobs-per-conn"],
        &[],
    );
    let workers: usize = args.parsed("workers", 16);
    let max_line: usize = args.parsed("max-line", 8192);
    let jobs_per_conn: usize = args.parsed("jobs-per-conn", 16);
    if workers == 0 {
        eprintln!("--workers must be at least 1");
        std::process::exit(2);
    }
    let signals = common::termination_signals();
    let codec = LineCodec::new(max_line);
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .workers(workers)
            .max_jobs_per_conn(jobs_per_conn)
            .start(move |_| Blocking { codec }),
        "starting the blocking server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}
