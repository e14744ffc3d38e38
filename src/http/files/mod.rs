//! Static files: [`Files`], a [`Service`] that serves a directory the way a production web
//! server does.
//!
//! ```no_run
//! use eventide::http::files::Files;
//! use eventide::http::HttpServer;
//! use eventide::Server;
//!
//! let files = Files::new("/srv/www")?.listing(true);
//! let server = Server::builder()
//!     .bind("127.0.0.1:8080")
//!     .start(move |_| HttpServer::new(files.clone()))?;
//! server.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! What it does, request by request (`GET` and `HEAD`; other methods get 405 with `Allow`):
//!
//! 1. **The path is made safe** before anything touches the file system: percent-decoded
//!    segment by segment, with `..`, `.`, encoded slashes, backslashes, NUL and control bytes
//!    refused with 403, malformed escapes and non-UTF-8 names with 400, and names starting
//!    with `.` answered 404 unless [`hidden`](Files::hidden) files are served.
//! 2. **The file is opened beneath the root** with `openat2(RESOLVE_BENEATH)`: the kernel
//!    itself refuses any resolution that leaves the root, symbolic links included, atomically
//!    (no check-then-open race). A link out of the root, or any link when
//!    [`follow_symlinks`](Files::follow_symlinks) is off, is 403; nothing there is 404; a file
//!    the server may not read is 403. Anything but a regular file or a directory (a FIFO, a
//!    device) is 403.
//! 3. **Directories** are redirected (301) to their name with a trailing `/`, then answered
//!    with their [`index`](Files::index) file (`index.html` by default), else with a listing
//!    if [`listing`](Files::listing) is on, else 403.
//! 4. **Validators**: `Last-Modified`, and an `ETag` from the size and the modification time
//!    (weak for a file modified within the last second). `If-Match`, `If-Unmodified-Since`
//!    (412), `If-None-Match` with lists, `*` and weak comparison, and `If-Modified-Since`
//!    (304) are evaluated in the order of RFC 9110 section 13.2.2.
//! 5. **Ranges**: a single `Range` gets 206 with `Content-Range`; one that misses the file
//!    416 with `Content-Range: bytes */len`; several the whole file (200); `If-Range` with a
//!    strong tag or the exact date guards them. `Accept-Ranges: bytes` says so.
//! 6. **The body** is a [`FileBody`] (the open file, an offset, a length) handed to
//!    [`Response::file`]: `Content-Length` is the range's, `HEAD` gets the head only, and the
//!    `Content-Type` comes from the extension.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::date::format_imf_fixdate;
use crate::http::{Request, Response, Service, Status};
use crate::sys::beneath::{list_dir, open_beneath, Links};

mod body;
mod conditional;
mod listing;
mod mime;
mod path;
mod range;

pub use body::FileBody;

use conditional::{Validators, Verdict};
use range::Ranges;

/// A [`Service`] serving the files under one directory (see the [module](self) documentation).
/// Cheap to clone: clones share the open root directory.
#[derive(Clone, Debug)]
pub struct Files {
    /// The root directory, opened once: requests resolve beneath this descriptor, so a root
    /// renamed or replaced later goes on being served until the server restarts.
    root: Arc<File>,
    index: Option<Box<str>>,
    listing: bool,
    hidden: bool,
    links: Links,
}

/// What a request gets, decided before anything is written.
#[derive(Debug)]
enum Reply {
    Refused(Status),
    MethodNotAllowed,
    Redirect(String),
    NotModified(Validators),
    Unsatisfiable(u64),
    Listing(String),
    File {
        body: FileBody,
        /// `Some(total)` for a 206.
        partial_of: Option<u64>,
        content_type: &'static str,
        validators: Validators,
    },
}

impl Files {
    /// Serves the directory `root`: index file `index.html`, no listing, no hidden files,
    /// symbolic links followed while they stay beneath the root.
    pub fn new(root: impl AsRef<Path>) -> io::Result<Files> {
        let root = root.as_ref();
        let dir = File::open(root)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Files {
            root: Arc::new(dir),
            index: Some("index.html".into()),
            listing: false,
            hidden: false,
            links: Links::Beneath,
        })
    }

    /// The file that answers for a directory (default `index.html`; `None` for none). A name
    /// with a `/` is ignored.
    pub fn index(mut self, name: Option<&str>) -> Self {
        match name {
            Some(n) if n.is_empty() || n.contains('/') || n == "." || n == ".." => {
                log::warn!("eventide::http::files: index name {n:?} ignored");
            }
            _ => self.index = name.map(Into::into),
        }
        self
    }

    /// Whether a directory without an index file is answered with an HTML listing of its
    /// entries (default `false`: 403).
    pub fn listing(mut self, on: bool) -> Self {
        self.listing = on;
        self
    }

    /// Whether names starting with `.` (`.git`, `.env`, `.well-known`) are served and listed
    /// (default `false`: 404).
    pub fn hidden(mut self, on: bool) -> Self {
        self.hidden = on;
        self
    }

    /// Whether symbolic links are followed while they stay beneath the root (default `true`);
    /// off, every link is refused with 403. A link out of the root is always refused.
    pub fn follow_symlinks(mut self, on: bool) -> Self {
        self.links = if on { Links::Beneath } else { Links::Refuse };
        self
    }

    /// Answers `req` with the file at `path` (a URL path, percent-encoded, starting with
    /// `/`): for a service that serves files under a prefix of its own, with the prefix
    /// removed. [`Service::call`] serves [`Request::path`].
    ///
    /// ```no_run
    /// use eventide::http::files::Files;
    /// use eventide::http::{Request, Response, Service};
    ///
    /// struct App {
    ///     assets: Files,
    /// }
    ///
    /// impl Service for App {
    ///     fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
    ///         match req.path().strip_prefix("/assets") {
    ///             Some(rest) if rest.starts_with('/') => self.assets.serve(req, rest, res),
    ///             _ => res.body(b"the app"),
    ///         }
    ///     }
    /// }
    /// ```
    pub fn serve(&self, req: &Request<'_>, path: &str, res: &mut Response<'_>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write(self.reply(req, path, now), res);
    }

    fn reply(&self, req: &Request<'_>, path: &str, now: u64) -> Reply {
        let get = match req.method() {
            "GET" => true,
            "HEAD" => false,
            _ => return Reply::MethodNotAllowed,
        };
        let safe = match path::resolve(path, self.hidden) {
            Ok(safe) => safe,
            Err(status) => return Reply::Refused(status),
        };
        let (file, meta) = match self.open(&safe.rel) {
            Ok(found) => found,
            Err(status) => return Reply::Refused(status),
        };
        let mut name = safe.segments.last().map_or("", String::as_str);
        let (file, meta) = if meta.is_dir() {
            if !safe.dir_slash {
                return Reply::Redirect(slash_location(&safe.segments, req.query()));
            }
            match self.directory(file, &safe) {
                Ok((file, meta)) => {
                    name = self.index.as_deref().unwrap_or("");
                    (file, meta)
                }
                Err(reply) => return reply,
            }
        } else if safe.dir_slash {
            return Reply::Refused(Status::NOT_FOUND); // a file asked for as a directory
        } else {
            (file, meta)
        };
        if !meta.is_file() {
            return Reply::Refused(Status::FORBIDDEN);
        }
        let validators = Validators::of(&meta, now);
        let range_ok = match conditional::evaluate(req, &validators, now) {
            Verdict::Failed => return Reply::Refused(Status::PRECONDITION_FAILED),
            Verdict::NotModified => return Reply::NotModified(validators),
            Verdict::Proceed { range } => range && get,
        };
        let len = meta.len();
        let ranges = match req.header("range") {
            Some(value) if range_ok => range::parse(value, len),
            _ => Ranges::Whole,
        };
        let (start, body_len, partial_of) = match ranges {
            Ranges::Whole => (0, len, None),
            Ranges::One { start, len: n } => (start, n, Some(len)),
            Ranges::Unsatisfiable => return Reply::Unsatisfiable(len),
        };
        Reply::File {
            body: FileBody::new(file, start, body_len),
            partial_of,
            content_type: mime::content_type(name),
            validators,
        }
    }

    /// Opens `rel` beneath the root; the error is the status to answer with.
    fn open(&self, rel: &Path) -> Result<(File, std::fs::Metadata), Status> {
        let fd = open_beneath(std::os::fd::AsFd::as_fd(&*self.root), rel, self.links)
            .map_err(open_status)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| {
            log::warn!("eventide::http::files: fstat: {e}");
            Status::INTERNAL_SERVER_ERROR
        })?;
        Ok((file, meta))
    }

    /// A directory asked for with its trailing slash: its index file, or its listing, or a
    /// refusal.
    fn directory(&self, dir: File, safe: &path::Safe) -> Result<(File, std::fs::Metadata), Reply> {
        if let Some(index) = &self.index {
            match self.open(&safe.rel.join(&**index)) {
                Ok((file, meta)) if meta.is_file() => return Ok((file, meta)),
                Ok(_) | Err(Status::NOT_FOUND) => {}
                Err(status) => return Err(Reply::Refused(status)),
            }
        }
        if !self.listing {
            return Err(Reply::Refused(Status::FORBIDDEN));
        }
        match list_dir(dir.into()) {
            Ok(entries) => Err(Reply::Listing(listing::page(
                &safe.segments,
                entries,
                self.hidden,
            ))),
            Err(e) => Err(Reply::Refused(open_status(e))),
        }
    }
}

impl Service for Files {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self.serve(req, req.path(), res);
    }
}

/// The status for a failed open or listing.
fn open_status(e: io::Error) -> Status {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => Status::NOT_FOUND,
        // EXDEV: the path leaves the root; ELOOP: a link where none may be followed.
        Some(libc::EACCES | libc::EPERM | libc::EXDEV | libc::ELOOP) => Status::FORBIDDEN,
        Some(libc::EMFILE | libc::ENFILE) => Status::SERVICE_UNAVAILABLE,
        _ => {
            log::warn!("eventide::http::files: open: {e}");
            Status::INTERNAL_SERVER_ERROR
        }
    }
}

/// `/a/b/` (segments re-encoded, so the location can never be `//host`), and the query.
fn slash_location(segments: &[String], query: Option<&str>) -> String {
    let mut loc = String::from("/");
    for s in segments {
        path::encode_segment(s.as_bytes(), &mut loc);
        loc.push('/');
    }
    if let Some(q) = query {
        loc.push('?');
        loc.push_str(q);
    }
    loc
}

/// Writes a reply.
fn write(reply: Reply, res: &mut Response<'_>) {
    let text = "text/plain; charset=utf-8";
    match reply {
        Reply::Refused(status) => res
            .status(status)
            .content_type(text)
            .body(status.reason().as_bytes()),
        Reply::MethodNotAllowed => res
            .status(Status::METHOD_NOT_ALLOWED)
            .header("Allow", "GET, HEAD")
            .content_type(text)
            .body(Status::METHOD_NOT_ALLOWED.reason().as_bytes()),
        Reply::Redirect(location) => res
            .status(Status::MOVED_PERMANENTLY)
            .header("Location", &location)
            .content_type(text)
            .body(location.as_bytes()),
        Reply::NotModified(v) => res
            .status(Status::NOT_MODIFIED)
            .header("ETag", &v.etag)
            .body(b""),
        Reply::Unsatisfiable(len) => res
            .status(Status::RANGE_NOT_SATISFIABLE)
            .header("Content-Range", format!("bytes */{len}"))
            .content_type(text)
            .body(Status::RANGE_NOT_SATISFIABLE.reason().as_bytes()),
        Reply::Listing(page) => res
            .content_type("text/html; charset=utf-8")
            .body(page.as_bytes()),
        Reply::File {
            body,
            partial_of,
            content_type,
            validators,
        } => {
            if let Some(total) = partial_of {
                let last = body.offset() + body.len().saturating_sub(1);
                res.status(Status::PARTIAL_CONTENT).header(
                    "Content-Range",
                    format!("bytes {}-{last}/{total}", body.offset()),
                );
            }
            res.content_type(content_type)
                .header("Last-Modified", format_imf_fixdate(validators.modified))
                .header("ETag", &validators.etag)
                .header("Accept-Ranges", "bytes")
                .file(body);
        }
    }
}

#[cfg(test)]
mod tests;
