//! A minimal RFC 6455 client for the load generators: the opening handshake, and a stream that
//! writes each message as one masked frame and reads the server's frames back as payload bytes.
//!
//! It works against any conforming server: it accepts every payload-length encoding,
//! fragmented messages (continuation frames, control frames between them), and answers pings
//! with pongs. It refuses what a server must not send (masked frames, reserved bits, unknown
//! opcodes, a continuation outside a message) and a close frame, with a clear error. With an
//! expected message size it also checks that every message the server sends has that size, so
//! an echo that merges or splits messages is caught, not only one that changes bytes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};

use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Opcodes.
pub const TEXT: u8 = 0x1;
/// Binary message.
pub const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn invalid(msg: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, msg)
}

/// Performs the opening handshake on a blocking socket (`GET path`, version 13) and checks
/// the server's `101` and `Sec-WebSocket-Accept`. Returns the bytes that followed the
/// response head (frames the server sent right away).
pub fn handshake(sock: &mut StdTcpStream, addr: SocketAddr, path: &str) -> io::Result<Vec<u8>> {
    let key = generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    sock.write_all(req.as_bytes())?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 * 1024 {
            return Err(invalid("handshake: response head over 16 KiB".into()));
        }
        match sock.read(&mut buf)? {
            0 => {
                return Err(invalid(
                    "handshake: connection closed before the response".into(),
                ))
            }
            n => head.extend_from_slice(&buf[..n]),
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let status = text.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("101") {
        return Err(invalid(format!("handshake: expected 101, got {status:?}")));
    }
    let want = derive_accept_key(key.as_bytes());
    let accept = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim().to_string())
    });
    if accept.as_deref() != Some(want.as_str()) {
        return Err(invalid(format!(
            "handshake: Sec-WebSocket-Accept {accept:?}, expected {want:?}"
        )));
    }
    Ok(head[end..].to_vec())
}

/// Connects to `addr` and performs the handshake; the socket is left blocking.
pub fn connect_blocking(addr: SocketAddr, path: &str) -> io::Result<(StdTcpStream, Vec<u8>)> {
    let mut sock = StdTcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let rest = handshake(&mut sock, addr, path)?;
    Ok((sock, rest))
}

/// How a [`WsStream`] frames and checks messages.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    /// Opcode of the messages written ([`TEXT`] or [`BINARY`]).
    pub opcode: u8,
    /// Bytes per message written: a write of `k × size` bytes becomes `k` frames. `None`: one
    /// frame per write.
    pub frame_size: Option<usize>,
    /// The size every message read must have, if known.
    pub expect: Option<usize>,
}

/// A WebSocket connection after its handshake (see the module docs). On a non-blocking socket
/// it keeps the contract of [`Stream`](crate::stream::Stream).
pub struct WsStream<S> {
    sock: S,
    framing: Framing,
    /// Encoded frames not yet written, from `out_off`.
    out: Vec<u8>,
    out_off: usize,
    /// Bytes read from the socket, not yet parsed: `inbuf[in_start..in_end]`.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Payload bytes left in the data frame being read, and whether it ends its message.
    frame_left: u64,
    frame_fin: bool,
    /// Bytes of the message being read so far; `None` between messages.
    message: Option<usize>,
    /// xorshift state for the masking keys.
    mask_state: u64,
    eof: bool,
}

impl<S: Read + Write> WsStream<S> {
    /// A stream over `sock`, starting with the bytes `rest` that followed the handshake.
    pub fn new(sock: S, rest: Vec<u8>, framing: Framing, seed: u64) -> WsStream<S> {
        let mut inbuf = vec![0u8; (64 * 1024).max(rest.len())];
        inbuf[..rest.len()].copy_from_slice(&rest);
        WsStream {
            sock,
            framing,
            out: Vec::new(),
            out_off: 0,
            inbuf,
            in_start: 0,
            in_end: rest.len(),
            frame_left: 0,
            frame_fin: false,
            message: None,
            mask_state: seed | 1,
            eof: false,
        }
    }

    /// The socket.
    pub fn socket(&mut self) -> &mut S {
        &mut self.sock
    }

    /// Writes the encoded frames the socket refused earlier.
    pub fn flush_out(&mut self) -> io::Result<()> {
        while self.out_off < self.out.len() {
            match self.sock.write(&self.out[self.out_off..]) {
                Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_off = 0;
        Ok(())
    }

    fn next_key(&mut self) -> [u8; 4] {
        let x = &mut self.mask_state;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x as u32).to_le_bytes()
    }

    /// Appends one masked frame holding `payload` to the output.
    fn encode(&mut self, opcode: u8, payload: &[u8]) {
        let key = self.next_key();
        let len = payload.len();
        self.out.push(0x80 | opcode);
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&key);
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        mask(&mut self.out[start..], key);
    }

    /// Ends the message being read, checking its size.
    fn end_message(&mut self) -> io::Result<()> {
        let got = self.message.take().unwrap_or(0);
        match self.framing.expect {
            Some(want) if got != want => Err(invalid(format!(
                "the server sent a message of {got} bytes, expected {want}"
            ))),
            _ => Ok(()),
        }
    }

    /// Moves payload bytes of the parsed input into `dst`; handles control frames on the way.
    fn take_payload(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        loop {
            let avail = self.in_end - self.in_start;
            if self.frame_left > 0 {
                let k = (self.frame_left.min(avail as u64) as usize).min(dst.len() - n);
                if k == 0 {
                    return Ok(n);
                }
                dst[n..n + k].copy_from_slice(&self.inbuf[self.in_start..self.in_start + k]);
                self.in_start += k;
                self.frame_left -= k as u64;
                n += k;
                *self.message.get_or_insert(0) += k;
                if self.frame_left == 0 && self.frame_fin {
                    self.end_message()?;
                }
                continue;
            }
            let h = &self.inbuf[self.in_start..self.in_end];
            if h.len() < 2 {
                return Ok(n);
            }
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0F);
            if h[0] & 0x70 != 0 {
                return Err(invalid(format!(
                    "the server set reserved bits ({:#04x})",
                    h[0]
                )));
            }
            if h[1] & 0x80 != 0 {
                return Err(invalid("the server sent a masked frame".into()));
            }
            let (len, hlen) = match h[1] & 0x7F {
                126 if h.len() >= 4 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
                127 if h.len() >= 10 => (
                    u64::from_be_bytes(h[2..10].try_into().expect("8 bytes")),
                    10,
                ),
                126 | 127 => return Ok(n),
                l => (u64::from(l), 2),
            };
            if opcode >= CLOSE {
                if !fin || len > 125 {
                    return Err(invalid(
                        "the server sent a fragmented or long control frame".into(),
                    ));
                }
                if h.len() < hlen + len as usize {
                    return Ok(n);
                }
                let payload = h[hlen..hlen + len as usize].to_vec();
                self.in_start += hlen + len as usize;
                match opcode {
                    PING => {
                        self.encode(PONG, &payload);
                        match self.flush_out() {
                            Err(e) if e.kind() != ErrorKind::WouldBlock => return Err(e),
                            _ => {}
                        }
                    }
                    PONG => {}
                    CLOSE => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        return Err(io::Error::new(
                            ErrorKind::ConnectionAborted,
                            format!("the server closed the WebSocket (code {code:?})"),
                        ));
                    }
                    _ => return Err(invalid(format!("the server sent opcode {opcode:#x}"))),
                }
                continue;
            }
            match (opcode, self.message.is_some()) {
                (TEXT | BINARY, false) => self.message = Some(0),
                (CONTINUATION, true) => {}
                (TEXT | BINARY, true) => {
                    return Err(invalid("the server began a message inside another".into()))
                }
                (CONTINUATION, false) => {
                    return Err(invalid(
                        "the server sent a continuation outside a message".into(),
                    ))
                }
                _ => return Err(invalid(format!("the server sent opcode {opcode:#x}"))),
            }
            self.in_start += hlen;
            self.frame_left = len;
            self.frame_fin = fin;
            if len == 0 && fin {
                self.end_message()?;
            }
        }
    }
}

/// XORs `payload` with `key`, eight bytes at a time: the load tool masks every byte it sends,
/// and a byte-at-a-time loop made masking a third of its CPU (enough to leave it the
/// bottleneck against a fast server).
fn mask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = payload.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes((&*w).try_into().expect("8 bytes")) ^ wide;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so its key phase is its own index.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

impl<S: Read + Write> Read for WsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        loop {
            n += self.take_payload(&mut buf[n..])?;
            if n == buf.len() || buf.is_empty() {
                return Ok(n);
            }
            if self.eof {
                if self.frame_left > 0 || self.in_end > self.in_start || self.message.is_some() {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the server closed the connection inside a frame",
                    ));
                }
                return Ok(n);
            }
            if self.in_start == self.in_end {
                (self.in_start, self.in_end) = (0, 0);
            } else if self.in_end == self.inbuf.len() {
                self.inbuf.copy_within(self.in_start..self.in_end, 0);
                (self.in_start, self.in_end) = (0, self.in_end - self.in_start);
            }
            let room = self.inbuf.len() - self.in_end;
            match self.sock.read(&mut self.inbuf[self.in_end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    self.in_end += k;
                    if k < room {
                        // A short read drained the socket: return what it gave.
                        n += self.take_payload(&mut buf[n..])?;
                        return if n > 0 || self.eof {
                            Ok(n)
                        } else {
                            Err(ErrorKind::WouldBlock.into())
                        };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && n > 0 => return Ok(n),
                Err(e) => return Err(e),
            }
        }
    }
}

impl<S: Read + Write> Write for WsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush_out()?;
        let size = self.framing.frame_size.unwrap_or(buf.len()).max(1);
        for chunk in buf.chunks(size) {
            self.encode(self.framing.opcode, chunk);
        }
        match self.flush_out() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(buf.len()),
            Err(e) => Err(e),
            Ok(()) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_out()
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn mask_is_rfc6455_masking_at_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=41 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut masked = plain.clone();
            mask(&mut masked, key);
            let want: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(masked, want, "length {len}");
        }
    }
}
