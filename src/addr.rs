//! Addresses to listen on or connect to: TCP/IP, or a Unix-domain stream socket path.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A stream socket address: TCP/IP or a Unix-domain socket path.
///
/// As text, a Unix address is written `unix:/path/to.sock`; anything else is `HOST:PORT`.
///
/// ```
/// use eventide::Addr;
/// let tcp: Addr = "127.0.0.1:8080".parse()?;
/// let unix: Addr = "unix:/tmp/app.sock".parse()?;
/// assert_eq!(unix.to_string(), "unix:/tmp/app.sock");
/// assert!(tcp.as_tcp().is_some() && unix.as_unix().is_some());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A TCP/IP address.
    Tcp(SocketAddr),
    /// A Unix-domain stream socket at this path.
    Unix(PathBuf),
}

impl Addr {
    /// The TCP address, if this is one.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(a) => Some(*a),
            Addr::Unix(_) => None,
        }
    }

    /// The socket path, if this is a Unix address.
    pub fn as_unix(&self) -> Option<&Path> {
        match self {
            Addr::Tcp(_) => None,
            Addr::Unix(p) => Some(p),
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => a.fmt(f),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl FromStr for Addr {
    type Err = io::Error;

    /// Parses `unix:/path` or a literal `IP:PORT` (no name resolution; see [`ToAddrs`]).
    fn from_str(s: &str) -> io::Result<Addr> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad address {s:?}: empty unix socket path"),
                ));
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>().map(Addr::Tcp).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad address {s:?}: {e}"),
            )
        })
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Addr {
        Addr::Tcp(a)
    }
}

impl From<(IpAddr, u16)> for Addr {
    fn from(a: (IpAddr, u16)) -> Addr {
        Addr::Tcp(a.into())
    }
}

/// Values that name one or more [`Addr`]es: `"HOST:PORT"` (resolved), `"unix:/path"`,
/// `SocketAddr`, `(host, port)` and `Addr` itself.
pub trait ToAddrs {
    /// The addresses, resolving host names.
    fn to_addrs(&self) -> io::Result<Vec<Addr>>;
}

impl ToAddrs for Addr {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        Ok(vec![self.clone()])
    }
}

impl ToAddrs for str {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        if self.starts_with("unix:") {
            return Ok(vec![self.parse()?]);
        }
        let addrs = self
            .to_socket_addrs()
            .map_err(|e| naming(self, e))?
            .map(Addr::Tcp)
            .collect::<Vec<_>>();
        if addrs.is_empty() {
            return Err(naming(
                self,
                io::Error::new(io::ErrorKind::NotFound, "the name has no address"),
            ));
        }
        Ok(addrs)
    }
}

/// An error that says which address it is about (the resolver's own messages do not).
fn naming(addr: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("bad address {addr:?}: {e}"))
}

impl ToAddrs for String {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        self.as_str().to_addrs()
    }
}

impl ToAddrs for SocketAddr {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        Ok(vec![Addr::Tcp(*self)])
    }
}

impl ToAddrs for (&str, u16) {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        let addrs = self
            .to_socket_addrs()
            .map_err(|e| naming(&format!("{}:{}", self.0, self.1), e))?;
        Ok(addrs.map(Addr::Tcp).collect())
    }
}

impl ToAddrs for (IpAddr, u16) {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        Ok(vec![Addr::Tcp((*self).into())])
    }
}

impl<T: ToAddrs + ?Sized> ToAddrs for &T {
    fn to_addrs(&self) -> io::Result<Vec<Addr>> {
        (**self).to_addrs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_kinds() {
        let a: Addr = "unix:/run/x.sock".parse().unwrap();
        assert_eq!(a, Addr::Unix("/run/x.sock".into()));
        assert_eq!(a.to_string(), "unix:/run/x.sock");
        let t: Addr = "[::1]:9".parse().unwrap();
        assert_eq!(t.to_string(), "[::1]:9");
        assert!("unix:".parse::<Addr>().is_err());
        let e = "nonsense".parse::<Addr>().unwrap_err();
        assert!(e.to_string().contains("\"nonsense\""), "{e}");
    }

    #[test]
    fn errors_repeat_the_bad_input() {
        for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999", "unix:"] {
            let e = bad.to_addrs().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn resolves_through_to_addrs() {
        assert_eq!(
            "127.0.0.1:7".to_addrs().unwrap(),
            vec![Addr::Tcp("127.0.0.1:7".parse().unwrap())]
        );
        assert_eq!("unix:/a".to_addrs().unwrap(), vec![Addr::Unix("/a".into())]);
        assert!(!("localhost", 80).to_addrs().unwrap().is_empty());
    }
}
