//! Retention: raw samples and each rollup tier deleted past their age, and past the size
//! cap the oldest history first (raw, then 5-minute, hourly, daily summaries). Deletion
//! goes server by server over the primary indexes, in small transactions so ingest keeps
//! its turn; each kind's horizon is recorded first, so no summary is ever recomputed
//! from data that is being removed.

use serverpulse_store::write_back::RowChanges;
use serverpulse_store::{RetentionOutcome, RetentionPolicy, StoreResult};

use crate::SqlStore;
use crate::rollups::Closed;
use crate::rows::db;
use serverpulse_store::history::{TIERS, bucket_of};

/// Rows deleted per transaction.
const CHUNK: i64 = 5_000;

impl SqlStore {
    /// Deletes raw samples (`width` 0) or one tier's buckets older than `cutoff`, after
    /// raising that kind's horizon to it. Returns the rows deleted.
    async fn delete_before(&self, width: i64, cutoff: i64) -> StoreResult<u64> {
        // Only the servers holding something that old, found in one statement (an index
        // probe each): usually none, since compaction keeps few rows and retention is
        // far older — a pass then costs no write per server.
        let servers: Vec<i64> = if width == 0 {
            sqlx::query_scalar(
                "SELECT s.id FROM servers s WHERE EXISTS (SELECT 1 FROM samples_by_server p \
                 WHERE p.server_id = s.id AND p.agent_time < $1) ORDER BY s.id",
            )
            .bind(cutoff)
        } else {
            sqlx::query_scalar(
                "SELECT s.id FROM servers s WHERE EXISTS (SELECT 1 FROM rollups r \
                 WHERE r.server_id = s.id AND r.width = $1 AND r.start <= $2 - $1) ORDER BY s.id",
            )
            .bind(width)
            .bind(cutoff)
        }
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        let mut tx = self.begin().await?;
        // An open 5-minute bucket is its raw samples: before those go, it is summed up
        // and folded into the coarser tiers (before the raw horizon passes it). Until
        // then no tier holds it, so the other kinds' retention leaves it be. Its samples
        // are read through their entries: every pending row is written out first.
        let mut written = RowChanges::default();
        if width == 0 {
            if let Some(write_back) = self.write_back() {
                let pending = crate::ingest::lock(write_back).servers();
                written = crate::written_back::write_out(&mut tx, Some(write_back), &pending).await?;
            }
            crate::rollups::close_open_in(&mut tx, None, i64::MIN, cutoff, Closed::Kept).await?;
        }
        sqlx::query(
            "INSERT INTO retention_horizons (width, horizon) VALUES ($1, $2) \
             ON CONFLICT (width) DO UPDATE SET horizon = CASE WHEN excluded.horizon > retention_horizons.horizon \
             THEN excluded.horizon ELSE retention_horizons.horizon END",
        )
        .bind(width)
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        crate::written_back::commit_with(tx, self.write_back(), written).await?;
        // Compacted samples go chunk by chunk, leaving their 5-minute summaries.
        let mut deleted = if width == 0 { self.cut_chunks_before(cutoff).await? } else { 0 };
        for server in servers {
            loop {
                let done = if width == 0 {
                    let mut tx = self.begin().await?;
                    let done = crate::samples_by_server::delete(&mut tx, server, i64::MIN, cutoff, CHUNK).await?;
                    tx.commit().await.map_err(db)?;
                    done
                } else {
                    sqlx::query(
                        "DELETE FROM rollups WHERE server_id = $1 AND width = $2 AND start IN (SELECT start FROM rollups \
                         WHERE server_id = $1 AND width = $2 AND start + $2 <= $3 LIMIT $4)",
                    )
                    .bind(server)
                    .bind(width)
                    .bind(cutoff)
                    .bind(CHUNK)
                    .execute(&self.writer)
                    .await
                    .map_err(db)?
                    .rows_affected()
                };
                deleted += done;
                if done < CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// The oldest moment `width`'s history still holds (raw: a sample; tiers: a bucket end).
    async fn oldest(&self, width: i64) -> StoreResult<Option<i64>> {
        if width == 0 {
            sqlx::query_scalar(
                "SELECT MIN(m) FROM (SELECT MIN(agent_time) AS m FROM samples_by_server \
                 UNION ALL SELECT MIN(start) FROM history_chunks) AS oldest",
            )
        } else {
            sqlx::query_scalar("SELECT MIN(start) + $1 FROM rollups WHERE width = $1").bind(width)
        }
        .fetch_one(&self.writer)
        .await
        .map_err(db)
    }

    pub(crate) async fn resolution_at(&self, from: i64) -> StoreResult<i64> {
        let horizons: std::collections::HashMap<i64, i64> =
            sqlx::query_as("SELECT width, horizon FROM retention_horizons")
                .fetch_all(&self.reader)
                .await
                .map_err(db)?
                .into_iter()
                .collect();
        let complete = |width: i64| horizons.get(&width).is_none_or(|horizon| from >= *horizon);
        Ok([0, TIERS[0], TIERS[1]].into_iter().find(|w| complete(*w)).unwrap_or(TIERS[2]))
    }

    pub(crate) async fn retain(&self, policy: &RetentionPolicy, now: i64) -> StoreResult<RetentionOutcome> {
        let mut outcome = RetentionOutcome::default();
        // Summaries first take in everything stored, before their sources thin out.
        self.refresh_dirty(None).await?;
        if policy.raw_ms > 0 {
            outcome.raw_deleted += self.delete_before(0, now - policy.raw_ms).await?;
        }
        for (width, keep) in TIERS.into_iter().zip([policy.five_minutes_ms, policy.hours_ms, policy.days_ms]) {
            if keep > 0 {
                outcome.rollups_deleted += self.delete_before(width, bucket_of(now - keep, width)).await?;
            }
        }
        outcome.bytes_used = crate::dialect::bytes_used(&self.writer).await?;
        // Over the cap: the oldest day of the finest history left goes, until under it.
        let kinds = [0, TIERS[0], TIERS[1], TIERS[2]];
        let mut kind = 0;
        while policy.max_bytes > 0 && outcome.bytes_used > policy.max_bytes && kind < kinds.len() {
            let width = kinds[kind];
            match self.oldest(width).await? {
                None => kind += 1,
                Some(oldest) => {
                    let cutoff = bucket_of(oldest, 86_400_000) + 86_400_000;
                    let deleted = self.delete_before(width, cutoff).await?;
                    if width == 0 {
                        outcome.raw_deleted += deleted;
                    } else {
                        outcome.rollups_deleted += deleted;
                    }
                    outcome.bytes_used = crate::dialect::bytes_used(&self.writer).await?;
                }
            }
        }
        if outcome.raw_deleted + outcome.rollups_deleted > 0 {
            crate::dialect::after_deleting(&self.writer).await?;
        }
        Ok(outcome)
    }
}
