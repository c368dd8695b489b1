//! `/etc/serverpulse-agent/config.yml`: the keys of the original agent, plus ours.
//!
//! Unknown keys are errors naming the key; values are checked while parsing (by the
//! validating types below), so every error carries the file, line and column. The
//! original agent's `GENERATED_AFTER_REGISTRATION` placeholders mean "not registered";
//! credentials obtained at registration go to the state file, never back into this one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serverpulse_proto::responses::AgentConfig;
use serverpulse_proto::settings::LogRule;

pub const DEFAULT_PATH: &str = "/etc/serverpulse-agent/config.yml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/serverpulse-agent";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    #[serde(default)]
    pub collection: CollectionSection,
    #[serde(default)]
    pub monitoring: MonitoringSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub commands: CommandsSection,
}

impl Config {
    /// This configuration with the hub's per-server settings laid over it: what the hub
    /// sets wins, what it leaves out stays as the file says. The hub checked the patterns
    /// with the same regex engine; one that still does not compile is skipped, logged.
    pub fn with_hub_settings(&self, hub: &AgentConfig) -> Config {
        let mut config = self.clone();
        config.collection.interval = Seconds(hub.collection_interval.clamp(1, 86_400));
        if let Some(t) = &hub.thresholds {
            let alerts = &mut config.alerts;
            let percent = |value: Option<f64>, current: Threshold| value.map_or(current, Threshold);
            alerts.cpu_threshold = percent(t.cpu, alerts.cpu_threshold);
            alerts.memory_threshold = percent(t.memory, alerts.memory_threshold);
            alerts.disk_threshold = percent(t.disk, alerts.disk_threshold);
            alerts.load_threshold = t.load.unwrap_or(alerts.load_threshold);
            alerts.hold_seconds = t.hold_seconds.unwrap_or(alerts.hold_seconds);
            alerts.hysteresis = t.hysteresis.unwrap_or(alerts.hysteresis);
        }
        if let Some(services) = &hub.services {
            config.monitoring.services = services.clone();
        }
        if let Some(rules) = &hub.custom_logs {
            config.monitoring.custom_logs = rules.iter().filter_map(custom_log).collect();
        }
        config
    }
}

fn custom_log(rule: &LogRule) -> Option<CustomLog> {
    let patterns: Result<Vec<Pattern>, regex::Error> =
        rule.patterns.iter().map(|p| regex::Regex::new(p).map(Pattern)).collect();
    match patterns {
        Ok(patterns) => Some(CustomLog { path: PathBuf::from(&rule.path), patterns }),
        Err(e) => {
            log::warn!("hub log rule for {} skipped: {e}", rule.path);
            None
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The hub, e.g. `https://monitor.example.com`.
    pub endpoint: Endpoint,
    /// Pre-provisioned credentials (optional; placeholders count as absent).
    #[serde(default)]
    pub auth_token: Option<Credential>,
    #[serde(default)]
    pub agent_id: Option<Credential>,
    /// A one-time enrollment token from `serverpulse server add`.
    #[serde(default)]
    pub enrollment_token: Option<Credential>,
    /// The address the hub knows this server by, when auto-detection would pick another.
    #[serde(default)]
    pub server_ip: Option<std::net::IpAddr>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectionSection {
    #[serde(default = "thirty")]
    pub interval: Seconds,
    /// Accepted for compatibility with the original agent; every collector always runs.
    #[serde(default)]
    pub metrics: Vec<String>,
}

fn thirty() -> Seconds {
    Seconds(30)
}

impl Default for CollectionSection {
    fn default() -> Self {
        Self { interval: thirty(), metrics: Vec::new() }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    /// systemd units to watch (a default list when empty).
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub log_paths: Vec<PathBuf>,
    #[serde(default)]
    pub custom_logs: Vec<CustomLog>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CustomLog {
    pub path: PathBuf,
    /// Regular expressions; a line matching any of them raises an alert.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    #[serde(default = "cpu_default")]
    pub cpu_threshold: Threshold,
    #[serde(default = "memory_default")]
    pub memory_threshold: Threshold,
    #[serde(default = "disk_default")]
    pub disk_threshold: Threshold,
    #[serde(default = "load_default")]
    pub load_threshold: f64,
    /// How long a figure must stay above its threshold before an alert is raised.
    #[serde(default = "hold_default")]
    pub hold_seconds: u32,
    /// Percentage points below the threshold a figure must fall to end an episode
    /// (load recovers below 90 % of its threshold).
    #[serde(default = "hysteresis_default")]
    pub hysteresis: f64,
}

fn cpu_default() -> Threshold {
    Threshold(80.0)
}
fn memory_default() -> Threshold {
    Threshold(85.0)
}
fn disk_default() -> Threshold {
    Threshold(90.0)
}
fn load_default() -> f64 {
    5.0
}
fn hold_default() -> u32 {
    60
}
fn hysteresis_default() -> f64 {
    5.0
}

impl Default for AlertsSection {
    fn default() -> Self {
        Self {
            cpu_threshold: cpu_default(),
            memory_threshold: memory_default(),
            disk_threshold: disk_default(),
            load_threshold: load_default(),
            hold_seconds: hold_default(),
            hysteresis: hysteresis_default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    #[serde(default = "info")]
    pub level: LogLevel,
    /// A log file; without it the agent logs to stderr (the journal under systemd).
    #[serde(default)]
    pub file: Option<PathBuf>,
}

fn info() -> LogLevel {
    LogLevel("info".to_owned())
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self { level: info(), file: None }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// PEM file of the CA that signed the hub's certificate (private CAs).
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// `false` disables certificate checks: only for testing against a self-signed hub.
    #[serde(default = "yes")]
    pub verify_ssl: bool,
}

fn yes() -> bool {
    true
}

impl Default for SecuritySection {
    fn default() -> Self {
        Self { ca_cert_file: None, verify_ssl: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Credentials, `seq` and the spool live here (writable by the agent only).
    #[serde(default = "state_dir")]
    pub state_dir: PathBuf,
    /// Most bytes the spool may hold before the oldest reports are dropped (and counted).
    #[serde(default = "spool_cap")]
    pub spool_max_bytes: u64,
}

fn state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn spool_cap() -> u64 {
    64 * 1024 * 1024
}

impl Default for StorageSection {
    fn default() -> Self {
        Self { state_dir: state_dir(), spool_max_bytes: spool_cap() }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandsSection {
    /// Command types this host runs; anything else is acknowledged as `rejected`.
    #[serde(default = "allowed_commands")]
    pub allowed: Vec<CommandName>,
}

fn allowed_commands() -> Vec<CommandName> {
    ["collect_now", "reload_config"].into_iter().map(|c| CommandName(c.to_owned())).collect()
}

impl Default for CommandsSection {
    fn default() -> Self {
        Self { allowed: allowed_commands() }
    }
}

/// Implements `Deserialize` through a checking constructor, so a bad value is a parse
/// error at its position in the file.
macro_rules! checked {
    ($name:ident($inner:ty), $check:expr) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <$inner>::deserialize(deserializer)?;
                let check: fn($inner) -> Result<$name, String> = $check;
                check(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The hub's base URL: `http://` or `https://`, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);
checked!(Endpoint(String), |url| {
    let trimmed = url.trim().trim_end_matches('/').to_owned();
    let rest = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(Endpoint(trimmed)),
        _ => Err(format!("endpoint {url:?} must be an http:// or https:// URL")),
    }
});

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Endpoints written for the original agent end in `/api` or `/api/v1`; the agent
    /// adds `/api/v1/…` itself.
    pub fn base(&self) -> &str {
        self.0.trim_end_matches("/api/v1").trim_end_matches("/api")
    }
}

/// A secret or id from the config; the original agent's placeholders are not values.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(Option<String>);
checked!(Credential(String), |text| {
    let text = text.trim().to_owned();
    let placeholder = text.is_empty() || text.to_ascii_uppercase().contains("GENERATED_AFTER_REGISTRATION");
    Ok(Credential((!placeholder).then_some(text)))
});

impl Credential {
    pub fn value(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Credential(…)" } else { "Credential(unset)" })
    }
}

/// An interval in whole seconds, 1 s to 1 day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u32);
checked!(Seconds(u32), |s| if (1..=86_400).contains(&s) {
    Ok(Seconds(s))
} else {
    Err(format!("interval {s} must be between 1 and 86400 seconds"))
});

/// A percentage threshold in 0–100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold(pub f64);
checked!(Threshold(f64), |p| if p.is_finite() && (0.0..=100.0).contains(&p) {
    Ok(Threshold(p))
} else {
    Err(format!("threshold {p} must be a percentage between 0 and 100"))
});

/// A log level (case-insensitive, as the original agent wrote `INFO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);
checked!(LogLevel(String), |level| {
    let lower = level.trim().to_ascii_lowercase();
    let lower = if lower == "warning" { "warn".to_owned() } else { lower };
    if ["error", "warn", "info", "debug", "trace"].contains(&lower.as_str()) {
        Ok(LogLevel(lower))
    } else {
        Err(format!("log level {level:?} must be one of ERROR, WARNING, INFO, DEBUG, TRACE"))
    }
});

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A regular expression from the configuration, compiled (and so checked) when read.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);
checked!(Pattern(String), |text| regex::Regex::new(&text).map(Pattern).map_err(|e| format!(
    "pattern {text:?} is not a valid regular expression: {}",
    e.to_string().lines().last().unwrap_or("")
)));

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A command type this agent knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandName(String);
checked!(CommandName(String), |name| {
    if serverpulse_proto::command::CommandType::parse(&name).is_some() {
        Ok(CommandName(name))
    } else {
        Err(format!("unknown command {name:?}; known: restart_service, collect_now, reload_config, run_check"))
    }
});

impl CommandName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A configuration that could not be used, with where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid { file: String, line: u64, column: u64, message: String },
}

/// Parses configuration text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    serde_saphyr::from_str::<Config>(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        ConfigError::Invalid { file: file.to_owned(), line, column, message: without_location(&e.to_string()) }
    })
}

/// The parser's first line, without the `error: line L column C:` it repeats.
fn without_location(text: &str) -> String {
    let first = text.lines().next().unwrap_or("invalid configuration");
    let rest = first.strip_prefix("error: line ").and_then(|r| r.split_once(": ")).map_or(first, |(_, m)| m);
    rest.to_owned()
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    parse(&file, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_agents_config_is_accepted() {
        let text = r#"
server:
  endpoint: "http://192.168.81.1/api"
  auth_token: "WILL_BE_GENERATED_AFTER_REGISTRATION"
  agent_id: "WILL_BE_GENERATED_AFTER_REGISTRATION"

collection:
  interval: 5  # seconds
  metrics:
    - system_stats
    - disk_usage

monitoring:
  services:
    - ssh
    - nginx

alerts:
  cpu_threshold: 80
  memory_threshold: 85
  disk_threshold: 90
  load_threshold: 5.0

logging:
  level: INFO
  file: /var/log/serverpulse-agent/agent.log
"#;
        let config = parse("config.yml", text).unwrap();
        assert_eq!(config.server.endpoint.base(), "http://192.168.81.1");
        assert_eq!(config.server.auth_token.as_ref().and_then(Credential::value), None);
        assert_eq!(config.collection.interval, Seconds(5));
        assert_eq!(config.monitoring.services, ["ssh", "nginx"]);
        assert_eq!(config.logging.level.as_str(), "info");
        assert!(config.security.verify_ssl);
        assert_eq!(config.storage.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    }
}
