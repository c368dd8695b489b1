//! Export to a Prometheus-compatible store for fleets beyond one hub's history: every
//! stored report becomes samples in the Prometheus text format with their agent time,
//! pushed in batches to VictoriaMetrics' import API (`/api/v1/import/prometheus`).
//!
//! Optional (`export.victoriametrics_url`), and never in ingest's way: reports are
//! handed over only after they are durable here, through a bounded queue; while the
//! target is down, samples wait in a bounded buffer (the oldest dropped past it, and
//! counted) and are retried with back-off.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serverpulse_proto::report::Report;
use serverpulse_store::Server;
use tokio::sync::mpsc;

/// Lines waiting for the target before the oldest are dropped.
pub const MAX_BUFFERED_LINES: usize = 500_000;
/// Lines per push.
const PUSH_LINES: usize = 20_000;
/// How long a line may wait for companions before it is pushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counters of the exporter's work, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub pushed: AtomicU64,
    pub dropped: AtomicU64,
    pub failures: AtomicU64,
}

/// The handle the ingest path hands stored reports to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Exporter {
    sender: mpsc::Sender<String>,
    pub stats: Arc<ExportStats>,
}

/// A label value with `\`, `"` and line breaks escaped as the text format wants.
pub fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The samples of `reports` from `server`, one line each, in the text format with
/// millisecond timestamps.
pub fn lines(server: &Server, reports: &[Report]) -> String {
    let labels = format!("server=\"{}\",server_id=\"{}\"", label_value(&server.name), server.id);
    let mut out = String::new();
    for report in reports {
        let m = &report.metrics;
        let at = report.timestamp;
        let gauges: [(&str, Option<f64>); 10] = [
            ("serverpulse_cpu_usage_percent", m.cpu_usage.map(|p| p.get())),
            ("serverpulse_memory_usage_percent", m.memory_usage.map(|p| p.get())),
            ("serverpulse_disk_usage_percent", m.disk_usage.map(|p| p.get())),
            ("serverpulse_load_average", m.load_average),
            ("serverpulse_uptime_seconds", m.uptime.map(|u| u as f64)),
            ("serverpulse_network_receive_bytes_total", m.network_rx.map(|v| v as f64)),
            ("serverpulse_network_transmit_bytes_total", m.network_tx.map(|v| v as f64)),
            ("serverpulse_disk_read_bytes_total", m.disk_io_read.map(|v| v as f64)),
            ("serverpulse_disk_written_bytes_total", m.disk_io_write.map(|v| v as f64)),
            ("serverpulse_response_time_milliseconds", m.response_time),
        ];
        for (name, value) in gauges {
            if let Some(value) = value {
                let _ = writeln!(out, "{name}{{{labels}}} {value} {at}");
            }
        }
        for service in &report.services {
            let up = if service.status.as_str() == "active" { 1 } else { 0 };
            let _ = writeln!(
                out,
                "serverpulse_service_active{{{labels},unit=\"{}\"}} {up} {at}",
                label_value(&service.name)
            );
        }
    }
    out
}

impl Exporter {
    /// Starts pushing to `base` (e.g. `http://127.0.0.1:8428`) on the current runtime.
    pub fn start(base: &str, http: reqwest::Client) -> Self {
        let (sender, receiver) = mpsc::channel(10_000);
        let stats = Arc::<ExportStats>::default();
        let url = format!("{}/api/v1/import/prometheus", base.trim_end_matches('/'));
        tokio::spawn(push_loop(url, http, receiver, stats.clone()));
        Self { sender, stats }
    }

    /// Hands over the samples of reports that are stored; never waits.
    pub fn offer(&self, server: &Server, reports: &[Report]) {
        let text = lines(server, reports);
        if text.is_empty() {
            return;
        }
        let count = text.lines().count() as u64;
        if self.sender.try_send(text).is_err() {
            self.stats.dropped.fetch_add(count, Ordering::Relaxed);
        }
    }
}

async fn push_loop(url: String, http: reqwest::Client, mut receiver: mpsc::Receiver<String>, stats: Arc<ExportStats>) {
    let mut buffer: VecDeque<String> = VecDeque::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        // Gather for up to a second (or until a push is full).
        let received = tokio::time::timeout(FLUSH_EVERY, receiver.recv()).await;
        match received {
            Ok(Some(text)) => {
                buffer.extend(text.lines().map(str::to_owned));
                while buffer.len() < PUSH_LINES {
                    match receiver.try_recv() {
                        Ok(more) => buffer.extend(more.lines().map(str::to_owned)),
                        Err(_) => break,
                    }
                }
            }
            Ok(None) if buffer.is_empty() => return, // the hub is stopping
            Ok(None) | Err(_) => {}
        }
        while buffer.len() > MAX_BUFFERED_LINES {
            buffer.pop_front();
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        while !buffer.is_empty() {
            let take = buffer.len().min(PUSH_LINES);
            let mut body = String::new();
            for line in buffer.iter().take(take) {
                body.push_str(line);
                body.push('\n');
            }
            match http.post(&url).body(body).send().await {
                Ok(response) if response.status().is_success() => {
                    buffer.drain(..take);
                    stats.pushed.fetch_add(take as u64, Ordering::Relaxed);
                    backoff = Duration::from_millis(500);
                }
                outcome => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    let why = match outcome {
                        Ok(response) => format!("HTTP {}", response.status()),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(error = %why, waiting = buffer.len(), "export push failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn reports_become_timestamped_samples() {
        let doc = json!({"timestamp": "2025-06-21T20:30:00Z", "metrics": {"cpu_usage": 12.5, "memory_usage": 40.0,
            "disk_usage": 70.0, "network_rx": 1000}, "services": [{"name": "nginx", "status": "failed"}]});
        let report = serverpulse_proto::report::decode_report(&doc, "", 1_750_537_800_000).unwrap();
        let server = serverpulse_store::contract::example_server(7, "web \"1\"");
        let text = super::lines(&server, &[report]);
        assert!(
            text.contains(
                "serverpulse_cpu_usage_percent{server=\"web \\\"1\\\"\",server_id=\"7\"} 12.5 1750537800000\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "serverpulse_network_receive_bytes_total{server=\"web \\\"1\\\"\",server_id=\"7\"} 1000 1750537800000\n"
        ));
        assert!(text.contains(",unit=\"nginx\"} 0 1750537800000\n"));
        assert!(!text.contains("load_average"), "absent figures are not invented");
    }
}
