//! Two `serverpulse serve` processes on one PostgreSQL database (a scratch database on
//! the server `SERVERPULSE_TEST_POSTGRES` names): both take reports and serve the API,
//! exactly one runs the background work, a browser on one sees reports the other took
//! in, and when the leader is killed (SIGKILL) the other takes its work over — with
//! every acknowledged report kept once and the silent agent's alert sent once.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serverpulse_store_postgres::scratch::ScratchDatabase;

use crate::support::{HubProcess, Receiver, free_port};

/// Runs the `serverpulse` command line against the configuration; its JSON output.
fn serverpulse_json(config: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_serverpulse"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SERVERPULSE_DATABASE_URL")
        .env("SERVERPULSE_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run serverpulse");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

async fn health(hub: &HubProcess) -> Value {
    reqwest::get(format!("{}/api/v1/health", hub.base)).await.expect("health").json().await.expect("JSON")
}

/// Waits (up to `limit`) until `hub` says it leads.
async fn wait_for_lead(hub: &HubProcess, limit: Duration) -> Duration {
    let start = Instant::now();
    while health(hub).await["leader"] != json!(true) {
        assert!(start.elapsed() < limit, "{} never took the lead", hub.base);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

fn report(seq: u64) -> Value {
    // Agent time now: the hub's sweeps and rules run on the wall clock.
    let at = serverpulse_proto::time::format_timestamp(serverpulse_hub::clock::Clock::now_ms(
        &serverpulse_hub::clock::SystemClock,
    ));
    json!({"seq": seq, "timestamp": at, "metrics": {"cpu_usage": 1.0, "memory_usage": 2.0, "disk_usage": 3.0}})
}

/// One agent: its credentials and the seqs some hub acknowledged.
struct Agent {
    server_id: i64,
    id: String,
    token: String,
    acknowledged: BTreeSet<u64>,
    next: u64,
}

impl Agent {
    /// Sends its next report to `hub`; records it when answered 200.
    async fn report_to(&mut self, client: &reqwest::Client, hub: &HubProcess) {
        let seq = self.next;
        self.next += 1;
        let url = format!("{}/api/v1/agents/{}/metrics", hub.base, self.id);
        let sent = client.post(url).bearer_auth(&self.token).json(&report(seq)).timeout(Duration::from_secs(5)).send();
        if let Ok(answer) = sent.await
            && answer.status() == 200
        {
            self.acknowledged.insert(seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_hands_its_work_to_the_other_hub_with_nothing_lost_or_done_twice() {
    serverpulse_hub::notifier::install_crypto_provider();
    let Some(database) = ScratchDatabase::create("replicas").await else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("serverpulse.yaml");
    // Agents count as gone after 3 s without contact; hubs sweep every second.
    std::fs::write(
        &config,
        format!(
            "database_url: {}\nheartbeat_interval: 1\noffline_after: 3\nsweep_interval: 1\n",
            json!(database.url())
        ),
    )
    .expect("write config");
    let config_arg = [OsStr::new("--config"), config.as_os_str()];

    // An administrator's token, a webhook receiver, two agents with credentials.
    serverpulse_json(
        &config,
        &["user", "add", "--email", "ops@example.test", "--role", "admin", "--password-stdin", "--json"],
        Some("a long enough password\n"),
    );
    let admin = serverpulse_json(&config, &["token", "create", "--email", "ops@example.test", "--json"], None)["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let mut agents: Vec<Agent> = ["steady", "quitting"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let ip = format!("10.93.0.{}", i + 1);
            let added = serverpulse_json(
                &config,
                &["server", "add", "--name", name, "--ip", &ip, "--with-credentials", "--json"],
                None,
            );
            Agent {
                server_id: added["server"]["id"].as_i64().expect("id"),
                id: added["agent_id"].as_str().expect("agent id").to_owned(),
                token: added["auth_token"].as_str().expect("token").to_owned(),
                acknowledged: BTreeSet::new(),
                next: 1,
            }
        })
        .collect();

    let first = HubProcess::serve(free_port(), &config_arg);
    first.wait_ready().await;
    wait_for_lead(&first, Duration::from_secs(10)).await;
    let second = HubProcess::serve(free_port(), &config_arg);
    second.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await; // more than one leadership check
    assert_eq!(health(&second).await["leader"], json!(false), "one leader at a time");

    let client = reqwest::Client::new();
    let (receiver, address) = Receiver::start().await;
    let channel = client
        .post(format!("{}/api/v1/channels", second.base))
        .bearer_auth(&admin)
        .json(&json!({"name": "hook", "kind": "webhook", "settings": {"url": format!("http://{address}/hook")}}))
        .send()
        .await
        .expect("create channel");
    assert_eq!(channel.status(), 201, "any hub serves the API");

    // A browser on the second hub sees what the first hub takes in.
    let mut live =
        client.get(format!("{}/api/v1/live", second.base)).bearer_auth(&admin).send().await.expect("live stream");
    assert_eq!(live.status(), 200);
    let steady_id = agents[0].server_id;
    let seen_live = tokio::time::timeout(Duration::from_secs(15), async {
        let mut text = String::new();
        loop {
            agents[0].report_to(&client, &first).await;
            if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(300), live.chunk()).await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("event: server") && text.contains(&format!("\"id\":{steady_id}")) {
                    return;
                }
            }
        }
    })
    .await;
    assert!(seen_live.is_ok(), "a report taken in by the first hub reaches a browser on the second");
    drop(live);

    // Both agents report to both hubs in turn.
    for round in 0..20 {
        for agent in &mut agents {
            let hub = if round % 2 == 0 { &first } else { &second };
            agent.report_to(&client, hub).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader dies mid-run; the quitting agent stops reporting with it.
    let mut first = first;
    first.child.kill().expect("kill the leader");
    first.child.wait().expect("reap");
    let took_over = wait_for_lead(&second, Duration::from_secs(15)).await;
    eprintln!("the second hub took the lead {took_over:?} after the first was killed");
    // The steady agent keeps reporting to the survivor until the quitter's alert is out.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.at("/hook").is_empty() {
        assert!(Instant::now() < deadline, "the quitting agent's offline alert was never sent");
        agents[0].report_to(&client, &second).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // More sweeps and notifier rounds pass: nothing is sent twice.
    for _ in 0..15 {
        agents[0].report_to(&client, &second).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hooks = receiver.at("/hook");
    let documents: Vec<Value> = hooks.iter().map(|h| serde_json::from_slice(&h.body).expect("JSON")).collect();
    let quitting_id = agents[1].server_id;
    let firing: Vec<&Value> = documents.iter().filter(|d| d["event"] == "firing").collect();
    assert_eq!(firing.len(), 1, "one offline alert, sent once: {documents:?}");
    assert_eq!(firing[0]["alert"]["server_id"], json!(quitting_id), "{documents:?}");

    let get = |path: String| {
        let request = client.get(format!("{}{path}", second.base)).bearer_auth(&admin);
        async move { request.send().await.expect("get").json::<Value>().await.expect("JSON") }
    };
    let disconnected = get(format!("/api/v1/events?server_id={quitting_id}&kind=agent_status&limit=100")).await;
    let went: Vec<&Value> = disconnected["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["message"].as_str().is_some_and(|m| m.contains("disconnected")))
        .collect();
    assert_eq!(went.len(), 1, "marked disconnected once: {disconnected}");

    // Every report a hub acknowledged is stored, each once.
    for agent in &agents {
        let history = get(format!("/api/v1/servers/{}/metrics?from=0&limit=10000", agent.server_id)).await;
        let seqs: Vec<u64> =
            history["samples"].as_array().expect("samples").iter().filter_map(|s| s["seq"].as_u64()).collect();
        let unique: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{}: a seq stored twice", agent.id);
        let missing: Vec<&u64> = agent.acknowledged.difference(&unique).collect();
        assert!(missing.is_empty(), "{}: acknowledged but not stored: {missing:?}", agent.id);
    }
    assert!(agents.iter().all(|a| a.acknowledged.len() >= 10), "the run was too short to mean anything");
    drop(second);
    drop(database);
}
