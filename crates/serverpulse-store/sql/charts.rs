//! What the dashboard reads in bulk: history reduced to chart buckets (min, max, mean
//! and last per metric), and per-server counts for the fleet overview.
//!
//! A chart merges three sources into its buckets, in Rust: the rollup tier that tiles
//! the request when there is one (with the server's open 5-minute bucket summed up from
//! its raw samples, since no tier takes it in before it closes), else the raw samples;
//! and, for hours compacted into chunks (which keep no 5-minute summaries), the samples
//! decoded from those chunks.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use crate::dialect::DbRow;
use serverpulse_store::{ChartBucket, FleetCounts, ServerId, StoreResult};
use sqlx::Row;

use crate::SqlStore;
use crate::rows::db;
use crate::samples_by_server::SampleIds;
use serverpulse_store::history::{COLUMNS, ChartPlan, Filling, TIERS, bucket_of};

fn charted_row(row: &DbRow) -> StoreResult<[Option<f64>; 8]> {
    let mut values = [None; 8];
    for (value, column) in values.iter_mut().zip(COLUMNS) {
        *value = row.try_get(column).map_err(db)?;
    }
    Ok(values)
}

/// Merges one summed-up tier bucket (a `rollups` row) into `filling`.
fn add_tier_row(filling: &mut Filling, row: &DbRow) -> StoreResult<()> {
    let samples: i64 = row.try_get("samples").map_err(db)?;
    filling.samples += u64::try_from(samples).unwrap_or(0);
    let mut last = [None; 8];
    // Column names per metric: min, max, sum, n, last.
    static NAMES: LazyLock<Vec<[String; 5]>> = LazyLock::new(|| {
        COLUMNS.iter().map(|c| ["min", "max", "sum", "n", "last"].map(|part| format!("{c}_{part}"))).collect()
    });
    for ((summary, [min, max, sum, n, last_name]), last) in filling.metrics.iter_mut().zip(NAMES.iter()).zip(&mut last)
    {
        let n: Option<i64> = row.try_get(n.as_str()).map_err(db)?;
        let n = n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        let min: Option<f64> = row.try_get(min.as_str()).map_err(db)?;
        let max: Option<f64> = row.try_get(max.as_str()).map_err(db)?;
        let sum: Option<f64> = row.try_get(sum.as_str()).map_err(db)?;
        if let (Some(min), Some(max), Some(sum), true) = (min, max, sum, n > 0) {
            summary.merge(min, max, sum, n);
        }
        *last = row.try_get(last_name.as_str()).map_err(db)?;
    }
    filling.take_newest(row.try_get("start").map_err(db)?, last);
    Ok(())
}

/// The charted figures of `server`'s raw samples (`ids`) in `[from, to)` of agent time,
/// in (time, arrival) order.
async fn raw_rows(
    conn: &mut crate::dialect::Conn,
    server: ServerId,
    ids: &SampleIds,
    from: i64,
    to: i64,
) -> StoreResult<Vec<DbRow>> {
    fn sql(condition: &str) -> String {
        format!(
            "SELECT agent_time, {} FROM performance_logs WHERE {condition} ORDER BY agent_time, id",
            COLUMNS.join(", ")
        )
    }
    static PLAIN: LazyLock<String> = LazyLock::new(|| sql(&SampleIds::of(None, 0).condition()));
    let query = match ids.is_plain() {
        true => sqlx::query(sqlx::AssertSqlSafe(PLAIN.as_str())),
        false => sqlx::query(sqlx::AssertSqlSafe(sql(&ids.condition()))).persistent(false),
    };
    query.bind(server).bind(from).bind(to).fetch_all(&mut *conn).await.map_err(db)
}

impl SqlStore {
    pub(crate) async fn chart_buckets(
        &self,
        server: ServerId,
        from: i64,
        to: i64,
        step: i64,
    ) -> StoreResult<Vec<ChartBucket>> {
        let plan = ChartPlan::new(from, to, step);
        let ids = SampleIds::of(self.write_back(), server);
        let pending = crate::written_back::pending_row(self.write_back(), server);
        // One read transaction: one snapshot of rows, summaries and chunks.
        let mut snapshot = self.snapshot().await?;
        let mut buckets: BTreeMap<i64, Filling> = BTreeMap::new();
        let mut summed = std::collections::BTreeSet::new();
        match plan.tier {
            Some(width) => {
                // The server's open 5-minute bucket is in no tier (any 5-minute row of it
                // is out of date), nor is one its pending row closed but has not written:
                // each is summed up beside the row or in the write-back, or else from its
                // raw samples — what closing it writes.
                let stored: (Option<i64>, Option<Vec<u8>>) =
                    sqlx::query_as("SELECT rollup_open, rollup_open_summary FROM servers WHERE id = $1")
                        .bind(server)
                        .fetch_optional(&mut *snapshot)
                        .await
                        .map_err(db)?
                        .unwrap_or_default();
                let untiered = crate::written_back::untiered(pending.as_deref(), stored);
                let rows = sqlx::query(
                    "SELECT * FROM rollups WHERE server_id = $1 AND width = $2 AND start >= $3 AND start < $4 ORDER BY start",
                )
                .bind(server)
                .bind(width)
                .bind(from)
                .bind(to)
                .fetch_all(&mut *snapshot)
                .await
                .map_err(db)?;
                for row in &rows {
                    let start: i64 = row.try_get("start").map_err(db)?;
                    if width == TIERS[0] && untiered.iter().any(|(bucket, _)| *bucket == start) {
                        continue;
                    }
                    summed.insert(start);
                    add_tier_row(buckets.entry(bucket_of(start, plan.step)).or_default(), row)?;
                }
                // After the rest: they are the server's newest.
                for (start, filling) in untiered.into_iter().filter(|(start, _)| plan.counts(*start)) {
                    let bucket = bucket_of(start, plan.step);
                    match filling {
                        Some(filling) => buckets.entry(bucket).or_default().merge(&filling),
                        None => {
                            for row in &raw_rows(&mut snapshot, server, &ids, start, start + TIERS[0]).await? {
                                let at = row.try_get("agent_time").map_err(db)?;
                                buckets.entry(bucket).or_default().add_sample(at, charted_row(row)?);
                            }
                        }
                    }
                }
            }
            None => {
                for row in &raw_rows(&mut snapshot, server, &ids, from, to).await? {
                    let at: i64 = row.try_get("agent_time").map_err(db)?;
                    buckets.entry(bucket_of(at, plan.step)).or_default().add_sample(at, charted_row(row)?);
                }
            }
        }
        // Compacted hours have no 5-minute summaries (but where retention cut a chunk,
        // the summary it wrote stands for the whole bucket): their samples stand in.
        if plan.reads_chunks() {
            let samples = Self::chunk_samples(&mut snapshot, server, from, to).await?;
            plan.add_chunk_samples(&mut buckets, &samples, &summed);
        }
        Ok(buckets.into_iter().map(|(start, filling)| filling.finish(start)).collect())
    }

    pub(crate) async fn counts_per_server(&self) -> StoreResult<HashMap<ServerId, FleetCounts>> {
        let mut counts: HashMap<ServerId, FleetCounts> = HashMap::new();
        let alerts =
            sqlx::query("SELECT server_id, COUNT(*) AS n FROM alerts WHERE status <> 'resolved' GROUP BY server_id")
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
        for row in alerts {
            let n: i64 = row.try_get("n").map_err(db)?;
            counts.entry(row.try_get("server_id").map_err(db)?).or_default().open_alerts =
                u32::try_from(n).unwrap_or(u32::MAX);
        }
        let failed = sqlx::query(
            "SELECT server_id, COUNT(*) AS n FROM service_states WHERE status = 'failed' GROUP BY server_id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        for row in failed {
            let n: i64 = row.try_get("n").map_err(db)?;
            counts.entry(row.try_get("server_id").map_err(db)?).or_default().failed_services =
                u32::try_from(n).unwrap_or(u32::MAX);
        }
        Ok(counts)
    }
}
