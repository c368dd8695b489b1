//! One collection of everything the agent reports, from two consecutive readings.
//!
//! CPU percentages, per-process CPU and byte rates only exist between two readings, so
//! the [`Collector`] keeps the previous one. [`Collector::prime`] takes the first;
//! every [`Collector::collect_once`] after it yields a full [`Collection`].

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::collect::cpu::{self, CpuSplit, CpuStat};
use crate::collect::disk::{self, DiskIo, Filesystem, SpaceSource};
use crate::collect::hwmon::{self, Temperature};
use crate::collect::memory::{self, Memory};
use crate::collect::net::{self, Interface};
use crate::collect::pressure::{self, Pressure};
use crate::collect::processes::{self, ProcessSample};
use crate::collect::system::{self, Load};
use crate::collect::{CollectError, Root, mounts};

/// How many processes each "top" list holds.
pub const TOP_PROCESSES: usize = 5;
/// The process table and the mount table are read on every this-many collections (two
/// minutes at the default 30 s): scanning processes costs more than everything else in
/// a collection together, per-process CPU is more telling over minutes than over
/// seconds, and filesystems are rarely mounted. (Their usage is measured every time.)
pub const SLOW_SCAN_EVERY: u64 = 4;
/// Collections between fresh directory listings (sensor chips).
pub const LISTINGS_EVERY: u64 = 40;

/// The counters kept from one reading to the next.
#[derive(Debug, Clone)]
struct Reading {
    at_ms: i64,
    cpu: CpuStat,
    interfaces: BTreeMap<String, Interface>,
    disks: BTreeMap<String, DiskIo>,
}

/// The last process-table scan: CPU ticks per pid, and the lists made from it.
#[derive(Debug, Clone)]
struct ProcessScan {
    at_ms: i64,
    ticks: HashMap<u32, u64>,
    lists: Processes,
}

/// Collects from a root (the host, or a fixture tree).
pub struct Collector {
    root: Root,
    space: Box<dyn SpaceSource + Send>,
    clock_ticks: u64,
    page_size: u64,
    previous: Option<Reading>,
    last_scan: Option<ProcessScan>,
    mounts: Option<Vec<mounts::Mount>>,
    collections: u64,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The flat figures of the documented report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flat {
    pub cpu_usage: f64,
    pub memory_usage: f64,
    /// The root filesystem; absent only if `/` could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_usage: Option<f64>,
    pub uptime: u64,
    pub load_average: f64,
    pub network_rx: u64,
    pub network_tx: u64,
    pub disk_io_read: u64,
    pub disk_io_write: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuDetail {
    pub cores: usize,
    pub per_core: Vec<f64>,
    pub split: CpuSplit,
}

/// One interface: counters since boot, and bytes per second since the previous collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterfaceDetail {
    #[serde(flatten)]
    pub counters: Interface,
    pub rx_rate: f64,
    pub tx_rate: f64,
}

/// One block device: counters since boot, and bytes per second since the previous collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskDetail {
    #[serde(flatten)]
    pub counters: DiskIo,
    pub read_rate: f64,
    pub write_rate: f64,
}

/// Two decimals are all a percentage or a rate needs; the rest is noise on the wire.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopProcess {
    pub pid: u32,
    pub name: String,
    /// Percent of one core since the previous collection.
    pub cpu: f64,
    /// Resident bytes.
    pub memory: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Processes {
    pub total: usize,
    pub running: usize,
    pub top_cpu: Vec<TopProcess>,
    pub top_memory: Vec<TopProcess>,
}

/// Everything beyond the flat figures (`metrics.detail` in the report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub cpu: CpuDetail,
    pub memory: Memory,
    pub load: Load,
    pub boot_time: Option<u64>,
    pub filesystems: Vec<Filesystem>,
    /// Interfaces that ever moved a byte.
    pub interfaces: BTreeMap<String, InterfaceDetail>,
    /// Block devices that ever did I/O.
    pub disks: BTreeMap<String, DiskDetail>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pressure: BTreeMap<&'static str, Pressure>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub temperatures: Vec<Temperature>,
    pub processes: Processes,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collection {
    /// When it was taken (Unix ms).
    #[serde(skip)]
    pub at_ms: i64,
    pub flat: Flat,
    pub detail: Detail,
}

impl Collector {
    pub fn new(root: Root, space: Box<dyn SpaceSource + Send>) -> Self {
        Self {
            root,
            space,
            clock_ticks: rustix::param::clock_ticks_per_second(),
            page_size: rustix::param::page_size() as u64,
            previous: None,
            last_scan: None,
            mounts: None,
            collections: 0,
        }
    }

    /// The real host, measured with `statvfs`.
    pub fn host() -> Self {
        Self::new(Root::host(), Box::new(disk::Statvfs))
    }

    pub fn is_primed(&self) -> bool {
        self.previous.is_some()
    }

    /// Takes the first reading; needed before the first [`collect_once`](Self::collect_once).
    pub fn prime(&mut self, now_ms: i64) -> Result<(), CollectError> {
        self.previous = Some(self.read(now_ms)?);
        Ok(())
    }

    fn read(&self, now_ms: i64) -> Result<Reading, CollectError> {
        Ok(Reading {
            at_ms: now_ms,
            cpu: cpu::read_stat(&self.root)?,
            interfaces: net::read_interfaces(&self.root)?,
            disks: disk::read_disks(&self.root).unwrap_or_default(),
        })
    }

    /// Everything since the previous reading. Primes first if it was never primed (CPU
    /// figures then cover no time and read as zero).
    pub fn collect_once(&mut self, now_ms: i64) -> Result<Collection, CollectError> {
        if self.previous.is_none() {
            self.prime(now_ms)?;
        }
        let slow_due = self.collections.is_multiple_of(SLOW_SCAN_EVERY);
        self.collections += 1;
        if self.collections.is_multiple_of(LISTINGS_EVERY) {
            // Sensors (and anything else listed) are looked for afresh now and then;
            // block devices follow /proc/diskstats at once.
            self.root.forget_listings();
        }
        let current = self.read(now_ms)?;
        let processes = self.processes(now_ms, slow_due);
        if slow_due || self.mounts.is_none() {
            self.mounts = Some(mounts::read_mounts(&self.root)?);
        }

        let previous = self.previous.replace(current.clone()).unwrap_or_else(|| current.clone());
        let seconds = (now_ms - previous.at_ms).max(0) as f64 / 1000.0;

        let split = cpu::split(&previous.cpu.total, &current.cpu.total).unwrap_or_default();
        let per_core = current
            .cpu
            .per_core
            .iter()
            .enumerate()
            .map(|(i, now)| {
                previous.cpu.per_core.get(i).and_then(|before| cpu::split(before, now)).map_or(0.0, |s| round2(s.usage))
            })
            .collect::<Vec<_>>();
        let memory = memory::read_memory(&self.root)?;
        let load = system::read_load(&self.root)?;
        let uptime = system::read_uptime(&self.root)?;
        let filesystems = disk::filesystems(self.mounts.as_deref().unwrap_or_default(), self.space.as_ref());
        let disk_usage = filesystems.iter().find(|fs| fs.mount == "/").map(|fs| fs.percent);
        let (network_rx, network_tx) = net::totals(&current.interfaces);
        let io = disk::total_io(&current.disks);
        let rate = |now: u64, before: Option<u64>| match before {
            Some(b) if seconds > 0.0 && now >= b => round2((now - b) as f64 / seconds),
            _ => 0.0,
        };
        let interfaces = current
            .interfaces
            .iter()
            .filter(|(_, i)| i.rx_bytes > 0 || i.tx_bytes > 0)
            .map(|(name, i)| {
                let before = previous.interfaces.get(name);
                let detail = InterfaceDetail {
                    counters: *i,
                    rx_rate: rate(i.rx_bytes, before.map(|b| b.rx_bytes)),
                    tx_rate: rate(i.tx_bytes, before.map(|b| b.tx_bytes)),
                };
                (name.clone(), detail)
            })
            .collect();
        let disks = current
            .disks
            .iter()
            .filter(|(_, d)| d.reads > 0 || d.writes > 0)
            .map(|(name, d)| {
                let before = previous.disks.get(name);
                let detail = DiskDetail {
                    counters: *d,
                    read_rate: rate(d.read_bytes, before.map(|b| b.read_bytes)),
                    write_rate: rate(d.write_bytes, before.map(|b| b.write_bytes)),
                };
                (name.clone(), detail)
            })
            .collect();

        Ok(Collection {
            at_ms: now_ms,
            flat: Flat {
                cpu_usage: round2(split.usage),
                memory_usage: round2(memory.percent),
                disk_usage: disk_usage.map(round2),
                uptime,
                load_average: load.one,
                network_rx,
                network_tx,
                disk_io_read: io.read_bytes,
                disk_io_write: io.write_bytes,
            },
            detail: Detail {
                cpu: CpuDetail { cores: current.cpu.per_core.len(), per_core, split: split.rounded() },
                memory,
                load,
                boot_time: current.cpu.boot_time,
                filesystems,
                interfaces,
                disks,
                pressure: pressure::read_pressure(&self.root),
                temperatures: hwmon::read_temperatures(&self.root),
                processes,
            },
        })
    }

    /// The top lists: from a fresh scan when `due`, else those of the last scan. CPU
    /// shares cover the time since the scan before.
    fn processes(&mut self, now_ms: i64, due: bool) -> Processes {
        if !due && let Some(scan) = &self.last_scan {
            return scan.lists.clone();
        }
        let sample = processes::read_processes(&self.root);
        let (before, seconds) = match &self.last_scan {
            Some(scan) => (&scan.ticks, (now_ms - scan.at_ms).max(0) as f64 / 1000.0),
            None => (&HashMap::new(), 0.0),
        };
        let lists = self.top_processes(&sample, before, seconds);
        self.last_scan = Some(ProcessScan {
            at_ms: now_ms,
            ticks: sample.iter().map(|p| (p.pid, p.cpu_ticks)).collect(),
            lists: lists.clone(),
        });
        lists
    }

    fn top_processes(&self, now: &[ProcessSample], before: &HashMap<u32, u64>, seconds: f64) -> Processes {
        let ticks_per_second = self.clock_ticks.max(1) as f64;
        let mut rows: Vec<TopProcess> = now
            .iter()
            .map(|p| {
                let used = before.get(&p.pid).map_or(0, |b| p.cpu_ticks.saturating_sub(*b));
                let cpu = if seconds > 0.0 { round2(used as f64 / ticks_per_second / seconds * 100.0) } else { 0.0 };
                TopProcess { pid: p.pid, name: p.name.clone(), cpu, memory: p.rss_pages * self.page_size }
            })
            .collect();
        rows.sort_by(|a, b| b.cpu.total_cmp(&a.cpu).then(a.pid.cmp(&b.pid)));
        let top_cpu = rows.iter().take(TOP_PROCESSES).cloned().collect();
        rows.sort_by(|a, b| b.memory.cmp(&a.memory).then(a.pid.cmp(&b.pid)));
        let top_memory = rows.iter().take(TOP_PROCESSES).cloned().collect();
        Processes { total: now.len(), running: now.iter().filter(|p| p.state == 'R').count(), top_cpu, top_memory }
    }
}
