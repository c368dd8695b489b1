//! Opening an SQLite file: WAL, full sync, foreign keys, one writer (its temporary
//! journals in memory, its rows handed over without waiting) and a few readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serverpulse_store::StoreResult;
use serverpulse_store::write_back::WriteBack;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::SqlStore;
use crate::rows::db;

/// Rows the writer's connection thread may hand over before they are taken. A batch's
/// statements each cover at most 64 servers or reports (`batched::MAX_ROWS`), a few rows
/// for each; a larger result only makes that thread wait, as with the default.
const WRITER_ROW_BUFFER: usize = 1024;

impl SqlStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path, now: i64) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::connect(options, now).await
    }

    /// Opens a `sqlite:` URL (e.g. `sqlite://serverpulse-data/serverpulse.db`).
    pub async fn open_url(url: &str, now: i64) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url).map_err(db)?;
        Self::connect(options, now).await
    }

    async fn connect(options: SqliteConnectOptions, now: i64) -> StoreResult<Self> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // The writer's statement journals (the page images a statement that writes many
        // rows keeps, to undo it alone if it fails) stay in memory: a batch's statements
        // touch a few MB of pages, which SQLite otherwise spilled to temporary files.
        // Its connection's thread hands a statement's rows over without waiting for them
        // to be taken: with sqlx's default of 50 rows it stopped, and the writer woke it,
        // in the middle of most reads of a batch's rows (a thread switch each way).
        let writer_options = options.clone().pragma("temp_store", "memory").row_buffer_size(WRITER_ROW_BUFFER);
        let writer = pool_options(1).connect_with(writer_options).await.map_err(db)?;
        crate::migrate::run(&writer, now).await.map_err(db)?;
        // Sample entries and rows a hub stopped without writing out (see
        // `serverpulse_store::write_back`) are rebuilt before anything reads them.
        let newest_sample = crate::rebuild::rebuild_entries(&writer).await?;
        crate::rebuild::rebuild_rows(&writer).await?;
        let reader = pool_options(4).connect_with(options.read_only(true)).await.map_err(db)?;
        let write_back = Some(std::sync::Arc::new(std::sync::Mutex::new(WriteBack::after(newest_sample))));
        Ok(Self { writer, reader, coordination: crate::dialect::Coordination, write_back })
    }
}

/// Connections are kept for the life of the process: no idle timeout, no maximum
/// lifetime, so sqlx runs no reaper task. (sqlx 0.9.0's reaper can spin at 100 % CPU
/// and hang `close` when its idle count underflows — sqlx issue #3645; seen here as
/// `serverpulse server add` never exiting.) Nor are they pinged before each use: a
/// connection to a local file does not break, and the ping was a second round trip to
/// the connection's thread for every read (a profile showed it on every request).
pub(crate) fn pool_options(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
}
