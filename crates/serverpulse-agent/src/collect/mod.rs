//! Reading the host's state from `/proc`, `/sys` and `statvfs`.
//!
//! Every reader takes a [`Root`], the directory under which `proc/` and `sys/` are found:
//! `/` on a real host, a captured fixture tree in tests. Parsers are plain functions of
//! file text so they are tested on captured snapshots; anything that needs two readings
//! (CPU %, rates, per-process CPU) lives in [`Collector`](crate::collector::Collector).

pub mod cpu;
pub mod disk;
pub mod hwmon;
pub mod memory;
pub mod mounts;
pub mod net;
pub mod pressure;
pub mod processes;
pub mod system;

use std::path::{Path, PathBuf};

/// Where `proc/` and `sys/` live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The real host.
    pub fn host() -> Self {
        Self(PathBuf::from("/"))
    }

    /// `relative` (e.g. `proc/stat`) under this root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.0.join(relative)
    }

    pub fn read(&self, relative: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(relative))
    }

    pub fn base(&self) -> &Path {
        &self.0
    }
}

/// A file that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot parse {path}: {why}")]
    Parse { path: String, why: String },
}

impl CollectError {
    pub fn read(path: &str, source: std::io::Error) -> Self {
        Self::Read { path: path.to_owned(), source }
    }

    pub fn parse(path: &str, why: impl Into<String>) -> Self {
        Self::Parse { path: path.to_owned(), why: why.into() }
    }
}

/// Reads `relative` under `root`, mapping failures to [`CollectError`].
pub fn read(root: &Root, relative: &str) -> Result<String, CollectError> {
    let mut text = String::with_capacity(4096);
    read_into(&root.path(relative), &mut text).map_err(|e| CollectError::read(relative, e))?;
    Ok(text)
}

/// Appends a file's content to `buffer`. `/proc` files report a size of zero, so the
/// size probe `std::fs::read*` makes first is a wasted system call here; reading
/// through `Take` skips it.
pub fn read_into(path: &Path, buffer: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    file.take(u64::MAX).read_to_string(buffer)?;
    Ok(())
}

/// Parses whitespace-separated unsigned integers, failing on the first that is not one.
pub fn numbers(fields: &[&str], path: &str) -> Result<Vec<u64>, CollectError> {
    fields
        .iter()
        .map(|f| f.parse::<u64>().map_err(|_| CollectError::parse(path, format!("{f:?} is not a number"))))
        .collect()
}
