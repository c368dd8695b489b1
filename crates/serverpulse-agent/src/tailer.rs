//! Following a log file line by line across rotation (rename + new file, or copy +
//! truncate) and agent restarts, without missing or repeating a line.
//!
//! The position kept is `(inode, offset of the end of the last complete line)`. A half
//! written last line is not consumed until its newline arrives. After a restart the file
//! is resumed at that offset; if it was rotated meanwhile, the rotated file (a sibling
//! whose name starts with the log's, with the saved inode) is drained first.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest line kept whole; longer lines are cut (the rest is still consumed).
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub inode: u64,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    /// End of the last complete line consumed.
    offset: u64,
    partial: Vec<u8>,
    saved: Option<Position>,
}

impl Tailer {
    /// Follows `path`, resuming at `saved` if given; a file never seen before is followed
    /// from its end as it is now (its history is not news; what is written from now on is).
    pub fn new(path: impl Into<PathBuf>, saved: Option<Position>) -> Self {
        let path = path.into();
        let saved = saved.or_else(|| fs::metadata(&path).ok().map(|m| Position { inode: m.ino(), offset: m.len() }));
        Self { path, file: None, inode: 0, offset: 0, partial: Vec::new(), saved }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where to resume after a restart.
    pub fn position(&self) -> Option<Position> {
        if self.file.is_some() { Some(Position { inode: self.inode, offset: self.offset }) } else { self.saved }
    }

    /// Complete lines written since the last call.
    pub fn poll(&mut self) -> std::io::Result<Vec<String>> {
        let mut lines = Vec::new();
        if self.file.is_none() && !self.open(&mut lines)? {
            return Ok(lines);
        }
        self.read_available(&mut lines)?;
        match fs::metadata(&self.path) {
            Ok(meta) if meta.ino() != self.inode => {
                // Rotated: what the old file still held was read above; its unterminated
                // last line will never be finished, so it counts as a line.
                self.flush_partial(&mut lines);
                let file = File::open(&self.path)?;
                self.switch_to(file, meta.ino(), 0)?;
                self.read_available(&mut lines)?;
            }
            Ok(meta) if meta.len() < self.offset + self.partial.len() as u64 => {
                // Truncated in place (copytruncate): start over from the top.
                self.partial.clear();
                let file = File::open(&self.path)?;
                self.switch_to(file, meta.ino(), 0)?;
                self.read_available(&mut lines)?;
            }
            _ => {}
        }
        Ok(lines)
    }

    /// Opens the file for the first time; false if it does not exist (yet).
    fn open(&mut self, lines: &mut Vec<String>) -> std::io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let start = match self.saved.take() {
            Some(saved) if saved.inode == meta.ino() && saved.offset <= meta.len() => saved.offset,
            Some(saved) if saved.inode == meta.ino() => 0,
            Some(saved) => {
                if let Some(rotated) = rotated_sibling(&self.path, saved.inode) {
                    self.drain(&rotated, saved.offset, lines)?;
                }
                0
            }
            None => meta.len(),
        };
        self.switch_to(file, meta.ino(), start)?;
        Ok(true)
    }

    fn switch_to(&mut self, mut file: File, inode: u64, offset: u64) -> std::io::Result<()> {
        file.seek(SeekFrom::Start(offset))?;
        self.file = Some(file);
        self.inode = inode;
        self.offset = offset;
        Ok(())
    }

    /// Reads a rotated file to its end from `offset`.
    fn drain(&mut self, path: &Path, offset: u64, lines: &mut Vec<String>) -> std::io::Result<()> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut rest = split_lines(&bytes, lines);
        if !rest.is_empty() {
            rest.truncate(MAX_LINE);
            lines.push(String::from_utf8_lossy(&rest).into_owned());
        }
        Ok(())
    }

    fn read_available(&mut self, lines: &mut Vec<String>) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.partial.extend_from_slice(&chunk);
        let rest = split_lines(&self.partial, lines);
        let consumed = (self.partial.len() - rest.len()) as u64;
        self.offset += consumed;
        self.partial = rest;
        if self.partial.len() > MAX_LINE * 4 {
            // A runaway line with no newline: keep its head as a line and move on.
            self.offset += self.partial.len() as u64;
            self.flush_partial(lines);
        }
        Ok(())
    }

    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            let mut line = std::mem::take(&mut self.partial);
            line.truncate(MAX_LINE);
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

/// Pushes every complete line of `bytes`; returns the unterminated rest.
fn split_lines(bytes: &[u8], lines: &mut Vec<String>) -> Vec<u8> {
    let mut start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if *byte == b'\n' {
            let mut line = &bytes[start..i];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = &line[..line.len().min(MAX_LINE)];
            lines.push(String::from_utf8_lossy(line).into_owned());
            start = i + 1;
        }
    }
    bytes[start..].to_vec()
}

/// `syslog.1`, `syslog-20250621`… with the given inode (compressed rotations cannot be it).
fn rotated_sibling(path: &Path, inode: u64) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n != name && n.starts_with(name)))
        .find(|e| e.metadata().is_ok_and(|m| m.ino() == inode))
        .map(|e| e.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        let mut file = fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn follows_appends_and_waits_for_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "history that is not news\n");
        let mut tailer = Tailer::new(&log, None);
        assert!(tailer.poll().unwrap().is_empty());
        append(&log, "one\ntw");
        assert_eq!(tailer.poll().unwrap(), ["one"]);
        append(&log, "o\nthree\n");
        assert_eq!(tailer.poll().unwrap(), ["two", "three"]);
    }

    #[test]
    fn rotation_by_rename_and_by_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "");
        let mut tailer = Tailer::new(&log, None);
        tailer.poll().unwrap();
        append(&log, "a\nb\n");
        // logrotate `create`: the writer adds a line, the file is renamed, a new one starts.
        append(&log, "c\n");
        fs::rename(&log, dir.path().join("syslog.1")).unwrap();
        append(&log, "d\n");
        assert_eq!(tailer.poll().unwrap(), ["a", "b", "c", "d"]);
        // logrotate `copytruncate`.
        append(&log, "e\n");
        assert_eq!(tailer.poll().unwrap(), ["e"]);
        fs::write(&log, "").unwrap();
        append(&log, "f\n");
        assert_eq!(tailer.poll().unwrap(), ["f"]);
    }

    #[test]
    fn restart_mid_file_and_rotation_while_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kern.log");
        append(&log, "");
        let mut tailer = Tailer::new(&log, None);
        tailer.poll().unwrap();
        append(&log, "1\n2\n3 unfinish");
        assert_eq!(tailer.poll().unwrap(), ["1", "2"]);
        let saved = tailer.position();
        drop(tailer);

        // While the agent is stopped the line is finished, more are written, the file rotates.
        append(&log, "ed\n4\n");
        fs::rename(&log, dir.path().join("kern.log.1")).unwrap();
        append(&log, "5\n");
        let mut tailer = Tailer::new(&log, saved);
        assert_eq!(tailer.poll().unwrap(), ["3 unfinished", "4", "5"]);
        assert!(tailer.poll().unwrap().is_empty());

        // A plain restart resumes exactly where it stopped.
        append(&log, "6\n");
        let saved = tailer.position();
        let mut tailer = Tailer::new(&log, saved);
        assert_eq!(tailer.poll().unwrap(), ["6"]);
    }
}
