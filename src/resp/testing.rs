//! Test and fuzzing support, not part of the stable API: drives a [`RespServer`] over
//! in-memory bytes as a connection's `on_data` would, without sockets.

use super::{Command, Parse, Parser, RespServer, Writer};
use crate::Action;

/// A simulated connection, the protocol adapter's harness over a [`RespServer`]: input is
/// kept while a command is incomplete, as the event loop does, and replies are collected.
pub type Harness<S> = crate::adapter::Harness<RespServer<S>>;

/// Replies to every command with an array of its arguments (and closes on `QUIT`), so two
/// runs that parse the same commands write the same bytes.
pub fn echo_service(cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
    reply.array(cmd.len());
    for a in cmd.args() {
        reply.bulk(a);
    }
    if cmd.is(b"QUIT") {
        Action::Close
    } else {
        Action::Continue
    }
}

type EchoFn = fn(&Command<'_>, &mut Writer<'_>) -> Action;

fn fuzz_parser() -> Parser {
    Parser::new()
        .max_elements(16)
        .max_bulk_size(256)
        .max_inline_size(128)
        .max_command_size(1024)
        .max_depth(4)
}

/// The RESP fuzz target: `data[0]` picks a read size, the rest is the byte stream. Served
/// whole and cut into reads, the replies and the closing must agree, and nothing may stay
/// buffered beyond the command-size limit. Every value parse of the stream must also end in
/// a value, an incomplete or an error without panicking, and re-encoding a parsed value must
/// parse back to the same value.
pub fn fuzz_entry(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut % 64) + 1;
    let server = || RespServer::new(echo_service as EchoFn).parser(fuzz_parser());
    let mut whole = Harness::new(server());
    whole.feed(stream);
    let mut split = Harness::new(server());
    for piece in stream.chunks(cut) {
        split.feed(piece);
        assert!(split.buffered() <= split.buffer_bound());
    }
    assert!(whole.buffered() <= whole.buffer_bound());
    assert!(
        whole.output() == split.output(),
        "whole and split differ:\n{:?}\n---\n{:?}",
        String::from_utf8_lossy(whole.output()),
        String::from_utf8_lossy(split.output())
    );
    assert_eq!(whole.is_closed(), split.is_closed());

    let parser = fuzz_parser();
    if let Ok(Parse::Done(v, used)) = parser.parse_value(stream) {
        assert!(used <= stream.len());
        let mut again = Vec::new();
        Writer::new(&mut again).value(&v);
        match parser.parse_value(&again) {
            Ok(Parse::Done(w, n)) => {
                assert_eq!(n, again.len());
                assert_eq!(v, w);
            }
            other => panic!("re-encoded value does not parse back: {other:?}"),
        }
    }
}
