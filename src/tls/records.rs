//! Driving rustls' unbuffered connection: one pass over received records, and the buffer the
//! records for the socket are written into.
//!
//! rustls' unbuffered API is a state machine: each `process_tls_records` call over the received
//! bytes yields one state — plaintext to read, a handshake record to encode, the write side —
//! and how many bytes it is done with. [`process`] runs it until it needs more bytes.

use std::mem;

use rustls::client::ClientConnectionData;
use rustls::server::ServerConnectionData;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
};

/// What to do with the write side once rustls offers it.
#[derive(Clone, Copy)]
pub(super) enum Write<'p> {
    Nothing,
    Encrypt(&'p [u8]),
    CloseNotify,
}

/// The two sides' `process_tls_records`, which rustls defines for each separately.
pub(super) trait Records {
    type Data;

    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// Whether records are queued (to be had as `EncodeTlsData`).
    fn wants_write(&self) -> bool;
}

impl Records for UnbufferedConnectionCommon<ServerConnectionData> {
    type Data = ServerConnectionData;

    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn wants_write(&self) -> bool {
        rustls::CommonState::wants_write(self)
    }
}

impl Records for UnbufferedConnectionCommon<ClientConnectionData> {
    type Data = ClientConnectionData;

    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn wants_write(&self) -> bool {
        rustls::CommonState::wants_write(self)
    }
}

/// Where a pass over the records puts what it yields.
pub(super) struct Events<'a> {
    pub out: &'a mut Outgoing,
    pub plain: &'a mut dyn FnMut(&[u8]),
    /// Set when the peer's `close_notify` is read.
    pub peer_closed: &'a mut bool,
}

/// Runs rustls over `buf` until it needs more bytes: plaintext goes to `plain`, handshake
/// records to `out`; then does `write`, which needs the handshake complete. Returns how many
/// bytes of `buf` rustls is done with: the rest (an incomplete record, or records of a
/// handshake message still being joined) must be passed again, unchanged, with what follows.
///
/// On an error, the alert rustls queued is encoded into `out` before the error is returned.
pub(super) fn process<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    ev: &mut Events<'_>,
    write: Write<'_>,
) -> Result<usize, rustls::Error> {
    let mut used = 0;
    let result = process_until_blocked(conn, buf, &mut used, ev, write);
    if result.is_err() {
        encode_alert(conn, ev.out);
    }
    result.map(|()| used)
}

fn process_until_blocked<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    used: &mut usize,
    ev: &mut Events<'_>,
    mut write: Write<'_>,
) -> Result<(), rustls::Error> {
    loop {
        let UnbufferedStatus { mut discard, state } = conn.records(&mut buf[*used..]);
        let state = state.inspect_err(|_| *used += discard)?;
        let (mut blocked, mut drained) = (false, false);
        match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record = record?;
                    discard += record.discard;
                    (ev.plain)(record.payload);
                }
                // Every byte used and nothing queued: another pass would only say so.
                drained = *used + discard == buf.len() && matches!(write, Write::Nothing);
            }
            ConnectionState::EncodeTlsData(mut data) => ev.out.write(|b| data.encode(b))?,
            // The encoded records wait in `out` until the socket takes them, in order.
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            ConnectionState::PeerClosed => *ev.peer_closed = true,
            ConnectionState::WriteTraffic(mut traffic) => {
                match mem::replace(&mut write, Write::Nothing) {
                    Write::Nothing => {}
                    Write::Encrypt(plain) => ev.out.write(|b| traffic.encrypt(plain, b))?,
                    Write::CloseNotify => ev.out.write(|b| traffic.queue_close_notify(b))?,
                }
                blocked = true;
            }
            // Early (0-RTT) data exists only if the server configuration enables it; it is
            // replayable by design, and not shown to handlers.
            ConnectionState::ReadEarlyData(_) => {
                return Err(rustls::Error::General(
                    "0-RTT data is not accepted on this connection".into(),
                ))
            }
            // BlockedHandshake (more bytes needed), Closed, and states rustls may add.
            _ => blocked = true,
        }
        *used += discard;
        if blocked || (drained && !conn.wants_write()) {
            break;
        }
    }
    match write {
        Write::Encrypt(_) => Err(rustls::Error::General(
            "application data written before the TLS handshake completed".into(),
        )),
        Write::Nothing | Write::CloseNotify => Ok(()),
    }
}

/// Encodes the alert rustls queued with an error — and nothing else: driven further after
/// an error, rustls would process the remaining bytes and fail again, which it asserts never
/// happens.
fn encode_alert<C: Records>(conn: &mut C, out: &mut Outgoing) {
    while conn.wants_write() {
        // Queued records come before any processing of input, so none is given.
        let Ok(ConnectionState::EncodeTlsData(mut data)) = conn.records(&mut []).state else {
            return;
        };
        if out.write(|b| data.encode(b)).is_err() {
            return;
        }
    }
}

/// The largest record (TLS 1.2's limit: a 16 KiB payload plus 2 KiB of expansion) and its
/// 5-byte header.
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;

/// Records waiting for the socket, `buf[..len]`; the rest of `buf` is initialised room that
/// the next records are written into.
///
/// The room is kept between writes up to one full record, so steady traffic of any message
/// size costs no allocation and no zeroing, and a connection idle after a larger burst does
/// not keep the burst's worth.
#[derive(Default)]
pub(super) struct Outgoing {
    buf: Vec<u8>,
    len: usize,
}

impl Outgoing {
    /// Runs `write` (an encode or an encrypt) into the room after the pending records,
    /// growing it to what rustls asks for.
    fn write<E: NeedsRoom>(
        &mut self,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), rustls::Error> {
        loop {
            match write(&mut self.buf[self.len..]) {
                Ok(n) => {
                    self.len += n;
                    return Ok(());
                }
                Err(e) => match e.needs() {
                    Some(room) if self.len + room > self.buf.len() => {
                        self.buf.resize(self.len + room, 0);
                    }
                    _ => return Err(e.into_error()),
                },
            }
        }
    }

    /// Hands the pending records to `out`.
    pub(super) fn take(&mut self, out: &mut dyn FnMut(&[u8])) {
        if self.len > 0 {
            out(&self.buf[..self.len]);
            self.len = 0;
        }
        if self.buf.len() > MAX_RECORD {
            self.buf = Vec::new();
        }
    }
}

/// The room rustls asked for, from the error of an encode or encrypt into too small a buffer.
trait NeedsRoom {
    fn needs(&self) -> Option<usize>;
    fn into_error(self) -> rustls::Error;
}

impl NeedsRoom for EncodeError {
    fn needs(&self) -> Option<usize> {
        match self {
            EncodeError::InsufficientSize(s) => Some(s.required_size),
            _ => None,
        }
    }

    fn into_error(self) -> rustls::Error {
        rustls::Error::General(self.to_string())
    }
}

impl NeedsRoom for EncryptError {
    fn needs(&self) -> Option<usize> {
        match self {
            EncryptError::InsufficientSize(s) => Some(s.required_size),
            _ => None,
        }
    }

    fn into_error(self) -> rustls::Error {
        match self {
            EncryptError::EncryptExhausted => rustls::Error::EncryptError,
            other => rustls::Error::General(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `n` bytes like rustls does: all of them, or asks for room.
    fn fill(b: &mut [u8], n: usize) -> Result<usize, EncryptError> {
        if b.len() < n {
            return Err(EncryptError::InsufficientSize(
                rustls::unbuffered::InsufficientSizeError { required_size: n },
            ));
        }
        b[..n].fill(7);
        Ok(n)
    }

    #[test]
    fn outgoing_appends_records_and_hands_them_over_in_order() {
        let mut out = Outgoing::default();
        out.write(|b: &mut [u8]| fill(b, 3)).unwrap();
        out.write(|b: &mut [u8]| {
            let n = fill(b, 2)?;
            b[..n].copy_from_slice(b"xy");
            Ok::<_, EncryptError>(n)
        })
        .unwrap();
        let mut taken = Vec::new();
        out.take(&mut |c| taken.extend_from_slice(c));
        assert_eq!(taken, b"\x07\x07\x07xy");
        out.take(&mut |_| panic!("nothing is pending"));
    }

    #[test]
    fn outgoing_room_is_reused_up_to_one_record() {
        let mut out = Outgoing::default();
        out.write(|b: &mut [u8]| fill(b, 600)).unwrap();
        out.take(&mut |_| {});
        assert_eq!(out.buf.len(), 600, "the room stays for the next records");
        out.write(|b: &mut [u8]| fill(b, 500)).unwrap();
        assert_eq!(out.buf.len(), 600, "and is written into without growing");
        out.take(&mut |_| {});
        out.write(|b: &mut [u8]| fill(b, MAX_RECORD + 1)).unwrap();
        out.take(&mut |_| {});
        assert_eq!(out.buf.capacity(), 0, "a burst past one record is not kept");
    }

    #[test]
    fn outgoing_reports_a_failure_that_more_room_cannot_fix() {
        let mut out = Outgoing::default();
        let e = out.write(|_: &mut [u8]| Err::<usize, _>(EncryptError::EncryptExhausted));
        assert!(matches!(e, Err(rustls::Error::EncryptError)));
        // rustls asking for room it already has is a failure too, not a loop.
        out.write(|b: &mut [u8]| fill(b, 10)).unwrap();
        out.take(&mut |_| {});
        let e = out.write(|_: &mut [u8]| {
            Err::<usize, _>(EncryptError::InsufficientSize(
                rustls::unbuffered::InsufficientSizeError { required_size: 4 },
            ))
        });
        assert!(e.is_err());
    }
}
