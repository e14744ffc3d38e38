//! Handles that reach an event loop from any thread.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::event_loop::LoopCx;
use crate::mailbox::{LoopShared, Task};

/// Runs closures on one event loop from any thread (`Send + Sync`, cheap to clone).
///
/// Tasks from one thread run in the order they were posted. Posting costs a lock and, unless
/// a wake-up is already pending, one `write` to the loop's eventfd.
///
/// ```no_run
/// # use eventide::{Action, Conn, Handler, Server};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     fn on_open(&mut self, _: &mut Conn<'_>) {}
/// #     fn on_data(&mut self, _: &mut Conn<'_>, _: &mut ()) -> Action { Action::Continue }
/// # }
/// let server = Server::builder().bind("127.0.0.1:0").loops(2).start(|_| Echo)?;
/// let handle = server.loop_handle(1).expect("loop 1 exists");
/// handle.execute(|cx| println!("running on loop {}", cx.index()))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<LoopShared>,
}

impl LoopHandle {
    /// Index of the loop.
    pub fn index(&self) -> usize {
        self.shared.index
    }

    /// Runs `f` on the loop's thread, after the I/O events of its current turn. Fails with
    /// `NotConnected` once the loop has exited (a task posted while it exits is dropped).
    pub fn execute(&self, f: impl FnOnce(&mut LoopCx<'_>) + Send + 'static) -> io::Result<()> {
        if self.shared.has_exited() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the event loop has exited",
            ));
        }
        self.shared.post(Task::Run(Box::new(f)));
        Ok(())
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("index", &self.shared.index)
            .finish()
    }
}
