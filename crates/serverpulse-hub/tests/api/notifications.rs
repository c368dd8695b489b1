//! Notifications end to end: reports pushed through the agent API fire and resolve
//! alerts; a receiver on 127.0.0.1 (an axum server recording what arrives, or failing
//! on purpose) gets the webhook with a valid HMAC and the chat formats; a real SMTP
//! server (Python's aiosmtpd, from PyPI) receives the mail; a silenced alert is
//! recorded but not sent; a failing channel is retried, logged, and holds up nobody.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use serverpulse_domain::Role;
use sha2::Sha256;

use crate::support::{Receiver, T0, TestHub, spawn_app};

fn report(at_ms: i64, cpu: f64) -> Value {
    let timestamp = chrono::DateTime::from_timestamp_millis(at_ms).unwrap().to_rfc3339();
    json!({"timestamp": timestamp, "metrics": {"cpu_usage": cpu, "memory_usage": 20.0, "disk_usage": 30.0}})
}

async fn channel(hub: &TestHub, admin: &str, body: Value) -> i64 {
    hub.post("/api/v1/channels", Some(admin), body).await.expect(201)["id"].as_i64().unwrap()
}

/// A hub with an agent, and a CPU rule that fires at once above 80 % for that server.
async fn firing_setup() -> (TestHub, String, i64, String, String) {
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.80.0.1").await;
    hub.post(
        "/api/v1/rules",
        Some(&admin),
        json!({"name": "CPU now", "metric": "cpu", "op": ">", "critical": 80, "scope": {"servers": [server_id]}}),
    )
    .await
    .expect(201);
    (hub, admin, server_id, agent, token)
}

#[tokio::test]
async fn firing_and_resolved_reach_every_channel_and_failures_are_retried() {
    let (receiver, address) = Receiver::start().await;
    let (hub, admin, server_id, agent, token) = firing_setup().await;
    let base = format!("http://{address}");
    let webhook = channel(
        &hub,
        &admin,
        json!({"name": "hook", "kind": "webhook",
        "settings": {"url": format!("{base}/hook"), "secret": "shared-secret"}}),
    )
    .await;
    channel(&hub, &admin, json!({"name": "slack", "kind": "slack", "settings": {"url": format!("{base}/slack")}}))
        .await;
    channel(
        &hub,
        &admin,
        json!({"name": "discord", "kind": "discord", "settings": {"url": format!("{base}/discord")}}),
    )
    .await;
    channel(
        &hub,
        &admin,
        json!({"name": "tg", "kind": "telegram",
        "settings": {"bot_token": "123:abc", "chat_id": 42, "api_url": base.clone()}}),
    )
    .await;
    channel(&hub, &admin, json!({"name": "ntfy", "kind": "ntfy", "settings": {"url": format!("{base}/ntfy/ops")}}))
        .await;
    let failing = channel(
        &hub,
        &admin,
        json!({"name": "broken", "kind": "webhook", "settings": {"url": format!("{base}/fail")}}),
    )
    .await;

    // The secret never comes back.
    let listed = hub.get("/api/v1/channels", Some(&admin)).await.expect(200);
    assert!(!listed.to_string().contains("shared-secret") && !listed.to_string().contains("123:abc"), "{listed}");

    let metrics = format!("/api/v1/agents/{agent}/metrics");
    hub.post(&metrics, Some(&token), report(T0, 93.0)).await.ok();
    let attempted = serverpulse_hub::notifier::deliver_due(&hub.state, T0).await.unwrap();
    assert_eq!(attempted, 6, "one per channel");

    // The webhook: the alert as JSON, signed with HMAC-SHA256 of the body.
    let hooks = receiver.at("/hook");
    assert_eq!(hooks.len(), 1);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"shared-secret").unwrap();
    mac.update(&hooks[0].body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hooks[0].headers["x-serverpulse-signature"], format!("sha256={expected}").as_str());
    let document: Value = serde_json::from_slice(&hooks[0].body).unwrap();
    assert_eq!(document["event"], "firing");
    assert_eq!(document["alert"]["severity"], "critical");
    assert_eq!(document["link"], format!("{}/servers/{server_id}", hub.base));
    let text = document["text"].as_str().unwrap();
    for needed in ["CRITICAL", "cpu", "93", "threshold 80", "Since: 2025-06-21T20:30:00", "/servers/"] {
        assert!(text.contains(needed), "{needed:?} in {text}");
    }
    // The chat formats.
    let slack: Value = serde_json::from_slice(&receiver.at("/slack")[0].body).unwrap();
    assert!(slack["text"].as_str().unwrap().contains("cpu"));
    let discord: Value = serde_json::from_slice(&receiver.at("/discord")[0].body).unwrap();
    assert!(discord["content"].as_str().unwrap().contains("cpu"));
    let telegram: Value = serde_json::from_slice(&receiver.at("/bot123:abc/sendMessage")[0].body).unwrap();
    assert_eq!(telegram["chat_id"], 42);
    let ntfy = &receiver.at("/ntfy/ops")[0];
    assert_eq!(ntfy.headers["priority"], "5");
    assert!(String::from_utf8_lossy(&ntfy.body).contains("cpu"));

    // The failing channel: logged with its error, due again later, others unaffected.
    let log = hub.get(&format!("/api/v1/notifications?channel={failing}"), Some(&admin)).await.expect(200);
    let entry = &log["notifications"][0];
    assert_eq!((entry["status"].clone(), entry["attempts"].clone()), (json!("pending"), json!(1)));
    assert!(entry["last_error"].as_str().unwrap().contains("500"), "{entry}");
    assert_eq!(entry["next_attempt_at"], T0 + 30_000);
    assert_eq!(serverpulse_hub::notifier::deliver_due(&hub.state, T0 + 1_000).await.unwrap(), 0, "not yet");
    assert_eq!(serverpulse_hub::notifier::deliver_due(&hub.state, T0 + 30_000).await.unwrap(), 1, "retried");
    let log = hub.get(&format!("/api/v1/notifications?channel={failing}"), Some(&admin)).await.expect(200);
    assert_eq!(log["notifications"][0]["history"].as_array().unwrap().len(), 2);
    assert_eq!(receiver.at("/fail").len(), 2);

    // Recovery: a resolved notice everywhere (the broken channel keeps failing).
    hub.post(&metrics, Some(&token), report(T0 + 60_000, 20.0)).await.ok();
    serverpulse_hub::notifier::deliver_due(&hub.state, T0 + 60_000).await.unwrap();
    let hooks = receiver.at("/hook");
    assert_eq!(hooks.len(), 2);
    let resolved: Value = serde_json::from_slice(&hooks[1].body).unwrap();
    assert_eq!(resolved["event"], "resolved");
    assert!(resolved["text"].as_str().unwrap().contains("RESOLVED"));
    let sent = hub.get(&format!("/api/v1/notifications?channel={webhook}&status=sent"), Some(&admin)).await.expect(200);
    assert_eq!(sent["notifications"].as_array().unwrap().len(), 2);

    // "Send test" answers at once and is logged.
    let test = hub.post(&format!("/api/v1/channels/{webhook}/test"), Some(&admin), json!({})).await.expect(200);
    assert_eq!(test["success"], true);
    let broken = hub.post(&format!("/api/v1/channels/{failing}/test"), Some(&admin), json!({})).await.expect(200);
    assert_eq!(broken["success"], false);
    assert!(broken["error"].as_str().unwrap().contains("500"));
}

#[tokio::test]
async fn a_silenced_alert_is_recorded_but_not_sent() {
    let (receiver, address) = Receiver::start().await;
    let (hub, admin, server_id, agent, token) = firing_setup().await;
    let operator = hub.token_for(Role::Operator).await;
    let viewer = hub.token_for(Role::Viewer).await;
    channel(
        &hub,
        &admin,
        json!({"name": "hook", "kind": "webhook", "settings": {"url": format!("http://{address}/hook")}}),
    )
    .await;
    let window = json!({"duration_minutes": 30, "servers": [server_id], "comment": "kernel upgrade"});
    hub.post("/api/v1/silences", Some(&viewer), window.clone()).await.expect(403);
    let silence = hub.post("/api/v1/silences", Some(&operator), window).await.expect(201);
    assert_eq!(hub.get("/api/v1/silences", Some(&viewer)).await.expect(200)["silences"].as_array().unwrap().len(), 1);

    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0, 95.0)).await.ok();
    let alerts = hub.get(&format!("/api/v1/alerts?server={server_id}"), Some(&viewer)).await.expect(200);
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1, "recorded");
    assert_eq!(alerts["alerts"][0]["silenced"], true);
    serverpulse_hub::notifier::deliver_due(&hub.state, T0 + 1).await.unwrap();
    assert!(receiver.at("/hook").is_empty(), "not sent");

    // Once the silence is lifted, the next episode is sent.
    hub.send(reqwest::Method::DELETE, &format!("/api/v1/silences/{}", silence["id"]), Some(&operator), None)
        .await
        .expect(200);
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0 + 60_000, 10.0)).await.ok();
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0 + 120_000, 95.0)).await.ok();
    serverpulse_hub::notifier::deliver_due(&hub.state, T0 + 120_000).await.unwrap();
    let events: Vec<String> = receiver
        .at("/hook")
        .iter()
        .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap()["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["firing"], "nobody heard of the silenced episode, so not of its end either");
}

/// Where the Python with aiosmtpd is: `$SERVERPULSE_TEST_PYTHON` (set by `.ci/run`), or
/// the venv `.ci/run` makes.
fn smtp_python() -> PathBuf {
    std::env::var_os("SERVERPULSE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/serverpulse-test-venv/bin/python"))
}

struct Smtp {
    child: Child,
    port: u16,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_smtp(maildir: &Path) -> Smtp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let python = smtp_python();
    let child = Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{} -m aiosmtpd ({e}): run .ci/run once, or pip install aiosmtpd", python.display())
        });
    // Owned at once, so the server is stopped and reaped however the test ends.
    let smtp = Smtp { child, port };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return smtp;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not start");
}

#[tokio::test]
async fn mail_arrives_at_a_real_smtp_server() {
    let (hub, admin, _, agent, token) = firing_setup().await;
    let maildir = hub.dir.path().join("maildir");
    let smtp = start_smtp(&maildir).await;
    channel(
        &hub,
        &admin,
        json!({"name": "mail", "kind": "email", "settings": {
        "host": "127.0.0.1", "port": smtp.port, "security": "none",
        "from": "serverpulse@example.test", "to": ["ops@example.test", "oncall@example.test"]}}),
    )
    .await;
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0, 99.0)).await.ok();
    serverpulse_hub::notifier::deliver_due(&hub.state, T0).await.unwrap();
    let log = hub.get("/api/v1/notifications", Some(&admin)).await.expect(200);
    assert_eq!(log["notifications"][0]["status"], "sent", "{log}");
    let mails: Vec<String> = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert!(mail.contains("Subject: [ServerPulse] CRITICAL: cpu on"), "{mail}");
    assert!(mail.contains("To: ops@example.test, oncall@example.test"), "{mail}");
    assert!(mail.contains("threshold 80"), "{mail}");
}

#[tokio::test]
async fn a_firing_alert_is_repeated_until_acknowledged() {
    let (receiver, address) = Receiver::start().await;
    let (hub, admin, _, agent, token) = firing_setup().await;
    let operator = hub.token_for(Role::Operator).await;
    channel(
        &hub,
        &admin,
        json!({"name": "hook", "kind": "webhook", "repeat_every": 600,
        "settings": {"url": format!("http://{address}/hook")}}),
    )
    .await;
    hub.post(&format!("/api/v1/agents/{agent}/metrics"), Some(&token), report(T0, 95.0)).await.ok();
    serverpulse_hub::notifier::deliver_due(&hub.state, T0).await.unwrap();
    let remind = |at: i64| {
        let state = hub.state.clone();
        async move {
            serverpulse_hub::sweeper::sweep_once(&state, at).await.unwrap();
            serverpulse_hub::notifier::deliver_due(&state, at).await.unwrap();
        }
    };
    // (The sweeps also find the agent silent and announce that: only reminders count here.)
    let reminders = || -> Vec<Value> {
        receiver
            .at("/hook")
            .iter()
            .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap())
            .filter(|d| d["event"] == "repeat")
            .collect()
    };
    remind(T0 + 300_000).await;
    assert!(reminders().is_empty(), "not yet");
    remind(T0 + 600_000).await;
    let repeats = reminders();
    assert_eq!(repeats.len(), 1);
    assert!(repeats[0]["text"].as_str().unwrap().contains("STILL FIRING"));
    assert_eq!(repeats[0]["alert"]["type"], "cpu");
    let alert = repeats[0]["alert"]["id"].as_i64().unwrap();
    hub.post(&format!("/api/v1/alerts/{alert}/ack"), Some(&operator), json!({"comment": "on it"})).await.expect(200);
    remind(T0 + 1_300_000).await;
    let cpu_reminders = reminders().iter().filter(|d| d["alert"]["type"] == "cpu").count();
    assert_eq!(cpu_reminders, 1, "acknowledged: no more reminders");
}

#[tokio::test]
async fn an_escalation_is_announced_on_the_same_episode() {
    let (receiver, address) = Receiver::start().await;
    let hub = spawn_app().await;
    let admin = hub.token_for(Role::Admin).await;
    let (server_id, agent, token) = hub.registered_agent(&admin, "10.80.0.2").await;
    hub.post(
        "/api/v1/rules",
        Some(&admin),
        json!({"name": "CPU steps", "metric": "cpu", "op": ">", "warning": 80, "critical": 95,
               "scope": {"servers": [server_id]}}),
    )
    .await
    .expect(201);
    channel(
        &hub,
        &admin,
        json!({"name": "hook", "kind": "webhook", "settings": {"url": format!("http://{address}/hook")}}),
    )
    .await;
    let metrics = format!("/api/v1/agents/{agent}/metrics");
    for (at, cpu) in [(T0, 85.0), (T0 + 30_000, 97.0), (T0 + 60_000, 98.0)] {
        hub.post(&metrics, Some(&token), report(at, cpu)).await.ok();
        serverpulse_hub::notifier::deliver_due(&hub.state, at).await.unwrap();
    }
    let documents: Vec<Value> = receiver.at("/hook").iter().map(|h| serde_json::from_slice(&h.body).unwrap()).collect();
    let events: Vec<&str> = documents.iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["firing", "escalated"], "nothing more while it stays critical");
    assert_eq!(documents[0]["alert"]["id"], documents[1]["alert"]["id"], "one episode");
    assert_eq!(documents[1]["alert"]["severity"], "critical");
    assert!(documents[1]["text"].as_str().unwrap().contains("ESCALATED to CRITICAL"));
}
