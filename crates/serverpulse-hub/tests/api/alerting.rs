//! Alerts from rules on the real hub: reports pushed through the agent API with a
//! manual clock; a rule's `for`, escalation, acknowledgement, hysteresis, recovery, a
//! new episode after it; the offline rule from the sweeper; rules checked and scoped.

use reqwest::Method;
use serde_json::{Value, json};
use serverpulse_domain::Role;

use crate::support::{T0, TestHub, spawn_app};

fn report(at_ms: i64, cpu: f64) -> Value {
    let timestamp = chrono::DateTime::from_timestamp_millis(at_ms).unwrap().to_rfc3339();
    json!({"timestamp": timestamp, "metrics": {"cpu_usage": cpu, "memory_usage": 20.0, "disk_usage": 30.0}})
}

async fn alerts(hub: &TestHub, token: &str, query: &str) -> Vec<Value> {
    hub.get(&format!("/api/v1/alerts?{query}"), Some(token)).await.expect(200)["alerts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_rule_episode_from_pending_to_resolved_and_a_new_one_after() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let operator = hub.token_for(Role::Operator).await;
    let viewer = hub.token_for(Role::Viewer).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.1").await;
    let metrics = format!("/api/v1/agents/{agent}/metrics");

    // This server's own CPU rule overrides the default one (80/95 for 5 minutes).
    let rule = hub
        .post(
            "/api/v1/rules",
            Some(&admin),
            json!({"name": "Hot CPU", "metric": "cpu", "op": ">", "warning": 80, "critical": 95, "for": 120,
                   "recovery": 70, "scope": {"servers": [server_id]}}),
        )
        .await
        .expect(201);
    let rule_id = rule["id"].as_i64().unwrap();
    let ours = format!("server={server_id}");

    // Below every threshold: no episode in progress, none kept.
    hub.clock.set(T0 - 60_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 20.0)).await.expect(200);
    let episodes = hub.get(&format!("/api/v1/servers/{server_id}/episodes"), Some(&viewer)).await.expect(200);
    assert_eq!(episodes["episodes"], json!([]), "{episodes}");
    // Above the threshold, but not for 2 minutes yet: nothing fires.
    for minute in 0..2 {
        hub.clock.set(T0 + minute * 60_000);
        hub.post(&metrics, Some(&token), report(hub.state.now(), 85.0)).await.ok();
        assert!(alerts(&hub, &viewer, &ours).await.is_empty(), "minute {minute}");
    }
    // Pending is visible: what is about to fire, since when.
    let episodes = hub.get(&format!("/api/v1/servers/{server_id}/episodes"), Some(&viewer)).await.expect(200);
    let pending = episodes["episodes"].as_array().unwrap().iter().find(|e| e["rule_id"] == rule_id).unwrap().clone();
    assert_eq!((pending["phase"].clone(), pending["since"].clone()), (json!("pending"), json!(T0)), "{pending}");
    assert_eq!(pending["rule"], "Hot CPU");
    // Held for 2 minutes: fires in the same request that carried the report.
    hub.clock.set(T0 + 120_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 86.0)).await.ok();
    let firing = alerts(&hub, &viewer, &format!("{ours}&state=firing")).await;
    assert_eq!(firing.len(), 1);
    let alert = &firing[0];
    let id = alert["id"].as_i64().unwrap();
    assert_eq!((alert["severity"].clone(), alert["rule_id"].clone()), (json!("warning"), json!(rule_id)));
    assert_eq!(alert["started_at"], T0, "the episode began when the condition did");
    assert_eq!((alert["value"].clone(), alert["threshold"].clone()), (json!(86.0), json!(80.0)));
    assert!(alert["message"].as_str().unwrap().contains("86"), "{alert}");

    // Worse: the same episode becomes critical.
    hub.clock.advance(60_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 97.0)).await.ok();
    let escalated = hub.get(&format!("/api/v1/alerts/{id}"), Some(&viewer)).await.expect(200);
    assert_eq!(escalated["severity"], "critical");
    assert_eq!(alerts(&hub, &viewer, &ours).await.len(), 1, "one alert per episode, never one per report");

    // A viewer cannot acknowledge; an operator can, with a comment.
    hub.post(&format!("/api/v1/alerts/{id}/ack"), Some(&viewer), json!({"comment": "x"})).await.expect(403);
    let acked =
        hub.post(&format!("/api/v1/alerts/{id}/ack"), Some(&operator), json!({"comment": "on it"})).await.expect(200);
    assert_eq!((acked["status"].clone(), acked["ack_comment"].clone()), (json!("acknowledged"), json!("on it")));
    assert!(acked["acknowledged_by"].as_str().unwrap().contains('@'));

    // Between the recovery threshold and the threshold: still open (hysteresis).
    hub.clock.advance(60_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 75.0)).await.ok();
    assert_eq!(hub.get(&format!("/api/v1/alerts/{id}"), Some(&viewer)).await.expect(200)["status"], "acknowledged");
    // Past the recovery threshold: resolved by recovery.
    hub.clock.advance(60_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 60.0)).await.ok();
    let resolved = hub.get(&format!("/api/v1/alerts/{id}"), Some(&viewer)).await.expect(200);
    assert_eq!((resolved["status"].clone(), resolved["resolved_by"].clone()), (json!("resolved"), json!("recovery")));
    hub.post(&format!("/api/v1/alerts/{id}/ack"), Some(&operator), json!({})).await.expect(409);

    // Breaching again is a new episode, after its own `for`.
    for _ in 0..3 {
        hub.clock.advance(60_000);
        hub.post(&metrics, Some(&token), report(hub.state.now(), 99.0)).await.ok();
    }
    let all = alerts(&hub, &viewer, &ours).await;
    assert_eq!(all.len(), 2);
    assert_ne!(all[0]["id"], json!(id));
    assert_eq!(all[0]["severity"], "critical");
    // Resolved by hand: the next report above the threshold begins another episode.
    let by_hand = all[0]["id"].as_i64().unwrap();
    hub.post(&format!("/api/v1/alerts/{by_hand}/resolve"), Some(&viewer), json!({})).await.expect(403);
    let closed = hub.post(&format!("/api/v1/alerts/{by_hand}/resolve"), Some(&operator), json!({})).await.expect(200);
    assert!(closed["resolved_by"].as_str().unwrap().contains('@'));
    let episodes = hub.get(&format!("/api/v1/servers/{server_id}/episodes"), Some(&viewer)).await.expect(200);
    assert!(episodes["episodes"].as_array().unwrap().iter().all(|e| e["rule_id"] != rule_id), "{episodes}");
    hub.clock.advance(60_000);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 99.0)).await.ok();
    let episodes = hub.get(&format!("/api/v1/servers/{server_id}/episodes"), Some(&viewer)).await.expect(200);
    let again = episodes["episodes"].as_array().unwrap().iter().find(|e| e["rule_id"] == rule_id).unwrap().clone();
    assert_eq!((again["phase"].clone(), again["since"].clone()), (json!("pending"), json!(hub.state.now())), "{again}");

    // Every transition is in the unified log.
    let events = hub.get(&format!("/api/v1/events?server_id={server_id}"), Some(&viewer)).await.expect(200);
    let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["alert_fired", "alert_escalated", "alert_acknowledged", "alert_resolved"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn the_offline_rule_fires_from_the_sweeper_and_resolves_on_contact() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.2").await;
    let metrics = format!("/api/v1/agents/{agent}/metrics");
    hub.post(&metrics, Some(&token), report(T0, 10.0)).await.ok();
    hub.clock.advance(hub.state.settings.offline_after_ms + 1);
    serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    let offline = alerts(&hub, &admin, &format!("server={server_id}&state=firing")).await;
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(
        (offline[0]["type"].clone(), offline[0]["severity"].clone()),
        (json!("agent_offline"), json!("critical"))
    );
    // A second sweep changes nothing; the agent's next report ends the episode.
    serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now() + 1_000).await.unwrap();
    assert_eq!(alerts(&hub, &admin, &format!("server={server_id}")).await.len(), 1);
    hub.post(&metrics, Some(&token), report(hub.state.now(), 10.0)).await.ok();
    assert_eq!(alerts(&hub, &admin, &format!("server={server_id}&state=resolved")).await.len(), 1);
}

#[tokio::test]
async fn a_no_data_rule_fires_for_the_silent_server_only() {
    // Agents count as offline only after an hour: silence alone must trip the rule.
    let mut settings = serverpulse_hub::config::Settings::defaults();
    settings.offline_after_ms = 3_600_000;
    let hub = crate::support::spawn_with(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let rule = json!({"name": "Silent", "metric": "no_data", "op": ">", "warning": 300});
    hub.post("/api/v1/rules", Some(&admin), rule).await.expect(201);
    let (silent, agent, token) = hub.registered_agent(&admin, "10.70.0.3").await;
    let (talking, other, other_token) = hub.registered_agent(&admin, "10.70.0.4").await;
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0, 10.0)).await.ok();
    hub.clock.advance(299_000);
    hub.post(&format!("/api/v1/agents/{other}/metrics"), Some(&other_token), report(hub.state.now(), 10.0)).await.ok();
    let no_data = |server: i64| {
        let hub = &hub;
        let admin = admin.clone();
        async move {
            let all = alerts(hub, &admin, &format!("server={server}&state=firing")).await;
            all.into_iter().filter(|a| a["type"] == "no_data").count()
        }
    };
    serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert_eq!(no_data(silent).await, 0, "299 s: not yet");
    hub.clock.advance(2_000); // 301 s since the silent one's report, 2 s since the other's
    serverpulse_hub::sweeper::sweep_once(&hub.state, hub.state.now()).await.unwrap();
    assert_eq!(no_data(silent).await, 1, "301 s: fired");
    assert_eq!(no_data(talking).await, 0);
    assert!(alerts(&hub, &admin, &format!("server={talking}")).await.is_empty());
}

#[tokio::test]
async fn rules_are_checked_and_only_admins_change_them() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let operator = hub.token_for(Role::Operator).await;
    let defaults = hub.get("/api/v1/rules", Some(&operator)).await.expect(200);
    let names: Vec<&str> = defaults["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CPU", "Memory", "Disk", "Load per core", "Service failed", "Agent offline"]);

    let before = hub.snapshot().await;
    let good = json!({"name": "Swap", "metric": "swap", "op": ">", "warning": 50});
    hub.post("/api/v1/rules", Some(&operator), good.clone()).await.expect(403);
    let bad = hub
        .post(
            "/api/v1/rules",
            Some(&admin),
            json!({"name": "x", "metric": "cpu", "op": ">", "warning": 80,
                                                     "for": "soon", "scope": {"servers": [999]}}),
        )
        .await
        .expect(400);
    assert!(bad["details"]["for"].is_array(), "{bad}");
    let unknown_server = hub
        .post(
            "/api/v1/rules",
            Some(&admin),
            json!({"name": "x", "metric": "cpu", "op": ">", "warning": 80,
                                                     "scope": {"servers": [999]}}),
        )
        .await
        .expect(400);
    assert!(unknown_server["details"]["scope.servers[0]"].is_array(), "{unknown_server}");
    let taken =
        hub.post("/api/v1/rules", Some(&admin), json!({"name": "CPU", "metric": "cpu", "op": ">", "warning": 1}));
    assert!(taken.await.expect(400)["details"]["name"].is_array());
    hub.get("/api/v1/alerts?state=burning", Some(&admin)).await.expect(400);
    assert_eq!(hub.snapshot().await, before, "refused changes wrote nothing");

    let created = hub.post("/api/v1/rules", Some(&admin), good).await.expect(201);
    let path = format!("/api/v1/rules/{}", created["id"]);
    let changed = hub
        .send(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({"name": "Swap", "metric": "swap", "op": ">", "warning": 60})),
        )
        .await
        .expect(200);
    assert_eq!(changed["warning"], 60.0);
    hub.send(Method::DELETE, &path, Some(&operator), None).await.expect(403);
    hub.send(Method::DELETE, &path, Some(&admin), None).await.expect(200);
    hub.get(&path, Some(&admin)).await.expect(404);
}

#[tokio::test]
async fn rate_rules_see_the_rates_the_hub_derives_from_counters() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.3").await;
    hub.post(
        "/api/v1/rules",
        Some(&admin),
        json!({"name": "Busy link", "metric": "network_rx_rate", "op": ">", "warning": 1000}),
    )
    .await
    .expect(201);
    let counters = |at: i64, rx: u64| {
        let timestamp = chrono::DateTime::from_timestamp_millis(at).unwrap().to_rfc3339();
        json!({"timestamp": timestamp, "metrics": {"cpu_usage": 1.0, "memory_usage": 1.0, "disk_usage": 1.0, "uptime": 1000 + at / 1000,
                                                   "network_rx": rx, "network_tx": 0}})
    };
    let metrics = format!("/api/v1/agents/{agent}/metrics");
    hub.post(&metrics, Some(&token), counters(T0, 0)).await.ok();
    hub.post(&metrics, Some(&token), counters(T0 + 30_000, 15_000)).await.ok();
    assert!(alerts(&hub, &admin, &format!("server={server_id}")).await.is_empty(), "500 B/s");
    hub.post(&metrics, Some(&token), counters(T0 + 60_000, 120_000)).await.ok();
    let fired = alerts(&hub, &admin, &format!("server={server_id}")).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["value"], 3500.0, "105,000 B in 30 s");
}

/// Rules on what only a report's detail carries (a mount, swap, custom metrics) fire on
/// one report posted through the agent API: the handler keeps the document as its text
/// and drops its parsed form, so those figures travel typed with the report.
#[tokio::test]
async fn rules_see_what_only_a_reports_detail_carries() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.9").await;
    let mut rules = Vec::new();
    for metric in ["disk:/var", "swap", "custom:queue_depth", "custom:jobs"] {
        let rule = json!({"name": format!("High {metric}"), "metric": metric, "op": ">", "warning": 50,
                          "scope": {"servers": [server_id]}});
        rules.push(hub.post("/api/v1/rules", Some(&admin), rule).await.expect(201)["id"].as_i64().unwrap());
    }
    let timestamp = chrono::DateTime::from_timestamp_millis(T0).unwrap().to_rfc3339();
    let report = json!({"timestamp": timestamp, "metrics": {"cpu_usage": 1.0, "memory_usage": 1.0, "disk_usage": 1.0,
        "custom": {"queue_depth": 75},
        "detail": {"filesystems": [{"mount": "/", "percent": 10.0}, {"mount": "/var", "percent": 91.5}],
                   "memory": {"swap_percent": 60.0}, "custom": {"jobs": 51}}}});
    hub.clock.set(T0);
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report).await.expect(200);
    let fired = alerts(&hub, &admin, &format!("server={server_id}")).await;
    let by_rule = |rule: i64| fired.iter().find(|a| a["rule_id"] == rule).map(|a| a["value"].clone());
    let values: Vec<Option<Value>> = rules.iter().map(|rule| by_rule(*rule)).collect();
    assert_eq!(values, [Some(json!(91.5)), Some(json!(60.0)), Some(json!(75.0)), Some(json!(51.0))], "{fired:?}");
}

/// The backtest replays stored history through a rule, over the API and the CLI.
#[tokio::test]
async fn backtests_count_the_episodes_a_rule_would_have_had() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let viewer = hub.token_for(Role::Viewer).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.4").await;
    let metrics = format!("/api/v1/agents/{agent}/metrics");
    // Two bursts above 90 %, the first long enough for a 2-minute `for`, the second not.
    let series = [50.0, 95.0, 96.0, 97.0, 40.0, 95.0, 30.0, 20.0];
    for (minute, cpu) in series.into_iter().enumerate() {
        let at = T0 + minute as i64 * 60_000;
        hub.clock.set(at);
        hub.post(&metrics, Some(&token), report(at, cpu)).await.ok();
    }
    let rule = json!({"name": "hot", "metric": "cpu", "op": ">", "critical": 90, "for": 120});
    let request = json!({"rule": rule, "server": server_id, "from": T0 - 1, "to": T0 + 3_600_000});
    let result = hub.post("/api/v1/rules/backtest", Some(&viewer), request).await.expect(200);
    assert_eq!((result["samples"].clone(), result["fired"].clone()), (json!(8), json!(1)), "{result}");
    let episode = &result["episodes"][0];
    assert_eq!(episode["started_at"], T0 + 60_000);
    assert_eq!(episode["fired_at"], T0 + 180_000);
    assert_eq!(episode["resolved_at"], T0 + 240_000);
    assert_eq!(episode["peak"], 97.0);

    let neither = hub.post("/api/v1/rules/backtest", Some(&viewer), json!({"server": server_id})).await.expect(400);
    assert!(neither["details"]["rule"].is_array());
    let absence = json!({"rule": {"name": "o", "metric": "agent_offline"}, "server": server_id});
    let refused = hub.post("/api/v1/rules/backtest", Some(&viewer), absence).await.expect(400);
    assert!(refused["details"]["rule.metric"].is_array(), "{refused}");
    let bad_rule = json!({"rule": {"name": "x", "metric": "cpu", "op": "~"}, "server": server_id});
    let bad = hub.post("/api/v1/rules/backtest", Some(&viewer), bad_rule).await.expect(400);
    assert!(bad["details"]["rule.op"].is_array(), "{bad}");
    let unknown = json!({"rule": rule, "server": 9999});
    hub.post("/api/v1/rules/backtest", Some(&viewer), unknown).await.expect(404);

    // The same from the command line, on the hub's database.
    let rule_file = hub.dir.path().join("rule.json");
    std::fs::write(&rule_file, rule.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_serverpulse"))
        .arg("--data-dir")
        .arg(hub.dir.path())
        .args(["rules", "backtest", "--server", &server_id.to_string(), "--days", "100000", "--rule-file"])
        .arg(&rule_file)
        .env_remove("SERVERPULSE_CONFIG")
        .env_remove("SERVERPULSE_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("hot: 1 episode(s) over 8 samples"), "{stdout}");
    assert!(stdout.contains("critical, peak 97"), "{stdout}");
}

/// An episode pending when the hub stops goes on after it starts again: the `for` counts
/// from before the restart, and the alert it fires is the episode's.
#[tokio::test]
async fn an_episode_survives_a_hub_restart() {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.70.0.5").await;
    hub.post(
        "/api/v1/rules",
        Some(&admin),
        json!({"name": "hot", "metric": "cpu", "op": ">", "critical": 90, "for": 120}),
    )
    .await
    .expect(201);
    let metrics = format!("/api/v1/agents/{agent}/metrics");
    hub.post(&metrics, Some(&token), report(T0, 95.0)).await.ok();
    hub.clock.set(T0 + 60_000);
    hub.post(&metrics, Some(&token), report(T0 + 60_000, 95.0)).await.ok();

    // A second hub process on the same database file (the first one's state is gone).
    let store = serverpulse_store_sqlite::SqliteStore::open(&hub.dir.path().join("serverpulse.db"), T0).await.unwrap();
    let restarted = serverpulse_hub::app::AppState::new(
        std::sync::Arc::new(store),
        std::sync::Arc::new(hub.clock.clone()),
        serverpulse_hub::config::Settings::defaults(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, serverpulse_hub::app::router(restarted)).await.unwrap() });
    hub.clock.set(T0 + 120_000);
    let answer = hub
        .client
        .post(format!("http://{address}{metrics}"))
        .bearer_auth(&token)
        .json(&report(T0 + 120_000, 96.0))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let fired = alerts(&hub, &admin, &format!("server={server_id}&state=firing")).await;
    assert_eq!(fired.len(), 1, "held 2 minutes across the restart");
    assert_eq!(fired[0]["started_at"], T0);
}
