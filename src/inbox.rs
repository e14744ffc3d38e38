//! The synchronisation at the heart of a loop's mailbox, apart from what is queued and how the
//! loop is woken, so the same code runs in the server and in its `loom` model
//! (`RUSTFLAGS="--cfg eventide_loom" cargo test --lib loom`).
//!
//! Posters push an item, then ring the doorbell (the loop's eventfd) only if no ring is
//! pending: a burst of posts costs one ring. The loop, told by epoll that the doorbell rang,
//! silences it and clears the pending flag *before* it takes the queue: a poster that saw the
//! flag set pushed before the take (its item is taken), and one that comes later sees the flag
//! clear and rings again. No wake-up is lost.

use std::io;

#[cfg(all(eventide_loom, test))]
use loom::sync::{atomic::AtomicBool, Mutex};
use std::sync::atomic::Ordering::SeqCst;
#[cfg(not(all(eventide_loom, test)))]
use std::sync::{atomic::AtomicBool, Mutex};

/// How an inbox wakes its reader (an eventfd in the server).
pub(crate) trait Doorbell {
    /// Makes the reader's wait return (eventfd: add 1).
    fn ring(&self) -> io::Result<()>;
    /// Silences the doorbell after the reader woke (eventfd: read the counter back to 0).
    /// `WouldBlock` means it was silent already.
    fn silence(&self) -> io::Result<()>;
}

/// A queue many threads push to and one reader takes from, with coalesced wake-ups.
pub(crate) struct Inbox<T, B> {
    queue: Mutex<Vec<T>>,
    ring_pending: AtomicBool,
    bell: B,
}

impl<T, B: Doorbell> Inbox<T, B> {
    pub(crate) fn new(bell: B) -> Self {
        Inbox {
            queue: Mutex::new(Vec::new()),
            ring_pending: AtomicBool::new(false),
            bell,
        }
    }

    pub(crate) fn bell(&self) -> &B {
        &self.bell
    }

    /// Queues an item without waking the reader.
    pub(crate) fn push(&self, item: T) {
        // A poisoned queue only means a poster panicked mid-push; the Vec is still valid.
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(item);
    }

    /// Rings the doorbell unless a ring is already pending. Returns whether it rang (`Err`:
    /// the ring itself failed).
    pub(crate) fn wake(&self) -> io::Result<bool> {
        if self.ring_pending.swap(true, SeqCst) {
            return Ok(false);
        }
        self.bell.ring().map(|()| true)
    }

    /// Moves every queued item into `into`. With `rang` (the reader was woken by the doorbell),
    /// first silences it and clears the pending flag — in that order, before the take.
    pub(crate) fn take(&self, into: &mut Vec<T>, rang: bool) -> io::Result<()> {
        let mut result = Ok(());
        if rang {
            match self.bell.silence() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => result = Err(e),
                _ => {}
            }
            // A read-modify-write, not a store: it joins the total order of the posters'
            // swaps, which is what the argument above needs. (The loom model found a lost
            // wake-up with a plain store under its memory model; on x86-64 both compile to
            // the same `xchg`.)
            self.ring_pending.swap(false, SeqCst);
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *queue, into);
        result
    }
}
