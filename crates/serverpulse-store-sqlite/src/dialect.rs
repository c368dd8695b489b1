//! What SQLite does differently from the SQL the shared store speaks: its JSON
//! functions, no locks to take (one writer connection runs transactions one at a time),
//! snapshots that begin with the first read, and the size of the file in pages.

use serverpulse_store::{ServerId, StoreResult};
use sqlx::{Row, SqlitePool, Transaction};

use crate::rows::db;

pub(crate) type Db = sqlx::Sqlite;
pub(crate) type Conn = sqlx::SqliteConnection;
pub(crate) type DbRow = sqlx::sqlite::SqliteRow;

/// A yes/no column: an integer, 0 for no.
pub(crate) fn flag(row: &DbRow, column: &str) -> StoreResult<bool> {
    use sqlx::Row;
    Ok(row.try_get::<i64, _>(column).map_err(db)? != 0)
}

/// The `n`-th bound parameter of a statement whose parameters all come in order: an
/// anonymous `?`. (sqlx asks SQLite the name of every parameter on every execution, a
/// walk through the statement's list of names: for the hundreds of a multi-row
/// statement, numbered names made that quadratic.)
pub(crate) fn placeholder(_n: usize) -> String {
    "?".to_owned()
}

/// The type of a column of bytes, for casts.
pub(crate) const BYTES: &str = "BLOB";

/// `samples_by_server` is a table of its own, written by the store (see migration
/// "samples by server"): a sample's entry may be written after the sample.
pub(crate) const SAMPLE_ENTRIES_APART: bool = true;

/// `config` (an agent's stored configuration, JSON text) with `beat` (what its latest
/// heartbeat said, JSON text) as its `heartbeat` member.
pub(crate) fn with_heartbeat(config: &str, beat: &str) -> String {
    format!("json_set({config}, '$.heartbeat', json({beat}))")
}

/// Whether `config`'s `heartbeat` member is other than `beat` (both as in
/// [`with_heartbeat`]; the hub writes `beat` with its members in one order).
pub(crate) fn heartbeat_differs(config: &str, beat: &str) -> String {
    format!("json_extract({config}, '$.heartbeat') IS NOT json({beat})")
}

/// (alert, channel) pairs due a repeated notice at `$1`.
pub(crate) const REPEATS_DUE: &str = "SELECT n.alert_id, n.channel_id FROM notifications n \
     JOIN alerts a ON a.id = n.alert_id JOIN channels c ON c.id = n.channel_id \
     WHERE a.status = 'firing' AND json_extract(c.definition, '$.repeat_every') > 0 \
     GROUP BY n.alert_id, n.channel_id \
     HAVING MAX(n.created_at) <= $1 - json_extract(c.definition, '$.repeat_every') * 1000";

/// Nothing to do: the single writer connection already serialises every writer.
pub(crate) async fn lock_server(_conn: &mut Conn, _server: ServerId) -> StoreResult<()> {
    Ok(())
}

/// Nothing to do, as for [`lock_server`].
pub(crate) async fn lock_servers(_conn: &mut Conn, _servers: &std::collections::BTreeSet<ServerId>) -> StoreResult<()> {
    Ok(())
}

/// Nothing to do, as for [`lock_server`].
pub(crate) async fn lock_users(_conn: &mut Conn) -> StoreResult<()> {
    Ok(())
}

/// A read transaction: SQLite takes its snapshot at the first read and keeps it.
pub(crate) async fn snapshot(reader: &SqlitePool) -> StoreResult<Transaction<'static, Db>> {
    reader.begin().await.map_err(db)
}

/// Bytes of the database in use (pages not on the free list).
pub(crate) async fn bytes_used(writer: &SqlitePool) -> StoreResult<u64> {
    let row = sqlx::query(
        "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count()) \
         AS pages, (SELECT page_size FROM pragma_page_size()) AS size",
    )
    .fetch_one(writer)
    .await
    .map_err(db)?;
    let (pages, size): (i64, i64) = (row.try_get("pages").map_err(db)?, row.try_get("size").map_err(db)?);
    Ok(u64::try_from(pages.max(0) * size).unwrap_or(0))
}

/// After retention deleted history: a checkpoint lets the freed pages be reused first
/// (the file itself shrinks only with VACUUM).
pub(crate) async fn after_deleting(writer: &SqlitePool) -> StoreResult<()> {
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(writer).await.map_err(db)?;
    Ok(())
}

/// One hub per file: it always leads, and has nobody to pass live updates to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Coordination;

impl Coordination {
    pub(crate) const SHARED: bool = false;

    pub(crate) async fn lead(&self, _pool: &SqlitePool) -> StoreResult<bool> {
        Ok(true)
    }

    pub(crate) async fn release(&self) {}

    pub(crate) async fn broadcast(&self, _pool: &SqlitePool, _payload: &str) -> StoreResult<()> {
        Ok(())
    }

    pub(crate) async fn follow(
        &self,
        _pool: &SqlitePool,
        _deliver: &(dyn Fn(String) + Send + Sync),
    ) -> StoreResult<()> {
        Ok(())
    }
}
