//! The `redis_http` example against a real redis demo process: its routes answered from
//! futures that query redis with the `redis` crate's async client, checked with `ureq` and
//! with the `redis` crate's own client on the redis demo; pipelined requests answered in
//! order; 502 once redis is gone; the demo contract (a graceful stop, exit 0).

mod demo_util;
mod proto_util;

use std::io::Write;
use std::net::TcpStream;
use std::thread;

use demo_util::{Demo, TIMEOUT};
use proto_util::ResponseReader;

/// The redis demo and the HTTP front that queries it.
struct Pair {
    redis: Demo,
    front: Demo,
}

impl Pair {
    fn start() -> Option<Pair> {
        let redis = Demo::start("redis", &["--addr", "127.0.0.1:0", "--loops", "1"])?;
        let front = Demo::start(
            "redis_http",
            &[
                "--addr",
                "127.0.0.1:0",
                "--loops",
                "2",
                "--redis",
                &redis.addr,
            ],
        )?;
        Some(Pair { redis, front })
    }

    /// `method path` with `body`: the status and the body of the answer.
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        call(&self.front, method, path, body)
    }

    /// The redis crate's own client on the redis demo.
    fn redis(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.redis.addr))
            .and_then(|c| c.get_connection_with_timeout(TIMEOUT))
            .expect("connect to the redis demo")
    }
}

#[test]
fn routes_answer_from_redis() {
    let Some(pair) = Pair::start() else { return };
    let mut direct = pair.redis();
    assert_eq!(
        pair.call("PUT", "/kv/greeting", "hello"),
        (204, String::new())
    );
    // The value really is in redis, and one written there is served.
    let stored: String = redis::cmd("GET")
        .arg("greeting")
        .query(&mut direct)
        .unwrap();
    assert_eq!(stored, "hello");
    let () = redis::cmd("SET")
        .arg("planted")
        .arg("by redis-rs")
        .query(&mut direct)
        .unwrap();
    assert_eq!(
        pair.call("GET", "/kv/planted", ""),
        (200, "by redis-rs".into())
    );
    assert_eq!(pair.call("GET", "/kv/greeting", ""), (200, "hello".into()));
    assert_eq!(
        pair.call("GET", "/kv/absent", ""),
        (404, "no such key\n".into())
    );
    for n in 1..=3 {
        assert_eq!(
            pair.call("POST", "/incr/visits", ""),
            (200, format!("{n}\n"))
        );
    }
    assert_eq!(
        pair.call("DELETE", "/kv/greeting", ""),
        (204, String::new())
    );
    assert_eq!(
        pair.call("DELETE", "/kv/greeting", ""),
        (404, "no such key\n".into())
    );
    let exists: u64 = redis::cmd("EXISTS")
        .arg("greeting")
        .query(&mut direct)
        .unwrap();
    assert_eq!(exists, 0);
    assert_eq!(pair.call("GET", "/nowhere", "").0, 404);
    assert_eq!(pair.call("PATCH", "/kv/greeting", "").0, 405);
    pair.front.stop("-TERM");
    pair.redis.stop("-TERM");
}

/// Many clients at once, each with its own keys: every answer is its own.
#[test]
fn concurrent_clients_get_their_own_answers() {
    let Some(pair) = Pair::start() else { return };
    let pair = std::sync::Arc::new(pair);
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let pair = std::sync::Arc::clone(&pair);
            thread::spawn(move || {
                for i in 0..20 {
                    let (key, value) = (format!("/kv/c{c}-{i}"), format!("value {c} {i}"));
                    assert_eq!(pair.call("PUT", &key, &value).0, 204);
                    assert_eq!(pair.call("GET", &key, ""), (200, value));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let pair = std::sync::Arc::into_inner(pair).expect("the clients are done");
    pair.front.stop("-INT");
    pair.redis.stop("-TERM");
}

/// 64 pipelined requests on one connection: the answers come in request order, whatever
/// order redis answers the queries in; the last one asks to close, and the server does.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let Some(pair) = Pair::start() else { return };
    let mut direct = pair.redis();
    const N: usize = 64;
    for i in 0..N {
        let () = redis::cmd("SET")
            .arg(format!("p{i}"))
            .arg(format!("v{i}"))
            .query(&mut direct)
            .unwrap();
    }
    let host = &pair.front.addr;
    let mut pipeline = String::new();
    for i in 0..N {
        let close = if i == N - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        pipeline.push_str(&format!(
            "GET /kv/p{i} HTTP/1.1\r\nHost: {host}\r\n{close}\r\n"
        ));
    }
    let mut s = TcpStream::connect(pair.front.tcp()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(pipeline.as_bytes()).unwrap();
    let mut reader = ResponseReader::new(s);
    for i in 0..N {
        assert_eq!(reader.next_text(), (200, format!("v{i}")), "response {i}");
    }
    reader.expect_closed(); // Connection: close on the last request
    pair.front.stop("-TERM");
    pair.redis.stop("-TERM");
}

/// With redis gone, the front answers 502 with the reason and keeps serving.
#[test]
fn a_redis_that_is_gone_gives_502() {
    let Some(pair) = Pair::start() else { return };
    assert_eq!(pair.call("PUT", "/kv/k", "v").0, 204);
    let Pair { redis, front } = pair;
    redis.stop("-TERM");
    for _ in 0..3 {
        let (status, body) = call(&front, "GET", "/kv/k", "");
        assert_eq!(status, 502, "{body}");
        assert!(body.starts_with("redis: "), "the reason: {body:?}");
    }
    front.stop("-TERM");
}

/// `method path` with `body` to the front: the status and the body of the answer.
fn call(front: &Demo, method: &str, path: &str, body: &str) -> (u16, String) {
    let url = format!("http://{}{path}", front.addr);
    let agent = ureq::AgentBuilder::new().timeout(TIMEOUT).build();
    let response = match agent.request(method, &url).send_string(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    (status, response.into_string().expect("read the body"))
}
