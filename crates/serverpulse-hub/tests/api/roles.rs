//! Roles on every route: viewers read, operators act, admins manage; no token is 401.

use reqwest::Method;
use serde_json::json;
use serverpulse_domain::Role;

use crate::support::spawn_app;

#[tokio::test]
async fn each_role_gets_exactly_its_rights() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let operator = hub.token_for(Role::Operator).await;
    let viewer = hub.token_for(Role::Viewer).await;
    let (server_id, _) = hub.add_server(&admin, "r", "10.50.0.1").await;
    let extra = serverpulse_hub::admin::add_user(
        &hub.state,
        &serverpulse_hub::auth::Admin::console(),
        "extra@example.test",
        Role::Viewer,
        None,
    )
    .await
    .expect("user")
    .0
    .id;
    let server = format!("/api/v1/servers/{server_id}");
    let before = hub.snapshot().await;

    // (method, path, body, lowest role allowed)
    let routes: Vec<(Method, String, Option<serde_json::Value>, Role)> = vec![
        (Method::GET, "/api/v1/servers".into(), None, Role::Viewer),
        (Method::GET, server.clone(), None, Role::Viewer),
        (Method::GET, format!("{server}/metrics"), None, Role::Viewer),
        (Method::GET, format!("{server}/services"), None, Role::Viewer),
        (Method::GET, format!("{server}/commands"), None, Role::Viewer),
        (Method::GET, format!("{server}/agent-settings"), None, Role::Viewer),
        (Method::GET, format!("{server}/chart"), None, Role::Viewer),
        (Method::GET, "/api/v1/users".into(), None, Role::Admin),
        (Method::GET, "/api/v1/tokens".into(), None, Role::Admin),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"email": "new@example.test", "role": "viewer"})),
            Role::Admin,
        ),
        (Method::PATCH, format!("/api/v1/users/{extra}"), Some(json!({"role": "operator"})), Role::Admin),
        (Method::POST, "/api/v1/tokens".into(), Some(json!({"name": "t", "email": "extra@example.test"})), Role::Admin),
        (Method::DELETE, format!("/api/v1/users/{extra}"), None, Role::Admin),
        (Method::GET, "/api/v1/events".into(), None, Role::Viewer),
        (Method::GET, "/api/v1/alerts".into(), None, Role::Viewer),
        (Method::GET, "/api/v1/rules".into(), None, Role::Viewer),
        (Method::GET, "/api/v1/silences".into(), None, Role::Viewer),
        (Method::GET, "/api/v1/notifications".into(), None, Role::Viewer),
        (Method::POST, "/api/v1/silences".into(), Some(json!({"duration_minutes": 10})), Role::Operator),
        (Method::GET, "/api/v1/channels".into(), None, Role::Admin),
        (
            Method::POST,
            "/api/v1/channels".into(),
            Some(json!({"name":"c","kind":"slack","settings":{"url":"http://127.0.0.1:9/x"}})),
            Role::Admin,
        ),
        (Method::GET, "/api/v1/rules/1".into(), None, Role::Viewer),
        (Method::POST, format!("{server}/commands"), Some(json!({"type":"collect_now"})), Role::Operator),
        (Method::POST, "/api/v1/servers".into(), Some(json!({"name":"x","ip":"10.50.0.9"})), Role::Admin),
        (
            Method::POST,
            "/api/v1/rules".into(),
            Some(json!({"name":"r","metric":"swap","op":">","warning":50})),
            Role::Admin,
        ),
        (
            Method::PUT,
            "/api/v1/rules/2".into(),
            Some(json!({"name":"Mem","metric":"memory","op":">","warning":90})),
            Role::Admin,
        ),
        (Method::PATCH, server.clone(), Some(json!({"name":"renamed"})), Role::Admin),
        (Method::POST, format!("{server}/enrollment"), None, Role::Admin),
        (Method::PUT, format!("{server}/agent-settings"), Some(json!({"collection_interval": 20})), Role::Admin),
        (Method::POST, format!("{server}/credentials"), None, Role::Admin),
        (Method::DELETE, server.clone(), None, Role::Admin),
    ];
    let bogus = format!("sp_{}_{}", "0".repeat(16), "0".repeat(64));
    for (method, path, body, _) in &routes {
        for token in [None, Some("not-a-token"), Some(bogus.as_str())] {
            let answer = hub.send(method.clone(), path, token, body.clone()).await;
            assert_eq!(answer.status.as_u16(), 401, "{method} {path} with {token:?}: {}", answer.body);
            assert_eq!(answer.body["error"], "Unauthorized");
        }
    }
    for (method, path, body, needed) in &routes {
        for (role, token) in [(Role::Viewer, &viewer), (Role::Operator, &operator)] {
            if !role.allows(*needed) {
                let answer = hub.send(method.clone(), path, Some(token), body.clone()).await;
                assert_eq!(answer.status.as_u16(), 403, "{role} on {method} {path}: {}", answer.body);
                assert!(answer.body["error"].as_str().unwrap().contains(needed.as_str()));
            }
        }
    }
    assert_eq!(hub.snapshot().await, before, "refused calls wrote nothing");

    // And the allowed ones work (delete last).
    for (method, path, body, needed) in &routes {
        let token = match needed {
            Role::Viewer => &viewer,
            Role::Operator => &operator,
            Role::Admin => &admin,
        };
        let answer = hub.send(method.clone(), path, Some(token), body.clone()).await;
        assert!(answer.status.is_success(), "{needed} on {method} {path}: {} {}", answer.status, answer.body);
    }
}

#[tokio::test]
async fn agent_tokens_are_not_api_tokens_and_vice_versa() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (_, agent, token) = hub.registered_agent(&admin, "10.50.0.2").await;
    hub.get("/api/v1/servers", Some(&token)).await.expect(401);
    hub.post(&format!("/api/v1/agents/{agent}/heartbeat"), Some(&admin), json!({})).await.expect(401);
}
