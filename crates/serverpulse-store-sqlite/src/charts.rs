//! What the dashboard reads in bulk: history reduced to chart buckets (min, max and
//! mean per metric; from the rollup tiers when the step allows, else from raw samples
//! over the time index), and per-server counts for the fleet overview.

use std::collections::HashMap;
use std::sync::LazyLock;

use serverpulse_store::{Band, ChartBucket, FleetCounts, ServerId, StoreResult};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStore;
use crate::rollups::{COLUMNS, TIERS};
use crate::rows::db;

/// Buckets straight from the raw samples (`?1` step, `?2` server, `?3` from, `?4` to).
fn raw_sql() -> String {
    let bands: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "MIN({c}) AS {c}_min, MAX({c}) AS {c}_max, AVG({c}) AS {c}_avg, \
                 MAX(CASE WHEN newest = 1 THEN {c} END) AS {c}_last"
            )
        })
        .collect();
    format!(
        "WITH s AS (SELECT *, (agent_time / ?1) * ?1 AS bucket, ROW_NUMBER() OVER \
           (PARTITION BY agent_time / ?1 ORDER BY agent_time DESC, id DESC) AS newest FROM performance_logs \
           WHERE server_id = ?2 AND agent_time >= ?3 AND agent_time < ?4) \
         SELECT bucket, COUNT(*) AS samples, {} FROM s GROUP BY bucket ORDER BY bucket",
        bands.join(", ")
    )
}

/// Buckets merged from a rollup tier (`?5` its width), whole tier buckets starting in range.
fn tier_sql() -> String {
    let bands: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            format!(
                "MIN({c}_min) AS {c}_min, MAX({c}_max) AS {c}_max, SUM({c}_sum) / SUM({c}_n) AS {c}_avg, \
                 MAX(CASE WHEN newest = 1 THEN {c}_last END) AS {c}_last"
            )
        })
        .collect();
    format!(
        "WITH s AS (SELECT *, (start / ?1) * ?1 AS bucket, ROW_NUMBER() OVER \
           (PARTITION BY start / ?1 ORDER BY start DESC) AS newest FROM rollups \
           WHERE server_id = ?2 AND width = ?5 AND start >= ?3 AND start < ?4) \
         SELECT bucket, SUM(samples) AS samples, {} FROM s GROUP BY bucket ORDER BY bucket",
        bands.join(", ")
    )
}

fn bucket(row: &SqliteRow) -> StoreResult<ChartBucket> {
    let mut bands = [Band::default(); 8];
    for (band, column) in bands.iter_mut().zip(COLUMNS) {
        *band = Band {
            min: row.try_get(format!("{column}_min").as_str()).map_err(db)?,
            max: row.try_get(format!("{column}_max").as_str()).map_err(db)?,
            avg: row.try_get(format!("{column}_avg").as_str()).map_err(db)?,
            last: row.try_get(format!("{column}_last").as_str()).map_err(db)?,
        };
    }
    let samples: i64 = row.try_get("samples").map_err(db)?;
    Ok(ChartBucket {
        start: row.try_get("bucket").map_err(db)?,
        samples: u32::try_from(samples).unwrap_or(u32::MAX),
        bands,
    })
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
        // The coarsest tier whose buckets tile the chart's exactly, when `from` is aligned.
        let tier = TIERS.iter().rev().find(|w| step % **w == 0 && from % **w == 0).copied();
        static RAW: LazyLock<String> = LazyLock::new(raw_sql);
        static TIER: LazyLock<String> = LazyLock::new(tier_sql);
        let sql = if tier.is_some() { TIER.as_str() } else { RAW.as_str() };
        let query = sqlx::query(sql).bind(step).bind(server).bind(from).bind(to);
        let query = match tier {
            Some(width) => query.bind(width),
            None => query,
        };
        let found = query.fetch_all(&self.reader).await.map_err(db)?;
        found.iter().map(bucket).collect()
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
