//! [`FileBody`]: a byte range of an open file, as the body of a response.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

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
