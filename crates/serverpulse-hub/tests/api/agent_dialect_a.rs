//! Dialect A (the documented single-file agent), with bodies exactly as PROTOCOL.md shows them.

use reqwest::Method;
use serde_json::json;
use serverpulse_domain::Role;
use sqlx::Row;

use crate::support::{T0, spawn_app};

#[tokio::test]
async fn documented_agent_round_trip_is_stored_as_sent() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _) = hub.add_server(&admin, "production-server-01", "192.168.1.100").await;

    let reg = hub
        .post(
            "/api/v1/agents/register",
            None,
            json!({"server_ip":"192.168.1.100","hostname":"production-server-01","agent_version":"1.0.0",
                   "system_info":{"os":"Ubuntu 20.04","kernel":"5.4.0-74-generic","arch":"x86_64"}}),
        )
        .await
        .ok();
    assert_eq!(reg["server_id"], json!(server_id));
    assert_eq!(reg["config"], json!({"collection_interval":30,"heartbeat_interval":60,"metrics_enabled":true}));
    let agent = reg["agent_id"].as_str().unwrap().to_owned();
    let token = reg["auth_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "256-bit token in hex");

    let metrics = hub
        .post(
            &format!("/api/v1/agents/{agent}/metrics"),
            Some(&token),
            json!({"timestamp":"2025-06-21T20:30:00Z",
                   "metrics":{"cpu_usage":45.2,"memory_usage":67.8,"disk_usage":23.4,"uptime":123456,
                              "load_average":1.5,"network_rx":1024000,"network_tx":512000,
                              "disk_io_read":2048000,"disk_io_write":1024000,"response_time":12.5},
                   "services":[{"name":"ssh","status":"active"},{"name":"mysql","status":"failed"}]}),
        )
        .await
        .ok();
    assert_eq!(metrics["stored"], json!(1));

    let row = &hub
        .rows(
            "SELECT agent_time, cpu_usage, ram_usage, disk_usage, uptime, load_average, network_rx, network_tx, \
             disk_io_read, disk_io_write, response_time, raw, raw_packed, raw_packing FROM performance_logs \
             WHERE server_id = ?",
            server_id,
        )
        .await[0];
    assert_eq!(row.get::<i64, _>("agent_time"), T0);
    assert_eq!(row.get::<f64, _>("cpu_usage"), 45.2);
    assert_eq!(row.get::<f64, _>("ram_usage"), 67.8);
    assert_eq!(row.get::<f64, _>("disk_usage"), 23.4);
    assert_eq!(row.get::<i64, _>("uptime"), 123_456);
    assert_eq!(row.get::<f64, _>("load_average"), 1.5);
    assert_eq!(row.get::<i64, _>("network_rx"), 1_024_000);
    assert_eq!(row.get::<i64, _>("network_tx"), 512_000);
    assert_eq!(row.get::<i64, _>("disk_io_read"), 2_048_000);
    assert_eq!(row.get::<i64, _>("disk_io_write"), 1_024_000);
    assert_eq!(row.get::<f64, _>("response_time"), 12.5);
    assert_eq!(row.get::<String, _>("raw"), "", "the document is kept packed, not twice");
    let packing = row.get::<Option<i64>, _>("raw_packing");
    assert_eq!(packing, None, "an uncompressed body: its text is packed");
    let packed = serverpulse_store::packed::unpack(&row.get::<Vec<u8>, _>("raw_packed"), packing).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&packed).unwrap();
    assert_eq!(raw["services"][1]["name"], "mysql", "raw document kept");

    let services =
        hub.rows("SELECT name, status FROM service_states WHERE server_id = ? ORDER BY name", server_id).await;
    let services: Vec<(String, String)> = services.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(services, [("mysql".into(), "failed".into()), ("ssh".into(), "active".into())]);

    hub.clock.advance(1_000);
    hub.post(&format!("/api/v1/agents/{agent}/heartbeat"), Some(&token), json!({})).await.ok();
    let beat = hub.scalar_i64("SELECT agent_last_heartbeat FROM servers WHERE id = ?", server_id).await;
    assert_eq!(beat, T0 + 1_000);

    hub.post(
        &format!("/api/v1/agents/{agent}/alerts"),
        Some(&token),
        json!({"alerts":[
            {"type":"high_cpu","message":"CPU at 95%","severity":"warning","timestamp":"2025-06-21T20:29:00Z"},
            {"type":"disk_full","message":"/ at 99%","severity":"critical","timestamp":"2025-06-21T20:29:30Z"}]}),
    )
    .await
    .ok();
    let alerts = hub
        .rows(
            "SELECT type, severity, message, host_time FROM alerts WHERE server_id = ? AND source = 'agent' ORDER BY id",
            server_id,
        )
        .await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].get::<String, _>("severity"), "warning");
    assert_eq!(alerts[1].get::<String, _>("severity"), "critical");
    assert_eq!(alerts[1].get::<i64, _>("host_time"), T0 - 30_000);

    // An operator queues a command; the agent fetches it, signed, and acknowledges it.
    let operator = hub.token_for(Role::Operator).await;
    let queued = hub
        .post(
            &format!("/api/v1/servers/{server_id}/commands"),
            Some(&operator),
            json!({"type":"restart_service","args":{"service":"mysql"}}),
        )
        .await
        .expect(201);
    let command_id = queued["id"].as_str().unwrap().to_owned();
    let pending = hub.get(&format!("/api/v1/agents/{agent}/commands"), Some(&token)).await.ok();
    let command = &pending["commands"][0];
    assert_eq!(command["id"], json!(command_id));
    assert_eq!(command["type"], "restart_service");
    assert_eq!(command["args"], json!({"service":"mysql"}));
    let expected = serverpulse_domain::TokenDigest::of(&token).sign(&serverpulse_proto::command::signing_payload(
        &command_id,
        serverpulse_proto::command::CommandType::RestartService,
        &json!({"service":"mysql"}),
        command["issued_at"].as_str().unwrap(),
        command["expires_at"].as_str().unwrap(),
    ));
    assert_eq!(command["signature"], json!(expected));

    let ack = hub
        .post(
            &format!("/api/v1/agents/{agent}/commands/{command_id}/ack"),
            Some(&token),
            json!({"command_id": command_id, "status":"succeeded","output":"restarted","exit_code":0,
                   "timestamp":"2025-06-21T20:31:00Z"}),
        )
        .await
        .ok();
    assert_eq!(ack["duplicate"], json!(false));
    let again = hub
        .post(
            &format!("/api/v1/agents/{agent}/commands/{command_id}/ack"),
            Some(&token),
            json!({"command_id": command_id, "status":"failed"}),
        )
        .await
        .ok();
    assert_eq!(again["duplicate"], json!(true), "the first ack stands");
    let state = hub.rows("SELECT state, output, exit_code FROM commands WHERE server_id = ?", server_id).await;
    assert_eq!(state[0].get::<String, _>("state"), "succeeded");
    assert_eq!(state[0].get::<String, _>("output"), "restarted");
    let after_ack = hub.get(&format!("/api/v1/agents/{agent}/commands"), Some(&token)).await.ok();
    assert_eq!(after_ack["commands"], json!([]));

    // The REST view shows the same thing.
    let viewer = hub.token_for(Role::Viewer).await;
    let detail = hub.send(Method::GET, &format!("/api/v1/servers/{server_id}"), Some(&viewer), None).await.expect(200);
    assert_eq!(detail["server"]["agent_status"], "active");
    assert_eq!(detail["server"]["hostname"], "production-server-01");
    assert_eq!(detail["server"]["agent_version"], "1.0.0");
    assert_eq!(detail["server"]["last_metrics"]["cpu_usage"], json!(45.2));
    assert_eq!(detail["server"]["agent_config"]["system_info"]["kernel"], "5.4.0-74-generic");
    assert_eq!(detail["server"]["agent_config"]["config"]["collection_interval"], json!(30));
    assert_eq!(detail["services"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn heartbeat_without_body_and_several_alert_severities() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.1.0.1").await;
    let answer =
        hub.send_raw(Method::POST, &format!("/api/v1/agents/{agent}/heartbeat"), Some(&token), &[], None).await.ok();
    assert_eq!(answer["config"]["heartbeat_interval"], json!(60));
    for severity in ["info", "warning", "error", "critical"] {
        hub.post(
            &format!("/api/v1/agents/{agent}/alerts"),
            Some(&token),
            // Distinct types: alerts of one type within minutes join one episode.
            json!({"alerts":[{"type":format!("t_{severity}"),"message":"m","severity":severity,
                              "timestamp":"2025-06-21T20:30:00Z"}]}),
        )
        .await
        .ok();
    }
    let stored = hub
        .rows("SELECT severity FROM alerts WHERE server_id = ? ORDER BY id", server_id)
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect::<Vec<_>>();
    assert_eq!(stored, ["info", "warning", "error", "critical"]);
}
