//! The metrics report the agent sends: the documented flat fields (so any hub speaking
//! protocol v1 understands it) plus `metrics.detail`, `seq` and `"schema": 2`.

use serde::Serialize;
use serde_json::{Value, json};
use serverpulse_proto::time::format_timestamp;

use crate::collector::Collection;

/// The state of one watched unit, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub name: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_pid: Option<u32>,
    /// Automatic restarts systemd made (`NRestarts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// When the unit entered its current state (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

impl ServiceState {
    /// A unit whose state could not be read.
    pub fn unknown(unit: &str) -> Self {
        Self::with_status(unit, "unknown")
    }

    pub fn with_status(unit: &str, status: &str) -> Self {
        Self {
            name: unit.to_owned(),
            status: status.to_owned(),
            sub_state: None,
            main_pid: None,
            restarts: None,
            since: None,
        }
    }
}

/// The report document for one collection.
pub fn build(seq: u64, collection: &Collection, services: &[ServiceState]) -> Value {
    let mut metrics = serde_json::to_value(&collection.flat).unwrap_or_else(|_| json!({}));
    metrics["detail"] = serde_json::to_value(&collection.detail).unwrap_or(Value::Null);
    json!({
        "schema": 2,
        "seq": seq,
        "timestamp": format_timestamp(collection.at_ms),
        "agent_version": env!("CARGO_PKG_VERSION"),
        "metrics": metrics,
        "services": services,
    })
}
