//! permessage-deflate (RFC 7692, feature `ws-deflate`): negotiation of its parameters, and
//! compression of messages on flate2's pure-Rust backend (miniz_oxide).
//!
//! **Memory.** A compressor and an inflater hold about 360 KB together while they exist
//! (measured by the `deflate_memory` test in `tests/ws_deflate.rs`). By default neither side keeps its LZ77 window
//! across messages (`server_no_context_takeover` and `client_no_context_takeover` are always
//! in the server's answer), so one compressor and one inflater per event loop serve all its
//! connections, used one message at a time: a connection with permessage-deflate costs 64
//! bytes more than one without. [`DeflateConfig::context_takeover`] and
//! [`DeflateConfig::peer_context_takeover`] trade that for better ratios: each connection then
//! owns a compressor (this side keeps its window) or an inflater (the peer keeps its window),
//! for its whole life.
//!
//! **Bounds.** A compressed message is gathered until complete (bounded by
//! [`Config::max_message_size`](super::Config::max_message_size) in compressed bytes) and
//! inflated into a buffer that may not grow past the same limit: a deflate bomb is refused
//! with 1009 as soon as its output passes it, having used at most the limit plus one byte.
//!
//! **Windows.** miniz_oxide always compresses with a 32 KiB window, so an offer that asks for
//! a smaller server window (`server_max_window_bits` below 15) is declined; the inflater reads
//! any window size, so `client_max_window_bits` is accepted as a hint and never narrowed.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Role;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub(crate) const NAME: &str = "permessage-deflate";

/// The four bytes a sync flush ends with, stripped from each message (RFC 7692 section 7.2.1)
/// and put back before inflating.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// What this side asks for and accepts in permessage-deflate negotiation.
///
/// ```
/// use eventide::ws::{Config, DeflateConfig};
///
/// let config = Config::new().deflate(DeflateConfig::new().min_size(64).level(1));
/// # let _ = config;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct DeflateConfig {
    context_takeover: bool,
    peer_context_takeover: bool,
    min_size: usize,
    level: u32,
}

impl Default for DeflateConfig {
    fn default() -> DeflateConfig {
        DeflateConfig {
            context_takeover: false,
            peer_context_takeover: false,
            min_size: 32,
            level: 1,
        }
    }
}

impl DeflateConfig {
    /// No context takeover either way, messages of 32 bytes and more compressed at level 1
    /// (the fastest; a busy server's CPU is worth more than the last percent of ratio).
    pub fn new() -> DeflateConfig {
        DeflateConfig::default()
    }

    /// Keep this side's compression window across messages (default no): better ratios on
    /// similar messages, at a compressor (most of 360 KB) per connection for its lifetime.
    pub fn context_takeover(mut self, on: bool) -> Self {
        self.context_takeover = on;
        self
    }

    /// Let the peer keep its window across messages (default no: the server asks for
    /// `client_no_context_takeover`, a client offers `server_no_context_takeover`). Allowing
    /// it costs an inflater per connection for its lifetime.
    pub fn peer_context_takeover(mut self, on: bool) -> Self {
        self.peer_context_takeover = on;
        self
    }

    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// The compression level, 0 (store) to 9 (smallest) (default 1).
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }
}

/// The parameters a handshake agreed, for [`Session::with_deflate`](super::Session::with_deflate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression window after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression window after each message.
    pub client_no_context_takeover: bool,
    /// This side's smallest message to compress, from its [`DeflateConfig`].
    pub(crate) min_size: usize,
    /// This side's compression level.
    pub(crate) level: u32,
}

/// One extension offer's parameters as parsed.
#[derive(Clone, Copy, Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: bool,
}

/// Server side: picks the first permessage-deflate offer of a `Sec-WebSocket-Extensions`
/// value (values of repeated headers joined with commas) that can be honoured. Returns the
/// agreed parameters and the response's extension text.
pub(crate) fn accept_offer<'a>(
    offers: impl Iterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Option<(DeflateParams, String)> {
    for value in offers {
        for item in split_outside_quotes(value, b',') {
            let Some(offer) = parse_offer(item) else {
                continue;
            };
            if offer.server_max_window_bits.is_some_and(|bits| bits < 15) {
                continue; // miniz_oxide compresses with a 32 KiB window only
            }
            let params = DeflateParams {
                server_no_context_takeover: offer.server_no_context_takeover
                    || !config.context_takeover,
                client_no_context_takeover: offer.client_no_context_takeover
                    || !config.peer_context_takeover,
                min_size: config.min_size,
                level: config.level,
            };
            let mut answer = String::from(NAME);
            if params.server_no_context_takeover {
                answer.push_str("; server_no_context_takeover");
            }
            if params.client_no_context_takeover {
                answer.push_str("; client_no_context_takeover");
            }
            if offer.server_max_window_bits.is_some() {
                answer.push_str("; server_max_window_bits=15");
            }
            return Some((params, answer));
        }
    }
    None
}

/// Client side: the offer this side makes.
pub(crate) fn client_offer(config: &DeflateConfig) -> String {
    let mut offer = String::from(NAME);
    if !config.context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if !config.peer_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    offer
}

/// Client side: reads the server's answer to [`client_offer`]. `Err` if it names parameters
/// that were not offered or are malformed (the handshake then fails, RFC 7692 section 5).
pub(crate) fn read_answer(value: &[u8], config: &DeflateConfig) -> Result<DeflateParams, ()> {
    let answer = parse_offer(value).ok_or(())?;
    if answer.client_max_window_bits {
        return Err(()); // not offered
    }
    if config.peer_context_takeover || answer.server_no_context_takeover {
        Ok(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || !config.context_takeover,
            min_size: config.min_size,
            level: config.level,
        })
    } else {
        Err(()) // we required server_no_context_takeover
    }
}

/// Parses one extension item if it is permessage-deflate with well-formed parameters, each at
/// most once (section 7.1: anything else declines the offer).
fn parse_offer(item: &[u8]) -> Option<Offer> {
    let mut parts = split_outside_quotes(item, b';');
    if !trim(parts.next()?).eq_ignore_ascii_case(NAME.as_bytes()) {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for param in parts {
        let param = trim(param);
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (trim(&param[..i]), Some(unquote(trim(&param[i + 1..])))),
            None => (param, None),
        };
        let (slot, ok) = match name.to_ascii_lowercase().as_slice() {
            b"server_no_context_takeover" => {
                offer.server_no_context_takeover = true;
                (0, value.is_none())
            }
            b"client_no_context_takeover" => {
                offer.client_no_context_takeover = true;
                (1, value.is_none())
            }
            b"server_max_window_bits" => {
                offer.server_max_window_bits = value.and_then(window_bits);
                (2, offer.server_max_window_bits.is_some())
            }
            b"client_max_window_bits" => {
                offer.client_max_window_bits = true;
                (3, value.map_or(true, |v| window_bits(v).is_some()))
            }
            _ => return None,
        };
        if !ok || std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(offer)
}

/// A window size parameter: 8 to 15, digits only.
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [b'8'] => Some(8),
        [b'9'] => Some(9),
        [b'1', d @ b'0'..=b'5'] => Some(10 + (d - b'0')),
        _ => None,
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

fn trim(v: &[u8]) -> &[u8] {
    crate::http::trim(v)
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(v: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut quoted = false;
    v.split(move |&b| {
        if b == b'"' {
            quoted = !quoted;
        }
        b == sep && !quoted
    })
}

/// The compressor of one side. With no context takeover, the loop's shared compressor is used
/// and reset after each message.
#[derive(Debug)]
pub(crate) struct TxDeflate {
    own: Option<Compress>,
    min_size: usize,
    level: u32,
}

impl TxDeflate {
    pub(crate) fn new(role: Role, agreed: DeflateParams) -> TxDeflate {
        let keeps = match role {
            Role::Server => !agreed.server_no_context_takeover,
            Role::Client => !agreed.client_no_context_takeover,
        };
        TxDeflate {
            own: keeps.then(|| Compress::new(Compression::new(agreed.level), false)),
            min_size: agreed.min_size,
            level: agreed.level,
        }
    }

    pub(crate) fn min_size(&self) -> usize {
        self.min_size
    }

    /// Compresses one message into `dst` (cleared first), without the sync-flush trailer.
    pub(crate) fn compress(
        &mut self,
        shared: &mut Option<Compress>,
        data: &[u8],
        dst: &mut Vec<u8>,
    ) -> io::Result<()> {
        dst.clear();
        let level = self.level;
        let (c, reset) = match self.own.as_mut() {
            Some(own) => (own, false),
            None => (
                shared.get_or_insert_with(|| Compress::new(Compression::new(level), false)),
                true,
            ),
        };
        let result = deflate_sync(c, data, dst);
        if reset || result.is_err() {
            c.reset();
        }
        result?;
        if dst.ends_with(&TRAILER) {
            dst.truncate(dst.len() - TRAILER.len());
        }
        Ok(())
    }
}

fn deflate_sync(c: &mut Compress, mut data: &[u8], dst: &mut Vec<u8>) -> io::Result<()> {
    loop {
        dst.reserve(data.len() / 2 + 64);
        let before = c.total_in();
        c.compress_vec(data, dst, FlushCompress::Sync)
            .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
        data = &data[(c.total_in() - before) as usize..];
        // Done when all input is taken and the flush left room to spare.
        if data.is_empty() && dst.len() < dst.capacity() {
            return Ok(());
        }
    }
}

/// The inflater for the peer's messages. With no context takeover on the peer's side, the
/// loop's shared inflater is used and reset after each message.
#[derive(Debug)]
pub(crate) struct RxDeflate {
    own: Option<Decompress>,
}

/// Why a compressed message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflates past the message size limit.
    TooBig,
    /// It is not a DEFLATE stream.
    Corrupt,
}

/// The per-loop inflater shared by connections whose peer keeps no context.
#[derive(Debug, Default)]
pub(crate) struct SharedDeflate {
    pub(crate) inflater: Option<Decompress>,
}

impl RxDeflate {
    pub(crate) fn new(role: Role, agreed: DeflateParams) -> RxDeflate {
        let peer_keeps = match role {
            Role::Server => !agreed.client_no_context_takeover,
            Role::Client => !agreed.server_no_context_takeover,
        };
        RxDeflate {
            own: peer_keeps.then(|| Decompress::new(false)),
        }
    }

    /// Inflates one whole message into `dst`, refusing to grow it past `limit`.
    pub(crate) fn inflate(
        &mut self,
        shared: &mut SharedDeflate,
        data: &[u8],
        dst: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let (d, reset) = match self.own.as_mut() {
            Some(own) => (own, false),
            None => (
                shared
                    .inflater
                    .get_or_insert_with(|| Decompress::new(false)),
                true,
            ),
        };
        let result =
            inflate_into(d, data, dst, limit).and_then(|()| inflate_into(d, &TRAILER, dst, limit));
        if reset || result.is_err() {
            d.reset(false);
        }
        result
    }
}

/// Feeds `data` to the inflater, appending the output to `dst`, whose capacity never passes
/// `limit + 1` (one byte past the limit proves the message too big).
fn inflate_into(
    d: &mut Decompress,
    mut data: &[u8],
    dst: &mut Vec<u8>,
    limit: usize,
) -> Result<(), InflateError> {
    loop {
        if dst.len() == dst.capacity() {
            let room = (limit + 1).saturating_sub(dst.len());
            if room == 0 {
                return Err(InflateError::TooBig);
            }
            dst.reserve_exact(room.min((data.len() * 4).max(4096)));
        }
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(data, dst, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if dst.len() > limit {
            return Err(InflateError::TooBig);
        }
        let used = (d.total_in() - in0) as usize;
        data = &data[used..];
        let produced = d.total_out() - out0;
        if status == Status::StreamEnd {
            // A final block ended the stream: a new one starts with the next message.
            d.reset(false);
            return Ok(());
        }
        if data.is_empty() && dst.len() < dst.capacity() {
            return Ok(());
        }
        if used == 0 && produced == 0 && dst.len() < dst.capacity() {
            return Err(InflateError::Corrupt); // no progress with room to spare
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(v: &str) -> Option<(DeflateParams, String)> {
        accept_offer([v.as_bytes()].into_iter(), &DeflateConfig::default())
    }

    #[test]
    fn negotiation() {
        let (p, a) = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(
            a,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        // A smaller server window cannot be honoured: the next offer is taken.
        let (_, a) = offer(
            "permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=\"15\"",
        )
        .unwrap();
        assert!(a.ends_with("server_max_window_bits=15"), "{a}");
        for bad in [
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; foo",
        ] {
            assert!(offer(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn round_trip_with_and_without_context() {
        for keep in [false, true] {
            let cfg = DeflateConfig::new()
                .context_takeover(keep)
                .peer_context_takeover(keep);
            let (params, _) =
                accept_offer([client_offer(&cfg).as_bytes()].into_iter(), &cfg).unwrap();
            let mut tx = TxDeflate::new(Role::Server, params);
            let mut rx = RxDeflate::new(Role::Client, params);
            let (mut shared_c, mut shared_d) = (None, SharedDeflate::default());
            for msg in [&b"hello hello hello hello"[..], b"", &[7u8; 100_000]] {
                let mut z = Vec::new();
                tx.compress(&mut shared_c, msg, &mut z).unwrap();
                let mut back = Vec::new();
                rx.inflate(&mut shared_d, &z, &mut back, 1 << 20).unwrap();
                assert_eq!(back, msg);
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let params = offer("permessage-deflate").unwrap().0;
        let mut tx = TxDeflate::new(Role::Client, params);
        let mut z = Vec::new();
        tx.compress(&mut None, &vec![0u8; 10 << 20], &mut z)
            .unwrap();
        assert!(z.len() < 100_000, "a bomb: {} bytes for 10 MiB", z.len());
        let mut rx = RxDeflate::new(Role::Server, params);
        let mut out = Vec::new();
        let mut shared = SharedDeflate::default();
        assert_eq!(
            rx.inflate(&mut shared, &z, &mut out, 64 * 1024),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= 64 * 1024 + 1, "{}", out.capacity());
        // The shared inflater was reset: the next message inflates.
        let mut z = Vec::new();
        tx.compress(&mut None, b"ok", &mut z).unwrap();
        out.clear();
        rx.inflate(&mut shared, &z, &mut out, 64 * 1024).unwrap();
        assert_eq!(out, b"ok");
        assert_eq!(
            rx.inflate(&mut shared, b"\xff\xff\xff", &mut Vec::new(), 10),
            Err(InflateError::Corrupt)
        );
    }
}
