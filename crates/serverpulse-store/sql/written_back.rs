//! The SQL side of server rows written back ([`serverpulse_store::write_back`]):
//! recording what a batch leaves pending with its commit, writing pending rows out
//! (before work that reads or rewrites them in the database, and on close), and laying
//! them over rows read. (Rebuilding on open what a crash left behind is the SQLite
//! store's own: `rebuild.rs` there.)
//!
//! Only a store that is its database's one writer keeps rows pending (SQLite); on
//! PostgreSQL `SqlStore::write_back` is `None` and every function here does nothing.

use std::sync::Mutex;

use std::collections::HashMap;
use std::sync::Arc;

use serverpulse_store::history::{Filling, OpenSummary};
use serverpulse_store::write_back::{PendingRow, RowChanges, WriteBack};
use serverpulse_store::{Server, ServerId, StoreResult};

use crate::dialect::{Conn, Db};
use crate::ingest::{RowFigures, RowUpdate, lock, write_rows};
use crate::rollups::Closing;
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
    write_rows_out(conn, &pending).await?;
    Ok(RowChanges { written: pending.into_keys().collect(), pending: Vec::new(), newest_id: None })
}

/// Writes the pending rows `pending` (and their samples' entries, and the buckets they
/// closed) into the database on `conn`, the writer's transaction.
pub(crate) async fn write_rows_out(conn: &mut Conn, pending: &HashMap<ServerId, Arc<PendingRow>>) -> StoreResult<()> {
    // Entries first: a closed bucket not summed up is read from its raw samples.
    let mut entries: Vec<_> =
        pending.iter().flat_map(|(server, p)| p.entries.iter().map(|entry| (*server, *entry))).collect();
    crate::samples_by_server::index(&mut *conn, &mut entries).await?;
    let mut closing: Vec<Closing> = pending
        .iter()
        .filter_map(|(server, p)| {
            let moved = p.moved.as_ref()?;
            Some(Closing { server: *server, start: moved.closed, summary: moved.closed_filling() })
        })
        .collect();
    closing.sort_unstable_by_key(|c| c.server);
    crate::rollups::close(&mut *conn, &closing).await?;
    let mut updates: Vec<RowUpdate<'_>> = pending
        .iter()
        .map(|(server, p)| RowUpdate {
            server: *server,
            newest: Some(RowFigures::of(p.at, &p.figures)),
            contact: p.contact,
            heartbeat: p.heartbeat,
            open: p.moved.as_ref().map(|moved| moved.open),
            summary: p.summary.as_deref(),
            units: p.units,
            max_seq: p.max_seq,
        })
        .collect();
    updates.sort_unstable_by_key(|u| u.server);
    write_rows(&mut *conn, &updates).await
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

/// `server`'s pending row, if any: for a read to take before its snapshot starts (a row
/// leaving the write-back later has its commit in that snapshot or after it).
pub(crate) fn pending_row(write_back: Option<&Mutex<WriteBack>>, server: ServerId) -> Option<Arc<PendingRow>> {
    write_back.and_then(|write_back| lock(write_back).of(&[server]).remove(&server))
}

/// The 5-minute buckets of a server that no tier holds as a read's snapshot stands,
/// oldest first, each with its summary where known: its open bucket, and the bucket its
/// `pending` row (taken before the snapshot) closed, unless the snapshot's row (`stored`:
/// its open bucket and that bucket's summary) has it written out already.
pub(crate) fn untiered(
    pending: Option<&PendingRow>,
    stored: (Option<i64>, Option<Vec<u8>>),
) -> Vec<(i64, Option<Filling>)> {
    let summed = |open: Option<i64>, summary: Option<&[u8]>| {
        let filling = OpenSummary::of_bucket(summary, open).map(|s| s.filling);
        open.map(|open| (open, filling))
    };
    let (open, summary) = stored;
    match pending {
        Some(p) => match &p.moved {
            Some(moved) if open == Some(moved.closed) => {
                let open = summed(Some(moved.open), p.summary.as_deref());
                [Some((moved.closed, moved.closed_filling())), open].into_iter().flatten().collect()
            }
            // Written out since it was taken: the snapshot's row says all.
            Some(_) => summed(open, summary.as_deref()).into_iter().collect(),
            None => summed(open, p.summary.as_deref()).into_iter().collect(),
        },
        None => summed(open, summary.as_deref()).into_iter().collect(),
    }
}
