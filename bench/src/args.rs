//! Command-line flags in the two forms every binary of the suite accepts, `--key value` and
//! `--key=value`, read one at a time.

use std::str::FromStr;

/// The arguments of a command line, read as flags.
///
/// ```
/// let mut flags = eventide_bench::args::Flags::new(["--n=3", "--name", "x"].map(String::from));
/// assert_eq!(flags.next_key().as_deref(), Some("--n"));
/// assert_eq!(flags.parse::<u32>(), Ok(3));
/// assert_eq!(flags.next_key().as_deref(), Some("--name"));
/// assert_eq!(flags.value().as_deref(), Ok("x"));
/// assert_eq!(flags.next_key(), None);
/// ```
pub struct Flags<I> {
    it: I,
    /// The argument being read, as given.
    arg: String,
    /// Its flag name (`--key` of `--key=value`).
    key: String,
    /// Its inline value (`value` of `--key=value`), until taken.
    inline: Option<String>,
}

impl Flags<std::iter::Skip<std::env::Args>> {
    /// The process arguments, without the program name.
    pub fn from_env() -> Self {
        Flags::new(std::env::args().skip(1))
    }
}

impl<I: Iterator<Item = String>> Flags<I> {
    /// Flags read from `args`.
    pub fn new(args: impl IntoIterator<Item = String, IntoIter = I>) -> Self {
        Flags {
            it: args.into_iter(),
            arg: String::new(),
            key: String::new(),
            inline: None,
        }
    }

    /// Moves to the next argument and returns its flag name; `None` at the end.
    pub fn next_key(&mut self) -> Option<String> {
        self.arg = self.it.next()?;
        (self.key, self.inline) = match self.arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (self.arg.clone(), None),
        };
        Some(self.key.clone())
    }

    /// The current argument as given, for an "unknown argument" error.
    pub fn arg(&self) -> &str {
        &self.arg
    }

    /// The current flag's value: its inline one, else the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.it.next())
            .ok_or_else(|| format!("{} needs a value", self.key))
    }

    /// The current flag's value, parsed.
    pub fn parse<T: FromStr>(&mut self) -> Result<T, String> {
        let v = self.value()?;
        v.parse()
            .map_err(|_| format!("bad value for {}: {v:?}", self.key))
    }
}
