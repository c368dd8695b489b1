//! Dialect B (the modular agent): pre-provisioned credentials, nested metrics, naive
//! timestamps, services keyed by unit, single wrapped alerts, `result` acks.

use serde_json::json;
use serverpulse_domain::Role;
use sqlx::Row;

use crate::support::{T0, spawn_app};

fn nested_report(timestamp: &str, rx_eth0: u64, tx_eth0: u64, nginx: &str) -> serde_json::Value {
    json!({"agent_id":"web-01-1718990000","timestamp":timestamp,"metrics":{
        "cpu":{"usage_percent":37.5,"usage_per_core":[30.0,45.0],"times":{"user":100.0,"system":50.0}},
        "memory":{"virtual":{"total":8_000_000_000u64,"available":2_000_000_000u64,"used":6_000_000_000u64,
                             "free":1_000_000_000u64,"percent":75.0},
                  "swap":{"total":0,"used":0,"free":0,"percent":0.0}},
        "disk":{"usage":{"/":{"device":"/dev/sda1","fstype":"ext4","total":100_000,"used":40_000,"free":60_000,"percent":60.0},
                         "/boot":{"device":"/dev/sda2","fstype":"ext4","total":100,"used":99,"free":1,"percent":1.0}},
                "io":{"read_bytes":5_000,"write_bytes":7_000,"read_count":1,"write_count":2}},
        "network":{"interfaces":{"lo":{"bytes_sent":1_000_000,"bytes_recv":1_000_000},
                                  "eth0":{"bytes_sent":tx_eth0,"bytes_recv":rx_eth0},
                                  "wg0":{"bytes_sent":10,"bytes_recv":20}},
                   "connections":42},
        "uptime":{"seconds":86_400,"boot_time":1_750_451_400,"uptime_string":"1 day, 0:00:00"},
        "load_average":{"1min":0.75,"5min":0.5,"15min":0.25},
        "processes":{"by_cpu":[],"by_memory":[],"total_count":123},
        "system_info":{"hostname":"web-01"},
        "services":{"nginx":{"status":nginx,"active_state":nginx,"sub_state":"running","main_pid":1234},
                    "cron":{"status":"active","active_state":"active","sub_state":"running"}}}})
}

#[tokio::test]
async fn modular_agent_with_preprovisioned_credentials() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, _) = hub.add_server(&admin, "web-01", "10.0.0.21").await;
    let creds =
        hub.post(&format!("/api/v1/servers/{server_id}/credentials"), Some(&admin), json!({})).await.expect(201);
    let agent = creds["agent_id"].as_str().unwrap().to_owned();
    let token = creds["auth_token"].as_str().unwrap().to_owned();

    let reg = hub
        .post(
            "/api/v1/agents/register",
            Some(&token),
            json!({"agent_id":"web-01-1718990000","hostname":"web-01","system":"Linux","release":"6.1.0-18-amd64",
                   "version":"#1 SMP Debian","machine":"x86_64","processor":"","agent_version":"2.1.0",
                   "registration_time":"2025-06-21T20:29:59.123456"}),
        )
        .await
        .ok();
    assert_eq!(reg["agent_id"], json!(agent), "the hub's id for the existing agent");
    assert_eq!(reg["auth_token"], json!(null), "no new token for pre-provisioned credentials");
    assert_eq!(reg["server_id"], json!(server_id));

    hub.post(
        &format!("/api/v1/agents/{agent}/metrics"),
        Some(&token),
        nested_report("2025-06-21T20:30:00.123456", 3_000, 1_000, "active"),
    )
    .await
    .ok();
    hub.clock.advance(30_000);
    hub.post(
        &format!("/api/v1/agents/{agent}/metrics"),
        Some(&token),
        nested_report("2025-06-21T20:30:30.123456", 33_000, 16_000, "failed"),
    )
    .await
    .ok();

    let rows = hub
        .rows(
            "SELECT agent_time, cpu_usage, ram_usage, disk_usage, uptime, load_average, network_rx, network_tx, \
             disk_io_read, disk_io_write, network_rx_rate, network_tx_rate FROM performance_logs \
             WHERE server_id = ? ORDER BY agent_time",
            server_id,
        )
        .await;
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get::<i64, _>("agent_time"), T0 + 123, "naive time is UTC");
    assert_eq!(first.get::<f64, _>("cpu_usage"), 37.5);
    assert_eq!(first.get::<f64, _>("ram_usage"), 75.0);
    assert_eq!(first.get::<f64, _>("disk_usage"), 40.0, "used/total of /, not the agent's percent-free");
    assert_eq!(first.get::<i64, _>("uptime"), 86_400);
    assert_eq!(first.get::<f64, _>("load_average"), 0.75);
    assert_eq!(first.get::<i64, _>("network_rx"), 3_020, "eth0 + wg0, loopback excluded");
    assert_eq!(first.get::<i64, _>("network_tx"), 1_010);
    assert_eq!(first.get::<i64, _>("disk_io_read"), 5_000);
    assert_eq!(first.get::<i64, _>("disk_io_write"), 7_000);
    assert_eq!(first.get::<Option<f64>, _>("network_rx_rate"), None, "no rate without a previous report");
    let second = &rows[1];
    assert_eq!(second.get::<f64, _>("network_rx_rate"), 1_000.0, "30,000 bytes in 30 s");
    assert_eq!(second.get::<f64, _>("network_tx_rate"), 500.0);

    let services = hub
        .rows("SELECT name, status, sub_state FROM service_states WHERE server_id = ? ORDER BY name", server_id)
        .await;
    assert_eq!(services.len(), 2);
    assert_eq!(services[1].get::<String, _>("name"), "nginx");
    assert_eq!(services[1].get::<String, _>("status"), "failed");
    let history = hub
        .rows(
            "SELECT from_status, to_status FROM service_history WHERE server_id = ? AND name = 'nginx' ORDER BY id",
            server_id,
        )
        .await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].get::<String, _>("from_status"), "active");
    assert_eq!(history[1].get::<String, _>("to_status"), "failed");
    let change_events = hub
        .scalar_i64(
            "SELECT COUNT(*) FROM events WHERE server_id = ? AND kind = 'service_status' AND message LIKE '%nginx%failed%'",
            server_id,
        )
        .await;
    assert_eq!(change_events, 1);

    hub.post(
        &format!("/api/v1/agents/{agent}/heartbeat"),
        Some(&token),
        json!({"agent_id":"web-01-1718990000","timestamp":"2025-06-21T20:30:31.5","status":"online"}),
    )
    .await
    .ok();

    for (severity, stored) in [("low", "info"), ("medium", "warning"), ("high", "error"), ("critical", "critical")] {
        hub.post(
            &format!("/api/v1/agents/{agent}/alerts"),
            Some(&token),
            json!({"agent_id":"web-01-1718990000","timestamp":"2025-06-21T20:30:32.000001",
                   "alert":{"type":"service_failure","severity":severity,"message":"nginx failed",
                            "details":{"unit":"nginx","journal":["line 1","line 2"]},
                            "timestamp":"2025-06-21T20:30:31"}}),
        )
        .await
        .ok();
        let last = hub
            .rows(
                "SELECT severity, details, host_time FROM alerts WHERE server_id = ? ORDER BY id DESC LIMIT 1",
                server_id,
            )
            .await;
        assert_eq!(last[0].get::<String, _>("severity"), stored, "{severity}");
        assert_eq!(last[0].get::<i64, _>("host_time"), T0 + 31_000);
        let details: serde_json::Value = serde_json::from_str(&last[0].get::<String, _>("details")).unwrap();
        assert_eq!(details["journal"][1], "line 2");
    }

    let operator = hub.token_for(Role::Operator).await;
    let queued = hub
        .post(&format!("/api/v1/servers/{server_id}/commands"), Some(&operator), json!({"type":"collect_now"}))
        .await
        .expect(201);
    let command_id = queued["id"].as_str().unwrap().to_owned();
    hub.post(
        &format!("/api/v1/agents/{agent}/commands/{command_id}/ack"),
        Some(&token),
        json!({"command_id": command_id, "result":{"success":false,"output":"collector busy"},
               "timestamp":"2025-06-21T20:31:00.5"}),
    )
    .await
    .ok();
    let command = hub.rows("SELECT state, output FROM commands WHERE server_id = ?", server_id).await;
    assert_eq!(command[0].get::<String, _>("state"), "failed");
    assert_eq!(command[0].get::<String, _>("output"), "collector busy");
}
