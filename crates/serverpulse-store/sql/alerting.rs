//! The alerting part of the SQLite store: rules, episode states, and the alert
//! lifecycle (opened, escalated, acknowledged, resolved), each change with its event.

use serde_json::json;
use serverpulse_alerting::{Phase, Rule};
use serverpulse_proto::alert::Severity;
use serverpulse_store::{
    AlertAction, AlertId, AlertRecord, AlertStatus, AlertingChange, EventKind, RuleState, ServerId, StoreError,
    StoreResult, StoredRule,
};
use sqlx::Row;

use crate::dialect::Conn;

use crate::notifications::enqueue_in;
use crate::rows::{self, conflict_if_unique, db, to_json};
use crate::store::{SqlStore, record_event};

fn unique_name(error: sqlx::Error) -> StoreError {
    conflict_if_unique(error, "a rule with this name exists")
}

async fn alert_in(conn: &mut Conn, id: AlertId) -> StoreResult<AlertRecord> {
    let row = sqlx::query("SELECT * FROM alerts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
    rows::alert(&row)
}

async fn rule_in(conn: &mut Conn, id: i64) -> StoreResult<StoredRule> {
    let row = sqlx::query("SELECT * FROM alert_rules WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
    rows::rule(&row)
}

impl SqlStore {
    pub(crate) async fn alert_by_id(&self, id: AlertId) -> StoreResult<AlertRecord> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        alert_in(&mut conn, id).await
    }

    pub(crate) async fn acknowledge(&self, id: AlertId, by: &str, comment: &str, now: i64) -> StoreResult<AlertRecord> {
        let mut tx = self.begin().await?;
        let alert = alert_in(&mut tx, id).await?;
        if alert.status == AlertStatus::Resolved {
            return Err(StoreError::Conflict("the alert is resolved".to_owned()));
        }
        sqlx::query(
            "UPDATE alerts SET status = 'acknowledged', acknowledged_at = $1, acknowledged_by = $2, ack_comment = $3, \
             updated_at = $4 WHERE id = $5",
        )
        .bind(now)
        .bind(by)
        .bind(comment)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        record_event(
            &mut tx,
            Some(alert.server_id),
            EventKind::AlertAcknowledged,
            Severity::Info,
            &format!("{} acknowledged by {by}", alert.message),
            json!({"alert_id": id, "by": by, "comment": comment}),
            now,
        )
        .await?;
        let updated = alert_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    pub(crate) async fn resolve_by_hand(&self, id: AlertId, by: &str, now: i64) -> StoreResult<AlertRecord> {
        let mut tx = self.begin().await?;
        let alert = alert_in(&mut tx, id).await?;
        if alert.status == AlertStatus::Resolved {
            return Err(StoreError::Conflict("the alert is already resolved".to_owned()));
        }
        close_alert(&mut tx, &alert, by, now).await?;
        // The rule's episode ends with it (only episodes in progress are kept): a
        // condition that still holds starts a new one.
        sqlx::query("DELETE FROM alert_states WHERE alert_id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        let updated = alert_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(updated)
    }

    pub(crate) async fn rules(&self) -> StoreResult<Vec<StoredRule>> {
        let found = sqlx::query("SELECT * FROM alert_rules ORDER BY id").fetch_all(&self.reader).await.map_err(db)?;
        found.iter().map(rows::rule).collect()
    }

    pub(crate) async fn rule(&self, id: i64) -> StoreResult<StoredRule> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        rule_in(&mut conn, id).await
    }

    pub(crate) async fn insert_rule(&self, rule: Rule, now: i64) -> StoreResult<StoredRule> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO alert_rules (name, definition, builtin, created_at, updated_at) VALUES ($1, $2, FALSE, $3, $4) \
             RETURNING id",
        )
        .bind(&rule.name)
        .bind(to_json(&rule)?)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(unique_name)?
        .try_get(0)
        .map_err(db)?;
        rule_event(&mut tx, &format!("rule {} created", rule.name), id, now).await?;
        let stored = rule_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    pub(crate) async fn replace_rule(&self, id: i64, rule: Rule, now: i64) -> StoreResult<StoredRule> {
        let mut tx = self.begin().await?;
        let before = rule_in(&mut tx, id).await?;
        sqlx::query("UPDATE alert_rules SET name = $1, definition = $2, updated_at = $3 WHERE id = $4")
            .bind(&rule.name)
            .bind(to_json(&rule)?)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unique_name)?;
        // A different metric or scope makes the old episodes meaningless; thresholds alone do not.
        if before.rule.metric != rule.metric || before.rule.scope != rule.scope {
            sqlx::query("DELETE FROM alert_states WHERE rule_id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        }
        rule_event(&mut tx, &format!("rule {} changed", rule.name), id, now).await?;
        let stored = rule_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    pub(crate) async fn remove_rule(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let rule = rule_in(&mut tx, id).await?;
        sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        rule_event(&mut tx, &format!("rule {} removed", rule.rule.name), id, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn states_of(&self, server: ServerId) -> StoreResult<Vec<RuleState>> {
        let found = sqlx::query("SELECT rule_id, subject, state, alert_id FROM alert_states WHERE server_id = $1")
            .bind(server)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        found.iter().map(rows::rule_state).collect()
    }

    pub(crate) async fn apply(
        &self,
        server: ServerId,
        changes: Vec<AlertingChange>,
        now: i64,
    ) -> StoreResult<Vec<AlertId>> {
        let mut tx = self.begin().await?;
        crate::dialect::lock_server(&mut tx, server).await?;
        let changes = changes.into_iter().map(|change| (server, change)).collect();
        let touched = apply_in(&mut tx, changes, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(touched.into_iter().map(|(_, id)| id).collect())
    }
}

/// A change that ends an episode quietly: nothing to announce, and the episode back to
/// `ok` (so no alert is attached to it). Its stored state is removed.
fn is_quiet(change: &AlertingChange) -> bool {
    change.action.is_none() && matches!(change.state.phase, Phase::Ok)
}

/// Writes the episode changes of any servers on `conn`. Only episodes in progress
/// (pending, firing) are kept: those ending quietly (back to `ok` with nothing to
/// announce) are removed, in one statement per [`crate::batched::MAX_ROWS`]; the others
/// (alerts opened, escalated, resolved, or an episode pending or firing) are written
/// one by one. Returns the alerts touched, by server.
pub(crate) async fn apply_in(
    conn: &mut Conn,
    changes: Vec<(ServerId, AlertingChange)>,
    now: i64,
) -> StoreResult<Vec<(ServerId, AlertId)>> {
    let (quiet, others): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(_, change)| is_quiet(change));
    static TEXTS: crate::batched::Shapes = crate::batched::Shapes::new();
    for chunk in crate::batched::chunks(quiet.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            format!(
                "{}DELETE FROM alert_states WHERE EXISTS (SELECT 1 FROM q WHERE q.rule_id = alert_states.rule_id \
                 AND q.server_id = alert_states.server_id AND q.subject = alert_states.subject)",
                crate::batched::values_cte(
                    "q",
                    &[("rule_id", "BIGINT"), ("server_id", "BIGINT"), ("subject", "TEXT")],
                    rows
                )
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(&quiet, i);
            query = query
                .bind(row.map(|(_, change)| change.rule_id))
                .bind(row.map(|(server, _)| *server))
                .bind(row.map(|(_, change)| change.subject.as_str()));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    let mut touched = Vec::new();
    for (server, change) in others {
        if let Some(id) = apply_one(&mut *conn, server, change, now).await? {
            touched.push((server, id));
        }
    }
    Ok(touched)
}

/// Writes one episode change, and the alert it opens, escalates or resolves (returned).
async fn apply_one(tx: &mut Conn, server: ServerId, change: AlertingChange, now: i64) -> StoreResult<Option<AlertId>> {
    let mut touched = None;
    let open: Option<AlertId> =
        sqlx::query("SELECT alert_id FROM alert_states WHERE rule_id = $1 AND server_id = $2 AND subject = $3")
            .bind(change.rule_id)
            .bind(server)
            .bind(&change.subject)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|row| row.try_get::<Option<AlertId>, _>(0))
            .transpose()
            .map_err(db)?
            .flatten();
    let alert_id = match change.action {
        None => open,
        Some(AlertAction::Open { kind, severity, message, value, threshold, since, details }) => {
            let id: AlertId = sqlx::query(
                        "INSERT INTO alerts (server_id, source, type, severity, message, details, created_at, status, \
                         rule_id, subject, value, threshold, started_at, updated_at, silenced) \
                         VALUES ($1, 'rule', $2, $3, $4, $5, $6, 'firing', $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                    )
                    .bind(server)
                    .bind(&kind)
                    .bind(severity.as_str())
                    .bind(&message)
                    .bind(details.to_string())
                    .bind(now)
                    .bind(change.rule_id)
                    .bind(&change.subject)
                    .bind(value)
                    .bind(threshold)
                    .bind(since)
                    .bind(now)
                    .bind(change.silenced)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?
                    .try_get(0)
                    .map_err(db)?;
            record_event(
                &mut *tx,
                Some(server),
                EventKind::AlertFired,
                severity,
                &message,
                json!({"alert_id": id, "rule_id": change.rule_id, "subject": change.subject, "value": value}),
                now,
            )
            .await?;
            enqueue_in(&mut *tx, Some(id), &change.notify, "firing", now).await?;
            touched = Some(id);
            Some(id)
        }
        Some(AlertAction::Escalate { severity, message, value, threshold }) => {
            if let Some(id) = open {
                sqlx::query(
                    "UPDATE alerts SET severity = $1, message = $2, value = $3, threshold = $4, updated_at = $5 \
                             WHERE id = $6 AND status != 'resolved'",
                )
                .bind(severity.as_str())
                .bind(&message)
                .bind(value)
                .bind(threshold)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                record_event(
                    &mut *tx,
                    Some(server),
                    EventKind::AlertEscalated,
                    severity,
                    &message,
                    json!({"alert_id": id, "value": value}),
                    now,
                )
                .await?;
                // Nobody heard of a silenced episode: its later changes stay quiet too.
                if !alert_in(&mut *tx, id).await?.silenced {
                    enqueue_in(&mut *tx, Some(id), &change.notify, "escalated", now).await?;
                }
                touched = Some(id);
            }
            open
        }
        Some(AlertAction::Resolve { message, value }) => {
            if let Some(id) = open {
                let alert = alert_in(&mut *tx, id).await?;
                if alert.status != AlertStatus::Resolved {
                    sqlx::query("UPDATE alerts SET value = $1, message = $2 WHERE id = $3")
                        .bind(value)
                        .bind(&message)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    let silenced = alert.silenced;
                    close_alert(&mut *tx, &AlertRecord { message, ..alert }, "recovery", now).await?;
                    if !silenced {
                        enqueue_in(&mut *tx, Some(id), &change.notify, "resolved", now).await?;
                    }
                    touched = Some(id);
                }
            }
            None
        }
    };
    if matches!(change.state.phase, Phase::Ok) {
        // The episode is over (resolved): only episodes in progress are kept.
        sqlx::query("DELETE FROM alert_states WHERE rule_id = $1 AND server_id = $2 AND subject = $3")
            .bind(change.rule_id)
            .bind(server)
            .bind(&change.subject)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        return Ok(touched);
    }
    let state = to_json(&change.state)?;
    sqlx::query(
        "INSERT INTO alert_states (rule_id, server_id, subject, state, alert_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (rule_id, server_id, subject) DO UPDATE SET state = excluded.state, \
                 alert_id = excluded.alert_id",
    )
    .bind(change.rule_id)
    .bind(server)
    .bind(&change.subject)
    .bind(state)
    .bind(alert_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(touched)
}

/// Marks an alert resolved (by recovery, the agent, or a person) and logs it.
pub(crate) async fn close_alert(conn: &mut Conn, alert: &AlertRecord, by: &str, now: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE alerts SET status = 'resolved', resolved_at = $1, resolved_by = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(now)
    .bind(by)
    .bind(now)
    .bind(alert.id)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    record_event(
        conn,
        Some(alert.server_id),
        EventKind::AlertResolved,
        Severity::Info,
        &format!("resolved: {}", alert.message),
        json!({"alert_id": alert.id, "by": by}),
        now,
    )
    .await
}

async fn rule_event(conn: &mut Conn, message: &str, id: i64, now: i64) -> StoreResult<()> {
    record_event(conn, None, EventKind::RuleChanged, Severity::Info, message, json!({"rule_id": id}), now).await
}
