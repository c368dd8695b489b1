//! The inventory API beyond roles: create/read/update/delete, events, OpenAPI.

use reqwest::Method;
use serde_json::json;
use serverpulse_domain::Role;

use crate::support::spawn_app;

#[tokio::test]
async fn server_lifecycle_over_rest() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let created = hub.post("/api/v1/servers", Some(&admin), json!({"name":"db-1","ip":"10.60.0.1"})).await.expect(201);
    let id = created["server"]["id"].as_i64().unwrap();
    assert_eq!(created["server"]["agent_status"], "inactive");
    let token = created["enrollment_token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(created["expires_at"].as_i64().unwrap() > hub.state.now());
    assert_eq!(
        created["install_command"],
        json!(format!("curl -fsSL '{}/install.sh?token={token}' | sudo sh", hub.base))
    );

    let list = hub.get("/api/v1/servers", Some(&admin)).await.expect(200);
    assert_eq!(list["servers"].as_array().unwrap().len(), 1);

    let renamed = hub
        .send(
            Method::PATCH,
            &format!("/api/v1/servers/{id}"),
            Some(&admin),
            Some(json!({"name":"db-primary","ip":"10.60.0.2"})),
        )
        .await
        .expect(200);
    assert_eq!(renamed["name"], "db-primary");
    assert_eq!(renamed["ip"], "10.60.0.2");

    // Register, then delete: the agent's token stops working, the log keeps the removal.
    let registered =
        hub.post("/api/v1/agents/register", None, json!({"hostname":"db","enrollment_token": token})).await.ok();
    let agent = registered["agent_id"].as_str().unwrap();
    let agent_token = registered["auth_token"].as_str().unwrap();
    hub.send(Method::DELETE, &format!("/api/v1/servers/{id}"), Some(&admin), None).await.expect(200);
    hub.get(&format!("/api/v1/servers/{id}"), Some(&admin)).await.expect(404);
    hub.post(&format!("/api/v1/agents/{agent}/heartbeat"), Some(agent_token), json!({})).await.expect(401);
    let events = hub.get("/api/v1/events", Some(&admin)).await.expect(200);
    let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"server_removed"), "{kinds:?}");
    assert!(kinds.contains(&"agent_registered") && kinds.contains(&"server_added"), "{kinds:?}");
    let paged = hub
        .get(&format!("/api/v1/events?limit=1&before={}", events["events"][0]["id"]), Some(&admin))
        .await
        .expect(200);
    assert_eq!(paged["events"].as_array().unwrap().len(), 1);
    assert_eq!(paged["events"][0]["id"], events["events"][1]["id"]);
}

/// Settings set on the hub reach the agent in the heartbeat answer; the agent's reported
/// revision comes back as `applied_version`; a bad document names its field and changes nothing.
#[tokio::test]
async fn agent_settings_reach_the_agent_and_its_answer_comes_back() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.60.0.7").await;
    let path = format!("/api/v1/servers/{server_id}/agent-settings");
    let heartbeat = format!("/api/v1/agents/{agent}/heartbeat");

    let initial = hub.get(&path, Some(&admin)).await.expect(200);
    assert_eq!((initial["version"].clone(), initial["settings"].clone()), (json!(0), json!({})));
    let defaults = hub.post(&heartbeat, Some(&token), json!({})).await.expect(200);
    assert_eq!(
        defaults["config"],
        json!({"collection_interval": hub.state.settings.collection_interval_secs,
               "heartbeat_interval": hub.state.settings.heartbeat_interval_secs, "metrics_enabled": true}),
        "nothing set: exactly the documented shape"
    );

    let settings = json!({"collection_interval": 15, "thresholds": {"cpu": 70.0, "hold_seconds": 30},
                          "services": ["nginx", "postgresql"],
                          "custom_logs": [{"path": "/var/log/app.log", "patterns": ["FATAL"]}]});
    let set = hub.send(Method::PUT, &path, Some(&admin), Some(settings.clone())).await.expect(200);
    assert_eq!(set["version"], 1);
    assert_eq!(set["settings"], settings);
    assert_eq!(set["effective"]["heartbeat_interval"], hub.state.settings.heartbeat_interval_secs);
    assert_eq!(set["applied_version"], json!(null));

    let told = hub.post(&heartbeat, Some(&token), json!({})).await.expect(200);
    assert_eq!(told["config"]["config_version"], 1);
    assert_eq!(told["config"]["collection_interval"], 15);
    assert_eq!(told["config"]["services"], json!(["nginx", "postgresql"]));
    assert_eq!(told["config"]["thresholds"]["cpu"], 70.0);
    assert_eq!(told["config"]["custom_logs"][0]["patterns"], json!(["FATAL"]));
    hub.post(&heartbeat, Some(&token), json!({"status": "online", "config_version": 1})).await.expect(200);
    assert_eq!(hub.get(&path, Some(&admin)).await.expect(200)["applied_version"], 1);

    let before = hub.snapshot().await;
    let bad = hub
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"thresholds": {"cpu": 170}, "custom_logs": [{"path": "/x", "patterns": ["("]}]})),
        )
        .await
        .expect(400);
    assert!(bad["details"]["thresholds.cpu"].is_array(), "{bad}");
    assert!(bad["details"]["custom_logs[0].patterns[0]"][0].as_str().unwrap().contains("regex"), "{bad}");
    hub.send(Method::PUT, "/api/v1/servers/9999/agent-settings", Some(&admin), Some(json!({}))).await.expect(404);
    assert_eq!(hub.snapshot().await, before, "refused settings wrote nothing");
}

#[tokio::test]
async fn health_and_openapi_document() {
    let hub = spawn_app().await;
    let health = hub.get("/api/v1/health", None).await.expect(200);
    assert_eq!(
        health,
        json!({"status":"ok","version": env!("CARGO_PKG_VERSION"), "leader": true}),
        "one hub on SQLite leads"
    );
    let doc = hub.get("/api/openapi.json", None).await.expect(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/health",
        "/api/v1/agents/register",
        "/api/v1/agents/{agent_id}/metrics",
        "/api/v1/agents/{agent_id}/heartbeat",
        "/api/v1/agents/{agent_id}/alerts",
        "/api/v1/agents/{agent_id}/commands",
        "/api/v1/agents/{agent_id}/commands/{command_id}/ack",
        "/api/v1/servers",
        "/api/v1/servers/{id}",
        "/api/v1/servers/{id}/metrics",
        "/api/v1/servers/{id}/commands",
        "/api/v1/events",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }
    assert!(doc["components"]["schemas"]["Server"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_token"].is_object());
}

#[tokio::test]
async fn metrics_are_exposed_for_prometheus() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let viewer = hub.token_for(Role::Viewer).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.93.0.1").await;
    hub.send(Method::PATCH, &format!("/api/v1/servers/{server}"), Some(&admin), Some(json!({"name": "web \"1\""})))
        .await
        .expect(200);
    let report = json!({"seq": 1, "timestamp": "2025-06-21T20:30:00Z",
        "metrics": {"cpu_usage": 12.5, "memory_usage": 40.0, "disk_usage": 70.0, "uptime": 3600},
        "services": [{"name": "cron", "status": "failed"}]});
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report).await.ok();
    let unauthorised = hub.client.get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(unauthorised.status(), 401);
    let response = hub.client.get(hub.url("/metrics")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    let labels = format!(r#"{{server="web \"1\"",server_id="{server}"}}"#);
    for line in [
        format!("serverpulse_server_up{labels} 1"),
        format!("serverpulse_cpu_usage_percent{labels} 12.5"),
        format!("serverpulse_uptime_seconds{labels} 3600"),
        format!("serverpulse_failed_services{labels} 1"),
        format!("serverpulse_last_report_timestamp_seconds{labels} 1750537800"),
        "# TYPE serverpulse_cpu_usage_percent gauge".to_owned(),
        "# TYPE serverpulse_hub_ingest_commits_total counter".to_owned(),
        "serverpulse_hub_ingest_requests_total 1".to_owned(),
        "serverpulse_hub_servers 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("serverpulse_load_average{"), "no value, no sample");
}
