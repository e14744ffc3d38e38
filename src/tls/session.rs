//! One connection's TLS session, on rustls' unbuffered API.
//!
//! rustls decrypts each record in place, in the buffer it is given: bytes read from the socket
//! are processed where the loop read them. Only the start of a record that has not fully
//! arrived is copied out and kept; the next read completes it, and processing goes on in that
//! read's buffer. Records for the socket — handshake messages, alerts, encrypted application
//! data — are written into a reused buffer (`Outgoing`), so encrypting costs no allocation and
//! no zeroing of ours.
//!
//! rustls 0.23 itself still copies each decrypted record into a `Vec`, and each outgoing record
//! into one before encrypting it (`take_received_plaintext`, `encrypt_outgoing`): one
//! allocation per record each way that no use of its API avoids.

use std::io;
use std::mem;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::server::{Acceptor, UnbufferedServerConnection};

use super::records::{process, Events, Outgoing, Write};
use super::{tls_error, ClientTls};

/// A TLS record header: content type, version, payload length.
const HEADER: usize = 5;
/// The most ciphertext kept for rustls between reads: a handshake message of the largest size
/// rustls accepts (64 KiB) in full-size records, and the start of the next record. A peer that
/// sends a message in tiny records (each a 5-byte header more) fails here rather than making
/// the connection hold several times the message; rustls' buffered connection has the same
/// 64 KiB bound.
const MAX_KEPT: usize = 64 * 1024 + 2 * (HEADER + 16 * 1024 + 2048);

/// One connection's TLS state.
pub(crate) struct TlsSession {
    side: Side,
    /// Ciphertext rustls is not done with: the start of a record still arriving, or records of
    /// a handshake message still being joined. Empty, and unallocated, almost always.
    incoming: Vec<u8>,
    outgoing: Outgoing,
    /// Server side, until the `ClientHello` is complete: reads it a second time to learn the
    /// server name the client asked for, which the unbuffered connection does not expose.
    sni_probe: Option<Box<Acceptor>>,
    server_name: Option<Box<str>>,
    close_notify_sent: bool,
    /// The peer's `close_notify` has been read.
    peer_closed: bool,
    /// A TLS error ended the session (its alert is in `outgoing`): nothing more is processed.
    failed: bool,
}

enum Side {
    Server(UnbufferedServerConnection),
    Client(UnbufferedClientConnection),
}

/// What feeding received bytes produced.
#[derive(Debug)]
pub(crate) struct Fed {
    /// The peer sent `close_notify`: no more plaintext will come.
    pub closed: bool,
}

impl TlsSession {
    pub(crate) fn server(config: &Arc<rustls::ServerConfig>) -> io::Result<TlsSession> {
        let conn = UnbufferedServerConnection::new(Arc::clone(config)).map_err(tls_error)?;
        let mut session = TlsSession::new(Side::Server(conn));
        session.sni_probe = Some(Box::default());
        Ok(session)
    }

    pub(crate) fn client(tls: &ClientTls) -> io::Result<TlsSession> {
        let conn = UnbufferedClientConnection::new(Arc::clone(&tls.config), tls.name.clone())
            .map_err(tls_error)?;
        let mut session = TlsSession::new(Side::Client(conn));
        // The ClientHello is queued already: encode it for the first `take_ciphertext`.
        session.checked_run(&mut [], &mut |_| {})?;
        Ok(session)
    }

    fn new(side: Side) -> TlsSession {
        TlsSession {
            side,
            incoming: Vec::new(),
            outgoing: Outgoing::default(),
            sni_probe: None,
            server_name: None,
            close_notify_sent: false,
            peer_closed: false,
            failed: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        match &self.side {
            Side::Server(c) => c.is_handshaking(),
            Side::Client(c) => c.is_handshaking(),
        }
    }

    /// Whether the peer's `close_notify` has been read (no more plaintext will come).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Feeds bytes read from the socket, decrypting them in place (so `raw` is left
    /// scrambled); hands each piece of plaintext to `plain`. An error is a TLS failure: the
    /// alert rustls queued is ready for [`take_ciphertext`](Self::take_ciphertext).
    pub(crate) fn feed(&mut self, raw: &mut [u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<Fed> {
        if self.failed {
            return Err(failed());
        }
        self.probe_server_name(raw);
        let mut raw = raw;
        if !self.incoming.is_empty() && !self.peer_closed {
            raw = self.complete_incoming(raw, plain)?;
        }
        if !raw.is_empty() && !self.peer_closed {
            let used = self.checked_run(raw, plain)?;
            self.keep(&raw[used..])?;
        }
        if self.peer_closed {
            // After close_notify nothing more is read; the rest is ignored.
            self.incoming = Vec::new();
        }
        Ok(Fed {
            closed: self.peer_closed,
        })
    }

    /// Completes what `incoming` holds from the start of `raw`; returns the rest of `raw`,
    /// to be processed in place (empty if rustls still holds on to `incoming`, so that all
    /// of `raw` had to follow it there).
    fn complete_incoming<'r>(
        &mut self,
        raw: &'r mut [u8],
        plain: &mut dyn FnMut(&[u8]),
    ) -> io::Result<&'r mut [u8]> {
        let take = completing(&self.incoming, raw);
        let (head, rest) = raw.split_at_mut(take);
        self.keep(head)?;
        self.run_incoming(plain)?;
        if self.incoming.is_empty() || rest.is_empty() {
            return Ok(rest);
        }
        // A handshake message is still being joined over several records.
        self.keep(rest)?;
        self.run_incoming(plain)?;
        Ok(&mut [])
    }

    /// Appends `bytes` to what is kept for rustls, within [`MAX_KEPT`].
    fn keep(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.incoming.len() + bytes.len() > MAX_KEPT {
            self.failed = true;
            self.incoming = Vec::new();
            self.sni_probe = None;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the peer's TLS records for one message exceed {MAX_KEPT} bytes"),
            ));
        }
        self.incoming.extend_from_slice(bytes);
        Ok(())
    }

    /// Runs rustls over `incoming`, keeping what it is not done with.
    fn run_incoming(&mut self, plain: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut incoming = mem::take(&mut self.incoming);
        let used = self.checked_run(&mut incoming, plain)?;
        incoming.drain(..used);
        if !incoming.is_empty() {
            self.incoming = incoming;
        }
        Ok(())
    }

    /// Runs rustls over `buf` (see [`process`]) to read; a failure ends the session.
    fn checked_run(&mut self, buf: &mut [u8], plain: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        self.run(buf, plain, Write::Nothing).map_err(|e| {
            self.failed = true;
            tls_error(e)
        })
    }

    /// Runs rustls over `buf` on either side; see [`process`].
    fn run(
        &mut self,
        buf: &mut [u8],
        plain: &mut dyn FnMut(&[u8]),
        write: Write<'_>,
    ) -> Result<usize, rustls::Error> {
        let mut events = Events {
            out: &mut self.outgoing,
            plain,
            peer_closed: &mut self.peer_closed,
        };
        match &mut self.side {
            Side::Server(c) => process(&mut **c, buf, &mut events, write),
            Side::Client(c) => process(&mut **c, buf, &mut events, write),
        }
    }

    /// Until the `ClientHello` is complete, shows the bytes to the probe that reads its
    /// server name. A probe that fails, or cannot take more (a `ClientHello` past 64 KiB), is
    /// dropped: the session itself reports what is wrong.
    fn probe_server_name(&mut self, raw: &[u8]) {
        let Some(probe) = self.sni_probe.as_mut() else {
            return;
        };
        let (mut rest, mut full) = (raw, false);
        while !rest.is_empty() {
            match probe.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        match probe.accept() {
            Ok(Some(accepted)) => {
                self.server_name = accepted.client_hello().server_name().map(Box::from);
                self.sni_probe = None;
            }
            Ok(None) if !full => {}
            Ok(None) | Err(_) => self.sni_probe = None,
        }
    }

    /// Encrypts `plain` into the session's outgoing records.
    ///
    /// Plaintext after `close_notify` is dropped, like any write after the write side is shut
    /// down. A failure (plaintext before the handshake completed; the record sequence
    /// exhausted, which rustls meets with `close_notify`) ends the session: the next
    /// [`feed`](Self::feed) reports it.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) {
        if !plain.is_empty() && !self.close_notify_sent {
            self.write(Write::Encrypt(plain));
        }
    }

    /// Does `write` once rustls has nothing else pending (nothing after a failure).
    fn write(&mut self, write: Write<'_>) {
        if self.failed {
            return;
        }
        // Only an incomplete record waits in `incoming`: rustls passes over it.
        let mut incoming = mem::take(&mut self.incoming);
        if self.run(&mut incoming, &mut |_| {}, write).is_err() {
            self.failed = true;
        }
        self.incoming = incoming;
    }

    /// Moves every pending TLS record to `out`.
    pub(crate) fn take_ciphertext(&mut self, out: &mut dyn FnMut(&[u8])) {
        self.outgoing.take(out);
    }

    /// Queues `close_notify` (once).
    pub(crate) fn send_close_notify(&mut self) -> bool {
        if self.close_notify_sent {
            return false;
        }
        self.close_notify_sent = true;
        self.write(Write::CloseNotify);
        true
    }

    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.side {
            Side::Server(c) => c.alpn_protocol(),
            Side::Client(c) => c.alpn_protocol(),
        }
    }

    pub(crate) fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }
}

/// The error of using a session after it failed.
fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "the TLS session failed earlier")
}

/// How many bytes of `next` complete the record that `pending` ends inside.
///
/// Only a guess at what to copy: whatever rustls leaves of `pending` is always followed by the
/// rest of `next`, so a wrong answer (say, headers already overwritten by rustls joining a
/// handshake message) costs a copy, never a byte.
fn completing(pending: &[u8], next: &[u8]) -> usize {
    let byte = |i: usize| match i.checked_sub(pending.len()) {
        None => Some(pending[i]),
        Some(j) => next.get(j).copied(),
    };
    let mut start = 0;
    loop {
        let (Some(hi), Some(lo)) = (byte(start + 3), byte(start + 4)) else {
            return next.len();
        };
        let end = start + HEADER + usize::from(u16::from_be_bytes([hi, lo]));
        if end >= pending.len() {
            return (end - pending.len()).min(next.len());
        }
        start = end;
    }
}

#[cfg(test)]
mod tests;
