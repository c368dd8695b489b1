//! Per-server agent settings: what an administrator sets on the hub for one server's
//! agent (intervals, thresholds, watched units, log rules). The hub validates them once
//! with [`decode_agent_settings`], stores them with a revision number, and hands them out
//! in the `config` of register and heartbeat answers; the agent lays them over its local
//! file and reports the revision it runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{Errors, Object, ValidationError, join, kind};

/// Settings for one server's agent. Absent members leave the agent's local file (or the
/// hub's defaults, for intervals) in force.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentSettings {
    /// Seconds between collections (5–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_interval: Option<u32>,
    /// Seconds between heartbeats (10–3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdSettings>,
    /// systemd units to watch, replacing the local list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Files to watch for patterns, replacing the local `monitoring.custom_logs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_logs: Option<Vec<LogRule>>,
}

/// The agent's local threshold alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThresholdSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<f64>,
    /// 1-minute load average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Seconds a threshold must stay crossed before the alert is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_seconds: Option<u32>,
    /// Percentage points below the threshold a figure must fall to recover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
}

/// One watched file and the patterns that raise an alert when a line matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogRule {
    pub path: String,
    pub patterns: Vec<String>,
}

pub const MAX_SERVICES: usize = 100;
pub const MAX_LOG_RULES: usize = 50;
pub const MAX_PATTERNS: usize = 20;

const TOP: &[&str] = &["collection_interval", "heartbeat_interval", "thresholds", "services", "custom_logs"];
const THRESHOLDS: &[&str] = &["cpu", "memory", "disk", "load", "hold_seconds", "hysteresis"];
const RULE: &[&str] = &["path", "patterns"];

/// Validates settings sent by an administrator; every problem is named by its path
/// (`thresholds.cpu`, `custom_logs[0].patterns[1]`). Unknown members are refused, so a
/// misspelt key is an error rather than a setting silently ignored.
pub fn decode_agent_settings(value: &Value) -> Result<AgentSettings, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(value, &mut errors) else { return Err(errors.into_error()) };
    unknown_members(&doc, TOP, &mut errors);
    let thresholds = doc.object("thresholds", &mut errors).map(|t| {
        unknown_members(&t, THRESHOLDS, &mut errors);
        let share = |key: &str, errors: &mut Errors| {
            let n = t.number(key, errors)?;
            in_range(n, 0.0 < n && n <= 100.0, &t.child(key), "must be above 0 and at most 100", errors)
        };
        ThresholdSettings {
            cpu: share("cpu", &mut errors),
            memory: share("memory", &mut errors),
            disk: share("disk", &mut errors),
            load: t
                .number("load", &mut errors)
                .and_then(|n| in_range(n, 0.0 < n && n <= 10_000.0, &t.child("load"), "must be above 0", &mut errors)),
            hold_seconds: whole(&t, "hold_seconds", 0, 86_400, &mut errors),
            hysteresis: t.number("hysteresis", &mut errors).and_then(|n| {
                in_range(n, (0.0..=50.0).contains(&n), &t.child("hysteresis"), "must be between 0 and 50", &mut errors)
            }),
        }
    });
    let services = strings(&doc, "services", MAX_SERVICES, &mut errors).inspect(|units| {
        for (i, unit) in units.iter().enumerate() {
            if unit.is_empty() || unit.len() > 256 || !unit.chars().all(unit_char) {
                errors.add(format!("services[{i}]"), "must be a unit name (letters, digits and :-_.@\\, at most 256)");
            }
        }
    });
    let custom_logs = doc.get("custom_logs").and_then(|v| log_rules(v, &mut errors));
    let collection_interval = whole(&doc, "collection_interval", 5, 3600, &mut errors);
    let heartbeat_interval = whole(&doc, "heartbeat_interval", 10, 3600, &mut errors);
    errors.finish(AgentSettings { collection_interval, heartbeat_interval, thresholds, services, custom_logs })
}

fn unit_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ":-_.@\\".contains(c)
}

fn unknown_members(object: &Object<'_>, known: &[&str], errors: &mut Errors) {
    for key in object.map().keys().filter(|k| !known.contains(&k.as_str())) {
        errors.add(object.child(key), format!("is not a setting (known: {})", known.join(", ")));
    }
}

fn in_range(n: f64, ok: bool, path: &str, why: &str, errors: &mut Errors) -> Option<f64> {
    if ok {
        Some(n)
    } else {
        errors.add(path, why);
        None
    }
}

fn whole(object: &Object<'_>, key: &str, min: u32, max: u32, errors: &mut Errors) -> Option<u32> {
    let n = object.number(key, errors)?;
    if n.fract() != 0.0 || n < f64::from(min) || n > f64::from(max) {
        errors.add(object.child(key), format!("must be a whole number from {min} to {max}"));
        return None;
    }
    Some(n as u32)
}

/// An optional array of strings at `key` (at most `max`).
fn strings(object: &Object<'_>, key: &str, max: usize, errors: &mut Errors) -> Option<Vec<String>> {
    string_list(object.get(key)?, &object.child(key), max, errors)
}

fn string_list(value: &Value, path: &str, max: usize, errors: &mut Errors) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        errors.add(path, format!("must be an array of strings, got {}", kind(value)));
        return None;
    };
    if items.len() > max {
        errors.add(path, format!("must hold at most {max} entries"));
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => out.push(s.trim().to_owned()),
            other => errors.add(format!("{path}[{i}]"), format!("must be a string, got {}", kind(other))),
        }
    }
    Some(out)
}

fn log_rules(value: &Value, errors: &mut Errors) -> Option<Vec<LogRule>> {
    let Value::Array(items) = value else {
        errors.add("custom_logs", format!("must be an array of {{path, patterns}}, got {}", kind(value)));
        return None;
    };
    if items.len() > MAX_LOG_RULES {
        errors.add("custom_logs", format!("must hold at most {MAX_LOG_RULES} entries"));
        return None;
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(rule) = Object::at(format!("custom_logs[{i}]"), item, errors) else { continue };
        unknown_members(&rule, RULE, errors);
        let path = rule.required_string("path", 4096, errors);
        if let Some(p) = &path
            && !p.starts_with('/')
        {
            errors.add(rule.child("path"), "must be an absolute path");
        }
        let patterns = match rule.get("patterns") {
            None => {
                errors.add(rule.child("patterns"), "is required");
                None
            }
            Some(v) => string_list(v, &rule.child("patterns"), MAX_PATTERNS, errors),
        };
        if let Some(patterns) = &patterns {
            if patterns.is_empty() {
                errors.add(rule.child("patterns"), "must hold at least one pattern");
            }
            for (j, pattern) in patterns.iter().enumerate() {
                if let Err(e) = regex::Regex::new(pattern) {
                    let first_line = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                    errors.add(
                        format!("{}[{j}]", join(rule.path(), "patterns")),
                        format!("is not a valid regex: {first_line}"),
                    );
                }
            }
        }
        if let (Some(path), Some(patterns)) = (path, patterns) {
            rules.push(LogRule { path, patterns });
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_settings_round_trip() {
        let doc = json!({"collection_interval": 15, "thresholds": {"cpu": 75.5, "hold_seconds": 60, "hysteresis": 5.0},
                         "services": ["nginx", "php8.2-fpm", "getty@tty1"],
                         "custom_logs": [{"path": "/var/log/app.log", "patterns": ["ERROR", "timeout after \\d+"]}]});
        let settings = decode_agent_settings(&doc).unwrap();
        assert_eq!(settings.collection_interval, Some(15));
        assert_eq!(settings.thresholds.as_ref().and_then(|t| t.cpu), Some(75.5));
        assert_eq!(serde_json::to_value(&settings).unwrap(), doc);
        assert_eq!(decode_agent_settings(&json!({})).unwrap(), AgentSettings::default());
    }

    #[test]
    fn every_problem_is_named() {
        let doc = json!({"collection_interval": 2, "heartbeat_interval": 30.5, "colection_interval": 5,
                         "thresholds": {"cpu": 0, "memory": 101, "load": -1, "hysteresis": 60, "dsk": 1},
                         "services": ["ok", "bad unit", 3],
                         "custom_logs": [{"path": "relative.log", "patterns": ["(unclosed"]}, {"patterns": []}, 7]});
        let error = decode_agent_settings(&doc).unwrap_err();
        let paths: Vec<&str> = error.details().keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "colection_interval",
                "collection_interval",
                "custom_logs[0].path",
                "custom_logs[0].patterns[0]",
                "custom_logs[1].path",
                "custom_logs[1].patterns",
                "custom_logs[2]",
                "heartbeat_interval",
                "services[1]",
                "services[2]",
                "thresholds.cpu",
                "thresholds.dsk",
                "thresholds.hysteresis",
                "thresholds.load",
                "thresholds.memory",
            ]
        );
        assert!(decode_agent_settings(&json!([1])).is_err());
    }
}
