//! What the dashboard reads in bulk: history reduced to chart buckets (min, max, mean
//! and last per metric), and per-server counts for the fleet overview.
//!
//! A chart merges three sources into its buckets, in Rust: the rollup tier that tiles
//! the request when there is one, else the raw samples; and, for hours compacted into
//! chunks (which keep no 5-minute summaries), the samples decoded from those chunks.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serverpulse_store::{Band, ChartBucket, FleetCounts, Sample, ServerId, StoreResult};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::rollups::{COLUMNS, TIERS, bucket_of};
use crate::rows::db;

/// One metric's figures merged so far in a bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    min: Option<f64>,
    max: Option<f64>,
    sum: f64,
    n: u64,
}

impl Summary {
    fn merge(&mut self, min: f64, max: f64, sum: f64, n: u64) {
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
        self.sum += sum;
        self.n += n;
    }
}

/// A chart bucket being filled: per metric a [`Summary`], and the values of the newest
/// sample (or summed-up bucket) seen, by agent time.
#[derive(Debug, Default)]
struct Filling {
    samples: u64,
    metrics: [Summary; 8],
    newest: Option<(i64, [Option<f64>; 8])>,
}

impl Filling {
    fn take_newest(&mut self, at: i64, last: [Option<f64>; 8]) {
        // Fed in (time, arrival) order: among equal times the later arrival is newest.
        if self.newest.is_none_or(|(seen, _)| at >= seen) {
            self.newest = Some((at, last));
        }
    }

    fn add_sample(&mut self, at: i64, values: [Option<f64>; 8]) {
        self.samples += 1;
        for (summary, value) in self.metrics.iter_mut().zip(values) {
            if let Some(v) = value {
                summary.merge(v, v, v, 1);
            }
        }
        self.take_newest(at, values);
    }

    fn finish(self, start: i64) -> ChartBucket {
        let mut bands = [Band::default(); 8];
        for (i, (band, summary)) in bands.iter_mut().zip(self.metrics).enumerate() {
            *band = Band {
                min: summary.min,
                max: summary.max,
                avg: (summary.n > 0).then(|| summary.sum / summary.n as f64),
                last: self.newest.and_then(|(_, last)| last[i]),
            };
        }
        ChartBucket { start, samples: u32::try_from(self.samples).unwrap_or(u32::MAX), bands }
    }
}

/// The charted figures of a sample, in [`COLUMNS`] order.
fn charted(s: &Sample) -> [Option<f64>; 8] {
    [
        s.cpu_usage,
        s.memory_usage,
        s.disk_usage,
        s.load_average,
        s.network_rx_rate,
        s.network_tx_rate,
        s.disk_io_read_rate,
        s.disk_io_write_rate,
    ]
}

fn charted_row(row: &SqliteRow) -> StoreResult<[Option<f64>; 8]> {
    let mut values = [None; 8];
    for (value, column) in values.iter_mut().zip(COLUMNS) {
        *value = row.try_get(column).map_err(db)?;
    }
    Ok(values)
}

/// Merges one summed-up tier bucket (a `rollups` row) into `filling`.
fn add_tier_row(filling: &mut Filling, row: &SqliteRow) -> StoreResult<()> {
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

impl SqliteStore {
    pub(crate) async fn chart_buckets(
        &self,
        server: ServerId,
        from: i64,
        to: i64,
        step: i64,
    ) -> StoreResult<Vec<ChartBucket>> {
        let step = step.max(1);
        let mut buckets: BTreeMap<i64, Filling> = BTreeMap::new();
        // The coarsest tier whose buckets tile the chart's exactly, when `from` is aligned.
        let tier = TIERS.iter().rev().find(|w| step % **w == 0 && from % **w == 0).copied();
        // Which samples count: by their own time, or by the start of their tier bucket.
        let counted = |at: i64| {
            let at = tier.map_or(at, |width| bucket_of(at, width));
            at >= from && at < to
        };
        match tier {
            Some(width) => {
                let rows = sqlx::query(
                    "SELECT * FROM rollups WHERE server_id = ? AND width = ? AND start >= ? AND start < ? ORDER BY start",
                )
                .bind(server)
                .bind(width)
                .bind(from)
                .bind(to)
                .fetch_all(&self.reader)
                .await
                .map_err(db)?;
                for row in &rows {
                    let start: i64 = row.try_get("start").map_err(db)?;
                    add_tier_row(buckets.entry(bucket_of(start, step)).or_default(), row)?;
                }
            }
            None => {
                let columns = COLUMNS.join(", ");
                let sql = format!(
                    "SELECT agent_time, {columns} FROM performance_logs \
                     WHERE server_id = ? AND agent_time >= ? AND agent_time < ? ORDER BY agent_time, id"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(server)
                    .bind(from)
                    .bind(to)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db)?;
                for row in &rows {
                    let at: i64 = row.try_get("agent_time").map_err(db)?;
                    buckets.entry(bucket_of(at, step)).or_default().add_sample(at, charted_row(row)?);
                }
            }
        }
        // Compacted hours have no 5-minute summaries: their samples stand in.
        if tier.is_none_or(|width| width == TIERS[0]) {
            for sample in self.chunk_samples(server, from, to).await? {
                if counted(sample.at) {
                    buckets.entry(bucket_of(sample.at, step)).or_default().add_sample(sample.at, charted(&sample));
                }
            }
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
