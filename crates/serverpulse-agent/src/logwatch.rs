//! Watching logs for crashes and errors: kernel panics and oopses, OOM kills, segfaults,
//! hardware (MCE/EDAC) and filesystem or I/O errors in `monitoring.log_paths` (or the
//! journal when there are no log files), and the operator's own patterns in
//! `monitoring.custom_logs`.
//!
//! A flood is one alert: the first match of a kind in a file is sent at once, further
//! matches in the next five minutes are counted and summarised in one more alert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::{Value, json};
use serverpulse_proto::time::format_timestamp;

use crate::config::MonitoringSection;
use crate::state::write_atomically;
use crate::tailer::{Position, Tailer};

/// Matches of one kind in one source within this window make one summary.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// Log files watched when the configuration names none (those that exist).
pub const DEFAULT_LOGS: &[&str] = &["/var/log/syslog", "/var/log/kern.log", "/var/log/messages"];

/// A kind of trouble recognised in a log line.
#[derive(Debug, Clone)]
pub struct Detector {
    pub kind: String,
    pub severity: &'static str,
    pattern: Regex,
}

impl Detector {
    fn new(kind: &str, severity: &'static str, pattern: &str) -> Option<Self> {
        Some(Self { kind: kind.to_owned(), severity, pattern: Regex::new(pattern).ok()? })
    }

    pub fn matches(&self, line: &str) -> bool {
        self.pattern.is_match(line)
    }
}

/// What the kernel and the C library print when things go badly wrong.
pub fn crash_detectors() -> Vec<Detector> {
    [
        ("kernel_panic", "critical", r"Kernel panic"),
        ("kernel_oops", "critical", r"Oops: |BUG: unable to handle|general protection fault|kernel BUG at"),
        ("oom_kill", "error", r"Out of memory: Kill(ed)? process|oom-kill:|invoked oom-killer"),
        ("segfault", "warning", r"segfault at [0-9a-f]+"),
        ("hardware_error", "critical", r"(?i)mce: \[Hardware Error\]|Machine check events logged|EDAC .*(CE|UE|error)"),
        (
            "filesystem_error",
            "error",
            r"EXT4-fs error|XFS \(.*\): .*(error|corruption)|BTRFS (error|critical)|Buffer I/O error|I/O error, dev|blk_update_request: I/O error|Remounting filesystem read-only",
        ),
    ]
    .into_iter()
    .filter_map(|(kind, severity, pattern)| Detector::new(kind, severity, pattern))
    .collect()
}

/// One file and what to look for in it.
#[derive(Debug)]
struct Watched {
    tailer: Tailer,
    detectors: Vec<Detector>,
}

/// Suppression state of one (kind, source) pair.
#[derive(Debug, Clone)]
struct Burst {
    window_end: i64,
    suppressed: u64,
    last_line: String,
    severity: &'static str,
}

/// Where lines come from when no log file exists: one long-running
/// `journalctl --follow --output=json` whose output is read without blocking, resumed
/// from the saved cursor after a restart. (One process for the agent's life, rather
/// than one per collection.)
#[derive(Debug, Default)]
struct Journal {
    child: Option<std::process::Child>,
    buffer: Vec<u8>,
    cursor: Option<String>,
    /// Not before this time (ms) if journalctl exited (no journal, no permission).
    retry_at: i64,
}

/// How long to wait before starting journalctl again after it exited.
const JOURNAL_RETRY_MS: i64 = 5 * 60 * 1000;

impl Journal {
    fn resuming(cursor: Option<String>) -> Self {
        Self { child: None, buffer: Vec::new(), cursor, retry_at: 0 }
    }

    fn start(&mut self) -> std::io::Result<()> {
        let mut command = crate::sd_notify::command("journalctl");
        command.args(["--follow", "--no-pager", "--output=json", "--priority=warning"]);
        match &self.cursor {
            Some(cursor) => command.arg(format!("--after-cursor={cursor}")),
            None => command.arg("--lines=0"),
        };
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        if let Some(out) = child.stdout.as_ref() {
            rustix::fs::fcntl_setfl(out, rustix::fs::OFlags::NONBLOCK).map_err(std::io::Error::from)?;
        }
        self.child = Some(child);
        Ok(())
    }

    fn poll(&mut self, now: i64) -> Vec<String> {
        if self.child.is_none() && now >= self.retry_at {
            if let Err(e) = self.start() {
                log::warn!("cannot follow the journal: {e}");
            }
            self.retry_at = now + JOURNAL_RETRY_MS;
        }
        let Some(child) = self.child.as_mut() else { return Vec::new() };
        let mut chunk = [0u8; 8 * 1024];
        let mut ended = false;
        if let Some(out) = child.stdout.as_mut() {
            loop {
                match std::io::Read::read(out, &mut chunk) {
                    Ok(0) => {
                        ended = true;
                        break;
                    }
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        if ended {
            let _ = child.kill();
            let _ = child.wait();
            self.child = None;
        }
        let mut lines = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let record: Vec<u8> = self.buffer.drain(..=end).collect();
            if let Some(line) = self.entry(&record) {
                lines.push(line);
            }
        }
        lines
    }

    /// `IDENTIFIER: MESSAGE` from one JSON journal entry; remembers its cursor.
    fn entry(&mut self, record: &[u8]) -> Option<String> {
        let entry: Value = serde_json::from_slice(record).ok()?;
        if let Some(cursor) = entry.get("__CURSOR").and_then(Value::as_str) {
            self.cursor = Some(cursor.to_owned());
        }
        let message = match entry.get("MESSAGE")? {
            Value::String(text) => text.clone(),
            // Non-UTF-8 messages arrive as byte arrays.
            Value::Array(bytes) => {
                String::from_utf8_lossy(&bytes.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect::<Vec<_>>())
                    .into_owned()
            }
            _ => return None,
        };
        let ident = entry.get("SYSLOG_IDENTIFIER").and_then(Value::as_str).unwrap_or("journal");
        Some(format!("{ident}: {message}"))
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What `logs.json` keeps.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Saved {
    #[serde(default)]
    files: BTreeMap<PathBuf, Position>,
    #[serde(default)]
    journal_cursor: Option<String>,
}

#[derive(Debug)]
pub struct LogWatch {
    files: Vec<Watched>,
    journal: Option<Journal>,
    journal_detectors: Vec<Detector>,
    /// What `logs.json` holds now, to write it only when something moved.
    last_saved: Option<Saved>,
    bursts: BTreeMap<(String, String), Burst>,
    positions_path: PathBuf,
}

impl LogWatch {
    /// Watches what `monitoring` names; positions persist in `state_dir/logs.json`.
    pub fn new(monitoring: &MonitoringSection, state_dir: &Path) -> Self {
        let positions_path = state_dir.join("logs.json");
        let saved: Saved =
            std::fs::read(&positions_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let crash_logs: Vec<PathBuf> = if monitoring.log_paths.is_empty() {
            DEFAULT_LOGS.iter().map(PathBuf::from).filter(|p| p.exists()).collect()
        } else {
            monitoring.log_paths.clone()
        };
        let journal =
            (crash_logs.is_empty() && which("journalctl")).then(|| Journal::resuming(saved.journal_cursor.clone()));
        let mut files: Vec<Watched> = crash_logs
            .into_iter()
            .map(|path| Watched {
                tailer: Tailer::new(&path, saved.files.get(&path).copied()),
                detectors: crash_detectors(),
            })
            .collect();
        for custom in &monitoring.custom_logs {
            let detectors = custom
                .patterns
                .iter()
                .map(|p| Detector { kind: "log_pattern".to_owned(), severity: "warning", pattern: p.0.clone() })
                .collect();
            files
                .push(Watched { tailer: Tailer::new(&custom.path, saved.files.get(&custom.path).copied()), detectors });
        }
        Self {
            files,
            journal,
            journal_detectors: crash_detectors(),
            last_saved: Some(saved),
            bursts: BTreeMap::new(),
            positions_path,
        }
    }

    /// Reads what was appended and returns the alerts to send (wire format A). Call
    /// [`commit`](Self::commit) once they are stored safely, so a crash in between
    /// re-reads the lines instead of losing them.
    pub fn poll(&mut self, now: i64) -> Vec<Value> {
        let mut alerts = Vec::new();
        let mut found: Vec<(String, &'static str, String, String)> = Vec::new();
        for watched in &mut self.files {
            let source = watched.tailer.path().display().to_string();
            let lines = match watched.tailer.poll() {
                Ok(lines) => lines,
                Err(e) => {
                    log::warn!("cannot read {source}: {e}");
                    continue;
                }
            };
            for line in lines {
                if let Some(d) = watched.detectors.iter().find(|d| d.matches(&line)) {
                    found.push((d.kind.clone(), d.severity, source.clone(), line));
                }
            }
        }
        if let Some(journal) = &mut self.journal {
            for line in journal.poll(now) {
                if let Some(d) = self.journal_detectors.iter().find(|d| d.matches(&line)) {
                    found.push((d.kind.clone(), d.severity, "journal".to_owned(), line));
                }
            }
        }
        for (kind, severity, source, line) in found {
            if let Some(alert) = self.note(kind, severity, source, line, now) {
                alerts.push(alert);
            }
        }
        alerts.extend(self.summaries(now));
        alerts
    }

    fn note(&mut self, kind: String, severity: &'static str, source: String, line: String, now: i64) -> Option<Value> {
        let key = (kind.clone(), source.clone());
        match self.bursts.get_mut(&key) {
            Some(burst) if now < burst.window_end => {
                burst.suppressed += 1;
                burst.last_line = line;
                None
            }
            _ => {
                self.bursts.insert(
                    key,
                    Burst { window_end: now + WINDOW_MS, suppressed: 0, last_line: line.clone(), severity },
                );
                Some(json!({
                    "type": kind,
                    "severity": severity,
                    "message": format!("{kind} in {source}: {}", line.chars().take(300).collect::<String>()),
                    "details": {"source": source, "line": line, "count": 1},
                    "timestamp": format_timestamp(now),
                }))
            }
        }
    }

    /// One alert per burst whose window closed with suppressed matches.
    fn summaries(&mut self, now: i64) -> Vec<Value> {
        let closed: Vec<(String, String)> =
            self.bursts.iter().filter(|(_, b)| now >= b.window_end).map(|(k, _)| k.clone()).collect();
        let mut alerts = Vec::new();
        for key in closed {
            let Some(burst) = self.bursts.remove(&key) else { continue };
            if burst.suppressed == 0 {
                continue;
            }
            let (kind, source) = key;
            alerts.push(json!({
                "type": kind,
                "severity": burst.severity,
                "message": format!("{} more {kind} in {source} within 5 minutes", burst.suppressed),
                "details": {"source": source, "line": burst.last_line, "count": burst.suppressed},
                "timestamp": format_timestamp(now),
            }));
        }
        alerts
    }

    /// Saves how far every file was read (if that changed).
    pub fn commit(&mut self) {
        let saved = Saved {
            files: self
                .files
                .iter()
                .filter_map(|w| w.tailer.position().map(|p| (w.tailer.path().to_owned(), p)))
                .collect(),
            journal_cursor: self.journal.as_ref().and_then(|j| j.cursor.clone()),
        };
        if self.last_saved.as_ref() == Some(&saved) {
            return;
        }
        match serde_json::to_vec(&saved).map(|bytes| write_atomically(&self.positions_path, &bytes)) {
            Ok(Ok(())) => self.last_saved = Some(saved),
            Ok(Err(e)) => log::warn!("cannot save log positions: {e}"),
            Err(e) => log::warn!("cannot save log positions: {e}"),
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn recognises_crashes() {
        let detectors = crash_detectors();
        let kind = |line: &str| detectors.iter().find(|d| d.matches(line)).map(|d| d.kind.clone());
        assert_eq!(kind("kernel: Kernel panic - not syncing: Fatal exception").as_deref(), Some("kernel_panic"));
        assert_eq!(
            kind("kernel: Out of memory: Killed process 4242 (postgres) total-vm:1000kB").as_deref(),
            Some("oom_kill")
        );
        assert_eq!(kind("kernel: app[123]: segfault at 0 ip 00007f sp 00007ff error 4").as_deref(), Some("segfault"));
        assert_eq!(
            kind("kernel: mce: [Hardware Error]: Machine check events logged").as_deref(),
            Some("hardware_error")
        );
        assert_eq!(kind("kernel: EDAC MC0: 1 CE memory read error").as_deref(), Some("hardware_error"));
        assert_eq!(kind("kernel: EXT4-fs error (device sda1): ext4_find_entry").as_deref(), Some("filesystem_error"));
        assert_eq!(
            kind("kernel: blk_update_request: I/O error, dev sda, sector 1").as_deref(),
            Some("filesystem_error")
        );
        assert_eq!(kind("sshd[1]: Accepted publickey for root"), None);
    }

    #[test]
    fn journal_entries_become_lines_and_move_the_cursor() {
        let mut journal = Journal::default();
        let line = journal.entry(
            br#"{"__CURSOR":"s=abc;i=1","SYSLOG_IDENTIFIER":"kernel","MESSAGE":"Out of memory: Killed process 7 (x)"}"#,
        );
        assert_eq!(line.as_deref(), Some("kernel: Out of memory: Killed process 7 (x)"));
        assert_eq!(journal.cursor.as_deref(), Some("s=abc;i=1"));
        let bytes = journal.entry(br#"{"__CURSOR":"s=abc;i=2","MESSAGE":[104,105]}"#);
        assert_eq!(bytes.as_deref(), Some("journal: hi"));
        assert!(journal.entry(b"not json").is_none());
    }

    #[test]
    fn a_flood_is_one_alert_and_one_summary() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kern.log");
        std::fs::write(&log, "").unwrap();
        let monitoring = MonitoringSection { log_paths: vec![log.clone()], ..MonitoringSection::default() };
        let mut watch = LogWatch::new(&monitoring, dir.path());
        assert!(watch.poll(0).is_empty());
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for i in 0..500 {
            writeln!(file, "kernel: app[{i}]: segfault at 0 ip 0 sp 0 error 4").unwrap();
        }
        let first = watch.poll(1_000);
        watch.commit();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["type"], "segfault");
        writeln!(file, "kernel: app[9]: segfault at 0 ip 0 sp 0 error 4").unwrap();
        assert!(watch.poll(60_000).is_empty());
        let summary = watch.poll(1_000 + WINDOW_MS);
        watch.commit();
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0]["details"]["count"], json!(500));
        // Positions survive a restart: nothing is reported twice, nothing written while
        // the agent was down is missed.
        drop(watch);
        writeln!(file, "kernel: EXT4-fs error (device sda1): while the agent was down").unwrap();
        let mut again = LogWatch::new(&monitoring, dir.path());
        let after_restart = again.poll(2 * WINDOW_MS);
        assert_eq!(after_restart.len(), 1, "{after_restart:?}");
        assert_eq!(after_restart[0]["type"], "filesystem_error");
    }
}
