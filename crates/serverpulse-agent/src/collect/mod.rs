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

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most files kept open at once (a host with many sensors reads the rest the slow way).
const MAX_HELD: usize = 128;

/// Where `proc/` and `sys/` live, and what the agent keeps between collections to read
/// them cheaply: `/proc` and `/sys` files regenerate their content on every read from
/// offset 0, so they are opened once and re-read in place (an open and a close saved
/// per file per collection); directory listings (block devices, sensor chips) are kept
/// until [`forget_listings`](Root::forget_listings), which the collector calls on its
/// slow cadence.
pub struct Root {
    base: PathBuf,
    /// Open handles by relative path, and the buffer they are read into.
    held: Mutex<(HashMap<String, File>, Vec<u8>)>,
    /// Listings by directory, each with the signature of what it was read for.
    listings: Mutex<HashMap<String, (String, Vec<String>)>>,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Root").field(&self.base).finish()
    }
}

impl Clone for Root {
    fn clone(&self) -> Self {
        Self::new(self.base.clone())
    }
}

impl PartialEq for Root {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base
    }
}

impl Eq for Root {}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { base: path.into(), held: Mutex::default(), listings: Mutex::default() }
    }

    /// The real host.
    pub fn host() -> Self {
        Self::new("/")
    }

    /// `relative` (e.g. `proc/stat`) under this root.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }

    /// The whole current content of `relative`, through a handle kept open. A handle
    /// that fails (the device went away) is dropped and the file opened afresh once.
    pub fn read(&self, relative: &str) -> std::io::Result<String> {
        let mut guard = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (held, buffer) = &mut *guard;
        if let Some(file) = held.get(relative) {
            match read_whole(file, buffer) {
                Ok(text) => return Ok(text),
                Err(_) => {
                    held.remove(relative);
                }
            }
        }
        let file = File::open(self.path(relative))?;
        let text = read_whole(&file, buffer)?;
        if held.len() < MAX_HELD {
            held.insert(relative.to_owned(), file);
        }
        Ok(text)
    }

    /// The names in directory `relative`, sorted; from the kept listing if there is one.
    pub fn list(&self, relative: &str) -> std::io::Result<Vec<String>> {
        self.list_for(relative, "")
    }

    /// Like [`list`](Self::list), but the kept listing is read again as soon as
    /// `signature` (a summary of what the caller sees elsewhere, e.g. the device names
    /// in `/proc/diskstats`) differs from the one it was read for.
    pub fn list_for(&self, relative: &str, signature: &str) -> std::io::Result<Vec<String>> {
        let mut listings = self.listings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((kept_for, names)) = listings.get(relative)
            && kept_for == signature
        {
            return Ok(names.clone());
        }
        let mut names: Vec<String> = std::fs::read_dir(self.path(relative))?
            .filter_map(|entry| entry.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        listings.insert(relative.to_owned(), (signature.to_owned(), names.clone()));
        Ok(names)
    }

    /// Drops the kept listings (and the handles of files that may have gone with them).
    pub fn forget_listings(&self) {
        self.listings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .retain(|path, _| !path.starts_with("sys/"));
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

/// Reads a file from offset 0 to its end with positioned reads (the handle's own offset
/// is never used, so the same handle serves every collection), through `buffer`, which
/// stays allocated between calls.
fn read_whole(file: &File, buffer: &mut Vec<u8>) -> std::io::Result<String> {
    read_from_start(file, buffer, false).map(str::to_owned)
}

/// Positioned reads from offset 0 into `buffer` (grown as needed, kept between calls)
/// until the end of the file — or, with `one_line`, until a short read that ends a line.
fn read_from_start<'b>(
    file: &impl std::os::fd::AsFd,
    buffer: &'b mut Vec<u8>,
    one_line: bool,
) -> std::io::Result<&'b str> {
    if buffer.len() < 4096 {
        buffer.resize(4096, 0);
    }
    let mut len = 0;
    loop {
        if len == buffer.len() {
            buffer.resize(len * 2, 0);
        }
        let n = rustix::io::pread(file, &mut buffer[len..], len as u64)?;
        len += n;
        if n == 0 || (one_line && len < buffer.len() && buffer[..len].ends_with(b"\n")) {
            break;
        }
    }
    std::str::from_utf8(&buffer[..len]).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
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
    root.read(relative).map_err(|e| CollectError::read(relative, e))
}

/// Reads a one-line `/proc` file (`/proc/<pid>/stat`), open as `file`, into `buffer`,
/// reused across calls. These files are generated whole on open, so a read that
/// returns less than asked and ends the line is all there is: one `read` instead of a
/// second one that only finds the end.
pub fn read_line_fd<'b>(file: &impl std::os::fd::AsFd, buffer: &'b mut Vec<u8>) -> std::io::Result<&'b str> {
    read_from_start(file, buffer, true)
}

/// Parses whitespace-separated unsigned integers, failing on the first that is not one.
pub fn numbers(fields: &[&str], path: &str) -> Result<Vec<u64>, CollectError> {
    fields
        .iter()
        .map(|f| f.parse::<u64>().map_err(|_| CollectError::parse(path, format!("{f:?} is not a number"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept handle sees content rewritten in place (as `/proc` regenerates it);
    /// listings stay until forgotten.
    #[test]
    fn held_files_are_read_afresh_and_listings_are_kept_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/stat"), "one").unwrap();
        assert_eq!(root.read("proc/stat").unwrap(), "one");
        std::fs::write(dir.path().join("proc/stat"), "two, longer than before").unwrap();
        assert_eq!(root.read("proc/stat").unwrap(), "two, longer than before");
        let big = "x".repeat(10_000);
        std::fs::write(dir.path().join("proc/stat"), &big).unwrap();
        assert_eq!(root.read("proc/stat").unwrap(), big, "more than one read's worth");
        assert!(root.read("proc/missing").is_err());

        std::fs::create_dir_all(dir.path().join("sys/block/sda")).unwrap();
        assert_eq!(root.list("sys/block").unwrap(), ["sda"]);
        std::fs::create_dir_all(dir.path().join("sys/block/nvme0n1")).unwrap();
        assert_eq!(root.list("sys/block").unwrap(), ["sda"], "kept");
        root.forget_listings();
        assert_eq!(root.list("sys/block").unwrap(), ["nvme0n1", "sda"]);
        assert_eq!(root.list_for("sys/block", "nvme0n1 sda").unwrap(), ["nvme0n1", "sda"], "read for this signature");
        std::fs::create_dir_all(dir.path().join("sys/block/sdb")).unwrap();
        assert_eq!(root.list_for("sys/block", "nvme0n1 sda").unwrap().len(), 2, "kept for the same one");
        assert_eq!(root.list_for("sys/block", "nvme0n1 sda sdb").unwrap().len(), 3, "read again for a new one");
    }
}
