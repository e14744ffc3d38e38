//! Property tests of the RESP parser and server path (no sockets: commands are fed over
//! in-memory reads exactly as a connection's `on_data` sees them), and the replay of the fuzz
//! corpus.
//!
//! * Any valid stream of commands — arrays of bulk strings and inline lines (quoted with
//!   escapes where their arguments need it) — cut into reads at arbitrary byte boundaries
//!   parses to exactly the commands it was built from, with the same replies as when
//!   delivered whole.
//! * Any value tree written by the `Writer` parses back to itself, and every strict prefix of
//!   it is incomplete (never an error, never a different value).
//! * Arbitrary bytes never panic, never leave more buffered than the command-size limit, and
//!   give the same replies however they are cut.

#![cfg(feature = "resp")]

use std::sync::{Arc, Mutex};

use eventide::resp::testing::{echo_service, fuzz_entry, Harness};
use eventide::resp::{Command, Parse, Parser, RespServer, Service, Value, Writer};
use eventide::Action;
use proptest::prelude::*;

/// Records every command and echoes it.
struct Recorder(Arc<Mutex<Vec<Vec<Vec<u8>>>>>);

impl Service for Recorder {
    fn call(&mut self, cmd: &Command<'_>, reply: &mut Writer<'_>) -> Action {
        self.0
            .lock()
            .unwrap()
            .push(cmd.args().map(<[u8]>::to_vec).collect());
        echo_service(cmd, reply)
    }
}

#[derive(Clone, Debug)]
struct Cmd {
    args: Vec<Vec<u8>>,
    inline: bool,
}

impl Cmd {
    fn encode(&self, out: &mut Vec<u8>) {
        if !self.inline {
            out.extend_from_slice(format!("*{}\r\n", self.args.len()).as_bytes());
            for a in &self.args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
            return;
        }
        // Inline: as they are where that says the same (no blanks, quotes or NUL, not empty,
        // not starting with '*'), else every argument in double quotes with escapes.
        let plain = self.args[0][0] != b'*'
            && self
                .args
                .iter()
                .all(|a| !a.is_empty() && !a.iter().any(|b| b" \t\r\n\x0b\x0c\0\"'".contains(b)));
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            if plain {
                out.extend_from_slice(a);
                continue;
            }
            out.push(b'"');
            for &b in a {
                match b {
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    b' '..=b'~' => out.push(b),
                    _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            out.push(b'"');
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn command() -> impl Strategy<Value = Cmd> {
    let name = "[A-Za-z]{1,10}".prop_map(String::into_bytes);
    let arg = prop_oneof![
        "[a-z0-9:_-]{1,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ];
    (name, prop::collection::vec(arg, 0..6), any::<bool>()).prop_map(|(name, rest, inline)| {
        let mut args = vec![name];
        args.extend(rest);
        Cmd { args, inline }
    })
}

fn value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        "[ -~]{0,20}".prop_map(|s| Value::Simple(Box::leak(s.into_bytes().into_boxed_slice()))),
        "[ -~]{0,20}".prop_map(|s| Value::Error(Box::leak(s.into_bytes().into_boxed_slice()))),
        any::<i64>().prop_map(Value::Integer),
        prop::collection::vec(any::<u8>(), 0..30)
            .prop_map(|b| Value::Bulk(Box::leak(b.into_boxed_slice()))),
        Just(Value::Nil),
        Just(Value::NilArray),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|r| r % (len + 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn feed_cut<S: Service>(h: &mut Harness<S>, stream: &[u8], cuts: &[usize]) {
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        h.feed(&stream[at..c]);
        assert!(h.buffered() <= h.buffer_bound());
        at = c;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn valid_command_streams_parse_the_same_however_they_are_cut(
        cmds in prop::collection::vec(command(), 1..12),
        raw_cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut stream = Vec::new();
        for c in &cmds {
            c.encode(&mut stream);
        }
        let expected: Vec<Vec<Vec<u8>>> = cmds.iter().map(|c| c.args.clone()).collect();

        let whole_seen = Arc::new(Mutex::new(Vec::new()));
        let mut whole = Harness::new(RespServer::new(Recorder(whole_seen.clone())));
        whole.feed(&stream);
        let split_seen = Arc::new(Mutex::new(Vec::new()));
        let mut split = Harness::new(RespServer::new(Recorder(split_seen.clone())));
        feed_cut(&mut split, &stream, &cuts(stream.len(), &raw_cuts));

        prop_assert_eq!(&*whole_seen.lock().unwrap(), &expected);
        prop_assert_eq!(&*split_seen.lock().unwrap(), &expected);
        prop_assert_eq!(whole.output(), split.output());
        prop_assert_eq!(split.buffered(), 0);
    }

    #[test]
    fn written_values_parse_back_and_their_prefixes_are_incomplete(v in value()) {
        let mut bytes = Vec::new();
        Writer::new(&mut bytes).value(&v);
        let p = Parser::new();
        prop_assert_eq!(p.parse_value(&bytes), Ok(Parse::Done(v.clone(), bytes.len())));
        for cut in 0..bytes.len() {
            match p.parse_value(&bytes[..cut]) {
                Ok(Parse::Incomplete(need)) => prop_assert!(need > cut && need <= bytes.len()),
                other => prop_assert!(false, "prefix {} of {:?}: {:?}", cut, v, other),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_agree_whole_and_cut(
        cut in any::<u8>(),
        stream in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut data = vec![cut];
        data.extend_from_slice(&stream);
        fuzz_entry(&data);
    }

    #[test]
    fn corrupted_command_streams_agree_whole_and_cut(
        cmds in prop::collection::vec(command(), 1..8),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<u8>(),
    ) {
        let mut data = vec![cut];
        for c in &cmds {
            c.encode(&mut data);
        }
        for (at, b) in flips {
            let i = 1 + at % (data.len() - 1);
            data[i] = b;
        }
        fuzz_entry(&data);
    }
}

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/resp_parser");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| fuzz_entry(&data));
        assert!(outcome.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus in {}", dir.display());
}
