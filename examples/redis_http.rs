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
//! What it shows: the service hands each query to the runtime with
//! [`Response::spawn_future`](eventide::http::Response::spawn_future) and the answer goes
//! out on the connection's loop. Pipelined requests are answered in order whatever order
//! redis answers in; at `--max-pending` answers owed the connection stops reading; a client
//! that goes away cancels its queries (the futures are dropped).
//!
//! Options: `--redis HOST:PORT` (default 127.0.0.1:6380, the redis demo's address),
//! `--threads N` tokio worker threads (default 1), `--max-pending N` queries in flight per
//! connection (default 32).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Args;
use eventide::http::{HttpServer, Reply, Request, Response, Status};
use eventide::Server;
use redis::aio::MultiplexedConnection;

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
            .max_owed_answers(max_pending)
            .max_jobs_per_conn(max_pending)
            .start(move |_| {
                let redis = redis.clone();
                HttpServer::new(move |req: &Request<'_>, res: &mut Response<'_>| {
                    route(&redis, req, res)
                })
            }),
        "starting the server",
    );
    let addr = server.local_addr().to_string();
    common::serve(server, signals, &addr);
}

/// Answers one request: a redis query on the runtime, or at once when there is none to make.
fn route(redis: &Redis, req: &Request<'_>, res: &mut Response<'_>) {
    match Query::route(req.method(), req.path(), req.body()) {
        Ok(query) => {
            let redis = redis.clone();
            res.spawn_future(query.run(redis));
        }
        Err(reply) => res.reply(reply),
    }
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
            Ok(Err(e)) => Err(text(Status::BAD_GATEWAY, format!("redis: {e}\n"))),
            Err(_) => Err(text(
                Status::GATEWAY_TIMEOUT,
                "redis did not answer in time\n",
            )),
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
                Err(text(Status::METHOD_NOT_ALLOWED, "method not allowed\n"))
            }
            _ => Err(text(Status::NOT_FOUND, "no such route\n")),
        }
    }

    /// Asks redis and turns the answer into the HTTP reply.
    async fn run(self, redis: Redis) -> Reply {
        let no_key = || text(Status::NOT_FOUND, "no such key\n");
        let answer = match self {
            Query::Get(k) => redis
                .query::<Option<Vec<u8>>>(redis::cmd("GET").arg(k).clone())
                .await
                .map(|v| v.map_or_else(no_key, |v| Reply::ok().content_type("text/plain").body(v))),
            Query::Set(k, v) => redis
                .query::<()>(redis::cmd("SET").arg(k).arg(v).clone())
                .await
                .map(|()| Reply::new(Status::NO_CONTENT)),
            Query::Del(k) => redis
                .query::<u64>(redis::cmd("DEL").arg(k).clone())
                .await
                .map(|n| {
                    if n == 0 {
                        no_key()
                    } else {
                        Reply::new(Status::NO_CONTENT)
                    }
                }),
            Query::Incr(k) => redis
                .query::<i64>(redis::cmd("INCR").arg(k).clone())
                .await
                .map(|n| text(Status::OK, format!("{n}\n"))),
        };
        answer.unwrap_or_else(|reply| reply)
    }
}

/// A `text/plain` reply.
fn text(status: Status, body: impl Into<Vec<u8>>) -> Reply {
    Reply::new(status).content_type("text/plain").body(body)
}
