//! What PostgreSQL does differently from the SQL the shared store speaks: JSON through
//! `jsonb`, advisory locks where replicas could race, snapshots asked for explicitly,
//! and history's size counted by rows (files do not shrink when rows go).

use serverpulse_store::{ServerId, StoreResult};
use sqlx::{PgPool, Transaction};

use crate::rows::db;

pub(crate) type Db = sqlx::Postgres;
pub(crate) type Conn = sqlx::PgConnection;
pub(crate) type DbRow = sqlx::postgres::PgRow;

/// What ingest reads of a server first: its newest report's time and uptime, its status.
pub(crate) const INGEST_STATE: &str = "SELECT last_metrics_at, agent_status, \
     (last_metrics::jsonb ->> 'uptime')::bigint AS uptime FROM servers WHERE id = $1";

/// Keeps what a heartbeat says (`$1`, JSON) in the server's `agent_config`.
pub(crate) const SET_HEARTBEAT_STATUS: &str =
    "UPDATE servers SET agent_config = jsonb_set(agent_config::jsonb, '{heartbeat}', $1::jsonb)::text WHERE id = $2";

/// (alert, channel) pairs due a repeated notice at `$1`.
pub(crate) const REPEATS_DUE: &str = "SELECT n.alert_id, n.channel_id FROM notifications n \
     JOIN alerts a ON a.id = n.alert_id JOIN channels c ON c.id = n.channel_id \
     WHERE a.status = 'firing' AND (c.definition::jsonb ->> 'repeat_every')::bigint > 0 \
     GROUP BY n.alert_id, n.channel_id, c.definition \
     HAVING MAX(n.created_at) <= $1 - (c.definition::jsonb ->> 'repeat_every')::bigint * 1000";

/// The namespace of the per-server advisory locks (the first key of the pair).
const SERVER_LOCK_SPACE: i32 = 0x5350;

/// Serialises, until the transaction ends, the writers that read a server's history
/// before writing it (ingest, compaction, summaries), on every replica.
pub(crate) async fn lock_server(conn: &mut Conn, server: ServerId) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, ($2 % 2147483647)::int)")
        .bind(SERVER_LOCK_SPACE)
        .bind(server)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Serialises the writers that count users before they change them (the first user,
/// the last administrator), on every replica.
pub(crate) async fn lock_users(conn: &mut Conn) -> StoreResult<()> {
    sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

/// A read-only transaction on one snapshot of the database.
pub(crate) async fn snapshot(pool: &PgPool) -> StoreResult<Transaction<'static, Db>> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.map_err(db)?;
    Ok(tx)
}

/// Bytes of history held: the size of every sample row, summary and chunk as PostgreSQL
/// stores it (`pg_column_size` of the row). Not the files: PostgreSQL reuses the space
/// of deleted rows but gives it back to the system only on `VACUUM FULL`, so a cap on
/// files could never be met by deleting. It scans the history tables: recent rows,
/// summaries and chunks, not the whole history as rows.
pub(crate) async fn bytes_used(pool: &PgPool) -> StoreResult<u64> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT (SELECT COALESCE(SUM(pg_column_size(p.*)), 0) FROM performance_logs p)::bigint \
         + (SELECT COALESCE(SUM(pg_column_size(r.*)), 0) FROM rollups r)::bigint \
         + (SELECT COALESCE(SUM(pg_column_size(h.*)), 0) FROM history_chunks h)::bigint",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// Nothing to do after retention: autovacuum makes the space of deleted rows reusable.
pub(crate) async fn after_deleting(_pool: &PgPool) -> StoreResult<()> {
    Ok(())
}
