//! `serverpulse-bench writer`: the ingest writer's transaction alone, with no HTTP and no
//! hub process — what one batch of reports costs the store, and how that cost splits
//! between ordinary rounds and the rounds where every server's 5-minute bucket closes.
//!
//! A fleet is provisioned into a fresh SQLite file under `target/`; then, round after
//! round, every server stores one report `interval` later than the last (agent time, so
//! 5-minute buckets close every 300 / interval rounds, as they would in the field), in
//! the fleet's arrival order (unrelated to server ids, as `load` sends them), in batches
//! as the group-commit writer takes them. CPU is every thread of this process
//! (SQLite works on a thread of its own), from `/proc/self/task/*/schedstat` in ns; run
//! it pinned (`taskset -c 1`) for steadier figures.

use std::time::Instant;

use anyhow::Context;
use serverpulse_proto::report::{Document, MetricsBody, Report, decode_metrics_body};
use serverpulse_store::history::{TIERS, bucket_of};
use serverpulse_store::{IngestJob, Store};
use serverpulse_store_sqlite::SqliteStore;

use serverpulse_bench::series::{Series, arrival_order};

/// What one writer run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct WriterRun {
    pub servers: usize,
    /// Reports per transaction.
    pub batch: usize,
    pub rounds: u64,
    /// Seconds of agent time between one server's reports.
    pub interval: u64,
    /// Each round by server id instead of in the fleet's arrival order.
    pub in_id_order: bool,
}

/// CPU of every thread of this process so far, in µs.
fn cpu_micros() -> anyhow::Result<f64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let text = std::fs::read_to_string(entry?.path().join("schedstat"))?;
        total += text.split_whitespace().next().context("empty schedstat")?.parse::<u64>()?;
    }
    Ok(total as f64 / 1e3)
}

/// Runs `run` in a fresh database under `dir`; prints each round's CPU per report and
/// the summary. The first round (every server's first report) is left out of it.
pub async fn writer(run: WriterRun, dir: &std::path::Path) -> anyhow::Result<()> {
    let start = bucket_of(crate::now_ms(), TIERS[0]) + 10_000;
    let store = SqliteStore::open(&dir.join("writer.db"), start).await?;
    let (fleet, _): (Vec<_>, Vec<_>) = crate::fleet(run.servers, run.interval)?.into_iter().unzip();
    for chunk in fleet.chunks(10_000) {
        store.provision_agents_in_bulk(chunk, start).await?;
    }
    let ids: Vec<i64> = store.list_servers().await?.iter().map(|s| s.id).collect();
    let interval_ms = i64::try_from(run.interval)?.saturating_mul(1_000).max(1);
    let mut series: Vec<Series> = (0..ids.len() as u64).map(|i| Series::new(i, interval_ms)).collect();
    let order = arrival_order(ids.len(), run.in_id_order);
    let (mut ordinary, mut closing) = (Vec::new(), Vec::new());
    let wall = Instant::now();
    let mut gzip = serverpulse_agent::transport::Gzip::default();
    for round in 1..=run.rounds {
        let at = start + i64::try_from(round)? * interval_ms;
        let mut jobs = Vec::with_capacity(ids.len());
        for &i in &order {
            let (id, series) = (&ids[i], &mut series[i]);
            let document = series.agent_report(round, at, start);
            // Kept as the hub keeps an agent's report: the gzip body it came in.
            let body = gzip.encode(format!("{{\"reports\":[{document}]}}").as_bytes());
            let MetricsBody::Single(report) = decode_metrics_body(document, at)? else {
                anyhow::bail!("the series made a batch, not one report");
            };
            jobs.push(IngestJob {
                server: *id,
                reports: vec![Report { document: Document::GzipBody(body), ..*report }],
                received_at: at,
            });
        }
        let before = cpu_micros()?;
        for batch in jobs.chunks(run.batch.max(1)) {
            store.store_report_batch(batch, None).await?;
        }
        let per_report = (cpu_micros()? - before) / jobs.len().max(1) as f64;
        let closes = bucket_of(at, TIERS[0]) != bucket_of(at - interval_ms, TIERS[0]);
        println!("round {round}: {per_report:.1} µs per report{}", if closes { " (buckets close)" } else { "" });
        if round > 1 {
            if closes { closing.push(per_report) } else { ordinary.push(per_report) }
        }
    }
    store.close().await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let all: Vec<f64> = ordinary.iter().chain(&closing).copied().collect();
    println!(
        "\n{} servers, {} rounds {} s apart, {} reports per transaction ({:.0} s): CPU per report, rounds 2–{}: \
         {:.1} µs (ordinary rounds {:.1} µs, rounds closing buckets {:.1} µs)",
        ids.len(),
        run.rounds,
        run.interval,
        run.batch,
        wall.elapsed().as_secs_f64(),
        run.rounds,
        mean(&all),
        mean(&ordinary),
        mean(&closing),
    );
    Ok(())
}
