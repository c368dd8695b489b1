//! The loop every periodic background task runs in: a step now, then one per period
//! (late ticks are not bunched up), until the hub stops.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `step` every `period` until `stop` turns true (or its sender is gone).
pub async fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => step().await,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
