//! `POST /agents/{id}/alerts`: a list (A) or a single wrapped alert (B), one severity scale.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{Errors, Object, ValidationError, kind};
use crate::time::{UnixMillis, parse_timestamp};

/// Most alerts one request may carry.
pub const MAX_ALERTS: usize = 1_000;

/// The hub's severity scale. Dialect B's `low|medium|high` map onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    /// Either dialect's word; `None` for anything else.
    pub fn from_wire(word: &str) -> Option<Self> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "info" | "low" => Self::Info,
            "warning" | "medium" => Self::Warning,
            "error" | "high" => Self::Error,
            "critical" => Self::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
        }
    }
}

/// One alert raised on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAlert {
    pub kind: String,
    pub severity: Severity,
    pub message: String,
    pub details: Value,
    /// When the host saw it, if it said.
    pub host_time: Option<UnixMillis>,
}

pub fn decode_alerts(body: &Value) -> Result<Vec<AgentAlert>, ValidationError> {
    let mut errors = Errors::default();
    let Some(doc) = Object::root(body, &mut errors) else {
        return Err(errors.into_error());
    };
    let outer_time = doc
        .string("timestamp", 64, &mut errors)
        .and_then(|text| parse_timestamp(&text).map_err(|why| errors.add("timestamp", why)).ok());
    let mut alerts = Vec::new();
    match (doc.get("alerts"), doc.get("alert")) {
        (Some(Value::Array(items)), _) => {
            if items.is_empty() {
                errors.add("alerts", "must hold at least one alert");
            } else if items.len() > MAX_ALERTS {
                errors.add("alerts", format!("must hold at most {MAX_ALERTS} alerts"));
            } else {
                for (index, item) in items.iter().enumerate() {
                    if let Some(alert) = one_alert(item, &format!("alerts[{index}]"), outer_time, &mut errors) {
                        alerts.push(alert);
                    }
                }
            }
        }
        (Some(other), _) => errors.add("alerts", format!("must be an array, got {}", kind(other))),
        (None, Some(single)) => {
            if let Some(alert) = one_alert(single, "alert", outer_time, &mut errors) {
                alerts.push(alert);
            }
        }
        (None, None) => errors.add("alerts", "is required (or a single `alert` object)"),
    }
    errors.finish(alerts)
}

fn one_alert(value: &Value, path: &str, fallback_time: Option<UnixMillis>, errors: &mut Errors) -> Option<AgentAlert> {
    let entry = Object::at(path.to_owned(), value, errors)?;
    let kind = entry.required_string("type", 128, errors);
    let message = entry.required_string("message", 8_192, errors);
    let severity = entry.required_string("severity", 32, errors).and_then(|word| {
        let parsed = Severity::from_wire(&word);
        if parsed.is_none() {
            errors.add(entry.child("severity"), "must be one of info, warning, error, critical (or low, medium, high)");
        }
        parsed
    });
    let host_time = entry
        .string("timestamp", 64, errors)
        .and_then(|text| parse_timestamp(&text).map_err(|why| errors.add(entry.child("timestamp"), why)).ok());
    Some(AgentAlert {
        kind: kind?,
        severity: severity?,
        message: message?,
        details: entry.get("details").cloned().unwrap_or(Value::Null),
        host_time: host_time.or(fallback_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_shapes_and_severity_mapping() {
        let list = decode_alerts(&json!({"alerts":[
            {"type":"cpu","message":"hot","severity":"warning","timestamp":"2025-06-21T20:30:00Z"},
            {"type":"disk","message":"full","severity":"critical","timestamp":"2025-06-21T20:30:00Z"}]}))
        .unwrap();
        assert_eq!(list.len(), 2);
        let single = decode_alerts(&json!({"agent_id":"a","timestamp":"2025-06-21T20:30:00",
            "alert":{"type":"service_failure","severity":"high","message":"nginx failed","details":{"unit":"nginx"}}}))
        .unwrap();
        assert_eq!(single[0].severity, Severity::Error);
        assert_eq!(single[0].host_time, Some(1_750_537_800_000));
        assert_eq!(Severity::from_wire("low"), Some(Severity::Info));
        assert_eq!(Severity::from_wire("medium"), Some(Severity::Warning));
        assert_eq!(Severity::from_wire("urgent"), None);
    }
}
