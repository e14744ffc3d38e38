//! The gateway's streamed uploads: a request body goes upstream piece by piece as the
//! client sends it (with its `Content-Length`, or chunked again when it came chunked), never
//! held whole. While the upstream connection's output is past its high-water mark — or, for a
//! connection still being opened, once a few hundred KiB wait for it — the client's
//! connection is paused, and resumed when the upstream has drained (or is open).
//!
//! The sink of an upload lives on the loop like the service, and shares the loop's
//! [`Gateway`] with it: the request's head goes upstream with the first piece (or at the
//! body's end, for an empty chunked body), and the client's answer is deferred at the end.
//! An upstream failing meanwhile gives the client `502`; a client going away closes the
//! upstream connection (a request cut short must not be reused).

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
    /// The link carrying this upload, its head sent first if it was not; `None` if the
    /// exchange is over (the upstream failed meanwhile).
    fn link(
        &mut self,
        g: &mut Gateway,
        cx: &mut LoopCx<'_>,
        client: Option<SocketAddr>,
    ) -> Option<usize> {
        match &mut self.place {
            Place::Sent { link, serial } => {
                let ex = g.links.get(*link)?.exchange.as_ref()?;
                (ex.serial == *serial).then_some(*link)
            }
            Place::Ready(ready) => {
                let head = std::mem::replace(&mut ready.head, ForwardHead::empty());
                let mut ex = g.exchange(head.finish(client, self.framing), false, ready.head_only);
                ex.upload = Some(Upload::default());
                let serial = ex.serial;
                let link = g.dispatch(cx, ready.upstream, ex);
                self.place = Place::Sent { link, serial };
                Some(link)
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
        let (link, full) = {
            let mut lcx = cx.loop_cx().ok_or(Status::INTERNAL_SERVER_ERROR)?;
            let link = self
                .link(&mut g, &mut lcx, client)
                .ok_or(Status::BAD_GATEWAY)?;
            let chunked = self.framing == Framing::Chunked;
            (link, g.upload_bytes(&mut lcx, link, chunk, chunked))
        };
        if full {
            let resume = cx.pause();
            if let Some(up) = g.links[link]
                .exchange
                .as_mut()
                .and_then(|e| e.upload.as_mut())
            {
                up.resume = Some(resume);
            }
        }
        Ok(())
    }

    fn end(mut self: Box<Self>, _trailers: &Trailers<'_>, res: &mut Response<'_>) {
        let gw = Shared(Arc::clone(&self.gw.0));
        let mut g = gw.lock();
        let client = res.peer_addr();
        let link = res.loop_cx().and_then(|mut lcx| {
            let link = self.link(&mut g, &mut lcx, client)?;
            if self.framing == Framing::Chunked {
                g.upload_bytes(&mut lcx, link, b"0\r\n\r\n", false);
            }
            Some(link)
        });
        let Some(link) = link else {
            res.status(Status::BAD_GATEWAY)
                .content_type("text/plain")
                .body(b"Bad Gateway\n");
            return;
        };
        let responder = res.defer();
        let entry = &mut g.links[link];
        let Some(ex) = entry.exchange.as_mut() else {
            return; // checked by `link`: not reached (the responder would answer 500)
        };
        ex.responder = Some(responder);
        if ex.upload.take().is_some_and(|u| u.answer_held) {
            if let Some(handle) = &entry.handle {
                let _ = handle.with_conn(|c| c.resume_read());
            }
        }
    }

    fn abort(self: Box<Self>, why: Aborted) {
        let Place::Sent { link, serial } = self.place else {
            return; // nothing went upstream
        };
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
