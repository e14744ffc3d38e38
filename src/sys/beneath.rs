//! Opening files beneath a directory, and listing one: the system calls of a file server that
//! must never serve a file outside its root.
//!
//! [`open_beneath`] uses `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel
//! resolves the whole path relative to the root's descriptor and fails with `EXDEV` if any step
//! — a `..`, an absolute symbolic link, a relative one climbing out — would leave it, and with
//! `ELOOP` on `/proc`-style magic links. The check and the open are one atomic operation, so a
//! symbolic link swapped in between cannot win a race, as it can against a userspace
//! `realpath` check followed by `open`. Links that stay inside the root are followed, unless
//! [`Links::Refuse`] asks for `RESOLVE_NO_SYMLINKS`.
//!
//! Where `openat2` is missing (`ENOSYS`: kernels before 5.6, or a seccomp filter that does not
//! know it; `EPERM` from older container filters), the path is walked one component at a time
//! with `openat(O_NOFOLLOW)`: no symbolic link is followed at all (`ELOOP`), which is stricter
//! but just as safe, since the caller has already refused `.` and `..` components.
//!
//! Files are opened `O_NONBLOCK` (a FIFO planted in the root must not block the loop in
//! `open`; regular files ignore the flag) and `O_NOCTTY`.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{cvt, cvt_retry};

/// Whether symbolic links beneath the directory are followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Links {
    /// Followed while they stay beneath the directory.
    Beneath,
    /// Never followed (`ELOOP`).
    Refuse,
}

/// `openat2` answered `ENOSYS` once: walk paths instead from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

const OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// Opens `path` (relative; `.` for the directory itself) beneath `dir` for reading. Errors
/// are the kernel's: `ENOENT`/`ENOTDIR` (nothing there), `EACCES`, `EXDEV` (the path leaves
/// `dir`), `ELOOP` (a symbolic link where none is allowed), `EINVAL` (a NUL byte in `path`).
pub(crate) fn open_beneath(dir: BorrowedFd<'_>, path: &Path, links: Links) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match openat2(dir.as_raw_fd(), &c_path, links) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            other => return other,
        }
    }
    walk(dir, path)
}

fn openat2(dir: RawFd, path: &CString, links: Links) -> io::Result<OwnedFd> {
    let mut resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    if links == Links::Refuse {
        resolve |= libc::RESOLVE_NO_SYMLINKS;
    }
    // SAFETY: open_how is a plain C struct for which all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = OPEN_FLAGS as u64;
    how.resolve = resolve;
    // EAGAIN: the kernel saw a concurrent rename or mount it could not rule out as an
    // escape; trying again is what openat2(2) prescribes.
    let mut attempts = 0;
    loop {
        // SAFETY: `path` is a NUL-terminated string and `how` a valid open_how of the size
        // passed, both alive for the call; the kernel returns a new descriptor or -1.
        let r = cvt_retry(|| unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            ) as libc::c_int
        });
        match r {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempts < 8 => attempts += 1,
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            other => return other.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
        }
    }
}

/// The fallback: one `openat(O_NOFOLLOW)` per component.
fn walk(dir: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let parts: Vec<&[u8]> = path
        .as_os_str()
        .as_bytes()
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.iter().any(|p| *p == b"..") || path.as_os_str().as_bytes().first() == Some(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    let Some((last, dirs)) = parts.split_last() else {
        return openat(dir.as_raw_fd(), b".", OPEN_FLAGS | libc::O_DIRECTORY);
    };
    let mut current: Option<OwnedFd> = None;
    for part in dirs {
        let at = current.as_ref().map_or(dir.as_raw_fd(), AsRawFd::as_raw_fd);
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        current = Some(openat(at, part, flags)?);
    }
    let at = current.as_ref().map_or(dir.as_raw_fd(), AsRawFd::as_raw_fd);
    openat(at, last, OPEN_FLAGS | libc::O_NOFOLLOW)
}

fn openat(dir: RawFd, name: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is NUL-terminated and alive for the call; openat returns a new
    // descriptor or -1.
    let fd = cvt_retry(|| unsafe { libc::openat(dir, name.as_ptr(), flags) })?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One entry of a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The name, as stored (any bytes but `/` and NUL).
    pub name: OsString,
    /// Whether it is a directory (a symbolic link is not, whatever it points to).
    pub dir: bool,
}

/// The entries of the directory `dir` (opened for reading, and consumed), without `.` and
/// `..`, in the order the file system gives them.
pub(crate) fn list_dir(dir: OwnedFd) -> io::Result<Vec<Entry>> {
    let raw = dir.into_raw_fd();
    // SAFETY: `raw` is an open descriptor we own; on success its ownership passes to the DIR
    // stream (closedir closes it).
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(e);
    }
    let dir_fd = raw;
    let mut entries = Vec::new();
    let result = loop {
        // readdir signals errors only through errno, which must be cleared first.
        // SAFETY: errno is thread-local; writing it is always allowed.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid DIR stream until closedir below.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated; it stays
        // valid until the next readdir on this stream, and is copied out before that.
        let (name, kind) = unsafe {
            let ent = &*ent;
            (std::ffi::CStr::from_ptr(ent.d_name.as_ptr()), ent.d_type)
        };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let dir = match kind {
            libc::DT_DIR => true,
            libc::DT_UNKNOWN => is_dir_at(dir_fd, name)?,
            _ => false,
        };
        entries.push(Entry {
            name: OsString::from_vec(bytes.to_vec()),
            dir,
        });
    };
    // SAFETY: `stream` came from fdopendir and is closed once.
    unsafe { libc::closedir(stream) };
    result.map(|()| entries)
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`: whether `name` in `dir` is a directory (for file systems
/// that do not report entry types).
fn is_dir_at(dir: RawFd, name: &std::ffi::CStr) -> io::Result<bool> {
    // SAFETY: all zeroes is a valid `stat`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` writable, both alive for the call.
    cvt(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A fresh directory tree under the temp dir, removed on drop:
    /// `root/{a.txt, sub/b.txt, in -> a.txt, up -> ../secret, abs -> /etc/hostname}` and
    /// `secret` next to `root`.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let base = std::env::temp_dir()
                .join(format!("eventide-beneath-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(base.join("root/sub")).unwrap();
            fs::write(base.join("root/a.txt"), "a").unwrap();
            fs::write(base.join("root/sub/b.txt"), "b").unwrap();
            fs::write(base.join("secret"), "secret").unwrap();
            symlink("a.txt", base.join("root/in")).unwrap();
            symlink("../a.txt", base.join("root/sub/in-up")).unwrap();
            symlink("../secret", base.join("root/up")).unwrap();
            symlink("/etc/hostname", base.join("root/abs")).unwrap();
            Tree(base)
        }

        fn root(&self) -> File {
            File::open(self.0.join("root")).unwrap()
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn read(fd: OwnedFd) -> String {
        let mut s = String::new();
        File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    fn errno(r: io::Result<OwnedFd>) -> i32 {
        r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
    }

    #[test]
    fn opens_beneath_and_refuses_escapes() {
        let tree = Tree::new("openat2");
        let root = tree.root();
        let open = |p: &str, l| open_beneath(root.as_fd(), Path::new(p), l);
        assert_eq!(read(open("a.txt", Links::Beneath).unwrap()), "a");
        assert_eq!(read(open("sub/b.txt", Links::Beneath).unwrap()), "b");
        assert_eq!(read(open("in", Links::Beneath).unwrap()), "a");
        assert_eq!(read(open("sub/in-up", Links::Beneath).unwrap()), "a");
        assert!(open(".", Links::Beneath).is_ok());
        assert_eq!(errno(open("up", Links::Beneath)), libc::EXDEV);
        assert_eq!(errno(open("abs", Links::Beneath)), libc::EXDEV);
        assert_eq!(errno(open("../secret", Links::Beneath)), libc::EXDEV);
        assert_eq!(errno(open("/etc/hostname", Links::Beneath)), libc::EXDEV);
        assert_eq!(errno(open("in", Links::Refuse)), libc::ELOOP);
        assert_eq!(errno(open("nope", Links::Beneath)), libc::ENOENT);
        assert_eq!(errno(open("a.txt/x", Links::Beneath)), libc::ENOTDIR);
        assert_eq!(errno(open("a\0b", Links::Beneath)), libc::EINVAL);
    }

    #[test]
    fn the_fallback_walk_refuses_every_link() {
        let tree = Tree::new("walk");
        let root = tree.root();
        let open = |p: &str| walk(root.as_fd(), Path::new(p));
        assert_eq!(read(open("a.txt").unwrap()), "a");
        assert_eq!(read(open("sub//b.txt").unwrap()), "b");
        assert!(open(".").is_ok() && open("").is_ok());
        assert_eq!(errno(open("in")), libc::ELOOP);
        assert_eq!(errno(open("up")), libc::ELOOP);
        assert_eq!(errno(open("abs")), libc::ELOOP);
        assert_eq!(errno(open("sub/in-up")), libc::ELOOP);
        assert_eq!(errno(open("../secret")), libc::EXDEV);
        assert_eq!(errno(open("/etc/hostname")), libc::EXDEV);
        assert_eq!(errno(open("nope/x")), libc::ENOENT);
    }

    #[test]
    fn lists_a_directory() {
        let tree = Tree::new("list");
        let root = tree.root();
        let open = || open_beneath(root.as_fd(), Path::new("."), Links::Beneath).unwrap();
        let mut names: Vec<(String, bool)> = list_dir(open())
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_string_lossy().into_owned(), e.dir))
            .collect();
        names.sort();
        let want = [
            ("a.txt", false),
            ("abs", false),
            ("in", false),
            ("sub", true),
            ("up", false),
        ];
        let want: Vec<(String, bool)> = want.iter().map(|(n, d)| (n.to_string(), *d)).collect();
        assert_eq!(names, want);
        assert_eq!(list_dir(open()).unwrap().len(), 5);
        let file = File::open(tree.0.join("root/a.txt")).unwrap();
        assert_eq!(
            list_dir(file.into()).unwrap_err().raw_os_error(),
            Some(libc::ENOTDIR)
        );
    }
}
