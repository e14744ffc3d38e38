//! The sans-I/O engine of one WebSocket connection: [`Session`] reads frames from bytes it is
//! shown and reports [`Event`]s; [`Sender`] writes frames to an [`Output`].

use std::io;
use std::ops::ControlFlow;

use super::close::CloseCode;
#[cfg(feature = "ws-deflate")]
use super::deflate::{RxDeflate, SharedDeflate, TxDeflate};
use super::frame::{self, encode_header, MaskKeys, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER};
use super::recv::Rx;
use super::{Config, Output, Role};

/// The state of one WebSocket connection, both directions: where the frame being received
/// stands, the message being assembled, and whether close frames have been sent or received.
/// It does no I/O: [`receive`](Session::receive) is shown the bytes that arrived and answers
/// through an [`Output`]; the runner (the [`WsServer`](super::WsServer) adapter, or your own)
/// owns the socket and the timers.
///
/// An idle session holds no heap memory (about 100 bytes inline); a message split over
/// several frames or reads is assembled in a buffer of its own, bounded by
/// [`Config::max_message_size`], and freed once delivered.
///
/// ```
/// use std::ops::ControlFlow;
/// use eventide::ws::{Config, Event, Message, Role, Scratch, Session};
///
/// let config = Config::new();
/// let mut session = Session::new(Role::Server, &config);
/// let mut scratch = Scratch::new();
/// let mut out = Vec::new();
///
/// // A masked text frame "Hello" (RFC 6455 section 5.7), then half of another frame.
/// let input = [
///     0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, // "Hello"
///     0x81, 0x85, 0x37, 0xfa, // incomplete header
/// ];
/// let mut got = Vec::new();
/// let used = session.receive(&input, &mut scratch, &mut out, |event, tx, out| {
///     if let Event::Message(Message::Text(text)) = event {
///         got.push(text.to_string());
///         tx.text(out, text).unwrap(); // echo it
///     }
///     ControlFlow::Continue(())
/// });
/// assert_eq!(got, ["Hello"]);
/// assert_eq!(used, 11); // the incomplete header is left for the next call
/// assert_eq!(out, b"\x81\x05Hello"); // the server's frame is not masked
/// ```
#[derive(Debug)]
pub struct Session {
    pub(crate) rx: Rx,
    tx: Tx,
}

/// Per-thread buffers (and, with permessage-deflate, the shared compression contexts) that
/// every [`Session`] of a thread uses in turn: one per event loop, not one per connection.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) rx: RxScratch,
    tx: TxScratch,
}

impl Scratch {
    /// Empty buffers; they grow to the largest frame handled and shrink back after an
    /// unusually large one.
    pub fn new() -> Scratch {
        Scratch::default()
    }
}

#[derive(Debug, Default)]
pub(crate) struct RxScratch {
    /// A frame's payload, unmasked, at its front. Its length is the longest payload it held
    /// (see `recv::unmasked`).
    pub unmasked: Vec<u8>,
    /// A compressed message, inflated.
    #[cfg(feature = "ws-deflate")]
    pub inflated: Vec<u8>,
    #[cfg(feature = "ws-deflate")]
    pub deflate: SharedDeflate,
}

#[derive(Debug, Default)]
struct TxScratch {
    /// A client frame's payload, masked.
    masked: Vec<u8>,
    keys: MaskKeys,
    /// A message, compressed.
    #[cfg(feature = "ws-deflate")]
    deflated: Vec<u8>,
    /// The compressor shared by connections that keep no context.
    #[cfg(feature = "ws-deflate")]
    compressor: Option<flate2::Compress>,
}

/// Buffers above this are freed after use rather than kept for the next frame.
pub(crate) const KEEP_CAPACITY: usize = 256 * 1024;

/// Something that happened on the connection, reported by [`Session::receive`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A complete message (the default delivery).
    Message(Message<'a>),
    /// Part of a message, in streaming delivery ([`Config::streaming`]).
    Fragment(Fragment<'a>),
    /// A ping arrived; the pong has already been written.
    Ping(&'a [u8]),
    /// A pong arrived (an answer to a ping, or unsolicited).
    Pong(&'a [u8]),
    /// The peer sent a close frame. If this side had not sent one, the echo of its code has
    /// been written. Nothing more will be read: close the TCP connection once the output is
    /// flushed.
    Close(super::CloseFrame<'a>),
    /// The peer broke the protocol, or exceeded a limit; the close frame with the code has
    /// been written (unless one was sent before). Close the TCP connection once it is flushed.
    Failed(ProtocolError),
}

/// A complete message: text (validated UTF-8) or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// A piece of a message in streaming delivery: the pieces of a message, in order, add up to
/// the message. A text piece may end inside a character (the whole text is still checked to
/// be UTF-8, failing at the first bad byte); a compressed message arrives in one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Whether the message is text.
    pub text: bool,
    /// The bytes of this piece.
    pub data: &'a [u8],
    /// The first piece of its message.
    pub first: bool,
    /// The last piece of its message.
    pub last: bool,
}

/// Why the connection was failed: the close code sent and a short description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The code sent in the close frame (1002, 1007 or 1009).
    pub code: CloseCode,
    /// What was wrong.
    pub what: &'static str,
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (close {})", self.what, self.code)
    }
}

impl std::error::Error for ProtocolError {}

/// What [`Session::check_idle`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Bytes arrived since the last check.
    Active,
    /// Nothing arrived since the last check: a ping was written.
    Pinged,
    /// Nothing arrived since the ping of the last check, not even its pong: the peer is gone.
    Unresponsive,
}

/// What the callback of [`Session::receive`] returns: carry on, or stop before the next frame.
pub type Flow = ControlFlow<()>;

mod tx_flag {
    /// A close frame was written.
    pub const CLOSE_SENT: u8 = 1 << 0;
    /// A fragmented message is being sent ([`Sender::fragment`]).
    pub const FRAGMENTING: u8 = 1 << 1;
    /// Nothing had arrived at the last idle check: a ping is out.
    pub const PINGED: u8 = 1 << 2;
}

#[derive(Debug)]
struct Tx {
    role: Role,
    flags: u8,
    #[cfg(feature = "ws-deflate")]
    deflate: Option<Box<TxDeflate>>,
}

impl Session {
    /// A session for one side of a connection whose handshake is done.
    pub fn new(role: Role, config: &Config) -> Session {
        Session {
            rx: Rx::new(role, config),
            tx: Tx {
                role,
                flags: 0,
                #[cfg(feature = "ws-deflate")]
                deflate: None,
            },
        }
    }

    /// Turns permessage-deflate on, with the parameters the handshake agreed
    /// ([`Accepted::deflate`](super::Accepted::deflate) on a server,
    /// [`ClientHandshake::validate`](super::ClientHandshake::validate) on a client).
    #[cfg(feature = "ws-deflate")]
    pub fn with_deflate(mut self, agreed: super::DeflateParams) -> Session {
        self.rx.deflate = Some(Box::new(RxDeflate::new(self.tx.role, agreed)));
        self.tx.deflate = Some(Box::new(TxDeflate::new(self.tx.role, agreed)));
        self
    }

    /// The role this session plays.
    pub fn role(&self) -> Role {
        self.tx.role
    }

    /// Reads the frames in `input`, calling `on_event` for each event, and returns how many
    /// bytes it used. Pings are answered, a peer's close is echoed, and a protocol violation
    /// writes the close frame with its code, all to `out`; the callback can send through
    /// the [`Sender`] it is given, or return `ControlFlow::Break(())` to stop before the next
    /// frame.
    ///
    /// Bytes not used are an incomplete frame header or control frame (at most 139 bytes):
    /// show them again with what arrives next. The payload of a data frame is taken as it
    /// arrives (unmasked into the message's buffer), so a large frame never waits whole in
    /// the input. After a close or a failure, all input is used and ignored.
    pub fn receive<O, F>(
        &mut self,
        input: &[u8],
        scratch: &mut Scratch,
        out: &mut O,
        mut on_event: F,
    ) -> usize
    where
        O: Output + ?Sized,
        F: FnMut(Event<'_>, &mut Sender<'_>, &mut O) -> Flow,
    {
        let Session { rx, tx } = self;
        let Scratch {
            rx: rx_scratch,
            tx: tx_scratch,
        } = scratch;
        let mut sender = Sender {
            tx,
            scratch: tx_scratch,
        };
        rx.receive(input, rx_scratch, &mut |event| {
            // A ping is answered before the application sees it; a close is echoed (its
            // code only: the reason was the peer's).
            match &event {
                Event::Ping(payload) => {
                    let _ = sender.control(out, OpCode::Pong, payload);
                }
                Event::Close(close) => sender.write_close(out, close.code, ""),
                Event::Failed(err) => sender.write_close(out, Some(err.code), err.what),
                _ => {}
            }
            on_event(event, &mut sender, out)
        })
    }

    /// A [`Sender`] for writing outside [`receive`](Session::receive)'s callback.
    pub fn sender<'s>(&'s mut self, scratch: &'s mut Scratch) -> Sender<'s> {
        Sender {
            tx: &mut self.tx,
            scratch: &mut scratch.tx,
        }
    }

    /// For an idle-ping timer: call it every period. If nothing arrived since the last call,
    /// it writes a ping; if nothing arrived since that ping either, the peer is
    /// [`Unresponsive`](Liveness::Unresponsive) and the runner should close the connection.
    /// A dead peer is thus found within two periods, and a busy connection costs nothing.
    pub fn check_idle<O: Output + ?Sized>(
        &mut self,
        scratch: &mut Scratch,
        out: &mut O,
    ) -> Liveness {
        if self.rx.take_heard() {
            self.tx.flags &= !tx_flag::PINGED;
            return Liveness::Active;
        }
        if self.tx.flags & tx_flag::PINGED != 0 {
            return Liveness::Unresponsive;
        }
        self.tx.flags |= tx_flag::PINGED;
        let _ = self.sender(scratch).ping(out, b"");
        Liveness::Pinged
    }

    /// Whether a close frame was written (by either side's initiative).
    pub fn close_sent(&self) -> bool {
        self.tx.flags & tx_flag::CLOSE_SENT != 0
    }

    /// Whether the peer's close frame arrived, or the connection was failed: nothing more
    /// will be read.
    pub fn is_finished(&self) -> bool {
        self.rx.is_finished()
    }
}

/// Writes frames for one [`Session`]: messages, fragments, pings, pongs and the close frame.
/// A server's frames go out unmasked; a client's are masked with a fresh unpredictable key
/// each. After the close frame, every send fails with `NotConnected`.
#[derive(Debug)]
pub struct Sender<'s> {
    tx: &'s mut Tx,
    scratch: &'s mut TxScratch,
}

impl Sender<'_> {
    /// A shorter-lived sender for the same session.
    pub(crate) fn reborrow(&mut self) -> Sender<'_> {
        Sender {
            tx: &mut *self.tx,
            scratch: &mut *self.scratch,
        }
    }

    /// Sends a text message (compressed when permessage-deflate was agreed and the message
    /// is at least [`DeflateConfig::min_size`](super::DeflateConfig::min_size)).
    #[inline]
    pub fn text<O: Output + ?Sized>(&mut self, out: &mut O, text: &str) -> io::Result<()> {
        self.message(out, OpCode::Text, text.as_bytes())
    }

    /// Sends a binary message.
    #[inline]
    pub fn binary<O: Output + ?Sized>(&mut self, out: &mut O, data: &[u8]) -> io::Result<()> {
        self.message(out, OpCode::Binary, data)
    }

    /// Sends a message of the same kind as `msg` (an echo).
    #[inline]
    pub fn send<O: Output + ?Sized>(&mut self, out: &mut O, msg: Message<'_>) -> io::Result<()> {
        match msg {
            Message::Text(t) => self.text(out, t),
            Message::Binary(b) => self.binary(out, b),
        }
    }

    /// Sends one frame of a fragmented message: the first call opens the message (`text`
    /// says its kind; later calls ignore it), the one with `last` set ends it. Fragments are
    /// not compressed. Messages cannot be interleaved: until `last`, use only `fragment`
    /// (control frames may be sent in between).
    pub fn fragment<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        text: bool,
        data: &[u8],
        last: bool,
    ) -> io::Result<()> {
        self.check_open()?;
        let opcode = if self.tx.flags & tx_flag::FRAGMENTING != 0 {
            OpCode::Continuation
        } else if text {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        if last {
            self.tx.flags &= !tx_flag::FRAGMENTING;
        } else {
            self.tx.flags |= tx_flag::FRAGMENTING;
        }
        self.frame(out, last, false, opcode, data);
        Ok(())
    }

    /// Sends a ping (at most 125 bytes of payload).
    pub fn ping<O: Output + ?Sized>(&mut self, out: &mut O, payload: &[u8]) -> io::Result<()> {
        self.control(out, OpCode::Ping, payload)
    }

    /// Sends an unsolicited pong (at most 125 bytes), e.g. as a one-way heartbeat.
    pub fn pong<O: Output + ?Sized>(&mut self, out: &mut O, payload: &[u8]) -> io::Result<()> {
        self.control(out, OpCode::Pong, payload)
    }

    /// Starts the closing handshake: sends a close frame with `code` (one that may be sent,
    /// see [`CloseCode::is_valid`]) and `reason` (at most 123 bytes). The peer answers with
    /// its own close frame, reported as [`Event::Close`]; then the TCP connection is closed.
    pub fn close<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        code: CloseCode,
        reason: &str,
    ) -> io::Result<()> {
        self.check_open()?;
        if !code.is_valid() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("close code {code} may not be sent"),
            ));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "close reason longer than 123 bytes",
            ));
        }
        self.write_close(out, Some(code), reason);
        Ok(())
    }

    /// Whether the close frame has been written: nothing more can be sent.
    pub fn is_closing(&self) -> bool {
        self.tx.flags & tx_flag::CLOSE_SENT != 0
    }

    #[inline]
    fn check_open(&self) -> io::Result<()> {
        if self.is_closing() {
            Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the WebSocket close frame has been sent",
            ))
        } else {
            Ok(())
        }
    }

    #[inline]
    fn message<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        opcode: OpCode,
        data: &[u8],
    ) -> io::Result<()> {
        self.check_open()?;
        if self.tx.flags & tx_flag::FRAGMENTING != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a fragmented message is being sent",
            ));
        }
        #[cfg(feature = "ws-deflate")]
        if let Some(d) = self.tx.deflate.as_deref_mut() {
            if data.len() >= d.min_size() {
                let mut buf = std::mem::take(&mut self.scratch.deflated);
                d.compress(&mut self.scratch.compressor, data, &mut buf)?;
                self.frame(out, true, true, opcode, &buf);
                if buf.capacity() <= KEEP_CAPACITY {
                    self.scratch.deflated = buf;
                }
                return Ok(());
            }
        }
        self.frame(out, true, false, opcode, data);
        Ok(())
    }

    fn control<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        opcode: OpCode,
        payload: &[u8],
    ) -> io::Result<()> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control frame payload longer than 125 bytes",
            ));
        }
        self.frame(out, true, false, opcode, payload);
        Ok(())
    }

    /// Writes the close frame (`code` `None`: an empty body) and marks the session closing.
    pub(crate) fn write_close<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        if self.is_closing() {
            return;
        }
        let mut body = [0u8; MAX_CONTROL_PAYLOAD];
        let len = match code {
            None => 0,
            Some(code) => {
                let reason = truncate_utf8(reason, MAX_CONTROL_PAYLOAD - 2);
                body[..2].copy_from_slice(&code.0.to_be_bytes());
                body[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
                2 + reason.len()
            }
        };
        self.frame(out, true, false, OpCode::Close, &body[..len]);
        self.tx.flags |= tx_flag::CLOSE_SENT;
    }

    /// Writes one frame: header, then the payload (masked on a client).
    #[inline]
    fn frame<O: Output + ?Sized>(
        &mut self,
        out: &mut O,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
    ) {
        let mut header = [0u8; MAX_HEADER];
        match self.tx.role {
            Role::Server => {
                let n = encode_header(&mut header, fin, rsv1, opcode, payload.len(), None);
                out.put_vectored(&[&header[..n], payload]);
            }
            Role::Client => {
                let key = self.scratch.keys.next_key();
                let n = encode_header(&mut header, fin, rsv1, opcode, payload.len(), Some(key));
                let masked = &mut self.scratch.masked;
                masked.clear();
                masked.extend_from_slice(&header[..n]);
                frame::unmask_into(masked, payload, key, 0);
                out.put(masked);
                if masked.capacity() > KEEP_CAPACITY {
                    *masked = Vec::new();
                }
            }
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
