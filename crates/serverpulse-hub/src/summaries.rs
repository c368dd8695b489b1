//! Keeps the history's summaries (rollup tiers) current: ingest only marks the buckets it
//! touched; this refreshes them every [`EVERY`], each bucket once however many reports
//! landed in it meanwhile (two per server at a 30-second interval). A chart refreshes its
//! own server's first, so it never lags; the store works in small transactions, so
//! ingest keeps its turn.

use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;

pub const EVERY: Duration = Duration::from_secs(60);

/// Refreshes every [`EVERY`] until `stop` turns true.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    crate::background::every("summaries", EVERY, stop, || async {
        if !state.leads() {
            return;
        }
        if let Err(e) = state.store.refresh_rollups(None).await {
            tracing::warn!(error = %e, "refreshing history summaries failed; will retry");
        }
    })
    .await;
}
