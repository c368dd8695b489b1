//! The ingest pipeline: answers wait for the commit of the batch holding the report, a
//! full queue is refused with 503 and `Retry-After` instead of growing, reports arriving
//! within the commit interval share a commit while a lone one is not held back, agents'
//! heartbeats and command polls share a commit too, and a hub killed with SIGKILL
//! mid-load keeps every report it acknowledged, each once.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use serverpulse_domain::Role;
use serverpulse_hub::config::Settings;

use tokio::task::JoinHandle;

use crate::support::{HubProcess, T0, TestHub, spawn_paused, spawn_with};

fn report(seq: u64) -> Value {
    report_at(seq, T0)
}

fn report_at(seq: u64, start: i64) -> Value {
    let at = serverpulse_proto::time::format_timestamp(start + seq as i64 * 1_000);
    json!({"seq": seq, "timestamp": at, "metrics": {"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0}})
}

/// Sends report `seq` of the agent with `token` to `url`, in a task of its own.
fn sender<'a>(hub: &'a TestHub, url: &'a str, token: &'a str) -> impl Fn(u64) -> JoinHandle<reqwest::Response> + 'a {
    move |seq| {
        let request = hub.client.post(url).bearer_auth(token).json(&report(seq));
        tokio::spawn(async move { request.send().await.unwrap() })
    }
}

#[tokio::test]
async fn answers_wait_for_the_commit_and_a_full_queue_says_when_to_retry() {
    let mut settings = Settings::defaults();
    settings.ingest_queue = 2;
    let (hub, mut writer) = spawn_paused(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.90.0.1").await;
    let url = hub.url(&format!("/api/v1/agents/{agent}/metrics"));
    let send = sender(&hub, &url, &token);
    let (first, second) = (send(1), send(2));
    // Both wait in the queue: nothing is stored and neither has an answer yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished() && !second.is_finished(), "answered before the commit");
    assert_eq!(hub.scalar_i64("SELECT COUNT(*) FROM performance_logs WHERE server_id = ?", server).await, 0);
    let refused = send(3).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "2");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("busy"), "{body}");

    assert_eq!(writer.step().await, 2, "one batch holds both");
    for answer in [first.await.unwrap(), second.await.unwrap()] {
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(hub.scalar_i64("SELECT COUNT(*) FROM performance_logs WHERE server_id = ?", server).await, 2);
    let history = hub.get(&format!("/api/v1/servers/{server}/metrics?from=0&to={}", T0 + 10_000), Some(&admin)).await;
    let history = history.expect(200);
    assert_eq!(history["samples"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn heartbeats_and_command_polls_of_many_agents_share_one_commit() {
    let (hub, mut writer) = spawn_paused(Settings::defaults()).await;
    let admin = hub.token_for(Role::Admin).await;
    let mut agents = Vec::new();
    for k in 0..3 {
        agents.push(hub.registered_agent(&admin, &format!("10.90.0.{}", 20 + k)).await);
    }
    let mut answers = Vec::new();
    for (_, agent, token) in &agents {
        let beat = hub
            .client
            .post(hub.url(&format!("/api/v1/agents/{agent}/heartbeat")))
            .bearer_auth(token)
            .json(&json!({"agent_id": agent, "status": "online", "config_version": 4}));
        answers.push(tokio::spawn(async move { beat.send().await.unwrap() }));
        let poll = hub.client.get(hub.url(&format!("/api/v1/agents/{agent}/commands"))).bearer_auth(token);
        answers.push(tokio::spawn(async move { poll.send().await.unwrap() }));
    }
    // All six wait for the writer: none is answered, nothing is written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(answers.iter().all(|a| !a.is_finished()), "answered before the commit");
    for (server, ..) in &agents {
        let beat = hub.scalar_i64("SELECT COALESCE(agent_last_heartbeat, 0) FROM servers WHERE id = ?", *server).await;
        assert_eq!(beat, 0, "a heartbeat written before the writer's commit");
    }
    let (commits, requests) = hub.state.ingest.stats();
    assert_eq!(writer.step().await, 6, "one batch holds them all");
    assert_eq!(hub.state.ingest.stats(), (commits + 1, requests + 6), "(commits, requests): one commit for six");
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 200);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["success"], json!(true), "{body}");
    }
    for (server, ..) in &agents {
        let beat = hub.scalar_i64("SELECT COALESCE(agent_last_heartbeat, 0) FROM servers WHERE id = ?", *server).await;
        assert!(beat > 0, "server {server}: its heartbeat is kept");
        let said = hub.get(&format!("/api/v1/servers/{server}"), Some(&admin)).await.expect(200);
        assert_eq!(said["server"]["agent_config"]["heartbeat"]["config_version"], json!(4), "{said}");
    }
}

#[tokio::test]
async fn requests_are_refused_while_requests_take_too_long() {
    let mut settings = Settings::defaults();
    settings.ingest_max_wait = Duration::from_millis(200);
    let (hub, mut writer) = spawn_paused(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (_, agent, token) = hub.registered_agent(&admin, "10.90.0.2").await;
    let url = hub.url(&format!("/api/v1/agents/{agent}/metrics"));
    let send = sender(&hub, &url, &token);
    // Two requests in flight; one of them is answered 300 ms after it arrived.
    let (slow, other) = (hub.state.ingest.admit().unwrap(), hub.state.ingest.admit().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(slow);
    // An admitted request would wait for the paused writer: a timeout is a failure.
    let refused = tokio::time::timeout(Duration::from_secs(5), send(1)).await.expect("answered at once").unwrap();
    assert_eq!(refused.status(), 503, "refused on arrival while requests take 300 ms > 200 ms");
    assert_eq!(refused.headers()["retry-after"], "2");
    // Once every request is answered the hub starts afresh.
    drop(other);
    let accepted = send(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(writer.step().await, 1);
    assert_eq!(accepted.await.unwrap().status(), 200);
    // A prompt answer keeps the hub open.
    let next = send(3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _in_flight = hub.state.ingest.admit().expect("requests answered promptly: admitted");
    assert_eq!(writer.step().await, 1);
    assert_eq!(next.await.unwrap().status(), 200);
}

#[tokio::test]
async fn reports_within_the_commit_interval_share_a_commit_and_a_lone_one_is_not_held() {
    let mut settings = Settings::defaults();
    settings.ingest_commit_interval = Duration::from_millis(1000);
    let hub = spawn_with(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.90.0.3").await;
    let url = hub.url(&format!("/api/v1/agents/{agent}/metrics"));
    let send = sender(&hub, &url, &token);
    assert_eq!(send(1).await.unwrap().status(), 200);
    assert_eq!(hub.state.ingest.stats(), (1, 1), "(commits, requests)");
    // Two reports 100 ms apart, within the interval of that commit's start: one commit.
    let second = send(2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third = send(3);
    assert_eq!(second.await.unwrap().status(), 200);
    assert_eq!(third.await.unwrap().status(), 200);
    assert_eq!(hub.state.ingest.stats(), (2, 3));
    // Past the interval, a report alone is committed at once, not an interval later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    assert_eq!(send(4).await.unwrap().status(), 200);
    assert!(started.elapsed() < Duration::from_millis(500), "a lone report waited {:?}", started.elapsed());
    assert_eq!(hub.state.ingest.stats(), (3, 4));
    assert_eq!(hub.scalar_i64("SELECT COUNT(*) FROM performance_logs WHERE server_id = ?", server).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_mid_load_keeps_every_acknowledged_report_once() {
    serverpulse_hub::notifier::install_crypto_provider();
    // Reports of today: the restarted hub's retention pass keeps 30 days.
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let report = move |seq: u64| report_at(seq, start);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Eight servers with credentials, added through the CLI like an operator would.
    let mut agents = Vec::new();
    for i in 0..8 {
        let out = Command::new(env!("CARGO_BIN_EXE_serverpulse"))
            .args(["server", "add", "--name", &format!("load-{i}"), "--ip", &format!("10.91.0.{}", i + 1)])
            .args(["--with-credentials", "--json", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let added: Value = serde_json::from_slice(&out.stdout).unwrap();
        agents.push((added["agent_id"].as_str().unwrap().to_owned(), added["auth_token"].as_str().unwrap().to_owned()));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut hub = HubProcess::on_data_dir(&data, port);
    hub.wait_ready().await;

    // Each agent sends seq 1, 2, 3, … as fast as answers come; what got a 200 is recorded.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut senders = Vec::new();
    for (agent, token) in agents.clone() {
        let (client, base) = (client.clone(), hub.base.clone());
        senders.push(tokio::spawn(async move {
            let mut acknowledged = BTreeSet::new();
            for seq in 1u64.. {
                let sent = client
                    .post(format!("{base}/api/v1/agents/{agent}/metrics"))
                    .bearer_auth(&token)
                    .json(&report(seq))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        acknowledged.insert(seq);
                    }
                    Ok(response) if response.status() == 503 => {}
                    _ => break, // the hub is gone
                }
            }
            (agent, acknowledged)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    hub.child.kill().expect("SIGKILL");
    hub.child.wait().unwrap();
    let mut acknowledged: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for sender in senders {
        let (agent, seqs) = sender.await.unwrap();
        acknowledged.insert(agent, seqs);
    }
    let total: usize = acknowledged.values().map(BTreeSet::len).sum();
    assert!(total >= 50, "the load run was too short to mean anything ({total} reports)");

    // Restarted on the same data: every acknowledged seq is there, none twice.
    let hub = HubProcess::on_data_dir(&data, port);
    hub.wait_ready().await;
    let db = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("serverpulse.db")).read_only(true),
    )
    .await
    .unwrap();
    for (agent, seqs) in &acknowledged {
        let stored: Vec<i64> = sqlx::query_scalar(
            "SELECT p.seq FROM performance_logs p JOIN servers s ON s.id = p.server_id WHERE s.agent_id = ? ORDER BY p.seq",
        )
        .bind(agent)
        .fetch_all(&db)
        .await
        .unwrap();
        let unique: BTreeSet<u64> = stored.iter().map(|s| *s as u64).collect();
        assert_eq!(unique.len(), stored.len(), "{agent}: a seq stored twice");
        let missing: Vec<&u64> = seqs.difference(&unique).collect();
        assert!(missing.is_empty(), "{agent}: acknowledged but lost: {missing:?}");
    }
    // Replaying what was acknowledged stores nothing again.
    let (agent, token) = &agents[0];
    let replay: Vec<Value> = acknowledged[agent].iter().take(20).map(|s| report(*s)).collect();
    let answer: Value = client
        .post(format!("{}/api/v1/agents/{agent}/metrics", hub.base))
        .bearer_auth(token)
        .json(&json!({"reports": replay}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["stored"], json!(0), "{answer}");
    println!("{total} reports acknowledged across 8 agents before SIGKILL; all kept, none twice");
}

#[tokio::test]
async fn retention_runs_with_the_configured_policy() {
    let mut settings = Settings::defaults();
    settings.retention.raw_ms = 7 * 86_400_000;
    let hub = spawn_with(settings).await;
    let admin = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.92.0.1").await;
    let at = |age_days: i64, seq: u64| {
        let at = serverpulse_proto::time::format_timestamp(T0 - age_days * 86_400_000);
        json!({"seq": seq, "timestamp": at, "metrics": {"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0}})
    };
    let reports = json!({"reports": [at(8, 1), at(6, 2), at(0, 3)]});
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), reports).await.ok();
    let outcome = serverpulse_hub::retention::retention_once(&hub.state, T0).await.unwrap();
    assert_eq!(outcome.raw_deleted, 1);
    assert!(outcome.bytes_used > 0);
    let seqs: Vec<i64> = hub
        .rows("SELECT seq FROM performance_logs WHERE server_id = ? ORDER BY seq", server)
        .await
        .iter()
        .map(|r| sqlx::Row::get(r, "seq"))
        .collect();
    assert_eq!(seqs, [3], "the 6-day-old report is past the detail window (6 h): compacted");
    let chunks = hub.rows("SELECT samples FROM history_chunks WHERE server_id = ?", server).await;
    assert_eq!(chunks.iter().map(|r| sqlx::Row::get::<i64, _>(r, "samples")).collect::<Vec<_>>(), [1]);
    let from = T0 - 10 * 86_400_000;
    let history = hub.get(&format!("/api/v1/servers/{server}/metrics?from={from}&to={T0}"), Some(&admin)).await;
    let samples = history.body["samples"].as_array().expect("samples").clone();
    let kept: Vec<(Value, Value, bool)> =
        samples.iter().map(|s| (s["seq"].clone(), s["memory_usage"].clone(), s["raw"].is_null())).collect();
    assert_eq!(kept, [(json!(2), json!(2.0), true), (json!(3), json!(2.0), false)], "figures kept, document not");
}
