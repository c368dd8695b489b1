//! CPU time from `/proc/stat`, and usage as the share of non-idle time between two readings.

use serde::Serialize;

use super::{CollectError, Root, numbers, read};

/// Cumulative jiffies of one CPU (or of all, for the `cpu` line). Guest time is already
/// counted in `user`/`nice` by the kernel, so it is not added again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    pub fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }

    /// Time not spent idle or waiting for I/O.
    pub fn busy(&self) -> u64 {
        self.total() - self.idle - self.iowait
    }
}

/// One reading of `/proc/stat`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuStat {
    pub total: CpuTimes,
    pub per_core: Vec<CpuTimes>,
    /// Boot time, Unix seconds.
    pub boot_time: Option<u64>,
    pub context_switches: Option<u64>,
    pub processes_running: Option<u64>,
    pub processes_blocked: Option<u64>,
}

pub fn parse_stat(text: &str) -> Result<CpuStat, CollectError> {
    const PATH: &str = "proc/stat";
    let mut stat = CpuStat::default();
    let mut saw_total = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(key) = fields.next() else { continue };
        let rest: Vec<&str> = fields.collect();
        if let Some(core) = key.strip_prefix("cpu") {
            let values = numbers(&rest, PATH)?;
            if values.len() < 4 {
                return Err(CollectError::parse(PATH, format!("{key} has {} fields", values.len())));
            }
            let at = |i: usize| values.get(i).copied().unwrap_or(0);
            let times = CpuTimes {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                iowait: at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
            };
            if core.is_empty() {
                stat.total = times;
                saw_total = true;
            } else {
                stat.per_core.push(times);
            }
            continue;
        }
        let first = rest.first().and_then(|v| v.parse::<u64>().ok());
        match key {
            "btime" => stat.boot_time = first,
            "ctxt" => stat.context_switches = first,
            "procs_running" => stat.processes_running = first,
            "procs_blocked" => stat.processes_blocked = first,
            _ => {}
        }
    }
    if !saw_total {
        return Err(CollectError::parse(PATH, "no aggregate cpu line"));
    }
    Ok(stat)
}

pub fn read_stat(root: &Root) -> Result<CpuStat, CollectError> {
    parse_stat(&read(root, "proc/stat")?)
}

/// Shares of time between two readings, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CpuSplit {
    pub usage: f64,
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

impl CpuSplit {
    /// Every share to two decimals (what a report carries).
    pub fn rounded(self) -> Self {
        let r = |v: f64| (v * 100.0).round() / 100.0;
        Self {
            usage: r(self.usage),
            user: r(self.user),
            nice: r(self.nice),
            system: r(self.system),
            idle: r(self.idle),
            iowait: r(self.iowait),
            irq: r(self.irq),
            softirq: r(self.softirq),
            steal: r(self.steal),
        }
    }
}

/// Usage between `before` and `after`; `None` when no time passed (or the counters went
/// backwards, as after a CPU went offline and came back).
pub fn split(before: &CpuTimes, after: &CpuTimes) -> Option<CpuSplit> {
    let total = after.total().checked_sub(before.total())?;
    if total == 0 {
        return None;
    }
    let share = |a: u64, b: u64| a.saturating_sub(b) as f64 * 100.0 / total as f64;
    let busy = after.busy().saturating_sub(before.busy());
    Some(CpuSplit {
        usage: (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0),
        user: share(after.user, before.user),
        nice: share(after.nice, before.nice),
        system: share(after.system, before.system),
        idle: share(after.idle, before.idle),
        iowait: share(after.iowait, before.iowait),
        irq: share(after.irq, before.irq),
        softirq: share(after.softirq, before.softirq),
        steal: share(after.steal, before.steal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "cpu  1000 0 500 8000 500 0 0 0 0 0\ncpu0 500 0 250 4000 250 0 0 0 0 0\ncpu1 500 0 250 4000 250 0 0 0 0 0\nintr 1 2 3\nctxt 99\nbtime 1750451400\nprocesses 500\nprocs_running 2\nprocs_blocked 0\n";
    const AFTER: &str = "cpu  1600 0 700 8700 500 0 0 0 0 0\ncpu0 1000 0 350 4150 250 0 0 0 0 0\ncpu1 600 0 350 4550 250 0 0 0 0 0\nctxt 120\nbtime 1750451400\n";

    #[test]
    fn usage_from_two_readings() {
        let before = parse_stat(BEFORE).unwrap();
        let after = parse_stat(AFTER).unwrap();
        assert_eq!(before.per_core.len(), 2);
        assert_eq!(before.boot_time, Some(1_750_451_400));
        // Δtotal = 600+200+700 = 1500, Δbusy = 800 → 53.33 %.
        let total = split(&before.total, &after.total).unwrap();
        assert!((total.usage - 800.0 / 15.0).abs() < 1e-9, "{}", total.usage);
        assert!((total.user - 40.0).abs() < 1e-9);
        assert!((total.idle - 700.0 / 15.0).abs() < 1e-9);
        // Core 0: Δtotal 750, Δbusy 600 → 80 %; core 1: Δtotal 750, Δbusy 200 → 26.67 %.
        let core0 = split(&before.per_core[0], &after.per_core[0]).unwrap();
        assert!((core0.usage - 80.0).abs() < 1e-9);
        assert!(split(&after.total, &after.total).is_none());
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_stat("intr 1 2\n").is_err());
        assert!(parse_stat("cpu a b c d\n").is_err());
    }
}
