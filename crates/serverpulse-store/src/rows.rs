//! Reading stored rows back into records, for every backend.
//!
//! The tables have the same columns in every database; only how a column is read
//! differs (SQLite keeps flags as integers, PostgreSQL as booleans). A backend
//! implements [`Columns`] for its row type and reuses these decoders, which refuse
//! anything the types cannot hold as [`StoreError::Corrupt`].

use serde_json::Value;
use serverpulse_alerting::EpisodeState;
use serverpulse_domain::{AgentStatus, Role, TokenDigest};
use serverpulse_proto::alert::Severity;
use serverpulse_proto::command::CommandType;
use serverpulse_proto::service::ServiceStatus;

use crate::history::NewestFigures;
use crate::model::StoredJson;

use crate::{
    AlertRecord, AlertStatus, ApiToken, CommandRecord, CommandState, DeliveryAttempt, EventKind, EventRecord,
    RuleState, Sample, Server, ServiceChange, ServiceRecord, StoreError, StoreResult, StoredChannel, StoredRule,
    StoredSilence, User,
};

/// One row as a backend reads it, column by column (by name).
pub trait Columns {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn opt_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn opt_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn opt_real(&self, column: &str) -> StoreResult<Option<f64>>;
    /// A yes/no column.
    fn flag(&self, column: &str) -> StoreResult<bool>;
    /// A bytes column (BLOB, BYTEA).
    fn opt_bytes(&self, column: &str) -> StoreResult<Option<Vec<u8>>>;

    /// A non-negative integer column (counters, sequence numbers); negative is absent.
    fn opt_u64(&self, column: &str) -> StoreResult<Option<u64>> {
        Ok(self.opt_int(column)?.and_then(|v| u64::try_from(v).ok()))
    }
    /// A count, saturated to `u32`.
    fn count(&self, column: &str) -> StoreResult<u32> {
        Ok(u32::try_from(self.int(column)?.max(0)).unwrap_or(u32::MAX))
    }
    /// A JSON column.
    fn json(&self, column: &str) -> StoreResult<Value> {
        json(&self.text(column)?)
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

/// A value kept in a JSON column.
pub fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A JSON column read back as `T`; `what` names it if it does not decode.
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A server's agent settings and their revision, from its `agent_settings` and
/// `agent_settings_version` columns.
pub fn agent_settings(
    row: &impl Columns,
    server: crate::ServerId,
) -> StoreResult<crate::Versioned<serverpulse_proto::settings::AgentSettings>> {
    let value = serde_json::from_str(&row.text("agent_settings")?)
        .map_err(|e| StoreError::Corrupt(format!("agent settings of server {server}: {e}")))?;
    let version = u64::try_from(row.int("agent_settings_version")?).unwrap_or(0);
    Ok(crate::Versioned { version, value })
}

pub fn json(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

pub fn severity(word: &str) -> StoreResult<Severity> {
    Severity::from_wire(word).ok_or_else(|| corrupt("severity", word))
}

/// A token digest kept as hex.
pub fn digest(text: &str) -> StoreResult<TokenDigest> {
    TokenDigest::from_hex(text).ok_or_else(|| corrupt("token digest", text))
}

pub fn server(row: &impl Columns) -> StoreResult<Server> {
    let ip = row.text("ip")?;
    let status = row.text("agent_status")?;
    let tags = row.text("tags")?;
    Ok(Server {
        id: row.int("id")?,
        name: row.text("name")?,
        ip: ip.parse().map_err(|_| corrupt("server ip", &ip))?,
        created_at: row.int("created_at")?,
        hostname: row.opt_text("hostname")?,
        agent_enabled: row.flag("agent_enabled")?,
        agent_id: row.opt_text("agent_id")?,
        agent_status: AgentStatus::parse(&status).ok_or_else(|| corrupt("agent status", &status))?,
        agent_version: row.opt_text("agent_version")?,
        agent_last_heartbeat: row.opt_int("agent_last_heartbeat")?,
        agent_last_contact: row.opt_int("agent_last_contact")?,
        agent_config: StoredJson::from_stored(row.text("agent_config")?),
        last_metrics: row.opt_text("last_metrics")?.as_deref().and_then(NewestFigures::from_text),
        last_metrics_at: row.opt_int("last_metrics_at")?,
        tags: serde_json::from_str(&tags).map_err(|_| corrupt("server tags", &tags))?,
    })
}

pub fn sample(row: &impl Columns) -> StoreResult<Sample> {
    Ok(Sample {
        seq: row.opt_u64("seq")?,
        at: row.int("agent_time")?,
        received_at: row.int("received_at")?,
        cpu_usage: row.opt_real("cpu_usage")?,
        memory_usage: row.opt_real("ram_usage")?,
        disk_usage: row.opt_real("disk_usage")?,
        load_average: row.opt_real("load_average")?,
        uptime: row.opt_u64("uptime")?,
        response_time: row.opt_real("response_time")?,
        network_rx: row.opt_u64("network_rx")?,
        network_tx: row.opt_u64("network_tx")?,
        disk_io_read: row.opt_u64("disk_io_read")?,
        disk_io_write: row.opt_u64("disk_io_write")?,
        network_rx_rate: row.opt_real("network_rx_rate")?,
        network_tx_rate: row.opt_real("network_tx_rate")?,
        disk_io_read_rate: row.opt_real("disk_io_read_rate")?,
        disk_io_write_rate: row.opt_real("disk_io_write_rate")?,
        // Packed where written so (see `packed`), else the text itself.
        raw: match row.opt_bytes("raw_packed")? {
            Some(packed) => json(&crate::packed::unpack(&packed, row.opt_int("raw_packing")?)?)?,
            None => row.json("raw")?,
        },
    })
}

pub fn service(row: &impl Columns) -> StoreResult<ServiceRecord> {
    Ok(ServiceRecord {
        name: row.text("name")?,
        status: ServiceStatus::from_wire(&row.text("status")?),
        sub_state: row.opt_text("sub_state")?,
        since: row.int("since")?,
        updated_at: row.int("updated_at")?,
        details: row.json("details")?,
    })
}

pub fn service_change(row: &impl Columns) -> StoreResult<ServiceChange> {
    Ok(ServiceChange {
        name: row.text("name")?,
        from: row.opt_text("from_status")?.as_deref().map(ServiceStatus::from_wire),
        to: ServiceStatus::from_wire(&row.text("to_status")?),
        at: row.int("at")?,
    })
}

pub fn alert(row: &impl Columns) -> StoreResult<AlertRecord> {
    let status = row.text("status")?;
    Ok(AlertRecord {
        id: row.int("id")?,
        server_id: row.int("server_id")?,
        source: row.text("source")?,
        kind: row.text("type")?,
        severity: severity(&row.text("severity")?)?,
        message: row.text("message")?,
        details: row.json("details")?,
        host_time: row.opt_int("host_time")?,
        created_at: row.int("created_at")?,
        status: AlertStatus::parse(&status).ok_or_else(|| corrupt("alert status", &status))?,
        rule_id: row.opt_int("rule_id")?,
        subject: row.text("subject")?,
        value: row.opt_real("value")?,
        threshold: row.opt_real("threshold")?,
        started_at: row.opt_int("started_at")?.unwrap_or_default(),
        updated_at: row.opt_int("updated_at")?.unwrap_or_default(),
        occurrences: row.int("occurrences")?,
        acknowledged_at: row.opt_int("acknowledged_at")?,
        acknowledged_by: row.opt_text("acknowledged_by")?,
        ack_comment: row.opt_text("ack_comment")?,
        resolved_at: row.opt_int("resolved_at")?,
        resolved_by: row.opt_text("resolved_by")?,
        silenced: row.flag("silenced")?,
    })
}

pub fn rule(row: &impl Columns) -> StoreResult<StoredRule> {
    Ok(StoredRule {
        id: row.int("id")?,
        rule: from_json(&row.text("definition")?, "rule definition")?,
        builtin: row.flag("builtin")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn rule_state(row: &impl Columns) -> StoreResult<RuleState> {
    let state: EpisodeState = from_json(&row.text("state")?, "episode state")?;
    Ok(RuleState {
        rule_id: row.int("rule_id")?,
        subject: row.text("subject")?,
        state,
        alert_id: row.opt_int("alert_id")?,
    })
}

pub fn event(row: &impl Columns) -> StoreResult<EventRecord> {
    let kind = row.text("kind")?;
    Ok(EventRecord {
        id: row.int("id")?,
        server_id: row.opt_int("server_id")?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
        severity: severity(&row.text("severity")?)?,
        message: row.text("message")?,
        details: row.json("details")?,
        at: row.int("at")?,
    })
}

pub fn command(row: &impl Columns) -> StoreResult<CommandRecord> {
    let kind = row.text("type")?;
    let state = row.text("state")?;
    Ok(CommandRecord {
        id: row.text("id")?,
        server_id: row.int("server_id")?,
        kind: CommandType::parse(&kind).ok_or_else(|| corrupt("command type", &kind))?,
        args: row.json("args")?,
        issued_at: row.int("issued_at")?,
        expires_at: row.int("expires_at")?,
        issued_by: row.text("issued_by")?,
        state: CommandState::parse(&state).ok_or_else(|| corrupt("command state", &state))?,
        delivered_at: row.opt_int("delivered_at")?,
        acked_at: row.opt_int("acked_at")?,
        output: row.opt_text("output")?,
        exit_code: row.opt_int("exit_code")?,
    })
}

pub fn role(word: &str) -> StoreResult<Role> {
    Role::parse(word).ok_or_else(|| corrupt("role", word))
}

pub fn user(row: &impl Columns) -> StoreResult<User> {
    Ok(User {
        id: row.int("id")?,
        email: row.text("email")?,
        role: role(&row.text("role")?)?,
        created_at: row.int("created_at")?,
    })
}

pub fn api_token(row: &impl Columns) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: row.text("id")?,
        user_id: row.int("user_id")?,
        name: row.text("name")?,
        created_at: row.int("created_at")?,
    })
}

pub fn channel(row: &impl Columns) -> StoreResult<StoredChannel> {
    Ok(StoredChannel {
        id: row.int("id")?,
        channel: from_json(&row.text("definition")?, "channel")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub fn silence(row: &impl Columns) -> StoreResult<StoredSilence> {
    Ok(StoredSilence {
        id: row.int("id")?,
        silence: from_json(&row.text("definition")?, "silence")?,
        created_by: row.text("created_by")?,
        created_at: row.int("created_at")?,
    })
}

pub fn delivery_attempt(row: &impl Columns) -> StoreResult<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        at: row.int("at")?,
        ok: row.flag("ok")?,
        error: row.opt_text("error")?,
        duration_ms: row.int("duration_ms")?,
    })
}

/// Defines, in a backend's rows module, one function per decoder above taking the
/// backend's own row type, given `$wrap`, its newtype implementing [`Columns`].
#[macro_export]
macro_rules! row_decoders {
    ($row:ty, $wrap:ident) => {
        $crate::row_decoders!(@each $row, $wrap;
            server -> Server, sample -> Sample, service -> ServiceRecord, service_change -> ServiceChange,
            alert -> AlertRecord, rule -> StoredRule, rule_state -> RuleState, event -> EventRecord,
            command -> CommandRecord, user -> User, api_token -> ApiToken, channel -> StoredChannel,
            silence -> StoredSilence, delivery_attempt -> DeliveryAttempt);
    };
    (@each $row:ty, $wrap:ident; $($name:ident -> $record:ident),* $(,)?) => {
        $(
            pub(crate) fn $name(row: &$row) -> $crate::StoreResult<$crate::$record> {
                $crate::rows::$name(&$wrap(row))
            }
        )*
    };
}
