//! What to inject ([`FaultConfig`], read from `EVENTIDE_FAULTS` or given to
//! [`Builder::faults`](crate::Builder::faults)), the kinds of fault, and how many of each were
//! injected ([`FaultCounts`]).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The environment variable servers read their fault configuration from.
pub const ENV_VAR: &str = "EVENTIDE_FAULTS";

/// A kind of injected fault. The first five never end a connection by themselves; `Reset`,
/// `NoMem` and `Emfile` may (see [`ends_connection`](FaultKind::ends_connection)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A read returns fewer bytes (a `recvmmsg` fewer datagrams) than were asked for and are there.
    ShortRead,
    /// A write takes fewer bytes (a `sendmmsg` fewer datagrams) than it was offered.
    ShortWrite,
    /// A call fails with `EINTR`, as if a signal arrived; `epoll_wait` returns no events.
    Eintr,
    /// A call on a ready descriptor fails with `EAGAIN`.
    Eagain,
    /// `epoll_wait` returns early with no events, or reports a descriptor ready that has
    /// nothing to do.
    SpuriousReady,
    /// `ECONNRESET` or `EPIPE` mid-stream; `ECONNABORTED` on accept; `ECONNREFUSED` on
    /// connect; `ENOTCONN` on shutdown.
    Reset,
    /// `ENOMEM` or `ENOBUFS`: on reads, writes, accept, connect and `epoll_ctl` registration.
    NoMem,
    /// `EMFILE` or `ENFILE` on accept.
    Emfile,
}

impl FaultKind {
    /// Every kind, in the order counters and configurations list them.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::ShortRead,
        FaultKind::ShortWrite,
        FaultKind::Eintr,
        FaultKind::Eagain,
        FaultKind::SpuriousReady,
        FaultKind::Reset,
        FaultKind::NoMem,
        FaultKind::Emfile,
    ];

    /// The name used in `EVENTIDE_FAULTS` (`"short_read"`, ..., `"nomem"`, `"emfile"`).
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ShortRead => "short_read",
            FaultKind::ShortWrite => "short_write",
            FaultKind::Eintr => "eintr",
            FaultKind::Eagain => "eagain",
            FaultKind::SpuriousReady => "spurious_ready",
            FaultKind::Reset => "reset",
            FaultKind::NoMem => "nomem",
            FaultKind::Emfile => "emfile",
        }
    }

    /// Whether a fault of this kind may end a connection (a reset or an out-of-memory error
    /// is fatal to the connection it hits; `EMFILE` on accept delays connections).
    pub fn ends_connection(self) -> bool {
        matches!(
            self,
            FaultKind::Reset | FaultKind::NoMem | FaultKind::Emfile
        )
    }

    pub(crate) fn bit(self) -> u16 {
        1 << self as u16
    }

    fn from_name(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What faults a server injects: a seed, a probability per system call, and the kinds.
///
/// Parsed from `seed=N,rate=P[,setup=on][,kinds=K1,K2,...]` (the form of
/// `EVENTIDE_FAULTS`); `seed` defaults to 0, `setup` to off and `kinds` to all of them.
/// `Display` prints the same form.
///
/// ```
/// use eventide::{FaultConfig, FaultKind};
///
/// let cfg: FaultConfig = "seed=7,rate=0.05,kinds=short_read,eintr".parse()?;
/// assert_eq!(cfg.rate(), 0.05);
/// assert!(cfg.is_enabled(FaultKind::Eintr) && !cfg.is_enabled(FaultKind::Reset));
/// assert_eq!(cfg.to_string(), "seed=7,rate=0.05,kinds=short_read,eintr");
/// assert!("rate=2".parse::<FaultConfig>().is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultConfig {
    seed: u64,
    rate: f64,
    kinds: u16,
    /// Also inject into a loop's set-up (see [`FaultConfig::with_setup`]).
    setup: bool,
}

impl FaultConfig {
    /// Every kind of fault, each call failing with probability `rate` (0 to 1).
    pub fn new(seed: u64, rate: f64) -> io::Result<FaultConfig> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid(format!(
                "fault rate {rate} is not a probability between 0 and 1"
            )));
        }
        Ok(FaultConfig {
            seed,
            rate,
            kinds: FaultKind::ALL.iter().fold(0, |m, k| m | k.bit()),
            setup: false,
        })
    }

    /// Only these kinds (an empty list injects nothing).
    pub fn with_kinds(mut self, kinds: &[FaultKind]) -> FaultConfig {
        self.kinds = kinds.iter().fold(0, |m, k| m | k.bit());
        self
    }

    /// The same faults from another seed (say, for a second server in the same test).
    pub fn with_seed(mut self, seed: u64) -> FaultConfig {
        self.seed = seed;
        self
    }

    /// Whether faults are injected into each loop's set-up too — the registration of its
    /// wake-up eventfd, listeners and UDP sockets, which
    /// [`Builder::start`](crate::Builder::start) reports as its error — to test that path
    /// (`setup=on` in the string form). Off by default: a torture run tests serving, and
    /// needs its servers to start.
    pub fn with_setup(mut self, on: bool) -> FaultConfig {
        self.setup = on;
        self
    }

    /// Whether faults are injected into each loop's set-up (see
    /// [`with_setup`](FaultConfig::with_setup)).
    pub fn in_setup(&self) -> bool {
        self.setup
    }

    /// The seed every thread's random stream is derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The probability that a system call gets a fault.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether faults of `kind` are injected.
    pub fn is_enabled(&self, kind: FaultKind) -> bool {
        self.kinds & kind.bit() != 0
    }

    pub(crate) fn kind_mask(&self) -> u16 {
        self.kinds
    }

    /// The configuration in [`ENV_VAR`], if it is set and not empty. A malformed value is an
    /// `InvalidInput` error naming the variable and what is wrong with it.
    pub fn from_env() -> io::Result<Option<FaultConfig>> {
        match std::env::var(ENV_VAR) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => v
                .parse()
                .map(Some)
                .map_err(|e: io::Error| invalid(format!("{ENV_VAR}={v:?}: {e}"))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(invalid(format!("{ENV_VAR} is not valid UTF-8")))
            }
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl FromStr for FaultConfig {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<FaultConfig> {
        let (mut seed, mut rate, mut kinds, mut setup) = (0u64, None, None::<u16>, false);
        let mut in_kinds = false;
        for item in s.split(',').map(str::trim) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                // After `kinds=`, bare names continue the list.
                None if in_kinds => ("kinds", item),
                None => return Err(invalid(format!("expected KEY=VALUE, found {item:?}"))),
            };
            in_kinds = key == "kinds";
            match key {
                "seed" => {
                    seed = value
                        .parse()
                        .map_err(|_| invalid(format!("seed {value:?} is not a u64")))?;
                }
                "rate" => {
                    let p: f64 = value
                        .parse()
                        .map_err(|_| invalid(format!("rate {value:?} is not a number")))?;
                    rate = Some(p);
                }
                "kinds" => {
                    let kind = FaultKind::from_name(value).ok_or_else(|| {
                        let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                        invalid(format!(
                            "unknown fault kind {value:?} (known: {})",
                            names.join(", ")
                        ))
                    })?;
                    *kinds.get_or_insert(0) |= kind.bit();
                }
                "setup" => {
                    setup = match value {
                        "on" => true,
                        "off" => false,
                        _ => return Err(invalid(format!("setup {value:?} is not on or off"))),
                    };
                }
                _ => {
                    return Err(invalid(format!(
                        "unknown key {key:?} (seed, rate, kinds, setup)"
                    )))
                }
            }
        }
        let rate = rate.ok_or_else(|| invalid("rate=P is required".to_string()))?;
        let mut cfg = FaultConfig::new(seed, rate)?.with_setup(setup);
        if let Some(k) = kinds {
            cfg.kinds = k;
        }
        Ok(cfg)
    }
}

impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={},rate={}", self.seed, self.rate).and_then(|()| {
            let kinds: Vec<_> = FaultKind::ALL
                .iter()
                .filter(|k| self.is_enabled(**k))
                .map(|k| k.name())
                .collect();
            if self.setup {
                f.write_str(",setup=on")?;
            }
            if kinds.len() == FaultKind::ALL.len() {
                Ok(())
            } else {
                write!(f, ",kinds={}", kinds.join(","))
            }
        })
    }
}

/// Faults injected so far, per kind (a field of
/// [`LoopStatsSnapshot`](crate::LoopStatsSnapshot)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    counts: [u64; 8],
}

impl FaultCounts {
    /// Faults of `kind` injected.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.counts[kind as usize]
    }

    /// Faults of every kind injected.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Faults that may have ended a connection (resets and out-of-memory errors).
    pub fn connection_fatal(&self) -> u64 {
        self.get(FaultKind::Reset) + self.get(FaultKind::NoMem)
    }

    pub(crate) fn add(&mut self, other: &FaultCounts) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }
}

impl std::ops::Add for FaultCounts {
    type Output = FaultCounts;

    /// The counts of two servers (or runs) together.
    fn add(mut self, other: FaultCounts) -> FaultCounts {
        FaultCounts::add(&mut self, &other);
        self
    }
}

impl fmt::Display for FaultCounts {
    /// `short_read=12 short_write=3 ... emfile=0 (total 40)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in FaultKind::ALL {
            write!(f, "{}={} ", kind.name(), self.get(kind))?;
        }
        write!(f, "(total {})", self.total())
    }
}

/// The live counters one loop's threads bump as they inject faults.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    /// Faults were configured for the threads counting here.
    enabled: AtomicBool,
    counts: [AtomicU64; 8],
}

impl FaultCounters {
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Relaxed);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    pub(crate) fn note(&self, kind: FaultKind) {
        // Loop and worker threads may share a counter set: a real read-modify-write.
        self.counts[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FaultCounts {
        let mut s = FaultCounts::default();
        for (c, a) in s.counts.iter_mut().zip(&self.counts) {
            *c = a.load(Relaxed);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let c: FaultConfig = "seed=42,rate=0.1".parse().unwrap();
        assert_eq!((c.seed(), c.rate()), (42, 0.1));
        assert!(FaultKind::ALL.iter().all(|k| c.is_enabled(*k)));
        assert_eq!(c.to_string(), "seed=42,rate=0.1");
        let c: FaultConfig = " rate=0.5 , kinds=reset, nomem ,seed=3".parse().unwrap();
        assert_eq!(c.seed(), 3);
        assert_eq!(c.to_string(), "seed=3,rate=0.5,kinds=reset,nomem");
        let round: FaultConfig = c.to_string().parse().unwrap();
        assert_eq!(round, c);
        let c: FaultConfig = "rate=1,setup=on,kinds=nomem".parse().unwrap();
        assert!(c.in_setup());
        assert_eq!(c.to_string(), "seed=0,rate=1,setup=on,kinds=nomem");
        assert_eq!(c.to_string().parse::<FaultConfig>().unwrap(), c);
    }

    #[test]
    fn rejects_bad_input_with_the_reason() {
        for (bad, says) in [
            ("seed=1", "rate=P is required"),
            ("rate=1.5", "not a probability"),
            ("rate=-0.1", "not a probability"),
            ("rate=x", "\"x\" is not a number"),
            ("seed=-1,rate=0.1", "\"-1\" is not a u64"),
            ("rate=0.1,kinds=eintr,bogus", "unknown fault kind \"bogus\""),
            ("rate=0.1,color=red", "unknown key \"color\""),
            ("rate=0.1,oops", "expected KEY=VALUE"),
            ("rate=0.1,setup=yes", "\"yes\" is not on or off"),
        ] {
            let err = bad.parse::<FaultConfig>().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_add_and_display() {
        let counters = FaultCounters::default();
        counters.note(FaultKind::Reset);
        counters.note(FaultKind::Eintr);
        counters.note(FaultKind::Eintr);
        let mut s = counters.snapshot();
        assert_eq!((s.get(FaultKind::Eintr), s.total()), (2, 3));
        s.add(&counters.snapshot());
        assert_eq!((s.total(), s.connection_fatal()), (6, 2));
        assert!(s
            .to_string()
            .starts_with("short_read=0 short_write=0 eintr=4 "));
        assert!(s.to_string().ends_with("(total 6)"));
    }
}
