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

use crate::batched::{Shapes, chunks, values_cte};
use crate::rows::db;

fn aggregate_columns() -> String {
    COLUMNS.iter().map(|c| format!("{c}_min, {c}_max, {c}_sum, {c}_n, {c}_last")).collect::<Vec<_>>().join(", ")
}

/// `WITH b(server_id, start) AS (VALUES …)`: the buckets one refresh recomputes.
/// Only integers are spliced in.
fn buckets_cte(buckets: &BTreeSet<(ServerId, i64)>) -> String {
    let values: Vec<String> = buckets.iter().map(|(server, start)| format!("({server}, {start})")).collect();
    format!("WITH b(server_id, start) AS (VALUES {})", values.join(", "))
}

/// Recomputes the `buckets` of tier `width` whole, in two statements whatever their
/// number: those of the finest tier from raw samples, the coarser ones from the tier
/// `finer` below. Buckets left empty go; buckets starting before `horizon` (their
/// sources may be gone) stay as they were summed up.
fn recompute(
    sql: &mut String,
    buckets: &BTreeSet<(ServerId, i64)>,
    width: i64,
    finer: Option<i64>,
    horizon: Option<i64>,
) {
    if buckets.is_empty() {
        return;
    }
    let cte = buckets_cte(buckets);
    let complete = horizon.map_or_else(|| "1 = 1".to_owned(), |h| format!("b.start >= {h}"));
    let (source, samples, aggregates) = match finer {
        None => {
            let aggregates: Vec<String> = COLUMNS
                .iter()
                .map(|c| {
                    format!(
                        "MIN(s.{c}), MAX(s.{c}), SUM(s.{c}), COUNT(s.{c}), (SELECT q.{c} FROM performance_logs q \
                         WHERE q.server_id = b.server_id AND q.agent_time >= b.start AND q.agent_time < b.start + {width} \
                         ORDER BY q.agent_time DESC, q.id DESC LIMIT 1)"
                    )
                })
                .collect();
            let source = format!(
                "performance_logs s ON s.server_id = b.server_id AND s.agent_time >= b.start \
                 AND s.agent_time < b.start + {width}"
            );
            (source, "COUNT(*)".to_owned(), aggregates)
        }
        Some(finer) => {
            let aggregates: Vec<String> = COLUMNS
                .iter()
                .map(|c| {
                    format!(
                        "MIN(s.{c}_min), MAX(s.{c}_max), SUM(s.{c}_sum), CAST(SUM(s.{c}_n) AS BIGINT), \
                         (SELECT q.{c}_last FROM rollups q WHERE q.server_id = b.server_id AND q.width = {finer} \
                         AND q.start >= b.start AND q.start < b.start + {width} ORDER BY q.start DESC LIMIT 1)"
                    )
                })
                .collect();
            let source = format!(
                "rollups s ON s.server_id = b.server_id AND s.width = {finer} AND s.start >= b.start \
                 AND s.start < b.start + {width}"
            );
            (source, "CAST(SUM(s.samples) AS BIGINT)".to_owned(), aggregates)
        }
    };
    sql.push_str(&format!(
        "{cte} DELETE FROM rollups WHERE width = {width} \
         AND (server_id, start) IN (SELECT server_id, start FROM b WHERE {complete});\n\
         {cte} INSERT INTO rollups (server_id, width, start, samples, {columns}) \
         SELECT b.server_id, {width}, b.start, {samples}, {aggregates} FROM b JOIN {source} \
         WHERE {complete} GROUP BY b.server_id, b.start;\n",
        columns = aggregate_columns(),
        aggregates = aggregates.join(", "),
    ));
}

/// Marks the 5-minute buckets holding the samples `(server, agent time)` for refreshing.
pub(crate) async fn mark_dirty(conn: &mut Conn, samples: &BTreeSet<(ServerId, i64)>) -> StoreResult<()> {
    let buckets: BTreeSet<(ServerId, i64)> = samples.iter().map(|(s, t)| (*s, bucket_of(*t, TIERS[0]))).collect();
    let buckets: Vec<(ServerId, i64)> = buckets.into_iter().collect();
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(buckets.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            format!(
                "{}INSERT INTO rollup_dirty (server_id, start) SELECT server_id, start FROM d \
                 WHERE server_id IS NOT NULL ON CONFLICT DO NOTHING",
                values_cte("d", &[("server_id", "BIGINT"), ("start", "BIGINT")], rows)
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let bucket = chunk.row(&buckets, i);
            query = query.bind(bucket.map(|(server, _)| *server)).bind(bucket.map(|(_, start)| *start));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// The statement merging `rows` samples into the summaries of every tier: one row of
/// `m` per sample (server, agent time, each charted column's value), crossed with the
/// tiers' widths, each sample opening its buckets or merging into them (min, max, sum
/// and count merged, the last replaced).
fn merge_sql(rows: usize) -> String {
    let mut columns: Vec<(&str, &str)> = vec![("server_id", "BIGINT"), ("at", "BIGINT")];
    columns.extend(COLUMNS.iter().map(|c| (*c, REAL)));
    let widths: Vec<String> = TIERS.iter().map(|w| format!("(CAST({w} AS BIGINT))")).collect();
    let opened: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("m.{c}, m.{c}, m.{c}, CASE WHEN m.{c} IS NULL THEN 0 ELSE 1 END, m.{c}"))
        .collect();
    let merged: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "{c}_min = CASE WHEN rollups.{c}_min IS NULL OR excluded.{c}_min < rollups.{c}_min \
                 THEN excluded.{c}_min ELSE rollups.{c}_min END, \
                 {c}_max = CASE WHEN rollups.{c}_max IS NULL OR excluded.{c}_max > rollups.{c}_max \
                 THEN excluded.{c}_max ELSE rollups.{c}_max END, \
                 {c}_sum = CASE WHEN excluded.{c}_sum IS NULL THEN rollups.{c}_sum \
                 WHEN rollups.{c}_sum IS NULL THEN excluded.{c}_sum ELSE rollups.{c}_sum + excluded.{c}_sum END, \
                 {c}_n = rollups.{c}_n + excluded.{c}_n, {c}_last = excluded.{c}_last"
            )
        })
        .collect();
    // The bucket's start rounds agent time down (towards the past, as `bucket_of` does).
    format!(
        "{}, w(width) AS (VALUES {}) \
         INSERT INTO rollups (server_id, width, start, samples, {aggregates}) \
         SELECT m.server_id, w.width, m.at - ((m.at % w.width) + w.width) % w.width, 1, {opened} \
         FROM m CROSS JOIN w WHERE m.server_id IS NOT NULL \
         ON CONFLICT (server_id, width, start) DO UPDATE SET samples = rollups.samples + excluded.samples, \
         {merged}",
        values_cte("m", &columns, rows).trim_end(),
        widths.join(", "),
        aggregates = aggregate_columns(),
        opened = opened.join(", "),
        merged = merged.join(", "),
    )
}

/// A sample merged as it comes: its server, agent time and charted figures.
type Appended = (ServerId, i64, [Option<f64>; COLUMNS.len()]);

/// Takes samples newer than everything stored of their servers into the summaries of
/// every tier as they stand, in one statement per [`crate::batched::MAX_ROWS`] samples.
/// (Samples landing among stored ones mark their buckets instead, for
/// [`SqlStore::refresh_dirty`].) A bucket also marked meanwhile is recomputed whole all
/// the same.
///
/// A statement may not touch one summary twice (PostgreSQL refuses it), so the samples
/// go in rounds: a server's first sample (in agent time) in the first, its second in
/// the next, and so on — a batch rarely holds two of one server.
pub(crate) async fn merge_appended(conn: &mut Conn, samples: &[(ServerId, &Sample)]) -> StoreResult<()> {
    let mut ordered: Vec<&(ServerId, &Sample)> = samples.iter().collect();
    // In agent time; among equal times the later arrival is newest (and merged last).
    ordered.sort_by_key(|(_, s)| s.at);
    let mut rounds: Vec<Vec<Appended>> = Vec::new();
    let mut taken: std::collections::HashMap<ServerId, usize> = std::collections::HashMap::new();
    for (server, sample) in ordered {
        let round = taken.entry(*server).or_default();
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push((*server, sample.at, charted(sample)));
        *round += 1;
    }
    static TEXTS: Shapes = Shapes::new();
    for round in &rounds {
        for chunk in chunks(round.len()) {
            let mut query = sqlx::query(TEXTS.text(chunk.shape, merge_sql));
            for i in 0..chunk.shape {
                let row = chunk.row(round, i);
                query = query.bind(row.map(|(server, ..)| *server)).bind(row.map(|(_, at, _)| *at));
                for m in 0..COLUMNS.len() {
                    query = query.bind(row.and_then(|(.., values)| values[m]));
                }
            }
            query.execute(&mut *conn).await.map_err(db)?;
        }
    }
    Ok(())
}

/// A real column's type, as both databases read it.
const REAL: &str = "DOUBLE PRECISION";

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

/// Dirty buckets taken per refresh transaction: enough that a fleet's minute of marks
/// takes a few statements, few enough that ingest's commits interleave.
const REFRESH_BATCH: i64 = 4_096;

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
            let servers: BTreeSet<ServerId> = dirty.iter().map(|(server, _)| *server).collect();
            crate::dialect::lock_servers(&mut tx, &servers).await?;
            let buckets: BTreeSet<(ServerId, i64)> = dirty.iter().copied().collect();
            let mut sql = refresh(&mut tx, &buckets).await?;
            sql.push_str(&format!(
                "{} DELETE FROM rollup_dirty WHERE (server_id, start) IN (SELECT server_id, start FROM b);\n",
                buckets_cte(&buckets)
            ));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            total += dirty.len() as u64;
            if (dirty.len() as i64) < REFRESH_BATCH {
                return Ok(total);
            }
        }
    }
}

/// The SQL recomputing every bucket, in every tier, that holds one of the 5-minute
/// `buckets` ((server, start) pairs): a few statements whatever their number.
pub(crate) async fn refresh(conn: &mut Conn, buckets: &BTreeSet<(ServerId, i64)>) -> StoreResult<String> {
    let horizons: std::collections::HashMap<i64, i64> = sqlx::query_as("SELECT width, horizon FROM retention_horizons")
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .into_iter()
        .collect();
    let horizon = |width: i64| horizons.get(&width).copied();
    let mut sql = String::new();
    let mut tier: BTreeSet<(ServerId, i64)> = buckets.iter().map(|(s, t)| (*s, bucket_of(*t, TIERS[0]))).collect();
    recompute(&mut sql, &tier, TIERS[0], None, horizon(0));
    for pair in TIERS.windows(2) {
        let (finer, width) = (pair[0], pair[1]);
        tier = tier.iter().map(|(s, t)| (*s, bucket_of(*t, width))).collect();
        recompute(&mut sql, &tier, width, Some(finer), horizon(finer));
    }
    Ok(sql)
}
