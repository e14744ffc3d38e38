//! The gateway's streamed uploads: a request body goes upstream piece by piece as the
//! client sends it (with its `Content-Length`, or chunked again when it came chunked), never
//! held whole. While the upstream connection's output is past its high-water mark — or, for a
//! connection still being opened, once a few hundred KiB wait for it — the client's
//! connection is paused, and resumed when the upstream has drained (or is open).
//!
//! The sink of an upload lives on the loop like the service, and shares the loop's
//! [`Gateway`] with it: the request's head goes upstream with the first piece (or at the
//! body's end, for an empty chunked body), and with it the sink takes the request's
//! responder ([`SinkCx::defer`]), so the upstream's answer goes to the client whenever it
//! comes — before the body's end too, when the rest of the body is dropped and the upstream
//! connection is not reused. An upstream failing meanwhile gives the client `502`; a client
//! going away closes the upstream connection (a request cut short must not be reused).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use eventide::http::{Aborted, BodySink, Intake, Request, Response, SinkCx, Status, Trailers};
use eventide::LoopCx;

use super::parse::{ForwardHead, Framing};
use super::{Gateway, Shared, Upload};

/// Body bytes kept for an upstream connection still being opened before the client waits.
const PENDING_MAX: usize = 256 * 1024;

/// `Service::intake`: every request body is streamed upstream (one over `--max-body` with a
/// `Content-Length` is refused at once, with 413).
pub(super) fn intake(gw: &Arc<Mutex<Gateway>>, req: &Request<'_>) -> Intake {
    let shared = Shared(Arc::clone(gw));
    let mut g = shared.lock();
    let length = req
        .header("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > g.max_body) {
        return Intake::Refuse(Status::CONTENT_TOO_LARGE);
    }
    let upstream = g.pick();
    let head = ForwardHead::of(req, &g.upstreams[upstream].to_string());
    let max_body = g.max_body;
    drop(g);
    Intake::stream(Sink {
        gw: shared,
        place: Place::Ready(Box::new(Ready {
            upstream,
            head,
            head_only: req.method() == "HEAD",
        })),
        framing: length.map_or(Framing::Chunked, Framing::Length),
        max_body,
    })
}

/// One upload's sink.
struct Sink {
    gw: Shared,
    place: Place,
    framing: Framing,
    max_body: u64,
}

/// Where an upload's request stands.
enum Place {
    /// Its head waits for the first piece of the body.
    Ready(Box<Ready>),
    /// It went out on this link, as exchange `serial`.
    Sent { link: usize, serial: u64 },
}

struct Ready {
    upstream: usize,
    head: ForwardHead,
    head_only: bool,
}

impl Sink {
    /// The link carrying this upload, its head sent first if it was not (with `true`);
    /// `None` if the exchange is over: its answer, the upstream's or the gateway's own
    /// `502`/`504`, has gone to the responder.
    fn link(
        &mut self,
        g: &mut Gateway,
        cx: &mut LoopCx<'_>,
        client: Option<SocketAddr>,
    ) -> Option<(usize, bool)> {
        match &mut self.place {
            Place::Sent { link, serial } => {
                let ex = g.links.get(*link)?.exchange.as_ref()?;
                (ex.serial == *serial).then_some((*link, false))
            }
            Place::Ready(ready) => {
                let head = std::mem::replace(&mut ready.head, ForwardHead::empty());
                let mut ex = g.exchange(head.finish(client, self.framing), false, ready.head_only);
                ex.upload = Some(Upload::default());
                let serial = ex.serial;
                let link = g.dispatch(cx, ready.upstream, ex);
                self.place = Place::Sent { link, serial };
                Some((link, true))
            }
        }
    }
}

impl BodySink for Sink {
    fn data(&mut self, chunk: &[u8], cx: &mut SinkCx<'_>) -> Result<(), Status> {
        if cx.received() > self.max_body {
            return Err(Status::CONTENT_TOO_LARGE);
        }
        let client = cx.peer_addr();
        let gw = Shared(Arc::clone(&self.gw.0));
        let mut g = gw.lock();
        let (link, new, full) = {
            let mut lcx = cx.loop_cx().ok_or(Status::INTERNAL_SERVER_ERROR)?;
            let Some((link, new)) = self.link(&mut g, &mut lcx, client) else {
                return Ok(()); // answered already: the rest of the body is dropped
            };
            let chunked = self.framing == Framing::Chunked;
            (link, new, g.upload_bytes(&mut lcx, link, chunk, chunked))
        };
        let ex = g.links[link].exchange.as_mut();
        let Some(ex) = ex else {
            return Ok(());
        };
        if new {
            // The answer may come before the body's end (a 413, a 401...): it goes to the
            // client as it comes, through the request's responder, taken now.
            ex.responder = Some(cx.defer());
        }
        if full {
            if let Some(up) = ex.upload.as_mut() {
                up.resume = Some(cx.pause());
            }
        }
        Ok(())
    }

    fn end(mut self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let gw = Shared(Arc::clone(&self.gw.0));
        let mut g = gw.lock();
        let client = res.peer_addr();
        let chunked = self.framing == Framing::Chunked;
        let sent = res.loop_cx().map(|mut lcx| {
            let (link, new) = self.link(&mut g, &mut lcx, client)?;
            g.finish_upload(&mut lcx, link, chunked);
            Some((link, new))
        });
        match sent {
            None => res.status(Status::INTERNAL_SERVER_ERROR).body(b""), // no loop
            // No piece came before the end (an empty chunked body): answered from here.
            Some(Some((link, true))) => {
                if let Some(ex) = g.links[link].exchange.as_mut() {
                    ex.responder = Some(res.defer());
                }
            }
            // Answered through the responder taken with the first piece (or already).
            Some(_) => {}
        }
    }

    fn abort(self: Box<Self>, why: Aborted) {
        let Place::Sent { link, serial } = self.place else {
            return; // nothing went upstream
        };
        if why == Aborted::Answered {
            // The upstream's answer (or the gateway's) is out before the body's end: its
            // exchange goes on, and its connection closes after it (the upload never ends).
            return;
        }
        log::debug!("gateway: an upload ended early: {why:?}");
        let mut g = self.gw.lock();
        let Some(entry) = g.links.get_mut(link) else {
            return;
        };
        if entry.exchange.as_ref().is_some_and(|e| e.serial == serial) {
            // The request is cut short: its connection must not carry another.
            entry.exchange = None;
            if let Some(handle) = &entry.handle {
                let _ = handle.close();
            }
        }
    }
}

impl Gateway {
    /// The client's body is all in: the end of the upload on `link` goes out (a chunked
    /// body's last chunk) and the request is complete — unless the upstream answered
    /// before, when the body went out cut short: the upload stays unfinished, so the
    /// connection is not reused.
    fn finish_upload(&mut self, cx: &mut LoopCx<'_>, link: usize, chunked: bool) {
        let Some(ex) = self.links[link].exchange.as_ref() else {
            return;
        };
        if ex.reader.started() {
            return;
        }
        if chunked {
            self.upload_bytes(cx, link, b"0\r\n\r\n", false);
        }
        if let Some(ex) = self.links[link].exchange.as_mut() {
            ex.upload = None;
        }
    }

    /// Sends body bytes of the upload on `link` (as a chunk if `chunked`): straight out if
    /// the connection is open, else after its head once it is. Returns whether the client
    /// should wait.
    fn upload_bytes(
        &mut self,
        cx: &mut LoopCx<'_>,
        link: usize,
        bytes: &[u8],
        chunked: bool,
    ) -> bool {
        let entry = &mut self.links[link];
        let Some(ex) = entry.exchange.as_mut() else {
            return false;
        };
        if ex.reader.started() {
            // The upstream answered before the body's end: it is not waiting for the rest
            // (and may have closed), so the rest goes nowhere (nginx does the same).
            return false;
        }
        let size = format!("{:x}\r\n", bytes.len());
        let pieces: &[&[u8]] = if chunked {
            &[size.as_bytes(), bytes, b"\r\n"]
        } else {
            &[bytes]
        };
        match entry.id {
            Some(id) if ex.request.is_empty() => {
                for piece in pieces {
                    let _ = cx.write_to(id, piece);
                }
            }
            _ => pieces.iter().for_each(|p| ex.request.extend_from_slice(p)),
        }
        entry.full || ex.request.len() >= PENDING_MAX
    }
}
