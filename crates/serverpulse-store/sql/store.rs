//! [`SqlStore`]: the [`Store`] trait over a SQL database, for every backend. What the
//! databases do differently (JSON, locks, snapshots, sizes) is in each backend's `dialect`.

use async_trait::async_trait;
use serde_json::{Value, json};
use serverpulse_alerting::Rule;
use serverpulse_alerting::notify::{Channel, Silence};
use serverpulse_domain::{AgentStatus, TokenDigest};
use serverpulse_proto::alert::{AgentAlert, Severity};
use serverpulse_proto::command::CommandAck;
use serverpulse_proto::report::Report;
use serverpulse_proto::settings::AgentSettings;
use serverpulse_store::history::AGENT_ALERT_WINDOW_MS;
use serverpulse_store::{
    AckOutcome, AgentCredentials, AgentIdentity, AgentProfile, AlertId, AlertQuery, AlertRecord, AlertStatus,
    AlertingChange, ApiToken, ApiTokenSecret, BatchOutcomes, ChartBucket, CommandRecord, CommandState,
    CompactionOutcome, Contact, DeliveryOutcome, DueNotification, EnrollmentGrant, EventKind, EventQuery, EventRecord,
    FleetCounts, IngestJob, IngestOutcome, NewApiToken, NewCommand, NewNotification, NewServer, NewSession, NewUser,
    NotificationQuery, NotificationRecord, ProvisionedAgent, Recipients, RegisterOutcome, RegistrationWay,
    RetentionOutcome, RetentionPolicy, RuleState, Sample, Server, ServerId, ServerPatch, ServiceChange, ServiceRecord,
    Store, StoreError, StoreResult, StoredChannel, StoredRule, StoredSilence, User, UserId, UserWithPassword,
    Versioned,
};
use sqlx::{Pool, Row, Transaction};

use crate::dialect::{Conn, Db};
use crate::rows::{self, Cols, Columns, db};

/// Pending server rows written out per transaction before compaction and retention
/// (see [`SqlStore::write_out`]): ~10 ms of the writer each.
const WRITTEN_OUT_PER_TRANSACTION: usize = 1_024;

/// Rows with a closed bucket due written out with one batch at most: a fleet's closes
/// are spread over minutes; more wait for the next batches (each costs ~0.4 ms of the
/// writer).
const DUE_PER_BATCH: usize = 256;

/// Rows with a closed bucket due written out together, at least (unless they wait long):
/// a statement's rows (`batched::MAX_ROWS`). Written out a few at a time, each batch's
/// statements cost as much as its rows.
const DUE_TOGETHER: usize = 64;

/// Writes out, with a batch, the rows whose closed buckets are due (see
/// `serverpulse_store::write_back`): those the batch leaves pending as it leaves them,
/// the others as they wait. `changes` (the batch's) then says they are written.
async fn write_out_due(
    conn: &mut Conn,
    write_back: &std::sync::Mutex<serverpulse_store::write_back::WriteBack>,
    changes: &mut serverpulse_store::write_back::RowChanges,
) -> StoreResult<()> {
    let written: std::collections::HashSet<ServerId> = changes.written.iter().copied().collect();
    let mut rows = {
        let write_back = crate::ingest::lock(write_back);
        let due = write_back.due(DUE_PER_BATCH, DUE_TOGETHER, |server| written.contains(&server));
        if due.is_empty() {
            return Ok(());
        }
        write_back.of(&due)
    };
    let left: Vec<_> = changes.pending.extract_if(.., |(server, _)| rows.contains_key(server)).collect();
    rows.extend(left.into_iter().map(|(server, row)| (server, std::sync::Arc::new(row))));
    let started = std::time::Instant::now();
    crate::written_back::write_rows_out(&mut *conn, &rows).await?;
    let waiting = crate::ingest::lock(write_back).moved_on();
    tracing::debug!(
        rows = rows.len(),
        waiting,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "due rows written out"
    );
    changes.written.extend(rows.into_keys());
    Ok(())
}

/// The store over one database. Cheap to clone (pool handles). Writes go through
/// `writer`, reads through `reader`: two pools on SQLite (one writer connection, readers
/// beside it), one pool twice on PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) writer: Pool<Db>,
    pub(crate) reader: Pool<Db>,
    /// How hubs sharing the database agree on a leader and pass live updates.
    pub(crate) coordination: crate::dialect::Coordination,
    /// Server rows ingest has not written yet, where this store is its database's one
    /// writer (SQLite; see [`serverpulse_store::write_back`]). `None` where every row is
    /// written through (PostgreSQL, whose replicas share no memory).
    pub(crate) write_back: Option<std::sync::Arc<std::sync::Mutex<serverpulse_store::write_back::WriteBack>>>,
}

impl SqlStore {
    /// Closes the connections (giving up the lead, where this hub had it), having
    /// written out every server row left pending: a database closed cleanly has its
    /// rows up to date.
    pub async fn close(&self) {
        if let Err(error) = self.write_out(usize::MAX).await {
            tracing::warn!(error = %error, "server rows not written out; the next start rebuilds them");
        } else if let Err(error) = self.record_indexed().await {
            tracing::warn!(error = %error, "sample entries not recorded written; the next start checks them");
        }
        self.coordination.release().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Adds many servers whose agents already hold credentials (with the profile of
    /// those that registered already), in one transaction and with one event: for load
    /// tests and mass imports, where a transaction (and a commit) per server would take
    /// minutes. Returns the new servers' ids, in order.
    pub async fn provision_agents_in_bulk(&self, agents: &[ProvisionedAgent], now: i64) -> StoreResult<Vec<ServerId>> {
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(agents.len());
        for ProvisionedAgent { server, credentials, profile } in agents {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO servers (name, ip, created_at, agent_id, agent_token, hostname, agent_version, \
                 agent_config) VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}')) RETURNING id",
            )
            .bind(&server.name)
            .bind(server.ip.to_canonical().to_string())
            .bind(now)
            .bind(&credentials.agent_id)
            .bind(credentials.token.to_hex())
            .bind(profile.as_ref().map(|p| p.hostname.as_str()))
            .bind(profile.as_ref().and_then(|p| p.agent_version.as_deref()))
            .bind(profile.as_ref().map(|p| p.system_info.to_string()))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| rows::conflict_if_unique(e, "an agent id is in use already"))?;
            ids.push(id);
        }
        record_event(
            &mut tx,
            None,
            EventKind::ServerAdded,
            Severity::Info,
            &format!("{} servers provisioned in bulk with agent credentials", agents.len()),
            json!({"servers": agents.len()}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    pub(crate) async fn begin(&self) -> StoreResult<Transaction<'static, Db>> {
        self.writer.begin().await.map_err(db)
    }

    /// Spreads the buckets rows close while pending over `spread` from now on (see
    /// `serverpulse_store::write_back`; zero: each written with the next batch). A store
    /// that writes rows through keeps none.
    pub fn spread_closes_over(&self, spread: std::time::Duration) {
        if let Some(write_back) = self.write_back() {
            crate::ingest::lock(write_back).spread_closes_over(spread);
        }
    }

    /// The write-back, where this store keeps one.
    pub(crate) fn write_back(&self) -> Option<&std::sync::Mutex<serverpulse_store::write_back::WriteBack>> {
        self.write_back.as_deref()
    }

    /// Writes out every pending row, `per_transaction` servers a transaction: before
    /// work that reads or rewrites rows in the database (compaction, retention) a
    /// thousand, so that batches of reports wait milliseconds between them, not the
    /// second the whole fleet takes; on close, when nothing waits, all in one (each
    /// transaction is an fsync).
    pub(crate) async fn write_out(&self, per_transaction: usize) -> StoreResult<()> {
        let Some(write_back) = self.write_back() else { return Ok(()) };
        let servers = crate::ingest::lock(write_back).servers();
        for part in servers.chunks(per_transaction.max(1)) {
            let mut tx = self.begin().await?;
            let changes = crate::written_back::write_out(&mut tx, Some(write_back), part).await?;
            crate::written_back::commit_with(tx, Some(write_back), changes).await?;
        }
        Ok(())
    }

    /// Records how far every sample has its entry, as the write-back now says (after
    /// every row is written out: all of them, so the next start reads no sample to check).
    async fn record_indexed(&self) -> StoreResult<()> {
        let Some(write_back) = self.write_back() else { return Ok(()) };
        let mut tx = self.begin().await?;
        let through = crate::ingest::lock(write_back).indexed_through();
        crate::samples_by_server::record_indexed_through(&mut tx, through).await?;
        tx.commit().await.map_err(db)
    }

    /// A read-only transaction on one snapshot of the database.
    pub(crate) async fn snapshot(&self) -> StoreResult<Transaction<'static, Db>> {
        crate::dialect::snapshot(&self.reader).await
    }

    async fn server_in(conn: &mut Conn, id: ServerId) -> StoreResult<Server> {
        let sql = server_select_by_id();
        let row =
            sqlx::query(sql).bind(id).fetch_optional(&mut *conn).await.map_err(db)?.ok_or(StoreError::NotFound)?;
        rows::server(&row)
    }
}

/// The columns a [`Server`] is read from.
pub(crate) const SERVER_COLUMNS: &str = "id, name, ip, created_at, hostname, agent_enabled, agent_id, agent_status, \
     agent_version, agent_last_heartbeat, agent_last_contact, agent_config, last_metrics, last_metrics_at, tags";

fn server_select_by_id() -> &'static str {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("SELECT {SERVER_COLUMNS} FROM servers WHERE id = $1"));
    SQL.as_str()
}

/// A `LIKE` pattern matching text that contains `needle` (escaped with `\\`).
fn like_containing(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Appends one entry to the unified event log.
pub(crate) async fn record_event(
    conn: &mut Conn,
    server: Option<ServerId>,
    kind: EventKind,
    severity: Severity,
    message: &str,
    details: Value,
    at: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO events (server_id, kind, severity, message, details, at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(server)
        .bind(kind.as_str())
        .bind(severity.as_str())
        .bind(message)
        .bind(details.to_string())
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Records that the agent of `server` was heard from; brings it back from `disconnected`.
async fn mark_contact(conn: &mut Conn, server: ServerId, now: i64) -> StoreResult<()> {
    let previous: Option<String> = sqlx::query("SELECT agent_status FROM servers WHERE id = $1")
        .bind(server)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .map(|row| row.try_get("agent_status"))
        .transpose()
        .map_err(db)?;
    let Some(previous) = previous else {
        return Err(StoreError::NotFound);
    };
    sqlx::query(
        "UPDATE servers SET agent_status = 'active', \
         agent_last_contact = CASE WHEN COALESCE(agent_last_contact, 0) < $1 THEN $1 ELSE agent_last_contact END \
         WHERE id = $2",
    )
    .bind(now)
    .bind(server)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    contact_event(conn, server, now, &previous).await
}

/// Logs the agent's return when its status `previous` to a contact was not active.
pub(crate) async fn contact_event(conn: &mut Conn, server: ServerId, now: i64, previous: &str) -> StoreResult<()> {
    if previous != AgentStatus::Active.as_str() {
        let message =
            if previous == AgentStatus::Disconnected.as_str() { "agent is active again" } else { "agent is active" };
        record_event(
            conn,
            Some(server),
            EventKind::AgentStatus,
            Severity::Info,
            message,
            json!({"from": previous, "to": "active"}),
            now,
        )
        .await?;
    }
    Ok(())
}

/// Makes `credentials` the server's agent and records who it says it is.
async fn install_agent(
    conn: &mut Conn,
    server: ServerId,
    credentials: &AgentCredentials,
    profile: &AgentProfile,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE servers SET agent_id = $1, agent_token = $2, agent_enabled = TRUE, agent_status = 'active', \
         hostname = $3, agent_version = $4, agent_config = $5, agent_last_contact = $6 WHERE id = $7",
    )
    .bind(&credentials.agent_id)
    .bind(credentials.token.to_hex())
    .bind(&profile.hostname)
    .bind(&profile.agent_version)
    .bind(profile.system_info.to_string())
    .bind(now)
    .bind(server)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn create_server(&self, new: NewServer, enrollment: EnrollmentGrant, now: i64) -> StoreResult<Server> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query("INSERT INTO servers (name, ip, created_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(&new.name)
            .bind(new.ip.to_canonical().to_string())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get("id")
            .map_err(db)?;
        insert_enrollment(&mut tx, id, &enrollment, now).await?;
        record_event(
            &mut tx,
            Some(id),
            EventKind::ServerAdded,
            Severity::Info,
            &format!("server {} added", new.name),
            json!({"name": new.name, "ip": new.ip.to_string()}),
            now,
        )
        .await?;
        let server = Self::server_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(server)
    }

    async fn list_servers(&self) -> StoreResult<Vec<Server>> {
        let sql = format!("SELECT {SERVER_COLUMNS} FROM servers ORDER BY id");
        let found = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.reader).await.map_err(db)?;
        let mut servers = found.iter().map(rows::server).collect::<StoreResult<Vec<_>>>()?;
        crate::written_back::lay_over(self.write_back(), &mut servers);
        Ok(servers)
    }

    async fn quiet_servers(&self, since: i64) -> StoreResult<Vec<Server>> {
        let sql = format!(
            "SELECT {SERVER_COLUMNS}, id IN (SELECT server_id FROM alerts WHERE status <> 'resolved') AS alerting \
             FROM servers WHERE agent_status = 'disconnected' OR last_metrics_at < $1 \
             OR id IN (SELECT server_id FROM alerts WHERE status <> 'resolved') ORDER BY id"
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).fetch_all(&self.reader).await.map_err(db)?;
        let mut servers = Vec::with_capacity(found.len());
        let mut alerting = Vec::with_capacity(found.len());
        for row in &found {
            servers.push(rows::server(row)?);
            alerting.push(Cols(row).flag("alerting")?);
        }
        // A pending row makes a server whose row is quiet report again.
        crate::written_back::lay_over(self.write_back(), &mut servers);
        Ok(servers
            .into_iter()
            .zip(alerting)
            .filter(|(server, alerting)| {
                *alerting
                    || server.agent_status == AgentStatus::Disconnected
                    || server.last_metrics_at.is_some_and(|at| at < since)
            })
            .map(|(server, _)| server)
            .collect())
    }

    async fn get_server(&self, id: ServerId) -> StoreResult<Server> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let mut server = Self::server_in(&mut conn, id).await?;
        crate::written_back::lay_over(self.write_back(), std::slice::from_mut(&mut server));
        Ok(server)
    }

    async fn update_server(&self, id: ServerId, patch: ServerPatch, now: i64) -> StoreResult<Server> {
        let mut tx = self.begin().await?;
        let before = Self::server_in(&mut tx, id).await?;
        sqlx::query(
            "UPDATE servers SET name = COALESCE($1, name), ip = COALESCE($2, ip), \
             agent_enabled = COALESCE($3, agent_enabled), tags = COALESCE($4, tags) WHERE id = $5",
        )
        .bind(&patch.name)
        .bind(patch.ip.map(|ip| ip.to_canonical().to_string()))
        .bind(patch.agent_enabled)
        .bind(patch.tags.as_ref().map(|t| json!(t).to_string()))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let mut after = Self::server_in(&mut tx, id).await?;
        crate::written_back::lay_over(self.write_back(), std::slice::from_mut(&mut after));
        record_event(
            &mut tx,
            Some(id),
            EventKind::ServerUpdated,
            Severity::Info,
            &format!("server {} updated", after.name),
            json!({
                "name": [before.name, after.name],
                "ip": [before.ip.to_string(), after.ip.to_string()],
                "agent_enabled": [before.agent_enabled, after.agent_enabled],
                "tags": [before.tags, after.tags],
            }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(after)
    }

    async fn delete_server(&self, id: ServerId, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Waits for a batch storing its reports, which finds it gone afterwards.
        crate::dialect::lock_server(&mut tx, id).await?;
        let server = Self::server_in(&mut tx, id).await?;
        // Its samples go through their entries (written out first): nothing cascades to
        // them on SQLite (migration "samples by server").
        let gone = crate::written_back::write_out(&mut tx, self.write_back(), &[id]).await?;
        crate::samples_by_server::delete(&mut tx, id, i64::MIN, i64::MAX, i64::MAX).await?;
        sqlx::query("DELETE FROM servers WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        record_event(
            &mut tx,
            None,
            EventKind::ServerRemoved,
            Severity::Info,
            &format!("server {} removed", server.name),
            json!({"server_id": id, "name": server.name, "ip": server.ip.to_string()}),
            now,
        )
        .await?;
        crate::written_back::commit_with(tx, self.write_back(), gone).await
    }

    async fn add_enrollment(&self, id: ServerId, enrollment: EnrollmentGrant, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        Self::server_in(&mut tx, id).await?;
        insert_enrollment(&mut tx, id, &enrollment, now).await?;
        tx.commit().await.map_err(db)
    }

    async fn enrollment_server(&self, token: &TokenDigest, now: i64) -> StoreResult<Option<Server>> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        let found = sqlx::query(
            "SELECT server_id FROM enrollment_tokens WHERE token = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token.to_hex())
        .bind(now)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        match found {
            Some(row) => Ok(Some(Self::server_in(&mut conn, row.try_get("server_id").map_err(db)?).await?)),
            None => Ok(None),
        }
    }

    async fn set_agent_credentials(&self, id: ServerId, credentials: AgentCredentials, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let server = Self::server_in(&mut tx, id).await?;
        sqlx::query("UPDATE servers SET agent_id = $1, agent_token = $2, agent_enabled = TRUE WHERE id = $3")
            .bind(&credentials.agent_id)
            .bind(credentials.token.to_hex())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        record_event(
            &mut tx,
            Some(id),
            EventKind::CredentialsIssued,
            Severity::Info,
            &format!("agent credentials issued for {}", server.name),
            json!({"agent_id": credentials.agent_id, "replaced": server.agent_id}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    async fn register_agent(
        &self,
        way: RegistrationWay,
        profile: AgentProfile,
        now: i64,
    ) -> StoreResult<RegisterOutcome> {
        let mut tx = self.begin().await?;
        let (server_id, agent_id, issued_token, how) = match &way {
            RegistrationWay::Enrollment { token, fresh } => {
                let row =
                    sqlx::query("SELECT id, server_id, expires_at, used_at FROM enrollment_tokens WHERE token = $1")
                        .bind(token.to_hex())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                let Some(row) = row else {
                    return Ok(RegisterOutcome::EnrollmentRefused);
                };
                let used_at: Option<i64> = row.try_get("used_at").map_err(db)?;
                let expires_at: i64 = row.try_get("expires_at").map_err(db)?;
                if used_at.is_some() || expires_at <= now {
                    return Ok(RegisterOutcome::EnrollmentRefused);
                }
                let enrollment_id: i64 = row.try_get("id").map_err(db)?;
                let server_id: i64 = row.try_get("server_id").map_err(db)?;
                sqlx::query("UPDATE enrollment_tokens SET used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(enrollment_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                install_agent(&mut tx, server_id, fresh, &profile, now).await?;
                (server_id, fresh.agent_id.clone(), true, "enrollment token")
            }
            RegistrationWay::ExistingAgent { token } => {
                let row = sqlx::query(
                    "SELECT id, agent_id, agent_token FROM servers WHERE agent_token = $1 AND agent_enabled",
                )
                .bind(token.to_hex())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                let Some(row) = row else {
                    return Ok(RegisterOutcome::NoMatch);
                };
                let stored: String = row.try_get("agent_token").map_err(db)?;
                let stored = rows::digest(&stored)?;
                if stored != *token {
                    return Ok(RegisterOutcome::NoMatch);
                }
                let server_id: i64 = row.try_get("id").map_err(db)?;
                let agent_id: String = row.try_get("agent_id").map_err(db)?;
                let credentials = AgentCredentials { agent_id: agent_id.clone(), token: stored };
                install_agent(&mut tx, server_id, &credentials, &profile, now).await?;
                (server_id, agent_id, false, "existing credentials")
            }
            RegistrationWay::ServerIp { ip, fresh } => {
                let candidates =
                    sqlx::query("SELECT id, agent_status, agent_enabled FROM servers WHERE ip = $1 ORDER BY id")
                        .bind(ip.to_canonical().to_string())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?;
                let mut saw_active = false;
                let mut chosen = None;
                for row in &candidates {
                    let status: String = row.try_get("agent_status").map_err(db)?;
                    let enabled = Cols(row).flag("agent_enabled")?;
                    if status == AgentStatus::Active.as_str() {
                        saw_active = true;
                    } else if enabled && chosen.is_none() {
                        chosen = Some(row.try_get::<i64, _>("id").map_err(db)?);
                    }
                }
                let Some(server_id) = chosen else {
                    return Ok(if saw_active { RegisterOutcome::AgentActive } else { RegisterOutcome::NoMatch });
                };
                install_agent(&mut tx, server_id, fresh, &profile, now).await?;
                (server_id, fresh.agent_id.clone(), true, "server address")
            }
        };
        record_event(
            &mut tx,
            Some(server_id),
            EventKind::AgentRegistered,
            Severity::Info,
            &format!("agent {agent_id} registered from {} by {how}", profile.hostname),
            json!({"agent_id": agent_id, "hostname": profile.hostname, "agent_version": profile.agent_version, "by": how}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(RegisterOutcome::Registered { server_id, agent_id, issued_token })
    }

    async fn agent_identity(&self, agent_id: &str) -> StoreResult<Option<AgentIdentity>> {
        let row = sqlx::query("SELECT id, agent_id, agent_token, agent_enabled FROM servers WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let token: Option<String> = row.try_get("agent_token").map_err(db)?;
        let Some(token) = token else { return Ok(None) };
        Ok(Some(AgentIdentity {
            server_id: row.try_get("id").map_err(db)?,
            agent_id: row.try_get("agent_id").map_err(db)?,
            token: rows::digest(&token)?,
            enabled: Cols(&row).flag("agent_enabled")?,
        }))
    }

    async fn agent_changes(&self) -> StoreResult<u64> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM agent_changes WHERE id = 1")
            .fetch_one(&self.reader)
            .await
            .map_err(db)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn store_reports(
        &self,
        server: ServerId,
        reports: &[Report],
        received_at: i64,
    ) -> StoreResult<IngestOutcome> {
        let job = IngestJob { server, reports: reports.to_vec(), received_at };
        self.store_report_batch(std::slice::from_ref(&job), None).await?.pop().unwrap_or(Err(StoreError::NotFound))
    }

    async fn commit_batch(
        &self,
        jobs: &[IngestJob],
        contacts: &[Contact],
        judge: Option<&dyn serverpulse_store::Judge>,
    ) -> StoreResult<BatchOutcomes> {
        let mut tx = self.begin().await?;
        let (outcomes, mut changes) = crate::ingest::store_batch(&mut tx, jobs, judge, self.write_back()).await?;
        let answered = if contacts.is_empty() {
            Vec::new()
        } else {
            // The contacts' servers whose rows stay written back after this transaction:
            // those its reports leave pending, and those pending before that it does not
            // write (taken while it holds the writer: nothing else changes them meanwhile).
            let mut pending: std::collections::HashMap<ServerId, serverpulse_store::write_back::PendingRow> =
                std::mem::take(&mut changes.pending).into_iter().collect();
            if let Some(write_back) = self.write_back() {
                let ids: Vec<ServerId> = contacts.iter().map(|c| c.server).collect();
                for (server, row) in crate::ingest::lock(write_back).of(&ids) {
                    if !changes.written.contains(&server) {
                        pending.entry(server).or_insert_with(|| serverpulse_store::write_back::PendingRow::clone(&row));
                    }
                }
            }
            let answered = crate::contacts::record(&mut tx, contacts, &mut pending).await?;
            changes.pending = pending.into_iter().collect();
            answered
        };
        if let Some(write_back) = self.write_back() {
            write_out_due(&mut tx, write_back, &mut changes).await?;
        }
        crate::written_back::commit_with(tx, self.write_back(), changes).await?;
        Ok((outcomes, answered))
    }

    async fn agent_settings(&self, server: ServerId) -> StoreResult<Versioned<AgentSettings>> {
        let row = sqlx::query("SELECT agent_settings, agent_settings_version FROM servers WHERE id = $1")
            .bind(server)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?
            .ok_or(StoreError::NotFound)?;
        serverpulse_store::rows::agent_settings(&Cols(&row), server)
    }

    async fn set_agent_settings(
        &self,
        server: ServerId,
        settings: AgentSettings,
        now: i64,
    ) -> StoreResult<Versioned<AgentSettings>> {
        let mut tx = self.begin().await?;
        let text = rows::to_json(&settings)?;
        let version: i64 = sqlx::query(
            "UPDATE servers SET agent_settings = $1, agent_settings_version = agent_settings_version + 1 \
             WHERE id = $2 RETURNING agent_settings_version",
        )
        .bind(&text)
        .bind(server)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?
        .try_get(0)
        .map_err(db)?;
        record_event(
            &mut tx,
            Some(server),
            EventKind::ServerUpdated,
            Severity::Info,
            &format!("agent settings changed (revision {version})"),
            json!({"agent_settings": settings, "version": version}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(Versioned { version: u64::try_from(version).unwrap_or(0), value: settings })
    }

    async fn store_agent_alerts(
        &self,
        server: ServerId,
        alerts: &[AgentAlert],
        notify: &[Recipients],
        now: i64,
    ) -> StoreResult<Vec<AlertId>> {
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(alerts.len());
        for (index, alert) in alerts.iter().enumerate() {
            let recipients = notify.get(index);
            let channels = recipients.map(|r| r.channels.as_slice()).unwrap_or_default();
            let silenced = recipients.is_some_and(|r| r.silenced);
            // The episode this alert belongs to: an open agent alert of the same type
            // seen within the window (a repeat), or none (a new episode).
            let open: Option<AlertRecord> = sqlx::query(
                "SELECT * FROM alerts WHERE server_id = $1 AND source = 'agent' AND type = $2 \
                 AND status != 'resolved' AND updated_at >= $3 ORDER BY id DESC LIMIT 1",
            )
            .bind(server)
            .bind(&alert.kind)
            .bind(now - AGENT_ALERT_WINDOW_MS)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|row| rows::alert(&row))
            .transpose()?;
            let recovered = alert.details.get("state").and_then(Value::as_str) == Some("resolved");
            let id = match (open, recovered) {
                (Some(open), true) => {
                    crate::alerting::close_alert(&mut tx, &open, "agent", now).await?;
                    crate::notifications::enqueue_in(&mut tx, Some(open.id), channels, "resolved", now).await?;
                    open.id
                }
                (Some(open), false) => {
                    sqlx::query(
                        "UPDATE alerts SET occurrences = occurrences + 1, updated_at = $1, message = $2, details = $3, \
                         severity = $4, host_time = $5 WHERE id = $6",
                    )
                    .bind(now)
                    .bind(&alert.message)
                    .bind(alert.details.to_string())
                    .bind(open.severity.max(alert.severity).as_str())
                    .bind(alert.host_time)
                    .bind(open.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    open.id
                }
                (None, _) => {
                    let id: AlertId = sqlx::query(
                        "INSERT INTO alerts (server_id, source, type, severity, message, details, host_time, \
                         created_at, status, started_at, updated_at, silenced) \
                         VALUES ($1, 'agent', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                    )
                    .bind(server)
                    .bind(&alert.kind)
                    .bind(alert.severity.as_str())
                    .bind(&alert.message)
                    .bind(alert.details.to_string())
                    .bind(alert.host_time)
                    .bind(now)
                    // A recovery notice with nothing open is kept in the history, already resolved.
                    .bind(if recovered { "resolved" } else { "firing" })
                    .bind(alert.host_time.unwrap_or(now))
                    .bind(now)
                    .bind(silenced && !recovered)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?
                    .try_get("id")
                    .map_err(db)?;
                    if !recovered {
                        crate::notifications::enqueue_in(&mut tx, Some(id), channels, "firing", now).await?;
                    }
                    id
                }
            };
            record_event(
                &mut tx,
                Some(server),
                EventKind::AgentAlert,
                alert.severity,
                &alert.message,
                json!({"alert_id": id, "type": alert.kind, "details": alert.details}),
                now,
            )
            .await?;
            ids.push(id);
        }
        mark_contact(&mut tx, server, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    async fn mark_silent_agents(&self, now: i64, offline_after_ms: i64) -> StoreResult<Vec<ServerId>> {
        let cutoff = now.saturating_sub(offline_after_ms);
        // The candidates are found on a reader, without the writer: the whole `servers`
        // table is read (a fleet of 100,000 held every ingest batch ~100 ms every sweep).
        // Stored contacts only grow and a server turns active only by a contact, so a
        // server silent now was a candidate then; the update below checks each again,
        // as of the writer's view. (Only one an administrator re-enables meanwhile waits
        // for the next sweep.)
        let candidates: Vec<ServerId> = sqlx::query_scalar(
            "SELECT id FROM servers WHERE agent_status = 'active' AND agent_enabled \
             AND COALESCE(agent_last_contact, 0) < $1 ORDER BY id",
        )
        .bind(cutoff)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let mut tx = self.begin().await?;
        // Taken while this transaction holds the writer: no batch changes it before the
        // commit. Servers whose pending rows say they reported are left alone; the
        // others' pending rows are written out first (and leave the write-back), so that
        // their rows say all they did and the next report reads them.
        let mut changes = serverpulse_store::write_back::RowChanges::default();
        let mut reporting = std::collections::HashSet::new();
        if let Some(write_back) = self.write_back() {
            let silent;
            (reporting, silent) = crate::ingest::lock(write_back).split_by_contact(cutoff);
            changes = crate::written_back::write_out(&mut tx, Some(write_back), &silent).await?;
        }
        let mut silent = Vec::new();
        for id in candidates.into_iter().filter(|id| !reporting.contains(id)) {
            let row = sqlx::query(
                "UPDATE servers SET agent_status = 'disconnected' WHERE id = $1 AND agent_status = 'active' \
                 AND agent_enabled AND COALESCE(agent_last_contact, 0) < $2 \
                 RETURNING id, name, agent_last_contact",
            )
            .bind(id)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            silent.extend(row);
        }
        let mut ids = Vec::with_capacity(silent.len());
        for row in &silent {
            let id: i64 = row.try_get("id").map_err(db)?;
            let name: String = row.try_get("name").map_err(db)?;
            let last: Option<i64> = row.try_get("agent_last_contact").map_err(db)?;
            record_event(
                &mut tx,
                Some(id),
                EventKind::AgentStatus,
                Severity::Warning,
                &format!("agent of {name} is disconnected"),
                json!({"from": "active", "to": "disconnected", "last_contact": last}),
                now,
            )
            .await?;
            ids.push(id);
        }
        crate::written_back::commit_with(tx, self.write_back(), changes).await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn enqueue_command(&self, server: ServerId, command: NewCommand, now: i64) -> StoreResult<CommandRecord> {
        let mut tx = self.begin().await?;
        Self::server_in(&mut tx, server).await?;
        sqlx::query(
            "INSERT INTO commands (id, server_id, type, args, issued_at, expires_at, issued_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&command.id)
        .bind(server)
        .bind(command.kind.as_str())
        .bind(command.args.to_string())
        .bind(now)
        .bind(command.expires_at)
        .bind(&command.issued_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        record_event(
            &mut tx,
            Some(server),
            EventKind::CommandEnqueued,
            Severity::Info,
            &format!("command {} queued by {}", command.kind.as_str(), command.issued_by),
            json!({"command_id": command.id, "type": command.kind, "args": command.args}),
            now,
        )
        .await?;
        let row = sqlx::query("SELECT * FROM commands WHERE id = $1")
            .bind(&command.id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let record = rows::command(&row)?;
        tx.commit().await.map_err(db)?;
        Ok(record)
    }

    async fn pending_command_count(&self, server: ServerId, now: i64) -> StoreResult<u32> {
        let count: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM commands WHERE server_id = $1 AND state = 'pending' AND expires_at > $2",
        )
        .bind(server)
        .bind(now)
        .fetch_one(&self.reader)
        .await
        .map_err(db)?
        .try_get("n")
        .map_err(db)?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn pending_commands(&self, server: ServerId, now: i64) -> StoreResult<Vec<CommandRecord>> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE commands SET state = 'delivered', delivered_at = $1 \
             WHERE server_id = $2 AND state = 'pending' AND expires_at > $3",
        )
        .bind(now)
        .bind(server)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let found = sqlx::query(
            "SELECT * FROM commands WHERE server_id = $1 AND state = 'delivered' AND expires_at > $2 ORDER BY issued_at, id",
        )
        .bind(server)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let commands = found.iter().map(rows::command).collect::<StoreResult<Vec<_>>>()?;
        mark_contact(&mut tx, server, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(commands)
    }

    async fn ack_command(
        &self,
        server: ServerId,
        command_id: &str,
        ack: &CommandAck,
        now: i64,
    ) -> StoreResult<AckOutcome> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT state, type FROM commands WHERE id = $1 AND server_id = $2")
            .bind(command_id)
            .bind(server)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Ok(AckOutcome::UnknownCommand);
        };
        let state: String = row.try_get("state").map_err(db)?;
        let kind: String = row.try_get("type").map_err(db)?;
        if !matches!(state.as_str(), "pending" | "delivered") {
            mark_contact(&mut tx, server, now).await?;
            tx.commit().await.map_err(db)?;
            return Ok(AckOutcome::Duplicate);
        }
        let new_state = CommandState::from_ack(ack.status);
        sqlx::query(
            "UPDATE commands SET state = $1, acked_at = $2, output = $3, exit_code = $4, host_time = $5 WHERE id = $6",
        )
        .bind(new_state.as_str())
        .bind(now)
        .bind(&ack.output)
        .bind(ack.exit_code)
        .bind(ack.host_time)
        .bind(command_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let severity = match new_state {
            CommandState::Succeeded => Severity::Info,
            _ => Severity::Warning,
        };
        record_event(
            &mut tx,
            Some(server),
            EventKind::CommandAcked,
            severity,
            &format!("command {kind} {}", new_state.as_str()),
            json!({"command_id": command_id, "status": new_state, "exit_code": ack.exit_code}),
            now,
        )
        .await?;
        mark_contact(&mut tx, server, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(AckOutcome::Recorded)
    }

    async fn list_commands(&self, server: ServerId, limit: u32) -> StoreResult<Vec<CommandRecord>> {
        let found = sqlx::query("SELECT * FROM commands WHERE server_id = $1 ORDER BY issued_at DESC, id LIMIT $2")
            .bind(server)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        found.iter().map(rows::command).collect()
    }

    async fn metrics_history(&self, server: ServerId, from: i64, to: i64, limit: u32) -> StoreResult<Vec<Sample>> {
        self.samples_between(server, from, to, limit).await
    }

    async fn chart(&self, server: ServerId, from: i64, to: i64, step: i64) -> StoreResult<Vec<ChartBucket>> {
        self.chart_buckets(server, from, to, step).await
    }

    async fn refresh_rollups(&self, server: Option<ServerId>) -> StoreResult<u64> {
        self.refresh_dirty(server).await
    }

    async fn chart_resolution(&self, from: i64) -> StoreResult<i64> {
        self.resolution_at(from).await
    }

    async fn apply_retention(&self, policy: &RetentionPolicy, now: i64) -> StoreResult<RetentionOutcome> {
        // Retention closes open buckets and moves horizons in the rows: they must be whole.
        self.write_out(WRITTEN_OUT_PER_TRANSACTION).await?;
        self.retain(policy, now).await
    }

    async fn compact_history(&self, before: i64) -> StoreResult<CompactionOutcome> {
        // Compaction closes open buckets and raises `max_seq` in the rows: likewise.
        self.write_out(WRITTEN_OUT_PER_TRANSACTION).await?;
        self.compact(before).await
    }

    async fn fleet_counts(&self) -> StoreResult<std::collections::HashMap<ServerId, FleetCounts>> {
        self.counts_per_server().await
    }

    async fn services(&self, server: ServerId) -> StoreResult<Vec<ServiceRecord>> {
        let found = sqlx::query("SELECT * FROM service_states WHERE server_id = $1 ORDER BY name")
            .bind(server)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        found.iter().map(rows::service).collect()
    }

    async fn service_history(&self, server: ServerId, limit: u32) -> StoreResult<Vec<ServiceChange>> {
        let found = sqlx::query("SELECT * FROM service_history WHERE server_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(server)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        found.iter().map(rows::service_change).collect()
    }

    async fn alerts(&self, query: AlertQuery) -> StoreResult<Vec<AlertRecord>> {
        let found = sqlx::query(
            "SELECT * FROM alerts WHERE ($1 IS NULL OR server_id = $2) AND ($3 IS NULL OR status = $4) \
             AND ($5 IS NULL OR severity = $6) AND (NOT $7 OR status <> 'resolved') AND ($8 IS NULL OR rule_id = $9) \
             AND ($10 IS NULL OR id < $11) ORDER BY id DESC LIMIT $12",
        )
        .bind(query.server_id)
        .bind(query.server_id)
        .bind(query.status.map(AlertStatus::as_str))
        .bind(query.status.map(AlertStatus::as_str))
        .bind(query.severity.map(Severity::as_str))
        .bind(query.severity.map(Severity::as_str))
        .bind(query.open)
        .bind(query.rule_id)
        .bind(query.rule_id)
        .bind(query.before_id)
        .bind(query.before_id)
        .bind(i64::from(query.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        found.iter().map(rows::alert).collect()
    }

    async fn list_channels(&self) -> StoreResult<Vec<StoredChannel>> {
        self.channels().await
    }

    async fn get_channel(&self, id: i64) -> StoreResult<StoredChannel> {
        self.channel(id).await
    }

    async fn create_channel(&self, channel: Channel, now: i64) -> StoreResult<StoredChannel> {
        self.insert_channel(channel, now).await
    }

    async fn update_channel(&self, id: i64, channel: Channel, now: i64) -> StoreResult<StoredChannel> {
        self.replace_channel(id, channel, now).await
    }

    async fn delete_channel(&self, id: i64, now: i64) -> StoreResult<()> {
        self.remove_channel(id, now).await
    }

    async fn list_silences(&self, active_at: Option<i64>) -> StoreResult<Vec<StoredSilence>> {
        self.silences(active_at).await
    }

    async fn create_silence(&self, silence: Silence, by: &str, now: i64) -> StoreResult<StoredSilence> {
        self.insert_silence(silence, by, now).await
    }

    async fn delete_silence(&self, id: i64, now: i64) -> StoreResult<()> {
        self.remove_silence(id, now).await
    }

    async fn enqueue_notifications(&self, notifications: Vec<NewNotification>, now: i64) -> StoreResult<Vec<i64>> {
        self.enqueue(notifications, now).await
    }

    async fn due_notifications(&self, now: i64, limit: u32) -> StoreResult<Vec<DueNotification>> {
        self.due(now, limit).await
    }

    async fn record_delivery(&self, id: i64, outcome: DeliveryOutcome, now: i64) -> StoreResult<()> {
        self.record(id, outcome, now).await
    }

    async fn notifications(&self, query: NotificationQuery) -> StoreResult<Vec<NotificationRecord>> {
        self.notification_log(query).await
    }

    async fn repeats_due(&self, now: i64) -> StoreResult<Vec<(AlertId, i64)>> {
        self.repeats(now).await
    }

    async fn alert(&self, id: AlertId) -> StoreResult<AlertRecord> {
        self.alert_by_id(id).await
    }

    async fn acknowledge_alert(&self, id: AlertId, by: &str, comment: &str, now: i64) -> StoreResult<AlertRecord> {
        self.acknowledge(id, by, comment, now).await
    }

    async fn resolve_alert(&self, id: AlertId, by: &str, now: i64) -> StoreResult<AlertRecord> {
        self.resolve_by_hand(id, by, now).await
    }

    async fn list_rules(&self) -> StoreResult<Vec<StoredRule>> {
        self.rules().await
    }

    async fn get_rule(&self, id: i64) -> StoreResult<StoredRule> {
        self.rule(id).await
    }

    async fn create_rule(&self, rule: Rule, now: i64) -> StoreResult<StoredRule> {
        self.insert_rule(rule, now).await
    }

    async fn update_rule(&self, id: i64, rule: Rule, now: i64) -> StoreResult<StoredRule> {
        self.replace_rule(id, rule, now).await
    }

    async fn delete_rule(&self, id: i64, now: i64) -> StoreResult<()> {
        self.remove_rule(id, now).await
    }

    async fn rule_states(&self, server: ServerId) -> StoreResult<Vec<RuleState>> {
        self.states_of(server).await
    }

    async fn apply_alerting(
        &self,
        server: ServerId,
        changes: Vec<AlertingChange>,
        now: i64,
    ) -> StoreResult<Vec<AlertId>> {
        self.apply(server, changes, now).await
    }

    async fn events(&self, query: EventQuery) -> StoreResult<Vec<EventRecord>> {
        let found = sqlx::query(
            "SELECT * FROM events WHERE ($1 IS NULL OR server_id = $2) AND ($3 IS NULL OR kind = $4) \
             AND ($5 IS NULL OR severity = $6) AND (NOT $7 OR lower(message) LIKE lower($8) ESCAPE '\\') \
             AND ($9 IS NULL OR id < $10) ORDER BY id DESC LIMIT $11",
        )
        .bind(query.server_id)
        .bind(query.server_id)
        .bind(query.kind.map(EventKind::as_str))
        .bind(query.kind.map(EventKind::as_str))
        .bind(query.severity.map(Severity::as_str))
        .bind(query.severity.map(Severity::as_str))
        .bind(query.search.is_some())
        .bind(query.search.as_deref().map(like_containing))
        .bind(query.before_id)
        .bind(query.before_id)
        .bind(i64::from(query.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        found.iter().map(rows::event).collect()
    }

    async fn create_user(&self, new: NewUser, now: i64) -> StoreResult<User> {
        let row = sqlx::query(
            "INSERT INTO users (email, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, email, role, created_at",
        )
        .bind(&new.email)
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(db)?;
        rows::user(&row)
    }

    async fn create_first_user(&self, new: NewUser, now: i64) -> StoreResult<Option<User>> {
        self.insert_first_user(new, now).await
    }

    async fn set_user_role(&self, id: UserId, role: serverpulse_domain::Role, by: &str, now: i64) -> StoreResult<User> {
        self.change_role(id, role, by, now).await
    }

    async fn delete_user(&self, id: UserId, by: &str, now: i64) -> StoreResult<()> {
        self.remove_user(id, by, now).await
    }

    async fn list_api_tokens(&self) -> StoreResult<Vec<(ApiToken, String)>> {
        self.api_tokens().await
    }

    async fn revoke_api_token(&self, token_id: &str, by: &str, now: i64) -> StoreResult<()> {
        self.revoke_token(token_id, by, now).await
    }

    async fn user_count(&self) -> StoreResult<u64> {
        self.count_users().await
    }

    async fn user(&self, id: UserId) -> StoreResult<UserWithPassword> {
        self.user_with_password(id).await
    }

    async fn set_password(
        &self,
        id: UserId,
        password_hash: &str,
        keep: Option<&TokenDigest>,
        now: i64,
    ) -> StoreResult<()> {
        self.replace_password(id, password_hash, keep, now).await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let found = sqlx::query("SELECT id, email, role, created_at FROM users ORDER BY id")
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        found.iter().map(rows::user).collect()
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserWithPassword>> {
        let row =
            sqlx::query("SELECT id, email, role, created_at, password_hash FROM users WHERE lower(email) = lower($1)")
                .bind(email)
                .fetch_optional(&self.reader)
                .await
                .map_err(db)?;
        row.map(|row| {
            Ok(UserWithPassword { user: rows::user(&row)?, password_hash: row.try_get("password_hash").map_err(db)? })
        })
        .transpose()
    }

    async fn create_api_token(&self, new: NewApiToken, now: i64) -> StoreResult<ApiToken> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, secret, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, user_id, name, created_at",
        )
        .bind(&new.id)
        .bind(new.user_id)
        .bind(&new.name)
        .bind(new.secret.to_hex())
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(rows::missing_if_foreign_key)?;
        rows::api_token(&row)
    }

    async fn api_token(&self, token_id: &str) -> StoreResult<Option<(ApiTokenSecret, User)>> {
        let row = sqlx::query(
            "SELECT t.id, t.user_id, t.name, t.created_at, t.secret, \
                    u.email, u.role, u.created_at AS user_created_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL",
        )
        .bind(token_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let secret: String = row.try_get("secret").map_err(db)?;
        let role: String = row.try_get("role").map_err(db)?;
        let token = rows::api_token(&row)?;
        let user = User {
            id: token.user_id,
            email: row.try_get("email").map_err(db)?,
            role: serverpulse_domain::Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("role: {role:?}")))?,
            created_at: row.try_get("user_created_at").map_err(db)?,
        };
        Ok(Some((ApiTokenSecret { token, secret: rows::digest(&secret)? }, user)))
    }

    async fn create_session(&self, session: NewSession, now: i64) -> StoreResult<()> {
        self.insert_session(session, now).await
    }

    async fn session_user(&self, id: &TokenDigest, now: i64) -> StoreResult<Option<User>> {
        self.user_of_session(id, now).await
    }

    async fn delete_session(&self, id: &TokenDigest, now: i64) -> StoreResult<()> {
        self.end_session(id, now).await
    }

    async fn record_failed_login(&self, email: &str, now: i64) -> StoreResult<()> {
        self.log_failed_login(email, now).await
    }

    async fn lead(&self) -> StoreResult<bool> {
        self.coordination.lead(&self.writer).await
    }

    fn is_shared(&self) -> bool {
        crate::dialect::Coordination::SHARED
    }

    async fn broadcast(&self, payload: &str) -> StoreResult<()> {
        self.coordination.broadcast(&self.writer, payload).await
    }

    async fn follow_broadcasts(&self, deliver: &(dyn Fn(String) + Send + Sync)) -> StoreResult<()> {
        self.coordination.follow(&self.writer, deliver).await
    }
}

async fn insert_enrollment(
    conn: &mut Conn,
    server: ServerId,
    enrollment: &EnrollmentGrant,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO enrollment_tokens (server_id, token, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(server)
        .bind(enrollment.token.to_hex())
        .bind(now)
        .bind(enrollment.expires_at)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}
