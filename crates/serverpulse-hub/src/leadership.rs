//! Which hub runs the background work when several share one database.
//!
//! Sweeps, notification delivery, summaries, retention and compaction must each happen
//! once per database, not once per hub. Every few seconds each hub asks the store
//! ([`serverpulse_store::Store::lead`]) whether it leads; the answer sets
//! [`AppState::leads`], which every background loop checks before its round. A leader
//! that dies loses the role with its database session, and the next hub to ask takes
//! it over. Where only one hub can open the database, it leads from the start.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;

/// How often a hub asks: the longest a dead leader's work waits for a successor.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Asks the store once and records the answer; returns whether this hub leads.
pub async fn check_once(state: &AppState) -> bool {
    let leads = match state.store.lead().await {
        Ok(leads) => leads,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether this hub leads; background work pauses here");
            false
        }
    };
    let before = state.leader.swap(leads, Ordering::AcqRel);
    if leads != before {
        if leads {
            tracing::info!("this hub now runs the background work for its database");
        } else {
            tracing::warn!("this hub no longer runs the background work; another hub does");
        }
    }
    leads
}

/// Checks every [`CHECK_EVERY`] until `stop` turns true.
pub async fn run(state: AppState, stop: watch::Receiver<bool>) {
    crate::background::every("leadership", CHECK_EVERY, stop, || async {
        check_once(&state).await;
    })
    .await;
}
