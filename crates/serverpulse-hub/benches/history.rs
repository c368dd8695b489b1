//! History at rest: bytes per sample on disk and 30-day chart latency for ServerPulse's
//! SQLite store, next to Debian's VictoriaMetrics holding the very same samples.
//!
//! `cargo bench -p serverpulse-hub --bench history [-- SERVERS DAYS]` (defaults 4 and
//! 30). Each server gets DAYS of 30-second reports from a fixed seed: smooth CPU, load
//! following it, memory moving in steps, disk usage nearly constant, uptime and network
//! and disk counters growing. They are stored through the store's batch ingest (time
//! compressed: no HTTP, no waiting), then pushed to a VictoriaMetrics started on
//! 127.0.0.1 through the same export lines the hub sends it. A sample is one value of one
//! metric at one time (nine per report, as exported). The database lives under
//! `target/` on the real disk.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use serverpulse_bench::series::Series;
use serverpulse_domain::Secret;
use serverpulse_hub::clock::{Clock, SystemClock};
use serverpulse_proto::report::{Report, decode_report};
use serverpulse_store::{EnrollmentGrant, IngestJob, NewServer, RetentionPolicy, Store};
use serverpulse_store_sqlite::SqliteStore;

const INTERVAL_MS: i64 = 30_000;
const SAMPLES_PER_REPORT: u64 = 9;
/// The hub's default detail window (`retention.detail_hours`).
const DETAIL_MS: i64 = serverpulse_hub::config::DEFAULT_DETAIL_HOURS as i64 * 3_600_000;

fn report(series: &mut Series, seq: u64, at: i64, start: i64) -> Report {
    decode_report(&series.report(seq, at, start), "", at).unwrap()
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let servers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let days: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    let dir = tempfile::Builder::new().prefix("history-bench").tempdir_in(&target).unwrap();
    let now = SystemClock.now_ms();
    let now = now - now % INTERVAL_MS;
    let start = now - days * 86_400_000;
    let store = Arc::new(SqliteStore::open(&dir.path().join("serverpulse.db"), now).await.unwrap());
    let mut ids = Vec::new();
    for i in 0..servers {
        let grant = EnrollmentGrant { token: Secret::generate().unwrap().digest(), expires_at: now };
        let ip = format!("10.0.{}.{}", i / 256, i % 256).parse().unwrap();
        ids.push(store.create_server(NewServer { name: format!("host-{i:03}"), ip }, grant, now).await.unwrap().id);
    }
    let mut series: Vec<Series> = (0..servers).map(|i| Series::new(i as u64, INTERVAL_MS)).collect();
    let reports_per_server = (days * 86_400_000 / INTERVAL_MS) as u64;
    let samples = reports_per_server * servers as u64 * SAMPLES_PER_REPORT;

    // VictoriaMetrics beside it, fed the same lines the hub's export sends.
    let vm_dir = tempfile::Builder::new().prefix("history-bench-vm").tempdir_in(&target).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut vm = Command::new("/usr/bin/victoria-metrics")
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", vm_dir.path().display()))
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics (apt-get install victoria-metrics)");
    let vm_base = format!("http://127.0.0.1:{port}");
    serverpulse_hub::notifier::install_crypto_provider();
    let http = reqwest::Client::new();
    while http.get(format!("{vm_base}/health")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_rows: Vec<_> = {
        let mut rows = Vec::new();
        for id in &ids {
            rows.push(store.get_server(*id).await.unwrap());
        }
        rows
    };

    let (mut store_time, mut vm_time, mut compact_time) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut compacted = 0;
    let chunk = 120u64; // an hour of reports per server per batch
    let mut seq = 0;
    while seq < reports_per_server {
        let end = (seq + chunk).min(reports_per_server);
        let mut jobs = Vec::with_capacity(servers);
        let mut lines = String::new();
        for ((id, series), row) in ids.iter().zip(series.iter_mut()).zip(&server_rows) {
            let reports: Vec<Report> =
                (seq..end).map(|s| report(series, s + 1, start + s as i64 * INTERVAL_MS, start)).collect();
            lines.push_str(&serverpulse_hub::export::lines(row, &reports));
            jobs.push(IngestJob { server: *id, reports, received_at: now });
        }
        let started = Instant::now();
        for outcome in store.store_report_batch(&jobs, None).await.unwrap() {
            outcome.unwrap();
        }
        store_time += started.elapsed();
        let started = Instant::now();
        let response = http.post(format!("{vm_base}/api/v1/import/prometheus")).body(lines).send().await.unwrap();
        assert!(response.status().is_success());
        vm_time += started.elapsed();
        seq = end;
        // As the hub does each hour: hours past the detail window become chunks.
        if seq % (24 * chunk) == 0 || seq == reports_per_server {
            let started = Instant::now();
            let done = store.compact_history(start + seq as i64 * INTERVAL_MS - DETAIL_MS).await.unwrap();
            compact_time += started.elapsed();
            compacted += done.samples;
        }
    }
    let started = Instant::now();
    store.refresh_rollups(None).await.unwrap();
    store_time += started.elapsed();
    println!(
        "compacted {compacted} reports past the {} h detail window in {:.1} s ({:.0} reports/s)",
        DETAIL_MS / 3_600_000,
        compact_time.as_secs_f64(),
        compacted as f64 / compact_time.as_secs_f64()
    );
    println!(
        "{servers} servers × {days} days × 30 s: {} reports, {samples} samples; stored in {:.1} s ({:.0} samples/s), \
         VictoriaMetrics import {:.1} s",
        reports_per_server * servers as u64,
        store_time.as_secs_f64(),
        samples as f64 / store_time.as_secs_f64(),
        vm_time.as_secs_f64()
    );

    // Bytes on disk: pages in use after a checkpoint; VictoriaMetrics after flush and merge.
    let keep = RetentionPolicy { raw_ms: 0, five_minutes_ms: 0, hours_ms: 0, days_ms: 0, max_bytes: 0 };
    let ours = store.apply_retention(&keep, now).await.unwrap().bytes_used;
    let _ = http.get(format!("{vm_base}/internal/force_flush")).send().await;
    let _ = http.get(format!("{vm_base}/internal/force_merge")).send().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = http.get(format!("{vm_base}/metrics")).send().await.unwrap().text().await.unwrap();
    let vm_bytes: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("vm_data_size_bytes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let tables: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC")
            .fetch_all(
                &sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("serverpulse.db").display()))
                    .await
                    .unwrap(),
            )
            .await
            .unwrap_or_default();
    for (table, bytes) in tables.iter().take(8) {
        println!("  {table}: {bytes} bytes ({:.2} per sample)", *bytes as f64 / samples as f64);
    }
    println!("| store | bytes on disk | bytes per sample |\n|---|---|---|");
    println!("| ServerPulse (SQLite: chunks, recent rows, rollups) | {ours} | {:.1} |", ours as f64 / samples as f64);
    println!("| VictoriaMetrics 1.79 (Debian) | {vm_bytes:.0} | {:.2} |", vm_bytes / samples as f64);
    println!("ratio: {:.2} × VictoriaMetrics", ours as f64 / vm_bytes);

    // A 30-day chart of one server: ServerPulse's chart query (8 series, 1 h buckets with
    // min/max/mean) next to VictoriaMetrics answering min, max and mean of CPU per hour.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let from = start - start % 3_600_000;
    for _ in 0..25 {
        let started = Instant::now();
        let buckets = store.chart(ids[0], from, now, 3_600_000).await.unwrap();
        assert!(buckets.len() >= (days * 24 - 1) as usize);
        ours.push(started.elapsed());
        let started = Instant::now();
        for function in ["min_over_time", "max_over_time", "avg_over_time"] {
            let query = format!("{function}(serverpulse_cpu_usage_percent{{server_id=\"{}\"}}[1h])", ids[0]);
            let answer: Value = http
                .post(format!("{vm_base}/api/v1/query_range"))
                .form(&[
                    ("query", query.as_str()),
                    ("start", &(from / 1000).to_string()),
                    ("end", &(now / 1000).to_string()),
                    ("step", "3600"),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["status"], "success", "{answer}");
        }
        theirs.push(started.elapsed());
    }
    // Shorter ranges read the chunks themselves: a week in 10-minute buckets (5-minute
    // summaries of compacted hours recomputed from their chunks), a day in 90-s buckets.
    let mut shorter = Vec::new();
    for (range, step) in [(7 * 86_400_000, 600_000), (86_400_000, 90_000)] {
        let from = now - range;
        let from = from - from % step;
        let mut times = Vec::new();
        for _ in 0..25 {
            let started = Instant::now();
            let buckets = store.chart(ids[0], from, now, step).await.unwrap();
            assert!(buckets.len() as i64 >= range / step - 1);
            times.push(started.elapsed());
        }
        shorter.push((range / 86_400_000, step / 1000, median(times)));
    }
    println!("| 30-day chart, one server | median |\n|---|---|");
    for (days, step, ms) in shorter {
        println!("| ServerPulse `Store::chart`, {days} day(s) in {step}-s buckets (from chunks) | {ms:.1} ms |");
    }
    println!("| ServerPulse `Store::chart` (8 metrics × min/max/mean, hourly) | {:.1} ms |", median(ours));
    println!("| VictoriaMetrics `query_range` (CPU × min/max/avg, hourly) | {:.1} ms |", median(theirs));
    let _ = vm.kill();
    let _ = vm.wait();
}
