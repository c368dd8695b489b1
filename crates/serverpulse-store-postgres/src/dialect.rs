//! What PostgreSQL does differently from the SQL the shared store speaks: JSON through
//! `jsonb`, advisory locks where replicas could race, snapshots asked for explicitly,
//! and history's size counted by rows (files do not shrink when rows go).

use serverpulse_store::{ServerId, StoreResult};
use std::sync::Arc;

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgPool, Transaction};

use crate::rows::db;

pub(crate) type Db = sqlx::Postgres;
pub(crate) type Conn = sqlx::PgConnection;
pub(crate) type DbRow = sqlx::postgres::PgRow;

/// A yes/no column: a boolean.
pub(crate) fn flag(row: &DbRow, column: &str) -> StoreResult<bool> {
    use sqlx::Row;
    row.try_get(column).map_err(db)
}

/// The `n`-th bound parameter of a statement.
pub(crate) fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// The type of a column of bytes, for casts.
pub(crate) const BYTES: &str = "BYTEA";

/// `samples_by_server` is a view of `performance_logs` and its index: every sample's
/// entry is written with it.
pub(crate) const SAMPLE_ENTRIES_APART: bool = false;

/// `config` (an agent's stored configuration, JSON text) with `beat` (what its latest
/// heartbeat said, JSON text) as its `heartbeat` member.
pub(crate) fn with_heartbeat(config: &str, beat: &str) -> String {
    format!("jsonb_set({config}::jsonb, '{{heartbeat}}', {beat}::jsonb)::text")
}

/// Whether `config`'s `heartbeat` member is other than `beat` (both as in
/// [`with_heartbeat`]).
pub(crate) fn heartbeat_differs(config: &str, beat: &str) -> String {
    format!("({config}::jsonb -> 'heartbeat') IS DISTINCT FROM {beat}::jsonb")
}

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

/// [`lock_server`] for several servers in one statement, in id order (so two writers
/// taking overlapping sets never wait on each other crosswise).
pub(crate) async fn lock_servers(conn: &mut Conn, servers: &std::collections::BTreeSet<ServerId>) -> StoreResult<()> {
    let ids: Vec<i64> = servers.iter().copied().collect();
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, (id % 2147483647)::int) FROM unnest($2::bigint[]) AS ids(id) ORDER BY id",
    )
    .bind(SERVER_LOCK_SPACE)
    .bind(ids)
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

/// The advisory lock the leading hub holds for as long as its connection lives
/// ("SPLEADER" in ASCII).
const LEADER_LOCK: i64 = 0x5350_4c45_4144_4552;

/// The channel live updates go through.
const LIVE_CHANNEL: &str = "serverpulse_live";

/// How hubs on one database agree on a leader and pass live updates: the leader holds a
/// session-level advisory lock on a connection of its own, so the lock goes the moment
/// that hub dies (PostgreSQL ends the session) and another hub's next claim takes it.
#[derive(Debug, Default)]
pub(crate) struct Coordination {
    /// The connection that holds (or tries for) the lock, and whether it holds it.
    claim: Arc<tokio::sync::Mutex<Option<(Conn, bool)>>>,
}

impl Clone for Coordination {
    fn clone(&self) -> Self {
        Self { claim: Arc::clone(&self.claim) }
    }
}

impl Coordination {
    pub(crate) const SHARED: bool = true;

    pub(crate) async fn lead(&self, pool: &PgPool) -> StoreResult<bool> {
        let mut claim = self.claim.lock().await;
        if let Some((conn, held)) = claim.as_mut() {
            // The lock lives as long as this connection: check that it still does.
            if *held {
                match tokio::time::timeout(std::time::Duration::from_secs(5), conn.ping()).await {
                    Ok(Ok(())) => return Ok(true),
                    _ => {
                        tracing::warn!("lost the connection holding leadership; background work stops here");
                        *claim = None;
                        return Ok(false);
                    }
                }
            }
        }
        if claim.is_none() {
            let conn = pool.acquire().await.map_err(db)?.detach();
            *claim = Some((conn, false));
        }
        let Some((conn, held)) = claim.as_mut() else { return Ok(false) };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(won) => {
                if won {
                    tracing::info!("this hub now leads the background work");
                }
                *held = won;
                Ok(won)
            }
            Err(e) => {
                *claim = None;
                Err(db(e))
            }
        }
    }

    /// Ends the session holding (or trying for) the lock: another hub may lead now.
    pub(crate) async fn release(&self) {
        if let Some((conn, _)) = self.claim.lock().await.take() {
            let _ = conn.close().await;
        }
    }

    pub(crate) async fn broadcast(&self, pool: &PgPool, payload: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(LIVE_CHANNEL).bind(payload).execute(pool).await.map_err(db)?;
        Ok(())
    }

    pub(crate) async fn follow(&self, pool: &PgPool, deliver: &(dyn Fn(String) + Send + Sync)) -> StoreResult<()> {
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.listen(LIVE_CHANNEL).await.map_err(db)?;
        loop {
            let notification = listener.recv().await.map_err(db)?;
            deliver(notification.payload().to_owned());
        }
    }
}
