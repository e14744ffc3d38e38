//! The protocol cases of the torture suite: pipelined HTTP requests with bodies, RESP
//! pipelines and TLS echo, each through the library's own adapters.

use std::io::Write;
use std::sync::Arc;
use std::thread;

use eventide::Server;

use super::faults_support::{self as support, connect, pipelined, Answer, Case, Outcome};
use super::util::Rng;
use super::{mixes, seeds, serve, stop};

/// RESP: `ECHO` commands pipelined (in chunks cut anywhere); the replies are known byte for
/// byte.
#[test]
fn resp_pipelines() {
    use eventide::resp::{Command, RespServer, Writer};
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("resp pipeline {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let (server, log) = serve(Server::builder().bind("127.0.0.1:0"), cfg, |_| {
                RespServer::new(|cmd: &Command<'_>, reply: &mut Writer<'_>| {
                    reply.bulk(cmd.arg(1).unwrap_or(b""));
                    eventide::Action::Continue
                })
            });
            let addr = server.local_addr();
            let clients: Vec<_> = (0..6)
                .map(|c| {
                    let mut rng = Rng::new(cfg.seed() * 31 + c);
                    let (mut send, mut expect) = (Vec::new(), Vec::new());
                    for _ in 0..3000 {
                        let len = rng.log_uniform(1, 2001) as usize - 1;
                        let arg = rng.bytes(len);
                        send.extend(format!("*2\r\n$4\r\nECHO\r\n${}\r\n", arg.len()).bytes());
                        send.extend_from_slice(&arg);
                        send.extend_from_slice(b"\r\n");
                        expect.extend(format!("${}\r\n", arg.len()).bytes());
                        expect.extend_from_slice(&arg);
                        expect.extend_from_slice(b"\r\n");
                    }
                    let (send, expect) = (Arc::new(send), Arc::new(expect));
                    thread::spawn(move || pipelined(addr, send, expect))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            (faults, support::verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

/// HTTP/1.1: requests with bodies pipelined; every response (status 200, the request's body
/// echoed) arrives in order. Responses carry a `Date`, so they are parsed, not compared whole.
#[test]
fn http_pipelining_with_bodies() {
    use eventide::http::{HttpServer, Request, Response};
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("http pipeline {cfg}");
        let case = Case::new(&what);
        let (faults, bytes) = case.run(move || {
            let (server, log) = serve(Server::builder().bind("127.0.0.1:0"), cfg, |_| {
                HttpServer::new(|req: &Request<'_>, res: &mut Response<'_>| res.body(req.body()))
            });
            let addr = server.local_addr();
            let clients: Vec<_> = (0..6)
                .map(|c| {
                    let mut rng = Rng::new(cfg.seed() * 37 + c);
                    let bodies: Vec<Vec<u8>> = (0..400)
                        .map(|_| {
                            let len = rng.log_uniform(1, 100_001) as usize - 1;
                            rng.bytes(len)
                        })
                        .collect();
                    thread::spawn(move || http_client(addr, bodies))
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            (faults, support::verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}

/// Sends one POST per body, pipelined in chunks cut anywhere, and checks the responses in
/// order. `got`/`expected` count body bytes.
fn http_client(addr: std::net::SocketAddr, bodies: Vec<Vec<u8>>) -> Outcome {
    let mut requests = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let head = format!(
            "POST /{i} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            b.len()
        );
        requests.extend_from_slice(head.as_bytes());
        requests.extend_from_slice(b);
    }
    let answers: Vec<Answer> = bodies.iter().map(|b| Answer::body(b)).collect();
    support::pipeline_http(addr, requests, &[3, 5000, 70_000], &answers)
}

/// TLS: echo in lockstep through rustls' client; handshakes and records cut anywhere.
#[cfg(feature = "tls")]
#[test]
fn tls_echo() {
    #[path = "../tls_support/certs.rs"]
    #[allow(dead_code)]
    mod certs;
    use eventide::tls::rustls;
    let ca = certs::Ca::new("faults CA");
    let leaf = ca.leaf(&["localhost"]);
    let server_cfg = certs::server_config(&leaf, &[]);
    let client_cfg = certs::client_config(&[ca.der()], &[]);
    for cfg in seeds().into_iter().flat_map(mixes) {
        let what = format!("tls echo {cfg}");
        let case = Case::new(&what);
        let (server_cfg, client_cfg) = (server_cfg.clone(), client_cfg.clone());
        let (faults, bytes) = case.run(move || {
            let builder = Server::builder().bind_tls("127.0.0.1:0", server_cfg);
            let (server, log) = serve(builder, cfg, |_| support::Echo);
            let addr = server.local_addr();
            let clients: Vec<_> = (0..6)
                .map(|c| {
                    let data = Rng::new(cfg.seed() * 41 + c)
                        .bytes([1, 1000, 70_000, 600_000][c as usize % 4]);
                    let client_cfg = client_cfg.clone();
                    thread::spawn(move || {
                        let sock = connect(addr);
                        let local = sock.local_addr().unwrap();
                        let conn =
                            rustls::ClientConnection::new(client_cfg, certs::name("localhost"))
                                .unwrap();
                        let tls = rustls::StreamOwned::new(conn, sock);
                        support::lockstep_on(tls, local, &data, 16_000, |s| {
                            s.conn.send_close_notify();
                            let _ = s.flush();
                        })
                    })
                })
                .collect();
            let outcomes: Vec<Outcome> = clients.into_iter().map(|t| t.join().unwrap()).collect();
            let faults = stop(server, &what);
            (faults, support::verdict(&what, &outcomes, &log, faults))
        });
        case.finish(faults, bytes);
    }
}
