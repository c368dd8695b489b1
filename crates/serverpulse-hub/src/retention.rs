//! Keeps history in shape once an hour (`retention:` in the configuration): history past
//! its age goes, over the size cap the oldest history first, and then the hours past the
//! detail window are compacted into chunks (figures kept, report documents dropped). The
//! store works in small transactions, so ingest is never held up for long.

use std::time::Duration;

use serverpulse_store::{RetentionOutcome, StoreError};
use tokio::sync::watch;

use crate::app::AppState;

/// How often retention runs.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// One pass at `now`.
pub async fn retention_once(state: &AppState, now: i64) -> Result<RetentionOutcome, StoreError> {
    let outcome = remove_old_history(state, now).await?;
    if state.settings.detail_ms > 0 {
        let compacted = state.store.compact_history(now - state.settings.detail_ms).await?;
        if compacted.samples > 0 {
            tracing::info!(
                chunks = compacted.chunks,
                samples = compacted.samples,
                bytes = compacted.bytes,
                "compacted history past the detail window"
            );
        }
    }
    Ok(outcome)
}

async fn remove_old_history(state: &AppState, now: i64) -> Result<RetentionOutcome, StoreError> {
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
    crate::background::every("retention", EVERY, stop, || async {
        if !state.leads() {
            return;
        }
        if let Err(e) = retention_once(&state, state.now()).await {
            tracing::warn!(error = %e, "retention pass failed; will retry");
        }
    })
    .await;
}
