//! The on-disk spool: reports the hub has not yet acknowledged, oldest first.
//!
//! `spool.dat` holds records `[len: u32 LE][crc32: u32 LE][payload]`, appended and
//! fsynced; `spool.head` (replaced atomically) says where the unsent part begins and how
//! many records were ever dropped. A torn record at the end (a crash mid-append) or a
//! record whose checksum fails ends the readable part: it and what follows are counted as
//! dropped and cut off. When the spool would exceed its cap, the oldest records are
//! dropped (and counted) so the newest data survives a long outage.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::write_atomically;

const HEADER: u64 = 8;
/// A single record larger than this is refused (a report is a few KiB).
pub const MAX_RECORD: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
struct Head {
    /// Byte offset of the oldest unsent record in `spool.dat`.
    offset: u64,
    /// Records dropped over the spool's life (cap, corruption).
    dropped: u64,
}

#[derive(Debug)]
pub struct Spool {
    data_path: PathBuf,
    head_path: PathBuf,
    head: Head,
    /// Unsent records and their sizes on disk, oldest first.
    index: Vec<(u64, u64)>,
    cap_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("a record of {0} bytes is larger than the spool accepts")]
    TooLarge(usize),
}

fn crc(payload: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(payload);
    crc.sum()
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, checking every record past the head.
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| SpoolError::Io { path: path.clone(), source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let data_path = dir.join("spool.dat");
        let head_path = dir.join("spool.head");
        let mut head: Head = match fs::read(&head_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Err(_) => Head::default(),
        };
        let mut file =
            OpenOptions::new().read(true).append(true).create(true).open(&data_path).map_err(io(&data_path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&data_path))?;
        if head.offset > bytes.len() as u64 {
            head.offset = bytes.len() as u64;
        }
        // Walk the records; stop at the first torn or corrupt one.
        let mut index = Vec::new();
        let mut at = head.offset as usize;
        while at < bytes.len() {
            let Some(header) = bytes.get(at..at + HEADER as usize) else { break };
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let Some(payload) = bytes.get(at + HEADER as usize..at + HEADER as usize + len) else { break };
            if len > MAX_RECORD || crc(payload) != sum {
                break;
            }
            index.push((at as u64, HEADER + len as u64));
            at += HEADER as usize + len;
        }
        let mut spool = Self { data_path, head_path, head, index, cap_bytes };
        if at < bytes.len() {
            // Count the unreadable tail as one lost record and cut it off.
            spool.head.dropped += 1;
            file.set_len(at as u64).map_err(io(&spool.data_path))?;
            file.sync_all().map_err(io(&spool.data_path))?;
            spool.save_head()?;
        }
        Ok(spool)
    }

    fn io(&self, source: std::io::Error) -> SpoolError {
        SpoolError::Io { path: self.data_path.display().to_string(), source }
    }

    fn save_head(&self) -> Result<(), SpoolError> {
        let bytes = serde_json::to_vec(&self.head).map_err(|e| self.io(std::io::Error::other(e)))?;
        write_atomically(&self.head_path, &bytes)
            .map_err(|source| SpoolError::Io { path: self.head_path.display().to_string(), source })
    }

    /// Unsent records.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of unsent records on disk.
    pub fn bytes(&self) -> u64 {
        self.index.iter().map(|(_, size)| size).sum()
    }

    /// Records dropped so far (cap reached, corruption).
    pub fn dropped(&self) -> u64 {
        self.head.dropped
    }

    /// Appends a record durably, dropping the oldest if the cap would be exceeded.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), SpoolError> {
        if payload.len() > MAX_RECORD || payload.len() as u64 + HEADER > self.cap_bytes {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let size = HEADER + payload.len() as u64;
        let mut dropped = 0;
        while !self.index.is_empty() && self.bytes() + size > self.cap_bytes {
            self.index.remove(0);
            dropped += 1;
        }
        if dropped > 0 {
            self.head.dropped += dropped;
            self.head.offset = self.index.first().map_or(self.end()?, |(at, _)| *at);
            self.save_head()?;
        }
        let mut file = OpenOptions::new().append(true).open(&self.data_path).map_err(|e| self.io(e))?;
        let at = file.seek(SeekFrom::End(0)).map_err(|e| self.io(e))?;
        let mut record = Vec::with_capacity(size as usize);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc(payload).to_le_bytes());
        record.extend_from_slice(payload);
        file.write_all(&record).map_err(|e| self.io(e))?;
        file.sync_data().map_err(|e| self.io(e))?;
        self.index.push((at, size));
        self.compact_if_worthwhile()?;
        Ok(())
    }

    fn end(&self) -> Result<u64, SpoolError> {
        fs::metadata(&self.data_path).map(|m| m.len()).map_err(|e| self.io(e))
    }

    /// The oldest `max` unsent records, oldest first.
    pub fn peek(&self, max: usize) -> Result<Vec<Vec<u8>>, SpoolError> {
        let mut file = File::open(&self.data_path).map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        for &(at, size) in self.index.iter().take(max) {
            let mut record = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(at)).map_err(|e| self.io(e))?;
            file.read_exact(&mut record).map_err(|e| self.io(e))?;
            out.push(record.split_off(HEADER as usize));
        }
        Ok(out)
    }

    /// Marks the oldest `count` records as sent.
    ///
    /// Not synced to disk on purpose: if a crash loses this step, the records are sent
    /// again and the hub, which knows their `seq`, stores them once. Only appends must
    /// be durable.
    pub fn consume(&mut self, count: usize) -> Result<(), SpoolError> {
        let count = count.min(self.index.len());
        if count == 0 {
            return Ok(());
        }
        self.index.drain(..count);
        if self.index.is_empty() {
            // Everything was delivered: start the file afresh.
            let file = OpenOptions::new().write(true).open(&self.data_path).map_err(|e| self.io(e))?;
            file.set_len(0).map_err(|e| self.io(e))?;
            self.head.offset = 0;
        } else {
            self.head.offset = self.index[0].0;
        }
        let bytes = serde_json::to_vec(&self.head).map_err(|e| self.io(std::io::Error::other(e)))?;
        let tmp = self.head_path.with_extension("tmp");
        fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, &self.head_path)).map_err(|e| self.io(e))
    }

    /// Rewrites the file without its consumed prefix once that prefix is large.
    fn compact_if_worthwhile(&mut self) -> Result<(), SpoolError> {
        let waste = self.head.offset;
        if waste < 1024 * 1024 || waste < self.bytes() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        File::open(&self.data_path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| self.io(e))?;
        let live = bytes.split_off(waste as usize);
        write_atomically(&self.data_path, &live).map_err(|e| self.io(e))?;
        for entry in &mut self.index {
            entry.0 -= waste;
        }
        self.head.offset = 0;
        self.save_head()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_consumes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            spool.push(format!("report {i}").as_bytes()).unwrap();
        }
        spool.consume(2).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 3);
        let batch = spool.peek(10).unwrap();
        assert_eq!(batch, [b"report 2".to_vec(), b"report 3".to_vec(), b"report 4".to_vec()]);
        spool.consume(3).unwrap();
        assert!(spool.is_empty());
        assert_eq!(fs::metadata(dir.path().join("spool.dat")).unwrap().len(), 0);
        assert_eq!(spool.dropped(), 0);
    }

    #[test]
    fn cap_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        // Each record is 8 + 10 bytes; room for three.
        let mut spool = Spool::open(dir.path(), 60).unwrap();
        for i in 0..5 {
            spool.push(format!("record-{i:03}").as_bytes()).unwrap();
        }
        assert_eq!(spool.len(), 3);
        assert_eq!(spool.dropped(), 2);
        assert_eq!(spool.peek(1).unwrap()[0], b"record-002");
        drop(spool);
        let spool = Spool::open(dir.path(), 60).unwrap();
        assert_eq!((spool.len(), spool.dropped()), (3, 2));
        assert!(matches!(Spool::open(dir.path(), 60).unwrap().push(&[0; 100]), Err(SpoolError::TooLarge(100))));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.push(b"first").unwrap();
        spool.push(b"second").unwrap();
        drop(spool);
        // A crash in the middle of appending a third record.
        let mut file = OpenOptions::new().append(true).open(dir.path().join("spool.dat")).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(file);
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.dropped(), 1);
        spool.push(b"third").unwrap();
        assert_eq!(spool.peek(5).unwrap().len(), 3, "appends continue after the cut");
        drop(spool);
        // Flip a byte inside the second record's payload.
        let path = dir.path().join("spool.dat");
        let mut bytes = fs::read(&path).unwrap();
        bytes[8 + 5 + 8 + 2] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.peek(5).unwrap(), [b"first".to_vec()]);
        assert_eq!(spool.dropped(), 2);
    }

    #[test]
    fn compaction_keeps_the_unsent_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 64 << 20).unwrap();
        let big = vec![b'x'; 300 * 1024];
        for _ in 0..5 {
            spool.push(&big).unwrap();
        }
        spool.consume(4).unwrap();
        spool.push(b"tail").unwrap();
        assert!(
            fs::metadata(dir.path().join("spool.dat")).unwrap().len() < 400 * 1024,
            "consumed prefix rewritten away"
        );
        let left = spool.peek(5).unwrap();
        assert_eq!(left.len(), 2);
        assert_eq!(left[1], b"tail");
        drop(spool);
        assert_eq!(Spool::open(dir.path(), 64 << 20).unwrap().len(), 2);
    }
}
