//! The SQL side of server rows written back ([`serverpulse_store::write_back`]):
//! recording what a batch leaves pending with its commit, writing pending rows out
//! (before work that reads or rewrites them in the database, and on close), and laying
//! them over rows read. (Rebuilding on open what a crash left behind is the SQLite
//! store's own: `rebuild.rs` there.)
//!
//! Only a store that is its database's one writer keeps rows pending (SQLite); on
//! PostgreSQL `SqlStore::write_back` is `None` and every function here does nothing.

use std::sync::Mutex;

use serverpulse_store::write_back::{RowChanges, WriteBack};
use serverpulse_store::{Server, ServerId, StoreResult};

use crate::dialect::{Conn, Db};
use crate::ingest::{RowFigures, RowUpdate, lock, write_rows};
use crate::rows::db;

/// Commits `tx` with `changes` recorded first, while it still holds the writer (no other
/// transaction can see the write-back without them); put back if the commit fails.
pub(crate) async fn commit_with(
    tx: sqlx::Transaction<'static, Db>,
    write_back: Option<&Mutex<WriteBack>>,
    changes: RowChanges,
) -> StoreResult<()> {
    let undo = write_back.map(|write_back| (write_back, lock(write_back).apply(changes)));
    if let Err(error) = tx.commit().await {
        if let Some((write_back, undo)) = undo {
            lock(write_back).restore(undo);
        }
        return Err(db(error));
    }
    Ok(())
}

/// Writes the pending rows of `servers` (and their samples' entries) into the database
/// on `conn`, the writer's transaction, and returns the changes that say they are
/// written.
pub(crate) async fn write_out(
    conn: &mut Conn,
    write_back: Option<&Mutex<WriteBack>>,
    servers: &[ServerId],
) -> StoreResult<RowChanges> {
    let Some(write_back) = write_back else { return Ok(RowChanges::default()) };
    let pending = lock(write_back).of(servers);
    let mut updates: Vec<RowUpdate<'_>> = pending
        .iter()
        .map(|(server, p)| RowUpdate {
            server: *server,
            newest: Some(RowFigures::of(p.at, &p.figures)),
            contact: p.contact,
            heartbeat: p.heartbeat,
            open: None,
            summary: p.summary.as_deref(),
            units: p.units,
            max_seq: p.max_seq,
        })
        .collect();
    updates.sort_unstable_by_key(|u| u.server);
    write_rows(&mut *conn, &updates).await?;
    let mut entries: Vec<_> =
        pending.iter().flat_map(|(server, p)| p.entries.iter().map(|entry| (*server, *entry))).collect();
    crate::samples_by_server::index(&mut *conn, &mut entries).await?;
    Ok(RowChanges { written: updates.iter().map(|u| u.server).collect(), pending: Vec::new(), newest_id: None })
}

/// Lays what is pending over `rows` as read.
pub(crate) fn lay_over(write_back: Option<&Mutex<WriteBack>>, rows: &mut [Server]) {
    let Some(write_back) = write_back else { return };
    let write_back = lock(write_back);
    if write_back.is_empty() {
        return;
    }
    for row in rows {
        if let Some(pending) = write_back.get(row.id) {
            pending.lay_over(row);
        }
    }
}

/// Lays a pending open summary over the one read for `server` (the chart's open bucket).
pub(crate) fn open_summary(
    write_back: Option<&Mutex<WriteBack>>,
    server: ServerId,
    stored: (Option<i64>, Option<Vec<u8>>),
) -> (Option<i64>, Option<Vec<u8>>) {
    let Some(write_back) = write_back else { return stored };
    match lock(write_back).get(server) {
        Some(pending) => (stored.0, pending.summary.clone()),
        None => stored,
    }
}
