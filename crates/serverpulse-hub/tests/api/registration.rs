//! The three ways to register, and the refusals that keep a live agent safe.

use serde_json::json;
use serverpulse_domain::Role;

use crate::support::spawn_app;

fn a_body(ip: &str) -> serde_json::Value {
    json!({"server_ip": ip, "hostname": "h", "agent_version": "1.0.0", "system_info": {"os": "Debian"}})
}

#[tokio::test]
async fn enrollment_token_in_body_or_header_is_single_use() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, enrollment) = hub.add_server(&admin, "a", "10.9.0.1").await;

    // The token works without any IP match (the agent may be behind NAT).
    let first =
        hub.post("/api/v1/agents/register", None, json!({"hostname":"a","enrollment_token": enrollment})).await.ok();
    assert_eq!(first["server_id"], json!(server_id));
    assert!(first["auth_token"].is_string());

    let reused = hub
        .post("/api/v1/agents/register", None, json!({"hostname":"a","enrollment_token": enrollment}))
        .await
        .expect(401);
    assert_eq!(reused["error"], "Enrollment token is invalid, used or expired");

    // A fresh token in the header replaces the agent; the old agent token stops working.
    let fresh = hub.post(&format!("/api/v1/servers/{server_id}/enrollment"), Some(&admin), json!({})).await.expect(201);
    let fresh_token = fresh["enrollment_token"].as_str().unwrap();
    let answer = hub
        .send_raw(
            reqwest::Method::POST,
            "/api/v1/agents/register",
            None,
            &[("x-enrollment-token", fresh_token)],
            Some(br#"{"hostname":"a-reinstalled"}"#.to_vec()),
        )
        .await
        .ok();
    assert_ne!(answer["agent_id"], first["agent_id"]);
    let old_agent = first["agent_id"].as_str().unwrap();
    hub.post(&format!("/api/v1/agents/{old_agent}/heartbeat"), first["auth_token"].as_str(), json!({}))
        .await
        .expect(401);
}

#[tokio::test]
async fn expired_enrollment_token_is_refused() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (_, enrollment) = hub.add_server(&admin, "b", "10.9.0.2").await;
    hub.clock.advance(hub.state.settings.enrollment_ttl_ms + 1);
    hub.post("/api/v1/agents/register", None, json!({"hostname":"b","enrollment_token": enrollment})).await.expect(401);
    let unknown = "0".repeat(64);
    hub.post("/api/v1/agents/register", None, json!({"hostname":"b","enrollment_token": unknown})).await.expect(401);
}

#[tokio::test]
async fn ip_match_compares_addresses_and_refuses_takeover_of_an_active_agent() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _) = hub.add_server(&admin, "v6", "2001:db8::1").await;
    // Same address, different spelling.
    let first = hub.post("/api/v1/agents/register", None, a_body("2001:0db8:0:0:0:0:0:1")).await.ok();
    assert_eq!(first["server_id"], json!(server_id));

    let takeover = hub.post("/api/v1/agents/register", None, a_body("2001:db8::1")).await.expect(409);
    assert_eq!(takeover["success"], json!(false));
    let agent_id = hub
        .rows("SELECT agent_id FROM servers WHERE id = ?", server_id)
        .await
        .first()
        .map(|r| sqlx::Row::get::<String, _>(r, 0))
        .unwrap();
    assert_eq!(json!(agent_id), first["agent_id"], "the live agent keeps its identity");

    let unknown = hub.post("/api/v1/agents/register", None, a_body("10.200.0.1")).await.expect(404);
    assert_eq!(unknown["error"], "Server not found in ServerPulse. Please add the server first.");
    let nothing = hub.post("/api/v1/agents/register", None, json!({"hostname":"x"})).await.expect(404);
    assert_eq!(nothing["success"], json!(false));
}

#[tokio::test]
async fn ip_registration_is_allowed_again_once_the_agent_is_disconnected() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _, _) = hub.registered_agent(&admin, "10.9.0.3").await;
    hub.clock.advance(hub.state.settings.offline_after_ms + 1);
    serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    let again = hub.post("/api/v1/agents/register", None, a_body("10.9.0.3")).await.ok();
    assert_eq!(again["server_id"], json!(server_id));
}

#[tokio::test]
async fn unknown_bearer_token_on_register_falls_back_to_the_ip() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _) = hub.add_server(&admin, "c", "10.9.0.4").await;
    let answer =
        hub.post("/api/v1/agents/register", Some("GENERATED_AFTER_REGISTRATION"), a_body("10.9.0.4")).await.ok();
    assert_eq!(answer["server_id"], json!(server_id));
}

#[tokio::test]
async fn no_token_is_ever_stored_in_clear() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, enrollment) = hub.add_server(&admin, "d", "10.9.0.5").await;
    let registered =
        hub.post("/api/v1/agents/register", None, json!({"hostname":"d","enrollment_token": enrollment})).await.ok();
    let agent_token = registered["auth_token"].as_str().unwrap().to_owned();
    let creds =
        hub.post(&format!("/api/v1/servers/{server_id}/credentials"), Some(&admin), json!({})).await.expect(201);
    let provisioned = creds["auth_token"].as_str().unwrap().to_owned();
    let api_secret = admin.rsplit('_').next().unwrap().to_owned();

    // Everything SQLite wrote: the main file and its write-ahead log.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(hub.dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let haystack = String::from_utf8_lossy(&bytes);
    for secret in [&enrollment, &agent_token, &provisioned, &api_secret] {
        assert_eq!(secret.len(), 64);
        assert!(!haystack.contains(secret.as_str()), "a secret was stored in clear");
    }
    let digest = serverpulse_domain::TokenDigest::of(&provisioned).to_hex();
    assert!(haystack.contains(&digest), "its SHA-256 is what is kept");
}

/// A change made outside this hub (the CLI, another hub) on the same database reaches
/// its cache of agent identities within a second or so: a disabled agent is refused.
#[tokio::test]
async fn an_agent_disabled_by_another_process_is_refused_within_seconds() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.1.2.3").await;
    let beat = format!("/api/v1/agents/{agent}/heartbeat");
    hub.post(&beat, Some(&token), json!({})).await.expect(200);

    let other = serverpulse_store_sqlite::SqliteStore::open(&hub.dir.path().join("serverpulse.db"), crate::support::T0)
        .await
        .expect("a second handle, as the CLI opens it");
    let disable = serverpulse_store::ServerPatch { agent_enabled: Some(false), ..Default::default() };
    serverpulse_store::Store::update_server(&other, server, disable, crate::support::T0).await.expect("disable");
    let changed = std::time::Instant::now();
    loop {
        let status = hub.post(&beat, Some(&token), json!({})).await.status.as_u16();
        if status != 200 {
            assert_eq!(status, 401, "refused as unknown credentials");
            break;
        }
        assert!(changed.elapsed() < std::time::Duration::from_secs(5), "still accepted 5 s after being disabled");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
