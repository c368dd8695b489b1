//! Delivers queued notifications: takes what is due from the store's outbox, sends each
//! over its channel concurrently (one slow or failing channel holds up nobody, and
//! never ingest, which only queues), records every attempt, and retries failures with
//! growing delays. Also queues reminders for alerts that keep firing unacknowledged.
//!
//! [`deliver_due`] and [`queue_repeats`] are the whole behaviour for one instant (tests
//! call them with an injected clock); [`run`] repeats them, woken early when ingest
//! queued something.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serverpulse_store::{DeliveryOutcome, DueNotification, NewNotification, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::AppState;
use crate::delivery::{Notice, SEND_TIMEOUT, send};

/// Attempts before a notification is given up as failed.
pub const MAX_ATTEMPTS: u32 = 8;
/// Notifications taken per round.
const BATCH: u32 = 100;

/// The wait before attempt `attempts + 1`: 30 s, 1 min, 2 min … capped at 1 h.
pub fn retry_delay_ms(attempts: u32) -> i64 {
    (30_000i64 << attempts.min(7)).min(3_600_000)
}

/// Makes ring the process's TLS crypto provider (the one provider everywhere); calling
/// it again is harmless, the first one stays. Needed before any HTTPS client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// One HTTP client for every channel (connection reuse; ring as the TLS provider).
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .user_agent(concat!("ServerPulse/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends everything due at `now`; returns how many attempts were made.
pub async fn deliver_due(state: &AppState, now: i64) -> Result<usize, StoreError> {
    let due = state.store.due_notifications(now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut servers = HashMap::new();
    for server in state.store.list_servers().await? {
        servers.insert(server.id, server);
    }
    let servers = Arc::new(servers);
    let mut sending = JoinSet::new();
    for notification in due {
        let http = state.http.clone();
        let servers = servers.clone();
        let public_url = state.settings.public_url.clone();
        sending.spawn(async move {
            let DueNotification { id, event, attempts, alert, channel } = notification;
            let server = alert.as_ref().and_then(|a| servers.get(&a.server_id));
            let notice = Notice::new(&event, alert.as_ref(), server, &public_url);
            let started = Instant::now();
            let result = match tokio::time::timeout(SEND_TIMEOUT, send(&http, &channel.channel, &notice)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", SEND_TIMEOUT.as_secs())),
            };
            (id, attempts, channel.channel.name, result, started.elapsed())
        });
    }
    let mut attempted = 0;
    while let Some(joined) = sending.join_next().await {
        let Ok((id, attempts, channel, result, took)) = joined else { continue };
        attempted += 1;
        let outcome = match result {
            Ok(()) => DeliveryOutcome { error: None, duration_ms: millis(took), retry_at: None },
            Err(error) => {
                let retry_at = (attempts + 1 < MAX_ATTEMPTS).then(|| now + retry_delay_ms(attempts));
                tracing::warn!(notification = id, channel, error, retry = retry_at.is_some(), "notification failed");
                DeliveryOutcome { error: Some(error), duration_ms: millis(took), retry_at }
            }
        };
        state.store.record_delivery(id, outcome, now).await?;
    }
    Ok(attempted)
}

fn millis(took: std::time::Duration) -> i64 {
    i64::try_from(took.as_millis()).unwrap_or(i64::MAX)
}

/// Queues a reminder for every alert still firing unacknowledged past its channel's
/// repeat interval.
pub async fn queue_repeats(state: &AppState, now: i64) -> Result<usize, StoreError> {
    let due = state.store.repeats_due(now).await?;
    let count = due.len();
    if count > 0 {
        let reminders = due
            .into_iter()
            .map(|(alert, channel)| NewNotification {
                alert_id: Some(alert),
                channel_id: channel,
                event: "repeat".into(),
            })
            .collect();
        state.store.enqueue_notifications(reminders, now).await?;
    }
    Ok(count)
}

/// Delivers until `stop` turns true: at once when woken, else every second.
pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    loop {
        if state.leads()
            && let Err(e) = deliver_due(&state, state.now()).await
        {
            tracing::warn!(error = %e, "notification delivery round failed; will retry");
        }
        tokio::select! {
            () = state.wake_notifier.notified() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let delays: Vec<i64> = (0..10).map(retry_delay_ms).collect();
        assert_eq!(&delays[..4], [30_000, 60_000, 120_000, 240_000]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(delays[9], 3_600_000);
    }
}
