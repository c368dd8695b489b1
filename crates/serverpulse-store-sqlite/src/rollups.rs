//! Keeping the rollup tiers (5 min, 1 h, 1 d; migration 0006) current as samples land.
//!
//! A bucket touched by a stored or re-rated sample is recomputed whole — the 5-minute one
//! from its raw samples, each coarser one from the finer buckets inside it — in the
//! transaction that stored the sample. That is a handful of rows per report, and a
//! bucket can never drift from what a recomputation from scratch gives.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serverpulse_store::{ServerId, StoreResult};
use sqlx::SqliteConnection;

use crate::rows::db;

/// Bucket widths in ms, finest first; each divides the next.
pub(crate) const TIERS: [i64; 3] = [300_000, 3_600_000, 86_400_000];

/// Columns of `performance_logs` a chart draws, in `ChartMetric::ALL` order.
pub(crate) const COLUMNS: [&str; 8] = [
    "cpu_usage",
    "ram_usage",
    "disk_usage",
    "load_average",
    "network_rx_rate",
    "network_tx_rate",
    "disk_io_read_rate",
    "disk_io_write_rate",
];

/// The start of the bucket of width `width` holding `at`.
pub(crate) fn bucket_of(at: i64, width: i64) -> i64 {
    at - at.rem_euclid(width)
}

fn aggregate_columns() -> String {
    COLUMNS.iter().map(|c| format!("{c}_min, {c}_max, {c}_sum, {c}_n")).collect::<Vec<_>>().join(", ")
}

/// `INSERT` of one bucket of the finest tier from raw samples (`?1` server, `?2` width,
/// `?3` start); nothing when the bucket holds no sample.
fn from_raw_sql() -> String {
    let aggregates: Vec<String> = COLUMNS.iter().map(|c| format!("MIN({c}), MAX({c}), SUM({c}), COUNT({c})")).collect();
    format!(
        "INSERT INTO rollups (server_id, width, start, samples, {}) \
         SELECT ?1, ?2, ?3, COUNT(*), {} FROM performance_logs \
         WHERE server_id = ?1 AND agent_time >= ?3 AND agent_time < ?3 + ?2 HAVING COUNT(*) > 0",
        aggregate_columns(),
        aggregates.join(", ")
    )
}

/// `INSERT` of one bucket of a coarser tier from the finer tier (`?4` its width).
fn from_tier_sql() -> String {
    let aggregates: Vec<String> =
        COLUMNS.iter().map(|c| format!("MIN({c}_min), MAX({c}_max), SUM({c}_sum), SUM({c}_n)")).collect();
    format!(
        "INSERT INTO rollups (server_id, width, start, samples, {}) \
         SELECT ?1, ?2, ?3, SUM(samples), {} FROM rollups \
         WHERE server_id = ?1 AND width = ?4 AND start >= ?3 AND start < ?3 + ?2 HAVING COUNT(*) > 0",
        aggregate_columns(),
        aggregates.join(", ")
    )
}

/// Recomputes every bucket, in every tier, that holds one of `times` (agent time).
pub(crate) async fn refresh(conn: &mut SqliteConnection, server: ServerId, times: &BTreeSet<i64>) -> StoreResult<()> {
    let mut starts: BTreeSet<i64> = times.iter().map(|t| bucket_of(*t, TIERS[0])).collect();
    static FROM_RAW: LazyLock<String> = LazyLock::new(from_raw_sql);
    static FROM_TIER: LazyLock<String> = LazyLock::new(from_tier_sql);
    for (level, width) in TIERS.into_iter().enumerate() {
        if level > 0 {
            starts = starts.iter().map(|s| bucket_of(*s, width)).collect();
        }
        for start in &starts {
            sqlx::query("DELETE FROM rollups WHERE server_id = ? AND width = ? AND start = ?")
                .bind(server)
                .bind(width)
                .bind(start)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            let insert = if level == 0 {
                sqlx::query(FROM_RAW.as_str()).bind(server).bind(width).bind(start)
            } else {
                sqlx::query(FROM_TIER.as_str()).bind(server).bind(width).bind(start).bind(TIERS[level - 1])
            };
            insert.execute(&mut *conn).await.map_err(db)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn buckets_floor_towards_the_past() {
        assert_eq!(super::bucket_of(299_999, 300_000), 0);
        assert_eq!(super::bucket_of(300_000, 300_000), 300_000);
        assert_eq!(super::bucket_of(-1, 300_000), -300_000);
    }
}
