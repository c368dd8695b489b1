//! The metrics report the agent sends: the documented flat fields (so any hub speaking
//! protocol v1 understands it) plus `metrics.detail`, `seq` and `"schema": 2`.

use serde::Serialize;
use serverpulse_proto::time::format_timestamp;

use crate::collector::{Collection, Detail, Flat};

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

/// The report document for one collection, serialised straight from the collection
/// (no intermediate JSON tree).
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    pub schema: u32,
    pub seq: u64,
    pub timestamp: String,
    pub agent_version: &'static str,
    pub metrics: Metrics<'a>,
    pub services: &'a [ServiceState],
    /// Reports the spool had to drop (size cap) since it last had to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_dropped: Option<u64>,
}

/// The documented flat fields with `detail` beside them.
#[derive(Debug, Serialize)]
pub struct Metrics<'a> {
    #[serde(flatten)]
    pub flat: &'a Flat,
    pub detail: &'a Detail,
}

pub fn document<'a>(seq: u64, collection: &'a Collection, services: &'a [ServiceState]) -> Document<'a> {
    Document {
        schema: 2,
        seq,
        timestamp: format_timestamp(collection.at_ms),
        agent_version: env!("CARGO_PKG_VERSION"),
        metrics: Metrics { flat: &collection.flat, detail: &collection.detail },
        services,
        spool_dropped: None,
    }
}
