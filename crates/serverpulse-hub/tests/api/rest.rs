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

#[tokio::test]
async fn health_and_openapi_document() {
    let hub = spawn_app().await;
    let health = hub.get("/api/v1/health", None).await.expect(200);
    assert_eq!(health, json!({"status":"ok","version": env!("CARGO_PKG_VERSION")}));
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
