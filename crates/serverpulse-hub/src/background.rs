//! The loop every periodic background task runs in: a step now, then one per period
//! (late ticks are not bunched up), until the hub stops. Each step's duration is logged
//! at debug level under the task's name: what held the database, and for how long.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `step` of `task` every `period` until `stop` turns true (or its sender is gone).
pub async fn every<F, Fut>(task: &'static str, period: Duration, mut stop: watch::Receiver<bool>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let started = std::time::Instant::now();
                step().await;
                tracing::debug!(task, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "background step done");
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
