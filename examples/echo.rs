//! Echo server: every byte (or datagram) a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:7000 --loops 2 [--reuseport] [--edge]
//! cargo run --release --example echo -- --unix /tmp/echo.sock        # Unix-domain stream socket
//! cargo run --release --example echo -- --udp --addr 127.0.0.1:7000  # UDP, batched (recvmmsg/sendmmsg)
//! ```
//!
//! `--udp-batch N` sets the datagrams moved per syscall (1 = plain recvmsg/sendto).
//! `--tls-cert PEM --tls-key PEM` (feature `tls`) serve TLS echo on the TCP or Unix address:
//!
//! ```text
//! cargo run --release --features tls --example echo -- --tls-cert cert.pem --tls-key key.pem
//! openssl s_client -connect 127.0.0.1:7000 -CAfile cert.pem
//! ```

mod common;
#[path = "common/tls.rs"]
mod tls_args;

use common::Args;
use eventide::{Action, Conn, Datagram, Handler, Refusal, Server, Trigger, Udp};

/// Writes input back as it arrives; the default `on_read_closed` closes after the last byte
/// is flushed, so a client that half-closes still gets everything back. Datagrams are sent
/// back to their sender.
struct Echo;

impl Handler for Echo {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
        let data = conn.input();
        conn.write(data);
        conn.consume(data.len());
        Action::Continue
    }

    fn on_datagram(&mut self, udp: &mut Udp<'_>, datagram: Datagram<'_>) {
        udp.send_to(datagram.data(), datagram.peer());
    }
}

fn main() {
    let args = Args::parse(
        "127.0.0.1:7000",
        &["unix", "udp-batch", "tls-cert", "tls-key"],
        &["reuseport", "edge", "udp"],
    );
    let tls = tls_args::config(&args, &[]);
    if tls.is_some() && args.flag("udp") {
        eprintln!("--tls-cert applies to TCP and Unix sockets, not --udp");
        std::process::exit(2);
    }
    let signals = common::termination_signals();
    let trigger = if args.flag("edge") {
        Trigger::Edge
    } else {
        Trigger::Level
    };
    let mut builder = Server::builder()
        .loops(args.loops)
        .reuse_port(args.flag("reuseport"))
        .trigger(trigger)
        .udp_batch(args.parsed("udp-batch", 32));
    builder = match (args.value("unix"), args.flag("udp")) {
        (Some(path), _) => tls_args::bind(builder, &format!("unix:{path}"), tls),
        (None, true) => builder.bind_udp(args.addr.as_str()),
        (None, false) => tls_args::bind(builder, &args.addr, tls),
    };
    let server = common::or_exit(builder.start(|_| Echo), "starting the echo server");
    let shown = match server.udp_addrs().first() {
        Some(udp) => udp.to_string(),
        None => server.local_addrs()[0].to_string(),
    };
    common::serve(server, signals, &shown);
}
