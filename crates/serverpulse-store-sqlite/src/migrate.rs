//! Schema migrations, applied in order on start, each in its own transaction.
//!
//! A table `schema_migrations` records what ran. Migrations are embedded in the binary,
//! so a hub can never start against a schema it does not know.

use sqlx::{Row, SqlitePool};

/// (version, name, SQL). Append only: a shipped migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (2, "agent settings", include_str!("../migrations/0002_agent_settings.sql")),
    (3, "alerting", include_str!("../migrations/0003_alerting.sql")),
    (4, "notifications", include_str!("../migrations/0004_notifications.sql")),
    (5, "sessions", include_str!("../migrations/0005_sessions.sql")),
    (6, "rollups", include_str!("../migrations/0006_rollups.sql")),
    (7, "retention", include_str!("../migrations/0007_retention.sql")),
    (8, "rollup last values", include_str!("../migrations/0008_rollup_last.sql")),
    (9, "rollup dirty buckets", include_str!("../migrations/0009_rollup_dirty.sql")),
    (10, "history chunks", include_str!("../migrations/0010_history_chunks.sql")),
    (11, "alert state indexes", include_str!("../migrations/0011_alert_state_indexes.sql")),
    (12, "agent changes", include_str!("../migrations/0012_agent_changes.sql")),
    (13, "episodes in progress", include_str!("../migrations/0013_episodes_in_progress.sql")),
    (14, "server tracking", include_str!("../migrations/0014_server_tracking.sql")),
    (15, "history ends", include_str!("../migrations/0015_history_ends.sql")),
    (16, "open bucket summary", include_str!("../migrations/0016_open_bucket_summary.sql")),
    (17, "packed documents", include_str!("../migrations/0017_packed_documents.sql")),
    (18, "gzip documents", include_str!("../migrations/0018_gzip_documents.sql")),
    (19, "one sample index", include_str!("../migrations/0019_one_sample_index.sql")),
    (20, "samples by server", include_str!("../migrations/0020_samples_by_server.sql")),
];

/// Applies every migration not yet recorded. Refuses a database from a newer hub.
pub async fn run(pool: &SqlitePool, now: i64) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(pool)
        .await?
        .try_get("v")?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if applied > known {
        return Err(sqlx::Error::Protocol(format!(
            "the database is at schema version {applied}, newer than this hub knows ({known}); upgrade ServerPulse"
        )));
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .bind(version)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::*;

    /// A database with history from before migration 20 ("samples by server") keeps all
    /// of it: every sample with its entry, recorded as indexed, ids never used twice, and
    /// nothing cascading from a server to its samples any more.
    #[tokio::test]
    async fn samples_stored_before_get_their_entries() {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").unwrap().foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        sqlx::raw_sql("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 < 20) {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            sqlx::query("INSERT INTO schema_migrations VALUES (?, ?, 0)")
                .bind(version)
                .bind(name)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO servers (name, ip, created_at) VALUES ('a', '10.0.0.1', 0);
             INSERT INTO performance_logs (server_id, seq, agent_time, received_at, raw)
             VALUES (1, 1, 1000, 1000, '{}'), (1, NULL, 2000, 2000, '{}'), (1, 3, 3000, 3000, '{}'), (1, 4, 4000, 4000, '{}');
             DELETE FROM performance_logs WHERE id = 4;",
        )
        .execute(&pool)
        .await
        .unwrap();

        run(&pool, 0).await.unwrap();
        let entries: Vec<(i64, i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT server_id, agent_time, id, seq FROM samples_by_server ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(entries, [(1, 1000, 1, Some(1)), (1, 2000, 2, None), (1, 3000, 3, Some(3))]);
        let through: i64 = sqlx::query_scalar("SELECT through FROM samples_indexed").fetch_one(&pool).await.unwrap();
        assert_eq!(through, 3);
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO performance_logs (server_id, agent_time, received_at, raw) VALUES (1, 5000, 5000, '{}') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(next, 5, "the id of a sample deleted before stays unused");
        sqlx::query("DELETE FROM servers WHERE id = 1").execute(&pool).await.unwrap();
        let samples: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM performance_logs").fetch_one(&pool).await.unwrap();
        assert_eq!(samples, 4, "the store deletes samples through their entries, not by cascade");
    }
}
