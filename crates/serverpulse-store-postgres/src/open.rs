//! Connecting to PostgreSQL: one pool, used for reads and writes alike.

use std::str::FromStr;
use std::time::Duration;

use serverpulse_store::StoreResult;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::SqlStore;
use crate::rows::db;

/// Connections per hub process: enough for the ingest writer, the background tasks and
/// the dashboard's reads at once, few enough for several replicas under PostgreSQL's
/// default limit of 100.
const POOL_SIZE: u32 = 16;

impl SqlStore {
    /// Connects to a `postgres://` URL and migrates the database.
    pub async fn open_url(url: &str, now: i64) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db)?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            // No reaper task: sqlx 0.9.0's can spin at 100 % CPU and hang `close` (sqlx
            // issue #3645). A broken connection is found and replaced when next used.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db)?;
        crate::migrate::run(&pool, now).await.map_err(db)?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            coordination: crate::dialect::Coordination::default(),
            write_back: None,
        })
    }
}
