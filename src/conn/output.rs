//! The output path of a connection.
//!
//! Bytes written during a callback are gathered in the loop's staging buffer and sent with one
//! `send` when the callback returns (so sixteen pipelined responses cost one syscall, not
//! sixteen); a write too large for staging goes out at once with one gathering `sendmsg` of the
//! staged bytes plus the new ones. Only what the kernel refuses is copied into the connection's
//! own [`OutBuffer`], which exists only while it holds bytes. While it does, new writes queue
//! behind it (order is kept) and the loop waits for `EPOLLOUT`. A file range is queued as one
//! and sent from the file with `sendfile(2)` (plain TCP), never read into memory.
//!
//! A group's broadcast ([`send_shared`](ConnCore::send_shared)) writes payloads shared by every
//! recipient the same way, in one syscall: up to 8 KiB in all copied together for one `send`
//! (cheaper in the kernel than a `sendmsg` of many small buffers), larger ones gathered from
//! the shared buffers by `sendmsg`; what the kernel refuses is queued as a reference to them, not a copy (short ones are
//! copied, see `buffer::SHARE_MIN`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::state::HighWater;
use super::{CloseReason, ConnCore};
use crate::buffer::{OutBuffer, MAX_IOV};
use crate::cx::LoopCore;
use crate::stats::{bump, drop_by, raise};
use crate::sys::socket;

/// Writes gathered in the loop's staging buffer up to this size go out when the callback
/// returns; a write that would pass it is sent at once.
pub(crate) const STAGING_LIMIT: usize = 64 * 1024;
/// Shared payloads up to this many bytes in all are copied into one buffer for their `send`
/// rather than gathered by `sendmsg`.
const GATHER_COPY_LIMIT: usize = 8 * 1024;
/// Plaintext gathered for one TLS record (the maximum record payload).
const TLS_RECORD: usize = 16 * 1024;

impl ConnCore {
    /// Sends the loop's staging buffer, then `extra`, with one syscall; queues what the kernel
    /// refused. Only called while nothing is queued (so order is kept).
    pub(crate) fn send_staged(&mut self, lp: &mut LoopCore, extra: Extra<'_>) {
        debug_assert!(self.out.is_none());
        let staged = lp.staging.len();
        let extra_len = extra.len();
        let total = staged + extra_len;
        if total == 0 {
            return;
        }
        let fd = self.fd.as_raw_fd();
        let result = match (staged, &extra) {
            (_, Extra::None) => socket::send(fd, &lp.staging),
            (0, e) => socket::send(fd, e.bytes()),
            (_, e) => socket::send_vectored(
                fd,
                &[io::IoSlice::new(&lp.staging), io::IoSlice::new(e.bytes())],
            ),
        };
        let written = match result {
            Ok(n) => n,
            Err(e) => {
                if !self.staged_send_refused(lp, e) {
                    return;
                }
                0
            }
        };
        bump(&lp.shared.stats.bytes_out, written as u64);
        if written > 0 {
            self.active_ms = lp.now_ms;
        }
        if written < total {
            let mut out = Box::<OutBuffer>::default();
            if written < staged {
                out.push_slice(&lp.staging[written..]);
                extra.push_into(&mut out, 0);
            } else {
                extra.push_into(&mut out, written - staged);
            }
            self.out = Some(out);
            self.grew(lp, total - written);
        }
        lp.clear_staging();
    }

    /// Bytes for the socket: staged, sent at once if large, or queued behind pending output.
    pub(crate) fn write_raw(&mut self, lp: &mut LoopCore, data: Extra<'_>) {
        if self.out.is_some() {
            self.queue(lp, data);
        } else if lp.staging.len() + data.len() <= STAGING_LIMIT {
            lp.staging.extend_from_slice(data.bytes());
        } else {
            self.send_staged(lp, data);
        }
    }

    /// [`write_raw`](Self::write_raw) of borrowed bytes, with its common case inline: nothing
    /// queued and room in staging.
    #[inline]
    pub(crate) fn write_slice(&mut self, lp: &mut LoopCore, data: &[u8]) {
        if self.out.is_none() && lp.staging.len() + data.len() <= STAGING_LIMIT {
            lp.staging.extend_from_slice(data);
        } else {
            self.write_raw(lp, Extra::Slice(data));
        }
    }

    /// Writes payloads shared with other connections (a group's broadcast, at most
    /// [`MAX_IOV`] of them): when nothing is queued, with one syscall (see
    /// [`send_parts`](Self::send_parts)); what the kernel refuses, or everything while output is queued,
    /// goes into the queue as references to them. TLS plaintext is encrypted into records
    /// and sent like a callback's writes, at once. Called between callbacks, when nothing is
    /// staged, and leaves nothing staged.
    pub(crate) fn send_shared(&mut self, lp: &mut LoopCore, parts: &[&Arc<[u8]>]) {
        debug_assert!(lp.staging.is_empty() && parts.len() <= MAX_IOV);
        if self.tls.is_some() {
            // Encrypted for this connection alone: gathered into records and sent (or queued)
            // before returning, so no plaintext or ciphertext is left in the loop's buffers
            // for the next recipient.
            for p in parts {
                self.write_tls(lp, p);
            }
            self.encrypt_staged(lp);
            return;
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        if self.out.is_none() {
            match self.send_parts(lp, parts, total) {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.send_failed(lp, e),
            }
            bump(&lp.shared.stats.bytes_out, written as u64);
            if written > 0 {
                self.active_ms = lp.now_ms;
            }
            if written == total {
                return;
            }
        }
        let out = self.out.get_or_insert_with(Box::default);
        let mut skip = written;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            out.push_shared(p, skip);
            skip = 0;
        }
        self.grew(lp, total - written);
    }

    /// One syscall for `parts`: small ones copied together and sent with `send`, which the
    /// kernel takes more cheaply than a `sendmsg` of as many small buffers (its iovec import
    /// and per-segment copy); large ones gathered straight from the shared buffers.
    fn send_parts(
        &self,
        lp: &mut LoopCore,
        parts: &[&Arc<[u8]>],
        total: usize,
    ) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        if parts.len() > 1 && total <= GATHER_COPY_LIMIT {
            for p in parts {
                lp.staging.extend_from_slice(p);
            }
            let sent = socket::send(fd, &lp.staging);
            lp.staging.clear();
            return sent;
        }
        let mut slices = [io::IoSlice::new(&[]); MAX_IOV];
        for (slice, p) in slices.iter_mut().zip(parts) {
            *slice = io::IoSlice::new(p);
        }
        socket::send_vectored(fd, &slices[..parts.len()])
    }

    /// `len` bytes of `file` from `offset`, after everything written before: sent from the file
    /// with `sendfile(2)` at once as far as the socket takes them, the rest queued as a file
    /// range and resumed on writable (plain TCP only: TLS needs the bytes in user space).
    pub(crate) fn write_file_raw(&mut self, lp: &mut LoopCore, file: File, offset: u64, len: u64) {
        if self.out.is_none() {
            self.send_staged(lp, Extra::None);
        }
        if self.out.is_none() && !self.state.writable() {
            return; // the staged send failed: the write side is dead
        }
        let mut out = self.out.take().unwrap_or_default();
        let was_empty = out.is_empty();
        out.push_file(file, offset, len);
        self.out = Some(out);
        self.grew(lp, usize::try_from(len).unwrap_or(usize::MAX));
        if was_empty {
            self.write_queued(lp); // nothing ahead of it: send what the socket takes now
        }
    }

    /// Encrypts `plain` for the peer.
    ///
    /// Small writes during a callback are gathered and encrypted when it returns (or once a
    /// full record's worth is waiting), so many of them make a few full TLS records, not one
    /// record each. A write of a record or more is encrypted from the caller's bytes
    /// ([`encrypt_now`](Self::encrypt_now)). The records wait in the session, and go to the
    /// socket from there when the callback returns, or at once once [`STAGING_LIMIT`] of
    /// them are waiting.
    pub(super) fn write_tls(&mut self, lp: &mut LoopCore, plain: &[u8]) {
        if plain.len() >= TLS_RECORD {
            return self.encrypt_now(lp, plain);
        }
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        // Fill the record being gathered; what does not fit starts the next one.
        let fits = plain.len().min(TLS_RECORD - lp.tls_plain.len());
        lp.tls_plain.extend_from_slice(&plain[..fits]);
        if lp.tls_plain.len() == TLS_RECORD {
            tls.encrypt(&lp.tls_plain);
            lp.tls_plain.clear();
            if tls.ciphertext_len() >= STAGING_LIMIT {
                // Sending clears the staging buffers: gather the rest after it.
                self.send_ciphertext(lp);
            }
            lp.tls_plain.extend_from_slice(&plain[fits..]);
        }
    }

    /// Encrypts `plain` from the caller's bytes, after what was gathered (so nothing is
    /// gathered when a send clears the staging buffers).
    pub(crate) fn encrypt_now(&mut self, lp: &mut LoopCore, plain: &[u8]) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        if !lp.tls_plain.is_empty() {
            tls.encrypt(&lp.tls_plain);
            lp.tls_plain.clear();
        }
        // In slices of the staging limit, sent as they are made: the records of a large
        // write are never all held at once.
        for slice in plain.chunks(STAGING_LIMIT) {
            let Some(tls) = self.tls.as_mut() else {
                return;
            };
            tls.encrypt(slice);
            if tls.ciphertext_len() >= STAGING_LIMIT {
                self.send_ciphertext(lp);
            }
        }
    }

    /// Encrypts the gathered plaintext and sends the records, plus any the session queued by
    /// itself (handshake messages, session tickets, alerts, `close_notify`).
    pub(crate) fn encrypt_staged(&mut self, lp: &mut LoopCore) {
        if let Some(tls) = self.tls.as_mut() {
            if !lp.tls_plain.is_empty() {
                tls.encrypt(&lp.tls_plain);
                lp.tls_plain.clear();
            }
            self.send_ciphertext(lp);
        }
    }

    /// Sends the session's records from where they were encrypted (after anything staged),
    /// or queues them behind pending output.
    fn send_ciphertext(&mut self, lp: &mut LoopCore) {
        if let Some(mut tls) = self.tls.take() {
            tls.take_ciphertext(&mut |records| {
                if self.state.is_write_failed() {
                    // Records the session made by itself (an alert, a key update) after a
                    // send failed: they have nowhere to go.
                } else if self.out.is_some() {
                    self.queue(lp, Extra::Slice(records));
                } else {
                    self.send_staged(lp, Extra::Slice(records));
                }
            });
            self.tls = Some(tls);
        }
    }

    /// Queues TLS `close_notify` (once) and sends it. Returns whether it was queued now.
    pub(crate) fn send_close_notify(&mut self, lp: &mut LoopCore) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return false;
        };
        if !tls.send_close_notify() {
            return false;
        }
        self.encrypt_staged(lp);
        true
    }

    /// Whether a staged send's error is only the kernel refusing bytes for now (`EAGAIN`);
    /// any other error failed the send, and the staging buffer is cleared. Out of line: the
    /// usual send is taken whole, and this keeps its path short.
    #[cold]
    #[inline(never)]
    fn staged_send_refused(&mut self, lp: &mut LoopCore, err: io::Error) -> bool {
        if err.kind() == io::ErrorKind::WouldBlock {
            return true;
        }
        self.send_failed(lp, err);
        lp.clear_staging();
        false
    }

    /// A send failed. After the peer's reset (the kernel has closed the connection) the
    /// write side is dead, its queued output dropped (and uncounted from the pending total, as
    /// a close does), and what the kernel received before the reset is still read
    /// ([`Lifecycle::WriteFailed`](super::state::Lifecycle::WriteFailed)): the reads end,
    /// as nothing more can arrive. Any other send error, on a connection the kernel still
    /// holds open, fails it at once, as a peer still there would wait for output that will
    /// not come.
    #[cold]
    #[inline(never)]
    pub(crate) fn send_failed(&mut self, lp: &mut LoopCore, err: io::Error) {
        if let Some(out) = self.out.take() {
            drop_by(&lp.shared.stats.pending_output, out.len() as u64);
        }
        let reason = CloseReason::from_io(err);
        if socket::is_connected(&self.fd) {
            self.state.fail(reason);
        } else {
            self.state.send_failed(reason);
        }
    }

    /// Appends to the queued output (the kernel is already refusing bytes).
    fn queue(&mut self, lp: &mut LoopCore, extra: Extra<'_>) {
        let n = extra.len();
        if let Some(out) = self.out.as_mut() {
            extra.push_into(out, 0);
            self.grew(lp, n);
        }
    }

    /// Accounting after the queued output grew by `added` bytes: stats, and the high-water mark.
    fn grew(&mut self, lp: &mut LoopCore, added: usize) {
        let len = self.pending();
        bump(&lp.shared.stats.pending_output, added as u64);
        raise(&lp.shared.stats.peak_pending_output, len as u64);
        if len > lp.cfg.high_water && self.state.high_water == HighWater::Below {
            self.state.high_water = HighWater::Crossed;
        }
    }

    /// Writes queued output until it is empty or the kernel refuses more. Returns whether the
    /// queue became empty by this call.
    pub(crate) fn write_queued(&mut self, lp: &mut LoopCore) -> bool {
        let Some(out) = self.out.as_mut() else {
            return false;
        };
        let fd = self.fd.as_raw_fd();
        let before = out.len();
        while !out.is_empty() {
            match out.write_to(fd) {
                Ok((n, offered)) => {
                    if n < offered {
                        break; // send buffer full: wait for EPOLLOUT
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let written = before - out.len();
                    bump(&lp.shared.stats.bytes_out, written as u64);
                    drop_by(&lp.shared.stats.pending_output, written as u64);
                    self.send_failed(lp, e);
                    return false;
                }
            }
        }
        let written = before - out.len();
        bump(&lp.shared.stats.bytes_out, written as u64);
        drop_by(&lp.shared.stats.pending_output, written as u64);
        if written > 0 {
            self.active_ms = lp.now_ms;
        }
        if out.is_empty() {
            self.out = None;
            return true;
        }
        false
    }
}

/// Bytes to send after the staged ones: borrowed, or owned (kept without a copy if queued).
pub(crate) enum Extra<'a> {
    None,
    Slice(&'a [u8]),
    Vec(Vec<u8>),
}

impl Extra<'_> {
    fn len(&self) -> usize {
        match self {
            Extra::None => 0,
            Extra::Slice(s) => s.len(),
            Extra::Vec(v) => v.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Extra::None => &[],
            Extra::Slice(s) => s,
            Extra::Vec(v) => v,
        }
    }

    /// Queues these bytes minus the first `skip` (already written).
    fn push_into(self, out: &mut OutBuffer, skip: usize) {
        match self {
            Extra::None => {}
            Extra::Slice(s) => out.push_slice(&s[skip..]),
            Extra::Vec(v) => out.push_vec_from(v, skip),
        }
    }
}

impl LoopCore {
    pub(crate) fn clear_staging(&mut self) {
        self.staging.clear();
        self.tls_plain.clear();
    }
}
