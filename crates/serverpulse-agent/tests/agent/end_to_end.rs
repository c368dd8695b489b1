//! The agent against the real hub (in-process, on 127.0.0.1): it registers with an
//! enrollment token, reports, keeps reports in its spool while the hub is down and
//! delivers each exactly once afterwards, raises a service alert, runs an allowed command
//! and rejects a disallowed one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use serverpulse_agent::collect::Root;
use serverpulse_agent::collector::Collector;
use serverpulse_agent::report::ServiceState;
use serverpulse_agent::runtime::Agent;
use serverpulse_agent::services::ServiceSource;
use serverpulse_domain::Role;
use serverpulse_hub::auth::Admin;

use crate::fixture::{self, Counters, FixedSpace};
use crate::hub::TestHub;

/// Unit states the test sets by hand.
#[derive(Clone, Default)]
struct ScriptedUnits(Arc<Mutex<Vec<(String, String)>>>);

impl ScriptedUnits {
    fn set(&self, unit: &str, status: &str) {
        let mut units = self.0.lock().unwrap();
        units.retain(|(u, _)| u != unit);
        units.push((unit.to_owned(), status.to_owned()));
    }
}

impl ServiceSource for ScriptedUnits {
    fn states(&mut self, units: &[String]) -> Vec<ServiceState> {
        let known = self.0.lock().unwrap();
        units
            .iter()
            .map(|unit| {
                let status = known.iter().find(|(u, _)| u == unit).map_or("not_found", |(_, s)| s.as_str());
                ServiceState::with_status(unit, status)
            })
            .collect()
    }
}

fn counters(step: u64) -> Counters {
    Counters {
        cpu: (1_000 + 300 * step, 500 + 100 * step, 8_000 + 600 * step),
        eth0: (10_000 + 30_000 * step, 2_000 + 3_000 * step),
        sda_sectors: (100 + 60 * step, 200 + 30 * step),
        uptime: 3_600 + 30 * step,
    }
}

fn start_agent(config_path: &Path, proc_root: &Path, units: &ScriptedUnits) -> Agent {
    let config = serverpulse_agent::config::load(config_path).unwrap();
    let collector = Collector::new(Root::new(proc_root), Box::new(FixedSpace));
    Agent::new(config, Some(config_path.to_owned()), collector, Box::new(units.clone())).unwrap()
}

/// A hub on 127.0.0.1 with one server (127.0.0.1) and an admin API token: the hub, the
/// server's id, its enrollment token and the API token.
fn hub_with_server(dir: &Path, name: &str) -> (TestHub, i64, String, String) {
    let hub = TestHub::start(&dir.join("hub.db"), |_| {});
    let admin = Admin::console();
    let (server_id, enrollment, token) = hub.runtime.block_on(async {
        let state = hub.state();
        let added =
            serverpulse_hub::admin::add_server(state, &admin, name, "127.0.0.1".parse().unwrap()).await.unwrap();
        serverpulse_hub::admin::add_user(state, &admin, "ops@example.test", Role::Admin, None).await.unwrap();
        let (_, token) = serverpulse_hub::admin::create_token(state, &admin, "ops@example.test", "e2e").await.unwrap();
        (added.server.id, added.enrollment.enrollment_token, token)
    });
    (hub, server_id, enrollment, token)
}

fn stored_seqs(hub: &TestHub, token: &str, server: i64) -> Vec<u64> {
    let history =
        hub.api("GET", &format!("/api/v1/servers/{server}/metrics?from=0&to=9999999999999&limit=1000"), token, None);
    history["samples"].as_array().unwrap().iter().map(|s| s["seq"].as_u64().unwrap()).collect()
}

#[test]
fn registers_reports_survives_an_outage_and_obeys_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (mut hub, server_id, enrollment, token) = hub_with_server(dir.path(), "e2e");

    let proc_root = dir.path().join("host");
    fixture::write(&proc_root, counters(0));
    let state_dir = dir.path().join("state");
    let kern_log = dir.path().join("kern.log");
    std::fs::write(&kern_log, "old: Kernel panic - long ago, not news\n").unwrap();
    let config_path = dir.path().join("config.yml");
    std::fs::write(
        &config_path,
        format!(
            "server:\n  endpoint: {}\n  enrollment_token: {enrollment}\n  auth_token: GENERATED_AFTER_REGISTRATION\n\
             monitoring:\n  services: [nginx]\n  log_paths: [{}]\nstorage:\n  state_dir: {}\ncommands:\n  allowed: [collect_now]\n",
            hub.url(),
            kern_log.display(),
            state_dir.display()
        ),
    )
    .unwrap();
    let units = ScriptedUnits::default();
    units.set("nginx", "active");
    let mut agent = start_agent(&config_path, &proc_root, &units);

    // Registration with the enrollment token, at the first tick.
    let t0 = chrono::Utc::now().timestamp_millis();
    agent.tick(t0).unwrap();
    assert_eq!(agent.state().server_id, Some(server_id));
    let saved = std::fs::read_to_string(state_dir.join("state.json")).unwrap();
    assert!(saved.contains("auth_token"), "credentials go to the state file");
    assert!(!std::fs::read_to_string(&config_path).unwrap().contains(agent.state().auth_token.as_deref().unwrap()));

    // First report.
    fixture::write(&proc_root, counters(1));
    agent.tick(t0 + 30_000).unwrap();
    assert_eq!(stored_seqs(&hub, &token, server_id), [0]);
    assert!(agent.spool().is_empty());

    // The hub goes away; reports pile up in the spool; nginx fails meanwhile.
    hub.pause();
    units.set("nginx", "failed");
    let mut kern = std::fs::OpenOptions::new().append(true).open(&kern_log).unwrap();
    std::io::Write::write_all(&mut kern, b"kernel: Out of memory: Killed process 4242 (postgres)\n").unwrap();
    for step in 2..=3 {
        fixture::write(&proc_root, counters(step));
        agent.tick(t0 + 30_000 * step as i64).unwrap();
    }
    assert_eq!(agent.spool().len(), 2);

    // The agent restarts during the outage: seq and spool survive it.
    drop(agent);
    let mut agent = start_agent(&config_path, &proc_root, &units);
    units.set("nginx", "failed");

    // The hub returns: the restarted agent primes its collector and replays the spool,
    // then reports again with the next seq. Every report arrives once.
    hub.resume();
    fixture::write(&proc_root, counters(4));
    agent.tick(t0 + 120_000).unwrap();
    assert!(agent.spool().is_empty(), "{} left in the spool", agent.spool().len());
    assert_eq!(stored_seqs(&hub, &token, server_id), [0, 1, 2]);
    fixture::write(&proc_root, counters(5));
    agent.tick(t0 + 150_000).unwrap();
    let restarted = serverpulse_agent::runtime::SEQ_BLOCK;
    assert_eq!(stored_seqs(&hub, &token, server_id), [0, 1, 2, restarted], "a restart continues above its reservation");

    let server = hub.api("GET", &format!("/api/v1/servers/{server_id}"), &token, None);
    assert_eq!(server["server"]["agent_status"], "active");
    assert!(server["server"]["agent_last_heartbeat"].is_i64(), "heartbeats arrive: {server}");
    assert_eq!(server["server"]["last_metrics"]["network_rx"], json!(10_000 + 30_000 * 5));
    let history = hub.api("GET", &format!("/api/v1/servers/{server_id}/metrics?from=0&to=9999999999999"), &token, None);
    let rates: Vec<Value> =
        history["samples"].as_array().unwrap().iter().map(|s| s["network_rx_rate"].clone()).collect();
    assert_eq!(rates[1], json!(1000.0), "the hub derives 30,000 B / 30 s from the agent's counters");

    let alerts = hub.api("GET", &format!("/api/v1/alerts?server_id={server_id}"), &token, None);
    let failures: Vec<&Value> =
        alerts["alerts"].as_array().unwrap().iter().filter(|a| a["type"] == "service_failure").collect();
    assert_eq!(failures.len(), 1, "one alert for one failure: {alerts}");
    assert_eq!(failures[0]["details"]["unit"], "nginx");
    assert_eq!(failures[0]["severity"], "critical");
    let oom: Vec<&Value> = alerts["alerts"].as_array().unwrap().iter().filter(|a| a["type"] == "oom_kill").collect();
    assert_eq!(oom.len(), 1, "the OOM kill logged during the outage arrives once: {alerts}");
    assert!(oom[0]["message"].as_str().unwrap().contains("postgres"));
    assert!(!alerts.to_string().contains("long ago"), "history before the agent started is not news");

    // Commands: an allowed one runs, a disallowed one is rejected.
    let allowed =
        hub.api("POST", &format!("/api/v1/servers/{server_id}/commands"), &token, Some(json!({"type": "collect_now"})));
    let refused = hub.api(
        "POST",
        &format!("/api/v1/servers/{server_id}/commands"),
        &token,
        Some(json!({"type": "restart_service", "args": {"service": "nginx"}})),
    );
    fixture::write(&proc_root, counters(6));
    agent.tick(t0 + 180_000).unwrap();
    let commands = hub.api("GET", &format!("/api/v1/servers/{server_id}/commands"), &token, None);
    let state_of = |id: &Value| {
        commands["commands"].as_array().unwrap().iter().find(|c| &c["id"] == id).map(|c| c["state"].clone()).unwrap()
    };
    assert_eq!(state_of(&allowed["id"]), "succeeded");
    assert_eq!(state_of(&refused["id"]), "rejected");
    let seqs = stored_seqs(&hub, &token, server_id);
    assert_eq!(seqs, [0, 1, 2, restarted, restarted + 1, restarted + 2], "the scheduled report and collect_now's");
}

#[test]
fn a_removed_server_makes_the_agent_register_again() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, first_id, enrollment, token) = hub_with_server(dir.path(), "old");
    let proc_root = dir.path().join("host");
    fixture::write(&proc_root, counters(0));
    let config_path = dir.path().join("config.yml");
    std::fs::write(
        &config_path,
        format!(
            "server:\n  endpoint: {}\n  enrollment_token: {enrollment}\n  server_ip: 127.0.0.1\n\
             storage:\n  state_dir: {}\nmonitoring:\n  log_paths: [{}]\n",
            hub.url(),
            dir.path().join("state").display(),
            dir.path().join("none.log").display()
        ),
    )
    .unwrap();
    let units = ScriptedUnits::default();
    let mut agent = start_agent(&config_path, &proc_root, &units);
    let t0 = chrono::Utc::now().timestamp_millis();
    agent.tick(t0).unwrap();
    assert_eq!(agent.state().server_id, Some(first_id));

    // The operator removes the server and adds it again: the old credentials are dead.
    hub.api("DELETE", &format!("/api/v1/servers/{first_id}"), &token, None);
    let again = hub.api("POST", "/api/v1/servers", &token, Some(json!({"name": "new", "ip": "127.0.0.1"})));
    let second_id = again["server"]["id"].as_i64().unwrap();

    // The next report is refused (401): the agent forgets its credentials, keeps the
    // report, and registers again — the spent token is refused, the address matches.
    fixture::write(&proc_root, counters(1));
    agent.tick(t0 + 30_000).unwrap();
    assert_eq!(agent.state().agent_id, None, "credentials refused are forgotten");
    assert_eq!(agent.spool().len(), 1, "the refused report is kept");
    let retry = agent.tick(t0 + 150_000).unwrap();
    assert!(retry > t0 + 30_000);
    assert_eq!(agent.state().server_id, Some(second_id));
    assert!(agent.spool().is_empty(), "the kept report went to the new server");
    assert_eq!(stored_seqs(&hub, &token, second_id), [0, 1], "the kept report and the next");
}

/// Settings an administrator sets on the hub reach the running agent at its next
/// heartbeat and take effect without a restart: another watched unit, a log rule, a CPU
/// threshold. The agent reports the revision it runs, keeps it across a restart while
/// the hub is away, and still refuses to restart a unit only the hub added.
#[test]
fn hub_settings_apply_without_restart_and_survive_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut hub, server_id, enrollment, token) = hub_with_server(dir.path(), "cfg");
    let proc_root = dir.path().join("host");
    fixture::write(&proc_root, counters(0));
    let app_log = dir.path().join("app.log");
    std::fs::write(&app_log, "FATAL: before the rule existed\n").unwrap();
    let config_path = dir.path().join("config.yml");
    std::fs::write(
        &config_path,
        format!(
            "server:\n  endpoint: {}\n  enrollment_token: {enrollment}\nstorage:\n  state_dir: {}\n\
             monitoring:\n  services: [nginx]\n  log_paths: [{}]\ncommands:\n  allowed: [restart_service]\n",
            hub.url(),
            dir.path().join("state").display(),
            dir.path().join("none.log").display()
        ),
    )
    .unwrap();
    let units = ScriptedUnits::default();
    units.set("nginx", "active");
    units.set("mysql", "active");
    let mut agent = start_agent(&config_path, &proc_root, &units);
    let t0 = chrono::Utc::now().timestamp_millis();
    agent.tick(t0).unwrap();
    assert_eq!(agent.config_version(), 0);

    let settings_path = format!("/api/v1/servers/{server_id}/agent-settings");
    let settings = json!({"services": ["nginx", "mysql"], "thresholds": {"cpu": 1.0, "hold_seconds": 0},
                          "custom_logs": [{"path": app_log.display().to_string(), "patterns": ["^FATAL"]}]});
    assert_eq!(hub.api("PUT", &settings_path, &token, Some(settings))["version"], 1);

    // The next heartbeat carries revision 1; the agent switches to it in place.
    let heartbeat_ms = i64::from(hub.state().settings.heartbeat_interval_secs) * 1000;
    fixture::write(&proc_root, counters(1));
    agent.tick(t0 + heartbeat_ms).unwrap();
    assert_eq!(agent.config_version(), 1);
    assert_eq!(agent.config().monitoring.services, ["nginx", "mysql"]);

    // Now mysql fails, the rule's pattern appears, and CPU is above the new 1 %.
    units.set("mysql", "failed");
    let mut log = std::fs::OpenOptions::new().append(true).open(&app_log).unwrap();
    std::io::Write::write_all(&mut log, b"FATAL: database connection lost\nINFO: fine\n").unwrap();
    fixture::write(&proc_root, counters(2));
    agent.tick(t0 + heartbeat_ms + 30_000).unwrap();
    fixture::write(&proc_root, counters(3));
    agent.tick(t0 + 2 * heartbeat_ms + 30_000).unwrap();

    let alerts = hub.api("GET", &format!("/api/v1/alerts?server_id={server_id}"), &token, None);
    let of_type = |kind: &str| -> Vec<Value> {
        alerts["alerts"].as_array().unwrap().iter().filter(|a| a["type"] == kind).cloned().collect()
    };
    let failures = of_type("service_failure");
    assert_eq!(failures.len(), 1, "{alerts}");
    assert_eq!(failures[0]["details"]["unit"], "mysql");
    let matched = of_type("log_pattern");
    assert_eq!(matched.len(), 1, "only the line written after the rule arrived: {alerts}");
    assert!(matched[0]["message"].as_str().unwrap().contains("database connection lost"));
    assert_eq!(of_type("cpu_threshold").len(), 1, "{alerts}");

    // The agent said which revision it runs.
    let view = hub.api("GET", &settings_path, &token, None);
    assert_eq!(view["applied_version"], 1, "{view}");

    // A unit the hub added is watched, not restartable from the hub.
    let refused = hub.api(
        "POST",
        &format!("/api/v1/servers/{server_id}/commands"),
        &token,
        Some(json!({"type": "restart_service", "args": {"service": "mysql"}})),
    );
    fixture::write(&proc_root, counters(4));
    agent.tick(t0 + 3 * heartbeat_ms).unwrap();
    let commands = hub.api("GET", &format!("/api/v1/servers/{server_id}/commands"), &token, None);
    let command = commands["commands"].as_array().unwrap().iter().find(|c| c["id"] == refused["id"]).unwrap().clone();
    assert_eq!(command["state"], "rejected", "{command}");

    // Restarted while the hub is away: the settings are still in force.
    hub.pause();
    drop(agent);
    let agent = start_agent(&config_path, &proc_root, &units);
    assert_eq!(agent.config_version(), 1);
    assert_eq!(agent.config().monitoring.services, ["nginx", "mysql"]);
    assert_eq!(agent.config().alerts.cpu_threshold.0, 1.0);
}

/// `serverpulse-agent maintenance 30m "kernel upgrade"` on the host opens a silence
/// for its own server on the hub, authenticated with the agent's credentials.
#[test]
fn maintenance_from_the_host_silences_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, server_id, enrollment, token) = hub_with_server(dir.path(), "maint");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!("server:\n  endpoint: {}\nstorage:\n  state_dir: {}\n", hub.url(), dir.path().join("state").display()),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_serverpulse-agent"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, output) = run(&["maintenance", "30m", "kernel upgrade"]);
    assert!(!ok && output.contains("not registered"), "{output}");
    let (ok, output) = run(&["register", "--enrollment-token", &enrollment]);
    assert!(ok, "{output}");
    let (ok, output) = run(&["maintenance", "soon"]);
    assert!(!ok && output.contains("not a duration"), "{output}");
    let (ok, output) = run(&["maintenance", "30m", "kernel upgrade"]);
    assert!(ok && output.contains("maintenance until"), "{output}");

    let silences = hub.api("GET", "/api/v1/silences", &token, None);
    let silence = &silences["silences"][0];
    assert_eq!(silence["servers"], json!([server_id]));
    assert_eq!(silence["comment"], "kernel upgrade");
    assert!(silence["created_by"].as_str().unwrap().starts_with("agent on"), "{silence}");
    let length = silence["schedule"]["ends_at"].as_i64().unwrap() - silence["schedule"]["starts_at"].as_i64().unwrap();
    assert_eq!(length, 30 * 60_000);
}
