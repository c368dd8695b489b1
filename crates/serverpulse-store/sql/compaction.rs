//! Compaction: samples past the detail window move, a whole hour at a time, from
//! `performance_logs` (a row per report, with the report as received) into the
//! compressed chunk of their server and day in `history_chunks` (migration 0010; format
//! in [`serverpulse_store::chunk`]), and their 5-minute summaries go with them (a chart
//! recomputes those from the chunk). A day's chunk covers the day up to its `until`;
//! its later samples are still rows. Every sample is in exactly one of the two places: a
//! report landing before a chunk's `until` [`reopen`]s the chunk first (and one whose
//! next sample is a chunk's first reopens that chunk, to re-rate it), so de-duplication
//! by `seq`, rates and summaries work exactly as for recent data; a report whose
//! previous sample is a chunk's last reads it from the chunk.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use crate::dialect::Conn;
use serverpulse_store::{CompactionOutcome, Sample, ServerId, StoreError, StoreResult, chunk};

use crate::SqlStore;
use serverpulse_store::history::{CHUNK_SPAN, COMPACTION_STEP as STEP, TIERS, bucket_of, interleave};

use crate::batched::{chunks, values_cte};
use crate::rollups::{Closed, mark_dirty, write_summaries};
use crate::rows::{self, db};
use crate::samples_by_server::SampleIds;

/// Chunks written (or reopened) per transaction: few, so ingest's commits interleave.
const CHUNKS_PER_TRANSACTION: usize = 32;

fn corrupt(error: chunk::ChunkError) -> StoreError {
    StoreError::Corrupt(error.to_string())
}

/// The samples of one stored chunk, in agent time.
pub(crate) fn decode(data: &[u8]) -> StoreResult<Vec<Sample>> {
    chunk::decode(data).map_err(corrupt)
}

/// The samples of `server`'s chunk starting at `start`, if there is one.
pub(crate) async fn stored_chunk(conn: &mut Conn, server: ServerId, start: i64) -> StoreResult<Option<Vec<Sample>>> {
    let data: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT data FROM history_chunks WHERE server_id = $1 AND start = $2")
            .bind(server)
            .bind(start)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    data.map(|data| decode(&data)).transpose()
}

/// Puts a compacted block's samples back among the recent ones (with `raw` null) and
/// marks their summaries for recomputing. Returns whether there was a chunk.
pub(crate) async fn reopen(conn: &mut Conn, server: ServerId, start: i64) -> StoreResult<bool> {
    let data: Option<Vec<u8>> =
        sqlx::query_scalar("DELETE FROM history_chunks WHERE server_id = $1 AND start = $2 RETURNING data")
            .bind(server)
            .bind(start)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    let Some(data) = data else { return Ok(false) };
    let samples = decode(&data)?;
    let rows: Vec<(ServerId, &Sample, Option<serverpulse_store::packed::Packed<'_>>)> =
        samples.iter().map(|s| (server, s, None)).collect();
    let mut entries = crate::ingest::insert_samples(&mut *conn, &rows).await?;
    crate::samples_by_server::index(&mut *conn, &mut entries).await?;
    mark_dirty(&mut *conn, &samples.iter().map(|s| (server, s.at)).collect()).await?;
    // Ingest takes a `seq` above the server's greatest as new without a probe: the
    // chunk's seqs are rows again (a chunk compacted before that was tracked may hold
    // greater ones).
    let max_seq = samples.iter().filter_map(|s| s.seq.and_then(|seq| i64::try_from(seq).ok())).max();
    sqlx::query(
        "UPDATE servers SET max_seq = CASE WHEN max_seq IS NULL OR $1 > max_seq THEN $1 ELSE max_seq END \
         WHERE id = $2 AND $1 IS NOT NULL",
    )
    .bind(max_seq)
    .bind(server)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(true)
}

/// Compacts the recent samples of `server` in `[day, until)` into the day's chunk
/// (merged with what it holds). Returns the samples moved and the chunk's bytes;
/// nothing when there are none or their summaries are still to refresh.
async fn compact_span(conn: &mut Conn, server: ServerId, day: i64, until: i64) -> StoreResult<Option<(u64, u64)>> {
    crate::dialect::lock_server(&mut *conn, server).await?;
    let dirty: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(1 AS BIGINT) FROM rollup_dirty WHERE server_id = $1 AND start >= $2 AND start < $3 LIMIT 1",
    )
    .bind(server)
    .bind(day)
    .bind(until)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    if dirty.is_some() {
        return Ok(None); // the next pass takes it, once its summaries are current
    }
    // Every column but the report's JSON, which the chunk does not keep.
    let found = sqlx::query(
        "SELECT seq, agent_time, received_at, cpu_usage, ram_usage, disk_usage, load_average, uptime, \
         response_time, network_rx, network_tx, disk_io_read, disk_io_write, network_rx_rate, network_tx_rate, \
         disk_io_read_rate, disk_io_write_rate, 'null' AS raw, NULL AS raw_packed, NULL AS raw_packing FROM performance_logs \
         WHERE id IN (SELECT id FROM samples_by_server WHERE server_id = $1 AND agent_time >= $2 AND agent_time < $3) \
         ORDER BY agent_time, id",
    )
    .bind(server)
    .bind(day)
    .bind(until)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    if found.is_empty() {
        return Ok(None);
    }
    let moved: Vec<Sample> = found.iter().map(rows::sample).collect::<StoreResult<_>>()?;
    let mut samples = stored_chunk(&mut *conn, server, day).await?.unwrap_or_default();
    let count = moved.len() as u64;
    samples.extend(moved);
    samples.sort_by_key(|s| s.at); // stable: among equal times, arrival order stays
    let data = chunk::encode(&samples);
    sqlx::query(
        "INSERT INTO history_chunks (server_id, start, until, samples, data) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (server_id, start) DO UPDATE SET until = excluded.until, samples = excluded.samples, \
         data = excluded.data",
    )
    .bind(server)
    .bind(day)
    .bind(until)
    .bind(samples.len() as i64)
    .bind(&data)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    // The server's open bucket, if among those going, is summed up from its raw samples
    // and folded into the coarser tiers first.
    let raw_horizon: Option<i64> = sqlx::query_scalar("SELECT horizon FROM retention_horizons WHERE width = 0")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let open_from = raw_horizon.map_or(day, |h| h.max(day));
    crate::rollups::close_open_in(&mut *conn, Some(server), open_from, until, Closed::Removed).await?;
    crate::samples_by_server::delete(&mut *conn, server, day, until, i64::MAX).await?;
    // The server's newest sample may be among those moved: ingest then probes its
    // history for reports after it, instead of taking it from beside the server's row.
    sqlx::query(
        "UPDATE servers SET chunked_until = CASE WHEN chunked_until IS NULL OR chunked_until < $1 THEN $1 \
         ELSE chunked_until END WHERE id = $2",
    )
    .bind(until)
    .bind(server)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    // Summaries from before the raw horizon could not be recomputed: they stay.
    sqlx::query(
        "DELETE FROM rollups WHERE server_id = $1 AND width = $2 AND start >= $3 AND start < $4 AND start >= \
         COALESCE((SELECT horizon FROM retention_horizons WHERE width = 0), start)",
    )
    .bind(server)
    .bind(TIERS[0])
    .bind(day)
    .bind(until)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Some((count, data.len() as u64)))
}

/// Removes the samples of one chunk older than `cutoff` (see
/// [`SqlStore::cut_chunks_before`]); returns how many went.
async fn cut_chunk(conn: &mut Conn, server: ServerId, start: i64, cutoff: i64) -> StoreResult<u64> {
    crate::dialect::lock_server(&mut *conn, server).await?;
    let data: Vec<u8> = sqlx::query_scalar("SELECT data FROM history_chunks WHERE server_id = $1 AND start = $2")
        .bind(server)
        .bind(start)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let samples = decode(&data)?;
    let gone: BTreeSet<i64> = samples.iter().filter(|s| s.at < cutoff).map(|s| bucket_of(s.at, TIERS[0])).collect();
    if gone.is_empty() {
        return Ok(0);
    }
    write_summaries(conn, server, &samples, &gone).await?;
    let (old, kept): (Vec<Sample>, Vec<Sample>) = samples.into_iter().partition(|s| s.at < cutoff);
    // Emptied, the chunk goes; else it keeps its span (`until`) with fewer samples.
    let done = if kept.is_empty() {
        sqlx::query("DELETE FROM history_chunks WHERE server_id = $1 AND start = $2")
            .bind(server)
            .bind(start)
            .execute(&mut *conn)
            .await
    } else {
        sqlx::query("UPDATE history_chunks SET samples = $1, data = $2 WHERE server_id = $3 AND start = $4")
            .bind(kept.len() as i64)
            .bind(chunk::encode(&kept))
            .bind(server)
            .bind(start)
            .execute(&mut *conn)
            .await
    };
    done.map_err(db)?;
    Ok(old.len() as u64)
}

impl SqlStore {
    /// The first day holding recent samples older than `limit` of every server with
    /// some (`after` none), or of each server listed from its day `after` on. One
    /// statement over the fleet (an index probe per server), or one per
    /// [`crate::batched::MAX_ROWS`] servers listed.
    async fn first_days_before(
        &self,
        after: Option<&[(ServerId, i64)]>,
        limit: i64,
    ) -> StoreResult<Vec<(ServerId, i64)>> {
        let first = |source: &str, from: &str, limit: &str| {
            format!(
                "SELECT server_id, first FROM (SELECT {source}.server_id, (SELECT MIN(p.agent_time) \
                 FROM samples_by_server p WHERE p.server_id = {source}.server_id AND p.agent_time >= {from} \
                 AND p.agent_time < {limit}) AS first FROM {source}) AS f WHERE first IS NOT NULL ORDER BY server_id"
            )
        };
        let found: Vec<(ServerId, i64)> = match after {
            None => {
                let sql = format!("WITH s AS (SELECT id AS server_id FROM servers) {}", first("s", "$1", "$2"));
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(i64::MIN)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db)?
            }
            Some(cursors) => {
                let mut found = Vec::new();
                for chunk in chunks(cursors.len()) {
                    let limit_at = format!("CAST({} AS BIGINT)", crate::dialect::placeholder(2 * chunk.shape + 1));
                    let sql = format!(
                        "{}{}",
                        values_cte("c", &[("server_id", "BIGINT"), ("after", "BIGINT")], chunk.shape),
                        first("c", "c.after", &limit_at)
                    );
                    let mut query = sqlx::query_as::<_, (ServerId, i64)>(sqlx::AssertSqlSafe(sql));
                    for i in 0..chunk.shape {
                        let cursor = chunk.row(cursors, i);
                        query = query.bind(cursor.map(|(server, _)| *server)).bind(cursor.map(|(_, after)| *after));
                    }
                    found.extend(query.bind(limit).fetch_all(&self.reader).await.map_err(db)?);
                }
                found
            }
        };
        Ok(found.into_iter().map(|(server, first)| (server, bucket_of(first, CHUNK_SPAN))).collect())
    }

    async fn compact_spans(
        &self,
        spans: &[(ServerId, i64)],
        limit: i64,
        outcome: &mut CompactionOutcome,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Their samples are read through their entries, all written.
        let servers: Vec<ServerId> = spans.iter().map(|(server, _)| *server).collect();
        let written = crate::written_back::write_out(&mut tx, self.write_back(), &servers).await?;
        for (server, day) in spans {
            let until = limit.min(day.saturating_add(CHUNK_SPAN));
            if let Some((samples, bytes)) = compact_span(&mut tx, *server, *day, until).await? {
                outcome.chunks += 1;
                outcome.samples += samples;
                outcome.bytes += bytes;
            }
        }
        crate::written_back::commit_with(tx, self.write_back(), written).await
    }

    pub(crate) async fn compact(&self, before: i64) -> StoreResult<CompactionOutcome> {
        // Summaries take in every stored sample first; a span marked since waits a pass.
        self.refresh_dirty(None).await?;
        let limit = bucket_of(before, STEP);
        let mut outcome = CompactionOutcome::default();
        // Day by day: each round compacts the next day of every server with more.
        let mut spans = self.first_days_before(None, limit).await?;
        while !spans.is_empty() {
            for some in spans.chunks(CHUNKS_PER_TRANSACTION) {
                self.compact_spans(some, limit, &mut outcome).await?;
            }
            let next: Vec<(ServerId, i64)> =
                spans.iter().map(|(server, day)| (*server, day.saturating_add(CHUNK_SPAN))).collect();
            spans = self.first_days_before(Some(&next), limit).await?;
        }
        Ok(outcome)
    }

    /// Removes the compacted samples older than `cutoff`, chunk by chunk, writing the
    /// 5-minute summaries of the buckets they were in first (compacted hours have none,
    /// and the summaries outlive the samples). Returns the samples removed.
    pub(crate) async fn cut_chunks_before(&self, cutoff: i64) -> StoreResult<u64> {
        let mut removed = 0;
        let mut after = (i64::MIN, i64::MIN);
        loop {
            let chunks: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT server_id, start FROM history_chunks WHERE start < $1 AND (server_id, start) > ($2, $3) \
                 ORDER BY server_id, start LIMIT $4",
            )
            .bind(cutoff)
            .bind(after.0)
            .bind(after.1)
            .bind(CHUNKS_PER_TRANSACTION as i64)
            .fetch_all(&self.writer)
            .await
            .map_err(db)?;
            let Some(last) = chunks.last() else { return Ok(removed) };
            after = *last;
            let mut tx = self.begin().await?;
            for (server, start) in chunks {
                removed += cut_chunk(&mut tx, server, start, cutoff).await?;
            }
            tx.commit().await.map_err(db)?;
        }
    }

    /// The compacted samples of `server` whose chunk starts in `[from, to)` (the day
    /// holding `from` included), each chunk's in agent time, chunks in order.
    pub(crate) async fn chunk_samples(
        conn: &mut Conn,
        server: ServerId,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<Sample>> {
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT data FROM history_chunks WHERE server_id = $1 AND start >= $2 AND start < $3 ORDER BY start",
        )
        .bind(server)
        .bind(bucket_of(from, CHUNK_SPAN))
        .bind(to)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let mut samples = Vec::new();
        for data in chunks {
            samples.extend(decode(&data)?);
        }
        Ok(samples)
    }

    /// Stored samples of `server` with agent time in `[from, to]`, oldest first, at most
    /// `limit`: recent ones from their rows, older ones from their chunks.
    pub(crate) async fn samples_between(
        &self,
        server: ServerId,
        from: i64,
        to: i64,
        limit: u32,
    ) -> StoreResult<Vec<Sample>> {
        let ids = SampleIds::of(self.write_back(), server);
        // One read transaction: one snapshot, so no sample is seen both as a row and in a
        // chunk (or in neither) while compaction moves it.
        let mut snapshot = self.snapshot().await?;
        fn sql(condition: &str) -> String {
            format!("SELECT * FROM performance_logs WHERE {condition} ORDER BY agent_time, id LIMIT $4")
        }
        static PLAIN: LazyLock<String> = LazyLock::new(|| sql(&SampleIds::of(None, 0).condition()));
        let query = match ids.is_plain() {
            true => sqlx::query(sqlx::AssertSqlSafe(PLAIN.as_str())),
            false => sqlx::query(sqlx::AssertSqlSafe(sql(&ids.condition()))).persistent(false),
        };
        let recent = query
            .bind(server)
            .bind(from)
            .bind(to.saturating_add(1))
            .bind(i64::from(limit))
            .fetch_all(&mut *snapshot)
            .await
            .map_err(db)?;
        let recent: Vec<Sample> = recent.iter().map(rows::sample).collect::<StoreResult<_>>()?;
        let starts: Vec<i64> = sqlx::query_scalar(
            "SELECT start FROM history_chunks WHERE server_id = $1 AND start >= $2 AND start <= $3 ORDER BY start",
        )
        .bind(server)
        .bind(bucket_of(from, CHUNK_SPAN))
        .bind(to)
        .fetch_all(&mut *snapshot)
        .await
        .map_err(db)?;
        let mut chunks = Vec::with_capacity(starts.len());
        for start in starts {
            let data: Vec<u8> =
                sqlx::query_scalar("SELECT data FROM history_chunks WHERE server_id = $1 AND start = $2")
                    .bind(server)
                    .bind(start)
                    .fetch_one(&mut *snapshot)
                    .await
                    .map_err(db)?;
            chunks.push((start, decode(&data)?));
        }
        Ok(interleave(recent, chunks, from, to, limit as usize))
    }
}
