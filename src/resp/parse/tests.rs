//! The RESP parser without sockets: commands (multibulk and inline, with redis's quoting) and
//! values, cut at every byte, and the protocol errors it refuses.

use super::*;

type Parsed = Option<(Vec<Vec<u8>>, usize)>;

fn cmd(input: &[u8]) -> Result<Parsed, Error> {
    let mut args = Args::new();
    Ok(match Parser::new().parse_command(input, &mut args)? {
        Parse::Done(c, n) => Some((c.args().map(<[u8]>::to_vec).collect(), n)),
        Parse::Incomplete(need) => {
            assert!(need > input.len());
            None
        }
    })
}

/// Inline lines split and unquoted as redis-server's `sdssplitargs` does (the expected
/// arguments were checked against redis-server 7.0; `tests/resp.rs` compares live).
#[test]
fn inline_quoting_follows_redis() {
    let args = |line: &[u8]| -> Result<Vec<Vec<u8>>, Error> {
        let mut input = line.to_vec();
        input.extend_from_slice(b"\r\n");
        Ok(cmd(&input)?.expect("a whole line").0)
    };
    let ok = |line: &[u8], want: &[&[u8]]| {
        let got = args(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let want: Vec<Vec<u8>> = want.iter().map(|a| a.to_vec()).collect();
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(line));
    };
    ok(b"SET a \"hello world\"", &[b"SET", b"a", b"hello world"]);
    ok(b"SET a 'hello world'", &[b"SET", b"a", b"hello world"]);
    ok(
        b"ECHO \"\\n\\r\\t\\b\\a\\\"\\\\\\q\"",
        &[b"ECHO", b"\n\r\t\x08\x07\"\\q"],
    );
    ok(
        b"ECHO \"\\x41\\x7a\\xff\\x00!\"",
        &[b"ECHO", b"Az\xff\x00!"],
    );
    // `\x` without two hex digits is an escaped `x`.
    ok(b"ECHO \"\\x4\" \"\\xg1\"", &[b"ECHO", b"x4", b"xg1"]);
    // In single quotes only `\'` is an escape.
    ok(b"ECHO 'it\\'s \\n'", &[b"ECHO", b"it's \\n"]);
    // Quotes may open inside an argument; an empty pair is an empty argument.
    ok(b"ECHO ab\"c d\"", &[b"ECHO", b"abc d"]);
    ok(b"ECHO \"\" ''", &[b"ECHO", b"", b""]);
    ok(b"ECHO \"a'b\" 'a\"b'", &[b"ECHO", b"a'b", b"a\"b"]);
    // Vertical tab and form feed are blanks before an argument, not inside one.
    ok(b"\x0bECHO\x0c a\x0bb", &[b"ECHO\x0c", b"a\x0bb"]);
    ok(b"ECHO a\rb", &[b"ECHO", b"a", b"b"]);
    // A NUL byte ends the line, as the C string it is in redis-server.
    ok(b"ECHO a\0 b", &[b"ECHO", b"a"]);
    ok(b"   ", &[]);
    for bad in [
        &b"SET a \"open"[..],
        b"SET a 'open",
        b"ECHO \"a\"b",
        b"ECHO 'a'b",
        b"ECHO \"trailing\\",
        b"ECHO \"a\0\"",
    ] {
        let e = args(bad).expect_err(&String::from_utf8_lossy(bad));
        assert_eq!(e.to_string(), "unbalanced quotes in request");
    }
    // Unquoted arguments are borrowed from the input; quoted ones need the storage.
    let mut store = Args::new();
    let input = b"GET key\r\n";
    let Parse::Done(c, _) = Parser::new().parse_command(input, &mut store).unwrap() else {
        panic!("whole");
    };
    assert_eq!(c.arg(1).unwrap().as_ptr(), input[4..].as_ptr());
}

#[test]
fn multibulk_and_inline() {
    let (a, n) = cmd(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nrest")
        .unwrap()
        .unwrap();
    assert_eq!(a, vec![b"SET".to_vec(), b"k".to_vec(), b"".to_vec()]);
    assert_eq!(n, 26);
    let (a, n) = cmd(b"  set  a\tb \r\nX").unwrap().unwrap();
    assert_eq!(a, vec![b"set".to_vec(), b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(n, 13);
    assert_eq!(cmd(b"\r\n").unwrap().unwrap(), (vec![], 2));
    assert_eq!(cmd(b"*0\r\n").unwrap().unwrap(), (vec![], 4));
    assert_eq!(cmd(b"*-1\r\n").unwrap().unwrap(), (vec![], 5));
}

#[test]
fn quick_len_agrees_with_the_general_path() {
    let general = |input: &[u8]| match len_line(input, 0, "x") {
        Ok(Line::Done(d, next)) => parse_int(d, "x").ok().map(|n| (n, next)),
        _ => None,
    };
    let cases: &[&[u8]] = &[
        b"0\r\n",
        b"7\r\nx",
        b"42\r\n",
        b"4\r",
        b"42\n\r",
        b"007\r\n",
        b"123456789012345678\r\n",
        b"1234567890123456789\r\n",
        b"-1\r\n",
        b"12\r",
        b"12\rx",
        b"12",
        b"\r\n",
        b"1a\r\n",
        b"",
    ];
    for &c in cases {
        if let Some(q) = quick_len(c, 0) {
            assert_eq!(Some(q), general(c), "{:?}", String::from_utf8_lossy(c));
        }
    }
    assert_eq!(quick_len(b"42\r\n", 0), Some((42, 4)));
    assert_eq!(quick_len(b"-1\r\n", 0), None);
    assert_eq!(quick_len(b"1234567890123456789\r\n", 0), None);
}

#[test]
fn incomplete_at_every_cut() {
    let full = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n";
    for cut in 0..full.len() {
        assert!(cmd(&full[..cut]).unwrap().is_none(), "cut {cut}");
    }
    assert!(cmd(full).unwrap().is_some());
}

#[test]
fn protocol_errors() {
    assert!(cmd(b"*1\r\n+OK\r\n").is_err());
    assert!(cmd(b"*x\r\n").is_err());
    assert!(cmd(b"*2000000\r\n").is_err());
    assert!(cmd(b"*1\r\n$-5\r\n").is_err());
    assert!(cmd(b"*1\r\n$1\r\nab\r\n").is_err());
    assert!(cmd(b"*1\r\n$99999999999999999999\r\n").is_err());
    assert!(cmd(b"*100000000000000000000000000000").is_err());
    assert!(cmd(b"*1\r\n$524289\r\n").is_err());
    assert!(cmd(&vec![b'a'; 70_000]).is_err());
    assert_eq!(parse_int(b"-9223372036854775808", "x"), Ok(i64::MIN));
    assert!(parse_int(b"9223372036854775808", "x").is_err());
    assert!(parse_int(b"-", "x").is_err());
}

#[test]
fn values() {
    let p = Parser::new();
    assert_eq!(
        p.parse_value(b"+OK\r\n"),
        Ok(Parse::Done(Value::Simple(b"OK"), 5))
    );
    assert_eq!(
        p.parse_value(b"-ERR x\r\n"),
        Ok(Parse::Done(Value::Error(b"ERR x"), 8))
    );
    assert_eq!(
        p.parse_value(b":12\r\n"),
        Ok(Parse::Done(Value::Integer(12), 5))
    );
    assert_eq!(p.parse_value(b"$-1\r\n"), Ok(Parse::Done(Value::Nil, 5)));
    assert_eq!(
        p.parse_value(b"*-1\r\n"),
        Ok(Parse::Done(Value::NilArray, 5))
    );
    assert_eq!(
        p.parse_value(b"*1\r\n*1\r\n:1\r\n"),
        Ok(Parse::Done(
            Value::Array(vec![Value::Array(vec![Value::Integer(1)])]),
            12
        ))
    );
    assert!(matches!(
        p.parse_value(b"*2\r\n:1\r\n"),
        Ok(Parse::Incomplete(_))
    ));
    assert!(p.parse_value(b"?").is_err());
    assert!(p.parse_value(&b"*1\r\n".repeat(40)).is_err());
    assert!(p.parse_value(b"+O\rK\r\n").is_err());
}
