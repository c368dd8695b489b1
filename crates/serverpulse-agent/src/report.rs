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
