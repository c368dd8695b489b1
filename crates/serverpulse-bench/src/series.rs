//! Deterministic, agent-like report series: a smooth daily CPU curve with noise, load
//! following it, memory moving in rare steps, disk usage nearly constant, uptime and
//! four byte counters growing by a random amount each report. The same seed gives the
//! same series on every run and machine.

use serde_json::{Value, json};

/// A deterministic pseudo-random sequence (64-bit LCG), in [0, 1).
#[derive(Debug, Clone)]
pub struct Seed(pub u64);

impl Seed {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Bytes per second each counter grows by on average: received, sent, read, written.
const RATES: [f64; 4] = [40_000.0, 15_000.0, 4_096.0, 12_288.0];

/// One simulated server's figures, advanced one report at a time.
#[derive(Debug, Clone)]
pub struct Series {
    seed: Seed,
    phase: f64,
    memory: f64,
    counters: [f64; 4],
    interval_ms: i64,
}

impl Series {
    /// Server number `index`'s series, reporting every `interval_ms`.
    pub fn new(index: u64, interval_ms: i64) -> Self {
        Self { seed: Seed(42 + index), phase: index as f64, memory: 40.0, counters: [0.0; 4], interval_ms }
    }

    /// The flat figures of report `seq` at `at` (agent time, ms); `start` is when the
    /// series began (day 0 of the CPU curve).
    pub fn metrics(&mut self, seq: u64, at: i64, start: i64) -> Value {
        let day = (at - start) as f64 / 86_400_000.0;
        let noise = self.seed.uniform() - 0.5;
        let cpu = (30.0 + 20.0 * (std::f64::consts::TAU * day + self.phase).sin() + 6.0 * noise).clamp(0.0, 100.0);
        // A step about once every six hours at a 30-second interval.
        if self.seed.uniform() < 1.0 / 720.0 {
            self.memory = (self.memory + (self.seed.uniform() - 0.5) * 10.0).clamp(10.0, 95.0);
        }
        let seconds = self.interval_ms as f64 / 1000.0;
        for (counter, rate) in self.counters.iter_mut().zip(RATES) {
            *counter += (rate * (0.5 + self.seed.uniform()) * seconds).round();
        }
        json!({"cpu_usage": (cpu * 10.0).round() / 10.0, "memory_usage": (self.memory * 10.0).round() / 10.0,
            "disk_usage": ((60.0 + day * 0.1) * 10.0).round() / 10.0, "load_average": ((cpu / 25.0) * 100.0).round() / 100.0,
            "uptime": 86_400 + seq * (self.interval_ms as u64 / 1000), "network_rx": self.counters[0],
            "network_tx": self.counters[1], "disk_io_read": self.counters[2], "disk_io_write": self.counters[3]})
    }

    /// A whole report as the agent sends it: the flat figures plus the detail (one
    /// filesystem, one interface, process counts) and two watched services.
    pub fn agent_report(&mut self, seq: u64, at: i64, start: i64) -> Value {
        let mut metrics = self.metrics(seq, at, start);
        metrics["detail"] = json!({
            "filesystems": [{"mount": "/", "device": "/dev/vda1", "total": 20e9, "used": 12e9, "available": 8e9, "percent": 60.0}],
            "interfaces": [{"name": "eth0", "rx_bytes": metrics["network_rx"], "tx_bytes": metrics["network_tx"]}],
            "processes": {"total": 123, "running": 2, "top_cpu": [], "top_memory": []}});
        json!({"seq": seq, "timestamp": serverpulse_proto::time::format_timestamp(at), "schema": 2, "metrics": metrics,
            "services": [{"name": "nginx", "status": "active"}, {"name": "sshd", "status": "active"}]})
    }

    /// Just the flat figures as a report.
    pub fn report(&mut self, seq: u64, at: i64, start: i64) -> Value {
        json!({"seq": seq, "timestamp": serverpulse_proto::time::format_timestamp(at),
            "metrics": self.metrics(seq, at, start)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_series_and_counters_only_grow() {
        let (mut a, mut b) = (Series::new(3, 30_000), Series::new(3, 30_000));
        let mut previous = 0.0;
        for seq in 1..500 {
            let at = seq as i64 * 30_000;
            let (x, y) = (a.agent_report(seq, at, 0), b.agent_report(seq, at, 0));
            assert_eq!(x, y);
            let rx = x["metrics"]["network_rx"].as_f64().unwrap();
            assert!(rx > previous);
            previous = rx;
            let cpu = x["metrics"]["cpu_usage"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&cpu));
        }
        assert_ne!(Series::new(4, 30_000).report(1, 0, 0), Series::new(3, 30_000).report(1, 0, 0));
    }
}
