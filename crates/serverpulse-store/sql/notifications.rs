//! The notification part of the SQLite store: channels, silences, and the outbox of
//! notifications (queued in the same transaction as the alert change they announce,
//! then attempted, retried and logged by the hub's dispatcher).

use serde_json::json;
use serverpulse_alerting::notify::{Channel, Schedule, Silence};
use serverpulse_proto::alert::Severity;
use serverpulse_store::{
    AlertId, DeliveryOutcome, DueNotification, EventKind, NewNotification, NotificationQuery, NotificationRecord,
    StoreError, StoreResult, StoredChannel, StoredSilence,
};
use sqlx::Row;

use crate::dialect::Conn;

use crate::rows::{self, conflict_if_unique, db, from_json, to_json};
use crate::store::{SqlStore, record_event};

fn unique_name(error: sqlx::Error) -> StoreError {
    conflict_if_unique(error, "a channel with this name exists")
}

async fn channel_in(conn: &mut Conn, id: i64) -> StoreResult<StoredChannel> {
    let row = sqlx::query("SELECT * FROM channels WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound)?;
    rows::channel(&row)
}

/// Queues notifications inside the caller's transaction.
pub(crate) async fn enqueue_in(
    conn: &mut Conn,
    alert_id: Option<AlertId>,
    channels: &[i64],
    event: &str,
    now: i64,
) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(channels.len());
    for channel in channels {
        let id: i64 = sqlx::query(
            "INSERT INTO notifications (alert_id, channel_id, event, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(alert_id)
        .bind(channel)
        .bind(event)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
        ids.push(id);
    }
    Ok(ids)
}

impl SqlStore {
    pub(crate) async fn channels(&self) -> StoreResult<Vec<StoredChannel>> {
        let found = sqlx::query("SELECT * FROM channels ORDER BY id").fetch_all(&self.reader).await.map_err(db)?;
        found.iter().map(rows::channel).collect()
    }

    pub(crate) async fn channel(&self, id: i64) -> StoreResult<StoredChannel> {
        let mut conn = self.reader.acquire().await.map_err(db)?;
        channel_in(&mut conn, id).await
    }

    pub(crate) async fn insert_channel(&self, channel: Channel, now: i64) -> StoreResult<StoredChannel> {
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO channels (name, definition, created_at, updated_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(&channel.name)
        .bind(to_json(&channel)?)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(unique_name)?
        .try_get(0)
        .map_err(db)?;
        channel_event(&mut tx, &format!("channel {} created", channel.name), id, now).await?;
        let stored = channel_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    pub(crate) async fn replace_channel(&self, id: i64, channel: Channel, now: i64) -> StoreResult<StoredChannel> {
        let mut tx = self.begin().await?;
        channel_in(&mut tx, id).await?;
        sqlx::query("UPDATE channels SET name = $1, definition = $2, updated_at = $3 WHERE id = $4")
            .bind(&channel.name)
            .bind(to_json(&channel)?)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(unique_name)?;
        channel_event(&mut tx, &format!("channel {} changed", channel.name), id, now).await?;
        let stored = channel_in(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    pub(crate) async fn remove_channel(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let channel = channel_in(&mut tx, id).await?;
        sqlx::query("DELETE FROM channels WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        channel_event(&mut tx, &format!("channel {} removed", channel.channel.name), id, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn silences(&self, active_at: Option<i64>) -> StoreResult<Vec<StoredSilence>> {
        let found = sqlx::query(
            "SELECT * FROM silences WHERE ($1 IS NULL OR ends_at IS NULL OR ends_at > $2) ORDER BY id DESC",
        )
        .bind(active_at)
        .bind(active_at)
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        found.iter().map(rows::silence).collect()
    }

    pub(crate) async fn insert_silence(&self, silence: Silence, by: &str, now: i64) -> StoreResult<StoredSilence> {
        let mut tx = self.begin().await?;
        let ends_at = match silence.schedule {
            Schedule::Once { ends_at, .. } => Some(ends_at),
            Schedule::Weekly { .. } => None,
        };
        let row = sqlx::query(
            "INSERT INTO silences (definition, created_by, created_at, ends_at) VALUES ($1, $2, $3, $4) RETURNING *",
        )
        .bind(to_json(&silence)?)
        .bind(by)
        .bind(now)
        .bind(ends_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let stored = rows::silence(&row)?;
        let scope = json!({"silence_id": stored.id, "servers": silence.servers, "tags": silence.tags,
                           "rules": silence.rules, "comment": silence.comment});
        let message = format!("silence {} set by {by}: {}", stored.id, silence.comment);
        let server = silence.servers.first().copied().filter(|_| silence.servers.len() == 1);
        record_event(&mut tx, server, EventKind::SilenceChanged, Severity::Info, &message, scope, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    pub(crate) async fn remove_silence(&self, id: i64, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let removed = sqlx::query("DELETE FROM silences WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(db)?;
        if removed.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let message = format!("silence {id} removed");
        record_event(
            &mut tx,
            None,
            EventKind::SilenceChanged,
            Severity::Info,
            &message,
            json!({"silence_id": id}),
            now,
        )
        .await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn enqueue(&self, notifications: Vec<NewNotification>, now: i64) -> StoreResult<Vec<i64>> {
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(notifications.len());
        for n in notifications {
            ids.extend(enqueue_in(&mut tx, n.alert_id, &[n.channel_id], &n.event, now).await?);
        }
        tx.commit().await.map_err(db)?;
        Ok(ids)
    }

    pub(crate) async fn due(&self, now: i64, limit: u32) -> StoreResult<Vec<DueNotification>> {
        let found = sqlx::query(
            "SELECT n.id, n.event, n.attempts, n.alert_id, c.id AS c_id, c.definition AS c_definition, \
             c.created_at AS c_created_at, c.updated_at AS c_updated_at \
             FROM notifications n JOIN channels c ON c.id = n.channel_id \
             WHERE n.status = 'pending' AND n.next_attempt_at <= $1 ORDER BY n.next_attempt_at, n.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let mut due = Vec::with_capacity(found.len());
        for row in found {
            let definition: String = row.try_get("c_definition").map_err(db)?;
            let alert_id: Option<AlertId> = row.try_get("alert_id").map_err(db)?;
            let alert = match alert_id {
                Some(id) => Some(self.alert_by_id(id).await?),
                None => None,
            };
            due.push(DueNotification {
                id: row.try_get("id").map_err(db)?,
                event: row.try_get("event").map_err(db)?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(db)?).unwrap_or(u32::MAX),
                alert,
                channel: StoredChannel {
                    id: row.try_get("c_id").map_err(db)?,
                    channel: from_json(&definition, "channel")?,
                    created_at: row.try_get("c_created_at").map_err(db)?,
                    updated_at: row.try_get("c_updated_at").map_err(db)?,
                },
            });
        }
        Ok(due)
    }

    pub(crate) async fn record(&self, id: i64, outcome: DeliveryOutcome, now: i64) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let ok = outcome.error.is_none();
        sqlx::query(
            "INSERT INTO notification_attempts (notification_id, at, ok, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(ok)
        .bind(&outcome.error)
        .bind(outcome.duration_ms)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let (status, next) = match (ok, outcome.retry_at) {
            (true, _) => ("sent", now),
            (false, Some(retry_at)) => ("pending", retry_at),
            (false, None) => ("failed", now),
        };
        let updated = sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, next_attempt_at = $2, last_error = $3, \
             sent_at = CASE WHEN $4 THEN $5 ELSE sent_at END WHERE id = $6",
        )
        .bind(status)
        .bind(next)
        .bind(&outcome.error)
        .bind(ok)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let row = sqlx::query(
            "SELECT n.event, n.attempts, n.alert_id, c.name AS channel, a.server_id FROM notifications n \
             JOIN channels c ON c.id = n.channel_id LEFT JOIN alerts a ON a.id = n.alert_id WHERE n.id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let (event, attempts): (String, i64) =
            (row.try_get("event").map_err(db)?, row.try_get("attempts").map_err(db)?);
        let (alert, channel): (Option<i64>, String) =
            (row.try_get("alert_id").map_err(db)?, row.try_get("channel").map_err(db)?);
        let server: Option<i64> = row.try_get("server_id").map_err(db)?;
        let about = alert.map_or_else(|| "a test".to_owned(), |a| format!("alert #{a}"));
        let (severity, message) = match (&outcome.error, status) {
            (None, _) => (Severity::Info, format!("{event} notice for {about} sent to {channel}")),
            (Some(e), "pending") => (
                Severity::Warning,
                format!("{event} notice for {about} to {channel} failed (attempt {attempts}, will retry): {e}"),
            ),
            (Some(e), _) => (
                Severity::Error,
                format!("{event} notice for {about} to {channel} failed for good after {attempts} attempts: {e}"),
            ),
        };
        let details = json!({"notification_id": id, "channel": channel, "alert_id": alert, "attempt": attempts});
        record_event(&mut tx, server, EventKind::Notification, severity, &message, details, now).await?;
        tx.commit().await.map_err(db)
    }

    pub(crate) async fn notification_log(&self, query: NotificationQuery) -> StoreResult<Vec<NotificationRecord>> {
        let found = sqlx::query(
            "SELECT * FROM notifications WHERE ($1 IS NULL OR alert_id = $2) AND ($3 IS NULL OR channel_id = $4) \
             AND ($5 IS NULL OR status = $6) ORDER BY id DESC LIMIT $7",
        )
        .bind(query.alert_id)
        .bind(query.alert_id)
        .bind(query.channel_id)
        .bind(query.channel_id)
        .bind(&query.status)
        .bind(&query.status)
        .bind(i64::from(query.limit))
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let mut records = Vec::with_capacity(found.len());
        for row in found {
            let id: i64 = row.try_get("id").map_err(db)?;
            let history = sqlx::query("SELECT * FROM notification_attempts WHERE notification_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&self.reader)
                .await
                .map_err(db)?
                .iter()
                .map(rows::delivery_attempt)
                .collect::<StoreResult<Vec<_>>>()?;
            records.push(NotificationRecord {
                id,
                alert_id: row.try_get("alert_id").map_err(db)?,
                channel_id: row.try_get("channel_id").map_err(db)?,
                event: row.try_get("event").map_err(db)?,
                status: row.try_get("status").map_err(db)?,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(db)?).unwrap_or(u32::MAX),
                next_attempt_at: row.try_get("next_attempt_at").map_err(db)?,
                last_error: row.try_get("last_error").map_err(db)?,
                created_at: row.try_get("created_at").map_err(db)?,
                sent_at: row.try_get("sent_at").map_err(db)?,
                history,
            });
        }
        Ok(records)
    }

    pub(crate) async fn repeats(&self, now: i64) -> StoreResult<Vec<(AlertId, i64)>> {
        let found = sqlx::query(crate::dialect::REPEATS_DUE).bind(now).fetch_all(&self.reader).await.map_err(db)?;
        found.iter().map(|row| Ok((row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?))).collect()
    }
}

async fn channel_event(conn: &mut Conn, message: &str, id: i64, now: i64) -> StoreResult<()> {
    record_event(conn, None, EventKind::ChannelChanged, Severity::Info, message, json!({"channel_id": id}), now).await
}
