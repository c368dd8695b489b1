//! Finding a server's samples: through `samples_by_server` (server, agent time, row id,
//! `seq`), whose entries the store writes apart from the samples where it is its
//! database's one writer (SQLite), and the entries the write-back holds meanwhile.
//!
//! Why apart: an entry written with its sample lands, in a real fleet's arrival order,
//! on a page of its own, a random page per report (docs/benchmarks.md, seventeenth
//! session). Written with its server's row instead ([`serverpulse_store::write_back`]),
//! a bucket's entries of one server share a page. On PostgreSQL `samples_by_server` is a
//! view of `performance_logs` and its index, and nothing here writes anything.
//!
//! Who reads what: the writer writes a server's pending row out before reading its
//! samples (ingest's probe, closing a bucket, compaction, retention, refreshing
//! summaries), so the table is complete for it; a read beside the writer (charts, the
//! history API) adds the pending entries' ids ([`SampleIds`]).

use std::sync::{LazyLock, Mutex};

use serverpulse_store::write_back::{SampleEntry, WriteBack};
use serverpulse_store::{ServerId, StoreResult};

use crate::batched::{Shapes, chunks, values_cte};
use crate::dialect::Conn;
use crate::ingest::lock;
use crate::rows::db;

/// Writes the entries of samples stored (`server`, entry), in any order; one written
/// already is left as it is.
pub(crate) async fn index(conn: &mut Conn, entries: &mut [(ServerId, SampleEntry)]) -> StoreResult<()> {
    if !crate::dialect::SAMPLE_ENTRIES_APART {
        return Ok(());
    }
    // In the table's order: a server's entries go to one page together.
    entries.sort_unstable_by_key(|(server, entry)| (*server, entry.at, entry.id));
    static TEXTS: Shapes = Shapes::new();
    for chunk in chunks(entries.len()) {
        let sql = TEXTS.text(chunk.shape, |rows| {
            let columns = [("server_id", "BIGINT"), ("agent_time", "BIGINT"), ("id", "BIGINT"), ("seq", "BIGINT")];
            format!(
                "{}INSERT INTO samples_by_server (server_id, agent_time, id, seq) \
                 SELECT server_id, agent_time, id, seq FROM e WHERE server_id IS NOT NULL ON CONFLICT DO NOTHING",
                values_cte("e", &columns, rows)
            )
        });
        let mut query = sqlx::query(sql);
        for i in 0..chunk.shape {
            let row = chunk.row(entries, i);
            query = query
                .bind(row.map(|(server, _)| *server))
                .bind(row.map(|(_, e)| e.at))
                .bind(row.map(|(_, e)| e.id))
                .bind(row.and_then(|(_, e)| e.seq()));
        }
        query.execute(&mut *conn).await.map_err(db)?;
    }
    Ok(())
}

/// Keeps, with the writer's transaction on `conn`, that every sample up to id `through`
/// has its entry (see [`WriteBack::indexed_through`]).
pub(crate) async fn record_indexed_through(conn: &mut Conn, through: i64) -> StoreResult<()> {
    if !crate::dialect::SAMPLE_ENTRIES_APART {
        return Ok(());
    }
    sqlx::query("UPDATE samples_indexed SET through = $1 WHERE through <> $1")
        .bind(through)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Deletes `server`'s samples with agent time in `[from, to)`, the `limit` oldest of
/// them (`i64::MAX`: all), and their entries; returns how many went. Only the writer,
/// with the server's pending row written out.
pub(crate) async fn delete(conn: &mut Conn, server: ServerId, from: i64, to: i64, limit: i64) -> StoreResult<u64> {
    const SOME: &str = "FROM samples_by_server WHERE server_id = $1 AND agent_time >= $2 AND agent_time < $3 \
                        ORDER BY agent_time, id LIMIT $4";
    static SAMPLES: LazyLock<String> =
        LazyLock::new(|| format!("DELETE FROM performance_logs WHERE id IN (SELECT id {SOME})"));
    static ENTRIES: LazyLock<String> = LazyLock::new(|| {
        format!(
            "DELETE FROM samples_by_server WHERE (server_id, agent_time, id) IN (SELECT server_id, agent_time, id {SOME})"
        )
    });
    let mut deleted = 0;
    // The samples first: the entries name them until then.
    let statements: &[&LazyLock<String>] =
        if crate::dialect::SAMPLE_ENTRIES_APART { &[&SAMPLES, &ENTRIES] } else { &[&SAMPLES] };
    for (k, sql) in statements.iter().enumerate() {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(server)
            .bind(from)
            .bind(to)
            .bind(limit)
            .execute(&mut *conn)
            .await
            .map_err(db)?
            .rows_affected();
        if k == 0 {
            deleted = done;
        }
    }
    Ok(deleted)
}

/// Which of a server's samples a read beside the writer takes: those
/// `samples_by_server` holds in a span of agent time, and those whose entries the
/// write-back holds (taken before the read's snapshot starts; see
/// [`WriteBack::entries_of`]).
pub(crate) struct SampleIds {
    pending: Vec<i64>,
}

impl SampleIds {
    /// `server`'s samples.
    pub(crate) fn of(write_back: Option<&Mutex<WriteBack>>, server: ServerId) -> Self {
        let pending = match write_back {
            Some(write_back) => lock(write_back).entries_of(server).into_iter().map(|entry| entry.id).collect(),
            None => Vec::new(),
        };
        Self { pending }
    }

    /// The condition on `performance_logs` rows for those with agent time in
    /// `[$2, $3)`, with the server bound as `$1`.
    pub(crate) fn condition(&self) -> String {
        let indexed = "id IN (SELECT id FROM samples_by_server WHERE server_id = $1 AND agent_time >= $2 \
                       AND agent_time < $3)";
        if self.pending.is_empty() {
            return indexed.to_owned();
        }
        let ids: Vec<String> = self.pending.iter().map(i64::to_string).collect();
        format!("({indexed} OR id IN ({})) AND agent_time >= $2 AND agent_time < $3", ids.join(", "))
    }

    /// Whether the condition's text is the one of every read with nothing pending (worth
    /// keeping prepared; the others are one-offs).
    pub(crate) fn is_plain(&self) -> bool {
        self.pending.is_empty()
    }
}
