//! Keeping the rollup tiers (5 min, 1 h, 1 d; migration 0006) current as samples land.
//!
//! Ingest marks the 5-minute buckets its samples (stored or re-rated) fall in as dirty,
//! in the transaction that stores them ([`mark_dirty`]); [`SqlStore::refresh_dirty`]
//! later recomputes each dirty bucket whole — the 5-minute one from its raw samples, each
//! coarser one from the finer buckets inside it — and clears the marks, in one
//! transaction. A bucket can never drift from a recomputation from scratch, and a crash
//! between the two loses no mark.

use std::collections::BTreeSet;

use crate::dialect::Conn;
use serverpulse_store::history::{COLUMNS, Filling, TIERS, bucket_of, charted};
use serverpulse_store::{Sample, ServerId, StoreResult};

use crate::rows::db;

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
                "MIN({c}_min), MAX({c}_max), SUM({c}_sum), CAST(SUM({c}_n) AS BIGINT), (SELECT {c}_last FROM rollups \
                 WHERE server_id = {server} AND width = {finer} AND start >= {start} AND start < {end} \
                 ORDER BY start DESC LIMIT 1)"
            )
        })
        .collect();
    sql.push_str(&format!(
        "DELETE FROM rollups WHERE server_id = {server} AND width = {width} AND start = {start};\n\
         INSERT INTO rollups (server_id, width, start, samples, {columns}) \
         SELECT {server}, {width}, {start}, CAST(SUM(samples) AS BIGINT), {aggregates} FROM rollups \
         WHERE server_id = {server} AND width = {finer} AND start >= {start} AND start < {end} HAVING COUNT(*) > 0;\n",
        columns = aggregate_columns(),
        aggregates = aggregates.join(", "),
    ));
}

/// Marks the 5-minute buckets holding `times` (agent time) of `server` for refreshing.
pub(crate) async fn mark_dirty(conn: &mut Conn, server: ServerId, times: &BTreeSet<i64>) -> StoreResult<()> {
    let starts: BTreeSet<i64> = times.iter().map(|t| bucket_of(*t, TIERS[0])).collect();
    if starts.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = starts.iter().map(|s| format!("({server}, {s})")).collect();
    let sql =
        format!("INSERT INTO rollup_dirty (server_id, start) VALUES {} ON CONFLICT DO NOTHING", values.join(", "));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

/// Writes the 5-minute summaries of the `buckets` listed from `samples` (one server's,
/// in agent time, every sample of those buckets), where none is stored yet: what
/// retention leaves of compacted hours whose samples it removes.
pub(crate) async fn write_summaries(
    conn: &mut Conn,
    server: ServerId,
    samples: &[Sample],
    buckets: &BTreeSet<i64>,
) -> StoreResult<()> {
    let width = TIERS[0];
    let mut filled: std::collections::BTreeMap<i64, Filling> = std::collections::BTreeMap::new();
    for s in samples {
        let start = bucket_of(s.at, width);
        if buckets.contains(&start) {
            filled.entry(start).or_default().add_sample(s.at, charted(s));
        }
    }
    let placeholders: Vec<String> = (1..=4 + 5 * COLUMNS.len()).map(|i| format!("${i}")).collect();
    let placeholders = placeholders.join(", ");
    let sql = format!(
        "INSERT INTO rollups (server_id, width, start, samples, {}) VALUES ({placeholders}) ON CONFLICT DO NOTHING",
        aggregate_columns()
    );
    for (start, filling) in filled {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(server)
            .bind(width)
            .bind(start)
            .bind(i64::try_from(filling.samples).unwrap_or(i64::MAX));
        for (i, summary) in filling.metrics.iter().enumerate() {
            let present = summary.n > 0;
            query = query
                .bind(summary.min)
                .bind(summary.max)
                .bind(present.then_some(summary.sum))
                .bind(i64::try_from(summary.n).unwrap_or(i64::MAX))
                .bind(filling.newest.and_then(|(_, last)| last[i]));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Dirty buckets taken per refresh transaction: small, so ingest's commits interleave.
const REFRESH_BATCH: i64 = 256;

impl crate::SqlStore {
    /// Recomputes the dirty buckets and clears their marks; returns how many were done.
    pub(crate) async fn refresh_dirty(&self, only: Option<ServerId>) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.begin().await?;
            let dirty: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT server_id, start FROM rollup_dirty WHERE $1 IS NULL OR server_id = $1 \
                 ORDER BY server_id, start LIMIT $2",
            )
            .bind(only)
            .bind(REFRESH_BATCH)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            if dirty.is_empty() {
                return Ok(total);
            }
            let mut by_server: std::collections::BTreeMap<i64, BTreeSet<i64>> = std::collections::BTreeMap::new();
            for (server, start) in &dirty {
                by_server.entry(*server).or_default().insert(*start);
            }
            for (server, starts) in &by_server {
                crate::dialect::lock_server(&mut tx, *server).await?;
                refresh(&mut tx, *server, starts).await?;
                let list: Vec<String> = starts.iter().map(i64::to_string).collect();
                let sql =
                    format!("DELETE FROM rollup_dirty WHERE server_id = {server} AND start IN ({})", list.join(","));
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            total += dirty.len() as u64;
            if (dirty.len() as i64) < REFRESH_BATCH {
                return Ok(total);
            }
        }
    }
}

/// Recomputes every bucket, in every tier, that holds one of `times` (agent time): one
/// round trip to SQLite for all of them.
pub(crate) async fn refresh(conn: &mut Conn, server: ServerId, times: &BTreeSet<i64>) -> StoreResult<()> {
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
