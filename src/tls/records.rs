//! Driving rustls' unbuffered connection: one pass over received records, and the buffer the
//! records for the socket are written into.
//!
//! rustls' unbuffered API is a state machine: each `process_tls_records` call over the received
//! bytes yields one state — plaintext to read, a handshake record to encode, the write side —
//! and how many bytes it is done with. [`process`] runs it until it needs more bytes.

use std::mem;
use std::ops::Range;

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

    /// Whether TLS 1.3 was negotiated (whose records [`place`] finds plaintext in).
    fn is_tls13(&self) -> bool;
}

impl Records for UnbufferedConnectionCommon<ServerConnectionData> {
    type Data = ServerConnectionData;

    fn records<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn wants_write(&self) -> bool {
        rustls::CommonState::wants_write(self)
    }

    fn is_tls13(&self) -> bool {
        self.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
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

    fn is_tls13(&self) -> bool {
        self.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }
}

/// Where a pass over the records puts what it yields.
pub(super) struct Events<'a> {
    pub out: &'a mut Outgoing,
    /// Takes the plaintext that does not stay where it was decrypted.
    pub spill: &'a mut dyn FnMut(&[u8]),
    /// `Some(range)`: the plaintext so far stays in the buffer being processed, gathered
    /// there (from where the first record's starts; empty until then). `None`: plaintext goes
    /// to `spill` (from the first piece that could not stay on, so the order is kept).
    pub placed: Option<Range<usize>>,
    /// Set when the peer's `close_notify` is read.
    pub peer_closed: &'a mut bool,
}

/// Runs rustls over `buf` until it needs more bytes: plaintext is placed or spilled (see
/// [`Events`]), handshake records go to `out`; then does `write`, which needs the handshake
/// complete. Returns how many bytes of `buf` rustls is done with: the rest (an incomplete record, or records of a
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
        let mut located = None;
        match state {
            ConnectionState::ReadTraffic(mut records) => match (&ev.placed, records.peek_len()) {
                // Decrypted in place: found in `buf` once this pass lets go of it.
                (Some(_), Some(len)) => located = Some(len.get()),
                _ => {
                    while let Some(record) = records.next_record() {
                        let record = record?;
                        discard += record.discard;
                        (ev.spill)(record.payload);
                    }
                    // Every byte used and nothing queued: another pass would only say so.
                    drained = *used + discard == buf.len() && matches!(write, Write::Nothing);
                }
            },
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
        if let Some(len) = located {
            // Placed, rustls' copy is dropped: done once every byte is used, as above.
            drained = place(conn, buf, used, len, ev)?
                && *used == buf.len()
                && matches!(write, Write::Nothing);
        }
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

/// The application-data record just processed ends at `buf[*used]`, holding `len` bytes of
/// plaintext, and rustls' copy of them is queued. Takes the copy; if the same bytes are where
/// a TLS 1.3 record decrypted in place leaves them, leaves them there (or moves them to follow
/// those placed before, within `buf`, over records already processed) and returns `true`.
/// Otherwise spills the plaintext placed so far, then the copy, and from here on everything.
fn place<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    used: &mut usize,
    len: usize,
    ev: &mut Events<'_>,
) -> Result<bool, rustls::Error> {
    let Some(placed) = ev.placed.take() else {
        return Ok(false);
    };
    let end = *used;
    let (done, rest) = buf.split_at_mut(end);
    // rustls hands its queued copy over first, before it processes any record.
    let status = conn.records(rest);
    let (0, Ok(ConnectionState::ReadTraffic(mut records))) = (status.discard, status.state) else {
        (ev.spill)(&done[placed]);
        return Ok(false);
    };
    let Some(copy) = records.next_record().transpose()? else {
        (ev.spill)(&done[placed]);
        return Ok(false);
    };
    // Checked against the copy, byte for byte: where rustls decrypts is its own affair.
    let start = tls13_plaintext(done, end, len).filter(|&s| done[s..s + len] == *copy.payload);
    let Some(start) = start else {
        (ev.spill)(&done[placed]);
        (ev.spill)(copy.payload);
        return Ok(false);
    };
    ev.placed = Some(if placed.is_empty() {
        start..start + len
    } else {
        done.copy_within(start..start + len, placed.end);
        placed.start..placed.end + len
    });
    Ok(true)
}

/// Where an unpadded TLS 1.3 application-data record ending at `end` and decrypted in place
/// holds its `len` bytes of plaintext: after its header, followed by the content type and
/// the 16-byte tag. `None` for any other layout (a padded record has a zero there, as its
/// padding ends the plaintext; a record of TLS 1.2 has another header).
fn tls13_plaintext(buf: &[u8], end: usize, len: usize) -> Option<usize> {
    const TAG: usize = 16;
    const APPLICATION_DATA: u8 = 23;
    let content_type = end.checked_sub(TAG + 1)?;
    let start = content_type.checked_sub(len)?;
    let header = start.checked_sub(HEADER)?;
    let [hi, lo] = u16::try_from(len + 1 + TAG).ok()?.to_be_bytes();
    let expected = [APPLICATION_DATA, 3, 3, hi, lo];
    (buf[content_type] == APPLICATION_DATA && buf[header..start] == expected).then_some(start)
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

/// A TLS record header: content type, version, payload length.
pub(super) const HEADER: usize = 5;
/// The largest record (TLS 1.2's limit: a 16 KiB payload plus 2 KiB of expansion) and its
/// header.
const MAX_RECORD: usize = HEADER + 16 * 1024 + 2048;

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

    /// Bytes of records pending.
    pub(super) fn len(&self) -> usize {
        self.len
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

    /// A TLS 1.3 application-data record as it is once decrypted in place: header,
    /// plaintext, content type, `padding` zeros, tag.
    fn decrypted(plain: &[u8], padding: usize) -> Vec<u8> {
        let len = u16::try_from(plain.len() + 1 + padding + 16).unwrap();
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.extend_from_slice(plain);
        r.push(23);
        r.resize(r.len() + padding, 0);
        r.resize(r.len() + 16, 0xee);
        r
    }

    #[test]
    fn tls13_plaintext_is_found_only_in_an_unpadded_record_of_its_length() {
        let mut buf = b"an earlier record".to_vec();
        let start = buf.len() + HEADER;
        buf.extend_from_slice(&decrypted(b"hello", 0));
        assert_eq!(tls13_plaintext(&buf, buf.len(), 5), Some(start));
        assert_eq!(tls13_plaintext(&buf, buf.len(), 4), None, "another length");
        let padded = decrypted(b"hello", 3);
        assert_eq!(tls13_plaintext(&padded, padded.len(), 5), None);
        // A record that does not end where it is said to: no header there.
        buf.push(0);
        assert_eq!(tls13_plaintext(&buf, buf.len(), 5), None);
        assert_eq!(tls13_plaintext(b"short", 5, 3), None);
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
