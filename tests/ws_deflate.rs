//! permessage-deflate: memory per connection, measured with a counting allocator, and the
//! engine's compressed paths (a fragmented compressed message, a deflate bomb).

#![cfg(feature = "ws-deflate")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::ControlFlow;

use eventide::ws::{
    accept_key, ClientRequest, Config, DeflateConfig, Event, Message, Scratch, Session,
};

/// Counts the bytes this thread holds (tests run on several threads at once).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local integer without a
// destructor, so touching it cannot allocate or recurse.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| l.set(l.get() + layout.size() as isize));
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as isize));
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.with(|l| l.get())
}

/// A client session whose handshake agreed permessage-deflate with `config`'s preferences.
fn client_session(deflate: DeflateConfig, answer: &str) -> Session {
    let mut request = Vec::new();
    let handshake = ClientRequest::new("h", "/")
        .deflate(deflate)
        .write(&mut request);
    let request = String::from_utf8(request).unwrap();
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .unwrap();
    let accept = String::from_utf8(accept_key(key.as_bytes()).to_vec()).unwrap();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {answer}\r\n\r\n"
    );
    let done = handshake.validate(response.as_bytes()).unwrap().unwrap();
    assert!(done.accepted.deflate().is_some());
    done.session(&Config::new())
}

/// Sends one compressible message and reads a compressed one back through `session`.
fn exchange(session: &mut Session, scratch: &mut Scratch) {
    let mut out = Vec::new();
    session
        .sender(scratch)
        .text(&mut out, &"compress me ".repeat(100))
        .unwrap();
    assert_eq!(out[0] & 0x40, 0x40, "RSV1: the message was compressed");
    // A server frame (unmasked) carrying "hello" compressed, from RFC 7692 section 7.2.3.1.
    let frame = [0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];
    let mut got = None;
    session.receive(&frame, scratch, &mut out, |e, _, _| {
        if let Event::Message(Message::Text(t)) = e {
            got = Some(t.to_string());
        }
        ControlFlow::Continue(())
    });
    assert_eq!(got.as_deref(), Some("Hello"));
}

#[test]
fn deflate_memory() {
    let shared_answer =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    // The loop's scratch: one compressor and one inflater, shared by every connection.
    let mut scratch = Scratch::new();
    let mut warm = client_session(DeflateConfig::new(), shared_answer);
    exchange(&mut warm, &mut scratch);
    let before = live();
    let mut session = client_session(DeflateConfig::new(), shared_answer);
    exchange(&mut session, &mut scratch);
    let per_conn_shared = live() - before;
    drop(warm);

    // Context takeover both ways: each connection owns a compressor and an inflater.
    let keep = DeflateConfig::new()
        .context_takeover(true)
        .peer_context_takeover(true);
    let before = live();
    let mut owning = client_session(keep, "permessage-deflate");
    exchange(&mut owning, &mut scratch);
    let per_conn_owning = live() - before;
    let before = live();
    drop(scratch);
    let loop_shared = before - live();

    println!(
        "permessage-deflate memory: per connection {per_conn_shared} B (shared contexts), \
         {per_conn_owning} B (context takeover); per loop {loop_shared} B"
    );
    assert!(
        per_conn_shared <= 128,
        "an idle shared-context connection holds {per_conn_shared} B"
    );
    assert!(per_conn_owning < 512 * 1024, "{per_conn_owning}");
    assert!(loop_shared < 512 * 1024, "{loop_shared}");
}

#[test]
fn compressed_messages_fragmented_and_bombs() {
    // A compressed message in two fragments, read in pieces.
    let mut session = client_session(
        DeflateConfig::new(),
        "permessage-deflate; server_no_context_takeover",
    );
    let mut scratch = Scratch::new();
    let mut out = Vec::new();
    let compressed = [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];
    let mut stream = vec![0x41, 3];
    stream.extend_from_slice(&compressed[..3]);
    stream.extend_from_slice(&[0x80, 4]);
    stream.extend_from_slice(&compressed[3..]);
    let mut got = Vec::new();
    let mut input = Vec::new();
    for b in &stream {
        input.push(*b);
        let used = session.receive(&input, &mut scratch, &mut out, |e, _, _| {
            if let Event::Message(m) = e {
                got.push(m.as_bytes().to_vec());
            }
            ControlFlow::Continue(())
        });
        input.drain(..used);
    }
    assert_eq!(got, [b"Hello".to_vec()]);

    // 10 MiB of zeros in a few KB: refused with 1009 at the 1 MiB limit.
    let mut bomb_sender = client_session(
        DeflateConfig::new(),
        "permessage-deflate; server_no_context_takeover",
    );
    let mut z = Vec::new();
    bomb_sender
        .sender(&mut scratch)
        .binary(&mut z, &vec![0u8; 10 << 20])
        .unwrap();
    // Re-frame the client's compressed payload as an unmasked server frame.
    let h = &z[..];
    let (len, at) = match h[1] & 0x7F {
        126 => (u16::from_be_bytes([h[2], h[3]]) as usize, 8),
        127 => (
            u64::from_be_bytes(h[2..10].try_into().unwrap()) as usize,
            14,
        ),
        n => (n as usize, 6),
    };
    let key = [h[at - 4], h[at - 3], h[at - 2], h[at - 1]];
    let body: Vec<u8> = h[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    let mut frame = vec![0xC2, 126];
    frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut failed = None;
    let before = live();
    session.receive(&frame, &mut scratch, &mut out, |e, _, _| {
        if let Event::Failed(err) = e {
            failed = Some(err.code.0);
        }
        ControlFlow::Continue(())
    });
    assert_eq!(failed, Some(1009));
    assert!(
        live() - before < (2 << 20),
        "the bomb was stopped at the limit"
    );
}
