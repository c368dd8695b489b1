//! Keeping the rollup tiers (5 min, 1 h, 1 d; migration 0006) current as samples land.
//!
//! A bucket touched by a stored or re-rated sample is recomputed whole — the 5-minute one
//! from its raw samples, each coarser one from the finer buckets inside it — in the
//! transaction that stored the sample. That is a handful of rows per report, and a
//! bucket can never drift from what a recomputation from scratch gives.

use std::collections::BTreeSet;

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
    COLUMNS.iter().map(|c| format!("{c}_min, {c}_max, {c}_sum, {c}_n, {c}_last")).collect::<Vec<_>>().join(", ")
}

/// Recomputes one bucket of the finest tier from raw samples; nothing stays when the
/// bucket holds no sample. Only integers are spliced in.
fn from_raw(sql: &mut String, server: ServerId, width: i64, start: i64, horizon: i64) {
    let end = start + width;
    let aggregates: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "MIN({c}), MAX({c}), SUM({c}), COUNT({c}), (SELECT {c} FROM performance_logs WHERE server_id = {server} \
                 AND agent_time >= {start} AND agent_time < {end} ORDER BY agent_time DESC, id DESC LIMIT 1)"
            )
        })
        .collect();
    if start < horizon {
        return; // its raw samples may be gone: the bucket stays as it was summed up
    }
    sql.push_str(&format!(
        "DELETE FROM rollups WHERE server_id = {server} AND width = {width} AND start = {start};\n\
         INSERT INTO rollups (server_id, width, start, samples, {columns}) \
         SELECT {server}, {width}, {start}, COUNT(*), {aggregates} FROM performance_logs \
         WHERE server_id = {server} AND agent_time >= {start} AND agent_time < {end} HAVING COUNT(*) > 0;\n",
        columns = aggregate_columns(),
        aggregates = aggregates.join(", "),
    ));
}

/// Recomputes one bucket of a coarser tier from the finer tier below it.
fn from_tier(sql: &mut String, server: ServerId, width: i64, start: i64, finer: i64, horizon: i64) {
    if start < horizon {
        return; // the finer buckets may be gone: this one stays as it was summed up
    }
    let end = start + width;
    let aggregates: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "MIN({c}_min), MAX({c}_max), SUM({c}_sum), SUM({c}_n), (SELECT {c}_last FROM rollups \
                 WHERE server_id = {server} AND width = {finer} AND start >= {start} AND start < {end} \
                 ORDER BY start DESC LIMIT 1)"
            )
        })
        .collect();
    sql.push_str(&format!(
        "DELETE FROM rollups WHERE server_id = {server} AND width = {width} AND start = {start};\n\
         INSERT INTO rollups (server_id, width, start, samples, {columns}) \
         SELECT {server}, {width}, {start}, SUM(samples), {aggregates} FROM rollups \
         WHERE server_id = {server} AND width = {finer} AND start >= {start} AND start < {end} HAVING COUNT(*) > 0;\n",
        columns = aggregate_columns(),
        aggregates = aggregates.join(", "),
    ));
}

/// Recomputes every bucket, in every tier, that holds one of `times` (agent time): one
/// round trip to SQLite for all of them.
pub(crate) async fn refresh(conn: &mut SqliteConnection, server: ServerId, times: &BTreeSet<i64>) -> StoreResult<()> {
    if times.is_empty() {
        return Ok(());
    }
    let horizons: std::collections::HashMap<i64, i64> = sqlx::query_as("SELECT width, horizon FROM retention_horizons")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .into_iter()
        .collect();
    let horizon = |width: i64| horizons.get(&width).copied().unwrap_or(i64::MIN);
    let mut sql = String::new();
    let mut starts: BTreeSet<i64> = times.iter().map(|t| bucket_of(*t, TIERS[0])).collect();
    for start in &starts {
        from_raw(&mut sql, server, TIERS[0], *start, horizon(0));
    }
    for pair in TIERS.windows(2) {
        let (finer, width) = (pair[0], pair[1]);
        starts = starts.iter().map(|s| bucket_of(*s, width)).collect();
        for start in &starts {
            from_tier(&mut sql, server, width, *start, finer, horizon(finer));
        }
    }
    if !sql.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(db)?;
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
