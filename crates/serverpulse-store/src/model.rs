//! The records the store takes and returns: plain data, already validated.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;
use serverpulse_alerting::notify::{Channel, Silence};
use serverpulse_alerting::{EpisodeState, Rule};
use serverpulse_domain::{AgentStatus, Role, TokenDigest};
use serverpulse_proto::alert::Severity;
use serverpulse_proto::command::{AckStatus, CommandType};
use serverpulse_proto::service::ServiceStatus;

use crate::AgentCredentials;

pub type ServerId = i64;
pub type AlertId = i64;
pub type UserId = i64;

/// A JSON document as the database keeps it, read only where a field of it is needed
/// ([`StoredJson::value`]) and written out as it is: a server's agent configuration
/// comes with every server row (ingest reads the row for each report), and most readers
/// never look inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJson(String);

impl StoredJson {
    /// The document `text`, as stored (the hub writes only JSON there).
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The document (`null` if what is stored is not JSON).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl From<&Value> for StoredJson {
    fn from(value: &Value) -> Self {
        Self(value.to_string())
    }
}

impl Serialize for StoredJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(|e| serde::ser::Error::custom(format!("stored JSON: {e}")))?;
        raw.serialize(serializer)
    }
}

/// A monitored server and the state of its agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: IpAddr,
    pub created_at: i64,
    /// Hostname the agent reported.
    pub hostname: Option<String>,
    pub agent_enabled: bool,
    pub agent_id: Option<String>,
    pub agent_status: AgentStatus,
    pub agent_version: Option<String>,
    pub agent_last_heartbeat: Option<i64>,
    /// Last time anything (report, heartbeat, alert, command poll) came from the agent.
    pub agent_last_contact: Option<i64>,
    /// System info the agent registered with, its configuration and its last heartbeat.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub agent_config: StoredJson,
    /// The flat metrics of the newest report.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub last_metrics: Option<crate::history::NewestFigures>,
    pub last_metrics_at: Option<i64>,
    /// Labels for grouping: rules, silences and routes can name a tag.
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewServer {
    pub name: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerPatch {
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
    pub agent_enabled: Option<bool>,
    pub tags: Option<Vec<String>>,
}

/// A one-time enrollment token (its digest) and when it stops working.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentGrant {
    pub token: TokenDigest,
    pub expires_at: i64,
}

/// How an agent proved which server it runs on.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationWay {
    /// A single-use enrollment token; `fresh` becomes the agent's credentials.
    Enrollment { token: TokenDigest, fresh: AgentCredentials },
    /// The bearer token of an agent that already exists.
    ExistingAgent { token: TokenDigest },
    /// The address the server was added with; only while it has no active agent.
    ServerIp { ip: IpAddr, fresh: AgentCredentials },
}

/// What an agent says about itself when registering.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentProfile {
    pub hostname: String,
    pub agent_version: Option<String>,
    pub system_info: Value,
}

impl AgentProfile {
    /// The profile kept for an agent registering with `request` and handed `config`: the
    /// server row's `agent_config` keeps the system the agent runs on, that
    /// configuration, and what the agent claimed (its own id, its clock at registration).
    pub fn registered(
        request: &serverpulse_proto::register::RegisterRequest,
        config: &serverpulse_proto::responses::AgentConfig,
    ) -> Self {
        let mut info = serde_json::Map::new();
        info.insert("system_info".to_owned(), Value::Object(request.system_info.clone()));
        info.insert("config".to_owned(), serde_json::to_value(config).unwrap_or(Value::Null));
        if let Some(claimed) = &request.claimed_agent_id {
            info.insert("agent_reported_id".to_owned(), Value::String(claimed.clone()));
        }
        if let Some(at) = request.registration_time {
            info.insert("registration_time".to_owned(), Value::String(serverpulse_proto::time::format_timestamp(at)));
        }
        Self {
            hostname: request.hostname.clone(),
            agent_version: request.agent_version.clone(),
            system_info: Value::Object(info),
        }
    }
}

/// A server added with its agent's credentials already issued (see
/// `provision_agents_in_bulk`), and, where the agent has registered already, its profile.
#[derive(Debug, Clone)]
pub struct ProvisionedAgent {
    pub server: NewServer,
    pub credentials: AgentCredentials,
    pub profile: Option<AgentProfile>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    Registered {
        server_id: ServerId,
        agent_id: String,
        /// False for pre-provisioned credentials (no new token was issued).
        issued_token: bool,
    },
    /// No server matches (unknown IP, unknown bearer token).
    NoMatch,
    /// The enrollment token is unknown, used or expired.
    EnrollmentRefused,
    /// The server's agent is active; taking it over by IP is not allowed.
    AgentActive,
}

/// Who an agent id belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    pub server_id: ServerId,
    pub agent_id: String,
    pub token: TokenDigest,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestOutcome {
    pub stored_seqs: Vec<u64>,
    pub duplicate_seqs: Vec<u64>,
    /// Reports stored, with or without `seq`.
    pub stored: usize,
    /// The uptime of the server's newest report before these (reboot detection).
    #[serde(skip)]
    pub previous_uptime: Option<u64>,
    /// The server as these reports left it (newest figures, status, contact).
    #[serde(skip)]
    pub server: Option<Server>,
    /// Unexpired commands waiting for the server's agent (not yet delivered), as of the
    /// reports' arrival.
    #[serde(skip)]
    pub commands_pending: u32,
    /// Alerts the server's rules opened, escalated or resolved on these reports.
    #[serde(skip)]
    pub alerts_touched: Vec<AlertId>,
    /// Notifications were queued on these reports.
    #[serde(skip)]
    pub notifies: bool,
}

/// Who hears of one alert: the channels to notify, and whether a silence covers it (then
/// the list is empty and the alert is recorded as silenced).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recipients {
    pub channels: Vec<i64>,
    pub silenced: bool,
}

/// One agent's reports, as the ingest queue hands them to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestJob {
    pub server: ServerId,
    pub reports: Vec<serverpulse_proto::report::Report>,
    pub received_at: i64,
}

/// A value with the revision it was stored under.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

/// A heartbeat's content.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentContact {
    pub status: Option<String>,
    pub config_version: Option<u64>,
}

/// An agent's contact other than a report — a heartbeat or a command poll — as the
/// ingest writer hands a batch of them to the store ([`crate::Store::record_contacts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub server: ServerId,
    /// When the hub heard from the agent.
    pub at: i64,
    /// What a heartbeat said; `None` for a command poll.
    pub heartbeat: Option<AgentContact>,
}

/// The outcomes of a writer's batch ([`crate::Store::commit_batch`]): its report jobs'
/// and its contacts', each in their order.
pub type BatchOutcomes = (Vec<crate::StoreResult<IngestOutcome>>, Vec<crate::StoreResult<ContactOutcome>>);

/// What an agent is answered after a contact, as its commit left its server.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactOutcome {
    /// Unexpired commands waiting for the agent (not yet delivered).
    pub commands_pending: u32,
    /// The server's own agent settings.
    pub settings: Versioned<serverpulse_proto::settings::AgentSettings>,
}

/// One stored report, as the history API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sample {
    pub seq: Option<u64>,
    /// Agent time.
    pub at: i64,
    pub received_at: i64,
    pub cpu_usage: Option<f64>,
    pub memory_usage: Option<f64>,
    pub disk_usage: Option<f64>,
    pub load_average: Option<f64>,
    pub uptime: Option<u64>,
    pub response_time: Option<f64>,
    pub network_rx: Option<u64>,
    pub network_tx: Option<u64>,
    pub disk_io_read: Option<u64>,
    pub disk_io_write: Option<u64>,
    /// Bytes per second since the previous report, where one can be known.
    pub network_rx_rate: Option<f64>,
    pub network_tx_rate: Option<f64>,
    pub disk_io_read_rate: Option<f64>,
    pub disk_io_write_rate: Option<f64>,
    /// The report as received; `null` once its hour is past the detail window and
    /// compacted (its figures above are kept).
    #[cfg_attr(feature = "openapi", schema(value_type = Object, nullable = true))]
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceRecord {
    pub name: String,
    pub status: ServiceStatus,
    pub sub_state: Option<String>,
    /// When the unit entered this status (as first seen by the hub).
    pub since: i64,
    /// Agent time of the report that last changed this record (status, sub-state or
    /// details); reports that repeat it write nothing.
    pub updated_at: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceChange {
    pub name: String,
    pub from: Option<ServiceStatus>,
    pub to: ServiceStatus,
    pub at: i64,
}

/// One alert episode: raised by a rule on the hub (`source: "rule"`) or by an agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertRecord {
    pub id: AlertId,
    pub server_id: ServerId,
    /// `rule` or `agent`.
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: Severity,
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    pub host_time: Option<i64>,
    pub created_at: i64,
    pub status: AlertStatus,
    pub rule_id: Option<i64>,
    /// What the rule watched on the server: `""` (the host), a mount point, a unit.
    pub subject: String,
    /// The value that fired or escalated the alert, and the threshold it crossed.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    /// When the episode began (for rules: when the condition started to hold).
    pub started_at: i64,
    pub updated_at: i64,
    /// Agent alerts of the same type within the de-duplication window join one episode.
    pub occurrences: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub ack_comment: Option<String>,
    pub resolved_at: Option<i64>,
    /// `recovery`, `agent`, or who resolved it by hand.
    pub resolved_by: Option<String>,
    /// A silence covered it: recorded, not notified.
    pub silenced: bool,
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub const ALL: [Self; 3] = [Self::Firing, Self::Acknowledged, Self::Resolved];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertQuery {
    pub server_id: Option<ServerId>,
    pub status: Option<AlertStatus>,
    /// Only alerts not resolved (firing or acknowledged).
    pub open: bool,
    pub severity: Option<Severity>,
    pub rule_id: Option<i64>,
    /// Only alerts with an id below this (for paging backwards).
    pub before_id: Option<AlertId>,
    pub limit: u32,
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredRule {
    pub id: i64,
    #[serde(flatten)]
    pub rule: Rule,
    /// One of the defaults the hub ships with.
    pub builtin: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The episode state of one (rule, server, subject), and the alert it has open.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleState {
    pub rule_id: i64,
    pub subject: String,
    pub state: EpisodeState,
    pub alert_id: Option<AlertId>,
}

/// What one evaluation decided for one (rule, subject) of a server.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingChange {
    pub rule_id: i64,
    pub subject: String,
    pub state: EpisodeState,
    pub action: Option<AlertAction>,
    /// Channels to notify of the action (empty when silenced or routed nowhere).
    pub notify: Vec<i64>,
    /// A silence covered the action: the alert is recorded, nobody is told.
    pub silenced: bool,
}

/// A channel as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChannel {
    pub id: i64,
    pub channel: Channel,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredSilence {
    pub id: i64,
    #[serde(flatten)]
    pub silence: Silence,
    pub created_by: String,
    pub created_at: i64,
}

/// A notification to queue: about an alert (or a channel test) on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub alert_id: Option<AlertId>,
    pub channel_id: i64,
    /// `firing`, `escalated`, `resolved`, `repeat` or `test`.
    pub event: String,
}

/// A notification due for a delivery attempt, with what it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct DueNotification {
    pub id: i64,
    pub event: String,
    pub attempts: u32,
    pub alert: Option<AlertRecord>,
    pub channel: StoredChannel,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryOutcome {
    pub error: Option<String>,
    pub duration_ms: i64,
    /// When to try again after a failure; `None`: give up (failed for good).
    pub retry_at: Option<i64>,
}

/// A notification and its attempts, for the delivery log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationRecord {
    pub id: i64,
    pub alert_id: Option<AlertId>,
    pub channel_id: i64,
    pub event: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub history: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub at: i64,
    pub ok: bool,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotificationQuery {
    pub alert_id: Option<AlertId>,
    pub channel_id: Option<i64>,
    pub status: Option<String>,
    pub limit: u32,
}

/// What happens to the alert of an episode.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertAction {
    /// A new episode fires: a new alert.
    Open {
        kind: String,
        severity: Severity,
        message: String,
        value: f64,
        threshold: Option<f64>,
        since: i64,
        details: Value,
    },
    /// The open alert gets worse.
    Escalate { severity: Severity, message: String, value: f64, threshold: Option<f64> },
    /// The open alert's episode is over.
    Resolve { message: String, value: f64 },
}

/// Kinds of entries in the unified event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ServerAdded,
    ServerUpdated,
    ServerRemoved,
    CredentialsIssued,
    AgentRegistered,
    AgentStatus,
    AgentAlert,
    ServiceStatus,
    CommandEnqueued,
    CommandAcked,
    AlertFired,
    AlertEscalated,
    AlertAcknowledged,
    AlertResolved,
    RuleChanged,
    ChannelChanged,
    SilenceChanged,
    /// A notification was delivered, or an attempt failed.
    Notification,
    /// Someone signed in or out, or failed to.
    UserSession,
    /// A user was created or changed their password.
    UserChanged,
}

impl EventKind {
    pub const ALL: [Self; 20] = [
        Self::ServerAdded,
        Self::ServerUpdated,
        Self::ServerRemoved,
        Self::CredentialsIssued,
        Self::AgentRegistered,
        Self::AgentStatus,
        Self::AgentAlert,
        Self::ServiceStatus,
        Self::CommandEnqueued,
        Self::CommandAcked,
        Self::AlertFired,
        Self::AlertEscalated,
        Self::AlertAcknowledged,
        Self::AlertResolved,
        Self::RuleChanged,
        Self::ChannelChanged,
        Self::SilenceChanged,
        Self::Notification,
        Self::UserSession,
        Self::UserChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerAdded => "server_added",
            Self::ServerUpdated => "server_updated",
            Self::ServerRemoved => "server_removed",
            Self::CredentialsIssued => "credentials_issued",
            Self::AgentRegistered => "agent_registered",
            Self::AgentStatus => "agent_status",
            Self::AgentAlert => "agent_alert",
            Self::ServiceStatus => "service_status",
            Self::CommandEnqueued => "command_enqueued",
            Self::CommandAcked => "command_acked",
            Self::AlertFired => "alert_fired",
            Self::AlertEscalated => "alert_escalated",
            Self::AlertAcknowledged => "alert_acknowledged",
            Self::AlertResolved => "alert_resolved",
            Self::RuleChanged => "rule_changed",
            Self::ChannelChanged => "channel_changed",
            Self::SilenceChanged => "silence_changed",
            Self::Notification => "notification",
            Self::UserSession => "user_session",
            Self::UserChanged => "user_changed",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventRecord {
    pub id: i64,
    /// `None` once the server was removed, or for fleet-wide events.
    pub server_id: Option<ServerId>,
    pub kind: EventKind,
    pub severity: Severity,
    pub message: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Value,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    pub server_id: Option<ServerId>,
    pub kind: Option<EventKind>,
    pub severity: Option<Severity>,
    /// Only events whose message contains this (case-insensitive for ASCII).
    pub search: Option<String>,
    /// Only events with an id below this (for paging backwards).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCommand {
    pub id: String,
    pub kind: CommandType,
    pub args: Value,
    pub expires_at: i64,
    pub issued_by: String,
}

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Pending,
    Delivered,
    Succeeded,
    Failed,
    Rejected,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }

    pub fn from_ack(status: AckStatus) -> Self {
        match status {
            AckStatus::Succeeded => Self::Succeeded,
            AckStatus::Failed => Self::Failed,
            AckStatus::Rejected => Self::Rejected,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandRecord {
    pub id: String,
    pub server_id: ServerId,
    #[serde(rename = "type")]
    pub kind: CommandType,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub args: Value,
    pub issued_at: i64,
    pub expires_at: i64,
    pub issued_by: String,
    pub state: CommandState,
    pub delivered_at: Option<i64>,
    pub acked_at: Option<i64>,
    pub output: Option<String>,
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    Recorded,
    /// Acknowledged before; the first acknowledgement stands.
    Duplicate,
    /// No such command for this server.
    UnknownCommand,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserWithPassword {
    pub user: User,
    /// PHC string (argon2id).
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub email: String,
    pub role: Role,
    pub password_hash: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiToken {
    /// The public half of the token, used to find it.
    pub id: String,
    pub user_id: UserId,
    pub name: String,
    pub secret: TokenDigest,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: String,
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
}

/// A token record with the digest to verify a presented secret against.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenSecret {
    pub token: ApiToken,
    pub secret: TokenDigest,
}

/// A signed-in browser: the digest of its cookie's secret, whose user, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: TokenDigest,
    pub user_id: UserId,
    pub expires_at: i64,
}

/// Per-server counts the fleet overview shows beside the latest figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetCounts {
    /// Alerts firing or acknowledged (not resolved).
    pub open_alerts: u32,
    /// Units whose last known state is `failed`.
    pub failed_services: u32,
}

/// The figures a chart draws, one series per metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChartMetric {
    Cpu,
    Memory,
    Disk,
    Load,
    NetworkRxRate,
    NetworkTxRate,
    DiskReadRate,
    DiskWriteRate,
}

impl ChartMetric {
    pub const ALL: [Self; 8] = [
        Self::Cpu,
        Self::Memory,
        Self::Disk,
        Self::Load,
        Self::NetworkRxRate,
        Self::NetworkTxRate,
        Self::DiskReadRate,
        Self::DiskWriteRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Disk => "disk",
            Self::Load => "load",
            Self::NetworkRxRate => "network_rx_rate",
            Self::NetworkTxRate => "network_tx_rate",
            Self::DiskReadRate => "disk_read_rate",
            Self::DiskWriteRate => "disk_write_rate",
        }
    }
}

/// Minimum, maximum and mean of one metric over a bucket (`None` where no sample had it),
/// and its value in the bucket's newest sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Band {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub last: Option<f64>,
}

/// The samples of one time bucket `[start, start + step)`, reduced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChartBucket {
    pub start: i64,
    pub samples: u32,
    /// In [`ChartMetric::ALL`] order.
    pub bands: [Band; 8],
}

/// How long each kind of history is kept, in ms (0: for ever), and how much room the
/// history may take in all, in bytes (0: no cap). Past the cap the oldest goes first:
/// raw samples, then 5-minute, hourly and daily summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub raw_ms: i64,
    pub five_minutes_ms: i64,
    pub hours_ms: i64,
    pub days_ms: i64,
    pub max_bytes: u64,
}

/// What a retention pass removed, and the room the database uses after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RetentionOutcome {
    pub raw_deleted: u64,
    pub rollups_deleted: u64,
    pub bytes_used: u64,
}

/// What a compaction pass moved into history chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CompactionOutcome {
    /// Chunks written (one per server and day).
    pub chunks: u64,
    pub samples: u64,
    /// Bytes of the chunks written.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::StoredJson;

    #[test]
    fn stored_json_is_written_out_as_stored_and_read_on_demand() {
        let stored = StoredJson::from_stored(r#"{"system_info":{"kernel":"6.1"},"n":[1,2.5]}"#.to_owned());
        assert_eq!(
            serde_json::to_string(&[&stored]).expect("serializes"),
            r#"[{"system_info":{"kernel":"6.1"},"n":[1,2.5]}]"#,
            "as stored, not parsed and written again"
        );
        assert_eq!(stored.value()["system_info"]["kernel"], "6.1");
        assert_eq!(StoredJson::from(&json!({"a": 1})).value(), json!({"a": 1}));
        let corrupt = StoredJson::from_stored("{not json".to_owned());
        assert!(serde_json::to_string(&corrupt).is_err(), "never written out as if it were JSON");
        assert_eq!(corrupt.value(), serde_json::Value::Null);
    }

    #[test]
    fn a_registered_profile_keeps_the_system_the_configuration_and_the_claims() {
        use serverpulse_proto::register::RegisterRequest;
        use serverpulse_proto::responses::AgentConfig;
        let request = RegisterRequest {
            server_ip: None,
            hostname: "web-01".into(),
            agent_version: Some("2.1.0".into()),
            system_info: json!({"kernel": "6.1.0-18-amd64"}).as_object().cloned().unwrap_or_default(),
            enrollment_token: Some("never kept".into()),
            claimed_agent_id: Some("web-01-1718990000".into()),
            registration_time: Some(1_750_537_799_123),
        };
        let config = AgentConfig::effective(30, 60, Default::default(), 0);
        let profile = super::AgentProfile::registered(&request, &config);
        assert_eq!((profile.hostname.as_str(), profile.agent_version.as_deref()), ("web-01", Some("2.1.0")));
        assert_eq!(
            profile.system_info,
            json!({"system_info": {"kernel": "6.1.0-18-amd64"},
                   "config": {"collection_interval": 30, "heartbeat_interval": 60, "metrics_enabled": true},
                   "agent_reported_id": "web-01-1718990000",
                   "registration_time": serverpulse_proto::time::format_timestamp(1_750_537_799_123)})
        );
        let unclaimed = RegisterRequest { claimed_agent_id: None, registration_time: None, ..request };
        let profile = super::AgentProfile::registered(&unclaimed, &config);
        assert_eq!(profile.system_info.as_object().map(|o| o.len()), Some(2), "only what the agent said");
    }
}
