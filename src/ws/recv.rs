//! The receiving half of a [`Session`](super::Session): frame headers checked against the
//! connection's rules, payloads unmasked as they arrive, messages assembled, text validated.

use super::close::{parse_close, CloseCode};
#[cfg(feature = "ws-deflate")]
use super::deflate::{InflateError, RxDeflate};
use super::frame::{self, parse_header, Header, OpCode, MAX_CONTROL_PAYLOAD};
use super::session::{Event, Flow, Fragment, Message, ProtocolError, RxScratch, KEEP_CAPACITY};
use super::utf8::Utf8;
use super::{Config, Role};

mod flag {
    /// Deliver messages in pieces as they arrive.
    pub const STREAMING: u8 = 1 << 0;
    /// A data frame without FIN has been received: continuations follow.
    pub const IN_MESSAGE: u8 = 1 << 1;
    /// The message in progress is text.
    pub const TEXT: u8 = 1 << 2;
    /// The message in progress is compressed (RSV1 on its first frame).
    pub const COMPRESSED: u8 = 1 << 3;
    /// A piece of the message in progress has been delivered (streaming).
    pub const PIECE_SENT: u8 = 1 << 4;
    /// The close frame arrived, or the connection failed: input is ignored.
    pub const FINISHED: u8 = 1 << 5;
    /// Bytes arrived since the last idle check.
    pub const HEARD: u8 = 1 << 6;
}

const NOT_UTF8: &str = "text message is not valid UTF-8";

/// A data frame whose header has been read and whose payload is still arriving.
#[derive(Clone, Copy, Debug)]
struct Partial {
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes of this frame already taken (the mask's phase).
    taken: u64,
}

#[derive(Debug)]
pub(crate) struct Rx {
    role: Role,
    flags: u8,
    max_frame: usize,
    max_message: usize,
    partial: Option<Partial>,
    /// Payload bytes of the message in progress received so far (compressed bytes, for a
    /// compressed message).
    received: u64,
    utf8: Utf8,
    /// The message in progress, when it is not delivered straight from one frame: unmasked
    /// (and, when compressed, still compressed). Empty and unallocated otherwise.
    buf: Vec<u8>,
    /// permessage-deflate was agreed: RSV1 marks a compressed message.
    #[cfg(feature = "ws-deflate")]
    pub deflate: Option<Box<RxDeflate>>,
}

/// The result of a step: carry on, stop at the application's request, or stop because the
/// connection is finished (the rest of the input is ignored).
enum Step {
    Go,
    Pause,
    Done,
}

impl From<Flow> for Step {
    fn from(flow: Flow) -> Step {
        if flow.is_break() {
            Step::Pause
        } else {
            Step::Go
        }
    }
}

impl Rx {
    pub(crate) fn new(role: Role, config: &Config) -> Rx {
        Rx {
            role,
            flags: if config.streaming { flag::STREAMING } else { 0 },
            max_frame: config.max_frame,
            max_message: config.max_message,
            partial: None,
            received: 0,
            utf8: Utf8::default(),
            buf: Vec::new(),
            #[cfg(feature = "ws-deflate")]
            deflate: None,
        }
    }

    /// Bytes held for the message in progress (tests: an idle session holds none).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.has(flag::FINISHED)
    }

    /// Whether bytes arrived since the last call (and forgets it).
    pub(crate) fn take_heard(&mut self) -> bool {
        let heard = self.has(flag::HEARD);
        self.flags &= !flag::HEARD;
        heard
    }

    /// See [`Session::receive`](super::Session::receive). Generic over the callback so that
    /// the usual frame's path (header, unmask, delivery) is one inlined piece of code with
    /// the application's handler; the rare paths take it as `dyn`.
    #[inline]
    pub(crate) fn receive<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        input: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut F,
    ) -> usize {
        if self.is_finished() {
            return input.len();
        }
        let mut pos = 0;
        while pos < input.len() {
            let (used, step) = self.step(&input[pos..], scratch, on_event);
            pos += used;
            match step {
                Step::Go if used > 0 => {}
                Step::Go | Step::Pause => break,
                Step::Done => {
                    pos = input.len();
                    break;
                }
            }
        }
        if pos > 0 {
            self.flags |= flag::HEARD;
        }
        if scratch.unmasked.capacity() > KEEP_CAPACITY {
            scratch.unmasked = Vec::new();
        }
        pos
    }

    /// Reads one frame header (and control frame), or one piece of a data frame's payload.
    /// Returns the bytes used; zero with [`Step::Go`] means more input is needed.
    #[inline]
    fn step<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        rest: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut F,
    ) -> (usize, Step) {
        if let Some(p) = self.partial {
            return self.continue_frame(p, rest, scratch, on_event);
        }
        if let Some(done) = self.usual_frame(rest, scratch, on_event) {
            return done;
        }
        self.new_frame(rest, scratch, on_event)
    }

    /// The usual frame, taken on a short path: a whole text or binary message, all of it in
    /// the input, between messages, within the limits. `None` for any other frame, read then
    /// by [`new_frame`](Self::new_frame), whose checks it would pass: nothing to keep
    /// between reads, so no message state is set (nor reset after).
    #[inline]
    fn usual_frame<F: FnMut(Event<'_>) -> Flow>(
        &mut self,
        rest: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut F,
    ) -> Option<(usize, Step)> {
        if self.has(flag::IN_MESSAGE) {
            return None;
        }
        let h = frame::parse_usual(rest, self.role == Role::Server)?;
        let end = h.size + h.len;
        let within = h.len <= self.max_frame
            && self.received.saturating_add(h.len as u64) <= self.max_message as u64;
        if !within || end > rest.len() {
            return None;
        }
        let data = unmasked(&rest[h.size..end], h.mask, 0, &mut scratch.unmasked);
        Some((end, self.deliver_whole(h.text, data, on_event)))
    }

    /// The next piece of the payload of the frame `p`, whose header was read before.
    fn continue_frame(
        &mut self,
        mut p: Partial,
        rest: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> (usize, Step) {
        let take = p.remaining.min(rest.len() as u64) as usize;
        let offset = p.taken;
        p.remaining -= take as u64;
        p.taken += take as u64;
        let done = p.remaining == 0;
        self.partial = if done { None } else { Some(p) };
        let last = p.fin && done;
        let step = self.payload(&rest[..take], p.mask, offset, last, scratch, on_event);
        (take, step)
    }

    /// Any frame from its header: checked against the connection's rules; a control frame
    /// once whole in the input, a data frame as much of its payload as is there.
    fn new_frame(
        &mut self,
        rest: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> (usize, Step) {
        let h = match parse_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) => return (0, Step::Go),
            Err(e) => {
                return (
                    0,
                    self.fail(CloseCode::PROTOCOL_ERROR, e.describe(), on_event),
                )
            }
        };
        if let Err((code, what)) = self.check(&h) {
            return (0, self.fail(code, what, on_event));
        }
        let avail = (rest.len() - h.size) as u64;
        if h.opcode.is_control() {
            if avail < h.len {
                return (0, Step::Go); // at most 139 bytes wait in the input
            }
            let end = h.size + h.len as usize;
            let step = self.control(&h, &rest[h.size..end], on_event);
            return (end, step);
        }
        if h.fin && h.opcode != OpCode::Continuation && !h.rsv1 && avail >= h.len {
            // A whole message in the input that the short path does not take (a 64-bit
            // length, say).
            let end = h.size + h.len as usize;
            let data = unmasked(&rest[h.size..end], h.mask, 0, &mut scratch.unmasked);
            let text = h.opcode == OpCode::Text;
            return (end, self.deliver_whole(text, data, on_event));
        }
        self.start_data_frame(&h, avail, rest, scratch, on_event)
    }

    /// A data frame that is not a whole message in the input: the message state it opens or
    /// continues, and the part of its payload that is there.
    fn start_data_frame(
        &mut self,
        h: &Header,
        avail: u64,
        rest: &[u8],
        scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> (usize, Step) {
        if h.opcode != OpCode::Continuation {
            self.flags |= flag::IN_MESSAGE;
            if h.opcode == OpCode::Text {
                self.flags |= flag::TEXT;
            }
            if h.rsv1 {
                self.flags |= flag::COMPRESSED;
            }
        }
        let take = h.len.min(avail);
        let done = take == h.len;
        if !done {
            self.partial = Some(Partial {
                fin: h.fin,
                mask: h.mask,
                remaining: h.len - take,
                taken: take,
            });
        }
        let chunk = &rest[h.size..h.size + take as usize];
        let step = self.payload(chunk, h.mask, 0, h.fin && done, scratch, on_event);
        (h.size + take as usize, step)
    }

    /// The rules a header must follow on this connection, in this state.
    fn check(&self, h: &Header) -> Result<(), (CloseCode, &'static str)> {
        let protocol = |what| Err((CloseCode::PROTOCOL_ERROR, what));
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return protocol("unmasked frame from a client"),
            (Role::Client, true) => return protocol("masked frame from a server"),
            _ => {}
        }
        if h.opcode.is_control() {
            if !h.fin {
                return protocol("fragmented control frame");
            }
            if h.len > MAX_CONTROL_PAYLOAD as u64 {
                return protocol("control frame payload longer than 125 bytes");
            }
            if h.rsv1 {
                return protocol("RSV1 set on a control frame");
            }
            return Ok(());
        }
        let in_message = self.has(flag::IN_MESSAGE);
        if h.opcode == OpCode::Continuation {
            if !in_message {
                return protocol("continuation frame without a message to continue");
            }
            if h.rsv1 {
                return protocol("RSV1 set on a continuation frame");
            }
        } else {
            if in_message {
                return protocol("new data frame inside a fragmented message");
            }
            if h.rsv1 && !self.deflate_agreed() {
                return protocol("RSV1 set without an extension that defines it");
            }
        }
        if h.len > self.max_frame as u64 {
            return Err((CloseCode::TOO_BIG, "frame larger than the limit"));
        }
        if self.received.saturating_add(h.len) > self.max_message as u64 {
            return Err((CloseCode::TOO_BIG, "message larger than the limit"));
        }
        Ok(())
    }

    fn deflate_agreed(&self) -> bool {
        #[cfg(feature = "ws-deflate")]
        return self.deflate.is_some();
        #[cfg(not(feature = "ws-deflate"))]
        false
    }

    fn control(
        &mut self,
        h: &Header,
        payload: &[u8],
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Step {
        let mut buf = [0u8; MAX_CONTROL_PAYLOAD];
        let payload = match h.mask {
            Some(key) => {
                let b = &mut buf[..payload.len()];
                b.copy_from_slice(payload);
                frame::apply_mask(b, key, 0);
                &*b
            }
            None => payload,
        };
        match h.opcode {
            OpCode::Ping => on_event(Event::Ping(payload)).into(),
            OpCode::Pong => on_event(Event::Pong(payload)).into(),
            _ => match parse_close(payload) {
                Ok(close) => {
                    self.flags |= flag::FINISHED;
                    let _ = on_event(Event::Close(close));
                    self.reset_message();
                    Step::Done
                }
                Err(bad) => self.fail(bad.code(), bad.describe(), on_event),
            },
        }
    }

    /// A piece of a data frame's payload, `offset` bytes into its frame; `last` when it ends
    /// the message.
    fn payload(
        &mut self,
        chunk: &[u8],
        mask: Option<[u8; 4]>,
        offset: u64,
        last: bool,
        scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Step {
        self.received += chunk.len() as u64;
        if self.has(flag::COMPRESSED) {
            return self.compressed(chunk, mask, offset, last, scratch, on_event);
        }
        let text = self.has(flag::TEXT);
        if self.has(flag::STREAMING) {
            let data = unmasked(chunk, mask, offset, &mut scratch.unmasked);
            if let Err(step) = self.validate(text, data, last, on_event) {
                return step;
            }
            if data.is_empty() && !last {
                return Step::Go;
            }
            let first = !self.has(flag::PIECE_SENT);
            self.flags |= flag::PIECE_SENT;
            let step = on_event(Event::Fragment(Fragment {
                text,
                data,
                first,
                last,
            }))
            .into();
            if last {
                self.reset_message();
            }
            return step;
        }
        if last && self.buf.is_empty() {
            // One frame holds the whole message, cut by a read but taken at once now that
            // its end has arrived: handed over from the input itself, or unmasked into the
            // loop's scratch buffer.
            let data = unmasked(chunk, mask, offset, &mut scratch.unmasked);
            let step = self.deliver_whole(text, data, on_event);
            self.reset_message();
            return step;
        }
        // Assembled in the message's own buffer, checked as it grows.
        let start = self.buf.len();
        append_unmasked(&mut self.buf, chunk, mask, offset);
        let mut buf = std::mem::take(&mut self.buf);
        if let Err(step) = self.validate(text, &buf[start..], last, on_event) {
            return step;
        }
        if !last {
            self.buf = buf;
            return Step::Go;
        }
        let step = on_event(Event::Message(message(text, &buf))).into();
        buf.clear();
        self.reset_message();
        step
    }

    /// Delivers a complete message held in one buffer (a frame that was the whole message, or
    /// an inflated message; in streaming delivery, one piece): one validation pass gives the
    /// `&str`. The caller forgets the message state, if it had any.
    #[inline]
    fn deliver_whole<F: FnMut(Event<'_>) -> Flow + ?Sized>(
        &mut self,
        text: bool,
        data: &[u8],
        on_event: &mut F,
    ) -> Step {
        let msg = if text {
            match std::str::from_utf8(data) {
                Ok(t) => Message::Text(t),
                Err(_) => return self.fail(CloseCode::INVALID_DATA, NOT_UTF8, on_event),
            }
        } else {
            Message::Binary(data)
        };
        let event = if self.has(flag::STREAMING) {
            Event::Fragment(Fragment {
                text,
                data,
                first: !self.has(flag::PIECE_SENT),
                last: true,
            })
        } else {
            Event::Message(msg)
        };
        on_event(event).into()
    }

    /// Checks the next piece of a text message, failing the connection on a bad byte (or, at
    /// the end of the message, on a character left unfinished).
    fn validate(
        &mut self,
        text: bool,
        data: &[u8],
        last: bool,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Result<(), Step> {
        if !text {
            return Ok(());
        }
        if self.utf8.feed(data).is_err() || (last && !self.utf8.is_complete()) {
            return Err(self.fail(CloseCode::INVALID_DATA, NOT_UTF8, on_event));
        }
        Ok(())
    }

    /// A piece of a compressed message: gathered until the message is complete, then
    /// inflated in one go (so a loop-wide inflater can serve every connection).
    #[cfg(feature = "ws-deflate")]
    fn compressed(
        &mut self,
        chunk: &[u8],
        mask: Option<[u8; 4]>,
        offset: u64,
        last: bool,
        scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Step {
        let whole = last && self.buf.is_empty();
        let mut buf = std::mem::take(&mut self.buf);
        if !whole {
            append_unmasked(&mut buf, chunk, mask, offset);
            if !last {
                self.buf = buf;
                return Step::Go;
            }
        }
        let raw = if whole {
            unmasked(chunk, mask, offset, &mut scratch.unmasked)
        } else {
            &buf[..]
        };
        let mut inflated = std::mem::take(&mut scratch.inflated);
        inflated.clear();
        let d = self.deflate.as_deref_mut();
        let result = d.map_or(Ok(()), |d| {
            d.inflate(&mut scratch.deflate, raw, &mut inflated, self.max_message)
        });
        let step = match result {
            Err(InflateError::TooBig) => self.fail(
                CloseCode::TOO_BIG,
                "message larger than the limit once inflated",
                on_event,
            ),
            Err(InflateError::Corrupt) => self.fail(
                CloseCode::INVALID_DATA,
                "compressed message is not valid DEFLATE data",
                on_event,
            ),
            Ok(()) => {
                let step = self.deliver_whole(self.has(flag::TEXT), &inflated, on_event);
                self.reset_message();
                step
            }
        };
        if inflated.capacity() <= KEEP_CAPACITY {
            scratch.inflated = inflated;
        }
        step
    }

    #[cfg(not(feature = "ws-deflate"))]
    fn compressed(
        &mut self,
        _chunk: &[u8],
        _mask: Option<[u8; 4]>,
        _offset: u64,
        _last: bool,
        _scratch: &mut RxScratch,
        on_event: &mut dyn FnMut(Event<'_>) -> Flow,
    ) -> Step {
        // Unreachable: RSV1 is refused when no extension was agreed.
        self.fail(CloseCode::PROTOCOL_ERROR, "RSV1 set", on_event)
    }

    /// Fails the connection: reports the violation (the session writes the close frame) and
    /// ignores all further input.
    #[cold]
    fn fail<F: FnMut(Event<'_>) -> Flow + ?Sized>(
        &mut self,
        code: CloseCode,
        what: &'static str,
        on_event: &mut F,
    ) -> Step {
        self.flags |= flag::FINISHED;
        self.partial = None;
        self.reset_message();
        let _ = on_event(Event::Failed(ProtocolError { code, what }));
        Step::Done
    }

    /// Forgets the message in progress, freeing its buffer.
    fn reset_message(&mut self) {
        self.flags &= !(flag::IN_MESSAGE | flag::TEXT | flag::COMPRESSED | flag::PIECE_SENT);
        self.received = 0;
        self.utf8 = Utf8::default();
        self.buf = Vec::new();
    }
}

/// A complete message's payload, known valid if it is text.
fn message(text: bool, data: &[u8]) -> Message<'_> {
    if text {
        // Validated incrementally before; checked again rather than trusted (a few cycles
        // per byte, and no `unsafe` outside `sys`).
        Message::Text(std::str::from_utf8(data).unwrap_or_default())
    } else {
        Message::Binary(data)
    }
}

/// `chunk` unmasked: itself if it was not masked, else a copy in `scratch`. The scratch
/// buffer keeps its length from frame to frame (its bytes stay initialised), so a payload is
/// unmasked straight into it in one pass, with no copy first; only its front is this frame.
#[inline]
fn unmasked<'a>(
    chunk: &'a [u8],
    mask: Option<[u8; 4]>,
    offset: u64,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    match mask {
        None => chunk,
        Some(key) => {
            if scratch.len() < chunk.len() {
                scratch.resize(chunk.len(), 0);
            }
            let out = &mut scratch[..chunk.len()];
            frame::unmask(out, chunk, key, (offset & 3) as usize);
            out
        }
    }
}

fn append_unmasked(dst: &mut Vec<u8>, chunk: &[u8], mask: Option<[u8; 4]>, offset: u64) {
    match mask {
        None => dst.extend_from_slice(chunk),
        Some(key) => frame::unmask_into(dst, chunk, key, (offset & 3) as usize),
    }
}
