//! `GET /metrics`: the fleet's newest figures and the hub's own counters in the
//! Prometheus text format, for Prometheus, VictoriaMetrics or anything that scrapes it.
//! Needs a viewer token (`Authorization: Bearer …`), like every read of the API.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::app::AppState;
use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::export::label_value as label;
use crate::live::ServerFigures;

/// (metric, help, its value for one server)
type Gauge = (&'static str, &'static str, fn(&ServerFigures<'_>, &Extra) -> Option<f64>);

/// Per-server figures that are not in its newest report.
struct Extra {
    open_alerts: u32,
    failed_services: u32,
}

const SERVER_GAUGES: [Gauge; 13] = [
    ("serverpulse_server_up", "1 while the server's agent is online, else 0", |f, _| {
        Some(if f.status == "online" { 1.0 } else { 0.0 })
    }),
    ("serverpulse_cpu_usage_percent", "CPU in use, percent", |f, _| f.cpu),
    ("serverpulse_memory_usage_percent", "Memory in use, percent", |f, _| f.memory),
    ("serverpulse_disk_usage_percent", "Disk in use, percent, as the agent reports it", |f, _| f.disk),
    ("serverpulse_load_average", "Load average (1 minute)", |f, _| f.load),
    ("serverpulse_uptime_seconds", "Seconds since boot", |f, _| f.uptime.map(|u| u as f64)),
    ("serverpulse_network_receive_bytes_per_second", "Bytes received per second", |f, _| f.network_rx_rate),
    ("serverpulse_network_transmit_bytes_per_second", "Bytes sent per second", |f, _| f.network_tx_rate),
    ("serverpulse_disk_read_bytes_per_second", "Bytes read from disks per second", |f, _| f.disk_read_rate),
    ("serverpulse_disk_write_bytes_per_second", "Bytes written to disks per second", |f, _| f.disk_write_rate),
    ("serverpulse_last_report_timestamp_seconds", "Agent time of the newest report", |f, _| {
        f.at.map(|at| at as f64 / 1000.0)
    }),
    ("serverpulse_open_alerts", "Alerts firing or acknowledged", |_, e| Some(f64::from(e.open_alerts))),
    ("serverpulse_failed_services", "Watched units in the failed state", |_, e| Some(f64::from(e.failed_services))),
];

#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, content_type = "text/plain", description = "Prometheus text exposition format 0.0.4"),
              (status = 401)),
    security(("api_token" = [])))]
pub async fn exposition(State(state): State<AppState>, _: Viewer) -> ApiResult<impl IntoResponse> {
    let servers = state.store.list_servers().await?;
    let counts = state.store.fleet_counts().await?;
    let rows: Vec<(String, ServerFigures<'_>, Extra)> = servers
        .iter()
        .map(|server| {
            let c = counts.get(&server.id).copied().unwrap_or_default();
            let labels = format!("server=\"{}\",server_id=\"{}\"", label(&server.name), server.id);
            (
                labels,
                ServerFigures::of(server),
                Extra { open_alerts: c.open_alerts, failed_services: c.failed_services },
            )
        })
        .collect();
    let mut out = String::with_capacity(rows.len() * 1_200 + 1_024);
    for (name, help, value) in SERVER_GAUGES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, figures, extra) in &rows {
            if let Some(v) = value(figures, extra) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    let (commits, requests) = state.ingest.stats();
    let hub = [
        (
            "serverpulse_hub_ingest_commits_total",
            "counter",
            "Ingest transactions committed (one fsync each)",
            commits as f64,
        ),
        (
            "serverpulse_hub_ingest_requests_total",
            "counter",
            "Agent requests committed by the ingest writer",
            requests as f64,
        ),
        (
            "serverpulse_hub_ingest_queue_depth",
            "gauge",
            "Requests waiting for the ingest writer",
            state.ingest.queued() as f64,
        ),
        ("serverpulse_hub_servers", "gauge", "Servers in the inventory", rows.len() as f64),
    ];
    let mut hub = hub.to_vec();
    if let Some(exporter) = &state.exporter {
        let stats = &exporter.stats;
        let read = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed) as f64;
        hub.push((
            "serverpulse_hub_export_samples_total",
            "counter",
            "Samples pushed to the export target",
            read(&stats.pushed),
        ));
        hub.push((
            "serverpulse_hub_export_dropped_total",
            "counter",
            "Samples dropped: export queue or buffer full",
            read(&stats.dropped),
        ));
        hub.push((
            "serverpulse_hub_export_failures_total",
            "counter",
            "Failed pushes to the export target",
            read(&stats.failures),
        ));
    }
    for (name, kind, help, value) in hub {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out))
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label(r#"web "1"\a"#), r#"web \"1\"\\a"#);
        assert_eq!(super::label("two\nlines"), "two\\nlines");
    }
}
