//! The codecs on a real server over loopback: frames written one byte per segment come back
//! identical, and an oversize frame closes its connection with the protocol reason while
//! another connection on the same loop keeps being served.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;

use eventide::codec::{Codec, Endian, LengthCodec, LineCodec, PrefixWidth};
use eventide::{Action, CloseReason, Conn, ConnId, Handler, Refusal, Server};
use util::{connect, read_until_closed, Checks, Failures, Rng};

/// How a connection ended: its stable reason name and its description.
#[derive(Debug)]
struct Closed {
    id: ConnId,
    name: &'static str,
    text: String,
}

/// Echoes every frame with the same codec; an invalid frame closes the connection.
struct FrameEcho<C> {
    codec: C,
    closed: mpsc::Sender<Closed>,
    checks: Checks,
}

impl<C: Codec + Send + 'static> Handler for FrameEcho<C> {
    type State = ();
    type Message = ();

    fn on_open(&mut self, _conn: &mut Conn<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn on_data(&mut self, conn: &mut Conn<'_>, _: &mut ()) -> Action {
        while let Some(frame) = self.codec.next_frame_or_close(conn) {
            let written = self.codec.write_frame(conn, frame);
            if self
                .checks
                .ok(written, "a decoded frame re-encodes")
                .is_none()
            {
                return Action::Close;
            }
        }
        Action::Continue
    }

    fn on_close(&mut self, id: ConnId, _: (), reason: &CloseReason) {
        let _ = self.closed.send(Closed {
            id,
            name: reason.as_str(),
            text: reason.to_string(),
        });
    }
}

fn start<C: Codec + Clone + Send + 'static>(
    codec: &C,
) -> (Server, mpsc::Receiver<Closed>, Failures) {
    let (tx, rx) = mpsc::channel();
    let (checks, failures) = util::checks();
    let codec = codec.clone();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .loops(1)
        .start(move |_| FrameEcho {
            codec: codec.clone(),
            closed: tx.clone(),
            checks: checks.clone(),
        })
        .expect("server starts");
    (server, rx, failures)
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = connect(addr);
    s.set_nodelay(true).unwrap();
    s
}

/// Writes `bytes` one byte per `write` (one segment each, with `TCP_NODELAY`).
fn write_bytewise(s: &mut TcpStream, bytes: &[u8]) {
    for b in bytes {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
}

/// Reads from `s` until `count` frames have been decoded with `codec`; nothing may follow.
fn read_frames<C: Codec>(s: &mut TcpStream, codec: &C, count: usize) -> Vec<Vec<u8>> {
    let mut input = Vec::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 4096];
    while frames.len() < count {
        let n = s.read(&mut buf).expect("reply within the timeout");
        assert!(
            n > 0,
            "server closed after {} of {count} frames",
            frames.len()
        );
        input.extend_from_slice(&buf[..n]);
        while let Some((frame, used)) = codec.decode(&input).expect("valid reply") {
            frames.push(frame.to_vec());
            input.drain(..used);
        }
    }
    assert!(input.is_empty(), "unexpected bytes after the replies");
    frames
}

/// Payloads for `codec`: empty ones, ones of exactly the maximum, random sizes and bytes
/// (newlines left out for lines, and a `\r` at the end of some).
fn payloads(codec_max: usize, lines: bool, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut all = vec![Vec::new(), vec![b'm'; codec_max], Vec::new()];
    for i in 0..60 {
        let len = rng.range(0, codec_max as u64) as usize;
        let mut p = rng.bytes(len);
        if lines {
            for b in &mut p {
                if *b == b'\n' {
                    *b = b' ';
                }
            }
            if i % 7 == 0 && !p.is_empty() {
                *p.last_mut().unwrap() = b'\r';
            }
        }
        all.push(p);
    }
    all
}

/// One byte per write of a stream of frames comes back as the same frames.
fn echo_bytewise<C: Codec>(addr: SocketAddr, codec: &C, sent: &[Vec<u8>]) {
    let mut s = client(addr);
    let mut stream = Vec::new();
    for p in sent {
        codec.encode(p, &mut stream).unwrap();
    }
    write_bytewise(&mut s, &stream);
    let back = read_frames(&mut s, codec, sent.len());
    assert!(back == sent, "echoed frames differ");
    // End of stream: the server closes after its last reply, with nothing more.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, reset) = read_until_closed(&mut s);
    assert!(rest.is_empty() && !reset, "clean close after the replies");
}

/// An orderly end: the client's end of stream, answered by the handler's default
/// `on_read_closed`.
fn assert_orderly(c: &Closed) {
    assert_eq!(c.name, "peer_closed", "{c:?}");
}

/// The whole scenario for one codec. `oversize` is a stream whose last frame is invalid and
/// detectable before it ends (no newline yet, or only a length prefix).
fn scenario<C: Codec + Clone + Send + 'static>(codec: C, lines: bool, oversize: Vec<u8>) {
    let (server, closed, failures) = start(&codec);
    let addr = server.local_addr();
    let sent = payloads(codec.max_frame(), lines, 42);

    // A connection that stays open through everything.
    let mut steady = client(addr);
    let mut hello = Vec::new();
    codec.encode(b"hello", &mut hello).unwrap();
    steady.write_all(&hello).unwrap();
    assert_eq!(read_frames(&mut steady, &codec, 1), vec![b"hello".to_vec()]);

    echo_bytewise(addr, &codec, &sent);
    let done = failures.recv(&closed, "the echo client's close");
    assert_orderly(&done);

    // A valid frame, then the oversize one, one byte at a time: the reply to the first still
    // arrives, then the server closes without waiting for the rest of the bad frame.
    let mut bad = client(addr);
    let mut stream = Vec::new();
    codec.encode(b"before", &mut stream).unwrap();
    stream.extend_from_slice(&oversize);
    write_bytewise(&mut bad, &stream);
    let (got, _reset) = read_until_closed(&mut bad);
    drop(bad); // lets the server's lingering close finish
    let mut expect = Vec::new();
    codec.encode(b"before", &mut expect).unwrap();
    assert_eq!(
        got, expect,
        "the reply before the bad frame, then the close"
    );
    let why = failures.recv(&closed, "the oversize connection's close");
    assert_eq!(why.name, "protocol", "{why:?}");
    assert!(
        why.text.contains(&codec.max_frame().to_string()),
        "the reason names the limit: {why:?}"
    );

    // The steady connection was served all along, and still is.
    steady.write_all(&hello).unwrap();
    assert_eq!(read_frames(&mut steady, &codec, 1), vec![b"hello".to_vec()]);
    echo_bytewise(addr, &codec, &sent[..10]);
    let done = failures.recv(&closed, "the second echo client's close");
    assert_orderly(&done);
    assert_ne!(done.id, why.id);

    drop(steady);
    let last = failures.recv(&closed, "the steady connection's close");
    assert_orderly(&last);
    server.stop();
    server.join().unwrap();
}

#[test]
fn line_frames_survive_bytewise_delivery_and_oversize_lines_close() {
    let codec = LineCodec::new(200);
    // 201 bytes and no newline: invalid before any newline comes.
    scenario(codec, true, vec![b'x'; 201]);
}

#[test]
fn crlf_lines_are_stripped_and_max_plus_cr_is_not_oversize() {
    let codec = LineCodec::new(64).write_crlf(true);
    // Exactly max then `\r` is legal so far; the next byte makes it oversize.
    let mut oversize = vec![b'y'; 64];
    oversize.extend_from_slice(b"\rz");
    scenario(codec, true, oversize);
}

#[test]
fn length_prefixed_frames_survive_bytewise_delivery_and_oversize_prefixes_close() {
    let codec = LengthCodec::new(PrefixWidth::U16, 300);
    // A prefix announcing 40,000 bytes, and no body at all.
    scenario(codec, false, vec![0x9c, 0x40]);
}

#[test]
fn little_endian_self_counting_prefix() {
    let codec = LengthCodec::new(PrefixWidth::U32, 250)
        .endian(Endian::Little)
        .length_includes_prefix(true);
    // 251 + 4: one byte over the maximum.
    scenario(codec, false, vec![255, 0, 0, 0]);
}
