//! Schema migrations for PostgreSQL, applied on start in one transaction.
//!
//! A table `schema_migrations` records what ran. Replicas starting together take a
//! transaction-scoped advisory lock first, so exactly one applies each migration and
//! the others see it done. PostgreSQL's DDL is transactional: a failed migration leaves
//! nothing behind.

use sqlx::{PgPool, Row};

/// (version, name, SQL). Append only: a shipped migration never changes.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (2, "agent changes", include_str!("../migrations/0002_agent_changes.sql")),
    (3, "episodes in progress", include_str!("../migrations/0003_episodes_in_progress.sql")),
    (4, "server tracking", include_str!("../migrations/0004_server_tracking.sql")),
    (5, "history ends", include_str!("../migrations/0005_history_ends.sql")),
    (6, "open bucket summary", include_str!("../migrations/0006_open_bucket_summary.sql")),
    (7, "packed documents", include_str!("../migrations/0007_packed_documents.sql")),
    (8, "gzip documents", include_str!("../migrations/0008_gzip_documents.sql")),
    (9, "samples by server", include_str!("../migrations/0009_samples_by_server.sql")),
];

/// The advisory lock key serialising migrations ("SPMIGRAT" in ASCII).
const MIGRATION_LOCK: i64 = 0x5350_4d49_4752_4154;

/// Applies every migration not yet recorded. Refuses a database from a newer hub.
pub async fn run(pool: &PgPool, now: i64) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if applied > known {
        return Err(sqlx::Error::Protocol(format!(
            "the database is at schema version {applied}, newer than this hub knows ({known}); upgrade ServerPulse"
        )));
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > applied) {
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(version)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, name, "applied database migration");
    }
    tx.commit().await
}
