//! Rebuilding on open what a hub stopped without writing out (a crash, a kill): the
//! entries of samples in `samples_by_server`, then the server rows. SQLite's alone, as
//! only a store that is its database's one writer keeps rows pending (see
//! `serverpulse_store::write_back`). PostgreSQL writes every row through.

use serverpulse_store::history::{NewestFigures, TIERS, bucket_of};
use serverpulse_store::{ServerId, StoreResult};
use sqlx::Row;

use crate::dialect::Db;
use crate::ingest::{RowFigures, RowUpdate, write_rows};
use crate::rollups::Closing;
use crate::rows::{Cols, db};

/// Writes the entries of every sample after the last id recorded as indexed (a pending
/// row's were in the writer's memory alone), and records every sample indexed. One
/// read of the samples stored since that id: after a clean close, none. Returns the
/// greatest sample id.
pub(crate) async fn rebuild_entries(writer: &sqlx::Pool<Db>) -> StoreResult<i64> {
    let mut tx = writer.begin().await.map_err(db)?;
    let rebuilt = sqlx::query(
        "INSERT INTO samples_by_server (server_id, agent_time, id, seq) \
         SELECT server_id, agent_time, id, seq FROM performance_logs \
         WHERE id > (SELECT through FROM samples_indexed) ON CONFLICT DO NOTHING",
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM performance_logs")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    crate::samples_by_server::record_indexed_through(&mut tx, newest).await?;
    tx.commit().await.map_err(db)?;
    if rebuilt > 0 {
        tracing::info!(entries = rebuilt, "sample entries rebuilt from the samples stored after them");
    }
    Ok(newest)
}

/// Servers per transaction when rows are rebuilt on open.
const REBUILT_PER_TRANSACTION: usize = 512;

/// Rebuilds the rows a hub stopped without writing out (a crash, a kill), after their
/// samples' entries ([`rebuild_entries`]): a row's pending reports are exactly its
/// samples later than its newest figures, in its open bucket or in the one its row
/// moved on to while pending (see `serverpulse_store::write_back`). Each such row takes
/// the newest of them as its figures, their greatest `seq` and latest arrival, and
/// forgets its open summary and units digest (not known: the bucket is summed up from
/// its raw samples when it closes, the units compared afresh); a bucket it had closed
/// without writing is closed now, from its raw samples. Returns the rows rebuilt.
pub(crate) async fn rebuild_rows(writer: &sqlx::Pool<Db>) -> StoreResult<usize> {
    let behind: Vec<(ServerId, i64, Option<i64>)> = sqlx::query(
        "SELECT s.id, s.last_metrics_at, s.rollup_open FROM servers s WHERE s.last_metrics_at IS NOT NULL \
         AND EXISTS (SELECT 1 FROM samples_by_server p WHERE p.server_id = s.id AND p.agent_time > s.last_metrics_at) \
         ORDER BY s.id",
    )
    .fetch_all(writer)
    .await
    .map_err(db)?
    .iter()
    .map(|row| {
        let (id, at) = (row.try_get("id").map_err(db)?, row.try_get("last_metrics_at").map_err(db)?);
        Ok((id, at, row.try_get("rollup_open").map_err(db)?))
    })
    .collect::<StoreResult<_>>()?;
    for part in behind.chunks(REBUILT_PER_TRANSACTION) {
        let mut tx = writer.begin().await.map_err(db)?;
        let mut updates = Vec::with_capacity(part.len());
        let mut closing = Vec::new();
        for (server, after, open) in part {
            let rows = sqlx::query(
                "SELECT seq, agent_time, received_at, cpu_usage, ram_usage, disk_usage, load_average, uptime, \
                 response_time, network_rx, network_tx, disk_io_read, disk_io_write, network_rx_rate, \
                 network_tx_rate, disk_io_read_rate, disk_io_write_rate, 'null' AS raw, NULL AS raw_packed, \
                 NULL AS raw_packing FROM performance_logs WHERE id IN (SELECT id FROM samples_by_server \
                 WHERE server_id = $1 AND agent_time > $2) ORDER BY agent_time, id",
            )
            .bind(server)
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            let samples =
                rows.iter().map(|row| serverpulse_store::rows::sample(&Cols(row))).collect::<StoreResult<Vec<_>>>()?;
            let Some(newest) = samples.last() else { continue };
            // Every bucket from the open one up to the newest sample's closed, in order.
            let newest_bucket = bucket_of(newest.at, TIERS[0]);
            let moved = open.filter(|open| *open < newest_bucket);
            if let Some(open) = moved {
                let mut starts: Vec<i64> = samples.iter().map(|s| bucket_of(s.at, TIERS[0])).collect();
                starts.retain(|start| *start > open && *start < newest_bucket);
                starts.insert(0, open);
                starts.dedup();
                closing.extend(starts.into_iter().map(|start| Closing { server: *server, start, summary: None }));
            }
            updates.push(RowUpdate {
                server: *server,
                newest: Some(RowFigures::of(newest.at, &NewestFigures::of_sample(newest))),
                contact: samples.iter().map(|s| s.received_at).max().unwrap_or(newest.received_at),
                heartbeat: None,
                open: moved.map(|_| newest_bucket),
                summary: None,
                units: None,
                max_seq: samples.iter().filter_map(|s| s.seq).filter_map(|s| i64::try_from(s).ok()).max(),
            });
        }
        crate::rollups::close(&mut tx, &closing).await?;
        write_rows(&mut tx, &updates).await?;
        tx.commit().await.map_err(db)?;
    }
    if !behind.is_empty() {
        tracing::info!(servers = behind.len(), "server rows rebuilt from reports stored after them");
    }
    Ok(behind.len())
}
