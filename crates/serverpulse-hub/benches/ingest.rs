//! Ingest throughput and latency through the whole hub path (auth, decode, group commit
//! to SQLite with `synchronous=FULL` on the real disk, alert evaluation, live update),
//! against the floor: a handler that only parses the same report, in the same run.
//!
//! `cargo bench -p serverpulse-hub --bench ingest [-- AGENTS SECONDS]` (defaults 2000
//! servers, 5 s per level). Concurrent senders 1, 10, 100, 400 each post reports back to
//! back (like agents whose interval is compressed to nothing), with the summaries
//! refreshed beside them as `serve` does; it prints reports/s,
//! p50/p99 latency, commits/s (one fsync each) and requests per commit, and the process
//! CPU per report. The database lives under `target/` (a real disk), never /dev/shm.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{Value, json};
use serverpulse_domain::Secret;
use serverpulse_hub::app::{AppState, router};
use serverpulse_hub::clock::{Clock, SystemClock};
use serverpulse_hub::config::Settings;
use serverpulse_store::{AgentCredentials, EnrollmentGrant, NewServer, Store};
use serverpulse_store_sqlite::SqliteStore;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc/self/stat (fields 14 and 15, in ticks).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// A report like the agent's: flat figures plus detail, services; seq increasing.
fn report(seq: u64, at: i64, cpu: f64) -> Value {
    json!({"seq": seq, "timestamp": serverpulse_proto::time::format_timestamp(at), "schema": 2,
        "metrics": {"cpu_usage": cpu, "memory_usage": 41.2, "disk_usage": 63.0, "load_average": 0.4,
            "uptime": 86_400 + seq * 30, "network_rx": seq * 40_000, "network_tx": seq * 20_000,
            "disk_io_read": seq * 4_096, "disk_io_write": seq * 8_192,
            "detail": {"filesystems": [{"mount": "/", "total": 20e9, "used": 12e9, "available": 8e9, "percent": 60.0}],
                       "processes": {"total": 120, "running": 1, "top_cpu": [], "top_memory": []}}},
        "services": [{"name": "nginx", "status": "active"}, {"name": "sshd", "status": "active"}]})
}

struct Level {
    reports: u64,
    latencies: Vec<Duration>,
}

/// `senders` tasks posting to `url(agent)` back to back for `seconds`.
async fn load(
    client: &reqwest::Client,
    base: &str,
    agents: &[(String, String)],
    senders: usize,
    seconds: u64,
    seq_base: u64,
) -> Level {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    // Each sender owns at least one agent (a sender with none would spin).
    let senders = senders.min(agents.len());
    for i in 0..senders {
        let (client, stop) = (client.clone(), stop.clone());
        let mine: Vec<(String, String)> = agents.iter().skip(i).step_by(senders).cloned().collect();
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = seq_base;
            'outer: loop {
                seq += 1;
                for (agent, token) in &mine {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    let body = report(seq, SystemClock.now_ms(), (seq % 100) as f64).to_string();
                    let started = Instant::now();
                    let response = client
                        .post(format!("{base}/api/v1/agents/{agent}/metrics"))
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                    response.bytes().await.unwrap();
                    latencies.push(started.elapsed());
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    Level { reports: latencies.len() as u64, latencies }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let servers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = tempfile::Builder::new().prefix("ingest-bench").tempdir_in(&target).unwrap();
    let now = SystemClock.now_ms();
    let store = Arc::new(SqliteStore::open(&dir.path().join("serverpulse.db"), now).await.unwrap());
    let mut agents = Vec::with_capacity(servers);
    let seeding = Instant::now();
    for i in 0..servers {
        let grant = EnrollmentGrant { token: Secret::generate().unwrap().digest(), expires_at: now + 1 };
        let ip = format!("10.{}.{}.{}", i / 65_536, i / 256 % 256, i % 256).parse().unwrap();
        let server = store.create_server(NewServer { name: format!("load-{i:05}"), ip }, grant, now).await.unwrap();
        let secret = Secret::generate().unwrap();
        let agent_id = format!("agent-{i:05}");
        let credentials = AgentCredentials { agent_id: agent_id.clone(), token: secret.digest() };
        store.set_agent_credentials(server.id, credentials, now).await.unwrap();
        agents.push((agent_id, secret.expose().to_owned()));
    }
    println!("{servers} servers with agents provisioned in {:.1} s", seeding.elapsed().as_secs_f64());

    let state = AppState::new(store, Arc::new(SystemClock), Settings::defaults());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub = format!("http://{}", listener.local_addr().unwrap());
    let serving = state.clone();
    tokio::spawn(async move { axum::serve(listener, router(serving)).await.unwrap() });
    // The summaries are refreshed beside ingest, as `serve` does.
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(serverpulse_hub::summaries::run(state.clone(), stop_rx));

    // The floor: the same request parsed (body read, JSON decoded and validated) and answered.
    let floor = axum::Router::new().route(
        "/api/v1/agents/{agent}/metrics",
        post(|body: axum::body::Bytes| async move {
            let document: Value = serde_json::from_slice(&body).unwrap();
            let reports =
                serverpulse_proto::report::decode_metrics_body(document, SystemClock.now_ms()).unwrap().into_reports();
            axum::Json(json!({"success": true, "stored": reports.len()}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let floor_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, floor).await.unwrap() });

    let client = reqwest::Client::builder().pool_max_idle_per_host(1_000).build().unwrap();
    println!("| path | senders | reports/s | p50 | p99 | commits/s | requests/commit | CPU ms/report |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut seq_base = 0;
    for senders in [1, 10, 100, 400] {
        for (name, base) in [("hub", hub.as_str()), ("parse-only floor", floor_base.as_str())] {
            let (batches0, jobs0) = state.ingest.stats();
            let cpu0 = cpu_seconds();
            let level = load(&client, base, &agents, senders, seconds, seq_base).await;
            let cpu = cpu_seconds() - cpu0;
            let (batches, jobs) = state.ingest.stats();
            let rate = level.reports as f64 / seconds as f64;
            let commits = (batches - batches0) as f64 / seconds as f64;
            let per_commit = if batches > batches0 { (jobs - jobs0) as f64 / (batches - batches0) as f64 } else { 0.0 };
            println!(
                "| {name} | {senders} | {rate:.0} | {:.1} ms | {:.1} ms | {commits:.0} | {per_commit:.1} | {:.2} |",
                percentile(&level.latencies, 0.5),
                percentile(&level.latencies, 0.99),
                cpu * 1e3 / level.reports.max(1) as f64
            );
            seq_base += 1_000_000;
        }
    }
    // What the summaries still owe for all of the above (refreshed once a minute in `serve`).
    let (jobs, started) = (state.ingest.stats().1, Instant::now());
    let buckets = state.store.refresh_rollups(None).await.unwrap();
    println!(
        "deferred summary refresh afterwards: {buckets} buckets in {:.2} s ({:.2} ms per report ingested)",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e3 / jobs.max(1) as f64
    );
}
