//! Deterministic, agent-like report series: a smooth daily CPU curve with noise, load
//! following it, memory moving in rare steps, disk usage nearly constant, uptime and
//! byte counters growing by a random amount each report. The same seed gives the same
//! series on every run and machine.
//!
//! Each report is the agent's own document ([`serverpulse_agent::report::document`]),
//! with every part of its detail this workspace's agent sends from a small two-core
//! virtual machine (this one's shape: one filesystem, an interface and the loopback, one
//! disk, pressure, five processes in each top list) and two watched services. The hub's
//! and the floor's parse cost follow the reports agents really send.

use std::collections::BTreeMap;

use serde_json::Value;
use serverpulse_agent::collect::cpu::CpuSplit;
use serverpulse_agent::collect::disk::{DiskIo, Filesystem};
use serverpulse_agent::collect::memory::Memory;
use serverpulse_agent::collect::net::Interface;
use serverpulse_agent::collect::pressure::{Pressure, Stall};
use serverpulse_agent::collect::system::Load;
use serverpulse_agent::collector::{
    Collection, CpuDetail, Detail, DiskDetail, Flat, InterfaceDetail, Processes, TopProcess, round2,
};
use serverpulse_agent::report::{ServiceState, document};

/// A deterministic pseudo-random sequence (64-bit LCG), in [0, 1).
#[derive(Debug, Clone)]
pub struct Seed(pub u64);

impl Seed {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The order a fleet's reports arrive in within each round: `servers` indexes in a
/// fixed pseudo-random order (Fisher–Yates over [`Seed`], the same on every run), or in
/// index order when `in_index_order`.
///
/// Agents report on timers of their own, started whenever each machine booted, so a
/// real fleet's reports come in no order of their server ids: each report lands among
/// unrelated rows and index entries. Index order (server ids ascending, as provisioned)
/// makes each batch of reports touch neighbouring rows and pages, which flatters any
/// store that keeps rows in id order.
pub fn arrival_order(servers: usize, in_index_order: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..servers).collect();
    if !in_index_order {
        let mut seed = Seed(0x005E_ED0F_A221_7A15);
        for i in (1..order.len()).rev() {
            let j = ((seed.uniform() * (i + 1) as f64) as usize).min(i);
            order.swap(i, j);
        }
    }
    order
}

/// Bytes per second each counter grows by on average: received, sent, read, written.
const RATES: [f64; 4] = [40_000.0, 15_000.0, 4_096.0, 12_288.0];
/// The simulated machine's memory and root filesystem, in bytes.
const MEMORY_TOTAL: u64 = 4 << 30;
const DISK_TOTAL: u64 = 40_000_000_000;
/// What runs on it: the top lists' names and resident sizes (MB), the busiest first.
const PROCESSES: [(&str, u64); 6] =
    [("nginx", 48), ("postgres", 160), ("sshd", 9), ("serverpulse-age", 4), ("systemd-journal", 30), ("cron", 3)];

/// One simulated server's figures, advanced one report at a time.
#[derive(Debug, Clone)]
pub struct Series {
    seed: Seed,
    phase: f64,
    memory: f64,
    counters: [f64; 4],
    /// What each counter grew by in the last report.
    increments: [f64; 4],
    loopback: u64,
    /// When the simulated machine booted (Unix ms), fixed at its first report.
    booted_at: Option<i64>,
    interval_ms: i64,
}

impl Series {
    /// Server number `index`'s series, reporting every `interval_ms`.
    pub fn new(index: u64, interval_ms: i64) -> Self {
        Self {
            seed: Seed(42 + index),
            phase: index as f64,
            memory: 40.0,
            counters: [0.0; 4],
            increments: [0.0; 4],
            loopback: 0,
            booted_at: None,
            interval_ms,
        }
    }

    /// The flat figures of report `seq` at `at` (agent time, ms); `start` is when the
    /// series began (day 0 of the CPU curve).
    fn flat(&mut self, seq: u64, at: i64, start: i64) -> Flat {
        let day = (at - start) as f64 / 86_400_000.0;
        let noise = self.seed.uniform() - 0.5;
        let cpu = (30.0 + 20.0 * (std::f64::consts::TAU * day + self.phase).sin() + 6.0 * noise).clamp(0.0, 100.0);
        // A step about once every six hours at a 30-second interval.
        if self.seed.uniform() < 1.0 / 720.0 {
            self.memory = (self.memory + (self.seed.uniform() - 0.5) * 10.0).clamp(10.0, 95.0);
        }
        let seconds = self.seconds();
        for ((counter, increment), rate) in self.counters.iter_mut().zip(&mut self.increments).zip(RATES) {
            *increment = (rate * (0.5 + self.seed.uniform()) * seconds).round();
            *counter += *increment;
        }
        let [network_rx, network_tx, disk_io_read, disk_io_write] = self.counters.map(|c| c as u64);
        Flat {
            cpu_usage: (cpu * 10.0).round() / 10.0,
            memory_usage: (self.memory * 10.0).round() / 10.0,
            disk_usage: Some(((60.0 + day * 0.1) * 10.0).round() / 10.0),
            uptime: 86_400 + seq * (self.interval_ms as u64 / 1000),
            load_average: ((cpu / 25.0) * 100.0).round() / 100.0,
            network_rx,
            network_tx,
            disk_io_read,
            disk_io_write,
        }
    }

    fn seconds(&self) -> f64 {
        self.interval_ms as f64 / 1000.0
    }

    /// Just the flat figures as a report (the samples the history benches keep).
    pub fn report(&mut self, seq: u64, at: i64, start: i64) -> Value {
        let flat = self.flat(seq, at, start);
        serde_json::json!({"seq": seq, "timestamp": serverpulse_proto::time::format_timestamp(at), "metrics": flat})
    }

    /// A whole report as the agent sends it (see the module's doc).
    pub fn agent_report(&mut self, seq: u64, at: i64, start: i64) -> Value {
        let flat = self.flat(seq, at, start);
        let booted_at = *self.booted_at.get_or_insert(at - i64::try_from(flat.uptime).unwrap_or_default() * 1000);
        let detail = self.detail(&flat, booted_at);
        let collection = Collection { at_ms: at, flat, detail };
        // The services started with the machine and have run since.
        let since = booted_at + 20_000;
        let services: Vec<ServiceState> = [("nginx.service", 812), ("ssh.service", 655)]
            .into_iter()
            .map(|(unit, pid)| ServiceState {
                sub_state: Some("running".to_owned()),
                main_pid: Some(pid),
                restarts: Some(0),
                since: Some(since),
                ..ServiceState::with_status(unit, "active")
            })
            .collect();
        serde_json::to_value(document(seq, &collection, &services)).unwrap_or_default()
    }

    /// Everything beyond the flat figures, consistent with them.
    fn detail(&mut self, flat: &Flat, booted_at: i64) -> Detail {
        let seconds = self.seconds();
        let cpu = flat.cpu_usage;
        let per_core = (0..2).map(|_| round2((cpu + 10.0 * (self.seed.uniform() - 0.5)).clamp(0.0, 100.0))).collect();
        let iowait = round2(cpu * 0.05);
        let split = CpuSplit {
            usage: cpu,
            user: round2(cpu * 0.7),
            nice: 0.0,
            system: round2(cpu * 0.25),
            idle: round2(100.0 - cpu),
            iowait,
            irq: 0.0,
            softirq: round2(cpu * 0.01),
            steal: 0.0,
        };
        let used = (MEMORY_TOTAL as f64 * flat.memory_usage / 100.0) as u64;
        let memory = Memory {
            total: MEMORY_TOTAL,
            available: MEMORY_TOTAL - used,
            used,
            free: (MEMORY_TOTAL - used) / 3,
            buffers: 96 << 20,
            cached: (MEMORY_TOTAL - used) / 2,
            shared: 21 << 20,
            percent: flat.memory_usage,
            swap_total: 0,
            swap_used: 0,
            swap_percent: 0.0,
        };
        let load = Load {
            one: flat.load_average,
            five: round2(flat.load_average * 0.9),
            fifteen: round2(flat.load_average * 0.8),
            running: 1 + (self.seed.uniform() * 3.0) as u64,
            threads: 180,
        };
        let percent = flat.disk_usage.unwrap_or_default();
        let disk_used = (DISK_TOTAL as f64 * percent / 100.0) as u64;
        let filesystems = vec![Filesystem {
            mount: "/".to_owned(),
            device: "/dev/vda1".to_owned(),
            fstype: "ext4".to_owned(),
            total: DISK_TOTAL,
            used: disk_used,
            available: DISK_TOTAL - disk_used,
            percent,
        }];
        let [rx, tx, read, written] = self.increments.map(|bytes| round2(bytes / seconds));
        self.loopback += (2_000.0 * (0.5 + self.seed.uniform()) * seconds) as u64;
        let interface = |rx_bytes: u64, tx_bytes: u64, rx_rate: f64, tx_rate: f64| InterfaceDetail {
            counters: Interface {
                rx_bytes,
                tx_bytes,
                rx_packets: rx_bytes / 900,
                tx_packets: tx_bytes / 700,
                ..Interface::default()
            },
            rx_rate,
            tx_rate,
        };
        let loopback_rate = round2(self.increments[0] / 20.0 / seconds);
        let interfaces = BTreeMap::from([
            ("eth0".to_owned(), interface(flat.network_rx, flat.network_tx, rx, tx)),
            ("lo".to_owned(), interface(self.loopback, self.loopback, loopback_rate, loopback_rate)),
        ]);
        let disk = DiskDetail {
            counters: DiskIo {
                read_bytes: flat.disk_io_read,
                write_bytes: flat.disk_io_write,
                reads: flat.disk_io_read / 16_384,
                writes: flat.disk_io_write / 8_192,
                busy_ms: (flat.disk_io_read + flat.disk_io_write) / 50_000,
            },
            read_rate: read,
            write_rate: written,
        };
        let stall =
            |share: f64| Stall { avg10: round2(share), avg60: round2(share * 0.9), avg300: round2(share * 0.8) };
        let pressure = BTreeMap::from([
            ("cpu", Pressure { some: Some(stall(cpu / 20.0)), full: Some(stall(0.0)) }),
            ("io", Pressure { some: Some(stall(iowait)), full: Some(stall(iowait / 2.0)) }),
            ("memory", Pressure { some: Some(stall(0.0)), full: Some(stall(0.0)) }),
        ]);
        let top = |by_memory: bool, seed: &mut Seed| -> Vec<TopProcess> {
            let mut rows: Vec<TopProcess> = PROCESSES
                .iter()
                .zip(1000u32..)
                .map(|((name, megabytes), pid)| TopProcess {
                    pid,
                    name: (*name).to_owned(),
                    cpu: round2(cpu * seed.uniform() / 2.0),
                    memory: megabytes << 20,
                })
                .collect();
            if by_memory {
                rows.sort_by_key(|row| std::cmp::Reverse(row.memory));
            } else {
                rows.sort_by(|a, b| b.cpu.total_cmp(&a.cpu));
            }
            rows.truncate(serverpulse_agent::collector::TOP_PROCESSES);
            rows
        };
        let processes = Processes {
            total: 123,
            running: 2,
            top_cpu: top(false, &mut self.seed),
            top_memory: top(true, &mut self.seed),
        };
        Detail {
            cpu: CpuDetail { cores: 2, per_core, split },
            memory,
            load,
            boot_time: u64::try_from(booted_at / 1000).ok(),
            filesystems,
            interfaces,
            disks: BTreeMap::from([("vda".to_owned(), disk)]),
            pressure,
            temperatures: Vec::new(),
            processes,
        }
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
        assert_ne!(Series::new(4, 30_000).agent_report(1, 0, 0), Series::new(3, 30_000).agent_report(1, 0, 0));
    }

    #[test]
    fn services_and_boot_stay_as_they_were_from_one_phase_to_the_next() {
        let mut series = Series::new(1, 30_000);
        let first = series.agent_report(1, 1_800_000_000_000, 1_799_999_970_000);
        // A later phase of the run counts its series from another start.
        let later = series.agent_report(2, 1_800_000_031_000, 1_800_000_001_000);
        assert_eq!(first["services"], later["services"]);
        assert_eq!(first["metrics"]["detail"]["boot_time"], later["metrics"]["detail"]["boot_time"]);
    }

    #[test]
    fn a_report_carries_the_agents_whole_detail_and_decodes_as_one() {
        let document = Series::new(1, 30_000).agent_report(7, 1_800_000_000_000, 1_799_000_000_000);
        let detail = &document["metrics"]["detail"];
        for part in ["cpu", "memory", "load", "filesystems", "interfaces", "disks", "pressure", "processes"] {
            assert!(!detail[part].is_null(), "{part} missing from {detail}");
        }
        assert_eq!(detail["processes"]["top_cpu"].as_array().map(Vec::len), Some(5));
        assert_eq!(document["services"].as_array().map(Vec::len), Some(2));
        let text = document.to_string();
        assert!(text.len() > 2_000, "{} bytes", text.len());
        let decoded = serverpulse_proto::report::decode_metrics_body(document, 1_800_000_000_000).unwrap();
        assert_eq!(decoded.into_reports().len(), 1);
    }

    #[test]
    fn arrivals_are_every_server_once_in_a_fixed_order_unrelated_to_ids() {
        let order = arrival_order(10_000, false);
        assert_eq!(order, arrival_order(10_000, false));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10_000).collect::<Vec<_>>());
        // Neighbours in arrival are rarely neighbours in id: a batch of 512 consecutive
        // arrivals spans most of the fleet's ids, not a run of them.
        let neighbours = order.windows(2).filter(|w| w[0].abs_diff(w[1]) <= 8).count();
        assert!(neighbours < 100, "{neighbours} arrivals follow an id within 8");
        let batch = &order[..512];
        let span = batch.iter().max().unwrap() - batch.iter().min().unwrap();
        assert!(span > 9_000, "the first 512 arrivals span only {span} ids");
        assert_eq!(arrival_order(5, true), vec![0, 1, 2, 3, 4]);
    }
}
