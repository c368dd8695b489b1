//! Marks agents that fell silent as `disconnected`, then evaluates the absence rules
//! (agent offline, no data) that only time can trigger, and queues reminders for alerts
//! that keep firing.
//!
//! [`sweep_once`] is the whole rule for one instant, so tests call it with an injected
//! clock; [`run`] only repeats it. An agent comes back to `active` by itself on its next
//! contact (the store does that while keeping what it sent).

use tokio::sync::watch;

use crate::app::AppState;

/// Marks every agent silent for longer than `offline_after` at `now`; returns their servers.
pub async fn sweep_once(state: &AppState, now: i64) -> Result<Vec<i64>, serverpulse_store::StoreError> {
    let silent = state.store.mark_silent_agents(now, state.settings.offline_after_ms).await?;
    for server_id in &silent {
        tracing::warn!(server_id, "agent disconnected: no contact within offline_after");
        crate::live::publish_server(state, *server_id).await;
    }
    crate::alerting::sweep(state, now).await?;
    if crate::notifier::queue_repeats(state, now).await? > 0 {
        state.wake_notifier.notify_one();
    }
    Ok(silent)
}

/// Sweeps every `sweep_interval` until `stop` turns true.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    crate::background::every("sweeper", state.settings.sweep_interval, stop, || async {
        if !state.leads() {
            return;
        }
        if let Err(e) = sweep_once(&state, state.now()).await {
            tracing::warn!(error = %e, "agent status sweep failed; will retry");
        }
    })
    .await;
}
