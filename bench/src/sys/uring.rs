//! The io_uring calls of the `uring-echo` peer, behind a safe interface: a ring set up as a
//! C server would (`SINGLE_ISSUER`, `DEFER_TASKRUN`), one provided-buffer ring, and the four
//! requests the echo needs (multishot accept, multishot receive into provided buffers, send
//! from a provided buffer, poll of the signal pipe).
//!
//! Soundness: a submitted request may make the kernel read or write user memory until its
//! completion. The only memory any request here refers to is the provided-buffer ring and its
//! buffers, which are allocated once and leaked (`'static`, never freed or moved), so no
//! request can outlive the memory it uses, whatever the caller does with the completions.

use std::alloc::Layout;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// One completion: the request's tag, its result, and the provided buffer it filled (if any).
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The `user_data` the request was submitted with.
    pub tag: u64,
    /// The result: bytes, a file descriptor, or `-errno`.
    pub result: i32,
    /// The provided buffer the kernel picked (multishot receive).
    pub buffer: Option<u16>,
    /// Whether the multishot request stays armed (`IORING_CQE_F_MORE`).
    pub more: bool,
}

/// An io_uring instance with one group of provided buffers (group 0).
pub struct Uring {
    ring: IoUring,
    /// `entries` descriptors, page-aligned, leaked.
    descs: *mut BufRingEntry,
    /// `entries * size` bytes of buffers, leaked.
    bufs: *mut u8,
    entries: u16,
    size: usize,
    /// The ring's tail as this side has advanced it.
    tail: u16,
}

const GROUP: u16 = 0;

impl Uring {
    /// A ring of `sq_entries` submission slots, with `entries` (a power of two) provided buffers
    /// of `size` bytes each, all handed to the kernel.
    pub fn new(sq_entries: u32, entries: u16, size: usize) -> io::Result<Uring> {
        if !entries.is_power_of_two() || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: entries must be a power of two and size in 1..=u32::MAX",
            ));
        }
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_submit_all()
            .build(sq_entries)?;
        let n = usize::from(entries);
        let descs_layout = Layout::from_size_align(n * std::mem::size_of::<BufRingEntry>(), 4096)
            .map_err(io::Error::other)?;
        let bufs_layout = Layout::from_size_align(n * size, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (entries >= 1, size >= 1). The memory is
        // zeroed (the kernel expects an initialised ring, tail 0) and deliberately leaked: it
        // must stay valid for every request that may still refer to it (see the module docs).
        let (descs, bufs) = unsafe {
            (
                std::alloc::alloc_zeroed(descs_layout) as *mut BufRingEntry,
                std::alloc::alloc_zeroed(bufs_layout),
            )
        };
        if descs.is_null() || bufs.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: `descs` is page-aligned, zeroed and holds `entries` descriptors; it stays
        // valid for the life of the process (leaked).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(descs as u64, entries, GROUP, 0)?;
        }
        let mut u = Uring {
            ring,
            descs,
            bufs,
            entries,
            size,
            tail: 0,
        };
        for bid in 0..entries {
            u.put_buffer(bid);
        }
        u.publish_tail();
        Ok(u)
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.entries, "no such buffer");
        self.put_buffer(bid);
        self.publish_tail();
    }

    fn put_buffer(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.entries - 1));
        // SAFETY: `slot < entries`, inside the leaked descriptor array. The kernel reads only
        // descriptors between its head and the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.descs.add(slot) };
        // SAFETY: the buffer lies inside the leaked buffer allocation.
        let addr = unsafe { self.bufs.add(usize::from(bid) * self.size) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: `descs` is the base of the registered ring; its tail field is a u16 the kernel
        // reads atomically, and `AtomicU16` has the layout of `u16`.
        let tail = unsafe { &*(BufRingEntry::tail(self.descs) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built by this type refers to no user memory but the leaked
            // provided buffers (see the module docs).
            let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
            if pushed {
                return Ok(());
            }
            self.ring.submit()?; // full: hand what is queued to the kernel first
        }
    }

    /// Multishot accept on `listener`: one completion per new connection (its fd).
    pub fn accept_multi(&mut self, listener: RawFd, tag: u64) -> io::Result<()> {
        self.push(
            opcode::AcceptMulti::new(Fd(listener))
                .build()
                .user_data(tag),
        )
    }

    /// Multishot receive on `fd` into the provided buffers: one completion per arrival.
    pub fn recv_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<()> {
        self.push(opcode::RecvMulti::new(Fd(fd), GROUP).build().user_data(tag))
    }

    /// Sends bytes `off..off + len` of provided buffer `bid` on `fd` (`MSG_WAITALL`: the kernel
    /// retries short sends). Keep `bid` out of the ring until the completion.
    pub fn send_buffer(
        &mut self,
        fd: RawFd,
        bid: u16,
        off: usize,
        len: usize,
        tag: u64,
    ) -> io::Result<()> {
        assert!(
            bid < self.entries && off + len <= self.size,
            "send outside the buffer"
        );
        // SAFETY: inside the leaked buffer allocation (checked above).
        let ptr = unsafe { self.bufs.add(usize::from(bid) * self.size + off) };
        self.push(
            opcode::Send::new(Fd(fd), ptr, len as u32)
                .flags(libc::MSG_WAITALL)
                .build()
                .user_data(tag),
        )
    }

    /// One-shot poll for readability of `fd`.
    pub fn poll_readable(&mut self, fd: RawFd, tag: u64) -> io::Result<()> {
        self.push(
            opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(tag),
        )
    }

    /// Submits what is queued and waits for at least one completion (running the deferred
    /// task work), then moves the completions into `out`.
    pub fn wait(&mut self, out: &mut Vec<Completion>) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {} // CQ overflow: drain first
            Err(e) => return Err(e),
        }
        out.extend(self.ring.completion().map(|c| Completion {
            tag: c.user_data(),
            result: c.result(),
            buffer: cqueue::buffer_select(c.flags()),
            more: cqueue::more(c.flags()),
        }));
        Ok(())
    }
}

/// Closes `fd` (a connection the caller owns and no longer uses).
pub fn close(fd: RawFd) {
    // SAFETY: the caller passes a descriptor it owns and never uses again.
    unsafe {
        libc::close(fd);
    }
}

/// Sets `TCP_NODELAY` on `fd`.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the duration of the call; setsockopt only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
