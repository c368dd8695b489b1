//! The dashboard's server time at scale: the fleet page over 10,000 servers, and one
//! server's page and chart data over 30 days of 30-second samples.
//!
//! `cargo bench -p serverpulse-hub --bench dashboard [-- SERVERS DAYS]` builds a fresh
//! database (on /dev/shm when there is one, so seeding is not fsync-bound), starts the
//! hub's router on 127.0.0.1, signs a session in, and times each request 50 times after
//! 5 warm-ups; it prints medians and 95th percentiles. Figures go to `docs/benchmarks.md`.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use serverpulse_domain::{Role, Secret};
use serverpulse_hub::app::{AppState, router};
use serverpulse_hub::clock::{Clock, SystemClock};
use serverpulse_hub::config::Settings;
use serverpulse_proto::report::decode_report;
use serverpulse_store::{EnrollmentGrant, NewServer, NewSession, NewUser, Store};
use serverpulse_store_sqlite::SqliteStore;

const RUNS: usize = 50;
const WARM_UP: usize = 5;

fn report(seq: u64, at: i64, cpu: f64) -> serverpulse_proto::report::Report {
    let doc = json!({"seq": seq, "timestamp": serverpulse_proto::time::format_timestamp(at),
        "metrics": {"cpu_usage": cpu, "memory_usage": 40.0 + cpu / 4.0, "disk_usage": 61.5, "load_average": cpu / 50.0,
                    "uptime": 86_400 + seq * 30, "network_rx": seq * 40_000, "network_tx": seq * 20_000,
                    "disk_io_read": seq * 4_096, "disk_io_write": seq * 8_192}});
    decode_report(&doc, "", at).unwrap()
}

async fn time(client: &reqwest::Client, url: &str, cookie: &str) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(RUNS);
    let mut size = 0;
    for i in 0..WARM_UP + RUNS {
        let started = Instant::now();
        let response = client.get(url).header("cookie", cookie).send().await.unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
        size = response.bytes().await.unwrap().len();
        if i >= WARM_UP {
            times.push(started.elapsed());
        }
    }
    times.sort();
    (times[RUNS / 2], times[RUNS * 95 / 100], size)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let servers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let days: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let dir = tempfile::Builder::new().prefix("serverpulse-bench").tempdir_in(base).unwrap();
    let now = SystemClock.now_ms();
    let store = Arc::new(SqliteStore::open(&dir.path().join("serverpulse.db"), now).await.unwrap());

    let seeding = Instant::now();
    let mut ids = Vec::with_capacity(servers);
    for i in 0..servers {
        let grant = EnrollmentGrant { token: Secret::generate().unwrap().digest(), expires_at: now + 1 };
        let ip = format!("10.{}.{}.{}", i / 65_536, i / 256 % 256, i % 256).parse().unwrap();
        let server = store.create_server(NewServer { name: format!("host-{i:05}"), ip }, grant, now).await.unwrap();
        ids.push(server.id);
    }
    // Nine in ten report (the rest never connected); the report makes them online.
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 10 != 0) {
        store.store_reports(*id, &[report(1, now - 20_000, (i % 97) as f64)], now - 20_000).await.unwrap();
    }
    println!("seeded {servers} servers in {:.1} s", seeding.elapsed().as_secs_f64());

    let seeding = Instant::now();
    let history = ids[1];
    let samples = days * 2_880;
    let mut seq = 1;
    while seq < samples as u64 {
        let batch: Vec<_> = (seq..(seq + 2_000).min(samples as u64))
            .map(|s| report(s + 1, now - days * 86_400_000 + s as i64 * 30_000, (s % 100) as f64))
            .collect();
        store.store_reports(history, &batch, now).await.unwrap();
        seq += 2_000;
    }
    store.refresh_rollups(None).await.unwrap();
    println!("seeded {samples} samples ({days} days at 30 s) in {:.1} s", seeding.elapsed().as_secs_f64());

    let user = store
        .create_user(NewUser { email: "bench@example.test".into(), role: Role::Admin, password_hash: "x".into() }, now)
        .await
        .unwrap();
    let secret = Secret::generate().unwrap();
    let session = NewSession { id: secret.digest(), user_id: user.id, expires_at: now + 3_600_000 };
    store.create_session(session, now).await.unwrap();
    let cookie = format!("sp_session={}", secret.expose());

    let state = AppState::new(store, Arc::new(SystemClock), Settings::defaults());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{address}{path}");
    let from = now - days * 86_400_000;
    let cases = [
        ("fleet page, first page by name", url("/fleet")),
        ("fleet page, sorted by CPU", url("/fleet?sort=cpu&dir=desc")),
        ("fleet page, search", url("/fleet?q=host-012")),
        ("server page", url(&format!("/servers/{history}"))),
        (
            "chart data, 30 days, 1000 points",
            url(&format!("/api/v1/servers/{history}/chart?from={from}&to={now}&points=1000")),
        ),
        ("chart data, 1 hour", url(&format!("/api/v1/servers/{history}/chart?from={}&to={now}", now - 3_600_000))),
    ];
    println!("| request | median | p95 | bytes |\n|---|---|---|---|");
    for (name, url) in cases {
        let (median, p95, size) = time(&client, &url, &cookie).await;
        println!("| {name} | {:.1} ms | {:.1} ms | {size} |", median.as_secs_f64() * 1e3, p95.as_secs_f64() * 1e3);
    }
}
