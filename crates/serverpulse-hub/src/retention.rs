//! Applies the retention policy (`retention:` in the configuration) once an hour: history
//! past its age goes, and over the size cap the oldest history first. The store does
//! the deleting in small transactions, so ingest is never held up for long.

use std::time::Duration;

use serverpulse_store::{RetentionOutcome, StoreError};
use tokio::sync::watch;

use crate::app::AppState;

/// How often retention runs.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// One pass at `now`.
pub async fn retention_once(state: &AppState, now: i64) -> Result<RetentionOutcome, StoreError> {
    let outcome = state.store.apply_retention(&state.settings.retention, now).await?;
    if outcome.raw_deleted + outcome.rollups_deleted > 0 {
        tracing::info!(
            raw_deleted = outcome.raw_deleted,
            rollups_deleted = outcome.rollups_deleted,
            bytes_used = outcome.bytes_used,
            "retention removed old history"
        );
    }
    Ok(outcome)
}

/// A pass right away, then every [`EVERY`], until `stop` turns true.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    crate::background::every(EVERY, stop, || async {
        if let Err(e) = retention_once(&state, state.now()).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    })
    .await;
}
