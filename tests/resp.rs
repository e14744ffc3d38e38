//! The RESP server and the redis demo's key-value store over real sockets: a real client
//! (the `redis` crate), raw sockets for malformed frames and inline commands, and the real
//! tools (`redis-cli`, `redis-benchmark`) when installed.

#![cfg(feature = "resp")]

#[path = "../examples/redis/expiry.rs"]
mod expiry;
#[path = "../examples/redis/kv.rs"]
mod kv;
mod proto_util;
#[path = "../examples/redis/store.rs"]
mod store;
mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventide::resp::RespServer;
use eventide::Server;
use kv::Kv;
use proto_util::{connect, tool, TIMEOUT};
use redis::{cmd, Value};
use store::Store;
use util::wait_until;

fn start() -> (Server, Arc<Store>) {
    let store = Store::new(64);
    let s = store.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(2)
        .start(move |_| RespServer::new(Kv::new(s.clone())))
        .expect("start the server");
    (server, store)
}

fn client(addr: SocketAddr) -> redis::Connection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let con = c.get_connection_with_timeout(TIMEOUT).unwrap();
    con.set_read_timeout(Some(TIMEOUT)).unwrap();
    con.set_write_timeout(Some(TIMEOUT)).unwrap();
    con
}

fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut c = cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<Value>(con) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
    }
}

#[test]
fn every_command_answers_as_redis_does() {
    let (server, _) = start();
    let mut c = client(server.local_addr());
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
    assert_eq!(q::<String>(&mut c, &["PING", "hi"]), "hi");
    assert_eq!(q::<String>(&mut c, &["ECHO", "hello world"]), "hello world");

    assert_eq!(q::<Option<String>>(&mut c, &["GET", "k"]), None);
    assert_eq!(q::<String>(&mut c, &["SET", "k", "v1"]), "OK");
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v1");
    assert_eq!(q::<Option<String>>(&mut c, &["SET", "k", "v2", "NX"]), None);
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v1");
    assert_eq!(
        q::<Option<String>>(&mut c, &["SET", "fresh", "x", "XX"]),
        None
    );
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "fresh"]), None);
    assert_eq!(q::<String>(&mut c, &["SET", "k", "v3", "XX"]), "OK");
    assert_eq!(q::<String>(&mut c, &["SET", "n1", "1", "nx"]), "OK");
    assert_eq!(q::<String>(&mut c, &["SET", "k", "v4", "GET"]), "v3");
    assert!(err(&mut c, &["SET", "k", "v", "NX", "XX"]).contains("syntax error"));
    assert!(err(&mut c, &["SET", "k", "v", "EX", "0"]).contains("invalid expire time"));
    assert!(err(&mut c, &["SET", "k", "v", "PX", "soon"]).contains("not an integer"));

    assert_eq!(q::<i64>(&mut c, &["TTL", "k"]), -1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "missing"]), -2);
    // A TTL read back is the one set, less the time the test took since (at most its bound).
    let within = |ttl: i64, set: i64| (set - TIMEOUT.as_secs() as i64..=set).contains(&ttl);
    assert_eq!(q::<String>(&mut c, &["SET", "e", "v", "EX", "100"]), "OK");
    let ttl = q::<i64>(&mut c, &["TTL", "e"]);
    assert!(within(ttl, 100), "TTL {ttl}");
    assert_eq!(
        q::<String>(&mut c, &["SET", "p", "v", "PX", "100000"]),
        "OK"
    );
    let ttl = q::<i64>(&mut c, &["TTL", "p"]);
    assert!(within(ttl, 100), "TTL {ttl}");
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "k", "50"]), 1);
    let ttl = q::<i64>(&mut c, &["TTL", "k"]);
    assert!(within(ttl, 50), "TTL {ttl}");
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "missing", "50"]), 0);
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "k", "60", "NX"]), 0);
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "k", "60", "GT"]), 1);
    assert_eq!(q::<i64>(&mut c, &["PERSIST", "k"]), 1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "k"]), -1);

    assert_eq!(q::<i64>(&mut c, &["INCR", "counter"]), 1);
    assert_eq!(q::<i64>(&mut c, &["INCR", "counter"]), 2);
    assert_eq!(q::<i64>(&mut c, &["DECR", "counter"]), 1);
    assert_eq!(q::<i64>(&mut c, &["DECR", "below"]), -1);
    assert_eq!(q::<i64>(&mut c, &["INCRBY", "counter", "41"]), 42);
    assert_eq!(q::<String>(&mut c, &["GET", "counter"]), "42");
    assert!(err(&mut c, &["INCR", "k"]).contains("not an integer"));
    assert_eq!(
        q::<String>(&mut c, &["SET", "big", &i64::MAX.to_string()]),
        "OK"
    );
    assert!(err(&mut c, &["INCR", "big"]).contains("overflow"));

    assert_eq!(
        q::<String>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"]),
        "OK"
    );
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, &["MGET", "a", "nope", "c"]),
        vec![Some("1".to_string()), None, Some("3".to_string())]
    );
    assert!(err(&mut c, &["MSET", "a", "1", "b"]).contains("wrong number of arguments"));
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "a", "b", "nope", "a"]), 3);
    assert_eq!(q::<i64>(&mut c, &["DEL", "a", "b", "nope"]), 2);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "a", "b"]), 0);

    // k e p n1 counter below big c
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 8);
    assert_eq!(q::<String>(&mut c, &["FLUSHALL"]), "OK");
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 0);

    // Unknown commands and wrong arity are errors, and the connection stays usable.
    let e = err(&mut c, &["NOSUCH", "x", "y"]);
    assert!(
        e.contains("unknown command 'NOSUCH'") && e.contains("'x' 'y'"),
        "{e}"
    );
    assert!(err(&mut c, &["GET"]).contains("wrong number of arguments for 'get'"));
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");

    // What the tools ask at start.
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "save"]);
    assert_eq!(v, vec!["save".to_string(), String::new()]);
    let v: Vec<String> = q(&mut c, &["CONFIG", "GET", "appendonly"]);
    assert_eq!(v, vec!["appendonly".to_string(), "no".to_string()]);
    assert_eq!(
        q::<Vec<String>>(&mut c, &["COMMAND", "DOCS"]),
        Vec::<String>::new()
    );
}

#[test]
fn keys_expire_lazily_and_by_the_sweep() {
    let (server, store) = start();
    let mut c = client(server.local_addr());
    assert_eq!(
        q::<String>(&mut c, &["SET", "long", "v", "PX", "100000"]),
        "OK"
    );
    let ttl = q::<i64>(&mut c, &["PTTL", "long"]);
    let bound = TIMEOUT.as_millis() as i64;
    assert!((100_000 - bound..=100_000).contains(&ttl), "PTTL {ttl}");
    assert_eq!(q::<i64>(&mut c, &["DEL", "long"]), 1);
    assert_eq!(
        q::<String>(&mut c, &["SET", "short", "v", "PX", "50"]),
        "OK"
    );
    wait_until("TTL says the key is gone", || {
        q::<i64>(&mut c, &["TTL", "short"]) == -2
    });
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "short"]), None);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "short"]), 0);

    // A deadline in the past deletes at once.
    assert_eq!(q::<String>(&mut c, &["SET", "gone", "v"]), "OK");
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "gone", "0"]), 1);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "gone"]), 0);

    // Keys nobody touches again are removed by the periodic sweep: DBSIZE counts keys not yet
    // removed, so it reaching the number of keys without a deadline proves the sweep ran.
    assert_eq!(q::<String>(&mut c, &["SET", "keeper", "v"]), "OK");
    let mut p = redis::pipe();
    for i in 0..200 {
        p.cmd("SET")
            .arg(format!("tmp{i}"))
            .arg("v")
            .arg("PX")
            .arg(20)
            .ignore();
    }
    p.query::<()>(&mut c).unwrap();
    assert!(q::<i64>(&mut c, &["DBSIZE"]) >= 1);
    wait_until("the sweep removed the expired keys", || store.len() == 1);
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 1);
    assert_eq!(q::<String>(&mut c, &["GET", "keeper"]), "v");
}

#[test]
fn a_pipeline_of_a_thousand_commands_is_answered_in_order() {
    let (server, _) = start();
    let mut c = client(server.local_addr());
    let mut p = redis::pipe();
    for i in 0..1000 {
        match i % 4 {
            0 => p
                .cmd("SET")
                .arg(format!("key:{i}"))
                .arg(format!("value:{i}")),
            1 => p.cmd("GET").arg(format!("key:{}", i - 1)),
            2 => p.cmd("INCR").arg("hits"),
            _ => p.cmd("ECHO").arg(format!("echo:{i}")),
        };
    }
    let replies: Vec<Value> = p.query(&mut c).unwrap();
    assert_eq!(replies.len(), 1000);
    for (i, r) in replies.iter().enumerate() {
        let want = match i % 4 {
            0 => Value::Okay,
            1 => Value::BulkString(format!("value:{}", i - 1).into_bytes()),
            2 => Value::Int(i as i64 / 4 + 1),
            _ => Value::BulkString(format!("echo:{i}").into_bytes()),
        };
        assert_eq!(r, &want, "reply {i}");
    }
}

#[test]
fn loops_share_one_keyspace() {
    let (server, _) = start();
    // Round-robin puts consecutive connections on different loops.
    let mut clients: Vec<_> = (0..4).map(|_| client(server.local_addr())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            q::<String>(c, &["SET", &format!("from{i}"), &i.to_string()]),
            "OK"
        );
        assert_eq!(q::<i64>(c, &["INCR", "shared"]), i as i64 + 1);
    }
    for c in &mut clients {
        let all: Vec<String> = q(c, &["MGET", "from0", "from1", "from2", "from3"]);
        assert_eq!(all, ["0", "1", "2", "3"]);
    }
}

/// Reads until the server closes; returns everything received.
fn read_to_close(s: &mut std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn malformed_frames_get_an_error_and_a_close_and_others_are_unaffected() {
    let (server, _) = start();
    let addr = server.local_addr();
    let mut other = client(addr);
    assert_eq!(q::<String>(&mut other, &["SET", "k", "v"]), "OK");
    let cases: [&[u8]; 8] = [
        b"*1\r\n$x\r\n",
        b"*1\r\n+PING\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY\r\n",
        b"*abc\r\n",
        b"*99999999999\r\n",
        b"*1\r\n$-3\r\n",
        b"*1\r\n$100000000000000000000000000\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
    ];
    for bad in cases {
        let mut s = connect(addr);
        // A good command first: it is answered before the error.
        s.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
        s.write_all(bad).unwrap();
        let got = String::from_utf8(read_to_close(&mut s)).unwrap();
        let shown = String::from_utf8_lossy(bad);
        assert!(got.starts_with("+PONG\r\n"), "{shown:?} -> {got:?}");
        let rest = &got["+PONG\r\n".len()..];
        assert!(
            rest.starts_with("-ERR Protocol error: "),
            "{shown:?} -> {got:?}"
        );
        assert!(
            rest.ends_with("\r\n") && rest.matches("\r\n").count() == 1,
            "{got:?}"
        );
        assert_eq!(
            q::<String>(&mut other, &["GET", "k"]),
            "v",
            "after {shown:?}"
        );
    }
}

#[test]
fn inline_commands_and_quit_work_on_a_raw_socket() {
    let (server, _) = start();
    let mut s = connect(server.local_addr());
    s.write_all(
        b"PING\r\nSET greeting hello\r\n\r\nGET greeting\nEXISTS greeting nope\r\nQUIT\r\nPING\r\n",
    )
    .unwrap();
    let got = String::from_utf8(read_to_close(&mut s)).unwrap();
    assert_eq!(got, "+PONG\r\n+OK\r\n$5\r\nhello\r\n:1\r\n+OK\r\n");
}

#[test]
fn redis_cli_round_trips() {
    let Some(cli) = tool("redis-cli", "redis_cli_round_trips") else {
        return;
    };
    let (server, _) = start();
    let port = server.local_addr().port().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(&cli)
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    assert_eq!(run(&["PING"]), "PONG");
    assert_eq!(run(&["SET", "tool", "works"]), "OK");
    assert_eq!(run(&["GET", "tool"]), "works");
    assert_eq!(run(&["INCR", "n"]), "1");
    assert_eq!(run(&["MGET", "tool", "nope"]).lines().next(), Some("works"));
    assert!(run(&["BOGUS"]).contains("unknown command"));
    assert_eq!(run(&["DBSIZE"]), "2");
}

#[test]
fn redis_benchmark_completes() {
    let Some(bench) = tool("redis-benchmark", "redis_benchmark_completes") else {
        return;
    };
    let (server, _) = start();
    let port = server.local_addr().port().to_string();
    let mut child = Command::new(&bench)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "-n",
            "2000",
            "-t",
            "set,get,incr,mset",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-benchmark");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("redis-benchmark did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut errs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut errs)
        .unwrap();
    assert!(status.success(), "redis-benchmark failed: {out}\n{errs}");
    // -q prints one summary line per test ("SET: N requests per second ...").
    for t in ["SET:", "GET:", "INCR:", "MSET"] {
        let line = out.rsplit('\r').find(|l| l.contains(t)).unwrap_or("");
        assert!(
            out.contains(t) && line.contains("requests per second"),
            "{t} missing in {out:?}"
        );
    }
    assert!(!errs.contains("WARNING"), "{errs}");
}

/// A redis-server of the test's own on a Unix socket in a temporary directory, stopped and
/// removed when dropped: the reference the demo's answers are compared with.
struct RealRedis {
    child: std::process::Child,
    dir: std::path::PathBuf,
    socket: std::path::PathBuf,
}

impl RealRedis {
    fn start(test: &str) -> Option<RealRedis> {
        let bin = tool("redis-server", test)?;
        let dir = std::env::temp_dir().join(format!("eventide-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let child = Command::new(bin)
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = RealRedis { child, dir, socket };
        wait_until("redis-server listens", || {
            std::os::unix::net::UnixStream::connect(&redis.socket).is_ok()
        });
        Some(redis)
    }

    /// What redis-server answers to `bytes`, read until it closes.
    fn answer(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(bytes).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("redis-server closes after QUIT");
        got
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Inline lines with redis' quoting, and expire times that overflow, answered byte for byte
/// as redis-server answers them (each line on a connection of its own, then QUIT; the same
/// lines in the same order on both, so their keyspaces agree).
#[test]
fn quoting_and_expire_times_are_answered_as_redis_server_does() {
    let Some(redis) = RealRedis::start("quoting_and_expire_times") else {
        return;
    };
    let (server, _) = start();
    let lines: &[&[u8]] = &[
        b"SET a \"hello world\"",
        b"GET a",
        b"SET b 'single quoted'",
        b"GET b",
        b"ECHO \"\\n\\r\\t\\b\\a\\\"\\\\\\q\\x41\\x7a\\xff\\x4\"",
        b"ECHO 'it\\'s \\n'",
        b"ECHO ab\"c d\"",
        b"ECHO \"\" ''",
        b"ECHO a\x0bb",
        b"ECHO a\rb",
        b"SET c \"unbalanced",
        b"SET c 'unbalanced",
        b"ECHO \"closed\"early",
        b"SET k v PX 9223372036854775807",
        b"SET k v EX 9223372036854775",
        b"SET k v EX 9223372036854776",
        b"SET k v EX 0",
        b"SET k v PX -1",
        b"SET k v EXAT 0",
        b"SET k v PXAT 9223372036854775807",
        b"EXISTS k",
        b"SET k v",
        b"SETEX k 0 v",
        b"SETEX k 9223372036854775807 v",
        b"PSETEX k 0 v",
        b"PSETEX k 9223372036854775807 v",
        b"SETEX k x v",
        b"GETEX missing EX 0",
        b"GETEX k EX 0",
        b"GETEX k PX 9223372036854775807",
        b"GETEX k EXAT 9223372036854775807",
        b"GETEX k EX x",
        b"GETEX k EX 1 PX 1",
        b"GETEX k PERSIST",
        b"EXPIRE k 9223372036854775807",
        b"EXPIRE k -9223372036854775808",
        b"PEXPIRE k 9223372036854775807",
        b"EXPIREAT k 9223372036854775807",
        b"PEXPIREAT k 9223372036854775807",
        b"EXPIRE k 100 NX",
        b"EXPIRE k 100 XX GT",
        b"EXPIRE k 100 NX XX",
        b"EXPIRE k 100 GT LT",
        b"EXPIRE k 100 FOO",
        b"EXPIRE k",
        b"PEXPIRE k",
        b"SET gone v",
        b"PEXPIREAT gone 1",
        b"EXISTS gone",
        b"SET gone v PXAT 1",
        b"EXISTS gone",
    ];
    for line in lines {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\nQUIT\r\n");
        let want = redis.answer(&bytes);
        let mut s = connect(server.local_addr());
        s.write_all(&bytes).unwrap();
        let got = read_to_close(&mut s);
        assert!(
            got == want,
            "{:?}: redis-server answered {:?}, the demo {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&got)
        );
    }
    // The longest deadline there is keeps a positive TTL (it used to wrap negative).
    let mut c = client(server.local_addr());
    assert_eq!(q::<String>(&mut c, &["SET", "far", "v"]), "OK");
    let far = i64::MAX.to_string();
    assert_eq!(q::<i64>(&mut c, &["PEXPIREAT", "far", &far]), 1);
    let ttl = q::<i64>(&mut c, &["TTL", "far"]);
    assert!(ttl > 290_000_000 * 365 * 86_400, "TTL {ttl}");
    assert!(q::<i64>(&mut c, &["PTTL", "far"]) > 0);
}
