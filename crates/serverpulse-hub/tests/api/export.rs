//! Export to Debian's VictoriaMetrics, started by the test on 127.0.0.1: stored reports
//! arrive there as samples with their agent time, and a target that is down at first
//! gets them once it is up.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use serverpulse_domain::Role;
use serverpulse_hub::config::Settings;

use crate::support::spawn_with;

const VICTORIA_METRICS: &str = "/usr/bin/victoria-metrics";

struct Victoria {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Victoria {
    fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(VICTORIA_METRICS)
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg("-retentionPeriod=100y")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics (apt-get install victoria-metrics; .ci/run does)");
        Self { child, base: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    async fn wait_ready(&self) {
        crate::support::wait_until_up(&format!("{}/health", self.base)).await;
    }

    /// (timestamp, value) of every sample of `metric`, flushing first.
    async fn samples(&self, metric: &str) -> Vec<(i64, f64)> {
        let _ = reqwest::get(format!("{}/internal/force_flush", self.base)).await;
        let text =
            reqwest::get(format!("{}/api/v1/export?match[]={metric}", self.base)).await.unwrap().text().await.unwrap();
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let series: Value = serde_json::from_str(line).unwrap();
            let values = series["values"].as_array().unwrap();
            let stamps = series["timestamps"].as_array().unwrap();
            out.extend(stamps.iter().zip(values).map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap())));
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }

    async fn wait_for(&self, metric: &str, count: usize) -> Vec<(i64, f64)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.samples(metric).await;
            if found.len() >= count || Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_reports_reach_victoria_metrics_even_if_it_starts_late() {
    assert!(std::path::Path::new(VICTORIA_METRICS).is_file(), "the export test needs Debian's victoria-metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut settings = Settings::defaults();
    settings.export_url = Some(format!("http://127.0.0.1:{port}"));
    let hub = spawn_with(settings).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let now = now - now % 1_000;
    hub.clock.set(now);
    let admin = hub.token_for(Role::Admin).await;
    let (server, agent, token) = hub.registered_agent(&admin, "10.94.0.1").await;
    let path = format!("/api/v1/agents/{agent}/metrics");
    let send = |seq: u64, cpu: f64| {
        let at = serverpulse_proto::time::format_timestamp(now - 60_000 + seq as i64 * 10_000);
        let report = json!({"seq": seq, "timestamp": at, "metrics": {"cpu_usage": cpu, "memory_usage": 40.0,
            "disk_usage": 70.0, "network_rx": seq * 1_000}, "services": [{"name": "nginx", "status": "active"}]});
        hub.post(&path, Some(&token), report)
    };
    // The target is not up yet: the first report waits in the exporter's buffer.
    send(1, 11.0).await.ok();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let victoria = Victoria::start(port);
    victoria.wait_ready().await;
    send(2, 22.0).await.ok();
    send(3, 33.0).await.ok();
    let cpu = victoria.wait_for("serverpulse_cpu_usage_percent", 3).await;
    assert_eq!(
        cpu,
        [(now - 50_000, 11.0), (now - 40_000, 22.0), (now - 30_000, 33.0)],
        "every stored report, at its agent time, once"
    );
    let rx = victoria.wait_for("serverpulse_network_receive_bytes_total", 3).await;
    assert_eq!(rx.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [1_000.0, 2_000.0, 3_000.0]);
    let series = reqwest::get(format!("{}/api/v1/series?match[]=serverpulse_service_active", victoria.base))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(series["data"][0]["unit"], "nginx");
    assert_eq!(series["data"][0]["server_id"], server.to_string());
    // A replay stores nothing, so exports nothing again.
    send(3, 33.0).await.ok();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(victoria.samples("serverpulse_cpu_usage_percent").await.len(), 3);
}
