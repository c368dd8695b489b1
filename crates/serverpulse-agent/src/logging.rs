//! A small logger for the `log` facade: one line per record to stderr (the journal under
//! systemd, which adds its own timestamps) or to the configured file. No credentials are
//! ever passed to it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

struct Logger {
    level: log::LevelFilter,
    file: Option<Mutex<File>>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level && metadata.target().starts_with("serverpulse")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match &self.file {
            Some(_) => format!(
                "{} {:<5} {}\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                record.level(),
                record.args()
            ),
            None => format!("{:<5} {}\n", record.level(), record.args()),
        };
        match &self.file {
            Some(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger; a file that cannot be opened falls back to stderr with a warning.
pub fn init(level: &str, file: Option<&Path>) {
    let level = level.parse().unwrap_or(log::LevelFilter::Info);
    let mut warning = None;
    let file = file.and_then(|path| match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => Some(Mutex::new(file)),
        Err(e) => {
            warning = Some(format!("cannot open log file {}: {e}; logging to stderr", path.display()));
            None
        }
    });
    if log::set_boxed_logger(Box::new(Logger { level, file })).is_ok() {
        log::set_max_level(level);
    }
    if let Some(warning) = warning {
        log::warn!("{warning}");
    }
}
