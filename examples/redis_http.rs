//! An HTTP front for a redis server: each request is answered by a future on a tokio runtime
//! that asks redis with the `redis` crate's async client (feature `tokio`).
//!
//! ```text
//! cargo run --release --features resp --example redis -- --addr 127.0.0.1:6380 &
//! cargo run --release --features tokio,http --example redis_http -- \
//!     --addr 127.0.0.1:8080 --redis 127.0.0.1:6380
//! curl -X PUT --data hello http://127.0.0.1:8080/kv/greeting     # 204
//! curl http://127.0.0.1:8080/kv/greeting                         # 200 hello
//! curl -X POST http://127.0.0.1:8080/incr/visits                 # 200 1
//! ```
//!
//! Routes: `GET /kv/KEY` (200 with the value, 404 if there is none), `PUT /kv/KEY` (the body
//! is the value; 204), `DELETE /kv/KEY` (204, or 404), `POST /incr/KEY` (200 with the new
//! count). A redis that cannot be reached or answers with an error gives 502 with the reason,
//! one that does not answer within five seconds 504; the connection to redis is opened at the
//! first request and again after it breaks, so the front starts and recovers on its own.
//!
//! What it shows: the handler parses a request on the loop, hands the query to the runtime
//! with [`Conn::spawn_then`](eventide::Conn::spawn_then), and the closure the future returns
//! writes the answer on the loop. Pipelined requests are answered in order whatever order
//! redis answers in; at `--max-pending` queries in flight the connection stops reading; a
//! client that goes away cancels its queries. The HTTP handling is deliberately minimal
//! (`httparse`, `Content-Length` bodies only; a transfer coding gets 501): the point is the
//! bridge, and `eventide::http` is the full codec.
//!
//! Options: `--redis HOST:PORT` (default 127.0.0.1:6380, the redis demo's address),
//! `--threads N` tokio worker threads (default 1), `--max-pending N` queries in flight per
//! connection (default 32).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Args;
use eventide::{Action, Conn, Handler, Server};
use redis::aio::MultiplexedConnection;

/// The largest request head and body accepted.
const MAX_HEAD: usize = 16 << 10;
const MAX_BODY: usize = 1 << 20;
/// How long a query (connecting included) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let args = Args::parse("127.0.0.1:8080", &["redis", "threads", "max-pending"], &[]);
    let redis_addr = args.value("redis").unwrap_or("127.0.0.1:6380");
    let client = redis::Client::open(format!("redis://{redis_addr}/"))
        .unwrap_or_else(|e| args.fail(&format!("--redis {redis_addr:?}: {e}")));
    let threads: usize = args.parsed("threads", 1);
    let max_pending: usize = args.parsed("max-pending", 32);
    if threads == 0 || max_pending == 0 {
        args.fail("--threads and --max-pending need a positive number");
    }
    let signals = common::termination_signals();
    let redis = Redis::new(client);
    let server = common::or_exit(
        Server::builder()
            .bind(args.addr.as_str())
            .loops(args.loops)
            .tokio_threads(threads)
            .max_jobs_per_conn(max_pending)
            .inbound_limit(
                MAX_HEAD + MAX_BODY + (64 << 10),
                eventide::InboundPolicy::Close,
            )
            .start(move |_| Front {
                redis: redis.clone(),
            }),
        "starting the server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}

/// The way to redis, shared by every loop: one multiplexed connection, opened on first use
/// and dropped when it breaks, so the next query opens a new one.
#[derive(Clone)]
struct Redis {
    client: redis::Client,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl Redis {
    fn new(client: redis::Client) -> Redis {
        Redis {
            client,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `cmd`, within [`QUERY_TIMEOUT`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, Reply> {
        let attempt = async {
            let mut conn = self.connection().await?;
            let result = cmd.query_async(&mut conn).await;
            if let Err(e) = &result {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.conn.lock().unwrap().take();
                }
            }
            result
        };
        match tokio::time::timeout(QUERY_TIMEOUT, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Reply::text(502, format!("redis: {e}\n"))),
            Err(_) => Err(Reply::text(504, "redis did not answer in time\n".into())),
        }
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = self.conn.lock().unwrap().clone() {
            return Ok(conn);
        }
        let conn = self.client.get_multiplexed_async_connection().await?;
        *self.conn.lock().unwrap() = Some(conn.clone());
        Ok(conn)
    }
}

/// What a route asks of redis.
enum Query {
    Get(String),
    Set(String, Vec<u8>),
    Del(String),
    Incr(String),
}

impl Query {
    /// The query `method path` asks for, or the answer when there is none.
    fn route(method: &str, path: &str, body: &[u8]) -> Result<Query, Reply> {
        let key = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
        };
        match (method, key("/kv/"), key("/incr/")) {
            ("GET", Some(k), _) => Ok(Query::Get(k)),
            ("PUT", Some(k), _) => Ok(Query::Set(k, body.to_vec())),
            ("DELETE", Some(k), _) => Ok(Query::Del(k)),
            ("POST", _, Some(k)) => Ok(Query::Incr(k)),
            (_, Some(_), _) | (_, _, Some(_)) => {
                Err(Reply::text(405, "method not allowed\n".into()))
            }
            _ => Err(Reply::text(404, "no such route\n".into())),
        }
    }

    /// Asks redis and turns the answer into the HTTP reply.
    async fn run(self, redis: Redis) -> Reply {
        let answer = match self {
            Query::Get(k) => redis
                .query::<Option<Vec<u8>>>(redis::cmd("GET").arg(k).clone())
                .await
                .map(|v| v.map_or_else(|| Reply::text(404, "no such key\n".into()), Reply::ok)),
            Query::Set(k, v) => redis
                .query::<()>(redis::cmd("SET").arg(k).arg(v).clone())
                .await
                .map(|()| Reply::empty(204)),
            Query::Del(k) => redis
                .query::<u64>(redis::cmd("DEL").arg(k).clone())
                .await
                .map(|n| {
                    if n == 0 {
                        Reply::text(404, "no such key\n".into())
                    } else {
                        Reply::empty(204)
                    }
                }),
            Query::Incr(k) => redis
                .query::<i64>(redis::cmd("INCR").arg(k).clone())
                .await
                .map(|n| Reply::ok(format!("{n}\n").into_bytes())),
        };
        answer.unwrap_or_else(|reply| reply)
    }
}

/// An HTTP answer: a status and a `text/plain` body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn ok(body: Vec<u8>) -> Reply {
        Reply { status: 200, body }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
        }
    }

    fn text(status: u16, body: String) -> Reply {
        Reply {
            status,
            body: body.into_bytes(),
        }
    }

    /// Writes the response; `close` adds `Connection: close` and closes after it.
    fn write(self, conn: &mut Conn<'_>, close: bool) {
        let reason = match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            _ => "Gateway Timeout",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        if self.status != 204 {
            head.push_str(&format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n",
                self.body.len()
            ));
        }
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "\r\n"
        });
        conn.write(head.as_bytes());
        conn.write(&self.body);
        if close {
            conn.close();
        }
    }
}

/// One parsed request: the route's query (or its answer), the bytes it took, and whether
/// the connection closes after it.
struct Parsed {
    query: Result<Query, Reply>,
    len: usize,
    close: bool,
}

/// Parses the request at the start of `input`; `None` while it is incomplete, `Err` with the
/// answer (the connection then closes) when it is malformed or too large.
fn parse(input: &[u8]) -> Result<Option<Parsed>, Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
            return Err(Reply::text(431, "request head too large\n".into()));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Reply::text(400, format!("malformed request: {e}\n"))),
    };
    let mut body_len = 0;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            body_len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| Reply::text(400, "malformed Content-Length\n".into()))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Reply::text(
                501,
                "transfer codings are not supported\n".into(),
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = value.contains("close") || (close && !value.contains("keep-alive"));
        }
    }
    if body_len > MAX_BODY {
        return Err(Reply::text(413, "body too large\n".into()));
    }
    let Some(body) = input.get(head..head + body_len) else {
        return Ok(None);
    };
    let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
    Ok(Some(Parsed {
        query: Query::route(method, path, body),
        len: head + body_len,
        close,
    }))
}

struct Front {
    redis: Redis,
}

/// Per connection: whether its last request has been read (it asked to close, or was bad).
#[derive(Default)]
struct FrontConn {
    done: bool,
}

impl Handler for Front {
    type State = FrontConn;

    fn on_open(&mut self, _: &mut Conn<'_>) -> FrontConn {
        FrontConn::default()
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, state: &mut FrontConn) -> Action {
        while !state.done && conn.can_spawn() {
            let parsed = match parse(conn.input()) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(reply) => Parsed {
                    query: Err(reply),
                    len: conn.input().len(),
                    close: true,
                },
            };
            conn.consume(parsed.len);
            state.done = parsed.close;
            let (redis, close) = (self.redis.clone(), parsed.close);
            // Every answer, even one known now, goes through the runtime so that it takes
            // its turn after the queries before it.
            let spawned = conn.spawn_then(async move {
                let reply = match parsed.query {
                    Ok(query) => query.run(redis).await,
                    Err(reply) => reply,
                };
                move |c: &mut Conn<'_>| reply.write(c, close)
            });
            if let Err(e) = spawned {
                log::warn!("redis_http: {e}");
                return Action::Close;
            }
        }
        if state.done {
            let rest = conn.input().len();
            conn.consume(rest); // nothing after the last request is read
        }
        Action::Continue
    }
}
