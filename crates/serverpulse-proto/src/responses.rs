//! The shapes the hub answers agents with (shared so the agent decodes exactly what the hub encodes).

use serde::{Deserialize, Serialize};

use crate::command::WireCommand;
use crate::settings::{AgentSettings, LogRule, ThresholdSettings};

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    /// Whether this hub runs the background work (sweeps, notifications, retention) for
    /// its database; with several hubs on one PostgreSQL database, exactly one does.
    #[serde(default)]
    pub leader: bool,
}

/// What the hub hands an agent at registration and on every heartbeat: intervals (always),
/// and the server's agent settings where an administrator set them. Agents of protocol v1
/// read the first three members and ignore the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentConfig {
    /// Seconds between metric collections.
    pub collection_interval: u32,
    /// Seconds between heartbeats.
    pub heartbeat_interval: u32,
    pub metrics_enabled: bool,
    /// Revision of the server's agent settings (0: never set). Agents report the revision
    /// they run as `config_version` in heartbeats. Left out while 0, so a hub without
    /// settings answers exactly the documented v1 shape.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub config_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_logs: Option<Vec<LogRule>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AgentConfig {
    /// The configuration for an agent: the hub's default intervals, overridden by the
    /// server's settings at revision `version`.
    pub fn effective(collection_interval: u32, heartbeat_interval: u32, settings: AgentSettings, version: u64) -> Self {
        Self {
            collection_interval: settings.collection_interval.unwrap_or(collection_interval),
            heartbeat_interval: settings.heartbeat_interval.unwrap_or(heartbeat_interval),
            metrics_enabled: true,
            config_version: version,
            thresholds: settings.thresholds,
            services: settings.services,
            custom_logs: settings.custom_logs,
        }
    }
}

/// `POST /api/v1/agents/register`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    pub success: bool,
    pub agent_id: String,
    /// The secret, shown once; `null` when the agent registered with credentials it already had.
    pub auth_token: Option<String>,
    pub server_id: i64,
    pub config: AgentConfig,
}

/// `POST /agents/{id}/metrics`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsAccepted {
    pub success: bool,
    /// How many reports were stored now.
    pub stored: usize,
    /// `seq`s stored by this request.
    pub stored_seqs: Vec<u64>,
    /// `seq`s that were already stored before (replays); nothing was written for them.
    pub duplicate_seqs: Vec<u64>,
    /// Commands waiting for this agent: fetch them now (agents that poll anyway ignore this).
    #[serde(default)]
    pub commands_pending: u32,
}

/// `POST /agents/{id}/heartbeat`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAccepted {
    pub success: bool,
    pub config: AgentConfig,
    /// Commands waiting for this agent.
    #[serde(default)]
    pub commands_pending: u32,
}

/// `POST /agents/{id}/alerts`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertsAccepted {
    pub success: bool,
    pub stored: usize,
}

/// `GET /agents/{id}/commands`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingCommands {
    pub success: bool,
    pub commands: Vec<WireCommand>,
}

/// `POST /agents/{id}/commands/{commandId}/ack`, 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AckAccepted {
    pub success: bool,
    /// True when this command had been acknowledged before; the first ack stands.
    pub duplicate: bool,
}

/// `POST /agents/{id}/maintenance`, 201: the silence opened for this agent's server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaintenanceOpened {
    pub success: bool,
    pub silence_id: i64,
    /// When notifications resume (Unix ms).
    pub ends_at: i64,
}
