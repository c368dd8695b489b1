//! Idempotent replays, gzip batches, and counters turned into rates.

use reqwest::Method;
use serde_json::{Value, json};
use serverpulse_domain::Role;
use sqlx::Row;

use crate::support::{T0, gzip, spawn_app};

fn report(seq: u64, at_ms: i64, rx: u64, uptime: u64) -> Value {
    let timestamp = chrono::DateTime::from_timestamp_millis(at_ms).unwrap().to_rfc3339();
    json!({"seq": seq, "timestamp": timestamp,
           "metrics": {"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0, "uptime": uptime,
                       "network_rx": rx, "network_tx": 0}})
}

#[tokio::test]
async fn replaying_a_seq_stores_it_once() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.30.0.1").await;
    let path = format!("/api/v1/agents/{agent}/metrics");
    let first = hub.post(&path, Some(&token), report(5, T0, 100, 1000)).await.ok();
    assert_eq!(first["stored_seqs"], json!([5]));
    let again = hub.post(&path, Some(&token), report(5, T0, 100, 1000)).await.ok();
    assert_eq!(again["stored"], json!(0));
    assert_eq!(again["duplicate_seqs"], json!([5]));
    // A batch overlapping what is stored, with a duplicate inside itself too.
    let batch = json!({"reports": [report(5, T0, 100, 1000), report(6, T0 + 30_000, 200, 1030), report(6, T0 + 30_000, 200, 1030)]});
    let mixed = hub.post(&path, Some(&token), batch).await.ok();
    assert_eq!(mixed["stored_seqs"], json!([6]));
    assert_eq!(mixed["duplicate_seqs"], json!([5, 6]));
    let count = hub.scalar_i64("SELECT COUNT(*) FROM performance_logs WHERE server_id = ?", server_id).await;
    assert_eq!(count, 2);
}

#[tokio::test]
async fn a_gzip_batch_of_100_reports_stores_100() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.30.0.2").await;
    let reports: Vec<Value> =
        (0..100).map(|i| report(1_000 + i, T0 - 3_000_000 + i as i64 * 30_000, 1_000 * i, 10_000 + 30 * i)).collect();
    let body = gzip(json!({ "reports": reports }).to_string().as_bytes());
    let answer = hub
        .send_raw(
            Method::POST,
            &format!("/api/v1/agents/{agent}/metrics"),
            Some(&token),
            &[("content-encoding", "gzip"), ("content-type", "application/json")],
            Some(body),
        )
        .await
        .ok();
    assert_eq!(answer["stored"], json!(100));
    let seqs = hub
        .rows("SELECT seq FROM performance_logs WHERE server_id = ? ORDER BY seq", server_id)
        .await
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect::<Vec<_>>();
    assert_eq!(seqs, (1_000..1_100).collect::<Vec<_>>());
    // Steady 1000 bytes per 30 s after the first.
    let rates = hub
        .rows("SELECT network_rx_rate FROM performance_logs WHERE server_id = ? ORDER BY agent_time", server_id)
        .await;
    assert_eq!(rates[0].get::<Option<f64>, _>(0), None);
    for row in &rates[1..] {
        let rate: f64 = row.get(0);
        assert!((rate - 1000.0 / 30.0).abs() < 1e-9, "{rate}");
    }
    // last_metrics is the newest report of the batch.
    let viewer = hub.token_for(Role::Viewer).await;
    let server = hub.get(&format!("/api/v1/servers/{server_id}"), Some(&viewer)).await.expect(200);
    assert_eq!(server["server"]["last_metrics"]["network_rx"], json!(99_000));
    let history = hub
        .get(&format!("/api/v1/servers/{server_id}/metrics?from={}&to={}", T0 - 4_000_000, T0), Some(&viewer))
        .await
        .expect(200);
    assert_eq!(history["samples"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn a_report_sent_alone_in_a_gzip_body_is_kept_as_that_body() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.30.0.4").await;
    let mut document = report(7, T0, 1_000, 100);
    document["metrics"]["detail"] = json!({"processes": {"top_cpu": vec![json!({"name": "nginx", "cpu": 1.5}); 5]}});
    let path = format!("/api/v1/agents/{agent}/metrics");
    let send = |body: Vec<u8>| {
        hub.send_raw(
            Method::POST,
            &path,
            Some(&token),
            &[("content-encoding", "gzip"), ("content-type", "application/json")],
            Some(body),
        )
    };
    // As the agent sends it: a batch of one; then a lone report, and a batch of two.
    let sent = gzip(format!(r#"{{"reports":[{document}]}}"#).as_bytes());
    assert_eq!(send(sent.clone()).await.ok()["stored"], json!(1));
    let mut lone = document.clone();
    lone["seq"] = json!(8);
    lone["timestamp"] = json!(chrono::DateTime::from_timestamp_millis(T0 + 30_000).unwrap().to_rfc3339());
    let sent_lone = gzip(lone.to_string().as_bytes());
    assert_eq!(send(sent_lone.clone()).await.ok()["stored"], json!(1));
    let pair: Vec<Value> = (9..11)
        .map(|seq| {
            let mut one = document.clone();
            one["seq"] = json!(seq);
            let at = T0 + 30_000 * (seq as i64 - 7);
            one["timestamp"] = json!(chrono::DateTime::from_timestamp_millis(at).unwrap().to_rfc3339());
            one
        })
        .collect();
    assert_eq!(send(gzip(json!({"reports": pair}).to_string().as_bytes())).await.ok()["stored"], json!(2));

    let rows = hub
        .rows("SELECT raw_packed, raw_packing FROM performance_logs WHERE server_id = ? ORDER BY seq", server_id)
        .await;
    let stored: Vec<(Vec<u8>, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(stored[0], (sent, Some(1)), "the body as it came");
    assert_eq!(stored[1], (sent_lone, Some(1)));
    assert!(stored[2..].iter().all(|(_, packing)| packing.is_none()), "a batch of two is split, each packed");

    let viewer = hub.token_for(Role::Viewer).await;
    let history = hub
        .get(&format!("/api/v1/servers/{server_id}/metrics?from={}&to={}", T0, T0 + 90_000), Some(&viewer))
        .await
        .expect(200);
    let raws: Vec<&Value> = history["samples"].as_array().unwrap().iter().map(|s| &s["raw"]).collect();
    assert_eq!(raws, [&document, &lone, &pair[0], &pair[1]], "each reads back as the report sent");
}

#[tokio::test]
async fn counter_resets_are_not_negative_rates_and_replays_fix_neighbours() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.30.0.3").await;
    let path = format!("/api/v1/agents/{agent}/metrics");
    hub.post(&path, Some(&token), report(1, T0 - 120_000, 900_000, 5_000)).await.ok();
    // Reboot: up 20 s at the end of a 120 s gap, so all 2000 bytes came in those 20 s.
    hub.post(&path, Some(&token), report(3, T0, 2_000, 20)).await.ok();
    // Counter dropped without a reboot (driver reload): no rate at all.
    hub.post(&path, Some(&token), report(4, T0 + 30_000, 1_000, 50)).await.ok();
    let rates = |rows: Vec<sqlx::sqlite::SqliteRow>| -> Vec<Option<f64>> { rows.iter().map(|r| r.get(0)).collect() };
    let q = "SELECT network_rx_rate FROM performance_logs WHERE server_id = ? ORDER BY agent_time";
    assert_eq!(rates(hub.rows(q, server_id).await), [None, Some(100.0), None]);

    // The report in the middle arrives late (a spool replay): seq 2 at T0-60s.
    hub.post(&path, Some(&token), report(2, T0 - 60_000, 960_000, 5_060)).await.ok();
    assert_eq!(
        rates(hub.rows(q, server_id).await),
        [None, Some(1_000.0), Some(100.0), None],
        "the late report gets its rate, and the reboot report is measured from it"
    );
}
