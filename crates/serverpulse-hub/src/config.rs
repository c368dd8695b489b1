//! Hub configuration: defaults, overridden by a YAML file, overridden by `SERVERPULSE_*`
//! environment variables and command-line flags (clap merges those two).
//!
//! Unknown keys are errors, and every error names the file, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything the running hub needs to know, resolved.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub listen: SocketAddr,
    pub database: DatabaseLocation,
    pub settings: Settings,
    pub log: String,
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseLocation {
    /// An SQLite file (the embedded default, `<data_dir>/serverpulse.db`).
    SqliteFile(PathBuf),
    /// An `sqlite:` URL given explicitly.
    SqliteUrl(String),
    /// A `postgres://` (or `postgresql://`) URL: a database several hubs may share.
    PostgresUrl(String),
}

/// Tunables that handlers and background tasks read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seconds between metric collections, told to agents.
    pub collection_interval_secs: u32,
    /// Seconds between heartbeats, told to agents.
    pub heartbeat_interval_secs: u32,
    /// Silence after which an active agent is marked disconnected.
    pub offline_after_ms: i64,
    /// How often the sweeper looks for silent agents.
    pub sweep_interval: Duration,
    /// Largest accepted request body, before and after gzip.
    pub body_limit: usize,
    /// How agents and people reach this hub, for install commands.
    pub public_url: String,
    pub enrollment_ttl_ms: i64,
    pub command_ttl_ms: i64,
    /// The agent executable served at `/download/serverpulse-agent`.
    pub agent_binary: PathBuf,
    /// Reports waiting for the writer before agents are told to come back later (503).
    pub ingest_queue: usize,
    /// Longest a report may wait for the writer before new ones are told the same.
    pub ingest_max_wait: Duration,
    /// Shortest time from the start of one ingest commit to the next (reports arriving
    /// meanwhile share the next one).
    pub ingest_commit_interval: Duration,
    /// How long history is kept, and the most room it may take.
    pub retention: serverpulse_store::RetentionPolicy,
    /// How long reports keep their full document (filesystems, interfaces, processes)
    /// before their hour is compacted to figures only; 0: never compacted.
    pub detail_ms: i64,
    /// Where stored reports are also pushed (VictoriaMetrics' import API), if anywhere.
    pub export_url: Option<String>,
}

/// The `export:` block.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExportValues {
    /// Base URL of a VictoriaMetrics server, e.g. `http://127.0.0.1:8428`.
    pub victoriametrics_url: Option<String>,
}

/// The `retention:` block: days per kind of history (0 keeps it for ever) and a size cap.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionValues {
    pub detail_hours: Option<u32>,
    pub raw_days: Option<u32>,
    pub five_minute_days: Option<u32>,
    pub hourly_days: Option<u32>,
    pub daily_days: Option<u32>,
    pub max_size_mb: Option<u64>,
}

pub const DEFAULT_DETAIL_HOURS: u32 = 6;
pub const DEFAULT_RAW_DAYS: u32 = 30;
pub const DEFAULT_FIVE_MINUTE_DAYS: u32 = 90;
pub const DEFAULT_HOURLY_DAYS: u32 = 400;

impl RetentionValues {
    fn policy(self) -> serverpulse_store::RetentionPolicy {
        let days = |value: Option<u32>, default: u32| i64::from(value.unwrap_or(default)) * 86_400_000;
        serverpulse_store::RetentionPolicy {
            raw_ms: days(self.raw_days, DEFAULT_RAW_DAYS),
            five_minutes_ms: days(self.five_minute_days, DEFAULT_FIVE_MINUTE_DAYS),
            hours_ms: days(self.hourly_days, DEFAULT_HOURLY_DAYS),
            days_ms: days(self.daily_days, 0),
            max_bytes: self.max_size_mb.unwrap_or(0).saturating_mul(1024 * 1024),
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_DATA_DIR: &str = "serverpulse-data";
pub const DEFAULT_HEARTBEAT_SECS: u32 = 60;
pub const DEFAULT_COLLECTION_SECS: u32 = 30;
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;
pub const DEFAULT_ENROLLMENT_TTL_SECS: u32 = 24 * 3600;
pub const DEFAULT_COMMAND_TTL_SECS: u32 = 3600;
pub const DEFAULT_SWEEP_SECS: u32 = 15;
pub const DEFAULT_INGEST_QUEUE: usize = 4096;
pub const DEFAULT_INGEST_MAX_WAIT_SECS: u32 = 5;
pub const DEFAULT_INGEST_COMMIT_INTERVAL_MS: u32 = 5;

/// The YAML file's keys. Durations are whole seconds.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigValues {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub heartbeat_interval: Option<u32>,
    pub collection_interval: Option<u32>,
    pub offline_after: Option<u32>,
    pub sweep_interval: Option<u32>,
    pub body_limit: Option<usize>,
    pub enrollment_ttl: Option<u32>,
    pub command_ttl: Option<u32>,
    pub agent_binary: Option<PathBuf>,
    pub ingest_queue: Option<usize>,
    pub ingest_max_wait: Option<u32>,
    pub ingest_commit_interval: Option<u32>,
    pub retention: Option<RetentionValues>,
    pub export: Option<ExportValues>,
    pub log: Option<String>,
}

impl ConfigValues {
    /// `self` where set, else `fallback`.
    pub fn or(self, fallback: Self) -> Self {
        Self {
            listen: self.listen.or(fallback.listen),
            data_dir: self.data_dir.or(fallback.data_dir),
            database_url: self.database_url.or(fallback.database_url),
            public_url: self.public_url.or(fallback.public_url),
            heartbeat_interval: self.heartbeat_interval.or(fallback.heartbeat_interval),
            collection_interval: self.collection_interval.or(fallback.collection_interval),
            offline_after: self.offline_after.or(fallback.offline_after),
            sweep_interval: self.sweep_interval.or(fallback.sweep_interval),
            body_limit: self.body_limit.or(fallback.body_limit),
            enrollment_ttl: self.enrollment_ttl.or(fallback.enrollment_ttl),
            command_ttl: self.command_ttl.or(fallback.command_ttl),
            agent_binary: self.agent_binary.or(fallback.agent_binary),
            ingest_queue: self.ingest_queue.or(fallback.ingest_queue),
            ingest_max_wait: self.ingest_max_wait.or(fallback.ingest_max_wait),
            ingest_commit_interval: self.ingest_commit_interval.or(fallback.ingest_commit_interval),
            retention: self.retention.or(fallback.retention),
            export: self.export.or(fallback.export),
            log: self.log.or(fallback.log),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {cause}")]
    Read { file: String, cause: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Syntax { file: String, line: u64, column: u64, message: String },
    #[error("{origin}: {key}: {message}")]
    Value { origin: String, key: &'static str, message: String },
}

/// Parses a configuration file's text; `name` is used in error messages.
pub fn parse_file(name: &str, text: &str) -> Result<ConfigValues, ConfigError> {
    if text.trim().is_empty() {
        return Ok(ConfigValues::default());
    }
    serde_saphyr::from_str::<ConfigValues>(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid configuration");
        // The parser repeats the position as "error: line L column C: …"; it is in the prefix already.
        let message =
            first.strip_prefix("error: line ").and_then(|r| r.split_once(": ")).map_or(first, |(_, m)| m).to_owned();
        ConfigError::Syntax { file: name.to_owned(), line, column, message }
    })
}

pub fn load_file(path: &Path) -> Result<ConfigValues, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { file: name.clone(), cause })?;
    parse_file(&name, &text)
}

/// Applies defaults and checks ranges. `origin` names where the values came from.
pub fn resolve(values: ConfigValues, origin: &str) -> Result<HubConfig, ConfigError> {
    let bad = |key: &'static str, message: String| ConfigError::Value { origin: origin.to_owned(), key, message };
    let listen_text = values.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| bad("listen", format!("{listen_text:?} is not an address such as 127.0.0.1:8000")))?;
    let database = match values.database_url {
        Some(url) if url.starts_with("sqlite:") => DatabaseLocation::SqliteUrl(url),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            DatabaseLocation::PostgresUrl(url)
        }
        Some(url) => {
            let scheme = url.split(':').next().unwrap_or_default().to_owned();
            return Err(bad(
                "database_url",
                format!("unsupported database {scheme:?}; use SQLite (sqlite:…) or PostgreSQL (postgres://…)"),
            ));
        }
        None => {
            let dir = values.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            DatabaseLocation::SqliteFile(dir.join("serverpulse.db"))
        }
    };
    let heartbeat = values.heartbeat_interval.unwrap_or(DEFAULT_HEARTBEAT_SECS);
    let collection = values.collection_interval.unwrap_or(DEFAULT_COLLECTION_SECS);
    for (key, value) in [("heartbeat_interval", heartbeat), ("collection_interval", collection)] {
        if !(1..=86_400).contains(&value) {
            return Err(bad(key, format!("{value} is outside 1..=86400 seconds")));
        }
    }
    let offline_after = values.offline_after.unwrap_or(heartbeat.saturating_mul(3));
    if offline_after < heartbeat {
        return Err(bad(
            "offline_after",
            format!("{offline_after} s is shorter than the heartbeat interval ({heartbeat} s)"),
        ));
    }
    let sweep = values.sweep_interval.unwrap_or(DEFAULT_SWEEP_SECS);
    if sweep == 0 {
        return Err(bad("sweep_interval", "must be at least 1 second".to_owned()));
    }
    let body_limit = values.body_limit.unwrap_or(DEFAULT_BODY_LIMIT);
    if body_limit < 1024 {
        return Err(bad("body_limit", format!("{body_limit} bytes is too small (at least 1024)")));
    }
    let enrollment_ttl = values.enrollment_ttl.unwrap_or(DEFAULT_ENROLLMENT_TTL_SECS);
    let command_ttl = values.command_ttl.unwrap_or(DEFAULT_COMMAND_TTL_SECS);
    for (key, value) in [("enrollment_ttl", enrollment_ttl), ("command_ttl", command_ttl)] {
        if value == 0 {
            return Err(bad(key, "must be at least 1 second".to_owned()));
        }
    }
    let public_url = values.public_url.unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_owned();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(bad("public_url", format!("{public_url:?} must start with http:// or https://")));
    }
    // It is pasted into the install script between single quotes.
    if public_url.contains(|c: char| c == '\'' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control()) {
        return Err(bad("public_url", format!("{public_url:?} must not contain quotes, backslashes or spaces")));
    }
    let agent_binary = values.agent_binary.unwrap_or_else(default_agent_binary);
    let ingest_queue = values.ingest_queue.unwrap_or(DEFAULT_INGEST_QUEUE);
    if !(1..=1_000_000).contains(&ingest_queue) {
        return Err(bad("ingest_queue", format!("{ingest_queue} must be between 1 and 1000000 requests")));
    }
    let ingest_max_wait = values.ingest_max_wait.unwrap_or(DEFAULT_INGEST_MAX_WAIT_SECS);
    if !(1..=300).contains(&ingest_max_wait) {
        return Err(bad("ingest_max_wait", format!("{ingest_max_wait} must be between 1 and 300 seconds")));
    }
    let ingest_commit_interval = values.ingest_commit_interval.unwrap_or(DEFAULT_INGEST_COMMIT_INTERVAL_MS);
    if ingest_commit_interval > 1000 {
        return Err(bad(
            "ingest_commit_interval",
            format!("{ingest_commit_interval} must be between 0 and 1000 milliseconds"),
        ));
    }
    let retention = values.retention.unwrap_or_default();
    // Summaries must outlive what they sum up, or long charts would have holes.
    let kept = |days: Option<u32>, default: u32| match days.unwrap_or(default) {
        0 => u32::MAX,
        d => d,
    };
    let chain = [
        ("retention.raw_days", kept(retention.raw_days, DEFAULT_RAW_DAYS)),
        ("retention.five_minute_days", kept(retention.five_minute_days, DEFAULT_FIVE_MINUTE_DAYS)),
        ("retention.hourly_days", kept(retention.hourly_days, DEFAULT_HOURLY_DAYS)),
        ("retention.daily_days", kept(retention.daily_days, 0)),
    ];
    for pair in chain.windows(2) {
        if pair[1].1 < pair[0].1 {
            return Err(bad(pair[1].0, format!("must keep at least as long as {} ({} days)", pair[0].0, pair[0].1)));
        }
    }
    let export_url = values.export.and_then(|e| e.victoriametrics_url).map(|u| u.trim_end_matches('/').to_owned());
    if let Some(url) = &export_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(bad("export.victoriametrics_url", format!("{url:?} must start with http:// or https://")));
    }
    Ok(HubConfig {
        listen,
        database,
        settings: Settings {
            collection_interval_secs: collection,
            heartbeat_interval_secs: heartbeat,
            offline_after_ms: i64::from(offline_after) * 1000,
            sweep_interval: Duration::from_secs(u64::from(sweep)),
            body_limit,
            public_url,
            enrollment_ttl_ms: i64::from(enrollment_ttl) * 1000,
            command_ttl_ms: i64::from(command_ttl) * 1000,
            agent_binary,
            ingest_queue,
            ingest_max_wait: Duration::from_secs(u64::from(ingest_max_wait)),
            ingest_commit_interval: Duration::from_millis(u64::from(ingest_commit_interval)),
            retention: retention.policy(),
            detail_ms: i64::from(retention.detail_hours.unwrap_or(DEFAULT_DETAIL_HOURS)) * 3_600_000,
            export_url,
        },
        log: values.log.unwrap_or_else(|| "info".to_owned()),
    })
}

/// `serverpulse-agent` beside the running `serverpulse` (as `cargo build` and the
/// release archive lay them out).
fn default_agent_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("serverpulse-agent")))
        .unwrap_or_else(|| PathBuf::from("serverpulse-agent"))
}

impl Settings {
    /// The defaults, as a hub started with no configuration would use.
    pub fn defaults() -> Self {
        match resolve(ConfigValues::default(), "defaults") {
            Ok(config) => config.settings,
            Err(e) => unreachable!("the built-in defaults are valid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_derived_offline_after() {
        let config = resolve(ConfigValues::default(), "defaults").unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.settings.offline_after_ms, 180_000);
        assert_eq!(config.database, DatabaseLocation::SqliteFile(PathBuf::from("serverpulse-data/serverpulse.db")));
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        let err = parse_file("hub.yml", "listen: 127.0.0.1:9000\nheartbeat_intervl: 5\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("hub.yml:2:"), "{text}");
        assert!(text.contains("heartbeat_intervl"), "{text}");
    }

    #[test]
    fn wrong_type_names_position() {
        let err = parse_file("hub.yml", "heartbeat_interval: often\n").unwrap_err();
        assert!(err.to_string().starts_with("hub.yml:1:"), "{err}");
    }

    #[test]
    fn flags_win_over_file() {
        let file = parse_file("hub.yml", "heartbeat_interval: 10\nlisten: 127.0.0.1:9000\n").unwrap();
        let flags = ConfigValues { heartbeat_interval: Some(20), ..ConfigValues::default() };
        let config = resolve(flags.or(file), "test").unwrap();
        assert_eq!(config.settings.heartbeat_interval_secs, 20);
        assert_eq!(config.listen.port(), 9000);
    }

    #[test]
    fn bad_values_name_the_key() {
        let values = ConfigValues { offline_after: Some(5), ..ConfigValues::default() };
        let err = resolve(values, "hub.yml").unwrap_err().to_string();
        assert!(err.starts_with("hub.yml: offline_after:"), "{err}");
        let values = ConfigValues { ingest_max_wait: Some(0), ..ConfigValues::default() };
        assert!(resolve(values, "hub.yml").unwrap_err().to_string().starts_with("hub.yml: ingest_max_wait:"));
        let values = ConfigValues { ingest_commit_interval: Some(1001), ..ConfigValues::default() };
        let err = resolve(values, "hub.yml").unwrap_err().to_string();
        assert!(err.starts_with("hub.yml: ingest_commit_interval: 1001 must be between 0 and 1000"), "{err}");
        let values = ConfigValues { database_url: Some("mysql://x".into()), ..ConfigValues::default() };
        assert!(resolve(values, "env").unwrap_err().to_string().contains("database_url"));
    }

    #[test]
    fn retention_has_defaults_and_summaries_outlive_raw_samples() {
        let policy = resolve(ConfigValues::default(), "defaults").unwrap().settings.retention;
        assert_eq!((policy.raw_ms, policy.days_ms, policy.max_bytes), (30 * 86_400_000, 0, 0));
        let text = "retention:\n  raw_days: 7\n  max_size_mb: 512\n";
        let values: ConfigValues = serde_saphyr::from_str(text).unwrap();
        let policy = resolve(values, "hub.yml").unwrap().settings.retention;
        assert_eq!((policy.raw_ms, policy.max_bytes), (7 * 86_400_000, 512 * 1024 * 1024));
        let text = "retention:\n  raw_days: 100\n  five_minute_days: 10\n";
        let err = resolve(serde_saphyr::from_str(text).unwrap(), "hub.yml").unwrap_err().to_string();
        assert!(err.contains("retention.five_minute_days: must keep at least as long as retention.raw_days"), "{err}");
        assert!(serde_saphyr::from_str::<ConfigValues>("retention:\n  raw_dayz: 1\n").is_err(), "unknown keys");
        assert_eq!(resolve(ConfigValues::default(), "defaults").unwrap().settings.detail_ms, 6 * 3_600_000);
        let values: ConfigValues = serde_saphyr::from_str("retention:\n  detail_hours: 0\n").unwrap();
        assert_eq!(resolve(values, "hub.yml").unwrap().settings.detail_ms, 0, "0 keeps every document");
    }
}
