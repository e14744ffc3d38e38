//! [`FileBody`]: a byte range of an open file, as the body of a response.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::http::response::{Next, Response};

/// A byte range of an open file, written as a response body by
/// [`Response::file`](crate::http::Response::file): `len` bytes from `offset`. The file's own
/// position is never used, so one open file can back several bodies.
///
/// ```no_run
/// use eventide::http::files::FileBody;
///
/// let file = std::fs::File::open("report.pdf")?;
/// let whole = FileBody::whole(file)?;
/// assert_eq!(whole.offset(), 0);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FileBody {
    file: File,
    offset: u64,
    len: u64,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`. The range is not checked against the file's
    /// length here: a body that finds the file shorter when it is sent ends the connection
    /// after what there was (its `Content-Length` cannot be kept).
    pub fn new(file: File, offset: u64, len: u64) -> FileBody {
        FileBody { file, offset, len }
    }

    /// The whole of `file`, by its current length.
    pub fn whole(file: File) -> io::Result<FileBody> {
        let len = file.metadata()?.len();
        Ok(FileBody::new(file, 0, len))
    }

    /// Where the range starts in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the range has: the response's `Content-Length`.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Drops the first `n` bytes of the range (they were sent).
    pub(crate) fn advance(&mut self, n: u64) {
        let n = n.min(self.len);
        self.offset += n;
        self.len -= n;
    }

    /// The file, the offset and the length.
    pub fn into_parts(self) -> (File, u64, u64) {
        (self.file, self.offset, self.len)
    }
}

impl AsFd for FileBody {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Response<'_> {
    /// Writes `Content-Length` (the length of `body`'s range) and the end of the head, then
    /// the file's bytes, completing the response. On plain TCP they go from the file to the
    /// socket with `sendfile(2)`, as the socket takes them; under TLS they are read in 64 KiB
    /// pieces as the output drains. Either way the file is never held in memory, whatever its
    /// size. A `HEAD` request (or a status without a body) gets the head only, and the file is
    /// not read. Ignored if the response is already complete.
    ///
    /// A file that turns out shorter than the range when it is read (it was truncated
    /// meanwhile), or fails to read, ends the connection after what could be sent: the
    /// client sees a body shorter than its `Content-Length`, never bytes of another response.
    ///
    /// ```no_run
    /// use eventide::http::files::FileBody;
    /// use eventide::http::{Request, Response, Status};
    ///
    /// fn report(_req: &Request<'_>, res: &mut Response<'_>) {
    ///     match std::fs::File::open("/srv/report.pdf").and_then(FileBody::whole) {
    ///         Ok(body) => res.content_type("application/pdf").file(body),
    ///         Err(_) => res.status(Status::NOT_FOUND).body(b""),
    ///     }
    /// }
    /// # let _ = report;
    /// ```
    pub fn file(&mut self, body: FileBody) {
        if self.is_done() {
            log::warn!("eventide::http: a second body for one response; ignored");
            return;
        }
        let (send, _) = self.open_body(Some(body.len()));
        if send && !body.is_empty() {
            self.next = Next::File(body);
        }
    }
}
