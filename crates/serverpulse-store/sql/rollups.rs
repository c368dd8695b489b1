//! Keeping the rollup tiers (5 min, 1 h, 1 d; migration 0006) current as samples land.
//!
//! A server's newest 5-minute bucket stays *open* (the server's `rollup_open`,
//! migration 0014) while samples are appended to it: no tier holds it, and ingest sums
//! it up beside the server's row (`rollup_open_summary`, migration 0016), which it
//! rewrites for every report anyway. When a later bucket opens, the open one is
//! [`close`]d: its 5-minute summary is written (from its raw samples where the running
//! one is not known) and folded into the hourly and daily summaries holding it, so each
//! tier takes a bucket once instead of every sample (where rows are written back, a
//! bucket a pending row closed waits in it until due: see
//! [`serverpulse_store::write_back`]). A chart sums the open bucket up
//! from its raw samples itself; compaction and raw retention close a bucket before its
//! raw samples go.
//!
//! Samples landing among stored ones mark their 5-minute buckets as dirty instead, in
//! the transaction that stores them ([`mark_dirty`]); [`SqlStore::refresh_dirty`]
//! later recomputes each dirty bucket whole — the 5-minute one from its raw samples, each
//! coarser one from the finer buckets inside it (leaving out the open bucket) — and
//! clears the marks, in one transaction. A bucket can never drift from a recomputation
//! from scratch, and a crash between the two loses no mark.

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
                         WHERE q.id = (SELECT n.id FROM samples_by_server n WHERE n.server_id = b.server_id \
                         AND n.agent_time >= b.start AND n.agent_time < b.start + {width} \
                         ORDER BY n.agent_time DESC, n.id DESC LIMIT 1))"
                    )
                })
                .collect();
            let source = format!(
                "samples_by_server e ON e.server_id = b.server_id AND e.agent_time >= b.start \
                 AND e.agent_time < b.start + {width} JOIN performance_logs s ON s.id = e.id"
            );
            (source, "COUNT(*)".to_owned(), aggregates)
        }
        Some(finer) => {
            // A server's open 5-minute bucket is not in the coarser tiers yet.
            let closed = |alias: &str| {
                if finer == TIERS[0] {
                    format!(
                        " AND NOT EXISTS (SELECT 1 FROM servers o WHERE o.id = {alias}.server_id \
                         AND o.rollup_open = {alias}.start)"
                    )
                } else {
                    String::new()
                }
            };
            let aggregates: Vec<String> = COLUMNS
                .iter()
                .map(|c| {
                    format!(
                        "MIN(s.{c}_min), MAX(s.{c}_max), SUM(s.{c}_sum), CAST(SUM(s.{c}_n) AS BIGINT), \
                         (SELECT q.{c}_last FROM rollups q WHERE q.server_id = b.server_id AND q.width = {finer} \
                         AND q.start >= b.start AND q.start < b.start + {width}{} ORDER BY q.start DESC LIMIT 1)",
                        closed("q")
                    )
                })
                .collect();
            let source = format!(
                "rollups s ON s.server_id = b.server_id AND s.width = {finer} AND s.start >= b.start \
                 AND s.start < b.start + {width}{}",
                closed("s")
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

/// `SET` assignments folding the summary `excluded` into the stored one (`rollups`):
/// minimum, maximum, sum and count merged, the last value replaced (the newer one is
/// always the one merged).
fn merge_assignments() -> String {
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
    format!("samples = rollups.samples + excluded.samples, {}", merged.join(", "))
}

/// The statement folding `rows` closed 5-minute buckets (`c`: server, start) into the
/// coarser tiers' buckets holding them.
fn close_sql(rows: usize) -> String {
    let widths: Vec<String> = TIERS[1..].iter().map(|w| format!("(CAST({w} AS BIGINT))")).collect();
    let taken: Vec<String> =
        COLUMNS.iter().map(|c| format!("f.{c}_min, f.{c}_max, f.{c}_sum, f.{c}_n, f.{c}_last")).collect();
    format!(
        "{}, w(width) AS (VALUES {}) \
         INSERT INTO rollups (server_id, width, start, samples, {aggregates}) \
         SELECT f.server_id, w.width, f.start - ((f.start % w.width) + w.width) % w.width, f.samples, {taken} \
         FROM c JOIN rollups f ON f.server_id = c.server_id AND f.width = {finest} AND f.start = c.start \
         CROSS JOIN w WHERE c.server_id IS NOT NULL \
         ON CONFLICT (server_id, width, start) DO UPDATE SET {merged}",
        values_cte("c", &[("server_id", "BIGINT"), ("start", "BIGINT")], rows).trim_end(),
        widths.join(", "),
        aggregates = aggregate_columns(),
        taken = taken.join(", "),
        finest = TIERS[0],
        merged = merge_assignments(),
    )
}

/// A 5-minute bucket being closed: its server, its start, and its summary when known
/// (else it is summed up from its raw samples).
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) server: ServerId,
    pub(crate) start: i64,
    pub(crate) summary: Option<Filling>,
}

/// Closes 5-minute buckets, each server's in time order: writes each one's 5-minute
/// summary (from its raw samples where not known), then folds it into the coarser tiers
/// in the order given (the newest one's last values stay). A statement may not touch
/// one summary twice (PostgreSQL refuses it), so a server's buckets are folded one per
/// statement.
pub(crate) async fn close(conn: &mut Conn, buckets: &[Closing]) -> StoreResult<()> {
    if buckets.is_empty() {
        return Ok(());
    }
    let unknown: BTreeSet<(ServerId, i64)> =
        buckets.iter().filter(|b| b.summary.is_none()).map(|b| (b.server, b.start)).collect();
    if !unknown.is_empty() {
        summarize(&mut *conn, &unknown).await?;
    }
    let known: Vec<(ServerId, i64, &Filling)> =
        buckets.iter().filter_map(|b| b.summary.as_ref().map(|summary| (b.server, b.start, summary))).collect();
    write_rows(&mut *conn, &known, Stored::Replaced).await?;
    static TEXTS: Shapes = Shapes::new();
    for round in rounds(buckets.iter().map(|b| (b.server, b.start))) {
        for chunk in chunks(round.len()) {
            let mut query = sqlx::query(TEXTS.text(chunk.shape, close_sql));
            for i in 0..chunk.shape {
                let bucket = chunk.row(&round, i);
                query = query.bind(bucket.map(|(server, _)| *server)).bind(bucket.map(|(_, start)| *start));
            }
            query.execute(&mut *conn).await.map_err(db)?;
        }
    }
    Ok(())
}

/// Writes the 5-minute summaries of `buckets` afresh from their raw samples (those
/// starting before the raw horizon, whose samples may be gone, stay as they are).
async fn summarize(conn: &mut Conn, buckets: &BTreeSet<(ServerId, i64)>) -> StoreResult<()> {
    let horizon: Option<i64> = sqlx::query_scalar("SELECT horizon FROM retention_horizons WHERE width = 0")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let mut sql = String::new();
    recompute(&mut sql, buckets, TIERS[0], None, horizon);
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await.map_err(db)?;
    Ok(())
}

/// What becomes of the 5-minute summaries of buckets closed by [`close_open_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Kept: the raw samples go, the summaries stand for them.
    Kept,
    /// Removed with the raw samples (compacted samples stand in for them), or as
    /// retention removes them.
    Removed,
}

/// Closes the open 5-minute buckets starting in `[from, until)` (of `server`, or of
/// every server): what compaction and retention do, in their transaction, before the
/// raw samples or the 5-minute summaries of those buckets go. A sample later appended
/// to a bucket closed this way is recomputed with it (see
/// [`serverpulse_store::history::close_buckets`]), never folded in a second time.
pub(crate) async fn close_open_in(
    conn: &mut Conn,
    server: Option<ServerId>,
    from: i64,
    until: i64,
    summaries: Closed,
) -> StoreResult<()> {
    const OPEN_IN: &str = "($1 IS NULL OR id = $1) AND rollup_open >= $2 AND rollup_open < $3";
    let select = format!("SELECT id, rollup_open FROM servers WHERE {OPEN_IN} ORDER BY id");
    let select = || sqlx::query_as(sqlx::AssertSqlSafe(select.clone())).bind(server).bind(from).bind(until);
    let found: Vec<(ServerId, i64)> = select().fetch_all(&mut *conn).await.map_err(db)?;
    if found.is_empty() {
        return Ok(());
    }
    // Under the servers' locks their open buckets stand still (ingest moves them).
    crate::dialect::lock_servers(&mut *conn, &found.iter().map(|(id, _)| *id).collect()).await?;
    let open: Vec<(ServerId, i64)> = select().fetch_all(&mut *conn).await.map_err(db)?;
    let closing: Vec<Closing> =
        open.into_iter().map(|(server, start)| Closing { server, start, summary: None }).collect();
    close(&mut *conn, &closing).await?;
    let finest = TIERS[0];
    let mut statements = Vec::new();
    if summaries == Closed::Removed {
        statements.push(format!(
            "DELETE FROM rollups WHERE width = {finest} AND EXISTS (SELECT 1 FROM servers \
             WHERE servers.id = rollups.server_id AND servers.rollup_open = rollups.start AND {OPEN_IN})"
        ));
    }
    statements.push(format!("UPDATE servers SET rollup_open = NULL, rollup_open_summary = NULL WHERE {OPEN_IN}"));
    for statement in statements {
        let query = sqlx::query(sqlx::AssertSqlSafe(statement)).bind(server).bind(from).bind(until);
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Splits `items` keyed by server into rounds holding each server at most once, in
/// the order given: a server's first item in the first round, its second in the next.
fn rounds<T>(items: impl Iterator<Item = (ServerId, T)>) -> Vec<Vec<(ServerId, T)>> {
    let mut rounds: Vec<Vec<(ServerId, T)>> = Vec::new();
    let mut taken: std::collections::HashMap<ServerId, usize> = std::collections::HashMap::new();
    for (server, item) in items {
        let round = taken.entry(server).or_default();
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push((server, item));
        *round += 1;
    }
    rounds
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
    let mut filled: std::collections::BTreeMap<i64, Filling> = std::collections::BTreeMap::new();
    for s in samples {
        let start = bucket_of(s.at, TIERS[0]);
        if buckets.contains(&start) {
            filled.entry(start).or_default().add_sample(s.at, charted(s));
        }
    }
    let rows: Vec<(ServerId, i64, &Filling)> =
        filled.iter().map(|(start, filling)| (server, *start, filling)).collect();
    write_rows(&mut *conn, &rows, Stored::Kept).await
}

/// What becomes of a 5-minute summary already stored where [`write_rows`] writes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    Kept,
    Replaced,
}

/// Writes 5-minute summaries `(server, start, summary)`, each bucket at most once, in
/// one statement per [`crate::batched::MAX_ROWS`].
async fn write_rows(conn: &mut Conn, rows: &[(ServerId, i64, &Filling)], stored: Stored) -> StoreResult<()> {
    fn sql(rows: usize, stored: Stored) -> String {
        let mut columns: Vec<(String, &str)> =
            vec![("server_id".into(), "BIGINT"), ("start".into(), "BIGINT"), ("samples".into(), "BIGINT")];
        for c in COLUMNS {
            for (part, kind) in [("min", REAL), ("max", REAL), ("sum", REAL), ("n", "BIGINT"), ("last", REAL)] {
                columns.push((format!("{c}_{part}"), kind));
            }
        }
        let aggregates = aggregate_columns();
        let conflict = match stored {
            Stored::Kept => "DO NOTHING".to_owned(),
            Stored::Replaced => {
                let set: Vec<String> = columns[2..].iter().map(|(c, _)| format!("{c} = excluded.{c}")).collect();
                format!("DO UPDATE SET {}", set.join(", "))
            }
        };
        let typed: Vec<(&str, &str)> = columns.iter().map(|(c, kind)| (c.as_str(), *kind)).collect();
        format!(
            "{}INSERT INTO rollups (server_id, width, start, samples, {aggregates}) \
             SELECT server_id, {width}, start, samples, {aggregates} FROM s WHERE server_id IS NOT NULL \
             ON CONFLICT (server_id, width, start) {conflict}",
            values_cte("s", &typed, rows),
            width = TIERS[0],
        )
    }
    static KEPT: Shapes = Shapes::new();
    static REPLACED: Shapes = Shapes::new();
    let texts = match stored {
        Stored::Kept => &KEPT,
        Stored::Replaced => &REPLACED,
    };
    for chunk in chunks(rows.len()) {
        let mut query = sqlx::query(texts.text(chunk.shape, |rows| sql(rows, stored)));
        for i in 0..chunk.shape {
            let row = chunk.row(rows, i);
            let filling = row.map(|(.., filling)| *filling);
            query = query
                .bind(row.map(|(server, ..)| *server))
                .bind(row.map(|(_, start, _)| *start))
                .bind(filling.map(|f| i64::try_from(f.samples).unwrap_or(i64::MAX)));
            for i in 0..COLUMNS.len() {
                let summary = filling.map(|f| f.metrics[i]).filter(|summary| summary.n > 0);
                query = query
                    .bind(summary.and_then(|s| s.min))
                    .bind(summary.and_then(|s| s.max))
                    .bind(summary.map(|s| s.sum))
                    .bind(filling.map(|f| i64::try_from(f.metrics[i].n).unwrap_or(i64::MAX)))
                    .bind(filling.and_then(|f| f.newest).and_then(|(_, last)| last[i]));
            }
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// A real column's type, as both databases read it.
const REAL: &str = "DOUBLE PRECISION";

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
            // Their samples are read through their entries, all written.
            let listed: Vec<ServerId> = servers.iter().copied().collect();
            let written = crate::written_back::write_out(&mut tx, self.write_back(), &listed).await?;
            let buckets: BTreeSet<(ServerId, i64)> = dirty.iter().copied().collect();
            let mut sql = refresh(&mut tx, &buckets).await?;
            sql.push_str(&format!(
                "{} DELETE FROM rollup_dirty WHERE (server_id, start) IN (SELECT server_id, start FROM b);\n",
                buckets_cte(&buckets)
            ));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db)?;
            crate::written_back::commit_with(tx, self.write_back(), written).await?;
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
