use eventide::{Action, Conn, Handler, Refusal, Server};

struct Echo;

impl Handler for Echo {
    type State = (); // per-connection state, stored inline in the loop's table
    type Message = (); // what other threads may send a connection (ConnHandle::send): nothing

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _state: &mut ()) -> Action {
        let data = conn.input(); // the bytes, straight from the loop's read buffer
        conn.write(data); // sent when the callback returns; only what the kernel refuses is buffered
        conn.consume(data.len());
        Action::Continue
    }
}

fn main() -> std::io::Result<()> {
    // `--addr HOST:PORT` picks the address (port 0: any free port).
    let addr = std::env::args().skip_while(|a| a != "--addr").nth(1);
    let server = Server::builder()
        .bind(addr.as_deref().unwrap_or("127.0.0.1:7000"))
        .loops(4)
        .start(|_| Echo)?;
    println!("listening on {}", server.local_addr());
    server.run_until_signal() // Ctrl-C or SIGTERM: graceful stop, returns after the drain
}
