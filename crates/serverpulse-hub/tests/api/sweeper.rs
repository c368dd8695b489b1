//! Agent status over time, with the clock in the test's hands.

use serde_json::json;
use serverpulse_domain::Role;
use sqlx::Row;

use crate::support::{T0, spawn_app};

#[tokio::test]
async fn active_disconnected_active_with_events_and_nothing_dropped() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.40.0.1").await;
    let (quiet_id, _, _) = hub.registered_agent(&admin, "10.40.0.2").await;
    let offline = hub.state.settings.offline_after_ms;
    assert_eq!(offline, 180_000, "default is 3 × the 60 s heartbeat");
    let status = |id| hub.rows("SELECT agent_status FROM servers WHERE id = ?", id);

    // Exactly offline_after of silence is still tolerated.
    hub.clock.set(T0 + offline);
    let swept = serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert!(swept.is_empty());

    // One agent keeps its heartbeat; the other falls silent.
    hub.post(&format!("/api/v1/agents/{agent}/heartbeat"), Some(&token), json!({})).await.ok();
    hub.clock.set(T0 + offline + 1);
    let swept = serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert_eq!(swept, [quiet_id]);
    assert_eq!(status(server_id).await[0].get::<String, _>(0), "active");
    assert_eq!(status(quiet_id).await[0].get::<String, _>(0), "disconnected");

    // Later the first one goes quiet too.
    hub.clock.set(T0 + 2 * offline + 10);
    let swept = serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert_eq!(swept, [server_id]);
    // Sweeping again changes nothing and records nothing new.
    let swept = serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert!(swept.is_empty());
    let disconnects = hub
        .scalar_i64(
            "SELECT COUNT(*) FROM events WHERE server_id = ? AND kind = 'agent_status' AND message LIKE '%disconnected%'",
            server_id,
        )
        .await;
    assert_eq!(disconnects, 1);

    // The report that ends the gap is stored and brings the agent back.
    let ts = chrono::DateTime::from_timestamp_millis(hub.state.now()).unwrap().to_rfc3339();
    hub.post(
        &format!("/api/v1/agents/{agent}/metrics"),
        Some(&token),
        json!({"timestamp": ts, "metrics": {"cpu_usage": 5.0, "memory_usage": 5.0, "disk_usage": 5.0}}),
    )
    .await
    .ok();
    assert_eq!(status(server_id).await[0].get::<String, _>(0), "active");
    let stored = hub.scalar_i64("SELECT COUNT(*) FROM performance_logs WHERE server_id = ?", server_id).await;
    assert_eq!(stored, 1);
    let kinds = hub
        .rows("SELECT message FROM events WHERE server_id = ? AND kind = 'agent_status' ORDER BY id", server_id)
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect::<Vec<_>>();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds[0].contains("disconnected") && kinds[1].contains("active again"), "{kinds:?}");
}

#[tokio::test]
async fn the_background_loop_sweeps_on_its_own() {
    let mut settings = serverpulse_hub::config::Settings::defaults();
    settings.sweep_interval = std::time::Duration::from_millis(20);
    let hub = crate::support::spawn_with(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _, _) = hub.registered_agent(&admin, "10.40.0.3").await;
    hub.clock.advance(hub.state.settings.offline_after_ms + 1);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serverpulse_hub::sweeper::run(hub.state.clone(), stopped));
    let mut status = String::new();
    for _ in 0..200 {
        status = hub.rows("SELECT agent_status FROM servers WHERE id = ?", server_id).await[0].get(0);
        if status == "disconnected" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(status, "disconnected");
}
