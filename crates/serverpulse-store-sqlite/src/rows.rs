//! Reading rows back into store records, refusing anything the types cannot hold.

use serde_json::Value;
use serverpulse_domain::{AgentStatus, Role, TokenDigest};
use serverpulse_proto::alert::Severity;
use serverpulse_proto::command::CommandType;
use serverpulse_proto::service::ServiceStatus;
use serverpulse_store::{
    AlertRecord, AlertStatus, ApiToken, CommandRecord, CommandState, EventKind, EventRecord, Sample, Server,
    ServiceChange, ServiceRecord, StoreError, StoredRule, User,
};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

pub(crate) fn db(error: sqlx::Error) -> StoreError {
    if let Some(db) = error.as_database_error()
        && db.is_unique_violation()
    {
        return StoreError::Conflict(db.message().to_owned());
    }
    StoreError::Backend(error.to_string())
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

/// A value kept in a JSON column.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

/// A JSON column read back as `T`; `what` names it if it does not decode.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A write that broke a UNIQUE constraint is a conflict (`message` says which); other
/// failures stay backend errors.
pub(crate) fn conflict_if_unique(error: sqlx::Error, message: &str) -> StoreError {
    match &error {
        sqlx::Error::Database(e) if e.message().contains("UNIQUE") => StoreError::Conflict(message.to_owned()),
        _ => db(error),
    }
}

pub(crate) fn json(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

fn opt_u64(row: &SqliteRow, column: &str) -> Result<Option<u64>, StoreError> {
    let value: Option<i64> = row.try_get(column).map_err(db)?;
    Ok(value.and_then(|v| u64::try_from(v).ok()))
}

pub(crate) fn severity(word: &str) -> Result<Severity, StoreError> {
    Severity::from_wire(word).ok_or_else(|| corrupt("severity", word))
}

pub(crate) fn digest(text: &str) -> Result<TokenDigest, StoreError> {
    TokenDigest::from_hex(text).ok_or_else(|| corrupt("token digest", text))
}

pub(crate) fn server(row: &SqliteRow) -> Result<Server, StoreError> {
    let ip: String = row.try_get("ip").map_err(db)?;
    let status: String = row.try_get("agent_status").map_err(db)?;
    let config: String = row.try_get("agent_config").map_err(db)?;
    let last_metrics: Option<String> = row.try_get("last_metrics").map_err(db)?;
    Ok(Server {
        id: row.try_get("id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        ip: ip.parse().map_err(|_| corrupt("server ip", &ip))?,
        created_at: row.try_get("created_at").map_err(db)?,
        hostname: row.try_get("hostname").map_err(db)?,
        agent_enabled: row.try_get::<i64, _>("agent_enabled").map_err(db)? != 0,
        agent_id: row.try_get("agent_id").map_err(db)?,
        agent_status: AgentStatus::parse(&status).ok_or_else(|| corrupt("agent status", &status))?,
        agent_version: row.try_get("agent_version").map_err(db)?,
        agent_last_heartbeat: row.try_get("agent_last_heartbeat").map_err(db)?,
        agent_last_contact: row.try_get("agent_last_contact").map_err(db)?,
        agent_config: json(&config)?,
        last_metrics: last_metrics.as_deref().map(json).transpose()?,
        last_metrics_at: row.try_get("last_metrics_at").map_err(db)?,
        tags: {
            let tags: String = row.try_get("tags").map_err(db)?;
            serde_json::from_str(&tags).map_err(|_| corrupt("server tags", &tags))?
        },
    })
}

pub(crate) fn sample(row: &SqliteRow) -> Result<Sample, StoreError> {
    let raw: String = row.try_get("raw").map_err(db)?;
    Ok(Sample {
        seq: opt_u64(row, "seq")?,
        at: row.try_get("agent_time").map_err(db)?,
        received_at: row.try_get("received_at").map_err(db)?,
        cpu_usage: row.try_get("cpu_usage").map_err(db)?,
        memory_usage: row.try_get("ram_usage").map_err(db)?,
        disk_usage: row.try_get("disk_usage").map_err(db)?,
        load_average: row.try_get("load_average").map_err(db)?,
        uptime: opt_u64(row, "uptime")?,
        response_time: row.try_get("response_time").map_err(db)?,
        network_rx: opt_u64(row, "network_rx")?,
        network_tx: opt_u64(row, "network_tx")?,
        disk_io_read: opt_u64(row, "disk_io_read")?,
        disk_io_write: opt_u64(row, "disk_io_write")?,
        network_rx_rate: row.try_get("network_rx_rate").map_err(db)?,
        network_tx_rate: row.try_get("network_tx_rate").map_err(db)?,
        disk_io_read_rate: row.try_get("disk_io_read_rate").map_err(db)?,
        disk_io_write_rate: row.try_get("disk_io_write_rate").map_err(db)?,
        raw: json(&raw)?,
    })
}

pub(crate) fn service(row: &SqliteRow) -> Result<ServiceRecord, StoreError> {
    let status: String = row.try_get("status").map_err(db)?;
    let details: String = row.try_get("details").map_err(db)?;
    Ok(ServiceRecord {
        name: row.try_get("name").map_err(db)?,
        status: ServiceStatus::from_wire(&status),
        sub_state: row.try_get("sub_state").map_err(db)?,
        since: row.try_get("since").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
        details: json(&details)?,
    })
}

pub(crate) fn service_change(row: &SqliteRow) -> Result<ServiceChange, StoreError> {
    let from: Option<String> = row.try_get("from_status").map_err(db)?;
    let to: String = row.try_get("to_status").map_err(db)?;
    Ok(ServiceChange {
        name: row.try_get("name").map_err(db)?,
        from: from.as_deref().map(ServiceStatus::from_wire),
        to: ServiceStatus::from_wire(&to),
        at: row.try_get("at").map_err(db)?,
    })
}

pub(crate) fn alert(row: &SqliteRow) -> Result<AlertRecord, StoreError> {
    let severity_word: String = row.try_get("severity").map_err(db)?;
    let details: String = row.try_get("details").map_err(db)?;
    Ok(AlertRecord {
        id: row.try_get("id").map_err(db)?,
        server_id: row.try_get("server_id").map_err(db)?,
        source: row.try_get("source").map_err(db)?,
        kind: row.try_get("type").map_err(db)?,
        severity: severity(&severity_word)?,
        message: row.try_get("message").map_err(db)?,
        details: json(&details)?,
        host_time: row.try_get("host_time").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        status: {
            let word: String = row.try_get("status").map_err(db)?;
            AlertStatus::parse(&word).ok_or_else(|| corrupt("alert status", &word))?
        },
        rule_id: row.try_get("rule_id").map_err(db)?,
        subject: row.try_get("subject").map_err(db)?,
        value: row.try_get("value").map_err(db)?,
        threshold: row.try_get("threshold").map_err(db)?,
        started_at: row.try_get::<Option<i64>, _>("started_at").map_err(db)?.unwrap_or_default(),
        updated_at: row.try_get::<Option<i64>, _>("updated_at").map_err(db)?.unwrap_or_default(),
        occurrences: row.try_get("occurrences").map_err(db)?,
        acknowledged_at: row.try_get("acknowledged_at").map_err(db)?,
        acknowledged_by: row.try_get("acknowledged_by").map_err(db)?,
        ack_comment: row.try_get("ack_comment").map_err(db)?,
        resolved_at: row.try_get("resolved_at").map_err(db)?,
        resolved_by: row.try_get("resolved_by").map_err(db)?,
        silenced: row.try_get::<i64, _>("silenced").map_err(db)? != 0,
    })
}

pub(crate) fn rule(row: &SqliteRow) -> Result<StoredRule, StoreError> {
    let definition: String = row.try_get("definition").map_err(db)?;
    Ok(StoredRule {
        id: row.try_get("id").map_err(db)?,
        rule: from_json(&definition, "rule definition")?,
        builtin: row.try_get::<i64, _>("builtin").map_err(db)? != 0,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

pub(crate) fn event(row: &SqliteRow) -> Result<EventRecord, StoreError> {
    let kind: String = row.try_get("kind").map_err(db)?;
    let severity_word: String = row.try_get("severity").map_err(db)?;
    let details: String = row.try_get("details").map_err(db)?;
    Ok(EventRecord {
        id: row.try_get("id").map_err(db)?,
        server_id: row.try_get("server_id").map_err(db)?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("event kind", &kind))?,
        severity: severity(&severity_word)?,
        message: row.try_get("message").map_err(db)?,
        details: json(&details)?,
        at: row.try_get("at").map_err(db)?,
    })
}

pub(crate) fn command(row: &SqliteRow) -> Result<CommandRecord, StoreError> {
    let kind: String = row.try_get("type").map_err(db)?;
    let state: String = row.try_get("state").map_err(db)?;
    let args: String = row.try_get("args").map_err(db)?;
    Ok(CommandRecord {
        id: row.try_get("id").map_err(db)?,
        server_id: row.try_get("server_id").map_err(db)?,
        kind: CommandType::parse(&kind).ok_or_else(|| corrupt("command type", &kind))?,
        args: json(&args)?,
        issued_at: row.try_get("issued_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        issued_by: row.try_get("issued_by").map_err(db)?,
        state: CommandState::parse(&state).ok_or_else(|| corrupt("command state", &state))?,
        delivered_at: row.try_get("delivered_at").map_err(db)?,
        acked_at: row.try_get("acked_at").map_err(db)?,
        output: row.try_get("output").map_err(db)?,
        exit_code: row.try_get("exit_code").map_err(db)?,
    })
}

pub(crate) fn user(row: &SqliteRow) -> Result<User, StoreError> {
    let role: String = row.try_get("role").map_err(db)?;
    Ok(User {
        id: row.try_get("id").map_err(db)?,
        email: row.try_get("email").map_err(db)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
        created_at: row.try_get("created_at").map_err(db)?,
    })
}

pub(crate) fn api_token(row: &SqliteRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: row.try_get("id").map_err(db)?,
        user_id: row.try_get("user_id").map_err(db)?,
        name: row.try_get("name").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
    })
}
