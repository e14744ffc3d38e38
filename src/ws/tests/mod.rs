//! Conformance of the engine, written from RFC 6455 — framing, fragmentation, control frames,
//! close codes, UTF-8, limits, reserved bits — each stream also fed cut at every byte. This
//! module is the test peer and the frame builders; the cases are in its submodules.

mod control;
mod frames;
mod messages;
mod props;

use std::ops::ControlFlow;

use super::frame::parse_header;
use super::*;

/// An event as recorded by the test peer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Piece(bool, Vec<u8>, bool, bool),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Failed(u16),
}

/// One side of a connection, fed bytes as reads would deliver them.
struct Peer {
    session: Session,
    scratch: Scratch,
    input: Vec<u8>,
    out: Vec<u8>,
    events: Vec<Ev>,
}

impl Peer {
    fn new(role: Role, config: &Config) -> Peer {
        Peer {
            session: Session::new(role, config),
            scratch: Scratch::new(),
            input: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    fn server() -> Peer {
        Peer::new(Role::Server, &Config::new())
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        let events = &mut self.events;
        let used =
            self.session
                .receive(&self.input, &mut self.scratch, &mut self.out, |e, _, _| {
                    events.push(match e {
                        Event::Message(Message::Text(t)) => Ev::Text(t.into()),
                        Event::Message(Message::Binary(b)) => Ev::Binary(b.into()),
                        Event::Fragment(f) => Ev::Piece(f.text, f.data.into(), f.first, f.last),
                        Event::Ping(p) => Ev::Ping(p.into()),
                        Event::Pong(p) => Ev::Pong(p.into()),
                        Event::Close(c) => Ev::Close(c.code.map(|c| c.0), c.reason.into()),
                        Event::Failed(e) => Ev::Failed(e.code.0),
                    });
                    ControlFlow::Continue(())
                });
        self.input.drain(..used);
    }

    /// The frames written, as (first header byte, payload); server frames are unmasked.
    fn written(&self) -> Vec<(u8, Vec<u8>)> {
        decode(&self.out)
    }

    /// The code of the close frame written, if any.
    fn close_sent(&self) -> Option<Option<u16>> {
        self.written()
            .into_iter()
            .find(|(b0, _)| b0 & 0x0F == 0x8)
            .map(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
    }
}

fn decode(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Ok(Some(h)) = parse_header(out) {
        let end = h.size + h.len as usize;
        let mut payload = out[h.size..end].to_vec();
        if let Some(key) = h.mask {
            frame::apply_mask(&mut payload, key, 0);
        }
        frames.push((out[0], payload));
        out = &out[end..];
    }
    assert!(out.is_empty(), "trailing bytes in the output");
    frames
}

const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// A frame as a client would send it: `b0` is FIN/RSV/opcode, the payload is masked.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(b0, payload, Some(KEY))
}

fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => v.push(m | n as u8),
        n @ 126..=0xFFFF => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = v.len();
    v.extend_from_slice(payload);
    if let Some(key) = mask {
        v.splice(start..start, key);
        frame::apply_mask(&mut v[start + 4..], key, 0);
    }
    v
}

const TEXT: u8 = 0x81;
const BINARY: u8 = 0x82;
const TEXT_START: u8 = 0x01;
const CONT: u8 = 0x00;
const CONT_FIN: u8 = 0x80;
const CLOSE: u8 = 0x88;
const PING: u8 = 0x89;
const PONG: u8 = 0x8A;

/// Feeds `stream` whole, then cut at every position (two reads), then one byte at a time;
/// the events and the output must be the same each time. Returns the whole-stream peer.
fn run(config: &Config, stream: &[u8]) -> Peer {
    let mut whole = Peer::new(Role::Server, config);
    whole.feed(stream);
    let check = |p: &Peer, how: &str| {
        assert_eq!(p.events, whole.events, "events differ when fed {how}");
        assert_eq!(p.out, whole.out, "output differs when fed {how}");
    };
    // Every cut of a short stream; of a long one, the cuts near its frame headers and a
    // sample of the others.
    let cuts: Vec<usize> = if stream.len() <= 4096 {
        (0..stream.len()).collect()
    } else {
        (0..64)
            .chain(stream.len() - 64..stream.len())
            .chain((64..stream.len() - 64).step_by(997))
            .collect()
    };
    for cut in cuts {
        let mut p = Peer::new(Role::Server, config);
        p.feed(&stream[..cut]);
        p.feed(&stream[cut..]);
        check(&p, &format!("cut at {cut}"));
    }
    if stream.len() < 20_000 {
        let mut p = Peer::new(Role::Server, config);
        for b in stream {
            p.feed(std::slice::from_ref(b));
        }
        check(&p, "byte by byte");
    }
    whole
}

fn server(stream: &[u8]) -> Peer {
    run(&Config::new(), stream)
}
