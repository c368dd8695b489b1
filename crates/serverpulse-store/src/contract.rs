//! The storage contract: what every backend must do, as executable checks.
//!
//! Each function takes a fresh, empty store and panics on the first broken promise. A
//! backend runs them all with [`contract_suite!`](crate::contract_suite):
//!
//! ```ignore
//! serverpulse_store::contract_suite!(fresh_store());
//! ```
//! where `fresh_store()` is an async expression giving `(guard, store)`; the guard (a
//! temporary directory, a database handle) lives as long as the test.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use serverpulse_domain::{AgentStatus, Role, Secret};
use serverpulse_proto::alert::{AgentAlert, Severity};
use serverpulse_proto::command::{AckStatus, CommandAck, CommandType};
use serverpulse_proto::report::{Document, Report, decode_report};
use serverpulse_proto::settings::{AgentSettings, ThresholdSettings};

use serverpulse_alerting::notify::{decode_channel, decode_silence};
use serverpulse_alerting::rule::Level;
use serverpulse_alerting::{EpisodeState, Phase, Rule, decode_rule};

use crate::{
    AckOutcome, AgentContact, AgentCredentials, AgentProfile, AlertAction, AlertQuery, AlertStatus, AlertingChange,
    CommandState, Contact, DeliveryOutcome, EnrollmentGrant, EventKind, EventQuery, IngestJob, NewApiToken, NewCommand,
    NewNotification, NewServer, NewSession, NewUser, NotificationQuery, RegisterOutcome, RegistrationWay,
    RetentionPolicy, Sample, ServerId, ServerPatch, Store, StoreError,
};

/// 2025-06-21T20:30:00Z.
pub const T0: i64 = 1_750_537_800_000;

/// Generates one `#[tokio::test]` per contract check for a backend.
#[macro_export]
macro_rules! contract_suite {
    // `optional`: `$make` gives `Option<(guard, store)>`, `None` skipping the check (a
    // backend whose server is not configured here).
    (optional $make:expr) => {
        $crate::contract_suite!(@checks $make, optional);
    };
    ($make:expr) => {
        $crate::contract_suite!(@checks $make, always);
    };
    (@checks $make:expr, $mode:ident) => {
        $crate::contract_suite!(@each $make, $mode;
            servers_round_trip_and_removal_is_logged,
            enrollment_tokens_are_single_use_and_expire,
            existing_credentials_register_without_a_new_token,
            ip_registration_refuses_an_active_agent,
            reports_with_a_known_seq_are_stored_once,
            rates_follow_agent_time_not_arrival_order,
            silent_agents_disconnect_and_come_back,
            quiet_servers_are_the_silent_the_disconnected_and_the_alerted,
            commands_are_delivered_until_acknowledged_once,
            users_and_api_tokens,
            service_changes_are_kept,
            history_is_bounded_by_range_and_limit,
            removing_a_server_removes_its_data_and_its_agent,
            alerts_are_kept_with_their_details,
            agent_settings_are_versioned,
            rules_are_kept_and_names_are_unique,
            alert_episodes_open_escalate_acknowledge_and_resolve,
            notifications_are_queued_with_their_alert_retried_and_logged,
            silences_are_kept_until_over,
            the_first_user_is_created_once,
            sessions_expire_and_end_with_a_password_change,
            charts_reduce_samples_to_buckets,
            fleet_counts_open_alerts_and_failed_units,
            roles_change_tokens_revoke_and_an_admin_remains,
            long_range_charts_match_the_raw_samples,
            a_bucket_compaction_closed_counts_its_samples_once,
            samples_of_one_time_are_re_rated_together,
            a_batch_commits_jobs_together_and_fails_them_alone,
            contacts_are_recorded_together_and_fail_alone,
            a_batch_commits_reports_and_contacts_together,
            a_batch_rates_reports_against_their_neighbours_in_agent_time,
            agent_changes_move_with_every_change_of_an_identity,
            a_batch_judges_each_servers_rules_against_its_stored_episodes,
            a_batch_answers_with_each_server_as_stored,
            retention_removes_exactly_what_is_past_its_age,
            a_silent_servers_newest_bucket_outlives_its_five_minute_summary,
            an_open_bucket_is_summed_up_before_its_raw_samples_go,
            a_late_report_in_the_open_bucket_counts_when_it_closes,
            retention_keeps_under_the_size_cap_oldest_first,
            compacted_hours_take_late_reports_once,
            reports_after_the_newest_sample_are_checked_like_any_other,
            readers_see_each_sample_once_while_compaction_moves_it,
            events_are_searched_literally_in_any_case,
        );
    };
    (@each $make:expr, always; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (_guard, store) = $make.await;
                $crate::contract::$check(&store).await;
            }
        )*
    };
    (@each $make:expr, optional; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some((_guard, store)) = $make.await else { return };
                $crate::contract::$check(&store).await;
            }
        )*
    };
}

fn enrollment_grant(expires_at: i64) -> (Secret, EnrollmentGrant) {
    let secret = Secret::generate().expect("randomness");
    let grant = EnrollmentGrant { token: secret.digest(), expires_at };
    (secret, grant)
}

fn credentials(agent_id: &str) -> (Secret, AgentCredentials) {
    let secret = Secret::generate().expect("randomness");
    let credentials = AgentCredentials { agent_id: agent_id.to_owned(), token: secret.digest() };
    (secret, credentials)
}

fn profile(hostname: &str) -> AgentProfile {
    AgentProfile {
        hostname: hostname.to_owned(),
        agent_version: Some("1.0.0".to_owned()),
        system_info: json!({"system_info": {"os": "Debian 12"}}),
    }
}

async fn server(store: &dyn Store, name: &str, ip: &str) -> ServerId {
    let (_, grant) = enrollment_grant(T0 + 3_600_000);
    store
        .create_server(NewServer { name: name.to_owned(), ip: ip.parse().expect("ip") }, grant, T0)
        .await
        .expect("create server")
        .id
}

/// A server with an active agent `agent_id`.
async fn agent(store: &dyn Store, agent_id: &str, ip: &str) -> ServerId {
    let id = server(store, agent_id, ip).await;
    let (_, fresh) = credentials(agent_id);
    let outcome = store
        .register_agent(RegistrationWay::ServerIp { ip: ip.parse().expect("ip"), fresh }, profile(agent_id), T0)
        .await
        .expect("register");
    assert!(matches!(outcome, RegisterOutcome::Registered { server_id, .. } if server_id == id));
    id
}

fn report(seq: Option<u64>, at: i64, rx: u64, services: Value) -> Report {
    let timestamp = serverpulse_proto::time::format_timestamp(at);
    let mut doc = json!({"timestamp": timestamp,
        "metrics": {"cpu_usage": 10.0, "memory_usage": 20.0, "disk_usage": 30.0, "uptime": 100_000, "network_rx": rx},
        "services": services});
    if let Some(seq) = seq {
        doc["seq"] = json!(seq);
    }
    decode_report(&doc, "", at).expect("valid report")
}

pub async fn servers_round_trip_and_removal_is_logged(store: &dyn Store) {
    let id = server(store, "web", "2001:db8::7").await;
    let fetched = store.get_server(id).await.expect("get");
    assert_eq!(fetched.name, "web");
    assert_eq!(fetched.ip.to_string(), "2001:db8::7");
    assert_eq!(fetched.agent_status, AgentStatus::Inactive);
    assert!(fetched.agent_enabled);
    let patched = store
        .update_server(
            id,
            ServerPatch { name: Some("web-1".into()), agent_enabled: Some(false), ..ServerPatch::default() },
            T0 + 1,
        )
        .await
        .expect("update");
    assert_eq!((patched.name.as_str(), patched.agent_enabled), ("web-1", false));
    assert_eq!(patched.ip, fetched.ip, "unpatched fields stay");
    assert_eq!(store.list_servers().await.expect("list").len(), 1);
    store.delete_server(id, T0 + 2).await.expect("delete");
    assert!(matches!(store.get_server(id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_server(id, T0 + 3).await, Err(StoreError::NotFound)));
    let events = store.events(EventQuery { limit: 10, ..EventQuery::default() }).await.expect("events");
    assert_eq!(events[0].kind, EventKind::ServerRemoved);
    assert_eq!(events[0].server_id, None, "the log outlives the server");
    assert_eq!(events.last().map(|e| e.kind), Some(EventKind::ServerAdded));
}

pub async fn agent_settings_are_versioned(store: &dyn Store) {
    let id = server(store, "web", "10.0.0.9").await;
    let initial = store.agent_settings(id).await.expect("settings");
    assert_eq!((initial.version, initial.value), (0, AgentSettings::default()));
    let first = AgentSettings { collection_interval: Some(15), ..AgentSettings::default() };
    let second = AgentSettings {
        services: Some(vec!["nginx".into()]),
        thresholds: Some(ThresholdSettings { cpu: Some(72.5), ..ThresholdSettings::default() }),
        ..AgentSettings::default()
    };
    assert_eq!(store.set_agent_settings(id, first, T0).await.expect("set").version, 1);
    assert_eq!(store.set_agent_settings(id, second.clone(), T0 + 1).await.expect("set").version, 2);
    let back = store.agent_settings(id).await.expect("settings");
    assert_eq!((back.version, back.value), (2, second), "the newest settings replace the older ones whole");
    let events =
        store.events(EventQuery { server_id: Some(id), limit: 10, ..EventQuery::default() }).await.expect("events");
    assert_eq!(events.iter().filter(|e| e.message.contains("agent settings changed")).count(), 2);
    let unknown = store.set_agent_settings(id + 1000, AgentSettings::default(), T0).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)));
    assert!(matches!(store.agent_settings(id + 1000).await, Err(StoreError::NotFound)));
}

pub async fn enrollment_tokens_are_single_use_and_expire(store: &dyn Store) {
    let id = server(store, "a", "10.0.0.1").await;
    let (secret, grant) = enrollment_grant(T0 + 1_000);
    store.add_enrollment(id, grant, T0).await.expect("add enrollment");
    let looked_up = store.enrollment_server(&secret.digest(), T0 + 5).await.expect("lookup");
    assert_eq!(looked_up.map(|s| s.id), Some(id), "looking a token up does not use it");
    assert!(store.enrollment_server(&secret.digest(), T0 + 1_000).await.expect("lookup").is_none(), "expired");
    let enrol = |at| {
        let (_, fresh) = credentials(&format!("agent-{at}"));
        store.register_agent(RegistrationWay::Enrollment { token: secret.digest(), fresh }, profile("a"), at)
    };
    assert!(matches!(enrol(T0 + 10).await.expect("enrol"), RegisterOutcome::Registered { .. }));
    assert_eq!(enrol(T0 + 20).await.expect("reuse"), RegisterOutcome::EnrollmentRefused);
    assert!(store.enrollment_server(&secret.digest(), T0 + 30).await.expect("lookup").is_none(), "used");

    let (late, grant) = enrollment_grant(T0 + 1_000);
    store.add_enrollment(id, grant, T0).await.expect("add enrollment");
    let (_, fresh) = credentials("late");
    let outcome = store
        .register_agent(RegistrationWay::Enrollment { token: late.digest(), fresh }, profile("a"), T0 + 1_000)
        .await
        .expect("expired");
    assert_eq!(outcome, RegisterOutcome::EnrollmentRefused);
    assert!(matches!(store.add_enrollment(9_999, grant_only(), T0).await, Err(StoreError::NotFound)));
}

fn grant_only() -> EnrollmentGrant {
    enrollment_grant(T0).1
}

pub async fn existing_credentials_register_without_a_new_token(store: &dyn Store) {
    let id = server(store, "b", "10.0.0.2").await;
    let (secret, creds) = credentials("pre-1");
    store.set_agent_credentials(id, creds, T0).await.expect("credentials");
    let identity = store.agent_identity("pre-1").await.expect("identity").expect("exists");
    assert_eq!(identity.server_id, id);
    assert!(identity.token.matches(secret.expose()));
    let outcome = store
        .register_agent(RegistrationWay::ExistingAgent { token: secret.digest() }, profile("b-host"), T0 + 5)
        .await
        .expect("register");
    assert_eq!(outcome, RegisterOutcome::Registered { server_id: id, agent_id: "pre-1".into(), issued_token: false });
    let server = store.get_server(id).await.expect("get");
    assert_eq!(server.hostname.as_deref(), Some("b-host"));
    assert_eq!(server.agent_status, AgentStatus::Active);

    let (stranger, _) = credentials("x");
    let outcome = store
        .register_agent(RegistrationWay::ExistingAgent { token: stranger.digest() }, profile("b"), T0)
        .await
        .expect("register");
    assert_eq!(outcome, RegisterOutcome::NoMatch);
    store
        .update_server(id, ServerPatch { agent_enabled: Some(false), ..ServerPatch::default() }, T0)
        .await
        .expect("disable");
    let outcome = store
        .register_agent(RegistrationWay::ExistingAgent { token: secret.digest() }, profile("b"), T0)
        .await
        .expect("register");
    assert_eq!(outcome, RegisterOutcome::NoMatch, "a disabled agent cannot re-register");
    assert!(!store.agent_identity("pre-1").await.expect("identity").expect("exists").enabled);
}

pub async fn ip_registration_refuses_an_active_agent(store: &dyn Store) {
    let id = agent(store, "c", "10.0.0.3").await;
    let (_, fresh) = credentials("intruder");
    let outcome = store
        .register_agent(
            RegistrationWay::ServerIp { ip: "10.0.0.3".parse().expect("ip"), fresh },
            profile("evil"),
            T0 + 1,
        )
        .await
        .expect("register");
    assert_eq!(outcome, RegisterOutcome::AgentActive);
    assert_eq!(store.get_server(id).await.expect("get").agent_id.as_deref(), Some("c"));
    assert!(store.agent_identity("intruder").await.expect("identity").is_none());
    let (_, fresh) = credentials("nobody");
    let outcome = store
        .register_agent(RegistrationWay::ServerIp { ip: "10.9.9.9".parse().expect("ip"), fresh }, profile("x"), T0)
        .await
        .expect("register");
    assert_eq!(outcome, RegisterOutcome::NoMatch);
}

pub async fn reports_with_a_known_seq_are_stored_once(store: &dyn Store) {
    let id = agent(store, "d", "10.0.0.4").await;
    let batch = [
        report(Some(1), T0, 0, json!([])),
        report(Some(2), T0 + 30_000, 0, json!([])),
        report(Some(2), T0 + 30_000, 0, json!([])),
        report(None, T0 + 60_000, 0, json!([])),
    ];
    let first = store.store_reports(id, &batch, T0 + 61_000).await.expect("store");
    assert_eq!(first.stored, 3);
    assert_eq!(first.stored_seqs, [1, 2]);
    assert_eq!(first.duplicate_seqs, [2]);
    let replay = store.store_reports(id, &batch, T0 + 62_000).await.expect("replay");
    assert_eq!(replay.stored, 1, "only the report without seq is stored again");
    assert_eq!(replay.duplicate_seqs, [1, 2, 2]);
    let history = store.metrics_history(id, T0, T0 + 60_000, 100).await.expect("history");
    assert_eq!(history.len(), 4);
}

pub async fn rates_follow_agent_time_not_arrival_order(store: &dyn Store) {
    let id = agent(store, "e", "10.0.0.5").await;
    store
        .store_reports(id, &[report(Some(1), T0, 0, json!([])), report(Some(3), T0 + 60_000, 6_000, json!([]))], T0)
        .await
        .expect("store");
    store.store_reports(id, &[report(Some(2), T0 + 30_000, 1_500, json!([]))], T0).await.expect("late report");
    let rates: Vec<Option<f64>> = store
        .metrics_history(id, T0, T0 + 60_000, 10)
        .await
        .expect("history")
        .iter()
        .map(|s| s.network_rx_rate)
        .collect();
    assert_eq!(rates, [None, Some(50.0), Some(150.0)]);
    let server = store.get_server(id).await.expect("get");
    assert_eq!(server.last_metrics_at, Some(T0 + 60_000), "a late report does not replace newer metrics");
}

pub async fn silent_agents_disconnect_and_come_back(store: &dyn Store) {
    let id = agent(store, "f", "10.0.0.6").await;
    let never = server(store, "never-registered", "10.0.0.66").await;
    assert!(store.mark_silent_agents(T0 + 100, 100).await.expect("sweep").is_empty());
    assert_eq!(store.mark_silent_agents(T0 + 101, 100).await.expect("sweep"), [id]);
    assert!(store.mark_silent_agents(T0 + 500, 100).await.expect("sweep").is_empty());
    assert_eq!(store.get_server(id).await.expect("get").agent_status, AgentStatus::Disconnected);
    assert_eq!(store.get_server(never).await.expect("get").agent_status, AgentStatus::Inactive);
    let beat = AgentContact { status: Some("online".into()), config_version: Some(3) };
    let recorded = store.record_contacts(&[heartbeat(id, T0 + 600, beat)]).await.expect("heartbeat");
    assert!(recorded.iter().all(Result::is_ok));
    let back = store.get_server(id).await.expect("get");
    assert_eq!(back.agent_status, AgentStatus::Active);
    assert_eq!(back.agent_last_heartbeat, Some(T0 + 600));
    assert_eq!(back.agent_config.value()["heartbeat"]["config_version"], json!(3));
    let transitions: Vec<String> = store
        .events(EventQuery {
            server_id: Some(id),
            kind: Some(EventKind::AgentStatus),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.details["to"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(transitions, ["active", "disconnected"], "newest first");
}

pub async fn quiet_servers_are_the_silent_the_disconnected_and_the_alerted(store: &dyn Store) {
    let reporting = agent(store, "q-reporting", "10.0.0.71").await;
    let silent = agent(store, "q-silent", "10.0.0.72").await;
    let never = server(store, "q-never", "10.0.0.73").await;
    let alerted = agent(store, "q-alerted", "10.0.0.74").await;
    for (id, at) in [(reporting, T0 + 600_000), (silent, T0), (alerted, T0 + 600_000)] {
        store.store_reports(id, &[report(Some(1), at, 0, json!([]))], at).await.expect("store");
    }
    let alert = AgentAlert {
        kind: "disk".into(),
        severity: Severity::Critical,
        message: "/ full".into(),
        details: Value::Null,
        host_time: None,
    };
    store.store_agent_alerts(alerted, &[alert], &[], T0 + 600_000).await.expect("alert");
    let quiet = |since: i64| async move {
        store.quiet_servers(since).await.expect("quiet").iter().map(|s| s.id).collect::<Vec<_>>()
    };
    assert_eq!(quiet(T0 + 300_000).await, [silent, alerted], "silent 5 min, alert open (never reported: no)");
    assert_eq!(quiet(T0).await, [alerted], "a report at `since` is recent enough");
    store.mark_silent_agents(T0 + 10_000_000, 100).await.expect("sweep");
    assert_eq!(quiet(i64::MIN).await, [reporting, silent, alerted], "every agent disconnected");
    assert!(!quiet(i64::MAX).await.contains(&never));
}

pub async fn commands_are_delivered_until_acknowledged_once(store: &dyn Store) {
    let id = agent(store, "g", "10.0.0.7").await;
    let enqueue = |cmd_id: &str, expires_at| {
        store.enqueue_command(
            id,
            NewCommand {
                id: cmd_id.to_owned(),
                kind: CommandType::CollectNow,
                args: json!({}),
                expires_at,
                issued_by: "tester".into(),
            },
            T0,
        )
    };
    let queued = enqueue("c1", T0 + 10_000).await.expect("enqueue");
    assert_eq!(queued.state, CommandState::Pending);
    enqueue("c2", T0 + 100).await.expect("enqueue");
    assert_eq!(store.pending_command_count(id, T0 + 50).await.expect("count"), 2);
    assert_eq!(store.pending_command_count(id, T0 + 200).await.expect("count"), 1, "c2 expired");
    // A report's answer says how many wait, as of its arrival.
    let stored = store.store_reports(id, &[report(Some(70), T0 + 40, 0, json!([]))], T0 + 50).await.expect("report");
    assert_eq!(stored.commands_pending, 2);
    let stored = store.store_reports(id, &[report(Some(71), T0 + 190, 0, json!([]))], T0 + 200).await.expect("report");
    assert_eq!(stored.commands_pending, 1, "c2 expired");
    let pending = store.pending_commands(id, T0 + 200).await.expect("pending");
    assert_eq!(store.pending_command_count(id, T0 + 200).await.expect("count"), 0, "delivered now");
    assert_eq!(pending.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["c1"], "expired c2 is not handed out");
    assert_eq!(pending[0].state, CommandState::Delivered);
    assert_eq!(store.pending_commands(id, T0 + 300).await.expect("again").len(), 1, "redelivered until acked");
    let ack = CommandAck {
        status: AckStatus::Rejected,
        output: Some("not allowed".into()),
        exit_code: None,
        host_time: None,
    };
    assert_eq!(store.ack_command(id, "c1", &ack, T0 + 400).await.expect("ack"), AckOutcome::Recorded);
    assert_eq!(store.ack_command(id, "c1", &ack, T0 + 500).await.expect("ack"), AckOutcome::Duplicate);
    assert_eq!(store.ack_command(id, "zz", &ack, T0 + 500).await.expect("ack"), AckOutcome::UnknownCommand);
    assert!(store.pending_commands(id, T0 + 600).await.expect("pending").is_empty());
    let listed = store.list_commands(id, 10).await.expect("list");
    let c1 = listed.iter().find(|c| c.id == "c1").expect("c1");
    assert_eq!((c1.state, c1.acked_at), (CommandState::Rejected, Some(T0 + 400)));
    let other = agent(store, "h", "10.0.0.8").await;
    assert_eq!(
        store.ack_command(other, "c2", &ack, T0).await.expect("ack"),
        AckOutcome::UnknownCommand,
        "commands of another server are invisible"
    );
    assert!(matches!(enqueue_for(store, 9_999).await, Err(StoreError::NotFound)));
}

async fn enqueue_for(store: &dyn Store, server: ServerId) -> Result<crate::CommandRecord, StoreError> {
    store
        .enqueue_command(
            server,
            NewCommand {
                id: "orphan".into(),
                kind: CommandType::RunCheck,
                args: json!({}),
                expires_at: T0 + 1,
                issued_by: "t".into(),
            },
            T0,
        )
        .await
}

pub async fn users_and_api_tokens(store: &dyn Store) {
    let user = store
        .create_user(
            NewUser { email: "Ops@Example.test".into(), role: Role::Operator, password_hash: "$argon2id$stub".into() },
            T0,
        )
        .await
        .expect("user");
    let duplicate = store
        .create_user(NewUser { email: "ops@example.test".into(), role: Role::Admin, password_hash: "x".into() }, T0)
        .await;
    assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "e-mail addresses are case-insensitive");
    let found = store.user_by_email("OPS@example.test").await.expect("lookup").expect("found");
    assert_eq!(found.user, user);
    assert_eq!(found.password_hash, "$argon2id$stub");
    let secret = Secret::generate().expect("randomness");
    store
        .create_api_token(
            NewApiToken { id: "abcdef0123456789".into(), user_id: user.id, name: "ci".into(), secret: secret.digest() },
            T0,
        )
        .await
        .expect("token");
    let (token, owner) = store.api_token("abcdef0123456789").await.expect("lookup").expect("found");
    assert!(token.secret.matches(secret.expose()));
    assert_eq!(owner.role, Role::Operator);
    assert!(store.api_token("0000000000000000").await.expect("lookup").is_none());
    let orphan = store
        .create_api_token(
            NewApiToken { id: "ffffffffffffffff".into(), user_id: 9_999, name: "x".into(), secret: secret.digest() },
            T0,
        )
        .await;
    assert!(orphan.is_err(), "a token needs a user");
    assert_eq!(store.list_users().await.expect("users").len(), 1);
}

pub async fn service_changes_are_kept(store: &dyn Store) {
    let id = agent(store, "i", "10.0.0.9").await;
    let up = json!([{"name": "nginx", "status": "active"}]);
    let down = json!([{"name": "nginx", "status": "failed", "sub_state": "failed"}]);
    store.store_reports(id, &[report(None, T0, 0, up.clone())], T0).await.expect("store");
    store.store_reports(id, &[report(None, T0 + 1_000, 0, up)], T0).await.expect("store");
    store.store_reports(id, &[report(None, T0 + 2_000, 0, down)], T0).await.expect("store");
    // An older report arriving late does not roll the state back.
    let stale = json!([{"name": "nginx", "status": "active"}]);
    store.store_reports(id, &[report(None, T0 + 1_500, 0, stale)], T0).await.expect("store");
    let services = store.services(id).await.expect("services");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].status.as_str(), "failed");
    assert_eq!(services[0].since, T0 + 2_000);
    let history = store.service_history(id, 10).await.expect("history");
    let steps: Vec<_> = history.iter().map(|c| (c.from.map(|s| s.as_str()), c.to.as_str())).collect();
    assert_eq!(steps, [(Some("active"), "failed"), (None, "active")]);

    // A sub-state or the details changing alone are kept too (the status's history
    // stays); a report repeating the unit as stored writes nothing.
    let dead = json!([{"name": "nginx", "status": "failed", "sub_state": "dead"}]);
    store.store_reports(id, &[report(None, T0 + 3_000, 0, dead)], T0).await.expect("store");
    let restarted = json!([{"name": "nginx", "status": "failed", "sub_state": "dead", "restarts": 3}]);
    store.store_reports(id, &[report(None, T0 + 4_000, 0, restarted.clone())], T0).await.expect("store");
    store.store_reports(id, &[report(None, T0 + 5_000, 0, restarted.clone())], T0).await.expect("store");
    let services = store.services(id).await.expect("services");
    assert_eq!(services[0].sub_state.as_deref(), Some("dead"));
    assert_eq!(services[0].details["restarts"], json!(3));
    assert_eq!((services[0].since, services[0].updated_at), (T0 + 2_000, T0 + 4_000));
    assert_eq!(store.service_history(id, 10).await.expect("history").len(), 2);

    // Whatever a late report (newer than the unit's last change) does, the next report
    // is compared with the units as they then are: it lists them as the newest one did,
    // which is no proof that they are still stored that way.
    let late = json!([{"name": "nginx", "status": "active"}]);
    store.store_reports(id, &[report(None, T0 + 4_500, 0, late)], T0).await.expect("store");
    store.store_reports(id, &[report(None, T0 + 6_000, 0, restarted)], T0).await.expect("store");
    let services = store.services(id).await.expect("services");
    assert_eq!((services[0].status.as_str(), services[0].sub_state.as_deref()), ("failed", Some("dead")));
    assert_eq!(services[0].details["restarts"], json!(3));
}

pub async fn history_is_bounded_by_range_and_limit(store: &dyn Store) {
    let id = agent(store, "j", "10.0.0.10").await;
    let reports: Vec<Report> = (0..10).map(|i| report(Some(i), T0 + i as i64 * 1_000, 0, json!([]))).collect();
    store.store_reports(id, &reports, T0 + 20_000).await.expect("store");
    let window = store.metrics_history(id, T0 + 2_000, T0 + 5_000, 100).await.expect("history");
    assert_eq!(window.iter().map(|s| s.seq).collect::<Vec<_>>(), [Some(2), Some(3), Some(4), Some(5)]);
    let limited = store.metrics_history(id, T0, T0 + 10_000, 3).await.expect("history");
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0].at, T0, "oldest first");
    assert_eq!(limited[0].cpu_usage, Some(10.0));
    assert_eq!(limited[0].raw["seq"], json!(0));

    // A report that comes with its document's text (as a request carrying one report
    // does) is stored with that text as it is; one that came alone in a gzip body keeps
    // that body, and reads back as the report in it.
    let text = r#"{ "seq": 10, "metrics": {"cpu_usage": 12.50, "memory_usage": 1, "disk_usage": 1}, "extra": [1, 2] }"#;
    let other = text.replace(r#""seq": 10"#, r#""seq": 11"#);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gzip, format!(r#"{{"reports":[{other}]}}"#).as_bytes()).expect("gzip");
    let sent = [
        Report { document: Document::Text(text.to_owned()), ..report(Some(10), T0 + 10_000, 0, json!([])) },
        Report {
            document: Document::GzipBody(gzip.finish().expect("gzip")),
            ..report(Some(11), T0 + 11_000, 0, json!([]))
        },
    ];
    store.store_reports(id, &sent, T0 + 20_000).await.expect("store");
    let kept = store.metrics_history(id, T0 + 10_000, T0 + 11_000, 2).await.expect("history");
    assert_eq!(kept[0].raw, serde_json::from_str::<Value>(text).expect("json"), "the text sent, not `raw` again");
    assert_eq!(kept[1].raw, serde_json::from_str::<Value>(&other).expect("json"), "the report in the body sent");
}

pub async fn removing_a_server_removes_its_data_and_its_agent(store: &dyn Store) {
    let id = agent(store, "k", "10.0.0.11").await;
    store
        .store_reports(id, &[report(Some(1), T0, 0, json!([{"name": "ssh", "status": "active"}]))], T0)
        .await
        .expect("store");
    store.delete_server(id, T0 + 1).await.expect("delete");
    assert!(store.agent_identity("k").await.expect("identity").is_none());
    assert!(store.metrics_history(id, 0, i64::MAX, 10).await.expect("history").is_empty());
    assert!(store.services(id).await.expect("services").is_empty());
    assert!(matches!(
        store.store_reports(id, &[report(Some(2), T0, 0, json!([]))], T0).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn alerts_are_kept_with_their_details(store: &dyn Store) {
    let id = agent(store, "l", "10.0.0.12").await;
    let alerts = [
        AgentAlert {
            kind: "oom_kill".into(),
            severity: Severity::Critical,
            message: "postgres killed".into(),
            details: json!({"pid": 4242}),
            host_time: Some(T0 - 5),
        },
        AgentAlert {
            kind: "disk".into(),
            severity: Severity::Warning,
            message: "/ at 91%".into(),
            details: Value::Null,
            host_time: None,
        },
    ];
    let ids = store.store_agent_alerts(id, &alerts, &[], T0).await.expect("alerts");
    assert_eq!(ids.len(), 2);
    let stored =
        store.alerts(AlertQuery { server_id: Some(id), limit: 10, ..AlertQuery::default() }).await.expect("alerts");
    assert_eq!(stored[1].kind, "oom_kill");
    assert_eq!(stored[1].details["pid"], json!(4242));
    assert_eq!(stored[1].host_time, Some(T0 - 5));
    assert_eq!(stored[0].severity, Severity::Warning);
    assert_eq!(stored[0].status, AlertStatus::Firing);
    let logged = store
        .events(EventQuery { kind: Some(EventKind::AgentAlert), limit: 10, ..EventQuery::default() })
        .await
        .expect("events");
    assert_eq!(logged.len(), 2);

    // The same type again within the window joins the episode; the agent's recovery ends it.
    let again = [AgentAlert { severity: Severity::Critical, message: "/ at 96%".into(), ..alerts[1].clone() }];
    assert_eq!(store.store_agent_alerts(id, &again, &[], T0 + 60_000).await.expect("again"), [ids[1]]);
    let joined = store.alert(ids[1]).await.expect("alert");
    assert_eq!((joined.occurrences, joined.severity, joined.message.as_str()), (2, Severity::Critical, "/ at 96%"));
    let recovered =
        [AgentAlert { details: json!({"state": "resolved"}), severity: Severity::Info, ..alerts[1].clone() }];
    store.store_agent_alerts(id, &recovered, &[], T0 + 120_000).await.expect("recovered");
    let closed = store.alert(ids[1]).await.expect("alert");
    assert_eq!((closed.status, closed.resolved_by.as_deref()), (AlertStatus::Resolved, Some("agent")));
    // After the episode, the same type is a new episode.
    let fresh = store.store_agent_alerts(id, &alerts[1..], &[], T0 + 180_000).await.expect("fresh");
    assert_ne!(fresh, [ids[1]]);
    let open =
        AlertQuery { server_id: Some(id), status: Some(AlertStatus::Firing), limit: 10, ..AlertQuery::default() };
    assert_eq!(store.alerts(open).await.expect("open").len(), 2, "oom_kill and the new disk episode");
    assert!(!store.alert(fresh[0]).await.expect("alert").silenced);
    // Under a silence the episode is recorded as silenced, and nobody is queued.
    let quiet = AgentAlert { kind: "mce".into(), ..alerts[0].clone() };
    let hushed = crate::Recipients { channels: Vec::new(), silenced: true };
    let stored = store.store_agent_alerts(id, &[quiet], &[hushed], T0 + 240_000).await.expect("silenced");
    assert!(store.alert(stored[0]).await.expect("alert").silenced);
}

pub async fn rules_are_kept_and_names_are_unique(store: &dyn Store) {
    let defaults = store.list_rules().await.expect("rules");
    assert!(defaults.iter().any(|r| r.builtin && r.rule.name == "CPU"), "the defaults ship");
    let rule = decode_rule(&json!({"name": "web disk", "metric": "disk:/var", "op": ">", "warning": 80,
                                   "scope": {"tags": ["web"]}}))
    .expect("rule");
    let created = store.create_rule(rule.clone(), T0).await.expect("create");
    assert!(!created.builtin);
    assert_eq!(store.get_rule(created.id).await.expect("get").rule, rule);
    assert!(matches!(store.create_rule(rule.clone(), T0).await, Err(StoreError::Conflict(_))));
    let changed = Rule { warning: Some(85.0), ..rule };
    assert_eq!(store.update_rule(created.id, changed.clone(), T0 + 1).await.expect("update").rule, changed);
    store.delete_rule(created.id, T0 + 2).await.expect("delete");
    assert!(matches!(store.get_rule(created.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.update_rule(created.id, changed, T0 + 3).await, Err(StoreError::NotFound)));
}

pub async fn alert_episodes_open_escalate_acknowledge_and_resolve(store: &dyn Store) {
    let id = server(store, "ep", "10.0.0.40").await;
    let rule = store.list_rules().await.expect("rules").into_iter().find(|r| r.rule.name == "CPU").expect("CPU");
    let firing = |level| EpisodeState {
        phase: Phase::Firing { since: T0, level, recovered_since: None },
        value: Some(90.0),
        updated_at: T0,
    };
    let open = AlertingChange {
        rule_id: rule.id,
        subject: String::new(),
        state: firing(Level::Warning),
        action: Some(AlertAction::Open {
            kind: "cpu".into(),
            severity: Severity::Warning,
            message: "cpu at 90 %".into(),
            value: 90.0,
            threshold: Some(80.0),
            since: T0 - 300_000,
            details: json!({}),
        }),
        notify: vec![],
        silenced: false,
    };
    let touched = store.apply_alerting(id, vec![open], T0).await.expect("open");
    let alert = store.alert(touched[0]).await.expect("alert");
    assert_eq!((alert.status, alert.source.as_str(), alert.started_at), (AlertStatus::Firing, "rule", T0 - 300_000));
    let states = store.rule_states(id).await.expect("states");
    assert_eq!((states[0].alert_id, states[0].state), (Some(alert.id), firing(Level::Warning)));

    let escalate = AlertingChange {
        rule_id: rule.id,
        subject: String::new(),
        state: firing(Level::Critical),
        action: Some(AlertAction::Escalate {
            severity: Severity::Critical,
            message: "cpu at 97 %".into(),
            value: 97.0,
            threshold: Some(95.0),
        }),
        notify: vec![],
        silenced: false,
    };
    store.apply_alerting(id, vec![escalate], T0 + 1).await.expect("escalate");
    let acked = store.acknowledge_alert(alert.id, "ops@example.test", "looking", T0 + 2).await.expect("ack");
    assert_eq!(acked.severity, Severity::Critical, "the same episode, escalated");
    assert_eq!((acked.status, acked.ack_comment.as_deref()), (AlertStatus::Acknowledged, Some("looking")));

    let resolve = AlertingChange {
        rule_id: rule.id,
        subject: String::new(),
        state: EpisodeState { updated_at: T0 + 3, ..EpisodeState::default() },
        action: Some(AlertAction::Resolve { message: "cpu back to 40 %".into(), value: 40.0 }),
        notify: vec![],
        silenced: false,
    };
    store.apply_alerting(id, vec![resolve], T0 + 3).await.expect("resolve");
    let resolved = store.alert(alert.id).await.expect("alert");
    assert_eq!((resolved.status, resolved.resolved_by.as_deref()), (AlertStatus::Resolved, Some("recovery")));
    assert!(store.rule_states(id).await.expect("states").is_empty(), "the episode is over: not kept");
    assert!(matches!(store.acknowledge_alert(alert.id, "x", "", T0 + 4).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.resolve_alert(alert.id, "x", T0 + 4).await, Err(StoreError::Conflict(_))));
    let kinds: Vec<EventKind> = store
        .events(EventQuery { server_id: Some(id), limit: 20, ..EventQuery::default() })
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    for kind in
        [EventKind::AlertFired, EventKind::AlertEscalated, EventKind::AlertAcknowledged, EventKind::AlertResolved]
    {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
}

pub async fn notifications_are_queued_with_their_alert_retried_and_logged(store: &dyn Store) {
    let id = server(store, "nt", "10.0.0.41").await;
    let channel = decode_channel(&json!({"name": "hook", "kind": "webhook",
                                         "settings": {"url": "http://127.0.0.1:9/x", "secret": "k"},
                                         "repeat_every": 600}))
    .expect("channel");
    let stored = store.create_channel(channel.clone(), T0).await.expect("create");
    assert_eq!(store.get_channel(stored.id).await.expect("get").channel, channel);
    assert!(matches!(store.create_channel(channel, T0).await, Err(StoreError::Conflict(_))));
    let rule = store.list_rules().await.expect("rules")[0].id;
    let open = AlertingChange {
        rule_id: rule,
        subject: String::new(),
        state: EpisodeState {
            phase: Phase::Firing { since: T0, level: Level::Warning, recovered_since: None },
            value: Some(90.0),
            updated_at: T0,
        },
        action: Some(AlertAction::Open {
            kind: "cpu".into(),
            severity: Severity::Warning,
            message: "cpu at 90 %".into(),
            value: 90.0,
            threshold: Some(80.0),
            since: T0,
            details: json!({}),
        }),
        notify: vec![stored.id],
        silenced: false,
    };
    let alert = store.apply_alerting(id, vec![open], T0).await.expect("open")[0];
    let due = store.due_notifications(T0, 10).await.expect("due");
    assert_eq!(due.len(), 1, "queued with the alert, in its transaction");
    assert_eq!((due[0].event.as_str(), due[0].alert.as_ref().map(|a| a.id)), ("firing", Some(alert)));
    // A failure is retried later; the attempt is logged with its error.
    let failure = DeliveryOutcome { error: Some("HTTP 500".into()), duration_ms: 12, retry_at: Some(T0 + 30_000) };
    store.record_delivery(due[0].id, failure, T0 + 1).await.expect("record");
    assert!(store.due_notifications(T0 + 29_000, 10).await.expect("due").is_empty(), "not before its retry time");
    let again = store.due_notifications(T0 + 30_000, 10).await.expect("due");
    assert_eq!(again[0].attempts, 1);
    let success = DeliveryOutcome { error: None, duration_ms: 5, retry_at: None };
    store.record_delivery(again[0].id, success, T0 + 30_001).await.expect("record");
    let log = store
        .notifications(NotificationQuery { alert_id: Some(alert), limit: 10, ..NotificationQuery::default() })
        .await
        .expect("log");
    assert_eq!((log[0].status.as_str(), log[0].attempts), ("sent", 2));
    assert_eq!(log[0].history.iter().map(|a| a.ok).collect::<Vec<_>>(), [false, true]);
    assert_eq!(log[0].history[0].error.as_deref(), Some("HTTP 500"));
    // Each attempt is in the unified log too, on the alert's server.
    let logged = store.events(EventQuery { kind: Some(EventKind::Notification), limit: 10, ..Default::default() });
    let logged = logged.await.expect("events");
    assert_eq!(logged.iter().map(|e| e.severity).collect::<Vec<_>>(), [Severity::Info, Severity::Warning]);
    assert!(logged[1].message.contains("failed (attempt 1, will retry): HTTP 500"), "{}", logged[1].message);
    assert!(logged.iter().all(|e| e.server_id.is_some()));
    // Still firing after the channel's repeat interval: due for a reminder.
    assert!(store.repeats_due(T0 + 599_000).await.expect("repeats").is_empty());
    assert_eq!(store.repeats_due(T0 + 600_000).await.expect("repeats"), [(alert, stored.id)]);
    store.acknowledge_alert(alert, "ops", "", T0 + 600_001).await.expect("ack");
    assert!(store.repeats_due(T0 + 700_000).await.expect("repeats").is_empty(), "acknowledged: no reminders");
    // Test sends have no alert.
    let test = NewNotification { alert_id: None, channel_id: stored.id, event: "test".into() };
    store.enqueue_notifications(vec![test], T0).await.expect("enqueue");
    assert!(store.due_notifications(T0, 10).await.expect("due").iter().any(|d| d.event == "test" && d.alert.is_none()));
    store.delete_channel(stored.id, T0).await.expect("delete");
    assert!(store.due_notifications(T0 + 1_000_000, 10).await.expect("due").is_empty(), "its queue goes with it");
}

pub async fn silences_are_kept_until_over(store: &dyn Store) {
    let once = decode_silence(&json!({"duration_minutes": 30, "comment": "upgrade"}), T0).expect("silence");
    let weekly = decode_silence(&json!({"weekly": {"days": ["sun"], "start": "02:00", "duration_minutes": 60}}), T0)
        .expect("weekly");
    let first = store.create_silence(once, "ops@example.test", T0).await.expect("create");
    store.create_silence(weekly, "ops@example.test", T0).await.expect("create");
    assert_eq!(store.list_silences(Some(T0 + 60_000)).await.expect("list").len(), 2);
    assert_eq!(store.list_silences(Some(T0 + 31 * 60_000)).await.expect("list").len(), 1, "the one-off is over");
    assert_eq!(first.created_by, "ops@example.test");
    store.delete_silence(first.id, T0).await.expect("delete");
    assert!(matches!(store.delete_silence(first.id, T0).await, Err(StoreError::NotFound)));
}

pub async fn the_first_user_is_created_once(store: &dyn Store) {
    assert_eq!(store.user_count().await.expect("count"), 0);
    let first = NewUser { email: "root@example.test".into(), role: Role::Admin, password_hash: "h1".into() };
    let created = store.create_first_user(first, T0).await.expect("first").expect("created");
    assert_eq!(created.role, Role::Admin);
    let second = NewUser { email: "other@example.test".into(), role: Role::Admin, password_hash: "h2".into() };
    assert!(store.create_first_user(second, T0).await.expect("second").is_none(), "only while no user exists");
    assert_eq!(store.user_count().await.expect("count"), 1);
    let events = store.events(EventQuery { kind: Some(EventKind::UserChanged), limit: 10, ..Default::default() });
    assert_eq!(events.await.expect("events").len(), 1);
}

pub async fn sessions_expire_and_end_with_a_password_change(store: &dyn Store) {
    let user = store
        .create_user(NewUser { email: "s@example.test".into(), role: Role::Viewer, password_hash: "old".into() }, T0)
        .await
        .expect("user");
    let [a, b, c] = [0, 1, 2].map(|_| Secret::generate().expect("randomness").digest());
    for id in [&a, &b] {
        let session = NewSession { id: id.clone(), user_id: user.id, expires_at: T0 + 1_000 };
        store.create_session(session, T0).await.expect("session");
    }
    assert_eq!(store.session_user(&a, T0 + 999).await.expect("lookup"), Some(user.clone()));
    assert_eq!(store.session_user(&a, T0 + 1_000).await.expect("lookup"), None, "expired");
    assert_eq!(store.session_user(&c, T0).await.expect("lookup"), None, "unknown");
    let orphan = NewSession { id: c.clone(), user_id: 9_999, expires_at: T0 + 1_000 };
    assert!(matches!(store.create_session(orphan, T0).await, Err(StoreError::NotFound)));

    store.set_password(user.id, "new", Some(&a), T0 + 10).await.expect("password");
    assert_eq!(store.user(user.id).await.expect("user").password_hash, "new");
    assert!(store.session_user(&a, T0 + 20).await.expect("lookup").is_some(), "the changing session stays");
    assert!(store.session_user(&b, T0 + 20).await.expect("lookup").is_none(), "every other one ends");
    store.delete_session(&a, T0 + 30).await.expect("logout");
    store.delete_session(&a, T0 + 30).await.expect("logging out twice is harmless");
    assert!(store.session_user(&a, T0 + 40).await.expect("lookup").is_none());
    assert!(matches!(store.user(9_999).await, Err(StoreError::NotFound)));
    assert!(matches!(store.set_password(9_999, "x", None, T0).await, Err(StoreError::NotFound)));

    store.record_failed_login("mallory@example.test", T0 + 50).await.expect("failed login");
    let log = store.events(EventQuery { kind: Some(EventKind::UserSession), limit: 10, ..Default::default() });
    let messages: Vec<String> = log.await.expect("events").into_iter().map(|e| e.message).collect();
    assert_eq!(
        messages,
        [
            "refused sign-in as mallory@example.test",
            "s@example.test signed out",
            "s@example.test signed in",
            "s@example.test signed in"
        ]
    );
}

pub async fn charts_reduce_samples_to_buckets(store: &dyn Store) {
    let id = agent(store, "chart", "10.0.0.40").await;
    // One sample every 10 s for 60 s; cpu = 10, 11, …; buckets of 30 s aligned to 30 s.
    let start = T0 - T0 % 30_000;
    let reports: Vec<Report> = (0..6u64)
        .map(|i| {
            let at = start + i as i64 * 10_000;
            let doc = json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": i,
                "metrics": {"cpu_usage": 10.0 + i as f64, "memory_usage": 20.0, "disk_usage": 30.0, "network_rx": i * 1_000}});
            decode_report(&doc, "", at).expect("valid report")
        })
        .collect();
    store.store_reports(id, &reports, start + 60_000).await.expect("store");
    let buckets = store.chart(id, start, start + 60_000, 30_000).await.expect("chart");
    assert_eq!(buckets.iter().map(|b| (b.start, b.samples)).collect::<Vec<_>>(), [(start, 3), (start + 30_000, 3)]);
    let cpu = buckets[1].bands[crate::ChartMetric::Cpu as usize];
    assert_eq!((cpu.min, cpu.max, cpu.avg), (Some(13.0), Some(15.0), Some(14.0)));
    let rx = buckets[0].bands[crate::ChartMetric::NetworkRxRate as usize];
    assert_eq!((rx.min, rx.max), (Some(100.0), Some(100.0)), "the first sample has no rate; the others 1000 B / 10 s");
    let window = store.chart(id, start + 10_000, start + 30_000, 10_000).await.expect("chart");
    assert_eq!(window.len(), 2, "from is inclusive, to exclusive");
    assert!(store.chart(id + 1_000, start, start + 60_000, 30_000).await.expect("chart").is_empty());
}

pub async fn fleet_counts_open_alerts_and_failed_units(store: &dyn Store) {
    let quiet = agent(store, "quiet", "10.0.0.41").await;
    let busy = agent(store, "busy", "10.0.0.42").await;
    let units = json!([{"name": "a", "status": "failed"}, {"name": "b", "status": "failed"}, {"name": "c", "status": "active"}]);
    store.store_reports(busy, &[report(Some(1), T0, 0, units)], T0).await.expect("store");
    let alert = AgentAlert {
        kind: "oom_kill".into(),
        severity: Severity::Critical,
        message: "killed".into(),
        details: json!({}),
        host_time: None,
    };
    store.store_agent_alerts(busy, &[alert], &[crate::Recipients::default()], T0).await.expect("alert");
    let counts = store.fleet_counts().await.expect("counts");
    assert_eq!(counts.get(&busy).map(|c| (c.open_alerts, c.failed_services)), Some((1, 2)));
    assert!(!counts.contains_key(&quiet));
}

pub async fn roles_change_tokens_revoke_and_an_admin_remains(store: &dyn Store) {
    let new = |email: &str, role| NewUser { email: email.into(), role, password_hash: "h".into() };
    let admin = store.create_user(new("a@example.test", Role::Admin), T0).await.expect("admin");
    let other = store.create_user(new("b@example.test", Role::Viewer), T0).await.expect("viewer");
    assert!(
        matches!(store.set_user_role(admin.id, Role::Operator, "a", T0).await, Err(StoreError::Conflict(_))),
        "the only administrator stays one"
    );
    assert!(matches!(store.delete_user(admin.id, "a", T0).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.set_user_role(other.id, Role::Admin, "a", T0).await.expect("promote").role, Role::Admin);
    assert_eq!(store.set_user_role(admin.id, Role::Viewer, "b", T0).await.expect("now allowed").role, Role::Viewer);
    assert!(matches!(store.set_user_role(9_999, Role::Viewer, "a", T0).await, Err(StoreError::NotFound)));

    let secret = Secret::generate().expect("randomness");
    for (id, user) in [("1111111111111111", admin.id), ("2222222222222222", other.id)] {
        let token = NewApiToken { id: id.into(), user_id: user, name: format!("t{id}"), secret: secret.digest() };
        store.create_api_token(token, T0).await.expect("token");
    }
    let listed = store.list_api_tokens().await.expect("tokens");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|(t, email)| t.id == "2222222222222222" && email == "b@example.test"));
    store.revoke_api_token("2222222222222222", "a", T0).await.expect("revoke");
    assert!(store.api_token("2222222222222222").await.expect("lookup").is_none(), "revoked tokens stop working");
    assert!(matches!(store.revoke_api_token("2222222222222222", "a", T0).await, Err(StoreError::NotFound)));
    assert_eq!(store.list_api_tokens().await.expect("tokens").len(), 1);

    let session = NewSession { id: secret.digest(), user_id: admin.id, expires_at: T0 + 1_000 };
    store.create_session(session, T0).await.expect("session");
    store.delete_user(admin.id, "b", T0).await.expect("remove");
    assert!(store.session_user(&secret.digest(), T0).await.expect("lookup").is_none(), "sessions go with the user");
    assert!(store.api_token("1111111111111111").await.expect("lookup").is_none(), "tokens go with the user");
    assert!(matches!(store.delete_user(admin.id, "b", T0).await, Err(StoreError::NotFound)));
    let log = store.events(EventQuery { kind: Some(EventKind::UserChanged), limit: 10, ..Default::default() });
    assert_eq!(log.await.expect("events").len(), 4, "promote, demote, revoke, remove");
}

/// One generated sample for [`charts_agree_with_the_samples`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSample {
    /// Agent time, ms after the start of a UTC day.
    pub offset_ms: i64,
    pub cpu: f64,
    pub load: Option<f64>,
    pub network_rx: u64,
}

/// One delivery of [`charts_agree_with_the_samples`]: the samples it carries (indexes),
/// then, if set, a compaction of everything before that offset from the first day (ms;
/// whole hours move), as the hub's background pass runs between two batches.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartBatch {
    pub samples: Vec<usize>,
    pub then_compact_before: Option<i64>,
}

/// Generated histories for [`charts_agree_with_the_samples`]: up to 120 samples over
/// two days or three hours on a 15-second grid (so samples often sit exactly on bucket edges), and the
/// batches they arrive in, shuffled, with compactions between some of them (so late
/// samples land in compacted hours, reopen their chunks, and append to buckets
/// compaction closed).
pub fn chart_histories() -> impl proptest::strategy::Strategy<Value = (Vec<ChartSample>, Vec<ChartBatch>)> {
    use proptest::prelude::*;
    // Two days, or three hours (many samples per bucket), on a 15-second grid, so
    // samples often sit exactly on bucket edges.
    prop_oneof![Just(48i64), Just(3i64)]
        .prop_flat_map(|hours| {
            let offset = (0..hours * 240).prop_map(|k| k * 15_000);
            let sample = (offset, 0.0f64..100.0, prop::option::of(0.0f64..16.0), 0u64..1_000_000_000);
            // A compaction after a batch, one time in three, up to some hour of the span.
            let compaction = prop::option::weighted(0.35, (0..=hours).prop_map(|hour| hour * 3_600_000));
            prop::collection::vec(sample, 1..120).prop_flat_map(move |raw| {
                let n = raw.len();
                let compactions = prop::collection::vec(compaction.clone(), n);
                (Just(raw), Just((0..n).collect::<Vec<usize>>()).prop_shuffle(), 1usize..8, compactions)
            })
        })
        .prop_map(|(raw, order, chunk, compactions)| {
            // Distinct times: a sample's time is its identity in agent time.
            let mut seen = BTreeSet::new();
            let samples: Vec<ChartSample> = raw
                .into_iter()
                .map(|(offset_ms, cpu, load, network_rx)| {
                    let mut offset_ms = offset_ms;
                    while !seen.insert(offset_ms) {
                        offset_ms += 1;
                    }
                    ChartSample { offset_ms, cpu, load, network_rx }
                })
                .collect();
            let batches = order
                .chunks(chunk)
                .zip(compactions)
                .map(|(samples, then_compact_before)| ChartBatch { samples: samples.to_vec(), then_compact_before })
                .collect();
            (samples, batches)
        })
}

/// Charts over long ranges read summaries (rollups, where a backend keeps them); whatever
/// the samples, the order they arrived in and the compactions between them, every
/// bucket must say what the raw samples say: same count, minimum and maximum, mean to
/// 1e-9. CPU is also recomputed here from the samples themselves, every sample's rate
/// from the sample before it in agent time, and the server's newest figures are its
/// newest sample's. Last, raw retention cuts through the history: exactly the older
/// samples go, and the summaries still count them.
pub async fn charts_agree_with_the_samples(
    store: &dyn Store,
    name: &str,
    samples: &[ChartSample],
    batches: &[ChartBatch],
) {
    let id = agent(store, name, "10.0.0.43").await;
    let day = 86_400_000;
    let start = T0 - T0 % day;
    let reports: Vec<Report> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let at = start + s.offset_ms;
            let mut metrics = json!({"cpu_usage": s.cpu, "memory_usage": 50.0 + (i % 13) as f64, "disk_usage": 30.0,
                "network_rx": s.network_rx});
            if let Some(load) = s.load {
                metrics["load_average"] = json!(load);
            }
            let doc = json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": i, "metrics": metrics});
            decode_report(&doc, "", at).expect("valid report")
        })
        .collect();
    for batch in batches {
        let chunk: Vec<Report> = batch.samples.iter().map(|i| reports[*i].clone()).collect();
        store.store_reports(id, &chunk, T0).await.expect("store");
        if let Some(before) = batch.then_compact_before {
            store.compact_history(start + before).await.expect("compact");
        }
    }
    assert_eq!(store.refresh_rollups(Some(id + 1_000)).await.expect("refresh"), 0, "another server's marks only");
    // Samples landing before stored ones leave their buckets to refresh (the newer ones
    // were summed up as they came).
    store.refresh_rollups(Some(id)).await.expect("refresh");
    assert_eq!(store.refresh_rollups(None).await.expect("refresh"), 0, "and only once");
    let end = start + samples.iter().map(|s| s.offset_ms).max().unwrap_or(0) + day;
    let stored: BTreeSet<usize> = batches.iter().flat_map(|b| &b.samples).copied().collect();
    assert_charts_match(store, id, samples, &stored, start, end).await;

    // Compacted into chunks, the history keeps every figure once, and charts still agree.
    let history = store.metrics_history(id, i64::MIN, i64::MAX, u32::MAX).await.expect("history");
    assert_eq!(history.len(), stored.len(), "each sample stored once, compacted or not");
    // Each rate against the sample before it in agent time, whatever came first.
    let mut previous: Option<&Sample> = None;
    for sample in &history {
        let counters = |s: &Sample| (s.at, [s.network_rx, None, None, None]);
        let expected = serverpulse_domain::rate::counter_rates(previous.map(counters), counters(sample), sample.uptime);
        assert_eq!(sample.network_rx_rate, expected[0], "the rate of the sample at {}", sample.at - start);
        previous = Some(sample);
    }
    // The server's newest figures are its newest sample's, rate included.
    let server = store.get_server(id).await.expect("server");
    let newest = history.last().expect("a sample");
    assert_eq!(server.last_metrics_at, Some(newest.at), "the newest figures' time");
    let figures = server.last_metrics.expect("newest figures");
    assert_eq!((figures.network_rx, figures.network_rx_rate), (newest.network_rx, newest.network_rx_rate));
    let compacted = store.compact_history(end + day).await.expect("compact");
    assert!(compacted.samples as usize <= history.len(), "nothing compacted twice");
    let after = store.metrics_history(id, i64::MIN, i64::MAX, u32::MAX).await.expect("history");
    let without_raw = |s: &Sample| Sample { raw: Value::Null, ..s.clone() };
    assert_eq!(after, history.iter().map(without_raw).collect::<Vec<_>>(), "the same samples, without their documents");
    assert_charts_match(store, id, samples, &stored, start, end).await;

    // Raw retention cutting through the history (at the first sample's time): exactly
    // the older samples go, and the summaries still count every sample.
    let cutoff = start + samples[0].offset_ms;
    let now = end + 10 * day;
    let policy = RetentionPolicy { raw_ms: now - cutoff, five_minutes_ms: 0, hours_ms: 0, days_ms: 0, max_bytes: 0 };
    let outcome = store.apply_retention(&policy, now).await.expect("retention");
    let kept: Vec<Sample> = after.iter().filter(|s| s.at >= cutoff).cloned().collect();
    assert_eq!(outcome.raw_deleted as usize, after.len() - kept.len(), "exactly the older samples");
    let left = store.metrics_history(id, i64::MIN, i64::MAX, u32::MAX).await.expect("history");
    assert_eq!(left, kept, "the samples from the cutoff on, untouched");
    assert_charts_hold(store, id, samples, &stored, (start, end), false).await;
}

/// Every chart step over `[start, end)` agrees, from the summaries and from the raw
/// samples, with a recomputation from the `stored` samples.
async fn assert_charts_match(
    store: &dyn Store,
    id: ServerId,
    samples: &[ChartSample],
    stored: &BTreeSet<usize>,
    start: i64,
    end: i64,
) {
    assert_charts_hold(store, id, samples, stored, (start, end), true).await;
}

/// Every chart step over `span` agrees with a recomputation from the `stored` samples,
/// and with the raw samples themselves where `raw_kept` (retention removed none).
async fn assert_charts_hold(
    store: &dyn Store,
    id: ServerId,
    samples: &[ChartSample],
    stored: &BTreeSet<usize>,
    (start, end): (i64, i64),
    raw_kept: bool,
) {
    let day = 86_400_000;
    for step in [300_000, 3_600_000, 21_600_000, day] {
        let summed = store.chart(id, start, end, step).await.expect("chart");
        let buckets: BTreeSet<i64> = stored.iter().map(|i| samples[*i].offset_ms / step).collect();
        let charted: BTreeSet<i64> = summed.iter().map(|b| (b.start - start) / step).collect();
        assert_eq!(charted, buckets, "step {step}: a bucket for each one holding samples");
        // One millisecond earlier is not aligned to any bucket: the raw samples answer.
        let raw = if raw_kept { store.chart(id, start - 1, end, step).await.expect("chart") } else { summed.clone() };
        assert_eq!(summed.len(), raw.len(), "step {step}");
        for (s, r) in summed.iter().zip(&raw) {
            assert_eq!((s.start, s.samples), (r.start, r.samples), "step {step}");
            for (metric, (a, b)) in crate::ChartMetric::ALL.iter().zip(s.bands.iter().zip(&r.bands)) {
                assert_eq!((a.min, a.max, a.last), (b.min, b.max, b.last), "step {step} {metric:?} at {}", s.start);
                let close = match (a.avg, b.avg) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    (x, y) => x == y,
                };
                assert!(close, "step {step} {metric:?} at {}: {:?} vs {:?}", s.start, a.avg, b.avg);
            }
        }
        for bucket in &summed {
            let cpus: Vec<f64> = stored
                .iter()
                .map(|i| &samples[*i])
                .filter(|s| s.offset_ms / step == (bucket.start - start) / step)
                .map(|s| s.cpu)
                .collect();
            let band = bucket.bands[crate::ChartMetric::Cpu as usize];
            assert_eq!(band.min, cpus.iter().copied().reduce(f64::min), "step {step}");
            assert_eq!(band.max, cpus.iter().copied().reduce(f64::max), "step {step}");
            let mean = cpus.iter().sum::<f64>() / cpus.len() as f64;
            let newest = stored
                .iter()
                .map(|i| &samples[*i])
                .filter(|s| s.offset_ms / step == (bucket.start - start) / step)
                .max_by_key(|s| s.offset_ms)
                .map(|s| s.cpu);
            assert_eq!(band.last, newest, "step {step}: the newest sample's value");
            assert!(band.avg.is_some_and(|avg| (avg - mean).abs() <= 1e-9 * mean.abs().max(1.0)), "step {step}");
        }
    }
}

/// A server's open bucket closed by compaction (its samples folded into the coarser
/// tiers), its chunk reopened by a late report and the summaries refreshed, and then a
/// report appended to that same bucket: the bucket's samples count once in every tier.
pub async fn a_bucket_compaction_closed_counts_its_samples_once(store: &dyn Store) {
    let minute = 60_000;
    let at = |h: i64, m: i64, s: i64| h * 60 * minute + m * minute + s * 1_000;
    let samples: Vec<ChartSample> = [at(2, 51, 45), at(1, 54, 45), at(2, 54, 0), at(2, 58, 45)]
        .into_iter()
        .enumerate()
        .map(|(i, offset_ms)| ChartSample { offset_ms, cpu: 10.0 * (i + 1) as f64, load: None, network_rx: 1_000 })
        .collect();
    let batches = [
        // The open bucket (2:50) goes into the first day's chunk, up to 3:00.
        ChartBatch { samples: vec![0], then_compact_before: Some(at(3, 0, 0)) },
        // A late report reopens the chunk; compaction's refresh takes every bucket in.
        ChartBatch { samples: vec![1], then_compact_before: Some(0) },
        // Two reports after the newest, in its bucket.
        ChartBatch { samples: vec![2], then_compact_before: None },
        ChartBatch { samples: vec![3], then_compact_before: None },
    ];
    charts_agree_with_the_samples(store, "reclosed", &samples, &batches).await;
}

/// Samples of one agent time are all rated against the sample before that time; a late
/// report landing just before them re-rates every one of them.
pub async fn samples_of_one_time_are_re_rated_together(store: &dyn Store) {
    let id = agent(store, "one-time", "10.0.0.54").await;
    let first = [
        report(Some(1), T0, 0, json!([])),
        report(Some(2), T0 + 60_000, 6_000, json!([])),
        report(Some(3), T0 + 60_000, 12_000, json!([])),
    ];
    store.store_reports(id, &first, T0 + 61_000).await.expect("store");
    let rates = || async {
        let history = store.metrics_history(id, T0, T0 + 60_000, 10).await.expect("history");
        history.iter().map(|s| (s.seq, s.network_rx_rate)).collect::<Vec<_>>()
    };
    assert_eq!(rates().await, [(Some(1), None), (Some(2), Some(100.0)), (Some(3), Some(200.0))]);
    let late = [report(Some(4), T0 + 30_000, 4_500, json!([]))];
    store.store_reports(id, &late, T0 + 62_000).await.expect("late");
    let expected = [(Some(1), None), (Some(4), Some(150.0)), (Some(2), Some(50.0)), (Some(3), Some(250.0))];
    assert_eq!(rates().await, expected, "both samples at one minute against the late one");
    let server = store.get_server(id).await.expect("server");
    assert_eq!(server.last_metrics.and_then(|f| f.network_rx_rate), Some(250.0), "the newest figures too");
}

/// [`charts_agree_with_the_samples`] on three days of samples every 97 s from a fixed
/// pseudo-random sequence (the load missing from every seventh, counters reset once),
/// arriving out of order: the second half first, then its first two days compacted,
/// then the first half in reverse batches (reopening the second day's chunk).
pub async fn long_range_charts_match_the_raw_samples(store: &dyn Store) {
    let mut state: u64 = 42;
    let samples: Vec<ChartSample> = (0..(3 * 86_400 / 97))
        .map(|i: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ChartSample {
                offset_ms: i as i64 * 97_000,
                cpu: (state >> 33) as f64 % 1000.0 / 10.0,
                load: (!i.is_multiple_of(7)).then(|| (i % 50) as f64 / 10.0),
                network_rx: if i < 1_000 { i * 5_000 } else { (i - 1_000) * 7_000 },
            }
        })
        .collect();
    let half = samples.len() / 2;
    let mut batches =
        vec![ChartBatch { samples: (half..samples.len()).collect(), then_compact_before: Some(2 * 86_400_000) }];
    let first: Vec<usize> = (0..half).collect();
    batches
        .extend(first.chunks(97).rev().map(|chunk| ChartBatch { samples: chunk.to_vec(), then_compact_before: None }));
    charts_agree_with_the_samples(store, "rollup", &samples, &batches).await;
}

fn heartbeat(server: ServerId, at: i64, said: AgentContact) -> Contact {
    Contact { server, at, heartbeat: Some(said) }
}

/// Heartbeats and command polls of many agents in one transaction: each server marked
/// active with its latest contact and heartbeat, a server's return logged once, a gone
/// server failing alone, and a contact older than the one stored not moving it back.
pub async fn contacts_are_recorded_together_and_fail_alone(store: &dyn Store) {
    let a = agent(store, "contact-a", "10.0.0.91").await;
    let b = agent(store, "contact-b", "10.0.0.92").await;
    let gone = agent(store, "contact-gone", "10.0.0.93").await;
    let reporting = agent(store, "contact-reporting", "10.0.0.94").await;
    store.delete_server(gone, T0).await.expect("remove");
    // Two reports of one bucket: the second is appended (a store that writes rows back
    // leaves this server's row pending).
    for (seq, at) in [(1, T0 + 4_000), (2, T0 + 5_000)] {
        store.store_reports(reporting, &[report(Some(seq), at, 0, json!([]))], at).await.expect("report");
    }
    assert_eq!(store.mark_silent_agents(T0 + 1_000, 100).await.expect("sweep"), [a, b], "a and b fell silent");
    // A command waits for a's agent until T0 + 2,450; b's settings move to version 1.
    let command = NewCommand {
        id: "contact-c1".to_owned(),
        kind: CommandType::CollectNow,
        args: json!({}),
        expires_at: T0 + 2_450,
        issued_by: "tester".into(),
    };
    store.enqueue_command(a, command, T0).await.expect("enqueue");
    let settings = store.set_agent_settings(b, AgentSettings::default(), T0).await.expect("settings");
    let said = |version| AgentContact { status: Some("online".into()), config_version: Some(version) };
    let poll = |server, at| Contact { server, at, heartbeat: None };
    let contacts = [
        heartbeat(a, T0 + 2_000, said(1)),
        poll(b, T0 + 2_100),
        heartbeat(gone, T0 + 2_200, said(1)),
        heartbeat(a, T0 + 2_500, said(2)),
        poll(a, T0 + 2_400),
        heartbeat(reporting, T0 + 3_000, said(7)),
        poll(reporting, T0 + 1_000),
    ];
    let outcomes = store.record_contacts(&contacts).await.expect("contacts");
    assert_eq!(outcomes.len(), contacts.len());
    for (k, outcome) in outcomes.iter().enumerate() {
        assert_eq!(matches!(outcome, Err(StoreError::NotFound)), k == 2, "contact {k}: {outcome:?}");
    }
    let answered = |k: usize| outcomes[k].as_ref().expect("recorded");
    let waiting: Vec<u32> = [0, 3, 4, 1].iter().map(|k| answered(*k).commands_pending).collect();
    assert_eq!(waiting, [1, 0, 1, 0], "a's command waits, as of each contact, until it expires");
    assert_eq!(answered(1).settings, settings, "each contact answered with its server's settings");
    let a_now = store.get_server(a).await.expect("a");
    assert_eq!(a_now.agent_status, AgentStatus::Active);
    assert_eq!((a_now.agent_last_contact, a_now.agent_last_heartbeat), (Some(T0 + 2_500), Some(T0 + 2_500)));
    assert_eq!(a_now.agent_config.value()["heartbeat"]["config_version"], json!(2), "the latest heartbeat");
    let b_now = store.get_server(b).await.expect("b");
    assert_eq!(b_now.agent_status, AgentStatus::Active);
    assert_eq!((b_now.agent_last_contact, b_now.agent_last_heartbeat), (Some(T0 + 2_100), None), "a poll only");
    let r_now = store.get_server(reporting).await.expect("reporting");
    assert_eq!(r_now.agent_last_contact, Some(T0 + 5_000), "an older contact does not move it back");
    assert_eq!(r_now.agent_last_heartbeat, Some(T0 + 3_000));
    assert_eq!(r_now.last_metrics_at, Some(T0 + 5_000), "its newest report stands");
    assert_eq!(r_now.agent_config.value()["heartbeat"]["config_version"], json!(7));
    // Its next bucket writes its row: the heartbeat is in it.
    let later = T0 + 10 * 60_000;
    store.store_reports(reporting, &[report(Some(3), later, 0, json!([]))], later).await.expect("report");
    let r_later = store.get_server(reporting).await.expect("reporting");
    assert_eq!((r_later.agent_last_contact, r_later.agent_last_heartbeat), (Some(later), Some(T0 + 3_000)));
    for (server, returns) in [(a, 1), (b, 1), (reporting, 0)] {
        let query = EventQuery {
            server_id: Some(server),
            kind: Some(EventKind::AgentStatus),
            limit: 10,
            ..EventQuery::default()
        };
        let back = store.events(query).await.expect("events");
        let back = back.iter().filter(|e| e.details["to"] == json!("active")).count();
        assert_eq!(back, returns, "server {server}: its return logged once");
    }
    assert!(store.record_contacts(&[]).await.expect("none").is_empty());
}

/// A writer's batch holding a returning agent's report and its heartbeat: both kept,
/// in one transaction, and its return logged once.
pub async fn a_batch_commits_reports_and_contacts_together(store: &dyn Store) {
    let id = agent(store, "together", "10.0.0.95").await;
    assert_eq!(store.mark_silent_agents(T0 + 1_000, 100).await.expect("sweep"), [id]);
    let job =
        IngestJob { server: id, reports: vec![report(Some(1), T0 + 2_000, 0, json!([]))], received_at: T0 + 2_000 };
    let beat = AgentContact { status: Some("online".into()), config_version: Some(1) };
    let (stored, heard) = store.commit_batch(&[job], &[heartbeat(id, T0 + 2_100, beat)], None).await.expect("batch");
    assert_eq!(stored[0].as_ref().expect("stored").stored_seqs, [1]);
    assert_eq!(heard[0].as_ref().expect("heard").commands_pending, 0);
    let back = store.get_server(id).await.expect("get");
    assert_eq!(back.agent_status, AgentStatus::Active);
    assert_eq!((back.agent_last_contact, back.agent_last_heartbeat), (Some(T0 + 2_100), Some(T0 + 2_100)));
    assert_eq!(back.last_metrics_at, Some(T0 + 2_000));
    let query =
        EventQuery { server_id: Some(id), kind: Some(EventKind::AgentStatus), limit: 10, ..EventQuery::default() };
    let returns = store.events(query).await.expect("events");
    let returns = returns.iter().filter(|e| e.details["to"] == json!("active")).count();
    assert_eq!(returns, 1, "its return logged once, by its report");
    let (none, nobody) = store.commit_batch(&[], &[], None).await.expect("empty batch");
    assert!(none.is_empty() && nobody.is_empty());
}

pub async fn a_batch_commits_jobs_together_and_fails_them_alone(store: &dyn Store) {
    let a = agent(store, "batch-a", "10.0.0.44").await;
    let b = agent(store, "batch-b", "10.0.0.45").await;
    let gone = agent(store, "batch-gone", "10.0.0.46").await;
    store.delete_server(gone, T0).await.expect("remove");
    let job = |server, seqs: &[u64]| IngestJob {
        server,
        reports: seqs.iter().map(|s| report(Some(*s), T0 + *s as i64 * 1_000, 0, json!([]))).collect(),
        received_at: T0 + 10_000,
    };
    let jobs = [job(a, &[1, 2]), job(gone, &[1]), job(b, &[1]), job(a, &[2, 3])];
    let outcomes = store.store_report_batch(&jobs, None).await.expect("batch");
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0].as_ref().expect("a").stored_seqs, [1, 2]);
    assert!(matches!(outcomes[1], Err(StoreError::NotFound)), "a removed server fails alone");
    assert_eq!(outcomes[2].as_ref().expect("b").stored_seqs, [1]);
    let again = outcomes[3].as_ref().expect("a again");
    assert_eq!(
        (again.stored_seqs.as_slice(), again.duplicate_seqs.as_slice()),
        (&[3][..], &[2][..]),
        "seen within the batch"
    );
    let history = store.metrics_history(a, 0, i64::MAX, 100).await.expect("history");
    assert_eq!(history.iter().map(|s| s.seq).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
    assert_eq!(store.metrics_history(b, 0, i64::MAX, 100).await.expect("history").len(), 1);
    assert!(store.store_report_batch(&[], None).await.expect("empty batch").is_empty());
}

/// Reports of one server spread over several jobs of a batch, out of order and around
/// stored ones, end up rated exactly as if they had come one by one.
pub async fn a_batch_rates_reports_against_their_neighbours_in_agent_time(store: &dyn Store) {
    let id = agent(store, "batch-rates", "10.0.0.47").await;
    let stored = [report(Some(1), T0, 0, json!([])), report(Some(4), T0 + 90_000, 9_000, json!([]))];
    store.store_reports(id, &stored, T0).await.expect("stored before");
    let job = |reports: Vec<Report>| IngestJob { server: id, reports, received_at: T0 + 200_000 };
    let jobs = [
        job(vec![report(Some(3), T0 + 60_000, 6_000, json!([]))]),
        job(vec![report(Some(2), T0 + 30_000, 1_500, json!([])), report(Some(4), T0 + 90_000, 9_000, json!([]))]),
        job(vec![report(Some(5), T0 + 120_000, 12_000, json!([]))]),
    ];
    let outcomes = store.store_report_batch(&jobs, None).await.expect("batch");
    let seqs: Vec<(Vec<u64>, Vec<u64>)> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|o| (o.stored_seqs.clone(), o.duplicate_seqs.clone())).expect("outcome"))
        .collect();
    assert_eq!(seqs, [(vec![3], vec![]), (vec![2], vec![4]), (vec![5], vec![])]);
    let rates: Vec<(Option<u64>, Option<f64>)> = store
        .metrics_history(id, T0, T0 + 120_000, 10)
        .await
        .expect("history")
        .iter()
        .map(|s| (s.seq, s.network_rx_rate))
        .collect();
    assert_eq!(
        rates,
        [
            (Some(1), None),
            (Some(2), Some(50.0)),
            (Some(3), Some(150.0)),
            (Some(4), Some(100.0)),
            (Some(5), Some(100.0))
        ],
        "each sample against the one before it in agent time, stored or in the batch"
    );
    let server = outcomes[2].as_ref().expect("outcome").server.clone().expect("server row");
    assert_eq!(server.last_metrics_at, Some(T0 + 120_000));
    assert_eq!(server.last_metrics.expect("newest figures").network_rx_rate, Some(100.0));
}

/// Opens an alert of the built-in CPU rule when a report is over 50 %, else records the
/// episode as quiet; remembers what it was shown.
struct CpuOver50 {
    rule: i64,
    /// Per call: the server, its reports, the previous uptime, its episodes.
    seen: std::sync::Mutex<Vec<Judged>>,
}

type Judged = (ServerId, usize, Option<u64>, usize);

impl crate::Judge for CpuOver50 {
    fn judge(
        &self,
        server: &crate::Server,
        reports: &[&Report],
        previous_uptime: Option<u64>,
        states: &[crate::RuleState],
    ) -> Vec<AlertingChange> {
        self.seen.lock().expect("seen").push((server.id, reports.len(), previous_uptime, states.len()));
        let cpu = reports.iter().filter_map(|r| r.metrics.cpu_usage.map(|p| p.get())).fold(0.0, f64::max);
        let firing = states.iter().any(|s| s.alert_id.is_some());
        let (phase, action) = if cpu > 50.0 && !firing {
            let open = AlertAction::Open {
                kind: "cpu".into(),
                severity: Severity::Warning,
                message: format!("cpu at {cpu}"),
                value: cpu,
                threshold: Some(50.0),
                since: T0,
                details: json!({}),
            };
            (Phase::Firing { since: T0, level: Level::Warning, recovered_since: None }, Some(open))
        } else {
            (Phase::Ok, None)
        };
        if firing {
            return Vec::new();
        }
        let state = EpisodeState { phase, value: Some(cpu), updated_at: T0 };
        vec![AlertingChange {
            rule_id: self.rule,
            subject: String::new(),
            state,
            action,
            notify: vec![],
            silenced: false,
        }]
    }
}

/// Alert rules are judged in the batch that stores the reports: once per server on all
/// its new reports, against its episodes as stored, the changes written with them.
/// Each job's outcome carries its server's row as the commit left it — the same row as
/// reading it back — whether the batch brought newer figures or only older ones.
pub async fn a_batch_answers_with_each_server_as_stored(store: &dyn Store) {
    let id = agent(store, "answered", "10.0.0.41").await;
    let newer =
        store.store_reports(id, &[report(Some(1), T0 + 5_000, 0, json!([]))], T0 + 6_000).await.expect("report");
    let stored = store.get_server(id).await.expect("server");
    assert_eq!(newer.server.as_ref(), Some(&stored));
    assert_eq!(stored.agent_status, AgentStatus::Active);
    assert_eq!(stored.last_metrics_at, Some(T0 + 5_000));
    assert_eq!(stored.last_metrics.as_ref().and_then(|m| m.cpu_usage), Some(10.0));
    // Older than the stored figures: they stay, and the contact moves on.
    let older =
        store.store_reports(id, &[report(Some(2), T0 + 1_000, 7, json!([]))], T0 + 9_000).await.expect("report");
    assert_eq!(older.previous_uptime, Some(100_000), "the uptime in the newest figures stored");
    let stored = store.get_server(id).await.expect("server");
    assert_eq!(older.server.as_ref(), Some(&stored));
    assert_eq!(stored.last_metrics_at, Some(T0 + 5_000));
    assert_eq!(stored.agent_last_contact, Some(T0 + 9_000));
    // An arrival stamped before the stored contact does not move it back.
    let late = store.store_reports(id, &[report(Some(3), T0 + 8_000, 9, json!([]))], T0 + 8_500).await.expect("report");
    let stored = store.get_server(id).await.expect("server");
    assert_eq!(late.server.as_ref(), Some(&stored));
    assert_eq!(stored.agent_last_contact, Some(T0 + 9_000));
    assert_eq!(stored.last_metrics_at, Some(T0 + 8_000));
}

pub async fn a_batch_judges_each_servers_rules_against_its_stored_episodes(store: &dyn Store) {
    let calm = agent(store, "judged-calm", "10.0.0.48").await;
    let busy = agent(store, "judged-busy", "10.0.0.50").await;
    let rule = store.list_rules().await.expect("rules").into_iter().find(|r| r.rule.name == "CPU").expect("CPU");
    let judge = CpuOver50 { rule: rule.id, seen: std::sync::Mutex::default() };
    let at = |seq: u64, cpu: f64| sample_at(seq, T0 + seq as i64 * 1_000, cpu);
    let job = |server, reports| IngestJob { server, reports, received_at: T0 + 10_000 };
    let jobs = [job(calm, vec![at(1, 10.0)]), job(busy, vec![at(1, 20.0)]), job(busy, vec![at(2, 90.0), at(1, 20.0)])];
    let outcomes = store.store_report_batch(&jobs, Some(&judge)).await.expect("batch");
    let seen = judge.seen.lock().expect("seen").clone();
    assert_eq!(seen, [(calm, 1, None, 0), (busy, 2, None, 0)], "once per server, on all its new reports");
    let outcome = |i: usize| outcomes[i].as_ref().expect("outcome").clone();
    assert!(outcome(0).alerts_touched.is_empty());
    let opened = outcome(2).alerts_touched.clone();
    assert_eq!(opened.len(), 1);
    assert_eq!(outcome(1).alerts_touched, opened, "every job of the server hears of it");
    assert_eq!(store.alert(opened[0]).await.expect("alert").status, AlertStatus::Firing);
    assert!(store.rule_states(calm).await.expect("states").is_empty(), "a quiet episode is not kept");
    assert_eq!(store.rule_states(busy).await.expect("states")[0].alert_id, Some(opened[0]));

    // The next batch sees the episodes as stored, and a duplicate report judges nothing.
    let again = [job(busy, vec![at(3, 95.0)]), job(calm, vec![at(1, 10.0)])];
    let outcomes = store.store_report_batch(&again, Some(&judge)).await.expect("batch");
    assert_eq!(judge.seen.lock().expect("seen")[2..], [(busy, 1, None, 1)]);
    assert!(outcomes.iter().all(|o| o.as_ref().expect("outcome").alerts_touched.is_empty()));
}

/// The agent-changes counter moves on every change of an agent's identity — new
/// credentials, disabled or enabled, its server removed — and on nothing else.
pub async fn agent_changes_move_with_every_change_of_an_identity(store: &dyn Store) {
    let id = agent(store, "changing", "10.0.0.51").await;
    let mut last = store.agent_changes().await.expect("changes");
    let mut moved = |now: u64, what: &str| {
        assert!(now > last, "{what} moves the counter");
        last = now;
    };
    store.set_agent_credentials(id, credentials("changing-2").1, T0).await.expect("credentials");
    moved(store.agent_changes().await.expect("changes"), "new credentials");
    let disable = ServerPatch { agent_enabled: Some(false), ..ServerPatch::default() };
    store.update_server(id, disable, T0).await.expect("disable");
    moved(store.agent_changes().await.expect("changes"), "disabling");

    let unchanged = store.agent_changes().await.expect("changes");
    store.store_reports(id, &[report(Some(1), T0, 0, json!([]))], T0).await.expect("report");
    store.record_contacts(&[heartbeat(id, T0, AgentContact::default())]).await.expect("heartbeat");
    let rename = ServerPatch { name: Some("renamed".into()), ..ServerPatch::default() };
    store.update_server(id, rename, T0).await.expect("rename");
    assert_eq!(store.agent_changes().await.expect("changes"), unchanged, "reports, beats, names do not");

    store.delete_server(id, T0).await.expect("remove");
    moved(store.agent_changes().await.expect("changes"), "removal");
}

const DAY: i64 = 86_400_000;

fn sample_at(seq: u64, at: i64, cpu: f64) -> Report {
    let doc = json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": seq,
        "metrics": {"cpu_usage": cpu, "memory_usage": 20.0, "disk_usage": 30.0}});
    decode_report(&doc, "", at).expect("valid report")
}

fn bucket(at: i64, width: i64) -> i64 {
    at - at.rem_euclid(width)
}

pub async fn retention_removes_exactly_what_is_past_its_age(store: &dyn Store) {
    let id = agent(store, "retained", "10.0.0.47").await;
    let now = T0 - T0 % DAY + 12 * 3_600_000; // noon
    let ages = [40 * DAY, 31 * DAY, 30 * DAY, 30 * DAY - 1, DAY];
    let reports: Vec<Report> = ages.iter().enumerate().map(|(i, age)| sample_at(i as u64, now - age, 10.0)).collect();
    store.store_reports(id, &reports, now).await.expect("store");
    // All but the newest compacted: retention cuts through chunks as exactly as rows.
    assert_eq!(store.compact_history(now - 2 * DAY).await.expect("compact").samples, 4);
    let policy =
        RetentionPolicy { raw_ms: 30 * DAY, five_minutes_ms: 35 * DAY, hours_ms: 60 * DAY, days_ms: 0, max_bytes: 0 };
    let outcome = store.apply_retention(&policy, now).await.expect("retention");
    assert_eq!(outcome.raw_deleted, 2, "older than 30 days: the 40- and 31-day-old samples");
    let kept = store.metrics_history(id, 0, i64::MAX, 10).await.expect("history");
    assert_eq!(
        kept.iter().map(|s| now - s.at).collect::<Vec<_>>(),
        [30 * DAY, 30 * DAY - 1, DAY],
        "exactly 30 days is kept"
    );
    let five = |from: i64| store.chart(id, bucket(from, 300_000), now, 300_000);
    assert!(
        five(now - 41 * DAY).await.expect("chart").iter().all(|b| b.start >= now - 35 * DAY),
        "5-min buckets past 35 days gone"
    );
    assert_eq!(
        five(now - 32 * DAY).await.expect("chart").len(),
        3,
        "31 days, 30 days (two samples), 1 day: the 31-day-old bucket is still summed up"
    );
    let hours = store.chart(id, bucket(now - 41 * DAY, 3_600_000), now, 3_600_000).await.expect("chart");
    assert_eq!(hours.len(), 4, "hourly buckets are kept 60 days: the 40-day-old one too");
    assert_eq!(outcome.rollups_deleted, 1, "one 5-minute bucket (40 days old) past 35 days");
    assert_eq!(store.chart_resolution(now - 10 * DAY).await.expect("resolution"), 0, "raw samples reach back 30 days");
    assert_eq!(store.chart_resolution(now - 31 * DAY).await.expect("resolution"), 300_000);
    assert_eq!(store.chart_resolution(now - 50 * DAY).await.expect("resolution"), 3_600_000);

    // A late sample from 31 days ago: kept as raw until the next pass, but the summary of
    // its bucket is not recomputed from a raw history that retention thinned out.
    store.store_reports(id, &[sample_at(99, now - 31 * DAY + 1_000, 90.0)], now).await.expect("late");
    store.refresh_rollups(None).await.expect("refresh");
    let late = five(now - 32 * DAY).await.expect("chart");
    let bucket_31 = late.iter().find(|b| b.start == bucket(now - 31 * DAY, 300_000)).expect("bucket");
    assert_eq!((bucket_31.samples, bucket_31.bands[0].max), (1, Some(10.0)), "unchanged by the late sample");
    let again = store.apply_retention(&policy, now + 1).await.expect("retention");
    assert_eq!(again.raw_deleted, 2, "the late sample goes with the next pass, and the one now 1 ms past 30 days");
    assert_eq!(store.apply_retention(&policy, now + 1).await.expect("retention").raw_deleted, 0, "nothing twice");
    let kept = store.metrics_history(id, 0, i64::MAX, 10).await.expect("history");
    assert_eq!(kept.iter().map(|s| now - s.at).collect::<Vec<_>>(), [30 * DAY - 1, DAY]);
    let cut = five(now - 32 * DAY).await.expect("chart");
    let bucket_30 = cut.iter().find(|b| b.start == bucket(now - 30 * DAY, 300_000)).expect("bucket");
    assert_eq!(bucket_30.samples, 2, "summed up whole as its first sample went: none counted twice");
}

/// The hourly and daily tiers take a 5-minute bucket in once a later one opens; a
/// server that falls silent leaves its newest bucket open, with no summary but its raw
/// samples. Retention of the 5-minute summaries leaves it be, and a sample appended to
/// it later is counted once.
pub async fn a_silent_servers_newest_bucket_outlives_its_five_minute_summary(store: &dyn Store) {
    let id = agent(store, "fell-silent", "10.0.0.49").await;
    let now = T0 - T0 % DAY + 12 * 3_600_000; // noon
    let hour = bucket(now - 40 * DAY, 3_600_000);
    let minute = 60_000;
    // Two samples in one 5-minute bucket, then one in the next (left open).
    let reports: Vec<Report> = [(1, minute, 10.0), (2, 2 * minute, 20.0), (3, 7 * minute, 70.0)]
        .map(|(seq, at, cpu)| sample_at(seq, hour + at, cpu))
        .to_vec();
    store.store_reports(id, &reports, now).await.expect("store");
    let hourly = || async { store.chart(id, hour, hour + 3_600_000, 3_600_000).await.expect("chart") };
    let counted = |buckets: Vec<crate::ChartBucket>| {
        buckets.first().map(|b| (b.samples, b.bands[0].max, b.bands[0].last)).unwrap_or_default()
    };
    assert_eq!(counted(hourly().await), (3, Some(70.0), Some(70.0)), "the open bucket is charted with the closed one");
    let policy = RetentionPolicy { raw_ms: 0, five_minutes_ms: 35 * DAY, hours_ms: 60 * DAY, days_ms: 0, max_bytes: 0 };
    let outcome = store.apply_retention(&policy, now).await.expect("retention");
    assert_eq!(outcome.rollups_deleted, 1, "the closed 5-minute bucket (the open one has no summary yet)");
    let five = store.chart(id, hour, hour + 3_600_000, 300_000).await.expect("chart");
    assert_eq!(
        five.iter().map(|b| (b.start, b.samples)).collect::<Vec<_>>(),
        [(hour + 5 * minute, 1)],
        "no 5-minute summary is left past 35 days: the open bucket is its raw samples"
    );
    assert_eq!(counted(hourly().await), (3, Some(70.0), Some(70.0)), "the hour still holds all three samples");

    // A sample appended to the open bucket afterwards is counted once, while open and
    // once closed by a newer sample.
    store.store_reports(id, &[sample_at(4, hour + 8 * minute, 80.0)], now).await.expect("store");
    assert_eq!(counted(hourly().await), (4, Some(80.0), Some(80.0)));
    store.store_reports(id, &[sample_at(5, now - DAY, 5.0)], now).await.expect("store");
    assert_eq!(counted(hourly().await), (4, Some(80.0), Some(80.0)), "closed into the hour, not counted twice");
}

/// The open bucket is summed up beside its server's row as samples are appended; a
/// report landing among them (late, replayed) is in its summary all the same once it
/// closes, even when the dirty marks were refreshed while it was still open.
pub async fn a_late_report_in_the_open_bucket_counts_when_it_closes(store: &dyn Store) {
    let id = agent(store, "late-in-open", "10.0.0.46").await;
    let now = T0 - T0 % DAY + 12 * 3_600_000; // noon
    let hour = bucket(now - DAY, 3_600_000);
    let minute = 60_000;
    let appended = [sample_at(1, hour + minute, 10.0), sample_at(2, hour + 3 * minute, 30.0)];
    store.store_reports(id, &appended, now).await.expect("store");
    store.store_reports(id, &[sample_at(3, hour + 2 * minute, 90.0)], now).await.expect("late report");
    store.refresh_rollups(None).await.expect("refresh");
    store.store_reports(id, &[sample_at(4, hour + 6 * minute, 60.0)], now).await.expect("closes the bucket");
    store.refresh_rollups(None).await.expect("refresh");
    let chart = |step: i64| async move {
        let buckets = store.chart(id, hour, hour + 3_600_000, step).await.expect("chart");
        buckets.iter().map(|b| (b.start - hour, b.samples, b.bands[0].max, b.bands[0].last)).collect::<Vec<_>>()
    };
    let closed = (0, 3, Some(90.0), Some(30.0));
    assert_eq!(chart(300_000).await, [closed, (5 * minute, 1, Some(60.0), Some(60.0))]);
    assert_eq!(chart(3_600_000).await, [(0, 4, Some(90.0), Some(60.0))], "the late report is in the hour");
}

/// An open 5-minute bucket is only its raw samples: raw retention sums it up and folds
/// it into the coarser tiers before they go, and a later bucket opening does not fold it
/// in twice.
pub async fn an_open_bucket_is_summed_up_before_its_raw_samples_go(store: &dyn Store) {
    let id = agent(store, "raw-expires", "10.0.0.47").await;
    let now = T0 - T0 % DAY + 12 * 3_600_000; // noon
    let hour = bucket(now - 10 * DAY, 3_600_000);
    let minute = 60_000;
    // One closed bucket (two samples), then two samples in the open one.
    let reports: Vec<Report> = [(1, minute, 10.0), (2, 2 * minute, 20.0), (3, 6 * minute, 60.0), (4, 7 * minute, 70.0)]
        .map(|(seq, at, cpu)| sample_at(seq, hour + at, cpu))
        .to_vec();
    store.store_reports(id, &reports, now).await.expect("store");
    let chart = |step: i64| async move {
        let buckets = store.chart(id, hour, hour + 3_600_000, step).await.expect("chart");
        buckets.iter().map(|b| (b.start - hour, b.samples, b.bands[0].max, b.bands[0].last)).collect::<Vec<_>>()
    };
    let five = [(0, 2, Some(20.0), Some(20.0)), (5 * minute, 2, Some(70.0), Some(70.0))];
    assert_eq!(chart(300_000).await, five, "the open bucket summed up from its raw samples");
    assert_eq!(chart(3_600_000).await, [(0, 4, Some(70.0), Some(70.0))]);

    let policy = RetentionPolicy { raw_ms: 5 * DAY, five_minutes_ms: 30 * DAY, hours_ms: 0, days_ms: 0, max_bytes: 0 };
    let outcome = store.apply_retention(&policy, now).await.expect("retention");
    assert_eq!((outcome.raw_deleted, outcome.rollups_deleted), (4, 0));
    assert!(store.metrics_history(id, 0, i64::MAX, 10).await.expect("history").is_empty(), "no raw sample left");
    assert_eq!(chart(300_000).await, five, "both buckets kept as summaries");
    assert_eq!(chart(3_600_000).await, [(0, 4, Some(70.0), Some(70.0))], "the hour holds all four samples");

    // A sample after the newest, in the bucket retention closed (older than the raw
    // horizon): the summaries stand as they were, neither replaced nor folded in again.
    store.store_reports(id, &[sample_at(6, hour + 8 * minute, 80.0)], now).await.expect("store");
    store.refresh_rollups(Some(id)).await.expect("refresh");
    assert_eq!(chart(300_000).await, five, "the closed bucket's summary kept whole");
    assert_eq!(chart(3_600_000).await, [(0, 4, Some(70.0), Some(70.0))], "the hour unchanged");
    // The next sample opens a bucket of its own; the one closed by retention is not
    // folded in again.
    store.store_reports(id, &[sample_at(5, now - DAY, 5.0)], now).await.expect("store");
    assert_eq!(chart(3_600_000).await, [(0, 4, Some(70.0), Some(70.0))], "counted once");
}

pub async fn retention_keeps_under_the_size_cap_oldest_first(store: &dyn Store) {
    let id = agent(store, "capped", "10.0.0.48").await;
    let now = T0 - T0 % DAY;
    // Ten days, a sample every 10 minutes, with a fat raw document each (of noise: a
    // database compressing documents must not make them small).
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let reports: Vec<Report> = (0..1_440u64)
        .map(|i| {
            let at = now - 10 * DAY + i as i64 * 600_000;
            let padding: String = (0..250)
                .map(|_| {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    format!("{:08x}", noise as u32)
                })
                .collect();
            let doc = json!({"timestamp": serverpulse_proto::time::format_timestamp(at), "seq": i,
                "metrics": {"cpu_usage": 5.0, "memory_usage": 20.0, "disk_usage": 30.0}, "padding": padding});
            decode_report(&doc, "", at).expect("valid report")
        })
        .collect();
    for chunk in reports.chunks(200) {
        store.store_reports(id, chunk, now).await.expect("store");
    }
    let keep_all = RetentionPolicy { raw_ms: 0, five_minutes_ms: 0, hours_ms: 0, days_ms: 0, max_bytes: 0 };
    let before = store.apply_retention(&keep_all, now).await.expect("measure");
    assert_eq!((before.raw_deleted, before.rollups_deleted), (0, 0), "no age, no cap: nothing goes");
    let cap = before.bytes_used / 2;
    let after = store.apply_retention(&RetentionPolicy { max_bytes: cap, ..keep_all }, now).await.expect("capped");
    assert!(after.bytes_used <= cap, "{} bytes used, cap {cap}", after.bytes_used);
    assert!(after.raw_deleted > 0 && after.raw_deleted < 1_440);
    let left = store.metrics_history(id, 0, i64::MAX, 2_000).await.expect("history");
    assert_eq!(left.last().map(|s| s.seq), Some(Some(1_439)), "the newest stays");
    assert!(left[0].at > now - 10 * DAY, "the oldest went first");
    assert_eq!(left.len() as u64 + after.raw_deleted, 1_440);
    let days = store.chart(id, now - 10 * DAY, now, DAY).await.expect("chart");
    assert_eq!(days.iter().map(|d| d.samples).sum::<u32>(), 1_440, "summaries outlive the raw samples");
}

/// A server record as a freshly registered one looks, for unit tests elsewhere.
pub fn example_server(id: ServerId, name: &str) -> crate::Server {
    crate::Server {
        id,
        name: name.to_owned(),
        ip: std::net::IpAddr::from([10, 0, 0, 1]),
        created_at: 0,
        hostname: None,
        agent_enabled: true,
        agent_id: None,
        agent_status: AgentStatus::Active,
        agent_version: None,
        agent_last_heartbeat: None,
        agent_last_contact: None,
        agent_config: (&json!({})).into(),
        last_metrics: None,
        last_metrics_at: None,
        tags: Vec::new(),
    }
}

pub async fn compacted_hours_take_late_reports_once(store: &dyn Store) {
    let id = agent(store, "compacted", "10.0.0.49").await;
    let hour = 3_600_000;
    let start = bucket(T0, hour);
    // Three hours of reports every 30 s, the received counter rising 3,000 bytes each.
    let reports: Vec<Report> =
        (0..360u64).map(|i| report(Some(i), start + i as i64 * 30_000, i * 3_000, json!([]))).collect();
    store.store_reports(id, &reports, start + 3 * hour).await.expect("store");
    store.refresh_rollups(None).await.expect("refresh");
    let history = store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history");
    let charts = || async {
        let summed = store.chart(id, start, start + 3 * hour, 300_000).await.expect("chart");
        let raw = store.chart(id, start - 1, start + 3 * hour, 60_000).await.expect("chart");
        (summed, raw)
    };
    let charted = charts().await;

    let outcome = store.compact_history(start + 2 * hour + 1).await.expect("compact");
    assert_eq!((outcome.chunks, outcome.samples), (1, 240), "the two whole hours before the limit, one day");
    assert!(outcome.bytes < 240 * 8, "{} bytes for 240 samples", outcome.bytes);
    let after = store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history");
    assert_eq!(after.len(), 360);
    for (a, b) in after.iter().zip(&history) {
        let compacted = a.at < start + 2 * hour;
        assert_eq!(a.raw.is_null(), compacted, "documents kept only where not compacted");
        assert_eq!(Sample { raw: Value::Null, ..a.clone() }, Sample { raw: Value::Null, ..b.clone() });
    }
    assert_eq!(charts().await, charted, "charts read the chunks");
    assert_eq!(store.compact_history(start + 2 * hour + 1).await.expect("again").samples, 0, "nothing twice");

    // A new report after the compacted span of the day leaves the chunk alone.
    let newer = report(Some(2_000), start + 2 * hour + 15_000, 240 * 3_000, json!([]));
    assert_eq!(store.store_reports(id, &[newer], start + 4 * hour).await.expect("newer").stored, 1);
    let history = store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history");
    assert_eq!((history.len(), history.iter().filter(|s| s.raw.is_null()).count()), (361, 240));

    // A replayed report of a compacted hour is known; a late one lands between two.
    let replay = store.store_reports(id, &[reports[10].clone()], start + 4 * hour).await.expect("replay");
    assert_eq!((replay.stored, replay.duplicate_seqs), (0, vec![10]));
    let late = report(Some(1_000), start + 10 * 30_000 + 15_000, 10 * 3_000 + 600, json!([]));
    assert_eq!(store.store_reports(id, &[late], start + 4 * hour).await.expect("late").stored, 1);
    let history = store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history");
    assert_eq!(history.len(), 362);
    let seqs: BTreeSet<Option<u64>> = history.iter().map(|s| s.seq).collect();
    assert_eq!(seqs.len(), 362, "each seq once");
    let rate = |seq: u64| history.iter().find(|s| s.seq == Some(seq)).and_then(|s| s.network_rx_rate);
    assert_eq!((rate(10), rate(1_000), rate(11)), (Some(100.0), Some(40.0), Some(160.0)), "re-rated around it");
    store.refresh_rollups(Some(id)).await.expect("refresh");
    let summed = store.chart(id, start, start + 3 * hour, 300_000).await.expect("chart");
    assert_eq!(summed.iter().map(|b| b.samples).sum::<u32>(), 362, "its summary recomputed");

    let again = store.compact_history(start + 2 * hour + 1).await.expect("compact");
    assert_eq!((again.chunks, again.samples), (1, 241), "the reopened chunk, with the late report");
    let history = store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history");
    assert_eq!((history.len(), history.iter().filter(|s| s.raw.is_null()).count()), (362, 241));
    assert_eq!(store.metrics_history(id, start, start + 3 * hour, 50).await.expect("limited").len(), 50);
    store.delete_server(id, start + 5 * hour).await.expect("delete");
    assert_eq!(store.metrics_history(id, start, start + 3 * hour, 1_000).await.expect("history").len(), 0);
}

/// A report later than everything stored of its server takes what is around it from the
/// server's stored end (no probe of its own), which must say what a probe would: a `seq`
/// stored with an earlier time is still known, a report at the newest time is rated
/// against the one before, and a chunk reaching past the newest stored row is reopened.
pub async fn reports_after_the_newest_sample_are_checked_like_any_other(store: &dyn Store) {
    let id = agent(store, "past-the-end", "10.0.0.51").await;
    let first = [report(Some(1), T0, 0, json!([])), report(Some(2), T0 + 30_000, 3_000, json!([]))];
    store.store_reports(id, &first, T0 + 31_000).await.expect("store");
    let later = [report(Some(2), T0 + 60_000, 6_000, json!([]))];
    let again = store.store_reports(id, &later, T0 + 61_000).await.expect("same seq, later time");
    assert_eq!((again.stored, again.duplicate_seqs), (0, vec![2]), "a stored seq is known whatever its time");
    let same_time = [report(Some(3), T0 + 30_000, 4_500, json!([]))];
    assert_eq!(store.store_reports(id, &same_time, T0 + 62_000).await.expect("same time").stored, 1);
    let history = store.metrics_history(id, T0, T0 + 60_000, 10).await.expect("history");
    let rate = |seq: u64| history.iter().find(|s| s.seq == Some(seq)).and_then(|s| s.network_rx_rate);
    assert_eq!(rate(3), Some(150.0), "against the sample before its time, not the one at it");
    let next = [report(Some(4), T0 + 90_000, 12_000, json!([]))];
    assert_eq!(store.store_reports(id, &next, T0 + 91_000).await.expect("next").stored, 1);
    let history = store.metrics_history(id, T0, T0 + 90_000, 10).await.expect("history");
    let rate = |seq: u64| history.iter().find(|s| s.seq == Some(seq)).and_then(|s| s.network_rx_rate);
    assert_eq!(rate(4), Some(125.0), "against the latest of the newest time");

    // Two hours every 10 minutes, all compacted; then a late report a day before them:
    // the newest stored row is now older than the chunk's end.
    let id = agent(store, "chunk-past-the-end", "10.0.0.52").await;
    let hour = 3_600_000;
    let start = bucket(T0, hour);
    let reports: Vec<Report> =
        (0..12u64).map(|i| report(Some(10 + i), start + i as i64 * 600_000, i * 6_000, json!([]))).collect();
    store.store_reports(id, &reports, start + 2 * hour).await.expect("store");
    let compacted = store.compact_history(start + 2 * hour + 1).await.expect("compact");
    assert_eq!(compacted.samples, 12 + 4, "this server's and the first one's");
    // After its newest sample, now compacted: rated against it all the same.
    let after = [report(Some(600), start + 2 * hour + 30_000, 66_300, json!([]))];
    assert_eq!(store.store_reports(id, &after, start + 2 * hour).await.expect("after").stored, 1);
    let stored = store.metrics_history(id, start + 2 * hour, start + 3 * hour, 10).await.expect("history");
    let rate = 300.0 * 1_000.0 / 630_000.0;
    assert_eq!(stored.iter().map(|s| s.network_rx_rate).collect::<Vec<_>>(), [Some(rate)], "against the chunk's last");
    let day_before = report(Some(1), start - 86_400_000, 0, json!([]));
    assert_eq!(store.store_reports(id, &[day_before], start + 2 * hour).await.expect("late").stored, 1);
    // Inside the compacted span: between the samples at 30 and 40 minutes.
    let inside = report(Some(500), start + 1_815_000, 18_150, json!([]));
    assert_eq!(store.store_reports(id, &[inside], start + 2 * hour).await.expect("inside").stored, 1);
    let history = store.metrics_history(id, start - 86_400_000, start + 2 * hour, 100).await.expect("history");
    assert_eq!(history.len(), 14, "each sample once");
    let rate = |seq: u64| history.iter().find(|s| s.seq == Some(seq)).and_then(|s| s.network_rx_rate);
    assert_eq!(rate(500), Some(10.0), "against the compacted sample just before it");
    assert_eq!(rate(14), Some(10.0), "the compacted sample after it re-rated against it");
    assert_eq!(
        store.compact_history(start + 2 * hour + 1).await.expect("again").samples,
        14,
        "the chunk reopened (and the day before)"
    );

    // A silent server's newest sample removed by retention: nothing stored before a
    // new report, which has no rates.
    let id = agent(store, "retained-end", "10.0.0.53").await;
    let now = T0 + 40 * DAY;
    let old = [report(Some(1), now - 32 * DAY, 0, json!([])), report(Some(2), now - 31 * DAY, 8_640_000, json!([]))];
    store.store_reports(id, &old, now - 31 * DAY).await.expect("store");
    let policy = RetentionPolicy { raw_ms: 30 * DAY, five_minutes_ms: 0, hours_ms: 0, days_ms: 0, max_bytes: 0 };
    assert!(store.apply_retention(&policy, now).await.expect("retention").raw_deleted >= 2);
    let new = [report(Some(3), now, 9_000_000, json!([]))];
    assert_eq!(store.store_reports(id, &new, now).await.expect("new").stored, 1);
    let history = store.metrics_history(id, 0, i64::MAX, 10).await.expect("history");
    assert_eq!(history.iter().map(|s| (s.seq, s.network_rx_rate)).collect::<Vec<_>>(), [(Some(3), None)]);
}

/// Compaction moves samples between rows and chunks (and a replay moves them back): a
/// reader never sees a sample twice or misses one, since each read is one snapshot.
pub async fn readers_see_each_sample_once_while_compaction_moves_it(store: &dyn Store) {
    let id = agent(store, "moving", "10.0.0.50").await;
    let hour = 3_600_000;
    let start = T0 - T0 % DAY;
    let reports: Vec<Report> =
        (0..240u64).map(|i| report(Some(i), start + i as i64 * 30_000, i * 1_000, json!([]))).collect();
    store.store_reports(id, &reports, start).await.expect("store");
    let moving = std::cell::Cell::new(true);
    let mover = async {
        for _ in 0..40 {
            store.compact_history(start + 2 * hour).await.expect("compact");
            // A replay of a compacted report reopens its chunk: the samples are rows again.
            let replay = store.store_reports(id, std::slice::from_ref(&reports[5]), start).await.expect("replay");
            assert_eq!(replay.stored, 0);
        }
        moving.set(false);
    };
    let reader = async {
        let mut reads = 0;
        while moving.get() {
            let history = store.metrics_history(id, start, start + 2 * hour, 1_000).await.expect("history");
            assert_eq!(history.len(), 240, "read {reads}");
            let chart = store.chart(id, start - 1, start + 2 * hour, 60_000).await.expect("chart");
            assert_eq!(chart.iter().map(|b| b.samples).sum::<u32>(), 240, "read {reads}");
            reads += 1;
        }
        reads
    };
    let ((), reads) = tokio::join!(mover, reader);
    assert!(reads > 10, "the reads overlapped the moves ({reads})");
}

pub async fn events_are_searched_literally_in_any_case(store: &dyn Store) {
    server(store, "Disk 50% full", "10.0.0.51").await;
    server(store, "disk 500", "10.0.0.52").await;
    server(store, "disk_5", "10.0.0.53").await;
    let found = |text: &str| {
        let query = EventQuery { search: Some(text.to_owned()), limit: 50, ..EventQuery::default() };
        async move {
            let events = store.events(query).await.expect("events");
            events.into_iter().map(|e| e.message).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("50%").await, ["server Disk 50% full added"], "% is a character, not a wildcard");
    assert_eq!(found("K_5").await, ["server disk_5 added"], "so is _, and case does not matter");
    assert_eq!(found("DISK").await.len(), 3);
    assert!(found("nowhere").await.is_empty());
}
